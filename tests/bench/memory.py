#!/usr/bin/python3
"""Memory: peak RSS of a real pixq-worker making a thumbnail of volna-5120x2880.jpg (14.7 MP).

    /usr/bin/python3 tests/bench/memory.py --worker BUILD/worker/pixq-worker [--size 200]
        [--image tests/data/corpus/volna-5120x2880.jpg] [--smoke] [--json]

One pixq-worker (one process, the default --processes 1) runs against its own redis-server, the
S3 stub (tests/integration/s3stub.py), a source server and a postback receiver, all on loopback
ports in a temporary directory, and handles one job: the image, fetched over HTTP, to
resize_to_fit SIZE x SIZE, saved as JPEG to the stub. Its peak RSS is the kernel's high-water
mark (VmHWM in /proc/PID/status) read once the job is posted back, with the worker still
running: everything the process ever held, the download buffer, the decode, libcurl, hiredis
and ImageMagick's libraries included (the resident pages of the libraries, RssFile, shared with
every other process that maps them, are printed too). "idle" is the same mark before the job. The same again
with PIXQ_JPEG_DC=0 (libjpeg decodes the progressive file at 1/8 instead of the DC reader,
worker/jpegdc.h) and with PIXQ_SHRINK_ON_LOAD=0 (a full decode), for comparison.

The anchors make the same thumbnail from the file, each a whole process whose peak RSS is taken
from wait4() (ru_maxrss): `convert IMAGE -resize SIZExSIZE OUT.jpg`, `vipsthumbnail IMAGE -s SIZE
-o OUT.jpg`, and `djpeg -scale 1/8` (the memory libjpeg itself needs to decode the file at the
reduced scale: a progressive JPEG keeps every DCT coefficient of the whole image in memory).

Target (issue 7): pixq-worker at most 100 MB. Never asserts it.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402
import s3stub  # noqa: E402
from benchlib import machine, machine_line  # noqa: E402

TARGET_MB = 100.0
MB = 1024 * 1024


def status_kb(pid, field):
    """A "kB" field of /proc/PID/status, in bytes."""
    m = re.search(r"^%s:\s+(\d+) kB" % field, Path("/proc/%d/status" % pid).read_text(), re.M)
    return int(m.group(1)) * 1024


def vm_hwm(pid):
    """Peak resident set size of a running process, bytes (VmHWM)."""
    return status_kb(pid, "VmHWM")


WORKERS = [("pixq-worker", {}),
           ("pixq-worker (PIXQ_JPEG_DC=0)", {"PIXQ_JPEG_DC": "0"}),
           ("pixq-worker (shrink off)", {"PIXQ_SHRINK_ON_LOAD": "0"})]


def worker_run(worker, image, size, settings, tmp):
    """(idle peak, peak after the job, job ms, resident file pages (the libraries) after it) of
    one pixq-worker handling one job."""
    stoppers = []
    try:
        redis = harness.RedisServer(tmp / "redis").start()
        stoppers.append(redis.stop)
        stub = s3stub.S3Stub(buckets=["bench"], log_path=tmp / "s3stub.log").start()
        stoppers.append(stub.stop)
        src = harness.SourceServer()
        stoppers.append(src.stop)
        pbs = harness.PostbackReceiver()
        stoppers.append(pbs.stop)
        url = src.add("/" + image.name, image.read_bytes())
        env = harness.clean_env()
        env.update({"PIXQ_REDIS_URL": redis.url(), "PIXQ_QUEUE": "bench",
                    "PIXQ_S3_ENDPOINT": stub.endpoint(), "AWS_REGION": "us-east-1",
                    "PIXQ_ALLOW_PRIVATE_NETWORKS": "1", "PIXQ_LOG_LEVEL": "info"})
        env.update(settings)
        env.update(stub.credentials())
        prog = harness.Program("worker", [worker], env, tmp / "worker.log")
        stoppers.append(prog.terminate)
        r = harness.Redis(harness.LOOPBACK, redis.port).connect()
        stoppers.append(r.close)
        harness.wait_until(lambda: r.execute("ZCARD", "pixq:{bench}:workers") == 1, 30,
                           "the worker to register", check=prog.check_alive)
        idle = vm_hwm(prog.pid)
        job = {"job_id": "mem", "src": url, "postback_url": pbs.url(),
               "functions": [{"name": "resize_to_fit", "params": {"width": size, "height": size},
                              "save": {"image_identifier": "thumb", "s3_destination": {
                                  "bucket": "bench", "key": "thumb.jpg"}}}]}
        t0 = time.monotonic()
        r.execute("LPUSH", "pixq:{bench}:jobs", json.dumps(job))
        pb = pbs.wait_for_postback(timeout=120, check=prog.check_alive)
        ms = (time.monotonic() - t0) * 1000
        results = pb.results
        if results.get("errors") or len(results.get("images", [])) != 1:
            raise SystemExit("the job failed: %s" % json.dumps(results)[:500])
        return idle, vm_hwm(prog.pid), ms, status_kb(prog.pid, "RssFile")
    finally:
        for stop in reversed(stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001 (cleaning up whatever happens)
                pass


def peak_of(argv):
    """ru_maxrss of a whole process, bytes."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit("%s failed (status %d)" % (" ".join(argv), status))
    return usage.ru_maxrss * 1024


def measure(args, tmp):
    rows = []
    for i, (name, settings) in enumerate(WORKERS):
        d = tmp / ("worker-%d" % i)
        d.mkdir()
        idle, peak, ms, files = worker_run(args.worker, args.image, args.size, settings, d)
        rows.append({"program": name, "peak": peak, "idle": idle, "job_ms": ms, "files": files})
    out = tmp / "out.jpg"
    size = str(args.size)
    rows.append({"program": "convert", "peak": peak_of(
        ["convert", str(args.image), "-resize", "%sx%s" % (size, size), str(out)])})
    rows.append({"program": "vipsthumbnail", "peak": peak_of(
        ["vipsthumbnail", str(args.image), "-s", size, "-o", str(out)])})
    rows.append({"program": "djpeg -scale 1/8", "peak": peak_of(
        ["djpeg", "-scale", "1/8", "-outfile", "/dev/null", str(args.image)])})
    return rows


def print_table(m, rows, args):
    print(machine_line(m))
    print()
    print("memory: peak RSS making a %dx%d thumbnail of %s (%.1f MB file)" % (
        args.size, args.size, args.image.name, args.image.stat().st_size / MB))
    print("%-26s %10s %10s %9s %12s" % ("program", "peak_MB", "idle_MB", "job_ms",
                                        "pixq/program"))
    pixq = rows[0]["peak"]
    for r in rows:
        print("%-26s %10.1f %10s %9s %12.2f" % (
            r["program"], r["peak"] / MB,
            "%.1f" % (r["idle"] / MB) if "idle" in r else "-",
            "%.0f" % r["job_ms"] if "job_ms" in r else "-", pixq / r["peak"]))
    print()
    print("pixq-worker: %.1f MB of its peak are file pages (shared libraries, RssFile): %.1f MB "
          "without them" % (rows[0]["files"] / MB, (pixq - rows[0]["files"]) / MB))
    print("target: pixq-worker peak <= %.0f MB: %.1f MB (%s)" % (
        TARGET_MB, pixq / MB, "met" if pixq <= TARGET_MB * MB else "missed"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--image", type=Path, default=REPO / "tests/data/corpus/volna-5120x2880.jpg")
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="a small image (quick)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.image = REPO / "tests/data/corpus/path-2560x1600.jpg"
    m = machine()
    tmp = Path(tempfile.mkdtemp(prefix="pixq-bench-memory-"))
    try:
        rows = measure(args, tmp)
    finally:
        if os.environ.get("PIXQ_TEST_KEEP") == "1":
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": m, "rows": rows}))
    else:
        print_table(m, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
