"""VGG19 at scale: sparsecomp.save/load against Keras' own save/load — time, size, peak memory.

    python -m benchmarks vgg19_io

VGG19 (``weights=None``, 143,667,240 parameters, largest tensor fc1 25088×4096 = 411 MB) with its
kernels zeroed by magnitude (per tensor) to each sparsity. For each sparsity, ``repeats`` rounds;
in each, both sides save (each in a fresh process that first loads the prepared model, untimed),
then both load what they wrote (fresh processes), the side that goes first alternating between
rounds. Reported: per-round ratios ours / Keras' (median and range), median seconds, peak RSS above
the start of the operation (for a save in units of the largest tensor), sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import latest_ok
from benchmarks._vgg_io import measure
from benchmarks.runner import ROOT

SETTINGS = {"sparsities": [0.0, 0.8, 0.95, 0.99], "repeats": 3, "level": 2}
SEEDS = [0]
LARGEST_TENSOR = 25088 * 4096 * 4
MODEL_BYTES = 143_667_240 * 4

PREPARE = """
import sys
import keras, numpy as np
sys.path.insert(0, {root!r})
from models import zoo
keras.utils.set_random_seed({seed})
m = zoo.vgg19()
s = {sparsity}
if s > 0:
    for v in m.weights:
        if len(v.shape) >= 2:
            w = np.asarray(v)
            t = np.quantile(np.abs(w), s)
            v.assign(np.where(np.abs(w) <= t, 0, w).astype(w.dtype))
m.save({path!r})
"""


def prepare(path, sparsity: float, seed: int) -> None:
    code = PREPARE.format(root=str(ROOT), seed=seed, sparsity=sparsity, path=str(path))
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])


def run(ctx):
    s = ctx.settings
    rows = []
    for sp in s["sparsities"]:
        model_path = ctx.work / f"vgg19-{sp}.keras"
        prepare(model_path, sp, ctx.seeds[0])
        ctx.log(f"sparsity {sp}: prepared")
        m = measure(model_path, ctx.work / f"s{sp}", s["repeats"], s["level"], log=lambda t, sp=sp: ctx.log(f"{sp}: {t}"))
        m["sparsity"] = sp
        m["sparse_save_peak_over_largest_tensor"] = m["peak_above_median"]["sparse_save"] / LARGEST_TENSOR
        m["keras_save_peak_over_largest_tensor"] = m["peak_above_median"]["keras_save"] / LARGEST_TENSOR
        m["sparse_load_peak_above_model_over_largest_tensor"] = \
            (m["peak_above_median"]["sparse_load"] - MODEL_BYTES) / LARGEST_TENSOR
        m["keras_load_peak_above_model_over_largest_tensor"] = \
            (m["peak_above_median"]["keras_load"] - MODEL_BYTES) / LARGEST_TENSOR
        rows.append(m)
        model_path.unlink()
    return {"rows": rows, "largest_tensor_bytes": LARGEST_TENSOR, "model_bytes": MODEL_BYTES}


def headline(e):
    rows = e["results"]["rows"]
    return "; ".join(f"{r['sparsity']:.0%}: save ×{r['save_ratio']['median']:.2f}, load ×{r['load_ratio']['median']:.2f}, "
                     f"{r['size_ratio']:.1f}× smaller" for r in rows)


def report(entries):
    from benchmarks._legacy import report as legacy
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    lines = []
    if e is None:
        lines.append("No runner-recorded run yet.")
    else:
        rows = e["results"]["rows"]
        lines += [f"{run_ref('vgg19_io', entries, e)}, {e['started'][:16]}; {e['settings']['repeats']} rounds per "
                  "sparsity, sides alternating, every operation in a fresh process.", "",
                  "| sparsity | save: ours / Keras (median, range) | load: ours / Keras | median seconds (save ours / "
                  "Keras, load ours / Keras) | Keras `.keras` | `.sparse.h5` | smaller | save peak ÷ largest tensor "
                  "(ours / Keras) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            sm = r["seconds_median"]
            lines.append(
                f"| {r['sparsity']:.0%} | **{r['save_ratio']['median']:.2f}** ({r['save_ratio']['min']:.2f}–"
                f"{r['save_ratio']['max']:.2f}) | **{r['load_ratio']['median']:.2f}** ({r['load_ratio']['min']:.2f}–"
                f"{r['load_ratio']['max']:.2f}) | {sm['sparse_save']:.2f} / {sm['keras_save']:.2f}, "
                f"{sm['sparse_load']:.2f} / {sm['keras_load']:.2f} | {r['keras_bytes']:,} | {r['sparse_bytes']:,} | "
                f"{r['size_ratio']:.2f}× | {r['sparse_save_peak_over_largest_tensor']:.2f} / "
                f"{r['keras_save_peak_over_largest_tensor']:.2f} |")
        ok = all(r["save_ratio"]["median"] <= 1.0 and r["load_ratio"]["median"] <= 1.0 for r in rows)
        peak = all(r["sparse_save_peak_over_largest_tensor"] <= 1.5 for r in rows)
        r95 = [r for r in rows if abs(r["sparsity"] - 0.95) < 1e-9]
        lines += ["", "Targets of issue #13: save and load ≤ 1.0× Keras' time at every sparsity: "
                  f"**{'met' if ok else 'NOT met'}**; save peak ≤ 1.5× the largest tensor: "
                  f"**{'met' if peak else 'NOT met'}**"
                  + (f"; 95%-sparse file ≥ 17× smaller: **{'met' if r95[0]['size_ratio'] >= 17 else 'NOT met'}** "
                     f"({r95[0]['size_ratio']:.1f}×)" if r95 else "") + "."]
    leg = legacy("vgg19_io", entries)
    return "\n".join(lines + (["", leg] if leg else []))


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        stopped = [i for i, x in enumerate(entries, 1) if x.get("benchmark") and x.get("status") != "ok"]
        return [("VGG19 save/load", "no complete run of format v2 yet" + (
            f"; run {stopped[-1]} was stopped and its log kept (see RESULTS.md)" if stopped else "")
            + " (`results/vgg19_io.json`)")]
    rows = e["results"]["rows"]
    sv = [r["save_ratio"]["median"] for r in rows]
    ld = [r["load_ratio"]["median"] for r in rows]
    r95 = [r for r in rows if abs(r["sparsity"] - 0.95) < 1e-9]
    return [("VGG19 save/load (143.7M parameters)",
             f"`save` {min(sv):.2f}–{max(sv):.2f}× and `load` {min(ld):.2f}–{max(ld):.2f}× Keras' own time "
             f"(medians of {e['settings']['repeats']} alternating rounds, fresh processes)"
             + (f"; 95%-sparse file {r95[0]['size_ratio']:.1f}× smaller" if r95 else "")
             + f" ({run_ref('vgg19_io', entries, e)})")]
