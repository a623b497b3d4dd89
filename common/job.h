/* job: the Blitline job model, parsed with json-c.
 *
 * A job is the JSON a producer pushed. job_parse() keeps the parsed document and builds a tree of
 * `struct job_fn` whose strings and objects are borrowed from it, so they live as long as the
 * job. A payload that is not a JSON object (or breaks the size and depth limits) cannot be
 * answered at all and yields NULL; a JSON object with a bad function tree yields a job whose
 * `error` says what is wrong, so that the worker can still post the failure back.
 *
 * Parameters are read with job_param_*(), which accept JSON numbers and booleans and their
 * string forms ("800", "true") and name the function and parameter in every error. */
#ifndef PIXQ_JOB_H
#define PIXQ_JOB_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

#define JOB_ID_MAX           128  /* bytes for a job id, with NUL */
#define JOB_MAX_PRE          16   /* most pre_process steps of one job */
#define JOB_MAX_BATCH        1000 /* most jobs in one JSON-array payload */
#define JOB_MAX_HEADERS      24   /* most postback_headers, or headers of one s3_destination */
#define JOB_HEADER_VALUE_MAX 4096 /* bytes of one header value from a job */
#define JOB_HEADER_NAME_MAX  128  /* bytes of one header name from a job (all of them signed fit) */
#define JOB_S3_KEY_MAX       1024 /* bytes of an S3 key (S3's own limit) */
#define JOB_IDENTIFIER_MAX   512  /* bytes of an image_identifier */
#define JOB_SALVAGE_MAX      (16L * 1024 * 1024) /* largest payload scanned for its postback_url */

#define JOB_MAX_ENCODING_OPTIONS 32 /* most settings in a save's encoding_options */
#define JOB_ENCODING_NAME_MAX    32 /* bytes of an encoding_options name */
#define JOB_ENCODING_VALUE_MAX   8  /* longest encoding_options value Blitline passed on */

/* Bytes a payload may hold past PIXQ_MAX_JOB_BYTES for the members the worker writes into it
 * itself: a job_id (`"job_id":"<23 characters>",`) and the run number (`,"pixq_attempt":5`). */
#define JOB_OWN_BYTES 64

struct job_limits {
    size_t max_bytes;       /* longest payload */
    int max_depth;          /* deepest JSON nesting */
    size_t max_functions;   /* most functions in the whole tree */
    size_t own_bytes;       /* taken past max_bytes (JOB_OWN_BYTES in the worker; 0) */
    size_t max_batch_bytes; /* longest batch payload (0: max_bytes) */
};

/* Where and how one output is saved (a function's `save` block). */
struct job_save {
    const char *image_identifier; /* required */
    const char *bucket;           /* s3_destination.bucket(.name); NULL: the default bucket */
    const char *location;         /* s3_destination.bucket.location; NULL: default region */
    const char *key;              /* s3_destination.key; NULL: generated */
    json_object *headers;         /* s3_destination.headers, or NULL */
    char format[16];              /* lower-case extension without the dot: "jpg", "png" */
    long quality;                 /* 0: the deployment's default */
    bool skip;                    /* no output, only metadata */
    bool save_metadata;           /* keep EXIF and other metadata */
    bool save_profiles;           /* keep the ICC profile while stripping the rest */
    const char *interlace;        /* ImageMagick interlace name, or NULL */
    bool png_quantize;
    bool check_blank;  /* the result says "is_blank": true of an output of one colour */
    long max_filesize; /* bytes a JPEG or WebP output should fit in (lower quality); 0: none */
    json_object *encoding_options; /* WebP encoder settings ("lossless": "true"...), or NULL */
    bool return_keys;      /* s3_destination.return_keys: the result names the key (s3_key) */
    json_object *set_exif; /* EXIF and IPTC tags to write (common/settags.h), or NULL */
    int index;             /* 0-based, unique among the saves of the job and of its pre_process
                              steps, in the order they run (pre_process first) */
};

struct job_fn {
    const char *name;
    json_object *params; /* the params object, or NULL */
    struct job_save *save;
    struct job_fn *children;
    size_t n_children;
};

struct job;

/* One pre_process step (BLITLINE.md 2.5): exactly one of the two is set. */
struct job_pre {
    struct job *job;       /* "job": a nested job run first, its saves kept for "&identifier" */
    struct job_save *move; /* "move_original" (or "convert_original"): where the untouched src is
                            * copied; `format` is the key's extension, "" to keep the source's */
};

struct job {
    json_object *root; /* owned (a nested job holds a reference to its part of the document) */
    char id[JOB_ID_MAX];
    bool id_assigned; /* the payload had no job_id and job_assign_id() made one */
    json_object *src; /* string or object */
    const char *postback_url;
    /* postback_url given as {"save": {"s3_destination": ...}}, as Blitline's worker took it: the
     * result JSON is written to that object instead of POSTed (postback_url is then NULL) */
    struct job_save *postback_save;
    json_object *postback_headers;
    bool suppress_auto_orient;
    bool get_exif;          /* original_meta.original_exif */
    bool extended_metadata; /* original_meta.all_exif and filesize */
    bool include_iptc;      /* original_meta.iptc */
    const char *hash;       /* "md5", "sha256", "crc32" in any case (another: none), or NULL */
    double v;
    struct job_fn *functions;
    size_t n_functions;  /* top level */
    struct job_pre *pre; /* pre_process steps in order */
    size_t n_pre;
    char error[ERR_MSG_MAX]; /* non-empty: the job is invalid, this says why */
    /* A payload over the size or depth limits that is still a JSON object (up to
     * JOB_SALVAGE_MAX bytes): the job holds the members that say how its failure is posted
     * alone (job_id, postback_url, postback_headers, v, content_type_json, postback_error_only,
     * retry_postback, pixq's enqueue stamp and run number) and `error` says which limit it
     * broke. */
    bool salvaged;
    char *text;      /* the payload (owned, NUL-terminated; NULL in a pre_process job), with what
                        job_assign_id() and job_set_attempt() wrote into it */
    size_t text_len; /* its bytes */
};

/* Parses a payload. Returns NULL (reason in `e`) if it is not a usable JSON object; otherwise a
 * job to release with job_destroy(), valid when `error` is empty. A payload over lim's size or
 * depth is a salvaged job (above) when a scan finds it one JSON object, NULL otherwise. */
struct job *job_parse(const char *text, size_t len, const struct job_limits *lim, struct err *e);

/* Whether a payload is a batch: a JSON array of jobs (its first non-blank byte is '['), as
 * Blitline accepted and any Redis client may push. */
bool job_is_batch(const char *text, size_t len);

/* Called by job_split_batch() with the JSON text of one element (`len` bytes, not
 * NUL-terminated); returns 0, or -1 to stop. */
typedef int (*job_each_fn)(void *user, const char *job, size_t len);

/* Splits a batch into its jobs: calls `each` with every element of the array, in order, so that
 * the caller can queue them as separate jobs (an element that is not an object is passed on too:
 * it fails on its own, as one over a job's size or depth limits does). The payload is at most
 * lim->max_batch_bytes and holds at most JOB_MAX_BATCH elements; one that is not JSON as RFC
 * 8259 writes it is read by json-c within the job's limits (single quotes, comments), its
 * elements then written out compact. Returns the number of elements, or -1 with the reason in
 * `e`. */
int job_split_batch(const char *text, size_t len, const struct job_limits *lim, job_each_fn each,
                    void *user, struct err *e);

/* Frees the job and its document; NULL is allowed. */
void job_destroy(struct job *j);

/* Gives a job without a job_id a new one (its pre_process jobs share it) and writes the payload to
 * keep into `payload` (and j->text): the payload with `"job_id":"<id>"` as its last member (json-c
 * keeps the last of a name), the client's bytes kept as they are. Returns 0 or -1. */
int job_assign_id(struct job *j, struct buf *payload, struct err *e);

/* The job's run number, kept in its payload as "pixq_attempt" by the worker's retry (1 for the
 * first run). */
long job_attempt(const struct job *j);

/* Sets the job's run number ("pixq_attempt", the last member of its payload, replacing the one
 * pixq wrote there before) and writes the payload to keep into `payload` (and j->text), as
 * job_assign_id() does. Returns 0 or -1. */
int job_set_attempt(struct job *j, long attempt, struct buf *payload, struct err *e);

/* The job's payload less the run number pixq wrote last into it (a dead job retried starts
 * afresh), into `out`. Returns 0, or -1 (a pre_process job, or out of memory). */
int job_text_afresh(const struct job *j, struct buf *out);

/* Whether the job (its JSON, pre_process jobs included) names "&identifier" anywhere: a src, a
 * function's src. */
bool job_refers_to(const struct job *j, const char *identifier);

/* Appends every image_identifier of the function tree, in document order, to the JSON array
 * `out`; works on the raw document so that it also serves invalid jobs. */
void job_identifiers(const struct job *j, json_object *out);

/* Whether `ext` (a save's `format`) names a format the worker writes (worker/image.c's
 * img_format_for() knows each). */
bool job_format_writable(const char *ext);

/* The src as a URL string, or NULL if it is an object. */
const char *job_src_url(const struct job *j);

/* The object an {"name": "s3", "bucket": NAME or {"name", "location"}, "key"} src names, as the
 * worker fetches it: each NULL when the src leaves it out. */
void job_s3_src(json_object *src, const char **bucket, const char **region, const char **key);

/* Checks an object src as the worker will load it: {"name": "s3"} with a bucket and a key
 * (job_check_s3_object()), or {"name": "canvas"}; no other kind can be loaded. Returns 0 or -1. */
int job_check_src_object(json_object *src, struct err *e);

/* ---- guards, also for what the worker reads outside job_parse() (sources in parameters). */

/* Checks a headers object from a job (`what` names it in the message: "postback_headers"):
 * at most JOB_MAX_HEADERS string values of at most JOB_HEADER_VALUE_MAX bytes named in at most
 * JOB_HEADER_NAME_MAX, every name and
 * value sendable (http_header_valid(): no CR, LF or other control character), none that frames
 * the request (Content-Length, Transfer-Encoding, Host, Connection...) and, when `what` starts
 * with "s3_destination", none that signs the upload or makes it another operation
 * (Authorization, x-amz-date, x-amz-copy-source...); there a null value is made "" in place,
 * which removes the header from the upload, as Blitline's worker did. Returns 0 or -1. */
int job_check_headers(json_object *headers, const char *what, struct err *e);

/* The text of an encoding_options value (a string, number or boolean as JSON writes it), or NULL
 * when it is left out: longer than JOB_ENCODING_VALUE_MAX, empty, or not UTF-8 text. */
const char *job_encoding_value(json_object *v);

/* Why a job may not send header `name` (NULL: it may), on an S3 upload (`s3`) or a postback. */
const char *job_header_refused(const char *name, bool s3);

/* Checks where an S3 object a job names lives: a region-like location ("us-west-2", or NULL) and
 * a key of 1 to JOB_S3_KEY_MAX bytes of UTF-8 without control characters. (job_parse() checks
 * every s3_destination so; bucket names are job_check_destinations()'s to check, and the
 * allow-list the worker's.) Returns 0 or -1. */
int job_check_s3_key(const char *location, const char *key, struct err *e);

/* job_check_s3_key(), and a bucket name S3 accepts (s3_valid_bucket()). Returns 0 or -1. */
int job_check_s3_object(const char *bucket, const char *location, const char *key, struct err *e);

/* Checks the bucket name of every s3_destination of `j` (its saves, its pre_process jobs' and
 * each move_original), as job_check_s3_object() does: job_parse() leaves bucket names alone
 * (see job_check_s3_key()). pixq submit and the worker's job guard both call it, so that a job
 * the worker would refuse for its destinations is refused before it is enqueued. Returns 0, or
 * -1 with the first bad destination named in `e` ("s3_destination of 'ID': ..."). */
int job_check_destinations(const struct job *j, struct err *e);

/* The number of outputs a job asks for: its saves, its pre_process jobs' saves and each
 * move_original. */
size_t job_count_saves(const struct job *j);

/* Checks that `j` asks for at most `max_saves` outputs (PIXQ_MAX_SAVES), as pixq submit and the
 * worker's job guard both do. Returns 0, or -1 ("too many saves (N, at most M)" in `e`). */
int job_check_saves(const struct job *j, long max_saves, struct err *e);

/* ---- parameters: `fn` and `name` only serve the error message. A missing or JSON-null
 * parameter gives `def` and returns 0; a present one must parse and lie in [min, max]. */
int job_param_long(json_object *params, const char *fn, const char *name, long def, long min,
                   long max, long *out, struct err *e);
int job_param_double(json_object *params, const char *fn, const char *name, double def, double min,
                     double max, double *out, struct err *e);
int job_param_bool(json_object *params, const char *fn, const char *name, bool def, bool *out,
                   struct err *e);
/* A string parameter (numbers are given back in their JSON text); borrowed from the job. */
int job_param_string(json_object *params, const char *fn, const char *name, const char *def,
                     const char **out, struct err *e);

/* Checks only that the number parameter `name`, when given, is a number (`whole`: as
 * job_param_long reads it), whatever its value: 0, or -1 with the error job_param_long or
 * job_param_double gives for a value that is not a number. For a parameter whose range depends on
 * the image, which an operation's check-only mode (ops.h) cannot know. */
int job_param_check_number(json_object *params, const char *fn, const char *name, bool whole,
                           struct err *e);

/* Checks that the required parameter `name` is given (`number`: as job_param_number_given() sees
 * it; otherwise as job_param_present() does): 0, or -1 with "Missing parameter 'name' for function
 * 'fn'" in `e`. While a recorder is installed, records `name` as required and returns 0. */
int job_param_required(json_object *params, const char *fn, const char *name, bool number,
                       struct err *e);

/* Tells a recorder what job_param_*() cannot about parameter `name` of function `fn`: its `type`
 * when the function reads it itself or it is more precise ("url or s3 object", "gravity"), and a
 * `note` ("width or height is required"); either may be NULL. Does nothing without a recorder. */
void job_param_declare(const char *fn, const char *name, const char *type, const char *note);

/* Whether `params` has `name` with a non-null value. */
bool job_param_present(json_object *params, const char *name);

/* Whether `params` has the number parameter `name` with a value other than null and "" (which
 * job_param_long and job_param_double read as absent, as Blitline's to_i did). */
bool job_param_number_given(json_object *params, const char *name);

/* ---- describing parameters (pixq-worker --functions). With a recorder installed, every
 * job_param_*() call reports the parameter it reads instead of reading it: a number or bool gives
 * its default (a number's clamped into its range), a string its default, job_param_required()
 * succeeds, and job_param_present() and job_param_number_given() give the recorder's answer: a
 * function run in check-only mode on an empty params object, once with each answer, reaches each
 * parameter it reads, both sides of a branch on a parameter's presence. Not thread-safe:
 * only the describe command installs one; normal runs pay one NULL test per parameter. */
struct job_param_desc {
    const char *fn;    /* as the call named it */
    const char *name;  /* the parameter */
    const char *type;  /* "integer", "number", "boolean", "string", a declared type, or NULL */
    bool declared;     /* `type` came from job_param_declare() */
    const char *note;  /* job_param_declare()'s, or NULL */
    const char *alias; /* job_param_alias()'s, or NULL */
    const char *def;   /* the default as text, or NULL: none */
    bool ranged;       /* min and max hold */
    double min, max;   /* inclusive */
    bool image_range;  /* only checked to be a number: its range depends on the image */
    bool required;     /* job_param_required() */
};

typedef void (*job_record_fn)(void *user, const struct job_param_desc *d);

/* Tells a recorder that parameter `name` of `fn` may also be spelt `alias` (which the function
 * reads when only it is given); nothing without a recorder. */
void job_param_alias(const char *fn, const char *name, const char *alias);

/* Whether a recorder is installed: for the few checks that must not stop a recorded run
 * (a value the defaults cannot make valid, "width or height"), and for reading what a job can
 * only give one of. */
bool job_param_recording(void);

/* Installs `fn` (NULL: none) as the recorder that job_param_*() calls report to, with what
 * job_param_present() and job_param_number_given() answer meanwhile (`present`). */
void job_param_record(job_record_fn fn, void *user, bool present);

#endif
