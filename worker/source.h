/* source: where a job's images come from, and what is known about them (original_meta).
 *
 * A `src` (the job's, or a composite/tile/append/watermark parameter's) is one of:
 *   - a URL string, or {"name": "s3", "bucket", "key"}: bytes fetched by the caller's callback
 *     (HTTP and S3 in the worker, tests/data files in pixq-apply);
 *   - "&identifier": an image saved by a pre_process job, kept in a `struct src_refs`;
 *   - {"name": "canvas", "width", "height", "color"}: a solid image (10x10 #ffffff by default).
 * The canvas and reference logic lives here so that the worker and pixq-apply share it. */
#ifndef PIXQ_SOURCE_H
#define PIXQ_SOURCE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <wand/MagickWand.h>

#include "buf.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "shrink.h"

#define SRC_CANVAS_SIDE    10        /* default canvas width and height, pixels */
#define SRC_CANVAS_COLOR   "#ffffff" /* default canvas colour */
#define SRC_MAX_REFS       256       /* most images pre_process jobs may keep */
#define SRC_EXIF_MAX_ITEMS 512       /* most EXIF entries reported in original_meta */
#define SRC_SHOWN_MAX      200       /* bytes of a src quoted in an error */

/* Fetches the encoded bytes of a URL string or an {"name": "s3"} object into `out` (emptied
 * first). Returns 0, or -1 with a Blitline-style message in `e` ("Failed to download ..."). */
typedef int (*src_fetch_fn)(void *user, json_object *src, struct buf *out, struct err *e);

/* Images saved by pre_process jobs that the job refers to, by image_identifier: the images
 * themselves as they were saved (stripped as the save said), so that a reference keeps its alpha
 * channel and takes no second lossy pass, and their encoded bytes (the hash, filesize and
 * move_original of a referenced src). */
struct src_refs;

/* An empty store, or NULL if out of memory. */
struct src_refs *src_refs_create(void);

/* Frees the store; NULL is allowed. */
void src_refs_destroy(struct src_refs *r);

/* Keeps a copy of `image` and of its `len` encoded bytes under `identifier`; a later image with
 * the same identifier replaces the earlier one. Returns 0 or -1 (out of memory, too many). */
int src_refs_add(struct src_refs *r, const char *identifier, MagickWand *image, const void *data,
                 size_t len, struct err *e);

/* How sources are loaded. */
struct src_loader {
    src_fetch_fn fetch;          /* URL and s3 sources; NULL: they cannot be loaded */
    void *fetch_user;            /* passed to `fetch` */
    const struct src_refs *refs; /* "&identifier" sources; NULL: none exist */
    long max_pixels;             /* largest source, checked before decoding */
};

/* A loaded source. */
struct src_image {
    MagickWand *wand;       /* first frame, not yet auto-oriented; owned. While `pending`, only what
                               img_probe() read (the format...): see src_decode() */
    struct buf bytes;       /* the encoded bytes (empty for a canvas) */
    long width, height;     /* as stored, before auto-orient (and before any shrink-on-load) */
    bool pending;           /* passed the image guard, pixels not decoded yet */
    bool fetched;           /* its bytes came: a failure since is the image's own */
    struct img_probe probe; /* what the guard read, while pending */
};

/* The sources of an `other_images` value: a comma-separated string (each item trimmed of spaces,
 * empty ones dropped) or an array, as a new array (json_object_put() it); NULL for another
 * type. */
json_object *src_list(json_object *v);

/* Loads `src` into `out` (initialised here; release with src_image_finish(), also after a
 * failure): fetched and through the image guard, its pixels left to src_decode() (a canvas is
 * made at once). Returns 0, or -1 with the reason: Blitline's "Image reference 'X' not found.
 * Preprocessing probably failed.", a download error, or the guard's refusal. */
int src_open(const struct src_loader *l, json_object *src, struct src_image *out, struct err *e);

/* As src_open() for bytes already fetched: takes the contents of `bytes` (left empty). */
int src_open_bytes(const struct src_loader *l, struct buf *bytes, struct src_image *out,
                   struct err *e);

/* Writes `src` as an error message quotes it into `out`: a string with a URL's password as
 * "***" (cfg_redact_url()), an object as JSON; at most SRC_SHOWN_MAX bytes, a cut (between
 * UTF-8 characters) marked "...".
 * Returns how many bytes of `out` are the src's own (all but that "..."). */
size_t src_shown(json_object *src, char out[static SRC_SHOWN_MAX + 2]);

/* Whether the error `e` quotes `src` (as src_shown() writes it) already: a failed download
 * names the URL it tried. */
bool src_quoted_in(json_object *src, const struct err *e);

/* Names `src`, the source `im` was loaded from, in the error `e` when the failure is the
 * image's own (its bytes came: the guard refused them, or they did not decode), as Blitline's
 * "Failed to load image at 'URL': <reason>". A download's error, which names the URL, a
 * reference's or a canvas's are left as they are. Returns -1. */
int src_blame(json_object *src, const struct src_image *im, struct err *e);

/* Decodes a pending source's pixels (nothing to do otherwise): in full, or with `plan` (NULL:
 * none) at the reduced size shrink_plan() chose. Should libjpeg not give exactly that size, the
 * source is decoded again in full (and a warning logged). Returns 0, or -1 with the reason. */
int src_decode(struct src_image *im, const struct shrink_plan *plan, struct err *e);

/* Releases a loaded source; safe on a zeroed or finished one. */
void src_image_finish(struct src_image *im);

/* op_fetch_fn over a `const struct src_loader *` (passed as `user`): the bytes of a URL or
 * {"name": "s3"} source that is no image (add_profile's ICC file): "&identifier" and canvas
 * sources are refused. Returns 0, or -1 with the reason in `e`. */
int src_fetch(void *user, json_object *src, struct buf *out, struct err *e);

/* op_load_fn over a `const struct src_loader *` (passed as `user`): loads and decodes in full an
 * image a function names. Returns a wand the caller destroys, or NULL with the reason in `e`. */
MagickWand *src_load(void *user, json_object *src, struct err *e);

/* Builds original_meta for a loaded source (call before auto-orient): width and height,
 * date_created and lat/lng from EXIF, and as the job asks, original_exif (get_exif),
 * all_exif + filesize (extended_metadata) and hash (md5, sha256 hex; crc32 integer) of the
 * bytes. Returns a new object (the caller owns it), or NULL with the reason in `e` (a bad `hash`
 * name). */
json_object *src_describe(const struct job *j, const struct src_image *im, struct err *e);

#endif
