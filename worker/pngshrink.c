/* pngshrink: a PNG inflated whole, unfiltered row by row and box-averaged on the fly
 * (pngshrink.h). */
#include "pngshrink.h"

#include <libdeflate.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#if defined(__SSE2__) && !defined(PNGSHRINK_SCALAR)
#include <emmintrin.h>
#define USE_SSE2 1
#endif

/* The filters are written for any pixel size and inlined for 3 and 4 bytes (unfilter_rows()). */
#ifdef __GNUC__
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#define PNG_SIG_LEN          8
#define CHUNK_OVERHEAD       12                  /* length, type, CRC */
#define CHUNK_MAX            0x7fffffffUL        /* the PNG spec's largest chunk length */
#define ANCILLARY_MAX        (8UL * 1024 * 1024) /* longest chunk but IDAT libpng was let take */
#define ROW_FACTOR_MAX       32566         /* libpng's bound on an IDAT chunk: see idat_max() */
#define DEADLINE_ROWS        32            /* rows between checks of the deadline */
#define RAW_SLACK            16            /* bytes after the rows: a 4-byte pixel load may pass */
#define ZLIB_WINDOW_BITS_MAX 7             /* CINFO: log2(window) - 8 */
#define EMIT32_TOTAL_MAX     32768         /* largest box weight whose sums fit in 32 bits */
#define KEYWORD_MAX          79            /* the PNG spec's longest text keyword */
#define TEXT_BYTES_MAX       (64UL * 1024) /* longest text chunk taken, and longest zTXt text */

/* What the chunk walk found. */
struct png_header {
    unsigned long width, height;
    int depth, color_type;          /* IHDR's: 8 and 2, 4 or 6; 1, 2, 4 or 8 and 3 or 0 (grey) */
    bool interlaced;                /* Adam7 (IHDR's interlace method 1) */
    int channels;                   /* of the pixels: 3 or 4 (a palette with tRNS, grey+alpha: 4) */
    uint64_t row_bytes;             /* a raw row without its filter type byte */
    unsigned char palette[256][4];  /* PLTE's colours, with tRNS's alpha (else 255); grey's */
    int npalette, ntrns;            /* entries in PLTE (0: none seen) and in tRNS */
    const unsigned char *idat;      /* the first IDAT chunk (its length field) */
    size_t idat_chunks, idat_bytes; /* how many IDAT chunks, the length of their data together */
    bool seen_idat, after_idat;     /* an IDAT chunk seen; another chunk after one */
    const unsigned char *text[PNGSHRINK_TEXTS_MAX]; /* the tEXt and zTXt chunks, in order */
    size_t ntext;
};

/* One output column's source pixels (shrink_cols): a partial pixel on the left, whole ones,
 * a partial one on the right, each partial weight 0 when there is none. */
struct col {
    long x0;    /* the first source pixel that reaches into the column */
    long whole; /* whole pixels after the left partial one */
    uint64_t wl, wr;
};

/* The running area average (pngshrink.h). In units where a source pixel is `sx` wide and an
 * output pixel `tx` (width / gcd and out_w / gcd: exact integers), each source pixel weighs its
 * overlap with the output pixel; rows likewise with `sy` and `ty`. A source row is summed across
 * (`hrow`), then added to the output row it falls in (`acc`) and to the next one (`next`) when it
 * straddles their edge. */
struct shrink {
    long width, height;          /* source */
    long out_w, out_h;           /* ceil(source / factor) */
    int channels;                /* 3 or 4 */
    uint64_t sx, tx, sy, ty;     /* pixel sizes in units: source and output, across and down */
    const unsigned char *row;    /* the source row being added (in the inflated data) */
    struct col *cols;            /* out_w */
    uint64_t *hrow, *acc, *next; /* out_w x channels each: colour (x alpha for RGBA), alpha */
    unsigned char *out;          /* out_w x out_h x channels */
};

static unsigned long be32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 |
           (unsigned long)p[3];
}

static bool is_type(const unsigned char *chunk, const char *type)
{
    return memcmp(chunk + 4, type, 4) == 0;
}

static bool past(long deadline)
{
    return deadline > 0 && clock_mono_ms() >= deadline;
}

/* ---------------------------------------------------------------- chunks */

/* Whether `h`'s pixels are indices into h->palette (a palette image, or grey: its levels). */
static bool indexed(const struct png_header *h)
{
    return h->color_type == 3 || h->color_type == 0;
}

/* The bytes of a pixel in the raw rows at 8 bits: an index or grey level, grey and alpha, RGB,
 * RGBA. */
static size_t raw_bpp(const struct png_header *h)
{
    return indexed(h) ? 1 : h->color_type == 4 ? 2 : h->color_type == 6 ? 4 : 3;
}

/* Whether raw rows are made into rows of RGB or RGBA pixels (expand_row()) before the average:
 * indices, grey levels, grey and alpha. */
static bool expanded(const struct png_header *h)
{
    return indexed(h) || h->color_type == 4;
}

/* The bytes of a raw row of `width` pixels, without its filter type byte. */
static uint64_t raw_row_bytes(const struct png_header *h, uint64_t width)
{
    return indexed(h) ? (width * (uint64_t)h->depth + 7) / 8 : width * raw_bpp(h);
}

/* A grey image's levels as a palette: level v of 2^depth is v x 255 / (2^depth - 1), as libpng
 * scales it up to 8 bits. */
static void grey_palette(struct png_header *h)
{
    int n = 1 << h->depth;
    for (int v = 0; v < n; v++) {
        unsigned char g = (unsigned char)(v * 255 / (n - 1));
        memcpy(h->palette[v], (unsigned char[4]){g, g, g, 255}, 4);
    }
    h->npalette = n;
}

/* IHDR's 13 bytes at `d`: only 8-bit RGB, RGBA or grey+alpha, or a palette or grey of 1, 2, 4
 * or 8 bits, within `max_pixels`; not interlaced or Adam7. */
static const char *check_ihdr(const unsigned char *d, long max_pixels, struct png_header *h)
{
    h->width = be32(d);
    h->height = be32(d + 4);
    if (h->width == 0 || h->height == 0 || h->width > CHUNK_MAX || h->height > CHUNK_MAX) {
        return "bad IHDR size";
    }
    if (max_pixels <= 0 || h->width > (unsigned long)max_pixels ||
        h->height > (unsigned long)max_pixels / h->width) {
        return "too large";
    }
    h->depth = d[8];
    h->color_type = d[9];
    bool low = h->depth == 1 || h->depth == 2 || h->depth == 4;
    if (h->color_type == 3 && !low && h->depth != 8) {
        return "bad palette bit depth";
    }
    if (h->color_type != 3 && h->depth != 8 && !(h->color_type == 0 && low)) {
        return "not 8-bit";
    }
    if (h->color_type == 1 || h->color_type == 5 || h->color_type > 6) {
        return "bad colour type";
    }
    if (d[10] != 0 || d[11] != 0) {
        return "bad IHDR method";
    }
    if (d[12] > 1) {
        return "bad interlace method";
    }
    h->interlaced = d[12] == 1;
    h->channels = h->color_type == 6 || h->color_type == 4 ? 4 : 3;
    h->row_bytes = raw_row_bytes(h, h->width);
    if (h->color_type == 0) {
        grey_palette(h);
    }
    return NULL;
}

/* A PLTE chunk's `n` bytes at `d`: in a palette image only, once, before IDAT, of 1 to 2^depth
 * colours (libpng drops a longer one's excess: declined). */
static const char *check_plte(const unsigned char *d, unsigned long n, struct png_header *h)
{
    if (h->color_type != 3) {
        return "PLTE chunk"; /* a suggested palette: ImageMagick keeps it as a property */
    }
    if (h->npalette > 0 || h->seen_idat) {
        return "PLTE out of place";
    }
    if (n == 0 || n % 3 != 0 || n / 3 > (1UL << h->depth)) {
        return "bad PLTE";
    }
    h->npalette = (int)(n / 3);
    for (int i = 0; i < h->npalette; i++) {
        memcpy(h->palette[i], d + 3 * i, 3);
        h->palette[i][3] = 255;
    }
    return NULL;
}

/* A tRNS chunk of `n` bytes at `c`: in a palette image only, once, after PLTE and before IDAT,
 * an alpha for each of the first `n` colours (no more than PLTE has), with a good CRC (libpng
 * drops an ancillary chunk with a bad one). The pixels get alpha. */
static const char *check_trns(const unsigned char *c, unsigned long n, struct png_header *h)
{
    if (h->color_type != 3) {
        return "tRNS chunk";
    }
    if (h->npalette == 0 || h->ntrns > 0 || h->seen_idat) {
        return "tRNS out of place";
    }
    if (n == 0 || n > (unsigned long)h->npalette) {
        return "bad tRNS";
    }
    if (libdeflate_crc32(0, c + 4, n + 4) != be32(c + 8 + n)) {
        return "bad CRC";
    }
    h->ntrns = (int)n;
    for (unsigned long i = 0; i < n; i++) {
        h->palette[i][3] = c[8 + i];
    }
    h->channels = 4;
    return NULL;
}

/* ASCII case-insensitive equality of the first `n` bytes of the keyword at `k` and of `word`
 * (lower case), as ImageMagick's LocaleCompare() for these. */
static bool keyword_is(const unsigned char *k, const char *word, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int a = k[i] >= 'A' && k[i] <= 'Z' ? k[i] + 32 : k[i];
        if (a != (unsigned char)word[i]) {
            return false;
        }
    }
    return true;
}

/* Whether ImageMagick 6 would not just keep the keyword `k` (`n` bytes, then NUL) and its text
 * as a property: "Raw profile type ..." (a hex-coded profile), "density" and "units" (dropped
 * beside a pHYs chunk), a name SetImageProperty() turns into an image setting, one in the "png:"
 * space its reader fills itself, or in a space GetImageProperty() computes from a profile (the
 * worker's test against the ping's properties would find those there: "icc:description" of an
 * iCCP chunk). */
static bool keyword_special(const unsigned char *k, size_t n)
{
    static const char *const settings[] = {
        "background",  "bias",  "colorspace", "compose", "compress",         "delay",
        "density",     "depth", "dispose",    "gamma",   "gravity",          "intensity",
        "interpolate", "loop",  "page",       "profile", "rendering-intent", "tile-offset",
        "type",        "units"};
    static const char *const spaces[] = {"png:", "exif:", "iptc:", "8bim:", "xmp:", "icc:", "icm:"};
    if (n > 16 && memcmp(k, "Raw profile type ", 17) == 0) {
        return true;
    }
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (n == strlen(settings[i]) && keyword_is(k, settings[i], n)) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++) {
        if (n >= strlen(spaces[i]) && keyword_is(k, spaces[i], strlen(spaces[i]))) {
            return true;
        }
    }
    return false;
}

/* A tEXt or zTXt chunk of `n` bytes at `c` (its length checked): NULL when ImageMagick's read
 * keeps it as a plain property (text_property() gives it), else the reason to decline. iTXt
 * chunks are not looked into: ImageMagick has libpng skip them. */
static const char *check_text(const unsigned char *c, unsigned long n)
{
    if (libdeflate_crc32(0, c + 4, n + 4) != be32(c + 8 + n)) {
        return "bad CRC";
    }
    if (is_type(c, "iTXt")) {
        return NULL;
    }
    if (n > TEXT_BYTES_MAX) {
        return "text chunk too long";
    }
    const unsigned char *d = c + 8, *nul = memchr(d, 0, n);
    size_t k = nul != NULL ? (size_t)(nul - d) : n;
    if (k == 0 || k > KEYWORD_MAX || nul == NULL) {
        return "bad text keyword";
    }
    if (keyword_special(d, k)) {
        return "text keyword ImageMagick reads specially";
    }
    if (is_type(c, "zTXt") && (n < k + 3 || d[k + 1] != 0)) {
        return "bad zTXt chunk";
    }
    return NULL;
}

static bool is_text(const unsigned char *c)
{
    return is_type(c, "tEXt") || is_type(c, "zTXt") || is_type(c, "iTXt");
}

/* One chunk of `n` bytes at `c` (its length checked) after IHDR: what makes the file one to
 * decline. Text chunks may come before or after the IDAT chunks, which follow one another. */
static const char *check_chunk(const unsigned char *c, unsigned long n, struct png_header *h)
{
    if (is_type(c, "tRNS")) {
        return check_trns(c, n, h);
    }
    if (is_type(c, "PLTE")) {
        return check_plte(c + 8, n, h);
    }
    if (is_type(c, "IHDR")) {
        return "second IHDR";
    }
    if (is_type(c, "IDAT")) {
        if (h->color_type == 3 && h->npalette == 0) {
            return "no PLTE";
        }
        h->seen_idat = true;
        return h->after_idat ? "chunk after IDAT" : NULL;
    }
    h->after_idat = h->seen_idat;
    if (!is_text(c)) {
        return h->seen_idat ? "chunk after IDAT" : NULL;
    }
    const char *why = check_text(c, n);
    if (why == NULL && !is_type(c, "iTXt")) {
        if (h->ntext == PNGSHRINK_TEXTS_MAX) {
            return "too many text chunks";
        }
        h->text[h->ntext++] = c;
    }
    return why;
}

/* The longest IDAT chunk libpng takes for `h`'s image: the raw data plus zlib's and deflate's
 * overhead for stored blocks, at least ANCILLARY_MAX (png_check_chunk_length(), which counts a
 * palette image's row as a byte a pixel whatever its bit depth, and 6 bytes more a row for an
 * interlaced image's passes). */
static size_t idat_max(const struct png_header *h)
{
    uint64_t row =
        (indexed(h) ? (uint64_t)h->width + 1 : h->row_bytes + 1) + (h->interlaced ? 6 : 0);
    uint64_t max = CHUNK_MAX;
    if (h->height <= 0xffffffffULL / row) {
        max = h->height * row;
    }
    uint64_t factor = row < ROW_FACTOR_MAX ? row : ROW_FACTOR_MAX;
    max += 6 + 5 * (max / factor + 1);
    max = max < CHUNK_MAX ? max : CHUNK_MAX;
    return max > ANCILLARY_MAX ? (size_t)max : ANCILLARY_MAX;
}

/* What libpng (the reader this one replaced, and ImageMagick's) rejects in a chunk of `n` bytes
 * at `c` (its length checked) that the rules above let through: a type that is not four letters,
 * a critical chunk it does not know, a chunk longer than it allocates, a bad CRC in a critical
 * chunk (IHDR, PLTE, IDAT, IEND; those of ancillary chunks only warn). */
static const char *check_like_libpng(const unsigned char *c, unsigned long n,
                                     const struct png_header *h)
{
    for (int i = 4; i < 8; i++) {
        if (!((c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= 'a' && c[i] <= 'z'))) {
            return "bad chunk type";
        }
    }
    bool critical = (c[4] & 0x20) == 0, idat = is_type(c, "IDAT");
    if (critical && !idat && !is_type(c, "IHDR") && !is_type(c, "IEND") && !is_type(c, "PLTE")) {
        return "unknown critical chunk";
    }
    if (n > (idat ? idat_max(h) : ANCILLARY_MAX)) {
        return "chunk too large";
    }
    if (critical && libdeflate_crc32(0, c + 4, n + 4) != be32(c + 8 + n)) {
        return "bad CRC";
    }
    return NULL;
}

/* One chunk of `n` bytes at `c`, the first one when `first`: NULL, or the reason to decline;
 * `*end` set at IEND. */
static const char *visit_chunk(const unsigned char *c, unsigned long n, bool first, long max_pixels,
                               struct png_header *h, bool *end)
{
    const char *why = NULL;
    if (first) {
        why = !is_type(c, "IHDR") || n != 13 ? "no IHDR" : check_ihdr(c + 8, max_pixels, h);
    } else if (is_type(c, "IEND")) {
        *end = true;
        why = h->seen_idat ? NULL : "no IDAT";
    } else {
        why = check_chunk(c, n, h);
    }
    why = why != NULL ? why : check_like_libpng(c, n, h);
    if (why == NULL && is_type(c, "IDAT")) {
        h->idat = h->idat != NULL ? h->idat : c;
        h->idat_chunks++;
        h->idat_bytes += n;
    }
    return why;
}

/* Walks every chunk up to IEND, bounds-checked; NULL with `h` filled, or the reason to decline. */
static const char *walk_chunks(const unsigned char *d, size_t len, long max_pixels,
                               struct png_header *h)
{
    static const unsigned char sig[PNG_SIG_LEN] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < PNG_SIG_LEN || memcmp(d, sig, PNG_SIG_LEN) != 0) {
        return "not a PNG";
    }
    bool end = false;
    *h = (struct png_header){0};
    for (size_t pos = PNG_SIG_LEN; pos < len;) {
        if (len - pos < CHUNK_OVERHEAD) {
            return "truncated";
        }
        unsigned long n = be32(d + pos);
        if (n > CHUNK_MAX || n > len - pos - CHUNK_OVERHEAD) {
            return "truncated";
        }
        const char *why = visit_chunk(d + pos, n, pos == PNG_SIG_LEN, max_pixels, h, &end);
        if (why != NULL || end) {
            return why;
        }
        pos += CHUNK_OVERHEAD + n;
    }
    return "truncated";
}

/* ---------------------------------------------------------------- inflate */

/* The data of `h`'s IDAT chunks (which follow one another) copied into one buffer (free()), or
 * NULL when memory ran out. */
static unsigned char *join_idat(const struct png_header *h)
{
    unsigned char *out = malloc(h->idat_bytes > 0 ? h->idat_bytes : 1);
    const unsigned char *c = h->idat;
    for (size_t i = 0, at = 0; out != NULL && i < h->idat_chunks; i++) {
        size_t n = be32(c);
        memcpy(out + at, c + 8, n);
        at += n;
        c += CHUNK_OVERHEAD + n;
    }
    return out;
}

/* zlib streams that declare a window smaller than 32 KB: libpng's zlib refuses a distance
 * further back than the window (and than its own output for the row) while libdeflate takes any
 * distance within the output, so such a stream is declined when the data is larger than the
 * window, where the two could differ. */
static bool window_too_small(const unsigned char *z, size_t n, size_t size)
{
    if (n < 1 || (z[0] & 0x0f) != 8 || (z[0] >> 4) >= ZLIB_WINDOW_BITS_MAX) {
        return false; /* a bad header is libdeflate's to reject */
    }
    return size > (size_t)1 << ((z[0] >> 4) + 8);
}

/* Inflates `h`'s IDAT data into the `size` bytes at `to`: NULL when the zlib stream is whole
 * and good (its Adler-32 too), fills exactly `size` bytes and ends with the last IDAT byte. */
static const char *inflate_idat(const struct png_header *h, unsigned char *to, size_t size)
{
    unsigned char *joined = h->idat_chunks > 1 ? join_idat(h) : NULL;
    if (h->idat_chunks > 1 && joined == NULL) {
        return "out of memory";
    }
    const unsigned char *z = joined != NULL ? joined : h->idat + 8;
    if (window_too_small(z, h->idat_bytes, size)) {
        free(joined);
        return "zlib window";
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    size_t used = 0;
    enum libdeflate_result r =
        d != NULL ? libdeflate_zlib_decompress_ex(d, z, h->idat_bytes, to, size, &used, NULL)
                  : LIBDEFLATE_BAD_DATA;
    libdeflate_free_decompressor(d);
    free(joined);
    if (d == NULL) {
        return "out of memory";
    }
    return r == LIBDEFLATE_SUCCESS && used == h->idat_bytes ? NULL : "zlib error";
}

/* ---------------------------------------------------------------- text */

/* A copy of the `n` bytes at `p` up to the first NUL (free()), or NULL when memory ran out. */
static char *copy_text(const unsigned char *p, size_t n)
{
    const unsigned char *nul = memchr(p, 0, n);
    size_t len = nul != NULL ? (size_t)(nul - p) : n;
    char *s = malloc(len + 1);
    if (s != NULL) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* A zTXt chunk's text: its `n` bytes of zlib data at `z` inflated (at most TEXT_BYTES_MAX
 * bytes), up to the first NUL, as libpng gives it. The stream must be whole and good, as in
 * inflate_idat(). */
static const char *inflate_text(struct libdeflate_decompressor *d, const unsigned char *z, size_t n,
                                char **text)
{
    unsigned char *buf = malloc(TEXT_BYTES_MAX);
    if (buf == NULL) {
        return "out of memory";
    }
    size_t used = 0, got = 0;
    enum libdeflate_result r =
        libdeflate_zlib_decompress_ex(d, z, n, buf, TEXT_BYTES_MAX, &used, &got);
    const char *why = NULL;
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
        why = "text too long";
    } else if (r != LIBDEFLATE_SUCCESS || used != n || window_too_small(z, n, got)) {
        why = "zlib error in zTXt";
    } else if ((*text = copy_text(buf, got)) == NULL) {
        why = "out of memory";
    }
    free(buf);
    return why;
}

/* The property ImageMagick's reader sets for the tEXt or zTXt chunk at `c` (check_text() took
 * it): the keyword ("version" and "width" become "png:version" and "png:width"), and the text up
 * to its first NUL. */
static const char *text_property(struct libdeflate_decompressor *d, const unsigned char *c,
                                 struct pngshrink_text *t)
{
    unsigned long n = be32(c);
    const unsigned char *data = c + 8;
    size_t k = (size_t)((const unsigned char *)memchr(data, 0, n) - data);
    bool renamed =
        (k == 7 && keyword_is(data, "version", 7)) || (k == 5 && keyword_is(data, "width", 5));
    t->key = malloc(k + 5);
    if (t->key == NULL) {
        return "out of memory";
    }
    snprintf(t->key, k + 5, "%s%.*s", renamed ? "png:" : "", (int)k, (const char *)data);
    if (is_type(c, "zTXt")) {
        return inflate_text(d, data + k + 2, n - k - 2, &t->value);
    }
    t->value = copy_text(data + k + 1, n - k - 1);
    return t->value != NULL ? NULL : "out of memory";
}

/* The properties of `h`'s text chunks into `img`, in the file's order. */
static const char *read_texts(const struct png_header *h, struct pngshrink_image *img)
{
    if (h->ntext == 0) {
        return NULL;
    }
    img->texts = calloc(h->ntext, sizeof *img->texts);
    if (img->texts == NULL) {
        return "out of memory";
    }
    img->ntext = h->ntext;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    const char *why = d != NULL ? NULL : "out of memory";
    for (size_t i = 0; why == NULL && i < h->ntext; i++) {
        why = text_property(d, h->text[i], &img->texts[i]);
    }
    libdeflate_free_decompressor(d);
    return why;
}

/* ---------------------------------------------------------------- filters
 * Each undoes one PNG filter type in place on the `n` bytes at `row` (pixels of `bpp` bytes, 3
 * or 4), `prior` being the row above, already undone (zeros above the first row). Both are
 * followed by at least one readable byte (the next row's filter type byte, or RAW_SLACK), which a
 * 4-byte load of a 3-byte pixel reads. */

static void up(unsigned char *row, const unsigned char *prior, size_t n)
{
    size_t i = 0;
#ifdef USE_SSE2
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(row + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(prior + i));
        _mm_storeu_si128((__m128i *)(void *)(row + i), _mm_add_epi8(x, b));
    }
#endif
    for (; i < n; i++) {
        row[i] = (unsigned char)(row[i] + prior[i]);
    }
}

/* The Paeth predictor of a (left), b (above), c (above left) without branches: a when
 * |p - a| <= |p - b| and |p - c| (p = a + b - c), else b when |p - b| <= |p - c|, else c. */
static ALWAYS_INLINE unsigned paeth_predictor(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    int not_a = -((pa > pb) | (pa > pc)), pick_c = -(pb > pc);
    int bc = (c & pick_c) | (b & ~pick_c);
    return (unsigned)((bc & not_a) | (a & ~not_a));
}

#ifdef USE_SSE2
/* The `bpp` bytes of one pixel at `p` in the low lanes of a vector (the rest: what follows). */
static ALWAYS_INLINE __m128i load_px(const unsigned char *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm_cvtsi32_si128(v);
}

/* Stores the low `bpp` bytes of `v` at `p`. */
static ALWAYS_INLINE void store_px(unsigned char *p, __m128i v, size_t bpp)
{
    int32_t w = _mm_cvtsi128_si32(v);
    memcpy(p, &w, bpp);
}

static ALWAYS_INLINE void sub(unsigned char *row, size_t n, size_t bpp)
{
    __m128i a = _mm_setzero_si128();
    for (size_t i = 0; i < n; i += bpp) {
        a = _mm_add_epi8(load_px(row + i), a);
        store_px(row + i, a, bpp);
    }
}

/* floor((a + b) / 2) per byte: _mm_avg_epu8 rounds up, so less the low bit of a ^ b. */
static ALWAYS_INLINE void avg(unsigned char *row, const unsigned char *prior, size_t n, size_t bpp)
{
    const __m128i one = _mm_set1_epi8(1);
    __m128i a = _mm_setzero_si128();
    for (size_t i = 0; i < n; i += bpp) {
        __m128i b = load_px(prior + i);
        __m128i mean = _mm_sub_epi8(_mm_avg_epu8(a, b), _mm_and_si128(_mm_xor_si128(a, b), one));
        a = _mm_add_epi8(load_px(row + i), mean);
        store_px(row + i, a, bpp);
    }
}

/* Where `mask` is set `yes`, else `no`. */
static ALWAYS_INLINE __m128i select16(__m128i mask, __m128i yes, __m128i no)
{
    return _mm_or_si128(_mm_and_si128(mask, yes), _mm_andnot_si128(mask, no));
}

/* The pixel whose filtered bytes are `x` undone with the Paeth predictor of a (left), b (above)
 * and c (above left), all in 16-bit lanes. The spec's predictor (a when |p - a| <= |p - b| and
 * |p - c| with p = a + b - c, else b when |p - b| <= |p - c|, else c: paeth_predictor() below)
 * is, with lo <= hi being a and b and t = 3c - a - b: hi when t <= lo, else lo when hi <= t,
 * else c. (The same for every a, b, c in 0-255, checked exhaustively; a and b only tie when
 * a = b or c is their mean, and then p = c wins.) Fewer steps hang on a, the pixel just done,
 * than in the spec's form. */
static ALWAYS_INLINE __m128i paeth_px(__m128i x, __m128i a, __m128i b, __m128i c)
{
    __m128i c3 = _mm_add_epi16(_mm_add_epi16(c, c), c);
    __m128i lo = _mm_min_epi16(a, b), hi = _mm_max_epi16(a, b);
    __m128i t = _mm_sub_epi16(c3, _mm_add_epi16(a, b));
    __m128i lo_or_c = select16(_mm_cmpgt_epi16(hi, t), c, lo);
    __m128i pred = select16(_mm_cmpgt_epi16(t, lo), lo_or_c, hi);
    return _mm_and_si128(_mm_add_epi16(x, pred), _mm_set1_epi16(0xff));
}

/* The pixel at `p` in 16-bit lanes. */
static ALWAYS_INLINE __m128i load_px16(const unsigned char *p)
{
    return _mm_unpacklo_epi8(load_px(p), _mm_setzero_si128());
}

/* Stores the pixel in the 16-bit lanes of `v` at `p`. */
static ALWAYS_INLINE void store_px16(unsigned char *p, __m128i v, size_t bpp)
{
    store_px(p, _mm_packus_epi16(v, v), bpp);
}

/* One pixel per step: a is the pixel just done, c the b of the step before. */
static ALWAYS_INLINE void paeth(unsigned char *row, const unsigned char *prior, size_t n,
                                size_t bpp)
{
    __m128i a = _mm_setzero_si128(), c = a;
    for (size_t i = 0; i < n; i += bpp) {
        __m128i b = load_px16(prior + i);
        a = paeth_px(load_px16(row + i), a, b, c);
        store_px16(row + i, a, bpp);
        c = b;
    }
}

/* Two rows with the Paeth filter at once, the second (`next`) one pixel behind the first (its b
 * and c are the first row's pixels just done, kept in registers): two chains of steps that do
 * not wait on each other. */
static ALWAYS_INLINE void paeth2(unsigned char *row, unsigned char *next,
                                 const unsigned char *prior, size_t n, size_t bpp)
{
    __m128i a = _mm_setzero_si128(), c = a, a2 = a, c2 = a;
    a = paeth_px(load_px16(row), a, load_px16(prior), c);
    store_px16(row, a, bpp);
    c = load_px16(prior);
    for (size_t i = bpp; i < n; i += bpp) {
        __m128i b = load_px16(prior + i), done = a;
        a = paeth_px(load_px16(row + i), a, b, c);
        store_px16(row + i, a, bpp);
        c = b;
        a2 = paeth_px(load_px16(next + i - bpp), a2, done, c2);
        store_px16(next + i - bpp, a2, bpp);
        c2 = done;
    }
    a2 = paeth_px(load_px16(next + n - bpp), a2, a, c2);
    store_px16(next + n - bpp, a2, bpp);
}
#else
static ALWAYS_INLINE void sub(unsigned char *row, size_t n, size_t bpp)
{
    for (size_t i = bpp; i < n; i++) {
        row[i] = (unsigned char)(row[i] + row[i - bpp]);
    }
}

static ALWAYS_INLINE void avg(unsigned char *row, const unsigned char *prior, size_t n, size_t bpp)
{
    for (size_t i = 0; i < n; i++) {
        unsigned a = i >= bpp ? row[i - bpp] : 0;
        row[i] = (unsigned char)(row[i] + ((a + prior[i]) >> 1));
    }
}

static ALWAYS_INLINE void paeth(unsigned char *row, const unsigned char *prior, size_t n,
                                size_t bpp)
{
    for (size_t i = 0; i < bpp; i++) {
        row[i] = (unsigned char)(row[i] + prior[i]);
    }
    for (size_t i = bpp; i < n; i++) {
        row[i] = (unsigned char)(row[i] + paeth_predictor(row[i - bpp], prior[i], prior[i - bpp]));
    }
}

static ALWAYS_INLINE void paeth2(unsigned char *row, unsigned char *next,
                                 const unsigned char *prior, size_t n, size_t bpp)
{
    paeth(row, prior, n, bpp);
    paeth(next, row, n, bpp);
}
#endif

/* Undoes the filter of the row at `row` (its type in row[-1]) for pixels of `bpp` bytes (a
 * constant where inlined); false for an unknown filter type. */
static ALWAYS_INLINE bool unfilter_bpp(unsigned char *row, const unsigned char *prior, size_t n,
                                       size_t bpp)
{
    switch (row[-1]) {
    case 0:
        return true;
    case 1:
        sub(row, n, bpp);
        return true;
    case 2:
        up(row, prior, n);
        return true;
    case 3:
        avg(row, prior, n, bpp);
        return true;
    case 4:
        paeth(row, prior, n, bpp);
        return true;
    default:
        return false;
    }
}

/* Undoes the filter of the row at `row` (`stride` bytes from one row's filter type byte to the
 * next's; pixels of `bpp` 2, 3 or 4 bytes) and, when `more` rows follow and both use Paeth, of the
 * next one too (paeth2()): the number of rows undone, 0 for an unknown filter type. */
static int unfilter_rows(unsigned char *row, size_t stride, bool more, int bpp)
{
    size_t n = stride - 1;
    if (more && row[-1] == 4 && row[n] == 4) {
        if (bpp == 2) {
            paeth2(row, row + stride, row - stride, n, 2);
        } else if (bpp == 3) {
            paeth2(row, row + stride, row - stride, n, 3);
        } else {
            paeth2(row, row + stride, row - stride, n, 4);
        }
        return 2;
    }
    if (bpp == 2) {
        return unfilter_bpp(row, row - stride, n, 2) ? 1 : 0;
    }
    if (bpp == 3) {
        return unfilter_bpp(row, row - stride, n, 3) ? 1 : 0;
    }
    return unfilter_bpp(row, row - stride, n, 4) ? 1 : 0;
}

/* Undoes the filter of a row of 1-byte pixels (a palette's indices or grey levels, whole or
 * packed: the filters work on bytes), as unfilter_bpp(); a loop of its own for each type, as
 * each byte waits for the one before. */
static bool unfilter_bytes(unsigned char *row, const unsigned char *prior, size_t n)
{
    unsigned char type = row[-1];
    if (type > 4) {
        return false;
    }
    if (type == 0 || n == 0) {
        return true;
    }
    if (type == 2) {
        up(row, prior, n);
        return true;
    }
    unsigned a = (unsigned char)(row[0] + (type == 1 ? 0 : type == 3 ? prior[0] >> 1 : prior[0]));
    row[0] = (unsigned char)a;
    if (type == 1) {
        for (size_t i = 1; i < n; i++) {
            row[i] = (unsigned char)(a = (row[i] + a) & 0xff);
        }
    } else if (type == 3) {
        for (size_t i = 1; i < n; i++) {
            row[i] = (unsigned char)(a = (row[i] + ((a + prior[i]) >> 1)) & 0xff);
        }
    } else {
        for (size_t i = 1; i < n; i++) {
            a = (row[i] + paeth_predictor((int)a, prior[i], prior[i - 1])) & 0xff;
            row[i] = (unsigned char)a;
        }
    }
    return true;
}

/* Undoes the filter of one raw row of `h`'s image (`n` bytes at `row`, its filter type byte before
 * them; the row above at `prior`): false for an unknown filter type. */
static bool unfilter_row(const struct png_header *h, unsigned char *row, const unsigned char *prior,
                         size_t n)
{
    switch (raw_bpp(h)) {
    case 1:
        return unfilter_bytes(row, prior, n);
    case 2:
        return unfilter_bpp(row, prior, n, 2);
    case 4:
        return unfilter_bpp(row, prior, n, 4);
    default:
        return unfilter_bpp(row, prior, n, 3);
    }
}

/* ---------------------------------------------------------------- box average */

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Each output column's source pixels, from the overlaps in `sx`/`tx` units. */
static void shrink_cols(struct shrink *s)
{
    for (long ox = 0; ox < s->out_w; ox++) {
        uint64_t a = (uint64_t)ox * s->tx, b = a + s->tx;
        struct col *c = &s->cols[ox];
        c->x0 = (long)(a / s->sx);
        uint64_t first_whole = (a + s->sx - 1) / s->sx, end_whole = b / s->sx;
        c->wl = first_whole > (uint64_t)c->x0 ? first_whole * s->sx - a : 0;
        c->whole = (long)(end_whole - first_whole);
        c->wr = b - end_whole * s->sx;
    }
}

/* Sets up `s` (its source size, channels and factor given) and allocates its rows and output;
 * false when memory ran out. */
static bool shrink_alloc(struct shrink *s, int factor)
{
    s->out_w = (s->width + factor - 1) / factor;
    s->out_h = (s->height + factor - 1) / factor;
    uint64_t gx = gcd((uint64_t)s->width, (uint64_t)s->out_w);
    uint64_t gy = gcd((uint64_t)s->height, (uint64_t)s->out_h);
    s->sx = (uint64_t)s->out_w / gx;
    s->tx = (uint64_t)s->width / gx;
    s->sy = (uint64_t)s->out_h / gy;
    s->ty = (uint64_t)s->height / gy;
    size_t ch = (size_t)s->channels, ow = (size_t)s->out_w;
    if ((size_t)s->out_h > SIZE_MAX / ow / ch) {
        return false;
    }
    s->cols = malloc(ow * sizeof *s->cols);
    s->hrow = malloc(ow * ch * sizeof *s->hrow);
    s->acc = calloc(ow * ch, sizeof *s->acc);
    s->next = calloc(ow * ch, sizeof *s->next);
    s->out = malloc(ow * (size_t)s->out_h * ch);
    if (s->cols == NULL || s->hrow == NULL || s->acc == NULL || s->next == NULL || s->out == NULL) {
        return false;
    }
    shrink_cols(s);
    return true;
}

static void shrink_free(struct shrink *s)
{
    free(s->cols);
    free(s->hrow);
    free(s->acc);
    free(s->next);
    free(s->out);
    s->cols = NULL;
    s->hrow = s->acc = s->next = NULL;
    s->out = NULL;
}

/* Sums `n` RGB pixels at `p` into `sum`. */
static void sum_rgb(const unsigned char *p, long n, uint64_t *sum)
{
    uint32_t r = 0, g = 0, b = 0;
    for (long i = 0; i < n; i++, p += 3) {
        r += p[0];
        g += p[1];
        b += p[2];
    }
    sum[0] = r;
    sum[1] = g;
    sum[2] = b;
}

/* Sums `n` RGBA pixels at `p` into `sum`, the colour weighted by alpha. */
static void sum_rgba(const unsigned char *p, long n, uint64_t *sum)
{
    uint32_t r = 0, g = 0, b = 0, a = 0;
    for (long i = 0; i < n; i++, p += 4) {
        uint32_t pa = p[3];
        r += p[0] * pa;
        g += p[1] * pa;
        b += p[2] * pa;
        a += pa;
    }
    sum[0] = r;
    sum[1] = g;
    sum[2] = b;
    sum[3] = a;
}

/* Adds one pixel at `p` with weight `w` to `sum`. */
static void add_pixel(const unsigned char *p, int ch, uint64_t w, uint64_t *sum)
{
    uint64_t a = ch == 4 ? p[3] : 1;
    for (int i = 0; i < 3; i++) {
        sum[i] += w * a * p[i];
    }
    if (ch == 4) {
        sum[3] += w * a;
    }
}

/* Adds the source row, summed across column by column (the whole pixels, each `sx`, then the
 * partial ones with their weights), with weight `w` to the row of sums `to`. */
static void add_row_to(const struct shrink *s, uint64_t w, uint64_t *to)
{
    int ch = s->channels;
    if (s->sx == 1 && w == 1) { /* whole boxes of tx pixels across, of one row's weight */
        long n = (long)s->tx;
        const unsigned char *p = s->row;
        for (long ox = 0; ox < s->out_w; ox++, to += ch, p += n * ch) {
            uint64_t v[4];
            if (ch == 3) {
                sum_rgb(p, n, v);
            } else {
                sum_rgba(p, n, v);
            }
            for (int i = 0; i < ch; i++) {
                to[i] += v[i];
            }
        }
        return;
    }
    for (long ox = 0; ox < s->out_w; ox++, to += ch) {
        const struct col *c = &s->cols[ox];
        const unsigned char *p = s->row + (size_t)c->x0 * (size_t)ch;
        const unsigned char *inner = c->wl > 0 ? p + ch : p;
        uint64_t v[4];
        if (ch == 3) {
            sum_rgb(inner, c->whole, v);
        } else {
            sum_rgba(inner, c->whole, v);
        }
        for (int i = 0; i < ch; i++) {
            v[i] *= s->sx; /* each whole pixel weighs sx */
        }
        if (c->wl > 0) {
            add_pixel(p, ch, c->wl, v);
        }
        if (c->wr > 0) {
            add_pixel(inner + (size_t)c->whole * (size_t)ch, ch, c->wr, v);
        }
        for (int i = 0; i < ch; i++) {
            to[i] += w * v[i];
        }
    }
}

/* `sum` / `w` rounded to nearest; in 32 bits when `narrow` (both fit), which is faster. */
static unsigned char mean(uint64_t sum, uint64_t w, bool narrow)
{
    if (narrow) {
        return (unsigned char)(((uint32_t)sum + (uint32_t)w / 2) / (uint32_t)w);
    }
    return (unsigned char)((sum + w / 2) / w);
}

/* One output pixel from the sums of a box of total weight `total`; its sums fit in 32 bits when
 * `total` is at most EMIT32_TOTAL_MAX (255 x 255 a unit, plus half the divisor), as with whole
 * boxes of factor x factor pixels. */
static void emit_pixel(const uint64_t *sum, int ch, uint64_t total, unsigned char *to)
{
    bool narrow = total <= EMIT32_TOTAL_MAX;
    if (ch == 3) {
        for (int i = 0; i < 3; i++) {
            to[i] = mean(sum[i], total, narrow);
        }
        return;
    }
    uint64_t a = sum[3];
    for (int i = 0; i < 3; i++) {
        to[i] = a == 0 ? 0 : mean(sum[i], a, narrow);
    }
    to[3] = mean(a, total, narrow);
}

/* Writes output row `oy` from `acc`, then makes `next` the sums of the row after it. */
static void emit_row(struct shrink *s, long oy)
{
    int ch = s->channels;
    unsigned char *to = s->out + (size_t)oy * (size_t)s->out_w * (size_t)ch;
    uint64_t total = s->tx * s->ty;
    for (long ox = 0; ox < s->out_w; ox++, to += ch) {
        emit_pixel(s->acc + (size_t)ox * (size_t)ch, ch, total, to);
    }
    uint64_t *t = s->acc;
    s->acc = s->next;
    s->next = t;
    memset(s->next, 0, (size_t)s->out_w * (size_t)ch * sizeof *s->next);
}

/* Adds source row `y` to its output row, and to the next one too when it straddles their edge
 * (summed across once, into `hrow`); writes each output row once its last source row is in. */
static void add_row(struct shrink *s, long y)
{
    uint64_t top = (uint64_t)y * s->sy, bottom = top + s->sy;
    long oy = (long)(top / s->ty);
    uint64_t edge = (uint64_t)(oy + 1) * s->ty; /* the bottom of output row oy */
    if (bottom <= edge) {
        add_row_to(s, s->sy, s->acc);
    } else {
        size_t n = (size_t)s->out_w * (size_t)s->channels;
        memset(s->hrow, 0, n * sizeof *s->hrow);
        add_row_to(s, 1, s->hrow);
        for (size_t i = 0; i < n; i++) {
            s->acc[i] += (edge - top) * s->hrow[i];
            s->next[i] += (bottom - edge) * s->hrow[i];
        }
    }
    if (bottom >= edge) {
        emit_row(s, oy);
    }
}

/* ---------------------------------------------------------------- decode */

/* Unfilters the rows of `raw` (`stride` bytes each: a row of zeros, then the image's, each a
 * filter type byte and the pixels) one by one into the running average; NULL, "bad filter" or
 * "deadline". */
static const char *shrink_rows(struct shrink *s, unsigned char *raw, size_t stride, long deadline)
{
    long ready = 0; /* rows unfiltered */
    for (long y = 0; y < s->height; y++) {
        if (y % DEADLINE_ROWS == 0 && past(deadline)) {
            return "deadline";
        }
        unsigned char *row = raw + stride * (size_t)(y + 1) + 1;
        if (y == ready) {
            int k = unfilter_rows(row, stride, y + 1 < s->height, s->channels);
            if (k == 0) {
                return "bad filter";
            }
            ready += k;
        }
        s->row = row;
        add_row(s, y);
    }
    return NULL;
}

/* Expands the raw row at `row` into `width` pixels of `ch` bytes at `to`: grey and alpha into
 * RGBA, or indices (palette entries or grey levels, `h->depth` bits each, from each byte's high
 * bits on) looked up; false for an index past PLTE's colours (libpng and ImageMagick each have
 * their own way with those: declined). */
static bool expand_row(const struct png_header *h, const unsigned char *row, long width, int ch,
                       unsigned char *to)
{
    if (h->color_type == 4) {
        for (long x = 0; x < width; x++, to += 4, row += 2) {
            memcpy(to, (unsigned char[4]){row[0], row[0], row[0], row[1]}, 4);
        }
        return true;
    }
    unsigned depth = (unsigned)h->depth, mask = (1U << depth) - 1, n = (unsigned)h->npalette;
    if (depth == 8) {
        for (long x = 0; x < width; x++, to += ch) {
            if (row[x] >= n) {
                return false;
            }
            memcpy(to, h->palette[row[x]], ch == 4 ? 4 : 3);
        }
        return true;
    }
    for (long x = 0; x < width; x++, to += ch) {
        uint64_t bit = (uint64_t)x * depth;
        unsigned i = (row[bit / 8] >> (8 - depth - bit % 8)) & mask;
        if (i >= n) {
            return false;
        }
        memcpy(to, h->palette[i], (size_t)ch);
    }
    return true;
}

/* shrink_rows() for an image whose raw rows are made into pixels (indices, grey levels, grey and
 * alpha): each row unfiltered (grey and alpha as shrink_rows() does, two Paeth rows at once), then
 * expanded into a row of RGB or RGBA pixels. */
static const char *shrink_expanded_rows(struct shrink *s, const struct png_header *h,
                                        unsigned char *raw, size_t stride, long deadline)
{
    unsigned char *px = malloc((size_t)s->width * (size_t)s->channels);
    const char *why = px == NULL ? "out of memory" : NULL;
    long ready = 0; /* rows unfiltered */
    for (long y = 0; why == NULL && y < s->height; y++) {
        unsigned char *row = raw + stride * (size_t)(y + 1) + 1;
        if (y % DEADLINE_ROWS == 0 && past(deadline)) {
            why = "deadline";
            continue;
        }
        if (y == ready) {
            int k = raw_bpp(h) == 2 ? unfilter_rows(row, stride, y + 1 < s->height, 2)
                                    : (int)unfilter_row(h, row, row - stride, stride - 1);
            if (k == 0) {
                why = "bad filter";
                continue;
            }
            ready += k;
        }
        if (!expand_row(h, row, s->width, s->channels, px)) {
            why = "palette index out of range";
        } else {
            s->row = px;
            add_row(s, y);
        }
    }
    free(px);
    return why;
}

/* ---------------------------------------------------------------- Adam7 */

/* One of an interlaced image's seven passes: the pixels at x0 + i dx, y0 + j dy, stored as an
 * image of their own (`w` x `h`, each row a filter type byte and `stride` - 1 bytes), empty
 * (w or h 0, no rows at all) when the image is too small to reach it. */
struct pass {
    long x0, y0, dx, dy, w, h;
    size_t stride;
    unsigned char *rows; /* the first row's filter type byte */
};

/* The passes of `h`'s image, at their places in the inflated data from `base` (NULL: only the
 * sizes); returns the data's size, or 0 when it would not fit in a size_t. */
static size_t adam7_passes(const struct png_header *h, unsigned char *base, struct pass p[7])
{
    static const unsigned char adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8},
                                              {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2},
                                              {0, 1, 1, 2}};
    uint64_t at = 0;
    for (int i = 0; i < 7; i++) {
        long x0 = adam7[i][0], y0 = adam7[i][1], dx = adam7[i][2], dy = adam7[i][3];
        long w = (long)h->width > x0 ? ((long)h->width - x0 + dx - 1) / dx : 0;
        long ht = (long)h->height > y0 ? ((long)h->height - y0 + dy - 1) / dy : 0;
        if (w == 0 || ht == 0) {
            w = ht = 0;
        }
        uint64_t stride = raw_row_bytes(h, (uint64_t)w) + 1;
        p[i] = (struct pass){.x0 = x0,
                             .y0 = y0,
                             .dx = dx,
                             .dy = dy,
                             .w = w,
                             .h = ht,
                             .stride = (size_t)stride,
                             .rows = base != NULL ? base + at : NULL};
        if (ht > 0 && stride > (UINT64_MAX - at) / (uint64_t)ht) {
            return 0;
        }
        at += stride * (uint64_t)ht;
    }
    return at <= SIZE_MAX - RAW_SLACK ? (size_t)at : 0;
}

/* Undoes the filters of pass `p`'s rows in place, the first one's row above being `zeros`. */
static const char *unfilter_pass(const struct png_header *h, const struct pass *p,
                                 const unsigned char *zeros, long deadline)
{
    size_t n = p->stride - 1;
    for (long r = 0; r < p->h; r++) {
        if (r % DEADLINE_ROWS == 0 && past(deadline)) {
            return "deadline";
        }
        unsigned char *row = p->rows + (size_t)r * p->stride + 1;
        const unsigned char *prior = r == 0 ? zeros : row - p->stride;
        if (!unfilter_row(h, row, prior, n)) {
            return "bad filter";
        }
    }
    return NULL;
}

/* Puts pass `p`'s row at `src` (unfiltered) at its places in the image's raw row `line` (packed
 * indices below 8 bits: `line` zeroed first, the bits OR-ed in). */
static void scatter(const struct png_header *h, const struct pass *p, const unsigned char *src,
                    unsigned char *line)
{
    if (h->depth == 8) {
        size_t bpp = raw_bpp(h);
        unsigned char *to = line + (size_t)p->x0 * bpp;
        size_t step = (size_t)p->dx * bpp;
        for (long i = 0; i < p->w; i++, to += step, src += bpp) {
            memcpy(to, src, bpp);
        }
        return;
    }
    unsigned depth = (unsigned)h->depth, mask = (1U << depth) - 1;
    for (long i = 0; i < p->w; i++) {
        uint64_t from = (uint64_t)i * depth, to = (uint64_t)(p->x0 + i * p->dx) * depth;
        unsigned v = (src[from / 8] >> (8 - depth - from % 8)) & mask;
        line[to / 8] = (unsigned char)(line[to / 8] | v << (8 - depth - to % 8));
    }
}

/* decode() for an Adam7 image: its passes inflated whole and unfiltered, then each row of the
 * image put together from them, expanded into pixels when it is not RGB(A) (expanded()), and
 * added to the running average. */
static const char *decode_adam7(const struct png_header *h, struct shrink *s, long deadline)
{
    struct pass p[7];
    size_t size = adam7_passes(h, NULL, p);
    if (size == 0 || h->row_bytes > SIZE_MAX - 1 - RAW_SLACK ||
        (size_t)s->width > SIZE_MAX / (size_t)s->channels) {
        return "too large";
    }
    size_t line_bytes = (size_t)h->row_bytes + 1 + RAW_SLACK;
    unsigned char *raw = malloc(size + RAW_SLACK);
    unsigned char *zeros = calloc(line_bytes, 1); /* [0]: a filter type byte's place */
    unsigned char *line = calloc(line_bytes, 1);
    unsigned char *px = expanded(h) ? malloc((size_t)s->width * (size_t)s->channels) : NULL;
    const char *why = raw == NULL || zeros == NULL || line == NULL || (expanded(h) && px == NULL)
                          ? "out of memory"
                      : past(deadline) ? "deadline"
                                       : NULL;
    if (why == NULL) {
        memset(raw + size, 0, RAW_SLACK);
        adam7_passes(h, raw, p);
        why = inflate_idat(h, raw, size);
        why = why == NULL && past(deadline) ? "deadline" : why;
    }
    for (int i = 0; why == NULL && i < 7; i++) {
        why = unfilter_pass(h, &p[i], zeros + 1, deadline);
    }
    for (long y = 0; why == NULL && y < s->height; y++) {
        if (y % DEADLINE_ROWS == 0 && past(deadline)) {
            why = "deadline";
            continue;
        }
        if (h->depth < 8) {
            memset(line + 1, 0, (size_t)h->row_bytes);
        }
        for (int i = 0; i < 7; i++) {
            if (p[i].h > 0 && y >= p[i].y0 && (y - p[i].y0) % p[i].dy == 0) {
                size_t r = (size_t)((y - p[i].y0) / p[i].dy);
                scatter(h, &p[i], p[i].rows + r * p[i].stride + 1, line + 1);
            }
        }
        if (expanded(h) && !expand_row(h, line + 1, s->width, s->channels, px)) {
            why = "palette index out of range";
        } else {
            s->row = expanded(h) ? px : line + 1;
            add_row(s, y);
        }
    }
    free(px);
    free(line);
    free(zeros);
    free(raw);
    return why;
}

/* ---------------------------------------------------------------- the whole */

/* Inflates `h`'s pixels whole (pngshrink.h: its memory), then averages them into `s`. */
static const char *decode(const struct png_header *h, struct shrink *s, long deadline)
{
    if (h->interlaced) {
        return decode_adam7(h, s, deadline);
    }
    if ((size_t)s->width > (SIZE_MAX - 1) / (size_t)s->channels || h->row_bytes > SIZE_MAX - 1) {
        return "too large";
    }
    size_t stride = (size_t)h->row_bytes + 1;
    if ((size_t)s->height > (SIZE_MAX - RAW_SLACK) / stride - 1) {
        return "too large";
    }
    size_t size = stride * (size_t)s->height;
    unsigned char *raw = malloc(stride + size + RAW_SLACK);
    if (raw == NULL) {
        return "out of memory";
    }
    memset(raw, 0, stride);
    memset(raw + stride + size, 0, RAW_SLACK);
    const char *why = past(deadline) ? "deadline" : inflate_idat(h, raw + stride, size);
    if (why == NULL) {
        why = past(deadline) ? "deadline"
              : expanded(h)  ? shrink_expanded_rows(s, h, raw, stride, deadline)
                             : shrink_rows(s, raw, stride, deadline);
    }
    free(raw);
    return why;
}

int pngshrink_decode(const void *data, size_t len, int factor, long max_pixels, long deadline,
                     struct pngshrink_image *out, const char **why)
{
    memset(out, 0, sizeof *out);
    struct png_header h;
    if (factor != 2 && factor != 4 && factor != 8) {
        *why = "bad factor";
        return -1;
    }
    *why = data == NULL ? "no data" : walk_chunks(data, len, max_pixels, &h);
    struct pngshrink_image img = {0};
    if (*why == NULL) {
        *why = read_texts(&h, &img);
    }
    if (*why != NULL) {
        pngshrink_free(&img);
        return -1;
    }
    struct shrink s = {.width = (long)h.width, .height = (long)h.height, .channels = h.channels};
    *why = shrink_alloc(&s, factor) ? decode(&h, &s, deadline) : "out of memory";
    if (*why != NULL) {
        shrink_free(&s);
        pngshrink_free(&img);
        return -1;
    }
    img.width = s.out_w;
    img.height = s.out_h;
    img.channels = s.channels;
    img.pixels = s.out;
    s.out = NULL;
    shrink_free(&s);
    *out = img;
    return 0;
}

void pngshrink_free(struct pngshrink_image *img)
{
    free(img->pixels);
    for (size_t i = 0; i < img->ntext; i++) {
        free(img->texts[i].key);
        free(img->texts[i].value);
    }
    free(img->texts);
    memset(img, 0, sizeof *img);
}
