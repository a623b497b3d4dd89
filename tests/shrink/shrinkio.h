/* Helpers the C tests and tools of tests/shrink share. */
#ifndef PIXQ_TESTS_SHRINKIO_H
#define PIXQ_TESTS_SHRINKIO_H

#include <stddef.h>

/* The whole file at `path` (free()), `*len` bytes; empty (0 bytes) when it cannot be read. */
unsigned char *shrinkio_slurp(const char *path, size_t *len);

/* getenv() in the form cfg_load_env() takes. */
const char *shrinkio_env(const char *name);

#endif
