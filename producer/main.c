/* pixq: the command line. `pixq submit` validates jobs, gives each a job_id, enqueues them and
 * optionally waits for their results. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cfg.h"
#include "submit.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: pixq [--config FILE] [--SETTING VALUE]... COMMAND [ARGS]\n\n"
                 "commands:\n"
                 "  submit FILE|- [--wait] [--timeout SECONDS] [--delay MS]\n"
                 "      validate a job (or a JSON array of jobs), give each a job_id, push it\n"
                 "      onto pixq:{QUEUE}:jobs and print the ids; --wait prints each result;\n"
                 "      --delay MS runs them after MS milliseconds\n"
                 "  stats [--json]\n"
                 "      queue depth, delayed and dead jobs, live workers and their jobs, counters\n"
                 "  dead list [--limit N] [--json] | dead retry all|JOB_ID | dead purge [JOB_ID]\n"
                 "      inspect, re-run or drop the jobs that failed for good\n"
                 "  limit show [--json] | limit set BUCKET RATE BURST | limit reset BUCKET\n"
                 "      the upload rate limits per S3 bucket, shared by the whole fleet\n\n");
    cfg_usage(out);
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    struct cfg cfg;
    struct err e = {{0}};
    if (cfg_load(&cfg, &argc, argv, env_lookup, &e) < 0) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        return 2;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "submit") == 0) {
        return submit_main(&cfg, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "stats") == 0) {
        return stats_main(&cfg, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "dead") == 0) {
        return dead_main(&cfg, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "limit") == 0) {
        return limit_main(&cfg, argc - 1, argv + 1);
    }
    fprintf(stderr, "pixq: unknown command '%s' (see --help)\n", argv[1]);
    return 2;
}
