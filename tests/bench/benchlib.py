"""What every benchmark prints first: the machine it ran on and how busy it was at the start."""

import os
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
