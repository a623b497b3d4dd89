#include "jscan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_SCAN 32 /* bytes of a decoded member name compared; longer ones match none */

struct scan {
    const unsigned char *s;
    size_t len;
    size_t i;
    unsigned char root;     /* '{' or '[': what the text must be */
    struct jscan_member *m; /* an object's members asked for */
    size_t n;               /* of them */
    jscan_element_fn each;  /* an array's elements' visitor */
    void *user;             /* its argument */
    size_t open;            /* where the root starts */
    unsigned char *objects; /* a bit a level: 1 an object, 0 an array */
    size_t depth;
    size_t cap; /* bytes of `objects` */
};

static int push(struct scan *sc, bool object)
{
    if (sc->depth >= (size_t)JSCAN_DEPTH_MAX) {
        return -1;
    }
    if (sc->depth / 8 >= sc->cap) {
        size_t cap = sc->cap == 0 ? 64 : sc->cap * 2;
        unsigned char *grown = realloc(sc->objects, cap);
        if (grown == NULL) {
            return -1;
        }
        sc->objects = grown;
        sc->cap = cap;
    }
    unsigned char bit = (unsigned char)(1u << (sc->depth % 8));
    if (object) {
        sc->objects[sc->depth / 8] |= bit;
    } else {
        sc->objects[sc->depth / 8] &= (unsigned char)~bit;
    }
    sc->depth++;
    return 0;
}

/* Whether the innermost open value is an object (depth > 0). */
static bool in_object(const struct scan *sc)
{
    size_t d = sc->depth - 1;
    return (sc->objects[d / 8] >> (d % 8)) & 1u;
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Appends byte `c` to a decoded name; a name too long for the buffer matches none. */
static void name_put(char *name, size_t *n, unsigned char c)
{
    if (*n < NAME_MAX_SCAN) {
        name[*n] = (char)c;
    }
    (*n)++;
}

/* The string at sc->i (its '"'), up to past its closing quote. With `name`, decodes it there
 * (NAME_MAX_SCAN bytes and a NUL at most; *name_len is its length, more when it was cut; a
 * \u0000 ends it, as json-c's C-string keys end there). Returns 0 or -1. */
static int string(struct scan *sc, char *name, size_t *name_len)
{
    size_t n = 0;
    bool ended = false; /* at a \u0000 */
    sc->i++;
    while (sc->i < sc->len) {
        unsigned char c = sc->s[sc->i++];
        if (c == '"') {
            if (name != NULL) {
                name[n < NAME_MAX_SCAN ? n : NAME_MAX_SCAN] = '\0';
                *name_len = n;
            }
            return 0;
        }
        if (c == '\0') { /* json-c ends its input there; other raw control characters it takes */
            return -1;
        }
        if (c != '\\') {
            if (name != NULL && !ended) {
                name_put(name, &n, c);
            }
            continue;
        }
        if (sc->i >= sc->len) {
            return -1;
        }
        unsigned char esc = sc->s[sc->i++];
        static const char from[] = "\"\\/bfnrt";
        static const char to[] = "\"\\/\b\f\n\r\t";
        const char *at = strchr(from, esc);
        if (esc != '\0' && at != NULL) {
            if (name != NULL && !ended) {
                name_put(name, &n, (unsigned char)to[at - from]);
            }
            continue;
        }
        if (esc != 'u' || sc->len - sc->i < 4) {
            return -1;
        }
        int code = 0;
        for (int k = 0; k < 4; k++) {
            int d = hex_digit(sc->s[sc->i++]);
            if (d < 0) {
                return -1;
            }
            code = code * 16 + d;
        }
        if (name != NULL && !ended) {
            if (code == 0) {
                ended = true;
            } else {
                /* a name asked for is ASCII: any other character only has to match none */
                name_put(name, &n, code < 0x80 ? (unsigned char)code : 0xff);
            }
        }
    }
    return -1;
}

static bool digit(const struct scan *sc)
{
    return sc->i < sc->len && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(struct scan *sc)
{
    if (sc->s[sc->i] == '-') {
        sc->i++;
    }
    if (!digit(sc)) {
        return -1;
    }
    if (sc->s[sc->i++] != '0') {
        while (digit(sc)) {
            sc->i++;
        }
    }
    if (sc->i < sc->len && sc->s[sc->i] == '.') {
        sc->i++;
        if (!digit(sc)) {
            return -1;
        }
        while (digit(sc)) {
            sc->i++;
        }
    }
    if (sc->i < sc->len && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
        sc->i++;
        if (sc->i < sc->len && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-')) {
            sc->i++;
        }
        if (!digit(sc)) {
            return -1;
        }
        while (digit(sc)) {
            sc->i++;
        }
    }
    return 0;
}

static int literal(struct scan *sc)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        size_t n = strlen(words[k]);
        if (sc->len - sc->i >= n && memcmp(sc->s + sc->i, words[k], n) == 0) {
            sc->i += n;
            return 0;
        }
    }
    return -1;
}

/* A scalar value at sc->i: a string, a number or a literal. Returns 0 or -1. */
static int scalar(struct scan *sc)
{
    unsigned char c = sc->s[sc->i];
    if (c == '"') {
        return string(sc, NULL, NULL);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        return number(sc);
    }
    return literal(sc);
}

enum want {
    WANT_VALUE,          /* after ':' or ',' in an array, and at the start */
    WANT_VALUE_OR_CLOSE, /* after '[' */
    WANT_NAME,           /* after ',' in an object */
    WANT_NAME_OR_CLOSE,  /* after '{' */
    WANT_COLON,
    WANT_COMMA_OR_CLOSE, /* after a value */
    WANT_NOTHING,        /* after the object */
};

/* The index in `m` of the member named `name` (`n` bytes decoded), or -1. */
static long member_index(const struct jscan_member *m, size_t count, const char *name, size_t n)
{
    for (size_t k = 0; n <= NAME_MAX_SCAN && k < count; k++) {
        if (strlen(m[k].name) == n && memcmp(m[k].name, name, n) == 0) {
            return (long)k;
        }
    }
    return -1;
}

static bool blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The scan itself; `sc` is set up and freed by the caller. Returns 0, -1 where the text breaks
 * (at sc->i), or -2 when sc->each refused an element. */
static int scan(struct scan *sc)
{
    enum want want = WANT_VALUE;
    long member = -1;    /* the top-level member whose value is being read, of `m` */
    size_t value_at = 0; /* where that value starts */
    for (;;) {
        while (sc->i < sc->len && blank(sc->s[sc->i])) {
            sc->i++;
        }
        if (sc->i == sc->len) {
            return want == WANT_NOTHING ? 0 : -1;
        }
        unsigned char c = sc->s[sc->i];
        bool closed = false; /* a value ended at sc->i */
        switch (want) {
        case WANT_VALUE:
        case WANT_VALUE_OR_CLOSE:
            if (sc->depth == 0 && c != sc->root) {
                return -1; /* not the kind of value asked for */
            }
            if (want == WANT_VALUE_OR_CLOSE && c == ']') {
                sc->depth--;
                sc->i++;
                closed = true;
                break;
            }
            if (sc->depth == 0) {
                sc->open = sc->i;
            } else if (sc->depth == 1) {
                value_at = sc->i;
            }
            if (c == '{' || c == '[') {
                if (push(sc, c == '{') < 0) {
                    return -1;
                }
                sc->i++;
                want = c == '{' ? WANT_NAME_OR_CLOSE : WANT_VALUE_OR_CLOSE;
                break;
            }
            if (scalar(sc) < 0) {
                return -1;
            }
            closed = true;
            break;
        case WANT_NAME:
        case WANT_NAME_OR_CLOSE:
            if (want == WANT_NAME_OR_CLOSE && c == '}') {
                sc->depth--;
                sc->i++;
                closed = true;
                break;
            }
            if (c != '"') {
                return -1;
            }
            if (sc->depth == 1) {
                char name[NAME_MAX_SCAN + 1];
                size_t name_len = 0;
                if (string(sc, name, &name_len) < 0) {
                    return -1;
                }
                member = member_index(sc->m, sc->n, name, name_len);
            } else if (string(sc, NULL, NULL) < 0) {
                return -1;
            }
            want = WANT_COLON;
            break;
        case WANT_COLON:
            if (c != ':') {
                return -1;
            }
            sc->i++;
            want = WANT_VALUE;
            break;
        case WANT_COMMA_OR_CLOSE:
            if (c == ',') {
                sc->i++;
                want = in_object(sc) ? WANT_NAME : WANT_VALUE;
                break;
            }
            if (c != (in_object(sc) ? '}' : ']')) {
                return -1;
            }
            sc->depth--;
            sc->i++;
            closed = true;
            break;
        case WANT_NOTHING:
            return -1; /* trailing data */
        }
        if (!closed) {
            continue;
        }
        if (sc->depth == 0) {
            want = WANT_NOTHING;
            continue;
        }
        if (sc->depth == 1 && member >= 0) { /* a top-level member's value ended */
            sc->m[member].at = value_at;
            sc->m[member].len = sc->i - value_at;
            member = -1;
        } else if (sc->depth == 1 && sc->root == '[' &&
                   sc->each(sc->user, (const char *)sc->s + value_at, sc->i - value_at) < 0) {
            return -2;
        }
        want = WANT_COMMA_OR_CLOSE;
    }
}

int jscan_members(const char *text, size_t len, struct jscan_member *m, size_t n, size_t *open)
{
    for (size_t k = 0; k < n; k++) {
        m[k].at = 0;
        m[k].len = 0;
    }
    struct scan sc = {.s = (const unsigned char *)text, .len = len, .root = '{', .m = m, .n = n};
    int rc = scan(&sc);
    free(sc.objects);
    *open = sc.open;
    return rc < 0 ? -1 : 0;
}

int jscan_elements(const char *text, size_t len, jscan_element_fn each, void *user, size_t *at)
{
    struct scan sc = {
        .s = (const unsigned char *)text, .len = len, .root = '[', .each = each, .user = user};
    int rc = scan(&sc);
    free(sc.objects);
    *at = sc.i;
    return rc;
}
