/* metaguard: a bound on the metadata ImageMagick parses while it reads an image (metaguard.h). */
#define _GNU_SOURCE /* RTLD_NEXT, memmem */
#include "metaguard.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wand/MagickWand.h>
#include <zlib.h>

#include "tiffint.h"

#define EXIF_HEADER     "Exif\0\0"
#define EXIF_HEADER_LEN 6
#define TIFF_MIN_LEN    16 /* ImageMagick reads no shorter block */
#define IFD_ENTRY_LEN   12 /* tag, type, count, value or offset */
#define TIFF_TYPES      13 /* 1..12 */
#define MAX_PENDING     METAGUARD_MAX_IFDS
#define SEEN_SLOTS      (2 * METAGUARD_MAX_IFDS) /* a hash set, at most half full */
#define BIM_SIGNATURE   "8BIM"
#define BIM_MIN_LEN     16               /* ImageMagick reads no record from fewer bytes */
#define BIM_EXIF        0x0422           /* the Photoshop resource that is an EXIF block */
#define BIM_XMP         0x0424           /* ... that is an XMP packet */
#define LIMIT_MAX       (UINT64_MAX / 4) /* higher limits count as this: no sum overflows */

typedef MagickBooleanType (*set_profile_fn)(Image *, const char *, const StringInfo *);

static set_profile_fn magick_set_profile; /* MagickCore's SetImageProfile() */
static _Thread_local struct metaguard *armed;

/* Bytes per value of each TIFF type (0 is not a type). */
static const unsigned type_size[TIFF_TYPES] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8};

/* What formatting a value of each type costs ImageMagick, in units of about 0.1 us: a fraction
 * (RATIONAL, SRATIONAL) is two "%.20g" and costs 3.5 times a number or a byte. */
static const unsigned value_weight[TIFF_TYPES] = {0, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4, 1, 1};

/* ---- the EXIF walk ------------------------------------------------------------------------ */

struct walk {
    const unsigned char *t; /* the TIFF header */
    size_t len;             /* bytes from it to the end of the profile */
    bool big_endian;
    uint64_t cost, limit;
    size_t slot[SEEN_SLOTS];         /* IFD offsets walked, plus 1 (0: empty) */
    size_t used[METAGUARD_MAX_IFDS]; /* the slots taken, to empty them for the next block */
    size_t pending[MAX_PENDING];
    int n_seen, n_pending;
};

static _Thread_local struct walk walking; /* the walk of any EXIF block this thread measures */

static uint32_t u16(const struct walk *w, size_t at)
{
    return tiffint_u16(w->t + at, w->big_endian);
}

static uint32_t u32(const struct walk *w, size_t at)
{
    return tiffint_u32(w->t + at, w->big_endian);
}

static bool over(const struct walk *w)
{
    return w->cost > w->limit;
}

/* An IFD to walk (ImageMagick reads one at offset 0 too, but for a next-IFD link of 0). */
static void push(struct walk *w, uint32_t off)
{
    if (off >= w->len) {
        return;
    }
    if (w->n_pending == MAX_PENDING) {
        w->cost = w->limit + 1; /* no legitimate EXIF points this often */
        return;
    }
    w->pending[w->n_pending++] = off;
}

/* The EXIF, GPS and interoperability IFD pointers. */
static bool is_pointer(uint32_t tag)
{
    return tag == 0x8769 || tag == 0x8825 || tag == 0xa005;
}

/* One entry at `q`: METAGUARD_ENTRY_COST, plus its values when they lie inside the block;
 * follows a pointer. */
static void walk_entry(struct walk *w, size_t q)
{
    uint32_t type = u16(w, q + 2), count = u32(w, q + 4);
    w->cost += METAGUARD_ENTRY_COST;
    if (type == 0 || type >= TIFF_TYPES) {
        return; /* ImageMagick stops the IFD here: counting on is an upper bound */
    }
    uint64_t bytes = (uint64_t)count * type_size[type];
    size_t values = q + 8;
    if (bytes > 4) {
        uint32_t off = u32(w, q + 8);
        if (off >= w->len || bytes > w->len - off) {
            return; /* skipped by ImageMagick */
        }
        values = off;
    }
    w->cost += (uint64_t)count * value_weight[type];
    if (is_pointer(u16(w, q)) && values + 4 <= w->len) {
        push(w, u32(w, values));
    }
}

/* The IFD at `off`, once: 1, its entries, the IFDs it points to and the next one. */
static void walk_ifd(struct walk *w, size_t off)
{
    size_t s = (off * 2654435761u) % SEEN_SLOTS;
    while (w->slot[s] != 0) {
        if (w->slot[s] == off + 1) {
            return;
        }
        s = (s + 1) % SEEN_SLOTS;
    }
    if (w->n_seen == METAGUARD_MAX_IFDS) {
        w->cost = w->limit + 1;
        return;
    }
    w->slot[s] = off + 1;
    w->used[w->n_seen++] = s;
    w->cost++;
    if (off + 2 > w->len) {
        return;
    }
    size_t n = u16(w, off);
    for (size_t i = 0; i < n && !over(w); i++) {
        size_t q = off + 2 + IFD_ENTRY_LEN * i;
        if (q + IFD_ENTRY_LEN > w->len) {
            return;
        }
        walk_entry(w, q);
    }
    size_t next = off + 2 + IFD_ENTRY_LEN * n;
    if (next + 4 <= w->len && u32(w, next) != 0) {
        push(w, u32(w, next));
    }
}

/* The TIFF structure at `t` (`len` bytes to the end of the profile); adds to `*cost`. */
static void walk_tiff(const unsigned char *t, size_t len, uint64_t *cost, uint64_t limit,
                      struct walk *w)
{
    if (len < TIFF_MIN_LEN || (memcmp(t, "II", 2) != 0 && memcmp(t, "MM", 2) != 0)) {
        return;
    }
    w->t = t;
    w->len = len;
    w->big_endian = t[0] == 'M';
    w->cost = *cost;
    w->limit = limit;
    w->n_pending = 0;
    if (u16(w, 2) == 0x2a) {
        push(w, u32(w, 4));
    }
    while (w->n_pending > 0 && !over(w)) {
        walk_ifd(w, w->pending[--w->n_pending]);
    }
    *cost = w->cost;
    for (int i = 0; i < w->n_seen; i++) {
        w->slot[w->used[i]] = 0;
    }
    w->n_seen = 0;
}

/* Every "Exif\0\0" header from `p` on, and its TIFF structure; adds to `*cost`. */
static void exif_cost(const unsigned char *p, size_t len, uint64_t *cost, uint64_t limit,
                      struct walk *w)
{
    for (size_t at = 0; at + EXIF_HEADER_LEN <= len && *cost <= limit;) {
        const unsigned char *h = memmem(p + at, len - at, EXIF_HEADER, EXIF_HEADER_LEN);
        if (h == NULL) {
            return;
        }
        size_t t = (size_t)(h - p) + EXIF_HEADER_LEN;
        walk_tiff(p + t, len - t, cost, limit, w);
        at = (size_t)(h - p) + 1;
    }
}

uint64_t metaguard_exif_cost(const unsigned char *p, size_t len, uint64_t limit)
{
    uint64_t cost = 0;
    if (p != NULL) {
        exif_cost(p, len, &cost, limit < LIMIT_MAX ? limit : LIMIT_MAX, &walking);
    }
    return cost;
}

/* ---- Photoshop resource blocks and XMP -------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool xml_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether the XML at `p` may be counted byte by byte: it starts (after a byte-order mark or
 * white space) with '<' in an encoding where '<', '=' and the quotes are the ASCII bytes (UTF-8,
 * UTF-16, UTF-32 and ASCII's supersets), and declares no other encoding (EBCDIC, UTF-7...):
 * "encoding", '=' between optional white space, the name (quoted), as libxml2 reads it, in the
 * first 256 bytes or in an XML declaration that starts the packet, however long. */
static bool xmp_readable(const unsigned char *p, size_t len)
{
    size_t bom = len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0, i = bom;
    while (i < len && xml_space(p[i])) {
        i++;
    }
    bool bom16 = len >= 2 && (memcmp(p, "\xfe\xff", 2) == 0 || memcmp(p, "\xff\xfe", 2) == 0);
    bool bom32 = len >= 4 && memcmp(p, "\0\0\xfe\xff", 4) == 0;
    if (!bom16 && !bom32 && (i == len || (p[i] != '<' && p[i] != 0))) {
        return false;
    }
    size_t scope = len < 256 ? len : 256;
    if (len - bom >= 5 && memcmp(p + bom, "<?xml", 5) == 0) {
        const unsigned char *end = memmem(p + bom, len - bom, "?>", 2);
        size_t decl_end = end != NULL ? (size_t)(end - p) : len;
        scope = decl_end > scope ? decl_end : scope;
    }
    static const char *const ascii_like[] = {"utf-8",       "utf8",  "utf-16",    "utf-32",
                                             "us-ascii",    "ascii", "iso-8859-", "latin",
                                             "windows-125", "cp125"};
    for (size_t from = 0; from < scope;) {
        const unsigned char *decl = memmem(p + from, scope - from, "encoding", 8);
        if (decl == NULL) {
            return true;
        }
        size_t at = (size_t)(decl - p) + 8;
        from = at;
        while (at < len && xml_space(p[at])) {
            at++;
        }
        if (at == len || p[at] != '=') {
            continue; /* the word, not a declaration */
        }
        for (at++; at < len && xml_space(p[at]); at++) {
        }
        at += at < len && (p[at] == '"' || p[at] == '\'');
        for (size_t k = 0; k < sizeof ascii_like / sizeof ascii_like[0]; k++) {
            size_t n = strlen(ascii_like[k]);
            if (len - at >= n && strncasecmp((const char *)p + at, ascii_like[k], n) == 0) {
                return true;
            }
        }
        return false;
    }
    return true;
}

/* The first byte other than NUL from `at` on (UTF-16's and UTF-32's other bytes), or len. */
static size_t past_nuls(const unsigned char *p, size_t len, size_t at)
{
    while (at < len && p[at] == 0) {
        at++;
    }
    return at;
}

/* Whether markup `word` ("<!DOCTYPE") is in `p`, in any of the encodings xmp_readable() lets
 * through: its characters with NUL bytes between them too (UTF-16, UTF-32). Linear: a scan from
 * one '<' ends at the first byte that is neither NUL nor the word's next character. */
static bool holds_markup(const unsigned char *p, size_t len, const char *word)
{
    for (const unsigned char *lt = memchr(p, '<', len); lt != NULL;
         lt = memchr(lt + 1, '<', len - (size_t)(lt + 1 - p))) {
        size_t at = (size_t)(lt - p) + 1, k = 1;
        for (; word[k] != '\0'; k++, at++) {
            at = past_nuls(p, len, at);
            if (at == len || p[at] != (unsigned char)word[k]) {
                break;
            }
        }
        if (word[k] == '\0') {
            return true;
        }
    }
    return false;
}

uint64_t metaguard_xmp_cost(const unsigned char *p, size_t len)
{
    if (p == NULL || len == 0) {
        return 0;
    }
    if (!xmp_readable(p, len) || holds_markup(p, len, "<!DOCTYPE") ||
        holds_markup(p, len, "<!ATTLIST") || holds_markup(p, len, "<!ENTITY")) {
        return METAGUARD_XMP_UNREADABLE;
    }
    uint64_t n = 0, attributes = 0;
    enum { TEXT, TAG, QUOTED } state = TEXT;
    unsigned char quote = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (state == QUOTED) {
            state = c == quote ? TAG : QUOTED;
        } else if (c == '<') { /* an element ("</", "<!", "<?" are not) */
            size_t next = past_nuls(p, len, i + 1);
            bool element = next == len || (p[next] != '/' && p[next] != '!' && p[next] != '?');
            /* ImageMagick's reader compares names: a long one counts more. A name's bytes end
             * at the next '<' at the latest, so that each byte is looked at once or twice, and
             * its NULs (UTF-16's) count in it */
            size_t name = 0;
            while (element && i + 1 + name < len &&
                   (p[i + 1 + name] == 0 || !strchr(" \t\r\n/><", p[i + 1 + name]))) {
                name++;
            }
            n += element ? 1 + name / METAGUARD_XMP_NAME_UNIT : 0;
            state = element ? TAG : TEXT;
            attributes = 0;
        } else if (state == TAG && (c == '"' || c == '\'')) {
            state = QUOTED;
            quote = c;
        } else if (state == TAG && c == '=' && ++attributes > METAGUARD_XMP_ATTRIBUTES) {
            return METAGUARD_XMP_UNREADABLE; /* libxml2 is quadratic in them */
        } else if (state == TAG && c == '>') {
            state = TEXT;
        }
    }
    return n;
}

void metaguard_8bim_cost(const unsigned char *p, size_t len, uint64_t limit, uint64_t *exif,
                         uint64_t *xmp)
{
    *exif = *xmp = 0;
    limit = limit < LIMIT_MAX ? limit : LIMIT_MAX;
    /* ImageMagick's walk (GetProfilesFromResourceBlock): records one after the other from the
     * start, each "8BIM", id, a Pascal name padded to an even length with its length byte, a
     * size, the data padded to an even length; the first that is not one ends it */
    for (size_t at = 0; p != NULL && at + BIM_MIN_LEN < len && *exif <= limit;) {
        if (memcmp(p + at, BIM_SIGNATURE, 4) != 0) {
            break;
        }
        unsigned id = (unsigned)p[at + 4] << 8 | p[at + 5], name_len = p[at + 6];
        size_t size_at = at + 7 + name_len + ((name_len + 1) % 2);
        if (size_at + 4 > len) {
            break;
        }
        size_t data = size_at + 4, size = be32(p + size_at);
        if (size > len - data) {
            break;
        }
        if (id == BIM_EXIF) {
            exif_cost(p + data, size, exif, limit, &walking);
        } else if (id == BIM_XMP) {
            uint64_t c = metaguard_xmp_cost(p + data, size);
            *xmp = c == METAGUARD_XMP_UNREADABLE ? c : *xmp + c;
            if (c == METAGUARD_XMP_UNREADABLE) {
                break;
            }
        }
        at = data + size + size % 2;
    }
}

/* ---- PNG text chunks ---------------------------------------------------------------------- */

#define PNG_SIGNATURE_LEN 8
#define PNG_CHUNK_EXTRA   12    /* length, type, CRC */
#define PNG_KEYWORD_MAX   80    /* a keyword of 1 to 79 bytes and its NUL */
#define INFLATE_CHUNK     16384 /* bytes inflated at a time */

/* What the `n` bytes of zlib data at `z` inflate to, as far as they go (libpng inflates a
 * corrupt stream up to where it breaks), counted up to just past `limit`. */
static uint64_t inflated_bytes(const unsigned char *z, size_t n, uint64_t limit)
{
    static _Thread_local unsigned char out[INFLATE_CHUNK];
    z_stream s = {.next_in = (Bytef *)z, .avail_in = (uInt)n};
    if (inflateInit(&s) != Z_OK) {
        return limit + 1; /* out of memory: libpng could not either */
    }
    uint64_t total = 0;
    int rc = Z_OK;
    while (rc == Z_OK && total <= limit) {
        s.next_out = out;
        s.avail_out = sizeof out;
        rc = inflate(&s, Z_NO_FLUSH);
        total += sizeof out - s.avail_out;
    }
    inflateEnd(&s);
    return total;
}

/* The bytes of one metadata chunk (type `t`, data `c` of `n` bytes), at most just past `limit`. */
static uint64_t png_chunk_bytes(const unsigned char *t, const unsigned char *c, size_t n,
                                uint64_t limit)
{
    bool ztxt = memcmp(t, "zTXt", 4) == 0 || memcmp(t, "iCCP", 4) == 0;
    if (memcmp(t, "tEXt", 4) == 0) {
        return n;
    }
    if (!ztxt && memcmp(t, "iTXt", 4) != 0) {
        return 0;
    }
    /* keyword NUL, then zTXt and iCCP: method, zlib data; iTXt: compressed flag, method,
     * language NUL, translated keyword NUL, text (zlib data when compressed) */
    const unsigned char *k = memchr(c, 0, n < PNG_KEYWORD_MAX ? n : PNG_KEYWORD_MAX);
    size_t at = k != NULL ? (size_t)(k - c) + 2 : n;
    bool compressed = ztxt || (at < n && c[at - 1] == 1);
    for (int i = 0; !ztxt && i < 2 && at < n; i++) {
        const unsigned char *end = memchr(c + at + (i == 0), 0, n - at - (i == 0));
        at = end != NULL ? (size_t)(end - c) + 1 : n;
    }
    if (at >= n) {
        return 0; /* libpng refuses such a chunk before it reads its text */
    }
    return compressed ? inflated_bytes(c + at, n - at, limit) : n - at;
}

uint64_t metaguard_png_text_bytes(const unsigned char *p, size_t len, uint64_t limit)
{
    limit = limit < LIMIT_MAX ? limit : LIMIT_MAX;
    uint64_t total = 0;
    /* chunk after chunk to IEND or to a chunk the file does not hold whole (libpng stops) */
    for (size_t at = PNG_SIGNATURE_LEN;
         p != NULL && at <= len && len - at >= PNG_CHUNK_EXTRA && total <= limit;) {
        size_t n = be32(p + at);
        const unsigned char *type = p + at + 4;
        if (n > len - at - PNG_CHUNK_EXTRA || memcmp(type, "IEND", 4) == 0) {
            break;
        }
        total += png_chunk_bytes(type, p + at + 8, n, limit - total);
        at += PNG_CHUNK_EXTRA + n;
    }
    return total;
}

/* ---- the guard ---------------------------------------------------------------------------- */

/* What the read holds now for `image`'s profile `name` (its latest hand-over), found or added;
 * NULL when the table is full (the hand-over then only adds). */
static struct metaguard_held *held_of(struct metaguard *g, const Image *image, const char *name)
{
    for (int i = 0; i < g->n_held; i++) {
        if (g->held[i].image == image && strcasecmp(g->held[i].name, name) == 0) {
            return &g->held[i];
        }
    }
    if (g->n_held == METAGUARD_HELD || strlen(name) >= sizeof g->held[0].name) {
        return NULL;
    }
    struct metaguard_held *h = &g->held[g->n_held++];
    memset(h, 0, sizeof *h);
    h->image = image;
    snprintf(h->name, sizeof h->name, "%s", name);
    return h;
}

/* The first bound past (METAGUARD_OVER_NONE if none). */
static enum metaguard_over past(const struct metaguard *g)
{
    return g->exif > g->max_exif                           ? METAGUARD_OVER_EXIF
           : g->xmp >= METAGUARD_XMP_UNREADABLE            ? METAGUARD_OVER_XMP_UNREADABLE
           : g->xmp > g->max_xmp                           ? METAGUARD_OVER_XMP
           : g->bytes > g->max_bytes                       ? METAGUARD_OVER_BYTES
           : g->handled > METAGUARD_HANDLED * g->max_bytes ? METAGUARD_OVER_HANDLED
                                                           : METAGUARD_OVER_NONE;
}

/* Measures `image`'s profile `name` against what the armed read has left; false: refuse it.
 * A profile handed over again (a JPEG's segments, joined) replaces what its last hand-over
 * counted, but for the bytes handled. */
static bool admit(struct metaguard *g, const Image *image, const char *name, const unsigned char *p,
                  size_t len)
{
    if (g->over != METAGUARD_OVER_NONE) {
        return false;
    }
    struct metaguard_held now = {.bytes = len}, *h = held_of(g, image, name);
    bool bim = strcasecmp(name, "8bim") == 0, xmp = strcasecmp(name, "xmp") == 0;
    if (h != NULL) { /* what its last hand-over counted is no more */
        g->bytes -= h->bytes;
        /* but for the EXIF and XMP an 8bim block held: ImageMagick copied them out as "exif"
         * and "xmp" profiles, which a later 8bim block without them leaves */
        g->exif -= bim ? 0 : h->exif;
        g->xmp -= bim ? 0 : h->xmp;
    }
    uint64_t left = g->max_exif - g->exif; /* never below 0: nothing refused yet */
    if (strcasecmp(name, "exif") == 0) {
        now.exif = metaguard_exif_cost(p, len, left);
    } else if (bim) {
        metaguard_8bim_cost(p, len, left, &now.exif, &now.xmp);
    } else if (xmp) {
        now.xmp = metaguard_xmp_cost(p, len);
    }
    g->bytes += now.bytes;
    g->exif += now.exif;
    g->xmp += now.xmp;
    /* libxml2 checks an XMP profile at each hand-over, as one an 8bim block holds */
    g->handled += xmp || (bim && now.xmp > 0) ? METAGUARD_XMP_WEIGHT * (uint64_t)len : len;
    if (xmp || strcasecmp(name, "icc") == 0 || strcasecmp(name, "icm") == 0 ||
        strcasecmp(name, "iptc") == 0) {
        /* ImageMagick writes these into the image's 8bim block too, copying all of it */
        const StringInfo *block = GetImageProfile(image, "8bim");
        g->handled += block != NULL ? GetStringInfoLength(block) : 0;
    }
    if (h != NULL) {
        h->bytes = now.bytes;
        h->exif = now.exif;
        h->xmp = now.xmp;
    }
    g->over = past(g);
    if (g->over == METAGUARD_OVER_NONE) {
        return true;
    }
    size_t n = strlen(name) < sizeof g->refused - 1 ? strlen(name) : sizeof g->refused - 1;
    for (size_t i = 0; i < n; i++) {
        g->refused[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    }
    g->refused[n] = '\0';
    return false;
}

/* ImageMagick's own declaration (magick/profile.h); this definition is the one its coders call
 * (metaguard.h). Unarmed, it passes every profile on. */
MagickBooleanType SetImageProfile(Image *image, const char *name, const StringInfo *profile)
{
    struct metaguard *g = armed;
    if (g != NULL && image != NULL && name != NULL && profile != NULL &&
        !admit(g, image, name, GetStringInfoDatum(profile), GetStringInfoLength(profile))) {
        (void)DeleteImageProfile(image, name);
        return MagickFalse;
    }
    return magick_set_profile(image, name, profile);
}

int metaguard_init(struct err *e)
{
    if (magick_set_profile != NULL) {
        return 0;
    }
    set_profile_fn own = SetImageProfile;
    void *next = dlsym(RTLD_NEXT, "SetImageProfile");
    void *first = dlsym(RTLD_DEFAULT, "SetImageProfile");
    if (next == NULL) {
        return err_set(e, "cannot find ImageMagick's SetImageProfile (%s)", dlerror());
    }
    /* a function pointer through a data pointer: what dlsym() gives, by POSIX */
    set_profile_fn found;
    memcpy(&found, &first, sizeof found);
    if (first == NULL || found != own) {
        return err_set(e, "pixq-worker's SetImageProfile is not the one ImageMagick calls "
                          "(linked without its export: see worker/metaguard.h)");
    }
    memcpy(&magick_set_profile, &next, sizeof magick_set_profile);
    return 0;
}

void metaguard_arm(struct metaguard *g, const struct metaguard_limits *l)
{
    memset(g, 0, sizeof *g);
    g->max_bytes =
        l->max_bytes < LIMIT_MAX / METAGUARD_HANDLED ? l->max_bytes : LIMIT_MAX / METAGUARD_HANDLED;
    g->max_exif = l->max_exif < LIMIT_MAX ? l->max_exif : LIMIT_MAX;
    g->max_xmp = l->max_xmp;
    armed = g;
}

bool metaguard_disarm(void)
{
    struct metaguard *g = armed;
    armed = NULL;
    return g != NULL && g->over != METAGUARD_OVER_NONE;
}

int metaguard_error(const struct metaguard *g, struct err *e)
{
    const char *what = "the image's metadata is too large to read:";
    unsigned long long mb = (unsigned long long)(g->max_bytes >> 20);
    switch (g->over) {
    case METAGUARD_OVER_EXIF:
        return err_set(e,
                       "%s its EXIF data has more than %llu values to format "
                       "(PIXQ_EXIF_MAX_VALUES; a fraction counts 4)",
                       what, (unsigned long long)g->max_exif);
    case METAGUARD_OVER_XMP:
        return err_set(e, "%s its XMP data has more than %llu elements (PIXQ_XMP_MAX_ELEMENTS)",
                       what, (unsigned long long)g->max_xmp);
    case METAGUARD_OVER_XMP_UNREADABLE:
        return err_set(e,
                       "%s its XMP data has a DTD, an element of more than %d attributes, or an "
                       "encoding other than UTF-8, UTF-16, UTF-32 or one like ASCII",
                       what, METAGUARD_XMP_ATTRIBUTES);
    case METAGUARD_OVER_BYTES:
        return err_set(e, "%s more than %llu MB of profiles (%s profile; PIXQ_METADATA_MAX_MB)",
                       what, mb, g->refused);
    case METAGUARD_OVER_HANDLED:
        return err_set(e,
                       "%s its %s profile comes in too many pieces (ImageMagick would copy more "
                       "than %d x %llu MB joining them; PIXQ_METADATA_MAX_MB)",
                       what, g->refused, METAGUARD_HANDLED, mb);
    case METAGUARD_OVER_NONE:
        break;
    }
    return err_set(e, "%s (no bound passed)", what);
}
