#!/usr/bin/python3
"""Makes the small test images of tests/data/images with ImageMagick's convert.

The images are committed; this script records how they were made (re-run it only to change them:
the JPEG encoder's output may differ between ImageMagick versions, and the cases' expectations
were taken from the committed files).

    /usr/bin/python3 tests/tools/make_images.py [tests/data/images]

| file | what it is for |
|---|---|
| autumn-320x200.jpg | a small photo (tests/data/corpus/autumn-2560x1600.jpg scaled down): most function cases |
| orient6-400x300.jpg | stored 400x300 with EXIF Orientation 6 (shown 300x400), DateTimeOriginal, DateTime and GPS: auto-orient and original_meta. Stored top-left quarter red, top-right blue, bottom half green |
| alpha-200x150.png | RGBA: left half opaque red, right half fully transparent, a half-transparent blue band (#0000ff80) across the middle (y 60-89; over the red half it is blended to #7f0080, opaque): alpha handling, background_color, png_quantize |
| grey-160x120.png | an 8-bit greyscale horizontal gradient, black to white |
| grey-16bit-1024x4.png | a 16-bit greyscale horizontal gradient of 1024 levels: gray_colorspace keeps 256 of them |
| tall-1536x2048.jpg | the size of Blitline's documented example (resize_to_fit width 100 gives 100x133) |
| quadrants-64x64.png | four 32x32 quadrants red, green, blue, white (NW, NE, SW, SE): exact pixel checks |
| icc-exif-120x80.jpg | the small photo with an ICC profile (description "pixq test profile", made here) and EXIF (Orientation 1, DateTime): save_metadata and save_profiles |
| gps-lat-only-32x24.jpg | EXIF GPS with a latitude and no longitude: original_meta has neither lat nor lng, as Blitline's worker wrote them only together |
| icc-wide-48x32.png | two flat colours, rgb(200,50,50) and rgb(50,160,60), tagged with a wide-gamut profile made here (Adobe RGB primaries, gamma 2.2): converted to sRGB before the profile is dropped |
| icc-srgb-48x32.png | the same colours tagged with an sRGB profile made here (sRGB's primaries and parametric curve, not lcms's bytes): recognised as sRGB, not converted |
| icc-lut-48x32.png | the same colours tagged with a profile made here whose matrix and curves are sRGB's but whose A2B0 table (what lcms uses first) maps to Adobe RGB's primaries: not sRGB |
| icc-grey-48x32.png | two flat greys, gray(64) and gray(160), tagged with a grey profile made here whose tone curve is linear (gamma 1.0): converted to sRGB's tone curve (gray(137) and gray(207)) before the profile is dropped |
| icc-grey-srgb-48x32.png | the same greys tagged with a grey profile made here with sRGB's tone curve: recognised as sRGB, not converted |
| icc-cmyk-48x32.jpg | a CMYK JPEG of two flat colours, cmyk(0,200,200,0) and cmyk(200,0,100,50), tagged with a CMYK profile made here: converted to sRGB through it (#ff7f7f and #73e7cd, as `convert -profile` lcms's sRGB gives) when saved as PNG or without its profile; #ff3737 and #2ccd7d without the profile |
| label-32x32.png | a flat colour whose PNG text holds a `label` ("pixq secret label"), which the TIFF writer wrote as PageName |
| wide-gamut.icc | the wide-gamut profile of icc-wide-48x32.png as a file: add_profile's src |
| grey-linear.icc | the linear grey profile of icc-grey-48x32.png as a file: add_profile's src for a grey image, and an RGB image refused |
| orient6-exif-40x30.webp | a lossless WebP of orient6-400x300.jpg's pattern at 40x30 (stored top-left quarter red, top-right blue, bottom half green) whose EXIF chunk is orient6-400x300.jpg's block with the `Exif\0\0` prefix ImageMagick 6 reads: the WebP reader's EXIF profile, orientation and original_meta |
| orient6-exif-1600x1200.webp | the same at 1600x1200 (shown 1200x1600): large enough for shrink-on-load, which must plan for the shown size |
| orient8-exif-40x30.webp | the same with orientation 8 (stored top-left red ends bottom-left): the last orientation the WebP reader takes |
| icc-wide-48x32.webp | icc-wide-48x32.png as a lossless WebP, its wide-gamut profile in an ICCP chunk (convert writes it): the WebP reader's ICC profile |
"""

import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"


def convert(*args):
    subprocess.run(["convert", *args], check=True)


def ifd(entries, offset, next_ifd=0):
    """A big-endian TIFF IFD at `offset`: entries are (tag, type, count, bytes). Returns bytes."""
    data_at = offset + 2 + 12 * len(entries) + 4
    head, tail = [struct.pack(">H", len(entries))], []
    for tag, typ, count, value in sorted(entries):
        if len(value) <= 4:
            head.append(struct.pack(">HHI", tag, typ, count) + value.ljust(4, b"\0"))
        else:
            head.append(struct.pack(">HHII", tag, typ, count, data_at))
            value += b"\0" * (len(value) % 2)
            tail.append(value)
            data_at += len(value)
    head.append(struct.pack(">I", next_ifd))
    return b"".join(head) + b"".join(tail)


def ascii_(s):
    b = s.encode() + b"\0"
    return (2, len(b), b)


def rationals(*pairs):
    return (5, len(pairs), b"".join(struct.pack(">II", n, d) for n, d in pairs))


def exif_segment(orientation, date_original, date, lat, lat_ref, lng, lng_ref):
    """An APP1 Exif segment with IFD0 (Orientation, DateTime), an Exif IFD (DateTimeOriginal) and
    a GPS IFD (latitude, longitude as degrees/minutes/seconds rationals; no longitude when lng
    is None)."""
    exif_ifd = [(0x9003,) + ascii_(date_original)]
    gps_ifd = [(1,) + ascii_(lat_ref), (2,) + rationals(*lat)]
    if lng is not None:
        gps_ifd += [(3,) + ascii_(lng_ref), (4,) + rationals(*lng)]
    ifd0 = [(0x0112, 3, 1, struct.pack(">H", orientation)), (0x0132,) + ascii_(date),
            (0x8769, 4, 1, b"\0\0\0\0"), (0x8825, 4, 1, b"\0\0\0\0")]
    size0 = len(ifd(ifd0, 8))
    exif_at = 8 + size0
    size_exif = len(ifd(exif_ifd, exif_at))
    gps_at = exif_at + size_exif
    ifd0 = ifd0[:2] + [(0x8769, 4, 1, struct.pack(">I", exif_at)),
                       (0x8825, 4, 1, struct.pack(">I", gps_at))]
    tiff = b"MM\0\x2a" + struct.pack(">I", 8) + ifd(ifd0, 8) + ifd(exif_ifd, exif_at) + \
        ifd(gps_ifd, gps_at)
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def make_gps_lat_only(out):
    """gps-lat-only-32x24.jpg: EXIF GPS with a latitude and no longitude."""
    path = out / "gps-lat-only-32x24.jpg"
    convert("-size", "32x24", "xc:#4080c0", "-strip", "-quality", "90", str(path))
    insert_exif(path, exif_segment(1, "2016:05:04 03:02:01", "2016:05:04 03:02:01",
                                   [(10, 1), (30, 1), (0, 1)], "N", None, None))


def fixed(v):
    """An ICC s15Fixed16Number."""
    return struct.pack(">i", int(round(v * 65536)))


def desc_tag(description):
    """An ICC v2 textDescriptionType."""
    text = description.encode() + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text +
            struct.pack(">IIHB", 0, 0, 0, 0) + b"\0" * 67)


def xyz_tag(x, y, z):
    return b"XYZ " + b"\0" * 4 + fixed(x) + fixed(y) + fixed(z)


def icc_file(tags, space=b"RGB "):
    """An ICC v2 display profile (RGB, or `space`) of these (signature, body) tags: header, tag
    table, data."""
    at = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        data += b"\0" * (-(at + len(data)) % 4)
        table += sig + struct.pack(">II", at + len(data), len(body))
        data += body
    data += b"\0" * (-len(data) % 4)
    size = 128 + 4 + len(table) + len(data)
    header = (struct.pack(">I", size) + b"none" + struct.pack(">I", 0x02100000) + b"mntr" + space +
              b"XYZ " +
              b"\0" * 12 + b"acspAPPL" + b"\0" * 24 + fixed(0.9642) + fixed(1.0) + fixed(0.8249) +
              b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def icc_profile(description):
    """A minimal ICC v2 display profile: header, desc, wtpt and cprt tags (enough for
    ImageMagick and lcms to read its description)."""
    cprt = b"text" + b"\0" * 4 + b"public domain\0"
    return icc_file([(b"desc", desc_tag(description)), (b"wtpt", xyz_tag(0.9642, 1.0, 0.8249)),
                     (b"cprt", cprt)])


def lut16(inputs, xyz_of):
    """An A2B0 table (lut16Type, 2 grid points a side, linear curves) from `inputs` device
    channels to XYZ: xyz_of(corner) gives the XYZ of each corner of the grid (0 or 1 a channel,
    the first channel varying slowest)."""
    grid = []
    for n in range(2 ** inputs):
        corner = [(n >> (inputs - 1 - i)) & 1 for i in range(inputs)]
        grid += [min(65535, int(round(v * 32768))) for v in xyz_of(corner)]  # u1Fixed15
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    ramp_in, ramp_out = [0, 65535] * inputs, [0, 65535] * 3
    return (b"mft2" + b"\0" * 4 + struct.pack(">BBBB", inputs, 3, 2, 0) +
            b"".join(struct.pack(">i", v * 65536) for v in identity) + struct.pack(">HH", 2, 2) +
            struct.pack(">%dH" % len(ramp_in), *ramp_in) + struct.pack(">%dH" % len(grid), *grid) +
            struct.pack(">%dH" % len(ramp_out), *ramp_out))


def mix(primaries, rgb):
    """The XYZ of linear red, green and blue amounts of these primaries."""
    return [sum(rgb[i] * primaries[i][k] for i in range(3)) for k in range(3)]


def lut_tag(primaries):
    """An A2B0 table taking device RGB linearly to the XYZ of these primaries: another space than
    the matrix tags may say."""
    return lut16(3, lambda rgb: mix(primaries, rgb))


def cmyk_profile(description):
    """An ICC v2 CMYK profile whose A2B0 table takes ink to sRGB's primaries the naive way (red =
    (1 - C)(1 - K), linear light...): far from what ImageMagick makes of CMYK without a profile."""
    def xyz_of(cmyk):
        c, m, y, k = cmyk
        return mix(SRGB_PRIMARIES, [(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)])
    return icc_file([(b"desc", desc_tag(description)), (b"wtpt", xyz_tag(0.9642, 1.0, 0.8249)),
                     (b"A2B0", lut16(4, xyz_of)),
                     (b"cprt", b"text" + b"\0" * 4 + b"public domain\0")], space=b"CMYK")


def tone_curve(gamma):
    """An ICC tone curve: a gamma, or (gamma "srgb") sRGB's parametric curve."""
    if gamma == "srgb":  # IEC 61966-2-1: Y = ((X + 0.055) / 1.055)^2.4, X / 12.92 below 0.04045
        return (b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + fixed(2.4) + fixed(1 / 1.055) +
                fixed(0.055 / 1.055) + fixed(1 / 12.92) + fixed(0.04045))
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0" * 2


def grey_profile(description, gamma):
    """An ICC v2 grey display profile: one tone curve (kTRC), a gamma or sRGB's."""
    return icc_file([(b"desc", desc_tag(description)), (b"wtpt", xyz_tag(0.9642, 1.0, 0.8249)),
                     (b"kTRC", tone_curve(gamma)),
                     (b"cprt", b"text" + b"\0" * 4 + b"public domain\0")], space=b"GRAY")


def rgb_profile(description, primaries, gamma, a2b0=None):
    """An ICC v2 matrix/TRC RGB display profile: colorants (D50-adapted XYZ of red, green and blue)
    and one tone curve for each channel, a gamma or (gamma "srgb") sRGB's parametric curve;
    enough for lcms to convert from it. `a2b0`: primaries for an A2B0 table too (lut_tag)."""
    trc = tone_curve(gamma)
    tags = [(b"desc", desc_tag(description)), (b"wtpt", xyz_tag(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz_tag(*primaries[0])), (b"gXYZ", xyz_tag(*primaries[1])),
            (b"bXYZ", xyz_tag(*primaries[2])), (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc),
            (b"cprt", b"text" + b"\0" * 4 + b"public domain\0")]
    if a2b0 is not None:
        tags.append((b"A2B0", lut_tag(a2b0)))
    return icc_file(tags)


# Adobe RGB (1998)'s and sRGB's primaries adapted to D50, as ICC profiles carry them
WIDE_PRIMARIES = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
SRGB_PRIMARIES = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


def make_wide_gamut(out):
    """icc-wide-48x32.png: two flat colours tagged with a wide-gamut (Adobe RGB-like) profile;
    icc-srgb-48x32.png: the same tagged with an sRGB profile of this project's making;
    icc-lut-48x32.png: the same tagged with sRGB's matrix and curves and a wide-gamut A2B0
    table, which lcms goes by; label-32x32.png: a PNG whose text carries a `label`."""
    for name, description, primaries, gamma, a2b0 in (
            ("icc-wide-48x32.png", "pixq wide-gamut test profile", WIDE_PRIMARIES, 2.2, None),
            ("icc-srgb-48x32.png", "pixq sRGB test profile", SRGB_PRIMARIES, "srgb", None),
            ("icc-lut-48x32.png", "pixq sRGB matrix, wide table", SRGB_PRIMARIES, "srgb",
             WIDE_PRIMARIES)):
        icc = out / "pixq-test-rgb.icc"
        icc.write_bytes(rgb_profile(description, primaries, gamma, a2b0))
        convert("-size", "24x32", "xc:rgb(200,50,50)", "xc:rgb(50,160,60)", "+append", "-profile",
                str(icc), str(out / name))
        icc.unlink()
    convert("-size", "32x32", "xc:#3060a0", "-set", "label", "pixq secret label",
            str(out / "label-32x32.png"))


def make_grey_profiles(out):
    """icc-grey-48x32.png and icc-grey-srgb-48x32.png: two flat greys tagged with a linear grey
    profile, and with one of sRGB's tone curve."""
    for name, description, gamma in (("icc-grey-48x32.png", "pixq linear grey profile", 1.0),
                                      ("icc-grey-srgb-48x32.png", "pixq sRGB grey profile",
                                       "srgb")):
        icc = out / "pixq-test-grey.icc"
        icc.write_bytes(grey_profile(description, gamma))
        convert("-size", "24x32", "xc:gray(64)", "xc:gray(160)", "+append", "-colorspace", "gray",
                "-profile", str(icc), str(out / name))
        icc.unlink()


def make_icc_files(out):
    """wide-gamut.icc and grey-linear.icc: profiles as files, for add_profile's src."""
    (out / "wide-gamut.icc").write_bytes(
        rgb_profile("pixq wide-gamut test profile", WIDE_PRIMARIES, 2.2))
    (out / "grey-linear.icc").write_bytes(grey_profile("pixq linear grey profile", 1.0))


def make_cmyk(out):
    """icc-cmyk-48x32.jpg: a CMYK JPEG tagged with cmyk_profile()."""
    icc = out / "pixq-test-cmyk.icc"
    icc.write_bytes(cmyk_profile("pixq CMYK test profile"))
    convert("-size", "24x32", "xc:cmyk(0,200,200,0)", "xc:cmyk(200,0,100,50)", "+append",
            "-profile", str(icc), "-quality", "100", str(out / "icc-cmyk-48x32.jpg"))
    icc.unlink()


def riff_chunk(tag, body):
    return tag + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def make_webps(out):
    """orient6-exif-40x30.webp, orient8-exif-40x30.webp and orient6-exif-1600x1200.webp (a VP8L
    image rewrapped in a VP8X container with an EXIF chunk), and icc-wide-48x32.webp."""
    for w, h, orientations in ((40, 30, (6, 8)), (1600, 1200, (6,))):
        orient_webps(out, w, h, orientations)
    convert(str(out / "icc-wide-48x32.png"), "-define", "webp:lossless=true",
            str(out / "icc-wide-48x32.webp"))


def orient_webps(out, width, height, orientations):
    """orientN-exif-WxH.webp: orient6-400x300.jpg's pattern at WxH, losslessly, with its EXIF
    block (the orientation N) in an EXIF chunk."""
    plain = out / "orient-plain.webp"
    convert("-size", "%dx%d" % (width, height), "xc:#00c000", "-fill", "#ff0000", "-draw",
            "rectangle 0,0 %d,%d" % (width // 2 - 1, height // 2 - 1), "-fill", "#0000ff",
            "-draw", "rectangle %d,0 %d,%d" % (width // 2, width - 1, height // 2 - 1),
            "-strip", "-define", "webp:lossless=true", str(plain))
    data = plain.read_bytes()
    plain.unlink()
    assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8L"
    bits = int.from_bytes(data[21:25], "little")  # VP8L: 14 bits of width - 1, of height - 1
    w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    vp8x = riff_chunk(b"VP8X", bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") +
                      (h - 1).to_bytes(3, "little"))  # flag 0x08: an EXIF chunk follows
    for orientation in orientations:
        segment = exif_segment(orientation, "2014:08:02 20:17:55", "2015:01:01 10:00:00",
                               [(52, 1), (31, 1), (1234, 100)], "N", [(13, 1), (24, 1), (36, 1)],
                               "W")
        body = b"WEBP" + vp8x + data[12:] + riff_chunk(b"EXIF", segment[4:])  # "Exif\0\0"...
        riff = b"RIFF" + struct.pack("<I", len(body)) + body
        name = "orient%d-exif-%dx%d.webp" % (orientation, width, height)
        (out / name).write_bytes(riff)


def insert_exif(path, segment):
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    path.write_bytes(data[:2] + segment + data[2:])


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "images"
    out.mkdir(parents=True, exist_ok=True)
    corpus = DATA / "corpus"
    convert(str(corpus / "autumn-2560x1600.jpg"), "-resize", "320x200", "-strip", "-quality", "90",
            str(out / "autumn-320x200.jpg"))

    o6 = out / "orient6-400x300.jpg"
    convert("-size", "400x300", "xc:#00c000", "-fill", "#ff0000", "-draw", "rectangle 0,0 199,149",
            "-fill", "#0000ff", "-draw", "rectangle 200,0 399,149", "-strip", "-quality", "92",
            str(o6))
    insert_exif(o6, exif_segment(6, "2014:08:02 20:17:55", "2015:01:01 10:00:00",
                                 [(52, 1), (31, 1), (1234, 100)], "N",
                                 [(13, 1), (24, 1), (36, 1)], "W"))

    convert("-size", "200x150", "xc:none", "-fill", "#ff0000", "-draw", "rectangle 0,0 99,149",
            "-fill", "#0000ff80", "-draw", "rectangle 0,60 199,89", "-define",
            "png:color-type=6", str(out / "alpha-200x150.png"))
    convert("-size", "120x160", "gradient:black-white", "-rotate", "-90", "-colorspace", "Gray",
            "-depth", "8", str(out / "grey-160x120.png"))
    convert("-size", "4x1024", "gradient:black-white", "-rotate", "-90", "-colorspace", "Gray",
            "-depth", "16", str(out / "grey-16bit-1024x4.png"))
    convert("-size", "1536x2048", "gradient:#3060a0-#e0c080", "-strip", "-quality", "60",
            str(out / "tall-1536x2048.jpg"))
    icc = out / "pixq-test.icc"
    icc.write_bytes(icc_profile("pixq test profile"))
    ie = out / "icc-exif-120x80.jpg"
    convert(str(out / "autumn-320x200.jpg"), "-resize", "120x80", "-strip", "-profile", str(icc),
            "-quality", "90", str(ie))
    icc.unlink()
    insert_exif(ie, exif_segment(1, "2016:05:04 03:02:01", "2016:05:04 03:02:01",
                                 [(0, 1), (0, 1), (0, 1)], "N", [(0, 1), (0, 1), (0, 1)], "E"))
    make_gps_lat_only(out)
    make_wide_gamut(out)
    make_icc_files(out)
    make_grey_profiles(out)
    make_cmyk(out)
    make_webps(out)
    convert("-size", "32x32", "xc:#ff0000", "xc:#00ff00", "+append", "(", "-size", "32x32",
            "xc:#0000ff", "xc:#ffffff", "+append", ")", "-append", "-strip",
            str(out / "quadrants-64x64.png"))


if __name__ == "__main__":
    main()
