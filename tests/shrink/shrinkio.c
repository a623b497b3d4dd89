/* Helpers the C tests and tools of tests/shrink share (shrinkio.h). */
#include "shrinkio.h"

#include <stdio.h>
#include <stdlib.h>

#include "buf.h"

unsigned char *shrinkio_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    buf_init(&b, 0);
    char chunk[65536];
    size_t n;
    while (f != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_append(&b, chunk, n);
    }
    if (f != NULL) {
        fclose(f);
    }
    *len = b.len;
    return (unsigned char *)buf_take(&b);
}

const char *shrinkio_env(const char *name)
{
    return getenv(name);
}
