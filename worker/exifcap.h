/* exifcap: a JPEG's EXIF arrays shortened for ImageMagick's reading, and given back after.
 *
 * ImageMagick 6's ReadImage() (and its ping) formats every EXIF tag as a property
 * (GetImageProperty(image, "exif:*")). An array is formatted value by value, each with
 * "%.20g, " and the like, into a 4,095-character buffer, and the loop goes on past a full buffer:
 * a camera's 40 KB maker note is 40,000 calls to snprintf with a double, 4 ms of a 7-ms
 * thumbnail. Every value gives at least 3 characters ("0, "), so the first EXIFCAP_KEEP values
 * fill the buffer: the text of an array of more values is the same with EXIFCAP_KEEP of them.
 *
 * exifcap_prepare() makes a copy of the JPEG whose EXIF entries (any type but ASCII) with more
 * than EXIFCAP_KEEP values say EXIFCAP_KEEP; ImageMagick reads the copy into the same properties
 * in a fraction of the time, and exifcap_restore() writes the original counts back into the
 * "exif" profile it kept, which is then the file's bytes again.
 *
 * Only what cannot change ImageMagick's reading is touched: the JPEG has one APP1 segment named
 * "exif" (case aside: ImageMagick joins several into one profile), it starts "Exif\0\0"; the
 * entries are found by walking every IFD reachable from IFD0 (next-IFD links and the EXIF, GPS
 * and interoperability pointers: more than ImageMagick follows, which is harmless, as an entry it
 * does not visit is not read); an entry's values must lie inside the block (else ImageMagick skips
 * it, and would not with a smaller count), and its count field must not lie inside another
 * entry's values or another IFD. Anything else leaves the JPEG alone. The input is untrusted. */
#ifndef PIXQ_EXIFCAP_H
#define PIXQ_EXIFCAP_H

#include <stdbool.h>
#include <stddef.h>

#define EXIFCAP_KEEP  1400 /* values kept: 3 x 1400 > 4,095 */
#define EXIFCAP_FIXES 32   /* entries shortened at most (the first ones found) */

struct exifcap_fix {
    size_t at;                 /* the count field's offset in the APP1 payload */
    unsigned char original[4]; /* its bytes in the file */
};

struct exifcap {
    unsigned char *copy;         /* the JPEG with the counts lowered; NULL: nothing to lower */
    size_t len;                  /* of the copy (that of the JPEG) */
    size_t payload, payload_len; /* the EXIF APP1 payload ("Exif\0\0"...) in the copy */
    int fixes;
    struct exifcap_fix fix[EXIFCAP_FIXES];
};

/* Looks at the JPEG's `len` bytes at `data`; when it has arrays to shorten, `c->copy` is a copy
 * with them shortened (free with exifcap_free()). Returns 0, or -1 when memory ran out. */
int exifcap_prepare(const void *data, size_t len, struct exifcap *c);

/* Writes the original counts back into `profile` (the "exif" profile ImageMagick read from the
 * copy, `profile_len` bytes). Returns false, changing nothing, when the profile is not the
 * copy's APP1 payload. */
bool exifcap_restore(const struct exifcap *c, unsigned char *profile, size_t profile_len);

void exifcap_free(struct exifcap *c);

#endif
