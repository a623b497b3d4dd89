/* exifcap: a JPEG's EXIF arrays shortened for ImageMagick's reading (exifcap.h). */
#include "exifcap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiffint.h"

#define EXIF_HEADER_LEN 6   /* "Exif\0\0" */
#define IFD_ENTRY_LEN   12  /* tag, type, count, value or offset */
#define MAX_IFDS        16  /* IFDs walked at most */
#define MAX_PENDING     64  /* IFD offsets waiting to be walked */
#define MAX_REGIONS     512 /* IFD tables and out-of-line values */
#define MAX_CANDIDATES  64
#define TIFF_ASCII      2
#define TIFF_TYPES      13           /* 1..12 */
#define COUNT_MAX       0x7fffffffUL /* ImageMagick reads the count as a signed long */

/* Bytes per value of each TIFF type (ImageMagick's table; 0 is not a type). */
static const unsigned type_size[TIFF_TYPES] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8};

/* Bytes of the TIFF structure, or the IFD table (`ifd` >= 0) they belong to. */
struct region {
    size_t from, to;
    int ifd; /* -1: an entry's values */
};

struct candidate {
    size_t at; /* the count field, from the TIFF header */
    int ifd;
};

struct walk {
    const unsigned char *t; /* the TIFF header */
    size_t len;             /* bytes from it to the end of the payload */
    bool big_endian;
    size_t ifds[MAX_IFDS], pending[MAX_PENDING];
    int n_ifds, n_pending, n_regions, n_candidates;
    struct region regions[MAX_REGIONS];
    struct candidate candidates[MAX_CANDIDATES];
    bool failed; /* more than the limits above: leave the JPEG alone */
};

static uint32_t u16(const struct walk *w, size_t at)
{
    return tiffint_u16(w->t + at, w->big_endian);
}

static uint32_t u32(const struct walk *w, size_t at)
{
    return tiffint_u32(w->t + at, w->big_endian);
}

static void put_u32(unsigned char *p, uint32_t v, bool big_endian)
{
    for (int i = 0; i < 4; i++) {
        p[big_endian ? i : 3 - i] = (unsigned char)(v >> (8 * (3 - i)));
    }
}

static void add_region(struct walk *w, size_t from, size_t to, int ifd)
{
    if (w->n_regions == MAX_REGIONS) {
        w->failed = true;
        return;
    }
    w->regions[w->n_regions++] = (struct region){.from = from, .to = to, .ifd = ifd};
}

static void push_ifd(struct walk *w, uint32_t off)
{
    if (off == 0 || off >= w->len) {
        return;
    }
    if (w->n_pending == MAX_PENDING) {
        w->failed = true;
        return;
    }
    w->pending[w->n_pending++] = off;
}

/* The EXIF, GPS and interoperability IFD pointers. */
static bool is_pointer(uint32_t tag)
{
    return tag == 0x8769 || tag == 0x8825 || tag == 0xa005;
}

/* One entry at `q` of IFD number `ifd`; false where ImageMagick stops reading the IFD. */
static bool walk_entry(struct walk *w, size_t q, int ifd)
{
    uint32_t type = u16(w, q + 2), count = u32(w, q + 4);
    if (type == 0 || type >= TIFF_TYPES || count > COUNT_MAX) {
        return false;
    }
    uint64_t bytes = (uint64_t)count * type_size[type];
    size_t values = q + 8;
    if (bytes > 4) {
        uint32_t off = u32(w, q + 8);
        if (off > COUNT_MAX || off >= w->len || bytes > w->len - off) {
            return true; /* skipped by ImageMagick: keep its count */
        }
        add_region(w, off, off + (size_t)bytes, -1);
        values = off;
        if (type != TIFF_ASCII && count > EXIFCAP_KEEP && w->n_candidates < MAX_CANDIDATES) {
            w->candidates[w->n_candidates++] = (struct candidate){.at = q + 4, .ifd = ifd};
        }
    }
    if (is_pointer(u16(w, q)) && values + 4 <= w->len) {
        push_ifd(w, u32(w, values));
    }
    return true;
}

/* The IFD at `off`, once: its table, its entries, the IFDs it points to. */
static void walk_ifd(struct walk *w, size_t off)
{
    for (int i = 0; i < w->n_ifds; i++) {
        if (w->ifds[i] == off) {
            return;
        }
    }
    if (w->n_ifds == MAX_IFDS) {
        w->failed = true;
        return;
    }
    int ifd = w->n_ifds;
    w->ifds[w->n_ifds++] = off;
    if (off + 2 > w->len) {
        return;
    }
    size_t n = u16(w, off), end = off + 2 + IFD_ENTRY_LEN * n;
    add_region(w, off, end + 4 < w->len ? end + 4 : w->len, ifd);
    for (size_t i = 0; i < n; i++) {
        size_t q = off + 2 + IFD_ENTRY_LEN * i;
        if (q + IFD_ENTRY_LEN > w->len || !walk_entry(w, q, ifd)) {
            return;
        }
    }
    if (end + 4 <= w->len) {
        push_ifd(w, u32(w, end));
    }
}

/* Whether a count field may change: no bytes of it are another IFD's or any entry's values. */
static bool alone(const struct walk *w, const struct candidate *c)
{
    for (int i = 0; i < w->n_regions; i++) {
        const struct region *r = &w->regions[i];
        if (r->from < c->at + 4 && c->at < r->to && r->ifd != c->ifd) {
            return false;
        }
    }
    return true;
}

/* Walks the TIFF structure of the EXIF payload `p` (`len` bytes, "Exif\0\0" first). */
static bool walk_tiff(const unsigned char *p, size_t len, struct walk *w)
{
    memset(w, 0, sizeof *w);
    w->t = p + EXIF_HEADER_LEN;
    w->len = len - EXIF_HEADER_LEN;
    if (w->len < 16 || (memcmp(w->t, "II", 2) != 0 && memcmp(w->t, "MM", 2) != 0)) {
        return false;
    }
    w->big_endian = w->t[0] == 'M';
    if (u16(w, 2) != 0x2a) {
        return false;
    }
    push_ifd(w, u32(w, 4));
    while (w->n_pending > 0 && !w->failed) {
        walk_ifd(w, w->pending[--w->n_pending]);
    }
    return !w->failed;
}

/* The payload of the JPEG's one APP1 segment named "exif" (as ImageMagick names profiles) when
 * it starts "Exif\0\0"; false when there is none, more than one, or the markers are damaged. */
static bool find_exif(const unsigned char *d, size_t len, size_t *at, size_t *n)
{
    int found = 0;
    if (len < 4 || d[0] != 0xff || d[1] != 0xd8) {
        return false;
    }
    for (size_t pos = 2; pos < len;) {
        if (d[pos] != 0xff) {
            return false;
        }
        while (pos < len && d[pos] == 0xff) {
            pos++;
        }
        if (pos >= len || d[pos] == 0xda || d[pos] == 0xd9) {
            break;
        }
        unsigned marker = d[pos++];
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
            continue;
        }
        size_t seg = pos + 2 <= len ? (size_t)d[pos] << 8 | d[pos + 1] : 0;
        if (seg < 2 || seg > len - pos) {
            return false;
        }
        if (marker == 0xe1 && seg - 2 > 4 &&
            strncasecmp((const char *)d + pos + 2, "exif", 4) == 0) {
            found++;
            *at = pos + 2;
            *n = seg - 2;
        }
        pos += seg;
    }
    return found == 1 && *n > EXIF_HEADER_LEN && memcmp(d + *at, "Exif\0\0", 6) == 0;
}

int exifcap_prepare(const void *data, size_t len, struct exifcap *c)
{
    memset(c, 0, sizeof *c);
    const unsigned char *d = data;
    size_t at = 0, n = 0;
    struct walk w;
    if (d == NULL || !find_exif(d, len, &at, &n) || !walk_tiff(d + at, n, &w)) {
        return 0;
    }
    for (int i = 0; i < w.n_candidates && c->fixes < EXIFCAP_FIXES; i++) {
        if (alone(&w, &w.candidates[i])) {
            struct exifcap_fix *f = &c->fix[c->fixes++];
            f->at = EXIF_HEADER_LEN + w.candidates[i].at;
            memcpy(f->original, d + at + f->at, 4);
        }
    }
    if (c->fixes == 0) {
        return 0;
    }
    c->copy = malloc(len);
    if (c->copy == NULL) {
        c->fixes = 0;
        return -1;
    }
    memcpy(c->copy, d, len);
    c->len = len;
    c->payload = at;
    c->payload_len = n;
    for (int i = 0; i < c->fixes; i++) {
        put_u32(c->copy + at + c->fix[i].at, EXIFCAP_KEEP, w.big_endian);
    }
    return 0;
}

bool exifcap_restore(const struct exifcap *c, unsigned char *profile, size_t profile_len)
{
    if (c->copy == NULL || profile == NULL || profile_len != c->payload_len ||
        memcmp(profile, c->copy + c->payload, profile_len) != 0) {
        return false;
    }
    for (int i = 0; i < c->fixes; i++) {
        memcpy(profile + c->fix[i].at, c->fix[i].original, 4);
    }
    return true;
}

void exifcap_free(struct exifcap *c)
{
    free(c->copy);
    memset(c, 0, sizeof *c);
}
