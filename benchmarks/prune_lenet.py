"""Han et al.-style pruning of the reference LeNets on MNIST: sparsity, accuracy, file bytes, time.

    python benchmarks/prune_lenet.py lenet5 [--baseline build/lenet5.keras] [prune options]
    python benchmarks/prune_lenet.py lenet_300_100 ...

From a dense baseline trained by ``models/train.py`` (trained here if no file is given), runs
``sparsecomp.compress`` (iterative std-threshold pruning over frozen groups, dead-unit removal,
sparse save) and reports, like Han et al.'s Tables 2-3: per layer weights, kept %, shape after
dead-unit removal; dense and compressed test accuracy (the test set is used only for these two
figures); parameter reduction; Keras' own dense ``.keras`` (no optimizer state) vs our
``.sparse.h5``; wall time. Also one-shot magnitude pruning to the same per-layer sparsity (what
iteration buys), and the cost of holding masks: one fine-tuning epoch with masks vs without,
alternated three times in this run (median ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# The schedules the figures in RESULTS.md were produced with. target_sparsity comes from the
# issue's compression targets, before any run: LeNet-5 must have <= 431,080 / 50 = 8,621 non-zeros;
# its biases are at most 580, so >= 98.13% of its 430,500 kernel weights must be zero (98.25% for a
# margin). LeNet-300-100: <= 266,610 / 30 = 8,887 non-zeros, at most 410 biases -> >= 96.82% of its
# 266,200 kernel weights (97% for a margin).
DEFAULTS = {
    "lenet5": dict(q0=0.5, step=0.3, min_step=0.075, max_q=10.0, max_drop=0.002, epochs=2, recovery_epochs=4,
                   learning_rate=5e-4, train_epochs=12, target_sparsity=0.9825),
    # Until 2026-11-21 13:00: epochs=2, recovery_epochs=8, learning_rate=5e-4 at a constant rate and no
    # L2 (14.73x, RESULTS.md). Now Han et al.'s L2 while retraining and a rate that restarts at 1e-3
    # and decays x0.6 per epoch within every step.
    "lenet_300_100": dict(q0=0.5, step=0.3, min_step=0.075, max_q=10.0, max_drop=0.002, epochs=4,
                          recovery_epochs=6, learning_rate=1e-3, lr_decay=0.6, l2=5e-5, train_epochs=20,
                          target_sparsity=0.97),
}


def one_shot_same_sparsity(model, pruned, test):
    from sparsecomp.criteria import magnitude_fraction_mask
    from sparsecomp.masks import kernel_of, prunable_layers
    from sparsecomp.pruning import clone_model
    m = clone_model(model)
    m.compile_from_config(model.get_compile_config())
    for layer in prunable_layers(m):
        target = float((np.asarray(kernel_of(pruned.get_layer(layer.name)).numpy()) == 0).mean())
        k = kernel_of(layer)
        w = np.asarray(k.numpy())
        k.assign(np.where(magnitude_fraction_mask(w, target), w, 0).astype(w.dtype))
    x, y = test
    return float(m.evaluate(x, y, batch_size=512, verbose=0, return_dict=True)["accuracy"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(DEFAULTS))
    p.add_argument("--baseline", default=None, help="a .keras trained by models/train.py (default: train now)")
    for k in ("q0", "step", "max_q", "max_drop", "learning_rate", "min_step", "target_sparsity", "lr_decay", "l2"):
        p.add_argument(f"--{k.replace('_', '-')}", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--recovery-epochs", type=int, default=None)
    p.add_argument("--groups", nargs="*", default=None,
                   help="groups pruned in order, each comma-separated layer names (default: conv, then fc)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="fine-tune with AdamW and this decoupled weight decay (default: the model's Adam)")
    p.add_argument("--validation-split", type=float, default=None,
                   help="fraction of the training images held out for the accept/revert decisions (default 1/12 = "
                        "the 5,000 images models/train.py held out; a larger split reaches into images the "
                        "baseline was trained on, which inflates the dense validation figure)")
    p.add_argument("--seed", type=int, default=0, help="seeds the fine-tuning's shuffling (default 0)")
    p.add_argument("--out", default=None, help="where to keep the files and the HTML report (default: temp)")
    args = p.parse_args()
    cfg = dict(DEFAULTS[args.model])
    cfg.setdefault("validation_split", 1 / 12)
    cfg.setdefault("groups", "auto")
    if args.groups:
        cfg["groups"] = [g.split(",") for g in args.groups]
    if args.validation_split is not None:
        cfg["validation_split"] = args.validation_split
    if args.weight_decay is not None:
        cfg["weight_decay"] = args.weight_decay
    for k in ("q0", "step", "max_q", "max_drop", "learning_rate", "epochs", "recovery_epochs", "min_step",
              "target_sparsity", "lr_decay", "l2"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)

    import keras

    import sparsecomp
    from _common import mask_overhead, write_result
    from sparsecomp.compress import mnist_for
    t_all = time.time()
    if args.baseline:
        model = keras.saving.load_model(args.baseline)
        baseline_info = {"baseline_file": args.baseline}
    else:
        from models.train import train
        model, baseline_info = train(args.model, epochs=cfg["train_epochs"], verbose=0)
    keras.utils.set_random_seed(args.seed)
    cfg["seed"] = args.seed
    (x, y), test = mnist_for(model)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)

    def show(s):
        print(f"  [{time.time() - t_all:6.0f}s] {s.group:<4} q={s.q:.2f} sparsity {s.total_sparsity:.2%} "
              f"val {s.val_metric:.4f} ({'ok' if s.accepted else 'reverted'})", flush=True)

    t0 = time.time()
    res = sparsecomp.compress(model, (x, y), out / f"{args.model}.sparse.h5", test_data=test,
                              report_dir=out / "report", progress=show, validation_split=cfg["validation_split"],
                              groups=cfg["groups"],
                              q0=cfg["q0"], step=cfg["step"], max_q=cfg["max_q"], max_drop=cfg["max_drop"],
                              epochs=cfg["epochs"], recovery_epochs=cfg["recovery_epochs"],
                              min_step=cfg.get("min_step"), target_sparsity=cfg.get("target_sparsity"),
                              learning_rate=cfg["learning_rate"], lr_decay=cfg.get("lr_decay", 1.0),
                              l2=cfg.get("l2"),
                              optimizer=(keras.optimizers.AdamW(cfg["learning_rate"], weight_decay=cfg["weight_decay"])
                                         if cfg.get("weight_decay") else None))
    compress_s = time.time() - t0
    s = res.summary
    dense_acc, comp_acc = s["dense test accuracy"], s["compressed test accuracy"]
    one_shot_acc = one_shot_same_sparsity(model, res.pruned_model, test)
    ratio, with_m, without = mask_overhead(res.pruned_model, (x[:-5000], y[:-5000]), res.pruned_model)
    figures = {
        "model": args.model, "settings": cfg, "baseline": baseline_info,
        "dense_test_accuracy": dense_acc, "compressed_test_accuracy": comp_acc,
        "accuracy_drop_points": round(100 * (dense_acc - comp_acc), 3),
        "one_shot_same_sparsity_test_accuracy": one_shot_acc,
        "dense_params": s["dense parameters"], "nonzero_params": s["non-zero parameters after"],
        "param_reduction": s["parameter reduction (dense / non-zero)"],
        "params_after_dead_unit_removal": s["parameters after dead-unit removal"],
        "dead_units_removed": s["dead units removed"],
        "keras_dense_bytes": s["Keras dense .keras bytes (no optimizer)"], "sparse_bytes": s[".sparse.h5 bytes"],
        "file_ratio": s["file ratio (Keras / sparse)"],
        "compress_seconds": round(compress_s, 1), "total_seconds": round(time.time() - t_all, 1),
        "pruning_steps": len(res.history.steps),
        "mask_epoch_ratio": round(ratio, 3), "mask_epoch_seconds": with_m, "plain_epoch_seconds": without,
        "layers": res.layers, "report": str(res.report_html),
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "layers"}, indent=1, default=str))
    print("layer     weights   kept%   shape after removal")
    for r in res.layers:
        print(f"{r['layer']:<8} {r['weights']:>8,}  {r['kept %']:>6}   {r['shape after removal']}")
    print(f"wrote {write_result(f'prune_{args.model}', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
