/* image: the bridge to ImageMagick's MagickWand (the only module besides ops.c that includes it).
 *
 * ImageMagick is initialised once per process with one thread (a worker process is one core's
 * worth of work; N processes per machine scale out). Every MagickFalse becomes a -1 with a message,
 * even when ImageMagick gave no exception text. */
#ifndef PIXQ_IMAGE_H
#define PIXQ_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <wand/MagickWand.h>

#include "err.h"
#include "job.h"

struct img_output {
    unsigned char *blob; /* encoded bytes; release with img_output_finish() */
    size_t len;
    long width, height;
    const char *content_type; /* static string: "image/jpeg" */
};

/* Starts ImageMagick for this process (once; later calls do nothing). */
void img_init(void);

/* Stops ImageMagick at process exit. */
void img_shutdown(void);

/* Turns the wand's pending exception into `e` ("what: reason"); always returns -1. */
int img_fail(MagickWand *w, const char *what, struct err *e);

/* Decodes the first frame of an encoded image after checking, from its header alone, that it has
 * at most `max_pixels`. Reports the size in `width`/`height`. Returns a wand to destroy with
 * DestroyMagickWand(), or NULL. */
MagickWand *img_decode(const void *data, size_t len, long max_pixels, long *width, long *height,
                       struct err *e);

/* A new `width` x `height` image filled with `color` (which may be transparent: the image then
 * has an alpha channel). Returns a wand to destroy, or NULL. */
MagickWand *img_solid(long width, long height, const PixelWand *color, struct err *e);

/* Rotates/flips the image upright according to its EXIF orientation. */
int img_auto_orient(MagickWand *w, struct err *e);

/* ImageMagick format and MIME type for an output extension ("jpg" -> "JPEG", "image/jpeg");
 * returns false for formats pixq does not write. */
bool img_format_for(const char *ext, const char **magick, const char **content_type);

/* The MIME type of an ImageMagick format name ("JPEG" -> "image/jpeg"), or
 * "application/octet-stream" for a format pixq does not write (or NULL). */
const char *img_content_type(const char *magick);

/* Encodes the wand's image as `save` asks (format, quality, metadata, interlace, png_quantize);
 * `default_quality` applies when the save gives none. The wand is changed (stripped, quantized):
 * pass a clone if it is used again. Returns 0 or -1. */
int img_encode(MagickWand *w, const struct job_save *save, long default_quality, size_t max_bytes,
               struct img_output *out, struct err *e);

/* Releases what img_encode() produced; safe on a zeroed or finished output. */
void img_output_finish(struct img_output *out);

#endif
