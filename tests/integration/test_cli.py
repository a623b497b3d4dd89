#!/usr/bin/python3
"""The `pixq` command line: submit (one job, an array, JSON lines, stdin; validation before
anything is enqueued; the pixq_enqueued_at stamp; --wait with its progress and exit status),
stats (queues, workers and their jobs, throughput, oldest job, limiter state; --json,
--prometheus parsed by a strict text-format parser, --watch), queues, dead, limit, --help of every
command, and how every command answers bad arguments (exit status 2, one line on stderr).

    /usr/bin/python3 tests/integration/test_cli.py --worker build-rel/worker/pixq-worker \\
        --pixq build-rel/producer/pixq --data tests/data [-k dead]
"""

import json
import os
import pty
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, PixqTestCase, clean_env, free_port, scaled  # noqa: E402

LEASE_MS = 3000
SHORT_LEASES = {"PIXQ_LEASE_MS": LEASE_MS, "PIXQ_HEARTBEAT_MS": 1000,
                "PIXQ_REAP_INTERVAL_MS": 500}


def tiny_png():
    return (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()


def dead_entry(job_id, failed_at, error="E"):
    """A dead entry as a worker writes it (finish.lua), of a job "{}"."""
    return json.dumps({"job": "{}", "job_id": job_id, "error": error, "attempts": 1,
                       "failed_at": failed_at})


def read_pty(master):
    """Everything written to a pseudo-terminal until its program closes it, as text."""
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], scaled(10))
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the program closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


class CliCase(PixqTestCase):
    start_worker_in_setup = False
    worker_env_extra = dict(SHORT_LEASES)

    def setUp(self):
        super().setUp()
        self.addCleanup(self.src.release)  # runs before the workers are stopped

    def job(self, job_id, path):
        return self.make_job(self.src.url(path), "out/%s.png" % job_id, params={"width": 32},
                             job_id=job_id)

    def push(self, job):
        payload = json.dumps(job)
        self.redis.lpush(self.key("jobs"), payload)
        return payload

    def pixq_ok(self, *args, input=None):
        r = self.run_pixq(*args, input=input)
        self.assertEqual(r.returncode, 0, "pixq %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def worker_id(self, prog):
        ev = self.wait_until(lambda: prog.log_events("worker_start"), 20, "%s to start" % prog.name)
        wid = ev[0]["worker"]
        self.wait_until(lambda: self.redis.execute("ZSCORE", self.key("workers"), wid), 20,
                        "%s to register" % prog.name)
        return wid

    def counters(self):
        return {k: int(v) for k, v in self.redis.hgetall(self.key("stats")).items()}

    def command_calls(self, *commands):
        """How many times Redis ran each command since its counts were reset (0: not once)."""
        stats = self.redis.execute("INFO", "commandstats")
        return [int(m.group(1)) if m else 0
                for m in (re.search(r"cmdstat_%s:calls=(\d+)" % c, stats) for c in commands)]

    def search_times(self, proc):
        """When each search of a running `pixq job --wait` (`proc`) started (its ZSCAN of
        `delayed`) and ended (its last LRANGE), as Redis's command counts show every 10 ms
        until it ends."""
        starts, ends = [], []
        last = self.command_calls("zscan", "lrange")
        while proc.poll() is None:
            time.sleep(0.01)
            now, seen = time.monotonic(), self.command_calls("zscan", "lrange")
            if seen[0] > last[0]:
                starts.append(now)
            if seen[1] > last[1] and starts:
                ends[len(starts) - 1:] = [now]
            last = seen
        return starts, ends

    def run_held(self, pattern, what, *args):
        """Runs pixq [args] through a proxy to Redis that holds back its first write holding
        `pattern` (`what`, for the failure message), and returns once that write is held: a
        function that lets it go on and returns pixq's CompletedProcess."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        proxy.hold_on(pattern)
        runs = []
        env = {"PIXQ_REDIS_URL": proxy.redis_url()}
        t = threading.Thread(target=lambda: runs.append(self.run_pixq(*args, env=env)))
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(proxy.release)
        self.assertTrue(proxy.held.wait(scaled(30)), what)

        def finish():
            proxy.release()
            t.join(scaled(60))
            return runs[0]
        return finish

    def start_cli(self, *args, **env):
        """pixq [args] started, its stdout and stderr piped (killed at the cleanup)."""
        proc = subprocess.Popen([CONFIG.pixq, *args], env=self.cli_env(**env), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def submit_later(self, job_id):
        """Serves /ok.png and /slow.png, submits job_id (of /ok.png) with --delay 600000, and
        returns once the idle worker took the wake-up token delay.lua pushed."""
        self.src.add("/ok.png", tiny_png())
        self.src.add("/slow.png", tiny_png())
        later = self.tmp / ("%s.json" % job_id)
        later.write_text(json.dumps(self.job(job_id, "/ok.png")))
        self.pixq_ok("submit", str(later), "--delay", "600000")
        self.wait_until(lambda: self.redis.llen(self.key("jobs")) == 0, 10, "the wake-up token")


class PromFormatError(AssertionError):
    pass


PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def _prom_labels(text, pos, lineno):
    """Parses {name="value",...} at text[pos] == "{": returns (dict, position after "}")."""
    labels, pos = {}, pos + 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        eq = text.index("=", pos)
        name = text[pos:eq]
        if not PROM_LABEL.match(name) or name in labels:
            raise PromFormatError("line %d: bad or repeated label name %r" % (lineno, name))
        if text[eq + 1] != '"':
            raise PromFormatError("line %d: label value not quoted" % lineno)
        value, i = [], eq + 2
        while text[i] != '"':
            if text[i] == "\\":
                esc = {"\\": "\\", '"': '"', "n": "\n"}.get(text[i + 1])
                if esc is None:
                    raise PromFormatError("line %d: bad escape \\%s" % (lineno, text[i + 1]))
                value.append(esc)
                i += 2
            elif text[i] == "\n":
                raise PromFormatError("line %d: raw line feed in a label value" % lineno)
            else:
                value.append(text[i])
                i += 1
        labels[name] = "".join(value)
        pos = i + 1
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise PromFormatError("line %d: expected , or } after a label" % lineno)


def _prom_value(token, lineno):
    if token in ("NaN", "+Inf", "-Inf"):
        return float(token.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z", token):
        raise PromFormatError("line %d: bad sample value %r" % (lineno, token))
    return float(token)


def parse_prometheus(text):
    """A strict reader of the Prometheus text exposition format (0.0.4): every line a HELP, a
    TYPE or a sample; names and label names valid; label values with only the three escapes;
    a family's HELP and TYPE at most once and before its samples, its samples together; no
    sample twice. Returns {family: {"type", "help", "samples": {frozenset(labels): value}}}."""
    if not text.endswith("\n"):
        raise PromFormatError("the text must end with a line feed")
    fams, order, current = {}, [], None
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)\Z", line)
        if m:
            kind, name, rest = m.groups()
            if not PROM_NAME.match(name):
                raise PromFormatError("line %d: bad metric name %r" % (lineno, name))
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": {}})
            if fam["samples"] or fam[kind.lower()] is not None:
                raise PromFormatError("line %d: %s of %s repeated or after its samples"
                                      % (lineno, kind, name))
            if kind == "TYPE" and rest not in PROM_TYPES:
                raise PromFormatError("line %d: unknown type %r" % (lineno, rest))
            if kind == "HELP" and re.search(r"\\[^\\n]", rest):
                raise PromFormatError("line %d: bad escape in HELP" % lineno)
            fam[kind.lower()] = rest
            continue
        if line.startswith("#") or not line:
            raise PromFormatError("line %d: unexpected line %r" % (lineno, line))
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        name, pos = m.group(0), m.end()
        labels = {}
        if line[pos] == "{":
            labels, pos = _prom_labels(line, pos, lineno)
        parts = line[pos:].split(" ")
        if parts[0] != "" or len(parts) not in (2, 3):
            raise PromFormatError("line %d: expected ' value [timestamp]'" % lineno)
        value = _prom_value(parts[1], lineno)
        fam = fams.get(name)
        if fam is None or fam["type"] is None:
            raise PromFormatError("line %d: sample of %s without a TYPE before it" % (lineno, name))
        if current != name and name in order:
            raise PromFormatError("line %d: samples of %s are not together" % (lineno, name))
        if current != name:
            order.append(name)
            current = name
        key = frozenset(labels.items())
        if key in fam["samples"]:
            raise PromFormatError("line %d: %s%r twice" % (lineno, name, labels))
        fam["samples"][key] = value
    return fams


# every family of `pixq stats --prometheus`, with its type
PROM_FAMILIES = dict(
    [("pixq_queue_" + g, "gauge") for g in ("jobs", "delayed", "dead", "active", "parked_bytes",
                                             "live_workers", "oldest_job_age_seconds",
                                             "next_delayed_seconds", "jobs_last_minute")]
    + [("pixq_queue_events_total", "counter"), ("pixq_queue_uploaded_bytes_total", "counter"),
       ("pixq_worker_jobs", "gauge"), ("pixq_live_workers", "gauge")]
    + [("pixq_redis_" + g, "gauge") for g in ("used_memory_bytes", "maxmemory_bytes", "full",
                                               "maxmemory_policy")]
    + [("pixq_bucket_" + g, "gauge") for g in ("rate", "burst", "effective_rate",
                                                "backlog_seconds", "override")]
    + [("pixq_bucket_%s_total" % c, "counter") for c in ("throttle_signals", "decreases",
                                                          "replans")])


def prom_value(fams, name, **labels):
    return fams[name]["samples"][frozenset(labels.items())]


class PrometheusParserTest(unittest.TestCase):
    """The parser of the tests refuses what the format forbids (so that passing means valid)."""

    def test_refuses_invalid_text(self):
        ok = '# HELP m h\n# TYPE m gauge\nm{a="x\\\\y\\"z\\n"} 1.5\nm{a="2"} -3e2\n'
        fams = parse_prometheus(ok)
        self.assertEqual(prom_value(fams, "m", a='x\\y"z\n'), 1.5)
        for bad in ('m 1\n', '# TYPE m gauge\nm 1', '# TYPE m gauge\nm{a="\\q"} 1\n',
                    '# TYPE m gauge\nm{a=x} 1\n', '# TYPE m gauge\nm 1\nm 2\n',
                    '# TYPE m gauge\n# TYPE m gauge\nm 1\n', '# TYPE m gauge\nm one\n',
                    '# TYPE m gauge\n# TYPE n gauge\nm 1\nn 1\nm{a="1"} 1\n',
                    '# TYPE m widget\nm 1\n', '# TYPE 1m gauge\n', '# TYPE m gauge\nm  1\n',
                    '# TYPE m gauge\nm{a="1",a="2"} 1\n', '# TYPE m gauge\n\nm 1\n'):
            with self.subTest(text=bad), self.assertRaises(PromFormatError):
                parse_prometheus(bad)


class SubmitTest(CliCase):
    """What `pixq submit` reads and what it puts on the queue (no worker: the jobs stay)."""

    def job_text(self, job_id=None, **extra):
        job = self.job(job_id, "/a.png") if job_id else self.make_job(self.src.url("/a.png"),
                                                                     "out/x.png")
        job.update(extra)
        return job

    def queued(self):
        """The jobs on pixq:{default}:jobs, consuming end first (the order workers take them)."""
        return [json.loads(p) for p in reversed(self.redis.lrange(self.key("jobs")))]

    def redis_ms(self):
        sec, usec = self.redis.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def test_enqueue_cut_short_says_what_became_of_the_jobs(self):
        """The LPUSH runs but its answer is lost with the connection: the jobs are on the queue,
        and pixq prints their ids with the warning that they may be; before, it printed no id
        ("enqueueing: redis: Server closed the connection"), and the jobs, without job_ids of
        their own, could only be found by reading the queue. A refused LPUSH enqueued nothing, and
        says so; so does a Redis out of memory, which refuses the claims of the job_ids first."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        proxy.cut_on(b"LPUSH")
        batch = json.dumps([self.job_text(), self.job_text()])
        r = self.run_pixq("submit", "-", input=batch, env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertEqual(r.returncode, 1, r.stderr)
        queued = [j["job_id"] for j in self.queued()]
        self.assertEqual(len(queued), 2)
        self.assertEqual(r.stdout.splitlines(), queued)
        self.assertRegex(r.stderr, r"^pixq: submit: enqueueing: redis: .+: the connection was "
                         r"lost before Redis answered, so the 2 job\(s\) printed may or may "
                         r"not be on the queue: look for them before submitting them again\n$")
        # the ids of jobs that may be queued stay claimed
        self.assertEqual(self.redis.exists(*(self.key("job:" + i) for i in queued)), 2)
        # lost before the stamp's TIME, after the claims: nothing sent, the claims given back
        # (on a new connection)
        proxy.cut_before(b"*1\r\n$4\r\nTIME\r\n")
        r = self.run_pixq("submit", "-", input=batch, env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertTrue(proxy.tripped.is_set())
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: submit: redis: .+\n$")
        self.assertEqual(sorted(self.redis.execute("KEYS", self.key("job:*"))),
                         sorted(self.key("job:" + i) for i in queued))
        self.assertEqual(len(self.queued()), 2)
        # a push Redis refuses (the queue's key holds a string): the claims are given back
        jobs = self.redis.lrange(self.key("jobs"))
        self.redis.delete(self.key("jobs"))
        self.redis.execute("SET", self.key("jobs"), "not a list")
        r = self.run_pixq("submit", "-", input=batch)
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: submit: enqueueing: redis: WRONGTYPE .+; nothing was "
                         r"enqueued\n$")
        self.assertEqual(sorted(self.redis.execute("KEYS", self.key("job:*"))),
                         sorted(self.key("job:" + i) for i in queued))
        self.redis.delete(self.key("jobs"))
        self.redis.execute("RPUSH", self.key("jobs"), *reversed(jobs))
        # a Redis out of memory refuses the claims, before anything is sent
        self.redis.execute("CONFIG", "SET", "maxmemory", "1")
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory", "0")
        r = self.run_pixq("submit", "-", input=batch)
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        # the error of claim.lua, without what Redis adds to it ("script: <sha1>, on
        # @user_script:23.")
        self.assertEqual(r.stderr, "pixq: submit: claiming the job_ids: redis: OOM command not "
                         "allowed when used memory > 'maxmemory'. (Redis is full: past its "
                         "maxmemory it refuses what adds data until keys expire or maxmemory is "
                         "raised, `pixq stats` showing its memory); nothing was enqueued\n")
        self.assertEqual(len(self.queued()), 2)

    def test_push_refused_part_way(self):
        """Of a batch sent in two 8 MB commands, Redis takes the first and refuses the second
        (out of memory: maxmemory is reached by the first): the ids of the jobs enqueued are
        printed, and the claims of the others given back. With --delay the first job goes
        through delay.lua, the others in ZADDs: 1 + 10 are taken; with less room, only the
        first (its id printed, as any jobs enqueued)."""
        job = self.job_text(pad="p" * 900000)
        path = self.tmp / "big.jsonl"
        ids = ["part-%02d" % i for i in range(20)]  # 10 jobs, 9 MB, in a command
        path.write_text("".join(json.dumps(dict(job, job_id=i)) + "\n" for i in ids))
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory", "0")
        for delay, taken, room_mb in ((None, 10, 13), ("60000", 11, 13), ("60000", 1, 3)):
            with self.subTest(delay=delay, taken=taken):
                self.redis.execute("CONFIG", "SET", "maxmemory", "0")
                self.redis.delete(self.key("jobs"), self.key("delayed"),
                                  *(self.key("job:" + i) for i in ids))
                memory = self.redis.execute("INFO", "memory")
                used = int(re.search(r"used_memory:(\d+)", memory).group(1))
                # the first command, 9 MB read, fits; the second, 8 MB more on top, not
                self.redis.execute("CONFIG", "SET", "maxmemory", str(used + room_mb * 2**20))
                args = ("--delay", delay) if delay else ()
                r = self.run_pixq("submit", str(path), *args,
                                  env={"PIXQ_MAX_JOB_BYTES": "1000000"})
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stdout.split(), ids[:taken])
                self.assertRegex(r.stderr, r"^pixq: submit: enqueueing: redis: OOM .+: %d of 20 "
                                 r"jobs were enqueued \(their ids are printed\), the others "
                                 r"not\n$" % taken)
                if delay:
                    queued = [json.loads(m)["job_id"] for m in
                              self.redis.zrange(self.key("delayed"))]
                else:
                    queued = [j["job_id"] for j in self.queued()]
                self.assertEqual(sorted(queued), ids[:taken])
                self.assertEqual(sorted(self.redis.execute("KEYS", self.key("job:*"))),
                                 [self.key("job:" + i) for i in ids[:taken]])

    def test_one_job_an_array_json_lines_and_stdin(self):
        one = self.tmp / "one.json"
        one.write_text(json.dumps(self.job_text("one-1"), indent=2))  # one job over many lines
        before = self.redis_ms()
        self.assertEqual(self.pixq_ok("submit", str(one)), "one-1\n")
        arr = self.tmp / "arr.json"
        arr.write_text(json.dumps([self.job_text("arr-1"), self.job_text()], indent=1))
        ids = self.pixq_ok("submit", str(arr)).split()
        self.assertEqual(ids[0], "arr-1")
        self.assertRegex(ids[1], r"^[0-9][A-Za-z0-9_-]{22}$")  # given one, Blitline-style
        lines = self.tmp / "jobs.jsonl"
        lines.write_text("%s\n\n%s\n" % (json.dumps(self.job_text("jl-1")),
                                        json.dumps(self.job_text("jl-2"))))
        self.assertEqual(self.pixq_ok("submit", str(lines)).split(), ["jl-1", "jl-2"])
        r = self.run_pixq("submit", "-", input=json.dumps(self.job_text("stdin-1")))
        self.assertEqual((r.returncode, r.stdout), (0, "stdin-1\n"), r.stderr)
        # several inputs at once, --json
        one.write_text(json.dumps(self.job_text("one-2")))
        lines.write_text("%s\n%s\n" % (json.dumps(self.job_text("jl-3")),
                                       json.dumps(self.job_text("jl-4"))))
        out = json.loads(self.pixq_ok("submit", "--json", str(one), "-", str(lines),
                                      input=json.dumps(self.job_text("stdin-2"))))
        self.assertEqual(out, {"queue": "default",
                               "job_ids": ["one-2", "stdin-2", "jl-3", "jl-4"]})
        after = self.redis_ms()
        q = self.queued()
        self.assertEqual([j["job_id"] for j in q],
                         ["one-1", "arr-1", ids[1], "jl-1", "jl-2", "stdin-1",
                          "one-2", "stdin-2", "jl-3", "jl-4"])
        for j in q:
            self.assertTrue(before <= j["pixq_enqueued_at"] <= after, j)
            self.assertEqual(j["src"], self.src.url("/a.png"))
        # one submission, one stamp
        self.assertEqual(len({j["pixq_enqueued_at"] for j in q[-4:]}), 1)

    def test_blitline_request_bodies(self):
        """What a Blitline client posted ({"json": "<text>"}, {"json": {job}}, {"json": [jobs]})
        is its jobs, each queued on its own (BLITLINE.md 1.1); it was refused as a job without a
        src. A member that holds no job is refused, naming the line."""
        bodies = self.tmp / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps(b) for b in (
            {"json": json.dumps(self.job_text("text-1"))},
            {"json": self.job_text("object-1")},
            {"json": [self.job_text("arr-1"), self.job_text("arr-2")]},
            {"json": json.dumps([self.job_text("text-arr-1")])})))
        self.assertEqual(self.pixq_ok("submit", str(bodies)).split(),
                         ["text-1", "object-1", "arr-1", "arr-2", "text-arr-1"])
        q = self.queued()
        self.assertEqual([j["job_id"] for j in q],
                         ["text-1", "object-1", "arr-1", "arr-2", "text-arr-1"])
        self.assertTrue(all(j["src"] == self.src.url("/a.png") for j in q), q)
        # a job with a json member among others is a job (here without a src: refused)
        for text, said in ((json.dumps({"json": 7}), 'the "json" member of a Blitline request '
                            "body holds no job"),
                           (json.dumps({"json": []}), "an empty array holds no job"),
                           (json.dumps({"json": self.job_text("x"), "v": 1.2}),
                            "No source for processing")):
            r = self.run_pixq("submit", "-", input=text)
            self.assertEqual((r.returncode, r.stdout), (1, ""), text)
            self.assertIn(said, r.stderr)
        self.assertEqual(len(self.queued()), 5)

    def test_json_names_the_queue(self):
        """--json names the queue the jobs went to: the first of PIXQ_QUEUE, not "default"; so
        does the refusal of an id used there."""
        r = self.run_pixq("submit", "--json", "-", input=json.dumps(self.job_text("q-1")),
                          env={"PIXQ_QUEUE": "first, default"})
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out, {"queue": "first", "job_ids": ["q-1"]})
        self.assertEqual(self.redis.llen("pixq:{first}:jobs"), 1)
        self.assertEqual(self.queued(), [])
        # its id is claimed in that queue, which the refusal names
        r = self.run_pixq("submit", "-", input=json.dumps(self.job_text("q-1")),
                          env={"PIXQ_QUEUE": "first, default"})
        self.assert_refused(r, "job_id 'q-1' was used already in first", "nothing was enqueued")

    def test_files_after_the_end_of_options(self):
        """`--` ends the options: after it every word is a FILE, even one that begins with -
        (was: "unknown option '--'", exit 2); --help there is a file too."""
        (self.tmp / "-x").write_text(json.dumps(self.job_text("dash-1")))
        (self.tmp / "--help").write_text(json.dumps(self.job_text("dash-2")))
        (self.tmp / "--").write_text(json.dumps(self.job_text("dash-3")))
        r = self.run_pixq("submit", "--json", "--", "-x", "--help", "--", cwd=str(self.tmp))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"queue": "default",
                                                "job_ids": ["dash-1", "dash-2", "dash-3"]})
        self.assertEqual([j["job_id"] for j in self.queued()], ["dash-1", "dash-2", "dash-3"])
        r = self.run_pixq("submit", "-x", cwd=str(self.tmp))  # before it, an option
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option '-x'", r.stderr)

    def test_used_job_id_is_refused(self):
        """A job_id the queue still knows (a job record, a result) or given twice: workers
        would take the new job for a re-run of the old one and skip its postback as sent, and
        --wait would print the old result."""
        self.redis.execute("HSET", self.key("job:used-1"), "posted", "1")
        self.redis.execute("RPUSH", self.key("result:used-2"), "{}")
        for job_id in ("used-1", "used-2"):
            path = self.tmp / ("%s.json" % job_id)
            path.write_text(json.dumps(self.job_text(job_id)))
            self.assert_refused(self.run_pixq("submit", str(path)),
                                "job_id '%s' was used already in default" % job_id,
                                "nothing was enqueued")
        both = self.tmp / "both.json"
        for twin in ("twin", "a-twin"):  # the twins sort last, or first
            both.write_text(json.dumps([self.job_text(twin), self.job_text("fresh"),
                                        self.job_text(twin)]))
            self.assert_refused(self.run_pixq("submit", str(both)),
                                "job_id '%s' is given to two jobs" % twin)
        # integers beyond 64 bits, which json-c reads as one and the same
        body = self.job_text("x")
        del body["job_id"]
        huge = self.tmp / "huge.jsonl"
        huge.write_text("".join('{"job_id": %s, %s\n' % (n, json.dumps(body)[1:])
                                for n in ("123456789012345678901234", "-99999999999999999999")))
        self.assert_refused(self.run_pixq("submit", str(huge)),
                            "huge.jsonl:1: invalid job: job_id is an integer beyond 64 bits",
                            "give it as a string", "(and 1 more invalid jobs)")
        self.assertEqual(self.queued(), [])
        # as strings they are kept as written
        huge.write_text("".join('{"job_id": "%s", %s\n' % (n, json.dumps(body)[1:])
                                for n in ("123456789012345678901234", "-99999999999999999999")))
        self.assertEqual(self.pixq_ok("submit", str(huge)).split(),
                         ["123456789012345678901234", "-99999999999999999999"])

    def test_id_of_a_waiting_job_is_refused(self):
        """A job submitted and still waiting has no record of a run yet: its id is claimed at
        submit (its job hash, with `submitted`), so submitting the id again, alone or in a batch,
        or in a batch whose ids are claimed a thousand at a time, is refused. A refused batch
        leaves no claim behind; the job that waited runs as received, not as a rerun."""
        path = self.tmp / "wait.json"
        path.write_text(json.dumps(self.job_text("waits-1")))
        self.assertEqual(self.pixq_ok("submit", str(path)), "waits-1\n")
        claim = self.redis.hgetall(self.key("job:waits-1"))
        self.assertEqual(list(claim), ["submitted"])
        ttl = int(self.redis.execute("TTL", self.key("job:waits-1")))
        self.assertTrue(86400 - 60 < ttl <= 86400, ttl)  # PIXQ_RESULT_TTL_S's default
        def refused(r, *fragments):
            self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
            for f in ("pixq: submit: job_id 'waits-1' was used already in default",) + fragments:
                self.assertIn(f, r.stderr)

        refused(self.run_pixq("submit", str(path)), "a job with it is waiting",
                "nothing was enqueued")
        big = self.tmp / "big.jsonl"
        big.write_text("".join(json.dumps(self.job_text("big-%d" % i)) + "\n"
                               for i in range(2500)) + json.dumps(self.job_text("waits-1")))
        refused(self.run_pixq("submit", str(big)))
        self.assertEqual([j["job_id"] for j in self.queued()], ["waits-1"])
        self.assertEqual(self.redis.execute("KEYS", self.key("job:big-*")), [])
        self.assertEqual(self.redis.hgetall(self.key("job:waits-1")), claim)  # left to its job
        # the ids of the refused batch are free again
        big.write_text("".join(json.dumps(self.job_text("big-%d" % i)) + "\n"
                               for i in (0, 1499)))
        self.assertEqual(self.pixq_ok("submit", str(big)).split(), ["big-0", "big-1499"])
        self.start_worker()
        for job_id in ("waits-1", "big-0", "big-1499"):
            self.wait_until(lambda: self.redis.execute("EXISTS", self.key("result:" + job_id)),
                            30, "the result of " + job_id)
        c = self.counters()
        self.assertEqual((c.get("received"), c.get("reruns", 0)), (3, 0), c)

    def test_job_at_the_size_limit_with_its_id_and_stamp(self):
        """The worker reads the job as enqueued, with the job_id submit gives it and the
        pixq_enqueued_at stamp: a job that fits PIXQ_MAX_JOB_BYTES only without them is refused
        here (the worker would send it straight to dead, without a postback or a result), one
        that fits with them is enqueued, at most the limit."""
        limit = 1000
        env = {"PIXQ_MAX_JOB_BYTES": str(limit)}

        def padded(size, **extra):
            job = dict(self.job_text(), pad="", **extra)
            job["pad"] = "p" * (size - len(json.dumps(job, separators=(",", ":"))))
            text = json.dumps(job, separators=(",", ":"))
            self.assertEqual(len(text), size)
            return text

        path = self.tmp / "at-limit.json"
        path.write_text(padded(limit))
        r = self.run_pixq("submit", str(path), env=env)
        self.assert_refused(r, "at-limit.json:1: invalid job: job is ",
                            "with its job_id and pixq_enqueued_at, more than the limit of 1000")
        stamp = len(',"pixq_enqueued_at":') + len(str(self.redis_ms()))
        path.write_text(padded(limit - stamp + 1, job_id="over-1"))
        self.assert_refused(self.run_pixq("submit", str(path), env=env), "job is 1001 bytes")
        path.write_text(padded(limit - stamp, job_id="fits-1"))
        r = self.run_pixq("submit", str(path), env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "fits-1\n"), r.stderr)
        self.assertEqual(len(self.redis.lindex(self.key("jobs"), 0).encode()), limit)

    def test_stamp_a_job_brings_is_replaced(self):
        """A job that carries a pixq_enqueued_at already (one taken from the dead list and
        submitted again) is stamped anew, with the key once: a second copy of the key would
        leave which one a reader takes to the reader."""
        job = self.job_text("again-1", pixq_enqueued_at=1700000000000)
        before = self.redis_ms()
        self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(job)), "again-1\n")
        payload = self.redis.lindex(self.key("jobs"), 0)
        self.assertEqual(payload.count('"pixq_enqueued_at"'), 1, payload)
        self.assertGreaterEqual(json.loads(payload)["pixq_enqueued_at"], before)

    def test_too_many_functions_are_refused(self):
        """PIXQ_MAX_FUNCTIONS, which the worker checks, is checked by submit too."""
        job = self.job_text("f-1")
        job["functions"][0]["functions"] = [{"name": "blur", "save": {"image_identifier": "b"}}]
        r = self.run_pixq("submit", "-", input=json.dumps(job), env={"PIXQ_MAX_FUNCTIONS": "1"})
        self.assert_refused(r, "(stdin):1: invalid job: too many functions (at most 1)",
                            "nothing was enqueued")
        r = self.run_pixq("submit", "-", input=json.dumps(job), env={"PIXQ_MAX_FUNCTIONS": "2"})
        self.assertEqual((r.returncode, r.stdout), (0, "f-1\n"), r.stderr)

    def test_at_most_10000_jobs_in_8_mb_commands(self):
        """10,000 jobs go in one submission, in one LPUSH per 8 MB of them (10 MB here: two),
        in order; a 10,001st job is refused, an invalid one counted too."""
        def lines(n, first=None):
            job = self.job_text(pad="p" * 800)
            texts = [json.dumps(dict(job, job_id="many-%d" % i)) for i in range(n)]
            texts[0] = first or texts[0]
            return "".join(t + "\n" for t in texts)
        path = self.tmp / "many.jsonl"
        for n, first in ((10001, None), (10001, '{"src": 5}')):
            path.write_text(lines(n, first))
            self.assert_refused(self.run_pixq("submit", str(path)),
                                "pixq: submit: %s:10001: more than 10000 jobs in one submission; "
                                "nothing was enqueued" % path)
        path.write_text(lines(10000))
        self.redis.execute("CONFIG", "RESETSTAT")
        ids = self.pixq_ok("submit", str(path)).split()
        self.assertEqual(ids, ["many-%d" % i for i in range(10000)])
        self.assertEqual([j["job_id"] for j in self.queued()], ids)
        self.assertEqual(self.command_calls("lpush"), [2])

    def test_null_is_valid_json_of_another_kind(self):
        """null is JSON, not a job: refused as "job must be a JSON object" (a single document, a
        line) or "element N of the array is not a JSON object", on its own line, as a number or
        a string is; not "not valid JSON: success" or "unexpected end of input"."""
        job = json.dumps(self.job_text("n-1"))
        for text, where, why in (
                ("null", "1", "invalid job: job must be a JSON object"),
                ("null\n", "1", "invalid job: job must be a JSON object"),
                ("%s\nnull\n" % job, "2", "invalid job: job must be a JSON object"),
                ("%s\nnull" % job, "2", "invalid job: job must be a JSON object"),
                ("[%s,\n null]" % job, "2", "element 2 of the array is not a JSON object"),
                ("[%s,\n null ]" % job, "2", "element 2 of the array is not a JSON object")):
            with self.subTest(text=text):
                r = self.run_pixq("submit", "-", input=text)
                self.assert_refused(r, "pixq: submit: (stdin):%s: %s; nothing was enqueued"
                                    % (where, why))

    def test_byte_order_mark_at_the_start_is_ignored(self):
        """A file that starts with a UTF-8 byte order mark (as Windows editors save it) is read
        without it, as RFC 8259 allows: one job, JSON lines or an array; not refused as
        "invalid utf-8 string" (a BOM is valid UTF-8)."""
        bom = b"\xef\xbb\xbf"
        one, two = (json.dumps(self.job_text("bom-%d" % i)).encode() for i in (1, 2))
        for name, data, ids in (("one.json", bom + one + b"\r\n", ["bom-1"]),
                                # a blank line of a space, a tab and CR LF, blanks at the end
                                ("lines.jsonl", bom + one + b"\r\n \t\r\n" + two + b"\r\n  ",
                                 ["bom-1", "bom-2"]),
                                ("array.json", bom + b"[" + one + b",\n" + two + b"]",
                                 ["bom-1", "bom-2"])):
            with self.subTest(name=name):
                self.redis.delete(self.key("jobs"), *(self.key("job:" + i) for i in ids))
                path = self.tmp / name
                path.write_bytes(data)
                self.assertEqual(self.pixq_ok("submit", str(path)).split(), ids)
                self.assertEqual([j["job_id"] for j in self.queued()], ids)
        self.redis.delete(self.key("jobs"))
        (self.tmp / "bom.json").write_bytes(bom)
        self.assert_refused(self.run_pixq("submit", str(self.tmp / "bom.json")),
                            "bom.json: no job in it (empty)")

    def test_one_job_over_several_lines(self):
        """One job written over several lines (json.dumps(indent=2), as editors and jq save it),
        with a line feed at the end or blanks after it, is one document, not JSON lines."""
        text = json.dumps(self.job_text("pretty-1"), indent=2)
        for tail in ("\n", "\r\n \n\t", ""):
            with self.subTest(tail=tail):
                self.redis.delete(self.key("jobs"), self.key("job:pretty-1"))
                self.assertEqual(self.pixq_ok("submit", "-", input=text + tail), "pretty-1\n")
                self.assertEqual([j["job_id"] for j in self.queued()], ["pretty-1"])

    def assert_refused(self, r, *fragments):
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertTrue(r.stderr.startswith("pixq: submit: "), r.stderr)
        for f in fragments:
            self.assertIn(f, r.stderr)
        self.assertEqual(self.redis.llen(self.key("jobs")), 0, "something was enqueued")

    def test_every_job_is_checked_before_any_is_enqueued(self):
        good = self.tmp / "good.json"
        good.write_text(json.dumps(self.job_text("g-1")))
        bad = self.tmp / "bad.jsonl"
        bad.write_text("%s\n%s\n\n%s\n" % (json.dumps(self.job_text("b-1")),
                                          json.dumps(self.job_text("b-2")),
                                          json.dumps({"functions": []})))
        self.assert_refused(self.run_pixq("submit", str(good), str(bad)), "bad.jsonl:4:",
                            "invalid job", "No source", "nothing was enqueued")
        arr = self.tmp / "arr.json"
        arr.write_text('[%s,\n\n  {"src": 5},\n{"job_id": "no spaces"}]'
                       % json.dumps(self.job_text("a-1")))
        self.assert_refused(self.run_pixq("submit", str(arr)), "arr.json:3:",
                            "and 1 more invalid jobs")
        trunc = self.tmp / "trunc.json"
        trunc.write_text('{"src": "http://x/a.png",\n "functions": [\n')
        self.assert_refused(self.run_pixq("submit", str(trunc)), "trunc.json:3:",
                            "not valid JSON")
        jl = self.tmp / "jl.jsonl"
        jl.write_text('%s\n{"src": \n' % json.dumps(self.job_text("x-1")))
        self.assert_refused(self.run_pixq("submit", str(jl)), "jl.jsonl:2:", "not valid JSON")
        self.assert_refused(self.run_pixq("submit", str(trunc)),
                            "trunc.json:3: not valid JSON: unexpected end of input")
        self.assert_refused(self.run_pixq("submit", "-", input='[{"src": "a"},\n 1]'),
                            "(stdin):2: element 2 of the array is not a JSON object")
        self.assert_refused(self.run_pixq("submit", "-", input="7"),
                            "(stdin):1: invalid job: job must be a JSON object")
        self.assert_refused(self.run_pixq("submit", "-", input="[]"), "(stdin):1:", "no job")
        self.assert_refused(self.run_pixq("submit", "-", input=" \n"), "(stdin)", "no job")
        self.assert_refused(self.run_pixq("submit", str(self.tmp / "none.json")),
                            "cannot open", "none.json")
        self.assert_refused(self.run_pixq("submit", "-", input='{"src": "a"} trailing'),
                            "(stdin):1: one job per line expected, more text follows it")
        job = json.dumps(self.job_text())
        for text, why in (("[%s]\n\n x" % job, "(stdin):3: text after the array"),
                          ("[%s\n %s]" % (job, job), "(stdin):2: not valid JSON: ',' or ']' "
                                                     "expected after a job"),
                          ("[%s,\n%s \n" % (job, job), "(stdin):3: not valid JSON: ',' or ']' "
                                                       "expected after a job"),
                          # one document after blank lines: the line it starts on
                          ("\n \n%s\n" % json.dumps({"functions": []}),
                           "(stdin):3: invalid job")):
            with self.subTest(text=text):
                self.assert_refused(self.run_pixq("submit", "-", input=text), why)
        for text, why in (("%s x\n" % job, "(stdin):1: one job per line expected"),
                          ("%s\n\0\n%s\n" % (job, job), "(stdin):2: not valid JSON")):
            with self.subTest(text=text[-5:]):
                self.assert_refused(self.run_pixq("submit", "-", input=text), why)
        self.assert_refused(self.run_pixq("submit", str(self.tmp)),
                            "pixq: submit: cannot read %s: Is a directory" % self.tmp)
        latin1 = self.tmp / "latin1.jsonl"
        latin1.write_bytes(b'%s\n{"src": "caf\xe9.png"}\n' % job.encode())
        self.assert_refused(self.run_pixq("submit", str(latin1)),
                            "latin1.jsonl:2: not valid JSON: invalid utf-8 string")

    def test_every_file_is_closed_once_read(self):
        """Files are read one at a time: 40 of them with room for 16 open at once."""
        paths = []
        for i in range(40):
            paths.append(str(self.tmp / ("f-%d.json" % i)))
            with open(paths[-1], "w") as f:
                f.write(json.dumps(self.job_text("f-%d" % i)))
        limit = (16, 16)
        r = subprocess.run([CONFIG.pixq, "submit", *paths], env=self.cli_env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(60),
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["f-%d" % i for i in range(40)])

    def test_nesting_at_the_limit(self):
        """A job PIXQ_MAX_JSON_DEPTH deep goes, alone, in an array (one level more for the
        array) or on a line; one level deeper is refused, and more levels alike (they were "not
        valid JSON: nesting too deep", json-c's words, which do not name the setting)."""
        def deep(depth):  # the object, depth - 2 arrays, the 1 in the innermost
            return dict(self.job_text(), deep=json.loads("[" * (depth - 2) + "1" +
                                                         "]" * (depth - 2)))
        env = {"PIXQ_MAX_JSON_DEPTH": "8"}
        for depth, ok in ((8, True), (9, False), (10, False), (40, False)):
            job = json.dumps(deep(depth))
            for kind, text in (("alone", job), ("array", "[%s]" % job),
                               ("line", "%s\n%s\n" % (json.dumps(self.job_text()), job))):
                with self.subTest(depth=depth, kind=kind):
                    self.redis.delete(self.key("jobs"))
                    r = self.run_pixq("submit", "-", input=text, env=env)
                    if ok:
                        self.assertEqual(r.returncode, 0, r.stderr)
                    else:
                        self.assert_refused(r, "(stdin):%d: invalid job: job nests deeper than "
                                            "8 levels (PIXQ_MAX_JSON_DEPTH)"
                                            % (2 if kind == "line" else 1))

    def test_files_of_at_most_64_mib(self):
        """A file of 64 MiB is read (a job and blanks here), one byte more is refused."""
        path = self.tmp / "big.json"
        job = json.dumps(self.job_text("mib-1")).encode()
        with open(path, "wb") as f:
            f.write(job + b" " * (64 * 2**20 - len(job)))
        self.assertEqual(self.pixq_ok("submit", str(path)), "mib-1\n")
        self.redis.delete(self.key("jobs"), self.key("job:mib-1"))
        with open(path, "ab") as f:
            f.write(b"\n")
        self.assert_refused(self.run_pixq("submit", str(path)),
                            "pixq: submit: %s is larger than 67108864 bytes; nothing was "
                            "enqueued" % path)

    def test_bad_destination_bucket_is_refused(self):
        """A bucket name S3 refuses fails the job at the worker's first step, so submit refuses
        it too (README: submit checks destinations as the worker's first step does), in a save,
        a nested save and a pre_process move_original alike; a legacy name is a bucket."""
        def dest(bucket):
            return {"bucket": bucket, "key": "k.png"}
        nested = self.job_text("n-1")
        nested["functions"][0]["functions"] = [{"name": "blur", "save": {
            "image_identifier": "kid", "s3_destination": dest("ab")}}]
        pre = self.job_text("p-1", pre_process=[{"move_original": {"s3_destination":
                                                                   dest("bad bucket")}}])
        top = self.job_text("t-1")
        top["functions"][0]["save"]["s3_destination"] = dest("-bad")
        for job, shown in ((top, "'-bad'"), (nested, "'ab'"), (pre, "'bad bucket'")):
            with self.subTest(bucket=shown):
                self.assert_refused(self.run_pixq("submit", "-", input=json.dumps(job)),
                                    "(stdin):1: invalid job: s3_destination of ",
                                    "bucket name %s is not valid" % shown, "nothing was enqueued")
        legacy = self.job_text("l-1")
        legacy["functions"][0]["save"]["s3_destination"] = dest("Legacy_Bucket")
        self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(legacy)), "l-1\n")

    def test_postback_url_no_worker_can_reach_is_refused(self):
        """A postback_url that is not http(s), or has no host, fails at the worker's first step
        with nowhere to say so (the job only lands in the dead list), so submit refuses it; its
        password is not shown. A literal private address is left to the workers' own network
        policy (PIXQ_ALLOWED_NETWORKS), which submit does not know."""
        for url, why in (("gopher://x/pb", "postback_url gopher://x/pb: only http:// and "
                                           "https:// URLs are allowed"),
                         ("http://u:secret@/pb", "postback_url http://u:***@/pb: the URL has "
                                                 "no usable host"),
                         ("https:///pb", "postback_url https:///pb: the URL has no usable host")):
            with self.subTest(url=url):
                job = self.job_text("pb-1", postback_url=url)
                r = self.run_pixq("submit", "-", input=json.dumps(job))
                self.assert_refused(r, "(stdin):1: invalid job: " + why, "nothing was enqueued")
                self.assertNotIn("secret", r.stderr)
        for i, url in enumerate(("HTTP://10.0.0.1:8080/pb", "https://[::1]/pb")):
            job = self.job_text("pb-ok-%d" % i, postback_url=url)
            self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(job)), "pb-ok-%d\n" % i)

    def test_src_no_worker_can_download_is_refused(self):
        """A src URL that is not http(s) or has no host would fail for good on the worker, after
        its wait in the queue: submit refuses it, a pre_process job's too, its password not
        shown. An "&identifier" and a canvas are not URLs, and go."""
        for src, why in (("not a url", "src not a url: only http:// and https:// URLs are "
                                       "allowed"),
                         ("ftp://u:secret@127.0.0.1/a.jpg", "src ftp://u:***@127.0.0.1/a.jpg: "
                                                            "only http:// and https:// URLs are "
                                                            "allowed"),
                         ("http:///a.jpg", "src http:///a.jpg: the URL has no usable host")):
            with self.subTest(src=src):
                job = self.job_text("src-1", src=src)
                r = self.run_pixq("submit", "-", input=json.dumps(job))
                self.assert_refused(r, "(stdin):1: invalid job: " + why, "nothing was enqueued")
                self.assertNotIn("secret", r.stderr)
        pre = self.job_text("src-pre", pre_process=[{"job": {
            "src": "gopher://x/y.png", "functions": [{"name": "no_op", "save": {
                "image_identifier": "p"}}]}}])
        r = self.run_pixq("submit", "-", input=json.dumps(pre))
        self.assert_refused(r, "(stdin):1: invalid job: pre_process src gopher://x/y.png: only "
                            "http:// and https:// URLs are allowed", "nothing was enqueued")
        canvas = self.job_text("src-canvas", src={"name": "canvas", "width": 8, "height": 8})
        self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(canvas)), "src-canvas\n")
        ref = self.job_text("src-ref", src="&p", pre_process=[{"job": {
            "src": self.src.url("/a.png"), "functions": [{"name": "no_op", "save": {
                "image_identifier": "p"}}]}}])
        self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(ref)), "src-ref\n")

    def test_src_object_no_worker_can_load_is_refused(self):
        """An object src the worker cannot load (not s3 or canvas, an s3 one without a bucket or
        a key, a bucket or key S3 refuses) would fail for good after its wait in the queue, with
        the worker's own words: submit refuses it, a pre_process job's too. A valid s3 src, its
        bucket given as {"name", "location"} too, goes."""
        for src, why in (({"name": "ftp", "url": "x"}, "src: src of type 'ftp' is not supported"),
                         ({"bucket": "b", "key": "k"}, "src: src of type '' is not supported"),
                         ({"name": "s3", "key": "a.jpg"},
                          "src: an s3 src needs a bucket and a key"),
                         ({"name": "s3", "bucket": {"location": "us-east-1"}, "key": "a.jpg"},
                          "src: an s3 src needs a bucket and a key"),
                         ({"name": "s3", "bucket": "photos"},
                          "src: an s3 src needs a bucket and a key"),
                         ({"name": "s3", "bucket": "no", "key": "a.jpg"},
                          "src: bucket name 'no' is not valid"),
                         ({"name": "s3", "bucket": {"name": "photos", "location": "not a region"},
                           "key": "a.jpg"}, "src: ")):
            with self.subTest(src=src):
                job = self.job_text("obj-1", src=src)
                r = self.run_pixq("submit", "-", input=json.dumps(job))
                self.assert_refused(r, "(stdin):1: invalid job: " + why, "nothing was enqueued")
        pre = self.job_text("obj-pre", pre_process=[{"job": {
            "src": {"name": "s3", "bucket": "photos"}, "functions": [{"name": "no_op", "save": {
                "image_identifier": "p"}}]}}])
        r = self.run_pixq("submit", "-", input=json.dumps(pre))
        self.assert_refused(r, "(stdin):1: invalid job: pre_process src: an s3 src needs a "
                            "bucket and a key", "nothing was enqueued")
        for i, src in enumerate(({"name": "s3", "bucket": "photos", "key": "in/a.jpg"},
                                 {"name": "s3", "bucket": {"name": "photos",
                                                           "location": "eu-west-1"},
                                  "key": "in/a.jpg"})):
            job = self.job_text("obj-ok-%d" % i, src=src)
            self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(job)), "obj-ok-%d\n" % i)

    def test_output_format_refused_parameters_left_to_workers(self):
        """README (Blitline compatibility): a save asking for a format pixq does not write fails
        the job before its source is fetched, and `pixq submit` refuses it (a key's `.pdf`, an
        `extension` `.avif`, a MIME type as `force_type`), but not in a `skip` save; a parameter
        missing or out of range, which the workers check, is left to them and the job goes."""
        for n, (save, shown) in enumerate(((
                {"s3_destination": {"bucket": "pixq-test", "key": "doc.pdf"}}, "'pdf' for 'o"),
                ({"extension": ".avif", "s3_destination": {"bucket": "pixq-test", "key": "x"}},
                 "'avif' for 'o"),
                ({"force_type": "image/png"}, "'image/png' for 'o"))):
            with self.subTest(shown=shown):
                job = self.job_text("fmt-%d" % n)
                job["functions"][0]["save"].update(save, image_identifier="o")
                self.assert_refused(self.run_pixq("submit", "-", input=json.dumps(job)),
                                    "(stdin):1: invalid job: Unsupported output format " + shown,
                                    "nothing was enqueued")
        skip = self.job_text("fmt-skip")
        skip["functions"][0]["save"].update(skip=True, s3_destination={
            "bucket": "pixq-test", "key": "doc.pdf"})
        bad_params = self.job_text("params-1", functions=[
            {"name": "sharpen", "params": {"sigma": 10},
             "save": {"image_identifier": "s"}},
            {"name": "thumbnail", "params": {"width": 10}, "save": {"image_identifier": "t"}}])
        for job in (skip, bad_params):
            self.assertEqual(self.pixq_ok("submit", "-", input=json.dumps(job)),
                             job["job_id"] + "\n")

    def test_too_many_saves_are_refused(self):
        """PIXQ_MAX_SAVES, which the worker's first step checks, is checked by submit too,
        pre_process saves counted, as PIXQ_MAX_JOB_BYTES and PIXQ_MAX_FUNCTIONS are."""
        job = self.job_text("s-1", pre_process=[{"move_original": {"s3_destination": {
            "bucket": "pixq-test", "key": "o.png"}}}])
        job["functions"].append({"name": "blur", "save": {"image_identifier": "b"}})
        r = self.run_pixq("submit", "-", input=json.dumps(job), env={"PIXQ_MAX_SAVES": "2"})
        self.assert_refused(r, "(stdin):1: invalid job: too many saves (3, at most 2)",
                            "nothing was enqueued")
        r = self.run_pixq("submit", "-", input=json.dumps(job), env={"PIXQ_MAX_SAVES": "3"})
        self.assertEqual((r.returncode, r.stdout), (0, "s-1\n"), r.stderr)

    def test_delayed_batch_shares_one_due_time(self):
        path = self.tmp / "later.jsonl"
        path.write_text("".join(json.dumps(self.job_text("later-%d" % i)) + "\n"
                                for i in range(3)))
        before = self.redis_ms()
        self.assertEqual(self.pixq_ok("submit", str(path), "--delay", "60000").split(),
                         ["later-0", "later-1", "later-2"])
        flat = self.redis.zrange(self.key("delayed"), withscores=True)
        scores = {json.loads(m)["job_id"]: int(float(sc)) for m, sc in zip(flat[::2], flat[1::2])}
        self.assertEqual(sorted(scores), ["later-0", "later-1", "later-2"])
        self.assertEqual(len(set(scores.values())), 1, scores)
        due = scores["later-0"]
        self.assertTrue(before + 60000 <= due <= self.redis_ms() + 60000, due - before)
        stamps = {json.loads(m)["pixq_enqueued_at"] for m in flat[::2]}
        self.assertEqual(len(stamps), 1)
        self.assertLessEqual(abs(stamps.pop() - due), 1000)  # stamped with its due time
        # delay.lua woke the (absent) workers once: one token, no job, on the queue
        self.assertEqual(self.redis.lrange(self.key("jobs")), ['{"pixq_wake":true}'])
        # two jobs; their ids are claimed PIXQ_RESULT_TTL_S past the due time, 1001 ms rounded
        # up to 2 s (an expiry too early by 1 s is seen if the submission took under 1 s)
        path.write_text("".join(json.dumps(self.job_text("soon-%d" % i)) + "\n"
                                for i in range(2)))
        before = self.redis_ms()
        self.assertEqual(self.pixq_ok("submit", str(path), "--delay", "1001").split(),
                         ["soon-0", "soon-1"])
        after = self.redis_ms()
        soon = [m for m in self.redis.zrange(self.key("delayed")) if "soon-" in m]
        self.assertEqual(sorted(json.loads(m)["job_id"] for m in soon), ["soon-0", "soon-1"])
        for i in range(2):
            expiry = int(self.redis.execute("PEXPIRETIME", self.key("job:soon-%d" % i)))
            self.assertTrue(before + 86402000 <= expiry <= after + 86402000, expiry - before)
        # --delay 0 is now: on the queue itself
        path.write_text(json.dumps(self.job_text("now-1")))
        self.assertEqual(self.pixq_ok("submit", str(path), "--delay", "0"), "now-1\n")
        self.assertEqual(json.loads(self.redis.lindex(self.key("jobs"), 0))["job_id"], "now-1")
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 5)

    def test_claim_of_a_delayed_job_outlasts_its_delay(self):
        """A job submitted with --delay waits in delayed until its due time: its id's claim is
        kept PIXQ_RESULT_TTL_S past that, not from the submission, or a --delay longer than
        the TTL (30 days may be asked for, the TTL is one by default) would let the id be
        submitted again while the first job still waits."""
        path = self.tmp / "later.json"
        path.write_text(json.dumps(self.job_text("later-1")))
        env = {"PIXQ_RESULT_TTL_S": "2"}
        r = self.run_pixq("submit", str(path), "--delay", "10000", env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "later-1\n"), r.stderr)
        ttl = int(self.redis.execute("TTL", self.key("job:later-1")))
        self.assertTrue(10 < ttl <= 12, ttl)
        time.sleep(2.5)  # the TTL alone has run out; the job still waits
        r = self.run_pixq("submit", str(path), env=env)
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertIn("pixq: submit: job_id 'later-1' was used already in default", r.stderr)
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 1)
        self.assertEqual(self.redis.lrange(self.key("jobs")), ['{"pixq_wake":true}'])


class WaitTest(CliCase):
    """`pixq submit --wait`: results, progress on stderr, exit status; then what stats shows."""

    def test_batch_with_one_failure(self):
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        path = self.tmp / "batch.jsonl"
        ids = ["w-%d" % i for i in range(6)]
        jobs = [self.job(i, "/ok.png" if i != "w-3" else "/missing.png") for i in ids]
        path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        r = self.run_pixq("submit", str(path), "--wait", "--timeout", "60",
                          "--progress-interval", "0.05")
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout.splitlines()
        self.assertEqual(out[:6], ids)
        results = {json.loads(line)["results"]["job_id"]: json.loads(line) for line in out[6:]}
        self.assertEqual(sorted(results), ids)
        self.assertIn("errors", results["w-3"]["results"])
        self.assertTrue(all("errors" not in results[i]["results"] for i in ids if i != "w-3"))
        err = r.stderr.splitlines()
        self.assertEqual(err[-1], "pixq: submit: 1 of 6 jobs failed")
        progress = [re.fullmatch(r"progress: (\d+)/6 done, (\d+) failed, (\d+) remaining, "
                                 r"([\d.]+) jobs/s, ([\d.]+) s", line) for line in err[:-1]]
        self.assertTrue(all(progress), err)
        self.assertGreaterEqual(len(progress), 2, err)  # periodic lines, then the final one
        done = [int(m.group(1)) for m in progress]
        self.assertEqual(done, sorted(done))
        for m in progress:
            self.assertEqual(int(m.group(1)) + int(m.group(3)), 6)
        last = progress[-1]
        self.assertEqual((last.group(1), last.group(2), last.group(3)), ("6", "1", "0"))
        self.assertGreater(float(last.group(4)), 0)

        # what pixq stats makes of it: 5 succeeded, 1 failed in the last minute
        s = json.loads(self.pixq_ok("stats", "--json"))
        q = s["queues"][0]
        self.assertEqual(q["throughput"], {"window_s": 60, "succeeded": 5, "failed": 1})
        self.assertEqual(s["throughput"], q["throughput"])
        self.assertEqual((q["counters"]["succeeded"], q["counters"]["failed"]), (5, 1))
        text = self.pixq_ok("stats")
        self.assertRegex(text, r"last minute +5 succeeded, 1 failed\n")

        # all succeeded: exit 0, nothing but progress on stderr; a single job shows no progress
        path.write_text("".join(json.dumps(self.job("ok-%d" % i, "/ok.png")) + "\n"
                                for i in range(2)))
        r = self.run_pixq("submit", str(path), "--wait", "--no-progress")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(len(r.stdout.splitlines()), 4)
        one = self.tmp / "one.json"
        one.write_text(json.dumps(self.job("single", "/ok.png")))
        r = self.run_pixq("submit", str(one), "--wait")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(json.loads(r.stdout.splitlines()[1])["results"]["job_id"], "single")

    def test_progress_bar_on_a_terminal_and_timeout(self):
        """stderr on a pseudo-terminal: the bar is redrawn in place (CR, erase line); a job that
        never finishes makes --timeout expire with exit 1 and a message naming it."""
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        self.src.stall("/stuck.png")
        path = self.tmp / "batch.json"
        path.write_text(json.dumps([self.job("t-ok", "/ok.png"),
                                    self.job("t-stuck", "/stuck.png")]))
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        proc = subprocess.Popen([CONFIG.pixq, "submit", str(path), "--wait", "--timeout", "2"],
                                env=self.cli_env(), stdout=subprocess.PIPE, stderr=slave,
                                text=True)
        os.close(slave)
        tty = read_pty(master)
        stdout, _ = proc.communicate(timeout=scaled(20))
        self.assertEqual(proc.returncode, 1, tty)
        self.assertIn("\r\x1b[K[", tty)
        self.assertRegex(tty, r"\[#+\.+\] 1/2 done, 0 failed, 1 remaining, [\d.]+ jobs/s")
        self.assertIn("pixq: submit: timed out after 2 s: 1 of 2 jobs have no result yet "
                      "(t-stuck), 0 failed", tty)
        # the bar is erased before a result is printed (on stdout), and redrawn later; the last
        # one ends its line
        self.assertIn("\r\x1b[K\r\x1b[K[", tty)
        self.assertRegex(tty, r"\] 1/2 done, 0 failed, 1 remaining, [\d.]+ jobs/s\r?\npixq: "
                         r"submit: timed out")
        self.assertEqual(stdout.splitlines()[:2], ["t-ok", "t-stuck"])
        self.assertEqual(json.loads(stdout.splitlines()[2])["results"]["job_id"], "t-ok")
        self.src.release()
        self.wait_for_postback(job_id="t-stuck")

    def test_progress_lines_at_their_interval(self):
        """Not a terminal: a progress line every --progress-interval from the start, and none
        with --no-progress, however long the wait."""
        self.src.stall("/stuck.png")
        two = self.tmp / "stuck.json"
        two.write_text(json.dumps([self.job("p-stuck-%d" % i, "/stuck.png") for i in (1, 2)]))
        self.start_worker()
        r = self.run_pixq("submit", str(two), "--wait", "--timeout", "2",
                          "--progress-interval", "0.05")
        self.assertEqual(r.returncode, 1, r.stderr)
        err = r.stderr.splitlines()
        self.assertEqual(err[-1], "pixq: submit: timed out after 2 s: 2 of 2 jobs have no result "
                         "yet (p-stuck-1, ...), 0 failed")
        secs = [float(re.fullmatch(r"progress: 0/2 done, 0 failed, 2 remaining, 0\.0 jobs/s, "
                                   r"([\d.]+) s", line).group(1)) for line in err[:-1]]
        self.assertGreaterEqual(min(secs, default=0), 0.05)  # the first after an interval
        self.assertEqual(secs, sorted(secs))
        # 40 at 0.05 s in 2 s: at least 15 on a loaded machine (10 at most, every 0.2 s)
        self.assertGreaterEqual(len(secs), 15, err)
        two.write_text(json.dumps([self.job("p-quiet-%d" % i, "/stuck.png") for i in (1, 2)]))
        r = self.run_pixq("submit", str(two), "--wait", "--timeout", "1", "--no-progress",
                          "--progress-interval", "0.05")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr, "pixq: submit: timed out after 1 s: 2 of 2 jobs have no "
                         "result yet (p-quiet-1, ...), 0 failed\n")
        self.src.release()
        self.wait_for_postback(job_id="p-quiet-2")

    def test_progress_lines_every_interval(self):
        """--progress-interval S: a line every S seconds, by the times the lines give (never
        closer together: no clock of the test's own)."""
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        self.src.stall("/stuck.png")
        path = self.tmp / "batch.json"
        path.write_text(json.dumps([self.job("i-ok", "/ok.png"),
                                    self.job("i-stuck", "/stuck.png")]))
        r = self.run_pixq("submit", str(path), "--wait", "--timeout", "3",
                          "--progress-interval", "0.5")
        self.assertEqual(r.returncode, 1, r.stderr)
        times = [float(m.group(1)) for m in re.finditer(r"^progress: .* ([\d.]+) s$", r.stderr,
                                                        re.M)]
        periodic = times[:-1]  # the last line is the final one, at the timeout
        self.assertGreaterEqual(len(periodic), 2, r.stderr)
        self.assertGreaterEqual(periodic[0], 0.45, r.stderr)  # one decimal shown
        for a, b in zip(periodic, periodic[1:]):
            self.assertGreaterEqual(b - a, 0.45, r.stderr)
        self.src.release()
        self.wait_for_postback(job_id="i-stuck")

    def test_timeout_counts_from_the_due_time_of_delayed_jobs(self):
        """--wait with --delay: no job can have a result before it is due, so --timeout counts
        from then; it counted from the submission, and a --delay longer than --timeout (the
        default 300 s, say) always ended with "timed out" and status 1 while the job was fine."""
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        one = self.tmp / "later.json"
        one.write_text(json.dumps(self.job("later", "/ok.png")))
        r = self.run_pixq("submit", str(one), "--delay", "2500", "--wait", "--timeout", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout.splitlines()[1])["results"]["job_id"], "later")
        # a job that never finishes still times out, the message says from when
        self.src.stall("/stuck.png")
        one.write_text(json.dumps(self.job("later-stuck", "/stuck.png")))
        t0 = time.monotonic()
        r = self.run_pixq("submit", str(one), "--delay", "500", "--wait", "--timeout", "1")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)
        self.assertIn("pixq: submit: timed out after 1 s from their due time: 1 of 1 jobs have "
                      "no result yet (later-stuck), 0 failed", r.stderr)
        self.src.release()
        self.wait_for_postback(job_id="later-stuck")


    def test_a_last_look_at_the_deadline(self):
        """A result that comes after the last poll before --timeout ends is read at the end: the
        wait ended without a last look, and with many jobs (10,000 pending: a poll a second) a
        job done up to a second before the deadline was said to have no result."""
        n = 10000  # the most one submission takes
        path = self.tmp / "many.jsonl"
        path.write_text("".join(json.dumps(self.job("dl-%d" % i, "/ok.png")) + "\n"
                                for i in range(n)))
        out = self.tmp / "many.out"

        def lindex_calls():
            return self.command_calls("lindex")[0]

        before = lindex_calls()
        # no worker: no job has a result but the one written below; the deadline is 1 s after
        # the wait began, the poll after the first 1 s after that one ended
        queued_after = time.monotonic()
        with open(out, "w") as f:
            proc = subprocess.Popen([CONFIG.pixq, "submit", str(path), "--wait", "--timeout", "1",
                                     "--no-progress"],
                                    env=self.cli_env(), stdout=f, stderr=subprocess.PIPE,
                                    text=True)
            self.addCleanup(lambda: proc.poll() is None and proc.kill())
            # the wait begins after the jobs are queued: later than the last look at none
            limit = time.monotonic() + scaled(30)
            while self.redis.llen(self.key("jobs")) == 0 and time.monotonic() < limit:
                queued_after = time.monotonic()
                time.sleep(0.005)
            self.wait_until(lambda: lindex_calls() - before >= n, scaled(30), "the first poll")
            result = {"results": {"job_id": "dl-7", "images": []}}
            self.redis.rpush(self.key("result:dl-7"), json.dumps(result))
            pushed = time.monotonic() - queued_after
            _, stderr = proc.communicate(timeout=scaled(60))
        if pushed > 0.9:
            self.skipTest("the result was written %.2f s after the jobs were queued: perhaps "
                          "after the deadline" % pushed)
        self.assertEqual(proc.returncode, 1, stderr)
        lines = out.read_text().splitlines()
        self.assertEqual(len(lines), n + 1, lines[n:])
        self.assertEqual(json.loads(lines[n]), result)
        self.assertIn("timed out after 1 s: 9999 of 10000 jobs have no result yet", stderr)
        self.assertEqual(lindex_calls() - before, 2 * n)  # the first poll, the last look

class RedisRestartTest(CliCase):
    """`pixq stats --watch`, `pixq submit --wait` and `pixq job --wait` ride out a Redis restart
    (with its AOF, as deploy/redis.conf runs it): a line on stderr while it is away and when it
    is back, and they carry on; before, each gave up at the first failed command (exit 1)."""

    redis_appendonly = True

    def assert_outage_lines(self, err, what):
        """stderr of `what` through one outage: the line that begins it (the whole limit left),
        a line again each time the reason changes (a Redis found back but still loading its
        AOF answers LOADING), and the line that ends it; nothing else."""
        lines = err.splitlines()
        self.assertGreaterEqual(len(lines), 2, err)
        self.assertRegex(lines[0], r"^pixq: %s: redis unavailable \(.+\); trying again for "
                         r"up to 300 s \(PIXQ_REDIS_OUTAGE_MS\)$" % what)
        for line in lines[1:-1]:
            self.assertRegex(line, r"^pixq: %s: redis unavailable \(redis: LOADING .+\); "
                             r"trying again for up to [\d.]+ s \(PIXQ_REDIS_OUTAGE_MS\)$" % what)
        self.assertRegex(lines[-1], r"^pixq: %s: redis is back after [\d.]+ s$" % what)

    def test_watch_through_a_restart(self):
        """Refreshes further apart than the client's idle check (250 ms): the closed connection
        is found before a command, which the worker logs as redis_reconnect at info; the
        command line's own lines say it, and that one is kept to debug level."""
        proc = self.start_cli("stats", "--json", "--watch", "0.5", "--count", "5")
        self.assertTrue(proc.stdout.readline())  # a refresh before the restart
        self.redis_server.restart(down_seconds=1.0)
        out, err = proc.communicate(timeout=scaled(20))
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(len(out.splitlines()), 4)  # the other refreshes, after it
        self.assert_outage_lines(err, "stats")
        self.assertIn("cannot connect to redis at 127.0.0.1:%d: Connection refused"
                      % self.redis_server.port, err)

    def test_watch_started_while_redis_is_down(self):
        """--watch waits for a Redis not up yet as for one that went away; a one-off stats
        fails at once."""
        self.redis.close()
        self.redis_server.shutdown()
        self.assertEqual(self.run_pixq("stats").returncode, 1)
        proc = self.start_cli("stats", "--json", "--watch", "0.2", "--count", "2")
        # Redis comes back once pixq has found it down (its first line), not after a fixed
        # 0.5 s: a sanitized pixq on a busy machine may not have tried by then
        ready, _, _ = select.select([proc.stderr], [], [], scaled(20))
        self.assertTrue(ready, "pixq said nothing of the Redis that is down")
        first = proc.stderr.readline()
        self.redis_server.restart()
        out, err = proc.communicate(timeout=scaled(20))
        err = first + err
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(len(out.splitlines()), 2)
        self.assert_outage_lines(err, "stats")
        self.assertRegex(err, r"^pixq: stats: redis unavailable \(cannot connect to redis at "
                         r"127\.0\.0\.1:\d+: Connection refused\); trying again for up to 300 s "
                         r"\(PIXQ_REDIS_OUTAGE_MS\)\n")

    def test_wait_through_a_restart_and_its_limits(self):
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        worker = self.start_worker()
        path = self.tmp / "job.json"
        path.write_text(json.dumps(self.job("slow", "/slow.png")))
        proc = self.start_cli("submit", str(path), "--wait", "--timeout", "60")
        self.assertEqual(proc.stdout.readline(), "slow\n")
        self.wait_until(lambda: self.src.requests("/slow.png"), 20, "the worker to take the job")
        self.redis.close()
        self.redis_server.restart(down_seconds=1.0)
        self.src.release()  # the job finishes once Redis is back
        out, err = proc.communicate(timeout=scaled(30))
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(json.loads(out)["results"]["job_id"], "slow")
        self.assertRegex(err, r"^pixq: submit: redis unavailable \(.+\); trying again for up "
                         r"to 300 s \(PIXQ_REDIS_OUTAGE_MS\)\n")
        self.assertRegex(err, r"\npixq: submit: redis is back after [\d.]+ s\n$")
        worker.check_alive()

        # Redis gone for good: --timeout still ends the wait, or PIXQ_REDIS_OUTAGE_MS first
        self.src.stall("/slow.png")
        path.write_text(json.dumps(self.job("slow-2", "/slow.png")))
        proc = self.start_cli("submit", str(path), "--wait", "--timeout", "2")
        self.assertEqual(proc.stdout.readline(), "slow-2\n")
        path.write_text(json.dumps(self.job("slow-3", "/slow.png")))
        proc3 = self.start_cli("submit", str(path), "--wait", PIXQ_REDIS_OUTAGE_MS="500")
        self.assertEqual(proc3.stdout.readline(), "slow-3\n")
        self.redis_server.shutdown()
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=scaled(20))
        self.assertEqual(proc.returncode, 1, err)
        self.assertLess(time.monotonic() - t0, scaled(4))
        self.assertEqual(err.splitlines()[-1], "pixq: submit: timed out after 2 s: 1 of 1 jobs "
                         "have no result yet (slow-2), 0 failed")
        _, err = proc3.communicate(timeout=scaled(20))
        self.assertEqual(proc3.returncode, 1, err)
        self.assertRegex(err.splitlines()[-1], r"^pixq: submit: waiting for results: redis "
                         r"unavailable for 0\.\d s \(PIXQ_REDIS_OUTAGE_MS\): cannot connect to "
                         r"redis at .*; 1 of 1 jobs have no result yet \(slow-3\): they may "
                         r"still finish$")
        self.src.release()

    def test_wait_given_up_counts_the_jobs_without_a_result(self):
        """Redis gone past PIXQ_REDIS_OUTAGE_MS while --wait waits for a batch: the message
        counts the jobs still without a result (one of two here), not the whole batch; no
        last progress line comes before it (they are an hour apart here)."""
        path = self.tmp / "two.json"
        path.write_text(json.dumps([self.job(i, "/a.png") for i in ("gone-1", "gone-2")]))
        proc = self.start_cli("submit", str(path), "--wait", "--progress-interval", "3600",
                              PIXQ_REDIS_OUTAGE_MS="500")
        self.assertEqual([proc.stdout.readline(), proc.stdout.readline()],
                         ["gone-1\n", "gone-2\n"])
        result = {"results": {"job_id": "gone-1", "images": []}}
        self.redis.rpush(self.key("result:gone-1"), json.dumps(result))
        self.assertEqual(json.loads(proc.stdout.readline()), result)
        self.redis.close()
        self.redis_server.shutdown()
        _, err = proc.communicate(timeout=scaled(20))
        self.assertEqual(proc.returncode, 1, err)
        self.assertRegex(err.splitlines()[-1], r"^pixq: submit: waiting for results: redis "
                         r"unavailable .*; 1 of 2 jobs have no result yet \(gone-2\): they may "
                         r"still finish$")
        self.assertNotIn("progress:", err)

    def test_job_wait_through_a_restart(self):
        """`pixq job --wait` rides out a restart too. Redis keeps its data (its AOF): without
        it the job was nowhere once Redis was back, and the wait ended with "no trace" whenever
        its first search after the restart came before the worker's result. The restart comes
        once the wait searches again (its second ZSCAN of `delayed`), not 0.5 s after pixq
        started: a first search cut short by it ends pixq job at once (status 1)."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        worker = self.start_worker()
        self.push(self.job("wait-restart", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png"), 20, "the worker to take the job")
        self.redis.execute("CONFIG", "RESETSTAT")
        proc = self.start_cli("job", "wait-restart", "--wait", "--json")

        self.wait_until(lambda: self.command_calls("zscan")[0] >= 2, 20,
                        "pixq job to search again")
        self.redis.close()
        self.redis_server.restart(down_seconds=1.5)
        self.src.release()  # the job finishes once Redis is back
        out, err = proc.communicate(timeout=scaled(30))
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(json.loads(out)["queues"][0]["state"], "succeeded", out)
        self.assertRegex(err, r"^pixq: job: redis unavailable \(.+\); trying again for up "
                         r"to 300 s \(PIXQ_REDIS_OUTAGE_MS\)\n")
        self.assertRegex(err, r"\npixq: job: redis is back after [\d.]+ s\n$")
        worker.check_alive()


    def test_refused_login_or_database_is_not_waited_for(self):
        """README: a Redis that refuses the login or the database of PIXQ_REDIS_URL is a failed
        operation (status 1, the reason on stderr) for every pixq command, even those that ride
        out an outage: only an unreachable or still loading Redis is waited for."""
        port = self.redis_server.port
        cases = (("redis://pixq:wrong@127.0.0.1:%d/0" % port, "redis AUTH refused: WRONGPASS"),
                 ("redis://127.0.0.1:%d/99" % port,
                  "redis SELECT refused: ERR DB index is out of range"))
        for url, why in cases:
            for args in (["stats", "--watch", "0.1"], ["submit", "--wait", "-"],
                         ["job", "some-job", "--wait"], ["queues"], ["dead", "list"]):
                with self.subTest(url=url, args=args):
                    # waited for, it would say "redis unavailable (...); trying again" first
                    r = self.run_pixq(*args, input=json.dumps(GOOD_JOB),
                                      env={"PIXQ_REDIS_URL": url, "PIXQ_REDIS_OUTAGE_MS": "3000"})
                    self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                    self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                    self.assertTrue(r.stderr.startswith("pixq: %s: %s" % (args[0], why)),
                                    r.stderr)
        self.assertEqual(self.redis.llen(self.key("jobs")), 0)


class StatsTest(CliCase):
    def test_stats_of_a_running_fleet(self):
        fleet = [self.start_worker(), self.start_worker()]
        wids = [self.worker_id(w) for w in fleet]
        self.submit_later("later-1")

        self.push(self.job("done-1", "/ok.png"))
        self.wait_for_postback(job_id="done-1")
        self.push("{not json")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "a dead entry")
        size = len(self.s3_object("out/done-1.png"))
        self.wait_until(lambda: self.counters().get("uploaded_bytes") == size, 10,
                        "the heartbeat to count done-1's %d bytes" % size)
        self.src.stall("/slow.png")
        self.push(self.job("busy-1", "/slow.png"))
        self.push(self.job("busy-2", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 2, 20, "both workers busy")
        waiting = self.push(self.job("waiting-1", "/ok.png"))  # pushed without the stamp

        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertEqual([q["queue"] for q in s["queues"]], ["default"])
        q = s["queues"][0]
        self.assertEqual((q["jobs"], q["delayed"], q["dead"], q["active"]), (1, 1, 1, 2), q)
        self.assertEqual((q["live_workers"], s["live_workers"]), (2, 2), s)
        self.assertEqual(q["oldest_job"], {"job_id": "waiting-1", "enqueued_at_ms": None,
                                           "age_ms": None})
        # later-1 is due 600 s after its submission, a few seconds ago at most
        self.assertTrue(560000 < q["next_delayed_ms"] <= 600000, q["next_delayed_ms"])
        self.assertEqual(sorted(w["id"] for w in q["workers"]), sorted(wids))
        for w in q["workers"]:
            self.assertTrue(w["alive"])
            self.assertGreater(w["lease_ms_left"], 0, w)
            self.assertLessEqual(w["lease_ms_left"], LEASE_MS, w)
            self.assertEqual(len(w["jobs"]), 1, w)
            j = w["jobs"][0]
            self.assertEqual((j["kind"], j["runs"]), ("job", 1), j)
            self.assertTrue(0 <= j["running_ms"] < 20000, j)
            self.assertEqual(j["started_at_ms"] + j["running_ms"], s["time_ms"])
        self.assertEqual(sorted(w["jobs"][0]["job_id"] for w in q["workers"]),
                         ["busy-1", "busy-2"])
        c = q["counters"]
        self.assertEqual((c.get("succeeded"), c.get("failed"), c.get("dead")), (1, 1, 1), c)
        # received: done-1, busy-1 and busy-2 began (not the payload that is no job)
        self.assertEqual((c.get("received"), c.get("uploaded_bytes")), (3, size), c)
        self.assertEqual(c, self.counters())
        self.assertEqual(s["counters"], c)  # one queue: the fleet's sum is its own
        self.assertEqual(q["throughput"], {"window_s": 60, "succeeded": 1, "failed": 1})

        text = self.pixq_ok("stats")
        self.assertIn("queue default\n", text)
        self.assertRegex(text, r"jobs waiting +1\n")
        self.assertRegex(text, r"delayed +1\n")
        self.assertRegex(text, r"dead +1\n")
        self.assertRegex(text, r"active +2\n")
        self.assertRegex(text, r"oldest job +unknown \(waiting-1: pushed without "
                               r"pixq_enqueued_at\)\n")
        self.assertRegex(text, r"live workers +2\n")
        self.assertRegex(text, r"next delayed +due in 5\d\d\.\d s\n")
        for w in q["workers"]:
            jid = w["jobs"][0]["job_id"]
            self.assertRegex(text, r"%s +alive +lease [\d.]+ s +jobs \[\"%s\"\]\n +%s +job, "
                                   r"running since [\d.]+ s, run 1\n" % (w["id"], jid, jid))
        self.assertRegex(text, r"succeeded +1\n")
        self.assertRegex(text, r"last minute +1 succeeded, 1 failed\n")

        # a worker dies: once its lease has run out and it was reaped, the fleet shows one worker
        # and its job is waiting again, ahead of the rest
        victim = next(w for w in q["workers"] if w["jobs"][0]["job_id"] == "busy-1")
        self.kill_worker(fleet[wids.index(victim["id"])], signal.SIGKILL)
        self.wait_until(lambda: self.counters().get("recovered") == 1, LEASE_MS / 1000.0 + 5,
                        "the dead worker to be reaped")
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["jobs"], q["live_workers"], len(q["workers"])), (2, 1, 1), q)
        self.assertEqual(q["counters"]["recovered"], 1)
        self.assertEqual(q["oldest_job"]["job_id"], "busy-1")
        self.assertEqual(json.loads(self.redis.lindex(self.key("jobs"), -1))["job_id"], "busy-1")
        self.assertEqual(self.redis.lindex(self.key("jobs"), 0), waiting)

    def test_uploaded_bytes_counted_at_stop(self):
        # a heartbeat a minute apart: only the worker's stop can count the bytes in time
        worker = self.start_worker(PIXQ_HEARTBEAT_MS="60000", PIXQ_LEASE_MS="180000")
        self.src.add("/ok.png", tiny_png())
        for n in (1, 2):
            self.push(self.job("bytes-%d" % n, "/ok.png"))
            self.wait_for_postback(job_id="bytes-%d" % n)
        size = sum(len(self.s3_object("out/bytes-%d.png" % n)) for n in (1, 2))
        # finish.lua counts bytes-2 (with its result) after its postback
        self.wait_until(lambda: self.redis.exists(self.key("result:bytes-2")), 10,
                        "bytes-2's result")
        time.sleep(0.5)
        self.assertEqual(self.counters(), {"received": 2, "succeeded": 2})
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["live_workers"], len(q["workers"])), (1, 1), q)
        self.kill_worker(worker, signal.SIGTERM)
        self.assertEqual(self.counters(), {"received": 2, "succeeded": 2, "uploaded_bytes": size})
        # README, Draining a worker: pixq stats shows the worker gone, at once (not a lease later)
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["live_workers"], q["workers"]), (0, []), q)
        self.assertRegex(self.pixq_ok("stats"), r"live workers +0\n")

    def test_uploaded_bytes_counted_at_the_shutdown_deadline(self):
        # the lease thread ends the process past PIXQ_SHUTDOWN_TIMEOUT_MS: it counts first
        worker = self.start_worker(PIXQ_HEARTBEAT_MS="60000", PIXQ_LEASE_MS="180000",
                                   PIXQ_SHUTDOWN_TIMEOUT_MS="1000")
        self.src.add("/ok.png", tiny_png())
        self.src.add("/slow.png", tiny_png())
        self.push(self.job("deadline-1", "/ok.png"))
        self.wait_for_postback(job_id="deadline-1")
        size = len(self.s3_object("out/deadline-1.png"))
        self.src.stall("/slow.png")
        self.push(self.job("deadline-2", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the stalled job")
        self.kill_worker(worker, signal.SIGTERM)
        self.assertTrue(worker.log_events("shutdown_deadline"))
        self.assertEqual(self.counters().get("uploaded_bytes"), size)

    def test_uploaded_bytes_counted_when_uploaded(self):
        # not when the job ends: here its postback is answered 10 s late (the count comes with
        # the next heartbeat, 1 s; the rest is room for a loaded machine)
        worker = self.start_worker()
        self.src.add("/ok.png", tiny_png())
        self.postbacks.delay = 10  # under PIXQ_POSTBACK_TIMEOUT_MS (15 s)
        self.push(self.job("counted-early", "/ok.png"))
        self.wait_until(lambda: self.s3.get_object(self.buckets[0], "out/counted-early.png")[0]
                        == 200, 20, "the upload")
        size = len(self.s3_object("out/counted-early.png"))
        self.wait_until(lambda: self.counters().get("uploaded_bytes") == size, 8,
                        "the next heartbeat (1 s) to count %d bytes" % size)
        self.assertEqual(worker.log_events("job_done"), [])  # its postback still unanswered
        self.wait_until(lambda: worker.log_events("job_done"), 20, "the job's end")

    def test_stats_of_an_empty_queue(self):
        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertIsInstance(s.pop("time_ms"), int)
        memory = s.pop("redis")
        self.assertGreater(memory.pop("used_memory"), 0)
        self.assertEqual(memory, {"not_counted_for_evict": 0, "maxmemory": 0,
                                  "maxmemory_policy": "noeviction", "full": False,
                                  "info_refused": None})
        self.assertEqual(s, {"live_workers": 0, "counters": {}, "limits": [],
                             "throughput": {"window_s": 60, "succeeded": 0, "failed": 0},
                             "queues": [{"queue": "default", "jobs": 0, "delayed": 0, "dead": 0,
                                         "active": 0, "parked_bytes": 0, "oldest_job": None,
                                         "next_delayed_ms": None, "live_workers": 0,
                                         "registered_workers": 0, "workers": [], "counters": {},
                                         "throughput": {"window_s": 60, "succeeded": 0,
                                                        "failed": 0}}]})
        text = self.pixq_ok("stats")
        self.assertRegex(text, r"oldest job +none waiting\n")
        self.assertRegex(text, r"next delayed +none\n")
        self.assertNotIn("pixq_queue_next_delayed_seconds{",
                         self.pixq_ok("stats", "--prometheus"))

    def redis_memory(self):
        """pixq stats's redis section: (the --json object, the text's lines from "redis" on to
        "limits", the --prometheus samples of pixq_redis_*, "policy" holding the label of
        pixq_redis_maxmemory_policy's one sample, at 1)."""
        memory = json.loads(self.pixq_ok("stats", "--json"))["redis"]
        text = self.pixq_ok("stats")
        section = text[text.index("\nredis\n") + 1:text.index("\nlimits\n") + 1]
        fams = parse_prometheus(self.pixq_ok("stats", "--prometheus"))
        samples = {name: fam["samples"].get(frozenset()) for name, fam in fams.items()
                   if name.startswith("pixq_redis_")}
        [(labels, value)] = fams["pixq_redis_maxmemory_policy"]["samples"].items()
        self.assertEqual(value, 1)
        samples["policy"] = dict(labels)["policy"]
        return memory, section, samples

    def test_stats_shows_redis_memory_and_when_it_is_full(self):
        """Redis's memory against its maxmemory, and whether it is full (README: Redis is
        full), as Redis compares them: past maxmemory it refused a producer's push, and stats
        said so in all three formats. An eviction policy is named with its danger; a server
        that refuses INFO leaves the memory unknown and stats working."""
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory", "0")
        memory, text, prom = self.redis_memory()
        used = memory["used_memory"]
        self.assertRegex(text, r"^redis\n  memory +\d+ bytes, no maxmemory\n"
                               r"  policy +noeviction\n$")
        self.assertEqual(prom["pixq_redis_maxmemory_bytes"], 0)
        self.assertEqual((prom["pixq_redis_full"], prom["policy"]), (0, "noeviction"))
        self.assertTrue(0.5 * used < prom["pixq_redis_used_memory_bytes"] < 2 * used, prom)

        self.redis.execute("CONFIG", "SET", "maxmemory", str(4 * used))
        memory, text, prom = self.redis_memory()
        self.assertEqual((memory["maxmemory"], memory["full"]), (4 * used, False))
        self.assertRegex(text, r"  memory +\d+ of maxmemory %d bytes \(2\d %%\)\n"
                               r"  policy +noeviction\n$" % (4 * used))
        self.assertEqual((prom["pixq_redis_maxmemory_bytes"], prom["pixq_redis_full"]),
                         (4 * used, 0))

        self.redis.execute("CONFIG", "SET", "maxmemory", str(used // 2))
        refused = self.run_pixq("submit", "-", input=json.dumps(self.job("f-1", "/ok.png")))
        self.assertEqual(refused.returncode, 1)
        self.assertIn("OOM", refused.stderr)
        memory, text, prom = self.redis_memory()
        self.assertEqual(memory["full"], True)
        self.assertRegex(text, r"\(\d{3} %\)\n  policy +noeviction\n  FULL +Redis refuses "
                               r"producers' pushes; workers settle what they hold and take no "
                               r"fresh job until it has room\n$")
        self.assertEqual(prom["pixq_redis_full"], 1)

        self.redis.execute("CONFIG", "SET", "maxmemory", "1gb")
        self.redis.execute("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        memory, text, prom = self.redis_memory()
        self.assertEqual((memory["maxmemory_policy"], memory["full"]), ("allkeys-lru", False))
        self.assertEqual(prom["policy"], "allkeys-lru")
        self.assertIn("  policy         allkeys-lru: Redis evicts keys when full, a whole queue "
                      "among them (set noeviction)\n", text)

        self.redis.execute("ACL", "SETUSER", "noinfo", "on", ">pw3", "~pixq:*", "resetchannels",
                           "+@all", "-@admin", "-@dangerous")
        env = {"PIXQ_REDIS_URL": "redis://noinfo:pw3@127.0.0.1:%d/0" % self.redis_server.port,
               "PIXQ_QUEUE": "default"}
        out = {}
        for fmt in ("--json", "--text", "--prometheus"):
            r = self.run_pixq(*(["stats"] + ([fmt] if fmt != "--text" else [])), env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            out[fmt] = r.stdout
        memory = json.loads(out["--json"])["redis"]
        self.assertRegex(memory.pop("info_refused"), "^redis: NOPERM.*info")
        self.assertEqual(memory, {"used_memory": None, "not_counted_for_evict": None,
                                  "maxmemory": None, "maxmemory_policy": None, "full": None})
        self.assertRegex(out["--text"], r"\nredis\n  memory +unknown \(redis: NOPERM.*\)\n"
                                        r"limits\n")
        fams = parse_prometheus(out["--prometheus"])
        self.assertEqual({name: fams[name]["samples"] for name in fams
                          if name.startswith("pixq_redis_")},
                         {name: {} for name in PROM_FAMILIES if name.startswith("pixq_redis_")})

    def test_stats_says_a_volatile_policy_refuses_once_nothing_expires(self):
        """Under a volatile-* policy (a managed Redis's default) Redis evicts only keys with a
        TTL, never a queue, and past maxmemory with none left it refuses a producer's push as
        noeviction does: stats said "Redis evicts keys ..., a whole queue among them" and, full,
        "Redis is evicting keys" while the push was refused."""
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory", "0")
        self.redis.execute("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
        memory, text, prom = self.redis_memory()
        self.assertIn("  policy         volatile-lru: Redis evicts keys with a TTL when full "
                      "(job hashes, results, parked uploads), then refuses what adds data "
                      "(set noeviction)\n", text)
        self.redis.execute("CONFIG", "SET", "maxmemory", str(memory["used_memory"] // 2))
        refused = self.run_pixq("submit", "-", input=json.dumps(self.job("v-1", "/ok.png")))
        self.assertEqual(refused.returncode, 1)
        self.assertIn("OOM", refused.stderr)
        memory, text, prom = self.redis_memory()
        self.assertEqual((memory["full"], prom["pixq_redis_full"], prom["policy"]),
                         (True, 1, "volatile-lru"))
        self.assertRegex(text, r"  FULL +Redis evicts keys with a TTL, and refuses producers' "
                               r"pushes once none is left\n$")

    def run_to(self, stdout, *args, input=None, close_stdout=False):
        """pixq [args] with its stdout on the file `stdout` (or closed): (status, stderr)."""
        r = subprocess.run([CONFIG.pixq, *args], env=self.cli_env(), stdout=stdout,
                           stderr=subprocess.PIPE, text=True, input=input, timeout=scaled(30),
                           preexec_fn=(lambda: os.close(1)) if close_stdout else None)
        return r.returncode, r.stderr

    def test_output_that_cannot_be_written_is_a_failure(self):
        """A stdout that takes nothing (a full disk: /dev/full; a file closed) fails the command,
        status 1, and says so, whether it did its work (submit's jobs are enqueued, their ids
        lost): `pixq stats --prometheus > f.tmp && mv f.tmp f` (README, Metrics) moved an empty
        file into place, status 0; stats --watch wrote into it for ever; a closed stdout left
        its number to the connection, and submit's ids went to Redis as commands (status 0)."""
        lost = "its output is lost or cut short)\n"
        done = " (the command did its work; " + lost
        with open("/dev/full", "w") as full:
            for args, said in ((["stats"], " (" + lost), (["stats", "--prometheus"], " (" + lost),
                               (["stats", "--watch", "0.1"], " (" + lost),
                               (["queues", "--json"], done), (["limit", "show"], done),
                               (["submit", "-"], done)):
                with self.subTest(args=args):
                    rc, err = self.run_to(full, *args, input=json.dumps(GOOD_JOB))
                    self.assertEqual((rc, err), (1, "pixq: %s: cannot write to stdout: No space "
                                                 "left on device%s" % (args[0], said)))
        self.assertEqual(self.redis.llen(self.key("jobs")), 1)  # enqueued all the same
        for args, said in ((["stats"], " (" + lost), (["submit", "-"], done)):
            with self.subTest(args=args, stdout="closed"):
                rc, err = self.run_to(None, *args, input=json.dumps(GOOD_JOB), close_stdout=True)
                self.assertEqual((rc, err), (1, "pixq: %s: cannot write to stdout: Bad file "
                                             "descriptor%s" % (args[0], said)))
        self.assertEqual(self.redis.llen(self.key("jobs")), 2)

    def test_key_of_another_type_is_named(self):
        """A queue key of another type (set by hand: `SET pixq:{default}:jobs x`) fails each
        command that reads or writes it, status 1, the key named, so that the operator knows
        which to look at (README, Redis keys): Redis's WRONGTYPE names none, and pixq said only
        'redis: WRONGTYPE Operation against a key holding the wrong kind of value'; dead list
        said even that without the command ('pixq: redis: ...') (h225's audit)."""
        failing = {"jobs": [["stats"], ["queues"], ["job", "a-1"], ["submit", "-"],
                            ["submit", "--delay", "9000", "-"]],
                   "dead": [["stats"], ["queues"], ["job", "a-1"], ["dead", "list"],
                            ["dead", "retry", "all"], ["dead", "retry", "a-1"],
                            ["dead", "purge"], ["dead", "purge", "--no-id"]],
                   "delayed": [["stats"], ["queues"], ["job", "a-1"],
                               ["submit", "--delay", "9000", "-"]],
                   "workers": [["stats"], ["queues"], ["job", "a-1"]],
                   "tput": [["stats"]], "parked": [["stats"]], "stats": [["stats"]],
                   "pixq:rl:{my-bucket}": [["stats"], ["limit", "show"],
                                           ["limit", "set", "my-bucket", "5", "1"],
                                           ["limit", "reset", "my-bucket"]]}
        for suffix, commands in failing.items():
            key = suffix if suffix.startswith("pixq:") else self.key(suffix)
            self.redis.execute("FLUSHALL")
            self.redis.execute("SET", key, "theirs")
            for args in commands:
                with self.subTest(key=key, args=args):
                    r = self.run_pixq(*args, input=json.dumps(GOOD_JOB))
                    self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                    self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                    two = args[0] == "dead" or args[1:2] in (["set"], ["reset"])
                    name = " ".join(args[:2]) if two else args[0]
                    self.assertRegex(r.stderr, r"^pixq: %s: .*WRONGTYPE" % name)
                    self.assertIn(key, r.stderr)
            self.assertEqual(self.redis.get(key), "theirs")

    def test_next_delayed_overdue_until_a_worker_promotes_it(self):
        """When the earliest delayed entry is due (QUEUE.md's "next due"): a retry due 30 s ago
        that no worker has promoted (none runs) is overdue in every view, the one alert that
        sees delayed work stuck (the queue's depth alone does not move); a worker that starts
        promotes it and runs it, and nothing is delayed then."""
        self.src.add("/ok.png", tiny_png())
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        for job_id, due in (("stuck-1", now_ms - 30000), ("later-1", now_ms + 600000)):
            self.redis.execute("ZADD", self.key("delayed"), str(due),
                               json.dumps(self.job(job_id, "/ok.png")))
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual(q["delayed"], 2)
        self.assertTrue(-40000 < q["next_delayed_ms"] <= -30000, q["next_delayed_ms"])
        self.assertRegex(self.pixq_ok("stats"), r"next delayed +overdue by 3\d\.\d s\n")
        fams = parse_prometheus(self.pixq_ok("stats", "--prometheus"))
        due = prom_value(fams, "pixq_queue_next_delayed_seconds", queue="default")
        self.assertTrue(-40 < due <= -30, due)
        self.start_worker()
        self.wait_for_postback(job_id="stuck-1")
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual(q["delayed"], 1)
        self.assertTrue(560000 < q["next_delayed_ms"] <= 600000, q["next_delayed_ms"])

    def test_log_level_debug_shows_redis_commands(self):
        """PIXQ_LOG_LEVEL=debug (and PIXQ_LOG_FORMAT) work in pixq as in the worker: a line per
        Redis command on stderr; before, pixq never read them and stayed silent."""
        r = self.run_pixq("queues", env={"PIXQ_LOG_LEVEL": "debug"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^ts=\S+ level=debug event=redis cmd=SCAN ms=[\d.]+ ok=1$")
        r = self.run_pixq("queues", env={"PIXQ_LOG_LEVEL": "debug", "PIXQ_LOG_FORMAT": "json"})
        lines = [json.loads(line) for line in r.stderr.splitlines()]
        self.assertIn(("redis", "SCAN"), [(ev["event"], ev.get("cmd")) for ev in lines])
        self.assertEqual(self.run_pixq("queues").stderr, "")  # info: nothing

    def test_oldest_job_behind_many_own_entries(self):
        """Upload tasks promoted by the hundred to the consuming end (a throttled bucket),
        wake-up tokens and a poison pill (reap.lua's, of a job that ran) are no jobs waiting: the
        oldest job is the first job behind them, not "none waiting" (which would also drop the
        Prometheus gauge an alert watches) nor the pill, an entry without a stamp."""
        self.redis.lpush(self.key("jobs"), json.dumps({"job_id": "behind-1", "src": "x",
                                                        "pixq_enqueued_at": 1700000000000}))
        tasks = ['pixq-task:{"pixq_upload":{"job_id":"t%d"}}' % i for i in range(300)]
        for at in range(0, len(tasks), 100):
            self.redis.rpush(self.key("jobs"), *tasks[at:at + 100])
        self.redis.rpush(self.key("jobs"), '{"pixq_wake":true}', "pixq-task:" + json.dumps(
            {"pixq_poison": json.dumps({"job_id": "pill-1", "src": "x"}), "error": "E"}))
        old = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]["oldest_job"]
        self.assertEqual((old["job_id"], old["enqueued_at_ms"]), ("behind-1", 1700000000000))
        text_age = re.search(r"oldest job +(\d+\.\d) s \(behind-1\)\n", self.pixq_ok("stats"))
        self.assertIsNotNone(text_age)
        # in seconds, as the gauge: read a little later than --json's age
        self.assertLess(abs(float(text_age.group(1)) - old["age_ms"] / 1000.0), scaled(60))
        prom = parse_prometheus(self.pixq_ok("stats", "--prometheus"))
        self.assertLess(abs(prom_value(prom, "pixq_queue_oldest_job_age_seconds", queue="default")
                            - old["age_ms"] / 1000.0), scaled(60))

    def test_oldest_job_within_reach(self):
        """The oldest job is looked for among the first 4,096 entries at the consuming end (16,
        then 64 at a time, the last page 48, as the README says): one behind 3,982 of pixq's
        own entries and a wake-up token (its place 3,984, the last of a page of 64) is found,
        and the token, at the consuming end of a list longer than the 1,000 entries searched
        for tokens, is no job waiting; so is one at place 4,096; one at 4,097 is past that
        reach: none waiting (before, the last page of 64 read as far as 4,112)."""
        self.redis.lpush(self.key("jobs"), json.dumps({"job_id": "far-1", "src": "x",
                                                        "pixq_enqueued_at": 1700000000000}))
        self.rpush_tasks(3982)
        self.redis.rpush(self.key("jobs"), '{"pixq_wake":true}')
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["jobs"], q["oldest_job"]["job_id"]), (3983, "far-1"), q["jobs"])
        self.rpush_tasks(112)  # the wake-up token is not counted among the jobs
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["jobs"], q["oldest_job"]["job_id"]), (4095, "far-1"), q["jobs"])
        self.rpush_tasks(1)
        q = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]
        self.assertEqual((q["jobs"], q["oldest_job"]), (4096, None))

    def rpush_tasks(self, n):
        tasks = ['pixq-task:{"pixq_upload":{"job_id":"t%d"}}' % i for i in range(n)]
        for at in range(0, n, 500):
            self.redis.rpush(self.key("jobs"), *tasks[at:at + 500])

    def test_oldest_job_stamps_a_worker_would_not_read(self):
        """A stamp that is not an integer is no stamp (as for the worker's queue-wait histogram):
        age unknown; one before 1970 counts from 1970 (the most negative one too, whose age in
        ms is past what a 64-bit integer holds); a job that carries a member named as one of
        pixq's tasks is a job all the same (only an entry marked pixq-task: is a task)."""
        cases = [({"pixq_enqueued_at": "1700000000000"}, "string", lambda t: (None, None)),
                 ({"pixq_enqueued_at": -2 ** 63}, "min", lambda t: (-2 ** 63, t)),
                 ({"pixq_upload": {"job_id": "other"}}, "upload", lambda t: (None, None))]
        for extra, job_id, expect in cases:
            with self.subTest(job_id=job_id):
                self.redis.execute("DEL", self.key("jobs"))
                self.push(dict({"job_id": job_id, "src": "x"}, **extra))
                s = json.loads(self.pixq_ok("stats", "--json"))
                at, age = expect(s["time_ms"])
                self.assertEqual(s["queues"][0]["oldest_job"],
                                 {"job_id": job_id, "enqueued_at_ms": at, "age_ms": age})

    def test_oldest_job_stamped_in_the_future(self):
        """A pixq_enqueued_at ahead of Redis's clock (another producer's clock ahead) is a job
        just enqueued: age 0, not a negative age that an alert on the gauge would never see."""
        sec, usec = self.redis.execute("TIME")
        ahead = int(sec) * 1000 + int(usec) // 1000 + 3600000
        self.redis.lpush(self.key("jobs"), json.dumps({"job_id": "ahead-1", "src": "x",
                                                        "pixq_enqueued_at": ahead}))
        old = json.loads(self.pixq_ok("stats", "--json"))["queues"][0]["oldest_job"]
        self.assertEqual(old, {"job_id": "ahead-1", "enqueued_at_ms": ahead, "age_ms": 0})
        self.assertRegex(self.pixq_ok("stats"), r"oldest job +0\.0 s \(ahead-1\)\n")
        prom = parse_prometheus(self.pixq_ok("stats", "--prometheus"))
        self.assertEqual(prom_value(prom, "pixq_queue_oldest_job_age_seconds", queue="default"), 0)

    def test_stats_shows_a_waiting_job_id_escaped(self):
        """A job waiting in the queue is not checked yet: its job_id is whatever its producer
        wrote, and `pixq stats` shows it escaped."""
        self.push({"job_id": "w\x1b[2J\nforged line\x9b", "src": "http://x.test/a.png",
                   "functions": []})
        text = self.pixq_ok("stats")
        self.assertFalse(any(ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) < 0xa0 for c in text),
                         repr(text))
        self.assertRegex(text, r"oldest job +unknown \(w\\x1b\[2J\\x0aforged line\\xc2\\x9b: "
                               r"pushed without pixq_enqueued_at\)\n")


WEIRD_QUEUE = 'we"ird\\q'  # a quote and a backslash: escaped in Prometheus labels


# Registers ARGV[1] live and ARGV[2] expired fake workers on KEYS[1] (leases 10 min ahead or
# behind the Redis clock), each holding one job on <ARGV[3]><id> (ARGV[3]: the active-list prefix).
FAKE_WORKERS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = tonumber(ARGV[1])
for i = 1, live + tonumber(ARGV[2]) do
    local id = 'fake-' .. i
    redis.call('ZADD', KEYS[1], i <= live and now + 600000 or now - 600000, id)
    redis.call('RPUSH', ARGV[3] .. id, '{"job_id":"job-' .. i .. '"}')
end
return live
"""


class RedisCliRecipesTest(CliCase):
    """README's "With plain `redis-cli`" block under Watching the fleet, run as written (bash,
    redis-cli -u $PIXQ_REDIS_URL) against a fleet in a known state, each answer against what
    `pixq stats --json` says: the keys, their types and the scores' units are the operator's
    only guide there, and nothing ran those lines."""

    def readme_recipes(self):
        text = (harness.REPO_ROOT / "README.md").read_text()
        start = text.index("With plain `redis-cli`")
        begin = text.index("```sh\n", start) + 6
        block = text[begin:text.index("\n```", begin)]
        lines = block.splitlines()
        self.assertTrue(lines[0].startswith('R="redis-cli -u $PIXQ_REDIS_URL"'), lines[0])
        return lines[0], {line.split("#", 1)[1].strip(): line.split("#", 1)[0].strip()
                          for line in lines[1:]}

    def recipe(self, define, recipes, comment):
        r = subprocess.run(["bash", "-c", define + "\n" + recipes[comment]],
                           env=dict(self.cli_env(), PATH=os.environ["PATH"]), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual((r.returncode, r.stderr), (0, ""), recipes[comment])
        return r.stdout.splitlines()

    def test_readme_recipes_answer_as_pixq_stats(self):
        define, recipes = self.readme_recipes()
        worker = self.start_worker()
        wid = self.worker_id(worker)
        self.submit_later("later-1")  # delayed, not due for 10 minutes
        self.push(self.job("done-1", "/ok.png"))
        self.wait_for_postback(job_id="done-1")
        # its uploaded bytes reach the counters with a heartbeat: before the two readings
        self.wait_until(lambda: self.redis.execute("HGET", self.key("stats"), "uploaded_bytes"),
                        20, "done-1's upload counted")
        not_a_job = self.push("{not json")  # dead
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "a dead entry")
        self.src.stall("/slow.png")
        self.push(self.job("busy-1", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker busy")
        for i in (1, 2):
            self.push(self.job("waiting-%d" % i, "/ok.png"))
        self.pixq_ok("limit", "set", "my-bucket", "50", "10")
        s = json.loads(self.pixq_ok("stats", "--json"))
        q = s["queues"][0]
        self.assertEqual((q["jobs"], q["delayed"], q["dead"], q["active"], q["live_workers"]),
                         (2, 1, 1, 1, 1), q)

        def one(comment):
            out = self.recipe(define, recipes, comment)
            self.assertEqual(len(out), 1, (comment, out))
            return int(out[0])
        self.assertEqual(one("jobs waiting"), q["jobs"])
        self.assertEqual(one("retries and --delay jobs waiting for their time"), q["delayed"])
        self.assertEqual(one("... of which due now"), 0)
        self.assertEqual(one("jobs that failed for good"), q["dead"])
        self.assertEqual(one("live workers"), q["live_workers"])
        newest = self.recipe(define, recipes, "the five newest, with their errors")
        self.assertEqual(len(newest), 1)
        self.assertEqual(json.loads(newest[0])["job"], not_a_job)
        self.assertIn("error", json.loads(newest[0]))
        member, score = self.recipe(define, recipes, "workers and their lease deadlines (ms)")
        self.assertEqual(member, wid)
        lease_left = int(score) - time.time() * 1000
        self.assertTrue(0 < lease_left <= LEASE_MS + 1000, lease_left)
        self.assertEqual(self.recipe(define, recipes, "workers holding a job right now"),
                         [self.key("active:" + wid)])
        pairs = self.recipe(define, recipes, "counters")
        counters = {k: int(v) for k, v in zip(pairs[::2], pairs[1::2])}
        self.assertEqual(counters, q["counters"])
        pairs = self.recipe(define, recipes, "a bucket's limiter")
        limiter = dict(zip(pairs[::2], pairs[1::2]))
        self.assertEqual((limiter.get("rate"), limiter.get("burst")), ("50", "10"), limiter)
        self.src.release()


class StatsViewsTest(CliCase):
    """Several queues in priority order, the oldest job's age, limiter state, --prometheus,
    --watch, and pixq queues (no worker)."""

    queues_env = {"PIXQ_QUEUE": "urgent, default,%s" % WEIRD_QUEUE}

    def submit(self, job_id, *args, queue=None):
        path = self.tmp / ("%s.json" % job_id)
        path.write_text(json.dumps(self.job(job_id, "/a.png")))
        env = {"PIXQ_QUEUE": queue} if queue else None
        r = self.run_pixq("submit", str(path), *args, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)

    def stats(self, *args):
        r = self.run_pixq("stats", *args, env=self.queues_env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def fill(self):
        self.submit("u-1", queue="urgent")
        time.sleep(0.3)
        self.submit("u-2", queue="urgent")
        self.submit("d-1")
        self.redis.rpush(self.key("jobs"), json.dumps({"src": "x", "job_id": "other-client"}))
        self.submit("w-1", "--delay", "60000", queue=WEIRD_QUEUE)
        self.redis.lpush("pixq:{%s}:dead" % WEIRD_QUEUE, '{"job_id":"x"}')
        self.redis.execute("HSET", "pixq:{%s}:stats" % WEIRD_QUEUE, "failed", 4, "dead", 1)
        self.redis.execute("HSET", "pixq:{urgent}:stats", "succeeded", 7,
                           "uploaded_bytes", 123456789)
        self.assertEqual(self.run_pixq("limit", "set", "bkt-x", "2.5", "3").returncode, 0)
        self.redis.execute("HSET", "pixq:rl:{bkt-y}", "throttle_signals", 2, "decreases", 1,
                           "replans", 1)

    def test_queues_in_priority_order_and_limits(self):
        self.fill()
        s = json.loads(self.stats("--json"))
        qs = {q["queue"]: q for q in s["queues"]}
        self.assertEqual([q["queue"] for q in s["queues"]], ["urgent", "default", WEIRD_QUEUE])
        self.assertEqual([(q["jobs"], q["delayed"], q["dead"]) for q in s["queues"]],
                         [(2, 0, 0), (2, 0, 0), (0, 1, 1)])  # w-1's wake-up token is no job
        u = qs["urgent"]["oldest_job"]
        self.assertEqual(u["job_id"], "u-1")
        self.assertTrue(300 <= u["age_ms"] < 10000, u)
        self.assertEqual(u["enqueued_at_ms"] + u["age_ms"], s["time_ms"])
        self.assertEqual(qs["default"]["oldest_job"]["age_ms"], None)  # other-client's
        self.assertEqual(qs[WEIRD_QUEUE]["oldest_job"], None)  # only the wake-up token
        self.assertEqual(s["counters"], {"succeeded": 7, "failed": 4, "dead": 1,
                                         "uploaded_bytes": 123456789})
        limits = {b["bucket"]: b for b in s["limits"]}
        self.assertEqual(sorted(limits), ["bkt-x", "bkt-y"])
        x, y = limits["bkt-x"], limits["bkt-y"]
        self.assertEqual((x["rate"], x["burst"], x["effective_rate"], x["override"]),
                         (2.5, 3, 2.5, True))
        self.assertEqual((y["rate"], y["burst"], y["throttle_signals"], y["decreases"],
                          y["replans"], y["override"]), (10.0, 20, 2, 1, 1, False))
        text = self.stats()
        self.assertRegex(text, r"oldest job +[\d.]+ s \(u-1\)\n")
        self.assertRegex(text, r"(?m)^  bkt-x +2\.500 +3 +2\.500 +0 +0 .*\(override\)$")
        self.assertLess(text.index("queue urgent"), text.index("queue default"))

    def test_text_shows_the_fleet_counters(self):
        """The text view's fleet section sums the queues' counters, as --json's `counters` does
        (README: "Then the fleet (live workers counted once, throughput and counters summed)");
        it showed only the live workers and the last minute's throughput."""
        self.fill()
        self.redis.execute("HSET", self.key("stats"), "succeeded", 2)
        self.assertEqual(json.loads(self.stats("--json"))["counters"],
                         {"succeeded": 9, "failed": 4, "dead": 1, "uploaded_bytes": 123456789})
        text = self.stats()
        fleet = text[text.index("\nfleet\n") + 1:text.index("\nlimits\n")]
        self.assertEqual(re.findall(r"(?m)^    (\S+) +(\d+)$", fleet),
                         [("succeeded", "9"), ("uploaded_bytes", "123456789"), ("failed", "4"),
                          ("dead", "1")])

    def redis_now_ms(self):
        sec, usec = self.redis.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def test_throughput_and_parked_bytes(self):
        """The last minute's throughput: the seconds after the one 60 s before Redis's clock,
        each queue's and the fleet's sum in every view; the bytes of each queue's parked
        outputs (a total below zero shown as none)."""
        sec = self.redis_now_ms() // 1000
        fields = []  # on urgent: one job succeeded and 1000 failed in each of the last 71 s
        for t in range(sec - 70, sec + 1):
            fields += ["%d:succeeded" % t, 1, "%d:failed" % t, 1000]
        self.redis.execute("HSET", "pixq:{urgent}:tput", *fields, "trimmed", sec)
        self.redis.execute("HSET", self.key("tput"), "%d:succeeded" % sec, 5)
        self.redis.execute("HSET", "pixq:{%s}:tput" % WEIRD_QUEUE, "%d:failed" % sec, 2)
        self.redis.execute("HSET", "pixq:{urgent}:parked", "total", 4096)
        self.redis.execute("HSET", self.key("parked"), "total", -3)

        def window(time_ms):  # urgent's seconds that count at time_ms
            return len([t for t in range(sec - 70, sec + 1) if t > time_ms // 1000 - 60])

        before = self.redis_now_ms()
        s = json.loads(self.stats("--json"))
        n = window(s["time_ms"])
        self.assertEqual([(q["throughput"]["succeeded"], q["throughput"]["failed"])
                          for q in s["queues"]], [(n, 1000 * n), (5, 0), (0, 2)])
        self.assertEqual(s["throughput"], {"window_s": 60, "succeeded": n + 5,
                                           "failed": 1000 * n + 2})
        self.assertEqual([q["parked_bytes"] for q in s["queues"]], [4096, 0, 0])

        text = self.stats()
        fams = parse_prometheus(self.stats("--prometheus"))
        # the views were read later: urgent's oldest seconds may have left the window
        now_n = window(self.redis_now_ms())
        sections = text.split("\nqueue ")
        self.assertRegex(sections[0], r"parked bytes +4096\n")
        self.assertRegex(sections[1], r"parked bytes +0\n")
        self.assertRegex(sections[1], r"last minute +5 succeeded, 0 failed\n")
        self.assertRegex(sections[2], r"last minute +0 succeeded, 2 failed\n")
        ok, failed = map(int, re.search(r"fleet\n.*\n  last minute +(\d+) succeeded, (\d+) "
                                        r"failed\n", text).groups())
        self.assertIn(ok - 5, range(now_n, window(before) + 1))
        self.assertEqual(failed, 1000 * (ok - 5) + 2)
        last_minute = {(dict(k)["queue"], dict(k)["outcome"]): v
                       for k, v in fams["pixq_queue_jobs_last_minute"]["samples"].items()}
        self.assertIn(last_minute[("urgent", "succeeded")], range(now_n, window(before) + 1))
        self.assertEqual(last_minute[("urgent", "failed")],
                         1000 * last_minute[("urgent", "succeeded")])
        self.assertEqual({k: v for k, v in last_minute.items() if k[0] != "urgent"},
                         {("default", "succeeded"): 5, ("default", "failed"): 0,
                          (WEIRD_QUEUE, "succeeded"): 0, (WEIRD_QUEUE, "failed"): 2})
        self.assertEqual(prom_value(fams, "pixq_queue_parked_bytes", queue="urgent"), 4096)

    def test_workers_and_what_they_hold(self):
        """Each worker, alive or not, with its lease, and every entry on its active list: a
        job with its timings (from the job's hash), one of pixq's tasks, an entry that is not
        JSON; in every view."""
        now = self.redis_now_ms()
        self.redis.execute("ZADD", self.key("workers"), now + 600000, "w-live",
                           now - 600000, "w-gone")
        self.redis.rpush(self.key("active:w-live"), '{"job_id":"a","src":"x"}',
                         'pixq-task:{"pixq_upload":{"job_id":"b"}}', "{not json")
        self.redis.execute("HSET", self.key("job:a"), "first_seen", now - 30000, "runs", 2)
        s = json.loads(self.stats("--json"))
        d = s["queues"][1]
        self.assertEqual((d["registered_workers"], d["live_workers"], d["active"]), (2, 1, 3))
        gone, live = d["workers"]
        self.assertEqual((gone["id"], gone["alive"], gone["jobs"]), ("w-gone", False, []))
        self.assertEqual((live["id"], live["alive"]), ("w-live", True))
        self.assertEqual(gone["lease_ms_left"], live["lease_ms_left"] - 1200000)
        self.assertTrue(0 <= 600000 - live["lease_ms_left"] < scaled(30) * 1000, live)
        nulls = {"started_at_ms": None, "running_ms": None, "runs": None}
        self.assertEqual(live["jobs"], [
            {"job_id": "a", "kind": "job", "started_at_ms": now - 30000,
             "running_ms": s["time_ms"] - now + 30000, "runs": 2},
            dict({"job_id": "b", "kind": "upload"}, **nulls),
            dict({"job_id": None, "kind": "unparseable"}, **nulls)])
        text = self.stats()
        self.assertNotIn("more workers", text)
        m = re.search(r"\n    w-live  alive  lease ([\d.]+) s  jobs "
                      r"\[\"a\",\"b\",\(unparseable\)\]\n"
                      r"      a  job, running since ([\d.]+) s, run 2\n"
                      r"      b  upload\n"
                      r"      \(no id yet\)  unparseable\n", text)
        self.assertIsNotNone(m, text)
        self.assertTrue(600 - scaled(30) < float(m.group(1)) <= 600, m.group(1))
        self.assertTrue(30 <= float(m.group(2)) < 30 + scaled(30), m.group(2))
        self.assertRegex(text, r"\n    w-gone  EXPIRED  lease -(\d+)\.\d s  jobs \[\]\n")
        self.assertTrue(600 <= float(re.search(r"w-gone  EXPIRED  lease -([\d.]+) s", text)
                                     .group(1)) < 600 + scaled(30))
        fams = parse_prometheus(self.stats("--prometheus"))
        self.assertEqual({(dict(k)["queue"], dict(k)["worker"]): v
                          for k, v in fams["pixq_worker_jobs"]["samples"].items()},
                         {("default", "w-gone"): 0, ("default", "w-live"): 3})

    def test_prometheus_text_parsed(self):
        self.fill()
        fams = parse_prometheus(self.stats("--prometheus"))
        s = json.loads(self.stats("--json"))
        for name, typ in (("pixq_queue_jobs", "gauge"), ("pixq_queue_events_total", "counter"),
                          ("pixq_bucket_rate", "gauge"),
                          ("pixq_bucket_throttle_signals_total", "counter")):
            self.assertEqual(fams[name]["type"], typ)
            self.assertTrue(fams[name]["help"])
        for q in s["queues"]:
            for field in ("jobs", "delayed", "dead", "active", "parked_bytes", "live_workers"):
                self.assertEqual(prom_value(fams, "pixq_queue_" + field, queue=q["queue"]),
                                 q[field], (field, q["queue"]))
        self.assertEqual(prom_value(fams, "pixq_queue_dead", queue=WEIRD_QUEUE), 1)
        self.assertEqual(prom_value(fams, "pixq_queue_events_total", queue="urgent",
                                    event="succeeded"), 7)
        # bytes are not events: a family of their own, a sample for every queue
        self.assertEqual(fams["pixq_queue_uploaded_bytes_total"]["type"], "counter")
        self.assertEqual(prom_value(fams, "pixq_queue_uploaded_bytes_total", queue="urgent"),
                         123456789)
        self.assertEqual(prom_value(fams, "pixq_queue_uploaded_bytes_total", queue="default"), 0)
        self.assertNotIn("uploaded_bytes", [dict(labels).get("event") for labels in
                                            fams["pixq_queue_events_total"]["samples"]])
        self.assertEqual(prom_value(fams, "pixq_queue_jobs_last_minute", queue="urgent",
                                    outcome="failed"), 0)
        age = prom_value(fams, "pixq_queue_oldest_job_age_seconds", queue="urgent")
        self.assertTrue(0.3 <= age < 10, age)
        ages = fams["pixq_queue_oldest_job_age_seconds"]["samples"]
        self.assertEqual(len(ages), 1)  # the other queues' oldest ages are unknown
        self.assertEqual(prom_value(fams, "pixq_bucket_rate", bucket="bkt-x"), 2.5)
        self.assertEqual(prom_value(fams, "pixq_bucket_override", bucket="bkt-x"), 1)
        self.assertEqual(prom_value(fams, "pixq_bucket_throttle_signals_total", bucket="bkt-y"),
                         2)
        self.assertEqual(prom_value(fams, "pixq_bucket_replans_total", bucket="bkt-y"), 1)
        self.assertEqual(prom_value(fams, "pixq_live_workers"), 0)
        self.assertEqual({name: fam["type"] for name, fam in fams.items()}, PROM_FAMILIES)

    def test_prometheus_limiter_state(self):
        """Every limiter field has its family, a sample per bucket, in its unit: a bucket
        slowed down (effective rate at its floor: its last throttling is a future time, far
        from any recovery) whose slots are taken 600 s ahead."""
        self.fill()
        now_us = self.redis_now_ms() * 1000
        self.redis.execute("HSET", "pixq:rl:{bkt-y}", "tat", now_us + 600000000, "w_max", 1,
                           "last_fail", now_us + 10 ** 12, "floor", 0.5, "decreases", 3)
        limits = {b["bucket"]: b for b in json.loads(self.stats("--json"))["limits"]}
        fams = parse_prometheus(self.stats("--prometheus"))
        self.assertEqual((limits["bkt-y"]["effective_rate"], limits["bkt-x"]["effective_rate"]),
                         (0.5, 2.5))
        self.assertTrue(590000 < limits["bkt-y"]["backlog_ms"] <= 600000, limits["bkt-y"])
        self.assertEqual([limits["bkt-y"][f] for f in ("throttle_signals", "decreases",
                                                       "replans")], [2, 3, 1])  # told apart
        for name, field in (("rate", "rate"), ("burst", "burst"),
                            ("effective_rate", "effective_rate"),
                            ("throttle_signals_total", "throttle_signals"),
                            ("decreases_total", "decreases"), ("replans_total", "replans"),
                            ("override", "override")):
            for bucket, b in limits.items():
                with self.subTest(name=name, bucket=bucket):
                    self.assertEqual(prom_value(fams, "pixq_bucket_" + name, bucket=bucket),
                                     b[field])
        backlog = prom_value(fams, "pixq_bucket_backlog_seconds", bucket="bkt-y")
        self.assertTrue(limits["bkt-y"]["backlog_ms"] / 1000.0 - scaled(30) < backlog
                        <= limits["bkt-y"]["backlog_ms"] / 1000.0, backlog)
        self.assertEqual(prom_value(fams, "pixq_bucket_backlog_seconds", bucket="bkt-x"), 0)

    def test_watch_count(self):
        self.fill()
        t0 = time.monotonic()
        out = self.stats("--json", "--watch", "0.3", "--count", "2").splitlines()
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(len(out), 2)
        first, second = (json.loads(line) for line in out)
        self.assertGreaterEqual(second["time_ms"] - first["time_ms"], 300)
        # --watch as the last argument: every 2 s, the default
        out = self.stats("--json", "--count", "2", "--watch").splitlines()
        first, second = map(json.loads, out)
        self.assertGreaterEqual(second["time_ms"] - first["time_ms"], 2000)
        # ... and before another option, which is not taken for its SECONDS
        out = self.stats("--count", "1", "--watch", "--json").splitlines()
        self.assertEqual(json.loads(out[0])["queues"][0]["queue"], "urgent")
        text = self.stats("--watch", "0.1", "--count", "3")  # not a terminal: no clearing
        self.assertEqual(text.count("queue urgent\n"), 3)
        self.assertNotIn("\x1b", text)
        # on a terminal the screen is cleared before each refresh
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        proc = subprocess.Popen([CONFIG.pixq, "stats", "--watch", "0.1", "--count", "2"],
                                env=self.cli_env(**self.queues_env), stdout=slave)
        os.close(slave)
        self.assertEqual(proc.wait(scaled(20)), 0)
        screen = read_pty(master)
        self.assertEqual(screen.count("\x1b[H\x1b[2J"), 2, screen)
        self.assertEqual(screen.count("queue urgent"), 2)
        # without --watch, a terminal is not cleared; a format given twice is that format
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        proc = subprocess.Popen([CONFIG.pixq, "stats", "--json", "--json"],
                                env=self.cli_env(**self.queues_env), stdout=slave)
        os.close(slave)
        self.assertEqual(proc.wait(scaled(20)), 0)
        screen = read_pty(master)
        self.assertEqual(json.loads(screen)["queues"][0]["queue"], "urgent")
        prom = self.stats("--prometheus", "--watch", "0.1", "--count", "2")
        parts = prom.split("# HELP pixq_queue_jobs ")
        self.assertEqual(len(parts), 3)
        for part in parts[1:]:
            parse_prometheus("# HELP pixq_queue_jobs " + part)

    def test_counts_past_the_listed_workers(self):
        """1,200 live workers (and 5 expired) each holding a job: the live workers and the
        active jobs are counted over all of them (they were counted over the 1,000 listed:
        live_workers 995, active 1000); only the list stops at 1,000. 10 of them serve urgent
        too: the fleet counts them once."""
        live, expired = 1200, 5
        self.redis.execute("EVAL", FAKE_WORKERS_LUA, 1, self.key("workers"), live, expired,
                           self.key("active:"))
        self.redis.execute("EVAL", FAKE_WORKERS_LUA, 1, "pixq:{urgent}:workers", 10, 0,
                           "pixq:{urgent}:nothing:")  # no active lists of theirs on urgent
        s = json.loads(self.stats("--json"))
        qs = {q["queue"]: q for q in s["queues"]}
        d = qs["default"]
        self.assertEqual((d["live_workers"], d["active"]), (live, live + expired))
        self.assertEqual(d["registered_workers"], live + expired)
        self.assertEqual(len(d["workers"]), 1000)
        self.assertEqual(sum(not w["alive"] for w in d["workers"]), expired)  # soonest first
        self.assertEqual((qs["urgent"]["live_workers"], qs["urgent"]["active"]), (10, 0))
        self.assertEqual(s["live_workers"], live)
        fams = parse_prometheus(self.stats("--prometheus"))
        self.assertEqual(prom_value(fams, "pixq_queue_live_workers", queue="default"), live)
        self.assertEqual(prom_value(fams, "pixq_queue_active", queue="default"), live + expired)
        self.assertEqual(prom_value(fams, "pixq_queue_live_workers", queue="urgent"), 10)
        self.assertEqual(prom_value(fams, "pixq_live_workers"), live)
        self.assertEqual(len([k for k in fams["pixq_worker_jobs"]["samples"]
                              if ("queue", "default") in k]), 1000)
        text = self.stats()
        self.assertRegex(text, r"(?m)^  active +1205$")
        self.assertRegex(text, r"(?m)^  live workers +1200$")
        self.assertRegex(text, r"(?m)^    \.\.\. and 205 more workers \(1000 listed\)$")
        r = self.run_pixq("queues", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual({q["queue"]: q["active"] for q in json.loads(r.stdout)},
                         {"default": live + expired, "urgent": 0})

    def test_queues_lists_what_redis_holds(self):
        self.fill()
        self.redis.execute("ZADD", "pixq:{later}:delayed", 1, "x", 2, "y")
        self.redis.lpush("pixq:{gone}:result:j1", "r")  # not a queue by itself
        self.redis.execute("ZADD", "pixq:{urgent}:workers", 1, "w9")
        self.redis.lpush("pixq:{urgent}:active:w9", "a", "b")
        # two delayed jobs, each the earliest when submitted: two wake-up tokens on `jobs`,
        # after other-client's entry, which are no jobs waiting
        self.submit("d-2", "--delay", "60000")
        self.submit("d-3", "--delay", "30000")
        self.assertEqual(self.redis.llen(self.key("jobs")), 4)
        r = self.run_pixq("queues", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), [
            {"queue": "default", "jobs": 2, "delayed": 2, "dead": 0, "active": 0},
            {"queue": "later", "jobs": 0, "delayed": 2, "dead": 0, "active": 0},
            {"queue": "urgent", "jobs": 2, "delayed": 0, "dead": 0, "active": 2},
            {"queue": WEIRD_QUEUE, "jobs": 0, "delayed": 1, "dead": 1, "active": 0}])
        lines = self.pixq_ok("queues").splitlines()
        self.assertEqual(lines[0].split(), ["queue", "jobs", "delayed", "dead", "active"])
        self.assertEqual([line.split() for line in lines[1:3]],
                         [["default", "2", "2", "0", "0"], ["later", "0", "2", "0", "0"]])
        prom = self.run_pixq("stats", "--prometheus", env={"PIXQ_QUEUE": "default"})
        self.assertEqual(prom.returncode, 0, prom.stderr)
        self.assertEqual(prom_value(parse_prometheus(prom.stdout), "pixq_queue_jobs",
                                    queue="default"), 2)


    def test_queues_with_odd_names_pushed_by_other_clients(self):
        """Names are what other clients wrote in Redis: the listing escapes their control
        characters (no terminal sequence reaches the screen), and a name longer than a queue's
        may be is not cut to another queue's name (whose depths it would show) but left out,
        with a warning."""
        painted = "\x1b[2J\x1b]0;pwned\x07red"
        self.redis.lpush("pixq:{%s}:jobs" % painted, "{}")
        long_name = "L" * 250
        self.redis.lpush("pixq:{%s}:dead" % long_name, "{}")
        self.redis.lpush("pixq:{%s}:jobs" % long_name[:199], "{}", "{}")  # another queue
        self.redis.execute("ZADD", "pixq:{%s}:delayed" % long_name[:200], 1, "x")  # a byte over
        self.redis.lpush("pixq:{}:jobs", "{}")  # no name: no queue
        r = self.run_pixq("queues", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), [  # by name: ESC comes before L
            {"queue": painted, "jobs": 1, "delayed": 0, "dead": 0, "active": 0},
            {"queue": long_name[:199], "jobs": 2, "delayed": 0, "dead": 0, "active": 0}])
        self.assertEqual(r.stderr, "pixq: warning: queues: 2 key(s) of queues whose names are "
                         "longer than 199 bytes (more than a queue name may have) not listed\n")
        text = self.pixq_ok("queues")
        self.assertFalse(any(ord(c) < 0x20 and c != "\n" for c in text), repr(text))
        self.assertEqual([line.split() for line in text.splitlines()[1:]],
                         [[r"\x1b[2J\x1b]0;pwned\x07red", "1", "0", "0", "0"],
                          [long_name[:199], "2", "0", "0", "0"]])
        # one such key is warned of too
        self.redis.delete("pixq:{%s}:dead" % long_name)
        r = self.run_pixq("queues")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "pixq: warning: queues: 1 key(s) of queues whose names are "
                         "longer than 199 bytes (more than a queue name may have) not listed\n")


    def test_text_shows_names_from_redis_escaped(self):
        """Worker ids, counter names, bucket names and regions are what some client wrote in
        Redis: the text of stats and limit show escapes their control characters, as it does a
        job's id, so that none reaches the terminal."""
        self.redis.execute("ZADD", self.key("workers"), 99999999999999, "w\x1b[31mred")
        self.redis.execute("HSET", self.key("stats"), "cnt\x1b[2J", 5, "two\nlines", 6)
        self.redis.execute("HSET", "pixq:rl:{b\x1b[32mg}", "tat", 0, "region", "us\x1b]0;t\x07")
        # in Prometheus labels, a line feed is escaped (the parser refuses a raw one)
        fams = parse_prometheus(self.run_pixq("stats", "--prometheus",
                                              env={"PIXQ_QUEUE": "default"}).stdout)
        self.assertEqual(prom_value(fams, "pixq_queue_events_total", queue="default",
                                    event="two\nlines"), 6)
        self.assertEqual(prom_value(fams, "pixq_worker_jobs", queue="default",
                                    worker="w\x1b[31mred"), 0)
        out = self.run_pixq("stats", env={"PIXQ_QUEUE": "default"}).stdout
        out += self.pixq_ok("limit", "show")
        self.assertFalse(any(ord(c) < 0x20 and c != "\n" for c in out), repr(out))
        for shown in (r"    w\x1b[31mred  alive  lease ", r"    cnt\x1b[2J ",
                      r"b\x1b[32mg ", r" us\x1b]0;t\x07"):
            self.assertIn(shown, out)

    def test_prometheus_labels_not_utf8(self):
        """Label values are UTF-8 in the exposition format: a counter name, worker id or bucket
        some client wrote in Redis with bytes that are not UTF-8 has each such byte written as
        \\xNN (before, they went out raw, and one such name failed the whole scrape)."""
        self.redis.execute("HSET", self.key("stats"), b"bad\xffname", 3, "caf\u00e9", 1)
        self.redis.execute("ZADD", self.key("workers"), 1, b"w\xc3")
        self.redis.execute("HSET", b"pixq:rl:{b\xfe}", "tat", 0)
        r = subprocess.run([CONFIG.pixq, "stats", "--prometheus"],
                           env=self.cli_env(PIXQ_QUEUE="default"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(60))
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        fams = parse_prometheus(r.stdout.decode("utf-8"))  # strict: fails on any other byte
        self.assertEqual(prom_value(fams, "pixq_queue_events_total", queue="default",
                                    event="bad\\xffname"), 3)
        self.assertEqual(prom_value(fams, "pixq_queue_events_total", queue="default",
                                    event="caf\u00e9"), 1)
        self.assertEqual(prom_value(fams, "pixq_worker_jobs", queue="default", worker="w\\xc3"),
                         0)
        self.assertEqual(prom_value(fams, "pixq_bucket_burst", bucket="b\\xfe"), 20)

    def test_json_not_utf8(self):
        """JSON is UTF-8: in --json output a name some client wrote in Redis with bytes that are
        not UTF-8 has each such byte written as \\xNN, as the text views show it (before, they
        went out raw, and a strict reader refused the whole line)."""
        self.redis.execute("HSET", self.key("stats"), b"bad\xffname", 3, "caf\u00e9", 1)
        self.redis.execute("ZADD", self.key("workers"), 1, b"w\xc3")
        for args in (["stats", "--json"], ["queues", "--json"]):
            r = subprocess.run([CONFIG.pixq] + args, env=self.cli_env(PIXQ_QUEUE="default"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=scaled(60))
            self.assertEqual((r.returncode, r.stderr), (0, b""), args)
            text = r.stdout.decode("utf-8")  # strict: fails on any other byte
            if args[0] == "stats":
                q = json.loads(text)["queues"][0]
                self.assertEqual(q["counters"]["bad\\xffname"], 3, text)
                self.assertEqual(q["counters"]["caf\u00e9"], 1, text)
                self.assertEqual([w["id"] for w in q["workers"]], ["w\\xc3"], text)
            else:
                self.assertIn("default", text)

    def test_watch_waits_between_tries_while_redis_fails(self):
        """--watch tries a Redis that fails its commands again after a wait that doubles from
        100 ms (up to 2 s), not at once over and over: each try here is one connection cut at
        its TIME, about 5 in a second held, however long this test's own waits take."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        proxy.refuse = b"TIME"
        proc = self.start_cli("stats", "--json", "--watch", "0.1", "--count", "2",
                              PIXQ_REDIS_URL=proxy.redis_url(), PIXQ_QUEUE="default")
        self.wait_until(lambda: proxy.refusals >= 1, 20, "the first try refused")
        t0 = time.monotonic()
        time.sleep(1.0)  # an outage of at least a second: tries at 0.1, 0.3, 0.7, 1.5 s...
        proxy.refuse = None
        tries, held_s = proxy.refusals, time.monotonic() - t0
        out, err = proc.communicate(timeout=scaled(30))
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(len(out.splitlines()), 2, out)
        self.assertRegex(err, r"redis is back after [\d.]+ s\n$")
        self.assertLessEqual(tries, 6 + held_s / 2, (tries, held_s))

    def test_limits_refused_by_redis_are_a_failure(self):
        """A user that may not read the limiter keys (an ACL limited to one queue's keys) or
        run SCAN gets a failure naming Redis's reason from limit show and stats, not an empty
        table that says no bucket has a limit."""
        self.assertEqual(self.run_pixq("limit", "set", "bkt-x", "2.5", "3").returncode, 0)
        self.redis.execute("ACL", "SETUSER", "oneq", "on", ">pw1", "~pixq:{default}:*",
                           "resetchannels", "+@all", "-@admin", "-@dangerous")
        self.redis.execute("ACL", "SETUSER", "noscan", "on", ">pw2", "~pixq:*",
                           "resetchannels", "+@all", "-@admin", "-@dangerous", "-scan")
        port = self.redis_server.port
        for user, reason in (("oneq:pw1", "pixq:rl:{bkt-x}: redis: NOPERM"),
                             ("noscan:pw2", "redis: NOPERM")):
            env = {"PIXQ_REDIS_URL": "redis://%s@127.0.0.1:%d/0" % (user, port),
                   "PIXQ_QUEUE": "default"}
            for args, cmd in ((("limit", "show"), "limit"), (("limit", "show", "--json"), "limit"),
                              (("stats",), "stats"), (("stats", "--prometheus"), "stats")):
                with self.subTest(user=user, args=args):
                    r = self.run_pixq(*args, env=env)
                    self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                    self.assertTrue(r.stderr.startswith("pixq: %s: %s" % (cmd, reason)),
                                    r.stderr)
                    self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        # queues: SCAN finds another queue's key, which oneq may not read: a failure, in one
        # line (not with the warning about the too long name SCAN found too)
        self.redis.lpush("pixq:{other}:jobs", "{}")
        self.redis.lpush("pixq:{%s}:jobs" % ("L" * 250), "{}")
        r = self.run_pixq("queues", env={"PIXQ_REDIS_URL": "redis://oneq:pw1@127.0.0.1:%d/0"
                                                          % port})
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: queues: .*NOPERM.*\n$")
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        out = json.loads(self.pixq_ok("limit", "show", "--json"))  # the default user may
        self.assertEqual([b["bucket"] for b in out], ["bkt-x"])

    def test_buckets_past_one_scan_call(self):
        """limit show lists every bucket, also past what one SCAN call gives (COUNT 1000):
        1500 buckets, each once."""
        self.redis.execute("EVAL", "for i = 1, 1500 do redis.call('HSET', 'pixq:rl:{b' .. i "
                           ".. '}', 'tat', '0') end", 0)
        first = self.redis.execute("SCAN", "0", "MATCH", "pixq:rl:{*", "COUNT", "1000")
        self.assertNotEqual(first[0], "0")  # more calls needed
        out = self.pixq_ok("limit", "show", "--json")
        self.assertEqual(sorted(b["bucket"] for b in json.loads(out)),
                         sorted("b%d" % i for i in range(1, 1501)))

    def test_bucket_scan_gives_twice_is_listed_once(self):
        """SCAN may give a key twice when Redis shrinks its keyspace between two calls: limit
        show listed such a bucket twice, and stats --prometheus repeated its series (invalid
        exposition). 70000 buckets; all but the last 100 SCAN's first call gives go while pixq's
        second call is held: the keyspace shrinks to 128 slots, and the slot that call goes on
        from holds those 100, given again."""
        self.redis.execute("EVAL", "for i = 1, 70000 do redis.call('HSET', 'pixq:rl:{b' .. i "
                           ".. '}', 'tat', '0') end", 0)

        def first_call():
            return self.redis.execute("SCAN", "0", "MATCH", "pixq:rl:{*", "COUNT", "1000")

        calls = [first_call()]  # the same as pixq's once the keyspace is not being resized
        while calls[-1] != calls[0] or len(calls) < 2:
            time.sleep(0.2)
            calls = [calls[-1], first_call()]
        cursor, first = calls[0]
        finish = self.run_held(b"SCAN\r\n$%d\r\n%s\r\n" % (len(cursor), cursor.encode()),
                               "pixq's second SCAN", "limit", "show", "--json")
        keep = set(first[-100:])  # those in the slot visited last
        self.assertEqual(self.redis.execute("EVAL", """
            local keep = {}
            for _, k in ipairs(ARGV) do keep[k] = true end
            for i = 1, 70000 do
                local k = 'pixq:rl:{b' .. i .. '}'
                if not keep[k] then redis.call('DEL', k) end
            end
            return redis.call('DBSIZE')""", 0, *keep), 100)
        # a cursor is below the table's size: the table is down to 128 slots, rehashed
        self.wait_until(lambda: int(self.redis.execute("SCAN", "0", "COUNT", "1")[0]) < 128,
                        30, "the keyspace shrunk")
        run = finish()
        self.assertEqual(run.returncode, 0, run.stderr)
        buckets = ["pixq:rl:{%s}" % b["bucket"] for b in json.loads(run.stdout)]
        self.assertEqual(sorted(buckets), sorted(set(first) | keep))



class DeadTest(CliCase):
    def dead_ids(self):
        return [json.loads(e).get("job_id") for e in self.redis.lrange(self.key("dead"))]

    def test_list_retry_purge(self):
        self.start_worker()
        payloads = {i: self.push(self.job(i, "/not-yet.png")) for i in ("d1", "d2", "d3")}
        self.postbacks.wait_for_postbacks(3, scaled(30), check=self.check_workers)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 3, 10, "3 dead entries")

        lines = self.pixq_ok("dead", "list", "--json").splitlines()
        entries = [json.loads(line) for line in lines]
        self.assertEqual([e["job_id"] for e in entries], ["d3", "d2", "d1"])  # newest first
        now_ms = time.time() * 1000
        for e in entries:
            self.assertEqual(sorted(e),
                             ["attempts", "error", "failed_at", "job", "job_id", "queue"])
            self.assertEqual(e["queue"], "default")
            self.assertEqual(json.loads(e["job"]), json.loads(payloads[e["job_id"]]))
            self.assertTrue(e["error"].startswith("Image processing failed."), e["error"])
            self.assertIn("/not-yet.png", e["error"])
            self.assertLess(abs(now_ms - e["failed_at"]), 60000)
            self.assertGreaterEqual(e["attempts"], 1)
        text = self.pixq_ok("dead", "list").splitlines()
        self.assertEqual([line.split()[0] for line in text], ["d3", "d2", "d1"])
        for line, e in zip(text, entries):  # id, when (UTC), attempts, error; no queue: only one
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["failed_at"] // 1000))
            self.assertEqual(line, "%s  %s.%03dZ  attempts=%d  %s" % (
                e["job_id"], when, e["failed_at"] % 1000, e["attempts"], e["error"]))
        limited = self.pixq_ok("dead", "list", "--limit", "2", "--json").splitlines()
        self.assertEqual([json.loads(line)["job_id"] for line in limited], ["d3", "d2"])

        # the source shows up: retry one job; it runs again and posts its new outcome back
        self.src.add("/not-yet.png", tiny_png())
        self.assertEqual(self.pixq_ok("dead", "retry", "d2").strip(),
                         "1 job(s) put back on pixq:{default}:jobs")
        pb = self.wait_for_postback(predicate=lambda p: p.job_id == "d2" and
                                    "errors" not in p.results)
        self.assertEqual(pb.results["images"][0]["meta"], {"width": 32, "height": 32})
        self.wait_until(lambda: "errors" not in json.loads(
            self.redis.lindex(self.key("result:d2"), 0))["results"], 10, "d2's new result")
        self.assertEqual(self.dead_ids(), ["d3", "d1"])

        r = self.run_pixq("dead", "retry", "no-such-job")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.strip(), "0 job(s) put back on pixq:{default}:jobs")
        self.assertEqual(r.stderr.strip(), "pixq: dead retry: no dead job no-such-job in default")

        self.assertEqual(self.pixq_ok("dead", "purge", "d1").strip(),
                         "1 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(self.dead_ids(), ["d3"])
        r = self.run_pixq("dead", "purge", "d1")  # gone now: told, as retry tells
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.strip(), "0 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(r.stderr.strip(), "pixq: dead purge: no dead job d1 in default")

        self.assertEqual(self.pixq_ok("dead", "retry", "all").strip(),
                         "1 job(s) put back on pixq:{default}:jobs")
        self.wait_for_postback(predicate=lambda p: p.job_id == "d3" and "errors" not in p.results)
        self.assertEqual(self.dead_ids(), [])
        self.assertEqual(self.pixq_ok("dead", "retry", "all").strip(),
                         "0 job(s) put back on pixq:{default}:jobs")
        self.assertEqual(self.counters().get("dead_retried"), 2)

        for i in ("p1", "p2"):
            self.push(self.job(i, "/gone.png"))
        self.wait_until(lambda: len(self.dead_ids()) == 2, 20, "2 dead entries")
        self.assertEqual(self.pixq_ok("dead", "purge").strip(),
                         "2 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(self.redis.exists(self.key("dead")), 0)
        self.assertEqual(self.pixq_ok("dead", "list"), "")
        self.assert_queue_drained()
        # every job posted back once per run: d1..d3 failed, d2 and d3 again after the retry
        per_job = sorted(pb.job_id for pb in self.postbacks.postbacks)
        self.assertEqual(per_job, ["d1", "d2", "d2", "d3", "d3", "p1", "p2"])

    def test_retry_posts_the_same_outcome_again(self):
        """A dead job retried before its cause is fixed fails the same way again, and its
        postback is sent again: dead retry forgets the "posted" claim of the run before, which
        holds the digest of that same postback (a worker would take it as delivered already).
        By id (the newest entry, first of the window) and all."""
        self.start_worker()
        for i in ("same-1", "same-2"):
            self.push(self.job(i, "/never.png"))
            self.postbacks.wait_for_postbacks(1 if i == "same-1" else 2, scaled(30),
                                              check=self.check_workers)
            self.wait_until(lambda: self.redis.execute("HGET", self.key("job:" + i), "posted"),
                            scaled(30), "%s's postback recorded" % i)
        self.wait_until(lambda: len(self.dead_ids()) == 2, scaled(30), "2 dead entries")
        self.assertEqual(self.dead_ids(), ["same-2", "same-1"])

        self.assertEqual(self.pixq_ok("dead", "retry", "same-2").strip(),
                         "1 job(s) put back on pixq:{default}:jobs")
        self.postbacks.wait_for_postbacks(3, scaled(30), check=self.check_workers)
        self.wait_until(lambda: len(self.dead_ids()) == 2, scaled(30), "same-2 dead again")
        self.assertEqual(self.pixq_ok("dead", "retry", "all").strip(),
                         "2 job(s) put back on pixq:{default}:jobs")
        self.postbacks.wait_for_postbacks(5, scaled(30), check=self.check_workers)
        self.wait_until(lambda: len(self.dead_ids()) == 2, scaled(30), "both dead again")
        per_job = sorted(pb.job_id for pb in self.postbacks.postbacks)
        self.assertEqual(per_job, ["same-1", "same-1", "same-2", "same-2", "same-2"])
        bodies = {pb.body for pb in self.postbacks.postbacks if pb.job_id == "same-2"}
        self.assertEqual(len(bodies), 1)  # the same postback each time

    def test_retry_all_failing_part_way_says_how_many_went_back(self):
        """dead retry all goes a window of 32 entries at a time; when Redis fails part-way, pixq
        says how many jobs went back before the failure, and exits 1: the connection cut before
        a window's first command (those after it are still dead), cut before Redis's answer to
        a window's call (it may have run), and a Redis refusing writes.
        Before, only the error was printed, and a lost connection while clearing a job's
        "posted" claim was ignored (the job's re-run would not post back)."""
        def fill():
            self.redis.delete(self.key("dead"), self.key("jobs"))
            # the oldest entry has no payload: kept
            self.redis.lpush(self.key("dead"), json.dumps({"job_id": "keep-0", "error": "E"}))
            for i in range(1, 40):
                self.redis.lpush(self.key("dead"), json.dumps({
                    "job": json.dumps(self.job("dr-%d" % i, "/a.png")), "job_id": "dr-%d" % i,
                    "error": "E", "attempts": 1, "failed_at": 1700000000000 + i}))

        def retry_through(proxy):
            r = self.run_pixq("dead", "retry", "all", env={"PIXQ_REDIS_URL": proxy.redis_url()})
            self.assertTrue(proxy.tripped.is_set())
            self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
            return r.stderr

        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        fill()
        proxy.cut_before(b"job:dr-35")  # in the second window (dr-32..dr-39)
        self.assertRegex(retry_through(proxy), r"^pixq: dead retry: redis: .+; 31 job\(s\) were "
                         r"put back on pixq:\{default\}:jobs before the failure; the rest are "
                         r"still dead\n$")
        self.assertEqual((self.redis.llen(self.key("jobs")), self.redis.llen(self.key("dead"))),
                         (31, 9))

        fill()
        proxy.cut_on(b"all\r\n$1\r\n8\r\n$1\r\n8\r\n")  # the second window's call: the 8 left
        self.assertRegex(retry_through(proxy), r"^pixq: dead retry: redis: .+; 31 job\(s\) were "
                         r"put back on pixq:\{default\}:jobs before the failure, and up to 8 "
                         r"more may have been \(no answer came for them\); the rest are still "
                         r"dead\n$")
        self.assertEqual(self.redis.llen(self.key("jobs")), 39)  # the call ran

        fill()
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")  # refuses writes
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "min-replicas-to-write", "0")
        r = self.run_pixq("dead", "retry", "all")
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(r.stderr, "pixq: dead retry: redis: NOREPLICAS Not enough good replicas "
                         "to write.\n")  # nothing went back: the reason alone
        self.assertEqual(self.redis.llen(self.key("dead")), 40)

    def test_retry_leaves_the_claim_of_a_job_whose_id_begins_a_longer_one(self):
        """A dead entry whose job_id is longer than any job's (127 bytes) has no job hash:
        retry all forgot the "posted" claim of the job named by its first 127 bytes (a
        waiting job with that id would then post its outcome twice)."""
        short, long_id = "p" * 127, "p" * 200
        self.redis.execute("HSET", self.key("job:" + short), "posted", "d1")
        self.redis.lpush(self.key("dead"), json.dumps({
            "job": json.dumps(self.job(long_id, "/a.png")), "job_id": long_id, "error": "E",
            "attempts": 1, "failed_at": 1700000000000}))
        self.assertEqual(self.pixq_ok("dead", "retry", "all").strip(),
                         "1 job(s) put back on pixq:{default}:jobs")
        self.assertEqual(self.redis.execute("HGET", self.key("job:" + short), "posted"), "d1")

    def test_retry_leaves_entries_that_came_after_it_began(self):
        """dead retry looks only at the entries the dead list held when it began: a job put back
        that dies again while the retry goes on (its cause not fixed, a fast worker) is pushed
        at the head, and was put back again (a third job counted where two were dead, in a
        CI run), and with a worker that fails it faster than a window's round trip, again and
        again. Held at its first dead_retry.lua call while 3 entries (one of them the job id
        retried) are pushed: all, over 2 windows, and by id."""
        def entry(job_id, i):
            return json.dumps({"job": json.dumps(self.job(job_id, "/a.png")), "job_id": job_id,
                               "error": "E", "attempts": 1, "failed_at": 1700000000000 + i})

        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        for which, old, expect in (("all", 40, 40), ("nr-7", 1, 1)):
            with self.subTest(which=which):
                self.redis.delete(self.key("dead"), self.key("jobs"), self.key("stats"))
                for i in range(old):
                    self.redis.lpush(self.key("dead"), entry("nr-%d" % (i + 7), i))
                # the first call: the oldest of the `old` entries, the dead count 0
                n = min(old, 32)
                proxy.hold_on(b"\r\n$%d\r\n%d\r\n$%d\r\n%d\r\n$1\r\n0\r\n"
                              % (len(str(old)), old, len(str(n)), n))
                p = subprocess.Popen([CONFIG.pixq, "dead", "retry", which],
                                     env=self.cli_env(PIXQ_REDIS_URL=proxy.redis_url()),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.addCleanup(p.kill)
                self.assertTrue(proxy.held.wait(scaled(20)))
                for i in range(3):  # died again meanwhile, buried as finish.lua buries them
                    self.redis.execute("EVAL", "redis.call('LPUSH', KEYS[1], ARGV[1]) "
                                       "redis.call('HINCRBY', KEYS[2], 'dead', 1)", 2,
                                       self.key("dead"), self.key("stats"),
                                       entry("nr-%d" % (i + 7), 100 + i))
                proxy.release()
                out, err = p.communicate(timeout=scaled(20))
                self.assertEqual((p.returncode, out.strip(), err),
                                 (0, "%d job(s) put back on pixq:{default}:jobs" % expect, ""))
                self.assertEqual(self.dead_ids(), ["nr-9", "nr-8", "nr-7"])
                self.assertEqual(self.redis.llen(self.key("jobs")), expect)

    def test_retry_of_a_full_list_while_jobs_die(self):
        """A dead list at PIXQ_DEAD_MAX loses its oldest entries at the tail as jobs die
        (finish.lua's LTRIM). Held at a window while 10 jobs die so, dead retry by id finds a
        job the list held when it began and still holds (it said "no dead job": its windows
        counted from the tail, past the entries trimmed), and retry all puts back no job that
        died after it began (it put back the 10), and forgets the posted claim of each job it
        puts back."""
        def entry(job_id, i):
            return json.dumps({"job": json.dumps(self.job(job_id, "/a.png")), "job_id": job_id,
                               "error": "E", "attempts": 1, "failed_at": 1700000000000 + i})

        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        # by id held at its second window (32 kept), all at its first (none trimmed is looked
        # at yet: the 10 oldest go unseen, and the 10 new ones must not take their place); with
        # 64 dying, the second window holds no entry by then, and the third the 6 newest left
        # (its arguments: which, the entries not looked at yet, the window, the dead count)
        first = b"all\r\n$2\r\n70\r\n$2\r\n32\r\n$1\r\n0\r"
        for which, held, died, expect in (
                ("ft-35", b"ft-35\r\n$2\r\n38\r\n$2\r\n32\r\n$1\r\n0\r", 10, 1),
                ("all", first, 10, 60), ("all", first, 64, 6)):
            with self.subTest(which=which, died=died):
                self.redis.delete(self.key("dead"), self.key("jobs"), self.key("stats"))
                for i in range(70):  # ft-0 the oldest, at the tail
                    self.redis.lpush(self.key("dead"), entry("ft-%d" % i, i))
                    self.redis.execute("HSET", self.key("job:ft-%d" % i), "posted", "digest")
                proxy.hold_on(held)
                p = subprocess.Popen([CONFIG.pixq, "dead", "retry", which],
                                     env=self.cli_env(PIXQ_REDIS_URL=proxy.redis_url()),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.addCleanup(p.kill)
                self.assertTrue(proxy.held.wait(scaled(20)))
                for i in range(died):  # as finish.lua buries a job, PIXQ_DEAD_MAX 70
                    self.redis.execute("EVAL", "redis.call('LPUSH', KEYS[1], ARGV[1]) "
                                       "redis.call('LTRIM', KEYS[1], 0, 69) "
                                       "redis.call('HINCRBY', KEYS[2], 'dead', 1)", 2,
                                       self.key("dead"), self.key("stats"),
                                       entry("new-%d" % i, 100 + i))
                proxy.release()
                out, err = p.communicate(timeout=scaled(20))
                self.assertEqual((p.returncode, out.strip(), err),
                                 (0, "%d job(s) put back on pixq:{default}:jobs" % expect, ""))
                ids = [json.loads(j)["job_id"] for j in self.redis.lrange(self.key("jobs"))]
                self.assertEqual(len(ids), expect)
                self.assertTrue(all(i.startswith("ft-") for i in ids), ids)
                # each one's posted claim forgotten (its window found where it is now, moved
                # down by the jobs that died), so that its re-run posts back
                self.assertEqual([i for i in ids if self.redis.execute(
                    "HGET", self.key("job:" + i), "posted") is not None], [])

    def test_purge_across_pages(self):
        """purge JOB_ID and --no-id read the list a page (32) at a time and remove what they
        find: every match on every page, none of the other entries, however many were removed
        before them (the entries after a removed one move up)."""
        for i in range(40):
            self.redis.rpush(self.key("dead"), json.dumps({"job": "{not json", "error": "E%d" % i}),
                             json.dumps({"job": "{}", "job_id": "pa-%d" % (i % 20), "error": "E",
                                         "attempts": 1, "failed_at": 1700000000000 + i}))
        self.assertEqual(self.pixq_ok("dead", "purge", "--no-id").strip(),
                         "40 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(self.dead_ids(), ["pa-%d" % (i % 20) for i in range(40)])
        self.assertEqual(self.pixq_ok("dead", "purge", "pa-7").strip(),  # twice in the list
                         "2 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(self.dead_ids(), ["pa-%d" % (i % 20) for i in range(40) if i % 20 != 7])

    def test_ids_of_one_character_and_none(self):
        """A job id of one character is an id (listed, retried, purged by name, kept by
        --no-id); an empty one is none."""
        self.redis.lpush(self.key("dead"), json.dumps({
            "job": "{}", "job_id": "q", "error": "E", "attempts": 1, "failed_at": 1700000000000}))
        self.redis.lpush(self.key("dead"), json.dumps({"job": "{}", "job_id": "", "error": "E"}))
        self.assertEqual([line.split()[0] for line in self.pixq_ok("dead", "list").splitlines()],
                         ["(no", "q"])
        self.assertEqual(self.pixq_ok("dead", "purge", "--no-id").strip(),
                         "1 dead job(s) purged from pixq:{default}:dead")
        self.assertEqual(self.dead_ids(), ["q"])
        self.assertEqual(self.pixq_ok("dead", "purge", "q").strip(),
                         "1 dead job(s) purged from pixq:{default}:dead")
        # an id with a NUL in it is none either: C would read only its first part as the id
        self.redis.lpush(self.key("dead"), json.dumps({"job": "{}", "job_id": "q\u0000r"}))
        self.assertEqual(self.pixq_ok("dead", "list").split()[:2], ["(no", "id)"])
        self.assertEqual(json.loads(self.pixq_ok("dead", "list", "--json"))["job_id"], "q\0r")
        self.assertEqual(self.pixq_ok("dead", "purge", "--no-id").strip(),
                         "1 dead job(s) purged from pixq:{default}:dead")

    def test_retry_by_id_forgets_only_that_job_s_postback(self):
        """dead retry JOB_ID clears the "posted" claim of that job alone, not of the other dead
        jobs of its window (theirs tell a later re-run, or pixq job, what was posted), not even
        of those whose text holds its id (an id it begins, an error that names it)."""
        for job_id in ("fo-1", "fo-2", "fo-22"):
            self.redis.lpush(self.key("dead"), json.dumps({
                "job": json.dumps(self.job(job_id, "/a.png")), "job_id": job_id,
                "error": "E (as fo-2)", "attempts": 1, "failed_at": 1700000000000}))
            self.redis.execute("HSET", self.key("job:" + job_id), "posted", "digest")
        self.assertEqual(self.pixq_ok("dead", "retry", "fo-2").strip(),
                         "1 job(s) put back on pixq:{default}:jobs")
        self.assertEqual([self.redis.execute("HGET", self.key("job:" + j), "posted")
                          for j in ("fo-1", "fo-2", "fo-22")], ["digest", None, "digest"])

    def test_purge_failing_says_so(self):
        """dead purge exits 1 with Redis's reason, and prints no count, when Redis refuses the
        writes (purge, purge all, JOB_ID, --no-id) or the connection is cut before an LREM."""
        for i in range(40):
            self.redis.lpush(self.key("dead"), json.dumps({
                "job": "{}", "job_id": "pf-%d" % i, "error": "E", "attempts": 1,
                "failed_at": 1700000000000 + i}))
        self.redis.lpush(self.key("dead"), json.dumps({"job": "{not json", "error": "E"}))
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")  # refuses writes
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "min-replicas-to-write", "0")
        for args in ((), ("all",), ("pf-3",), ("--no-id",)):
            with self.subTest(args=args):
                r = self.run_pixq("dead", "purge", *args)
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (1, "", "pixq: dead purge: redis: NOREPLICAS Not enough good "
                                  "replicas to write.\n"))
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        self.assertEqual(self.redis.llen(self.key("dead")), 41)

        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        proxy.cut_before(b"LREM")
        r = self.run_pixq("dead", "purge", "pf-3", env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertTrue(proxy.tripped.is_set())
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: dead purge: redis: .+\n$")
        self.assertEqual(self.redis.llen(self.key("dead")), 41)
        proxy.cut_before(b"LRANGE")  # purge JOB_ID reads the list a page at a time
        r = self.run_pixq("dead", "purge", "pf-3", env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertTrue(proxy.tripped.is_set())
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: dead purge: redis: .+\n$")
        proxy.cut_before(b"LLEN")  # purge all counts the entries first
        r = self.run_pixq("dead", "purge", env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertTrue(proxy.tripped.is_set())
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: dead purge: redis: .+\n$")
        self.assertEqual(self.redis.llen(self.key("dead")), 41)
        # entries without an id at the head, and on the next page: the failure stops the purge
        # at the first one (it does not go on through the rest of the list, reconnected)
        self.redis.lpush(self.key("dead"), json.dumps({"job": "{not json", "error": "E1"}))
        self.redis.rpush(self.key("dead"), json.dumps({"job": "{not json", "error": "E2"}))
        proxy.cut_before(b"LREM")
        r = self.run_pixq("dead", "purge", "--no-id", env={"PIXQ_REDIS_URL": proxy.redis_url()})
        self.assertTrue(proxy.tripped.is_set())
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(self.redis.llen(self.key("dead")), 43)

    def test_purge_all_counts_what_it_drops(self):
        """dead purge all says how many entries it dropped, those that died while it ran too:
        held after it read the list's length and before it deleted the list, while 3 jobs die,
        it dropped 5 and said 2 (the count and the drop are now one MULTI)."""
        for i in range(2):
            self.redis.lpush(self.key("dead"), json.dumps({"job": "{}", "job_id": "pc-%d" % i}))
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        proxy.hold_on(b"$3\r\nDEL\r\n")
        p = subprocess.Popen([CONFIG.pixq, "dead", "purge", "all"],
                             env=self.cli_env(PIXQ_REDIS_URL=proxy.redis_url()),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)
        self.assertTrue(proxy.held.wait(scaled(20)))
        for i in range(2, 5):  # died meanwhile
            self.redis.lpush(self.key("dead"), json.dumps({"job": "{}", "job_id": "pc-%d" % i}))
        proxy.release()
        out, err = p.communicate(timeout=scaled(20))
        self.assertEqual((p.returncode, out, err),
                         (0, "5 dead job(s) purged from pixq:{default}:dead\n", ""))
        self.assertEqual(self.redis.llen(self.key("dead")), 0)
        self.redis.execute("SET", self.key("dead"), "not a list")  # not dropped, as before
        r = self.run_pixq("dead", "purge", "all")
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: dead purge: redis: WRONGTYPE .+\n$")
        self.assertEqual(self.redis.execute("GET", self.key("dead")), "not a list")
        r = self.run_pixq("dead", "retry", "all")  # a failure too, not "0 job(s) put back"
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: dead retry: redis: WRONGTYPE .+\n$")

    def test_list_shows_what_a_job_wrote_escaped(self):
        """A job's URL is quoted in its error; in the text listing its control characters are
        escaped: no terminal sequence reaches the screen and no line of the job's own appears
        (--json keeps the error as it is)."""
        self.start_worker()
        path = ("/gone\x1b[2J\x1b]0;pwned\x07\n"
                "forged-job  2026-01-01T00:00:00.000Z  attempts=1  all fine\r\x9b31m.png")
        self.push(self.job("esc-1", path))
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 30, "a dead entry")
        error = json.loads(self.pixq_ok("dead", "list", "--json"))["error"]
        self.assertIn(path, error)
        self.assertIn("server answered HTTP 404", error)
        text = self.pixq_ok("dead", "list")
        self.assertEqual(len(text.splitlines()), 1, text)
        self.assertFalse(any(ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) < 0xa0 for c in text),
                         repr(text))
        self.assertIn(r"/gone\x1b[2J\x1b]0;pwned\x07\x0aforged-job  2026-01-01T00:00:00.000Z  "
                      r"attempts=1  all fine\x0d\xc2\x9b31m.png", text)
        self.assertTrue(text.startswith("esc-1  "), text)
        self.assertTrue(text.rstrip("\n").endswith("server answered HTTP 404"), text)

    def test_list_while_jobs_die(self):
        """dead list reads a page at a time; entries that land at the head meanwhile (a fleet
        keeps failing jobs while a long list prints into a pager) move the older ones down, and
        are not listed again from the next page: one entry, a few, a whole page (32) or more.
        Pushed as workers push them, with the queue's count of dead jobs raised in the same
        step, they are skipped by that count (no look for the last entry read: no LPOS); pushed
        without it (redis-cli), by a look. Entries retried or purged meanwhile move the others
        up, and none is skipped: one listed already, the last of the page printed (the next
        page starts after the newest one left), either with entries landing too."""
        pad = "p" * 100_000  # each line more than a pipe holds: pixq waits for the reader
        cases = [(landed, (), True) for landed in (1, 5, 32, 33, 100)]
        cases += [(landed, (), False) for landed in (1, 5, 32, 33, 100)]
        cases += [(0, (99,), False), (0, (68,), False), (0, (68, 69, 70), False),
                  (40, (99, 68), True), (40, (99, 68), False), (3, (68, 98), False)]
        for landed, gone, counted in cases:
            with self.subTest(landed=landed, gone=gone, counted=counted):
                self.redis.delete(self.key("dead"), self.key("stats"))
                for i in range(100):
                    self.redis.lpush(self.key("dead"),
                                     dead_entry("old-%d" % i, 1700000000000 + i, pad))
                self.redis.execute("HSET", self.key("stats"), "dead", 100)
                entries = self.redis.lrange(self.key("dead"), 0, -1)
                self.redis.execute("CONFIG", "RESETSTAT")
                proc = subprocess.Popen([CONFIG.pixq, "dead", "list", "--json"],
                                        env=self.cli_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                self.addCleanup(proc.kill)
                first = json.loads(proc.stdout.readline())["job_id"]  # the first page is read
                for i in gone:
                    self.assertEqual(
                        self.redis.execute("LREM", self.key("dead"), 1, entries[99 - i]), 1)
                for i in range(landed):
                    entry = dead_entry("new-%d" % i, 1800000000000 + i)
                    if counted:  # as finish.lua pushes it
                        self.redis.execute("EVAL", "redis.call('LPUSH', KEYS[1], ARGV[1]) "
                                           "redis.call('HINCRBY', KEYS[2], 'dead', 1)", 2,
                                           self.key("dead"), self.key("stats"), entry)
                    else:
                        self.redis.lpush(self.key("dead"), entry)
                rest = [json.loads(line)["job_id"] for line in proc.stdout]
                self.assertEqual(proc.wait(scaled(30)), 0, proc.stderr.read())
                proc.stdout.close()
                proc.stderr.close()
                self.assertEqual([first] + rest, ["old-%d" % i for i in range(99, -1, -1)])
                if counted and not gone:
                    self.assertEqual(self.command_calls("lpos"), [0])

    def test_list_entries_landing_as_a_moved_page_is_read(self):
        """When the last entry read moved otherwise than by the entries counted as pushed (an
        entry listed already was retried), pixq looks for it (LPOS) and reads the page after
        it; entries that land between that look and that read are skipped as those before it
        on the page read."""
        pad = "p" * 100_000  # each line more than a pipe holds: pixq waits for the reader
        for landed in (0, 1, 5):
            with self.subTest(landed=landed):
                self.redis.delete(self.key("dead"), self.key("stats"))
                for i in range(70):
                    self.redis.lpush(self.key("dead"),
                                     dead_entry("old-%d" % i, 1700000000000 + i, pad))
                entries = self.redis.lrange(self.key("dead"), 0, -1)
                proxy = harness.TcpProxy(self.redis_server.port)
                self.addCleanup(proxy.stop)
                # the page after the look: old-38, the last entry read, is at 30 by then
                proxy.hold_on(b"\r\n$2\r\n30\r\n$2\r\n62\r\n")
                proc = self.start_cli("dead", "list", "--json",
                                      PIXQ_REDIS_URL=proxy.redis_url())
                lines = [proc.stdout.readline()]  # the first page is read
                self.assertEqual(
                    self.redis.execute("LREM", self.key("dead"), 1, entries[0]), 1)
                t = threading.Thread(target=lambda: lines.extend(proc.stdout))
                t.start()
                self.addCleanup(t.join)
                self.addCleanup(proxy.release)
                self.assertTrue(proxy.held.wait(scaled(30)), "pixq's read after its look")
                for i in range(landed):
                    self.redis.lpush(self.key("dead"), dead_entry("new-%d" % i, 1800000000000 + i))
                proxy.release()
                self.assertEqual(proc.wait(scaled(30)), 0, proc.stderr.read())
                t.join(scaled(30))
                self.assertEqual([json.loads(line)["job_id"] for line in lines],
                                 ["old-%d" % i for i in range(69, -1, -1)])

    def test_list_identical_entries_and_entries_landing_at_a_page_read(self):
        """Identical dead entries (a payload that is no job, failed twice in one millisecond)
        astride two pages are both listed, also when entries pushed without their count
        (redis-cli) moved them before the second page's read: the look for the last entry read
        (LPOS) takes the copy at or past where it was; none of the entries that landed is
        listed, and no older one twice or skipped."""
        for landed in (0, 1, 5):
            with self.subTest(landed=landed):
                self.redis.delete(self.key("dead"))
                for i in range(70):
                    j = i if i != 38 else 37
                    self.redis.lpush(self.key("dead"), dead_entry("old-%d" % j, 1700000000000 + j))
                # the newest first: old-69 at 0 ... old-37 (a copy) at 31 and old-37 at 32
                finish = self.run_held(b"\r\n$2\r\n63\r\n",  # LRANGE's end: the second page
                                       "pixq's second page's read", "dead", "list", "--json")
                for i in range(landed):
                    self.redis.lpush(self.key("dead"), dead_entry("new-%d" % i, 1800000000000 + i))
                run = finish()
                self.assertEqual(run.returncode, 0, run.stderr)
                self.assertEqual(
                    [json.loads(line)["job_id"] for line in run.stdout.splitlines()],
                    ["old-%d" % (i if i != 38 else 37) for i in range(69, -1, -1)])

    def test_list_last_entry_read_gone_and_a_copy_of_the_one_before_further_on(self):
        """When the last entry of a page (listed already) is gone by the next read (purged),
        pixq looks for the one before it (LPOS): still where it was, it is taken there, not a
        copy of it further down the list (an identical entry), which would skip the entries
        between. Every entry is listed once (each copy once)."""
        pad = "p" * 100_000  # each line more than a pipe holds: pixq waits for the reader
        for i in range(70):
            j = 39 if i == 29 else i  # old-39 at 30 (the page's last but one) and a copy at 40
            self.redis.lpush(self.key("dead"), dead_entry("old-%d" % j, 1700000000000 + j, pad))
        entries = self.redis.lrange(self.key("dead"), 0, -1)
        proc = self.start_cli("dead", "list", "--json")
        lines = [proc.stdout.readline()]  # the first page (0 to 31) is read
        self.assertEqual(self.redis.execute("LREM", self.key("dead"), 1, entries[31]), 1)
        lines.extend(proc.stdout)
        self.assertEqual(proc.wait(scaled(30)), 0, proc.stderr.read())
        self.assertEqual([json.loads(line)["job_id"] for line in lines],
                         ["old-%d" % (39 if i == 29 else i) for i in range(69, -1, -1)])

    def test_list_limit_across_pages(self):
        """--limit N lists the newest N entries, read a page (32) at a time: N within a page,
        at its end, just past it, and more than the list holds (all of it, default 100)."""
        for i in range(70):
            self.redis.lpush(self.key("dead"), dead_entry("l-%d" % i, 1700000000000 + i))
        for limit in (1, 2, 31, 32, 33, 64, 65, 69, 70, 71, None):
            with self.subTest(limit=limit):
                args = ("--limit", str(limit)) if limit is not None else ()
                out = self.pixq_ok("dead", "list", "--json", *args)
                self.assertEqual([json.loads(line)["job_id"] for line in out.splitlines()],
                                 ["l-%d" % i for i in range(69, 69 - min(limit or 100, 70), -1)])

    def test_list_json_of_entries_that_are_not_entries(self):
        """Every line of dead list --json is one JSON object, also for an entry that is not JSON
        (its text, line feeds and all, as a string: a line of it cannot pass for an entry) or is
        JSON of another kind."""
        forged = json.dumps({"job_id": "forged", "error": "E", "attempts": 1,
                             "failed_at": 1700000000000, "job": "{}"})
        self.redis.rpush(self.key("dead"), "truncated {\n" + forged, '"a string"', "[1,\n2]")
        out = self.pixq_ok("dead", "list", "--json")
        self.assertEqual([json.loads(line) for line in out.splitlines()], [
            {"entry": "truncated {\n" + forged, "queue": "default"},
            {"entry": '"a string"', "queue": "default"},
            {"entry": "[1,\n2]", "queue": "default"}])


class DeadQueuesTest(CliCase):
    """dead list, retry and purge cover every queue of PIXQ_QUEUE (entries pushed by hand)."""

    QUEUES = {"PIXQ_QUEUE": "urgent,default"}

    def dead_entry(self, job_id, failed_at, error):
        job = json.dumps({"job_id": job_id, "src": "http://x.test/a.png", "functions": []})
        return json.dumps({"job": job, "job_id": job_id, "error": error, "attempts": 2,
                           "failed_at": failed_at})

    def fill(self):
        # urgent's u1 failed between default's d1 and d2: the list merges them by failed_at
        self.redis.lpush("pixq:{urgent}:dead", self.dead_entry("u1", 1700000000500, "E u1"))
        for job_id, at in (("d1", 1700000000000), ("d2", 1700000001000)):
            self.redis.lpush("pixq:{default}:dead", self.dead_entry(job_id, at, "E " + job_id))

    def pixq_q(self, *args, env=None):
        r = self.run_pixq(*args, env=dict(self.QUEUES, **(env or {})))
        return r.returncode, r.stdout

    def test_list_retry_purge_every_queue(self):
        self.fill()
        rc, out = self.pixq_q("dead", "list")
        self.assertEqual(rc, 0)
        self.assertEqual(out.splitlines(), [
            "d2  2023-11-14T22:13:21.000Z  attempts=2  queue=default  E d2",
            "u1  2023-11-14T22:13:20.500Z  attempts=2  queue=urgent  E u1",
            "d1  2023-11-14T22:13:20.000Z  attempts=2  queue=default  E d1"])
        rc, out = self.pixq_q("dead", "list", "--json", "--limit", "2")
        self.assertEqual([(e["job_id"], e["queue"]) for e in map(json.loads, out.splitlines())],
                         [("d2", "default"), ("u1", "urgent")])
        rc, out = self.pixq_q("dead", "list", env={"PIXQ_QUEUE": "urgent"})
        self.assertEqual([line.split()[0] for line in out.splitlines()], ["u1"])
        self.assertNotIn("queue=", out)
        # README's `pixq --queue urgent dead list`: the flag before the command, over the
        # environment's two queues
        self.assertEqual(self.pixq_q("--queue", "urgent", "dead", "list"), (rc, out))
        rc, out = self.pixq_q("--queue", "default", "dead", "list", "--json")
        self.assertEqual([(e["job_id"], e["queue"]) for e in map(json.loads, out.splitlines())],
                         [("d2", "default"), ("d1", "default")])

        rc, out = self.pixq_q("dead", "retry", "u1")  # urgent holds it
        self.assertEqual((rc, out.splitlines()), (0, ["1 job(s) put back on pixq:{urgent}:jobs",
                                                      "0 job(s) put back on pixq:{default}:jobs"]))
        self.assertEqual(json.loads(self.redis.lindex("pixq:{urgent}:jobs", 0))["job_id"], "u1")
        rc, out = self.pixq_q("dead", "retry", "d1")
        self.assertEqual((rc, out.splitlines()), (0, ["0 job(s) put back on pixq:{urgent}:jobs",
                                                      "1 job(s) put back on pixq:{default}:jobs"]))
        self.assertEqual(json.loads(self.redis.lindex("pixq:{default}:jobs", 0))["job_id"], "d1")
        self.assertEqual(self.pixq_q("dead", "retry", "u1")[0], 1)  # in no queue now

        self.fill()
        purged = "%d dead job(s) purged from pixq:{%s}:dead"
        rc, out = self.pixq_q("dead", "purge", "u1")
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (1, "urgent"), purged % (0, "default")]))
        rc, out = self.pixq_q("dead", "purge")
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (0, "urgent"), purged % (3, "default")]))
        self.assertEqual(self.pixq_q("dead", "list"), (0, ""))
        rc, out = self.pixq_q("dead", "purge", "u1")  # in no queue now
        self.assertEqual((rc, out.splitlines()),
                         (1, [purged % (0, "urgent"), purged % (0, "default")]))
        self.fill()  # purge all is purge, as retry all is every job: not a job id "all"
        rc, out = self.pixq_q("dead", "purge", "all")
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (1, "urgent"), purged % (2, "default")]))
        self.assertEqual(self.pixq_q("dead", "list"), (0, ""))

    def test_purge_no_id_drops_only_the_entries_listed_without_an_id(self):
        """A payload that was not a job is buried without a job id ("(no id)" in the list); only
        `purge all` could drop it, with every job beside it. `purge --no-id` drops those, and
        entries that are no dead letter at all, in every queue, and nothing else."""
        self.fill()
        unparseable = json.dumps({"job": "{not json", "error": "invalid job: not JSON",
                                  "attempts": 1, "failed_at": 1700000002000})
        self.redis.lpush("pixq:{default}:dead", unparseable)
        # ids that are no string of their own are none, listed and purged alike
        for odd in (None, "", 123, {"a": 1}):
            self.redis.lpush("pixq:{default}:dead", json.dumps({"job_id": odd, "error": "E"}))
        self.redis.lpush("pixq:{urgent}:dead", "not json")
        rc, out = self.pixq_q("dead", "list")
        self.assertEqual([line.split()[0] for line in out.splitlines()],
                         ["(not"] + ["(no"] * 5 + ["d2", "u1", "d1"])
        purged = "%d dead job(s) purged from pixq:{%s}:dead"
        rc, out = self.pixq_q("dead", "purge", "--no-id")
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (1, "urgent"), purged % (5, "default")]))
        rc, out = self.pixq_q("dead", "list")
        self.assertEqual([line.split()[0] for line in out.splitlines()], ["d2", "u1", "d1"])
        rc, out = self.pixq_q("dead", "purge", "--no-id")  # none left: not an error
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (0, "urgent"), purged % (0, "default")]))
        r = self.run_pixq("dead", "purge", "--no-id", "d1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("all, a JOB_ID or --no-id", r.stderr)
        self.assertIn("--no-id", self.pixq_ok("dead", "--help"))

    def test_ids_that_begin_with_a_dash_after_double_dash(self):
        """After --, the word is the JOB_ID as it is: dead jobs named -h, --help or --no-id are
        retried or purged by name, in every queue, as `pixq job -- -a1` finds one. Before, -h
        and --help showed the help, and purge --no-id dropped the entries without an id. "all"
        stays every entry, also after --; without --, those words keep their meaning."""
        self.fill()
        for job_id, at in (("-h", 1700000003000), ("--help", 1700000004000),
                           ("--no-id", 1700000005000)):
            self.redis.lpush("pixq:{default}:dead", self.dead_entry(job_id, at, "E"))
        self.redis.lpush("pixq:{urgent}:dead", json.dumps({"job": "{not json", "error": "E"}))

        def ids(queue):
            return [json.loads(e).get("job_id") for e in self.redis.lrange(
                "pixq:{%s}:dead" % queue)]

        put_back = "%d job(s) put back on pixq:{%s}:jobs"
        rc, out = self.pixq_q("dead", "retry", "--", "-h")
        self.assertEqual((rc, out.splitlines()),
                         (0, [put_back % (0, "urgent"), put_back % (1, "default")]))
        self.assertEqual(json.loads(self.redis.lindex("pixq:{default}:jobs", 0))["job_id"], "-h")
        self.assertEqual(ids("default"), ["--no-id", "--help", "d2", "d1"])
        r = self.run_pixq("dead", "retry", "--", "-h", env=self.QUEUES)  # gone now
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "pixq: dead retry: no dead job -h in these queues\n")

        rc, out = self.pixq_q("dead", "retry", "--help")  # the help, nothing retried
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("usage: pixq dead list"), out)
        self.assertEqual(ids("default"), ["--no-id", "--help", "d2", "d1"])
        rc, out = self.pixq_q("dead", "retry", "--", "--help")
        self.assertEqual((rc, out.splitlines()),
                         (0, [put_back % (0, "urgent"), put_back % (1, "default")]))
        self.assertEqual(ids("default"), ["--no-id", "d2", "d1"])

        purged = "%d dead job(s) purged from pixq:{%s}:dead"
        rc, out = self.pixq_q("dead", "purge", "--", "--no-id")  # the job, not those without one
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (0, "urgent"), purged % (1, "default")]))
        self.assertEqual((ids("urgent"), ids("default")), ([None, "u1"], ["d2", "d1"]))
        rc, out = self.pixq_q("dead", "purge", "--", "d1")  # any id may follow --
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (0, "urgent"), purged % (1, "default")]))
        rc, out = self.pixq_q("dead", "purge", "--no-id")  # without --: those without an id
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (1, "urgent"), purged % (0, "default")]))
        self.assertEqual((ids("urgent"), ids("default")), (["u1"], ["d2"]))
        rc, out = self.pixq_q("dead", "retry", "--", "all")  # every entry still
        self.assertEqual((rc, out.splitlines()),
                         (0, [put_back % (1, "urgent"), put_back % (1, "default")]))
        self.fill()
        rc, out = self.pixq_q("dead", "purge", "--", "all")
        self.assertEqual((rc, out.splitlines()),
                         (0, [purged % (1, "urgent"), purged % (2, "default")]))
        # --no-id is purge's: for retry it is a job id, as any other word
        self.redis.lpush("pixq:{default}:dead", self.dead_entry("--no-id", 1700000006000, "E"))
        self.redis.lpush("pixq:{urgent}:dead", json.dumps({"job": "{not json", "error": "E"}))
        rc, out = self.pixq_q("dead", "retry", "--no-id")
        self.assertEqual((rc, out.splitlines()),
                         (0, [put_back % (0, "urgent"), put_back % (1, "default")]))
        self.assertEqual((ids("urgent"), ids("default")), ([None], []))

    def test_entries_without_a_time_keep_their_place(self):
        """An entry that does not say when it failed (not JSON, or without failed_at) is taken
        as new as the one before it in its queue's list: it neither holds back that queue's
        newer entries behind another queue's older ones nor jumps ahead of older ones."""
        self.redis.lpush("pixq:{urgent}:dead", self.dead_entry("u1", 1700000000500, "E u1"))
        self.redis.lpush("pixq:{urgent}:dead", "not json")  # newest of urgent
        self.redis.lpush("pixq:{default}:dead", self.dead_entry("d1", 1700000000000, "E d1"))
        self.redis.lpush("pixq:{default}:dead", json.dumps({"job_id": "d0", "error": "E d0"}))
        self.redis.lpush("pixq:{default}:dead", self.dead_entry("d2", 1700000001000, "E d2"))
        rc, out = self.pixq_q("dead", "list")
        self.assertEqual(rc, 0)
        self.assertEqual(out.splitlines(), [
            "(not a dead entry)  not json",
            "d2  2023-11-14T22:13:21.000Z  attempts=2  queue=default  E d2",
            "d0  (unknown time)  attempts=?  queue=default  E d0",
            "u1  2023-11-14T22:13:20.500Z  attempts=2  queue=urgent  E u1",
            "d1  2023-11-14T22:13:20.000Z  attempts=2  queue=default  E d1"])
        rc, out = self.pixq_q("dead", "list", "--json", "--limit", "4")
        self.assertEqual([e.get("job_id") for e in map(json.loads, out.splitlines())],
                         [None, "d2", "d0", "u1"])


class DeadLargeTest(CliCase):
    """A long dead list of large entries (1,000 of 100 KB here; 10,000 of 200 KB in a fleet) is
    read a page at a time by list, purge and retry: pixq's memory stays a few pages' worth, and
    dead_retry.lua looks at one window per call, so that no call holds Redis (and every
    worker) for the time a pass over the whole list takes."""

    N, PAD = 1000, 100_000

    def fill(self):
        key = self.key("dead")
        for start in range(0, self.N, 100):
            entries = []
            for i in range(start, start + 100):
                job = json.dumps({"job_id": "big-%d" % i, "src": "http://x.test/a.png",
                                  "functions": [], "pad": "p" * self.PAD})
                entries.append(json.dumps({"job": job, "job_id": "big-%d" % i, "error": "E",
                                           "attempts": 1, "failed_at": 1700000000000 + i}))
            self.redis.lpush(key, *entries)  # big-999 newest, at the head

    # Runs pixq from a fresh interpreter, so that its peak RSS is its own (a child forked from
    # the test process would inherit the test's high-water mark) and prints it on stderr.
    RSS_RUNNER = ("import os, sys\n"
                  "pid = os.fork()\n"
                  "if pid == 0:\n"
                  "    os.execv(sys.argv[1], sys.argv[1:])\n"
                  "_, status, usage = os.wait4(pid, 0)\n"
                  "sys.stderr.write('maxrss_kb %d\\n' % usage.ru_maxrss)\n"
                  "sys.exit(os.waitstatus_to_exitcode(status))\n")

    def pixq_rss(self, *args):
        """Runs pixq; returns (stdout line count, peak RSS in MB)."""
        env = self.cli_env()
        if CONFIG.sanitized:  # freed pages measured as freed, not kept in quarantine
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"
        with open(self.tmp / "pixq-large.out", "w+b") as out:
            r = subprocess.run([sys.executable, "-c", self.RSS_RUNNER, CONFIG.pixq, *args],
                               env=env, stdout=out, stderr=subprocess.PIPE, text=True,
                               timeout=scaled(120))
            out.seek(0)
            lines = sum(1 for _ in out)
        self.assertEqual(r.returncode, 0, "pixq %s: %s" % (" ".join(args), r.stderr))
        rss_kb = int(re.search(r"^maxrss_kb (\d+)$", r.stderr, re.M).group(1))
        return lines, rss_kb / 1024

    def script_calls_us(self):
        """The duration (µs) of every script call since the SLOWLOG was reset."""
        return [entry[2] for entry in self.redis.execute("SLOWLOG", "GET", "100000")
                if entry[3][0].upper() in ("EVALSHA", "EVAL")]

    def test_large_dead_list(self):
        self.fill()
        bound_mb = self.N * self.PAD / 1e6 / (1.25 if CONFIG.sanitized else 2)
        lines, rss = self.pixq_rss("dead", "list", "--json", "--limit", "1000000")
        self.assertEqual(lines, self.N)
        self.assertLess(rss, bound_mb, "dead list held the whole list")
        lines, rss = self.pixq_rss("dead", "purge", "big-3")
        self.assertLess(rss, bound_mb, "dead purge JOB_ID held the whole list")
        self.assertEqual(self.redis.llen(self.key("dead")), self.N - 1)

        self.redis.execute("CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.redis.execute("CONFIG", "SET", "slowlog-max-len", "100000")
        self.redis.execute("SLOWLOG", "RESET")
        _, rss = self.pixq_rss("dead", "retry", "big-500")
        self.assertLess(rss, bound_mb, "dead retry JOB_ID held the whole list")
        self.assertEqual(json.loads(self.redis.lindex(self.key("jobs"), 0))["job_id"], "big-500")
        self.redis.execute("SLOWLOG", "RESET")
        _, rss = self.pixq_rss("dead", "retry", "all")
        self.assertLess(rss, bound_mb, "dead retry all held the whole list")
        # a window is 32 entries (3.2 MB) of the 100 MB: Redis is held for one window's time
        # at once (about 1/30 of the whole, however fast this machine is), not for all of it
        calls = self.script_calls_us()
        self.assertGreaterEqual(len(calls), (self.N - 2) // 32)
        self.assertLess(max(calls), sum(calls) / 5, calls)
        self.assertEqual(self.redis.llen(self.key("dead")), 0)
        queued = [json.loads(p)["job_id"] for p in self.redis.lrange(self.key("jobs"))]
        # oldest first at the consuming end, big-500 (retried first) last of all there
        expected = ["big-%d" % i for i in range(self.N - 1, -1, -1) if i not in (3, 500)]
        self.assertEqual(queued, expected + ["big-500"])
        self.assertEqual(self.counters()["dead_retried"], self.N - 1)


BAD_ARGUMENTS = [
    [],
    ["frob"],
    ["stats", "--bogus"],
    ["stats", "json"],
    ["stats", "--json", "--prometheus"],
    ["stats", "--watch", "0"],
    ["stats", "--watch", "0.09"],
    ["stats", "--watch", "86401"],
    ["stats", "--watch", "--count", "1000001"],
    ["stats", "--watch", "soon"],
    ["stats", "--count", "2"],
    ["stats", "--watch", "--count", "0"],
    ["stats", "--watch", "--count"],
    ["queues", "--bogus"],
    ["queues", "--json", "x"],
    ["dead"],
    ["dead", "frob"],
    ["dead", "retry"],
    ["job"],
    ["job", "a", "b"],
    ["job", "--", "a", "b"],
    ["job", "-x"],
    ["job", "a*b"],
    ["job", "a", "--scan", "0"],
    ["job", "a", "--scan"],
    ["job", "a", "--bogus"],
    ["job", "a", "--timeout", "5"],
    ["job", "a", "--wait", "--timeout", "0"],
    ["job", "a", "--wait", "--timeout"],
    ["job", "a", "--wait", "--timeout", "86401"],
    ["job", "a", "--scan", "10000001"],
    ["job", ""],
    ["job", "a" * 128],
    ["dead", "retry", "a", "b"],
    ["dead", "purge", "a", "b"],
    ["dead", "retry", "--"],
    ["dead", "purge", "--"],
    ["dead", "retry", "--", "a", "b"],
    ["dead", "purge", "--", "a", "b"],
    ["dead", "retry", "a", "--"],
    ["dead", "purge", "--no-id", "--"],
    ["dead", "list", "--limit"],
    ["dead", "list", "--limit", "0"],
    ["dead", "list", "--limit", "x"],
    ["dead", "list", "--frob"],
    ["limit"],
    ["limit", "show", "--xml"],
    ["limit", "set", "bkt", "0", "1"],
    ["limit", "set", "Bad_Bucket_", "1", "1"],
    ["limit", "reset"],
    ["submit"],
    ["submit", "job.json", "--delay", "-1"],
    ["submit", "job.json", "--delay", "soon"],
    ["submit", "job.json", "--timeout", "0"],
    ["submit", "job.json", "--timeout"],
    ["submit", "job.json", "--progress-interval", "0"],
    ["submit", "job.json", "--progress-interval", "0.04"],
    ["submit", "job.json", "--timeout", "86401"],
    ["submit", "job.json", "--delay", "2592000001"],
    ["submit", "job.json", "--progress-interval", "3601"],
    ["submit", "job.json", "--frob"],
    ["submit", "-", "-"],
    ["--no-such-setting", "1", "stats"],
]

GOOD_JOB = {"src": "http://x.test/a.png", "functions": [
    {"name": "resize_to_fit", "params": {"width": 10}, "save": {"image_identifier": "x"}}]}

COMMANDS_HELP = {
    (): ["submit", "stats", "queues", "dead list", "limit show", "--delay", "--no-progress",
         "--progress-interval", "Exit status"],
    ("submit",): ["FILE", "JSON lines", "--wait", "--timeout", "--delay", "--json",
                  "--progress-interval", "pixq_enqueued_at", "Exit status"],
    ("stats",): ["--json", "--prometheus", "--watch", "--count", "Exit status"],
    ("queues",): ["--json", "Exit status"],
    ("dead",): ["list", "retry", "purge", "--limit", "--json", "Exit status"],
    ("dead", "list"): ["list", "retry", "purge"],
    ("limit",): ["show", "set", "reset", "--json", "0.001 to 1000000", "Exit status"],
    ("limit", "set"): ["BUCKET RATE BURST"],
    ("job",): ["JOB_ID", "--json", "--scan", "PIXQ_RESULT_TTL_S", "Exit status"],
}


class JobTest(CliCase):
    """`pixq job JOB_ID`: where a job is (on a worker, waiting and its place, delayed, its
    outputs parked, a postback retry) and what became of it (its result, its postback, its dead
    entry), in text and --json; a job of which nothing is left is an error (status 1)."""

    worker_env_extra = dict(SHORT_LEASES, PIXQ_POSTBACK_RETRY_DELAYS_S="600",
                            PIXQ_S3_LOCAL_WAIT_MS="0")

    def job_json(self, job_id, *args):
        r = self.run_pixq("job", job_id, "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        o = json.loads(r.stdout)
        self.assertEqual((o["job_id"], len(o["queues"])), (job_id, 1), o)
        self.assertEqual(o["queues"][0]["queue"], "default")
        return o["queues"][0]

    def job_text(self, job_id):
        return self.pixq_ok("job", job_id)

    def test_a_job_through_its_life(self):
        worker = self.start_worker()
        wid = self.worker_id(worker)
        self.submit_later("later-1")

        q = self.job_json("later-1")
        self.assertEqual(q["state"], "delayed", q)
        self.assertEqual([d["kind"] for d in q["delayed"]], ["job"], q)
        self.assertTrue(590000 <= q["delayed"][0]["due_in_ms"] <= 600000, q)
        self.assertIn("submitted_at_ms", q)
        self.assertNotIn("first_run_at_ms", q)
        self.assertRegex(self.job_text("later-1"),
                         r"^job later-1 in queue default: delayed\n  due +\d{4}-\d\d-\d\dT"
                         r"[\d:.]+Z \(in (59\d|600)\.\d s\): the job \(a retry, or submitted with "
                         r"--delay\)\n  submitted +\d{4}-")

        self.src.stall("/slow.png")
        self.push(self.job("busy-1", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker busy")
        self.push(self.job("wait-1", "/ok.png"))
        self.push(self.job("wait-2", "/ok.png"))
        q = self.job_json("busy-1")
        self.assertEqual(q["state"], "running", q)
        self.assertEqual(len(q["held_by"]), 1, q)
        h = q["held_by"][0]
        self.assertEqual((h["worker"], h["kind"], h["alive"]), (wid, "job", True), h)
        self.assertTrue(0 < h["lease_ms_left"] <= LEASE_MS, h)
        self.assertEqual(q["runs"], 1, q)
        self.assertRegex(self.job_text("busy-1"),
                         r"^job busy-1 in queue default: running\n  worker +%s \(lease [\d.]+ "
                         r"s\): the job\n  first run +\d{4}-[-\dT:.]+Z, 1 run\n$"
                         % re.escape(wid))
        q = self.job_json("wait-2")
        self.assertEqual(q["state"], "waiting", q)
        self.assertEqual(q["waiting"], [{"kind": "job", "position": 2}], q)
        self.assertEqual(q["searched"], {"jobs": 2, "jobs_total": 2, "dead": 0,
                                         "dead_total": 0}, q)
        self.assertIn("  waiting      the job, number 2 from the front of 2 entries\n",
                      self.job_text("wait-2"))
        # only the entry nearest the front is searched: wait-2, pushed by redis-cli (no record
        # of it), is not found
        r = self.run_pixq("job", "wait-2", "--scan", "1")
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(r.stderr, "pixq: job: no trace of job 'wait-2' in default: not held, "
                         "waiting, delayed or dead, and no result or record (kept "
                         "PIXQ_RESULT_TTL_S, 86400 s); searched the 1 waiting entries nearest "
                         "the front of 2 (--scan)\n")
        self.assertEqual(self.job_json("wait-1", "--scan", "1")["waiting"][0]["position"], 1)
        self.assertIn("  waiting      the job, number 1 from the front of 2 entries\n",
                      self.pixq_ok("job", "wait-1", "--scan", "1"))
        # a submitted job (its record holds when) not within --scan: the note says what was not
        # read
        path = self.tmp / "wait-3.json"
        path.write_text(json.dumps(self.job("wait-3", "/ok.png")))
        self.pixq_ok("submit", str(path))
        self.assertEqual(self.job_json("wait-3")["waiting"], [{"kind": "job", "position": 3}])
        text = self.pixq_ok("job", "wait-3", "--scan", "2")
        self.assertRegex(text, r"^job wait-3 in queue default: submitted\n  submitted +\d{4}-"
                               r"[-\dT:.]+Z\n  \(searched the 2 waiting entries nearest the "
                               r"front of 3: --scan\)\n$")
        self.assertNotIn("searched", self.job_text("wait-3"))

        self.src.release()
        pb = self.wait_for_postback(job_id="busy-1")
        self.wait_for_postback(job_id="wait-2")
        q = self.job_json("busy-1")
        self.assertEqual((q["state"], q["outcome"], q["postback_delivered"]),
                         ("succeeded", "succeeded", True), q)
        self.assertEqual(q["result"], pb.json)
        self.assertNotIn("held_by", q)
        url = pb.json["results"]["images"][0]["s3_url"]
        self.assertEqual(self.job_text("busy-1").splitlines()[-3:],
                         ["  result       succeeded, 1 image",
                          "               thumb  %s" % url,
                          "  postback     delivered"])

        bad = self.job("bad-1", "/ok.png")
        bad["functions"][0]["name"] = "no_such_function"
        self.push(bad)
        self.wait_for_postback(job_id="bad-1")
        q = self.job_json("bad-1")
        self.assertEqual(q["state"], "failed", q)
        self.assertEqual(len(q["dead"]), 1, q)
        self.assertIn("Unknown function named 'no_such_function'", q["dead"][0]["error"])
        text = self.job_text("bad-1")
        self.assertIn("  result       failed: Image processing failed. Unknown function named "
                      "'no_such_function'\n", text)
        self.assertRegex(text, r"\n  dead +\d{4}-[-\dT:.]+Z, 1 attempt: .*Unknown function")

        r = self.run_pixq("job", "nope-1")
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(r.stderr, "pixq: job: no trace of job 'nope-1' in default: not held, "
                         "waiting, delayed or dead, and no result or record (kept "
                         "PIXQ_RESULT_TTL_S, 86400 s)\n")
        r = self.run_pixq("job", "nope-1", env={"PIXQ_QUEUE": " default "})
        self.assertTrue(r.stderr.startswith("pixq: job: no trace of job 'nope-1' in default: "),
                        r.stderr)
        r = self.run_pixq("job", "nope-1", "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(json.loads(r.stdout)["queues"], [])
        # every queue of PIXQ_QUEUE is searched; only those with a trace are shown
        both = {"PIXQ_QUEUE": "urgent, default"}
        r = self.run_pixq("job", "busy-1", "--json", env=both)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([(q["queue"], q["state"]) for q in json.loads(r.stdout)["queues"]],
                         [("default", "succeeded")])
        r = self.run_pixq("job", "nope-1", env=both)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(r.stderr.startswith("pixq: job: no trace of job 'nope-1' in the queues "
                                            "of PIXQ_QUEUE, urgent, default: not held"), r.stderr)

    def test_a_job_in_a_batch(self):
        # a batch pushed as one entry (as Blitline took them): its jobs are found inside it,
        # waiting, and held while a worker splits it, with their place in it
        self.src.add("/ok.png", tiny_png())
        batch = [self.job("bat-1", "/ok.png"), self.job("bat-2", "/ok.png")]
        self.push(self.job("solo-1", "/ok.png"))
        payload = self.push(batch)
        q = self.job_json("bat-2")
        self.assertEqual(q["state"], "waiting", q)
        self.assertEqual(q["waiting"], [{"kind": "job", "position": 2,
                                         "batch": {"index": 2, "jobs": 2}}], q)
        self.assertIn("  waiting      the job (job 2 of a batch of 2, pushed as one entry), "
                      "number 2 from the front of 2 entries\n", self.job_text("bat-2"))
        self.assertEqual(self.job_json("solo-1")["waiting"], [{"kind": "job", "position": 1}])
        # a worker that took the batch and has not split it yet: still waiting
        self.redis.execute("LREM", self.key("jobs"), "1", payload)
        self.redis.execute("ZADD", self.key("workers"), str(int(time.time() * 1000) + 60000),
                           "w-split")
        self.redis.lpush(self.key("active:w-split"), payload)
        q = self.job_json("bat-1")
        self.assertEqual(q["state"], "waiting", q)
        self.assertNotIn("waiting", q)
        self.assertEqual([(h["worker"], h["kind"], h["batch"]) for h in q["held_by"]],
                         [("w-split", "job", {"index": 1, "jobs": 2})], q)
        self.assertRegex(self.job_text("bat-1"),
                         r"\n  worker +w-split \(lease [\d.]+ s\): the batch that holds the "
                         r"job, to split \(job 1 of a batch of 2, pushed as one entry\)\n")
        # given back, split and run: found as itself
        self.redis.execute("DEL", self.key("active:w-split"))
        self.redis.execute("ZREM", self.key("workers"), "w-split")
        self.redis.lpush(self.key("jobs"), payload)
        self.start_worker()
        self.wait_for_postback(job_id="bat-2")
        q = self.job_json("bat-2")
        self.assertEqual(q["state"], "succeeded", q)
        self.assertNotIn("waiting", q)
        # a batch no worker splits (over 1,000 jobs) is dead as a whole, without an id: its
        # jobs are found in its dead entry
        self.push([self.job("big-%d" % i, "/ok.png") for i in range(1, 1002)])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "the batch dead")
        q = self.job_json("big-7")
        self.assertEqual(q["state"], "dead", q)
        self.assertEqual(len(q["dead"]), 1, q)
        self.assertEqual(q["dead"][0]["batch"], {"index": 7, "jobs": 1001}, q)
        self.assertIn("a batch holds 1001 jobs, more than the limit of 1000",
                      q["dead"][0]["error"])
        self.assertRegex(self.job_text("big-7"),
                         r"\n  dead +\d{4}-[-\dT:.]+Z \(job 7 of a batch of 1001, pushed as one "
                         r"entry\), 1 attempt: .*a batch holds 1001 jobs")
        self.assertEqual(self.job_json("bat-2")["state"], "succeeded")  # not in that batch

    def test_a_job_in_a_batch_dead_for_its_bytes(self):
        """README: a batch dead as a whole for being over PIXQ_MAX_BATCH_BYTES (here 2048; a
        batch of few jobs) is searched as one over 1,000 jobs is: its jobs are found in its
        dead entry, each with its place in it."""
        self.start_worker(PIXQ_MAX_BATCH_BYTES="2048")
        self.src.add("/ok.png", tiny_png())
        batch = [dict(self.job("heavy-%d" % i, "/ok.png"), pad="x" * 900) for i in (1, 2, 3)]
        payload = self.push(batch)
        self.assertGreater(len(payload), 2048)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "the batch dead")
        q = self.job_json("heavy-3")
        self.assertEqual(q["state"], "dead", q)
        self.assertEqual([d["batch"] for d in q["dead"]], [{"index": 3, "jobs": 3}], q)
        self.assertIn("(PIXQ_MAX_BATCH_BYTES)", q["dead"][0]["error"])
        self.assertRegex(self.job_text("heavy-3"),
                         r"\n  dead +\d{4}-[-\dT:.]+Z \(job 3 of a batch of 3, pushed as one "
                         r"entry\), 1 attempt: .*more than the limit of 2048")
        self.assertEqual(self.src.requests("/ok.png"), 0)  # none of them ran

    def job_waited(self, *args):
        """`pixq job ... --wait` run in a thread: (thread, box); box["r"] once it returned."""
        box = {}
        t = threading.Thread(target=lambda: box.update(r=self.run_pixq("job", *args, "--wait")))
        t.start()
        return t, box

    def test_wait_for_the_outcome(self):
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        # a job that fails for good, then is retried from `dead` while its failed result is
        # still kept: --wait waits for the new run, not for the result already there
        self.push(self.job("wait-again", "/later.png"))
        self.wait_for_postback(job_id="wait-again")
        self.assertEqual(self.job_json("wait-again")["state"], "failed")
        self.src.add("/later.png", tiny_png())
        self.src.stall("/later.png")
        self.pixq_ok("dead", "retry", "wait-again")
        t, box = self.job_waited("wait-again", "--json")
        # its first request met a 404; the second is the rerun's
        self.wait_until(lambda: self.src.requests("/later.png") == 2, 20, "the rerun")
        time.sleep(scaled(1.5))
        self.assertTrue(t.is_alive(), box)  # the rerun is held by its download
        self.src.release()
        t.join(scaled(30))
        r = box["r"]
        self.assertEqual(r.returncode, 0, r.stderr)
        q = json.loads(r.stdout)["queues"][0]
        self.assertEqual((q["state"], q["outcome"]), ("succeeded", "succeeded"), q)
        self.assertEqual(q["runs"], 2, q)

        # a failure: the report, and status 1 with a line that says so
        bad = self.job("wait-bad", "/ok.png")
        bad["functions"][0]["name"] = "no_such_function"
        self.push(bad)
        t, box = self.job_waited("wait-bad")
        t.join(scaled(30))
        r = box["r"]
        self.assertEqual((r.returncode, r.stderr), (1, "pixq: job: job 'wait-bad' failed\n"))
        self.assertRegex(r.stdout, r"^job wait-bad in queue default: failed\n(.*\n)*  result +"
                                   r"failed: Image processing failed. Unknown function")

        # no outcome by --timeout: the report as it stands, and status 1
        self.src.stall("/slow.png")
        self.src.add("/slow.png", tiny_png())
        self.push(self.job("wait-slow", "/slow.png"))
        t0 = time.monotonic()
        r = self.run_pixq("job", "wait-slow", "--wait", "--timeout", "2")
        self.assertGreaterEqual(time.monotonic() - t0, 2)
        self.assertEqual((r.returncode, r.stderr),
                         (1, "pixq: job: job 'wait-slow' is still running after 2 s "
                             "(--timeout)\n"))
        self.assertTrue(r.stdout.startswith("job wait-slow in queue default: running\n"),
                        r.stdout)
        self.src.release()
        self.wait_for_postback(job_id="wait-slow")
        # an outcome already there is shown at once; a job found nowhere is no wait
        t0 = time.monotonic()
        self.assertIn(": succeeded\n", self.pixq_ok("job", "wait-slow", "--wait"))
        r = self.run_pixq("job", "wait-nowhere", "--wait")
        self.assertLess(time.monotonic() - t0, scaled(10))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(r.stderr.startswith("pixq: job: no trace of job 'wait-nowhere'"),
                        r.stderr)

    def move_at_the_delayed_scan(self, worker, search):
        """Moves the job of the waiting list onto `worker`'s active list (as a worker's LMOVE
        does) when Redis is sent the first ZSCAN of the `search`th search (pixq job reads
        `delayed` after the active lists and before the waiting list); 100,000 entries in
        `delayed` keep the search there for a few hundred round trips. Returns an Event set
        once it has moved."""
        self.redis.execute("EVAL", "for i = 1, 100000 do redis.call('ZADD', KEYS[1], 9e12, "
                           "'other-' .. i) end", 1, self.key("delayed"))
        self.redis.execute("ZADD", self.key("workers"), 9 * 10 ** 12, worker)
        watch = harness.Redis(harness.LOOPBACK, self.redis_server.port, timeout=scaled(30))
        self.addCleanup(watch.close)
        self.assertEqual(watch.execute("MONITOR"), "OK")
        moved = threading.Event()

        def mover():
            mover_redis = harness.Redis(harness.LOOPBACK, self.redis_server.port)
            try:
                first = '"ZSCAN" "%s" "0"' % self.key("delayed")
                for _ in range(search):
                    while first not in watch._read_reply():
                        pass
                mover_redis.execute("LMOVE", self.key("jobs"), self.key("active:" + worker),
                                    "RIGHT", "LEFT")
                moved.set()
            except (OSError, ConnectionError):
                pass  # the test ended first
            finally:
                mover_redis.close()
        threading.Thread(target=mover, daemon=True).start()
        return moved

    def test_a_job_taken_during_the_search(self):
        """A job taken off the waiting list between the search of the active lists and that of
        the waiting list is in neither as they are read, and one pushed with any Redis client
        has no record until its run begins: one search reported it as no trace (status 1), and
        --wait gave up on it so, or took the result of an earlier run for its outcome. pixq job
        searches again at once before saying no trace, and --wait takes an outcome that two
        searches in a row find."""
        self.push(self.job("moving-1", "/ok.png"))
        moved = self.move_at_the_delayed_scan("w-taker", 1)
        q = self.job_json("moving-1")
        self.assertTrue(moved.is_set())
        self.assertEqual(q["state"], "running", q)
        self.assertEqual([h["worker"] for h in q["held_by"]], ["w-taker"], q)

        self.wait_as_it_moves("moving-2")

        # a job sent back by dead retry, its earlier run's result kept: taken off the waiting
        # list during a search, it was in no place but its old result, taken for its outcome
        self.redis.rpush(self.key("result:moving-3"), json.dumps(
            {"results": {"job_id": "moving-3", "errors": ["an earlier run's"]}}))
        self.wait_as_it_moves("moving-3")

    def wait_as_it_moves(self, job_id):
        """`pixq job JOB_ID --wait` on job_id, pushed now, taken by worker w-taker during the
        first search of the wait: still waiting 0.5 s later; settled then as finish.lua settles
        it (its result replacing any earlier one, off the active list), the wait ends with
        it succeeded."""
        active, result = self.key("active:w-taker"), self.key("result:" + job_id)
        self.redis.execute("DEL", active, self.key("delayed"))
        self.push(self.job(job_id, "/ok.png"))
        moved = self.move_at_the_delayed_scan("w-taker", 2)  # while it waits
        proc = self.start_cli("job", job_id, "--wait", "--timeout", "60")
        self.assertTrue(moved.wait(scaled(20)), "no ZSCAN from pixq job")
        time.sleep(scaled(0.5))
        self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
        self.redis.rpush(result, json.dumps({"results": {"job_id": job_id, "images": []}}))
        self.redis.execute("LTRIM", result, -1, -1)
        self.redis.execute("LREM", active, 1, self.redis.execute("LINDEX", active, 0))
        out, err = proc.communicate(timeout=scaled(30))
        self.assertEqual(proc.returncode, 0, err)
        self.assertRegex(out, r"^job %s in queue default: succeeded\n" % job_id)

    def test_postback_retry_and_parked_output(self):
        self.start_worker()
        self.src.add("/ok.png", tiny_png())
        self.postbacks.answer_with(500)
        retried = self.job("pb-1", "/ok.png")
        retried["retry_postback"] = True
        self.push(retried)
        self.wait_until(lambda: self.redis.execute("ZCARD", self.key("delayed")) == 1, 20,
                        "the postback retry")
        q = self.job_json("pb-1")
        self.assertEqual((q["state"], q["outcome"]), ("postback retry", "succeeded"), q)
        self.assertEqual([d["kind"] for d in q["delayed"]], ["postback"], q)
        self.assertTrue(590000 <= q["delayed"][0]["due_in_ms"] <= 600000, q)
        self.assertNotIn("postback_delivered", q)
        self.assertRegex(self.job_text("pb-1"), r"\(in (59\d|600)\.\d s\): a postback retry\n")

        # one upload a 1,000 s, none in advance: of two jobs, one at least is parked (both
        # are when pb-1's upload took the slot)
        self.pixq_ok("limit", "set", self.buckets[0], "0.001", "0")
        self.push(self.job("park-1", "/ok.png"))
        self.push(self.job("park-2", "/ok.png"))
        posted = lambda: [p for p in self.postbacks.postbacks  # noqa: E731
                          if (p.results or {}).get("job_id", "").startswith("park-")]
        self.wait_until(lambda: len(posted()) + self.redis.execute(
            "ZCARD", self.key("delayed")) - 1 == 2, 20, "the parked outputs")
        parked = [j for j in ("park-1", "park-2")
                  if self.job_json(j)["state"] == "outputs parked"]
        self.assertEqual(len(parked) + len(posted()), 2, parked)
        q = self.job_json(parked[0])
        self.assertEqual(q["parked_outputs"], 1, q)
        self.assertEqual([d["kind"] for d in q["delayed"]], ["upload"], q)
        self.assertNotIn("outcome", q)
        text = self.job_text(parked[0])
        self.assertIn("  outputs      1 still to upload\n", text)
        self.assertRegex(text, r"\(in \d+\.\d s\): an output's upload \(parked\)\n")

    def task(self, kind, job_id):
        """One of pixq's own entries, of `kind` ("upload", "postback"), about job_id."""
        return "pixq-task:" + json.dumps({"pixq_" + kind: {"job_id": job_id}})

    def test_poison_pill_held_or_waiting(self):
        """A job that killed its workers PIXQ_MAX_RECOVERIES times is a poison pill (reap.lua's
        pixq-task:{"pixq_poison": <the entry, as text>, "error": ...}): in jobs, it is the job
        waiting; on a worker's list, the job whose failure it posts back; a pill of an upload
        task is about that task's job. Before, its id was looked for in the pill's text as in an
        object: `pixq job` found no trace of the job, and stats listed "(no id yet)"."""
        def pill(entry):
            return "pixq-task:" + json.dumps({"pixq_poison": entry, "error": "E"})
        now = int(time.time() * 1000)
        r = self.redis
        r.lpush(self.key("jobs"), pill(json.dumps(self.job("pp-wait", "/ok.png"))))
        r.execute("ZADD", self.key("workers"), str(now + 60000), "w-pill")
        r.rpush(self.key("active:w-pill"), pill(json.dumps(self.job("pp-held", "/ok.png"))),
                pill(self.task("upload", "pp-up")))
        q = self.job_json("pp-wait")
        self.assertEqual((q["state"], q["waiting"]), ("waiting", [{"kind": "poison",
                                                                   "position": 1}]), q)
        self.assertIn("\n  waiting      its poison pill (not run again: its failure is posted "
                      "back, then dead), number 1 from the front of 1 entries\n",
                      self.job_text("pp-wait"))
        for job_id in ("pp-held", "pp-up"):
            q = self.job_json(job_id)
            self.assertEqual((q["state"], [(h["worker"], h["kind"]) for h in q["held_by"]]),
                             ("posting back", [("w-pill", "poison")]), q)
        self.assertRegex(self.job_text("pp-held"), r"\n  worker +w-pill \(lease [56]\d\.\d s\): "
                                                   r"its poison pill \(not run again")
        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertEqual([(j["job_id"], j["kind"]) for j in s["queues"][0]["workers"][0]["jobs"]],
                         [("pp-held", "poison"), ("pp-up", "poison")])
        self.assertIn('jobs ["pp-held","pp-up"]\n', self.pixq_ok("stats"))

    def test_states_from_what_redis_holds(self):
        """Every state from what pixq finds, set up in Redis as workers leave it (none runs):
        an output's upload or a postback retry on a worker's list ("uploading", "posting back")
        or in the queue ("outputs parked", "postback retry", each shown as what it is: a
        postback retry was shown as "an output's upload"); outputs parked that only the record
        counts; a job on the list of a reaped worker (being given back: no lease, not alive); a
        job that started and is not within --scan ("started", with the note of what was not
        read); a retry delayed while the failed result of an earlier run is kept ("delayed":
        that result is not its outcome, and --wait waits); a retry already due (0 s left); an
        id that only begins the ids of entries there is not theirs."""
        now = int(time.time() * 1000)
        r = self.redis
        r.execute("ZADD", self.key("workers"), str(now + 60000), "w-live")
        r.lpush(self.key("active:w-live"), self.task("upload", "st-up"),
                self.task("postback", "st-pb"))
        r.execute("ZADD", self.key("reaped"), str(now + 60000), "w-gone")
        r.lpush(self.key("active:w-gone"), json.dumps(self.job("st-reaped", "/ok.png")))
        r.lpush(self.key("jobs"), self.task("upload", "st-upw"), self.task("postback", "st-pbw"))
        for job_id, fields in (("st-parked", ["pending", "1"]),
                               ("st-started", ["first_seen", str(now), "runs", "1"]),
                               ("st-again", ["first_seen", str(now), "runs", "3"])):
            r.execute("HSET", self.key("job:" + job_id), "submitted", str(now), *fields)
        r.execute("ZADD", self.key("delayed"), str(now + 600000),
                  json.dumps(self.job("st-again", "/ok.png")), str(now - 5000),
                  json.dumps(self.job("st-due", "/ok.png")))
        r.lpush(self.key("result:st-again"), json.dumps(
            {"job_id": "st-again", "results": {"images": [], "errors": ["E"]}}))

        def state(job_id, *args):
            q = self.job_json(job_id, *args)
            held = [(h["worker"], h["kind"], h["alive"]) for h in q.get("held_by", [])]
            return q["state"], held, [(w["kind"], w["position"]) for w in q.get("waiting", [])]

        self.assertEqual(state("st-up"), ("uploading", [("w-live", "upload", True)], []))
        self.assertRegex(self.job_text("st-up"), r"\n  worker +w-live \(lease [56]\d\.\d s\): "
                                                 r"an output's upload\n")
        self.assertEqual(state("st-pb"), ("posting back", [("w-live", "postback", True)], []))
        self.assertRegex(self.job_text("st-pb"), r"\n  worker +w-live \(lease [56]\d\.\d s\): "
                                                 r"its postback retry\n")
        self.assertEqual(state("st-upw"), ("outputs parked", [], [("upload", 1)]))
        self.assertIn("\n  waiting      an output's upload, number 1 from the front of 2 "
                      "entries\n", self.job_text("st-upw"))
        self.assertEqual(state("st-pbw"), ("postback retry", [], [("postback", 2)]))
        self.assertIn("\n  waiting      a postback retry, number 2 from the front of 2 entries\n",
                      self.job_text("st-pbw"))
        self.assertEqual(state("st-parked"), ("outputs parked", [], []))
        self.assertIn("\n  outputs      1 still to upload\n", self.job_text("st-parked"))
        q = self.job_json("st-reaped")
        self.assertEqual(q["state"], "running", q)
        self.assertEqual(q["held_by"], [{"worker": "w-gone", "kind": "job", "alive": False,
                                         "lease_ms_left": None}], q)
        self.assertIn("\n  worker       w-gone (reaped or stopped, being given back): the job\n",
                      self.job_text("st-reaped"))
        self.assertEqual(state("st-started"), ("started", [], []))
        self.assertNotIn("searched", self.job_text("st-started"))  # all was read
        self.assertRegex(self.pixq_ok("job", "st-started", "--scan", "1"),
                         r"^job st-started in queue default: started\n  submitted +\d{4}-"
                         r"[-\dT:.]+Z\n  first run +\d{4}-[-\dT:.]+Z, 1 run\n  \(searched the 1 "
                         r"waiting entries nearest the front of 2: --scan\)\n$")
        q = self.job_json("st-again")
        self.assertEqual((q["state"], q["outcome"], q["runs"]), ("delayed", "failed", 3), q)
        self.assertEqual(q["delayed"][0]["due_at_ms"], now + 600000, q)
        self.assertRegex(self.job_text("st-again"), r"\n  first run +\S+Z, 3 runs\n")
        r2 = self.run_pixq("job", "st-again", "--wait", "--timeout", "1")
        self.assertEqual((r2.returncode, r2.stderr),
                         (1, "pixq: job: job 'st-again' is still delayed after 1 s (--timeout)\n"))
        q = self.job_json("st-due")
        self.assertEqual((q["state"], q["delayed"][0]["due_in_ms"]), ("delayed", 0), q)
        self.assertEqual(q["delayed"][0]["due_at_ms"], now - 5000, q)
        self.assertIn(" (in 0.0 s): the job (a retry, or submitted with --delay)\n",
                      self.job_text("st-due"))
        self.assertNotIn("waiting", self.job_json("st-up"))  # st-upw's entry is not st-up's
        r2 = self.run_pixq("job", "st-")
        self.assertEqual(r2.returncode, 1, r2.stderr)
        self.assertIn("no trace of job 'st-'", r2.stderr)
        # the time is Redis's clock (the test's own: Redis runs here), to the millisecond
        t0 = int(time.time() * 1000)
        o = json.loads(self.pixq_ok("job", "st-up", "--json"))
        t1 = int(time.time() * 1000) + 1
        self.assertTrue(t0 <= o["time_ms"] <= t1, (t0, o["time_ms"], t1))

    def test_an_id_that_begins_with_a_dash(self):
        """A job_id may begin with '-' (job.c): after `--` it is the JOB_ID, as submit takes
        files after it (was: "unknown option '--'", status 2, and no way to look such a job
        up); before it, an option (status 2)."""
        self.push(self.job("-dash-1", "/ok.png"))
        o = json.loads(self.pixq_ok("job", "--json", "--", "-dash-1"))
        self.assertEqual((o["job_id"], [(q["state"], q["waiting"]) for q in o["queues"]]),
                         ("-dash-1", [("waiting", [{"kind": "job", "position": 1}])]), o)
        self.assertTrue(self.pixq_ok("job", "--", "-dash-1").startswith(
            "job -dash-1 in queue default: waiting\n"))
        r = self.run_pixq("job", "-dash-1")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unknown option '-dash-1'", r.stderr)

    def test_odd_states_from_what_redis_holds(self):
        """What the other tests do not leave in Redis: a worker whose lease ran out and that
        was not reaped yet (not alive, the lease seconds negative: "lease ran out"), its job
        still "running"; a result that is no JSON (kept as a string, "failed" with no error
        given); a batch delayed as one entry (the job's place in it); an output's upload
        delayed with no record that counts it ("outputs parked"); a job held by the 1,001st
        registered worker (past the first round trip of active lists)."""
        now = int(time.time() * 1000)
        r = self.redis
        r.execute("ZADD", self.key("workers"), str(now - 5000), "w-late")
        r.lpush(self.key("active:w-late"), json.dumps(self.job("od-late", "/ok.png")))
        r.lpush(self.key("result:od-text"), "no json")
        r.execute("ZADD", self.key("delayed"), str(now + 600000), json.dumps(
            [self.job("od-b1", "/ok.png"), self.job("od-b2", "/ok.png")]),
            str(now + 700000), self.task("upload", "od-up"))

        q = self.job_json("od-late")
        h = q["held_by"][0]
        self.assertEqual((q["state"], h["worker"], h["alive"]), ("running", "w-late", False), q)
        self.assertLessEqual(h["lease_ms_left"], -5000, h)
        m = re.search(r"\n  worker +w-late \(lease ran out (\d+\.\d) s\): the job\n",
                      self.job_text("od-late"))
        self.assertTrue(m and 5 <= float(m.group(1)) < 65, m)

        q = self.job_json("od-text")
        self.assertEqual((q["state"], q["result"]), ("failed", "no json"), q)
        self.assertIn("\n  result       failed: (no error given)\n", self.job_text("od-text"))

        q = self.job_json("od-b2")
        self.assertEqual((q["state"], q["delayed"]), ("delayed", [
            {"kind": "job", "due_at_ms": now + 600000, "due_in_ms": q["delayed"][0]["due_in_ms"],
             "batch": {"index": 2, "jobs": 2}}]), q)
        self.assertRegex(self.job_text("od-b2"), r"\n  due +\S+ \(in (59\d|600)\.\d s\): the "
                         r"job \(job 2 of a batch of 2, pushed as one entry\)\n")

        # a batch pushed cut short (no JSON) is dead without an id: not looked into
        r.lpush(self.key("dead"), json.dumps(
            {"job": json.dumps([self.job("od-cut", "/ok.png")])[:-1], "error": "invalid job: "
             "not JSON", "attempts": 1, "failed_at": now}))
        res = self.run_pixq("job", "od-cut")
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn("no trace of job 'od-cut'", res.stderr)

        q = self.job_json("od-up")
        self.assertEqual((q["state"], [d["kind"] for d in q["delayed"]]),
                         ("outputs parked", ["upload"]), q)

        # 1,000 workers' lists are read per round trip: jobs on the last list of the first
        # and on the list of the second
        workers = []
        for i in range(1001):
            workers += [str(now + 60000), "w-%04d" % i]
        r.execute("ZREM", self.key("workers"), "w-late")
        r.execute("ZADD", self.key("workers"), *workers)
        for job_id, worker in (("od-edge", "w-0999"), ("od-far", "w-1000")):
            r.lpush(self.key("active:" + worker), json.dumps(self.job(job_id, "/ok.png")))
            q = self.job_json(job_id)
            self.assertEqual((q["state"], [h["worker"] for h in q["held_by"]]),
                             ("running", [worker]), q)

    def test_redis_error_answers(self):
        """A key of the wrong type answers an error (WRONGTYPE): pixq job fails with it (status
        1), whichever of its reads met it (the pipelined record and result, the workers' set,
        an active list among others), rather than going on with what it read and saying "no
        trace" or what it found elsewhere. The other active lists read with the one of the
        wrong type were not freed (a leak that ASan and valgrind report)."""
        r = self.redis
        now = int(time.time() * 1000)
        self.push(self.job("re-1", "/ok.png"))
        r.execute("HSET", self.key("result:re-1"), "not", "a list")
        res = self.run_pixq("job", "re-1")
        self.assertEqual((res.returncode, res.stdout), (1, ""), res.stderr)
        self.assertRegex(res.stderr, r"^pixq: job: .*WRONGTYPE")
        r.delete(self.key("result:re-1"))
        r.execute("ZADD", self.key("workers"), str(now + 60000), "w-a", str(now + 60000), "w-b")
        r.lpush(self.key("active:w-a"), json.dumps(self.job("re-2", "/ok.png")))
        r.execute("SET", self.key("active:w-b"), "not a list")
        res = self.run_pixq("job", "re-2")
        self.assertEqual((res.returncode, res.stdout), (1, ""), res.stderr)
        self.assertRegex(res.stderr, r"^pixq: job: .*WRONGTYPE")
        r.delete(self.key("active:w-b"), self.key("workers"))
        r.execute("SET", self.key("reaped"), "not a sorted set")
        res = self.run_pixq("job", "re-1")
        self.assertEqual((res.returncode, res.stdout), (1, ""), res.stderr)
        self.assertRegex(res.stderr, r"^pixq: job: .*WRONGTYPE")

    def test_wait_ends_at_every_outcome(self):
        """--wait ends as soon as the job has its outcome, whatever it is: dead with no result
        (status 1, and the line says it is dead), succeeded with a postback retry still due
        (status 0); and the job must have it in every queue where it is found: succeeded in the
        first queue of PIXQ_QUEUE and waiting in the second is no outcome yet, and the line at
        --timeout says "waiting" (before, the state of the first queue: "still succeeded")."""
        now = int(time.time() * 1000)
        self.redis.lpush(self.key("dead"), json.dumps(
            {"job": json.dumps(self.job("wo-dead", "/ok.png")), "job_id": "wo-dead",
             "error": "E", "attempts": 3, "failed_at": now, "queue": "default"}))
        self.redis.execute("ZADD", self.key("delayed"), str(now + 600000),
                           self.task("postback", "wo-pb"))
        for job_id in ("wo-pb", "wo-two"):
            self.redis.lpush(self.key("result:" + job_id), json.dumps(
                {"job_id": job_id, "results": {"images": [], "errors": []}}))
        self.redis.lpush("pixq:{urgent}:jobs", json.dumps(self.job("wo-two", "/ok.png")))
        t0 = time.monotonic()
        r = self.run_pixq("job", "wo-dead", "--wait", "--timeout", "5")
        self.assertEqual((r.returncode, r.stderr),
                         (1, "pixq: job: job 'wo-dead' is dead (failed for good)\n"))
        self.assertTrue(r.stdout.startswith("job wo-dead in queue default: dead\n"), r.stdout)
        self.assertRegex(r.stdout, r"\n  dead +\S+Z, 3 attempts: E\n")
        r = self.run_pixq("job", "wo-pb", "--wait", "--timeout", "5")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertTrue(r.stdout.startswith("job wo-pb in queue default: postback retry\n"),
                        r.stdout)
        self.assertIn("\n  result       succeeded, 0 images\n", r.stdout)
        self.assertLess(time.monotonic() - t0, 5)
        both = {"PIXQ_QUEUE": "default, urgent"}
        r = self.run_pixq("job", "wo-two", "--wait", "--timeout", "1", env=both)
        self.assertEqual((r.returncode, r.stderr),
                         (1, "pixq: job: job 'wo-two' is still waiting after 1 s (--timeout)\n"))
        self.redis.delete("pixq:{urgent}:jobs")
        r = self.run_pixq("job", "wo-two", "--wait", "--timeout", "1", env=both)
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_wait_searches_less_and_less_often(self):
        """--wait searches again after 100 ms, then twice as long each time up to 1 s (or 4
        times as long as its last search took, when longer), and its last pause ends at
        --timeout: a job waiting for 5 s is searched at once, then 0.1, 0.3, 0.7, 1.5, 2.5...
        s later. Each pause is measured from the end of a search (its last LRANGE, as Redis's
        command counts show every 10 ms) to the start of the next (its ZSCAN of `delayed`): at
        least its step, at most the longer of its step and 4 times the search as seen here
        (longer than pixq's own), with a margin. Counting the searches instead (8 to 10) failed
        on a loaded machine, where slower searches make longer pauses, as they should."""
        self.push(self.job("slow-wait", "/ok.png"))
        self.redis.execute("CONFIG", "RESETSTAT")
        proc = self.start_cli("job", "slow-wait", "--wait", "--timeout", "5")
        starts, ends = self.search_times(proc)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("still waiting after 5 s", proc.stderr.read())
        steps = [0.1, 0.2, 0.4, 0.8]
        # the pause after each search but the last (cut at --timeout)
        checked = [(starts[k + 1] - ends[k], steps[k] if k < len(steps) else 1.0,
                    ends[k] - starts[k]) for k in range(len(starts) - 2)]
        self.assertGreaterEqual(len(checked), 4, (starts, ends))
        for pause, step, search in checked:
            self.assertGreaterEqual(pause, step - 0.05, checked)
            self.assertLessEqual(pause, max(step, 4 * search) + scaled(0.2), checked)

    def test_wait_pauses_at_least_four_times_a_search(self):
        """--wait pauses at least 4 times as long as its last search took, past 1 s if need be
        (a search of a long queue holds a fifth of a Redis connection at most): searching a
        queue of a million entries whole (--scan), from the end of each search (its last LRANGE
        of the queue) to the start of the next (its ZSCAN of `delayed`), as the test sees them
        in Redis's command counts, is 4 times the search's time at least (the last pause may
        end sooner, at --timeout), the first pause too. Pausing 100 ms doubling to 1 s alone
        starts searches sooner. A search is brought to about 0.35 s by a shorter queue (a
        sanitized build) or a longer one (up to 4 million entries: a fast machine), so that 4
        times it is past the 1 s the pauses double to, and the pauses after the second search
        tell the rule from doubling too (before, where a search took less than 0.25 s, only
        the first did); four searches or so fit in the 5 s."""
        self.push(self.job("long-wait", "/ok.png"))  # at the front, a million entries behind
        entries = ["e%d" % i for i in range(1000000)]
        for i in range(0, len(entries), 50000):
            self.redis.lpush(self.key("jobs"), *entries[i:i + 50000])
        t0 = time.monotonic()
        self.pixq_ok("job", "long-wait", "--scan", "4000001")
        search = time.monotonic() - t0
        want = min(int(1000001 * 0.35 / search), 4000001)
        if want < 1000001:
            self.redis.execute("LTRIM", self.key("jobs"), -want, -1)
        for i in range(1000000, want - 1, 50000):
            self.redis.lpush(self.key("jobs"), *["e%d" % k for k in range(i, min(i + 50000,
                                                                              want - 1))])
        self.redis.execute("CONFIG", "RESETSTAT")
        self.redis.execute("ZSCAN", "x", "0")
        self.redis.execute("LRANGE", "x", "0", "0")
        proc = self.start_cli("job", "long-wait", "--scan", "4000001", "--wait", "--timeout", "5")
        starts, ends = self.search_times(proc)
        self.assertIn("still waiting after 5 s", proc.stderr.read())
        self.assertEqual(len(starts), len(ends), (starts, ends))
        # the pause after each search but the last (cut at --timeout)
        checked = [(starts[k + 1] - ends[k], ends[k] - starts[k])
                   for k in range(len(starts) - 2)]
        self.assertTrue(checked, (starts, ends))
        for pause, search in checked:
            self.assertGreaterEqual(pause, 4 * search - 0.05, checked)

    def test_deep_in_long_lists(self):
        """Past the first page of the lists read: a job waiting at number 300 (pages of 256),
        a dead entry at number 40 from the newest (pages of 32), each of 10 retries among 20,000
        entries of `delayed` (ZSCAN's cursor followed to its end); and a dead list longer than
        --scan is noted when the job is found nowhere."""
        fill = lambda n, name: [json.dumps({"job_id": "%s-%d" % (name, i)})  # noqa: E731
                                for i in range(n)]
        now = int(time.time() * 1000)
        self.redis.lpush(self.key("dead"), json.dumps(
            {"job": "{}", "job_id": "deep-dead", "error": "E", "attempts": 1, "failed_at": now}),
            *fill(39, "newer"))
        self.assertEqual(self.job_json("deep-dead")["state"], "dead")
        r = self.run_pixq("job", "deep-none", "--scan", "39")
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertTrue(r.stderr.endswith(" s); searched the newest 39 of 40 dead entries "
                                          "(--scan)\n"), r.stderr)
        both = {"PIXQ_QUEUE": "urgent, default"}
        r = self.run_pixq("job", "deep-none", "--scan", "39", env=both)
        self.assertTrue(r.stderr.endswith(" s); searched the newest 39 of 40 dead entries in "
                                          "default (--scan)\n"), r.stderr)
        self.redis.execute("HSET", self.key("job:deep-rec"), "submitted", str(now))
        self.assertEqual(self.pixq_ok("job", "deep-rec", "--scan", "39").splitlines()[-1],
                         "  (searched the newest 39 of 40 dead entries: --scan)")
        self.redis.lpush(self.key("jobs"), *fill(299, "ahead"),
                         json.dumps(self.job("deep-1", "/ok.png")))
        self.assertEqual(self.job_json("deep-1")["waiting"], [{"kind": "job", "position": 300}])
        # the note names the first queue where a list was longer than --scan
        r = self.run_pixq("job", "deep-none", "--scan", "39", env=both)
        self.assertTrue(r.stderr.endswith(" s); searched the 39 waiting entries nearest the "
                                          "front of 300 in default (--scan)\n"), r.stderr)
        self.redis.lpush("pixq:{urgent}:jobs", *fill(45, "urgent"))
        r = self.run_pixq("job", "deep-none", "--scan", "39", env=both)
        self.assertTrue(r.stderr.endswith(" s); searched the 39 waiting entries nearest the "
                                          "front of 45 in urgent (--scan)\n"), r.stderr)
        members = fill(20000, "later") + [json.dumps({"job_id": "deep-late-%d" % i})
                                          for i in range(10)]
        args = []
        for m in members:
            args += [str(now + 600000), m]
        self.redis.execute("ZADD", self.key("delayed"), *args)
        for i in range(10):
            q = self.job_json("deep-late-%d" % i)
            self.assertEqual((q["state"], len(q["delayed"])), ("delayed", 1), q)


class BadArgumentsTest(unittest.TestCase):
    """Usage errors exit 2 with one line on stderr and nothing on stdout, whether or not Redis is
    there (they are found before connecting): no servers are started here."""

    def run_cli(self, args, input=None):
        env = clean_env()
        # nothing listens, and nothing can start to: the port stays bound (never listening) for
        # the test; a port from free_port() can be taken by a test running beside this one
        env["PIXQ_REDIS_URL"] = "redis://127.0.0.1:%d/0" % harness.refused_port(self)
        env["PIXQ_REDIS_TIMEOUT_MS"] = "500"
        return subprocess.run([CONFIG.pixq, *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=scaled(30),
                              input=input if input is not None else "")

    def test_bad_arguments_exit_2(self):
        for args in BAD_ARGUMENTS:
            with self.subTest(args=args):
                r = self.run_cli(args)
                self.assertEqual(r.returncode, 2, "pixq %s: %r" % (" ".join(args), r.stderr))
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^pixq: \S.*\n$")
                self.assertIn("usage", r.stderr)
                self.assertEqual(r.stdout, "", args)

    def test_dead_usage_errors_say_why(self):
        for args, reason in (
                ([], "list, retry or purge expected"),
                (["frob"], "unknown subcommand 'frob'"),
                (["retry"], "retry takes one argument: all or a JOB_ID"),
                (["retry", "a", "b"], "retry takes one argument: all or a JOB_ID"),
                (["purge", "a", "b"], "purge takes at most one argument: all, a JOB_ID or --no-id"),
                (["retry", "--"], "retry -- takes one JOB_ID after it"),
                (["purge", "--"], "purge -- takes one JOB_ID after it"),
                (["purge", "--", "a", "b"], "purge -- takes one JOB_ID after it"),
                (["list", "--limit", "0"], "--limit takes 1 to 1000000 entries"),
                (["list", "--limit", "1000001"], "--limit takes 1 to 1000000 entries"),
                (["list", "--limit"], "--limit takes 1 to 1000000 entries"),
                (["list", "--frob"], "unknown argument '--frob' for list")):
            with self.subTest(args=args):
                r = self.run_cli(["dead", *args])
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (2, "", "pixq: dead: %s (usage: pixq dead --help)\n" % reason))

    def test_limit_usage_errors_name_the_wrong_word(self):
        """`limit set` and `limit reset` name the word that is wrong and what it must be; set
        said "needs a valid bucket name, a RATE of 0.001 to 1000000 PUT/s and a BURST of 0 to
        1000000" whichever it was (h225's audit)."""
        bucket = ("bucket name", "3-63 characters of a-z 0-9 . -; A-Z and _ in a legacy "
                  "us-east-1 name")
        rate = ("RATE", "a number of 0.001 to 1000000 PUT/s")
        burst = ("BURST", "a whole number of 0 to 1000000")
        for args, (what, must), word in (
                (["set", "Bad_Bucket_", "1", "1"], bucket, "Bad_Bucket_"),
                (["set", "ab", "x", "x"], bucket, "ab"),
                (["set", "my-bucket", "abc", "1"], rate, "abc"),
                (["set", "my-bucket", "0", "1"], rate, "0"),
                (["set", "my-bucket", "1000001", "x"], rate, "1000001"),
                (["set", "my-bucket", "nan", "1"], rate, "nan"),
                (["set", "my-bucket", "5", "1.5"], burst, "1.5"),
                (["set", "my-bucket", "5", "-1"], burst, "-1"),
                (["set", "my-bucket", "5", "1000001"], burst, "1000001"),
                (["set", "a\x1b[2Jb", "1", "1"], bucket, "a?[2Jb"),  # shown, not obeyed
                (["reset", "ab"], bucket, "ab")):
            with self.subTest(args=args):
                r = self.run_cli(["limit", *args])
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (2, "", "pixq: limit: %s: %s '%s' is not valid (%s) (usage: pixq "
                                  "limit --help)\n" % (args[0], what, word, must)))
        for args, said in ((["set", "my-bucket", "5"], "set takes BUCKET RATE BURST"),
                           (["reset"], "reset takes one bucket name"),
                           (["reset", "a-b", "c-d"], "reset takes one bucket name")):
            with self.subTest(args=args):
                r = self.run_cli(["limit", *args])
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (2, "", "pixq: limit: %s (usage: pixq limit --help)\n" % said))

    def test_unknown_command_or_option_before_it(self):
        """A word pixq does not know where the command goes is an unknown command; a dash there
        is an option pixq does not know (it said "unknown command '--nosuch'")."""
        for args, said in ((["nosuch"], "unknown command 'nosuch'"),
                           (["--nosuch", "1", "stats"], "unknown option '--nosuch'"),
                           (["-x", "stats"], "unknown option '-x'")):
            with self.subTest(args=args):
                r = self.run_cli(args)
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (2, "", "pixq: %s (usage: pixq --help)\n" % said))

    def test_help_of_every_command_exits_0(self):
        for cmd, words in COMMANDS_HELP.items():
            for flag in ("--help", "-h"):
                with self.subTest(cmd=cmd, flag=flag):
                    r = self.run_cli([*cmd, flag])
                    self.assertEqual((r.returncode, r.stderr), (0, ""))
                    self.assertTrue(r.stdout.startswith("usage: pixq"), r.stdout)
                    for word in words:
                        self.assertIn(word, r.stdout)

    def test_redis_down_is_not_a_usage_error(self):
        for args in (["stats"], ["stats", "--prometheus"], ["queues"], ["dead", "list"],
                     ["limit", "show"], ["dead", "purge"], ["submit", "-"], ["job", "a-1"],
                     ["job", "a.b_c-d:e"], ["job", "-"], ["job", "--", "-x"],
                     # the widest arguments `pixq job` takes: an id of 127 bytes, with ':'
                     ["job", "a:" + "b" * 125, "--scan", "10000000", "--wait", "--timeout",
                      "86400"],
                     # the widest and the narrowest options `pixq submit` takes
                     ["submit", "-", "--timeout", "86400", "--delay", "2592000000",
                      "--progress-interval", "3600"],
                     ["submit", "-", "--timeout", "1", "--delay", "0", "--progress-interval",
                      "0.05"]):
            with self.subTest(args=args):
                r = self.run_cli(args, input=json.dumps(GOOD_JOB))
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^pixq: .*redis", r.stderr)
                self.assertTrue(r.stderr.startswith("pixq: %s: " % args[0]), r.stderr)
                self.assertEqual(r.stdout, "")

    def test_at_most_256_files(self):
        """256 FILEs are read (and here not found), a 257th is a usage error."""
        r = self.run_cli(["submit", *["none-%d.json" % i for i in range(256)]])
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertIn("pixq: submit: cannot open", r.stderr)
        r = self.run_cli(["submit", *["none-%d.json" % i for i in range(257)]])
        self.assertEqual((r.returncode, r.stdout), (2, ""), r.stderr)
        self.assertIn("at most 256 files", r.stderr)

    def test_unreachable_socket_path_named_as_it_is(self):
        """A unix socket that is not there is named by its path alone (it has no port)."""
        env = clean_env()
        path = "/nonexistent/pixq-redis.sock"
        env["PIXQ_REDIS_URL"] = "unix://%s" % path
        r = subprocess.run([CONFIG.pixq, "queues"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=scaled(30))
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(r.stderr, "pixq: queues: cannot connect to redis at %s: No such file or "
                         "directory\n" % path)

    def test_ipv6_literal_in_brackets(self):
        """redis://[::1]:PORT is an address to connect to, named as written; before, the port
        was read from the first colon and the URL refused as a usage error."""
        env = clean_env()
        # a port on ::1 held bound and not listening for the test (as harness.refused_port on
        # 127.0.0.1): nothing else can take it meanwhile. Without IPv6 nothing can listen on
        # ::1 at all, and any port does.
        held = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(held.close)
        try:
            held.bind(("::1", 0))
            port = held.getsockname()[1]
        except OSError:
            port = free_port()
        env["PIXQ_REDIS_URL"] = "redis://[::1]:%d/0" % port
        r = subprocess.run([CONFIG.pixq, "queues"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=scaled(30))
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertRegex(r.stderr, r"^pixq: queues: cannot connect to redis at \[::1\]:%d: "
                         % port)

    def test_redis_that_keeps_loading(self):
        """A Redis answering LOADING (reading its data set after a restart) is waited for by
        stats --watch, for PIXQ_REDIS_OUTAGE_MS; a one-off stats fails at once."""
        import socket
        import threading
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen(64)

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    while conn.recv(65536):
                        conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")
        threading.Thread(target=serve, daemon=True).start()
        env = clean_env()
        env["PIXQ_REDIS_URL"] = "redis://127.0.0.1:%d/0" % server.getsockname()[1]
        env["PIXQ_REDIS_OUTAGE_MS"] = "800"
        t0 = time.monotonic()
        r = subprocess.run([CONFIG.pixq, "stats", "--watch", "0.1"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertEqual(lines[0], "pixq: stats: redis unavailable (redis: LOADING Redis is "
                         "loading the dataset in memory); trying again for up to 0.8 s "
                         "(PIXQ_REDIS_OUTAGE_MS)")
        # 0.8 s and the last try's own time: more than 0.1 s of it on a busy machine
        self.assertRegex(lines[1], r"^pixq: stats: redis unavailable for (0\.[89]|1\.[0-9]) s "
                         r"\(PIXQ_REDIS_OUTAGE_MS\): redis: LOADING Redis is loading the "
                         r"dataset in memory$")
        r = subprocess.run([CONFIG.pixq, "stats"], env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(30))
        self.assertEqual(r.stderr, "pixq: stats: redis: LOADING Redis is loading the dataset in "
                         "memory\n")

    def test_cluster_node_is_refused(self):
        """pixq's client talks to one server and follows no MOVED or ASK: a Redis Cluster node is
        refused, as the worker refuses it, with the reason. Before, `queues` and `limit show`
        exited 0 with nothing listed (a node's SCAN sees its own keys only), and the others
        failed with whatever the node answered (CLUSTERDOWN, MOVED)."""
        port = harness.start_cluster_node(self)
        env = clean_env()
        env["PIXQ_REDIS_URL"] = "redis://127.0.0.1:%d/0" % port
        for args in (["stats"], ["stats", "--watch", "0.1"], ["queues"], ["dead", "list"],
                     ["dead", "retry", "all"], ["dead", "purge"], ["limit", "show"],
                     ["limit", "set", "my-bucket", "5", "1"], ["submit", "-"],
                     # README: "every `pixq` command": these connect on paths of their own
                     ["job", "some-job"], ["job", "some-job", "--wait", "--timeout", "1"],
                     ["dead", "retry", "some-job"], ["dead", "purge", "--no-id"],
                     ["limit", "reset", "my-bucket"], ["submit", "--delay", "1000", "-"]):
            with self.subTest(args=args):
                r = subprocess.run([CONFIG.pixq, *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=scaled(30),
                                   input=json.dumps(GOOD_JOB))
                self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^pixq: .*redis server refused: Redis Cluster is not "
                                 r"supported")

    def test_redis_that_does_not_answer(self):
        """A Redis that takes the connection and never answers (frozen, swapping, or stuck in a
        long script) fails each command within PIXQ_REDIS_TIMEOUT_MS or so, not sooner, and says
        so, not "Resource temporarily unavailable" (hiredis's word for the read timeout's EAGAIN).
        The 300 ms are waited whole: ms_to_tv() taking the milliseconds past a second as
        microseconds (an rq.c mutant the tests let live) gave up after 0.3 ms."""
        import socket
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections wait in the backlog, never read
        env = clean_env()
        env["PIXQ_REDIS_URL"] = "redis://127.0.0.1:%d/0" % silent.getsockname()[1]
        env["PIXQ_REDIS_TIMEOUT_MS"] = "300"
        for args in (["stats"], ["queues"], ["dead", "list"], ["dead", "retry", "all"],
                     ["dead", "purge"], ["limit", "show"], ["submit", "-"]):
            with self.subTest(args=args):
                t0 = time.monotonic()
                r = subprocess.run([CONFIG.pixq, *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=scaled(30),
                                   input=json.dumps(GOOD_JOB))
                self.assertLess(time.monotonic() - t0, scaled(5))
                self.assertGreaterEqual(time.monotonic() - t0, 0.3)
                self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^pixq: .*redis: no reply within 300 ms "
                                 r"\(PIXQ_REDIS_TIMEOUT_MS\)(; nothing was enqueued)?\n$")
        pw = dict(env, PIXQ_REDIS_URL="redis://:secret@127.0.0.1:%d/0" % silent.getsockname()[1])
        r = subprocess.run([CONFIG.pixq, "stats"], env=pw, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=scaled(30))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr, "pixq: stats: redis AUTH: no reply within 300 ms "
                         "(PIXQ_REDIS_TIMEOUT_MS)\n")


if __name__ == "__main__":
    harness.main()
