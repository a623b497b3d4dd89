#include "sniff.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#define TEXT_PROBE_BYTES 4096 /* how far a text file is searched for what it is */

/* ---------------------------------------------------------------- reading */

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static unsigned long be32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[1] << 8 | p[0];
}

static unsigned long le24(const unsigned char *p)
{
    return (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0];
}

static unsigned long le32(const unsigned char *p)
{
    return (unsigned long)p[3] << 24 | le24(p);
}

/* TIFF's byte order: `le` for "II", big-endian for "MM". */
static unsigned long tiff16(const unsigned char *p, bool le)
{
    return le ? le16(p) : be16(p);
}

static unsigned long tiff32(const unsigned char *p, bool le)
{
    return le ? le32(p) : be32(p);
}

/* Whether the `n` bytes at `p` start with the `m` bytes of `magic`. */
static bool starts(const unsigned char *p, size_t n, const char *magic, size_t m)
{
    return n >= m && memcmp(p, magic, m) == 0;
}

/* Records one frame (or canvas) of w x h: the largest by area is kept. */
static void note_frame(struct sniff_info *o, unsigned long w, unsigned long h)
{
    unsigned long long area = (unsigned long long)w * h;
    unsigned long long best = (unsigned long long)o->width * (unsigned long long)o->height;
    if (area > best || (area == best && w + h > (unsigned long)(o->width + o->height))) {
        o->width = (long)w;
        o->height = (long)h;
    }
}

/* ---------------------------------------------------------------- JPEG */

static bool jpeg_is_sof(unsigned m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

#define EOI_TAIL 64 /* bytes at the end of a JPEG looked at first for its EOI marker */

/* Whether an EOI marker (FF D9) follows: entropy-coded data stuffs every FF, so only a marker
 * can be FF D9. A file almost always ends with it, so the last bytes are looked at first: a
 * photo's megabyte of scans holds thousands of stuffed FFs for a scan from the front to stop at. */
static bool jpeg_has_eoi(const unsigned char *p, size_t n)
{
    size_t from = n > EOI_TAIL ? n - EOI_TAIL : 0;
    for (size_t i = n; i >= from + 2; i--) {
        if (p[i - 2] == 0xFF && p[i - 1] == 0xD9) {
            return true;
        }
    }
    if (from == 0) {
        return false; /* all of it was looked at */
    }
    const unsigned char *end = p + n;
    while (end - p >= 2) {
        const unsigned char *q = memchr(p, 0xFF, (size_t)(end - p - 1));
        if (q == NULL) {
            return false;
        }
        if (q[1] == 0xD9) {
            return true;
        }
        p = q + 1;
    }
    return false;
}

/* Walks the marker segments up to the first scan: SOF gives the size. */
static void sniff_jpeg(const unsigned char *p, size_t n, struct sniff_info *o)
{
    size_t i = 2;
    o->frames = 1;
    while (n - i >= 2) {
        if (p[i] != 0xFF) {
            return; /* not a marker: the decoder will say what is wrong */
        }
        unsigned m = p[i + 1];
        i += 2;
        if (m == 0xFF) {
            i--; /* fill byte */
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            continue; /* markers without a length */
        }
        if (m == 0xD9 || n - i < 2 || be16(p + i) < 2) {
            break;
        }
        size_t len = be16(p + i);
        if (jpeg_is_sof(m) && len >= 7 && n - i >= 7) {
            note_frame(o, be16(p + i + 5), be16(p + i + 3));
        }
        if (m == 0xDA) {
            o->truncated = !jpeg_has_eoi(p + i, n - i);
            return;
        }
        if (len > n - i) {
            break;
        }
        i += len;
    }
    o->truncated = true; /* the data ended (or an EOI came) before any scan */
}

/* ---------------------------------------------------------------- GIF */

/* Skips a chain of data sub-blocks starting at `i`; returns the offset after it (may be > n). */
static size_t gif_skip_blocks(const unsigned char *p, size_t n, size_t i)
{
    while (i < n) {
        size_t k = p[i];
        i++;
        if (k == 0) {
            return i;
        }
        i += k;
    }
    return i;
}

/* Reads the image descriptor after the 0x2C at `i - 1`; returns the offset after the image. */
static size_t gif_image(const unsigned char *p, size_t n, size_t i, struct sniff_info *o)
{
    if (n - i < 10) {
        o->truncated = true;
        return n;
    }
    note_frame(o, le16(p + i + 4), le16(p + i + 6));
    o->frames++;
    unsigned flags = p[i + 8];
    i += 9;
    if (flags & 0x80) {
        i += (size_t)3 << ((flags & 7) + 1); /* local colour table */
    }
    return i < n ? gif_skip_blocks(p, n, i + 1) : n; /* LZW code size, then the data */
}

/* The logical screen, then every image descriptor, block by block (nothing is decompressed). */
static void sniff_gif(const unsigned char *p, size_t n, struct sniff_info *o)
{
    if (n < 13) {
        o->truncated = true;
        return;
    }
    note_frame(o, le16(p + 6), le16(p + 8));
    size_t i = 13;
    if (p[10] & 0x80) {
        i += (size_t)3 << ((p[10] & 7) + 1); /* global colour table */
    }
    while (i < n && o->frames < SNIFF_MAX_COUNT) {
        unsigned b = p[i++];
        if (b == 0x2C) {
            i = gif_image(p, n, i, o);
        } else if (b == 0x21 && i < n) {
            i = gif_skip_blocks(p, n, i + 1); /* extension: label, then blocks */
        } else {
            return; /* trailer, or bytes the decoder will judge */
        }
    }
}

/* ---------------------------------------------------------------- WebP */

/* One RIFF chunk of a WebP file: `c` is its header, `avail` the bytes after the header. */
static void webp_chunk(const unsigned char *c, size_t avail, struct sniff_info *o, long *anmf)
{
    const unsigned char *d = c + 8;
    if (memcmp(c, "VP8 ", 4) == 0 && avail >= 10 && d[3] == 0x9D && d[4] == 0x01 && d[5] == 0x2A) {
        note_frame(o, le16(d + 6) & 0x3FFF, le16(d + 8) & 0x3FFF);
    } else if (memcmp(c, "VP8L", 4) == 0 && avail >= 5 && d[0] == 0x2F) {
        unsigned long v = le32(d + 1);
        note_frame(o, (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1);
    } else if (memcmp(c, "VP8X", 4) == 0 && avail >= 10) {
        note_frame(o, le24(d + 4) + 1, le24(d + 7) + 1); /* the canvas */
    } else if (memcmp(c, "ANMF", 4) == 0 && avail >= 12) {
        note_frame(o, le24(d + 6) + 1, le24(d + 9) + 1);
        (*anmf)++;
    }
}

static void sniff_webp(const unsigned char *p, size_t n, struct sniff_info *o)
{
    size_t i = 12;
    long anmf = 0;
    while (n - i >= 8 && anmf < SNIFF_MAX_COUNT) {
        size_t size = le32(p + i + 4);
        size_t avail = n - i - 8;
        webp_chunk(p + i, avail, o, &anmf);
        if (size > avail) {
            o->truncated = true;
            break;
        }
        i += 8 + size + (size & 1);
        if (i > n) {
            break;
        }
    }
    o->frames = anmf > 0 ? anmf : o->width > 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- TIFF */

/* One IFD at `off` (2 + 12 * count + 4 bytes, checked by the caller): its size is a frame. */
static void tiff_ifd(const unsigned char *p, size_t off, size_t count, bool le,
                     struct sniff_info *o)
{
    unsigned long w = 0, h = 0;
    for (size_t k = 0; k < count; k++) {
        const unsigned char *e = p + off + 2 + 12 * k;
        unsigned long tag = tiff16(e, le), type = tiff16(e + 2, le);
        unsigned long v = type == 3 ? tiff16(e + 8, le) : type == 4 ? tiff32(e + 8, le) : 0;
        if (tag == 256) {
            w = v;
        } else if (tag == 257) {
            h = v;
        }
    }
    note_frame(o, w, h);
    o->frames++;
}

/* Walks the IFD chain. Each next IFD must start after the previous one ends, which bounds the
 * walk by the file's size (a chain going backwards or looping stops there: ImageMagick's ping
 * counts the rest). */
static void sniff_tiff(const unsigned char *p, size_t n, struct sniff_info *o)
{
    bool le = p[0] == 'I';
    if (n < 8) {
        o->truncated = true;
        return;
    }
    if (tiff16(p + 2, le) != 42) {
        return; /* BigTIFF: ping decides */
    }
    size_t off = tiff32(p + 4, le);
    size_t min_off = 8;
    while (off != 0 && o->frames < SNIFF_MAX_COUNT) {
        if (off < min_off || off > n || n - off < 2) {
            o->truncated = off > n || n - off < 2;
            return;
        }
        size_t count = tiff16(p + off, le);
        size_t end = off + 2 + 12 * count;
        if (end > n || n - end < 4) {
            o->truncated = true;
            return;
        }
        tiff_ifd(p, off, count, le, o);
        min_off = end + 4;
        off = tiff32(p + end, le);
    }
}

/* ---------------------------------------------------------------- BMP */

/* The file header (14 bytes), then the info header: its size, then the sides, 16-bit signed in
 * OS/2's 12-byte header, 32-bit signed in the others (a negative height: rows top down). Only
 * the first image is declared: ImageMagick reads one more when "BM" follows it, and its ping
 * counts them (check_pinged). */
static void sniff_bmp(const unsigned char *p, size_t n, struct sniff_info *o)
{
    o->frames = 1;
    if (n < 26) {
        o->truncated = true;
        return;
    }
    unsigned long size = le32(p + 14);
    long w = 0, h = 0;
    if (size == 12) {
        w = (int16_t)le16(p + 18);
        h = (int16_t)le16(p + 20);
    } else if (size >= 40) {
        w = (int32_t)le32(p + 18);
        h = (int32_t)le32(p + 22);
    }
    note_frame(o, (unsigned long)(w < 0 ? -w : w), (unsigned long)(h < 0 ? -h : h));
}

/* ---------------------------------------------------------------- HEIF (HEIC, AVIF) */

struct box {
    const unsigned char *type;
    size_t body, end; /* the box's contents: [body, end) */
};

/* Reads the box at *i (within [*i, end)) and moves *i past it. Returns false at the end or on a
 * malformed box. */
static bool next_box(const unsigned char *p, size_t *i, size_t end, struct box *b)
{
    size_t at = *i;
    if (at > end || end - at < 8) {
        return false;
    }
    uint64_t size = be32(p + at);
    size_t header = 8;
    if (size == 1) {
        if (end - at < 16) {
            return false;
        }
        size = (uint64_t)be32(p + at + 8) << 32 | be32(p + at + 12);
        header = 16;
    } else if (size == 0) {
        size = end - at;
    }
    if (size < header || size > end - at) {
        return false;
    }
    b->type = p + at + 4;
    b->body = at + header;
    b->end = at + (size_t)size;
    *i = b->end;
    return true;
}

/* The first box of `type` in [start, end). */
static bool find_box(const unsigned char *p, size_t start, size_t end, const char *type,
                     struct box *out)
{
    size_t i = start;
    while (next_box(p, &i, end, out)) {
        if (memcmp(out->type, type, 4) == 0) {
            return true;
        }
    }
    return false;
}

/* meta (a full box) / iprp / ipco / every ispe (a full box: width, height). */
static void heif_sizes(const unsigned char *p, size_t n, struct sniff_info *o)
{
    struct box meta, iprp, ipco, b;
    if (!find_box(p, 0, n, "meta", &meta) || meta.end - meta.body < 4 ||
        !find_box(p, meta.body + 4, meta.end, "iprp", &iprp) ||
        !find_box(p, iprp.body, iprp.end, "ipco", &ipco)) {
        return;
    }
    size_t i = ipco.body;
    while (next_box(p, &i, ipco.end, &b)) {
        if (memcmp(b.type, "ispe", 4) == 0 && b.end - b.body >= 12) {
            note_frame(o, be32(p + b.body + 4), be32(p + b.body + 8));
        }
    }
}

static bool brand_in(const unsigned char *brand, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (memcmp(brand, list[i], 4) == 0) {
            return true;
        }
    }
    return false;
}

/* The format an ISO-BMFF `ftyp` box names (major brand, then the compatible ones). */
static enum sniff_format ftyp_format(const unsigned char *p, size_t n)
{
    static const char *const avif[] = {"avif", "avis", NULL};
    static const char *const heic[] = {"heic", "heix", "hevc", "hevx", "heim", "heis",
                                       "hevm", "hevs", "mif1", "msf1", NULL};
    size_t size = be32(p);
    size_t end = size < 16 || size > n ? (n < 16 ? n : 16) : size;
    enum sniff_format f = SNIFF_OTHER;
    for (size_t i = 8; i + 4 <= end; i += i == 8 ? 8 : 4) {
        if (brand_in(p + i, avif)) {
            return SNIFF_AVIF;
        }
        if (brand_in(p + i, heic)) {
            f = SNIFF_HEIC;
        }
    }
    return f;
}

/* ---------------------------------------------------------------- everything else */

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Whether `needle` (lower case) occurs in the `n` bytes at `p`, ignoring ASCII case. */
static bool contains(const unsigned char *p, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m <= n && i <= n - m; i++) {
        size_t k = 0;
        while (k < m && lower(p[i + k]) == (unsigned char)needle[k]) {
            k++;
        }
        if (k == m) {
            return true;
        }
    }
    return false;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* What a file of text looks like: markup, a drawing, or plain text (NULL: binary). */
static const char *text_kind(const unsigned char *p, size_t n)
{
    size_t skip = starts(p, n, "\xEF\xBB\xBF", 3) ? 3 : 0; /* a UTF-8 byte order mark */
    while (skip < n && is_space(p[skip])) {
        skip++;
    }
    p += skip;
    n -= skip;
    n = n < TEXT_PROBE_BYTES ? n : TEXT_PROBE_BYTES;
    if (n > 0 && p[0] == '<') {
        if (contains(p, n, "<svg") || contains(p, n, "<!doctype svg")) {
            return "SVG";
        }
        if (contains(p, n, "<html") || contains(p, n, "<!doctype html") ||
            contains(p, n, "<body") || contains(p, n, "<head")) {
            return "HTML";
        }
        return contains(p, n, "<image") || contains(p, n, "<group") ? "MSL" : "XML";
    }
    if (contains(p, n, "graphic-context") || contains(p, n < 8 ? n : 8, "viewbox")) {
        return "MVG";
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 && !is_space(p[i])) {
            return NULL;
        }
    }
    return n > 0 ? "text" : NULL;
}

struct magic {
    const char *bytes;
    size_t len;
    const char *name;
};

/* clang-format off */
static const struct magic others[] = {
    {"%PDF-", 5, "PDF"},                   {"%!PS", 4, "PostScript"},
    {"\xC5\xD0\xD3\xC6", 4, "EPS"},        {"8BPS", 4, "PSD"},
    {"gimp xcf", 8, "XCF"},                {"\x00\x00\x01\x00", 4, "ICO"},
    {"\x00\x00\x00\x0CjP  \r\n\x87\n", 12, "JPEG 2000"},
    {"\xFF\x4F\xFF\x51", 4, "JPEG 2000"},  {"\xFF\x0A", 2, "JPEG XL"},
    {"\x00\x00\x00\x0CJXL \r\n\x87\n", 12, "JPEG XL"},
    {"\x8AMNG\r\n\x1A\n", 8, "MNG"},       {"\x8BJNG\r\n\x1A\n", 8, "JNG"},
    {"qoif", 4, "QOI"},                    {"DDS ", 4, "DDS"},
    {"\x76\x2F\x31\x01", 4, "OpenEXR"},    {"#?RADIANCE", 10, "HDR"},
    {"#?RGBE", 6, "HDR"},                  {"id=ImageMagick", 14, "MIFF"},
    {"\x1F\x8B", 2, "gzip"},
    {"PK\x03\x04", 4, "ZIP"},              {"BZh", 3, "bzip2"},
    {"\xFD" "7zXZ", 5, "xz"},              {"RIFF", 4, "RIFF"},
};
/* clang-format on */

/* The name of a format pixq does not decode. */
static const char *other_name(const unsigned char *p, size_t n)
{
    if (n == 0) {
        return "empty file";
    }
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0) {
        return memcmp(p + 8, "AVI ", 4) == 0   ? "AVI"
               : memcmp(p + 8, "WAVE", 4) == 0 ? "WAV"
                                               : "RIFF";
    }
    if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
        return "MP4/QuickTime";
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (starts(p, n, others[i].bytes, others[i].len)) {
            return others[i].name;
        }
    }
    if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' && is_space(p[2])) {
        return "PNM";
    }
    const char *text = text_kind(p, n);
    return text != NULL ? text : "unknown";
}

/* ---------------------------------------------------------------- the table */

static const char *const format_names[SNIFF_N_FORMATS] = {
    [SNIFF_JPEG] = "jpeg", [SNIFF_PNG] = "png",   [SNIFF_GIF] = "gif",   [SNIFF_WEBP] = "webp",
    [SNIFF_TIFF] = "tiff", [SNIFF_HEIC] = "heic", [SNIFF_AVIF] = "avif", [SNIFF_BMP] = "bmp",
};

static const char *const display_names[SNIFF_N_FORMATS] = {
    [SNIFF_JPEG] = "JPEG", [SNIFF_PNG] = "PNG",   [SNIFF_GIF] = "GIF",   [SNIFF_WEBP] = "WebP",
    [SNIFF_TIFF] = "TIFF", [SNIFF_HEIC] = "HEIC", [SNIFF_AVIF] = "AVIF", [SNIFF_BMP] = "BMP",
};

/* The decodable format the magic bytes say, or SNIFF_OTHER. */
static enum sniff_format magic_format(const unsigned char *p, size_t n)
{
    if (starts(p, n, "\xFF\xD8\xFF", 3)) {
        return SNIFF_JPEG;
    }
    if (starts(p, n, "\x89PNG\r\n\x1A\n", 8)) {
        return SNIFF_PNG;
    }
    if (starts(p, n, "GIF87a", 6) || starts(p, n, "GIF89a", 6)) {
        return SNIFF_GIF;
    }
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        return SNIFF_WEBP;
    }
    if (starts(p, n, "II*\0", 4) || starts(p, n, "MM\0*", 4) || starts(p, n, "II+\0", 4) ||
        starts(p, n, "MM\0+", 4)) {
        return SNIFF_TIFF;
    }
    if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
        return ftyp_format(p, n);
    }
    if (starts(p, n, "BM", 2)) {
        return SNIFF_BMP;
    }
    return SNIFF_OTHER;
}

void sniff_image(const void *data, size_t len, struct sniff_info *out)
{
    const unsigned char *p = data != NULL ? data : (const unsigned char *)"";
    size_t n = data != NULL ? len : 0;
    memset(out, 0, sizeof *out);
    out->format = magic_format(p, n);
    out->name = out->format == SNIFF_OTHER ? other_name(p, n) : display_names[out->format];
    switch (out->format) {
    case SNIFF_JPEG:
        sniff_jpeg(p, n, out);
        break;
    case SNIFF_PNG:
        out->frames = 1;
        if (n >= 24 && memcmp(p + 12, "IHDR", 4) == 0) {
            note_frame(out, be32(p + 16), be32(p + 20));
        }
        break;
    case SNIFF_GIF:
        sniff_gif(p, n, out);
        break;
    case SNIFF_WEBP:
        sniff_webp(p, n, out);
        break;
    case SNIFF_TIFF:
        sniff_tiff(p, n, out);
        break;
    case SNIFF_HEIC:
    case SNIFF_AVIF:
        heif_sizes(p, n, out);
        break;
    case SNIFF_BMP:
        sniff_bmp(p, n, out);
        break;
    case SNIFF_OTHER:
        break;
    }
}

const char *sniff_format_name(enum sniff_format f)
{
    return f > SNIFF_OTHER && f < SNIFF_N_FORMATS ? format_names[f] : NULL;
}

enum sniff_format sniff_format_named(const char *name)
{
    static const struct {
        const char *name;
        enum sniff_format f;
    } alias[] = {{"jpg", SNIFF_JPEG}, {"tif", SNIFF_TIFF}, {"heif", SNIFF_HEIC}};
    for (int f = SNIFF_JPEG; f < SNIFF_N_FORMATS; f++) {
        if (strcasecmp(name, format_names[f]) == 0) {
            return (enum sniff_format)f;
        }
    }
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++) {
        if (strcasecmp(name, alias[i].name) == 0) {
            return alias[i].f;
        }
    }
    return SNIFF_OTHER;
}
