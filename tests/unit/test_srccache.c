/* test_srccache: worker/srccache.c: which sources of a job's document count as named more than
 * once (every "src" and "other_images" item, at any depth; URLs and s3 objects, not references
 * nor canvases), what is kept (only those, within the budget), and what a lookup gives back. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "srccache.h"

static json_object *parse(const char *text)
{
    json_object *j = json_tokener_parse(text);
    CHECK(j != NULL);
    return j;
}

/* Keeps `bytes` for `src` (JSON text); returns whether it was kept. */
static bool put(struct srccache *c, const char *src, const char *bytes)
{
    json_object *s = parse(src);
    bool kept = srccache_put(c, s, bytes, strlen(bytes));
    json_object_put(s);
    return kept;
}

/* What the cache gives back for `src` (JSON text): a string to free, or NULL. */
static char *get(const struct srccache *c, const char *src)
{
    json_object *s = parse(src);
    struct buf out;
    buf_init(&out, 0);
    buf_puts(&out, "old contents");
    char *got = NULL;
    if (srccache_get(c, s, &out)) {
        got = strndup(out.data, out.len);
    } else {
        CHECK_STR(out.data, "old contents"); /* untouched on a miss */
    }
    buf_finish(&out);
    json_object_put(s);
    return got;
}

static void check_get(const struct srccache *c, const char *src, const char *want)
{
    char *got = get(c, src);
    if (want == NULL) {
        CHECK(got == NULL);
    } else {
        CHECK_STR(got, want);
    }
    free(got);
}

static void test_what_counts_as_named_twice(void)
{
    /* w.png: the job's src, a composite's src in a nested function, an other_images item
     * (string form, spaces around) and the last composite's src (four namings, one source); x.png:
     * in two other_images (array, then string); s3: the same object twice; once.png, &ref, canvas
     * and a number: not kept */
    json_object *job = parse(
        "{\"src\": \"http://h/w.png\", \"functions\": [{\"name\": \"resize\", \"functions\": "
        "[{\"name\": \"composite\", \"params\": {\"src\": \"http://h/w.png\"}}]},"
        "{\"name\": \"append\", \"params\": {\"other_images\": \"http://h/x.png , http://h/w.png,"
        "\"}}, {\"name\": \"append\", \"params\": {\"other_images\": [\"http://h/x.png\", "
        "\"http://h/once.png\", {\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k\"}]}},"
        "{\"name\": \"composite\", \"params\": {\"src\": {\"name\": \"s3\", \"bucket\": \"b\", "
        "\"key\": \"k\"}}}, {\"name\": \"composite\", \"params\": {\"src\": \"&ref\"}},"
        "{\"name\": \"composite\", \"params\": {\"src\": \"&ref\"}},"
        "{\"name\": \"composite\", \"params\": {\"src\": {\"name\": \"canvas\"}}},"
        "{\"name\": \"composite\", \"params\": {\"src\": {\"name\": \"canvas\"}}},"
        "{\"name\": \"composite\", \"params\": {\"src\": 7}},"
        "{\"name\": \"composite\", \"params\": {\"src\": 7}},"
        "{\"name\": \"composite\", \"params\": {\"src\": \"http://h/w.png\"}}]}");
    struct srccache c;
    srccache_init(&c);
    CHECK_INT(srccache_start(&c, job, 1000), 3);
    CHECK(put(&c, "\"http://h/w.png\"", "W"));
    CHECK(put(&c, "\"http://h/x.png\"", "XX"));
    CHECK(put(&c, "{\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k\"}", "S3"));
    CHECK(!put(&c, "\"http://h/once.png\"", "O"));
    CHECK(!put(&c, "\"&ref\"", "R"));
    CHECK(!put(&c, "{\"name\": \"canvas\"}", "C"));
    CHECK(!put(&c, "\"http://h/w.png\"", "again")); /* kept once */
    CHECK_INT(c.kept_bytes, 5);
    check_get(&c, "\"http://h/w.png\"", "W");
    check_get(&c, "\"http://h/x.png\"", "XX");
    check_get(&c, "{\"name\":\"s3\",\"bucket\":\"b\",\"key\":\"k\"}", "S3");
    check_get(&c, "\"http://h/once.png\"", NULL);
    check_get(&c, "\"http://h/W.png\"", NULL);
    /* the same object written otherwise is the same source; another key, bucket or location
     * (the bucket as an object) is another */
    check_get(&c, "{\"bucket\": \"b\", \"name\": \"s3\", \"key\": \"k\", \"x\": 1}", "S3");
    check_get(&c, "{\"name\": \"s3\", \"bucket\": {\"name\": \"b\"}, \"key\": \"k\"}", "S3");
    check_get(&c, "{\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k2\"}", NULL);
    check_get(&c, "{\"name\": \"s3\", \"bucket\": \"b2\", \"key\": \"k\"}", NULL);
    check_get(&c,
              "{\"name\": \"s3\", \"bucket\": {\"name\": \"b\", \"location\": \"eu-west-1\"}, "
              "\"key\": \"k\"}",
              NULL);
    /* lengths keep the parts apart: bucket "bk" with an empty key is not bucket "b" key "k" */
    check_get(&c, "{\"name\": \"s3\", \"bucket\": \"bk\", \"key\": \"\"}", NULL);

    /* the next job starts empty */
    json_object *next = parse("{\"src\": \"http://h/w.png\"}");
    CHECK_INT(srccache_start(&c, next, 1000), 0);
    CHECK_INT(c.kept_bytes, 0);
    check_get(&c, "\"http://h/w.png\"", NULL);
    CHECK(!put(&c, "\"http://h/w.png\"", "W"));
    srccache_clear(&c);
    json_object_put(next);
    json_object_put(job);
}

static void test_budget(void)
{
    json_object *job = parse("{\"functions\": [{\"params\": {\"other_images\": [\"a\", \"a\", "
                             "\"b\", \"b\", \"c\", \"c\"]}}]}");
    struct srccache c;
    srccache_init(&c);
    CHECK_INT(srccache_start(&c, job, 10), 3);
    CHECK(put(&c, "\"a\"", "123456"));
    CHECK(!put(&c, "\"b\"", "12345")); /* 11 bytes in all: past the budget */
    CHECK(put(&c, "\"c\"", "1234"));   /* exactly 10 */
    check_get(&c, "\"b\"", NULL);
    check_get(&c, "\"c\"", "1234");
    CHECK_INT(c.kept_bytes, 10);

    CHECK_INT(srccache_start(&c, job, 0), 3); /* budget 0: nothing kept */
    CHECK(!put(&c, "\"a\"", "1"));
    CHECK(!put(&c, "\"a\"", "")); /* nor an empty download */
    check_get(&c, "\"a\"", NULL);
    srccache_clear(&c);
    srccache_clear(&c); /* twice is harmless */
    json_object_put(job);
}

static void test_many_names(void)
{
    /* 5000 sources, each named twice, in one document: sorted once, looked up by bisection */
    json_object *job = json_object_new_object(), *fns = json_object_new_array();
    json_object_object_add(job, "functions", fns);
    char url[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000; i++) {
            json_object *fn = json_object_new_object(), *p = json_object_new_object();
            snprintf(url, sizeof url, "http://h/%d.png", i);
            json_object_object_add(p, "src", json_object_new_string(url));
            json_object_object_add(fn, "params", p);
            json_object_array_add(fns, fn);
        }
    }
    struct srccache c;
    srccache_init(&c);
    CHECK_INT(srccache_start(&c, job, 1 << 20), 5000);
    json_object *s = json_object_new_string("http://h/4321.png");
    CHECK(srccache_put(&c, s, "x", 1));
    json_object_put(s);
    check_get(&c, "\"http://h/4321.png\"", "x");
    check_get(&c, "\"http://h/4322.png\"", NULL);
    srccache_clear(&c);
    json_object_put(job);
}

static void test_inside_a_source_is_no_source(void)
{
    /* what an s3 src object holds is not read for sources: a "src" in it names nothing (a.png is
     * named once), and a chain of s3 objects each holding the next is serialised once per
     * object, not once per object and level (the walk's keys were depth times the document) */
    json_object *job =
        parse("{\"src\": {\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k\", "
              "\"meta\": {\"src\": \"http://h/a.png\"}}, \"functions\": [{\"params\": "
              "{\"src\": \"http://h/a.png\"}}]}");
    struct srccache c;
    srccache_init(&c);
    CHECK_INT(srccache_start(&c, job, 1000), 0);
    CHECK(!put(&c, "\"http://h/a.png\"", "A"));
    srccache_clear(&c);
    json_object_put(job);
}

static void test_other_images_of_another_type(void)
{
    /* an "other_images" that is neither a list nor a string names no source, and is not read
     * further: a number, null or an object (even one holding a "src") is skipped */
    json_object *job = parse("{\"src\": \"http://h/a.png\", \"functions\": ["
                             "{\"params\": {\"other_images\": 7}},"
                             "{\"params\": {\"other_images\": null}},"
                             "{\"params\": {\"other_images\": {\"src\": \"http://h/a.png\"}}},"
                             "{\"params\": {\"other_images\": \"http://h/b.png\"}},"
                             "{\"params\": {\"src\": \"http://h/b.png\"}}]}");
    struct srccache c;
    srccache_init(&c);
    CHECK_INT(srccache_start(&c, job, 1000), 1);
    CHECK(!put(&c, "\"http://h/a.png\"", "A"));
    CHECK(put(&c, "\"http://h/b.png\"", "B"));
    srccache_clear(&c);
    json_object_put(job);
}

int main(void)
{
    test_what_counts_as_named_twice();
    test_budget();
    test_many_names();
    test_inside_a_source_is_no_source();
    test_other_images_of_another_type();
    return check_summary("srccache");
}
