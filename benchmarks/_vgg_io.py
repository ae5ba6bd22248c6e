"""Save/load timing of a big model, sparsecomp vs Keras, every operation in a fresh process.

``python benchmarks/_vgg_io.py OP MODEL.keras OUT_DIR LEVEL`` (OP: ``keras_save``, ``sparse_save``,
``keras_load``, ``sparse_load``) prints one JSON line: seconds of the operation alone, peak RSS
above the RSS when it started (sampled every 2 ms), file bytes. A save first loads MODEL.keras
(not timed); a load reads what the save of the same repeat wrote.

:func:`measure` runs ``repeats`` rounds, alternating which side goes first, and summarizes:
per-round ratios (ours / Keras') with their median and range.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _child(op: str, model_path: str, out_dir: str, level: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import keras

    import sparsecomp
    from benchmarks.common import PeakRSS
    out = Path(out_dir)
    res = {"op": op}
    if op.endswith("_save"):
        model = keras.saving.load_model(model_path, compile=False)
        target = out / ("model.keras" if op == "keras_save" else "model.sparse.h5")
        with PeakRSS() as p:
            if op == "keras_save":
                model.save(target)
            else:
                rep = sparsecomp.save(model, target, level=level)
        if op == "sparse_save":
            res.update(codecs=rep.codecs(), metadata_bytes=rep.metadata_bytes)
        res.update(bytes=target.stat().st_size)
    else:
        with PeakRSS() as p:
            if op == "keras_load":
                m = keras.saving.load_model(out / "model.keras", compile=False)
            else:
                m = sparsecomp.load(out / "model.sparse.h5", compile=False)
        res["params"] = int(m.count_params())
    res.update(seconds=p.seconds, peak_above=p.peak_above)
    return res


def run_op(op: str, model_path: Path, out_dir: Path, level: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, __file__, op, str(model_path), str(out_dir), str(level)], env=env,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{op} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _ratio_stats(ours: list, theirs: list) -> dict:
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "all": ratios}


def measure(model_path: Path, work: Path, repeats: int, level: int, log=print) -> dict:
    """``repeats`` rounds of save (both sides) then load (both sides), the first side alternating."""
    rounds = []
    for i in range(repeats):
        out = work / f"round{i}"
        out.mkdir(parents=True, exist_ok=True)
        first, second = ("keras", "sparse") if i % 2 == 0 else ("sparse", "keras")
        r = {"round": i, "first": first}
        for phase in ("save", "load"):
            for side in (first, second):
                r[f"{side}_{phase}"] = run_op(f"{side}_{phase}", model_path, out, level)
        log(f"round {i} ({first} first): save {r['sparse_save']['seconds']:.2f} s vs Keras "
            f"{r['keras_save']['seconds']:.2f} s; load {r['sparse_load']['seconds']:.2f} s vs Keras "
            f"{r['keras_load']['seconds']:.2f} s; {r['sparse_save']['bytes']:,} B vs {r['keras_save']['bytes']:,} B")
        rounds.append(r)
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    col = {k: [r[k]["seconds"] for r in rounds] for k in ("sparse_save", "keras_save", "sparse_load", "keras_load")}
    peak = {k: [r[k]["peak_above"] for r in rounds] for k in ("sparse_save", "keras_save", "sparse_load", "keras_load")}
    return {"rounds": rounds,
            "save_ratio": _ratio_stats(col["sparse_save"], col["keras_save"]),
            "load_ratio": _ratio_stats(col["sparse_load"], col["keras_load"]),
            "seconds_median": {k: statistics.median(v) for k, v in col.items()},
            "seconds_range": {k: [min(v), max(v)] for k, v in col.items()},
            "peak_above_median": {k: statistics.median(v) for k, v in peak.items()},
            "sparse_bytes": rounds[0]["sparse_save"]["bytes"], "keras_bytes": rounds[0]["keras_save"]["bytes"],
            "size_ratio": rounds[0]["keras_save"]["bytes"] / rounds[0]["sparse_save"]["bytes"],
            "codecs": rounds[0]["sparse_save"].get("codecs"),
            "metadata_bytes": rounds[0]["sparse_save"].get("metadata_bytes")}


if __name__ == "__main__":
    t0 = time.time()
    print(json.dumps(_child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
