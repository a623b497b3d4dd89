#include "admin.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "rq.h"
#include "s3.h"

#define MAX_WORKERS_SHOWN 1000 /* live workers listed by `pixq stats` */

struct admin {
    struct rq *rq;
    char queue[CFG_STR_MAX];
};

static int open_admin(const struct cfg *cfg, struct admin *a)
{
    snprintf(a->queue, sizeof a->queue, "%.*s", (int)strcspn(cfg->queue, ","), cfg->queue);
    struct err e = {{0}};
    a->rq = rq_create(cfg->redis_url, cfg->redis_timeout_ms, &e);
    if (a->rq == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Runs a command on key pixq:{Q}:<suffix>; NULL (message printed) on failure. */
static redisReply *keyed(struct admin *a, const char *cmd, const char *suffix, const char *extra)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, suffix);
    const char *argv[] = {cmd, key, extra};
    struct err e = {{0}};
    redisReply *r = rq_commandv(a->rq, 0, extra != NULL ? 3 : 2, argv, NULL, &e);
    if (r == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
    }
    return r;
}

static long long keyed_int(struct admin *a, const char *cmd, const char *suffix)
{
    redisReply *r = keyed(a, cmd, suffix, NULL);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static long long server_ms(struct admin *a)
{
    struct err e = {{0}};
    redisReply *r = rq_command(a->rq, &e, "TIME");
    long long ms = -1;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    }
    freeReplyObject(r);
    return ms;
}

/* The job ids a worker holds, as a JSON array. */
static json_object *active_jobs(struct admin *a, const char *wid)
{
    char suffix[RQ_KEY_MAX];
    snprintf(suffix, sizeof suffix, "active:%.300s", wid);
    json_object *ids = json_object_new_array();
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, suffix);
    struct err e = {{0}};
    redisReply *r = rq_command(a->rq, &e, "LRANGE %s 0 -1", key);
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        json_object *doc = json_tokener_parse(r->element[i]->str);
        json_object *id = NULL;
        json_object_object_get_ex(doc, "job_id", &id);
        json_object_array_add(
            ids, json_object_new_string(id != NULL ? json_object_get_string(id) : "(no id yet)"));
        json_object_put(doc);
    }
    freeReplyObject(r);
    return ids;
}

/* [{"id", "lease_ms_left", "jobs": [...]}] for every registered worker. */
static json_object *workers(struct admin *a, long long now)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, "workers");
    struct err e = {{0}};
    redisReply *r = rq_command(a->rq, &e, "ZRANGE %s 0 %d WITHSCORES", key, MAX_WORKERS_SHOWN - 1);
    json_object *list = json_object_new_array();
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_object *w = json_object_new_object();
        const char *wid = r->element[i]->str;
        long long deadline = strtoll(r->element[i + 1]->str, NULL, 10);
        json_object_object_add(w, "id", json_object_new_string(wid));
        json_object_object_add(w, "lease_ms_left", json_object_new_int64(deadline - now));
        json_object_object_add(w, "jobs", active_jobs(a, wid));
        json_object_array_add(list, w);
    }
    freeReplyObject(r);
    return list;
}

static json_object *counters(struct admin *a)
{
    json_object *c = json_object_new_object();
    redisReply *r = keyed(a, "HGETALL", "stats", NULL);
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_object_object_add(c, r->element[i]->str,
                               json_object_new_int64(strtoll(r->element[i + 1]->str, NULL, 10)));
    }
    freeReplyObject(r);
    return c;
}

static json_object *collect_stats(struct admin *a)
{
    long long now = server_ms(a);
    json_object *s = json_object_new_object();
    json_object_object_add(s, "queue", json_object_new_string(a->queue));
    json_object_object_add(s, "jobs", json_object_new_int64(keyed_int(a, "LLEN", "jobs")));
    json_object_object_add(s, "delayed", json_object_new_int64(keyed_int(a, "ZCARD", "delayed")));
    json_object_object_add(s, "dead", json_object_new_int64(keyed_int(a, "LLEN", "dead")));
    json_object *ws = workers(a, now);
    size_t live = 0;
    for (size_t i = 0; i < json_object_array_length(ws); i++) {
        json_object *lease =
            json_object_object_get(json_object_array_get_idx(ws, i), "lease_ms_left");
        live += json_object_get_int64(lease) >= 0;
    }
    json_object_object_add(s, "live_workers", json_object_new_int64((long long)live));
    json_object_object_add(s, "workers", ws);
    json_object_object_add(s, "counters", counters(a));
    return s;
}

static void print_stats(json_object *s)
{
    printf("queue %s\n", json_object_get_string(json_object_object_get(s, "queue")));
    printf("  jobs waiting   %s\n", json_object_get_string(json_object_object_get(s, "jobs")));
    printf("  delayed        %s\n", json_object_get_string(json_object_object_get(s, "delayed")));
    printf("  dead           %s\n", json_object_get_string(json_object_object_get(s, "dead")));
    printf("  live workers   %s\n",
           json_object_get_string(json_object_object_get(s, "live_workers")));
    json_object *ws = json_object_object_get(s, "workers");
    for (size_t i = 0; i < json_object_array_length(ws); i++) {
        json_object *w = json_object_array_get_idx(ws, i);
        long long left = json_object_get_int64(json_object_object_get(w, "lease_ms_left"));
        printf("    %s  %s  jobs %s\n", json_object_get_string(json_object_object_get(w, "id")),
               left >= 0 ? "alive" : "EXPIRED",
               json_object_to_json_string_ext(json_object_object_get(w, "jobs"),
                                              JSON_C_TO_STRING_PLAIN));
    }
    printf("  counters\n");
    json_object_object_foreach(json_object_object_get(s, "counters"), name, v)
    {
        printf("    %-18s %s\n", name, json_object_get_string(v));
    }
}

int stats_main(const struct cfg *cfg, int argc, char **argv)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0) {
            fprintf(stderr, "usage: pixq stats [--json]\n");
            return 2;
        }
        json = true;
    }
    struct admin a;
    if (open_admin(cfg, &a) < 0) {
        return 1;
    }
    json_object *s = collect_stats(&a);
    if (json) {
        printf("%s\n", json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        print_stats(s);
    }
    json_object_put(s);
    rq_destroy(a.rq);
    return 0;
}

/* ---------------------------------------------------------------- pixq dead */

static int dead_list(struct admin *a, long limit, bool json)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, "dead");
    struct err e = {{0}};
    redisReply *r = rq_command(a->rq, &e, "LRANGE %s 0 %ld", key, limit - 1);
    if (r == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return 1;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (json) {
            printf("%s\n", r->element[i]->str);
            continue;
        }
        json_object *d = json_tokener_parse(r->element[i]->str);
        json_object *id = json_object_object_get(d, "job_id");
        printf("%s  failed_at=%s  %s\n", id != NULL ? json_object_get_string(id) : "(no id)",
               json_object_get_string(json_object_object_get(d, "failed_at")),
               json_object_get_string(json_object_object_get(d, "error")));
        json_object_put(d);
    }
    freeReplyObject(r);
    return 0;
}

/* Forgets that the dead jobs about to be retried (`which`: "all" or a job id) were posted back
 * (the "posted" claim in pixq:{Q}:job:<id>), so that each re-run posts its new outcome. Done
 * before they are re-queued: a claim cleared for a job that then stays dead is harmless. */
static void forget_postbacks(struct admin *a, const char *which)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, "dead");
    struct err e = {{0}};
    redisReply *r = rq_command(a->rq, &e, "LRANGE %s 0 -1", key);
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        json_object *d = json_tokener_parse(r->element[i]->str);
        const char *id = json_object_get_string(json_object_object_get(d, "job_id"));
        if (id != NULL && (strcmp(which, "all") == 0 || strcmp(which, id) == 0)) {
            char suffix[JOB_ID_MAX + 8], job_key[RQ_KEY_MAX];
            snprintf(suffix, sizeof suffix, "job:%s", id);
            rq_key(job_key, sizeof job_key, a->queue, suffix);
            freeReplyObject(rq_command(a->rq, &e, "HDEL %s posted", job_key));
        }
        json_object_put(d);
    }
    freeReplyObject(r);
}

static int dead_retry(struct admin *a, const char *which)
{
    forget_postbacks(a, which);
    char dead[RQ_KEY_MAX], jobs[RQ_KEY_MAX], stats[RQ_KEY_MAX];
    rq_key(dead, sizeof dead, a->queue, "dead");
    rq_key(jobs, sizeof jobs, a->queue, "jobs");
    rq_key(stats, sizeof stats, a->queue, "stats");
    const char *keys[] = {dead, jobs, stats};
    const char *args[] = {which};
    struct err e = {{0}};
    redisReply *r = rq_script(a->rq, RQ_SCRIPT_DEAD_RETRY, 3, keys, 1, args, NULL, &e);
    if (r == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return 1;
    }
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    printf("%lld job(s) put back on pixq:{%s}:jobs\n", n, a->queue);
    return n > 0 || strcmp(which, "all") == 0 ? 0 : 1;
}

/* Removes every dead entry, or those of one job id. */
static int dead_purge(struct admin *a, const char *job_id)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, a->queue, "dead");
    struct err e = {{0}};
    long long n = 0;
    if (job_id == NULL) {
        n = keyed_int(a, "LLEN", "dead");
        freeReplyObject(rq_command(a->rq, &e, "DEL %s", key));
    } else {
        redisReply *r = rq_command(a->rq, &e, "LRANGE %s 0 -1", key);
        for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            json_object *d = json_tokener_parse(r->element[i]->str);
            json_object *id = json_object_object_get(d, "job_id");
            if (id != NULL && strcmp(json_object_get_string(id), job_id) == 0) {
                redisReply *x = rq_command(a->rq, &e, "LREM %s 1 %b", key, r->element[i]->str,
                                           r->element[i]->len);
                n += x != NULL && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
                freeReplyObject(x);
            }
            json_object_put(d);
        }
        freeReplyObject(r);
    }
    printf("%lld dead job(s) purged\n", n);
    return 0;
}

static void dead_usage(void)
{
    fprintf(stderr, "usage: pixq dead list [--limit N] [--json]\n"
                    "       pixq dead retry all|JOB_ID\n"
                    "       pixq dead purge [JOB_ID]\n");
}

/* Parses `dead list [--limit N] [--json]` (before connecting: a usage error exits 2 even when
 * Redis is down). Returns 0, or 2 after printing the usage. */
static int dead_list_args(int argc, char **argv, long *limit, bool *json)
{
    *limit = 100;
    *json = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            char *end;
            *limit = strtol(argv[++i], &end, 10);
            if (*end != '\0' || *limit < 1 || *limit > 1000000) {
                dead_usage();
                return 2;
            }
        } else {
            dead_usage();
            return 2;
        }
    }
    return 0;
}

int dead_main(const struct cfg *cfg, int argc, char **argv)
{
    if (argc < 2) {
        dead_usage();
        return 2;
    }
    const char *cmd = argv[1];
    bool list = strcmp(cmd, "list") == 0;
    bool retry = strcmp(cmd, "retry") == 0 && argc == 3;
    bool purge = strcmp(cmd, "purge") == 0 && argc <= 3;
    if (!list && !retry && !purge) {
        dead_usage();
        return 2;
    }
    long limit = 0;
    bool json = false;
    if (list && dead_list_args(argc, argv, &limit, &json) != 0) {
        return 2;
    }
    struct admin a;
    if (open_admin(cfg, &a) < 0) {
        return 1;
    }
    int rc = list    ? dead_list(&a, limit, json)
             : retry ? dead_retry(&a, argv[2])
                     : dead_purge(&a, argc == 3 ? argv[2] : NULL);
    rq_destroy(a.rq);
    return rc;
}

/* ---------------------------------------------------------------- pixq limit */

static void limit_usage(void)
{
    fprintf(stderr, "usage: pixq limit show [--json]\n"
                    "       pixq limit set BUCKET RATE BURST\n"
                    "       pixq limit reset BUCKET\n");
}

/* A rate given in thousandths, as a JSON number with three decimals at most. */
static json_object *rate_value(long long milli)
{
    char text[32];
    snprintf(text, sizeof text, "%lld.%03lld", milli / 1000, milli % 1000);
    return json_object_new_double_s((double)milli / 1000, text);
}

/* rl_show.lua for one limiter key, as a JSON object. */
static json_object *limit_state(struct admin *a, const struct cfg *cfg, const char *key)
{
    char rate[32], burst[32], min_rate[32];
    snprintf(rate, sizeof rate, "%g", cfg->s3_rate);
    snprintf(burst, sizeof burst, "%ld", cfg->s3_burst);
    snprintf(min_rate, sizeof min_rate, "%g", cfg->s3_min_rate);
    const char *keys[] = {key};
    const char *args[] = {rate, burst, min_rate};
    struct err e = {{0}};
    redisReply *r = rq_script(a->rq, RQ_SCRIPT_RL_SHOW, 1, keys, 3, args, NULL, &e);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 8) {
        freeReplyObject(r);
        return NULL;
    }
    const char *open = strchr(key, '{');
    json_object *o = json_object_new_object();
    json_object_object_add(o, "bucket",
                           json_object_new_string_len(open + 1, (int)strlen(open + 1) - 1));
    json_object_object_add(o, "rate", rate_value(r->element[0]->integer));
    json_object_object_add(o, "burst", json_object_new_int64(r->element[1]->integer));
    json_object_object_add(o, "effective_rate", rate_value(r->element[2]->integer));
    json_object_object_add(o, "backlog_ms", json_object_new_int64(r->element[3]->integer));
    json_object_object_add(o, "throttle_signals", json_object_new_int64(r->element[4]->integer));
    json_object_object_add(o, "decreases", json_object_new_int64(r->element[5]->integer));
    json_object_object_add(o, "region", json_object_new_string(r->element[6]->str));
    json_object_object_add(o, "override", json_object_new_boolean(r->element[7]->integer == 1));
    freeReplyObject(r);
    return o;
}

/* Every limiter hash (SCAN pixq:rl:{*}), as a JSON array. */
static json_object *limit_list(struct admin *a, const struct cfg *cfg)
{
    json_object *list = json_object_new_array();
    char cursor[32] = "0";
    do {
        struct err e = {{0}};
        redisReply *r = rq_command(a->rq, &e, "SCAN %s MATCH pixq:rl:{* COUNT 1000", cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            json_object *o = limit_state(a, cfg, r->element[1]->element[i]->str);
            if (o != NULL) {
                json_object_array_add(list, o);
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return list;
}

static int limit_show(struct admin *a, const struct cfg *cfg, bool json)
{
    json_object *list = limit_list(a, cfg);
    if (json) {
        printf("%s\n", json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN));
    } else {
        printf("%-40s %10s %6s %10s %10s %8s %s\n", "bucket", "rate/s", "burst", "effective",
               "backlog_ms", "throttle", "region");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *o = json_object_array_get_idx(list, i);
            printf("%-40s %10.3f %6s %10.3f %10s %8s %s%s\n",
                   json_object_get_string(json_object_object_get(o, "bucket")),
                   json_object_get_double(json_object_object_get(o, "rate")),
                   json_object_get_string(json_object_object_get(o, "burst")),
                   json_object_get_double(json_object_object_get(o, "effective_rate")),
                   json_object_get_string(json_object_object_get(o, "backlog_ms")),
                   json_object_get_string(json_object_object_get(o, "throttle_signals")),
                   json_object_get_string(json_object_object_get(o, "region")),
                   json_object_get_boolean(json_object_object_get(o, "override")) ? " (override)"
                                                                                  : "");
        }
    }
    json_object_put(list);
    return 0;
}

static int limit_set(struct admin *a, const char *bucket, const char *rate, const char *burst)
{
    char *end1, *end2;
    double r = strtod(rate, &end1);
    long b = strtol(burst, &end2, 10);
    if (*rate == '\0' || *burst == '\0' || *end1 != '\0' || *end2 != '\0' || !(r > 0 && r <= 1e6) ||
        b < 0 || b > 1000000 || !s3_valid_bucket(bucket)) {
        limit_usage();
        return 2;
    }
    char key[RQ_KEY_MAX];
    snprintf(key, sizeof key, "pixq:rl:{%s}", bucket);
    struct err e = {{0}};
    redisReply *rep = rq_command(a->rq, &e, "HSET %s rate %s burst %ld", key, rate, b);
    if (rep != NULL) {
        freeReplyObject(rq_command(a->rq, &e, "PERSIST %s", key));
    }
    freeReplyObject(rep);
    if (rep == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return 1;
    }
    printf("%s: %g PUT/s, burst %ld (fleet-wide, now)\n", bucket, r, b);
    return 0;
}

static int limit_reset(struct admin *a, const char *bucket)
{
    if (!s3_valid_bucket(bucket)) {
        limit_usage();
        return 2;
    }
    char key[RQ_KEY_MAX];
    snprintf(key, sizeof key, "pixq:rl:{%s}", bucket);
    struct err e = {{0}};
    redisReply *rep = rq_command(a->rq, &e, "HDEL %s rate burst", key);
    if (rep == NULL) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return 1;
    }
    freeReplyObject(rep);
    printf("%s: back to the default rate\n", bucket);
    return 0;
}

int limit_main(const struct cfg *cfg, int argc, char **argv)
{
    const char *cmd = argc >= 2 ? argv[1] : "";
    bool show =
        strcmp(cmd, "show") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0));
    bool set = strcmp(cmd, "set") == 0 && argc == 5;
    bool reset = strcmp(cmd, "reset") == 0 && argc == 3;
    if (!show && !set && !reset) {
        limit_usage();
        return 2;
    }
    struct admin a;
    if (open_admin(cfg, &a) < 0) {
        return 1;
    }
    int rc = show  ? limit_show(&a, cfg, argc == 3)
             : set ? limit_set(&a, argv[2], argv[3], argv[4])
                   : limit_reset(&a, argv[2]);
    rq_destroy(a.rq);
    return rc;
}
