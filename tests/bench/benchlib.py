"""What every benchmark prints first: the machine it ran on and how busy it was at the start;
and where a benchmark keeps its files."""

import os
import tempfile
from pathlib import Path


def machine():
    """{"nproc", "cpu" (the first "model name" of /proc/cpuinfo), "load_at_start" (1, 5, 15 min)}."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    return {"nproc": os.cpu_count(), "cpu": model, "load_at_start": load}


def machine_line(m=None):
    """The first line of a benchmark's output: `machine: nproc=2 cpu=... load_at_start=...`."""
    m = m or machine()
    return "machine: nproc=%d cpu=%s load_at_start=%s" % (m["nproc"], m["cpu"], m["load_at_start"])


def memory_tmpdir(prefix):
    """A new temporary directory in /dev/shm where that is writable, else in the usual place:
    on this machine's ext4 (journal, discard) s3rver's PUTs took 2 to 4 times the CPU a
    thousand at a time, and a worker's two log lines a job about 10 us more (RESULTS.md)."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
