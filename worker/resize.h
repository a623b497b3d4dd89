/* resize: ImageMagick's default resize (`-resize WxH!`: MagickResizeImage with UndefinedFilter,
 * blur 1) of a true-colour image, in one streaming pass over the image.
 *
 * ImageMagick's ResizeImage filters a whole intermediate image column by column, channel by
 * channel, in double precision, and keeps the intermediate image in its 16-bit pixel cache: 11 ms
 * of a 52 ms 800-px thumbnail of a 2560x1600 JPEG (decoded at 960x600), though the image is
 * small. This does ImageMagick's arithmetic: the filter it picks (Lanczos to shrink an opaque
 * image; Mitchell to enlarge one, or for an image with alpha, whose colours are then weighed by
 * alpha and divided by the sum of those weights), the same support, sample positions and weights
 * divided by their sum, the same order of the passes, the intermediate rounded and clamped to 16
 * bits as ImageMagick stores it, the result rounded and clamped the same. It works row by row,
 * over all four samples of a pixel at once, in single precision for opaque images (in double for
 * the sums weighed by alpha, which a filter's negative lobes can make small beside their terms):
 * - the width growing more (or shrinking less) than the height, where ImageMagick filters
 *   horizontally first: each source row is filtered horizontally once into a ring of as many
 *   rows as the vertical filter spans, and each output row is the weighted sum of its rows there;
 * - otherwise each source row is read once into the ring, and each output row is the weighted
 *   sum of its source rows, then filtered horizontally.
 * A sum that lands near a half may round the other way than ImageMagick's: the 16-bit samples
 * differ by 2 at most (colours premultiplied by alpha), the 8-bit ones by 1 in some tens of
 * samples in a million (tests/shrink/test_resize.c).
 *
 * Declined, for the caller to resize with ImageMagick: a palette image (PseudoClass), CMYK, the
 * same size, a "filter:*" artifact, buffers over WORK_BYTES_MAX (64 MB: a far smaller output of
 * a large image, whose ring holds many source rows), an output whose pixels ImageMagick's memory
 * limit (PIXQ_MAGICK_MEMORY_MB) has no room for (they count in it while they exist), a failed
 * allocation, and any ImageMagick but the Q16 build without HDRI. The output's pixels are built
 * beside the source, then copied into
 * the image's pixel cache once it is resized (SetImageExtent), so the image keeps its properties,
 * profiles and settings; its page geometry is scaled as ImageMagick's CloneImage scales it. The
 * image's progress monitor (the job's deadline) is called every MONITOR_EVERY output rows and
 * every READS_PER_CHECK source rows read: when it says stop, the resize fails. */
#ifndef PIXQ_RESIZE_H
#define PIXQ_RESIZE_H

#include <stddef.h>
#include <wand/MagickWand.h>

enum resize_result {
    RESIZE_DONE,     /* the wand's current image is now columns x rows */
    RESIZE_DECLINED, /* not a case this takes: nothing changed */
    RESIZE_FAILED,   /* stopped by the progress monitor, or ImageMagick's cache refused a row or
                        the new size: the image must not be used (its pixels may be gone) */
};

/* Resizes the current image of `w` to columns x rows as MagickResizeImage(w, columns, rows,
 * UndefinedFilter, 1.0) would, or declines. `*why` names a decline or failure (a static string). */
enum resize_result resize_fast(MagickWand *w, size_t columns, size_t rows, const char **why);

/* Frees the filters kept for later resizes (the calling thread's): at exit, and for leak checks. */
void resize_forget(void);

/* How many filters the calling thread has built, kept or not (for tests: a kept filter used
 * again is not built again). */
unsigned long resize_filters_built(void);

#endif
