#!/usr/bin/python3
"""The DC reader (worker/jpegdc.c): a progressive JPEG at 1/8 from its DC scans alone.

Checks, with libjpeg-turbo's own tools as the reference:

  - exactness: jpegdc-dump's output is byte for byte `djpeg -scale 1/8` for the progressive
    corpus JPEGs (4:4:4 and 4:2:2) and for progressive files made from a corpus image with
    cjpeg/jpegtran: grey, 4:4:4, 4:2:2, 4:4:0, restart markers every block and every 7
    blocks, a scan script that splits the DC scans per component with three successive-
    approximation steps; sizes with a padding block in the MCUs (125x75 blocks) with a DC table
    sent again between first DC scans, and refinements of one component each; MCUs of 10
    blocks (2x2, 2x2, 2x1); for 4:2:0 (libjpeg decodes the chroma at 2x2 there, jpegdc.h) the
    mean absolute error is at most MAE_420 and no sample is further than MAX_420 off;
  - what it declines (exit 3) and why: a baseline JPEG, arithmetic coding, 12 bits (not made
    by Debian's tools: a hand-patched SOF header stands for it), a file cut before its DC scans
    end, a file of DC scans only (libjpeg's block smoothing would change its DC values), a file
    of 1024 scans (ImageMagick refuses it; one of 1023 is decoded); every cut of a progressive
    file either declines or gives exactly the full
    file's image (the DC scans were complete), and damaged copies (seeded random bytes)
    decline or decode, never crash (sanitizer builds report through stderr); a DC scan one
    byte short (its last byte, before the marker that ends it or a restart marker, removed) is
    declined as cut short: interleaved, of one component, a refinement, a restart interval;
  - the worker's path (pixq-apply, PIXQ_JPEG_DC=1 against PIXQ_JPEG_DC=0, the same job):
    the DC reader is taken (the "jpeg_dc" debug event), the outputs are pixel-identical for
    the 4:4:4 and 4:2:2 corpus files and an EXIF-rotated copy, their metadata (identify
    -verbose, pixel statistics aside) identical, and a grey file is left to libjpeg.

    /usr/bin/python3 tests/shrink/test_jpegdc.py --dump BUILD/tests/tools/jpegdc-dump \\
        --apply BUILD/tests/tools/pixq-apply [--data tests/data] [-v]

Prints one line per check and "jpegdc: N passed, N failed".
"""

import json
import os
import random
import re
import sys
from pathlib import Path

import checklib
from checklib import run, sanitizer

MAE_420 = 3.0  # mean absolute error in levels of 255, 4:2:0 (measured: 1.7 on autumn)
MAX_420 = 64   # largest error of one sample (measured: 38)
PROGRESSIVE = ["autumn-2560x1600.jpg", "cups-2560x1600.jpg", "volna-5120x2880.jpg"]
# a scan script: DC of each component on its own, 2 bits left, then two refinements
SCANS = """0: 0-0, 0, 2;
1: 0-0, 0, 2;
2: 0-0, 0, 2;
0: 1-63, 0, 0;
0 1 2: 0-0, 2, 1;
1: 1-63, 0, 0;
2: 1-63, 0, 0;
1: 0-0, 1, 0;
0 2: 0-0, 1, 0;
"""
# Cr's first DC scan (Al 1) before Cb's (Al 0), both with table 1 (its DHT sent again), the
# last scan an AC one of a component that had none before
SCANS_REDEFINED = """0: 0-0, 0, 0;
2: 0-0, 0, 1;
1: 0-0, 0, 0;
0: 1-63, 0, 0;
1: 1-63, 0, 0;
2: 0-0, 1, 0;
2: 1-63, 0, 0;
"""
# an interleaved first DC scan, refinements of one component each, then an interleaved one
SCANS_REFINED = """0 1 2: 0-0, 0, 2;
0: 1-63, 0, 0;
1: 1-63, 0, 0;
2: 1-63, 0, 0;
0: 0-0, 2, 1;
1: 0-0, 2, 1;
2: 0-0, 2, 1;
0 1 2: 0-0, 1, 0;
"""


def pnm(data):
    """(width, height, channels, samples) of a binary PNM."""
    m = re.match(rb"P([56])\s+(\d+)\s+(\d+)\s+255\s", data)
    if not m:
        raise ValueError("not a binary PNM")
    return int(m.group(2)), int(m.group(3)), 1 if m.group(1) == b"5" else 3, data[m.end():]


def dump(args, path):
    p = run([args.dump, str(path)])
    return p.returncode, p.stdout, p.stderr.decode(errors="replace").strip()


def djpeg(path):
    return run(["djpeg", "-scale", "1/8", "-pnm", str(path)], check=True).stdout


def make_variants(src, tmp):
    """Progressive files made from a corpus image: name -> (path, exact expected)."""
    ppm = tmp / "src.ppm"
    ppm.write_bytes(run(["djpeg", "-scale", "1/2", "-pnm", str(src)], check=True).stdout)
    scans = tmp / "scans.txt"
    scans.write_text(SCANS)
    redefined = tmp / "redefined.txt"
    redefined.write_text(SCANS_REDEFINED)
    refined = tmp / "refined.txt"
    refined.write_text(SCANS_REFINED)
    # 1000x600: 125 x 75 blocks at full resolution, a padding block past them in an MCU of 2
    odd_blocks = tmp / "odd-blocks.ppm"
    run(["convert", str(ppm), "-crop", "1000x600+0+0", "+repage", str(odd_blocks)], check=True)
    base = tmp / "baseline.jpg"
    base.write_bytes(run(["cjpeg", "-quality", "85", str(ppm)], check=True).stdout)
    out = {}
    for name, cmd, exact in [
            ("grey", ["cjpeg", "-progressive", "-grayscale", str(ppm)], True),
            ("444", ["cjpeg", "-progressive", "-sample", "1x1", str(ppm)], True),
            ("422", ["cjpeg", "-progressive", "-sample", "2x1", str(ppm)], True),
            ("440", ["cjpeg", "-progressive", "-sample", "1x2", str(ppm)], True),
            ("420", ["cjpeg", "-progressive", "-sample", "2x2", str(ppm)], False),
            ("420-restart-1", ["jpegtran", "-progressive", "-restart", "1B", str(base)], False),
            ("444-restart-7", ["cjpeg", "-progressive", "-sample", "1x1", "-restart", "7B",
                               str(ppm)], True),
            ("444-dc-split", ["cjpeg", "-sample", "1x1", "-scans", str(scans), str(ppm)], True),
            ("422-odd-size", None, True),
            ("422-odd-blocks-dc-split", ["cjpeg", "-sample", "2x1", "-scans", str(redefined),
                                         str(odd_blocks)], True),
            ("440-odd-blocks-dc-refined", ["cjpeg", "-sample", "1x2", "-scans", str(refined),
                                           str(odd_blocks)], True),
            ("2x2-2x2-2x1-ten-blocks-an-mcu",
             ["cjpeg", "-progressive", "-sample", "2x2,2x2,2x1", str(ppm)], True)]:
        path = tmp / (name + ".jpg")
        if cmd is None:  # an odd size: partial MCUs at the right and bottom edges
            odd = tmp / "odd.ppm"
            run(["convert", str(ppm), "-crop", "1001x603+0+0", "+repage", str(odd)], check=True)
            cmd = ["cjpeg", "-progressive", "-sample", "2x1", str(odd)]
        path.write_bytes(run(cmd, check=True).stdout)
        out[name] = (path, exact)
    return out, base


def check_exact(args, c, tmp):
    data = Path(args.data) / "corpus"
    files = [(name, data / name, True) for name in PROGRESSIVE]
    variants, _ = make_variants(data / "autumn-2560x1600.jpg", tmp)
    files += [(name, path, exact) for name, (path, exact) in variants.items()]
    for name, path, exact in files:
        rc, out, err = dump(args, path)
        ref = djpeg(path)
        if rc != 0:
            c.check(False, f"{name}: decoded", f"exit {rc}: {err}")
            continue
        w, h, ch, got = pnm(out)
        rw, rh, rch, want = pnm(ref)
        if (w, h, ch) != (rw, rh, rch):
            c.check(False, f"{name}: size", f"{w}x{h}x{ch}, djpeg {rw}x{rh}x{rch}")
        elif exact:
            diff = sum(1 for a, b in zip(got, want) if a != b)
            c.check(diff == 0, f"{name}: {w}x{h} identical to djpeg -scale 1/8",
                    f"{diff} samples differ")
        else:
            errs = [abs(a - b) for a, b in zip(got, want)]
            mae, worst = sum(errs) / len(errs), max(errs)
            c.check(mae <= MAE_420 and worst <= MAX_420,
                    f"{name}: {w}x{h} within MAE {MAE_420}, max {MAX_420} of djpeg",
                    f"MAE {mae:.2f}, max {worst}")


def patched_sof(data, offset_byte, value):
    """A copy of a JPEG whose first SOF2 header has one byte changed."""
    i = data.index(b"\xff\xc2")
    return data[:i + offset_byte] + bytes([value]) + data[i + offset_byte + 1:]


def check_declines(args, c, tmp):
    data = Path(args.data) / "corpus"
    cases = {"baseline": (data / "path-2560x1600.jpg").read_bytes()}
    prog = (data / "autumn-2560x1600.jpg").read_bytes()
    cases["12-bit"] = patched_sof(prog, 4, 12)  # marker, length (2), precision
    cases["arithmetic"] = prog.replace(b"\xff\xc2", b"\xff\xca", 1)
    cases["cut in the first scan"] = prog[:prog.index(b"\xff\xda") + 200]
    # DC scans only: libjpeg's block smoothing would change the DC values
    ppm = tmp / "small.ppm"
    ppm.write_bytes(run(["djpeg", "-scale", "1/8", "-pnm", str(data / "autumn-2560x1600.jpg")],
                        check=True).stdout)
    dc_only = tmp / "dc-only.txt"
    dc_only.write_text("0 1 2: 0-0, 0, 0;\n")
    cases["DC scans only"] = run(["cjpeg", "-scans", str(dc_only), str(ppm)], check=True).stdout
    cases["empty"] = b""
    cases["not a JPEG"] = b"\x89PNG\r\n\x1a\n" + prog[8:4096]
    for name, blob in cases.items():
        path = tmp / "decline.jpg"
        path.write_bytes(blob)
        rc, _, err = dump(args, path)
        c.check(rc == 3 and not sanitizer(err.encode()), f"declines {name}",
                f"exit {rc}: {err[:200]}")


def with_scans(data, total):
    """A copy of a progressive JPEG with its smallest AC scan (the last, here) repeated until
    the file has `total` scans (libjpeg warns of each copy, and takes it)."""
    i = data.index(b"\xff\xda")
    scans = []
    while data[i:i + 2] == b"\xff\xda":
        j = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        while not (data[j] == 0xFF and data[j + 1] != 0 and not 0xD0 <= data[j + 1] <= 0xD7):
            j += 1
        scans.append(data[i:j])
        while data[j + 1] == 0xC4:  # a DHT between scans
            j += 2 + int.from_bytes(data[j + 2:j + 4], "big")
        i = j
    extra = min(scans[1:], key=len) * (total - len(scans))
    return data[:i] + extra + data[i:]


def check_many_scans(args, c, tmp):
    """ImageMagick stops a JPEG at its 1024th scan ("too many scans"): the DC reader decodes a
    file of 1023 scans and declines one of 1024, for ImageMagick to refuse as at any size."""
    prog = run(["convert", "-size", "64x64", "gradient:red-blue", "-interlace", "JPEG", "jpeg:-"],
               check=True).stdout
    for total, want in ((1023, 0), (1024, 3)):
        path = tmp / ("scans-%d.jpg" % total)
        blob = with_scans(prog, total)
        path.write_bytes(blob)
        rc, _, err = dump(args, path)
        c.check(blob.count(b"\xff\xda") == total and rc == want and
                (want == 0 or "too many scans" in err),
                f"{total} scans: {'declined' if want else 'decoded'}", f"exit {rc}: {err[:200]}")


def scan_short(data, nth, restart=False):
    """A copy of a JPEG whose nth scan has lost the byte before the marker that ends its
    entropy-coded data (with restart, before its first RSTn marker)."""
    i = -1
    for _ in range(nth + 1):
        i = data.index(b"\xff\xda", i + 1)
    j = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
    while True:
        j = data.index(b"\xff", j)
        if data[j + 1] == 0 or (0xD0 <= data[j + 1] <= 0xD7 and not restart):
            j += 2
            continue
        return data[:j - 1] + data[j:]


def check_short_scans(args, c, tmp):
    """A DC scan a byte short is declined for that (the bit reader counts its padding)."""
    data = Path(args.data) / "corpus"
    autumn = (data / "autumn-2560x1600.jpg").read_bytes()  # DC: Y+Cb+Cr Al=1, then a refinement
    volna = (data / "volna-5120x2880.jpg").read_bytes()  # DC: Y, Cb, Cr, each in a scan
    ppm = tmp / "small.ppm"
    ppm.write_bytes(run(["djpeg", "-scale", "1/8", "-pnm", str(data / "autumn-2560x1600.jpg")],
                        check=True).stdout)
    restart = run(["cjpeg", "-progressive", "-restart", "7B", str(ppm)], check=True).stdout
    cases = {"an interleaved first DC scan": scan_short(autumn, 0),
             "a DC refinement scan": scan_short(autumn, 6),
             "the first DC scan of one component": scan_short(volna, 0),
             "the last DC scan of one component": scan_short(volna, 2),
             "a restart interval of a first DC scan": scan_short(restart, 0, restart=True)}
    for name, blob in cases.items():
        path = tmp / "short.jpg"
        path.write_bytes(blob)
        rc, _, err = dump(args, path)
        c.check(rc == 3 and "DC scan cut short" in err and not sanitizer(err.encode()),
                f"declines {name} a byte short as cut short", f"exit {rc}: {err[:200]}")


def check_cuts_and_damage(args, c, tmp):
    """Every cut declines or gives the whole file's image; damage never crashes."""
    src = Path(args.data) / "corpus" / "cups-2560x1600.jpg"
    whole = src.read_bytes()
    rc, full, _ = dump(args, src)
    rng = random.Random(7)
    cuts = sorted({rng.randrange(2, len(whole)) for _ in range(40)} | {len(whole) - 2})
    bad = []
    decoded = 0
    for cut in cuts:
        path = tmp / "cut.jpg"
        path.write_bytes(whole[:cut])
        r, out, err = dump(args, path)
        if r == 0:
            decoded += 1
        if sanitizer(err.encode()) or r not in (0, 3) or (r == 0 and out != full):
            bad.append(f"cut at {cut}: exit {r}")
    c.check(not bad and decoded > 0, f"{len(cuts)} cuts decline or match the whole file "
            f"({decoded} decoded)", "; ".join(bad[:5]))
    bad = []
    for i in range(60):
        blob = bytearray(whole[:200000])
        for _ in range(rng.randrange(1, 20)):
            blob[rng.randrange(2, len(blob))] = rng.randrange(256)
        path = tmp / "damaged.jpg"
        path.write_bytes(bytes(blob))
        r, _, err = dump(args, path)
        if sanitizer(err.encode()) or r not in (0, 3):
            bad.append(f"copy {i}: exit {r} {err[-300:]}")
    c.check(not bad, "60 damaged copies decline or decode without a crash", "; ".join(bad[:3]))


def apply(args, job, src, out, dc):
    env = dict(os.environ, PIXQ_JPEG_DC="1" if dc else "0", PIXQ_LOG_LEVEL="debug")
    p = run([args.apply, "--data", args.data, str(job), str(src), str(out)], env=env)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0 or sanitizer(p.stderr):
        raise RuntimeError(f"pixq-apply exit {p.returncode}: {err[-500:]}")
    return json.loads(p.stdout), err


STAT = re.compile(r"^\s*(min|max|mean|standard deviation|kurtosis|skewness|entropy|"
                  r"filename|file size|filesize|number pixels|pixels per second|user time|"
                  r"elapsed time|date:|signature|image:|colors|histogram|\d+: \()", re.I)


def metadata(path):
    text = run(["identify", "-verbose", str(path)], check=True).stdout.decode(errors="replace")
    return [line for line in text.splitlines() if not STAT.match(line)]


def check_worker(args, c, tmp):
    job = tmp / "job.json"
    save = {"image_identifier": "t", "extension": ".jpg", "save_metadata": True}
    # small enough for 1/8 of every file (the rotated one is 1283x797)
    job.write_text(json.dumps({"application_id": "t", "src": "x", "functions": [
        {"name": "resize_to_fit", "params": {"width": 100, "height": 100}, "save": save},
        {"name": "resize_to_fill", "params": {"width": 64, "height": 64},
         "save": {"image_identifier": "u", "extension": ".png"}}]}))
    data = Path(args.data)
    rotated = tmp / "rotated.jpg"
    rotated.write_bytes(run(["jpegtran", "-progressive", "-copy", "all",
                             str(data / "images" / "cups-orient6-1283x797.jpg")],
                            check=True).stdout)
    for src in [data / "corpus" / n for n in PROGRESSIVE] + [rotated]:
        outs = {}
        for dc in (True, False):
            out = tmp / f"out-{int(dc)}-{src.stem}"
            out.mkdir()
            res, log = apply(args, job, src, out, dc)
            outs[dc] = res
            if dc:
                c.check("event=jpeg_dc " in log and "jpeg_dc_declined" not in log,
                        f"{src.name}: read by the DC reader",
                        " ".join(re.findall(r"event=decoded .*", log)))
        for a, b in zip(outs[True]["outputs"], outs[False]["outputs"]):
            ae = run(["compare", "-metric", "AE", a["file"], b["file"], "null:"])
            c.check(ae.stderr.strip() == b"0" and (a["width"], a["height"]) ==
                    (b["width"], b["height"]),
                    f"{src.name} -> {a['image_identifier']}: same pixels as libjpeg's 1/8",
                    ae.stderr.decode().strip())
            c.check(metadata(a["file"]) == metadata(b["file"]),
                    f"{src.name} -> {a['image_identifier']}: same metadata")
        c.check(outs[True]["original_meta"] == outs[False]["original_meta"],
                f"{src.name}: same original_meta")
    (tmp / "grey").mkdir()
    grey = make_variants(data / "corpus" / "autumn-2560x1600.jpg", tmp / "grey")[0]["grey"][0]
    out = tmp / "out-grey"
    out.mkdir()
    _, log = apply(args, job, grey, out, True)
    c.check("jpeg_dc_declined reason=grey" in log, "a grey JPEG is left to libjpeg",
            " ".join(re.findall(r"event=jpeg_dc.*", log)))


if __name__ == "__main__":
    sys.exit(checklib.main("jpegdc", __doc__, (check_exact, check_declines, check_many_scans,
                                               check_short_scans, check_cuts_and_damage,
                                               check_worker)))
