/* metaguard: a bound on the metadata ImageMagick parses while it reads an image (metaguard.h). */
#define _GNU_SOURCE /* RTLD_NEXT, memmem */
#include "metaguard.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wand/MagickWand.h>

#define EXIF_HEADER     "Exif\0\0"
#define EXIF_HEADER_LEN 6
#define TIFF_MIN_LEN    16 /* ImageMagick reads no shorter block */
#define IFD_ENTRY_LEN   12 /* tag, type, count, value or offset */
#define TIFF_TYPES      13 /* 1..12 */
#define MAX_PENDING     METAGUARD_MAX_IFDS
#define SEEN_SLOTS      (2 * METAGUARD_MAX_IFDS) /* a hash set, at most half full */
#define BIM_SIGNATURE   "8BIM"
#define BIM_EXIF        0x0422           /* the Photoshop resource that is an EXIF block */
#define LIMIT_MAX       (UINT64_MAX / 4) /* higher limits count as this: no sum overflows */

typedef MagickBooleanType (*set_profile_fn)(Image *, const char *, const StringInfo *);

static set_profile_fn magick_set_profile; /* MagickCore's SetImageProfile() */
static _Thread_local struct metaguard *armed;

/* Bytes per value of each TIFF type (0 is not a type). */
static const unsigned type_size[TIFF_TYPES] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8};

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

static uint32_t u16(const struct walk *w, size_t at)
{
    const unsigned char *p = w->t + at;
    return w->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t u32(const struct walk *w, size_t at)
{
    const unsigned char *p = w->t + at;
    if (w->big_endian) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
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

/* One entry at `q`: 1, plus its values when they lie inside the block; follows a pointer. */
static void walk_entry(struct walk *w, size_t q)
{
    uint32_t type = u16(w, q + 2), count = u32(w, q + 4);
    w->cost++;
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
    w->cost += count;
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
    static _Thread_local struct walk w;
    uint64_t cost = 0;
    if (p != NULL) {
        exif_cost(p, len, &cost, limit < LIMIT_MAX ? limit : LIMIT_MAX, &w);
    }
    return cost;
}

/* ---- Photoshop resource blocks ------------------------------------------------------------ */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The EXIF resource whose size field is at `at`, if it fits; adds to `*cost`. */
static void bim_resource(const unsigned char *p, size_t len, size_t at, uint64_t *cost,
                         uint64_t limit, struct walk *w)
{
    if (at + 4 > len) {
        return;
    }
    uint32_t size = be32(p + at);
    if (size <= len - at - 4) {
        exif_cost(p + at + 4, size, cost, limit, w);
    }
}

uint64_t metaguard_8bim_cost(const unsigned char *p, size_t len, uint64_t limit)
{
    static _Thread_local struct walk w;
    uint64_t cost = 0;
    limit = limit < LIMIT_MAX ? limit : LIMIT_MAX;
    for (size_t at = 0; p != NULL && at + 7 <= len && cost <= limit;) {
        const unsigned char *h = memmem(p + at, len - at, BIM_SIGNATURE, 4);
        if (h == NULL || (size_t)(h - p) + 7 > len) {
            break;
        }
        size_t r = (size_t)(h - p) + 4; /* id, name length, name, size, data */
        if (((unsigned)p[r] << 8 | p[r + 1]) == BIM_EXIF) {
            size_t name_end = r + 3 + p[r + 2];
            /* the name is padded to an even length with its length byte; readers differ on
             * whether they count the byte: both places are measured */
            bim_resource(p, len, name_end, &cost, limit, &w);
            bim_resource(p, len, name_end + 1, &cost, limit, &w);
        }
        at = (size_t)(h - p) + 1;
    }
    return cost;
}

/* ---- the guard ---------------------------------------------------------------------------- */

/* Measures one profile against what the armed read has left; false: refuse it. */
static bool admit(struct metaguard *g, const char *name, const unsigned char *p, size_t len)
{
    if (g->refused[0] != '\0') {
        return false;
    }
    g->bytes += len;
    uint64_t left = g->max_exif - g->exif; /* never below 0: nothing refused yet */
    if (strcasecmp(name, "exif") == 0) {
        g->exif += metaguard_exif_cost(p, len, left);
    } else if (strcasecmp(name, "8bim") == 0) {
        g->exif += metaguard_8bim_cost(p, len, left);
    }
    if (g->bytes <= g->max_bytes && g->exif <= g->max_exif) {
        return true;
    }
    g->exif_over = g->exif > g->max_exif;
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
        !admit(g, name, GetStringInfoDatum(profile), GetStringInfoLength(profile))) {
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

void metaguard_arm(struct metaguard *g, uint64_t max_bytes, uint64_t max_exif)
{
    memset(g, 0, sizeof *g);
    g->max_bytes = max_bytes;
    g->max_exif = max_exif;
    armed = g;
}

bool metaguard_disarm(void)
{
    struct metaguard *g = armed;
    armed = NULL;
    return g != NULL && g->refused[0] != '\0';
}

int metaguard_error(const struct metaguard *g, struct err *e)
{
    if (g->exif_over) {
        return err_set(e,
                       "the image's metadata is too large to read: its EXIF data lists more "
                       "than %llu entries and values (PIXQ_EXIF_MAX_VALUES)",
                       (unsigned long long)g->max_exif);
    }
    return err_set(e,
                   "the image's metadata is too large to read: more than %llu MB of profiles "
                   "(%s profile; PIXQ_METADATA_MAX_MB)",
                   (unsigned long long)(g->max_bytes >> 20), g->refused);
}
