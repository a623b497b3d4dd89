#!/usr/bin/python3
"""Blitline compatibility, end to end: real redis-server, s3rver, the real pixq-worker.

SampleJobsTest runs every sample job of tests/data/jobs/blitline (BLITLINE.md section 9) with its
`src` pointed at the test's source server (an {"name": "s3"} source: put into s3rver first; the
canvas job's composite `src` too), its destination buckets at s3rver and its postback at the
test's receiver, then checks the postback (Blitline's shape, BLITLINE.md 6.2), the result key and
every stored object, decoded. The other classes cover what the samples do not: error texts,
s3_destination headers, postback_headers, a failed upload among good ones, pre_process, source
metadata, and a JSON array of jobs pushed by a plain Redis client.

Run by meson (suite integration), or by hand:
    /usr/bin/python3 tests/integration/test_blitline.py --worker build/worker/pixq-worker \\
        --data tests/data [-k Sample]
"""

import copy
import hashlib
import http.server
import json
import re
import signal
import struct
import subprocess
import urllib.parse
import sys
import threading
import time

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, PixqTestCase, corpus, scaled  # noqa: E402

POSTBACK_TIMEOUT_S = 60
DEST_BUCKET = "blitline-out"  # where s3_destination buckets are rewritten to
SRC_BUCKET = "blitline-src"  # where {"name": "s3"} sources are put
PHOTO = ("/boys.jpeg", "autumn-2560x1600.jpg", (2560, 1600))  # what every URL src serves
OVERLAY = "/grad_vignette_index.png"  # the canvas job's composite src: alpha-200x150.png


def image_file(name):
    """The bytes of tests/data/images/<name>."""
    return (CONFIG.data / "images" / name).read_bytes()


def sample(name):
    """A sample job of tests/data/jobs/blitline, parsed."""
    return json.loads((CONFIG.data / "jobs" / "blitline" / name).read_text())


def pixels(data, points):
    """[(r, g, b, a)] (0-255) of the decoded image at each (x, y)."""
    fmt = "\\n".join(",".join("%%[fx:int(255*p{%d,%d}.%s+0.5)]" % (x, y, c) for c in "rgba")
                     for x, y in points)
    r = subprocess.run(["convert", "-", "-format", fmt, "info:"], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    return [tuple(int(v) for v in line.split(",")) for line in r.stdout.decode().split()]


def identify_escape(data, escape):
    r = subprocess.run(["identify", "-format", escape, "-"], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, check=True)
    return r.stdout.decode().strip()


class BlitlineTestCase(PixqTestCase):
    """Shared steps: rewrite a job to the local servers, submit it, check what comes back."""

    buckets = ("pixq-test", DEST_BUCKET, SRC_BUCKET)

    def serve_photo(self):
        return self.src.add(PHOTO[0], corpus(PHOTO[1]))

    def rewrite(self, job, job_id):
        """The job with its src, destinations and postback on the local servers."""
        job = copy.deepcopy(job)
        job["job_id"] = job_id
        job["postback_url"] = self.postbacks.url("/pb/" + job_id)
        src = job.get("src")
        if isinstance(src, str):
            job["src"] = self.serve_photo()
        elif isinstance(src, dict) and src.get("name") == "s3":
            self.assertEqual(self.s3.put_object(SRC_BUCKET, src["key"], corpus(PHOTO[1]),
                                                "image/jpeg"), 200)
            src["bucket"] = SRC_BUCKET
        for fn in self.walk(job.get("functions", [])):
            params = fn.get("params") or {}
            if isinstance(params.get("src"), str) and params["src"].startswith("http"):
                params["src"] = self.src.add(OVERLAY, image_file("alpha-200x150.png"))
            dest = (fn.get("save") or {}).get("s3_destination")
            if dest is not None:
                dest["bucket"] = DEST_BUCKET
        return job

    def walk(self, functions):
        for fn in functions:
            yield fn
            yield from self.walk(fn.get("functions") or [])

    def submit(self, job):
        """Push the job; return its postback (checked to be a JSON POST)."""
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/" + job["job_id"])
        self.assertEqual(pb.method, "POST")
        self.assertTrue(pb.headers.get("content-type", "").startswith("application/json"),
                        pb.headers)
        self.assertIsInstance(pb.json, dict, pb.body[:500])
        self.assertEqual(list(pb.json), ["results"])
        return pb

    def assert_success(self, pb, job_id, identifiers, original=PHOTO[2], exact_meta=True):
        """Blitline's success payload: exactly job_id, original_meta, images (no errors);
        original_meta is exactly {width, height} unless exact_meta is false (a source with
        EXIF adds date_created, lat, lng)."""
        results = pb.json["results"]
        self.assertEqual(set(results), {"job_id", "original_meta", "images"}, results)
        self.assertEqual(results["job_id"], job_id)
        meta = results["original_meta"]
        if not exact_meta:
            meta = {k: meta.get(k) for k in ("width", "height")}
        self.assertEqual(meta, {"width": original[0], "height": original[1]})
        self.assertEqual([i["image_identifier"] for i in results["images"]], identifiers)
        for img in results["images"]:
            self.assertEqual(set(img), {"image_identifier", "s3_url", "meta"}, img)
            self.assertEqual(set(img["meta"]), {"width", "height"}, img)
        self.assertEqual(self.read_result(job_id), pb.json)
        self.assert_queue_drained()
        return results["images"]

    def fetch(self, image, fmt, size=None, content_type=None):
        """GET the object an `images` entry names; check its format, size (default: the
        entry's meta) and Content-Type. Returns its bytes."""
        url = image["s3_url"]
        self.assertTrue(url.startswith(self.s3.endpoint() + "/"), url)
        status, headers, body = harness.http_request(url)
        self.assertEqual(status, 200, "GET %s: %d %r" % (url, status, body[:200]))
        size = size or (image["meta"]["width"], image["meta"]["height"])
        self.assert_image(body, fmt, *size)
        self.assertEqual((image["meta"]["width"], image["meta"]["height"]), tuple(size))
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type")
        self.assertEqual(ctype, content_type or "image/" + fmt.lower(), url)
        return body

    def assert_default_key(self, image, job_id, n, ext):
        """A save without destination: <default bucket>/<YYYYMMDDHH>/<job_id>/<id>-<n>.<ext>."""
        want = r"^%s/pixq-test/\d{10}/%s/%s-%d\.%s$" % (
            re.escape(self.s3.endpoint()), re.escape(job_id),
            re.escape(image["image_identifier"]), n, ext)
        self.assertRegex(image["s3_url"], want)

    def assert_near(self, got, want, tolerance, what=""):
        self.assertTrue(all(abs(a - b) <= tolerance for a, b in zip(got, want)),
                        "%s: %r is not within %d of %r" % (what, got, tolerance, want))

    def assert_failure(self, pb, job_id, error, failed):
        """Blitline's failure payload: original_meta {}, no images, errors, failed ids."""
        results = pb.json["results"]
        self.assertEqual(results["job_id"], job_id)
        self.assertEqual(results["original_meta"], {})
        self.assertEqual(results["images"], [])
        self.assertEqual(len(results["errors"]), 1, results)
        self.assertTrue(results["errors"][0].startswith("Image processing failed. "), results)
        self.assertIn(error, results["errors"][0])
        self.assertEqual(results["failed_image_identifiers"], failed)
        self.assertEqual(self.read_result(job_id), pb.json)
        self.assert_queue_drained()


class SampleJobsTest(BlitlineTestCase):
    """The ten sample jobs Blitline published, with the documented results."""

    def run_sample(self, name):
        job_id = "sample-" + name.split("_")[0]
        job = self.rewrite(sample(name), job_id)
        pb = self.submit(job)
        # every parameter Blitline's own samples give is read (IgnoredParamsTest)
        self.assertEqual([e for e in self.worker.log_events("job_params_ignored")
                          if e.get("job_id") == job_id], [])
        return job_id, job, pb

    def test_01_simple_thumbnail(self):
        # resize_to_fit 500 (autosharpen), no destination: the default bucket
        job_id, _, pb = self.run_sample("01_simple_thumbnail.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        self.assert_default_key(images[0], job_id, 0, "jpg")
        self.fetch(images[0], "JPEG", (500, 313))

    def test_03_s3_destination_blur(self):
        # blur with no params, a key without extension (JPEG) and with spaces
        job_id, job, pb = self.run_sample("03_s3_destination_blur.json")
        images = self.assert_success(pb, job_id, ["YOUR_IMAGE_IDENTIFIER"])
        self.assertEqual(images[0]["s3_url"],
                         self.s3.object_url(DEST_BUCKET, "key value to save image as"))
        self.fetch(images[0], "JPEG", (2560, 1600))

    def test_06_s3_source_resize_to_fill(self):
        job_id, _, pb = self.run_sample("06_s3_source_resize_to_fill.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        self.assert_default_key(images[0], job_id, 0, "jpg")
        self.fetch(images[0], "JPEG", (200, 200))
        self.assertEqual(self.src.requests(), {})  # read from s3rver, not from a URL

    def test_09_crop_gravity_png_quantize(self):
        # crop width 100 (no height: the full height), North gravity; .png with png_quantize
        job_id, _, pb = self.run_sample("09_crop_gravity_png_quantize.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        self.assert_default_key(images[0], job_id, 0, "png")
        body = self.fetch(images[0], "PNG", (100, 1600))
        self.assertEqual(identify_escape(body, "%[png:IHDR.color_type]"), "3 (Indexed)")

    def test_11_crop_then_two_fills_nested(self):
        job_id, _, pb = self.run_sample("11_crop_then_two_fills_nested.json")
        images = self.assert_success(
            pb, job_id, ["external_sample_1", "external_sample_2", "external_sample_3"])
        for n, (image, side) in enumerate(zip(images, (240, 100, 50))):
            self.assert_default_key(image, job_id, n, "jpg")
            self.fetch(image, "JPEG", (side, side))

    def test_12_fit_pad_annotate_kerning(self):
        # fit 550x600 (the photo is larger: fitted to 550x344), pad 25 px South in #bc0001,
        # annotate at SouthEast; quality 100
        job_id, _, pb = self.run_sample("12_fit_pad_annotate_kerning.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        body = self.fetch(images[0], "JPEG", (550, 369))
        self.assertEqual(identify_escape(body, "%Q"), "100")
        band, photo = pixels(body, [(5, 366), (275, 100)])
        self.assert_near(band[:3], (0xbc, 0x00, 0x01), 6, "the padding band")
        self.assertGreater(abs(photo[0] - 0xbc) + abs(photo[1]) + abs(photo[2] - 1), 30)

    def test_15_pad_resize_to_fit(self):
        # fit into 600x400 (600x375) and pad to 600x400 with #aa0000, image at the West
        job_id, _, pb = self.run_sample("15_pad_resize_to_fit.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        body = self.fetch(images[0], "JPEG", (600, 400))
        top, bottom = pixels(body, [(300, 2), (300, 397)])
        self.assert_near(top[:3], (0xaa, 0, 0), 12, "top band")
        self.assert_near(bottom[:3], (0xaa, 0, 0), 12, "bottom band")

    def test_16_canvas_composite_png(self):
        # a red 500x500 canvas, alpha-200x150.png composited at the centre (offset 150,175)
        job_id, _, pb = self.run_sample("16_canvas_composite_png.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"], original=(500, 500))
        body = self.fetch(images[0], "PNG", (500, 500))
        corner, clear, band = pixels(body, [(5, 5), (300, 185), (300, 245)])
        self.assert_near(corner, (255, 0, 0, 255), 2, "canvas")
        self.assert_near(clear, (255, 0, 0, 255), 2, "transparent part of the overlay")
        self.assert_near(band, (127, 0, 128, 255), 4, "half-transparent blue over red")
        self.assertEqual(self.src.requests(OVERLAY), 1)

    def test_18_png8_quantize(self):
        job_id, _, pb = self.run_sample("18_png8_quantize.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        body = self.fetch(images[0], "PNG", (100, 63))
        self.assertEqual(identify_escape(body, "%[png:IHDR.color_type]"), "3 (Indexed)")

    def test_19_rotate_extension_override(self):
        # rotate 5 degrees clockwise: the canvas grows to ImageMagick's bounding box, the size
        # `convert -rotate 5` gives (Blitline's worker called the same ImageMagick rotate)
        job_id, _, pb = self.run_sample("19_rotate_extension_override.json")
        images = self.assert_success(pb, job_id, ["MY_CLIENT_ID"])
        r = subprocess.run(["convert", "-", "-rotate", "5", "-format", "%w %h", "info:"],
                           input=corpus(PHOTO[1]), stdout=subprocess.PIPE, check=True, timeout=120)
        want = tuple(int(v) for v in r.stdout.split())
        self.assert_default_key(images[0], job_id, 0, "jpg")
        self.fetch(images[0], "JPEG", want)


class ErrorsTest(BlitlineTestCase):
    """The documented error texts reach the postback; the worker carries on."""

    def one(self, job_id, functions, src=None):
        job = {"application_id": "test", "src": src or self.serve_photo(), "job_id": job_id,
               "postback_url": self.postbacks.url("/pb/" + job_id), "functions": functions}
        return self.submit(job)

    def test_unknown_function(self):
        pb = self.one("err-unknown", [{"name": "blu3r", "params": {},
                                       "save": {"image_identifier": "MY_CLIENT_ID"}}])
        self.assert_failure(pb, "err-unknown",
                            "Image processing failed. Unknown function named 'blu3r'",
                            ["MY_CLIENT_ID"])
        self.assertEqual(pb.json["results"]["errors"],
                         ["Image processing failed. Unknown function named 'blu3r'"])
        self.assertEqual(self.src.requests(), {})  # refused before downloading anything

    def test_missing_image_identifier(self):
        pb = self.one("err-noid", [{"name": "resize_to_fit", "params": {"width": 10},
                                    "save": {"extension": ".png"},
                                    "functions": [{"name": "no_op",
                                                   "save": {"image_identifier": "child"}}]}])
        self.assert_failure(pb, "err-noid", "Save must have an image_identifier", ["child"])

    def test_bad_parameter_type(self):
        pb = self.one("err-param", [{"name": "resize_to_fit", "params": {"width": "wide"},
                                     "save": {"image_identifier": "a"}}])
        self.assert_failure(pb, "err-param",
                            "Invalid parameter 'width' for function 'resize_to_fit'", ["a"])

    def dead_error(self, job_id):
        """The error of the job's entry in dead (written after the postback: waited for)."""
        def find():
            for raw in self.redis.lrange(self.key("dead"), 0, -1):
                entry = json.loads(raw)
                if entry.get("job_id") == job_id:
                    return entry["error"]
            return None
        return self.wait_until(find, POSTBACK_TIMEOUT_S, "a dead entry for %s" % job_id)

    def test_bad_parameter_fails_before_anything_runs(self):
        """A bad parameter anywhere in the tree fails the job at once (DESIGN.md, job life
        cycle step 2): its source is never fetched and the output of the function before it is
        neither made nor uploaded, unlike a failure only the run can find
        (test_outputs_saved_before_a_failure_stay). The error is the one the run would give."""
        error = "Image processing failed. Missing parameter 'width' for function 'crop'"
        pb = self.one("err-param-late", [
            {"name": "resize_to_fit", "params": {"width": 50},
             "save": {"image_identifier": "first",
                      "s3_destination": {"bucket": DEST_BUCKET, "key": "late/first.jpg"}}},
            {"name": "crop", "params": {"height": 10},
             "save": {"image_identifier": "cropped"}}])
        self.assert_failure(pb, "err-param-late", error, ["first", "cropped"])
        self.assertEqual(pb.json["results"]["errors"], [error])
        self.assertEqual(self.dead_error("err-param-late"), error)
        self.assertEqual(self.src.requests(), {})  # refused before downloading anything
        self.assertEqual(self.s3.get_object(DEST_BUCKET, "late/first.jpg")[0], 404)
        self.assertEqual(len(self.programs[0].log_events("s3_put")), 0)

    def test_bad_parameter_of_a_child_stops_pre_process(self):
        """A child's bad parameter is found before the pre_process job runs: neither source is
        fetched and the pre_process job's output is not uploaded. A pre_process job's own bad
        parameter says so, as its run did."""
        pre_src = self.src.add("/pre.jpg", corpus(PHOTO[1]))
        job = {"application_id": "test", "src": "&early", "job_id": "err-param-child",
               "postback_url": self.postbacks.url("/pb/err-param-child"),
               "pre_process": {"job": {"src": pre_src, "functions": [
                   {"name": "resize_to_fit", "params": {"width": 60},
                    "save": {"image_identifier": "early", "s3_destination": {
                        "bucket": DEST_BUCKET, "key": "early/pre.jpg"}}}]}},
               "functions": [{"name": "no_op", "save": {"image_identifier": "copy"},
                              "functions": [{"name": "annotate", "params": {
                                  "text": "hi", "color": "not-a-colour"},
                                  "save": {"image_identifier": "text"}}]}]}
        error = ("Image processing failed. Invalid parameter 'color' for function 'annotate': "
                 "'not-a-colour' is not a colour")
        pb = self.submit(job)
        results = pb.json["results"]
        self.assertEqual(results["errors"], [error])
        self.assertEqual(results["images"], [])
        self.assertEqual(self.dead_error("err-param-child"), error)
        self.assertEqual(self.src.requests(), {})
        self.assertEqual(self.s3.get_object(DEST_BUCKET, "early/pre.jpg")[0], 404)
        job = copy.deepcopy(job)
        job["job_id"] = "err-param-pre"
        job["postback_url"] = self.postbacks.url("/pb/err-param-pre")
        job["pre_process"]["job"]["functions"][0]["params"]["width"] = -1
        pb = self.submit(job)
        self.assertEqual(pb.json["results"]["errors"],
                         ["Image processing failed. pre_process job: Invalid parameter 'width' "
                          "for function 'resize_to_fit': -1 is out of range [0, 1000000000]"])
        self.assertEqual(self.src.requests(), {})

    def test_composite_src_cannot_be_fetched(self):
        missing = self.src.url("/missing-overlay.png")
        pb = self.one("err-composite", [{"name": "composite", "params": {"src": missing},
                                         "save": {"image_identifier": "c"}}])
        self.assert_failure(pb, "err-composite", missing, ["c"])
        self.assertIn("Failed to download", pb.json["results"]["errors"][0])
        # a 404 is final: the job ran once, and its error does not say how often it ran
        self.assertTrue(pb.json["results"]["errors"][0].endswith(": server answered HTTP 404"),
                        pb.json)

    def test_outputs_saved_before_a_failure_stay(self):
        """As in Blitline, a failure part-way through the tree keeps the images saved before
        it: they are uploaded and listed; only the identifiers not made are failed."""
        missing = self.src.url("/missing-overlay.png")
        pb = self.one("err-late", [
            {"name": "resize_to_fit", "params": {"width": 50},
             "save": {"image_identifier": "first"},
             "functions": [{"name": "no_op", "save": {"image_identifier": "child"}}]},
            {"name": "composite", "params": {"src": missing},
             "save": {"image_identifier": "late"},
             "functions": [{"name": "no_op", "save": {"image_identifier": "under-late"}}]}])
        results = pb.json["results"]
        self.assertEqual(results["original_meta"], {})
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["first", "child"])
        self.assertEqual(results["failed_image_identifiers"], ["late", "under-late"])
        self.assertEqual(len(results["errors"]), 1, results)
        self.assertTrue(results["errors"][0].startswith("Image processing failed. "), results)
        self.assertIn(missing, results["errors"][0])
        self.fetch(results["images"][0], "JPEG", (50, 31))
        self.fetch(results["images"][1], "JPEG", (50, 31))
        self.assertEqual(self.read_result("err-late"), pb.json)
        self.assert_queue_drained()

    def test_outputs_wait_for_the_last_run(self):
        """A run that will run again (wait_retry_delay) uploads nothing of a failed tree: the
        last run does, once."""
        missing = self.src.url("/missing-overlay.png")
        job = {"src": self.serve_photo(), "job_id": "err-rerun", "wait_retry_delay": 0,
               "postback_url": self.postbacks.url("/pb/err-rerun"), "functions": [
                   {"name": "no_op", "save": {"image_identifier": "first"}},
                   {"name": "composite", "params": {"src": missing},
                    "save": {"image_identifier": "late"}}]}
        pb = self.submit(job)
        results = pb.json["results"]
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["first"])
        self.assertEqual(results["failed_image_identifiers"], ["late"])
        worker = self.programs[0]
        self.assertEqual(len(worker.log_events("job_retry")), 4)
        self.assertEqual(len(worker.log_events("s3_put")), 1)
        self.assertEqual(self.src.requests("/missing-overlay.png"), 5)

    def test_missing_reference(self):
        pb = self.one("err-ref", [{"name": "no_op", "save": {"image_identifier": "r"}}],
                      src="&nothing")
        self.assert_failure(pb, "err-ref",
                            "Image reference 'nothing' not found. Preprocessing probably failed.",
                            ["r"])

    def test_s3_source_missing(self):
        pb = self.one("err-s3", [{"name": "no_op", "save": {"image_identifier": "s"}}],
                      src={"name": "s3", "bucket": SRC_BUCKET, "key": "nothing/here.jpg"})
        self.assert_failure(pb, "err-s3", "Failed to download from s3 (", ["s"])
        # and the worker goes on with the next job
        pb = self.one("after-errors", [{"name": "no_op", "save": {"image_identifier": "ok"}}])
        self.assert_success(pb, "after-errors", ["ok"])


class IgnoredParamsTest(BlitlineTestCase):
    """A parameter no function reads (a misspelt "widht") is ignored, as Blitline's worker
    ignored it: the job runs and its postback is the one without it, and the worker says so in
    one warning, job_params_ignored, naming each function.parameter."""

    def fns(self, extra, child_extra, prefix):
        """resize_to_fit 200 wide with its params `extra`, saved, then a child crop 40x30 with
        `child_extra`, saved; keys under `prefix`."""
        def save(name):
            return {"image_identifier": name, "s3_destination": {
                "bucket": DEST_BUCKET, "key": "%s/%s.jpg" % (prefix, name)}}
        return [{"name": "resize_to_fit", "params": dict({"width": 200}, **extra),
                 "save": save("fit"), "functions": [
                     {"name": "crop", "params": dict({"width": 40, "height": 30}, **child_extra),
                      "save": save("crop")}]}]

    def job(self, job_id, functions):
        return {"application_id": "test", "src": self.serve_photo(), "job_id": job_id,
                "postback_url": self.postbacks.url("/pb/" + job_id), "functions": functions}

    def ignored(self, job_id):
        return [e for e in self.worker.log_events("job_params_ignored")
                if e.get("job_id") == job_id]

    def test_misspelt_params_named_in_one_warning(self):
        clean = self.submit(self.job("ign-clean", self.fns({}, {}, "clean")))
        pb = self.submit(self.job("ign-1", self.fns({"widht": 50}, {"gravty": "North"}, "ign")))
        # the postback is the one without them (but for the job's id and keys)
        want = json.loads(json.dumps(clean.json).replace("ign-clean", "ign-1")
                          .replace("/clean/", "/ign/"))
        self.assertEqual(pb.json, want)
        images = self.assert_success(pb, "ign-1", ["fit", "crop"])
        self.fetch(images[0], "JPEG", (200, 125))
        self.fetch(images[1], "JPEG", (40, 30))
        lines = self.ignored("ign-1")
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["level"], "warn")
        self.assertEqual(lines[0]["params"], "resize_to_fit.widht,crop.gravty")
        self.assertEqual(lines[0]["count"], "2")
        self.assertEqual(self.ignored("ign-clean"), [])

    def test_misspelt_required_param_named_beside_the_failure(self):
        """The line comes before the check that fails the job: a required parameter misspelt
        is missing, and the line says what was given instead."""
        pb = self.submit(self.job("ign-fail", [
            {"name": "resize_to_fill", "params": {"width": 40, "heigth": 30},
             "save": {"image_identifier": "fill"}}]))
        self.assert_failure(pb, "ign-fail",
                            "Missing parameter 'height' for function 'resize_to_fill'", ["fill"])
        lines = self.ignored("ign-fail")
        self.assertEqual([(e["count"], e["params"]) for e in lines],
                         [("1", "resize_to_fill.heigth")])

    def test_known_params_aliases_and_string_forms_say_nothing(self):
        """Every parameter read: by its name or its alias (modulate's Brightness, annotate's
        font_family and weight, quantize's colorspace), numbers and switches as strings,
        composite's scale_to_fit members, a src object's members (not parameters), no params
        or {} at all: no job_params_ignored."""
        overlay = self.src.add(OVERLAY, image_file("alpha-200x150.png"))
        fns = self.fns({"height": "100000", "only_shrink_larger": "true", "autosharpen": 1},
                       {"gravity": "North", "x": "", "y": "3"}, "known")
        fns += [
            {"name": "modulate", "params": {"Brightness": "1.1", "saturation": 0.9},
             "save": {"image_identifier": "mod"}},
            {"name": "annotate", "params": {"text": "hi", "font_family": "Arial",
                                            "weight": "bold", "point_size": "12"},
             "save": {"image_identifier": "text"}},
            {"name": "quantize", "params": {"colorspace": "GRAYColorspace",
                                            "number_colors": "8", "dither": "false"},
             "save": {"image_identifier": "q", "extension": ".png"}},
            {"name": "composite", "params": {"src": overlay, "gravity": "SouthEast",
                                             "scale_to_fit": {"width": "50", "height": 40}},
             "save": {"image_identifier": "comp"}},
            {"name": "blur", "save": {"image_identifier": "blur"}},
            {"name": "no_op", "params": {}, "save": {"image_identifier": "same"}}]
        pb = self.submit(self.job("ign-known", fns))
        self.assert_success(pb, "ign-known",
                            ["fit", "crop", "mod", "text", "q", "comp", "blur", "same"])
        self.assertEqual(self.ignored("ign-known"), [])
        self.assertEqual(self.worker.log_events("job_params_ignored"), [])


class VersionTest(BlitlineTestCase):
    """Postbacks of jobs pinned to Blitline's older versions (BLITLINE.md 6.2 and 8): before 1.20
    the errors stay in `images`; before 1.18 the body is the form `results=<JSON>` unless
    content_type_json. The stored result keeps the current shape."""

    UNKNOWN = "Image processing failed. Unknown function named 'blu3r'"

    def post(self, job_id, v, functions, **extra):
        job = dict({"src": self.serve_photo(), "job_id": job_id, "v": v,
                    "postback_url": self.postbacks.url("/pb/" + job_id),
                    "functions": functions}, **extra)
        self.push_job(job)
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/" + job_id)
        self.assertEqual(pb.method, "POST")
        return pb

    def form_results(self, pb):
        self.assertEqual(pb.headers.get("content-type"), "application/x-www-form-urlencoded")
        fields = urllib.parse.parse_qs(pb.body.decode("ascii"), strict_parsing=True)
        self.assertEqual(list(fields), ["results"])
        return json.loads(fields["results"][0])

    def test_v1_failure_is_a_form_with_errors_in_images(self):
        pb = self.post("v10-bad", 1.0, [{"name": "blu3r", "save": {"image_identifier": "a"}}])
        self.assertEqual(self.form_results(pb), {
            "original_meta": {}, "images": [{"error": self.UNKNOWN},
                                            {"failed_image_identifiers": ["a"]}],
            "job_id": "v10-bad", "error": "true"})
        stored = self.read_result("v10-bad")["results"]
        self.assertEqual((stored["errors"], stored["failed_image_identifiers"]),
                         ([self.UNKNOWN], ["a"]))

    def test_invalid_job_keeps_its_version(self):
        """A job that fails before its v would be read still posts in its version's shape; one
        without v posts JSON (a job that failed early once posted a form)."""
        for job_id, v, form in (("v10-early", 1.0, True), ("nov-early", None, False)):
            job = {"src": self.serve_photo(), "job_id": job_id, "pixq_wake": True,
                   "postback_url": self.postbacks.url("/pb/" + job_id),
                   "functions": [{"name": "no_op", "save": {"image_identifier": "a"}}]}
            if v is not None:
                job["v"] = v
            self.push_job(job)
            pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/" + job_id)
            if form:
                results = self.form_results(pb)
                self.assertIn("is pixq's own", results["images"][0]["error"])
            else:
                self.assertIn("is pixq's own", pb.json["results"]["errors"][0])

    def test_v1_success_is_a_form(self):
        """A form whatever the job's postback_headers say of Content-Type, in any case; its
        others go."""
        for job_id, name in (("v10-ok", "Content-Type"), ("v10-ok-lower", "content-type")):
            pb = self.post(job_id, "1.0", [{"name": "resize_to_fit", "params": {"width": 20},
                                            "save": {"image_identifier": "a"}}],
                           postback_headers={name: "application/json", "X-Mine": "1"})
            self.assertEqual(pb.headers.get("x-mine"), "1")
            results = self.form_results(pb)
            self.assertEqual(results, self.read_result(job_id)["results"])
            self.assertEqual([i["image_identifier"] for i in results["images"]], ["a"])

    def test_v1_with_content_type_json(self):
        pb = self.post("v11-json", 1.1, [{"name": "blu3r", "save": {"image_identifier": "a"}}],
                       content_type_json=True)
        self.assertTrue(pb.headers.get("content-type", "").startswith("application/json"))
        self.assertEqual(pb.json, {"results": {
            "original_meta": {}, "images": [{"error": self.UNKNOWN},
                                            {"failed_image_identifiers": ["a"]}],
            "job_id": "v11-json"}})

    def test_v118_errors_carry_their_identifiers(self):
        pb = self.post("v118-bad", "1.18", [{"name": "blu3r", "save": {"image_identifier": "a"}}])
        self.assertTrue(pb.headers.get("content-type", "").startswith("application/json"))
        self.assertEqual(pb.json, {"results": {
            "original_meta": {}, "images": [{"error": self.UNKNOWN,
                                             "failed_image_identifiers": ["a"]}],
            "job_id": "v118-bad"}})

    def test_postback_error_only(self):
        """postback_error_only (Blitline's worker): a job that did not fail posts nothing."""
        fns = [{"name": "resize_to_fit", "params": {"width": 20},
                "save": {"image_identifier": "a"}}]
        for job_id, functions in (("eo-ok", fns),
                                  ("eo-bad", [{"name": "blu3r",
                                               "save": {"image_identifier": "a"}}])):
            self.push_job({"src": self.serve_photo(), "job_id": job_id,
                           "postback_url": self.postbacks.url("/pb/" + job_id),
                           "postback_error_only": "true", "functions": functions})
        pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/eo-bad")
        self.assertEqual(pb.json["results"]["errors"], [self.UNKNOWN])
        self.assertEqual(self.read_result("eo-ok")["results"]["images"][0]["image_identifier"],
                         "a")
        self.assertEqual([pb for pb in self.postbacks.postbacks if pb.path == "/pb/eo-ok"], [])
        # the job's last line: no postback was due (README, Logs), not one delivered before;
        # eo-bad's comes after its postback, which the test may see first
        def ends():
            return {e["job_id"]: (e["event"], e["level"], e["postback"])
                    for e in self.worker.log_events("job_done")
                    + self.worker.log_events("job_failed")}
        self.wait_until(lambda: len(ends()) == 2, 10, "both jobs' last lines")
        self.assertEqual(ends(), {"eo-ok": ("job_done", "info", "none"),
                                  "eo-bad": ("job_failed", "warn", "delivered")})
        self.assert_queue_drained()

    def test_v120_lifts_errors(self):
        pb = self.post("v120-bad", 1.2, [{"name": "blu3r", "save": {"image_identifier": "a"}}])
        self.assertEqual(pb.json, {"results": {
            "original_meta": {}, "images": [], "job_id": "v120-bad", "errors": [self.UNKNOWN],
            "failed_image_identifiers": ["a"]}})


class LegacyBucketTest(BlitlineTestCase):
    """A us-east-1 bucket named before 2018 with capitals and underscores (Blitline-era users
    have them): addressed path-style, its name being no host name."""

    s3_server = "stub"
    buckets = BlitlineTestCase.buckets + ("Legacy_Bucket",)

    def test_upload_to_a_legacy_bucket(self):
        job = {"src": self.serve_photo(), "job_id": "legacy-1",
               "postback_url": self.postbacks.url("/pb/legacy-1"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 16}, "save": {
                   "image_identifier": "a", "s3_destination": {
                       "bucket": "Legacy_Bucket", "key": "old/a.jpg"}}}]}
        images = self.assert_success(self.submit(job), "legacy-1", ["a"])
        self.assertEqual(images[0]["s3_url"], self.s3.object_url("Legacy_Bucket", "old/a.jpg"))
        self.assertIsNotNone(self.s3.object_headers("Legacy_Bucket", "old/a.jpg"))


def acl_of(stored):
    """The ACL headers among headers the stub stored."""
    return {n: v for n, v in stored.items() if n.startswith(("x-amz-acl", "x-amz-grant-"))}


class AclTest(BlitlineTestCase):
    """The default canned ACL and Blitline's grant headers (BLITLINE.md 7.3), as S3 receives
    them: S3 refuses a canned ACL beside grants, and `"x-amz-grant-read": ""` was Blitline's way
    to keep an object private."""

    s3_server = "stub"

    def stored_headers(self, headers):
        """The headers the stub (which checks the signature) stored for one output saved with
        `headers`: x-amz-meta-*, x-amz-acl, x-amz-grant-*, cache-control, content-*."""
        self.saved = getattr(self, "saved", 0) + 1
        key, job_id = "acl/%d.jpg" % self.saved, "acl-%d" % self.saved
        job = {"src": self.serve_photo(), "job_id": job_id,
               "postback_url": self.postbacks.url("/pb/" + job_id),
               "functions": [{"name": "resize_to_fit", "params": {"width": 16}, "save": {
                   "image_identifier": "a", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": key, "headers": headers}}}]}
        self.assert_success(self.submit(job), job["job_id"], ["a"])
        return self.s3.object_headers(DEST_BUCKET, key)

    def stored_acl(self, headers):
        """The ACL headers the stub stored for one output saved with `headers`."""
        return acl_of(self.stored_headers(headers))

    def stored_result_headers(self, job_id, key, headers=None):
        """The headers the stub stored for the result object of job `job_id`'s postback_url
        save to `key` (with the s3_destination `headers`, if any)."""
        job = result_to_s3_job(job_id, self.serve_photo(), DEST_BUCKET, key)
        if headers is not None:
            job["postback_url"]["save"]["s3_destination"]["headers"] = headers
        self.push_job(job)
        self.read_result(job_id, timeout=30)
        return self.wait_until(lambda: self.s3.object_headers(DEST_BUCKET, key), 10,
                               "the result object")

    def test_default_acl(self):
        self.assertEqual(self.stored_acl({}), {"x-amz-acl": "public-read"})

    def test_grants_replace_the_default_acl(self):
        grants = {"x-amz-grant-read": "uri=http://acs.amazonaws.com/groups/global/AllUsers",
                  "X-Amz-Grant-Full-Control": "id=abc123"}
        self.assertEqual(self.stored_acl(grants), {
            "x-amz-grant-read": "uri=http://acs.amazonaws.com/groups/global/AllUsers",
            "x-amz-grant-full-control": "id=abc123"})

    def test_empty_grant_read_keeps_the_object_private(self):
        self.assertEqual(self.stored_acl({"x-amz-grant-read": ""}), {})

    def test_null_header_is_removed_as_an_empty_one(self):
        """A header given as null is dropped as "" is (Blitline's worker removed both): the
        grant keeps the object private, the type goes. The job failed ("must be a string")."""
        stored = self.stored_headers({"x-amz-grant-read": None, "Content-Type": None})
        self.assertEqual(acl_of(stored), {})
        self.assertNotIn("content-type", stored)

    def test_grant_named_in_capitals_replaces_the_default_acl(self):
        """Header names are case-insensitive: a job naming only X-Amz-Grant-Read gets no default
        x-amz-acl either (S3 refuses a canned ACL beside grants)."""
        self.assertEqual(self.stored_acl({"X-Amz-Grant-Read": "id=abc123"}),
                         {"x-amz-grant-read": "id=abc123"})

    def test_job_headers_replace_the_defaults_in_any_case(self):
        """A job's header replaces pixq's of the same name whatever its case: X-Amz-Acl
        replaces the default x-amz-acl, "content-type": "" removes Content-Type; neither is sent
        twice."""
        stored = self.stored_headers({"X-Amz-Acl": "private", "content-type": ""})
        self.assertEqual({n: v for n, v in stored.items() if n.startswith("x-amz-acl")},
                         {"x-amz-acl": "private"})
        self.assertNotIn("content-type", stored)

    def test_as_many_headers_as_a_job_may_name(self):
        """A destination with JOB_MAX_HEADERS (24) headers gets each of them, beside the
        Content-Type and default x-amz-acl pixq adds (26 in all)."""
        headers = {"x-amz-meta-h%02d" % i: "v%d" % i for i in range(24)}
        stored = self.stored_headers(headers)
        self.assertEqual({n: v for n, v in stored.items() if n.startswith("x-amz-meta-")},
                         headers)
        self.assertEqual((stored.get("content-type"), stored.get("x-amz-acl")),
                         ("image/jpeg", "public-read"))

    def test_result_object_headers(self):
        """The result JSON a postback_url save writes is application/json and the job owner's
        (x-amz-acl: bucket-owner-full-control, README), not the outputs' default public-read."""
        stored = self.stored_result_headers("acl-result", "r/acl.json")
        self.assertEqual(stored.get("content-type"), "application/json", stored)
        self.assertEqual(acl_of(stored), {"x-amz-acl": "bucket-owner-full-control"})

    def test_result_object_acl_from_the_job_headers(self):
        """README: the result object's bucket-owner-full-control goes when the job's headers say
        otherwise (their own x-amz-acl, or a grant)."""
        for n, (headers, want) in enumerate((
                ({"x-amz-acl": "private"}, {"x-amz-acl": "private"}),
                ({"x-amz-grant-read": "id=\"abc\""}, {"x-amz-grant-read": "id=\"abc\""}))):
            stored = self.stored_result_headers("acl-result-%d" % n, "r/acl-%d.json" % n,
                                                headers)
            self.assertEqual(acl_of(stored), want)

    def test_job_acl_beside_grants_is_sent_as_given(self):
        """The job's own canned ACL is its choice (S3 answers for it); only the default goes."""
        self.assertEqual(self.stored_acl({"x-amz-acl": "private", "x-amz-grant-read": ""}),
                         {"x-amz-acl": "private"})

    def test_bucket_that_takes_no_acls(self):
        """A bucket with ACLs disabled (S3's default for new buckets since April 2023) refuses
        the default x-amz-acl: the error carries S3's own explanation and the setting to change."""
        self.s3.fail(DEST_BUCKET, 400, "AccessControlListNotSupported",
                     message="The bucket does not allow ACLs")
        job = {"src": self.serve_photo(), "job_id": "acl-refused",
               "postback_url": self.postbacks.url("/pb/acl-refused"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 16}, "save": {
                   "image_identifier": "a", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": "acl/refused.jpg"}}}]}
        results = self.submit(job).json["results"]
        self.assertEqual(results["failed_image_identifiers"], ["a"], results)
        error = results["errors"][0]
        self.assertIn("HTTP 400 AccessControlListNotSupported: The bucket does not allow ACLs",
                      error)
        self.assertIn("; set PIXQ_S3_DEFAULT_ACL empty to send no x-amz-acl header", error)

    def test_bucket_that_takes_no_acls_with_a_long_reason(self):
        """S3's reason too long for both (a long key in its URL, S3's message as long as it is
        quoted): the reason is cut, the setting to change is said whole."""
        self.s3.fail(DEST_BUCKET, 400, "AccessControlListNotSupported", message="why " * 200)
        job = {"src": self.serve_photo(), "job_id": "acl-long",
               "postback_url": self.postbacks.url("/pb/acl-long"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 16}, "save": {
                   "image_identifier": "a", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": "acl/" + "k" * 300 + ".jpg"}}}]}
        results = self.submit(job).json["results"]
        self.assertEqual(results["failed_image_identifiers"], ["a"], results)
        error = results["errors"][0]
        self.assertIn("HTTP 400 AccessControlListNotSupported: why why", error)
        self.assertTrue(error.endswith("; set PIXQ_S3_DEFAULT_ACL empty to send no x-amz-acl "
                                       "header (a job's own x-amz-acl or x-amz-grant-* headers "
                                       "are refused too)"), error)

    def test_removed_content_type_is_none(self):
        """`"Content-Type": ""` removes the type (S3 then stores its default): curl's POST default
        application/x-www-form-urlencoded was sent in its place, unsigned, and stored."""
        self.assertEqual(self.stored_headers({})["content-type"], "image/jpeg")
        self.assertNotIn("content-type", self.stored_headers({"Content-Type": ""}))

    def test_blank_metadata_is_stored_empty(self):
        """A value of spaces is signed trimmed, empty, and sent so: curl dropped it."""
        stored = self.stored_headers({"x-amz-meta-blank": "   ", "x-amz-meta-tab": "\t"})
        self.assertEqual(stored.get("x-amz-meta-blank"), "", stored)
        self.assertEqual(stored.get("x-amz-meta-tab"), "", stored)


class NoDefaultAclTest(BlitlineTestCase):
    """PIXQ_S3_DEFAULT_ACL empty: no x-amz-acl on an output, nor on a postback_url's result
    object (README), whose bucket-owner-full-control goes with it."""

    s3_server = "stub"
    worker_env_extra = {"PIXQ_S3_DEFAULT_ACL": ""}
    stored_headers = AclTest.stored_headers
    stored_acl = AclTest.stored_acl
    stored_result_headers = AclTest.stored_result_headers

    def test_no_acl_on_an_output(self):
        self.assertEqual(self.stored_acl({}), {})

    def test_no_acl_on_the_result_object(self):
        stored = self.stored_result_headers("acl-none", "r/none.json")
        self.assertEqual(stored.get("content-type"), "application/json", stored)
        self.assertEqual(acl_of(stored), {})


class DefaultQualityTest(BlitlineTestCase):
    """PIXQ_DEFAULT_QUALITY=60 (README: JPEG/WebP quality when a save gives none). Only its
    default, 75, was ever seen by a test: a worker that ignored the setting passed them all."""

    worker_env_extra = {"PIXQ_DEFAULT_QUALITY": "60"}

    def test_a_save_without_quality_takes_the_setting(self):
        fit = {"name": "resize_to_fit", "params": {"width": 40}}
        job = {"src": self.serve_photo(), "job_id": "dq-1", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/dq-1"), "functions": [
                   dict(fit, save={"image_identifier": "j"}),
                   dict(fit, save={"image_identifier": "w", "extension": ".webp"}),
                   dict(fit, save={"image_identifier": "q", "quality": 90})]}
        images = self.submit(job).json["results"]["images"]
        self.assertEqual([i["image_identifier"] for i in images], ["j", "w", "q"])
        jpeg = self.fetch(images[0], "JPEG", (40, 25))
        self.fetch(images[1], "WEBP", (40, 25), content_type="image/webp")
        explicit = self.fetch(images[2], "JPEG", (40, 25))
        # ImageMagick's estimate from the JPEG's quantisation tables, not pixq's own word
        self.assertEqual(identify_escape(jpeg, "%Q"), "60")
        self.assertEqual(identify_escape(explicit, "%Q"), "90")
        self.assertEqual([i["meta"]["quality"] for i in images], [60, 60, 90])


class _PutRecorder(http.server.BaseHTTPRequestHandler):
    """Takes every PUT as S3 would (200, an ETag), noting its Host header and path."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.puts.append((self.headers.get("Host"), self.path))
        self.send_response(200)
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


class PathStyleTest(BlitlineTestCase):
    """PIXQ_S3_PATH_STYLE (README: path-style addressing; auto means on with a custom
    endpoint). Only cfg.c's reading of it was tested: a worker that ignored it passed. An
    endpoint named `localhost` lets the bucket's own host name, pixq-test.localhost, reach the
    loopback recorder (curl resolves *.localhost itself, asking no name server)."""

    s3_server = "stub"  # started sooner than s3rver; the recorder takes the uploads
    start_worker_in_setup = False

    def test_path_style_on_off_and_auto(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PutRecorder)
        server.puts = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        endpoint = "localhost:%d" % server.server_address[1]
        for style, host, path in (("0", "pixq-test." + endpoint, "/out/ps-0.jpg"),
                                  ("1", endpoint, "/pixq-test/out/ps-1.jpg"),
                                  ("auto", endpoint, "/pixq-test/out/ps-auto.jpg")):
            server.puts.clear()
            worker = self.start_worker(PIXQ_S3_ENDPOINT="http://" + endpoint,
                                       PIXQ_S3_PATH_STYLE=style)
            try:
                with self.subTest(style=style):
                    job_id = "ps-" + style
                    job = {"src": self.serve_photo(), "job_id": job_id,
                           "postback_url": self.postbacks.url("/pb/" + job_id), "functions": [
                               {"name": "resize_to_fit", "params": {"width": 40}, "save": {
                                   "image_identifier": "t", "s3_destination": {
                                       "bucket": "pixq-test", "key": "out/%s.jpg" % job_id}}}]}
                    images = self.assert_success(self.submit(job), job_id, ["t"])
                    self.assertEqual(images[0]["s3_url"], "http://%s%s" % (host, path))
                    self.assertEqual(server.puts, [(host, path)])
            finally:
                self.kill_worker(worker, sig=signal.SIGTERM)


class DestinationsTest(BlitlineTestCase):
    """s3_destination headers, postback_headers, and one failed upload among good ones."""

    def test_headers_merged_and_removed(self):
        job = {"src": self.serve_photo(), "job_id": "hdr-1",
               "postback_url": self.postbacks.url("/pb/hdr-1"),
               "postback_headers": {"X-Blitline-Signature": "sig-123", "Authorization": "Bearer t"},
               "functions": [{"name": "resize_to_fit", "params": {"width": 64}, "save": {
                   "image_identifier": "h", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": "h/one.webp",
                       "headers": {"Cache-Control": "public, max-age=31536000",
                                   "x-amz-meta-owner": "pixq", "x-amz-acl": ""}}}}]}
        pb = self.submit(job)
        self.assertEqual(pb.headers.get("x-blitline-signature"), "sig-123")
        self.assertEqual(pb.headers.get("authorization"), "Bearer t")
        images = self.assert_success(pb, "hdr-1", ["h"])
        self.assertEqual(images[0]["s3_url"], self.s3.object_url(DEST_BUCKET, "h/one.webp"))
        self.fetch(images[0], "WEBP", (64, 40))
        _, headers, _ = harness.http_request(images[0]["s3_url"])
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(headers.get("cache-control"), "public, max-age=31536000")
        self.assertEqual(headers.get("x-amz-meta-owner"), "pixq")

    def test_default_key_hour_is_when_the_job_was_first_seen(self):
        """A run of a job first seen in another hour (a retry, a crash recovery) writes the same
        objects: the default key's hour is begin.lua's first_seen, not this run's clock."""
        # 2020-01-02 03:00:01.234 UTC, and 15:59:59.999 UTC (hour 15 of 24, not 03 of 12)
        for job_id, first_seen, hour in (("hour-1", 1577934000000 + 1234, "2020010203"),
                                         ("hour-2", 1577980799999, "2020010215")):
            self.redis.execute("HSET", self.key("job:" + job_id), "first_seen", str(first_seen))
            job = {"src": self.serve_photo(), "job_id": job_id,
                   "postback_url": self.postbacks.url("/pb/" + job_id),
                   "functions": [{"name": "resize_to_fit", "params": {"width": 20},
                                  "save": {"image_identifier": "d"}}]}
            images = self.assert_success(self.submit(job), job_id, ["d"])
            self.assertEqual(images[0]["s3_url"],
                             self.s3.object_url("pixq-test", "%s/%s/d-0.jpg" % (hour, job_id)))
            self.fetch(images[0], "JPEG", (20, 13))

    def test_return_keys(self):
        """s3_destination.return_keys "true" adds the object's key as s3_key (Blitline 5.1)."""
        job = {"src": self.serve_photo(), "job_id": "keys-1",
               "postback_url": self.postbacks.url("/pb/keys-1"), "functions": [
                   {"name": "resize_to_fit", "params": {"width": 20}, "save": {
                       "image_identifier": "k", "s3_destination": {
                           "bucket": DEST_BUCKET, "key": "k/one.jpg", "return_keys": "true"}}},
                   {"name": "resize_to_fit", "params": {"width": 20}, "save": {
                       "image_identifier": "n", "s3_destination": {
                           "bucket": DEST_BUCKET, "key": "k/two.jpg"}}}]}
        images = self.submit(job).json["results"]["images"]
        self.assertEqual(list(images[0]), ["image_identifier", "s3_url", "s3_key", "meta"])
        self.assertEqual(images[0]["s3_key"], "k/one.jpg")
        self.assertNotIn("s3_key", images[1])

    def test_content_type_of_each_format(self):
        """README (step 4): each output is PUT with the Content-Type of its format, for each
        of the six formats pixq writes, whether the key's extension, the save's extension or
        force_type chose it (a key without an extension: JPEG)."""
        def save(ident, key, **extra):
            return {"name": "resize_to_fit", "params": {"width": 20}, "save": dict(
                image_identifier=ident, s3_destination={"bucket": DEST_BUCKET, "key": key},
                **extra)}
        job = {"src": self.serve_photo(), "job_id": "ctype-1",
               "postback_url": self.postbacks.url("/pb/ctype-1"), "functions": [
                   save("jpeg", "ct/a"), save("png", "ct/b.png"),
                   save("webp", "ct/c", extension=".webp"), save("gif", "ct/d.gif"),
                   save("bmp", "ct/e", force_type="bmp"), save("tiff", "ct/f.tif")]}
        images = self.assert_success(self.submit(job), "ctype-1",
                                     ["jpeg", "png", "webp", "gif", "bmp", "tiff"])
        for image in images:
            fmt = image["image_identifier"].upper()
            with self.subTest(fmt=fmt):
                self.fetch(image, fmt, (20, 13))

    def test_extended_metadata_of_the_outputs(self):
        """extended_metadata adds filesize, density, depth and quality to each output's meta."""
        job = {"src": self.serve_photo(), "job_id": "ext-1", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/ext-1"), "functions": [
                   {"name": "resize_to_fit", "params": {"width": 40},
                    "save": {"image_identifier": "j", "quality": 60}},
                   {"name": "resize_to_fit", "params": {"width": 40},
                    "save": {"image_identifier": "p", "extension": ".png"}}]}
        images = self.submit(job).json["results"]["images"]
        jpeg = self.fetch(images[0], "JPEG", (40, 25))
        png = self.fetch(images[1], "PNG", (40, 25), content_type="image/png")
        density = identify_escape(jpeg, "%xx%y")  # the photo's 299 dpi, carried over
        self.assertEqual(density, "299x299")
        self.assertEqual(images[0]["meta"], {"width": 40, "height": 25, "filesize": len(jpeg),
                                             "density": density, "depth": 8, "quality": 60})
        self.assertEqual(images[1]["meta"]["filesize"], len(png))
        self.assertEqual(set(images[1]["meta"]),
                         {"width", "height", "filesize", "density", "depth", "quality"})

    def test_extended_metadata_density_and_depth(self):
        """An output's density as written, x then y (a JPEG at 300x150 dpi: "300x150"), 72x72
        when it names none (README), and its bit depth (a 16-bit PNG kept at 16)."""
        jpeg = subprocess.run(
            ["convert", "-size", "40x30", "xc:#808080", "-units", "PixelsPerInch", "-density",
             "300x150", "JPEG:-"], stdout=subprocess.PIPE, check=True, timeout=60).stdout
        self.assertEqual(identify_escape(jpeg, "%xx%y"), "300x150")
        for job_id, src, ext, fmt, size, density, depth in (
                ("ext-2", self.src.add("/d.jpg", jpeg), ".jpg", "JPEG", (40, 30), "300x150", 8),
                ("ext-3", self.src.add("/g.png", image_file("grey-16bit-1024x4.png")), ".png",
                 "PNG", (1024, 4), "72x72", 16)):
            job = {"src": src, "job_id": job_id, "extended_metadata": True,
                   "postback_url": self.postbacks.url("/pb/" + job_id),
                   "functions": [{"name": "no_op", "save": {"image_identifier": "o",
                                                            "extension": ext}}]}
            images = self.submit(job).json["results"]["images"]
            data = self.fetch(images[0], fmt, size, content_type="image/" + fmt.lower())
            self.assertEqual(identify_escape(data, "%z"), str(depth))
            meta = images[0]["meta"]
            self.assertEqual((meta["density"], meta["depth"], meta["filesize"]),
                             (density, depth, len(data)), meta)

    def test_webp_encoding_options(self):
        """save.encoding_options are the WebP encoder's settings (`-define webp:k=v`, BLITLINE.md
        5): "lossless": "true" makes a lossless WebP (a VP8L bitstream), a boolean as well; a
        JPEG output is not touched by them."""
        fns = [{"name": "resize_to_fit", "params": {"width": 64}, "save": dict(
            image_identifier=ident, s3_destination={"bucket": DEST_BUCKET, "key": "enc/" + key},
            **extra)} for ident, key, extra in (
                ("lossless", "a.webp", {"encoding_options": {"lossless": "true", "method": 6}}),
                ("boolean", "b.webp", {"encoding_options": {"lossless": True}}),
                ("lossy", "c.webp", {}),
                ("jpeg", "d.jpg", {"encoding_options": {"lossless": "true"}}))]
        job = {"src": self.serve_photo(), "job_id": "enc-1",
               "postback_url": self.postbacks.url("/pb/enc-1"), "functions": fns}
        images = self.assert_success(self.submit(job), "enc-1",
                                     ["lossless", "boolean", "lossy", "jpeg"])
        chunks = [self.fetch(img, "WEBP", (64, 40))[12:16] for img in images[:3]]
        self.assertEqual(chunks, [b"VP8L", b"VP8L", b"VP8 "])
        self.assertEqual(identify_escape(self.fetch(images[3], "JPEG", (64, 40)), "%Q"), "75")

    def test_max_filesize(self):
        """save.max_filesize (BLITLINE.md 5: "we will try to reduce the image to fit within a
        maximum filesize"): a JPEG or WebP output over it is written at the highest quality
        that fits (extended_metadata's quality says which); one that cannot fit gets the
        smallest; a PNG is left as it is."""
        def fn(ident, ext, **save):
            return {"name": "resize_to_fit", "params": {"width": 400},
                    "save": dict(image_identifier=ident, extension=ext, **save)}
        job = {"src": self.serve_photo(), "job_id": "max-1", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/max-1"), "functions": [
                   fn("free", ".jpg"), fn("fit", ".jpg", max_filesize="12000"),
                   fn("tiny", ".jpg", max_filesize=100), fn("webp", ".webp", max_filesize=6000),
                   fn("png", ".png", max_filesize=100)]}
        images = {i["image_identifier"]: i for i in self.submit(job).json["results"]["images"]}
        free = self.fetch(images["free"], "JPEG", (400, 250))
        self.assertGreater(len(free), 12000)
        fit = self.fetch(images["fit"], "JPEG", (400, 250))
        self.assertLessEqual(len(fit), 12000)
        quality = images["fit"]["meta"]["quality"]
        self.assertTrue(1 < quality < 75, quality)
        self.assertEqual(identify_escape(fit, "%Q"), str(quality))
        self.assertEqual(images["fit"]["meta"]["filesize"], len(fit))
        tiny = self.fetch(images["tiny"], "JPEG", (400, 250))
        quality = images["tiny"]["meta"]["quality"]
        self.assertTrue(1 <= quality <= 5, quality)  # the smallest of those tried
        self.assertEqual(identify_escape(tiny, "%Q"), str(quality))
        self.assertLess(len(tiny), len(fit))
        webp = self.fetch(images["webp"], "WEBP", (400, 250))
        self.assertLessEqual(len(webp), 6000)
        self.assertLess(images["webp"]["meta"]["quality"], 75)
        png = self.fetch(images["png"], "PNG", (400, 250))
        self.assertGreater(len(png), 100)

    def test_max_filesize_takes_the_highest_quality_that_fits(self):
        """README: max_filesize keeps "the highest quality that fits": the same save at the
        quality above the one chosen does not fit. test_max_filesize only bounds the quality,
        and a search that stopped at the first quality that fits passed it."""
        def fn(ident, **save):
            return {"name": "resize_to_fit", "params": {"width": 400},
                    "save": dict(image_identifier=ident, extension=".jpg", **save)}
        job = {"src": self.serve_photo(), "job_id": "max-2", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/max-2"),
               "functions": [fn("fit", max_filesize=12000)]}
        fit = self.submit(job).json["results"]["images"][0]
        quality = fit["meta"]["quality"]
        self.assertLessEqual(fit["meta"]["filesize"], 12000)
        job = {"src": self.serve_photo(), "job_id": "max-3", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/max-3"),
               "functions": [fn("same", quality=quality), fn("above", quality=quality + 1)]}
        same, above = self.submit(job).json["results"]["images"]
        self.assertEqual(same["meta"]["filesize"], fit["meta"]["filesize"])
        self.assertGreater(above["meta"]["filesize"], 12000, (quality, above["meta"]))

    def test_max_filesize_leaves_a_lossless_webp_as_it_is(self):
        """README: max_filesize lowers the quality of a JPEG or a lossy WebP; a lossless WebP
        (encoding_options lossless, "true" or true) is written as it is, the same bytes as
        without max_filesize; lossless "false" is lossy. test_max_filesize tried only a WebP
        without encoding_options: a search that took a lossless one for lossy passed it, and
        so did one that took any lossless option, "false" too, for lossless."""
        def fn(ident, lossless, **save):
            return {"name": "resize_to_fit", "params": {"width": 64}, "save": dict(
                image_identifier=ident, extension=".webp",
                encoding_options={"lossless": lossless}, **save)}
        job = {"src": self.serve_photo(), "job_id": "max-4", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/max-4"),
               "functions": [fn("plain", "true"), fn("capped", "true", max_filesize=100),
                             fn("boolean", True, max_filesize=100),
                             fn("lossy", "false", max_filesize=100)]}
        images = self.submit(job).json["results"]["images"]
        data = [self.fetch(i, "WEBP", (64, 40)) for i in images]
        self.assertEqual([d[12:16] for d in data], [b"VP8L"] * 3 + [b"VP8 "])
        self.assertGreater(len(data[0]), 100)
        self.assertEqual(data[1:3], data[:1] * 2)
        self.assertEqual([i["meta"]["quality"] for i in images[:3]], [75] * 3)
        self.assertLess(images[3]["meta"]["quality"], 75)  # the smallest of those tried

    def test_check_blank(self):
        """save.check_blank (BLITLINE.md 5) puts "is_blank": true in the entry of an output that
        is all one colour (or wholly transparent); an output with anything on it, or a save
        that did not ask, has no is_blank."""
        def save(ident, check=True, ext=".png"):
            s = {"image_identifier": ident, "extension": ext}
            if check:
                s["check_blank"] = "true"
            return s
        job = {"src": {"name": "canvas", "width": 30, "height": 20, "color": "#336699"},
               "job_id": "blank-1", "postback_url": self.postbacks.url("/pb/blank-1"),
               "functions": [
                   {"name": "no_op", "save": save("plain")},
                   {"name": "no_op", "save": save("unasked", check=False)},
                   {"name": "no_op", "save": save("plain-jpeg", ext=".jpg")},
                   {"name": "line", "params": {"x": 0, "y": 0, "x1": 29, "y1": 19},
                    "save": save("drawn")},
                   {"name": "pad", "params": {"size": 2, "color": "#ff000000"},
                    "save": save("padded")}]}
        results = self.submit(job).json["results"]
        blank = {i["image_identifier"]: i.get("is_blank") for i in results["images"]}
        self.assertEqual(blank, {"plain": True, "unasked": None, "plain-jpeg": True,
                                 "drawn": None, "padded": None}, results)
        self.assertEqual(list(results["images"][0]),
                         ["image_identifier", "s3_url", "meta", "is_blank"])
        job = {"src": {"name": "canvas", "width": 30, "height": 20, "color": "#ff000000"},
               "job_id": "blank-2", "postback_url": self.postbacks.url("/pb/blank-2"),
               "functions": [{"name": "no_op", "save": save("clear")},
                             {"name": "pad", "params": {"size": 2, "color": "#00ff0000"},
                              "save": save("clear-padded")}]}
        results = self.submit(job).json["results"]
        self.assertEqual([i.get("is_blank") for i in results["images"]], [True, True])
        # wholly transparent, its hidden colours a gradient: blank
        clear = subprocess.run(
            ["convert", "-size", "30x20", "gradient:red-blue", "-alpha", "set", "-channel", "A",
             "-evaluate", "set", "0", "+channel", "PNG32:-"],
            stdout=subprocess.PIPE, check=True, timeout=60).stdout
        job = {"src": self.src.add("/clear.png", clear), "job_id": "blank-4",
               "postback_url": self.postbacks.url("/pb/blank-4"),
               "functions": [{"name": "no_op", "save": save("hidden")}]}
        results = self.submit(job).json["results"]
        self.assertEqual([i.get("is_blank") for i in results["images"]], [True])
        job = {"src": self.serve_photo(), "job_id": "blank-3",
               "postback_url": self.postbacks.url("/pb/blank-3"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 40},
                              "save": save("photo")}]}
        self.assert_success(self.submit(job), "blank-3", ["photo"])

    def test_failed_upload_does_not_stop_the_others(self):
        job = {"src": self.serve_photo(), "job_id": "partial-1",
               "postback_url": self.postbacks.url("/pb/partial-1"),
               "functions": [
                   {"name": "resize_to_fit", "params": {"width": 32},
                    "save": {"image_identifier": "bad", "s3_destination": {
                        "bucket": "no-such-bucket", "key": "x/bad.jpg"}}},
                   {"name": "resize_to_fit", "params": {"width": 48},
                    "save": {"image_identifier": "good", "s3_destination": {
                        "bucket": DEST_BUCKET, "key": "x/good.png"}}}]}
        pb = self.submit(job)
        results = pb.json["results"]
        self.assertEqual(results["original_meta"], {"width": 2560, "height": 1600})
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["good"])
        self.assertEqual(results["failed_image_identifiers"], ["bad"])
        self.assertEqual(len(results["errors"]), 1, results)
        self.assertNotIn("Image processing failed", results["errors"][0])
        self.fetch(results["images"][0], "PNG", (48, 30))
        self.assertEqual(self.read_result("partial-1"), pb.json)
        self.assert_queue_drained()

    def test_dead_entry_keeps_the_first_failed_upload(self):
        """Of two refused uploads, the job's dead entry (what `pixq dead list` shows) carries
        the first error, the one its postback lists first."""
        job = {"src": self.serve_photo(), "job_id": "partial-2",
               "postback_url": self.postbacks.url("/pb/partial-2"),
               "functions": [
                   {"name": "resize_to_fit", "params": {"width": 32},
                    "save": {"image_identifier": ident, "s3_destination": {
                        "bucket": bucket, "key": "x/%s.jpg" % ident}}}
                   for ident, bucket in (("bad1", "no-such-bucket-1"),
                                         ("bad2", "no-such-bucket-2"))]}
        results = self.submit(job).json["results"]
        self.assertEqual(results["failed_image_identifiers"], ["bad1", "bad2"])
        errors = results["errors"]
        self.assertEqual(len(errors), 2, results)
        self.assertIn("no-such-bucket-1", errors[0])
        dead = self.wait_until(lambda: [json.loads(d) for d in self.redis.lrange(
            self.key("dead"), 0, -1) if json.loads(d).get("job_id") == "partial-2"], 10,
            "the dead entry")
        self.assertEqual(dead[0]["error"], errors[0])


class SourcesTest(BlitlineTestCase):
    """pre_process (job, &identifier, move_original) and original_meta from the source."""

    def test_pre_process_job_reference_and_move_original(self):
        self.src.add("/quadrants.png", image_file("quadrants-64x64.png"))
        job = {"src": "&small", "job_id": "pre-1",
               "postback_url": self.postbacks.url("/pb/pre-1"),
               "pre_process": [
                   {"job": {"src": self.src.url("/quadrants.png"), "functions": [
                       {"name": "resize_to_fit", "params": {"width": 32},
                        "save": {"image_identifier": "small", "extension": ".png"}},
                       {"name": "no_op", "save": {"image_identifier": "kept", "s3_destination": {
                           "bucket": DEST_BUCKET, "key": "pre/kept.png"}}}]}},
                   {"move_original": {"s3_destination": {
                       "bucket": DEST_BUCKET, "key": "orig/small.jpg",
                       "headers": {"x-amz-meta-kind": "original"}}}}],
               "functions": [{"name": "no_op", "save": {
                   "image_identifier": "main", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": "main/out.png"}}}]}
        pb = self.submit(job)
        # the pre_process output with a destination is uploaded, and listed no more than in
        # Blitline, whose worker ran that job apart and kept only its images for references:
        # images[0] is the main job's first save
        images = self.assert_success(pb, "pre-1", ["main"], original=(32, 32))
        status, _, kept = self.s3.get_object(DEST_BUCKET, "pre/kept.png")
        self.assertEqual(status, 200)
        self.assert_image(kept, "PNG", 64, 64)
        body = self.fetch(images[0], "PNG", (32, 32))
        self.assert_near(pixels(body, [(4, 4)])[0], (255, 0, 0, 255), 2, "the reference")
        # move_original copied the job's src (the PNG "&small"), converted to the key's JPEG
        status, headers, moved = self.s3.get_object(DEST_BUCKET, "orig/small.jpg")
        self.assertEqual(status, 200)
        self.assert_image(moved, "JPEG", 32, 32)
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(headers.get("content-type"), "image/jpeg")
        self.assertEqual(headers.get("x-amz-meta-kind"), "original")
        self.assertEqual(self.src.requests("/quadrants.png"), 1)

    def test_every_exif_orientation_upright(self):
        """A JPEG is turned upright by its EXIF orientation, each of the eight: only 6 and 8 were
        ever sent, and a worker that left 2 (mirrored) as stored passed every test. The source
        is 40x20, dark in its stored top-left quadrant; the PNG says where that quadrant went."""
        plain = subprocess.run(["convert", "-size", "40x20", "xc:white", "-fill", "black",
                                "-draw", "rectangle 0,0 19,9", "jpg:-"], stdout=subprocess.PIPE,
                               check=True, timeout=60).stdout
        # where the dark quadrant is once upright: (left, top) of four; 5 to 8 are 20x40
        expected = {1: (0, 0), 2: (1, 0), 3: (1, 1), 4: (0, 1),
                    5: (0, 0), 6: (1, 0), 7: (1, 1), 8: (0, 1)}
        fns = [{"name": "no_op", "save": {"image_identifier": "up", "extension": ".png"}}]
        for orientation, (right, bottom) in expected.items():
            with self.subTest(orientation=orientation):
                ifd = struct.pack(">HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + bytes(4)
                exif = b"Exif\0\0" + b"MM\0*" + struct.pack(">I", 8) + ifd
                app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif
                src = self.src.add("/orient%d.jpg" % orientation, plain[:2] + app1 + plain[2:])
                job_id = "orient-%d" % orientation
                job = {"src": src, "job_id": job_id, "functions": fns,
                       "postback_url": self.postbacks.url("/pb/" + job_id)}
                image = self.submit(job).json["results"]["images"][0]
                w, h = (40, 20) if orientation <= 4 else (20, 40)
                out = self.fetch(image, "PNG", (w, h))
                quadrants = [(x * w // 2 + w // 4, y * h // 2 + h // 4)
                             for y in (0, 1) for x in (0, 1)]
                dark = [p[0] < 128 for p in pixels(out, quadrants)]
                self.assertEqual(dark, [(x, y) == (right, bottom) for y in (0, 1)
                                        for x in (0, 1)])

    def test_reference_is_the_image_not_its_encoding(self):
        """"&identifier" is the image the pre_process job saved, not its encoded file: a save
        without extension is a JPEG, yet the reference keeps its transparency."""
        logo = self.src.add("/logo.png", image_file("draw-logo-40x30.png"))
        job = {"src": "&logo", "job_id": "ref-alpha",
               "postback_url": self.postbacks.url("/pb/ref-alpha"),
               "pre_process": {"job": {"src": logo, "functions": [
                   {"name": "no_op", "save": {"image_identifier": "logo"}}]}},
               "functions": [
                   {"name": "no_op", "save": {"image_identifier": "same", "extension": ".png"}},
                   {"name": "background_color", "params": {"color": "#00ff00"}, "functions": [
                       {"name": "composite", "params": {"src": "&logo"},
                        "save": {"image_identifier": "over", "extension": ".png"}}]}]}
        pb = self.submit(job)
        images = self.assert_success(pb, "ref-alpha", ["same", "over"], original=(40, 30))
        same = pixels(self.fetch(images[0], "PNG", (40, 30)), [(0, 0), (20, 15)])
        self.assertEqual(same, [(0, 0, 0, 0), (255, 0, 0, 255)])
        over = pixels(self.fetch(images[1], "PNG", (40, 30)), [(0, 0), (20, 15)])
        self.assertEqual(over, [(0, 255, 0, 255), (255, 0, 0, 255)])

    def test_reference_as_saved(self):
        """A referenced src is what the pre_process save wrote: stripped of its EXIF (no
        date_created), hashed and moved as the stored bytes, not re-encoded."""
        src = self.src.add("/orient6.jpg", image_file("orient6-400x300.jpg"))
        job = {"src": "&r", "job_id": "ref-saved", "hash": "md5", "extended_metadata": True,
               "postback_url": self.postbacks.url("/pb/ref-saved"),
               "pre_process": [
                   {"job": {"src": src, "functions": [
                       {"name": "resize_to_fit", "params": {"width": 100}, "save": {
                           "image_identifier": "r", "s3_destination": {
                               "bucket": DEST_BUCKET, "key": "pre/r.jpg"}}},
                       {"name": "no_op", "save": {"image_identifier": "unused"}}]}},
                   {"move_original": {"s3_destination": {
                       "bucket": DEST_BUCKET, "key": "orig/r.jpg"}}}],
               "functions": [{"name": "no_op", "save": {"image_identifier": "m"}}]}
        results = self.submit(job).json["results"]
        status, _, stored = self.s3.get_object(DEST_BUCKET, "pre/r.jpg")
        self.assertEqual(status, 200)
        meta = results["original_meta"]
        self.assertEqual((meta["width"], meta["height"]), (100, 133))  # as oriented
        self.assertNotIn("date_created", meta)
        self.assertEqual(meta["hash"], hashlib.md5(stored).hexdigest())
        self.assertEqual(meta["filesize"], len(stored))
        self.assertEqual(self.s3.get_object(DEST_BUCKET, "orig/r.jpg")[2], stored)
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["m"])

    def test_url_with_spaces_and_utf8(self):
        """A src URL as users write it (a space, UTF-8 and brackets in the file name) is fetched
        with those bytes percent-encoded, as Blitline's worker did; other characters are sent as
        written. Brackets went raw (a Tomcat answers 400)."""
        stored = "/my%20photo%20%C3%A9t%C3%A9%5B1%5D.jpg"
        url = self.src.add(stored, image_file("autumn-320x200.jpg")).replace(
            stored, "/my photo \u00e9t\u00e9[1].jpg")
        job = {"src": url, "job_id": "url-1", "postback_url": self.postbacks.url("/pb/url-1"),
               "functions": [{"name": "no_op", "save": {"image_identifier": "u"}}]}
        self.assert_success(self.submit(job), "url-1", ["u"], original=(320, 200))
        self.assertEqual(self.src.requests(), {stored: 1})

    def test_malformed_url_is_not_retried(self):
        url = self.src.url("/x.jpg").rsplit(":", 1)[0] + ":99999/x.jpg"
        job = {"src": url, "job_id": "url-2", "postback_url": self.postbacks.url("/pb/url-2"),
               "functions": [{"name": "no_op", "save": {"image_identifier": "u"}}]}
        pb = self.submit(job)
        self.assert_failure(pb, "url-2", "Failed to download", ["u"])
        self.assertEqual(self.programs[0].log_events("job_retry"), [])

    def test_move_original_converts(self):
        src = self.src.add("/orient6.jpg", image_file("orient6-400x300.jpg"))
        job = {"src": src, "job_id": "move-1", "postback_url": self.postbacks.url("/pb/move-1"),
               "pre_process": {"move_original": {"s3_destination": {
                   "bucket": DEST_BUCKET, "key": "orig/o.png"}}},
               "functions": [{"name": "no_op", "save": {"image_identifier": "o"}}]}
        pb = self.submit(job)
        self.assert_success(pb, "move-1", ["o"], original=(400, 300), exact_meta=False)
        status, headers, body = self.s3.get_object(DEST_BUCKET, "orig/o.png")
        self.assertEqual(status, 200)
        self.assert_image(body, "PNG", 400, 300)  # untouched: not auto-oriented
        self.assertEqual(self.src.requests("/orient6.jpg"), 1)  # fetched once for both

    def test_failed_move_original_does_not_stop_the_job(self):
        """As in Blitline, move_original's failed upload is an error in the postback; the
        functions still run and their outputs still go."""
        job = {"src": self.serve_photo(), "job_id": "move-2",
               "postback_url": self.postbacks.url("/pb/move-2"),
               "pre_process": {"move_original": {"s3_destination": {
                   "bucket": "no-such-bucket", "key": "orig/o.jpg"}}},
               "functions": [{"name": "resize_to_fit", "params": {"width": 20},
                              "save": {"image_identifier": "o"}}]}
        results = self.submit(job).json["results"]
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["o"])
        self.assertEqual(results["original_meta"], {"width": 2560, "height": 1600})
        self.assertEqual(len(results["errors"]), 1, results)
        self.assertTrue(results["errors"][0].startswith("move_original: "), results)
        self.assertIn("NoSuchBucket", results["errors"][0])
        self.assertNotIn("failed_image_identifiers", results)
        self.fetch(results["images"][0], "JPEG", (20, 13))

    def test_failed_upload_of_a_pre_process_save_does_not_stop_the_job(self):
        """README: a pre_process job's save with an s3_destination is uploaded but not listed in
        images, and its failed upload is an error, as move_original's: the main job still runs
        and its output goes and is images[0]; the save's identifier is named in
        failed_image_identifiers, as a failed upload's is (step 4)."""
        self.src.add("/quadrants.png", image_file("quadrants-64x64.png"))
        job = {"src": "&small", "job_id": "pre-fail",
               "postback_url": self.postbacks.url("/pb/pre-fail"),
               "pre_process": [{"job": {"src": self.src.url("/quadrants.png"), "functions": [
                   {"name": "resize_to_fit", "params": {"width": 32}, "save": {
                       "image_identifier": "small", "s3_destination": {
                           "bucket": "no-such-bucket", "key": "pre/small.png"}}}]}}],
               "functions": [{"name": "no_op", "save": {
                   "image_identifier": "main", "s3_destination": {
                       "bucket": DEST_BUCKET, "key": "main/pre-fail.png"}}}]}
        results = self.submit(job).json["results"]
        self.assertEqual([i["image_identifier"] for i in results["images"]], ["main"], results)
        self.assertEqual(len(results.get("errors", [])), 1, results)
        self.assertIn("NoSuchBucket", results["errors"][0])
        self.assertEqual(results["failed_image_identifiers"], ["small"], results)
        body = self.fetch(results["images"][0], "PNG", (32, 32))
        self.assert_near(pixels(body, [(4, 4)])[0], (255, 0, 0, 255), 2, "the reference")

    def test_original_meta_from_exif_and_hash(self):
        src = self.src.add("/orient6.jpg", image_file("orient6-400x300.jpg"))
        job = {"src": src, "job_id": "meta-1", "postback_url": self.postbacks.url("/pb/meta-1"),
               "hash": "md5", "get_exif": True,
               "functions": [{"name": "no_op", "save": {"image_identifier": "o"}}]}
        pb = self.submit(job)
        results = pb.json["results"]
        meta = results["original_meta"]
        self.assertEqual((meta["width"], meta["height"]), (400, 300))
        self.assertEqual(meta["date_created"], "2014:08:02 20:17:55")
        # v 1.21 (absent v) is above 1.19: Blitline's ISO form too
        self.assertEqual(meta["iso_date_created"], "2014-08-02T20:17:55.0000+00:00")
        self.assertAlmostEqual(meta["lat"], 52.520094444, places=6)
        self.assertAlmostEqual(meta["lng"], -13.41, places=6)
        self.assertEqual(meta["hash"], "4fd6ab448e1b5fe096713552b9f7dcc8")
        self.assertEqual(meta["original_exif"]["Orientation"], "6")
        self.assertEqual(results["images"][0]["meta"], {"width": 300, "height": 400})
        self.fetch(results["images"][0], "JPEG", (300, 400))
        self.assertEqual(meta["density_info"],
                         {"density_x": 72, "density_y": 72, "units": "Undefined"})
        self.assertEqual(meta["filesize"], len(image_file("orient6-400x300.jpg")))
        job.update(job_id="meta-2", v=1.19, postback_url=self.postbacks.url("/pb/meta-2"))
        meta = self.submit(job).json["results"]["original_meta"]
        self.assertEqual(meta["date_created"], "2014:08:02 20:17:55")
        self.assertNotIn("iso_date_created", meta)  # not before 1.20

    def test_no_functions_is_a_metadata_job(self):
        """`"functions": []` is a job, as in Blitline (its worker checked only that the key was
        there): the source is fetched and described, nothing is made, nothing fails. Without
        the key the job fails as Blitline's did."""
        src = self.src.add("/orient6.jpg", image_file("orient6-400x300.jpg"))
        job = {"src": src, "job_id": "meta-only", "postback_url": self.postbacks.url("/pb/meta-only"),
               "hash": "md5", "get_exif": True, "functions": []}
        results = self.submit(job).json["results"]
        self.assertEqual(results["images"], [])
        self.assertNotIn("errors", results)
        self.assertNotIn("failed_image_identifiers", results)
        meta = results["original_meta"]
        self.assertEqual((meta["width"], meta["height"], meta["hash"]),
                         (400, 300, "4fd6ab448e1b5fe096713552b9f7dcc8"))
        self.assertEqual(meta["original_exif"]["Orientation"], "6")
        del job["functions"]
        job.update(job_id="meta-none", postback_url=self.postbacks.url("/pb/meta-none"))
        results = self.submit(job).json["results"]
        self.assertEqual(results["errors"], ["Image processing failed. Functions are required, "
                                             "or we aren't doing anything (null op)"])

    def test_postback_url_save_writes_the_result_to_s3(self):
        """postback_url as {"save": {"s3_destination": ...}} (Blitline's worker took it): the
        result JSON is written to that object, application/json, with the job's headers, and
        nothing is POSTed; a failed job's result goes there too. Before, such a job went to the
        dead list with 'postback_url must be a string', and its owner was never told. The job
        may give the object's Content-Type as JSON's (it was refused as no image's type)."""
        src = self.src.add("/orient6.jpg", image_file("orient6-400x300.jpg"))
        typed = "application/json; charset=utf-8"

        def job(job_id, source):
            headers = {"x-amz-meta-kind": "result"}
            if job_id == "to-s3-fail":
                headers["Content-Type"] = typed
            return {"src": source, "job_id": job_id, "postback_url": {"save": {
                        "s3_destination": {"bucket": DEST_BUCKET, "key": "results/%s.json" % job_id,
                                           "headers": headers}}},
                    "functions": [{"name": "no_op", "save": {
                        "image_identifier": "o", "s3_destination": {
                            "bucket": DEST_BUCKET, "key": "out/%s.jpg" % job_id}}}]}

        for job_id, source in (("to-s3", src), ("to-s3-fail", self.src.url("/missing.jpg"))):
            self.push_job(job(job_id, source))
            stored = self.read_result(job_id, timeout=30)
            self.wait_until(lambda: self.s3.get_object(
                DEST_BUCKET, "results/%s.json" % job_id)[0] == 200, 10, "the result object")
            status, headers, body = self.s3.get_object(DEST_BUCKET, "results/%s.json" % job_id)
            headers = {k.lower(): v for k, v in headers.items()}
            self.assertEqual(headers.get("content-type"),
                             typed if job_id == "to-s3-fail" else "application/json")
            self.assertEqual(headers.get("x-amz-meta-kind"), "result")
            self.assertEqual(json.loads(body), stored)
            self.assertEqual(stored["results"]["job_id"], job_id)
        ok = json.loads(self.s3.get_object(DEST_BUCKET, "results/to-s3.json")[2])["results"]
        self.assertEqual([i["image_identifier"] for i in ok["images"]], ["o"])
        failed = json.loads(self.s3.get_object(DEST_BUCKET, "results/to-s3-fail.json")[2])
        self.assertIn("Failed to download", failed["results"]["errors"][0])
        self.assertEqual(self.postbacks.postbacks, [])
        # a save that names no S3 object is refused, saying what postback_url may be

        def dead(job_id):
            entries = [json.loads(d) for d in self.redis.lrange(self.key("dead"), 0, -1)]
            return [d for d in entries if d.get("job_id") == job_id]
        bad = job("to-s3-bad", src)
        bad["postback_url"] = {"save": {"image_identifier": "x"}}
        self.push_job(bad)
        self.wait_until(lambda: dead("to-s3-bad"), 20, "the dead entry")
        self.assertIn("postback_url must be a URL, or {\"save\": {\"s3_destination\"",
                      dead("to-s3-bad")[0]["error"])

    def test_get_exif_density_info_and_filesize(self):
        """get_exif returns, besides original_exif, the source's density_info and filesize
        (Blitline's metadata example: {"density_x": 72, "density_y": 72, "units":
        "PixelsPerInch"}); without it neither is there."""
        job = {"src": self.serve_photo(), "job_id": "dens-1", "get_exif": "true",
               "postback_url": self.postbacks.url("/pb/dens-1"),
               "functions": [{"name": "resize_to_fit", "params": {"width": 20},
                              "save": {"image_identifier": "d"}}]}
        meta = self.submit(job).json["results"]["original_meta"]
        self.assertEqual(meta["density_info"],
                         {"density_x": 299, "density_y": 299, "units": "PixelsPerInch"})
        self.assertEqual(meta["filesize"], len(corpus(PHOTO[1])))
        self.assertEqual(meta["original_exif"], {})
        job.update(job_id="dens-2", get_exif=False, postback_url=self.postbacks.url("/pb/dens-2"))
        self.assert_success(self.submit(job), "dens-2", ["d"])  # exactly width and height


def exiftool(data, *options):
    """The tags exiftool (an independent reader) finds in an image: {"GROUP:Name": value}."""
    r = subprocess.run(["exiftool", "-j", "-G1", "-a", *options, "-"], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    return json.loads(r.stdout)[0]


class SetExifTest(BlitlineTestCase):
    """save.set_exif (BLITLINE.md 5): EXIF and IPTC tags written into the output, read back by
    exiftool, whose tag names Blitline took."""

    def save(self, ident, key, tags, **extra):
        return {"name": "resize_to_fit", "params": {"width": 64}, "save": dict(
            image_identifier=ident, set_exif=tags,
            s3_destination={"bucket": DEST_BUCKET, "key": "tags/" + key}, **extra)}

    def test_tags_written_into_jpeg_png_and_webp(self):
        """The tags are written whether or not the save keeps the source's metadata (stripped
        first, then written); a PNG holds EXIF in eXIf and IPTC as text, a WebP EXIF only."""
        tags = {"Copyright": "(c) 2026 \u00c5se", "Artist": "Ann", "ModifyDate":
                "2026:12:01 10:11:12", "iptc:keywords": ["one", "two", "tr\u00e9s"],
                "ObjectName": "An object", "Caption-Abstract": "line 1\nline 2",
                "DateCreated": "2026:12:01", "City": 42}
        job = {"src": self.serve_photo(), "job_id": "tags-1",
               "postback_url": self.postbacks.url("/pb/tags-1"), "functions": [
                   self.save("jpg", "a.jpg", tags),
                   self.save("png", "b.png", tags),
                   self.save("webp", "c.webp", {"Copyright": "webp (c)", "Software": "pixq"})]}
        images = self.assert_success(self.submit(job), "tags-1", ["jpg", "png", "webp"])
        for img, fmt in zip(images[:2], ("JPEG", "PNG")):
            got = exiftool(self.fetch(img, fmt, (64, 40)))
            self.assertEqual(got.get("IFD0:Copyright"), "(c) 2026 \u00c5se", fmt)
            self.assertEqual(got.get("IFD0:Artist"), "Ann", fmt)
            self.assertEqual(got.get("IFD0:ModifyDate"), "2026:12:01 10:11:12", fmt)
            self.assertEqual(got.get("IPTC:Keywords"), ["one", "two", "tr\u00e9s"], fmt)
            self.assertEqual(got.get("IPTC:ObjectName"), "An object", fmt)
            self.assertEqual(got.get("IPTC:Caption-Abstract"), "line 1\nline 2", fmt)
            self.assertEqual(got.get("IPTC:DateCreated"), "2026:12:01", fmt)
            self.assertEqual(str(got.get("IPTC:City")), "42", fmt)
            self.assertEqual(got.get("IPTC:CodedCharacterSet"), "UTF8", fmt)
            # the photo's own EXIF was stripped; the new IFD0 holds the tags EXIF requires there,
            # as exiftool writes them into a file without EXIF: the resolution the file gives
            # (JFIF's, pHYs'), and for a JPEG YCbCrPositioning
            self.assertEqual(got.get("IFD0:XResolution"), got.get("IFD0:YResolution"), fmt)
            self.assertEqual(got.get("IFD0:ResolutionUnit"), "inches", fmt)
            if fmt == "JPEG":
                self.assertEqual(got.get("IFD0:XResolution"), got.get("JFIF:XResolution"))
                self.assertEqual(got.get("IFD0:ResolutionUnit"), got.get("JFIF:ResolutionUnit"))
                self.assertEqual(got.get("IFD0:YCbCrPositioning"), "Centered")
                self.assertEqual(exiftool(self.fetch(img, fmt, (64, 40)), "-validate",
                                          "-warning").get("ExifTool:Validate"), "OK")
            else:
                self.assertEqual(got.get("PNG-pHYs:PixelUnits"), "meters")
                self.assertEqual(got.get("IFD0:XResolution"),
                                 round(got.get("PNG-pHYs:PixelsPerUnitX") * 0.0254))
                self.assertNotIn("IFD0:YCbCrPositioning", got)
        got = exiftool(self.fetch(images[2], "WEBP", (64, 40)))
        self.assertEqual(got.get("IFD0:Copyright"), "webp (c)")
        self.assertEqual(got.get("IFD0:Software"), "pixq")

    def test_tags_merged_into_the_kept_metadata(self):
        """With save_metadata the source's EXIF and IPTC stay, the tags set replace theirs, ""
        and null delete one; Photoshop's IPTC digest, which would no longer match, goes."""
        source = subprocess.run(
            ["exiftool", "-Keywords=old1", "-Keywords=old2", "-ObjectName=Old name",
             "-City=Bergen", "-Copyright=Old (c)", "-Make=Cam", "-Model=X1",
             "-DateTimeOriginal=2014:04:29 14:25:26", "-IPTCDigest=new", "-o", "-", "-"],
            input=image_file("autumn-320x200.jpg"), stdout=subprocess.PIPE,
            check=True, timeout=60).stdout
        before = exiftool(source)
        self.assertEqual(before.get("Photoshop:IPTCDigest"), before.get("File:CurrentIPTCDigest"))
        tags = {"Keywords": "new", "ObjectName": "", "Copyright": "New (c)", "Make": None}
        job = {"src": self.src.add("/tagged.jpg", source), "job_id": "tags-2",
               "postback_url": self.postbacks.url("/pb/tags-2"), "functions": [
                   self.save("kept", "kept.jpg", tags, save_metadata=True),
                   self.save("png", "kept.png", tags, save_metadata=True)]}
        images = self.assert_success(self.submit(job), "tags-2", ["kept", "png"],
                                     original=(320, 200), exact_meta=False)
        for img, fmt in zip(images, ("JPEG", "PNG")):
            data = self.fetch(img, fmt, (64, 40))
            got = exiftool(data)
            self.assertEqual(got.get("IFD0:Copyright"), "New (c)", fmt)
            self.assertNotIn("IFD0:Make", got, fmt)
            self.assertEqual(got.get("IFD0:Model"), "X1", fmt)
            self.assertEqual(got.get("ExifIFD:DateTimeOriginal"), "2014:04:29 14:25:26", fmt)
            self.assertEqual(got.get("IPTC:Keywords"), "new", fmt)
            self.assertNotIn("IPTC:ObjectName", got, fmt)
            self.assertEqual(got.get("IPTC:City"), "Bergen", fmt)
            self.assertNotIn("Photoshop:IPTCDigest", got, fmt)
            # a PNG's eXIf chunk comes after its pixels, where ImageMagick writes it (README)
            allowed = {"", "[minor] Text/EXIF chunk(s) found after PNG IDAT (may be ignored by "
                           "some readers)"} if fmt == "PNG" else {""}
            self.assertIn(got.get("ExifTool:Warning", ""), allowed, fmt)
            # what was deleted or replaced is gone from the file, not only from its directory
            # (nor left in the PNG text ImageMagick writes beside the EXIF block)
            for gone in (b"Cam\0", b"Old (c)", b"Old name", b"old1"):
                self.assertNotIn(gone, data, fmt)

    def test_include_iptc(self):
        """include_iptc gives the source's IPTC in original_meta.iptc, by the names set_exif
        takes; a source without IPTC gives {}, a job without include_iptc no iptc at all."""
        source = subprocess.run(
            ["exiftool", "-Keywords=k\u00e91", "-Keywords=k2", "-ObjectName=Old name",
             "-City=Bergen", "-DateCreated=2014:04:29", "-charset", "iptc=UTF8",
             "-CodedCharacterSet=UTF8", "-o", "-", "-"],
            input=image_file("autumn-320x200.jpg"), stdout=subprocess.PIPE,
            check=True, timeout=60).stdout
        for n, (src, include, want) in enumerate((
                (source, True, {"ObjectName": "Old name", "Keywords": ["k\u00e91", "k2"],
                                "City": "Bergen", "DateCreated": "2014:04:29"}),
                (image_file("autumn-320x200.jpg"), True, {}),
                (source, False, None))):
            job_id = "iptc-%d" % n
            job = {"src": self.src.add("/iptc-%d.jpg" % n, src), "job_id": job_id,
                   "include_iptc": include, "postback_url": self.postbacks.url("/pb/" + job_id),
                   "functions": [{"name": "no_op", "save": {"image_identifier": "s",
                                                            "skip": True}}]}
            meta = self.submit(job).json["results"]["original_meta"]
            self.assertEqual(meta.get("iptc"), want, n)

    def test_a_reference_has_the_tags(self):
        """An image a pre_process job saved with tags is read with them ("&identifier"): its
        original_exif names them, and a save that keeps the metadata keeps them."""
        job = {"src": "&pre", "job_id": "tags-3", "get_exif": True,
               "postback_url": self.postbacks.url("/pb/tags-3"),
               "pre_process": [{"job": {"src": self.serve_photo(), "functions": [
                   self.save("pre", "pre.jpg", {"Copyright": "PRE (c)", "Keywords": ["pk"]})]}}],
               "functions": [self.save("main", "main.jpg", {}, save_metadata=True)]}
        results = self.submit(job).json["results"]
        self.assertEqual(results["original_meta"]["original_exif"].get("Copyright"), "PRE (c)")
        got = exiftool(self.fetch(results["images"][-1], "JPEG", (64, 40)))
        self.assertEqual((got.get("IFD0:Copyright"), got.get("IPTC:Keywords")), ("PRE (c)", "pk"))

    def test_bad_tags_fail_the_job_before_the_fetch(self):
        """An unknown tag, a value IPTC cannot hold, or tags the output's format cannot hold
        fail the job at once, naming the save and the tag."""
        for n, (save, error) in enumerate((
                (self.save("t", "t.jpg", {"Title": "x"}),
                 "set_exif of 't': 'Title' is not a tag pixq writes"),
                (self.save("t", "t.jpg", {"ObjectName": "x" * 65}),
                 "set_exif of 't': ObjectName is 65 bytes, more than IPTC allows (64)"),
                (self.save("t", "t.webp", {"Keywords": ["k"]}),
                 "set_exif of 't': a webp output holds no IPTC tags (Keywords)"),
                (self.save("t", "t.gif", {"Copyright": "c"}),
                 "set_exif of 't': a gif output holds no EXIF tags (Copyright)"))):
            job_id = "tags-bad-%d" % n
            job = {"src": self.serve_photo(), "job_id": job_id,
                   "postback_url": self.postbacks.url("/pb/" + job_id), "functions": [save]}
            self.assert_failure(self.submit(job), job_id, "Image processing failed. " + error,
                                ["t"])
        self.assertEqual(self.src.requests(), {})  # refused before downloading anything


class AddProfileTest(BlitlineTestCase):
    """add_profile (a function of Blitline's worker): the ICC profile at a URL, fetched as a
    source is (the same guards, limits and cache), converts the image to it."""

    worker_env_extra = {"PIXQ_MAX_PROFILE_BYTES": "4096"}

    def test_profile_fetched_and_applied(self):
        icc = self.src.add("/profiles/wide.icc", image_file("wide-gamut.icc"))
        job = {"src": self.src.add("/srgb.png", image_file("icc-srgb-48x32.png")),
               "job_id": "icc-1", "postback_url": self.postbacks.url("/pb/icc-1"), "functions": [
                   {"name": "add_profile", "params": {"src": icc}, "save": {
                       "image_identifier": "wide", "s3_destination": {
                           "bucket": DEST_BUCKET, "key": "icc/wide.png"}},
                    "functions": [{"name": "add_profile", "params": {"src": icc},
                                   "save": {"image_identifier": "again", "extension": "png"}}]}]}
        images = self.assert_success(self.submit(job), "icc-1", ["wide", "again"],
                                     original=(48, 32))
        for img in images:
            png = self.fetch(img, "PNG", (48, 32))
            self.assertEqual(identify_escape(png, "%[icc:description]"),
                             "pixq wide-gamut test profile")
            self.assertEqual(identify_escape(png, "%[pixel:p{1,1}]"), "srgb(172,53,53)")
        self.assertEqual(self.src.requests("/profiles/wide.icc"), 1)  # fetched once a job

    def test_profile_too_large_or_broken_fails_the_job(self):
        """A profile over PIXQ_MAX_PROFILE_BYTES (it goes into every output), one lcms cannot
        convert from (ImageMagick would tag the image with it unopened), and one without the
        "acsp" signature at byte 36 (no ICC profile, its size field right), fail the job."""
        good = image_file("wide-gamut.icc")
        count = struct.unpack(">I", good[128:132])[0]
        table = [good[132 + 12 * i:144 + 12 * i] for i in range(count)]
        tags = {entry[:4]: struct.unpack(">I", entry[4:8])[0] for entry in table}
        broken = bytearray(good)
        broken[tags[b"rXYZ"]:tags[b"rXYZ"] + 4] = b"\xff\xfe\x80\x81"  # no tag type
        unsigned = bytearray(good)
        unsigned[36:40] = b"pixq"  # the size in bytes 0-3 still matches
        for n, (icc, error) in enumerate((
                (b"x" * 5000, "the profile is 5000 bytes, more than PIXQ_MAX_PROFILE_BYTES "
                              "(4096)"),
                (bytes(broken), "not a usable ICC profile"),
                (bytes(unsigned), "not an ICC profile"))):
            job_id = "icc-bad-%d" % n
            job = {"src": self.serve_photo(), "job_id": job_id,
                   "postback_url": self.postbacks.url("/pb/" + job_id), "functions": [
                       {"name": "add_profile",
                        "params": {"src": self.src.add("/bad-%d.icc" % n, icc)},
                        "save": {"image_identifier": "p"}}]}
            self.assert_failure(self.submit(job), job_id, "Image processing failed. Invalid "
                                "parameter 'src' for function 'add_profile': " + error, ["p"])

    def test_profile_of_exactly_the_limit(self):
        """PIXQ_MAX_PROFILE_BYTES is the largest profile taken: the wide-gamut profile padded
        to 4096 bytes (its size field saying so) is applied, one byte more is refused."""
        good = image_file("wide-gamut.icc")
        for n, size in enumerate((4096, 4097)):
            icc = struct.pack(">I", size) + good[4:] + b"\0" * (size - len(good))
            job_id = "icc-limit-%d" % n
            job = {"src": self.src.add("/srgb-%d.png" % n, image_file("icc-srgb-48x32.png")),
                   "job_id": job_id, "postback_url": self.postbacks.url("/pb/" + job_id),
                   "functions": [{"name": "add_profile",
                                  "params": {"src": self.src.add("/limit-%d.icc" % n, icc)},
                                  "save": {"image_identifier": "p", "extension": "png"}}]}
            if size == 4096:
                self.assert_success(self.submit(job), job_id, ["p"], original=(48, 32))
                continue
            self.assert_failure(self.submit(job), job_id, "Image processing failed. Invalid "
                                "parameter 'src' for function 'add_profile': the profile is "
                                "4097 bytes, more than PIXQ_MAX_PROFILE_BYTES (4096)", ["p"])

    def test_missing_profile_fails_the_job(self):
        job = {"src": self.serve_photo(), "job_id": "icc-2",
               "postback_url": self.postbacks.url("/pb/icc-2"), "functions": [
                   {"name": "add_profile", "params": {"src": self.src.url("/gone.icc")},
                    "save": {"image_identifier": "p"}}]}
        pb = self.submit(job)
        self.assert_failure(pb, "icc-2", "Image processing failed. add_profile: Failed to "
                            "download", ["p"])
        self.assertIn("404", pb.json["results"]["errors"][0])


class ArrayTest(BlitlineTestCase):
    """A JSON array pushed by a plain Redis client is several jobs (BLITLINE.md 1.1)."""

    def test_array_of_jobs(self):
        src = self.serve_photo()
        jobs = [{"src": src, "job_id": "arr-%d" % i,
                 "postback_url": self.postbacks.url("/pb/arr-%d" % i),
                 "functions": [{"name": "resize_to_fit", "params": {"width": 10 * i},
                                "save": {"image_identifier": "a%d" % i}}]} for i in (1, 2)]
        self.push_job(json.dumps(jobs))
        for i in (1, 2):
            pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/arr-%d" % i)
            images = self.assert_success(pb, "arr-%d" % i, ["a%d" % i])
            self.assertEqual(images[0]["meta"]["width"], 10 * i)

    def test_array_jobs_run_in_their_order(self):
        """The worker that takes an array queues its jobs at the consumer end, the first one
        nearest: a lone worker starts them in the array's order (20 jobs: more than the 16 the
        split first makes room for), each payload as written (its bytes in its dead entry)."""
        jobs = [{"src": {"name": "canvas", "width": 4, "height": 4}, "job_id": "ord-%02d" % i,
                 "functions": [{"name": "no_op"}]} for i in range(20)]
        jobs[7]["functions"] = [{"name": "no_such_function"}]  # fails: buried as written
        texts = [json.dumps(job, indent=i % 3) for i, job in enumerate(jobs)]
        self.push_job("[%s]" % ", ".join(texts))
        self.wait_until(lambda: len(self.worker.log_events("job_done")) == 19
                        and self.worker.log_events("job_failed"), 30, "the 20 jobs settled")
        self.assertEqual([e["job_id"] for e in self.worker.log_events("job_start")],
                         [job["job_id"] for job in jobs])
        self.assertEqual([e["jobs"] for e in self.worker.log_events("batch_split")], ["20"])
        dead = [json.loads(d) for d in self.redis.lrange(self.key("dead"))]
        self.assertEqual([(d["job_id"], d["job"]) for d in dead], [("ord-07", texts[7])])


    def test_blitline_request_bodies(self):
        """What a Blitline client posted, pushed as it is (BLITLINE.md 1.1 and 11.1): the form
        field json's value as a member, {"json": "<text>"}, or the raw body {"json": {job}} and
        {"json": [jobs]}. Each is its jobs; it was one payload without a src, failed with no
        postback (its postback_url inside)."""
        src = self.serve_photo()

        def job(job_id):
            return {"src": src, "job_id": job_id,
                    "postback_url": self.postbacks.url("/pb/%s" % job_id),
                    "functions": [{"name": "resize_to_fit", "params": {"width": 12},
                                   "save": {"image_identifier": job_id}}]}

        self.push_job(json.dumps({"json": json.dumps(job("body-text"))}))
        self.push_job(json.dumps({"json": job("body-object")}))
        self.push_job(json.dumps({"json": [job("body-arr-1"), job("body-arr-2")]}))
        self.push_job(json.dumps({"json": json.dumps([job("body-text-arr")])}))
        for job_id in ("body-text", "body-object", "body-arr-1", "body-arr-2", "body-text-arr"):
            pb = self.wait_for_postback(POSTBACK_TIMEOUT_S, path="/pb/%s" % job_id)
            images = self.assert_success(pb, job_id, [job_id])
            self.assertEqual(images[0]["meta"]["width"], 12)
        # a member that holds no job: the payload is dead, as a batch that is not JSON is
        self.push_job(json.dumps({"json": 7}))
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 20, "a dead entry")
        dead = json.loads(self.redis.lindex(self.key("dead"), 0))
        self.assertIn('the "json" member of a Blitline request body holds no job', dead["error"])


def result_to_s3_job(job_id, src, bucket, key, functions=None, **extra):
    """A job whose postback_url writes its result JSON to bucket/key."""
    job = {"src": src, "job_id": job_id,
           "postback_url": {"save": {"s3_destination": {"bucket": bucket, "key": key}}},
           "functions": functions if functions is not None else [
               {"name": "no_op", "save": {"image_identifier": "o", "s3_destination": {
                   "bucket": DEST_BUCKET, "key": "out/%s.jpg" % job_id}}}]}
    job.update(extra)
    return job


class ResultToS3BucketsTest(BlitlineTestCase):
    """postback_url's S3 object is in a bucket PIXQ_S3_BUCKETS lets jobs write, as outputs are:
    a job failing on its bucket, or failing before its guard, does not write its failure there
    (a review wrote into a forbidden bucket both ways)."""

    buckets = BlitlineTestCase.buckets + ("forbidden",)
    worker_env_extra = {"PIXQ_S3_BUCKETS": ",".join(BlitlineTestCase.buckets),
                        "PIXQ_POSTBACK_RETRY_DELAYS_S": "1,1"}

    def test_forbidden_bucket_is_given_up_at_once(self):
        """With retry_postback, a bucket PIXQ_S3_BUCKETS refuses is refused on every retry too:
        given up at once (reason=refused), not tried again after each wait."""
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        self.push_job(result_to_s3_job("fb-retry", src, "forbidden", "r/fb-retry.json",
                                       retry_postback=True))
        worker = self.programs[0]
        given_up = self.wait_until(lambda: worker.log_events("postback_given_up"), 20,
                                   "postback_given_up")
        self.assertEqual((given_up[0].get("reason"), given_up[0].get("attempt")),
                         ("refused", "1"), given_up)
        self.assertEqual(given_up[0].get("error"), "bucket 'forbidden' is not allowed")
        # the job's last line (README, Logs): failed on that bucket, its result reaching nobody
        done = self.wait_until(lambda: worker.log_events("job_failed"), 10, "job_failed")
        self.assertEqual([(e["level"], e["postback"]) for e in done], [("warn", "refused")])
        time.sleep(scaled(3))  # both retries would have come by now
        self.assertEqual(worker.log_events("postback_retry"), [])
        failed = worker.log_events("postback_failed")
        self.assertEqual([(e.get("to"), e.get("url")) for e in failed], [("s3", None)])  # README
        self.assertEqual(self.s3.get_object("forbidden", "r/fb-retry.json")[0], 404)

    def test_invalid_bucket_of_an_invalid_job_is_given_up_at_once(self):
        """A job that fails before its guard (functions not an array) still has its result
        written where postback_url says; reading the job checked the key, not the bucket's name
        (the guard does, and it did not run): 'ab' is refused as the guard would, by its name,
        as final (given up at once, not tried again at each wait)."""
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        job = result_to_s3_job("bad-name", src, "ab", "r/bad-name.json", retry_postback=True)
        job["functions"] = "no_op"
        self.push_job(job)
        worker = self.programs[0]
        given_up = self.wait_until(lambda: worker.log_events("postback_given_up"), 20,
                                   "postback_given_up")
        self.assertEqual((given_up[0].get("reason"), given_up[0].get("attempt")),
                         ("refused", "1"), given_up)
        self.assertIn("bucket name 'ab' is not valid", given_up[0].get("error", ""), given_up)

    def test_result_is_not_written_to_a_forbidden_bucket(self):
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        for job_id, functions in (("fb-1", None),
                                  ("fb-2", [{"name": "nope", "save": {"image_identifier": "x"}}])):
            self.push_job(result_to_s3_job(job_id, src, "forbidden", "r/%s.json" % job_id,
                                           functions=functions))
            self.assertIn("errors", self.read_result(job_id, timeout=30)["results"])
            self.wait_until(lambda: [e for e in self.programs[0].log_events("postback_failed")
                                     if e.get("job_id") == job_id], 10, "postback_failed")
            self.assertEqual(self.s3.get_object("forbidden", "r/%s.json" % job_id)[0], 404)
        errors = [e["error"] for e in self.programs[0].log_events("postback_failed")]
        self.assertEqual(errors, ["bucket 'forbidden' is not allowed"] * 2)


class ResultToS3ShapeTest(BlitlineTestCase):
    """The S3 result has the shape of the job's v, as its POST would (a review: the current
    shape whatever v was)."""

    def test_shape_of_the_jobs_version(self):
        for v in (1.17, 1.19):
            job_id = "old-%d" % int(v * 100)
            job = result_to_s3_job(job_id, self.src.url("/missing.jpg"), DEST_BUCKET,
                                   "results/%s.json" % job_id, v=v)
            self.push_job(job)
            self.read_result(job_id, timeout=30)
            self.wait_until(lambda: self.s3.get_object(
                DEST_BUCKET, "results/%s.json" % job_id)[0] == 200, 10, "the result object")
            stored = json.loads(self.s3.get_object(DEST_BUCKET, "results/%s.json" % job_id)[2])
            self.push_job(dict(job, job_id=job_id + "p", content_type_json=True,
                               postback_url=self.postbacks.url("/pb/%sp" % job_id)))
            posted = self.wait_for_postback(30, path="/pb/%sp" % job_id).json
            self.assertNotIn("errors", stored["results"])  # before 1.20: kept in images
            for doc in (stored, posted):
                del doc["results"]["job_id"]
            self.assertEqual(stored, posted)


class ResultToS3TimeTest(BlitlineTestCase):
    """Writing the result takes at most PIXQ_POSTBACK_TIMEOUT_MS, each PUT's timeouts cut to the
    time left (a review: one PUT held the worker PIXQ_S3_TIMEOUT_MS, 12 s against 2), and a
    bucket whose rate limit has no slot within that time is not given one that nobody would use
    (a review saw each try push the bucket's other uploads back a slot)."""

    s3_server = "stub"
    buckets = BlitlineTestCase.buckets + ("results",)
    worker_env_extra = {"PIXQ_POSTBACK_TIMEOUT_MS": "2000", "PIXQ_S3_TIMEOUT_MS": "12000"}

    def test_stalled_put_is_cut_at_the_postback_timeout(self):
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        self.s3.stall("results", 30, methods=("PUT",), count=1)
        t0 = time.time()
        self.push_job(result_to_s3_job("st-1", src, "results", "r/st-1.json"))
        self.read_result("st-1", timeout=60)
        self.assertLess(time.time() - t0, 6)
        errors = [e["error"] for e in self.programs[0].log_events("postback_failed")]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("within PIXQ_POSTBACK_TIMEOUT_MS (2000 ms)", errors[0])

    def test_no_slot_is_taken_past_the_postback_timeout(self):
        key = "pixq:rl:{results}"
        sec, usec = self.redis.execute("TIME")
        tat = str(int(sec) * 1000000 + int(usec) + 30000000)  # a 30 s backlog
        self.redis.execute("HSET", key, "rate", "1", "burst", "0", "tat", tat)
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        self.push_job(result_to_s3_job("bl-1", src, "results", "r/bl-1.json"))
        self.read_result("bl-1", timeout=30)
        self.wait_until(lambda: self.programs[0].log_events("postback_failed"), 10,
                        "postback_failed")
        self.assertEqual(self.redis.execute("HGET", key, "tat"), tat)
        self.assertEqual(self.s3.object("results", "r/bl-1.json"), None)



class ResultToS3RetryTest(BlitlineTestCase):
    """README (Blitline compatibility): a postback_url that is an S3 object is tried again later
    with retry_postback, as a URL is: the write that fails (S3 answering 500 to each of its
    PIXQ_S3_MAX_ATTEMPTS tries, one here) is retried after PIXQ_POSTBACK_RETRY_DELAYS_S and the
    stored result lands in the object; without retry_postback it is written once."""

    s3_server = "stub"
    buckets = BlitlineTestCase.buckets + ("results",)
    worker_env_extra = {"PIXQ_POSTBACK_RETRY_DELAYS_S": "1", "PIXQ_S3_MAX_ATTEMPTS": "1"}

    def test_failed_write_is_retried(self):
        src = self.src.add("/a.jpg", image_file("orient6-400x300.jpg"))
        worker = self.programs[0]
        self.s3.fail("results", 500, "InternalError", count=1, key_prefix="r/rt-1")
        self.push_job(result_to_s3_job("rt-1", src, "results", "r/rt-1.json",
                                       retry_postback=True))
        stored = self.read_result("rt-1", timeout=30)
        self.wait_until(lambda: self.s3.object("results", "r/rt-1.json") is not None, 20,
                        "the result object, written by the retry")
        self.assertEqual(json.loads(self.s3.get_object("results", "r/rt-1.json")[2]), stored)
        failed = [e for e in worker.log_events("postback_failed") if e.get("job_id") == "rt-1"]
        self.assertEqual([e.get("to") for e in failed], ["s3"], failed)
        retries = [e for e in worker.log_events("postback_retry") if e.get("job_id") == "rt-1"]
        self.assertEqual([e.get("attempt") for e in retries], ["2"], retries)
        self.assertEqual(worker.log_events("postback_given_up"), [])
        # without retry_postback, the failed write is not tried again
        self.s3.fail("results", 500, "InternalError", count=1, key_prefix="r/rt-2")
        self.push_job(result_to_s3_job("rt-2", src, "results", "r/rt-2.json"))
        self.read_result("rt-2", timeout=30)
        done = self.wait_until(lambda: [e for e in worker.log_events("job_done")
                                        if e.get("job_id") == "rt-2"], 20, "rt-2's job_done")
        self.assertEqual(done[0].get("postback"), "failed", done)
        # a retry is scheduled (postback_retry) before the job's last line: none was
        self.assertEqual([e for e in worker.log_events("postback_retry")
                          if e.get("job_id") == "rt-2"], [])
        self.assertIsNone(self.s3.object("results", "r/rt-2.json"))


if __name__ == "__main__":
    harness.main()
