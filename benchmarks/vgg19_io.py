"""VGG19 at scale: sparsecomp.save/load against Keras' own save/load, time, size and peak memory.

    python benchmarks/vgg19_io.py [--sparsities 0 0.8 0.95 0.99]

VGG19 (``weights=None``, 143,667,240 parameters) has its weights zeroed by magnitude (per tensor,
kernels only) to each sparsity. Each measurement runs in a fresh subprocess so peaks do not mix:
``save`` measures Keras' ``model.save(.keras)`` and ``sparsecomp.save`` on the same model, one after
the other; ``load`` measures ``keras.models.load_model`` or ``sparsecomp.load`` from a process that
has only imported Keras. Peak memory is sampled from /proc every 2 ms and reported above the RSS
at the start of the operation (for loads that includes the model itself, which is then subtracted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODEL_BYTES = 143_667_240 * 4
LARGEST_TENSOR = 25088 * 4096 * 4


def child_save(sparsity: float, td: str) -> dict:
    import keras
    import numpy as np

    import sparsecomp
    from _common import PeakRSS
    from models import zoo
    keras.utils.set_random_seed(0)
    model = zoo.vgg19()
    if sparsity > 0:
        for v in model.weights:
            if len(v.shape) >= 2:
                w = np.asarray(v)
                t = np.quantile(np.abs(w), sparsity)
                v.assign(np.where(np.abs(w) <= t, 0, w).astype(w.dtype))
    out = {}
    with PeakRSS() as k:
        model.save(Path(td) / "vgg19.keras")
    with PeakRSS() as s:
        rep = sparsecomp.save(model, Path(td) / "vgg19.sparse.h5")
    out.update(keras_save_s=k.seconds, keras_save_peak_above=k.peak_above,
               sparse_save_s=s.seconds, sparse_save_peak_above=s.peak_above,
               keras_bytes=(Path(td) / "vgg19.keras").stat().st_size,
               sparse_bytes=(Path(td) / "vgg19.sparse.h5").stat().st_size,
               density=rep.totals()["density"], csr_tensors=sum(r.encoding == "csr" for r in rep.records))
    return out


def child_load(which: str, td: str) -> dict:
    import keras

    import sparsecomp
    from _common import PeakRSS
    with PeakRSS() as p:
        if which == "keras":
            m = keras.models.load_model(Path(td) / "vgg19.keras")
        else:
            m = sparsecomp.load(Path(td) / "vgg19.sparse.h5")
    assert m.count_params() == 143_667_240
    return {f"{which}_load_s": p.seconds, f"{which}_load_peak_above": p.peak_above}


def run_child(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.8, 0.95, 0.99])
    p.add_argument("--child", nargs="+")
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        res = child_save(float(rest[0]), rest[1]) if kind == "save" else child_load(rest[0], rest[1])
        print(json.dumps(res))
        return 0
    from _common import write_result
    rows = []
    for sp in args.sparsities:
        with tempfile.TemporaryDirectory() as td:
            t0 = time.time()
            row = {"sparsity": sp, **run_child("save", str(sp), td)}
            row.update(run_child("load", "keras", td))
            row.update(run_child("load", "sparse", td))
            row["save_time_ratio"] = row["sparse_save_s"] / row["keras_save_s"]
            row["load_time_ratio"] = row["sparse_load_s"] / row["keras_load_s"]
            row["size_ratio_keras_over_sparse"] = row["keras_bytes"] / row["sparse_bytes"]
            row["sparse_save_peak_over_largest_tensor"] = row["sparse_save_peak_above"] / LARGEST_TENSOR
            row["keras_save_peak_over_largest_tensor"] = row["keras_save_peak_above"] / LARGEST_TENSOR
            row["sparse_load_peak_above_model_over_largest_tensor"] = \
                (row["sparse_load_peak_above"] - MODEL_BYTES) / LARGEST_TENSOR
            row["keras_load_peak_above_model_over_largest_tensor"] = \
                (row["keras_load_peak_above"] - MODEL_BYTES) / LARGEST_TENSOR
            rows.append(row)
            print(f"sparsity {sp:.2f}: save {row['sparse_save_s']:.2f}s vs keras {row['keras_save_s']:.2f}s "
                  f"(x{row['save_time_ratio']:.2f}); load {row['sparse_load_s']:.2f}s vs keras "
                  f"{row['keras_load_s']:.2f}s (x{row['load_time_ratio']:.2f}); size {row['sparse_bytes']:,} vs "
                  f"{row['keras_bytes']:,} ({row['size_ratio_keras_over_sparse']:.2f}x smaller); save peak "
                  f"{row['sparse_save_peak_over_largest_tensor']:.2f}x largest tensor (keras "
                  f"{row['keras_save_peak_over_largest_tensor']:.2f}x); load peak above model "
                  f"{row['sparse_load_peak_above_model_over_largest_tensor']:.2f}x (keras "
                  f"{row['keras_load_peak_above_model_over_largest_tensor']:.2f}x)  [{time.time() - t0:.0f}s]",
                  flush=True)
    print(f"wrote {write_result('vgg19_io', {'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
