#!/usr/bin/python3
"""queue: what the queue costs a job. No-op jobs (an 8x8 canvas source, Blitline's no_op
function, no save, no postback) through one and two pixq-worker processes, against the round-trip ceiling that
redis-benchmark measures on the same machine in the same run.

    tests/bench/run [--build DIR] queue [--jobs 20000] [--smoke] [--json]

No postback: a postback is an HTTP request to a receiver, the receiver's cost and not the
queue's (the e2e benchmark measures jobs with postbacks); no save for the same reason (S3). What
is left is the queue: reserve, settle, the per-job bookkeeping in Redis, and the worker's fixed
per-job work (JSON parsing, a MagickWand canvas, two log lines).

Figures:
* jobs/s: jobs / (the time from the first LPUSH until pixq:{Q}:stats succeeded reaches the count),
  with the workers idle and connected before the first push; per worker = jobs/s / workers.
* round trips per job: from each worker's worker_stop line (redis_round_trips / jobs), i.e.
  how often the worker waited for Redis per job: a pipeline counts once, and so do begin.lua
  (sent before the job runs) and finish.lua (written behind it before its answer is read, since
  6b4fc49); begin.lua alone counts when its answer had not come by the time it was read.
* ceiling: redis-benchmark with as many clients as workers, pipeline 1 (a worker waits for each
  reply), on two command mixes: PING (the bare round trip) and EVALSHA of the worker's own
  begin.lua (a script call). ceiling jobs/s = requests/s / round trips per job; the ratio is
  jobs/s / ceiling. (A job's one round trip carries two script calls: the EVALSHA ceiling
  counts one.)
* rounds: each round measures both ceilings and then runs the jobs, the workers idle in BLMOVE
  meanwhile, so that a ratio compares figures taken seconds apart (this shared machine's speed
  drifts by several per cent over a minute). Each figure in the table is the median over the
  rounds, a ratio the median of the rounds' own ratios; `r_ping by round` lists them all.
* where a job's time goes (one worker): its time (1 / jobs/s) is the round trips (at the PING
  ceiling's speed), Redis's own work on the worker's commands (INFO commandstats: the usec of
  its script calls and BLMOVEs, over the jobs; a PING takes Redis well under a tenth of a
  microsecond), and the rest: the worker's own work (JSON, the canvas, two log
  lines) and its share of the kernel's, less what of it passes while begin.lua is on its way
  (the worker sends it before the job runs, and finish.lua behind it after). `r_ping
  bound` is the ratio a worker that did no work at all would reach: round trips / (round trips +
  Redis's work).
* Redis's work a job by command (one worker, INFO commandstats summed over the rounds): the
  script calls' time, the part of it spent in the commands the scripts call (each with its
  calls a job and time a call), and the rest: the scripts' own, Lua and the way of each
  redis.call into Redis and back.
* Redis's memory a job (INFO memory's used_memory, after the rounds): pushed while no worker
  runs, then run by one worker: what a job holds queued (its payload), and settled (its result
  and its hash, kept PIXQ_RESULT_TTL_S). Why a full Redis takes no fresh job (README, Never
  losing a job): a settled job holds more than a queued one.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from benchlib import machine_line, memory_tmpdir  # noqa: E402

QUEUE = "bench"


def key(name):
    return "pixq:{%s}:%s" % (QUEUE, name)


def worker_env(redis_port, extra=None):
    env = harness.clean_env()
    env.update({
        "PIXQ_REDIS_URL": "redis://127.0.0.1:%d" % redis_port,
        "PIXQ_QUEUE": QUEUE,
        "PIXQ_S3_ENDPOINT": "http://127.0.0.1:9",  # never used: no job saves
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1",
        "PIXQ_DEFAULT_BUCKET": "none",
        "PIXQ_LOG_LEVEL": "info",
    })
    env.update(extra or {})
    return env


def start_workers(worker, n, redis_port, tmp, tag):
    progs = []
    for i in range(n):
        progs.append(harness.Program("%s-%d" % (tag, i), [worker], worker_env(redis_port),
                                     tmp / ("%s-%d.log" % (tag, i))))
    harness.wait_until(lambda: all(p.log_events("worker_start") for p in progs), 20,
                       "workers to start", check=lambda: [p.check_alive() for p in progs])
    return progs


def stop_workers(progs):
    """SIGTERM each; returns (jobs, round trips) summed from their worker_stop lines."""
    jobs = trips = 0
    for p in progs:
        p.terminate()
        stop = p.log_events("worker_stop")
        if stop:
            jobs += int(stop[-1].get("jobs", 0))
            trips += int(stop[-1].get("redis_round_trips", 0))
    return jobs, trips


def run_batch(r, n_jobs, prefix):
    job = {"src": {"name": "canvas", "width": 8, "height": 8}, "functions": [{"name": "no_op"}]}
    payloads = []
    for i in range(n_jobs):
        job["job_id"] = "%s-%d" % (prefix, i)
        payloads.append(json.dumps(job))
    r.delete(key("stats"))
    r.execute("CONFIG", "RESETSTAT")
    t0 = time.monotonic()
    for i in range(0, n_jobs, 1000):
        r.lpush(key("jobs"), *payloads[i:i + 1000])
    while True:
        ok, failed = r.execute("HMGET", key("stats"), "succeeded", "failed")
        if failed:
            raise RuntimeError("%s no-op jobs failed: see the worker logs" % failed)
        done = int(ok or 0)
        if done >= n_jobs:
            secs = time.monotonic() - t0
            stats = command_stats(r)
            return secs, redis_usec(stats) / n_jobs, stats
        if time.monotonic() - t0 > 300:
            raise RuntimeError("only %d of %d jobs done in 300 s" % (done, n_jobs))
        time.sleep(0.002)


# What a worker sends Redis itself during a no-op run: its scripts (begin.lua, finish.lua, which
# reserves the next job; the heartbeat) and, when the queue runs dry, BLMOVE. The commands a
# script calls are counted twice in INFO commandstats (in the script's time and on their own
# lines): only these are summed.
WORKER_COMMANDS = ("evalsha", "eval", "blmove")
# What this benchmark sends itself: the pushes, its polls of the counters, the statistics.
BENCH_COMMANDS = ("lpush", "hmget", "del", "config|resetstat", "info")


def command_stats(r):
    """{command: (calls, usec)} of INFO commandstats since CONFIG RESETSTAT."""
    out = {}
    for line in r.execute("INFO", "commandstats").splitlines():
        name, _, fields = line.partition(":")
        if name.startswith("cmdstat_"):
            f = dict(x.split("=", 1) for x in fields.split(","))
            out[name[8:]] = (int(f["calls"]), float(f["usec"]))
    return out


def redis_usec(stats):
    """Redis's own microseconds on the workers' commands."""
    return sum(usec for name, (_, usec) in stats.items() if name in WORKER_COMMANDS)


def script_breakdown(stats, jobs):
    """Redis's work a job by command, from commandstats summed over rounds: the worker's script
    calls, and the commands the scripts called (their time is inside the scripts' own)."""
    evalsha = [stats.get(c, (0, 0.0)) for c in ("evalsha", "eval")]
    scripts_us = sum(u for _, u in evalsha) / jobs
    inner = sorted(((name, calls / jobs, usec / jobs) for name, (calls, usec) in stats.items()
                    if name not in WORKER_COMMANDS and name not in BENCH_COMMANDS
                    and calls / jobs >= 0.5), key=lambda x: -x[2])
    inner_us = sum(x[2] for x in inner)
    return {"script_calls": sum(c for c, _ in evalsha) / jobs, "scripts_us": scripts_us,
            "inner": inner, "inner_us": inner_us, "glue_us": scripts_us - inner_us}


def redis_benchmark(port, clients, requests, command):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c",
                          str(clients), "-n", str(requests), "-P", "1", "-q", "--csv"] + command,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    rows = [l for l in out.stdout.splitlines() if l and not l.startswith('"test"')]
    if out.returncode != 0 or not rows:
        raise RuntimeError("redis-benchmark failed: %s %s" % (out.stdout, out.stderr))
    return float(rows[-1].split(",")[1].strip('"'))


def begin_sha(r):
    return r.execute("SCRIPT", "LOAD", harness.lua_script("begin"))  # as the worker runs it


def ceilings(port, r, clients, requests):
    """redis-benchmark's requests/s for PING and for EVALSHA begin.lua (on a job hash and stats
    of its own, deleted after: the workers' keys stay as they are)."""
    sha = begin_sha(r)
    keys = [key("bjob"), key("bstats")]
    mixes = (["PING"], ["EVALSHA", sha, "2"] + keys + ["600"])
    out = [redis_benchmark(port, clients, requests, command) for command in mixes]
    r.delete(*keys)
    return out


def used_memory(r):
    info = r.execute("INFO", "memory")
    return int(next(line for line in info.splitlines()
                    if line.startswith("used_memory:")).split(":")[1])


def memory_per_job(worker, port, tmp, r, n_jobs):
    """(bytes of used_memory a job queued, a job settled): pushed while no worker runs, then
    run by one."""
    job = {"src": {"name": "canvas", "width": 8, "height": 8}, "functions": [{"name": "no_op"}]}
    payloads = [json.dumps(dict(job, job_id="mem-%d" % i)) for i in range(n_jobs)]
    r.delete(key("stats"))
    base = used_memory(r)
    for i in range(0, n_jobs, 1000):
        r.lpush(key("jobs"), *payloads[i:i + 1000])
    queued = used_memory(r)
    progs = start_workers(worker, 1, port, tmp, "mem")
    try:
        harness.wait_until(lambda: int(r.execute("HGET", key("stats"), "succeeded") or 0)
                           >= n_jobs, 300, "the jobs to settle")
        settled = used_memory(r)
    finally:
        stop_workers(progs)
    return (queued - base) / n_jobs, (settled - base) / n_jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", required=True)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per worker count; the median")
    ap.add_argument("--smoke", action="store_true", help="tiny counts")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    if opts.smoke:
        opts.jobs, opts.rounds = 200, 1
    print(machine_line())
    tmp = memory_tmpdir("pixq-bench-queue-")
    server = harness.RedisServer(tmp / "redis").start()
    rows = []
    try:
        r = harness.Redis("127.0.0.1", server.port)
        for n in (1, 2):
            progs = start_workers(opts.worker, n, server.port, tmp, "w%d" % n)
            rounds = []  # (seconds, Redis us a job, PING req/s, EVALSHA req/s)
            stats = {}  # commandstats summed over the rounds
            try:
                run_batch(r, min(opts.jobs, 1000), "warm%d" % n)  # scripts loaded, caches warm
                for k in range(opts.rounds):
                    ping, evalsha = ceilings(server.port, r, n, max(opts.jobs * 2, 2000))
                    secs, redis_us, got = run_batch(r, opts.jobs, "run%d-%d" % (n, k))
                    rounds.append((secs, redis_us, ping, evalsha))
                    for name, (calls, usec) in got.items():
                        c0, u0 = stats.get(name, (0, 0.0))
                        stats[name] = (c0 + calls, u0 + usec)
            finally:
                jobs, trips = stop_workers(progs)
            rt = trips / jobs if jobs else float("nan")
            secs = statistics.median_high([x[0] for x in rounds])
            ping = statistics.median_high([x[2] for x in rounds])
            evalsha = statistics.median_high([x[3] for x in rounds])
            rows.append({"workers": n, "jobs": opts.jobs, "seconds": secs,
                         "jobs_per_s": opts.jobs / secs, "per_worker": opts.jobs / secs / n,
                         "round_trips_per_job": rt, "ping_rps": ping, "evalsha_rps": evalsha,
                         "redis_us_per_job": statistics.median_high([x[1] for x in rounds]),
                         "ceiling_ping": ping / rt, "ceiling_evalsha": evalsha / rt,
                         "r_ping_rounds": [opts.jobs / x[0] / (x[2] / rt) for x in rounds],
                         "r_eval_rounds": [opts.jobs / x[0] / (x[3] / rt) for x in rounds],
                         "redis_by_command": script_breakdown(stats, opts.jobs * len(rounds))})
        queued_b, settled_b = memory_per_job(opts.worker, server.port, tmp, r, opts.jobs)
        r.close()
    finally:
        server.stop()
        if os.environ.get("PIXQ_TEST_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("queue overhead: no-op jobs (8x8 canvas, no_op function, no save, no postback), median of %d rounds "
          "(ceilings, then %d jobs)" % (opts.rounds, opts.jobs))
    print("%-8s %8s %10s %7s %10s %12s %7s %7s" % (
        "workers", "jobs/s", "per_worker", "rt/job", "ceil_ping", "ceil_evalsha", "r_ping",
        "r_eval"))
    for row in rows:
        print("%-8d %8.0f %10.0f %7.2f %10.0f %12.0f %7.2f %7.2f" % (
            row["workers"], row["jobs_per_s"], row["per_worker"], row["round_trips_per_job"],
            row["ceiling_ping"], row["ceiling_evalsha"], statistics.median_high(row["r_ping_rounds"]),
            statistics.median_high(row["r_eval_rounds"])))
    print()
    for row in rows:
        print("r_ping by round, %d worker%s: %s" % (row["workers"], "s" if row["workers"] > 1 else "",
                                                    " ".join("%.2f" % x for x in row["r_ping_rounds"])))
    for row in rows:
        print("redis-benchmark -c %d -P 1: PING %.0f req/s, EVALSHA begin.lua %.0f req/s"
              % (row["workers"], row["ping_rps"], row["evalsha_rps"]))
    one = rows[0]
    job_us = 1e6 / one["jobs_per_s"]
    trips_us = one["round_trips_per_job"] * 1e6 / one["ping_rps"]
    print("1 worker, a job's %.1f us: %.2f round trips %.1f us (PING's speed), Redis's own work %.1f "
          "us, the rest %.1f us; r_ping bound %.2f" % (
              job_us, one["round_trips_per_job"], trips_us, one["redis_us_per_job"],
              job_us - trips_us - one["redis_us_per_job"],
              trips_us / (trips_us + one["redis_us_per_job"])))
    b = one["redis_by_command"]
    print("1 worker, Redis's work a job (INFO commandstats, all rounds): %.2f script calls %.1f us; "
          "inside them the commands %.1f us (%s), the rest %.1f us the scripts' own (Lua, and "
          "each redis.call's way in and out)" % (
              b["script_calls"], b["scripts_us"], b["inner_us"],
              ", ".join("%s %.2f x %.2f us" % (name, calls, usec / calls)
                        for name, calls, usec in b["inner"]), b["glue_us"]))
    if len(rows) == 2:
        print("scaling 2 workers / 1 worker: %.2f" % (rows[1]["jobs_per_s"]
                                                     / rows[0]["jobs_per_s"]))
    print("Redis memory a job (used_memory, %d jobs): %.0f B queued, %.0f B settled (result and "
          "job hash, kept PIXQ_RESULT_TTL_S)" % (opts.jobs, queued_b, settled_b))
    if opts.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
