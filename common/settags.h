/* settags: the tags a save's `set_exif` writes into its output (BLITLINE.md 5).
 *
 * Blitline handed `set_exif` ({"Copyright": "...", "Keywords": [...]}) to exiftool, whose tag
 * names it takes. pixq writes the text tags of two blocks itself:
 *
 * - EXIF, in IFD0 (ASCII): DocumentName, ImageDescription, Make, Model, Software, ModifyDate
 *   (alias DateTime, "YYYY:MM:DD HH:MM:SS"), Artist, HostComputer, Copyright;
 * - IPTC, the application record (2): ObjectName, EditStatus, Category, SupplementalCategories,
 *   Keywords, SpecialInstructions, DateCreated ("YYYY:MM:DD"), By-line, By-lineTitle, City,
 *   Sub-location, Province-State, Country-PrimaryLocationCode, Country-PrimaryLocationName,
 *   OriginalTransmissionReference, Headline, Credit, Source, CopyrightNotice, Contact,
 *   Caption-Abstract, Writer-Editor, each at most as long as IPTC allows it (ObjectName 64
 *   bytes...).
 *
 * A name is matched without regard to case, and may carry its group ("IPTC:Keywords"). A value
 * is text (a number is its text); a repeatable IPTC tag (Keywords...) also takes a list, one
 * entry each; "" or null deletes the tag, as exiftool's `-TAG=` does. A JPEG or PNG holds both
 * blocks, a WebP only EXIF; other formats none.
 *
 * The blocks are merged into what the image already has (its metadata, when the save keeps it):
 * EXIF's IFD0 is written anew after the old block, whose bytes stay where they are, so that every
 * offset in them (the EXIF and GPS IFDs, the thumbnail) still holds; IPTC's datasets are kept
 * but for those set, and when a value set is not ASCII the block says UTF-8 (CodedCharacterSet),
 * its old text of record 2 made UTF-8 if it was Latin-1 (as settags_iptc_read() reads it). An
 * old block that does not parse is replaced. Nothing here touches an image
 * library: the worker hands the blocks to ImageMagick as its "exif", "iptc" and "8bim" profiles. */
#ifndef PIXQ_SETTAGS_H
#define PIXQ_SETTAGS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

#define SETTAGS_MAX_TAGS    32    /* names in one set_exif */
#define SETTAGS_MAX_VALUES  64    /* entries in one repeatable tag's list */
#define SETTAGS_EXIF_MAX    2000  /* bytes of one EXIF value */
#define SETTAGS_EXIF_JPEG   65533 /* bytes of a JPEG's EXIF block ("Exif\0\0"...): an APP1's */
#define SETTAGS_EXIF_BLOCK  (1024 * 1024) /* bytes of another format's EXIF block */
#define SETTAGS_IPTC_BLOCK  65500         /* bytes of the IPTC block */
#define SETTAGS_IPTC_RECORD 2             /* the application record */
#define SETTAGS_READ_MAX    2000          /* bytes of a value settags_iptc_read() gives */

enum settags_group {
    SETTAGS_EXIF,
    SETTAGS_IPTC,
};

/* Checks a save's `set_exif` (`set`, from the job) for an output of `format` (the extension,
 * "jpg"); `what` names the save in the error ("'thumb'"). Returns 0, or -1 with the reason. */
int settags_check(json_object *set, const char *format, const char *what, struct err *e);

/* The name pixq gives the tag a set_exif key names ("iptc:keywords": "Keywords"; "DateTime":
 * "DateTime", which is ModifyDate), and its group in *group; NULL for no tag. */
const char *settags_name(const char *key, enum settags_group *group);

/* Whether `set` (checked) names a tag of `group`. */
bool settags_has(json_object *set, enum settags_group group);

/* The output settags_exif() writes for: what a new IFD0 says besides the tags set (EXIF's
 * mandatory tags, as exiftool writes them into a file without EXIF), and how large the block
 * may be. */
struct settags_image {
    unsigned x_res, y_res; /* XResolution, YResolution: pixels a unit, as the file says (JFIF) */
    unsigned unit;         /* ResolutionUnit, TIFF's: 1 none (an aspect ratio), 2 inch, 3 cm */
    bool jpeg;             /* YCbCrPositioning (centred) too, and at most SETTAGS_EXIF_JPEG bytes
                              (else SETTAGS_EXIF_BLOCK) */
};

/* Writes into `out` (emptied first) the EXIF block ("Exif\0\0" and a TIFF structure) that is
 * `old` (`old_len` bytes, with or without "Exif\0\0"; NULL for none) with the EXIF tags of `set`
 * written: IFD0 anew after the old bytes, the old IFD0 and the values of the entries it leaves
 * out zeroed. Without an old block, IFD0 also holds `img`'s resolution (and YCbCrPositioning for
 * a JPEG). `out` is left empty when there is nothing to write (no old block, nothing set).
 * Returns 0, or -1 (the block larger than `img` allows, out of memory). */
int settags_exif(json_object *set, const unsigned char *old, size_t old_len,
                 const struct settags_image *img, struct buf *out, struct err *e);

/* As settags_exif() for the IPTC datasets ("\x1c" record dataset length value...). */
int settags_iptc(json_object *set, const unsigned char *old, size_t old_len, struct buf *out,
                 struct err *e);

/* The IPTC block `p` (`len` bytes) as original_meta.iptc gives it: an object of the tags above
 * by their names ({"ObjectName": "Dog", "Keywords": ["beach", "dog"], "DateCreated":
 * "2026:12:01"}), a repeatable tag as a list, others as their first value; text as UTF-8 (a
 * block that says so, or bytes that are; else Latin-1), each value at most SETTAGS_READ_MAX
 * bytes, trailing NULs (a writer's padding) left out. Other datasets are left out, and those
 * after one that does not parse. A new object, or NULL when memory ran out. */
json_object *settags_iptc_read(const unsigned char *p, size_t len);

/* Writes into `out` the Photoshop resource block `old` (NULL for none) with its IPTC resource
 * (0x0404) holding `iptc` (`iptc_len` bytes; none when 0), and without the IPTC digest (0x0425),
 * which would no longer match. Resources of other signatures than "8BIM" (ImageReady's "MeSa",
 * "PHUT", "AgHg", "DCSR") are kept as they are, whatever their ids. Returns 0 or -1. */
int settags_8bim(const unsigned char *old, size_t old_len, const unsigned char *iptc,
                 size_t iptc_len, struct buf *out, struct err *e);

#endif
