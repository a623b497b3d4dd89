#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

static int output_errno; /* the first failed write's, 0 if none */

int cli_flush(void)
{
    int saved = errno;
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        output_errno = output_errno != 0 ? output_errno : errno != 0 ? errno : EIO;
    }
    errno = saved;
    return output_errno != 0 ? -1 : 0;
}

int cli_output_errno(void)
{
    (void)cli_flush();
    return output_errno;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return true;
        }
    }
    return false;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pixq: %s: %s (usage: pixq %s --help)\n", cmd, reason, cmd);
    return CLI_USAGE;
}

int cli_fail(const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pixq: %s\n", reason);
    return CLI_FAILED;
}

bool cli_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

bool cli_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

int cli_queues(const struct cfg *cfg, struct cfg_queues *q)
{
    struct err e = {{0}};
    if (cfg_queues(cfg->queue, q, &e) < 0) {
        cli_fail("%s", e.msg);
        return -1;
    }
    return 0;
}

struct rq *cli_connect(const struct cfg *cfg, struct err *e)
{
    struct rq *r = rq_create(cfg->redis_url, cfg->redis_timeout_ms, e);
    struct rq_server info;
    if (r != NULL && rq_server_check(r, &info, e) < 0) {
        rq_destroy(r);
        return NULL;
    }
    if (r != NULL) {
        rq_set_reconnect_log_level(r, LOG_LEVEL_DEBUG); /* the outage lines say it (outage.h) */
    }
    return r;
}

void cli_print_json(json_object *o)
{
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t valid = 0, len;
        while (i + valid < n && (len = utf8_seq(u + i + valid, n - i - valid)) > 0) {
            valid += len;
        }
        fwrite(u + i, 1, valid, stdout);
        i += valid;
        if (i < n) { /* json-c writes a string's bytes as they are: only a string has such a one */
            printf("\\\\x%02x", u[i++]);
        }
    }
    putchar('\n');
}

json_object *cli_get(json_object *o, const char *k)
{
    return json_object_object_get(o, k);
}

long long cli_int(json_object *o, const char *k)
{
    return json_object_get_int64(json_object_object_get(o, k));
}

const char *cli_str(json_object *o, const char *k, const char *absent)
{
    json_object *v = json_object_object_get(o, k);
    return v != NULL ? json_object_get_string(v) : absent;
}

char *cli_printable(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    char *out = malloc(4 * n + 1); /* at worst, every byte as \xNN */
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(u + i, n - i);
        bool c1 = len == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0; /* U+0080 to U+009F */
        if (len == 0 || c1 || u[i] < 0x20 || u[i] == 0x7f) {
            len = len == 0 ? 1 : len;
            for (size_t k = 0; k < len; k++) {
                o += (size_t)snprintf(out + o, 5, "\\x%02x", u[i + k]);
            }
        } else {
            memcpy(out + o, s + i, len);
            o += len;
        }
        i += len;
    }
    out[o] = '\0';
    return out;
}

void cli_iso_utc(long long ms, char *out, size_t cap)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    if (ms <= 0 || gmtime_r(&sec, &tm) == NULL ||
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, cap, "(unknown time)");
        return;
    }
    snprintf(out, cap, "%s.%03lldZ", base, ms % 1000);
}
