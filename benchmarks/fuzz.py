"""Fuzz the reader with atheris: one mode, a fixed number of inputs, counts of every outcome.

    python -m benchmarks fuzz MODE      # MODE: raw, rawh5, mutate, index, codec:gaps, codec:planes, ...

Runs ``tests/fuzz/fuzz_reader.py`` in a fresh process with libFuzzer's limits (``-timeout`` turns a
hang into a failure, ``-rss_limit_mb`` an unbounded allocation) and records what its ``FUZZ_STATS``
counted: inputs, accepted, refused by rule, crashes, leaked exception types, silent corruptions,
plus hangs and out-of-memory stops as libFuzzer reported them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchmarks.runner import ROOT

SETTINGS = {"runs": 100_000, "timeout_s": 10, "rss_limit_mb": 2048, "max_len": 4096, "seed": 1}
SEEDS = [1]


def add_arguments(p):
    p.add_argument("mode", help="raw | rawh5 | mutate | index | codec:NAME")


def run(ctx):
    s = ctx.settings
    stats = ctx.work / "stats.json"
    cmd = [sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_reader.py"), ctx.args.mode,
           f"-atheris_runs={s['runs']}", f"-timeout={s['timeout_s']}", f"-rss_limit_mb={s['rss_limit_mb']}",
           f"-max_len={s['max_len']}", f"-seed={s['seed']}"]
    ctx.log(" ".join(cmd))
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ctx.work, capture_output=True, text=True, env={**os.environ, "FUZZ_STATS": str(stats)})
    out = json.loads(stats.read_text()) if stats.exists() else {}
    tail = r.stderr[-3000:]
    artifacts = sorted(p.name for p in ctx.work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "slow-")))
    out.update({"mode": ctx.args.mode, "returncode": r.returncode, "wall_seconds": round(time.time() - t0, 1),
                "hangs": sum(a.startswith("timeout-") for a in artifacts) + tail.count("ERROR: libFuzzer: timeout"),
                "out_of_memory": sum(a.startswith("oom-") for a in artifacts) + tail.count("out-of-memory"),
                "artifacts": artifacts, "fuzzer_log_tail": tail[-800:]})
    if r.returncode != 0:
        raise RuntimeError(f"the fuzzer stopped with exit code {r.returncode}: {tail[-500:]}")
    return out


def headline(e):
    r = e["results"]
    return (f"{r['mode']}: {r['inputs']:,} inputs, {r['accepted']:,} accepted, {r['refused']:,} refused; crashes "
            f"{r['crashes']}, hangs {r['hangs']}, out of memory {r['out_of_memory']}, leaked "
            f"{len(r['leaked_exception_types'])}, silent corruptions {r['silent_corruptions']}")


def report(entries):
    from benchmarks.render import run_ref
    latest = {}
    for e in entries:
        if e.get("benchmark") and e.get("status") == "ok":
            latest[e["results"]["mode"]] = e
    if not latest:
        return "No run yet."
    lines = ["The latest run of each mode (every run is listed below):", "",
             "| mode | inputs | accepted | refused | crashes | hangs | OOM | leaked exception types | silent corruptions "
             "| seconds | record |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, e in sorted(latest.items()):
        r = e["results"]
        lines.append(f"| `{mode}` | {r['inputs']:,} | {r['accepted']:,} | {r['refused']:,} | {r['crashes']} | "
                     f"{r['hangs']} | {r['out_of_memory']} | {len(r['leaked_exception_types'])} | "
                     f"{r['silent_corruptions']} | {r['seconds']:.0f} | {run_ref('fuzz', entries, e)} |")
    return "\n".join(lines)
