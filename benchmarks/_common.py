"""Shared by the benchmark scripts: machine description, JSON results, peak-memory sampling."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
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


def mask_overhead(model, data, masks_from, batch_size=128, repeats=3, strategy=None):
    """Median ratio of a fine-tuning epoch with masks held to the same epoch without.

    Alternates the two ``repeats`` times in this process, after one warm-up fit each (tracing).
    """
    import contextlib

    import numpy as np

    from sparsecomp.masks import MaskSet, kernel_of
    from sparsecomp.pruning import clone_model
    x, y = data
    with_m, without = [], []
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        plain = clone_model(model)
        plain.compile_from_config(model.get_compile_config())
        masked = clone_model(model)
        ms = MaskSet(masked)
        for layer in masks_from.layers:
            if layer.name in ms.masks:
                ms.set(layer.name, np.asarray(kernel_of(layer).numpy()) != 0)
        masked.compile_from_config(model.get_compile_config())
    for m in (plain, masked):   # warm-up: trace the train step once
        m.fit(x[:batch_size * 4], y[:batch_size * 4], batch_size=batch_size, epochs=1, verbose=0)
    for _ in range(repeats):
        for m, bucket in ((plain, without), (masked, with_m)):
            t = time.perf_counter()
            m.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
            bucket.append(time.perf_counter() - t)
    return statistics.median(w / p for w, p in zip(with_m, without)), with_m, without
