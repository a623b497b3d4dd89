#!/usr/bin/python3
"""e2e: jobs end to end through Redis, s3rver and a postback receiver, with 1 and 2 worker
processes: a corpus JPEG (2560x1600) to a thumbnail 200 px wide, and the same to 800 px, one
save to s3rver, one postback.

    tests/bench/run [--build DIR] e2e [--jobs 500] [--rounds 3] [--warm-s3 2000]
        [--s3rver-processes 2] [--cpu-affinity 1] [--image autumn-2560x1600.jpg]
        [--sizes 200,800] [--processes | --separate] [--smoke] [--json]

Servers, all on loopback and started here: redis-server, s3rver (deploy/s3rver), and this
script's own source server and postback receiver (Python's ThreadingHTTPServer, keep-alive,
TCP_NODELAY, each response written in one piece, so that they add no Nagle/delayed-ACK stalls
of their own).

s3rver runs as --s3rver-processes processes sharing its port and data (s3rver-cluster.js; 1:
the one process the integration tests start). One s3rver is one event loop, and with two
workers their PUTs wait behind each other's steps in it while the workers hold both cores:
S3, many machines, serves each PUT on its own. s3rver is then warmed with --warm-s3 signed
PUTs (jobs of an 8x8 canvas saved by two workers): node compiles its code as it runs, and a
cold s3rver takes up to twice the CPU a PUT of a warm one over its first few thousand, which
would otherwise fall on the first phase measured.

Each size runs --rounds rounds; a round runs 1 worker, then 2, each in two phases of --jobs
jobs:
* throughput: every job pushed at once; jobs/s = jobs / (first push to last postback);
* latency: a closed loop that keeps one job in flight per worker (a new job is pushed when a
  postback arrives), so a job never waits behind others: p50 and p99 of the time from its LPUSH
  to its postback's arrival at the receiver. The worker count's jobs/s in this phase is printed
  too.
jobs/s and loop/s are the medians of the rounds, the scaling is the median of each round's
ratio (every round's is printed), latencies and processing times are pooled over the rounds.
"Processing" is the worker's job_done line's `process_ms` (decode, transform and encode of the
job: its time less the source's download, uploads and postback), its p50 over the latency
phase; the download, upload and postback figures are its `fetch_ms`, `upload_ms` (the PUT, the
rate limit's script, and the wait for begin.lua's answer, normally nothing) and `postback_ms`;
"in worker" is its `ms` (begin to settle: all those, and Redis). The workers log at --log-level
(default info, pixq's default); workers older than those fields need debug, and their
`processed`, `s3_put` and `postback_sent` lines are used. The targets (issue 7): latency p50 at
most 1.15 x processing; 2 workers at least 1.8 x 1 worker's jobs/s.

The CPU each process took in the throughput phase (/proc/PID/stat, threads and children
included) is printed a job: the workers, s3rver, this script (source server, receiver and
client) and redis-server, and how many of the machine's cores they kept busy together.

With --processes (the default when pixq-worker has it) one `pixq-worker --processes N` runs the
N workers under its supervisor; with --separate, N pixq-worker processes are started. The
workers run with PIXQ_CPU_AFFINITY=--cpu-affinity (default 1: each worker process on a core of
its own; 1 worker on the first; with --separate the benchmark pins them). The benchmark's
files (s3rver's data, the logs) go to /dev/shm where it is writable: on this machine's ext4 a
thousand of s3rver's PUTs at a time took 2 to 4 times the CPU.
"""

import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from benchlib import machine_line, memory_tmpdir  # noqa: E402

QUEUE = "e2e"
BUCKET = "pixq-bench"


# ---------------------------------------------------------------------------------------------
# servers: source and postback receiver, without Nagle stalls


class _Fast(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, ctype):
        head = ("HTTP/1.1 %d OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                % (status, ctype, len(body))).encode()
        self.wfile.write(head + body)  # one write


class _SourceHandler(_Fast):
    def do_GET(self):
        body = self.server.files.get(self.path.split("?", 1)[0])
        if body is None:
            self.answer(404, b"not found\n", "text/plain")
        else:
            self.answer(200, body, "image/jpeg")


class _PostbackHandler(_Fast):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        now = time.time()
        self.answer(200, b"{}", "application/json")
        try:
            doc = json.loads(body)
            job_id = (doc.get("results") or {}).get("job_id") or doc.get("job_id")
        except (ValueError, AttributeError):
            job_id = None
        self.server.on_postback(job_id, now)


class Server:
    def __init__(self, handler, **attrs):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        for k, v in attrs.items():
            setattr(self.httpd, k, v)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Postbacks:
    """Arrival times by job id, counts by job id prefix (ids are PREFIX-NUMBER), and a hook
    for the closed loop. The waiter is woken only once its count is reached: waking it, and it
    counting, at every postback took as much CPU as the benchmark's servers."""

    def __init__(self):
        self.cond = threading.Condition()
        self.arrived = {}
        self.counts = {}
        self.waiting = None  # (prefix, count) wait_count waits for
        self.hook = None

    def __call__(self, job_id, t):
        with self.cond:
            if job_id is not None and job_id not in self.arrived:
                prefix = job_id[:job_id.rfind("-")]
                self.counts[prefix] = self.counts.get(prefix, 0) + 1
                if self.waiting == (prefix, self.counts[prefix]):
                    self.cond.notify_all()
            self.arrived[job_id] = t
        hook = self.hook
        if hook is not None:
            hook(job_id)

    def wait_count(self, prefix, n, timeout):
        """Waits until `n` jobs PREFIX-NUMBER have posted back."""
        deadline = time.time() + timeout
        with self.cond:
            self.waiting = (prefix, n)
            try:
                while self.counts.get(prefix, 0) < n:
                    left = deadline - time.time()
                    if left <= 0:
                        raise RuntimeError("only %d of %d postbacks for %s in %.0f s" % (
                            self.counts.get(prefix, 0), n, prefix, timeout))
                    self.cond.wait(min(left, 1.0))
            finally:
                self.waiting = None


# ---------------------------------------------------------------------------------------------
# CPU taken by each process, from /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_table():
    """{pid: (parent pid, CPU seconds of all its threads)} of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def tree_cpu(table, root):
    """CPU seconds of `root` and of its descendants alive now (one that exits between two
    samples takes its seconds with it: the processes measured live through a phase)."""
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table[pid][1] if pid in table else 0.0
        todo += children.get(pid, [])
    return total


def machine_busy():
    """CPU seconds the whole machine has spent busy: /proc/stat's first line (user, nice,
    system, idle, iowait, irq, softirq, steal) less idle, iowait and steal (time a virtual
    machine's CPUs waited for the host)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / CLK_TCK


CPU_KINDS = ("pixq-worker", "s3rver", "benchmark", "redis-server")


# ---------------------------------------------------------------------------------------------
# the run


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class Bench:
    def __init__(self, opts, tmp):
        self.opts = opts
        self.tmp = tmp
        self.redis_server = harness.RedisServer(tmp / "redis").start()
        self.s3 = harness.S3rverServer(tmp / "s3rver", (BUCKET,),
                                       processes=opts.s3rver_processes).start()
        image = (harness.REPO_ROOT / "tests" / "data" / "corpus" / opts.image).read_bytes()
        self.src = Server(_SourceHandler, files={"/src.jpg": image})
        self.pb = Postbacks()
        self.receiver = Server(_PostbackHandler, on_postback=self.pb)
        self.r = harness.Redis("127.0.0.1", self.redis_server.port)
        self.pushed = {}
        self.size = opts.sizes[0]

    def stop(self):
        self.r.close()
        self.receiver.stop()
        self.src.stop()
        self.s3.stop()
        self.redis_server.stop()

    def env(self):
        env = harness.clean_env()
        env.update({
            "PIXQ_REDIS_URL": self.redis_server.url(), "PIXQ_QUEUE": QUEUE,
            "PIXQ_S3_ENDPOINT": self.s3.endpoint(), "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_REGION": "us-east-1",
            "PIXQ_DEFAULT_BUCKET": BUCKET, "PIXQ_ALLOW_PRIVATE_NETWORKS": "1",
            "PIXQ_LOG_LEVEL": self.opts.log_level,
            "PIXQ_S3_RATE": "10000/s,burst=1000",  # measure the path, not a rate limit
            "PIXQ_CPU_AFFINITY": str(self.opts.cpu_affinity),
        })
        return env

    def start_workers(self, n, name):
        progs = []
        if self.opts.separate or n == 1:
            # separate processes would each pin themselves to the first CPU: pinned from here
            pin = self.opts.separate and self.opts.cpu_affinity
            env = dict(self.env(), PIXQ_CPU_AFFINITY="0") if pin else self.env()
            allowed = sorted(os.sched_getaffinity(0))
            for i in range(n):
                progs.append(harness.Program("%s-%d" % (name, i), [self.opts.worker], env,
                                             self.tmp / ("%s-%d.log" % (name, i))))
                if pin:
                    os.sched_setaffinity(progs[-1].pid, {allowed[i % len(allowed)]})
        else:
            progs.append(harness.Program(name, [self.opts.worker, "--processes", str(n)],
                                         self.env(), self.tmp / ("%s.log" % name)))
        harness.wait_until(lambda: sum(len(p.log_events("worker_start")) for p in progs) >= n,
                           30, "%d workers to start" % n,
                           check=lambda: [p.check_alive() for p in progs])
        return progs

    def cpu(self, progs):
        """CPU seconds so far of each kind of process (CPU_KINDS)."""
        table = proc_table()
        me = table.get(os.getpid(), (0, 0.0))[1]  # this script alone, not its children
        return {"pixq-worker": sum(tree_cpu(table, p.pid) for p in progs),
                "s3rver": tree_cpu(table, self.s3.proc.pid), "benchmark": me,
                "redis-server": tree_cpu(table, self.redis_server.proc.pid),
                "machine": machine_busy()}

    def job(self, job_id):
        return json.dumps({
            "job_id": job_id, "src": self.src.url("/src.jpg"),
            "postback_url": self.receiver.url("/pb"),
            "functions": [{"name": "resize_to_fit", "params": {"width": self.size},
                           "save": {"image_identifier": "thumb",
                                    "s3_destination": {"bucket": BUCKET,
                                                       "key": "e2e/%s.jpg" % job_id}}}]})

    def push_all(self, payloads):
        for i in range(0, len(payloads), 100):
            self.r.lpush("pixq:{%s}:jobs" % QUEUE, *payloads[i:i + 100])

    def warm_s3(self, count):
        """`count` jobs of an 8x8 canvas saved to s3rver by 2 workers: signed PUTs through the
        code s3rver runs for the jobs measured, until node has compiled it."""
        if count <= 0:
            return
        progs = self.start_workers(2, "warm-s3")
        try:
            self.push_all([json.dumps({
                "job_id": "warm-s3-%d" % i, "src": {"name": "canvas", "width": 8, "height": 8},
                "postback_url": self.receiver.url("/pb"),
                "functions": [{"name": "no_op", "save": {
                    "image_identifier": "w",
                    "s3_destination": {"bucket": BUCKET, "key": "warm/%d.jpg" % i}}}]})
                for i in range(count)])
            self.pb.wait_count("warm-s3", count, 600)
        finally:
            for p in progs:
                p.terminate()

    def throughput(self, prefix, n):
        """Every job pushed at once: (jobs/s, seconds from the first push to the last postback)."""
        payloads = [self.job("%s-%d" % (prefix, i)) for i in range(n)]
        t0 = time.time()
        self.push_all(payloads)
        self.pb.wait_count(prefix, n, 600)
        last = max(t for j, t in self.pb.arrived.items() if j and j.startswith(prefix))
        return n / (last - t0), last - t0

    def latency(self, prefix, n, in_flight):
        sent = [0]
        lock = threading.Lock()
        # pushes from the receiver's thread need their own connection
        r2 = harness.Redis("127.0.0.1", self.redis_server.port)

        def next_job(job_id):
            if not job_id or not job_id.startswith(prefix):
                return
            with lock:
                if sent[0] >= n:
                    return
                k = sent[0]
                sent[0] += 1
                jid = "%s-%d" % (prefix, k)
                self.pushed[jid] = time.time()
                r2.lpush("pixq:{%s}:jobs" % QUEUE, self.job(jid))

        self.pb.hook = next_job
        t0 = time.time()
        with lock:
            for _ in range(min(in_flight, n)):
                k = sent[0]
                sent[0] += 1
                jid = "%s-%d" % (prefix, k)
                self.pushed[jid] = time.time()
                r2.lpush("pixq:{%s}:jobs" % QUEUE, self.job(jid))
        self.pb.wait_count(prefix, n, 600)
        self.pb.hook = None
        r2.close()
        arrived = {j: t for j, t in self.pb.arrived.items() if j and j.startswith(prefix)}
        lat = [(arrived[j] - self.pushed[j]) * 1000 for j in arrived]
        return n / (max(arrived.values()) - t0), lat

    def run_count(self, n, rnd):
        """Round `rnd`'s two phases with n workers: its figures, and the samples to pool."""
        tag = "s%d-r%d-" % (self.size, rnd)  # job ids are unique across sizes and rounds
        progs = self.start_workers(n, "%sw%d" % (tag, n))
        try:
            self.throughput(tag + "warm%d" % n, max(2 * n, min(20, self.opts.jobs)))
            before = self.cpu(progs)
            tput, seconds = self.throughput(tag + "tp%d" % n, self.opts.jobs)
            after = self.cpu(progs)
            lat_rate, lat = self.latency(tag + "lat%d" % n, self.opts.jobs, n)
        finally:
            for p in progs:
                p.terminate()
        events = [e for p in progs for e in p.log_events()]
        lat_ids = {e.get("job_id") for e in events if e.get("event") == "job_done"
                   and e.get("job_id", "").startswith(tag + "lat%d-" % n)}

        def values(event, field, scale=1.0):
            return [float(e[field]) * scale for e in events if e.get("event") == event
                    and field in e and e.get("job_id") in lat_ids]

        failed = [e for e in events if e.get("event") == "job_failed"]
        if failed:
            raise RuntimeError("%d jobs failed, first: %r" % (len(failed), failed[0]))
        if values("job_done", "process_ms"):  # job_done says where the time went
            samples = {"processing_ms": values("job_done", "process_ms"),
                       "fetch_ms": values("job_done", "fetch_ms"),
                       "put_ms": values("job_done", "upload_ms"),
                       "postback_ms": values("job_done", "postback_ms")}
        else:  # older workers: their debug lines (--log-level debug)
            samples = {"processing_ms": [
                (int(e["us"]) - int(e["fetch_us"])) / 1000 if "fetch_us" in e else int(e["ms"])
                for e in events if e.get("event") == "processed" and e.get("job_id") in lat_ids],
                "fetch_ms": values("processed", "fetch_us", 0.001),
                "put_ms": values("s3_put", "ms"),
                "postback_ms": values("postback_sent", "ms")}
        if not samples["processing_ms"]:
            raise RuntimeError("the workers logged no processing times: a worker older than "
                               "job_done's process_ms needs --log-level debug")
        cpu = {k: (after[k] - before[k]) * 1000 / self.opts.jobs for k in CPU_KINDS}
        return {"throughput_jobs_per_s": tput, "closed_loop_jobs_per_s": lat_rate,
                "cpu_ms_per_job": cpu,
                "cores_busy": sum(after[k] - before[k] for k in CPU_KINDS) / seconds,
                "machine_cores_busy": (after["machine"] - before["machine"]) / seconds,
                "samples": dict(samples, latency_ms=lat,
                                in_worker_ms=values("job_done", "ms"))}

    def run_size(self, size):
        """--rounds rounds of 1 worker then 2 at `size`: a row per worker count."""
        self.size = size
        rounds = {1: [], 2: []}
        for rnd in range(self.opts.rounds):
            for n in (1, 2):
                rounds[n].append(self.run_count(n, rnd))
        return [summarize(size, n, rounds[n], self.opts.jobs) for n in (1, 2)]


def summarize(size, n, rounds, jobs):
    """One worker count's row: medians of the rounds' rates, pooled samples' percentiles."""
    pooled = {k: [v for r in rounds for v in r["samples"][k]] for k in rounds[0]["samples"]}
    return {"size": size, "workers": n, "jobs": jobs, "rounds": len(rounds),
            "throughput_jobs_per_s": statistics.median_high(
                [r["throughput_jobs_per_s"] for r in rounds]),
            "throughput_by_round": [r["throughput_jobs_per_s"] for r in rounds],
            "closed_loop_jobs_per_s": statistics.median_high(
                [r["closed_loop_jobs_per_s"] for r in rounds]),
            "p50_ms": pct(pooled["latency_ms"], 50), "p99_ms": pct(pooled["latency_ms"], 99),
            "processing_p50_ms": pct(pooled["processing_ms"], 50),
            "processing_mean_ms": sum(pooled["processing_ms"]) / max(
                1, len(pooled["processing_ms"])),
            "in_worker_p50_ms": pct(pooled["in_worker_ms"], 50),
            "fetch_p50_ms": pct(pooled["fetch_ms"], 50),
            "put_p50_ms": pct(pooled["put_ms"], 50),
            "postback_p50_ms": pct(pooled["postback_ms"], 50),
            "cpu_ms_per_job": {k: statistics.median_high([r["cpu_ms_per_job"][k]
                                                          for r in rounds])
                               for k in CPU_KINDS},
            "cpu_total_ms_per_job": statistics.median_high(
                [sum(r["cpu_ms_per_job"].values()) for r in rounds]),
            "cores_busy": statistics.median_high([r["cores_busy"] for r in rounds]),
            "machine_cores_busy": statistics.median_high([r["machine_cores_busy"]
                                                          for r in rounds])}


def report(rows, opts):
    for size in opts.sizes:
        report_size([r for r in rows if r["size"] == size], size, opts)
    if opts.json:
        print(json.dumps(rows))


def report_size(rows, size, opts):
    print()
    print("end to end: %d jobs per phase, %d round%s, %s to a thumbnail %d px wide, one save "
          "(s3rver, %d process%s), one postback; workers as %s, PIXQ_CPU_AFFINITY=%d" % (
              opts.jobs, opts.rounds, "s" if opts.rounds > 1 else "", opts.image, size,
              opts.s3rver_processes, "es" if opts.s3rver_processes > 1 else "",
              "separate processes" if opts.separate else "pixq-worker --processes N",
              opts.cpu_affinity))
    print("%-8s %10s %10s %8s %8s %10s %10s %10s" % (
        "workers", "jobs/s", "loop/s", "p50_ms", "p99_ms", "proc_p50", "in_worker", "p50/proc"))
    for row in rows:
        print("%-8d %10.2f %10.2f %8.1f %8.1f %10.1f %10.1f %10.2f" % (
            row["workers"], row["throughput_jobs_per_s"], row["closed_loop_jobs_per_s"],
            row["p50_ms"], row["p99_ms"], row["processing_p50_ms"], row["in_worker_p50_ms"],
            row["p50_ms"] / max(row["processing_p50_ms"], 0.001)))
    for row in rows:
        print("  %d worker%s, in the worker beside processing (p50): source download %.1f ms, "
              "upload to s3rver %.1f ms, postback %.1f ms" % (
                  row["workers"], "s" if row["workers"] > 1 else "", row["fetch_p50_ms"],
                  row["put_p50_ms"], row["postback_p50_ms"]))
    for row in rows:
        cpu = row["cpu_ms_per_job"]
        print("  %d worker%s, CPU a job in the throughput phase: %s, total %.2f ms; cores busy: "
              "%.2f by them, %.2f in all" % (
                  row["workers"], "s" if row["workers"] > 1 else "",
                  ", ".join("%s %.2f ms" % (k, cpu[k]) for k in CPU_KINDS),
                  row["cpu_total_ms_per_job"], row["cores_busy"], row["machine_cores_busy"]))
    if len(rows) == 2:
        by_round = [b / a for a, b in zip(rows[0]["throughput_by_round"],
                                          rows[1]["throughput_by_round"])]
        print("scaling by round: %s" % " ".join("%.2f" % v for v in by_round))
        print("scaling 2 workers / 1 worker: %.2f (throughput phase, median of rounds)"
              % statistics.median_high(by_round))


def has_processes(worker):
    out = subprocess.run([worker, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=30).stdout
    return "--processes" in out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", required=True)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of 1 worker, then 2")
    ap.add_argument("--warm-s3", type=int, default=2000, help="canvas jobs saved first")
    ap.add_argument("--cpu-affinity", type=int, choices=(0, 1), default=1,
                    help="PIXQ_CPU_AFFINITY of the workers")
    ap.add_argument("--s3rver-processes", type=int, default=2,
                    help="s3rver processes sharing the port (1: plain s3rver)")
    ap.add_argument("--image", default="autumn-2560x1600.jpg")
    ap.add_argument("--sizes", default="200,800", help="thumbnail widths, one run each")
    ap.add_argument("--separate", action="store_true", help="N pixq-worker processes")
    ap.add_argument("--processes", action="store_true", help="pixq-worker --processes N")
    ap.add_argument("--log-level", default="info",
                    help="PIXQ_LOG_LEVEL of the workers (debug for workers older than "
                         "job_done's times)")
    ap.add_argument("--smoke", action="store_true", help="tiny counts")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    opts.sizes = [int(s) for s in opts.sizes.split(",")]
    if opts.smoke:
        opts.jobs = 6
        opts.rounds = 1
        opts.warm_s3 = 4
    if not opts.processes and not has_processes(opts.worker):
        opts.separate = True
    print(machine_line())
    tmp = memory_tmpdir("pixq-bench-e2e-")
    bench = None
    try:
        bench = Bench(opts, tmp)
        bench.warm_s3(opts.warm_s3)
        rows = []
        for size in opts.sizes:
            rows += bench.run_size(size)
    finally:
        if bench is not None:
            bench.stop()
        if os.environ.get("PIXQ_TEST_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    report(rows, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
