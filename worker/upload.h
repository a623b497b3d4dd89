/* upload: one output's way to S3, under its bucket's rate limit shared by the whole fleet.
 *
 * An upload is described by a task (JSON, so that it can wait in Redis as it is):
 *   {"job_id", "n", "image_identifier", "bucket", "region"?, "key", "headers": {...},
 *    "width", "height", "attempt", "reserved"}
 * up_send() takes a token from pixq:rl:{<bucket>} (rl_acquire.lua) unless the task already holds
 * a reserved slot, waits for its slot when it is near (PIXQ_S3_LOCAL_WAIT_MS), PUTs the bytes, and
 * classifies S3's answer: done; park (the slot is far away, or S3 throttled or failed in a way
 * that may pass: the caller keeps the bytes in Redis and schedules the task); or failed for good.
 * Throttling answers slow the bucket down for everyone (rl_feedback.lua); a wrong-region answer
 * is followed to the bucket's region, which is remembered in the limiter hash. */
#ifndef PIXQ_UPLOAD_H
#define PIXQ_UPLOAD_H

#include <json-c/json.h>
#include <stddef.h>

#include "buf.h"
#include "cfg.h"
#include "err.h"
#include "http.h"
#include "rq.h"
#include "s3.h"

enum up_outcome {
    UP_DONE,   /* uploaded: `url` holds the object's URL */
    UP_PARK,   /* run the task again in `delay_ms` (the task was updated: attempt, reserved) */
    UP_FAILED, /* failed for good: `e` says why, in words for the postback */
};

struct uploader {
    const struct cfg *cfg;
    struct http *http;
    const struct s3_config *s3;
    struct rq *rq;   /* for the limiter; NULL: no limit (tools and tests) */
    long horizon_ms; /* a slot taken at most this far ahead; 0: PIXQ_S3_HORIZON_MS */
    /* Called when the bucket's limiter re-planned at a higher rate (rl_acquire.lua), to bring the
     * bucket's parked uploads forward (replan.lua), with the bucket's new epoch; NULL: none. */
    void (*replanned)(void *user, const char *bucket, long interval_us, long epoch);
    void *replanned_user;
};

/* Sends `len` bytes as the task says. Returns the outcome; see above. */
enum up_outcome up_send(const struct uploader *u, json_object *task, const void *data, size_t len,
                        struct buf *url, long *delay_ms, struct err *e);

/* The delay before the next attempt of an upload whose attempt `attempt` (from 1) just failed,
 * `throttled` or not: full jitter, from 0 to PIXQ_S3_RETRY_BASE_MS (after a throttling answer
 * PIXQ_S3_THROTTLE_RETRY_BASE_MS) doubled for each attempt after the first, at most
 * PIXQ_S3_RETRY_MAX_MS. In ms. */
long up_backoff_ms(const struct cfg *c, long attempt, bool throttled);

/* The S3 object a task names (borrowed from the task). */
struct s3_object up_object(json_object *task);

/* wait_for_s3: HEADs every object of `objs` (a JSON array of {"bucket","region","key"}) every
 * PIXQ_WAIT_FOR_S3_INTERVAL_MS until all are readable, at most PIXQ_WAIT_FOR_S3_MAX_MS. Returns
 * the number still unreadable when it gave up (0: all readable). */
int up_wait_for_s3(const struct uploader *u, json_object *objs, const char *job_id);

#endif
