#!/usr/bin/python3
"""bench-smoke: run each benchmark with tiny counts and check that it prints its figures (not
their values: a smoke test on a shared CI machine cannot judge performance).

    /usr/bin/python3 tests/bench/smoke.py tests/bench/run BUILD_DIR [NAME,NAME...]

With names, only those benchmarks run (`run NAME --smoke` each): the sanitizer build's smoke
runs soak and chaos, whose point is a worker that neither grows nor loses anything through
varied jobs and faults; the others' time there went mostly to their anchors (convert,
vipsthumbnail, djpeg, redis-benchmark), which are the plain build's.
"""

import re
import subprocess
import sys

NUM = r"[0-9]+(?:\.[0-9]+)?"

# benchmark -> patterns its section of `run all --smoke` must match
CHECKS = {
    "limiter": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"limiter accuracy, rl_acquire\.lua called directly",
        r"limiter accuracy, real pixq-workers, measured at the S3 stub",
    ] + [r"(?m)^%d +\d+ +%s +%s +%s +\d+ +\d+" % (n, NUM, NUM, NUM) for n in (1, 2, 4)] + [
        r"(?m)^  round trip: +PING %s us +EVALSHA rl_acquire %s us \(adaptive path %s us\) +"
        r"ratio %s$" % (NUM, NUM, NUM, NUM),
        r"(?m)^  in Redis: +PING %s us +EVALSHA rl_acquire %s us \(adaptive path %s us\) +"
        r"ratio %s$" % (NUM, NUM, NUM, NUM),
    ],
    "thumbs": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"(?m)^(200|800) +path-2560x1600\.jpg +%s +%s +%s +%s +%s +%s +%s +%s +%s +%s +\d+x\d+ "
        r"djpeg \d/8$" % ((NUM,) * 10),
        r"(?m)^(200|800) +cascade-3840x2160\.png +%s +%s +- +%s +%s +%s +- +%s +%s +- +\d+x\d+$"
        % ((NUM,) * 7),
        r"(?m)^  200 px: pixq/vips %s \((met|missed)\)  pixq/convert %s \((met|missed)\)  "
        r"pixq/djpeg %s \((met|missed)\)$" % (NUM, NUM, NUM),
    ],
    "resize": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"(?m)^autumn-2560x1600\.jpg +1280x800 +800x500 +no +lanczos +%s +%s +%s$" % ((NUM,) * 3),
        r"(?m)^autumn-2560x1600\.jpg +1280x800 +800x500 +yes +mitchell +%s +%s +%s$" % ((NUM,) * 3),
        r"(?m)^autumn-2560x1600\.jpg +1280x800 +1600x1000 +no +mitchell +%s +%s +%s$" % ((NUM,) * 3),
        r"(?m)^median pixq/imagemagick: %s$" % NUM,
    ],
    "memory": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"(?m)^pixq-worker +%s +%s +\d+ +%s$" % (NUM, NUM, NUM),
        r"(?m)^pixq-worker \(PIXQ_JPEG_DC=0\) +%s +%s +\d+ +%s$" % (NUM, NUM, NUM),
        r"(?m)^pixq-worker \(shrink off\) +%s +%s +\d+ +%s$" % (NUM, NUM, NUM),
        r"(?m)^convert +%s +- +- +%s$" % (NUM, NUM),
        r"(?m)^vipsthumbnail +%s +- +- +%s$" % (NUM, NUM),
        r"(?m)^pixq-worker: %s MB of its peak are file pages .*: %s MB without them$"
        % (NUM, NUM),
        r"(?m)^target: pixq-worker peak <= 100 MB: %s MB \((met|missed)\)$" % NUM,
    ],
    "e2e": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
    ] + [r"(?m)^end to end: .* to a thumbnail %d px wide, .*$" % w for w in (200, 800)] + [r"(?m)^%d +%s +%s +%s +%s +%s +%s +%s$" % ((n,) + (NUM,) * 7) for n in (1, 2)] + [
        r"(?m)^scaling 2 workers / 1 worker: %s \(throughput phase, median of rounds\)$" % NUM,
        r"(?m)^scaling by round: %s$" % NUM,
    ] + [r"(?m)^  %d workers?, CPU a job in the throughput phase: pixq-worker %s ms, s3rver %s ms, "
         r"benchmark %s ms, redis-server %s ms, total %s ms; cores busy: %s by them, %s in all$"
         % ((n,) + (NUM,) * 7) for n in (1, 2)] + [
        r"(?m)^  %d workers?, in the worker beside processing \(p50\): source download %s ms, "
        r"upload to s3rver %s ms, postback %s ms$" % ((n,) + (NUM,) * 3) for n in (1, 2)],
    "queue": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
    ] + [r"(?m)^%d +%s +%s +%s +%s +%s +%s +%s$" % ((n,) + (NUM,) * 7) for n in (1, 2)] + [
        r"(?m)^scaling 2 workers / 1 worker: %s$" % NUM,
        r"(?m)^1 worker, a job's %s us: %s round trips %s us \(PING's speed\), Redis's own work "
        r"%s us, the rest -?%s us; r_ping bound %s$" % ((NUM,) * 6),
        r"(?m)^redis-benchmark -c 1 -P 1: PING %s req/s, EVALSHA begin\.lua %s req/s$"
        % (NUM, NUM),
        r"(?m)^r_ping by round, 1 worker: %s$" % NUM,
        r"(?m)^r_ping by round, 2 workers: %s$" % NUM,
        r"(?m)^1 worker, Redis's work a job \(INFO commandstats, all rounds\): %s script calls %s "
        r"us; inside them the commands %s us \((\w+ %s x %s us)(, \w+ %s x %s us)*\), the rest "
        r"-?%s us the scripts' own .*$" % ((NUM,) * 8),
        r"(?m)^Redis memory a job \(used_memory, \d+ jobs\): %s B queued, %s B settled \(result "
        r"and job hash, kept PIXQ_RESULT_TTL_S\)$" % (NUM, NUM),
    ],
    "soak": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"(?m)^ +60 +%s +%s +%s +\d+ +\d+$" % ((NUM,) * 3),
        r"(?m)^jobs: \d+ succeeded, \d+ failed .*; %s jobs/s$" % NUM,
        r"(?m)^rss: %s MB after the first batch, %s MB half way \(\d+ jobs\), %s MB at the end; "
        r"peak %s MB$" % ((NUM,) * 4),
        r"(?m)^growth over the second half: -?%s MB per 1000 jobs; open descriptors \d+ -> \d+, "
        r"threads \d+ -> \d+ .*$" % NUM,
        r"(?m)^failures other than the generator's: 0$",
    ],
    "chaos": [
        r"(?m)^machine: nproc=\d+ cpu=.+ load_at_start=.+$",
        r"(?m)^chaos: seed \d+, 12 jobs \(.*\), 2 workers, %s s$" % NUM,
        r"(?m)^faults: [1-9]\d* worker kills .*, [1-9]\d* redis restarts, .*$",
        r"(?m)^postbacks: \d+ delivered, .*$",
        r"(?m)^violations: 0$",
    ],
}


def sections(out):
    """The output of `run all` cut at its "== bench NAME ==" lines: {name: text}."""
    parts = re.split(r"(?m)^== bench (\S+) ==$", out)
    return dict(zip(parts[1::2], parts[2::2]))


def check(name, out, patterns):
    """The patterns `name`'s output misses, and its row-count checks."""
    missing = [p for p in patterns if not re.search(p, out)]
    if name == "limiter":
        rows = {n: len(re.findall(r"(?m)^%d +\d+ " % n, out)) for n in (1, 2, 4)}
        if any(v != 2 for v in rows.values()):
            missing.append("a row per worker count in both accuracy tables: %r" % rows)
        if re.search(r"(?m)^[124] +0 ", out):
            missing.append("events in every row (a row with 0 events: the benchmark broke)")
    return missing


def run_smoke(run, build, name):
    """(exit status, stdout) of `run NAME --smoke`."""
    r = subprocess.run([run, "--build", build, name, "--smoke"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=1200)
    sys.stdout.write("$ run %s --smoke (exit %d)\n%s" % (name, r.returncode, r.stdout))
    if r.returncode != 0:
        sys.stdout.write("stderr:\n%s" % r.stderr)
    return r.returncode, r.stdout


def main():
    """Runs `run all --smoke` (every benchmark, one sitting, as a full run would), or the named
    benchmarks, and checks each benchmark's section of the output."""
    run, build = sys.argv[1], sys.argv[2]
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    if only is None:
        status, out = run_smoke(run, build, "all")
    else:
        unknown = sorted(set(only) - set(CHECKS))
        if unknown:
            print("bench-smoke: no checks for %s" % ", ".join(unknown))
            return 1
        results = [(name,) + run_smoke(run, build, name) for name in only]
        status = max(st for _, st, _ in results)
        # each under its "== bench NAME ==" line, as `run all` prints it
        out = "".join("== bench %s ==\n%s" % (name, text) for name, _, text in results)
    checks = {name: p for name, p in CHECKS.items() if only is None or name in only}
    found = sections(out)
    failed = 0
    for name, patterns in checks.items():
        if name not in found:
            sys.stdout.write("MISSING: no section for %s in the output of run all\n" % name)
            failed += 1
            continue
        missing = check(name, found[name], patterns)
        for p in missing:
            sys.stdout.write("MISSING in the output of %s: %s\n" % (name, p))
        failed += bool(missing)
    extra = sorted(set(found) - set(CHECKS))
    if extra:
        sys.stdout.write("no checks for: %s (add them to CHECKS)\n" % ", ".join(extra))
        failed += len(extra)
    print("bench-smoke: %d benchmark(s), %d failed" % (len(checks), failed))
    return 1 if failed or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
