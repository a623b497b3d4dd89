#!/usr/bin/python3
"""The operator's command line: `pixq stats`, `pixq dead list|retry|purge`, and how every pixq
command answers bad arguments (exit status 2, a usage message, nothing done).

    /usr/bin/python3 tests/integration/test_cli.py --worker build-rel/worker/pixq-worker \\
        --pixq build-rel/producer/pixq --data tests/data [-k dead]
"""

import json
import signal
import subprocess
import sys
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

    def pixq_ok(self, *args):
        r = self.run_pixq(*args)
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


class StatsTest(CliCase):
    def test_stats_of_a_running_fleet(self):
        fleet = [self.start_worker(), self.start_worker()]
        wids = [self.worker_id(w) for w in fleet]
        self.src.add("/ok.png", tiny_png())
        self.src.add("/slow.png", tiny_png())
        later = self.tmp / "later.json"
        later.write_text(json.dumps(self.job("later-1", "/ok.png")))
        self.pixq_ok("submit", str(later), "--delay", "600000")
        # an idle worker takes the wake-up token delay.lua pushed
        self.wait_until(lambda: self.redis.llen(self.key("jobs")) == 0, 10, "the wake-up token")

        self.push(self.job("done-1", "/ok.png"))
        self.wait_for_postback(job_id="done-1")
        self.push("{not json")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "a dead entry")
        self.src.stall("/slow.png")
        self.push(self.job("busy-1", "/slow.png"))
        self.push(self.job("busy-2", "/slow.png"))
        self.wait_until(lambda: self.src.requests("/slow.png") == 2, 20, "both workers busy")
        waiting = self.push(self.job("waiting-1", "/ok.png"))

        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertEqual(s["queue"], "default")
        self.assertEqual((s["jobs"], s["delayed"], s["dead"]), (1, 1, 1), s)
        self.assertEqual(s["live_workers"], 2, s)
        self.assertEqual(sorted(w["id"] for w in s["workers"]), sorted(wids))
        for w in s["workers"]:
            self.assertGreater(w["lease_ms_left"], 0, w)
            self.assertLessEqual(w["lease_ms_left"], LEASE_MS, w)
        self.assertEqual(sorted(j for w in s["workers"] for j in w["jobs"]), ["busy-1", "busy-2"])
        self.assertTrue(all(len(w["jobs"]) == 1 for w in s["workers"]), s["workers"])
        c = s["counters"]
        self.assertEqual((c.get("succeeded"), c.get("failed"), c.get("dead")), (1, 1, 1), c)
        self.assertEqual(c, self.counters())

        text = self.pixq_ok("stats")
        self.assertIn("queue default", text)
        self.assertRegex(text, r"jobs waiting +1\n")
        self.assertRegex(text, r"delayed +1\n")
        self.assertRegex(text, r"dead +1\n")
        self.assertRegex(text, r"live workers +2\n")
        for w in s["workers"]:
            self.assertRegex(text, r"%s +alive +jobs \[\"%s\"\]" % (w["id"], w["jobs"][0]))
        self.assertRegex(text, r"succeeded +1\n")

        # a worker dies: once its lease has run out and it was reaped, the fleet shows one worker
        # and its job is waiting again, ahead of the rest
        victim = next(w for w in s["workers"] if w["jobs"] == ["busy-1"])
        self.kill_worker(fleet[wids.index(victim["id"])], signal.SIGKILL)
        self.wait_until(lambda: self.counters().get("recovered") == 1, LEASE_MS / 1000.0 + 5,
                        "the dead worker to be reaped")
        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertEqual((s["jobs"], s["live_workers"], len(s["workers"])), (2, 1, 1), s)
        self.assertEqual(s["counters"]["recovered"], 1)
        self.assertEqual(json.loads(self.redis.lindex(self.key("jobs"), -1))["job_id"], "busy-1")
        self.assertEqual(self.redis.lindex(self.key("jobs"), 0), waiting)

    def test_stats_of_an_empty_queue(self):
        s = json.loads(self.pixq_ok("stats", "--json"))
        self.assertEqual(s, {"queue": "default", "jobs": 0, "delayed": 0, "dead": 0,
                             "live_workers": 0, "workers": [], "counters": {}})


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
            self.assertEqual(sorted(e), ["attempts", "error", "failed_at", "job", "job_id"])
            self.assertEqual(json.loads(e["job"]), json.loads(payloads[e["job_id"]]))
            self.assertTrue(e["error"].startswith("Image processing failed."), e["error"])
            self.assertIn("/not-yet.png", e["error"])
            self.assertLess(abs(now_ms - e["failed_at"]), 60000)
            self.assertGreaterEqual(e["attempts"], 1)
        text = self.pixq_ok("dead", "list").splitlines()
        self.assertEqual([line.split()[0] for line in text], ["d3", "d2", "d1"])
        self.assertTrue(all("failed_at=" in line and "Image processing failed." in line
                            for line in text), text)
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

        self.assertEqual(self.pixq_ok("dead", "purge", "d1").strip(), "1 dead job(s) purged")
        self.assertEqual(self.dead_ids(), ["d3"])
        self.assertEqual(self.pixq_ok("dead", "purge", "d1").strip(), "0 dead job(s) purged")

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
        self.assertEqual(self.pixq_ok("dead", "purge").strip(), "2 dead job(s) purged")
        self.assertEqual(self.redis.exists(self.key("dead")), 0)
        self.assertEqual(self.pixq_ok("dead", "list"), "")
        self.assert_queue_drained()
        # every job posted back once per run: d1..d3 failed, d2 and d3 again after the retry
        per_job = sorted(pb.job_id for pb in self.postbacks.postbacks)
        self.assertEqual(per_job, ["d1", "d2", "d2", "d3", "d3", "p1", "p2"])


BAD_ARGUMENTS = [
    [],
    ["frob"],
    ["stats", "--bogus"],
    ["stats", "json"],
    ["dead"],
    ["dead", "frob"],
    ["dead", "retry"],
    ["dead", "retry", "a", "b"],
    ["dead", "purge", "a", "b"],
    ["dead", "list", "--limit"],
    ["dead", "list", "--limit", "0"],
    ["dead", "list", "--limit", "x"],
    ["dead", "list", "--frob"],
    ["submit"],
    ["submit", "job.json", "--delay", "-1"],
    ["submit", "job.json", "--delay", "soon"],
    ["submit", "job.json", "--timeout", "0"],
    ["submit", "job.json", "--frob"],
    ["--no-such-setting", "1", "stats"],
]


class BadArgumentsTest(unittest.TestCase):
    """Usage errors exit 2 with a message on stderr and nothing on stdout, whether or not Redis is
    there (they are found before connecting): no servers are started here."""

    def run_cli(self, args):
        env = clean_env()
        env["PIXQ_REDIS_URL"] = "redis://127.0.0.1:%d/0" % free_port()  # nothing listens
        env["PIXQ_REDIS_TIMEOUT_MS"] = "500"
        return subprocess.run([CONFIG.pixq, *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=scaled(30),
                              stdin=subprocess.DEVNULL)

    def test_bad_arguments_exit_2(self):
        for args in BAD_ARGUMENTS:
            with self.subTest(args=args):
                r = self.run_cli(args)
                self.assertEqual(r.returncode, 2, "pixq %s: %r" % (" ".join(args), r.stderr))
                self.assertTrue(r.stderr.strip(), args)
                self.assertEqual(r.stdout, "", args)

    def test_help_exits_0(self):
        r = self.run_cli(["--help"])
        self.assertEqual(r.returncode, 0)
        for word in ("submit", "stats", "dead list", "--delay"):
            self.assertIn(word, r.stdout)

    def test_redis_down_is_not_a_usage_error(self):
        r = self.run_cli(["stats"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(r.stderr.strip())


if __name__ == "__main__":
    harness.main()
