#include "srccache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"

/* The keys a job's document names, one per naming. */
struct names {
    char **keys;
    size_t n, cap;
    bool failed; /* out of memory */
};

/* A member of `o` as run.c's fetch_s3() reads it (json_object_get_string()), or "" if absent. */
static const char *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, name, &v) && v != NULL ? json_object_get_string(v) : "";
}

/* `kind` followed by each of the `n` parts after its length ("u12:http://h/a"). free() it; NULL if
 * out of memory. */
static char *joined(char kind, size_t n, const char *const *parts)
{
    size_t len = 2;
    for (size_t i = 0; i < n; i++) {
        len += strlen(parts[i]) + 21;
    }
    char *key = malloc(len), *at = key;
    if (key == NULL) {
        return NULL;
    }
    *at++ = kind;
    for (size_t i = 0; i < n; i++) {
        at += sprintf(at, "%zu:%s", strlen(parts[i]), parts[i]);
    }
    return key;
}

/* The key of a source: "u" and its URL; "o" and what fetch_s3() reads of an s3 object (the
 * bucket's name and location, and the key), so that an object written with its members in
 * another order, or with others that fetch_s3() ignores, is the same source. NULL: a source that
 * is never downloaded (a reference, a canvas, another type), or out of memory. free() it. */
static char *key_of(json_object *src)
{
    if (json_object_is_type(src, json_type_string)) {
        const char *url = json_object_get_string(src);
        return url[0] == '&' ? NULL : joined('u', 1, &url);
    }
    if (!json_object_is_type(src, json_type_object) || strcmp(member(src, "name"), "s3") != 0) {
        return NULL;
    }
    json_object *bucket = NULL;
    json_object_object_get_ex(src, "bucket", &bucket);
    bool nested = json_object_is_type(bucket, json_type_object);
    const char *parts[3] = {
        nested           ? member(bucket, "name")
        : bucket != NULL ? json_object_get_string(bucket)
                         : "",
        nested ? member(bucket, "location") : "",
        member(src, "key"),
    };
    return joined('o', 3, parts);
}

static void add_name(struct names *s, json_object *src)
{
    if (s->failed) {
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap == 0 ? 16 : s->cap * 2;
        char **keys = realloc(s->keys, cap * sizeof *keys);
        if (keys == NULL) {
            s->failed = true;
            return;
        }
        s->keys = keys;
        s->cap = cap;
    }
    char *key = key_of(src);
    if (key != NULL) {
        s->keys[s->n++] = key;
    }
}

/* Every "src" and "other_images" item in `v` and below (the job's depth was bounded when it was
 * parsed). A source's own value is not read further: nothing in it is a source, and an s3 object
 * holding another "src" would otherwise be serialised again at each level below it. */
static void collect(json_object *v, struct names *s)
{
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            collect(json_object_array_get_idx(v, i), s);
        }
        return;
    }
    if (!json_object_is_type(v, json_type_object)) {
        return;
    }
    json_object_object_foreach(v, name, val)
    {
        if (strcmp(name, "src") == 0) {
            add_name(s, val);
        } else if (strcmp(name, "other_images") == 0) {
            json_object *list = src_list(val);
            for (size_t i = 0; list != NULL && i < json_object_array_length(list); i++) {
                add_name(s, json_object_array_get_idx(list, i));
            }
            json_object_put(list);
        } else {
            collect(val, s);
        }
    }
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The end of the run of keys equal to keys[i] (sorted). */
static size_t run_end(char *const *keys, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && strcmp(keys[i], keys[j]) == 0) {
        j++;
    }
    return j;
}

static int by_entry_key(const void *key, const void *entry)
{
    return strcmp(key, ((const struct srccache_entry *)entry)->key);
}

void srccache_init(struct srccache *c)
{
    *c = (struct srccache){0};
}

void srccache_clear(struct srccache *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->entries[i].key);
        buf_finish(&c->entries[i].bytes);
    }
    free(c->entries);
    *c = (struct srccache){0};
}

long srccache_start(struct srccache *c, json_object *job, size_t budget)
{
    srccache_clear(c);
    struct names s = {0};
    collect(job, &s);
    qsort(s.keys, s.n, sizeof *s.keys, by_key);
    size_t repeated = 0;
    for (size_t i = 0, j; i < s.n; i = j) {
        j = run_end(s.keys, s.n, i);
        repeated += j - i > 1;
    }
    c->entries = repeated > 0 && !s.failed ? calloc(repeated, sizeof *c->entries) : NULL;
    for (size_t i = 0, j; i < s.n; i = j) {
        j = run_end(s.keys, s.n, i);
        size_t k = i;
        if (j - i > 1 && c->entries != NULL) { /* sorted, as s.keys */
            c->entries[c->n].key = s.keys[k++];
            buf_init(&c->entries[c->n].bytes, 0);
            c->n++;
        }
        for (; k < j; k++) {
            free(s.keys[k]);
        }
    }
    free(s.keys);
    c->budget = budget;
    bool failed = s.failed || (repeated > 0 && c->entries == NULL);
    return failed ? -1 : (long)c->n;
}

static struct srccache_entry *find(const struct srccache *c, json_object *src)
{
    if (c->n == 0) {
        return NULL;
    }
    char *key = key_of(src);
    struct srccache_entry *found =
        key != NULL ? bsearch(key, c->entries, c->n, sizeof *c->entries, by_entry_key) : NULL;
    free(key);
    return found;
}

bool srccache_get(const struct srccache *c, json_object *src, struct buf *out)
{
    const struct srccache_entry *en = find(c, src);
    if (en == NULL || en->bytes.len == 0) {
        return false;
    }
    struct buf copy;
    buf_init(&copy, 0);
    if (buf_append(&copy, en->bytes.data, en->bytes.len) < 0) {
        buf_finish(&copy);
        return false;
    }
    buf_finish(out);
    *out = copy;
    return true;
}

bool srccache_put(struct srccache *c, json_object *src, const void *data, size_t len)
{
    struct srccache_entry *en = find(c, src);
    if (en == NULL || en->bytes.len > 0 || len == 0 || len > c->budget - c->kept_bytes) {
        return false;
    }
    if (buf_append(&en->bytes, data, len) < 0) {
        buf_finish(&en->bytes);
        return false;
    }
    c->kept_bytes += len;
    return true;
}
