#include "outage.h"

#include <stdio.h>
#include <string.h>

void outage_init(struct outage *o, const char *what, long limit_ms, bool clear_line)
{
    *o = (struct outage){.what = what, .limit_ms = limit_ms, .clear_line = clear_line};
    o->since_ms = -1;
    o->backoff_ms = OUTAGE_BACKOFF_MIN_MS;
}

bool outage_passing(const struct rq *r, unsigned long io_before, const char *msg)
{
    /* what Redis answers while it cannot serve for a moment: loading its data set, running a
     * long script, a replica without its primary, a key being moved */
    static const char *const answers[] = {"redis: LOADING ", "redis: BUSY ", "redis: MASTERDOWN ",
                                          "redis: TRYAGAIN "};
    if (rq_io_errors(r) != io_before) {
        return !rq_refused_for_good(msg);
    }
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        if (strncmp(msg, answers[i], strlen(answers[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* "pixq: <what>: <line>" on stderr, over a progress bar if one is drawn there. */
static void say(const struct outage *o, const char *line)
{
    fprintf(stderr, "%spixq: %s: %s\n", o->clear_line ? "\r\033[K" : "", o->what, line);
    fflush(stderr);
}

long outage_failed(struct outage *o, const char *msg, long now_ms, struct err *e)
{
    if (o->since_ms < 0) {
        o->since_ms = now_ms;
        o->backoff_ms = OUTAGE_BACKOFF_MIN_MS;
    }
    long spent_ms = now_ms - o->since_ms;
    if (spent_ms >= o->limit_ms) {
        err_set(e, "redis unavailable for %.1f s (PIXQ_REDIS_OUTAGE_MS): %s",
                (double)spent_ms / 1000.0, msg);
        return -1;
    }
    if (strcmp(o->said, msg) != 0) {
        char line[ERR_MSG_MAX + 128];
        long left_ms = o->limit_ms - spent_ms; /* whole seconds as such, else to a tenth */
        snprintf(line, sizeof line,
                 "redis unavailable (%s); trying again for up to %.*f s (PIXQ_REDIS_OUTAGE_MS)",
                 msg, left_ms % 1000 == 0 ? 0 : 1, (double)left_ms / 1000.0);
        say(o, line);
        snprintf(o->said, sizeof o->said, "%s", msg);
    }
    long wait_ms = o->backoff_ms;
    o->backoff_ms = wait_ms * 2 > OUTAGE_BACKOFF_MAX_MS ? OUTAGE_BACKOFF_MAX_MS : wait_ms * 2;
    /* the last try when the time is up, not a back-off step later */
    return wait_ms < o->limit_ms - spent_ms ? wait_ms : o->limit_ms - spent_ms;
}

void outage_over(struct outage *o, long now_ms)
{
    if (o->since_ms < 0) {
        return;
    }
    char line[64];
    snprintf(line, sizeof line, "redis is back after %.1f s",
             (double)(now_ms - o->since_ms) / 1000.0);
    say(o, line);
    o->since_ms = -1;
    o->said[0] = '\0';
}
