/* pixq: the command line. main() loads the configuration and hands the command to its module:
 * submit (submit.c), stats and queues (stats.c), job (jobinfo.c), dead and limit (admin.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cfg.h"
#include "cli.h"
#include "jobinfo.h"
#include "log.h"
#include "stats.h"
#include "submit.h"
#include "version.h"

static const struct command {
    const char *name;
    int (*run)(const struct cfg *cfg, int argc, char **argv);
    const char *synopsis;
} commands[] = {
    {"submit", submit_main,
     "submit FILE|-... [--wait] [--timeout S] [--delay MS] [--json] [--no-progress]\n"
     "      [--progress-interval S]\n"
     "      validate jobs (one job, a JSON array or JSON lines per file), enqueue them,\n"
     "      print their ids; --wait shows progress and prints each result"},
    {"stats", stats_main,
     "stats [--json | --prometheus] [--watch [SECONDS] [--count N]]\n"
     "      every queue of PIXQ_QUEUE: depths, oldest job, last minute's throughput,\n"
     "      workers and their jobs; per-bucket limiter state"},
    {"queues", queues_main,
     "queues [--json]\n"
     "      the queues found in Redis and their depths"},
    {"job", job_main,
     "job JOB_ID [--json] [--scan N] [--wait [--timeout S]]\n"
     "      where a job is and what became of it: on a worker, waiting, delayed,\n"
     "      its result, its postback, its dead entry"},
    {"dead", dead_main,
     "dead list [--limit N] [--json] | dead retry all|[--] JOB_ID\n"
     "      | dead purge [all|--no-id|[--] JOB_ID]\n"
     "      inspect, re-run or drop the jobs that failed for good"},
    {"limit", limit_main,
     "limit show [--json] | limit set BUCKET RATE BURST | limit reset BUCKET\n"
     "      the upload rate limits per S3 bucket, shared by the whole fleet"},
};

#define N_COMMANDS (sizeof commands / sizeof *commands)

static void usage(void)
{
    printf("usage: pixq [--config FILE] [--SETTING VALUE]... COMMAND [ARGS]\n"
           "       pixq --version\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        printf("  %s\n", commands[i].synopsis);
    }
    printf("\n`pixq COMMAND --help` describes a command. Exit status: 0 done, 1 the operation\n"
           "failed (a job failed, Redis unreachable...), 2 bad usage.\n\n");
    cfg_usage(stdout);
}

/* What help the command line asks for: HELP_NONE, HELP_PIXQ (--help or -h before the command
 * word), or the index in commands[] of the command whose --help or -h follows it. */
#define HELP_NONE (-2)
#define HELP_PIXQ (-1)

static int wants_help(int argc, char **argv)
{
    int cmd = HELP_PIXQ;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return cmd;
        }
        /* as cfg_load(): a boolean word is a switch's value only before the command word */
        const char *next = cmd == HELP_PIXQ && i + 1 < argc ? argv[i + 1] : NULL;
        if (cfg_flag_values(argv[i], next) > 0) {
            i++; /* a setting's value, never the command word */
            continue;
        }
        for (size_t k = 0; cmd == HELP_PIXQ && k < N_COMMANDS; k++) {
            if (strcmp(argv[i], commands[k].name) == 0) {
                cmd = (int)k;
            }
        }
    }
    return HELP_NONE;
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

extern char **environ;

/* PIXQ_LOG_LEVEL and PIXQ_LOG_FORMAT, as the worker reads them: at debug level every Redis
 * command's round trip is one line on stderr (common/rq.c). */
static void setup_logging(const struct cfg *cfg)
{
    log_threshold = (enum log_level)cfg->log_level;
    enum log_format f = LOG_FORMAT_TEXT;
    if (log_parse_format(cfg->log_format, &f) == 0) { /* cfg accepts nothing else */
        log_output = f;
    }
}

static void warn_unknown(const char *name, void *user)
{
    (void)user;
    fprintf(stderr, "pixq: warning: %s in the environment is not a setting (ignored)\n", name);
}

/* The exit status of command `cmd`, which returned `rc`, once what it printed has been written
 * out: stdout that could not take it (a full disk, a file closed or too large) is a failure,
 * status 1 where it was 0, so that `pixq stats --prometheus > f.tmp && mv f.tmp f` does not move
 * an empty or cut file into place. Whether the command did its work is said: `submit` enqueued
 * its jobs though their ids are lost. */
static int output_written(const char *cmd, int rc)
{
    int why = cli_output_errno();
    if (why == 0) {
        return rc;
    }
    fprintf(stderr, "pixq: %s: cannot write to stdout: %s (%sits output is lost or cut short)\n",
            cmd, strerror(why), rc == CLI_OK ? "the command did its work; " : "");
    return rc == CLI_OK ? CLI_FAILED : rc;
}

/* A standard descriptor the caller closed (`pixq stats >&-`) opened on /dev/null the wrong way
 * round, so that what is read or written there fails as it would have (status 1: "cannot read
 * -", "cannot write to stdout"), where the connection to Redis took its number and a command's
 * output went to Redis as commands (status 0). */
static void hold_std_fds(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            (void)open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY); /* takes `fd` */
        }
    }
}

int main(int argc, char **argv)
{
    hold_std_fds();
    if (argc == 2 && strcmp(argv[1], "--version") == 0) { /* needs no configuration */
        printf("pixq %s (revision %s)\n", PIXQ_VERSION, PIXQ_REVISION);
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
    }
    struct cfg cfg;
    struct err e = {{0}};
    int help = wants_help(argc, argv); /* before cfg_load() moves the arguments */
    if (cfg_load(&cfg, &argc, argv, env_lookup, &e) < 0) {
        fprintf(stderr, "pixq: %s\n", e.msg);
        /* help still answers: the settings it describes may be what the reader came to fix */
        if (help == HELP_PIXQ) {
            usage();
            return CLI_OK;
        }
        if (help >= 0) { /* a command answers --help before it looks at the settings */
            char *hargv[] = {(char *)commands[help].name, "--help", NULL};
            cfg_defaults(&cfg);
            return commands[help].run(&cfg, 2, hargv);
        }
        return CLI_USAGE;
    }
    setup_logging(&cfg);
    cfg_unknown_env(environ, warn_unknown, NULL);
    if (argc < 2) {
        fprintf(stderr, "pixq: a command is needed: submit, stats, queues, job, dead or limit "
                        "(usage: pixq --help)\n");
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        return CLI_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return output_written(argv[1], commands[i].run(&cfg, argc - 1, argv + 1));
        }
    }
    /* cfg_load() took every setting it knows before the command: a dash left there is none */
    fprintf(stderr, "pixq: unknown %s '%s' (usage: pixq --help)\n",
            argv[1][0] == '-' ? "option" : "command", argv[1]);
    return CLI_USAGE;
}
