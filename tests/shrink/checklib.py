"""What the reduced-decode tests (test_jpegdc.py, test_pngshrink.py) share: a tally of checks,
running a program, and spotting a sanitizer's report."""

import argparse
import subprocess
import tempfile
from pathlib import Path

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


class Checks:
    def __init__(self, verbose):
        self.passed = self.failed = 0
        self.verbose = verbose

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if self.verbose or not ok:
            print(("ok   " if ok else "FAIL ") + what + (": " + detail if detail else ""))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=120, **kw)


def sanitizer(stderr):
    """Whether a program's stderr (bytes) holds an AddressSanitizer, LeakSanitizer or UBSan
    report."""
    return any(s in stderr.decode(errors="replace") for s in SANITIZER_MARKERS)


def main(name, doc, steps):
    """A test's command line (--dump PROG --apply PROG [--props PROG] [--data DIR] [-v]): each
    step(args,
    checks, dir) in a directory of its own; prints "NAME: N passed, N failed"; the exit status."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--dump", required=True)
    ap.add_argument("--apply", required=True)
    ap.add_argument("--props", help="props-dump (tests/shrink/props-dump.c)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data"))
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    c = Checks(args.verbose)
    with tempfile.TemporaryDirectory(prefix="pixq-%s-" % name) as d:
        for step in steps:
            sub = Path(d) / step.__name__
            sub.mkdir()
            step(args, c, sub)
    print(f"{name}: {c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1
