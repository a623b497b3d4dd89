#include "image.h"

#include <ctype.h>
#include <lcms2.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "exifcap.h"
#include "jpegdc.h"
#include "log.h"
#include "metaguard.h"
#include "pngshrink.h"
#include "resize.h"
#include "settags.h"
#include "shrink.h"
#include "tmpdir.h"
#include "webp.h"

#define MIB (1024ULL * 1024ULL)

/* What pixq's ImageMagick may read and write; every other coder and module is refused. */
struct coder {
    const char *magick;       /* the coder, as ImageMagick names the format */
    const char *module;       /* the module that holds it */
    enum sniff_format source; /* the source format it reads; SNIFF_OTHER: never read */
    bool output;              /* pixq writes it (see `formats` below) */
};

static const struct coder coders[] = {
    {"JPEG", "JPEG", SNIFF_JPEG, true},  {"PNG", "PNG", SNIFF_PNG, true},
    {"GIF", "GIF", SNIFF_GIF, true},     {"WEBP", "WEBP", SNIFF_WEBP, true},
    {"TIFF", "TIFF", SNIFF_TIFF, true},  {"HEIC", "HEIC", SNIFF_HEIC, false},
    {"AVIF", "HEIC", SNIFF_AVIF, false}, {"BMP", "BMP", SNIFF_BMP, true},
};

#define N_CODERS (sizeof coders / sizeof coders[0])

/* The process's image guard, set once by img_start(). */
static struct {
    bool started;
    struct img_config cfg;
    char allowed[IMG_FORMATS_MAX]; /* "jpeg, png, gif, webp", for messages */
    int tmpdirs_swept;             /* dead workers' temporary directories removed (tmpdir.h) */
} guard;

/* ---------------------------------------------------------------- deadlines */

/* ImageMagick's progress monitor: carry on while the deadline (monotonic ms, stored in the
 * pointer itself) has not passed. Decoders, operations and encoders call it row by row. */
static MagickBooleanType before_deadline(const char *text, const MagickOffsetType offset,
                                         const MagickSizeType span, void *deadline)
{
    return clock_mono_ms() < (long)(intptr_t)deadline ? MagickTrue : MagickFalse;
}

static void *deadline_in(long ms)
{
    return (void *)(intptr_t)(clock_mono_ms() + ms);
}

/* Whether the wand's current image carries a deadline that has passed. (A decoder or encoder
 * stopped by the monitor may still report success, with half an image: callers check this.) */
static bool past_deadline(MagickWand *w)
{
    if (w == NULL || MagickGetNumberImages(w) == 0) {
        return false;
    }
    const Image *im = GetImageFromMagickWand(w);
    return im != NULL && im->progress_monitor == before_deadline &&
           clock_mono_ms() >= (long)(intptr_t)im->client_data;
}

bool img_past_deadline(MagickWand *w)
{
    return past_deadline(w);
}

long img_time_left_ms(MagickWand *w)
{
    if (w == NULL || MagickGetNumberImages(w) == 0) {
        return -1;
    }
    const Image *im = GetImageFromMagickWand(w);
    if (im == NULL || im->progress_monitor != before_deadline) {
        return -1;
    }
    long left = (long)(intptr_t)im->client_data - clock_mono_ms();
    return left > 0 ? left : 0;
}

long img_time_limit_s(void)
{
    return guard.cfg.time_s;
}

/* Whether `s` is the place ImageMagick names after " @ ": a severity, its file, its function and
 * a line ("error/jpeg.c/JPEGProgressHandler/361"), nothing after it. */
static bool magick_place(const char *s)
{
    int slashes = 0;
    for (; *s != '\0'; s++) {
        if (*s == ' ') {
            return false;
        }
        slashes += *s == '/';
    }
    return slashes >= 3 && isdigit((unsigned char)s[-1]);
}

const char *img_magick_words(const char *text, char *out, size_t cap)
{
    snprintf(out, cap, "%s", text);
    char *at = NULL;
    for (char *p = strstr(out, " @ "); p != NULL; p = strstr(p + 1, " @ ")) {
        at = p; /* the last one */
    }
    if (at != NULL && magick_place(at + 3)) {
        *at = '\0';
    }
    size_t n = strlen(out);
    if (n >= 3 && strcmp(out + n - 3, " `'") == 0) {
        out[n - 3] = '\0';
    }
    return out;
}

int img_fail(MagickWand *w, const char *what, struct err *e)
{
    ExceptionType severity = UndefinedException;
    char *text = w != NULL ? MagickGetException(w, &severity) : NULL;
    char words[ERR_MSG_MAX];
    if (past_deadline(w)) {
        err_set(e, "%s: took longer than the limit of %ld s (PIXQ_MAGICK_TIME_S)", what,
                guard.cfg.time_s);
    } else if (text != NULL && text[0] != '\0') {
        err_set(e, "%s: %s", what, img_magick_words(text, words, sizeof words));
    } else {
        err_set(e, "%s failed", what);
    }
    if (text != NULL) {
        MagickRelinquishMemory(text);
    }
    if (w != NULL) {
        MagickClearException(w);
    }
    return -1;
}

/* ---------------------------------------------------------------- configuration */

/* Copies the list item [s, s + n) without surrounding blanks into `out`; false if too long. */
static bool list_item(const char *s, size_t n, char *out, size_t cap)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n >= cap) {
        return false;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

int img_formats_parse(const char *list, unsigned *out, struct err *e)
{
    unsigned bits = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char name[16];
        enum sniff_format f = SNIFF_OTHER;
        if (list_item(p, n, name, sizeof name) && name[0] == '\0') {
            p += n + (p[n] == ',' ? 1 : 0); /* an empty item: "jpeg,,png" */
            continue;
        }
        if (n < sizeof name) {
            f = sniff_format_named(name);
        }
        if (f == SNIFF_OTHER) {
            return err_set(e, "PIXQ_IMAGE_FORMATS: unknown format '%.*s' (known: %s)",
                           (int)(n < 40 ? n : 40), p,
                           "jpeg, png, gif, webp, tiff, heic, avif, bmp");
        }
        bits |= 1u << f;
        p += n + (p[n] == ',' ? 1 : 0);
    }
    if (bits == 0) {
        return err_set(e, "PIXQ_IMAGE_FORMATS: no format given");
    }
    *out = bits;
    return 0;
}

int img_config_from(const struct cfg *c, struct img_config *out, struct err *e)
{
    unsigned formats;
    if (img_formats_parse(c->image_formats, &formats, e) < 0) {
        return -1;
    }
    *out = (struct img_config){
        .formats = formats,
        .max_pixels = c->max_pixels,
        .max_frames = c->max_frames,
        .memory_mb = c->magick_memory_mb,
        .map_mb = c->magick_map_mb,
        .disk_mb = c->magick_disk_mb,
        .time_s = c->magick_time_s,
        .shrink_on_load = c->shrink_on_load,
        .jpeg_dc = c->jpeg_dc,
        .png_shrink = c->png_shrink,
        .fast_resize = c->fast_resize,
        .exif_max_values = c->exif_max_values,
        .metadata_max_mb = c->metadata_max_mb,
        .xmp_max_elements = c->xmp_max_elements,
    };
    return 0;
}

static bool reads(const struct coder *c, unsigned formats)
{
    return c->source != SNIFF_OTHER && (formats & (1u << c->source)) != 0;
}

/* "jpeg, png, gif, webp": the allowed formats, for messages. */
static void allowed_text(unsigned formats, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int f = SNIFF_JPEG; f < SNIFF_N_FORMATS; f++) {
        if ((formats & (1u << f)) != 0 && len < cap) {
            int n = snprintf(out + len, cap - len, "%s%s", len > 0 ? ", " : "",
                             sniff_format_name((enum sniff_format)f));
            len += n > 0 ? (size_t)n : 0;
        }
    }
}

/* ---------------------------------------------------------------- start-up */

/* Read rights on ImageMagick's own configuration directories: it reads some files there lazily,
 * after the path policy is set (type.xml includes the other type-*.xml, the font lists). Returns
 * 0 or -1 (out of memory). */
static int policy_config_paths(struct buf *b)
{
    ExceptionInfo *x = AcquireExceptionInfo();
    LinkedListInfo *paths = GetConfigurePaths("type.xml", x);
    int rc = 0;
    if (paths != NULL) {
        ResetLinkedListIterator(paths);
        const char *p = GetNextValueInLinkedList(paths);
        for (; rc == 0 && p != NULL; p = GetNextValueInLinkedList(paths)) {
            if (p[0] == '/' && strpbrk(p, "\"<>&*?[]{}") == NULL) {
                rc = buf_printf(b, "<policy domain=\"path\" rights=\"read\" pattern=\"%s*\"/>", p);
            }
        }
        DestroyLinkedList(paths, RelinquishMagickMemory);
    }
    DestroyExceptionInfo(x);
    return rc;
}

/* The path rule for ImageMagick's own files: its disk pixel cache, in this process's directory
 * (tmpdir.h), or where ImageMagick puts it when there is none. Debian's 6.9.11.60+dfsg-1.6+deb12u16
 * took the pixel cache of 6.9.13, which asks the policy before it opens a cache file, and the
 * rule "path: none" above then refused every image larger than PIXQ_MAGICK_MEMORY_MB and
 * PIXQ_MAGICK_MAP_MB ("unable to open file .../magick-..."). Named as it is and, when a link is
 * on the way, as its real path, which is what the policy is asked about in newer releases. A
 * directory whose name the policy cannot hold (quotes, brackets, wildcards) gets no rule: the
 * start says so, and only images cached on disk fail. */
static int policy_tmpdir(struct buf *b, bool *unusable)
{
    const char *dir = tmpdir_path()[0] != '\0' ? tmpdir_path() : tmpdir_base();
    char real[PATH_MAX];
    const char *names[2] = {dir, realpath(dir, real) != NULL ? real : dir};
    *unusable = false;
    for (size_t i = 0; i < 2; i++) {
        if (i == 1 && strcmp(names[1], names[0]) == 0) {
            break;
        }
        if (names[i][0] != '/' || strpbrk(names[i], "\"<>&*?[]{}\\") != NULL) {
            *unusable = true;
            continue;
        }
        if (buf_printf(b,
                       "<policy domain=\"path\" rights=\"read|write\" pattern=\"%s%s"
                       "magick-*\"/>",
                       names[i], names[i][strlen(names[i]) - 1] == '/' ? "" : "/") < 0) {
            return -1;
        }
    }
    return 0;
}

/* "read|write", "read", "write" or NULL (none). */
static const char *rights_of(bool read, bool write)
{
    return read && write ? "read|write" : read ? "read" : write ? "write" : NULL;
}

/* Whether coders[i] is the first coder of a module some coder of which pixq uses (HEIC holds
 * HEIC and AVIF). Loading a module asks for read and write rights whatever it is loaded for:
 * the coder rules say what may be read and written. */
static bool module_needed(size_t i, unsigned formats)
{
    bool needed = false;
    for (size_t k = 0; k < N_CODERS; k++) {
        if (strcmp(coders[k].module, coders[i].module) != 0) {
            continue;
        }
        if (k < i) {
            return false;
        }
        needed = needed || reads(&coders[k], formats) || coders[k].output;
    }
    return needed;
}

/* The `coder` and `module` rules: nothing, then what pixq reads and writes (the last matching
 * rule wins, and these come after policy.xml's). */
static int policy_coders(struct buf *b, unsigned formats)
{
    int rc = buf_puts(b, "<policy domain=\"coder\" rights=\"none\" pattern=\"*\"/>"
                         "<policy domain=\"module\" rights=\"none\" pattern=\"*\"/>");
    for (size_t i = 0; rc == 0 && i < N_CODERS; i++) {
        const char *coder = rights_of(reads(&coders[i], formats), coders[i].output);
        if (coder != NULL) {
            rc = buf_printf(b, "<policy domain=\"coder\" rights=\"%s\" pattern=\"%s\"/>", coder,
                            coders[i].magick);
        }
        if (rc == 0 && module_needed(i, formats)) {
            rc = buf_printf(b, "<policy domain=\"module\" rights=\"read|write\" pattern=\"%s\"/>",
                            coders[i].module);
        }
    }
    return rc;
}

/* The resource values (ImageMagick takes the lower of these and its policy.xml's). */
static int policy_resources(struct buf *b, const struct img_config *c)
{
    return buf_printf(b,
                      "<policy domain=\"resource\" name=\"memory\" value=\"%ldMiB\"/>"
                      "<policy domain=\"resource\" name=\"map\" value=\"%ldMiB\"/>"
                      "<policy domain=\"resource\" name=\"disk\" value=\"%ldMiB\"/>"
                      "<policy domain=\"resource\" name=\"area\" value=\"%ld\"/>"
                      "<policy domain=\"resource\" name=\"width\" value=\"%ld\"/>"
                      "<policy domain=\"resource\" name=\"height\" value=\"%ld\"/>"
                      "<policy domain=\"resource\" name=\"list-length\" value=\"%ld\"/>"
                      "<policy domain=\"resource\" name=\"thread\" value=\"1\"/>",
                      c->memory_mb, c->map_mb, c->disk_mb, c->max_pixels, IMG_MAX_SIDE,
                      IMG_MAX_SIDE, c->max_frames + 1);
}

/* The security policy, set in code: no delegate (external program), no filter module, no path
 * but ImageMagick's configuration (sources are read from memory only; "@file" lists and pipes
 * included), and only pixq's coders and modules. */
static int set_policy(const struct img_config *c, struct err *e)
{
    struct buf b;
    buf_init(&b, 0);
    int rc = buf_puts(&b, "<policymap>"
                          "<policy domain=\"delegate\" rights=\"none\" pattern=\"*\"/>"
                          "<policy domain=\"filter\" rights=\"none\" pattern=\"*\"/>"
                          "<policy domain=\"path\" rights=\"none\" pattern=\"*\"/>");
    if (rc == 0) {
        rc = policy_config_paths(&b);
    }
    bool tmp_unusable = false;
    if (rc == 0) {
        rc = policy_tmpdir(&b, &tmp_unusable);
    }
    if (rc == 0) {
        rc = policy_coders(&b, c->formats);
    }
    if (rc == 0) {
        rc = policy_resources(&b, c);
    }
    if (rc == 0) {
        rc = buf_puts(&b, "</policymap>");
    }
    if (rc < 0) {
        buf_finish(&b);
        return err_set(e, "out of memory");
    }
    ExceptionInfo *x = AcquireExceptionInfo();
    if (SetMagickSecurityPolicy(b.data, x) == MagickFalse) {
        rc = err_set(e, "ImageMagick refused pixq's security policy%s%s",
                     x->reason != NULL ? ": " : "", x->reason != NULL ? x->reason : "");
    }
    DestroyExceptionInfo(x);
    buf_finish(&b);
    if (rc == 0 && tmp_unusable) {
        char q[TMPDIR_PATH_MAX + 16], m[ERR_MSG_MAX + 16];
        const char *dir = tmpdir_path()[0] != '\0' ? tmpdir_path() : tmpdir_base();
        LOG_WARN("magick_tmpdir_unusable", "dir=%s error=%s", log_quote(dir, q, sizeof q),
                 log_quote("ImageMagick's policy cannot name this directory (a quote, bracket "
                           "or wildcard in its path): images too large for "
                           "PIXQ_MAGICK_MEMORY_MB and PIXQ_MAGICK_MAP_MB fail",
                           m, sizeof m));
    }
    return rc;
}

/* The resource limits, again through the API (the policy only counts where policy.xml has
 * none); each is the lower of this and policy.xml's. ImageMagick's time limit is cleared. */
static int set_limits(const struct img_config *c, struct err *e)
{
    const struct {
        ResourceType type;
        const char *name;
        MagickSizeType value;
        const char *setting; /* the setting it comes from, or NULL */
        MagickSizeType unit; /* of the setting */
    } limits[] = {
        {MemoryResource, "memory", (MagickSizeType)c->memory_mb * MIB, "PIXQ_MAGICK_MEMORY_MB",
         MIB},
        {MapResource, "map", (MagickSizeType)c->map_mb * MIB, "PIXQ_MAGICK_MAP_MB", MIB},
        {DiskResource, "disk", (MagickSizeType)c->disk_mb * MIB, "PIXQ_MAGICK_DISK_MB", MIB},
        {AreaResource, "area", (MagickSizeType)c->max_pixels, "PIXQ_MAX_PIXELS", 1},
        {WidthResource, "width", (MagickSizeType)IMG_MAX_SIDE, NULL, 1},
        {HeightResource, "height", (MagickSizeType)IMG_MAX_SIDE, NULL, 1},
        {ListLengthResource, "list-length", (MagickSizeType)c->max_frames + 1, NULL, 1},
        {ThreadResource, "thread", 1, NULL, 1},
        {TimeResource, "time", MagickResourceInfinity, NULL, 1},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (SetMagickResourceLimit(limits[i].type, limits[i].value) == MagickFalse) {
            return err_set(e, "cannot set ImageMagick's %s limit", limits[i].name);
        }
        MagickSizeType got = GetMagickResourceLimit(limits[i].type);
        if (limits[i].setting != NULL && got < limits[i].value) {
            /* policy.xml's limit is lower, and the API can only lower one: raising it is a
             * change to policy.xml */
            LOG_WARN("magick_limit_capped",
                     "setting=%s requested=%llu effective=%llu by=policy.xml resource=%s",
                     limits[i].setting, (unsigned long long)(limits[i].value / limits[i].unit),
                     (unsigned long long)(got / limits[i].unit), limits[i].name);
        }
    }
    MagickSizeType t = GetMagickResourceLimit(TimeResource);
    if (t != MagickResourceInfinity) {
        return err_set(e,
                       "ImageMagick's policy.xml sets a time limit of %llu s, which would end this "
                       "long-running process: remove it (PIXQ_MAGICK_TIME_S bounds each image)",
                       (unsigned long long)t);
    }
    return 0;
}

/* One line with what ImageMagick will really allow. */
static void log_guard(void)
{
    char q[IMG_FORMATS_MAX + 16], t[TMPDIR_PATH_MAX + 16];
    LOG_INFO("magick_tmpdir", "dir=%s swept=%d", log_quote(tmpdir_path(), t, sizeof t),
             guard.tmpdirs_swept);
    LOG_INFO("image_guard",
             "formats=%s max_frames=%ld time_s=%ld memory_mb=%llu map_mb=%llu disk_mb=%llu "
             "area=%llu width=%llu height=%llu list_length=%llu threads=%llu shrink_on_load=%d "
             "jpeg_dc=%d png_shrink=%d fast_resize=%d exif_max_values=%ld xmp_max_elements=%ld "
             "metadata_max_mb=%ld",
             log_quote(guard.allowed, q, sizeof q), guard.cfg.max_frames, guard.cfg.time_s,
             (unsigned long long)(GetMagickResourceLimit(MemoryResource) / MIB),
             (unsigned long long)(GetMagickResourceLimit(MapResource) / MIB),
             (unsigned long long)(GetMagickResourceLimit(DiskResource) / MIB),
             (unsigned long long)GetMagickResourceLimit(AreaResource),
             (unsigned long long)GetMagickResourceLimit(WidthResource),
             (unsigned long long)GetMagickResourceLimit(HeightResource),
             (unsigned long long)GetMagickResourceLimit(ListLengthResource),
             (unsigned long long)GetMagickResourceLimit(ThreadResource),
             guard.cfg.shrink_on_load ? 1 : 0, guard.cfg.jpeg_dc ? 1 : 0,
             guard.cfg.png_shrink ? 1 : 0, guard.cfg.fast_resize ? 1 : 0, guard.cfg.exif_max_values,
             guard.cfg.xmp_max_elements, guard.cfg.metadata_max_mb);
}

/* Large buffers (ImageMagick's pixel caches, libjpeg's coefficients, decoded rows) are freed at
 * the end of every job and allocated again by the next. With glibc's defaults each is a new mmap
 * whose pages are faulted in and zeroed on every job: a quarter of a large PNG's decode, a sixth
 * of a large JPEG's. Freed memory up to ImageMagick's memory limit stays in the heap instead, for
 * the next job: the process's peak is unchanged, but its resident size stays near the peak of
 * its recent jobs (bounded by PIXQ_MAGICK_MEMORY_MB) rather than falling back between jobs. */
static void keep_buffers(const struct img_config *c)
{
    long mb = c->memory_mb < INT_MAX / (1024 * 1024) ? c->memory_mb : INT_MAX / (1024 * 1024);
    int bytes = (int)(mb * 1024 * 1024);
    if (mallopt(M_MMAP_THRESHOLD, bytes) != 1 || mallopt(M_TRIM_THRESHOLD, bytes) != 1) {
        LOG_WARN("malloc_settings_refused", "bytes=%d", bytes);
    }
}

int img_start(const struct img_config *c, struct err *e)
{
    if (guard.started) {
        return err_set(e, "ImageMagick is already started");
    }
    if (c->formats == 0 || c->max_frames < 1 || c->max_pixels < 1 || c->time_s < 1 ||
        c->exif_max_values < 1 || c->metadata_max_mb < 1 || c->xmp_max_elements < 1) {
        return err_set(e, "invalid image guard settings");
    }
    if (metaguard_init(e) < 0) {
        return -1;
    }
    guard.cfg = *c;
    allowed_text(c->formats, guard.allowed, sizeof guard.allowed);
    MagickWandGenesis();
    /* before the policy, which names the directory */
    struct err te = {{0}};
    if (tmpdir_start(&guard.tmpdirs_swept, &te) < 0) { /* ImageMagick's own then */
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("magick_tmpdir_failed", "error=%s", log_quote(te.msg, q, sizeof q));
    }
    if (set_policy(c, e) < 0 || set_limits(c, e) < 0) {
        tmpdir_finish();
        MagickWandTerminus();
        return -1;
    }
    keep_buffers(c);
    guard.started = true;
    log_guard();
    return 0;
}

void img_init(void)
{
    if (guard.started) {
        return;
    }
    static struct cfg c; /* large: not on the stack */
    struct img_config ic;
    struct err e = {{0}};
    cfg_defaults(&c);
    if (img_config_from(&c, &ic, &e) < 0 || img_start(&ic, &e) < 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("image_guard_failed", "error=%s", log_quote(e.msg, q, sizeof q));
        exit(EXIT_FAILURE);
    }
}

/* A profile an image is converted to before its own is dropped, made with lcms2 at its first use:
 * sRGB (lcms2's), and for a grey image a grey profile with sRGB's tone curve. `ref` is it open
 * (sRGB's tells a profile that is sRGB already). */
struct icc_target {
    unsigned char *data;
    cmsUInt32Number len;
    cmsHPROFILE ref;
};

static struct icc_target srgb, srgb_grey;

static cmsHPROFILE make_srgb_grey(void)
{
    /* IEC 61966-2-1's curve: Y = ((X + 0.055) / 1.055)^2.4, X / 12.92 below 0.04045 */
    const cmsFloat64Number curve[5] = {2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045};
    cmsToneCurve *trc = cmsBuildParametricToneCurve(NULL, 4, curve);
    cmsHPROFILE p = trc != NULL ? cmsCreateGrayProfile(cmsD50_xyY(), trc) : NULL;
    if (trc != NULL) {
        cmsFreeToneCurve(trc);
    }
    return p;
}

static bool target_ready(struct icc_target *t, cmsHPROFILE (*make)(void))
{
    if (t->data != NULL) {
        return true;
    }
    t->ref = t->ref != NULL ? t->ref : make();
    cmsUInt32Number n = 0;
    if (t->ref != NULL && cmsSaveProfileToMem(t->ref, NULL, &n) && n > 0 &&
        (t->data = malloc(n)) != NULL && !cmsSaveProfileToMem(t->ref, t->data, &n)) {
        free(t->data);
        t->data = NULL;
    }
    t->len = t->data != NULL ? n : 0;
    return t->data != NULL;
}

static void target_forget(struct icc_target *t)
{
    free(t->data);
    t->data = NULL;
    if (t->ref != NULL) {
        cmsCloseProfile(t->ref);
        t->ref = NULL;
    }
}

/* Whether an ICC profile describes sRGB (a camera's or a browser's sRGB profile, which are not
 * byte for byte lcms's): an RGB matrix profile whose colorants are sRGB's and whose tone curves
 * follow sRGB's, or a grey profile whose tone curve does. Converting from it would change nothing
 * but cost a pass over every pixel (ImageMagick 6's transform: about 3 s for 24 megapixels).
 * `space` gets the profile's colour space (0 if lcms cannot read it). sRGB's target must be
 * ready. */
static bool is_srgb(const unsigned char *icc, size_t n, cmsColorSpaceSignature *space)
{
    static const cmsTagSignature colorants[] = {cmsSigRedColorantTag, cmsSigGreenColorantTag,
                                                cmsSigBlueColorantTag};
    static const cmsTagSignature curves[] = {cmsSigRedTRCTag, cmsSigGreenTRCTag, cmsSigBlueTRCTag};
    /* a table (A2Bx, D2Bx) is what lcms goes by before the matrix and curves: it may describe
     * another space (calibration tools write both) */
    static const cmsTagSignature tables[] = {cmsSigAToB0Tag, cmsSigAToB1Tag, cmsSigAToB2Tag,
                                             cmsSigDToB0Tag, cmsSigDToB1Tag, cmsSigDToB2Tag};
    cmsHPROFILE p = cmsOpenProfileFromMem(icc, (cmsUInt32Number)n);
    *space = p != NULL ? cmsGetColorSpace(p) : (cmsColorSpaceSignature)0;
    bool grey = *space == cmsSigGrayData;
    bool same = p != NULL && srgb.ref != NULL && (*space == cmsSigRgbData || grey);
    for (size_t i = 0; same && i < sizeof tables / sizeof tables[0]; i++) {
        same = !cmsIsTag(p, tables[i]);
    }
    for (size_t i = 0; same && !grey && i < 3; i++) {
        const cmsCIEXYZ *a = cmsReadTag(p, colorants[i]), *b = cmsReadTag(srgb.ref, colorants[i]);
        same = a != NULL && b != NULL && fabs(a->X - b->X) < 0.003 && fabs(a->Y - b->Y) < 0.003 &&
               fabs(a->Z - b->Z) < 0.003;
    }
    for (size_t i = 0; same && i < (grey ? 1u : 3u); i++) {
        const cmsToneCurve *a = cmsReadTag(p, grey ? cmsSigGrayTRCTag : curves[i]),
                           *b = cmsReadTag(srgb.ref, curves[i]);
        for (int k = 0; same && k <= 16; k++) {
            float x = (float)k / 16.0f;
            same = a != NULL && b != NULL &&
                   fabsf(cmsEvalToneCurveFloat(a, x) - cmsEvalToneCurveFloat(b, x)) < 0.005f;
        }
    }
    if (p != NULL) {
        cmsCloseProfile(p);
    }
    return same;
}

void img_shutdown(void)
{
    target_forget(&srgb);
    target_forget(&srgb_grey);
    resize_forget();
    if (guard.started) {
        MagickWandTerminus();
        tmpdir_finish();
        guard.started = false;
    }
}

const char *img_library_version(char *out, size_t cap)
{
    size_t ignored;
    const char *v = MagickGetVersion(&ignored);
    int words = 0;
    size_t n = 0;
    while (v[n] != '\0' && !(v[n] == ' ' && ++words == 3)) {
        n++;
    }
    snprintf(out, cap, "%.*s", (int)n, v);
    return out;
}

/* ---------------------------------------------------------------- the guard */

static const char *coder_for(enum sniff_format f)
{
    for (size_t i = 0; i < N_CODERS; i++) {
        if (coders[i].source == f) {
            return coders[i].magick;
        }
    }
    return NULL;
}

/* Refuses a frame or canvas of w x h beyond `max_pixels` or ImageMagick's width and height
 * limits (0 x 0: not declared, nothing to check). */
static int check_size(long w, long h, long max_pixels, struct err *e)
{
    if (w <= 0 || h <= 0) {
        return 0;
    }
    if (w > max_pixels / h) {
        return err_set(e, "image is %ldx%ld, more than the limit of %ld pixels (PIXQ_MAX_PIXELS)",
                       w, h, max_pixels);
    }
    MagickSizeType wl = GetMagickResourceLimit(WidthResource);
    MagickSizeType hl = GetMagickResourceLimit(HeightResource);
    if ((MagickSizeType)w > wl || (MagickSizeType)h > hl) {
        return err_set(e, "image is %ldx%ld, beyond ImageMagick's largest side (%llux%llu)", w, h,
                       (unsigned long long)wl, (unsigned long long)hl);
    }
    return 0;
}

static int check_frames(long frames, struct err *e)
{
    if (frames > guard.cfg.max_frames) {
        return err_set(e, "image has %ld frames, more than the limit of %ld (PIXQ_MAX_FRAMES)",
                       frames, guard.cfg.max_frames);
    }
    return 0;
}

/* What the headers declare, before ImageMagick sees the bytes. */
static int check_declared(const struct sniff_info *si, long max_pixels, struct err *e)
{
    if (si->format == SNIFF_OTHER || (guard.cfg.formats & (1u << si->format)) == 0) {
        return err_set(e, "Unsupported image format: %s (allowed: %s)", si->name, guard.allowed);
    }
    if (check_frames(si->frames, e) < 0 || check_size(si->width, si->height, max_pixels, e) < 0) {
        return -1;
    }
    if (si->truncated) {
        return err_set(e, "the %s image is truncated", si->name);
    }
    return 0;
}

/* A wand that reads the sniffed format, named explicitly, under a deadline. */
static MagickWand *reader(const struct sniff_info *si, void *deadline, struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (w == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    if (MagickSetFormat(w, coder_for(si->format)) == MagickFalse) {
        img_fail(w, "cannot read the image format", e);
        return DestroyMagickWand(w);
    }
    MagickSetProgressMonitor(w, before_deadline, deadline);
    if (si->format == SNIFF_BMP) { /* a size field that is not the file's: read as Blitline did */
        MagickSetOption(w, "bmp:ignore-filesize", "true");
    }
    return w;
}

/* The reason a ping or read failed (or stopped at its deadline, or left an error behind). */
static int unreadable(MagickWand *w, const struct sniff_info *si, struct err *e)
{
    char what[64];
    snprintf(what, sizeof what, "cannot read the %s image", si->name);
    ExceptionType severity = MagickGetExceptionType(w);
    if (severity == UndefinedException && !past_deadline(w)) {
        return err_set(e, "%s (corrupt, or beyond ImageMagick's limits)", what);
    }
    return img_fail(w, what, e);
}

/* One pinged frame (the iterator's): a size, and within the limits with its canvas. */
static int check_pinged_frame(MagickWand *w, const struct sniff_info *si, long max_pixels,
                              struct err *e)
{
    size_t pw = 0, ph = 0;
    ssize_t x, y;
    if (MagickGetImagePage(w, &pw, &ph, &x, &y) == MagickFalse) {
        return img_fail(w, "cannot read the image's frames", e);
    }
    long width = (long)MagickGetImageWidth(w), height = (long)MagickGetImageHeight(w);
    if (width <= 0 || height <= 0) {
        return err_set(e, "cannot read the %s image (a frame of %ldx%ld pixels)", si->name, width,
                       height);
    }
    if (check_size(width, height, max_pixels, e) < 0 ||
        check_size((long)pw, (long)ph, max_pixels, e) < 0) {
        return -1;
    }
    return 0;
}

/* Every frame and canvas ImageMagick's ping found, against the limits. */
static int check_pinged(MagickWand *w, const struct sniff_info *si, long max_pixels, struct err *e)
{
    size_t n = MagickGetNumberImages(w);
    if (n == 0) {
        return err_set(e, "cannot read the %s image (no frame)", si->name);
    }
    if (check_frames((long)n, e) < 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (MagickSetIteratorIndex(w, (ssize_t)i) == MagickFalse) {
            return img_fail(w, "cannot read the image's frames", e);
        }
        if (check_pinged_frame(w, si, max_pixels, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Puts back the EXIF counts exifcap lowered into the "exif" profile of each image `r` read;
 * false when a profile is not the one the copy holds. */
static bool restore_exif(MagickWand *r, const struct exifcap *c)
{
    for (Image *im = GetFirstImageInList(GetImageFromMagickWand(r)); im != NULL;
         im = GetNextImageInList(im)) {
        const StringInfo *profile = GetImageProfile(im, "exif");
        if (profile != NULL &&
            !exifcap_restore(c, GetStringInfoDatum(profile), GetStringInfoLength(profile))) {
            return false;
        }
    }
    return true;
}

/* Reads or pings `data` into `r`; a JPEG through exifcap.h (ImageMagick formats its long EXIF
 * arrays only as far as it keeps them), or, should its profile not come back as expected, as it
 * is. */
static MagickBooleanType read_blob(MagickWand *r, const void *data, size_t len,
                                   const struct sniff_info *si, bool ping)
{
    struct exifcap c = {0};
    if (si->format == SNIFF_JPEG && exifcap_prepare(data, len, &c) == 0 && c.copy != NULL) {
        MagickBooleanType ok =
            ping ? MagickPingImageBlob(r, c.copy, c.len) : MagickReadImageBlob(r, c.copy, c.len);
        bool restored = ok == MagickFalse || restore_exif(r, &c);
        exifcap_free(&c);
        if (restored) {
            return ok;
        }
        while (MagickGetNumberImages(r) > 0 && MagickSetIteratorIndex(r, 0) != MagickFalse &&
               MagickRemoveImage(r) != MagickFalse) {
        }
        MagickClearException(r);
    }
    return ping ? MagickPingImageBlob(r, data, len) : MagickReadImageBlob(r, data, len);
}

/* Whether a read left an error on its first image rather than on the wand: the error into `e`.
 * ImageMagick's JPEG reader, stopped by libjpeg once the image's size is known (past 1024 scans:
 * "too many scans"), hands back the partial image with the error on it; the job's functions all
 * ran on that image, and the error came up at its save ("encode: too many scans"). */
static bool image_error(MagickWand *r, const struct sniff_info *si, struct err *e)
{
    const Image *im = GetImageFromMagickWand(r);
    if (im == NULL || im->exception.severity < ErrorException) {
        return false;
    }
    char words[ERR_MSG_MAX];
    err_set(e, "cannot read the %s image: %s", si->name,
            img_magick_words(im->exception.reason != NULL ? im->exception.reason : "corrupt", words,
                             sizeof words));
    return true;
}

/* Decodes the first frame only ("[0]") into a wand of its own (no explicit format left on it,
 * so that encoding follows the output's format); `size` is a "jpeg:size" hint or NULL. */
static MagickWand *read_first(const void *data, size_t len, const struct sniff_info *si,
                              const char *size, void *deadline, struct err *e)
{
    MagickWand *r = reader(si, deadline, e);
    if (r == NULL) {
        return NULL;
    }
    MagickWand *w = NULL;
    if ((size != NULL && MagickSetOption(r, "jpeg:size", size) == MagickFalse) ||
        MagickSetFilename(r, "[0]") == MagickFalse ||
        read_blob(r, data, len, si, false) == MagickFalse || MagickGetNumberImages(r) == 0 ||
        MagickGetExceptionType(r) >= ErrorException || past_deadline(r)) {
        unreadable(r, si, e);
    } else {
        MagickSetFirstIterator(r);
        bool failed = image_error(r, si, e);
        w = failed ? NULL : NewMagickWandFromImage(GetImageFromMagickWand(r));
        if (w != NULL && MagickGetNumberImages(w) == 0) {
            w = DestroyMagickWand(w);
        }
        if (w == NULL && !failed) {
            err_set(e, "out of memory");
        }
    }
    DestroyMagickWand(r);
    return w;
}

/* Blitline read a multi-page TIFF as its pages stacked top to bottom (the widest page's width,
 * the narrower ones on the first page's background), or its first page when that failed: into
 * `p`, the pages and size of the stack when it is within the limits, else 1 page. */
static void stack_size(MagickWand *r, long max_pixels, struct img_probe *p)
{
    size_t n = MagickGetNumberImages(r);
    long width = 0, height = 0;
    for (size_t i = 0; i < n && MagickSetIteratorIndex(r, (ssize_t)i) != MagickFalse; i++) {
        long w = (long)MagickGetImageWidth(r), h = (long)MagickGetImageHeight(r);
        width = w > width ? w : width;
        height += h; /* each side at most IMG_MAX_SIDE, at most PIXQ_MAX_FRAMES of them */
    }
    struct err e;
    p->pages = 1;
    if (n > 1 && check_size(width, height, max_pixels, &e) == 0) {
        p->pages = (long)n;
        p->width = width;
        p->height = height;
    }
}

/* ImageMagick appends pages of different colourspaces by their values, a CMYK page among RGB
 * ones as RGB (blue turns yellow): pages that differ are all brought to sRGB first. Returns 0 or
 * -1 (the wand's exception says why). */
static int same_colorspace(MagickWand *r)
{
    size_t n = MagickGetNumberImages(r);
    bool differ = false;
    ColorspaceType first = UndefinedColorspace;
    for (size_t i = 0; i < n && MagickSetIteratorIndex(r, (ssize_t)i) != MagickFalse; i++) {
        ColorspaceType c = MagickGetImageColorspace(r);
        first = i == 0 ? c : first;
        differ = differ || c != first;
    }
    for (size_t i = 0; differ && i < n; i++) {
        if (MagickSetIteratorIndex(r, (ssize_t)i) == MagickFalse ||
            MagickTransformImageColorspace(r, sRGBColorspace) == MagickFalse) {
            return -1;
        }
    }
    return 0;
}

/* Decodes every page and stacks them top to bottom (stack_size()) into a wand of its own, with
 * the first page's properties and profiles. */
static MagickWand *read_stacked(const void *data, size_t len, const struct sniff_info *si,
                                void *deadline, struct err *e)
{
    MagickWand *r = reader(si, deadline, e);
    if (r == NULL) {
        return NULL;
    }
    MagickWand *w = NULL;
    if (read_blob(r, data, len, si, false) == MagickFalse || MagickGetNumberImages(r) == 0 ||
        MagickGetExceptionType(r) >= ErrorException || past_deadline(r)) {
        unreadable(r, si, e);
    } else if (same_colorspace(r) < 0) {
        img_fail(r, "cannot read the TIFF image's pages", e);
    } else {
        MagickResetIterator(r);
        MagickWand *a = MagickAppendImages(r, MagickTrue);
        if (a == NULL || past_deadline(r)) {
            unreadable(r, si, e);
        } else {
            w = NewMagickWandFromImage(GetImageFromMagickWand(a)); /* without the reader's format */
            if (w == NULL) {
                err_set(e, "out of memory");
            }
        }
        if (a != NULL) {
            DestroyMagickWand(a);
        }
    }
    DestroyMagickWand(r);
    return w;
}

/* Reads the headers of every frame (no pixels), checks them, and keeps the first frame's; a
 * JPEG's profiles only with `profiles`. With `stack` (a TIFF's probe), stack_size() into it. */
static MagickWand *ping_first(const void *data, size_t len, const struct sniff_info *si,
                              long max_pixels, void *deadline, bool profiles,
                              struct img_probe *stack, struct err *e)
{
    MagickWand *r = reader(si, deadline, e);
    if (r == NULL) {
        return NULL;
    }
    MagickWand *w = NULL;
    /* a JPEG's profiles are parsed when it is decoded: parsing a large EXIF block (every tag
     * formatted as text) costs as much as a quarter of a thumbnail's decode, so not twice */
    if (si->format == SNIFF_JPEG && !profiles) {
        MagickSetOption(r, "profile:skip", "ICC,IPTC,APP");
    }
    /* ImageMagick's BMP reader decodes even to ping, a second image after the first ("BM" again)
     * too, whose size the sniff did not check: the first only (the one pixq reads) */
    if (si->format == SNIFF_BMP) {
        MagickSetFilename(r, "[0]");
    }
    /* skipped profiles: no EXIF for read_blob() to spare ImageMagick */
    if ((profiles ? read_blob(r, data, len, si, true) : MagickPingImageBlob(r, data, len)) ==
            MagickFalse ||
        MagickGetExceptionType(r) >= ErrorException || past_deadline(r)) {
        unreadable(r, si, e);
    } else if (check_pinged(r, si, max_pixels, e) == 0) {
        if (stack != NULL) {
            stack_size(r, max_pixels, stack);
        }
        MagickSetFirstIterator(r);
        w = NewMagickWandFromImage(GetImageFromMagickWand(r));
        if (w == NULL) {
            err_set(e, "out of memory");
        }
    }
    DestroyMagickWand(r);
    return w;
}

/* The headers of a still WebP, read by libwebp (webp.h): ImageMagick's ping would decode it. */
static MagickWand *probe_webp(const void *data, size_t len, long width, long height,
                              long max_pixels, struct img_probe *p, struct err *e)
{
    if (check_size(width, height, max_pixels, e) < 0) {
        return NULL;
    }
    p->width = width;
    p->height = height;
    return webp_headers(data, len, e);
}

/* Arms the metadata guard (metaguard.h) for one read of this thread. */
static void arm(struct metaguard *g)
{
    const struct metaguard_limits l = {
        .max_bytes = (uint64_t)guard.cfg.metadata_max_mb * MIB,
        .max_exif = (uint64_t)guard.cfg.exif_max_values,
        .max_xmp = (uint64_t)guard.cfg.xmp_max_elements,
    };
    metaguard_arm(g, &l);
}

/* Ends the read `arm()` began: `w` as it is, or, when the guard refused a profile, NULL and
 * its error (whatever the read made of the image without it). */
static MagickWand *disarm(MagickWand *w, const struct metaguard *g, struct err *e)
{
    if (!metaguard_disarm()) {
        return w;
    }
    metaguard_error(g, e);
    return w != NULL ? DestroyMagickWand(w) : NULL;
}

/* A PNG's text and ICC chunks within PIXQ_METADATA_MAX_MB: libpng inflates each whole, before
 * the profile guard sees it (metaguard_png_text_bytes()). */
static int check_png_text(const void *data, size_t len, struct err *e)
{
    uint64_t max = (uint64_t)guard.cfg.metadata_max_mb * MIB;
    if (metaguard_png_text_bytes(data, len, max) > max) {
        return err_set(e,
                       "the image's metadata is too large to read: its text and ICC chunks hold "
                       "more than %ld MB (PIXQ_METADATA_MAX_MB)",
                       guard.cfg.metadata_max_mb);
    }
    return 0;
}

static MagickWand *probe(const void *data, size_t len, long max_pixels, struct img_probe *p,
                         struct err *e)
{
    struct sniff_info si;
    sniff_image(data, len, &si);
    memset(p, 0, sizeof *p);
    if (!guard.started) {
        err_set(e, "ImageMagick is not started");
        return NULL;
    }
    if (check_declared(&si, max_pixels, e) < 0 ||
        (si.format == SNIFF_PNG && check_png_text(data, len, e) < 0)) {
        return NULL;
    }
    long ww = 0, wh = 0;
    bool still_webp = si.format == SNIFF_WEBP && webp_still(data, len, &ww, &wh);
    p->deadline = deadline_in(guard.cfg.time_s * 1000);
    p->decoded = si.format == SNIFF_WEBP && !still_webp; /* animated: ImageMagick decodes it */
    MagickWand *w = still_webp   ? probe_webp(data, len, ww, wh, max_pixels, p, e)
                    : p->decoded ? read_first(data, len, &si, NULL, p->deadline, e)
                                 : ping_first(data, len, &si, max_pixels, p->deadline, false,
                                              si.format == SNIFF_TIFF ? p : NULL, e);
    if (w != NULL && p->decoded && check_pinged(w, &si, max_pixels, e) < 0) {
        w = DestroyMagickWand(w);
    }
    if (w == NULL) {
        return NULL;
    }
    p->format = si.format;
    p->name = si.name;
    if (!still_webp && p->pages <= 1) {
        p->width = (long)MagickGetImageWidth(w);
        p->height = (long)MagickGetImageHeight(w);
    }
    /* a JPEG's orientation is in the EXIF block the ping skipped: unknown (-1) */
    p->orientation = si.format == SNIFF_JPEG ? -1 : (int)MagickGetImageOrientation(w);
    return w;
}

/* A wand of the image jpegdc decoded, with the headers, properties and profiles of `hdr` (the
 * ping of the same bytes: what ImageMagick's read would have set). */
static MagickWand *constitute_dc(const struct jpegdc_image *dc, const Image *hdr, struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (w == NULL || MagickConstituteImage(w, (size_t)dc->width, (size_t)dc->height, "RGB",
                                           CharPixel, dc->pixels) == MagickFalse) {
        err_set(e, "cannot read the JPEG image (out of memory, or beyond ImageMagick's limits)");
        return w != NULL ? DestroyMagickWand(w) : NULL;
    }
    Image *im = GetImageFromMagickWand(w);
    if (CloneImageProperties(im, hdr) == MagickFalse ||
        CloneImageProfiles(im, hdr) == MagickFalse ||
        MagickSetImageFormat(w, "JPEG") == MagickFalse) {
        err_set(e, "cannot read the JPEG image's properties (out of memory)");
        return DestroyMagickWand(w);
    }
    im->quality = hdr->quality;
    return w;
}

/* ImageMagick's ping of a source a reduced decoder read: its headers, properties and profiles. */
static MagickWand *ping_headers(const void *data, size_t len, const struct img_probe *p,
                                struct err *e)
{
    struct sniff_info si = {.format = p->format, .name = p->name};
    return ping_first(data, len, &si, guard.cfg.max_pixels, p->deadline, true, NULL, e);
}

/* A reduced decoder's wand `w` (or NULL) under the source's deadline, its ping `headers` gone. */
static MagickWand *reduced_done(MagickWand *w, MagickWand *headers, const struct img_probe *p)
{
    if (headers != NULL) {
        DestroyMagickWand(headers);
    }
    if (w != NULL) {
        MagickSetImageProgressMonitor(w, before_deadline, p->deadline);
    }
    return w;
}

/* A progressive colour JPEG wanted at 1/8: the pixels from its DC coefficients (jpegdc.h),
 * the rest from a ping. Returns NULL with `*declined` when jpegdc does not take the file
 * (libjpeg then decodes it), NULL with `e` set on errors. A grey one is declined too:
 * ImageMagick reads it as a 256-colour palette image, which its resize treats differently
 * (by a few levels) from the same pixels in direct colour. */
static MagickWand *read_jpeg_dc(const void *data, size_t len, const struct img_probe *p,
                                bool *declined, struct err *e)
{
    struct jpegdc_image dc;
    const char *why = NULL;
    long t0 = clock_mono_ms();
    int rc = jpegdc_decode(data, len, guard.cfg.max_pixels, &dc, &why);
    if (rc == 0 && dc.channels != 3) {
        jpegdc_free(&dc);
        why = "grey";
        rc = -1;
    }
    if (rc < 0) {
        char q[96];
        LOG_DEBUG("jpeg_dc_declined", "reason=%s", log_quote(why, q, sizeof q));
        *declined = true;
        return NULL;
    }
    long t1 = clock_mono_ms();
    MagickWand *h = ping_headers(data, len, p, e);
    MagickWand *w = h != NULL ? constitute_dc(&dc, GetImageFromMagickWand(h), e) : NULL;
    LOG_DEBUG("jpeg_dc", "decoded=%ldx%ld dc_ms=%ld headers_ms=%ld", dc.width, dc.height, t1 - t0,
              clock_mono_ms() - t1);
    jpegdc_free(&dc);
    return reduced_done(w, h, p);
}

/* The page (virtual canvas) of `im` scaled from `from_w` x `from_h` to `to_w` x `to_h`, as
 * ImageMagick's resizing functions scale it (CloneImage() to a new size). */
static void scale_page(Image *im, double from_w, double from_h, double to_w, double to_h)
{
    double sx = to_w / from_w, sy = to_h / from_h;
    im->page.width = (size_t)floor(sx * (double)im->page.width + 0.5);
    im->page.x = (ssize_t)ceil(sx * (double)im->page.x - 0.5);
    im->tile_offset.x = (ssize_t)ceil(sx * (double)im->tile_offset.x - 0.5);
    im->page.height = (size_t)floor(sy * (double)im->page.height + 0.5);
    im->page.y = (ssize_t)ceil(sy * (double)im->page.y - 0.5);
    im->tile_offset.y = (ssize_t)ceil(sy * (double)im->tile_offset.y - 0.5);
}

/* The properties ImageMagick's read sets from the PNG's text chunks (the ping `hdr` skips them),
 * and, as it does after them, "png:text" with their count. A text whose property the ping has is
 * left out: ImageMagick's ReadImage() sets those after the PNG reader (date:create and
 * date:modify, which ImageMagick writes into every PNG), so its value wins in a read too (names
 * are case-insensitive, as there). 0, or -1 when memory ran out. */
static int set_png_texts(Image *im, const Image *hdr, const struct pngshrink_image *ps)
{
    for (size_t i = 0; i < ps->ntext; i++) {
        if (GetImageProperty(hdr, ps->texts[i].key) != NULL) {
            continue;
        }
        if (SetImageProperty(im, ps->texts[i].key, ps->texts[i].value) == MagickFalse) {
            return -1;
        }
    }
    if (ps->ntext > 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "%zu tEXt/zTXt/iTXt chunks were found", ps->ntext);
        return SetImageProperty(im, "png:text", msg) == MagickFalse ? -1 : 0;
    }
    return 0;
}

/* A wand of the image pngshrink decoded, with the headers, properties and profiles of `hdr`
 * (the ping of the same bytes), as constitute_dc(); RGBA keeps its alpha channel on. The page
 * is scaled as shrink_after_load() (process.c) would: sampled to twice the size first from a
 * factor of 4 on, then scaled. */
static MagickWand *constitute_png(const struct pngshrink_image *ps, int factor, const Image *hdr,
                                  struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (w == NULL || MagickConstituteImage(w, (size_t)ps->width, (size_t)ps->height,
                                           ps->channels == 4 ? "RGBA" : "RGB", CharPixel,
                                           ps->pixels) == MagickFalse) {
        err_set(e, "cannot read the PNG image (out of memory, or beyond ImageMagick's limits)");
        return w != NULL ? DestroyMagickWand(w) : NULL;
    }
    Image *im = GetImageFromMagickWand(w);
    if (CloneImageProperties(im, hdr) == MagickFalse ||
        CloneImageProfiles(im, hdr) == MagickFalse || set_png_texts(im, hdr, ps) < 0 ||
        MagickSetImageFormat(w, "PNG") == MagickFalse ||
        MagickSetImageAlphaChannel(w, ps->channels == 4 ? ActivateAlphaChannel
                                                        : DeactivateAlphaChannel) == MagickFalse) {
        err_set(e, "cannot read the PNG image's properties (out of memory)");
        return DestroyMagickWand(w);
    }
    im->colorspace = hdr->colorspace;
    double w0 = (double)hdr->columns, h0 = (double)hdr->rows;
    double w1 = (double)ps->width, h1 = (double)ps->height;
    if (factor >= 4) {
        scale_page(im, w0, h0, w1 * 2, h1 * 2);
        w0 = w1 * 2;
        h0 = h1 * 2;
    }
    scale_page(im, w0, h0, w1, h1);
    return w;
}

/* An 8-bit RGB(A) or grey+alpha, a palette or a grey PNG wanted at 1/`factor`: the pixels
 * inflated, unfiltered and box-averaged by pngshrink.h, the rest from a ping. Returns NULL with
 * `*declined` when pngshrink does not take the file (or its deadline passed: ImageMagick's read
 * then stops at once with the usual error), NULL with `e` set on errors. */
static MagickWand *read_png_shrink(const void *data, size_t len, const struct img_probe *p,
                                   int factor, bool *declined, struct err *e)
{
    struct pngshrink_image ps;
    const char *why = NULL;
    long t0 = clock_mono_ms();
    if (pngshrink_decode(data, len, factor, guard.cfg.max_pixels, (long)(intptr_t)p->deadline, &ps,
                         &why) < 0) {
        char q[96];
        LOG_DEBUG("png_shrink_declined", "reason=%s", log_quote(why, q, sizeof q));
        *declined = true;
        return NULL;
    }
    long t1 = clock_mono_ms();
    MagickWand *h = ping_headers(data, len, p, e);
    MagickWand *w = h != NULL ? constitute_png(&ps, factor, GetImageFromMagickWand(h), e) : NULL;
    LOG_DEBUG("png_shrink", "decoded=%ldx%ld factor=%d ms=%ld headers_ms=%ld", ps.width, ps.height,
              factor, t1 - t0, clock_mono_ms() - t1);
    pngshrink_free(&ps);
    return reduced_done(w, h, p);
}

/* The factor (2, 4 or 8) pngshrink shrinks a PNG by for a hint: libjpeg's scale M/8 for it
 * (shrink.h, whose size, ceil(side / factor), the plan expects) when 8/M is one of those, else
 * 0. Sides need not be multiples of it: pngshrink averages by area, so its output is the whole
 * picture at one scale, as the box filter after ImageMagick's read makes it. */
static int png_shrink_factor(const struct img_probe *p, long hint_w, long hint_h)
{
    /* pngshrink inflates the rows whole (up to 4 bytes a pixel), outside ImageMagick's limits:
     * at most PIXQ_MAGICK_MEMORY_MB of them, else ImageMagick's read, under its limits */
    if ((double)p->width * (double)p->height * 4 > (double)guard.cfg.memory_mb * (double)MIB) {
        return 0;
    }
    int m = shrink_libjpeg_scale(p->width, p->height, hint_w, hint_h);
    int f = m > 0 && m < SHRINK_DENOM && SHRINK_DENOM % m == 0 ? SHRINK_DENOM / m : 0;
    return f;
}

MagickWand *img_probe(const void *data, size_t len, long max_pixels, struct img_probe *p,
                      struct err *e)
{
    struct metaguard g;
    arm(&g);
    return disarm(probe(data, len, max_pixels, p, e), &g, e);
}

static MagickWand *read_image(const void *data, size_t len, struct img_probe *p, long hint_w,
                              long hint_h, struct err *e)
{
    struct sniff_info si = {.format = p->format, .name = p->name};
    char size[48];
    bool hint = hint_w > 0 && hint_h > 0 && hint_w <= p->width && hint_h <= p->height;
    snprintf(size, sizeof size, "%ldx%ld", hint_w, hint_h);
    MagickWand *w = NULL;
    bool declined = true; /* by the DC reader, or not offered to it */
    if (hint && p->format == SNIFF_JPEG && guard.cfg.jpeg_dc &&
        shrink_libjpeg_scale(p->width, p->height, hint_w, hint_h) == 1) {
        declined = false;
        w = read_jpeg_dc(data, len, p, &declined, e);
    }
    int factor = hint && p->format == SNIFF_PNG && guard.cfg.png_shrink
                     ? png_shrink_factor(p, hint_w, hint_h)
                     : 0;
    if (factor > 0) {
        declined = false;
        w = read_png_shrink(data, len, p, factor, &declined, e);
    }
    if (!declined && w == NULL) { /* the DC reader took it and failed */
        return NULL;
    }
    if (w == NULL && p->format == SNIFF_WEBP && !p->decoded) { /* libwebp scales to the hint */
        w = webp_read(data, len, hint ? hint_w : p->width, hint ? hint_h : p->height, e);
        if (w != NULL) {
            MagickSetImageProgressMonitor(w, before_deadline, p->deadline);
        }
    } else if (w == NULL && p->pages > 1) {
        w = read_stacked(data, len, &si, p->deadline, e);
        if (w == NULL &&
            clock_mono_ms() < (long)(intptr_t)p->deadline) { /* a bad page: the first */
            w = read_first(data, len, &si, NULL, p->deadline, e);
            if (w != NULL) {
                p->pages = 1;
                p->width = (long)MagickGetImageWidth(w);
                p->height = (long)MagickGetImageHeight(w);
            }
        }
    } else if (w == NULL) {
        w = read_first(data, len, &si, hint && p->format == SNIFF_JPEG ? size : NULL, p->deadline,
                       e);
    }
    if (w == NULL) {
        return NULL;
    }
    long width = (long)MagickGetImageWidth(w), height = (long)MagickGetImageHeight(w);
    if (width > p->width || height > p->height) {
        err_set(e, "cannot read the %s image (%ldx%ld pixels, its headers said %ldx%ld)", si.name,
                width, height, p->width, p->height);
        return DestroyMagickWand(w);
    }
    return w;
}

MagickWand *img_read(const void *data, size_t len, struct img_probe *p, long hint_w, long hint_h,
                     struct err *e)
{
    struct metaguard g;
    arm(&g);
    return disarm(read_image(data, len, p, hint_w, hint_h, e), &g, e);
}

bool img_shrink_on_load(void)
{
    return guard.started && guard.cfg.shrink_on_load;
}

MagickWand *img_decode(const void *data, size_t len, long max_pixels, long *width, long *height,
                       struct err *e)
{
    struct img_probe p;
    MagickWand *w = img_probe(data, len, max_pixels, &p, e);
    if (w != NULL && !p.decoded) {
        DestroyMagickWand(w);
        w = img_read(data, len, &p, 0, 0, e);
    }
    if (w == NULL) {
        return NULL;
    }
    *width = (long)MagickGetImageWidth(w);
    *height = (long)MagickGetImageHeight(w);
    return w;
}

int img_resize(MagickWand *w, long width, long height, const char *what, struct err *e)
{
    if (guard.cfg.fast_resize) {
        const char *why;
        switch (resize_fast(w, (size_t)width, (size_t)height, &why)) {
        case RESIZE_DONE:
            return 0;
        case RESIZE_FAILED:
            if (past_deadline(w)) {
                return img_fail(w, what, e); /* says so */
            }
            const Image *im = GetImageFromMagickWand(w);
            char words[ERR_MSG_MAX];
            const char *detail = img_magick_words(
                im != NULL && im->exception.reason != NULL ? im->exception.reason : "", words,
                sizeof words);
            return err_set(e, "%s: %s%s%s", what, why, detail[0] ? ": " : "", detail);
        case RESIZE_DECLINED:
            break;
        }
    }
    if (MagickResizeImage(w, (size_t)width, (size_t)height, UndefinedFilter, 1.0) == MagickFalse) {
        return img_fail(w, what, e);
    }
    return 0;
}

/* A new solid image watched by `monitor` with `data` (ImageMagick's progress monitor). */
static MagickWand *solid(long width, long height, const PixelWand *color,
                         MagickProgressMonitor monitor, void *data, struct err *e)
{
    if (width <= 0 || height <= 0) {
        err_set(e, "canvas: %ldx%ld pixels", width, height);
        return NULL;
    }
    if (check_size(width, height, guard.cfg.max_pixels, e) < 0) {
        err_wrap(e, "canvas");
        return NULL;
    }
    MagickWand *w = NewMagickWand();
    if (MagickNewImage(w, (size_t)width, (size_t)height, color) == MagickFalse) {
        img_fail(w, "canvas", e);
        return DestroyMagickWand(w);
    }
    MagickSetImageProgressMonitor(w, monitor, data);
    if (PixelGetAlpha(color) < 1.0 &&
        MagickSetImageAlphaChannel(w, ActivateAlphaChannel) == MagickFalse) {
        img_fail(w, "canvas alpha", e);
        return DestroyMagickWand(w);
    }
    return w;
}

MagickWand *img_solid(long width, long height, const PixelWand *color, struct err *e)
{
    return solid(width, height, color, before_deadline, deadline_in(guard.cfg.time_s * 1000), e);
}

MagickWand *img_layer(MagickWand *of, long width, long height, const PixelWand *color,
                      struct err *e)
{
    const Image *im =
        of != NULL && MagickGetNumberImages(of) > 0 ? GetImageFromMagickWand(of) : NULL;
    return solid(width, height, color, im != NULL ? im->progress_monitor : NULL,
                 im != NULL ? im->client_data : NULL, e);
}

const char *img_property_made(MagickWand *w, const char *name)
{
    Image *im = GetImageFromMagickWand(w);
    if (im == NULL) {
        return NULL;
    }
    ResetImagePropertyIterator(im);
    for (const char *key = GetNextImageProperty(im); key != NULL; key = GetNextImageProperty(im)) {
        if (strcmp(key, name) == 0) {
            return GetImageProperty(im, key); /* there: no walk */
        }
    }
    return NULL;
}

int img_auto_orient(MagickWand *w, struct err *e)
{
    if (MagickGetImageOrientation(w) <= TopLeftOrientation) {
        return 0;
    }
    if (MagickAutoOrientImage(w) == MagickFalse) {
        return img_fail(w, "auto-orient", e);
    }
    return 0;
}

struct format {
    const char *ext;
    const char *magick;
    const char *mime;
};

static const struct format formats[] = {
    {"jpg", "JPEG", "image/jpeg"},  {"jpeg", "JPEG", "image/jpeg"}, {"png", "PNG", "image/png"},
    {"webp", "WEBP", "image/webp"}, {"gif", "GIF", "image/gif"},    {"bmp", "BMP", "image/bmp"},
    {"tif", "TIFF", "image/tiff"},  {"tiff", "TIFF", "image/tiff"},
};

const char *img_source_magick(const struct img_probe *p)
{
    return coder_for(p->format);
}

const char *img_content_type(const char *magick)
{
    for (size_t i = 0; magick != NULL && i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(magick, formats[i].magick) == 0) {
            return formats[i].mime;
        }
    }
    return "application/octet-stream";
}

const char *img_format_ext(size_t i)
{
    return i < sizeof formats / sizeof formats[0] ? formats[i].ext : NULL;
}

bool img_format_for(const char *ext, const char **magick, const char **content_type)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(ext, formats[i].ext) == 0) {
            *magick = formats[i].magick;
            *content_type = formats[i].mime;
            return true;
        }
    }
    return false;
}

static InterlaceType interlace_named(const char *name)
{
    static const struct {
        const char *name;
        InterlaceType type;
    } names[] = {
        {"NoInterlace", NoInterlace},       {"LineInterlace", LineInterlace},
        {"PlaneInterlace", PlaneInterlace}, {"PartitionInterlace", PartitionInterlace},
        {"JPEGInterlace", JPEGInterlace},   {"GIFInterlace", GIFInterlace},
        {"PNGInterlace", PNGInterlace},     {"UndefinedInterlace", UndefinedInterlace},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            return names[i].type;
        }
    }
    return NoInterlace; /* Blitline's fallback for an unknown name */
}

/* The PNG chunks a stripped image leaves out ("png:exclude-chunk"): ImageMagick's list less pHYs
 * (not metadata: `density` sets it), and less what the save keeps or writes:
 * - the ICC profile: iCCP, and zTXt, for ImageMagick 6 writes no iCCP when both tEXt and zTXt
 *   are excluded (a kept profile was lost from every PNG output); the image's properties are
 *   deleted, or they would be written as zTXt (delete_metadata_properties);
 * - set_exif's EXIF: eXIf; its IPTC: tEXt, zTXt and zCCP (ImageMagick's name for its profiles
 *   written as text, "Raw profile type iptc"). */
static void stripped_chunks(bool keep_icc, bool exif, bool iptc, char *out, size_t cap)
{
    snprintf(out, cap, "bKGD,caNv,cHRM,gAMA,iTXt,sRGB,date%s%s%s%s", exif ? "" : ",eXIf",
             iptc ? "" : ",tEXt,zCCP", keep_icc || iptc ? "" : ",zTXt", keep_icc ? "" : ",iCCP");
}

/* Whether an image's pixels are all grey. A grey image that a composite, sepia_tone or a colour
 * drawn on it made colour keeps its grey profile, and GRAYColorspace too after a composite or
 * sepia_tone (sRGB after a line or text): through the grey profile's transform it would keep one
 * channel and lose its colours (left as they are). A pass over the pixels, only for an image with
 * a grey profile. */
static bool pixels_grey(MagickWand *w)
{
    ExceptionInfo *ex = AcquireExceptionInfo();
    ImageType t = IdentifyImageGray(GetImageFromMagickWand(w), ex);
    DestroyExceptionInfo(ex);
    return t != UndefinedType;
}

void img_forget_type(MagickWand *w)
{
    Image *first = GetImageFromMagickWand(w);
    while (first != NULL && GetPreviousImageInList(first) != NULL) {
        first = GetPreviousImageInList(first);
    }
    for (Image *im = first; im != NULL; im = GetNextImageInList(im)) {
        if (im->type == BilevelType || im->type == GrayscaleType ||
            im->type == GrayscaleMatteType) {
            im->type = UndefinedType;
        }
    }
}

void img_label_colour(MagickWand *w)
{
    if (MagickGetImageColorspace(w) == GRAYColorspace && !pixels_grey(w)) {
        (void)MagickSetImageColorspace(w, sRGBColorspace); /* a label: the pixels stay */
    }
}

/* Converts an RGB or CMYK image that has an ICC profile to sRGB through it (lcms, as `convert
 * -profile sRGB.icc`), and a grey image with a grey profile to sRGB's tone curve, before the
 * profile is dropped or cannot be written: without it the pixels stay in the profile's space and
 * are read as sRGB (Display P3, Adobe RGB or CMYK sources came out in wrong colours, a grey one of
 * another gamma too light or too dark). A profile lcms cannot use leaves the image as it is. */
static void to_srgb(MagickWand *w)
{
    size_t n = 0;
    unsigned char *icc = MagickGetImageProfile(w, "icc", &n);
    ColorspaceType cs = MagickGetImageColorspace(w);
    cmsColorSpaceSignature space = 0;
    bool srgb_already = icc != NULL && n > 0 && target_ready(&srgb, cmsCreate_sRGBProfile) &&
                        is_srgb(icc, n, &space);
    MagickRelinquishMemory(icc);
    const struct icc_target *to = NULL;
    if (space == 0 || srgb_already) {
        to = NULL; /* no profile lcms reads (a CMYK one it cannot read fails in ImageMagick too) */
    } else if (space == cmsSigGrayData && !pixels_grey(w)) {
        to = NULL; /* colours a grey profile does not describe: its transform keeps one channel */
    } else if (cs == CMYKColorspace || cs == sRGBColorspace || cs == RGBColorspace) {
        to = &srgb;
    } else if (cs == GRAYColorspace && space == cmsSigGrayData &&
               target_ready(&srgb_grey, make_srgb_grey)) {
        to = &srgb_grey; /* grey stays grey */
    }
    if (to == NULL) {
        return;
    }
    long t0 = clock_mono_us();
    if (MagickProfileImage(w, "icc", to->data, to->len) == MagickFalse) {
        ExceptionType kind;
        char *why = MagickGetException(w, &kind);
        char q[ERR_MSG_MAX + 16];
        LOG_DEBUG("icc_unused", "error=%s", log_quote(why != NULL ? why : "", q, sizeof q));
        MagickRelinquishMemory(why);
        MagickClearException(w);
        ClearMagickException(&GetImageFromMagickWand(w)->exception); /* the encoder reads it */
        return;
    }
    LOG_DEBUG("icc_to_srgb", "ms=%.3f", (double)(clock_mono_us() - t0) / 1000.0);
}

/* Deletes every image property but the writers' own hints (png:*, jpeg:*): with zTXt allowed (to
 * keep iCCP), ImageMagick's PNG writer would write each as text, EXIF (GPS position included),
 * XMP and the source's text chunks among them. */
static void delete_metadata_properties(MagickWand *w)
{
    size_t n = 0;
    char **names = MagickGetImageProperties(w, "*", &n);
    for (size_t i = 0; names != NULL && i < n; i++) {
        if (strncmp(names[i], "png:", 4) != 0 && strncmp(names[i], "jpeg:", 5) != 0) {
            MagickDeleteImageProperty(w, names[i]);
        }
        MagickRelinquishMemory(names[i]);
    }
    MagickRelinquishMemory(names);
}

/* Strips the metadata of an image a save does not keep it for, keeping the ICC profile when the
 * save keeps profiles, and letting through the PNG chunks of the tags set_exif writes after. */
static int strip_metadata(MagickWand *w, const struct job_save *save, struct err *e)
{
    bool keep_icc = save->save_profiles;
    char *added = keep_icc ? NULL : MagickGetImageArtifact(w, IMG_ADDED_PROFILE_ARTIFACT);
    if (!keep_icc && added == NULL) {
        to_srgb(w);
    }
    MagickRelinquishMemory(added);
    size_t icc_len = 0;
    unsigned char *icc = keep_icc ? MagickGetImageProfile(w, "icc", &icc_len) : NULL;
    int rc = 0;
    if (MagickStripImage(w) == MagickFalse) {
        rc = img_fail(w, "strip metadata", e);
    } else if (icc != NULL && icc_len > 0 &&
               MagickSetImageProfile(w, "icc", icc, icc_len) == MagickFalse) {
        rc = img_fail(w, "keep ICC profile", e);
    }
    if (icc != NULL) {
        MagickRelinquishMemory(icc);
    }
    delete_metadata_properties(w); /* TIFF wrote `label` as PageName, PNG all of them as text */
    /* StripImage also tells the PNG writer to leave out iCCP and pHYs */
    bool tags = save->set_exif != NULL;
    char chunks[128];
    stripped_chunks(keep_icc, tags && settags_has(save->set_exif, SETTAGS_EXIF),
                    tags && settags_has(save->set_exif, SETTAGS_IPTC), chunks, sizeof chunks);
    if (rc == 0 && MagickSetImageArtifact(w, "png:exclude-chunk", chunks) == MagickFalse) {
        rc = img_fail(w, "set PNG chunks", e);
    }
    return rc;
}

/* A save's encoding_options as the WebP encoder's defines (`-define webp:k=v`); a value
 * job_encoding_value() leaves out is not set. */
static int webp_encoding_options(MagickWand *w, json_object *opts, struct err *e)
{
    if (opts == NULL) {
        return 0;
    }
    json_object_object_foreach(opts, name, v)
    {
        const char *value = job_encoding_value(v);
        char key[JOB_ENCODING_NAME_MAX + 8];
        if (value == NULL) {
            continue;
        }
        snprintf(key, sizeof key, "webp:%s", name);
        if (MagickSetOption(w, key, value) == MagickFalse) {
            return img_fail(w, "set encoding_options", e);
        }
    }
    return 0;
}

/* Sets the profile `name` to the `len` bytes at `data`, or removes it when there are none. */
static int put_profile(MagickWand *w, const char *name, const struct buf *b, struct err *e)
{
    if (b->len == 0) {
        unsigned char *gone = MagickRemoveImageProfile(w, name, &(size_t){0});
        MagickRelinquishMemory(gone);
        return 0;
    }
    if (MagickSetImageProfile(w, name, b->data, b->len) == MagickFalse) {
        return img_fail(w, "set_exif", e);
    }
    return 0;
}

/* Deletes the image's "exif:NAME" properties of the EXIF tags set: the PNG encoder writes them
 * as text beside the EXIF block, a deleted or replaced value among them. */
static void delete_exif_properties(MagickWand *w, json_object *set)
{
    json_object_object_foreach(set, key, v)
    {
        (void)v;
        enum settags_group group;
        const char *name = settags_name(key, &group);
        char property[64];
        if (name == NULL || group != SETTAGS_EXIF) {
            continue;
        }
        /* ImageMagick's name for ModifyDate (0x0132) is DateTime */
        snprintf(property, sizeof property, "exif:%s",
                 strcmp(name, "ModifyDate") == 0 ? "DateTime" : name);
        MagickDeleteImageProperty(w, property);
    }
}

/* A density as JFIF and PNG's pHYs hold it: a whole number of pixels a unit, 1 to 65535. */
static unsigned whole_density(double d)
{
    return d < 1.5 ? 1 : d >= 65535.0 ? 65535 : (unsigned)lround(d);
}

/* What a new EXIF IFD0 says of the image `w` (saved as JPEG or not): its resolution as the
 * encoder writes it (JFIF's density, pHYs), 1:1 without a unit when it has none. */
static struct settags_image tags_image(MagickWand *w, bool jpeg)
{
    double x = 0, y = 0;
    MagickGetImageResolution(w, &x, &y);
    ResolutionType units = MagickGetImageUnits(w);
    struct settags_image img = {.x_res = 1, .y_res = 1, .unit = 1, .jpeg = jpeg};
    if (x > 0 && y > 0) {
        img.x_res = whole_density(x);
        img.y_res = whole_density(y);
        img.unit = units == PixelsPerInchResolution         ? 2
                   : units == PixelsPerCentimeterResolution ? 3
                                                            : 1;
    }
    return img;
}

/* save.set_exif: its EXIF and IPTC tags merged into the image's profiles (common/settags.h);
 * the IPTC also into a Photoshop block the image has, which the JPEG encoder writes in its
 * place. */
static int write_tags(MagickWand *w, const struct job_save *save, const char *magick, struct err *e)
{
    bool exif = settags_has(save->set_exif, SETTAGS_EXIF);
    bool iptc = settags_has(save->set_exif, SETTAGS_IPTC);
    bool jpeg = strcmp(magick, "JPEG") == 0;
    struct buf b, ps;
    buf_init(&b, 0);
    buf_init(&ps, 0);
    MagickResetIterator(w); /* the first image's profiles are the file's */
    int rc = 0;
    size_t n = 0;
    unsigned char *old = exif ? MagickGetImageProfile(w, "exif", &n) : NULL;
    if (exif) {
        delete_exif_properties(w, save->set_exif);
        struct settags_image img = tags_image(w, jpeg);
        rc = settags_exif(save->set_exif, old, n, &img, &b, e);
        rc = rc < 0 ? rc : put_profile(w, "exif", &b, e);
    }
    MagickRelinquishMemory(old);
    old = rc == 0 && iptc ? MagickGetImageProfile(w, "iptc", &n) : NULL;
    if (rc == 0 && iptc) {
        rc = settags_iptc(save->set_exif, old, n, &b, e);
    }
    MagickRelinquishMemory(old);
    old = rc == 0 && iptc ? MagickGetImageProfile(w, "8bim", &n) : NULL;
    if (old != NULL) { /* set first: setting "8bim" sets "iptc" from it */
        rc = settags_8bim(old, n, (const unsigned char *)b.data, b.len, &ps, e);
        rc = rc < 0 ? rc : put_profile(w, "8bim", &ps, e);
    }
    MagickRelinquishMemory(old);
    if (rc == 0 && iptc) {
        rc = put_profile(w, "iptc", &b, e);
    }
    buf_finish(&b);
    buf_finish(&ps);
    return rc < 0 ? err_wrap(e, "set_exif of '%.100s'", save->image_identifier) : 0;
}

int img_as_saved(MagickWand *w, const struct job_save *save, struct err *e)
{
    const char *magick = NULL, *mime = NULL;
    if (!save->save_metadata && strip_metadata(w, save, e) < 0) {
        return -1;
    }
    if (img_format_for(save->format, &magick, &mime) &&
        MagickSetImageFormat(w, magick) == MagickFalse) {
        return img_fail(w, "set output format", e);
    }
    /* with its tags, as the output has them: a reference reads them ("&identifier") */
    if (magick != NULL && save->set_exif != NULL && write_tags(w, save, magick, e) < 0) {
        return -1;
    }
    /* and without what only this save's encoding was to read: the image stands for its file,
     * and a reference's own saves must not drop chunks, skip a conversion or interlace by it */
    static const char *const this_save[] = {"png:exclude-chunk", IMG_ADDED_PROFILE_ARTIFACT,
                                            IMG_INTERLACE_ARTIFACT};
    for (size_t i = 0; i < sizeof this_save / sizeof this_save[0]; i++) {
        MagickDeleteImageArtifact(w, this_save[i]);
    }
    return 0;
}

static int apply_save_options(MagickWand *w, const struct job_save *save, const char *magick,
                              long default_quality, struct err *e)
{
    /* a save that names no interlace takes the interlace function's, or none */
    char *set = save->interlace == NULL ? MagickGetImageArtifact(w, IMG_INTERLACE_ARTIFACT) : NULL;
    const char *name = save->interlace != NULL ? save->interlace : set;
    InterlaceType interlace = name != NULL ? interlace_named(name) : NoInterlace;
    MagickRelinquishMemory(set);
    if (!save->save_metadata && strip_metadata(w, save, e) < 0) {
        return -1;
    }
    bool cmyk_format = strcmp(magick, "JPEG") == 0 || strcmp(magick, "TIFF") == 0;
    if (!cmyk_format && MagickGetImageColorspace(w) == CMYKColorspace) {
        to_srgb(w); /* through its profile: the encoder's own conversion ignores it */
    }
    if (MagickSetImageFormat(w, magick) == MagickFalse) {
        return img_fail(w, "set output format", e);
    }
    if (save->set_exif != NULL && write_tags(w, save, magick, e) < 0) {
        return -1;
    }
    bool lossy = strcmp(magick, "JPEG") == 0 || strcmp(magick, "WEBP") == 0;
    long q = save->quality > 0 ? save->quality : default_quality;
    if (lossy && MagickSetImageCompressionQuality(w, (size_t)q) == MagickFalse) {
        return img_fail(w, "set quality", e);
    }
    /* the encoders read the wand's (image_info) scheme, the image's is kept for consistency */
    InterlaceType il = interlace;
    if (MagickSetInterlaceScheme(w, il) == MagickFalse ||
        MagickSetImageInterlaceScheme(w, il) == MagickFalse) {
        return img_fail(w, "set interlace", e);
    }
    if (strcmp(magick, "WEBP") == 0 && webp_encoding_options(w, save->encoding_options, e) < 0) {
        return -1;
    }
    if (save->png_quantize && strcmp(magick, "PNG") == 0 &&
        MagickQuantizeImage(w, 256, sRGBColorspace, 0, MagickFalse, MagickFalse) == MagickFalse) {
        return img_fail(w, "png_quantize", e);
    }
    return 0;
}

/* Whether `w` is blank as Blitline's check_blank meant it: empty, or all of one colour (every
 * channel, alpha included, the same in every pixel), or wholly transparent. */
static bool blank_image(MagickWand *w)
{
    bool alpha = MagickGetImageAlphaChannel(w) == MagickTrue;
    double lo = 0, hi = 0;
    if (MagickGetImageWidth(w) == 0 || MagickGetImageHeight(w) == 0) {
        return true;
    }
    if (alpha && MagickGetImageChannelRange(w, AlphaChannel, &lo, &hi) == MagickTrue && hi <= 0.0) {
        return true; /* nothing shows, whatever its colours */
    }
    ChannelType channels[] = {RedChannel, GreenChannel, BlueChannel, AlphaChannel, BlackChannel};
    size_t n = sizeof channels / sizeof channels[0];
    for (size_t i = 0; i < n; i++) {
        if ((channels[i] == AlphaChannel && !alpha) ||
            (channels[i] == BlackChannel && MagickGetImageColorspace(w) != CMYKColorspace)) {
            continue;
        }
        if (MagickGetImageChannelRange(w, channels[i], &lo, &hi) == MagickFalse || hi > lo) {
            return false;
        }
    }
    return true;
}

/* Encodes `w` as it is set into out->blob and out->len, for `save`; 0, or -1 (out released: the
 * error names the output, "encode of 'thumb' as jpg: ..."). */
static int encode_blob(MagickWand *w, const struct job_save *save, struct img_output *out,
                       struct err *e)
{
    MagickResetIterator(w);
    out->blob = MagickGetImageBlob(w, &out->len);
    /* an encoder stopped by the deadline, or by an error, may still hand back half a file */
    if (out->blob == NULL || out->len == 0 || MagickGetExceptionType(w) >= ErrorException ||
        past_deadline(w)) {
        img_output_finish(out);
        char what[160];
        snprintf(what, sizeof what, "encode of '%.100s' as %s", save->image_identifier,
                 save->format);
        return img_fail(w, what, e);
    }
    return 0;
}

/* save.max_filesize ("we will try to reduce the image to fit within a maximum filesize"): a
 * lossy JPEG or WebP output larger than it is encoded again at lower qualities (a binary search
 * over 1 to the quality it had) and the highest quality that fits is kept; when none fits, the
 * smallest encoding. Other outputs are left as they are (their quality changes nothing). */
static int fit_filesize(MagickWand *w, const struct job_save *save, const char *magick,
                        struct img_output *out, struct err *e)
{
    size_t max = (size_t)save->max_filesize;
    char *lossless = MagickGetOption(w, "webp:lossless");
    bool lossy = strcmp(magick, "JPEG") == 0 ||
                 (strcmp(magick, "WEBP") == 0 &&
                  (lossless == NULL || IsStringTrue(lossless) == MagickFalse));
    MagickRelinquishMemory(lossless);
    if (save->max_filesize <= 0 || out->len <= max || !lossy) {
        return 0;
    }
    struct img_output smallest = *out, fit = {0}; /* each encoding with its quality */
    long lo = 1, hi = out->quality > 1 ? out->quality - 1 : 0;
    while (lo <= hi) {
        long q = lo + (hi - lo) / 2;
        struct img_output t = {.quality = q};
        int rc = MagickSetImageCompressionQuality(w, (size_t)q) == MagickFalse
                     ? img_fail(w, "set quality", e)
                     : encode_blob(w, save, &t, e);
        if (rc < 0) {
            img_output_finish(&smallest);
            img_output_finish(&fit);
            *out = (struct img_output){0};
            return -1;
        }
        if (t.len <= max) { /* fits: try higher */
            img_output_finish(&fit);
            fit = t;
            lo = q + 1;
            continue;
        }
        if (t.len < smallest.len) {
            img_output_finish(&smallest);
            smallest = t;
        } else {
            img_output_finish(&t);
        }
        hi = q - 1;
    }
    struct img_output *keep = fit.blob != NULL ? &fit : &smallest;
    img_output_finish(keep == &fit ? &smallest : &fit);
    out->blob = keep->blob;
    out->len = keep->len;
    out->quality = keep->quality;
    return 0;
}

int img_encode(MagickWand *w, const struct job_save *save, long default_quality, size_t max_bytes,
               struct img_output *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    const char *magick;
    if (!img_format_for(save->format, &magick, &out->content_type)) {
        return err_set(e, "Unsupported output format '%s' for '%s'", save->format,
                       save->image_identifier);
    }
    if (apply_save_options(w, save, magick, default_quality, e) < 0) {
        return -1;
    }
    out->width = (long)MagickGetImageWidth(w);
    out->height = (long)MagickGetImageHeight(w);
    MagickGetImageResolution(w, &out->density_x, &out->density_y);
    out->depth = (long)MagickGetImageDepth(w);
    out->quality = (long)MagickGetImageCompressionQuality(w);
    out->blank = save->check_blank && blank_image(w);
    if (encode_blob(w, save, out, e) < 0 || fit_filesize(w, save, magick, out, e) < 0) {
        return -1;
    }
    if (out->len > max_bytes) {
        size_t len = out->len;
        img_output_finish(out);
        return err_set(
            e, "output '%s' is %zu bytes, more than the limit of %zu (PIXQ_MAX_OUTPUT_BYTES)",
            save->image_identifier, len, max_bytes);
    }
    return 0;
}

void img_output_finish(struct img_output *out)
{
    if (out->blob != NULL) {
        MagickRelinquishMemory(out->blob);
    }
    out->blob = NULL;
    out->len = 0;
}
