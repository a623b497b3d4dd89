/* Unit tests of opdoc_unread() (worker/opdoc.h): the parameters of a job that no function reads,
 * which the worker logs as job_params_ignored.
 *
 * First the names it gives: a misspelt parameter at the top, in a child, in a pre_process job and
 * in an object parameter's members; aliases, string forms, a src object's members and an unknown
 * function's parameters are not named; the list's caps. Then the sweep: every function case of
 * tests/data/cases (each .json file) and every sample job of tests/data/jobs/blitline gives none,
 * so that no parameter a function reads in some mode only (a branch on another's value) is taken
 * for one it does not read. Takes tests/data as its argument. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "err.h"
#include "job.h"
#include "magick_test.h"
#include "opdoc.h"

static const struct job_limits limits = {1 << 22, 64, 1000, 0, 0};

/* opdoc_unread() of the job `text` into `u`; 0, or -1 (a CHECK failed). */
static int unread_of(const char *text, struct opdoc_unread *u)
{
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &limits, &e);
    CHECK(j != NULL);
    if (j == NULL) {
        fprintf(stderr, "  %s\n", e.msg);
        return -1;
    }
    int rc = opdoc_unread(j, u, &e);
    CHECK_INT(rc, 0);
    job_destroy(j);
    return rc;
}

static void test_names(void)
{
    struct opdoc_unread u;
    const char *job =
        "{\"src\": \"http://x/a.jpg\", \"pre_process\": [{\"job\": {\"src\": \"http://x/b.jpg\","
        " \"functions\": [{\"name\": \"blur\", \"params\": {\"sigmaa\": 2},"
        " \"save\": {\"image_identifier\": \"p\"}}]}}],"
        " \"functions\": [{\"name\": \"resize_to_fit\", \"params\": {\"width\": \"100\","
        " \"widht\": 50, \"only_shrink_larger\": \"true\"}, \"functions\": ["
        "  {\"name\": \"crop\", \"params\": {\"width\": 20, \"gravty\": \"North\"},"
        "   \"save\": {\"image_identifier\": \"c\"}},"
        "  {\"name\": \"composite\", \"params\": {\"src\": {\"name\": \"s3\", \"bucket\": \"b\","
        "   \"key\": \"k\", \"nosuch\": 1}, \"scale_to_fit\": {\"width\": 10, \"hieght\": 5}},"
        "   \"save\": {\"image_identifier\": \"o\"}},"
        "  {\"name\": \"modulate\", \"params\": {\"Brightness\": 1.2, \"hue\": \"1\"},"
        "   \"save\": {\"image_identifier\": \"m\"}},"
        "  {\"name\": \"annotate\", \"params\": {\"text\": \"a\", \"font_family\": \"Arial\","
        "   \"weight\": \"bold\"}, \"save\": {\"image_identifier\": \"t\"}},"
        "  {\"name\": \"blu3r\", \"params\": {\"x\": 1}, \"save\": {\"image_identifier\": \"u\"}}"
        " ]}]}";
    if (unread_of(job, &u) == 0) {
        CHECK_STR(u.text, "blur.sigmaa,resize_to_fit.widht,crop.gravty,"
                          "composite.scale_to_fit.hieght");
        CHECK_INT(u.count, 4);
        CHECK_INT(u.listed, 4);
    }
    /* no params, params {}, and every parameter known: nothing */
    const char *clean = "{\"src\": \"http://x/a.jpg\", \"functions\": [{\"name\": \"blur\","
                        " \"save\": {\"image_identifier\": \"a\"}}, {\"name\": \"no_op\","
                        " \"params\": {}, \"save\": {\"image_identifier\": \"b\"}},"
                        " {\"name\": \"quantize\", \"params\": {\"colorspace\": \"GRAY\","
                        " \"number_colors\": \"8\", \"dither\": true},"
                        " \"save\": {\"image_identifier\": \"q\"}}]}";
    if (unread_of(clean, &u) == 0) {
        CHECK_STR(u.text, "");
        CHECK_INT(u.count, 0);
    }
    /* no_op reads nothing: any parameter is named; one given null too */
    if (unread_of("{\"src\": \"http://x/a.jpg\", \"functions\": [{\"name\": \"no_op\","
                  " \"params\": {\"width\": null}, \"save\": {\"image_identifier\": \"a\"}}]}",
                  &u) == 0) {
        CHECK_STR(u.text, "no_op.width");
    }
}

/* A name cut to OPDOC_UNREAD_PART bytes is not cut inside a UTF-8 character. */
static void test_cut_utf8(void)
{
    char name[128] = "a", job[512], want[128] = "no_op.a";
    size_t n = 1, w = strlen(want);
    for (int i = 0; i < 40; i++) { /* U+00E9: 81 bytes in all, byte 64 inside the 32nd */
        memcpy(name + n, "\xc3\xa9", 3);
        n += 2;
        if (i < 31) {
            memcpy(want + w, "\xc3\xa9", 3);
            w += 2;
        }
    }
    snprintf(job, sizeof job,
             "{\"src\": \"http://x/a.jpg\", \"functions\": [{\"name\": \"no_op\", "
             "\"params\": {\"%s\": 1}, \"save\": {\"image_identifier\": \"a\"}}]}",
             name);
    struct opdoc_unread u;
    if (unread_of(job, &u) == 0) {
        CHECK_STR(u.text, want);
    }
}

/* The list stops at OPDOC_UNREAD_NAMES names and within OPDOC_UNREAD_TEXT bytes; the count
 * goes on; a long name is cut to OPDOC_UNREAD_PART bytes. */
static void test_caps(void)
{
    char job[16384];
    size_t at = (size_t)snprintf(job, sizeof job,
                                 "{\"src\": \"http://x/a.jpg\", \"functions\": "
                                 "[{\"name\": \"no_op\", \"params\": {");
    for (int i = 0; i < 40; i++) {
        at += (size_t)snprintf(job + at, sizeof job - at, "%s\"p%02d\": 1", i > 0 ? ", " : "", i);
    }
    snprintf(job + at, sizeof job - at, "}, \"save\": {\"image_identifier\": \"a\"}}]}");
    struct opdoc_unread u;
    if (unread_of(job, &u) == 0) {
        CHECK_INT(u.count, 40);
        CHECK_INT(u.listed, OPDOC_UNREAD_NAMES);
        CHECK(strncmp(u.text, "no_op.p00,no_op.p01,", 20) == 0);
        CHECK(strstr(u.text, "no_op.p31") != NULL && strstr(u.text, "p32") == NULL);
    }
    /* names of 302 bytes: 64 of each shown, as many as fit in the text */
    char name[301];
    memset(name, 'n', 300);
    name[300] = '\0';
    at = (size_t)snprintf(job, sizeof job,
                          "{\"src\": \"http://x/a.jpg\", \"functions\": "
                          "[{\"name\": \"no_op\", \"params\": {");
    for (int i = 0; i < 30; i++) {
        at += (size_t)snprintf(job + at, sizeof job - at, "%s\"%02d%s\": 1", i > 0 ? ", " : "", i,
                               name);
    }
    /* a short name after them is not listed either: the list stops at the first left out */
    snprintf(job + at, sizeof job - at, ", \"z\": 1}, \"save\": {\"image_identifier\": \"a\"}}]}");
    if (unread_of(job, &u) == 0) {
        size_t one = strlen("no_op.") + OPDOC_UNREAD_PART;
        CHECK_INT(u.count, 31);
        CHECK_INT(u.listed, 14); /* 70 bytes, then 71 with a comma: 14 fit in 1023 */
        CHECK(strlen(u.text) < OPDOC_UNREAD_TEXT);
        CHECK(strncmp(u.text, "no_op.00nnn", 11) == 0 && u.text[one] == ',');
    }
}

/* ---------------------------------------------------------------- the sweep */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *text = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) != NULL) {
        text[fread(text, 1, (size_t)n, f)] = '\0';
    }
    fclose(f);
    return text;
}

/* Checks that the job `doc` (a case's functions and job members, or a sample job) has no
 * parameter that no function reads; `what` names it in a failure. */
static void check_none(json_object *doc, const char *what)
{
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
    struct opdoc_unread u;
    if (unread_of(text, &u) == 0) {
        CHECK_INT(u.count, 0);
        if (u.count > 0) {
            fprintf(stderr, "  %s: %s\n", what, u.text);
        }
    }
}

/* The job a function case runs (tests/functions/run_cases.py build_job()). */
static void check_case(json_object *c, const char *file)
{
    json_object *name = NULL, *fns = NULL, *extra = NULL;
    json_object_object_get_ex(c, "name", &name);
    json_object_object_get_ex(c, "functions", &fns);
    json_object_object_get_ex(c, "job", &extra);
    json_object *job = json_object_new_object();
    if (json_object_is_type(extra, json_type_object)) {
        json_object_object_foreach(extra, k, v)
        {
            json_object_object_add(job, k, json_object_get(v));
        }
    }
    json_object_object_add(job, "src", json_object_new_string("file:x.jpg"));
    json_object_object_add(job, "functions", json_object_get(fns));
    char what[256];
    snprintf(what, sizeof what, "%s %s", file, json_object_get_string(name));
    check_none(job, what);
    json_object_put(job);
}

/* Calls `each` with every *.json file of `dir`, parsed; returns how many. */
static int each_file(const char *dir, void (*each)(json_object *doc, const char *file))
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    for (struct dirent *de = d != NULL ? readdir(d) : NULL; de != NULL; de = readdir(d)) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0) {
            continue;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        char *text = read_text(path);
        json_object *doc = text != NULL ? json_tokener_parse(text) : NULL;
        CHECK(doc != NULL);
        if (doc != NULL) {
            each(doc, de->d_name);
            n++;
        }
        json_object_put(doc);
        free(text);
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static int n_cases;

static void each_case_file(json_object *doc, const char *file)
{
    for (size_t i = 0; i < json_object_array_length(doc); i++) {
        check_case(json_object_array_get_idx(doc, i), file);
        n_cases++;
    }
}

static void test_sweep(const char *data)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/cases", data);
    CHECK(each_file(dir, each_case_file) >= 7);
    CHECK(n_cases > 500);
    snprintf(dir, sizeof dir, "%s/jobs/blitline", data);
    CHECK_INT(each_file(dir, check_none), 10);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_opdoc TESTS_DATA_DIR\n");
        return 2;
    }
    if (test_img_start("opdoc") < 0) {
        return 1;
    }
    test_names();
    test_caps();
    test_cut_utf8();
    test_sweep(argv[1]);
    int rc = check_summary("opdoc");
    img_shutdown();
    return rc;
}
