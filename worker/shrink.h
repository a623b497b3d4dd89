/* shrink: shrink-on-load, the smallest size at which a source can be decoded for a job.
 *
 * libjpeg can decode a JPEG at 1/8, 1/4, 3/8 or 1/2 of its size (DCT scaling, through
 * ImageMagick's "jpeg:size" hint) for a fraction of the work and memory of a full decode;
 * libwebp decodes a WebP straight into a smaller size; other formats are decoded in full and
 * box-filtered to that size before the tree runs (process.c). Every
 * output must still come out exactly as large as from the full image, and be made by shrinking,
 * never by enlarging the reduced image. So the function tree is walked twice at once, with the
 * full size and with a candidate reduced size (both after auto-orient), and a scale is taken only
 * when:
 *   - before the first sizing function of every branch there are only functions that work pixel
 *     by pixel (no_op, colour and tone changes: they neither read sizes nor move pixels) and no
 *     save (it would be smaller);
 *   - every such first sizing function (resize_to_fit, resize_to_fill, pad_resize_to_fit,
 *     resize and scale with width and height; not scale_factor, which is relative to the source)
 *     makes the same size from both, without enlarging the reduced image;
 *   - nothing in the tree derives a size from pixel values (trim, deskew), since the reduced
 *     image's pixels are close to, not equal to, the full image's.
 * Anything else (crop, composite, annotate... with coordinates in source pixels, unknown
 * functions) keeps the full decode. After the first sizing function both images have the same
 * size, so what follows (crops included) works in the same coordinates. */
#ifndef PIXQ_SHRINK_H
#define PIXQ_SHRINK_H

#include <stdbool.h>

#include "job.h"

#define SHRINK_DENOM 8 /* libjpeg scales by M/8 */

struct shrink_plan {
    long hint_w, hint_h; /* the "jpeg:size" hint, in the stored orientation */
    long width, height;  /* the size libjpeg decodes at with it (stored orientation) */
    int scale;           /* M of M/8 */
};

/* The smallest scale at which `j`'s tree gives the same outputs for a JPEG of `width` x `height`
 * (as stored) with EXIF `orientation` (ImageMagick's OrientationType; -1: not known, the tree
 * must then work both upright and turned; the job's suppress_auto_orient is honoured). Returns
 * true with the plan, or false: decode in full. */
bool shrink_plan(const struct job *j, long width, long height, int orientation,
                 struct shrink_plan *out);

/* The scale M (of M/8) ImageMagick 6 and libjpeg-turbo choose for a `hint_w` x `hint_h` hint on
 * a `width` x `height` JPEG: denominator = floor(min(width / hint_w, height / hint_h)), then the
 * smallest M with M x denominator >= 8. Exposed for tests. */
int shrink_libjpeg_scale(long width, long height, long hint_w, long hint_h);

#endif
