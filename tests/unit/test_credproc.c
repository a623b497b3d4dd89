/* credproc: a credential_process's command split into words and run; its output read as keys
 * (awsmeta_parse_process), and a credentials file's profile that names one (awscreds). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "awscreds.h"
#include "awsmeta.h"
#include "check.h"
#include "clock.h"
#include "credproc.h"
#include "log.h"

/* `cmd` split: its words joined with '|', or "!" and why. */
static void split(const char *cmd, char *out, size_t cap)
{
    struct credproc_argv a;
    struct err e = {{0}};
    if (credproc_split(cmd, &a, &e) < 0) {
        snprintf(out, cap, "!%s", e.msg);
        return;
    }
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a.argc; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i > 0 ? "|" : "", a.argv[i]);
    }
    CHECK(a.argv[a.argc] == NULL);
    credproc_argv_free(&a);
}

static void test_split(void)
{
    char got[1024];
    split("aws_signing_helper credential-process --region eu-west-1", got, sizeof got);
    CHECK_STR(got, "aws_signing_helper|credential-process|--region|eu-west-1");
    split("  /opt/bin/helper\t--name  'two words'  ", got, sizeof got);
    CHECK_STR(got, "/opt/bin/helper|--name|two words");
    /* quotes within a word, an empty word, escapes as Python's shlex reads them (the AWS CLI's
     * split: within "..." a backslash escapes only a backslash or a quote) */
    split("a'b c'd \"\" x\\ y \"q\\\"u\\$o\\n\" 'no\\escape'", got, sizeof got);
    CHECK_STR(got, "ab cd||x y|q\"u\\$o\\n|no\\escape");
    split("h\tx  \"a\\$b\"", got, sizeof got);
    CHECK_STR(got, "h|x|a\\$b");
    split("a\rb\nc \"x\\\\y\"", got, sizeof got);
    CHECK_STR(got, "a|b|c|x\\y");
    split("helper --json='{\"a\": 1}'", got, sizeof got);
    CHECK_STR(got, "helper|--json={\"a\": 1}");
    split("", got, sizeof got);
    CHECK_STR(got, "!the command is empty");
    split("   ", got, sizeof got);
    CHECK_STR(got, "!the command is empty");
    split("helper 'open", got, sizeof got);
    CHECK_STR(got, "!the command has a ' that is not closed");
    split("helper \"open", got, sizeof got);
    CHECK_STR(got, "!the command has a \" that is not closed");
    split("helper \\", got, sizeof got);
    CHECK_STR(got, "!the command ends with a backslash");
    char many[1024] = "h";
    for (int i = 0; i < CREDPROC_ARGS_MAX; i++) {
        strcat(many, " a");
    }
    split(many, got, sizeof got);
    CHECK_STR(got, "!the command has more than 256 words");
    many[strlen(many) - 2] = '\0';
    split(many, got, sizeof got);
    CHECK(got[0] == 'h');
}

/* Runs `cmd` for at most `ms`: 0 with its output in `out`, or -1 with why. */
static int run(const char *cmd, long ms, char *out, size_t cap)
{
    struct buf b;
    buf_init(&b, 0);
    struct err e = {{0}};
    int rc = credproc_run(cmd, ms, &b, &e);
    snprintf(out, cap, "%.*s", (int)b.len, b.len > 0 ? b.data : "");
    if (rc < 0) {
        snprintf(out, cap, "%s", e.msg);
    }
    buf_finish(&b);
    return rc;
}

/* Whether process `pid` is gone (or a zombie nobody has reaped yet). */
static bool gone(pid_t pid)
{
    char path[64], stat[256] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return true;
    }
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    stat[n] = '\0';
    fclose(f);
    const char *close = strrchr(stat, ')');
    return close != NULL && close[1] == ' ' && close[2] == 'Z';
}

/* The pid written in file `path`, or 0 when it holds none (yet). */
static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f != NULL) {
        pid = fscanf(f, "%d", &pid) == 1 ? pid : 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* Whether process `pid` is gone within `ms`, looked at every 10 ms. */
static bool gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms / 10 && !gone(pid); i++) {
        struct timespec ms10 = {0, 10000000};
        nanosleep(&ms10, NULL);
    }
    return gone(pid);
}

static void test_run(void)
{
    char got[1024];
    CHECK_INT(run("/bin/sh -c 'printf \"%s\" \"{\\\"Version\\\": 1}\"'", 5000, got, sizeof got), 0);
    CHECK_STR(got, "{\"Version\": 1}");
    /* the environment, less pixq's settings */
    setenv("PIXQ_POSTBACK_SECRET", "do-not-pass", 1);
    setenv("HTTPS_PROXY", "http://proxy.invalid:3128", 1);
    setenv("PIXQUE", "not-pixq", 1);
    CHECK_INT(run("sh -c 'echo \"[$PIXQ_POSTBACK_SECRET][$HTTPS_PROXY][$PIXQUE]\"'", 5000, got,
                  sizeof got),
              0);
    CHECK_STR(got, "[][http://proxy.invalid:3128][not-pixq]\n");
    unsetenv("PIXQUE");
    unsetenv("PIXQ_POSTBACK_SECRET");
    unsetenv("HTTPS_PROXY");
    /* found on PATH; its input is /dev/null, not the worker's */
    int saved_in = dup(STDIN_FILENO), in[2];
    CHECK(saved_in >= 0 && pipe(in) == 0 && dup2(in[0], STDIN_FILENO) == 0);
    CHECK_INT(write(in[1], "worker's\n", 9), 9);
    close(in[1]);
    close(in[0]);
    CHECK_INT(run("sh -c 'cat; echo done'", 5000, got, sizeof got), 0);
    CHECK_STR(got, "done\n");
    dup2(saved_in, STDIN_FILENO);
    close(saved_in);
    /* its standard error read as it comes, after its output closed too; DEL is a blank */
    CHECK_INT(run("sh -c 'exec >&-; printf a >&2; sleep 0.1; printf \"b\\177c\" >&2; exit 1'", 5000,
                  got, sizeof got),
              -1);
    CHECK_STR(got, "sh ended with status 1: ab c");
    /* a status other than 0, with what it said on its standard error (one line, trimmed) */
    CHECK_INT(run("sh -c 'echo keys >&1; printf \"\\n  token expired:\\trun login \\n\" >&2; "
                  "exit 3'",
                  5000, got, sizeof got),
              -1);
    CHECK_STR(got, "sh ended with status 3: token expired: run login");
    CHECK_INT(run("false", 5000, got, sizeof got), -1);
    CHECK_STR(got, "false ended with status 1 (nothing on its standard error)");
    CHECK_INT(run("sh -c 'kill -TERM $$'", 5000, got, sizeof got), -1);
    CHECK_STR(got, "sh was ended by signal 15");
    /* signals the worker ignores are the program's own again: SIGPIPE (13) not ignored */
    signal(SIGPIPE, SIG_IGN);
    CHECK_INT(run("sh -c 'grep SigIgn /proc/$$/status'", 5000, got, sizeof got), 0);
    unsigned long long ignored = ~0ULL;
    CHECK(sscanf(got, "SigIgn: %llx", &ignored) == 1);
    CHECK((ignored & (1ULL << (SIGPIPE - 1))) == 0);
    signal(SIGPIPE, SIG_DFL);
    /* none of the worker's descriptors but its three (Redis's and S3's connections are not
     * close-on-exec) */
    int fd0 = open("/dev/null", O_RDONLY), fd = open("/dev/null", O_RDONLY);
    CHECK(fd0 > 2 && fd > fd0);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "sh -c 'ls /proc/$$/fd; test -e /proc/$$/fd/%d && echo leaked; exit 0'", fd);
    CHECK_INT(run(cmd, 5000, got, sizeof got), 0);
    CHECK_STR(got, "0\n1\n2\n");
    close(fd);
    close(fd0);
    CHECK_INT(run("/nonexistent/helper --x", 5000, got, sizeof got), -1);
    CHECK_STR(got, "cannot run /nonexistent/helper: No such file or directory");
    /* a file that may be run but is no program: why its exec failed, from the child */
    char junk[] = "/tmp/pixq-credproc-junk-XXXXXX";
    int jfd = mkstemp(junk);
    CHECK(jfd >= 0 && write(jfd, "\x7f\x01\x02junk", 7) == 7 && fchmod(jfd, 0700) == 0);
    close(jfd);
    CHECK_INT(run(junk, 5000, got, sizeof got), -1);
    char want[128];
    snprintf(want, sizeof want, "cannot run %s: Exec format error", junk);
    CHECK_STR(got, want);
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD); /* reaped */
    unlink(junk);
    CHECK_INT(run("helper 'open", 5000, got, sizeof got), -1);
    CHECK_STR(got, "the command has a ' that is not closed");
    CHECK_INT(run("sh -c 'head -c 70000 /dev/zero'", 5000, got, sizeof got), -1);
    CHECK_STR(got, "sh wrote more than 65536 bytes");
    CHECK_INT(run("sh -c 'head -c 65537 /dev/zero'", 5000, got, sizeof got), -1);
    CHECK_STR(got, "sh wrote more than 65536 bytes");
    struct buf all;
    buf_init(&all, 0);
    struct err e = {{0}};
    CHECK_INT(credproc_run("sh -c 'head -c 65536 /dev/zero'", 5000, &all, &e), 0);
    CHECK_INT(all.len, CREDPROC_OUTPUT_MAX);
    buf_finish(&all);
    /* out of time: the program and what it started are ended together */
    char dir[] = "/tmp/pixq-credproc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pidfile[256];
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    snprintf(cmd, sizeof cmd, "sh -c 'sleep 30 & echo $! > %s; wait'", pidfile);
    long t0 = clock_mono_ms();
    CHECK_INT(run(cmd, 1000, got, sizeof got), -1);
    long took = clock_mono_ms() - t0;
    CHECK_STR(got, "sh did not end within 1000 ms (PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS)");
    CHECK(took >= 1000 && took < 1900);
    pid_t child = read_pid(pidfile);
    CHECK(child > 0 && gone_within(child, 1000));
    unlink(pidfile);
    /* a program that closes its output and goes on is waited for up to the deadline too, and
     * then ended */
    snprintf(cmd, sizeof cmd, "sh -c 'exec >&- 2>&-; echo $$ > %s; exec sleep 30'", pidfile);
    t0 = clock_mono_ms();
    CHECK_INT(run(cmd, 300, got, sizeof got), -1);
    CHECK(clock_mono_ms() - t0 < 3000);
    CHECK_STR(got, "sh did not end within 300 ms (PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS)");
    child = read_pid(pidfile);
    CHECK(child > 0 && gone(child)); /* reaped by run() */
    unlink(pidfile);
    /* the pipes it closed are not looked at again: it is waited for without spinning */
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    CHECK_INT(run("sh -c 'exec >&- 2>&-; sleep 0.4'", 5000, got, sizeof got), 0);
    getrusage(RUSAGE_SELF, &r1);
    long cpu_ms =
        (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) *
            1000L +
        (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) /
            1000L;
    CHECK(cpu_ms < 200);
    /* a worker killed while its program hangs leaves no program behind */
    snprintf(cmd, sizeof cmd, "sh -c 'echo $$ > %s; exec sleep 30'", pidfile);
    pid_t worker = fork();
    if (worker == 0) {
        char said[256];
        run(cmd, 60000, said, sizeof said);
        _exit(0);
    }
    child = 0;
    for (int i = 0; i < 500 && child == 0; i++) {
        struct timespec ms10 = {0, 10000000};
        nanosleep(&ms10, NULL);
        child = read_pid(pidfile);
    }
    CHECK(worker > 0 && child > 0 && !gone(child));
    kill(worker, SIGKILL);
    waitpid(worker, NULL, 0);
    CHECK(child > 0 && gone_within(child, 2000));
    if (child > 0 && !gone(child)) {
        kill(child, SIGKILL);
    }
    unlink(pidfile);
    /* a program that ended, leaving a child that holds its standard error: its output is
     * judged at once, not at the deadline */
    t0 = clock_mono_ms();
    CHECK_INT(run("sh -c 'sleep 2 >/dev/null & printf keys'", 5000, got, sizeof got), 0);
    took = clock_mono_ms() - t0;
    CHECK_STR(got, "keys");
    CHECK(took < 1500);
    /* ... and one whose child holds its output too: its end is looked for meanwhile */
    t0 = clock_mono_ms();
    CHECK_INT(run("sh -c 'printf keys; sleep 2 & sleep 0.2'", 5000, got, sizeof got), 0);
    took = clock_mono_ms() - t0;
    CHECK_STR(got, "keys");
    CHECK(took < 1500);
    rmdir(dir);
}

/* credproc_check(): "" when the program can be run, else why. */
static void check(const char *cmd, char *out, size_t cap)
{
    struct err e = {{0}};
    snprintf(out, cap, "%s", credproc_check(cmd, &e) == 0 ? "" : e.msg);
}

static void test_check(void)
{
    char got[1024], cmd[512];
    check("sh -c true", got, sizeof got);
    CHECK_STR(got, "");
    check("/bin/sh", got, sizeof got);
    CHECK_STR(got, "");
    check("/nonexistent/helper --x", got, sizeof got);
    CHECK_STR(got, "/nonexistent/helper cannot be run: No such file or directory");
    setenv("PATH", "/nonexistent:/bin", 1);
    check("pixq-no-such-helper", got, sizeof got);
    CHECK_STR(got, "pixq-no-such-helper is not found on PATH (/nonexistent:/bin)");
    check("sh", got, sizeof got);
    CHECK_STR(got, "");
    char dir[] = "/tmp/pixq-credproc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd, "%s/helper", dir);
    FILE *f = fopen(cmd, "w");
    fclose(f);
    chmod(cmd, 0644); /* not executable, even by root */
    check(cmd, got, sizeof got);
    CHECK(strstr(got, "cannot be run: Permission denied") != NULL);
    setenv("PATH", dir, 1);
    check("helper", got, sizeof got);
    CHECK_STR(got, "helper cannot be run: Permission denied");
    char path[600];
    snprintf(path, sizeof path, "%s:/nonexistent", dir); /* "not allowed" beats "not there" */
    setenv("PATH", path, 1);
    check("helper", got, sizeof got);
    CHECK_STR(got, "helper cannot be run: Permission denied");
    chmod(cmd, 0755); /* an empty element is the current directory, as execvp reads it */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL && chdir(dir) == 0);
    setenv("PATH", "/nonexistent:", 1);
    check("helper", got, sizeof got);
    CHECK_STR(got, "");
    setenv("PATH", "/nonexistent::/bin", 1);
    check("helper", got, sizeof got);
    CHECK_STR(got, "");
    setenv("PATH", "", 1);
    check("helper", got, sizeof got);
    CHECK_STR(got, "");
    CHECK(chdir(cwd) == 0);
    unsetenv("PATH"); /* none: glibc's default */
    check("sh", got, sizeof got);
    CHECK_STR(got, "");
    check(dir, got, sizeof got); /* a directory */
    CHECK(strstr(got, "cannot be run: Permission denied") != NULL);
    setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
    unlink(cmd);
    rmdir(dir);
}

static void test_parse_process(void)
{
    struct awsmeta_keys k;
    struct err e = {{0}};
    const char *good = "{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC\", \"SecretAccessKey\": "
                       "\"s/p\", \"SessionToken\": \"tok\", \"Expiration\": "
                       "\"2026-12-03T10:00:00Z\"}";
    CHECK_INT(awsmeta_parse_process(good, strlen(good), &k, &e), 0);
    CHECK_STR(k.access_key, "ASIAPROC");
    CHECK_STR(k.secret_key, "s/p");
    CHECK_STR(k.session_token, "tok");
    CHECK_INT((long long)k.expires, 1796292000LL);
    /* long-term keys: no token, no Expiration; "Token" is the endpoints' name, not read here */
    const char *plain = "{\"Version\": 1, \"AccessKeyId\": \"AKIA\", \"SecretAccessKey\": \"s\", "
                        "\"Token\": \"not-this\"}";
    CHECK_INT(awsmeta_parse_process(plain, strlen(plain), &k, &e), 0);
    CHECK_STR(k.session_token, "");
    CHECK_INT((long long)k.expires, 0);
    /* Version 1.0 is 1; an Expiration with an offset (botocore's and Go's readers take one);
     * a Code is the endpoints', not looked at here */
    const char *other =
        "{\"Version\": 1.0, \"Code\": \"Failed\", \"AccessKeyId\": \"A\", "
        "\"SecretAccessKey\": \"s\", \"Expiration\": \"2026-12-03T12:00:00+02:00\"}";
    CHECK_INT(awsmeta_parse_process(other, strlen(other), &k, &e), 0);
    CHECK_INT((long long)k.expires, 1796292000LL);
    const char *v2 = "{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}";
    CHECK_INT(awsmeta_parse_process(v2, strlen(v2), &k, &e), -1);
    CHECK_STR(e.msg, "the answer's Version is not 1");
    const char *none = "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}";
    CHECK_INT(awsmeta_parse_process(none, strlen(none), &k, &e), -1);
    CHECK_STR(e.msg, "the answer's Version is not 1");
    const char *text = "{\"Version\": \"1\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}";
    CHECK_INT(awsmeta_parse_process(text, strlen(text), &k, &e), -1);
    const char *nokey = "{\"Version\": 1, \"SecretAccessKey\": \"s\"}";
    CHECK_INT(awsmeta_parse_process(nokey, strlen(nokey), &k, &e), -1);
    CHECK_STR(e.msg, "the answer has no AccessKeyId");
    CHECK_INT(awsmeta_parse_process("keys", 4, &k, &e), -1);
    CHECK_STR(e.msg, "the answer is not a JSON object");
}

/* A profile that names a credential_process: the keys come from it, and from it again when
 * forced; keys written beside it come first; a file that gets one later switches to it. */
static void test_profile(void)
{
    char dir[] = "/tmp/pixq-credproc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512], out[512], text[2048];
    snprintf(path, sizeof path, "%s/credentials", dir);
    snprintf(out, sizeof out, "%s/keys.json", dir);
    check_replace_file(out, "{\"Version\": 1, \"AccessKeyId\": \"ASIAONE\", \"SecretAccessKey\": "
                            "\"s1\", \"SessionToken\": \"t1\"}");
    snprintf(text, sizeof text,
             "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = sf\n"
             "[fleet]\ncredential_process = cat %s\nregion = eu-west-1\n",
             out);
    check_replace_file(path, text);
    struct cfg *cfg = malloc(sizeof *cfg);
    struct awscreds *c = malloc(sizeof *c);
    cfg_defaults(cfg);
    snprintf(cfg->aws_shared_credentials_file, sizeof cfg->aws_shared_credentials_file, "%s", path);
    snprintf(cfg->aws_profile, sizeof cfg->aws_profile, "fleet");
    cfg->s3_credentials_retry_ms = 0; /* no spacing between the forced runs below */
    struct err e = {{0}};
    /* checked, not run */
    CHECK_INT(awscreds_init(c, cfg, false, &e), 0);
    CHECK(c->from_endpoint && !c->loaded);
    CHECK_STR(awsmeta_source(&c->meta), "process");
    CHECK_STR(c->meta.url, "cat");
    char origin[2048];
    snprintf(text, sizeof text, "credential_process cat of profile [fleet] in %s", path);
    CHECK_STR(awscreds_origin(c, origin, sizeof origin), text);
    /* run */
    CHECK_INT(awscreds_init(c, cfg, true, &e), 0);
    CHECK(c->loaded);
    CHECK_STR(c->access_key, "ASIAONE");
    CHECK_STR(c->session_token, "t1");
    CHECK_INT(awscreds_refresh(c, false, &e), 0); /* keys that do not expire: not run again */
    check_replace_file(out, "{\"Version\": 1, \"AccessKeyId\": \"ASIATWO\", \"SecretAccessKey\": "
                            "\"s2\"}");
    CHECK_INT(awscreds_refresh(c, true, &e), 1); /* S3 refused them: run again */
    CHECK_STR(c->access_key, "ASIATWO");
    CHECK_STR(c->session_token, "");
    /* a run that fails leaves the keys in use */
    unlink(out);
    CHECK_INT(awscreds_refresh(c, true, &e), -1);
    CHECK(strstr(e.msg, "credential_process cat of profile [fleet]") == e.msg);
    CHECK(strstr(e.msg, "cat ended with status 1: cat: ") != NULL);
    CHECK_STR(c->access_key, "ASIATWO");
    /* keys written in the profile come first */
    snprintf(text, sizeof text,
             "[fleet]\ncredential_process = cat %s\naws_access_key_id = AKIDF\n"
             "aws_secret_access_key = sf\n",
             out);
    check_replace_file(path, text);
    CHECK_INT(awscreds_init(c, cfg, true, &e), 0);
    CHECK(!c->from_endpoint);
    CHECK_STR(c->access_key, "AKIDF");
    /* a file that names a program it cannot run leaves the keys in use */
    struct timespec ms20 = {0, 20000000};
    nanosleep(&ms20, NULL); /* another mtime */
    check_replace_file(path, "[fleet]\ncredential_process = helper 'open\n");
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(strstr(e.msg, "the command has a ' that is not closed") != NULL);
    CHECK(!c->from_endpoint && c->loaded);
    CHECK_STR(c->access_key, "AKIDF");
    CHECK_INT(awscreds_refresh(c, false, &e), 0); /* the same file: said once */
    /* a file that names a program only later (written after the start) switches to it; while
     * the program fails, the keys in use stay */
    unlink(out);
    snprintf(text, sizeof text, "[fleet]\ncredential_process = cat %s\n", out);
    nanosleep(&ms20, NULL);
    check_replace_file(path, text);
    CHECK_INT(awscreds_refresh(c, false, &e), -1);
    CHECK(c->from_endpoint && c->loaded);
    CHECK_STR(c->access_key, "AKIDF");
    check_replace_file(out, "{\"Version\": 1, \"AccessKeyId\": \"ASIALATE\", \"SecretAccessKey\": "
                            "\"s3\"}");
    CHECK_INT(awscreds_refresh(c, false, &e), 1); /* run again (no spacing in this test) */
    CHECK(c->from_endpoint);
    CHECK_STR(c->access_key, "ASIALATE");
    /* a file that switches to a program has it run once */
    check_replace_file(path, "[fleet]\naws_access_key_id = AKIDF\naws_secret_access_key = sf\n");
    CHECK_INT(awscreds_init(c, cfg, true, &e), 0);
    char runs[600];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    snprintf(text, sizeof text, "[fleet]\ncredential_process = sh -c 'echo run >> %s; cat %s'\n",
             runs, out);
    nanosleep(&ms20, NULL);
    check_replace_file(path, text);
    CHECK_INT(awscreds_refresh(c, false, &e), 1);
    CHECK_STR(c->access_key, "ASIALATE");
    FILE *f = fopen(runs, "r");
    char said[64] = "";
    CHECK(f != NULL && fread(said, 1, sizeof said - 1, f) > 0);
    CHECK_STR(said, "run\n");
    if (f != NULL) {
        fclose(f);
    }
    unlink(runs);
    /* a long command goes on over indented lines, as the AWS tools read them; a TAB is a
     * blank */
    check_replace_file(path, "[fleet]\ncredential_process = /opt/bin/aws_signing_helper\n"
                             "    credential-process --region\teu-west-1\n"
                             "  # a comment\n"
                             "\t--role-arn arn:aws:iam::123456789012:role/pixq\n"
                             "region = eu-west-1\n"
                             "  --not-this one: a continuation of region\n");
    CHECK_INT(awscreds_init(c, cfg, false, &e), 0);
    CHECK_STR(c->meta.command, "/opt/bin/aws_signing_helper credential-process --region\t"
                               "eu-west-1 --role-arn arn:aws:iam::123456789012:role/pixq");
    /* a command that cannot be split is a setting to fix, and leaves no keys */
    check_replace_file(path, "[fleet]\ncredential_process = helper 'open\n");
    CHECK_INT(awscreds_init(c, cfg, false, &e), -1);
    CHECK(!c->loaded && !c->from_endpoint);
    CHECK_STR(e.msg, "profile [fleet]: credential_process: the command has a ' that is not closed");
    check_replace_file(path, "[fleet]\ncredential_process =\n");
    CHECK_INT(awscreds_init(c, cfg, false, &e), -1);
    CHECK_STR(e.msg, "profile [fleet]: credential_process is empty");
    unlink(path);
    unlink(out);
    rmdir(dir);
    free(c);
    free(cfg);
}

int main(void)
{
    log_threshold = LOG_LEVEL_ERROR; /* the refusals below are meant */
    test_split();
    test_run();
    test_check();
    test_parse_process();
    test_profile();
    return check_summary("credproc");
}
