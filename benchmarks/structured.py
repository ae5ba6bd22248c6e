"""Structured pruning on MNIST: criteria compared, TLT equalization on a ResNet, inference time.

    python benchmarks/structured.py [--models lenet5 vgg_small_bn] [--criteria l1 apoz random]
           [--fractions 0.1 0.2 0.3 0.5] [--train-images 10000] [--epochs 1] [--out DIR]

For each model (dense baseline from ``build/MODEL.keras``, trained by ``models/train.py`` if absent):
one rank -> prune -> retrain round per criterion and fraction (``scope="layer"``: every layer loses
the same fraction of its filters/units, so criteria are compared at equal parameter counts),
retraining ``--epochs`` epochs (Adam, ``--lr``) on the first ``--train-images`` training images
(default: all 55,000 outside the validation split; BatchNorm's moving statistics need the steps),
then test accuracy.
``l1_bn`` is L1 with ``fold_bn=True`` (each filter's norm times the scale of the BatchNorm after
it), run on models that have BatchNorm. Writes a table, ``benchmarks/results/structured_criteria.png`` (test accuracy against weights removed, one line per
criterion) and ``benchmarks/results/structured.json``.

On ``resnet_small`` (identity and projection shortcuts): TLT threshold pruning (L2 norms divided by
the layer's max, threshold ``--tlt-threshold``, kept counts a multiple of ``--tlt-granularity``, at
least ``--tlt-min-filters``; TLT's own defaults 0.1/8/16 are for networks with hundreds of filters
per layer and would remove nothing from 16/32-filter layers) with each equalization operator
across the residual adds: parameters and test accuracy after one round.

Inference time of a structured-pruned model against its dense model, batch 1 and batch 256, on this
CPU: the two alternate in one run (``--timing-repeats`` rounds, median of per-round ratios).
The test set is used only for the reported accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

RESULTS_DIR = HERE / "results"
BASELINE_EPOCHS = {"lenet5": 12, "vgg_small_bn": 4, "resnet_small": 4}


def baseline(name):
    import keras
    path = HERE.parent / "build" / f"{name}.keras"
    if path.exists():
        return keras.saving.load_model(path), {"baseline_file": str(path.relative_to(HERE.parent))}
    from models.train import train
    model, info = train(name, epochs=BASELINE_EPOCHS[name], verbose=0)
    path.parent.mkdir(exist_ok=True)
    model.save(path)
    return model, info


def test_accuracy(model, test):
    x, y = test
    return float(model.evaluate(x, y, batch_size=512, verbose=0, return_dict=True)["accuracy"])


def kernel_weights(model) -> int:
    from sparsecomp.masks import kernel_of, prunable_layers
    return sum(int(np.prod(kernel_of(layer).shape)) for layer in prunable_layers(model))


def inference_ratio(dense, pruned, batch, repeats, calls):
    """Median over ``repeats`` alternated rounds of (pruned seconds / dense seconds) per call."""
    import tensorflow as tf
    x = tf.constant(np.random.default_rng(0).random((batch,) + tuple(dense.inputs[0].shape[1:])).astype("float32"))
    fns = {}
    for key, m in (("dense", dense), ("pruned", pruned)):
        fn = tf.function(lambda t, m=m: m(t, training=False), jit_compile=False)
        for _ in range(3):
            fn(x)          # trace and warm up
        fns[key] = fn
    ratios, secs = [], {"dense": [], "pruned": []}
    for _ in range(repeats):
        per = {}
        for key in ("dense", "pruned"):
            t = time.perf_counter()
            for _ in range(calls):
                fns[key](x).numpy()
            per[key] = (time.perf_counter() - t) / calls
            secs[key].append(per[key])
        ratios.append(per["pruned"] / per["dense"])
    return statistics.median(ratios), {k: statistics.median(v) for k, v in secs.items()}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    colors = {"l1": "#2a7", "apoz": "#36c", "random": "#c33", "l2": "#a6a", "l1_bn": "#e90"}
    for ax, name in zip(axes.flat, models):
        sub = [r for r in rows if r["model"] == name]
        dense = sub[0]["dense_test_accuracy"]
        ax.axhline(100 * dense, color="#555", lw=1, ls=":", label=f"dense {100 * dense:.2f}%")
        for crit in sorted({r["criterion"] for r in sub}):
            pts = sorted((100 * r["weights_removed"], 100 * r["test_accuracy"]) for r in sub if r["criterion"] == crit)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors.get(crit), label=crit)
        ax.set_xlabel("kernel weights removed (%)")
        ax.set_ylabel("test accuracy after one round (%)")
        ax.set_title(f"{name}: one rank-prune-retrain round")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["lenet5", "vgg_small_bn"])
    p.add_argument("--criteria", nargs="*", default=["l1", "apoz", "random", "l1_bn"],
                   help="NAME_bn = NAME with fold_bn=True (norms scaled by the following BatchNorm; "
                        "skipped for models without BatchNorm)")
    p.add_argument("--fractions", nargs="*", type=float, default=[0.1, 0.2, 0.3, 0.5])
    p.add_argument("--train-images", type=int, default=55000, help="retraining images (the validation 5,000 excluded)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--tlt-threshold", type=float, default=0.9)
    p.add_argument("--tlt-granularity", type=int, default=4)
    p.add_argument("--tlt-min-filters", type=int, default=8)
    p.add_argument("--no-resnet", action="store_true")
    p.add_argument("--timing-repeats", type=int, default=5)
    p.add_argument("--out", default=str(HERE.parent / "build" / "structured"))
    args = p.parse_args()

    import keras

    import sparsecomp
    from _common import write_result
    from sparsecomp.compress import mnist_for
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    rows, tlt_rows, timing = [], [], {}
    kept_models = {}
    n = args.train_images

    def one_round(model, name, criterion, **kw):
        (x, y), test = mnist_for(model)
        keras.utils.set_random_seed(0)
        t0 = time.time()
        pruned, hist = sparsecomp.prune_structured(
            model, (x[:min(n, len(x) - 5000)], y[:min(n, len(x) - 5000)]), validation_data=(x[-5000:], y[-5000:]), criterion=criterion, rounds=1,
            max_drop=1.0, epochs=args.epochs, learning_rate=args.lr, **kw)
        return pruned, hist, test, time.time() - t0

    for name in args.models:
        model, info = baseline(name)
        (_, _), test = mnist_for(model)
        dense_acc = test_accuracy(model, test)
        dense_w = kernel_weights(model)
        has_bn = any(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
        for crit in args.criteria:
            base, fold = (crit[:-3], True) if crit.endswith("_bn") else (crit, False)
            if fold and not has_bn:
                continue
            for frac in args.fractions:
                pruned, hist, test, secs = one_round(model, name, base, fraction=frac, scope="layer", fold_bn=fold)
                acc = test_accuracy(pruned, test)
                row = {"model": name, "criterion": crit, "fraction": frac, "dense_test_accuracy": dense_acc,
                       "test_accuracy": acc, "drop_points": round(100 * (dense_acc - acc), 3),
                       "dense_params": hist.dense_params, "params": hist.final_params,
                       "param_reduction": round(hist.dense_params / hist.final_params, 3),
                       "weights_removed": round(1 - kernel_weights(pruned) / dense_w, 4),
                       "filters": hist.rounds[0].filters, "seconds": round(secs, 1), "baseline": info}
                rows.append(row)
                print(f"{name:<13} {crit:<7} {frac:4.0%}: params {row['dense_params']:>8,} -> {row['params']:>8,} "
                      f"test {100 * dense_acc:.2f}% -> {100 * acc:.2f}%  ({secs:.0f}s)", flush=True)
                if crit == "l1" and frac == max(args.fractions):
                    kept_models[name] = (model, pruned)
    if rows:
        plot(rows, RESULTS_DIR / "structured_criteria.png")
    if not args.no_resnet:
        model, info = baseline("resnet_small")
        (_, _), test = mnist_for(model)
        dense_acc = test_accuracy(model, test)
        for op in ("arithmetic_mean", "geometric_mean", "union", "intersection"):
            pruned, hist, test, secs = one_round(model, "resnet_small", "tlt", fraction=None,
                                                 threshold=args.tlt_threshold, granularity=args.tlt_granularity,
                                                 min_channels=args.tlt_min_filters,
                                                 equalization=op)
            acc = test_accuracy(pruned, test)
            tlt_rows.append({"equalization": op, "threshold": args.tlt_threshold, "dense_test_accuracy": dense_acc,
                             "test_accuracy": acc, "drop_points": round(100 * (dense_acc - acc), 3),
                             "dense_params": hist.dense_params, "params": hist.final_params,
                             "param_reduction": round(hist.dense_params / hist.final_params, 3),
                             "filters": hist.rounds[0].filters, "seconds": round(secs, 1), "baseline": info})
            print(f"resnet_small tlt t={args.tlt_threshold} {op:<15}: params {hist.dense_params:,} -> "
                  f"{hist.final_params:,}  test {100 * dense_acc:.2f}% -> {100 * acc:.2f}%", flush=True)
            if op == "union":
                kept_models["resnet_small"] = (model, pruned)
    for name, (dense, pruned) in kept_models.items():
        timing[name] = {}
        for batch, calls in ((1, 200), (256, 5)):
            ratio, secs = inference_ratio(dense, pruned, batch, args.timing_repeats, calls)
            timing[name][f"batch_{batch}"] = {"pruned_over_dense": round(ratio, 3),
                                              "dense_seconds_per_call": secs["dense"],
                                              "pruned_seconds_per_call": secs["pruned"],
                                              "dense_params": int(dense.count_params()),
                                              "pruned_params": int(pruned.count_params())}
            print(f"inference {name} batch {batch}: pruned/dense time {ratio:.3f} "
                  f"({secs['pruned'] * 1e3:.2f} ms vs {secs['dense'] * 1e3:.2f} ms)", flush=True)
    figures = {"train_images": n, "epochs": args.epochs, "learning_rate": args.lr, "criteria_rows": rows,
               "tlt_resnet_rows": tlt_rows, "inference": timing, "plot": "benchmarks/results/structured_criteria.png",
               "total_seconds": round(time.time() - t_all, 1)}
    (out / "structured.json").write_text(json.dumps(figures, indent=1, default=str))
    print(f"wrote {write_result('structured', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
