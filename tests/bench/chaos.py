#!/usr/bin/python3
"""chaos: a randomized fault driver that checks pixq's promise, nothing is ever lost.

    tests/bench/run [--build DIR] chaos [--jobs 300] [--workers 3] [--seed N] [--processes]
        [--kill-every MIN MAX] [--rotate-credentials] [--credentials-endpoint]
        [--credentials-process] [--fast-jobs] [--smoke]
        [--verbose] [--keep]
    /usr/bin/python3 tests/bench/chaos.py --worker build/worker/pixq-worker [--seed N] ...

Not a test of the suite (a run takes a minute or two, and what it finds depends on the seed):
run it with several seeds by hand; its smoke entry (--smoke: 12 jobs, 2 workers, at least one
kill, one Redis restart and one key rotation, about 10 s) only checks that it runs clean. Exit status 1 when it saw
a violation. tests/bench/RESULTS.md ("Chaos") lists the seeds run and what they found.

What runs, all on loopback: redis-server with the README's persistence (appendonly yes,
appendfsync everysec: harness.RedisServer(appendonly=True)), the fault-injecting S3 stub
(tests/integration/s3stub.py) with buckets chaos-a (an operator limit of 4 PUT/s, burst 2, so
that most outputs are parked in Redis) and chaos-b (PIXQ_S3_RATE 20/s), a source server whose
answers take 20 to 150 ms, a postback receiver of this script's own that records which
postbacks it answered 2xx, and --workers pixq-worker processes (short leases, as
test_reliability.py's), each its own process so that it can be SIGKILLed alone (or, with
--processes, one `pixq-worker --processes WORKERS` whose children are SIGKILLed).

The jobs (seeded: --seed gives the same jobs and the same schedule of faults, not the same
interleaving): 1 to 4 saves over both buckets, some nested, some to PIXQ_DEFAULT_BUCKET (no
s3_destination), a third with wait_for_s3, every one with retry_postback (PIXQ_POSTBACK_RETRY),
one in seven without a job_id (the worker names it: each postback URL carries the script's own
name of the job), some pushed as a JSON array of 2 to 4; a few fail on purpose: a 404 source
(fails at once), a save to a bucket the stub does not have (NoSuchBucket: the job fails, its
other outputs are uploaded), an unknown function; some sources answer 503 once (a retry through
delayed). They are pushed in waves through the first part of the run while, at random moments:

* a worker is SIGKILLed and started again (every 0.7 to 2.5 s, --kill-every), or one time in
  ten sent SIGTERM (a graceful stop, PIXQ_SHUTDOWN_TIMEOUT_MS 2 s) and replaced, or one time
  in ten frozen (SIGSTOP) for 3.5 to 6 s, past its 3-s lease, then let go on (SIGCONT);
* Redis misbehaves (every 6 to 14 s): one time in four it stops answering for 0.5 to 3.5 s
  (CLIENT PAUSE: a command sent meanwhile runs after the worker's PIXQ_REDIS_TIMEOUT_MS, 2 s,
  gave up on it), one in seven it refuses writes for 0.5 to 3 s (maxmemory 1 with noeviction,
  a full Redis, which takes a running job's begin.lua and finish.lua, whose first writes add
  nothing; every other time min-replicas-to-write 1, which refuses every write, as a failed
  save or a replica would),
  otherwise redis-server is restarted: a clean SHUTDOWN (SIGTERM: the AOF is flushed),
  or SIGKILL after `CONFIG SET appendfsync always` and a pause (so that no acknowledged write
  is lost: a crash under everysec may lose a second of writes, which the README allows);
* S3 misbehaves for a burst (every 3 to 7 s): 503 SlowDown at random, connection resets, 500s,
  PUTs or wait_for_s3's HEADs held past PIXQ_S3_TIMEOUT_MS (chaos-b's objects are readable
  only 0.3 s after their PUT, so that wait_for_s3 polls);
* the postback receiver answers 500 to the next one to three postbacks, or answers every
  postback 0 to 0.8 s late from now on (so that kills land in the middle of postbacks);
* with --rotate-credentials the workers take their S3 keys from a credentials file
  (AWS_SHARED_CREDENTIALS_FILE) and every 3 to 8 s new temporary keys are issued (the stub takes
  them), written to the file (aside, then renamed over it), and 0.3 to 2 s later the old ones
  stop working: S3 then refuses a request signed with them (InvalidAccessKeyId, or half the time
  ExpiredToken for the old token), as temporary credentials expire;
* with --credentials-endpoint the same, but the keys come from a container credentials endpoint
  (metastub.py, AWS_CONTAINER_CREDENTIALS_FULL_URI) that serves each set for 10 s, which the
  workers ask again 9.5 s before that (PIXQ_S3_CREDENTIALS_REFRESH_MS): they take new keys within
  half a second, or when S3 refuses the old ones;
* with --credentials-process the same again, but each worker runs a credentials file profile's
  credential_process (a Python helper that asks that endpoint and prints its keys in the
  credential_process form).

With --fast-jobs, 80 % of the jobs (seeded) are fast: an 8x8 canvas source, no_op or (one in
five) one save of it to chaos-b, settled within a millisecond or two, so that begin.lua's answer
has often not come when the job's next script call is made, which is then written behind it
(finish.lua for the half that name no postback_url, which keep their job_id; posting.lua for the
other half, which the receiver answers at once whatever its delay). A Redis fault comes every 1
to 3 s while jobs are left to push (then every 6 to 14 s): a restart 45 times in 100; a pause of
2.5 or 3.5 s (past the worker's 2-s timeout: the answers of the calls sent meanwhile are lost)
40; a write refusal 15. Right ahead of each a wave of 50 jobs is pushed: with a pause or a
refusal, once the queue is empty (1 s at most) and in the same write (Redis answers a worker
waiting in BLMOVE with its job once the fault is on: its begin.lua and the call written behind
it are held, or refused); before a restart,
the driver waits until workers have taken 1 to half of its entries (0.5 s at most), so that it
lands while they work the wave (one wave at the start, and one 3 s after the last when no fault
came). The workers log at debug level, and the report counts the calls written
behind begin.lua (`behind=1`) by script: how many, how many met an error answer, and how many
no answer at all, with their jobs.

At the end (every job has a result and the queue is quiet, or --deadline passed) the workers are
stopped and every invariant is checked; each violation is printed with its job id:

* exactly one result in result:<id>;
* at least one postback answered 2xx, and the last one is the stored result; a second one (the
  README allows it for a worker stopped in the middle of its own postback) is a violation
  unless a worker was killed or frozen between the first one's arrival and 1 s after its answer
  (or after Redis came back, when it was down, paused or refusing writes meanwhile);
* a job without a job_id posted back under one id only;
* a job without a postback_url (--fast-jobs) posted back never;
* a job meant to succeed has no errors (unless they are what a fault budget explains: an upload
  that met PIXQ_S3_MAX_ATTEMPTS throttles, a poison pill), one meant to fail has them;
* a job with errors has exactly one entry in dead, a job without none;
* every image in a result is in S3 (the stub) as a PNG;
* the queue's counters: every job settled once and received once (less at most one a job
  whose begin.lua failed, job_begin_failed: the README says such a run may not be counted), as
  many dead as listed;
* nothing is left: jobs, delayed, active lists, blobs, parked bytes; each job hash expires;
* no worker logged parked_job_lost or postback_given_up (the other notable events are counted).
"""

import argparse
import collections
import http.server
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.dont_write_bytecode = True

import harness  # noqa: E402
import metastub  # noqa: E402
import s3stub  # noqa: E402
from benchlib import machine_line, memory_tmpdir  # noqa: E402

QUEUE = "chaos"
SLOW_BUCKET, FAST_BUCKET, MISSING_BUCKET = "chaos-a", "chaos-b", "chaos-missing"
WORKER_ENV = {
    "PIXQ_LEASE_MS": "3000", "PIXQ_HEARTBEAT_MS": "1000", "PIXQ_REAP_INTERVAL_MS": "500",
    "PIXQ_S3_RATE": "20/s,burst=10", "PIXQ_S3_MAX_ATTEMPTS": "10",
    "PIXQ_S3_RETRY_BASE_MS": "100", "PIXQ_S3_RETRY_MAX_MS": "2000",
    "PIXQ_S3_THROTTLE_RETRY_BASE_MS": "300", "PIXQ_S3_TIMEOUT_MS": "2000",
    "PIXQ_RETRY_BASE_MS": "200", "PIXQ_RETRY_MAX_MS": "2000", "PIXQ_MAX_RECOVERIES": "10",
    "PIXQ_WAIT_FOR_S3_INTERVAL_MS": "200", "PIXQ_WAIT_FOR_S3_MAX_MS": "1000",
    "PIXQ_POSTBACK_RETRY_DELAYS_S": "1,1,2,2,3,3", "PIXQ_REDIS_TIMEOUT_MS": "2000",
    "PIXQ_SHUTDOWN_TIMEOUT_MS": "2000", "PIXQ_STOP_GRACE_MS": "3000", "PIXQ_LOG_LEVEL": "info",
}
# errors a fault budget explains in a job meant to succeed
EXPLAINED = ("temporarily unavailable", "worker died while running it", "upload_poisoned",
             "kept killing")
# what the jobs made to fail say
EXPECTED_FAIL = {"404": "HTTP 404", "nobucket": "NoSuchBucket", "badfn": "Unknown function"}
FAST_SHARE = 0.8  # --fast-jobs: the share of the jobs that are fast,
FAST_WAVE = 50  # the jobs pushed right ahead of each Redis fault (once workers took some),
FAST_REDIS_FAULTS = ([45, 40, 15], [2500, 3500])  # restart, pause, oom; pauses past the timeout


def tiny_png():
    return (harness.CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# servers of this script's own


class Receiver:
    """Postback receiver: records (job_id, results, time, status answered); fail_next(n) answers
    the next n with 500."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.to_fail = 0
        self.delay = 0.0
        self.prompt = set()  # tags answered at once whatever the delay (--fast-jobs' fast jobs)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    results = json.loads(body)["results"]
                except (ValueError, KeyError, TypeError):
                    results = None
                with owner.lock:
                    status = 500 if owner.to_fail > 0 else 200
                    owner.to_fail -= 1 if owner.to_fail > 0 else 0
                    tag = self.path.partition("?t=")[2] or None
                    rec = [tag, results, time.monotonic(), status, None]
                    owner.records.append(rec)
                if owner.delay and tag not in owner.prompt:
                    time.sleep(owner.delay)
                rec[4] = time.monotonic()  # answered (as good as: the write is buffered)
                out = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = http.server.ThreadingHTTPServer((harness.LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, tag):
        return "http://%s:%d/pb?t=%s" % (harness.LOOPBACK, self.httpd.server_address[1], tag)

    def fail_next(self, n):
        with self.lock:
            self.to_fail += n

    def delivered(self):
        """{tag: [(results, arrived, answered)]} of the postbacks answered 2xx, in order (the
        tag is the job's name in this script: its job_id, when it has one)."""
        out = collections.defaultdict(list)
        with self.lock:
            for tag, results, t, status, answered in self.records:
                if status < 300:
                    out[tag].append((results, t, answered or t))
        return out

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Client:
    """harness.Redis that reconnects through a Redis restart."""

    def __init__(self, server):
        self.server = server
        self.r = None

    def __call__(self, *args, tries=200):
        for i in range(tries):
            try:
                if self.r is None:
                    self.r = harness.Redis(harness.LOOPBACK, self.server.port, timeout=5)
                return self.r.execute(*args)
            except (OSError, ConnectionError, harness.RespError) as e:
                if isinstance(e, harness.RespError) and "LOADING" not in str(e):
                    raise
                if self.r is not None:
                    self.r.close()
                self.r = None
                time.sleep(0.05)
        raise AssertionError("redis did not answer %r" % (args,))


def key(name):
    return "pixq:{%s}:%s" % (QUEUE, name)


# ---------------------------------------------------------------------------------------------
# jobs


class Jobs:
    def __init__(self, rnd, src, receiver, fast=0.0):
        self.rnd, self.src, self.receiver, self.fast = rnd, src, receiver, fast
        self.png = tiny_png()
        self.meant = {}  # tag -> "ok" | "404" | "nobucket" | "badfn"
        self.expect = {}  # tag -> {identifier: (bucket, key, width)}
        self.ids = {}  # tag -> job_id, for the jobs that have one
        self.silent = set()  # tags of the jobs that name no postback_url
        self.n_fast = 0

    def make(self, i):
        r = self.rnd
        job_id = "chaos-%04d" % i
        if self.fast and r.random() < self.fast:
            return self.make_fast(job_id)
        kind = r.choices(["ok", "404", "nobucket", "badfn"], [88, 4, 5, 3])[0]
        path = "/src/%s.png" % job_id
        if kind == "404":
            url = self.src.url("/missing/%s.png" % job_id)
        else:
            url = self.src.add(path, self.png)
            self.src.delay[path] = r.choice([0.02, 0.05, 0.1, 0.15])
            if r.random() < 0.1:
                self.src.answer_with(path, 503)  # transient: the job runs again from delayed
        functions, expect = [], {}
        for n in range(r.randint(1, 4)):
            bucket = r.choice([SLOW_BUCKET, SLOW_BUCKET, FAST_BUCKET])
            width = 8 + 4 * n
            ident = "img%d" % n
            f = {"name": "resize_to_fit", "params": {"width": width},
                 "save": {"image_identifier": ident,
                          "s3_destination": {"bucket": bucket, "key": "%s/%d.png" % (job_id, n)}}}
            expect[ident] = (bucket, "%s/%d.png" % (job_id, n), width)
            if r.random() < 0.15:  # to PIXQ_DEFAULT_BUCKET, under <hour>/<job_id>/
                f["save"] = {"image_identifier": ident, "extension": ".png"}
                expect[ident] = (FAST_BUCKET, None, width)
            if r.random() < 0.3:  # a child of this output, saved too
                cw = max(4, width // 2)
                cid = "img%dc" % n
                ckey = "%s/%dc.png" % (job_id, n)
                f["functions"] = [{"name": "resize_to_fit", "params": {"width": cw},
                                   "save": {"image_identifier": cid,
                                            "s3_destination": {"bucket": bucket, "key": ckey}}}]
                expect[cid] = (bucket, ckey, cw)
            functions.append(f)
        if kind == "nobucket":
            functions.append({"name": "resize_to_fit", "params": {"width": 10},
                              "save": {"image_identifier": "lost", "s3_destination": {
                                  "bucket": MISSING_BUCKET, "key": "%s/x.png" % job_id}}})
        if kind == "badfn":
            functions.append({"name": "no_such_function", "params": {},
                              "save": {"image_identifier": "bad"}})
        job = {"application_id": "chaos", "job_id": job_id, "src": url,
               "postback_url": self.receiver.url(job_id), "retry_postback": True,
               "functions": functions}
        if r.random() < 0.15:  # the worker names it (adopt.lua)
            del job["job_id"]
        else:
            self.ids[job_id] = job_id
        if r.random() < 0.3:
            job["wait_for_s3"] = True
        self.meant[job_id] = kind
        self.expect[job_id] = expect
        return job

    def make_fast(self, job_id):
        """--fast-jobs: an 8x8 canvas, no_op or one save of it to chaos-b, done in a millisecond
        or two: finish.lua (or posting.lua) goes behind begin.lua. Half name no postback_url
        (finish.lua goes behind) and keep their job_id; the rest are posted back at once."""
        r = self.rnd
        self.n_fast += 1
        kind = r.choices(["ok", "badfn"], [97, 3])[0]
        functions, expect = [{"name": "no_op"}], {}
        if r.random() < 0.2:
            k = "%s/0.png" % job_id
            functions = [{"name": "resize_to_fit", "params": {"width": 8},
                          "save": {"image_identifier": "img0",
                                   "s3_destination": {"bucket": FAST_BUCKET, "key": k}}}]
            expect["img0"] = (FAST_BUCKET, k, 8)
        if kind == "badfn":
            functions.append({"name": "no_such_function", "params": {}})
        job = {"application_id": "chaos", "job_id": job_id,
               "src": {"name": "canvas", "width": 8, "height": 8}, "functions": functions}
        if r.random() < 0.5:
            self.silent.add(job_id)
            self.ids[job_id] = job_id
        else:
            job.update(postback_url=self.receiver.url(job_id), retry_postback=True)
            self.receiver.prompt.add(job_id)
            if r.random() < 0.15:
                del job["job_id"]
            else:
                self.ids[job_id] = job_id
        self.meant[job_id] = kind
        self.expect[job_id] = expect
        return job


# ---------------------------------------------------------------------------------------------
# the run


class Chaos:
    def __init__(self, opts, tmp):
        self.opts, self.tmp = opts, tmp
        self.rnd = random.Random(opts.seed)
        self.events = []  # (monotonic time, what)
        self.kill_times = []
        self.outages = []  # [went down, answered again] (monotonic)
        self.frozen = []  # (when to SIGCONT, worker)
        self.stopping = []  # workers sent SIGTERM
        self.counts = collections.Counter()
        self.workers = []
        self.n_started = 0
        self.creds_gen = 0
        self.retire_at = None  # when the keys issued last become the only good ones
        self.done = set()  # tags with a result

    # -- servers and workers ---------------------------------------------------------------------

    def start(self):
        self.redis_server = harness.RedisServer(self.tmp / "redis", appendonly=True).start()
        self.s3 = s3stub.S3Stub(buckets=(SLOW_BUCKET, FAST_BUCKET),
                                log_path=self.tmp / "s3stub.log").start()
        self.s3.httpd.handle_error = lambda request, address: None  # resets, killed workers
        self.s3.set_visibility(FAST_BUCKET, 0.3)  # wait_for_s3 polls a few times
        self.src = harness.SourceServer()
        # a worker killed in the middle of a download resets its connection: not news
        self.src.httpd.handle_error = lambda request, address: None
        self.receiver = Receiver()
        self.redis = Client(self.redis_server)
        self.redis("HSET", "pixq:rl:{%s}" % SLOW_BUCKET, "rate", 4, "burst", 2)
        self.redis("PERSIST", "pixq:rl:{%s}" % SLOW_BUCKET)
        self.env = harness.clean_env()
        self.env.update(WORKER_ENV)
        self.env.update(self.s3.credentials())
        self.meta = None
        if self.opts.credentials_endpoint:
            self.meta = metastub.MetadataStub()
            self.meta.set(self.s3.access_key, self.s3.secret_key, None, ENDPOINT_KEYS_S)
            self.env.pop("AWS_ACCESS_KEY_ID")
            self.env.pop("AWS_SECRET_ACCESS_KEY")
            self.env.update({"PIXQ_S3_CREDENTIALS_REFRESH_MS": str(ENDPOINT_LEAD_MS),
                             "PIXQ_S3_CREDENTIALS_RETRY_MS": "200"})
            if self.opts.credentials_process:
                helper = self.tmp / "credential-helper.py"
                helper.write_text(PROCESS_HELPER)
                self.creds_path = self.tmp / "aws-credentials"
                self.creds_path.write_text("[default]\ncredential_process = /usr/bin/python3 %s %s\n"
                                           % (helper, self.meta.url("/creds")))
                self.env.update({"AWS_SHARED_CREDENTIALS_FILE": str(self.creds_path),
                                 "PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS": "5000"})
            else:
                self.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = self.meta.url("/creds")
        elif self.opts.rotate_credentials:
            self.creds_path = self.tmp / "aws-credentials"
            self.write_credentials(self.s3.access_key, self.s3.secret_key, None)
            self.env.pop("AWS_ACCESS_KEY_ID")
            self.env.pop("AWS_SECRET_ACCESS_KEY")
            self.env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.creds_path)
        self.env.update({
            "PIXQ_REDIS_URL": self.redis_server.url(), "PIXQ_QUEUE": QUEUE,
            "PIXQ_S3_ENDPOINT": self.s3.endpoint(), "AWS_REGION": "us-east-1",
            "PIXQ_DEFAULT_BUCKET": FAST_BUCKET, "PIXQ_ALLOW_PRIVATE_NETWORKS": "1",
            "PIXQ_POSTBACK_RETRY": "1"})
        if self.opts.fast_jobs:  # the debug lines mark a call written behind begin.lua
            self.env["PIXQ_LOG_LEVEL"] = "debug"
        if self.opts.processes:  # one supervisor; its children are killed
            self.env.update({"PIXQ_PROCESSES": str(self.opts.workers),
                             "PIXQ_RESTART_QUICK_EXIT_MS": "1000",
                             "PIXQ_RESTART_BACKOFF_MIN_MS": "100",
                             # a child killed every second is a crash loop to the supervisor,
                             # whose restarts would back off to 30 s
                             "PIXQ_RESTART_BACKOFF_MAX_MS": "1000"})
            self.workers = [self.start_worker()]
        else:
            self.workers = [self.start_worker() for _ in range(self.opts.workers)]

    def start_worker(self):
        self.n_started += 1
        return harness.Program("chaos-worker-%d" % self.n_started, [self.opts.worker], self.env,
                               self.tmp / ("worker-%d.log" % self.n_started))

    def stop(self):
        for _, w in self.frozen:
            w.proc.send_signal(signal.SIGCONT)
        for w in self.workers + self.stopping:
            w.terminate(10)
        for what in (self.receiver, self.src, self.s3, self.redis_server):
            try:
                what.stop()
            except Exception:  # noqa: BLE001 (best effort at the end)
                pass
        if self.meta is not None:
            try:
                self.meta.close()
            except Exception:  # noqa: BLE001 (best effort at the end)
                pass

    def note(self, what):
        self.events.append((time.monotonic(), what))
        self.counts[what.split()[0]] += 1
        if self.opts.verbose:
            print("%7.2f %s" % (time.monotonic() - self.t0, what), flush=True)

    # -- faults ----------------------------------------------------------------------------------

    def children(self):
        """The worker processes of a `--processes` supervisor."""
        sup = self.workers[0].pid
        try:
            text = Path("/proc/%d/task/%d/children" % (sup, sup)).read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill_worker(self):
        if self.opts.processes:
            kids = self.children()
            if kids:
                pid = self.rnd.choice(kids)
                self.kill_times.append(time.monotonic())
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.note("kill child %d" % pid)
            return
        i = self.rnd.randrange(len(self.workers))
        w = self.workers[i]
        how = self.rnd.choices(["kill", "term", "freeze"], [80, 10, 10])[0]
        if how == "freeze" and w.alive():  # a stall past its lease: fenced, then it goes on
            self.kill_times.append(time.monotonic())
            w.proc.send_signal(signal.SIGSTOP)
            self.frozen.append((time.monotonic() + self.rnd.uniform(3.5, 6), w))
            self.note("freeze %s" % w.name)
            return
        self.kill_times.append(time.monotonic())
        if how == "term":  # a graceful stop (PIXQ_SHUTDOWN_TIMEOUT_MS 2 s), run in the background
            self.stopping.append(w)
            w.proc.send_signal(signal.SIGTERM)
        else:
            if w.alive():
                w.proc.send_signal(signal.SIGKILL)
                w.proc.wait(10)
            w.terminate(1)
        self.workers[i] = self.start_worker()
        self.note("%s %s" % (how, w.name))

    def thaw(self, now):
        for t, w in [f for f in self.frozen if f[0] <= now]:
            self.frozen.remove((t, w))
            w.proc.send_signal(signal.SIGCONT)

    def redis_fault(self, wave=None):
        """A Redis fault. --fast-jobs: `wave` (ids, per_wave), a wave of jobs to push ahead of it:
        with a pause or a write refusal, in the same write (a worker waiting in BLMOVE gets its
        job's answer once the fault is on: its begin.lua and the call behind it are held, or
        refused); with a restart the fault waits until workers took some of it."""
        mix, pauses = FAST_REDIS_FAULTS if self.opts.fast_jobs else ([60, 25, 15],
                                                                     [500, 1500, 2500, 3500])
        how = self.rnd.choices(["restart", "pause", "oom"], mix)[0]
        if self.opts.smoke and not self.counts["redis_restart"]:
            how = "restart"
        ms = self.rnd.choice(pauses) if how == "pause" else 0
        # a write refusal: a full Redis, or (every other one, no draw: the seeds' faults stay
        # as they were) every write refused
        refusal = ("maxmemory" if self.counts["redis_oom"] % 2 == 0
                   else "min-replicas-to-write")
        cmd = {"pause": ("CLIENT", "PAUSE", ms, "ALL"),
               "oom": ("CONFIG", "SET", refusal, "1")}.get(how)
        if wave is not None and cmd is not None:
            until = time.monotonic() + 1.0  # the queue drained: workers wait in BLMOVE
            while time.monotonic() < until and self.redis("LLEN", key("jobs")):
                time.sleep(0.01)
            self.push_wave(*wave, then=cmd)
        elif wave is not None:
            self.wave_under_way(*self.push_wave(*wave))
        elif cmd is not None:
            self.redis(*cmd)
        if how == "restart":
            self.stop_redis()
        elif how == "pause":  # commands sent meanwhile run after the worker gave up on them
            now = time.monotonic()
            self.outages.append([now, now + ms / 1000.0])
            self.note("redis_pause %d ms%s" % (ms, " with a wave" if wave else ""))
        else:  # writes refused for a moment (a full Redis: those adding data, as said above)
            self.oom_until = time.monotonic() + self.rnd.uniform(0.5, 3)
            self.oom_outage = [time.monotonic(), float("inf")]
            self.outages.append(self.oom_outage)  # an outcome may not be recorded meanwhile
            self.note("redis_oom %s" % refusal)

    def end_oom(self):
        self.redis("CONFIG", "SET", "maxmemory", "0")
        self.redis("CONFIG", "SET", "min-replicas-to-write", "0")
        self.oom_until = None
        self.oom_outage[1] = time.monotonic()

    def stop_redis(self):
        """Shut redis-server down (it starts again from the loop, so that workers are killed
        while it is down too): a clean SHUTDOWN, or SIGKILL once everything acknowledged is on
        disk (appendfsync always for a moment), sometimes right after an AOF rewrite began."""
        down = self.rnd.choice([0.2, 0.5, 1.0, 2.0, 4.0, 6.0])
        self.down_since = time.monotonic()
        if self.rnd.random() < 0.5:
            self.redis_server.shutdown(signal.SIGTERM)
            how = "shutdown"
        else:
            self.redis("CONFIG", "SET", "appendfsync", "always")
            how = "kill-9"
            if self.rnd.random() < 0.3:
                self.redis("BGREWRITEAOF")
                how += "-during-rewrite"
            time.sleep(0.3)
            self.redis_server.shutdown(signal.SIGKILL)
        self.redis.r = None
        self.restart_outage = [self.down_since, float("inf")]
        self.outages.append(self.restart_outage)
        self.redis_up_at = time.monotonic() + down
        self.note("redis_restart %s down %.1fs" % (how, down))

    def start_redis(self):
        for _ in range(50):  # the port may linger for a moment
            self.redis_server._spawn()
            if self.redis_server._wait_ready(20):
                self.redis_up_at = None
                self.restart_outage[1] = time.monotonic()
                return
            self.redis_server.stop()
            time.sleep(0.1)
        raise AssertionError("redis-server did not restart")

    def s3_burst(self):
        bucket = self.rnd.choice([SLOW_BUCKET, FAST_BUCKET])
        kind = self.rnd.choice(["slowdown", "reset", "500", "stall"])
        self.s3.clear_faults()
        if kind == "slowdown":
            self.s3.slow_down_probability(bucket, 0.5, seed=self.rnd.randrange(1 << 30))
        elif kind == "reset":
            self.s3.reset(bucket, count=self.rnd.randint(2, 6))
        elif kind == "500":
            self.s3.fail(bucket, 500, "InternalError", count=self.rnd.randint(2, 6))
        else:
            methods = self.rnd.choice([("PUT",), ("HEAD",)])  # HEAD: wait_for_s3's checks
            self.s3.stall(bucket, 3.0, methods=methods, count=self.rnd.randint(1, 3))
            kind += "-" + methods[0]
        self.burst_end = time.monotonic() + self.rnd.uniform(1, 3)
        self.note("s3_%s %s" % (kind, bucket))

    def write_credentials(self, key, secret, token):
        tmp = self.creds_path.with_suffix(".new")
        tmp.write_text("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n%s"
                       % (key, secret, "aws_session_token = %s\n" % token if token else ""))
        os.replace(tmp, self.creds_path)

    def rotate_credentials(self):
        """New keys: good at once, in the file now, the only good ones at retire_at."""
        self.creds_gen += 1
        self.new_creds = ("AKIDCHAOS%04d" % self.creds_gen,
                          "chaos/secret/%08x" % self.rnd.randrange(1 << 32),
                          "chaos-token-%d-%08x" % (self.creds_gen, self.rnd.randrange(1 << 32)))
        self.s3.also_valid[self.new_creds[0]] = self.new_creds[1:]
        if self.meta is not None:
            self.meta.set(*self.new_creds, ENDPOINT_KEYS_S)
        else:
            self.write_credentials(*self.new_creds)
        self.retire_at = time.monotonic() + self.rnd.uniform(0.3, 2.0)
        self.note("creds_rotate")

    def retire_credentials(self):
        old = (self.s3.access_key, self.s3.secret_key, self.s3.session_token)
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = self.new_creds
        self.s3.also_valid = {}
        if old[2] is not None and self.rnd.random() < 0.5:  # the old token expired
            self.s3.also_valid[old[0]] = old[1:]
            self.s3.expired_tokens.add(old[2])
        self.retire_at = None

    def postback_burst(self):
        if self.rnd.random() < 0.5:
            self.receiver.fail_next(self.rnd.randint(1, 3))
            self.note("postback_500")
        else:  # slow answers: kills land in the middle of postbacks
            self.receiver.delay = self.rnd.choice([0.0, 0.1, 0.3, 0.8])
            self.note("postback_delay %.1fs" % self.receiver.delay)

    # -- the loop --------------------------------------------------------------------------------

    def entries(self, batch):
        """The payloads of a wave: most jobs alone, some as a JSON array of 2 to 4 (split.lua)."""
        out, i = [], 0
        while i < len(batch):
            n = 1 if self.rnd.random() < 0.85 else self.rnd.randint(2, 4)
            group = batch[i:i + n]
            out.append(json.dumps(group if n > 1 else group[0]))
            i += n
        return out

    def job_id(self, tag):
        """The job's id: its own, or the one the worker gave it, as its postbacks tell."""
        if tag in self.jobs.ids:
            return self.jobs.ids[tag]
        named = {(res or {}).get("job_id") for res, _, _ in self.receiver.delivered().get(tag, [])}
        return sorted(named)[0] if len(named) == 1 else None

    def pending(self, tags):
        out = []
        for tag in tags:
            if tag in self.done:
                continue
            job_id = self.job_id(tag)
            if job_id is None or not self.redis("EXISTS", key("result:" + job_id)):
                out.append(tag)
            else:
                self.done.add(tag)  # a result stays (a second one is the checks' business)
        return out

    def quiet(self):
        """No job waiting, active, delayed (postback retries), or parked; no worker frozen."""
        if self.frozen:
            return False
        if self.redis("LLEN", key("jobs")) or self.redis("ZCARD", key("delayed")):
            return False
        return not self.redis("KEYS", key("active:*"))

    def push_wave(self, ids, per_wave, then=None):
        """Pushes the next wave: (the LPUSH's answer, the entries pushed). `then`: a command
        written with the LPUSH, in one write, so that Redis runs it right after."""
        batch = [self.jobs.make(len(ids) + k)
                 for k in range(min(per_wave, self.opts.jobs - len(ids)))]
        ids += ["chaos-%04d" % (len(ids) + k) for k in range(len(batch))]
        entries = self.entries(batch)
        if then is None:
            return self.redis("LPUSH", key("jobs"), *entries), len(entries)
        self.redis("PING")  # connected
        queued = self.redis.r.pipeline(("LPUSH", key("jobs")) + tuple(entries), then)[0]
        return queued, len(entries)

    def wave_under_way(self, queued, entries):
        """Waits (0.5 s at most) until workers have taken 1 to half of the `entries` just pushed
        (LPUSH answered `queued`), so that a fault lands while they work the wave."""
        left = queued - self.rnd.randint(1, max(1, entries // 2))
        until = time.monotonic() + 0.5
        while time.monotonic() < until and self.redis("LLEN", key("jobs")) > left:
            time.sleep(0.0005)

    def run(self):
        fast = self.opts.fast_jobs
        jobs = Jobs(self.rnd, self.src, self.receiver, FAST_SHARE if fast else 0.0)
        self.jobs = jobs
        ids = []
        self.t0 = time.monotonic()
        waves = max(1, min(10, self.opts.jobs // 10))
        per_wave = FAST_WAVE if fast else -(-self.opts.jobs // waves)
        next_wave = self.t0  # --fast-jobs: then one ahead of each Redis fault (or 3 s on)
        r = self.rnd
        nxt = {"kill": self.t0 + r.uniform(0.7, 2.5), "redis": self.t0 + r.uniform(3, 8),
               "s3": self.t0 + r.uniform(1, 4), "pb": self.t0 + r.uniform(1, 5),
               "creds": self.t0 + r.uniform(1, 4)}
        smoke_faults = ["kill", "redis_restart"]
        if self.opts.smoke:  # both faults early, while the 12 jobs are still running
            nxt["kill"] = self.t0 + 0.8
            nxt["redis"] = self.t0 + 1.5
            nxt["creds"] = self.t0 + 0.5
        if self.opts.rotate_credentials:
            smoke_faults.append("creds_rotate")
        self.burst_end = None
        self.redis_up_at = None
        self.oom_until = None
        deadline = self.t0 + self.opts.deadline
        chaos_until = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            self.thaw(now)
            if self.redis_up_at is not None:  # down: workers are killed meanwhile too
                if now >= self.redis_up_at:
                    self.start_redis()
                if now >= nxt["kill"]:
                    self.kill_worker()
                    nxt["kill"] = time.monotonic() + r.uniform(*self.opts.kill_every)
                time.sleep(0.05)
                continue
            if len(ids) < self.opts.jobs and now >= next_wave and not self.oom_until:
                self.push_wave(ids, per_wave)
                next_wave = now + (3.0 if fast else 2.0)  # fast: when no fault pushed one
            if self.burst_end and now >= self.burst_end:
                self.s3.clear_faults()
                self.burst_end = None
            pending = self.pending(ids) if len(ids) == self.opts.jobs else ids
            chaotic = chaos_until is None or now < chaos_until
            if chaotic and now >= nxt["kill"]:
                self.kill_worker()
                nxt["kill"] = time.monotonic() + r.uniform(*self.opts.kill_every)
            if self.oom_until and now >= self.oom_until:
                self.end_oom()
            if chaotic and now >= nxt["redis"] and not self.oom_until:
                pushing = len(ids) < self.opts.jobs
                self.redis_fault((ids, per_wave) if fast and pushing else None)
                if fast and pushing:
                    next_wave = time.monotonic() + 3.0
                nxt["redis"] = time.monotonic() + (r.uniform(1, 3) if fast and pushing
                                                   else r.uniform(6, 14))
            if chaotic and now >= nxt["s3"]:
                self.s3_burst()
                nxt["s3"] = time.monotonic() + r.uniform(3, 7)
            if chaotic and now >= nxt["pb"]:
                self.postback_burst()
                nxt["pb"] = time.monotonic() + r.uniform(2, 6)
            if self.retire_at is not None and now >= self.retire_at:
                self.retire_credentials()
            if chaotic and self.opts.rotate_credentials and now >= nxt["creds"]:
                self.rotate_credentials()
                nxt["creds"] = time.monotonic() + r.uniform(3, 8)
            smoke_faults_due = self.opts.smoke and not all(self.counts[k] for k in smoke_faults)
            if self.opts.smoke and chaos_until is None and not smoke_faults_due:
                chaos_until = now
            if not pending and chaos_until is None and not smoke_faults_due:
                chaos_until = now  # calm down and let the rest settle
                if self.oom_until:
                    self.end_oom()
                self.s3.clear_faults()
                self.receiver.delay = 0.0
            down = self.redis_up_at is not None  # a restart just now: the loop starts it
            if not pending and not smoke_faults_due and not down and self.quiet():
                break
            time.sleep(0.05)
        self.elapsed = time.monotonic() - self.t0
        self.timed_out = time.monotonic() >= deadline
        time.sleep(1.5)  # a late duplicate postback would land now
        self.s3.clear_faults()
        return ids

    # -- the checks ------------------------------------------------------------------------------

    def check(self, ids):
        v = []  # (job_id, what)
        delivered = self.receiver.delivered()
        dead = collections.Counter()
        for entry in self.redis("LRANGE", key("dead"), 0, -1):
            try:
                dead[json.loads(entry).get("job_id")] += 1
            except ValueError:
                dead[None] += 1
        self.explained = []
        self.named = {}
        for tag in ids:
            pbs = delivered.get(tag, [])
            named = {(res or {}).get("job_id") for res, _, _ in pbs}
            job_id = self.jobs.ids.get(tag)
            if job_id is None:
                if len(named) != 1:
                    v.append((tag, "job without a job_id posted back under %s" % sorted(named)))
                    continue
                job_id = named.pop()
                self.named[tag] = job_id
            elif named - {job_id}:
                v.append((tag, "posted back under job_ids %s" % sorted(named)))
            self.check_job(tag, job_id, pbs, dead[job_id], v)
        for j in set(delivered) - set(ids):
            v.append((j, "postback for an unknown job"))
        self.dead = dead
        self.check_leftovers(ids, v)
        self.delivered = delivered
        return v

    def check_job(self, tag, job_id, pbs, n_dead, v):
        results = self.redis("LRANGE", key("result:" + job_id), 0, -1)
        if len(results) != 1:
            v.append((job_id, "%d results in result:%s" % (len(results), job_id)))
            if not results:
                return
        result = json.loads(results[-1])["results"]
        if tag in self.jobs.silent:
            if pbs:
                v.append((job_id, "%d postbacks delivered, for a job without postback_url"
                          % len(pbs)))
        elif not pbs:
            v.append((job_id, "no postback delivered"))
        else:
            if pbs[-1][0] != result:
                v.append((job_id, "last postback differs from the result: %s vs %s"
                          % (json.dumps(pbs[-1][0])[:300], json.dumps(result)[:300])))
            for (_, t1, a1), (_, t2, _) in zip(pbs, pbs[1:]):
                if self.kill_in_postback(t1, a1):
                    self.counts["duplicate_postbacks_after_kill"] += 1
                else:
                    v.append((job_id, "posted back again %.2f s after a postback answered %.2f s "
                              "after it arrived, with no worker killed in between"
                              % (t2 - t1, a1 - t1)))
        errors = result.get("errors")
        meant = self.jobs.meant[tag]
        if meant == "ok" and errors:
            text = json.dumps(errors)
            if any(m in text for m in EXPLAINED):
                self.explained.append((job_id, text[:200]))
            else:
                v.append((job_id, "meant to succeed, failed: %s" % text[:300]))
        if meant != "ok":
            if not errors:
                v.append((job_id, "meant to fail (%s), succeeded" % meant))
            elif EXPECTED_FAIL[meant] not in json.dumps(errors):
                v.append((job_id, "failed otherwise than meant (%s): %s"
                          % (meant, json.dumps(errors)[:300])))
        if errors and n_dead != 1:
            v.append((job_id, "failed, with %d dead entries" % n_dead))
        if not errors and n_dead:
            v.append((job_id, "succeeded, with %d dead entries" % n_dead))
        self.check_images(tag, job_id, result, v)

    def kill_in_postback(self, arrived, answered):
        """Whether a worker was killed while a postback that arrived and was answered then was
        in flight or not yet settled (the README's "stopped in the middle of its own postback"):
        from its arrival until 1 s after its answer, or, when Redis was down meanwhile (the
        outcome not recorded, kept in the worker's memory: a restart, a pause, or writes refused),
        until 1 s after Redis came back."""
        end = answered + 1.0
        for down, up in self.outages:
            if down <= end and up >= arrived:
                end = max(end, up + 1.0)
        return any(arrived - 0.2 <= k <= end for k in self.kill_times)

    def check_images(self, tag, job_id, result, v):
        expect = self.jobs.expect[tag]
        for im in result.get("images") or []:
            ident = im.get("image_identifier")
            if "error" in im or ident not in expect:
                continue
            bucket, k, width = expect[ident]
            if k is None:  # a default destination: where the result says
                prefix = "%s/%s/" % (self.s3.endpoint(), bucket)
                url = im.get("s3_url") or ""
                k = urllib.parse.unquote(url[len(prefix):]) if url.startswith(prefix) else url
                if "/%s/%s-" % (job_id, ident) not in k:
                    v.append((job_id, "%s at %s, not under the job's id" % (ident, url)))
            data = self.s3.object(bucket, k)
            if data is None:
                v.append((job_id, "%s is in the result but %s/%s is not in S3"
                          % (ident, bucket, k)))
            elif not data.startswith(b"\x89PNG"):
                v.append((job_id, "%s/%s is not a PNG" % (bucket, k)))
            if im.get("meta") != {"width": width, "height": width}:
                v.append((job_id, "%s meta %r, expected %d px" % (ident, im.get("meta"), width)))
        if not result.get("errors"):
            listed = {im.get("image_identifier") for im in result.get("images") or []}
            if listed != set(expect):
                v.append((job_id, "images %s, expected %s" % (sorted(listed), sorted(expect))))

    def check_leftovers(self, ids, v):
        for name in ("jobs", "delayed"):
            n = self.redis("ZCARD" if name == "delayed" else "LLEN", key(name))
            if n:
                entries = (self.redis("ZRANGE", key(name), 0, 4) if name == "delayed"
                           else self.redis("LRANGE", key(name), 0, 4))
                v.append(("-", "%d entries left in %s: %s" % (n, name, [e[:200] for e in entries])))
        for k in self.redis("KEYS", key("active:*")):
            left = self.redis("LRANGE", k, 0, -1)
            if left:
                v.append(("-", "%s holds %s" % (k, [e[:200] for e in left])))
        blobs = self.redis("KEYS", key("blob:*"))
        if blobs:
            v.append(("-", "blobs left: %s" % blobs[:10]))
        parked = self.redis("HGET", key("parked"), "total")
        if parked not in (None, "0"):
            v.append(("-", "parked total %s" % parked))
        flat = self.redis("HGETALL", key("stats"))
        stats = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
        settled = stats.get("succeeded", 0) + stats.get("failed", 0)
        # a run whose begin.lua failed (job_begin_failed: refused, or its answer lost) may not
        # be counted received (README, "Settle"): as many jobs as those may be missing there
        begin_failed = {f.partition(" ")[0] for line in self.logged["job_begin_failed"]
                        for f in line.split(" job_id=")[1:]}
        self.received_short = len(ids) - stats.get("received", 0)
        if settled != len(ids) or not 0 <= self.received_short <= len(begin_failed):
            v.append(("-", "stats count %d received, %d settled, for %d jobs (%d runs' begin.lua "
                      "failed)" % (stats.get("received", 0), settled, len(ids), len(begin_failed))))
        if stats.get("dead", 0) != sum(self.dead.values()):
            v.append(("-", "stats count %d dead, the dead list holds %d"
                      % (stats.get("dead", 0), sum(self.dead.values()))))
        for tag in ids:
            job_id = self.jobs.ids.get(tag) or self.named.get(tag) or tag
            ttl = self.redis("TTL", key("job:" + job_id))
            if ttl == -1:
                v.append((job_id, "job:%s has no expiry" % job_id))


ENDPOINT_KEYS_S = 10  # --credentials-endpoint: each set of keys expires 10 s after it is served,
ENDPOINT_LEAD_MS = 9500  # and is asked for again 9.5 s before that

# --credentials-process: the program, which asks the endpoint (argv[1]) and prints its keys
PROCESS_HELPER = r'''
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
d = json.load(opener.open(sys.argv[1], timeout=5))
print(json.dumps({"Version": 1, "AccessKeyId": d["AccessKeyId"],
                  "SecretAccessKey": d["SecretAccessKey"], "SessionToken": d.get("Token"),
                  "Expiration": d["Expiration"]}))
'''


NOTABLE = ("parked_job_lost", "postback_given_up", "unsettled_dropped", "upload_poisoned",
           "job_unsettled", "settle_resumed", "lease_lost", "worker_reregistered", "task_stranded",
           "orphans_returned", "s3_credentials_retry", "job_begin_failed")
LOST = ("parked_job_lost", "postback_given_up")  # something given up: a violation here


def log_events(tmp):
    """{event: [log line]} of the NOTABLE events in every worker's log."""
    out = collections.defaultdict(list)
    for log in sorted(tmp.glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            for ev in NOTABLE:
                if "event=%s " % ev in line:
                    out[ev].append(line)
    return out


def behind_calls(tmp):
    """Counter of (script, answered, ok) over the debug lines of the calls written behind begin.lua
    (behind=1; answered 0: no answer came, the connection failed or timed out), every worker's
    log; and ["script:job_id"] of those with no answer."""
    calls, lost = collections.Counter(), []
    for log in sorted(tmp.glob("worker-*.log")):
        started = {}  # pid (None: the process is the worker) -> the job it started last
        for line in log.read_text(errors="replace").splitlines():
            if " event=job_start " in line or " event=redis " in line and " behind=1 " in line:
                f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            else:
                continue
            if f["event"] == "job_start":
                started[f.get("pid")] = f.get("job_id")
                continue
            calls[f.get("script"), f.get("answered"), f.get("ok")] += 1
            if f.get("answered") == "0":  # the line names no job: the one its process started
                job = f.get("job_id") or started.get(f.get("pid")) or "?"
                lost.append("%s:%s" % (f.get("script"), job))
    return calls, lost


def report(c, ids, violations):
    stats = {}
    flat = c.redis("HGETALL", key("stats"))
    for i in range(0, len(flat), 2):
        stats[flat[i]] = int(flat[i + 1])
    meant = collections.Counter(c.jobs.meant.values())
    meant["without job_id"] = len(ids) - len(c.jobs.ids)
    print("chaos: seed %d, %d jobs (%s), %d workers, %.1f s" % (
        c.opts.seed, len(ids), ", ".join("%s %d" % kv for kv in sorted(meant.items())),
        c.opts.workers, c.elapsed))
    print("faults: %d worker kills (and %d stops, %d freezes), %d redis restarts, %d pauses, "
          "%d write refusals, %d s3 bursts, %d postback 500 bursts, %d key rotations" % (
        c.counts["kill"], c.counts["term"], c.counts["freeze"], c.counts["redis_restart"],
        c.counts["redis_pause"], c.counts["redis_oom"],
        sum(n for k, n in c.counts.items() if k.startswith("s3_")), c.counts["postback_500"],
        c.counts["creds_rotate"]))
    print("postbacks: %d delivered, %d duplicates after a kill; dead entries %d; failures a fault "
          "budget explains %d" % (sum(len(p) for p in c.delivered.values()),
                                  c.counts["duplicate_postbacks_after_kill"],
                                  sum(c.dead.values()), len(c.explained)))
    for job_id, text in c.explained[:10]:
        print("  explained: %s %s" % (job_id, text))
    print("stats: %s" % json.dumps(stats, sort_keys=True))
    if c.received_short:
        print("received: %d short of the jobs, runs whose begin.lua failed (job_begin_failed %d) "
              "and was not counted" % (c.received_short, len(c.logged["job_begin_failed"])))
    if c.opts.fast_jobs:
        calls, lost = behind_calls(c.tmp)
        scripts = sorted({s for s, _, _ in calls}, key=str)

        def per_script(answered, ok=None):
            return ", ".join("%s %d" % (s, sum(n for (s2, a, o), n in calls.items()
                                              if s2 == s and a in answered and ok in (None, o)))
                             for s in scripts) or "none"
        print("fast jobs: %d; written behind begin.lua: %s; an error answer: %s; no answer: %s "
              "(jobs %s)" % (c.jobs.n_fast, per_script("01"), per_script("1", "0"),
                             per_script("0"), " ".join(sorted(set(lost))[:20]) or "-"))
    print("logged: %s" % ", ".join("%s %d" % (ev, len(c.logged[ev])) for ev in NOTABLE))
    if c.timed_out:
        print("the deadline (%.0f s) passed first: what is still under way is listed as "
              "violations; look at the delayed entries' due times before calling it a loss"
              % c.opts.deadline)
    print("violations: %d" % len(violations))
    for job_id, what in violations:
        print("VIOLATION %s: %s" % (job_id, what))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", required=True)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--processes", action="store_true",
                    help="one pixq-worker --processes WORKERS; its children are killed")
    ap.add_argument("--kill-every", type=float, nargs=2, default=(0.7, 2.5), metavar=("MIN", "MAX"),
                    help="seconds between worker kills, drawn between MIN and MAX")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds for the whole run (60 + a second a job: chaos-a's 4 PUT/s, "
                         "slowed by the SlowDown bursts, takes about one a job)")
    ap.add_argument("--rotate-credentials", action="store_true",
                    help="S3 keys from a credentials file, replaced every 3 to 8 s")
    ap.add_argument("--credentials-endpoint", action="store_true",
                    help="--rotate-credentials, the keys from a container credentials endpoint")
    ap.add_argument("--credentials-process", action="store_true",
                    help="--credentials-endpoint, asked by a credential_process")
    ap.add_argument("--fast-jobs", action="store_true",
                    help="%d %%%% of the jobs an 8x8 canvas, settled in a millisecond or two "
                         "(finish.lua or posting.lua written behind begin.lua), a wave ahead of "
                         "a Redis fault every 1 to 3 s while the waves last" % (FAST_SHARE * 100))
    ap.add_argument("--smoke", action="store_true",
                    help="12 jobs, 2 workers, a kill, a Redis restart and a key rotation "
                         "(--rotate-credentials; --credentials-endpoint with an odd seed)")
    ap.add_argument("--verbose", action="store_true", help="print each fault as it happens")
    ap.add_argument("--keep", action="store_true", help="keep the logs (the directory is printed)")
    opts = ap.parse_args()
    if opts.seed is None:
        opts.seed = random.SystemRandom().randrange(1 << 20)
    if opts.smoke:  # the keys rotated in a file, or (an odd seed) served by an endpoint
        opts.jobs, opts.workers, opts.deadline = 12, 2, 90
        opts.rotate_credentials = True
        opts.credentials_endpoint = opts.credentials_endpoint or opts.seed % 2 == 1
    if opts.credentials_process:
        opts.credentials_endpoint = True
    if opts.credentials_endpoint:
        opts.rotate_credentials = True
    if opts.deadline is None:
        opts.deadline = 60 + opts.jobs
    opts.worker = os.path.abspath(opts.worker)
    print(machine_line())
    tmp = memory_tmpdir("pixq-chaos-")
    c = Chaos(opts, tmp)
    violations = [("-", "did not run")]
    try:
        c.start()
        ids = c.run()
        for _, w in c.frozen:
            w.proc.send_signal(signal.SIGCONT)
        for w in c.workers + c.stopping:
            w.terminate(10)
        c.logged = log_events(tmp)
        violations = c.check(ids)
        violations += [("-", "logged: %s" % line[:300]) for ev in LOST for line in c.logged[ev]]
        report(c, ids, violations)
    finally:
        c.stop()
        if opts.keep or violations:
            print("logs kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
