#!/usr/bin/python3
"""End-to-end tests: real redis-server, real s3rver, the real pixq-worker and pixq CLI.

Each test pushes Blitline jobs the way any producer would (LPUSH on pixq:{default}:jobs, or
`pixq submit`), then checks what a user sees: the postback, the objects in S3 (decoded, so their
real format and size), the result key, and that the queue ends empty.

Run by meson (suite integration), or by hand:
    /usr/bin/python3 tests/integration/test_e2e.py --worker build/worker/pixq-worker \\
        --pixq build/producer/pixq --data tests/data [-k jpeg]
"""

import json
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, PixqTestCase, corpus, scaled  # noqa: E402

POSTBACK_TIMEOUT_S = 30
THUMB = {"width": 200}  # resize_to_fit's params in every job here

# name on the source server, corpus file, original size, identify format
SOURCES = {
    "jpeg": ("/autumn.jpg", "autumn-2560x1600.jpg", (2560, 1600), "JPEG"),
    "png": ("/cascade.png", "cascade-3840x2160.png", (3840, 2160), "PNG"),
    "webp": ("/truchet.webp", "truchet-4096x4096.webp", (4096, 4096), "WEBP"),
}


class E2ETestCase(PixqTestCase):
    """Shared steps of the end-to-end tests."""

    def serve(self, kind):
        """Put a corpus image on the source server; return its URL."""
        path, name, _, _ = SOURCES[kind]
        return self.src.add(path, corpus(name))

    def assert_success_postback(self, pb, job_id, original, images):
        """A Blitline success postback: POST, JSON, exactly
        {"results": {"job_id", "original_meta": {width, height}, "images": [...]}}.
        job_id None means "any non-empty string" (the worker assigned it). Returns the job id."""
        self.assertEqual(pb.method, "POST")
        self.assertTrue(pb.headers.get("content-type", "").startswith("application/json"),
                        pb.headers)
        self.assertIsInstance(pb.json, dict, pb.body[:500])
        self.assertEqual(list(pb.json), ["results"])
        results = pb.json["results"]
        self.assertNotIn("errors", results)
        got_id = results.get("job_id")
        self.assertIsInstance(got_id, str)
        self.assertTrue(got_id)
        if job_id is not None:
            self.assertEqual(got_id, job_id)
        self.assertEqual(results, {
            "job_id": got_id,
            "original_meta": {"width": original[0], "height": original[1]},
            "images": images,
        })
        return got_id

    def expected_image(self, key, size, identifier="thumb"):
        return {"image_identifier": identifier, "s3_url": self.s3_url(key),
                "meta": {"width": size[0], "height": size[1]}}

    def assert_finished(self, job_id, postback_json):
        """The result key holds the postback's JSON; the queue is empty with nothing active."""
        self.assertEqual(self.read_result(job_id), postback_json)
        self.assert_queue_drained()

    def run_resize(self, kind, key, out_size, job_id=None, out_format=None,
                   function="resize_to_fit", params=None):
        """Push one job for a corpus image and check everything a user sees."""
        path, _, original, fmt = SOURCES[kind]
        if params is None and function == "resize_to_fit":
            params = THUMB
        job = self.make_job(self.serve(kind), key, function=function, params=params,
                            job_id=job_id)
        self.push_job(job)

        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S)
        got_id = self.assert_success_postback(pb, job_id, original,
                                              [self.expected_image(key, out_size)])
        self.assert_image(self.s3_object(key), out_format or fmt, *out_size)
        self.assertGreaterEqual(self.src.requests(path), 1)
        self.assert_finished(got_id, pb.json)
        return got_id


class ResizeTest(E2ETestCase):
    """(a) resize_to_fit width 200 for each source format, and no_op with a format change."""

    def test_jpeg_with_job_id(self):
        self.run_resize("jpeg", "out/autumn.jpg", (200, 125), job_id="e2e-jpeg-7Qx3")

    def test_png_without_job_id(self):
        job_id = self.run_resize("png", "out/cascade.png", (200, 113))
        # the worker assigned an id; it is the one the result key is under (checked above)
        self.assertNotEqual(job_id, "")

    def test_webp_with_job_id(self):
        self.run_resize("webp", "out/truchet.webp", (200, 200), job_id="e2e-webp-Zk41")

    def test_no_op_jpeg_to_png(self):
        self.run_resize("jpeg", "out/autumn-noop.png", (2560, 1600), job_id="e2e-noop-1",
                        out_format="PNG", function="no_op")


class PostbackOutcomeLogTest(E2ETestCase):
    """The job's last line (job_done, job_failed) says how its postback went, so that a job
    whose result reached nobody does not read as a plain success; postback_failed names the
    receiver, without the query, where receivers carry tokens."""

    def last_line(self, job_id):
        return self.wait_until(
            lambda: [e for e in self.worker.log_events("job_done") + self.worker.log_events(
                "job_failed") if e.get("job_id") == job_id], 20, "the last line of " + job_id)[0]

    def test_each_outcome_on_the_last_line(self):
        src = self.serve("jpeg")
        self.push_job(self.make_job(src, "out/pbo-ok.jpg", params=THUMB, job_id="pbo-ok"))
        done = self.last_line("pbo-ok")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "info", "delivered"), done)

        job = self.make_job(src, "out/pbo-none.jpg", params=THUMB, job_id="pbo-none")
        del job["postback_url"]
        self.push_job(job)
        done = self.last_line("pbo-none")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "info", "none"), done)

        job = self.make_job(src, "out/pbo-bad.jpg", function="nope", job_id="pbo-bad")
        self.push_job(job)
        done = self.last_line("pbo-bad")
        self.assertEqual((done["event"], done["postback"]), ("job_failed", "delivered"), done)
        self.assertNotIn("postbacks_given_up", self.redis.hgetall(self.key("stats")))

        self.postbacks.answer_with(500)
        self.push_job(self.make_job(src, "out/pbo-500.jpg", params=THUMB, job_id="pbo-500",
                                    postback_path="/pb/r?token=s3cr3t"))
        done = self.last_line("pbo-500")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "warn", "failed"), done)
        failed = [e for e in self.worker.log_events("postback_failed")
                  if e.get("job_id") == "pbo-500"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["url"], self.postbacks.url("/pb/r"), failed)
        self.assertEqual(failed[0]["error"], "postback answered HTTP 500", failed)
        self.assertNotIn("s3cr3t", self.worker.log_path.read_text(errors="replace"))
        # a failed job whose postback fails too: its failure reached nobody either
        self.postbacks.answer_with(500)
        self.push_job(self.make_job(src, "out/pbo-bad-500.jpg", function="nope",
                                    job_id="pbo-bad-500"))
        done = self.last_line("pbo-bad-500")
        self.assertEqual((done["event"], done["postback"]), ("job_failed", "failed"), done)
        # counted fleet-wide beside the outcome, for `pixq stats`: the result reached nobody
        stats = self.redis.hgetall(self.key("stats"))
        self.assertEqual((stats.get("succeeded"), stats.get("failed"),
                          stats.get("postbacks_given_up")), ("3", "2", "2"), stats)

    def test_the_other_outcomes_on_the_last_line(self):
        """README's other values of postback=, on which operators alert: retry_scheduled
        (retry_postback), refused (a URL no try can reach, postback_failed saying why) and
        delivered_before (an earlier run's postback, recorded: a re-run sends none); and the
        receiver's password left out of postback_failed's url, as its query is."""
        src = self.serve("jpeg")
        self.postbacks.answer_with(500)
        job = self.make_job(src, "out/pbo-retry.jpg", params=THUMB, job_id="pbo-retry")
        job["postback_url"] = job["postback_url"].replace("://", "://pbuser:hunter2@", 1)
        job["retry_postback"] = True
        self.push_job(job)
        done = self.last_line("pbo-retry")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "warn", "retry_scheduled"), done)
        failed = [e for e in self.worker.log_events("postback_failed")
                  if e.get("job_id") == "pbo-retry"]
        self.assertEqual(failed[0]["url"],
                         self.postbacks.url("/pb").replace("://", "://pbuser:***@", 1), failed)
        self.assertNotIn("hunter2", self.worker.log_path.read_text(errors="replace"))
        self.wait_for_postback(30, job_id="pbo-retry")  # the retry, answered 200

        job = self.make_job(src, "out/pbo-refused.jpg", params=THUMB, job_id="pbo-refused")
        job["postback_url"] = "ftp://127.0.0.1:9/pb"
        job["retry_postback"] = True  # refused all the same: no try can reach it
        self.push_job(job)
        done = self.last_line("pbo-refused")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_failed", "warn", "refused"), done)  # the job fails on it too
        self.assertTrue([e for e in self.worker.log_events("postback_failed")
                         if e.get("job_id") == "pbo-refused"])
        # a URL that passes the guard but libcurl cannot send: the job done, its result refused
        job = self.make_job(src, "out/pbo-bad-url.jpg", params=THUMB, job_id="pbo-bad-url")
        job["postback_url"] = "http://exa mple.test:9/pb"
        job["retry_postback"] = True
        self.push_job(job)
        done = self.last_line("pbo-bad-url")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "warn", "refused"), done)

        # the same job again, once its first run's postback is recorded: posted before
        job = self.make_job(src, "out/pbo-again.jpg", params=THUMB, job_id="pbo-again")
        self.push_job(job)
        self.assertEqual(self.last_line("pbo-again")["postback"], "delivered")
        self.wait_until(lambda: self.redis.execute("HGET", self.key("job:pbo-again"), "posted"),
                        10, "the delivery recorded")
        self.push_job(job)
        done = self.wait_until(lambda: [e for e in self.worker.log_events("job_done")
                                        if e.get("job_id") == "pbo-again"][1:], 20,
                               "the second run's job_done")[0]
        self.assertEqual((done["level"], done["postback"]), ("info", "delivered_before"), done)
        self.assertEqual(len([pb for pb in self.postbacks.postbacks
                              if pb.job_id == "pbo-again"]), 1)


    def test_error_only_postback_of_a_success_is_none_not_delivered_before(self):
        """postback_error_only: a job that did not fail posts nothing, and its last line says
        so (postback=none: none was due, README), not delivered_before, which README reserves
        for an earlier run's delivery; the job that fails posts back, delivered."""
        src = self.serve("jpeg")
        job = self.make_job(src, "out/pbo-eo.jpg", params=THUMB, job_id="pbo-eo")
        job["postback_error_only"] = True
        self.push_job(job)
        done = self.last_line("pbo-eo")
        self.assertEqual((done["event"], done["level"], done["postback"]),
                         ("job_done", "info", "none"), done)
        job = self.make_job(src, "out/pbo-eo-bad.jpg", function="nope", job_id="pbo-eo-bad")
        job["postback_error_only"] = True
        self.push_job(job)
        done = self.last_line("pbo-eo-bad")
        self.assertEqual((done["event"], done["postback"]), ("job_failed", "delivered"), done)
        self.assertEqual([pb.job_id for pb in self.postbacks.postbacks], ["pbo-eo-bad"])

class MissingFontLogTest(E2ETestCase):
    """A font_family that is not installed is drawn in the default face, as Blitline's
    ImageMagick did, and the log says so (font_missing, with the job's id): once a process for
    a name, however many functions and jobs use it."""

    def text_job(self, src, job_id, *fonts):
        job = self.make_job(src, "out/%s.jpg" % job_id, params=THUMB, job_id=job_id)
        job["functions"][0]["functions"] = [
            {"name": "annotate", "params": {"text": "pixq", "font_family": f},
             "save": {"image_identifier": "%s-%d" % (job_id, i)}}
            for i, f in enumerate(fonts)]
        return job

    def done(self, job_id):
        pb = self.wait_for_postback(30, job_id=job_id)
        self.assertNotIn("errors", pb.results, pb.results)

    def test_said_once_with_what_is_drawn(self):
        src = self.serve("jpeg")
        self.push_job(self.text_job(src, "font-known", "Helvetica", "DejaVu Sans Bold", "Arial"))
        self.done("font-known")
        self.assertEqual(self.worker.log_events("font_missing"), [])
        self.push_job(self.text_job(src, "font-missing", "Comic Sans MS", "Comic Sans MS",
                                    "../../etc/fonts/x.ttf"))
        self.done("font-missing")
        self.push_job(self.text_job(src, "font-again", "Comic Sans MS"))
        self.done("font-again")
        said = [(e["font"], e["drawn_in"], e["job_id"], e["level"])
                for e in self.worker.log_events("font_missing")]
        self.assertEqual(said, [("Comic Sans MS", "Nimbus Sans", "font-missing", "warn"),
                                ("../../etc/fonts/x.ttf", "Nimbus Sans", "font-missing", "warn")])


class PlainTextS3AnswerTest(E2ETestCase):
    def test_text_body_of_an_error_is_said(self):
        """s3rver answers a key with an empty segment (valid in S3) 404 with a body of plain
        text: the error quotes it, where it said a bare "HTTP 404" of a bucket that exists."""
        self.push_job(self.make_job(self.serve("jpeg"), "a//x.jpg", params=THUMB,
                                    job_id="s3-text"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, job_id="s3-text")
        errors = pb.json["results"].get("errors") or []
        self.assertEqual(len(errors), 1, pb.json)
        self.assertRegex(errors[0], r"^S3 PUT http://\S+/a//x\.jpg: "
                         r"HTTP 404: Not Found$")


class TimesTest(E2ETestCase):
    """job_done (info level) says where the job's time went."""

    def test_job_done_splits_the_time(self):
        # the source answered 0.4 s late and the postback 0.3 s late: each delay shows in its
        # own field, neither in the processing, and the parts fit in the whole
        self.src.delay["/autumn.jpg"] = 0.4
        self.postbacks.delay = 0.3
        self.run_resize("jpeg", "out/timed.jpg", (200, 125), job_id="timed")
        done = self.wait_until(lambda: [e for e in self.worker.log_events("job_done")
                                        if e.get("job_id") == "timed"], 10, "job_done")
        self.assertEqual(done[0]["level"], "info")
        t = {k: float(done[0][k]) for k in ("ms", "fetch_ms", "process_ms", "upload_ms",
                                             "s3_wait_ms", "postback_ms")}
        self.assertGreaterEqual(t["fetch_ms"], 400, t)
        self.assertGreaterEqual(t["postback_ms"], 300, t)
        self.assertGreater(t["process_ms"], 0, t)
        self.assertLess(t["process_ms"], 300, t)
        self.assertGreater(t["upload_ms"], 0, t)
        self.assertLess(t["upload_ms"], 300, t)
        self.assertEqual(t["s3_wait_ms"], 0, t)  # no wait_for_s3
        self.assertLessEqual(sum(v for k, v in t.items() if k != "ms"), t["ms"] + 1, t)
        # README (Logs), at debug level: begin.lua's line is marked ahead=1 and its ms lasts
        # from before the job ran (the download's 0.4 s included) until its answer was read
        begins = [e for e in self.worker.log_events("redis")
                  if e.get("script") == "begin" and e.get("job_id") == "timed"]
        self.assertEqual([(e["cmd"], e.get("ahead")) for e in begins], [("EVALSHA", "1")], begins)
        self.assertGreaterEqual(float(begins[0]["ms"]), t["fetch_ms"], (begins, t))
        # and one line per S3 request: event=s3_put with method, bucket, status, ms
        puts = [e for e in self.worker.log_events("s3_put") if e.get("job_id") == "timed"]
        self.assertEqual([(e["method"], e["bucket"], e["status"]) for e in puts],
                         [("PUT", self.buckets[0], "200")], puts)
        self.assertGreater(float(puts[0]["ms"]), 0, puts)

    def test_wait_for_s3_has_its_own_field(self):
        job = self.make_job(self.serve("jpeg"), "out/waited.jpg", params=THUMB, job_id="waited")
        job["wait_for_s3"] = True
        self.push_job(job)
        self.wait_for_postback(POSTBACK_TIMEOUT_S, job_id="waited")
        done = self.wait_until(lambda: [e for e in self.worker.log_events("job_done")
                                        if e.get("job_id") == "waited"], 10, "job_done")
        waits = [e for e in self.worker.log_events("wait_for_s3") if e.get("job_id") == "waited"]
        self.assertEqual(len(waits), 1, waits)
        self.assertGreater(float(done[0]["s3_wait_ms"]), 0, done[0])
        self.assertLess(float(done[0]["s3_wait_ms"]), float(done[0]["ms"]) + 1, done[0])
        # README (Logs): the HEAD is logged at debug as event=s3_head with method, bucket,
        # status, ms
        heads = [e for e in self.worker.log_events("s3_head") if e.get("job_id") == "waited"]
        self.assertEqual([(e["method"], e["bucket"], e["status"]) for e in heads],
                         [("HEAD", self.buckets[0], "200")], heads)
        self.assertGreater(float(heads[0]["ms"]), 0, heads)

    def test_wait_for_s3_reads_a_large_object_at_once(self):
        # a PNG of a megabyte: its HEAD (Content-Length, no body) is readable at the first try
        # (libcurl's size cap for error bodies failed every HEAD of more than 64 KiB, and the
        # postback waited out PIXQ_WAIT_FOR_S3_MAX_MS)
        job = self.make_job(self.serve("jpeg"), "out/waited.png", params={"width": 800},
                            job_id="waited-big")
        job["wait_for_s3"] = True
        self.push_job(job)
        self.wait_for_postback(POSTBACK_TIMEOUT_S, job_id="waited-big")
        self.assertGreater(len(self.s3_object("out/waited.png")), 256 * 1024)
        waits = self.wait_until(lambda: [e for e in self.worker.log_events("wait_for_s3")
                                         if e.get("job_id") == "waited-big"], 10, "wait_for_s3")
        self.assertEqual(waits[0]["unreadable"], "0", waits)
        self.assertLess(int(waits[0]["ms"]), 1000, waits)


class FailureTest(E2ETestCase):
    """(b) a source nobody serves, (c) a payload that is not JSON: the worker carries on."""

    def push_good_job_and_check(self, job_id):
        self.push_job(self.make_job(self.serve("jpeg"), "out/after.jpg", params=THUMB,
                                    job_id=job_id, postback_path="/pb/good"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/good")
        self.assert_success_postback(pb, job_id, (2560, 1600),
                                     [self.expected_image("out/after.jpg", (200, 125))])
        self.assert_image(self.s3_object("out/after.jpg"), "JPEG", 200, 125)
        self.assert_finished(job_id, pb.json)

    def test_unreachable_src(self):
        src = "http://127.0.0.1:%d/autumn.jpg" % harness.refused_port(self)
        self.push_job(self.make_job(src, "out/never.jpg", params=THUMB, job_id="e2e-unreachable",
                                    postback_path="/pb/bad"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/bad")
        self.assertEqual(pb.method, "POST")
        self.assertTrue(pb.headers.get("content-type", "").startswith("application/json"))
        results = pb.json["results"]
        self.assertEqual(results["job_id"], "e2e-unreachable")
        self.assertIsInstance(results.get("errors"), list, results)
        self.assertTrue(results["errors"], results)
        first = results["errors"][0]
        self.assertTrue(first.startswith("Image processing failed."), first)
        self.assertIn(src, first)
        self.assertEqual(results["failed_image_identifiers"], ["thumb"])
        self.assertEqual(results["images"], [])
        self.assertEqual(results["original_meta"], {})
        self.assertEqual(self.s3.get_object("pixq-test", "out/never.jpg")[0], 404)

        pid = self.worker.pid
        self.worker.check_alive()
        self.push_good_job_and_check("e2e-after-unreachable")
        self.assertEqual(self.worker.pid, pid)
        self.worker.check_alive()

    def test_error_quoting_a_long_utf8_url_is_utf8(self):
        # the message quotes the URL's first 300 bytes: cut inside an "é", the postback was not
        # UTF-8 (a strict receiver refused it)
        prefix = "http://127.0.0.1:%d/xy" % harness.refused_port(self)
        src = prefix + "z" * ((300 - len(prefix) + 1) % 2) + "é" * 400  # 300 bytes end mid-"é"
        self.push_job(self.make_job(src, "out/never.jpg", params=THUMB, job_id="e2e-utf8",
                                    postback_path="/pb/utf8"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/utf8")
        error = json.loads(pb.body.decode("utf-8", errors="strict"))["results"]["errors"][0]
        self.assertIn("Failed to download http://127.0.0.1:", error)
        self.assertIn("\ufffd", error)  # what was left of the cut "é"
        self.worker.check_alive()

    def test_refused_job_id_is_posted_back(self):
        # the postback URL is read before the job_id: the job is told why, under the id the
        # worker gave it, and the dead entry carries that id (before: no postback at all)
        job = self.make_job(self.serve("jpeg"), "out/never.jpg", params=THUMB,
                            job_id="user/42/avatar", postback_path="/pb/id")
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/id")
        results = pb.json["results"]
        self.assertEqual(results["errors"], ["Image processing failed. job_id 'user/42/avatar' "
                                             "must be 1-127 characters of A-Z a-z 0-9 - _ . :"])
        self.assertRegex(results["job_id"], r"^[A-Za-z0-9_-]{10,}$")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 10, "the dead entry")
        entry = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertEqual(entry["job_id"], results["job_id"])
        self.worker.check_alive()

    def test_bad_json_goes_to_dead(self):
        dead = self.key("dead")
        self.push_job("{not json")
        self.wait_until(lambda: self.redis.llen(dead) >= 1, 30, "an entry in %s" % dead)
        self.assertEqual(self.redis.type(dead), "list")
        entries = self.redis.lrange(dead)
        self.assertEqual(len(entries), 1, entries)
        entry = json.loads(entries[0])
        self.assertIsInstance(entry, dict)
        self.assertIsInstance(entry.get("error"), str, entry)
        self.assertTrue(entry["error"], entry)
        self.assertEqual(entry.get("job"), "{not json")
        self.worker.check_alive()

        self.push_good_job_and_check("e2e-after-bad-json")
        self.worker.check_alive()
        # nobody could be told about the bad payload: the only postback is the good job's
        self.assertEqual([pb.path for pb in self.postbacks.postbacks], ["/pb/good"])


    def test_huge_payload_goes_to_dead_with_its_head(self):
        # 17 MiB of control bytes: more than any PIXQ_MAX_JOB_BYTES, and over Redis's 512 MB
        # once each byte is written as \u00XX in a whole dead entry (the worker tried for ever)
        dead = self.key("dead")
        payload = b"\x01" * (17 * 1024 * 1024)
        self.redis.lpush(self.key("jobs"), payload)
        self.wait_until(lambda: self.redis.llen(dead) >= 1, 60, "an entry in %s" % dead)
        entry = json.loads(self.redis.lrange(dead)[0])
        self.assertNotIn("job", entry)  # nothing `pixq dead retry` could run
        self.assertEqual(entry["job_head"], "\x01" * 65536)
        self.assertEqual(entry["job_bytes"], len(payload))
        self.assertEqual(entry["error"], "job is 17825792 bytes, more than the limit of 250000 "
                         "(PIXQ_MAX_JOB_BYTES)")
        self.worker.check_alive()
        self.push_good_job_and_check("e2e-after-huge")


class JobDownloadTimeTest(E2ETestCase):
    """PIXQ_JOB_DOWNLOAD_TIMEOUT_MS bounds all of a job's downloads together: each function may
    name 10 sources, each with its own PIXQ_DOWNLOAD_TIMEOUT_MS (a review held a worker 20 s with
    2 appends of 10 sources answered in 1 s each; the worst case of the limits was hours)."""

    worker_env_extra = {"PIXQ_JOB_DOWNLOAD_TIMEOUT_MS": "2500"}

    def test_sources_past_the_jobs_time_fail_it_for_good(self):
        self.check_final(wait_retry_delay=None)

    def test_not_run_again_with_wait_retry_delay(self):
        """wait_retry_delay runs a job whose source failed again (it may not be there yet), but
        a run again would take as long."""
        self.check_final(wait_retry_delay=0)

    def test_one_slow_source_is_cut_at_the_jobs_time(self):
        """A single download is cut when the job's time runs out (2.5 s), not at its own
        PIXQ_DOWNLOAD_TIMEOUT_MS (60 s): the source answering after 6 s is not waited for."""
        png = (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()
        src = self.src.add("/late.png", png)
        self.src.delay["/late.png"] = 6.0
        self.push_job(self.make_job(src, "out/late.png", function="no_op", job_id="late-source",
                                    postback_path="/pb/late"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/late")
        errors = pb.json["results"].get("errors", [])
        self.assertEqual(len(errors), 1, pb.json)
        self.assertIn("the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (2500 ms) "
                      "in all", errors[0])
        self.assertEqual(self.src.requests("/late.png"), 1)
        self.worker.check_alive()

    def check_final(self, wait_retry_delay):
        png = (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()
        self.src.add("/o.png", png)
        self.src.delay["/o.png"] = 1.0
        others = [self.src.url("/o.png") + "?i=%d" % i for i in range(10)]
        job = self.make_job(self.src.add("/m.png", png), "out/appended.png",
                            job_id="slow-sources", postback_path="/pb/slow")
        job["functions"] = [{"name": "append", "params": {"other_images": others},
                             "save": job["functions"][0]["save"]}]
        if wait_retry_delay is not None:
            job["wait_retry_delay"] = wait_retry_delay
        t0 = time.monotonic()
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/slow")
        took = time.monotonic() - t0
        errors = pb.json["results"].get("errors", [])
        self.assertEqual(len(errors), 1, pb.json)
        self.assertIn("the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (2500 ms) "
                      "in all", errors[0])
        # 1 s, 1 s, cut at 0.5 s; on a machine slow to reach the first, the third may not start
        self.assertIn(self.src.requests("/o.png"), (2, 3))
        self.assertEqual(self.src.requests("/m.png"), 1)
        self.assertLess(took, scaled(6), took)  # one run: final, not retried
        self.assertEqual(len(self.postbacks.postbacks), 1)
        self.worker.check_alive()


class SourceTimeoutTest(E2ETestCase):
    """PIXQ_DOWNLOAD_TIMEOUT_MS cuts one slow source (no test set it: a source slower than its
    default 60 s was never met), a passing failure: the job runs again (PIXQ_MAX_ATTEMPTS), and
    its postback and its job_failed line say the same: which source, that it timed out, and how
    often the job ran."""

    worker_env_extra = {"PIXQ_DOWNLOAD_TIMEOUT_MS": "1000", "PIXQ_MAX_ATTEMPTS": "2",
                        "PIXQ_RETRY_BASE_MS": "100", "PIXQ_RETRY_MAX_MS": "200"}

    def test_slow_source_times_out_and_runs_again(self):
        png = (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()
        src = self.src.add("/slow.png", png)
        self.src.delay["/slow.png"] = 5.0  # served, but after the timeout
        t0 = time.monotonic()
        self.push_job(self.make_job(src, "out/slow.png", function="no_op", job_id="slow-src",
                                    postback_path="/pb/slow"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/slow")
        results = pb.json["results"]
        self.assertEqual(results["failed_image_identifiers"], ["thumb"], results)
        errors = results.get("errors", [])
        self.assertEqual(len(errors), 1, results)
        self.assertRegex(errors[0], r"^Image processing failed\. Failed to download %s: timed out "
                         r"\(Operation timed out after 1\d\d\d milliseconds with 0 bytes "
                         r"received\) \(the job ran 2 times, each failing on a source\)$"
                         % re.escape(src))
        self.assertLess(time.monotonic() - t0, scaled(8), "cut at 1 s each run, not served")
        self.assertEqual(self.src.requests("/slow.png"), 2)
        retries = [e for e in self.worker.log_events("job_retry") if e["job_id"] == "slow-src"]
        self.assertEqual([e["attempt"] for e in retries], ["2"], retries)
        self.assertIn("timed out", retries[0]["error"])
        failed = self.wait_until(lambda: [e for e in self.worker.log_events("job_failed")
                                          if e["job_id"] == "slow-src"], 10, "job_failed")
        self.assertEqual([e["error"] for e in failed], errors)  # the log says what the user read
        self.assertEqual(self.s3.get_object("pixq-test", "out/slow.png")[0], 404)
        self.push_job(self.make_job(self.serve("jpeg"), "out/after.jpg", params=THUMB,
                                    job_id="after-slow", postback_path="/pb/good"))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/good")
        self.assert_success_postback(pb, "after-slow", (2560, 1600),
                                     [self.expected_image("out/after.jpg", (200, 125))])


class SourceReuseTest(E2ETestCase):
    """A source the job names more than once (a watermark composited onto each size) is
    downloaded once (PIXQ_SOURCE_CACHE_BYTES), with the same outputs as when each naming is a
    download; PIXQ_MAX_SOURCES bounds a job's downloads."""

    start_worker_in_setup = False

    def watermark_job(self, job_id, prefix):
        """m.png with w.png named four times: a composite, a composite under a resize, and twice
        in an append's other_images; three outputs."""
        png = (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes()
        mark = (CONFIG.data / "images" / "color-wm-64x40.png").read_bytes()
        main, wm = self.src.add("/m.png", png), self.src.add("/w.png", mark)

        def save(name):
            return {"image_identifier": name,
                    "s3_destination": {"bucket": self.buckets[0], "key": prefix + name + ".png"}}
        job = self.make_job(main, None, job_id=job_id, postback_path="/pb/" + job_id)
        job["functions"] = [
            {"name": "composite", "params": {"src": wm, "x": 3, "y": 5}, "save": save("a")},
            {"name": "resize_to_fit", "params": {"width": 32},
             "functions": [{"name": "composite", "params": {"src": wm}, "save": save("b")}]},
            {"name": "append", "params": {"other_images": "%s, %s" % (wm, wm)},
             "save": save("c")},
        ]
        return job

    def run_job(self, job_id, prefix):
        self.push_job(self.watermark_job(job_id, prefix))
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/" + job_id)
        self.assertNotIn("errors", pb.json["results"], pb.json)
        self.assertEqual(len(pb.json["results"]["images"]), 3, pb.json)
        return {n: rgba(self.s3_object(prefix + n + ".png")) for n in "abc"}

    def test_a_source_named_again_is_downloaded_once(self):
        worker = self.start_worker(PIXQ_SOURCE_CACHE_BYTES="0")
        each = self.run_job("each", "each/")
        self.assertEqual((self.src.requests("/m.png"), self.src.requests("/w.png")), (1, 4))
        self.kill_worker(worker, signal.SIGTERM)

        self.start_worker()
        once = self.run_job("once", "once/")
        self.assertEqual((self.src.requests("/m.png"), self.src.requests("/w.png")), (2, 5))
        self.assertEqual(once, each)  # the same pixels, output by output
        self.assertEqual(self.src.requests("/m.png"), 2)

    def test_the_cache_keeps_at_most_its_bytes(self):
        """PIXQ_SOURCE_CACHE_BYTES is a size (README: up to this many bytes of such sources in
        all), not only on or off: the 331-byte watermark is kept with 331 bytes, downloaded at
        each naming with 330. Only 0 and the default were tested."""
        size = len((CONFIG.data / "images" / "color-wm-64x40.png").read_bytes())
        for budget, downloads in ((size - 1, 4), (size, 1)):
            worker = self.start_worker(PIXQ_SOURCE_CACHE_BYTES=str(budget))
            before = self.src.requests("/w.png")
            self.run_job("budget-%d" % budget, "budget-%d/" % budget)
            self.assertEqual(self.src.requests("/w.png") - before, downloads, budget)
            self.kill_worker(worker, signal.SIGTERM)

    def test_a_job_past_max_sources_fails_for_good(self):
        self.check_past_max_sources("many")

    def test_past_max_sources_is_not_run_again_with_wait_retry_delay(self):
        """wait_retry_delay reruns a job whose source failed (it may not be there yet); a job
        past PIXQ_MAX_SOURCES would name as many sources again: it runs once."""
        self.check_past_max_sources("many-wrd", wait_retry_delay=0)

    def check_past_max_sources(self, job_id, wait_retry_delay=None):
        self.start_worker(PIXQ_MAX_SOURCES="2")
        job = self.watermark_job(job_id, job_id + "/")
        job["functions"][2]["params"]["other_images"] = [self.src.url("/w.png?i=%d" % i)
                                                         for i in range(3)]
        if wait_retry_delay is not None:
            job["wait_retry_delay"] = wait_retry_delay
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/" + job_id)
        errors = pb.json["results"].get("errors", [])
        self.assertEqual(len(errors), 1, pb.json)
        self.assertIn("the job needs more than PIXQ_MAX_SOURCES (2) source downloads", errors[0])
        # m.png and w.png (named twice: downloaded once), then the first other image refused
        self.assertEqual((self.src.requests("/m.png"), self.src.requests("/w.png")), (1, 1))
        self.assertEqual(len(pb.json["results"]["images"]), 2, pb.json)  # those saved before
        self.assertEqual(len(self.postbacks.postbacks), 1)  # final: not run again

    def test_max_sources_counts_downloads_not_names(self):
        """PIXQ_MAX_SOURCES bounds downloads: with the cache off, the watermark named twice is
        two of them, and the error says so rather than that the job names more than 2 sources
        (it names 2)."""
        self.start_worker(PIXQ_MAX_SOURCES="2", PIXQ_SOURCE_CACHE_BYTES="0")
        job = self.watermark_job("twice", "twice/")
        del job["functions"][2]
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/twice")
        errors = pb.json["results"].get("errors", [])
        self.assertEqual(len(errors), 1, pb.json)
        self.assertIn("the job needs more than PIXQ_MAX_SOURCES (2) source downloads", errors[0])
        self.assertEqual((self.src.requests("/m.png"), self.src.requests("/w.png")), (1, 1))


def rgba(data):
    """An image's pixels, 8 bits a channel, for comparing outputs whatever their metadata."""
    r = subprocess.run(["convert", "-", "-depth", "8", "rgba:-"], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    return r.stdout


class PostbackRetryCase(E2ETestCase):
    """Jobs whose postbacks fail, and the postbacks each job got."""

    def push_retrying(self, job_id, retry=True):
        job = self.make_job(self.serve("jpeg"), "out/%s.jpg" % job_id, params=THUMB,
                            job_id=job_id)
        if retry:
            job["retry_postback"] = True
        self.push_job(job)

    def attempts(self, job_id, n, timeout=POSTBACK_TIMEOUT_S):
        self.wait_until(lambda: len(self.postbacks_of(job_id)) >= n, timeout,
                        "%d postbacks of %s" % (n, job_id))
        return self.postbacks_of(job_id)

    def wait_for_events(self, event, job_id, timeout=10, worker=None):
        """The worker's log lines `event` about `job_id`, once there is one."""
        worker = worker or self.worker
        return self.wait_until(lambda: [e for e in worker.log_events(event)
                                        if e.get("job_id") == job_id], timeout, event)

    def postbacks_of(self, job_id):
        return [pb for pb in self.postbacks.postbacks
                if (pb.results or {}).get("job_id") == job_id]


class PostbackRetryTest(PostbackRetryCase):
    """Blitline's retry_postback: a failed postback is tried again after each wait of
    PIXQ_POSTBACK_RETRY_DELAYS_S (3 s, then 1 s here: neither Blitline's 1, 3, 15 and 600 s,
    the default, nor one wait for every retry), then given up; a job without it is posted back
    once."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "3, 1"}

    def test_retried_after_each_wait(self):
        self.postbacks.answer_with(500, 503)
        self.push_retrying("pb-retried")
        pbs = self.attempts("pb-retried", 3)
        gaps = [b.time - a.time for a, b in zip(pbs, pbs[1:])]
        self.assertGreaterEqual(gaps[0], 2.9, gaps)  # the first wait, 3 s
        self.assertGreaterEqual(gaps[1], 0.9, gaps)  # the second, 1 s...
        self.assertLess(gaps[1], gaps[0] - 1.0, gaps)  # ...not the first again
        self.assertEqual(pbs[0].json, pbs[2].json)  # the stored result, posted again
        # each postback_retry line names the attempt it schedules: the second, then the third
        retries = self.wait_for_events("postback_retry", "pb-retried")
        self.assertEqual([(e.get("attempt"), e.get("in_ms")) for e in retries],
                         [("2", "3000"), ("3", "1000")], retries)
        time.sleep(scaled(2.5))
        self.assertEqual(len(self.postbacks_of("pb-retried")), 3)  # delivered: no more
        self.assertEqual(self.read_result("pb-retried"), pbs[0].json)
        self.assert_queue_drained()

    def test_given_up_after_the_last_wait(self):
        self.postbacks.answer_with(500, 500, 500)
        self.push_retrying("pb-given-up")
        self.attempts("pb-given-up", 3)
        given_up = self.wait_for_events("postback_given_up", "pb-given-up")
        # why, as the other given-up lines say it: the reason, and the last attempt's error
        self.assertEqual((given_up[0].get("reason"), given_up[0].get("attempts"),
                          given_up[0].get("error")),
                         ("retries_exhausted", "3", "postback answered HTTP 500"), given_up)
        time.sleep(scaled(1.5))
        self.assertEqual(len(self.postbacks_of("pb-given-up")), 3)
        # counted once, when no retry is left (not at the failures a retry followed)
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"), "1")
        self.assert_queue_drained()

    def test_redis_error_reading_the_result_is_not_result_gone(self):
        """A retry whose read of the stored result fails (a Redis error, not an answer that it
        expired) stays on the active list and runs again once Redis answers. It was taken for
        reason=result_gone and the retry dropped for good. Redis refusing LINDEX to the
        worker's user for a while (an ACL) stands in for the error here."""
        self.postbacks.answer_with(500)
        self.push_retrying("pb-read-fails")
        first = self.attempts("pb-read-fails", 1)[0]
        self.redis.execute("ACL", "SETUSER", "default", "-lindex")
        try:
            stranded = self.wait_for_events("task_stranded", "pb-read-fails")
            self.assertEqual(stranded[0].get("step"), "postback_result", stranded)
            self.assertIn("NOPERM", stranded[0].get("error", ""), stranded)
            self.assertEqual(self.worker.log_events("postback_given_up"), [])
            self.assertEqual(len(self.postbacks_of("pb-read-fails")), 1)
        finally:
            self.redis.execute("ACL", "SETUSER", "default", "+lindex")
        pbs = self.attempts("pb-read-fails", 2)
        self.assertEqual(pbs[1].json, first.json)
        self.assertEqual(self.worker.log_events("postback_given_up"), [])
        self.assertIsNone(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"))
        self.assert_queue_drained()

    def test_result_of_another_type_is_given_up(self):
        """A key of another type in the result's place can never be read: the retry is given
        up at once, said so and counted, not run again for ever."""
        self.postbacks.answer_with(500)
        self.push_retrying("pb-wrong-type")
        self.attempts("pb-wrong-type", 1)
        key = self.key("result:pb-wrong-type")
        self.redis.delete(key)
        self.redis.set(key, "not a list")
        given_up = self.wait_for_events("postback_given_up", "pb-wrong-type")
        self.assertEqual(given_up[0].get("reason"), "result_unreadable", given_up)
        self.assertIn("WRONGTYPE", given_up[0].get("error", ""), given_up)
        self.assertEqual(self.worker.log_events("task_stranded"), [])
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"), "1")
        self.assertEqual(len(self.postbacks_of("pb-wrong-type")), 1)
        self.assert_queue_drained()

    def test_job_over_the_limit_retried(self):
        """A job over PIXQ_MAX_JOB_BYTES (salvaged for its postback members) has its failure
        posted again too; the retry task keeps the few members a postback reads, not the job."""
        self.postbacks.answer_with(500)
        job = self.make_job(self.serve("jpeg"), "out/pb-huge.jpg", params=THUMB,
                            job_id="pb-huge")
        job["retry_postback"] = True
        job["padding"] = "x" * 300000
        self.push_job(job)
        self.attempts("pb-huge", 1)
        # the retry waits 3 s in delayed: the few members, not the 300 kB of the job
        tasks = self.wait_until(lambda: self.redis.execute("ZRANGE", self.key("delayed"), 0, -1),
                                2, "the retry task")
        self.assertEqual(len(tasks), 1, tasks)
        self.assertIn('"pixq_postback"', tasks[0])
        self.assertIn("pb-huge", tasks[0])
        self.assertLess(len(tasks[0]), 4096, tasks[0][:200])
        pbs = self.attempts("pb-huge", 2)
        self.assertEqual(pbs[0].json, pbs[1].json)
        self.assertIn("more than the limit of 250000 (PIXQ_MAX_JOB_BYTES)",
                      pbs[1].results["errors"][0])
        self.assert_queue_drained()

    def test_posted_once_without_retry_postback(self):
        self.postbacks.answer_with(500)
        self.push_retrying("pb-once", retry=False)
        self.attempts("pb-once", 1)
        time.sleep(scaled(2.5))
        self.assertEqual(len(self.postbacks_of("pb-once")), 1)
        self.assertEqual(self.worker.log_events("postback_retry"), [])
        self.assert_queue_drained()


class PostbackRetryReadFailsTest(PostbackRetryCase):
    """A retry whose stored result Redis keeps failing to read, while it answers the rest (an ACL
    here refuses LINDEX on the result's key, and only there), is given up after
    PIXQ_SETTLE_ATTEMPTS reads in a row (3 here): stranded for ever, it held its worker on that
    one task."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_SETTLE_ATTEMPTS": "3"}

    def test_given_up_after_settle_attempts_reads(self):
        self.postbacks.answer_with(500)
        self.push_retrying("pb-never-read")
        self.attempts("pb-never-read", 1)
        # LINDEX only on the worker's active list (to take the stranded task): not on result:*
        self.redis.execute("ACL", "SETUSER", "default", "-lindex", "(+lindex ~pixq:*:active:*)")
        try:
            given_up = self.wait_for_events("postback_given_up", "pb-never-read", 30)
        finally:
            self.redis.execute("ACL", "SETUSER", "default", "+lindex", "clearselectors")
        self.assertEqual(given_up[0].get("reason"), "result_unreadable", given_up)
        self.assertIn("failed 3 times in a row", given_up[0].get("error", ""), given_up)
        stranded = [e for e in self.worker.log_events("task_stranded")
                    if e.get("job_id") == "pb-never-read"]
        self.assertEqual([e.get("step") for e in stranded], ["postback_result"] * 2, stranded)
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"), "1")
        self.assertEqual(len(self.postbacks_of("pb-never-read")), 1)
        self.assert_queue_drained()


class PostbackRetryReadFailsBackOffTest(PostbackRetryCase):
    """The pause before a stranded task runs again doubles while tasks keep stranding (README:
    "a pause of 100 ms doubling to 5 s", PIXQ_REDIS_RETRY_MIN_MS to _MAX_MS): 200, 400, then
    800 ms here, each between half its step and the step. A pause that stayed at its first step
    turned a Redis refusing one key into a loop of reads; one that went on from the last task's
    made a later task wait longer than README says."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_SETTLE_ATTEMPTS": "4",
                        "PIXQ_REDIS_RETRY_MIN_MS": "200", "PIXQ_REDIS_RETRY_MAX_MS": "3200"}

    def test_pause_doubles_while_the_task_strands(self):
        # the second task's pauses start again from the first step: a task that Redis answered
        # (the first, given up) ends the strandings in a row
        for job_id in ("pb-strands", "pb-strands-again"):
            self.postbacks.answer_with(500)
            self.push_retrying(job_id)
            self.attempts(job_id, 1)
            # LINDEX only on the worker's active list (to take the stranded task): not result:*
            self.redis.execute("ACL", "SETUSER", "default", "-lindex",
                               "(+lindex ~pixq:*:active:*)")
            try:
                self.wait_for_events("postback_given_up", job_id, 30)
            finally:
                self.redis.execute("ACL", "SETUSER", "default", "+lindex", "clearselectors")
            waits = [int(e.get("retry_ms")) for e in self.worker.log_events("task_stranded")
                     if e.get("job_id") == job_id]
            self.assertEqual(len(waits), 3, waits)
            for step, wait in zip((200, 400, 800), waits):
                self.assertTrue(step // 2 <= wait <= step, (job_id, step, waits))


class PostbackRetryReadFailsOnceEachTest(PostbackRetryCase):
    """PIXQ_SETTLE_ATTEMPTS counts a retry's failed reads of its result in a row for one task:
    two jobs whose reads fail once each, one after the other, are both posted again, neither
    given up (counted on from the first job's, the second's one failure made 2 of 2). The
    strand's nap is 2 to 4 s here (PIXQ_REDIS_RETRY_MIN_MS 4 s, full jitter down to half):
    time enough to lift the refusal after the first failed read, so that each job fails once."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "2", "PIXQ_SETTLE_ATTEMPTS": "2",
                        "PIXQ_REDIS_RETRY_MIN_MS": "4000", "PIXQ_REDIS_RETRY_MAX_MS": "4000"}

    def test_each_task_counts_its_own_failed_reads(self):
        for job_id in ("pb-once-a", "pb-once-b"):
            self.postbacks.answer_with(500)
            self.push_retrying(job_id)
            first = self.attempts(job_id, 1)[0]
            # LINDEX only on the worker's active list (to take the stranded task): not on result:*
            self.redis.execute("ACL", "SETUSER", "default", "-lindex",
                               "(+lindex ~pixq:*:active:*)")
            try:
                stranded = self.wait_for_events("task_stranded", job_id)
            finally:
                self.redis.execute("ACL", "SETUSER", "default", "+lindex", "clearselectors")
            self.assertEqual([e.get("step") for e in stranded], ["postback_result"], stranded)
            pbs = self.attempts(job_id, 2, timeout=15)
            self.assertEqual(pbs[1].json, first.json)
        self.assertEqual(self.worker.log_events("postback_given_up"), [])
        self.assertIsNone(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"))
        self.assert_queue_drained()


class PostbackRetryReadFailsAgainTest(PostbackRetryCase):
    """The failed reads in a row of PIXQ_SETTLE_ATTEMPTS end at a read that succeeds: a job
    whose second and third attempts each fail to read once (the read between them succeeded, the
    POST answered 500) is posted a third time, not given up (counted on, the second failure made
    2 of 2). The strand's nap is 2 to 4 s here, time enough to lift the refusal."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "2,2", "PIXQ_SETTLE_ATTEMPTS": "2",
                        "PIXQ_REDIS_RETRY_MIN_MS": "4000", "PIXQ_REDIS_RETRY_MAX_MS": "4000"}

    def test_a_read_that_succeeds_ends_the_failures_in_a_row(self):
        self.postbacks.answer_with(500, 500)  # the first two attempts fail, the third is taken
        self.push_retrying("pb-again")
        first = self.attempts("pb-again", 1)[0]

        def stranded():
            return [e for e in self.worker.log_events("task_stranded")
                    if e.get("job_id") == "pb-again"]
        for n in (2, 3):
            # LINDEX only on the worker's active list (to take the stranded task): not result:*
            self.redis.execute("ACL", "SETUSER", "default", "-lindex",
                               "(+lindex ~pixq:*:active:*)")
            try:
                self.wait_until(lambda: len(stranded()) == n - 1, 15, "the read to fail")
            finally:
                self.redis.execute("ACL", "SETUSER", "default", "+lindex", "clearselectors")
            pbs = self.attempts("pb-again", n, timeout=15)
        self.assertEqual(pbs[2].json, first.json)
        self.assertEqual([e.get("step") for e in stranded()], ["postback_result"] * 2)
        self.assertEqual(self.worker.log_events("postback_given_up"), [])
        self.assertIsNone(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"))
        self.assert_queue_drained()


class PostbackRetryEveryJobTest(PostbackRetryCase):
    """PIXQ_POSTBACK_RETRY=1: every job's failed postback is retried, retry_postback or not."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_POSTBACK_RETRY": "1"}

    def test_every_job_retried(self):
        self.postbacks.answer_with(500, 500)
        self.push_retrying("pb-every", retry=False)
        pbs = self.attempts("pb-every", 2)
        self.assertGreaterEqual(pbs[1].time - pbs[0].time, 0.9)
        time.sleep(scaled(2))
        self.assertEqual(len(self.postbacks_of("pb-every")), 2)  # one wait: one retry
        self.assertEqual(len(self.worker.log_events("postback_given_up")), 1)


class PostbackRetryAfterTest(PostbackRetryCase):
    """A receiver answering 429 or 503 with Retry-After: the retry waits that long when it is
    longer than PIXQ_POSTBACK_RETRY_DELAYS_S's wait (1 s here), at most
    PIXQ_RETRY_AFTER_MAX_MS (3 s here)."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1,1", "PIXQ_RETRY_AFTER_MAX_MS": "3000"}

    def test_retry_waits_for_retry_after(self):
        self.postbacks.answer_with((503, {"Retry-After": "2"}), (429, {"Retry-After": "3600"}))
        self.push_retrying("pb-retry-after")
        pbs = self.attempts("pb-retry-after", 3)
        gaps = [b.time - a.time for a, b in zip(pbs, pbs[1:])]
        self.assertGreaterEqual(gaps[0], 1.95, gaps)  # Retry-After: 2, not the 1 s wait
        self.assertGreaterEqual(gaps[1], 2.95, gaps)  # an hour asked for: the cap, 3 s
        self.assertLess(gaps[1], scaled(5), gaps)
        retries = [e for e in self.worker.log_events("postback_retry")
                   if e.get("job_id") == "pb-retry-after"]
        self.assertEqual([e.get("in_ms") for e in retries], ["2000", "3000"])
        self.assert_queue_drained()


class PostbackRetryTtlTest(PostbackRetryCase):
    """A postback retry reads the result that finish.lua stored with PIXQ_RESULT_TTL_S: retries
    whose waits (each at least its PIXQ_POSTBACK_RETRY_DELAYS_S wait, at most the longer of it and
    PIXQ_RETRY_AFTER_MAX_MS) add up to more than that find it gone (postback_given_up
    reason=result_gone). Nothing said so: the worker now warns at its start (and still starts:
    tests set short TTLs on purpose)."""

    start_worker_in_setup = False

    def started(self, **env):
        worker = self.start_worker(**env)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker to start")
        return worker

    def test_delays_past_the_result_ttl(self):
        worker = self.started(PIXQ_POSTBACK_RETRY_DELAYS_S="1,2", PIXQ_RESULT_TTL_S="2")
        warned = worker.log_events("postback_retry_past_result_ttl")
        self.assertEqual(len(warned), 1, warned)
        self.assertEqual(warned[0].get("level"), "warn", warned)
        self.assertEqual({k: warned[0].get(k) for k in (
            "postback_retry_delays_s", "delays_total_s", "retry_after_max_ms", "longest_total_s",
            "result_ttl_s")}, {"postback_retry_delays_s": "1,2", "delays_total_s": "3",
                               "retry_after_max_ms": "300000", "longest_total_s": "600",
                               "result_ttl_s": "2"}, warned)
        self.assertIn("the postback retries (PIXQ_POSTBACK_RETRY_DELAYS_S) last longer than "
                      "PIXQ_RESULT_TTL_S", warned[0]["error"])
        # as it warns: the second retry, 3 s after the result was stored, finds it gone
        self.postbacks.answer_with(500, 500, 500)
        self.push_retrying("pb-ttl")
        self.attempts("pb-ttl", 2)
        gone = self.wait_for_events("postback_given_up", "pb-ttl", worker=worker)
        self.assertEqual(gone[0].get("reason"), "result_gone", gone)
        self.assertEqual(len(self.postbacks_of("pb-ttl")), 2)
        # no retry comes after it: counted given up in `pixq stats` (README), once
        self.wait_until(lambda: self.redis.hgetall(self.key("stats")).get("postbacks_given_up"),
                        5, "postbacks_given_up")
        self.assertEqual(self.redis.hgetall(self.key("stats")).get("postbacks_given_up"), "1")

    def test_retry_after_past_the_result_ttl(self):
        """The waits fit, but a receiver's Retry-After may stretch them past the TTL."""
        worker = self.started(PIXQ_POSTBACK_RETRY_DELAYS_S="1,1", PIXQ_RESULT_TTL_S="60",
                              PIXQ_RETRY_AFTER_MAX_MS="40000")
        warned = worker.log_events("postback_retry_past_result_ttl")
        self.assertEqual([(e.get("delays_total_s"), e.get("longest_total_s")) for e in warned],
                         [("2", "80")], warned)
        self.assertIn("a receiver's Retry-After (up to PIXQ_RETRY_AFTER_MAX_MS) may stretch",
                      warned[0]["error"])

    def test_waits_equal_to_the_ttl_and_retry_after_rounded_up(self):
        """A wait of 1 s with a TTL of 1 s does not last longer than the TTL (the warning names
        Retry-After, not the waits), and 1.5 s of Retry-After is shown as 2 s, not 1 s: the
        total is rounded up, so that it is never shown within the TTL when it is past it."""
        worker = self.started(PIXQ_POSTBACK_RETRY_DELAYS_S="1", PIXQ_RESULT_TTL_S="1",
                              PIXQ_RETRY_AFTER_MAX_MS="1500")
        warned = worker.log_events("postback_retry_past_result_ttl")
        self.assertEqual([(e.get("delays_total_s"), e.get("longest_total_s"),
                           e.get("result_ttl_s")) for e in warned], [("1", "2", "1")], warned)
        self.assertIn("a receiver's Retry-After (up to PIXQ_RETRY_AFTER_MAX_MS) may stretch",
                      warned[0]["error"])

    def test_a_wait_longer_than_the_retry_after_cap_counts_whole(self):
        """A receiver's Retry-After stretches a wait up to PIXQ_RETRY_AFTER_MAX_MS, never
        shortens it: a wait of 5 s with a cap of 1 s still lasts 5 s, past a TTL of 4 s. Each
        wait counted as the cap (1 s) passed it without a word."""
        worker = self.started(PIXQ_POSTBACK_RETRY_DELAYS_S="5", PIXQ_RESULT_TTL_S="4",
                              PIXQ_RETRY_AFTER_MAX_MS="1000")
        warned = worker.log_events("postback_retry_past_result_ttl")
        self.assertEqual([(e.get("delays_total_s"), e.get("longest_total_s"),
                           e.get("result_ttl_s")) for e in warned], [("5", "5", "4")], warned)
        self.assertIn("the postback retries (PIXQ_POSTBACK_RETRY_DELAYS_S) last longer than "
                      "PIXQ_RESULT_TTL_S", warned[0]["error"])

    def test_no_warning_when_they_fit(self):
        for env in ({}, {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1,1", "PIXQ_RESULT_TTL_S": "60",
                         "PIXQ_RETRY_AFTER_MAX_MS": "30000"}):
            worker = self.started(**env)
            self.assertEqual(worker.log_events("postback_retry_past_result_ttl"), [], env)


class PostbackAnswerTest(PostbackRetryCase):
    """A receiver that took the postback: answering 2xx with a large body, or after longer than
    PIXQ_LOW_SPEED_TIME_S, is a delivered postback, not one to post again."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_LOW_SPEED_TIME_S": "1",
                        "PIXQ_POSTBACK_TIMEOUT_MS": "8000"}

    def assert_posted_once(self, job_id):
        self.attempts(job_id, 1)
        time.sleep(scaled(3))
        self.assertEqual(len(self.postbacks_of(job_id)), 1)
        self.assertEqual(self.worker.log_events("postback_failed"), [])
        self.assertEqual(self.worker.log_events("postback_retry"), [])
        self.assert_queue_drained()

    def test_large_answer_body_is_delivered(self):
        """It was 'response larger than the limit of 65536 bytes', posted again every retry."""
        self.postbacks.answer_body = b"<html>" + b"x" * (1 << 20) + b"</html>"
        self.push_retrying("pb-big-answer")
        self.assert_posted_once("pb-big-answer")

    def test_answer_cut_short_is_delivered(self):
        """Its status came: 'transfer closed with 1000 bytes remaining' was taken for a failure."""
        self.postbacks.cut_answer = True
        self.push_retrying("pb-cut-answer")
        self.assert_posted_once("pb-cut-answer")

    def test_slow_answer_within_the_postback_timeout_is_delivered(self):
        """A receiver silent for 2.5 s while it works: it was cut at the low-speed limit (1 s
        here, 10 s by default, under the postback timeout's 15 s) and posted again."""
        self.postbacks.delay = 2.5
        self.push_retrying("pb-slow-answer")
        self.assert_posted_once("pb-slow-answer")


class PostbackErrorAnswerTest(PostbackRetryCase):
    """A receiver that refused the postback says so in the log, whatever its error page: the
    status, not what befell the page's bytes."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1"}

    def assert_failed_with(self, job_id, want):
        self.push_retrying(job_id)
        self.attempts(job_id, 2)  # refused, so posted again
        failed = self.wait_until(
            lambda: [e for e in self.worker.log_events("postback_failed")
                     if e.get("job_id") == job_id], 10, "postback_failed")
        self.assertIn(want, failed[0]["error"], failed[0])

    def test_error_page_over_the_cap_names_the_status(self):
        """It read 'response larger than the limit of 65536 bytes': the 500 was lost."""
        self.postbacks.error_body = b"<html>" + b"x" * (1 << 17) + b"</html>"
        self.postbacks.answer_with(500)
        self.assert_failed_with("pb-big-error", "postback answered HTTP 500")

    def test_error_page_cut_short_names_the_status(self):
        """It read 'transfer closed with 1000 bytes remaining to read': the 503 was lost."""
        self.postbacks.cut_answer = True
        self.postbacks.answer_with(503)
        self.assert_failed_with("pb-cut-error", "postback answered HTTP 503")

    def test_error_page_within_the_cap_is_read_whole(self):
        """An error page of 4 KiB, under the 64 KiB read of an answer, is read to its end: the
        error is the status alone, nothing said of a body cut short."""
        self.postbacks.error_body = b"<html>" + b"x" * 4096 + b"</html>"
        self.postbacks.answer_with(500)
        self.push_retrying("pb-small-error")
        self.attempts("pb-small-error", 2)
        failed = self.wait_for_events("postback_failed", "pb-small-error")
        self.assertEqual(failed[0]["error"], "postback answered HTTP 500", failed[0])

    def test_redirect_page_over_the_cap_names_the_status(self):
        """A 3xx is not followed: it refused the postback too, and is named by its status
        whatever its page (here over the 64 KiB read of an answer)."""
        self.postbacks.error_body = b"<html>" + b"x" * (1 << 17) + b"</html>"
        self.postbacks.answer_with(302)
        self.assert_failed_with("pb-big-redirect", "postback answered HTTP 302")


class PostbackTimeoutTest(PostbackRetryCase):
    """A receiver that answers after PIXQ_POSTBACK_TIMEOUT_MS (1 s here; 3 s late) is cut
    there: a failed postback, posted again, not one waited for as long as a download may take
    (PIXQ_DOWNLOAD_TIMEOUT_MS, 60 s)."""

    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_POSTBACK_TIMEOUT_MS": "1000"}

    def test_late_receiver_is_cut_at_the_postback_timeout(self):
        self.postbacks.delay = 3.0
        self.push_retrying("pb-late")
        self.attempts("pb-late", 2)  # the first was given up on, so posted again
        failed = self.wait_for_events("postback_failed", "pb-late")
        self.assertIn("timed out", failed[0]["error"].lower(), failed[0])


class CliTest(E2ETestCase):
    """(d) pixq submit, from a file with --wait and from standard input."""

    def write_job(self, job):
        path = self.tmp / "job.json"
        path.write_text(json.dumps(job, indent=2))
        return str(path)

    @staticmethod
    def split_output(stdout):
        """(job id: the first line, the rest of stdout)."""
        first, _, rest = stdout.partition("\n")
        return first.strip(), rest

    def test_submit_file_wait(self):
        job = self.make_job(self.serve("jpeg"), "out/cli.jpg", params=THUMB)
        r = self.run_pixq("submit", self.write_job(job), "--wait", timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)
        job_id, rest = self.split_output(r.stdout)
        self.assertTrue(job_id)
        self.assertNotIn(" ", job_id)
        result = json.loads(rest)
        expected_images = [self.expected_image("out/cli.jpg", (200, 125))]
        self.assertEqual(result, {"results": {"job_id": job_id,
                                              "original_meta": {"width": 2560, "height": 1600},
                                              "images": expected_images}})
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, job_id=job_id)
        self.assertEqual(pb.json, result)
        self.assert_image(self.s3_object("out/cli.jpg"), "JPEG", 200, 125)
        self.assert_queue_drained()

    def test_submit_stdin(self):
        job = self.make_job(self.serve("png"), "out/cli-stdin.png", params=THUMB)
        r = self.run_pixq("submit", "-", input=json.dumps(job))
        self.assertEqual(r.returncode, 0, r.stderr)
        job_id, _ = self.split_output(r.stdout)
        self.assertTrue(job_id)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, job_id=job_id)
        self.assert_success_postback(pb, job_id, (3840, 2160),
                                     [self.expected_image("out/cli-stdin.png", (200, 113))])
        self.assert_image(self.s3_object("out/cli-stdin.png"), "PNG", 200, 113)
        self.assert_finished(job_id, pb.json)


if __name__ == "__main__":
    harness.main()
