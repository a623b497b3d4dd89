#!/usr/bin/python3
"""Hostile input, network and job side: what a stranger's job may make the worker reach, ask it
to do, and read from it. (Hostile images are tests/integration/test_hostile_images.py.)

Every case runs the real pixq-worker as deployed: PIXQ_ALLOW_PRIVATE_NETWORKS=0, with
PIXQ_ALLOWED_NETWORKS naming only 127.0.0.9, where this test's source server and postback
receiver listen. Everything else on this machine (127.0.0.1, 127.0.0.2, ::1, which serve the same
image, so that a guard that let a request through would make the job succeed) and every private
range must be refused. S3 (s3rver on 127.0.0.1) is the deployment's own endpoint and is not
guarded. Each case asserts the worker's answer (the error in the postback, the `dead` entry, or
the log line when no postback can be sent), that nothing reached the forbidden server, and then
that the same worker still processes a good job.

Also here: signed postbacks (checked with Python's hmac), Redis AUTH with a password and with an
ACL user, and a full run whose logs, postbacks, stats and dead entries must not contain any of
the configured secrets.

Run by meson (suite integration), or by hand:
    /usr/bin/python3 tests/integration/test_hostile.py --worker build/worker/pixq-worker \\
        --pixq build/producer/pixq --data tests/data [-k Redirect]
"""

import gzip
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import (  # noqa: E402
    CONFIG,
    LOOPBACK,
    PixqTestCase,
    PostbackReceiver,
    Redis,
    RedisServer,
    RespError,
    SourceServer,
    scaled,
)

ALLOWED = "127.0.0.9"  # the one private address jobs may reach: this test's servers
FORBIDDEN_V4 = "127.0.0.2"  # loopback, not allowed: serves the same image
TIMEOUT_S = 40
# what pixq adds to Redis's NOAUTH, which it answers a URL without a password
NO_PASSWORD = " (PIXQ_REDIS_URL gives no password: redis://[USER]:PASSWORD@HOST:PORT/DB)"


def image_bytes():
    return (CONFIG.data / "images" / "autumn-320x200.jpg").read_bytes()


def ipv6_loopback_works():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# a source server with the tricks hostile sources play


class _TrickHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.owner.serve(self)


class TrickServer(harness._Server):
    """Serves, on `host`, the paths a test sets up:

    redirect(path, location): answers 302 with that Location;
    files[path] = bytes: answers 200 with them;
    chunked_forever(path): a chunked response that never ends (counts what it sent);
    trickle(path): declares 100000 bytes and sends one a second;
    gzip_bomb(path): 10 MB of zeros gzip-compressed, sent with Content-Encoding: gzip;
    huge_header(path): the image after a header line of 300 KiB.

    requests[path] lists the request headers of each request (lower-case names)."""

    def __init__(self, host=ALLOWED):
        self.files = {}
        self.redirects = {}
        self.kinds = {}
        self.requests = {}
        self.sent = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(_TrickHandler, host)

    def url(self, path):
        return self.base_url() + path

    def redirect(self, path, location):
        self.redirects[path] = location
        return self.url(path)

    def special(self, path, kind):
        self.kinds[path] = kind
        return self.url(path)

    def stop(self):
        self.stopping.set()
        super().stop()

    def serve(self, h):
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.requests.setdefault(path, []).append({k.lower(): v for k, v in h.headers.items()})
        try:
            self._answer(h, path)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _answer(self, h, path):
        if path in self.redirects:
            self._reply(h, 302, b"moved\n", {"Location": self.redirects[path]})
        elif path in self.files:
            self._reply(h, 200, self.files[path], {"Content-Type": "image/jpeg"})
        elif self.kinds.get(path) == "chunked":
            self._chunked_forever(h, path)
        elif self.kinds.get(path) == "trickle":
            self._trickle(h)
        elif self.kinds.get(path) == "big503":  # an error page larger than the cap
            self._reply(h, 503, b"x" * (2 * 1024 * 1024), {"Content-Type": "text/plain"})
        elif self.kinds.get(path) == "big302":  # a redirect whose page is over the cap
            self._reply(h, 302, b"x" * (2 * 1024 * 1024), {"Location": "/ok.jpg"})
        elif self.kinds.get(path) == "declared":  # says it is over the cap, then sends slowly
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(64 * 1024 * 1024))
            h.end_headers()
            h.wfile.write(image_bytes()[:1024])
            h.wfile.flush()
            self.stopping.wait(30)
            h.close_connection = True
        elif self.kinds.get(path) == "big404":  # a final answer whose page is over the cap
            self._reply(h, 404, b"x" * (2 * 1024 * 1024), {"Content-Type": "text/html"})
        elif self.kinds.get(path) == "huge_header":  # one header line over libcurl's 100 KiB
            self._reply(h, 200, image_bytes(), {"Content-Type": "image/jpeg",
                                                "X-Big": "b" * (300 * 1024)})
            h.close_connection = True  # curl drops it: no read of a next request to fail
        elif self.kinds.get(path) == "gzip":
            body = gzip.compress(b"\0" * (10 * 1024 * 1024))
            self._reply(h, 200, body, {"Content-Type": "image/png", "Content-Encoding": "gzip"})
        else:
            self._reply(h, 404, b"not found\n", {})

    @staticmethod
    def _reply(h, status, body, headers):
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _chunked_forever(self, h, path):
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"\x89PNG" + b"\0" * (64 * 1024 - 4)
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        while not self.stopping.is_set():
            h.wfile.write(frame)
            with self.lock:
                self.sent[h.path] = self.sent.get(h.path, 0) + len(chunk)
            if self.sent[h.path] > 512 * 1024 * 1024:
                break  # a guard that never stops reading fails the test, not the machine

    def _trickle(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        h.wfile.flush()
        for _ in range(120):
            if self.stopping.wait(1.0):
                return
            h.wfile.write(b"\xff")
            h.wfile.flush()


# ---------------------------------------------------------------------------------------------
# Redis with AUTH


class AuthRedis(Redis):
    """The harness's RESP client, authenticating (AUTH [user] password) on connect."""

    def __init__(self, host, port, password, username=None, **kw):
        super().__init__(host, port, **kw)
        self.password, self.username = password, username

    def connect(self):
        if self._sock is None:
            super().connect()
            args = [self.username, self.password] if self.username else [self.password]
            self.execute("AUTH", *args)
        return self


class AuthRedisServer(RedisServer):
    """redis-server that requires a password (requirepass) or an ACL user (the default user
    switched off); url() carries the credentials as PIXQ_REDIS_URL does."""

    def __init__(self, directory, password, username=None):
        super().__init__(directory)
        self.password, self.username = password, username

    def _write_conf(self):
        conf = super()._write_conf()
        with open(conf, "a") as f:
            if self.username:
                f.write("user default off\nuser %s on >%s ~* &* +@all\n"
                        % (self.username, self.password))
            else:
                f.write("requirepass %s\n" % self.password)
        return conf

    def client(self, timeout=10.0):
        return AuthRedis(LOOPBACK, self.port, self.password, self.username, timeout=timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline and self.alive():
            try:
                c = self.client(timeout=1)
                try:
                    if c.ping() == "PONG":
                        return True
                finally:
                    c.close()
            except (OSError, RespError):
                pass
            time.sleep(0.02)
        return False

    def url(self, db=0):
        user = urllib.parse.quote(self.username or "", safe="")
        return "redis://%s:%s@%s:%d/%d" % (user, urllib.parse.quote(self.password, safe=""),
                                          LOOPBACK, self.port, db)


class DatabaseRedis(Redis):
    """The harness's RESP client in database `db` (SELECT on connect)."""

    def __init__(self, host, port, db, **kw):
        super().__init__(host, port, **kw)
        self.db = db

    def connect(self):
        if self._sock is None:
            super().connect()
            self.execute("SELECT", self.db)
        return self


class UnixSocketRedisServer(RedisServer):
    """redis-server on a unix socket (`socket`, its folder's redis.sock) besides its loopback
    port."""

    def __init__(self, directory):
        super().__init__(directory)
        self.socket = self.dir / "redis.sock"

    def _write_conf(self):
        conf = super()._write_conf()
        with open(conf, "a") as f:
            f.write('unixsocket "%s"\nunixsocketperm 700\n' % self.socket)
        return conf


# ---------------------------------------------------------------------------------------------
# the test case


class HostileTestCase(PixqTestCase):
    """A worker that may reach public addresses and ALLOWED only; sources and postbacks on
    ALLOWED, the same image also served on forbidden loopback addresses."""

    start_worker_in_setup = False
    buckets = ("pixq-test", "other-bucket")
    guard_env = {
        "PIXQ_ALLOW_PRIVATE_NETWORKS": "0",
        "PIXQ_ALLOWED_NETWORKS": ALLOWED + "/32",
        "PIXQ_MAX_ATTEMPTS": "1",
        "PIXQ_CONNECT_TIMEOUT_MS": "3000",
    }

    def setUp(self):
        super().setUp()
        self.image = image_bytes()
        self.loop_src = self.src  # the harness's, on 127.0.0.1: not allowed
        self.loop_src.add("/ok.jpg", self.image)
        self.loop_postbacks = self.postbacks  # on 127.0.0.1: not allowed
        self.src = SourceServer(host=ALLOWED)
        self.addCleanup(self.src.stop)
        self.src.add("/ok.jpg", self.image)
        self.postbacks = PostbackReceiver(host=ALLOWED)
        self.addCleanup(self.postbacks.stop)
        self.tricks = TrickServer(ALLOWED)
        self.addCleanup(self.tricks.stop)
        self.tricks.files["/ok.jpg"] = self.image
        self.addCleanup(self._stop_programs)  # programs end before the servers above
        self.good_jobs = 0

    def start(self, **extra):
        env = dict(self.guard_env)
        env.update({k: str(v) for k, v in extra.items()})
        self.worker = self.start_worker(**env)
        return self.worker

    # -- jobs and answers ----------------------------------------------------------------------

    def job(self, name, src=None, **fields):
        """A one-resize job with job_id hostile-<name>, posting back to ALLOWED."""
        job = {
            "job_id": "hostile-" + name,
            "src": src if src is not None else self.src.url("/ok.jpg"),
            "postback_url": self.postbacks.url("/pb"),
            "functions": [{"name": "resize_to_fit", "params": {"width": 40},
                           "save": {"image_identifier": "thumb",
                                    "s3_destination": {"bucket": "pixq-test",
                                                       "key": "out/%s.jpg" % name}}}],
        }
        job.update(fields)
        return job

    def dead_entries(self):
        return [json.loads(d) for d in self.redis.lrange(self.key("dead"), 0, -1)]

    def dead_entry(self, job_id=None, timeout=TIMEOUT_S):
        def find():
            for d in self.dead_entries():
                if job_id is None or d.get("job_id") == job_id:
                    return d
            return None
        return self.wait_until(find, timeout, "a dead entry for %s" % job_id)

    def expect_failure(self, job, fragment, timeout=TIMEOUT_S):
        """Push `job`; its postback carries an error with `fragment`, and so does its dead
        entry. Returns the postback."""
        self.push_job(job)
        job_id = job["job_id"]
        pb = self.wait_for_postback(timeout, job_id=job_id)
        errors = pb.results.get("errors") or []
        self.assertTrue(any(fragment in e for e in errors),
                        "no error with %r in the postback: %r" % (fragment, errors))
        self.assertTrue(all(e.startswith("Image processing failed.") for e in errors), errors)
        dead = self.dead_entry(job_id)
        self.assertIn(fragment, dead["error"])
        return pb

    def assert_still_serving(self):
        """The same worker processes a good job: postback without errors, object in S3."""
        self.good_jobs += 1
        name = "good-%d" % self.good_jobs
        self.push_job(self.job(name))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-" + name)
        self.assertNotIn("errors", pb.results, pb.body[:500])
        self.assert_image(self.s3_object("out/%s.jpg" % name), "JPEG", 40, 25)
        self.check_workers()

    def assert_refused(self, src, fragment, server=None, path="/ok.jpg"):
        """A job from `src` fails with `fragment` and `server` saw no request for `path`."""
        name = "src-%d" % (abs(hash(src)) % 10**8)
        t0 = time.monotonic()
        self.expect_failure(self.job(name, src), fragment)
        if server is not None:
            self.assertEqual(server.requests(path), 0, "the forbidden server was reached")
        return time.monotonic() - t0


class SourceAddressTest(HostileTestCase):
    """src on addresses the worker must not reach."""

    def test_loopback_other_address(self):
        self.start()
        other = SourceServer(host=FORBIDDEN_V4)
        self.addCleanup(other.stop)
        other.add("/ok.jpg", self.image)
        self.assert_refused(other.url("/ok.jpg"),
                            "Failed to download %s: address %s is not allowed (loopback)"
                            % (other.url("/ok.jpg"), FORBIDDEN_V4), other)
        self.assert_still_serving()

    def test_refusals_are_final(self):
        """An address the policy refuses is refused again on every run: the job fails at its
        first run, not after PIXQ_MAX_ATTEMPTS (the class's other tests run once each, which
        cannot tell a final failure from a passing one). Refusing them as passing failures
        (run.c's final without resp.refused) fails here."""
        self.start(PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=50, PIXQ_RETRY_MAX_MS=100)
        for src, why in ((self.loop_src.url("/ok.jpg"), "(loopback)"),
                         ("http://10.11.12.13/ok.jpg", "(private)"),
                         ("http://169.254.169.254/latest/meta-data/", "(link-local)")):
            name = "final-%s" % why.strip("()")
            self.expect_failure(self.job(name, src), why)
            self.assertEqual(self.dead_entry("hostile-" + name)["attempts"], 1, src)
        self.assertEqual(self.worker.log_events("job_retry"), [])
        self.assertEqual(self.loop_src.requests("/ok.jpg"), 0)
        self.assert_still_serving()

    def test_loopback_127_0_0_1(self):
        self.start()
        self.assert_refused(self.loop_src.url("/ok.jpg"),
                            "address 127.0.0.1 is not allowed (loopback)", self.loop_src)
        self.assert_still_serving()

    def test_ipv6_loopback(self):
        if not ipv6_loopback_works():
            self.skipTest("no IPv6 loopback on this machine")
        self.start()
        v6 = SourceServer(host="::1")
        self.addCleanup(v6.stop)
        v6.add("/ok.jpg", self.image)
        self.assert_refused(v6.url("/ok.jpg"), "address ::1 is not allowed (loopback)", v6)
        self.assert_still_serving()

    def test_private_10(self):
        self.start()
        took = self.assert_refused("http://10.11.12.13/ok.jpg",
                                   "address 10.11.12.13 is not allowed (private)")
        self.assertLess(took, scaled(3), "refused before connecting, not by a timeout")
        self.assert_still_serving()

    def test_cloud_metadata(self):
        self.start()
        self.assert_refused("http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                            "address 169.254.169.254 is not allowed (link-local)")
        # README's example, word for word, in the postback, the dead entry and the log
        why = ("Failed to download http://169.254.169.254/latest/meta-data/: address "
               "169.254.169.254 is not allowed (link-local)")
        pb = self.expect_failure(self.job("readme-meta", "http://169.254.169.254/latest/"
                                          "meta-data/"), why)
        self.assertEqual(pb.results["errors"], ["Image processing failed. " + why])
        failed = self.wait_until(
            lambda: [ev for ev in self.worker.log_events("job_failed")
                     if ev.get("job_id") == "hostile-readme-meta"], TIMEOUT_S, "job_failed")
        self.assertIn(why, failed[0].get("error", ""), failed)
        self.assert_still_serving()

    def test_localhost_name(self):
        self.start()
        self.assert_refused("http://localhost:%d/ok.jpg" % self.loop_src.port,
                            "is not allowed (loopback)", self.loop_src)
        self.assert_still_serving()

    def test_public_looking_name_resolving_to_loopback(self):
        self.start()
        self.assert_refused("http://pixq-test.localhost:%d/ok.jpg" % self.loop_src.port,
                            "is not allowed (loopback)", self.loop_src)
        self.assert_still_serving()

    def test_odd_ipv4_spellings(self):
        """Decimal, hex and short forms of 127.0.0.1: what is checked is the address connected
        to, not the text."""
        self.start()
        port = self.loop_src.port
        for i, host in enumerate(("2130706433", "0x7f.0.0.1", "127.1", "0177.0.0.1")):
            with self.subTest(host=host):
                self.expect_failure(self.job("odd-%d" % i, "http://%s:%d/ok.jpg" % (host, port)),
                                    "address 127.0.0.1 is not allowed (loopback)")
        self.assertEqual(self.loop_src.requests("/ok.jpg"), 0)
        self.assert_still_serving()

    def test_other_ranges(self):
        """One job per range, all refused before connecting, each naming its range."""
        self.start()
        cases = [
            ("100.64.0.1", "carrier-grade NAT"), ("172.16.5.4", "private"),
            ("192.168.1.1", "private"), ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"), ("255.255.255.255", "broadcast"),
            ("198.18.0.1", "reserved"), ("240.0.0.1", "reserved"),
            ("[::]", "unspecified"), ("[fd12:3456::1]", "unique-local"),
            ("[fe80::1]", "link-local"), ("[ff02::1]", "multicast"),
            ("[::ffff:127.0.0.1]", "loopback"), ("[::ffff:169.254.169.254]", "link-local"),
            ("[64:ff9b::a9fe:a9fe]", "link-local"), ("[2002:a00:1::1]", "private"),
        ]
        jobs = []
        for i, (host, cls) in enumerate(cases):
            job = self.job("range-%d" % i, "http://%s/ok.jpg" % host)
            jobs.append((job, host, cls))
            self.push_job(job)
        for job, host, cls in jobs:
            with self.subTest(host=host):
                pb = self.wait_for_postback(TIMEOUT_S, job_id=job["job_id"])
                text = " ".join(pb.results.get("errors") or [])
                self.assertIn("is not allowed (%s)" % cls, text)
                self.assertIn(host.strip("[]").split("%")[0].lower(), text)
                self.assertIn("is not allowed (%s)" % cls, self.dead_entry(job["job_id"])["error"])
        self.assert_still_serving()

    def test_composite_and_tile_sources(self):
        """Sources inside function parameters go through the same guard."""
        self.start()
        job = self.job("composite")
        job["functions"] = [{"name": "composite", "params": {"src": "http://10.0.0.1/logo.png"},
                             "save": {"image_identifier": "c"}}]
        self.expect_failure(job, "address 10.0.0.1 is not allowed (private)")
        job = self.job("tile")
        job["functions"] = [{"name": "tile",
                             "params": {"src": self.loop_src.url("/ok.jpg")},
                             "save": {"image_identifier": "t"}}]
        self.expect_failure(job, "address 127.0.0.1 is not allowed (loopback)")
        self.assertEqual(self.loop_src.requests("/ok.jpg"), 0)
        self.assert_still_serving()

    def test_other_function_sources(self):
        """append's other_images (second of two, after an allowed one), stegano's watermark_url
        and add_profile's src are fetched through the same guard."""
        self.start()
        cases = [
            ("append", {"other_images": [self.src.url("/ok.jpg"), self.loop_src.url("/a.png")]},
             "address 127.0.0.1 is not allowed (loopback)"),
            ("stegano", {"watermark_url": "http://169.254.169.254/wm.png"},
             "address 169.254.169.254 is not allowed (link-local)"),
            ("add_profile", {"src": "http://[::ffff:10.1.2.3]/p.icc"},
             "address ::ffff:10.1.2.3 is not allowed (private)"),
        ]
        for fn, params, why in cases:
            job = self.job("fn-" + fn)
            job["functions"] = [{"name": fn, "params": params, "save": {"image_identifier": fn}}]
            self.push_job(job)
        for fn, params, why in cases:
            with self.subTest(fn=fn):
                pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-fn-" + fn)
                self.assertIn(why, " ".join(pb.results.get("errors") or []), pb.body[:500])
        self.assertEqual(self.loop_src.requests("/a.png"), 0)
        self.assert_still_serving()

    def test_s3_endpoint_is_not_a_source(self):
        """S3 on 127.0.0.1 is the deployment's and unguarded for S3 requests, but a job cannot
        fetch from it as a plain URL, not even over the live keep-alive connection the upload
        left."""
        self.start()
        self.assert_still_serving()  # an upload: a connection to s3rver stays open
        url = self.s3_url("out/good-1.jpg")
        self.expect_failure(self.job("s3-as-url", url),
                            "address 127.0.0.1 is not allowed (loopback)")
        self.assert_still_serving()

    def test_schemes(self):
        self.start()
        for i, src in enumerate(("file:///etc/passwd", "ftp://%s/ok.jpg" % ALLOWED,
                                 "gopher://127.0.0.1:6379/_INFO", "dict://127.0.0.1:6379/info",
                                 "//%s/ok.jpg" % ALLOWED, "%s/ok.jpg" % ALLOWED)):
            with self.subTest(src=src):
                self.expect_failure(self.job("scheme-%d" % i, src),
                                    "only http:// and https:// URLs are allowed")
        self.assert_still_serving()

    def test_password_in_url_stays_out_of_errors(self):
        self.start()
        src = "http://user:hunter2-in-url@10.1.1.1/ok.jpg"
        pb = self.expect_failure(self.job("userinfo", src), "address 10.1.1.1 is not allowed")
        self.assertNotIn(b"hunter2-in-url", pb.body)
        self.assertIn("user:***@10.1.1.1", " ".join(pb.results["errors"]))
        self.assertNotIn("hunter2-in-url", self.dead_entry("hostile-userinfo")["error"])
        # a '/' left unencoded in the password ends the URL's host early: hidden all the same
        self.push_job(self.job("userinfo-slash", "http://user:hun/ter2-in-url@10.1.1.1/ok.jpg"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-userinfo-slash")
        self.assertTrue(pb.results.get("errors"), pb.body[:500])
        self.assertNotIn(b"ter2-in-url", pb.body)
        self.assertNotIn("ter2-in-url", self.dead_entry("hostile-userinfo-slash")["error"])
        self.assertNotIn("ter2-in-url", self.worker.log_path.read_text(errors="replace"))

    def test_function_src_error_redacted_quoted_once_with_reason(self):
        """A composite's src that fails: its password shows as ***, the URL appears once, and the
        reason survives ERR_MSG_MAX even after a long presigned URL."""
        self.start()
        url = self.src.url("/missing.png").replace("http://", "http://user:hunter2secret@")
        job = self.job("fn-userinfo")
        job["functions"] = [{"name": "composite", "params": {"src": url},
                             "save": {"image_identifier": "c"}}]
        pb = self.expect_failure(job, "server answered HTTP 404")
        error = pb.results["errors"][0]
        self.assertNotIn(b"hunter2secret", pb.body)
        self.assertNotIn("hunter2secret", self.dead_entry("hostile-fn-userinfo")["error"])
        self.assertIn("Function 'composite' could not load src", error)
        self.assertIn("user:***@", error)
        self.assertEqual(error.count("/missing.png"), 1, error)
        # a src that is no image: the error quotes it itself, its password hidden too
        self.src.add("/junk.png", b"not an image\n" * 10)
        job = self.job("fn-junk")
        job["functions"] = [{"name": "composite", "params": {"src": url.replace("missing", "junk")},
                             "save": {"image_identifier": "c"}}]
        pb = self.expect_failure(job, "could not load src 'http://user:***@")
        self.assertNotIn(b"hunter2secret", pb.body)
        self.src.status["/signed.png"] = 403
        url = self.src.url("/signed.png?X-Amz-Signature=")
        url += "f" * (300 - len(url))
        job = self.job("fn-presigned")
        job["functions"] = [{"name": "composite", "params": {"src": url},
                             "save": {"image_identifier": "c"}}]
        pb = self.expect_failure(job, "server answered HTTP 403")
        error = pb.results["errors"][0]
        self.assertEqual(error.count("/signed.png"), 1, error)
        # the presigned URL's signature is a credential: shown as a password is, ***
        self.assertIn(url.replace("f" * (300 - len(url.rstrip("f"))), "***"), error)
        self.assertNotIn("ffff", error)
        self.assert_still_serving()

    def test_presigned_src_error_hides_its_signature_and_token(self):
        """A presigned URL's signature and session token grant access until it expires: a src
        that fails shows them as *** in the postback, the dead entry and the log (all three
        carried them whole); its expiry and key id, which tell why S3 refused it, stay."""
        self.start()
        self.src.status["/presigned.jpg"] = 403
        url = self.src.url("/presigned.jpg?X-Amz-Credential=AKIDEXAMPLE%2F20261207"
                           "&X-Amz-Expires=60&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN"
                           "&X-Amz-Signature=5d672d79c")
        shown = url.replace("FwoGZXIvYXdzEXAMPLETOKEN", "***").replace("5d672d79c", "***")
        pb = self.expect_failure(self.job("presigned", url),
                                 "Failed to download %s: server answered HTTP 403" % shown)
        failed = self.worker.log_events("job_failed")
        self.assertIn(shown, failed[0]["error"])
        for secret in (b"EXAMPLETOKEN", b"5d672d79c"):
            self.assertNotIn(secret, pb.body)
            self.assertNotIn(secret, self.dead_entry("hostile-presigned")["error"].encode())
            self.assertNotIn(secret, self.worker.log_path.read_bytes())
        self.assert_still_serving()


class RedirectTest(HostileTestCase):
    """Every hop is checked; at most PIXQ_MAX_REDIRECTS (3) are followed."""

    def test_redirect_to_loopback(self):
        self.start()
        other = SourceServer(host=FORBIDDEN_V4)
        self.addCleanup(other.stop)
        other.add("/ok.jpg", self.image)
        src = self.tricks.redirect("/r", other.url("/ok.jpg"))
        pb = self.expect_failure(self.job("redir-loop", src),
                                 "address %s is not allowed (loopback)" % FORBIDDEN_V4)
        self.assertIn("redirected to %s" % other.url("/ok.jpg"), pb.results["errors"][0])
        self.assertEqual(other.requests("/ok.jpg"), 0)
        self.assertEqual(len(self.tricks.requests["/r"]), 1)
        self.assert_still_serving()

    def test_redirect_to_a_url_with_a_password(self):
        """The refused hop a redirect led to is named in the error: a password in it is shown
        as *** (README, Security), in the postback, the dead entry and the log."""
        self.start()
        other = SourceServer(host=FORBIDDEN_V4)
        self.addCleanup(other.stop)
        other.add("/ok.jpg", self.image)
        hop = other.url("/ok.jpg").replace("http://", "http://hopuser:hop-pw-81d2@")
        src = self.tricks.redirect("/r-pw", hop)
        pb = self.expect_failure(self.job("redir-pw", src),
                                 "address %s is not allowed (loopback) (redirected to %s)"
                                 % (FORBIDDEN_V4, hop.replace("hop-pw-81d2", "***")))
        self.assertNotIn(b"hop-pw-81d2", pb.body)
        self.assertNotIn("hop-pw-81d2", self.dead_entry("hostile-redir-pw")["error"])
        self.wait_until(lambda: [e for e in self.worker.log_events("job_failed")
                                 if e.get("job_id") == "hostile-redir-pw"], 10, "job_failed")
        self.assertNotIn("hop-pw-81d2", self.worker.log_path.read_text(errors="replace"))
        self.assertEqual(other.requests("/ok.jpg"), 0)
        self.assert_still_serving()

    def test_redirect_to_other_port_by_name(self):
        self.start()
        src = self.tricks.redirect("/r", "http://localhost:%d/ok.jpg" % self.loop_src.port)
        self.expect_failure(self.job("redir-name", src), "is not allowed (loopback)")
        self.assertEqual(self.loop_src.requests("/ok.jpg"), 0)
        self.assert_still_serving()

    def test_redirect_to_metadata_and_ipv6(self):
        self.start()
        src = self.tricks.redirect("/r1", "http://169.254.169.254/latest/meta-data/")
        self.expect_failure(self.job("redir-meta", src), "169.254.169.254 is not allowed")
        src = self.tricks.redirect("/r2", "http://[::1]:%d/ok.jpg" % self.loop_src.port)
        self.expect_failure(self.job("redir-v6", src), "address ::1 is not allowed (loopback)")
        self.assert_still_serving()

    def test_redirect_to_other_scheme(self):
        self.start()
        src = self.tricks.redirect("/r", "file:///etc/passwd")
        pb = self.expect_failure(self.job("redir-file", src), "Failed to download")
        self.assertIn("file", pb.results["errors"][0].lower())
        self.assertNotIn("root:", pb.body.decode())
        self.assert_still_serving()

    def test_redirect_with_a_page_over_the_cap(self):
        # libcurl skips the page of a redirect it follows: it failed the download as "larger
        # than the limit" (CURLOPT_MAXFILESIZE holding its Content-Length against the cap)
        self.start(PIXQ_MAX_SRC_BYTES=1048576)
        self.tricks.files["/ok.jpg"] = self.image
        self.push_job(self.job("big302", self.tricks.special("/big302", "big302")))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-big302")
        self.assertNotIn("errors", pb.results, pb.body[:400])
        self.assertEqual(len(self.tricks.requests["/ok.jpg"]), 1)
        # an image that says it is over the cap still fails as it says so, its body unread
        t0 = time.monotonic()
        self.expect_failure(self.job("declared", self.tricks.special("/big.jpg", "declared")),
                            "response larger than the limit of 1048576 bytes "
                            "(PIXQ_MAX_SRC_BYTES)")
        self.assertLess(time.monotonic() - t0, scaled(8), "the body was read")
        self.assertEqual(self.worker.log_events("job_retry"), [])

    def test_redirect_limit(self):
        # runs again allowed, so that a too many redirects taken for a passing failure shows
        self.start(PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=50, PIXQ_RETRY_MAX_MS=100)
        t = self.tricks
        t.redirect("/a4", t.url("/a3"))
        t.redirect("/a3", t.url("/a2"))
        t.redirect("/a2", t.url("/a1"))
        t.redirect("/a1", t.url("/ok.jpg"))
        # three redirects are followed...
        self.push_job(self.job("three", t.url("/a3")))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-three")
        self.assertNotIn("errors", pb.results, pb.body[:400])
        # ...four are not
        pb = self.expect_failure(self.job("four", t.url("/a4")), "Maximum (3) redirects followed")
        # final (README, PIXQ_MAX_ATTEMPTS): not run again as a passing failure would be
        self.assertEqual(self.dead_entry("hostile-four")["attempts"], 1)
        self.assertNotIn("the job ran", pb.results["errors"][0])
        self.assert_still_serving()

    def test_redirect_limit_as_set(self):
        """PIXQ_MAX_REDIRECTS reaches the download (only its default, 3, was tested): with 1,
        one redirect is followed, a second is not."""
        self.start(PIXQ_MAX_REDIRECTS=1)
        t = self.tricks
        t.redirect("/b2", t.url("/b1"))
        t.redirect("/b1", t.url("/ok.jpg"))
        self.push_job(self.job("one-hop", t.url("/b1")))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-one-hop")
        self.assertNotIn("errors", pb.results, pb.body[:400])
        self.expect_failure(self.job("two-hops", t.url("/b2")), "Maximum (1) redirects followed")
        self.assert_still_serving()


class TransferTest(HostileTestCase):
    """The byte cap while reading, the low-speed limit, no content decoding."""

    def test_chunked_source_larger_than_cap(self):
        self.start(PIXQ_MAX_SRC_BYTES=1048576, PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=100,
                   PIXQ_RETRY_MAX_MS=200)
        src = self.tricks.special("/endless.png", "chunked")
        self.expect_failure(self.job("chunked", src),
                            "response larger than the limit of 1048576 bytes "
                            "(PIXQ_MAX_SRC_BYTES)")
        sent = self.tricks.sent.get("/endless.png", 0)
        self.assertLess(sent, 64 * 1024 * 1024, "the worker read far past its cap")
        self.assertEqual(self.worker.log_events("job_retry"), [])  # final at once
        self.assert_still_serving()

    def test_s3_source_larger_than_cap(self):
        # final at once, like a URL source's: it was taken for a lost connection (no HTTP status)
        # and the whole cap downloaded again at each of PIXQ_MAX_ATTEMPTS
        port = harness.reserved_port(self)
        self.start(PIXQ_MAX_SRC_BYTES=65536, PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=100,
                   PIXQ_RETRY_MAX_MS=200, PIXQ_METRICS_ADDR="127.0.0.1:%d" % port)
        self.assertEqual(self.s3.put_object("pixq-test", "big.jpg", os.urandom(200000)), 200)
        self.expect_failure(self.job("s3-big", {"name": "s3", "bucket": "pixq-test",
                                                "key": "big.jpg"}),
                            "response larger than the limit of 65536 bytes "
                            "(PIXQ_MAX_SRC_BYTES))")
        gets = [e for e in self.worker.log_events("s3_get") if e.get("job_id") == "hostile-s3-big"]
        self.assertEqual(len(gets), 1, gets)
        self.assertEqual(self.worker.log_events("job_retry"), [])
        # S3 answered 200: logged and counted so, not as no answer (status 0, code="transport")
        self.assertEqual(gets[0]["status"], "200", gets)
        status, _, body = harness.http_request("http://127.0.0.1:%d/metrics" % port)
        text = body.decode("utf-8")
        self.assertEqual(status, 200, text)
        self.assertIn('\npixq_s3_responses_total{method="GET",code="200"} 1\n', text)
        self.assertNotIn('code="transport"', text)
        self.assert_still_serving()

    def test_error_page_larger_than_cap_is_retried(self):
        # a 503 stays transient however large its page: only a 2xx body over the cap is final
        self.start(PIXQ_MAX_SRC_BYTES=1048576, PIXQ_MAX_ATTEMPTS=2, PIXQ_RETRY_BASE_MS=100,
                   PIXQ_RETRY_MAX_MS=200)
        src = self.tricks.special("/busy.png", "big503")
        self.expect_failure(self.job("big503", src), "larger than the limit")
        self.assertEqual(len(self.tricks.requests["/busy.png"]), 2)
        self.assertEqual(len(self.worker.log_events("job_retry")), 1)
        self.assert_still_serving()

    def test_error_page_larger_than_cap_is_final_as_its_status(self):
        # a 404 is final however large its page: it was taken for a lost connection (no usable
        # answer), run PIXQ_MAX_ATTEMPTS times and failed "response larger than the limit"
        self.start(PIXQ_MAX_SRC_BYTES=1048576, PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=100,
                   PIXQ_RETRY_MAX_MS=200)
        src = self.tricks.special("/gone.png", "big404")
        self.expect_failure(self.job("big404", src), "server answered HTTP 404 (its body cut short")
        self.assertEqual(len(self.tricks.requests["/gone.png"]), 1)
        self.assertEqual(self.worker.log_events("job_retry"), [])
        self.assert_still_serving()

    def test_unfollowed_redirect_page_larger_than_cap_is_final(self):
        # a 3xx not followed (PIXQ_MAX_REDIRECTS=0) is the answer, final as a small one's
        # "server answered HTTP 302": its page over the cap was taken for a lost connection,
        # and the job run PIXQ_MAX_ATTEMPTS times
        self.start(PIXQ_MAX_SRC_BYTES=1048576, PIXQ_MAX_REDIRECTS=0, PIXQ_MAX_ATTEMPTS=3,
                   PIXQ_RETRY_BASE_MS=100, PIXQ_RETRY_MAX_MS=200)
        self.tricks.files["/ok.jpg"] = self.image
        src = self.tricks.special("/moved.png", "big302")
        self.expect_failure(self.job("big302-unfollowed", src),
                            "response larger than the limit of 1048576 bytes")
        self.assertEqual(len(self.tricks.requests["/moved.png"]), 1)
        self.assertNotIn("/ok.jpg", self.tricks.requests)
        self.assertEqual(self.worker.log_events("job_retry"), [])
        self.assert_still_serving()

    def test_trickling_source(self):
        self.start(PIXQ_LOW_SPEED_BYTES_PER_S=1024, PIXQ_LOW_SPEED_TIME_S=2,
                   PIXQ_DOWNLOAD_TIMEOUT_MS=120000)
        src = self.tricks.special("/slow.jpg", "trickle")
        t0 = time.monotonic()
        self.expect_failure(self.job("trickle", src), "Operation too slow")
        self.assertLess(time.monotonic() - t0, scaled(30), "cut by the low-speed limit, not the "
                        "120 s download timeout")
        self.assert_still_serving()

    def test_header_line_over_curls_limit(self):
        """It read 'Out of memory' (libcurl's code for it, with no message), and was retried."""
        self.start(PIXQ_MAX_ATTEMPTS=3, PIXQ_RETRY_BASE_MS=100, PIXQ_RETRY_MAX_MS=200)
        src = self.tricks.special("/huge-header.jpg", "huge_header")
        pb = self.expect_failure(self.job("huge-header", src),
                                 "the answer has a header line over libcurl's limit of 102400 "
                                 "bytes")
        self.assertNotIn("memory", pb.body.decode().lower())
        self.assertEqual(len(self.tricks.requests["/huge-header.jpg"]), 1)  # final at once
        self.assertEqual(self.worker.log_events("job_retry"), [])
        self.assert_still_serving()

    def test_no_content_decoding(self):
        """A gzip bomb: sent compressed, never inflated (the request asks for no encoding)."""
        self.start(PIXQ_MAX_SRC_BYTES=1048576)
        src = self.tricks.special("/bomb.png", "gzip")
        pb = self.expect_failure(self.job("gzip", src), "Image processing failed.")
        self.assertNotIn("larger than the limit", pb.body.decode())
        headers = self.tricks.requests["/bomb.png"][0]
        self.assertNotIn("accept-encoding", headers)
        self.assert_still_serving()

    def test_environment_proxy_is_ignored(self):
        """A proxy variable in the environment would make the proxy the only address checked:
        job requests do not use it."""
        proxy = SourceServer()  # on 127.0.0.1; a proxy request would arrive as a GET
        self.addCleanup(proxy.stop)
        # S3 (on 127.0.0.1) is the operator's and may use a proxy: keep it direct here
        self.start(http_proxy=proxy.base_url(), HTTP_PROXY=proxy.base_url(),
                   NO_PROXY=LOOPBACK, no_proxy=LOOPBACK)
        self.assert_still_serving()
        self.assertEqual(proxy.requests(), {})
        self.assertEqual(self.src.requests("/ok.jpg"), 1)


class PostbackAddressTest(HostileTestCase):

    def test_postback_to_private_address(self):
        """A literal private address: the job fails before anything is fetched, the failure is
        in `dead` and the log; nothing is sent anywhere."""
        self.start()
        job = self.job("pb-private", postback_url="http://10.0.0.7/pb")
        self.push_job(job)
        dead = self.dead_entry("hostile-pb-private")
        self.assertIn("postback_url http://10.0.0.7/pb: address 10.0.0.7 is not allowed "
                      "(private)", dead["error"])
        self.wait_until(lambda: self.worker.log_events("postback_failed"), 10, "the log line")
        self.assertIn("10.0.0.7 is not allowed", self.worker.log_events("postback_failed")[0]
                      ["error"])
        self.assertEqual(self.src.requests("/ok.jpg"), 0, "nothing fetched for it")
        self.assert_still_serving()

    def test_postback_to_loopback_name(self):
        """A name that resolves to loopback: refused when it resolves; the job's result is
        kept in Redis and the refusal logged."""
        self.start()
        url = "http://localhost:%d/pb" % self.loop_postbacks.port
        self.push_job(self.job("pb-name", postback_url=url))
        result = self.read_result("hostile-pb-name", timeout=TIMEOUT_S)
        self.assertEqual(result["results"]["job_id"], "hostile-pb-name")
        self.wait_until(lambda: self.worker.log_events("postback_failed"), 10, "the log line")
        self.assertIn("is not allowed (loopback)",
                      self.worker.log_events("postback_failed")[0]["error"])
        self.assertEqual(self.loop_postbacks.postbacks, [])
        self.assert_still_serving()

    def test_refused_postback_is_given_up_at_once(self):
        """retry_postback to a URL the guard refuses (a literal private address, one spelt as a
        number, a scheme other than http(s)), or one libcurl cannot send (a port past 65535): no
        retry can be sent either, so it is given up at once, with the reason, not tried again
        after each of PIXQ_POSTBACK_RETRY_DELAYS_S."""
        self.start(PIXQ_POSTBACK_RETRY_DELAYS_S="1,1")
        for name, url, why in (("pb-refused-ip", "http://10.0.0.7/pb", "(private)"),
                               ("pb-refused-scheme", "ftp://example.com/pb",
                                "only http:// and https:// URLs are allowed"),
                               ("pb-refused-number", "http://2130706433/pb",
                                "address 127.0.0.1 is not allowed (loopback)"),
                               ("pb-refused-port", "http://pb.invalid:99999/pb", "")):
            self.push_job(self.job(name, postback_url=url, retry_postback=True))
            job_id = "hostile-" + name
            given_up = self.wait_until(
                lambda: [e for e in self.worker.log_events("postback_given_up")
                         if e.get("job_id") == job_id], 10, "postback_given_up of " + job_id)
            self.assertEqual(given_up[0].get("reason"), "refused", given_up)
            self.assertEqual(given_up[0].get("attempt"), "1", given_up)
            self.assertIn(why, given_up[0].get("error", ""), given_up)
        time.sleep(scaled(3))  # both retries would have come by now
        self.assertEqual(self.worker.log_events("postback_retry"), [])
        self.assertEqual(len(self.worker.log_events("postback_failed")), 4)
        self.assertEqual(len(self.worker.log_events("postback_given_up")), 4)
        self.assert_queue_drained()
        self.assert_still_serving()

    def test_postback_to_refused_name_is_retried(self):
        """A name that resolves to a refused address is DNS's answer of the moment, which may
        change: its postback is retried as any failed one (README, Security)."""
        self.start(PIXQ_POSTBACK_RETRY_DELAYS_S="1")
        url = "http://localhost:%d/pb" % self.loop_postbacks.port
        self.push_job(self.job("pb-name-retry", postback_url=url, retry_postback=True))
        given_up = self.wait_until(lambda: self.worker.log_events("postback_given_up"), 15,
                                   "postback_given_up")
        self.assertEqual(given_up[0].get("attempts"), "2", given_up)
        self.assertEqual(len(self.worker.log_events("postback_retry")), 1)
        self.assertEqual(self.loop_postbacks.postbacks, [])

    def test_postback_redirect_is_not_followed(self):
        """A 3xx answer to a postback is a failed attempt, retried with retry_postback, and its
        Location is never posted to: not an allowed one (a 307 would send the body again), not
        a forbidden one."""
        self.start(PIXQ_POSTBACK_RETRY_DELAYS_S="1,1")
        self.postbacks.answer_with((307, {"Location": self.postbacks.url("/moved")}),
                                   (302, {"Location": self.loop_postbacks.url("/pb")}))
        self.push_job(self.job("pb-redirect", retry_postback=True))
        got = self.postbacks.wait_for_postbacks(
            3, TIMEOUT_S, lambda pb: pb.job_id == "hostile-pb-redirect")
        self.assertEqual([pb.path for pb in got], ["/pb"] * 3)
        self.assertEqual([pb.path for pb in self.postbacks.postbacks
                          if pb.path != "/pb"], [], "a Location was followed")
        self.assertEqual(self.loop_postbacks.postbacks, [])
        failed = [e.get("error") for e in self.worker.log_events("postback_failed")]
        self.assertEqual(failed, ["postback answered HTTP 307", "postback answered HTTP 302"])
        self.assert_still_serving()

    def test_password_in_a_refused_postback_url_stays_out(self):
        """README (Security): a password in a job's own URL is shown as *** in errors. A
        postback_url the guard refuses is quoted in the job's dead entry and its log lines: its
        password hidden there (the tests with a password only had sources, or a postback that
        was reached)."""
        self.start()
        url = self.loop_postbacks.url("/pb")  # on 127.0.0.1, which the guard refuses
        self.push_job(self.job("pb-userinfo", postback_url=url.replace(
            "http://", "http://pbuser:pb-pw-3c9e@")))
        dead = self.dead_entry("hostile-pb-userinfo")
        self.assertIn("postback_url %s: address 127.0.0.1 is not allowed (loopback)"
                      % url.replace("http://", "http://pbuser:***@"), dead["error"])
        self.wait_until(lambda: [e for e in self.worker.log_events("job_failed")
                                 if e.get("job_id") == "hostile-pb-userinfo"], 10, "job_failed")
        self.assertNotIn("pb-pw-3c9e", dead["error"])  # (its "job" is kept whole, for a retry)
        self.assertNotIn("pb-pw-3c9e", self.worker.log_path.read_text(errors="replace"))
        self.assertEqual(self.loop_postbacks.postbacks, [])
        self.assert_still_serving()

    def test_postback_scheme(self):
        self.start()
        self.push_job(self.job("pb-scheme", postback_url="file:///tmp/pb"))
        dead = self.dead_entry("hostile-pb-scheme")
        self.assertIn("only http:// and https:// URLs are allowed", dead["error"])
        self.assert_still_serving()


class JobLimitTest(HostileTestCase):
    """Payloads that cannot be answered (not JSON, not an object) go to `dead`; a JSON object
    that asks too much fails with its postback, even one over PIXQ_MAX_JOB_BYTES or
    PIXQ_MAX_JSON_DEPTH, which json-c does not read: a scan finds its postback members."""

    def assert_unparseable(self, payload, fragment):
        before = len(self.dead_entries())

        def new_entries():  # newest first
            entries = self.dead_entries()
            return entries[:len(entries) - before]

        self.push_job(payload)
        dead = self.wait_until(new_entries, TIMEOUT_S, "a dead entry for %r" % fragment[:40])[0]
        self.assertIn(fragment, dead["error"])
        self.assertEqual(dead["job"], payload)
        self.assertNotIn("job_id", dead)
        self.assertEqual(dead["attempts"], 1)  # handled once, and buried at once
        self.assertFalse([pb for pb in self.postbacks.postbacks if pb.path == "/pb/lost"])
        events = self.worker.log_events("job_unparseable")
        self.assertTrue(any(fragment in ev.get("error", "") for ev in events), events)
        # README (Logs): the queue whose dead list holds it
        self.assertEqual({ev.get("queue") for ev in events}, {"default"}, events)

    def test_malformed_json(self):
        self.start()
        self.assert_unparseable('{"src": "http://x/a.jpg", "functions": [',
                                "job is not valid JSON: unexpected end of input")
        self.assert_unparseable('7', "job must be a JSON object")  # valid JSON, not a job
        # a payload that is not a job counts only as `failed` and `dead` (README: the stats)
        stats = self.redis.hgetall(self.key("stats"))
        self.assertEqual({k: stats.get(k) for k in ("received", "failed", "dead", "succeeded")},
                         {"received": None, "failed": "2", "dead": "2", "succeeded": None})
        self.push_job("[8]")  # an array is split into its jobs: the element fails on its own
        self.wait_until(lambda: [d for d in self.dead_entries() if d["job"] == "8" and
                                 d["error"] == "job must be a JSON object"], TIMEOUT_S,
                        "the array's element in dead with its error")
        self.assert_still_serving()

    def assert_salvaged(self, pb, job_id, fragment):
        """The postback `pb` and the dead entry of job_id say `fragment`; the worker logged a
        failed job, not an unparseable payload."""
        self.assertEqual(pb.job_id, job_id)
        self.assertEqual(pb.results["images"], [])
        # README: its failed_image_identifiers empty (its saves were never read; an empty list
        # is left out of a postback), where a job read whole that fails lists its outputs
        self.assertEqual(pb.results.get("failed_image_identifiers", []), [], pb.results)
        self.assertTrue(any(fragment in e for e in pb.results["errors"]), pb.results)
        dead = self.dead_entry(job_id)
        self.assertIn(fragment, dead["error"])
        failed = self.wait_until(
            lambda: [ev for ev in self.worker.log_events("job_failed")
                     if ev.get("job_id") == job_id], TIMEOUT_S, "job_failed of " + job_id)
        self.assertIn(fragment, failed[0].get("error", ""), failed)
        self.assertFalse(self.worker.log_events("job_unparseable"))
        return dead

    def test_10_mb_json(self):
        self.start()
        job = self.job("huge")
        job["padding"] = "x" * (10 * 1024 * 1024)
        job["postback_url"] = self.postbacks.url("/pb/early")  # the last of a name counts
        text = json.dumps(job)[:-1] + ', "postback_url": %s}' % json.dumps(self.postbacks.url("/pb"))
        self.push_job(text)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-huge")
        self.assertEqual(pb.path, "/pb")
        dead = self.assert_salvaged(pb, "hostile-huge", "job is %d bytes, more than the limit of "
                                    "250000 (PIXQ_MAX_JOB_BYTES)" % len(text))
        self.assertEqual(dead["job"], text)  # kept whole, for `pixq dead retry`
        self.assertEqual(len(self.postbacks.postbacks), 1)
        self.assert_still_serving()

    def test_10000_deep_json(self):
        self.start()
        deep = "[" * 10000 + "]" * 10000
        # no job_id: the worker writes one into the payload, last of its members
        text = '{"src": %s, "postback_url": %s}' % (deep, json.dumps(self.postbacks.url("/pb")))
        self.push_job(text)
        pb = self.wait_for_postback(TIMEOUT_S, path="/pb")
        self.assertTrue(pb.job_id)
        dead = self.assert_salvaged(pb, pb.job_id, "job nests deeper than 32 levels "
                                    "(PIXQ_MAX_JSON_DEPTH)")
        self.assertTrue(dead["job"] == '%s,"job_id":"%s"}' % (text[:-1], pb.job_id),
                        "the dead entry's job is not the payload with its job_id")
        # the same, not JSON past its depth, or with postback_headers too deep of their own:
        # nothing in it can be read
        self.assert_unparseable('{"postback_url": %s, "src":' % json.dumps(
            self.postbacks.url("/pb/lost")) + deep + "]}", "job nests deeper than 32 levels")
        self.assert_unparseable('{"postback_url": %s, "postback_headers": %s}' % (
            json.dumps(self.postbacks.url("/pb/lost")), deep), "job nests deeper than 32 levels")
        self.assertEqual(len(self.postbacks.postbacks), 1)
        self.assert_still_serving()

    def test_json_depth_as_set(self):
        """PIXQ_MAX_JSON_DEPTH reaches the worker's own check (only its default, 32, was seen
        there): with 6, README's count (the object, each array inside it, the value in the
        innermost) lets a job of 6 levels run and fails one of 7, with its postback."""
        self.start(PIXQ_MAX_JSON_DEPTH=6)
        ok = self.job("depth-6", extra=[[[[1]]]])  # as deep as its s3_destination's bucket
        self.push_job(ok)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-depth-6")
        self.assertNotIn("errors", pb.results, pb.results)
        deep = self.job("depth-7", extra=[[[[[1]]]]])
        self.push_job(deep)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-depth-7")
        self.assert_salvaged(pb, "hostile-depth-7", "job nests deeper than 6 levels "
                             "(PIXQ_MAX_JSON_DEPTH)")
        self.assert_still_serving()

    def test_job_at_the_limit_runs_again(self):
        """A job of PIXQ_MAX_JOB_BYTES exactly, without a job_id, whose source fails: the
        worker writes a job_id and then an attempt count into it, and each run reads it whole
        (it was over the limit from its second run on, failed for the worker's own bytes)."""
        self.start(PIXQ_MAX_JOB_BYTES=1000)
        job = {"src": self.src.url("/missing.jpg"), "wait_retry_delay": 0,
               "postback_url": self.postbacks.url("/pb/at-limit"), "padding": "",
               "functions": [{"name": "no_op", "save": {"image_identifier": "t"}}]}
        job["padding"] = "x" * (1000 - len(json.dumps(job, separators=(",", ":"))))
        text = json.dumps(job, separators=(",", ":"))
        self.assertEqual(len(text), 1000)
        self.push_job(text)
        pb = self.wait_for_postback(TIMEOUT_S, path="/pb/at-limit")
        errors = pb.results["errors"]
        self.assertTrue(errors and "PIXQ_MAX_JOB_BYTES" not in errors[0], errors)
        self.assertIn("404", errors[0])
        self.assertEqual(self.src.requests("/missing.jpg"), 5)  # Blitline's five runs
        self.assert_still_serving()

    def test_retry_that_would_be_over_the_limit(self):
        """A job only json-c reads (a comment after it), holding raw control characters, near
        PIXQ_MAX_JOB_BYTES: written out again with its run number, by json-c, which escapes
        them, it would be over the limit. Its source's failure ends it now, with its postback
        and its source's error, rather than in a run that fails for the size."""
        self.start(PIXQ_MAX_JOB_BYTES=1000)
        head = ('{"job_id": "hostile-lenient", "src": %s, "wait_retry_delay": 0, '
                '"postback_url": %s, "functions": [{"name": "no_op", "save": '
                '{"image_identifier": "t"}}], "padding": "' % (
                    json.dumps(self.src.url("/missing-lenient.jpg")),
                    json.dumps(self.postbacks.url("/pb/lenient"))))
        tail = '", "note": "' + "\x01" * 100 + '"} /* lenient */'
        text = head + "x" * (990 - len(head) - len(tail)) + tail
        self.assertEqual(len(text), 990)
        self.push_job(text)
        pb = self.wait_for_postback(TIMEOUT_S, path="/pb/lenient")
        errors = pb.results["errors"]
        self.assertTrue(errors and "404" in errors[0] and "PIXQ_MAX_JOB_BYTES" not in errors[0],
                        errors)
        self.assertEqual(self.src.requests("/missing-lenient.jpg"), 1)
        skipped = self.worker.log_events("job_retry_skipped")
        self.assertEqual([e.get("job_id") for e in skipped], ["hostile-lenient"], skipped)
        self.assertEqual(self.dead_entry("hostile-lenient")["attempts"], 1)
        self.assert_still_serving()

    def test_batch_larger_than_a_job(self):
        """A batch is held to PIXQ_MAX_BATCH_BYTES, its jobs each to PIXQ_MAX_JOB_BYTES: a batch
        of 1.8 KB runs its jobs (it was buried whole, over PIXQ_MAX_JOB_BYTES), the one too deep
        failing on its own with its postback."""
        self.start(PIXQ_MAX_JOB_BYTES=1000)
        jobs = []
        for name in ("batch-a", "batch-b"):
            job = self.job(name)
            job["postback_url"] = self.postbacks.url("/pb/" + name)
            job["padding"] = "x" * (700 - len(json.dumps(job)))
            jobs.append(json.dumps(job))
        deep = self.job("batch-deep")
        deep["postback_url"] = self.postbacks.url("/pb/batch-deep")
        jobs.append(json.dumps(deep)[:-1] + ', "a": %s}' % ("[" * 40 + "]" * 40))
        text = "[%s]" % ",\n ".join(jobs)
        self.assertGreater(len(text), 1800)
        self.push_job(text)
        for name in ("batch-a", "batch-b"):
            pb = self.wait_for_postback(TIMEOUT_S, path="/pb/" + name)
            self.assertNotIn("errors", pb.results, pb.results)
        pb = self.wait_for_postback(TIMEOUT_S, path="/pb/batch-deep")
        self.assertEqual(pb.results["errors"], ["Image processing failed. job nests deeper than "
                                                "32 levels (PIXQ_MAX_JSON_DEPTH)"])
        self.assertEqual(self.dead_entry("hostile-batch-deep")["job"], jobs[2])  # as written
        self.assert_still_serving()

    def test_batch_over_its_limit(self):
        self.start(PIXQ_MAX_BATCH_BYTES=1500)
        job = self.job("batch-big")
        job["padding"] = "x" * 1000
        text = json.dumps([job, job])
        self.assert_unparseable(text, "a batch is %d bytes, more than the limit of 1500 "
                                "(PIXQ_MAX_BATCH_BYTES)" % len(text))
        self.assertEqual(self.postbacks.postbacks, [])
        self.assert_still_serving()

    def test_too_many_functions(self):
        self.start()
        job = self.job("many-fns")
        job["functions"] = [{"name": "no_op"}] * 101
        self.expect_failure(job, "too many functions (at most 100)")
        self.assert_still_serving()

    def test_too_many_functions_as_set(self):
        """PIXQ_MAX_FUNCTIONS reaches the worker's own check (only pixq submit's was tested
        with another value than 100): 4 functions, nested ones counted, fail with 3."""
        self.start(PIXQ_MAX_FUNCTIONS=3)
        job = self.job("many-fns-3")
        job["functions"] = [{"name": "no_op", "functions": [{"name": "no_op"}] * 2},
                            {"name": "no_op"}]
        self.expect_failure(job, "too many functions (at most 3)")
        self.assert_still_serving()

    def test_too_many_saves(self):
        self.start(PIXQ_MAX_SAVES=3)
        job = self.job("many-saves")
        job["functions"] = [{"name": "no_op", "save": {"image_identifier": "s%d" % i}}
                            for i in range(4)]
        self.expect_failure(job, "too many saves (4, at most 3)")
        self.assert_still_serving()

    def test_parameters_out_of_range(self):
        self.start()
        cases = [
            ("resize_to_fit", {"width": 100000},
             "over the limit of 50000000 pixels (PIXQ_MAX_PIXELS)"),
            ("resize_to_fit", {"width": 2000000000}, "2000000000 is out of range"),
            ("resize", {"width": 100000, "height": 100000}, "out of range"),
            ("resize", {"width": -5, "height": 10}, "-5 is out of range"),
            ("resize", {"scale_factor": 5000}, "over the limit of 50000000 pixels"),
            ("resize_to_fill", {"width": 65535, "height": 65535}, "over the limit"),
            ("crop", {"width": -1, "height": 10}, "out of range"),
            ("resize_to_fit", {"width": "NaN"}, "expected a whole number"),
            ("resize_to_fit", {"width": "Infinity"}, "expected a whole number"),
            ("resize_to_fit", {"width": "1e400"}, "1e400 is out of range [0, 1000000000]"),
            ("rotate", {"amount": "nan"}, "expected a number"),
            ("pad", {"size": 100000}, "out of range"),
        ]
        jobs = []
        for i, (fn, params, fragment) in enumerate(cases):
            job = self.job("param-%d" % i)
            job["functions"][0]["name"] = fn
            job["functions"][0]["params"] = params
            jobs.append((job, fragment))
            self.push_job(job)
        # JSON's own NaN and Infinity tokens, which json-c accepts
        raw = json.dumps(self.job("param-nan-token")).replace('"width": 40', '"width": NaN')
        self.push_job(raw)
        jobs.append(({"job_id": "hostile-param-nan-token"}, "expected a whole number"))
        raw = json.dumps(self.job("param-inf-token")).replace('"width": 40', '"width": -Infinity')
        self.push_job(raw)
        jobs.append(({"job_id": "hostile-param-inf-token"}, "expected a whole number"))
        for job, fragment in jobs:
            with self.subTest(job=job["job_id"]):
                pb = self.wait_for_postback(TIMEOUT_S, job_id=job["job_id"])
                text = " ".join(pb.results.get("errors") or [])
                self.assertIn(fragment, text)
                self.assertIn(fragment, self.dead_entry(job["job_id"])["error"])
        self.assert_still_serving()


class HeaderTest(HostileTestCase):
    """No CR, LF or other control character reaches a header: the job fails clearly (its
    failure is still posted back, without the bad header)."""

    def test_crlf_in_postback_header_value(self):
        self.start()
        job = self.job("pb-crlf", postback_headers={"X-Token": "abc",
                                                    "X-Evil": "1\r\nX-Injected: yes"})
        pb = self.expect_failure(job, "postback_headers: header 'X-Evil' has a forbidden "
                                      "character")
        self.assertNotIn("x-injected", pb.headers)
        self.assertNotIn("x-evil", pb.headers)
        self.assertEqual(pb.headers.get("x-token"), "abc")
        self.assert_still_serving()

    def test_object_in_postback_header_value(self):
        """A header whose value is an object (a number or a boolean is taken as its text) fails
        the job; its failure is posted back without that header (not with the object's JSON
        text), the job's other headers kept."""
        self.start()
        job = self.job("pb-object", postback_headers={"X-Token": "abc", "X-Obj": {"a": 1}})
        pb = self.expect_failure(job, "postback_headers.X-Obj must be a string")
        self.assertNotIn("x-obj", pb.headers)
        self.assertEqual(pb.headers.get("x-token"), "abc")
        self.assert_still_serving()

    def test_crlf_in_postback_header_name(self):
        self.start()
        job = self.job("pb-crlf-name", postback_headers={"X-A\r\nX-Injected": "yes"})
        pb = self.expect_failure(job, "header 'X-A??X-Injected' has a forbidden character")
        self.assertNotIn("x-injected", pb.headers)
        self.assert_still_serving()

    def expect_upload_refused(self, name, headers, fragment):
        """A job whose output has s3_destination.headers `headers` fails with `fragment`, and
        nothing is uploaded."""
        job = self.job(name)
        job["functions"][0]["save"]["s3_destination"]["headers"] = headers
        self.expect_failure(job, fragment)
        status, _, _ = self.s3.get_object("pixq-test", "out/%s.jpg" % name)
        self.assertEqual(status, 404)
        self.assert_still_serving()

    def test_crlf_in_s3_header(self):
        self.start()
        self.expect_upload_refused(
            "s3-crlf", {"Cache-Control": "max-age=60\r\nx-amz-acl: private"},
            "s3_destination.headers: header 'Cache-Control' has a forbidden character")

    def test_framing_header_in_postback(self):
        # a job's Content-Length went out before pixq's body: the receiver read 5 bytes
        self.start()
        job = self.job("pb-length", postback_headers={"Content-Length": "5", "X-Token": "abc"})
        pb = self.expect_failure(job, "postback_headers: header 'Content-Length' may not come "
                                      "from a job: it frames the request")
        self.assertEqual(pb.headers.get("content-length"), str(len(pb.body)))
        self.assertEqual(pb.headers.get("x-token"), "abc")
        self.assert_still_serving()

    def test_copy_source_header_in_upload(self):
        # x-amz-copy-source turned the PUT into a copy: with PIXQ_S3_BUCKETS=pixq-test, a job
        # copied an object of other-bucket into the allowed (public-read) bucket
        self.start(PIXQ_S3_BUCKETS="pixq-test")
        self.assertEqual(self.s3.put_object("other-bucket", "secret.jpg", self.image), 200)
        self.expect_upload_refused(
            "copy", {"x-amz-copy-source": "/other-bucket/secret.jpg"},
            "s3_destination.headers: header 'x-amz-copy-source' may not come from a job")

    def test_upload_type_a_browser_would_run(self):
        """A JPEG whose comment holds a page is a valid source; stored as text/html (or SVG) in
        the deployment's public bucket it would be the job's own page on the bucket's origin.
        Neither an output nor move_original's copy may take such a Content-Type; image types and
        application/octet-stream still may."""
        self.start()
        page = b"<html><body><script>document.title='job'</script></body></html>"
        poly = self.image[:2] + b"\xff\xfe" + (len(page) + 2).to_bytes(2, "big") + page + \
            self.image[2:]
        self.src.add("/poly.jpg", poly)
        for i, ctype in enumerate(("text/html", "image/svg+xml", "Text/HTML; charset=utf-8",
                                   "application/xhtml+xml")):
            with self.subTest(ctype=ctype):
                self.expect_upload_refused(
                    "type-%d" % i, {"Content-Type": ctype},
                    "s3_destination.headers: Content-Type '%s' may not come from a job" % ctype)
                job = self.job("move-type-%d" % i, self.src.url("/poly.jpg"))
                job["pre_process"] = {"move_original": {"s3_destination": {
                    "bucket": "pixq-test", "key": "move-%d.html" % i,
                    "headers": {"Content-Type": ctype}}}}
                self.expect_failure(job, "Content-Type '%s' may not come from a job" % ctype)
                status, _, _ = self.s3.get_object("pixq-test", "move-%d.html" % i)
                self.assertEqual(status, 404)
        for i, ctype in enumerate(("image/png", "application/octet-stream", "")):
            with self.subTest(ctype=ctype):
                job = self.job("type-ok-%d" % i, self.src.url("/poly.jpg"))
                job["functions"][0]["save"]["s3_destination"]["headers"] = {"Content-Type": ctype}
                self.push_job(job)
                pb = self.wait_for_postback(TIMEOUT_S, job_id=job["job_id"])
                self.assertNotIn("errors", pb.results, pb.body[:500])
                status, headers, _ = self.s3.get_object("pixq-test", "out/type-ok-%d.jpg" % i)
                self.assertEqual(status, 200)
                stored = {k.lower(): v for k, v in headers.items()}.get("content-type")
                self.assertNotIn("html", stored or "")
                if ctype:
                    self.assertEqual(stored, ctype)

    def test_other_control_characters(self):
        self.start()
        cases = [({"X-Nul": "a\u0000b"}, "X-Nul"), ({"X-Del": "a\u007fb"}, "X-Del"),
                 ({"X-Lf": "a\nb"}, "X-Lf"), ({"X Space": "1"}, "X Space"),
                 ({"X-Colon:": "1"}, "X-Colon:"), ({"": "1"}, "''"),
                 # a C1 control character (README: no control character), NEL a line break to
                 # some readers; other characters past ASCII still go (test_http)
                 ({"X-Nel": "1\u0085X-Injected: yes"}, "X-Nel")]
        for i, (headers, name) in enumerate(cases):
            with self.subTest(name=name):
                job = self.job("ctl-%d" % i, postback_headers=headers)
                pb = self.expect_failure(job, "has a forbidden character")
                self.assertEqual(set(pb.headers) & {k.lower() for k in headers}, set())
        job = self.job("ctl-s3")
        job["functions"][0]["save"]["s3_destination"]["headers"] = {"x-amz-meta-a": "\u0001"}
        self.expect_failure(job, "forbidden character")
        self.assert_still_serving()


class LogFieldTest(HostileTestCase):
    """What a job writes (an image_identifier may hold spaces, '=' and quotes) stays one quoted
    value of the worker's log: it cannot add fields to a line, nor change its event or level."""

    IDENTIFIER = 'thumb event=forged level=error job_id=hostile-victim error="all fine"'

    def check_upload_failed_line(self, job_id, events):
        lines = [ev for ev in events if ev.get("event") == "upload_failed"]
        self.assertEqual(len(lines), 1, [ev for ev in events if "image_identifier" in ev])
        self.assertEqual(lines[0]["job_id"], job_id)
        self.assertEqual(lines[0]["level"], "warn")
        self.assertEqual(lines[0]["image_identifier"], self.IDENTIFIER)
        self.assertEqual(lines[0]["bucket"], "no-such-bucket")  # README (Logs)
        self.assertIn("NoSuchBucket", lines[0]["error"])
        self.assertEqual([ev for ev in events if ev.get("event") == "forged"], [])

    def failing_upload(self, name):
        job = self.job(name)
        save = job["functions"][0]["save"]
        save["image_identifier"] = self.IDENTIFIER
        save["s3_destination"]["bucket"] = "no-such-bucket"
        self.push_job(job)
        pb = self.wait_for_postback(TIMEOUT_S, job_id=job["job_id"])
        self.assertIn("NoSuchBucket", " ".join(pb.results.get("errors") or []))
        self.assertEqual(pb.results["failed_image_identifiers"], [self.IDENTIFIER])
        return job["job_id"]

    def test_image_identifier_in_upload_failed_text(self):
        worker = self.start()
        job_id = self.failing_upload("log-fields")
        self.check_upload_failed_line(job_id, worker.log_events())
        self.assert_still_serving()

    def check_line_breaks(self, log_format):
        """A URL with C1's NEL, U+2028 and U+2029 (line breaks to Python's splitlines(), and to
        other readers) quoted in an error stays on its line."""
        worker = self.start(PIXQ_LOG_FORMAT=log_format)
        src = ("http://10.0.0.1/a\u0085ts=2026-01-01T00:00:00.000Z level=error event=forged "
               "job_id=hostile-victim\u2028{\"event\":\"forged\"}\u2029\u009b31m.jpg")
        job = self.job("breaks-" + log_format, src)
        self.expect_failure(job, "address 10.0.0.1 is not allowed (private)")
        # job_failed is logged once finish.lua settled the job, which may be after the dead
        # letter expect_failure saw
        self.wait_until(lambda: "forged" in worker.log_path.read_text(errors="replace"), 10,
                        "the job_failed line")
        text = worker.log_path.read_text(errors="replace")
        breaks = ("\u0085", "\u2028", "\u2029", "\u009b")
        self.assertEqual([line for line in text.split("\n") if any(b in line for b in breaks)],
                         [])
        lines = [line for line in text.splitlines() if "forged" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("event=job_failed" if log_format == "text" else '"event":"job_failed"',
                      lines[0])
        self.assert_still_serving()
        return lines[0]

    def test_line_breaks_in_an_error_text(self):
        line = self.check_line_breaks("text")
        self.assertIn(r"/a\xc2\x85ts=2026", line)
        self.assertIn(r'job_id=hostile-victim\xe2\x80\xa8{\"event', line)
        self.assertEqual([ev for ev in self.worker.log_events() if ev.get("event") == "forged"],
                         [])

    def test_line_breaks_in_an_error_json(self):
        line = self.check_line_breaks("json")
        error = json.loads(line)["error"]
        self.assertIn("/a\u0085ts=2026-01-01T00:00:00.000Z level=error event=forged "
                      "job_id=hostile-victim\u2028{\"event\":\"forged\"}\u2029\u009b31m.jpg",
                      error)
        self.assertIn(r"/a\u0085ts=2026", line)

    def test_image_identifier_in_upload_failed_json(self):
        worker = self.start(PIXQ_LOG_FORMAT="json")
        job_id = self.failing_upload("log-fields-json")
        lines = worker.log_path.read_text(errors="replace").splitlines()
        self.check_upload_failed_line(job_id, [json.loads(line) for line in lines
                                               if line.startswith("{")])
        self.assert_still_serving()


class S3TargetTest(HostileTestCase):
    """PIXQ_S3_BUCKETS, bucket names, keys and locations."""

    def test_bucket_outside_allow_list(self):
        self.start(PIXQ_S3_BUCKETS="pixq-test")
        job = self.job("other-bucket")
        job["functions"][0]["save"]["s3_destination"]["bucket"] = "other-bucket"
        self.expect_failure(job, "s3_destination of 'thumb': bucket 'other-bucket' is not "
                                 "allowed")
        status, _, _ = self.s3.get_object("other-bucket", "out/other-bucket.jpg")
        self.assertEqual(status, 404)
        self.assertEqual(self.src.requests("/ok.jpg"), 0, "refused before fetching")
        self.assert_still_serving()

    def test_move_original_outside_allow_list(self):
        """pre_process's move_original is an upload like any other: to a bucket outside
        PIXQ_S3_BUCKETS the job fails before its source is fetched, nothing written there."""
        self.start(PIXQ_S3_BUCKETS="pixq-test")
        job = self.job("move-other")
        job["pre_process"] = {"move_original": {"s3_destination": {
            "bucket": "other-bucket", "key": "orig/move-other.jpg"}}}
        self.expect_failure(job, "bucket 'other-bucket' is not allowed")
        status, _, _ = self.s3.get_object("other-bucket", "orig/move-other.jpg")
        self.assertEqual(status, 404)
        self.assertEqual(self.src.requests("/ok.jpg"), 0, "refused before fetching")
        self.assert_still_serving()

    def test_save_without_destination_and_no_default_bucket(self):
        # BLITLINE.md: such a job fails with a clear error; it used to run, fetch its source
        # and fail only that output, after processing it
        self.start(PIXQ_DEFAULT_BUCKET="")
        job = self.job("no-dest")
        del job["functions"][0]["save"]["s3_destination"]
        self.expect_failure(job, "'thumb' has no s3_destination and PIXQ_DEFAULT_BUCKET is not "
                                 "set")
        self.assertEqual(self.src.requests("/ok.jpg"), 0, "refused before fetching")
        # a save with skip makes no object, and needs no bucket
        job = self.job("no-dest-skip")
        job["functions"][0]["save"] = {"image_identifier": "meta", "skip": True}
        self.push_job(job)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-no-dest-skip")
        self.assertNotIn("errors", pb.results, pb.body[:400])
        self.assert_still_serving()

    def test_s3_source_outside_allow_list(self):
        self.start(PIXQ_S3_BUCKETS="pixq-test")
        self.assertEqual(self.s3.put_object("other-bucket", "secret.jpg", self.image), 200)
        job = self.job("s3-src", {"name": "s3", "bucket": "other-bucket", "key": "secret.jpg"})
        self.expect_failure(job, "Failed to download from s3: bucket 'other-bucket' is not "
                                 "allowed")
        # the same object is readable when its bucket is allowed: the refusal is the guard's
        self.assertEqual(self.s3.put_object("pixq-test", "in.jpg", self.image), 200)
        job = self.job("s3-src-ok", {"name": "s3", "bucket": "pixq-test", "key": "in.jpg"})
        self.push_job(job)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-s3-src-ok")
        self.assertNotIn("errors", pb.results, pb.body[:400])
        self.assert_still_serving()

    def test_keys_with_dot_segments_are_refused(self):
        # "../other-bucket/x" is a key of pixq-test for S3, but S3-compatible stores (s3rver
        # among them) and libcurl's default resolve it as a path: it wrote into, and read from,
        # a bucket outside the allow list
        self.start(PIXQ_S3_BUCKETS="pixq-test")
        job = self.job("dots")
        job["functions"][0]["save"]["s3_destination"]["key"] = "../other-bucket/owned.jpg"
        self.expect_failure(job, "key '../other-bucket/owned.jpg' has a '.' or '..' segment")
        status, _, _ = self.s3.get_object("other-bucket", "owned.jpg")
        self.assertEqual(status, 404)
        self.assertEqual(self.s3.put_object("other-bucket", "secret.jpg", self.image), 200)
        job = self.job("dots-src", {"name": "s3", "bucket": "pixq-test",
                                    "key": "x/../../other-bucket/secret.jpg"})
        self.expect_failure(job, "Failed to download from s3: key "
                                 "'x/../../other-bucket/secret.jpg' has a '.' or '..' segment")
        status, _, _ = self.s3.get_object("pixq-test", "out/dots-src.jpg")
        self.assertEqual(status, 404)
        self.assert_still_serving()

    def test_default_key_with_dot_segments_is_refused(self):
        # a save without s3_destination goes to <hour>/<job_id>/<image_identifier>-<n>.<ext>:
        # an image_identifier of "../../../other-bucket/x" made a key that climbed out of the
        # default bucket into another
        self.start(PIXQ_S3_BUCKETS="pixq-test", PIXQ_DEFAULT_BUCKET="pixq-test")
        job = self.job("dots-default")
        save = job["functions"][0]["save"]
        del save["s3_destination"]
        save["image_identifier"] = "../../../other-bucket/x"
        self.push_job(job)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-dots-default")
        self.assertIn("has a '.' or '..' segment", " ".join(pb.results.get("errors", [])),
                      pb.body[:400])
        self.assertEqual(pb.results.get("failed_image_identifiers"), ["../../../other-bucket/x"])
        status, _, _ = self.s3.get_object("other-bucket", "x-0.jpg")
        self.assertEqual(status, 404)
        self.assert_still_serving()

    def test_bad_bucket_names_keys_and_locations(self):
        self.start()
        long_key = "k/" + "a" * 1023
        cases = [
            ({"bucket": "Bad_Bucket_", "key": "a.jpg"}, "bucket name 'Bad_Bucket_' is not valid"),
            ({"bucket": "ab", "key": "a.jpg"}, "bucket name 'ab' is not valid"),
            ({"bucket": "pixq-test", "key": long_key}, "key must be 1 to 1024 bytes, not 1025"),
            ({"bucket": "pixq-test", "key": "a\u0001b.jpg"}, "not UTF-8 without control"),
            ({"bucket": "pixq-test", "key": "a\u0085b.jpg"}, "not UTF-8 without control"),
            ({"bucket": "pixq-test", "key": "a\u0000b.jpg"}, "key has a NUL character"),
            ({"bucket": {"name": "pixq-test", "location": "x.evil.example/"}, "key": "a.jpg"},
             "bucket location 'x.evil.example/' is not a region name"),
        ]
        for i, (dest, fragment) in enumerate(cases):
            with self.subTest(fragment=fragment):
                job = self.job("key-%d" % i)
                job["functions"][0]["save"]["s3_destination"] = dest
                self.expect_failure(job, fragment)
        # raw bytes that are not UTF-8
        raw = json.dumps(self.job("key-latin1")).replace("out/key-latin1.jpg", "caf\\u00e9")
        raw = raw.encode().replace(b"caf\\u00e9", b"caf\xe9.jpg")
        self.redis.lpush(self.key("jobs"), raw)
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-key-latin1")
        self.assertIn("not UTF-8 without control", " ".join(pb.results["errors"]))
        self.assert_still_serving()


# ---------------------------------------------------------------------------------------------
# signatures


def verify(pb, secret, max_age_s=300):
    """What a receiver does (README): recompute, compare in constant time, check the age."""
    ts = pb.headers["x-pixq-timestamp"]
    sig = pb.headers["x-pixq-signature"]
    mac = hmac.new(secret.encode(), ts.encode() + b"." + pb.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, "v1=" + mac) and abs(time.time() - int(ts)) <= max_age_s


class ForgedTaskTest(HostileTestCase):
    """pixq's own entries on a queue (postback retries, parked uploads, poison pills) carry a mark
    no JSON job can start with. A job whose first key was "pixq_postback" was taken for a postback
    retry: the worker posted another job's stored result to the forger's postback_url."""

    def test_job_posing_as_a_postback_retry_fails_as_a_job(self):
        self.start()
        victim = self.job("victim")
        del victim["postback_url"]  # polled through result:<id>: never posted
        self.push_job(victim)
        self.wait_until(lambda: self.redis.lrange(self.key("result:hostile-victim")), TIMEOUT_S,
                        "the victim's result")
        stolen = dict(victim, postback_url=self.postbacks.url("/steal"))
        forged = {"pixq_postback": {"job": json.dumps(stolen), "job_id": "hostile-victim",
                                    "attempt": 1}}
        forged.update(self.job("forged"))  # and a valid job around it, after it
        self.assertEqual(next(iter(forged)), "pixq_postback")
        self.expect_failure(forged, "'pixq_postback' is pixq's own: a job may not carry it")
        forged_upload = {"pixq_upload": {"job_id": "hostile-victim", "n": 0,
                                         "bucket": "other-bucket", "key": "x.jpg"}}
        forged_upload.update(self.job("forged-upload"))
        self.expect_failure(forged_upload, "'pixq_upload' is pixq's own")
        time.sleep(0.5)
        self.assertEqual([p.path for p in self.postbacks.postbacks if p.path == "/steal"], [])
        self.assert_still_serving()


class SignatureTest(HostileTestCase):
    SECRET = "pb-secret-7f3a9c"

    def test_postbacks_are_signed(self):
        self.start(PIXQ_POSTBACK_SECRET=self.SECRET)
        self.push_job(self.job("signed"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-signed")
        self.assertNotIn("errors", pb.results)
        self.assertTrue(verify(pb, self.SECRET), pb.headers)
        self.assertLessEqual(abs(int(pb.headers["x-pixq-timestamp"]) - pb.wall), 5)
        self.assertFalse(verify(pb, self.SECRET + "x"))
        # a failure is signed too, and a job cannot supply its own signature
        job = self.job("signed-fail", "http://10.9.9.9/a.jpg",
                       postback_headers={"X-Pixq-Signature": "v1=forged",
                                         "X-Pixq-Timestamp": "1"})
        pb = self.expect_failure(job, "address 10.9.9.9 is not allowed")
        self.assertTrue(verify(pb, self.SECRET), pb.headers)
        self.assertNotEqual(pb.headers["x-pixq-signature"], "v1=forged")
        self.assert_still_serving()

    def test_form_postback_is_signed_over_its_raw_body(self):
        """README: the signature is over "<timestamp>.<raw body>": for a job of v 1.17 or
        before, posted as a form (Blitline's), that is the form's bytes, not the result's JSON
        (the postbacks signed here were all JSON, where the two are the same)."""
        self.start(PIXQ_POSTBACK_SECRET=self.SECRET)
        self.push_job(self.job("signed-form", v=1.0, postback_url=self.postbacks.url("/form")))
        pb = self.wait_for_postback(TIMEOUT_S, path="/form")
        self.assertEqual(pb.headers.get("content-type"), "application/x-www-form-urlencoded")
        self.assertTrue(pb.body.startswith(b"results="), pb.body[:100])
        self.assertTrue(verify(pb, self.SECRET), pb.headers)

    def test_retried_postback_is_signed_anew(self):
        """Each attempt of a retried postback is signed when it is sent: a receiver refuses a
        timestamp older than its window (300 s in README's recipe), shorter than the last of
        PIXQ_POSTBACK_RETRY_DELAYS_S (600 s), so a signature kept from the first attempt would
        have the later ones refused."""
        self.start(PIXQ_POSTBACK_SECRET=self.SECRET, PIXQ_POSTBACK_RETRY_DELAYS_S="1")
        self.postbacks.answer_with(500)
        self.push_job(self.job("signed-retry", retry_postback=True))
        first, second = self.postbacks.wait_for_postbacks(
            2, TIMEOUT_S, lambda pb: pb.job_id == "hostile-signed-retry")
        self.assertEqual(first.body, second.body)
        for pb in (first, second):
            self.assertTrue(verify(pb, self.SECRET), pb.headers)
        self.assertGreater(int(second.headers["x-pixq-timestamp"]),
                           int(first.headers["x-pixq-timestamp"]))

    def test_receiver_in_shell_with_openssl(self):
        """The README's shell recipe gives the same signature."""
        self.start(PIXQ_POSTBACK_SECRET=self.SECRET)
        self.push_job(self.job("openssl"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-openssl")
        body = self.tmp / "body.json"
        body.write_bytes(pb.body)
        ts = pb.headers["x-pixq-timestamp"]
        out = subprocess.run(
            ["sh", "-c", '{ printf "%s." "$TS"; cat "$BODY"; } | '
             'openssl dgst -sha256 -hmac "$SECRET" -r | cut -d" " -f1'],
            env={"TS": ts, "BODY": str(body), "SECRET": self.SECRET, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, check=True, text=True).stdout.strip()
        self.assertEqual("v1=" + out, pb.headers["x-pixq-signature"])

    def readme_receivers(self):
        """README's two receivers under "Verifying a postback", as written: the Python function
        and the shell lines."""
        readme = (harness.REPO_ROOT / "README.md").read_text()
        section = readme[readme.index("**Verifying a postback.**"):]
        python = section[section.index("```python\n") + 10:]
        python = python[:python.index("```")]
        shell = section[section.index("```sh\n") + 6:]
        shell = shell[:shell.index("```")]
        names = {}
        exec(compile(python, "README.md", "exec"), names)
        return names["pixq_postback_ok"], shell

    def test_readme_receivers_as_written(self):
        """Both receivers README gives, run word for word (a user copies them): they accept a
        postback pixq signed, and refuse it with another body, another secret or a timestamp
        older than their 300 s (the shell test only ran README's openssl pipe)."""
        ok, shell = self.readme_receivers()
        self.start(PIXQ_POSTBACK_SECRET=self.SECRET)
        self.push_job(self.job("readme-recipes"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-readme-recipes")
        ts, sig = pb.headers["x-pixq-timestamp"], pb.headers["x-pixq-signature"]
        secret = self.SECRET.encode()
        headers = {"X-Pixq-Timestamp": ts, "X-Pixq-Signature": sig}  # as a server names them
        tampered = pb.body.replace(b"hostile-readme-recipes", b"hostile-readme-recipez")
        self.assertNotEqual(tampered, pb.body)
        old = str(int(ts) - 400)
        old_sig = "v1=" + hmac.new(secret, old.encode() + b"." + pb.body,
                                   hashlib.sha256).hexdigest()  # validly signed, but too old
        self.assertTrue(ok(headers, pb.body, secret))
        self.assertFalse(ok(headers, tampered, secret))
        self.assertFalse(ok(headers, pb.body, secret + b"x"))
        self.assertFalse(ok({"X-Pixq-Timestamp": old, "X-Pixq-Signature": old_sig}, pb.body,
                            secret))
        self.assertFalse(ok({}, pb.body, secret))

        def shell_says(body, ts, sig, secret):
            (self.tmp / "body.json").write_bytes(body)
            return subprocess.run(["sh", "-c", shell], cwd=str(self.tmp),
                                  env={"TS": ts, "SIG": sig, "PIXQ_POSTBACK_SECRET": secret,
                                       "PATH": "/usr/bin:/bin"},
                                  stdout=subprocess.DEVNULL, timeout=30).returncode

        self.assertEqual(shell_says(pb.body, ts, sig, self.SECRET), 0)
        self.assertEqual(shell_says(tampered, ts, sig, self.SECRET), 1)
        self.assertEqual(shell_says(pb.body, ts, sig, self.SECRET + "x"), 1)
        self.assertEqual(shell_says(pb.body, old, old_sig, self.SECRET), 1)

    def test_unsigned_without_secret(self):
        self.start()
        self.push_job(self.job("unsigned"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-unsigned")
        self.assertNotIn("x-pixq-signature", pb.headers)
        self.assertNotIn("x-pixq-timestamp", pb.headers)
        # nor can a job sign its own: a receiver would take a forged header for pixq's
        self.push_job(self.job("self-signed", postback_headers={
            "X-Pixq-Signature": "v1=forged", "x-pixq-timestamp": "1", "X-Other": "kept"}))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-self-signed")
        self.assertNotIn("x-pixq-signature", pb.headers)
        self.assertNotIn("x-pixq-timestamp", pb.headers)
        self.assertEqual(pb.headers.get("x-other"), "kept")


# ---------------------------------------------------------------------------------------------
# Redis AUTH and secrets


class RedisAuthTest(HostileTestCase):
    """PIXQ_REDIS_URL with a password (requirepass) or an ACL user and password."""

    def use_auth_redis(self, password, username=None):
        server = AuthRedisServer(self.tmp / ("redis-auth-%s" % (username or "pass")), password,
                                 username)
        self.addCleanup(server.stop)
        server.start()
        self.redis = server.client()
        self.addCleanup(self.redis.close)
        return server

    def check_round_trip(self, server):
        self.start(PIXQ_REDIS_URL=server.url())
        self.assert_still_serving()
        # finish.lua counts the job after its postback
        result = self.key("result:hostile-good-%d" % self.good_jobs)
        self.wait_until(lambda: self.redis.exists(result), 10, "%s to exist" % result)
        r = self.run_pixq("stats", "--json", env={"PIXQ_REDIS_URL": server.url()})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["counters"].get("succeeded"), 1, r.stdout)
        self.assertNotIn(server.password, r.stdout + r.stderr)

    def test_requirepass(self):
        server = self.use_auth_redis("redis-pass-4e1b")
        self.check_round_trip(server)
        # without the password the server refuses, and the message does not leak the URL's
        bad = server.url().replace("redis-pass-4e1b", "wrong-pass-9d")
        r = self.run_pixq("stats", env={"PIXQ_REDIS_URL": bad})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("AUTH", r.stderr)
        self.assertNotIn("wrong-pass-9d", r.stdout + r.stderr)
        # README: the commands that ride out a Redis outage (--watch, --wait) fail at once on a
        # refused login, a wrong password or none, rather than try again for
        # PIXQ_REDIS_OUTAGE_MS (10 minutes here: the run's 60 s limit would end it first)
        job = json.dumps({"src": {"name": "canvas", "width": 8, "height": 8}, "functions": []})
        nopass = server.url().replace(":redis-pass-4e1b@", "")
        self.assertNotIn("redis-pass-4e1b", nopass)
        for url, answer in ((bad, "WRONGPASS"), (nopass, "NOAUTH")):
            for args in (["stats", "--watch", "1", "--count", "3"], ["job", "a1", "--wait"],
                         ["submit", "-", "--wait"]):
                with self.subTest(args=args, answer=answer):
                    r = self.run_pixq(*args, input=job, env={"PIXQ_REDIS_URL": url,
                                                             "PIXQ_REDIS_OUTAGE_MS": "600000"})
                    self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
                    self.assertIn(answer, r.stderr)
                    self.assertNotIn("trying again", r.stderr)
                    self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                    if answer == "NOAUTH":  # where the password goes (h225's audit)
                        self.assertIn(NO_PASSWORD, r.stderr)
        # a database but 0: NOAUTH answers the SELECT of the connection
        r = self.run_pixq("stats", env={"PIXQ_REDIS_URL": nopass[:-2] + "/3"})
        self.assertEqual((r.returncode, r.stdout), (1, ""), r.stderr)
        self.assertEqual(r.stderr, "pixq: stats: redis SELECT refused: NOAUTH Authentication "
                         "required.%s\n" % NO_PASSWORD)

    def test_acl_user(self):
        server = self.use_auth_redis("acl-pass-83c2", username="pixq")
        self.check_round_trip(server)
        self.assertIn("pixq", self.redis.execute("ACL", "WHOAMI"))
        # the default user is off: a URL without the user name cannot work
        bad = "redis://:acl-pass-83c2@127.0.0.1:%d/0" % server.port
        r = self.run_pixq("stats", env={"PIXQ_REDIS_URL": bad})
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("acl-pass-83c2", r.stdout + r.stderr)

    def test_unix_socket_and_database_number(self):
        """PIXQ_REDIS_URL as unix:///path/redis.sock (DESIGN, README), with ?db=N, and a database
        other than 0 (redis://host:port/N): a worker over the socket in database 3 runs a job
        pushed there, pixq reads its counters there over the socket and over TCP, and database
        0 is left empty. Only a socket that is not there had been tried (test_cli), and no run
        used a database but 0: SELECT skipped on a socket (a rq.c mutant) passed every test."""
        server = UnixSocketRedisServer(self.tmp / "redis-unix")
        self.addCleanup(server.release_port)  # after stop(): cleanups run last first
        self.addCleanup(server.stop)
        server.start()
        self.redis = DatabaseRedis(LOOPBACK, server.port, 3)
        self.addCleanup(self.redis.close)
        by_socket = "unix://%s?db=3" % server.socket
        self.start(PIXQ_REDIS_URL=by_socket)
        self.assert_still_serving()
        result = self.key("result:hostile-good-%d" % self.good_jobs)
        self.wait_until(lambda: self.redis.exists(result), 10, "%s to exist" % result)
        for url in (by_socket, server.url(3)):
            with self.subTest(url=url):
                r = self.run_pixq("stats", "--json", env={"PIXQ_REDIS_URL": url})
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["counters"].get("succeeded"), 1, r.stdout)
        database_0 = Redis(LOOPBACK, server.port)
        self.addCleanup(database_0.close)
        self.assertEqual(database_0.execute("DBSIZE"), 0)

    def test_worker_with_wrong_password_ends_without_telling_it(self):
        """Refused, the worker ends with status 2 (a setting to fix, not an outage to wait out),
        and neither its log nor its message shows the password."""
        server = self.use_auth_redis("right-pass-51")
        worker = self.start(PIXQ_REDIS_URL=server.url().replace("right-pass-51", "wrong-pass-52"))
        worker.proc.wait(harness.scaled(20))
        self.programs.remove(worker)
        worker.terminate()
        self.assertEqual(worker.proc.returncode, 2)
        text = worker.log_path.read_text(errors="replace")
        self.assertTrue(worker.log_events("start_refused"))
        self.assertIn("AUTH", text)
        self.assertNotIn("wrong-pass-52", text)
        self.assertIn("PIXQ_REDIS_URL=redis://:***@", text)


class SecretsTest(HostileTestCase):
    """A full run with every secret set: good jobs, failing jobs, failing uploads, the CLI.
    None of the secrets appears in logs, postbacks, stats, dead entries or results."""

    REDIS_PASSWORD = "rds-SECRET-5b7e0c"
    POSTBACK_SECRET = "pb-SECRET-a41f9d"
    SESSION_TOKEN = "tok-SECRET-0c6e22"
    BAD_KEY_ID = "AKIASECRETID9F3Q"
    BAD_SECRET_KEY = "sak-SECRET-77d0b1"

    def test_no_secret_in_any_output(self):
        server = AuthRedisServer(self.tmp / "redis-secret", self.REDIS_PASSWORD, "pixq")
        self.addCleanup(server.stop)
        server.start()
        self.redis = server.client()
        self.addCleanup(self.redis.close)
        env = {"PIXQ_REDIS_URL": server.url(), "PIXQ_POSTBACK_SECRET": self.POSTBACK_SECRET,
               "AWS_SESSION_TOKEN": self.SESSION_TOKEN}
        # worker 1: good credentials (s3rver's), a good job and failures of every kind
        w1 = self.start(**env)
        self.assert_still_serving()
        self.expect_failure(self.job("s-refused", "http://10.0.0.1/a.jpg"), "not allowed")
        self.expect_failure(self.job("s-404", self.src.url("/missing.jpg")), "HTTP 404")
        self.expect_failure(self.job("s-crlf", postback_headers={"A": "b\r\nc: d"}),
                            "forbidden character")
        self.kill_worker(w1, sig=15)
        # worker 2: credentials S3 refuses, so every upload fails with an S3 error
        w2 = self.start(AWS_ACCESS_KEY_ID=self.BAD_KEY_ID,
                        AWS_SECRET_ACCESS_KEY=self.BAD_SECRET_KEY, **env)
        self.push_job(self.job("s-upload"))
        pb = self.wait_for_postback(TIMEOUT_S, job_id="hostile-s-upload")
        self.assertIn("InvalidAccessKeyId", " ".join(pb.results["errors"]))
        self.kill_worker(w2, sig=15)
        # the CLI
        outputs = []
        for args in (("stats",), ("stats", "--json"), ("dead", "list", "--json"),
                     ("dead", "list")):
            r = self.run_pixq(*args, env=dict(env, AWS_ACCESS_KEY_ID=self.BAD_KEY_ID,
                                              AWS_SECRET_ACCESS_KEY=self.BAD_SECRET_KEY))
            self.assertEqual(r.returncode, 0, r.stderr)
            outputs.append(r.stdout + r.stderr)
        printed = subprocess.run([CONFIG.worker, "--print-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=30,
                                 env=self.worker_env(**env, AWS_ACCESS_KEY_ID=self.BAD_KEY_ID,
                                                     AWS_SECRET_ACCESS_KEY=self.BAD_SECRET_KEY))
        outputs.append(printed.stdout)
        self.assertIn("PIXQ_POSTBACK_SECRET=(set)", printed.stdout)
        # everything a user or an operator can see
        outputs += [w.log_path.read_text(errors="replace") for w in (w1, w2)]
        outputs += [pb.body.decode(errors="replace") + repr(pb.headers)
                    for pb in self.postbacks.postbacks]
        for key in ("dead", "stats"):
            outputs.append(repr(self.redis.execute("DUMP", self.key(key))))
        outputs += [repr(self.redis.lrange(self.key("dead"), 0, -1))]
        outputs += [repr(self.redis.lrange(k, 0, -1)) for k in self.redis.keys(self.key("result:*"))]
        self.assertGreaterEqual(len(self.dead_entries()), 4)
        everything = "\n".join(outputs)
        for secret in (self.REDIS_PASSWORD, self.POSTBACK_SECRET, self.SESSION_TOKEN,
                       self.BAD_KEY_ID, self.BAD_SECRET_KEY):
            with self.subTest(secret=secret):
                self.assertNotIn(secret, everything)
                self.assertNotIn(urllib.parse.quote(secret, safe=""), everything)


if __name__ == "__main__":
    harness.in_own_network_namespace()  # the addresses refused here are never reached
    harness.main()
