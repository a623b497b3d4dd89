#include "awscreds.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* The keys of one profile, as parse() found them: pointers into the text, with lengths. */
struct found {
    bool section; /* the profile's section was seen */
    const char *value[3];
    size_t len[3];
    char process[CFG_STR_MAX]; /* credential_process, its continuation lines joined */
    size_t process_len;
    bool process_seen, process_long;
};

static const char *const key_names[3] = {"aws_access_key_id", "aws_secret_access_key",
                                         "aws_session_token"};

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Trims blanks around [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && blank(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && blank((*s)[*n - 1])) {
        (*n)--;
    }
}

/* Adds [s, s + n) to the credential_process found, after a blank when it has a start. */
static void add_to_process(struct found *f, const char *s, size_t n)
{
    size_t need = f->process_len + (f->process_len > 0 ? 1 : 0) + n;
    if (need >= sizeof f->process) {
        f->process_long = true;
        return;
    }
    if (f->process_len > 0) {
        f->process[f->process_len++] = ' ';
    }
    memcpy(f->process + f->process_len, s, n);
    f->process_len += n;
    f->process[f->process_len] = '\0';
}

/* One `key = value` (or `key: value`) line of the profile's section: notes the value of a key it
 * knows (the legacy aws_security_token stands for aws_session_token when that is not given). */
static void note_key(struct found *f, const char *line, size_t n)
{
    const char *eq = memchr(line, '=', n), *colon = memchr(line, ':', n);
    eq = eq == NULL || (colon != NULL && colon < eq) ? colon : eq; /* "key: value" too */
    if (eq == NULL) {
        return;
    }
    const char *key = line, *value = eq + 1;
    size_t klen = (size_t)(eq - line), vlen = n - klen - 1;
    trim(&key, &klen);
    trim(&value, &vlen);
    if (klen == 18 && strncasecmp(key, "credential_process", klen) == 0) {
        f->process_seen = true;
        f->process_len = 0;
        f->process_long = false;
        add_to_process(f, value, vlen);
    }
    for (int i = 0; i < 3; i++) {
        if (klen == strlen(key_names[i]) && strncasecmp(key, key_names[i], klen) == 0) {
            f->value[i] = value;
            f->len[i] = vlen;
        }
    }
    if (klen == 18 && strncasecmp(key, "aws_security_token", klen) == 0 && f->value[2] == NULL) {
        f->value[2] = value;
        f->len[2] = vlen;
    }
}

int awscreds_parse(struct awscreds *c, const char *text, struct err *e)
{
    const char *profile = c->profile[0] != '\0' ? c->profile : "default";
    struct found f = {0};
    bool mine = false; /* in the profile's section */
    const char *p = text;
    if (strncmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3; /* a byte order mark, as some editors write */
    }
    /* a line indented deeper than the credential_process line before it goes on it */
    bool continued = false;
    size_t process_indent = 0;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        const char *line = p;
        p = nl != NULL ? nl + 1 : p + n;
        size_t indent = strspn(line, " \t");
        indent = indent < n ? indent : n;
        trim(&line, &n);
        if (n == 0 || line[0] == '#' || line[0] == ';') {
            continue;
        }
        if (continued && indent > process_indent) {
            /* as the AWS tools' reader joins a value's indented lines (a long command) */
            add_to_process(&f, line, n);
            continue;
        }
        continued = false;
        if (line[0] == '[') { /* a section, whatever follows its ']' (a comment) */
            const char *name = line + 1, *end = memchr(line, ']', n);
            size_t len = end != NULL ? (size_t)(end - name) : 0;
            trim(&name, &len);
            mine = end != NULL && len == strlen(profile) && strncmp(name, profile, len) == 0;
            f.section = f.section || mine;
            continue;
        }
        if (mine) {
            bool seen = f.process_seen;
            f.process_seen = false;
            note_key(&f, line, n);
            continued = f.process_seen;
            process_indent = continued ? indent : process_indent;
            f.process_seen = f.process_seen || seen;
        }
    }
    if (!f.section) {
        return err_set(e, "no profile [%s] in it", profile);
    }
    if (f.value[0] == NULL && f.process_seen) {
        /* keys from a program (an aws_access_key_id written beside it comes first, as in the
         * AWS tools) */
        if (f.process_len == 0 || f.process_long) {
            return err_set(e, "profile [%s]: credential_process is %s", profile,
                           f.process_len == 0 ? "empty" : "too long");
        }
        for (size_t i = 0; i < f.process_len; i++) { /* a TAB separates words */
            if (((unsigned char)f.process[i] < 0x20 && f.process[i] != '\t') ||
                f.process[i] == 0x7f) {
                return err_set(e, "profile [%s]: credential_process holds a control character",
                               profile);
            }
        }
        memcpy(c->process, f.process, f.process_len + 1);
        c->access_key[0] = c->secret_key[0] = c->session_token[0] = '\0';
        return 0;
    }
    const size_t cap[3] = {sizeof c->access_key, sizeof c->secret_key, sizeof c->session_token};
    for (int i = 0; i < 3; i++) {
        if (i < 2 && (f.value[i] == NULL || f.len[i] == 0)) {
            return err_set(e,
                           "profile [%s] has no %s (keys written in the file or a "
                           "credential_process are read: not sso_* or role_arn)",
                           profile, key_names[i]);
        }
        if (f.len[i] >= cap[i]) {
            return err_set(e, "profile [%s]: %s is longer than %zu bytes", profile, key_names[i],
                           cap[i] - 1);
        }
        if (!awsmeta_printable(f.value[i] != NULL ? f.value[i] : "", f.len[i])) {
            return err_set(e, "profile [%s]: %s holds a control character", profile, key_names[i]);
        }
    }
    char *dst[3] = {c->access_key, c->secret_key, c->session_token};
    for (int i = 0; i < 3; i++) {
        memcpy(dst[i], f.value[i] != NULL ? f.value[i] : "", f.len[i]);
        dst[i][f.len[i]] = '\0';
    }
    c->process[0] = '\0';
    return 0;
}

/* Reads the file and parses it into `c`; `st` gets the look at the file that was read. */
static int load(struct awscreds *c, struct stat *st, struct err *e)
{
    int fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        return err_set(e, "%s", strerror(errno));
    }
    char *text = NULL;
    int rc = -1;
    if (fstat(fd, st) < 0) {
        err_set(e, "%s", strerror(errno));
    } else if (!S_ISREG(st->st_mode)) {
        err_set(e, "not a regular file");
    } else if (st->st_size > AWSCREDS_FILE_MAX) {
        err_set(e, "larger than %d bytes", AWSCREDS_FILE_MAX);
    } else if ((text = malloc((size_t)st->st_size + 1)) == NULL) {
        err_set(e, "out of memory");
    } else {
        size_t got = 0, want = (size_t)st->st_size;
        ssize_t n = 1;
        while (got < want && (n = read(fd, text + got, want - got)) > 0) {
            got += (size_t)n;
        }
        text[got] = '\0';
        if (n < 0) {
            err_set(e, "%s", strerror(errno));
        } else if (memchr(text, '\0', got) != NULL) {
            err_set(e, "it holds a NUL byte");
        } else {
            rc = awscreds_parse(c, text, e);
        }
    }
    free(text);
    close(fd);
    return rc;
}

static int refresh_endpoint(struct awscreds *c, bool force, time_t now, long budget_ms,
                            struct err *e);

/* The file's profile names a credential_process: from now on the keys come from it, fetched
 * as an endpoint's are (the file is no longer looked at). `fetch`: run it now. */
static int use_process(struct awscreds *c, bool fetch, struct err *e)
{
    if (awsmeta_init_process(&c->meta, c->path, c->profile, c->process, c->process_timeout_ms, e) <
        0) {
        return -1;
    }
    c->from_endpoint = true;
    c->loaded = false;
    c->next_try_ms = clock_mono_ms();
    if (fetch) {
        struct err ignored = {{0}}; /* logged; the requests try again */
        refresh_endpoint(c, true, time(NULL), c->meta.timeout_ms, &ignored);
    }
    return 0;
}

/* The renewal settings of keys from an endpoint or a program. */
static void set_timing(struct awscreds *c, const struct cfg *cfg)
{
    c->lead_ms = cfg->s3_credentials_refresh_ms;
    c->retry_ms = cfg->s3_credentials_retry_ms;
    c->retry_max_ms = cfg->s3_credentials_retry_max_ms;
    c->process_timeout_ms = cfg->s3_credentials_process_timeout_ms;
}

int awscreds_init(struct awscreds *c, const struct cfg *cfg, bool fetch, struct err *e)
{
    memset(c, 0, sizeof *c);
    set_timing(c, cfg);
    snprintf(c->path, sizeof c->path, "%s", cfg->aws_shared_credentials_file);
    snprintf(c->profile, sizeof c->profile, "%s",
             cfg->aws_profile[0] != '\0' ? cfg->aws_profile : "default");
    struct stat st = {0};
    int rc = load(c, &st, e);
    c->st = st; /* refused: the caller says so, and the file is read again once it changes */
    c->loaded = rc == 0;
    if (rc == 0 && c->process[0] != '\0' && use_process(c, fetch, e) < 0) {
        c->loaded = false; /* no keys: the file is read again once it changes */
        c->process[0] = '\0';
        return -1;
    }
    return rc;
}

/* Whether two looks at the file show the same file, as it was. */
static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

const char *awscreds_origin(const struct awscreds *c, char *out, size_t cap)
{
    if (c->from_endpoint) {
        return awsmeta_origin(&c->meta, out, cap);
    }
    snprintf(out, cap, "AWS_SHARED_CREDENTIALS_FILE %s", c->path);
    return out;
}

long awscreds_due_ms(long at_ms, long lifetime_ms, long lead_ms, long retry_ms)
{
    if (lifetime_ms == LONG_MAX) {
        return LONG_MAX; /* keys that do not expire are fetched again only when forced */
    }
    if (lifetime_ms > lead_ms) {
        return at_ms + (lifetime_ms - lead_ms);
    }
    /* the endpoint still serves keys about to expire, or (by this clock) expired */
    long wait = lifetime_ms > 0 ? lifetime_ms / 4 : AWSCREDS_EXPIRED_WAIT_MS;
    return at_ms + (wait > retry_ms ? wait : retry_ms);
}

long awscreds_backoff_ms(int failures, long retry_ms, long retry_max_ms)
{
    long wait = retry_ms;
    for (int i = 1; i < failures && wait < retry_max_ms; i++) {
        wait *= 2;
    }
    return wait < retry_max_ms ? wait : (retry_max_ms > retry_ms ? retry_max_ms : retry_ms);
}

/* `msg` with the counts of a timeout's message ("after 2001 milliseconds with 0 bytes
 * received") taken out, so that two timeouts say the same: other numbers (a status) stay. */
static void reason_of(const char *msg, char *out, size_t cap)
{
    static const char *const units[] = {" milliseconds", " ms", " bytes"};
    size_t n = 0;
    while (*msg != '\0' && n + 1 < cap) {
        size_t digits = strspn(msg, "0123456789");
        bool count = false;
        for (size_t i = 0; digits > 0 && i < sizeof units / sizeof units[0]; i++) {
            count = count || strncmp(msg + digits, units[i], strlen(units[i])) == 0;
        }
        if (count) {
            msg += digits;
            out[n++] = '#';
        } else {
            out[n++] = *msg++;
        }
    }
    out[n] = '\0';
}

static bool same_reason(const char *a, const char *b)
{
    char ra[ERR_MSG_MAX], rb[ERR_MSG_MAX];
    reason_of(a, ra, sizeof ra);
    reason_of(b, rb, sizeof rb);
    return strcmp(ra, rb) == 0;
}

static int refresh_endpoint(struct awscreds *c, bool force, time_t now, long budget_ms,
                            struct err *e)
{
    long mono = clock_mono_ms();
    char origin[CFG_STR_MAX + 64]; /* for messages: written only on the way to one */
    /* a request with less time left than a fetch may take goes with the keys in hand while they
     * have not expired (S3 refusing them forces a fetch) */
    bool cut = budget_ms < c->meta.timeout_ms;
    if (!force && c->loaded && (mono < c->due_ms || (cut && mono < c->expires_ms))) {
        return 0;
    }
    if (mono < c->next_try_ms || budget_ms <= 0) {
        return c->loaded ? 0
                         : err_set(e, "no S3 credentials from %s yet: %s",
                                   awscreds_origin(c, origin, sizeof origin), c->failed);
    }
    struct awsmeta meta = c->meta;
    meta.timeout_ms = cut ? budget_ms : meta.timeout_ms;
    meta.cut = cut;
    struct awsmeta_keys k;
    int rc = awsmeta_fetch(&meta, &k, e);
    long after = clock_mono_ms(); /* the spacing counts from the fetch's end: a slow one too */
    if (rc < 0 && cut) {
        /* out of the request's time, not the endpoint's fault: no back-off, nothing said */
        c->next_try_ms = after + c->retry_ms;
        err_wrap(e, "%s", awscreds_origin(c, origin, sizeof origin));
        return -1;
    }
    if (rc < 0) {
        c->failures++;
        c->next_try_ms = after + awscreds_backoff_ms(c->failures, c->retry_ms, c->retry_max_ms);
        if (!same_reason(e->msg, c->failed)) {
            char q[ERR_MSG_MAX + 16], url[sizeof c->meta.url + 8];
            LOG_WARN("s3_credentials_refused", "source=%s url=%s error=%s action=%s",
                     awsmeta_source(&c->meta), awsmeta_url_shown(&c->meta, url, sizeof url),
                     log_quote(e->msg, q, sizeof q),
                     c->loaded ? "keep_the_credentials_in_use" : "none_to_sign_with");
        }
        snprintf(c->failed, sizeof c->failed, "%s", e->msg);
        err_wrap(e, "%s", awscreds_origin(c, origin, sizeof origin));
        return -1;
    }
    if (k.imds_v1[0] != '\0' && !c->imds_v1) {
        char q[ERR_MSG_MAX + 16], url[sizeof c->meta.url + 8];
        LOG_WARN("s3_credentials_imdsv1", "url=%s reason=%s",
                 awsmeta_url_shown(&c->meta, url, sizeof url), log_quote(k.imds_v1, q, sizeof q));
    }
    c->imds_v1 = k.imds_v1[0] != '\0';
    bool changed = !c->loaded || strcmp(k.access_key, c->access_key) != 0 ||
                   strcmp(k.secret_key, c->secret_key) != 0 ||
                   strcmp(k.session_token, c->session_token) != 0;
    memcpy(c->access_key, k.access_key, sizeof c->access_key);
    memcpy(c->secret_key, k.secret_key, sizeof c->secret_key);
    memcpy(c->session_token, k.session_token, sizeof c->session_token);
    c->loaded = true;
    c->failures = 0;
    c->failed[0] = '\0';
    c->next_try_ms = after + c->retry_ms;
    /* the time left by the caller's clock (S3's, when it corrected ours), counted from here on
     * the monotonic clock: a jump of the wall clock moves nothing */
    long long left_s = (long long)k.expires - (long long)now;
    long lifetime_ms = k.expires == 0              ? LONG_MAX
                       : left_s > LONG_MAX / 2000  ? LONG_MAX / 2
                       : left_s < -LONG_MAX / 2000 ? -LONG_MAX / 2
                                                   : (long)(left_s * 1000) - 1000;
    /* (less a second: `now` is whole seconds, up to 999 ms behind) */
    c->due_ms = awscreds_due_ms(after, lifetime_ms, c->lead_ms, c->retry_ms);
    c->expires_ms = lifetime_ms == LONG_MAX ? LONG_MAX : after + lifetime_ms;
    if (changed) {
        size_t n = strlen(c->access_key);
        char url[sizeof c->meta.url + 8];
        LOG_INFO("s3_credentials_reloaded",
                 "source=%s url=%s access_key_id_ends=%s expires_in_s=%lld",
                 awsmeta_source(&c->meta), awsmeta_url_shown(&c->meta, url, sizeof url),
                 c->access_key + (n > 4 ? n - 4 : 0), k.expires != 0 ? left_s : -1LL);
    }
    return changed ? 1 : 0;
}

int awscreds_init_endpoint(struct awscreds *c, const struct cfg *cfg, struct err *e)
{
    memset(c, 0, sizeof *c);
    c->from_endpoint = true;
    set_timing(c, cfg);
    if (awsmeta_init(&c->meta, cfg, e) < 0) {
        return -1;
    }
    c->next_try_ms = clock_mono_ms();
    struct err ignored = {{0}}; /* logged; the requests try again */
    refresh_endpoint(c, true, time(NULL), c->meta.timeout_ms, &ignored);
    return 0;
}

int awscreds_refresh(struct awscreds *c, bool force, struct err *e)
{
    return awscreds_refresh_within(c, force, time(NULL), LONG_MAX, e);
}

int awscreds_refresh_within(struct awscreds *c, bool force, time_t now, long budget_ms,
                            struct err *e)
{
    if (c->from_endpoint) {
        return refresh_endpoint(c, force, now, budget_ms, e);
    }
    struct stat look;
    bool looked = stat(c->path, &look) == 0;
    if (!force && looked && same_file(&look, &c->st)) {
        return 0;
    }
    if (!force && !looked && c->st.st_ino == 0) {
        /* still gone: said so already */
        return err_set(e, "AWS_SHARED_CREDENTIALS_FILE %s: %s", c->path, strerror(errno));
    }
    struct awscreds next = *c;
    struct stat st = {0};
    int rc = load(&next, &st, e);
    /* a profile that names a program now (or at last): a command it cannot run is refused as
     * a file without keys is */
    bool program = rc == 0 && next.process[0] != '\0';
    if (program && use_process(&next, false, e) < 0) {
        rc = -1;
    }
    if (rc < 0) {
        bool new_refusal = force || !same_file(&st, &c->st);
        c->st = st; /* a file gone is st_ino 0 */
        if (new_refusal) {
            char q[ERR_MSG_MAX + 16], qp[CFG_STR_MAX + 16], qn[CFG_STR_MAX + 16];
            LOG_WARN("s3_credentials_refused", "path=%s profile=%s error=%s action=%s",
                     log_quote(c->path, qp, sizeof qp), log_quote(c->profile, qn, sizeof qn),
                     log_quote(e->msg, q, sizeof q),
                     c->loaded ? "keep_the_credentials_in_use" : "none_to_sign_with");
        }
        err_wrap(e, "AWS_SHARED_CREDENTIALS_FILE %s", c->path);
        return -1;
    }
    next.st = st;
    if (program) { /* the keys in use stay until the program gives others */
        memcpy(next.access_key, c->access_key, sizeof next.access_key);
        memcpy(next.secret_key, c->secret_key, sizeof next.secret_key);
        memcpy(next.session_token, c->session_token, sizeof next.session_token);
        next.loaded = c->loaded;
        *c = next;
        return refresh_endpoint(c, true, now, budget_ms, e);
    }
    bool changed = !c->loaded || strcmp(next.access_key, c->access_key) != 0 ||
                   strcmp(next.secret_key, c->secret_key) != 0 ||
                   strcmp(next.session_token, c->session_token) != 0;
    next.loaded = true;
    *c = next;
    if (changed) {
        size_t n = strlen(c->access_key);
        char qp[CFG_STR_MAX + 16], qn[CFG_STR_MAX + 16];
        LOG_INFO("s3_credentials_reloaded", "path=%s profile=%s access_key_id_ends=%s",
                 log_quote(c->path, qp, sizeof qp), log_quote(c->profile, qn, sizeof qn),
                 c->access_key + (n > 4 ? n - 4 : 0));
    }
    return changed ? 1 : 0;
}
