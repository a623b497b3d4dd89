/* webp: still WebP sources decoded by libwebp itself.
 *
 * ImageMagick 6.9.11's WebP reader decodes the whole image even to ping it, into a full-size
 * RGBA buffer and then a 16-bit pixel cache, and takes no size hint (it never sets libwebp's
 * scaling options). libwebp can decode straight into a smaller size (its rescaler averages the
 * pixels it drops), so pixq decodes still WebP images here, at their size or at the reduced one
 * shrink-on-load chose, and hands the pixels to ImageMagick. The ICC, EXIF and XMP chunks become
 * the image's profiles, as ImageMagick's reader makes them, and the EXIF orientation its
 * orientation. Animated WebP images are left to ImageMagick. */
#ifndef PIXQ_WEBP_H
#define PIXQ_WEBP_H

#include <stdbool.h>
#include <stddef.h>
#include <wand/MagickWand.h>

#include "err.h"

/* Whether the bytes are a still WebP image libwebp can read; its size in `width` x `height`. */
bool webp_still(const void *data, size_t len, long *width, long *height);

/* What a ping gives, without decoding: a wand of one 1x1 image in format WEBP that carries the
 * source's profiles and orientation (not its pixels). Returns it, or NULL (out of memory). */
MagickWand *webp_headers(const void *data, size_t len, struct err *e);

/* Decodes a still WebP at `width` x `height` (its own size, or smaller: libwebp scales while
 * decoding), profiles and orientation attached. Returns a wand to destroy, or NULL with the
 * reason. */
MagickWand *webp_read(const void *data, size_t len, long width, long height, struct err *e);

#endif
