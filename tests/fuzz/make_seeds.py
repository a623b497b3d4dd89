#!/usr/bin/python3
"""Rebuilds the fuzzers' seed corpora in tests/fuzz/seeds/ from the test data.

    /usr/bin/python3 tests/fuzz/make_seeds.py [--data tests/data]

seeds/fuzz_job/    every sample job of tests/data/jobs, every function case of tests/data/cases
                   as the job pixq-apply would run, and a few batches and edge cases;
seeds/fuzz_image/  tests/data/images, 64x64 crops of the photos of tests/data/corpus in their own
                   formats, and small files (made with ImageMagick's convert) of every format and
                   shape the image guard handles: animated GIF and WebP, multi-page TIFF in both
                   byte orders, HEIC, AVIF, BMP (RLE, alpha, OS/2), progressive JPEG, interlaced and 16-bit PNG...

Files are named by the SHA-1 of their contents, as libFuzzer names what it finds, so running this
again only adds what is new. Crash regressions (seeds/<target>/regress-*) are kept. The whole
corpus stays well under 2 MB (checked at the end).
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_TOTAL_BYTES = 2 * 1024 * 1024
MAX_IMAGE_BYTES = 40 * 1024  # a seed larger than this is left out


def put(target, data):
    d = HERE / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def case_job(case):
    """The job pixq-apply makes of a function case."""
    src = case["src"]
    job = {"src": src if isinstance(src, dict) else "file:" + src,
           "postback_url": "http://127.0.0.1/pb", "functions": case["functions"]}
    job.update(case.get("job", {}))
    return job


def job_seeds(data):
    for path in sorted((data / "jobs").rglob("*.json")):
        put("fuzz_job", path.read_bytes())
    jobs = []
    for path in sorted((data / "cases").glob("*.json")):
        for case in json.loads(path.read_text()):
            job = case_job(case)
            jobs.append(job)
            put("fuzz_job", json.dumps(job).encode())
    put("fuzz_job", json.dumps(jobs[:3]).encode())  # a batch
    put("fuzz_job", json.dumps([jobs[0], 7, "x", None, []]).encode())
    # Blitline request bodies: {"json": job}, {"json": [jobs]}, {"json": "<their text>"}
    for body in ({"json": jobs[0]}, {"json": jobs[:2]}, {"json": json.dumps(jobs[:2])},
                 {"json": json.dumps(jobs[0])}, {"json": 7}, {"json": jobs[0], "v": 1.2}):
        put("fuzz_job", json.dumps(body).encode())
    for text in ('{"src": "a", "functions": []}', '[]', '{}', '{"functions": [{}]}',
                 '{"src": {"name": "s3", "bucket": {"name": "b", "location": "eu-west-1"},'
                 ' "key": "k"}, "functions": [{"name": "no_op", "save": {"image_identifier":'
                 ' "x", "s3_destination": {"bucket": "b", "key": "k.png", "headers":'
                 ' {"Cache-Control": "max-age=1"}}}}], "postback_headers": {"X-A": "1"}}',
                 '{"src": "http://x/a.jpg", "job_id": "J1", "functions": [{"name": "resize",'
                 ' "params": {"width": "1e308", "height": -1, "x": 1e400}}]}'):
        put("fuzz_job", text.encode())
    # over PIXQ_MAX_JSON_DEPTH: salvaged for their postback members, the id written in
    deep = "[" * 40 + "]" * 40
    for text in ('{"postback_url": "http://127.0.0.1/pb", "src": %s, "job_id": null}' % deep,
                 '{"job_\\u005fid": "J2", "v": 1.2, "postback_headers": {"X-A": "1"},'
                 ' "functions": [{"postback_url": 1}, %s], "retry_postback": true}' % deep):
        put("fuzz_job", text.encode())


def convert(*args, suffix):
    """convert's output for `args`, written to a file of that suffix ("CODER:.ext": that
    coder)."""
    coder, _, suffix = suffix.rpartition(":")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / ("out" + suffix)
        target = coder + ":" + str(out) if coder else str(out)
        subprocess.run(["convert", *args, target], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
        return out.read_bytes()


GENERATED = [
    # (convert arguments, output suffix)
    (["-size", "24x16", "gradient:red-blue", "-interlace", "JPEG"], ".jpg"),
    (["-size", "24x16", "gradient:", "-colorspace", "Gray"], ".jpg"),
    (["-size", "24x16", "gradient:", "-depth", "16"], ".png"),
    (["-size", "24x16", "gradient:", "-interlace", "PNG"], ".png"),
    (["-size", "24x16", "xc:none", "-fill", "red", "-draw", "rectangle 2,2 9,9", "-colors", "4"],
     ".png"),
    (["-size", "16x16", "xc:red", "xc:lime", "xc:blue", "-loop", "0"], ".gif"),
    (["-size", "16x16", "xc:red", "-page", "+4+4", "xc:lime", "-set", "dispose", "previous"],
     ".gif"),
    (["-size", "16x16", "gradient:", "-define", "webp:lossless=true"], ".webp"),
    (["-size", "16x16", "xc:red", "xc:lime", "-loop", "0"], ".webp"),
    (["-size", "16x12", "gradient:", "xc:blue", "-endian", "LSB"], ".tif"),
    (["-size", "16x12", "gradient:", "-endian", "MSB", "-compress", "LZW"], ".tif"),
    (["-size", "16x12", "gradient:", "-quality", "40"], ".heic"),
    (["-size", "16x12", "gradient:", "-quality", "40"], ".avif"),
    (["-size", "16x12", "gradient:red-blue"], ".bmp"),
    (["-size", "16x12", "gradient:", "-colors", "16", "-compress", "RLE", "-type", "Palette"],
     ".bmp"),
    (["-size", "16x12", "xc:none", "-fill", "red", "-draw", "rectangle 2,2 9,9"], ".bmp"),
    (["-size", "16x12", "gradient:", "-type", "Palette"], "BMP2:.bmp"),  # OS/2's header
]


def image_seeds(data):
    for path in sorted((data / "images").iterdir()):
        if path.suffix.lower() in (".jpg", ".png", ".gif", ".webp") and \
                path.stat().st_size <= MAX_IMAGE_BYTES:
            put("fuzz_image", path.read_bytes())
    for path in sorted((data / "corpus").iterdir()):
        if path.suffix.lower() in (".jpg", ".png", ".webp"):
            put("fuzz_image", convert(str(path), "-crop", "64x64+900+700", "+repage",
                                      "-strip", suffix=path.suffix))
    for args, suffix in GENERATED:
        put("fuzz_image", convert(*args, suffix=suffix))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(HERE.parent / "data"))
    opts = parser.parse_args()
    data = Path(opts.data)
    job_seeds(data)
    image_seeds(data)
    total = sum(p.stat().st_size for p in (HERE / "seeds").rglob("*") if p.is_file())
    print("seeds: %d bytes" % total)
    if total > MAX_TOTAL_BYTES:
        sys.exit("the seed corpus is larger than %d bytes" % MAX_TOTAL_BYTES)


if __name__ == "__main__":
    main()
