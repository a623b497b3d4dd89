#define _DEFAULT_SOURCE     /* timegm */
#define _XOPEN_SOURCE   700 /* strptime */
#include "awsmeta.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "credproc.h"
#include "http.h"
#include "netguard.h"

static int xml_text(const char *xml, const char *limit, const char *tag, char *out, size_t cap);

bool awsmeta_configured(const struct cfg *c)
{
    return c->aws_web_identity_token_file[0] != '\0' ||
           c->aws_container_credentials_full_uri[0] != '\0' ||
           c->aws_container_credentials_relative_uri[0] != '\0' || c->s3_instance_credentials;
}

/* Whether a URL's host (as curl gives it: an IPv6 address in brackets) is this machine:
 * "localhost" or a loopback address. */
static bool loopback_host(const char *host)
{
    if (strcasecmp(host, "localhost") == 0) {
        return true;
    }
    char bare[NETGUARD_ADDR_MAX];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof bare) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    struct netguard_addr a;
    return netguard_parse_addr(host, &a) == 0 && netguard_classify(&a) == NETGUARD_LOOPBACK;
}

/* Whether a plain http URL's host may serve credentials: loopback, or the ECS or EKS agent. */
static bool http_host_allowed(const char *host)
{
    static const char *const agents[] = {"169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"};
    for (size_t i = 0; i < sizeof agents / sizeof agents[0]; i++) {
        if (strcasecmp(host, agents[i]) == 0) {
            return true;
        }
    }
    return loopback_host(host);
}

/* The container URL's check: https anywhere, http only to a host http_host_allowed(). */
static int check_container_url(const char *url, struct err *e)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    char shown[CFG_STR_MAX + 8]; /* a password in the URL as *** */
    int rc = -1;
    if (u == NULL) {
        return err_set(e, "out of memory");
    }
    cfg_redact_url(url, shown, sizeof shown);
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err_set(e, "%s is not a URL", shown);
    } else if (strcasecmp(scheme, "https") == 0) {
        rc = 0;
    } else if (strcasecmp(scheme, "http") != 0) {
        err_set(e, "%s: only http and https are spoken", shown);
    } else if (!http_host_allowed(host)) {
        err_set(e,
                "%s: a plain http URL must name a loopback address, 169.254.170.2, "
                "169.254.170.23 or fd00:ec2::23 (else use https)",
                shown);
    } else {
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Whether an http URL names a loopback host (a token may go there in the clear). */
static bool loopback_url(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool loopback = false;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        loopback = loopback_host(host);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return loopback;
}

/* STS with a web identity token (EKS IAM Roles for Service Accounts). */
static int init_web_identity(struct awsmeta *m, const struct cfg *c, struct err *e)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-";
    if (c->aws_role_arn[0] == '\0') {
        return err_set(e, "AWS_WEB_IDENTITY_TOKEN_FILE needs AWS_ROLE_ARN, the role to take");
    }
    const char *name = c->aws_role_session_name;
    size_t n = strlen(name);
    if (n > 0 && (n < 2 || n > 64 || strspn(name, allowed) != n)) {
        return err_set(e, "AWS_ROLE_SESSION_NAME must be 2 to 64 letters, digits or _+=,.@-");
    }
    m->kind = AWSMETA_WEB_IDENTITY;
    snprintf(m->auth_file, sizeof m->auth_file, "%s", c->aws_web_identity_token_file);
    snprintf(m->role_arn, sizeof m->role_arn, "%s", c->aws_role_arn);
    if (n > 0) {
        snprintf(m->session_name, sizeof m->session_name, "%s", name);
    } else { /* one per process, as the SDKs make: pixq-<host>-<pid> (the pod, in CloudTrail) */
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        host[strspn(host, allowed)] = '\0';
        snprintf(m->session_name, sizeof m->session_name, "pixq-%.40s-%ld", host, (long)getpid());
    }
    if (c->aws_endpoint_url_sts[0] != '\0') {
        snprintf(m->url, sizeof m->url, "%s", c->aws_endpoint_url_sts);
        if (strncasecmp(m->url, "https://", 8) != 0 && !loopback_url(m->url)) {
            return err_set(e,
                           "AWS_ENDPOINT_URL_STS %s: the token goes in the request: https, or "
                           "plain http to a loopback address only",
                           m->url);
        }
    } else if ((size_t)snprintf(m->url, sizeof m->url, "https://sts.%s.amazonaws.com",
                                c->aws_region) >= sizeof m->url) {
        return err_set(e, "AWS_REGION is too long");
    }
    size_t u = strlen(m->url);
    while (u > 0 && m->url[u - 1] == '/') {
        m->url[--u] = '\0';
    }
    return 0;
}

int awsmeta_init(struct awsmeta *m, const struct cfg *c, struct err *e)
{
    memset(m, 0, sizeof *m);
    m->timeout_ms = c->s3_credentials_timeout_ms;
    const char *full = c->aws_container_credentials_full_uri;
    const char *rel = c->aws_container_credentials_relative_uri;
    if (c->aws_web_identity_token_file[0] != '\0') { /* (AWS_ROLE_ARN alone is ignored) */
        return init_web_identity(m, c, e);
    }
    if (rel[0] != '\0') { /* the SDKs take it before FULL_URI */
        if (rel[0] != '/') {
            return err_set(e, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
        }
        m->kind = AWSMETA_CONTAINER;
        if ((size_t)snprintf(m->url, sizeof m->url, "%s%s", AWSMETA_ECS_HOST, rel) >=
            sizeof m->url) {
            return err_set(e, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is too long");
        }
    } else if (full[0] != '\0') {
        m->kind = AWSMETA_CONTAINER;
        snprintf(m->url, sizeof m->url, "%s", full);
        if (check_container_url(full, e) < 0) {
            err_wrap(e, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
            return -1;
        }
    } else if (c->s3_instance_credentials) {
        m->kind = AWSMETA_INSTANCE;
        m->v1_disabled = c->aws_ec2_metadata_v1_disabled;
        snprintf(m->url, sizeof m->url, "%s", c->aws_ec2_metadata_service_endpoint);
        size_t n = strlen(m->url);
        while (n > 0 && m->url[n - 1] == '/') {
            m->url[--n] = '\0';
        }
        if (n == 0) {
            return err_set(e, "AWS_EC2_METADATA_SERVICE_ENDPOINT is empty");
        }
        return 0;
    } else {
        return err_set(e, "no metadata endpoint is configured");
    }
    snprintf(m->auth_file, sizeof m->auth_file, "%s", c->aws_container_authorization_token_file);
    snprintf(m->auth, sizeof m->auth, "%s", c->aws_container_authorization_token);
    if (m->auth_file[0] == '\0' && !http_header_valid("Authorization", m->auth)) {
        return err_set(e, "AWS_CONTAINER_AUTHORIZATION_TOKEN holds a control character");
    }
    return 0;
}

const char *awsmeta_source(const struct awsmeta *m)
{
    return m->kind == AWSMETA_CONTAINER      ? "container"
           : m->kind == AWSMETA_INSTANCE     ? "instance"
           : m->kind == AWSMETA_WEB_IDENTITY ? "web_identity"
                                             : "process";
}

int awsmeta_init_process(struct awsmeta *m, const char *file, const char *profile,
                         const char *command, long timeout_ms, struct err *e)
{
    memset(m, 0, sizeof *m);
    m->kind = AWSMETA_PROCESS;
    m->timeout_ms = timeout_ms;
    struct credproc_argv a;
    if (strlen(command) >= sizeof m->command) {
        return err_set(e, "profile [%s]: credential_process is longer than %zu bytes", profile,
                       sizeof m->command - 1);
    }
    if (credproc_split(command, &a, e) < 0) {
        err_wrap(e, "profile [%s]: credential_process", profile);
        return -1;
    }
    snprintf(m->url, sizeof m->url, "%s", a.argv[0]);
    credproc_argv_free(&a);
    snprintf(m->command, sizeof m->command, "%s", command);
    snprintf(m->file, sizeof m->file, "%s", file);
    snprintf(m->profile, sizeof m->profile, "%s", profile);
    return 0;
}

const char *awsmeta_origin(const struct awsmeta *m, char *out, size_t cap)
{
    if (m->kind == AWSMETA_PROCESS) {
        snprintf(out, cap, "credential_process %s of profile [%s] in %s", m->url, m->profile,
                 m->file);
        return out;
    }
    if (m->kind == AWSMETA_WEB_IDENTITY) {
        snprintf(out, cap, "STS %s (AssumeRoleWithWebIdentity for %s)", m->url, m->role_arn);
        return out;
    }
    char shown[sizeof m->url + 8];
    snprintf(out, cap, "%s %s",
             m->kind == AWSMETA_CONTAINER ? "the container credentials endpoint"
                                          : "the instance metadata service",
             awsmeta_url_shown(m, shown, sizeof shown));
    return out;
}

const char *awsmeta_url_shown(const struct awsmeta *m, char *out, size_t cap)
{
    if (strstr(m->url, "://") != NULL) {
        cfg_redact_url(m->url, out, cap);
    } else { /* a credential_process's program: a path, no password */
        snprintf(out, cap, "%s", m->url);
    }
    return out;
}

/* Trims blanks and line ends from both ends of s (in place). */
static void trim_in_place(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL) {
        s[--n] = '\0';
    }
    while (s[i] != '\0' && strchr(" \t\r\n", s[i]) != NULL) {
        i++;
    }
    memmove(s, s + i, n - i + 1);
}

/* Reads a token from `path` (the setting `var` names it) into out: trimmed, not empty, no
 * control character (it goes into a header or a form). */
static int read_token_file(const char *var, const char *path, char *out, size_t cap, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return err_set(e, "%s %s: %s", var, path, strerror(errno));
    }
    size_t got = 0;
    ssize_t n = 1;
    while (got < cap - 1 && (n = read(fd, out + got, cap - 1 - got)) > 0) {
        got += (size_t)n;
    }
    char extra;
    bool more = n > 0 && read(fd, &extra, 1) > 0;
    int saved = errno;
    close(fd);
    out[got] = '\0';
    if (n < 0) {
        return err_set(e, "%s %s: %s", var, path, strerror(saved));
    }
    if (more) {
        return err_set(e, "%s %s is longer than %zu bytes", var, path, cap - 1);
    }
    if (memchr(out, '\0', got) != NULL) {
        return err_set(e, "%s %s holds a NUL byte", var, path);
    }
    trim_in_place(out);
    if (out[0] == '\0') {
        return err_set(e, "%s %s is empty", var, path);
    }
    if (!http_header_valid("Authorization", out)) {
        return err_set(e, "%s %s holds a control character", var, path);
    }
    return 0;
}

/* The Authorization value of a container fetch: the file's, read now (EKS replaces it), else the
 * configured one. */
static int container_auth(const struct awsmeta *m, char *out, size_t cap, struct err *e)
{
    if (m->auth_file[0] == '\0') {
        snprintf(out, cap, "%s", m->auth);
        return 0;
    }
    return read_token_file("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", m->auth_file, out, cap, e);
}

/* One request of a fetch, within what is left of the fetch's time, with `body` (`len` bytes;
 * NULL: none, or "" for a PUT), straight to the endpoint (`direct`: no proxy) or as S3's go
 * (the environment's proxy, if any); 0 only for a 200. */
static int ask_with(struct http *h, const char *method, const char *url,
                    const struct http_header *hd, size_t n_hd, const char *body, size_t len,
                    bool direct, long deadline_ms, struct http_response *resp, struct err *e)
{
    static const struct netguard any = {.allow_private = true}; /* any address, no proxy */
    char shown[CFG_STR_MAX + 264]; /* the URL as errors show it: a password in it as *** */
    cfg_redact_url(url, shown, sizeof shown);
    long left = deadline_ms - clock_mono_ms();
    if (left <= 0) {
        return err_set(e, "%s %s: timed out", method, shown);
    }
    const struct http_request req = {
        .method = method,
        .url = url,
        .headers = hd,
        .n_headers = n_hd,
        .body = body != NULL                 ? body
                : strcmp(method, "PUT") == 0 ? ""
                                             : NULL,
        .body_len = len,
        .connect_timeout_ms = left,
        .timeout_ms = left,
        .max_body = AWSMETA_BODY_MAX,
        .guard = direct ? &any : NULL,
    };
    if (http_perform(h, &req, resp, e) < 0) { /* which of the fetch's steps failed, and how */
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return err_set(e, "%s %s: %s", method, shown, why);
    }
    if (resp->status != 200) {
        size_t n = resp->body.len < 200 ? resp->body.len : 200;
        char excerpt[201];
        memcpy(excerpt, resp->body.len > 0 ? resp->body.data : "", n);
        excerpt[n] = '\0';
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)excerpt[i] < 0x20) {
                excerpt[i] = ' ';
            }
        }
        trim_in_place(excerpt);
        return err_set(e, "%s %s answered %ld%s%s", method, shown, resp->status,
                       excerpt[0] != '\0' ? ": " : "", excerpt);
    }
    return 0;
}

/* ask_with() without a body, straight to the endpoint. */
static int ask(struct http *h, const char *method, const char *url, const struct http_header *hd,
               size_t n_hd, long deadline_ms, struct http_response *resp, struct err *e)
{
    return ask_with(h, method, url, hd, n_hd, NULL, 0, true, deadline_ms, resp, e);
}

/* The body of a 200 as text (a NUL after it). */
static const char *text_of(struct http_response *resp)
{
    if (buf_append(&resp->body, "", 1) < 0) {
        return "";
    }
    resp->body.len--;
    return resp->body.data;
}

static int fetch_container(struct http *h, const struct awsmeta *m, long deadline,
                           struct http_response *resp, struct err *e)
{
    char auth[CFG_TOKEN_MAX];
    if (container_auth(m, auth, sizeof auth, e) < 0) {
        return -1;
    }
    struct http_header hd[2] = {{"Accept", "application/json"}, {"Authorization", auth}};
    return ask(h, "GET", m->url, hd, auth[0] != '\0' ? 2 : 1, deadline, resp, e);
}

/* IMDSv2's session token into `token`; or "" for IMDSv1, with why into `v1` (ERR_MSG_MAX
 * bytes), when the token's PUT is refused (other than 400, a bad request) or not answered, as
 * AWS's SDKs fall back: an instance or a proxy without IMDSv2, a container behind a hop limit of
 * 1 that IMDSv2's answers do not reach. Unless IMDSv1 is off or the fetch is cut short, the PUT
 * has half the time left, so that the fallback has the other half. Returns 0, or -1 with why. */
static int imds_token(struct http *h, const struct awsmeta *m, long deadline,
                      struct http_response *resp, char *token, size_t cap, char *v1, struct err *e)
{
    char url[CFG_STR_MAX + 32], ttl[32];
    snprintf(ttl, sizeof ttl, "%d", AWSMETA_IMDS_TTL_S);
    snprintf(url, sizeof url, "%s/latest/api/token", m->url);
    struct http_header put[1] = {{"X-aws-ec2-metadata-token-ttl-seconds", ttl}};
    long now = clock_mono_ms();
    struct err why = {{0}};
    token[0] = v1[0] = '\0';
    bool whole = m->v1_disabled || m->cut;
    if (ask(h, "PUT", url, put, 1, whole ? deadline : now + (deadline - now) / 2, resp, &why) < 0) {
        if (m->v1_disabled || resp->status == 400 || (m->cut && resp->status == 0)) {
            *e = why;
            return -1;
        }
        snprintf(v1, ERR_MSG_MAX, "%s", why.msg);
        return 0;
    }
    if ((size_t)snprintf(token, cap, "%s", text_of(resp)) >= cap) {
        return err_set(e, "the instance metadata service gave a session token over %zu bytes",
                       cap - 1);
    }
    trim_in_place(token);
    if (token[0] == '\0' || !http_header_valid("X-aws-ec2-metadata-token", token)) {
        return err_set(e, "the instance metadata service gave no session token that can be sent");
    }
    return 0;
}

/* ask() of IMDS, with the session token when there is one; an IMDSv1 failure says why IMDSv2
 * was not used. */
static int ask_imds(struct http *h, const char *url, const char *token, const char *v1,
                    long deadline, struct http_response *resp, struct err *e)
{
    struct http_header get[1] = {{"X-aws-ec2-metadata-token", token}};
    if (ask(h, "GET", url, get, token[0] != '\0' ? 1 : 0, deadline, resp, e) < 0) {
        return v1[0] != '\0' ? err_wrap(e, "IMDSv1, without a session token (%.160s)", v1) : -1;
    }
    return 0;
}

/* IMDSv2 (or v1, imds_token()): a session token, the role's name, then its credentials. */
static int fetch_instance(struct http *h, const struct awsmeta *m, long deadline,
                          struct http_response *resp, char *v1, struct err *e)
{
    char url[CFG_STR_MAX + 256], token[256], role[256];
    if (imds_token(h, m, deadline, resp, token, sizeof token, v1, e) < 0) {
        return -1;
    }
    snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/", m->url);
    if (ask_imds(h, url, token, v1, deadline, resp, e) < 0) {
        return -1;
    }
    const char *listed = text_of(resp);
    size_t line = strcspn(listed, "\r\n"); /* one role per instance profile: the first line */
    if (line >= sizeof role) {
        return err_set(e, "the instance's role name is longer than %zu bytes", sizeof role - 1);
    }
    memcpy(role, listed, line);
    role[line] = '\0';
    trim_in_place(role);
    if (role[0] == '\0' || strspn(role, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789+=,.@_-") != strlen(role)) {
        return err_set(e, "the instance has no role to take credentials from (%s answered \"%s\")",
                       url, role);
    }
    size_t n = strlen(url);
    if ((size_t)snprintf(url + n, sizeof url - n, "%s", role) >= sizeof url - n) {
        return err_set(e, "the instance's role name is too long: %s", role);
    }
    return ask_imds(h, url, token, v1, deadline, resp, e);
}

/* Appends `s` to `b` form-encoded (unreserved characters as they are, the rest %XX). */
static int form_append(struct buf *b, const char *name, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_puts(b, b->len > 0 ? "&" : "") < 0 || buf_puts(b, name) < 0 || buf_puts(b, "=") < 0
                 ? -1
                 : 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && rc == 0; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p) != NULL) {
            rc = buf_append(b, p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = buf_append(b, esc, 3);
        }
    }
    return rc;
}

/* STS's AssumeRoleWithWebIdentity with the token read now (the kubelet renews it). */
static int fetch_web_identity(struct http *h, const struct awsmeta *m, long deadline,
                              struct http_response *resp, struct err *e)
{
    char *token = malloc(CFG_TOKEN_MAX);
    if (token == NULL) {
        return err_set(e, "out of memory");
    }
    struct buf form;
    buf_init(&form, 4 * CFG_TOKEN_MAX);
    int reserved = buf_reserve(&form, 4 * CFG_TOKEN_MAX); /* no realloc leaves a token behind */
    int rc = reserved < 0 ? err_set(e, "out of memory")
                          : read_token_file("AWS_WEB_IDENTITY_TOKEN_FILE", m->auth_file, token,
                                            CFG_TOKEN_MAX, e);
    if (rc == 0 && (form_append(&form, "Action", "AssumeRoleWithWebIdentity") < 0 ||
                    form_append(&form, "Version", "2011-06-15") < 0 ||
                    form_append(&form, "RoleArn", m->role_arn) < 0 ||
                    form_append(&form, "RoleSessionName", m->session_name) < 0 ||
                    form_append(&form, "WebIdentityToken", token) < 0)) {
        rc = err_set(e, "out of memory");
    }
    char url[CFG_STR_MAX + 2];
    snprintf(url, sizeof url, "%s/", m->url);
    const struct http_header hd[2] = {{"Content-Type", "application/x-www-form-urlencoded"},
                                      {"Accept", "application/xml"}};
    if (rc == 0) {
        rc = ask_with(h, "POST", url, hd, 2, form.data, form.len, false, deadline, resp, e);
    }
    if (rc < 0 && resp->status >= 400) { /* STS says why in XML */
        char code[128] = "", message[256] = "";
        const char *xml = text_of(resp);
        const char *all = xml + strlen(xml);
        if (xml_text(xml, all, "Code", code, sizeof code) == 0) {
            if (xml_text(xml, all, "Message", message, sizeof message) < 0) {
                message[0] = '\0';
            }
            err_set(e, "STS answered %ld %s%s%s", resp->status, code, message[0] ? ": " : "",
                    message);
        }
    }
    if (form.data != NULL) {
        explicit_bzero(form.data, form.len); /* the token: not left in freed memory */
    }
    buf_finish(&form);
    explicit_bzero(token, CFG_TOKEN_MAX);
    free(token);
    return rc;
}

/* Runs the credential_process and reads what it wrote. */
static int fetch_process(const struct awsmeta *m, struct awsmeta_keys *k, struct err *e)
{
    struct buf out;
    buf_init(&out, CREDPROC_OUTPUT_MAX);
    int rc = credproc_run(m->command, m->timeout_ms, &out, e);
    if (rc == 0) {
        rc = awsmeta_parse_process(out.len > 0 ? out.data : "", out.len, k, e);
    }
    if (out.data != NULL) {
        /* the secret key: not left in freed memory (json-c's own read buffer aside) */
        explicit_bzero(out.data, out.len);
    }
    buf_finish(&out);
    return rc;
}

int awsmeta_fetch(const struct awsmeta *m, struct awsmeta_keys *k, struct err *e)
{
    if (m->kind == AWSMETA_PROCESS) {
        return fetch_process(m, k, e);
    }
    struct http *h = http_create(e);
    if (h == NULL) {
        return -1;
    }
    struct http_response resp;
    http_response_init(&resp);
    long deadline = clock_mono_ms() + m->timeout_ms;
    char v1[ERR_MSG_MAX] = "";
    int rc = m->kind == AWSMETA_CONTAINER  ? fetch_container(h, m, deadline, &resp, e)
             : m->kind == AWSMETA_INSTANCE ? fetch_instance(h, m, deadline, &resp, v1, e)
                                           : fetch_web_identity(h, m, deadline, &resp, e);
    if (rc == 0 && m->kind == AWSMETA_WEB_IDENTITY) {
        rc = awsmeta_parse_sts(text_of(&resp), k, e);
    } else if (rc == 0) {
        rc = awsmeta_parse(resp.body.len > 0 ? resp.body.data : "", resp.body.len, k, e);
    }
    if (rc == 0) {
        memcpy(k->imds_v1, v1, sizeof k->imds_v1);
    }
    http_response_finish(&resp);
    http_destroy(h);
    return rc;
}

bool awsmeta_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Copies string member `name` of `obj` into out (cap bytes); `need`: absent is an error. */
static int member(json_object *obj, const char *name, char *out, size_t cap, bool need,
                  struct err *e)
{
    json_object *v;
    out[0] = '\0';
    if (!json_object_object_get_ex(obj, name, &v) || json_object_is_type(v, json_type_null)) {
        return need ? err_set(e, "the answer has no %s", name) : 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return err_set(e, "the answer's %s is not a string", name);
    }
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n >= cap) {
        return err_set(e, "the answer's %s is longer than %zu bytes", name, cap - 1);
    }
    if (!awsmeta_printable(s, n)) {
        return err_set(e, "the answer's %s holds a control character", name);
    }
    memcpy(out, s, n + 1);
    if (need && n == 0) {
        return err_set(e, "the answer's %s is empty", name);
    }
    return 0;
}

/* Reads an endpoint's or a credential_process's JSON into `k`; `process`: the latter's form
 * ("Version": 1, SessionToken rather than Token, no Code). */
static int parse_json(const char *json, size_t len, bool process, struct awsmeta_keys *k,
                      struct err *e)
{
    json_tokener *tok = json_tokener_new_ex(8);
    if (tok == NULL) {
        return err_set(e, "out of memory");
    }
    json_object *obj = len <= AWSMETA_BODY_MAX && len < (size_t)INT32_MAX
                           ? json_tokener_parse_ex(tok, json, (int)len)
                           : NULL;
    bool whole = obj != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                 json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    int rc = -1;
    char code[64] = "", expiration[64];
    struct awsmeta_keys got = {0};
    json_object *version = NULL;
    if (!whole || !json_object_is_type(obj, json_type_object)) {
        err_set(e, "the answer is not a JSON object");
    } else if (process && (!json_object_object_get_ex(obj, "Version", &version) ||
                           !(json_object_is_type(version, json_type_int) ||
                             json_object_is_type(version, json_type_double)) ||
                           json_object_get_double(version) != 1.0)) {
        err_set(e, "the answer's Version is not 1");
    } else if (!process && member(obj, "Code", code, sizeof code, false, e) < 0) {
        /* said */
    } else if (code[0] != '\0' && strcmp(code, "Success") != 0) {
        char message[256];
        if (member(obj, "Message", message, sizeof message, false, e) < 0) {
            message[0] = '\0';
        }
        err_set(e, "the answer's Code is %s%s%s", code, message[0] != '\0' ? ": " : "", message);
    } else if (member(obj, "AccessKeyId", got.access_key, sizeof got.access_key, true, e) < 0 ||
               member(obj, "SecretAccessKey", got.secret_key, sizeof got.secret_key, true, e) < 0 ||
               member(obj, process ? "SessionToken" : "Token", got.session_token,
                      sizeof got.session_token, false, e) < 0 ||
               member(obj, "Expiration", expiration, sizeof expiration, false, e) < 0) {
        /* said */
    } else if (expiration[0] != '\0' && awsmeta_time(expiration, &got.expires) < 0) {
        err_set(e, "the answer's Expiration \"%s\" cannot be read", expiration);
    } else {
        *k = got;
        rc = 0;
    }
    static const char *const secrets[] = {"SecretAccessKey", "Token", "SessionToken"};
    for (size_t i = 0; obj != NULL && i < sizeof secrets / sizeof secrets[0]; i++) {
        json_object *v;
        if (json_object_object_get_ex(obj, secrets[i], &v) &&
            json_object_is_type(v, json_type_string)) {
            /* the parsed copy: not left in freed memory (json-c's own read buffer may be) */
            explicit_bzero((char *)json_object_get_string(v),
                           (size_t)json_object_get_string_len(v));
        }
    }
    explicit_bzero(&got, sizeof got);
    json_object_put(obj);
    return rc;
}

int awsmeta_parse(const char *json, size_t len, struct awsmeta_keys *k, struct err *e)
{
    return parse_json(json, len, false, k, e);
}

int awsmeta_parse_process(const char *json, size_t len, struct awsmeta_keys *k, struct err *e)
{
    return parse_json(json, len, true, k, e);
}

/* The text of the first <tag>...</tag> in [xml, limit) (XML's five escapes read), into out.
 * Returns 0, -1 when there is none, -2 when it does not fit, holds a control character, markup
 * (CDATA) or another escape: not read as keys that would then be wrong. */
static int xml_text(const char *xml, const char *limit, const char *tag, char *out, size_t cap)
{
    static const struct {
        const char *esc;
        char ch;
    } escapes[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *p = strstr(xml, open);
    const char *end = p != NULL ? strstr(p + strlen(open), close) : NULL;
    if (end == NULL || end > limit) {
        return -1;
    }
    size_t n = 0;
    for (p += strlen(open); p < end; n++) {
        if (n + 1 >= cap || *p == '<') {
            return -2;
        }
        out[n] = *p++;
        if (out[n] != '&') {
            continue;
        }
        size_t i = 0;
        while (i < sizeof escapes / sizeof escapes[0] &&
               strncmp(p - 1, escapes[i].esc, strlen(escapes[i].esc)) != 0) {
            i++;
        }
        if (i == sizeof escapes / sizeof escapes[0]) {
            return -2; /* &#43; and the like: not what STS writes */
        }
        out[n] = escapes[i].ch;
        p += strlen(escapes[i].esc) - 1;
    }
    out[n] = '\0';
    return awsmeta_printable(out, n) ? 0 : -2;
}

int awsmeta_parse_sts(const char *xml, struct awsmeta_keys *k, struct err *e)
{
    static const char *const names[4] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                         "Expiration"};
    const char *creds = strstr(xml, "<Credentials>");
    const char *creds_end = creds != NULL ? strstr(creds, "</Credentials>") : NULL;
    if (creds_end == NULL) {
        return err_set(e, "STS's answer has no Credentials");
    }
    struct awsmeta_keys got = {0};
    char expiration[64];
    char *dst[4] = {got.access_key, got.secret_key, got.session_token, expiration};
    const size_t cap[4] = {sizeof got.access_key, sizeof got.secret_key, sizeof got.session_token,
                           sizeof expiration};
    for (int i = 0; i < 4; i++) {
        int rc = xml_text(creds, creds_end, names[i], dst[i], cap[i]);
        if (rc == -1 || (rc == 0 && dst[i][0] == '\0')) {
            return err_set(e, "STS's answer has no %s", names[i]);
        }
        if (rc < 0) {
            return err_set(e, "STS's %s is too long, or holds a control character or markup",
                           names[i]);
        }
    }
    if (awsmeta_time(expiration, &got.expires) < 0) {
        return err_set(e, "STS's Expiration \"%s\" cannot be read", expiration);
    }
    *k = got;
    return 0;
}

int awsmeta_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL) {
        return -1;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return -1;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    long offset_s = 0; /* east of UTC: "+02:00", "-0500" (a credential_process may write one) */
    if (strcmp(p, "Z") != 0) {
        bool colon = strlen(p) == 6 && p[3] == ':';
        if ((p[0] != '+' && p[0] != '-') || (strlen(p) != 5 && !colon)) {
            return -1;
        }
        const char *mm = p + (colon ? 4 : 3);
        for (const char *d = p + 1; *d != '\0'; d++) {
            if ((*d < '0' || *d > '9') && d != p + 3) {
                return -1;
            }
        }
        if (!colon && (p[3] < '0' || p[3] > '9')) {
            return -1;
        }
        long hh = (p[1] - '0') * 10 + (p[2] - '0'), mins = (mm[0] - '0') * 10 + (mm[1] - '0');
        if (hh > 23 || mins > 59) {
            return -1;
        }
        offset_s = (p[0] == '-' ? -1 : 1) * (hh * 3600 + mins * 60);
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return -1;
    }
    *out = t - offset_s;
    return 0;
}
