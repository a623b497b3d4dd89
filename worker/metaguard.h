/* metaguard: a bound on the metadata ImageMagick parses while it reads an image.
 *
 * ImageMagick 6 turns every profile a reader hands to SetImageProfile() into properties at once
 * ("exif:*", "xmp:*"...). For EXIF that means formatting every value of every entry as text,
 * one snprintf() a value, and nothing stops it: entries may share one value area, so a block of
 * L bytes can list about L * L / 12 values. A 1.2 KB PNG whose zTXt chunk inflates to a 56 KB
 * "Raw profile type exif" takes 6 s; one of 2.8 KB takes hours, out of reach of
 * PIXQ_MAGICK_TIME_S (ImageMagick checks that only between rows of pixels). The same block comes
 * in through a JPEG's APP1 segments (ImageMagick joins them, formatting the whole at every
 * segment: a 400 KB JPEG of 40,000 small segments takes 0.8 s, one of 10 MB minutes), a
 * Photoshop resource block (8BIM resource 0x0422), WebP's EXIF chunk, HEIC's Exif item.
 *
 * Every one of those goes through SetImageProfile(). pixq-worker defines that function itself
 * and exports it (the link option in worker/meson.build), so that ImageMagick's coder modules
 * call it instead of MagickCore's: while a read is armed (metaguard_arm()), each profile is
 * measured before it is passed on, with what earlier profiles of the same read used:
 *
 *   bytes      every profile's length, in all (PIXQ_METADATA_MAX_MB);
 *   EXIF       an "exif" profile's IFD entries and the values ImageMagick would format
 *              (metaguard_exif_cost()); an "8bim" profile's EXIF resources the same
 *              (PIXQ_EXIF_MAX_VALUES).
 *
 * A profile past either bound is not passed on and the read's earlier profile of that name is
 * deleted, as is every later profile of the read (each then costs ImageMagick its own bytes
 * only); the caller fails the image with metaguard_error(). The measure is an upper bound of
 * ImageMagick's work: every "Exif\0\0" header in the profile is counted (ImageMagick reads one),
 * every IFD the EXIF, GPS and interoperability pointers and the next-IFD links reach, every entry
 * of each (ImageMagick stops an IFD at a damaged entry). Pure walking over untrusted bytes, every
 * read bounds-checked; the walking itself is bounded by the cost it counts. */
#ifndef PIXQ_METAGUARD_H
#define PIXQ_METAGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define METAGUARD_MAX_IFDS 1024 /* IFDs of one EXIF block walked at most; past it: over */

/* One armed read: the caller's storage, zeroed by metaguard_arm(). */
struct metaguard {
    uint64_t max_bytes, max_exif; /* the bounds (see above) */
    uint64_t bytes, exif;         /* used so far */
    char refused[16];             /* the first profile refused ("" none), lower case */
    bool exif_over;               /* it was refused for its EXIF values (else its bytes) */
};

/* Finds MagickCore's own SetImageProfile() to pass profiles on to, and checks that the
 * executable's definition is the one ImageMagick's coders will call. Call once, before any
 * image is read. Returns 0, or -1 (with the reason in `e`) when either is not so. */
int metaguard_init(struct err *e);

/* Arms `g` for the reads this thread makes until metaguard_disarm(). */
void metaguard_arm(struct metaguard *g, uint64_t max_bytes, uint64_t max_exif);

/* Disarms this thread's guard. Returns true when a profile was refused while it was armed. */
bool metaguard_disarm(void);

/* Sets `e` to what `g` refused ("the image's EXIF data lists more than N values..."); returns
 * -1. */
int metaguard_error(const struct metaguard *g, struct err *e);

/* The EXIF work in the profile `p` of `len` bytes: for every "Exif\0\0" header in it, the IFDs
 * of the TIFF structure after it, one each, and their entries, one each plus their values (those
 * ImageMagick would read: inside the block). Counting stops past `limit` (returns more than
 * `limit`); more than METAGUARD_MAX_IFDS IFDs in a block also returns more than `limit`. A limit
 * above UINT64_MAX / 4 counts as that. */
uint64_t metaguard_exif_cost(const unsigned char *p, size_t len, uint64_t limit);

/* The same for the EXIF resources (0x0422) of a Photoshop resource block ("8BIM" records),
 * wherever one may start. */
uint64_t metaguard_8bim_cost(const unsigned char *p, size_t len, uint64_t limit);

#endif
