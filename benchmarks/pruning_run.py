"""One pruning benchmark run over several seeds (the LeNet benchmarks share it).

For each seed: ``sparsecomp.compress`` on the dense baseline with the script's settings (the
fine-tuning's data order and random states seeded), then — reporting runs only — the test set,
once, on the final model. Recorded per seed: every step (group, q, validation accuracy, decision,
epochs, seconds), the dense baseline's validation and test accuracy, the compressed model's test
accuracy, non-zeros, file bytes vs Keras' own file, bytes per non-zero, the per-layer table, time.
Then, once: the dense baseline trained on for as many more epochs as pruning used on average
(same data order rule, Adam at the fine-tuning rate), its test accuracy — whether the baseline was
under-trained. Summary: mean, spread and worst seed of each headline figure.

Exploratory runs (choosing settings) never read the test set: they gate on the first half of the
5,000 held-out images and measure the other half ("dev"), which no decision saw — an honest
preview of how a schedule generalizes.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import baseline, mnist, summary_stats


def _steps(history) -> list:
    if hasattr(history, "rounds"):
        return [{"round": r.round, "val": r.val_metric, "accepted": r.accepted, "epochs": r.epochs,
                 "seconds": round(r.seconds, 2), "params": r.params} for r in history.rounds]
    return [{"group": s.group, "q": s.q, "val": s.val_metric, "accepted": s.accepted, "epochs": s.epochs,
             "seconds": round(s.seconds, 2), "total_sparsity": s.total_sparsity} for s in history.steps]


def _compiled(model):
    from sparsecomp.model_io import clone_model
    m = clone_model(model)
    m.compile_from_config(model.get_compile_config())
    return m


def continue_dense(model, data, epochs: int, lr: float, seed: int):
    """The dense baseline trained ``epochs`` more epochs (Adam at ``lr``, seeded data order)."""
    import keras

    from sparsecomp.model_io import clone_model
    m = clone_model(model)
    m.compile(keras.optimizers.Adam(lr), model.get_compile_config()["loss"], metrics=["accuracy"])
    x, y = data
    n = len(x) - 5000
    for e in range(epochs):
        perm = np.random.default_rng([seed, 10_000 + e]).permutation(n)
        m.fit(x[:n][perm], y[:n][perm], batch_size=128, epochs=1, verbose=0, shuffle=False)
    return m


def run_pruning(ctx, model_name: str) -> dict:
    import keras

    import sparsecomp
    s = dict(ctx.settings)
    train_epochs = s.pop("train_epochs")
    method = s.pop("method", "std")
    model, base_info = baseline(model_name, train_epochs, log=ctx.log)
    (x, y), test_loader = mnist(model)
    reporting = not ctx.exploratory
    test = ctx.test_split(test_loader) if reporting else None
    dev = None
    if not reporting:                 # gate on 2,500 held-out images, measure the other 2,500
        x, y, dev = x[:-2500], y[:-2500], (x[-2500:], y[-2500:])
        s["validation_split"] = 2500 / len(x)
    seeds = []
    for seed in ctx.seeds:
        keras.utils.set_random_seed(seed)
        out = ctx.work / f"seed{seed}"
        out.mkdir(exist_ok=True)
        t0 = time.time()

        def show(st, t0=t0, seed=seed):
            if hasattr(st, "group"):
                ctx.log(f"seed {seed} [{time.time() - t0:6.0f}s] {st.group:<5} q={st.q:.3f} sparsity "
                        f"{st.total_sparsity:.4%} val {st.val_metric:.4f} {'ok' if st.accepted else 'reverted'} "
                        f"({st.epochs} ep)")
        res = sparsecomp.compress(model, (x, y), out / f"{model_name}.sparse.h5", method=method, test_data=test,
                                  report_dir=out / "report", progress=show, seed=seed, **s)
        sm = res.summary
        row = {"seed": seed, "seconds": round(time.time() - t0, 1), "steps": _steps(res.history),
               "baseline_val": res.history.baseline, "final_val": res.history.final_metric,
               "epochs": res.history.epochs, "dense_params": sm["dense parameters"],
               "nonzero": sm["non-zero parameters after"], "reduction": sm["parameter reduction (dense / non-zero)"],
               "params_after_removal": sm["parameters after dead-unit removal"],
               "dead_units": sm["dead units removed"], "keras_bytes": sm["Keras dense .keras bytes (no optimizer)"],
               "file_bytes": sm[".sparse.h5 bytes"], "file_ratio": sm["file ratio (Keras / sparse)"],
               "bytes_per_nonzero": sm["bytes per non-zero (all in)"], "layers": res.layers,
               "metadata_bytes": res.storage.metadata_bytes,
               "codecs": res.storage.codecs(), "streams": res.storage.totals("weights")["streams"]}
        if reporting:
            row.update(dense_test=sm["dense test accuracy"], test=sm["compressed test accuracy"],
                       drop_points=round(100 * (sm["dense test accuracy"] - sm["compressed test accuracy"]), 3))
        else:
            acc = lambda m: float(m.evaluate(*dev, batch_size=512, verbose=0, return_dict=True)["accuracy"])  # noqa: E731
            dense_dev = acc(_compiled(model))
            row.update(dense_dev=dense_dev, dev=acc(res.model),
                       dev_drop_points=round(100 * (dense_dev - acc(res.model)), 3))
        seeds.append(row)
        ctx.log(f"seed {seed}: {row['reduction']}x fewer non-zeros, file {row['file_ratio']}x, "
                f"{row['bytes_per_nonzero']} B/nnz, val {row['final_val']:.4f}, {row['seconds']} s"
                + (f", test drop {row['drop_points']}" if reporting else f", dev drop {row['dev_drop_points']}"))
    out = {"model": model_name, "method": method, "baseline": base_info, "seeds": seeds,
           "summary": {k: summary_stats([r[k] for r in seeds]) for k in
                       ("reduction", "file_ratio", "bytes_per_nonzero", "seconds", "epochs")}}
    if not reporting:
        out["summary"]["dev_drop_points"] = summary_stats([r["dev_drop_points"] for r in seeds])
    if reporting:
        out["summary"]["drop_points"] = summary_stats([r["drop_points"] for r in seeds])
        extra = int(round(np.mean([r["epochs"] for r in seeds])))
        dense_more = continue_dense(model, (x, y), extra, s.get("learning_rate") or 1e-3, seed=0)
        acc = float(dense_more.evaluate(*test, batch_size=512, verbose=0, return_dict=True)["accuracy"])
        out["dense_equal_epochs"] = {"extra_epochs": extra, "test": acc,
                                     "drop_points_vs_it": [round(100 * (acc - r["test"]), 3) for r in seeds]}
    return out
