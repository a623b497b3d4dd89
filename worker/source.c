#include "source.h"

#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "hash.h"
#include "image.h"
#include "log.h"
#include "ops.h"
#include "settags.h"
#include "sniff.h"
#include "utf8.h"

/* ---------------------------------------------------------------- references */

struct src_ref {
    char *identifier;
    MagickWand *image; /* as it was saved (stripped as the save said), before encoding */
    struct buf bytes;  /* its encoding: for hash, filesize and move_original */
};

struct src_refs {
    struct src_ref *items; /* grown on the first add: most jobs keep no image */
    size_t n, cap;
};

struct src_refs *src_refs_create(void)
{
    return calloc(1, sizeof(struct src_refs));
}

void src_refs_destroy(struct src_refs *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].identifier);
        DestroyMagickWand(r->items[i].image);
        buf_finish(&r->items[i].bytes);
    }
    free(r->items);
    free(r);
}

static struct src_ref *ref_find(const struct src_refs *r, const char *identifier)
{
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        if (strcmp(r->items[i].identifier, identifier) == 0) {
            return (struct src_ref *)&r->items[i];
        }
    }
    return NULL;
}

/* Room for more references (4, then twice as many, up to SRC_MAX_REFS). */
static int grow(struct src_refs *r)
{
    size_t cap = r->cap == 0 ? 4 : r->cap * 2;
    cap = cap > SRC_MAX_REFS ? SRC_MAX_REFS : cap;
    struct src_ref *p = realloc(r->items, cap * sizeof *p);
    if (p == NULL) {
        return -1;
    }
    r->items = p;
    r->cap = cap;
    return 0;
}

int src_refs_add(struct src_refs *r, const char *identifier, MagickWand *image, const void *data,
                 size_t len, struct err *e)
{
    MagickWand *copy = CloneMagickWand(image); /* shares the pixels until one side changes */
    struct buf bytes;
    buf_init(&bytes, 0);
    if (copy == NULL || buf_append(&bytes, data, len) < 0) {
        if (copy != NULL) {
            DestroyMagickWand(copy);
        }
        buf_finish(&bytes);
        return err_set(e, "out of memory");
    }
    struct src_ref *ref = ref_find(r, identifier);
    if (ref == NULL) {
        char *id = r->n < SRC_MAX_REFS ? strdup(identifier) : NULL;
        if (id == NULL || (r->n == r->cap && grow(r) < 0)) {
            free(id);
            DestroyMagickWand(copy);
            buf_finish(&bytes);
            return r->n == SRC_MAX_REFS
                       ? err_set(e, "too many pre_process images (at most %d)", SRC_MAX_REFS)
                       : err_set(e, "out of memory");
        }
        ref = &r->items[r->n++];
        ref->identifier = id;
        ref->image = NULL;
        buf_init(&ref->bytes, 0);
    }
    if (ref->image != NULL) {
        DestroyMagickWand(ref->image);
    }
    buf_finish(&ref->bytes);
    ref->image = copy;
    ref->bytes = bytes;
    return 0;
}

/* ---------------------------------------------------------------- loading */

/* {"name": "canvas", "width", "height", "color"}: a solid image. */
static MagickWand *new_canvas(json_object *src, long max_pixels, struct err *e)
{
    const char *fn = "canvas";
    long w, h;
    if (job_param_long(src, fn, "width", SRC_CANVAS_SIDE, 1, 65535, &w, e) < 0 ||
        job_param_long(src, fn, "height", SRC_CANVAS_SIDE, 1, 65535, &h, e) < 0) {
        return NULL;
    }
    if (w > max_pixels / h) {
        err_set(e, "canvas of %ldx%ld is more than the limit of %ld pixels (PIXQ_MAX_PIXELS)", w, h,
                max_pixels);
        return NULL;
    }
    PixelWand *color = op_color(src, fn, "color", SRC_CANVAS_COLOR, e);
    if (color == NULL) {
        return NULL;
    }
    MagickWand *wand = img_solid(w, h, color, e);
    DestroyPixelWand(color);
    return wand;
}

/* The kind of an object src: "s3", "canvas"... ("" if it has no name). */
static const char *src_kind(json_object *src)
{
    json_object *name = NULL;
    if (!json_object_object_get_ex(src, "name", &name) ||
        !json_object_is_type(name, json_type_string)) {
        return "";
    }
    return json_object_get_string(name);
}

/* The image a pre_process job saved as `identifier` into `out`: a copy of it, and its encoded
 * bytes. Returns 0, or -1 with the reason. */
static int src_reference(const struct src_loader *l, const char *identifier, struct src_image *out,
                         struct err *e)
{
    const struct src_ref *ref = ref_find(l->refs, identifier);
    if (ref == NULL) {
        return err_set(e, "Image reference '%.*s' not found. Preprocessing probably failed.",
                       (int)utf8_cut(identifier, 200), identifier);
    }
    out->wand = CloneMagickWand(ref->image);
    if (out->wand == NULL || buf_append(&out->bytes, ref->bytes.data, ref->bytes.len) < 0) {
        return err_set(e, "out of memory");
    }
    /* the format of the bytes (pixq's own encoding), for a move_original of them: copied as
     * they are with their content type, as a fetched source's are */
    struct sniff_info si;
    sniff_image(out->bytes.data, out->bytes.len, &si);
    out->probe.format = si.format;
    out->probe.name = si.name;
    return 0;
}

/* Fills out->bytes for a URL or s3 src. */
static int src_bytes(const struct src_loader *l, json_object *src, struct buf *out, struct err *e)
{
    const char *s = json_object_is_type(src, json_type_string) ? json_object_get_string(src) : NULL;
    if (s == NULL && !json_object_is_type(src, json_type_object)) {
        return err_set(e, "src must be a URL, \"&identifier\" or an object");
    }
    if (s == NULL && strcmp(src_kind(src), "s3") != 0) {
        return err_set(e, "src of type '%.100s' is not supported", src_kind(src));
    }
    if (l->fetch == NULL) {
        return err_set(e, "cannot load '%.200s' here", s != NULL ? s : "s3");
    }
    return l->fetch(l->fetch_user, src, out, e);
}

int src_fetch(void *user, json_object *src, struct buf *out, struct err *e)
{
    const char *s = json_object_is_type(src, json_type_string) ? json_object_get_string(src) : NULL;
    if (s != NULL && s[0] == '&') {
        return err_set(e, "src must be a URL or an s3 object, not an image reference");
    }
    return src_bytes(user, src, out, e);
}

/* Puts out->bytes through the image guard: out->wand holds the headers until src_decode(). */
static int decode(const struct src_loader *l, struct src_image *out, struct err *e)
{
    out->wand = img_probe(out->bytes.data, out->bytes.len, l->max_pixels, &out->probe, e);
    if (out->wand == NULL) {
        return -1;
    }
    out->width = out->probe.width;
    out->height = out->probe.height;
    out->pending = !out->probe.decoded;
    return 0;
}

/* libjpeg gave another size than the plan's: decode in full instead. */
static MagickWand *plan_missed(struct src_image *im, MagickWand *w, const struct shrink_plan *plan,
                               struct err *e)
{
    LOG_WARN("shrink_on_load_missed", "source=%ldx%ld hint=%ldx%ld expected=%ldx%ld got=%zux%zu",
             im->width, im->height, plan->hint_w, plan->hint_h, plan->width, plan->height,
             MagickGetImageWidth(w), MagickGetImageHeight(w));
    DestroyMagickWand(w);
    return img_read(im->bytes.data, im->bytes.len, &im->probe, 0, 0, e);
}

int src_decode(struct src_image *im, const struct shrink_plan *plan, struct err *e)
{
    if (!im->pending) {
        return 0;
    }
    /* libjpeg takes ImageMagick's "jpeg:size" hint, libwebp the size itself */
    bool exact = im->probe.format == SNIFF_WEBP;
    long hw = plan == NULL ? 0 : exact ? plan->width : plan->hint_w;
    long hh = plan == NULL ? 0 : exact ? plan->height : plan->hint_h;
    MagickWand *w = img_read(im->bytes.data, im->bytes.len, &im->probe, hw, hh, e);
    /* a decoder that did not shrink at all (a PNG pngshrink declines, or with PIXQ_PNG_SHRINK=0)
     * leaves the image to the box filter of process.c: no second decode */
    bool full = w != NULL && (long)MagickGetImageWidth(w) == im->probe.width &&
                (long)MagickGetImageHeight(w) == im->probe.height;
    if (w != NULL && plan != NULL && !full &&
        ((long)MagickGetImageWidth(w) != plan->width ||
         (long)MagickGetImageHeight(w) != plan->height)) {
        w = plan_missed(im, w, plan, e);
    }
    if (w == NULL) {
        return -1;
    }
    DestroyMagickWand(im->wand);
    im->wand = w;
    im->pending = false;
    im->width = im->probe.width; /* a TIFF's stack may have fallen back to its first page */
    im->height = im->probe.height;
    return 0;
}

int src_open_bytes(const struct src_loader *l, struct buf *bytes, struct src_image *out,
                   struct err *e)
{
    memset(out, 0, sizeof *out);
    out->bytes = *bytes;
    out->fetched = true;
    buf_init(bytes, 0);
    return decode(l, out, e);
}

int src_open(const struct src_loader *l, json_object *src, struct src_image *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->bytes, 0);
    if (src == NULL) {
        return err_set(e, "No source for processing");
    }
    const char *s = json_object_is_type(src, json_type_string) ? json_object_get_string(src) : NULL;
    bool canvas =
        json_object_is_type(src, json_type_object) && strcmp(src_kind(src), "canvas") == 0;
    if (canvas || (s != NULL && s[0] == '&')) {
        out->wand = canvas ? new_canvas(src, l->max_pixels, e) : NULL;
        if ((canvas && out->wand == NULL) || (!canvas && src_reference(l, s + 1, out, e) < 0)) {
            return -1;
        }
        out->width = (long)MagickGetImageWidth(out->wand);
        out->height = (long)MagickGetImageHeight(out->wand);
        return 0;
    }
    if (src_bytes(l, src, &out->bytes, e) < 0) {
        return -1;
    }
    out->fetched = true;
    return decode(l, out, e);
}

size_t src_shown(json_object *src, char out[static SRC_SHOWN_MAX + 2])
{
    if (json_object_is_type(src, json_type_string)) {
        cfg_redact_url(json_object_get_string(src), out, SRC_SHOWN_MAX + 2);
    } else {
        snprintf(out, SRC_SHOWN_MAX + 2, "%s",
                 json_object_to_json_string_ext(src, JSON_C_TO_STRING_PLAIN));
    }
    if (strlen(out) <= SRC_SHOWN_MAX) {
        return strlen(out);
    }
    size_t cut = utf8_cut(out, SRC_SHOWN_MAX - 3);
    memcpy(out + cut, "...", 4);
    return cut;
}

bool src_quoted_in(json_object *src, const struct err *e)
{
    if (!json_object_is_type(src, json_type_string)) {
        return false;
    }
    char shown[SRC_SHOWN_MAX + 2];
    shown[src_shown(src, shown)] = '\0'; /* its own bytes, without the cut's "..." */
    return strstr(e->msg, shown) != NULL;
}

int src_blame(json_object *src, const struct src_image *im, struct err *e)
{
    if (!im->fetched || src == NULL || src_quoted_in(src, e)) {
        return -1;
    }
    char shown[SRC_SHOWN_MAX + 2];
    src_shown(src, shown);
    return err_wrap(e, "Failed to load image at '%s'", shown);
}

json_object *src_list(json_object *v)
{
    if (json_object_is_type(v, json_type_array)) {
        json_object *out = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object_array_add(out, json_object_get(json_object_array_get_idx(v, i)));
        }
        return out;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    json_object *out = json_object_new_array();
    for (const char *s = json_object_get_string(v); *s != '\0';) {
        size_t n = strcspn(s, ","), skip = 0;
        while (skip < n && isspace((unsigned char)s[skip])) { /* as at the end: \n too */
            skip++;
        }
        size_t len = n - skip;
        while (len > 0 && isspace((unsigned char)s[skip + len - 1])) {
            len--;
        }
        if (len > 0) {
            json_object_array_add(out, json_object_new_string_len(s + skip, (int)len));
        }
        s += s[n] == ',' ? n + 1 : n;
    }
    return out;
}

void src_image_finish(struct src_image *im)
{
    if (im->wand != NULL) {
        im->wand = DestroyMagickWand(im->wand);
    }
    buf_finish(&im->bytes);
}

MagickWand *src_load(void *user, json_object *src, struct err *e)
{
    struct src_image im;
    if (src_open(user, src, &im, e) < 0 || src_decode(&im, NULL, e) < 0) {
        src_image_finish(&im);
        return NULL;
    }
    MagickWand *w = im.wand;
    im.wand = NULL;
    src_image_finish(&im);
    return w;
}

/* ---------------------------------------------------------------- original_meta */

/* "52/1, 31/1, 1234/100" (degrees, minutes, seconds as rationals) and "N"/"S" -> decimal. */
static int gps_decimal(const char *dms, const char *ref, double *out)
{
    double part[3] = {0, 0, 0};
    const char *p = dms;
    int i = 0;
    for (; i < 3 && *p != '\0'; i++) {
        char *end;
        double num = strtod(p, &end), den = 1;
        if (end == p) {
            break;
        }
        p = end;
        if (*p == '/') {
            den = strtod(p + 1, &end);
            p = end;
        }
        part[i] = den != 0 ? num / den : 0;
        p += strspn(p, ", ");
    }
    double d = part[0] + part[1] / 60 + part[2] / 3600;
    if (i == 0 || !isfinite(d)) {
        return -1;
    }
    *out = ref != NULL && (ref[0] == 'S' || ref[0] == 'W') ? -d : d;
    return 0;
}

/* The value of an EXIF property the read made ("exif:DateTime"), or NULL (img_property_made():
 * ImageMagick walks the EXIF again for a tag asked for by name that it lacks). Borrowed. */
static const char *exif_value(MagickWand *w, const char *name)
{
    const char *v = img_property_made(w, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* One GPS coordinate in decimal degrees into *out: 0, or -1 when the EXIF has none. */
static int gps_coordinate(MagickWand *w, const char *tag, const char *ref_tag, double *out)
{
    const char *dms = exif_value(w, tag), *ref = exif_value(w, ref_tag);
    return dms != NULL ? gps_decimal(dms, ref, out) : -1;
}

/* lat and lng, both or neither, as Blitline's worker wrote them: half a position is none. */
static void add_gps(json_object *meta, MagickWand *w)
{
    double lat, lng;
    if (gps_coordinate(w, "exif:GPSLatitude", "exif:GPSLatitudeRef", &lat) == 0 &&
        gps_coordinate(w, "exif:GPSLongitude", "exif:GPSLongitudeRef", &lng) == 0) {
        json_object_object_add(meta, "lat", json_object_new_double(lat));
        json_object_object_add(meta, "lng", json_object_new_double(lng));
    }
}

/* The days of month `mo` (1 to 12) of year `y`. */
static int month_days(int y, int mo)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return mo == 2 && leap ? 29 : days[mo - 1];
}

/* EXIF's "2014:08:02 20:17:55" as Blitline's iso_date_created, "2014-08-02T20:17:55.0000+00:00"
 * (EXIF has no zone: Blitline wrote +00:00); false when the date is not in that form. */
static bool iso_date(const char *exif, char *out, size_t cap)
{
    int y, mo, d, h, mi, s;
    char tail;
    /* a day no month has (30 February, 31 April): a camera's clock set wrong, or a tool's
     * error, not a time (d > 31 stays before month_days(): it bounds d for GCC's check of the
     * snprintf() below, -Wformat-truncation) */
    if (sscanf(exif, "%4d:%2d:%2d %2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &tail) != 6 || mo < 1 ||
        mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || y < 1 || h < 0 || mi < 0 ||
        s < 0 || d > month_days(y, mo)) {
        return false;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.0000+00:00", y, mo, d, h, mi, s);
    return true;
}

/* date_created (and from v 1.20, iso_date_created), lat, lng. */
static void add_exif_basics(json_object *meta, MagickWand *w, double v)
{
    const char *date = exif_value(w, "exif:DateTimeOriginal");
    if (date == NULL) {
        date = exif_value(w, "exif:DateTime");
    }
    char iso[64];
    if (date != NULL) {
        json_object_object_add(meta, "date_created", json_object_new_string(date));
        if (v > 1.19 && iso_date(date, iso, sizeof iso)) {
            json_object_object_add(meta, "iso_date_created", json_object_new_string(iso));
        }
    }
    add_gps(meta, w);
}

/* Every exif:* property, as made by the caller's one walk of the EXIF (ReadImage() makes them all
 * but deletes Orientation and the resolution once it has read them): into `obj` as name -> value
 * and/or into `arr` as [name, value], in the order of their names. */
static void add_exif_all(MagickWand *w, json_object *obj, json_object *arr)
{
    Image *im = GetImageFromMagickWand(w);
    size_t n = 0;
    if (im != NULL) {
        ResetImagePropertyIterator(im);
    }
    for (const char *key = im != NULL ? GetNextImageProperty(im) : NULL;
         key != NULL && n < SRC_EXIF_MAX_ITEMS; key = GetNextImageProperty(im)) {
        const char *v = strncmp(key, "exif:", 5) == 0 ? GetImageProperty(im, key) : NULL;
        if (v == NULL) {
            continue;
        }
        n++;
        const char *name = key + strlen("exif:");
        if (obj != NULL) {
            json_object_object_add(obj, name, json_object_new_string(v));
        }
        if (arr != NULL) {
            json_object *pair = json_object_new_array();
            json_object_array_add(pair, json_object_new_string(name));
            json_object_array_add(pair, json_object_new_string(v));
            json_object_array_add(arr, pair);
        }
    }
}

/* CRC-32 (IEEE 802.3, as zlib's crc32()). */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
        }
    }
    return c ^ 0xffffffffu;
}

static json_object *md5_hex(const void *p, size_t n)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (EVP_Digest(p, n, d, &len, EVP_md5(), NULL) != 1) {
        return NULL;
    }
    hash_hex(d, len, hex);
    return json_object_new_string(hex);
}

/* original_meta.hash as Blitline gave it: md5/sha256 hex, crc32 an integer; the name in any
 * case, and none for a name it did not know (its worker left the hash out, the job going on). */
static int add_hash(json_object *meta, const char *kind, const struct buf *b, struct err *e)
{
    const unsigned char *p = (const unsigned char *)(b->data != NULL ? b->data : "");
    json_object *v = NULL;
    if (strcasecmp(kind, "md5") == 0) {
        v = md5_hex(p, b->len);
    } else if (strcasecmp(kind, "sha256") == 0) {
        char hex[HASH_SHA256_HEX];
        hash_sha256_hex(p, b->len, hex);
        v = json_object_new_string(hex);
    } else if (strcasecmp(kind, "crc32") == 0) {
        v = json_object_new_int64((int64_t)crc32_of(p, b->len));
    } else {
        char q[80];
        LOG_INFO("hash_left_out", "reason=unknown_name hash=%s", log_quote(kind, q, sizeof q));
        return 0;
    }
    if (v == NULL) {
        return err_set(e, "cannot compute the %s hash", kind);
    }
    json_object_object_add(meta, "hash", v);
    return 0;
}

/* A resolution as Blitline wrote it: a whole number as an integer (72), else the number. */
static json_object *density_number(double d)
{
    if (d == floor(d) && fabs(d) < 1e15) {
        return json_object_new_int64((int64_t)d);
    }
    return json_object_new_double(d);
}

/* original_meta.density_info, as Blitline returned it with get_exif: the source's resolution
 * ({"density_x": 72, "density_y": 72, "units": "PixelsPerInch"}), 72 where it names none (as
 * ImageMagick reports it, and as an output's extended_metadata density). */
static json_object *density_info(MagickWand *w)
{
    double x = 0, y = 0;
    MagickGetImageResolution(w, &x, &y);
    ResolutionType units = MagickGetImageUnits(w);
    json_object *info = json_object_new_object();
    json_object_object_add(info, "density_x", density_number(x > 0 ? x : 72));
    json_object_object_add(info, "density_y", density_number(y > 0 ? y : 72));
    json_object_object_add(info, "units",
                           json_object_new_string(units == PixelsPerInchResolution ? "PixelsPerInch"
                                                  : units == PixelsPerCentimeterResolution
                                                      ? "PixelsPerCentimeter"
                                                      : "Undefined"));
    return info;
}

json_object *src_describe(const struct job *j, const struct src_image *im, struct err *e)
{
    json_object *meta = json_object_new_object();
    json_object_object_add(meta, "width", json_object_new_int64(im->width));
    json_object_object_add(meta, "height", json_object_new_int64(im->height));
    add_exif_basics(meta, im->wand, j->v);
    if (j->get_exif || j->extended_metadata) { /* ImageMagick walks the EXIF again, once */
        MagickRelinquishMemory(MagickGetImageProperty(im->wand, "exif:*"));
    }
    if (j->get_exif) {
        json_object *exif = json_object_new_object();
        add_exif_all(im->wand, exif, NULL);
        json_object_object_add(meta, "original_exif", exif);
        json_object_object_add(meta, "density_info", density_info(im->wand));
        json_object_object_add(meta, "filesize", json_object_new_int64((int64_t)im->bytes.len));
    }
    if (j->extended_metadata) {
        json_object *all = json_object_new_array();
        add_exif_all(im->wand, NULL, all);
        json_object_object_add(meta, "all_exif", all);
        json_object_object_add(meta, "filesize", json_object_new_int64((int64_t)im->bytes.len));
    }
    if (j->include_iptc) {
        size_t n = 0;
        unsigned char *iptc = MagickGetImageProfile(im->wand, "iptc", &n);
        json_object *fields = settags_iptc_read(iptc, n);
        MagickRelinquishMemory(iptc);
        json_object_object_add(meta, "iptc", fields != NULL ? fields : json_object_new_object());
    }
    if (j->hash != NULL && add_hash(meta, j->hash, &im->bytes, e) < 0) {
        json_object_put(meta);
        return NULL;
    }
    return meta;
}
