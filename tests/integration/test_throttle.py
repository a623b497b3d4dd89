#!/usr/bin/python3
"""S3 throttling done right (issue 5): the fleet-wide limit per bucket, adaptive slowing, parked
uploads, S3's answers (retryable, final, wrong region), wait_for_s3, idle connections and
`pixq limit`, with real pixq-workers against the fault-injecting S3 stub (s3stub.py).

Everything is measured where S3 would see it: at the stub, which records each request's arrival
time (time.time(), the clock Redis's TIME uses on this host), bucket, status and the region it
was signed for, and which verifies every signature (a test fails if one request of the worker was
badly signed, or signed with a date more than 2 s old: each attempt must be signed afresh).

Jobs are tiny (a 64x64 PNG, one resize per save); every job has its own source path, so the
source server's count per path is the number of downloads of that job.

    /usr/bin/python3 tests/integration/test_throttle.py --worker build-thr/worker/pixq-worker \\
        --pixq build-thr/producer/pixq --data tests/data [RateTest] [-k region]

Set PIXQ_TEST_VERBOSE=1 to see the logs; each measuring test prints one line of figures to
stderr ("figures: ...").

How the figures are judged:

* Windows. GCRA with burst 0 spaces slots exactly 1/rate apart, so slots k and k + rate are
  exactly 1.000 s apart; a PUT arrives a few ms after its slot, and whenever slot k's PUT is a
  little later than slot k + rate's, both fall into one 1-s window at the stub: rate + burst + 1
  PUTs in a second without any excess. So the tests allow a slot-to-arrival jitter J and require
  at most rate + burst PUTs in every window of 1 - J s (a real excess still shows) and at most
  rate + burst + ceil(J * rate) in every window of 1 s. RateTest also prints the least J that
  explains its PUTs (s3stub.least_jitter: how late they were at least, for the next failure to
  tell). In a plain build J is 120 ms: the worker's own slot grace (SLOT_GRACE_MS in
  worker/upload.c: a parked output's slot still counts when a worker takes the task up to 100 ms
  late, so that a busy worker does not lose it) and 20 ms for the PUT to reach the stub. It was
  50 ms until 2026-12-02, above the 30 ms a run with the 2 cores busy needs, but CI, 6 tests at
  once on 2 cores, once saw 11 PUTs at 10/s in a window of 0.95 s. 150 ms in an ASan/UBSan
  build, where 4 instrumented workers on 2 cores were measured up to 60-100 ms late (22 PUTs in
  one 1-s window at 20/s, while every window of 0.95 s held at most 20), and once more than 100
  ms (21 PUTs in a window of 0.9 s, a fresh clone's run on a slow day). ParkedSlotTest, one
  worker waiting for its parked output's slot, keeps 50 ms (SLOT_JITTER_S): there lateness is
  the planning's error alone.
* Adaptive, rate. The stub lets at most 8 PUTs through per sliding second: the ceiling is 8/s.
  CUBIC cuts to 0.7 of the rate at the throttle (5.6/s after 8/s) and climbs back to 8/s within
  K = cbrt(8 * 0.3 / 0.4) = 1.8 s, so the time average over the second half stays above 6.5/s
  unless the fleet decreases more than once per episode or fails to recover. The rates are
  counted while the fleet still has a backlog: up to the 90th percentile of the accepted PUTs,
  from the first (backlog rate) and from the 50th (second half). The last few outputs are retries
  waiting out their own back-off (up to 16 s after a fourth SlowDown with the 1-s base); counted
  up to the last PUT, one such straggler stretched the span and a CI run read 4.23 PUT/s for a
  fleet held at 7-8/s. Both rates are checked: with PIXQ_S3_COOLDOWN_MS=0 (a decrease for every
  SlowDown) the rate collapses in the first second and takes 100 s to climb back, so the second
  half alone reads 7.1/s while the backlog rate is 1.4/s.
* Adaptive, 503s. Offered 20/s while 8/s are accepted: if the fleet holds its reduced rate
  while S3 keeps throttling, three decreases (one per 1-s cool-down: 20 -> 14 -> 9.8 -> 6.9/s)
  settle it within about 3 s, for about (20 - 8) + (14 - 8) + (9.8 - 8) = 20 SlowDowns; then
  each CUBIC probe above 8/s costs one or two (the stub also refuses the 9th PUT of a second
  that jitter squeezes in at 8.0/s), one probe per ~2 s: about 10 over the rest of the run.
  About 30 in all; 25 measured with PIXQ_S3_COOLDOWN_MS=250 (the closest the current worker
  comes to holding the rate). The test allows 60 for 160 outputs. Measured with the default
  1-s cool-down on 2026-11-28: 87 to 94, because CUBIC's recovery is counted in seconds from the
  decrease: one second after dropping 20/s to 14/s the rate is back at
  20 - 0.4 * (cbrt(15) - 1)^3 = 18.7/s, so the cool-down lets the rate fall only about 6 % per
  second: 15 s of SlowDowns, and sometimes an output that meets 5 of them in a row fails.
  Measured again later that day (most_slowdowns_one_output in the figures): 46 to 51 SlowDowns,
  an output meeting at most 3 or 4, and 5 (so the run failed) in 2 of 12 runs once retries were
  planned on time (plan_due in worker/worker.c) with the 200-ms retry base; with the 1-s base
  after a throttling answer (PIXQ_S3_THROTTLE_RETRY_BASE_MS, as the AWS SDKs' 2026 retry mode),
  at most 2 to 4, none failed in 6 runs; but a fresh-clone CI run later failed again (one output
  met its fifth SlowDown, in the ASan build). With full jitter a retry may come at once, and
  while the fleet still offers more than S3 takes each try fails with a fair chance: over 160
  outputs, five in a row for one of them is a tail event, not a fault of the limiter. The test
  therefore runs with PIXQ_S3_MAX_ATTEMPTS=8 and prints most_slowdowns_one_output; the budget
  itself (5, then the output fails) is FinalErrorTest's.
"""

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
import harness  # noqa: E402
import metastub  # noqa: E402
import s3stub  # noqa: E402
from harness import CONFIG, PixqTestCase, scaled  # noqa: E402
from test_fleet import parse_exposition, sample  # noqa: E402

TIMEOUT_S = 60
JITTER_S = 0.15 if CONFIG.sanitized else 0.12  # a fleet's PUTs: see "Windows" above
SLOT_JITTER_S = 0.15 if CONFIG.sanitized else 0.05  # one idle worker's parked PUT


def window_bounds(times, rate, burst):
    """(PUTs in the fullest 1-s window, allowed; in the fullest 1 - J window, allowed)."""
    extra = math.ceil(JITTER_S * rate - 1e-9)
    return (s3stub.window_max(times), rate + burst + extra,
            s3stub.window_max(times, 1.0 - JITTER_S), rate + burst)


def tiny_png():
    return (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()


def figures(name, **values):
    parts = []
    for k, v in values.items():
        parts.append("%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v))
    sys.stderr.write("figures: %s %s\n" % (name, " ".join(parts)))
    sys.stderr.flush()


def assert_jittered_ladder(case, waits):
    """Redis back-off waits: 100 ms doubling to 5 s, each between half its step and the step
    (equal jitter: a fleet that lost Redis together comes back apart), not the bare ladder."""
    ladder = [min(100 * 2 ** i, 5000) for i in range(len(waits))]
    for wait, step in zip(waits, ladder):
        case.assertTrue(step // 2 <= wait <= step, (waits, ladder))
    if len(waits) >= 3:
        case.assertNotEqual(waits, ladder)


class ThrottleCase(PixqTestCase):
    """Workers started by each test against the S3 stub."""

    s3_server = "stub"
    start_worker_in_setup = False
    buckets = ("pixq-test", "bkt-a", "bkt-b", "eu-bucket", "eu400-bucket", "flaky-bucket",
               "dead-bucket", "deny-bucket", "noimpl-bucket", "late-bucket", "never-bucket")

    def assert_revoked_keys_replaced_at_once(self, worker, prefix, revoke):
        """A job, then `revoke()` (new keys from the source, the old refused by S3 from now
        on), then another: its PUT meets InvalidAccessKeyId once, and the worker, after asking
        its source again at once, sends it once more with the new keys; no back-off."""
        first, second = prefix + "-1", prefix + "-2"
        self.push_jobs([self.job(first, "pixq-test")])
        self.assert_complete(self.postbacks_for([first])[first], first, "pixq-test", 1)
        revoke()
        time.sleep(0.2)  # past PIXQ_S3_CREDENTIALS_RETRY_MS since the fetch at start
        self.push_jobs([self.job(second, "pixq-test")])
        self.assert_complete(self.postbacks_for([second])[second], second, "pixq-test", 1)
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")],
                         [(200, ""), (403, "InvalidAccessKeyId"), (200, "")])
        self.assertEqual([e["code"] for e in worker.log_events("s3_credentials_retry")],
                         ["InvalidAccessKeyId"])
        self.assertFalse(worker.log_events("upload_retry"))
        self.assertEqual(len(self.s3.failures()), 1)
        self.s3.forget_failures()  # that one, and only that one, was meant

    def setUp(self):
        super().setUp()
        self.png = tiny_png()
        self.addCleanup(self.check_signatures)

    # -- the stub saw only good requests --------------------------------------------------------

    def check_signatures(self):
        """Every request verified, each signed within 2 s of its arrival (a fresh date per
        attempt)."""
        counts = self.s3.counts()
        self.assertEqual(counts["failed"], 0, "badly signed requests: %r" % self.s3.failures()[:3])
        for r in self.s3.records():
            if r.fault in ("reset", "dropped"):  # closed before it was read
                continue
            self.assertTrue(r.verified, r)
            skew = r.time - s3stub.parse_amz_date(r.amz_date)
            self.assertTrue(-1.0 <= skew < 2.0, "%r signed %.1f s before it arrived" % (r, skew))

    # -- jobs -----------------------------------------------------------------------------------

    def job(self, job_id, bucket, saves=1, wait_for_s3=False, buckets=None):
        """A job resizing its own copy of the tiny PNG `saves` times; save i goes to
        buckets[i] (or bucket) under <job_id>/<i>.png as image_identifier img<i>."""
        src = self.src.add("/src/%s.png" % job_id, self.png)
        functions = []
        for i in range(saves):
            b = buckets[i] if buckets else bucket
            functions.append({"name": "resize_to_fit", "params": {"width": 8 + 4 * i},
                              "save": {"image_identifier": "img%d" % i,
                                       "s3_destination": {"bucket": b,
                                                          "key": "%s/%d.png" % (job_id, i)}}})
        job = {"application_id": "test", "job_id": job_id, "src": src,
               "postback_url": self.postbacks.url("/pb"), "functions": functions}
        if wait_for_s3:
            job["wait_for_s3"] = True
        return job

    def push_jobs(self, jobs):
        """LPUSH the jobs, so that workers (who take from the right) take them in this order."""
        payloads = [json.dumps(j) for j in jobs]
        for i in range(0, len(payloads), 100):
            self.redis.lpush(self.key("jobs"), *payloads[i:i + 100])

    def postbacks_for(self, job_ids, timeout=TIMEOUT_S):
        """{job_id: postback}, waiting until every job has posted back."""
        wanted = set(job_ids)
        pbs = self.postbacks.wait_for_postbacks(len(wanted), scaled(timeout),
                                                lambda pb: pb.job_id in wanted,
                                                check=self.check_workers)
        return {pb.job_id: pb for pb in pbs}

    def assert_complete(self, pb, job_id, bucket, saves):
        """A success postback with every image of the job, each stored in the stub."""
        self.assert_saves_stored(pb.results, job_id, saves, lambda i: bucket)

    def assert_one_postback_each(self, job_ids):
        for job_id in job_ids:
            n = len([pb for pb in self.postbacks.postbacks if pb.job_id == job_id])
            self.assertEqual(n, 1, "%s posted back %d times" % (job_id, n))

    def assert_downloaded_once(self, job_ids):
        for job_id in job_ids:
            self.assertEqual(self.src.requests("/src/%s.png" % job_id), 1,
                             "source of %s downloaded more than once" % job_id)

    def blob_keys(self):
        return self.redis.keys(self.key("blob:*"))

    def only_urgent_served(self):
        """Pushes job d-1 on the default queue, past its parked limit, and u-1 on urgent: u-1 is
        posted back, and d-1 still waits 1.5 s later."""
        src = self.src.add("/q.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())
        self.push_job(self.make_job(src, "d.png", params={"width": 8}, job_id="d-1"))
        self.redis.lpush("pixq:{urgent}:jobs", json.dumps(
            self.make_job(src, "u.png", params={"width": 8}, job_id="u-1")))
        self.wait_for_postback(job_id="u-1")
        time.sleep(1.5)
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks], ["u-1"])
        self.assertEqual(self.redis.llen(self.key("jobs")), 1)

    def assert_nothing_parked(self):
        """No blob counted in pixq:{Q}:parked, its total 0 (besides them: scanned_at)."""
        left = self.redis.hgetall(self.key("parked"))
        self.assertEqual({k: v for k, v in left.items() if k != "scanned_at"}, {"total": "0"})

    def assert_no_leftovers(self, job_ids):
        """No blob remains; each job's state hash is gone or expiring; the queue is drained."""
        self.wait_until(lambda: not self.blob_keys(), 10, "no blob keys")
        for job_id in job_ids:
            ttl = self.redis.ttl(self.key("job:" + job_id))
            self.assertTrue(ttl == -2 or ttl > 0, "job:%s has no expiry (ttl %d)" % (job_id, ttl))
        self.assert_queue_drained()

    # -- the limiter ----------------------------------------------------------------------------

    def rl_key(self, bucket):
        return "pixq:rl:{%s}" % bucket

    def limit(self, bucket, rate, burst):
        self.redis.execute("HSET", self.rl_key(bucket), "rate", rate, "burst", burst)

    def limiter(self, bucket):
        return self.redis.hgetall(self.rl_key(bucket))

    def puts(self, bucket, status=None):
        return self.s3.records(method="PUT", bucket=bucket, status=status)

    def start_workers(self, n, **env):
        return [self.start_worker(**env) for _ in range(n)]

    def idle_worker_and_a_stall(self, rate, burst, stall_s, local_wait_ms=0):
        """Bucket A at rate and burst, one worker parking every output throttled for more than
        local_wait_ms (PIXQ_S3_LOCAL_WAIT_MS; 0: every one) and waiting for a job, the stub
        holding the next PUT to late-bucket for stall_s: (the worker, Redis's time in s)."""
        self.limit("bkt-a", rate, burst)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=local_wait_ms)
        self.wait_until(lambda: worker.log_events("worker_start"), 10, "worker_start")
        time.sleep(0.3)  # waiting for a job
        self.s3.stall("late-bucket", stall_s, methods=("PUT",), count=1)
        sec, usec = self.redis.execute("TIME")
        return worker, int(sec) + int(usec) / 1e6


# ---------------------------------------------------------------------------------------------


class RateTest(ThrottleCase):
    """4 workers, bucket A at 10 PUT/s and bucket B at 20 PUT/s, burst 0 (operator overrides),
    120 outputs each, pushed interleaved: 12 s at bucket A's rate (200 outputs, 20 s, until
    2026-12-01; a few ms of arrival jitter at each end of the span is still well inside the 5 %
    the rates are allowed)."""

    JOBS, SAVES = 30, 4

    def test_rate_accuracy_two_buckets(self):
        self.limit("bkt-a", 10, 0)
        self.limit("bkt-b", 20, 0)
        a_ids = ["rate-a-%02d" % i for i in range(self.JOBS)]
        b_ids = ["rate-b-%02d" % i for i in range(self.JOBS)]
        jobs = []
        for a, b in zip(a_ids, b_ids):
            jobs += [self.job(a, "bkt-a", self.SAVES), self.job(b, "bkt-b", self.SAVES)]
        self.start_workers(4)
        self.push_jobs(jobs)
        pbs = self.postbacks_for(a_ids + b_ids, timeout=90)

        a = [r.time for r in self.puts("bkt-a")]
        b = [r.time for r in self.puts("bkt-b")]
        a_rate, b_rate = s3stub.rate(a), s3stub.rate(b)
        # windows of 1 s and of 1 s less the jitter: see "Windows" in the module's comment
        a_win, a_max, a_win_j, a_max_j = window_bounds(a, 10, 0)
        b_win, b_max, b_win_j, b_max_j = window_bounds(b, 20, 0)
        a_late, b_late = s3stub.least_jitter(a, 10), s3stub.least_jitter(b, 20)
        figures("rate", a_puts=len(a), a_rate=a_rate, a_span=max(a) - min(a), a_window=a_win,
                a_window_short=a_win_j, b_puts=len(b), b_rate=b_rate, b_span=max(b) - min(b),
                b_window=b_win, b_window_short=b_win_j, jitter_s=JITTER_S,
                a_late_ms=round(1000 * a_late), b_late_ms=round(1000 * b_late),
                throttled=self.redis.execute("HGET", self.key("stats"), "throttled"))
        self.assertEqual(len(a), self.JOBS * self.SAVES)  # one PUT per output, nothing failed
        self.assertEqual(len(b), self.JOBS * self.SAVES)
        self.assertTrue(9.5 <= a_rate <= 10.5, "bucket A ran at %.2f PUT/s" % a_rate)
        self.assertTrue(19.0 <= b_rate <= 21.0, "bucket B ran at %.2f PUT/s" % b_rate)
        self.assertLessEqual(a_win_j, a_max_j)
        self.assertLessEqual(b_win_j, b_max_j)
        self.assertLessEqual(a_win, a_max)  # more only through arrival jitter
        self.assertLessEqual(b_win, b_max)
        for job_id in a_ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", self.SAVES)
        for job_id in b_ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-b", self.SAVES)
        self.assert_one_postback_each(a_ids + b_ids)
        self.assert_downloaded_once(a_ids + b_ids)
        self.assert_no_leftovers(a_ids + b_ids)


class AdaptiveTest(ThrottleCase):
    """S3 accepts 8 PUT/s (503 SlowDown above, sliding second) while the limit says 20/s,
    burst 0 (PIXQ_S3_RATE): 4 workers, 160 outputs."""

    JOBS, SAVES, S3_RATE = 40, 4, 8
    MAX_SLOWDOWNS = 60  # see "Adaptive, 503s" in the module's comment

    def test_fleet_settles_near_what_s3_accepts(self):
        self.s3.slow_down_above("bkt-a", self.S3_RATE)
        ids = ["adapt-%02d" % i for i in range(self.JOBS)]
        # PIXQ_S3_MAX_ATTEMPTS 8, not 5: the run measures how the fleet settles; how many
        # SlowDowns one output may meet is FinalErrorTest's (see "Adaptive, 503s" above)
        self.start_workers(4, PIXQ_S3_RATE="20/s,burst=0", PIXQ_S3_MAX_ATTEMPTS=8)
        t0 = time.time()
        self.push_jobs([self.job(i, "bkt-a", self.SAVES) for i in ids])
        pbs = self.postbacks_for(ids, timeout=120)

        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        slow = sorted(r.time for r in self.puts("bkt-a", 503))
        first, last = ok[0], ok[-1]
        lo, hi = len(ok) // 2, len(ok) * 9 // 10  # see "Adaptive, rate" in the module's comment
        backlog_rate = hi / (ok[hi] - first)
        half_rate = (hi - lo) / (ok[hi] - ok[lo])
        per_second = [0] * (int(last - first) + 1)
        for t in slow:
            per_second[min(int(t - first), len(per_second) - 1)] += 1
        settled = next(i for i in range(len(per_second) + 1)
                       if all(n <= 2 for n in per_second[i:]))
        state = self.limiter("bkt-a")
        per_output = {}
        for r in self.puts("bkt-a", 503):
            per_output[r.key] = per_output.get(r.key, 0) + 1
        figures("adaptive", outputs=len(ok), slowdowns=len(slow), span=last - first,
                tail_s=last - ok[hi],
                most_slowdowns_one_output=max(per_output.values(), default=0),
                overall_rate=s3stub.rate(ok), backlog_rate=backlog_rate,
                second_half_rate=half_rate,
                first_put_s=first - t0, decreases=state.get("decreases"),
                throttle_signals=state.get("throttle_signals"), settled_after_s=settled,
                slowdowns_per_second=",".join(map(str, per_second)))
        # every check, then one failure naming all that went wrong
        failed = {job_id: pb.results.get("errors") for job_id, pb in pbs.items()
                  if pb.results.get("errors")}
        problems = []
        if failed:
            problems.append("outputs never uploaded: %r" % failed)
        if len(slow) > self.MAX_SLOWDOWNS:
            problems.append("%d SlowDowns (at most %d), per second of the run: %s"
                            % (len(slow), self.MAX_SLOWDOWNS, per_second))
        for name, rate in (("backlog", backlog_rate), ("second half", half_rate)):
            if not 6.5 <= rate <= 9.5:  # see "Adaptive, rate" in the module's comment
                problems.append("%s at %.2f PUT/s" % (name, rate))
        if int(state["throttle_signals"]) != len(slow):
            problems.append("throttle_signals %s for %d SlowDowns"
                            % (state["throttle_signals"], len(slow)))
        if int(state["decreases"]) > (last - first) + 1:
            problems.append("%s decreases in %.1f s: more than one per episode"
                            % (state["decreases"], last - first))
        if problems:
            self.fail("\n".join(problems))
        self.assertEqual(len(ok), self.JOBS * self.SAVES)  # every output uploaded, once
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", self.SAVES)
        self.assert_downloaded_once(ids)
        self.assert_no_leftovers(ids)


class ParkingTest(ThrottleCase):
    """Outputs the limiter cannot take within PIXQ_S3_LOCAL_WAIT_MS (1 s) are parked as blobs
    and uploaded later from them, at their slots: never downloaded or processed again. 4 workers
    at 2 PUT/s, burst 0: each worker holds one reservation at a time, so slots 0.5 to 2 s away,
    and about half of the outputs are parked."""

    JOBS, SAVES, RATE = 5, 4, 2

    def test_parked_outputs_of_a_pre_process_job(self):
        """A pre_process job's outputs and the main job's are numbered apart: both parked, each
        uploads its own bytes and the job ends. (Numbered from 0 each, the second blob overwrote
        the first: pre.png held the main image, main.png never went, no postback ever.)"""
        self.limit("bkt-a", 2, 0)
        src = self.src.add("/q.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())

        def save(identifier, key):
            return {"image_identifier": identifier, "s3_destination": {"bucket": "bkt-a",
                                                                       "key": key}}
        job = {"job_id": "pre-park", "src": src, "postback_url": self.postbacks.url("/pb"),
               "pre_process": {"job": {"src": src, "functions": [
                   {"name": "resize_to_fit", "params": {"width": 40},
                    "save": save("pre", "pre.png")}]}},
               "functions": [{"name": "resize_to_fit", "params": {"width": 16},
                              "save": save("main", "main.png")}]}
        warm = self.make_job(src, "warm.png", params={"width": 8}, job_id="warm", bucket="bkt-a")
        self.push_job(warm)
        worker = self.start_worker()
        self.wait_for_postback(job_id="warm")  # the bucket's token is spent: the outputs park
        self.push_job(job)
        pb = self.wait_for_postback(30, job_id="pre-park")
        self.assertTrue(worker.log_events("job_parked"))
        self.assertNotIn("errors", pb.results)
        # the pre_process job's output is uploaded, not listed (as in Blitline)
        self.assertEqual([(i["image_identifier"], i["meta"]["width"])
                          for i in pb.results["images"]], [("main", 16)])
        self.assertEqual(harness.identify(self.s3.object("bkt-a", "pre.png")), ("PNG", 40, 40))
        self.assertEqual(harness.identify(self.s3.object("bkt-a", "main.png")), ("PNG", 16, 16))
        self.assert_queue_drained()

    def test_images_keep_the_order_of_their_saves(self):
        """Outputs to a throttled bucket are parked, those to another go at once: the postback
        lists them in the order of the saves all the same (it listed the parked ones last), each
        with its own size, as stored (a source wider than high: a parked output's width and
        height are not swapped)."""
        self.limit("bkt-a", 2, 0)
        src = self.src.add("/q.png", (CONFIG.data / "images" / "color-wm-64x40.png").read_bytes())
        order = [("a1", "bkt-a"), ("b1", "bkt-b"), ("a2", "bkt-a"), ("b2", "bkt-b")]
        job = {"job_id": "ordered", "src": src, "postback_url": self.postbacks.url("/pb"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 8 + i},
                              "save": {"image_identifier": ident, "s3_destination": {
                                  "bucket": bucket, "key": "%s.png" % ident}}}
                             for i, (ident, bucket) in enumerate(order)]}
        warm = self.make_job(src, "warm.png", params={"width": 8}, job_id="warm", bucket="bkt-a")
        self.push_job(warm)
        worker = self.start_worker()
        self.wait_for_postback(job_id="warm")  # bkt-a's token is spent: its outputs park
        self.push_job(job)
        pb = self.wait_for_postback(30, job_id="ordered")
        self.assertTrue(worker.log_events("job_parked"))
        self.assertEqual(worker.log_events("job_forgotten"), [])  # Redis lost nothing
        listed = [(i["image_identifier"], i["meta"]["width"]) for i in pb.results["images"]]
        self.assertEqual(listed, [("a1", 8), ("b1", 9), ("a2", 10), ("b2", 11)])
        for (ident, bucket), image in zip(order, pb.results["images"]):
            self.assertEqual(harness.identify(self.s3.object(bucket, ident + ".png")),
                             ("PNG", image["meta"]["width"], image["meta"]["height"]), image)
            self.assertLess(image["meta"]["height"], image["meta"]["width"], image)
        self.assertNotIn("pixq_image_numbers", pb.results)
        self.assertEqual(self.read_result("ordered"), pb.json)

    def test_parked_output_uploaded_while_redis_is_full(self):
        """Redis past maxmemory (noeviction) once the output is parked: its upload, one of
        pixq's own entries, is promoted at its slot and taken all the same (take.lua), and the
        job ends, while the worker takes no fresh job (test_reliability's FullRedisTest).
        Before, a full Redis promoted nothing and refused every reservation: the blob, whose
        upload frees memory, stayed until Redis had room."""
        self.limit("bkt-a", 0.5, 0)  # the next slot 2 s away, past PIXQ_S3_LOCAL_WAIT_MS
        src = self.src.add("/q.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())
        warm = self.make_job(src, "warm.png", params={"width": 8}, job_id="warm", bucket="bkt-a")
        self.push_job(warm)
        worker = self.start_worker()
        self.wait_for_postback(job_id="warm")  # the bucket's token is spent: the output parks
        self.push_job(self.make_job(src, "full.png", params={"width": 16}, job_id="park-full",
                                    bucket="bkt-a"))
        self.wait_until(lambda: worker.log_events("job_parked"), 20, "the output to park")
        self.redis.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.redis.execute("CONFIG", "SET", "maxmemory", "1")
        try:
            pb = self.wait_for_postback(30, job_id="park-full")
            self.assertTrue(worker.log_events("redis_full"))
        finally:
            self.redis.execute("CONFIG", "SET", "maxmemory", "0")
        self.assertNotIn("errors", pb.results)
        self.assertEqual(harness.identify(self.s3.object("bkt-a", "full.png")), ("PNG", 16, 16))

    def test_parked_output_of_a_failing_job_is_not_failed(self):
        """A job that fails after an output was made (a composite whose src is missing, after
        a save to a throttled bucket): that output is parked and uploaded, listed in images, and
        only the identifier not made is failed."""
        self.limit("bkt-a", 2, 0)
        src = self.src.add("/q.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())
        job = {"job_id": "park-fail", "src": src, "postback_url": self.postbacks.url("/pb"),
               "functions": [
                   {"name": "resize_to_fit", "params": {"width": 16},
                    "save": {"image_identifier": "made", "s3_destination": {
                        "bucket": "bkt-a", "key": "made.png"}}},
                   {"name": "composite", "params": {"src": self.src.url("/missing.png")},
                    "save": {"image_identifier": "lost", "s3_destination": {
                        "bucket": "bkt-a", "key": "lost.png"}}}]}
        warm = self.make_job(src, "warm.png", params={"width": 8}, job_id="warm", bucket="bkt-a")
        self.push_job(warm)
        worker = self.start_worker()
        self.wait_for_postback(job_id="warm")  # the bucket's token is spent: the output parks
        self.push_job(job)
        pb = self.wait_for_postback(30, job_id="park-fail")
        self.assertTrue(worker.log_events("job_parked"))
        self.assertEqual([i["image_identifier"] for i in pb.results["images"]], ["made"])
        self.assertEqual(pb.results.get("failed_image_identifiers"), ["lost"], pb.results)
        self.assertEqual(harness.identify(self.s3.object("bkt-a", "made.png")), ("PNG", 16, 16))

    def test_parked_outputs_uploaded_from_blobs(self):
        self.limit("bkt-a", self.RATE, 0)
        ids = ["park-%d" % i for i in range(self.JOBS)]
        workers = self.start_workers(4, PIXQ_BLOB_TTL_S=600)
        self.push_jobs([self.job(i, "bkt-a", self.SAVES) for i in ids])
        # while it runs: parked outputs wait as blobs with an expiry, their tasks in delayed
        seen = self.wait_until(self.blob_keys, 20, "a parked blob")
        ttl = self.redis.ttl(seen[0])
        # kept PIXQ_BLOB_TTL_S past its slot, at most JOBS x SAVES / RATE seconds away
        self.assertTrue(590 < ttl <= 600 + self.JOBS * self.SAVES / self.RATE + 1,
                        "blob %s ttl %d" % (seen[0], ttl))
        self.assertRegex(seen[0], r"^pixq:\{default\}:blob:park-\d:\d+$")
        self.assertGreater(self.redis.execute("ZCARD", self.key("delayed")), 0)
        max_blobs = len(seen)
        names = set(seen)
        pbs = {}
        deadline = time.monotonic() + scaled(60)
        while len(pbs) < len(ids) and time.monotonic() < deadline:
            blobs = self.blob_keys()
            max_blobs = max(max_blobs, len(blobs))
            names.update(blobs)
            pbs = {pb.job_id: pb for pb in self.postbacks.postbacks if pb.job_id in ids}
            self.check_workers()
            time.sleep(0.1)
        pbs = self.postbacks_for(ids)
        stats = self.redis.hgetall(self.key("stats"))
        processed = [e for w in workers for e in w.log_events("processed")]
        times = [r.time for r in self.puts("bkt-a")]
        figures("parking", outputs=self.JOBS * self.SAVES, max_blobs=max_blobs,
                throttled=stats.get("throttled"), processed=len(processed),
                puts=len(times), rate=s3stub.rate(times), window=s3stub.window_max(times),
                window_short=s3stub.window_max(times, 1.0 - JITTER_S))
        self.assertGreaterEqual(int(stats.get("throttled", 0)), self.JOBS)  # parked: a good part
        # parked outputs went at their slots: never more than the limit in a second
        self.assertLessEqual(s3stub.window_max(times, 1.0 - JITTER_S), self.RATE)
        self.assertTrue(0.9 * self.RATE <= s3stub.rate(times) <= 1.05 * self.RATE)
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", self.SAVES)
        self.assert_one_postback_each(ids)
        self.assert_downloaded_once(ids)
        self.assertEqual(sorted(e["job_id"] for e in processed), sorted(ids))  # processed once
        self.assertEqual(len(self.puts("bkt-a")), self.JOBS * self.SAVES)
        self.assert_no_leftovers(ids)
        # every blob is named blob:<id>:<n> (README's keys), the outputs numbered from 0: the
        # first output of a job that found the slots taken too
        for name in names:
            self.assertRegex(name, r"^pixq:\{default\}:blob:park-\d:[0-3]$")
        self.assertIn("0", {name.rsplit(":", 1)[1] for name in names}, sorted(names))


class ParkedSlotTest(ThrottleCase):
    """A parked output is uploaded at its slot, not up to a Redis tick (100 ms) later: the worker
    that parks it plans its next look at the delayed work for the output's due time and stops
    blocking a tick early (a blocking wait in Redis ends only on one of its ticks). One worker,
    every throttled output parked (PIXQ_S3_LOCAL_WAIT_MS=0), 5 PUT/s: each job's second PUT is
    due 200 ms after its first. Eight jobs one after another, each parking after an idle spell;
    without the planning every second PUT came 65 to 89 ms late."""

    RATE, RUNS = 5, 8

    def test_parked_output_goes_at_its_slot(self):
        self.limit("bkt-a", self.RATE, 0)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        lates = []
        for n in range(self.RUNS):
            job_id = "slot-%d" % n
            self.push_jobs([self.job(job_id, "bkt-a", 2)])
            self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "bkt-a", 2)
            first, second = sorted(r.time for r in self.puts("bkt-a"))[-2:]
            lates.append(second - first - 1.0 / self.RATE)
            time.sleep(0.4)  # idle: the next job's first PUT conforms at once
        figures("parked slot", late_ms=[round(x * 1000) for x in lates])
        self.assertEqual(int(self.redis.hgetall(self.key("stats")).get("throttled", 0)), self.RUNS)
        self.assertLess(max(lates), SLOT_JITTER_S, lates)
        # the bucket was never slowed down, so never re-planned: no parked upload brought forward
        self.assertEqual(worker.log_events("bucket_replanned"), [])
        self.assertEqual(worker.log_events("uploads_replanned"), [])
        # each job ends with the task that uploads its parked output: its job_done counts that PUT
        # (logged once finish.lua settled it, after the postback)
        def every_done():
            done = {e["job_id"]: e for e in worker.log_events("job_done")}
            return done if len(done) == self.RUNS else None
        done = self.wait_until(every_done, 10, "every job's job_done")
        for n in range(self.RUNS):
            self.assertGreater(float(done["slot-%d" % n]["upload_ms"]), 0, done["slot-%d" % n])
            # README (Logs): it covers that task only, which downloaded and processed nothing
            self.assertEqual((float(done["slot-%d" % n]["fetch_ms"]),
                              float(done["slot-%d" % n]["process_ms"])), (0, 0),
                             done["slot-%d" % n])
        # the stats count the bytes of both kinds of upload, once each, by the next heartbeat (5 s)
        size = sum(r.size for r in self.puts("bkt-a", status=200))
        self.wait_until(lambda: int(self.redis.hgetall(self.key("stats")).get(
            "uploaded_bytes", 0)) == size, 10, "uploaded_bytes = %d" % size)


class DrainParkedTest(ThrottleCase):
    """README, Draining a worker: a stopped worker does not wait for the outputs it parked;
    they wait in Redis and another worker uploads them at their slots (never processing their
    jobs again), its job_done lines saying so. One worker parks every throttled output
    (PIXQ_S3_LOCAL_WAIT_MS=0) of 8 one-output jobs at 1 PUT/s, burst 0: slots up to 7 s
    ahead."""

    JOBS = 8

    def test_stopped_worker_leaves_its_parked_outputs_to_another(self):
        self.limit("bkt-a", 1, 0)
        a = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        ids = ["dp-%d" % i for i in range(self.JOBS)]
        self.push_jobs([self.job(i, "bkt-a") for i in ids])
        # every job taken: uploaded, or parked (a blob and its upload task in Redis)
        self.wait_until(lambda: len(a.log_events("job_parked")) +
                        len(self.puts("bkt-a", 200)) >= self.JOBS, 20, "every output placed")
        status = self.kill_worker(a, signal.SIGTERM)
        self.assertEqual(status, 0)
        done_by_a = {e["job_id"] for e in a.log_events("job_done")}
        left = [i for i in ids if i not in done_by_a]
        self.assertTrue(left, "every parked output went before the stop: nothing to check")
        self.assertTrue(self.blob_keys())  # the parked outputs, kept in Redis
        self.assertGreaterEqual(self.redis.execute("ZCARD", self.key("delayed")), len(left))
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks
                          if pb.job_id in left], [])
        b = self.start_worker()
        pbs = self.postbacks_for(ids)
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        self.wait_until(lambda: {e["job_id"] for e in b.log_events("job_done")} >= set(left),
                        10, "the other worker's job_done lines")
        self.assertEqual(b.log_events("job_start"), [])  # uploads only, no job run again
        self.assert_downloaded_once(ids)
        self.assert_one_postback_each(ids)
        self.assert_no_leftovers(ids)


class SlotAfterLongJobTest(ThrottleCase):
    """A parked output keeps its slot while its job goes on with other outputs. One worker, every
    throttled output parked (PIXQ_S3_LOCAL_WAIT_MS=0), bucket A at 2 PUT/s, burst 0, its next
    slot set 3 s ahead; the job's output 0 goes to bucket A (parked for that slot), its output 1
    to a bucket whose PUT the stub holds for 2 s, so the job parks at about +2 s. Its task must be
    due at the slot (+3 s), not 3 s after the park: there it missed the slot's grace
    (SLOT_GRACE_MS), logged slot_missed (late_ms about 2000) and took a new slot at about +5 s."""

    SLOT_S, STALL_S = 3.0, 2.0

    def test_parked_output_goes_at_its_slot_after_the_job_went_on(self):
        worker, now = self.idle_worker_and_a_stall(2, 0, self.STALL_S)
        slot = now + self.SLOT_S
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat", "%.0f" % (slot * 1e6))
        self.push_jobs([self.job("late-1", None, 2, buckets=["bkt-a", "late-bucket"])])
        pb = self.postbacks_for(["late-1"])["late-1"]
        self.assertNotIn("errors", pb.results, pb.results)
        put = self.puts("bkt-a")
        stalled = self.puts("late-bucket")
        parked = worker.log_events("job_parked")
        missed = worker.log_events("slot_missed")
        figures("slot after long job", put_after_slot_s=put[0].time - slot,
                stalled_put_answered_before_slot_s=slot - stalled[0].end,
                upload_parked=[e.get("delay_ms") for e in worker.log_events("upload_parked")],
                slot_missed=[e.get("late_ms") for e in missed])
        self.assertEqual(len(parked), 1, parked)
        self.assertEqual([(r.status, r.key) for r in put], [(200, "late-1/0.png")])
        # the job went on past the park of output 0 for the stall, and parked before the slot
        self.assertLess(stalled[0].end, slot - 0.3)
        self.assertEqual(missed, [])
        # at its slot, not STALL_S later (generous: a busy machine may be a few 100 ms late)
        self.assertTrue(-0.05 <= put[0].time - slot <= 0.7, put[0].time - slot)
        # the reservation was used: nothing else was taken from bucket A's limit. Its tat is the
        # slot's (slot + 1/2 s), or the time the worker came back if that was later (reading the
        # bucket's epoch moves a tat in the past to now); a new token would put it 1/2 s past
        # either
        tat = int(self.limiter("bkt-a")["tat"])
        self.assertGreaterEqual(tat, round(slot * 1e6) + 500000)
        self.assertLessEqual(tat, round(max(slot + 0.5, put[0].time) * 1e6) + 10000)


class FarSlotTest(ThrottleCase):
    """A slot further away than PIXQ_S3_HORIZON_MS (1 s here) is not reserved: the output parks
    until then holding nothing, and takes its token when it comes. Bucket A at 1 PUT/s, burst 0,
    its next slot set 3 s ahead; one worker parking every throttled output."""

    def parks_for_the_far_slot(self, job_id, local_wait_ms):
        """One job's output, its slot 3 s away past the 1 s horizon, with PIXQ_S3_LOCAL_WAIT_MS
        `local_wait_ms`: parked once, sent at the slot, and its token taken then."""
        self.limit("bkt-a", 1, 0)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=local_wait_ms, PIXQ_S3_HORIZON_MS=1000)
        self.wait_until(lambda: worker.log_events("worker_start"), 10, "worker_start")
        sec, usec = self.redis.execute("TIME")
        slot = int(sec) + int(usec) / 1e6 + 3.0
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat", "%.0f" % (slot * 1e6))
        self.push_jobs([self.job(job_id, "bkt-a")])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "bkt-a", 1)
        put = self.puts("bkt-a")
        self.assertEqual(len(put), 1)
        self.assertGreaterEqual(put[0].time, slot - 0.05)
        self.assertEqual(len(worker.log_events("upload_parked")), 1)
        # the token was taken when the output came back, at the slot or a little after: one
        # interval past that (the slot itself, had it gone without one)
        self.assertGreaterEqual(int(self.limiter("bkt-a")["tat"]), round(slot * 1e6) + 1000000)

    def test_output_parked_past_the_horizon_takes_its_token_when_it_comes(self):
        self.parks_for_the_far_slot("far-1", 0)

    def test_not_waited_for_in_the_process_however_long_the_local_wait(self):
        """PIXQ_S3_LOCAL_WAIT_MS (5 s) longer than the horizon: the slot 3 s away, which the
        horizon leaves unreserved, is still not waited for in the process (the worker would
        send then without a token, and the bucket's next upload take the same slot): the
        output parks and takes its token when it comes."""
        self.parks_for_the_far_slot("far-2", 5000)


class BusyAtTheSlotCase(ThrottleCase):
    """One worker, every throttled output parked (PIXQ_S3_LOCAL_WAIT_MS=0), bucket A at 2 PUT/s,
    burst 2 (1 s of lateness), its next slot set SLOT_S ahead; job 1's output goes to bucket A
    (parked for that slot), then job 2's output to a bucket whose PUT the stub holds for
    STALL_S: the worker comes for the slot about 0.5 s late (0.45 s and the two jobs)."""

    SLOT_S, STALL_S, BURST, LOCAL_WAIT_MS = 1.0, 1.45, 2, 0

    def busy_at_the_slot(self, prefix, burst_then=None):
        """Runs the two jobs (bucket A's burst set to `burst_then` once the output is parked,
        if given); returns (slot, tat as set, bucket A's PUTs, slot_missed events)."""
        worker, now = self.idle_worker_and_a_stall(2, self.BURST, self.STALL_S,
                                                   self.LOCAL_WAIT_MS)
        slot = now + self.SLOT_S
        tat = slot + self.BURST * 0.5  # a slot is burst intervals before tat, each 1/2 s
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat", "%.0f" % (tat * 1e6))
        ids = [prefix + "-1", prefix + "-2"]
        self.push_jobs([self.job(ids[0], "bkt-a"), self.job(ids[1], "late-bucket")])
        if burst_then is not None:
            self.wait_until(lambda: worker.log_events("upload_parked"), 10, "upload_parked")
            self.limit("bkt-a", 2, burst_then)  # the operator's, before the slot
        pbs = self.postbacks_for(ids)
        for job_id in ids:
            self.assertNotIn("errors", pbs[job_id].results, pbs[job_id].results)
        put = self.puts("bkt-a")
        stalled = self.puts("late-bucket")
        missed = worker.log_events("slot_missed")
        figures("busy at the slot", burst_then=burst_then, put_after_slot_s=put[0].time - slot,
                stalled_put_answered_after_slot_s=stalled[0].end - slot,
                slot_missed=[e.get("late_ms") for e in missed])
        self.assertGreater(stalled[0].end, slot + 0.3)  # the worker was busy at the slot
        self.assertEqual([(r.status, r.key) for r in put], [(200, ids[0] + "/0.png")])
        return slot, tat, put, missed


class BusyAtTheSlotTest(BusyAtTheSlotCase):
    """A parked output whose worker is busy when its slot comes still uses the slot when it is
    late by no more than the bucket's burst intervals (such a send keeps the bucket within its
    rate and burst, as a token that goes at once does). It logged slot_missed and took another
    token (the slot lost: with every worker busy in long jobs, 2.9 PUT/s of 4 went); now the slot
    is used and the bucket's tat stays."""

    def test_slot_used_late_within_the_burst(self):
        slot, tat, put, missed = self.busy_at_the_slot("busy")
        self.assertEqual(missed, [])
        self.assertTrue(0.3 <= put[0].time - slot <= 1.0, put[0].time - slot)
        # the slot reserved was used: no other token was taken from bucket A's limit
        self.assertEqual(int(self.limiter("bkt-a")["tat"]), round(tat * 1e6) + 500000)


class BusyAtTheSlotLoweredBurstTest(BusyAtTheSlotCase):
    """As BusyAtTheSlotTest, but the operator lowers the bucket's burst to 0 (pixq limit set)
    while the output is parked: its slot, reserved at burst 2 (1 s of lateness), may then be
    used only SLOT_GRACE_MS late, as the bucket's burst is now. The slot is missed (slot_missed)
    and the output takes a new one at the new burst. It used the slot as late as the old burst
    allowed (the lateness the task kept from when it was reserved): with a burst of 1000 lowered
    to 0, outputs held slots up to 1000 intervals late and went bunched, past the burst the
    operator had set."""

    def test_slot_late_by_the_old_burst_is_missed(self):
        slot, tat, put, missed = self.busy_at_the_slot("lowb", burst_then=0)
        self.assertEqual(len(missed), 1, missed)
        # a new token at burst 0, after the one reserved: its slot 1.5 s after the one missed
        self.assertGreaterEqual(put[0].time, tat + 0.5 - 0.05)
        self.assertEqual(int(self.limiter("bkt-a")["tat"]), round(tat * 1e6) + 1000000)


class BusyAtTheSlotLocalWaitTest(BusyAtTheSlotCase):
    """As BusyAtTheSlotTest, but at burst 0 with PIXQ_S3_LOCAL_WAIT_MS 2 s (the slot 2.5 s away,
    so the output still parks): a slot may be used as late as a worker would have waited for it
    in the process, so the worker about 0.5 s late still uses it (SLOT_GRACE_MS, 100 ms, alone
    would have it missed and a new slot taken 0.5 s later)."""

    SLOT_S, STALL_S, BURST, LOCAL_WAIT_MS = 2.5, 2.95, 0, 2000

    def test_slot_used_late_within_the_local_wait(self):
        slot, tat, put, missed = self.busy_at_the_slot("busylw")
        self.assertEqual(missed, [])
        self.assertTrue(0.3 <= put[0].time - slot <= 2.0, put[0].time - slot)
        # nothing more was taken from bucket A's limit than the slot reserved: its tat is that
        # slot's (slot + 1/2 s), or the time the worker came back if that was later (the read of
        # the epoch moves a tat in the past to now, as the ASan build's 0.505 s late did); a new
        # slot would put it 1/2 s past either
        self.assertLessEqual(int(self.limiter("bkt-a")["tat"]),
                             round(max(tat + 0.5, put[0].time) * 1e6) + 10000)


class SlowDownNoRefillTest(ThrottleCase):
    """A SlowDown slows the fleet down: it does not refill the bucket. 4 workers at the default
    10 PUT/s, burst 20 (PIXQ_S3_RATE): a first batch drains the bucket and leaves slots reserved
    ahead; then S3 answers one PUT with 503 SlowDown, and a second batch of 30 jobs is pushed at
    once. The decrease drops the slots reserved ahead but leaves the bucket empty at 7/s, so the
    fleet sends at 7/s (growing back to 10/s along CUBIC, but the second batch reserves its slots
    at once, at the rate of that moment): measured 6 PUTs in the second after the 503, the first
    0.31 s after it. When the decrease set tat = now it handed out 21 tokens at once, which the
    second batch took at once: measured 27 PUTs in that second, 21 of them within 0.13 s."""

    FIRST, SECOND = 40, 30
    MAX_FIRST_SECOND = 14  # at most 10 at 7/s growing back to 10/s; 27 with the bucket refilled

    def test_slowdown_does_not_refill_the_bucket(self):
        first = ["nr-a-%02d" % i for i in range(self.FIRST)]
        second = ["nr-b-%02d" % i for i in range(self.SECOND)]
        self.start_workers(4, PIXQ_S3_RATE="10/s,burst=20")
        self.push_jobs([self.job(i, "bkt-a") for i in first])
        # the burst (21) and some paced PUTs: the bucket is drained, later outputs reserved ahead
        self.wait_until(lambda: len(self.puts("bkt-a", 200)) >= 25, 30, "25 PUTs")
        self.s3.fail("bkt-a", 503, "SlowDown", count=1)
        self.wait_until(lambda: self.puts("bkt-a", 503), 10, "a SlowDown")
        self.push_jobs([self.job(i, "bkt-a") for i in second])
        pbs = self.postbacks_for(first + second, timeout=90)

        t503 = self.puts("bkt-a", 503)[0].time
        ok = [r.time for r in self.puts("bkt-a", 200)]
        after = [t for t in ok if t503 < t]
        first_second = len([t for t in after if t <= t503 + 1.0])
        state = self.limiter("bkt-a")
        figures("slowdown no refill", puts_before=len(ok) - len(after),
                puts_first_second=first_second,
                puts_first_3s=len([t for t in after if t <= t503 + 3.0]),
                window_after=s3stub.window_max(after),
                offsets_first_second=",".join("%.2f" % (t - t503) for t in after
                                              if t <= t503 + 1.0),
                decreases=state.get("decreases"))
        self.assertEqual(state.get("decreases"), "1")
        self.assertLessEqual(first_second, self.MAX_FIRST_SECOND)
        self.assertEqual(len(ok), self.FIRST + self.SECOND)  # every output uploaded, once
        for job_id in first + second:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        self.assert_no_leftovers(first + second)


class MinRateTest(ThrottleCase):
    """PIXQ_S3_MIN_RATE (README: the lowest rate the adaptive limiter slows a bucket to)
    reaches rl_feedback.lua from the worker: at 10 PUT/s with a floor of 8, one SlowDown plans
    8/s, not 0.7 x 10 = 7, and the floor is kept for `pixq limit show`. Only the script's own
    tests gave it another floor than 0.5."""

    def test_a_slowdown_stops_at_the_floor(self):
        self.start_worker(PIXQ_S3_RATE="10/s,burst=5", PIXQ_S3_MIN_RATE="8")
        self.s3.fail("bkt-a", 503, "SlowDown", count=1)
        self.push_jobs([self.job("floor-1", "bkt-a")])
        pb = self.postbacks_for(["floor-1"])["floor-1"]
        self.assert_complete(pb, "floor-1", "bkt-a", 1)
        self.assertEqual(len(self.puts("bkt-a", 503)), 1)
        state = self.limiter("bkt-a")
        self.assertEqual((state.get("decreases"), state.get("floor"), state.get("plan")),
                         ("1", "8", "8"), state)


class LimiterIdleTtlTest(ThrottleCase):
    """PIXQ_RL_IDLE_TTL_S (README: a limiter hash without an override expires after it without
    uploads; one with an override never does, and the next upload removes an expiry an HSET
    left on it) reaches rl_acquire.lua from the worker. Only the script's own tests and `pixq
    limit reset` at the default gave it a value: a worker passing the default day, or seconds
    read as milliseconds, let every test pass."""

    def test_an_upload_sets_the_idle_expiry_and_keeps_an_override(self):
        self.limit("bkt-b", 50, 10)
        self.redis.execute("PEXPIRE", self.rl_key("bkt-b"), 600000)  # an HSET onto an expiry
        self.start_worker(PIXQ_RL_IDLE_TTL_S="120")
        self.push_jobs([self.job("idle-a", "bkt-a"), self.job("idle-b", "bkt-b")])
        pbs = self.postbacks_for(["idle-a", "idle-b"])
        self.assert_complete(pbs["idle-a"], "idle-a", "bkt-a", 1)
        self.assert_complete(pbs["idle-b"], "idle-b", "bkt-b", 1)
        ttl = self.redis.execute("PTTL", self.rl_key("bkt-a"))
        self.assertTrue(100000 <= ttl <= 120000, ttl)
        self.assertEqual(self.redis.execute("PTTL", self.rl_key("bkt-b")), -1)


class OutageRecoveryTest(ThrottleCase):
    """S3 answers every PUT to the bucket with 503 SlowDown for OUTAGE_S while 100 one-output
    jobs come in, then accepts again: 2 workers at 10 PUT/s, burst 0. The limiter sits at its
    floor (0.5/s) through the outage, and CUBIC brings it back to 10/s within about 4 s of the
    last SlowDown; then the backlog should go at 10/s: all in about 4 + 70 / 10 = 11 s.
    Measured before the limiter re-planned (rl_acquire.lua, replan.lua): half of the outputs
    13.2 s after the outage, 90 % 19.8 s, the last 20.4 s after it, 2 or 3 PUT/s at the end
    (the slots reserved at 0.5/s kept their 2-s spacing); after: 6.2, 9.0 and 9.6 s (with 100
    jobs and 12 s of outage: 22, 27.7 and 28.6 s before; 7.5, 11.5 and 12.4 s after)."""

    JOBS, OUTAGE_S, RATE = 70, 8, 10
    MAX_HALF_S, MAX_P90_S = 10, 14

    def test_fleet_comes_back_to_its_rate_after_an_outage(self):
        ids = ["out-%03d" % i for i in range(self.JOBS)]
        self.s3.fail("bkt-a", 503, "SlowDown")
        self.start_workers(2, PIXQ_S3_RATE="%d/s,burst=0" % self.RATE, PIXQ_S3_MAX_ATTEMPTS=20)
        self.push_jobs([self.job(i, "bkt-a") for i in ids])
        time.sleep(self.OUTAGE_S)
        self.s3.clear_faults()
        t_end = time.time()
        pbs = self.postbacks_for(ids, timeout=120)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        state = self.limiter("bkt-a")
        figures("outage recovery", outputs=len(ok), slowdowns=len(self.puts("bkt-a", 503)),
                first_put_after_s=ok[0] - t_end, drain_s=ok[-1] - t_end,
                half_s=ok[len(ok) // 2] - t_end, p90_s=ok[len(ok) * 9 // 10] - t_end,
                window_after=s3stub.window_max(ok), decreases=state.get("decreases"),
                replans=state.get("replans"),
                per_second=",".join(str(len([t for t in ok if k <= t - t_end < k + 1]))
                                    for k in range(int(ok[-1] - t_end) + 1)))
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        self.assertLessEqual(ok[len(ok) // 2] - t_end, self.MAX_HALF_S)
        self.assertLessEqual(ok[len(ok) * 9 // 10] - t_end, self.MAX_P90_S)
        self.assertGreaterEqual(int(state.get("replans", 0)), 1)
        # brought forward, never faster than the rate
        self.assertLessEqual(s3stub.window_max(ok, 1.0 - JITTER_S), self.RATE)
        self.assert_one_postback_each(ids)
        self.assert_downloaded_once(ids)
        self.assert_no_leftovers(ids)


class HeldSlotsReplanTest(ThrottleCase):
    """A bucket slowed to its floor a moment ago (as an outage leaves it: no 503 since), 1
    worker at 10 PUT/s, burst 0, and 20 jobs at once: their outputs take slots at about 0.5/s,
    the first now, the others parked 2 s apart, each holding its slot, and nothing else comes.
    The rate is back at 10/s within 4 s, but with no other upload to acquire a slot nothing
    re-planned: measured 38 s from the first PUT to the last. The first upload that comes for
    its held slot re-plans (current_epoch() in worker/upload.c reads the epoch through
    rl_acquire.lua): about 5 s."""

    JOBS, MAX_SPAN_S = 20, 15

    def test_uploads_holding_their_slots_replan(self):
        ids = ["held-%02d" % i for i in range(self.JOBS)]
        now_us = int(time.time() * 1e6)
        self.redis.execute("HSET", self.rl_key("bkt-a"), "w_max", 0.5, "last_fail", now_us,
                           "last_decrease", now_us, "plan", 0.5, "decreases", 1)
        worker = self.start_workers(1, PIXQ_S3_RATE="%d/s,burst=0" % 10)[0]
        self.push_jobs([self.job(i, "bkt-a") for i in ids])
        pbs = self.postbacks_for(ids, timeout=90)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        state = self.limiter("bkt-a")
        figures("held slots replan", outputs=len(ok), span_s=ok[-1] - ok[0],
                replans=state.get("replans"), window=s3stub.window_max(ok))
        # README: each re-plan is logged (bucket_replanned, by the upload that made it, at the
        # rate it found: at least twice the 0.5/s of the decrease, at most the configured
        # 10/s), and the worker brings the parked uploads forward one interval of that rate
        # apart (uploads_replanned, in the queue it serves)
        replanned = worker.log_events("bucket_replanned")
        brought = worker.log_events("uploads_replanned")
        self.assertTrue(replanned, "no bucket_replanned")
        self.assertEqual(len(brought), len(replanned), (replanned, brought))
        for r, b in zip(replanned, brought):
            self.assertTrue(r["job_id"] in ids and r["bucket"] == "bkt-a", r)
            self.assertTrue(1.0 <= float(r["rate"]) <= 10.0, r)
            self.assertEqual((b["queue"], b["bucket"]), ("default", "bkt-a"), b)
            self.assertAlmostEqual(float(b["interval_ms"]), 1000 / float(r["rate"]), delta=0.2)
        self.assertGreaterEqual(int(brought[0]["count"]), 1, brought)
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        # (it runs in both builds: the rate's windows are checked by OutageRecoveryTest, which
        # runs in the plain build only)
        self.assertLessEqual(ok[-1] - ok[0], self.MAX_SPAN_S)
        self.assert_no_leftovers(ids)


class RegionTest(ThrottleCase):
    """A bucket in eu-west-1 while AWS_REGION is us-east-1."""

    def check_region(self, bucket, first_status, region="eu-west-1"):
        worker = self.start_workers(1)[0]
        self.push_jobs([self.job("eu-1", bucket)])
        pb = self.postbacks_for(["eu-1"])["eu-1"]
        self.assert_complete(pb, "eu-1", bucket, 1)
        self.assertEqual([(r.status, r.region) for r in self.puts(bucket)],
                         [(first_status, "us-east-1"), (200, region)])
        state = self.limiter(bucket)
        self.assertEqual(state.get("region"), region)
        self.assertEqual(int(state.get("throttle_signals", 0)), 0)  # not throttling
        self.assertEqual(int(state.get("decreases", 0)), 0)
        # the next job goes to the remembered region at once
        self.push_jobs([self.job("eu-2", bucket)])
        self.assert_complete(self.postbacks_for(["eu-2"])["eu-2"], "eu-2", bucket, 1)
        self.assertEqual([(r.status, r.region) for r in self.puts(bucket)][2:],
                         [(200, region)])
        # the region found is logged once, by the upload that found it, as a warning (a setting
        # to fix: AWS_REGION, or the job's location; IMAGE_S3.md C.2)
        self.assertEqual([(e["level"], e["job_id"], e["bucket"], e["region"])
                          for e in worker.log_events("bucket_region")],
                         [("warn", "eu-1", bucket, region)])

    def test_301_permanent_redirect(self):
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.check_region("eu-bucket", 301)

    def test_aws_region_is_signed_for_at_once(self):
        """AWS_REGION (README: the default region of destination buckets) is the region the
        first request is signed for: with eu-west-1 there, a bucket of eu-west-1 takes its PUT
        at once, no redirect first. Every other test left it at us-east-1."""
        self.s3.set_region("eu-home", "eu-west-1")
        self.start_worker(AWS_REGION="eu-west-1")
        self.push_jobs([self.job("home-1", "eu-home")])
        self.assert_complete(self.postbacks_for(["home-1"])["home-1"], "home-1", "eu-home", 1)
        self.assertEqual([(r.status, r.region) for r in self.puts("eu-home")],
                         [(200, "eu-west-1")])

    def test_400_authorization_header_malformed_region_in_body(self):
        self.s3.set_region("eu400-bucket", "eu-west-1", style="400", region_header=False)
        self.check_region("eu400-bucket", 400)

    def test_s3_source_in_another_region(self):
        # an {"name": "s3"} source whose bucket lives elsewhere failed with the 301: sources now
        # follow S3's answer as uploads do
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.start_workers(1)
        self.push_jobs([self.job("eu-src-1", "eu-bucket")])  # puts eu-src-1/0.png there
        self.assert_complete(self.postbacks_for(["eu-src-1"])["eu-src-1"], "eu-src-1",
                             "eu-bucket", 1)
        job = self.job("eu-src-2", "pixq-test")
        job["src"] = {"name": "s3", "bucket": "eu-bucket", "key": "eu-src-1/0.png"}
        self.push_jobs([job])
        self.assert_complete(self.postbacks_for(["eu-src-2"])["eu-src-2"], "eu-src-2",
                             "pixq-test", 1)
        self.assertEqual([(r.status, r.region) for r in self.s3.records(method="GET",
                                                                         bucket="eu-bucket")],
                         [(301, "us-east-1"), (200, "eu-west-1")])
        # README (Logs): a debug line per S3 request, event=s3_get with method, bucket,
        # status, ms, and the job's id
        gets = self.programs[0].log_events("s3_get")
        self.assertEqual([(e.get("job_id"), e["method"], e["bucket"], e["status"]) for e in gets],
                         [("eu-src-2", "GET", "eu-bucket", "301"),
                          ("eu-src-2", "GET", "eu-bucket", "200")])
        self.assertTrue(all(float(e["ms"]) > 0 for e in gets), gets)

    def test_s3_source_region_is_remembered(self):
        # each job reading a source from a bucket in another region met the 301 again (for an
        # opt-in region's bucket: the 400, a HEAD of the bucket, then the GET): the region a
        # source's GET learned was forgotten with the job
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.s3.set_region("optin-bucket", "af-south-1", style="opt-in", region_header=False)
        for bucket in ("eu-bucket", "optin-bucket"):
            self.assertEqual(self.s3.put_object(bucket, "in/a.png", self.png), 200)
        self.start_workers(1)
        for i in range(3):
            for bucket in ("eu-bucket", "optin-bucket"):
                job_id = "src-%s-%d" % (bucket, i)
                job = self.job(job_id, "pixq-test")
                job["src"] = {"name": "s3", "bucket": bucket, "key": "in/a.png"}
                self.push_jobs([job])
                self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test",
                                     1)
        self.assertEqual([(r.status, r.region) for r in self.s3.records(bucket="eu-bucket")],
                         [(301, "us-east-1")] + [(200, "eu-west-1")] * 3)
        self.assertEqual([(r.method, r.status, r.region)
                          for r in self.s3.records(bucket="optin-bucket")],
                         [("GET", 400, "us-east-1"), ("HEAD", 400, "us-east-1")]
                         + [("GET", 200, "af-south-1")] * 3)

    def test_s3_source_regions_kept_for_the_last_32_buckets(self):
        # README: the worker keeps the region a source's GET learned for its last 32 such
        # buckets. Sources from 33 buckets in eu-west-1, then from the second again (kept: no
        # 301), then from the first again (the oldest, its place taken by the 33rd: a 301)
        buckets = ["src-b%02d" % i for i in range(33)]
        for bucket in buckets:
            self.s3.set_region(bucket, "eu-west-1")
            self.assertEqual(self.s3.put_object(bucket, "in/a.png", self.png), 200)
        worker = self.start_workers(1)[0]

        def run(job_ids, bucket_of):
            jobs = []
            for job_id in job_ids:
                job = self.job(job_id, "pixq-test")
                job["src"] = {"name": "s3", "bucket": bucket_of[job_id], "key": "in/a.png"}
                jobs.append(job)
            self.push_jobs(jobs)
            pbs = self.postbacks_for(job_ids)
            for job_id in job_ids:
                self.assert_complete(pbs[job_id], job_id, "pixq-test", 1)

        first = {"r32-%02d" % i: b for i, b in enumerate(buckets)}
        run(sorted(first), first)
        run(["r32-again-1"], {"r32-again-1": buckets[1]})
        run(["r32-again-0"], {"r32-again-0": buckets[0]})

        def gets(bucket):
            return [(r.status, r.region) for r in self.s3.records(method="GET", bucket=bucket)]

        self.assertEqual(gets(buckets[1]), [(301, "us-east-1"), (200, "eu-west-1")]
                         + [(200, "eu-west-1")])
        self.assertEqual(gets(buckets[0]), [(301, "us-east-1"), (200, "eu-west-1")] * 2)
        self.assertEqual(gets(buckets[32]), [(301, "us-east-1"), (200, "eu-west-1")])
        # each region learned is a warning, as an upload's (a job's location to set)
        said = [(e["level"], e["job_id"], e["bucket"], e["region"])
                for e in worker.log_events("bucket_region")]
        self.assertEqual(said[:2], [("warn", "r32-00", buckets[0], "eu-west-1"),
                                    ("warn", "r32-01", buckets[1], "eu-west-1")])
        self.assertEqual(len(said), 34)  # 33 buckets, the first twice

    def test_s3_sources_location_wins_over_the_remembered_region(self):
        """The region a source's GET learned is for the sources that name none: one whose
        bucket names its location is signed for that location (here a wrong one, which S3's
        301 then corrects), as an upload's is (test_jobs_location_wins_over_the_remembered_
        region)."""
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.assertEqual(self.s3.put_object("eu-bucket", "in/a.png", self.png), 200)
        self.start_workers(1)
        for job_id, bucket in (("loc-src-1", "eu-bucket"),
                               ("loc-src-2", {"name": "eu-bucket", "location": "us-east-1"})):
            job = self.job(job_id, "pixq-test")
            job["src"] = {"name": "s3", "bucket": bucket, "key": "in/a.png"}
            self.push_jobs([job])
            self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
        self.assertEqual([(r.status, r.region) for r in self.s3.records(bucket="eu-bucket")],
                         [(301, "us-east-1"), (200, "eu-west-1")] * 2)

    def test_region_that_is_not_a_region_name_is_not_followed(self):
        # the region goes into the AWS host name (s3.<region>.amazonaws.com) and is remembered
        # for the whole fleet: an answer naming "evil.example/x" must not be taken as one
        self.s3.fail("flaky-bucket", 301, "PermanentRedirect",
                     headers={"x-amz-bucket-region": "evil.example/x"})
        self.start_workers(1)
        self.push_jobs([self.job("odd-1", "flaky-bucket")])
        results = self.postbacks_for(["odd-1"])["odd-1"].results
        self.assertEqual(results.get("failed_image_identifiers"), ["img0"], results)
        self.assertIn("HTTP 301 PermanentRedirect", results["errors"][0])
        self.assertEqual(len(self.puts("flaky-bucket")), 1)
        self.assertIsNone(self.limiter("flaky-bucket").get("region"))

    def test_400_illegal_location_constraint_opt_in_region(self):
        # a bucket in a region one must opt in to (af-south-1, ap-east-1, me-south-1...) signed
        # for another: S3 answers 400 IllegalLocationConstraintException, naming the region only
        # in its message; the output failed at once. A HEAD of the bucket says where it lives
        self.s3.set_region("optin-bucket", "af-south-1", style="opt-in", region_header=False)
        self.check_region("optin-bucket", 400, "af-south-1")
        heads = self.s3.records(method="HEAD", bucket="optin-bucket")
        self.assertEqual([(r.key, r.status, r.region) for r in heads], [("", 400, "us-east-1")])

    def test_301_without_region_header(self):
        # a 301 PermanentRedirect whose x-amz-bucket-region is missing (a proxy that drops it)
        # names no region the worker reads: a HEAD of the bucket does, and the PUT follows it
        self.s3.set_region("eu-bucket", "eu-west-1", region_header=False)
        self.check_region("eu-bucket", 301)
        heads = self.s3.records(method="HEAD", bucket="eu-bucket")
        self.assertEqual([(r.key, r.status, r.region) for r in heads], [("", 301, "us-east-1")])
        # README (Logs): a line per S3 request at debug level, with method, bucket, status, ms
        # and the job's id; the bucket's HEAD is s3_head_bucket, which had no ms
        logged = self.programs[0].log_events("s3_head_bucket")
        self.assertEqual([(e.get("job_id"), e["method"], e["bucket"], e["status"], e["region"])
                          for e in logged], [("eu-1", "HEAD", "eu-bucket", "301", "eu-west-1")])
        self.assertGreater(float(logged[0]["ms"]), 0, logged)

    def test_wait_for_s3_heads_the_bucket_s_region(self):
        # wait_for_s3 after a PUT that followed a 301 to eu-west-1, then after one that went
        # there at once (the region remembered in the limiter hash): each object's HEAD is
        # signed for eu-west-1 and answers 200 at once; signed for us-east-1 it would meet the
        # 301 at every check, and the job would wait PIXQ_WAIT_FOR_S3_MAX_MS for nothing
        self.s3.set_region("eu-bucket", "eu-west-1")
        worker = self.start_worker()
        for job_id in ("euw-1", "euw-2"):
            self.push_jobs([self.job(job_id, "eu-bucket", wait_for_s3=True)])
            self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "eu-bucket", 1)
        self.assertEqual([(r.status, r.region) for r in self.puts("eu-bucket")],
                         [(301, "us-east-1"), (200, "eu-west-1"), (200, "eu-west-1")])
        heads = self.s3.records(method="HEAD", bucket="eu-bucket")
        self.assertEqual([(r.key, r.status, r.region) for r in heads],
                         [("euw-1/0.png", 200, "eu-west-1"), ("euw-2/0.png", 200, "eu-west-1")])
        self.assertEqual([(e["level"], e["unreadable"]) for e in worker.log_events("wait_for_s3")],
                         [("info", "0"), ("info", "0")])

    def test_wait_for_s3_heads_a_parked_output_in_the_bucket_s_region(self):
        # the same for an output parked for its slot, whose task met the 301 when it was sent:
        # the object recorded with the job (upload_done.lua) keeps the region S3 named
        self.s3.set_region("eu-bucket", "eu-west-1")
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "eu-bucket", 1)
        self.push_jobs([self.job("euw-p", "eu-bucket", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["euw-p"])["euw-p"], "euw-p", "eu-bucket", 1)
        self.assertEqual(len(worker.log_events("job_parked")), 1)
        self.assertEqual([(r.status, r.region) for r in self.puts("eu-bucket")],
                         [(301, "us-east-1"), (200, "eu-west-1")])
        heads = self.s3.records(method="HEAD", bucket="eu-bucket")
        self.assertEqual([(r.status, r.region) for r in heads], [(200, "eu-west-1")])
        self.assertEqual([(e["level"], e["unreadable"]) for e in worker.log_events("wait_for_s3")],
                         [("info", "0")])

    def test_s3_source_in_an_opt_in_region(self):
        self.s3.set_region("optin-bucket", "af-south-1", style="opt-in", region_header=False)
        self.assertEqual(self.s3.put_object("optin-bucket", "in/a.png", self.png), 200)
        self.start_workers(1)
        job = self.job("optin-src-2", "pixq-test")
        job["src"] = {"name": "s3", "bucket": "optin-bucket", "key": "in/a.png"}
        self.push_jobs([job])
        self.assert_complete(self.postbacks_for(["optin-src-2"])["optin-src-2"], "optin-src-2",
                             "pixq-test", 1)
        self.assertEqual([(r.status, r.region) for r in self.s3.records(method="GET",
                                                                         bucket="optin-bucket")],
                         [(400, "us-east-1"), (200, "af-south-1")])

    def test_head_bucket_failing_for_a_moment_is_retried(self):
        """The HEAD of the bucket that finds an opt-in region's name gets a 500 (or SlowDown, a
        reset): the upload is retried, as for any passing failure, and then finds the region.
        Before, the output failed for good, blamed on IllegalLocationConstraintException."""
        self.s3.set_region("optin-bucket", "af-south-1", style="opt-in", region_header=False)
        self.s3.fail("optin-bucket", 500, "InternalError", count=1, methods=("HEAD",),
                     any_region=True)
        self.start_workers(1)
        self.push_jobs([self.job("optin-3", "optin-bucket")])
        self.assert_complete(self.postbacks_for(["optin-3"])["optin-3"], "optin-3",
                             "optin-bucket", 1)
        self.assertEqual([(r.method, r.status, r.region)
                          for r in self.s3.records(bucket="optin-bucket")],
                         [("PUT", 400, "us-east-1"), ("HEAD", 500, "us-east-1"),
                          ("PUT", 400, "us-east-1"), ("HEAD", 400, "us-east-1"),
                          ("PUT", 200, "af-south-1")])

    def test_redirect_naming_the_signed_region_is_not_followed(self):
        """A 307 whose x-amz-bucket-region is the region the request was signed for (an
        S3-compatible store, or S3's DNS catching up) is retried with back-off, once an
        attempt: not sent again at once as if to another region (3 PUTs an attempt before)."""
        self.s3.fail("flaky-bucket", 307, "TemporaryRedirect",
                     headers={"x-amz-bucket-region": "us-east-1"})
        self.worker = self.start_workers(1)[0]
        self.push_jobs([self.job("same-1", "flaky-bucket")])
        results = self.postbacks_for(["same-1"])["same-1"].results
        self.assertEqual(results.get("errors"),
                         ["S3 temporarily unavailable after 5 attempts: S3 PUT %s: HTTP 307 "
                          "TemporaryRedirect: injected TemporaryRedirect"
                          % self.s3.object_url("flaky-bucket", "same-1/0.png")], results)
        self.assertEqual(len(self.puts("flaky-bucket")), 5)  # PIXQ_S3_MAX_ATTEMPTS
        self.assertEqual(self.worker.log_events("bucket_region"), [])
        self.assertIsNone(self.limiter("flaky-bucket").get("region"))

    def test_307_temporary_redirect(self):
        # failed the output at once: every upload to a bucket made less than a day ago
        self.s3.set_region("eu307-bucket", "eu-west-1", style="307")
        self.check_region("eu307-bucket", 307)

    def test_remembered_region_that_is_not_a_region_name_is_not_used(self):
        # the limiter hash is Redis's, writable by anyone with access to it: a region there that
        # is not a region name does not go into a host name or a signature
        self.redis.execute("HSET", self.rl_key("pixq-test"), "region", "evil.example/x")
        self.start_workers(1)
        self.push_jobs([self.job("odd-2", "pixq-test")])
        self.assert_complete(self.postbacks_for(["odd-2"])["odd-2"], "odd-2", "pixq-test", 1)
        self.assertEqual([(r.status, r.region) for r in self.puts("pixq-test")],
                         [(200, "us-east-1")])

    def test_jobs_location_wins_over_the_remembered_region(self):
        # the region remembered for the bucket is for outputs that name none: a job's own
        # s3_destination location is signed for as it is
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.redis.execute("HSET", self.rl_key("eu-bucket"), "region", "us-west-2")
        self.start_workers(1)
        job = self.job("loc-1", "eu-bucket")
        job["functions"][0]["save"]["s3_destination"]["bucket"] = {"name": "eu-bucket",
                                                                   "location": "eu-west-1"}
        self.push_jobs([job])
        self.assert_complete(self.postbacks_for(["loc-1"])["loc-1"], "loc-1", "eu-bucket", 1)
        self.assertEqual([(r.status, r.region) for r in self.puts("eu-bucket")],
                         [(200, "eu-west-1")])


class RegionHopsTest(ThrottleCase):
    """Wrong-region answers are followed twice for one upload attempt (MAX_REGION_HOPS in
    worker/upload.c), not more: a bucket in ap-southeast-2 whose first answers (stub faults,
    whatever region a request was signed for) name another region each."""

    def hops(self, job_id, regions):
        """The first PUTs answered 301 naming `regions` in turn (then the bucket's own 301s);
        returns (the job's results, [(status, region signed for)] of the PUTs)."""
        self.s3.set_region("hop-bucket", "ap-southeast-2")
        for region in regions:
            self.s3.fail("hop-bucket", 301, "PermanentRedirect", count=1, any_region=True,
                         headers={"x-amz-bucket-region": region})
        self.start_workers(1)
        self.push_jobs([self.job(job_id, "hop-bucket")])
        results = self.postbacks_for([job_id])[job_id].results
        return results, [(r.status, r.region) for r in self.puts("hop-bucket")]

    def test_two_wrong_region_answers_are_followed(self):
        results, puts = self.hops("hop-2", ["eu-west-1", "ap-southeast-2"])
        self.assertNotIn("errors", results, results)
        self.assertEqual(puts, [(301, "us-east-1"), (301, "eu-west-1"), (200, "ap-southeast-2")])
        self.assertEqual(self.limiter("hop-bucket").get("region"), "ap-southeast-2")

    def test_third_wrong_region_answer_fails_the_output(self):
        # the third answer is the bucket's own (it lives in ap-southeast-2): not followed
        results, puts = self.hops("hop-3", ["eu-west-1", "us-west-2"])
        self.assertEqual(results.get("failed_image_identifiers"), ["img0"], results)
        self.assertIn("HTTP 301 PermanentRedirect", results["errors"][0])
        self.assertEqual(puts, [(301, "us-east-1"), (301, "eu-west-1"), (301, "us-west-2")])
        self.assertEqual(self.limiter("hop-bucket").get("region"), "us-west-2")


class SessionTokenTest(ThrottleCase):
    """Temporary credentials: the session token goes with every request, signed, however long
    AWS makes it (an instance role's passes 1023 bytes, which the worker refused to start with)."""

    def test_long_session_token(self):
        token = "IQoJb3JpZ2luX2Vj" + "x" * 4000
        self.s3.session_token = token
        self.start_workers(1, AWS_SESSION_TOKEN=token)
        self.push_jobs([self.job("tok-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["tok-1"])["tok-1"], "tok-1", "pixq-test", 1)
        self.assertTrue(all(r.verified and r.status == 200
                            for r in self.s3.records(bucket="pixq-test")), self.s3.records())
        self.assertEqual({r.method for r in self.s3.records(bucket="pixq-test")}, {"PUT", "HEAD"})
        # a wrong token is S3's to refuse: the stub does, so the check above means something
        self.s3.session_token = token + "y"
        self.push_jobs([self.job("tok-2", "pixq-test")])
        results = self.postbacks_for(["tok-2"])["tok-2"].results
        self.assertIn("InvalidToken", results["errors"][0], results)


class FinalErrorTest(ThrottleCase):
    """S3's answers that end an output, and the other outputs of the same job carrying on."""

    def error_postback(self, job_id, buckets):
        self.worker = self.start_workers(1)[0]
        self.push_jobs([self.job(job_id, None, len(buckets), buckets=buckets)])
        pb = self.postbacks_for([job_id])[job_id]
        results = pb.results
        self.assertEqual(results["failed_image_identifiers"], ["img0"], results)
        self.assertEqual(len(results["errors"]), 1, results)
        self.assertEqual([im["image_identifier"] for im in results["images"]], ["img1"])
        self.assertIsNotNone(self.s3.object(buckets[1], "%s/1.png" % job_id))
        self.assertIsNone(self.s3.object(buckets[0], "%s/0.png" % job_id))
        self.assert_downloaded_once([job_id])
        self.assert_no_leftovers([job_id])
        return results["errors"][0], pb

    def test_temporarily_unavailable_after_last_attempt(self):
        self.s3.fail("dead-bucket", 503, "SlowDown")
        t0 = time.time()
        error, pb = self.error_postback("dead-1", ["dead-bucket", "pixq-test"])
        attempts = self.puts("dead-bucket")
        figures("final", attempts=len(attempts), seconds=pb.wall - t0,
                gaps=",".join("%.2f" % (b.time - a.time) for a, b in zip(attempts, attempts[1:])))
        # which object, what S3 said and how often: "<host> temporarily unavailable (SlowDown)"
        # named neither the bucket (path-style) nor the key
        self.assertEqual(error, "S3 temporarily unavailable after 5 attempts: S3 PUT %s: HTTP 503 "
                         "SlowDown: injected SlowDown"
                         % self.s3.object_url("dead-bucket", "dead-1/0.png"))
        self.assertEqual(len(attempts), 5)  # PIXQ_S3_MAX_ATTEMPTS
        self.assertTrue(all(r.status == 503 for r in attempts))
        for a in attempts:  # each attempt signed afresh (and check_signatures: within 2 s)
            for b in attempts:
                if b.time - a.time >= 1.0:
                    self.assertNotEqual(a.amz_date, b.amz_date)

    def test_temporarily_unavailable_transport_error(self):
        self.s3.reset("dead-bucket")  # every attempt: connection reset
        error, _ = self.error_postback("dead-2", ["dead-bucket", "pixq-test"])
        self.assertTrue(error.startswith("S3 temporarily unavailable after 5 attempts: S3 PUT %s: "
                                         % self.s3.object_url("dead-bucket", "dead-2/0.png")),
                        error)
        # 5 attempts by the worker; libcurl itself sends a request once more when a reused
        # connection dies before any answer, so the stub sees 5 to 10 PUTs
        attempts = [e for e in self.worker.log_events("s3_put") if e.get("bucket") == "dead-bucket"]
        self.assertEqual(len(attempts), 5)
        self.assertTrue(5 <= len(self.puts("dead-bucket")) <= 10)
        # each retry says why, at the default level (before, only delay_ms, whatever the cause)
        retries = self.worker.log_events("upload_retry")
        self.assertEqual([(e["job_id"], e["image_identifier"], e["attempt"], e["status"])
                          for e in retries], [("dead-2", "img0", str(n), "0") for n in (1, 2, 3, 4)])
        for e in retries:
            self.assertRegex(e["error"], r"(?i)(reset|recv|send|closed|empty reply|broken pipe)")

    def test_temporarily_unavailable_proxy_page_without_a_code(self):
        """README: a 502 is retried, and after the last attempt the output fails with `S3
        temporarily unavailable after N attempts: <the last attempt's error>`, which says what
        it met when S3 gave no code: `HTTP 502` from a proxy's HTML page."""
        self.s3.fail("dead-bucket", 502, None)
        error, _ = self.error_postback("dead-4", ["dead-bucket", "pixq-test"])
        self.assertEqual(error, "S3 temporarily unavailable after 5 attempts: S3 PUT %s: HTTP 502"
                         % self.s3.object_url("dead-bucket", "dead-4/0.png"))
        puts = self.puts("dead-bucket")
        self.assertEqual([r.status for r in puts], [502] * 5)  # PIXQ_S3_MAX_ATTEMPTS

    def test_transport_error_of_a_long_key_says_what_went_wrong(self):
        # the reason came after the whole URL: with a key of a few hundred bytes, the error
        # ended inside the key ("temporarily unavailable (S3 PUT http://.../kkkk...)"); the URL
        # is cut to 200 bytes
        self.s3.reset("dead-bucket")
        self.worker = self.start_workers(1)[0]
        job = self.job("dead-3", None, 2, buckets=["dead-bucket", "pixq-test"])
        job["functions"][0]["save"]["s3_destination"]["key"] = "dead-3/" + "k" * 400 + ".png"
        self.push_jobs([job])
        results = self.postbacks_for(["dead-3"])["dead-3"].results
        self.assertEqual(results["failed_image_identifiers"], ["img0"], results)
        error = results["errors"][0]
        self.assertTrue(error.startswith("S3 temporarily unavailable after 5 attempts: S3 PUT %s"
                                         % self.s3.object_url("dead-bucket", "dead-3/kkk")),
                        error)
        self.assertRegex(error, r"(?i)(reset|recv|send|closed|empty reply|broken pipe)", error)
        failed = [e for e in self.worker.log_events("upload_failed") if e.get("job_id") == "dead-3"]
        self.assertRegex(failed[0]["error"], r"(?i)(reset|recv|send|closed|empty reply|broken pipe)")
        self.assertEqual(failed[0]["bucket"], "dead-bucket")  # README (Logs)

    def assert_final(self, job_id, bucket, status, code):
        """S3 answering `status` `code` fails the output at once, with both in its error."""
        self.s3.fail(bucket, status, code)
        error, _ = self.error_postback(job_id, [bucket, "pixq-test"])
        self.assertIn(str(status), error)
        self.assertIn(code, error)
        self.assertNotIn("temporarily unavailable", error)
        self.assertEqual(len(self.puts(bucket)), 1)  # no retry

    def test_access_denied_is_final(self):
        self.assert_final("deny-1", "deny-bucket", 403, "AccessDenied")

    def test_access_denied_with_a_large_error_page_is_final(self):
        # a body over the worker's cap for error pages (64 KiB) was taken for a transport
        # error: retried 5 times and reported as "temporarily unavailable"
        self.s3.fail("deny-bucket", 403, "AccessDenied", message="x" * 70000)
        error, _ = self.error_postback("deny-2", ["deny-bucket", "pixq-test"])
        self.assertIn("HTTP 403", error)
        self.assertIn("its body cut short", error)
        self.assertNotIn("temporarily unavailable", error)
        self.assertEqual(len(self.puts("deny-bucket")), 1)  # no retry

    def test_other_4xx_is_final(self):
        # a 400 that is not RequestTimeout nor a wrong region: the same request fails again
        self.assert_final("inv-1", "deny-bucket", 400, "InvalidArgument")

    def test_http_version_not_supported_is_final(self):
        self.assert_final("v505-1", "noimpl-bucket", 505, "HttpVersionNotSupported")

    def test_not_implemented_is_final(self):
        # a 5xx that every attempt would meet again (an S3-compatible store without a feature)
        self.assert_final("noimpl-1", "noimpl-bucket", 501, "NotImplemented")

    def test_time_refused_again_is_final(self):
        # RequestTimeTooSkewed once more after the PUT was signed at S3's time (its Date): the
        # PUT is signed again once, not in a loop, and the output fails
        self.s3.fail("deny-bucket", 403, "RequestTimeTooSkewed")
        error, _ = self.error_postback("skew-3", ["deny-bucket", "pixq-test"])
        self.assertIn("RequestTimeTooSkewed", error)
        self.assertEqual(len(self.puts("deny-bucket")), 2)

    def test_no_such_bucket_is_final(self):
        error, _ = self.error_postback("nob-1", ["no-such-bucket", "pixq-test"])
        self.assertIn("NoSuchBucket", error)
        self.assertEqual(len(self.puts("no-such-bucket")), 1)
        self.assertEqual(int(self.limiter("no-such-bucket").get("throttle_signals", 0)), 0)


class RerunParkedTest(ThrottleCase):
    """A job whose parked output failed is retried from the dead list while its bucket is busy,
    so the rerun parks too: it completes, with a postback of its own (the first run's records
    of its outputs, still in the job hash, do not count for the rerun's)."""

    def hold_bucket(self, bucket, seconds):
        """Rate 1/s, burst 0, the next slot `seconds` away: the next output is parked."""
        self.limit(bucket, 1, 0)
        sec, usec = self.redis.execute("TIME")
        now_us = int(sec) * 1000000 + int(usec)  # not the second alone: up to 1 s in the past
        self.redis.execute("HSET", self.rl_key(bucket), "tat", str(now_us + int(seconds * 1e6)))

    def test_dead_retry_of_a_parked_job(self):
        self.s3.fail("bkt-a", 403, "AccessDenied")
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        self.hold_bucket("bkt-a", 2)
        self.push_jobs([self.job("dr-1", "bkt-a", 1)])
        first = self.postbacks_for(["dr-1"])["dr-1"].results
        self.assertEqual(first["failed_image_identifiers"], ["img0"], first)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "the dead letter")
        self.s3.clear_faults()
        self.hold_bucket("bkt-a", 2)
        self.assertEqual(self.run_pixq("dead", "retry", "all").returncode, 0)
        self.wait_until(lambda: len([p for p in self.postbacks.postbacks
                                     if p.job_id == "dr-1"]) == 2, TIMEOUT_S, "a second postback")
        second = [p for p in self.postbacks.postbacks if p.job_id == "dr-1"][1].results
        self.assertEqual([i["image_identifier"] for i in second["images"]], ["img0"], second)
        self.assertNotIn("failed_image_identifiers", second)
        self.assertEqual(len(self.puts("bkt-a", status=200)), 1)
        self.assertEqual(self.blob_keys(), [])
        self.assertEqual(self.redis.llen(self.key("dead")), 0)


class ForeignKeyTest(ThrottleCase):
    """A key of one job's (its hash, its result, a parked output's blob) holding another type
    than pixq's, written by hand or by another program: the job ends, said in its postback
    where it can be and in the log (job_key_foreign), the key is left as it was unless it is a
    blob pixq drops anyway, and the worker goes on with the next job. Every such key failed
    the step that met it with WRONGTYPE, for ever: the worker settled the job again and again
    and took no other job (a job hash or a result), or lost the job (park.lua had taken it off
    the active list when it failed)."""

    def foreign_events(self, worker, job_id):
        return [(e["step"], e["keys"], e["action"]) for e in worker.log_events("job_key_foreign")
                if e.get("job_id") == job_id]

    def next_job_completes(self, job_id):
        """The worker is free: a job after it completes."""
        self.push_jobs([self.job(job_id, "pixq-test")])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)

    def assert_untouched_after(self, worker):
        self.assertEqual(worker.log_events("task_stranded"), [])
        self.assertEqual([e for e in worker.log_events("redis_error")
                          if e.get("step") == "finish"], [])
        self.assert_queue_drained()

    def test_job_hash_and_result_of_another_type_at_the_end(self):
        worker = self.start_worker()
        for job_id, foreign, kind in (("fk-hash", "job", "string"), ("fk-result", "result", "set")):
            with self.subTest(foreign=foreign):
                k = self.key("%s:%s" % (foreign, job_id))
                if kind == "string":
                    self.redis.set(k, "theirs")
                else:
                    self.redis.execute("SADD", k, "theirs")
                self.push_jobs([self.job(job_id, "pixq-test")])
                self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
                self.wait_until(lambda: self.foreign_events(worker, job_id), 10, "the log line")
                self.assertEqual(self.foreign_events(worker, job_id),
                                 [("finish", "%s=%s" % (k, kind), "left_alone")])
                self.assertEqual(self.redis.type(k), kind)
                self.next_job_completes(job_id + "-next")
                self.assert_untouched_after(worker)
        # the job hash's run counts nothing; the result's job stored no result
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("succeeded"), "4")

    def test_queue_counts_of_another_type_are_left_alone(self):
        """README (Never losing a job): the queue's counts holding another type (pixq:{Q}:stats
        a string, pixq:{Q}:recov a list) are left alone as a job's key is: the job settles,
        posted back once, its result stored, without its counts; job_key_foreign step=finish
        names the key, and the worker goes on; begin.lua counts the run in the job hash alone.
        Before, finish.lua refused the call (a Redis
        refusal, retried): the job stayed unsettled on the active list until the key was
        removed, and two TYPE calls cost every job of every queue Redis's time for it."""
        worker = self.start_worker(PIXQ_SETTLE_ATTEMPTS=3)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        for name, kind, job_id in (("stats", "string", "fk-stats"), ("recov", "list", "fk-recov")):
            with self.subTest(key=name):
                k = self.key(name)
                self.redis.delete(k)
                if kind == "string":
                    self.redis.set(k, "theirs")
                else:
                    self.redis.execute("RPUSH", k, "theirs")
                try:
                    self.push_jobs([self.job(job_id, "pixq-test")])
                    self.assert_complete(self.postbacks_for([job_id])[job_id], job_id,
                                         "pixq-test", 1)
                    self.wait_until(lambda: self.foreign_events(worker, job_id), 10,
                                    "the log line")
                    self.assertEqual(self.foreign_events(worker, job_id),
                                     [("finish", "%s=%s" % (k, kind), "left_alone")])
                    self.assertEqual(self.redis.type(k), kind)  # left as it was
                    self.assertEqual(self.redis.execute("EXISTS", self.key("result:" + job_id)),
                                     1)
                finally:
                    self.redis.delete(k)
        # begin.lua counted each run in its job hash, the stats left alone there too (before,
        # it failed: job_begin_failed, the run unknown to the worker); the second job was
        # counted in stats
        self.assertEqual([e for e in worker.log_events("job_begin_failed")], [])
        self.assertEqual(self.redis.execute("HGET", self.key("job:fk-stats"), "runs"), "1")
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("succeeded"), "1")
        self.next_job_completes("fk-next")
        self.assert_untouched_after(worker)

    def test_throughput_hash_of_another_type_settles_the_job_once(self):
        """finish.lua does not look at pixq:{Q}:tput's type (a TYPE on every job's path costs
        Redis about a microsecond): written after the settlement, one of another type (a string
        here) fails the call once the job is settled, and the retry finds it settled. The job
        completes once (one postback, counted succeeded once, no lease_lost), and so does the
        next; the key is left as it was."""
        worker = self.start_worker(PIXQ_SETTLE_ATTEMPTS=3)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        tput = self.key("tput")
        self.redis.delete(tput)
        self.redis.set(tput, "theirs")
        try:
            for job_id in ("fk-tput-1", "fk-tput-2"):
                self.push_jobs([self.job(job_id, "pixq-test")])
                self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test",
                                     1)
            self.wait_until(lambda: self.redis.hgetall(self.key("stats")).get("succeeded")
                            == "2", 20, "both jobs counted")
            self.assert_queue_drained()
            self.assertTrue([e for e in worker.log_events("redis_error")
                             if "WRONGTYPE" in e.get("error", "")])
            self.assertEqual(self.redis.type(tput), "string")  # left as it was
        finally:
            self.redis.delete(tput)
        stats = self.redis.hgetall(self.key("stats"))
        self.assertEqual((stats.get("succeeded"), stats.get("lease_lost")), ("2", None), stats)
        self.assertEqual(sorted(p.job_id for p in self.postbacks.postbacks),
                         ["fk-tput-1", "fk-tput-2"])
        self.assertEqual(worker.log_events("lease_lost"), [])

    def test_dead_list_of_another_type_keeps_the_dead_letter_until_removed(self):
        """The same for pixq:{Q}:dead (a hash here) and a job that fails: before, finish.lua took
        the payload off the active list and stored its result before its LPUSH onto `dead`
        failed, and the next try found the job gone: its dead letter was lost."""
        worker = self.start_worker(PIXQ_SETTLE_ATTEMPTS=3)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        dead = self.key("dead")
        self.redis.execute("HSET", dead, "theirs", 1)
        job = self.job("fk-dead", "pixq-test")
        job["src"] = self.src.url("/missing.png")  # 404: fails for good
        self.push_jobs([job])
        try:
            self.wait_until(lambda: len([e for e in worker.log_events("redis_error")
                                         if "WRONGTYPE" in e.get("error", "")]) >= 3, 20,
                            "the refusal to be tried again")
            held = [p for k in self.redis.keys(self.key("active:*")) for p in self.redis.lrange(k)]
            self.assertTrue([p for p in held if "fk-dead" in p], held)  # not dropped
            self.assertEqual(self.redis.type(dead), "hash")  # left as it was
        finally:
            self.redis.delete(dead)
        self.wait_until(lambda: self.redis.llen(dead) == 1, 20, "the dead letter")
        self.assertEqual(json.loads(self.redis.lindex(dead, 0))["job_id"], "fk-dead")
        self.assert_queue_drained()
        self.assertEqual(worker.log_events("job_key_foreign"), [])

    def test_job_hash_of_another_type_fails_the_waiting_outputs(self):
        port = harness.reserved_port(self)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0,
                                   PIXQ_METRICS_ADDR="%s:%d" % (harness.LOOPBACK, port))
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        k = self.key("job:fk-park")
        self.redis.set(k, "theirs")
        RerunParkedTest.hold_bucket(self, "bkt-a", 5)
        self.push_jobs([self.job("fk-park", "bkt-a", 2, buckets=["pixq-test", "bkt-a"])])
        results = self.postbacks_for(["fk-park"])["fk-park"].results
        self.assertEqual(results["failed_image_identifiers"], ["img1"], results)
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["img0"])
        self.assertEqual(results["errors"], [
            "Image processing failed. Outputs waiting for their turn to upload (the bucket's "
            "rate limit) cannot wait in Redis: key %s holds a string, not this job's state "
            "(written there by hand or by another program); remove it and submit the job "
            "again" % k])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead letter")
        dead = json.loads(self.redis.lrange(self.key("dead"))[0])
        self.assertEqual((dead["job_id"], dead["error"]), ("fk-park", results["errors"][0]))
        self.assertEqual(self.foreign_events(worker, "fk-park"), [
            ("park", k + "=string", "outputs_failed"), ("finish", k + "=string", "left_alone")])
        self.assertEqual(self.redis.get(k), "theirs")
        self.assertEqual(self.blob_keys(), [])
        self.assertEqual(self.puts("bkt-a"), [])
        # the output that could not wait counts as failed (it counted as parked when deferred)
        _, _, body = harness.http_request("http://%s:%d/metrics" % (harness.LOOPBACK, port))
        fams = parse_exposition(body.decode("utf-8"))
        self.assertEqual([sample(fams, "pixq_outputs_total", outcome=o)
                          for o in ("uploaded", "parked", "failed")], [1, 1, 1])
        self.next_job_completes("fk-park-next")
        self.assert_untouched_after(worker)

    def park_one(self, job_id):
        """A worker, and job_id's one output parked for 3 s: the worker."""
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "bkt-a", 3)
        self.push_jobs([self.job(job_id, "bkt-a", 1)])
        self.wait_until(lambda: worker.log_events("job_parked"), 20, "the output parked")
        return worker

    def assert_state_lost(self, worker, job_id, k, step):
        """job_id's hash k turned foreign while its one output was parked (bkt-a): the step
        that met it logged the state lost, the output was uploaded once, nothing stays parked,
        k is left as it was, job_id posts nothing back and the next job completes."""
        self.wait_until(lambda: self.foreign_events(worker, job_id), 20, "the log line")
        self.assertEqual(self.foreign_events(worker, job_id), [(step, k, "job_state_lost")])
        self.assertEqual(len(self.puts("bkt-a", status=200)), 1)
        self.assertEqual(self.blob_keys(), [])
        self.assert_nothing_parked()
        self.assertEqual(self.redis.get(k), "theirs")
        self.next_job_completes(job_id + "-next")
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks], [job_id + "-next"])
        self.assert_untouched_after(worker)

    def test_job_hash_turned_another_type_while_its_output_waits(self):
        """The job's state is lost as if it had expired: the output is uploaded, the job cannot
        complete (no postback), its blob is dropped and the worker goes on."""
        worker = self.park_one("fk-late")
        k = self.key("job:fk-late")
        self.redis.delete(k)
        self.redis.set(k, "theirs")
        self.assert_state_lost(worker, "fk-late", k, "upload_done")

    def test_job_hash_turned_another_type_before_completion(self):
        """The hash turns foreign after upload_done.lua recorded the last output and before
        the worker reads it back to complete the job (held on the wire between the two): the
        job's state is lost as if it had expired, the task is settled there (no postback) and
        the worker goes on, rather than the task being stranded (task_stranded) and run again
        for upload_done.lua to find the hash foreign."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        self.addCleanup(self._stop_programs)  # first: the worker ends while the proxy relays
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_REDIS_URL=proxy.redis_url())
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        k = self.key("job:fk-done")
        proxy.hold_on(b"HGETALL\r\n$%d\r\n%s\r\n" % (len(k), k.encode()))
        RerunParkedTest.hold_bucket(self, "bkt-a", 2)
        self.push_jobs([self.job("fk-done", "bkt-a", 1)])
        self.wait_until(proxy.held.is_set, 30, "the job hash's HGETALL to be held")
        self.assertEqual(self.redis.hgetall(k).get("pending"), "0")  # the output recorded
        self.redis.delete(k)
        self.redis.set(k, "theirs")
        proxy.release()
        self.assert_state_lost(worker, "fk-done", k, "complete")

    def test_blob_of_another_type(self):
        """A parked output's blob of another type: the output fails, and the job completes with
        a postback saying why."""
        worker = self.park_one("fk-blob")
        blob = self.key("blob:fk-blob:0")
        self.assertEqual(self.blob_keys(), [blob])
        self.redis.delete(blob)
        self.redis.execute("RPUSH", blob, "theirs")
        results = self.postbacks_for(["fk-blob"])["fk-blob"].results
        self.assertEqual(results["failed_image_identifiers"], ["img0"], results)
        self.assertEqual(results["errors"], [
            "the encoded output 'img0' could not be read back for its upload: its Redis key "
            "holds another type than pixq's (written there by hand or by another program)"])
        self.assertEqual(self.foreign_events(worker, "fk-blob"),
                         [("load_blob", blob, "output_failed")])
        self.assertEqual(self.puts("bkt-a"), [])
        self.assertEqual(self.blob_keys(), [])
        self.assert_nothing_parked()
        self.next_job_completes("fk-blob-next")
        self.assert_untouched_after(worker)


class ParkedStateGoneTest(ThrottleCase):
    """A parked output whose blob, or whose job's hash, is gone by the time its slot comes, as
    when PIXQ_BLOB_TTL_S passed (deleted here: an expiry, without waiting for one). Redis kept
    its data all along (the queue's data token is the one the task was reserved in)."""

    def test_blob_gone_fails_its_output(self):
        """The output fails with the reason in the postback and the dead letter (an empty error
        if load_blob() took the missing blob for one an earlier run had recorded already), and
        the job completes without it."""
        worker = ForeignKeyTest.park_one(self, "sg-blob")
        blob = self.key("blob:sg-blob:0")
        self.assertEqual(self.blob_keys(), [blob])
        self.redis.delete(blob)
        results = self.postbacks_for(["sg-blob"])["sg-blob"].results
        error = "the encoded output 'img0' expired before it could be uploaded"
        self.assertEqual((results["errors"], results["failed_image_identifiers"]),
                         ([error], ["img0"]), results)
        self.assertEqual(results.get("images"), [], results)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead letter")
        dead = json.loads(self.redis.lrange(self.key("dead"))[0])
        self.assertEqual((dead["job_id"], dead["error"]), ("sg-blob", error))
        self.assertEqual(self.puts("bkt-a"), [])
        self.assertEqual(worker.log_events("parked_job_lost"), [])
        self.assert_nothing_parked()
        self.assert_queue_drained()

    def test_job_hash_gone_says_state_expired(self):
        """The output is uploaded but its job cannot complete (no postback):
        parked_job_lost reason=state_expired, the setting to look at, not data_lost (Redis
        lost its data), which the same data token rules out."""
        worker = ForeignKeyTest.park_one(self, "sg-hash")
        self.redis.delete(self.key("job:sg-hash"))
        lost = self.wait_until(lambda: worker.log_events("parked_job_lost"), 20,
                               "parked_job_lost")
        self.assertEqual([(e["job_id"], e["reason"]) for e in lost], [("sg-hash", "state_expired")])
        self.assertEqual(len(self.puts("bkt-a", status=200)), 1)
        self.assertEqual(self.blob_keys(), [])
        self.assert_nothing_parked()
        self.push_jobs([self.job("sg-hash-next", "pixq-test")])
        self.postbacks_for(["sg-hash-next"])
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks], ["sg-hash-next"])
        self.assert_queue_drained()


    def test_job_state_unreadable(self):
        """The job's state holds a result base that is not JSON (written over by another
        program): the output is uploaded, the job cannot complete (parked_job_lost
        reason=state_unreadable, no postback), the task is settled and the worker goes on."""
        worker = ForeignKeyTest.park_one(self, "sg-bad")
        self.redis.execute("HSET", self.key("job:sg-bad"), "base", "{not json")
        lost = self.wait_until(lambda: worker.log_events("parked_job_lost"), 20,
                               "parked_job_lost")
        self.assertEqual([(e["job_id"], e["reason"]) for e in lost],
                         [("sg-bad", "state_unreadable")])
        self.assertEqual(len(self.puts("bkt-a", status=200)), 1)
        self.assertEqual(self.blob_keys(), [])
        self.assert_nothing_parked()
        self.push_jobs([self.job("sg-bad-next", "pixq-test")])
        self.postbacks_for(["sg-bad-next"])
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks], ["sg-bad-next"])
        self.assertEqual(worker.log_events("task_stranded"), [])
        self.assert_queue_drained()

class ParkedTaskAgainTest(ThrottleCase):
    """A parked output's task that runs again (README: each step of an upload can run twice):
    it must still complete its job, once."""

    def test_stranded_at_upload_done_runs_again(self):
        """Redis refuses upload_done.lua's HSETNX (an ACL here) once the output is parked: the
        task strands on the active list (task_stranded step=upload_done), runs again once
        Redis takes it, and completes the job. Settled instead, the output was never recorded
        and the job never posted back."""
        worker = ForeignKeyTest.park_one(self, "ta-strand")
        self.redis.execute("ACL", "SETUSER", "default", "-hsetnx")
        try:
            stranded = self.wait_until(lambda: worker.log_events("task_stranded"), 20,
                                       "task_stranded")
        finally:
            self.redis.execute("ACL", "SETUSER", "default", "+hsetnx")
        self.assertEqual([(e["job_id"], e["step"]) for e in stranded[:1]],
                         [("ta-strand", "upload_done")])
        pb = self.postbacks_for(["ta-strand"])["ta-strand"]
        self.assert_complete(pb, "ta-strand", "bkt-a", 1)
        self.assert_one_postback_each(["ta-strand"])
        self.assertEqual(self.blob_keys(), [])
        self.assert_nothing_parked()
        self.assert_queue_drained()

    def test_recorded_output_completes_its_job_when_run_again(self):
        """An earlier run of the task recorded the output as the job's last (upload_done.lua:
        done:0, img:0, obj:0, pending 0, last 0, the blob dropped), then met an error before
        it completed the job: the run again finds the blob gone because of that record and
        completes the job with the recorded image, without a second PUT."""
        worker = ForeignKeyTest.park_one(self, "ta-done")
        k, blob = self.key("job:ta-done"), self.key("blob:ta-done:0")
        image = {"image_identifier": "img0", "s3_url": self.s3.object_url("bkt-a", "ta-done/0.png"),
                 "meta": {"width": 8, "height": 8}}
        self.redis.execute("HSET", k, "done:0", "img", "img:0", json.dumps(image),
                           "obj:0", json.dumps({"bucket": "bkt-a", "key": "ta-done/0.png"}),
                           "pending", "0", "last", "0")
        self.redis.delete(blob)
        parked = self.key("parked")
        size = int(self.redis.execute("HGET", parked, blob))
        self.redis.execute("HDEL", parked, blob)
        self.redis.execute("HINCRBY", parked, "total", -size)
        results = self.postbacks_for(["ta-done"])["ta-done"].results
        self.assertNotIn("errors", results, results)
        self.assertEqual(results["images"], [image], results)
        self.assertEqual(self.puts("bkt-a"), [])
        # not taken for a blob that expired: no upload_failed (nor a failed output counted)
        self.assertEqual(worker.log_events("upload_failed") + worker.log_events("parked_job_lost"),
                         [])
        self.assert_nothing_parked()
        self.assert_queue_drained()


class ParkedReturnKeysTest(ThrottleCase):
    """return_keys and extended_metadata on a parked output: its s3_key and its meta's filesize
    come with it when another task uploads it."""

    def test_parked_output_returns_its_key(self):
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        # held once the worker is up: a slow start (ASan, a loaded machine) outlasted a hold of
        # 1 s set before it, and the output was not parked
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "bkt-a", 2)
        job = self.job("keys-p", "bkt-a", 1)
        job["functions"][0]["save"]["s3_destination"]["return_keys"] = True
        job["extended_metadata"] = True
        self.push_jobs([job])
        results = self.postbacks_for(["keys-p"])["keys-p"].results
        self.assertEqual(len(worker.log_events("upload_parked")), 1)
        self.assertEqual(results["images"][0]["s3_key"], "keys-p/0.png")
        stored = self.s3.object("bkt-a", "keys-p/0.png")
        self.assertEqual(results["images"][0]["meta"]["filesize"], len(stored))
        self.assertEqual(results["images"][0]["meta"]["depth"], 8)
        self.assert_no_leftovers(["keys-p"])

    def test_parked_output_keeps_is_blank(self):
        """check_blank on a parked output: its is_blank comes with it when another task
        uploads it."""
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "bkt-a", 2)
        job = self.job("blank-p", "bkt-a", 1)
        job["src"] = {"name": "canvas", "width": 20, "height": 20, "color": "#123456"}
        job["functions"][0]["save"]["check_blank"] = True
        self.push_jobs([job])
        results = self.postbacks_for(["blank-p"])["blank-p"].results
        self.assertEqual(len(worker.log_events("upload_parked")), 1)
        self.assertIs(results["images"][0].get("is_blank"), True, results)
        self.assert_no_leftovers(["blank-p"])


class PoisonedUploadTest(ThrottleCase):
    """A parked output whose upload crashed its worker 3 times (PIXQ_MAX_RECOVERIES) is not a
    job: its output fails, and its job completes with a postback and a dead letter of its own
    (before, the task was buried as a job with a made-up id, and the job never completed)."""

    def test_poisoned_upload_task_completes_its_job(self):
        self.s3.stall("bkt-a", 300, methods=("PUT",))
        env = dict(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_LEASE_MS=3000, PIXQ_HEARTBEAT_MS=1000,
                   PIXQ_REAP_INTERVAL_MS=500)
        worker = self.start_worker(**env)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "bkt-a", 2)
        self.push_jobs([self.job("pois-1", "bkt-a", 1)])
        self.wait_until(self.blob_keys, 20, "a parked blob")
        for crash in (1, 2, 3):
            self.wait_until(lambda: self.s3.stalled() >= crash, 30, "PUT %d to stall" % crash)
            following = self.start_worker(**env)
            self.kill_worker(worker, signal.SIGKILL)
            worker = following
        results = self.postbacks_for(["pois-1"])["pois-1"].results
        self.s3.clear_faults()
        self.assertEqual(results["failed_image_identifiers"], ["img0"], results)
        self.assertEqual(results["images"], [])
        self.assertIn("the upload of 'img0' failed: the job's worker died while running it (killed, out of memory, or crashed), 3 times",
                      results["errors"][0])
        poisoned = worker.log_events("upload_poisoned")
        self.assertEqual([(e["job_id"], e["image_identifier"], e["bucket"]) for e in poisoned],
                         [("pois-1", "img0", "bkt-a")])  # README (Logs)
        self.assertEqual(worker.log_events("job_poisoned"), [])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) > 0, 10, "a dead letter")
        dead = [json.loads(d) for d in self.redis.lrange(self.key("dead"))]
        self.assertEqual([d["job_id"] for d in dead], ["pois-1"])
        self.assert_no_leftovers(["pois-1"])
        # nor taken for a job once handled (buried as unparseable): the next job's postback
        # comes after the pill's handling has ended
        self.push_jobs([self.job("pois-next", "pixq-test")])
        self.postbacks_for(["pois-next"])
        self.assertEqual(worker.log_events("job_unparseable"), [])


class ParkedLimitTest(ThrottleCase):
    """PIXQ_MAX_PARKED_MB: past it, workers take only pixq's own tasks from the queue (parked
    uploads, postback retries) and no new job, so that an S3 slower than the fleet cannot fill
    Redis with parked outputs until it refuses every write. The queue's parked bytes are counted
    in pixq:{Q}:parked by park.lua and upload_done.lua."""

    def parked_now(self):
        """Bytes of the blobs in Redis now."""
        return sum(int(self.redis.execute("STRLEN", k)) for k in self.blob_keys())

    def photo_job(self, job_id):
        """A job whose one output is a PNG of a photo, about 400 KB, to bucket A."""
        src = self.src.add("/src/%s.jpg" % job_id,
                           (CONFIG.data / "images" / "cups-orient6-1283x797.jpg").read_bytes())
        job = self.make_job(src, "%s.png" % job_id, params={"width": 520}, job_id=job_id,
                            bucket="bkt-a")
        job["functions"][0]["save"]["extension"] = ".png"
        return job

    def test_new_jobs_wait_while_the_parked_bytes_are_past_the_limit(self):
        """12 jobs of one ~400 KB output each, 2 workers, bucket A at 2 PUT/s: without the limit
        the workers park 11 outputs (4.6 MB) within a second; with 1 MB, the parked bytes stay
        under the limit and what the two workers had in hand (a job each), every job completes,
        and the counter ends at 0."""
        jobs, rate, limit = 12, 2, 1 << 20
        self.limit("bkt-a", rate, 0)
        ids = ["big-%d" % i for i in range(jobs)]
        workers = self.start_workers(2, PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_MAX_PARKED_MB=1)
        for w in workers:
            self.wait_until(lambda: w.log_events("worker_start"), 10, "worker_start")
        self.push_jobs([self.photo_job(i) for i in ids])
        peak, counted = 0, []
        deadline = time.monotonic() + scaled(60)
        while time.monotonic() < deadline and len(
                {pb.job_id for pb in self.postbacks.postbacks} & set(ids)) < jobs:
            peak = max(peak, self.parked_now())
            counted.append(int(self.redis.execute("HGET", self.key("parked"), "total") or 0))
            self.check_workers()
            time.sleep(0.01)
        pbs = self.postbacks_for(ids)
        sizes = [r.size for r in self.puts("bkt-a")]
        figures("parked limit", peak_parked_bytes=peak, limit=limit, output_bytes=max(sizes),
                counter_peak=max(counted),
                gated=[e.get("queue") for w in workers for e in w.log_events("queue_gated")])
        self.assertTrue(min(sizes) > 300000, sizes)  # big enough for the limit to bite
        self.assertLessEqual(peak, limit + 2 * max(sizes))
        self.assertLessEqual(max(counted), limit + 2 * max(sizes))
        self.assertTrue([e for w in workers for e in w.log_events("queue_gated")])
        for job_id in ids:
            self.assertNotIn("errors", pbs[job_id].results, pbs[job_id].results)
        self.assert_one_postback_each(ids)
        for job_id in ids:  # processed once each: the gate holds jobs back, it does not rerun them
            self.assertEqual(self.src.requests("/src/%s.jpg" % job_id), 1, job_id)
        # (the rate is ParkingTest's: timed, in the plain build only; this one runs in both)
        self.assertEqual(len(self.puts("bkt-a")), jobs)
        self.assert_no_leftovers(ids)
        self.assert_nothing_parked()

    def test_gate_opens_when_the_parked_bytes_come_down(self):
        """A queue past its limit gets no new job taken by an idle worker (take.lua; a busy one
        is told by finish.lua: the other test); another queue of the same worker is served
        meanwhile. The bytes counted are of a blob
        that then goes without upload_done.lua (as when a worker of an older build uploads it,
        or it expires unsent): the reap pass counts it out, and the job goes."""
        blob = self.key("blob:gone-1:0")
        self.redis.execute("SETRANGE", blob, 5 << 20, "x")
        self.redis.execute("HSET", self.key("parked"), blob, 5 << 20, "total", (5 << 20) + 450)
        # and 450 blobs already gone, in a hash small enough to come whole from one HSCAN: the
        # reap pass hands them to parked_forget.lua in two calls (400 at most a call)
        self.redis.execute("CONFIG", "SET", "hash-max-listpack-entries", 1000)
        self.redis.execute("HSET", self.key("parked"), *[
            x for i in range(450) for x in (self.key("blob:old-%d:0" % i), 1)])
        worker = self.start_worker(PIXQ_MAX_PARKED_MB=4, PIXQ_QUEUE="urgent,default",
                                   PIXQ_REAP_INTERVAL_MS=300)
        self.wait_until(lambda: worker.log_events("worker_start"), 10, "worker_start")
        self.only_urgent_served()
        stats = json.loads(self.run_pixq("stats", "--json").stdout)
        self.assertEqual([q["parked_bytes"] for q in stats["queues"]], [5 << 20])
        gated = worker.log_events("queue_gated")
        self.assertEqual([(e["queue"], e["max_parked_mb"]) for e in gated], [("default", "4")])
        forgotten = worker.log_events("parked_forgotten")
        self.assertEqual([(e["queue"], e["outputs"]) for e in forgotten], [("default", "450")])
        self.redis.execute("DEL", blob)
        t0 = time.monotonic()
        self.wait_for_postback(job_id="d-1")
        self.assertLess(time.monotonic() - t0, 3.0)
        forgotten = worker.log_events("parked_forgotten")[1:]
        self.assertEqual([(e["queue"], e["outputs"]) for e in forgotten], [("default", "1")])
        self.assert_nothing_parked()
        self.wait_until(lambda: worker.log_events("queue_ungated"), 5, "queue_ungated")
        self.assert_queue_drained()


class ParkedLimitFirstQueueTest(ThrottleCase):
    """The worker's first (highest-priority) queue past PIXQ_MAX_PARKED_MB: an idle worker of
    several queues does not block on it (BLMOVE would take a fresh job past the limit) but
    naps and looks again; its other queue is served meanwhile."""

    def test_first_queue_past_its_limit_is_not_blocked_on(self):
        blob = self.key("blob:gone-1:0")
        self.redis.execute("SETRANGE", blob, 5 << 20, "x")
        self.redis.execute("HSET", self.key("parked"), blob, 5 << 20, "total", 5 << 20)
        worker = self.start_worker(PIXQ_MAX_PARKED_MB=4, PIXQ_QUEUE="default,urgent")
        self.wait_until(lambda: worker.log_events("queue_gated"), 10, "queue_gated")
        time.sleep(0.5)  # idle: sweeps, and waits between them
        self.only_urgent_served()
        self.redis.execute("DEL", blob)  # the reap pass counts it out: the gate opens
        self.wait_for_postback(job_id="d-1")
        self.assert_nothing_parked()


class ParkedLimitLookTest(ThrottleCase):
    """README: past PIXQ_MAX_PARKED_MB a gated worker looks past a job pushed to the consumer
    end otherwise (a client's RPUSH) for pixq's own entries, and after a look that finds none,
    not again for 5 s per queue (take.lua's `scanned_at`, GATE_SCAN_MS in worker/worker.c).
    An idle worker calls take.lua every second: a wake-up token put behind the job just after
    a look that found none stays there until 5 s after that look, then is taken."""

    WAKE = '{"pixq_wake":true}'

    def test_no_look_past_a_job_for_5_s_after_one_found_none(self):
        self.redis.execute("HSET", self.key("parked"), "total", 2 << 20)
        self.redis.rpush(self.key("jobs"), json.dumps(self.job("given-back", "pixq-test")))
        worker = self.start_worker(PIXQ_MAX_PARKED_MB=1)
        self.wait_until(lambda: self.redis.execute("HGET", self.key("parked"), "scanned_at"), 10,
                        "a look that found none")
        scanned = int(self.redis.execute("HGET", self.key("parked"), "scanned_at"))
        self.redis.lpush(self.key("jobs"), self.WAKE)  # behind the job, among the 64 nearest

        def redis_ms():
            sec, usec = self.redis.execute("TIME")
            return int(sec) * 1000 + int(usec) // 1000

        while redis_ms() < scanned + 4500:  # a margin of 0.5 s for this loop's own reads
            self.assertIn(self.WAKE, self.redis.lrange(self.key("jobs"), 0, -1),
                          "taken %d ms after the look" % (redis_ms() - scanned))
            time.sleep(0.05)
        self.wait_until(lambda: self.WAKE not in self.redis.lrange(self.key("jobs"), 0, -1), 10,
                        "the token taken by a later look")
        self.assertEqual(len(self.redis.lrange(self.key("jobs"), 0, -1)), 1)  # the job waits
        self.assertTrue(worker.log_events("queue_gated"))


class ParkedLimitDueTest(ThrottleCase):
    """A review's deadlock: a worker parks 3 outputs of 520 KB (limit 1 MB) and is stopped, as
    in a deploy; a job falls due (a --delay submission) just before the upload tasks; a new
    worker starts once all are due. The job, promoted in the same batch, went to the consumer
    end in front of the tasks, and the queue, past its limit, took nothing: no upload for as long
    as the counted bytes lived. Promoted jobs go behind pixq's own entries now: the uploads run,
    the bytes come down, then the job runs."""

    def test_due_job_does_not_hide_the_uploads(self):
        self.limit("bkt-a", 4, 0)
        src = self.src.add("/src/photo.jpg",
                           (CONFIG.data / "images" / "cups-orient6-1283x797.jpg").read_bytes())
        job = {"job_id": "three", "src": src, "postback_url": self.postbacks.url("/pb"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 520 - i},
                              "save": {"image_identifier": "img%d" % i, "extension": ".png",
                                       "s3_destination": {"bucket": "bkt-a",
                                                          "key": "three/%d.png" % i}}}
                             for i in range(3)]}
        first = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_MAX_PARKED_MB=1)
        self.wait_until(lambda: first.log_events("worker_start"), 10, "worker_start")
        sec, usec = self.redis.execute("TIME")
        now_ms = int(sec) * 1000 + int(usec) // 1000
        # every slot of bucket A taken for the next `hold` ms: the 3 outputs park, due from then
        # on, 250 ms apart; long enough that the first worker is stopped before the first is due
        # (a loaded machine took over 2 s to run the job under ASan, and that worker uploaded it)
        hold = int(scaled(4.0) * 1000)
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat", (now_ms + hold) * 1000)
        self.push_jobs([job])
        self.wait_until(lambda: first.log_events("job_parked"), 20, "job_parked")
        self.programs.remove(first)
        self.assertEqual(first.terminate(), (0, False))
        total = int(self.redis.execute("HGET", self.key("parked"), "total"))
        self.assertGreater(total, 1 << 20, self.redis.execute("HGETALL", self.key("parked")))
        later = self.make_job(src, "later.png", params={"width": 8}, job_id="later",
                              bucket="bkt-b")
        self.redis.execute("ZADD", self.key("delayed"), now_ms + hold - 500, json.dumps(later))
        sec, usec = self.redis.execute("TIME")
        time.sleep(max(0.0, now_ms + hold + 1000 - (int(sec) * 1000 + int(usec) // 1000)) / 1000)
        # all due; nobody promoted them
        second = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_MAX_PARKED_MB=1)
        pbs = self.postbacks_for(["three", "later"], timeout=20)
        self.assertNotIn("errors", pbs["three"].results, pbs["three"].results)
        uploads = self.puts("bkt-a", status=200)
        self.assertEqual(len(uploads), 3)
        # the queue was past its limit: the job waited for the uploads that brought it under
        self.assertTrue(second.log_events("queue_gated"))
        later_put = self.puts("bkt-b", status=200)
        self.assertEqual(len(later_put), 1)
        self.assertGreater(later_put[0].time, min(r.time for r in uploads))  # under it after one
        self.assert_nothing_parked()
        self.assert_queue_drained()


class NoCredentialsTest(ThrottleCase):
    """A worker without S3 credentials fails each output at once, saying so: it is not taken
    for an outage (retried, then "temporarily unavailable")."""

    def test_no_credentials_is_final(self):
        port = harness.reserved_port(self)
        worker = self.start_worker("--metrics-addr", "127.0.0.1:%d" % port,
                                   AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
        self.push_jobs([self.job("nocred-1", "pixq-test", 2)])
        results = self.postbacks_for(["nocred-1"])["nocred-1"].results
        self.assertEqual(results["failed_image_identifiers"], ["img0", "img1"], results)
        self.assertEqual(len(results["errors"]), 2, results)
        for error in results["errors"]:
            self.assertIn("no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "must both be set", error)
            self.assertNotIn("temporarily unavailable", error)
        self.assertEqual(worker.log_events("upload_parked"), [])
        self.assertEqual(self.puts("pixq-test"), [])
        self.assertEqual(len(worker.log_events("s3_credentials_missing")), 1)
        self.assert_no_leftovers(["nocred-1"])
        # no request went: no S3 answer is counted (they were counted as code="transport"),
        # nor an upload's time; the outputs are counted as failed
        status, _, body = harness.http_request("http://127.0.0.1:%d/metrics" % port)
        text = body.decode("utf-8")
        self.assertEqual(status, 200, text)
        self.assertNotIn("pixq_s3_responses_total{", text)
        self.assertIn("\npixq_upload_seconds_count 0\n", text)
        self.assertIn('\npixq_outputs_total{outcome="failed"} 2\n', text)


class CredentialsFileTest(ThrottleCase):
    """Temporary credentials kept up to date in an AWS shared credentials file (by a credentials
    helper, a sidecar, a mounted secret): the worker reads the file again when it changes, so
    that the fleet goes on uploading through a rotation. Before, the keys were read at start and
    every upload failed with ExpiredToken once they expired, until the workers were restarted."""

    def setUp(self):
        super().setUp()
        # a space in its name: the log's path= fields are quoted (they were written raw, and a
        # reader took the path to end at the space)
        self.creds_path = self.tmp / "aws credentials"
        self.rotate("AKIDFILEONE", "secret/one", "token-one")

    def rotate(self, key, secret, token):
        """The stub takes the new keys, and the file gets them (written aside, renamed over)."""
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = key, secret, token
        self.write_file(key, secret, token)

    def write_file(self, key, secret, token):
        tmp = self.creds_path.with_suffix(".new")
        tmp.write_text("[default]\naws_access_key_id = AKIDDECOY\n"
                       "aws_secret_access_key = decoy\n\n"
                       "[fleet]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                       "aws_session_token = %s\n" % (key, secret, token))
        os.replace(tmp, self.creds_path)

    def patient(self):
        """Upload retries spread over 10 s or so (20 of at most 1 s), so that the test's change
        to the file comes before the last of them however the jitter falls."""
        return dict(PIXQ_S3_RETRY_BASE_MS="300", PIXQ_S3_RETRY_MAX_MS="1000",
                    PIXQ_S3_MAX_ATTEMPTS="20")

    def file_env(self):
        return dict(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                    AWS_SHARED_CREDENTIALS_FILE=str(self.creds_path), AWS_PROFILE="fleet")

    def test_keys_replaced_in_the_file_are_used(self):
        worker = self.start_worker(**self.file_env())
        self.push_jobs([self.job("cf-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["cf-1"])["cf-1"], "cf-1", "pixq-test", 1)
        self.rotate("AKIDFILETWO", "secret/two", "token-two")
        self.push_jobs([self.job("cf-2", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["cf-2"])["cf-2"], "cf-2", "pixq-test", 1)
        self.assertEqual([(e["access_key_id_ends"], e["path"]) for e in
                          worker.log_events("s3_credentials_reloaded")],
                         [("ETWO", str(self.creds_path))])
        self.assertEqual([(e["source"], e["path"], e["profile"]) for e in
                          worker.log_events("s3_credentials")],
                         [("file", str(self.creds_path), "fleet")])  # said once, at start
        self.assertFalse(worker.log_events("upload_retry"))
        # the stub checked each signature and token (check_signatures): the old keys were not
        # used after the file changed; a file that then loses a key leaves the keys in use
        self.creds_path.write_text("[fleet]\naws_access_key_id = AKIDBROKEN\n")
        self.push_jobs([self.job("cf-3", "pixq-test")])
        self.assert_complete(self.postbacks_for(["cf-3"])["cf-3"], "cf-3", "pixq-test", 1)
        refused = worker.log_events("s3_credentials_refused")
        self.assertEqual([(e["error"], e["action"], e["path"]) for e in refused],
                         [("profile [fleet] has no aws_secret_access_key (keys written in the "
                           "file or a credential_process are read: not sso_* or role_arn)",
                           "keep_the_credentials_in_use", str(self.creds_path))])

    def test_kubernetes_secret_volume_update_is_seen(self):
        """README (Workers under systemd): "a secret volume's update replaces the file, which
        the workers see". The kubelet's way: the file is a symlink into `..data`, itself a
        symlink to a directory of one version; an update writes a new directory, renames a new
        `..data` symlink over the old one and deletes the old directory. The file's own path
        (the symlink) never changes: only a look through it shows new keys."""
        volume = self.tmp / "secret-volume"
        volume.mkdir()

        def version(name, key, secret, token):
            """A directory of one version of the secret, as the kubelet writes it."""
            d = volume / name
            d.mkdir()
            (d / "credentials").write_text("[fleet]\naws_access_key_id = %s\n"
                                           "aws_secret_access_key = %s\naws_session_token = %s\n"
                                           % (key, secret, token))

        version("..2026_01_01_00_00_00.000000001", "AKIDFILEONE", "secret/one", "token-one")
        os.symlink("..2026_01_01_00_00_00.000000001", volume / "..data")
        os.symlink("..data/credentials", volume / "credentials")
        worker = self.start_worker(**dict(self.file_env(),
                                          AWS_SHARED_CREDENTIALS_FILE=str(volume /
                                                                          "credentials")))
        self.push_jobs([self.job("k8s-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["k8s-1"])["k8s-1"], "k8s-1", "pixq-test", 1)
        # the renewer updated the secret: the stub takes only the new keys from now on
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = (
            "AKIDFILETWO", "secret/two", "token-two")
        version("..2026_01_01_01_00_00.000000002", "AKIDFILETWO", "secret/two", "token-two")
        os.symlink("..2026_01_01_01_00_00.000000002", volume / "..data_tmp")
        os.replace(volume / "..data_tmp", volume / "..data")
        shutil.rmtree(volume / "..2026_01_01_00_00_00.000000001")
        self.push_jobs([self.job("k8s-2", "pixq-test")])
        self.assert_complete(self.postbacks_for(["k8s-2"])["k8s-2"], "k8s-2", "pixq-test", 1)
        self.assertEqual([e["access_key_id_ends"] for e in
                          worker.log_events("s3_credentials_reloaded")], ["ETWO"])
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")],
                         [(200, ""), (200, "")])  # no refusal: the new keys at the first try

    def test_request_refused_as_the_file_changes_is_sent_again(self):
        """The file changes between the worker's look at it and S3's answer (here while the PUT
        is held, before S3 reads its signature): S3 refuses the old key, the worker reads the file again and sends the request
        once more at once, with the new keys."""
        worker = self.start_worker(**self.file_env())
        self.s3.stall("pixq-test", 3, methods=("PUT",), count=1)
        self.push_jobs([self.job("cf-held", "pixq-test")])
        self.wait_until(lambda: self.s3.stalled() == 1, 20, "the PUT to be held")
        self.rotate("AKIDFILETWO", "secret/two", "token-two")
        self.assert_complete(self.postbacks_for(["cf-held"])["cf-held"], "cf-held", "pixq-test",
                             1)
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")],
                         [(403, "InvalidAccessKeyId"), (200, "")])
        self.assertEqual([e["code"] for e in worker.log_events("s3_credentials_retry")],
                         ["InvalidAccessKeyId"])
        self.assertFalse(worker.log_events("upload_retry"))  # no back-off, no parking
        self.assertEqual(len(self.s3.failures()), 1)
        self.s3.forget_failures()  # that one, and only that one, was meant

    def test_expired_token_waits_for_the_file(self):
        """S3 says the token expired and the file still holds it (its keeper is late): the
        upload is tried again after a back-off, as an outage's, and goes once the file has new
        keys. With keys from the environment an expired token stays final (nothing would change
        them)."""
        worker = self.start_worker(**self.patient(), **self.file_env())
        self.s3.expired_tokens.add("token-one")
        self.push_jobs([self.job("cf-exp", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry"), 20, "a retry")
        # new keys issued (S3 takes them beside the old, whose token stays expired), then
        # written: a retry signed just before the file changed still meets ExpiredToken
        self.s3.also_valid["AKIDFILETWO"] = ("secret/two", "token-two")
        self.write_file("AKIDFILETWO", "secret/two", "token-two")
        self.assert_complete(self.postbacks_for(["cf-exp"])["cf-exp"], "cf-exp", "pixq-test", 1)
        codes = [(r.status, r.code) for r in self.puts("pixq-test")]
        self.assertEqual(codes[-1], (200, ""))
        self.assertTrue(set(codes[:-1]) == {(400, "ExpiredToken")}, codes)
        self.assertEqual({e["code"] for e in worker.log_events("upload_retry")}, {"ExpiredToken"})
        # the environment's keys: final at once
        env_worker = self.start_worker(AWS_ACCESS_KEY_ID="AKIDFILETWO",
                                       AWS_SECRET_ACCESS_KEY="secret/two",
                                       AWS_SESSION_TOKEN="token-one")
        self.programs.remove(worker)
        worker.terminate()
        self.push_jobs([self.job("cf-env", "pixq-test")])
        results = self.postbacks_for(["cf-env"])["cf-env"].results
        self.assertIn("ExpiredToken", results["errors"][0], results)
        self.assertNotIn("temporarily unavailable", results["errors"][0], results)
        self.assertFalse(env_worker.log_events("upload_retry"))
        self.assertEqual([(e["source"], e["access_key_id_ends"]) for e in
                          env_worker.log_events("s3_credentials")], [("environment", "ETWO")])

    def run_worker_at_once(self, **env):
        """Runs a worker that is meant to refuse to start: (status, the last line of stderr)."""
        r = subprocess.run([harness.CONFIG.worker], env=self.worker_env(**env),
                           capture_output=True, text=True, timeout=harness.scaled(20))
        return r.returncode, r.stderr.splitlines()[-1] if r.stderr else ""

    def test_refused_at_start(self):
        """A file without the profile's keys, and keys set both ways, are settings to fix: the
        worker says so and ends with status 2."""
        env = dict(self.file_env(), AWS_PROFILE="nobody")
        self.assertEqual(self.run_worker_at_once(**env),
                         (2, "pixq-worker: AWS_SHARED_CREDENTIALS_FILE %s: no profile [nobody] in "
                             "it" % self.creds_path))
        env = dict(self.file_env(), AWS_ACCESS_KEY_ID="AKIDENV")
        status, err = self.run_worker_at_once(**env)
        self.assertEqual(status, 2)
        self.assertIn("AWS_SHARED_CREDENTIALS_FILE and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                      "or AWS_SESSION_TOKEN are both set", err)

    def test_file_written_after_the_worker_started(self):
        """A file not there yet (its keeper starts with the worker, at boot) is waited for: the
        worker starts, says so, and its uploads are retried as in an outage until the file
        comes. Ending with status 2 left a systemd unit (RestartPreventExitStatus=2) down."""
        self.creds_path.unlink()
        worker = self.start_worker(**self.patient(), **self.file_env())
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 10, "a warning")
        self.assertEqual([(e["error"], e["action"], e["path"], e["profile"]) for e in
                          worker.log_events("s3_credentials_refused")],
                         [("No such file or directory", "none_to_sign_with", str(self.creds_path),
                           "fleet")])
        self.push_jobs([self.job("cf-late", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry"), 20, "a retry")
        self.rotate("AKIDFILETWO", "secret/two", "token-two")
        self.assert_complete(self.postbacks_for(["cf-late"])["cf-late"], "cf-late", "pixq-test",
                             1)
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")], [(200, "")])
        self.assertEqual(len(worker.log_events("s3_credentials_refused")), 1)  # said once
        self.assertIn("no S3 credentials: AWS_SHARED_CREDENTIALS_FILE %s could not be read"
                      % self.creds_path, worker.log_events("upload_retry")[0]["error"])

    def test_file_that_never_comes_fails_the_output_saying_why(self):
        """No request ever went: the error says that the file could not be read, not that S3
        refused keys (as for keys S3 kept refusing)."""
        self.creds_path.unlink()
        worker = self.start_worker(PIXQ_S3_RETRY_BASE_MS="1", PIXQ_S3_MAX_ATTEMPTS="2",
                                   **self.file_env())
        self.push_jobs([self.job("cf-never", "pixq-test")])
        results = self.postbacks_for(["cf-never"])["cf-never"].results
        self.assertEqual(results.get("failed_image_identifiers"), ["img0"], results)
        error = results["errors"][0]
        self.assertTrue(error.startswith("S3 temporarily unavailable after 2 attempts: S3 PUT %s: "
                                         % self.s3.object_url("pixq-test", "cf-never/0.png")),
                        error)
        self.assertIn("no S3 credentials: AWS_SHARED_CREDENTIALS_FILE %s could not be read"
                      % self.creds_path, error)
        self.assertEqual(self.puts("pixq-test"), [])
        self.assertEqual(len(worker.log_events("upload_retry")), 1)


class ExpectContinueTest(ThrottleCase):
    """PIXQ_S3_EXPECT_CONTINUE_BYTES: an upload that large asks S3 first (Expect:
    100-continue), as AWS's SDKs do from 1 MB, so that a refusal (SlowDown, a wrong region) comes
    before its body is sent, not after."""

    def test_large_upload_asks_first(self):
        small = self.start_worker()  # the default, 1 MiB: these outputs do not ask
        self.push_jobs([self.job("ec-small", "pixq-test")])
        self.assert_complete(self.postbacks_for(["ec-small"])["ec-small"], "ec-small",
                             "pixq-test", 1)
        self.assertEqual([r.expect for r in self.s3.records(method="PUT")], [False])
        self.kill_worker(small, signal.SIGTERM)
        self.s3.refuse_before_body("pixq-test", 503, "SlowDown", count=1)
        # (a wait of 5 s for S3's answer: a loaded machine's stub may take more than a second)
        worker = self.start_worker(PIXQ_S3_EXPECT_CONTINUE_BYTES="1",
                                   PIXQ_S3_EXPECT_CONTINUE_MS="5000")
        self.push_jobs([self.job("ec-1", "pixq-test")])
        self.assert_complete(self.postbacks_for(["ec-1"])["ec-1"], "ec-1", "pixq-test", 1)
        puts = self.s3.records(method="PUT", key="ec-1/0.png")
        self.assertEqual([(r.fault, r.status, r.expect) for r in puts],
                         [("before_body", 503, True), (None, 200, True)], puts)
        self.assertEqual(puts[0].size, 0)  # refused before its body came
        self.assertGreater(puts[1].size, 0)
        self.assertEqual(len(worker.log_events("upload_retry")), 1)

    def test_threshold_is_inclusive(self):
        """README: an output of PIXQ_S3_EXPECT_CONTINUE_BYTES "or more" asks first: one of
        exactly that many bytes asks, one a byte short does not."""

        def put(job_id, threshold):
            worker = self.start_worker(PIXQ_S3_EXPECT_CONTINUE_BYTES=str(threshold))
            self.push_jobs([self.job(job_id, "pixq-test")])
            self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
            self.kill_worker(worker, signal.SIGTERM)
            puts = self.s3.records(method="PUT", key="%s/0.png" % job_id)
            self.assertEqual(len(puts), 1, puts)
            return puts[0]

        size = put("ecb-0", 0).size  # 0: never asks; the same output as the two below
        self.assertGreater(size, 0)
        self.assertTrue(put("ecb-1", size).expect, size)
        self.assertFalse(put("ecb-2", size + 1).expect, size)

    def test_store_that_never_answers_continue(self):
        """A store that never answers "100 Continue": the body goes after
        PIXQ_S3_EXPECT_CONTINUE_MS, but never later than half of PIXQ_S3_TIMEOUT_MS (a wait of
        60 s against a timeout of 2 s failed every large upload)."""
        self.s3.no_continue.add("pixq-test")
        worker = self.start_worker(PIXQ_S3_EXPECT_CONTINUE_BYTES="1",
                                   PIXQ_S3_EXPECT_CONTINUE_MS="60000", PIXQ_S3_TIMEOUT_MS="2000")
        self.push_jobs([self.job("nc-1", "pixq-test")])
        self.assert_complete(self.postbacks_for(["nc-1"])["nc-1"], "nc-1", "pixq-test", 1)
        puts = self.s3.records(method="PUT")
        self.assertEqual([(r.status, r.expect) for r in puts], [(200, True)], puts)
        waited = puts[0].end - puts[0].time  # from its headers to its whole body
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 1.9)
        self.assertFalse(worker.log_events("upload_retry"))

    def test_store_that_refuses_to_be_asked(self):
        """A store answering 417 Expectation Failed (on a connection it keeps) gets the body at
        once, and is not asked again. Before, libcurl sent the PUT again asking again, 5,689
        times in 0.4 s, until its header limit failed it."""
        self.s3.refuse_before_body("pixq-test", 417, "ExpectationFailed", close=False)
        worker = self.start_worker(PIXQ_S3_EXPECT_CONTINUE_BYTES="1")
        for job_id in ("ef-1", "ef-2"):
            self.push_jobs([self.job(job_id, "pixq-test")])
            self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
        puts = [(r.key, r.fault, r.status, r.expect) for r in self.s3.records(method="PUT")]
        self.assertEqual(puts, [("ef-1/0.png", "before_body", 417, True),
                                ("ef-1/0.png", None, 200, False),
                                ("ef-2/0.png", None, 200, False)])
        self.assertEqual(len(worker.log_events("http_expect_refused")), 1)
        self.assertFalse(worker.log_events("upload_retry"))

class MetadataCredentialsTest(ThrottleCase):
    """Temporary keys from a metadata endpoint, as AWS hands them to a role: a container's
    credentials endpoint (an ECS task role, EKS Pod Identity) or the EC2 instance metadata
    service (IMDSv2), fetched by each worker and fetched again before they expire. Before,
    a fleet on EC2, ECS or EKS needed static keys, or a sidecar writing a credentials file."""

    def setUp(self):
        super().setUp()
        self.meta = metastub.MetadataStub()
        self.addCleanup(self.meta.close)
        self.issue("ASIAMETAONE", "secret/one", "token-one", 3600)
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = self.meta.keys[:3]

    def issue(self, key, secret, token, expires_in_s):
        """The endpoint serves new keys, which S3 takes beside the old."""
        self.meta.set(key, secret, token, expires_in_s)
        self.s3.also_valid[key] = (secret, token)

    def retire(self, key, secret, token):
        """S3 takes only these keys from now on."""
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = key, secret, token
        self.s3.also_valid.clear()

    def container_env(self, **extra):
        env = dict(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                   AWS_CONTAINER_CREDENTIALS_FULL_URI=self.meta.url("/creds"))
        env.update(extra)
        return env

    def test_container_keys_are_fetched_again_before_they_expire(self):
        """The first keys expire 10 s after they are served; with a lead of 5 s the worker asks
        again once they have 5 s left (5 to 6 s), before a request, and signs with the new keys: no request
        meets a refusal. The Authorization value is read from its file at each fetch (EKS
        replaces the file)."""
        token_file = self.tmp / "pod-identity-token"
        token_file.write_text("pod-token-1\n")
        self.meta.auth = "pod-token-1"
        self.issue("ASIAMETAONE", "secret/one", "token-one", 6 + harness.scaled(4))
        # Expiration is written in whole seconds, and the worker reads it against whole seconds
        # too: it asks again between 6 and 5 s before it
        due = int(self.meta.keys[3]) - 5
        worker = self.start_worker(**self.container_env(
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
            PIXQ_S3_CREDENTIALS_REFRESH_MS="5000"))
        self.push_jobs([self.job("mc-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["mc-1"])["mc-1"], "mc-1", "pixq-test", 1)
        # new keys and a new pod token; the old keys stop working once they have been replaced
        token_file.write_text("pod-token-2\n")
        self.meta.auth = "pod-token-2"
        self.issue("ASIAMETATWO", "secret/two", "token-two", 3600)
        last = max(r.end or r.time for r in self.s3.records())
        self.assertLess(last, due - 1, "mc-1 still ran when the keys were due (a slow machine)")
        time.sleep(max(0.0, due + 0.3 - time.time()))
        self.retire("ASIAMETATWO", "secret/two", "token-two")
        self.push_jobs([self.job("mc-2", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["mc-2"])["mc-2"], "mc-2", "pixq-test", 1)
        self.assertEqual([e["access_key_id_ends"] for e in
                          worker.log_events("s3_credentials_reloaded")], ["AONE", "ATWO"])
        self.assertEqual({e["source"] for e in worker.log_events("s3_credentials_reloaded")},
                         {"container"})
        self.assertEqual({(r.status, r.code) for r in self.s3.records()}, {(200, "")})
        self.assertFalse(worker.log_events("s3_credentials_retry"))
        self.assertFalse(worker.log_events("s3_credentials_refused"))
        self.assertEqual({h.get("Authorization") for _, p, h in self.meta.requests},
                         {"pod-token-1", "pod-token-2"})
        self.assertEqual(self.meta.paths(), ["/creds", "/creds"])  # not once per request

    def test_instance_keys_come_through_imdsv2(self):
        """PIXQ_S3_INSTANCE_CREDENTIALS: a session token first (IMDSv2: the stub, like an
        instance that requires it, answers a GET without one 401), the role's name, its keys."""
        worker = self.start_worker(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                                   PIXQ_S3_INSTANCE_CREDENTIALS="1",
                                   AWS_EC2_METADATA_SERVICE_ENDPOINT=self.meta.base)
        self.push_jobs([self.job("mi-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["mi-1"])["mi-1"], "mi-1", "pixq-test", 1)
        creds = "/latest/meta-data/iam/security-credentials/"
        self.assertEqual([(m, p) for m, p, _ in self.meta.requests],
                         [("PUT", "/latest/api/token"), ("GET", creds),
                          ("GET", creds + metastub.ROLE)])
        put_headers, get_headers = self.meta.requests[0][2], self.meta.requests[2][2]
        self.assertEqual(put_headers.get("X-aws-ec2-metadata-token-ttl-seconds"), "21600")
        self.assertTrue(get_headers.get("X-aws-ec2-metadata-token", "").startswith("imds-"))
        self.assertEqual([(e["source"], e["access_key_id_ends"]) for e in
                          worker.log_events("s3_credentials_reloaded")], [("instance", "AONE")])
        self.assertEqual([(e["source"], e["url"]) for e in worker.log_events("s3_credentials")],
                         [("instance", self.meta.base)])

    def instance_worker(self, **extra):
        return self.start_worker(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                                 PIXQ_S3_INSTANCE_CREDENTIALS="1",
                                 AWS_EC2_METADATA_SERVICE_ENDPOINT=self.meta.base, **extra)

    def check_imdsv1(self, job_id, reason):
        """A job's upload signs with keys that came through IMDSv1 (no token), said once."""
        worker = self.instance_worker(PIXQ_S3_CREDENTIALS_TIMEOUT_MS="1000")
        self.push_jobs([self.job(job_id, "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
        creds = "/latest/meta-data/iam/security-credentials/"
        self.assertEqual([(m, p) for m, p, _ in self.meta.requests],
                         [("PUT", "/latest/api/token"), ("GET", creds),
                          ("GET", creds + metastub.ROLE)])
        self.assertFalse([h for m, _, h in self.meta.requests
                          if m == "GET" and "X-aws-ec2-metadata-token" in h])
        said = worker.log_events("s3_credentials_imdsv1")
        self.assertEqual(len(said), 1, said)
        self.assertIn(reason, said[0]["reason"])
        self.assertEqual([(e["source"], e["access_key_id_ends"]) for e in
                          worker.log_events("s3_credentials_reloaded")], [("instance", "AONE")])

    def test_instance_without_imdsv2_falls_back_to_imdsv1(self):
        """The token's PUT answered 403 (an instance, or a proxy, without IMDSv2): the role's
        keys come without a token, as AWS's SDKs take them. Before, the worker had no keys."""
        self.meta.token_status, self.meta.v1 = 403, True
        self.check_imdsv1("v1-403", "PUT %s/latest/api/token answered 403" % self.meta.base)

    def test_token_not_answered_falls_back_to_imdsv1(self):
        """The token's answer never comes (a container behind a hop limit of 1): the PUT has
        half of PIXQ_S3_CREDENTIALS_TIMEOUT_MS, the keys come through IMDSv1 in the rest."""
        self.meta.token_hang, self.meta.v1 = 5.0, True
        self.check_imdsv1("v1-hung", "timed out")

    def test_no_imdsv1_fallback_when_disabled(self):
        """AWS_EC2_METADATA_V1_DISABLED=true: a refused token is the fetch's failure, no GET is
        sent without one; and where IMDSv1 is off too, the failure of the fallback says why it
        was tried."""
        self.meta.token_status = 403
        worker = self.instance_worker(AWS_EC2_METADATA_V1_DISABLED="true")
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 20, "the refusal")
        error = worker.log_events("s3_credentials_refused")[0]["error"]
        self.assertEqual(error, "PUT %s/latest/api/token answered 403" % self.meta.base)
        self.assertEqual(self.meta.paths("GET"), [])
        self.kill_worker(worker, signal.SIGTERM)
        worker = self.instance_worker()  # IMDSv1 allowed by pixq, refused by the instance
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 20, "the refusal")
        error = worker.log_events("s3_credentials_refused")[0]["error"]
        self.assertEqual(error, "IMDSv1, without a session token (PUT %s/latest/api/token "
                         "answered 403): GET %s/latest/meta-data/iam/security-credentials/ "
                         "answered 401" % (self.meta.base, self.meta.base))
        self.assertFalse(worker.log_events("s3_credentials_imdsv1"))

    def test_keys_refused_by_s3_are_fetched_again_at_once(self):
        """Keys revoked before their Expiration (a role's session revoked, keys rotated early):
        S3 refuses them, the worker asks the endpoint again at once and sends the request once
        more with the new keys; no back-off."""
        worker = self.start_worker(**self.container_env(PIXQ_S3_CREDENTIALS_RETRY_MS="100"))

        def revoke():
            self.issue("ASIAMETATWO", "secret/two", "token-two", 3600)
            self.retire("ASIAMETATWO", "secret/two", "token-two")
        self.assert_revoked_keys_replaced_at_once(worker, "mr", revoke)

    def test_keys_refused_before_the_endpoint_has_others_are_retried(self):
        """S3 refuses the keys while the endpoint still serves them (revoked, the new ones not
        issued yet): the upload is retried as in an outage, not failed for good, and goes once
        the endpoint serves new keys."""
        worker = self.start_worker(**self.patient(), **self.container_env(
            PIXQ_S3_CREDENTIALS_RETRY_MS="100"))
        self.retire("ASIAMETATWO", "secret/two", "token-two")  # ONE refused from now on
        self.push_jobs([self.job("mw-1", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry"), 20, "a retry")
        self.issue("ASIAMETATWO", "secret/two", "token-two", 3600)
        self.assert_complete(self.postbacks_for(["mw-1"])["mw-1"], "mw-1", "pixq-test", 1)
        codes = [(r.status, r.code) for r in self.puts("pixq-test")]
        self.assertEqual(codes[-1], (200, ""))
        self.assertEqual(set(codes[:-1]), {(403, "InvalidAccessKeyId")}, codes)
        self.assertEqual({e["code"] for e in worker.log_events("upload_retry")},
                         {"InvalidAccessKeyId"})
        self.assertEqual(len(self.s3.failures()), len(codes) - 1)
        self.s3.forget_failures()  # those were meant
        # keys that never come: given up after PIXQ_S3_MAX_ATTEMPTS, saying why
        self.retire("ASIAMETATHREE", "secret/three", "token-three")
        self.push_jobs([self.job("mw-2", "pixq-test")])
        error = self.postbacks_for(["mw-2"])["mw-2"].results["errors"][0]
        self.assertEqual(error, "%s refused the S3 credentials 20 times (InvalidAccessKeyId), and "
                         "their source gave no others (the log's s3_credentials_* lines say more)"
                         % self.s3.host())
        self.s3.forget_failures()

    def test_web_identity_keys_come_from_sts(self):
        """IAM Roles for Service Accounts (EKS): STS's AssumeRoleWithWebIdentity with the
        token in AWS_WEB_IDENTITY_TOKEN_FILE, read at each fetch (the kubelet renews it). A
        token STS refuses is said with STS's reason; once the file holds one it takes, the
        keys come; keys S3 then refuses are fetched again with the token of that moment."""
        token_file = self.tmp / "eks-token"

        def write_token(text):  # as the kubelet does: aside, then renamed over
            token_file.with_suffix(".new").write_text(text)
            os.replace(token_file.with_suffix(".new"), token_file)

        write_token("stale-token\n")
        self.meta.web_token = "eks-token-1"
        self.issue("ASIAWEBONE", "secret&one", "token-web-1", 3600)
        self.retire("ASIAWEBONE", "secret&one", "token-web-1")
        role = "arn:aws:iam::123456789012:role/pixq"
        worker = self.start_worker(
            **self.patient(), AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_ROLE_ARN=role,
            AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file), AWS_ENDPOINT_URL_STS=self.meta.base,
            PIXQ_S3_CREDENTIALS_RETRY_MS="100", PIXQ_S3_CREDENTIALS_RETRY_MAX_MS="200",
            PIXQ_S3_CREDENTIALS_TIMEOUT_MS=str(int(harness.scaled(5) * 1000)))
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 10, "a warning")
        refused = worker.log_events("s3_credentials_refused")[0]
        self.assertEqual((refused["source"], refused["error"]),
                         ("web_identity", "STS answered 400 InvalidIdentityToken: Couldn't "
                          "retrieve verification key from your identity provider"))
        write_token("eks-token-1\n")
        self.push_jobs([self.job("wi-1", "pixq-test")])
        self.assert_complete(self.postbacks_for(["wi-1"])["wi-1"], "wi-1", "pixq-test", 1)
        form = dict(self.meta.forms[-1])
        self.assertRegex(form.pop("RoleSessionName"), r"^pixq-[\w.-]*-%d$" % worker.proc.pid)
        self.assertEqual(form, {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                                "RoleArn": role, "WebIdentityToken": "eks-token-1"})
        headers = {k.lower(): v for k, v in self.meta.requests[-1][2].items()}
        self.assertEqual(headers["content-type"], "application/x-www-form-urlencoded")
        self.assertFalse([k for k in headers if k == "authorization" or k.startswith("x-amz-")])
        # a new token and new keys; the old keys revoked
        write_token("eks-token-2\n")
        self.meta.web_token = "eks-token-2"
        self.issue("ASIAWEBTWO", "secret/two", "token-web-2", 3600)
        self.retire("ASIAWEBTWO", "secret/two", "token-web-2")
        time.sleep(0.2)  # past PIXQ_S3_CREDENTIALS_RETRY_MS since wi-1's fetch
        self.push_jobs([self.job("wi-2", "pixq-test")])
        self.assert_complete(self.postbacks_for(["wi-2"])["wi-2"], "wi-2", "pixq-test", 1)
        self.assertEqual(self.meta.forms[-1]["WebIdentityToken"], "eks-token-2")
        self.assertEqual([(e["source"], e["url"]) for e in worker.log_events("s3_credentials")],
                         [("web_identity", self.meta.base)])
        self.assertEqual([e["access_key_id_ends"] for e in
                          worker.log_events("s3_credentials_reloaded")], ["BONE", "BTWO"])
        self.assertEqual([e["code"] for e in worker.log_events("s3_credentials_retry")],
                         ["InvalidAccessKeyId"])
        self.assertEqual(len(self.s3.failures()), 1)
        self.s3.forget_failures()

    def test_endpoint_down_is_waited_for(self):
        """The endpoint fails at start (the agent not ready yet): the worker starts, says so
        once, and its uploads are retried as in an outage until the endpoint answers."""
        self.meta.down = True
        worker = self.start_worker(**self.patient(), **self.container_env())
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 10, "a warning")
        self.push_jobs([self.job("md-1", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry") and len(self.meta.paths()) >= 2,
                        20, "a retry, and a second fetch")
        self.meta.down = False
        self.assert_complete(self.postbacks_for(["md-1"])["md-1"], "md-1", "pixq-test", 1)
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")], [(200, "")])
        refused = worker.log_events("s3_credentials_refused")
        self.assertEqual([(e["source"], e["action"]) for e in refused],
                         [("container", "none_to_sign_with")])  # said once, not per fetch
        self.assertEqual(refused[0]["error"], "GET %s answered 500: metadata service "
                         "unavailable" % self.meta.url("/creds"))
        self.assertIn("no S3 credentials: the container credentials endpoint %s gave none "
                      "(the log's s3_credentials_refused says why)" % self.meta.url("/creds"),
                      worker.log_events("upload_retry")[0]["error"])

    def test_password_in_the_endpoint_url_is_never_shown(self):
        """A password in AWS_CONTAINER_CREDENTIALS_FULL_URI is sent as the request's Basic
        credentials: a secret, which README says --print-config and the start-up log hide, and
        the credentials' own lines hide too (before, every one of them showed it)."""
        url = self.meta.url("/creds").replace("://", "://pod:url-pw-7@", 1)
        shown = url.replace("url-pw-7", "***")
        env = self.container_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=url)
        printed = subprocess.run([CONFIG.worker, "--print-config"], env=self.worker_env(**env),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 timeout=harness.scaled(30))
        self.assertEqual(printed.returncode, 0, printed.stderr)
        self.assertIn("\nAWS_CONTAINER_CREDENTIALS_FULL_URI=%s\n" % shown, printed.stdout)
        self.meta.down = True
        worker = self.start_worker(**self.patient(), **env)
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 10, "a warning")
        self.meta.down = False
        self.push_jobs([self.job("pw-1", "pixq-test")])
        self.assert_complete(self.postbacks_for(["pw-1"])["pw-1"], "pw-1", "pixq-test", 1)
        auth = {h.get("Authorization") for _, p, h in self.meta.requests}
        self.assertEqual(auth, {"Basic " + base64.b64encode(b"pod:url-pw-7").decode()})
        self.assertEqual([e["url"] for e in worker.log_events("s3_credentials")], [shown])
        self.assertEqual([e["url"] for e in worker.log_events("s3_credentials_reloaded")],
                         [shown])
        refused = worker.log_events("s3_credentials_refused")
        self.assertEqual((refused[0]["url"], refused[0]["error"]),
                         (shown, "GET %s answered 500: metadata service unavailable" % shown))
        self.assertIn(shown, [e.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                              for e in worker.log_events("config")])  # the start-up log
        self.assertNotIn("url-pw-7", worker.log_path.read_text())

    def test_endpoint_that_does_not_answer_is_asked_less_and_less(self):
        """An endpoint that holds every request (an IMDS hop limit of 1, a firewall dropping
        packets): each fetch times out, the next comes at least PIXQ_S3_CREDENTIALS_RETRY_MS
        after its end and twice that after each further failure, so that the requests in
        between do not each wait for a fetch; the timeouts (whose messages differ by their
        milliseconds) are said once."""
        self.meta.hang = 30.0
        env = dict(self.patient(), PIXQ_S3_MAX_ATTEMPTS="60")  # the 8-s wait after the 4th
        worker = self.start_worker(**env, **self.container_env(
            PIXQ_S3_CREDENTIALS_TIMEOUT_MS="300"))
        self.push_jobs([self.job("mh-1", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry"), 20, "a retry")
        t0 = time.time()
        asked = len(self.meta.paths())
        time.sleep(6.0)
        asked_in_6s = len(self.meta.paths()) - asked
        self.meta.hang = 0.0
        self.assert_complete(self.postbacks_for(["mh-1"])["mh-1"], "mh-1", "pixq-test", 1)
        figures("endpoint_hung", fetches_in_6s=asked_in_6s, upload_retries=len(
            worker.log_events("upload_retry")), waited=round(time.time() - t0, 1))
        # the fetch at start (before the job), then waits of 1, 2, 4 s after each timeout: the
        # 2nd fetch and the 4th are 6.6 s apart at least, so 6 s hold at most 2 of them; a
        # fetch 1 s after the end of each (no back-off) made 3 or 4
        self.assertLessEqual(asked_in_6s, 2)
        refused = worker.log_events("s3_credentials_refused")
        self.assertEqual(len(refused), 1, [e["error"] for e in refused])
        self.assertIn("timed out", refused[0]["error"])

    def patient(self):
        return CredentialsFileTest.patient(self)

    def test_refused_at_start(self):
        """Settings to fix end the worker with status 2, before any request: a plain http
        endpoint elsewhere than loopback or the ECS and EKS agents, and the instance's keys
        asked for beside other keys."""
        run = CredentialsFileTest.run_worker_at_once
        env = self.container_env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.7/creds")
        self.assertEqual(run(self, **env),
                         (2, "pixq-worker: AWS_CONTAINER_CREDENTIALS_FULL_URI: "
                             "http://192.0.2.7/creds: a plain http URL must name a loopback "
                             "address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23 (else use "
                             "https)"))
        status, err = run(self, PIXQ_S3_INSTANCE_CREDENTIALS="1",
                          AWS_EC2_METADATA_SERVICE_ENDPOINT=self.meta.base)
        self.assertEqual(status, 2)
        self.assertIn("PIXQ_S3_INSTANCE_CREDENTIALS and AWS_ACCESS_KEY_ID", err)
        self.assertEqual(run(self, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                             AWS_WEB_IDENTITY_TOKEN_FILE=str(self.tmp / "token")),
                         (2, "pixq-worker: AWS_WEB_IDENTITY_TOKEN_FILE needs AWS_ROLE_ARN, the "
                             "role to take"))
        self.assertEqual(self.meta.requests, [])


# A credential_process for the tests: prints the keys of the state file (JSON: key, secret,
# token, expires_in_s; "fail" to write it on stderr and end with status 1; "sleep" seconds
# first), and notes each run (its pid) in the runs file.
HELPER = r'''
import json, os, sys, time
state = json.load(open(sys.argv[1]))
with open(sys.argv[2], "a") as runs:
    runs.write("%d\n" % os.getpid())
time.sleep(state.get("sleep", 0))
if state.get("fail"):
    sys.stderr.write(state["fail"] + "\n")
    sys.exit(1)
out = {"Version": 1, "AccessKeyId": state["key"], "SecretAccessKey": state["secret"],
       "SessionToken": state["token"]}
if state.get("expires_in_s"):
    out["Expiration"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(state["expires_at"]))
print(json.dumps(out))
'''


class ProcessCredentialsTest(ThrottleCase):
    """Keys from a program that a credentials file's profile names (credential_process: IAM
    Roles Anywhere's signing helper on machines outside AWS, a vault's helper): each worker
    runs it, and runs it again before the keys expire or when S3 refuses them. Before, such a
    profile was refused at start ("only keys written in the file are read")."""

    def setUp(self):
        super().setUp()
        self.helper = self.tmp / "helper.py"
        self.helper.write_text(HELPER)
        self.state = self.tmp / "state.json"
        self.runs = self.tmp / "runs"
        self.creds_path = self.tmp / "aws-credentials"
        self.creds_path.write_text(
            "[default]\naws_access_key_id = AKIDDECOY\naws_secret_access_key = decoy\n\n"
            "[fleet]\nregion = us-east-1\ncredential_process = /usr/bin/python3 '%s' %s %s\n"
            % (self.helper, self.state, self.runs))
        self.issue("ASIAPROCONE", "secret/one", "token-one")
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = self.keys[:3]

    def issue(self, key, secret, token, expires_in_s=0, **extra):
        """The program gives new keys from now on, which S3 takes beside the old."""
        self.keys = (key, secret, token)
        state = dict(key=key, secret=secret, token=token, expires_in_s=expires_in_s,
                     expires_at=time.time() + expires_in_s, **extra)
        self.state.with_suffix(".new").write_text(json.dumps(state))
        os.replace(self.state.with_suffix(".new"), self.state)
        self.s3.also_valid[key] = (secret, token)
        return state

    def retire(self, key, secret, token):
        """S3 takes only these keys from now on."""
        self.s3.access_key, self.s3.secret_key, self.s3.session_token = key, secret, token
        self.s3.also_valid.clear()

    def run_pids(self):
        return [int(p) for p in self.runs.read_text().split()] if self.runs.exists() else []

    def env(self, timeout_s=5, **extra):
        return dict(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                    AWS_SHARED_CREDENTIALS_FILE=str(self.creds_path), AWS_PROFILE="fleet",
                    PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS=str(int(harness.scaled(timeout_s) *
                                                                   1000)),
                    **extra)

    def test_keys_come_from_the_program_and_again_before_they_expire(self):
        """The first keys expire 10 s after they are given; with a lead of 5 s the worker runs
        the program again once they have 5 s left, and signs with the new keys: no request
        meets a refusal, and the program runs once per set of keys, not per request."""
        state = self.issue("ASIAPROCONE", "secret/one", "token-one", 6 + harness.scaled(4))
        due = int(state["expires_at"]) - 5
        worker = self.start_worker(**self.env(PIXQ_S3_CREDENTIALS_REFRESH_MS="5000"))
        self.push_jobs([self.job("cp-1", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["cp-1"])["cp-1"], "cp-1", "pixq-test", 1)
        self.push_jobs([self.job("cp-1b", "pixq-test")])
        self.assert_complete(self.postbacks_for(["cp-1b"])["cp-1b"], "cp-1b", "pixq-test", 1)
        self.issue("ASIAPROCTWO", "secret/two", "token-two", 3600)
        last = max(r.end or r.time for r in self.s3.records())
        self.assertLess(last, due - 1, "cp-1 still ran when the keys were due (a slow machine)")
        time.sleep(max(0.0, due + 0.3 - time.time()))
        self.retire("ASIAPROCTWO", "secret/two", "token-two")
        self.push_jobs([self.job("cp-2", "pixq-test", wait_for_s3=True)])
        self.assert_complete(self.postbacks_for(["cp-2"])["cp-2"], "cp-2", "pixq-test", 1)
        self.assertEqual([(e["source"], e["url"], e["access_key_id_ends"]) for e in
                          worker.log_events("s3_credentials_reloaded")],
                         [("process", "/usr/bin/python3", "CONE"),
                          ("process", "/usr/bin/python3", "CTWO")])
        self.assertEqual([(e["source"], e["path"], e["profile"], e["url"]) for e in
                          worker.log_events("s3_credentials")],
                         [("process", str(self.creds_path), "fleet", "/usr/bin/python3")])
        self.assertEqual({(r.status, r.code) for r in self.s3.records()}, {(200, "")})
        self.assertFalse(worker.log_events("s3_credentials_refused"))
        self.assertEqual(len(self.run_pids()), 2)  # not at the check before the start either

    def test_keys_refused_by_s3_are_asked_for_again_at_once(self):
        """Keys revoked before they expire: S3 refuses them, the worker runs the program again
        at once and sends the request once more with the new keys."""
        worker = self.start_worker(**self.env(PIXQ_S3_CREDENTIALS_RETRY_MS="100"))

        def revoke():
            self.issue("ASIAPROCTWO", "secret/two", "token-two")
            self.retire("ASIAPROCTWO", "secret/two", "token-two")
        self.assert_revoked_keys_replaced_at_once(worker, "cr", revoke)
        self.assertEqual(len(self.run_pids()), 2)

    def test_program_that_fails_or_hangs_is_said_and_tried_again(self):
        """The program fails (a login expired): the worker starts, says why with what the
        program wrote on its standard error, and its uploads wait as in an outage. Then it
        hangs: it is ended, with what it started, after PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS.
        Once it gives keys, the upload goes."""
        self.issue("ASIAPROCONE", "secret/one", "token-one",
                   fail="helper: the session expired, run `helper login`")
        worker = self.start_worker(**CredentialsFileTest.patient(self), **self.env(
            timeout_s=1.5, PIXQ_S3_CREDENTIALS_RETRY_MS="100",
            PIXQ_S3_CREDENTIALS_RETRY_MAX_MS="200"))
        self.wait_until(lambda: worker.log_events("s3_credentials_refused"), 10, "a warning")
        refused = worker.log_events("s3_credentials_refused")[0]
        self.assertEqual((refused["source"], refused["url"], refused["action"], refused["error"]),
                         ("process", "/usr/bin/python3", "none_to_sign_with",
                          "/usr/bin/python3 ended with status 1: helper: the session expired, "
                          "run `helper login`"))
        self.push_jobs([self.job("cf-1", "pixq-test")])
        self.wait_until(lambda: worker.log_events("upload_retry"), 20, "a retry")
        self.assertIn("no S3 credentials: credential_process /usr/bin/python3 of profile [fleet] "
                      "in %s gave none" % self.creds_path,
                      worker.log_events("upload_retry")[0]["error"])
        self.issue("ASIAPROCONE", "secret/one", "token-one", sleep=60)
        runs = len(self.run_pids())
        self.wait_until(lambda: len(self.run_pids()) >= runs + 2, 30, "two runs that hang")
        hung = self.run_pids()[runs]
        self.wait_until(lambda: not os.path.exists("/proc/%d" % hung) or
                        open("/proc/%d/stat" % hung).read().split(") ")[-1][0] == "Z", 10,
                        "the hung program to be ended")
        self.issue("ASIAPROCONE", "secret/one", "token-one")
        self.assert_complete(self.postbacks_for(["cf-1"])["cf-1"], "cf-1", "pixq-test", 1)
        errors = [e["error"] for e in worker.log_events("s3_credentials_refused")]
        self.assertEqual(len(errors), 2, errors)  # each reason said once
        self.assertEqual(errors[1], "/usr/bin/python3 did not end within %d ms "
                         "(PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS)" % int(harness.scaled(1.5) *
                                                                          1000))
        self.assertEqual([(r.status, r.code) for r in self.puts("pixq-test")], [(200, "")])

    def test_refused_at_start(self):
        """A command that cannot be split into words, or whose program is not there, is a
        setting to fix: status 2."""
        self.creds_path.write_text("[fleet]\ncredential_process = /usr/bin/python3 'open\n")
        self.assertEqual(CredentialsFileTest.run_worker_at_once(self, **self.env()),
                         (2, "pixq-worker: AWS_SHARED_CREDENTIALS_FILE %s: profile [fleet]: "
                             "credential_process: the command has a ' that is not closed"
                          % self.creds_path))
        self.creds_path.write_text("[fleet]\ncredential_process = pixq-no-such-helper --x\n")
        status, err = CredentialsFileTest.run_worker_at_once(self, **self.env())
        self.assertEqual(status, 2)
        self.assertIn("profile [fleet]: credential_process: pixq-no-such-helper is not found "
                      "on PATH", err)


class RetryTest(ThrottleCase):
    """Retryable answers: the output is parked between attempts and uploaded in the end."""

    def retried(self, job_id, bucket, expect):
        worker = self.start_workers(1)[0]
        self.push_jobs([self.job(job_id, bucket)])
        pb = self.postbacks_for([job_id])[job_id]
        self.assert_complete(pb, job_id, bucket, 1)
        self.assertEqual([(r.status, r.code or r.fault) for r in self.puts(bucket)], expect)
        self.assert_downloaded_once([job_id])
        self.assert_no_leftovers([job_id])
        # each retry after the first went back to delayed through requeue.lua, with the blob
        for event in ("parked_job_lost", "upload_failed", "task_stranded"):
            self.assertEqual(worker.log_events(event), [])

    def test_parked_output_of_a_job_redis_lost(self):
        """Redis flushed while a parked output's PUT is under way: the job's state is gone with
        the queue's data, and the log says so (it said state_expired, as for state kept past
        PIXQ_BLOB_TTL_S, which sent the operator to the wrong setting)."""
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1)
        # both PUTs held 1.5 s: the first, answered 500 then, and the parked output's retry,
        # during which Redis is flushed (a stall set once the first was answered came too late
        # for a retry drawn a few ms after it: the full jitter starts at 0)
        self.s3.stall("flaky-bucket", 1.5, methods=("PUT",), count=2)
        worker = self.start_workers(1)[0]
        self.push_jobs([self.job("lost-1", "flaky-bucket")])
        self.wait_until(lambda: self.s3.stalled() >= 2, 15, "the parked output's PUT")
        self.redis.execute("FLUSHALL")
        self.wait_until(lambda: worker.log_events("parked_job_lost"), 10, "parked_job_lost")
        self.assertEqual([e["reason"] for e in worker.log_events("parked_job_lost")],
                         ["data_lost"])

    def test_connection_resets(self):
        self.s3.reset("flaky-bucket", count=2)
        self.retried("reset-1", "flaky-bucket", [(0, "reset"), (0, "reset"), (200, None)])
        self.assertEqual(int(self.limiter("flaky-bucket").get("throttle_signals", 0)), 0)

    def test_put_timed_out_is_retried(self):
        # a PUT whose answer does not come within PIXQ_S3_TIMEOUT_MS (1 s here; held 30 s) is
        # retried as a reset is, the output uploaded, not failed at once nor lost
        self.s3.stall("flaky-bucket", 30.0, methods=("PUT",), count=1)
        worker = self.start_worker(PIXQ_S3_TIMEOUT_MS=1000, PIXQ_S3_RETRY_BASE_MS=1)
        self.push_jobs([self.job("to-1", "flaky-bucket")])
        pb = self.postbacks_for(["to-1"])["to-1"]
        self.assert_complete(pb, "to-1", "flaky-bucket", 1)
        self.assertEqual(self.s3.stalled(), 1)
        retries = worker.log_events("upload_retry")
        self.assertEqual([(e["attempt"], e["status"]) for e in retries], [("1", "0")])
        self.assertRegex(retries[0]["error"], r"(?i)time")
        self.assertEqual(worker.log_events("upload_failed"), [])
        self.assert_downloaded_once(["to-1"])
        self.assert_no_leftovers(["to-1"])

    def test_request_timeout_and_5xx(self):
        self.s3.request_timeout("flaky-bucket", 1)
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1)
        self.s3.fail("flaky-bucket", 502, "BadGateway", count=1)
        self.s3.fail("flaky-bucket", 504, "GatewayTimeout", count=1)
        self.retried("rt-1", "flaky-bucket",
                     [(400, "RequestTimeout"), (500, "InternalError"), (502, "BadGateway"),
                      (504, "GatewayTimeout"), (200, None)])

    def stranded(self, job_id, fails, cut, pattern, step, puts):
        """A parked upload task whose Redis call is cut on the wire (`cut`: "before" it reaches
        Redis, or "after" Redis ran it, its answer lost) at `pattern`: the task stays on the
        worker's active list and runs again, not settled as if its job were gone; the output is
        uploaded, recorded once and the job posts back once."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        self.addCleanup(self._stop_programs)  # first: the worker ends while the proxy relays
        worker = self.start_worker(PIXQ_REDIS_URL=proxy.redis_url())
        # a job parked once first: Redis has every script of the path (no NOSCRIPT answer left)
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1)
        self.push_jobs([self.job("warm-" + job_id, "flaky-bucket")])
        self.postbacks_for(["warm-" + job_id])
        self.wait_until(lambda: [e for e in worker.log_events("job_done")
                                 if e["job_id"] == "warm-" + job_id], 10, "the first job settled")
        self.s3.fail("flaky-bucket", 500, "InternalError", count=fails)
        (proxy.cut_before if cut == "before" else proxy.cut_on)(pattern)
        self.push_jobs([self.job(job_id, "flaky-bucket")])
        pb = self.postbacks_for([job_id])[job_id]
        self.assertTrue(proxy.tripped.is_set(), "the call was not cut")
        self.assert_complete(pb, job_id, "flaky-bucket", 1)
        mine = self.s3.records(method="PUT", bucket="flaky-bucket", key="%s/0.png" % job_id)
        self.assertEqual([r.status for r in mine], puts)
        self.assertEqual([e["step"] for e in worker.log_events("task_stranded")], [step])
        for event in ("parked_job_lost", "upload_failed"):
            self.assertEqual(worker.log_events(event), [])
        self.assert_one_postback_each(["warm-" + job_id, job_id])
        self.assert_downloaded_once(["warm-" + job_id, job_id])
        self.assert_no_leftovers(["warm-" + job_id, job_id])
        worker.check_alive()

    def test_stranded_requeue(self):
        # the second failure sends the task back to delayed: requeue.lua never reaches Redis
        self.stranded("st-1", 2, "before", b"$9\r\nthrottled\r\n", "requeue", [500, 500, 200])

    def test_stranded_upload_done(self):
        # the upload succeeded; upload_done.lua never reaches Redis: uploaded again, recorded
        self.stranded("st-2", 1, "before", b"$3\r\nimg\r\n", "upload_done", [500, 200, 200])

    def test_stranded_upload_done_answer(self):
        # upload_done.lua ran (the blob is gone, the output recorded) but its answer is lost:
        # the task's next run sees the output recorded and completes the job without a PUT
        self.stranded("st-3", 1, "after", b"$3\r\nimg\r\n", "upload_done", [500, 200])

    def test_stranded_completion(self):
        # the last output is recorded; reading the job's state for the postback fails
        key = self.key("job:st-4").encode()
        pattern = b"HGETALL\r\n$%d\r\n%s\r\n" % (len(key), key)
        self.stranded("st-4", 1, "before", pattern, "complete", [500, 200])

    def test_writes_refused_back_off(self):
        # Redis answers reads but refuses writes (here NOREPLICAS; out of memory or a failed save
        # alike) while a parked output's PUT is in flight: its upload task cannot record the
        # upload, strands and runs again, each time after a longer nap, not in a loop of PUTs;
        # once Redis takes writes again the job completes and posts back once
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1)  # parked after this
        self.s3.stall("flaky-bucket", 1.0, methods=("PUT",), count=2)  # the first two PUTs
        worker = self.start_worker()
        self.push_jobs([self.job("wr-1", "flaky-bucket")])
        self.wait_until(lambda: self.s3.stalled() == 2, 20, "the upload task's PUT in flight")
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")
        try:
            self.wait_until(lambda: worker.log_events("task_stranded"), 20,
                            "the upload task stranded")
            time.sleep(2.0)
            stranded = worker.log_events("task_stranded")
            puts = self.s3.records(method="PUT", bucket="flaky-bucket", key="wr-1/0.png")
        finally:
            self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        waits = [int(e["retry_ms"]) for e in stranded]
        figures("writes_refused", strands=len(stranded), puts=len(puts),
                waits=",".join(map(str, waits)))
        assert_jittered_ladder(self, waits)
        self.assertTrue(3 <= len(waits) <= 7, waits)  # 2 s: without the naps, hundreds of PUTs
        self.assertLessEqual(len(puts), len(waits) + 2)
        pb = self.postbacks_for(["wr-1"])["wr-1"]
        self.assert_complete(pb, "wr-1", "flaky-bucket", 1)
        self.assert_one_postback_each(["wr-1"])
        self.assert_no_leftovers(["wr-1"])
        worker.check_alive()

    def refuse_writes_during(self, path, worker, until, what):
        """With the download of `path` in flight, Redis refuses writes (NOREPLICAS, as out of
        memory or a failed save would) from the moment the source answers until `until()` has
        held for 2 s more; the worker's log and the downloads of that time are returned."""
        self.wait_until(lambda: self.src.requests(path) == 1, 20, "the download in flight")
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")
        try:
            self.src.release()
            self.wait_until(until, 20, what)
            time.sleep(2.0)
            return self.src.requests(path)
        finally:
            self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")

    def test_job_retry_with_writes_refused(self):
        # a job whose source answers 503 is to run again later (requeue.lua), but Redis refuses
        # writes: requeue.lua alone is tried again, after naps that double; the job is neither
        # downloaded again nor stranded; once Redis takes writes it is retried and succeeds
        path = "/src/jr-1.png"
        job = self.job("jr-1", "pixq-test")
        self.src.stall(path)
        self.src.status[path] = 503
        worker = self.start_worker(PIXQ_RETRY_BASE_MS=50)
        self.push_jobs([job])

        def retries():
            return [e for e in worker.log_events("redis_error") if e.get("step") == "retry"]

        downloads = self.refuse_writes_during(path, worker, retries, "requeue.lua refused")
        del self.src.status[path]
        waits = [int(e["retry_ms"]) for e in retries()]
        figures("job_retry_writes_refused", retries=len(waits), downloads=downloads,
                waits=",".join(map(str, waits)))
        assert_jittered_ladder(self, waits)
        self.assertGreaterEqual(len(waits), 3)
        self.assertEqual(downloads, 1)  # not run again while its retry cannot be scheduled
        pb = self.postbacks_for(["jr-1"])["jr-1"]
        self.assert_complete(pb, "jr-1", "pixq-test", 1)
        self.assert_one_postback_each(["jr-1"])
        self.assertEqual(worker.log_events("task_stranded"), [])
        self.assertEqual([e["attempt"] for e in worker.log_events("job_retry")], ["2"])
        worker.check_alive()

    def test_park_with_writes_refused(self):
        # the job's output is to be parked after a 500 (park.lua), but Redis refuses writes: the
        # job stays on the active list and runs again after naps that double, not in a loop of
        # downloads and PUTs; once Redis takes writes it completes and posts back once
        path = "/src/pw-1.png"
        job = self.job("pw-1", "flaky-bucket")
        self.src.stall(path)
        self.s3.fail("flaky-bucket", 500, "InternalError")
        worker = self.start_worker()
        self.push_jobs([job])
        downloads = self.refuse_writes_during(
            path, worker, lambda: worker.log_events("task_stranded"), "the job stranded")
        self.s3.clear_faults()
        stranded = worker.log_events("task_stranded")
        waits = [int(e["retry_ms"]) for e in stranded]
        figures("park_writes_refused", strands=len(stranded), downloads=downloads,
                waits=",".join(map(str, waits)))
        self.assertEqual({e["step"] for e in stranded}, {"park"})
        assert_jittered_ladder(self, waits)
        self.assertTrue(3 <= len(waits) <= 8, waits)
        self.assertLessEqual(downloads, len(waits) + 2)  # without the naps: hundreds
        pb = self.postbacks_for(["pw-1"])["pw-1"]
        self.assert_complete(pb, "pw-1", "flaky-bucket", 1)
        self.assert_one_postback_each(["pw-1"])
        worker.check_alive()

    def test_retry_of_a_parked_output_takes_a_new_slot(self):
        """A parked output's PUT, sent at its slot, is answered 500: the retry (drawn within
        1 ms: PIXQ_S3_RETRY_BASE_MS=1) takes a slot of its own, 1/rate after the first, not
        the one the failed attempt used. One worker parking every throttled output, 2 PUT/s,
        burst 0, the bucket's next slot set 1 s ahead."""
        self.limit("flaky-bucket", 2, 0)
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1)
        self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_S3_RETRY_BASE_MS=1)
        sec, usec = self.redis.execute("TIME")
        slot = int(sec) + int(usec) / 1e6 + 1.0
        self.redis.execute("HSET", self.rl_key("flaky-bucket"), "tat", "%.0f" % (slot * 1e6))
        self.push_jobs([self.job("again-1", "flaky-bucket")])
        self.assert_complete(self.postbacks_for(["again-1"])["again-1"], "again-1",
                             "flaky-bucket", 1)
        puts = self.puts("flaky-bucket")
        self.assertEqual([r.status for r in puts], [500, 200])
        self.assertGreaterEqual(puts[1].time - puts[0].time, 0.45)
        # two slots taken from the limit: the reserved one and the retry's (later if the retry
        # came after its slot: a busy machine)
        self.assertGreaterEqual(int(self.limiter("flaky-bucket")["tat"]),
                                round(slot * 1e6) + 1000000)

    def test_slowdowns_within_the_cooldown_slow_the_bucket_once(self):
        # two SlowDowns, the second within PIXQ_S3_COOLDOWN_MS (30 s) of the first's decrease:
        # one congestion episode, one decrease (each counted as a throttle signal)
        self.s3.fail("flaky-bucket", 503, "SlowDown", count=2)
        worker = self.start_worker(PIXQ_S3_THROTTLE_RETRY_BASE_MS=1, PIXQ_S3_COOLDOWN_MS=30000)
        self.push_jobs([self.job("cool-1", "flaky-bucket")])
        self.assert_complete(self.postbacks_for(["cool-1"])["cool-1"], "cool-1", "flaky-bucket",
                             1)
        self.assertEqual([r.status for r in self.puts("flaky-bucket")], [503, 503, 200])
        state = self.limiter("flaky-bucket")
        self.assertEqual(int(state["throttle_signals"]), 2)
        self.assertEqual(int(state["decreases"]), 1)
        # one line for the decrease, none for the signal within its episode
        self.assertEqual([(e["job_id"], e["bucket"]) for e in worker.log_events("bucket_slowed")],
                         [("cool-1", "flaky-bucket")])

    def test_429_slows_the_bucket(self):
        # 429 (an S3-compatible store's throttling answer) is a throttling answer as SlowDown
        # is: retried, counted, and the bucket's rate decreased for the whole fleet
        self.s3.fail("flaky-bucket", 429, "TooManyRequests", count=1)
        self.retried("tmr-1", "flaky-bucket", [(429, "TooManyRequests"), (200, None)])
        state = self.limiter("flaky-bucket")
        self.assertEqual(int(state["throttle_signals"]), 1)
        self.assertEqual(int(state["decreases"]), 1)

    def test_one_slowdown_slows_the_bucket(self):
        self.s3.fail("flaky-bucket", 503, "SlowDown", count=1)
        self.retried("slow-1", "flaky-bucket", [(503, "SlowDown"), (200, None)])
        state = self.limiter("flaky-bucket")
        self.assertEqual(int(state["throttle_signals"]), 1)
        self.assertEqual(int(state["decreases"]), 1)
        self.assertIn("w_max", state)
        self.assertIn("last_fail", state)


class RetryBaseTest(ThrottleCase):
    """The first retry delay: PIXQ_S3_THROTTLE_RETRY_BASE_MS after a throttling answer (503,
    429, SlowDown), PIXQ_S3_RETRY_BASE_MS after other retryable ones. With the one that applies
    at 1 ms and the other at 60 s (PIXQ_S3_RETRY_MAX_MS raised to 60 s: no base may exceed it),
    the retry comes within a second (full jitter: with the wrong base, one chance in 60)."""

    def retry_gap(self, job_id, status, code, **env):
        self.s3.fail("flaky-bucket", status, code, count=1)
        self.start_worker(PIXQ_S3_RETRY_MAX_MS=60000, **env)
        self.push_jobs([self.job(job_id, "flaky-bucket")])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "flaky-bucket", 1)
        puts = self.puts("flaky-bucket")
        self.assertEqual([(r.status, r.code) for r in puts], [(status, code), (200, "")])
        return puts[1].time - puts[0].time

    def test_throttling_answer(self):
        gap = self.retry_gap("base-1", 503, "SlowDown", PIXQ_S3_THROTTLE_RETRY_BASE_MS=1,
                             PIXQ_S3_RETRY_BASE_MS=60000)
        self.assertLess(gap, scaled(1.0))
        self.assertEqual(self.limiter("flaky-bucket").get("throttle_signals"), "1")

    def test_other_retryable_answer(self):
        """A 500 is retried from PIXQ_S3_RETRY_BASE_MS and does not slow the bucket down for
        the fleet (README: a throttling answer, 503 or 429, does); slow_down() after every
        retryable answer (an upload.c mutant) passed every test."""
        gap = self.retry_gap("base-2", 500, "InternalError", PIXQ_S3_THROTTLE_RETRY_BASE_MS=60000,
                             PIXQ_S3_RETRY_BASE_MS=1)
        self.assertLess(gap, scaled(1.0))
        state = self.limiter("flaky-bucket")
        self.assertNotIn("throttle_signals", state, state)
        self.assertNotIn("decreases", state, state)


class WaitForS3Test(ThrottleCase):
    """wait_for_s3: true, with objects that become readable after 3 s, or never."""

    def test_wait_for_late_and_never_visible_objects(self):
        self.s3.set_visibility("late-bucket", 3.0)
        self.s3.set_visibility("never-bucket", None)
        self.start_workers(3)
        self.push_jobs([self.job("late-1", "late-bucket", wait_for_s3=True),
                        self.job("never-1", "never-bucket", wait_for_s3=True),
                        self.job("nowait-1", "never-bucket")])
        pbs = self.postbacks_for(["late-1", "never-1", "nowait-1"], timeout=40)
        late_put = self.puts("late-bucket", 200)[0].time
        never_put = [r for r in self.puts("never-bucket", 200) if r.key.startswith("never-1/")]
        nowait_put = [r for r in self.puts("never-bucket", 200) if r.key.startswith("nowait-1/")]
        late_dt = pbs["late-1"].wall - late_put
        never_dt = pbs["never-1"].wall - never_put[0].time
        heads = self.s3.records(method="HEAD")
        late_heads = [r.status for r in heads if r.bucket == "late-bucket"]
        never_heads = [r.status for r in heads if r.bucket == "never-bucket"]
        figures("wait_for_s3", late_after_put=late_dt, never_after_put=never_dt,
                late_heads=",".join(map(str, late_heads)), never_heads=len(never_heads))
        for job_id, bucket in (("late-1", "late-bucket"), ("never-1", "never-bucket"),
                               ("nowait-1", "never-bucket")):
            self.assert_complete(pbs[job_id], job_id, bucket, 1)
        self.assertTrue(3.0 <= late_dt < 10.0, "late: postback %.2f s after the PUT" % late_dt)
        self.assertEqual(late_heads[-1], 200)
        self.assertTrue(all(s == 404 for s in late_heads[:-1]), late_heads)
        self.assertTrue(9.5 <= never_dt <= 12.0, "never: postback %.2f s after the PUT" % never_dt)
        self.assertTrue(all(s == 404 for s in never_heads), never_heads)
        self.assertTrue(5 <= len(never_heads) <= 7, never_heads)  # every 2 s for 10 s
        self.assertLess(pbs["nowait-1"].wall - nowait_put[0].time, 1.0)  # no wait asked
        self.assertFalse([r for r in heads if r.key.startswith("nowait-1/")])

    def test_last_pass_when_the_wait_is_over(self):
        """PIXQ_WAIT_FOR_S3_MAX_MS 2 s, interval 5 s: a pass at once, the last at 2 s, its HEADs
        given time (up to an interval past the end): the object readable after 1 s is found
        then. An object found readable is not asked about again."""
        self.s3.set_visibility("late-bucket", 1.0)
        worker = self.start_worker(PIXQ_WAIT_FOR_S3_MAX_MS=2000,
                                   PIXQ_WAIT_FOR_S3_INTERVAL_MS=5000)
        self.push_jobs([self.job("last-1", None, 2, wait_for_s3=True,
                                 buckets=["pixq-test", "late-bucket"])])
        pb = self.postbacks_for(["last-1"])["last-1"]
        self.assertNotIn("errors", pb.results, pb.results)
        heads = self.s3.records(method="HEAD")
        self.assertEqual([(r.bucket, r.status) for r in heads],
                         [("pixq-test", 200), ("late-bucket", 404), ("late-bucket", 200)])
        waits = worker.log_events("wait_for_s3")
        self.assertEqual([(e["level"], e["unreadable"]) for e in waits], [("info", "0")])

    def test_parked_output_is_waited_for_with_the_jobs_own(self):
        """A job whose second output was parked: the task that uploads it completes the job
        and waits for both objects, the one the job uploaded (its hash's `objs`) and its own
        (`obj:1`), each asked about once, and no other."""
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=0, PIXQ_WAIT_FOR_S3_MAX_MS=2000,
                                   PIXQ_WAIT_FOR_S3_INTERVAL_MS=500)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        RerunParkedTest.hold_bucket(self, "bkt-a", 1)
        self.push_jobs([self.job("wp-1", None, 2, wait_for_s3=True,
                                 buckets=["pixq-test", "bkt-a"])])
        pb = self.postbacks_for(["wp-1"])["wp-1"]
        self.assertEqual(len(worker.log_events("job_parked")), 1)
        self.assertNotIn("errors", pb.results, pb.results)
        heads = self.s3.records(method="HEAD")
        self.assertEqual(sorted((r.bucket, r.key, r.status) for r in heads),
                         [("bkt-a", "wp-1/1.png", 200), ("pixq-test", "wp-1/0.png", 200)])
        waits = worker.log_events("wait_for_s3")
        self.assertEqual([(e["level"], e["objects"], e["unreadable"]) for e in waits],
                         [("info", "2", "0")])


class WaitForS3StalledTest(ThrottleCase):
    """wait_for_s3 against an endpoint whose HEADs hang: the postback goes out when
    PIXQ_WAIT_FOR_S3_MAX_MS is over, not after a whole S3 timeout for each object."""

    def test_heads_end_by_the_deadline(self):
        self.s3.stall("late-bucket", 30.0)
        worker = self.start_worker(PIXQ_WAIT_FOR_S3_MAX_MS=2000,
                                   PIXQ_WAIT_FOR_S3_INTERVAL_MS=500, PIXQ_S3_TIMEOUT_MS=20000)
        job = self.job("stall-1", "late-bucket", saves=3, wait_for_s3=True)
        self.push_jobs([job])
        pb = self.postbacks_for(["stall-1"], timeout=90)["stall-1"]
        self.assert_complete(pb, "stall-1", "late-bucket", 3)
        last_put = max(r.time for r in self.puts("late-bucket", 200))
        waited = pb.wall - last_put
        figures("wait_for_s3_stalled", after_last_put=waited)
        # before: each of the 3 HEADs waited for its 20 s timeout (60 s); now they end by one
        # interval after PIXQ_WAIT_FOR_S3_MAX_MS: 2.5 s
        self.assertTrue(2.0 <= waited < 4.0, "postback %.2f s after the last PUT" % waited)
        # posted with URLs that may not be readable yet: a warning, not an info line
        waits = worker.log_events("wait_for_s3")
        self.assertEqual([(e["level"], e["unreadable"], e["action"]) for e in waits],
                         [("warn", "3", "post_anyway")])


class S3SourceTimeTest(ThrottleCase):
    """An {"name": "s3"} source counts against PIXQ_JOB_DOWNLOAD_TIMEOUT_MS as a URL does: its
    GET is cut when the job's time is over, and the job fails for good. It waited for the whole
    PIXQ_S3_TIMEOUT_MS (60 s by default) whatever the job's time, and was run again as after an
    outage."""

    def test_stalled_s3_source_is_cut_at_the_jobs_time(self):
        self.assertEqual(self.s3.put_object("late-bucket", "in/a.png", self.png), 200)
        self.s3.stall("late-bucket", 30.0, methods=("GET",))
        worker = self.start_worker(PIXQ_JOB_DOWNLOAD_TIMEOUT_MS=1500, PIXQ_S3_TIMEOUT_MS=20000,
                                   PIXQ_RETRY_BASE_MS=50)
        job = self.job("s3time-1", "pixq-test")
        job["src"] = {"name": "s3", "bucket": "late-bucket", "key": "in/a.png"}
        t0 = time.time()
        self.push_jobs([job])
        pb = self.postbacks_for(["s3time-1"], timeout=90)["s3time-1"]
        took = pb.wall - t0
        figures("s3_source_time", postback_after=took)
        errors = pb.results.get("errors", [])
        self.assertEqual(len(errors), 1, pb.results)
        self.assertIn("the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (1500 ms) "
                      "in all", errors[0])
        self.assertEqual(len(self.s3.records(method="GET", bucket="late-bucket")), 0)  # unanswered
        self.assertEqual(self.s3.stalled(), 1)  # one run, one GET: final, not retried
        self.assertLess(took, scaled(5.0), took)
        self.assertEqual(worker.log_events("job_retry"), [])


class S3SourceRetryAfterTest(ThrottleCase):
    """An {"name": "s3"} source answered 503 or 429 with Retry-After is run again that much later
    (at most PIXQ_RETRY_AFTER_MAX_MS), as a URL source is: the wait asked for was ignored, and
    the job ran again after the back-off's 25-50 ms."""

    def gap(self, job_id, status, code, retry_after, **env):
        """The wait between the source's one failed GET and the GET of the run after it."""
        self.assertEqual(self.s3.put_object("flaky-bucket", "in/%s.png" % job_id, self.png), 200)
        self.s3.fail("flaky-bucket", status, code, count=1, methods=("GET",),
                     key_prefix="in/" + job_id, headers={"Retry-After": retry_after})
        self.start_worker(PIXQ_RETRY_BASE_MS=50, PIXQ_RETRY_MAX_MS=100, **env)
        job = self.job(job_id, "pixq-test")
        job["src"] = {"name": "s3", "bucket": "flaky-bucket", "key": "in/%s.png" % job_id}
        self.push_jobs([job])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "pixq-test", 1)
        gets = self.s3.records(method="GET", bucket="flaky-bucket")
        self.assertEqual([r.status for r in gets], [status, 200])
        figures("s3_source_retry_after", job=job_id, gap=gets[1].time - gets[0].time)
        return gets[1].time - gets[0].time

    def test_retry_after_seconds(self):
        gap = self.gap("s3ra-secs", 503, "SlowDown", "3")
        self.assertGreaterEqual(gap, 2.95)
        self.assertLess(gap, scaled(5))

    def test_retry_after_capped(self):
        gap = self.gap("s3ra-cap", 429, "TooManyRequests", "3600", PIXQ_RETRY_AFTER_MAX_MS=1500)
        self.assertGreaterEqual(gap, 1.45)
        self.assertLess(gap, scaled(3))


class UploadRetryAfterTest(ThrottleCase):
    """A PUT answered 503 (or 429) with Retry-After is tried again that much later, at most
    PIXQ_RETRY_AFTER_MAX_MS, when the back-off would be shorter: it was tried again after the
    back-off alone (up to PIXQ_S3_THROTTLE_RETRY_BASE_MS, set to 50 ms here)."""

    def gap(self, job_id, retry_after, **env):
        self.s3.fail("flaky-bucket", 503, "SlowDown", count=1, key_prefix=job_id,
                     headers={"Retry-After": retry_after})
        self.start_worker(PIXQ_S3_THROTTLE_RETRY_BASE_MS=50, PIXQ_S3_RETRY_BASE_MS=50, **env)
        self.push_jobs([self.job(job_id, "flaky-bucket")])
        self.assert_complete(self.postbacks_for([job_id])[job_id], job_id, "flaky-bucket", 1)
        puts = self.puts("flaky-bucket")
        self.assertEqual([r.status for r in puts], [503, 200])
        figures("upload_retry_after", job=job_id, gap=puts[1].time - puts[0].time)
        return puts[1].time - puts[0].time

    def test_retry_after_seconds(self):
        gap = self.gap("upra-secs", "3")
        self.assertGreaterEqual(gap, 2.95)
        self.assertLess(gap, scaled(5))

    def test_retry_after_capped(self):
        gap = self.gap("upra-cap", "3600", PIXQ_RETRY_AFTER_MAX_MS=1500)
        self.assertGreaterEqual(gap, 1.45)
        self.assertLess(gap, scaled(3))

    def test_retry_after_of_a_parked_output(self):
        """The Retry-After of the answer to a parked output's PUT (its task, not the job, sends
        the second attempt here: the first, answered 500, parked it) holds its next attempt
        back too: the task goes back to delayed for that long, not for the back-off alone."""
        self.s3.fail("flaky-bucket", 500, "InternalError", count=1, key_prefix="upra-park")
        self.s3.fail("flaky-bucket", 503, "SlowDown", count=1, key_prefix="upra-park",
                     headers={"Retry-After": "2"})
        worker = self.start_worker(PIXQ_S3_THROTTLE_RETRY_BASE_MS=50, PIXQ_S3_RETRY_BASE_MS=50,
                                   PIXQ_S3_LOCAL_WAIT_MS=0)
        self.push_jobs([self.job("upra-park", "flaky-bucket")])
        pb = self.postbacks_for(["upra-park"])["upra-park"]
        self.assert_complete(pb, "upra-park", "flaky-bucket", 1)
        self.assertEqual(len(worker.log_events("job_parked")), 1)
        puts = self.puts("flaky-bucket")
        self.assertEqual([r.status for r in puts], [500, 503, 200])
        self.assertGreaterEqual(puts[2].time - puts[1].time, 1.95)
        self.assertLess(puts[2].time - puts[1].time, scaled(4))


class ParkedRetryKeepsStateTest(ThrottleCase):
    """An upload task that must wait again (requeue.lua with its blob and job hash) keeps them
    until its retry is due and PIXQ_BLOB_TTL_S longer, so that the retry finds them."""

    def test_blob_kept_past_a_retry_after(self):
        """S3 answers the output's PUT 503 SlowDown with Retry-After: 3 twice: the output parks
        (park.lua), its task runs 3 s later, meets the second 503 and waits 3 s again
        (requeue.lua, `throttled` 2): then the blob and the job hash live 3 s + 60 s
        (PIXQ_BLOB_TTL_S) more, where park.lua had left them 60 s past the first due time, 57 s
        past the second; the third PUT uploads the output."""
        self.s3.fail("flaky-bucket", 503, "SlowDown", count=2, key_prefix="keep-1",
                     headers={"Retry-After": "3"})
        self.start_worker(PIXQ_BLOB_TTL_S=60, PIXQ_S3_THROTTLE_RETRY_BASE_MS=50,
                          PIXQ_S3_RETRY_BASE_MS=50)
        self.push_jobs([self.job("keep-1", "flaky-bucket")])
        self.wait_until(lambda: self.redis.execute("HGET", self.key("stats"), "throttled") == "2",
                        20, "the output parked a second time")
        for key in (self.key("blob:keep-1:0"), self.key("job:keep-1")):
            ttl = int(self.redis.execute("PTTL", key))
            self.assertGreater(ttl, 61500, key)  # 63 s less the time since requeue.lua ran
        self.assert_complete(self.postbacks_for(["keep-1"])["keep-1"], "keep-1", "flaky-bucket",
                             1)
        self.assertEqual([r.status for r in self.puts("flaky-bucket")], [503, 503, 200])
        self.assert_nothing_parked()


class IdleConnectionTest(ThrottleCase):
    """S3 connections are reused, but not once idle for PIXQ_S3_IDLE_MS."""

    def test_not_reused_past_idle(self):
        self.start_workers(1, PIXQ_S3_IDLE_MS=1000)
        ports = []
        for i, pause in enumerate((0.0, 0.3, 1.6)):
            time.sleep(pause)
            self.push_jobs([self.job("idle-%d" % i, "pixq-test")])
            self.postbacks_for(["idle-%d" % i])
            ports.append(self.puts("pixq-test")[-1].port)
        figures("idle", ports=ports)
        self.assertEqual(ports[0], ports[1], "a connection idle 0.3 s was not reused")
        self.assertNotEqual(ports[1], ports[2], "a connection idle 1.6 s > 1 s was reused")

    def test_idle_counts_from_the_last_answer(self):
        """A PUT answered after 1.5 s leaves its connection idle from its answer, not from its
        start: the next PUT, right after, reuses it (it opened a new one)."""
        self.s3.stall("pixq-test", 1.5, methods=("PUT",), count=1)
        self.start_workers(1, PIXQ_S3_IDLE_MS=1000)
        self.push_jobs([self.job("idle-slow", "pixq-test", saves=2)])
        self.postbacks_for(["idle-slow"])
        ports = [r.port for r in self.puts("pixq-test")]
        figures("idle_slow", ports=ports)
        self.assertEqual(len(ports), 2)
        self.assertEqual(ports[0], ports[1], "a connection busy until 0 s ago was not reused")


class DroppedConnectionTest(ThrottleCase):
    """A kept-alive S3 connection closed by S3 just as the next request goes out on it (S3
    closes connections it held idle, and the close can cross the request): the request is sent
    again on a new connection at once, not counted as a failed attempt. libcurl does so itself
    when the close shows while it reads the answer, not while it is still sending the body: an
    output of 3 MB met "Send failure: Broken pipe" (or "Connection reset by peer") about one time
    in eight, and with one attempt (PIXQ_S3_MAX_ATTEMPTS=1) it was lost; with more, it was
    parked for a retry. It is a race, so 40 outputs: 39 requests on a kept-alive connection
    (with 30, 1 to 6 of the 29 were lost in each of 11 runs without the fix)."""

    OUTPUTS = 40

    def test_request_on_a_connection_closed_under_it_is_sent_again(self):
        # the body goes with the request (it does not ask first): the close comes while it is
        # still being sent
        self.check_sent_again(PIXQ_S3_EXPECT_CONTINUE_BYTES=0)

    def test_request_asking_first_on_a_connection_closed_under_it_is_sent_again(self):
        # the outputs (4 MB) ask first (Expect: 100-continue): the close comes before any answer
        self.check_sent_again()

    def check_sent_again(self, **env):
        self.s3.drop_reused("pixq-test")  # every PUT on a kept-alive connection
        self.limit("pixq-test", 1000, 1000)  # all at once, none parked
        worker = self.start_worker(PIXQ_S3_MAX_ATTEMPTS=1, **env)
        src = self.src.add("/src/big.jpg", harness.corpus("cups-2560x1600.jpg"))
        # 40 crops, not resizes: under ASan on a busy machine 40 resizes took the job 60 s
        functions = [{"name": "crop", "params": {"x": i, "y": 0, "width": 1280, "height": 800},
                      "save": {"image_identifier": "img%d" % i, "extension": ".bmp",
                               "s3_destination": {"bucket": "pixq-test",
                                                  "key": "drop-1/%d.bmp" % i}}}
                     for i in range(self.OUTPUTS)]
        self.push_jobs([{"application_id": "test", "job_id": "drop-1", "src": src,
                         "postback_url": self.postbacks.url("/pb"), "functions": functions}])
        results = self.postbacks_for(["drop-1"])["drop-1"].results
        puts = self.puts("pixq-test")
        lost = [e for e in worker.log_events("upload_failed")]
        figures("dropped", puts=len(puts), dropped=len([r for r in puts if r.fault]),
                lost=len(lost))
        self.assertNotIn("errors", results, results)
        self.assertEqual(sorted(im["image_identifier"] for im in results["images"]),
                         sorted("img%d" % i for i in range(self.OUTPUTS)))
        for i in range(self.OUTPUTS):
            self.assertGreater(len(self.s3.object("pixq-test", "drop-1/%d.bmp" % i)), 1000000)
        # every output but the first went out on the kept-alive connection first
        self.assertEqual([r.fault or r.status for r in puts],
                         [200] + ["dropped", 200] * (self.OUTPUTS - 1))
        asked = "PIXQ_S3_EXPECT_CONTINUE_BYTES" not in env
        self.assertEqual({r.expect for r in puts}, {asked})
        events = worker.log_events("s3_put")
        self.assertEqual([e["status"] for e in events], ["200"] * self.OUTPUTS)  # none failed
        self.assertEqual(lost, [])


class ClockSkewTest(ThrottleCase):
    """A worker host whose clock is 20 minutes behind S3's: S3 refuses the signature's time
    (403 RequestTimeTooSkewed, with its own time in Date); the worker signs at S3's time from
    then on, the refused PUT again at once. It failed every upload for good."""

    def check_signatures(self):
        refused = [r for r in self.s3.records() if r.code == "RequestTimeTooSkewed"]
        self.assertEqual(len(refused), 1, self.s3.records())  # once: the offset is kept
        self.assertEqual(self.s3.counts()["failed"], 1)
        for r in self.s3.records():
            if r is not refused[0]:
                self.assertTrue(r.verified, r)

    def test_signed_at_s3s_time_after_one_refusal(self):
        self.s3.clock = lambda: time.time() + 1200
        worker = self.start_worker()
        self.push_jobs([self.job("skew-1", "pixq-test", wait_for_s3=True)])
        pb = self.postbacks_for(["skew-1"])["skew-1"]
        self.assert_complete(pb, "skew-1", "pixq-test", 1)
        self.push_jobs([self.job("skew-2", "pixq-test", saves=2)])
        self.assert_complete(self.postbacks_for(["skew-2"])["skew-2"], "skew-2", "pixq-test", 2)
        skew = worker.log_events("clock_skew")
        self.assertEqual(len(skew), 1, skew)
        self.assertEqual((skew[0]["level"], skew[0]["job_id"], skew[0]["bucket"]),
                         ("warn", "skew-1", "pixq-test"))
        self.assertTrue(1195 <= int(skew[0]["offset_s"]) <= 1205, skew)
        for r in self.s3.records(method="PUT", status=200):
            signed = s3stub.parse_amz_date(r.amz_date)
            self.assertTrue(-2.0 <= self.s3.clock() - signed - (time.time() - r.time) < 3.0, r)
        self.assertEqual(worker.log_events("job_retry"), [])
        self.assert_one_postback_each(["skew-1", "skew-2"])


class RegionAfterClockSkewTest(ThrottleCase):
    """A PUT signed again at S3's time after RequestTimeTooSkewed is the same hop, not a
    wrong-region answer followed: the two hops RegionHopsTest follows still come after it."""

    check_signatures = ClockSkewTest.check_signatures

    def test_two_hops_after_a_skew_refusal(self):
        self.s3.clock = lambda: time.time() + 1200
        self.s3.set_region("hop-bucket", "ap-southeast-2")
        for region in ("eu-west-1", "ap-southeast-2"):
            self.s3.fail("hop-bucket", 301, "PermanentRedirect", count=1, any_region=True,
                         headers={"x-amz-bucket-region": region})
        worker = self.start_worker()
        self.push_jobs([self.job("skewhop-1", "hop-bucket")])
        pb = self.postbacks_for(["skewhop-1"])["skewhop-1"]
        self.assert_complete(pb, "skewhop-1", "hop-bucket", 1)
        self.assertEqual([(r.status, r.code, r.region) for r in self.puts("hop-bucket")],
                         [(403, "RequestTimeTooSkewed", "us-east-1"),
                          (301, "PermanentRedirect", "us-east-1"),
                          (301, "PermanentRedirect", "eu-west-1"), (200, "", "ap-southeast-2")])
        self.assertEqual(len(worker.log_events("clock_skew")), 1)
        self.assertEqual(worker.log_events("upload_retry"), [])


class S3SourceHopsCase(ThrottleCase):
    """An {"name": "s3"} source in ap-southeast-2 whose first GETs are answered 301 naming
    another region each."""

    def gets(self, job_id, regions):
        """The job's results and [(status, code, region signed for)] of its source's GETs."""
        self.s3.set_region("hop-bucket", "ap-southeast-2")
        self.assertEqual(self.s3.put_object("hop-bucket", "in/a.png", self.png), 200)
        for region in regions:
            self.s3.fail("hop-bucket", 301, "PermanentRedirect", count=1, any_region=True,
                         methods=("GET",), headers={"x-amz-bucket-region": region})
        self.start_workers(1)
        job = self.job(job_id, "pixq-test")
        job["src"] = {"name": "s3", "bucket": "hop-bucket", "key": "in/a.png"}
        self.push_jobs([job])
        results = self.postbacks_for([job_id])[job_id].results
        return results, [(r.status, r.code, r.region)
                         for r in self.s3.records(method="GET", bucket="hop-bucket")]


class S3SourceHopsTest(S3SourceHopsCase):
    """A source's GET follows wrong-region answers twice, as an upload's PUT does
    (RegionHopsTest), not more."""

    def test_third_wrong_region_answer_fails_the_source(self):
        # the third answer is the bucket's own (it lives in ap-southeast-2): not followed
        results, gets = self.gets("srchop-3", ["eu-west-1", "us-west-2"])
        self.assertEqual(len(results.get("errors", [])), 1, results)
        self.assertIn("Failed to download from s3 (", results["errors"][0])
        self.assertIn("PermanentRedirect", results["errors"][0])
        self.assertEqual([(status, region) for status, _, region in gets],
                         [(301, "us-east-1"), (301, "eu-west-1"), (301, "us-west-2")])


class S3SourceHopsAfterClockSkewTest(S3SourceHopsCase):
    """A source's GET signed again at S3's time after RequestTimeTooSkewed is the same hop, as
    an upload's PUT is (RegionAfterClockSkewTest): the two hops still come after it."""

    check_signatures = ClockSkewTest.check_signatures

    def test_two_wrong_region_answers_after_a_skew_refusal(self):
        self.s3.clock = lambda: time.time() + 1200
        results, gets = self.gets("srchop-2", ["eu-west-1", "ap-southeast-2"])
        self.assertNotIn("errors", results, results)
        self.assertEqual(gets, [(403, "RequestTimeTooSkewed", "us-east-1"),
                                (301, "PermanentRedirect", "us-east-1"),
                                (301, "PermanentRedirect", "eu-west-1"),
                                (200, "", "ap-southeast-2")])


class LimitSetReplanTest(ThrottleCase):
    """`pixq limit set` while outputs are parked holding slots planned at the old rate: they
    follow the new rate, not the old one (rl_set.lua records the rate they were planned at,
    rl_acquire.lua re-plans at the next call). Before, raised from 1/s to 20/s, the parked
    outputs still went 1 s apart; lowered from 10/s to 2/s, they still went 10 a second."""

    def park(self, prefix, jobs, rate):
        """One worker parking every throttled output, the bucket at `rate`, burst 0, and
        `jobs` one-output jobs; returns their ids once the first PUT came."""
        self.set_limit(rate)
        self.worker = self.start_workers(1, PIXQ_S3_LOCAL_WAIT_MS=0)[0]
        ids = ["%s-%02d" % (prefix, i) for i in range(jobs)]
        self.push_jobs([self.job(i, "bkt-a") for i in ids])
        self.wait_until(lambda: self.puts("bkt-a", 200), 20, "the first PUT")
        return ids

    def set_limit(self, rate):
        """pixq limit set bkt-a RATE 0; returns when it was done."""
        r = self.run_pixq("limit", "set", "bkt-a", str(rate), "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        return time.time()

    def test_raised_limit_brings_parked_outputs_forward(self):
        ids = self.park("raise", 12, 1)
        time.sleep(1.2)  # the others parked, 1 s apart: about 10 s ahead
        at = self.set_limit(20)
        pbs = self.postbacks_for(ids, timeout=60)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        figures("limit raised", outputs=len(ok), after_set_s=ok[-1] - at,
                replans=self.limiter("bkt-a").get("replans"))
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        self.assertLessEqual(ok[-1] - at, 4.0)  # 10 outputs at 20/s; 9 s at the old 1/s
        # brought forward one interval of the new rate apart (replan.lua)
        self.assertEqual({e["interval_ms"] for e in self.worker.log_events("uploads_replanned")},
                         {"50.0"})
        self.assert_no_leftovers(ids)

    def test_lowered_limit_holds_parked_outputs_to_it(self):
        ids = self.park("lower", 16, 10)  # parked 100 ms apart
        at = self.set_limit(2)
        pbs = self.postbacks_for(ids, timeout=60)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        after = [t for t in ok if t >= at + 0.3]  # a PUT under way at the set aside
        figures("limit lowered", outputs=len(ok), after_set=len(after),
                window_after=s3stub.window_max(after), span_s=ok[-1] - at)
        for job_id in ids:
            self.assert_complete(pbs[job_id], job_id, "bkt-a", 1)
        self.assertLessEqual(s3stub.window_max(after), 3)  # 2/s, burst 0: at most 3 in 1 s
        self.assert_no_leftovers(ids)

    def test_lowered_limit_voids_a_slot_waited_for_in_the_process(self):
        """An output waiting in its worker for a slot (PIXQ_S3_LOCAL_WAIT_MS) when the limit
        is lowered takes a new slot at the new rate after its wait: it went at the old slot,
        0.5 s after the first PUT at 2/s where 0.5/s allows one in 2 s."""
        self.set_limit(2)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=3000, PIXQ_LOG_LEVEL="debug")
        self.push_jobs([self.job("waited", "bkt-a", saves=4)])
        self.wait_until(lambda: self.puts("bkt-a", 200), 20, "the first PUT")
        time.sleep(0.1)  # the second output waits for its slot, 0.5 s after the first
        self.set_limit(0.5)
        pb = self.postbacks_for(["waited"], timeout=60)["waited"]
        self.assert_complete(pb, "waited", "bkt-a", 4)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        gaps = [b - a for a, b in zip(ok, ok[1:])]
        figures("limit lowered during a local wait", gaps_s=",".join("%.2f" % g for g in gaps),
                voided=len(worker.log_events("slot_voided")))
        self.assertEqual(len(ok), 4)
        # 0.5/s, burst 0: 2 s apart (2.5, 2.0, 2.0 measured); 0.5 s before. At least 1 s, not
        # 2: a PUT sent late (a loaded machine) would make the next gap short, not the rate high
        self.assertGreaterEqual(min(gaps), 1.0, gaps)
        self.assertTrue(worker.log_events("slot_voided"))
        self.assert_no_leftovers(["waited"])


class LocalWaitCallsTest(ThrottleCase):
    """README: an upload whose slot is within PIXQ_S3_LOCAL_WAIT_MS waits for it in the worker,
    then checks that no decrease or re-plan voided it: one more rl_acquire.lua call (for no
    token) per upload that waited, none for one that went at once. Bucket A at 4 PUT/s, burst
    0, a local wait of 2 s: of a job's 3 outputs the first goes at once, the others wait."""

    def test_one_more_call_per_upload_that_waited(self):
        self.limit("bkt-a", 4, 0)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=2000, PIXQ_LOG_LEVEL="debug")
        self.push_jobs([self.job("lw-1", "bkt-a", saves=3)])
        self.assert_complete(self.postbacks_for(["lw-1"])["lw-1"], "lw-1", "bkt-a", 3)
        # (the first call of a fresh worker is answered NOSCRIPT, ok=0, and sent again)
        calls = [e for e in worker.log_events("redis") if e.get("script") == "rl_acquire"
                 and e.get("job_id") == "lw-1" and e["ok"] == "1"]
        self.assertEqual(len(calls), 3 + 2, calls)  # a token each, and a check after each wait
        self.assertEqual(worker.log_events("job_parked"), [])
        self.assertEqual(worker.log_events("slot_voided"), [])
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        self.assertGreaterEqual(min(b - a for a, b in zip(ok, ok[1:])), 0.2, ok)  # 4/s


class SlotRetakesTest(ThrottleCase):
    """An output waiting in its worker for a slot whose epoch changes during every wait (here
    the test bumps the bucket's `decreases` every 100 ms, as SlowDowns elsewhere in the fleet
    would) takes a new slot after each wait, SLOT_RETAKES (3) in all in worker/upload.c, and
    goes at the last: two slot_voided, neither one (the first voided slot sent) nor a loop.
    Bucket A at 1 PUT/s, burst 0, PIXQ_S3_LOCAL_WAIT_MS 5 s: each wait about 1 s."""

    def test_slot_voided_at_every_wait_is_taken_three_times(self):
        self.limit("bkt-a", 1, 0)
        worker = self.start_worker(PIXQ_S3_LOCAL_WAIT_MS=5000, PIXQ_LOG_LEVEL="debug")
        stop = threading.Event()

        def bump():
            r = harness.Redis(harness.LOOPBACK, self.redis_server.port)
            try:
                while not stop.wait(0.1):
                    r.execute("HINCRBY", self.rl_key("bkt-a"), "decreases", 1)
            finally:
                r.close()

        # from before the job: its first output goes at once (no wait, nothing to void)
        bumper = threading.Thread(target=bump, daemon=True)
        bumper.start()
        try:
            self.push_jobs([self.job("retake-1", "bkt-a", saves=2)])
            pb = self.postbacks_for(["retake-1"])["retake-1"]
        finally:
            stop.set()
            bumper.join()
        self.assert_complete(pb, "retake-1", "bkt-a", 2)
        ok = sorted(r.time for r in self.puts("bkt-a", 200))
        voided = worker.log_events("slot_voided")
        figures("slot retakes", gap_s=ok[1] - ok[0], voided=len(voided))
        self.assertEqual(len(voided), 2, voided)
        self.assertEqual(worker.log_events("upload_parked"), [])
        # the third slot taken: 3 s after the first PUT's (1 s apart, the first taken with it)
        self.assertGreaterEqual(ok[1] - ok[0], 2.5)


class LimitCliTest(ThrottleCase):
    """pixq limit show/set/reset, bad arguments, and overrides taking effect at once."""

    def show(self, **env):
        r = self.run_pixq("limit", "show", "--json", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return {o["bucket"]: o for o in json.loads(r.stdout)}

    def test_set_show_reset(self):
        self.assertEqual(self.show(), {})
        r = self.run_pixq("limit", "set", "bkt-a", "2.5", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.limiter("bkt-a"), {"rate": "2.5", "burst": "3"})
        self.assertEqual(self.redis.ttl(self.rl_key("bkt-a")), -1)  # overrides do not expire
        state = self.show()["bkt-a"]
        self.assertEqual((state["rate"], state["burst"], state["effective_rate"],
                          state["backlog_ms"], state["throttle_signals"], state["override"]),
                         (2.5, 3, 2.5, 0, 0, True))
        text = self.run_pixq("limit", "show")
        self.assertEqual(text.returncode, 0)
        self.assertRegex(text.stdout, r"(?m)^bkt-a\s+2\.500\s+3\s+2\.500\s+0\s+0\b")
        # a rate in another notation is stored and echoed as a plain decimal
        r = self.run_pixq("limit", "set", "bkt-h", "0x10", "1")
        self.assertEqual((r.returncode, r.stdout),
                         (0, "bkt-h: 16 PUT/s, burst 1 (fleet-wide, now)\n"))
        self.assertEqual(self.limiter("bkt-h"), {"rate": "16", "burst": "1"})
        r = self.run_pixq("limit", "set", "bkt-h", "2.5e-1", "1")
        self.assertEqual((r.returncode, self.limiter("bkt-h")["rate"]), (0, "0.25"))
        # every digit of a rate is kept; show gives it to the thousandth, as a JSON number
        # with three decimals (1.050, not 1.05 or 1.0500000000000000444)
        for rate, burst, shown in (("1234.5", "1000000", "1234.500"), ("1.05", "0", "1.050"),
                                   ("0.001", "0", "0.001"), ("1000000", "0", "1000000.000")):
            r = self.run_pixq("limit", "set", "bkt-h", rate, burst)
            self.assertEqual((r.returncode, r.stdout),
                             (0, "bkt-h: %s PUT/s, burst %s (fleet-wide, now)\n" % (rate, burst)))
            self.assertEqual(self.limiter("bkt-h")["rate"], rate)
            r = self.run_pixq("limit", "show", "--json")
            self.assertIn('"bucket":"bkt-h","rate":%s,"burst":%s,' % (shown, burst),
                          r.stdout.replace(" ", ""))
        # a key of the limiters' prefix that is no bucket's (no braces) is not one to show
        self.redis.execute("HSET", "pixq:rl:stray", "rate", "1")
        self.assertEqual(sorted(self.show()), ["bkt-a", "bkt-h"])
        # a bucket at the default rate (PIXQ_S3_RATE, 10/s here) with slots taken ahead: an
        # override records the rate they were planned at, the default, for their re-plan
        self.redis.execute("HSET", self.rl_key("bkt-p"), "tat",
                           int(time.time() * 1e6) + 60_000_000)
        r = self.run_pixq("limit", "set", "bkt-p", "5", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.limiter("bkt-p")["plan"], "10")
        # a reserved backlog: slots taken 2 s ahead
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat",
                           int(time.time() * 1e6) + 2_000_000)
        self.assertTrue(1500 <= self.show()["bkt-a"]["backlog_ms"] <= 2000)
        r = self.run_pixq("limit", "reset", "bkt-a")
        self.assertEqual((r.returncode, r.stdout), (0, "bkt-a: back to the default rate\n"),
                         r.stderr)
        # a bucket without an override (misspelt?) is said to be one, not "back to" anything
        r = self.run_pixq("limit", "reset", "bkt-typo")
        self.assertEqual((r.returncode, r.stdout),
                         (0, "bkt-typo: had no limit of its own (at the default rate already)\n"),
                         r.stderr)
        # a burst alone set with HSET (as the README allows) is an override too
        self.redis.execute("HSET", self.rl_key("bkt-b"), "burst", "4")
        r = self.run_pixq("limit", "reset", "bkt-b")
        self.assertEqual((r.returncode, r.stdout), (0, "bkt-b: back to the default rate\n"),
                         r.stderr)
        self.assertNotIn("burst", self.limiter("bkt-b"))
        state = self.show()["bkt-a"]
        self.assertEqual((state["rate"], state["burst"], state["override"]), (10.0, 20, False))
        self.assertNotIn("rate", self.limiter("bkt-a"))
        # it expires again after PIXQ_RL_IDLE_TTL_S (the default, a day) as other buckets do,
        # without waiting for an upload to set it: it stayed for good
        self.assertTrue(86000 <= self.redis.ttl(self.rl_key("bkt-a")) <= 86400,
                        self.redis.ttl(self.rl_key("bkt-a")))

    def test_reset_expires_after_the_idle_ttl_as_set(self):
        """`pixq limit reset` gives the limiter the expiry of PIXQ_RL_IDLE_TTL_S as the CLI's
        configuration says (5 minutes here), not the default day."""
        self.assertEqual(self.run_pixq("limit", "set", "bkt-a", "3", "4").returncode, 0)
        self.redis.execute("HSET", self.rl_key("bkt-a"), "tat", "1")  # an upload's, long ago
        r = self.run_pixq("limit", "reset", "bkt-a", env={"PIXQ_RL_IDLE_TTL_S": "300"})
        self.assertEqual((r.returncode, r.stdout), (0, "bkt-a: back to the default rate\n"),
                         r.stderr)
        ttl = self.redis.ttl(self.rl_key("bkt-a"))
        self.assertTrue(290 <= ttl <= 300, ttl)

    def test_set_and_reset_are_one_script(self):
        """Each writes the hash in one script (rl_set.lua): an upload or another limit command
        landing between the writes cannot leave an override that expires, or none that does
        not, or an override without the plan its re-plan needs."""
        monitor = harness.Redis("127.0.0.1", self.redis_server.port, timeout=5).connect()
        try:
            self.assertEqual(monitor.execute("MONITOR"), "OK")
            for args in (("set", "bkt-a", "3", "4"), ("reset", "bkt-a")):
                r = self.run_pixq("limit", *args)
                self.assertEqual(r.returncode, 0, r.stderr)
            seen = []
            while '"PEXPIRE"' not in [c for _, c in seen]:
                source, rest = monitor._read_reply().split("] ", 1)
                seen.append(("lua" in source, rest.split(" ")[0]))
        finally:
            monitor.close()
        writes = [(lua, c) for lua, c in seen if c in ('"HSET"', '"PERSIST"', '"HDEL"',
                                                        '"PEXPIRE"')]
        self.assertEqual(writes, [(True, '"HSET"'), (True, '"PERSIST"'), (True, '"HDEL"'),
                                  (True, '"PEXPIRE"')])

    def test_refusal_names_redis_s_reason(self):
        """A write Redis refuses (out of memory here): the message is Redis's refusal (it was
        EXEC's 'EXECABORT Transaction discarded because of previous errors' once)."""
        self.redis.execute("CONFIG", "SET", "maxmemory", "1")
        try:
            r = self.run_pixq("limit", "set", "bkt-a", "5", "5")
        finally:
            self.redis.execute("CONFIG", "SET", "maxmemory", "0")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("OOM command not allowed", r.stderr)
        self.assertNotIn("EXECABORT", r.stderr)

    def test_show_after_throttling_and_region(self):
        self.s3.set_region("eu-bucket", "eu-west-1")
        self.s3.fail("bkt-b", 503, "SlowDown", count=1)
        self.start_workers(1, PIXQ_S3_RATE="8/s,burst=5")
        self.push_jobs([self.job("show-1", "eu-bucket"), self.job("show-2", "bkt-b")])
        self.postbacks_for(["show-1", "show-2"])
        shown = self.show(PIXQ_S3_RATE="8/s,burst=5")  # the CLI reads the fleet's defaults too
        self.assertEqual(shown["eu-bucket"]["region"], "eu-west-1")
        self.assertEqual((shown["eu-bucket"]["rate"], shown["eu-bucket"]["burst"]), (8.0, 5))
        self.assertEqual(shown["bkt-b"]["throttle_signals"], 1)
        self.assertEqual(shown["bkt-b"]["decreases"], 1)
        self.assertTrue(5.6 <= shown["bkt-b"]["effective_rate"] < 8.0, shown["bkt-b"])

    def test_bad_arguments_exit_2(self):
        bad = [[], ["frob"], ["show", "--xml"], ["show", "--json", "extra"],
               ["set", "bkt-a", "5"], ["set", "bkt-a", "fast", "2"], ["set", "bkt-a", "0", "2"],
               ["set", "bkt-a", "-1", "2"], ["set", "bkt-a", "5", "-1"],
               ["set", "bkt-a", "5", "2.5"], ["set", "bkt-a", "5", ""], ["set", "bkt-a", "", "2"],
               ["set", "bkt-a", "nan", "2"], ["set", "bkt-a", "inf", "2"],
               ["set", "Bad_Bucket_", "5", "2"], ["set", "bkt-a", "5", "2", "x"], ["reset"],
               ["reset", "Bad_Bucket_"], ["reset", "bkt-a", "b"], ["set", "bkt-a", "0.0009", "2"],
               ["set", "bkt-a", "1000000.5", "2"], ["set", "bkt-a", "5", "1000001"]]
        for args in (["limit"] + b for b in bad):
            with self.subTest(args=args):
                r = self.run_pixq(*args)
                self.assertEqual(r.returncode, 2, "pixq %s: %r" % (" ".join(args), r.stdout))
                self.assertIn("usage", r.stderr.lower())
        for args, why in (([], "show, set or reset expected"),
                          (["frob"], "unknown subcommand 'frob'")):
            r = self.run_pixq("limit", *args)
            self.assertEqual((r.returncode, r.stderr),
                             (2, "pixq: limit: %s (usage: pixq limit --help)\n" % why))
        self.assertEqual(self.redis.keys("pixq:rl:*"), [])  # nothing was written

    def spacing(self, bucket, job_ids):
        """The median gap between the PUTs of these jobs, seconds."""
        times = sorted(r.time for r in self.puts(bucket)
                       if r.key.split("/")[0] in job_ids)
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        return gaps[len(gaps) // 2]

    def run_batch(self, name, n=6):
        ids = ["%s-%d" % (name, i) for i in range(n)]
        self.push_jobs([self.job(i, "bkt-a") for i in ids])
        self.postbacks_for(ids)
        return self.spacing("bkt-a", ids)

    def test_overrides_take_effect_at_once(self):
        """The same running workers: 2/s, then redis-cli HSET 20/s, then pixq limit set 4/s."""
        self.limit("bkt-a", 2, 0)
        self.start_workers(2)
        slow = self.run_batch("one")
        cli = subprocess.run(["redis-cli", "-p", str(self.redis_server.port), "HSET",
                              self.rl_key("bkt-a"), "rate", "20", "burst", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        fast = self.run_batch("two")
        r = self.run_pixq("limit", "set", "bkt-a", "4", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        middle = self.run_batch("three")
        figures("override", spacing_2=slow, spacing_20=fast, spacing_4=middle)
        self.assertTrue(0.45 <= slow <= 0.6, slow)
        self.assertTrue(fast <= 0.1, fast)
        self.assertTrue(0.22 <= middle <= 0.3, middle)


# The classes whose rates and slots are measured at the stub: meson's `throttle` runs them in the
# plain build only (`--part timed`); `throttle-answers-1` to `-3` run every other class in both
# builds (`--part rest/3:1` to `rest/3:3`, a share each: one test of 350 s held up the run).
TIMED = ("RateTest", "AdaptiveTest", "ParkingTest", "ParkedSlotTest", "SlotAfterLongJobTest",
         "SlowDownNoRefillTest", "OutageRecoveryTest")


def part_classes(part):
    """The test classes of one part: "timed", or "rest" (every ThrottleCase not in TIMED) or a
    share of it ("rest/2:1", harness.share_of)."""
    every = [name for name, c in sorted(globals().items())
             if isinstance(c, type) and issubclass(c, ThrottleCase) and c is not ThrottleCase]
    assert set(TIMED) <= set(every), TIMED
    if part == "timed":
        return list(TIMED)
    assert part.partition("/")[0] == "rest", part
    return harness.share_of([n for n in every if n not in TIMED], part)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[-2] == "--part":
        sys.argv[-2:] = part_classes(sys.argv[-1])
    harness.main()
