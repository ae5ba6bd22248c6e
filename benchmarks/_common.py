"""Shared by the benchmark scripts: machine description, JSON results, peak-memory sampling."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    import numpy
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "numpy": numpy.__version__, "platform": platform.platform()}
    for mod in ("tensorflow", "keras", "h5py", "scipy"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", "?")
    return info


def write_result(name: str, figures: dict) -> Path:
    """Append one run (command, date, machine, figures) to benchmarks/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append({"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                 "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "machine": machine(), **figures})
    path.write_text(json.dumps(runs, indent=2) + "\n")
    return path


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory every few ms while the block runs.

    ``peak_above`` is the highest RSS seen minus the RSS when the block started.
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    def __enter__(self):
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.peak_above = self.peak - self.start
