#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
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

/* Copies `n` bytes of one name without surrounding blanks into `out`. Returns 0 or -1. */
static int add_queue(struct cli_queues *q, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n == 0 || n >= CLI_QUEUE_NAME_MAX || q->n == CLI_QUEUES_MAX) {
        return -1;
    }
    memcpy(q->name[q->n], s, n);
    q->name[q->n++][n] = '\0';
    return 0;
}

int cli_queues(const struct cfg *cfg, struct cli_queues *q)
{
    q->n = 0;
    const char *s = cfg->queue;
    for (;;) {
        size_t n = strcspn(s, ",");
        if (add_queue(q, s, n) < 0) {
            cli_fail("PIXQ_QUEUE '%.200s': expected 1 to %d comma-separated names of 1 to %d "
                     "bytes",
                     cfg->queue, CLI_QUEUES_MAX, CLI_QUEUE_NAME_MAX - 1);
            return -1;
        }
        if (s[n] == '\0') {
            return 0;
        }
        s += n + 1;
    }
}

void cli_print_json(json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
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
