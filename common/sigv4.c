/* sigv4: AWS Signature Version 4; see sigv4.h for the algorithm and the canonical forms.
 *
 * Read top-down: byte encoding, the canonical URI, the canonical query, the canonical headers,
 * request validation, then the string to sign, the key and the public entry points. */
#include "sigv4.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define ALGORITHM      "AWS4-HMAC-SHA256"
#define SCOPE_END      "aws4_request"
#define DATE_LEN       8           /* "yyyymmdd", the first bytes of an amz-date */
#define PATH_MAX_BYTES (16 * 1024) /* bytes of a normalised SIGV4_GENERIC path */
#define QUERY_MAX      (32 * 1024) /* bytes of the encoded query parameters */
#define NAMES_MAX      4096        /* bytes of the SignedHeaders list */
#define STS_MAX        512         /* bytes of a string to sign */
#define SECRET_MAX     256         /* bytes of a secret key */
#define QUERY_SEP      '\x01'      /* joins name and value; sorts below any encoded byte */

/* ---------------------------------------------------------------------------------------------
 * Bytes: encoding and decoding */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int encode_byte(struct buf *out, unsigned char c, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    if (is_unreserved(c) || (keep_slash && c == '/')) {
        return buf_append(out, &c, 1);
    }
    char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
    return buf_append(out, esc, sizeof esc);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Reads the byte at s[*i] of the `n`-byte %-encoded string `s` and advances *i. A valid %XX escape
 * yields the byte it stands for and sets *escaped; anything else, a stray '%' included, is
 * itself. */
static unsigned char next_decoded(const char *s, size_t n, size_t *i, bool *escaped)
{
    size_t at = *i;
    if (s[at] == '%' && n - at >= 3) {
        int hi = hex_value(s[at + 1]);
        int lo = hex_value(s[at + 2]);
        if (hi >= 0 && lo >= 0) {
            *i = at + 3;
            *escaped = true;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    *i = at + 1;
    *escaped = false;
    return (unsigned char)s[at];
}

/* Appends the `n` bytes at `s` %-decoded and then encoded (nothing kept but unreserved bytes). */
static int reencode(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        bool escaped;
        unsigned char c = next_decoded(s, n, &i, &escaped);
        if (encode_byte(out, c, false) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Shortens `b` back to `len` bytes. */
static void truncate_to(struct buf *b, size_t len)
{
    if (b->data != NULL) {
        b->len = len;
        b->data[len] = '\0';
    }
}

int sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash)
{
    size_t mark = out->len;
    for (const char *p = s; *p != '\0'; p++) {
        if (encode_byte(out, (unsigned char)*p, keep_slash) < 0) {
            truncate_to(out, mark);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical URI */

/* S3: each byte encoded exactly once. A decoded escape is re-encoded without keeping '/', so %2F
 * (a slash inside a key segment) stays %2F instead of turning into a separator. */
static int s3_path(struct buf *out, const char *path)
{
    size_t n = strlen(path);
    if (n == 0) {
        return buf_puts(out, "/");
    }
    for (size_t i = 0; i < n;) {
        bool escaped;
        unsigned char c = next_decoded(path, n, &i, &escaped);
        if (encode_byte(out, c, !escaped) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Removes the last "/segment" from a normalised path being built. */
static void drop_last_segment(struct buf *out)
{
    size_t len = out->len;
    while (len > 0 && out->data[len - 1] != '/') {
        len--;
    }
    if (len > 0) {
        truncate_to(out, len - 1);
    }
}

static bool is_dots(const char *seg, size_t len, size_t dots)
{
    return len == dots && strncmp(seg, "..", dots) == 0;
}

/* Applies one path segment to the normalised path in `out`. *trailing tells whether a path ending
 * here ends with a slash ("a/", "a/.", "a/b/.." all do). */
static int apply_segment(struct buf *out, const char *seg, size_t len, bool *trailing)
{
    *trailing = len == 0 || is_dots(seg, len, 1) || is_dots(seg, len, 2);
    if (is_dots(seg, len, 2)) {
        drop_last_segment(out);
        return 0;
    }
    if (*trailing) {
        return 0;
    }
    if (buf_puts(out, "/") < 0) {
        return -1;
    }
    return buf_append(out, seg, len);
}

/* Writes `path` with dot segments removed and empty segments dropped: "//a/./b/../c//" is
 * "/a/c/". */
static int remove_dot_segments(struct buf *out, const char *path)
{
    bool trailing = false;
    const char *seg = path;
    for (;;) {
        size_t len = strcspn(seg, "/");
        if (apply_segment(out, seg, len, &trailing) < 0) {
            return -1;
        }
        if (seg[len] == '\0') {
            break;
        }
        seg += len + 1;
    }
    if (out->len == 0 || trailing) {
        return buf_puts(out, "/");
    }
    return 0;
}

static int generic_path(struct buf *out, const char *path)
{
    struct buf norm;
    buf_init(&norm, PATH_MAX_BYTES);
    int rc = remove_dot_segments(&norm, path);
    if (rc == 0) {
        rc = sigv4_uri_encode(out, norm.data, true);
    }
    buf_finish(&norm);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical query: each parameter becomes "name\x01value\0" in an arena, the strings are sorted
 * with strcmp (the separator sorts below every encoded byte, so this orders by name, then
 * value), then written with '=' and '&'. */

/* Appends the parameter `piece` (`len` bytes, "name", "name=" or "name=value") to `arena`. */
static int encode_param(struct buf *arena, const char *piece, size_t len)
{
    const char *eq = memchr(piece, '=', len);
    size_t name_len = eq != NULL ? (size_t)(eq - piece) : len;
    const char sep = QUERY_SEP;
    if (reencode(arena, piece, name_len) < 0 || buf_append(arena, &sep, 1) < 0) {
        return -1;
    }
    if (eq != NULL && reencode(arena, eq + 1, len - name_len - 1) < 0) {
        return -1;
    }
    return buf_append(arena, "", 1);
}

static int encode_params(struct buf *arena, const char *query, size_t *count, struct err *e)
{
    size_t n = 0;
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        if (len > 0 && n == SIGV4_MAX_QUERY_PARAMS) {
            return err_set(e, "more than %d query parameters", SIGV4_MAX_QUERY_PARAMS);
        }
        if (len > 0 && encode_param(arena, p, len) < 0) {
            return err_set(e, "query string exceeds %d bytes encoded", QUERY_MAX);
        }
        n += len > 0;
        p += len + (p[len] == '&');
    }
    *count = n;
    return 0;
}

static int compare_params(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int write_params(struct buf *out, const char **params, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *sep = strchr(params[i], QUERY_SEP);
        if ((i > 0 && buf_puts(out, "&") < 0) ||
            buf_append(out, params[i], (size_t)(sep - params[i])) < 0 || buf_puts(out, "=") < 0 ||
            buf_puts(out, sep + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Sorts the `n` parameters in `arena` and writes them to `out`. */
static int sort_and_write(struct buf *out, const struct buf *arena, size_t n, struct err *e)
{
    const char **params = calloc(n, sizeof *params);
    if (params == NULL) {
        return err_set(e, "out of memory");
    }
    const char *p = arena->data;
    for (size_t i = 0; i < n; i++, p += strlen(p) + 1) {
        params[i] = p;
    }
    qsort(params, n, sizeof *params, compare_params);
    int rc = 0;
    if (write_params(out, params, n) < 0) {
        rc = err_set(e, "canonical request exceeds %d bytes", SIGV4_CREQ_MAX);
    }
    free(params);
    return rc;
}

static int canonical_query(struct buf *out, const char *query, struct err *e)
{
    struct buf arena;
    size_t n = 0;
    buf_init(&arena, QUERY_MAX);
    int rc = query == NULL ? 0 : encode_params(&arena, query, &n, e);
    if (rc == 0 && n > 0) {
        rc = sort_and_write(out, &arena, n, e);
    }
    buf_finish(&arena);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical headers */

struct header_ref {
    const struct sigv4_header *h;
    size_t order; /* position in the request: keeps repeated names in the order given */
};

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Compares header names as their lowercase forms compare bytewise. */
static int compare_names(const char *a, const char *b)
{
    while (*a != '\0' && lower((unsigned char)*a) == lower((unsigned char)*b)) {
        a++;
        b++;
    }
    return lower((unsigned char)*a) - lower((unsigned char)*b);
}

static int compare_refs(const void *a, const void *b)
{
    const struct header_ref *x = a, *y = b;
    int c = compare_names(x->h->name, y->h->name);
    if (c != 0) {
        return c;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

static int append_lower(struct buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        char c = (char)lower((unsigned char)*s);
        if (buf_append(out, &c, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Appends `value` without leading and trailing blanks, each inner run of blanks one space. */
static int append_trimmed(struct buf *out, const char *value)
{
    bool gap = false, any = false;
    for (const char *p = value; *p != '\0'; p++) {
        if (is_space(*p)) {
            gap = any;
            continue;
        }
        if ((gap && buf_puts(out, " ") < 0) || buf_append(out, p, 1) < 0) {
            return -1;
        }
        gap = false;
        any = true;
    }
    return 0;
}

/* Writes "name:v1,v2\n" for the run of headers at refs[*i] sharing one name, adds the name to
 * `names` and moves *i past the run. */
static int write_header(struct buf *out, struct buf *names, const struct header_ref *refs, size_t n,
                        size_t *i)
{
    const char *name = refs[*i].h->name;
    if ((names->len > 0 && buf_puts(names, ";") < 0) || append_lower(names, name) < 0 ||
        append_lower(out, name) < 0 || buf_puts(out, ":") < 0) {
        return -1;
    }
    for (size_t first = *i; *i < n && compare_names(refs[*i].h->name, name) == 0; (*i)++) {
        if ((*i > first && buf_puts(out, ",") < 0) || append_trimmed(out, refs[*i].h->value) < 0) {
            return -1;
        }
    }
    return buf_puts(out, "\n");
}

/* Writes the canonical headers and the blank line after them into `out`, and the SignedHeaders
 * list into `names`. The headers have been validated: at most SIGV4_MAX_HEADERS. */
static int canonical_headers(struct buf *out, struct buf *names, const struct sigv4_request *req)
{
    struct header_ref refs[SIGV4_MAX_HEADERS];
    size_t n = req->n_headers;
    for (size_t i = 0; i < n; i++) {
        refs[i] = (struct header_ref){.h = &req->headers[i], .order = i};
    }
    qsort(refs, n, sizeof refs[0], compare_refs);
    for (size_t i = 0; i < n;) {
        if (write_header(out, names, refs, n, &i) < 0) {
            return -1;
        }
    }
    return buf_puts(out, "\n");
}

/* ---------------------------------------------------------------------------------------------
 * Canonical request */

static int canonical_uri(struct buf *out, const char *path, enum sigv4_mode mode)
{
    if (mode == SIGV4_S3) {
        return s3_path(out, path);
    }
    return generic_path(out, path);
}

static int canonical_request(struct buf *out, struct buf *names, const struct sigv4_request *req,
                             enum sigv4_mode mode, struct err *e)
{
    if (buf_printf(out, "%s\n", req->method) < 0 || canonical_uri(out, req->path, mode) < 0 ||
        buf_puts(out, "\n") < 0) {
        return err_set(e, "canonical URI too long");
    }
    if (canonical_query(out, req->query, e) < 0) {
        return -1;
    }
    if (buf_puts(out, "\n") < 0 || canonical_headers(out, names, req) < 0 ||
        buf_printf(out, "%s\n%s", names->data, req->payload_hash) < 0) {
        return err_set(e, "canonical request exceeds %d bytes", SIGV4_CREQ_MAX);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Validation: everything a caller controls is checked before any work is done */

/* An HTTP token character (RFC 9110 tchar). */
static bool is_tchar(unsigned char c)
{
    return is_unreserved(c) || (c != '\0' && strchr("!#$%&'*+^`|", c) != NULL);
}

static bool is_token(const char *s)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* True if `s` has no control character but tab (so no CR or LF to split a header with). */
static bool is_field_value(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* True if `value`, blanks around it ignored, is `want`. */
static bool trimmed_equals(const char *value, const char *want)
{
    while (is_space(*value)) {
        value++;
    }
    size_t n = strlen(want);
    if (strncmp(value, want, n) != 0) {
        return false;
    }
    for (value += n; is_space(*value); value++) {
    }
    return *value == '\0';
}

static bool is_amz_date(const char *s)
{
    static const char shape[] = "ddddddddTddddddZ";
    if (s == NULL || strlen(s) != sizeof shape - 1) {
        return false;
    }
    for (size_t i = 0; shape[i] != '\0'; i++) {
        bool ok = shape[i] == 'd' ? s[i] >= '0' && s[i] <= '9' : s[i] == shape[i];
        if (!ok) {
            return false;
        }
    }
    return true;
}

static int check_headers(const struct sigv4_request *req, const char *amz_date, struct err *e)
{
    bool host = false, date = false;
    if (req->n_headers > SIGV4_MAX_HEADERS || (req->n_headers > 0 && req->headers == NULL)) {
        return err_set(e, "%zu headers to sign (at most %d)", req->n_headers, SIGV4_MAX_HEADERS);
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sigv4_header *h = &req->headers[i];
        if (!is_token(h->name) || h->value == NULL || !is_field_value(h->value)) {
            return err_set(e, "header %zu (%s) is not a valid HTTP header", i,
                           h->name != NULL ? h->name : "NULL");
        }
        host = host || compare_names(h->name, "host") == 0;
        if (compare_names(h->name, "x-amz-date") == 0) {
            if (!trimmed_equals(h->value, amz_date)) {
                return err_set(e, "x-amz-date header %s is not the signing time %s", h->value,
                               amz_date);
            }
            date = true;
        }
    }
    if (!host || !date) {
        return err_set(e, "the %s header is missing", host ? "x-amz-date" : "host");
    }
    return 0;
}

/* A credential scope part: not empty, no '/' (the scope separator), blank, comma or control. */
static bool is_scope_part(const char *s)
{
    return s != NULL && *s != '\0' && is_field_value(s) && strpbrk(s, "/, \t") == NULL;
}

static int check_request(const struct sigv4_request *req, const struct sigv4_key *key,
                         const char *amz_date, enum sigv4_mode mode, struct err *e)
{
    if (req == NULL || key == NULL) {
        return err_set(e, "no request or no key");
    }
    if (mode != SIGV4_S3 && mode != SIGV4_GENERIC) {
        return err_set(e, "unknown signing mode %d", (int)mode);
    }
    if (!is_scope_part(key->access_key) || !is_scope_part(key->region) ||
        !is_scope_part(key->service) || key->secret_key == NULL ||
        strlen(key->secret_key) > SECRET_MAX) {
        return err_set(e, "invalid credentials (access key, region, service or secret)");
    }
    if (!is_amz_date(amz_date)) {
        return err_set(e, "signing time %s is not YYYYMMDDTHHMMSSZ", amz_date ? amz_date : "NULL");
    }
    if (!is_token(req->method) || req->path == NULL || req->payload_hash == NULL ||
        *req->payload_hash == '\0' || !is_field_value(req->payload_hash)) {
        return err_set(e, "request needs a method, a path and a payload hash");
    }
    return check_headers(req, amz_date, e);
}

/* ---------------------------------------------------------------------------------------------
 * String to sign, signing key, Authorization */

static int string_to_sign(struct buf *out, const struct buf *creq, const struct sigv4_key *key,
                          const char *amz_date)
{
    char digest[HASH_SHA256_HEX];
    hash_sha256_hex(creq->data, creq->len, digest);
    return buf_printf(out, ALGORITHM "\n%s\n%.8s/%s/%s/" SCOPE_END "\n%s", amz_date, amz_date,
                      key->region, key->service, digest);
}

/* Overwrites key material in a way the compiler may not optimise away. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n-- > 0) {
        *v++ = 0;
    }
}

/* k = HMAC(k, msg) */
static void hmac_step(uint8_t k[HASH_SHA256_LEN], const char *msg, size_t len)
{
    uint8_t next[HASH_SHA256_LEN];
    hash_hmac_sha256(k, HASH_SHA256_LEN, msg, len, next);
    memcpy(k, next, sizeof next);
    wipe(next, sizeof next);
}

/* The secret key has been checked to be at most SECRET_MAX bytes. */
static void signing_key(const struct sigv4_key *key, const char *amz_date,
                        uint8_t k[HASH_SHA256_LEN])
{
    char secret[sizeof "AWS4" + SECRET_MAX];
    int n = snprintf(secret, sizeof secret, "AWS4%s", key->secret_key);
    hash_hmac_sha256(secret, (size_t)n, amz_date, DATE_LEN, k);
    wipe(secret, sizeof secret);
    hmac_step(k, key->region, strlen(key->region));
    hmac_step(k, key->service, strlen(key->service));
    hmac_step(k, SCOPE_END, strlen(SCOPE_END));
}

static int authorization(char out[SIGV4_AUTHZ_MAX], const struct sigv4_key *key,
                         const char *amz_date, const char *names, const struct buf *sts)
{
    uint8_t k[HASH_SHA256_LEN], mac[HASH_SHA256_LEN];
    char signature[HASH_SHA256_HEX];
    signing_key(key, amz_date, k);
    hash_hmac_sha256(k, sizeof k, sts->data, sts->len, mac);
    wipe(k, sizeof k);
    hash_hex(mac, sizeof mac, signature);
    int n = snprintf(out, SIGV4_AUTHZ_MAX,
                     ALGORITHM " Credential=%s/%.8s/%s/%s/" SCOPE_END
                               ", SignedHeaders=%s, Signature=%s",
                     key->access_key, amz_date, key->region, key->service, names, signature);
    return n < 0 || n >= SIGV4_AUTHZ_MAX ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Public entry points */

void sigv4_amz_date(time_t t, char out[SIGV4_AMZ_DATE_LEN])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, SIGV4_AMZ_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm) != SIGV4_AMZ_DATE_LEN - 1) {
        out[0] = '\0';
    }
}

/* Copies `from` into the caller's optional `to`. */
static int copy_out(struct buf *to, const struct buf *from)
{
    if (to == NULL) {
        return 0;
    }
    buf_reset(to);
    return buf_append(to, from->data, from->len);
}

static void empty(struct buf *b)
{
    if (b != NULL) {
        buf_reset(b);
    }
}

int sigv4_sign(const struct sigv4_request *req, const struct sigv4_key *key, const char *amz_date,
               enum sigv4_mode mode, char authz[SIGV4_AUTHZ_MAX], struct buf *creq, struct buf *sts,
               struct err *e)
{
    struct buf c, names, s;
    char out[SIGV4_AUTHZ_MAX];
    int rc = -1;
    buf_init(&c, SIGV4_CREQ_MAX);
    buf_init(&names, NAMES_MAX);
    buf_init(&s, STS_MAX);
    if (check_request(req, key, amz_date, mode, e) < 0 ||
        canonical_request(&c, &names, req, mode, e) < 0) {
        goto done;
    }
    if (string_to_sign(&s, &c, key, amz_date) < 0 ||
        authorization(out, key, amz_date, names.data, &s) < 0) {
        err_set(e, "credential scope too long for the string to sign or Authorization header");
        goto done;
    }
    if (copy_out(creq, &c) < 0 || copy_out(sts, &s) < 0) {
        err_set(e, "caller's buffer too small for the canonical request or string to sign");
        goto done;
    }
    memcpy(authz, out, sizeof out);
    rc = 0;
done:
    if (rc < 0) {
        empty(creq);
        empty(sts);
    }
    buf_finish(&c);
    buf_finish(&names);
    buf_finish(&s);
    return rc;
}
