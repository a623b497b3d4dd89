#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "awsmeta.h"
#include "check.h"
#include "clock.h"
#include "loopback.h"

/* Parses `json`: 0 with the keys in *k, or -1 with why in `why`. */
static int parse(const char *json, struct awsmeta_keys *k, char *why)
{
    struct err e = {{0}};
    memset(k, 0, sizeof *k);
    int rc = awsmeta_parse(json, strlen(json), k, &e);
    strcpy(why, e.msg);
    return rc;
}

static void test_parse(void)
{
    struct awsmeta_keys k;
    char why[ERR_MSG_MAX];
    /* an ECS or EKS answer */
    CHECK_INT(parse("{\"AccessKeyId\":\"ASIAEXAMPLE\",\"SecretAccessKey\":\"wJalr/K7+x=\","
                    "\"Token\":\"IQoJb3JpZ2luX2Vj//tok==\",\"Expiration\":\"2026-12-02T20:15:00Z\","
                    "\"RoleArn\":\"arn:aws:iam::123456789012:role/pixq\"}",
                    &k, why),
              0);
    CHECK_STR(k.access_key, "ASIAEXAMPLE");
    CHECK_STR(k.secret_key, "wJalr/K7+x=");
    CHECK_STR(k.session_token, "IQoJb3JpZ2luX2Vj//tok==");
    CHECK_INT(k.expires, 1796242500); /* date -u -d 2026-12-02T20:15:00Z +%s */
    /* an IMDS answer: Code, LastUpdated, Type beside the keys */
    CHECK_INT(parse("{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-12-02T14:00:00Z\",\n"
                    "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAIMDS\",\n"
                    "  \"SecretAccessKey\" : \"s\",\n  \"Token\" : \"t\",\n"
                    "  \"Expiration\" : \"2026-12-02T20:15:00Z\"\n}\n",
                    &k, why),
              0);
    CHECK_STR(k.access_key, "ASIAIMDS");
    /* no Expiration: keys that do not expire; no Token: none sent */
    CHECK_INT(parse("{\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\"}", &k, why), 0);
    CHECK_INT(k.expires, 0);
    CHECK_STR(k.session_token, "");
    /* refusals, with why */
    CHECK_INT(
        parse("{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"not allowed\"}", &k, why),
        -1);
    CHECK_STR(why, "the answer's Code is AssumeRoleUnauthorizedAccess: not allowed");
    CHECK_INT(parse("{\"SecretAccessKey\":\"s\"}", &k, why), -1);
    CHECK_STR(why, "the answer has no AccessKeyId");
    CHECK_INT(parse("{\"AccessKeyId\":\"\",\"SecretAccessKey\":\"s\"}", &k, why), -1);
    CHECK_STR(why, "the answer's AccessKeyId is empty");
    CHECK_INT(parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":7}", &k, why), -1);
    CHECK_STR(why, "the answer's SecretAccessKey is not a string");
    CHECK_INT(parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"a\\r\\nX: y\"}",
                    &k, why),
              -1);
    CHECK_STR(why, "the answer's Token holds a control character");
    CHECK_INT(
        parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"a\tb\"}", &k, why),
        -1); /* a TAB too: signed otherwise than S3 reads it */
    CHECK_INT(parse("{\"AccessKeyId\":\"A\\u0000B\",\"SecretAccessKey\":\"s\"}", &k, why), -1);
    CHECK_STR(why, "the answer's AccessKeyId holds a control character");
    CHECK_INT(
        parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Expiration\":\"soon\"}", &k, why),
        -1);
    CHECK_STR(why, "the answer's Expiration \"soon\" cannot be read");
    CHECK_INT(parse("<html>502 Bad Gateway</html>", &k, why), -1);
    CHECK_STR(why, "the answer is not a JSON object");
    CHECK_INT(parse("[\"AccessKeyId\"]", &k, why), -1);
    CHECK_INT(parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"} trailing", &k, why), -1);
    char *big = malloc(CFG_TOKEN_MAX + 100);
    snprintf(big, CFG_TOKEN_MAX + 100,
             "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"%0*d\"}", CFG_TOKEN_MAX,
             0);
    CHECK_INT(parse(big, &k, why), -1);
    CHECK(strstr(why, "the answer's Token is longer than") != NULL);
    free(big);
    /* a refusal leaves the keys alone */
    strcpy(k.access_key, "KEEP");
    struct err e = {{0}};
    CHECK_INT(awsmeta_parse("{}", 2, &k, &e), -1);
    CHECK_STR(k.access_key, "KEEP");
}

/* STS's answers to AssumeRoleWithWebIdentity. */
static void test_parse_sts(void)
{
    struct awsmeta_keys k;
    struct err e = {{0}};
    const char *ok =
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleWithWebIdentityResult>\n"
        "    "
        "<SubjectFromWebIdentityToken>system:serviceaccount:pixq:worker</"
        "SubjectFromWebIdentityToken>\n"
        "    <Credentials>\n"
        "      <SessionToken>FwoGZXIvYXdzEBY//token</SessionToken>\n"
        "      <SecretAccessKey>wJalr&amp;K7/x+&lt;y&gt;</SecretAccessKey>\n"
        "      <Expiration>2026-12-02T20:15:00Z</Expiration>\n"
        "      <AccessKeyId>ASIASTS</AccessKeyId>\n"
        "    </Credentials>\n"
        "  </AssumeRoleWithWebIdentityResult>\n"
        "</AssumeRoleWithWebIdentityResponse>\n";
    CHECK_INT(awsmeta_parse_sts(ok, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTS");
    CHECK_STR(k.secret_key, "wJalr&K7/x+<y>"); /* XML's escapes read */
    CHECK_STR(k.session_token, "FwoGZXIvYXdzEBY//token");
    CHECK_INT(k.expires, 1796242500);
    strcpy(k.access_key, "KEEP");
    CHECK_INT(
        awsmeta_parse_sts("<ErrorResponse><Error><Code>X</Code></Error></ErrorResponse>", &k, &e),
        -1);
    CHECK_STR(e.msg, "STS's answer has no Credentials");
    CHECK_STR(k.access_key, "KEEP");
    CHECK_INT(awsmeta_parse_sts("<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s"
                                "</SecretAccessKey><Expiration>2026-12-02T20:15:00Z</Expiration>"
                                "</Credentials>",
                                &k, &e),
              -1);
    CHECK_STR(e.msg, "STS's answer has no SessionToken");
    CHECK_INT(awsmeta_parse_sts("<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s\r\n"
                                "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>"
                                "2026-12-02T20:15:00Z</Expiration></Credentials>",
                                &k, &e),
              -1);
    CHECK_STR(e.msg, "STS's SecretAccessKey is too long, or holds a control character or markup");
    /* keys outside Credentials, CDATA, escapes STS does not write: not taken */
    CHECK_INT(
        awsmeta_parse_sts("<Credentials></Credentials><AccessKeyId>EVIL</AccessKeyId>", &k, &e),
        -1);
    CHECK_STR(e.msg, "STS's answer has no AccessKeyId");
    CHECK_INT(awsmeta_parse_sts("<Credentials><AccessKeyId><![CDATA[A]]></AccessKeyId>"
                                "</Credentials>",
                                &k, &e),
              -1);
    CHECK_STR(e.msg, "STS's AccessKeyId is too long, or holds a control character or markup");
    CHECK_INT(
        awsmeta_parse_sts("<Credentials><AccessKeyId>A&#43;B</AccessKeyId></Credentials>", &k, &e),
        -1);
    CHECK_STR(e.msg, "STS's AccessKeyId is too long, or holds a control character or markup");
    CHECK_INT(awsmeta_parse_sts("<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s"
                                "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>"
                                "later</Expiration></Credentials>",
                                &k, &e),
              -1);
    CHECK_STR(e.msg, "STS's Expiration \"later\" cannot be read");
    CHECK_INT(awsmeta_parse_sts("<Credentials><AccessKeyId>A", &k, &e), -1);
    CHECK_STR(k.access_key, "KEEP");
}

/* The edges of an answer: null is absent, a DEL or a 0x1f is a control character, "success"
 * is not "Success", JSON nested deeper than 8 or longer than AWSMETA_BODY_MAX is refused, an
 * Expiration before 1970 too. */
static void test_parse_edges(void)
{
    struct awsmeta_keys k;
    char why[ERR_MSG_MAX];
    CHECK_INT(parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":null}", &k, why),
              0);
    CHECK_STR(k.session_token, "");
    CHECK_INT(parse("{\"AccessKeyId\":\"A\x7f\",\"SecretAccessKey\":\"s\"}", &k, why), -1);
    CHECK_STR(why, "the answer's AccessKeyId holds a control character");
    CHECK_INT(parse("{\"AccessKeyId\":\"A\\u001f\",\"SecretAccessKey\":\"s\"}", &k, why), -1);
    CHECK_STR(why, "the answer's AccessKeyId holds a control character");
    CHECK_INT(
        parse("{\"Code\":\"success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}", &k, why),
        -1);
    CHECK_STR(why, "the answer's Code is success");
    CHECK_INT(
        parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"x\":[[[[[[[[1]]]]]]]]}", &k, why),
        -1);
    CHECK_STR(why, "the answer is not a JSON object");
    CHECK_INT(
        parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"x\":[[[[[[1]]]]]]}", &k, why), 0);
    char *big = malloc(AWSMETA_BODY_MAX + 100);
    int n =
        snprintf(big, AWSMETA_BODY_MAX + 100, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}");
    memset(big + n, ' ', AWSMETA_BODY_MAX + 1 - (size_t)n);
    big[AWSMETA_BODY_MAX + 1] = '\0';
    CHECK_INT(parse(big, &k, why), -1);
    CHECK_STR(why, "the answer is not a JSON object");
    big[AWSMETA_BODY_MAX] = '\0';
    CHECK_INT(parse(big, &k, why), 0);
    free(big);
    CHECK_INT(parse("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Expiration\":\"1969-12-"
                    "31T23:59:59Z\"}",
                    &k, why),
              -1);
}

/* STS's edges: &apos;, a key filling its buffer exactly, an empty key, a stray </Credentials>
 * before them. */
static void test_parse_sts_edges(void)
{
    struct awsmeta_keys k;
    struct err e = {{0}};
    char *xml = malloc(4 * CFG_STR_MAX);
    const char *rest = "</AccessKeyId><SecretAccessKey>it&apos;s</SecretAccessKey><SessionToken>t"
                       "</SessionToken><Expiration>2026-12-02T20:15:00Z</Expiration></Credentials>";
    snprintf(xml, 4 * CFG_STR_MAX, "</Credentials><Credentials><AccessKeyId>%0*d%s",
             CFG_STR_MAX - 1, 0, rest);
    CHECK_INT(awsmeta_parse_sts(xml, &k, &e), 0);
    CHECK_INT(strlen(k.access_key), CFG_STR_MAX - 1);
    CHECK_STR(k.secret_key, "it's");
    snprintf(xml, 4 * CFG_STR_MAX, "<Credentials><AccessKeyId>%0*d%s", CFG_STR_MAX, 0, rest);
    CHECK_INT(awsmeta_parse_sts(xml, &k, &e), -1);
    CHECK_STR(e.msg, "STS's AccessKeyId is too long, or holds a control character or markup");
    snprintf(xml, 4 * CFG_STR_MAX, "<Credentials><AccessKeyId>%s", rest);
    CHECK_INT(awsmeta_parse_sts(xml, &k, &e), -1);
    CHECK_STR(e.msg, "STS's answer has no AccessKeyId");
    free(xml);
}

static void test_time(void)
{
    time_t t = 0;
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00Z", &t), 0);
    CHECK_INT(t, 1796242500);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00.123456Z", &t), 0);
    CHECK_INT(t, 1796242500);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+00:00", &t), 0);
    CHECK_INT(t, 1796242500);
    CHECK_INT(awsmeta_time("1970-01-01T00:00:01Z", &t), 0);
    CHECK_INT(t, 1);
    /* an offset (a credential_process may write one): the same instant */
    CHECK_INT(awsmeta_time("2026-12-02T22:45:00+02:30", &t), 0);
    CHECK_INT((long long)t, 1796242500LL);
    CHECK_INT(awsmeta_time("2026-12-02T15:15:00-0500", &t), 0);
    CHECK_INT((long long)t, 1796242500LL);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+24:00", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02:60", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+2:00", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02-00", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02:00Z", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00.Z", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02 20:15:00Z", &t), -1);
    CHECK_INT(awsmeta_time("", &t), -1);
    /* offsets of the wrong length or with a stray character */
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+020000", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02:0x", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02:/9", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02/9", &t), -1);
    CHECK_INT(awsmeta_time("2026-12-02T20:15:00+02:000", &t), -1);
}

/* awsmeta_init() with one setting changed from the defaults: 0, or -1 with why. */
static int init(const char *var, const char *value, struct awsmeta *m, char *why)
{
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    if (cfg_set(&c, var, value, &e) != 0) {
        strcpy(why, e.msg);
        return -2;
    }
    int rc = awsmeta_init(m, &c, &e);
    strcpy(why, e.msg);
    return rc;
}

static void test_init(void)
{
    struct awsmeta *m = malloc(sizeof *m);
    char why[ERR_MSG_MAX], origin[CFG_STR_MAX + 64];
    /* plain http only to loopback or the agents; https anywhere */
    const char *allowed[] = {"http://127.0.0.1:8080/creds",
                             "http://127.1.2.3/x",
                             "http://localhost:9/x",
                             "http://[::1]:80/creds",
                             "http://169.254.170.2/v2/x",
                             "http://169.254.170.23/v1/credentials",
                             "http://[fd00:ec2::23]/v1/credentials",
                             "https://creds.example/x"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", allowed[i], m, why), 0);
        CHECK_INT(m->kind, AWSMETA_CONTAINER);
        CHECK_STR(m->url, allowed[i]);
    }
    const char *refused[] = {"http://10.0.0.1/creds", "http://169.254.169.254/latest",
                             "http://creds.example/x", "http://[::ffff:10.0.0.1]/x",
                             "http://127.0.0.1.evil.example/x"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", refused[i], m, why), -1);
        CHECK(strstr(why, "a plain http URL must name a loopback address") != NULL);
    }
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "ftp://127.0.0.1/x", m, why), -1);
    CHECK_STR(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI: ftp://127.0.0.1/x: only http and https "
                   "are spoken");
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "not a url", m, why), -1);
    /* the ECS agent's path */
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", m, why), 0);
    CHECK_STR(m->url, "http://169.254.170.2/v2/credentials/abc");
    CHECK_STR(awsmeta_origin(m, origin, sizeof origin),
              "the container credentials endpoint http://169.254.170.2/v2/credentials/abc");
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/x", m, why), -1);
    /* RELATIVE_URI before FULL_URI, as the SDKs take them */
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    CHECK_INT(cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/rel", &e), 0);
    CHECK_INT(cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/full", &e), 0);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_STR(m->url, "http://169.254.170.2/v2/rel");
    /* an address's case does not matter */
    CHECK_INT(
        init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://[FD00:EC2::23]/v1/credentials", m, why),
        0);
    /* the instance's, only when asked */
    CHECK_INT(init("PIXQ_S3_INSTANCE_CREDENTIALS", "1", m, why), 0);
    CHECK_INT(m->kind, AWSMETA_INSTANCE);
    CHECK_STR(m->url, "http://169.254.169.254");
    CHECK_STR(awsmeta_origin(m, origin, sizeof origin),
              "the instance metadata service http://169.254.169.254");
    CHECK_INT(init("PIXQ_S3_INSTANCE_CREDENTIALS", "0", m, why), -1);
    CHECK_STR(why, "no metadata endpoint is configured");
    /* a web identity: the token file and the role together, STS at the region's endpoint */
    CHECK_INT(init("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pixq", m, why), -1);
    CHECK_STR(why, "no metadata endpoint is configured"); /* a role alone: ignored, as the SDKs */
    CHECK_INT(init("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token", m, why), -1);
    CHECK_STR(why, "AWS_WEB_IDENTITY_TOKEN_FILE needs AWS_ROLE_ARN, the role to take");
    cfg_defaults(&c);
    cfg_set(&c, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pixq", &e);
    cfg_set(&c, "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token", &e);
    cfg_set(&c, "AWS_REGION", "eu-west-1", &e);
    cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/creds", &e); /* after */
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(m->kind, AWSMETA_WEB_IDENTITY);
    CHECK_STR(m->url, "https://sts.eu-west-1.amazonaws.com");
    CHECK(strncmp(m->session_name, "pixq-", 5) == 0); /* pixq-<host>-<pid> */
    CHECK(strlen(m->session_name) <= 64 &&
          strspn(m->session_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_+=,.@-") == strlen(m->session_name));
    CHECK_STR(awsmeta_origin(m, origin, sizeof origin),
              "STS https://sts.eu-west-1.amazonaws.com (AssumeRoleWithWebIdentity for "
              "arn:aws:iam::123456789012:role/pixq)");
    /* the token in the clear only to loopback */
    cfg_set(&c, "AWS_ENDPOINT_URL_STS", "http://sts.example", &e);
    CHECK_INT(awsmeta_init(m, &c, &e), -1);
    CHECK_STR(e.msg, "AWS_ENDPOINT_URL_STS http://sts.example: the token goes in the request: "
                     "https, or plain http to a loopback address only");
    cfg_set(&c, "AWS_ENDPOINT_URL_STS", "http://127.0.0.1:8080", &e);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    cfg_set(&c, "AWS_ROLE_SESSION_NAME", "a b", &e);
    CHECK_INT(awsmeta_init(m, &c, &e), -1);
    CHECK_STR(e.msg, "AWS_ROLE_SESSION_NAME must be 2 to 64 letters, digits or _+=,.@-");
    free(m);
}

/* Settings at their edges: which ones ask for a metadata endpoint; names in upper case; the
 * session name's length; URLs that just do not fit; the IMDS endpoint's trailing slashes and
 * IMDSv1's switch; a configured Authorization value with a control character (the file's is
 * checked when read); a credential_process that just does not fit. */
static void test_init_edges(void)
{
    struct awsmeta *m = malloc(sizeof *m);
    struct cfg c;
    struct err e = {{0}};
    char why[ERR_MSG_MAX], *longer = malloc(2 * CFG_STR_MAX);
    cfg_defaults(&c);
    CHECK(!awsmeta_configured(&c));
    const char *each[][2] = {{"AWS_WEB_IDENTITY_TOKEN_FILE", "/t"},
                             {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://x/"},
                             {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x"},
                             {"PIXQ_S3_INSTANCE_CREDENTIALS", "1"}};
    for (size_t i = 0; i < sizeof each / sizeof each[0]; i++) {
        cfg_defaults(&c);
        CHECK_INT(cfg_set(&c, each[i][0], each[i][1], &e), 0);
        CHECK(awsmeta_configured(&c));
    }
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://LOCALHOST:9/x", m, why), 0);
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "HTTPS://creds.example/x", m, why), 0);
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "HTTP://creds.example/x", m, why), -1);
    CHECK(strstr(why, "a plain http URL must name a loopback address") != NULL);
    CHECK_STR(awsmeta_source(m), "container");
    /* web identity */
    const char *names[] = {"a", "ab",
                           "0123456789012345678901234567890123456789012345678901234567890123",
                           "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cfg_defaults(&c);
        cfg_set(&c, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pixq", &e);
        cfg_set(&c, "AWS_WEB_IDENTITY_TOKEN_FILE", "/t", &e);
        cfg_set(&c, "AWS_ROLE_SESSION_NAME", names[i], &e);
        CHECK_INT(awsmeta_init(m, &c, &e), i == 1 || i == 2 ? 0 : -1);
        if (i == 1) {
            CHECK_STR(m->session_name, "ab");
            CHECK_STR(awsmeta_source(m), "web_identity");
        }
    }
    /* URLs cfg_set() would refuse: awsmeta checks them itself */
    cfg_set(&c, "AWS_ROLE_SESSION_NAME", "ab", &e);
    snprintf(c.aws_endpoint_url_sts, sizeof c.aws_endpoint_url_sts, "HTTPS://sts.example//");
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_STR(m->url, "HTTPS://sts.example");
    snprintf(c.aws_endpoint_url_sts, sizeof c.aws_endpoint_url_sts, "http://");
    CHECK_INT(awsmeta_init(m, &c, &e), -1);
    c.aws_endpoint_url_sts[0] = '\0';
    size_t fixed = strlen("https://sts..amazonaws.com");
    for (size_t n = CFG_STR_MAX - fixed - 1; n <= CFG_STR_MAX - fixed; n++) {
        memset(longer, 'r', n);
        longer[n] = '\0';
        CHECK_INT(cfg_set(&c, "AWS_REGION", longer, &e), 0);
        CHECK_INT(awsmeta_init(m, &c, &e), n < CFG_STR_MAX - fixed ? 0 : -1);
    }
    /* a RELATIVE_URI that fills the URL to its last byte, and one byte more */
    fixed = strlen(AWSMETA_ECS_HOST);
    for (size_t n = CFG_STR_MAX - fixed - 1; n <= CFG_STR_MAX - fixed; n++) {
        memset(longer, 'p', n);
        longer[0] = '/';
        longer[n] = '\0';
        CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", longer, m, why),
                  n < CFG_STR_MAX - fixed ? 0 : -1);
    }
    /* the instance's endpoint */
    cfg_defaults(&c);
    cfg_set(&c, "PIXQ_S3_INSTANCE_CREDENTIALS", "1", &e);
    snprintf(c.aws_ec2_metadata_service_endpoint, sizeof c.aws_ec2_metadata_service_endpoint,
             "http://127.0.0.1:9//");
    CHECK_INT(cfg_set(&c, "AWS_EC2_METADATA_V1_DISABLED", "1", &e), 0);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_STR(m->url, "http://127.0.0.1:9");
    CHECK(m->v1_disabled);
    CHECK_STR(awsmeta_source(m), "instance");
    snprintf(c.aws_ec2_metadata_service_endpoint, sizeof c.aws_ec2_metadata_service_endpoint, "/");
    CHECK_INT(awsmeta_init(m, &c, &e), -1);
    CHECK_STR(e.msg, "AWS_EC2_METADATA_SERVICE_ENDPOINT is empty");
    /* the Authorization value */
    cfg_defaults(&c);
    cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://creds.example/x", &e);
    CHECK_INT(cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "a\x01z", &e), 0);
    CHECK_INT(awsmeta_init(m, &c, &e), -1);
    CHECK_STR(e.msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN holds a control character");
    cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/t", &e);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    /* credential_process */
    memset(longer, 'c', CFG_STR_MAX);
    longer[CFG_STR_MAX] = '\0';
    CHECK_INT(awsmeta_init_process(m, "f", "p", longer, 1000, &e), -1);
    longer[CFG_STR_MAX - 1] = '\0';
    CHECK_INT(awsmeta_init_process(m, "f", "p", longer, 1000, &e), 0);
    CHECK_STR(awsmeta_source(m), "process");
    free(longer);
    free(m);
}

/* A container fetch with the Authorization value from a file holding `content` (NULL: no
 * file), to a loopback port where nothing listens: the message says what went wrong first. */
static void fetch_with_token_file(const char *content, size_t len, char *why)
{
    char path[] = "/tmp/pixq-awsmeta-XXXXXX";
    int fd = mkstemp(path);
    if (content != NULL && write(fd, content, len) != (ssize_t)len) {
        perror("write");
    }
    close(fd);
    if (content == NULL) {
        unlink(path);
    }
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds", &e);
    cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", path, &e);
    cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-this-one", &e); /* the file first */
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys *k = malloc(sizeof *k);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, k, &e), -1);
    const char *p = strstr(e.msg, path);
    if (p != NULL) { /* the path aside, which differs each time */
        snprintf(why, ERR_MSG_MAX, "%.*sFILE%s", (int)(p - e.msg), e.msg, p + strlen(path));
    } else {
        snprintf(why, ERR_MSG_MAX, "%s", e.msg);
    }
    unlink(path);
    free(m);
    free(k);
}

static void test_token_file(void)
{
    char why[ERR_MSG_MAX];
    fetch_with_token_file(NULL, 0, why);
    CHECK_STR(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE FILE: No such file or directory");
    fetch_with_token_file(" \n", 2, why);
    CHECK_STR(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE FILE is empty");
    fetch_with_token_file("ab\0cd", 5, why);
    CHECK_STR(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE FILE holds a NUL byte");
    fetch_with_token_file("ab\r\nX-Evil: 1\n", 14, why);
    CHECK_STR(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE FILE holds a control character");
    char *big = malloc(CFG_TOKEN_MAX + 1);
    memset(big, 'a', CFG_TOKEN_MAX + 1);
    fetch_with_token_file(big, CFG_TOKEN_MAX + 1, why);
    CHECK(strstr(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE FILE is longer than") == why);
    free(big);
    /* a good token (its line end trimmed): on to the request, which nothing answers */
    fetch_with_token_file("pod-token\n", 10, why);
    CHECK(strstr(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") == NULL);
    CHECK(why[0] != '\0');
    fetch_with_token_file("\r\n\tpod-token", 12, why);
    CHECK(strstr(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") == NULL);
}

/* ---- fetches from a throwaway endpoint ---- */

/* An HTTP server in a child process, on a loopback port the kernel picks: it answers its
 * connections one by one with `answers` in turn (a whole response; "HOLD": none until the
 * client gives up; "CLOSE": none at all), and keeps what each request held in a file. */
struct stub {
    pid_t pid;
    int port;
    char log[32];
};

static void stub_serve(int fd, const char *const *answers, int n, const char *log)
{
    static char req[256 * 1024];
    FILE *f = fopen(log, "w");
    for (int i = 0; i < n && f != NULL; i++) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        size_t got = 0;
        ssize_t r;
        while (got < sizeof req - 1 && (r = read(c, req + got, sizeof req - 1 - got)) > 0) {
            got += (size_t)r;
            req[got] = '\0';
            const char *end = strstr(req, "\r\n\r\n");
            const char *length = strcasestr(req, "\r\nContent-Length:");
            size_t body = length != NULL && length < end ? strtoul(length + 17, NULL, 10) : 0;
            if (end != NULL && got >= (size_t)(end - req) + 4 + body) {
                break;
            }
        }
        fprintf(f, "%.*s\n----\n", (int)got, req);
        fflush(f);
        if (strcmp(answers[i], "HOLD") == 0) {
            while (read(c, req, sizeof req) > 0) {
            }
        } else if (strcmp(answers[i], "CLOSE") != 0 &&
                   write(c, answers[i], strlen(answers[i])) < 0) {
            perror("write");
        }
        close(c);
    }
    _exit(0);
}

static void stub_start(struct stub *s, const char *const *answers, int n)
{
    int fd = loopback_listen(&s->port);
    CHECK(fd >= 0);
    snprintf(s->log, sizeof s->log, "/tmp/pixq-stub-XXXXXX");
    close(mkstemp(s->log));
    s->pid = fork();
    if (s->pid == 0) {
        stub_serve(fd, answers, n, s->log);
    }
    close(fd);
}

/* Stops the server; what the requests held into `out`. */
static void stub_finish(struct stub *s, char *out, size_t cap)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    FILE *f = fopen(s->log, "r");
    size_t n = f != NULL ? fread(out, 1, cap - 1, f) : 0;
    out[n] = '\0';
    if (f != NULL) {
        fclose(f);
    }
    unlink(s->log);
}

/* A response of `status` with `body`, in one of `slot` static buffers. */
static const char *answer(int slot, int status, const char *body)
{
    static char buf[8][8192];
    snprintf(buf[slot], sizeof buf[slot],
             "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
             strlen(body), body);
    return buf[slot];
}

#define KEYS                                                                                       \
    "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIASTUB\",\"SecretAccessKey\":\"s\",\"Token\":"      \
    "\"t\","                                                                                       \
    "\"Expiration\":\"2026-12-02T20:15:00Z\"}"

static long fetch_timeout_ms = 2000; /* of fetch_instance() */

/* A fetch from the instance metadata service `answers` stand for (`v1_off`, `cut` set):
 * its result, why into `why`, the requests into `log`. */
static int fetch_instance(const char *const *answers, int n, bool v1_off, bool cut,
                          struct awsmeta_keys *k, char *why, char *log, size_t cap)
{
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    struct awsmeta *m = malloc(sizeof *m);
    stub_start(&s, answers, n);
    cfg_defaults(&c);
    cfg_set(&c, "PIXQ_S3_INSTANCE_CREDENTIALS", "1", &e);
    snprintf(c.aws_ec2_metadata_service_endpoint, sizeof c.aws_ec2_metadata_service_endpoint,
             "http://127.0.0.1:%d/", s.port);
    c.aws_ec2_metadata_v1_disabled = v1_off;
    c.s3_credentials_timeout_ms = fetch_timeout_ms;
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    m->cut = cut;
    memset(k, 0, sizeof *k);
    int rc = awsmeta_fetch(m, k, &e);
    snprintf(why, ERR_MSG_MAX, "%s", e.msg);
    stub_finish(&s, log, cap);
    free(m);
    return rc;
}

/* IMDSv2: the token (trimmed) asked for with its TTL and sent with both GETs, the role's name
 * the answer's first line (to a CR); IMDSv1 when the token's PUT is refused (but for a 400) or
 * not answered, unless it is off or the fetch is cut short and nothing answered (the PUT then
 * has all the fetch's time); what each refusal says. */
static void test_fetch_instance(void)
{
    static char log[64 * 1024];
    char why[ERR_MSG_MAX];
    struct awsmeta_keys k;
    const char *v2[] = {answer(0, 200, "  tok-123\n"), answer(1, 200, "pixq-role\rother\n"),
                        answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(v2, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK_STR(k.access_key, "ASIASTUB");
    CHECK_INT(k.expires, 1796242500);
    CHECK_STR(k.imds_v1, "");
    CHECK(strstr(log, "PUT /latest/api/token HTTP") == log);
    CHECK(strstr(log, "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n") != NULL);
    CHECK(strstr(log, "GET /latest/meta-data/iam/security-credentials/ HTTP") != NULL);
    CHECK(strstr(log, "GET /latest/meta-data/iam/security-credentials/pixq-role HTTP") != NULL);
    const char *sent = strstr(log, "X-aws-ec2-metadata-token: tok-123\r\n");
    CHECK(sent != NULL && strstr(sent + 1, "X-aws-ec2-metadata-token: tok-123\r\n") != NULL);

    const char *v1[] = {answer(0, 403, ""), answer(1, 200, "pixq-role\n"), answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(v1, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK_STR(k.access_key, "ASIASTUB");
    CHECK(strstr(k.imds_v1, "answered 403") != NULL);
    CHECK(strstr(log, "X-aws-ec2-metadata-token:") == NULL);
    const char *closed[] = {"CLOSE", answer(1, 200, "pixq-role\n"), answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(closed, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK(k.imds_v1[0] != '\0');
    CHECK_INT(fetch_instance(v1, 3, false, true, &k, why, log, sizeof log), 0); /* cut: a 403 */
    /* a PUT not answered has half the time, IMDSv1 the rest; cut short, it has all of it */
    const char *held[] = {"HOLD", answer(1, 200, "pixq-role\n"), answer(2, 200, KEYS)};
    fetch_timeout_ms = 400;
    CHECK_INT(fetch_instance(held, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK(k.imds_v1[0] != '\0');
    long start = clock_mono_ms();
    CHECK_INT(fetch_instance(held, 3, false, true, &k, why, log, sizeof log), -1);
    CHECK(clock_mono_ms() - start >= 390);
    start = clock_mono_ms(); /* IMDSv1 off: so has it */
    CHECK_INT(fetch_instance(held, 3, true, false, &k, why, log, sizeof log), -1);
    CHECK(clock_mono_ms() - start >= 390);
    fetch_timeout_ms = 2000;

    CHECK_INT(fetch_instance(closed, 3, false, true, &k, why, log, sizeof log), -1);
    CHECK(why[0] != '\0' && strstr(log, "GET") == NULL);
    CHECK_INT(fetch_instance(v1, 3, true, false, &k, why, log, sizeof log), -1);
    CHECK(strstr(why, "answered 403") != NULL && strstr(log, "GET") == NULL);
    const char *bad[] = {answer(0, 400, ""), answer(1, 200, "pixq-role\n"), answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(bad, 3, false, false, &k, why, log, sizeof log), -1);
    CHECK(strstr(why, "answered 400") != NULL);
    /* a refusal's body of blanks and line ends quotes nothing */
    const char *blank_refusal[] = {answer(0, 403, " \r\n\t")};
    CHECK_INT(fetch_instance(blank_refusal, 1, true, false, &k, why, log, sizeof log), -1);
    CHECK(strlen(why) > 12 && strcmp(why + strlen(why) - 12, "answered 403") == 0);
    /* the role's name trimmed */
    const char *spaced[] = {answer(0, 200, "tok"), answer(1, 200, " pixq-role \t\n"),
                            answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(spaced, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK(strstr(log, "GET /latest/meta-data/iam/security-credentials/pixq-role HTTP") != NULL);
    const char *v1_gone[] = {answer(0, 403, ""), answer(1, 404, "")};
    CHECK_INT(fetch_instance(v1_gone, 2, false, false, &k, why, log, sizeof log), -1);
    CHECK(strstr(why, "IMDSv1, without a session token (") != NULL);

    /* tokens: blank, of 255 and of 256 bytes */
    const char *blank[] = {answer(0, 200, " \n"), answer(1, 200, "pixq-role\n"),
                           answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(blank, 3, false, false, &k, why, log, sizeof log), -1);
    CHECK_STR(why, "the instance metadata service gave no session token that can be sent");
    char token[300];
    for (int n = 255; n <= 256; n++) {
        memset(token, 't', (size_t)n);
        token[n] = '\0';
        const char *sized[] = {answer(0, 200, token), answer(1, 200, "pixq-role\n"),
                               answer(2, 200, KEYS)};
        CHECK_INT(fetch_instance(sized, 3, false, false, &k, why, log, sizeof log),
                  n == 255 ? 0 : -1);
    }
    CHECK(strstr(why, "a session token over 255 bytes") != NULL);
    /* roles: none, with a slash, of 256 bytes */
    char role[300];
    memset(role, 'r', 256);
    role[256] = '\0';
    const char *roles[] = {"\n", "a/b\n", role};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        const char *named[] = {answer(0, 200, "tok"), answer(1, 200, roles[i]),
                               answer(2, 200, KEYS)};
        CHECK_INT(fetch_instance(named, 3, false, false, &k, why, log, sizeof log), -1);
        CHECK(strstr(why, i < 2 ? "the instance has no role" : "role name is longer than 255") !=
              NULL);
    }
}

/* A container endpoint: no Authorization header without a value; a 2xx other than 200 is
 * refused, and a refusal quotes its answer's first 200 bytes, control characters blanked; a
 * fetch without time left sends nothing. */
static void test_fetch_container(void)
{
    static char log[64 * 1024];
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys k;
    char body[300];
    memset(body, 'b', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    memcpy(body, "oops\r\n", 6);
    const char *answers[] = {answer(0, 200, KEYS), answer(1, 201, KEYS), answer(2, 500, body)};
    stub_start(&s, answers, 3);
    cfg_defaults(&c);
    snprintf(c.aws_container_credentials_full_uri, sizeof c.aws_container_credentials_full_uri,
             "http://127.0.0.1:%d/creds", s.port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTUB");
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    CHECK(strstr(e.msg, "/creds answered 201") != NULL);
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    const char *quoted = strstr(e.msg, "answered 500: oops  bbb");
    CHECK(quoted != NULL && strlen(quoted) == strlen("answered 500: ") + 200);
    stub_finish(&s, log, sizeof log);
    CHECK(strstr(log, "GET /creds HTTP") == log);
    CHECK(strcasestr(log, "Authorization") == NULL);
    /* a failure to reach the endpoint names the step, as an answer does */
    char want[128];
    snprintf(want, sizeof want, "GET http://127.0.0.1:%d/creds: ", s.port);
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1); /* the stub has closed its socket */
    CHECK(strncmp(e.msg, want, strlen(want)) == 0 && strlen(e.msg) > strlen(want));
    m->timeout_ms = 0;
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    CHECK(strncmp(e.msg, want, strlen(want)) == 0 &&
          strcmp(e.msg + strlen(want), "timed out") == 0);
    free(m);
}

/* A password in AWS_CONTAINER_CREDENTIALS_FULL_URI (sent as the request's Basic credentials)
 * stays out of what is shown: the origin the worker logs, a refused URL, each fetch's error. */
static void test_container_uri_password_hidden(void)
{
    static char log[16 * 1024];
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys k;
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    char why[ERR_MSG_MAX], origin[CFG_STR_MAX + 64], want[128];
    CHECK_INT(init("AWS_CONTAINER_CREDENTIALS_FULL_URI", "ftp://ecs:fullpw@127.0.0.1/x", m, why),
              -1);
    CHECK_STR(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI: ftp://ecs:***@127.0.0.1/x: only http "
                   "and https are spoken");
    const char *answers[] = {answer(0, 500, "no")};
    stub_start(&s, answers, 1);
    cfg_defaults(&c);
    snprintf(c.aws_container_credentials_full_uri, sizeof c.aws_container_credentials_full_uri,
             "http://ecs:fullpw@127.0.0.1:%d/creds", s.port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    snprintf(want, sizeof want,
             "the container credentials endpoint http://ecs:***@127.0.0.1:%d/creds", s.port);
    CHECK_STR(awsmeta_origin(m, origin, sizeof origin), want);
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    snprintf(want, sizeof want, "GET http://ecs:***@127.0.0.1:%d/creds answered 500: no", s.port);
    CHECK_STR(e.msg, want);
    stub_finish(&s, log, sizeof log);
    CHECK(strcasestr(log, "\r\nAuthorization: Basic ") != NULL); /* the URL's own is still sent */
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1); /* the stub has closed its socket */
    CHECK(strstr(e.msg, "http://ecs:***@127.0.0.1:") != NULL && strstr(e.msg, "fullpw") == NULL);
    free(m);
}

/* STS: the form (each value form-encoded), the keys from its XML, and its Code and Message
 * when it refuses. */
static void test_fetch_web_identity(void)
{
    static char log[64 * 1024];
    char path[] = "/tmp/pixq-awsmeta-XXXXXX";
    int fd = mkstemp(path);
    CHECK(write(fd, "ey.J~x+y/z\n", 11) == 11);
    close(fd);
    const char *xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
                      "<Credentials><AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>s"
                      "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>"
                      "2026-12-02T20:15:00Z</Expiration></Credentials>"
                      "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    const char *refusal = "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>"
                          "expired</Message></Error></ErrorResponse>";
    const char *answers[] = {answer(0, 200, xml), answer(1, 400, refusal)};
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys k;
    stub_start(&s, answers, 2);
    cfg_defaults(&c);
    cfg_set(&c, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pixq", &e);
    cfg_set(&c, "AWS_WEB_IDENTITY_TOKEN_FILE", path, &e);
    cfg_set(&c, "AWS_ROLE_SESSION_NAME", "s-1", &e);
    snprintf(c.aws_endpoint_url_sts, sizeof c.aws_endpoint_url_sts, "http://127.0.0.1:%d", s.port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTS");
    CHECK_INT(k.expires, 1796242500);
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    CHECK_STR(e.msg, "STS answered 400 InvalidIdentityToken: expired");
    stub_finish(&s, log, sizeof log);
    CHECK(strstr(log, "POST / HTTP") == log);
    CHECK(strstr(log,
                 "\r\n\r\nAction=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws"
                 "%3Aiam%3A%3A123456789012%3Arole%2Fpixq&RoleSessionName=s-1&"
                 "WebIdentityToken=ey.J~x%2By%2Fz\n") != NULL);
    unlink(path);
    free(m);
}

/* A loopback port nothing listens on (its socket closed again). */
static int dead_port(void)
{
    int port = 0, fd = loopback_listen(&port);
    CHECK(fd >= 0);
    close(fd);
    return port;
}

/* Proxies: a container's endpoint and IMDS are asked directly, whatever http_proxy says (a
 * proxy would see the token, and answer for another host); STS goes through it, as S3's
 * requests do (README). */
static void test_fetch_proxy(void)
{
    static char log[64 * 1024];
    char proxy[64], why[ERR_MSG_MAX], path[] = "/tmp/pixq-awsmeta-XXXXXX";
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys k;
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", dead_port());
    setenv("http_proxy", proxy, 1);
    const char *keys[] = {answer(0, 200, KEYS)};
    stub_start(&s, keys, 1);
    cfg_defaults(&c);
    snprintf(c.aws_container_credentials_full_uri, sizeof c.aws_container_credentials_full_uri,
             "http://127.0.0.1:%d/creds", s.port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTUB");
    stub_finish(&s, log, sizeof log);
    const char *v2[] = {answer(0, 200, "tok"), answer(1, 200, "pixq-role\n"), answer(2, 200, KEYS)};
    CHECK_INT(fetch_instance(v2, 3, false, false, &k, why, log, sizeof log), 0);
    CHECK_STR(k.imds_v1, "");

    int fd = mkstemp(path);
    CHECK(write(fd, "tok\n", 4) == 4);
    close(fd);
    const char *xml = "<Credentials><AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>s"
                      "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>"
                      "2026-12-02T20:15:00Z</Expiration></Credentials>";
    const char *sts[] = {answer(0, 200, xml)};
    stub_start(&s, sts, 1);
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", s.port);
    setenv("http_proxy", proxy, 1);
    cfg_defaults(&c);
    cfg_set(&c, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pixq", &e);
    cfg_set(&c, "AWS_WEB_IDENTITY_TOKEN_FILE", path, &e);
    int sts_port = dead_port();
    snprintf(c.aws_endpoint_url_sts, sizeof c.aws_endpoint_url_sts, "http://127.0.0.1:%d",
             sts_port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTS");
    stub_finish(&s, log, sizeof log);
    char line[64];
    snprintf(line, sizeof line, "POST http://127.0.0.1:%d/ HTTP", sts_port);
    CHECK(strstr(log, line) == log);
    unsetenv("http_proxy");
    unlink(path);
    free(m);
}

/* An answer's body: at most AWSMETA_BODY_MAX bytes read; a 200 saying it has more fails before
 * it is read. */
static void test_fetch_body_max(void)
{
    static char log[16 * 1024];
    const size_t head = 128;
    char *fits = malloc(head + AWSMETA_BODY_MAX + 2), *over = malloc(head + AWSMETA_BODY_MAX + 2);
    for (int extra = 0; extra < 2; extra++) {
        char *a = extra ? over : fits;
        int n =
            snprintf(a, head, "HTTP/1.1 200 X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                     AWSMETA_BODY_MAX + extra);
        memset(a + n, ' ', AWSMETA_BODY_MAX + (size_t)extra);
        memcpy(a + n, KEYS, strlen(KEYS)); /* the JSON, then spaces */
        a[n + AWSMETA_BODY_MAX + extra] = '\0';
    }
    const char *answers[] = {fits, over};
    struct stub s;
    struct cfg c;
    struct err e = {{0}};
    struct awsmeta *m = malloc(sizeof *m);
    struct awsmeta_keys k;
    stub_start(&s, answers, 2);
    cfg_defaults(&c);
    snprintf(c.aws_container_credentials_full_uri, sizeof c.aws_container_credentials_full_uri,
             "http://127.0.0.1:%d/creds", s.port);
    CHECK_INT(awsmeta_init(m, &c, &e), 0);
    CHECK_INT(awsmeta_fetch(m, &k, &e), 0);
    CHECK_STR(k.access_key, "ASIASTUB");
    CHECK_INT(awsmeta_fetch(m, &k, &e), -1);
    CHECK(strstr(e.msg, "response larger than the limit of 65536 bytes") != NULL);
    stub_finish(&s, log, sizeof log);
    free(fits);
    free(over);
    free(m);
}

int main(void)
{
    test_parse();
    test_parse_sts();
    test_time();
    test_init();
    test_parse_edges();
    test_parse_sts_edges();
    test_init_edges();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_token_file();
    test_fetch_instance();
    test_fetch_container();
    test_container_uri_password_hidden();
    test_fetch_web_identity();
    test_fetch_proxy();
    test_fetch_body_max();
    curl_global_cleanup();
    return check_summary("awsmeta");
}
