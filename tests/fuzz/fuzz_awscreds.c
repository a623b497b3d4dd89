/* fuzz_awscreds: libFuzzer target for the AWS shared credentials file parser (common/awscreds.c).
 *
 * The input is the file's text, for the profile "default" and for "p". A parse that succeeds
 * must give both keys non-empty, every key shorter than its field and free of control
 * characters (they go into headers), and the same keys when the file is written again in the
 * plain form (`[p]` then `name = value` lines) and parsed once more; or, for a profile with no
 * keys that names a credential_process, no keys and the command, non-empty, free of control
 * characters but TAB and the same when written again. A parse that fails must leave the keys as
 * they were. Seeds: tests/fuzz/seeds/fuzz_awscreds/. Built only with -Dfuzz=true. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awscreds.h"
#include "fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses `text` for `profile` into a fresh `c` whose keys start as "keep"; checks the result. */
static void parse_and_check(struct awscreds *c, const char *profile, const char *text)
{
    memset(c, 0, sizeof *c);
    snprintf(c->profile, sizeof c->profile, "%s", profile);
    strcpy(c->access_key, "keep");
    strcpy(c->secret_key, "keep");
    strcpy(c->session_token, "keep");
    struct err e = {{0}};
    if (awscreds_parse(c, text, &e) < 0) {
        if (e.msg[0] == '\0' || strcmp(c->access_key, "keep") != 0 ||
            strcmp(c->secret_key, "keep") != 0 || strcmp(c->session_token, "keep") != 0) {
            abort();
        }
        return;
    }
    if (c->process[0] != '\0') {
        if (c->access_key[0] != '\0' || c->secret_key[0] != '\0' || c->session_token[0] != '\0') {
            abort();
        }
        size_t n = strlen(c->process);
        if (n == 0 || n >= sizeof c->process) {
            abort();
        }
        for (size_t i = 0; i < n; i++) { /* a TAB separates its words */
            unsigned char ch = (unsigned char)c->process[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                abort();
            }
        }
        char again[sizeof c->process + 64];
        snprintf(again, sizeof again, "[p]\ncredential_process = %s\n", c->process);
        struct awscreds *d = calloc(1, sizeof *d);
        if (d != NULL) {
            strcpy(d->profile, "p");
            if (awscreds_parse(d, again, &e) < 0 || strcmp(d->process, c->process) != 0) {
                abort();
            }
        }
        free(d);
        return;
    }
    fuzz_check_key(c->access_key, sizeof c->access_key, true);
    fuzz_check_key(c->secret_key, sizeof c->secret_key, true);
    fuzz_check_key(c->session_token, sizeof c->session_token, false);
    /* written again plainly, the same keys: values are kept whole, blanks around them aside */
    size_t cap = strlen(c->access_key) + strlen(c->secret_key) + strlen(c->session_token) + 256;
    char *again = malloc(cap);
    if (again == NULL) {
        return;
    }
    snprintf(again, cap,
             "[p]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n",
             c->access_key, c->secret_key, c->session_token);
    struct awscreds *d = malloc(sizeof *d);
    if (d != NULL) {
        memset(d, 0, sizeof *d);
        strcpy(d->profile, "p");
        if (awscreds_parse(d, again, &e) < 0 || strcmp(d->access_key, c->access_key) != 0 ||
            strcmp(d->secret_key, c->secret_key) != 0 ||
            strcmp(d->session_token, c->session_token) != 0) {
            abort();
        }
    }
    free(d);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) {
        return 0;
    }
    char *text = malloc(size + 1);
    struct awscreds *c = malloc(sizeof *c);
    if (text != NULL && c != NULL) {
        memcpy(text, data, size);
        text[size] = '\0';
        parse_and_check(c, "default", text);
        parse_and_check(c, "p", text);
    }
    free(c);
    free(text);
    return 0;
}
