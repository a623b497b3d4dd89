/* prom: `pixq stats --prometheus`, the Prometheus text exposition format (0.0.4) of what stats.c
 * collected. */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stats.h"
#include "utf8.h"

/* Writes `v` as a label value: backslash, double quote and line feed escaped, and each byte that
 * is not part of valid UTF-8 as the text \xNN (label values are UTF-8: a name some client wrote
 * in Redis with such a byte would fail the whole exposition). */
static void label_value(FILE *out, const char *v)
{
    const unsigned char *u = (const unsigned char *)v;
    size_t n = strlen(v);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(u + i, n - i);
        if (len == 0) {
            fprintf(out, "\\\\x%02x", u[i]); /* the text \xNN, its backslash escaped */
            len = 1;
        } else if (u[i] == '\\' || u[i] == '"') {
            fprintf(out, "\\%c", u[i]);
        } else if (u[i] == '\n') {
            fputs("\\n", out);
        } else {
            fwrite(u + i, 1, len, out);
        }
        i += len;
    }
}

static void family(const char *name, const char *type, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1"[,k2="v2"]} value */
static void sample(const char *name, const char *k1, const char *v1, const char *k2, const char *v2,
                   double value)
{
    printf("%s{%s=\"", name, k1);
    label_value(stdout, v1);
    if (k2 != NULL) {
        printf("\",%s=\"", k2);
        label_value(stdout, v2);
    }
    printf("\"} %.15g\n", value);
}

/* One gauge per queue from a numeric field of its stats. */
static void queue_gauge(json_object *queues, const char *name, const char *field, const char *help)
{
    family(name, "gauge", help);
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i);
        sample(name, "queue", cli_str(q, "queue", ""), NULL, NULL, (double)cli_int(q, field));
    }
}

static void prom_queue_details(json_object *queues)
{
    family("pixq_queue_oldest_job_age_seconds", "gauge",
           "Age of the job at the consuming end of the queue (stamped jobs only).");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i), *old = cli_get(q, "oldest_job");
        if (old != NULL && cli_get(old, "age_ms") != NULL) {
            sample("pixq_queue_oldest_job_age_seconds", "queue", cli_str(q, "queue", ""), NULL,
                   NULL, (double)cli_int(old, "age_ms") / 1000.0);
        }
    }
    family("pixq_queue_next_delayed_seconds", "gauge",
           "Seconds until the earliest delayed entry is due; negative: overdue, not promoted.");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i), *due = cli_get(q, "next_delayed_ms");
        if (due != NULL) {
            sample("pixq_queue_next_delayed_seconds", "queue", cli_str(q, "queue", ""), NULL, NULL,
                   (double)json_object_get_int64(due) / 1000.0);
        }
    }
    family("pixq_queue_jobs_last_minute", "gauge", "Jobs settled in the last 60 s, by outcome.");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i), *t = cli_get(q, "throughput");
        for (int k = 0; k < 2; k++) {
            const char *outcome = k == 0 ? "succeeded" : "failed";
            sample("pixq_queue_jobs_last_minute", "queue", cli_str(q, "queue", ""), "outcome",
                   outcome, (double)cli_int(t, outcome));
        }
    }
    family("pixq_queue_events_total", "counter", "The queue's counters (pixq:{Q}:stats).");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i);
        json_object_object_foreach(cli_get(q, "counters"), name, v)
        {
            if (strcmp(name, "uploaded_bytes") != 0) {
                sample("pixq_queue_events_total", "queue", cli_str(q, "queue", ""), "event", name,
                       (double)json_object_get_int64(v));
            }
        }
    }
    family("pixq_queue_uploaded_bytes_total", "counter",
           "Bytes of outputs uploaded for the queue's jobs (pixq:{Q}:stats uploaded_bytes).");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i);
        json_object *v = cli_get(cli_get(q, "counters"), "uploaded_bytes");
        sample("pixq_queue_uploaded_bytes_total", "queue", cli_str(q, "queue", ""), NULL, NULL,
               v != NULL ? (double)json_object_get_int64(v) : 0);
    }
}

static void prom_workers(json_object *queues)
{
    family("pixq_worker_jobs", "gauge", "Entries on a registered worker's active list.");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *q = json_object_array_get_idx(queues, i), *ws = cli_get(q, "workers");
        for (size_t k = 0; k < json_object_array_length(ws); k++) {
            json_object *w = json_object_array_get_idx(ws, k);
            sample("pixq_worker_jobs", "queue", cli_str(q, "queue", ""), "worker",
                   cli_str(w, "id", ""), (double)json_object_array_length(cli_get(w, "jobs")));
        }
    }
}

/* One family per limiter field, a sample per bucket. */
static void prom_limits(json_object *limits)
{
    static const struct {
        const char *name, *field, *type, *help;
        double scale;
    } fams[] = {
        {"pixq_bucket_rate", "rate", "gauge", "Configured upload rate, PUT/s.", 1},
        {"pixq_bucket_burst", "burst", "gauge", "Configured burst, PUTs.", 1},
        {"pixq_bucket_effective_rate", "effective_rate", "gauge",
         "Rate after adaptive slowing, PUT/s.", 1},
        {"pixq_bucket_backlog_seconds", "backlog_ms", "gauge",
         "How far ahead the upload slots are taken (uploads wait past burst intervals).", 0.001},
        {"pixq_bucket_throttle_signals_total", "throttle_signals", "counter",
         "Throttling answers (503, 429) seen from S3.", 1},
        {"pixq_bucket_decreases_total", "decreases", "counter",
         "Times the adaptive limiter lowered the rate.", 1},
        {"pixq_bucket_replans_total", "replans", "counter",
         "Times the rate climbed back and the parked uploads were brought forward.", 1},
        {"pixq_bucket_override", "override", "gauge", "1 if an operator set rate or burst.", 1},
    };
    for (size_t f = 0; f < sizeof fams / sizeof *fams; f++) {
        family(fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < json_object_array_length(limits); i++) {
            json_object *b = json_object_array_get_idx(limits, i), *v = cli_get(b, fams[f].field);
            double x = json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v)
                                                                 : json_object_get_double(v);
            sample(fams[f].name, "bucket", cli_str(b, "bucket", ""), NULL, NULL, x * fams[f].scale);
        }
    }
}

/* Redis's memory and eviction policy (no samples when the server refused INFO or did not
 * say). */
static void prom_redis(json_object *r)
{
    json_object *used = cli_get(r, "used_memory"), *max = cli_get(r, "maxmemory");
    family("pixq_redis_used_memory_bytes", "gauge",
           "Redis's memory as it compares it with maxmemory (INFO used_memory less "
           "mem_not_counted_for_evict).");
    if (used != NULL) {
        printf("pixq_redis_used_memory_bytes %lld\n", stats_redis_counted(r));
    }
    family("pixq_redis_maxmemory_bytes", "gauge", "Redis's maxmemory (0: none).");
    if (max != NULL) {
        printf("pixq_redis_maxmemory_bytes %lld\n", cli_int(r, "maxmemory"));
    }
    family("pixq_redis_full", "gauge",
           "1 while Redis is past maxmemory: under noeviction it refuses producers' pushes and "
           "workers take no fresh job.");
    if (used != NULL) {
        printf("pixq_redis_full %d\n", json_object_get_boolean(cli_get(r, "full")) ? 1 : 0);
    }
    family("pixq_redis_maxmemory_policy", "gauge",
           "1, with Redis's maxmemory-policy as the label: past maxmemory allkeys-* evicts any "
           "key, a queue among them; volatile-* keys with a TTL; noeviction none.");
    json_object *policy = cli_get(r, "maxmemory_policy");
    if (policy != NULL) {
        sample("pixq_redis_maxmemory_policy", "policy", json_object_get_string(policy), NULL, NULL,
               1);
    }
}

void stats_print_prometheus(json_object *s)
{
    json_object *queues = cli_get(s, "queues");
    queue_gauge(queues, "pixq_queue_jobs", "jobs", "Jobs waiting in pixq:{Q}:jobs.");
    queue_gauge(queues, "pixq_queue_delayed", "delayed", "Entries in pixq:{Q}:delayed.");
    queue_gauge(queues, "pixq_queue_dead", "dead", "Entries in pixq:{Q}:dead.");
    queue_gauge(queues, "pixq_queue_active", "active", "Entries on the workers' active lists.");
    queue_gauge(queues, "pixq_queue_parked_bytes", "parked_bytes",
                "Bytes of the queue's outputs parked in Redis (PIXQ_MAX_PARKED_MB).");
    queue_gauge(queues, "pixq_queue_live_workers", "live_workers", "Workers with a valid lease.");
    prom_queue_details(queues);
    prom_workers(queues);
    family("pixq_live_workers", "gauge", "Live workers of all the queues, each counted once.");
    printf("pixq_live_workers %lld\n", cli_int(s, "live_workers"));
    prom_limits(cli_get(s, "limits"));
    prom_redis(cli_get(s, "redis"));
}
