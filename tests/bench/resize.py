#!/usr/bin/python3
"""resize: worker/resize.h's resize against ImageMagick's own resize of the same image.

    /usr/bin/python3 tests/bench/resize.py --bench BUILD/tests/bench/resize_bench
        [--runs 21] [--smoke] [--json]

resize_bench (built with the project) reads a corpus image, scales it to a source size with a
box filter, and times, alternately in one process, pixq's resize (PIXQ_FAST_RESIZE=1, the
default) and ImageMagick's MagickResizeImage with the filter ImageMagick picks (what
PIXQ_FAST_RESIZE=0 runs), on clones of it: Lanczos to shrink an opaque image, Mitchell to
enlarge one or for an image with alpha (here its own intensity). Prints the median ms of each
and the ratio pixq / ImageMagick (below 1: pixq is faster), and the median ratio. Never asserts
speed.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import machine_line  # noqa: E402

CORPUS = HERE.parent / "data" / "corpus"

# (image, source size, alpha, targets)
CASES = [
    ("autumn-2560x1600.jpg", "1280x800", False, ["800x500", "200x125", "1000x400", "1600x1000"]),
    ("autumn-2560x1600.jpg", "1280x800", True, ["800x500", "1000x400"]),
    ("cascade-3840x2160.png", "1920x1080", False, ["800x450"]),
]


def run(bench, image, source, alpha, targets, runs):
    cmd = [bench, "--runs", str(runs), "--source", source] + (["--alpha"] if alpha else [])
    out = subprocess.run(cmd + [str(CORPUS / image)] + targets, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, check=True, timeout=600).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for r in rows:
        r["image"] = image
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--smoke", action="store_true", help="tiny counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.runs = 1
    print(machine_line())
    rows = []
    for image, source, alpha, targets in CASES:
        rows += run(args.bench, image, source, alpha, targets, args.runs)
    print()
    print("resize: pixq's (worker/resize.c) against ImageMagick's (MagickResizeImage, the filter "
          "it picks) on the same image; median ms of %d runs each, alternately" % args.runs)
    head = "%-24s %-10s %-10s %-6s %-9s %8s %12s %10s"
    print(head % ("image", "source", "target", "alpha", "filter", "pixq", "imagemagick",
                  "pixq/im"))
    for r in rows:
        sw, sh = r["source"]
        tw, th = r["target"]
        filt = "mitchell" if r["alpha"] or tw * th > sw * sh else "lanczos"
        r["ratio"] = r["pixq_ms"] / r["imagemagick_ms"]
        print(head % (r["image"], "%dx%d" % (sw, sh), "%dx%d" % (tw, th),
                      "yes" if r["alpha"] else "no", filt if r["taken"] else "declined",
                      "%.2f" % r["pixq_ms"], "%.2f" % r["imagemagick_ms"], "%.2f" % r["ratio"]))
    print()
    print("median pixq/imagemagick: %.2f" % statistics.median(r["ratio"] for r in rows))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
