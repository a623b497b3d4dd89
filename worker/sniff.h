/* sniff: what a source file is, from its bytes alone, before ImageMagick sees it.
 *
 * The format comes from the magic bytes only: never from a name, a URL, a Content-Type or
 * ImageMagick's own guessing. For the formats pixq decodes, the headers are walked for the size
 * of every frame (and of the canvas the frames sit on) and for the number of frames, so that a
 * decompression bomb is refused before any decoder runs:
 *
 *   JPEG  the SOF segment; a JPEG whose data ends before its EOI marker is `truncated`
 *   PNG   IHDR
 *   GIF   the logical screen, then every image descriptor (the blocks are walked, not decoded)
 *   WebP  VP8 / VP8L / VP8X (canvas) and every ANMF frame
 *   TIFF  every IFD of the chain (classic TIFF; BigTIFF is recognised but not walked)
 *   HEIC, AVIF  the ftyp brand; every `ispe` property of meta/iprp/ipco
 *
 * Anything else gets a name for the error message ("SVG", "PDF", "HTML", "MVG", "text",
 * "empty file", "unknown"...) and is never decoded. Pure code: no allocation, no ImageMagick,
 * every read bounds-checked (fuzzed through tests/fuzz/fuzz_image.c). */
#ifndef PIXQ_SNIFF_H
#define PIXQ_SNIFF_H

#include <stdbool.h>
#include <stddef.h>

#define SNIFF_MAX_COUNT 1000000L /* frames counted at most (a TIFF IFD loop ends here) */

enum sniff_format {
    SNIFF_OTHER, /* not a format pixq decodes: `name` says what it looks like */
    SNIFF_JPEG,
    SNIFF_PNG,
    SNIFF_GIF,
    SNIFF_WEBP,
    SNIFF_TIFF,
    SNIFF_HEIC,
    SNIFF_AVIF,
    SNIFF_BMP,
};

#define SNIFF_N_FORMATS (SNIFF_BMP + 1)

/* What the bytes are. Sizes are what the headers declare, before any decoding. */
struct sniff_info {
    enum sniff_format format;
    const char *name;   /* "JPEG", "PNG"..., or "SVG", "PDF", "unknown"...: a static string */
    long width, height; /* the largest frame or canvas (by area); 0 x 0 if the headers say none */
    long frames;        /* frames declared (at most SNIFF_MAX_COUNT); 0 if the headers say none */
    bool truncated;     /* the data ends before the format's end marker (JPEG without EOI) */
};

/* Identifies `len` bytes at `data` (NULL when `len` is 0) and fills `out`. Never fails. */
void sniff_image(const void *data, size_t len, struct sniff_info *out);

/* The lower-case name of a decodable format ("jpeg"), as PIXQ_IMAGE_FORMATS spells it, or NULL
 * for SNIFF_OTHER. */
const char *sniff_format_name(enum sniff_format f);

/* The format called `name` ("jpeg", "jpg", "png", "gif", "webp", "tiff", "tif", "heic", "heif",
 * "avif", "bmp"; any case), or SNIFF_OTHER. */
enum sniff_format sniff_format_named(const char *name);

#endif
