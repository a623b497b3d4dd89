#include <stdlib.h>

#include "check.h"
#include "job.h"
#include "jscan.h"

static const struct job_limits limits = {250000, 32, 100, 0, 0};

static struct job *parse(const char *text)
{
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &limits, &e);
    if (j == NULL) {
        fprintf(stderr, "  (parse failed: %s)\n", e.msg);
    }
    return j;
}

/* What README says pixq ignores: a job with Blitline's loader hints, proxy switch and signed-job
 * members is valid, as without them. */
static void test_ignored_members(void)
{
    struct job *j = parse("{\"src\":\"http://x/a.jpg\",\"src_data\":{\"colorspace\":\"srgb\","
                          "\"dpi\":300},\"use_proxy\":true,\"public_token\":\"p\","
                          "\"expires\":\"Mon, 07 Dec 2026 10:00:00 GMT\",\"key_transform\":\"^a/\","
                          "\"signature\":\"0f\",\"extract_colors\":{\"max_colors\":5},"
                          "\"functions\":[{\"name\":\"no_op\"}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    job_destroy(j);
}

static void test_full_job(void)
{
    struct job *j =
        parse("{\"application_id\":\"a\",\"job_id\":\"abc-1\",\"src\":\"http://x/a.jpg\","
              "\"postback_url\":\"http://pb/\",\"postback_headers\":{\"X-T\":\"1\"},\"v\":\"1.21\","
              "\"functions\":[{\"name\":\"resize_to_fit\",\"params\":{\"width\":\"100\"},"
              "\"save\":{\"image_identifier\":\"t\",\"quality\":\"90\",\"s3_destination\":"
              "{\"bucket\":{\"name\":\"bk\",\"location\":\"eu-west-1\"},\"key\":\"a/b.PNG\","
              "\"headers\":{\"Cache-Control\":\"x\"}}},"
              "\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"u\","
              "\"extension\":\".webp\",\"skip\":\"true\"}}]}]}");
    CHECK(j != NULL);
    if (j == NULL) {
        return;
    }
    CHECK_STR(j->error, "");
    CHECK_STR(j->id, "abc-1");
    CHECK_STR(job_src_url(j), "http://x/a.jpg");
    CHECK_STR(j->postback_url, "http://pb/");
    CHECK(j->v > 1.2 && j->v < 1.22);
    CHECK_INT(j->n_functions, 1);
    CHECK_INT(job_count_saves(j), 2);
    CHECK_INT(j->functions[0].save->index, 0);
    const struct job_fn *f = &j->functions[0];
    CHECK_STR(f->name, "resize_to_fit");
    long width = 0;
    struct err e;
    CHECK_INT(job_param_long(f->params, f->name, "width", 0, 0, 1000, &width, &e), 0);
    CHECK_INT(width, 100); /* a number given as a string */
    CHECK_STR(f->save->bucket, "bk");
    CHECK_STR(f->save->location, "eu-west-1");
    CHECK_STR(f->save->key, "a/b.PNG");
    CHECK_STR(f->save->format, "png"); /* from the key, lower-cased */
    CHECK_INT(f->save->quality, 90);
    CHECK(f->save->save_profiles); /* v >= 1.20 keeps ICC profiles */
    CHECK(!f->save->save_metadata);
    CHECK_INT(f->n_children, 1);
    CHECK_STR(f->children[0].save->format, "webp");
    CHECK(f->children[0].save->skip);
    CHECK_INT(f->children[0].save->index, 1);
    json_object *ids = json_object_new_array();
    job_identifiers(j, ids);
    CHECK_STR(json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN), "[\"t\",\"u\"]");
    json_object_put(ids);
    job_destroy(j);
}

static void expect_invalid(const char *text, const char *fragment)
{
    struct job *j = parse(text);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK(strstr(j->error, fragment) != NULL);
        if (strstr(j->error, fragment) == NULL) {
            fprintf(stderr, "  error was: '%s', wanted '%s'\n", j->error, fragment);
        }
    }
    job_destroy(j);
}

static void test_format_order(void)
{
    struct job *j = parse(
        "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"a\"}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"b\",\"extension\":\"png\"}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"c\",\"extension\":\".png\","
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"noext\",\"force_type\":\"gif\"}}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"d\",\"extension\":\".png\","
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"x.jpeg\"}}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"e\",\"extension\":\".png\","
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"x.JPEG\",\"force_type\":\".gif\"}}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"f\","
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"avatars/user.123\"}}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"g\",\"extension\":\"webp\","
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"photo.v2\"}}},"
        "{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"h\",\"skip\":true,"
        "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"doc.PDF\"}}}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    if (j == NULL) {
        return;
    }
    CHECK_STR(j->functions[0].save->format, "jpg");  /* default */
    CHECK_STR(j->functions[1].save->format, "png");  /* extension without a dot */
    CHECK_STR(j->functions[2].save->format, "gif");  /* force_type beats extension */
    CHECK_STR(j->functions[3].save->format, "jpeg"); /* the key's extension beats extension */
    CHECK_STR(j->functions[4].save->format, "gif");  /* force_type beats the key's */
    CHECK_STR(j->functions[5].save->format, "jpg");  /* `.123` names no image format */
    CHECK_STR(j->functions[6].save->format, "webp"); /* nor does `.v2` */
    CHECK_STR(j->functions[7].save->format, "pdf");  /* a skipped save's: never written */
    CHECK(j->functions[0].save->bucket == NULL);
    CHECK_STR(j->id, ""); /* no job_id: assigned later */
    struct buf payload;
    buf_init(&payload, 0);
    struct err e;
    CHECK_INT(job_assign_id(j, &payload, &e), 0);
    CHECK_INT(strlen(j->id), 23);
    CHECK(strstr(payload.data, j->id) != NULL);
    struct job *again = parse(payload.data);
    CHECK(again != NULL && strcmp(again->id, j->id) == 0);
    job_destroy(again);
    buf_finish(&payload);
    job_destroy(j);
    /* a format pixq does not write fails the job before any source is fetched */
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                   "\"image_identifier\":\"h\",\"s3_destination\":{\"bucket\":\"bk\","
                   "\"key\":\"doc.PDF\"}}}]}",
                   "Unsupported output format 'pdf' for 'h'");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                   "\"image_identifier\":\"x\",\"extension\":\".bpg\"}}]}",
                   "Unsupported output format 'bpg' for 'x'");
    expect_invalid("{\"src\":\"u\",\"functions\":[],\"pre_process\":{\"move_original\":{"
                   "\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"orig/doc.pdf\"}}}}",
                   "Unsupported output format 'pdf' for move_original");
    CHECK(job_format_writable("tiff") && job_format_writable("jpeg") && !job_format_writable("") &&
          !job_format_writable("JPG") && !job_format_writable("avif"));
}

static void expect_unusable(const char *text, const char *fragment)
{
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &limits, &e);
    CHECK(j == NULL);
    CHECK(strstr(e.msg, fragment) != NULL);
    job_destroy(j);
}

static void test_errors(void)
{
    /* where it breaks, counted from 1: the byte json-c stopped at, or the first after the value */
    expect_unusable("{not json",
                    "job is not valid JSON: quoted object property name expected at byte 2 of 9");
    expect_unusable("{\"a\": [1, 2,, 3]}",
                    "job is not valid JSON: unexpected character at byte 13 of 17");
    expect_unusable("[1,2]", "must be a JSON object");
    expect_unusable("{\"a\":1} trailing", "job is not valid JSON: trailing data at byte 9 of 16");
    expect_unusable("", "not valid JSON");
    /* json-c's "continue" (input ended inside a value) in words; a bare number is valid JSON */
    expect_unusable("{\"src\": \"x\"", "job is not valid JSON: unexpected end of input");
    expect_unusable("{\"src\": [", "job is not valid JSON: unexpected end of input");
    expect_unusable("1", "job must be a JSON object");
    expect_unusable("12", "job must be a JSON object");
    expect_unusable("{\"a\":1} 2", "job is not valid JSON: trailing data at byte 9 of 9");
    /* JSON's null is valid JSON of another kind, as a number is (json-c parses it to NULL) */
    expect_unusable("null", "job must be a JSON object");
    expect_unusable("null \n", "job must be a JSON object");
    expect_unusable("null x", "job is not valid JSON: trailing data");
    expect_unusable("nul", "job is not valid JSON: unexpected end of input");
    /* json-c's end past the last byte (it read the NUL after the text): the last byte named */
    expect_unusable("1/", "job is not valid JSON: expected comment at byte 2 of 2");
    expect_invalid("{\"src\":\"u\",\"job_id\":\"a\\u0000b\",\"functions\":[]}",
                   "job_id 'a' must be");
    /* a payload that ends after half a surrogate pair leaves nothing to the next one */
    expect_unusable("{\"a\":\"\\ud83d\\ude0", "unexpected end of input");
    struct job *after = parse("{\"src\":\"u\",\"job_id\":\"\\u0041bc\",\"functions\":[]}");
    CHECK(after != NULL && strcmp(after->id, "Abc") == 0 && after->error[0] == '\0');
    job_destroy(after);
    expect_unusable("{\"a\":\"\\ud83d", "unexpected end of input");
    after = parse("{\"src\":\"\\udc00\",\"functions\":[]}");
    CHECK(after != NULL && strcmp(job_src_url(after), "\xef\xbf\xbd") == 0);
    job_destroy(after);
    char deep[200];
    memset(deep, '[', 40);
    deep[40] = '\0';
    char doc[300];
    snprintf(doc, sizeof doc, "{\"src\":%s", deep);
    expect_unusable(doc, "job nests deeper than 32 levels (PIXQ_MAX_JSON_DEPTH)");
    expect_invalid("{\"functions\":[{\"name\":\"no_op\"}]}", "No source");
    expect_invalid("{\"src\":\"u\"}", "Functions are required");
    /* an image_identifier of 500 bytes, cut in the message: the reason still fits */
    char long_id[700];
    snprintf(long_id, sizeof long_id,
             "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
             "\"%0500d\",\"s3_destination\":{\"bucket\":\"b\"}}}]}",
             7);
    expect_invalid(long_id, "needs a bucket and a key");
    struct job *none = parse("{\"src\":\"u\",\"functions\":[]}"); /* metadata only */
    CHECK(none != NULL && none->error[0] == '\0' && none->n_functions == 0);
    job_destroy(none);
    expect_invalid("{\"src\":\"u\",\"functions\":{\"name\":\"no_op\"}}",
                   "functions must be an array of functions");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"params\":{}}]}",
                   "a function has no name (functions[0])");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{}}]}",
                   "Save must have an image_identifier");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"params\":[1]}]}",
                   "params of function 'no_op' must be an object");
    expect_invalid("{\"src\":\"u\",\"job_id\":\"a b\",\"functions\":[{\"name\":\"no_op\"}]}",
                   "job_id 'a b' must be");
    /* an integer job_id is the id as written, also beyond 64 bits, where json-c saturates */
    const char *ints[][2] = {{"42", "42"},
                             {"-7", "-7"},
                             {"123456789012345678901234", "123456789012345678901234"},
                             {"123456789012345678901235", "123456789012345678901235"},
                             {"-123456789012345678901234", "-123456789012345678901234"}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        char t[200];
        snprintf(t, sizeof t, "{\"job_id\":5,\"src\":\"u\",\"job_id\": %s ,\"functions\":[]}",
                 ints[i][0]);
        struct job *n = parse(t);
        CHECK(n != NULL && n->error[0] == '\0');
        CHECK_STR(n != NULL ? n->id : "", ints[i][1]);
        job_destroy(n);
    }
    char huge[300];
    snprintf(huge, sizeof huge, "{\"src\":\"u\",\"job_id\":%0200d,\"functions\":[]}", 1);
    huge[20] = '9'; /* 200 digits, not starting with 0 */
    expect_invalid(huge, "must be 1-127 characters");
    expect_invalid("{\"src\":\"u\",\"postback_url\":5,\"functions\":[{\"name\":\"no_op\"}]}",
                   "postback_url must be a string");
    /* a refused job_id is still posted back (under the id the worker gives the job) */
    expect_invalid("{\"src\":\"u\",\"job_id\":\"user/42\",\"postback_url\":\"http://h/p\","
                   "\"functions\":[{\"name\":\"no_op\"}]}",
                   "job_id 'user/42' must be 1-127 characters");
    {
        const char *t = "{\"src\":\"u\",\"job_id\":{},\"postback_url\":\"http://h/p\","
                        "\"functions\":[{\"name\":\"no_op\"}]}";
        struct job *bad = parse(t);
        CHECK(bad != NULL && bad->postback_url != NULL &&
              strcmp(bad->postback_url, "http://h/p") == 0);
        CHECK(bad != NULL && bad->id[0] == '\0' && strstr(bad->error, "job_id must be a string"));
        job_destroy(bad);
    }
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":"
                   "{\"image_identifier\":\"x\",\"quality\":\"high\"}}]}",
                   "Invalid parameter 'quality' of the save of 'x': expected");
    /* which of a job's saves: the second here */
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":"
                   "{\"image_identifier\":\"thumb\"},\"functions\":[{\"name\":\"no_op\","
                   "\"save\":{\"image_identifier\":\"medium\",\"quality\":150}}]}]}",
                   "Invalid parameter 'quality' of the save of 'medium': 150 is out of range "
                   "[1, 100]");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":"
                   "{\"image_identifier\":\"x\",\"s3_destination\":{\"bucket\":\"b\"}}}]}",
                   "needs a bucket and a key");
    struct job_limits tight = {limits.max_bytes, limits.max_depth, 2, 0, 0};
    const char *three = "{\"src\":\"u\",\"functions\":[{\"name\":\"a\"},{\"name\":\"b\","
                        "\"functions\":[{\"name\":\"c\"}]}]}";
    struct err e;
    struct job *j = job_parse(three, strlen(three), &tight, &e);
    CHECK(j != NULL && strstr(j->error, "too many functions") != NULL);
    job_destroy(j);
    struct job_limits small = {10, 32, 100, 0, 0};
    /* the worker's room for its own members, past max_bytes */
    struct job_limits own = {strlen(three) - JOB_OWN_BYTES, 32, 100, JOB_OWN_BYTES, 0};
    j = job_parse(three, strlen(three), &own, &e);
    CHECK(j != NULL && !j->salvaged && j->error[0] == '\0');
    job_destroy(j);
    own.max_bytes--;
    j = job_parse(three, strlen(three), &own, &e);
    CHECK(j != NULL && j->salvaged);
    char want[96];
    snprintf(want, sizeof want, "job is %zu bytes, more than the limit of %zu (PIXQ_MAX_JOB_BYTES)",
             strlen(three), own.max_bytes);
    CHECK_STR(j != NULL ? j->error : "", want);
    job_destroy(j);
    j = job_parse(three, strlen(three), &small, &e); /* salvaged: test_salvage() */
    CHECK(j != NULL && j->salvaged && strstr(j->error, "more than the limit of 10") != NULL);
    job_destroy(j);
}

static void test_params(void)
{
    json_object *p = json_tokener_parse(
        "{\"n\":5,\"s\":\"7\",\"f\":\"2.5\",\"t\":\"TRUE\",\"b\":false,\"one\":1,\"bad\":\"x7\","
        "\"neg\":-3,\"nan\":\"nan\",\"nul\":null,\"obj\":{},\"big\":1e300,\"empty\":\"\","
        "\"huge\":-1e400,\"hugestr\":\"1e400\",\"inf\":\"inf\",\"tiny\":\"1e-400\","
        "\"inftok\":-Infinity,\"nantok\":NaN,\"pad\":\" 5 \",\"blank\":\" \\t\",\"zero\":0,"
        "\"s1\":\"1\",\"s0\":\"0\",\"F\":\"FALSE\",\"arr\":[1]}");
    struct err e;
    long l;
    double d;
    bool b;
    const char *s;
    CHECK_INT(job_param_long(p, "fn", "n", 0, 0, 10, &l, &e), 0);
    CHECK_INT(l, 5);
    CHECK_INT(job_param_long(p, "fn", "s", 0, 0, 10, &l, &e), 0);
    CHECK_INT(l, 7);
    CHECK_INT(job_param_long(p, "fn", "missing", 42, 0, 10, &l, &e), 0);
    CHECK_INT(l, 42);
    CHECK_INT(job_param_long(p, "fn", "nul", 3, 0, 10, &l, &e), 0);
    CHECK_INT(l, 3);
    CHECK_INT(job_param_long(p, "fn", "bad", 0, 0, 10, &l, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'bad' for function 'fn': expected a whole number");
    CHECK_INT(job_param_long(p, "fn", "neg", 0, 0, 10, &l, &e), -1);
    CHECK(strstr(e.msg, "out of range") != NULL);
    CHECK_INT(job_param_long(p, "fn", "big", 0, 0, 10, &l, &e), -1);
    CHECK_INT(job_param_double(p, "fn", "f", 0, 0, 10, &d, &e), 0);
    CHECK(d == 2.5);
    CHECK_INT(job_param_double(p, "fn", "nan", 0, 0, 10, &d, &e), -1);
    /* a number past what a double holds is out of range, as given; "inf" is no number */
    CHECK_INT(job_param_long(p, "fn", "huge", 0, 0, 10, &l, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'huge' for function 'fn': -1e400 is out of range [0, 10]");
    CHECK_INT(job_param_double(p, "fn", "hugestr", 0, 0, 2.5, &d, &e), -1);
    CHECK_STR(e.msg,
              "Invalid parameter 'hugestr' for function 'fn': 1e400 is out of range [0, 2.5]");
    CHECK_INT(job_param_double(p, "fn", "inf", 0, 0, 10, &d, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'inf' for function 'fn': expected a number");
    /* json-c's Infinity token is a word too, though it reads it as a double */
    CHECK_INT(job_param_long(p, "fn", "inftok", 0, 0, 10, &l, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'inftok' for function 'fn': expected a whole number");
    CHECK_INT(job_param_long(p, "fn", "blank", 1, 1, 10, &l, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'blank' for function 'fn': expected a whole number");
    /* json-c's NaN token, as its Infinity */
    CHECK_INT(job_param_double(p, "fn", "nantok", 0, -10, 10, &d, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'nantok' for function 'fn': expected a number");
    /* a whole number's range is written whole, however large */
    CHECK_INT(job_param_long(p, "fn", "huge", 0, 0, 100000000, &l, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'huge' for function 'fn': -1e400 is out of range [0, "
                     "100000000]");
    /* blanks around a number are no matter; blanks alone are no number */
    CHECK_INT(job_param_long(p, "fn", "pad", 0, 0, 10, &l, &e), 0);
    CHECK_INT(l, 5);
    CHECK_INT(job_param_double(p, "fn", "blank", 1, 0, 10, &d, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'blank' for function 'fn': expected a number");
    /* the bounds are in the range; a whole number is cut before it is compared ("2.5" is 2) */
    CHECK_INT(job_param_double(p, "fn", "n", 0, 0, 5, &d, &e), 0);
    CHECK(d == 5.0);
    CHECK_INT(job_param_long(p, "fn", "n", 0, 5, 5, &l, &e), 0);
    CHECK_INT(l, 5);
    CHECK_INT(job_param_long(p, "fn", "f", 0, 0, 2, &l, &e), 0);
    CHECK_INT(l, 2);
    CHECK_INT(job_param_double(p, "fn", "tiny", 1, 0, 10, &d, &e), 0);
    CHECK(d >= 0.0 && d < 1e-300);
    CHECK_INT(job_param_bool(p, "fn", "t", false, &b, &e), 0);
    CHECK(b);
    CHECK_INT(job_param_bool(p, "fn", "b", true, &b, &e), 0);
    CHECK(!b);
    CHECK_INT(job_param_bool(p, "fn", "one", false, &b, &e), 0);
    CHECK(b);
    CHECK_INT(job_param_bool(p, "fn", "bad", false, &b, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'bad' for function 'fn': expected true or false");
    CHECK_INT(job_param_bool(p, "fn", "zero", true, &b, &e), 0);
    CHECK(!b);
    CHECK_INT(job_param_bool(p, "fn", "s1", false, &b, &e), 0);
    CHECK(b);
    CHECK_INT(job_param_bool(p, "fn", "s0", true, &b, &e), 0);
    CHECK(!b);
    CHECK_INT(job_param_bool(p, "fn", "F", true, &b, &e), 0);
    CHECK(!b);
    CHECK_INT(job_param_bool(p, "fn", "n", false, &b, &e), -1); /* 5: no boolean */
    CHECK_INT(job_param_string(p, "fn", "n", NULL, &s, &e), 0);
    CHECK_STR(s, "5");
    CHECK_INT(job_param_string(p, "fn", "obj", NULL, &s, &e), -1);
    CHECK_INT(job_param_string(p, "fn", "arr", NULL, &s, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'arr' for function 'fn': expected a string");
    CHECK(job_param_present(p, "n") && !job_param_present(p, "nul") && !job_param_present(p, "zz"));
    /* "" is no number (Blitline's to_i made it 0, no value); it is a string, and false */
    CHECK_INT(job_param_long(p, "fn", "empty", 9, 1, 10, &l, &e), 0);
    CHECK_INT(l, 9);
    CHECK_INT(job_param_double(p, "fn", "empty", 0.5, 0, 1, &d, &e), 0);
    CHECK(d == 0.5);
    CHECK(!job_param_number_given(p, "empty") && job_param_number_given(p, "s"));
    CHECK_INT(job_param_string(p, "fn", "empty", "def", &s, &e), 0);
    CHECK_STR(s, "");
    CHECK(job_param_present(p, "empty"));
    CHECK_INT(job_param_bool(p, "fn", "empty", true, &b, &e), 0);
    CHECK(!b);
    /* a number whatever its range (which may depend on the image), with job_param_*'s error for
     * anything else: an overflow is a number out of some range, "" and null are no value */
    CHECK_INT(job_param_check_number(p, "fn", "neg", true, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "huge", true, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "hugestr", false, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "empty", false, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "nul", false, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "missing", false, &e), 0);
    CHECK_INT(job_param_check_number(p, "fn", "bad", true, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'bad' for function 'fn': expected a whole number");
    /* blanks alone are no number either (strtod reads none), not 0 */
    CHECK_INT(job_param_check_number(p, "fn", "blank", true, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'blank' for function 'fn': expected a whole number");
    CHECK_INT(job_param_check_number(p, "fn", "inf", false, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'inf' for function 'fn': expected a number");
    CHECK_INT(job_param_check_number(p, "fn", "obj", false, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'obj' for function 'fn': expected a number");
    json_object_put(p);
}

static void test_metadata_options(void)
{
    struct job *j = parse("{\"src\":\"u\",\"get_exif\":\"true\",\"extended_metadata\":true,"
                          "\"hash\":\"crc32\",\"functions\":[{\"name\":\"no_op\"}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL) {
        CHECK(j->get_exif && j->extended_metadata);
        CHECK_STR(j->hash, "crc32");
        CHECK(!j->suppress_auto_orient);
        CHECK_INT(j->n_pre, 0);
    }
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"hash\":\"PHASH_MH\",\"functions\":[{\"name\":\"no_op\"}]}",
                   "hash 'PHASH_MH' is not supported");
    j = parse("{\"src\":\"u\",\"hash\":\"sha1\",\"functions\":[{\"name\":\"no_op\"}]}");
    CHECK(j != NULL && j->error[0] == '\0'); /* left out, as Blitline did */
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"get_exif\":\"maybe\",\"functions\":[{\"name\":\"no_op\"}]}",
                   "Invalid parameter 'get_exif'");
}

/* What Blitline clients send that is not quite what the format says: numbers where strings go
 * (a database id as image_identifier, a number as a header's value), an upload's header as null
 * (Blitline's worker dropped it, as an empty one), pngquant's speed as a string; and what pixq
 * cannot do, refused with a clear error rather than done otherwise. */
static void test_blitline_leniency(void)
{
    struct job *j = parse(
        "{\"src\":\"u\",\"postback_headers\":{\"X-Try\":3},\"functions\":[{\"name\":\"no_op\","
        "\"save\":{\"image_identifier\":12345,\"png_quantize\":\"5\",\"s3_destination\":"
        "{\"bucket\":\"bkt\",\"key\":\"a.png\",\"headers\":{\"x-amz-meta-user\":42,"
        "\"x-amz-meta-ok\":true,\"x-amz-meta-ratio\":1.5,\"x-amz-grant-read\":null}}}},"
        "{\"name\":\"no_op\",\"save\":"
        "{\"image_identifier\":\"z\",\"png_quantize\":\"0\"}}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL && j->error[0] == '\0') {
        const struct job_save *s = j->functions[0].save;
        CHECK_STR(s->image_identifier, "12345");
        CHECK(s->png_quantize);
        CHECK(!j->functions[1].save->png_quantize);
        json_object *v = NULL;
        CHECK(json_object_object_get_ex(s->headers, "x-amz-meta-user", &v) &&
              json_object_is_type(v, json_type_string));
        CHECK_STR(json_object_get_string(v), "42");
        CHECK(json_object_object_get_ex(s->headers, "x-amz-meta-ok", &v));
        CHECK_STR(json_object_get_string(v), "true");
        CHECK(json_object_object_get_ex(s->headers, "x-amz-meta-ratio", &v));
        CHECK_STR(json_object_get_string(v), "1.5");
        CHECK(json_object_object_get_ex(s->headers, "x-amz-grant-read", &v) &&
              json_object_is_type(v, json_type_string)); /* "": the upload goes without it */
        CHECK_STR(json_object_get_string(v), "");
        CHECK(json_object_object_get_ex(j->postback_headers, "X-Try", &v) &&
              json_object_is_type(v, json_type_string));
    }
    job_destroy(j);
    j = parse("{\"src\":\"u\",\"src_type\":\"image\",\"functions\":[{\"name\":\"no_op\"}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    job_destroy(j);
    j = parse("{\"src\":\"u\",\"src_type\":\"smart_image\",\"functions\":[{\"name\":\"no_op\"}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    job_destroy(j);
    expect_invalid(
        "{\"src\":\"u\",\"src_type\":\"burst_pdf\",\"functions\":[{\"name\":\"no_op\"}]}",
        "src_type 'burst_pdf' is not supported (pixq reads images only)");
    expect_invalid("{\"src\":\"u\",\"src_type\":{\"name\":\"multi_page\",\"pages\":[0]},"
                   "\"functions\":[{\"name\":\"no_op\"}]}",
                   "src_type 'multi_page' is not supported");
    expect_invalid("{\"src\":\"u\",\"src_type\":5,\"functions\":[{\"name\":\"no_op\"}]}",
                   "src_type must be a string");
    /* analyses by other services (BLITLINE.md's decisions: out of scope, a clear error), asked
     * for as a JSON boolean or as text; off they are nothing */
    const char *analyses[] = {"get_tika", "detect_faces", "detect_labels", "imagga_tags",
                              "find_on_web"};
    for (size_t i = 0; i < sizeof analyses / sizeof analyses[0]; i++) {
        char text[256], want[160];
        snprintf(want, sizeof want,
                 "%s is not supported (pixq runs no Tika, Rekognition, Imagga or reverse "
                 "image search)",
                 analyses[i]);
        snprintf(text, sizeof text, "{\"src\":\"u\",\"%s\":%s,\"functions\":[]}", analyses[i],
                 i % 2 == 0 ? "true" : "\"true\"");
        expect_invalid(text, want);
        snprintf(text, sizeof text, "{\"src\":\"u\",\"%s\":false,\"functions\":[]}", analyses[i]);
        j = parse(text);
        CHECK(j != NULL && j->error[0] == '\0');
        job_destroy(j);
    }
    expect_invalid(
        "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
        "\"az\",\"azure_destination\":{\"account_name\":\"x\"}}}]}",
        "azure_destination of 'az' is not supported: pixq saves to S3 (s3_destination)");
    expect_invalid(
        "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
        "\"f\",\"ftp_destination\":{\"server\":\"x\"}}}]}",
        "ftp_destination of 'f' is not supported");
    expect_invalid(
        "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
        "\"s\",\"s3_destination\":{\"signed_url\":\"https://x/y?sig\"}}}]}",
        "s3_destination.signed_url of 's' is not supported: give a bucket and a key");
    expect_invalid(
        "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
        "[1]}}]}",
        "Save must have an image_identifier");
    /* a job refused before its saves were read still names a numeric identifier as failed */
    j = parse("{\"src\":\"u\",\"src_type\":\"multi_page\",\"functions\":[{\"name\":\"no_op\","
              "\"save\":{\"image_identifier\":42}}]}");
    CHECK(j != NULL && strstr(j->error, "src_type") != NULL);
    if (j != NULL) {
        json_object *ids = json_object_new_array();
        job_identifiers(j, ids);
        CHECK_STR(json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN), "[\"42\"]");
        json_object_put(ids);
    }
    job_destroy(j);
    /* "&identifier" anywhere in the job: which pre_process outputs must be kept */
    j = parse("{\"src\":\"&a\",\"pre_process\":{\"job\":{\"src\":\"u\",\"functions\":[{\"name\":"
              "\"no_op\",\"save\":{\"image_identifier\":\"a\"}},{\"name\":\"no_op\",\"save\":"
              "{\"image_identifier\":\"b\"}},{\"name\":\"no_op\",\"save\":{\"image_identifier\":"
              "\"c\"}}]}},\"functions\":[{\"name\":\"composite\",\"params\":{\"src\":\"&c\"}}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL) {
        CHECK(job_refers_to(j, "a"));
        CHECK(!job_refers_to(j, "b"));
        CHECK(job_refers_to(j, "c"));
        CHECK(!job_refers_to(j, "&a"));
    }
    job_destroy(j);
}

/* pre_process: one object or an array; nested jobs share the id and the function limit. */
static void test_pre_process(void)
{
    struct job *j =
        parse("{\"src\":\"&pre\",\"pre_process\":[{\"move_original\":{\"s3_destination\":"
              "{\"bucket\":\"bk\",\"key\":\"orig/a.PNG\",\"headers\":{\"X\":\"1\"}}}},"
              "{\"job\":{\"src\":\"http://x/m.png\",\"functions\":[{\"name\":\"resize_to_fit\","
              "\"params\":{\"width\":10},\"save\":{\"image_identifier\":\"pre\"}}]}},"
              "{\"convert_original\":{\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"noext\"}}},"
              "{\"move_original\":{\"s3_destination\":{\"bucket\":\"bk\",\"key\":\"o/u.123\"}}}],"
              "\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"main\"}}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    if (j == NULL) {
        return;
    }
    CHECK_INT(j->n_pre, 4);
    CHECK(j->pre[0].move != NULL && j->pre[0].job == NULL);
    CHECK_STR(j->pre[0].move->bucket, "bk");
    CHECK_STR(j->pre[0].move->format, "png");
    CHECK(j->pre[0].move->headers != NULL);
    CHECK(j->pre[1].job != NULL && j->pre[1].move == NULL);
    CHECK_STR(job_src_url(j->pre[1].job), "http://x/m.png");
    CHECK_STR(j->pre[1].job->functions[0].save->image_identifier, "pre");
    CHECK_STR(j->pre[2].move->format, ""); /* no extension: keep the source's format */
    CHECK_STR(j->pre[3].move->format, ""); /* nor with one that names no image format */
    /* one numbering for the whole job, pre_process first: parked outputs are stored by it */
    CHECK_INT(j->pre[0].move->index, 0);
    CHECK_INT(j->pre[1].job->functions[0].save->index, 1);
    CHECK_INT(j->pre[2].move->index, 2);
    CHECK_INT(j->functions[0].save->index, 4);
    json_object *ids = json_object_new_array();
    job_identifiers(j, ids); /* the main tree's identifiers only */
    CHECK_STR(json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN), "[\"main\"]");
    json_object_put(ids);
    struct buf payload;
    buf_init(&payload, 0);
    struct err e;
    CHECK_INT(job_assign_id(j, &payload, &e), 0);
    CHECK(j->id[0] != '\0');
    CHECK_STR(j->pre[1].job->id, j->id); /* the nested job shares the id */
    buf_finish(&payload);
    job_destroy(j);
}

static void test_pre_process_errors(void)
{
    const char *tail = ",\"functions\":[{\"name\":\"no_op\"}]}";
    char doc[1024];
    static const char *const cases[][2] = {
        {"{\"peek\":true}", "pre_process 'peek' is not supported"},
        {"[{\"job\":{\"src\":\"u\"}}]", "pre_process job: Functions are required"},
        {"{\"job\":5}", "pre_process job must be an object"},
        {"{\"move_original\":{}}", "needs an s3_destination"},
        {"{\"move_original\":{\"s3_destination\":{\"bucket\":\"b\"}}}", "needs a bucket and a key"},
        {"[{\"job\":{},\"move_original\":{}}]", "one key"},
        {"\"x\"", "pre_process must be an object or an array"},
        {"{\"job\":{\"src\":\"u\",\"pre_process\":{\"peek\":1},\"functions\":[{\"name\":\"a\"}]}}",
         "cannot have a pre_process of its own"},
        {"{\"job\":{\"src\":\"u\",\"functions\":[{\"name\":\"a\",\"save\":{}}]}}",
         "Save must have an image_identifier"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(doc, sizeof doc, "{\"src\":\"u\",\"pre_process\":%s%s", cases[i][0], tail);
        expect_invalid(doc, cases[i][1]);
    }
    /* the function limit counts the nested jobs' functions too */
    struct job_limits tight = {limits.max_bytes, limits.max_depth, 2, 0, 0};
    const char *three = "{\"src\":\"u\",\"pre_process\":{\"job\":{\"src\":\"u\",\"functions\":"
                        "[{\"name\":\"a\"},{\"name\":\"b\"}]}},\"functions\":[{\"name\":\"c\"}]}";
    struct err e;
    struct job *j = job_parse(three, strlen(three), &tight, &e);
    CHECK(j != NULL && strstr(j->error, "too many functions") != NULL);
    job_destroy(j);
}

static int collect(void *user, const char *job, size_t len)
{
    json_object *arr = user;
    json_object_array_add(arr, json_object_new_string_len(job, (int)len));
    return json_object_array_length(arr) > 2 ? -1 : 0; /* the third job "fails to queue" */
}

static void test_batch(void)
{
    CHECK(job_is_batch(" \n[{}]", 6));
    CHECK(!job_is_batch("{\"a\":[1]}", 9));
    CHECK(!job_is_batch("   ", 3));
    const char *two = "[{\"src\":\"a\",\"v\":1.20},\n 7]";
    json_object *got = json_object_new_array();
    struct err e = {{0}};
    CHECK_INT(job_split_batch(two, strlen(two), &limits, collect, got, &e), 2);
    CHECK_STR(json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN),
              "[\"{\\\"src\\\":\\\"a\\\",\\\"v\\\":1.20}\",\"7\"]");
    json_object_put(got);
    got = json_object_new_array();
    const char *three = "[{},{},{}]";
    CHECK_INT(job_split_batch(three, strlen(three), &limits, collect, got, &e), -1);
    CHECK(strstr(e.msg, "job 2 of the batch") != NULL);
    json_object_put(got);
    CHECK_INT(job_split_batch("{}", 2, &limits, collect, NULL, &e), -1);
    CHECK(strstr(e.msg, "must be a JSON array") != NULL);
    CHECK_INT(job_split_batch("[1,", 3, &limits, collect, NULL, &e), -1);
    CHECK_STR(e.msg, "job is not valid JSON: unexpected end of input");
    /* what json-c takes besides JSON: its elements written out compact */
    got = json_object_new_array();
    CHECK_INT(job_split_batch("[{'a': 1}, 2,]", 14, &limits, collect, got, &e), 2);
    CHECK_STR(json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN),
              "[\"{\\\"a\\\":1}\",\"2\"]");
    json_object_put(got);
}

/* A Blitline request body, {"json": ...} alone, holds its job or jobs: a job, an array, or
 * their JSON text in a string. */
static void test_request_body(void)
{
    static const struct {
        const char *text;
        int n;
        const char *jobs; /* the texts passed on, as a JSON array */
    } cases[] = {
        {" {\"json\" : {\"src\": \"u\"} }\n", 1, "[\"{\\\"src\\\": \\\"u\\\"}\"]"},
        {"{\"json\":[{\"a\":1},{\"b\":2}]}", 2, "[\"{\\\"a\\\":1}\",\"{\\\"b\\\":2}\"]"},
        {"{\"json\":\"{\\\"src\\\":\\\"u\\\"}\"}", 1, "[\"{\\\"src\\\":\\\"u\\\"}\"]"},
        {"{\"json\":\" [{\\\"a\\\":1},{}]\"}", 2, "[\"{\\\"a\\\":1}\",\"{}\"]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = cases[i].text;
        CHECK(job_is_batch(t, strlen(t)));
        json_object *got = json_object_new_array();
        struct err e = {{0}};
        CHECK_INT(job_split_batch(t, strlen(t), &limits, collect, got, &e), cases[i].n);
        CHECK_STR(json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN), cases[i].jobs);
        json_object_put(got);
    }
    /* a job that has a "json" member among others is a job; so is one a scan does not read */
    static const char *const jobs[] = {
        "{\"json\":{\"src\":\"u\"},\"src\":\"v\"}",
        "{\"src\":\"v\",\"json\":{}}",
        "{\"json\":{}",
        "{\"json\":{}}}",
        "{\"jsonx\":{}}",
        "{'json':{}}",
        "{\"json\" 1}",
    };
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        if (job_is_batch(jobs[i], strlen(jobs[i]))) {
            fprintf(stderr, "  %s: taken for a request body\n", jobs[i]);
            CHECK(false);
        }
    }
    /* a member that holds no job */
    static const char *const empty[] = {"{\"json\":7}", "{\"json\":\"7\"}", "{\"json\":null}"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        struct err e = {{0}};
        CHECK_INT(job_split_batch(empty[i], strlen(empty[i]), &limits, collect, NULL, &e), -1);
        CHECK(strncmp(e.msg, "the \"json\" member of a Blitline request body holds", 50) == 0);
    }
}

static int count_all(void *user, const char *job, size_t len)
{
    size_t *n = user;
    (*n)++;
    return job[len - 1] == '}' || job[len - 1] == ']' || job[len - 1] == '1' ? 0 : -1;
}

/* A batch larger than a job: held to max_batch_bytes, each element as written. */
static void test_large_batch(void)
{
    struct job_limits lim = {20, 4, 100, 0, 4096};
    const char *text = "[ {\"src\": \"http://x/a.jpg\", \"job_id\": \"one\"},\n"
                       "  {\"deep\": [[[[[[[[1]]]]]]]]} ]";
    json_object *got = json_object_new_array();
    struct err e = {{0}};
    CHECK_INT(job_split_batch(text, strlen(text), &lim, collect, got, &e), 2);
    CHECK_STR(json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE),
              "[\"{\\\"src\\\": \\\"http://x/a.jpg\\\", \\\"job_id\\\": \\\"one\\\"}\","
              "\"{\\\"deep\\\": [[[[[[[[1]]]]]]]]}\"]");
    json_object_put(got);
    lim.max_batch_bytes = strlen(text) - 1;
    CHECK_INT(job_split_batch(text, strlen(text), &lim, collect, NULL, &e), -1);
    char want[128];
    snprintf(want, sizeof want,
             "a batch is %zu bytes, more than the limit of %zu (PIXQ_MAX_BATCH_BYTES)",
             strlen(text), strlen(text) - 1);
    CHECK_STR(e.msg, want);
    /* not JSON, past what json-c is given: where it breaks */
    lim.max_batch_bytes = 4096;
    lim.max_bytes = 10;
    size_t n = 0;
    CHECK_INT(job_split_batch("[{\"a\": 1}, {\"b\": x}]", 20, &lim, count_all, &n, &e), -1);
    CHECK_STR(e.msg, "batch is not valid JSON at byte 18 of 20");
    CHECK_INT(job_split_batch("[{\"a\": 1}, {\"b\": 1}", 19, &lim, count_all, &n, &e), -1);
    CHECK_STR(e.msg, "batch is not valid JSON: unexpected end of input");
    CHECK_INT(n, 0); /* nothing passed on of a batch refused */
    /* a job the caller could not queue stops the split */
    const char *three = "[{\"a\": 1}, {}, {\"b\": [1]}, {}]";
    json_object *got3 = json_object_new_array();
    CHECK_INT(job_split_batch(three, strlen(three), &lim, collect, got3, &e), -1);
    CHECK_STR(e.msg, "job 2 of the batch could not be queued");
    CHECK_INT(json_object_array_length(got3), 3);
    json_object_put(got3);
    /* what json-c alone takes: the array one level more than its jobs */
    char lenient[128];
    snprintf(lenient, sizeof lenient, "[{'a': %.3s1%.3s}, 1] /* c */", "[[[", "]]]");
    lim.max_bytes = 100;
    lim.max_depth = 5;
    n = 0;
    CHECK_INT(job_split_batch(lenient, strlen(lenient), &lim, count_all, &n, &e), 2);
    snprintf(lenient, sizeof lenient, "[{'a': %.4s1%.4s}, 1] /* c */", "[[[[", "]]]]");
    CHECK_INT(job_split_batch(lenient, strlen(lenient), &lim, count_all, &n, &e), -1);
    CHECK_STR(e.msg, "a batch nests deeper than 6 levels: its jobs 5 (PIXQ_MAX_JSON_DEPTH), and "
                     "one for the array");
    n = 0;
    lim.max_bytes = 10;
    lim.max_depth = 4;
    /* JOB_MAX_BATCH elements at most, counted before any is passed on */
    char *many = malloc(2 * (JOB_MAX_BATCH + 1) + 2);
    CHECK(many != NULL);
    if (many == NULL) {
        return;
    }
    size_t at = 0;
    many[at++] = '[';
    for (int i = 0; i <= JOB_MAX_BATCH; i++) {
        many[at++] = '1';
        many[at++] = i < JOB_MAX_BATCH ? ',' : ']';
    }
    CHECK_INT(job_split_batch(many, at, &lim, count_all, &n, &e), -1);
    CHECK_STR(e.msg, "a batch holds 1001 jobs, more than the limit of 1000");
    CHECK_INT(n, 0);
    CHECK_INT(job_split_batch(many + 2, at - 2, &lim, count_all, &n, &e), -1); /* "1,1,...]" */
    many[2 * JOB_MAX_BATCH] = ']';
    CHECK_INT(job_split_batch(many, 2 * JOB_MAX_BATCH + 1, &lim, count_all, &n, &e), JOB_MAX_BATCH);
    CHECK_INT(n, JOB_MAX_BATCH);
    free(many);
}

/* A job whose one save has `dest` as s3_destination and `pb` as postback_headers. */
static void expect_guard(const char *dest, const char *pb, const char *fragment)
{
    char text[JOB_HEADER_VALUE_MAX + 4096];
    snprintf(text, sizeof text,
             "{\"src\":\"u\",\"postback_headers\":%s,\"functions\":[{\"name\":\"no_op\","
             "\"save\":{\"image_identifier\":\"i\",\"s3_destination\":%s}}]}",
             pb, dest);
    if (fragment == NULL) {
        struct job *j = parse(text);
        CHECK(j != NULL && j->error[0] == '\0');
        if (j != NULL && j->error[0] != '\0') {
            fprintf(stderr, "  unexpected error: '%s'\n", j->error);
        }
        job_destroy(j);
        return;
    }
    expect_invalid(text, fragment);
}

/* postback_url as Blitline's worker also took it: {"save": {"s3_destination": ...}}. */
static void test_postback_to_s3(void)
{
    struct job *j = parse("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{"
                          "\"bucket\":{\"name\":\"b\",\"location\":\"eu-west-1\"},"
                          "\"key\":\"r/1.json\"}}},\"functions\":[]}");
    CHECK(j != NULL && j->error[0] == '\0' && j->postback_url == NULL && j->postback_save != NULL);
    if (j != NULL && j->postback_save != NULL) {
        CHECK_STR(j->postback_save->bucket, "b");
        CHECK_STR(j->postback_save->location, "eu-west-1");
        CHECK_STR(j->postback_save->key, "r/1.json");
    }
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"postback_url\":{\"save\":{}},\"functions\":[]}",
                   "postback_url must be a URL, or {\"save\": {\"s3_destination\"");
    expect_invalid("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{"
                   "\"bucket\":\"b\"}}},\"functions\":[]}",
                   "needs a bucket and a key");
    j = parse("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{"
              "\"bucket\":\"-b\",\"key\":\"k\"}}},\"functions\":[]}");
    struct err e = {{0}};
    CHECK(j != NULL && job_check_destinations(j, &e) < 0 &&
          strstr(e.msg, "bucket name '-b' is not valid") != NULL);
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"postback_url\":7,\"functions\":[]}",
                   "postback_url must be a string");
    /* the result is JSON: its own type may be given (what pixq sends anyway), not a page's */
    j = parse("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{\"bucket\":"
              "\"b\",\"key\":\"r.json\",\"headers\":{\"Content-Type\":\"Application/JSON; "
              "charset=utf-8\",\"x-amz-acl\":\"private\"}}}},\"functions\":[]}");
    CHECK(j != NULL && j->error[0] == '\0' && j->postback_save != NULL);
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{\"bucket\":"
                   "\"b\",\"key\":\"r.json\",\"headers\":{\"Content-Type\":\"text/html\"}}}},"
                   "\"functions\":[]}",
                   "s3_destination.headers: Content-Type 'text/html' may not come from a job: the "
                   "result is application/json");
    /* an image's output may not be JSON */
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"Content-Type\":"
                 "\"application/json\"}}",
                 "{}", "Content-Type 'application/json' may not come from a job: an output is");
}

static void test_guards(void)
{
    const char *ok_dest = "{\"bucket\":\"b\",\"key\":\"k.png\"}";
    expect_guard(ok_dest, "{\"Authorization\":\"Bearer x\",\"X-Tab\":\"a\\tb\"}", NULL);
    expect_guard(ok_dest, "{\"X-A\":\"1\\r\\nX-B: 2\"}",
                 "postback_headers: header 'X-A' has a forbidden character");
    expect_guard(ok_dest, "{\"X-A\\r\\nX-B\":\"1\"}", "header 'X-A??X-B' has a forbidden");
    expect_guard(ok_dest, "{\"X-A\":\"1\\u0000\"}", "forbidden character");
    expect_guard(ok_dest, "{\"X-A\":\"1\\u0085X-B: 2\"}", "forbidden character"); /* C1 */
    expect_guard(ok_dest, "{\"X-A\":\"\\u00c5\\u00a0\"}", NULL);                  /* past ASCII */
    expect_guard(ok_dest, "{\"X A\":\"1\"}", "forbidden character");
    expect_guard(ok_dest, "{\"X-A\":1}", NULL); /* a number is sent as written */
    struct job *scalars = parse("{\"src\":\"u\",\"postback_headers\":{\"X-N\":1.50,\"X-I\":-42,"
                                "\"X-T\":true,\"X-F\":false},\"functions\":[]}");
    CHECK(scalars != NULL && scalars->error[0] == '\0');
    const char *sent[][2] = {{"X-N", "1.50"}, {"X-I", "-42"}, {"X-T", "true"}, {"X-F", "false"}};
    for (size_t i = 0; scalars != NULL && i < sizeof sent / sizeof sent[0]; i++) {
        json_object *v = NULL;
        CHECK(json_object_object_get_ex(scalars->postback_headers, sent[i][0], &v) &&
              json_object_is_type(v, json_type_string) &&
              strcmp(json_object_get_string(v), sent[i][1]) == 0);
    }
    job_destroy(scalars);
    expect_guard(ok_dest, "{\"X-A\":[1]}", "postback_headers.X-A must be a string");
    expect_guard(ok_dest, "{\"X-A\":null}", "postback_headers.X-A must be a string");
    expect_guard(ok_dest, "[]", "postback_headers must be an object");
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"Cache-Control\":\"a\\nb\"}}", "{}",
                 "s3_destination.headers: header 'Cache-Control' has a forbidden character");
    /* S3 reads header bytes as ISO-8859-1: a UTF-8 value's signature would not match */
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"x-amz-meta-name\":"
                 "\"gro\\u00df.jpg\"}}",
                 "{}",
                 "s3_destination.headers: header 'x-amz-meta-name' has a value that is not ASCII");
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"x-amz-meta-name\":"
                 "\"=?UTF-8?B?Z3Jvw58uanBn?=\"}}",
                 "{}", NULL);
    expect_guard(ok_dest, "{\"X-Name\":\"gro\\u00df\"}", NULL); /* a postback is not signed */
    expect_guard("{\"bucket\":\"b\",\"key\":\"a\\u0001\"}", "{}",
                 "s3_destination of 'i': key 'a?' is not UTF-8 without control characters");
    expect_guard("{\"bucket\":\"b\",\"key\":\"a\\u0000b\"}", "{}", "key has a NUL character");
    expect_guard("{\"bucket\":\"b\",\"key\":\"caf\\u00e9/\\u65e5\\u672c.png\"}", "{}", NULL);
    expect_guard("{\"bucket\":{\"name\":\"b\",\"location\":\"eu-west-1\"},\"key\":\"k\"}", "{}",
                 NULL);
    struct job *empty = parse("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                              "\"image_identifier\":\"i\",\"s3_destination\":{\"bucket\":{"
                              "\"name\":\"b\",\"location\":\"\"},\"key\":\"k\"}}}]}");
    CHECK(empty != NULL && empty->error[0] == '\0' && empty->functions[0].save->location == NULL);
    job_destroy(empty); /* an empty location is none: the remembered region applies */
    expect_guard("{\"bucket\":{\"name\":\"b\",\"location\":\"x.evil/\"},\"key\":\"k\"}", "{}",
                 "bucket location 'x.evil/' is not a region name");
    /* headers that frame the request, or sign or redirect an upload, are pixq's */
    expect_guard(ok_dest, "{\"Content-Length\":\"5\"}",
                 "postback_headers: header 'Content-Length' may not come from a job: it frames "
                 "the request");
    const char *framing[] = {
        "transfer-encoding", "Host",       "Connection",         "Expect", "TE", "Upgrade",
        "Trailer",           "Keep-Alive", "Proxy-Authorization"};
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++) {
        char pb[128], dest[256];
        snprintf(pb, sizeof pb, "{\"%s\":\"x\"}", framing[i]);
        snprintf(dest, sizeof dest, "{\"bucket\":\"b\",\"key\":\"k\",\"headers\":%s}", pb);
        expect_guard(ok_dest, pb, "frames the request");
        expect_guard(dest, "{}", "frames the request");
    }
    const char *s3_only[] = {"Authorization",          "X-Amz-Date",
                             "x-amz-content-sha256",   "x-amz-security-token",
                             "x-amz-copy-source",      "x-amz-copy-source-range",
                             "x-amz-object-lock-mode", "x-amz-website-redirect-location"};
    for (size_t i = 0; i < sizeof s3_only / sizeof s3_only[0]; i++) {
        char dest[160];
        snprintf(dest, sizeof dest, "{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"%s\":\"x\"}}",
                 s3_only[i]);
        expect_guard(dest, "{}", "may not come from a job");
    }
    /* what Blitline's users send: ACLs, grants, metadata, caching */
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"x-amz-acl\":\"public-read\","
                 "\"x-amz-grant-read\":\"\",\"x-amz-meta-a\":\"1\",\"Cache-Control\":\"max-age=1\","
                 "\"Content-Type\":\"image/png\",\"x-amz-storage-class\":\"STANDARD_IA\"}}",
                 "{\"X-Token\":\"t\",\"Content-Type\":\"application/json\"}", NULL);
    /* an upload's Content-Type is an image's (not SVG) or none: never a page a browser runs */
    const char *types_ok[] = {"image/jpeg",
                              "IMAGE/PNG; charset=x",
                              " image/webp ",
                              "image/x-icon",
                              "application/octet-stream",
                              "Binary/Octet-Stream",
                              "",
                              "  "};
    for (size_t i = 0; i < sizeof types_ok / sizeof types_ok[0]; i++) {
        char dest[160];
        snprintf(dest, sizeof dest,
                 "{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"content-type\":\"%s\"}}",
                 types_ok[i]);
        expect_guard(dest, "{}", NULL);
    }
    const char *types_refused[] = {"text/html",
                                   "Text/HTML; charset=utf-8",
                                   "image/svg+xml",
                                   "IMAGE/SVG+XML",
                                   "application/xhtml+xml",
                                   "text/xml",
                                   "application/javascript",
                                   "text/plain",
                                   "image/",
                                   "image/png/../html",
                                   "image/png x",
                                   ";image/png",
                                   "application/octet-stream2"};
    for (size_t i = 0; i < sizeof types_refused / sizeof types_refused[0]; i++) {
        char dest[160];
        snprintf(dest, sizeof dest,
                 "{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"Content-Type\":\"%s\"}}",
                 types_refused[i]);
        expect_guard(dest, "{}", "s3_destination.headers: Content-Type '");
        expect_guard(dest, "{}", "' may not come from a job: an output is an image");
    }
    /* a postback's is the receiver's business */
    expect_guard(ok_dest, "{\"Content-Type\":\"text/html\"}", NULL);
    char many[2048];
    size_t n = (size_t)snprintf(many, sizeof many, "{");
    for (int i = 0; i <= JOB_MAX_HEADERS; i++) {
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"H%d\":\"v\"", i ? "," : "", i);
    }
    snprintf(many + n, sizeof many - n, "}");
    expect_guard(ok_dest, many, "more than 24 headers");
    char name[JOB_HEADER_NAME_MAX + 2], named[JOB_HEADER_NAME_MAX + 64];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* one byte too long: every name a job may give is signed */
    snprintf(named, sizeof named, "{\"x-amz-meta-%s\":\"v\"}", name + 11);
    expect_guard(ok_dest, named, "header name 'x-amz-meta-nnn");
    expect_guard(ok_dest, named, "is longer than 128 bytes");
    snprintf(named, sizeof named, "{\"x-amz-meta-%s\":\"v\"}", name + 12);
    expect_guard(ok_dest, named, NULL);

    struct err e = {{0}};
    char key[JOB_S3_KEY_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    CHECK(job_check_s3_key(NULL, key, &e) < 0);
    CHECK(strstr(e.msg, "not 1025") != NULL);
    key[JOB_S3_KEY_MAX] = '\0';
    CHECK(job_check_s3_key(NULL, key, &e) == 0);
    CHECK(job_check_s3_key(NULL, "", &e) < 0);
    CHECK(job_check_s3_key(NULL, "a\xc3\x28", &e) < 0);         /* bad continuation */
    CHECK(job_check_s3_key(NULL, "a\xc0\xaf", &e) < 0);         /* overlong '/' */
    CHECK(job_check_s3_key(NULL, "a\xed\xa0\x80", &e) < 0);     /* surrogate */
    CHECK(job_check_s3_key(NULL, "a\xf4\x90\x80\x80", &e) < 0); /* beyond U+10FFFF */
    CHECK(job_check_s3_key(NULL, "a\xc2\x85", &e) < 0);         /* U+0085, a C1 control */
    CHECK(job_check_s3_key(NULL, "a\x7f", &e) < 0);
    CHECK(job_check_s3_key(NULL, "\xf0\x9f\x96\xbc.png", &e) == 0); /* U+1F5BC */
    /* "." and ".." segments: a path to another bucket on stores that resolve it */
    const char *dots[] = {"../other/k.png", "a/../k.png", "./k.png", "a/./k.png",
                          "a/..",           "a/.",        ".",       ".."};
    for (size_t i = 0; i < sizeof dots / sizeof dots[0]; i++) {
        CHECK(job_check_s3_key(NULL, dots[i], &e) < 0);
        CHECK(strstr(e.msg, "segment") != NULL);
    }
    const char *fine[] = {"a..b.png", ".hidden.png", "a/.x/k.png", "a/..b/k",
                          "...",      "a//b.png",    "/lead.png",  "trail/"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        CHECK(job_check_s3_key(NULL, fine[i], &e) == 0);
    }
    CHECK(job_check_s3_object("pixq-test", NULL, "k", &e) == 0);
    CHECK(job_check_s3_object("Legacy_Bucket", NULL, "k", &e) == 0); /* us-east-1, pre-2018 */
    CHECK(job_check_s3_object("Bad_Bucket_", NULL, "k", &e) < 0);
    CHECK(strstr(e.msg, "bucket name 'Bad_Bucket_' is not valid") != NULL);
    CHECK(job_check_s3_object("bad/bucket", NULL, "k", &e) < 0);
    CHECK(job_check_s3_object(NULL, NULL, "k", &e) < 0);

    struct job *j =
        parse("{\"src\":\"u\",\"pre_process\":[{\"move_original\":{\"s3_destination\":"
              "{\"bucket\":\"b\",\"key\":\"o.png\"}}},{\"job\":{\"src\":\"u\","
              "\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"p\"}}]}}],"
              "\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"a\"},"
              "\"functions\":[{\"name\":\"no_op\",\"save\":{\"image_identifier\":\"b\"}},"
              "{\"name\":\"no_op\"}]}]}");
    CHECK(j != NULL && j->error[0] == '\0');
    CHECK_INT(j != NULL ? job_count_saves(j) : 0, 4);
    job_destroy(j);
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":"
                   "{\"image_identifier\":\"a\\nb\"}}]}",
                   "image_identifier of function 'no_op' must be UTF-8 without control");
}

/* job_assign_id() on `j` writes `before`, `"job_id":"<id>"` and `after`; frees `j`. */
static void expect_assigned(struct job *j, const char *before, const char *after)
{
    CHECK(j != NULL);
    if (j == NULL) {
        return;
    }
    struct buf payload;
    buf_init(&payload, 0);
    struct err e = {{0}};
    CHECK_INT(job_assign_id(j, &payload, &e), 0);
    char want[256];
    snprintf(want, sizeof want, "%s\"job_id\":\"%s\"%s", before, j->id, after);
    CHECK_STR(payload.data, want);
    buf_finish(&payload);
    job_destroy(j);
}

/* job_assign_id() then job_set_attempt() on `text`: the payloads they write are `before`, then
 * `sep` (a comma, or none), the members pixq writes, and `after`. */
static void expect_rewrites(const char *text, size_t max_bytes, const char *before, const char *sep,
                            const char *after)
{
    const struct job_limits lim = {max_bytes, 32, 100, JOB_OWN_BYTES, 0};
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &lim, &e);
    CHECK(j != NULL && !j->salvaged);
    if (j == NULL) {
        return;
    }
    struct buf payload;
    buf_init(&payload, 0);
    CHECK_INT(job_assign_id(j, &payload, &e), 0);
    char with_id[1024];
    snprintf(with_id, sizeof with_id, "%s%s\"job_id\":\"%s\"%s", before, sep, j->id, after);
    CHECK_STR(payload.data, with_id);
    for (long attempt = 2; attempt <= 12; attempt += 10) {
        CHECK_INT(job_set_attempt(j, attempt, &payload, &e), 0);
        char want[1024];
        snprintf(want, sizeof want, "%s%s\"job_id\":\"%s\",\"pixq_attempt\":%ld%s", before, sep,
                 j->id, attempt, after);
        CHECK_STR(payload.data, want);
        CHECK_STR(j->text, want);
        struct job *again = job_parse(payload.data, payload.len, &lim, &e); /* within the room */
        CHECK(again != NULL && !again->salvaged && strcmp(again->id, j->id) == 0);
        json_object *a = NULL;
        CHECK(again != NULL && json_object_object_get_ex(again->root, "pixq_attempt", &a) &&
              json_object_get_int64(a) == attempt);
        job_destroy(again);
    }
    CHECK_INT(job_text_afresh(j, &payload), 0); /* the run number off again */
    CHECK_STR(payload.data, with_id);
    buf_finish(&payload);
    job_destroy(j);
}

/* What the worker writes into a payload (a job_id, its run number) is written into the client's
 * bytes, which stay as they were: json-c would write again, escaped and six times as long, a raw
 * control character it took, and a job at the limit would be over it from its second run. */
static void test_rewrites(void)
{
    char raw[256];
    snprintf(raw, sizeof raw, "{\"src\":\"u\",\"functions\":[],\"note\":\"%s\"}",
             "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\n\t");
    char before[256];
    snprintf(before, sizeof before, "%.*s", (int)strlen(raw) - 1, raw);
    expect_rewrites(raw, strlen(raw), before, ",", "}");
    /* blanks after the object kept */
    expect_rewrites("{\"src\":\"u\",\"functions\":[]}\n", 250000, "{\"src\":\"u\",\"functions\":[]",
                    ",", "}\n");
    /* what json-c alone takes (a trailing comma, a comment that may hold the last '}'): the job
     * written out by json-c, then as JSON */
    expect_rewrites("{\"src\": \"u\", \"functions\": [],}", 250000,
                    "{\"src\":\"u\",\"functions\":[]", ",", "}");
    expect_rewrites("{\"src\": \"u\", \"functions\": []} //}", 250000,
                    "{\"src\":\"u\",\"functions\":[]", ",", "}");
    /* a job_id refused: the new one after it, where json-c reads it */
    expect_rewrites("{\"job_id\":\"bad id\",\"src\":\"u\",\"functions\":[]}", 250000,
                    "{\"job_id\":\"bad id\",\"src\":\"u\",\"functions\":[]", ",", "}");
    /* a comment after the object: json-c writes the job out */
    struct err e = {{0}};
    const char *commented = "{\"src\":\"u\",\"functions\":[]} /* c */";
    struct job *j = job_parse(commented, strlen(commented), &limits, &e);
    expect_assigned(j, "{\"src\":\"u\",\"functions\":[],", "}");
    /* a member the client wrote last is not taken for pixq's: a string, not its number */
    const char *own = "{\"job_id\":\"c\",\"src\":\"u\",\"functions\":[],\"pixq_attempt\":\"xy\"}";
    j = job_parse(own, strlen(own), &limits, &e);
    CHECK(j != NULL);
    if (j != NULL) {
        struct buf payload;
        buf_init(&payload, 0);
        CHECK_INT(job_set_attempt(j, 2, &payload, &e), 0);
        CHECK_STR(payload.data,
                  "{\"job_id\":\"c\",\"src\":\"u\",\"functions\":[],\"pixq_attempt\":\"xy\","
                  "\"pixq_attempt\":2}");
        buf_finish(&payload);
        job_destroy(j);
    }
}

/* jscan_members() on the `len` bytes of `text`, copied to a buffer of that size (no NUL after
 * them, so that a read past the end is one for the sanitizers): where the object starts, or -1
 * when it is not one; the value of member `name` in `value`. */
static int scan_bytes(const char *text, size_t len, const char *name, char *value, size_t cap)
{
    struct jscan_member m[] = {{.name = name}};
    size_t open = 0;
    value[0] = '\0';
    char *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        return -1;
    }
    memcpy(exact, text, len);
    int rc = jscan_members(exact, len, m, 1, &open);
    if (rc == 0) {
        snprintf(value, cap, "%.*s", (int)m[0].len, exact + m[0].at);
    }
    free(exact);
    return rc < 0 ? -1 : (int)open;
}

static int scan_member(const char *text, const char *name, char *value, size_t cap)
{
    return scan_bytes(text, strlen(text), name, value, cap);
}

static void expect_member(const char *text, const char *name, const char *want)
{
    char got[256];
    int open = scan_member(text, name, got, sizeof got);
    CHECK(open >= 0);
    CHECK_STR(got, want);
}

static void test_scan(void)
{
    char v[256];
    expect_member("{\"a\":1,\"b\":[{\"c\":\"}\"}],\"a\":\"x\\\"y\"}", "a", "\"x\\\"y\""); /* last */
    expect_member("{\"a\":1,\"b\":[{\"c\":\"}\"}],\"a\":\"x\"}", "b", "[{\"c\":\"}\"}]");
    expect_member("{\"x\":{\"job_id\":\"n\"},\"y\":[\"job_id\"]}", "job_id", ""); /* nested */
    expect_member("{\"job\\u005fid\":\"q\"}", "job_id", "\"q\""); /* json-c decodes names */
    expect_member("{\"job_\\u0000x\":7}", "job_", "7");           /* and ends them at a NUL */
    expect_member("{\"job_id\\t\":7}", "job_id", "");
    expect_member("{ \"v\" : -1.5e+3 , \"w\":[true,false,null,{}],\"z\":{}}", "v", "-1.5e+3");
    expect_member("{\"v\":\"\\u00e9\\n\\/\"}", "v", "\"\\u00e9\\n\\/\"");
    CHECK_INT(scan_member(" \n{\"a\":0}\r\n", "a", v, sizeof v), 2);
    CHECK_STR(v, "0");
    CHECK_INT(scan_member("{}", "a", v, sizeof v), 0);
    /* raw control characters in a string, as json-c takes them; not a NUL, where it stops */
    expect_member("{\"a\":\"\x01\t\n\x1f\"}", "a", "\"\x01\t\n\x1f\"");
    CHECK(scan_bytes("{\"a\":\"x\0y\"}", 11, "a", v, sizeof v) < 0);
    CHECK(scan_bytes("{\"a\":1}\0", 8, "a", v, sizeof v) < 0);
    const char *bad[] = {"",
                         "{",
                         "[1]",
                         "\"s\"",
                         "{\"a\":1,}",
                         "{'a':1}",
                         "{\"a\":1} x",
                         "{\"a\":[}",
                         "{\"a\":01}",
                         "{\"a\":\"\x01\"",
                         "{\"a\":tru}",
                         "{\"a\" 1}",
                         "{\"a\":1}}",
                         "/*c*/{}",
                         "{\"a\":1.}",
                         "{\"a\":-}",
                         "{\"a\":\"\\u12G4\"}",
                         "{\"a\":\"\\x\"}",
                         "{\"a\":[1,]}",
                         "{\"a\":1,\"b\"}",
                         "{1:2}",
                         "{\"a\":[1 2]}",
                         "{\"a\":NaN}",
                         "{\"a\":\"x}",
                         "{\"a\":{\"b\":1]}",
                         "{\"a\":1}{}",
                         "{\"a\":+1}",
                         "{\"a\":1e}",
                         "{\"a\":.5}",
                         "{\"a\":\"\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(scan_member(bad[i], "a", v, sizeof v) < 0);
    }
    /* 100000 levels of nesting, closed as they opened: an object all the same */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 32);
    CHECK(deep != NULL);
    if (deep == NULL) {
        return;
    }
    char *at = deep + sprintf(deep, "{\"a\":");
    memset(at, '[', depth);
    memset(at + depth, ']', depth);
    sprintf(at + 2 * depth, ",\"b\":2}");
    expect_member(deep, "b", "2");
    at[depth] = '}'; /* an array closed as an object */
    CHECK(scan_member(deep, "b", v, sizeof v) < 0);
    free(deep);
}

static struct job *parse_limited(const char *text, size_t max_bytes, struct err *e)
{
    const struct job_limits small = {max_bytes, 32, 100, 0, 0};
    *e = (struct err){{0}};
    return job_parse(text, strlen(text), &small, e);
}

/* A payload over the limits that is a JSON object all the same: its failure still reaches its
 * postback_url, under its job_id, or one written into the payload. */
static void test_salvage(void)
{
    struct err e;
    char deep[512];
    snprintf(deep, sizeof deep,
             "{\"job_id\":\"d1\",\"postback_url\":\"http://pb/x\",\"postback_headers\":"
             "{\"X-T\":\"1\"},\"v\":1.22,\"src\":\"http://x/a.jpg\",\"functions\":[{\"name\":"
             "\"no_op\",\"save\":{\"image_identifier\":\"t\"},\"params\":{\"a\":%.40s%.40s}}]}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    struct job *j = parse_limited(deep, 250000, &e);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK(j->salvaged);
        CHECK_STR(j->error, "job nests deeper than 32 levels (PIXQ_MAX_JSON_DEPTH)");
        CHECK_STR(j->id, "d1");
        CHECK_STR(j->postback_url, "http://pb/x");
        CHECK_STR(json_object_get_string(json_object_object_get(j->postback_headers, "X-T")), "1");
        CHECK(j->v > 1.21 && j->v < 1.23);
        CHECK(j->n_functions == 0 && job_src_url(j) == NULL); /* nothing else is read */
        json_object *ids = json_object_new_array();
        job_identifiers(j, ids);
        CHECK_INT(json_object_array_length(ids), 0);
        json_object_put(ids);
        job_destroy(j);
    }
    /* too large, with no job_id: one is written in as its last member, the rest as it was */
    const char *big =
        " {\"src\":\"http://x/a.jpg\",\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\","
        "\"functions\":[{\"postback_url\":\"http://inner/\"}],"
        "\"postback_url\":\"http://pb/first\",\"postback_url\":\"http://pb/y\"}";
    j = parse_limited(big, 100, &e);
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK(j->salvaged);
        CHECK_STR(j->postback_url, "http://pb/y"); /* the last, and not a nested one */
        char want[128];
        snprintf(want, sizeof want,
                 "job is %zu bytes, more than the limit of 100 "
                 "(PIXQ_MAX_JOB_BYTES)",
                 strlen(big));
        CHECK_STR(j->error, want);
        CHECK_STR(j->id, "");
        struct buf payload;
        buf_init(&payload, 0);
        CHECK_INT(job_assign_id(j, &payload, &e), 0);
        char whole[512];
        snprintf(whole, sizeof whole, "%.*s,\"job_id\":\"%s\"}", (int)strlen(big) - 1, big, j->id);
        CHECK_STR(payload.data, whole);
        CHECK_STR(j->text, whole);
        struct job *again = parse_limited(payload.data, 100, &e);
        CHECK(again != NULL && again->salvaged && strcmp(again->id, j->id) == 0);
        job_destroy(again);
        buf_finish(&payload);
        job_destroy(j);
    }
    /* a job_id refused, or null: the new one after it, where json-c reads it (the last of a
     * name); the payload is as large and as deep as before, and salvaged again */
    const char *ids[] = {"\"bad id!\"", "null", "[1]"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "{\"job_id\":%s,\"postback_url\":\"http://pb/z\",\"padding\":\"%080d\"}", ids[i],
                 0);
        j = parse_limited(text, 100, &e);
        CHECK(j != NULL && j->salvaged && j->id[0] == '\0');
        if (j == NULL) {
            continue;
        }
        struct buf payload;
        buf_init(&payload, 0);
        CHECK_INT(job_assign_id(j, &payload, &e), 0);
        char want[512];
        snprintf(want, sizeof want, "%.*s,\"job_id\":\"%s\"}", (int)strlen(text) - 1, text, j->id);
        CHECK_STR(payload.data, want);
        struct job *again = parse_limited(payload.data, 100, &e);
        CHECK(again != NULL && again->salvaged && strcmp(again->id, j->id) == 0);
        job_destroy(again);
        buf_finish(&payload);
        job_destroy(j);
    }
    /* a job_id of id characters, too long, last: not taken for one pixq wrote (written over, the
     * payload would fit the limit again, and run) */
    char long_id[512];
    snprintf(long_id, sizeof long_id, "{\"postback_url\":\"http://pb/z\",\"job_id\":\"%0200d\"}",
             7);
    j = parse_limited(long_id, 230, &e);
    CHECK(j != NULL && j->salvaged && j->id[0] == '\0');
    if (j != NULL) {
        struct buf payload;
        buf_init(&payload, 0);
        CHECK_INT(job_assign_id(j, &payload, &e), 0);
        struct job *again = parse_limited(payload.data, 230, &e);
        CHECK(again != NULL && again->salvaged && strcmp(again->id, j->id) == 0);
        CHECK(strstr(payload.data, "\"job_id\":\"0000") != NULL);
        job_destroy(again);
        buf_finish(&payload);
        job_destroy(j);
    }
    /* "{}" over a limit of 1 byte: the id is its only member */
    j = parse_limited("{ }", 1, &e);
    CHECK(j != NULL && j->salvaged && j->postback_url == NULL);
    expect_assigned(j, "{ ", "}");
    /* postback_url {"save": ...} is read as any job's */
    j = parse_limited("{\"postback_url\":{\"save\":{\"s3_destination\":{\"bucket\":\"b\","
                      "\"key\":\"r.json\"}}},\"padding\":\"0123456789012345678901234567890\"}",
                      60, &e);
    CHECK(j != NULL && j->salvaged && j->postback_save != NULL);
    if (j != NULL && j->postback_save != NULL) {
        CHECK_STR(j->postback_save->key, "r.json");
    }
    job_destroy(j);
    /* not salvaged: not one JSON object, or a postback member over the limits itself */
    const char *lost[] = {
        "[{\"postback_url\":\"http://pb/\"},\"0123456789012345678901234567890123456789\"]",
        "{\"postback_url\":\"http://pb/\",\"padding\":\"012345678901234567890123456789\" x",
        "{\"postback_url\":\"http://pb/\",'padding':\"012345678901234567890123456789\"}",
        "{\"postback_url\":\"http://pb/\",\"padding\":\"012345678901234567890123456789\",}",
    };
    for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++) {
        j = parse_limited(lost[i], 40, &e);
        CHECK(j == NULL);
        CHECK(strstr(e.msg, "more than the limit of 40 (PIXQ_MAX_JOB_BYTES)") != NULL);
        job_destroy(j);
    }
    char headers[512];
    snprintf(headers, sizeof headers,
             "{\"postback_url\":\"http://pb/\",\"postback_headers\":%.40s%.40s}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    j = parse_limited(headers, 250000, &e);
    CHECK(j == NULL);
    CHECK_STR(e.msg, "job nests deeper than 32 levels (PIXQ_MAX_JSON_DEPTH)");
    job_destroy(j);
    /* up to JOB_SALVAGE_MAX bytes are scanned */
    size_t cap = (size_t)JOB_SALVAGE_MAX + 2;
    char *huge = malloc(cap);
    CHECK(huge != NULL);
    if (huge != NULL) {
        int head = snprintf(huge, cap,
                            "{\"postback_url\":\"http://pb/\",\"content_type_json\":"
                            "true,\"p\":\"");
        memset(huge + head, 'x', cap - (size_t)head);
        memcpy(huge + JOB_SALVAGE_MAX - 2, "\"}", 3);
        j = job_parse(huge, (size_t)JOB_SALVAGE_MAX, &limits, &e);
        CHECK(j != NULL && j->salvaged && j->text_len == (size_t)JOB_SALVAGE_MAX);
        CHECK(j != NULL && json_object_object_get(j->root, "content_type_json") != NULL);
        job_destroy(j);
        memcpy(huge + JOB_SALVAGE_MAX - 2, "x\"}", 4);
        j = job_parse(huge, (size_t)JOB_SALVAGE_MAX + 1, &limits, &e);
        CHECK(j == NULL && strstr(e.msg, "PIXQ_MAX_JOB_BYTES") != NULL);
        job_destroy(j);
        free(huge);
    }
    /* a member as deep as the limit allows of a whole job is one level too deep in it */
    char id_deep[256];
    snprintf(id_deep, sizeof id_deep, "{\"job_id\":%.32s%.32s,\"postback_url\":\"http://pb/\"}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    j = parse_limited(id_deep, 250000, &e);
    CHECK(j == NULL);
    CHECK_STR(e.msg, "job nests deeper than 32 levels (PIXQ_MAX_JSON_DEPTH)");
    job_destroy(j);
    /* nests too deep and is not JSON past that: not an object one can read */
    snprintf(deep, sizeof deep, "{\"postback_url\":\"http://pb/\",\"a\":%.40s",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    j = parse_limited(deep, 250000, &e);
    CHECK(j == NULL);
    job_destroy(j);
}

/* What a recorder got: the last report and how many. */
struct recorded {
    struct job_param_desc last;
    char def[32];
    int n;
};

static void on_record(void *user, const struct job_param_desc *d)
{
    struct recorded *r = user;
    r->last = *d;
    snprintf(r->def, sizeof r->def, "%s", d->def != NULL ? d->def : "(none)");
    r->n++;
}

/* With a recorder, job_param_*() report what they would read and succeed with the default (a
 * number's within its range), whatever the params hold; without one, nothing changed. */
static void test_recorder(void)
{
    struct err e = {{0}};
    json_object *p = json_tokener_parse("{\"n\": \"bad\"}");
    struct recorded r = {0};
    long l = 0;
    double d = 0;
    const char *s = "x";
    job_param_record(on_record, &r, true);
    CHECK(job_param_recording());
    CHECK_INT(job_param_long(p, "fn", "n", 3, 1, 10, &l, &e), 0);
    CHECK_INT(l, 3);
    CHECK_STR(r.last.type, "integer");
    CHECK_STR(r.def, "3");
    CHECK(r.last.ranged && r.last.min == 1.0 && r.last.max == 10.0 && !r.last.required);
    /* a default out of the range stands for "absent" (the image's size...): reported as none */
    CHECK_INT(job_param_long(p, "fn", "n", 0, 1, 10, &l, &e), 0);
    CHECK_INT(l, 1);
    CHECK_STR(r.def, "(none)");
    CHECK_INT(job_param_double(p, "fn", "d", 2.5, 0, 1, &d, &e), 0);
    CHECK(d == 1.0);
    CHECK_STR(r.def, "(none)");
    CHECK_INT(job_param_double(p, "fn", "d", 0.5, 0, 1, &d, &e), 0);
    CHECK_STR(r.def, "0.5");
    CHECK_INT(job_param_long(p, "fn", "n", 10, 1, 10, &l, &e), 0); /* the bounds are in it */
    CHECK_STR(r.def, "10");
    CHECK_INT(job_param_string(p, "fn", "s", NULL, &s, &e), 0);
    CHECK(s == NULL);
    CHECK_STR(r.def, "(none)");
    CHECK_INT(job_param_required(p, "fn", "gone", true, &e), 0);
    CHECK(r.last.required && strcmp(r.last.name, "gone") == 0);
    CHECK_INT(job_param_check_number(p, "fn", "n", true, &e), 0);
    CHECK(r.last.image_range);
    job_param_declare("fn", "n", "thing", "a note");
    CHECK(r.last.declared && strcmp(r.last.note, "a note") == 0);
    job_param_declare("fn", "n", NULL, "a note");
    CHECK(!r.last.declared);
    job_param_alias("fn", "n", "N");
    CHECK_STR(r.last.alias, "N");
    CHECK(job_param_present(p, "zz") && job_param_number_given(p, "zz"));
    job_param_record(on_record, &r, false);
    CHECK(!job_param_present(p, "n") && !job_param_number_given(p, "n"));
    job_param_record(NULL, NULL, false);
    int n = r.n;
    CHECK(!job_param_recording());
    CHECK_INT(job_param_long(p, "fn", "n", 0, 1, 10, &l, &e), -1);
    CHECK_INT(job_param_required(p, "fn", "gone", false, &e), -1);
    CHECK_STR(e.msg, "Missing parameter 'gone' for function 'fn'");
    CHECK_INT(job_param_required(p, "fn", "n", false, &e), 0);
    /* "" is a parameter given, but no number */
    json_object *empty = json_tokener_parse("{\"w\": \"\"}");
    CHECK_INT(job_param_required(empty, "fn", "w", false, &e), 0);
    CHECK_INT(job_param_required(empty, "fn", "w", true, &e), -1);
    json_object_put(empty);
    job_param_declare("fn", "n", "thing", NULL);
    CHECK_INT(r.n, n);
    json_object_put(p);
}

/* `text` with its single quotes made double ones, so that a job reads in a C string. */
static const char *dq(const char *text)
{
    static char out[4096];
    snprintf(out, sizeof out, "%s", text);
    for (char *p = out; *p != '\0'; p++) {
        *p = *p == '\'' ? '"' : *p;
    }
    return out;
}

/* Jobs (single-quoted) and what job_parse() says of them: NULL when valid, else a part of the
 * error. */
static void test_validation_table(void)
{
    static const char *const cases[][2] = {
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i','s3_destination':"
         "{'bucket':'b','key':''}}}]}",
         "s3_destination of 'i' needs a bucket and a key"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i','s3_destination':"
         "{'bucket':'b','key':'k','headers':['x']}}}]}",
         "s3_destination.headers of 'i' must be an object"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'encoding_options':['lossless']}}]}",
         "encoding_options of 'i' must be an object"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'encoding_options':{'':1}}}]}",
         "encoding_options of 'i': '' is not a setting name (a-z 0-9 - _, at most 32)"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'encoding_options':{'Lossless':1}}}]}",
         "'Lossless' is not a setting name"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'encoding_options':{'lossless':'true','alpha-q':50,'a_b':true,'x9':null}}}]}",
         NULL},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':''}}]}",
         "Save must have an image_identifier (function 'a')"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'signed_destination':{'signed_url':'https://x/y'}}}]}",
         "signed_destination of 'i' is not supported: pixq saves to S3"},
        /* tags are no matter in a save that writes nothing */
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i','skip':true,"
         "'set_exif':{'NoSuchTag':'x'}}}]}",
         NULL},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'set_exif':{'NoSuchTag':'x'}}}]}",
         "set_exif of 'i'"},
        {"{'src':'u','functions':[{'name':'','params':{}}]}",
         "a function has no name (functions[0])"},
        {"{'src':'u','functions':[{'name':'a'},{'name':'b','functions':[{'name':'c'},7]}]}",
         "each function must be an object (functions[1].functions[1] is int)"},
        {"{'src':'u','functions':[{'name':'a','functions':[{'name':'b'},{'name':'c',"
         "'functions':[{'name':'d'},{'name':'e'},{'params':{}}]}]}]}",
         "a function has no name (functions[0].functions[1].functions[2])"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
         "'max_filesize':-1}}]}",
         "Invalid parameter 'max_filesize' of the save of 'i': -1 is out of range"},
        {"{'src':'u','job_id':'a:b.c_d-1','functions':[]}", NULL},
        /* 64 characters, cut at 64: no "..." */
        {"{'src':'u','job_id':'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!',"
         "'functions':[]}",
         "aaa!' must be 1-127 characters"},
        {"{'src':'u','pixq_upload':1,'functions':[]}", "'pixq_upload' is pixq's own"},
        {"{'src':'u','pixq_postback':1,'functions':[]}", "'pixq_postback' is pixq's own"},
        {"{'src':'u','pixq_poison':1,'functions':[]}", "'pixq_poison' is pixq's own"},
        {"{'src':'u','pixq_wake':1,'functions':[]}",
         "'pixq_wake' is pixq's own: a job may not carry it"},
        {"{'src':'u','v':100,'functions':[]}", NULL},
        {"{'src':'u','v':100.5,'functions':[]}",
         "Invalid parameter 'v' for function 'job': 100.5 is out of range [0, 100]"},
        {"{'src':'u','hash':'Phash_Dct','functions':[]}",
         "hash 'Phash_Dct' is not supported (pixq computes md5, sha256 and crc32)"},
        {"{'src':{'name':'s3','bucket':'b','key':'k.jpg'},'functions':[]}", NULL},
        {"{'src':'u','pre_process':[{}],'functions':[]}",
         "each pre_process step must be an object with one key"},
        {"{'src':'u','functions':[{'name':'a','functions':{'name':'b'}}]}",
         "functions must be an array (functions[0].functions)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i][1] != NULL) {
            expect_invalid(dq(cases[i][0]), cases[i][1]);
            continue;
        }
        struct job *j = parse(dq(cases[i][0]));
        CHECK(j != NULL && j->error[0] == '\0');
        if (j != NULL && j->error[0] != '\0') {
            fprintf(stderr, "  case %zu: unexpected error '%s'\n", i, j->error);
        }
        job_destroy(j);
    }
}

/* Where an error places a function nested deeper than the 16 levels it names: the first 16,
 * then "...". */
static void test_deep_function_place(void)
{
    char text[2048] = "{\"src\":\"u\",\"functions\":[";
    for (int i = 0; i < 20; i++) {
        strcat(text, "{\"name\":\"a\",\"functions\":[");
    }
    strcat(text, "{\"params\":{}}");
    for (int i = 0; i < 20; i++) {
        strcat(text, "]}");
    }
    strcat(text, "]}");
    const struct job_limits deep = {250000, 64, 100, 0, 0};
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &deep, &e);
    CHECK(j != NULL);
    char want[1024] = "a function has no name (functions[0]";
    for (int i = 1; i < 16; i++) {
        strcat(want, ".functions[0]");
    }
    strcat(want, "...)");
    if (j != NULL) {
        CHECK_STR(j->error, want);
    }
    job_destroy(j);
}

/* A job of one function whose save is `save` (single-quoted), valid; NULL if it is not. */
static struct job *parse_save(const char *save, const char *top)
{
    char text[2048];
    snprintf(text, sizeof text, "{'src':'u',%s'functions':[{'name':'a','save':%s}]}", top, save);
    struct job *j = parse(dq(text));
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL && j->error[0] != '\0') {
        fprintf(stderr, "  unexpected error '%s'\n", j->error);
        job_destroy(j);
        return NULL;
    }
    return j;
}

/* What a save and a job are when they say nothing: pixq's defaults (BLITLINE.md). */
static void test_defaults(void)
{
    struct job *j = parse_save("{'image_identifier':'i'}", "");
    if (j != NULL) {
        const struct job_save *s = j->functions[0].save;
        CHECK_INT(s->quality, 0); /* the deployment's */
        CHECK(!s->skip && !s->check_blank && !s->save_metadata && !s->png_quantize);
        CHECK(s->save_profiles); /* as v 1.21 */
        CHECK_INT(s->max_filesize, 0);
        CHECK(s->interlace == NULL && s->encoding_options == NULL && s->set_exif == NULL);
        CHECK(!s->return_keys && s->bucket == NULL && s->key == NULL);
        CHECK(j->v == 1.21);
        CHECK(!j->get_exif && !j->extended_metadata && !j->include_iptc);
        CHECK(!j->suppress_auto_orient && j->hash == NULL && j->postback_url == NULL);
        CHECK_INT(job_attempt(j), 1);
    }
    job_destroy(j);
    /* colour profiles kept from v 1.20 on, unless the save says not */
    j = parse_save("{'image_identifier':'i','s3_destination':{'bucket':'b','key':'k'}}", "");
    CHECK(j != NULL && !j->functions[0].save->return_keys);
    job_destroy(j);
    j = parse_save("{'image_identifier':'i'}", "'v':'1.19',");
    CHECK(j != NULL && !j->functions[0].save->save_profiles);
    job_destroy(j);
    j = parse_save("{'image_identifier':'i'}", "'v':1.20,");
    CHECK(j != NULL && j->functions[0].save->save_profiles);
    job_destroy(j);
    j = parse_save("{'image_identifier':'i','save_profiles':'false'}", "");
    CHECK(j != NULL && !j->functions[0].save->save_profiles);
    job_destroy(j);
    j = parse_save("{'image_identifier':'i','s3_destination':{'bucket':'b','key':'k.png',"
                   "'return_keys':'true'},'encoding_options':{'lossless':'true'},"
                   "'max_filesize':5000,'interlace':'PlaneInterlace'}",
                   "'include_iptc':true,'pixq_attempt':3,");
    if (j != NULL) {
        const struct job_save *s = j->functions[0].save;
        CHECK(s->return_keys && s->encoding_options != NULL);
        CHECK_INT(s->max_filesize, 5000);
        CHECK_STR(s->interlace, "PlaneInterlace");
        CHECK(j->include_iptc);
        CHECK_INT(job_attempt(j), 3);
    }
    job_destroy(j);
    /* a run number below 1 is the first run */
    j = parse_save("{'image_identifier':'i'}", "'pixq_attempt':0,");
    CHECK_INT(j != NULL ? job_attempt(j) : 0, 1);
    job_destroy(j);
    j = parse_save("{'image_identifier':'i'}", "'pixq_attempt':-4,");
    CHECK_INT(j != NULL ? job_attempt(j) : 0, 1);
    job_destroy(j);
    /* force_type: the destination's, then the save's, over the key's extension */
    j = parse_save("{'image_identifier':'i','force_type':'gif','s3_destination':{'bucket':'b',"
                   "'key':'k.png'}}",
                   "");
    CHECK_STR(j != NULL ? j->functions[0].save->format : "", "gif");
    job_destroy(j);
    j = parse_save("{'image_identifier':'i','force_type':'gif','s3_destination':{'bucket':'b',"
                   "'key':'k.png','force_type':'webp'}}",
                   "");
    CHECK_STR(j != NULL ? j->functions[0].save->format : "", "webp");
    job_destroy(j);
    /* a force_type or extension that names no format is refused, not passed over */
    const char *odd[][2] = {{"'force_type':'image/png'", "'image/png'"},
                            {"'extension':'a/b'", "'a/b'"},
                            {"'force_type':'png.'", "'png.'"},
                            {"'force_type':'portablenetworkgraphics'", "'portablenetwork'"}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',%s,"
                 "'s3_destination':{'bucket':'b','key':'k'}}}]}",
                 odd[i][0]);
        char want[64];
        snprintf(want, sizeof want, "Unsupported output format %s for 'i'", odd[i][1]);
        expect_invalid(dq(text), want);
    }
    /* a key's image extension beats the save's extension */
    const char *exts[] = {"tif", "tiff", "gif", "bmp", "webp", "jpeg"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        char save[256];
        snprintf(save, sizeof save,
                 "{'image_identifier':'i','extension':'.png','s3_destination':{'bucket':'b',"
                 "'key':'d/k.%s'}}",
                 exts[i]);
        j = parse_save(save, "");
        CHECK_STR(j != NULL ? j->functions[0].save->format : "", exts[i]);
        job_destroy(j);
    }
}

/* The job's members besides its function tree: its id, src, postback and pre_process. */
static void test_envelope(void)
{
    struct job *j = parse(dq("{'src':{'name':'s3','bucket':'b','key':'k.jpg'},'job_id':42,"
                             "'postback_url':'','functions':[]}"));
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL) {
        CHECK_STR(j->id, "42"); /* a number, as written */
        CHECK(job_src_url(j) == NULL && j->src != NULL);
        CHECK(j->postback_url == NULL); /* "": none */
    }
    job_destroy(j);
    j = parse(dq("{'src':'u','postback_url':{'save':{'s3_destination':{'bucket':'b','key':"
                 "'r/1'}}},'functions':[]}"));
    CHECK(j != NULL && j->postback_save != NULL);
    CHECK_STR(j != NULL && j->postback_save != NULL ? j->postback_save->format : "", "json");
    job_destroy(j);
    /* the version is read first: a job refused for its id is answered in its version's shape */
    j = parse(dq("{'src':'u','v':1.17,'job_id':'bad id','functions':[]}"));
    CHECK(j != NULL && j->v == 1.17 && strstr(j->error, "job_id 'bad id'") != NULL);
    job_destroy(j);
    j = parse(dq("{'src':'u','v':'new','functions':[]}"));
    CHECK(j != NULL && j->v == 1.21 && strstr(j->error, "Invalid parameter 'v'") != NULL);
    job_destroy(j);
    /* a nested job has its parent's id; move_original keeps the source untouched */
    j = parse(dq("{'src':'u','job_id':'p1','pre_process':[{'job':{'src':'u','functions':[]}},"
                 "{'move_original':{'s3_destination':{'bucket':'b','key':'o.jpg'}}}],"
                 "'functions':[]}"));
    CHECK(j != NULL && j->error[0] == '\0' && j->n_pre == 2);
    if (j != NULL && j->n_pre == 2) {
        CHECK_STR(j->pre[0].job->id, "p1");
        CHECK(j->pre[1].move->save_metadata);
    }
    job_destroy(j);
    /* JOB_MAX_PRE steps, and no more */
    char text[2048];
    for (int n = JOB_MAX_PRE; n <= JOB_MAX_PRE + 1; n++) {
        size_t at = (size_t)snprintf(text, sizeof text, "{'src':'u','pre_process':[");
        for (int i = 0; i < n; i++) {
            at += (size_t)snprintf(text + at, sizeof text - at,
                                   "%s{'move_original':{'s3_destination':{'bucket':'b','key':"
                                   "'o%d'}}}",
                                   i > 0 ? "," : "", i);
        }
        snprintf(text + at, sizeof text - at, "],'functions':[]}");
        j = parse(dq(text));
        CHECK(j != NULL);
        if (j != NULL && n == JOB_MAX_PRE) {
            CHECK_STR(j->error, "");
        } else if (j != NULL) {
            CHECK_STR(j->error, "too many pre_process steps (at most 16)");
        }
        job_destroy(j);
    }
    /* as many functions as the limit allows */
    struct job_limits tight = {limits.max_bytes, limits.max_depth, 2, 0, 0};
    const char *two = dq("{'src':'u','functions':[{'name':'a'},{'name':'b'}]}");
    struct err e;
    j = job_parse(two, strlen(two), &tight, &e);
    CHECK(j != NULL && j->error[0] == '\0');
    job_destroy(j);
    /* the identifiers of a deep tree */
    j = parse(dq("{'src':'u','functions':[{'name':'a','functions':[{'name':'b','functions':[{"
                 "'name':'c','functions':[{'name':'d','functions':[{'name':'e','save':{"
                 "'image_identifier':'deep'}}]}]}]}]}]}"));
    CHECK(j != NULL && j->error[0] == '\0');
    if (j != NULL) {
        json_object *ids = json_object_new_array();
        job_identifiers(j, ids);
        CHECK_STR(json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN), "[\"deep\"]");
        json_object_put(ids);
    }
    job_destroy(j);
}

/* job_check_destinations() and job_check_saves(), which the worker and pixq submit call with
 * the deployment's settings: every save's bucket, the nested ones' too. */
static void test_destinations(void)
{
    static const char *const cases[][2] = {
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'top'},'functions':[{"
         "'name':'b','save':{'image_identifier':'kid','s3_destination':{'bucket':'-x','key':"
         "'k'}}}]}]}",
         "s3_destination of 'kid': bucket name '-x' is not valid"},
        {"{'src':'u','pre_process':{'job':{'src':'u','functions':[{'name':'a','save':{"
         "'image_identifier':'pre','s3_destination':{'bucket':'B_','key':'k'}}}]}},"
         "'functions':[]}",
         "s3_destination of 'pre': bucket name 'B_' is not valid"},
        {"{'src':'u','pre_process':{'move_original':{'s3_destination':{'bucket':'a/b','key':"
         "'k.jpg'}}},'functions':[]}",
         "s3_destination of 'move_original': bucket name 'a/b' is not valid"},
        {"{'src':'u','functions':[{'name':'a','save':{'image_identifier':'d'},'functions':[{"
         "'name':'b','save':{'image_identifier':'e','s3_destination':{'bucket':'ok-b','key':"
         "'k'}}}]}]}",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct job *j = parse(dq(cases[i][0]));
        CHECK(j != NULL && j->error[0] == '\0');
        if (j == NULL) {
            continue;
        }
        struct err e = {{0}};
        int rc = job_check_destinations(j, &e);
        CHECK_INT(rc, cases[i][1] != NULL ? -1 : 0);
        if (cases[i][1] != NULL) {
            CHECK(strstr(e.msg, cases[i][1]) != NULL);
            if (strstr(e.msg, cases[i][1]) == NULL) {
                fprintf(stderr, "  error was: '%s', wanted '%s'\n", e.msg, cases[i][1]);
            }
        } else {
            CHECK_INT(job_check_saves(j, 2, &e), 0);
            CHECK_INT(job_check_saves(j, 1, &e), -1);
            CHECK_STR(e.msg, "too many saves (2, at most 1)");
        }
        job_destroy(j);
    }
}

/* save.encoding_options: how many, which names, and which values are passed on. */
static void test_encoding_options(void)
{
    char save[2048];
    for (int n = JOB_MAX_ENCODING_OPTIONS; n <= JOB_MAX_ENCODING_OPTIONS + 1; n++) {
        size_t at = (size_t)snprintf(save, sizeof save,
                                     "{'src':'u','functions':[{'name':'a','save':{"
                                     "'image_identifier':'i','encoding_options':{");
        for (int i = 0; i < n; i++) {
            at += (size_t)snprintf(save + at, sizeof save - at, "%s'o%d':1", i > 0 ? "," : "", i);
        }
        snprintf(save + at, sizeof save - at, "}}}]}");
        struct job *j = parse(dq(save));
        CHECK(j != NULL);
        CHECK_STR(j != NULL ? j->error : "",
                  n > JOB_MAX_ENCODING_OPTIONS ? "encoding_options of 'i' has more than 32 settings"
                                               : "");
        job_destroy(j);
    }
    char name[JOB_ENCODING_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* one byte too long */
    snprintf(save, sizeof save,
             "{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
             "'encoding_options':{'%s':1}}}]}",
             name);
    expect_invalid(dq(save), "is not a setting name (a-z 0-9 - _, at most 32)");
    snprintf(save, sizeof save,
             "{'src':'u','functions':[{'name':'a','save':{'image_identifier':'i',"
             "'encoding_options':{'%s':1}}}]}",
             name + 1);
    struct job *j = parse(dq(save));
    CHECK(j != NULL && j->error[0] == '\0');
    job_destroy(j);
    /* values: up to 8 characters of text, as JSON writes them; the others left out */
    json_object *o = json_tokener_parse("{\"a\":\"12345678\",\"b\":\"123456789\",\"c\":\"\","
                                        "\"d\":\"a\\u0001\",\"e\":true,\"f\":\"a\\u0000b\","
                                        "\"g\":[1],\"h\":0.5,\"i\":-7}");
    static const char *const want[][2] = {{"a", "12345678"}, {"b", NULL},   {"c", NULL},
                                          {"d", NULL},       {"e", "true"}, {"f", NULL},
                                          {"g", NULL},       {"h", "0.5"},  {"i", "-7"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *got = job_encoding_value(json_object_object_get(o, want[i][0]));
        CHECK_STR(got != NULL ? got : "(left out)", want[i][1] != NULL ? want[i][1] : "(left out)");
    }
    json_object_put(o);
}

/* Header and key guards at their bounds. */
static void test_guard_bounds(void)
{
    const char *ok_dest = "{\"bucket\":\"b\",\"key\":\"k.png\"}";
    /* JOB_MAX_HEADERS headers */
    char many[2048];
    size_t n = (size_t)snprintf(many, sizeof many, "{");
    for (int i = 0; i < JOB_MAX_HEADERS; i++) {
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"H%d\":%d", i ? "," : "", i, i);
    }
    snprintf(many + n, sizeof many - n, "}");
    expect_guard(ok_dest, many, NULL);
    /* a value of JOB_HEADER_VALUE_MAX bytes, and one more */
    static char value[JOB_HEADER_VALUE_MAX + 64];
    for (int extra = 0; extra <= 1; extra++) {
        snprintf(value, sizeof value, "{\"X-Long\":\"%0*d\"}", JOB_HEADER_VALUE_MAX + extra, 0);
        expect_guard(ok_dest, value,
                     extra ? "postback_headers: header 'X-Long' is longer than 4096 bytes" : NULL);
    }
    /* a name that is shown, not sent: its control characters as '?' */
    expect_guard(ok_dest, "{\"X\\u0001A\":[1]}", "postback_headers.X?A must be a string");
    /* a postback is no S3 upload: the headers that would change one are the receiver's */
    expect_guard(ok_dest, "{\"x-amz-copy-source\":\"b/k\",\"Proxy\":\"x\"}", NULL);
    /* control characters end at U+001F and U+009F */
    struct err e = {{0}};
    CHECK(job_check_s3_key(NULL, "a\x1f", &e) < 0);
    CHECK(job_check_s3_key(NULL, "a\xc2\x9f", &e) < 0);
    CHECK(job_check_s3_key(NULL, "a \xc2\xa0~", &e) == 0);
    CHECK(job_check_s3_key("", "k", &e) == 0); /* no region: the bucket's own */
    CHECK(job_check_s3_key("us-east-1", "k", &e) == 0);
    /* an image_identifier of JOB_IDENTIFIER_MAX bytes, and one more */
    char text[1024];
    for (int extra = 0; extra <= 1; extra++) {
        snprintf(text, sizeof text,
                 "{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                 "\"image_identifier\":\"%0*d\"}}]}",
                 JOB_IDENTIFIER_MAX + extra, 0);
        struct job *j = parse(text);
        CHECK(j != NULL);
        CHECK_STR(j != NULL ? j->error : "",
                  extra ? "image_identifier of function 'no_op' must be UTF-8 without control "
                          "characters, at most 512 bytes"
                        : "");
        job_destroy(j);
    }
}

/* A batch at its byte limit, and the count of one json-c reads (what JSON alone does not take). */
static void test_batch_bounds(void)
{
    const char *text = "[{\"a\": 1}, {}]";
    struct job_limits lim = {100, 32, 100, 0, strlen(text)};
    size_t n = 0;
    struct err e = {{0}};
    CHECK_INT(job_split_batch(text, strlen(text), &lim, count_all, &n, &e), 2);
    /* past max_bytes but within own_bytes: json-c still reads it */
    const char *lenient = "[{'a': 1}, 1,]";
    struct job_limits room = {strlen(lenient) - 1, 32, 100, 1, 4096};
    n = 0;
    CHECK_INT(job_split_batch(lenient, strlen(lenient), &room, count_all, &n, &e), 2);
    char *many = malloc(2 * (JOB_MAX_BATCH + 1) + 8);
    CHECK(many != NULL);
    if (many == NULL) {
        return;
    }
    struct job_limits big = {100000, 32, 100, 0, 0};
    for (int count = JOB_MAX_BATCH; count <= JOB_MAX_BATCH + 1; count++) {
        size_t at = 0;
        many[at++] = '[';
        for (int i = 0; i < count; i++) {
            many[at++] = '1';
            many[at++] = ',';
        }
        many[at++] = ']'; /* a trailing comma: json-c's */
        n = 0;
        int rc = job_split_batch(many, at, &big, count_all, &n, &e);
        CHECK_INT(rc, count > JOB_MAX_BATCH ? -1 : JOB_MAX_BATCH);
        if (count > JOB_MAX_BATCH) {
            CHECK_STR(e.msg, "a batch holds 1001 jobs, more than the limit of 1000");
        }
    }
    free(many);
}

/* Round two of the mutation pass: what a payload over the limits keeps, what pixq writes into a
 * payload, "&" references, and the batch's and guards' last edges. */
static void test_salvage_members(void)
{
    struct err e = {{0}};
    /* every member that says how the failure is posted is kept; the others are not read */
    const char *text = "{\"postback_url\":\"http://pb/\",\"postback_error_only\":true,"
                       "\"retry_postback\":true,\"pixq_enqueued_at\":1700000000000,"
                       "\"content_type_json\":true,\"src\":\"http://x/a.jpg\","
                       "\"padding\":\"0123456789012345678901234567890123456789\"}";
    struct job *j = parse_limited(text, 100, &e);
    CHECK(j != NULL && j->salvaged);
    if (j != NULL) {
        const char *kept[] = {"postback_error_only", "retry_postback", "pixq_enqueued_at",
                              "content_type_json"};
        for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
            CHECK(json_object_object_get(j->root, kept[i]) != NULL);
        }
        CHECK(json_object_object_get(j->root, "padding") == NULL && job_src_url(j) == NULL);
    }
    job_destroy(j);
    /* a deployment whose jobs nest one level: the members are read all the same */
    const struct job_limits flat = {20, 1, 100, 0, 0};
    const char *big = "{\"postback_url\":\"http://pb/f\",\"p\":\"0123456789\"}";
    j = job_parse(big, strlen(big), &flat, &e);
    CHECK(j != NULL && j->salvaged);
    CHECK_STR(j != NULL && j->postback_url != NULL ? j->postback_url : "", "http://pb/f");
    job_destroy(j);
}

static void test_writes_and_refs(void)
{
    struct err e = {{0}};
    /* job_assign_id() says the id is pixq's */
    struct job *j = parse("{\"src\":\"u\",\"functions\":[]}");
    CHECK(j != NULL && j->id[0] == '\0' && !j->id_assigned);
    if (j != NULL) {
        struct buf payload;
        buf_init(&payload, 0);
        CHECK_INT(job_assign_id(j, &payload, &e), 0);
        CHECK(j->id_assigned && j->id[0] != '\0');
        buf_finish(&payload);
    }
    job_destroy(j);
    /* a text after the object is the client's: job_text_afresh() takes nothing from it */
    const char *tail = "{\"src\":\"u\",\"functions\":[]} //,\"pixq_attempt\":7";
    j = job_parse(tail, strlen(tail), &limits, &e);
    CHECK(j != NULL);
    if (j != NULL) {
        struct buf out;
        buf_init(&out, 0);
        CHECK_INT(job_text_afresh(j, &out), 0);
        CHECK_STR(out.data, tail);
        buf_finish(&out);
    }
    job_destroy(j);
    /* "&name" alone refers to an image: "xb" does not name "b" */
    j = parse("{\"src\":\"xb\",\"functions\":[{\"name\":\"no_op\",\"params\":{\"t\":\"?b\"}}]}");
    CHECK(j != NULL && !job_refers_to(j, "b"));
    job_destroy(j);
    /* a nested job's own job_id is no matter: it runs under its parent's */
    j = parse("{\"src\":\"u\",\"job_id\":\"p\",\"pre_process\":{\"job\":{\"job_id\":\"bad id\","
              "\"src\":\"u\",\"functions\":[]}},\"functions\":[]}");
    CHECK(j != NULL && j->error[0] == '\0' && j->n_pre == 1);
    CHECK_STR(j != NULL && j->n_pre == 1 ? j->pre[0].job->id : "", "p");
    job_destroy(j);
    /* a postback_url save refused is not kept (the job goes to dead with the reason) */
    j = parse("{\"src\":\"u\",\"postback_url\":{\"save\":{\"s3_destination\":{\"bucket\":\"b\","
              "\"key\":\"../r\"}}},\"functions\":[]}");
    CHECK(j != NULL && j->postback_save == NULL && strstr(j->error, "segment") != NULL);
    job_destroy(j);
}

static void test_last_edges(void)
{
    struct err e = {{0}};
    /* without max_batch_bytes, a batch is held to max_bytes */
    const char *two = "[{}, {\"a\": 1}]";
    struct job_limits lim = {strlen(two), 32, 100, 0, 0};
    size_t n = 0;
    CHECK_INT(job_split_batch(two, strlen(two), &lim, count_all, &n, &e), 2);
    lim.max_bytes--;
    CHECK_INT(job_split_batch(two, strlen(two), &lim, count_all, &n, &e), -1);
    /* a lenient batch's jobs written out with their slashes as they were */
    json_object *got = json_object_new_array();
    const char *slashes = "[{'src': 'http://x/a.jpg'}]";
    CHECK_INT(job_split_batch(slashes, strlen(slashes), &limits, collect, got, &e), 1);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(got, 0)),
              "{\"src\":\"http://x/a.jpg\"}");
    json_object_put(got);
    /* an extension of 15 characters is a format (refused), not none */
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                   "\"image_identifier\":\"x\",\"extension\":\"abcdefghijklmno\"}}]}",
                   "Unsupported output format 'abcdefghijklmno' for 'x'");
    expect_invalid("{\"src\":\"u\",\"functions\":[{\"name\":\"no_op\",\"save\":{"
                   "\"image_identifier\":\"x\",\"extension\":\"png\",\"s3_destination\":{"
                   "\"bucket\":\"b\",\"key\":\"k.HEIC\"}}}]}",
                   "Unsupported output format 'heic' for 'x'");
    /* an S3 header: a Content-Type too long to be a type, and a byte 0x80 */
    char dest[512];
    snprintf(dest, sizeof dest,
             "{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"Content-Type\":\"image/%0130d\"}}", 0);
    expect_guard(dest, "{}", "may not come from a job: an output is an image");
    expect_guard("{\"bucket\":\"b\",\"key\":\"k\",\"headers\":{\"x-amz-meta-a\":\"\x80\"}}", "{}",
                 "has a value that is not ASCII");
}

int main(void)
{
    test_full_job();
    test_format_order();
    test_errors();
    test_deep_function_place();
    test_params();
    test_recorder();
    test_metadata_options();
    test_blitline_leniency();
    test_pre_process();
    test_pre_process_errors();
    test_ignored_members();
    test_batch();
    test_request_body();
    test_large_batch();
    test_guards();
    test_postback_to_s3();
    test_scan();
    test_salvage();
    test_rewrites();
    test_validation_table();
    test_defaults();
    test_envelope();
    test_destinations();
    test_encoding_options();
    test_guard_bounds();
    test_batch_bounds();
    test_salvage_members();
    test_writes_and_refs();
    test_last_edges();
    return check_summary("job");
}
