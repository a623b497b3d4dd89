/* metaguard: a bound on the metadata ImageMagick parses while it reads an image.
 *
 * ImageMagick 6 turns an image's profiles into properties once its reader is done (ReadImage()
 * asks for "exif:*", "xmp:*"... and for exif:Orientation and the resolution). For EXIF that means
 * formatting every value of every entry as text, one snprintf() a value, and nothing stops it:
 * entries may share one value area, so a block of L bytes can list about L * L / 12 values. A
 * 1.2 KB PNG whose zTXt chunk inflates to a 56 KB "Raw profile type exif" takes 6 s; one of
 * 2.8 KB takes hours, out of reach of PIXQ_MAGICK_TIME_S (ImageMagick checks that only between
 * rows of pixels). The same block comes in through a JPEG's APP1 segments, a Photoshop resource
 * block (8BIM resource 0x0422), WebP's EXIF chunk, HEIC's Exif item. XMP is parsed by
 * ImageMagick's own XML reader, which walks all the children of an element for each new one: a
 * 4.9 KB PNG of 160,000 empty elements takes a minute. And a JPEG's segments of one profile are
 * joined one by one, the whole copied again at each: 40,000 small ones take 0.8 s, and four times
 * that for twice as many.
 *
 * Every profile a reader finds goes through SetImageProfile(). pixq-worker defines that function
 * itself and exports it (the link option in worker/meson.build), so that ImageMagick's coder
 * modules call it instead of MagickCore's: while a read is armed (metaguard_arm()), each profile
 * is measured before it is passed on. What a read holds is each image's latest hand-over of
 * each profile name (a joined profile handed over again replaces what it counted before; the
 * EXIF and XMP of an 8bim block stay counted, as ImageMagick keeps them as profiles of their
 * own):
 *
 *   EXIF     the values ImageMagick would format, a fraction counting 4, the IFDs one each
 *            and the entries METAGUARD_ENTRY_COST each (metaguard_exif_cost()), of "exif"
 *            profiles and of the EXIF resources of "8bim" ones: at most max_exif
 *            (PIXQ_EXIF_MAX_VALUES);
 *   XMP      the elements (opening tags) of "xmp" profiles and of "8bim" XMP resources: at
 *            most max_xmp (PIXQ_XMP_MAX_ELEMENTS); XMP with an element of more than
 *            METAGUARD_XMP_ATTRIBUTES attributes (libxml2, which checks XMP first, is
 *            quadratic in them), with a DTD (libxml2 checks every element against its
 *            attribute defaults), or in an encoding whose '<' is not ASCII's (EBCDIC, UTF-7)
 *            is refused (metaguard_xmp_cost());
 *   bytes    the profiles' lengths: at most max_bytes (PIXQ_METADATA_MAX_MB);
 *   handled  every hand-over's length, an XMP one's (and an 8bim one's holding XMP)
 *            METAGUARD_XMP_WEIGHT times (libxml2 checks it each time), with the image's 8bim
 *            block for an icc, iptc or xmp one (ImageMagick may write it into a copy of that
 *            block): at most METAGUARD_HANDLED x max_bytes.
 *
 * A profile past a bound is not passed on and the image's earlier profile of that name is
 * deleted, as is every later profile of the read (each then costs ImageMagick its own bytes
 * only); the caller fails the image with metaguard_error(). The EXIF measure is an upper bound
 * of ImageMagick's walk: every "Exif\0\0" header in the profile is counted (ImageMagick reads
 * one), every IFD the EXIF, GPS and interoperability pointers and the next-IFD links reach, every
 * entry of each (ImageMagick stops an IFD at a damaged entry). ImageMagick walks a profile once
 * for "exif:*" and again for each tag it looks up that is not a property yet (at most four in
 * ReadImage(); pixq looks up only properties already made), so the time a read may take is a few
 * times the bound's. Pure walking over untrusted bytes, every read bounds-checked; the walking
 * is bounded by the profiles' lengths and by the cost it counts. */
#ifndef PIXQ_METAGUARD_H
#define PIXQ_METAGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define METAGUARD_MAX_IFDS       1024 /* IFDs of one EXIF block walked at most; past it: over */
#define METAGUARD_HELD           64   /* images x profile names a read keeps apart */
#define METAGUARD_HANDLED        4    /* bytes handled: at most this many times max_bytes */
#define METAGUARD_XMP_WEIGHT     16   /* an XMP hand-over's bytes count this many times */
#define METAGUARD_ENTRY_COST     2    /* an EXIF entry costs ImageMagick about two values */
#define METAGUARD_XMP_ATTRIBUTES 1000 /* attributes of one XMP element at most */
#define METAGUARD_XMP_NAME_UNIT  64   /* an XMP element's name: 1 more each so many bytes */
#define METAGUARD_XMP_UNREADABLE (UINT64_MAX / 8) /* the cost of XMP pixq does not read */

struct metaguard_limits {
    uint64_t max_bytes; /* PIXQ_METADATA_MAX_MB, in bytes */
    uint64_t max_exif;  /* PIXQ_EXIF_MAX_VALUES */
    uint64_t max_xmp;   /* PIXQ_XMP_MAX_ELEMENTS */
};

enum metaguard_over {
    METAGUARD_OVER_NONE,
    METAGUARD_OVER_EXIF,
    METAGUARD_OVER_XMP,
    METAGUARD_OVER_XMP_UNREADABLE, /* a DTD, too many attributes, an encoding (see below) */
    METAGUARD_OVER_BYTES,
    METAGUARD_OVER_HANDLED,
};

/* What one image's profile of one name counts in a read: its latest hand-over's. */
struct metaguard_held {
    const void *image;
    char name[16];
    uint64_t bytes, exif, xmp;
};

/* One armed read: the caller's storage, set by metaguard_arm(). */
struct metaguard {
    uint64_t max_bytes, max_exif, max_xmp; /* the bounds (see above) */
    uint64_t bytes, exif, xmp, handled;    /* counted so far */
    int n_held;
    struct metaguard_held held[METAGUARD_HELD];
    enum metaguard_over over; /* the bound the refused profile passed */
    char refused[16];         /* its name, lower case */
};

/* Finds MagickCore's own SetImageProfile() to pass profiles on to, and checks that the
 * executable's definition is the one ImageMagick's coders will call. Call once, before any
 * image is read. Returns 0, or -1 (with the reason in `e`) when either is not so. */
int metaguard_init(struct err *e);

/* Arms `g` with the bounds `l` for the reads this thread makes until metaguard_disarm(). */
void metaguard_arm(struct metaguard *g, const struct metaguard_limits *l);

/* Disarms this thread's guard. Returns true when a profile was refused while it was armed. */
bool metaguard_disarm(void);

/* Sets `e` to what `g` refused ("... its EXIF data has more than N values to format ..."), the
 * setting to raise named; returns -1. */
int metaguard_error(const struct metaguard *g, struct err *e);

/* The EXIF work in the profile `p` of `len` bytes: for every "Exif\0\0" header in it, the IFDs
 * of the TIFF structure after it, one each, and their entries, METAGUARD_ENTRY_COST each plus
 * their values (those ImageMagick would read: inside the block; a fraction 4, any other value 1).
 * Counting stops past `limit` (returns more than `limit`); more than METAGUARD_MAX_IFDS IFDs in a
 * block also returns more than `limit`. A limit above UINT64_MAX / 4 counts as that. */
uint64_t metaguard_exif_cost(const unsigned char *p, size_t len, uint64_t limit);

/* The same for the EXIF resources (0x0422) of a Photoshop resource block into `*exif`, and the
 * XMP elements of its XMP resources (0x0424) into `*xmp`, walking its records as ImageMagick
 * does: one after the other from the start, to the first that is not one. */
void metaguard_8bim_cost(const unsigned char *p, size_t len, uint64_t limit, uint64_t *exif,
                         uint64_t *xmp);

/* The elements of an XMP packet: its opening tags ('<' but for "</", "<!" and "<?"; an upper
 * bound: one in a comment or a CDATA section counts too), each 1 more for every
 * METAGUARD_XMP_NAME_UNIT bytes of its name (ImageMagick's XML reader compares names; a name
 * ends at the next '<' at the latest, so that the count is linear in `len`).
 * METAGUARD_XMP_UNREADABLE when an element has more than METAGUARD_XMP_ATTRIBUTES attributes (its
 * '=' outside quotes), when it holds a DTD (<!DOCTYPE, <!ATTLIST, <!ENTITY, in UTF-16 and UTF-32
 * too), or when it does not start with '<' in an ASCII-like encoding (or UTF-16, UTF-32) or
 * declares another one. UTF-16's and UTF-32's NUL bytes are skipped after a '<' and counted in
 * a name. */
uint64_t metaguard_xmp_cost(const unsigned char *p, size_t len);

/* The bytes libpng inflates or copies, before ImageMagick sees them, for the metadata chunks
 * of the PNG file `p` of `len` bytes: a tEXt chunk's length, and what the zlib data of a zTXt,
 * iCCP or compressed iTXt chunk inflates to (as far as it goes, as libpng inflates it), an
 * uncompressed iTXt's length. libpng inflates each whole, in memory, before any profile
 * reaches SetImageProfile() and whatever the time limit: a 390 KB zTXt chunk holds 400 MB of
 * text, and ImageMagick keeps its copies (1.2 GB, 19 s). Counting stops past `limit` (returns
 * more than `limit`), so that no more than `limit` + 16 KB is ever inflated here. */
uint64_t metaguard_png_text_bytes(const unsigned char *p, size_t len, uint64_t limit);

#endif
