"""What the benchmark modules share: dense baselines (trained once, kept in build/), MNIST for a
model, peak memory of a block, ratios of alternated timings."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

from benchmarks.runner import ROOT

BUILD = ROOT / "build" / "baselines"

__all__ = ["baseline", "mnist", "PeakRSS", "rss_bytes", "alternate", "summary_stats", "latest_ok"]


def baseline(name: str, epochs: int, seed: int = 0, log=print):
    """The dense reference model ``models.zoo.<name>`` trained by ``models/train.py`` (deterministic,
    last 5,000 training images held out, test set not read): cached in build/baselines."""
    import keras
    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / f"{name}-e{epochs}-s{seed}.keras"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return keras.saving.load_model(path), json.loads(info_path.read_text()) | {"cached": True}
    from models.train import train
    log(f"training the dense {name} ({epochs} epochs, seed {seed})")
    model, info = train(name, epochs=epochs, seed=seed, verbose=0, test=False)
    model.save(path)
    info_path.write_text(json.dumps(info, indent=1))
    return model, info | {"cached": False, "file": str(path)}


def mnist(model):
    """MNIST for ``model``: ``((x, y), loader of the test split)`` — the test split only through
    the runner's gate (``ctx.test_split(loader)``)."""
    from sparsecomp.data import mnist_for
    (x, y), (xt, yt) = mnist_for(model)
    return (x, y), (lambda: (xt, yt))


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory every 2 ms while the block runs; ``peak_above`` is
    the highest RSS seen minus the RSS when the block started."""

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


def alternate(a, b, repeats: int = 3):
    """Time ``a()`` and ``b()`` ``repeats`` times each, alternating which goes first; returns
    ``{"a": [seconds], "b": [seconds], "order": [...], "ratio_median": median(a_i / b_i)}``."""
    ta, tb, order = [], [], []
    for i in range(repeats):
        pair = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for name, fn in pair:
            t = time.perf_counter()
            fn()
            (ta if name == "a" else tb).append(time.perf_counter() - t)
        order.append("".join(n for n, _ in pair))
    return {"a": ta, "b": tb, "order": order, "ratio_median": statistics.median(x / y for x, y in zip(ta, tb))}


def summary_stats(values) -> dict:
    """Mean, sample standard deviation, min and max of a list of numbers."""
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def latest_ok(entries, *, reporting: bool = True):
    """The last finished run of a results list (with ``reporting``: the last non-exploratory one)."""
    ok = [e for e in entries if e.get("benchmark") and e.get("status") == "ok"
          and not (reporting and e.get("exploratory"))]
    return ok[-1] if ok else None
