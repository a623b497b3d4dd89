#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "awscreds.h"
#include "check.h"

/* Parses `text` for `profile`: 0 with the keys in *c, or -1 with why in `why`. */
static int parse(struct awscreds *c, const char *profile, const char *text, char *why)
{
    memset(c, 0, sizeof *c);
    snprintf(c->profile, sizeof c->profile, "%s", profile);
    struct err e = {{0}};
    int rc = awscreds_parse(c, text, &e);
    strcpy(why, e.msg);
    return rc;
}

static void test_parse(void)
{
    struct awscreds c;
    char why[ERR_MSG_MAX];
    /* the AWS tools' form: blanks around '=', comments, CRLF, other profiles around */
    const char *file = "# written by a credentials helper\r\n"
                       "[other]\n"
                       "aws_access_key_id = AKIDOTHER\n"
                       "aws_secret_access_key = other/secret\n"
                       "\n"
                       "[default]\r\n"
                       "; the fleet's keys\n"
                       "aws_access_key_id=AKIDDEFAULT\r\n"
                       "  aws_secret_access_key =  wJalr/K7MDENG+bPxRfiCY=  \r\n"
                       "aws_session_token = IQoJb3JpZ2luX2Vj//token==\n"
                       "region = eu-west-1\n"
                       "[ later ]\n"
                       "aws_access_key_id = AKIDLATER\n";
    CHECK_INT(parse(&c, "default", file, why), 0);
    CHECK_STR(c.access_key, "AKIDDEFAULT");
    CHECK_STR(c.secret_key, "wJalr/K7MDENG+bPxRfiCY=");
    CHECK_STR(c.session_token, "IQoJb3JpZ2luX2Vj//token==");
    CHECK_INT(parse(&c, "other", file, why), 0);
    CHECK_STR(c.access_key, "AKIDOTHER");
    CHECK_STR(c.session_token, "");
    /* "" is the default profile; a key's name in any case; the legacy aws_security_token */
    CHECK_INT(parse(&c, "",
                    "[default]\nAWS_Access_Key_Id=A1\naws_secret_access_key=S1\n"
                    "aws_security_token=T1\n",
                    why),
              0);
    CHECK_STR(c.access_key, "A1");
    CHECK_STR(c.session_token, "T1");
    CHECK_INT(parse(&c, "default",
                    "[default]\naws_access_key_id=A1\naws_secret_access_key=S1\n"
                    "aws_session_token=T2\naws_security_token=T1\n",
                    why),
              0);
    CHECK_STR(c.session_token, "T2");
    /* a section line with a comment after it is a section all the same (its keys were taken
     * for the section above); "key: value"; a byte order mark */
    CHECK_INT(parse(&c, "default",
                    "[default]\naws_access_key_id=A1\naws_secret_access_key=S1\n"
                    "[prod] # production\naws_access_key_id=P1\naws_secret_access_key=P2\n"
                    "[broken\naws_session_token=T9\n",
                    why),
              0);
    CHECK_STR(c.access_key, "A1");
    CHECK_STR(c.secret_key, "S1");
    CHECK_STR(c.session_token, "");
    CHECK_INT(parse(&c, "prod",
                    "\xef\xbb\xbf[prod]\naws_access_key_id: P1\n"
                    "aws_secret_access_key :P2=x:y\n",
                    why),
              0);
    CHECK_STR(c.access_key, "P1");
    CHECK_STR(c.secret_key, "P2=x:y");
    /* refused, saying why, and the keys in *c left alone */
    CHECK_INT(parse(&c, "missing", file, why), -1);
    CHECK_STR(why, "no profile [missing] in it");
    CHECK_INT(parse(&c, "later", file, why), -1);
    CHECK_STR(why, "profile [later] has no aws_secret_access_key (keys written in the file or a "
                   "credential_process are read: not sso_* or role_arn)");
    CHECK_STR(c.access_key, "");
    CHECK_INT(parse(&c, "default", "[default]\naws_access_key_id=\naws_secret_access_key=S\n", why),
              -1);
    CHECK(strstr(why, "profile [default] has no aws_access_key_id (") == why);
    CHECK_INT(
        parse(&c, "default", "[default]\naws_access_key_id=A\taB\naws_secret_access_key=S\n", why),
        -1);
    CHECK_STR(why, "profile [default]: aws_access_key_id holds a control character");
    char *big = malloc(CFG_TOKEN_MAX + 100);
    int n = snprintf(big, 100,
                     "[default]\naws_access_key_id=A\naws_secret_access_key=S\n"
                     "aws_session_token=");
    memset(big + n, 'x', CFG_TOKEN_MAX);
    big[n + CFG_TOKEN_MAX] = '\0';
    CHECK_INT(parse(&c, "default", big, why), -1);
    CHECK_STR(why, "profile [default]: aws_session_token is longer than 8191 bytes");
    big[n + CFG_TOKEN_MAX - 1] = '\0';
    CHECK_INT(parse(&c, "default", big, why), 0);
    CHECK_INT(strlen(c.session_token), CFG_TOKEN_MAX - 1);
    free(big);
    /* names are matched whole: a section or key that only starts like one is another one; a
     * profile's name in its case, a key's in any (as the AWS tools read them) */
    CHECK_INT(parse(&c, "default", "[def]\naws_access_key_id=A\naws_secret_access_key=S\n", why),
              -1);
    CHECK_STR(why, "no profile [default] in it");
    CHECK_INT(
        parse(&c, "default", "[Default]\naws_access_key_id=A\naws_secret_access_key=S\n", why), -1);
    CHECK_STR(why, "no profile [default] in it");
    CHECK_INT(parse(&c, "default", "[default]\naws_access_key=A\naws_secret_access_key=S\n", why),
              -1);
    CHECK(strstr(why, "profile [default] has no aws_access_key_id (") == why);
    CHECK_INT(parse(&c, "default",
                    "[default]\naws_access_key_id=A\naws_secret_access_key=S\naws_security=T\n",
                    why),
              0);
    CHECK_STR(c.session_token, "");
    CHECK_INT(parse(&c, "default", "[default]\ncredential = helper\n", why), -1);
    CHECK(strstr(why, "profile [default] has no aws_access_key_id (") == why);
    CHECK_INT(parse(&c, "default", "[default]\nCredential_Process = helper\n", why), 0);
    CHECK_STR(c.process, "helper");
    /* a comment line ('#' or ';') does not end a command's indented lines; a section does */
    CHECK_INT(
        parse(&c, "p", "[p]\ncredential_process = a\n; c\n  b\n# d\n  c\n[q]\n  region = x\n", why),
        0);
    CHECK_STR(c.process, "a b c");
    /* a command is one byte shorter than CFG_STR_MAX at most, its indented lines joined by a
     * blank; a control character other than TAB (DEL too) is refused */
    char *cmd = malloc(2 * CFG_STR_MAX);
    for (int extra = 0; extra < 2; extra++) {
        int k = snprintf(cmd, 64, "[p]\ncredential_process = ");
        memset(cmd + k, 'a', 500);
        k += 500;
        k += snprintf(cmd + k, 64, "\n  ");
        memset(cmd + k, 'b', CFG_STR_MAX - 1 - 501 + extra);
        cmd[k + CFG_STR_MAX - 1 - 501 + extra] = '\0';
        CHECK_INT(parse(&c, "p", cmd, why), extra == 0 ? 0 : -1);
        CHECK_INT(strlen(c.process), extra == 0 ? CFG_STR_MAX - 1 : 0);
    }
    CHECK_STR(why, "profile [p]: credential_process is too long");
    free(cmd);
    CHECK_INT(parse(&c, "p",
                    "[p]\ncredential_process = a\x7f"
                    "b\n",
                    why),
              -1);
    CHECK_STR(why, "profile [p]: credential_process holds a control character");
    CHECK_INT(parse(&c, "p",
                    "[p]\ncredential_process = a\x1f"
                    "b\n",
                    why),
              -1);
    CHECK_STR(why, "profile [p]: credential_process holds a control character");
    /* a profile with no aws_access_key_id goes to its credential_process, as the AWS tools'
     * (one with that key and no secret is refused) */
    CHECK_INT(parse(&c, "p", "[p]\naws_secret_access_key=S\ncredential_process = helper\n", why),
              0);
    CHECK_STR(c.process, "helper");
    CHECK_STR(c.secret_key, "");
    CHECK_INT(parse(&c, "p", "[p]\naws_access_key_id=A\ncredential_process = helper\n", why), -1);
    CHECK(strstr(why, "profile [p] has no aws_secret_access_key (") == why);
    /* parsed again: keys, then a program, then keys: what the last one has, nothing else */
    struct err e = {{0}};
    CHECK_INT(parse(&c, "p",
                    "[p]\naws_access_key_id=A\naws_secret_access_key=S\n"
                    "aws_session_token=T\n",
                    why),
              0);
    CHECK_INT(awscreds_parse(&c, "[p]\ncredential_process = helper\n", &e), 0);
    CHECK_STR(c.access_key, "");
    CHECK_STR(c.secret_key, "");
    CHECK_STR(c.session_token, "");
    CHECK_INT(awscreds_parse(&c, "[p]\naws_access_key_id=A\naws_secret_access_key=S\n", &e), 0);
    CHECK_STR(c.process, "");
    CHECK_STR(c.access_key, "A");
    /* only a line indented deeper than the credential_process line goes on it, as the AWS
     * tools read a file whose keys are all indented */
    CHECK_INT(parse(&c, "p",
                    "[p]\n  credential_process = helper --x\n  region = eu-west-1\n"
                    "    --not-this\n",
                    why),
              0);
    CHECK_STR(c.process, "helper --x");
    CHECK_INT(parse(&c, "p", "[p]\n  credential_process = helper --x\n   --y 1\n\t\t\t--z\n", why),
              0);
    CHECK_STR(c.process, "helper --x --y 1 --z");
    /* a TAB inside the command is a blank, not a control character; a second
     * credential_process line replaces the first (with its indented lines), as a key given
     * twice does */
    CHECK_INT(parse(&c, "p", "[p]\ncredential_process = helper\t--x\n", why), 0);
    CHECK_STR(c.process, "helper\t--x");
    CHECK_INT(
        parse(&c, "p", "[p]\ncredential_process = old\n  --a\ncredential_process = new --b\n", why),
        0);
    CHECK_STR(c.process, "new --b");
}

static void test_refresh(void)
{
    char dir[] = "/tmp/pixq-awscreds-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/credentials", dir);
    struct awscreds *c = malloc(sizeof *c);
    struct cfg *cfg = malloc(sizeof *cfg);
    cfg_defaults(cfg);
    snprintf(cfg->aws_shared_credentials_file, sizeof cfg->aws_shared_credentials_file, "%s", path);
    cfg->aws_profile[0] = '\0';
    struct err e = {{0}};
    /* a file that is not there */
    CHECK_INT(awscreds_init(c, cfg, true, &e), -1);
    CHECK_STR(e.msg, "No such file or directory");
    CHECK(!c->loaded);
    check_replace_file(path, "[default]\naws_access_key_id=AKID1\naws_secret_access_key=S1\n");
    CHECK_INT(awscreds_init(c, cfg, true, &e), 0);
    CHECK_STR(c->access_key, "AKID1");
    CHECK_STR(c->profile, "default");
    /* unchanged: not read again; forced: read, the same keys */
    CHECK_INT(awscreds_refresh(c, false, &e), 0);
    CHECK_INT(awscreds_refresh(c, true, &e), 0);
    /* replaced with new keys */
    check_replace_file(path, "[default]\naws_access_key_id=AKID2\naws_secret_access_key=S2\n"
                             "aws_session_token=T2\n");
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->access_key, "AKID2");
    CHECK_STR(c->session_token, "T2");
    CHECK_INT(awscreds_refresh(c, false, &e), 0);
    /* rewritten without a key, then gone: the keys in use stay */
    check_replace_file(path, "[default]\naws_access_key_id=AKID3\n");
    e = (struct err){{0}};
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "profile [default] has no aws_secret_access_key") != NULL);
    CHECK_STR(c->access_key, "AKID2");
    CHECK_INT(awscreds_refresh(c, false, &e), 0); /* the same refused file: nothing new */
    CHECK_INT(awscreds_refresh(c, true, &e), -1); /* forced: read again, refused again */
    unlink(path);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK_STR(c->access_key, "AKID2");
    CHECK(c->loaded);
    /* back, with a token only changed */
    check_replace_file(path, "[default]\naws_access_key_id=AKID2\naws_secret_access_key=S2\n"
                             "aws_session_token=T3\n");
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->session_token, "T3");
    /* rewritten in place to the same keys: read again, no change */
    FILE *f = fopen(path, "a");
    fputs("# touched\n", f);
    fclose(f);
    CHECK_INT(awscreds_refresh(c, false, &e), 0);
    CHECK_STR(c->session_token, "T3");
    /* a secret only changed */
    check_replace_file(path, "[default]\naws_access_key_id=AKID2\naws_secret_access_key=S4\n"
                             "aws_session_token=T3\n");
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->secret_key, "S4");
    /* rewritten in place, as long, its mtime put back: its ctime tells */
    struct stat before;
    CHECK_INT(stat(path, &before), 0);
    struct timespec ms20 = {0, 20000000};
    nanosleep(&ms20, NULL);
    f = fopen(path, "r+");
    fputs("[default]\naws_access_key_id=AKID2\naws_secret_access_key=S5\n", f);
    fclose(f);
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    CHECK_INT(utimensat(AT_FDCWD, path, times, 0), 0);
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->secret_key, "S5");
    /* a FIFO is no file, and opening it does not wait for a writer */
    unlink(path);
    CHECK_INT(mkfifo(path, 0600), 0);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "not a regular file") != NULL);
    CHECK_STR(c->session_token, "T3");
    /* a directory is no file */
    unlink(path);
    CHECK_INT(mkdir(path, 0700), 0);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "not a regular file") != NULL);
    rmdir(path);
    /* AWSCREDS_FILE_MAX bytes at most, and no NUL byte */
    char *text = malloc(AWSCREDS_FILE_MAX + 2);
    int k = snprintf(text, 128, "[default]\naws_access_key_id=AKIDBIG\naws_secret_access_key=S\n");
    memset(text + k, '#', (size_t)(AWSCREDS_FILE_MAX - k));
    text[AWSCREDS_FILE_MAX] = '\0';
    check_replace_file(path, text);
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->access_key, "AKIDBIG");
    text[AWSCREDS_FILE_MAX] = '#';
    text[AWSCREDS_FILE_MAX + 1] = '\0';
    check_replace_file(path, text);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "larger than 1048576 bytes") != NULL);
    free(text);
    static const char nul[] = "[default]\naws_access_key_id=AKIDNUL\0\naws_secret_access_key=S\n";
    f = fopen(path, "w");
    CHECK(f != NULL && fwrite(nul, 1, sizeof nul - 1, f) == sizeof nul - 1);
    fclose(f);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "it holds a NUL byte") != NULL);
    CHECK_STR(c->access_key, "AKIDBIG");
    unlink(path);
    rmdir(dir);
    free(c);
    free(cfg);
}

/* When keys from an endpoint are fetched again, and the waits after failed fetches. */
static void test_schedule(void)
{
    const long at = 1000000, lead = 300000, retry = 1000;
    /* an hour left: 5 minutes before they expire */
    CHECK_INT(awscreds_due_ms(at, 3600000, lead, retry), at + 3300000);
    /* no Expiration: only when forced */
    CHECK_INT(awscreds_due_ms(at, LONG_MAX, lead, retry), LONG_MAX);
    /* within the lead (the endpoint still serves them): a quarter of what is left */
    CHECK_INT(awscreds_due_ms(at, 240000, lead, retry), at + 60000);
    CHECK_INT(awscreds_due_ms(at, lead, lead, retry), at + lead / 4);
    CHECK_INT(awscreds_due_ms(at, lead + 1, lead, retry), at + 1); /* a lifetime just over it */
    CHECK_INT(awscreds_due_ms(at, 2000, lead, retry), at + 1000);  /* at least retry_ms */
    /* already expired by this clock (ahead of the endpoint's?): not every retry_ms */
    CHECK_INT(awscreds_due_ms(at, 0, lead, retry), at + AWSCREDS_EXPIRED_WAIT_MS);
    CHECK_INT(awscreds_due_ms(at, -5000000, lead, retry), at + AWSCREDS_EXPIRED_WAIT_MS);
    /* failures in a row: retry_ms, doubled each time, up to the cap */
    CHECK_INT(awscreds_backoff_ms(1, 1000, 30000), 1000);
    CHECK_INT(awscreds_backoff_ms(2, 1000, 30000), 2000);
    CHECK_INT(awscreds_backoff_ms(5, 1000, 30000), 16000);
    CHECK_INT(awscreds_backoff_ms(6, 1000, 30000), 30000);
    CHECK_INT(awscreds_backoff_ms(1000, 1000, 30000), 30000);
    CHECK_INT(awscreds_backoff_ms(3, 1000, 500), 1000); /* a cap below the least: the least */
}

int main(void)
{
    test_parse();
    test_refresh();
    test_schedule();
    return check_summary("awscreds");
}
