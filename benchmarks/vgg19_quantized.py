"""VGG19 with data-free weight sharing: 95% pruned by magnitude, 8-bit conv / 5-bit FC codebooks.

    python -m benchmarks vgg19_quantized

VGG19 (``weights=None``: random weights, nothing downloaded), kernels pruned to 95% by magnitude
(``sparsecomp.prune_data_free``), then ``sparsecomp.quantize(model, None, bits={"conv": 8, "fc": 5})``
— codebooks fitted by 1-D k-means without fine-tuning (accuracy not measured: there is no data).
Timed once in the preparing process: pruning and codebook fitting. Then, as in ``vgg19_io``, the
quantized model saved and loaded by both sides, ``repeats`` alternating rounds of fresh processes:
encode (``sparsecomp.save``: the ``shared`` codec's codebook, gap bytes and entropy-coded codes)
and decode (``sparsecomp.load``) against Keras' own ``save``/``load`` of the same model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.common import latest_ok
from benchmarks._vgg_io import measure
from benchmarks.runner import ROOT

SETTINGS = {"sparsity": 0.95, "bits": {"conv": 8, "fc": 5}, "init": "linear", "repeats": 3, "level": 2}
SEEDS = [0]

PREPARE = """
import json, sys, time
import keras, numpy as np
sys.path.insert(0, {root!r})
import sparsecomp
from models import zoo
keras.utils.set_random_seed({seed})
m = zoo.vgg19()
t = time.time()
pruned, info = sparsecomp.prune_data_free(m, {sparsity}, criterion="magnitude")
t_prune = time.time() - t
t = time.time()
q, h = sparsecomp.quantize(pruned, None, bits={bits}, init={init!r})
t_quant = time.time() - t
q.save({path!r})
distinct = {{l.name: int(len(np.unique(l.get_weights()[0][l.get_weights()[0] != 0]))) for l in q.layers if l.get_weights()}}
print(json.dumps({{"prune_seconds": t_prune, "quantize_seconds": t_quant, "sparsity": info.total_sparsity,
                  "layers": h.layers, "distinct_values": distinct, "accuracy": h.final_metric,
                  "nonzero": int(sum(np.count_nonzero(w) for w in q.get_weights()))}}))
"""


def run(ctx):
    s = ctx.settings
    path = ctx.work / "vgg19-q.keras"
    code = PREPARE.format(root=str(ROOT), seed=ctx.seeds[0], sparsity=s["sparsity"], bits=s["bits"], init=s["init"],
                          path=str(path))
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    prep = json.loads(r.stdout.strip().splitlines()[-1])
    ctx.log(f"pruned in {prep['prune_seconds']:.1f} s, codebooks in {prep['quantize_seconds']:.1f} s")
    m = measure(path, ctx.work / "io", s["repeats"], s["level"], log=ctx.log)
    m["bytes_per_nonzero"] = m["sparse_bytes"] / prep["nonzero"]
    return {"prepare": prep, **m}


def headline(e):
    r = e["results"]
    return (f"{r['size_ratio']:.1f}× smaller than Keras' file ({r['bytes_per_nonzero']:.2f} B/nnz); encode "
            f"×{r['save_ratio']['median']:.2f}, decode ×{r['load_ratio']['median']:.2f} Keras' time")


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return "No reporting run yet."
    r, p = e["results"], e["results"]["prepare"]
    sm = r["seconds_median"]
    bits = ", ".join(f"{k} {v['bits']}" for k, v in p["layers"].items())
    return "\n".join([
        f"{run_ref('vgg19_quantized', entries, e)}, {e['started'][:16]}. Accuracy: **not measured** (no data; "
        "post-training codebooks).", "",
        f"Pruning to {p['sparsity']:.2%} took {p['prune_seconds']:.1f} s, fitting the codebooks "
        f"{p['quantize_seconds']:.1f} s ({bits}).", "",
        "| | ours | Keras | ratio (median, range over rounds) |", "| --- | --- | --- | --- |",
        f"| file bytes | {r['sparse_bytes']:,} ({r['bytes_per_nonzero']:.2f} B per non-zero) | {r['keras_bytes']:,} | "
        f"**{r['size_ratio']:.1f}× smaller** |",
        f"| encode / save, median s | {sm['sparse_save']:.2f} | {sm['keras_save']:.2f} | "
        f"**{r['save_ratio']['median']:.2f}** ({r['save_ratio']['min']:.2f}–{r['save_ratio']['max']:.2f}) |",
        f"| decode / load, median s | {sm['sparse_load']:.2f} | {sm['keras_load']:.2f} | "
        f"**{r['load_ratio']['median']:.2f}** ({r['load_ratio']['min']:.2f}–{r['load_ratio']['max']:.2f}) |",
    ])


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return []
    r = e["results"]
    return [("VGG19, 95% pruned + 8/5-bit codebooks, no data",
             f"{r['size_ratio']:.1f}× smaller than Keras' `.keras` ({r['bytes_per_nonzero']:.2f} B/nnz); encode "
             f"{r['save_ratio']['median']:.2f}× and decode {r['load_ratio']['median']:.2f}× Keras' save/load time; "
             f"accuracy not measured ({run_ref('vgg19_quantized', entries, e)})")]
