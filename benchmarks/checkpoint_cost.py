"""What checkpointing every decided step costs: the LeNet-5 pruning schedule with and without
``checkpoint_dir``, total time as a ratio.

    python -m benchmarks checkpoint_cost

The schedule is ``prune_lenet5``'s settings, run on the first ``samples`` MNIST training images up to
``target_sparsity`` (a shorter run of the same schedule, so that ``repeats`` rounds of both sides
fit in minutes). Each run is a fresh process; the side that goes first alternates between rounds.
The runs must decide alike (checkpoints are written after decisions, never read back in a fresh
run); the time of each run is the ``prune`` call alone. Two ratios: the runs' wall times (with /
without, alternated — on a shared 2-core machine their noise is larger than the effect), and the
direct one: each run with checkpoints timed around the recording of every decided step, so
``time / (time - checkpoint time)`` is that run's cost of checkpointing (from results run 3 on).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from benchmarks.common import baseline, mnist, latest_ok
from benchmarks.prune_lenet5 import SETTINGS as LENET5
from benchmarks.runner import ROOT

SETTINGS = {"samples": 15_000, "target_sparsity": 0.9, "repeats": 3,
            "schedule": {k: v for k, v in LENET5.items() if k not in ("train_epochs", "method", "target_sparsity",
                                                                      "quantize", "level")}}
SEEDS = [0]

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import keras, numpy as np
import sparsecomp
m = keras.saving.load_model({model!r})
with np.load({data!r}) as z:
    x, y = z["x"], z["y"]
kw = json.loads({kw!r})
from sparsecomp.training import FineTuner
decided, spent = FineTuner.decided, [0.0]
def timed(self, *a, **k):            # what recording a decided step costs (the checkpoint write, when there is one)
    t0 = time.perf_counter()
    try:
        return decided(self, *a, **k)
    finally:
        spent[0] += time.perf_counter() - t0
FineTuner.decided = timed
t = time.time()
pruned, h = sparsecomp.prune(m, (x, y), checkpoint_dir={ckpt!r}, **kw)
print(json.dumps({{"seconds": time.time() - t, "steps": [[s.group, s.q, s.accepted] for s in h.steps],
                  "final": h.final_metric, "decided_seconds": spent[0]}}))
"""


def run(ctx):
    import numpy as np
    s = ctx.settings
    model, info = baseline("lenet5", LENET5["train_epochs"], log=ctx.log)
    (x, y), _ = mnist(model)
    data = ctx.work / "data.npz"
    np.savez(data, x=x[:s["samples"]], y=y[:s["samples"]])
    kw = dict(s["schedule"], target_sparsity=s["target_sparsity"], seed=ctx.seeds[0])
    kw["validation_split"] = 1 / 6
    model_path = ctx.work / "lenet5.keras"
    model.save(model_path)
    rounds = []
    for i in range(s["repeats"]):
        order = ("with", "without") if i % 2 == 0 else ("without", "with")
        r = {"round": i, "first": order[0]}
        for side in order:
            ckpt = str(ctx.work / f"ckpt{i}") if side == "with" else None
            code = CHILD.format(root=str(ROOT), model=str(model_path), data=str(data), kw=json.dumps(kw), ckpt=ckpt)
            p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                               capture_output=True, text=True, timeout=3600)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-2000:])
            r[side] = json.loads(p.stdout.strip().splitlines()[-1])
        if i == 0:
            files = sorted((ctx.work / "ckpt0").iterdir())
            r["checkpoint_bytes"] = sum(f.stat().st_size for f in files)
        r["ratio"] = r["with"]["seconds"] / r["without"]["seconds"]
        ctx.log(f"round {i}: with {r['with']['seconds']:.1f} s, without {r['without']['seconds']:.1f} s, "
                f"ratio {r['ratio']:.3f}, {len(r['with']['steps'])} steps")
        rounds.append(r)
    ratios = [r["ratio"] for r in rounds]
    # within each run: its time over its time less what recording the decided steps cost beyond a run
    # without checkpoints (far less noisy than comparing two runs' wall times on a shared machine)
    direct = [r["with"]["seconds"] / (r["with"]["seconds"] - (r["with"]["decided_seconds"]
                                                              - r["without"]["decided_seconds"])) for r in rounds]
    return {"direct_ratio": {"median": statistics.median(direct), "min": min(direct), "max": max(direct),
                             "checkpoint_seconds": [r["with"]["decided_seconds"] for r in rounds]},
            "baseline": info, "rounds": rounds, "steps": len(rounds[0]["with"]["steps"]),
            "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "decisions_equal": all(r["with"]["steps"] == r["without"]["steps"] for r in rounds)}


def headline(e):
    r = e["results"]
    out = f"wall times with / without: ×{r['ratio']['median']:.3f} ({r['ratio']['min']:.3f}–{r['ratio']['max']:.3f})"
    if "direct_ratio" in r:
        d = r["direct_ratio"]
        out += f"; direct: ×{d['median']:.4f} ({d['min']:.4f}–{d['max']:.4f})"
    return out


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return "No reporting run yet."
    r = e["results"]
    med = statistics.median
    lines = [
        f"{run_ref('checkpoint_cost', entries, e)}, {e['started'][:16]}: {r['steps']} decided steps per run, "
        f"{len(r['rounds'])} alternating rounds; decisions identical with and without: {r['decisions_equal']}.", "",
        f"Wall times: median run {med(x['with']['seconds'] for x in r['rounds']):.1f} s with a checkpoint after "
        f"every decided step ({r['rounds'][0]['checkpoint_bytes']:,} B on disk at the end), "
        f"{med(x['without']['seconds'] for x in r['rounds']):.1f} s without: ratio {r['ratio']['median']:.3f} "
        f"(range {r['ratio']['min']:.3f}–{r['ratio']['max']:.3f}). On this shared machine two runs' wall times "
        "differ by more than the effect (every earlier run of this benchmark is listed below with its ratios)."]
    if "direct_ratio" in r:
        d = r["direct_ratio"]
        lines += ["", f"Direct, within each run with checkpoints: {', '.join(f'{x:.2f}' for x in d['checkpoint_seconds'])} s "
                  f"spent recording the decided steps; run time over run time less that: **{d['median']:.4f}** "
                  f"(range {d['min']:.4f}–{d['max']:.4f}; target ≤ 1.05: "
                  f"**{'met' if d['max'] <= 1.05 else 'NOT met'}**, judged on the worst round)."]
    return "\n".join(lines)


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return []
    r = e["results"]
    if "direct_ratio" in r:
        d = r["direct_ratio"]
        what = f"×{d['median']:.4f} the run time (at most ×{d['max']:.4f}), measured inside each run"
    else:
        what = f"×{r['ratio']['median']:.3f} the run time without (wall times of alternated runs)"
    return [("checkpoint after every step", f"{what}; LeNet-5 schedule ({run_ref('checkpoint_cost', entries, e)})")]
