/* upload: one output's way to S3, under its bucket's rate limit shared by the whole fleet.
 *
 * An upload is described by a task (JSON, so that it can wait in Redis as it is):
 *   {"job_id", "n", "image_identifier", "bucket", "region"?, "key", "headers": {...},
 *    "width", "height", "attempt", "reserved"}
 * up_send() takes a token from pixq:rl:{<bucket>} (rl_acquire.lua) unless the task already holds
 * a reserved slot, waits for its slot when it is near (PIXQ_S3_LOCAL_WAIT_MS), PUTs the bytes, and
 * classifies S3's answer: done; park (the slot is far away, or S3 throttled or failed in a way
 * that may pass: the caller keeps the bytes in Redis and schedules the task); or failed for good.
 * An output Redis has no room for is held in the worker until its turn instead of being parked:
 * the fleet slows down to what S3 takes rather than filling Redis.
 * Throttling answers slow the bucket down for everyone (rl_feedback.lua); a wrong-region answer
 * is followed to the bucket's region, which is remembered in the limiter hash. */
#ifndef PIXQ_UPLOAD_H
#define PIXQ_UPLOAD_H

#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
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
    struct rq *rq; /* for the limiter; NULL: no limit (tools and tests) */
    /* whether Redis has room for `bytes` more of parked output (PIXQ_PARK_REDIS_MAX_MB); if not,
     * `why` (ERR_MSG_MAX bytes) says so. NULL: it always has */
    bool (*room)(void *user, size_t bytes, char *why);
    void *room_user;
    volatile sig_atomic_t *stop; /* set: a worker holding an output stops waiting and parks it */
};

/* Sends `len` bytes as the task says. Returns the outcome; see above. When the bytes are `fresh`
 * (not in Redis yet) and Redis has no room to park them, the worker holds them instead: it waits
 * for the slot, or the back-off after a failure, itself and sends again, and parks only when
 * asked to stop. */
enum up_outcome up_send(const struct uploader *u, json_object *task, const void *data, size_t len,
                        bool fresh, struct buf *url, long *delay_ms, struct err *e);

/* The S3 object a task names (borrowed from the task). */
struct s3_object up_object(json_object *task);

/* wait_for_s3: HEADs every object of `objs` (a JSON array of {"bucket","region","key"}) every
 * PIXQ_WAIT_FOR_S3_INTERVAL_MS until all are readable, at most PIXQ_WAIT_FOR_S3_MAX_MS. Returns
 * the number still unreadable when it gave up (0: all readable). */
int up_wait_for_s3(const struct uploader *u, json_object *objs, const char *job_id);

#endif
