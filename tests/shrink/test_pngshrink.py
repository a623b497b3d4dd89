#!/usr/bin/python3
"""The PNG reader that box-averages row by row (worker/pngshrink.c).

Checks:

  - exactness: pngshrink-dump's output for RGB and RGBA PNGs (noise, gradients, alpha from 0
    to 255 with fully transparent regions; odd sizes, where a box is not a whole number of
    pixels), palette PNGs of 8, 4, 2 and 1 bits (every colour used; tRNS with 0, 255 and
    alphas between, shorter than the palette), grey ones of 8, 4, 2 and 1 bits (each level
    scaled to 8 bits as libpng does) and 8-bit grey+alpha ones, and Adam7 files (RGB, RGBA,
    palettes of 8 bits with tRNS and 1 bit, grey of 8 and 2 bits, grey+alpha; sizes from 1x1,
    where passes are empty, to 301x203) at
    factors 2, 4 and 8 is byte for byte the area
    average computed here of the pixels they stand for: each pixel
    the mean of the source under it, a source pixel weighted by its overlap, rounded to nearest,
    the colour weighted by alpha, a fully transparent box 0,0,0,0;
  - the filters: RGB, RGBA, grey+alpha and palette (8 and 2 bits) files, plain and Adam7 (each pass's first
    row against zeros), whose rows use every filter type (None, Sub, Up, Average,
    Paeth; each as the first row, whose row above is zeros; runs of Paeth rows of odd and even
    lengths, as the reader undoes two at once; rows of few levels, where Paeth's distances tie),
    1, 2, 3 and 37 pixels wide, in up to 40 IDAT chunks with empty ones among them, decode to
    the box average of the pixels before filtering; a 512-byte zlib window over less data; a
    1-bit palette image in one IDAT chunk of 8.75 MB, within libpng's bound (a byte a pixel);
    a light opaque 315x315 RGBA image at 1/2, whose boxes' sums pass 2^32;
    an Adam7 image in one IDAT chunk of 9.75 MB, within libpng's bound for it (6 bytes more a
    row), beyond it without interlacing;
  - what it declines and why: 16-bit RGB, grey or grey+alpha (Adam7 too), colour type 5 and
    interlace method 2 (ImageMagick's error then), tRNS or PLTE in a grey+alpha, an
    RGB or grey file; a 16-bit palette, a palette without PLTE, two PLTE or tRNS chunks, a PLTE of 257
    colours, of more than 2^depth or not of whole colours, tRNS before PLTE, longer than it or
    with a bad CRC, an index past the palette, even by one (8 and 4 bits; ImageMagick's own error
    then), filter type 5 in a palette file; another chunk
    than text after IDAT, an IDAT after that, text chunks ImageMagick reads otherwise than as a
    plain property or libpng drops (a raw profile, "density", "page", "png:...", "icc:...",
    "exif:...", "png:" alone, a keyword empty, over 79 bytes or without its NUL, a zTXt of
    method 1, without
    data, with a bad or overlong stream, text over 64 KB (64 KB is taken), a bad CRC, 65 of
    them), a file cut
    short, a bad CRC in IHDR, IEND or one of several IDAT chunks, a zlib error under a good CRC,
    bytes or a second stream after the zlib stream, a stream one byte short or long or cut
    short, a bad Adler-32, a small zlib window over more data (512 bytes and 2 KB over 2.3 KB),
    filter types 5 and 255, an IHDR of 14 bytes, a file cut a byte into its last CRC or an
    IEND without its CRC, an
    unknown critical chunk, a chunk type not of letters, an ancillary chunk over 8 MB, a passed
    deadline, a pixel limit below the size (and of -1; exactly the size is taken); damaged
    copies (seeded random bytes) decline or decode, never crash;
  - the worker's path (pixq-apply, the same job with PIXQ_PNG_SHRINK=1, PIXQ_PNG_SHRINK=0 and
    PIXQ_SHRINK_ON_LOAD=0): the reader is taken ("png_shrink" debug event, by=decoder) for the
    RGB/RGBA and palette files (216 colours, with tRNS, with a tRNS of 255s, 256 greys, two
    colours at 1 bit), grey files (8 and 2 bits), grey+alpha files, Adam7 files (RGB, RGBA,
    palette with tRNS, 2-bit grey, grey+alpha; the corpus PNG rewritten by ImageMagick with -interlace PNG), with sides
    multiples of the factor or not (one with every ancillary chunk
    the ping reads as the read does, an ICC profile and an EXIF orientation among them; one with
    text chunks before and after the image data, which become the same properties) and the
    corpus PNG at 1/2, 1/4 and 1/8; not offered at 3/8 (the output is then
    PIXQ_PNG_SHRINK=0's, byte for byte); declined with its reason for the
    others; output sizes equal; pixels within MAE_MAX of the full decode (or no further from
    it than PIXQ_PNG_SHRINK=0's); metadata (identify -verbose, pixel
    statistics aside; when both outputs are palette PNGs, their palette size and bit
    depth too, which follow the colours) equal to PIXQ_PNG_SHRINK=0's; a declined file (or PIXQ_PNG_SHRINK=0) is
    decoded once, then box-filtered (no "shrink_on_load_missed" second decode); a bad CRC or cut file still gets
    ImageMagick's "cannot read the PNG image" error.

    /usr/bin/python3 tests/shrink/test_pngshrink.py --dump BUILD/tests/shrink/pngshrink-dump \\
        --apply BUILD/tests/tools/pixq-apply --props BUILD/tests/shrink/props-dump \\
        [--data tests/data] [-v]

Prints one line per check and "pngshrink: N passed, N failed".
"""

import difflib
import functools
import itertools
import json
import math
import os
import random
import re
import struct
import sys
import zlib
from pathlib import Path

import checklib
from checklib import run, sanitizer

# Mean absolute error against the full decode, fraction of the range (compare -metric MAE).
# The corpus PNG: measured worst 0.0012 (cascade at 1/8; PIXQ_PNG_SHRINK=0: 0.0012). Sides that
# are not multiples of the factor: 0.0018 for 1029x1031 -> 128x128 through 129x129 (0.0029
# without the reader). The reader averages by area for them; when its last box column and row
# held only the pixels left (as libjpeg's scaled decode does), the rest of the tree stretched
# them like the others, moving the picture by part of a pixel: 0.0076 there, and 0.0290 for
# 97x61 -> 10x6 (now 0.0095; 0.0106 without the reader), so such sources used to be declined.
MAE_MAX = 0.004
SIZES = [(301, 203), (256, 160), (97, 61), (9, 6)]  # odd: fractional boxes; 9x6 at 1/4: 3x2 boxes
FACTORS = [2, 4, 8]
PALETTES = [(8, False), (8, True), (4, False), (2, True), (1, False)]  # (bit depth, tRNS)
GREYS = [8, 4, 2, 1]  # bit depths


# ---------------------------------------------------------------- PNG files

def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def paeth(a, b, c):
    """The PNG spec's Paeth predictor, in the spec's form."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind, row, prior, bpp):
    """`row` (bytes) filtered with PNG filter type `kind` (0-4) against the row above `prior`."""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]
        out[i] = (x - pred) % 256
    return bytes(out)


def raw_rows(n, height, bpp, data, filters=None):
    """The rows (`n` bytes each in `data`) as PNG stores them before zlib: each a filter type
    byte (filters[y], default 0) and the filtered bytes (as they are for a type other than
    1-4), `bpp` bytes a pixel (1 below 8 bits)."""
    prior, out = bytes(n), bytearray()
    for y in range(height):
        row = data[y * n:(y + 1) * n]
        kind = filters[y] if filters else 0
        out += bytes((kind,)) + (filter_row(kind, row, prior, bpp) if 0 < kind <= 4 else row)
        prior = row
    return bytes(out)


def pack_indices(width, height, idx, depth):
    """Palette indices (a byte each) packed `depth` bits a pixel, from each byte's high bits on,
    each row padded to a whole byte."""
    if depth == 8:
        return bytes(idx)
    out = bytearray()
    for y in range(height):
        bits = n = 0
        for x in range(width):
            bits, n = (bits << depth) | idx[y * width + x], n + depth
            if n == 8:
                out.append(bits)
                bits = n = 0
        if n:
            out.append(bits << (8 - n))
    return bytes(out)


# Adam7's passes: (x0, y0, dx, dy), each the pixels at x0 + i dx, y0 + j dy.
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png(width, height, ctype, pixels, before=(), after=(), depth=8, filters=None, idat_chunks=2,
        zdata=None, interlace=0):
    """A PNG of `pixels` (rows of bytes, a byte a palette index or grey level for colour types 3
    and 0; filters[y] per row, default 0), with extra chunks (a palette's PLTE among `before`);
    the zlib data in `idat_chunks` IDAT chunks, zdata(raw) instead of zlib.compress(raw) if
    given. With `interlace` 1, Adam7: each pass an image of its own, filters[k] for the k-th row
    counting through the passes (cycled); another `interlace` is only written into IHDR."""
    bits = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype, 2) * depth  # 2 for an invalid type
    indexed = ctype in (0, 3) and depth <= 8
    if interlace == 1:
        per = 1 if indexed else bits // 8  # bytes a pixel in `pixels`
        raw, k = b"", 0
        for x0, y0, dx, dy in ADAM7:
            xs, ys = range(x0, width, dx), range(y0, height, dy)
            if not xs or not ys:
                continue
            sub = b"".join(pixels[(y * width + x) * per:(y * width + x + 1) * per]
                           for y in ys for x in xs)
            if indexed:
                sub = pack_indices(len(xs), len(ys), sub, depth)
            f = [filters[(k + j) % len(filters)] for j in range(len(ys))] if filters else None
            raw += raw_rows((len(xs) * bits + 7) // 8, len(ys), max(1, bits // 8), sub, f)
            k += len(ys)
    else:
        if indexed:
            pixels = pack_indices(width, height, pixels, depth)
        raw = raw_rows((width * bits + 7) // 8, height, max(1, bits // 8), pixels, filters)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    out += b"".join(chunk(k, d) for k, d in before)
    idat = zdata(raw) if zdata else zlib.compress(raw, 6)
    cuts = [len(idat) * i // idat_chunks for i in range(idat_chunks + 1)]  # 2: halves
    out += b"".join(chunk(b"IDAT", idat[cuts[i]:cuts[i + 1]]) for i in range(idat_chunks))
    out += b"".join(chunk(k, d) for k, d in after)
    return out + chunk(b"IEND", b"")


def alpha(x, y, width, height, varied):
    """The test images' alpha at (x, y): a fully transparent band at the top and a rectangle
    below the middle, an opaque strip at the left, `varied` elsewhere."""
    if y < height // 5 or (width // 3 <= x < width // 2 and y > height // 2):
        return 0
    return 255 if x < width // 4 else varied


def pixels(width, height, channels, seed):
    """Noise over gradients; with alpha, a fully transparent band and rectangle, opaque and
    varied regions."""
    rng = random.Random(seed)
    ramp = [x * 255 // width for x in range(width)]
    out = bytearray()
    for y in range(height):
        # noise of -40..40 for red and green, any blue and alpha: a byte each, drawn a row at
        # once (randrange() a value took most of this test's time)
        noise = rng.randbytes(4 * width)
        g0 = y * 255 // height
        row = bytearray(width * channels)
        for x in range(width):
            n = noise[4 * x:4 * x + 4]
            o = x * channels
            row[o] = (ramp[x] + n[0] % 81 - 40) % 256
            row[o + 1] = (g0 + n[1] % 81 - 40) % 256
            row[o + 2] = n[2]
            if channels == 4:
                row[o + 3] = alpha(x, y, width, height, n[3])
        out += row
    return bytes(out)


def palette_of(depth, seed, alpha):
    """2^depth colours (at most 256) as PLTE and, with `alpha`, tRNS chunks (0, 255 and values
    between, the last three colours left out: opaque), and each colour's RGB(A) bytes."""
    rng = random.Random(seed)
    n = min(256, 1 << depth)
    rgb = [bytes(rng.randrange(256) for _ in range(3)) for _ in range(n)]
    trns = bytes((0, 255, rng.randrange(1, 255))[i % 3] for i in range(max(1, n - 3)))
    chunks = [(b"PLTE", b"".join(rgb))] + ([(b"tRNS", trns)] if alpha else [])
    colours = [c + (bytes((trns[i] if i < len(trns) else 255,)) if alpha else b"")
               for i, c in enumerate(rgb)]
    return chunks, colours


def palette_image(width, height, depth, seed, alpha, interlace=0):
    """A palette image: (its PNG, the RGB(A) pixels it stands for); indices of noise over a
    gradient, every colour of palette_of() used."""
    chunks, colours = palette_of(depth, seed, alpha)
    rng = random.Random(seed)
    n = len(colours)
    idx = bytes((x * n // width + rng.randrange(3)) % n for y in range(height) for x in range(width))
    return png(width, height, 3, idx, before=chunks, depth=depth, interlace=interlace), \
        b"".join(colours[i] for i in idx)


def grey_image(width, height, depth, seed, interlace=0):
    """A grey image of `depth` bits: (its PNG, the RGB pixels it stands for, each level v of
    2^depth scaled to v x 255 / (2^depth - 1)); levels of noise over a gradient, all used."""
    rng = random.Random(seed)
    n = 1 << depth
    v = bytes((x * n // width + rng.randrange(3)) % n for y in range(height) for x in range(width))
    return png(width, height, 0, v, depth=depth, interlace=interlace), \
        b"".join(bytes((l * 255 // (n - 1),)) * 3 for l in v)


def rgba_of_grey_alpha(ga):
    """The RGBA pixels grey+alpha bytes stand for."""
    return b"".join(bytes((ga[i], ga[i], ga[i], ga[i + 1])) for i in range(0, len(ga), 2))


def grey_alpha_image(width, height, seed, interlace=0):
    """An 8-bit grey+alpha image: (its PNG, the RGBA pixels it stands for); grey of noise over a
    gradient, alpha as pixels()'s (fully transparent regions among them)."""
    rgba = pixels(width, height, 4, seed)
    ga = bytes(b for i in range(0, len(rgba), 4) for b in (rgba[i], rgba[i + 3]))
    return png(width, height, 4, ga, interlace=interlace), rgba_of_grey_alpha(ga)


@functools.lru_cache(maxsize=None)  # the same sizes are asked for again and again
def smooth_pixels(width, height, channels):
    """Gradients and soft waves with a little noise (a photo-like source for the worker's path,
    where noise would measure the resize filters, not the reader); with alpha, a fully
    transparent band and rectangle, an opaque strip and a soft ramp."""
    rng = random.Random(width * height)
    wave_x = [100 * math.sin(x / 17.0) for x in range(width)]
    green = [x * 255 // width for x in range(width)]
    soft = [int(128 + 120 * math.sin(k / 29.0)) for k in range(width + height)]
    out = bytearray()
    for y in range(height):
        wave_y = math.cos(y / 23.0)
        b0 = y * 255 // height
        noise = rng.randbytes(width)  # -3..3 each
        row = bytearray(width * channels)
        for x in range(width):
            o = x * channels
            r = int(127 + wave_x[x] * wave_y) + noise[x] % 7 - 3
            row[o] = max(0, min(255, r))
            row[o + 1] = green[x]
            row[o + 2] = (b0 + x // 3) % 256
            if channels == 4:
                row[o + 3] = alpha(x, y, width, height, soft[x + y])
        out += row
    return bytes(out)


def area_weights(size, out, o):
    """{source index: weight} for output pixel `o` of `out` over `size` source pixels, in units
    where a source pixel is out / g wide and an output pixel size / g (g their gcd), and the
    output pixel's total weight."""
    g = math.gcd(size, out)
    s, t = out // g, size // g
    lo, hi = o * t, (o + 1) * t
    w = {}
    for i in range(lo // s, min(size, -(-hi // s))):
        overlap = min(hi, (i + 1) * s) - max(lo, i * s)
        if overlap > 0:
            w[i] = overlap
    return w, t


def box_average(width, height, channels, px, factor):
    """The reference: each output pixel the area average of the source under it (whole boxes of
    factor x factor pixels when the sides are multiples), rounded half up; colour weighted by
    alpha."""
    ow, oh = -(-width // factor), -(-height // factor)
    cols = [area_weights(width, ow, ox) for ox in range(ow)]
    tx = cols[0][1]
    # the weights factor: each source row is summed across each output column first (colour x
    # alpha x wx, and alpha x wx), then the rows under an output row with their wy
    across = []
    for y in range(height):
        base = y * width * channels
        sums = []
        for wxs, _ in cols:
            s0 = s1 = s2 = s3 = 0
            for x, wx in wxs.items():
                o = base + x * channels
                a = (px[o + 3] if channels == 4 else 1) * wx
                s0 += px[o] * a
                s1 += px[o + 1] * a
                s2 += px[o + 2] * a
                s3 += a
            sums.append((s0, s1, s2, s3))
        across.append(sums)
    out = bytearray()
    for oy in range(oh):
        wys, ty = area_weights(height, oh, oy)
        n = tx * ty
        for ox in range(ow):
            s0 = s1 = s2 = s3 = 0
            for y, wy in wys.items():
                r = across[y][ox]
                s0 += r[0] * wy
                s1 += r[1] * wy
                s2 += r[2] * wy
                s3 += r[3] * wy
            if channels == 3:
                out += bytes(((s0 + n // 2) // n, (s1 + n // 2) // n, (s2 + n // 2) // n))
            elif s3 == 0:
                out += b"\0\0\0\0"
            else:
                out += bytes(((s0 + s3 // 2) // s3, (s1 + s3 // 2) // s3, (s2 + s3 // 2) // s3,
                              (s3 + n // 2) // n))
    return ow, oh, bytes(out)


def dump(args, factor, path, past=False):
    p = run([args.dump, str(factor), str(path)] + (["past"] if past else []))
    return p.returncode, p.stdout, p.stderr


def parse_dump(out):
    m = re.match(rb"P7 (\d+) (\d+) (\d+)\n", out)
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), out[m.end():]


@functools.lru_cache(maxsize=None)  # built once a run (several checks take them): seconds each
def sources(tmp):
    """name -> (path, width, height, channels, pixels) of the files the reader takes."""
    out = {}
    for i, (w, h) in enumerate(SIZES):
        for ch in (3, 4):
            name = f"{'rgba' if ch == 4 else 'rgb'}-{w}x{h}"
            px = pixels(w, h, ch, seed=i * 10 + ch)
            path = tmp / (name + ".png")
            path.write_bytes(png(w, h, 6 if ch == 4 else 2, px,
                                 before=[(b"gAMA", struct.pack(">I", 45455)),
                                         (b"pHYs", struct.pack(">IIB", 2835, 2835, 1))]))
            out[name] = (path, w, h, ch, px)
        for depth, alpha in PALETTES if (w, h) != (256, 160) else ():
            name = f"palette{depth}{'+tRNS' if alpha else ''}-{w}x{h}"
            data, px = palette_image(w, h, depth, i * 10 + depth, alpha)
            path = tmp / (name.replace("+", "-") + ".png")
            path.write_bytes(data)
            out[name] = (path, w, h, 4 if alpha else 3, px)
        if (w, h) != (256, 160):
            name = f"greyalpha-{w}x{h}"
            data, px = grey_alpha_image(w, h, i * 10 + 7)
            path = tmp / (name + ".png")
            path.write_bytes(data)
            out[name] = (path, w, h, 4, px)
        for depth in GREYS if (w, h) != (256, 160) else ():
            name = f"grey{depth}-{w}x{h}"
            data, px = grey_image(w, h, depth, i * 10 + depth)
            path = tmp / (name + ".png")
            path.write_bytes(data)
            out[name] = (path, w, h, 3, px)
    return {**out, **adam7_sources(tmp)}


# Adam7 sources: the test sizes, and small ones where passes are empty or a pixel wide or high.
ADAM7_SIZES = [(301, 203), (97, 61), (9, 6), (1, 1), (2, 2), (3, 5), (5, 3), (8, 1), (1, 8),
               (6, 10)]


def adam7_sources(tmp):
    """name -> (path, width, height, channels, pixels) of interlaced (Adam7) files: RGB, RGBA,
    palettes of 8 bits with tRNS and of 1 bit, grey of 8 and 2 bits, grey+alpha."""
    out = {}
    for i, (w, h) in enumerate(ADAM7_SIZES):
        files = {}
        for ch in (3, 4):
            px = pixels(w, h, ch, seed=500 + i * 10 + ch)
            files["rgba" if ch == 4 else "rgb"] = (png(w, h, 6 if ch == 4 else 2, px,
                                                       interlace=1), ch, px)
        for depth, alpha in ((8, True), (1, False)):
            data, px = palette_image(w, h, depth, 500 + i * 10 + depth, alpha, interlace=1)
            files[f"palette{depth}{'+tRNS' if alpha else ''}"] = (data, 4 if alpha else 3, px)
        for depth in (8, 2):
            data, px = grey_image(w, h, depth, 600 + i * 10 + depth, interlace=1)
            files[f"grey{depth}"] = (data, 3, px)
        data, px = grey_alpha_image(w, h, 650 + i, interlace=1)
        files["greyalpha"] = (data, 4, px)
        for kind, (data, ch, px) in files.items():
            name = f"adam7-{kind}-{w}x{h}"
            path = tmp / (name.replace("+", "-") + ".png")
            path.write_bytes(data)
            out[name] = (path, w, h, ch, px)
    return out


SPECIAL = "text keyword ImageMagick reads specially"


def text_declines(w, h, rgb):
    """Text chunks ImageMagick's read treats otherwise than as a plain property, or libpng
    drops: name -> (file, reason)."""
    def one(kind, data, after=False):
        return png(w, h, 2, rgb, **{"after" if after else "before": [(kind, data)]})
    bad_crc = bytearray(one(b"tEXt", b"Comment\0hello", after=True))
    bad_crc[-12 - 4 - 1] ^= 1  # the text chunk's CRC, before IEND
    return {
        "raw profile text": (one(b"tEXt", b"Raw profile type exif\0\nexif\n   4\n00000000\n"),
                             SPECIAL),
        "density text": (one(b"tEXt", b"density\x0072x72"), SPECIAL),
        "page text (zTXt)": (one(b"zTXt", b"PAGE\0\0" + zlib.compress(b"10x10+1+1")), SPECIAL),
        "png: text": (one(b"tEXt", b"png:IHDR.width,height\x001, 1", after=True), SPECIAL),
        "icc: text": (one(b"tEXt", b"ICC:description\0a profile"), SPECIAL),
        "keyword png: alone": (one(b"tEXt", b"png:\0x"), SPECIAL),
        "exif: text (zTXt)": (one(b"zTXt", b"exif:Make\0\0" + zlib.compress(b"camera")), SPECIAL),
        "text without keyword": (one(b"tEXt", b"\0text"), "bad text keyword"),
        "text without NUL": (one(b"tEXt", b"Comment"), "bad text keyword"),
        "80-byte keyword": (one(b"tEXt", b"K" * 80 + b"\0x"), "bad text keyword"),
        "zTXt method 1": (one(b"zTXt", b"Title\0\1" + zlib.compress(b"z")), "bad zTXt chunk"),
        "zTXt without data": (one(b"zTXt", b"Title\0\0"), "bad zTXt chunk"),
        "zTXt zlib error": (one(b"zTXt", b"Title\0\0\x78\x9cnot deflate"), "zlib error in zTXt"),
        "zTXt data after stream": (one(b"zTXt", b"Title\0\0" + zlib.compress(b"z") + b"\0"),
                                   "zlib error in zTXt"),
        "zTXt over 64 KB": (one(b"zTXt", b"Title\0\0" + zlib.compress(b"a" * 70000)),
                            "text too long"),
        "tEXt over 64 KB": (one(b"tEXt", b"Title\0" + b"a" * 66000), "text chunk too long"),
        "text bad CRC": (bytes(bad_crc), "bad CRC"),
        "65 text chunks": (png(w, h, 2, rgb, before=[(b"tEXt", b"K%d\0v" % i) for i in range(65)]),
                           "too many text chunks"),
    }


# Declined palette files that libpng (ImageMagick's reader) refuses too.
PALETTE_ERRORS = ("16-bit palette", "palette without PLTE", "two PLTE chunks",
                  "PLTE of 257 colours", "PLTE not of whole colours")


def palette_declines(w, h, rgb):
    """Palette files the reader declines: name -> (file, reason)."""
    plte, _ = palette_of(8, 3, False)
    ten = [(b"PLTE", plte[0][1][:30])]
    idx = bytes(rgb[::3])
    idx10 = bytes(v % 10 for v in idx)

    def pal(before, data=idx, depth=8):
        return png(w, h, 3, data, before=before, depth=depth)
    bad_crc = bytearray(pal(ten + [(b"tRNS", b"\0\1")], data=idx10))
    at = bad_crc.index(b"tRNS")
    bad_crc[at + 4 + 2] ^= 1  # its CRC
    return {
        "16-bit palette": (pal(plte, data=bytes(2 * w * h), depth=16), "bad palette bit depth"),
        "PLTE in an RGB file": (png(w, h, 2, rgb, before=plte), "PLTE chunk"),
        "palette without PLTE": (pal([]), "no PLTE"),
        "two PLTE chunks": (pal(plte + plte), "PLTE out of place"),
        "PLTE of 257 colours": (pal([(b"PLTE", bytes(771))]), "bad PLTE"),
        "PLTE not of whole colours": (pal([(b"PLTE", bytes(769))]), "bad PLTE"),
        "PLTE over 2^depth colours": (pal([(b"PLTE", bytes(51))], data=bytes(v % 16 for v in idx),
                                          depth=4), "bad PLTE"),
        "tRNS before PLTE": (pal([(b"tRNS", b"\0")] + plte), "tRNS out of place"),
        "two tRNS chunks": (pal(plte + [(b"tRNS", b"\0"), (b"tRNS", b"\0")]), "tRNS out of place"),
        "tRNS longer than PLTE": (pal(ten + [(b"tRNS", bytes(11))], data=idx10), "bad tRNS"),
        "tRNS bad CRC": (bytes(bad_crc), "bad CRC"),
        "palette index past PLTE": (pal(ten), "palette index out of range"),
        # indices 0..10 of 10 colours: the first index past the palette, and none further
        "palette index one past PLTE": (pal(ten, data=bytes(v % 11 for v in idx)),
                                        "palette index out of range"),
        "4-bit palette index one past PLTE": (pal(ten, data=bytes(v % 11 for v in idx), depth=4),
                                              "palette index out of range"),
        "filter type 5 in a palette file": (png(w, h, 3, idx, before=plte,
                                                filters=[1] * 9 + [5] + [1] * (h - 10)),
                                            "bad filter"),
    }


def declined_files(tmp, good):
    """name -> (path, reason) of files the reader declines."""
    w, h = 256, 160
    rgb = pixels(w, h, 3, seed=5)
    grey = bytes(rgb[::3])
    blob = good.read_bytes()
    idat = blob.index(b"IDAT")
    bad_crc = bytearray(blob)
    bad_crc[idat + 20] ^= 0x55
    # a zlib stream broken under a correct CRC: the first IDAT's data replaced by garbage
    n = struct.unpack(">I", blob[idat - 4:idat])[0]
    zbad = blob[:idat - 4] + chunk(b"IDAT", b"\x78\x9c" + bytes((7 * i + 3) % 256 for i in range(n - 2))) + \
        blob[idat + 4 + n + 4:]
    files = {
        "16-bit": (png(w, h, 2, bytes(b for v in rgb for b in (v, v)), depth=16), "not 8-bit"),
        "interlace method 2": (png(w, h, 2, rgb, interlace=2), "bad interlace method"),
        "16-bit Adam7": (png(w, h, 2, bytes(b for v in rgb for b in (v, v)), depth=16,
                             interlace=1), "not 8-bit"),
        "16-bit grey": (png(w, h, 0, bytes(b for v in grey for b in (v, v)), depth=16),
                        "not 8-bit"),
        "grey with tRNS": (png(w, h, 0, grey, before=[(b"tRNS", b"\0\7")]), "tRNS chunk"),
        "grey with PLTE": (png(w, h, 0, grey, before=[(b"PLTE", b"\0\0\0")]), "PLTE chunk"),
        "16-bit grey+alpha": (png(w, h, 4, bytes(b for v in grey for b in (v, v, 200, v)),
                                 depth=16), "not 8-bit"),
        "grey+alpha with tRNS": (png(w, h, 4, bytes(b for v in grey for b in (v, 200)),
                                     before=[(b"tRNS", b"\0\7")]), "tRNS chunk"),
        "colour type 5": (png(w, h, 5, bytes(b for v in grey for b in (v, 200))), "bad colour type"),
        **palette_declines(w, h, rgb),
        "tRNS": (png(w, h, 2, rgb, before=[(b"tRNS", b"\0\1\0\2\0\3")]), "tRNS chunk"),
        "gAMA after IDAT": (png(w, h, 2, rgb, after=[(b"gAMA", struct.pack(">I", 45455))]),
                            "chunk after IDAT"),
        "IDAT after text after IDAT": (png(w, h, 2, rgb, after=[(b"tEXt", b"Comment\0x"),
                                                                (b"IDAT", b"")]),
                                       "chunk after IDAT"),
        **text_declines(w, h, rgb),
        "cut short": (blob[:len(blob) * 2 // 3], "truncated"),
        "bad CRC": (bytes(bad_crc), "bad CRC"),
        "zlib error": (zbad, "zlib error"),
    }
    out = {}
    for name, (data, why) in files.items():
        path = tmp / (name.replace(" ", "-").replace("+", "-") + ".png")
        path.write_bytes(data)
        out[name] = (path, why)
    return out


# Each source's row filters: the first row's type (its row above is zeros) varies by file; runs
# of Paeth rows of odd and even lengths (the reader undoes two Paeth rows at once), every type
# after every other, a Paeth row last.
FILTER_RUN = [4, 4, 4, 1, 2, 3, 0, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0, 4, 1, 4, 3, 0, 2, 4]


def tie_pixels(width, height, channels, seed):
    """Rows of noise, rows of a few levels (0-4, 127-129, 254, 255) and rows of steps of 2,
    where the Paeth predictor's distances often tie; alpha never 0 (which would hide the
    colour)."""
    rng = random.Random(seed)
    levels = [(0, 1, 2, 3, 4, 127, 128, 129, 254, 255), (0, 2, 4, 6, 8, 10)]
    out = bytearray()
    for y in range(height):
        for x in range(width * channels):
            kind = y % 3 if rng.random() < 0.9 else 0
            v = rng.choice(levels[kind - 1]) if kind else rng.randrange(256)
            out.append(max(1, v) if channels == 4 and x % 4 == 3 else v)
    return bytes(out)


def filter_sources(tmp):
    """name -> (path, width, height, channels, pixels, factors) of files whose rows use every
    filter type (FILTER_RUN), in many IDAT chunks for some, empty ones among them."""
    out = {}
    shapes = [(37, 21, first, 2) for first in range(5)]
    shapes += [(1, 9, 4, 3), (2, 7, 4, 40), (3, 5, 1, 7)]
    for ch in (3, 4):
        for i, (w, h, first, chunks) in enumerate(shapes):
            px = tie_pixels(w, h, ch, seed=ch * 100 + i)
            filters = ([first] + FILTER_RUN)[:h - 1] + [4]
            name = f"{'rgba' if ch == 4 else 'rgb'}-{w}x{h}-first{first}-idat{chunks}"
            blob = png(w, h, 6 if ch == 4 else 2, px, filters=filters, idat_chunks=chunks)
            if chunks > 2:  # an empty IDAT chunk after the first and before IEND
                at = blob.index(b"IDAT")
                end = at + 8 + struct.unpack(">I", blob[at - 4:at])[0]
                blob = blob[:end] + chunk(b"IDAT", b"") + blob[end:-12] + \
                    chunk(b"IDAT", b"") + blob[-12:]
            path = tmp / (name + ".png")
            path.write_bytes(blob)
            out[name] = (path, w, h, ch, px, FACTORS if w < 37 or first == 4 else [2])
    for depth, alpha in ((8, False), (2, True)):  # a byte a pixel; indices packed 4 a byte
        for i, (w, h, first, chunks) in enumerate(shapes):
            plte, colours = palette_of(depth, depth * 100 + i, alpha)
            idx = bytes(v % len(colours) for v in tie_pixels(w, h, 1, seed=depth * 100 + i))
            filters = ([first] + FILTER_RUN)[:h - 1] + [4]
            name = f"palette{depth}-{w}x{h}-first{first}-idat{chunks}"
            path = tmp / (name + ".png")
            path.write_bytes(png(w, h, 3, idx, before=plte, depth=depth, filters=filters,
                                 idat_chunks=chunks))
            out[name] = (path, w, h, 4 if alpha else 3, b"".join(colours[j] for j in idx),
                         FACTORS if w < 37 or first == 4 else [2])
    for i, (w, h, first, chunks) in enumerate(shapes):  # grey+alpha: 2 bytes a pixel
        ga = tie_pixels(w, h, 2, seed=800 + i)
        filters = ([first] + FILTER_RUN)[:h - 1] + [4]
        name = f"greyalpha-{w}x{h}-first{first}-idat{chunks}"
        path = tmp / (name + ".png")
        path.write_bytes(png(w, h, 4, ga, filters=filters, idat_chunks=chunks))
        out[name] = (path, w, h, 4, rgba_of_grey_alpha(ga),
                     FACTORS if w < 37 or first == 4 else [2])
    # Adam7: each pass's rows filtered on their own, its first row against zeros; the filter
    # run starts at every type and goes on through the passes
    for first in range(5):
        filters = [first] + FILTER_RUN
        for ch in (3, 4):
            px = tie_pixels(29, 19, ch, seed=700 + first * 10 + ch)
            name = f"adam7-{'rgba' if ch == 4 else 'rgb'}-29x19-first{first}"
            path = tmp / (name + ".png")
            path.write_bytes(png(29, 19, 6 if ch == 4 else 2, px, filters=filters, interlace=1))
            out[name] = (path, 29, 19, ch, px, FACTORS)
        ga = tie_pixels(29, 19, 2, seed=900 + first)
        name = f"adam7-greyalpha-29x19-first{first}"
        path = tmp / (name + ".png")
        path.write_bytes(png(29, 19, 4, ga, filters=filters, interlace=1))
        out[name] = (path, 29, 19, 4, rgba_of_grey_alpha(ga), FACTORS)
        for depth, alpha in ((8, False), (2, True)):
            plte, colours = palette_of(depth, 700 + first * 10 + depth, alpha)
            idx = bytes(v % len(colours) for v in tie_pixels(29, 19, 1, seed=710 + first))
            name = f"adam7-palette{depth}-29x19-first{first}"
            path = tmp / (name + ".png")
            path.write_bytes(png(29, 19, 3, idx, before=plte, depth=depth, filters=filters,
                                 interlace=1))
            out[name] = (path, 29, 19, 4 if alpha else 3, b"".join(colours[j] for j in idx),
                         FACTORS)
    return out


def small_window(raw, bits=9):
    """`raw` compressed by zlib with a window of 2^bits bytes (512, the smallest it writes)."""
    z = zlib.compressobj(6, zlib.DEFLATED, bits)
    return z.compress(raw) + z.flush()


def stream_declines(tmp):
    """name -> (path, reason) of damaged files around the zlib stream, the filters and the CRCs
    (made of a 37x21 RGB source with every filter type)."""
    w, h = 37, 21
    px = tie_pixels(w, h, 3, seed=9)
    filters = [4] + FILTER_RUN[:h - 1]

    def make(**kw):
        return png(w, h, 2, px, filters=kw.pop("filters", filters), **kw)

    good = make(idat_chunks=6)
    bad_iend, bad_ihdr, bad_idat = bytearray(good), bytearray(good), bytearray(good)
    bad_iend[-1] ^= 1
    bad_ihdr[29] ^= 1
    third = [m.start() for m in re.finditer(b"IDAT", good)][2]
    bad_idat[third + 6] ^= 0x40  # data of the third of six IDAT chunks

    def adler_off(raw):
        z = bytearray(zlib.compress(raw))
        z[-1] ^= 1
        return bytes(z)


    files = {
        "bad CRC in IEND": (bytes(bad_iend), "bad CRC"),
        "bad CRC in IHDR": (bytes(bad_ihdr), "bad CRC"),
        "bad CRC in the third of six IDAT chunks": (bytes(bad_idat), "bad CRC"),
        "bytes after the zlib stream": (make(zdata=lambda raw: zlib.compress(raw) + b"\0\0"),
                                        "zlib error"),
        "a second zlib stream": (make(zdata=lambda raw: zlib.compress(raw) + zlib.compress(b"")),
                                 "zlib error"),
        "a zlib stream one byte short": (make(zdata=lambda raw: zlib.compress(raw[:-1])),
                                         "zlib error"),
        "a zlib stream one byte long": (make(zdata=lambda raw: zlib.compress(raw + b"\7")),
                                        "zlib error"),
        "a zlib stream cut short": (make(zdata=lambda raw: zlib.compress(raw)[:-9]), "zlib error"),
        "a bad Adler-32": (make(zdata=adler_off), "zlib error"),
        "a 512-byte zlib window over 2.3 KB": (make(zdata=lambda raw: small_window(raw)),
                                               "zlib window"),
        "a 2 KB zlib window over 2.3 KB": (make(zdata=lambda raw: small_window(raw, 11)),
                                           "zlib window"),
        "a file cut a byte into the last IDAT chunk's CRC": (good[:-12 - 1], "truncated"),
        "an IEND without its CRC": (good[:-4], "truncated"),
        "an IHDR of 14 bytes (libpng refuses it)":
            (good[:8] + chunk(b"IHDR", good[16:29] + b"\0") + good[33:], "no IHDR"),
        "filter type 5": (make(filters=filters[:9] + [5] + filters[10:]), "bad filter"),
        "filter type 255 in the last row": (make(filters=filters[:-1] + [255]), "bad filter"),
        "an unknown critical chunk": (make(before=[(b"ABCD", b"x")]), "unknown critical chunk"),
        "a chunk type not of letters": (make(before=[(b"ab1d", b"")]), "bad chunk type"),
        "an ancillary chunk over 8 MB": (make(before=[(b"teST", bytes(8 * 1024 * 1024 + 1))]),
                                         "chunk too large"),
    }
    out = {}
    for i, (name, (data, why)) in enumerate(files.items()):
        path = tmp / f"stream-{i}.png"
        path.write_bytes(data)
        out[name] = (path, why)
    return out


# ---------------------------------------------------------------- checks

def check_box(args, c, name, path, w, h, ch, px, f):
    """pngshrink-dump's output for `path` at 1/f is the box average of the pixels `px`."""
    rc, out, err = dump(args, f, path)
    if rc != 0 or sanitizer(err):
        c.check(False, f"{name} 1/{f}: decoded", f"exit {rc}: {err[-300:]}")
        return
    got = parse_dump(out)
    ow, oh, want = box_average(w, h, ch, px, f)
    diff = sum(1 for a, b in zip(got[3], want) if a != b)
    c.check(got[:3] == (ow, oh, ch) and len(got[3]) == len(want) and diff == 0,
            f"{name} 1/{f}: {ow}x{oh} equal to the box average of the unfiltered pixels",
            f"size {got[:3]}, {diff} samples differ")


def check_exact(args, c, tmp):
    for name, (path, w, h, ch, px) in sources(tmp).items():
        for f in FACTORS:
            check_box(args, c, name, path, w, h, ch, px, f)
    # 315x315 RGBA at 1/2: boxes of 315 x 315 units (315 and 158 share no factor), light and
    # opaque: a box's alpha-weighted colour sums pass 2^32, past the 32-bit division's reach
    noise = random.Random(13).randbytes(315 * 315 * 4)
    px = bytes(255 if i % 4 == 3 else 200 + v % 56 for i, v in enumerate(noise))
    path = tmp / "light-rgba-315x315.png"
    path.write_bytes(png(315, 315, 6, px))
    check_box(args, c, "light opaque rgba-315x315", path, 315, 315, 4, px, 2)


def stored_blocks(raw, n):
    """`raw` as a zlib stream of stored deflate blocks of `n` bytes each (5 bytes more each)."""
    blocks = [struct.pack("<BHH", 0, n, 0xffff ^ n) + raw[i:i + n]
              for i in range(0, len(raw) - n, n)]
    last = raw[len(blocks) * n:]
    blocks.append(struct.pack("<BHH", 1, len(last), 0xffff ^ len(last)) + last)
    return b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))


def stored_in_pairs(raw):
    """`raw` as a zlib stream of stored deflate blocks of 2 bytes each (7 bytes for every 2)."""
    return stored_blocks(raw, 2)


def check_long_idat(args, c, tmp):
    """A 16000x1250 1-bit palette image (2.5 MB of rows) in one IDAT chunk of 8.75 MB (stored
    blocks of 2 bytes): longer than ANCILLARY_MAX and than the rows' own bound, within libpng's,
    which counts a byte a pixel for a palette (png_check_chunk_length()): decoded, all colour 0."""
    w, h = 16000, 1250
    row = bytes(w // 8 + 1)  # filter type 0, then indices 0
    colour = b"\x11\x22\x33"
    blob = png(w, h, 3, bytes(w * h), before=[(b"PLTE", colour + b"\xff\xff\xff")], depth=1,
               idat_chunks=1, zdata=lambda raw: stored_in_pairs(row * h))
    path = tmp / "palette1-long-idat.png"
    path.write_bytes(blob)
    rc, out, err = dump(args, 8, path)
    ok = rc == 0 and not sanitizer(err) and parse_dump(out)[:3] == (2000, 157, 3) and \
        parse_dump(out)[3] == colour * (2000 * 157)
    c.check(ok and len(blob) > 8 * 1024 * 1024, f"a 1-bit palette's {len(blob)}-byte IDAT "
            "chunk (libpng's bound: a byte a pixel) decoded", f"exit {rc}: {err[-200:]}")
    # Adam7: libpng's bound counts 6 bytes more a row. A 200x16000 RGB image's passes, 9.63 MB,
    # in stored blocks of 400 bytes, 9.75 MB: over the bound without interlacing (606 bytes a
    # row), within the interlaced one (612 a row); ImageMagick reads it
    w, h = 200, 16000
    blob = png(w, h, 2, colour * (w * h), interlace=1, idat_chunks=1,
               zdata=lambda raw: stored_blocks(raw, 400))
    path = tmp / "adam7-long-idat.png"
    path.write_bytes(blob)
    rc, out, err = dump(args, 8, path)
    ok = rc == 0 and not sanitizer(err) and parse_dump(out)[:3] == (25, 2000, 3) and \
        parse_dump(out)[3] == colour * (25 * 2000)
    c.check(ok and 606 * h + 11 < len(blob) - 57 <= 612 * h + 11,
            f"an Adam7 image's {len(blob)}-byte IDAT chunk (libpng's bound: 6 bytes more a row) "
            "decoded", f"exit {rc}: {err[-200:]}")


def check_filters(args, c, tmp):
    """Every filter type (Paeth runs of both lengths), RGB and RGBA, many IDAT chunks: the same
    box average as the pixels before filtering; and a small zlib window over smaller data."""
    cases = filter_sources(tmp)
    w, h = 5, 5
    px = tie_pixels(w, h, 3, seed=17)  # 80 bytes of data: within a 512-byte window
    small = tmp / "window-256.png"
    small.write_bytes(png(w, h, 2, px, filters=[4, 4, 1, 3, 4], zdata=small_window))
    cases["rgb-5x5 with a 512-byte zlib window"] = (small, w, h, 3, px, [2])
    for name, (path, w, h, ch, px, factors) in cases.items():
        for f in factors:
            check_box(args, c, name, path, w, h, ch, px, f)


def check_declines(args, c, tmp):
    good = sources(tmp)["rgb-256x160"][0]
    for name, (path, why) in {**declined_files(tmp, good), **stream_declines(tmp)}.items():
        rc, _, err = dump(args, 8, path)
        text = err.decode(errors="replace").strip()
        c.check(rc == 3 and text == "declined: " + why and not sanitizer(err),
                f"declines {name} ({why})", f"exit {rc}: {text[:200]}")
    # a tEXt chunk of 64 KB exactly is taken, one of a byte more declined
    w, h = 37, 21
    for n, want in ((65536, 0), (65537, 3)):
        path = tmp / f"text-{n}.png"
        path.write_bytes(png(w, h, 2, pixels(w, h, 3, seed=3),
                             before=[(b"tEXt", b"Title\0" + b"a" * (n - 6))]))
        rc, _, err = dump(args, 8, path)
        c.check(rc == want and (want == 0 or err == b"declined: text chunk too long\n"),
                f"a tEXt chunk of {n} bytes: {'declined' if want else 'taken'}",
                f"exit {rc}: {err[:200]}")
    # the pixel limit: 256x160 is 40,960 pixels, taken at a limit of exactly that
    for limit, want in ((40960, 0), (41119, 0), (40959, 3), (-1, 3)):
        p = run([args.dump, "8", str(good), str(limit)])
        c.check(p.returncode == want and (want == 0 or p.stderr == b"declined: too large\n"),
                f"256x160 at a limit of {limit} pixels: {'declined' if want else 'decoded'}",
                f"exit {p.returncode}: {p.stderr[:200]}")
    for what, path in (("", good), (" (Adam7)", sources(tmp)["adam7-rgb-97x61"][0])):
        rc, _, err = dump(args, 8, path, past=True)
        c.check(rc == 3 and b"declined: deadline" in err,
                "declines once the deadline has passed" + what, f"exit {rc}: {err[:200]}")
    rng = random.Random(11)
    whole = sources(tmp)["rgba-301x203"][0].read_bytes()
    bad = []
    for i in range(60):
        blob = bytearray(whole)
        for _ in range(rng.randrange(1, 12)):
            blob[rng.randrange(8, len(blob))] = rng.randrange(256)
        if i % 3 == 0:
            blob = blob[:rng.randrange(8, len(blob))]
        path = tmp / "damaged.png"
        path.write_bytes(bytes(blob))
        rc, _, err = dump(args, 4, path)
        if sanitizer(err) or rc not in (0, 3):
            bad.append(f"copy {i}: exit {rc} {err[-300:]}")
    c.check(not bad, "60 damaged copies decline or decode without a crash", "; ".join(bad[:3]))


def apply(args, job, src, out, shrink=True, png_shrink=True, env_extra=None):
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PIXQ_LOG_LEVEL="debug", PIXQ_SHRINK_ON_LOAD=str(int(shrink)),
               PIXQ_PNG_SHRINK=str(int(png_shrink)), **(env_extra or {}))
    p = run([args.apply, "--data", args.data, str(job), str(src), str(out)], env=env)
    if sanitizer(p.stderr):
        raise RuntimeError(f"sanitizer: {p.stderr.decode(errors='replace')[-800:]}")
    return p.returncode, json.loads(p.stdout or b"{}"), p.stderr.decode(errors="replace")


STAT = re.compile(r"^\s*(min|max|mean|standard deviation|kurtosis|skewness|entropy|"
                  r"filename|file size|filesize|number pixels|pixels per second|user time|"
                  r"elapsed time|date:|png:tIME|signature|image:|colors|histogram|\d+: \()",
                  re.I)


PALETTE_SIZE = re.compile(r"^\s*(Colormap entries|Background color|png:PLTE\.number_colors|"
                          r"png:IHDR\.bit[-_]depth(-orig)?):")


def metadata(path):
    text = run(["identify", "-verbose", str(path)], check=True).stdout.decode(errors="replace")
    return [line for line in text.splitlines() if not STAT.match(line)]


def mae(a, b):
    r = run(["compare", "-metric", "MAE", str(a), str(b), "null:"])
    m = re.search(rb"\(([0-9.e+-]+)\)", r.stderr)
    if not m:
        raise AssertionError(f"compare -metric MAE: {r.stderr!r}")
    return float(m.group(1))


def write_job(path, width, height):
    path.write_text(json.dumps({"application_id": "t", "src": "x", "functions": [
        {"name": "resize_to_fit", "params": {"width": width, "height": height},
         "save": {"image_identifier": "t", "extension": ".png", "save_metadata": True}}]}))


def offered(factor, w, h):
    """Whether the worker offers a w x h PNG to the reader at 1/factor (0: a 3/8 plan, never),
    whatever its sides."""
    return factor > 0 and w > 0 and h > 0


def check_taken(args, c, tmp, name, src, size, factor, w, h):
    """One source through the worker at a size that wants 1/factor (0: a 3/8 plan): taken when
    offered(), same size, close to the full decode, same metadata."""
    job = tmp / f"job-{name}-{size[0]}.json"
    write_job(job, *size)
    runs = {}
    for key, shrink, ps in (("on", True, True), ("off", True, False), ("full", False, False)):
        rc, res, log = apply(args, job, src, tmp / f"out-{name}-{size[0]}-{key}", shrink, ps)
        if rc != 0:
            c.check(False, f"{name} -> {size}: pixq-apply {key}", log[-400:])
            return
        runs[key] = (res, log)
    log, off = runs["on"][1], runs["off"][1]
    taken = re.search(r"event=png_shrink decoded=\d+x\d+ factor=(\d+)", log)
    by = re.search(r"event=decoded .*", log)
    what = f"{name} -> {size[0]}x{size[1]} at 1/{factor}" if factor else \
        f"{name} -> {size[0]}x{size[1]} at 3/8"
    take = offered(factor, w, h)
    if take:
        ok = taken is not None and taken.group(1) == str(factor) and "by=decoder" in by.group(0)
    else:
        ok = taken is None and "event=png_shrink" not in log and "by=box" in by.group(0)
    c.check(ok and "event=png_shrink" not in off, what + (": read by pngshrink" if take else
            ": not offered to pngshrink") + " (PIXQ_PNG_SHRINK=0: not)", by.group(0))
    c.check("shrink_on_load_missed" not in log + off and "by=box" in off,
            what + ": PIXQ_PNG_SHRINK=0 decodes once, then the box filter")
    outs = [runs[k][0]["outputs"][0] for k in ("on", "off", "full")]
    c.check(len({(o["width"], o["height"]) for o in outs}) == 1, what + ": same output size",
            str([(o["width"], o["height"]) for o in outs]))
    err, err_off = mae(outs[0]["file"], outs[2]["file"]), mae(outs[1]["file"], outs[2]["file"])
    if take:  # small outputs with alpha err more either way: then no more than the old path
        c.check(err <= max(MAE_MAX, err_off), what + f": MAE {err:.4f} against the full decode "
                f"(limit {MAE_MAX}, or PIXQ_PNG_SHRINK=0's {err_off:.4f})")
    else:
        c.check(mae(outs[0]["file"], outs[1]["file"]) == 0,
                what + ": the very output of PIXQ_PNG_SHRINK=0")
    meta_on, meta_off = metadata(outs[0]["file"]), metadata(outs[1]["file"])
    if "  Type: Palette" in meta_on and "  Type: Palette" in meta_off:
        # both written as palette PNGs, whose palette size and bit depth follow the colours:
        # ImageMagick's own shrink of a two-colour source leaves fewer (palette1 at 1/8: 5
        # colours; 58 through pngshrink, 181 from the full decode)
        meta_on, meta_off = ([l for l in m if not PALETTE_SIZE.match(l)] for m in (meta_on, meta_off))
    c.check(meta_on == meta_off and
            runs["on"][0]["original_meta"] == runs["off"][0]["original_meta"],
            what + ": same metadata as PIXQ_PNG_SHRINK=0",
            " | ".join(difflib.unified_diff(meta_off, meta_on, lineterm="", n=0)))


# (source, output size, the factor the plan gives; 0: 3/8, not offered to the reader).
WORKER_CASES = [("rgb", (1024, 1032), (128, 128), 8), ("rgba", (1024, 1032), (128, 128), 8),
                ("rgb", (1024, 1032), (256, 258), 4), ("rgb", (1029, 1031), (128, 128), 8),
                ("rgba", (304, 200), (38, 25), 8), ("rgba", (304, 200), (76, 50), 4),
                ("rgba", (304, 200), (152, 100), 2), ("rgb", (301, 203), (100, 66), 2), ("rgb", (301, 203), (50, 33), 4),
                ("rgb", (301, 203), (32, 21), 8), ("rgb", (301, 203), (70, 46), 0),
                ("rgba", (301, 203), (100, 66), 2), ("rgba", (301, 203), (50, 33), 4),
                ("rgba", (301, 203), (32, 21), 8), ("rgba", (97, 61), (36, 24), 2),
                ("rgba", (97, 61), (12, 8), 4), ("rgba", (97, 61), (10, 6), 8),
                ("rgba", (97, 61), (32, 21), 0), ("chunks", (304, 200), (38, 25), 8),
                ("text", (304, 200), (38, 25), 8), ("text", (304, 200), (76, 50), 4),
                ("palette", (304, 200), (38, 25), 8), ("palette", (301, 203), (100, 66), 2),
                ("palette", (301, 203), (70, 46), 0), ("palette+tRNS", (304, 200), (76, 50), 4),
                ("palette+tRNS", (97, 61), (10, 6), 8), ("palette+opaque-tRNS", (304, 200), (38, 25), 8),
                ("grey-palette", (304, 200), (76, 50), 4), ("palette1", (304, 200), (38, 25), 8),
                ("grey", (304, 200), (38, 25), 8), ("grey", (301, 203), (100, 66), 2),
                ("grey2", (304, 200), (76, 50), 4), ("adam7-rgb", (301, 203), (100, 66), 2),
                ("adam7-rgba", (304, 200), (38, 25), 8), ("adam7-palette+tRNS", (304, 200), (76, 50), 4),
                ("adam7-grey2", (97, 61), (12, 8), 4), ("adam7-rgb", (301, 203), (70, 46), 0),
                ("greyalpha", (304, 200), (38, 25), 8), ("greyalpha", (301, 203), (100, 66), 2),
                ("adam7-greyalpha", (97, 61), (12, 8), 4)]
EXIF_ROTATED = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"


# Text chunks ImageMagick's read keeps as properties and its ping skips: before and after the
# image data, compressed (zTXt) or not, a keyword renamed ("version" -> "png:version"), a text cut
# at a NUL, an empty text, Latin-1 bytes, a keyword given twice (the later text wins), a date
# ImageMagick writes itself; iTXt, which it has libpng skip.
TEXT_BEFORE = [(b"tEXt", b"Software\0GIMP 2.10"),
               (b"zTXt", b"Comment\0\0" + zlib.compress(b"a zipped comment", 9)),
               (b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"),
               (b"tEXt", b"version\0v1"), (b"tEXt", b"Title\0cut\0here"), (b"tEXt", b"Empty\0"),
               (b"tEXt", b"Author\0first")]
TEXT_AFTER = [(b"tEXt", b"Author\0after the image data"),
              (b"zTXt", b"Description\0\0" + zlib.compress(b"line one\nline two")),
              (b"iTXt", b"Desc\0\0\0\0\0\xc3\xa9t\xc3\xa9"), (b"tEXt", b"Copyright\0\xa9 2026"),
              (b"tEXt", b"date:create\x002026-01-02T03:04:05+00:00")]


def ancillary_chunks():
    """Chunks before IDAT that ImageMagick's ping reads as its read does (the ICC profile when
    the system has one); eXIf turns the image (orientation 6)."""
    out = [(b"gAMA", struct.pack(">I", 45455)),
           (b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
           (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
           (b"bKGD", struct.pack(">HHH", 10, 20, 30)),
           (b"tIME", struct.pack(">HBBBBB", 2020, 1, 2, 3, 4, 5)),
           (b"oFFs", struct.pack(">iiB", 7, 9, 0)), (b"vpAg", struct.pack(">IIB", 400, 300, 0)),
           (b"sBIT", b"\5\6\5"), (b"eXIf", EXIF_ROTATED)]
    icc = Path("/usr/share/color/icc/ghostscript/srgb.icc")
    if icc.exists():
        out.append((b"iCCP", b"icc\0\0" + zlib.compress(icc.read_bytes())))
    return out


# Properties ImageMagick's PNG reader sets from chunks only in a full read (not in the ping the
# reader's headers come from), all in its own "png:" space and none written into an output.
FULL_READ_ONLY = re.compile(r"^png:(bKGD|cHRM|gAMA|iCCP|sRGB|pHYs|oFFs|tIME|caNv|tRNS)=")


# The dates in the test's texts; ReadImage() sets date:create and date:modify to the time of the
# read after the reader (unless SOURCE_DATE_EPOCH is set), which is not compared.
READ_TIME = re.compile(r"^(date:(?:create|modify))=(?!2026-01-02T03:04:05|2001-02-03T04:05:06).*")


def properties(args, path, size=None, epoch=None):
    """props-dump's lines for `path`: ImageMagick's plain read, or the worker's at `size` (with
    SOURCE_DATE_EPOCH=`epoch` if given); and whether pngshrink read it."""
    cmd = [args.props] + (["--plain", str(path)] if size is None else
                          [str(path), str(size[0]), str(size[1])])
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env.update({"PIXQ_LOG_LEVEL": "debug"}, **({"SOURCE_DATE_EPOCH": epoch} if epoch else {}))
    p = run(cmd, env=env)
    if p.returncode != 0 or sanitizer(p.stderr):
        raise AssertionError(f"{cmd}: exit {p.returncode} {p.stderr[-400:]!r}")
    lines = [READ_TIME.sub(r"\1=(the time of the read)", l)
             for l in p.stdout.decode(errors="replace").splitlines() if not FULL_READ_ONLY.match(l)]
    return lines, b"event=png_shrink " in p.stderr


def check_texts(args, c, tmp):
    """The worker's read of PNGs with text chunks (through pngshrink, at 1/8 and 1/4) has every
    property of ImageMagick's own read: the texts, before and after the image data, "png:text"
    with their count, dates ImageMagick sets after its reader, keywords given twice in other
    cases (ImageMagick's names are case-insensitive)."""
    if not args.props:
        c.check(False, "props-dump given (--props)")
        return
    w, h = 304, 200
    rgb = smooth_pixels(w, h, 3)
    files = {
        "texts": png(w, h, 2, rgb, before=TEXT_BEFORE, after=TEXT_AFTER),
        "texts and chunks": png(w, h, 6, smooth_pixels(w, h, 4),
                                before=ancillary_chunks() + TEXT_BEFORE[:3], after=TEXT_AFTER[2:]),
        "keywords in other cases": png(w, h, 2, rgb, before=[
            (b"tEXt", b"comment\0lower"), (b"tEXt", b"Date:Modify\x002001-02-03T04:05:06+00:00"),
            (b"tEXt", b"VERSION\0upper")], after=[(b"zTXt", b"COMMENT\0\0" + zlib.compress(b"upper"))]),
    }
    for (name, data), epoch in itertools.product(files.items(), (None, "0")):
        path = tmp / (name.replace(" ", "-") + ".png")
        path.write_bytes(data)
        want, _ = properties(args, path, epoch=epoch)
        for size in ((w // 8, h // 8), (w // 4, h // 4)):
            got, taken = properties(args, path, size, epoch)
            what = f"{name} at {size[0]}x{size[1]}" + (" (SOURCE_DATE_EPOCH=0)" if epoch else "")
            c.check(taken and got == want, what + ": read by pngshrink with ImageMagick's "
                    "properties", " | ".join(difflib.unified_diff(want, got, lineterm="", n=0))
                    or f"taken={taken}")


def check_memory(args, c, tmp):
    """The rows are inflated whole (4 bytes a pixel at most) outside ImageMagick's limits: the
    corpus PNG (3840x2160, 33 MB) is offered with PIXQ_MAGICK_MEMORY_MB=64, not with 16."""
    corpus = Path(args.data) / "corpus" / "cascade-3840x2160.png"
    job = tmp / "job-memory.json"
    write_job(job, 400, 225)
    for mb, take in ((64, True), (16, False)):
        rc, res, log = apply(args, job, corpus, tmp / f"out-memory-{mb}",
                             env_extra={"PIXQ_MAGICK_MEMORY_MB": str(mb)})
        taken = "event=png_shrink " in log
        c.check(rc == 0 and taken == take and res.get("outputs", [{}])[0].get("width") == 400,
                f"PIXQ_MAGICK_MEMORY_MB={mb}: the corpus PNG " +
                ("read by pngshrink" if take else "left to ImageMagick"), log[-300:])


def smooth_indexed(width, height, kind, interlace=0):
    """smooth_pixels() as a palette PNG: "palette" in the 216 colours of a 6x6x6 cube ("+tRNS":
    some of them transparent and some partly so; "+opaque-tRNS": a tRNS of 255s), "grey-palette"
    in 256 greys, "palette1" in two colours, 1 bit a pixel; or as a grey one ("grey": 8 bits,
    "grey2": 2 bits)."""
    rgb = smooth_pixels(width, height, 3)
    if kind.startswith("grey") and kind != "grey-palette":
        depth = 2 if kind == "grey2" else 8
        return png(width, height, 0, bytes(v >> (8 - depth) for v in rgb[::3]), depth=depth,
                   interlace=interlace)
    if kind == "palette1":
        idx = bytes((rgb[i] + rgb[i + 2]) // 2 > 127 for i in range(0, len(rgb), 3))
        return png(width, height, 3, idx, before=[(b"PLTE", b"\x20\x40\x60\xf0\xe0\x90")],
                   depth=1, interlace=interlace)
    if kind == "grey-palette":
        return png(width, height, 3, rgb[::3], before=[(b"PLTE", bytes(v for v in range(256)
                                                                       for _ in range(3)))],
                   interlace=interlace)
    q = [(v * 5 + 127) // 255 for v in rgb]
    idx = bytes(q[i] * 36 + q[i + 1] * 6 + q[i + 2] for i in range(0, len(q), 3))
    cube = bytes(v * 51 for r in range(6) for g in range(6) for b in range(6) for v in (r, g, b))
    before = [(b"PLTE", cube)]
    if kind.endswith("+tRNS"):
        before.append((b"tRNS", bytes(0 if i % 7 == 0 else 255 if i % 2 else 128
                                      for i in range(216))))
    elif kind.endswith("+opaque-tRNS"):
        before.append((b"tRNS", bytes([255] * 216)))
    return png(width, height, 3, idx, before=before, interlace=interlace)


def check_worker(args, c, tmp):
    for kind_name, (w, h), size, factor in WORKER_CASES:
        name = f"{kind_name}-{w}x{h}"
        path = tmp / f"smooth-{name.replace('+', '-')}.png"
        interlace = int(kind_name.startswith("adam7-"))
        kind = kind_name[len("adam7-"):] if interlace else kind_name
        if kind == "greyalpha" and not path.exists():
            rgba = smooth_pixels(w, h, 4)
            path.write_bytes(png(w, h, 4, bytes(b for i in range(0, len(rgba), 4) for b in
                                                ((rgba[i] + rgba[i + 1] + rgba[i + 2]) // 3,
                                                 rgba[i + 3])), interlace=interlace))
        if ("palette" in kind or kind.startswith("grey")) and not path.exists():
            path.write_bytes(smooth_indexed(w, h, kind, interlace))
        if not path.exists():
            ch = 4 if kind == "rgba" else 3
            extra = ancillary_chunks() if kind == "chunks" else TEXT_BEFORE if kind == "text" else []
            path.write_bytes(png(w, h, 6 if ch == 4 else 2, smooth_pixels(w, h, ch),
                                 before=extra, after=TEXT_AFTER if kind == "text" else (),
                                 interlace=interlace))
        check_taken(args, c, tmp, name, path, size, factor, w, h)
    corpus = Path(args.data) / "corpus" / "cascade-3840x2160.png"
    for size, f in (((400, 225), 8), ((800, 450), 4), ((1600, 900), 2)):
        check_taken(args, c, tmp, corpus.stem, corpus, size, f, 3840, 2160)
    adam7 = tmp / "cascade-adam7.png"  # ImageMagick's own Adam7 writer
    run(["convert", str(corpus), "-interlace", "PNG", "PNG24:" + str(adam7)], check=True)
    check_taken(args, c, tmp, adam7.stem, adam7, (400, 225), 8, 3840, 2160)
    job = tmp / "job-declined.json"
    write_job(job, 10, 6)
    for name, (path, why) in declined_files(tmp, sources(tmp)["rgb-256x160"][0]).items():
        rc, res, log = apply(args, job, path, tmp / ("out-" + path.stem))
        if name in ("bad CRC", "zlib error", "cut short", "interlace method 2",
                    "colour type 5", "filter type 5 in a palette file") + PALETTE_ERRORS:
            ok = rc != 0 and "cannot read the PNG image" in res.get("error", "")
            c.check(ok, f"{name}: ImageMagick's error still reported",
                    res.get("error", log[-300:]))
        elif name.endswith("index past PLTE") or name.endswith("index one past PLTE"):
            # ImageMagick reads it, then cannot write it
            ok = rc != 0 and "invalid colormap index" in res.get("error", "") and \
                "event=png_shrink_declined reason=\"palette index out of range\"" in log
            c.check(ok, f"{name}: declined in the worker, then ImageMagick's own error",
                    res.get("error", log[-300:]))
        elif name == "text without keyword":  # ImageMagick reads it, its PNG writer refuses it
            ok = rc != 0 and "tEXt: invalid keyword" in res.get("error", "") and \
                "event=png_shrink_declined reason=\"bad text keyword\"" in log
            c.check(ok, f"{name}: declined in the worker, then ImageMagick's own error",
                    res.get("error", log[-300:]))
        else:
            quoted = re.search(r"event=png_shrink_declined reason=\"?([^\"\n]*)", log)
            c.check(rc == 0 and quoted is not None and quoted.group(1) == why and
                    "shrink_on_load_missed" not in log and "by=box" in log,
                    f"{name}: declined in the worker ({why})",
                    " ".join(re.findall(r"event=png_shrink.*", log)) or log[-300:])


if __name__ == "__main__":
    sys.exit(checklib.main("pngshrink", __doc__, (check_exact, check_filters, check_long_idat,
                                                  check_declines,
                                                  check_texts, check_worker, check_memory)))
