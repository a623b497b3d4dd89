#include <stdlib.h>
#include <unistd.h>

#include "cfg.h"
#include "check.h"

/* A fake environment for cfg_load_env(). */
static const char *const *fake_env;

static const char *lookup(const char *name)
{
    for (const char *const *p = fake_env; p != NULL && *p != NULL; p += 2) {
        if (strcmp(p[0], name) == 0) {
            return p[1];
        }
    }
    return NULL;
}

static void test_defaults(void)
{
    struct cfg c;
    cfg_defaults(&c);
    CHECK_STR(c.redis_url, "redis://127.0.0.1:6379/0");
    CHECK_STR(c.queue, "default");
    CHECK_STR(c.aws_region, "us-east-1");
    CHECK_INT(c.s3_path_style, -1);
    CHECK(!cfg_s3_path_style(&c));
    CHECK(c.s3_rate == 10.0);
    CHECK_INT(c.s3_burst, 20);
    CHECK_INT(c.allow_private_networks, 0);
    CHECK_INT(c.max_job_bytes, 250000);
    CHECK_INT(c.default_quality, 75);
    CHECK_INT(c.max_pixels, 50000000);
    CHECK_INT(c.lease_ms, 20000);
    CHECK_INT(c.max_recoveries, 3);
    CHECK_INT(c.shutdown_timeout_ms, 25000);
}

static void test_good_values(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "2.5/s,burst=0", &e), 0);
    CHECK(c.s3_rate == 2.5);
    CHECK_INT(c.s3_burst, 0);
    CHECK_INT(cfg_set(&c, "s3-rate", "100/s", &e), 0);
    CHECK(c.s3_rate == 100.0);
    CHECK_INT(c.s3_burst, 0);
    CHECK_INT(cfg_set(&c, "PIXQ_ALLOW_PRIVATE_NETWORKS", "true", &e), 0);
    CHECK_INT(c.allow_private_networks, 1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://127.0.0.1:4568", &e), 0);
    CHECK(cfg_s3_path_style(&c));
    CHECK_INT(cfg_set(&c, "PIXQ_S3_PATH_STYLE", "0", &e), 0);
    CHECK(!cfg_s3_path_style(&c));
    CHECK_INT(cfg_set(&c, "PIXQ_LOG_LEVEL", "debug", &e), 0);
    CHECK_INT(c.log_level, 0);
    CHECK_INT(cfg_set(&c, "NOT_A_SETTING", "x", &e), 1);
}

static void test_bad_values(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "fast", &e), -1);
    CHECK(strstr(e.msg, "PIXQ_S3_RATE") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "0/s", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "0.0001/s", &e), -1); /* below `pixq limit set`'s */
    CHECK(strstr(e.msg, "0.001/s to 1000000/s") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "0.001/s", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s,burst=-1", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", "101", &e), -1);
    CHECK(strstr(e.msg, "out of range") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", "7x", &e), -1);
    /* plain decimals only: strtol and strtod also took blanks, '+', hex and exponents */
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", " 5", &e), -1);
    CHECK(strstr(e.msg, "is not a whole number") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", "+7", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", "0x10", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_QUALITY", "-5", &e), -1);
    CHECK(strstr(e.msg, "-5 is out of range") != NULL);
    /* a number past what a long holds is out of range too, not "not a whole number" */
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_ATTEMPTS", "99999999999999999999", &e), -1);
    CHECK(strstr(e.msg, "PIXQ_MAX_ATTEMPTS: 99999999999999999999 is out of range [") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_ATTEMPTS", "-99999999999999999999", &e), -1);
    CHECK(strstr(e.msg, "-99999999999999999999 is out of range [") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "0x10", &e), -1);
    CHECK(strstr(e.msg, "'0x10' is not a decimal number") != NULL);
    /* a number past the range says so, not that it is no positive number */
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "2000000", &e), -1);
    CHECK(strstr(e.msg, "2000000 is out of range (above 0, at most 1000000)") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "0", &e), -1);
    CHECK(strstr(e.msg, "0 is out of range") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "1000000", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "1e3", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "1.5.", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", "2.5", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_MIN_RATE", ".5", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "1e1/s", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", " 10/s", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s,burst=+2", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "2.5/s", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_ALLOW_PRIVATE_NETWORKS", "maybe", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_LOG_LEVEL", "loud", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "ftp://x", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://", &e), -1);
    CHECK(strstr(e.msg, "PIXQ_S3_ENDPOINT: 'http://' is not an http:// or https:// URL with a "
                        "host") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://a b", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://127.0.0.1:9000/s3prefix", &e), -1);
    CHECK(strstr(e.msg, "has a path") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://127.0.0.1:9000/", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "https://:9000", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "https://s3.example.com/x y", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://[::1]:9000", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://my_minio:9000", &e), 0); /* compose names */
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://k@minio:9000", &e), -1);
    /* a URL with a password is refused without showing the password (README, Secrets) */
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://u:pw-S3CRET@minio:9000", &e), -1);
    CHECK_STR(e.msg, "PIXQ_S3_ENDPOINT: 'http://u:***@minio:9000' is not an http:// or https:// "
                     "URL with a host (and no user:password@, query, fragment, blank or control "
                     "character)");
    CHECK_INT(cfg_set(&c, "AWS_ENDPOINT_URL_STS", "https://u:pw-S3CRET@sts:1/p", &e), -1);
    CHECK(strstr(e.msg, "S3CRET") == NULL && strstr(e.msg, "'https://u:***@sts:1/p'") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://minio:9000?x", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "https://minio.internal:9000/", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_PATH_STYLE", "sometimes", &e), -1);
    CHECK_STR(e.msg, "PIXQ_S3_PATH_STYLE: 'sometimes' is not auto or a boolean (0/1, true/false, "
                     "yes/no, on/off)");
    CHECK_INT(cfg_set(&c, "PIXQ_S3_PATH_STYLE", "on", &e), 0);
    CHECK_INT(c.s3_path_style, 1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_PATH_STYLE", "auto", &e), 0);
    CHECK_INT(c.default_quality, 75); /* a refused value leaves the setting alone */
    /* a secret's value never appears in an error */
    char longval[CFG_STR_MAX + 10];
    memset(longval, 'S', sizeof longval - 1);
    longval[sizeof longval - 1] = '\0';
    CHECK_INT(cfg_set(&c, "AWS_SECRET_ACCESS_KEY", longval, &e), -1);
    CHECK(strstr(e.msg, "SSSS") == NULL);
}

/* AWS_SESSION_TOKEN holds what AWS gives: "typically less than 4096 bytes", an instance role's
 * more than 1023 (the other strings' limit), from the environment or a config file. */
static void test_session_token(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    static char token[CFG_TOKEN_MAX + 1];
    memset(token, 'T', CFG_TOKEN_MAX - 1);
    CHECK_INT(cfg_set(&c, "AWS_SESSION_TOKEN", token, &e), 0);
    CHECK_INT((long)strlen(c.aws_session_token), CFG_TOKEN_MAX - 1);
    token[CFG_TOKEN_MAX - 1] = 'T';
    CHECK_INT(cfg_set(&c, "AWS_SESSION_TOKEN", token, &e), -1);
    CHECK(strstr(e.msg, "AWS_SESSION_TOKEN: value longer than 8191 bytes") != NULL);
    CHECK(strstr(e.msg, "TTTT") == NULL);
    /* README: AWS_CONTAINER_AUTHORIZATION_TOKEN may be as long as a session token */
    CHECK_INT(cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN", token, &e), -1);
    CHECK(strstr(e.msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN: value longer than 8191 bytes") != NULL);
    token[CFG_TOKEN_MAX - 1] = '\0';
    CHECK_INT(cfg_set(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN", token, &e), 0);
    CHECK_INT((long)strlen(c.aws_container_authorization_token), CFG_TOKEN_MAX - 1);
    token[CFG_TOKEN_MAX - 1] = 'T';
    char longval[CFG_STR_MAX + 1];
    memset(longval, 'q', CFG_STR_MAX);
    longval[CFG_STR_MAX] = '\0';
    CHECK_INT(cfg_set(&c, "PIXQ_QUEUE", longval, &e), -1); /* the others keep theirs */
    CHECK(strstr(e.msg, "PIXQ_QUEUE: value longer than 1023 bytes") != NULL);
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "AWS_SESSION_TOKEN=%.4000s\n", token);
    fclose(f);
    cfg_defaults(&c);
    CHECK_INT(cfg_load_file(&c, path, &e), 0);
    CHECK_INT((long)strlen(c.aws_session_token), 4000);
    unlink(path);
}

static void test_precedence(void)
{
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    /* ';' starts a comment too, as in systemd's EnvironmentFile, which reads the same file */
    const char text[] = "# comment\n; comment\n  ;PIXQ_QUEUE=x\nPIXQ_QUEUE=fromfile\n"
                        "export PIXQ_DEFAULT_QUALITY=\"60\"\n"
                        "PIXQ_MAX_PIXELS=1000\n\nPIXQ_DEFAULT_BUCKET='bkt1'\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    const char *env[] = {"PIXQ_QUEUE", "fromenv", "PIXQ_MAX_PIXELS", "2000", "PIXQ_CONFIG",
                         path,         NULL};
    fake_env = env;
    char *argv[] = {"prog",   "--max-pixels",     "3000", "submit", "--allow-private-networks",
                    "x.json", "--queue=fromflag", NULL};
    int argc = 7;
    struct cfg c;
    struct err e = {{0}};
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), 0);
    CHECK_STR(c.queue, "fromflag");         /* flag beats env beats file */
    CHECK_INT(c.max_pixels, 3000);          /* flag beats env */
    CHECK_INT(c.default_quality, 60);       /* only in the file */
    CHECK_STR(c.default_bucket, "bkt1");    /* quotes removed */
    CHECK_INT(c.allow_private_networks, 1); /* bare boolean flag */
    CHECK_INT(argc, 3);
    CHECK_STR(argv[1], "submit");
    CHECK_STR(argv[2], "x.json");
    char at[sizeof path + 8];
    snprintf(at, sizeof at, "%s:5", path); /* the export line, which systemd would drop */
    CHECK_STR(c.export_line, at);
    unlink(path);
    fake_env = NULL;
}

/* AWS_DEFAULT_REGION is AWS_REGION's default: taken alone, an AWS_REGION from the file, the
 * environment or a flag first; empty as unset; a bad one refused under its own name. */
static void test_default_region(void)
{
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char text[] = "AWS_REGION=eu-west-1\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    const struct {
        const char *env[7];
        const char *flag;
        const char *region; /* NULL: refused with `error` */
        const char *error;
    } cases[] = {
        {{"AWS_DEFAULT_REGION", "ap-south-2", NULL}, NULL, "ap-south-2", NULL},
        {{"AWS_DEFAULT_REGION", "", NULL}, NULL, "us-east-1", NULL},
        {{"AWS_DEFAULT_REGION", "ap-south-2", "AWS_REGION", "sa-east-1", NULL},
         NULL,
         "sa-east-1",
         NULL},
        {{"AWS_DEFAULT_REGION", "ap-south-2", "PIXQ_CONFIG", path, NULL}, NULL, "eu-west-1", NULL},
        {{"AWS_DEFAULT_REGION", "ap-south-2", NULL}, "--aws-region=us-west-2", "us-west-2", NULL},
        {{"AWS_DEFAULT_REGION", "ap south", "AWS_REGION", "sa-east-1", NULL},
         NULL,
         NULL,
         "AWS_DEFAULT_REGION: 'ap south' is not a region name (letters, digits and -)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_env = cases[i].env;
        char *argv[] = {"prog", (char *)cases[i].flag, NULL};
        int argc = cases[i].flag != NULL ? 2 : 1;
        struct cfg c;
        struct err e = {{0}};
        int rc = cfg_load(&c, &argc, argv, lookup, &e);
        if (cases[i].region != NULL) {
            CHECK_INT(rc, 0);
            CHECK_STR(c.aws_region, cases[i].region);
        } else {
            CHECK_INT(rc, -1);
            CHECK_STR(e.msg, cases[i].error);
        }
    }
    unlink(path);
    fake_env = NULL;
}

/* A boolean flag takes a boolean word after it as its value (`--cpu-affinity 1`, the form the
 * usage line shows), and is 1 alone; anything else after it is the next argument. */
static void test_boolean_flag_values(void)
{
    char *argv[] = {"prog",      "--cpu-affinity", "1",     "--shrink-on-load", "off",
                    "--jpeg-dc", "--png-shrink",   "False", "--fast-resize",    "--postback-retry",
                    "yes",       "submit",         NULL};
    int argc = 12;
    struct cfg c;
    struct err e = {{0}};
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), 0);
    CHECK_INT(c.cpu_affinity, 1);
    CHECK_INT(c.shrink_on_load, 0);
    CHECK_INT(c.jpeg_dc, 1);
    CHECK_INT(c.png_shrink, 0);
    CHECK_INT(c.fast_resize, 1);
    CHECK_INT(c.postback_retry, 1);
    CHECK_INT(argc, 2);
    CHECK_STR(argv[1], "submit");
    /* after a command word a boolean word is an argument (pixq submit's file "yes") */
    char *argv2[] = {"prog",
                     "--allow-private-networks",
                     "0",
                     "submit",
                     "--png-shrink",
                     "yes",
                     "--jpeg-dc=0",
                     "1",
                     NULL};
    argc = 8;
    CHECK_INT(cfg_load(&c, &argc, argv2, lookup, &e), 0);
    CHECK_INT(c.allow_private_networks, 0);
    CHECK_INT(c.png_shrink, 1);
    CHECK_INT(c.jpeg_dc, 0);
    CHECK_INT(argc, 4);
    CHECK_STR(argv2[1], "submit");
    CHECK_STR(argv2[2], "yes");
    CHECK_STR(argv2[3], "1");
    CHECK_INT(cfg_flag_values("--cpu-affinity", "0"), 1);
    CHECK_INT(cfg_flag_values("--cpu-affinity", "job.json"), 0);
    CHECK_INT(cfg_flag_values("--cpu-affinity", NULL), 0);
    CHECK_INT(cfg_flag_values("--cpu-affinity=1", "1"), 0);
    CHECK_INT(cfg_flag_values("--max-pixels", "x"), 1);
    CHECK_INT(cfg_flag_values("--not-a-setting", "1"), 0);
}

static void test_bad_file(void)
{
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "PIXQ_QUEUE=ok\nPIXQ_NOPE=1\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    CHECK_INT(cfg_load_file(&c, path, &e), -1);
    CHECK(strstr(e.msg, ":2: unknown setting 'PIXQ_NOPE'") != NULL);
    unlink(path);
    CHECK_INT(cfg_load_file(&c, "/nonexistent/pixq.env", &e), -1);
    /* a directory opens but cannot be read: refused, not taken for an empty file */
    CHECK_INT(cfg_load_file(&c, "/tmp", &e), -1);
    CHECK(strstr(e.msg, "cannot read config file /tmp: Is a directory") != NULL);
    char *argv[] = {"prog", "--default-quality", NULL};
    int argc = 2;
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), -1);
    CHECK(strstr(e.msg, "needs a value") != NULL);
    /* --config last, without its file: refused as any flag's missing value (it was ignored, and
     * the program ran on the defaults) */
    char *argv1[] = {"prog", "submit", "--config", NULL};
    argc = 3;
    e.msg[0] = '\0';
    CHECK_INT(cfg_load(&c, &argc, argv1, lookup, &e), -1);
    CHECK_STR(e.msg, "--config needs a value");
    char *argv2[] = {"prog", "--lease-ms", "3000", "--heartbeat-ms=2000", NULL};
    argc = 4;
    CHECK_INT(cfg_load(&c, &argc, argv2, lookup, &e), -1); /* settings must agree */
    CHECK(strstr(e.msg, "at most a third of PIXQ_LEASE_MS") != NULL);
    const char *empty[] = {"PIXQ_CONFIG", "", NULL}; /* as unset: no file */
    fake_env = empty;
    char *argv3[] = {"prog", NULL};
    argc = 1;
    CHECK_INT(cfg_load(&c, &argc, argv3, lookup, &e), 0);
    fake_env = NULL;
}

static void test_print_hides_secrets(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    cfg_set(&c, "AWS_SECRET_ACCESS_KEY", "topsecretkey", &e);
    cfg_set(&c, "PIXQ_POSTBACK_SECRET", "hmacsecret", &e);
    cfg_set(&c, "PIXQ_REDIS_URL", "redis://user:redispass@10.0.0.1:6380/2", &e);
    cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://ecs:fullpw@127.0.0.1:9/creds", &e);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print(&c, f);
    fclose(f);
    CHECK(strstr(text, "topsecretkey") == NULL);
    CHECK(strstr(text, "hmacsecret") == NULL);
    CHECK(strstr(text, "redispass") == NULL);
    CHECK(strstr(text, "fullpw") == NULL);
    CHECK(strstr(text, "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://ecs:***@127.0.0.1:9/creds\n") !=
          NULL);
    CHECK(strstr(text, "AWS_SECRET_ACCESS_KEY=(set)\n") != NULL);
    CHECK(strstr(text, "PIXQ_REDIS_URL=redis://user:***@10.0.0.1:6380/2\n") != NULL);
    CHECK(strstr(text, "PIXQ_S3_RATE=10/s,burst=20\n") != NULL);
    free(text);
    /* a FULL_URI without a scheme is refused only at start (awsmeta_init), after the worker's
     * config line: that line, and --print-config, hide its password as the refusal does */
    cfg_set(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "ecs:barepw@127.0.0.1:9/creds", &e);
    text = NULL;
    f = open_memstream(&text, &len);
    cfg_print(&c, f);
    fclose(f);
    CHECK(strstr(text, "barepw") == NULL);
    CHECK(strstr(text, "AWS_CONTAINER_CREDENTIALS_FULL_URI=ecs:***@127.0.0.1:9/creds\n") != NULL);
    free(text);
    char out[256];
    cfg_redact_url("redis://:pw@h:1/0", out, sizeof out);
    CHECK_STR(out, "redis://:***@h:1/0");
    cfg_redact_url("redis://user:p@ss@h:1/0", out, sizeof out); /* the last '@' ends it */
    CHECK_STR(out, "redis://user:***@h:1/0");
    cfg_redact_url("redis://pwonly@h:1/0", out, sizeof out);
    CHECK_STR(out, "redis://***@h:1/0");
    cfg_redact_url("redis://h:1/0", out, sizeof out);
    CHECK_STR(out, "redis://h:1/0");
    /* a '/' left unencoded in the password: the password is hidden all the same */
    cfg_redact_url("http://user:pa/ss@10.1.1.1/x?a@b", out, sizeof out);
    CHECK_STR(out, "http://user:***@10.1.1.1/x?a@b");
    cfg_redact_url("http://:a/b/c@h/", out, sizeof out);
    CHECK_STR(out, "http://:***@h/");
    /* while an '@' in a path is a path's */
    static const char *const kept[] = {"https://cdn.example/@user/a.png",
                                       "https://cdn.example:8443/@user/a.png", "http://[::1]:80/@x",
                                       "http://h/a?u=x:y@z", "http://h:"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        cfg_redact_url(kept[i], out, sizeof out);
        CHECK_STR(out, kept[i]);
    }
    /* a presigned URL's signature and session token, in any case, and a bearer token; the other
     * parameters (its expiry, the key's id), a fragment and a password are shown as before */
    static const char *const queries[][2] = {
        {"https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID"
         "%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=60&X-Amz-Security-Token=FwoG"
         "&X-Amz-SignedHeaders=host&X-Amz-Signature=0f1e2d",
         "https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID"
         "%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=60&X-Amz-Security-Token=***"
         "&X-Amz-SignedHeaders=host&X-Amz-Signature=***"},
        {"http://u:pw@h/a?AWSAccessKeyId=AKID&Expires=9&signature=ab%2Bc#top",
         "http://u:***@h/a?AWSAccessKeyId=AKID&Expires=9&signature=***#top"},
        {"http://h/a?x-goog-signature=1&sig=2&access_token=3&token=4&tokens=5&sig",
         "http://h/a?x-goog-signature=***&sig=***&access_token=***&token=***&tokens=5&sig"},
        {"http://h/a?token=&&sig==x", "http://h/a?token=***&&sig=***"},
        {"http://h/a#sig=1", "http://h/a#sig=1"},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        cfg_redact_url(queries[i][0], out, sizeof out);
        CHECK_STR(out, queries[i][1]);
    }
    /* cut short by `cap`: still a string, and no signature's first bytes */
    char small[40];
    cfg_redact_url("http://h/a?b=1&X-Amz-Signature=0123456789abcdef", small, sizeof small);
    CHECK_STR(small, "http://h/a?b=1&X-Amz-Signature=***");
    cfg_redact_url("http://h/a?bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", small, sizeof small);
    CHECK_INT((int)strlen(small), 39);
    cfg_redact_url("http://h/aaaaaaaaaaaaaaaaaaaa?sig=0123456789abcdef", small, sizeof small);
    CHECK_STR(small, "http://h/aaaaaaaaaaaaaaaaaaaa?sig=***");
}

/* The settings of the network and job guards. */
static void test_guard_settings(void)
{
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    CHECK_STR(c.allowed_networks, "");
    CHECK_INT(c.max_redirects, 3);
    CHECK_INT(c.low_speed_bytes_per_s, 1024);
    CHECK_INT(c.low_speed_time_s, 10);
    CHECK_INT(c.max_saves, 50);
    CHECK_STR(c.s3_buckets, "");
    CHECK(cfg_bucket_allowed(&c, "any-bucket"));
    CHECK_INT(cfg_set(&c, "PIXQ_ALLOWED_NETWORKS", "127.0.0.1/32, 10.20.0.0/16,fd00::/8", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_ALLOWED_NETWORKS", "10.0.0.1/8", &e), -1);
    CHECK(strstr(e.msg, "PIXQ_ALLOWED_NETWORKS") != NULL && strstr(e.msg, "host bits") != NULL);
    CHECK_INT(cfg_set(&c, "allowed-networks", "example.com", &e), -1);
    CHECK_STR(c.allowed_networks, "127.0.0.1/32, 10.20.0.0/16,fd00::/8"); /* unchanged */
    /* README: at most 32 networks, refused at load */
    char nets[1024] = "";
    for (int i = 0; i < 33; i++) {
        snprintf(nets + strlen(nets), sizeof nets - strlen(nets), "%s10.%d.0.0/16", i ? "," : "",
                 i);
        CHECK_INT(cfg_set(&c, "PIXQ_ALLOWED_NETWORKS", nets, &e), i < 32 ? 0 : -1);
    }
    CHECK_STR(e.msg, "PIXQ_ALLOWED_NETWORKS: more than 32 networks");
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_REDIRECTS", "21", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_REDIRECTS", "0", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_LOW_SPEED_TIME_S", "0", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_SAVES", "0", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_SAVES", "1001", &e), -1); /* park.lua's arguments must fit */
    CHECK_INT(cfg_set(&c, "PIXQ_MAX_SAVES", "1000", &e), 0);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", "pixq-test,other.bucket", &e), 0);
    CHECK(!cfg_bucket_allowed(&c, "")); /* without PIXQ_DEFAULT_BUCKET, "" is not that bucket */
    CHECK(!cfg_bucket_allowed(&c, "tmp-bucket"));
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", "ok-bucket,Bad/Bucket", &e), -1);
    CHECK(strstr(e.msg, "'Bad/Bucket' is not a valid bucket name") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", "ok-bucket,_Bad_Bucket", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", "aaa,,bbb", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_DEFAULT_BUCKET", "tmp-bucket", &e), 0);
    CHECK(cfg_bucket_allowed(&c, "pixq-test"));
    CHECK(cfg_bucket_allowed(&c, "other.bucket"));
    CHECK(cfg_bucket_allowed(&c, "tmp-bucket"));
    CHECK(!cfg_bucket_allowed(&c, "pixq-tes"));
    CHECK(!cfg_bucket_allowed(&c, "pixq-test2"));
    CHECK(!cfg_bucket_allowed(&c, "other"));
    CHECK(!cfg_bucket_allowed(&c, ""));
    /* blanks around a name, as PIXQ_QUEUE and PIXQ_ALLOWED_NETWORKS take them (refused before) */
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", " pixq-test , other.bucket\t,last", &e), 0);
    CHECK(cfg_bucket_allowed(&c, "pixq-test"));
    CHECK(cfg_bucket_allowed(&c, "other.bucket"));
    CHECK(cfg_bucket_allowed(&c, "last"));
    CHECK(!cfg_bucket_allowed(&c, " pixq-test"));
    CHECK_INT(cfg_set(&c, "PIXQ_S3_BUCKETS", "aaa, ,bbb", &e), -1);
    CHECK(strstr(e.msg, "'' is not a valid bucket name") != NULL);
}

/* The fleet settings: processes bounded, log format and metrics address checked at load. */
static void test_fleet_settings(void)
{
    struct cfg c;
    struct err e = {{0}};
    char *argv0[] = {"prog", NULL};
    int argc = 1;
    fake_env = NULL;
    CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), 0);
    CHECK_INT(c.processes, 1);
    CHECK_STR(c.log_format, "text");
    CHECK_STR(c.metrics_addr, "");
    CHECK_INT(c.shrink_on_load, 1);
    CHECK_INT(c.jpeg_dc, 1);
    CHECK_INT(c.png_shrink, 1);
    CHECK_INT(c.fast_resize, 1);
    CHECK_INT(c.restart_backoff_min_ms, 1000);
    CHECK_INT(c.restart_backoff_max_ms, 30000);
    CHECK_INT(c.restart_quick_exit_ms, 10000);
    CHECK_INT(c.stop_grace_ms, 5000);
    CHECK_INT(c.metrics_max_connections, 16);
    CHECK_INT(c.metrics_max_request_bytes, 8192);
    CHECK_INT(c.metrics_timeout_ms, 5000);
    const char *good[][2] = {
        {"PIXQ_LOG_FORMAT", "json"},        {"PIXQ_METRICS_ADDR", "127.0.0.1:9464"},
        {"PIXQ_METRICS_ADDR", "[::1]:1"},   {"PIXQ_PROCESSES", "8"},
        {"PIXQ_PNG_SHRINK", "0"},           {"PIXQ_METRICS_ADDR", "localhost:80"},
        {"PIXQ_FAST_RESIZE", "0"},          {"PIXQ_METRICS_ADDR", "0.0.0.0:9464"},
        {"PIXQ_METRICS_ADDR", "[::]:9464"}, {"PIXQ_METRICS_ADDR", "host-1.example:9464"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *env[] = {good[i][0], good[i][1], NULL};
        fake_env = env;
        argc = 1;
        CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), 0);
    }
    const char *bad[][2] = {{"PIXQ_LOG_FORMAT", "xml"},
                            {"PIXQ_PNG_SHRINK", "2"},
                            {"PIXQ_FAST_RESIZE", "yes please"},
                            {"PIXQ_PROCESSES", "0"},
                            {"PIXQ_PROCESSES", "257"},
                            {"PIXQ_RESTART_BACKOFF_MIN_MS", "40000"},
                            {"PIXQ_METRICS_MAX_CONNECTIONS", "0"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *env[] = {bad[i][0], bad[i][1], NULL};
        fake_env = env;
        argc = 1;
        e.msg[0] = '\0';
        CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), -1);
        CHECK(strstr(e.msg, bad[i][0]) != NULL);
    }
    /* each bad address with what is wrong with it */
    const char *addr[][2] = {{"9464", "needs a host, a ':' and a port"},
                             {"127.0.0.1", "needs a host, a ':' and a port"},
                             {"host:", "needs a host, a ':' and a port"},
                             {"host:0", "from 1 to 65535"},
                             {"127.0.0.1:99999", "from 1 to 65535"},
                             {"a b:80", "only letters, digits"},
                             {"256.1.1.1:80", "numeric host must be an IP"}, /* not resolved */
                             {"10.0.0:80", "numeric host must be an IP"},
                             {"[::g]:80", "brackets must be an IPv6"},
                             {"[127.0.0.1]:80", "brackets must be an IPv6"},
                             {"[::1:80", "brackets must be an IPv6"}};
    for (size_t i = 0; i < sizeof addr / sizeof addr[0]; i++) {
        const char *env[] = {"PIXQ_METRICS_ADDR", addr[i][0], NULL};
        fake_env = env;
        argc = 1;
        e.msg[0] = '\0';
        CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), -1);
        CHECK(strstr(e.msg, "PIXQ_METRICS_ADDR") != NULL && strstr(e.msg, addr[i][1]) != NULL);
    }
    fake_env = NULL;
}

/* The S3 settings checked together when the configuration loads: retry delays against their cap,
 * the default bucket's name, the default ACL. */
static void test_s3_cross_checks(void)
{
    struct cfg c;
    struct err e = {{0}};
    char *argv0[] = {"prog", NULL};
    const char *good[][4] = {
        {"PIXQ_S3_RETRY_BASE_MS", "20000", "PIXQ_S3_RETRY_MAX_MS", "20000"},
        {"PIXQ_REDIS_RETRY_MIN_MS", "60000", "PIXQ_REDIS_RETRY_MAX_MS", "60000"},
        {"PIXQ_S3_THROTTLE_RETRY_BASE_MS", "500", "PIXQ_S3_RETRY_MAX_MS", "500"},
        {"PIXQ_DEFAULT_BUCKET", "my-images.eu", "PIXQ_S3_DEFAULT_ACL", ""},
        {"PIXQ_DEFAULT_BUCKET", "", "PIXQ_S3_DEFAULT_ACL", "private"},
        {"PIXQ_S3_DEFAULT_ACL", "bucket-owner-full-control", "PIXQ_LOG_FORMAT", "text"},
        {"PIXQ_S3_DEFAULT_ACL", "aws-exec-read", "PIXQ_LOG_FORMAT", "text"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *env[] = {good[i][0], good[i][1], good[i][2], good[i][3], NULL};
        fake_env = env;
        int argc = 1;
        CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), 0);
    }
    const char *bad[][5] = {
        {"PIXQ_S3_RETRY_BASE_MS", "20001", "PIXQ_S3_RETRY_MAX_MS", "20000",
         "PIXQ_S3_RETRY_BASE_MS (20001) must not exceed PIXQ_S3_RETRY_MAX_MS (20000)"},
        {"PIXQ_S3_RETRY_MAX_MS", "100", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_RETRY_BASE_MS (200) must not exceed PIXQ_S3_RETRY_MAX_MS (100)"},
        {"PIXQ_REDIS_RETRY_MIN_MS", "5001", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_REDIS_RETRY_MIN_MS (5001) must not exceed PIXQ_REDIS_RETRY_MAX_MS (5000)"},
        {"PIXQ_REDIS_RETRY_MAX_MS", "0", "PIXQ_LOG_FORMAT", "text", "PIXQ_REDIS_RETRY_MAX_MS"},
        {"PIXQ_S3_THROTTLE_RETRY_BASE_MS", "20001", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_THROTTLE_RETRY_BASE_MS (20001) must not exceed PIXQ_S3_RETRY_MAX_MS (20000)"},
        {"PIXQ_S3_THROTTLE_RETRY_BASE_MS", "30000", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_THROTTLE_RETRY_BASE_MS (30000) must not exceed PIXQ_S3_RETRY_MAX_MS (20000)"},
        {"PIXQ_DEFAULT_BUCKET", "Bad_Bucket_", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_DEFAULT_BUCKET: 'Bad_Bucket_' is not a valid S3 bucket name"},
        {"PIXQ_DEFAULT_BUCKET", "ab", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_DEFAULT_BUCKET: 'ab' is not a valid S3 bucket name"},
        {"AWS_REGION", "", "PIXQ_LOG_FORMAT", "text",
         "AWS_REGION: '' is not a region name (letters, digits and -)"},
        {"AWS_REGION", "us east", "PIXQ_LOG_FORMAT", "text",
         "AWS_REGION: 'us east' is not a region name"},
        {"PIXQ_S3_DEFAULT_ACL", "bogus", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_DEFAULT_ACL: 'bogus' is not empty or a canned ACL (private, public-read, "
         "public-read-write, authenticated-read, aws-exec-read, bucket-owner-read, "
         "bucket-owner-full-control)"},
        {"PIXQ_S3_DEFAULT_ACL", "Public-Read", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_DEFAULT_ACL: 'Public-Read' is not empty or a canned ACL"},
        {"PIXQ_S3_DEFAULT_ACL", "none", "PIXQ_LOG_FORMAT", "text",
         "PIXQ_S3_DEFAULT_ACL: 'none' is not empty or a canned ACL"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *env[] = {bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL};
        fake_env = env;
        int argc = 1;
        e.msg[0] = '\0';
        CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), -1);
        CHECK(strncmp(e.msg, bad[i][4], strlen(bad[i][4])) == 0);
    }
    fake_env = NULL;
}

/* PIXQ_QUEUE and PIXQ_REDIS_URL are checked when the configuration loads, for both programs:
 * a worker with a bad one would otherwise wait for Redis for ever. */
static void test_queues_and_url(void)
{
    struct cfg_queues q;
    struct err e;
    CHECK_INT(cfg_queues(" urgent ,\tdefault", &q, &e), 0);
    CHECK_INT((long)q.n, 2);
    CHECK_STR(q.name[0], "urgent");
    CHECK_STR(q.name[1], "default");
    const char *bad[][2] = {
        {"a,a", "named twice"},
        {"a{b}", "braces"},
        {"a,,b", "1 to 199 bytes"},
        {" ", "1 to 199 bytes"},
        {"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "at most 16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(cfg_queues(bad[i][0], &q, &e), -1);
        CHECK(strstr(e.msg, bad[i][1]) != NULL);
    }
    CHECK_INT(cfg_queues("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", &q, &e), 0);
    char name[CFG_QUEUE_NAME_MAX + 1];
    memset(name, 'q', CFG_QUEUE_NAME_MAX);
    name[CFG_QUEUE_NAME_MAX] = '\0';
    CHECK_INT(cfg_queues(name, &q, &e), -1);
    name[CFG_QUEUE_NAME_MAX - 1] = '\0';
    CHECK_INT(cfg_queues(name, &q, &e), 0);

    struct cfg c;
    char *argv[] = {"prog", "--queue=a,a", NULL};
    int argc = 2;
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), -1);
    CHECK(strstr(e.msg, "PIXQ_QUEUE 'a,a'") != NULL);
    char *argv2[] = {"prog", "--redis-url=http://127.0.0.1", NULL};
    argc = 2;
    CHECK_INT(cfg_load(&c, &argc, argv2, lookup, &e), -1);
    CHECK(strstr(e.msg, "PIXQ_REDIS_URL") != NULL);
    char *argv3[] = {"prog", "--redis-url=redis://127.0.0.1:99999", NULL};
    argc = 2;
    CHECK_INT(cfg_load(&c, &argc, argv3, lookup, &e), -1);
    CHECK(strstr(e.msg, "bad port") != NULL);
}

/* PIXQ_POSTBACK_RETRY_DELAYS_S: whole seconds, 1 to 16 of them, each 1 s to a day. */
static void test_postback_delays(void)
{
    struct cfg_delays d;
    struct err e;
    struct cfg c;
    cfg_defaults(&c);
    CHECK_INT(cfg_delays(c.postback_retry_delays_s, &d, &e), 0);
    CHECK_INT((long)d.n, 4);
    CHECK_INT(d.s[0], 1);
    CHECK_INT(d.s[3], 600);
    CHECK_INT(cfg_delays(" 2 ,\t86400", &d, &e), 0);
    CHECK_INT((long)d.n, 2);
    CHECK_INT(d.s[0], 2);
    CHECK_INT(d.s[1], 86400);
    const char *bad[] = {"",
                         "0",
                         "1,,2",
                         "1.5",
                         "-1",
                         "86401",
                         "1,x",
                         "1 2",
                         "99999999999999999999",
                         "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(cfg_delays(bad[i], &d, &e), -1);
        CHECK(strstr(e.msg, "PIXQ_POSTBACK_RETRY_DELAYS_S") != NULL);
    }
    CHECK_INT(cfg_delays("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", &d, &e), 0);
    CHECK_INT((long)d.n, 16);
    char *argv[] = {"prog", "--postback-retry-delays-s=1,0", NULL};
    int argc = 2;
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), -1);
    CHECK(strstr(e.msg, "PIXQ_POSTBACK_RETRY_DELAYS_S: '1,0'") != NULL);
}

/* --help gives each number setting's range, so that an operator need not learn it from an
 * error. */
static void test_usage_ranges(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_usage(f);
    fclose(f);
    const char *at = strstr(text, "PIXQ_REDIS_TIMEOUT_MS");
    CHECK(at != NULL);
    const char *end = at != NULL ? strstr(at, "\n  --") : NULL;
    const char *range = at != NULL ? strstr(at, "(100 to 600000)\n") : NULL;
    CHECK(range != NULL && end != NULL && range < end);
    free(text);
}

/* The help of one setting in --help: from its variable's name to the next setting's line. */
static char *usage_of(const char *var)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_usage(f);
    fclose(f);
    char *at = strstr(text, var);
    char *end = at != NULL ? strstr(at, "\n  --") : NULL;
    char *out = at != NULL ? strndup(at, end != NULL ? (size_t)(end - at) : strlen(at)) : NULL;
    free(text);
    return out;
}

/* A job's retry waits between half its step and the step (worker.c's jittered(): equal jitter,
 * so that a retry never comes at once), an upload's between 0 and the step (full jitter): --help
 * says which. It said "full jitter" of PIXQ_RETRY_BASE_MS too. */
static void test_usage_retry_jitter(void)
{
    char *job = usage_of("PIXQ_RETRY_BASE_MS");
    char *s3 = usage_of("PIXQ_S3_RETRY_BASE_MS");
    CHECK(job != NULL && strstr(job, "full jitter") == NULL);
    CHECK(job != NULL && strstr(job, "between half its step and the step") != NULL);
    CHECK(s3 != NULL && strstr(s3, "full jitter") != NULL);
    free(job);
    free(s3);
}

/* cfg_load() with the environment `env` and no arguments: 0, or -1 with `error` in its message
 * (error NULL: it must load). */
static void expect_load(const char *const *env, const char *error)
{
    struct cfg c;
    struct err e = {{0}};
    char *argv0[] = {"prog", NULL};
    int argc = 1;
    fake_env = env;
    CHECK_INT(cfg_load(&c, &argc, argv0, lookup, &e), error == NULL ? 0 : -1);
    CHECK(error == NULL || strstr(e.msg, error) != NULL);
    fake_env = NULL;
}

/* The edges of each kind of value: every boolean word in any case, a rate's bounds and its
 * burst's, a URL's DEL byte, PIXQ_METRICS_ADDR's host and port, a queue list's blanks and
 * braces, a delay list's signs. */
static void test_value_edges(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    const char *yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "ON"};
    const char *no[] = {"0", "false", "no", "off", "FALSE", "No", "Off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        c.allow_private_networks = 0;
        CHECK_INT(cfg_set(&c, "PIXQ_ALLOW_PRIVATE_NETWORKS", yes[i], &e), 0);
        CHECK_INT(c.allow_private_networks, 1);
        c.allow_private_networks = 1;
        CHECK_INT(cfg_set(&c, "PIXQ_ALLOW_PRIVATE_NETWORKS", no[i], &e), 0);
        CHECK_INT(c.allow_private_networks, 0);
    }
    CHECK_INT(cfg_set(&c, "PIXQ_ALLOW_PRIVATE_NETWORKS", "onn", &e), -1);
    /* the refusal names every word taken (README), not only 0/1 and true/false */
    CHECK_STR(e.msg, "PIXQ_ALLOW_PRIVATE_NETWORKS: 'onn' is not a boolean (0/1, true/false, "
                     "yes/no, on/off)");
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "1000000/s,burst=1000000", &e), 0);
    CHECK(c.s3_rate == 1e6);
    CHECK_INT(c.s3_burst, 1000000);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "1000001/s", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s,burst=1000001", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s,   burst=7", &e), 0); /* blanks after the comma */
    CHECK(c.s3_rate == 10.0);
    CHECK_INT(c.s3_burst, 7);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/sec", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s burst=2", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_RATE", "10/s,burst=2x", &e), -1);
    CHECK(c.s3_rate == 10.0 && c.s3_burst == 7); /* refused values leave both alone */
    /* wait_for_s3 checks at least 100 ms apart (README's S3 section): no tighter HEAD loop */
    CHECK_INT(cfg_set(&c, "PIXQ_WAIT_FOR_S3_INTERVAL_MS", "99", &e), -1);
    CHECK(strstr(e.msg, "PIXQ_WAIT_FOR_S3_INTERVAL_MS") != NULL);
    CHECK_INT(cfg_set(&c, "PIXQ_WAIT_FOR_S3_INTERVAL_MS", "100", &e), 0);
    CHECK_INT(c.wait_for_s3_interval_ms, 100);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://minio\x7f:9000", &e), -1);
    CHECK_INT(cfg_set(&c, "PIXQ_S3_ENDPOINT", "http://minio:9000/\x7f", &e), -1);

    struct cfg_queues q;
    CHECK_INT(cfg_queues("urgent\t, default\t", &q, &e), 0);
    CHECK_STR(q.name[0], "urgent");
    CHECK_STR(q.name[1], "default");
    CHECK_INT(cfg_queues("a}b", &q, &e), -1);
    CHECK(strstr(e.msg, "braces") != NULL);
    CHECK_INT(cfg_queues("a{b", &q, &e), -1);
    CHECK(strstr(e.msg, "braces") != NULL);
    struct cfg_delays d;
    CHECK_INT(cfg_delays("+5", &d, &e), -1);
    CHECK_INT(cfg_delays("1, +5", &d, &e), -1);

    const char *addr[][2] = {{"h:65535", NULL},
                             {"h:1", NULL},
                             {":9464", "needs a host, a ':' and a port"},
                             {"h:65536", "from 1 to 65535"},
                             {"a/b:80", "only letters, digits"}};
    for (size_t i = 0; i < sizeof addr / sizeof addr[0]; i++) {
        expect_load((const char *[]){"PIXQ_METRICS_ADDR", addr[i][0], NULL}, addr[i][1]);
    }
}

/* Settings that must agree: a heartbeat of exactly a third of the lease is taken, one above
 * it refused, and a job's first retry delay may not exceed the longest. */
static void test_agreeing_settings(void)
{
    const char *cases[][5] = {
        {"PIXQ_LEASE_MS", "3000", "PIXQ_HEARTBEAT_MS", "1000", NULL},
        {"PIXQ_RETRY_BASE_MS", "5000", "PIXQ_RETRY_MAX_MS", "5000", NULL},
        {"PIXQ_LEASE_MS", "3000", "PIXQ_HEARTBEAT_MS", "1001", "at most a third"},
        {"PIXQ_LEASE_MS", "3000", "PIXQ_HEARTBEAT_MS", "1400", "at most a third"},
        {"PIXQ_RETRY_BASE_MS", "5001", "PIXQ_RETRY_MAX_MS", "5000",
         "PIXQ_RETRY_BASE_MS (5001) must not exceed PIXQ_RETRY_MAX_MS (5000)"},
        {"PIXQ_RESTART_BACKOFF_MIN_MS", "3000", "PIXQ_RESTART_BACKOFF_MAX_MS", "2000",
         "PIXQ_RESTART_BACKOFF_MIN_MS (3000) must not exceed PIXQ_RESTART_BACKOFF_MAX_MS (2000)"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *c = cases[i];
        expect_load((const char *[]){c[0], c[1], c[2], c[3], NULL}, c[4]);
    }
}

/* A new file from the template `path` (its name put there) holding `text`. */
static void config_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

/* The file's edges: a last line without a newline, quotes removed only in matching pairs. */
static void test_file_edges(void)
{
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    config_file(path, "PIXQ_QUEUE=\"a'\nPIXQ_DEFAULT_BUCKET='b\"\nAWS_REGION=eu-west-1");
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    CHECK_INT(cfg_load_file(&c, path, &e), 0);
    CHECK_STR(c.queue, "\"a'");
    CHECK_STR(c.default_bucket, "'b\"");
    CHECK_STR(c.aws_region, "eu-west-1");
    unlink(path);
    /* a lone quote is a value of one quote, not an empty quoted one */
    snprintf(path, sizeof path, "/tmp/pixq-cfg-XXXXXX");
    config_file(path, "PIXQ_S3_DEFAULT_ACL=\"\n");
    CHECK_INT(cfg_load_file(&c, path, &e), 0);
    CHECK_STR(c.s3_default_acl, "\"");
    unlink(path);
}

/* The command line's edges: settings flags are named as flags, never as variables; --config=FILE
 * takes no next argument; after "--" nothing is a setting, --config included. */
static void test_command_line_edges(void)
{
    struct cfg c;
    struct err e = {{0}};
    fake_env = NULL;
    char *argv[] = {"prog", "--PIXQ_QUEUE", "x", "--aws_region=eu-west-1", NULL};
    int argc = 4;
    CHECK_INT(cfg_load(&c, &argc, argv, lookup, &e), 0);
    CHECK_STR(c.queue, "default");
    CHECK_STR(c.aws_region, "us-east-1");
    CHECK_INT(argc, 4);
    CHECK_STR(argv[1], "--PIXQ_QUEUE");
    CHECK_STR(argv[3], "--aws_region=eu-west-1");

    char path[] = "/tmp/pixq-cfg-XXXXXX";
    config_file(path, "PIXQ_DEFAULT_QUALITY=61\n");
    char config[64];
    snprintf(config, sizeof config, "--config=%s", path);
    char *argv2[] = {"prog", config, "submit", NULL};
    argc = 3;
    CHECK_INT(cfg_load(&c, &argc, argv2, lookup, &e), 0);
    CHECK_INT(c.default_quality, 61);
    CHECK_INT(argc, 2);
    CHECK_STR(argv2[1], "submit");

    /* --config FILE as the last two arguments: the file is read */
    char *argv4[] = {"prog", "submit", "--config", path, NULL};
    argc = 4;
    cfg_defaults(&c);
    CHECK_INT(cfg_load(&c, &argc, argv4, lookup, &e), 0);
    CHECK_INT(c.default_quality, 61);
    CHECK_INT(argc, 2);
    unlink(path);

    char *argv3[] = {"prog", "submit", "--", "--config", "/nonexistent/pixq.env", NULL};
    argc = 5;
    CHECK_INT(cfg_load(&c, &argc, argv3, lookup, &e), 0);
    CHECK_INT(argc, 5);
    CHECK_STR(argv3[3], "--config");
}

static void collect_name(const char *name, void *user)
{
    char *names = user;
    size_t n = strlen(names);
    snprintf(names + n, 256 - n, "%s ", name);
}

/* cfg_unknown_env() names the PIXQ_ variables that are no setting, and no other: not a setting's,
 * not PIXQ_CONFIG (the file's path), not a variable of another program. */
static void test_unknown_env(void)
{
    char *env[] = {"PIXQ_CONFIG=/etc/pixq/pixq.env",
                   "PIXQ_QUEUE=a",
                   "PIXQ_PROCESS=4",
                   "HOME=/root",
                   "AWS_REGIONS=x",
                   "PIXQ_queue=b",
                   "PIXQ_NO_VALUE",
                   NULL};
    char names[256] = "";
    cfg_unknown_env(env, collect_name, names);
    CHECK_STR(names, "PIXQ_PROCESS PIXQ_queue PIXQ_NO_VALUE ");
}

/* What --print-config shows of the kinds of value that are not text: a level, a rate, a
 * boolean and PIXQ_S3_PATH_STYLE's three values. */
static void test_print_values(void)
{
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    const char *sets[][3] = {{"PIXQ_S3_PATH_STYLE", "auto", "PIXQ_S3_PATH_STYLE=auto\n"},
                             {"PIXQ_S3_PATH_STYLE", "off", "PIXQ_S3_PATH_STYLE=0\n"},
                             {"PIXQ_S3_PATH_STYLE", "yes", "PIXQ_S3_PATH_STYLE=1\n"},
                             {"PIXQ_LOG_LEVEL", "error", "PIXQ_LOG_LEVEL=error\n"},
                             {"PIXQ_S3_RATE", "2.5/s", "PIXQ_S3_RATE=2.5/s,burst=20\n"},
                             {"PIXQ_CPU_AFFINITY", "on", "PIXQ_CPU_AFFINITY=1\n"}};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        CHECK_INT(cfg_set(&c, sets[i][0], sets[i][1], &e), 0);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        cfg_print(&c, f);
        fclose(f);
        if (strstr(text, sets[i][2]) == NULL) {
            fprintf(stderr, "  %s=%s: no line %s", sets[i][0], sets[i][1], sets[i][2]);
            CHECK(false);
        }
        free(text);
    }
}

/* A line longer than the reader's buffer is refused whole: its end is not read as a line of its
 * own (a long comment's tail would set a setting). */
static void test_file_long_line(void)
{
    static char text[CFG_TOKEN_MAX + 256];
    size_t n = CFG_TOKEN_MAX + 127; /* the bytes fgets() reads of a line at most */
    text[0] = '#';
    memset(text + 1, 'x', n - 1);
    snprintf(text + n, sizeof text - n, "PIXQ_QUEUE=tail\n");
    char path[] = "/tmp/pixq-cfg-XXXXXX";
    config_file(path, text);
    struct cfg c;
    struct err e = {{0}};
    cfg_defaults(&c);
    CHECK_INT(cfg_load_file(&c, path, &e), -1);
    CHECK(strstr(e.msg, ":1: line too long") != NULL);
    CHECK_STR(c.queue, "default");
    unlink(path);
}

/* The job limits' bounds: the least and the most each takes, one past either refused with the
 * range. A job is at least 4 deep ({"functions": [{"params": {...}}]}), has a function, a
 * source of at least a KiB and a pixel. */
static void test_limit_bounds(void)
{
    static const struct {
        const char *var;
        long min, max;
    } limits[] = {{"PIXQ_MAX_JSON_DEPTH", 4, 1000},
                  {"PIXQ_MAX_FUNCTIONS", 1, 10000},
                  {"PIXQ_MAX_JOB_BYTES", 256, 16L * 1024 * 1024},
                  {"PIXQ_MAX_SRC_BYTES", 1024, 2048L * 1024 * 1024},
                  {"PIXQ_MAX_PIXELS", 1, 1000000000L},
                  {"PIXQ_MAX_FRAMES", 1, 100000},
                  {"PIXQ_MAX_SOURCES", 1, 10000}};
    struct cfg c;
    struct err e;
    cfg_defaults(&c);
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        const long at[] = {limits[i].min - 1, limits[i].min, limits[i].max, limits[i].max + 1};
        for (size_t k = 0; k < 4; k++) {
            char v[32], want[128];
            snprintf(v, sizeof v, "%ld", at[k]);
            e.msg[0] = '\0';
            int rc = cfg_set(&c, limits[i].var, v, &e);
            snprintf(want, sizeof want, "%s: %ld is out of range [%ld, %ld]", limits[i].var, at[k],
                     limits[i].min, limits[i].max);
            if (rc != (k == 0 || k == 3 ? -1 : 0) || (rc < 0 && strcmp(e.msg, want) != 0)) {
                fprintf(stderr, "  %s=%s: %d '%s'\n", limits[i].var, v, rc, e.msg);
                CHECK(false);
            }
        }
    }
}

int main(void)
{
    test_defaults();
    test_good_values();
    test_bad_values();
    test_session_token();
    test_precedence();
    test_default_region();
    test_boolean_flag_values();
    test_bad_file();
    test_print_hides_secrets();
    test_guard_settings();
    test_fleet_settings();
    test_s3_cross_checks();
    test_queues_and_url();
    test_postback_delays();
    test_usage_ranges();
    test_usage_retry_jitter();
    test_value_edges();
    test_agreeing_settings();
    test_file_edges();
    test_command_line_edges();
    test_unknown_env();
    test_print_values();
    test_file_long_line();
    test_limit_bounds();
    return check_summary("cfg");
}
