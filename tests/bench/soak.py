#!/usr/bin/python3
"""soak: one long-lived worker through thousands of varied jobs, and what it holds as it goes:
resident memory, open file descriptors and threads, after every batch.

    tests/bench/run [--build DIR] soak [--jobs 2000] [--batch 200] [--seed 7] [--smoke] [--json]

A worker runs for weeks; a leak on a path that only some jobs take (an error, a function, a
format) shows as growth over thousands of jobs, which neither a single job under valgrind nor
LeakSanitizer at exit sees when the memory is still reachable (a cache that only grows). The
jobs are drawn from a seeded generator, so every run sees the same ones: the test images of
tests/data/images and, one job in 25, a corpus image (2560x1600 JPEG, 3840x2160 PNG, 4096x4096
WebP) resized to 600 px first; one to three branches of functions each (resizes, crops,
rotation, text, composites and appends of other sources, colour functions, quantize, padding),
half of them with a nested function, saved as JPEG, PNG or WebP to s3rver. About one job in 30
names a source that answers 404 and one in 20 saves an output to a bucket s3rver does not have
(NoSuchBucket), so the failure paths run too.

Servers, all on loopback and started here: redis-server, s3rver (deploy/s3rver), this script's
source server and postback receiver. One pixq-worker (its own process, no supervisor) at
PIXQ_LOG_LEVEL=warn. Each batch of --batch jobs is pushed at once and waited for (every
postback); then /proc/PID/status (VmRSS, VmHWM) and /proc/PID/fd of the worker are read.

How to read it: the resident size rises to the peak of the heaviest job seen so far and stays
there (freed image buffers up to PIXQ_MAGICK_MEMORY_MB are kept for the next job, by design:
worker/image.c keep_buffers()), so it moves in steps, each a job heavier than any before. A
leak is a slope instead: "growth over the second half" is the RSS at the end less the RSS half
way, per 1000 jobs; open descriptors and threads should not move at all.
"""

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from benchlib import machine_line, memory_tmpdir  # noqa: E402
from e2e import Postbacks, Server, _PostbackHandler, _SourceHandler  # noqa: E402

QUEUE = "soak"
BUCKET = "pixq-soak"
SMALL = ["alpha-200x150.png", "autumn-320x200.jpg", "cascade-alpha-960x540.webp",
         "color-cups-320x200.jpg", "color-skew-320x200.png", "cups-exif-1283x797.webp",
         "cups-orient6-1283x797.jpg", "geo-1536x2048.jpg", "geo-cmyk.jpg", "grey-160x120.png",
         "icc-exif-120x80.jpg", "icc-grey-48x32.png"]
LARGE = ["autumn-2560x1600.jpg", "cascade-3840x2160.png", "truchet-4096x4096.webp"]
OVERLAYS = ["color-wm-64x40.png", "draw-logo-40x30.png"]
EXPECTED = ("server answered HTTP 404", "NoSuchBucket")  # the failures the generator makes


class Jobs:
    """The seeded job generator: job(i) is the same job in every run."""

    def __init__(self, seed, src, receiver):
        self.rnd = random.Random(seed)
        self.src = src
        self.receiver = receiver

    def function(self):
        r = self.rnd
        kinds = [
            ("resize_to_fit", {"width": r.choice([64, 200, 320])}),
            ("resize_to_fill", {"width": 120, "height": 90}),
            ("crop", {"x": 2, "y": 2, "width": 50, "height": 40}),
            ("rotate", {"amount": r.randint(1, 359)}),
            ("annotate", {"text": "pixq %d" % r.randint(0, 999), "point_size": 14,
                          "color": "#ff0000"}),
            ("watermark", {"text": "pixq"}),
            ("composite", {"src": self.src.url("/" + r.choice(OVERLAYS)), "x": 5, "y": 5}),
            ("append", {"other_images": self.src.url("/" + r.choice(OVERLAYS))}),
            ("sharpen", {"sigma": 1}),
            ("sepia_tone", {}),
            ("modulate", {"brightness": 1.1, "saturation": 0.8}),
            ("quantize", {"number_colors": 16}),
            ("pad", {"size": 10, "color": "#00ff00"}),
        ]
        name, params = r.choice(kinds)
        return {"name": name, "params": params} if params else {"name": name}

    def save(self, job_id, k, bucket=BUCKET):
        ext = self.rnd.choice(["jpg", "png", "webp"])
        return {"image_identifier": "o%d" % k,
                "s3_destination": {"bucket": bucket, "key": "%s/%d.%s" % (job_id, k, ext)}}

    def job(self, i):
        r = self.rnd
        job_id = "soak-%d" % i
        large = i % 25 == 0
        branches = []
        for k in range(r.randint(1, 3)):
            f = dict(self.function(), save=self.save(job_id, k))
            if r.random() < 0.5:
                f["functions"] = [dict(self.function(), save=self.save(job_id, 10 + k))]
            branches.append(f)
        if r.random() < 0.05:  # an output S3 refuses (NoSuchBucket)
            branches.append({"name": "resize_to_fit", "params": {"width": 100},
                             "save": self.save(job_id, 99, "pixq-soak-missing")})
        source = r.choice(LARGE if large else SMALL)
        if r.random() < 0.033:
            source = "missing.jpg"  # 404
        if large:
            branches = [{"name": "resize_to_fit", "params": {"width": 600},
                         "functions": branches}]
        return json.dumps({"job_id": job_id, "src": self.src.url("/" + source),
                           "postback_url": self.receiver.url("/pb"), "functions": branches})


def held(pid):
    """What the worker holds now: resident and peak MB, open descriptors, threads."""
    status = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.split()
    return {"rss_mb": int(status["VmRSS"][0]) / 1024, "hwm_mb": int(status["VmHWM"][0]) / 1024,
            "fds": len(os.listdir("/proc/%d/fd" % pid)), "threads": int(status["Threads"][0])}


def run(opts, tmp):
    redis_server = harness.RedisServer(tmp / "redis").start()
    s3 = harness.S3rverServer(tmp / "s3rver", (BUCKET,)).start()
    data = harness.REPO_ROOT / "tests" / "data"
    files = {"/" + n: (data / "images" / n).read_bytes() for n in SMALL + OVERLAYS}
    files.update({"/" + n: (data / "corpus" / n).read_bytes() for n in LARGE})
    src = Server(_SourceHandler, files=files)
    pb = Postbacks()
    receiver = Server(_PostbackHandler, on_postback=pb)
    r = harness.Redis("127.0.0.1", redis_server.port)
    env = harness.clean_env()
    env.update({
        "PIXQ_REDIS_URL": redis_server.url(), "PIXQ_QUEUE": QUEUE,
        "PIXQ_S3_ENDPOINT": s3.endpoint(), "AWS_ACCESS_KEY_ID": "S3RVER",
        "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_REGION": "us-east-1",
        "PIXQ_DEFAULT_BUCKET": BUCKET, "PIXQ_ALLOW_PRIVATE_NETWORKS": "1",
        "PIXQ_LOG_LEVEL": "warn", "PIXQ_S3_RATE": "10000/s,burst=1000",
    })
    worker = harness.Program("soak-worker", [opts.worker], env, tmp / "worker.log")
    samples = []
    try:
        # started: connected to Redis (PIXQ_LOG_LEVEL=warn logs no worker_start)
        harness.wait_until(lambda: held(worker.pid)["fds"] > 3, 30, "the worker to start",
                           check=worker.check_alive)
        time.sleep(0.5)
        jobs = Jobs(opts.seed, src, receiver)
        samples.append(dict(held(worker.pid), jobs=0, seconds=0.0))
        t0 = time.time()
        for start in range(0, opts.jobs, opts.batch):
            end = min(opts.jobs, start + opts.batch)
            r.lpush("pixq:{%s}:jobs" % QUEUE, *[jobs.job(i) for i in range(start, end)])
            pb.wait_count("soak", end, 1200)
            worker.check_alive()
            samples.append(dict(held(worker.pid), jobs=end, seconds=time.time() - t0))
        stats = r.execute("HGETALL", "pixq:{%s}:stats" % QUEUE)
        counters = {stats[i]: int(stats[i + 1]) for i in range(0, len(stats), 2)}
    finally:
        worker.terminate()
        counters["unexpected"] = [e.get("error", "") for e in worker.log_events("job_failed")
                                  if not any(m in e.get("error", "") for m in EXPECTED)]
        r.close()
        receiver.stop()
        src.stop()
        s3.stop()
        redis_server.stop()
    return samples, counters


def report(samples, counters, opts):
    print("soak: %d varied jobs (seed %d) through one pixq-worker, %d a batch; what it holds "
          "after each batch" % (opts.jobs, opts.seed, opts.batch))
    print("%8s %9s %8s %8s %5s %8s" % ("jobs", "seconds", "rss_MB", "peak_MB", "fds", "threads"))
    for s in samples:
        print("%8d %9.1f %8.1f %8.1f %5d %8d" % (s["jobs"], s["seconds"], s["rss_mb"],
                                                  s["hwm_mb"], s["fds"], s["threads"]))
    first, last = samples[1], samples[-1]
    half = min(samples[1:], key=lambda s: abs(s["jobs"] - last["jobs"] / 2))
    per_k = ((last["rss_mb"] - half["rss_mb"]) * 1000 / (last["jobs"] - half["jobs"])
             if last["jobs"] > half["jobs"] else 0.0)
    print("jobs: %d succeeded, %d failed (the failures are the generator's: 404 sources and a "
          "missing bucket); %.1f jobs/s" % (counters.get("succeeded", 0),
                                           counters.get("failed", 0),
                                           last["jobs"] / last["seconds"]))
    print("rss: %.1f MB after the first batch, %.1f MB half way (%d jobs), %.1f MB at the end; "
          "peak %.1f MB" % (first["rss_mb"], half["rss_mb"], half["jobs"], last["rss_mb"],
                            last["hwm_mb"]))
    print("growth over the second half: %.2f MB per 1000 jobs; open descriptors %d -> %d, "
          "threads %d -> %d (after the first batch -> at the end)"
          % (per_k, first["fds"], last["fds"], first["threads"], last["threads"]))
    unexpected = counters.get("unexpected", [])
    print("failures other than the generator's: %d%s" % (
        len(unexpected), ", the first: %s" % unexpected[0] if unexpected else ""))
    if opts.json:
        print(json.dumps({"samples": samples, "counters": counters,
                          "growth_mb_per_1000_jobs_second_half": per_k}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", required=True)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="60 jobs, 20 a batch")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    if opts.smoke:
        opts.jobs, opts.batch = 60, 20
    if opts.jobs < 1 or opts.batch < 1:
        ap.error("--jobs and --batch take at least 1")
    print(machine_line())
    print()
    tmp = memory_tmpdir("pixq-soak-")
    try:
        samples, counters = run(opts, tmp)
    finally:
        if os.environ.get("PIXQ_TEST_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    report(samples, counters, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
