"""The same small pruning schedule on one process, under MirroredStrategy over two logical CPUs,
and on two local workers (MultiWorkerMirroredStrategy, 127.0.0.1):

    python -m benchmarks distributed

Each configuration runs in fresh processes (``_dist_child.py``), ``repeats`` times, the order of
the three rotated every repeat. Recorded per run: the wall time of the pruning call (after
TensorFlow and the strategy are up) and of the whole command, the decisions, the final validation
accuracy. Ratios are to the single process of the same repeat.

On a machine with 2 CPU cores this measures *overhead*, not speed-up: one process already uses
both cores for its matrix products, two replicas or two workers share the same two cores and add
the all-reduce of every gradient (and, for workers, gRPC between processes). The benefit of more
workers needs more machines (or GPUs), which this benchmark cannot show here.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.common import baseline, mnist, latest_ok
from benchmarks.runner import ROOT

SETTINGS = {"train_epochs": 20, "samples": 12_000, "repeats": 3,
            "prune": {"q0": 0.5, "step": 0.5, "max_q": 1.5, "epochs": 1, "recovery_epochs": 0, "max_drop": 0.01,
                      "batch_size": 256, "validation_split": 1 / 6, "seed": 0, "learning_rate": 1e-3}}
SEEDS = [0]
MODES = ("single", "mirrored", "workers")
CHILD = ROOT / "benchmarks" / "_dist_child.py"


def _free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _one(mode, model_path, data_path, out_dir, settings) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    out = out_dir / f"{mode}-{time.time_ns()}.json"
    args = [str(model_path), str(data_path), str(out), json.dumps(settings)]
    t = time.time()
    if mode != "workers":
        r = subprocess.run([sys.executable, str(CHILD), mode, *args], env=env, capture_output=True, text=True,
                           timeout=1800)
        codes, errs = [r.returncode], [r.stderr]
    else:
        ports = _free_ports(2)
        procs = []
        for i in range(2):
            cfg = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                              "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen([sys.executable, str(CHILD), "worker", *args], env=dict(env, TF_CONFIG=cfg),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=1800) for p in procs]
        codes, errs = [p.returncode for p in procs], [e for _, e in outs]
    wall = time.time() - t
    if any(codes) or not out.exists():
        raise RuntimeError(f"{mode} failed (exit codes {codes}): {errs[0][-1500:]}")
    res = json.loads(out.read_text())
    res.update(mode=mode, command_seconds=wall)
    return res


def run(ctx):
    import numpy as np
    s = ctx.settings
    model, base_info = baseline("lenet_300_100", s["train_epochs"], log=ctx.log)
    (x, y), _ = mnist(model)
    model_path, data_path = ctx.work / "model.keras", ctx.work / "data.npz"
    model.save(model_path)
    np.savez(data_path, x=x[:s["samples"]], y=y[:s["samples"]])
    runs = []
    for rep in range(s["repeats"]):
        order = MODES[rep % 3:] + MODES[:rep % 3]
        for mode in order:
            res = _one(mode, model_path, data_path, ctx.work, s["prune"])
            res.update(repeat=rep, position=order.index(mode))
            runs.append(res)
            ctx.log(f"repeat {rep} {mode:<8} prune {res['prune_seconds']:6.1f} s, command {res['command_seconds']:6.1f} s,"
                    f" final val {res['final_metric']:.4f}")
    by = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    summary = {}
    for m in MODES:
        ratios = [a["prune_seconds"] / b["prune_seconds"] for a, b in zip(by[m], by["single"])]
        cmd_ratios = [a["command_seconds"] / b["command_seconds"] for a, b in zip(by[m], by["single"])]
        summary[m] = {"prune_seconds_median": statistics.median(r["prune_seconds"] for r in by[m]),
                      "prune_ratio_to_single": {"median": statistics.median(ratios), "min": min(ratios),
                                                "max": max(ratios)},
                      "command_ratio_to_single": {"median": statistics.median(cmd_ratios), "min": min(cmd_ratios),
                                                  "max": max(cmd_ratios)},
                      "decisions_equal_single": all(_decisions(r) == _decisions(by["single"][0]) for r in by[m]),
                      "final_val": [r["final_metric"] for r in by[m]]}
    return {"baseline": base_info, "runs": runs, "summary": summary, "cores": os.cpu_count()}


def _decisions(run) -> list:
    """What was decided, step by step: ``q``, accepted, and the sparsity an accepted step kept (a
    reverted step's sparsity is that of weights thrown away; it may differ in the last weights)."""
    return [(st[0], st[1], st[2] if st[1] else None) for st in run["steps"]]


def _same(r: dict, m: str) -> bool:
    """Recomputed from the raw runs (run 1 stored a flag that also compared reverted steps' sparsity)."""
    runs = [x for x in r["runs"] if x["mode"] == m]
    ref = next(x for x in r["runs"] if x["mode"] == "single")
    return all(_decisions(x) == _decisions(ref) for x in runs)


def headline(e):
    s = e["results"]["summary"]
    return "; ".join(f"{m} ×{s[m]['prune_ratio_to_single']['median']:.2f}" for m in MODES if m != "single") + \
        " the single process's pruning time"


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return "No run yet."
    r = e["results"]
    s = r["summary"]
    names = {"single": "one process", "mirrored": "MirroredStrategy, 2 logical CPUs", "workers": "2 local workers"}
    lines = [f"{run_ref('distributed', entries, e)}, {e['started'][:16]}, {r['cores']} CPU cores, "
             f"{e['settings']['repeats']} repeats in fresh processes, order rotated. On 2 cores this is the "
             "**overhead** of the strategies, not a speed-up (both replicas or workers share the same two cores).", "",
             "| configuration | pruning s (median) | ratio to one process (median, range) | whole command ratio | "
             "decisions as one process (q, accepted, kept sparsity) | final validation accuracy |",
             "| --- | --- | --- | --- | --- | --- |"]
    for m in MODES:
        x = s[m]
        p, c = x["prune_ratio_to_single"], x["command_ratio_to_single"]
        lines.append(f"| {names[m]} | {x['prune_seconds_median']:.1f} | {p['median']:.2f} ({p['min']:.2f}–{p['max']:.2f}) "
                     f"| {c['median']:.2f} | {_same(r, m)} | "
                     f"{', '.join(f'{v:.4f}' for v in x['final_val'])} |")
    stored = {m: s[m]["decisions_equal_single"] for m in MODES}
    if not all(stored.values()):
        lines += ["", f"The run's stored flags ({stored}) also compared the sparsity of *reverted* steps, whose "
                  "weights are thrown away and may differ in the last weights (float sums in another order); the "
                  "column above is recomputed from the raw steps in the record."]
    return "\n".join(lines)


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return []
    s = e["results"]["summary"]
    same = all(_same(e["results"], m) for m in MODES)
    return [("multi-worker (2 local workers, 2 cores)",
             f"same decisions as one process: {same}; pruning time ×{s['workers']['prune_ratio_to_single']['median']:.2f} "
             f"(workers), ×{s['mirrored']['prune_ratio_to_single']['median']:.2f} (MirroredStrategy) — overhead on "
             f"2 cores, not speed-up ({run_ref('distributed', entries, e)})")]
