/* fuzz_image: libFuzzer target for what a source's bytes go through in the worker.
 *
 * Each input is a downloaded source: the image guard and decoding (img_decode(): sniff, the
 * explicit-format ping of every frame, the first frame's decode) under pixq's security policy and
 * resource limits (img_start(), with every format pixq can enable, so that every decoder it may
 * use is reached), then what every job does with a source: original_meta with all of its EXIF,
 * auto-orient, a small resize through img_resize() (resize.c, or ImageMagick's where it
 * declines; a small image is enlarged when the input's last byte has bit 3 set), and an encode
 * whose format the input's last byte picks. The limits are pixq's defaults scaled down (1 MP, 16
 * frames, 64 MiB of memory) so that an input runs in milliseconds; the code paths are the same.
 * Built only with -Dfuzz=true (scripts/fuzz). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "source.h"

#define FUZZ_MAX_PIXELS 1000000L
#define FUZZ_THUMB_SIDE 32 /* the resize's box, pixels */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_threshold = LOG_LEVEL_ERROR;
    const struct img_config c = {
        .formats = (1u << SNIFF_N_FORMATS) - 2, /* every format but SNIFF_OTHER */
        .max_pixels = FUZZ_MAX_PIXELS,
        .max_frames = 16,
        .memory_mb = 64,
        .map_mb = 128,
        .disk_mb = 0,
        .time_s = 5, /* under libFuzzer's -timeout: a slow input hits pixq's deadline first */
    };
    struct err e = {{0}};
    if (img_start(&c, &e) < 0) {
        __builtin_trap(); /* the guard itself failed: nothing to fuzz */
    }
    return 0;
}

/* original_meta as a job asking for everything would get it. */
static void describe(MagickWand *w, const uint8_t *data, size_t size, long width, long height)
{
    struct job j;
    memset(&j, 0, sizeof j);
    j.get_exif = true;
    j.extended_metadata = true;
    j.hash = "crc32";
    struct src_image im = {.wand = w, .width = width, .height = height};
    buf_init(&im.bytes, 0);
    if (buf_append(&im.bytes, data, size) == 0) {
        struct err e = {{0}};
        json_object_put(src_describe(&j, &im, &e));
    }
    buf_finish(&im.bytes);
}

/* Auto-orient, shrink into a small box, encode. */
static void thumbnail(MagickWand *w, uint8_t pick)
{
    static const char *const formats[] = {"png", "jpg", "webp", "gif"};
    struct err e = {{0}};
    if (img_auto_orient(w, &e) < 0) {
        return;
    }
    size_t cw = MagickGetImageWidth(w), ch = MagickGetImageHeight(w);
    size_t tw = cw > FUZZ_THUMB_SIDE ? FUZZ_THUMB_SIDE : cw;
    size_t th = ch > FUZZ_THUMB_SIDE ? FUZZ_THUMB_SIDE : ch;
    if ((pick & 8) != 0) { /* a small image enlarged instead (resize.c's Mitchell) */
        tw = cw < FUZZ_THUMB_SIDE ? cw * 2 : tw;
        th = ch < FUZZ_THUMB_SIDE ? ch * 2 : th;
    }
    /* the worker's resize: resize.c where it takes the image, else ImageMagick's */
    if (tw == 0 || th == 0 || img_resize(w, (long)tw, (long)th, "resize", &e) < 0) {
        return;
    }
    struct job_save save;
    memset(&save, 0, sizeof save);
    save.image_identifier = "fuzz";
    snprintf(save.format, sizeof save.format, "%s", formats[pick % 4]);
    save.png_quantize = (pick & 4) != 0;
    struct img_output out;
    if (img_encode(w, &save, 75, 1 << 20, &out, &e) == 0) {
        img_output_finish(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long width = 0, height = 0;
    struct err e = {{0}};
    MagickWand *w = img_decode(data, size, FUZZ_MAX_PIXELS, &width, &height, &e);
    if (w == NULL) {
        return 0;
    }
    describe(w, data, size, width, height);
    thumbnail(w, size > 0 ? data[size - 1] : 0);
    DestroyMagickWand(w);
    return 0;
}
