/* test_s3: bucket names and the URL each object is addressed at (common/s3.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "err.h"
#include "s3.h"

static void test_bucket_names(void)
{
    CHECK(s3_valid_bucket("pixq-test"));
    CHECK(s3_valid_bucket("a.b.c"));
    CHECK(s3_valid_bucket("My_Bucket")); /* legacy us-east-1 */
    CHECK(s3_legacy_bucket("My_Bucket"));
    CHECK(s3_legacy_bucket("UPPER"));
    CHECK(!s3_legacy_bucket("pixq-test"));
    CHECK(!s3_valid_bucket("ab"));
    CHECK(!s3_valid_bucket("_leading"));
    CHECK(!s3_valid_bucket("trailing_"));
    CHECK(!s3_valid_bucket("a/b"));
    CHECK(!s3_valid_bucket("a b"));
    CHECK(!s3_valid_bucket("a%2fb"));
    CHECK(!s3_valid_bucket("abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij"));
    CHECK(!s3_legacy_bucket("a/B"));
}

static void check_url(const struct s3_config *c, const char *bucket, const char *key,
                      const char *want)
{
    struct s3_object o = {.bucket = bucket, .key = key};
    struct buf url;
    buf_init(&url, 0);
    struct err e = {{0}};
    int rc = s3_object_url(c, &o, &url, &e);
    CHECK_INT(rc, want != NULL ? 0 : -1);
    if (rc == 0 && want != NULL) {
        CHECK_STR(url.data, want);
    }
    buf_finish(&url);
}

/* Virtual-host addressing unless the name cannot be a host name (legacy) or breaks TLS name
 * checks (a dot, over https), or the deployment asks for path style. */
static void test_addressing(void)
{
    struct s3_config aws = {.region = "us-east-1"};
    check_url(&aws, "pixq-test", "a/b.jpg", "https://pixq-test.s3.amazonaws.com/a/b.jpg");
    check_url(&aws, "My_Bucket", "a/b.jpg", "https://s3.amazonaws.com/My_Bucket/a/b.jpg");
    check_url(&aws, "a.b.c", "k", "https://s3.amazonaws.com/a.b.c/k");
    check_url(&aws, "a/b", "k", NULL);
    struct s3_config eu = {.region = "eu-west-1"};
    check_url(&eu, "pixq-test", "k", "https://pixq-test.s3.eu-west-1.amazonaws.com/k");
    struct s3_config local = {.endpoint = "http://127.0.0.1:9000", .region = "us-east-1"};
    check_url(&local, "pixq-test", "k", "http://pixq-test.127.0.0.1:9000/k");
    check_url(&local, "Legacy_Bucket", "k", "http://127.0.0.1:9000/Legacy_Bucket/k");
    local.path_style = true;
    check_url(&local, "pixq-test", "k", "http://127.0.0.1:9000/pixq-test/k");
    /* no key: the bucket itself (the HEAD that asks where it lives) */
    check_url(&local, "pixq-test", "", "http://127.0.0.1:9000/pixq-test");
    check_url(&aws, "pixq-test", "", "https://pixq-test.s3.amazonaws.com/");
    check_url(&aws, "a.b.c", "", "https://s3.amazonaws.com/a.b.c");
}

/* The answers that name the bucket's region: followed only to a region name. */
static void test_wrong_region(void)
{
    struct s3_reply r = {
        .status = 400, .code = "IllegalLocationConstraintException", .region = "af-south-1"};
    CHECK(s3_wrong_region(&r));
    snprintf(r.code, sizeof r.code, "AuthorizationHeaderMalformed");
    CHECK(s3_wrong_region(&r));
    snprintf(r.code, sizeof r.code, "InvalidArgument");
    CHECK(!s3_wrong_region(&r));
    r = (struct s3_reply){.status = 301, .region = "eu-west-1"};
    CHECK(s3_wrong_region(&r));
    r.status = 307;
    CHECK(s3_wrong_region(&r));
    snprintf(r.region, sizeof r.region, "evil.example/x");
    CHECK(!s3_wrong_region(&r));
    r = (struct s3_reply){.status = 403, .code = "AccessDenied", .region = "eu-west-1"};
    CHECK(!s3_wrong_region(&r));
}

/* S3's <Message> as an error quotes it: control bytes as spaces, cut to the buffer. */
static void test_error_message(void)
{
    char out[16];
    s3_error_message("<Error><Code>AccessControlListNotSupported</Code><Message>No ACLs"
                     "</Message></Error>",
                     out, sizeof out);
    CHECK_STR(out, "No ACLs");
    s3_error_message("<Error><Message>a\r\nb\x1b[31mc\x7f</Message></Error>", out, sizeof out);
    CHECK_STR(out, "a  b [31mc ");
    s3_error_message("<Message>The bucket does not allow ACLs</Message>", out, sizeof out);
    CHECK_STR(out, "The bucket does");
    s3_error_message("<Error><Code>SlowDown</Code></Error>", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message("<Message>cut short, no end", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message(NULL, out, sizeof out);
    CHECK_STR(out, "");
    /* plain text (s3rver's 404 for an empty key segment), less the blanks around it */
    s3_error_message(" Not Found\r\n", out, sizeof out);
    CHECK_STR(out, "Not Found");
    s3_error_message("a very long text answer", out, sizeof out);
    CHECK_STR(out, "a very long tex");
    s3_error_message("<html><body>Bad Gateway</body></html>", out, sizeof out);
    CHECK_STR(out, ""); /* a page: no text to pick */
    s3_error_message("", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message(" \n", out, sizeof out);
    CHECK_STR(out, "");
}

int main(void)
{
    test_bucket_names();
    test_addressing();
    test_wrong_region();
    test_error_message();
    return check_summary("s3");
}
