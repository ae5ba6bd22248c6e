"""One pruning (+ weight sharing) benchmark run over several seeds (the LeNet benchmarks share it).

For each seed:

1. ``sparsecomp.compress`` on the dense baseline with the script's pruning settings (data order and
   random states seeded): prune, remove dead units, save losslessly;
2. when the settings have ``quantize``: ``sparsecomp.quantize`` on that model (gated against the
   *dense* model's validation accuracy, so both stages together stay within ``max_drop``), saved;
3. the ablation, like Deep Compression's Table 1: the same models stored stage by stage — pruned
   but stored dense; + sparse positions with raw values; + entropy-coded streams (the lossless
   file); + weight sharing with raw codes; + entropy-coded codes (the final file);
4. reporting runs only, after the final models exist: the test set, read for the dense baseline,
   the stored pruned file and the stored quantized file. No decision depends on it.

Recorded per seed: every step (group, q, validation accuracy, decision, epochs, seconds), every
quantization trial, the dense baseline's validation and test accuracy, non-zeros, file bytes vs
Keras' own file, bytes per non-zero, HDF5 metadata bytes, codecs, per-layer table, times. Then,
once: the dense baseline trained on for as many more epochs as pruning and quantization used on
average (same data-order rule, Adam at the fine-tuning rate) — whether the baseline was
under-trained. Summary: mean, spread and worst seed of each headline figure.

Exploratory runs (choosing settings) never read the test set: they gate on the first half of the
5,000 held-out images and measure the other half ("dev"), which no decision saw.
"""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks.common import baseline, mnist, summary_stats, latest_ok


def _steps(history) -> list:
    if hasattr(history, "rounds"):
        return [{"round": r.round, "val": r.val_metric, "accepted": r.accepted, "epochs": r.epochs,
                 "seconds": round(r.seconds, 2), "params": r.params} for r in history.rounds]
    return [{"group": s.group, "q": s.q, "val": s.val_metric, "accepted": s.accepted, "epochs": s.epochs,
             "seconds": round(s.seconds, 2), "total_sparsity": s.total_sparsity,
             **({"pass": s.extra["pass"]} if "pass" in s.extra else {})} for s in history.steps]


def _compiled(model, like=None):
    from sparsecomp.model_io import clone_model
    m = clone_model(model)
    m.compile_from_config((like or model).get_compile_config())
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


def _nonzeros(model) -> int:
    return sum(int(np.count_nonzero(w)) for w in model.get_weights())


def ablation(pruned, quantized, out, keras_bytes: int, level: int = 2) -> list:
    """The stages' files, one row each: stage, which model ("pruned" / "quantized"), bytes, ratio to
    Keras' file, bytes per non-zero, codecs."""
    import sparsecomp
    rows = []
    nz_p = _nonzeros(pruned)

    def row(stage, path, kind, nz, **kw):
        rep = sparsecomp.save(pruned if kind == "pruned" else quantized, path, **kw)
        rows.append({"stage": stage, "model": kind, "bytes": rep.file_bytes, "nonzero": nz,
                     "ratio": round(keras_bytes / rep.file_bytes, 2), "bytes_per_nonzero": round(rep.file_bytes / nz, 3),
                     "codecs": rep.codecs(), "file": path.name})
    row("pruned, stored dense (float32, zeros included)", out / "a_dense.sparse.h5", "pruned", nz_p,
        level=1, codecs=("dense",))
    row("+ sparse positions (gap bytes), values raw", out / "b_gaps_raw.sparse.h5", "pruned", nz_p,
        level=1, codecs=("dense", "gaps"))
    row("+ entropy-coded streams (lossless file)", out / "c_lossless.sparse.h5", "pruned", nz_p, level=level)
    if quantized is not None:
        nz_q = _nonzeros(quantized)
        row("+ weight sharing, codes raw", out / "d_shared_raw.sparse.h5", "quantized", nz_q, level=1)
        row("+ entropy-coded codes and positions (final file)", out / "e_final.sparse.h5", "quantized", nz_q,
            level=level)
    return rows


def run_pruning(ctx, model_name: str) -> dict:
    import keras

    import sparsecomp
    s = dict(ctx.settings)
    train_epochs = s.pop("train_epochs")
    method = s.pop("method", "std")
    qset = s.pop("quantize", None)
    model, base_info = baseline(model_name, train_epochs, log=ctx.log)
    (x, y), test_loader = mnist(model)
    reporting = not ctx.exploratory
    test = ctx.test_split(test_loader) if reporting else None
    dev = None
    if not reporting:                 # gate on 2,500 held-out images, measure the other 2,500
        x, y, dev = x[:-2500], y[:-2500], (x[-2500:], y[-2500:])
        s["validation_split"] = 2500 / len(x)
    keras_bytes = None
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
                        f"({st.epochs} ep)" + (f" pass {st.extra['pass']}" if st.extra.get("pass") else ""))
            elif hasattr(st, "bits"):
                ctx.log(f"seed {seed} [{time.time() - t0:6.0f}s] quantize {st.layer:<6} {st.bits} bits (k={st.k}) "
                        f"val {st.val_metric:.4f} {'ok' if st.accepted else 'reverted'} ({st.epochs} ep)")
        res = sparsecomp.compress(model, (x, y), out / f"{model_name}.sparse.h5", method=method,
                                  report_dir=out / "report", progress=show, seed=seed, **s)
        prune_seconds = time.time() - t0
        sm = res.summary
        keras_bytes = sm["Keras dense .keras bytes (no optimizer)"]
        row = {"seed": seed, "prune_seconds": round(prune_seconds, 1), "steps": _steps(res.history),
               "baseline_val": res.history.baseline, "final_val": res.history.final_metric,
               "final_tuning": getattr(res.history, "final_tuning", []),
               "final_kept": getattr(res.history, "final_kept", 0),
               "passes": getattr(res.history, "passes", []),
               "epochs": res.history.epochs, "dense_params": sm["dense parameters"],
               "nonzero": sm["non-zero parameters after"], "reduction": sm["parameter reduction (dense / non-zero)"],
               "params_after_removal": sm["parameters after dead-unit removal"],
               "dead_units": sm["dead units removed"], "keras_bytes": keras_bytes,
               "file_bytes": sm[".sparse.h5 bytes"], "file_ratio": sm["file ratio (Keras / sparse)"],
               "bytes_per_nonzero": sm["bytes per non-zero (all in)"], "layers": res.layers,
               "metadata_bytes": res.storage.metadata_bytes,
               "codecs": res.storage.codecs(), "streams": res.storage.totals("weights")["streams"]}
        quantized = None
        if qset is not None:
            tq = time.time()
            q = dict(qset)
            quantized, qh = sparsecomp.quantize(res.model, (x, y), reference=res.history.baseline, progress=show,
                                                seed=seed, validation_split=s["validation_split"], **q)
            row.update(quantize_seconds=round(time.time() - tq, 1), quantize_val=qh.final_metric,
                       quantize_epochs=qh.epochs, bits=qh.layers,
                       trials=[{"layer": t.layer, "bits": t.bits, "k": t.k, "val": t.val_metric, "accepted": t.accepted,
                                "epochs": t.epochs, "seconds": round(t.seconds, 2)} for t in qh.trials])
        rows = ablation(res.model, quantized, out, keras_bytes, level=s.get("level", 2))
        final = rows[-1]
        row.update(seconds=round(time.time() - t0, 1), ablation=rows,
                   final_bytes=final["bytes"], final_ratio=final["ratio"],
                   final_bytes_per_nonzero=final["bytes_per_nonzero"])
        stored = {"pruned": out / "c_lossless.sparse.h5", "quantized": out / "e_final.sparse.h5"}
        if reporting:                 # the test set: after the final models exist, stored files as loaded
            def acc(m):
                return float(m.evaluate(*test, batch_size=512, verbose=0, return_dict=True)["accuracy"])
            dense_test = acc(_compiled(model))
            row.update(dense_test=dense_test)
            for kind in ("pruned", "quantized") if quantized is not None else ("pruned",):
                loaded = sparsecomp.load(stored[kind], compile=False)
                loaded.compile_from_config(model.get_compile_config())
                row[f"{kind}_test"] = acc(loaded)
                row[f"{kind}_drop_points"] = round(100 * (dense_test - row[f"{kind}_test"]), 3)
            row["test"] = row["quantized_test" if quantized is not None else "pruned_test"]
            row["drop_points"] = round(100 * (dense_test - row["test"]), 3)
        else:
            def acc(m):
                return float(m.evaluate(*dev, batch_size=512, verbose=0, return_dict=True)["accuracy"])
            dense_dev = acc(_compiled(model))
            row.update(dense_dev=dense_dev)
            for kind, m in (("pruned", res.model), ("quantized", quantized)):
                if m is not None:
                    row[f"{kind}_dev_drop_points"] = round(100 * (dense_dev - acc(_compiled(m, model))), 3)
            row["dev_drop_points"] = row["quantized_dev_drop_points" if quantized is not None
                                         else "pruned_dev_drop_points"]
        seeds.append(row)
        ctx.partial.append(row)
        ctx.log(f"seed {seed}: {row['reduction']}x fewer non-zeros, lossless file {row['file_ratio']}x "
                f"({row['bytes_per_nonzero']} B/nnz), final file {row['final_ratio']}x "
                f"({row['final_bytes_per_nonzero']} B/nnz), {row['seconds']} s"
                + (f", test drop pruned {row['pruned_drop_points']} final {row['drop_points']}" if reporting else
                   f", dev drop pruned {row['pruned_dev_drop_points']} final {row['dev_drop_points']}"))
    keys = ["reduction", "file_ratio", "bytes_per_nonzero", "metadata_bytes", "final_ratio", "final_bytes_per_nonzero",
            "prune_seconds", "seconds", "epochs"]
    out = {"model": model_name, "method": method, "baseline": base_info, "seeds": seeds,
           "summary": {k: summary_stats([r[k] for r in seeds]) for k in keys}}
    drops = ["pruned_drop_points", "drop_points"] if reporting else ["pruned_dev_drop_points", "dev_drop_points"]
    for k in drops:
        out["summary"][k] = summary_stats([r[k] for r in seeds])
    if reporting:
        extra = int(round(np.mean([r["epochs"] + r.get("quantize_epochs", 0) for r in seeds])))
        dense_more = continue_dense(model, (x, y), extra, s.get("learning_rate") or 1e-3, seed=0)
        acc = float(dense_more.evaluate(*test, batch_size=512, verbose=0, return_dict=True)["accuracy"])
        out["dense_equal_epochs"] = {"extra_epochs": extra, "test": acc,
                                     "drop_points_vs_it": [round(100 * (acc - r["test"]), 3) for r in seeds]}
    return out


# -- rendering (benchmarks/render.py) ---------------------------------------------------------------

TARGETS = {"lenet5": {"reduction": 100, "file_ratio": 50, "final_ratio": 150, "minutes": 20, "total_minutes": 25},
           "lenet_300_100": {"reduction": 50, "file_ratio": 35, "final_ratio": 70, "minutes": 20, "total_minutes": 25}}
LABELS = {"lenet5": "LeNet-5", "lenet_300_100": "LeNet-300-100"}


def _get(s, key, default=None):
    v = s.get(key)
    return v["mean"] if isinstance(v, dict) else (default if v is None else v)


def headline(e: dict) -> str:
    r = e.get("results") or {}
    s = r.get("summary", {})
    if not s:
        return ""
    parts = [f"{_get(s, 'reduction'):.1f}× fewer non-zeros", f"lossless file {_get(s, 'file_ratio'):.1f}×"]
    if "final_ratio" in s and any("quantize_seconds" in sd for sd in r.get("seeds", [])):
        parts.append(f"with weight sharing {_get(s, 'final_ratio'):.1f}× ({_get(s, 'final_bytes_per_nonzero'):.2f} B/nnz)")
    for k, what in (("drop_points", "test drop"), ("dev_drop_points", "dev drop")):
        if k in s:
            parts.append(f"{what} {_get(s, k):.2f} (worst {s[k]['max']:.2f})" if isinstance(s[k], dict)
                         else f"{what} {s[k]}")
    n = len(r.get("seeds", []))
    return ", ".join(parts) + f"; {n} seed{'s' if n != 1 else ''}"


def report(entries: list, model_name: str) -> str:
    from benchmarks._legacy import report as legacy_report
    from benchmarks.render import fmt_stats, run_ref
    name = f"prune_{model_name}"
    e = latest_ok(entries)
    lines = []
    if e is None:
        lines.append("No reporting run yet: the figures of this benchmark are not published. "
                     "Exploratory runs are listed below.")
    else:
        r, st = e["results"], e["settings"]
        s = r["summary"]
        t = TARGETS[model_name]
        quant = any("quantize_seconds" in sd for sd in r["seeds"])
        lines += [f"Latest reporting run: {run_ref(name, entries, e)}, {e['started'][:16]}, `{e['command']}`.", "",
                  "Settings (fixed in the script before the run): `" + json.dumps(st, sort_keys=True) + "`.", "",
                  f"Dense baseline: `models.zoo.{model_name}` trained {r['baseline'].get('epochs')} epochs "
                  f"(validation accuracy {r['baseline'].get('val_accuracy', float('nan')):.4f}); test accuracy "
                  f"{r['seeds'][0]['dense_test']:.4f}.", "",
                  "| seed | non-zeros | fewer non-zeros | lossless file | B/nnz | metadata | "
                  + ("with weight sharing | B/nnz | bits | " if quant else "")
                  + "test: pruned (drop) | " + ("final (drop) | " if quant else "") + "prune min | total min |",
                  "| --- " * (10 + (4 if quant else 0)) + "|"]
        for sd in r["seeds"]:
            bits = ", ".join(f"{k} {v['bits']}" for k, v in (sd.get("bits") or {}).items())
            lines.append(
                f"| {sd['seed']} | {sd['nonzero']:,} | {sd['reduction']:.1f}× | {sd['file_ratio']:.1f}× "
                f"({sd['file_bytes']:,} B) | {sd['bytes_per_nonzero']:.2f} | {sd['metadata_bytes']:,} B | "
                + (f"{sd['final_ratio']:.1f}× ({sd['final_bytes']:,} B) | {sd['final_bytes_per_nonzero']:.2f} | {bits} | "
                   if quant else "")
                + f"{sd['pruned_test']:.4f} ({sd['pruned_drop_points']:+.2f}) | "
                + (f"{sd['quantized_test']:.4f} ({sd['quantized_drop_points']:+.2f}) | " if quant else "")
                + f"{sd['prune_seconds'] / 60:.1f} | {sd['seconds'] / 60:.1f} |")
        lines += ["", f"Mean ± std (min–max) over {len(r['seeds'])} seeds: **{fmt_stats(s['reduction'], 1, '×')}** "
                  f"fewer non-zeros; lossless file **{fmt_stats(s['file_ratio'], 1, '×')}** smaller than Keras' "
                  f"`.keras` at {fmt_stats(s['bytes_per_nonzero'], 2)} bytes per non-zero (metadata "
                  f"{fmt_stats(s['metadata_bytes'], 0)} B); test drop after pruning "
                  f"**{fmt_stats(s['pruned_drop_points'], 2)}** points"
                  + (f"; with weight sharing the file is **{fmt_stats(s['final_ratio'], 1, '×')}** smaller "
                     f"({fmt_stats(s['final_bytes_per_nonzero'], 2)} B/nnz), final test drop "
                     f"**{fmt_stats(s['drop_points'], 2)}** points" if quant else "")
                  + f"; pruning {fmt_stats({k: v / 60 for k, v in s['prune_seconds'].items() if k != 'n'} | {'n': s['prune_seconds']['n']}, 1)} min, "
                  f"whole pipeline {fmt_stats({k: v / 60 for k, v in s['seconds'].items() if k != 'n'} | {'n': s['seconds']['n']}, 1)} min.", ""]
        checks = [("fewer non-zeros", s["reduction"]["mean"] >= t["reduction"], f"≥ {t['reduction']}×"),
                  ("lossless file", s["file_ratio"]["mean"] >= t["file_ratio"], f"≥ {t['file_ratio']}×"),
                  ("bytes per non-zero (lossless)", s["bytes_per_nonzero"]["max"] <= 4.5, "≤ 4.5"),
                  ("mean test drop", s["drop_points"]["mean"] <= 0.2, "≤ 0.2 points"),
                  ("worst seed's drop", s["drop_points"]["max"] <= 0.3, "≤ 0.3 points"),
                  ("pruning time", s["prune_seconds"]["max"] <= 60 * t["minutes"], f"≤ {t['minutes']} min")]
        if model_name == "lenet5":
            checks.append(("HDF5 metadata", s["metadata_bytes"]["max"] <= 3072, "≤ 3 KB"))
        if quant:
            checks += [("file with weight sharing", s["final_ratio"]["mean"] >= t["final_ratio"],
                        f"≥ {t['final_ratio']}×"),
                       ("whole pipeline", s["seconds"]["max"] <= 60 * t["total_minutes"], f"≤ {t['total_minutes']} min")]
        lines += ["Targets of issues #13/#14/#15: " + "; ".join(f"{what} {goal}: **{'met' if ok else 'NOT met'}**"
                                                               for what, ok, goal in checks) + ".", ""]
        de = r.get("dense_equal_epochs")
        if de:
            lines += [f"Dense baseline trained {de['extra_epochs']} more epochs (as many as the fine-tuning used, on "
                      f"average): test {de['test']:.4f}; the final models' drop against it: "
                      + ", ".join(f"{v:+.2f}" for v in de["drop_points_vs_it"]) + " points.", ""]
        abl = [sd["ablation"] for sd in r["seeds"] if sd.get("ablation")]
        if abl:
            lines += ["Ablation (as Deep Compression's Table 1; each stage's file saved from the same models, mean "
                      "over seeds; accuracy = test accuracy of the stored file):", "",
                      "| stage | bytes | vs Keras' `.keras` | bytes per non-zero | test accuracy |",
                      "| --- | --- | --- | --- | --- |",
                      f"| dense model, Keras' own `.keras` | {r['seeds'][0]['keras_bytes']:,} | 1.0× | "
                      f"{r['seeds'][0]['keras_bytes'] / r['seeds'][0]['dense_params']:.2f} (per parameter) | "
                      f"{r['seeds'][0]['dense_test']:.4f} |"]
            for i, row in enumerate(abl[0]):
                vals = [a[i] for a in abl]
                acc = np.mean([sd["pruned_test" if row["model"] == "pruned" else "quantized_test"] for sd in r["seeds"]])
                lines.append(f"| {row['stage']} | {np.mean([v['bytes'] for v in vals]):,.0f} | "
                             f"{np.mean([v['ratio'] for v in vals]):.1f}× | "
                             f"{np.mean([v['bytes_per_nonzero'] for v in vals]):.2f} | {acc:.4f} |")
            lines.append("")
        gaps = validation_gaps(entries)
        if gaps:
            lines += [gaps, ""]
        lines.append(f"![validation accuracy along the schedule](results/{name}.png)")
    legacy = legacy_report(name, entries)
    if legacy:
        lines += ["", legacy]
    return "\n".join(lines)


def validation_gaps(entries: list) -> str:
    """How far the held-out validation split (every decision's data) predicted the accuracy drop on
    data no decision saw, over every finished run's seeds: the test drop minus the validation drop
    in reporting runs, the dev drop minus the validation drop in exploratory runs (whose dev
    images come from the training set, as the validation images do). Smoke tests are left out."""
    from benchmarks.render import fmt_stats
    rows = {"test": {"pruned": [], "shared": []}, "dev": {"pruned": [], "shared": []}}
    for e in entries:
        if e.get("status") != "ok" or not (e.get("results") or {}).get("seeds") or \
                "smoke test" in (e.get("label") or ""):
            continue
        kind = "dev" if e.get("exploratory") else "test"
        for sd in e["results"]["seeds"]:
            base = sd.get("baseline_val")
            pruned = sd.get("pruned_dev_drop_points" if kind == "dev" else "pruned_drop_points")
            if base is None or pruned is None or sd.get("final_val") is None:
                continue
            rows[kind]["pruned"].append(pruned - 100 * (base - sd["final_val"]))
            final = sd.get("dev_drop_points" if kind == "dev" else "drop_points")
            if sd.get("quantize_val") is not None and final is not None:
                rows[kind]["shared"].append(final - 100 * (base - sd["quantize_val"]))
    parts = []
    for kind, what in (("test", "test drop (reporting runs; MNIST's test images are by other writers than its "
                                "training images)"),
                       ("dev", "dev drop (exploratory runs, held-out training images)")):
        for stage, label in (("pruned", "after pruning"), ("shared", "after weight sharing")):
            v = rows[kind][stage]
            if len(v) >= 2:
                parts.append(f"{what} minus validation drop {label}: {fmt_stats(summary_stats(v), 2)} points "
                             f"over {len(v)} seeds")
    if not parts:
        return ""
    return ("How well the validation gate predicts unseen data, every finished run's seeds (computed from the "
            "records, smoke tests left out): " + "; ".join(parts) + ". A positive gap on test but none on dev "
            "would mean the validation split (carved from the training set) is not overfitted by the many decisions made on it, while "
            "the test images differ from it.")


def glance(entries: list, model_name: str) -> list:
    from benchmarks.render import fmt_stats, run_ref
    e = latest_ok(entries)
    name = f"prune_{model_name}"
    if e is None:
        return [(f"{LABELS[model_name]}, MNIST", f"no reporting run yet (exploratory and failed runs: "
                 f"`results/prune_{model_name}.json`, see RESULTS.md)")]
    r = e["results"]
    s = r["summary"]
    quant = any("quantize_seconds" in sd for sd in r["seeds"])
    text = (f"{fmt_stats(s['reduction'], 1, '×')} fewer non-zeros; lossless `.sparse.h5` "
            f"{_get(s, 'file_ratio'):.1f}× smaller than Keras' `.keras` ({_get(s, 'bytes_per_nonzero'):.2f} B/nnz); "
            f"test {r['seeds'][0]['dense_test']:.2%} → drop {fmt_stats(s['pruned_drop_points'], 2)} points")
    if quant:
        text += (f"; with trained weight sharing {_get(s, 'final_ratio'):.1f}× ({_get(s, 'final_bytes_per_nonzero'):.2f} "
                 f"B/nnz), drop {fmt_stats(s['drop_points'], 2)}")
    text += f"; {_get(s, 'seconds') / 60:.0f} min per seed, {len(r['seeds'])} seeds ({run_ref(name, entries, e)})"
    return [(f"{LABELS[model_name]}, MNIST", text)]


def plot(entries: list, out_dir, model_name: str) -> None:
    e = latest_ok(entries)
    if e is None:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for sd in e["results"]["seeds"]:
        steps = [st for st in sd["steps"] if "total_sparsity" in st]
        ax.plot([100 * st["total_sparsity"] for st in steps], [100 * st["val"] for st in steps], marker="o",
                ms=3, label=f"seed {sd['seed']}")
        ax.axhline(100 * (sd["baseline_val"] - e["settings"].get("max_drop", 0.002)), color="grey", lw=0.6, ls="--")
    ax.set_xlabel("kernel weights pruned (%)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{LABELS[model_name]}: every step (reverted ones included); dashed: the gate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"prune_{model_name}.png", dpi=110)
    plt.close(fig)


def entry_points(model_name: str):
    """The runner's hooks (run, report, glance, plot) for one model's pruning benchmark module."""
    return (lambda ctx: run_pruning(ctx, model_name),
            lambda entries: report(entries, model_name),
            lambda entries: glance(entries, model_name),
            lambda entries, out_dir: plot(entries, out_dir, model_name))
