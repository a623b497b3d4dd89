#!/usr/bin/python3
"""Tests of the test infrastructure itself: harness.py and deploy/stack.sh.

They need no pixq program (a stand-in shell script plays the worker), so they pass on their own
and tell a harness problem apart from a worker problem."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from contextlib import redirect_stderr
from pathlib import Path

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, LOOPBACK, STACK_SH, PixqTestCase, Redis  # noqa: E402

# A stand-in worker: records its environment in $ENV_OUT, waits $START_DELAY seconds if set,
# then exits 0 on SIGTERM (or ignores SIGTERM with IGNORE_TERM=1), writes $SAY to its log, and
# logs worker_start as the real worker does once its handlers are set.
FAKE_WORKER = """#!/bin/sh
env > "$ENV_OUT.tmp" && mv "$ENV_OUT.tmp" "$ENV_OUT"
[ -n "${START_DELAY:-}" ] && sleep "$START_DELAY"
if [ "${IGNORE_TERM:-0}" = 1 ]; then trap '' TERM; else trap 'exit 0' TERM; fi
[ -n "${SAY:-}" ] && echo "$SAY" >&2
echo "event=worker_start"
while :; do sleep 0.05; done
"""


def pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): look at its state.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


class HarnessTest(PixqTestCase):
    start_worker_in_setup = False

    def test_redis_client(self):
        r = self.redis
        self.assertEqual(r.ping(), "PONG")
        self.assertEqual(r.lpush(self.key("jobs"), "a", "b\r\nc"), 2)
        self.assertEqual(r.llen(self.key("jobs")), 2)
        self.assertEqual(r.lrange(self.key("jobs")), ["b\r\nc", "a"])
        self.assertEqual(r.keys("pixq:{default}:*"), ["pixq:{default}:jobs"])
        self.assertEqual(r.type(self.key("jobs")), "list")
        self.assertIsNone(r.get("missing"))
        self.assertEqual(r.set("k", "v\u00e9"), "OK")
        self.assertEqual(r.get("k"), "v\u00e9")
        self.assertEqual(r.execute("HSET", "h", "f", 1), 1)
        self.assertEqual(r.hgetall("h"), {"f": "1"})
        with self.assertRaises(harness.RespError):
            r.execute("LPUSH", "k", "x")  # WRONGTYPE
        self.assertEqual(r.ping(), "PONG")  # still in sync after an error

    def test_s3rver_roundtrip_and_identify(self):
        jpeg = harness.corpus("autumn-2560x1600.jpg")
        self.assertEqual(self.s3.put_object("pixq-test", "in/a b.jpg", jpeg, "image/jpeg"), 200)
        self.assertEqual(self.s3_object("in/a b.jpg"), jpeg)
        self.assert_image(self.s3_object("in/a b.jpg"), "JPEG", 2560, 1600)
        self.assertEqual(self.s3.get_object("pixq-test", "nothing")[0], 404)
        self.assertEqual(self.s3.get_object("no-such-bucket", "x")[0], 404)
        self.assertTrue(self.s3_url("out/x.png").startswith("http://127.0.0.1:"))
        self.assert_image(harness.corpus("cascade-3840x2160.png"), "PNG", 3840, 2160)
        self.assert_image(harness.corpus("truchet-4096x4096.webp"), "WEBP", 4096, 4096)

    def test_source_server(self):
        url = self.src.add("/a.jpg", b"JPEGDATA")
        status, headers, body = harness.http_request(url)
        self.assertEqual((status, headers["Content-Type"], body), (200, "image/jpeg", b"JPEGDATA"))
        self.assertEqual(harness.http_request(url + "?x=1", "HEAD")[0], 200)
        self.assertEqual(harness.http_request(self.src.url("/none"))[0], 404)
        self.src.status["/a.jpg"] = 503
        self.assertEqual(harness.http_request(url)[0], 503)
        del self.src.status["/a.jpg"]
        self.assertEqual(self.src.requests("/a.jpg"), 3)
        self.assertEqual(self.src.requests("/none"), 1)

        self.src.stall("/a.jpg")
        got = []
        t = threading.Thread(target=lambda: got.append(harness.http_request(url, timeout=30)))
        t.start()
        harness.wait_until(lambda: self.src.requests("/a.jpg") == 4, 10, "the stalled request")
        time.sleep(0.2)
        self.assertEqual(got, [])  # still stalled
        self.src.release()
        t.join(10)
        self.assertEqual(got[0][2], b"JPEGDATA")

    def test_postback_receiver(self):
        url = self.postbacks.url("/pb/1")
        body = json.dumps({"results": {"job_id": "j1", "images": []}}).encode()
        status = harness.http_request(url, "POST", body, {"Content-Type": "application/json",
                                                          "X-Extra": "yes"})[0]
        self.assertEqual(status, 200)
        pb = self.wait_for_postback(5, path="/pb/1")
        self.assertEqual((pb.method, pb.path, pb.job_id), ("POST", "/pb/1", "j1"))
        self.assertEqual(pb.headers["content-type"], "application/json")
        self.assertEqual(pb.headers["x-extra"], "yes")

        # chunked body, and a queued error status
        self.postbacks.answer_with(500)
        with socket.create_connection((LOOPBACK, self.postbacks.port), timeout=10) as s:
            s.sendall(b"POST /pb/2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      b"b\r\n{\"results\":\r\n11\r\n{\"job_id\":\"j2\"}}\r\n0\r\n\r\n")
            self.assertIn(b" 500 ", s.makefile("rb").readline())
        self.assertEqual(self.wait_for_postback(5, job_id="j2").path, "/pb/2")
        with self.assertRaises(AssertionError):
            self.postbacks.wait_for_postback(0.2, path="/never")

    def test_helpers(self):
        job = self.make_job(self.src.url("/a.jpg"), "out/a.jpg", job_id="id1")
        self.assertEqual(job["functions"][0]["save"]["s3_destination"],
                         {"bucket": "pixq-test", "key": "out/a.jpg"})
        self.assertEqual(job["postback_url"], self.postbacks.url("/pb"))
        self.push_job(job)
        self.push_job("{not json")
        self.assertEqual(self.redis.lrange(self.key("jobs")), ["{not json", json.dumps(job)])
        self.redis.delete(self.key("jobs"))
        self.assert_queue_drained(2)
        self.redis.rpush(self.key("result:id1"), '{"results":{"job_id":"id1"}}')
        self.assertEqual(self.read_result("id1"), {"results": {"job_id": "id1"}})
        self.redis.rpush(self.key("active:w1"), "x")
        with self.assertRaises(AssertionError):
            self.assert_queue_drained(0.3)


class CleanupTest(unittest.TestCase):
    """A PixqTestCase tears everything down, whether its test passes or fails."""

    def setUp(self):
        self.saved_worker = CONFIG.worker
        self.addCleanup(setattr, CONFIG, "worker", self.saved_worker)
        fd, path = tempfile.mkstemp(prefix="pixq-fake-worker-")
        os.write(fd, FAKE_WORKER.encode())
        os.close(fd)
        os.chmod(path, 0o755)
        self.addCleanup(os.unlink, path)
        CONFIG.worker = path
        self.env_out = path + ".env"
        self.addCleanup(lambda: os.path.exists(self.env_out) and os.unlink(self.env_out))

    def run_inner(self, body, **attrs):
        seen = {}
        env_out = self.env_out

        class Inner(PixqTestCase):
            worker_env_extra = {"ENV_OUT": env_out}

            def test_it(self):
                seen.update(tmp=self.tmp, redis=self.redis_server.proc.pid,
                            s3=self.s3.proc.pid, worker=self.worker.pid,
                            http=(self.src.port, self.postbacks.port))
                harness.wait_until(lambda: os.path.exists(env_out), 10, "the fake worker")
                body(self)

        for k, v in attrs.items():
            setattr(Inner, k, v)
        result = unittest.TestResult()
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            Inner("test_it").run(result)
        return seen, result, stderr.getvalue()

    def assert_all_gone(self, seen):
        """The test's own servers and programs are gone (the process's s3rver stays: see
        SharedS3rverTest)."""
        for name in ("redis", "worker"):
            harness.wait_until(lambda: pid_gone(seen[name]), 5, "%s to be gone" % name)
        self.assertFalse(Path(seen["tmp"]).exists())
        for port in seen["http"]:
            with self.assertRaises(OSError):
                socket.create_connection((LOOPBACK, port), timeout=1).close()

    def test_passing_test_cleans_up(self):
        seen, result, err = self.run_inner(lambda t: None)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        self.assert_all_gone(seen)
        self.assertEqual(err, "")
        env = dict(line.split("=", 1) for line in Path(self.env_out).read_text().splitlines()
                   if "=" in line)
        self.assertEqual(env["PIXQ_QUEUE"], "default")
        self.assertEqual(env["AWS_ACCESS_KEY_ID"], "S3RVER")
        self.assertEqual(env["PIXQ_ALLOW_PRIVATE_NETWORKS"], "1")
        self.assertTrue(env["PIXQ_REDIS_URL"].startswith("redis://127.0.0.1:"))
        self.assertTrue(env["PIXQ_S3_ENDPOINT"].startswith("http://127.0.0.1:"))

    def test_failing_test_cleans_up_and_prints_logs(self):
        def fail(t):
            t.fail("on purpose")

        seen, result, err = self.run_inner(fail)
        self.assertEqual(len(result.failures), 1)
        self.assert_all_gone(seen)
        self.assertIn("worker-1 log", err)
        self.assertIn("s3rver log", err)

    def test_worker_that_ignores_sigterm_fails_the_test(self):
        seen, result, err = self.run_inner(lambda t: None,
                                           worker_env_extra={"ENV_OUT": self.env_out,
                                                             "IGNORE_TERM": "1"},
                                           worker_stop_timeout=1)
        self.assertFalse(result.wasSuccessful())
        self.assertIn("ignored SIGTERM", "".join(e[1] for e in result.failures))
        self.assertIn("worker-1 log", err)
        self.assert_all_gone(seen)

    def test_sanitizer_report_fails_the_test(self):
        seen, result, err = self.run_inner(lambda t: None, worker_env_extra={
            "ENV_OUT": self.env_out, "SAY": "==1==ERROR: LeakSanitizer: detected memory leaks"})
        self.assertEqual(len(result.failures), 1)
        self.assertIn("sanitizer report", result.failures[0][1])
        self.assert_all_gone(seen)

    def test_kill_worker_on_purpose(self):
        def crash_and_restart(t):
            first = t.worker
            t.assertEqual(t.kill_worker(first), -signal.SIGKILL)
            t.assertFalse(first.alive())
            os.unlink(env_out)
            t.worker = t.start_worker()
            harness.wait_until(lambda: os.path.exists(env_out), 10, "the second fake worker")
            t.check_workers()

        env_out = self.env_out
        seen, result, err = self.run_inner(crash_and_restart)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        self.assert_all_gone(seen)

    def test_worker_stopped_before_it_set_its_handlers(self):
        """A test that ends while a worker it started is still starting: the tear-down waits
        for the worker to log worker_start before its SIGTERM (else the signal's default action
        ends the worker, exit status -15, and the test fails)."""
        seen, result, err = self.run_inner(lambda t: None, worker_env_extra={
            "ENV_OUT": self.env_out, "START_DELAY": "1"})
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        self.assert_all_gone(seen)

    def test_worker_that_dies_is_noticed(self):
        def kill_worker(t):
            os.kill(t.worker.pid, signal.SIGKILL)
            t.wait_for_postback(10, path="/never")

        seen, result, err = self.run_inner(kill_worker)
        # once by the wait (it watches the worker), once by the tear-down (its exit status)
        self.assertEqual(len(result.failures), 2)
        self.assertIn("exited with status -9", result.failures[0][1])
        self.assertIn("exited with status -9 after SIGTERM", result.failures[1][1])
        self.assert_all_gone(seen)


class PngSizeTest(unittest.TestCase):
    """harness.png_size, identify()'s way around an identify process for well-formed PNGs."""

    def pngs(self):
        return sorted((CONFIG.data / "images").glob("*.png")) + sorted(
            (CONFIG.data / "corpus").glob("*.png"))

    def test_agrees_with_identify(self):
        paths = self.pngs()
        self.assertGreater(len(paths), 10)
        for path in paths:
            data = path.read_bytes()
            with self.subTest(path.name):
                size = harness.png_size(data)
                self.assertIsNotNone(size)
                self.assertEqual(("PNG",) + size, harness.magick_identify(data))
                self.assertEqual(harness.identify(data), ("PNG",) + size)

    def test_leaves_the_rest_to_identify(self):
        data = (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()
        idat = data.index(b"IDAT")
        flipped = bytearray(data)
        flipped[idat + 20] ^= 0x01
        interlaced = subprocess.run(["convert", "png:-", "-interlace", "PNG", "png:-"],
                                    input=data, capture_output=True, check=True).stdout
        cases = {
            "truncated": data[:len(data) // 2],
            "no IEND": data[:-12],
            "bytes after IEND": data + b"x",
            "a flipped bit": bytes(flipped),
            "interlaced": interlaced,
            "JPEG": harness.corpus("autumn-2560x1600.jpg"),
            "empty": b"",
        }
        for name, case in cases.items():
            with self.subTest(name):
                self.assertIsNone(harness.png_size(case))
        self.assertEqual(harness.identify(interlaced), ("PNG", 64, 64))  # by ImageMagick
        with self.assertRaises(AssertionError):
            harness.identify(data[:len(data) // 2])


# A test process with one s3rver test: prints its s3rver's pid and directory, its
# redis-server's pid and its temporary directory; argv[1] "kill" then SIGKILLs the process in the
# middle of the test.
S3RVER_PROCESS = """
import os, signal, sys, unittest
sys.path.insert(0, %r)
import harness

class T(harness.PixqTestCase):
    start_worker_in_setup = False

    def test_it(self):
        print(self.s3.proc.pid, self.s3.dir, self.redis_server.proc.pid, self.tmp, flush=True)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)

unittest.main(argv=["s3rver-process"])
"""


class SharedS3rverTest(unittest.TestCase):
    """One s3rver serves the tests of a process (harness.SharedS3rver): each test finds just its
    own buckets, empty, and the server ends with the process."""

    def run_inner(self, body, buckets):
        class Inner(PixqTestCase):
            start_worker_in_setup = False

            def test_it(self):
                body(self)

        Inner.buckets = buckets
        result = unittest.TestResult()
        with redirect_stderr(io.StringIO()):
            Inner("test_it").run(result)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)

    def test_each_test_gets_its_buckets_empty(self):
        seen = {}

        def fill(t):
            seen["pid"] = t.s3.proc.pid
            self.assertEqual(t.s3.bucket_names(), ["bkt-a", "bkt-b"])
            self.assertEqual(t.s3.put_object("bkt-a", "x/y.png", b"data"), 200)
            self.assertEqual(harness.http_request(t.s3.endpoint() + "/extra", "PUT")[0], 200)
            self.assertEqual(t.s3.bucket_names(), ["bkt-a", "bkt-b", "extra"])

        def look(t):
            self.assertEqual(t.s3.proc.pid, seen["pid"])  # the same server, not a new one
            self.assertEqual(t.s3.bucket_names(), ["bkt-a", "pixq-test"])
            self.assertEqual(t.s3.get_object("bkt-a", "x/y.png")[0], 404)
            self.assertEqual(t.s3.get_object("extra", "")[0], 404)
            self.assertEqual(t.s3.put_object("pixq-test", "k", b"v"), 200)

        self.run_inner(fill, ("bkt-a", "bkt-b"))
        self.run_inner(look, ("pixq-test", "bkt-a"))

    def test_a_dead_server_is_replaced(self):
        seen = {}

        def kill(t):
            seen["pid"] = t.s3.proc.pid
            t.s3.proc.kill()
            t.s3.proc.wait(10)

        def use(t):
            self.assertNotEqual(t.s3.proc.pid, seen["pid"])
            self.assertEqual(t.s3.put_object("pixq-test", "k", b"v"), 200)
            self.assertEqual(t.s3.get_object("pixq-test", "k")[2], b"v")

        self.run_inner(kill, ("pixq-test",))
        self.run_inner(use, ("pixq-test",))

    def test_a_hung_server_is_replaced(self):
        seen = {}

        def hang(t):
            seen["proc"] = t.s3.proc
            os.kill(t.s3.proc.pid, signal.SIGSTOP)  # alive, but answers nothing

        def use(t):
            self.assertNotEqual(t.s3.proc.pid, seen["proc"].pid)
            self.assertIsNotNone(seen["proc"].poll())  # the hung one was ended
            self.assertEqual(t.s3.put_object("pixq-test", "k", b"v"), 200)
            self.assertEqual(t.s3.get_object("pixq-test", "k")[2], b"v")

        shared = harness.SharedS3rver
        old = shared.ANSWER_TIMEOUT
        shared.ANSWER_TIMEOUT = 1  # not the 10 s a test's emptying may take
        try:
            self.run_inner(hang, ("pixq-test",))
            self.run_inner(use, ("pixq-test",))
        finally:
            shared.ANSWER_TIMEOUT = old
            if seen["proc"].poll() is None:
                os.kill(seen["proc"].pid, signal.SIGCONT)

    def run_process(self, how):
        script = S3RVER_PROCESS % str(Path(harness.__file__).parent)
        proc = subprocess.run([sys.executable, "-c", script, how], capture_output=True,
                              text=True, timeout=harness.scaled(60))
        fields = proc.stdout.split()
        self.assertEqual(len(fields), 4, proc.stdout + proc.stderr)
        s3_pid, s3_dir, redis_pid = int(fields[0]), Path(fields[1]), int(fields[2])
        # what a SIGKILLed process leaves: its test's directory and redis-server (and, when the
        # test fails, its s3rver)
        self.addCleanup(shutil.rmtree, fields[3], True)
        for pid in (redis_pid, s3_pid):
            self.addCleanup(lambda pid=pid: pid_gone(pid) or os.kill(pid, signal.SIGKILL))
        return proc, s3_pid, s3_dir

    def test_server_ends_with_the_process(self):
        proc, pid, directory = self.run_process("pass")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        harness.wait_until(lambda: pid_gone(pid), 5, "s3rver to be gone")
        self.assertFalse(directory.exists())

    def test_server_ends_when_the_process_is_killed(self):
        proc, pid, directory = self.run_process("kill")
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        harness.wait_until(lambda: pid_gone(pid), 5, "s3rver to be gone")
        self.addCleanup(shutil.rmtree, directory.parent, True)


class StackShTest(unittest.TestCase):
    """deploy/stack.sh start/status/stop."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pixq-stack-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(self.stack, "stop")

    def stack(self, cmd, **env):
        e = harness.clean_env()
        e.update(env)
        return subprocess.run([str(STACK_SH), cmd, str(self.dir)], env=e, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)

    def test_start_status_stop(self):
        r = self.stack("start", PIXQ_STACK_BUCKETS="first-bkt, second-bkt")
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(line.split("=", 1)
                   for line in (self.dir / "stack.env").read_text().splitlines())
        self.assertEqual(sorted(env), sorted([
            "PIXQ_REDIS_URL", "PIXQ_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION", "PIXQ_DEFAULT_BUCKET"]))
        self.assertEqual((env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                          env["AWS_REGION"], env["PIXQ_DEFAULT_BUCKET"]),
                         ("S3RVER", "S3RVER", "us-east-1", "first-bkt"))
        m = re.fullmatch(r"redis://127\.0\.0\.1:(\d+)/0", env["PIXQ_REDIS_URL"])
        self.assertIsNotNone(m, env["PIXQ_REDIS_URL"])
        client = Redis(LOOPBACK, int(m.group(1)))
        self.addCleanup(client.close)
        self.assertEqual(client.ping(), "PONG")
        self.assertEqual(client.execute("CONFIG", "GET", "bind"), ["bind", "127.0.0.1"])
        endpoint = env["PIXQ_S3_ENDPOINT"]
        self.assertRegex(endpoint, r"^http://127\.0\.0\.1:\d+$")
        for b in ("first-bkt", "second-bkt"):
            self.assertEqual(harness.http_request(endpoint + "/" + b)[0], 200)
        self.assertEqual(r.stdout, (self.dir / "stack.env").read_text())

        self.assertEqual(self.stack("status").returncode, 0)
        again = self.stack("start")  # already running: same stack
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout, r.stdout)

        pids = [int((self.dir / f).read_text()) for f in ("redis.pid", "s3rver.pid")]
        stop = self.stack("stop")
        self.assertEqual(stop.returncode, 0, stop.stderr)
        for pid in pids:
            self.assertTrue(pid_gone(pid), pid)
        self.assertFalse((self.dir / "stack.env").exists())
        self.assertNotEqual(self.stack("status").returncode, 0)
        self.assertEqual(self.stack("stop").returncode, 0)  # idempotent

    def test_stop_of_nothing(self):
        self.assertEqual(self.stack("stop").returncode, 0)
        self.assertEqual(subprocess.run([str(STACK_SH), "stop", str(self.dir / "none")],
                                        timeout=30).returncode, 0)


if __name__ == "__main__":
    harness.main()
