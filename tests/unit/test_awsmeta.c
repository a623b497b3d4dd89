#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "awsmeta.h"
#include "check.h"

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
}

int main(void)
{
    test_parse();
    test_parse_sts();
    test_time();
    test_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_token_file();
    curl_global_cleanup();
    return check_summary("awsmeta");
}
