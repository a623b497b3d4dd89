#!/usr/bin/python3
"""Never lose a job: crash recovery, chaos, Redis restarts, graceful stop, poison pills, delayed
jobs, network failures, and retries, with the real pixq-worker against real servers.

The workers run with short leases (PIXQ_LEASE_MS=3000, PIXQ_HEARTBEAT_MS=1000,
PIXQ_REAP_INTERVAL_MS=500) so that recovery takes seconds. Jobs are tiny (a 64x64 PNG resized to
32 px, one save) unless a test needs them slow, which the source server does on request (stall,
delay, scripted errors).

A job is "settled once" when pixq:{Q}:result:<id> holds exactly one result, and "posted once" when
exactly one postback for it reached the receiver. The chaos test prints a line to stderr with its
duration, kills, duplicate postbacks and the stats counters (reruns, recovered, lease_lost...).

    /usr/bin/python3 tests/integration/test_reliability.py --worker build-rel/worker/pixq-worker \\
        --pixq build-rel/producer/pixq --data tests/data [ChaosTest] [-k kill]
"""

import collections
import datetime
import email.utils
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, PixqTestCase, log_seconds, scaled  # noqa: E402

LEASE_MS, HEARTBEAT_MS, REAP_MS = 3000, 1000, 500
SHORT_LEASES = {"PIXQ_LEASE_MS": LEASE_MS, "PIXQ_HEARTBEAT_MS": HEARTBEAT_MS,
                "PIXQ_REAP_INTERVAL_MS": REAP_MS}
TINY = "/tiny.png"


def tiny_png():
    return (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()


def script_sha1(name):
    """The SHA-1 EVALSHA names the script by, as the worker sends it."""
    return hashlib.sha1(harness.lua_script(name).encode()).hexdigest()


class ReliabilityCase(PixqTestCase):
    """Workers started by the tests themselves, with short leases."""

    start_worker_in_setup = False
    worker_env_extra = dict(SHORT_LEASES)

    def setUp(self):
        super().setUp()
        self.src.add(TINY, tiny_png())

    # -- jobs ----------------------------------------------------------------------------------

    def load_script(self, name):
        """Loads common/lua/<name>.lua, as the worker runs it (its `-- include:` lines
        replaced), into the test's Redis: a cut_on() then cuts the script's answer, not the
        NOSCRIPT one that would make the worker load it."""
        self.redis.execute("SCRIPT", "LOAD", harness.lua_script(name))

    def reaped_while_adopting(self, proxy, wid1):
        """Worker w1 (behind `proxy`) reserves a job without a job_id and is cut off while it
        asks adopt.lua (its heartbeats too): a second worker reaps it, runs the job and posts
        it back (to /pb-noid)."""
        proxy.refuse = b"noid-marker"
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        self.wait_until(lambda: proxy.refusals > 0, 20, "adopt.lua to be refused")
        proxy.refuse = wid1.encode()  # w1 cut off: heartbeats too, its lease runs out
        self.start_worker()  # reaps w1, takes the job, runs it
        self.wait_for_postback(timeout=30, path="/pb-noid")

    def fill_redis(self):
        """Past maxmemory (noeviction) until empty_redis() or the test's end: a write that adds
        data refused, unless made by a script that wrote already."""
        self.redis.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.redis.execute("CONFIG", "SET", "maxmemory", "1")
        self.addCleanup(self.empty_redis)

    def empty_redis(self):
        self.redis.execute("CONFIG", "SET", "maxmemory", "0")

    def tiny_job(self, job_id, path=TINY, postback_path="/pb", **extra):
        job = self.make_job(self.src.url(path), "out/%s.png" % job_id, params={"width": 32},
                            job_id=job_id, postback_path=postback_path)
        job.update(extra)
        return job

    def push_jobs(self, jobs):
        """LPUSH many jobs at once; returns their payloads (the exact bytes on the queue)."""
        payloads = [json.dumps(j) for j in jobs]
        for i in range(0, len(payloads), 100):
            self.redis.lpush(self.key("jobs"), *payloads[i:i + 100])
        return payloads

    def results(self, job_id):
        return self.redis.lrange(self.key("result:" + job_id))

    def stats(self):
        return {k: int(v) for k, v in self.redis.hgetall(self.key("stats")).items()}

    def postbacks_of(self, job_id):
        return [pb for pb in self.postbacks.postbacks if pb.job_id == job_id]

    def assert_success(self, job_id):
        """One result, one postback, both the same success for job_id."""
        results = self.results(job_id)
        self.assertEqual(len(results), 1, "results of %s: %r" % (job_id, results))
        result = json.loads(results[0])["results"]
        self.assertNotIn("errors", result, result)
        self.assertEqual(result["job_id"], job_id)
        self.assertEqual(result["images"][0]["meta"], {"width": 32, "height": 32})
        pbs = self.postbacks_of(job_id)
        self.assertEqual(len(pbs), 1, "postbacks of %s: %r" % (job_id, pbs))
        self.assertEqual(pbs[0].results, result)

    # -- workers -------------------------------------------------------------------------------

    def worker_id(self, prog, timeout=20):
        """The worker id a worker logged at start (worker_start event)."""
        ev = self.wait_until(lambda: prog.log_events("worker_start"), timeout,
                             "%s to start" % prog.name)
        return ev[0]["worker"]

    def start_worker_through_relay(self, **env):
        """A worker (worker_env(**env)) reaching Redis through a TcpProxy: (proxy, worker)."""
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        self.addCleanup(self._stop_programs)  # first: workers end while the proxy still relays
        return proxy, self.start_worker(PIXQ_REDIS_URL=proxy.redis_url(), **env)

    def now_ms(self):
        """Redis's clock, ms (the one the scripts use)."""
        sec, usec = self.redis.execute("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    def live_workers(self):
        return self.redis.zrange(self.key("workers"))

    def active_of(self, wid):
        return self.redis.lrange(self.key("active:" + wid))

    def wait_exit(self, prog, timeout):
        """Wait for a worker to exit on its own; returns (status, seconds waited)."""
        t0 = time.monotonic()
        prog.proc.wait(scaled(timeout))
        waited = time.monotonic() - t0
        if prog in self.programs:
            self.programs.remove(prog)
        prog.terminate()  # closes its log
        return prog.proc.returncode, waited


class KillTest(ReliabilityCase):
    """A worker SIGKILLed in the middle of a job: another one completes the job within lease +
    reap interval."""

    def test_killed_workers_job_is_completed_by_another(self):
        a = self.start_worker()
        wid_a = self.worker_id(a)
        self.src.stall("/slow.png")
        self.src.add("/slow.png", tiny_png())
        job = self.tiny_job("kill-1", path="/slow.png")
        payload = self.push_jobs([job])[0]
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "worker A to fetch")
        self.assertEqual(self.active_of(wid_a), [payload])
        b = self.start_worker()
        wid_b = self.worker_id(b)
        self.wait_until(lambda: wid_b in self.live_workers(), 20, "worker B to register")

        t_kill = time.monotonic()
        self.kill_worker(a, signal.SIGKILL)
        self.src.release()  # from now on the source answers at once
        pb = self.wait_for_postback(timeout=20, job_id="kill-1")
        elapsed = pb.time - t_kill
        bound = (LEASE_MS + REAP_MS) / 1000.0
        sys.stderr.write("\nkill test: killed to postback %.2fs (lease %.1fs + reap %.1fs)\n"
                         % (elapsed, LEASE_MS / 1000.0, REAP_MS / 1000.0))
        self.assertLess(elapsed, scaled(bound + 0.5),
                        "recovery took %.2fs, lease + reap interval is %.1fs" % (elapsed, bound))

        self.wait_until(lambda: self.results("kill-1"), 10, "the result")
        self.assert_success("kill-1")
        self.assertEqual(self.src.requests("/slow.png"), 2)
        self.assertNotIn(wid_a, self.live_workers())
        self.assert_queue_drained()
        stats = self.stats()
        self.assertEqual(stats.get("recovered"), 1, stats)
        self.assertEqual(stats.get("reruns"), 1, stats)
        self.assertEqual(stats.get("succeeded"), 1, stats)
        # logged once reap.lua has answered, while the job it gave back may already run
        reaped = self.wait_until(lambda: b.log_events("worker_reaped"), 10, "worker_reaped")
        self.assertEqual([(e["worker"], e["jobs_returned"]) for e in reaped], [(wid_a, "1")])


class ChaosTest(ReliabilityCase):
    """300 jobs, 3 workers, one of them SIGKILLed and replaced every 1 to 2 s: every job ends with
    exactly one result and at least one postback; duplicates are counted and reported."""

    JOBS = 300
    WORKERS = 3
    DEADLINE_S = 110
    worker_env_extra = dict(SHORT_LEASES, PIXQ_LOG_LEVEL="info")

    def test_chaos(self):
        rng = random.Random()
        seed = rng.randrange(1 << 30)
        rng.seed(seed)
        ids = ["chaos-%03d" % i for i in range(self.JOBS)]
        # sources that take 50 to 200 ms: the run lasts long enough for a dozen kills or more,
        # which land at any step of a job (fetch, processing, upload, postback, settle)
        paths = []
        for n, delay in enumerate((0.05, 0.1, 0.15, 0.2)):
            paths.append("/chaos-%d.png" % n)
            self.src.add(paths[-1], tiny_png())
            self.src.delay[paths[-1]] = delay
        t0 = time.monotonic()
        self.push_jobs([self.tiny_job(i, path=paths[n % len(paths)]) for n, i in enumerate(ids)])
        fleet = [self.start_worker() for _ in range(self.WORKERS)]
        kills = 0
        next_kill = time.monotonic() + rng.uniform(1, 2)
        deadline = t0 + scaled(self.DEADLINE_S)
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            pending = {i for i in pending if not self.redis.exists(self.key("result:" + i))}
            for prog in fleet:
                prog.check_alive()
            if pending and time.monotonic() >= next_kill:
                victim = rng.randrange(len(fleet))
                self.kill_worker(fleet[victim], signal.SIGKILL)
                fleet[victim] = self.start_worker()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(1, 2)
        elapsed = time.monotonic() - t0
        self.assertFalse(pending, "after %.0fs (seed %d, %d kills), %d job(s) have no result: %s"
                         % (elapsed, seed, kills, len(pending), sorted(pending)[:20]))
        self.assert_queue_drained(timeout=(LEASE_MS + REAP_MS) / 1000.0 + 5)

        per_job = collections.Counter(pb.job_id for pb in self.postbacks.postbacks)
        missing = [i for i in ids if per_job[i] == 0]
        duplicates = sum(n - 1 for n in per_job.values() if n > 1)
        stats = self.stats()
        failed = []
        for i in ids:
            results = self.results(i)
            self.assertEqual(len(results), 1, "%s has %d results" % (i, len(results)))
            body = json.loads(results[0])["results"]
            self.assertEqual(body["job_id"], i)
            if "errors" in body:
                failed.append((i, body["errors"]))
        sys.stderr.write(
            "\nchaos: %d jobs, %d workers, %d kills, %.1fs (seed %d); postbacks %d, duplicate "
            "postbacks %d, missing %d; failed jobs %d; stats %s\n"
            % (self.JOBS, self.WORKERS, kills, elapsed, seed, sum(per_job.values()),
               duplicates, len(missing), len(failed), json.dumps(stats, sort_keys=True)))
        self.assertEqual(missing, [], "jobs without a postback (seed %d)" % seed)
        self.assertEqual(set(per_job), set(ids), "postbacks for unknown jobs")
        # a job only fails here if it crashed its workers max_recoveries times (a poison pill)
        self.assertEqual(len(failed), stats.get("poisoned", 0), failed)
        for _, errors in failed:
            self.assertIn("worker died while running it", errors[0])
        self.assertEqual(stats.get("succeeded", 0) + stats.get("failed", 0), self.JOBS, stats)
        self.assertGreaterEqual(kills, 1)


class RedisRestartTest(ReliabilityCase):
    """Redis with an AOF restarted in the middle of a run: no job is lost, workers resume."""

    redis_appendonly = True

    def test_restart_in_the_middle_of_a_run(self):
        self.run_with_restart(signal.SIGTERM)

    def test_crash_and_restart_in_the_middle_of_a_run(self):
        # SIGKILL: commands in flight lose their answers; what Redis wrote to the AOF before it
        # died (the process, not the machine) comes back
        self.run_with_restart(signal.SIGKILL)

    def test_back_off_as_configured(self):
        """PIXQ_REDIS_RETRY_MIN_MS and _MAX_MS bound an idle worker's waits while Redis is
        down: 400 ms doubling to 800 ms, each drawn between half its step and the step (they
        were constants, 100 ms to 5 s)."""
        w = self.start_worker(PIXQ_REDIS_RETRY_MIN_MS=400, PIXQ_REDIS_RETRY_MAX_MS=800)
        self.worker_id(w)
        waits = self.reserve_waits_through_outage(w, 4, "after-backoff")
        self.assertGreaterEqual(len(waits), 3, waits)  # 4 s down: at most 10 tries of >= 400 ms
        self.assertLessEqual(len(waits), 12, waits)
        self.assertTrue(200 <= waits[0] <= 400, waits)
        self.assertTrue(all(400 <= t <= 800 for t in waits[1:]), waits)
        # a reservation that reached Redis ends the failures in a row: the next outage starts
        # again from PIXQ_REDIS_RETRY_MIN_MS, not from the 800 ms the last one reached
        again = self.reserve_waits_through_outage(w, 1.5, "after-second-outage")[len(waits):]
        self.assertGreaterEqual(len(again), 2, again)
        self.assertTrue(200 <= again[0] <= 400, (waits, again))
        self.assertTrue(all(400 <= t <= 800 for t in again[1:]), again)

    def test_back_off_doubles_at_each_failure(self):
        """The wait doubles at each failure in a row, step by step up to PIXQ_REDIS_RETRY_MAX_MS
        (100, 200, 400, 800, then 1600 ms here), each wait between half its step and the step:
        the third wait is at most 400 ms (a wait that tripled reached 450 to 900 ms)."""
        w = self.start_worker(PIXQ_REDIS_RETRY_MIN_MS=100, PIXQ_REDIS_RETRY_MAX_MS=1600)
        self.worker_id(w)
        waits = self.reserve_waits_through_outage(w, 4, "after-doubling")
        self.assertGreaterEqual(len(waits), 5, waits)  # 4 s down: 100+200+400+800 ms < 4 s
        for step, wait in zip((100, 200, 400, 800, 1600), waits):
            self.assertTrue(step // 2 <= wait <= step, (step, waits))
        self.assertTrue(all(800 <= t <= 1600 for t in waits[5:]), waits)

    def reserve_waits_through_outage(self, w, down_seconds, job_id):
        """Redis down `down_seconds`, then a tiny job done: the waits (ms) worker `w` logged
        after each failed reservation so far, this outage's last."""
        self.redis.close()
        self.redis_server.restart(down_seconds=down_seconds)
        self.tiny_job_done(job_id)
        return [int(e["retry_ms"]) for e in w.log_events("redis_error")
                if e.get("step") == "reserve"]

    def tiny_job_done(self, job_id):
        """A tiny job pushed now runs to its result."""
        self.push_jobs([self.tiny_job(job_id)])
        self.wait_until(lambda: self.results(job_id), 30, "the result of %s" % job_id)
        self.assert_success(job_id)

    def run_with_restart(self, sig):
        self.src.delay[TINY] = 0.05  # ~50 jobs last a few seconds
        ids = ["restart-%02d" % i for i in range(50)]
        self.push_jobs([self.tiny_job(i) for i in ids])
        fleet = [self.start_worker() for _ in range(2)]
        self.wait_until(lambda: sum(bool(self.redis.exists(self.key("result:" + i)))
                                    for i in ids) >= 10, 60, "10 results")
        self.redis.close()
        self.redis_server.restart(down_seconds=1.5, sig=sig)
        done_before = sum(bool(self.redis.exists(self.key("result:" + i))) for i in ids)
        self.assertLess(done_before, len(ids), "the run ended before the restart")
        self.wait_until(lambda: all(self.redis.exists(self.key("result:" + i)) for i in ids),
                        60, "every job's result")
        for prog in fleet:
            prog.check_alive()
            self.assertTrue(prog.log_events("redis_error"), "%s never saw Redis go" % prog.name)
        self.assert_queue_drained(timeout=10)
        per_job = collections.Counter(pb.job_id for pb in self.postbacks.postbacks)
        missing = [i for i in ids if per_job[i] == 0]
        self.assertEqual(missing, [])
        for i in ids:
            self.assertEqual(len(self.results(i)), 1, i)
            self.assertNotIn("errors", json.loads(self.results(i)[0])["results"], i)
        sys.stderr.write("\nredis restart (%s): %d done before the restart; duplicate postbacks "
                         "%d; stats %s\n" % (signal.Signals(sig).name, done_before,
                                             sum(per_job.values()) - len(ids),
                                             json.dumps(self.stats(), sort_keys=True)))
        # the same workers carry on
        self.push_jobs([self.tiny_job("after-restart")])
        self.wait_for_postback(timeout=20, job_id="after-restart")
        self.assertEqual(len(self.live_workers()), 2)

    def test_worker_started_before_redis_waits_for_it(self):
        self.redis.close()
        self.redis_server.shutdown()
        w = self.start_worker()
        # waited for, not a fixed second: a sanitized worker on a busy machine takes a good
        # part of one to start (its libraries, ImageMagick) before it first tries Redis
        self.wait_until(lambda: w.log_events("start_failed"), 10,
                        "the worker to notice Redis is down")
        time.sleep(0.5)
        w.check_alive()  # and it waits, not exits
        self.redis_server.restart()
        self.push_jobs([self.tiny_job("late-redis")])
        self.wait_for_postback(timeout=20, job_id="late-redis")
        self.wait_until(lambda: self.results("late-redis"), 10, "the result")
        self.assert_success("late-redis")

    def test_reply_lost_on_the_network_does_not_strand_the_job(self):
        # The worker reaches Redis through a relay. BLMOVE runs on the server (the job moves to
        # the worker's active list) but the answer is lost and the connection drops: the worker
        # reconnects and must still run the job it holds, not leave it stranded on its active
        # list while its lease stays alive.
        proxy, w = self.start_worker_through_relay()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        time.sleep(0.3)  # blocked in BLMOVE
        proxy.swallow = True
        payload = self.push_jobs([self.tiny_job("lost-reply")])[0]
        self.wait_until(lambda: self.active_of(wid) == [payload], 10,
                        "the job to move to the worker's active list")
        time.sleep(0.2)
        proxy.cut()
        proxy.swallow = False
        self.wait_until(lambda: self.results("lost-reply"), (LEASE_MS + REAP_MS) / 1000.0 + 10,
                        "the job to be run")
        self.assert_success("lost-reply")
        self.assert_queue_drained()
        w.check_alive()

    def test_answer_lost_to_the_call_sent_ahead(self):
        # begin.lua, which counts the job's run, is sent before the job fetches its source and
        # its answer is read afterwards. Here Redis runs it, and the connection drops before the
        # answer arrives, while the job waits for its source. The worker must notice when it next
        # reads (before its upload), reconnect, log that the run's count is unknown, upload,
        # post back and settle the job once, count the run once, and keep every later reply
        # paired with its own command.
        proxy, w = self.start_worker_through_relay()
        self.push_jobs([self.tiny_job("before-cut")])
        self.wait_until(lambda: self.results("before-cut"), 20, "the first job")
        self.src.add("/cut.png", tiny_png())
        self.src.stall("/cut.png")
        proxy.cut_on(self.key("job:cut").encode())  # in begin.lua's keys, and no other call's
        self.push_jobs([self.tiny_job("cut", path="/cut.png")])
        self.wait_until(lambda: self.src.requests("/cut.png") == 1, 20, "the worker to fetch")
        self.assertTrue(proxy.tripped.wait(10), "begin.lua was not answered")
        self.assertEqual(self.redis.execute("HGET", self.key("job:cut"), "runs"), "1")
        self.src.release()
        self.wait_until(lambda: self.results("cut"), 20, "the job whose answer was lost")
        after = ["after-cut-%d" % i for i in range(3)]
        self.push_jobs([self.tiny_job(job_id) for job_id in after])
        self.wait_until(lambda: all(self.results(j) for j in after), 20, "the jobs after it")
        for job_id in ["before-cut", "cut"] + after:
            self.wait_for_postback(timeout=10, job_id=job_id)
            self.assert_success(job_id)
            self.assertEqual(self.redis.execute("HGET", self.key("job:" + job_id), "runs"), "1")
        failed = w.log_events("job_begin_failed")
        self.assertEqual([e["job_id"] for e in failed], ["cut"], failed)
        self.assertIn("connection lost", failed[0]["error"])
        unanswered = [e for e in w.log_events("redis")
                      if e.get("script") == "begin" and e.get("ahead") == "1" and e.get("ok") == "0"]
        self.assertEqual(len(unanswered), 1, unanswered)
        self.assertEqual(w.log_events("job_rerun"), [])
        self.assertEqual(self.stats().get("succeeded"), 5)
        self.assert_queue_drained()
        w.check_alive()


    def test_answers_lost_to_a_finish_written_behind_begin(self):
        # A no-op job's finish.lua is written behind its begin.lua, before begin.lua's answer
        # comes, and both answers are read in one wait (6b4fc49). Here the relay holds begin.lua
        # until finish.lua is written behind it, lets both reach Redis, which runs them, and
        # drops the connection before either answer arrives. The worker sends finish.lua again on
        # a new connection, not knowing begin.lua's run number: finish.lua must know its own
        # settlement by the run_by begin.lua stored, and answer settled, writing and counting
        # nothing again. Telling it by the run number, which the worker never read, the job
        # would be a lost lease (counted lease_lost, logged lease_lost) although it was settled.
        proxy, w = self.start_worker_through_relay()
        self.push_jobs([self.tiny_job("before-behind")])
        self.wait_until(lambda: self.results("before-behind"), 20, "the first job")
        job = {"job_id": "behind", "src": {"name": "canvas", "width": 8, "height": 8},
               "functions": [{"name": "no_op", "params": {}}]}
        proxy.hold_on(self.key("job:behind").encode())  # begin.lua's keys: the first call with it
        proxy.cut_on(self.key("result:behind").encode())  # finish.lua's keys alone
        self.push_jobs([job])
        self.assertTrue(proxy.held.wait(10), "begin.lua was not sent")
        time.sleep(0.2)  # finish.lua written behind it meanwhile (a no-op job: milliseconds)
        proxy.release()
        self.assertTrue(proxy.tripped.wait(10), "finish.lua was not answered")
        self.wait_until(lambda: [e for e in w.log_events("job_done") if e["job_id"] == "behind"],
                        20, "the job's end")
        failed = w.log_events("job_begin_failed")
        self.assertEqual([e["job_id"] for e in failed], ["behind"], failed)  # one wait, both lost
        # README (Logs), at debug level: the finish.lua written behind is marked behind=1, and
        # answered=0 as its answer was lost (the chaos driver's --fast-jobs counts these lines)
        behind = [(e.get("script"), e.get("ok"), e.get("answered"))
                  for e in w.log_events("redis") if e.get("behind") == "1"]
        self.assertIn(("finish", "0", "0"), behind, behind)
        self.assertEqual(len(self.results("behind")), 1)
        job_hash = self.redis.hgetall(self.key("job:behind"))
        self.assertEqual((job_hash["runs"], job_hash["run_by_runs"]), ("1", "1"), job_hash)
        self.assertTrue(job_hash["run_by"].startswith(self.worker_id(w) + "/"), job_hash)
        self.assertEqual(w.log_events("lease_lost"), [])
        self.assertEqual(self.stats().get("succeeded"), 2)
        self.assertNotIn("lease_lost", self.stats())
        self.push_jobs([self.tiny_job("after-behind")])
        self.wait_for_postback(timeout=20, job_id="after-behind")
        self.wait_until(lambda: self.results("after-behind"), 10, "the next job's result")
        self.assert_success("after-behind")
        self.assert_queue_drained()
        w.check_alive()


class RedisDataLossTest(ReliabilityCase):
    """Redis restarted without its data (no persistence, a failover to a replica that never got
    the job, a flush) while a worker runs a job: the worker holds the only copy of the job and
    its outcome. It posts the result back and stores it (`job_forgotten`, counted `forgotten`);
    before, it took the job missing from its active list for a lost lease and dropped the
    outcome: no result, no postback, the job lost although its output was uploaded. Its heartbeat
    then finds its record gone before its lease ran out, and logs that it registered again
    (worker_reregistered reason=record_lost), not lease_lost."""

    def test_job_in_hand_when_redis_loses_its_data(self):
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        w = self.start_worker(PIXQ_LEASE_MS=8000)  # a slow restart stays well within it
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        # more than a lease after its registration: the time since the last renewal counts
        first = float(self.redis.execute("ZSCORE", self.key("workers"), wid))
        self.wait_until(lambda: float(self.redis.execute("ZSCORE", self.key("workers"), wid))
                        > first + 8000, 30, "a heartbeat a lease after the registration")
        self.push_jobs([self.tiny_job("in-hand", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.src.release()
        self.wait_until(lambda: self.results("in-hand"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="in-hand")
        self.assert_success("in-hand")
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        # step=finish is logged when finish.lua answered, which may be after the postback
        self.wait_until(lambda: len(w.log_events("job_forgotten")) >= 2, 10, "job_forgotten")
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")],
                         ["before_postback", "finish"])
        # README (Logs): that line ends the run in place of job_done, with its outcome and times
        last = w.log_events("job_forgotten")[-1]
        self.assertEqual((last["action"], last["outcome"]), ("settled", "succeeded"))
        for field in ("ms", "fetch_ms", "process_ms", "upload_ms", "s3_wait_ms", "postback_ms"):
            self.assertGreaterEqual(float(last[field]), 0, field)
        self.assertEqual([e for e in w.log_events("job_done") if e["job_id"] == "in-hand"], [])
        # the heartbeat finds the worker's record gone well within its lease: Redis lost it,
        # no reap took it, and the log says so (before: lease_lost, as if its job had gone)
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 10, "the worker to register again")
        events = w.log_events("worker_reregistered")
        self.assertEqual([(e["queue"], e["reason"]) for e in events],
                         [("default", "record_lost")])
        self.assertLess(int(events[0]["since_renewal_ms"]), 8000)
        self.assertEqual(w.log_events("lease_lost"), [])
        self.push_jobs([self.tiny_job("after")])
        self.wait_for_postback(timeout=10, job_id="after")
        w.check_alive()

    def test_job_in_hand_when_redis_is_flushed(self):
        """As above with FLUSHALL, which ends no connection and fails no command: the job's
        settlement also reserves the next job (finish.lua's answer is then an array), and its
        "settled although Redis had lost it" must be read from there as from the plain answer:
        job_forgotten, not lease_lost. The job is uploaded: Redis lost it, no one took it."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        w = self.start_worker()
        self.worker_id(w)
        self.push_jobs([self.tiny_job("flushed", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.redis.execute("FLUSHALL")
        # the heartbeat finds the flush before the upload, which then asks whether the job was
        # taken: neither on the active list nor under the same data token, it was not
        self.wait_until(lambda: w.log_events("worker_reregistered"), 20, "the heartbeat")
        self.src.release()
        self.wait_until(lambda: self.results("flushed"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="flushed")
        self.assert_success("flushed")
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        self.wait_until(lambda: len(w.log_events("job_forgotten")) >= 2, 10, "job_forgotten")
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")],
                         ["before_postback", "finish"])
        self.assertEqual(w.log_events("redis_error"), [])  # nothing kept finish.lua from folding
        self.assertEqual(w.log_events("lease_lost"), [])
        self.push_jobs([self.tiny_job("after")])
        self.wait_for_postback(timeout=10, job_id="after")
        w.check_alive()

    def test_retry_decided_when_redis_loses_its_data(self):
        """The job in hand's source fails transiently while Redis restarts empty: the worker
        holds the only copy of the job, and schedules its retry all the same. Before,
        requeue.lua found the job missing from the active list, the worker took that for a lost
        lease (lease_lost step=retry) and dropped the job: no retry, no result, no postback."""
        self.src.add("/flaky.png", tiny_png())
        self.src.answer_with("/flaky.png", 503)
        self.src.stall("/flaky.png")
        w = self.start_worker(PIXQ_LEASE_MS=8000, PIXQ_RETRY_BASE_MS=200)
        self.worker_id(w)
        self.push_jobs([self.tiny_job("retried", path="/flaky.png")])
        self.wait_until(lambda: self.src.requests("/flaky.png") == 1, 20, "the worker to fetch")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.src.release()  # answered 503: a transient failure, retried
        self.wait_until(lambda: self.results("retried"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="retried")
        self.assert_success("retried")
        self.assertEqual(self.src.requests("/flaky.png"), 2)
        self.assertEqual([e for e in w.log_events("lease_lost")
                          if e.get("step") == "retry"], [])
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")], ["retry"])
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        w.check_alive()

    def test_park_decided_when_redis_loses_its_data(self):
        """The job in hand parks an output (its bucket's rate is spent) after Redis restarted
        empty: the worker parks it all the same, uploads it from its blob and posts the job
        back. Before, park.lua found the job missing from the active list, the worker took that
        for a lost lease (park_failed) and dropped the job with its parked output: the outputs
        sent at once were in S3, but no result and no postback ever came."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        # 1 PUT/s, burst 0: after Redis comes back empty the first output's rate limit call
        # finds the connection gone (it goes unlimited), the second takes the bucket's token,
        # the third's slot is a second away: parked
        w = self.start_worker(PIXQ_LEASE_MS=8000, PIXQ_S3_RATE="1/s,burst=0")
        self.worker_id(w)
        job = self.tiny_job("parked", path="/slow.png")
        save = job["functions"][0]["save"]
        job["functions"] += [
            {"name": "resize_to_fit", "params": {"width": 32},
             "save": {"image_identifier": "thumb%d" % i,
                      "s3_destination": {"bucket": save["s3_destination"]["bucket"],
                                         "key": "out/parked-%d.png" % i}}} for i in (2, 3)]
        self.push_jobs([job])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.src.release()
        self.wait_until(lambda: self.results("parked"), 20, "the result")
        pb = self.wait_for_postback(timeout=10, job_id="parked")
        self.assertNotIn("errors", pb.results)
        self.assertEqual([i["image_identifier"] for i in pb.results["images"]],
                         ["thumb", "thumb2", "thumb3"])
        self.assertEqual(len(self.postbacks_of("parked")), 1)
        self.assertEqual(w.log_events("park_failed"), [])
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")], ["park"])
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        w.check_alive()

    def refused_until(self, proxy, step):
        """Waits for the worker's first call of `step` to be refused (the relay closes the
        connection of any call naming the marker; the worker tries again, 100 ms doubling)."""
        self.wait_until(lambda: proxy.refusals > 0, 20, "%s.lua to be refused" % step)

    def test_job_without_id_reserved_when_redis_loses_its_data(self):
        """A job without a job_id reserved right before Redis restarted empty: the call that
        gives it its id (adopt.lua) finds the reservation gone, and the queue's data token
        (pixq:{Q}:epoch) not the one the worker read where it reserved the job: Redis lost the
        data, and the worker keeps the job: it runs once and is posted back. Before, the worker took the missing reservation for a lost lease and dropped the
        job: no result, no postback."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(PIXQ_LEASE_MS=8000)
        self.worker_id(w)
        proxy.refuse = b"noid-marker"  # in adopt.lua's arguments, in no call before it
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        self.refused_until(proxy, "adopt")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        proxy.refuse = None
        pb = self.wait_for_postback(timeout=20, path="/pb-noid")
        self.assertNotIn("errors", pb.results)
        self.assertTrue(pb.job_id)
        self.wait_until(lambda: self.results(pb.job_id), 10, "the result")
        self.assert_success(pb.job_id)
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")], ["adopt"])
        stats = self.stats()
        self.assertEqual((stats.get("forgotten"), stats.get("succeeded")), (1, 1), stats)
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)
        self.assertEqual(w.log_events("adopt_failed"), [])
        self.assert_queue_drained()
        w.check_alive()

    def test_adoption_tried_settle_attempts_times(self):
        """adopt.lua is tried PIXQ_SETTLE_ATTEMPTS (3) times through an outage, then given up
        (adopt_failed): the job stays on the worker's list and runs once Redis answers."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(PIXQ_SETTLE_ATTEMPTS=3)
        self.worker_id(w)
        proxy.refuse = b"noid-marker"  # in adopt.lua's arguments, in no call before it
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        self.wait_until(lambda: w.log_events("adopt_failed"), 20, "adopt.lua to be given up")
        events = w.log_events()
        failed = [e["event"] for e in events].index("adopt_failed")
        # a redis_error and a wait after each try but the last
        self.assertEqual([(e["attempt"], e["queue"]) for e in events[:failed]
                          if e["event"] == "redis_error" and e.get("step") == "adopt"],
                         [("1", "default"), ("2", "default")])
        self.assertEqual(events[failed]["queue"], "default")  # README (Logs)
        proxy.refuse = None
        pb = self.wait_for_postback(timeout=20, path="/pb-noid")
        self.assertNotIn("errors", pb.results)
        self.wait_until(lambda: self.results(pb.job_id), 10, "the result")
        self.assert_success(pb.job_id)
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)
        self.assert_queue_drained()

    def batch_refused(self, job_ids, **env):
        """A worker (with `env`) through a relay that refuses split.lua's calls, and a batch of
        tiny jobs `job_ids` pushed for it; returns (relay, worker)."""
        self.src.add("/batch-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(**env)
        self.worker_id(w)
        proxy.refuse = b"batch-marker"  # in split.lua's arguments, in no call before it
        jobs = [self.tiny_job(j, path="/batch-marker.png") for j in job_ids]
        self.redis.lpush(self.key("jobs"), json.dumps(jobs))
        return proxy, w

    def test_split_tried_settle_attempts_times(self):
        """split.lua is tried PIXQ_SETTLE_ATTEMPTS (3) times through an outage, then given up
        (batch_split_failed, with its queue and the batch's number of jobs: README, Logs): the
        batch stays on the worker's list (task_stranded step=split) and is split, its jobs run
        once each, once Redis answers."""
        proxy, w = self.batch_refused(("split-1", "split-2"), PIXQ_SETTLE_ATTEMPTS=3)
        self.wait_until(lambda: w.log_events("task_stranded"), 20, "split.lua to be given up")
        proxy.refuse = None
        failed = w.log_events("batch_split_failed")[0]
        self.assertEqual((failed["queue"], failed["jobs"]), ("default", "2"), failed)
        self.assertEqual(w.log_events("task_stranded")[0]["step"], "split")
        for job_id in ("split-1", "split-2"):
            self.wait_for_postback(timeout=20, job_id=job_id)
            self.wait_until(lambda: self.results(job_id), 10, "the result")
            self.assert_success(job_id)
        self.assertEqual(self.src.requests("/batch-marker.png"), 2)
        self.assert_queue_drained()
        w.check_alive()

    def test_job_without_id_whose_adoption_answer_was_lost(self):
        """adopt.lua ran but its answer was lost: asked again, it finds the new payload on the
        list already and says so; the job runs at once, once, and nothing is counted lost."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay()
        self.worker_id(w)
        # adopt.lua in the server's script cache first: else the cut takes its NOSCRIPT answer,
        # adopt.lua never runs, and the call sent again merely runs it the first time
        warm = self.tiny_job("unused", postback_path="/pb-warm")
        del warm["job_id"]
        self.push_jobs([warm])
        self.wait_for_postback(timeout=20, path="/pb-warm")
        proxy.cut_on(b"noid-marker")
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        self.assertTrue(proxy.tripped.wait(10), "adopt.lua was not answered")
        pb = self.wait_for_postback(timeout=20, path="/pb-noid")
        self.assertNotIn("errors", pb.results)
        self.wait_until(lambda: self.results(pb.job_id), 10, "the result")
        self.assert_success(pb.job_id)
        self.assertEqual([e.get("step") for e in w.log_events("redis_error")], ["adopt"])
        for event in ("adopt_failed", "job_stranded", "job_forgotten", "lease_lost"):
            self.assertEqual(w.log_events(event), [], event)
        self.assertNotIn("forgotten", self.stats())
        self.assert_queue_drained()
        w.check_alive()

    def test_batch_reserved_when_redis_loses_its_data(self):
        """A batch reserved right before Redis restarted empty: split.lua finds it gone from a
        server that is not the one it was reserved from, and queues its jobs all the same.
        Before, the batch was dropped as if taken from the worker."""
        proxy, w = self.batch_refused(("batch-1", "batch-2"), PIXQ_LEASE_MS=8000)
        self.refused_until(proxy, "split")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        proxy.refuse = None
        for job_id in ("batch-1", "batch-2"):
            self.wait_for_postback(timeout=20, job_id=job_id)
            self.wait_until(lambda: self.results(job_id), 10, "the result")
            self.assert_success(job_id)
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")], ["split"])
        stats = self.stats()
        self.assertEqual((stats.get("forgotten"), stats.get("batches_split"),
                          stats.get("succeeded")), (1, 1, 2), stats)
        self.assert_queue_drained()
        w.check_alive()

    def test_batch_queued_after_data_loss_whose_answer_was_lost(self):
        """As above, and split.lua's answer, which queued the jobs, was lost: asked again, it
        finds its own key (KEYS[6]) and queues nothing twice. Before, each job ran twice."""
        self.src.add("/batch-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(PIXQ_LEASE_MS=8000)
        self.worker_id(w)
        proxy.refuse = b"batch-marker"
        jobs = [self.tiny_job(j, path="/batch-marker.png") for j in ("batch-1", "batch-2")]
        self.redis.lpush(self.key("jobs"), json.dumps(jobs))
        self.refused_until(proxy, "split")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.load_script("split")  # else the cut takes a NOSCRIPT answer
        proxy.cut_on(b"batch-marker")
        proxy.refuse = None
        self.assertTrue(proxy.tripped.wait(20), "split.lua was not answered")
        for job_id in ("batch-1", "batch-2"):
            self.wait_until(lambda: self.results(job_id), 20, "the result")
        time.sleep(3)
        self.assertEqual(self.src.requests("/batch-marker.png"), 2, self.stats())
        stats = self.stats()
        self.assertEqual((stats.get("forgotten"), stats.get("batches_split")), (1, 1), stats)
        self.assert_queue_drained()

    def test_job_without_id_reserved_with_the_last_settlement(self):
        """As above for a job without a job_id that finish.lua reserved for the next turn when
        it settled the job before (the folded ack): the token read on that call's connection
        goes with it."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(PIXQ_LEASE_MS=8000)
        self.worker_id(w)
        self.push_jobs([self.tiny_job("first", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        proxy.refuse = b"noid-marker"
        self.src.release()
        self.wait_until(lambda: proxy.refusals > 0, 20, "adopt.lua to be refused")
        self.assertTrue([e for e in w.log_events("redis") if e.get("script") == "finish"])
        self.assertEqual(w.log_events("job_stranded"), [])
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)
        proxy.refuse = None
        pb = self.wait_for_postback(timeout=20, path="/pb-noid")
        self.assertNotIn("errors", pb.results)
        self.assertEqual([e["step"] for e in w.log_events("job_forgotten")], ["adopt"])
        w.check_alive()

    def restart_empty_while_adopting(self, proxy, wid1):
        """Redis restarts empty (no AOF) while w1, behind `proxy`, holds a job without a job_id
        (/noid-marker.png, postback /pb-noid) whose adopt.lua it is refused; returns once w1 is
        registered again, adopt.lua in the script cache."""
        proxy.refuse = b"noid-marker"
        job = self.tiny_job("unused", path="/noid-marker.png", postback_path="/pb-noid")
        del job["job_id"]
        self.push_jobs([job])
        self.wait_until(lambda: proxy.refusals > 0, 20, "adopt.lua to be refused")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.load_script("adopt")  # else the cut takes a NOSCRIPT answer
        # w1 registered again (else, cut off from then on, it has no record to be reaped by)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register again")

    def test_adopt_kept_after_data_loss_answer_lost(self):
        """Redis restarts empty while w1 holds a job without a job_id; adopt.lua keeps it but
        its answer is lost. Asked again, it answers as the first time: the job runs once, and
        w1 logs job_forgotten for it (before, the second answer said "swapped", and the line
        was missing)."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w1 = self.start_worker_through_relay()
        wid1 = self.worker_id(w1)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register")
        self.restart_empty_while_adopting(proxy, wid1)
        proxy.cut_on(b"noid-marker")
        proxy.refuse = None
        self.assertTrue(proxy.tripped.wait(30), "adopt.lua was not answered")
        pb = self.wait_for_postback(timeout=30, path="/pb-noid")
        self.assertNotIn("errors", pb.results)
        self.assertEqual([e["step"] for e in w1.log_events("job_forgotten")], ["adopt"])
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)
        w1.check_alive()

    def test_adopt_kept_after_data_loss_answer_lost_then_reaped(self):
        """Redis restarts empty while w1 holds a job without a job_id; adopt.lua keeps it (data
        lost) but its answer is lost, and w1 is then cut off past its lease: w2 reaps w1 and
        runs the job. w1's adopt.lua, asked again, finds its own key (pixq:{Q}:adopt:<id>) and
        does not keep the job a second time. Before, the token still differed, and the job ran
        twice."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w1 = self.start_worker_through_relay()
        wid1 = self.worker_id(w1)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register")
        self.restart_empty_while_adopting(proxy, wid1)

        def refuse_after_cut():
            if proxy.tripped.wait(30):
                proxy.refuse = wid1.encode()  # w1 cut off: heartbeats too
        threading.Thread(target=refuse_after_cut, daemon=True).start()
        proxy.cut_on(b"noid-marker")
        proxy.refuse = None
        self.assertTrue(proxy.tripped.wait(30), "adopt.lua was not answered")
        time.sleep(0.2)
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())  # kept by that call
        self.start_worker()  # reaps w1 (its lease runs out), runs the job
        self.wait_for_postback(timeout=30, path="/pb-noid")
        proxy.refuse = None
        self.wait_until(lambda: w1.log_events("adopt_failed") or w1.log_events("job_forgotten")
                        or w1.log_events("job_start"), 30, "w1 to ask adopt.lua again")
        time.sleep(4)
        pbs = [pb for pb in self.postbacks.postbacks if pb.path == "/pb-noid"]
        self.assertEqual(len(pbs), 1, [pb.job_id for pb in pbs])
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)

    def flush_then_reap_while_adopting(self, paused):
        """FLUSHALL (with w1 paused past its lease if `paused`), then a job without a job_id
        that w1 reserves is reaped and run by w2 while w1 asks adopt.lua: w1, asking again,
        must not run it a second time. Returns w1."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w1 = self.start_worker_through_relay()
        wid1 = self.worker_id(w1)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register")
        self.push_jobs([self.tiny_job("warm")])  # w1 reads the token on its connection
        self.wait_until(lambda: self.results("warm"), 20, "the warm-up job")
        if paused:
            w1.proc.send_signal(signal.SIGSTOP)
        self.redis.execute("FLUSHALL")  # w1 stays connected: its cached token is the old one
        if paused:
            time.sleep(LEASE_MS / 1000.0 + 1)
            w1.proc.send_signal(signal.SIGCONT)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register again")
        self.reaped_while_adopting(proxy, wid1)
        proxy.refuse = None
        self.wait_until(lambda: w1.log_events("adopt_failed") or w1.log_events("job_forgotten"),
                        30, "w1 to ask adopt.lua again")
        time.sleep(3)
        pbs = [pb for pb in self.postbacks.postbacks if pb.path == "/pb-noid"]
        self.assertEqual(len(pbs), 1, [pb.job_id for pb in pbs])
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)
        return w1

    def test_adopt_after_reap_following_a_flush(self):
        """A flush ends no connection, so a worker keeps the token it read before it; once its
        heartbeat finds its record gone (the flush), it reads the token again. Else a job
        without a job_id reserved after the flush carried the old token, and a reap of it (the
        worker cut off before adopt.lua answered) was taken for lost data: the job ran twice,
        under two job ids."""
        w1 = self.flush_then_reap_while_adopting(paused=False)
        self.assertEqual([e["reason"] for e in w1.log_events("worker_reregistered")][:1],
                         ["record_lost"])

    def test_adopt_after_reap_following_a_flush_seen_late(self):
        """As above, but w1's heartbeat finds its record gone only after a lease (w1 was paused
        during the flush), and logs lease_lost: it reads the token again all the same. Before,
        it kept the token it read before the flush, and the job ran twice."""
        w1 = self.flush_then_reap_while_adopting(paused=True)
        self.assertTrue(w1.log_events("lease_lost"))


class RestartWithDataTest(ReliabilityCase):
    """Redis restarted with its data (the AOF deploy/ recommends) keeps the queue's data token:
    a reservation missing from a worker's list there was not lost with the data, and is not
    kept or queued again. (A check by the server's run_id, which every restart changes, ran
    these jobs twice.)"""

    redis_appendonly = True

    def test_split_answer_lost_then_restart_with_aof(self):
        """split.lua ran, its answer was lost, Redis restarted from its AOF before the call was
        sent again: the jobs are queued once, not twice."""
        self.src.add("/batch-marker.png", tiny_png())
        proxy, w = self.start_worker_through_relay(PIXQ_LEASE_MS=8000)
        self.worker_id(w)
        # a first batch: split.lua is in the script cache (else the cut takes a NOSCRIPT)
        self.redis.lpush(self.key("jobs"), json.dumps([self.tiny_job("warm-1")]))
        self.wait_until(lambda: self.results("warm-1"), 20, "the warm-up batch")

        def refuse_after_cut():
            if proxy.tripped.wait(20):
                proxy.refuse = b"batch-marker"
        threading.Thread(target=refuse_after_cut, daemon=True).start()
        proxy.cut_on(b"batch-marker")
        jobs = [self.tiny_job(j, path="/batch-marker.png") for j in ("dup-1", "dup-2")]
        self.redis.lpush(self.key("jobs"), json.dumps(jobs))
        self.assertTrue(proxy.tripped.wait(10), "split.lua was not answered")
        self.wait_until(lambda: proxy.refusals > 0, 20, "split.lua to be asked again")
        self.assertEqual(self.redis.llen(self.key("jobs")), 2)  # split ran: its 2 jobs queued
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # SIGTERM: the AOF brings it all back
        proxy.refuse = None
        for job_id in ("dup-1", "dup-2"):
            self.wait_until(lambda: self.results(job_id), 20, "the result")
        time.sleep(3)
        self.assertEqual(self.src.requests("/batch-marker.png"), 2, self.stats())
        self.assertEqual(self.stats().get("batches_split"), 2, self.stats())
        self.assertNotIn("forgotten", self.stats())

    def test_adopt_after_reap_then_restart_with_aof(self):
        """A job without a job_id, its worker cut off while adopt.lua is asked again: it is
        reaped and run by another worker; Redis restarts from its AOF; the first worker must
        not run the job a second time."""
        self.src.add("/noid-marker.png", tiny_png())
        proxy, w1 = self.start_worker_through_relay()
        wid1 = self.worker_id(w1)
        self.wait_until(lambda: wid1 in self.live_workers(), 20, "w1 to register")
        self.reaped_while_adopting(proxy, wid1)
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # SIGTERM: the AOF brings it all back
        proxy.refuse = None
        # w1's adopt.lua, asked again (back-off up to 5 s), finds the job taken from it
        self.wait_until(lambda: w1.log_events("adopt_failed"), 20, "w1 to find the job gone")
        time.sleep(1)
        pbs = [pb for pb in self.postbacks.postbacks if pb.path == "/pb-noid"]
        self.assertEqual(len(pbs), 1, [pb.job_id for pb in pbs])
        self.assertEqual(self.src.requests("/noid-marker.png"), 1)
        self.assertNotIn("forgotten", self.stats())


    def job_in_hand_through_relay(self):
        """Worker A, through a relay, with job in-hand in its hands (its source stalled):
        (proxy, A, A's id)."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        proxy, a = self.start_worker_through_relay()
        wid_a = self.worker_id(a)
        self.push_jobs([self.tiny_job("in-hand", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch")
        return proxy, a, wid_a

    def assert_ran_once_where_it_ran(self, a, b, wid_a, wid_b):
        """B reaped nobody; job in-hand, let go on, ran once, in A; no lease was lost."""
        self.assertEqual(b.log_events("worker_reaped"), [])
        self.assertEqual(self.src.requests("/slow.png"), 1)
        self.src.release()
        self.wait_until(lambda: self.results("in-hand"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="in-hand")
        time.sleep(1)
        self.assert_success("in-hand")
        self.assertEqual(self.src.requests("/slow.png"), 1)
        self.assertNotIn("recovered", self.stats())
        self.assertEqual(self.redis.execute("HGET", self.key("job:in-hand"), "runs"), "1")
        self.assertEqual(a.log_events("lease_lost") + b.log_events("lease_lost"), [])
        self.assertEqual(sorted(self.live_workers()), sorted([wid_a, wid_b]))

    def test_outage_longer_than_the_lease_reaps_nobody(self):
        """Redis is down longer than a lease (a restart that loads a large AOF, an OOM, a
        freeze): on Redis's clock every lease ran out meanwhile, that of the first worker back
        too. No worker died, so none is reaped: the job in hand runs once, where it runs.
        Before, the first worker back reaped the others before their first heartbeat: their
        jobs ran again, counted as crashes (towards a poison pill), and an outcome posted during
        the outage was posted twice."""
        proxy, a, wid_a = self.job_in_hand_through_relay()
        b = self.start_worker()
        wid_b = self.worker_id(b)
        self.wait_until(lambda: wid_b in self.live_workers(), 20, "B to register")
        proxy.refuse = wid_a.encode()  # A's first heartbeat after the outage comes after B's
        self.redis.close()
        # within the 10 s without a byte that end the source's download
        self.redis_server.restart(down_seconds=1.5 * LEASE_MS / 1000.0)
        time.sleep(2 * HEARTBEAT_MS / 1000.0)  # B beats and makes its reap passes
        proxy.refuse = None
        self.assert_ran_once_where_it_ran(a, b, wid_a, wid_b)

    def test_worker_started_during_an_outage_reaps_nobody(self):
        """As above, but B starts while Redis is down and registers as it comes back, before
        A's first heartbeat. B saw Redis fail (start_failed): its registration renews every
        lease, as A's beat would have, since no lease was renewed for two thirds of a lease.
        Before, B's fresh lease let its start-up reap take A for dead: A's job ran again, and A
        lost its lease."""
        proxy, a, wid_a = self.job_in_hand_through_relay()
        proxy.refuse = wid_a.encode()  # A's first heartbeat after the outage comes after B's
        self.redis.close()
        self.redis_server.shutdown()  # SIGTERM: the AOF brings it all back
        time.sleep(1.5 * LEASE_MS / 1000.0)
        b = self.start_worker()
        time.sleep(0.5)  # B tries to register meanwhile
        self.redis_server.restart()
        wid_b = self.worker_id(b)
        self.wait_until(lambda: wid_b in self.live_workers(), 20, "B to register")
        time.sleep(HEARTBEAT_MS / 1000.0)  # B's start-up reap and two passes more
        proxy.refuse = None
        self.assert_ran_once_where_it_ran(a, b, wid_a, wid_b)

    def test_fleet_that_died_is_reaped_when_a_worker_starts(self):
        """The other side of the above: a fleet that died (A killed, no lease renewed since for
        more than a lease) looks the same as an outage, but a worker that starts and reaches
        Redis at once has seen no outage: its start-up reap recovers A's job at once."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        a = self.start_worker()
        wid_a = self.worker_id(a)
        self.push_jobs([self.tiny_job("orphan", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch")
        self.kill_worker(a, signal.SIGKILL)
        self.src.release()
        time.sleep(1.5 * LEASE_MS / 1000.0)  # A's lease ran out, nobody reaped it
        b = self.start_worker(PIXQ_REAP_INTERVAL_MS=60000)  # only its start-up reap in time
        self.worker_id(b)
        self.wait_for_postback(timeout=20, job_id="orphan")
        reaped = self.wait_until(lambda: b.log_events("worker_reaped"), 10, "worker_reaped")
        self.assertEqual([e["worker"] for e in reaped], [wid_a])
        self.assertFalse(b.log_events("start_failed"))
        self.assertEqual(self.stats().get("recovered"), 1)
        self.assertNotIn(wid_a, self.live_workers())

        # B's log: reaped within a reap interval of its start (a renewed lease: 3 s later)
        waited = log_seconds(reaped[0]) - log_seconds(b.log_events("worker_start")[0])
        sys.stderr.write("\nfleet that died: reaped %.3f s after the worker started\n" % waited)
        self.assertLess(waited, LEASE_MS / 1000.0 / 2)

class ReplicaTest(ReliabilityCase):
    """PIXQ_REDIS_URL naming a read-only replica (a failover made the old primary one, or a
    mistake): Redis refuses every write with READONLY. The worker says so, with what to do, keeps
    trying, and serves once the replica is promoted; pixq's writes fail with the same words.
    Before, the worker's start_failed line said only "cannot register the worker in ..."."""

    def test_worker_on_a_replica_until_it_is_promoted(self):
        replica = harness.RedisServer(self.tmp / "replica").start()
        self.addCleanup(replica.stop)
        r = harness.Redis(harness.LOOPBACK, replica.port)
        self.addCleanup(r.close)
        r.execute("REPLICAOF", harness.LOOPBACK, str(self.redis_server.port))
        hint = "(PIXQ_REDIS_URL names a read-only replica: point it at the primary)"
        w = self.start_worker(PIXQ_REDIS_URL=replica.url())
        ev = self.wait_until(lambda: w.log_events("start_failed"), 10, "the worker to try")
        self.assertRegex(ev[0]["error"], r"^cannot register the worker in pixq:\{default\}:"
                         r"workers: redis: READONLY .* \(PIXQ_REDIS_URL names a read-only "
                         r"replica: point it at the primary\)$")
        res = self.run_pixq("dead", "purge", env={"PIXQ_REDIS_URL": replica.url()})
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertTrue(res.stderr.startswith("pixq: dead purge: redis: READONLY "), res.stderr)
        self.assertTrue(res.stderr.endswith(hint + "\n"), res.stderr)
        # pixq's other writes alike: a submit (nothing enqueued), a limit set
        res = self.run_pixq("submit", "-", input=json.dumps(self.tiny_job("on-replica")),
                            env={"PIXQ_REDIS_URL": replica.url()})
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertTrue(res.stderr.startswith("pixq: submit: "), res.stderr)
        self.assertIn(": redis: READONLY ", res.stderr)
        self.assertTrue(res.stderr.endswith(hint + "; nothing was enqueued\n"), res.stderr)
        res = self.run_pixq("limit", "set", "bkt-r", "5", "1",
                            env={"PIXQ_REDIS_URL": replica.url()})
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertTrue(res.stderr.startswith("pixq: limit set: redis: READONLY "), res.stderr)
        self.assertTrue(res.stderr.endswith(hint + "\n"), res.stderr)
        r.execute("REPLICAOF", "NO", "ONE")  # promoted
        r.lpush(self.key("jobs"), json.dumps(self.tiny_job("promoted")))
        self.wait_for_postback(timeout=20, job_id="promoted")
        w.check_alive()

        # a failover turns it into a replica again while the worker serves: its writes are
        # refused (redis_error, with the same words), it keeps trying, and it serves again once
        # the server is promoted, a job that came meanwhile included (README, Redis)
        r.execute("REPLICAOF", harness.LOOPBACK, str(self.redis_server.port))
        refused = self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                           if e.get("error", "").endswith(hint)], 20,
                                  "the worker's writes refused")
        self.assertRegex(refused[0]["error"], r"^redis: READONLY ")
        self.redis.lpush(self.key("jobs"), json.dumps(self.tiny_job("after-failover")))
        self.wait_until(lambda: r.llen(self.key("jobs")) == 1, 20, "the job on the replica")
        r.execute("REPLICAOF", "NO", "ONE")
        self.wait_for_postback(timeout=20, job_id="after-failover")
        w.check_alive()

    def test_worker_follows_a_proxy_moved_to_the_new_primary(self):
        """README (Redis): the workers serve again once "the URL (a name your failover moves, or
        a proxy) leads to the primary". A failover makes the old primary a replica of the new
        one and moves the proxy (or the name) there: new connections reach the new primary,
        while a connection made before still reaches the old server, which refuses every write
        with READONLY from then on. The worker must connect again, not retry on it for ever."""
        old = self.redis
        old.execute("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        new_server = harness.RedisServer(self.tmp / "new-primary").start()
        self.addCleanup(new_server.stop)
        new = harness.Redis(harness.LOOPBACK, new_server.port)
        self.addCleanup(new.close)
        new.execute("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        new.execute("REPLICAOF", harness.LOOPBACK, str(self.redis_server.port))
        proxy = harness.TcpProxy(self.redis_server.port)
        self.addCleanup(proxy.stop)
        w = self.start_worker(PIXQ_REDIS_URL=proxy.redis_url())
        old.lpush(self.key("jobs"), json.dumps(self.tiny_job("before-failover")))
        self.wait_for_postback(timeout=20, job_id="before-failover")
        self.wait_until(lambda: self.results("before-failover"), 10, "its outcome recorded")
        self.wait_until(lambda: new.execute("INFO", "replication").find(
            "master_link_status:up") >= 0 and new.exists(self.key("result:before-failover")),
            20, "the replica in step")
        # the failover: the replica promoted, the old primary made its replica, the proxy moved
        new.execute("REPLICAOF", "NO", "ONE")
        self.addCleanup(old.execute, "REPLICAOF", "NO", "ONE")  # for the test's own clean-up
        old.execute("REPLICAOF", harness.LOOPBACK, str(new_server.port))
        self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                 if e["error"].startswith("redis: READONLY ")], 20,
                        "the worker's writes refused by the old server")
        proxy.target_port = new_server.port
        new.lpush(self.key("jobs"), json.dumps(self.tiny_job("after-failover")))
        self.wait_for_postback(timeout=20, job_id="after-failover")
        self.wait_until(lambda: new.llen(self.key("jobs")) == 0, 10, "the job taken")
        w.check_alive()
        # a READONLY answer ends the connection it came on
        self.assertIn("read_only_replica",
                      [e["reason"] for e in w.log_events("redis_reconnect")])


class GracefulStopTest(ReliabilityCase):
    """SIGTERM during a job: it completes, or it goes back to the head of the queue; never both,
    never neither."""

    def start_stalled_job(self, job_id, timeout_ms):
        w = self.start_worker(PIXQ_SHUTDOWN_TIMEOUT_MS=timeout_ms)
        wid = self.worker_id(w)
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        payload = self.push_jobs([self.tiny_job(job_id, path="/slow.png")])[0]
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.assertEqual(self.active_of(wid), [payload])
        return w, wid, payload

    def test_job_finishes_within_the_deadline(self):
        w, wid, _ = self.start_stalled_job("stop-a", 10000)
        w.proc.send_signal(signal.SIGTERM)
        # said at once, while the job still waits for its source (it said nothing until
        # worker_stop, when the job was done)
        stopping = self.wait_until(lambda: w.log_events("worker_stopping"), 5, "worker_stopping")
        self.assertEqual((stopping[0].get("signal"), stopping[0].get("job"),
                          stopping[0].get("shutdown_timeout_ms")), ("15", "running", "10000"),
                         stopping)
        time.sleep(0.3)
        after = self.push_jobs([self.tiny_job("after-stop")])[0]  # not taken: stops reserving
        time.sleep(0.5)
        self.src.release()
        status, waited = self.wait_exit(w, 15)
        self.assertEqual(status, 0)
        self.assertLess(waited, 8)
        self.assert_success("stop-a")
        self.assertEqual(self.src.requests("/slow.png"), 1)
        self.assertEqual(self.redis.lrange(self.key("jobs")), [after])
        self.assertEqual(self.results("after-stop"), [])
        self.assertEqual(self.redis.keys(self.key("active:*")), [])
        self.assertNotIn(wid, self.live_workers())  # unregistered on the way out
        stats = self.stats()
        self.assertEqual(stats.get("succeeded"), 1, stats)
        self.assertNotIn("requeued_on_stop", stats)
        self.assertTrue(w.log_events("worker_unregistered"))

    def test_job_reserved_as_the_stop_comes_is_not_started(self):
        """SIGTERM while the worker waits for a job (the reservation blocks up to
        PIXQ_RESERVE_TIMEOUT_MS, which the signal does not cut short): a job that comes in that
        wait is given back at the queue's head, not started. Before, it was run, the stop
        taking as long as the job (a supervisor or systemd past its grace kills it then, and it
        counts as a crash)."""
        w = self.start_worker(PIXQ_RESERVE_TIMEOUT_MS="4000", PIXQ_LEASE_MS="15000",
                              PIXQ_HEARTBEAT_MS="5000")
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        time.sleep(0.5)  # blocked in its reservation
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        payload = self.push_jobs([self.tiny_job("late")])[0]
        status, _ = self.wait_exit(w, 15)
        self.assertEqual(status, 0)
        self.assertEqual(w.log_events("job_start"), [])
        # a line about a job carries its job_id (README, Logs), as JsonLogTest checks of others
        self.assertEqual([(e.get("job_id"), e.get("action")) for e in
                          w.log_events("job_not_started")], [("late", "given_back")])
        self.assertEqual([(e.get("signal"), e.get("job")) for e in w.log_events("worker_stopping")],
                         [("15", "none")])
        self.assertEqual(self.redis.lrange(self.key("jobs")), [payload])
        self.assertEqual(self.redis.keys(self.key("active:*")), [])
        self.assertEqual(self.results("late"), [])
        self.assertNotIn("recovered", self.stats())

    def test_postback_in_flight_at_the_deadline_is_let_finish(self):
        """A job whose postback is on its way when the deadline passes is not given back: it
        would be run and posted back again, perhaps with another outcome (a chaos review saw a
        success, then a failure). The worker waits for the answer, settles and exits."""
        w = self.start_worker(PIXQ_SHUTDOWN_TIMEOUT_MS="1000", PIXQ_STOP_GRACE_MS="60000",
                              PIXQ_POSTBACK_TIMEOUT_MS="10000", PIXQ_CONNECT_TIMEOUT_MS="1000",
                              PIXQ_WAIT_FOR_S3_MAX_MS="2000", PIXQ_WAIT_FOR_S3_INTERVAL_MS="500",
                              PIXQ_REDIS_TIMEOUT_MS="1000")
        wid = self.worker_id(w)
        self.postbacks.delay = 3.0
        self.push_jobs([self.tiny_job("stop-pb")])
        self.wait_for_postback(20, job_id="stop-pb")  # arrived; its answer comes in 3 s
        w.proc.send_signal(signal.SIGTERM)
        status, waited = self.wait_exit(w, 20)
        self.assertEqual(status, 0)
        # the wait allowed: the postback's timeouts, wait_for_s3's (its last round of HEADs may
        # end one interval after PIXQ_WAIT_FOR_S3_MAX_MS) and two Redis calls
        self.assertEqual([ev["wait_ms_max"] for ev in w.log_events("shutdown_deadline_postback")],
                         ["15500"])
        self.assertFalse(w.log_events("shutdown_deadline"))
        self.assertGreater(waited, 1.5)
        self.postbacks.delay = 0.0
        self.start_worker()
        time.sleep(2)
        self.assert_success("stop-pb")  # one result, one postback
        self.assertNotIn("requeued_on_stop", self.stats())
        self.assertNotIn(wid, self.live_workers())
        self.assert_queue_drained()

    def test_postback_begun_after_the_stop_is_let_finish(self):
        """The same for a postback that began after the stop, the job having run on meanwhile:
        the stop keeps the worker on its way out, but its delivery counts all the same."""
        timeout_s = scaled(5)  # the job, once released, is posted back well within it
        w = self.start_worker(PIXQ_SHUTDOWN_TIMEOUT_MS=str(int(timeout_s * 1000)),
                              PIXQ_STOP_GRACE_MS="60000", PIXQ_POSTBACK_TIMEOUT_MS="30000")
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([self.tiny_job("after-stop", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        w.proc.send_signal(signal.SIGTERM)
        self.wait_until(lambda: w.log_events("worker_stopping"), 20, "the stop")
        self.postbacks.delay = timeout_s + 2.0  # answered after the deadline
        self.src.release()
        status, _ = self.wait_exit(w, 60)
        self.assertEqual(status, 0)
        self.assertTrue(w.log_events("shutdown_deadline_postback"))
        self.assertFalse(w.log_events("shutdown_deadline"))
        self.postbacks.delay = 0.0
        self.assert_success("after-stop")  # one result, one postback

    def test_postback_wait_stays_within_the_stop_grace(self):
        """The wait for a postback on its way ends a second before PIXQ_STOP_GRACE_MS runs out:
        past it the supervisor kills the worker, and a job killed there is neither settled nor
        given back (a review saw it left on a dead worker's list, posted twice later). With no
        room left the job is given back at the deadline, as before."""
        sup = self.start_worker("--processes", "2", PIXQ_SHUTDOWN_TIMEOUT_MS="1000",
                                PIXQ_STOP_GRACE_MS="1000")
        self.wait_until(lambda: len(sup.log_events("worker_start")) == 2, 20, "two workers")
        self.postbacks.delay = 4.0
        payload = self.push_jobs([self.tiny_job("stop-grace")])[0]
        self.wait_for_postback(20, job_id="stop-grace")
        sup.proc.send_signal(signal.SIGTERM)
        status, _ = self.wait_exit(sup, 20)
        self.assertEqual(status, 0)
        self.assertFalse(sup.log_events("children_killed"))
        self.assertTrue(sup.log_events("shutdown_deadline"))
        self.assertEqual(self.redis.lrange(self.key("jobs")), [payload])  # given back whole
        self.assertEqual(self.redis.keys(self.key("active:*")), [])

    def test_postback_wait_ends_a_second_before_the_stop_grace(self):
        """PIXQ_STOP_GRACE_MS 3 s: a postback on its way at the deadline is waited for 2 s at
        most (the grace less 1 s, README), then the job is given back; the supervisor's kill
        comes at the grace's end. Waiting the whole grace (no margin: a lease.c mutant) passed
        the test above, where the supervisor's kill at the grace's end raced it."""
        w = self.start_worker(PIXQ_SHUTDOWN_TIMEOUT_MS="1000", PIXQ_STOP_GRACE_MS="3000")
        self.worker_id(w)
        self.postbacks.delay = 8.0
        payload = self.push_jobs([self.tiny_job("stop-grace-3")])[0]
        self.wait_for_postback(20, job_id="stop-grace-3")
        t_term = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        status, _ = self.wait_exit(w, 20)
        waited = time.monotonic() - t_term
        self.assertEqual(status, 0)
        self.assertEqual([ev["wait_ms_max"] for ev in w.log_events("shutdown_deadline_postback")],
                         ["2000"])
        # README (Logs): the job given back, by its id
        self.assertEqual([(ev["job_id"], ev["jobs_returned"])
                          for ev in w.log_events("shutdown_deadline")], [("stop-grace-3", "1")])
        self.assertGreaterEqual(waited, 2.9)
        self.assertLess(waited, scaled(5.0))
        self.assertEqual(self.redis.lrange(self.key("jobs")), [payload])  # given back whole
        self.assertEqual(self.redis.keys(self.key("active:*")), [])

    def test_sighup_is_a_graceful_stop(self):
        """A closed terminal or a "reload" habit: the job finishes as on SIGTERM."""
        self.check_graceful(signal.SIGHUP, "stop-hup")

    def test_sigquit_is_a_graceful_stop(self):
        """nginx's and unicorn's graceful stop: before, it dumped core, and the job waited for
        its lease to run again."""
        self.check_graceful(signal.SIGQUIT, "stop-quit")

    def test_sigint_is_a_graceful_stop(self):
        """A terminal's Ctrl-C."""
        self.check_graceful(signal.SIGINT, "stop-int")

    def test_a_second_signal_changes_nothing(self):
        """Ctrl-C reaches every process of the terminal's group, the supervisor's SIGTERM comes
        on top (README: a second signal changes nothing): the job in hand still finishes, within
        the one deadline, said once."""
        w, wid, _ = self.start_stalled_job("stop-twice", 10000)
        w.proc.send_signal(signal.SIGINT)
        self.wait_until(lambda: w.log_events("worker_stopping"), 5, "worker_stopping")
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        self.src.release()
        status, _ = self.wait_exit(w, 15)
        self.assertEqual(status, 0)
        self.assert_success("stop-twice")
        self.assertEqual([e.get("signal") for e in w.log_events("worker_stopping")],
                         [str(int(signal.SIGINT))])
        self.assertFalse(w.log_events("shutdown_deadline"))
        self.assertNotIn("requeued_on_stop", self.stats())
        self.assertNotIn(wid, self.live_workers())

    def check_graceful(self, sig, job_id):
        w, wid, _ = self.start_stalled_job(job_id, 10000)
        w.proc.send_signal(sig)
        time.sleep(0.3)
        self.src.release()
        status, _ = self.wait_exit(w, 15)
        self.assertEqual(status, 0)
        self.assert_success(job_id)
        self.assertEqual(self.redis.keys(self.key("active:*")), [])
        self.assertNotIn(wid, self.live_workers())

    def test_job_past_the_deadline_goes_back_to_the_head_of_the_queue(self):
        w, wid, payload = self.start_stalled_job("stop-b", 1000)
        filler = self.push_jobs([self.tiny_job("queued-behind")])[0]
        t_term = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        status, _ = self.wait_exit(w, 15)
        waited = time.monotonic() - t_term
        self.assertEqual(status, 0)
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, scaled(3.0))
        # back at the consumer end (it runs next), not finished, not posted
        self.assertEqual(self.redis.lrange(self.key("jobs")), [filler, payload])
        self.assertEqual(self.results("stop-b"), [])
        self.assertEqual(self.postbacks.postbacks, [])
        self.assertEqual(self.redis.keys(self.key("active:*")), [])
        self.assertNotIn(wid, self.live_workers())
        self.assertEqual(self.stats().get("requeued_on_stop"), 1)
        self.assertTrue(w.log_events("shutdown_deadline"))

        self.src.release()
        self.start_worker()
        self.wait_until(lambda: self.results("stop-b") and self.results("queued-behind"), 20,
                        "both jobs to finish")
        self.wait_for_postback(timeout=10, job_id="queued-behind")
        self.assert_success("stop-b")
        self.assert_success("queued-behind")
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks],
                         ["stop-b", "queued-behind"])
        self.assert_queue_drained()
        self.assertNotIn("recovered", self.stats())  # a graceful give-back is no crash


class PoisonTest(ReliabilityCase):
    """A job that crashes its worker max_recoveries (3) times goes to dead with the reason and a
    failed postback, without running again; `pixq dead retry` runs it again."""

    def test_poison_pill(self):
        self.src.add("/crash.png", tiny_png())
        self.src.stall("/crash.png")
        payload = self.push_jobs([self.tiny_job("poison-1", path="/crash.png")])[0]
        w = self.start_worker()
        for crash in (1, 2, 3):
            wid = self.worker_id(w)
            self.wait_until(lambda: self.src.requests("/crash.png") == crash, 20,
                            "run %d to fetch" % crash)
            self.assertEqual(self.active_of(wid), [payload])
            nxt = self.start_worker()
            self.kill_worker(w, signal.SIGKILL)
            w = nxt
        pb = self.wait_for_postback(timeout=20, job_id="poison-1")
        errors = pb.results.get("errors")
        self.assertEqual(errors, ["Image processing failed. the job's worker died while running it "
                                  "(killed, out of memory, or crashed), 3 times "
                                  "(PIXQ_MAX_RECOVERIES): not run again"])
        self.assertEqual(pb.results.get("failed_image_identifiers"), ["thumb"])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead entry")
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual(dead["job_id"], "poison-1")
        self.assertIn("crashed), 3 times", dead["error"])
        self.assertIsInstance(dead["failed_at"], int)
        self.assertEqual(len(self.results("poison-1")), 1)
        self.assertEqual(json.loads(self.results("poison-1")[0]), pb.json)
        self.assertEqual(self.src.requests("/crash.png"), 3)  # never ran a 4th time
        self.assert_queue_drained()
        stats = self.stats()
        self.assertEqual((stats.get("recovered"), stats.get("poisoned"), stats.get("dead")),
                         (2, 1, 1), stats)
        self.assertEqual(self.redis.hgetall(self.key("recov")), {})

        # the operator fixes the cause and retries: the job runs again and its new result is
        # posted back
        self.src.release()
        r = self.run_pixq("dead", "retry", "poison-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.postbacks.wait_for_postbacks(2, scaled(20), lambda p: p.job_id == "poison-1",
                                          check=self.check_workers)
        self.assertNotIn("errors", self.postbacks_of("poison-1")[1].results)
        self.assertEqual(self.src.requests("/crash.png"), 4)
        self.assertEqual(self.redis.llen(self.key("dead")), 0)


    def test_pill_whose_postback_a_kill_cut_short(self):
        """A worker killed while it posts a pill's failure back: the pill goes back as it is and
        the next worker posts it (wrapped in a second pill, it was buried as unparseable: no
        postback, no result, a dead entry without its job_id)."""
        env = {"PIXQ_MAX_RECOVERIES": 1}
        self.src.add("/crash.png", tiny_png())
        self.src.stall("/crash.png")
        self.push_jobs([self.tiny_job("pill-2", path="/crash.png")])
        a = self.start_worker(**env)
        self.worker_id(a)
        self.wait_until(lambda: self.src.requests("/crash.png") == 1, 20, "A to fetch")
        self.postbacks.hold_next(1)  # the pill's failure postback hangs
        b = self.start_worker(**env)
        self.worker_id(b)
        self.kill_worker(a, signal.SIGKILL)  # the job becomes a pill
        self.wait_until(lambda: self.postbacks.held, 30, "B's postback of the pill in flight")
        c = self.start_worker(**env)
        self.worker_id(c)
        self.kill_worker(b, signal.SIGKILL)
        self.postbacks.drop_held()
        self.wait_until(lambda: self.postbacks_of("pill-2"), (LEASE_MS + REAP_MS) / 1000.0 + 15,
                        "C's postback")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead entry")
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual(dead["job_id"], "pill-2")
        self.assertIn("errors", self.postbacks_of("pill-2")[0].results)
        self.assertEqual(len(self.results("pill-2")), 1)
        self.assertFalse(c.log_events("job_unparseable"))
        self.assertEqual(self.src.requests("/crash.png"), 1)  # never run again
        self.assert_queue_drained()

    def test_postback_retry_that_killed_its_worker_is_given_up(self):
        """A postback retry whose worker was killed while it posted (PIXQ_MAX_RECOVERIES 1) comes
        back a pill: the next worker posts nothing, logs postback_given_up reason=poisoned and
        counts postbacks_given_up in the stats (README: a postback that failed with no retry to
        come), once."""
        env = {"PIXQ_MAX_RECOVERIES": 1, "PIXQ_POSTBACK_RETRY_DELAYS_S": "1"}
        a = self.start_worker(**env)
        self.worker_id(a)
        self.postbacks.answer_with(500)
        self.push_jobs([self.tiny_job("pb-pill", retry_postback=True)])
        self.wait_until(lambda: self.postbacks_of("pb-pill"), 20, "A's first postback")
        self.postbacks.hold_next(1)  # the retry's POST, a second later, hangs
        self.wait_until(lambda: self.postbacks.held, 20, "A's postback retry in flight")
        b = self.start_worker(**env)
        self.worker_id(b)
        self.kill_worker(a, signal.SIGKILL)  # the retry becomes a pill
        self.postbacks.drop_held()
        posted = len(self.postbacks_of("pb-pill"))
        given_up = self.wait_until(lambda: b.log_events("postback_given_up"),
                                   (LEASE_MS + REAP_MS) / 1000.0 + 15, "B to give it up")
        self.assertEqual([(e.get("job_id"), e.get("reason")) for e in given_up],
                         [("pb-pill", "poisoned")])
        time.sleep(1.5)  # a retry's wait: none comes (and B settled the pill meanwhile)
        self.assertEqual(self.stats().get("postbacks_given_up"), 1, self.stats())
        self.assertEqual(len(self.postbacks_of("pb-pill")), posted)
        self.assert_queue_drained()

    def test_pills_nested_two_deep(self):
        """A pill in a pill in a pill, as an older reap.lua left one each time a kill cut short
        the postback of a pill: unwrapped down to the job (up to 8 deep), whose failure is
        posted back with the reason of the outermost pill, the one this worker took, and
        buried with its job_id; the job never runs. Unwrapped one level only, the rest was
        buried as unparseable, posted nowhere."""
        job = json.dumps(self.tiny_job("pill-3"))
        pill = job
        for reason in ("first", "second", "third"):
            pill = "pixq-task:" + json.dumps({"pixq_poison": pill, "error": reason},
                                             separators=(",", ":"))
        self.redis.lpush(self.key("jobs"), pill)
        w = self.start_worker()
        pb = self.wait_for_postback(timeout=20, job_id="pill-3")
        self.assertEqual(pb.results.get("errors"), ["Image processing failed. third"], pb.results)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead entry")
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual((dead["job_id"], dead["job"]), ("pill-3", job))
        self.assertEqual(w.log_events("job_unparseable"), [])
        # README (Logs): the queue, and why (the pill's reason, as the postback says it)
        self.assertEqual([(e["job_id"], e["queue"], e["error"])
                          for e in w.log_events("job_poisoned")], [("pill-3", "default", "third")])
        self.assertEqual(self.src.requests(TINY), 0)
        self.assert_queue_drained()


    def test_upload_task_without_its_members_does_not_crash_the_worker(self):
        """One of pixq's own entries (`pixq-task:`, README's Redis keys) that lacks what a worker
        writes into an upload task (no image_identifier, no blob: hand-made, or damaged) fails
        its output, as a task whose blob expired does, and the worker goes on. Before, it
        crashed every worker that took it (SIGSEGV: a NULL identifier sent to upload_done.lua),
        until reap.lua's count buried it as a poison pill."""
        w = self.start_worker()
        self.worker_id(w)
        for task in ({"job_id": "gone-1"}, {"job_id": "gone-2", "image_identifier": 5}):
            self.redis.lpush(self.key("jobs"), "pixq-task:" + json.dumps({"pixq_upload": task}))
        self.push_jobs([self.tiny_job("after-1")])
        self.wait_for_postback(timeout=20, job_id="after-1")
        failed = w.log_events("upload_failed")
        expired = "the encoded output '' expired before it could be uploaded"
        self.assertEqual([(e["job_id"], e["error"]) for e in failed],
                         [("gone-1", expired), ("gone-2", expired)])
        self.assertEqual([e["job_id"] for e in w.log_events("parked_job_lost")],
                         ["gone-1", "gone-2"])
        self.assertNotIn("recovered", self.stats())
        self.assert_queue_drained()
        w.check_alive()


class DelayedTest(ReliabilityCase):
    """`pixq submit --delay 500`: the job starts within 100 ms after its due time.

    Due time: the score delay.lua gave the job in pixq:{Q}:delayed (Redis's clock, ms: TIME at
    submission + 500), read right after `pixq submit` returns. Start: the moment the worker's
    request for the job's source reaches the source server (time.time() on this host, the same
    clock Redis reads), which the worker sends right after it logs job_start; the job_start
    line's own timestamp (ms) is checked too. Lateness must be in [0, 100] ms."""

    LATE_MS = 100

    def submit_delayed(self, job, delay_ms):
        path = self.tmp / ("%s.json" % job["job_id"])
        path.write_text(json.dumps(job))
        r = self.run_pixq("submit", str(path), "--delay", str(delay_ms))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), job["job_id"])
        flat = self.redis.zrange(self.key("delayed"), withscores=True)
        scores = {json.loads(m)["job_id"]: float(s) / 1000.0 for m, s in zip(flat[::2], flat[1::2])
                  if m.startswith("{")}
        self.assertIn(job["job_id"], scores, "not (or no longer) in delayed: %r" % flat)
        return scores[job["job_id"]]

    def lateness(self, w, job_id, path, due):
        self.wait_until(lambda: self.results(job_id), 20, "%s to finish" % job_id)
        started = self.src.request_times(path)[0]
        logged = [e for e in w.log_events("job_start") if e.get("job_id") == job_id]
        self.assertEqual(len(logged), 1)
        log_s = log_seconds(logged[0])
        late = started - due
        sys.stderr.write("\ndelayed %s: source fetched %+.1f ms after due, job_start logged "
                         "%+.1f ms after due\n" % (job_id, late * 1000, (log_s - due) * 1000))
        self.assertGreaterEqual(late, -0.002, "%s ran %.1f ms early" % (job_id, -late * 1000))
        self.assertLessEqual(late, self.LATE_MS / 1000.0,
                             "%s ran %.1f ms late" % (job_id, late * 1000))
        self.assertGreaterEqual(log_s, due - 0.002)
        self.assertLessEqual(log_s, due + self.LATE_MS / 1000.0)
        self.assert_success(job_id)

    def idle_worker(self):
        w = self.start_worker()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        time.sleep(1.5)  # settled into its blocking wait
        return w

    def test_backlog_past_the_promote_batch_is_promoted_without_waiting(self):
        """More delayed jobs due than PIXQ_PROMOTE_BATCH (1 here) move on at once, a batch each
        turn: promote.lua answers a next due time of 0, which is due now. Taken for "nothing
        due", it held each further batch a whole PIXQ_RESERVE_TIMEOUT_MS (5 s here)."""
        w = self.start_worker(PIXQ_PROMOTE_BATCH=1, PIXQ_RESERVE_TIMEOUT_MS=5000)
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        ids = ["backlog-%d" % i for i in range(3)]
        for job_id in ids:  # due long ago: all three at the first look
            self.redis.execute("ZADD", self.key("delayed"), "1",
                               json.dumps(self.tiny_job(job_id)))
        # an idle worker looks at its delayed jobs once its blocking wait is over (<= 5 s)
        self.wait_until(lambda: any(self.results(i) for i in ids), 20, "the first result")
        t0 = time.time()
        self.wait_until(lambda: all(self.results(i) for i in ids), 20, "the three results")
        self.assertLess(time.time() - t0, 3.0, "a batch waited for PIXQ_RESERVE_TIMEOUT_MS")
        for job_id in ids:
            self.assert_success(job_id)
        self.assert_queue_drained()

    def test_delay_500_runs_on_time(self):
        w = self.idle_worker()
        self.src.add("/d1.png", tiny_png())
        due = self.submit_delayed(self.tiny_job("delayed-1", path="/d1.png"), 500)
        self.lateness(w, "delayed-1", "/d1.png", due)
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 0)
        self.assert_queue_drained()

    def test_earlier_job_wakes_a_worker_sleeping_until_a_later_one(self):
        w = self.idle_worker()
        self.src.add("/late.png", tiny_png())
        self.src.add("/early.png", tiny_png())
        due_late = self.submit_delayed(self.tiny_job("delayed-late", path="/late.png"), 2500)
        time.sleep(0.7)  # the worker now plans to look again in ~1.8 s (or at its reserve timeout)
        due_early = self.submit_delayed(self.tiny_job("delayed-early", path="/early.png"), 500)
        self.assertLess(due_early, due_late)
        self.lateness(w, "delayed-early", "/early.png", due_early)
        self.lateness(w, "delayed-late", "/late.png", due_late)
        self.assert_queue_drained()


class LeaseLossTest(ReliabilityCase):
    """A worker that lost its lease while idle (reaped with nothing to give back, e.g. after a
    Redis outage longer than the lease) registers again; the job it takes next is its own and is
    posted back."""

    def test_job_taken_after_an_idle_reap_is_posted_back(self):
        w = self.start_worker()
        wid = self.worker_id(w)
        workers = self.key("workers")
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        first = self.redis.execute("ZSCORE", workers, wid)
        self.wait_until(lambda: self.redis.execute("ZSCORE", workers, wid) != first, 5,
                        "a heartbeat")
        # right after a heartbeat, what reap.lua does to an expired idle worker: it is dropped
        self.redis.execute("ZREM", workers, wid)
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([self.tiny_job("after-idle-reap", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 10, "the worker to fetch")
        self.wait_until(lambda: wid in self.live_workers(), 5, "the worker to register again")
        self.src.release()
        self.wait_until(lambda: self.results("after-idle-reap"), 10, "the result")
        self.wait_for_postback(timeout=5, job_id="after-idle-reap")
        self.assert_success("after-idle-reap")


    def test_record_found_gone_after_an_outage_reaps_nobody(self):
        """Both workers' beats fail for longer than the lease (an outage as each sees it), and
        Redis has lost A's record meanwhile. A's first beat back finds its record gone and
        registers again: as a worker that saw Redis fail (rejoin), it renews B's lease too, so
        that its own reap passes do not take B for dead before B's first beat."""
        proxy_a, a = self.start_worker_through_relay()
        proxy_b, b = self.start_worker_through_relay()
        wid_a, wid_b = self.worker_id(a), self.worker_id(b)
        self.wait_until(lambda: sorted(self.live_workers()) == sorted([wid_a, wid_b]), 20,
                        "both to register")
        proxy_a.refuse, proxy_b.refuse = wid_a.encode(), wid_b.encode()
        time.sleep(1.2 * LEASE_MS / 1000.0)  # no lease renewed: both ran out
        self.redis.execute("ZREM", self.key("workers"), wid_a)
        proxy_a.refuse = None
        self.wait_until(lambda: a.log_events("lease_lost"), 10, "A to find its record gone")
        self.wait_until(lambda: wid_a in self.live_workers(), 10, "A to register again")
        time.sleep(2 * REAP_MS / 1000.0)  # A's reap passes
        proxy_b.refuse = None
        self.assertEqual(a.log_events("worker_reaped"), [])
        self.wait_until(lambda: len(b.log_events("redis_error")) > 0, 10, "B's refused beats")
        time.sleep(HEARTBEAT_MS / 1000.0 + 0.5)  # B's first beat back
        self.assertEqual(b.log_events("lease_lost"), [])
        self.assertEqual(sorted(self.live_workers()), sorted([wid_a, wid_b]))

    def test_worker_does_not_reap_itself(self):
        """A worker whose own lease ran out (its heartbeats failed: Redis refusing writes, OOM or
        READONLY, for longer than the lease) is alive, since its reap pass runs: it leaves its
        own job alone and renews its lease at the next heartbeat. Before, a reap pass that came
        first gave its job back ("worker_reaped worker=X by=X"): the run in hand ended in
        lease_lost, and the job was fetched and run again."""
        w = self.start_worker(PIXQ_REAP_INTERVAL_MS=100)
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([self.tiny_job("own-lease", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        # its lease ran out, while another worker's holds (else no lease renewed is an outage,
        # which expired.lua lists nobody in, and the reap pass would not look at it at all)
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        self.redis.execute("ZADD", self.key("workers"), now_ms + 60000, "elsewhere")
        self.redis.execute("ZADD", self.key("workers"), "XX", "1", wid)
        self.wait_until(lambda: int(float(self.redis.execute("ZSCORE", self.key("workers"),
                                                             wid) or 0)) > 1, 5, "a heartbeat")
        self.src.release()
        self.wait_until(lambda: self.results("own-lease"), 10, "the result")
        self.wait_for_postback(timeout=5, job_id="own-lease")
        self.assert_success("own-lease")
        self.assertEqual(self.src.requests("/slow.png"), 1)
        self.assertEqual(w.log_events("worker_reaped"), [])
        stats = self.stats()
        self.assertEqual((stats.get("lease_lost"), stats.get("recovered")), (None, None), stats)


class FencingTest(ReliabilityCase):
    """A worker paused longer than its lease (SIGSTOP: a GC pause, a frozen VM) loses its job to
    another worker; when it wakes up it finds out, posts nothing, writes nothing, counts
    lease_lost and carries on."""

    def taken_over_while_paused(self, job, meanwhile=None, a_args=(), **env):
        """Worker A (started with `a_args`) fetches `job` (its src /slow.png, held) and is
        paused (SIGSTOP) past its lease; worker B takes the job over and posts it back;
        meanwhile() runs while A is still paused; A is resumed. Returns A."""
        a = self.start_worker(*a_args, **env)
        self.worker_id(a)
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([job])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "worker A to fetch")
        b = self.start_worker(**env)
        self.worker_id(b)
        a.proc.send_signal(signal.SIGSTOP)
        try:
            self.wait_until(lambda: self.src.requests("/slow.png") == 2,
                            (LEASE_MS + REAP_MS) / 1000.0 + 5, "worker B to take the job over")
            self.src.release()  # both fetches are answered; A is still frozen
            self.wait_for_postback(timeout=10, job_id=job["job_id"])
            if meanwhile is not None:
                meanwhile()
        finally:
            a.proc.send_signal(signal.SIGCONT)
        return a

    def test_paused_worker_loses_its_job_and_finds_out(self):
        a = self.taken_over_while_paused(
            self.tiny_job("fenced", path="/slow.png"),
            lambda: self.wait_until(lambda: self.results("fenced"), 5, "B's result"))
        wid_a = self.worker_id(a)
        self.wait_until(lambda: self.stats().get("lease_lost"), 10, "A to find out")
        self.wait_until(lambda: wid_a in self.live_workers(), 5, "A to register again")
        time.sleep(0.5)
        self.assert_success("fenced")  # one result, one postback
        # each step that met the loss says so: no upload, no postback, no settlement (besides
        # the heartbeat's line without a job)
        self.assertEqual([e["step"] for e in a.log_events("lease_lost")
                          if e.get("job_id") == "fenced"], ["upload", "before_postback", "finish"])
        self.assertEqual(self.stats().get("succeeded"), 1, self.stats())
        self.assert_queue_drained()
        # both carry on
        self.push_jobs([self.tiny_job("after-%d" % i) for i in range(4)])
        for i in range(4):
            self.wait_for_postback(timeout=10, job_id="after-%d" % i)
        a.check_alive()

    def test_paused_past_the_result_ttl_is_not_taken_for_lost_data(self):
        """As above, with PIXQ_RESULT_TTL_S shorter than the pause: the job's hash (begin.lua's)
        is gone by the time A wakes up, which the scripts read as Redis having lost the job. A's
        lease, overdue, makes it ask Redis: the payload is off its list and the data token the
        same, so the job was taken from it, not lost: A neither posts nor stores its run (before,
        it posted a second time and counted the job forgotten)."""
        a = self.taken_over_while_paused(
            self.tiny_job("ttl-stale", path="/slow.png"),
            lambda: self.wait_until(lambda: not self.redis.exists(self.key("job:ttl-stale")),
                                    10, "the job's hash to expire"),
            PIXQ_RESULT_TTL_S="2")
        self.wait_until(lambda: a.log_events("lease_lost"), 10, "A to find out")
        time.sleep(1.5)
        self.assertEqual(len(self.postbacks_of("ttl-stale")), 1)
        self.assertEqual(a.log_events("job_forgotten"), [])
        stats = self.stats()
        self.assertNotIn("forgotten", stats)
        self.assertEqual(stats.get("succeeded"), 1, stats)
        a.check_alive()

    def test_paused_worker_does_not_write_over_a_later_jobs_object(self):
        """A is paused past its lease with a job in hand; B runs the job, then a later job
        writes the same key (a user's avatar, updated twice). A, woken up, finds its lease
        overdue, asks Redis before it uploads, and does not put its older output back over the
        later one (before, only its postback was held back)."""
        key = "out/avatar.png"
        first = self.tiny_job("avatar-1", path="/slow.png")
        first["functions"][0]["save"]["s3_destination"]["key"] = key
        newer = []

        def later_job():
            self.push_jobs([self.make_job(self.src.url(TINY), key, params={"width": 16},
                                          job_id="avatar-2")])
            self.wait_for_postback(timeout=10, job_id="avatar-2")
            status, _, body = self.s3.get_object(self.buckets[0], key)
            self.assertEqual(status, 200)
            newer.append(body)
        a = self.taken_over_while_paused(first, later_job)
        self.wait_until(lambda: a.log_events("lease_lost"), 10, "A to find out")
        time.sleep(1.0)
        self.assertEqual(self.s3.get_object(self.buckets[0], key)[2], newer[0])
        self.assertIn({"step": "upload", "action": "not_uploaded", "job_id": "avatar-1"},
                      [{k: e.get(k) for k in ("step", "action", "job_id")}
                       for e in a.log_events("lease_lost")])
        self.assertEqual(len(self.postbacks_of("avatar-1")), 1)
        a.check_alive()

    def test_paused_worker_does_not_move_its_original_over_a_later_one(self):
        """As above for pre_process move_original, which uploads on a path of its own: A,
        woken up, asks before that upload too (a review found it put its older source back
        over the later job's)."""
        key = "orig/avatar.png"
        other = (CONFIG.data / "images" / "grey-160x120.png").read_bytes()
        self.src.add("/other.png", other)

        def moving(job_id, path):
            job = self.tiny_job(job_id, path=path)
            job["pre_process"] = {"move_original": {"s3_destination": {
                "bucket": self.buckets[0], "key": key}}}
            return job

        def later_job():
            self.push_jobs([moving("mo-2", "/other.png")])
            self.wait_for_postback(timeout=10, job_id="mo-2")
            self.assertEqual(self.s3.get_object(self.buckets[0], key)[2], other)
        a = self.taken_over_while_paused(moving("mo-1", "/slow.png"), later_job)
        self.wait_until(lambda: a.log_events("lease_lost"), 10, "A to find out")
        time.sleep(1.5)
        self.assertEqual(self.s3.get_object(self.buckets[0], key)[2], other)

    def test_retry_of_a_lost_job_is_not_scheduled(self):
        """A's fetch is answered 503 (a transient failure, run again) while A is paused past its
        lease and B runs the job: A, resumed, finds the job gone from its active list when it
        schedules the retry (requeue.lua), says so (lease_lost step=retry, as a run that finds
        it so at its finish says lease_lost step=finish: it was job_retry_failed error="lease
        lost", a line README did not name) and schedules nothing; it does not strand the job
        (task_stranded) to run it again, nor count a retry."""
        self.src.answer_with("/slow.png", 503)  # the first fetch, A's
        port = harness.reserved_port(self)  # A's metrics
        a = self.taken_over_while_paused(
            self.tiny_job("retry-fenced", path="/slow.png"),
            lambda: self.wait_until(lambda: self.results("retry-fenced"), 5, "B's result"),
            a_args=("--metrics-addr", "127.0.0.1:%d" % port))
        failed = self.wait_until(lambda: [e for e in a.log_events("lease_lost")
                                          if e.get("step") == "retry"], 10, "A to find out")
        # once: asked whether the job was still its own (LPOS), or told by requeue.lua
        self.assertEqual([(e["level"], e["job_id"], e["step"]) for e in failed],
                         [("warn", "retry-fenced", "retry")])
        time.sleep(0.5)
        self.assertEqual(a.log_events("task_stranded"), [])
        self.assertEqual(a.log_events("job_retry"), [])
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 0)
        self.assertIsNone(self.stats().get("retried"), self.stats())
        self.assert_success("retry-fenced")  # B's: one result, one postback
        self.assertEqual(self.src.requests("/slow.png"), 2)
        # A's run ended so: pixq_jobs_total counts it lease_lost, not retried (it was not counted)
        _, _, body = harness.http_request("http://127.0.0.1:%d/metrics" % port)
        runs = dict(re.findall(r'^pixq_jobs_total\{outcome="(\w+)"\} (\d+)$', body.decode(), re.M))
        self.assertEqual((runs.get("lease_lost"), runs.get("retried")), ("1", "0"), runs)
        a.check_alive()

    def test_failed_postback_of_a_lost_job_is_not_counted_retried(self):
        """A's postback is held at the receiver while A is paused past its lease; B takes the
        job over and posts it back; A, resumed, sees its POST fail (retry_postback) and its
        settlement finds the lease lost: no retry of A's is scheduled (finish.lua writes
        nothing), so A counts no pixq_postbacks_total{outcome="retried"} (it did: the outcome was
        counted before the settlement), nor given_up (the run B took over posts back)."""
        port = harness.reserved_port(self)  # held for the test: the worker binds it
        a = self.start_worker("--metrics-addr", "127.0.0.1:%d" % port)
        self.worker_id(a)
        self.postbacks.hold_next(1)
        self.push_jobs([self.tiny_job("pb-fenced", retry_postback=True)])
        self.wait_until(lambda: self.postbacks.held, 20, "A's postback")
        b = self.start_worker()
        self.worker_id(b)
        a.proc.send_signal(signal.SIGSTOP)
        try:
            self.wait_for_postback(timeout=(LEASE_MS + REAP_MS) / 1000.0 + 10,
                                   job_id="pb-fenced")  # B's
        finally:
            self.postbacks.drop_held()  # A's POST: closed without an answer
            a.proc.send_signal(signal.SIGCONT)
        lost = self.wait_until(lambda: [e for e in a.log_events("lease_lost")
                                        if e.get("step") == "finish"], 10, "A to find out")
        self.assertEqual(lost[0].get("job_id"), "pb-fenced", lost)
        # README (Logs): that line ends A's run; B's run writes the job's job_done
        self.assertEqual([e for e in a.log_events() if e["event"] in ("job_done", "job_failed")],
                         [])

        def outcomes():
            _, _, body = harness.http_request("http://127.0.0.1:%d/metrics" % port)
            return dict(re.findall(r'^pixq_postbacks_total\{outcome="(\w+)"\} (\d+)$',
                                   body.decode(), re.M))
        self.assertEqual(outcomes(), {"delivered": "0", "retried": "0", "given_up": "0",
                                      "refused": "0"})
        time.sleep(1.5)  # the first wait of PIXQ_POSTBACK_RETRY_DELAYS_S: no retry comes
        self.assertEqual(len(self.postbacks_of("pb-fenced")), 1)
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 0)
        a.check_alive()

    def test_job_reserved_before_its_worker_was_reaped_is_fenced(self):
        """finish.lua reserves A's next job n; A's next call is held up on the way while its
        heartbeats fail; B reaps A and runs n; a later job writes n's key; A's heartbeat then
        finds its record gone and registers again (its lease fresh once more) before the held
        call comes back, and A starts n from memory. Counted from before the reservation, the
        record lost since makes A ask before it uploads: it does not write over the later
        object (a review: counted from the start of the job, it never asked)."""
        key = "out/folded.png"
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        proxy, a = self.start_worker_through_relay(PIXQ_REDIS_TIMEOUT_MS="30000",
                                                   PIXQ_RESERVE_TIMEOUT_MS="200")
        wid_a = self.worker_id(a)
        self.wait_until(lambda: wid_a in self.live_workers(), 20, "A to register")
        self.push_jobs([self.tiny_job("p1", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch p1")
        n = self.tiny_job("n")
        n["functions"][0]["save"]["s3_destination"]["key"] = key
        self.push_jobs([n])
        proxy.hold_on(script_sha1("promote").encode())
        time.sleep(0.6)  # promote.lua is due again by the time p1 ends
        self.src.release()
        self.wait_until(lambda: proxy.held.is_set(), 20, "A's promote.lua to be held")
        proxy.refuse = self.key("workers").encode()  # A's heartbeats fail
        b = self.start_worker()
        self.worker_id(b)
        self.wait_for_postback(timeout=20, job_id="n")
        later = self.make_job(self.src.url(TINY), key, params={"width": 16}, job_id="later")
        self.push_jobs([later])
        self.wait_for_postback(timeout=10, job_id="later")
        newer = self.s3.get_object(self.buckets[0], key)[2]
        proxy.refuse = None
        self.wait_until(lambda: a.log_events("worker_reregistered") or
                        [e for e in a.log_events("lease_lost") if "queue" in e], 20,
                        "A's heartbeat to find its record gone")
        self.wait_until(lambda: wid_a in self.live_workers(), 10, "A to register again")
        time.sleep(0.3)
        proxy.release()
        self.wait_until(lambda: [e for e in a.log_events("job_start") if e["job_id"] == "n"],
                        10, "A to start n")
        time.sleep(3)
        self.assertEqual(self.s3.get_object(self.buckets[0], key)[2], newer)
        self.assertIn(("n", "upload"), [(e.get("job_id"), e.get("step"))
                                        for e in a.log_events("lease_lost")])
        self.assertEqual(len(self.postbacks_of("n")), 1)


class StaleConnectionTest(ReliabilityCase):
    """A worker paused past its lease while Redis restarted (with its data) wakes up with
    connections the old server closed. Asked on one of them, posting.lua could not answer and
    the worker posted at least once: a second postback of a job another worker had run and
    posted (chaos: seed 771669 under load). A connection left unused is looked at before a
    command goes on it, and one found closed is replaced first."""

    s3_server = "stub"
    redis_appendonly = True

    def worker_fetching(self, job_id):
        """A worker (and its id) that took job `job_id` and is held in its download."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        a = self.start_worker()
        wid = self.worker_id(a)
        self.wait_until(lambda: wid in self.live_workers(), 20, "A to register")
        self.push_jobs([self.tiny_job(job_id, path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch")
        return a, wid

    def test_worker_paused_across_a_redis_restart_does_not_post(self):
        def restart():
            self.redis.close()
            self.redis_server.restart(down_seconds=0.3)  # SIGTERM: the AOF brings it all back
        a = self.paused_in_wait_for_s3("paused-restart", restart)
        self.assert_posted_once_by_b(a, "paused-restart")
        self.assertTrue(a.log_events("redis_reconnect"))

    def paused_in_wait_for_s3(self, job_id, meanwhile, a=None):
        """Worker A (or `a`) uploads job_id's output and is paused (SIGSTOP) while its
        wait_for_s3 HEAD is held (6 s); worker B takes the job over and posts it back;
        meanwhile() runs; A is resumed and, once the HEAD is answered, finishes its run.
        Returns A."""
        job = self.tiny_job(job_id)
        job["wait_for_s3"] = True
        self.s3.stall(self.buckets[0], 6, methods=("HEAD",), count=1)  # A's wait_for_s3 HEAD
        a = a or self.start_worker()
        wid_a = self.worker_id(a)
        self.wait_until(lambda: wid_a in self.live_workers(), 20, "A to register")
        self.push_jobs([job])
        self.wait_until(lambda: self.s3.stalled() == 1, 20, "A's upload and HEAD")
        a.proc.send_signal(signal.SIGSTOP)  # uploaded; nothing left to ask Redis but posting.lua
        try:
            b = self.start_worker()
            self.worker_id(b)
            self.wait_for_postback(timeout=(LEASE_MS + REAP_MS) / 1000.0 + 20, job_id=job_id)
            self.wait_until(lambda: self.results(job_id), 10, "B's result")
            meanwhile()
        finally:
            a.proc.send_signal(signal.SIGCONT)
        self.wait_until(lambda: [e for e in a.log_events("lease_lost") if e.get("job_id")], 20,
                        "A to find out")
        time.sleep(1)
        return a

    def assert_posted_once_by_b(self, a, job_id):
        self.assertEqual(len(self.postbacks_of(job_id)), 1)  # B's only
        steps = [e.get("step") for e in a.log_events("lease_lost") if e.get("job_id")]
        self.assertEqual(steps[0], "before_postback", steps)  # asked, and told before posting
        self.assert_success(job_id)

    def test_posting_check_cut_off_is_asked_again(self):
        """posting.lua's call cut off on its way (its connection closed under it: a close the
        idle check cannot see before it comes, as from a server that went away without a word):
        posting.lua only reads, so it is asked once more on a new connection, and the run whose
        job was taken over posts nothing. Before, a worker that could not ask posted (at least
        once): a second postback."""
        proxy, a = self.start_worker_through_relay()
        a = self.paused_in_wait_for_s3(
            "cut-posting", lambda: proxy.cut_before(script_sha1("posting").encode()), a)
        self.assertTrue(proxy.tripped.is_set(), "A did not ask posting.lua")
        self.assert_posted_once_by_b(a, "cut-posting")


    def test_stray_left_by_a_restart_is_run_when_no_command_failed(self):
        """A payload on a live worker's active list that its run did not put there (a
        reservation whose answer was lost, a finish.lua the restart's AOF lost; here the test
        pushes it) is looked for after Redis restarted during a job, although no command of the
        worker failed: its connection was found closed and replaced before the next one went
        (rq_breaks). Counting only failed commands, the worker never looked, and the stray stayed
        there for as long as the worker lived."""
        a, wid = self.worker_fetching("in-hand")
        self.redis.lpush(self.key("active:" + wid), json.dumps(self.tiny_job("stray")))
        self.redis.close()
        self.redis_server.restart(down_seconds=0.3)  # SIGTERM: the AOF brings it all back
        time.sleep(0.5)  # A's connection unused for longer than the idle check's 250 ms
        self.src.release()
        self.wait_for_postback(timeout=20, job_id="in-hand")
        self.wait_for_postback(timeout=20, job_id="stray")
        for job_id in ("in-hand", "stray"):  # stored by finish.lua, after the postback
            self.wait_until(lambda: self.results(job_id), 10, "%s's result" % job_id)
        self.assertTrue(a.log_events("job_stranded"))
        self.assertTrue(a.log_events("redis_reconnect"))
        lease_steps = ("heartbeat", "expired", "reap", "stats")  # the lease thread's own
        self.assertFalse([e for e in a.log_events("redis_error")
                          if e.get("step") not in lease_steps])  # none of the job's path failed
        self.assertFalse(a.log_events("limiter_unavailable"))
        self.assert_success("in-hand")
        self.assert_success("stray")

    def test_connection_closed_while_idle_is_replaced_and_says_why(self):
        """README (Never losing a job): a connection Redis closed while it was left unused (here
        CLIENT KILL during the job's download; an idle `timeout` of Redis's or a proxy's alike)
        is replaced before the next command goes on it, logged `redis_reconnect
        reason=closed_while_idle`, and no command of the job's path fails on it."""
        a, wid = self.worker_fetching("killed-idle")
        killed = self.redis.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.assertGreaterEqual(killed, 1)
        time.sleep(0.5)  # unused for longer than the idle check's 250 ms
        self.src.release()
        self.wait_for_postback(timeout=20, job_id="killed-idle")
        self.wait_until(lambda: self.results("killed-idle"), 10, "the result")
        reasons = [e["reason"] for e in a.log_events("redis_reconnect")]
        self.assertIn("closed_while_idle", reasons)
        self.assertEqual(set(reasons), {"closed_while_idle"}, reasons)
        # README (Logs): the worker logs it at info (the command line at debug)
        self.assertEqual({e["level"] for e in a.log_events("redis_reconnect")}, {"info"})
        lease_steps = ("heartbeat", "expired", "reap", "stats")  # the lease thread's own
        self.assertFalse([e for e in a.log_events("redis_error")
                          if e.get("step") not in lease_steps])  # none of the job's path failed
        self.assert_success("killed-idle")
        self.assert_queue_drained()


    def test_bytes_nobody_asked_for_replace_the_connection(self):
        """Bytes wait on a connection left unused that no command asked for (an answer to a
        call given up on, a proxy out of step): sent on it, the next command would read them as
        its answer, and every answer after would be one behind. The connection is replaced
        before a command goes on it. Here the relay sends them during the job's download."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        proxy, a = self.start_worker_through_relay()
        wid = self.worker_id(a)
        self.wait_until(lambda: wid in self.live_workers(), 20, "A to register")
        proxy.mark(self.key("job:stray-bytes").encode())  # begin.lua's call: the job's connection
        self.push_jobs([self.tiny_job("stray-bytes", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch")
        proxy.inject(b":1\r\n")
        time.sleep(0.5)  # unused for longer than the idle check's 250 ms
        self.src.release()
        self.wait_for_postback(timeout=20, job_id="stray-bytes")
        self.wait_until(lambda: self.results("stray-bytes"), 10, "the result")
        self.assertEqual([e["reason"] for e in a.log_events("redis_reconnect")],
                         ["unexpected_bytes"])
        self.assertFalse(a.log_events("redis_error"))
        self.assert_success("stray-bytes")
        self.assert_queue_drained()


    def test_bytes_nobody_asked_for_on_the_socket_replace_the_connection(self):
        """The same when the bytes come after the last answer was read, so that they wait on
        the socket, not in hiredis's buffer: here during wait_for_s3's HEAD, held 1.5 s, after
        the upload's Redis calls. The idle check's peek finds them before posting.lua's call."""
        job = self.tiny_job("socket-bytes")
        job["wait_for_s3"] = True
        self.s3.stall(self.buckets[0], 1.5, methods=("HEAD",), count=1)
        proxy, a = self.start_worker_through_relay()
        wid = self.worker_id(a)
        self.wait_until(lambda: wid in self.live_workers(), 20, "A to register")
        proxy.mark(self.key("job:socket-bytes").encode())
        self.push_jobs([job])
        self.wait_until(lambda: self.s3.stalled() == 1, 20, "the upload and the HEAD")
        proxy.inject(b":1\r\n")
        self.wait_for_postback(timeout=20, job_id="socket-bytes")
        self.wait_until(lambda: self.results("socket-bytes"), 10, "the result")
        self.assertEqual([e["reason"] for e in a.log_events("redis_reconnect")],
                         ["unexpected_bytes"])
        self.assertFalse(a.log_events("redis_error"))
        self.assert_success("socket-bytes")
        self.assert_queue_drained()


class StalePostbackTest(ReliabilityCase):
    """A run whose lease was lost posts nothing, and what it posted before it found out does not
    stop the live run's postback: `posted` holds a digest of the postback delivered, and a run
    skips only the very same postback (a review saw a stale run's failure posted and marked
    posted, and the live run's success then skipped as already sent)."""

    s3_server = "stub"

    def test_worker_cut_off_from_its_heartbeats_does_not_post(self):
        """A's heartbeats stop reaching Redis while the rest of it still does: it is reaped and
        never hears of it from a heartbeat; asked right before posting, Redis says the job is no
        longer on its list."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        proxy, a = self.start_worker_through_relay()
        wid_a = self.worker_id(a)
        self.wait_until(lambda: wid_a in self.live_workers(), 20, "A to register")
        self.push_jobs([self.tiny_job("cut-off", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "A to fetch")
        proxy.refuse = self.key("workers").encode()  # only the lease thread's calls name it
        b = self.start_worker()
        self.worker_id(b)
        self.wait_until(lambda: self.src.requests("/slow.png") == 2,
                        (LEASE_MS + REAP_MS) / 1000.0 + 10, "B to take the job over")
        self.src.release()
        self.wait_until(lambda: [e for e in a.log_events("lease_lost")
                                 if e.get("step") == "before_postback"], 20,
                        "A to find out before posting")
        self.wait_for_postback(timeout=20, job_id="cut-off")
        self.wait_until(lambda: self.results("cut-off"), 10, "B's result")
        time.sleep(1)
        proxy.refuse = None
        self.assert_success("cut-off")  # one postback: B's
        # nor does it upload: its lease overdue, it asks Redis before the upload too, and finds
        # the job gone under the same data (README: lease_lost step=upload action=not_uploaded)
        self.assertIn(("upload", "not_uploaded"),
                      [(e.get("step"), e.get("action")) for e in a.log_events("lease_lost")])

    def test_stale_failure_does_not_hide_the_live_success(self):
        """A posts a failure (the source answers 404) and is frozen before it settles; B runs the
        job again and succeeds. Both post (at least once), the success last: before, A's
        settlement marked the job posted and B's success was never sent."""
        self.src.add("/late.png", tiny_png())
        self.src.answer_with("/late.png", 404)  # A's fetch only
        self.postbacks.delay = 2.0  # A's postback is received at once, answered 2 s later
        a = self.start_worker()
        self.worker_id(a)
        self.push_jobs([self.tiny_job("stale", path="/late.png")])
        self.wait_until(lambda: self.postbacks_of("stale"), 20, "A's failure postback")
        a.proc.send_signal(signal.SIGSTOP)
        self.postbacks.delay = 0.0
        self.s3.stall(self.buckets[0], 6, methods=("PUT",))  # B posts after A settled
        try:
            b = self.start_worker()
            self.worker_id(b)
            self.wait_until(lambda: self.src.requests("/late.png") == 2,
                            (LEASE_MS + REAP_MS) / 1000.0 + 10, "B to run the job again")
            time.sleep(0.5)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        self.wait_until(lambda: [e for e in a.log_events("lease_lost")
                                 if e.get("step") == "finish"], 10, "A to settle, too late")
        self.wait_until(lambda: len(self.postbacks_of("stale")) == 2, 20, "B's postback")
        time.sleep(0.5)
        pbs = self.postbacks_of("stale")
        self.assertEqual(len(pbs), 2, [pb.results for pb in pbs])
        self.assertIn("errors", pbs[0].results)
        self.assertNotIn("errors", pbs[1].results)
        self.assertEqual(pbs[1].results["images"][0]["meta"], {"width": 32, "height": 32})
        self.assertFalse(b.log_events("postback_skipped"))
        # B's finish.lua stores the result after its postback (A's settled too late: no result)
        self.wait_until(lambda: self.results("stale"), 10, "B's result")
        self.assertEqual(json.loads(self.results("stale")[0])["results"], pbs[1].results)

    def test_job_pushed_again_is_posted_back_unless_unchanged(self):
        """The same job_id pushed again: with other work it is posted back (its outcome differs);
        byte for byte the same, it is taken for a rerun of a delivered postback, and skipped;
        with other postback headers (or v, or content_type_json) it is posted."""
        w = self.start_worker()
        self.src.add("/other.png", tiny_png())
        job = self.tiny_job("again")
        self.push_jobs([job])
        self.wait_for_postback(timeout=20, job_id="again")
        other = self.tiny_job("again", path="/other.png")
        other["functions"][0]["params"] = {"width": 16}
        self.push_jobs([other])
        self.wait_until(lambda: len(self.postbacks_of("again")) == 2, 20, "the second postback")
        self.assertEqual(self.postbacks_of("again")[1].results["images"][0]["meta"],
                         {"width": 16, "height": 16})
        self.push_jobs([other])
        self.wait_until(lambda: self.src.requests("/other.png") == 2, 20, "the third run")
        self.wait_until(lambda: w.log_events("postback_skipped"), 10, "the skip")
        time.sleep(0.5)
        self.assertEqual(len(self.postbacks_of("again")), 2)
        # the same work, posted with other headers: another postback
        other["postback_headers"] = {"X-Run": "4"}
        self.push_jobs([other])
        self.wait_until(lambda: len(self.postbacks_of("again")) == 3, 20, "the third postback")
        self.assertEqual(self.postbacks_of("again")[2].headers.get("x-run"), "4")


class MassReapTest(ReliabilityCase):
    """A node pool lost at once: 300 workers expired, each holding a job, and one survivor. It
    reaps them all in one pass, batch after batch (it reaped 16 a PIXQ_REAP_INTERVAL_MS: 18 s
    for these at 1 s, 95 s at the default 5 s)."""

    def test_hundreds_of_expired_workers_are_reaped_in_one_pass(self):
        n = 300
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        args = []
        for i in range(n):
            args += [now_ms - 1000, "dead-%04d" % i]
            self.redis.rpush(self.key("active:dead-%04d" % i),
                             json.dumps({"src": "x", "job_id": "lost-%d" % i}))
        self.redis.execute("ZADD", self.key("workers"), *args)
        w = self.start_worker(PIXQ_REAP_INTERVAL_MS=2000)
        wid = self.worker_id(w)
        t0 = time.monotonic()
        self.wait_until(lambda: self.live_workers() == [wid], 60, "every dead worker reaped")
        took = time.monotonic() - t0
        self.assertLess(took, scaled(5), "reaped in %.1f s" % took)  # 36 s a batch a pass
        # each line is logged once its worker's reap.lua has answered (after its ZREM)
        self.wait_until(lambda: len(w.log_events("worker_reaped")) >= n, 10,
                        "%d worker_reaped lines" % n)
        self.assertEqual(len(w.log_events("worker_reaped")), n)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == n, 30, "every job settled")


class ReapRefusedTest(ReliabilityCase):
    """A Redis that answers reads but refuses writes (NOREPLICAS here; MISCONF after a failed
    save, OOM, READONLY after a failover alike) lists the same expired workers again and again:
    one batch a pass then, and the error's back-off (a review of the batch loop measured 98,921
    script calls in 10 s from one idle worker, against 104 before the loop)."""

    def test_no_second_batch_while_reaps_fail(self):
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        # a live worker elsewhere, whose lease holds throughout: without it no lease would be
        # renewed while writes are refused, and expired.lua would list nobody (an outage)
        args = [now_ms + 60000, "elsewhere"]
        for i in range(40):  # expire 2 s from now, after the worker's first pass
            args += [now_ms + 2000, "ghost-%02d" % i]
        self.redis.execute("ZADD", self.key("workers"), *args)
        w = self.start_worker()
        wid = self.worker_id(w)
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")
        try:
            time.sleep(3)  # the ghosts expire; reaping them fails
            t0 = time.monotonic()
            self.redis.execute("CONFIG", "RESETSTAT")
            time.sleep(4)
            info = self.redis.execute("INFO", "commandstats")
            took = time.monotonic() - t0
        finally:
            self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        calls = int(re.search(r"cmdstat_evalsha:calls=(\d+)", info).group(1))
        sys.stderr.write("\nreaps refused: %d script calls in 4 s\n" % calls)
        # a pass a second at most (reap interval 500 ms, back-off 1 s): a batch of 16 reaps
        # and expired.lua, and the heartbeats; more than the heartbeats and expired.lua alone
        self.assertLess(calls, 200, "%d script calls in 4 s" % calls)
        # a second apart, not a reap interval: a pass (expired.lua and a batch of 16 reaps), a
        # heartbeat and a call of the idle main thread a second at most (76 in all measured)
        self.assertLessEqual(calls, (int(took) + 1) * (1 + 16 + 2),
                             "%d script calls in %.1f s: no back-off" % (calls, took))
        self.assertGreater(calls, 30, "%d script calls in 4 s: no reap was tried" % calls)
        self.wait_until(lambda: sorted(self.live_workers()) == sorted([wid, "elsewhere"]), 10,
                        "the ghosts reaped after")
        w.check_alive()


class CountRefusedTest(ReliabilityCase):
    """Uploaded bytes whose count Redis did not take (the call cut off after a heartbeat that
    went through) are kept and counted at a later heartbeat, not dropped."""

    def test_uploaded_bytes_counted_after_a_failed_count(self):
        proxy, w = self.start_worker_through_relay()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        proxy.refuse = b"uploaded_bytes"  # only the count names it: heartbeats go through
        self.push_jobs([self.tiny_job("counted-later")])
        self.wait_until(lambda: self.results("counted-later"), 20, "the result")
        self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                 if e.get("step") == "stats"], 20, "a count cut off")
        size = len(self.s3_object("out/counted-later.png"))
        self.assertIsNone(self.stats().get("uploaded_bytes"), self.stats())
        proxy.refuse = None
        self.wait_until(lambda: self.stats().get("uploaded_bytes") == size, 20,
                        "a later heartbeat to count %d bytes" % size)
        self.wait_for_postback(timeout=10, job_id="counted-later")
        self.assert_success("counted-later")


    def test_uploaded_bytes_left_alone_in_stats_of_another_type(self):
        """README: the queue's counts holding another type (pixq:{Q}:stats a string) are left
        alone, the job settling without its counts. The bytes it uploaded are too: dropped,
        not kept and tried again at every heartbeat, each a redis_error line, the heartbeats
        coming at the error's back-off (1 s) for as long as the key stayed."""
        w = self.start_worker()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        self.redis.set(self.key("stats"), "theirs")
        self.push_jobs([self.tiny_job("stats-theirs")])
        self.wait_until(lambda: self.results("stats-theirs"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="stats-theirs")
        time.sleep(3 * HEARTBEAT_MS / 1000.0)
        self.assertEqual([e for e in w.log_events("redis_error") if e.get("step") == "stats"],
                         [])
        self.assertEqual(self.redis.get(self.key("stats")), "theirs")
        self.redis.delete(self.key("stats"))
        time.sleep(2 * HEARTBEAT_MS / 1000.0)
        self.assertIsNone(self.stats().get("uploaded_bytes"), self.stats())
        w.check_alive()


class FrozenWaitTest(ReliabilityCase):
    """A worker frozen while it waits for a job (BLMOVE) is reaped only after its wait is over in
    Redis: a worker's wait ends while its lease surely holds. Else the wait, still open after the
    reap, would move the next job onto the list of a worker that may never wake up."""

    def test_job_pushed_after_the_reap_goes_to_a_live_worker(self):
        a = self.start_worker(PIXQ_RESERVE_TIMEOUT_MS=30000)  # asks to wait for 30 s
        wid_a = self.worker_id(a)
        self.wait_until(lambda: wid_a in self.live_workers(), 20, "A to register")
        time.sleep(0.3)  # waiting in BLMOVE
        a.proc.send_signal(signal.SIGSTOP)
        try:
            b = self.start_worker()  # waits behind A in Redis's queue of waiting clients
            self.worker_id(b)
            self.wait_until(lambda: wid_a not in self.live_workers(),
                            (LEASE_MS + REAP_MS) / 1000.0 + 5, "B to reap A")
            self.push_jobs([self.tiny_job("after-reap")])
            self.wait_until(lambda: self.results("after-reap"), 10, "B to run the job")
            self.assertEqual(self.active_of(wid_a), [])
        finally:
            a.proc.send_signal(signal.SIGCONT)
        self.wait_for_postback(timeout=10, job_id="after-reap")
        self.assert_success("after-reap")
        self.assertEqual(b.log_events("orphans_returned"), [])


class OrphanTest(ReliabilityCase):
    """A reaped worker's list gets a second look: a reservation it sent before its reap can
    reach Redis late (held up on the way) and move a job onto its list after the reap; should the
    worker then be gone for good, nobody would look at that list again. The reaper looks again
    (pixq:{Q}:reaped) once such a call is surely over, and gives the job back."""

    def test_job_that_lands_on_a_dead_worker_s_list_after_its_reap_is_given_back(self):
        a = self.start_worker()
        wid_a = self.worker_id(a)
        self.wait_until(lambda: wid_a in self.live_workers(), 20, "A to register")
        a.proc.send_signal(signal.SIGSTOP)
        # a dead worker whose list stays empty: its second look gives back nothing, said nowhere
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        self.redis.execute("ZADD", self.key("workers"), now_ms - 1000, "empty-ghost")
        try:
            # B's second look: PIXQ_RESERVE_TIMEOUT_MS + PIXQ_REDIS_TIMEOUT_MS + 1 s after a reap
            b = self.start_worker(PIXQ_RESERVE_TIMEOUT_MS=1000, PIXQ_REDIS_TIMEOUT_MS=1000)
            wid_b = self.worker_id(b)
            self.wait_until(lambda: wid_a not in self.live_workers(),
                            (LEASE_MS + REAP_MS) / 1000.0 + 5, "B to reap A")
            note = self.redis.execute("ZSCORE", self.key("reaped"), wid_a)
            self.assertIsNotNone(note)
            # due PIXQ_RESERVE_TIMEOUT_MS + PIXQ_REDIS_TIMEOUT_MS + 1 s after the reap (README),
            # which was less than a second ago
            ahead = float(note) - self.now_ms()
            self.assertTrue(2000 < ahead <= 3000, ahead)
            # what A's late LMOVE does in Redis
            payload = json.dumps(self.tiny_job("orphan"))
            self.redis.lpush(self.key("active:" + wid_a), payload)
        finally:
            self.kill_worker(a)  # frozen to the end
        self.wait_until(lambda: self.results("orphan"), 3 + 10, "the job on the dead worker's list")
        self.wait_for_postback(timeout=10, job_id="orphan")
        self.assert_success("orphan")
        # logged once reap.lua has answered, while the job it gave back may already run
        self.wait_until(lambda: b.log_events("orphans_returned"), 10, "orphans_returned")
        self.assertIsNone(self.redis.execute("ZSCORE", self.key("reaped"), wid_a))
        self.wait_until(lambda: self.redis.execute("ZSCORE", self.key("reaped"), "empty-ghost")
                        is None, 10, "the second look at the empty ghost")
        # a heartbeat that lands after that look was sent once its line (if any) was written
        beat = self.redis.execute("ZSCORE", self.key("workers"), wid_b)
        self.wait_until(lambda: self.redis.execute("ZSCORE", self.key("workers"), wid_b) != beat,
                        10, "B's next heartbeat")
        returned = b.log_events("orphans_returned")
        self.assertEqual([(e["worker"], e["jobs_returned"]) for e in returned], [(wid_a, "1")])
        # both reaped idle, and said so, by B
        self.assertEqual(sorted((e["worker"], e["jobs_returned"], e["by"])
                                for e in b.log_events("worker_reaped")),
                         sorted([(wid_a, "0", wid_b), ("empty-ghost", "0", wid_b)]))
        self.assertEqual([e["by"] for e in returned], [wid_b])
        self.assertEqual(self.stats().get("orphaned"), 1, self.stats())  # it never ran: no crash
        self.assertIsNone(self.stats().get("recovered"), self.stats())
        self.assert_queue_drained()


class LeaseOverdueTest(ReliabilityCase):
    """A worker whose heartbeats do not reach Redis (its lease thread cut off, the rest of it
    not) takes no new job once its lease is overdue: the fleet may reap it at any moment, and a
    job it took then could land on a list nobody looks at. When the heartbeats get through again
    it carries on."""

    def test_no_new_job_while_the_lease_is_overdue(self):
        proxy, w = self.start_worker_through_relay()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([self.tiny_job("before", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        # only the lease thread names the workers key (heartbeat.lua, expired.lua, reap.lua)
        proxy.refuse = self.key("workers").encode()
        self.push_jobs([self.tiny_job("during-%d" % i) for i in range(3)])
        time.sleep((LEASE_MS - HEARTBEAT_MS) / 1000.0 + 1.0)  # overdue: no beat since the cut
        self.src.release()  # the job in hand ends; its settlement must not take the next one
        self.wait_until(lambda: self.results("before"), 20, "the job in hand")
        time.sleep(2.0)
        self.assertEqual(self.active_of(wid), [])
        self.assertEqual(self.redis.llen(self.key("jobs")), 3)
        self.assertEqual(self.results("during-0"), [])
        self.assertEqual(len(w.log_events("lease_overdue")), 1)
        proxy.refuse = None
        for i in range(3):
            self.wait_until(lambda: self.results("during-%d" % i), 20, "the result")
            self.wait_for_postback(timeout=10, job_id="during-%d" % i)
            self.assert_success("during-%d" % i)
        self.assertTrue(w.log_events("lease_renewed"))
        self.assert_queue_drained()
        w.check_alive()


    def test_no_new_job_from_a_heartbeat_before_the_lease_runs_out(self):
        """README: once the lease is a heartbeat short of running out the worker takes no new
        job. The job in hand ends 2.5 s before its lease would (3 s heartbeats): the next one
        waits. Taking jobs until the lease itself ran out passed the test above, whose job
        ends after it."""
        proxy, w = self.start_worker_through_relay(PIXQ_LEASE_MS="9000",
                                                   PIXQ_HEARTBEAT_MS="3000")
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        self.push_jobs([self.tiny_job("before", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        proxy.refuse = self.key("workers").encode()  # heartbeats cut from here
        self.wait_until(lambda: proxy.refusals > 0, 20, "a heartbeat refused")
        runs_out = float(self.redis.execute("ZSCORE", self.key("workers"), wid))
        during = self.push_jobs([self.tiny_job("during")])[0]
        self.wait_until(lambda: self.now_ms() >= runs_out - 2500, 20, "a heartbeat short")
        self.src.release()
        self.wait_until(lambda: self.results("before"), 20, "the job in hand")
        time.sleep(2.0)
        self.assertEqual(self.redis.lrange(self.key("jobs")), [during])
        self.assertEqual(self.results("during"), [])
        self.assertEqual(len(w.log_events("lease_overdue")), 1)
        proxy.refuse = None
        self.wait_until(lambda: self.results("during"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="during")
        self.assert_success("during")
        w.check_alive()

    def test_a_worker_whose_beats_fail_does_not_reap_itself(self):
        """Only the worker's heartbeats fail (its reaps get through) while it runs a job, until
        its lease has run out in Redis, another worker's holding: its own reap pass lists it as
        expired and leaves it alone (it is alive and holds its job); the fleet may still reap
        it. Reaping itself gave its job back to be run a second time."""
        proxy, w = self.start_worker_through_relay()
        wid = self.worker_id(w)
        self.wait_until(lambda: wid in self.live_workers(), 20, "the worker to register")
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        self.redis.execute("ZADD", self.key("workers"), now_ms + 60000, "elsewhere")
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        payload = self.push_jobs([self.tiny_job("self", path="/slow.png")])[0]
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        proxy.refuse = b"$4\r\nbeat\r\n"  # heartbeat.lua's mode: expired.lua goes through
        try:
            self.wait_until(lambda: proxy.refusals >= 2, 20, "two heartbeats refused")
            deadline = self.redis.execute("ZSCORE", self.key("workers"), wid)
            self.wait_until(lambda: self.now_ms() > float(deadline) + 1000, 20,
                            "the lease to run out")
            time.sleep(1.5)  # reap passes, every 500 ms
            self.assertIn(wid, self.live_workers())
            self.assertEqual(self.active_of(wid), [payload])
            self.assertEqual(w.log_events("worker_reaped"), [])
        finally:
            proxy.refuse = None
        self.src.release()
        self.wait_until(lambda: self.results("self"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="self")
        self.assert_success("self")
        self.assertEqual(self.src.requests("/slow.png"), 1)
        w.check_alive()


class HungJobTest(ReliabilityCase):
    """A job that used more than PIXQ_JOB_HANG_S of the worker's CPU has hung it somewhere no
    deadline reaches (a library parsing a crafted file; EXIF blocks have their own bound, see
    MetadataLimitTest in test_hostile_images.py): the worker gives it back
    counted as a crash and exits; after PIXQ_MAX_RECOVERIES such runs it is posted back as a
    failure. Waiting (for a source, S3, Redis) costs no CPU and never counts."""

    def busy_job(self, job_id):
        """Three chained Gaussian blurs of sigma 30 on a 3-MP photo: seconds of CPU."""
        self.src.add("/geo.jpg", (CONFIG.data / "images" / "geo-1536x2048.jpg").read_bytes())
        fn = {"name": "blur", "params": {"sigma": 30},
              "save": {"image_identifier": "out",
                       "s3_destination": {"bucket": self.buckets[0], "key": job_id + ".jpg"}}}
        for _ in range(2):
            fn = {"name": "blur", "params": {"sigma": 30}, "functions": [fn]}
        return {"job_id": job_id, "src": self.src.url("/geo.jpg"),
                "postback_url": self.postbacks.url("/pb"), "functions": [fn]}

    def test_job_over_its_cpu_is_given_up_and_posted_back(self):
        env = {"PIXQ_JOB_HANG_S": 1, "PIXQ_MAGICK_TIME_S": 600, "PIXQ_MAX_RECOVERIES": 1}
        a = self.start_worker(**env)
        wid_a = self.worker_id(a)
        self.push_jobs([self.busy_job("hangs")])
        status, _ = self.wait_exit(a, 60)
        self.assertEqual(status, 3)
        hung = a.log_events("job_hung")
        self.assertEqual(len(hung), 1, hung)
        self.assertEqual(hung[0].get("job_id"), "hangs")  # every line about a job names it
        self.assertGreater(int(hung[0]["cpu_ms"]), 1000, hung)  # past PIXQ_JOB_HANG_S, not before
        self.assertEqual(hung[0]["jobs_returned"], "1")
        self.assertGreaterEqual(int(hung[0]["cpu_ms"]), 1000)
        self.assertEqual(self.active_of(wid_a), [])
        self.assertNotIn(wid_a, self.live_workers())
        self.start_worker(**env)  # takes the poison pill: no second download
        pb = self.wait_for_postback(timeout=20, job_id="hangs")
        self.assertIn("the job used more CPU than PIXQ_JOB_HANG_S allows and was given up (its "
                      "runs lost: 1 time, PIXQ_MAX_RECOVERIES)", " ".join(pb.results["errors"]))
        self.assertEqual(self.src.requests("/geo.jpg"), 1)
        self.assertEqual(self.stats().get("poisoned"), 1, self.stats())

    def test_bytes_uploaded_before_the_hang_are_counted(self):
        """The worker exits on a hung job without a heartbeat in between: it counts the bytes
        it uploaded first (here the next heartbeat would come a minute later)."""
        a = self.start_worker(PIXQ_JOB_HANG_S=1, PIXQ_MAGICK_TIME_S=600, PIXQ_MAX_RECOVERIES=1,
                              PIXQ_HEARTBEAT_MS=60000, PIXQ_LEASE_MS=180000)
        self.push_jobs([self.tiny_job("before-hang")])
        self.wait_until(lambda: self.results("before-hang"), 30, "the first job's result")
        size = len(self.s3_object("out/before-hang.png"))
        self.assertIsNone(self.stats().get("uploaded_bytes"), self.stats())
        self.push_jobs([self.busy_job("hangs")])
        status, _ = self.wait_exit(a, 60)
        self.assertEqual(status, 3)
        self.assertEqual(self.stats().get("uploaded_bytes"), size, self.stats())

    def test_disk_cache_of_a_dead_worker_is_removed(self):
        """With ImageMagick's memory and map limits at their least, the blurs' pixels are cached
        on disk, in the worker's own directory under TMPDIR; the hung worker's exit leaves the
        files there, and the next worker to start on the host removes them."""
        tmp = self.tmp / "tmpdir"
        tmp.mkdir()
        env = {"PIXQ_JOB_HANG_S": 1, "PIXQ_MAGICK_TIME_S": 600, "PIXQ_MAX_RECOVERIES": 1,
               "PIXQ_MAGICK_MEMORY_MB": 16, "PIXQ_MAGICK_MAP_MB": 16, "TMPDIR": str(tmp),
               "MAGICK_TEMPORARY_PATH": ""}
        a = self.start_worker(**env)
        dir_a = Path(self.wait_until(lambda: a.log_events("magick_tmpdir"), 20,
                                     "the worker's start")[0]["dir"])
        self.assertEqual(dir_a.parent, tmp)
        self.assertTrue(dir_a.name.startswith("pixq-magick-"), dir_a)
        self.push_jobs([self.busy_job("hangs")])
        status, _ = self.wait_exit(a, 60)
        self.assertEqual(status, 3)
        left = [p.name for p in dir_a.iterdir()]
        self.assertTrue(any(n.startswith("magick-") for n in left), left)
        b = self.start_worker(**env)
        started = self.wait_until(lambda: b.log_events("magick_tmpdir"), 20, "the next start")
        self.assertEqual(started[0]["swept"], "1")
        self.assertFalse(dir_a.exists())
        dir_b = Path(started[0]["dir"])
        self.assertTrue(dir_b.is_dir())
        self.programs.remove(b)
        self.assertEqual(b.terminate(), (0, False))
        self.assertFalse(dir_b.exists())

    def disk_cached_job(self, job_id):
        """A 3-MP photo turned whole: 25 MB of pixels, more than 16 MB of memory and map."""
        self.src.add("/geo.jpg", (CONFIG.data / "images" / "geo-1536x2048.jpg").read_bytes())
        return {"job_id": job_id, "src": self.src.url("/geo.jpg"),
                "postback_url": self.postbacks.url("/pb"),
                "functions": [{"name": "rotate", "params": {"amount": 90},
                               "save": {"image_identifier": "out",
                                        "s3_destination": {"bucket": self.buckets[0],
                                                           "key": job_id + ".jpg"}}}]}

    def test_pixels_cached_on_disk(self):
        """An image too large for ImageMagick's memory and map limits is cached in the worker's
        directory. ImageMagick 6.9.13's pixel cache (Debian's deb12u16 of 6.9.11) asks the
        security policy before it opens a cache file: without a rule for the directory, such
        a job failed with "unable to open file .../magick-...". """
        tmp = self.tmp / "tmpdir"
        tmp.mkdir()
        w = self.start_worker(PIXQ_MAGICK_MEMORY_MB=16, PIXQ_MAGICK_MAP_MB=16, TMPDIR=str(tmp),
                              MAGICK_TEMPORARY_PATH="")
        self.push_jobs([self.disk_cached_job("on-disk")])
        pb = self.wait_for_postback(timeout=60, job_id="on-disk")
        self.assertNotIn("errors", pb.results, pb.results)
        self.assertEqual(pb.results["images"][0]["meta"], {"width": 2048, "height": 1536})
        self.assertEqual(w.log_events("magick_tmpdir_unusable"), [])
        w.check_alive()

    def test_directory_the_policy_cannot_name_is_said_at_start(self):
        """A temporary directory with a wildcard in its path cannot be named in ImageMagick's
        policy: the start says so, the worker runs, and a job cached on disk fails with the
        reason in its postback."""
        tmp = self.tmp / "tmp[1]"
        tmp.mkdir()
        w = self.start_worker(PIXQ_MAGICK_MEMORY_MB=16, PIXQ_MAGICK_MAP_MB=16, TMPDIR=str(tmp),
                              MAGICK_TEMPORARY_PATH="")
        said = self.wait_until(lambda: w.log_events("magick_tmpdir_unusable"), 20, "the start")
        self.assertIn(str(tmp), said[0]["dir"])
        self.assertIn("PIXQ_MAGICK_MEMORY_MB", said[0]["error"])
        self.push_jobs([self.disk_cached_job("no-disk"), self.tiny_job("small")])
        pb = self.wait_for_postback(timeout=60, job_id="no-disk")
        self.assertIn("magick-", " ".join(pb.results.get("errors", [])), pb.results)
        self.wait_until(lambda: self.results("small"), 20, "the result")
        self.wait_for_postback(timeout=20, job_id="small")
        self.assert_success("small")
        w.check_alive()

    def test_waiting_is_not_hanging(self):
        # a source that takes 3 s to come, with a limit of 1 s of CPU: the job runs
        self.src.add("/late.png", tiny_png())
        self.src.stall("/late.png")
        w = self.start_worker(PIXQ_JOB_HANG_S=1, PIXQ_LOW_SPEED_BYTES_PER_S=0)
        self.push_jobs([self.tiny_job("waits", path="/late.png")])
        self.wait_until(lambda: self.src.requests("/late.png") == 1, 20, "the fetch")
        time.sleep(3)
        self.src.release()
        self.wait_until(lambda: self.results("waits"), 20, "the result")
        self.wait_for_postback(timeout=10, job_id="waits")
        self.assert_success("waits")
        self.assertEqual(w.log_events("job_hung"), [])
        w.check_alive()


class PostbackRetryLostReplyTest(ReliabilityCase):
    """A failed postback's retry is scheduled in the step that settles the job: when Redis runs
    finish.lua and its answer is lost, the retry still comes (it was dropped: the worker, seeing
    the job no longer on its list, took it for someone else's)."""

    def test_retry_survives_a_lost_finish_answer(self):
        proxy, w = self.start_worker_through_relay(PIXQ_POSTBACK_RETRY_DELAYS_S="1")
        self.push_jobs([self.tiny_job("warm")])  # the scripts are loaded before the cut
        self.wait_until(lambda: self.results("warm"), 20, "the first job")
        self.postbacks.answer_with(500)
        proxy.cut_on(self.key("result:pbr-1").encode())  # in finish.lua's keys only
        self.push_jobs([self.tiny_job("pbr-1", retry_postback=True)])
        self.assertTrue(proxy.tripped.wait(20), "finish.lua was not answered")
        self.postbacks.wait_for_postbacks(2, scaled(20), lambda p: p.job_id == "pbr-1")
        self.wait_until(lambda: not self.redis.zrange(self.key("delayed")), 10,
                        "the retry to leave delayed")
        self.assertEqual(len(self.postbacks_of("pbr-1")), 2)
        # the call sent again finds its own settlement (the job's run is the one it names): not
        # a lease lost, and the job counted once
        self.assertEqual(w.log_events("lease_lost"), [])
        stats = self.stats()
        self.assertEqual((stats.get("succeeded"), stats.get("lease_lost")), (2, None), stats)
        self.assert_queue_drained()
        # finish.lua asked again finds its own settlement (the run number it was sent with is
        # the job's: run 1), not a lease lost
        self.assertNotIn("lease_lost", self.stats())
        self.assertEqual(w.log_events("lease_lost"), [])


class JobHashExpiryTest(ReliabilityCase):
    """The job hash expires even when begin.lua, which sets its expiry, never reached Redis:
    finish.lua's `posted` alone left a hash that stayed forever."""

    def test_hash_expires_without_begin(self):
        proxy, _ = self.start_worker_through_relay()
        proxy.cut_before(self.key("job:leak-1").encode())  # begin.lua never reaches Redis
        self.push_jobs([self.tiny_job("leak-1")])
        self.wait_for_postback(timeout=20, job_id="leak-1")
        self.wait_until(lambda: self.results("leak-1"), 10, "the result")
        job_hash = self.key("job:leak-1")
        self.assertIn("posted", self.redis.hgetall(job_hash))
        self.assertNotIn("runs", self.redis.hgetall(job_hash))
        self.assertGreater(self.redis.ttl(job_hash), 0)
        self.assertLessEqual(self.redis.ttl(job_hash), self.redis.ttl(self.key("result:leak-1")))

    def test_lost_finish_answer_without_begin_settles_once(self):
        """begin.lua never reached Redis, and the answer of finish.lua, which settled the failed
        job (no postback_url: nothing marked posted), was lost: the worker's second call finds
        the job off its list and no job hash. That is its own settlement, not a job Redis lost:
        it writes nothing again. Before, the second call took it for a forgotten job and settled
        it once more: two dead letters for one failure, `failed` counted twice."""
        proxy, w = self.start_worker_through_relay()
        self.push_jobs([self.tiny_job("warm")])  # the scripts are loaded before the cuts
        self.wait_until(lambda: self.results("warm"), 20, "the first job")
        proxy.cut_before(self.key("job:once-1").encode())  # begin.lua never reaches Redis
        proxy.cut_on(self.key("result:once-1").encode())  # finish.lua runs, its answer is lost
        job = self.tiny_job("once-1", path="/missing.png")  # 404: fails for good
        del job["postback_url"]
        self.push_jobs([job])
        self.wait_until(lambda: self.results("once-1"), 20, "the result")
        self.assertTrue(proxy.tripped.wait(scaled(10)), "finish.lua was not answered")
        self.wait_until(lambda: w.log_events("job_failed") or w.log_events("lease_lost")
                        or w.log_events("job_forgotten"), 20, "the worker to settle")
        time.sleep(0.5)
        dead = [json.loads(d) for d in self.redis.lrange(self.key("dead"))]
        self.assertEqual([d["job_id"] for d in dead], ["once-1"])
        self.assertEqual(len(self.results("once-1")), 1)
        self.assertEqual(self.stats().get("failed"), 1, self.stats())
        self.assertNotIn("forgotten", self.stats())
        self.assertEqual(w.log_events("job_forgotten"), [])
        # and it finds its own settlement: the job failed, no lease was lost (before: the
        # second call counted `lease_lost` and the worker logged one)
        self.assertNotIn("lease_lost", self.stats())
        self.assertEqual(w.log_events("lease_lost"), [])
        self.assertEqual([e["job_id"] for e in w.log_events("job_failed")], ["once-1"])
        self.assert_queue_drained()


class RecoveryCountTest(ReliabilityCase):
    """A job recovered from a crash and then retried (requeue.lua rewrites it) leaves no
    recovery count behind: pixq:{Q}:recov, which never expires, kept one per such job."""

    def test_count_cleared_when_a_recovered_job_is_retried(self):
        self.src.add("/r.png", tiny_png())
        self.src.stall("/r.png")
        payload = self.push_jobs([self.tiny_job("recov-1", path="/r.png")])[0]
        first = self.start_worker()
        self.wait_until(lambda: self.src.requests("/r.png") == 1, 20, "the fetch")
        self.start_worker()
        self.kill_worker(first, signal.SIGKILL)
        self.src.answer_with("/r.png", 503)  # the recovered run fails transiently: retried
        self.src.release()
        self.wait_for_postback(timeout=40, job_id="recov-1")
        self.wait_until(lambda: self.results("recov-1"), 10, "the result")
        self.assertEqual(self.stats().get("recovered"), 1)
        self.assertEqual(self.stats().get("retried"), 1)
        self.assertNotIn(hashlib.sha1(payload.encode()).hexdigest(),
                         self.redis.hgetall(self.key("recov")))
        self.assert_success("recov-1")


class PostbackDeliveryTest(ReliabilityCase):
    """Postbacks are at least once: a worker killed while its postback is in flight (the receiver
    never answered it) must not stop the re-run from posting back."""

    def test_postback_in_flight_when_the_worker_dies_is_sent_again(self):
        a = self.start_worker()
        self.worker_id(a)
        self.postbacks.hold_next(1)
        self.push_jobs([self.tiny_job("pb-crash")])
        self.wait_until(lambda: self.postbacks.held, 20, "the postback to be in flight")
        b = self.start_worker()
        self.worker_id(b)
        self.kill_worker(a, signal.SIGKILL)
        self.postbacks.drop_held()  # never answered: not delivered
        self.wait_until(lambda: self.results("pb-crash"), (LEASE_MS + REAP_MS) / 1000.0 + 10,
                        "the re-run to finish")
        self.wait_for_postback(timeout=5, job_id="pb-crash")
        self.assert_success("pb-crash")


class DeadTrimTest(ReliabilityCase):
    """pixq:{Q}:dead keeps the newest PIXQ_DEAD_MAX entries no older than PIXQ_DEAD_MAX_AGE_S
    (README: the dead letters), as a worker passes them to finish.lua: a count, and an age in
    ms."""

    def fail_job(self, job_id):
        self.push_jobs([self.tiny_job(job_id, path="/missing.png")])  # 404: fails for good
        self.wait_until(lambda: self.results(job_id), 20, "the result of " + job_id)

    def dead_ids(self):
        return [json.loads(d)["job_id"] for d in self.redis.lrange(self.key("dead"))]

    def test_dead_list_kept_to_its_count_and_age(self):
        now_ms = int(self.redis.execute("TIME")[0]) * 1000

        def entry(job_id, age_s):
            return json.dumps({"job": "{}", "job_id": job_id, "error": "e", "attempts": 1,
                               "failed_at": now_ms - age_s * 1000})

        # the reap pass at start-up drops an old entry (dead_trim.lua); the next is 10 minutes
        # away, so that finish.lua alone trims what is pushed once it went
        self.redis.execute("RPUSH", self.key("dead"), entry("canary", 120))
        self.start_worker(PIXQ_DEAD_MAX=3, PIXQ_DEAD_MAX_AGE_S=60, PIXQ_REAP_INTERVAL_MS=600000)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 0, 10, "the first reap pass")
        # older entries at the tail, as LPUSH leaves them: 30 s and 2 min old
        self.redis.execute("RPUSH", self.key("dead"), entry("recent", 30), entry("old", 120))
        self.fail_job("dead-1")
        self.assertEqual(self.dead_ids(), ["dead-1", "recent"])  # "old" is past 60 s
        self.fail_job("dead-2")
        self.fail_job("dead-3")
        self.assertEqual(self.dead_ids(), ["dead-3", "dead-2", "dead-1"])  # 3 at most

    def test_old_entries_go_with_no_job_dying(self):
        """The age holds in a queue where nothing dies: every reap pass drops from the tail the
        entries past PIXQ_DEAD_MAX_AGE_S (dead_trim.lua), not only finish.lua as a job dies."""
        now_ms = int(self.redis.execute("TIME")[0]) * 1000

        def entry(job_id, age_s):
            return json.dumps({"job": "{}", "job_id": job_id, "error": "e", "attempts": 1,
                               "failed_at": now_ms - age_s * 1000})

        self.redis.execute("RPUSH", self.key("dead"), entry("young-1", 5), entry("young-2", 30),
                           entry("old-2", 90), entry("old-1", 400 * 86400))
        w = self.start_worker(PIXQ_DEAD_MAX_AGE_S=60)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 2,
                        2 * REAP_MS / 1000.0 + 5, "a reap pass to drop the old entries")
        time.sleep(2 * REAP_MS / 1000.0)  # more passes leave the young alone
        self.assertEqual(self.dead_ids(), ["young-1", "young-2"])
        self.assertEqual([(e["queue"], e["entries"]) for e in w.log_events("dead_trimmed")],
                         [(self.queue, "2")])
        self.assertNotIn("dead", self.stats())  # no job died

    def test_a_pill_buried_by_a_reap_keeps_the_count(self):
        """A poison pill whose worker died as it posted the pill's failure, the fifth such
        death, is buried by the reap that finds it (reap.lua), and the dead list is trimmed to
        the worker's PIXQ_DEAD_MAX there too, as after a dead letter of finish.lua."""
        pill = "pixq-task:" + json.dumps({"pixq_poison": json.dumps(self.tiny_job("pill-d")),
                                          "error": "E"}, separators=(",", ":"))
        self.redis.execute("HSET", self.key("recov"), hashlib.sha1(pill.encode()).hexdigest(), 4)
        self.redis.rpush(self.key("active:ghost"), pill)
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        self.redis.execute("ZADD", self.key("workers"), now_ms - 1000, "ghost")
        self.redis.execute("RPUSH", self.key("dead"), "older-1", "older-2")  # at the limit
        self.start_worker(PIXQ_DEAD_MAX=2)
        self.wait_until(lambda: self.redis.llen(self.key("active:ghost")) == 0, 20, "the reap")
        dead = self.redis.lrange(self.key("dead"))
        self.assertEqual((json.loads(dead[0])["job_id"], dead[1:]), ("pill-d", ["older-1"]))
        self.assertEqual(self.postbacks_of("pill-d"), [])


class UnsettledTest(ReliabilityCase):
    """Redis refuses writes (too few replicas, as a failed save or a replica's READONLY would;
    a full Redis takes the settlement) while a job's postback is on its way: the outcome cannot
    be recorded. The worker keeps it and records it once Redis takes writes again,
    without running the job, or posting it back, a second time (a chaos review saw a finished
    job run and posted again every few minutes while Redis refused writes)."""

    def run_then_refuse_writes(self, job_id, **env):
        """A worker runs job `job_id`; Redis refuses writes while its postback is answered (the
        settlement comes after it). Returns the worker."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="2", **env)
        self.worker_id(w)
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.push_jobs([self.tiny_job(job_id)])
        self.wait_for_postback(20, job_id=job_id)
        self.refuse_writes()
        return w

    def refuse_writes(self):
        """Every write refused (NOREPLICAS), the settlement's first included."""
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")

    def allow_writes(self):
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")

    def writes_back_after_retries(self, w, retries):
        """Waits until worker `w`'s settlement failed and was tried `retries` times again, then
        lets Redis take writes again (whatever happened)."""
        try:
            self.wait_until(lambda: w.log_events("job_unsettled"), 20, "the settlement to fail")
            self.wait_until(lambda: len(w.log_events("settle_resumed")) >= retries, 20,
                            "the kept outcome to be tried again")
        finally:
            self.allow_writes()

    def test_outcome_recorded_later_not_posted_again(self):
        w = self.run_then_refuse_writes("unsettled")
        self.writes_back_after_retries(w, 2)
        self.postbacks.delay = 0.0
        self.wait_until(lambda: self.results("unsettled"), 20, "the outcome to be recorded")
        time.sleep(1)
        self.assert_success("unsettled")  # one result, one postback
        self.assertEqual(self.src.requests(TINY), 1)  # not downloaded (run) again
        self.assertFalse(w.log_events("job_rerun"))
        self.assertEqual(self.stats().get("succeeded"), 1)
        self.assert_queue_drained()
        # README (Logs): job_unsettled ends the run in place of job_done, with its times; the
        # outcome recorded later says settle_resumed, not job_done
        unsettled = w.log_events("job_unsettled")
        self.assertEqual([e["job_id"] for e in unsettled], ["unsettled"])
        for field in ("ms", "fetch_ms", "process_ms", "upload_ms", "s3_wait_ms", "postback_ms"):
            self.assertGreaterEqual(float(unsettled[0][field]), 0, field)
        self.assertEqual(w.log_events("job_done"), [])
        # PIXQ_SETTLE_ATTEMPTS (2) tries of finish.lua, no fewer, before the outcome was kept;
        # a wait after the first only: the last try is followed by none (it said retry_ms, and
        # waited up to PIXQ_REDIS_RETRY_MAX_MS, for a try that never came)
        events = w.log_events()
        kept = [e["event"] for e in events].index("job_unsettled")
        self.assertEqual([(e["attempt"], "retry_ms" in e) for e in events[:kept]
                          if e["event"] == "redis_error" and e.get("step") == "finish"],
                         [("1", True), ("2", False)])
        # README (Logs): a warning about a job names it, and the queue whose outcome it is
        self.assertEqual({(e.get("job_id"), e.get("queue")) for e in events
                          if e["event"] == "redis_error" and e.get("step") == "finish"},
                         {("unsettled", "default")})

    def test_outcome_recorded_later_in_a_lower_queue(self):
        """The same for a job of the worker's second queue: the kept outcome is matched with
        the payload back from that queue's active list, and recorded there."""
        w = self.run_then_refuse_writes("unsettled-2", PIXQ_QUEUE="urgent,default")
        self.writes_back_after_retries(w, 2)
        self.postbacks.delay = 0.0
        self.wait_until(lambda: self.results("unsettled-2"), 20, "the outcome to be recorded")
        self.assert_success("unsettled-2")  # one result, one postback
        self.assertEqual(self.src.requests(TINY), 1)  # not run again
        self.assertFalse(w.log_events("job_rerun"))
        self.assertEqual(self.stats().get("succeeded"), 1)
        self.assert_queue_drained()

    def test_stop_while_an_outcome_is_kept_says_so(self):
        """A worker stopped while it keeps an outcome Redis refused says it drops it (the job
        runs again from its active list); before, it went without a word."""
        w = self.run_then_refuse_writes("kept-at-stop")
        try:
            self.wait_until(lambda: w.log_events("job_unsettled"), 20, "the settlement to fail")
            w.terminate()
        finally:
            self.allow_writes()
        dropped = w.log_events("unsettled_dropped")
        self.assertEqual([(e["job_id"], e["reason"], e["action"]) for e in dropped],
                         [("kept-at-stop", "stopping", "run_again_from_active_list")])
        self.assertEqual(self.redis.execute("LLEN", self.key("active:" + self.worker_id(w))), 1)

    def test_stop_while_redis_refuses_waits_for_the_settlement(self):
        """A worker stopped while Redis refuses its settlement (here, before it gave up on it)
        waits for Redis to take writes again and settles the job, once, before it exits. Before,
        a stop ended every wait at once: the attempts ran out in a few milliseconds and the job,
        done and posted back, ran again from the active list (chaos seed 21)."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="20")
        wid = self.worker_id(w)
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.push_jobs([self.tiny_job("refused-at-stop")])
        self.wait_for_postback(20, job_id="refused-at-stop")
        self.refuse_writes()
        try:
            self.wait_until(lambda: any(e.get("step") == "finish"
                                        for e in w.log_events("redis_error")),
                            20, "finish.lua to be refused")
            w.proc.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # a few of the attempts' waits
            self.assertIsNone(w.proc.poll(), "the worker left without its settlement")
        finally:
            self.allow_writes()
        status, killed = w.terminate()
        self.assertEqual((status, killed), (0, False))
        self.postbacks.delay = 0.0
        self.assertFalse(w.log_events("job_unsettled"))
        self.assertFalse(w.log_events("unsettled_dropped"))
        self.wait_until(lambda: self.results("refused-at-stop"), 10, "the outcome to be recorded")
        self.assert_success("refused-at-stop")  # one result, one postback
        self.assertEqual(self.redis.execute("LLEN", self.key("active:" + wid)), 0)
        self.assertEqual(self.stats().get("succeeded"), 1)

    def test_stop_while_redis_is_a_replica_waits_for_the_settlement(self):
        """README names READONLY among the refusals that pass (a failover under way: the server
        is a replica until it is promoted): a worker stopped while its settlement meets one
        waits for it as for NOREPLICAS, and settles the job once before it exits. Redis is made a
        replica of a port nothing listens on (it keeps its data), then promoted back."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="20")
        wid = self.worker_id(w)
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.push_jobs([self.tiny_job("replica-at-stop")])
        self.wait_for_postback(20, job_id="replica-at-stop")
        self.redis.execute("REPLICAOF", "127.0.0.1", "1")
        try:
            errors = self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                              if e.get("step") == "finish"],
                                     20, "finish.lua to be refused")
            self.assertTrue(errors[0].get("error", "").startswith("redis: READONLY "), errors)
            w.proc.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # a few of the attempts' waits
            self.assertIsNone(w.proc.poll(), "the worker left without its settlement")
        finally:
            self.redis.execute("REPLICAOF", "NO", "ONE")
        status, killed = w.terminate()
        self.assertEqual((status, killed), (0, False))
        self.postbacks.delay = 0.0
        self.assertFalse(w.log_events("job_unsettled"))
        self.wait_until(lambda: self.results("replica-at-stop"), 10, "the outcome to be recorded")
        self.assert_success("replica-at-stop")  # one result, one postback
        self.assertEqual(self.redis.execute("LLEN", self.key("active:" + wid)), 0)

    def test_stop_past_the_deadline_while_redis_refuses_exits_1(self):
        """Redis refuses writes through a stop's deadline (PIXQ_STOP_GRACE_MS leaves no room to
        wait for the postback on its way): the worker cannot settle the job nor give it back,
        and exits with status 1 (README), the job staying on its active list; its
        shutdown_deadline line says no job was returned (-1)."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="20", PIXQ_SHUTDOWN_TIMEOUT_MS="1000",
                              PIXQ_STOP_GRACE_MS="1000")
        wid = self.worker_id(w)
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        payload = self.push_jobs([self.tiny_job("refused-past-deadline")])[0]
        self.wait_for_postback(20, job_id="refused-past-deadline")
        self.refuse_writes()
        try:
            self.wait_until(lambda: any(e.get("step") == "finish"
                                        for e in w.log_events("redis_error")),
                            20, "finish.lua to be refused")
            w.proc.send_signal(signal.SIGTERM)
            status, _ = self.wait_exit(w, 15)
        finally:
            self.allow_writes()
        self.assertEqual(status, 1)
        self.assertEqual([e.get("jobs_returned") for e in w.log_events("shutdown_deadline")],
                         ["-1"])
        self.assertEqual(self.redis.lrange(self.key("active:" + wid)), [payload])
        self.assertEqual(self.results("refused-past-deadline"), [])

    def test_stop_tries_the_settlement_every_second(self):
        """While stopping, the tries of a refused settlement come at least every second
        (README: PIXQ_REDIS_RETRY_MAX_MS), not at the back-off's 3 to 6 s, so that a refusal
        that passes costs the stop little."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="20", PIXQ_REDIS_RETRY_MIN_MS="6000",
                              PIXQ_REDIS_RETRY_MAX_MS="6000")
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.push_jobs([self.tiny_job("stop-cadence")])
        self.wait_for_postback(20, job_id="stop-cadence")
        self.refuse_writes()

        def refused():
            return [e for e in w.log_events("redis_error") if e.get("step") == "finish"]

        try:
            self.wait_until(refused, 20, "finish.lua to be refused")
            w.proc.send_signal(signal.SIGTERM)  # ends the first wait, which began before it
            self.wait_until(lambda: len(refused()) >= 4, 20, "three tries after the stop")
        finally:
            self.allow_writes()
        stamps = [datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                  for e in refused()[1:4]]
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
        self.assertTrue(all(g < 1.5 for g in gaps), gaps)  # 1 s each; 3 to 6 s before
        self.assertEqual(w.terminate(), (0, False))
        self.wait_until(lambda: self.results("stop-cadence"), 10, "the outcome to be recorded")
        self.assert_success("stop-cadence")

    def test_refused_settlement_of_a_task_names_its_job(self):
        """A task's settlement (a postback retry that failed again, scheduling the next) that
        Redis refuses (a replica's READONLY) is logged with the task's job, as a job's is, and
        so are its kept settlement's tries (settle_resumed): they named none (`job_id=`). The
        settlement is made once Redis takes writes, and the retry it schedules comes."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="2", PIXQ_POSTBACK_RETRY_DELAYS_S="1,1")
        self.worker_id(w)
        self.postbacks.answer_with(500, 500)
        self.push_jobs([self.tiny_job("task-named", retry_postback=True)])
        self.wait_for_postback(20, job_id="task-named")
        self.postbacks.delay = 2.0  # the retry's: recorded at once, answered 500 2 s later
        self.wait_until(lambda: len(self.postbacks_of("task-named")) == 2, 20, "the retry")
        self.redis.execute("REPLICAOF", "127.0.0.1", "1")
        try:
            refused = self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                               if e.get("step") == "finish"][1:], 20,
                                      "the retry's settlement to be refused twice")
        finally:
            self.redis.execute("REPLICAOF", "NO", "ONE")
        self.postbacks.delay = 0.0
        self.assertTrue(refused[0]["error"].startswith("redis: READONLY "), refused)
        self.assertEqual({e.get("job_id") for e in refused}, {"task-named"}, refused)
        self.wait_until(lambda: len(self.postbacks_of("task-named")) == 3, 20, "the next retry")
        resumed = w.log_events("settle_resumed")  # the kept settlement, tried again
        self.assertTrue(resumed)
        self.assertEqual({e.get("job_id") for e in resumed}, {"task-named"}, resumed)
        self.wait_until(lambda: not self.redis.zrange(self.key("delayed")), 10,
                        "the retry to leave delayed")
        self.assert_queue_drained()

    def test_job_posted_back_while_redis_is_full_settles(self):
        """A full Redis (maxmemory, noeviction) takes the settlement of a job posted back, as
        it takes that of a job without a postback: its first write takes the payload off the
        active list, and adds nothing. Before, the postback mark came first, Redis refused the
        call, and the worker kept the outcome until Redis had room again (run again, and posted
        back again, if the worker stopped meanwhile)."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="2")
        self.worker_id(w)
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.push_jobs([self.tiny_job("posted-full")])
        self.wait_for_postback(20, job_id="posted-full")
        self.fill_redis()
        try:
            self.wait_until(lambda: self.results("posted-full"), 20, "the settlement")
        finally:
            self.empty_redis()
        self.assertEqual([e for e in w.log_events("redis_error") if e.get("step") == "finish"],
                         [])
        self.assertEqual(w.log_events("job_unsettled"), [])
        self.assertEqual([e["job_id"] for e in w.log_events("job_done")], ["posted-full"])
        self.assert_success("posted-full")
        self.assertEqual(self.redis.execute("HGET", self.key("job:posted-full"), "posted")
                         is not None, True)
        self.assert_queue_drained()

    def test_run_begun_while_redis_is_full_is_counted(self):
        """A job reserved by the settlement of the one before it (finish.lua's "next", which
        a full Redis takes: its first write removes the payload) begins while Redis refuses
        writes. begin.lua is taken too: the run goes on whatever its answer, and without it
        the job's first_seen (the hour of its default S3 keys) and run count were lost, and
        `pixq stats` counted it settled but never received (chaos seed 62: 7 jobs in 1,000).
        No heartbeat comes meanwhile: one finds Redis full, and then the worker takes no fresh
        job (FullRedisTest), by finish.lua or otherwise."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        w = self.start_worker(PIXQ_HEARTBEAT_MS="60000", PIXQ_LEASE_MS="180000")
        self.worker_id(w)
        first = {"job_id": "before-full", "src": self.src.url("/slow.png"),
                 "functions": [{"name": "resize_to_fit", "params": {"width": 32}}]}
        second = {"job_id": "begun-full", "src": {"name": "canvas", "width": 8, "height": 8},
                  "functions": [{"name": "resize", "params": {"width": 4, "height": 4}}]}
        self.push_jobs([first, second])  # the first nearest the consumer end
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.wait_until(lambda: self.redis.hgetall(self.key("job:before-full")).get("runs"), 10,
                        "the first run to be counted")
        self.fill_redis()
        try:
            self.src.release()
            self.wait_until(lambda: self.results("begun-full"), 20, "the second to settle")
        finally:
            self.empty_redis()
        self.assertEqual(w.log_events("job_begin_failed"), [])
        job = self.redis.hgetall(self.key("job:begun-full"))
        self.assertEqual(job.get("runs"), "1", job)
        self.assertGreater(int(job.get("first_seen", 0)), 0, job)
        self.assertGreater(self.redis.ttl(self.key("job:begun-full")), 0)
        stats = self.stats()
        self.assertEqual((stats.get("received"), stats.get("succeeded")), (2, 2), stats)

    def test_outcome_of_a_job_redis_lost_recorded_later(self):
        """The same, for a job Redis lost while the worker ran it (restarted without its data):
        its settlement (job_forgotten) cannot come back from the active list, which Redis lost
        with the job, so it is tried again once the worker finds its active lists empty.
        Before, it was kept for a payload that never came back: no result, not counted."""
        self.outcome_of_a_lost_job_recorded_later()

    def test_outcome_of_a_lost_job_of_a_lower_queue_recorded_later(self):
        """As above for a job of the worker's second queue: recorded in that queue."""
        self.outcome_of_a_lost_job_recorded_later(PIXQ_QUEUE="urgent,default")

    def outcome_of_a_lost_job_recorded_later(self, **env):
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS="2", PIXQ_LEASE_MS=8000, **env)
        self.worker_id(w)
        self.push_jobs([self.tiny_job("lost-unsettled", path="/slow.png")])
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.redis.close()
        self.redis_server.restart(down_seconds=0.5)  # no AOF: it comes back empty
        self.postbacks.delay = 2.0  # recorded at once, answered 200 two seconds later
        self.src.release()
        self.wait_for_postback(20, job_id="lost-unsettled")
        self.refuse_writes()
        self.writes_back_after_retries(w, 1)
        self.postbacks.delay = 0.0
        self.wait_until(lambda: self.results("lost-unsettled"), 10, "the outcome to be recorded")
        time.sleep(0.5)
        self.assert_success("lost-unsettled")  # one result, one postback
        self.assertEqual(self.src.requests("/slow.png"), 1)
        self.assertEqual(self.stats().get("forgotten"), 1, self.stats())
        self.assertEqual([(e["step"], e.get("resumed")) for e in w.log_events("job_forgotten")],
                         [("before_postback", None), ("finish", "1")])
        # finish.lua's refusal as Redis's message alone, without "script: <sha1>, on
        # @user_script:N."
        refusals = {e["error"] for e in w.log_events("redis_error") if e.get("step") == "finish"}
        self.assertEqual(refusals, {"redis: NOREPLICAS Not enough good replicas to write."})
        self.assert_queue_drained()


class FullRedisTest(ReliabilityCase):
    """Redis past maxmemory with noeviction (deploy/redis.conf's policy) refuses every command
    that adds data, and takes LMOVE, BLMOVE and ZADD for such even where they move an entry or a
    deadline. The fleet keeps its leases, finishes the jobs in hand, reaps, promotes and takes
    pixq's own entries (parked uploads, postback retries, pills), but no fresh job: each
    settles into more than its payload. Before, every lease ran out a lease after Redis filled
    up, a worker could not start, and nothing was reaped, promoted or taken."""

    def canvas_jobs(self, prefix, n):
        return [{"job_id": "%s-%d" % (prefix, i), "src": {"name": "canvas", "width": 8,
                                                          "height": 8},
                 "functions": [{"name": "resize", "params": {"width": 4, "height": 4}}]}
                for i in range(n)]

    def pill(self, job_id):
        """A poison pill of a job posted back to /pb: taken, its failure posted, buried."""
        return "pixq-task:" + json.dumps({"pixq_poison": json.dumps(self.tiny_job(job_id)),
                                          "error": "E"}, separators=(",", ":"))

    def assert_all_settled(self, jobs, timeout=20):
        ids = [j["job_id"] for j in jobs]
        self.wait_until(lambda: all(self.results(i) for i in ids), timeout,
                        "every job to settle: %s" % [i for i in ids if not self.results(i)])

    def assert_waiting(self, w, jobs, queue=None):
        """`jobs` stay queued a heartbeat and more: none was taken, none settled."""
        time.sleep(scaled(1.5 * HEARTBEAT_MS / 1000))
        key = "pixq:{%s}:jobs" % (queue or self.queue)
        queued = [json.loads(p)["job_id"] for p in self.redis.lrange(key)]
        self.assertEqual(sorted(queued), sorted(j["job_id"] for j in jobs))
        self.assertFalse(any(self.results(j["job_id"]) for j in jobs))
        self.assertEqual(len(w.log_events("redis_full")), 1)
        self.assertEqual(w.log_events("lease_overdue"), [])

    def test_busy_worker_keeps_its_lease_and_takes_no_fresh_job(self):
        """The job in hand uploads (under the bucket's limit) and settles, but finish.lua
        reserves no next job, and a lease and more later the worker still holds its lease."""
        self.src.add("/slow.png", tiny_png())
        self.src.stall("/slow.png")
        w = self.start_worker()
        wid = self.worker_id(w)
        first = self.tiny_job("before-full", path="/slow.png")
        rest = self.canvas_jobs("after", 3)
        self.push_jobs([first] + rest)  # the first nearest the consumer end
        self.wait_until(lambda: self.src.requests("/slow.png") == 1, 20, "the worker to fetch")
        self.fill_redis()
        time.sleep(scaled(1.5 * LEASE_MS / 1000))  # a lease: every heartbeat found Redis full
        self.src.release()
        self.wait_until(lambda: self.results("before-full"), 20, "the first job to settle")
        self.assert_success("before-full")
        self.assertEqual(w.log_events("limiter_unavailable"), [])
        self.assert_waiting(w, rest)
        # the bytes uploaded wait for room too: no heartbeat failed on their count (each did,
        # once a second, a redis_error line each)
        self.assertEqual([e for e in w.log_events("redis_error") if e.get("step") == "stats"],
                         [])
        self.assertIn(wid, self.redis.zrange(self.key("workers")))
        self.empty_redis()
        self.assert_all_settled(rest)
        self.assertEqual(len(w.log_events("redis_room")), 1)
        self.assertEqual(self.stats().get("succeeded"), 4)
        self.assert_queue_drained()

    def test_idle_worker_takes_only_pixq_s_own_entries(self):
        """A worker that starts while Redis is full registers, reaps a dead worker (its job
        back on the queue), promotes what is due and runs a pill (its failure posted back);
        the fresh jobs wait until Redis has room."""
        fresh = self.canvas_jobs("queued", 2)
        self.push_jobs(fresh)
        orphan, delayed = self.canvas_jobs("orphan", 1) + self.canvas_jobs("delayed", 1)
        self.redis.execute("ZADD", self.key("workers"), 1, "dead-worker")
        self.redis.lpush(self.key("active:dead-worker"), json.dumps(orphan))
        self.redis.execute("ZADD", self.key("delayed"), 1, json.dumps(delayed))
        self.redis.rpush(self.key("jobs"), self.pill("pill-full"))
        self.fill_redis()
        w = self.start_worker()
        self.worker_id(w)
        pb = self.wait_for_postback(20, job_id="pill-full")
        self.assertEqual(pb.json["results"]["failed_image_identifiers"], ["thumb"])  # failed
        self.assert_waiting(w, fresh + [orphan, delayed])
        self.assertNotIn("dead-worker", self.redis.zrange(self.key("workers")))
        self.assertEqual(self.redis.zrange(self.key("delayed")), [])
        self.assertLessEqual(len(w.log_events("redis_error")), 2)  # no error a poll
        self.empty_redis()
        self.assert_all_settled(fresh + [orphan, delayed])
        self.assertEqual(self.stats().get("recovered"), 1)
        self.assert_queue_drained()

    def test_told_by_a_refused_reservation(self):
        """No heartbeat comes (a minute apart): the BLMOVE Redis refuses as full tells the
        worker, which then takes what a reap gives back only if it is one of pixq's own, and
        waits without an error a poll."""
        w = self.start_worker(PIXQ_HEARTBEAT_MS="60000", PIXQ_LEASE_MS="180000",
                              PIXQ_RESERVE_TIMEOUT_MS="200", PIXQ_REDIS_RETRY_MAX_MS="10000")
        self.worker_id(w)
        fresh = self.canvas_jobs("given-back", 1)[0]
        now_ms = int(self.redis.execute("TIME")[0]) * 1000
        self.redis.rpush(self.key("active:ghost"), json.dumps(fresh), self.pill("pill-ghost"))
        self.redis.execute("ZADD", self.key("workers"), now_ms + 2000, "ghost")
        self.fill_redis()
        self.wait_until(lambda: w.log_events("redis_full"), 10, "the worker to be told")
        self.wait_for_postback(20, job_id="pill-ghost")  # reaped, then taken
        self.assert_waiting(w, [fresh])
        self.assertEqual(len([e for e in w.log_events("redis_error")
                              if e.get("step") == "reserve"]), 1)
        self.empty_redis()  # taken once the refusal is PIXQ_REDIS_RETRY_MAX_MS old
        self.assert_all_settled([fresh], timeout=30)

    def test_worker_of_several_queues(self):
        """A sweep of several queues (pipelined LMOVEs) is refused as well: take.lua instead,
        pixq's own entries of every queue."""
        fresh = self.canvas_jobs("low", 2)
        self.push_jobs(fresh)  # onto default, the second queue
        self.redis.rpush(self.key("jobs"), self.pill("pill-low"))
        self.fill_redis()
        w = self.start_worker(PIXQ_QUEUE="urgent,default")
        self.worker_id(w)
        self.wait_for_postback(20, job_id="pill-low")
        self.assert_waiting(w, fresh)
        self.empty_redis()
        self.assert_all_settled(fresh)
        self.assert_queue_drained()


class RetryTest(ReliabilityCase):
    """Transient source failures are retried through pixq:{Q}:delayed with back-off; Blitline's
    wait_retry_delay re-queues a job whose source is not there yet."""

    worker_env_extra = dict(SHORT_LEASES, PIXQ_RETRY_BASE_MS=200, PIXQ_RETRY_MAX_MS=500,
                            PIXQ_MAX_ATTEMPTS=3)

    def test_503_twice_then_success(self):
        """Each run after the first is logged once, the one put back to run later (whose
        begin.lua answer is read after requeue.lua's) as the one that completes."""
        w = self.start_worker()
        self.src.add("/flaky.png", tiny_png())
        self.src.answer_with("/flaky.png", 503, 503)
        self.push_jobs([self.tiny_job("retry-ok", path="/flaky.png")])
        self.wait_until(lambda: self.results("retry-ok"), 20, "the result")
        self.wait_for_postback(timeout=5, job_id="retry-ok")
        time.sleep(0.5)  # nothing more arrives
        self.assertEqual(self.src.requests("/flaky.png"), 3)
        self.assert_success("retry-ok")
        self.assertEqual(len(self.postbacks.postbacks), 1)
        self.assertEqual(self.redis.llen(self.key("dead")), 0)
        self.assertEqual(self.redis.execute("ZCARD", self.key("delayed")), 0)
        self.assertEqual(self.stats().get("retried"), 2, self.stats())
        self.assertEqual(self.redis.execute("HGET", self.key("job:retry-ok"), "runs"), "3")
        self.assertEqual([(e["job_id"], e["run"]) for e in w.log_events("job_rerun")],
                         [("retry-ok", "2"), ("retry-ok", "3")])
        self.assert_queue_drained()

    def test_retries_wait_at_least_half_their_step(self):
        """Equal jitter: the waits are 100-200 ms, then 200-400 ms (base 200 ms). With full jitter
        (0-200, 0-400) a retry could come at once: of these 16 waits, half would be shorter."""
        self.start_worker()
        ids = ["half-%d" % i for i in range(8)]
        for job_id in ids:
            self.src.add("/%s.png" % job_id, tiny_png())
            self.src.answer_with("/%s.png" % job_id, 503, 503)
        self.push_jobs([self.tiny_job(job_id, path="/%s.png" % job_id) for job_id in ids])
        for job_id in ids:  # the result is stored when the job settles, after its postback
            self.wait_until(lambda j=job_id: self.results(j), 20, "the result of %s" % job_id)
            self.wait_for_postback(timeout=5, job_id=job_id)
        for job_id in ids:
            times = self.src.request_times("/%s.png" % job_id)
            self.assertEqual(len(times), 3, job_id)
            gaps = [b - a for a, b in zip(times, times[1:])]
            self.assertGreaterEqual(gaps[0], 0.095, (job_id, gaps))
            self.assertGreaterEqual(gaps[1], 0.195, (job_id, gaps))
            self.assert_success(job_id)

    def test_stop_while_redis_refuses_waits_for_the_retry(self):
        """A worker stopped while Redis refuses the write that schedules a job's retry
        (requeue.lua; here NOREPLICAS: a full Redis lets it through, as its first write only
        deletes) waits for the refusal to pass and schedules the retry before it
        exits. Before, a stop ended the tries at once: the job stayed on the worker's active
        list (task_stranded), to run again without the failed run counted."""
        w = self.start_worker()
        wid = self.worker_id(w)
        self.src.add("/refused.png", tiny_png())
        self.src.answer_with("/refused.png", 503)
        self.src.stall("/refused.png")
        self.push_jobs([self.tiny_job("retry-refused", path="/refused.png")])
        self.wait_until(lambda: self.src.requests("/refused.png") == 1, 20, "the fetch")
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")  # refuses writes
        try:
            self.src.release()  # 503: a retry, which Redis refuses to schedule
            self.wait_until(lambda: [e for e in w.log_events("redis_error")
                                     if e.get("step") == "retry"], 20, "requeue.lua's refusal")
            w.proc.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # a few of the tries' waits
            self.assertIsNone(w.proc.poll(), "the worker left without scheduling the retry")
        finally:
            self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        self.programs.remove(w)
        self.assertEqual(w.terminate(), (0, False))
        self.assertFalse(w.log_events("task_stranded"))
        self.assertEqual([e["job_id"] for e in w.log_events("job_retry")], ["retry-refused"])
        self.assertEqual(self.redis.execute("LLEN", self.key("active:" + wid)), 0)
        self.start_worker()  # the retry, due from delayed, runs (and succeeds) once
        self.wait_until(lambda: self.results("retry-refused"), 20, "the result")
        self.assert_success("retry-refused")
        self.assertEqual(self.src.requests("/refused.png"), 2)
        self.assertEqual(self.stats().get("retried"), 1, self.stats())

    def retry_gap(self, job_id, *answers, **env):
        """The wait between a source's failed answer(s) `answers` and the run after it."""
        self.start_worker(**env)
        path = "/%s.png" % job_id
        self.src.add(path, tiny_png())
        self.src.answer_with(path, *answers)
        self.push_jobs([self.tiny_job(job_id, path=path)])
        self.wait_until(lambda: self.results(job_id), 30, "the result")
        self.assert_success(job_id)
        times = self.src.request_times(path)
        self.assertEqual(len(times), 2, times)
        return times[1] - times[0]

    def test_retry_after_seconds(self):
        """A source answering 503 with Retry-After: 3 is run again 3 s later, not after the
        back-off's 100-200 ms: it was ignored, and the job failed while the source said when
        to come back."""
        gap = self.retry_gap("ra-secs", (503, {"Retry-After": "3"}))
        self.assertGreaterEqual(gap, 2.95)
        self.assertLess(gap, scaled(5))

    def test_retry_after_http_date(self):
        """Retry-After as an HTTP-date (429 here): the wait is until then."""
        at = email.utils.formatdate(time.time() + 4, usegmt=True)  # whole seconds: 3-4 s on
        gap = self.retry_gap("ra-date", (429, {"Retry-After": at}))
        self.assertGreaterEqual(gap, 2.5)
        self.assertLess(gap, scaled(6))

    def test_retry_after_capped(self):
        """A Retry-After longer than PIXQ_RETRY_AFTER_MAX_MS waits that long only; 0 ignores
        it; a Retry-After with a 500 is no wait asked for."""
        gap = self.retry_gap("ra-cap", (503, {"Retry-After": "3600"}),
                             PIXQ_RETRY_AFTER_MAX_MS=1500)
        self.assertGreaterEqual(gap, 1.45)
        self.assertLess(gap, scaled(3))

    def test_retry_after_ignored(self):
        self.start_worker(PIXQ_RETRY_AFTER_MAX_MS=0)
        for job_id, status in (("ra-off", 503), ("ra-500", 500)):
            path = "/%s.png" % job_id
            self.src.add(path, tiny_png())
            self.src.answer_with(path, (status, {"Retry-After": "30"}))
            self.push_jobs([self.tiny_job(job_id, path=path)])
        for job_id in ("ra-off", "ra-500"):
            self.wait_until(lambda j=job_id: self.results(j), 10, "the result of " + job_id)
            times = self.src.request_times("/%s.png" % job_id)
            self.assertLess(times[1] - times[0], scaled(1.5), (job_id, times))

    def test_always_503_fails_after_max_attempts(self):
        self.start_worker()
        self.src.add("/down.png", tiny_png())
        self.src.status["/down.png"] = 503
        self.push_jobs([self.tiny_job("retry-fail", path="/down.png")])
        pb = self.wait_for_postback(timeout=20, job_id="retry-fail")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead entry")
        time.sleep(1.0)  # no further attempt, no second postback
        self.assertEqual(self.src.requests("/down.png"), 3)
        self.assertEqual(len(self.postbacks.postbacks), 1)
        errors = pb.results.get("errors")
        self.assertTrue(errors and errors[0].startswith("Image processing failed."), errors)
        # the final error says the job ran before (it read as if the source was tried once)
        ran = " (the job ran 3 times, each failing on a source)"
        self.assertTrue(errors[0].endswith(ran), errors)
        self.assertIn("HTTP 503", errors[0])
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual((dead["job_id"], dead["attempts"]), ("retry-fail", 3))
        self.assertTrue(dead["error"].endswith(ran), dead)
        self.assertEqual(len(self.results("retry-fail")), 1)
        self.assert_queue_drained()

    def test_wait_retry_delay_gives_up_after_five_runs(self):
        """wait_retry_delay runs a job whose source never comes at most 5 times (Blitline's
        limit, whatever PIXQ_MAX_ATTEMPTS says), then fails it: one postback, one dead entry."""
        w = self.start_worker()
        self.src.add("/never.png", tiny_png())
        self.src.status["/never.png"] = 404
        self.push_jobs([self.tiny_job("wait-never", path="/never.png", wait_retry_delay=0)])
        self.wait_for_postback(timeout=20, job_id="wait-never")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "a dead entry")
        time.sleep(1.0)  # no further run, no second postback
        self.assertEqual(self.src.requests("/never.png"), 5)
        self.assertEqual(len(self.postbacks.postbacks), 1)
        self.assertEqual(self.redis.execute("HGET", self.key("job:wait-never"), "runs"), "5")
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual((dead["job_id"], dead["attempts"]), ("wait-never", 5))
        # each retry was scheduled (a wait of 0 ms is due at once: requeue.lua answers 0, which
        # is no lease lost), logged with the run to come and its wait
        retries = [(e["attempt"], e["delay_ms"]) for e in w.log_events("job_retry")]
        self.assertEqual(retries, [("2", "0"), ("3", "0"), ("4", "0"), ("5", "0")])
        self.assertEqual([e for e in w.log_events("lease_lost")
                          if e.get("step") == "retry"], [])
        self.assertEqual(self.stats().get("retried"), 4, self.stats())
        self.assert_queue_drained()

    def test_wait_retry_delay_requeues_until_the_source_exists(self):
        self.start_worker()
        self.src.add("/later.png", tiny_png())
        self.src.answer_with("/later.png", 404, 404)
        self.push_jobs([self.tiny_job("wait-retry", path="/later.png", wait_retry_delay=1)])
        self.wait_until(lambda: self.results("wait-retry"), 20, "the result")
        self.wait_for_postback(timeout=5, job_id="wait-retry")
        times = self.src.request_times("/later.png")
        self.assertEqual(len(times), 3)
        for gap in (times[1] - times[0], times[2] - times[1]):
            self.assertGreaterEqual(gap, 0.95, times)
            self.assertLess(gap, 1.6, times)
        self.assert_success("wait-retry")  # no postback for the attempts that were re-queued
        self.assertEqual(self.redis.execute("HGET", self.key("job:wait-retry"), "runs"), "3")
        self.assertEqual(self.stats().get("reruns"), 2, self.stats())
        self.assertEqual(self.redis.llen(self.key("dead")), 0)
        self.assert_queue_drained()

    def test_back_off_doubles_up_to_its_cap(self):
        """The waits of job_retry (delay_ms, what requeue.lua scheduled) with base 200 ms and cap
        300 ms: 100-200 ms after the first run (half the step to the step), then 150-300 ms, as
        the doubled step (400 ms) is capped at PIXQ_RETRY_MAX_MS; drawn at random (not every
        wait the same). A job runs PIXQ_MAX_ATTEMPTS (6) times, then is dead."""
        w = self.start_worker(PIXQ_RETRY_MAX_MS=300, PIXQ_MAX_ATTEMPTS=6)
        ids = ["cap-%d" % i for i in range(3)]
        for job_id in ids:
            self.src.add("/%s.png" % job_id, tiny_png())
            self.src.status["/%s.png" % job_id] = 503
        self.push_jobs([self.tiny_job(job_id, path="/%s.png" % job_id) for job_id in ids])
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 3, 30, "three dead entries")
        delays = []
        for job_id in ids:
            retries = [e for e in w.log_events("job_retry") if e["job_id"] == job_id]
            self.assertEqual([int(e["attempt"]) for e in retries], [2, 3, 4, 5, 6], retries)
            first, *later = [int(e["delay_ms"]) for e in retries]
            self.assertTrue(100 <= first <= 200, (job_id, first))
            for ms in later:
                self.assertTrue(150 <= ms <= 300, (job_id, later))
            delays += later
            self.assertEqual(self.src.requests("/%s.png" % job_id), 6)
        self.assertGreater(len(set(delays)), 1, delays)
        self.assertEqual(self.stats().get("retried"), 15, self.stats())

    def test_wait_retry_delay_out_of_range_waits_5_s(self):
        """wait_retry_delay is seconds from 0 to 100 (a number or its text); any other value
        waits 5 s, as Blitline did. Read from job_retry's delay_ms and the retry's score in
        pixq:{Q}:delayed (Redis's clock, between TIME read before the push and after)."""
        w = self.start_worker()
        cases = {"wrd-101": (101, 5000), "wrd-neg": (-1, 5000), "wrd-100": (100, 100000),
                 "wrd-text": ("20", 20000), "wrd-word": ("soon", 5000)}
        for job_id in cases:
            self.src.add("/%s.png" % job_id, tiny_png())
            self.src.status["/%s.png" % job_id] = 404
        secs, micros = self.redis.execute("TIME")
        before_ms = int(secs) * 1000 + int(micros) // 1000
        self.push_jobs([self.tiny_job(job_id, path="/%s.png" % job_id, wait_retry_delay=value)
                        for job_id, (value, _) in cases.items()])
        self.wait_until(lambda: len(w.log_events("job_retry")) == len(cases), 20,
                        "every job's retry")
        got = {e["job_id"]: int(e["delay_ms"]) for e in w.log_events("job_retry")}
        self.assertEqual(got, {job_id: ms for job_id, (_, ms) in cases.items()})
        secs, micros = self.redis.execute("TIME")
        after_ms = int(secs) * 1000 + int(micros) // 1000
        flat = self.redis.zrange(self.key("delayed"), withscores=True)
        due = {json.loads(m)["job_id"]: int(float(s)) for m, s in zip(flat[::2], flat[1::2])}
        for job_id, (_, ms) in cases.items():
            self.assertTrue(before_ms + ms <= due[job_id] <= after_ms + ms,
                            (job_id, before_ms, due[job_id], after_ms))

    def test_retry_runs_when_due_not_at_the_next_promotion(self):
        """requeue.lua answers when the earliest delayed entry is due, and the worker plans to
        look then: the retry (wait_retry_delay 1 s) starts soon after its due time (its score in
        pixq:{Q}:delayed, Redis's clock, read while it waits), not at the worker's next
        promotion, PIXQ_RESERVE_TIMEOUT_MS (3 s) after the last one (about 2 s late). The
        source's second request is the start."""
        w = self.start_worker(PIXQ_RESERVE_TIMEOUT_MS=3000, PIXQ_LEASE_MS=20000,
                              PIXQ_HEARTBEAT_MS=5000)
        self.src.add("/due.png", tiny_png())
        self.src.answer_with("/due.png", 404)
        self.push_jobs([self.tiny_job("retry-due", path="/due.png", wait_retry_delay=1)])
        self.wait_until(lambda: w.log_events("job_retry"), 20, "the retry")
        flat = self.redis.zrange(self.key("delayed"), withscores=True)
        self.assertEqual(len(flat), 2, flat)  # the retry, not yet due
        due = float(flat[1]) / 1000.0
        self.wait_until(lambda: self.results("retry-due"), 20, "the result")
        self.assert_success("retry-due")
        times = self.src.request_times("/due.png")
        self.assertEqual(len(times), 2, times)
        late = times[1] - due
        self.assertGreaterEqual(late, -0.002, late)
        self.assertLess(late, 1.0, "the retry ran %.0f ms after its due time" % (late * 1000))

    def test_retry_redis_keeps_refusing_runs_again_from_the_active_list(self):
        """When Redis refuses requeue.lua PIXQ_SETTLE_ATTEMPTS times (3: NOREPLICAS here), the
        worker gives the retry up and leaves the job on its active list (task_stranded
        step=retry), from which it runs the job again after the pause (500-1000 ms here), once
        Redis takes writes again: the job is not left there until the worker stops."""
        w = self.start_worker(PIXQ_SETTLE_ATTEMPTS=3, PIXQ_REDIS_RETRY_MIN_MS=1000,
                              PIXQ_REDIS_RETRY_MAX_MS=1000, PIXQ_LEASE_MS=20000,
                              PIXQ_HEARTBEAT_MS=5000)
        self.src.add("/stranded.png", tiny_png())
        self.src.answer_with("/stranded.png", 503)
        self.src.stall("/stranded.png")
        self.push_jobs([self.tiny_job("retry-stranded", path="/stranded.png")])
        self.wait_until(lambda: self.src.requests("/stranded.png") == 1, 20, "the fetch")
        self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "1")  # refuses writes
        try:
            self.src.release()  # 503: a retry, which Redis refuses to schedule
            stranded = self.wait_until(lambda: w.log_events("task_stranded"), 20,
                                       "the retry given up")
        finally:
            self.redis.execute("CONFIG", "SET", "min-replicas-to-write", "0")
        self.assertEqual([(e["job_id"], e["step"]) for e in stranded],
                         [("retry-stranded", "retry")])
        tries = [(e["attempt"], e["job_id"], e["queue"]) for e in w.log_events("redis_error")
                 if e.get("step") == "retry"]
        self.assertEqual(tries, [("1", "retry-stranded", "default"),
                                 ("2", "retry-stranded", "default")])
        self.wait_until(lambda: self.results("retry-stranded"), 20, "the result")
        self.assert_success("retry-stranded")
        self.assertEqual(self.src.requests("/stranded.png"), 2)
        self.assertEqual(w.log_events("job_retry"), [])
        self.assertIsNone(self.stats().get("retried"), self.stats())
        self.assert_queue_drained()


class MixedChaosTest(ReliabilityCase):
    """Every fault at once: 100 jobs of two or three saves each to two buckets held to a low rate
    (PIXQ_S3_RATE 8/s, burst 0: outputs park in Redis and wait for their slots), the S3 stub
    answering every PUT 100 ms late, a share of them with 503 SlowDown and another with a
    connection reset, one of 3 workers (now and then all 3) SIGKILLed and replaced every 1 to
    2 s, and redis-server (AOF, appendfsync always) SIGKILLed and restarted on its port once or
    twice while it all runs; every fifth job waits for S3 (wait_for_s3). At the end every job
    has exactly one result and at least one postback, every output a postback names is in the
    store as named, nothing is left on jobs, an active list, delayed, the parked count or a
    blob, and the stats add up. The seed is printed (PIXQ_CHAOS_SEED=N runs the same schedule
    of kills and faults again; the timing of what they hit is the machine's). About 25 s."""

    s3_server = "stub"
    buckets = ("pixq-test", "bkt-a", "bkt-b")
    redis_appendonly = True
    redis_appendfsync = "always"  # an answered write survives a SIGKILL: nothing may be lost
    JOBS, WORKERS, RATE, DEADLINE_S = 100, 3, 8, 120  # 25 to 30 s alone
    SLOWDOWN_P, RESET_P, KILL_ALL_P, PUT_S = 0.04, 0.04, 0.1, 0.1
    # 10 recoveries before a job is a pill: a kill every 1 to 2 s does not make one by chance
    worker_env_extra = dict(SHORT_LEASES, PIXQ_LOG_LEVEL="info", PIXQ_MAX_RECOVERIES=10,
                            PIXQ_S3_RATE="%d/s,burst=0" % RATE, PIXQ_S3_MAX_ATTEMPTS=10,
                            PIXQ_WAIT_FOR_S3_INTERVAL_MS=200)

    def chaos_job(self, job_id, src, saves, wait_for_s3):
        """A job of source path `src`; save i resizes to 8 + 4i px and goes to bkt-a or bkt-b
        (alternating from the job's number) under <job_id>/<i>.png, as image_identifier img<i>."""
        n = int(job_id.rsplit("-", 1)[1])
        functions = [{"name": "resize_to_fit", "params": {"width": 8 + 4 * i},
                      "save": {"image_identifier": "img%d" % i, "s3_destination": {
                          "bucket": self.buckets[1 + (n + i) % 2],
                          "key": "%s/%d.png" % (job_id, i)}}} for i in range(saves)]
        job = {"application_id": "test", "job_id": job_id, "src": self.src.url(src),
               "postback_url": self.postbacks.url("/pb"), "functions": functions}
        if wait_for_s3:
            job["wait_for_s3"] = True
        return job

    def redis_crash(self, down_s, failures):
        """SIGKILL redis-server, down_s seconds down, started again from its AOF (in a thread:
        what went wrong is added to `failures`)."""
        try:
            self.redis_server.restart(down_seconds=down_s, sig=signal.SIGKILL)
        except Exception as e:  # raised by the test
            failures.append(e)

    def unsettled(self, ids):
        """The jobs of `ids` without a result yet; None while Redis does not answer."""
        try:
            return {i for i in ids if not self.redis.exists(self.key("result:" + i))}
        except (OSError, harness.RespError):
            self.redis.close()
            return None

    def test_mixed_chaos(self):
        seed = int(os.environ.get("PIXQ_CHAOS_SEED") or random.randrange(1 << 30))
        rng = random.Random(seed)
        sys.stderr.write("\nmixed chaos: seed %d\n" % seed)
        self.s3.slow_down_probability("bkt-a", self.SLOWDOWN_P, seed=seed)
        self.s3.slow_down_probability("bkt-b", self.SLOWDOWN_P)
        for b in self.buckets[1:]:
            self.s3.reset_probability(b, self.RESET_P)
            # every PUT answered PUT_S late: kills and Redis crashes land in uploads too
            self.s3.stall(b, self.PUT_S, methods=("PUT",))
        ids = ["mix-%03d" % i for i in range(self.JOBS)]
        saves = {i: rng.choice((2, 3)) for i in ids}
        waits = {i for n, i in enumerate(ids) if n % 5 == 0}
        paths = []
        for n, delay in enumerate((0.05, 0.1, 0.15, 0.2)):  # kills land in the jobs too
            paths.append("/mix-%d.png" % n)
            self.src.add(paths[-1], tiny_png())
            self.src.delay[paths[-1]] = delay
        t0 = time.monotonic()
        self.push_jobs([self.chaos_job(i, paths[n % 4], saves[i], i in waits)
                        for n, i in enumerate(ids)])
        fleet = [self.start_worker() for _ in range(self.WORKERS)]
        crashes_at = sorted(t0 + rng.uniform(2, 12) for _ in range(rng.choice((1, 2))))
        crash, crashes, kills, crash_failures = None, 0, 0, []
        next_kill = time.monotonic() + rng.uniform(1, 2)
        deadline = t0 + scaled(self.DEADLINE_S)
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.unsettled(pending) if crash is None else None
            pending = pending if left is None else left
            for prog in fleet:
                prog.check_alive()
            now = time.monotonic()
            if crash is not None and not crash.is_alive():
                crash = None
            if crash is None and crashes_at and now >= crashes_at[0]:
                crashes_at.pop(0)
                crashes += 1
                self.redis.close()
                crash = threading.Thread(target=self.redis_crash,
                                         args=(rng.uniform(0.5, 2.5), crash_failures))
                crash.start()
            if now >= next_kill and (pending or crash is not None):
                # now and then the whole fleet at once (a host lost): the new workers reap it
                whole = rng.random() < self.KILL_ALL_P
                for victim in range(len(fleet)) if whole else [rng.randrange(len(fleet))]:
                    self.kill_worker(fleet[victim], signal.SIGKILL)
                    fleet[victim] = self.start_worker()
                    kills += 1
                next_kill = time.monotonic() + rng.uniform(1, 2)
            if crash_failures:
                raise crash_failures[0]
        if crash is not None:
            crash.join()
        elapsed = time.monotonic() - t0
        if pending:
            pending = self.unsettled(pending)
        self.assertEqual(pending, set(), "after %.0fs (seed %d, %d kills, %d Redis crashes): "
                         "no result for %s" % (elapsed, seed, kills, crashes, sorted(pending)))
        self.assert_drained_everywhere()
        self.check_outcomes(ids, saves)
        stats = self.stats()
        per_job = collections.Counter(pb.job_id for pb in self.postbacks.postbacks)
        puts = self.s3.records(method="PUT")
        sys.stderr.write(
            "mixed chaos: %d jobs, %d kills, %d Redis crashes, %.1fs (seed %d); postbacks %d "
            "(duplicates %d); PUTs %d, SlowDowns %d, resets %d; stats %s\n"
            % (self.JOBS, kills, crashes, elapsed, seed, sum(per_job.values()),
               sum(per_job.values()) - len(per_job), len(puts),
               len([r for r in puts if r.status == 503]),
               len([r for r in puts if r.fault == "reset"]), json.dumps(stats, sort_keys=True)))
        self.assertEqual(stats.get("received"), self.JOBS, stats)
        self.assertEqual(stats.get("succeeded"), self.JOBS, stats)
        self.assertIsNone(stats.get("failed"), stats)
        self.assertIsNone(stats.get("dead"), stats)
        self.assertGreater(stats.get("throttled", 0), 0, stats)  # outputs did park
        # the only delayed entries are parked uploads: each promoted once
        self.assertEqual(stats.get("promoted"), stats.get("throttled"), stats)
        self.assertGreaterEqual(crashes, 1)
        self.assertEqual(self.s3.counts()["failed"], 0, self.s3.failures()[:3])
        for prog in self.programs_ever:
            self.assertIsNone(prog.sanitizer_report(), prog.name)

    def assert_drained_everywhere(self):
        """No job on jobs or an active list, nothing delayed, no blob, nothing counted parked."""
        def drained():
            parked = self.redis.hgetall(self.key("parked"))
            return (self.redis.llen(self.key("jobs")) == 0
                    and not self.redis.keys(self.key("active:*"))
                    and self.redis.execute("ZCARD", self.key("delayed")) == 0
                    and not self.redis.keys(self.key("blob:*"))
                    and int(parked.get("total", 0)) == 0)
        try:
            # a killed worker's list waits for its lease and a reap pass
            self.wait_until(drained, (LEASE_MS + REAP_MS) / 1000.0 + 20, "the queues to drain")
        except AssertionError:
            sys.stderr.write("left: jobs %r, active %r, delayed %r, blobs %r, parked %r\n" % (
                self.redis.lrange(self.key("jobs")), self.redis.keys(self.key("active:*")),
                self.redis.zrange(self.key("delayed"), withscores=True),
                self.redis.keys(self.key("blob:*")), self.redis.hgetall(self.key("parked"))))
            raise

    def check_outcomes(self, ids, saves):
        """One result each, a success with every save, equal to one of its postbacks (at least
        one), each image in the store as the postback names it."""
        for job_id in ids:
            results = self.results(job_id)
            self.assertEqual(len(results), 1, "%s has %d results" % (job_id, len(results)))
            stored = json.loads(results[0])["results"]
            self.assertNotIn("errors", stored, stored)
            self.assertEqual(stored["job_id"], job_id)
            pbs = self.postbacks_of(job_id)
            self.assertTrue(pbs, "%s has no postback" % job_id)
            self.assertIn(stored, [pb.results for pb in pbs], job_id)
            for pb in pbs:
                self.assert_stored(job_id, pb.results, saves[job_id])

    def assert_stored(self, job_id, results, saves):
        n = int(job_id.rsplit("-", 1)[1])
        self.assert_saves_stored(results, job_id, saves, lambda i: self.buckets[1 + (n + i) % 2])


# meson's tests, one a part: `reliability` runs "core", `retry` "retry", and `reliability-rest-1`
# and `-2` every other class, a share each ("rest/2:1", "rest/2:2"; "rest" is all of them), so
# that no class is left out of the suite.
PARTS = {"core": ("KillTest", "ChaosTest", "MixedChaosTest", "RedisRestartTest",
                  "GracefulStopTest", "PoisonTest", "DelayedTest", "LeaseLossTest", "FencingTest"),
         "retry": ("RetryTest",)}


def part_classes(part):
    """The test classes of one part of PARTS, or "rest": every ReliabilityCase in none, or a
    share of it ("rest/2:1", harness.share_of)."""
    every = [name for name, c in sorted(globals().items())
             if isinstance(c, type) and issubclass(c, ReliabilityCase) and c is not ReliabilityCase]
    named = [n for names in PARTS.values() for n in names]
    assert set(named) <= set(every), named
    if part in PARTS:
        return list(PARTS[part])
    assert part.partition("/")[0] == "rest", part
    return harness.share_of([n for n in every if n not in named], part)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[-2] == "--part":
        sys.argv[-2:] = part_classes(sys.argv[-1])
    harness.main()
