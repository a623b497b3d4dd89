/* fuzz_image: libFuzzer target for what a source's bytes go through in the worker.
 *
 * Each input is a downloaded source: the image guard and decoding (img_decode(): sniff, the
 * explicit-format ping of every frame, the first frame's decode) under pixq's security policy and
 * resource limits (img_start(), with every format pixq can enable, so that every decoder it may
 * use is reached), then what every job does with a source: original_meta with all of its EXIF,
 * auto-orient, a small resize through img_resize() (resize.c, or ImageMagick's where it
 * declines; a small image is enlarged when the input's last byte has bit 3 set), and an encode
 * whose format the input's last byte picks (bit 4: keeping the metadata; bit 5: with set_exif's
 * tags merged into it). The limits are pixq's defaults scaled down (1 MP, 16
 * frames, 64 MiB of memory) so that an input runs in milliseconds; the code paths are the same.
 * Built only with -Dfuzz=true (scripts/fuzz). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "source.h"
#include "tmpdir.h"

#define FUZZ_MAX_PIXELS 1000000L
#define FUZZ_THUMB_SIDE 32 /* the resize's box, pixels */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

/* The sanitizers' settings of this target are built in, so that a replay by hand
 * (build-fuzz/tests/fuzz/fuzz_image FILE) gets them as scripts/fuzz does.
 *
 * ImageMagick's libraries have no frame pointers: ASan's fast unwinder stops at their first
 * frame (AcquireAlignedMemory, say), and no suppression could name the caller. The full unwinder
 * costs this target 30 % of its executions. */
const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}

/* Third-party leaks on corrupt input, which pixq cannot fix. As in tests/lsan.supp: never pixq's
 * own code, each as narrowly as the report allows, with the report that made it necessary.
 *
 * libdav1d 1.0.0 (Debian 12), the AV1 decoder libheif 1.15.1 uses for AVIF: a corrupt AVIF makes
 * dav1d_send_data() fail ("Input validation check 'in->data == NULL || in->sz' failed") and 40
 * bytes from dav1d's posix_memalign are never freed (leak-983eb372..., about 30000 executions
 * in; not reproducible from the input alone: it depends on dav1d's state).
 *
 * ImageMagick 6.9.11.60's HEIC reader (Debian 12): when a HEIC image's pixel cache cannot be
 * allocated within the resource limits (here 64 MiB of memory and no disk), SetImageColorspace()
 * fails inside the reader, which returns no image and no exception, and the 1536 bytes of the
 * cache's nexus from AcquireAlignedMemory() are never freed, at every read (the CI run of 76dcd9a,
 * leak-23c64214...; seeds/fuzz_image/regress-heic-cache-fail-leak, one bit away from a committed
 * seed, leaks the same under valgrind through MagickWand alone with those two limits). Named by
 * SetImageColorspace, the last exported function in the stack (the reader's are static): a leak
 * of a whole image by pixq would still be reported, by the image itself.
 *
 * AVIF and HEIC are off by default (PIXQ_IMAGE_FORMATS); the fuzzer enables every format. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libdav1d.so\n"
           "leak:SetImageColorspace\n";
}

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
        .exif_max_values = 1000000,
        .metadata_max_mb = 64,
        .xmp_max_elements = 20000,
    };
    struct err e = {{0}};
    if (img_start(&c, &e) < 0) {
        __builtin_trap(); /* the guard itself failed: nothing to fuzz */
    }
    /* libFuzzer ends a run with exit(): the temporary directory img_start() made goes with it
     * (it stayed behind, empty, after every run of scripts/fuzz) */
    atexit(tmpdir_finish);
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
    /* bit 4 keeps the source's metadata; bit 5 merges set_exif's tags into it (settags.c) */
    save.save_metadata = (pick & 16) != 0;
    static json_object *tags[2];
    if (tags[0] == NULL) {
        tags[0] = json_tokener_parse("{\"Copyright\": \"(c) fuzz\", \"Make\": \"\", "
                                     "\"Keywords\": [\"k1\", \"k2\"], \"ObjectName\": null}");
        tags[1] = json_tokener_parse("{\"Copyright\": \"(c) fuzz\", \"Make\": \"\"}");
    }
    if ((pick & 32) != 0 && pick % 4 != 3) {
        save.set_exif = tags[pick % 4 == 2]; /* a WebP holds no IPTC */
    }
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
