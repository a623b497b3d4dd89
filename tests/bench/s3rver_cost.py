#!/usr/bin/python3
"""s3rver_cost: what one PUT costs s3rver, the e2e benchmark's stand-in for S3, round after
round: its CPU a PUT (/proc/PID/stat, all threads) and the PUT's p50 as a client sees it.

    /usr/bin/python3 tests/bench/s3rver_cost.py [--dir DIR] [--puts 1000]
        [--clients 1,1,1,2,1,2,1,2] [--bytes 10000] [--processes 1]

One s3rver (deploy/s3rver; --processes N: tests/bench/s3rver-cluster.js) with its data in a
new directory under --dir (default: the system's temporary directory; try /dev/shm), then one
round of --puts unsigned PUTs of --bytes random bytes per entry of --clients, each round's PUTs
shared by that many clients on keep-alive connections of their own. It shows what the e2e
benchmark's README states: a cold s3rver takes several times the CPU of a warm one for its first
few thousand PUTs, and on a disk's file system its cost can jump for a round at a time.
"""

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import harness  # noqa: E402
from benchlib import machine_line  # noqa: E402
from e2e import proc_table, tree_cpu  # noqa: E402

BUCKET = "cost"


def client(port, keys, body, latencies):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for k in keys:
            t = time.monotonic()
            conn.request("PUT", "/%s/%s" % (BUCKET, k), body=body,
                         headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError("PUT %s: HTTP %d" % (k, resp.status))
            latencies.append(time.monotonic() - t)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=None, help="where s3rver's data directory goes")
    ap.add_argument("--puts", type=int, default=1000, help="PUTs a round")
    ap.add_argument("--clients", default="1,1,1,2,1,2,1,2", help="clients of each round")
    ap.add_argument("--bytes", type=int, default=10000, help="size of each object")
    ap.add_argument("--processes", type=int, default=1, help="s3rver processes")
    opts = ap.parse_args()
    print(machine_line())
    tmp = Path(tempfile.mkdtemp(prefix="pixq-s3rver-cost-", dir=opts.dir))
    s3 = harness.S3rverServer(tmp, (BUCKET,), processes=opts.processes).start()
    body = os.urandom(opts.bytes)
    print("s3rver (%d process%s), data in %s, %d PUTs of %d bytes a round" % (
        opts.processes, "es" if opts.processes > 1 else "", tmp, opts.puts, opts.bytes))
    print("%-6s %8s %8s %12s %8s" % ("round", "clients", "PUT/s", "cpu_ms/PUT", "p50_ms"))
    try:
        for rnd, n in enumerate(int(c) for c in opts.clients.split(",")):
            keys = ["r%d/%d.jpg" % (rnd, i) for i in range(opts.puts)]
            latencies = []
            threads = [threading.Thread(target=client, args=(s3.port, keys[j::n], body,
                                                             latencies)) for j in range(n)]
            cpu0, t0 = tree_cpu(proc_table(), s3.proc.pid), time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.monotonic() - t0
            cpu = tree_cpu(proc_table(), s3.proc.pid) - cpu0
            if len(latencies) != opts.puts:
                raise RuntimeError("round %d: %d of %d PUTs answered" % (
                    rnd, len(latencies), opts.puts))
            latencies.sort()
            print("%-6d %8d %8.0f %12.3f %8.2f" % (
                rnd, n, opts.puts / seconds, cpu * 1000 / opts.puts,
                latencies[len(latencies) // 2] * 1000))
    finally:
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
