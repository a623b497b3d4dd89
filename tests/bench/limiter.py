#!/usr/bin/python3
"""The per-bucket limiter's benchmark: accuracy and cost (see tests/bench/README).

    /usr/bin/python3 tests/bench/limiter.py --worker build/worker/pixq-worker [--smoke]

Three parts, each with its own redis-server (and S3 stub) on free loopback ports in a temporary
directory, removed at the end:

1. loop: N simulated workers (threads, each its own Redis connection) call
   common/lua/rl_acquire.lua exactly as pixq-worker does (cost 1, the worker's horizon, min rate
   and idle TTL) and "upload" at the slot they are given: sleep until it, take the time. Target
   LOOP_RATE/s, burst 0, for N = 1, 2, 4. Measures the limiter alone.
2. worker: N real pixq-workers against the S3 stub (s3stub.py), the bucket limited with an
   operator override to WORKER_RATE/s, burst 0; jobs of SAVES outputs of a tiny PNG. Accuracy is
   measured where S3 sees it: the stub's arrival times. N = 1, 2, 4.
3. cost: EVALSHA rl_acquire.lua in a tight loop from one client, against a PING loop in the same
   client and the same run (the round-trip baseline), plus Redis's own server-side time per call
   (INFO commandstats, usec_per_call) for both, and for the adaptive path (w_max and last_fail
   set, so that the CUBIC curve is computed on every call).

Figures: achieved/target rate over the run ((n - 1) / (last - first)), the worst number of
events in any 1-s window (and in any 0.95-s window: what remains once a few ms of jitter between
a slot and the event are allowed for), and microseconds per call. --smoke runs everything with
tiny counts (for the bench-smoke test) and --json prints one JSON object instead of the tables.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402
import s3stub  # noqa: E402
from benchlib import machine, machine_line  # noqa: E402

RL_ACQUIRE = harness.lua_script("rl_acquire")  # with lib/limiter.lua, as the worker runs it
RL_FEEDBACK = harness.lua_script("rl_feedback")
# what pixq-worker passes by default (PIXQ_S3_HORIZON_MS, PIXQ_S3_MIN_RATE, PIXQ_RL_IDLE_TTL_S)
HORIZON_MS, MIN_RATE, IDLE_TTL_MS = 600000, 0.5, 86400 * 1000
LOCAL_WAIT_MS = 1000
WORKERS = (1, 2, 4)


def window_figures(times, target):
    times = sorted(times)
    achieved = s3stub.rate(times)
    return {"events": len(times), "seconds": round(times[-1] - times[0], 3) if times else 0,
            "target": target, "achieved": round(achieved, 3),
            "ratio": round(achieved / target, 4) if target else 0,
            "worst_1s": s3stub.window_max(times), "worst_950ms": s3stub.window_max(times, 0.95)}


class Stack:
    """A temporary directory with a redis-server (and on demand the rest) that cleans up."""

    def __init__(self, name):
        self.tmp = Path(tempfile.mkdtemp(prefix="pixq-bench-%s-" % name))
        self.redis_server = harness.RedisServer(self.tmp / "redis").start()
        self.stoppers = [self.redis_server.stop]

    def client(self):
        return harness.Redis(harness.LOOPBACK, self.redis_server.port).connect()

    def close(self):
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001 (cleaning up whatever happens)
                pass
        if os.environ.get("PIXQ_TEST_KEEP") == "1":
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 1. the limiter alone


def acquire_args(rate, burst):
    return [rate, burst, 1, HORIZON_MS, MIN_RATE, IDLE_TTL_MS]


def simulated_worker(port, sha, key, default_rate, until, times, lock):
    r = harness.Redis(harness.LOOPBACK, port).connect()
    try:
        while time.time() < until:
            status, wait_ms = r.execute("EVALSHA", sha, 1, key,
                                        *acquire_args(default_rate, 0))[:2]
            if status == 2:  # beyond the horizon: nothing reserved, ask again later
                time.sleep(wait_ms / 1000.0)
                continue
            if wait_ms > 0:  # slot reserved (near: the worker sleeps; far: parked, same slot)
                time.sleep(wait_ms / 1000.0)
            now = time.time()
            with lock:
                times.append(now)
    finally:
        r.close()


def bench_loop(rate, seconds):
    stack = Stack("loop")
    try:
        r = stack.client()
        sha = r.execute("SCRIPT", "LOAD", RL_ACQUIRE)
        out = []
        for n in WORKERS:
            key = "pixq:rl:{loop-%d}" % n
            r.execute("HSET", key, "rate", rate, "burst", 0)
            times, lock = [], threading.Lock()
            until = time.time() + seconds
            threads = [threading.Thread(target=simulated_worker,
                                        args=(stack.redis_server.port, sha, key, rate, until,
                                              times, lock)) for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            fig = window_figures(times, rate)
            fig["workers"] = n
            out.append(fig)
        r.close()
        return out
    finally:
        stack.close()


# ---------------------------------------------------------------------------------------------
# 2. real workers against the stub


def worker_env(stack, stub, queue, local_wait_ms):
    env = harness.clean_env()
    if local_wait_ms is not None:
        env["PIXQ_S3_LOCAL_WAIT_MS"] = str(local_wait_ms)
    env.update({"PIXQ_REDIS_URL": stack.redis_server.url(), "PIXQ_QUEUE": queue,
                "PIXQ_S3_ENDPOINT": stub.endpoint(), "AWS_REGION": "us-east-1",
                "PIXQ_ALLOW_PRIVATE_NETWORKS": "1", "PIXQ_LOG_LEVEL": "warn"})
    env.update(stub.credentials())
    return env


def bench_worker(worker_bin, rate, outputs_per_run, saves, local_wait_ms):
    png = (REPO_ROOT / "tests" / "data" / "images" / "quadrants-64x64.png").read_bytes()
    out = []
    for n in WORKERS:
        stack = Stack("worker%d" % n)
        try:
            stub = s3stub.S3Stub(buckets=["bench"], log_path=stack.tmp / "s3stub.log").start()
            stack.stoppers.append(stub.stop)
            src = harness.SourceServer()
            stack.stoppers.append(src.stop)
            pbs = harness.PostbackReceiver()
            stack.stoppers.append(pbs.stop)
            url = src.add("/tiny.png", png)
            r = stack.client()
            r.execute("HSET", "pixq:rl:{bench}", "rate", rate, "burst", 0)
            env = worker_env(stack, stub, "bench", local_wait_ms)
            progs = []
            for i in range(n):
                p = harness.Program("worker-%d" % (i + 1), [worker_bin], env,
                                    stack.tmp / ("worker-%d.log" % (i + 1)))
                progs.append(p)
                stack.stoppers.append(p.terminate)
            jobs = max(1, outputs_per_run // saves)
            payloads = []
            for j in range(jobs):
                fns = [{"name": "resize_to_fit", "params": {"width": 16 + i},
                        "save": {"image_identifier": "i%d" % i,
                                 "s3_destination": {"bucket": "bench",
                                                    "key": "w%d/j%d/%d.png" % (n, j, i)}}}
                       for i in range(saves)]
                payloads.append(json.dumps({"job_id": "bench-%d-%d" % (n, j), "src": url,
                                            "postback_url": pbs.url(), "functions": fns}))
            r.execute("LPUSH", "pixq:{bench}:jobs", *payloads)
            deadline = time.monotonic() + 60 + 3 * jobs * saves / rate
            while len(pbs.postbacks) < jobs:
                for p in progs:
                    p.check_alive()
                if time.monotonic() > deadline:
                    raise AssertionError("only %d of %d postbacks" % (len(pbs.postbacks), jobs))
                time.sleep(0.05)
            times = [rec.time for rec in stub.records(method="PUT", bucket="bench")]
            fig = window_figures(times, rate)
            fig.update({"workers": n, "jobs": jobs, "saves": saves,
                        "s3_failed_signatures": stub.counts()["failed"],
                        "parked": int(r.execute("HGET", "pixq:{bench}:stats", "throttled") or 0)})
            out.append(fig)
            r.close()
        finally:
            stack.close()
    return out


# ---------------------------------------------------------------------------------------------
# 3. the cost of one call


class RawClient:
    """The cheapest synchronous RESP round trip Python allows: one pre-encoded command, one
    reply line read (integer, status or a short array), no parsing beyond that."""

    def __init__(self, port):
        self.sock = socket.create_connection((harness.LOOPBACK, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def call(self, encoded, lines):
        self.sock.sendall(encoded)
        for _ in range(lines):
            self.file.readline()

    def close(self):
        self.file.close()
        self.sock.close()


def reply_lines(reply):
    """The RESP lines of an array reply of integers and one-line bulk strings, as parsed by
    harness.Redis: its header, one line an integer, two a string."""
    return 1 + sum(2 if isinstance(v, str) else 1 for v in reply)


def per_call_us(client, encoded, lines, count):
    """Median over 5 rounds of the mean round trip, in microseconds."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(count):
            client.call(encoded, lines)
        rounds.append((time.perf_counter() - t0) / count * 1e6)
    return statistics.median(rounds)


def server_usec_per_call(r, command):
    info = r.execute("INFO", "commandstats")
    for line in info.splitlines():
        if line.startswith("cmdstat_%s:" % command):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"])
    return None


def bench_cost(count):
    stack = Stack("cost")
    try:
        r = stack.client()
        sha = r.execute("SCRIPT", "LOAD", RL_ACQUIRE)
        fb_sha = r.execute("SCRIPT", "LOAD", RL_FEEDBACK)
        raw = RawClient(stack.redis_server.port)
        # a rate no loop can reach: every call conforms and writes the new tat (the usual path)
        acquire = harness.Redis._encode(["EVALSHA", sha, 1, "pixq:rl:{cost}"]
                                        + acquire_args(1e9, 0))
        adaptive = harness.Redis._encode(["EVALSHA", sha, 1, "pixq:rl:{cost-adaptive}"]
                                         + acquire_args(1e9, 0))
        r.execute("EVALSHA", fb_sha, 1, "pixq:rl:{cost-adaptive}", 1e9, 1000, MIN_RATE, 0,
                  IDLE_TTL_MS)
        ping = harness.Redis._encode(["PING"])
        # rl_acquire.lua's answer, read line by line: its length in lines, from one call
        lines = reply_lines(r.execute("EVALSHA", sha, 1, "pixq:rl:{cost}",
                                      *acquire_args(1e9, 0)))
        for enc, n in ((ping, 1), (acquire, lines), (adaptive, lines)):  # warm up
            per_call_us(raw, enc, n, max(1, count // 10))
        r.execute("CONFIG", "RESETSTAT")
        ping_us = per_call_us(raw, ping, 1, count)
        acquire_us = per_call_us(raw, acquire, lines, count)
        ping_server = server_usec_per_call(r, "ping")
        acquire_server = server_usec_per_call(r, "evalsha")
        r.execute("CONFIG", "RESETSTAT")
        adaptive_us = per_call_us(raw, adaptive, lines, count)
        adaptive_server = server_usec_per_call(r, "evalsha")
        raw.close()
        r.close()
        return {"calls": count * 5, "ping_rtt_us": round(ping_us, 2),
                "acquire_rtt_us": round(acquire_us, 2),
                "acquire_adaptive_rtt_us": round(adaptive_us, 2),
                "rtt_ratio": round(acquire_us / ping_us, 2),
                "ping_server_us": ping_server, "acquire_server_us": acquire_server,
                "acquire_adaptive_server_us": adaptive_server,
                "server_ratio": round(acquire_server / ping_server, 1) if ping_server else None}
    finally:
        stack.close()


# ---------------------------------------------------------------------------------------------
# report


def print_tables(res):
    m = res["machine"]
    print(machine_line(m))
    print()
    print("limiter accuracy, rl_acquire.lua called directly (target %s/s, burst 0)"
          % res["loop"][0]["target"])
    print("%-8s %8s %8s %10s %8s %9s %11s" % ("workers", "events", "seconds", "achieved/s",
                                              "ratio", "worst_1s", "worst_950ms"))
    for f in res["loop"]:
        print("%-8d %8d %8.2f %10.3f %8.4f %9d %11d" % (f["workers"], f["events"], f["seconds"],
                                                         f["achieved"], f["ratio"], f["worst_1s"],
                                                         f["worst_950ms"]))
    print()
    if res.get("worker"):
        print("limiter accuracy, real pixq-workers, measured at the S3 stub (target %s/s, "
              "burst 0, PIXQ_S3_LOCAL_WAIT_MS %s)" % (res["worker"][0]["target"],
                                                    res["local_wait_ms"]))
        print("%-8s %8s %8s %10s %8s %9s %11s %7s" % ("workers", "puts", "seconds", "achieved/s",
                                                      "ratio", "worst_1s", "worst_950ms",
                                                      "parked"))
        for f in res["worker"]:
            print("%-8d %8d %8.2f %10.3f %8.4f %9d %11d %7d"
                  % (f["workers"], f["events"], f["seconds"], f["achieved"], f["ratio"],
                     f["worst_1s"], f["worst_950ms"], f["parked"]))
        print()
    c = res["cost"]
    print("cost of one limiter call (%d calls each, one client, loopback)" % c["calls"])
    print("  round trip:  PING %.2f us   EVALSHA rl_acquire %.2f us (adaptive path %.2f us)"
          "   ratio %.2f" % (c["ping_rtt_us"], c["acquire_rtt_us"], c["acquire_adaptive_rtt_us"],
                             c["rtt_ratio"]))
    print("  in Redis:    PING %.2f us   EVALSHA rl_acquire %.2f us (adaptive path %.2f us)"
          "   ratio %s" % (c["ping_server_us"], c["acquire_server_us"],
                           c["acquire_adaptive_server_us"], c["server_ratio"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", help="pixq-worker binary (without it the worker part is skipped)")
    p.add_argument("--smoke", action="store_true", help="tiny counts: checks that it runs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--loop-rate", type=float, default=50.0)
    p.add_argument("--loop-seconds", type=float, default=10.0)
    p.add_argument("--worker-rate", type=float, default=10.0)
    p.add_argument("--worker-outputs", type=int, default=100, help="outputs per run")
    p.add_argument("--saves", type=int, default=4, help="outputs per job")
    p.add_argument("--calls", type=int, default=20000, help="calls per round (5 rounds)")
    p.add_argument("--local-wait-ms", type=int, help="PIXQ_S3_LOCAL_WAIT_MS of the workers "
                   "(default: theirs, 1000; 0 parks every output that cannot go at once)")
    a = p.parse_args()
    if a.smoke:
        a.loop_seconds, a.worker_outputs, a.calls, a.worker_rate = 1.0, 8, 200, 20.0
    res = {"machine": machine(), "command": " ".join(sys.argv)}
    res["loop"] = bench_loop(a.loop_rate, a.loop_seconds)
    if a.worker:
        res["local_wait_ms"] = "default" if a.local_wait_ms is None else a.local_wait_ms
        res["worker"] = bench_worker(a.worker, a.worker_rate, a.worker_outputs, a.saves,
                                     a.local_wait_ms)
    res["cost"] = bench_cost(a.calls)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print_tables(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
