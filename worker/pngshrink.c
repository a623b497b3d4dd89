/* pngshrink: a PNG decoded row by row and box-averaged on the fly (pngshrink.h). */
#include "pngshrink.h"

#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define PNG_SIG_LEN    8
#define CHUNK_OVERHEAD 12                  /* length, type, CRC */
#define CHUNK_MAX      0x7fffffffUL        /* the PNG spec's largest chunk length */
#define ANCILLARY_MAX  (8UL * 1024 * 1024) /* libpng's allocation for one chunk */
#define DEADLINE_ROWS  32                  /* rows between checks of the deadline */

/* What the chunk walk found in IHDR. */
struct png_header {
    unsigned long width, height;
    int channels;
};

/* The bytes libpng reads from. */
struct source {
    const unsigned char *data;
    size_t len, pos;
};

/* The running box average: sums of `factor` source rows, then one output row. */
struct shrink {
    long width, height;   /* source */
    long out_w, out_h;    /* ceil(source / factor) */
    int channels, factor; /* 3 or 4; 2, 4 or 8 */
    unsigned char *row;   /* one decoded source row */
    uint32_t *sums;       /* out_w x channels: colour (x alpha for RGBA), then alpha */
    unsigned char *out;   /* out_w x out_h x channels */
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

/* IHDR's 13 bytes at `d`: only 8-bit RGB or RGBA, not interlaced, within `max_pixels`. */
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
    if (d[8] != 8) {
        return "not 8-bit";
    }
    if (d[9] != 2 && d[9] != 6) {
        return "not RGB or RGBA";
    }
    if (d[10] != 0 || d[11] != 0) {
        return "bad IHDR method";
    }
    if (d[12] != 0) {
        return "interlaced";
    }
    h->channels = d[9] == 6 ? 4 : 3;
    return NULL;
}

/* One chunk at `c` (its length checked) after IHDR: what makes the file one to decline. */
static const char *check_chunk(const unsigned char *c, bool *seen_idat)
{
    if (is_type(c, "tRNS")) {
        return "tRNS chunk";
    }
    if (is_type(c, "PLTE")) {
        return "PLTE chunk";
    }
    if (is_type(c, "IHDR")) {
        return "second IHDR";
    }
    /* ImageMagick's ping, which gives the headers, skips the text its read keeps */
    if (is_type(c, "tEXt") || is_type(c, "zTXt") || is_type(c, "iTXt")) {
        return "text chunk";
    }
    if (is_type(c, "IDAT")) {
        *seen_idat = true;
        return NULL;
    }
    return *seen_idat ? "chunk after IDAT" : NULL;
}

/* Walks every chunk up to IEND, bounds-checked; NULL with `h` filled, or the reason to decline.
 * (IDAT chunks after another chunk that follows IDAT are caught as "chunk after IDAT".) */
static const char *walk_chunks(const unsigned char *d, size_t len, long max_pixels,
                               struct png_header *h)
{
    static const unsigned char sig[PNG_SIG_LEN] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < PNG_SIG_LEN || memcmp(d, sig, PNG_SIG_LEN) != 0) {
        return "not a PNG";
    }
    bool seen_idat = false;
    for (size_t pos = PNG_SIG_LEN; pos < len;) {
        if (len - pos < CHUNK_OVERHEAD) {
            return "truncated";
        }
        unsigned long n = be32(d + pos);
        if (n > CHUNK_MAX || n > len - pos - CHUNK_OVERHEAD) {
            return "truncated";
        }
        const unsigned char *c = d + pos;
        const char *why = NULL;
        if (pos == PNG_SIG_LEN) {
            why = !is_type(c, "IHDR") || n != 13 ? "no IHDR" : check_ihdr(c + 8, max_pixels, h);
        } else if (is_type(c, "IEND")) {
            return seen_idat ? NULL : "no IDAT";
        } else {
            why = check_chunk(c, &seen_idat);
        }
        if (why != NULL) {
            return why;
        }
        pos += CHUNK_OVERHEAD + n;
    }
    return "truncated";
}

static void read_bytes(png_structp png, png_bytep to, size_t n)
{
    struct source *s = png_get_io_ptr(png);
    if (s == NULL || n > s->len - s->pos) {
        png_error(png, "truncated");
    }
    memcpy(to, s->data + s->pos, n);
    s->pos += n;
}

static void on_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Allocates the row, sums and output of `s` (its sizes set); false when memory ran out. */
static bool shrink_alloc(struct shrink *s)
{
    size_t ch = (size_t)s->channels, ow = (size_t)s->out_w;
    if ((size_t)s->out_h > SIZE_MAX / ow / ch || (size_t)s->width > SIZE_MAX / ch) {
        return false;
    }
    s->row = malloc((size_t)s->width * ch);
    s->sums = calloc(ow * ch, sizeof *s->sums);
    s->out = malloc(ow * (size_t)s->out_h * ch);
    return s->row != NULL && s->sums != NULL && s->out != NULL;
}

static void shrink_free(struct shrink *s)
{
    free(s->row);
    free(s->sums);
    free(s->out);
    s->row = s->out = NULL;
    s->sums = NULL;
}

/* Adds `n` RGB pixels at `p` to one box's sums. */
static void add_rgb(const unsigned char *p, long n, uint32_t *sum)
{
    uint32_t r = 0, g = 0, b = 0;
    for (long i = 0; i < n; i++, p += 3) {
        r += p[0];
        g += p[1];
        b += p[2];
    }
    sum[0] += r;
    sum[1] += g;
    sum[2] += b;
}

/* Adds `n` RGBA pixels at `p` to one box's sums, the colour weighted by alpha. */
static void add_rgba(const unsigned char *p, long n, uint32_t *sum)
{
    uint32_t r = 0, g = 0, b = 0, a = 0;
    for (long i = 0; i < n; i++, p += 4) {
        uint32_t pa = p[3];
        r += p[0] * pa;
        g += p[1] * pa;
        b += p[2] * pa;
        a += pa;
    }
    sum[0] += r;
    sum[1] += g;
    sum[2] += b;
    sum[3] += a;
}

/* Adds the decoded source row to the sums of its output row, box by box. */
static void add_row(struct shrink *s)
{
    size_t ch = (size_t)s->channels;
    for (long ox = 0, x = 0; ox < s->out_w; ox++, x += s->factor) {
        long n = s->width - x < s->factor ? s->width - x : s->factor;
        const unsigned char *p = s->row + (size_t)x * ch;
        if (ch == 3) {
            add_rgb(p, n, s->sums + (size_t)ox * ch);
        } else {
            add_rgba(p, n, s->sums + (size_t)ox * ch);
        }
    }
}

/* One output pixel from the sums of a box of `count` source pixels, rounded to nearest. */
static void emit_pixel(const uint32_t *sum, int ch, uint32_t count, unsigned char *to)
{
    if (ch == 3) {
        for (int i = 0; i < 3; i++) {
            to[i] = (unsigned char)((sum[i] + count / 2) / count);
        }
        return;
    }
    uint32_t a = sum[3];
    for (int i = 0; i < 3; i++) {
        to[i] = a == 0 ? 0 : (unsigned char)((sum[i] + a / 2) / a);
    }
    to[3] = (unsigned char)((a + count / 2) / count);
}

/* Writes output row `oy` from the sums of its `rows` source rows, then clears the sums. */
static void emit_row(struct shrink *s, long oy, long rows)
{
    int ch = s->channels;
    unsigned char *to = s->out + (size_t)oy * (size_t)s->out_w * (size_t)ch;
    for (long ox = 0; ox < s->out_w; ox++, to += ch) {
        long cols = s->width - ox * s->factor;
        cols = cols < s->factor ? cols : s->factor;
        emit_pixel(s->sums + (size_t)ox * (size_t)ch, ch, (uint32_t)(cols * rows), to);
    }
    memset(s->sums, 0, (size_t)s->out_w * (size_t)ch * sizeof *s->sums);
}

/* libpng set up to read `h`'s image (nothing it does not need, no chunk larger than it needs). */
static void setup_png(png_structp png, const struct png_header *h, struct source *src)
{
    png_set_read_fn(png, src, read_bytes);
    png_set_user_limits(png, (png_uint_32)h->width, (png_uint_32)h->height);
    png_set_chunk_malloc_max(png, ANCILLARY_MAX);
    png_set_chunk_cache_max(png, 1000);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
}

/* Reads every row into the running average; false when the deadline passed. libpng errors
 * longjmp out of here (to decode()'s setjmp). */
static bool read_rows(png_structp png, png_infop info, struct shrink *s, long deadline)
{
    png_read_info(png, info);
    if (png_get_image_width(png, info) != (png_uint_32)s->width ||
        png_get_image_height(png, info) != (png_uint_32)s->height ||
        png_get_channels(png, info) != s->channels || png_get_bit_depth(png, info) != 8) {
        png_error(png, "header changed");
    }
    for (long y = 0; y < s->height; y++) {
        if (deadline > 0 && y % DEADLINE_ROWS == 0 && clock_mono_ms() >= deadline) {
            return false;
        }
        png_read_row(png, s->row, NULL);
        add_row(s);
        if ((y + 1) % s->factor == 0 || y + 1 == s->height) {
            emit_row(s, y / s->factor, y % s->factor + 1);
        }
    }
    png_read_end(png, NULL);
    return true;
}

/* libpng's part: decodes into `s` (allocated before setjmp, its pointers not changed after).
 * `why` is the one local read after a longjmp: volatile, though only set once read_rows() has
 * returned. */
static const char *decode(const void *data, size_t len, const struct png_header *h,
                          struct shrink *s, long deadline)
{
    struct source src = {.data = data, .len = len, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, on_error, on_warning);
    png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return "out of memory";
    }
    const char *volatile why = "libpng error";
    if (setjmp(png_jmpbuf(png)) == 0) {
        setup_png(png, h, &src);
        why = read_rows(png, info, s, deadline) ? NULL : "deadline";
    }
    png_destroy_read_struct(&png, &info, NULL);
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
    if (*why != NULL) {
        return -1;
    }
    struct shrink s = {
        .width = (long)h.width, .height = (long)h.height, .channels = h.channels, .factor = factor};
    s.out_w = (s.width + factor - 1) / factor;
    s.out_h = (s.height + factor - 1) / factor;
    *why = shrink_alloc(&s) ? decode(data, len, &h, &s, deadline) : "out of memory";
    if (*why != NULL) {
        shrink_free(&s);
        return -1;
    }
    *out = (struct pngshrink_image){
        .width = s.out_w, .height = s.out_h, .channels = s.channels, .pixels = s.out};
    s.out = NULL;
    shrink_free(&s);
    return 0;
}

void pngshrink_free(struct pngshrink_image *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}
