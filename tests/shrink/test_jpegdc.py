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
    end, a file of DC scans only (libjpeg's block smoothing would change its DC values) or cut in
    the AC scan of a component that had none before (smoothed in the rows it lacks), a file
    of 1024 scans (ImageMagick refuses it; one of 1023 is decoded); every cut of a progressive
    file (at random, and right after the first FF of each scan's data) either declines or gives
    exactly the full file's image (the DC scans were complete), and damaged copies (seeded
    random bytes) decline or decode, never crash (sanitizer builds report through stderr); a
    DC scan one byte short (its last byte, before the marker that ends it or a restart marker,
    removed) is declined as cut short: interleaved, of one component, a refinement, a restart
    interval;
  - tables, frame and scan headers, markers, colour spaces and restart markers (edited corpus
    files: Huffman and quantisation tables libjpeg refuses, segments of length 1, ending the
    file or a byte past it, tables a byte short at the end, a frame header a byte long, 12
    blocks an MCU, a scan header a byte long, sampling factors, sizes and the pixel limit's
    edge, Adobe transforms 0-2,
    JFIF/Adobe/R-G-B readings, fill bytes, bad progressions, a cut after a restart marker's FF):
    declined for the reason expected, or decoded as djpeg -scale 1/8 decodes them; and grey
    files built here: DC coefficients at the ends of an int16 by long and short codes, 16-bit
    codes and quantisers, a 12-bit difference, AC scans of 9..63 and 10..63 only, libjpeg's
    range limit;
  - the worker's path (pixq-apply, PIXQ_JPEG_DC=1 against PIXQ_JPEG_DC=0, the same job):
    the DC reader is taken (the "jpeg_dc" debug event; with 0 it is not), the outputs are
    pixel-identical for the 4:4:4 and 4:2:2 corpus files and an EXIF-rotated copy, their
    metadata (identify -verbose, pixel statistics aside) identical, and a grey file is left to
    libjpeg.

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


def check_blob(args, c, path, name, blob, why):
    """`blob`, written to `path`: declined for `why`, or (None) decoded as djpeg -scale 1/8
    decodes it."""
    path.write_bytes(blob)
    rc, out, err = dump(args, path)
    if why is not None:
        c.check(rc == 3 and err == "declined: " + why, f"declines {name}: {why}",
                f"exit {rc}: {err[:200]}")
    else:
        ref = run(["djpeg", "-scale", "1/8", "-pnm", str(path)]).stdout  # (2: a warning)
        c.check(rc == 0 and out == ref, f"{name}: identical to djpeg -scale 1/8",
                f"exit {rc}: {err[:200]}")


def make_variants(src, tmp):
    """Progressive files made from a corpus image: name -> (path, exact expected)."""
    ppm = tmp / "src.ppm"
    ppm.write_bytes(run(["djpeg", "-scale", "1/2", "-pnm", str(src)], check=True).stdout)
    scans = tmp / "scans.txt"
    scans.write_text(SCANS)
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
            ("422-odd-size", None, True)]:
        path = tmp / (name + ".jpg")
        if cmd is None:  # an odd size: partial MCUs at the right and bottom edges
            odd = tmp / "odd.ppm"
            run(["convert", str(ppm), "-crop", "1001x603+0+0", "+repage", str(odd)], check=True)
            cmd = ["cjpeg", "-progressive", "-sample", "2x1", str(odd)]
        path.write_bytes(run(cmd, check=True).stdout)
        out[name] = (path, exact)
    return out, base


def more_variants(tmp):
    """Progressive files made from make_variants' image (check_exact's alone): name -> (path,
    exact expected)."""
    ppm = tmp / "src.ppm"
    redefined = tmp / "redefined.txt"
    redefined.write_text(SCANS_REDEFINED)
    refined = tmp / "refined.txt"
    refined.write_text(SCANS_REFINED)
    # 1000x600: 125 x 75 blocks at full resolution, a padding block past them in an MCU of 2
    odd_blocks = tmp / "odd-blocks.ppm"
    run(["convert", str(ppm), "-crop", "1000x600+0+0", "+repage", str(odd_blocks)], check=True)
    out = {}
    for name, cmd in [
            ("422-odd-blocks-dc-split", ["cjpeg", "-sample", "2x1", "-scans", str(redefined),
                                         str(odd_blocks)]),
            ("440-odd-blocks-dc-refined", ["cjpeg", "-sample", "1x2", "-scans", str(refined),
                                           str(odd_blocks)]),
            ("2x2-2x2-2x1-ten-blocks-an-mcu",
             ["cjpeg", "-progressive", "-sample", "2x2,2x2,2x1", str(ppm)])]:
        path = tmp / (name + ".jpg")
        path.write_bytes(run(cmd, check=True).stdout)
        out[name] = (path, True)
    return out


def check_exact(args, c, tmp):
    data = Path(args.data) / "corpus"
    files = [(name, data / name, True) for name in PROGRESSIVE]
    variants, _ = make_variants(data / "autumn-2560x1600.jpg", tmp)
    variants.update(more_variants(tmp))
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
    # cut in its last scan, Cr's first AC one: libjpeg smooths Cr's DC in the rows it lacks
    redefined = tmp / "redefined.txt"
    redefined.write_text(SCANS_REDEFINED)
    blob = run(["cjpeg", "-sample", "1x1", "-scans", str(redefined), str(ppm)], check=True).stdout
    last = blob.rindex(b"\xff\xda")
    cases["cut in an AC scan of a component without one before"] = blob[:(last + len(blob)) // 2]
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
    # and after the first FF of each scan's data (the last byte an FF: a read past it is ASan's)
    scans = [i + 2 + int.from_bytes(whole[i + 2:i + 4], "big")
             for i in range(len(whole)) if whole[i:i + 2] == b"\xff\xda"]
    after_ff = {whole.index(b"\xff", s) + 1 for s in scans}
    cuts = sorted({rng.randrange(2, len(whole)) for _ in range(40)} | {len(whole) - 2} | after_ff)
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


def segment(m, payload):
    """A marker segment: FF m, its length, the payload."""
    return bytes([0xFF, m]) + (len(payload) + 2).to_bytes(2, "big") + payload


def dht(tc, th, counts, vals):
    return segment(0xC4, bytes([tc << 4 | th] + counts + vals))


def before_scan(data, blob, nth=0):
    """A copy of a JPEG with blob inserted before its nth SOS marker."""
    i = -1
    for _ in range(nth + 1):
        i = data.index(b"\xff\xda", i + 1)
    return data[:i] + blob + data[i:]


def patched(data, offset, blob):
    return data[:offset] + blob + data[offset + len(blob):]


def with_ids(data, ids):
    """A copy of a 3-component JPEG (ids 1, 2, 3) whose components have the given ids, in its
    frame header and every scan header."""
    out = bytearray(data)
    i = data.index(b"\xff\xc2") + 10
    out[i:i + 9:3] = ids
    i = data.index(b"\xff\xda")
    while i >= 0:
        for k in range(data[i + 4]):
            out[i + 5 + 2 * k] = ids[data[i + 5 + 2 * k] - 1]
        i = data.find(b"\xff\xda", i + 1)
    return bytes(out)


def header_cases(prog):
    """(name, file, None for djpeg's image or the reason it is declined) made from a 4:4:4
    progressive JPEG of cjpeg's (JFIF, ids 1, 2, 3, DC tables 0, 1, 1 in its first scan):
    tables, frame headers, markers and colour spaces at the edges of what jpegdc takes."""
    sof = prog.index(b"\xff\xc2") + 4  # its payload: P, Y, X, Nf, then Ci, HiVi, Tqi
    app0 = prog.index(b"\xff\xe0")
    nojfif = prog[:app0] + prog[app0 + 2 + int.from_bytes(prog[app0 + 2:app0 + 4], "big"):]
    dc9 = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # T.81 K.3: categories 0..11
    bad_table = "bad Huffman table"
    sos = prog.index(b"\xff\xda")  # DC, 1 table 0, 2 and 3 table 1, Al 1; then Y's AC 1..5
    sos2 = prog.index(b"\xff\xda", sos + 1)
    ac = prog.rindex(b"\xff\xc4", 0, sos2)  # its DHT, SOS and data
    ac_end = prog.index(b"\xff\xc4", sos2)
    first = prog[sos:prog.index(b"\xff\xc4", sos)]  # the first scan, header and data
    bad_scan = "bad scan header"
    progression = "bad progression"
    return [
        # Huffman tables libjpeg refuses (a DC table 0 redefined before the first scan)
        ("a code of all ones", before_scan(prog, dht(0, 0, [2] + [0] * 15, [0, 1])), bad_table),
        ("more codes than lengths", before_scan(prog, dht(0, 0, [3] + [0] * 15, [0, 1, 2])),
         bad_table),
        ("a DC symbol 16", before_scan(prog, dht(0, 0, dc9, list(range(11)) + [16])), bad_table),
        ("table class 2", before_scan(prog, dht(2, 0, dc9, list(range(12)))), bad_table),
        ("table 4", before_scan(prog, dht(0, 4, dc9, list(range(12)))), bad_table),
        ("257 symbols", before_scan(prog, dht(1, 3, [0] * 8 + [255, 2] + [0] * 6,
                                               list(range(256)) + [0])), bad_table),
        # quantisation tables: precision 2 (64 3-byte values were it read as such), table 4
        ("DQT precision 2", before_scan(prog, segment(0xDB, bytes([0x20]) + bytes(192))),
         "bad quantisation table"),
        ("DQT table 4", before_scan(prog, segment(0xDB, bytes([0x04]) + bytes(64))),
         "bad quantisation table"),
        # a table a byte short, its segment the last bytes of the file (a read past the table
        # would be a read past the file: ASan's)
        ("a DQT table a byte short ending the file", prog[:-2] + segment(0xDB, bytes(64)),
         "bad quantisation table"),
        ("a DHT table a value short ending the file",
         prog[:-2] + segment(0xC4, bytes([0x10, 1] + [0] * 15)), bad_table),
        # segments: length 1, a last one ending the file (no EOI), DRI of 4 bytes
        ("a COM segment of length 1", before_scan(prog, b"\xff\xfe\x00\x01"),
         "truncated marker segment"),
        ("a COM segment ending the file", prog[:-2] + segment(0xFE, b"ab"), None),
        ("a COM segment a byte longer than the file", prog[:-2] + b"\xff\xfe\x00\x05ab",
         "truncated marker segment"),
        ("DRI of length 6", before_scan(prog, segment(0xDD, bytes(4))), "bad restart interval"),
        # frame headers
        ("sampling 1x0", patched(prog, sof + 10, b"\x10"), "sampling factors other than 1 and 2"),
        ("quantisation table 4 in SOF", patched(prog, sof + 11, b"\x04"),
         "sampling factors other than 1 and 2"),
        ("two components with one id", patched(prog, sof + 12, b"\x02"),
         "two components with one id"),
        ("two SOF2", before_scan(prog, prog[sof - 4:sof + 15]), "bad frame header"),
        ("a frame header a byte longer than its components (libjpeg refuses it)",
         prog[:sof - 2] + b"\x00\x12" + prog[sof:sof + 15] + b"\x00" + prog[sof + 15:],
         "bad frame header"),
        ("every component 2x2: 12 blocks an MCU",
         patched(patched(patched(prog, sof + 7, b"\x22"), sof + 10, b"\x22"), sof + 13, b"\x22"),
         "too many blocks in an MCU"),
        ("width 0", patched(prog, sof + 3, b"\x00\x00"), "size"),
        ("width 65501", patched(prog, sof + 3, (65501).to_bytes(2, "big")), "size"),
        ("65500x20000, over 2^30 pixels",
         patched(prog, sof + 1, (20000).to_bytes(2, "big") + (65500).to_bytes(2, "big")), "size"),
        ("two components", prog[:sof - 2] + b"\x00\x0e" + prog[sof:sof + 5] + b"\x02" +
         prog[sof + 6:sof + 12] + prog[sof + 15:], "neither grey nor three components"),
        # colour spaces: YCbCr unless Adobe's transform 0, or ids R, G, B without JFIF
        ("no JFIF", nojfif, None),
        ("Adobe, transform 1", before_scan(nojfif, segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01")),
         None),
        ("Adobe, transform 2 (YCCK: libjpeg warns, reads YCbCr)",
         before_scan(nojfif, segment(0xEE, b"Adobe\0\x64\0\0\0\0\x02")), None),
        ("Adobe, transform 0", before_scan(nojfif, segment(0xEE, b"Adobe\0\x64\0\0\0\0\x00")),
         "RGB components"),
        # too short for libjpeg (12 bytes), whose 12th byte would be the next one's length 0
        ("a short Adobe marker", before_scan(nojfif, segment(0xEE, b"Adobe\0\x64\0\0")), None),
        ("Adobe, transform 0, after the first scan",
         before_scan(nojfif, segment(0xEE, b"Adobe\0\x64\0\0\0\0\x00"), 1), None),
        ("ids R, G, B", with_ids(nojfif, b"RGB"), "RGB components"),
        ("ids R, G, B with JFIF", with_ids(prog, b"RGB"), None),
        ("ids R, G, B with a short JFIF",
         before_scan(with_ids(nojfif, b"RGB"), segment(0xE0, b"JFIF\0\x01\x02")),
         "RGB components"),
        # markers
        ("DNL", before_scan(prog, segment(0xDC, b"\x00\x10")), "unexpected marker"),
        ("DAC", before_scan(prog, segment(0xCC, b"\x00\x10")), "arithmetic coding"),
        ("JPG", before_scan(prog, segment(0xC8, b"\x00\x10")), "unknown marker"),
        ("JPG0", before_scan(prog, segment(0xF0, b"\x00\x10")), "unknown marker"),
        ("APP15", before_scan(prog, segment(0xEF, b"\x00\x10")), None),
        ("TEM", before_scan(prog, b"\xff\x01"), None),
        ("a second SOI", before_scan(prog, b"\xff\xd8"), "unexpected marker"),
        ("fill bytes before a marker", before_scan(prog, b"\xff\xff"), None),
        ("sampling 3x1", patched(prog, sof + 7, b"\x31"), "sampling factors other than 1 and 2"),
        # scan headers
        ("a scan of four components",
         before_scan(prog, segment(0xDA, bytes([4, 1, 0, 2, 0x10, 3, 0x10, 1, 0, 0, 0, 1]))),
         bad_scan),
        ("a scan header a byte long (libjpeg refuses it)",
         before_scan(prog, segment(0xDA, bytes([1, 1, 0, 0, 0, 0, 0]))), bad_scan),
        ("a scan of one component twice",
         before_scan(prog, segment(0xDA, bytes([2, 1, 0, 1, 0, 0, 0, 1]))), bad_scan),
        ("an AC scan with Ss > Se", before_scan(prog, segment(0xDA, bytes([1, 1, 0, 5, 1, 0]))),
         progression),
        ("a DC scan with Se 5", before_scan(prog, segment(0xDA, bytes([1, 1, 0, 0, 5, 0]))),
         progression),
        ("an AC scan of two components",
         before_scan(prog, segment(0xDA, bytes([2, 1, 0, 2, 0, 1, 5, 0]))), progression),
        ("a DC scan with Al 14", before_scan(prog, segment(0xDA, bytes([1, 1, 0, 0, 0, 14]))),
         progression),
        # (an AC table 0 defined: the memory past the DC tables)
        ("DC table 4 in a scan", before_scan(patched(prog, sos + 6, b"\x40"),
                                             dht(1, 0, dc9, list(range(12)))), "bad first DC scan"),
        ("an undefined DC table", patched(prog, sos + 6, b"\x20"), "bad first DC scan"),
        ("an undefined quantisation table", patched(prog, sof + 8, b"\x02"), "bad first DC scan"),
        ("a first DC scan twice", before_scan(prog, first, 1), "bad first DC scan"),
        ("a DC refinement of a bit already known", patched(prog, sos + 13, b"\x00"),
         "bad DC refinement scan"),
        ("an AC scan before the DC", before_scan(prog, prog[ac:ac_end]), "bad AC scan"),
        ("an undefined AC table", patched(prog, sos2 + 6, b"\x03"), "bad AC scan"),
        # entropy-coded data: 16 one bits, no code of a table
        ("a code the DC table lacks (interleaved)", patched(prog, sos + 14, b"\xff\x00\xff\x00"),
         "bad DC code"),
    ]


def restart_cases(restart):
    """Cases made from a progressive JPEG with a restart marker after every MCU row."""
    i = restart.index(b"\xff\xda")
    j = restart.index(b"\xff\xda", i + 1)
    filled = first = restart[i:j]
    for n in range(8):  # (FF Dn is only a marker in entropy-coded data: stuffing adds a 00)
        filled = filled.replace(bytes([0xFF, 0xD0 + n]), bytes([0xFF, 0xFF, 0xD0 + n]))
    k = first.index(b"\xff\xd0")
    swapped = first[:k] + b"\xff\xd1" + first[k + 2:]
    rst = i + k  # the first restart marker's FF
    return [("fill bytes before every restart marker of a DC scan",
             restart[:i] + filled + restart[j:], None),
            ("a file cut after the FF of a restart marker", restart[:rst + 1],
             "restart marker missing"),
            ("a restart marker out of order", restart[:i] + swapped + restart[j:],
             "restart marker missing")]


def check_headers(args, c, tmp):
    """Tables, frame headers, markers, colour spaces and restart markers: declined for the
    reason given, or decoded as djpeg -scale 1/8 decodes them."""
    data = Path(args.data) / "corpus"
    ppm = tmp / "small.ppm"
    ppm.write_bytes(run(["djpeg", "-scale", "1/8", "-pnm", str(data / "autumn-2560x1600.jpg")],
                        check=True).stdout)
    # 320x200, 4:4:4 with cjpeg's scan script, as autumn-2560x1600.jpg (header_cases)
    prog = run(["cjpeg", "-progressive", "-sample", "1x1", str(ppm)], check=True).stdout
    restart = run(["cjpeg", "-progressive", "-sample", "1x1", "-restart", "1", str(ppm)],
                  check=True).stdout
    for name, blob, why in header_cases(prog) + restart_cases(restart):
        check_blob(args, c, tmp / "header.jpg", name, blob, why)
    # the pixel limit: 320x200 is 64,000 pixels, taken at a limit of exactly that
    path = tmp / "limit.jpg"
    path.write_bytes(prog)
    for limit, want in ((64000, 0), (64199, 0), (63999, 3)):
        p = run([args.dump, str(path), str(limit)])
        c.check(p.returncode == want and (want == 0 or p.stderr == b"declined: size\n"),
                f"320x200 at a limit of {limit} pixels: {'declined' if want else 'decoded'}",
                f"exit {p.returncode}: {p.stderr[:200]}")


def huff_codes(counts, vals):
    """The canonical code of each symbol (T.81 C.2): symbol -> (code, length)."""
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes.setdefault(vals[k], (code, length))
            code += 1
            k += 1
        code <<= 1
    return codes


def entropy(fields):
    """(value, bits) fields as entropy-coded bytes: FF stuffed, padded with 1 bits."""
    acc = n = 0
    out = bytearray()
    for value, bits in fields + [(0x7F, 7)]:
        acc = acc << bits | value & ((1 << bits) - 1)
        n += bits
        while n >= 8:
            byte = acc >> (n - 8) & 0xFF
            out += bytes([byte, 0]) if byte == 0xFF else bytes([byte])
            n -= 8
    return bytes(out)


DC9 = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # T.81 table K.3: categories 0..11


def grey_jpeg(width, dcs, quant=1, al=0, counts=DC9, vals=tuple(range(12)), ss=1, nc=1):
    """A progressive grey JPEG width x 8 of the given DC coefficients (one a block), its AC
    coefficients all 0: a DC scan with the Huffman table given and point transform al, al
    refinements, then one AC scan of EOBs, of coefficients ss..63. A quantiser above 255 makes a
    16-bit DQT. With nc=3, three components (YCbCr) of those coefficients each, their DC scans
    interleaved."""
    assert len(dcs) == -(-width // 8)
    if quant < 256:
        dqt = bytes([0]) + bytes([quant]) * 64
    else:
        dqt = b"\x10" + quant.to_bytes(2, "big") * 64
    sof = b"\x08\x00\x08" + width.to_bytes(2, "big") + bytes([nc])
    sof += b"".join(bytes([k + 1, 0x11, 0]) for k in range(nc))
    comps = b"".join(bytes([k + 1, 0]) for k in range(nc))
    out = b"\xff\xd8" + segment(0xDB, dqt) + segment(0xC2, sof)
    out += dht(0, 0, list(counts), list(vals)) + dht(1, 0, [1] + [0] * 15, [0])
    codes, prev, fields = huff_codes(counts, vals), 0, []
    for dc in dcs:
        diff, prev = (dc >> al) - prev, dc >> al
        cat = abs(diff).bit_length()
        fields += [codes[cat], (diff if diff >= 0 else diff + (1 << cat) - 1, cat)] * nc
    out += segment(0xDA, bytes([nc]) + comps + bytes([0, 0, al])) + entropy(fields)
    for a in range(al, 0, -1):
        out += segment(0xDA, bytes([nc]) + comps + bytes([0, 0, a << 4 | (a - 1)]))
        out += entropy([(dc >> (a - 1) & 1, 1) for dc in dcs for _ in range(nc)])
    for k in range(nc):
        out += segment(0xDA, bytes([1, k + 1, 0, ss, 63, 0])) + entropy([(0, 1)] * len(dcs))
    return out + b"\xff\xd9"


def climb(target, last, n):
    """n DC coefficients going to `target` (+-2047 at most a step) by a step of `last`, then
    back by the same step (a coefficient out of range is caught where it is decoded) and
    staying there."""
    s = 1 if target > 0 else -1
    start = target - last
    k = (abs(start) - 1) // 2047
    dcs = [s * (abs(start) - 2047 * k) + s * 2047 * j for j in range(k + 1)] + [target]
    return dcs + [start] * (n - len(dcs))


def built_cases():
    """(name, file, None or the reason it is declined) of grey files built by grey_jpeg: DC
    coefficients at the ends of an int16 (libjpeg wraps those past them, jpegdc declines
    them), reached by a long code (step by step) or a short one (several blocks a look-up),
    long codes, large quantisers, a DC difference of 12 bits."""
    out_of_range = "DC coefficient out of range"
    cases = []
    for target in (32767, -32768, 32768, -32769):
        for last, how in ((2047 if target > 0 else -2047, "a long"), (1 if target > 0 else -1,
                                                                         "a short")):
            why = out_of_range if target in (32768, -32769) else None
            cases.append((f"DC {target} by {how} code", grey_jpeg(192, climb(target, last, 24)),
                          why))
    # a look-up of four blocks (0, 0, 0, +1) whose fourth leaves the range, the fifth back
    dcs = climb(32767, 2047, 17) + [32767, 32767, 32767, 32768, 32767, 32767, 32767]
    cases.append(("DC 32768 fourth in a look-up", grey_jpeg(192, dcs), out_of_range))
    # the same in an interleaved scan of three components
    for target in (32767, 32768):
        cases.append((f"DC {target} by a long code, three components interleaved",
                      grey_jpeg(192, climb(target, 2047, 24), nc=3),
                      out_of_range if target == 32768 else None))
    cases.append(("DC 8191 x 4, Al 2", grey_jpeg(192, [4 * x for x in climb(8191, 1, 24)], al=2),
                  None))
    cases.append(("DC 8192 x 4, Al 2", grey_jpeg(192, [4 * x for x in climb(8192, 1, 24)], al=2),
                  out_of_range))
    rng = random.Random(5)
    dcs = [rng.choice((0, 0, 0, 5, -200, 1000)) for _ in range(40)]
    # a code for every length 1..16, difference 0 (category 0) the 16-bit one
    cases.append(("16-bit codes", grey_jpeg(320, dcs, counts=[1] * 16,
                                            vals=list(range(1, 16)) + [0]), None))
    small = [rng.randrange(-4, 5) for _ in range(40)]
    cases.append(("quantiser 300 (16-bit DQT)", grey_jpeg(320, small, quant=300), None))
    cases.append(("quantiser 32767", grey_jpeg(320, small, quant=32767), None))
    cases.append(("quantiser 32768", grey_jpeg(320, small, quant=32768), "bad first DC scan"))
    # libjpeg takes DC categories up to 15; an 8-bit JPEG's differences have 11 bits at most
    cases.append(("a difference of 2048 (12 bits)",
                  grey_jpeg(320, [-1000, 1048] + [0] * 38, counts=DC9[:9] + [1] + [0] * 6,
                            vals=list(range(13))), "bad DC code"))
    # libjpeg smooths the DC of a component none of whose coefficients 1..9 is known
    wavy = [rng.randrange(-300, 300) for _ in range(40)]
    cases.append(("an AC scan of 9..63 only", grey_jpeg(320, wavy, ss=9), None))
    cases.append(("an AC scan of 10..63 only", grey_jpeg(320, wavy, ss=10),
                  "libjpeg would smooth the DC (no AC scan)"))
    # libjpeg's range limit after the inverse DCT (clamped, then wrapping), and its rounding
    sweep = list(range(0, 8300, 7)) + list(range(8300, -8300, -7))
    cases.append(("DC 0..8300..-8300, the range limit", grey_jpeg(8 * len(sweep), sweep), None))
    return cases


def check_built(args, c, tmp):
    """Files built here (grey; three components for an interleaved scan): declined for the
    reason given, or decoded as djpeg -scale 1/8 decodes them."""
    for name, blob, why in built_cases():
        check_blob(args, c, tmp / "built.jpg", name, blob, why)


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
            else:  # PIXQ_JPEG_DC=0: libjpeg decodes every scan, the DC reader is not offered it
                c.check("event=jpeg_dc" not in log, f"{src.name}: not read by the DC reader "
                        "with PIXQ_JPEG_DC=0", " ".join(re.findall(r"event=jpeg_dc.*", log)))
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
                                               check_headers, check_built, check_worker)))
