/* fuzz_awsmeta: libFuzzer target for the readers of a credentials endpoint's JSON answer, of a
 * credential_process's and of STS's XML one (awsmeta_parse(), awsmeta_parse_process(),
 * awsmeta_parse_sts() and awsmeta_time() in common/awsmeta.c), and for the splitting of a
 * credential_process's command into words (credproc_split() in common/credproc.c).
 *
 * The input is the answer's body, read as each. A parse that succeeds must give both keys
 * non-empty, every key shorter than its field and free of control characters (they go into
 * headers), and an Expiration that, written again as the endpoints write it, reads back the same. A
 * parse that fails must say why and leave the keys as they were. The input is also read as a time
 * on its own: a time that reads must write back to one that reads the same. Split as a command,
 * it must give at least one word and no more than CREDPROC_ARGS_MAX, none longer than the
 * input, or say why. Seeds:
 * tests/fuzz/seeds/fuzz_awsmeta/. Built only with -Dfuzz=true. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "awsmeta.h"
#include "credproc.h"
#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes `t` as the endpoints do and reads it back: the same time. */
static void check_time_round_trip(time_t t)
{
    struct tm tm;
    char text[64];
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        return; /* not a time the form can write */
    }
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    time_t again = 0;
    if (awsmeta_time(text, &again) < 0 || again != t) {
        abort();
    }
}

/* Parses `text` into `k`, whose keys start as "keep": a success must give keys that can be sent
 * and an Expiration that reads back; a failure must say why and leave `k` alone. */
enum form { JSON, PROCESS, STS };

static void parse_and_check(const char *text, size_t size, enum form f, struct awsmeta_keys *k)
{
    memset(k, 0, sizeof *k);
    strcpy(k->access_key, "keep");
    k->expires = 7;
    struct err e = {{0}};
    bool sts = f == STS;
    int rc = sts            ? awsmeta_parse_sts(text, k, &e)
             : f == PROCESS ? awsmeta_parse_process(text, size, k, &e)
                            : awsmeta_parse(text, size, k, &e);
    if (rc < 0) {
        if (e.msg[0] == '\0' || strcmp(k->access_key, "keep") != 0 || k->expires != 7) {
            abort();
        }
        return;
    }
    fuzz_check_key(k->access_key, sizeof k->access_key, true);
    fuzz_check_key(k->secret_key, sizeof k->secret_key, true);
    fuzz_check_key(k->session_token, sizeof k->session_token, sts);
    if (sts || k->expires != 0) {
        check_time_round_trip(k->expires);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct awsmeta_keys *k = malloc(sizeof *k);
    char *text = malloc(size + 1);
    if (k == NULL || text == NULL) {
        free(k);
        free(text);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    parse_and_check(text, size, JSON, k);    /* as an endpoint's JSON */
    parse_and_check(text, size, PROCESS, k); /* as a credential_process's */
    parse_and_check(text, size, STS, k);     /* as STS's XML (its token and Expiration required) */
    struct credproc_argv a;
    struct err e = {{0}};
    if (credproc_split(text, &a, &e) == 0) {
        if (a.argc < 1 || a.argc > CREDPROC_ARGS_MAX || a.argv[a.argc] != NULL) {
            abort();
        }
        for (size_t i = 0; i < a.argc; i++) {
            if (strlen(a.argv[i]) > size) {
                abort();
            }
        }
        credproc_argv_free(&a);
    } else if (e.msg[0] == '\0') {
        abort();
    }
    time_t t;
    if (awsmeta_time(text, &t) == 0) {
        check_time_round_trip(t);
    }
    free(text);
    free(k);
    return 0;
}
