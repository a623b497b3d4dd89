#!/usr/bin/python3
"""The data-driven function suite: runs every case of tests/data/cases/*.json through pixq-apply.

Each case file is a JSON array of cases (the format is tests/data/cases/README.md). For each case
the runner builds a job, runs it through pixq-apply (the worker's own code on a local file: one
`pixq-apply --batch` process a thread, as a worker runs job after job, or with --no-batch and for
the cases that check the debug log `pixq-apply JOB SRC OUTDIR` a case), and checks the outputs (format, size, chosen pixels, identify properties), the error, the
original_meta, and, when the case gives `convert`, the first output against ImageMagick's
`convert SRC <args> OUT` with `compare -metric RMSE`. With --no-convert (the sanitizer build's
run: its pixq-apply is there for memory errors, its outputs are the plain build's, and the
three ImageMagick processes a comparison takes were a quarter of that run's time) the
comparisons are left out and every other check is made.

    /usr/bin/python3 tests/functions/run_cases.py --apply build-w/tests/tools/pixq-apply \\
        [--data tests/data] [--file resize.json] [--case resize_to_fit_defaults] [-v] [--keep]
        [--no-convert] [--no-batch]

Prints one line per case and a last line "functions: N passed, N failed"; exits 1 if a case
failed (or none ran because of a filter that matched nothing).
"""

import argparse
import concurrent.futures
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

CASE_KEYS = {"name", "src", "functions", "job", "expect", "convert", "rmse_max", "note", "log"}
EXPECT_KEYS = {"outputs", "error", "original_meta"}
OUTPUT_KEYS = {"image_identifier", "format", "width", "height", "pixels", "identify",
               "png_chunks"}
DEFAULT_RMSE = 0.01
DEFAULT_QUALITY = 75  # the worker's default JPEG/WebP quality (PIXQ_DEFAULT_QUALITY)
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
              "TIFF": "tif"}
HEX = re.compile(r"^#([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
TIMEOUT_S = 120
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


class CaseError(Exception):
    """A check of a case failed; the message says which."""


def run(args, timeout=TIMEOUT_S, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          **kw)


def magick(*args):
    """stdout of an ImageMagick command, or CaseError with its stderr."""
    r = run(list(args))
    if r.returncode != 0:
        raise CaseError("%s failed: %s" % (" ".join(map(str, args[:6])),
                                            r.stderr.decode(errors="replace").strip()[:500]))
    return r.stdout.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# building the job


def source_path(data, name):
    for sub in ("corpus", "images"):
        p = data / sub / name
        if p.is_file():
            return p
    raise CaseError("src %r is neither in %s/corpus nor in %s/images" % (name, data, data))


def iter_saves(functions):
    """Every save block of a function tree in document order (depth first)."""
    for f in functions or []:
        if isinstance(f, dict):
            if isinstance(f.get("save"), dict):
                yield f["save"]
            yield from iter_saves(f.get("functions"))


def truthy(v):
    return v is True or (isinstance(v, str) and v.lower() == "true") or v == 1


def check_shape(case):
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseError("unknown case keys %s" % sorted(unknown))
    for k in ("name", "src", "functions", "expect"):
        if k not in case:
            raise CaseError("a case needs %r" % k)
    expect = case["expect"]
    if not isinstance(expect, dict) or set(expect) - EXPECT_KEYS:
        raise CaseError("expect must be an object with keys among %s" % sorted(EXPECT_KEYS))
    if ("outputs" in expect) == ("error" in expect):
        raise CaseError("expect needs exactly one of 'outputs' and 'error'")
    for o in expect.get("outputs", []):
        if set(o) - OUTPUT_KEYS:
            raise CaseError("unknown expected-output keys %s" % sorted(set(o) - OUTPUT_KEYS))


def build_job(case, data):
    """(job dict, the SRC argument of pixq-apply)."""
    job = dict(case.get("job") or {})
    job["functions"] = case["functions"]
    src = case["src"]
    if isinstance(src, str) and not src.startswith("&"):
        job.setdefault("src", "file:" + src)
        return job, str(source_path(data, src))
    job["src"] = src  # an object (canvas) or "&identifier": the job's own src
    return job, "-"


# ---------------------------------------------------------------------------------------------
# checks


def pixel_format(pixels):
    """An ImageMagick -format string printing r,g,b,a (0-255) of each pixel, one per line."""
    parts = []
    for x, y, _, _ in pixels:
        p = "p{%d,%d}" % (x, y)
        parts.append(",".join("%%[fx:int(255*%s.%s+0.5)]" % (p, c) for c in "rgba"))
    return "\\n".join(parts) + "\\n"


def check_pixels(path, pixels):
    for px in pixels:
        if len(px) != 4 or not HEX.match(str(px[2])):
            raise CaseError("a pixel check is [x, y, \"#rrggbb[aa]\", max_diff], not %r" % (px,))
    lines = magick("convert", path + "[0]", "-format", pixel_format(pixels), "info:").split()
    problems = []
    for (x, y, want, tol), got in zip(pixels, lines):
        got = [int(v) for v in got.split(",")]
        hexes = want[1:]
        exp = [int(hexes[i:i + 2], 16) for i in range(0, len(hexes), 2)]
        diff = max(abs(a - b) for a, b in zip(got, exp))
        if diff > tol:
            problems.append("pixel (%d,%d) is %s, want %s (diff %d > %d)"
                            % (x, y, "#" + "".join("%02x" % v for v in got[:len(exp)]), want,
                               diff, tol))
    if problems:
        raise CaseError("; ".join(problems))


def png_chunk_types(path):
    """The chunk types of a PNG file, in order."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CaseError("%s is not a PNG file" % path)
    types, at = [], 8
    while at + 8 <= len(data):
        n = int.from_bytes(data[at:at + 4], "big")
        types.append(data[at + 4:at + 8].decode("latin-1"))
        at += 12 + n
    return types


def check_output(out, want, index):
    where = "output %d (%s)" % (index, out.get("image_identifier"))
    if out.get("image_identifier") != want.get("image_identifier", out.get("image_identifier")):
        raise CaseError("%s: image_identifier %r, want %r"
                        % (where, out.get("image_identifier"), want["image_identifier"]))
    fmt, w, h = magick("identify", "-format", "%m %w %h\\n", out["file"] + "[0]").split()[:3]
    got = {"format": fmt, "width": int(w), "height": int(h)}
    for k in ("format", "width", "height"):
        if k in want and want[k] != got[k]:
            raise CaseError("%s: %s is %r, want %r" % (where, k, got[k], want[k]))
    if out["width"] and (out["width"], out["height"]) != (got["width"], got["height"]):
        raise CaseError("%s: pixq-apply reported %dx%d but the file is %dx%d"
                        % (where, out["width"], out["height"], got["width"], got["height"]))
    for escape, value in (want.get("identify") or {}).items():
        got_v = magick("identify", "-format", escape, out["file"] + "[0]").strip()
        if got_v != str(value):
            raise CaseError("%s: identify %s is %r, want %r" % (where, escape, got_v, value))
    if want.get("pixels"):
        try:
            check_pixels(out["file"], want["pixels"])
        except CaseError as e:
            raise CaseError("%s: %s" % (where, e))
    chunks = want.get("png_chunks")
    if chunks:
        types = png_chunk_types(out["file"])
        missing = [t for t in chunks.get("present", ()) if t not in types]
        extra = [t for t in chunks.get("absent", ()) if t in types]
        if missing or extra:
            raise CaseError("%s: PNG chunks %s: %s missing, %s present"
                            % (where, types, missing, extra))


def same(got, want):
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * max(1, abs(want))
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and same(got[k], v) for k, v in want.items())
    return got == want


def check_meta(meta, want):
    """Each expected member's value; null: the member is absent."""
    for k, v in want.items():
        if v is None:
            if k in meta:
                raise CaseError("original_meta.%s is %r, want it absent" % (k, meta[k]))
        elif k not in meta or not same(meta[k], v):
            raise CaseError("original_meta.%s is %r, want %r" % (k, meta.get(k), v))


def compare_with_convert(case, src_arg, first, tmp):
    """`convert SRC[0] [-auto-orient] <args> [-quality Q] OUT` against the first output."""
    fmt = magick("identify", "-format", "%m", first["file"] + "[0]").strip()
    ref = str(tmp / ("convert." + EXTENSIONS.get(fmt, "png")))
    args = ["convert"]
    if src_arg != "-":
        args.append(src_arg + "[0]")
        if not truthy((case.get("job") or {}).get("suppress_auto_orient")):
            args.append("-auto-orient")
    args += [str(a) for a in case["convert"]]
    if fmt in ("JPEG", "WEBP"):
        saves = [s for s in iter_saves(case["functions"]) if not truthy(s.get("skip"))]
        quality = saves[0].get("quality", DEFAULT_QUALITY) if saves else DEFAULT_QUALITY
        args += ["-quality", str(quality)]
    magick(*args, ref)
    r = run(["compare", "-metric", "RMSE", first["file"] + "[0]", ref, "null:"])
    text = r.stderr.decode(errors="replace").strip()
    m = re.search(r"\(([0-9.eE+-]+)\)", text)
    if r.returncode > 1 or m is None:
        raise CaseError("compare with `%s` failed: %s" % (" ".join(args[1:] + [ref]), text[:300]))
    rmse, bound = float(m.group(1)), float(case.get("rmse_max", DEFAULT_RMSE))
    if rmse > bound:
        raise CaseError("normalised RMSE against `convert %s` is %.5f > %.5f"
                        % (" ".join(args[1:]), rmse, bound))
    return rmse


# ---------------------------------------------------------------------------------------------
# pixq-apply, one process a case or one a thread


class Batch:
    """One `pixq-apply --batch` process: a case is a line written to it and the JSON line it
    prints, so that the cases of a thread share one process (its start, ImageMagick's set-up,
    was most of a case's time, and most of the sanitizer build's run), as a worker's jobs do.
    Its stderr goes to a file, read after each case; a process that dies is replaced."""

    def __init__(self, apply_bin, data):
        self.err = tempfile.TemporaryFile()
        self.err_at = 0
        self.proc = subprocess.Popen([apply_bin, "--data", str(data), "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)

    def new_stderr(self):
        self.err.seek(self.err_at)
        text = self.err.read()
        self.err_at += len(text)
        return text

    def run(self, job, src_arg, out_dir):
        """(status, stdout, stderr) of one case, as a process of its own gives them; status is
        the process's exit status when it died on the case."""
        try:
            self.proc.stdin.write(("%s\t%s\t%s\n" % (job, src_arg, out_dir)).encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            raise subprocess.TimeoutExpired(self.proc.args, TIMEOUT_S)
        line = self.proc.stdout.readline()
        if not line:
            return self.proc.wait(), b"", self.new_stderr()
        try:
            status = 1 if "error" in json.loads(line) else 0
        except ValueError:
            status = 1
        return status, line, self.new_stderr()

    def close(self):
        """The process's exit status and what it wrote to stderr at exit (leak reports)."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
        status = self.proc.wait()
        text = self.new_stderr()
        self.err.close()
        return status, text


class Applier:
    """Runs pixq-apply for a case: in the calling thread's Batch, or in a process of its own
    when the case needs its own environment (a debug log) or --no-batch was given."""

    def __init__(self, apply_bin, data, batch):
        self.apply_bin, self.data, self.batch = apply_bin, data, batch
        self.local = threading.local()
        self.every = []
        self.lock = threading.Lock()

    def run(self, job, src_arg, out_dir, env):
        if env is not None or not self.batch:
            r = run([self.apply_bin, "--data", str(self.data), str(job), src_arg, str(out_dir)],
                    env=env)
            return r.returncode, r.stdout, r.stderr
        b = getattr(self.local, "batch", None)
        if b is None or b.proc.poll() is not None:
            b = self.local.batch = Batch(self.apply_bin, self.data)
            with self.lock:
                self.every.append(b)
        return b.run(job, src_arg, out_dir)

    def close(self):
        """Problems found when the batch processes ended: [message]."""
        problems = []
        for b in self.every:
            alive = b.proc.poll() is None
            status, text = b.close()
            err = text.decode(errors="replace")
            if alive and status != 0 or any(m in err for m in SANITIZER_MARKERS):
                problems.append("pixq-apply --batch exited %d: %s" % (status, err[-2000:]))
        return problems


# ---------------------------------------------------------------------------------------------
# one case


def run_case(case, applier, data, keep, with_convert=True):
    """Runs one case; returns (ok, message)."""
    tmp = Path(tempfile.mkdtemp(prefix="pixq-case-"))
    try:
        check_shape(case)
        job, src_arg = build_job(case, data)
        (tmp / "job.json").write_text(json.dumps(job))
        log = case.get("log") or {}
        env = dict(os.environ, PIXQ_LOG_LEVEL="debug") if log else None
        status, out, err = applier.run(tmp / "job.json", src_arg, tmp, env)
        stdout = out.decode(errors="replace").strip()
        stderr = err.decode(errors="replace")
        events = re.findall(r"event=(\S+)", stderr)
        for event in log.get("has", ()):
            if event not in events:
                raise CaseError("pixq-apply logged no %s (debug log: %s)" % (event, events))
        for event in log.get("lacks", ()):
            if event in events:
                raise CaseError("pixq-apply logged %s" % event)
        for marker in SANITIZER_MARKERS:
            if marker in stderr:
                raise CaseError("pixq-apply's stderr has a sanitizer report: %s"
                                % stderr[stderr.index(marker):][:2000])
        try:
            doc = json.loads(stdout.splitlines()[-1]) if stdout else None
        except ValueError:
            doc = None
        if status not in (0, 1) or not isinstance(doc, dict):
            raise CaseError("pixq-apply exited %d: %s %s" % (status, stdout[:300], stderr[:500]))
        return True, check_result(case, doc, status, src_arg, tmp, with_convert)
    except CaseError as e:
        return False, str(e) + (" (kept in %s)" % tmp if keep else "")
    except subprocess.TimeoutExpired as e:
        return False, "timed out: %s" % e
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def check_result(case, doc, status, src_arg, tmp, with_convert):
    expect = case["expect"]
    if "error" in expect:
        if status != 1 or "error" not in doc:
            raise CaseError("expected an error containing %r, got %s"
                            % (expect["error"], json.dumps(doc)[:300]))
        if expect["error"] not in doc["error"]:
            raise CaseError("error %r does not contain %r" % (doc["error"], expect["error"]))
        return "error as expected"
    if status != 0:
        raise CaseError(doc.get("error", "pixq-apply failed"))
    outputs, wants = doc["outputs"], expect["outputs"]
    if len(outputs) != len(wants):
        raise CaseError("%d outputs (%s), want %d" % (
            len(outputs), [o["image_identifier"] for o in outputs], len(wants)))
    for i, (out, want) in enumerate(zip(outputs, wants)):
        check_output(out, want, i)
    check_meta(doc.get("original_meta") or {}, expect.get("original_meta") or {})
    if case.get("convert") is not None:
        if not outputs:
            raise CaseError("'convert' needs an output to compare")
        if not with_convert:
            return "not compared with convert (--no-convert)"
        return "rmse %.5f" % compare_with_convert(case, src_arg, outputs[0], tmp)
    return ""


# ---------------------------------------------------------------------------------------------
# main


def load_cases(cases_dir, only_file, only_case):
    """[(file name, case)], and a list of problems with the files themselves."""
    found, problems, names = [], [], {}
    files = sorted(cases_dir.glob("*.json"))
    if only_file:
        files = [f for f in files if f.name in (only_file, only_file + ".json")
                 or str(f) == only_file]
    for path in files:
        try:
            cases = json.loads(path.read_text())
        except ValueError as e:
            problems.append("%s: not JSON: %s" % (path.name, e))
            continue
        if not isinstance(cases, list):
            problems.append("%s: must be a JSON array of cases" % path.name)
            continue
        for case in cases:
            name = case.get("name") if isinstance(case, dict) else None
            if not isinstance(name, str) or not name:
                problems.append("%s: a case without a name" % path.name)
                continue
            if name in names:
                problems.append("%s: case %r is also in %s" % (path.name, name, names[name]))
            names[name] = path.name
            if only_case is None or name == only_case:
                found.append((path.name, case))
    return found, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apply", default=os.environ.get("PIXQ_APPLY"),
                    help="pixq-apply binary (or PIXQ_APPLY)")
    ap.add_argument("--data", default=str(REPO / "tests" / "data"))
    ap.add_argument("--file", help="only this case file (name, with or without .json)")
    ap.add_argument("--case", help="only the case with this name")
    ap.add_argument("--keep", action="store_true", help="keep each failing case's folder")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("-v", "--verbose", action="store_true", help="print notes of passing cases")
    ap.add_argument("--no-convert", action="store_true",
                    help="leave out the comparisons with ImageMagick's convert")
    ap.add_argument("--no-batch", action="store_true",
                    help="one pixq-apply process a case (not one `--batch` process a thread)")
    opts = ap.parse_args()
    if not opts.apply or not os.access(opts.apply, os.X_OK):
        print("run_cases.py: no pixq-apply binary (--apply or PIXQ_APPLY): %r" % opts.apply)
        return 2
    data = Path(opts.data).resolve()
    cases, problems = load_cases(data / "cases", opts.file, opts.case)
    for p in problems:
        print("FAIL %s" % p)
    applier = Applier(opts.apply, data, not opts.no_batch)
    with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        futures = [pool.submit(run_case, c, applier, data, opts.keep, not opts.no_convert) for _, c in cases]
        passed = failed = 0
        for (fname, case), fut in zip(cases, futures):
            ok, msg = fut.result()
            label = "%s/%s" % (fname, case["name"])
            if ok:
                passed += 1
                print("ok   %s%s" % (label, (": " + msg) if msg and opts.verbose else ""))
            else:
                failed += 1
                print("FAIL %s: %s" % (label, msg))
            sys.stdout.flush()
    for p in applier.close():
        print("FAIL %s" % p)
        problems.append(p)
    failed += len(problems)
    print("functions: %d passed, %d failed%s" % (
        passed, failed, " (convert comparisons left out)" if opts.no_convert else ""))
    if (opts.case or opts.file) and not cases:
        print("run_cases.py: no case matched the filter")
        return 1
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
