/* pngshrink-dump FACTOR FILE [past|MAX_PIXELS]: decodes a PNG shrunk by FACTOR (2, 4 or 8) with
 * worker/pngshrink.c alone and writes it to standard output as "P7 WIDTH HEIGHT CHANNELS\n" then
 * the raw samples (tests/shrink/test_pngshrink.py compares them with its own box average).
 * With "past" the deadline has already passed; MAX_PIXELS is the reader's limit (default 2^30).
 * Exit 0, 3 when the reader declines the file (the reason on standard error), 1 on errors. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pngshrink.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        if (f != NULL) {
            fclose(f);
        }
        return NULL;
    }
    long n = ftell(f);
    /* the file's size exactly (a byte for an empty one): a read past it shows under ASan */
    unsigned char *data = n >= 0 ? malloc(n > 0 ? (size_t)n : 1) : NULL;
    if (data == NULL || fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return data;
}

int main(int argc, char **argv)
{
    bool past = argc == 4 && strcmp(argv[3], "past") == 0;
    char *rest = NULL;
    long max_pixels = argc == 4 && !past ? strtol(argv[3], &rest, 10) : 1L << 30;
    if (argc < 3 || argc > 4 || (rest != NULL && (*rest != '\0' || rest == argv[3]))) {
        fprintf(stderr, "usage: pngshrink-dump FACTOR FILE [past|MAX_PIXELS]\n");
        return 1;
    }
    size_t len = 0;
    unsigned char *data = slurp(argv[2], &len);
    if (data == NULL) {
        perror(argv[2]);
        return 1;
    }
    struct pngshrink_image img;
    const char *why = NULL;
    int factor = (int)strtol(argv[1], NULL, 10);
    long deadline = past ? 1 : 0; /* 1 ms after the monotonic clock's start: past */
    int rc = pngshrink_decode(data, len, factor, max_pixels, deadline, &img, &why);
    free(data);
    if (rc < 0) {
        fprintf(stderr, "declined: %s\n", why != NULL ? why : "(no reason)");
        return 3;
    }
    printf("P7 %ld %ld %d\n", img.width, img.height, img.channels);
    fwrite(img.pixels, 1, (size_t)(img.width * img.height * img.channels), stdout);
    pngshrink_free(&img);
    return fflush(stdout) == 0 ? 0 : 1;
}
