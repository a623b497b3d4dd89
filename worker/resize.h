/* resize: ImageMagick's default downscale (`-resize WxH!` of an opaque true-colour image: the
 * Lanczos filter) in one streaming pass over the image.
 *
 * ImageMagick's ResizeImage filters a whole intermediate image column by column, channel by
 * channel, in double precision, and keeps the intermediate image in its 16-bit pixel cache: 11 ms
 * of a 52 ms 800-px thumbnail of a 2560x1600 JPEG (decoded at 960x600), though the image is
 * small. This does ImageMagick's arithmetic (the same filter, support, sample positions and
 * weights divided by their sum, the same order of the passes, the intermediate rounded and
 * clamped to 16 bits as ImageMagick stores it, the result rounded and clamped the same) in single
 * precision, row by row, over all four samples of a pixel at once:
 * - the width shrinking less than the height (ImageMagick then filters horizontally first): each
 *   source row is filtered horizontally once into a ring of as many rows as the vertical filter
 *   spans, and each output row is the weighted sum of its rows in the ring;
 * - otherwise each output row is the weighted sum of its source rows, then filtered horizontally.
 * A sum that lands near a half may round the other way than ImageMagick's: the 16-bit samples
 * differ by 2 at most, the 8-bit ones by 1 in some tens of samples in a million
 * (tests/shrink/test_resize.c).
 *
 * Only what ImageMagick would filter with Lanczos is taken: a smaller area (not the same size),
 * an image in DirectClass without alpha, not CMYK, and no "filter:*" artifact. Anything else, and
 * a ring over RING_BYTES_MAX, is declined, and the caller resizes with ImageMagick. The output's
 * pixels are built beside the source, then copied into the image's pixel cache once it is resized
 * (SetImageExtent), so the image keeps its properties, profiles and settings; its page geometry is
 * scaled as ImageMagick's CloneImage scales it. The image's progress monitor (the job's deadline)
 * is called every MONITOR_EVERY output rows: when it says stop, the resize fails. */
#ifndef PIXQ_RESIZE_H
#define PIXQ_RESIZE_H

#include <stddef.h>
#include <wand/MagickWand.h>

enum resize_result {
    RESIZE_DONE,     /* the wand's current image is now columns x rows */
    RESIZE_DECLINED, /* not a case this takes: nothing changed */
    RESIZE_FAILED,   /* out of memory, ImageMagick's cache refused, or past the deadline: the
                        image may be left at the new size with some rows unset */
};

/* Resizes the current image of `w` to columns x rows as MagickResizeImage(w, columns, rows,
 * UndefinedFilter, 1.0) would, or declines. `*why` names a decline or failure (a static string). */
enum resize_result resize_lanczos(MagickWand *w, size_t columns, size_t rows, const char **why);

#endif
