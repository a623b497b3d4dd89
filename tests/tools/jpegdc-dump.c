/* jpegdc-dump FILE [MAX_PIXELS]: decodes a progressive JPEG at 1/8 with worker/jpegdc.c and writes
 * it to standard output as a binary PNM (P6, or P5 for grey), to compare with `djpeg -scale 1/8`.
 * MAX_PIXELS (default 2^30) is the decoder's limit. Exit 0, 3 when the decoder declines the file
 * (the reason on standard error), 1 on errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpegdc.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t cap = 0;
    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (*len == cap) {
            cap = cap != 0 ? cap * 2 : 1 << 16;
            unsigned char *more = realloc(data, cap);
            if (more == NULL) {
                break;
            }
            data = more;
        }
        size_t n = fread(data + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            fclose(f);
            return data;
        }
    }
    fclose(f);
    free(data);
    return NULL;
}

int main(int argc, char **argv)
{
    char *rest = NULL;
    long max_pixels = argc == 3 ? strtol(argv[2], &rest, 10) : 1L << 30;
    if (argc < 2 || argc > 3 || (rest != NULL && (*rest != '\0' || rest == argv[2]))) {
        fprintf(stderr, "usage: jpegdc-dump FILE [MAX_PIXELS]\n");
        return 1;
    }
    size_t len;
    unsigned char *data = slurp(argv[1], &len);
    if (data == NULL) {
        perror(argv[1]);
        return 1;
    }
    /* the decoder reads the file's bytes alone: a buffer of that size, for a read past it to
     * show under ASan or valgrind (slurp's has room to spare) */
    unsigned char *exact = malloc(len != 0 ? len : 1);
    if (exact == NULL) {
        free(data);
        perror(argv[1]);
        return 1;
    }
    if (len != 0) {
        memcpy(exact, data, len);
    }
    free(data);
    struct jpegdc_image img;
    const char *why = NULL;
    int rc = jpegdc_decode(exact, len, max_pixels, &img, &why);
    free(exact);
    if (rc < 0) {
        fprintf(stderr, "declined: %s\n", why != NULL ? why : "(no reason)");
        return 3;
    }
    printf("P%d\n%ld %ld\n255\n", img.channels == 1 ? 5 : 6, img.width, img.height);
    fwrite(img.pixels, 1, (size_t)(img.width * img.height * img.channels), stdout);
    jpegdc_free(&img);
    return fflush(stdout) == 0 ? 0 : 1;
}
