#!/usr/bin/python3
"""Operating a fleet on one machine (issues 7 and 8): `pixq-worker --processes N`, the metrics
endpoint (`--metrics-addr`) and JSON logs (`--log-format json`), with real workers against the
fault-injecting S3 stub (s3stub.py), which records every PUT.

* SupervisorTest: two worker processes share the jobs; a SIGKILLed child is replaced by a new
  one and its job is run again by the fleet (nothing lost); the metrics endpoint, parsed by the
  strict Prometheus text-format parser below, counts exactly the jobs, outputs and S3 answers
  the test caused; SIGTERM stops the supervisor and its children gracefully (exit 0, no child
  left, no worker left registered); SIGKILL to the supervisor leaves no child behind either.
* JsonLogTest: one worker process (metrics from its thread) logging JSON: every line parses,
  carries ts, level and event, and every line about a job carries its job_id.

    /usr/bin/python3 tests/integration/test_fleet.py --worker build/worker/pixq-worker \\
        --data tests/data [SupervisorTest] [-k json]
"""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import (CONFIG, LOOPBACK, PixqTestCase, http_request, reserved_port,  # noqa: E402
                     log_seconds, scaled)

TINY = "/tiny.png"
SHORT_LEASES = {"PIXQ_LEASE_MS": 3000, "PIXQ_HEARTBEAT_MS": 1000, "PIXQ_REAP_INTERVAL_MS": 1000}


def tiny_png():
    return (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# a strict parser of the Prometheus text exposition format 0.0.4

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(AssertionError):
    pass


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise ParseError("bad sample value %r" % text)
    return float(text)


def parse_labels(text, line):
    """`a="x",b="y\\"z"` (the inside of the braces) -> dict; escapes \\\\, \\" and \\n only."""
    labels, i = {}, 0
    while i < len(text):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise ParseError("bad label syntax in %r" % line)
        name, i, value = m.group(1), i + m.end(), []
        while True:
            if i >= len(text):
                raise ParseError("unterminated label value in %r" % line)
            c = text[i]
            if c == "\\":
                esc = text[i + 1:i + 2]
                if esc not in ("\\", '"', "n"):
                    raise ParseError("bad escape \\%s in %r" % (esc, line))
                value.append("\n" if esc == "n" else esc)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise ParseError("label %s twice in %r" % (name, line))
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                raise ParseError("expected ',' after a label in %r" % line)
            i += 1
    return labels


def parse_sample(line):
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?\d+)?\Z", line)
    if not m:
        raise ParseError("bad sample line %r" % line)
    labels = parse_labels(m.group(3), line) if m.group(2) else {}
    return m.group(1), labels, parse_value(m.group(4))


def family_of(name, families):
    """The family a sample name belongs to (a histogram's _bucket, _sum and _count)."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base and families.get(base, {}).get("type") in ("histogram", "summary"):
            return base
    raise ParseError("sample %s has no # TYPE before it" % name)


def parse_comment(line, families, order):
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        return  # an ordinary comment
    kind, name = parts[1], parts[2]
    if not METRIC_NAME.match(name):
        raise ParseError("bad metric name in %r" % line)
    fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
    if name not in order:
        order.append(name)
    if fam["samples"]:
        raise ParseError("%s after samples of %s" % (kind, name))
    if kind == "TYPE":
        if fam["type"] is not None or len(parts) != 4 or parts[3] not in TYPES:
            raise ParseError("bad or repeated TYPE line %r" % line)
        fam["type"] = parts[3]
    else:
        if fam["help"] is not None:
            raise ParseError("repeated HELP line %r" % line)
        fam["help"] = parts[3] if len(parts) == 4 else ""


def parse_exposition(text):
    """The families of a text exposition: {name: {"type", "help", "samples": [(name, labels,
    value)]}}. Raises ParseError on anything format 0.0.4 does not allow, and on what pixq
    promises beyond it: every family typed and documented, its samples together, no series
    twice, counters >= 0, histograms with cumulative buckets ending in +Inf == _count."""
    if not text.endswith("\n"):
        raise ParseError("the exposition must end with a newline")
    families, order, seen, current = {}, [], set(), None
    for line in text[:-1].split("\n"):
        if line == "" or line != line.strip():
            raise ParseError("empty line or stray whitespace: %r" % line)
        if line.startswith("#"):
            parse_comment(line, families, order)
            continue
        name, labels, value = parse_sample(line)
        fam_name = family_of(name, families)
        if current is not None and fam_name != current and families[fam_name]["samples"]:
            raise ParseError("samples of %s are not together" % fam_name)
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ParseError("series %r twice" % (key,))
        seen.add(key)
        families[fam_name]["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] is None or not fam["help"]:
            raise ParseError("%s lacks TYPE or HELP" % name)
        check_family(name, fam)
    return families


def check_family(name, fam):
    if fam["type"] == "counter":
        for _, labels, value in fam["samples"]:
            if value < 0 or math.isnan(value):
                raise ParseError("counter %s%r is %r" % (name, labels, value))
    if fam["type"] == "histogram":
        check_histogram(name, fam["samples"])


def check_histogram(name, samples):
    buckets = [(s[1], s[2]) for s in samples if s[0] == name + "_bucket"]
    counts = [s[2] for s in samples if s[0] == name + "_count"]
    sums = [s[2] for s in samples if s[0] == name + "_sum"]
    if len(counts) != 1 or len(sums) != 1 or not buckets:
        raise ParseError("histogram %s needs buckets, one _sum and one _count" % name)
    bounds = []
    for labels, _ in buckets:
        if set(labels) != {"le"}:
            raise ParseError("bucket of %s with labels %r" % (name, labels))
        bounds.append(parse_value(labels["le"]))
    if bounds != sorted(bounds) or len(set(bounds)) != len(bounds) or bounds[-1] != math.inf:
        raise ParseError("buckets of %s not ascending to +Inf: %r" % (name, bounds))
    values = [v for _, v in buckets]
    if values != sorted(values):
        raise ParseError("buckets of %s are not cumulative: %r" % (name, values))
    if values[-1] != counts[0]:
        raise ParseError("%s: +Inf bucket %r != _count %r" % (name, values[-1], counts[0]))
    if sums[0] < 0 or (counts[0] == 0 and sums[0] != 0):
        raise ParseError("%s_sum is %r" % (name, sums[0]))


def sample(families, name, **labels):
    """The value of one series (0 if a counter family lacks it: codes appear once seen)."""
    fam = families[family_of(name, families)]
    for n, lab, value in fam["samples"]:
        if n == name and lab == labels:
            return value
    if fam["type"] == "counter":
        return 0
    raise AssertionError("no series %s%r" % (name, labels))


class ParserSelfTest(harness.unittest.TestCase):
    """The parser refuses what it must (so that the endpoint's checks can fail)."""

    GOOD = ("# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\"} 3\n"
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 1.5\nh_count 2\n")

    def test_good(self):
        fams = parse_exposition(self.GOOD)
        self.assertEqual(sample(fams, "x_total", a="1", b='q"'), 3)
        self.assertEqual(sample(fams, "h_count"), 2)

    def test_bad(self):
        bad = [
            self.GOOD[:-1],  # no final newline
            self.GOOD.replace("h_count 2", "h_count 3"),  # +Inf != count
            self.GOOD.replace("le=\"0.5\"} 1", "le=\"0.5\"} 5"),  # not cumulative
            self.GOOD.replace("x_total{a=\"1\",", "x_total{a=1,"),  # label syntax
            self.GOOD.replace("# TYPE x_total counter\n", ""),  # no TYPE
            self.GOOD.replace("x_total{a", "x_total {a"),  # stray space
            self.GOOD + "x_total{a=\"1\",b=\"q\\\"\"} 4\n",  # series twice, not together
            self.GOOD.replace(" 3\n", " -3\n"),  # negative counter
            self.GOOD.replace("le=\"+Inf\"", "le=\"9\""),  # no +Inf bucket
            self.GOOD.replace("\\\"", "\\t"),  # bad escape
        ]
        for text in bad:
            with self.subTest(text=text):
                with self.assertRaises(ParseError):
                    parse_exposition(text)


# ---------------------------------------------------------------------------------------------
# the tests


class FleetCase(PixqTestCase):
    s3_server = "stub"
    start_worker_in_setup = False
    worker_env_extra = dict(SHORT_LEASES)

    def setUp(self):
        super().setUp()
        self.src.add(TINY, tiny_png())
        self.metrics_port = reserved_port(self)  # held for the test: a later worker binds it

    def job(self, job_id, path=TINY, stamp=True):
        job = self.make_job(self.src.url(path), key="fleet/%s.png" % job_id,
                            params={"width": 32}, job_id=job_id)
        if stamp:
            job["pixq_enqueued_at"] = int(time.time() * 1000)  # as `pixq submit` stamps it
        return job

    def metrics(self, path="/metrics", method="GET"):
        return http_request("http://%s:%d%s" % (LOOPBACK, self.metrics_port, path), method)

    def scrape(self):
        status, headers, body = self.metrics()
        self.assertEqual(status, 200, body[:300])
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
                        headers)
        return parse_exposition(body.decode("utf-8"))

    def check_http_edges(self):
        self.assertEqual(self.metrics("/other")[0], 404)
        self.assertEqual(self.metrics("/metricsx")[0], 404)
        self.assertEqual(self.metrics(method="POST")[0], 405)
        status, _, body = self.metrics(method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(self.metrics("/metrics?x=1")[0], 200)

    def wait_results(self, ids, timeout=30):
        self.wait_until(lambda: all(self.redis.exists(self.key("result:" + i)) for i in ids),
                        timeout, "results of %d jobs" % len(ids))


def listening_socket(port):
    """The "socket:[inode]" of the TCP socket listening on 127.0.0.1:`port`, from /proc/net/tcp."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local == "0100007F:%04X" % port:
                return "socket:[%s]" % inode
    return None


def open_files(pid):
    """What the descriptors of process `pid` refer to."""
    fds = "/proc/%d/fd" % pid
    out = set()
    for fd in os.listdir(fds):
        try:
            out.add(os.readlink(os.path.join(fds, fd)))
        except FileNotFoundError:  # closed meanwhile
            pass
    return out


def gone(pid):
    """Whether no process `pid` exists (a zombie still counts as there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class SupervisorTest(FleetCase):

    def start_fleet(self, **env):
        prog = self.start_worker("--processes", "2", "--metrics-addr",
                                 "127.0.0.1:%d" % self.metrics_port, **env)
        self.wait_until(lambda: len(prog.log_events("worker_start")) == 2, 20,
                        "two worker processes")
        return prog

    def child_pids(self, prog):
        return {int(e["child_pid"]) for e in prog.log_events("child_start")}

    def test_processes_restart_metrics_and_stop(self):
        t_start = time.time()
        prog = self.start_fleet()
        first = self.child_pids(prog)
        self.assertEqual(len(first), 2)
        starts = prog.log_events("worker_start")
        self.assertEqual({int(e["pid"]) for e in starts}, first)  # each child its own worker id
        self.assertEqual(len({e["worker"] for e in starts}), 2)
        # the supervisor serves the metrics endpoint; each child closed its listening socket (a
        # child holding it kept the port bound after the supervisor was gone)
        listener = listening_socket(self.metrics_port)
        self.assertIn(listener, open_files(prog.pid))
        for pid in first:
            self.assertNotIn(listener, open_files(pid), "child %d" % pid)

        # both children take jobs: each source answer takes 0.3 s
        self.src.delay[TINY] = 0.3
        self.s3.fail(self.buckets[0], 500, "InternalError", count=1)  # one PUT retried
        batch = ["fleet-%d" % i for i in range(8)]
        for i, job_id in enumerate(batch):
            self.push_job(self.job(job_id, stamp=i % 4 != 0))  # fleet-0 and fleet-4 unstamped
        self.wait_results(batch)
        by_pid = {}
        for e in prog.log_events("job_start"):
            by_pid.setdefault(int(e["pid"]), set()).add(e["job_id"])
        self.assertEqual(set(by_pid), first, "job_start lines by pid: %r" % by_pid)

        # a child killed in the middle of a job: a new one takes its place, nothing is lost
        self.src.stall("/slow.png")
        self.src.add("/slow.png", tiny_png())
        self.push_job(self.job("fleet-slow", path="/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the slow fetch")
        victim = int(prog.log_events("job_start")[-1]["pid"])
        self.assertEqual(prog.log_events("job_start")[-1]["job_id"], "fleet-slow")
        os.kill(victim, signal.SIGKILL)
        exits = self.wait_until(
            lambda: [e for e in prog.log_events("child_exit") if int(e["child_pid"]) == victim],
            10, "child_exit of the killed child")
        self.assertEqual(exits[0].get("signal"), "9", exits)
        self.wait_until(lambda: len(self.child_pids(prog)) == 3, 10, "a new child")
        replacement = (self.child_pids(prog) - first).pop()
        self.wait_until(lambda: any(int(e["pid"]) == replacement
                                    for e in prog.log_events("worker_start")), 20,
                        "the new child's worker to start")
        self.src.release()
        later = ["fleet-late-%d" % i for i in range(4)]
        for job_id in later:
            self.push_job(self.job(job_id))
        every = batch + ["fleet-slow"] + later
        self.wait_results(every, timeout=40)  # the killed child's job: lease (3 s) + reap
        for job_id in every:
            result = json.loads(self.redis.lindex(self.key("result:" + job_id), 0))["results"]
            self.assertNotIn("errors", result, result)
            self.assertEqual(self.redis.llen(self.key("result:" + job_id)), 1)
            self.wait_for_postback(timeout=10, job_id=job_id)
            self.assertIsNotNone(self.s3.object(self.buckets[0], "fleet/%s.png" % job_id))
        self.assert_queue_drained()

        # a job's outcome is counted once finish.lua has answered, after its result is stored
        def counted():
            fams = self.scrape()
            return fams if sample(fams, "pixq_jobs_total", outcome="succeeded") >= len(every) \
                else None
        fams = self.wait_until(counted, 10, "every job counted in pixq_jobs_total")
        # queue waits: every stamped job but fleet-slow, whose first run was killed before its
        # run number came back from Redis (it is observed then: the job's first run only)
        self.check_counts(prog, fams, len(every), stamped=len(every) - 3, t_start=t_start)
        self.check_http_edges()

        # SIGTERM: every child stops gracefully, the supervisor exits 0, no child is left
        pids = self.child_pids(prog)
        status, killed = prog.terminate(scaled(30))
        self.programs.remove(prog)
        self.assertEqual((status, killed), (0, False))
        for pid in pids:
            self.assertTrue(gone(pid), "child %d is still there" % pid)
        self.assertEqual(self.redis.zrange(self.key("workers")), [])
        ends = [e for e in prog.log_events("child_exit") if e.get("restart_in_ms") == "-1"]
        self.assertEqual({e.get("status") for e in ends}, {"0"}, ends)
        self.assertEqual(len(ends), 2)

    def check_counts(self, prog, fams, jobs, stamped, t_start):
        puts = self.s3.records(method="PUT")
        ok_puts = [r for r in puts if r.status == 200]
        self.assertEqual(len(ok_puts), jobs)
        self.assertEqual(len(puts), jobs + 1)
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="succeeded"), jobs)
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="failed"), 0)
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="parked"), 1)
        self.assertEqual(sample(fams, "pixq_outputs_total", outcome="uploaded"), jobs)
        self.assertEqual(sample(fams, "pixq_outputs_total", outcome="parked"), 1)
        self.assertEqual(sample(fams, "pixq_outputs_total", outcome="failed"), 0)
        self.assertEqual(sample(fams, "pixq_postbacks_total", outcome="delivered"), jobs)
        self.assertEqual(sample(fams, "pixq_postbacks_total", outcome="given_up"), 0)
        s3 = {s[1]["code"]: s[2] for s in fams["pixq_s3_responses_total"]["samples"]
              if s[1]["method"] == "PUT"}
        self.assertEqual(s3, {"200": len(ok_puts), "500": 1})
        self.assertEqual(sample(fams, "pixq_upload_seconds_count"), len(puts))
        processed = len(prog.log_events("processed"))
        self.assertEqual(processed, jobs)
        self.assertEqual(sample(fams, "pixq_processing_seconds_count"), processed)
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_count"), stamped)
        self.assertEqual(sample(fams, "pixq_worker_processes"), 2)
        self.assertEqual(sample(fams, "pixq_worker_restarts_total"), 1)
        started = sample(fams, "pixq_process_start_time_seconds")
        self.assertTrue(t_start - 1 <= started <= time.time(), (t_start, started))
        for fam in ("pixq_jobs_total", "pixq_outputs_total", "pixq_postbacks_total",
                    "pixq_s3_responses_total",
                    "pixq_throttle_waits_total", "pixq_throttle_wait_seconds_total",
                    "pixq_processing_seconds", "pixq_upload_seconds", "pixq_queue_wait_seconds"):
            self.assertIn(fam, fams)

    def test_restarts_back_off_when_a_child_keeps_dying(self):
        # PIXQ_RESTART_BACKOFF_MIN_MS 400 (default 1000), doubling
        prog = self.start_fleet(PIXQ_RESTART_BACKOFF_MIN_MS="400")

        def slot0():
            return [e for e in prog.log_events("child_start") if e["slot"] == "0"]

        delays, waits = [], []
        for n in range(3):
            victim = int(slot0()[-1]["child_pid"])
            os.kill(victim, signal.SIGKILL)
            ev = self.wait_until(lambda: [e for e in prog.log_events("child_exit")
                                          if int(e["child_pid"]) == victim], 10, "its exit")[0]
            delays.append(int(ev["restart_in_ms"]))
            self.wait_until(lambda: len(slot0()) == n + 2, 10, "slot 0 to start again")
            # from the exit the supervisor logged to the start it logged, not as this test saw
            # them: a late look at the exit (a loaded machine) shortened the wait measured
            waits.append(log_seconds(slot0()[-1]) - log_seconds(ev))
        self.assertEqual(delays, [0, 400, 800])  # each died young: the first restart at once
        self.assertLess(waits[0], 0.4, waits)
        self.assertGreaterEqual(waits[1], 0.35, waits)
        self.assertGreaterEqual(waits[2], 0.75, waits)
        self.assertEqual(len(prog.log_events("child_start")), 5)  # slot 1 was left alone

    def test_lease_metrics(self):
        """pixq_lease_renewals_total counts each heartbeat, pixq_lease_age_seconds is the age of
        the lease that held longest ago among the live children: it grows while one is stopped
        (SIGSTOP), the fleet reaps that one, and at SIGCONT its heartbeat finds its record gone
        (lost) and joins again; a child that died no longer counts while its restart waits."""
        lease_s = SHORT_LEASES["PIXQ_LEASE_MS"] / 1000
        reap_s = SHORT_LEASES["PIXQ_REAP_INTERVAL_MS"] / 1000
        # a slot's third quick death waits 6 s for its restart (two, with the default doubling)
        prog = self.start_fleet(PIXQ_RESTART_BACKOFF_MIN_MS="6000")

        def pid_of(slot):
            return int([e for e in prog.log_events("child_start")
                        if e["slot"] == str(slot)][-1]["child_pid"])

        def scraped(cond):
            fams = self.scrape()
            return fams if cond(sample(fams, "pixq_lease_renewals_total", outcome="renewed"),
                                sample(fams, "pixq_lease_renewals_total", outcome="lost"),
                                sample(fams, "pixq_lease_age_seconds")) else None

        fams = self.wait_until(lambda: scraped(lambda renewed, lost, age: renewed >= 2), 10,
                               "a heartbeat of each child")
        self.assertLess(sample(fams, "pixq_lease_age_seconds"), 2.0)
        self.assertEqual(sample(fams, "pixq_lease_renewals_total", outcome="lost"), 0)
        self.assertEqual(sample(fams, "pixq_lease_renewals_total", outcome="failed"), 0)

        stopped = pid_of(1)
        os.kill(stopped, signal.SIGSTOP)
        try:
            # past the lease and a reap pass of the other child (1.1 times the interval at most)
            self.wait_until(lambda: scraped(lambda renewed, lost, age:
                                            age >= lease_s + 1.1 * reap_s + 0.5),
                            scaled(15), "the stopped child's lease to age")
        finally:
            os.kill(stopped, signal.SIGCONT)
        self.wait_until(lambda: prog.log_events("worker_reaped"), 10, "the stopped child reaped")
        fams = self.wait_until(lambda: scraped(lambda renewed, lost, age: lost >= 1 and age < 2),
                               10, "its heartbeat to find its record gone and join again")
        self.assertEqual(sample(fams, "pixq_lease_renewals_total", outcome="lost"), 1)

        for n in range(3):  # slot 0 dies young three times: its third restart waits 6 s
            victim = pid_of(0)
            os.kill(victim, signal.SIGKILL)
            self.wait_until(lambda: [e for e in prog.log_events("child_exit")
                                     if int(e["child_pid"]) == victim], 10, "its exit")
            if n < 2:
                self.wait_until(lambda: pid_of(0) != victim, 10, "slot 0 to start again")
                self.wait_until(lambda: len(prog.log_events("worker_start")) == 3 + n, 10,
                                "it to register")
        time.sleep(4)  # slot 0's last renewal 4 to 5 s old, had it been left there
        self.assertEqual(len(prog.log_events("worker_start")), 4)  # still waiting
        self.assertLess(sample(self.scrape(), "pixq_lease_age_seconds"), 2.0)

    def test_cpu_affinity(self):
        """PIXQ_CPU_AFFINITY=1: the child of slot i runs only on the i-th CPU the worker may
        use (round again past the last), so does the child that replaces it, and they work;
        the supervisor is not pinned, nor is any child by default."""
        allowed = sorted(os.sched_getaffinity(0))  # what the worker inherits
        prog = self.start_worker("--processes", "3", PIXQ_CPU_AFFINITY="1")
        self.wait_until(lambda: len(prog.log_events("worker_start")) == 3, 20,
                        "three worker processes")

        def by_slot():
            return {e["slot"]: (int(e["child_pid"]), int(e["cpu"]))
                    for e in prog.log_events("child_start")}

        def pinned():  # what each child logged once it ran on its CPU: {pid: cpu}
            return {int(e["pid"]): int(e["cpu"]) for e in prog.log_events("cpu_affinity")}

        slots = by_slot()
        self.assertEqual(sorted(slots), ["0", "1", "2"])
        for slot, (pid, cpu) in slots.items():
            self.assertEqual(cpu, allowed[int(slot) % len(allowed)], slots)
            self.assertEqual(os.sched_getaffinity(pid), {cpu}, "slot %s" % slot)
        self.assertEqual(pinned(), dict(slots.values()))
        self.assertEqual(prog.log_events("cpu_affinity_failed"), [])
        self.assertEqual(os.sched_getaffinity(prog.pid), set(allowed))

        victim, cpu1 = slots["1"]
        os.kill(victim, signal.SIGKILL)
        self.wait_until(lambda: by_slot()["1"][0] != victim, 10, "slot 1 to start again")
        pid, cpu = by_slot()["1"]
        self.wait_until(lambda: any(int(e["pid"]) == pid for e in prog.log_events("worker_start")),
                        20, "the new child's worker to start")
        self.assertEqual((cpu, os.sched_getaffinity(pid), pinned().get(pid)),
                         (cpu1, {cpu1}, cpu1))

        ids = ["pinned-%d" % i for i in range(6)]
        for job_id in ids:
            self.push_job(self.job(job_id))
        self.wait_results(ids)
        for job_id in ids:
            result = json.loads(self.redis.lindex(self.key("result:" + job_id), 0))["results"]
            self.assertNotIn("errors", result, result)

        plain = self.start_worker("--processes", "2")
        self.wait_until(lambda: len(plain.log_events("worker_start")) == 2, 20,
                        "two unpinned worker processes")
        for e in plain.log_events("child_start"):
            self.assertNotIn("cpu", e)
            self.assertEqual(os.sched_getaffinity(int(e["child_pid"])), set(allowed))
        self.assertEqual(plain.log_events("cpu_affinity"), [])

    def test_cpu_affinity_single_process(self):
        """PIXQ_CPU_AFFINITY=1 without --processes: the worker runs on the first CPU it may."""
        allowed = sorted(os.sched_getaffinity(0))
        prog = self.start_worker(PIXQ_CPU_AFFINITY="1")
        self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker")
        self.assertEqual([e["cpu"] for e in prog.log_events("cpu_affinity")], [str(allowed[0])])
        self.assertEqual(os.sched_getaffinity(prog.pid), {allowed[0]})
        self.push_job(self.job("pinned-single"))
        self.wait_results(["pinned-single"])

    def test_sighup_stops_the_fleet_gracefully(self):
        self.check_fleet_stop(signal.SIGHUP)

    def test_sigquit_stops_the_fleet_gracefully(self):
        self.check_fleet_stop(signal.SIGQUIT)

    def test_redis_connections_per_process(self):
        """README (Scaling out): Redis needs one or two connections per worker process, to size
        its maxclients; the supervisor itself holds none. After jobs ran on both processes."""
        prog = self.start_fleet()
        ids = ["conn-%d" % i for i in range(6)]
        for job_id in ids:
            self.push_job(self.job(job_id))
        self.wait_results(ids)
        own = self.redis.execute("CLIENT", "ID")
        clients = [line for line in self.redis.execute("CLIENT", "LIST").splitlines()
                   if not line.startswith("id=%d " % own)]
        sys.stderr.write("figures: redis clients of 2 processes=%d\n" % len(clients))
        self.assertTrue(2 <= len(clients) <= 4, clients)
        self.assertEqual(len(prog.log_events("worker_start")), 2)

    def test_sigint_stops_the_fleet_gracefully(self):
        self.check_fleet_stop(signal.SIGINT)

    def test_ctrl_c_to_every_process_stops_the_fleet_gracefully(self):
        """A terminal's Ctrl-C sends SIGINT to the supervisor and each worker alike, and the
        supervisor passes it on (SIGTERM) as well: each worker still stops once, gracefully."""
        prog = self.start_fleet()
        pids = self.child_pids(prog)
        for pid in pids:
            os.kill(pid, signal.SIGINT)
        self.assertEqual(self.kill_worker(prog, signal.SIGINT), 0)
        for pid in pids:
            self.assertTrue(gone(pid), "child %d is still there" % pid)
        self.assertEqual(self.redis.zrange(self.key("workers")), [])
        ends = [e for e in prog.log_events("child_exit") if e.get("restart_in_ms") == "-1"]
        self.assertEqual([e.get("status") for e in ends], ["0", "0"], ends)
        self.assertEqual(len(prog.log_events("worker_stopping")), 2)
        self.assertFalse(prog.log_events("children_killed"))

    def check_fleet_stop(self, sig):
        prog = self.start_fleet()
        pids = self.child_pids(prog)
        self.assertEqual(self.kill_worker(prog, sig), 0)
        for pid in pids:
            self.assertTrue(gone(pid), "child %d is still there" % pid)
        self.assertEqual(self.redis.zrange(self.key("workers")), [])
        ends = [e for e in prog.log_events("child_exit") if e.get("restart_in_ms") == "-1"]
        self.assertEqual([e.get("status") for e in ends], ["0", "0"], ends)

    def test_every_line_carries_the_pid_of_its_process(self):
        """README (Worker processes): with N > 1 every log line carries the pid of the process
        that wrote it, the supervisor's or a worker's, from the first: the unknown_setting
        warning, logged before the others, used to carry none."""
        prog = self.start_fleet(PIXQ_NO_SUCH_SETTING="1")
        ids = ["pid-%d" % i for i in range(4)]
        for job_id in ids:
            self.push_job(self.job(job_id))
        self.wait_results(ids)
        pids = self.child_pids(prog)
        self.assertEqual(self.kill_worker(prog, signal.SIGTERM), 0)
        events = prog.log_events()
        self.assertEqual([e["name"] for e in events if e["event"] == "unknown_setting"],
                         ["PIXQ_NO_SUCH_SETTING"])
        for e in events:
            self.assertIn(int(e.get("pid", "0")), pids | {prog.pid}, e)
        self.assertEqual({int(e["pid"]) for e in events}, pids | {prog.pid})

    def test_supervisor_killed_leaves_no_child(self):
        prog = self.start_fleet()
        pids = self.child_pids(prog)
        self.kill_worker(prog, signal.SIGKILL)
        self.wait_until(lambda: all(gone(p) for p in pids), 15, "the children to exit")
        # they stopped gracefully: each unregistered its worker
        self.assertEqual(self.redis.zrange(self.key("workers")), [])
        self.assertEqual(len(prog.log_events("worker_unregistered")), 2)


# the events that are not about one job; every other line must carry a job_id
NOT_ABOUT_A_JOB = {
    "config", "image_guard", "magick_limit_capped", "metrics_listening", "worker_start", "worker_stop",
    "worker_unregistered", "worker_reaped", "lease_lost", "worker_reregistered",
    "shutdown_deadline", "promoted", "dead_trimmed",
    "redis_error", "redis_script_load", "job_unparseable", "job_stranded", "batch_split",
    "batch_split_failed", "adopt_failed",
    "malloc_settings_refused",  # start-up: an allocator (ASan's) that ignores mallopt
    "cpu_affinity", "cpu_affinity_failed",  # start-up: PIXQ_CPU_AFFINITY
    "magick_tmpdir", "magick_tmpdir_failed", "magick_tmpdir_unusable",  # start-up: ImageMagick's temporary directory
    "unknown_setting", "start_refused",  # start-up: the environment, Redis refusing the login
    "postback_retry_past_result_ttl",  # start-up: PIXQ_RESULT_TTL_S shorter than the retries
    "shutdown_deadline_postback",  # a stop waiting for a postback on its way
    "worker_stopping",  # the signal seen: job=running or none
    "s3_credentials", "s3_credentials_missing",  # start-up: where the S3 keys come from
    "s3_credentials_reloaded", "s3_credentials_refused",  # the process's keys, not a job's
    "s3_credentials_retry",
    "redis",  # a Redis command's timing: with the job's id when a job's run sent it
}


class MetricsLimitsTest(FleetCase):

    def test_configured_limits(self):
        """PIXQ_METRICS_MAX_REQUEST_BYTES, _TIMEOUT_MS and _MAX_CONNECTIONS are honoured."""
        prog = self.start_worker("--metrics-addr", "127.0.0.1:%d" % self.metrics_port,
                                 PIXQ_METRICS_MAX_REQUEST_BYTES="512",
                                 PIXQ_METRICS_TIMEOUT_MS="600",
                                 PIXQ_METRICS_MAX_CONNECTIONS="2")
        self.wait_until(lambda: prog.log_events("metrics_listening"), 20, "the metrics server")

        def raw(request):
            with socket.create_connection((LOOPBACK, self.metrics_port), timeout=5) as s:
                s.sendall(request)
                return s.recv(4096)

        big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 600 + b"\r\n\r\n"
        self.assertTrue(raw(big).startswith(b"HTTP/1.1 431 "))
        small = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 300 + b"\r\n\r\n"
        self.assertTrue(raw(small).startswith(b"HTTP/1.1 200 "))
        # two idle connections fill the slots; a third client is still served (the oldest idle
        # one is closed for it), and an idle one is dropped after 600 ms
        idle = [socket.create_connection((LOOPBACK, self.metrics_port), timeout=5)
                for _ in range(2)]
        try:
            time.sleep(0.1)
            self.assertEqual(self.metrics()[0], 200)
            # the oldest was closed for it, before its answer: not 600 ms after it came, as a
            # server of three slots (a main.c mutant the test let live) closed it
            idle[0].settimeout(0.3)
            self.assertEqual(idle[0].recv(16), b"")
            t0 = time.monotonic()
            self.assertEqual(idle[1].recv(16), b"")
            self.assertLess(time.monotonic() - t0, 3.0)
        finally:
            for s in idle:
                s.close()


    def test_answers_while_the_job_is_stuck(self):
        """README (Containers and Kubernetes): the liveness probe's /metrics is served from a
        thread of its own, so a process whose job is slow still answers it (the probe must not
        restart it). One process, as the Deployment runs it; its job's download is held by the
        source server while /metrics is scraped, then released: the job still finishes."""
        prog = self.start_worker("--metrics-addr", "127.0.0.1:%d" % self.metrics_port,
                                 PIXQ_PROCESSES="1")
        self.wait_until(lambda: prog.log_events("metrics_listening"), 20, "the metrics server")
        self.src.add("/held.png", tiny_png())
        self.src.stall("/held.png")
        self.push_job(self.job("held", path="/held.png"))
        self.wait_until(lambda: self.src.requests("/held.png") >= 1, 20, "the job's download")
        for _ in range(3):
            fams = self.scrape()
            self.assertEqual(sample(fams, "pixq_worker_processes"), 1)
        self.assertFalse(self.redis.exists(self.key("result:held")), "the job is still held")
        self.src.release()
        self.wait_results(["held"])
        self.assertEqual(sample(self.scrape(), "pixq_jobs_total", outcome="succeeded"), 1)

class MagickLimitTest(FleetCase):

    def test_a_limit_above_policy_xml_is_logged(self):
        """ImageMagick's API can only lower policy.xml's limits (Debian's: memory 256 MiB): a
        higher setting took no effect, silently."""
        prog = self.start_worker(PIXQ_MAGICK_MEMORY_MB="2048")
        self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker to start")
        capped = prog.log_events("magick_limit_capped")
        self.assertEqual([(e["setting"], e["requested"], e["effective"]) for e in capped],
                         [("PIXQ_MAGICK_MEMORY_MB", "2048", "256")])
        guard = prog.log_events("image_guard")[0]
        self.assertEqual(guard["memory_mb"], "256")

    def test_lower_limits_take_effect(self):
        """README: PIXQ_MAGICK_MEMORY_MB, _MAP_MB and _DISK_MB are ImageMagick's limits, which
        can only lower policy.xml's (Debian's: 256, 512 and 1024 MiB). Lower ones are what
        ImageMagick then allows (image_guard reads them back from it), a higher map limit is
        capped and said; nothing checked the map and disk settings before."""
        prog = self.start_worker(PIXQ_MAGICK_MEMORY_MB="64", PIXQ_MAGICK_MAP_MB="1024",
                                 PIXQ_MAGICK_DISK_MB="300")
        self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker to start")
        guard = prog.log_events("image_guard")[0]
        self.assertEqual((guard["memory_mb"], guard["map_mb"], guard["disk_mb"]),
                         ("64", "512", "300"))
        capped = prog.log_events("magick_limit_capped")
        self.assertEqual([(e["setting"], e["requested"], e["effective"]) for e in capped],
                         [("PIXQ_MAGICK_MAP_MB", "1024", "512")])


    def test_an_image_guard_refused_ends_the_fleet_with_status_2(self):
        """The worker refuses to run without its image guard (here: a policy.xml with a time
        limit). That is the machine's configuration, as a bad setting is: status 2, which the
        systemd unit does not restart; under --processes the supervisor stops and exits 2 too.
        Before, a single worker exited 1 and a supervisor restarted its children forever, its
        unit "active" with no worker running."""
        policy = self.tmp / "policy"
        policy.mkdir()
        (policy / "policy.xml").write_text(
            '<policymap><policy domain="resource" name="time" value="100"/></policymap>\n')
        for args in ((), ("--processes", "2")):
            prog = self.start_worker(*args, MAGICK_CONFIGURE_PATH=str(policy))
            prog.proc.wait(scaled(20))
            self.programs.remove(prog)
            self.assertEqual(prog.proc.returncode, 2, args)
            failed = prog.log_events("image_guard_failed")
            self.assertTrue(failed and "sets a time limit of 100 s" in failed[0]["error"],
                            failed)
            self.assertEqual(prog.log_events("worker_start"), [])
        self.assertTrue(prog.log_events("child_config_error"))
        self.assertEqual(prog.log_events("supervisor_stop")[0]["killed"], "0")

class VersionTest(FleetCase):
    """Which pixq runs: `--version` of both programs, the worker_start line, and
    pixq_build_info, all the project's version and the revision it was built from."""

    def expected(self):
        """(meson's project version, the revision of the checkout built, without -dirty)."""
        build = Path(CONFIG.worker).resolve().parents[1]
        info = subprocess.run(["meson", "introspect", "--projectinfo", str(build)],
                              stdout=subprocess.PIPE, text=True, timeout=60)
        head = subprocess.run(["git", "-C", str(harness.REPO_ROOT), "rev-parse", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return json.loads(info.stdout)["version"], (head.stdout.strip() or None)

    def check_revision(self, revision, head):
        if head is None:  # not built from a git checkout
            self.assertEqual(revision, "unknown")
        else:  # git describe --always --dirty: HEAD's abbreviated hash, maybe -dirty
            self.assertRegex(revision, r"^[0-9a-f]{12}(-dirty)?$")
            self.assertTrue(head.startswith(revision.split("-")[0]), (revision, head))

    def test_version_everywhere(self):
        version, head = self.expected()
        # without any configuration, and with a broken one: --version needs none
        for env in ({}, {"PIXQ_MAX_PIXELS": "many"}):
            w = subprocess.run([CONFIG.worker, "--version"], env=dict(os.environ, **env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=scaled(20))
            self.assertEqual((w.returncode, w.stderr), (0, ""))
            m = re.fullmatch(r"pixq-worker (\S+) \(revision (\S+); ImageMagick "
                             r"\d+\.\d+\.\d+-\d+ Q\d+\)\n", w.stdout)
            self.assertIsNotNone(m, w.stdout)
            self.assertEqual(m.group(1), version)
            revision = m.group(2)
            self.check_revision(revision, head)
            c = subprocess.run([CONFIG.pixq, "--version"], env=dict(os.environ, **env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=scaled(20))
            self.assertEqual((c.returncode, c.stdout, c.stderr),
                             (0, "pixq %s (revision %s)\n" % (version, revision), ""))
        prog = self.start_worker("--metrics-addr", "127.0.0.1:%d" % self.metrics_port)
        start = self.wait_until(lambda: prog.log_events("worker_start"), 20, "worker_start")[0]
        self.assertEqual((start["version"], start["revision"]), (version, revision))
        fams = self.scrape()
        self.assertEqual(fams["pixq_build_info"]["type"], "gauge")
        self.assertEqual(fams["pixq_build_info"]["samples"],
                         [("pixq_build_info", {"version": version, "revision": revision}, 1)])


class JsonLogTest(FleetCase):

    def test_queue_wait_of_a_backlog_days_old_is_counted(self):
        """A job stamped days ago (a backlog after a long outage) waited that long: it is counted
        in pixq_queue_wait_seconds (+Inf bucket), not dropped as a bad stamp as it was past a day.
        Stamps that are no time pixq submit wrote (before 2000, a day ahead) are still not
        counted; one a minute ahead (two hosts' clocks) waited 0."""
        self.start_worker("--metrics-addr", "127.0.0.1:%d" % self.metrics_port)
        now = int(time.time() * 1000)
        stamps = {"old": now - 3 * 86400 * 1000, "y1999": 915148800000,
                  "ahead": now + 86400 * 1000, "skew": now + 60000}
        for job_id, at in stamps.items():
            job = self.job(job_id, stamp=False)
            job["pixq_enqueued_at"] = at
            self.push_job(job)
        self.wait_results(list(stamps))
        fams = self.scrape()
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_count"), 2)
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_bucket", le="0.005"), 1)  # skew
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_bucket", le="3600"), 1)
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_bucket", le="+Inf"), 2)
        self.assertGreaterEqual(sample(fams, "pixq_queue_wait_seconds_sum"), 3 * 86400)

    def test_a_log_reader_gone_leaves_the_worker_working(self):
        """The worker's stderr a pipe whose reader went away (a log shipper restarted): each
        line's write fails, and the SIGPIPE it raises is ignored, so that the worker does not
        end in the middle of a job over its log; it takes and finishes jobs, and stops with
        status 0. Not ignored (a main.c mutant the tests let live), its next line ended it."""
        proc = subprocess.Popen([CONFIG.worker], env=self.worker_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is not None or (proc.kill(), proc.wait()))
        for line in proc.stderr:
            if b"event=worker_start " in line:
                break
        proc.stderr.close()
        self.push_job(self.job("no-reader"))
        self.wait_results(["no-reader"])
        self.assertIsNone(proc.poll())
        proc.terminate()
        self.assertEqual(proc.wait(scaled(20)), 0)

    def test_json_lines_and_single_process_metrics(self):
        prog = self.start_worker("--log-format", "json", "--metrics-addr",
                                 "127.0.0.1:%d" % self.metrics_port)
        good = ["json-1", "json-2"]
        for job_id in good:
            self.push_job(self.job(job_id))
        self.push_job(self.job("json-bad", path="/missing.png", stamp=False))
        self.push_job("{not json")
        self.wait_results(good + ["json-bad"])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 2, 10, "two dead entries")

        fams = self.scrape()
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="succeeded"), 2)
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="failed"), 1)
        self.assertEqual(sample(fams, "pixq_jobs_total", outcome="dead"), 1)
        self.assertEqual(sample(fams, "pixq_outputs_total", outcome="uploaded"), 2)
        self.assertEqual(sample(fams, "pixq_s3_responses_total", method="PUT", code="200"), 2)
        self.assertEqual(sample(fams, "pixq_queue_wait_seconds_count"), 2)
        self.assertEqual(sample(fams, "pixq_worker_processes"), 1)
        # the single process's lease (slot 0), held since it registered
        self.assertLess(sample(fams, "pixq_lease_age_seconds"), 2.0)
        self.check_http_edges()
        # PIXQ_CPU_AFFINITY is off by default: the worker may run on every CPU it was given
        self.assertEqual(os.sched_getaffinity(prog.pid), os.sched_getaffinity(0))

        status, killed = prog.terminate(scaled(20))
        self.programs.remove(prog)
        self.assertEqual((status, killed), (0, False))
        lines = prog.log_path.read_text().splitlines()
        events = [self.parse_line(line) for line in lines]
        names = {e["event"] for e in events}
        self.assertFalse(names & {"cpu_affinity", "cpu_affinity_failed"}, names)
        for must in ("config", "worker_start", "job_start", "job_done", "job_failed", "processed",
                     "s3_put", "redis", "job_unparseable", "worker_stop", "metrics_listening"):
            self.assertIn(must, names)
        about_jobs = [e for e in events if e["event"] not in NOT_ABOUT_A_JOB]
        self.assertGreater(len(about_jobs), 10)
        in_runs = [e for e in events if e["event"] == "redis" and "job_id" in e]
        self.assertTrue(in_runs, "no Redis timing line carries the job it was sent for")
        for e in about_jobs:
            self.assertIsInstance(e.get("job_id"), str, e)
            self.assertTrue(e["job_id"], e)
        for e in events:
            if e["event"] in ("job_done", "processed"):
                self.assertIsInstance(e["ms"], int, e)
            if e["event"] == "redis":
                self.assertIsInstance(e["cmd"], str, e)
                self.assertIsInstance(e["ms"], (int, float), e)
            if e["event"] == "s3_put":  # README: method, bucket, status, ms
                self.assertEqual((e["method"], e["bucket"], e["status"]),
                                 ("PUT", self.buckets[0], 200), e)
                self.assertIsInstance(e["ms"], (int, float), e)
            if e["event"] == "job_done":  # README's example line, as a shipper reads it
                for field in ("fetch_ms", "process_ms", "upload_ms", "s3_wait_ms",
                              "postback_ms"):
                    self.assertIsInstance(e[field], (int, float), e)
                self.assertEqual(e["postback"], "delivered", e)
        failed = [e for e in events if e["event"] == "job_failed"]
        self.assertEqual(failed[0]["job_id"], "json-bad")
        result = json.loads(self.redis.lindex(self.key("result:json-bad"), 0))["results"]
        self.assertEqual(failed[0]["error"], result["errors"][0])  # unquoted, then JSON again
        self.assertTrue(any(e["event"] == "redis" and e.get("script") for e in events))

    def test_postback_outcomes(self):
        """pixq_postbacks_total counts how each postback attempt ended: a failed one whose retry
        is scheduled (retried, twice: the first attempt's and the first retry's), the second
        retry failing too (given_up: the last wait), one never sent because the guard refuses its
        URL (refused, at once), and a delivered one. They were in the log only. The counts of
        retried and given_up differ, so that one taken for the other shows."""
        self.start_worker("--metrics-addr", "127.0.0.1:%d" % self.metrics_port,
                          PIXQ_POSTBACK_RETRY_DELAYS_S="1,1")
        self.postbacks.answer_with(500, 503, 500)
        job = self.job("pm-retry")
        job["retry_postback"] = True
        self.push_job(job)
        self.wait_until(lambda: self.programs[0].log_events("postback_given_up"), 20,
                        "the retry given up")
        refused = self.job("pm-refused")
        refused["postback_url"] = "ftp://example.com/pb"
        refused["retry_postback"] = True
        self.push_job(refused)
        self.push_job(self.job("pm-ok"))
        self.wait_for_postback(30, job_id="pm-ok")

        def counted():
            fams = self.scrape()
            got = {o: sample(fams, "pixq_postbacks_total", outcome=o)
                   for o in ("delivered", "retried", "given_up", "refused")}
            return got if got["delivered"] == 1 and got["refused"] == 1 else None
        got = self.wait_until(counted, 10, "the postbacks counted")
        self.assertEqual(got, {"delivered": 1, "retried": 2, "given_up": 1, "refused": 1})
        self.assertEqual(len(self.postbacks.postbacks), 4)  # the refused one was never sent

    def parse_line(self, line):
        try:
            e = json.loads(line)
        except ValueError as err:
            raise AssertionError("not a JSON line (%s): %r" % (err, line))
        self.assertIsInstance(e, dict, line)
        self.assertRegex(e.get("ts", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertIn(e.get("level"), ("debug", "info", "warn", "error"), line)
        self.assertIsInstance(e.get("event"), str, line)
        return e


if __name__ == "__main__":
    harness.main()
