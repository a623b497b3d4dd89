#include "jpegdc.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__) && !defined(JPEGDC_SCALAR)
#include <emmintrin.h>
#define USE_SSE2 1
#endif

/* Markers (ITU T.81 table B.1) */
enum {
    M_TEM = 0x01,
    M_SOF0 = 0xC0,
    M_SOF2 = 0xC2,
    M_DHT = 0xC4,
    M_JPG = 0xC8,
    M_SOF9 = 0xC9,
    M_DAC = 0xCC,
    M_SOF15 = 0xCF,
    M_RST0 = 0xD0,
    M_RST7 = 0xD7,
    M_SOI = 0xD8,
    M_EOI = 0xD9,
    M_SOS = 0xDA,
    M_DQT = 0xDB,
    M_DNL = 0xDC,
    M_DRI = 0xDD,
    M_APP0 = 0xE0,
    M_APP14 = 0xEE,
    M_COM = 0xFE,
};

#define MAX_COMPONENTS    3
#define MAX_DC_CATEGORY   11 /* an 8-bit JPEG's DC differences have at most 11 bits */
#define MAX_AL            13
#define MAX_DIMENSION     65500L  /* libjpeg's JPEG_MAX_DIMENSION */
#define MAX_QUANT         32767   /* libjpeg-turbo's SIMD builds keep quantisers in a short */
#define MAX_BLOCKS_IN_MCU 10      /* libjpeg's D_MAX_BLOCKS_IN_MCU */
#define DC_PEEK           10      /* bits of the DC difference look-up (8..15) */
#define ONE_PEEK          10      /* bits of the look-up of one DC difference (8..DC_PEEK) */
#define LUT_DIFFS         4       /* DC differences in one look-up at most */
#define DIFF_BIAS         2048    /* added to the differences in it (12 bits) */
#define BAD_DIFF          INT_MIN /* dc_diff: a code the table does not have */

/* ImageMagick's JPEG reader stops at the 1024th scan ("too many scans", its jpeg:max-scan-number
 * guard against libjpeg's work per scan): a file of more is left to it, to fail as it does at
 * any other size. jpegdc's own work is the file's bytes (AC scans skipped), not per scan. */
#define MAX_SCANS 1023

/* The bit reader's fast paths, inlined into the decoding loops (which keep it in registers). */
#if defined(__GNUC__)
#define HOT inline __attribute__((always_inline))
#else
#define HOT inline
#endif

/* A Huffman table: codes of up to 8 bits through `fast` ((length << 8) | symbol, 0: longer),
 * longer ones by the canonical code ranges of T.81 F.2.2.3. */
struct huff {
    bool defined;
    uint16_t fast[256];
    int32_t maxcode[17]; /* largest code of each length, -1: none */
    int32_t mincode[17];
    int valptr[17];
    uint8_t vals[256];
};

/* A DC table, and for each DC_PEEK-bit prefix the DC differences it holds whole (codes of up to
 * 8 bits and their extra bits), up to LUT_DIFFS: their count (bits 0-3; 0: step by step), their
 * total length (4-7), the first one's length (8-11), then from bit 16 each difference + DIFF_BIAS
 * in 12 bits (DIFF_BIAS, a difference of 0, past the count). */
struct dc_table {
    struct huff huff;
    bool built; /* the look-ups below, for the table as it is (built by the first scan using it) */
    uint64_t lut[1 << DC_PEEK];
    /* the first difference alone, in less room (for interleaved scans, which use two tables):
     * (the difference + DIFF_BIAS) << 4 | its length, for each ONE_PEEK-bit prefix; 0: none */
    uint16_t one[1 << ONE_PEEK];
};

struct comp {
    int id, h, v, tq;
    long bw, bh; /* the block grid, MCU padding included */
    long cw, ch; /* the blocks that hold the component's samples */
    int16_t *dc;
    int al;             /* the DC bits still unknown below this one; -1: no DC scan yet */
    bool ac, ac_before; /* an AC scan reached coefficients 1..9: now, before the latest scan */
    int quant;          /* the DC quantiser, latched at the component's first scan */
};

struct dec {
    const uint8_t *p, *end;
    long max_pixels;
    bool sof, jfif, adobe, eoi;
    bool sos; /* a scan was seen: the colour space is settled */
    int adobe_transform;
    long width, height;
    int nc, hmax, vmax;
    long mcux, mcuy;
    struct comp c[MAX_COMPONENTS];
    int quant[4];
    bool quant_set[4];
    struct dc_table dc[4];
    struct huff ac[4];
    unsigned restart; /* MCUs between restart markers, 0: none */
    long scans;
    const char *why;
};

/* The entropy-coded bits of a scan: bytes with 0xFF 0x00 unstuffed, stopping at the first
 * marker; past it the reader gives zero bits and counts them as padding. Below its n bits, acc
 * may hold the first bits of the byte at p (fill ORs them in again, the same bits). */
struct bits {
    const uint8_t *p, *end;
    uint64_t acc; /* the next bits, from the top */
    int n;        /* bits in acc */
    int pad;      /* padding bits taken in: more consumed than n - pad real ones once n < pad */
    bool at_marker;
};

static int decline(struct dec *d, const char *why)
{
    if (d->why == NULL) {
        d->why = why;
    }
    return -1;
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static HOT uint64_t be64(const uint8_t *p)
{
    return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
           (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
           (uint64_t)p[6] << 8 | p[7];
}

/* Whether one of the eight bytes of w is 0xFF (a zero byte of ~w). */
static HOT bool has_ff(uint64_t w)
{
    uint64_t x = ~w;
    return ((x - 0x0101010101010101u) & ~x & 0x8080808080808080u) != 0;
}

/* b with acc filled a byte at a time, unstuffing and stopping at a marker. (The slow paths take
 * and give the reader by value: the hot loops' copy of it stays in registers.) */
static struct bits fill_bytes(struct bits b)
{
    while (b.n <= 56) {
        unsigned byte = 0;
        if (!b.at_marker && b.p < b.end && b.p[0] != 0xFF) {
            byte = *b.p++;
        } else if (!b.at_marker && b.end - b.p > 1 && b.p[1] == 0x00) {
            byte = 0xFF;
            b.p += 2;
        } else {
            b.at_marker = true;
            b.pad += 8;
        }
        b.acc |= (uint64_t)byte << (56 - b.n);
        b.n += 8;
    }
    return b;
}

/* Tops acc up to more than 56 bits: when none of the next eight bytes is 0xFF, with all of them
 * at once (the whole bytes that fit count, the bits of the next one wait for the next fill),
 * else a byte at a time. */
static HOT void fill(struct bits *b)
{
    if (b->n > 56) {
        return;
    }
    if (!b->at_marker && b->end - b->p >= 8) {
        uint64_t w = be64(b->p);
        if (!has_ff(w)) {
            int k = (64 - b->n) >> 3;
            b->acc |= w >> b->n;
            b->p += k;
            b->n += 8 * k;
            return;
        }
    }
    *b = fill_bytes(*b);
}

static HOT void consume(struct bits *b, int k)
{
    b->acc <<= k;
    b->n -= k;
}

/* Whether the bits consumed ran into the padding: the scan was cut short. */
static bool cut_short(const struct bits *b)
{
    return b->n < b->pad;
}

static unsigned get_bits(struct bits *b, int k)
{
    if (k == 0) {
        return 0;
    }
    if (b->n < k) {
        fill(b);
    }
    unsigned v = (unsigned)(b->acc >> (64 - k));
    consume(b, k);
    return v;
}

/* The next symbol, or -1 for a code the table does not have. */
static int huff_decode(struct bits *b, const struct huff *h)
{
    if (b->n < 16) {
        fill(b);
    }
    unsigned f = h->fast[b->acc >> 56];
    if (f != 0) {
        consume(b, (int)(f >> 8));
        return (int)(f & 0xFF);
    }
    for (int len = 9; len <= 16; len++) {
        int32_t code = (int32_t)(b->acc >> (64 - len));
        if (code <= h->maxcode[len]) {
            consume(b, len);
            return h->vals[h->valptr[len] + code - h->mincode[len]];
        }
    }
    return -1;
}

/* A DC difference from its category and extra bits (T.81 F.2.2.1). */
static int extend(unsigned bits, int cat)
{
    int v = (int)bits;
    return cat > 0 && v < 1 << (cat - 1) ? v - (1 << cat) + 1 : v;
}

/* The next DC difference step by step: its code, then its extra bits. */
static int dc_diff_slow(struct bits *b, const struct huff *h)
{
    int cat = huff_decode(b, h);
    if (cat < 0 || cat > MAX_DC_CATEGORY) {
        return BAD_DIFF;
    }
    return extend(get_bits(b, cat), cat);
}

/* The DC look-up entry at the next bits (struct dc_table). */
static HOT uint64_t lut_peek(struct bits *b, const struct dc_table *t)
{
    if (b->n < 16) {
        fill(b);
    }
    return t->lut[b->acc >> (64 - DC_PEEK)];
}

/* Difference j of a DC look-up entry. */
static HOT int lut_diff(uint64_t e, int j)
{
    return (int)(e >> (16 + 12 * j) & 4095) - DIFF_BIAS;
}

/* The next DC difference, BAD_DIFF for a code the table does not have or a category above 11:
 * code and extra bits in one look-up when they fit in DC_PEEK bits. */
static HOT int dc_diff(struct bits *b, const struct dc_table *t)
{
    if (b->n < 16) {
        fill(b);
    }
    unsigned e = t->one[b->acc >> (64 - ONE_PEEK)];
    if (e != 0) {
        consume(b, (int)(e & 15));
        return (int)(e >> 4) - DIFF_BIAS;
    }
    struct bits copy = *b; /* (see fill_bytes) */
    int diff = dc_diff_slow(&copy, &t->huff);
    *b = copy;
    return diff;
}

/* The table of `counts` codes of each length 1..16 for `vals`, as libjpeg builds it (a set of
 * codes that does not fit its lengths, or takes the all-ones code, is refused). */
static int huff_build(struct huff *h, const uint8_t counts[16], const uint8_t *vals, int nvals)
{
    memset(h, 0, sizeof *h);
    memcpy(h->vals, vals, (size_t)nvals);
    int32_t code = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        h->mincode[len] = code;
        h->valptr[len] = k;
        for (int i = 0; i < counts[len - 1]; i++, code++, k++) {
            if (len <= 8) {
                int span = 1 << (8 - len);
                for (int j = 0; j < span && code * span + j < 256; j++) {
                    h->fast[code * span + j] = (uint16_t)(len << 8 | vals[k]);
                }
            }
        }
        if (code >= (int32_t)1 << len) {
            return -1;
        }
        h->maxcode[len] = counts[len - 1] != 0 ? code - 1 : -1;
        code <<= 1;
    }
    h->defined = true;
    return 0;
}

/* The marker's segment: its payload and length, or -1 if it runs past the end. */
static int segment(struct dec *d, const uint8_t **data, unsigned *len)
{
    if (d->end - d->p < 2 || be16(d->p) < 2 || (size_t)(d->end - d->p) < be16(d->p)) {
        return decline(d, "truncated marker segment");
    }
    *len = be16(d->p) - 2;
    *data = d->p + 2;
    d->p += 2 + *len;
    return 0;
}

static int parse_dqt(struct dec *d)
{
    const uint8_t *s;
    unsigned len;
    if (segment(d, &s, &len) < 0) {
        return -1;
    }
    while (len > 0) {
        unsigned pq = s[0] >> 4, tq = s[0] & 15, size = 1 + 64 * (pq + 1);
        if (pq > 1 || tq > 3 || len < size) {
            return decline(d, "bad quantisation table");
        }
        d->quant[tq] = pq == 0 ? s[1] : (int)be16(s + 1);
        d->quant_set[tq] = true;
        s += size;
        len -= size;
    }
    return 0;
}

/* The length of the code and extra bits at bit `at` of the DC_PEEK-bit prefix i, with the
 * difference they make in *diff; 0 if they do not end within it. */
static int lut_code(const struct huff *h, unsigned i, int at, int *diff)
{
    unsigned f = h->fast[((i << 8) >> (DC_PEEK - at)) & 0xFF];
    int len = (int)(f >> 8), cat = (int)(f & 0xFF);
    if (f == 0 || cat > MAX_DC_CATEGORY || at + len + cat > DC_PEEK) {
        return 0;
    }
    *diff = extend((i >> (DC_PEEK - at - len - cat)) & ((1u << cat) - 1), cat);
    return len + cat;
}

/* Fills a DC table's look-up (struct dc_table). */
static void lut_build(struct dc_table *t)
{
    for (unsigned i = 0; i < 1u << DC_PEEK; i++) {
        uint64_t e = 0;
        int at = 0, k = 0, diff = 0;
        for (int len = lut_code(&t->huff, i, 0, &diff); len > 0 && k < LUT_DIFFS; k++) {
            e |= (uint64_t)(diff + DIFF_BIAS) << (16 + 12 * k);
            e |= k == 0 ? (uint64_t)len << 8 : 0;
            at += len;
            len = k + 1 < LUT_DIFFS ? lut_code(&t->huff, i, at, &diff) : 0;
        }
        for (int j = k; j < LUT_DIFFS; j++) {
            e |= (uint64_t)DIFF_BIAS << (16 + 12 * j);
        }
        t->lut[i] = k == 0 ? 0 : e | (uint64_t)at << 4 | (unsigned)k;
    }
    for (unsigned i = 0; i < 1u << ONE_PEEK; i++) {
        uint64_t e = t->lut[i << (DC_PEEK - ONE_PEEK)];
        unsigned len = (unsigned)(e >> 8 & 15);
        t->one[i] = e != 0 && len <= ONE_PEEK
                        ? (uint16_t)((unsigned)(lut_diff(e, 0) + DIFF_BIAS) << 4 | len)
                        : 0;
    }
    t->built = true;
}

/* libjpeg refuses a DC table with a symbol (a category) above 15. */
static bool dc_symbols_bad(const struct huff *h)
{
    for (int i = 0; i < 256; i++) {
        if (h->vals[i] > 15) {
            return true;
        }
    }
    return false;
}

static int parse_dht(struct dec *d)
{
    const uint8_t *s;
    unsigned len;
    if (segment(d, &s, &len) < 0) {
        return -1;
    }
    while (len > 0) {
        unsigned tc = s[0] >> 4, th = s[0] & 15, total = 0;
        if (len < 17 || tc > 1 || th > 3) {
            return decline(d, "bad Huffman table");
        }
        for (int i = 0; i < 16; i++) {
            total += s[1 + i];
        }
        if (total > 256 || len < 17 + total) {
            return decline(d, "bad Huffman table");
        }
        struct huff *h = tc == 0 ? &d->dc[th].huff : &d->ac[th];
        if (huff_build(h, s + 1, s + 17, (int)total) < 0 || (tc == 0 && dc_symbols_bad(h))) {
            return decline(d, "bad Huffman table");
        }
        if (tc == 0) {
            d->dc[th].built = false;
        }
        s += 17 + total;
        len -= 17 + total;
    }
    return 0;
}

static long div_up(long a, long b)
{
    return (a + b - 1) / b;
}

/* One component of the frame header, and its block grids. */
static int frame_component(struct dec *d, struct comp *c, const uint8_t *s)
{
    c->id = s[0];
    c->h = s[1] >> 4;
    c->v = s[1] & 15;
    c->tq = s[2];
    c->al = -1;
    if (c->h < 1 || c->h > 2 || c->v < 1 || c->v > 2 || c->tq > 3) {
        return decline(d, "sampling factors other than 1 and 2");
    }
    for (struct comp *o = d->c; o < c; o++) {
        if (o->id == c->id) {
            return decline(d, "two components with one id");
        }
    }
    return 0;
}

static int parse_sof(struct dec *d)
{
    const uint8_t *s;
    unsigned len;
    if (d->sof || segment(d, &s, &len) < 0) {
        return decline(d, "bad frame header");
    }
    if (len < 6 || s[0] != 8 || len != 6 + 3u * s[5]) {
        return decline(d, len >= 6 && s[0] != 8 ? "not 8 bits per sample" : "bad frame header");
    }
    d->height = be16(s + 1);
    d->width = be16(s + 3);
    d->nc = s[5];
    if (d->nc != 1 && d->nc != MAX_COMPONENTS) {
        return decline(d, "neither grey nor three components");
    }
    if (d->width == 0 || d->height == 0 || d->width > MAX_DIMENSION || d->height > MAX_DIMENSION ||
        d->width > d->max_pixels / d->height) {
        return decline(d, d->height == 0 ? "height in a DNL marker" : "size");
    }
    for (int i = 0; i < d->nc; i++) {
        if (frame_component(d, &d->c[i], s + 6 + 3 * i) < 0) {
            return -1;
        }
        d->hmax = d->c[i].h > d->hmax ? d->c[i].h : d->hmax;
        d->vmax = d->c[i].v > d->vmax ? d->c[i].v : d->vmax;
    }
    d->sof = true;
    return 0;
}

/* Allocates the DC coefficients of every component once the frame is known. */
static int allocate(struct dec *d)
{
    d->mcux = div_up(d->width, 8L * d->hmax);
    d->mcuy = div_up(d->height, 8L * d->vmax);
    for (int i = 0; i < d->nc; i++) {
        struct comp *c = &d->c[i];
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        c->cw = div_up(d->width * c->h, 8L * d->hmax);
        c->ch = div_up(d->height * c->v, 8L * d->vmax);
        c->dc = calloc((size_t)(c->bw * c->bh), sizeof *c->dc);
        if (c->dc == NULL) {
            return decline(d, "out of memory");
        }
    }
    return 0;
}

static int parse_dri(struct dec *d)
{
    const uint8_t *s;
    unsigned len;
    if (segment(d, &s, &len) < 0 || len != 2) {
        return decline(d, "bad restart interval");
    }
    d->restart = be16(s);
    return 0;
}

/* APP0 (JFIF) and APP14 (Adobe) say how three components are to be read. */
static int parse_app(struct dec *d, int marker)
{
    const uint8_t *s;
    unsigned len;
    if (segment(d, &s, &len) < 0) {
        return -1;
    }
    if (d->sos) { /* libjpeg reads the colour space once, at the first scan */
        return 0;
    }
    if (marker == M_APP0 && len >= 14 && memcmp(s, "JFIF", 5) == 0) {
        d->jfif = true;
    } else if (marker == M_APP14 && len >= 12 && memcmp(s, "Adobe", 5) == 0) {
        d->adobe = true;
        d->adobe_transform = s[11];
    }
    return 0;
}

/* Whether FF then `next` is a marker other than RSTn: in entropy-coded data an FF is followed by
 * 00 (a stuffed FF byte) or by a marker. */
static bool ends_entropy(uint8_t next)
{
    return next != 0x00 && (next < M_RST0 || next > M_RST7);
}

/* The bytes of the entropy-coded segment from `p` to the next marker other than RSTn. A photo's
 * AC scans hold an FF (stuffed) every few hundred bytes: with SSE2 sixteen bytes are looked at
 * together, every FF among them in turn, rather than a memchr() call for each. */
static const uint8_t *skip_entropy(const uint8_t *p, const uint8_t *end)
{
#ifdef USE_SSE2
    const __m128i ff = _mm_set1_epi8((char)0xFF);
    while (end - p > 16) { /* the byte after each of the sixteen is there too */
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned hits = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, ff));
        for (; hits != 0; hits &= hits - 1) {
            int k = __builtin_ctz(hits);
            if (ends_entropy(p[k + 1])) {
                return p + k;
            }
        }
        p += 16;
    }
#endif
    while (p < end) {
        const uint8_t *q = memchr(p, 0xFF, (size_t)(end - p));
        if (q == NULL || q + 1 >= end) {
            return end;
        }
        if (ends_entropy(q[1])) {
            return q;
        }
        p = q + 2;
    }
    return end;
}

struct scan {
    int n;
    struct comp *c[MAX_COMPONENTS];
    const struct dc_table *table[MAX_COMPONENTS];
    int ah, al;
    int lo, hi; /* the predictions whose DC coefficient (x 2^al) fits an int16 */
};

/* Where the blocks of the MCUs of row y go: block j of MCU x at at[j][x * step[j]], of scan
 * component k[j]. A scan of one component has one block an MCU (its blocks are its MCUs). */
struct layout {
    int n;
    int16_t *at[MAX_BLOCKS_IN_MCU];
    int step[MAX_BLOCKS_IN_MCU];
    int k[MAX_BLOCKS_IN_MCU];
};

static void layout_row(const struct scan *s, long y, struct layout *m)
{
    if (s->n == 1) {
        *m = (struct layout){.n = 1, .at = {s->c[0]->dc + y * s->c[0]->bw}, .step = {1}};
        return;
    }
    m->n = 0;
    for (int k = 0; k < s->n; k++) {
        const struct comp *c = s->c[k];
        for (int v = 0; v < c->v; v++) {
            for (int h = 0; h < c->h; h++) {
                m->at[m->n] = c->dc + (y * c->v + v) * c->bw + h;
                m->step[m->n] = c->h;
                m->k[m->n++] = k;
            }
        }
    }
}

/* The DC coefficients of LUT_DIFFS blocks at coef from look-up entry e (past its count, its
 * differences are 0 and the blocks' are written again after): the prediction after them, or
 * BAD_DIFF if one is out of range. */
static HOT int lut_blocks(uint64_t e, int p, const struct scan *s, int16_t *coef)
{
    _Static_assert(LUT_DIFFS == 4, "lut_blocks takes four differences");
    int p0 = p + lut_diff(e, 0), p1 = p0 + lut_diff(e, 1);
    int p2 = p1 + lut_diff(e, 2), p3 = p2 + lut_diff(e, 3);
    unsigned span = (unsigned)(s->hi - s->lo);
    if (((unsigned)(p0 - s->lo) > span) | ((unsigned)(p1 - s->lo) > span) |
        ((unsigned)(p2 - s->lo) > span) | ((unsigned)(p3 - s->lo) > span)) {
        return BAD_DIFF;
    }
    int scale = 1 << s->al;
    coef[0] = (int16_t)(p0 * scale);
    coef[1] = (int16_t)(p1 * scale);
    coef[2] = (int16_t)(p2 * scale);
    coef[3] = (int16_t)(p3 * scale);
    return p3;
}

/* The count DC coefficients at coef of a first scan of one component: several blocks a look-up
 * while LUT_DIFFS are left. */
static int first_blocks(struct dec *d, struct bits *b, const struct scan *s, int16_t *coef,
                        long count, int *pred)
{
    const struct dc_table *t = s->table[0];
    struct bits r = *b; /* a copy, in registers (see fill_bytes) */
    int p = *pred;
    for (long i = 0; i < count;) {
        uint64_t e = lut_peek(&r, t);
        if (e != 0 && count - i >= LUT_DIFFS) {
            p = lut_blocks(e, p, s, coef + i);
            if (p == BAD_DIFF) {
                return decline(d, "DC coefficient out of range");
            }
            consume(&r, (int)(e >> 4 & 15));
            i += (long)(e & 15);
            continue;
        }
        int diff = dc_diff(&r, t);
        if (diff == BAD_DIFF) {
            return decline(d, "bad DC code");
        }
        p += diff;
        if (p < s->lo || p > s->hi) {
            return decline(d, "DC coefficient out of range");
        }
        coef[i++] = (int16_t)(p * (1 << s->al));
    }
    *b = r;
    *pred = p;
    return 0;
}

/* MCUs x .. x + count - 1 of a first scan of several components, laid out by m. */
static int first_mcus(struct dec *d, struct bits *b, const struct scan *s, const struct layout *m,
                      long x, long count, int pred[])
{
    struct bits r = *b; /* a copy, in registers (see fill_bytes) */
    for (long end = x + count; x < end; x++) {
        for (int j = 0; j < m->n; j++) {
            int k = m->k[j], diff = dc_diff(&r, s->table[k]);
            if (diff == BAD_DIFF) {
                return decline(d, "bad DC code");
            }
            pred[k] += diff;
            if (pred[k] < s->lo || pred[k] > s->hi) {
                return decline(d, "DC coefficient out of range");
            }
            m->at[j][x * m->step[j]] = (int16_t)(pred[k] * (1 << s->al));
        }
    }
    *b = r;
    return 0;
}

/* One more bit of each of the count DC coefficients at coef (a refinement scan of one
 * component), straight from acc. */
static void refine_blocks(struct bits *b, int al, int16_t *coef, long count)
{
    while (count > 0) {
        if (b->n == 0) {
            fill(b);
        }
        int n = count < b->n ? (int)count : b->n;
        uint64_t acc = b->acc;
        for (int i = 0; i < n; i++) {
            coef[i] = (int16_t)(coef[i] | (int)(acc >> 63) << al);
            acc <<= 1;
        }
        b->acc = acc;
        b->n -= n;
        coef += n;
        count -= n;
    }
}

/* One more bit of every DC coefficient of MCUs x .. x + count - 1, laid out by m. */
static void refine_mcus(struct bits *b, int al, const struct layout *m, long x, long count)
{
    for (long end = x + count; x < end; x++) {
        if (b->n < m->n) {
            fill(b);
        }
        uint64_t acc = b->acc;
        for (int j = 0; j < m->n; j++) {
            int16_t *coef = &m->at[j][x * m->step[j]];
            *coef = (int16_t)(*coef | (int)(acc >> 63) << al);
            acc <<= 1;
        }
        b->acc = acc;
        b->n -= m->n;
    }
}

/* MCUs x .. x + count - 1 of row y, between two restart markers. */
static int dc_run(struct dec *d, struct bits *b, const struct scan *s, long y, long x, long count,
                  int pred[])
{
    struct layout m;
    layout_row(s, y, &m);
    if (s->ah != 0 && m.n == 1) {
        refine_blocks(b, s->al, m.at[0] + x, count);
    } else if (s->ah != 0) {
        refine_mcus(b, s->al, &m, x, count);
    } else if (m.n == 1) {
        return first_blocks(d, b, s, m.at[0] + x, count, &pred[0]);
    } else {
        return first_mcus(d, b, s, &m, x, count, pred);
    }
    return 0;
}

/* Before every `restart` MCUs after the first: the RSTn marker, then fresh bits and
 * predictions. The marker must come right where the bits end (libjpeg resynchronises
 * damaged files; those are left to it). */
static int next_restart(struct dec *d, struct bits *b, unsigned *count, int pred[])
{
    const uint8_t *p = b->p;
    while (b->end - p > 1 && p[0] == 0xFF && p[1] == 0xFF) {
        p++;
    }
    if (cut_short(b)) {
        return decline(d, "DC scan cut short");
    }
    if (b->end - p < 2 || p[0] != 0xFF || p[1] != M_RST0 + (*count & 7)) {
        return decline(d, "restart marker missing");
    }
    (*count)++;
    *b = (struct bits){.p = p + 2, .end = b->end};
    memset(pred, 0, MAX_COMPONENTS * sizeof *pred);
    return 0;
}

/* The scan's MCUs row by row, in runs between restart markers. */
static int dc_scan(struct dec *d, const struct scan *s)
{
    long cols = s->n == 1 ? s->c[0]->cw : d->mcux, rows = s->n == 1 ? s->c[0]->ch : d->mcuy;
    struct bits b = {.p = d->p, .end = d->end};
    int pred[MAX_COMPONENTS] = {0};
    unsigned left = d->restart, count = 0; /* MCUs before the next restart marker */
    for (long y = 0; y < rows && !cut_short(&b); y++) {
        for (long x = 0, run; x < cols; x += run) {
            if (d->restart != 0 && left == 0) {
                if (next_restart(d, &b, &count, pred) < 0) {
                    return -1;
                }
                left = d->restart;
            }
            run = d->restart != 0 && left < cols - x ? (long)left : cols - x;
            if (dc_run(d, &b, s, y, x, run, pred) < 0) {
                return -1;
            }
            left -= d->restart != 0 ? (unsigned)run : 0;
        }
    }
    if (cut_short(&b)) {
        return decline(d, "DC scan cut short");
    }
    d->p = skip_entropy(b.p, d->end);
    return 0;
}

/* Checks a scan's successive approximation against what its components have seen, and
 * latches the quantiser of each component's first scan, as libjpeg does. */
static int dc_scan_start(struct dec *d, struct scan *s, const uint8_t *tables)
{
    int blocks = 0;
    for (int k = 0; k < s->n; k++) {
        blocks += s->c[k]->h * s->c[k]->v;
    }
    if (s->n > 1 && blocks > MAX_BLOCKS_IN_MCU) {
        return decline(d, "too many blocks in an MCU");
    }
    for (int k = 0; k < s->n; k++) {
        struct comp *c = s->c[k];
        if (s->ah == 0) {
            unsigned td = tables[k] >> 4;
            if (c->al != -1 || td > 3 || !d->dc[td].huff.defined || !d->quant_set[c->tq] ||
                d->quant[c->tq] > MAX_QUANT) {
                return decline(d, "bad first DC scan");
            }
            s->table[k] = &d->dc[td];
            c->quant = d->quant[c->tq];
            if (!d->dc[td].built) { /* at most once a component */
                lut_build(&d->dc[td]);
            }
        } else if (c->al != s->ah || s->al != s->ah - 1) {
            return decline(d, "bad DC refinement scan");
        }
        c->al = s->al;
    }
    s->lo = -(32768 >> s->al);
    s->hi = 32767 >> s->al;
    return 0;
}

/* A scan seen: what libjpeg's block smoothing (on for progressive files) will know of each
 * component's lowest AC coefficients, its AC scans from Ss 1..9, now and before its latest scan. */
static void note_scan(struct dec *d, const struct scan *s, unsigned ss)
{
    d->sos = true;
    for (int k = 0; k < s->n; k++) {
        s->c[k]->ac_before = s->c[k]->ac;
        s->c[k]->ac = s->c[k]->ac || (ss > 0 && ss <= 9);
    }
}

static int parse_sos(struct dec *d)
{
    const uint8_t *s;
    unsigned len;
    if (++d->scans > MAX_SCANS) {
        return decline(d, "too many scans");
    }
    if (!d->sof || segment(d, &s, &len) < 0 || len < 1 || s[0] < 1 || s[0] > d->nc ||
        len != 4 + 2u * s[0]) {
        return decline(d, "bad scan header");
    }
    struct scan sc = {.n = s[0]};
    uint8_t tables[MAX_COMPONENTS];
    for (int k = 0; k < sc.n; k++) {
        for (int i = 0; i < d->nc && sc.c[k] == NULL; i++) {
            sc.c[k] = d->c[i].id == s[1 + 2 * k] ? &d->c[i] : NULL;
        }
        for (int j = 0; j < k; j++) {
            sc.c[k] = sc.c[k] == sc.c[j] ? NULL : sc.c[k];
        }
        if (sc.c[k] == NULL) {
            return decline(d, "bad scan header");
        }
        tables[k] = s[2 + 2 * k];
    }
    const uint8_t *t = s + 1 + 2 * sc.n;
    unsigned ss = t[0], se = t[1];
    sc.ah = t[2] >> 4;
    sc.al = t[2] & 15;
    if (ss > se || se > 63 || sc.al > MAX_AL || (ss == 0 && se != 0) || (ss > 0 && sc.n != 1) ||
        (sc.ah != 0 && sc.al != sc.ah - 1)) {
        return decline(d, "bad progression");
    }
    note_scan(d, &sc, ss);
    if (ss > 0) { /* an AC scan: not needed at 1/8, but libjpeg needs its table */
        unsigned ta = tables[0] & 15;
        if (sc.c[0]->al == -1 || ta > 3 || !d->ac[ta].defined) {
            return decline(d, "bad AC scan");
        }
        d->p = skip_entropy(d->p, d->end);
        return 0;
    }
    return dc_scan_start(d, &sc, tables) < 0 ? -1 : dc_scan(d, &sc);
}

/* The marker at d->p (after any bytes that are not one, and fill bytes), or -1 at the end. */
static int next_marker(struct dec *d)
{
    for (;;) {
        const uint8_t *q = memchr(d->p, 0xFF, (size_t)(d->end - d->p));
        if (q == NULL) {
            return -1;
        }
        while (q < d->end && *q == 0xFF) {
            q++;
        }
        if (q >= d->end) {
            return -1;
        }
        d->p = q + 1;
        if (*q != 0x00) {
            return *q;
        }
    }
}

static bool is_sof(int m)
{
    return m >= M_SOF0 && m <= M_SOF15 && m != M_DHT && m != M_JPG && m != M_DAC;
}

static int parse_marker(struct dec *d, int m)
{
    if (m == M_SOF2) {
        return parse_sof(d) < 0 ? -1 : allocate(d);
    }
    if (is_sof(m) || m == M_DAC) {
        return decline(d, m >= M_SOF9 || m == M_DAC ? "arithmetic coding" : "not progressive");
    }
    if (m == M_SOI || m == M_DNL) {
        return decline(d, "unexpected marker");
    }
    if (m == M_TEM || (m >= M_RST0 && m <= M_RST7)) { /* no segment */
        return 0;
    }
    switch (m) {
    case M_DHT:
        return parse_dht(d);
    case M_DQT:
        return parse_dqt(d);
    case M_DRI:
        return parse_dri(d);
    case M_SOS:
        return parse_sos(d);
    case M_APP0:
    case M_APP14:
        return parse_app(d, m);
    default: {
        const uint8_t *s;
        unsigned len;
        if ((m & 0xF0) != M_APP0 && m != M_COM) { /* libjpeg stops at reserved markers */
            return decline(d, "unknown marker");
        }
        return segment(d, &s, &len);
    }
    }
}

/* Three components are YCbCr unless an Adobe marker (without JFIF) or, with neither, the
 * component ids R, G, B say RGB: libjpeg's reading, which RGB files are left to. */
static bool is_ycbcr(const struct dec *d)
{
    if (d->jfif) {
        return true;
    }
    if (d->adobe) {
        return d->adobe_transform != 0;
    }
    return !(d->c[0].id == 'R' && d->c[1].id == 'G' && d->c[2].id == 'B');
}

/* Every DC complete, and none that libjpeg 2.1's block smoothing would change: it interpolates the
 * DC of a component none of whose coefficients 1..9 an AC scan has reached, and (a file cut short
 * in its last scan) in the rows that scan did not reach, of one that had none before its latest
 * scan. */
static int check_components(struct dec *d)
{
    for (int i = 0; i < d->nc; i++) {
        const struct comp *c = &d->c[i];
        if (c->al != 0) {
            return decline(d, c->al < 0 ? "no DC scan" : "DC refinement missing");
        }
        if (!c->ac || (!d->eoi && !c->ac_before)) {
            return decline(d, "libjpeg would smooth the DC (no AC scan)");
        }
    }
    return 0;
}

static int parse(struct dec *d)
{
    if (d->end - d->p < 2 || d->p[0] != 0xFF || d->p[1] != M_SOI) {
        return decline(d, "not a JPEG");
    }
    d->p += 2;
    for (;;) {
        int m = next_marker(d);
        if (m < 0 || m == M_EOI) {
            d->eoi = m == M_EOI;
            break;
        }
        if (parse_marker(d, m) < 0) {
            return -1;
        }
    }
    if (!d->sof) {
        return decline(d, "no progressive frame");
    }
    if (check_components(d) < 0) {
        return -1;
    }
    if (d->nc == MAX_COMPONENTS && !is_ycbcr(d)) {
        return decline(d, "RGB components");
    }
    return 0;
}

/* A component's samples at 1/8 (one per block), then brought to the output's size. */
struct plane {
    long w, h;
    uint8_t *px;
};

static uint8_t clamp255(int v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* libjpeg's range limit after an inverse DCT, its table `range_limit[x & 1023]`: x + 128 for x
 * in -128..127, 255 above up to 383, 0 below down to -384, and wrapping past those. */
static uint8_t idct_limit(int x)
{
    unsigned t = (unsigned)(x + 128) & 1023; /* x + 128 for 0..255 */
    return (uint8_t)(t < 256 ? t : t < 640 ? 255 : 0);
}

/* DC x quantiser / 8 + 128, rounded and range-limited: libjpeg's 1x1 inverse DCT. */
static int dc_samples(const struct comp *c, struct plane *out)
{
    out->w = c->cw;
    out->h = c->ch;
    out->px = malloc((size_t)(c->cw * c->ch));
    if (out->px == NULL) {
        return -1;
    }
    for (long y = 0; y < c->ch; y++) {
        const int16_t *row = c->dc + y * c->bw;
        uint8_t *o = out->px + y * c->cw;
        for (long x = 0; x < c->cw; x++) {
            o[x] = idct_limit((row[x] * c->quant + 4) >> 3); /* quant < 2^15 */
        }
    }
    return 0;
}

/* Output row `oy` of a component upsampled by `rh` x `rv` (1 or 2 each), `w` samples of it.
 * At 1/8 libjpeg repeats the samples of a component halved one way (its "fancy" upsampling is
 * off at that scale); for one halved both ways it decodes the chroma block at 2x2 instead
 * (jpegdc.h), which libjpeg's triangle filter approximates: 3/4 of the nearer sample and 1/4 of
 * the further one each way, the edges repeated. */
static void upsample_row(const struct plane *in, int rh, int rv, long oy, long w, uint8_t *out)
{
    long iy = oy / rv;
    const uint8_t *near = in->px + iy * in->w;
    if (rh != 2 || rv != 2 || in->w < 2) {
        for (long x = 0; x < w; x++) {
            out[x] = near[x / rh];
        }
        return;
    }
    const uint8_t *far = near;
    if (oy % 2 == 0 && iy > 0) {
        far = near - in->w;
    } else if (oy % 2 == 1 && iy + 1 < in->h) {
        far = near + in->w;
    }
    for (long x = 0; x < w; x++) {
        long ix = x / 2, jx = x % 2 == 0 ? (ix > 0 ? ix - 1 : 0) : (ix + 1 < in->w ? ix + 1 : ix);
        int s = 3 * (3 * near[ix] + far[ix]) + 3 * near[jx] + far[jx];
        out[x] = (uint8_t)((s + 8) >> 4);
    }
}

/* Component `c` at the output's size (a component at full resolution has it already). */
static int upsample(const struct dec *d, const struct comp *c, long w, long h, struct plane *out)
{
    struct plane in;
    if (dc_samples(c, &in) < 0) {
        return -1;
    }
    int rh = d->hmax / c->h, rv = d->vmax / c->v;
    if (rh == 1 && rv == 1) {
        *out = in;
        return 0;
    }
    out->w = w;
    out->h = h;
    out->px = malloc((size_t)(w * h));
    for (long y = 0; out->px != NULL && y < h; y++) {
        upsample_row(&in, rh, rv, y, w, out->px + y * w);
    }
    free(in.px);
    return out->px != NULL ? 0 : -1;
}

/* YCbCr to RGB in libjpeg's fixed point (16 fractional bits, its rounding). */
#define FIX(x) ((int)((x)*65536.0 + 0.5))

static void ycc_to_rgb(const struct plane p[3], uint8_t *rgb)
{
    long n = p[0].w * p[0].h;
    for (long i = 0; i < n; i++) {
        int y = p[0].px[i], cb = p[1].px[i] - 128, cr = p[2].px[i] - 128;
        int r = y + ((FIX(1.40200) * cr + 32768) >> 16);
        int g = y + ((-FIX(0.34414) * cb - FIX(0.71414) * cr + 32768) >> 16);
        int b = y + ((FIX(1.77200) * cb + 32768) >> 16);
        rgb[3 * i] = clamp255(r);
        rgb[3 * i + 1] = clamp255(g);
        rgb[3 * i + 2] = clamp255(b);
    }
}

static int render(const struct dec *d, struct jpegdc_image *out)
{
    long w = div_up(d->width, 8), h = div_up(d->height, 8);
    struct plane p[MAX_COMPONENTS] = {{0, 0, NULL}};
    int rc = 0;
    for (int i = 0; i < d->nc && rc == 0; i++) {
        rc = upsample(d, &d->c[i], w, h, &p[i]);
    }
    if (rc == 0 && d->nc == MAX_COMPONENTS) {
        out->pixels = malloc((size_t)(w * h * 3));
        if (out->pixels != NULL) {
            ycc_to_rgb(p, out->pixels);
        }
    } else if (rc == 0) {
        out->pixels = p[0].px;
        p[0].px = NULL;
    }
    for (int i = 0; i < MAX_COMPONENTS; i++) {
        free(p[i].px);
    }
    out->width = w;
    out->height = h;
    out->channels = d->nc;
    return out->pixels != NULL ? 0 : -1;
}

int jpegdc_decode(const void *data, size_t len, long max_pixels, struct jpegdc_image *out,
                  const char **why)
{
    memset(out, 0, sizeof *out);
    if (data == NULL || len < 2) {
        *why = "not a JPEG";
        return -1;
    }
    struct dec *d = calloc(1, sizeof *d);
    if (d == NULL) {
        *why = "out of memory";
        return -1;
    }
    d->p = data;
    d->end = d->p + len;
    d->max_pixels = max_pixels;
    int rc = parse(d);
    if (rc == 0 && render(d, out) < 0) {
        jpegdc_free(out);
        rc = decline(d, "out of memory");
    }
    *why = d->why;
    for (int i = 0; i < MAX_COMPONENTS; i++) {
        free(d->c[i].dc);
    }
    free(d);
    return rc;
}

void jpegdc_free(struct jpegdc_image *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}
