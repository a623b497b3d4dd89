/* srccache: the sources one job names more than once, downloaded once.
 *
 * A job may name the same image in several places: a watermark composited onto each of its
 * sizes, a logo appended twice, the job's own src composited onto itself. Each would be one more
 * download (and one more wait on a slow server, against PIXQ_JOB_DOWNLOAD_TIMEOUT_MS).
 *
 * Before the job runs, srccache_start() reads its document for the sources it names: the value
 * of every "src" member (a URL string or an {"name": "s3", ...} object; not "&identifier" nor a
 * canvas) and every item of every "other_images" (src_list()). A source named twice or more is
 * kept once downloaded (a copy of its bytes) while all kept bytes stay within the budget
 * (PIXQ_SOURCE_CACHE_BYTES); a source named once is never copied. Two namings are the same source
 * when they are the same URL, or s3 objects of the same bucket, location and key. Only the job's
 * run keeps them: srccache_start() and srccache_clear() drop them all. */
#ifndef PIXQ_SRCCACHE_H
#define PIXQ_SRCCACHE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct srccache_entry {
    char *key;        /* "u" and the URL, or "o" and the s3 object's bucket, location and key */
    struct buf bytes; /* empty until kept (an empty download is not) */
};

struct srccache {
    struct srccache_entry *entries; /* the sources named twice or more, sorted by key */
    size_t n;
    size_t kept_bytes; /* of all entries */
    size_t budget;     /* most kept_bytes; 0: nothing is kept */
};

/* An empty cache. */
void srccache_init(struct srccache *c);

/* Drops what the cache held and notes the sources `job` (a job's whole document) names more than
 * once, to keep up to `budget` bytes of them. Returns how many such sources there are, or -1 if
 * memory ran out (then nothing is kept). */
long srccache_start(struct srccache *c, json_object *job, size_t budget);

/* Copies the kept bytes of `src` into `out` (emptied first). Returns whether they were kept (on
 * false, `out` is untouched; also when memory ran out). */
bool srccache_get(const struct srccache *c, json_object *src, struct buf *out);

/* Keeps a copy of `len` bytes (not 0) downloaded for `src` if the job names it more than once
 * and they fit the budget. Returns whether they were kept. */
bool srccache_put(struct srccache *c, json_object *src, const void *data, size_t len);

/* Drops everything (the cache stays usable). */
void srccache_clear(struct srccache *c);

#endif
