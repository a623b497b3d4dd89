#!/usr/bin/python3
"""Shrink-on-load: the same outputs as a full decode, from a smaller decode.

For every image of tests/data/corpus (and EXIF-rotated JPEGs and WebPs of tests/data/images) and each
function tree below, runs pixq-apply (the worker's processing code) twice: as configured by
default (PIXQ_SHRINK_ON_LOAD=1) and with PIXQ_SHRINK_ON_LOAD=0, and checks:

  - the same outputs, each with exactly the same width and height;
  - pixels within the tolerance: mean absolute error at most MAE_MAX of the range and PSNR at
    least PSNR_MIN dB (ImageMagick's `compare`), outputs written as PNG so that only the
    decoding differs (libjpeg's reduced DCT and a box pre-shrink are close to, not equal to, a
    full decode followed by the resize filter);
  - one decode per job (the debug log's "decoded" event; siblings work on clones), ImageMagick
    with one thread (the image_guard line), and never a fallback to a full decode because a
    decoder gave another size than planned ("shrink_on_load_missed");
  - the hint is taken: pixq-apply reports the size the source was decoded at ("decoded"); for
    the trees that only shrink it is smaller than the source whenever the source is at least
    twice the largest output in both directions (and its sides multiples of 8), and for the trees that must keep the full
    decode (a crop in source pixels before any resize, a full-size save) and with
    PIXQ_SHRINK_ON_LOAD=0 it is the source's size; a reduced decode, turned as shown, is at
    least every output's width and height.

In a sanitizer build the comparisons (the PIXQ_SHRINK_ON_LOAD=0 runs) are made for one tree
alone; the others are checked for their hint (see SANITIZED).

    /usr/bin/python3 tests/shrink/test_shrink_on_load.py --apply BUILD/tests/tools/pixq-apply \\
        [--data tests/data] [-v] [--keep]

Prints one line per image and tree, the worst error seen, and "shrink: N passed, N failed".
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

MAE_MAX = 0.015  # mean absolute error, fraction of the range (worst measured: 0.0088)
PSNR_MIN = 30.0  # dB (worst measured: 32.4, cups-orient6 to 200 px at 3/8)
# EXIF-rotated JPEGs (one of an odd size), a WebP of an odd size with an EXIF chunk, a WebP with
# an alpha channel, a WebP rotated by its EXIF chunk
EXTRA = ["images/cups-orient6-1283x797.jpg", "images/orient6-400x300.jpg",
         "images/cups-exif-1283x797.webp", "images/cascade-alpha-960x540.webp",
         "images/orient6-exif-1600x1200.webp"]
# In a sanitizer build (PIXQ_TEST_SANITIZED=1, from meson) the PIXQ_SHRINK_ON_LOAD=0 runs, half
# of the test's time there and the same code as in the plain build, which compares every tree,
# are made for one tree alone, the one that runs most functions on the full decode.
SANITIZED = os.environ.get("PIXQ_TEST_SANITIZED") == "1"
FULL_UNDER_SANITIZER = "siblings"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


def save(ident, ext):
    return {"image_identifier": ident, "extension": ext}


def fn(name, params, ident=None, children=None, ext="png"):
    f = {"name": name, "params": params}
    if ident:
        f["save"] = save(ident, ext)
    if children:
        f["functions"] = children
    return f


# name -> (functions, largest output box (w, h) or None if the full decode must be kept)
TREES = {
    "fit200": ([fn("resize_to_fit", {"width": 200, "height": 200}, "t")], (200, 200)),
    "fit800": ([fn("resize_to_fit", {"width": 800, "height": 800}, "t")], (800, 800)),
    "fill": ([fn("resize_to_fill", {"width": 300, "height": 200}, "t")], (300, 200)),
    "siblings": ([
        fn("modulate", {"saturation": 1.2}, None, [
            fn("resize_to_fit", {"width": 200}, "fit"),
            fn("resize_to_fill", {"width": 150, "height": 150, "gravity": "North"}, "fill"),
            fn("pad_resize_to_fit", {"width": 400, "height": 300, "color": "#102030"}, "pad"),
            fn("resize", {"width": 640, "height": 360}, "resize", [
                fn("crop", {"x": 10, "y": 20, "width": 300, "height": 200}, "crop"),
            ]),
        ]),
        fn("scale", {"width": 320, "height": 240}, "scale"),
    ], (640, 360)),
    "crop_first": ([
        fn("crop", {"x": 40, "y": 30, "width": 380, "height": 260}, None, [
            fn("resize_to_fit", {"width": 100}, "t"),
        ]),
    ], None),
    "full_copy": ([
        fn("no_op", {}, "copy", ext="jpg"),  # full size: JPEG is quicker to write
        fn("resize_to_fit", {"width": 100, "height": 100}, "t"),
    ], None),
}


def images(data):
    corpus = sorted(p for p in (data / "corpus").iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    return corpus + [data / r for r in EXTRA]


def apply(args, job_file, src, out_dir, shrink):
    env = dict(os.environ, PIXQ_SHRINK_ON_LOAD="1" if shrink else "0", PIXQ_LOG_LEVEL="debug")
    os.makedirs(out_dir, exist_ok=True)
    r = subprocess.run([args.apply, "--data", str(args.data), str(job_file), str(src), out_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=300)
    if any(m in r.stderr for m in SANITIZER_MARKERS):
        raise AssertionError("sanitizer report:\n" + r.stderr[-3000:])
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    if "error" in doc:
        raise AssertionError("pixq-apply failed: %s" % doc["error"])
    check_log(r.stderr)
    return doc


def check_log(log):
    """ImageMagick runs one thread; the source is decoded once, however many outputs (siblings
    work on clones); libjpeg and libwebp gave the size planned (no fallback to a full decode)."""
    if not re.search(r"event=image_guard .*threads=1( |$)", log, re.M):
        raise AssertionError("no image_guard line with threads=1:\n" + log[-1000:])
    decodes = len(re.findall(r"event=decoded ", log))
    if decodes != 1:
        raise AssertionError("%d decoded events, not 1:\n%s" % (decodes, log[-2000:]))
    if "shrink_on_load_missed" in log:
        raise AssertionError("the decoder did not give the planned size:\n" + log[-1000:])


def compare(a, b):
    """(mean absolute error as a fraction, PSNR in dB; inf when identical)."""
    r = subprocess.run(["compare", "-metric", "MAE", a, b, "null:"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    m = re.search(r"\(([0-9.e+-]+)\)", r.stderr)
    if m is None:
        raise AssertionError("compare -metric MAE: %r" % r.stderr)
    mae = float(m.group(1))
    r = subprocess.run(["compare", "-metric", "PSNR", a, b, "null:"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    text = r.stderr.strip().split()[0] if r.stderr.strip() else ""
    psnr = float("inf") if text in ("inf", "1.#INF") else float(text)
    return mae, psnr


def oriented_size(doc, src):
    w, h = doc["original_meta"]["width"], doc["original_meta"]["height"]
    if "orient6" in src.name:
        w, h = h, w
    return w, h


def check_hint(name, box, src, on, off):
    sw, sh = on["original_meta"]["width"], on["original_meta"]["height"]
    dec_on = (on["decoded"]["width"], on["decoded"]["height"])
    dec_off = (off["decoded"]["width"], off["decoded"]["height"])
    if dec_off != (sw, sh):
        raise AssertionError("PIXQ_SHRINK_ON_LOAD=0 decoded at %r, not %dx%d" % (dec_off, sw, sh))
    if box is None and dec_on != (sw, sh):
        raise AssertionError("%s must decode in full, decoded at %r" % (name, dec_on))
    ow, oh = oriented_size(on, src)
    # at least twice the largest output and scaled exactly by every M/8 (both sides multiples
    # of 8: no rounding can make another size): a reduced decode is always possible
    big = (box is not None and ow >= 2 * box[0] and oh >= 2 * box[1] and sw % 8 == 0 and
           sh % 8 == 0)
    if big and dec_on[0] * dec_on[1] >= sw * sh:
        raise AssertionError("no shrink-on-load: decoded at %r from %dx%d" % (dec_on, sw, sh))
    return dec_on


def check_covers(on, src):
    """A reduced decode is never smaller than an output in either direction, as shown (after
    the EXIF rotation): the outputs are then made by shrinking, as from a full decode. A plan
    made for the stored size of a rotated source can decode below an output and enlarge it
    again, within the pixel tolerance of flat colours (orient6-exif-1600x1200.webp's siblings
    at 800x600, 600x800 as shown, for the 640x360 resize, had its WebP orientation not reached
    the plan)."""
    sw, sh = on["original_meta"]["width"], on["original_meta"]["height"]
    dw, dh = on["decoded"]["width"], on["decoded"]["height"]
    if (dw, dh) == (sw, sh):
        return
    if "orient6" in src.name:
        dw, dh = dh, dw
    for o in on["outputs"]:
        if o["width"] > dw or o["height"] > dh:
            raise AssertionError("%s: %dx%d from a decode of %dx%d as shown" % (
                o["image_identifier"], o["width"], o["height"], dw, dh))


def check_outputs(on, off, full):
    if len(on["outputs"]) != len(off["outputs"]):
        raise AssertionError("%d outputs, %d without shrink" % (len(on["outputs"]),
                                                                len(off["outputs"])))
    worst = (0.0, float("inf"))
    for a, b in zip(on["outputs"], off["outputs"]):
        ident = a["image_identifier"]
        if (a["width"], a["height"]) != (b["width"], b["height"]):
            raise AssertionError("%s: %dx%d, %dx%d without shrink" % (
                ident, a["width"], a["height"], b["width"], b["height"]))
        if full:  # the same decode: the same bytes
            if Path(a["file"]).read_bytes() != Path(b["file"]).read_bytes():
                raise AssertionError("%s: both decoded in full, yet different bytes" % ident)
            continue
        mae, psnr = compare(a["file"], b["file"])
        if mae > MAE_MAX or psnr < PSNR_MIN:
            raise AssertionError("%s: MAE %.4f PSNR %.2f dB (limits %.3f, %.1f)" % (
                ident, mae, psnr, MAE_MAX, PSNR_MIN))
        worst = (max(worst[0], mae), min(worst[1], psnr))
    return worst


def run_one(args, tmp, src, name):
    functions, box = TREES[name]
    job = tmp / ("%s.json" % name)
    job.write_text(json.dumps({"src": "file:none", "functions": functions}))
    base = tmp / src.stem / name
    on = apply(args, job, src, str(base / "on"), True)
    if SANITIZED and name != FULL_UNDER_SANITIZER:
        # the plain build compares; here the reduced decode runs for its memory errors
        check_hint(name, box, src, on, {"decoded": on["original_meta"]})
        check_covers(on, src)
        return (on["decoded"]["width"], on["decoded"]["height"]), (0.0, float("inf"))
    off = apply(args, job, src, str(base / "off"), False)
    dec = check_hint(name, box, src, on, off)
    check_covers(on, src)
    worst = check_outputs(on, off, dec == (off["decoded"]["width"], off["decoded"]["height"]))
    return dec, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--apply", required=True)
    ap.add_argument("--data", type=Path, default=REPO / "tests" / "data")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pixq-shrink-"))
    passed = failed = 0
    worst = (0.0, float("inf"))
    cases = [(src, name) for src in images(args.data) for name in TREES]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(run_one, args, tmp, src, name) for src, name in cases]
            for (src, name), fut in zip(cases, futures):
                try:
                    dec, w = fut.result()
                    worst = (max(worst[0], w[0]), min(worst[1], w[1]))
                    passed += 1
                    print("ok   %-28s %-10s decoded %dx%d  MAE %.4f  PSNR %.2f dB" % (
                        src.name, name, dec[0], dec[1], w[0], w[1]))
                except (AssertionError, ValueError, subprocess.TimeoutExpired) as ex:
                    failed += 1
                    print("FAIL %-28s %-10s %s" % (src.name, name, ex))
    finally:
        if args.keep:
            print("outputs kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("worst: MAE %.4f  PSNR %.2f dB (limits: MAE %.3f, PSNR %.1f dB)" % (
        worst[0], worst[1], MAE_MAX, PSNR_MIN))
    print("shrink: %d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
