/* submit: `pixq submit FILE|-... [--wait] [--timeout SECONDS] [--delay MS] [--json]`. */
#ifndef PIXQ_SUBMIT_H
#define PIXQ_SUBMIT_H

#include "cfg.h"

/* Runs the subcommand (argv[0] is "submit"). Returns the exit status: 0 done, 1 a job was
 * invalid, could not be enqueued, timed out or failed, 2 bad usage. */
int submit_main(const struct cfg *cfg, int argc, char **argv);

#endif
