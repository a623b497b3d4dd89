/* id: random identifiers for jobs and workers. */
#ifndef PIXQ_ID_H
#define PIXQ_ID_H

#include <stddef.h>

#define ID_JOB_LEN 24 /* 23 chars of a Blitline-style job id, plus NUL */

/* Fills `out` with a new job id: one digit then 22 chars of URL-safe base64 of 16 random bytes,
 * the shape of Blitline's ids ("2m-Ir2YMXQ3yec0NV476xag"). Returns 0, or -1 if the system's
 * random source failed. */
int id_job(char out[ID_JOB_LEN]);

/* Fills `out` (`cap` bytes) with "host:pid:8 random hex", a worker id never reused. */
int id_worker(char *out, size_t cap);

#endif
