/* Helpers the C tests and tools of tests/shrink share (shrinkio.h). */
#include "shrinkio.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg.h"
#include "err.h"
#include "image.h"

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

MagickWand *shrinkio_read(const char *path)
{
    const char *ext = strrchr(path, '.');
    const char *format = ext == NULL                 ? ""
                         : strcmp(ext, ".jpg") == 0  ? "JPEG"
                         : strcmp(ext, ".png") == 0  ? "PNG"
                         : strcmp(ext, ".webp") == 0 ? "WEBP"
                                                     : "";
    size_t len = 0;
    unsigned char *bytes = shrinkio_slurp(path, &len);
    MagickWand *w = NewMagickWand();
    bool read = len > 0 && MagickSetFormat(w, format) == MagickTrue &&
                MagickReadImageBlob(w, bytes, len) == MagickTrue;
    free(bytes);
    return read ? w : DestroyMagickWand(w);
}

static const char *env(const char *name)
{
    return getenv(name);
}

int shrinkio_start(const char *who, struct cfg *cfg)
{
    struct img_config ic;
    struct err e = {{0}};
    cfg_defaults(cfg);
    if (cfg_load_env(cfg, env, &e) < 0 || img_config_from(cfg, &ic, &e) < 0 ||
        img_start(&ic, &e) < 0) {
        fprintf(stderr, "%s: %s\n", who, e.msg);
        return -1;
    }
    return 0;
}
