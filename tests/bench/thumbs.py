#!/usr/bin/python3
"""Thumbnails: pixq's processing path against vipsthumbnail, convert and the djpeg floor.

    /usr/bin/python3 tests/bench/thumbs.py --bench BUILD/tests/bench/thumbs_bench
        [--runs 20] [--anchor-runs 7] [--sizes 200,800] [--smoke] [--json] [IMAGE...]

Every image (default: the JPEGs, PNG and WebP of tests/data/corpus) is made into a thumbnail
that fits SIZE x SIZE, a JPEG, for each size:

- pixq: thumbs_bench runs pixq-worker's own processing path in one process (the image guard,
  the decode with shrink-on-load, resize_to_fit, the JPEG encoding of the save block at the
  default quality 75, metadata stripped), one warm-up then --runs timed runs per image, without
  network: the steady state of a long-lived worker. "pixq_imrs" is the same with
  PIXQ_FAST_RESIZE=0 (ImageMagick's resize instead of worker/resize.h's), "pixq_full" with
  PIXQ_SHRINK_ON_LOAD=0 (every source decoded in full), for comparison, and for the JPEGs
  "pixq_ljpg" with PIXQ_JPEG_DC=0 (a progressive file needed at 1/8 decoded by libjpeg rather
  than read from its DC scans, worker/jpegdc.h).
- vips: `vipsthumbnail IMAGE -s SIZE -o OUT.jpg` (libvips-tools, shrink-on-load included);
- convert: `convert IMAGE -resize SIZExSIZE OUT.jpg` (ImageMagick's command line);
- djpeg: `djpeg -scale M/8 -outfile /dev/null IMAGE` (libjpeg-turbo-progs), the JPEG decode
  floor, at the scale libjpeg would pick for the thumbnail: the smallest M/8 that keeps both
  sides at or above the thumbnail's (JPEG sources only);
each anchor a whole process per image, --anchor-runs runs, the median.

Prints the median milliseconds per image and the ratios pixq/anchor (below 1: pixq is faster),
per image and size, and the median of each ratio per size, with the targets of issue 7 (pixq at
most 0.5 x vipsthumbnail, 0.33 x convert, 1.3 x djpeg). Never asserts speed.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from benchlib import machine, machine_line  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"
TARGETS = {"vips": 0.5, "convert": 1 / 3, "djpeg": 1.3}


def pixq(bench, size, images, runs, settings):
    env = dict(os.environ, PIXQ_LOG_LEVEL="warn", **settings)
    r = subprocess.run([bench, "--runs", str(runs), "--warmup", "1", str(size)] +
                       [str(i) for i in images], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env, timeout=3600)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    bad = [row for row in rows if "error" in row]
    if r.returncode != 0 or bad or len(rows) != len(images):
        raise SystemExit("thumbs_bench failed (exit %d): %s\n%s" % (r.returncode, bad,
                                                                     r.stderr[-2000:]))
    return {row["image"]: row for row in rows}


def timed(argv, runs):
    """Median wall time (ms) of `runs` runs of a whole process."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        out.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise SystemExit("%s failed: %s" % (" ".join(argv), r.stderr.decode()[-500:]))
    return statistics.median(out)


def size_of(path):
    r = subprocess.run(["identify", "-format", "%w %h\n", str(path) + "[0]"],
                       stdout=subprocess.PIPE, text=True, check=True)
    w, h = r.stdout.split()[:2]
    return int(w), int(h)


def djpeg_scale(w, h, tw, th):
    """The smallest M (of M/8) with both scaled sides at or above the thumbnail's."""
    for m in range(1, 9):
        if math.ceil(w * m / 8) >= tw and math.ceil(h * m / 8) >= th:
            return m
    return 8


def anchors(image, size, out_size, runs, tmp):
    out = {"vips": timed(["vipsthumbnail", str(image), "-s", str(size), "-o",
                          str(tmp / "v.jpg")], runs),
           "convert": timed(["convert", str(image), "-resize", "%dx%d" % (size, size),
                             str(tmp / "c.jpg")], runs)}
    if image.suffix.lower() in (".jpg", ".jpeg"):
        w, h = size_of(image)
        m = djpeg_scale(w, h, out_size[0], out_size[1])
        out["djpeg"] = timed(["djpeg", "-scale", "%d/8" % m, "-outfile", "/dev/null",
                              str(image)], runs)
        out["djpeg_scale"] = "%d/8" % m
    return out


def measure(args, images, tmp):
    rows = []
    for size in args.sizes:
        fast = pixq(args.bench, size, images, args.runs, {})
        full = pixq(args.bench, size, images, max(1, args.runs // 4), {"PIXQ_SHRINK_ON_LOAD": "0"})
        jpegs = [i for i in images if i.suffix.lower() in (".jpg", ".jpeg")]
        ljpg = pixq(args.bench, size, jpegs, args.runs, {"PIXQ_JPEG_DC": "0"}) if jpegs else {}
        imrs = pixq(args.bench, size, images, args.runs, {"PIXQ_FAST_RESIZE": "0"})
        for image in images:
            p = fast[image.name]
            row = {"size": size, "image": image.name, "pixq": p["median_ms"],
                   "pixq_imrs": imrs[image.name]["median_ms"], "pixq_full": full[image.name]["median_ms"], "decoded": p["decoded"],
                   "output": p["output"]}
            if image.name in ljpg:
                row["pixq_ljpg"] = ljpg[image.name]["median_ms"]
            row.update(anchors(image, size, p["output"], args.anchor_runs, tmp))
            for a in TARGETS:
                if a in row:
                    row["pixq/" + a] = row["pixq"] / row[a]
            rows.append(row)
    return rows


def fmt(v, spec):
    return spec % v if v is not None else "-"


def print_table(m, rows, args):
    print(machine_line(m))
    print()
    print("thumbnails: resize_to_fit into SIZExSIZE, JPEG out; median ms per image")
    print("(pixq: in-process steady state, %d runs; pixq_imrs: PIXQ_FAST_RESIZE=0; pixq_ljpg: "
          "PIXQ_JPEG_DC=0; pixq_full: PIXQ_SHRINK_ON_LOAD=0; anchors: whole process, %d runs)"
          % (args.runs, args.anchor_runs))
    head = "%-4s %-24s %7s %9s %9s %9s %8s %8s %8s %9s %9s %9s  %s"
    print(head % ("size", "image", "pixq", "pixq_imrs", "pixq_ljpg", "pixq_full", "vips",
                  "convert", "djpeg", "pixq/vips", "pixq/conv", "pixq/djpg", "decoded"))
    for r in rows:
        print(head % (r["size"], r["image"], fmt(r["pixq"], "%.1f"), fmt(r["pixq_imrs"], "%.1f"),
                      fmt(r.get("pixq_ljpg"), "%.1f"), fmt(r["pixq_full"], "%.1f"),
                      fmt(r["vips"], "%.1f"), fmt(r["convert"], "%.1f"),
                      fmt(r.get("djpeg"), "%.1f"), fmt(r.get("pixq/vips"), "%.2f"),
                      fmt(r.get("pixq/convert"), "%.2f"), fmt(r.get("pixq/djpeg"), "%.2f"),
                      "%dx%d" % tuple(r["decoded"]) +
                      (" djpeg %s" % r["djpeg_scale"] if "djpeg_scale" in r else "")))
    print()
    print("median ratio per size (targets: pixq/vips <= %.2f, pixq/convert <= %.2f, "
          "pixq/djpeg <= %.2f):" % (TARGETS["vips"], TARGETS["convert"], TARGETS["djpeg"]))
    for size in args.sizes:
        parts = []
        for a in TARGETS:
            v = [r["pixq/" + a] for r in rows if r["size"] == size and "pixq/" + a in r]
            if v:
                med = statistics.median(v)
                parts.append("pixq/%s %.2f (%s)" % (a, med, "met" if med <= TARGETS[a]
                                                    else "missed"))
        print("  %d px: %s" % (size, "  ".join(parts)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="thumbs_bench of the build")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--anchor-runs", type=int, default=7)
    ap.add_argument("--sizes", default="200,800")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, two images")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("images", nargs="*", type=Path)
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    images = args.images or sorted(p for p in CORPUS.iterdir()
                                   if p.suffix.lower() in (".jpg", ".png", ".webp"))
    if args.smoke:
        args.runs, args.anchor_runs = 2, 1
        images = args.images or [CORPUS / "path-2560x1600.jpg", CORPUS / "cascade-3840x2160.png"]
    m = machine()
    tmp = Path(tempfile.mkdtemp(prefix="pixq-bench-thumbs-"))
    try:
        rows = measure(args, images, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": m, "rows": rows}))
    else:
        print_table(m, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
