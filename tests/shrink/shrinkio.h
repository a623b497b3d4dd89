/* Helpers the C tests and tools of tests/shrink share. */
#ifndef PIXQ_TESTS_SHRINKIO_H
#define PIXQ_TESTS_SHRINKIO_H

#include <stddef.h>
#include <wand/MagickWand.h>

/* The whole file at `path` (free()), `*len` bytes; empty (0 bytes) when it cannot be read. */
unsigned char *shrinkio_slurp(const char *path, size_t *len);

/* The image at `path` read by ImageMagick, the format named from its extension (.jpg, .png,
 * .webp: the image guard reads only a named format), or NULL. */
MagickWand *shrinkio_read(const char *path);

struct cfg;

/* The configuration from the environment (PIXQ_*) into `cfg`, and ImageMagick started with it
 * (img_start()): 0, or -1 with the reason on standard error after "`who`: ". */
int shrinkio_start(const char *who, struct cfg *cfg);

#endif
