/* settags: the EXIF and IPTC blocks a save's set_exif writes (see settags.h). */
#include "settags.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

enum kind {
    TEXT,
    EXIF_DATETIME, /* "YYYY:MM:DD HH:MM:SS" */
    IPTC_DATE,     /* "YYYY:MM:DD" or "YYYYMMDD", written as 8 digits */
};

struct tag {
    const char *name;
    enum settags_group group;
    unsigned id;   /* EXIF tag, or IPTC dataset of record 2 */
    size_t max;    /* bytes of a value */
    bool repeated; /* IPTC: may be given as a list */
    enum kind kind;
};

static const struct tag tags[] = {
    {"DocumentName", SETTAGS_EXIF, 0x010d, SETTAGS_EXIF_MAX, false, TEXT},
    {"ImageDescription", SETTAGS_EXIF, 0x010e, SETTAGS_EXIF_MAX, false, TEXT},
    {"Make", SETTAGS_EXIF, 0x010f, SETTAGS_EXIF_MAX, false, TEXT},
    {"Model", SETTAGS_EXIF, 0x0110, SETTAGS_EXIF_MAX, false, TEXT},
    {"Software", SETTAGS_EXIF, 0x0131, SETTAGS_EXIF_MAX, false, TEXT},
    {"ModifyDate", SETTAGS_EXIF, 0x0132, 19, false, EXIF_DATETIME},
    {"DateTime", SETTAGS_EXIF, 0x0132, 19, false, EXIF_DATETIME},
    {"Artist", SETTAGS_EXIF, 0x013b, SETTAGS_EXIF_MAX, false, TEXT},
    {"HostComputer", SETTAGS_EXIF, 0x013c, SETTAGS_EXIF_MAX, false, TEXT},
    {"Copyright", SETTAGS_EXIF, 0x8298, SETTAGS_EXIF_MAX, false, TEXT},
    {"ObjectName", SETTAGS_IPTC, 5, 64, false, TEXT},
    {"EditStatus", SETTAGS_IPTC, 7, 64, false, TEXT},
    {"Category", SETTAGS_IPTC, 15, 3, false, TEXT},
    {"SupplementalCategories", SETTAGS_IPTC, 20, 32, true, TEXT},
    {"Keywords", SETTAGS_IPTC, 25, 64, true, TEXT},
    {"SpecialInstructions", SETTAGS_IPTC, 40, 256, false, TEXT},
    {"DateCreated", SETTAGS_IPTC, 55, 10, false, IPTC_DATE},
    {"By-line", SETTAGS_IPTC, 80, 32, true, TEXT},
    {"By-lineTitle", SETTAGS_IPTC, 85, 32, true, TEXT},
    {"City", SETTAGS_IPTC, 90, 32, false, TEXT},
    {"Sub-location", SETTAGS_IPTC, 92, 32, false, TEXT},
    {"Province-State", SETTAGS_IPTC, 95, 32, false, TEXT},
    {"Country-PrimaryLocationCode", SETTAGS_IPTC, 100, 3, false, TEXT},
    {"Country-PrimaryLocationName", SETTAGS_IPTC, 101, 64, false, TEXT},
    {"OriginalTransmissionReference", SETTAGS_IPTC, 103, 32, false, TEXT},
    {"Headline", SETTAGS_IPTC, 105, 256, false, TEXT},
    {"Credit", SETTAGS_IPTC, 110, 32, false, TEXT},
    {"Source", SETTAGS_IPTC, 115, 32, false, TEXT},
    {"CopyrightNotice", SETTAGS_IPTC, 116, 128, false, TEXT},
    {"Contact", SETTAGS_IPTC, 118, 128, true, TEXT},
    {"Caption-Abstract", SETTAGS_IPTC, 120, 2000, false, TEXT},
    {"Writer-Editor", SETTAGS_IPTC, 122, 32, true, TEXT},
};

#define N_TAGS (sizeof tags / sizeof tags[0])

static const char *const group_names[] = {"EXIF", "IPTC"};

/* The tag named `name` ("Copyright", "iptc:keywords"), or NULL. */
static const struct tag *tag_named(const char *name)
{
    const char *colon = strchr(name, ':');
    int group = -1;
    if (colon != NULL) {
        for (int g = 0; g < 2; g++) {
            size_t n = strlen(group_names[g]);
            if ((size_t)(colon - name) == n && strncasecmp(name, group_names[g], n) == 0) {
                group = g;
            }
        }
        if (group < 0 && (size_t)(colon - name) == 4 && strncasecmp(name, "IFD0", 4) == 0) {
            group = SETTAGS_EXIF;
        }
        if (group < 0) {
            return NULL;
        }
        name = colon + 1;
    }
    for (size_t i = 0; i < N_TAGS; i++) {
        if (strcasecmp(name, tags[i].name) == 0 && (group < 0 || (int)tags[i].group == group)) {
            return &tags[i];
        }
    }
    return NULL;
}

/* ---- checking set_exif ---- */

/* Whether the `n` bytes at `s` are UTF-8 without control characters but tab, CR and LF. */
static bool clean(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0 || (k == 1 && p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') ||
            p[i] == 0x7f || (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
            return false;
        }
        i += k;
    }
    return true;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Whether `s` has the form of a `k` value. */
static bool well_formed(const char *s, size_t n, enum kind k)
{
    switch (k) {
    case EXIF_DATETIME:
        return n == 19 && digits(s, 4) && s[4] == ':' && digits(s + 5, 2) && s[7] == ':' &&
               digits(s + 8, 2) && s[10] == ' ' && digits(s + 11, 2) && s[13] == ':' &&
               digits(s + 14, 2) && s[16] == ':' && digits(s + 17, 2);
    case IPTC_DATE:
        return (n == 8 && digits(s, 8)) || (n == 10 && digits(s, 4) && s[4] == ':' &&
                                            digits(s + 5, 2) && s[7] == ':' && digits(s + 8, 2));
    case TEXT:
        break;
    }
    return true;
}

/* The text of a value: a string, or a number as JSON writes it; NULL for anything else. */
static const char *value_text(json_object *v, size_t *len)
{
    if (json_object_is_type(v, json_type_string)) {
        *len = (size_t)json_object_get_string_len(v);
        return json_object_get_string(v);
    }
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        const char *s = json_object_get_string(v);
        *len = strlen(s);
        return s;
    }
    return NULL;
}

static int check_value(const struct tag *t, json_object *v, const char *what, struct err *e)
{
    size_t n = 0;
    const char *s = value_text(v, &n);
    const char *form = t->kind == EXIF_DATETIME ? " (YYYY:MM:DD HH:MM:SS)"
                       : t->kind == IPTC_DATE   ? " (YYYY:MM:DD)"
                                                : "";
    if (s == NULL) {
        return err_set(e, "set_exif of %s: %s must be text%s%s", what, t->name, form,
                       t->repeated ? ", or a list of texts" : "");
    }
    if (n > t->max && t->kind == TEXT) {
        return err_set(e, "set_exif of %s: %s is %zu bytes, more than %s allows (%zu)", what,
                       t->name, n, group_names[t->group], t->max);
    }
    if (!clean(s, n)) {
        return err_set(e,
                       "set_exif of %s: %s must be UTF-8 without control characters (but tab "
                       "and line breaks)",
                       what, t->name);
    }
    if (n > 0 && !well_formed(s, n, t->kind)) {
        return err_set(e, "set_exif of %s: %s must be a date%s", what, t->name, form);
    }
    return 0;
}

static int check_tag(const struct tag *t, json_object *v, const char *what, struct err *e)
{
    if (v == NULL) {
        return 0; /* null: delete */
    }
    if (!json_object_is_type(v, json_type_array)) {
        return check_value(t, v, what, e);
    }
    size_t n = json_object_array_length(v);
    if (!t->repeated) {
        return err_set(e, "set_exif of %s: %s takes one value, not a list", what, t->name);
    }
    if (n > SETTAGS_MAX_VALUES) {
        return err_set(e, "set_exif of %s: %s has more than %d values", what, t->name,
                       SETTAGS_MAX_VALUES);
    }
    for (size_t i = 0; i < n; i++) {
        if (check_value(t, json_object_array_get_idx(v, i), what, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The groups an output of `format` holds: a bit per group. */
static unsigned groups_held(const char *format)
{
    if (strcmp(format, "jpg") == 0 || strcmp(format, "jpeg") == 0 || strcmp(format, "png") == 0) {
        return 1u << SETTAGS_EXIF | 1u << SETTAGS_IPTC;
    }
    return strcmp(format, "webp") == 0 ? 1u << SETTAGS_EXIF : 0;
}

int settags_check(json_object *set, const char *format, const char *what, struct err *e)
{
    if (!json_object_is_type(set, json_type_object)) {
        return err_set(e, "set_exif of %s must be an object of tag names and values", what);
    }
    if (json_object_object_length(set) > SETTAGS_MAX_TAGS) {
        return err_set(e, "set_exif of %s has more than %d tags", what, SETTAGS_MAX_TAGS);
    }
    unsigned held = groups_held(format);
    const struct tag *seen[SETTAGS_MAX_TAGS];
    const char *seen_as[SETTAGS_MAX_TAGS];
    size_t n_seen = 0;
    json_object_object_foreach(set, name, v)
    {
        const struct tag *t = tag_named(name);
        if (t == NULL) {
            char shown[UTF8_SHOWN_MAX + 1];
            return err_set(e,
                           "set_exif of %s: '%s' is not a tag pixq writes (EXIF: Artist, "
                           "Copyright, ImageDescription...; IPTC: ObjectName, Keywords, "
                           "Caption-Abstract...: see README)",
                           what, utf8_ascii_shown(name, shown, sizeof shown));
        }
        for (size_t i = 0; i < n_seen; i++) {
            if (seen[i]->group == t->group && seen[i]->id == t->id) {
                return err_set(e, "set_exif of %s: '%.60s' and '%.60s' name the same tag", what,
                               seen_as[i], name);
            }
        }
        seen[n_seen] = t;
        seen_as[n_seen++] = name;
        if (check_tag(t, v, what, e) < 0) {
            return -1;
        }
        if (!(held & 1u << t->group)) {
            return err_set(e, "set_exif of %s: a %s output holds no %s tags (%s)%s", what, format,
                           group_names[t->group], t->name,
                           held == 0 ? ": JPEG, PNG and WebP outputs hold them"
                                     : ": JPEG and PNG outputs hold them");
        }
    }
    return 0;
}

const char *settags_name(const char *key, enum settags_group *group)
{
    const struct tag *t = tag_named(key);
    if (t != NULL) {
        *group = t->group;
    }
    return t != NULL ? t->name : NULL;
}

bool settags_has(json_object *set, enum settags_group group)
{
    json_object_object_foreach(set, name, v)
    {
        (void)v;
        const struct tag *t = tag_named(name);
        if (t != NULL && t->group == group) {
            return true;
        }
    }
    return false;
}

/* ---- EXIF ---- */

static unsigned get16(const unsigned char *p, bool be)
{
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t get32(const unsigned char *p, bool be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static void put16(unsigned char *p, unsigned v, bool be)
{
    p[be ? 0 : 1] = (unsigned char)(v >> 8);
    p[be ? 1 : 0] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v, bool be)
{
    for (int i = 0; i < 4; i++) {
        p[be ? 3 - i : i] = (unsigned char)(v >> (8 * i));
    }
}

/* An IFD0 entry of the new block: an old one (its 12 bytes), a tag set (its text), or a
 * mandatory tag of a new IFD0 (one SHORT, or one RATIONAL number/1). */
struct entry {
    unsigned tag;
    const unsigned char *old; /* 12 bytes in the old block, or NULL */
    const char *text;         /* the value without its NUL */
    size_t len;
    unsigned type;  /* TIFF_SHORT or TIFF_RATIONAL for a mandatory tag, else 0 */
    uint32_t value; /* its value (the numerator) */
    size_t order;   /* keeps qsort stable */
};

#define TIFF_ASCII    2
#define TIFF_SHORT    3
#define TIFF_RATIONAL 5

static int by_tag(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->tag != y->tag) {
        return x->tag < y->tag ? -1 : 1;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The old TIFF structure, when it parses: where IFD0 is and how many entries it has. */
struct tiff {
    const unsigned char *p;
    size_t len;
    bool be;
    size_t ifd0;
    unsigned count;
    uint32_t next; /* IFD1, the thumbnail's */
};

static bool tiff_parse(const unsigned char *old, size_t len, struct tiff *t)
{
    if (old != NULL && len >= 6 && memcmp(old, "Exif\0\0", 6) == 0) {
        old += 6;
        len -= 6;
    }
    if (old == NULL || len < 8 || !(memcmp(old, "II*\0", 4) == 0 || memcmp(old, "MM\0*", 4) == 0)) {
        return false;
    }
    t->p = old;
    t->len = len;
    t->be = old[0] == 'M';
    t->ifd0 = get32(old + 4, t->be);
    if (t->ifd0 < 8 || t->ifd0 > len || len - t->ifd0 < 2) {
        return false;
    }
    t->count = get16(old + t->ifd0, t->be);
    if ((len - t->ifd0 - 2) / 12 < t->count || len - t->ifd0 - 2 - 12 * (size_t)t->count < 4) {
        return false;
    }
    t->next = get32(old + t->ifd0 + 2 + 12 * (size_t)t->count, t->be);
    return true;
}

/* Whether `set` names `tag` of `group` (then *v is its value, NULL to delete). */
static bool set_names(json_object *set, enum settags_group group, unsigned id, json_object **v)
{
    json_object_object_foreach(set, name, value)
    {
        const struct tag *t = tag_named(name);
        if (t != NULL && t->group == group && t->id == id) {
            *v = value;
            return true;
        }
    }
    return false;
}

/* The text to write of a value (NULL: delete), its length in *len. */
static const char *written(json_object *v, size_t *len)
{
    const char *s = v != NULL ? value_text(v, len) : NULL;
    return s != NULL && *len > 0 ? s : NULL;
}

/* The tags EXIF requires in IFD0, for a new IFD0: what exiftool writes into a file without
 * EXIF. Returns how many were added to `out` (at `n`). */
static size_t mandatory_entries(const struct settags_image *img, struct entry *out, size_t n)
{
    size_t k = n;
    out[k++] = (struct entry){.tag = 0x011a, .type = TIFF_RATIONAL, .value = img->x_res};
    out[k++] = (struct entry){.tag = 0x011b, .type = TIFF_RATIONAL, .value = img->y_res};
    out[k++] = (struct entry){.tag = 0x0128, .type = TIFF_SHORT, .value = img->unit};
    if (img->jpeg) {
        out[k++] = (struct entry){.tag = 0x0213, .type = TIFF_SHORT, .value = 1}; /* centred */
    }
    return k - n;
}

#define MANDATORY_MAX 4 /* entries mandatory_entries() adds */

/* The entries of the new IFD0, sorted by tag: the old ones not set, then the tags set (and, for
 * a new IFD0 with a tag set, the mandatory ones). */
static size_t exif_entries(json_object *set, const struct tiff *old,
                           const struct settags_image *img, struct entry *out)
{
    size_t n = 0;
    json_object *v;
    for (unsigned i = 0; old != NULL && i < old->count; i++) {
        const unsigned char *e = old->p + old->ifd0 + 2 + 12 * (size_t)i;
        unsigned tag = get16(e, old->be);
        if (!set_names(set, SETTAGS_EXIF, tag, &v)) {
            out[n++] = (struct entry){.tag = tag, .old = e};
        }
    }
    for (size_t i = 0; i < N_TAGS; i++) {
        size_t len = 0;
        const char *text = NULL;
        if (tags[i].group != SETTAGS_EXIF || !set_names(set, SETTAGS_EXIF, tags[i].id, &v) ||
            (text = written(v, &len)) == NULL) {
            continue;
        }
        bool twice = false; /* ModifyDate and its alias DateTime */
        for (size_t j = 0; j < n; j++) {
            twice = twice || (out[j].old == NULL && out[j].tag == tags[i].id);
        }
        if (!twice) {
            out[n++] = (struct entry){.tag = tags[i].id, .text = text, .len = len};
        }
    }
    if (old == NULL && n > 0) {
        n += mandatory_entries(img, out, n);
    }
    for (size_t i = 0; i < n; i++) {
        out[i].order = i;
    }
    qsort(out, n, sizeof *out, by_tag);
    return n;
}

/* Bytes of one value of TIFF type `type`; 0 for a type TIFF does not define. */
static size_t type_size(unsigned type)
{
    static const unsigned char sizes[] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8};
    return type < sizeof sizes ? sizes[type] : 0;
}

/* Where the values of the IFD entry `en` lie in the TIFF block of `len` bytes, when they lie
 * outside the entry: *at and *n; false when they are inside it or outside the block. */
static bool entry_values(const unsigned char *en, size_t len, bool be, size_t *at, size_t *n)
{
    size_t size = type_size(get16(en + 2, be)), count = get32(en + 4, be);
    *at = get32(en + 8, be);
    if (size == 0 || count > SIZE_MAX / size || (*n = count * size) <= 4) {
        return false;
    }
    return *at <= len && len - *at >= *n;
}

#define LINKED_IFDS 8 /* IFDs used_bytes() walks: the EXIF, GPS, interoperability IFDs and IFD1 */

/* Marks bytes [at, at + n) of the block as used in the difference array `d`. */
static void mark(uint32_t *d, size_t at, size_t n)
{
    d[at]++;
    d[at + n]--;
}

/* The bytes of the old block that what the new block keeps uses: the values of the kept IFD0
 * entries, and the EXIF, GPS and interoperability IFDs and IFD1 (their directories and their
 * entries' values), which may share bytes with a dropped entry. Returns a malloc'd array of
 * t->len + 1 counts, [i] how many of bytes [0, i) are used (so that asking about one range
 * takes no walk: the old block's entries and IFDs are walked once, not once for each dropped
 * entry), or NULL when out of memory. */
static uint32_t *used_bytes(const struct tiff *t, const struct entry *kept, size_t n_kept)
{
    uint32_t *d = calloc(t->len + 1, sizeof *d);
    size_t ifds[LINKED_IFDS], n_ifds = 0, vat, vn;
    if (d == NULL) {
        return NULL;
    }
    if (t->next != 0) {
        ifds[n_ifds++] = t->next;
    }
    for (size_t k = 0; k < n_kept; k++) {
        const unsigned char *en = kept[k].old;
        unsigned tag = en != NULL ? get16(en, t->be) : 0;
        if (en != NULL && entry_values(en, t->len, t->be, &vat, &vn)) {
            mark(d, vat, vn);
        }
        if ((tag == 0x8769 || tag == 0x8825) && n_ifds < LINKED_IFDS) {
            ifds[n_ifds++] = get32(en + 8, t->be);
        }
    }
    for (size_t i = 0; i < n_ifds; i++) {
        size_t ifd = ifds[i];
        if (ifd < 8 || ifd > t->len || t->len - ifd < 2) {
            continue;
        }
        unsigned count = get16(t->p + ifd, t->be);
        size_t size = 2 + 12 * (size_t)count + 4;
        if (size > t->len - ifd) {
            continue;
        }
        mark(d, ifd, size);
        for (unsigned j = 0; j < count; j++) {
            const unsigned char *en = t->p + ifd + 2 + 12 * (size_t)j;
            if (entry_values(en, t->len, t->be, &vat, &vn)) {
                mark(d, vat, vn);
            }
            if (get16(en, t->be) == 0xa005 && n_ifds < LINKED_IFDS) {
                ifds[n_ifds++] = get32(en + 8, t->be);
            }
        }
    }
    uint32_t depth = 0, used = 0; /* ranges over byte i; bytes used before it */
    for (size_t i = 0; i <= t->len; i++) {
        depth += d[i];
        d[i] = used;
        used += depth > 0;
    }
    return d;
}

/* Whether bytes [at, at + n) are used (`used`: used_bytes()). */
static bool in_use(const uint32_t *used, size_t at, size_t n)
{
    return used[at + n] != used[at];
}

/* Zeroes in `tiff` (the old block, copied) the old IFD0 and the values of the entries the new
 * IFD0 leaves out (a tag replaced or deleted), which nothing points to any longer: a deleted
 * value is not left readable in the file. Bytes that what is kept still uses stay
 * (used_bytes()). Returns 0, or -1 when out of memory. */
static int clear_old(unsigned char *tiff, const struct tiff *t, const struct entry *kept,
                     size_t n_kept)
{
    uint32_t *used = used_bytes(t, kept, n_kept);
    if (used == NULL) {
        return -1;
    }
    for (unsigned i = 0; i < t->count; i++) {
        const unsigned char *en = t->p + t->ifd0 + 2 + 12 * (size_t)i;
        size_t at, n;
        if (!entry_values(en, t->len, t->be, &at, &n) || at < 8) {
            continue; /* values over the header: a broken entry, the header stays */
        }
        if (!in_use(used, at, n)) { /* a kept entry's own values are used */
            memset(tiff + at, 0, n);
        }
    }
    size_t dir = 2 + 12 * (size_t)t->count + 4;
    if (!in_use(used, t->ifd0, dir)) {
        memset(tiff + t->ifd0, 0, dir);
    }
    free(used);
    return 0;
}

/* Bytes an entry's value takes after the IFD (0: it fits in the entry), word-aligned. */
static size_t outside(const struct entry *en)
{
    if (en->old != NULL || en->type == TIFF_SHORT) {
        return 0;
    }
    if (en->type == TIFF_RATIONAL) {
        return 8;
    }
    return en->len + 1 > 4 ? (en->len + 2) & ~(size_t)1 : 0; /* ASCII, with its NUL */
}

/* Writes the new entry `en` (not an old one) at `at`, its value at `data` if outside (at most
 * outside(en) bytes there); `p` is the block, its TIFF structure at p + 6. */
static void put_entry(unsigned char *p, size_t at, size_t data, const struct entry *en, bool be)
{
    unsigned char *d = p + at;
    put16(d, en->tag, be);
    if (en->type == TIFF_SHORT) {
        put16(d + 2, TIFF_SHORT, be);
        put32(d + 4, 1, be);
        put16(d + 8, en->value, be); /* the first two of the four bytes */
        return;
    }
    if (en->type == TIFF_RATIONAL) {
        put16(d + 2, TIFF_RATIONAL, be);
        put32(d + 4, 1, be);
        put32(d + 8, (uint32_t)(data - 6), be);
        put32(p + data, en->value, be);
        put32(p + data + 4, 1, be);
        return;
    }
    size_t count = en->len + 1; /* with its NUL */
    put16(d + 2, TIFF_ASCII, be);
    put32(d + 4, (uint32_t)count, be);
    if (count <= 4) {
        memcpy(d + 8, en->text, en->len);
    } else {
        put32(d + 8, (uint32_t)(data - 6), be);
        memcpy(p + data, en->text, en->len);
    }
}

int settags_exif(json_object *set, const unsigned char *old, size_t old_len,
                 const struct settags_image *img, struct buf *out, struct err *e)
{
    buf_reset(out);
    size_t max = img->jpeg ? SETTAGS_EXIF_JPEG : SETTAGS_EXIF_BLOCK;
    struct tiff t;
    bool had = tiff_parse(old, old_len, &t);
    size_t base_len = had ? t.len : 8;
    struct entry *entries = calloc((had ? t.count : 0) + N_TAGS + MANDATORY_MAX, sizeof *entries);
    if (entries == NULL) {
        return err_set(e, "out of memory");
    }
    size_t n = exif_entries(set, had ? &t : NULL, img, entries);
    if (!had && n == 0) {
        free(entries);
        return 0;
    }
    bool be = had && t.be;
    size_t ifd = 6 + base_len + (base_len & 1); /* the new IFD0, word-aligned, in `out` */
    size_t data = ifd + 2 + 12 * n + 4, end = data;
    for (size_t i = 0; i < n; i++) {
        end += outside(&entries[i]);
    }
    if (end > max || buf_reserve(out, end) < 0) {
        free(entries);
        return end > max ? err_set(e, "the EXIF block would be %zu bytes, more than %zu", end, max)
                         : err_set(e, "out of memory");
    }
    unsigned char *p = (unsigned char *)out->data;
    memset(p, 0, end);
    memcpy(p, "Exif\0\0", 6);
    unsigned char *tiff = p + 6;
    if (had) {
        memcpy(tiff, t.p, t.len);
        if (clear_old(tiff, &t, entries, n) < 0) {
            buf_reset(out);
            free(entries);
            return err_set(e, "out of memory");
        }
    } else {
        memcpy(tiff, "II*\0", 4);
    }
    put32(tiff + 4, (uint32_t)(ifd - 6), be);
    put16(p + ifd, (unsigned)n, be);
    for (size_t i = 0; i < n; i++) {
        size_t at = ifd + 2 + 12 * i;
        if (entries[i].old != NULL) {
            memcpy(p + at, entries[i].old, 12);
        } else {
            put_entry(p, at, data, &entries[i], be);
            data += outside(&entries[i]);
        }
    }
    put32(p + ifd + 2 + 12 * n, had ? t.next : 0, be);
    out->len = end;
    free(entries);
    return 0;
}

/* ---- IPTC ---- */

struct dataset {
    unsigned record, id;
    const unsigned char *value;
    size_t len;
    size_t order; /* keeps qsort stable: a repeated dataset's values stay in their order */
};

static int by_dataset(const void *a, const void *b)
{
    const struct dataset *x = a, *y = b;
    unsigned kx = x->record << 8 | x->id, ky = y->record << 8 | y->id;
    if (kx != ky) {
        return kx < ky ? -1 : 1;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Reads the datasets of `p` into `out` (room for `cap`), setting *n; false when it does not parse
 * (or has more than `cap`). */
static bool iptc_parse(const unsigned char *p, size_t len, struct dataset *out, size_t cap,
                       size_t *n)
{
    size_t i = 0;
    *n = 0;
    while (i < len) {
        if (p[i] == 0 && *n > 0) {
            break; /* padding after the last dataset */
        }
        if (len - i < 5 || p[i] != 0x1c || *n == cap) {
            return false;
        }
        size_t size = (size_t)p[i + 3] << 8 | p[i + 4], head = 5;
        if (size & 0x8000) { /* extended: the length's length */
            size_t k = size & 0x7fff;
            if (k == 0 || k > 4 || len - i - 5 < k) {
                return false;
            }
            size = 0;
            for (size_t j = 0; j < k; j++) {
                size = size << 8 | p[i + 5 + j];
            }
            head += k;
        }
        if (len - i - head < size) {
            return false;
        }
        out[(*n)++] = (struct dataset){
            .record = p[i + 1], .id = p[i + 2], .value = p + i + head, .len = size};
        i += head + size;
    }
    return true;
}

/* Whether the `n` bytes at `s` are UTF-8 throughout. */
static bool all_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k) {
        if ((k = utf8_seq(s + i, n - i)) == 0) {
            return false;
        }
    }
    return true;
}

/* Whether `d` is CodedCharacterSet (1:90) saying UTF-8 (ESC % G). */
static bool says_utf8(const struct dataset *d)
{
    return d->record == 1 && d->id == 90 && d->len == 3 && memcmp(d->value, "\x1b%G", 3) == 0;
}

/* Whether the text of the datasets `d` is UTF-8 as a reader takes it: the block says so, or every
 * value of record 2 is UTF-8 (else it is Latin-1). */
static bool iptc_utf8(const struct dataset *d, size_t n)
{
    bool all = true;
    for (size_t i = 0; i < n; i++) {
        if (says_utf8(&d[i])) {
            return true;
        }
        all = all && (d[i].record != SETTAGS_IPTC_RECORD || all_utf8(d[i].value, d[i].len));
    }
    return all;
}

/* Rewrites the values of record 2 among `d` as UTF-8, their bytes read as Latin-1, into `to`
 * (room for twice their bytes). */
static void latin1_to_utf8(struct dataset *d, size_t n, unsigned char *to)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i].record != SETTAGS_IPTC_RECORD) {
            continue;
        }
        size_t len = 0;
        for (size_t k = 0; k < d[i].len; k++) {
            unsigned char c = d[i].value[k];
            if (c < 0x80) {
                to[len++] = c;
            } else {
                to[len++] = (unsigned char)(0xc0 | c >> 6);
                to[len++] = (unsigned char)(0x80 | (c & 0x3f));
            }
        }
        d[i].value = to;
        d[i].len = len;
        to += len;
    }
}

static bool has_dataset(const struct dataset *d, size_t n, unsigned record, unsigned id)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i].record == record && d[i].id == id) {
            return true;
        }
    }
    return false;
}

/* The 8 digits of an IPTC date given as "YYYY:MM:DD" or "YYYYMMDD". */
static void date_digits(const char *s, size_t len, char out[8])
{
    const char *from = len == 10 ? s : NULL;
    if (from == NULL) {
        memcpy(out, s, 8);
        return;
    }
    memcpy(out, from, 4);
    memcpy(out + 4, from + 5, 2);
    memcpy(out + 6, from + 8, 2);
}

/* Appends the datasets of `set` to `d` (at *n): a value, or each of a list. */
static void iptc_values(json_object *set, struct dataset *d, size_t *n, char (*dates)[8],
                        bool *utf8)
{
    json_object_object_foreach(set, name, v)
    {
        const struct tag *t = tag_named(name);
        if (t == NULL || t->group != SETTAGS_IPTC || v == NULL) {
            continue;
        }
        size_t count = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
        for (size_t i = 0; i < count; i++) {
            json_object *one =
                json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
            size_t len = 0;
            const char *s = written(one, &len);
            if (s == NULL) {
                continue;
            }
            if (t->kind == IPTC_DATE) {
                date_digits(s, len, *dates);
                s = *dates++;
                len = 8;
            }
            for (size_t j = 0; j < len; j++) {
                *utf8 = *utf8 || (unsigned char)s[j] >= 0x80;
            }
            d[(*n)++] = (struct dataset){.record = SETTAGS_IPTC_RECORD,
                                         .id = t->id,
                                         .value = (const unsigned char *)s,
                                         .len = len};
        }
    }
}

static int put_dataset(struct buf *out, const struct dataset *d)
{
    unsigned char head[9] = {0x1c, (unsigned char)d->record, (unsigned char)d->id};
    size_t head_len = 5;
    if (d->len < 0x8000) {
        head[3] = (unsigned char)(d->len >> 8);
        head[4] = (unsigned char)d->len;
    } else {
        head[3] = 0x80;
        head[4] = 4;
        for (int i = 0; i < 4; i++) {
            head[5 + i] = (unsigned char)(d->len >> (24 - 8 * i));
        }
        head_len = 9;
    }
    return buf_append(out, head, head_len) < 0 || buf_append(out, d->value, d->len) < 0 ? -1 : 0;
}

/* Makes the datasets `d` (*n, the first `kept` of them the old block's) say UTF-8, as the values
 * set are: another CodedCharacterSet dropped, UTF-8's added; when the old text was Latin-1
 * (`latin1_len`, the old block's length, not 0), its values of record 2 made UTF-8 in *wide
 * (malloc'd: the caller frees it). Returns 0, or -1 when out of memory. */
static int as_utf8(struct dataset *d, size_t *n, size_t kept, size_t latin1_len,
                   unsigned char **wide)
{
    static const unsigned char coded_utf8[] = {0x1b, '%', 'G'};
    if (latin1_len > 0) {
        if ((*wide = malloc(2 * latin1_len)) == NULL) {
            return -1;
        }
        latin1_to_utf8(d, kept, *wide);
    }
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (!(d[i].record == 1 && d[i].id == 90 && !says_utf8(&d[i]))) {
            d[k++] = d[i];
        }
    }
    if (!has_dataset(d, k, 1, 90)) {
        d[k++] = (struct dataset){.record = 1, .id = 90, .value = coded_utf8, .len = 3};
    }
    *n = k;
    return 0;
}

#define IPTC_MAX_DATASETS 4096 /* datasets of an old block kept at most */

int settags_iptc(json_object *set, const unsigned char *old, size_t old_len, struct buf *out,
                 struct err *e)
{
    buf_reset(out);
    size_t cap = IPTC_MAX_DATASETS + SETTAGS_MAX_TAGS * SETTAGS_MAX_VALUES + 2, n = 0, kept = 0;
    struct dataset *d = calloc(cap, sizeof *d);
    char(*dates)[8] = calloc(SETTAGS_MAX_TAGS, sizeof *dates);
    if (d == NULL || dates == NULL) {
        free(d);
        free(dates);
        return err_set(e, "out of memory");
    }
    if (old == NULL || !iptc_parse(old, old_len, d, IPTC_MAX_DATASETS, &n)) {
        n = 0;
    }
    bool old_utf8 = iptc_utf8(d, n);
    for (size_t i = 0; i < n; i++) { /* the old datasets but those set */
        json_object *v;
        if (!(d[i].record == SETTAGS_IPTC_RECORD && set_names(set, SETTAGS_IPTC, d[i].id, &v))) {
            d[kept++] = d[i];
        }
    }
    n = kept;
    bool utf8 = false;
    iptc_values(set, d, &n, dates, &utf8);
    unsigned char *wide = NULL;
    if (utf8 && as_utf8(d, &n, kept, old_utf8 ? 0 : old_len, &wide) < 0) {
        free(d);
        free(dates);
        return err_set(e, "out of memory");
    }
    static const unsigned char version[] = {0, 4};
    bool record2 = false;
    for (size_t i = 0; i < n; i++) {
        record2 = record2 || d[i].record == SETTAGS_IPTC_RECORD;
    }
    if (record2 && !has_dataset(d, n, SETTAGS_IPTC_RECORD, 0)) {
        d[n++] = (struct dataset){
            .record = SETTAGS_IPTC_RECORD, .value = version, .len = sizeof version};
    }
    for (size_t i = 0; i < n; i++) {
        d[i].order = i;
    }
    qsort(d, n, sizeof *d, by_dataset);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = put_dataset(out, &d[i]);
    }
    if (rc == 0 && out->len > SETTAGS_IPTC_BLOCK) {
        rc = err_set(e, "the IPTC block would be %zu bytes, more than %d", out->len,
                     SETTAGS_IPTC_BLOCK);
    } else if (rc < 0) {
        rc = err_set(e, "out of memory");
    }
    free(d);
    free(dates);
    free(wide);
    if (rc < 0) {
        buf_reset(out);
    }
    return rc;
}

/* `n` bytes of IPTC text as a JSON string: UTF-8 kept, other bytes read as Latin-1, cut at
 * SETTAGS_READ_MAX bytes (of UTF-8, at a character's start). */
static json_object *iptc_text(const unsigned char *s, size_t n, bool utf8)
{
    char out[SETTAGS_READ_MAX + 4];
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8 ? utf8_seq(s + i, n - i) : 0;
        unsigned char latin[2] = {(unsigned char)(0xc0 | s[i] >> 6),
                                  (unsigned char)(0x80 | (s[i] & 0x3f))};
        const unsigned char *from = k == 0 && s[i] >= 0x80 ? latin : s + i;
        size_t w = k > 0 ? k : s[i] < 0x80 ? 1 : 2;
        if (o + w > SETTAGS_READ_MAX) {
            break;
        }
        memcpy(out + o, from, w);
        o += w;
        i += k > 0 ? k : 1;
    }
    return json_object_new_string_len(out, (int)o);
}

/* The IPTC tag of record 2's dataset `id`, or NULL. */
static const struct tag *iptc_tag(unsigned id)
{
    for (size_t k = 0; k < N_TAGS; k++) {
        if (tags[k].group == SETTAGS_IPTC && tags[k].id == id) {
            return &tags[k];
        }
    }
    return NULL;
}

/* Adds dataset `d` of tag `t` to `o`: a list's next value, or the first value of another. */
static void read_dataset(json_object *o, const struct tag *t, const struct dataset *d, bool utf8)
{
    json_object *have = NULL, *v;
    if (!t->repeated && json_object_object_get_ex(o, t->name, &have)) {
        return;
    }
    const char *s = (const char *)d->value;
    if (t->kind == IPTC_DATE && d->len == 8 && digits(s, 8)) {
        char date[11];
        snprintf(date, sizeof date, "%.4s:%.2s:%.2s", s, s + 4, s + 6);
        v = json_object_new_string(date);
    } else {
        v = iptc_text(d->value, d->len, utf8);
    }
    if (!t->repeated) {
        json_object_object_add(o, t->name, v);
        return;
    }
    if (!json_object_object_get_ex(o, t->name, &have)) {
        have = json_object_new_array();
        json_object_object_add(o, t->name, have);
    }
    json_object_array_add(have, v);
}

json_object *settags_iptc_read(const unsigned char *p, size_t len)
{
    json_object *o = json_object_new_object();
    struct dataset *d = calloc(IPTC_MAX_DATASETS, sizeof *d);
    size_t n = 0;
    if (o == NULL || d == NULL) {
        json_object_put(o);
        free(d);
        return NULL;
    }
    if (p != NULL) {
        (void)iptc_parse(p, len, d, IPTC_MAX_DATASETS, &n); /* those before a broken one */
    }
    for (size_t i = 0; i < n; i++) {
        while (d[i].len > 0 && d[i].value[d[i].len - 1] == '\0') {
            d[i].len--; /* the padding some writers leave */
        }
    }
    bool utf8 = iptc_utf8(d, n);
    for (size_t i = 0; i < n; i++) {
        const struct tag *t = d[i].record == SETTAGS_IPTC_RECORD ? iptc_tag(d[i].id) : NULL;
        if (t != NULL) {
            read_dataset(o, t, &d[i], utf8);
        }
    }
    free(d);
    return o;
}

/* ---- Photoshop resources ---- */

#define PS_IPTC        0x0404 /* the IPTC-NAA resource */
#define PS_IPTC_DIGEST 0x0425 /* an MD5 of it: dropped with it, as it would no longer match */

static int put_resource(struct buf *out, const char *sig, unsigned id, const unsigned char *name,
                        size_t name_len, const unsigned char *data, size_t len)
{
    unsigned char head[6] = {(unsigned char)sig[0], (unsigned char)sig[1],    (unsigned char)sig[2],
                             (unsigned char)sig[3], (unsigned char)(id >> 8), (unsigned char)id};
    unsigned char size[4], zero = 0;
    put32(size, (uint32_t)len, true);
    int rc = buf_append(out, head, sizeof head);
    rc = rc < 0 ? rc : buf_append(out, name, name_len);
    rc = rc < 0 || name_len % 2 == 0 ? rc : buf_append(out, &zero, 1);
    rc = rc < 0 ? rc : buf_append(out, size, sizeof size);
    rc = rc < 0 ? rc : buf_append(out, data, len);
    return rc < 0 || len % 2 == 0 ? rc : buf_append(out, &zero, 1);
}

/* The signature of the resource at `p` if it is one a Photoshop block holds: "8BIM", or another
 * that Adobe's programs also wrote there (ImageReady's "MeSa", PhotoDeluxe's "PHUT", "AgHg",
 * "DCSR"); else NULL, which ends the block. */
static const char *resource_signature(const unsigned char *p)
{
    static const char *const sigs[] = {"8BIM", "MeSa", "PHUT", "AgHg", "DCSR"};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        if (memcmp(p, sigs[k], 4) == 0) {
            return sigs[k];
        }
    }
    return NULL;
}

int settags_8bim(const unsigned char *old, size_t old_len, const unsigned char *iptc,
                 size_t iptc_len, struct buf *out, struct err *e)
{
    static const unsigned char no_name[] = {0};
    buf_reset(out);
    size_t i = 0;
    int rc = 0;
    bool placed = false;
    /* i passes old_len by one when the last resource's padding byte is missing */
    const char *sig;
    while (old != NULL && rc == 0 && i < old_len && old_len - i >= 12 &&
           (sig = resource_signature(old + i)) != NULL) {
        unsigned id = get16(old + i + 4, true);
        size_t name_len = 1 + (size_t)old[i + 6]; /* a Pascal string, padded to even */
        size_t at = i + 6 + name_len + (name_len & 1);
        if (at > old_len || old_len - at < 4) {
            break;
        }
        size_t len = get32(old + at, true);
        if (old_len - at - 4 < len) {
            break;
        }
        bool photoshop = strcmp(sig, "8BIM") == 0; /* the ids of the others mean other things */
        if (photoshop && id == PS_IPTC_DIGEST) {
            rc = 0;
        } else if (!photoshop || id != PS_IPTC) {
            rc = put_resource(out, sig, id, old + i + 6, name_len, old + at + 4, len);
        } else if (!placed && iptc_len > 0) {
            rc = put_resource(out, sig, id, old + i + 6, name_len, iptc, iptc_len);
        }
        placed = placed || (photoshop && id == PS_IPTC);
        i = at + 4 + len + (len & 1);
    }
    if (rc == 0 && !placed && iptc_len > 0) {
        rc = put_resource(out, "8BIM", PS_IPTC, no_name, sizeof no_name, iptc, iptc_len);
    }
    if (rc < 0) {
        buf_reset(out);
        return err_set(e, "out of memory");
    }
    return 0;
}
