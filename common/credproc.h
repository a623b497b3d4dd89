/* credproc: S3 keys from a program, as a credentials file's profile names it with
 * `credential_process` (IAM Roles Anywhere's aws_signing_helper, a vault's helper, a company's
 * own): the program writes JSON on its standard output, {"Version": 1, "AccessKeyId",
 * "SecretAccessKey", "SessionToken", "Expiration"}, and ends with status 0.
 *
 * The command is split into words as the AWS CLI splits it (Python's shlex: blanks between
 * words, '...' and "..." quoting, a backslash escaping the next character, within "..." only a
 * backslash or a quote) and run without a shell, as the AWS CLI runs it (no variables, `~`,
 * pipes or redirections): the program is
 * looked for on PATH, gets the worker's environment less pixq's own settings (PIXQ_*, which hold
 * Redis's password and the postback secret), /dev/null for its input, and a process group of
 * its own, which is killed whole when it runs out of time. The program gets SIGKILL when the
 * thread that ran it ends (the worker killed): call credproc_run() from a thread that lives as
 * long as the process, as the worker's main thread does. */
#ifndef PIXQ_CREDPROC_H
#define PIXQ_CREDPROC_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

#define CREDPROC_ARGS_MAX   256         /* words in a command */
#define CREDPROC_OUTPUT_MAX (64 * 1024) /* bytes of standard output read */
#define CREDPROC_STDERR_MAX 512         /* bytes of standard error kept for the message */

/* A command's words: argv[argc] is NULL. */
struct credproc_argv {
    char **argv;
    size_t argc;
    char *text; /* the words' bytes */
};

/* Splits `cmd` into words. Returns 0, or -1 with why (an unterminated quote, a backslash at the
 * end, no word, more than CREDPROC_ARGS_MAX). */
int credproc_split(const char *cmd, struct credproc_argv *out, struct err *e);

void credproc_argv_free(struct credproc_argv *a);

/* Whether the program of `cmd` can be run: found on PATH (or at its path, with a '/'), a file
 * this process may execute. Returns 0, or -1 with why. */
int credproc_check(const char *cmd, struct err *e);

/* Runs `cmd` and puts what it wrote on its standard output into `out` (at most
 * CREDPROC_OUTPUT_MAX bytes). Returns 0 when it ended with status 0 within `timeout_ms`; else
 * -1 with why: it could not be run, it ran out of time (its process group is killed), wrote too
 * much, ended with another status or by a signal (with the start of what it wrote on its
 * standard error). */
int credproc_run(const char *cmd, long timeout_ms, struct buf *out, struct err *e);

#endif
