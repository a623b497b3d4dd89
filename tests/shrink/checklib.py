"""What the reduced-decode tests (test_jpegdc.py, test_pngshrink.py) share: a tally of checks,
running a program, and spotting a sanitizer's report."""

import subprocess

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
