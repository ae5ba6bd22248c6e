"""A Keras 2 weights-only VGG19 compressed without data, and read back by Keras 2.

    python -m benchmarks datafree_vgg19

The file users have: VGG19's weights saved by Keras 2 (``tf_keras.applications.VGG19(weights=None)
.save_weights(...h5)``, the ``layer_names``/``weight_names`` layout of the ImageNet files; random
weights here, nothing is downloaded). Measured in fresh processes, ``repeats`` rounds alternating
which goes first: ``sparsecomp pack`` of the file, and ``sparsecomp compress --no-data
--target-sparsity 0.95`` of it (tensor level: the checkpoint keeps its layout) — time of the
command's work and peak RSS above its start. Then ``sparsecomp unpack`` of the data-free file and,
in a tf-keras process, ``load_weights`` into a fresh VGG19: every weight must equal the original
where it was kept, and be zero where it was cut.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from benchmarks.common import latest_ok
from benchmarks.runner import ROOT

SETTINGS = {"target_sparsity": 0.95, "criterion": "std", "repeats": 3, "level": 2}
SEEDS = [0]
LARGEST_TENSOR = 25088 * 4096 * 4

WRITE = """
import json, sys
import numpy as np, tf_keras
tf_keras.utils.set_random_seed({seed})
m = tf_keras.applications.VGG19(weights=None)
m.save_weights({path!r})
print(json.dumps({{"tf_keras": tf_keras.__version__, "params": int(m.count_params())}}))
"""

CHECK = """
import json, sys, h5py
import numpy as np, tf_keras
a = tf_keras.applications.VGG19(weights=None); a.load_weights({orig!r})
b = tf_keras.applications.VGG19(weights=None); b.load_weights({back!r})
kept_equal = True; cut = size = 0; kernel_cut = kernel_size = 0; worst = 0.0
for u, v in zip(a.get_weights(), b.get_weights()):
    keep = v != 0
    kept_equal &= bool(np.array_equal(u[keep], v[keep]))
    worst = max(worst, float(np.max(np.abs(u[keep] - v[keep]))) if keep.any() else 0.0)
    cut += int((~keep).sum()); size += v.size
    if u.ndim >= 2:
        kernel_cut += int((~keep).sum()); kernel_size += v.size
print(json.dumps({{"kept_weights_identical": kept_equal, "max_abs_diff_kept": worst,
                  "kernel_sparsity": kernel_cut / kernel_size, "sparsity_all": cut / size}}))
"""

TIMED = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks.common import PeakRSS
from sparsecomp.cli import main
with PeakRSS() as p:
    code = main({argv!r})
print(json.dumps({{"code": code, "seconds": p.seconds, "peak_above": p.peak_above}}))
"""


def _py(code: str, timeout: int = 3600) -> dict:
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                                                              PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(ctx):
    s = ctx.settings
    src = ctx.work / "vgg19_weights_tf_keras.h5"
    written = _py(WRITE.format(seed=ctx.seeds[0], path=str(src)))
    ctx.log(f"wrote {src.stat().st_size:,} B with tf-keras {written['tf_keras']}")
    ops = {"pack": ["pack", str(src), "-o", str(ctx.work / "packed.sparse.h5"), "--force", "--level", str(s["level"])],
           "datafree": ["compress", str(src), "--no-data", "--target-sparsity", str(s["target_sparsity"]),
                        "--data-free-criterion", s["criterion"], "-o", str(ctx.work / "free.sparse.h5"), "--force",
                        "--level", str(s["level"])]}
    rounds = []
    for i in range(s["repeats"]):
        order = ("pack", "datafree") if i % 2 == 0 else ("datafree", "pack")
        r = {"round": i, "first": order[0]}
        for op in order:
            r[op] = _py(TIMED.format(root=str(ROOT), argv=ops[op]))
            if r[op]["code"] != 0:
                raise RuntimeError(f"{op} exited {r[op]['code']}")
        ctx.log(f"round {i}: data-free {r['datafree']['seconds']:.1f} s vs pack {r['pack']['seconds']:.1f} s; peaks "
                f"{r['datafree']['peak_above'] / LARGEST_TENSOR:.2f} / {r['pack']['peak_above'] / LARGEST_TENSOR:.2f}"
                " x largest tensor")
        rounds.append(r)
    back = ctx.work / "back.h5"
    unpack = _py(TIMED.format(root=str(ROOT), argv=["unpack", str(ctx.work / "free.sparse.h5"), "-o", str(back),
                                                    "--force"]))
    check = _py(CHECK.format(orig=str(src), back=str(back)))
    ratios = [r["datafree"]["seconds"] / r["pack"]["seconds"] for r in rounds]
    peaks = [r["datafree"]["peak_above"] / LARGEST_TENSOR for r in rounds]
    return {"tf_keras": written["tf_keras"], "source_bytes": src.stat().st_size,
            "packed_bytes": (ctx.work / "packed.sparse.h5").stat().st_size,
            "datafree_bytes": (ctx.work / "free.sparse.h5").stat().st_size, "rounds": rounds,
            "time_ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "datafree_peak_over_largest_tensor": {"median": statistics.median(peaks), "max": max(peaks)},
            "pack_peak_over_largest_tensor": statistics.median(r["pack"]["peak_above"] / LARGEST_TENSOR for r in rounds),
            "unpack": unpack, "tf_keras_check": check}


def headline(e):
    r = e["results"]
    return (f"time ×{r['time_ratio']['median']:.2f} of pack, peak {r['datafree_peak_over_largest_tensor']['max']:.2f}× "
            f"largest tensor, {r['source_bytes'] / r['datafree_bytes']:.1f}× smaller, tf-keras reads it back: "
            f"{r['tf_keras_check']['kept_weights_identical']}")


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return "No reporting run yet."
    r = e["results"]
    c = r["tf_keras_check"]
    med = statistics.median
    return "\n".join([
        f"{run_ref('datafree_vgg19', entries, e)}, {e['started'][:16]}; source written by tf-keras {r['tf_keras']}; "
        f"{e['settings']['repeats']} alternating rounds. Accuracy: **not measured** (no data).", "",
        "| | `pack` | `compress --no-data --target-sparsity 0.95` |", "| --- | --- | --- |",
        f"| median seconds | {med(x['pack']['seconds'] for x in r['rounds']):.1f} | "
        f"{med(x['datafree']['seconds'] for x in r['rounds']):.1f} |",
        f"| peak RSS above start ÷ largest tensor (411 MB) | {r['pack_peak_over_largest_tensor']:.2f} | "
        f"{r['datafree_peak_over_largest_tensor']['median']:.2f} |",
        f"| file bytes (source {r['source_bytes']:,}) | {r['packed_bytes']:,} | {r['datafree_bytes']:,} "
        f"({r['source_bytes'] / r['datafree_bytes']:.1f}× smaller) |", "",
        f"Time ratio data-free / pack: **{r['time_ratio']['median']:.2f}** (range {r['time_ratio']['min']:.2f}–"
        f"{r['time_ratio']['max']:.2f}; target ≤ 2: **{'met' if r['time_ratio']['median'] <= 2 else 'NOT met'}**); "
        f"peak **{r['datafree_peak_over_largest_tensor']['max']:.2f}×** the largest tensor (target ≤ 2: "
        f"**{'met' if r['datafree_peak_over_largest_tensor']['max'] <= 2 else 'NOT met'}**).", "",
        f"Unpacked (`sparsecomp unpack`, {r['unpack']['seconds']:.1f} s) and loaded by tf-keras `load_weights` into "
        f"a fresh VGG19: kept weights identical to the original: **{c['kept_weights_identical']}** (max difference "
        f"{c['max_abs_diff_kept']}); kernel sparsity {c['kernel_sparsity']:.2%}.",
    ])


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return []
    r = e["results"]
    return [("VGG19 Keras 2 weights file, no data",
             f"95% sparse in {r['time_ratio']['median']:.2f}× the time of `pack`, peak "
             f"{r['datafree_peak_over_largest_tensor']['max']:.2f}× its largest tensor, "
             f"{r['source_bytes'] / r['datafree_bytes']:.1f}× smaller; tf-keras loads it back, kept weights identical "
             f"({run_ref('datafree_vgg19', entries, e)})")]
