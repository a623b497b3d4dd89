/* awsmeta: temporary S3 credentials from a metadata endpoint, as AWS hands them to a task, a pod
 * or an instance with a role.
 *
 * Two endpoints are spoken: a container's credentials endpoint (ECS task roles, EKS Pod
 * Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, with the Authorization value
 * from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, read at each fetch, or
 * AWS_CONTAINER_AUTHORIZATION_TOKEN), and the EC2 instance metadata service in its version 2
 * (a session token first, then the role's credentials), falling back to version 1 (no token) as
 * AWS's SDKs do when the token is refused or not answered, unless AWS_EC2_METADATA_V1_DISABLED.
 * Both answer JSON with AccessKeyId,
 * SecretAccessKey, Token and Expiration. Requests go straight to the endpoint: no proxy. */
#ifndef PIXQ_AWSMETA_H
#define PIXQ_AWSMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "cfg.h"
#include "err.h"

#define AWSMETA_ECS_HOST   "http://169.254.170.2" /* where a RELATIVE_URI points */
#define AWSMETA_BODY_MAX   (64 * 1024)            /* bytes of an answer read */
#define AWSMETA_IMDS_TTL_S 21600                  /* life asked for an IMDSv2 session token */

enum awsmeta_kind {
    AWSMETA_CONTAINER,    /* a container's credentials endpoint */
    AWSMETA_INSTANCE,     /* the EC2 instance metadata service (IMDSv2) */
    AWSMETA_WEB_IDENTITY, /* STS's AssumeRoleWithWebIdentity with a token file (EKS IRSA) */
    AWSMETA_PROCESS,      /* a credentials file profile's credential_process (credproc.h) */
};

struct awsmeta {
    enum awsmeta_kind kind;
    char url[CFG_STR_MAX];       /* the container's credentials URL, or the IMDS endpoint */
    char auth_file[CFG_STR_MAX]; /* a container's Authorization value, or the web identity
                                  * token, is read from it at each fetch; "" none */
    char role_arn[CFG_STR_MAX];  /* web identity: the role, and the session's name */
    char session_name[CFG_STR_MAX];
    char command[CFG_STR_MAX]; /* credential_process: the command; url holds its program, the
                                * only part logged (its arguments may hold a secret) */
    char file[CFG_STR_MAX];    /* ... and the credentials file and profile that name it */
    char profile[CFG_STR_MAX];
    char auth[CFG_TOKEN_MAX]; /* else this one; "" none */
    long timeout_ms;          /* a whole fetch, every request of it */
    bool v1_disabled;         /* instance: no IMDSv1 fallback */
    bool cut;                 /* the fetch has less time than usual (a request's last): the
                               * token's PUT has all of it, and only its refusal means IMDSv1 */
};

/* Keys as an endpoint gave them. */
struct awsmeta_keys {
    char access_key[CFG_STR_MAX];
    char secret_key[CFG_STR_MAX];
    char session_token[CFG_TOKEN_MAX];
    time_t expires;            /* 0: the answer named no Expiration */
    char imds_v1[ERR_MSG_MAX]; /* they came through IMDSv1: why IMDSv2's token did not come;
                                * "" otherwise */
};

/* Sets up `m` from the configuration: STS with a web identity token when
 * AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are set, else a container endpoint when
 * AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI is set, else the instance metadata service.
 * Returns 0, or -1 with why (a plain http URL must name a loopback address or the ECS or EKS
 * agent's, as the AWS SDKs require). */
int awsmeta_init(struct awsmeta *m, const struct cfg *c, struct err *e);

/* Whether the configuration asks for credentials from a metadata endpoint. */
bool awsmeta_configured(const struct cfg *c);

/* Asks the endpoint for the credentials. Returns 0, or -1 with why. */
int awsmeta_fetch(const struct awsmeta *m, struct awsmeta_keys *k, struct err *e);

/* Reads STS's XML answer to AssumeRoleWithWebIdentity (NUL-terminated) into `k`. Returns 0, or
 * -1 with why (STS's <Code> and <Message> for an error answer). */
int awsmeta_parse_sts(const char *xml, struct awsmeta_keys *k, struct err *e);

/* Sets up `m` for the command `command` that profile `profile` of the credentials file `file`
 * names as its credential_process. Returns 0, or -1 with why (a command that cannot be split
 * into words). */
int awsmeta_init_process(struct awsmeta *m, const char *file, const char *profile,
                         const char *command, long timeout_ms, struct err *e);

/* Reads a credential_process's output (`len` bytes) into `k`: JSON with "Version": 1,
 * AccessKeyId, SecretAccessKey, and SessionToken and Expiration when the keys have them.
 * Returns 0, or -1 with why. */
int awsmeta_parse_process(const char *json, size_t len, struct awsmeta_keys *k, struct err *e);

/* Reads an endpoint's JSON answer (`len` bytes) into `k`. Returns 0, or -1 with why (an IMDS
 * Code other than Success, a key missing or too long or holding a control character, an
 * Expiration that cannot be read). */
int awsmeta_parse(const char *json, size_t len, struct awsmeta_keys *k, struct err *e);

/* Whether a key can be sent in a header and signed as it is: no control character at all (a
 * CR or LF would start another header; a TAB SigV4 would sign otherwise than S3 reads it). */
bool awsmeta_printable(const char *s, size_t n);

/* Reads an ISO 8601 UTC time as the endpoints write it ("2026-12-02T20:15:00Z", with or without
 * fractions of a second, "Z" or "+00:00"). Returns 0, or -1 when it cannot be read. */
int awsmeta_time(const char *s, time_t *out);

/* The source's name in the logs: "container", "instance", "web_identity" or "process". */
const char *awsmeta_source(const struct awsmeta *m);

/* Names where the keys come from, for messages: "the container credentials endpoint <url>" or
 * "the instance metadata service <url>". */
const char *awsmeta_origin(const struct awsmeta *m, char *out, size_t cap);

/* m->url as logs show it: a password in it (AWS_CONTAINER_CREDENTIALS_FULL_URI's userinfo,
 * which the request sends as its Basic credentials) as ***. Returns out. */
const char *awsmeta_url_shown(const struct awsmeta *m, char *out, size_t cap);

#endif
