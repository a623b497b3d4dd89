/* rq: pixq's Redis connection: URL parsing, (re)connection, key names and Lua scripts.
 *
 * One `struct rq` is one synchronous hiredis connection, used by one thread; one script call at a
 * time may be sent ahead of its reply (rq_script_send). When a command fails on I/O the
 * connection is dropped and the next command reconnects, so a caller that retries with back-off
 * rides out a Redis restart. Replies are hiredis `redisReply *`: the caller frees
 * the top-level reply with freeReplyObject(). */
#ifndef PIXQ_RQ_H
#define PIXQ_RQ_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "log.h"

#define RQ_HOST_MAX 256
#define RQ_KEY_MAX  512 /* bytes for a key name, with NUL */

/* What delay.lua pushes onto a queue to wake a blocked worker: not a job. */
#define RQ_WAKE_TOKEN "{\"pixq_wake\":true}"

/* pixq's own entries on a queue (a parked output's upload, a postback retry, a poison pill) are
 * this mark followed by their JSON ({"pixq_upload": ...}). A job is JSON and cannot start so: a
 * job, whatever its content, cannot pose as one of them and have a worker upload or post back on
 * its behalf. (Whoever can push raw bytes to Redis can: Redis access is trusted.) */
#define RQ_TASK_MARK     "pixq-task:"
#define RQ_TASK_MARK_LEN 10

/* The JSON of one of pixq's own entries (after RQ_TASK_MARK), or NULL if `payload` is not one. */
const char *rq_task_json(const char *payload, size_t len);

/* A parsed PIXQ_REDIS_URL. */
struct rq_url {
    char host[RQ_HOST_MAX]; /* TCP host (an IPv6 address without brackets); empty for a socket */
    int port;
    char unix_path[RQ_HOST_MAX];
    char user[128]; /* ACL user; empty for the default user */
    char password[256];
    int db;
};

/* The Lua scripts of common/lua/, one per atomic state change. */
enum rq_script {
    RQ_SCRIPT_FINISH,      /* finish.lua: ack a job, store its result, bury it on failure */
    RQ_SCRIPT_ADOPT,       /* adopt.lua: swap a reserved payload for one carrying its new job_id */
    RQ_SCRIPT_HEARTBEAT,   /* heartbeat.lua: register or renew a worker's lease */
    RQ_SCRIPT_EXPIRED,     /* expired.lua: workers whose lease ran out */
    RQ_SCRIPT_REAP,        /* reap.lua: give a worker's jobs back to the queue */
    RQ_SCRIPT_PROMOTE,     /* promote.lua: move due delayed work onto the queue */
    RQ_SCRIPT_REQUEUE,     /* requeue.lua: schedule a reserved job to run again later */
    RQ_SCRIPT_DELAY,       /* delay.lua: enqueue a payload after a delay */
    RQ_SCRIPT_BEGIN,       /* begin.lua: count a run of a job, remember when it was first seen */
    RQ_SCRIPT_DEAD_RETRY,  /* dead_retry.lua: put dead jobs back on the queue */
    RQ_SCRIPT_SPLIT,       /* split.lua: replace a reserved batch with its jobs */
    RQ_SCRIPT_RL_ACQUIRE,  /* rl_acquire.lua: take tokens from a bucket's shared rate limit */
    RQ_SCRIPT_RL_FEEDBACK, /* rl_feedback.lua: lower a bucket's rate after S3 throttling */
    RQ_SCRIPT_RL_SHOW,     /* rl_show.lua: a bucket's limiter state, read only */
    RQ_SCRIPT_PARK,        /* park.lua: park throttled outputs and release their job */
    RQ_SCRIPT_UPLOAD_DONE, /* upload_done.lua: record how a parked output ended */
    RQ_SCRIPT_POSTING,     /* posting.lua: whether a run posts its job's outcome back */
    RQ_SCRIPT_TAKE,        /* take.lua: reserve from a queue past its parked limit: tasks only */
    RQ_SCRIPT_PARKED_FORGET, /* parked_forget.lua: count out parked outputs whose blob is gone */
    RQ_SCRIPT_CLAIM,         /* claim.lua: claim the job_ids of jobs about to be submitted */
    RQ_SCRIPT_REPLAN,        /* replan.lua: bring a bucket's parked uploads forward */
    RQ_SCRIPT_RL_SET,        /* rl_set.lua: an operator's override of a bucket's limit */
    RQ_SCRIPT_DEAD_TRIM,     /* dead_trim.lua: drop dead letters past PIXQ_DEAD_MAX_AGE_S */
    RQ_SCRIPT_COUNT,
};

struct rq;

/* Parses redis://[user:password@]host[:port][/db] (host: a name, an IPv4 address, or an IPv6
 * address in brackets, [::1]) or unix:///path/to/sock[?db=N]. User and
 * password may be %-encoded. Returns 0 or -1 (the message never contains the password). */
int rq_parse_url(const char *url, struct rq_url *out, struct err *e);

/* Connects to `url` with `timeout_ms` for connecting and for each reply. Returns NULL on a bad
 * URL or on failure to connect, authenticate or select the database. */
struct rq *rq_create(const char *url, long timeout_ms, struct err *e);

/* Whether rq_create()'s error message `msg` is Redis refusing the login or the database
 * (a wrong password, no password where one is needed, a database out of range): waiting will
 * not help. A Redis still loading, busy or without its master is not. */
bool rq_refused_for_good(const char *msg);

/* What rq_server_check() read of the server's INFO. */
struct rq_server {
    char policy[32];                /* maxmemory-policy; "" when INFO does not say */
    unsigned long long maxmemory;   /* bytes; 0: none, or INFO does not say */
    bool memory_known;              /* INFO said used_memory */
    unsigned long long used_memory; /* bytes */
    unsigned long long not_counted; /* mem_not_counted_for_evict: bytes of used_memory (replica
                                     * and AOF buffers) left out of the maxmemory comparison */
    char refused[ERR_MSG_MAX];      /* the refusal when the server refused INFO, else "" */
};

/* Whether the server is past its maxmemory as Redis compares them (used_memory less what it
 * does not count): under noeviction it refuses every command that adds data; under another
 * policy it evicts keys. False when maxmemory is 0 or INFO did not say. */
bool rq_server_full(const struct rq_server *s);

/* Reads the server's INFO: -1 with "redis server refused: Redis Cluster ..." (for good, as
 * rq_refused_for_good() says) when it is a Cluster node, which pixq's client cannot follow
 * (MOVED/ASK); else 0, with what INFO said in `out`. When the server refuses INFO (an ACL user
 * without +info, a renamed command) it is 0 with the refusal in out->refused. An I/O failure is
 * -1 with the reason. */
int rq_server_check(struct rq *r, struct rq_server *out, struct err *e);

/* Which connection is in use: a number that changes at every (re)connection; 0 while
 * disconnected, or after an I/O failure on it. A reply read on connection n came from the data
 * the server held then (a restart or a failover ends the connection). */
unsigned long rq_connection(const struct rq *r);

/* The level of the redis_reconnect line, written when a connection is found closed before a
 * command and replaced (info by default: a worker's operator wants it; the command line writes
 * its own lines about an outage, and sets debug). */
void rq_set_reconnect_log_level(struct rq *r, enum log_level level);

/* Closes the connection; NULL is allowed. */
void rq_destroy(struct rq *r);

/* Runs a command given as an argument vector (binary-safe). `extra_timeout_ms` is added to the
 * reply timeout for blocking commands. Returns the reply (never an error reply: those become
 * NULL with the server's message in `e`), or NULL. */
redisReply *rq_commandv(struct rq *r, long extra_timeout_ms, int argc, const char **argv,
                        const size_t *lens, struct err *e);

/* printf-style command (hiredis format: %s, %b with pointer+length). As rq_commandv. */
redisReply *rq_command(struct rq *r, struct err *e, const char *fmt, ...);

/* One command of a pipeline: an argument vector (`lens` NULL for C strings). */
struct rq_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
};

/* Sends `n` commands in one write and reads their `n` replies: one round trip. replies[i] is the
 * reply of cmds[i] (the caller frees each non-NULL one), or NULL for an error reply; the first
 * error's message goes into `e`. Returns 0 when every reply was an answer, -1 if any was an
 * error reply or on I/O failure (then the connection is dropped and every reply is NULL). */
int rq_pipeline(struct rq *r, size_t n, const struct rq_cmd *cmds, redisReply **replies,
                struct err *e);

/* Runs a Lua script with EVALSHA, loading it when the server answers NOSCRIPT. As rq_commandv.
 * While the answer of a call rq_script_send() sent less than a quarter second ago is still on
 * its way (not come, the connection not found closed), the call is written behind it at once
 * and both answers are read in one wait (the first kept for rq_script_reply()): the call must
 * not need that answer. */
redisReply *rq_script(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                      const char **args, const size_t *arglens, struct err *e);

/* Sends a script call without waiting for its reply, so that its round trip runs while the
 * caller works; rq_script_reply() returns the reply. Commands may run on the connection
 * meanwhile: the first of them reads the reply first and keeps it (a script call is written
 * first, rq_script). The script is loaded first
 * (SCRIPT LOAD, a round trip) when this connection has not used it yet, so that the call runs
 * when it arrives; should the server answer NOSCRIPT all the same (SCRIPT FLUSH), the reply is
 * read, the script loaded and the call sent again. Returns 0, or -1 with the reason (the call
 * did not reach Redis). */
int rq_script_send(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                   const char **args, const size_t *arglens, struct err *e);

/* The reply of the last rq_script_send() (the caller frees it), or NULL with the reason: an error
 * reply (its message), the connection lost before the reply came, or nothing sent. */
redisReply *rq_script_reply(struct rq *r, struct err *e);

/* Waits for the answer of a script call rq_script_send() sent, if it is still on its way, and
 * keeps it for rq_script_reply(): after this, Redis has run the call (unless the connection went
 * first). For a caller about to act outside Redis on that assumption. */
void rq_wait_sent(struct rq *r);

/* As rq_wait_sent(), then the reply kept for rq_script_reply(), left in place (NULL: none yet,
 * lost, or not read). */
const redisReply *rq_sent_reply(struct rq *r);

/* Strips, in place, what Redis adds to the error of a Lua script around the script's own message:
 * " script: <sha1>, on @user_script:<N>." after it and "user_script:<N>: " before it (Redis 7),
 * "Error running script (call to f_<sha1>): @user_script:<N>: " (Redis 6). Every error reply
 * rq returns has it stripped: what users see (pixq's stderr, the worker's log) is the message. */
void rq_clean_error(char *msg);

/* Whether the last command failed on I/O (the connection was dropped). */
bool rq_disconnected(const struct rq *r);

/* How many commands failed on I/O (or could not connect) since rq_create(): a caller compares
 * two readings to learn whether a sequence of commands was cut short. */
unsigned long rq_io_errors(const struct rq *r);

/* rq_io_errors(), and the connections found closed (or out of step) and replaced before a command
 * went on them: a caller compares two readings to learn whether Redis may have restarted, or
 * replies been lost, in between, even when every command got its answer. */
unsigned long rq_breaks(const struct rq *r);

/* Round trips to Redis since rq_create(), as the times the caller waited for an answer: a
 * pipeline counts once, a script call written behind one sent ahead once for both, and a call
 * sent ahead only if its answer had not come when it was read. For measurements. */
unsigned long rq_round_trips(const struct rq *r);

/* Writes the key "pixq:{queue}:suffix" into `out`. Returns 0, or -1 if it does not fit. */
int rq_key(char *out, size_t cap, const char *queue, const char *suffix);

/* The source text of a script, for tests. */
const char *rq_script_source(enum rq_script s);

/* The script's file name without ".lua" ("finish"). */
const char *rq_script_name(enum rq_script s);

#endif
