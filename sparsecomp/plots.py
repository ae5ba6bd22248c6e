"""Pictures and an HTML page of a compression run: what a person wants to look at.

Plots (PNG, matplotlib's Agg backend, nothing shown on screen):
- ``histograms.png``: per pruned layer, the weight histogram before (dense) and after (surviving
  weights), with the final threshold ``±q·σ`` marked — the picture the std rule rests on;
- ``accuracy.png``: validation metric against pruning steps, accepted and reverted steps, the
  dense baseline and the allowed drop;
- ``density.png``: per-layer density of the kernels after pruning;
- ``bytes.png``: bytes per layer, dense against stored.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .storage import format_bytes

__all__ = ["write_report"]


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path) -> None:
    """Lay out, write the PNG and free the figure (matplotlib keeps figures alive otherwise)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(before: dict, after: dict, thresholds: dict, path) -> None:
    plt = _plt()
    names = list(before)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        b = before[name].ravel()
        a = after[name].ravel()
        a = a[a != 0]
        t = thresholds.get(name)
        lim = max(float(np.percentile(np.abs(b), 99.9)), float(np.abs(a).max()) if a.size else 0.0, t or 0.0)
        lim = lim * 1.05 or 1.0
        bins = np.linspace(-lim, lim, 121)
        ax.hist(b, bins=bins, color="#9db4d6", label=f"before ({b.size:,})")
        ax.hist(a, bins=bins, color="#d6613e", alpha=0.85, label=f"after ({a.size:,} kept)")
        if t:
            for s in (-t, t):
                ax.axvline(s, color="k", ls="--", lw=1)
        ax.set_title(f"{name}" + (f"  threshold ±{t:.3g}" if t else ""), fontsize=10)
        ax.legend(fontsize=8)
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Weight histograms before and after pruning (log counts)")
    _save(plt, fig, path)


def plot_accuracy(history, path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    steps = history.steps
    xs = np.arange(1, len(steps) + 1)
    vals = [s.val_metric for s in steps]
    ax.plot(xs, vals, "-", color="#777", lw=1)
    for x, s in zip(xs, steps):
        ax.plot(x, s.val_metric, "o" if s.accepted else "x", color="#2a7" if s.accepted else "#c33", ms=6)
    ax.axhline(history.baseline, color="#236", lw=1, label=f"dense baseline {history.baseline:.4f}")
    ax.axhline(history.baseline - history.max_drop, color="#236", ls=":", lw=1,
               label=f"allowed drop {history.max_drop:g}")
    ax2 = ax.twinx()
    ax2.plot(xs, [s.total_sparsity for s in steps], color="#d6613e", lw=1.5, label="sparsity (all kernels)")
    ax2.set_ylabel("sparsity")
    ax2.set_ylim(0, 1)
    # separators: between groups (std schedule) or between cycles over the layers (correlation)
    cycles = [(getattr(s, "extra", None) or {}).get("cycle") for s in steps]
    marks = cycles if all(c is not None for c in cycles) and steps else [s.group for s in steps]
    for i in range(1, len(marks)):
        if marks[i] != marks[i - 1]:
            ax.axvline(i + 0.5, color="#aaa", lw=1)
    ax.set_xlabel("pruning step (o accepted, x reverted); lines: " +
                  ("cycles" if marks is cycles else "groups"))
    ax.set_ylabel(f"validation {history.metric}")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.set_title("Validation metric and sparsity along the schedule")
    _save(plt, fig, path)


def plot_rounds(history, path) -> None:
    """Structured pruning: validation metric and parameters after each round."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    rounds = history.rounds
    xs = np.arange(1, len(rounds) + 1)
    ax.plot(xs, [r.val_metric for r in rounds], "-", color="#777", lw=1)
    for x, r in zip(xs, rounds):
        ax.plot(x, r.val_metric, "o" if r.accepted else "x", color="#2a7" if r.accepted else "#c33", ms=6)
    ax.axhline(history.baseline, color="#236", lw=1, label=f"dense baseline {history.baseline:.4f}")
    ax.axhline(history.baseline - history.max_drop, color="#236", ls=":", lw=1,
               label=f"allowed drop {history.max_drop:g}")
    ax2 = ax.twinx()
    ax2.plot(xs, [r.params for r in rounds], color="#d6613e", lw=1.5, label="parameters")
    ax2.set_ylabel("parameters")
    ax.set_xlabel("round (o accepted, x reverted)")
    ax.set_ylabel(f"validation {history.metric}")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.set_title("Validation metric and parameters along the rounds")
    _save(plt, fig, path)


def plot_density(sparsity: dict, path) -> None:
    plt = _plt()
    names = list(sparsity)
    dens = [1 - sparsity[n] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.6))
    bars = ax.bar(names, dens, color="#d6613e")
    for b, d in zip(bars, dens):
        ax.text(b.get_x() + b.get_width() / 2, d, f"{d:.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("density (kept / all)")
    ax.set_ylim(0, max(dens + [0.05]) * 1.2)
    ax.set_title("Kernel density per layer after pruning")
    _save(plt, fig, path)


def plot_bytes(storage, path) -> None:
    plt = _plt()
    rows = storage.by_layer("weights")
    names = [r["layer"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names)), 3.8))
    ax.bar(x - 0.2, [r["dense_bytes"] for r in rows], 0.4, label="dense", color="#9db4d6")
    ax.bar(x + 0.2, [r["stored_bytes"] for r in rows], 0.4, label="stored", color="#d6613e")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("bytes (log)")
    ax.legend()
    ax.set_title("Bytes per layer: dense vs stored")
    _save(plt, fig, path)


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out_dir, *, history=None, storage=None, before=None, after=None, summary=None,
                 layers=None) -> Path:
    """Write the PNG plots and ``report.html`` into ``out_dir``; returns the HTML path.

    Args:
        history: a :class:`~sparsecomp.pruning.PruneHistory` (accuracy plot, steps table).
        storage: a :class:`~sparsecomp.report.StorageReport` of the written file (bytes plot, table).
        before, after: ``{layer: kernel}`` before and after pruning (histograms).
        summary: ``{label: value}`` shown first (accuracies, sizes, ratios).
        layers: rows for a per-layer table like Han et al.'s (dicts with the same keys).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><meta charset='utf-8'><title>sparsecomp report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}</style>",
             "<h1>sparsecomp compression report</h1>"]
    if summary:
        parts.append(_table(["", "value"], list(summary.items())))
    if layers:
        keys = list(layers[0])
        parts.append("<h2>Per layer</h2>" + _table(keys, [[r[k] for k in keys] for r in layers]))
    steps = getattr(history, "steps", None)
    if before and after:
        thresholds = {}
        for s in (history.accepted_steps() if steps is not None else []):
            thresholds.update(s.thresholds)
        plot_histograms(before, after, thresholds, out / "histograms.png")
        parts.append("<h2>Weight histograms</h2><img src='histograms.png'>")
    if history is not None and getattr(history, "rounds", None):
        plot_rounds(history, out / "accuracy.png")
        parts.append("<h2>Rounds</h2><img src='accuracy.png'>")
        rows = [[r.round, r.criterion, r.channels_removed, f"{r.params:,}", f"{r.val_metric:.4f}", f"{r.drop:+.4f}",
                 "accepted" if r.accepted else "reverted", f"{r.seconds:.1f}"] for r in history.rounds]
        parts.append(_table(["round", "criterion", "channels removed", "parameters", f"val {history.metric}", "drop",
                             "decision", "s"], rows))
    if steps:
        plot_accuracy(history, out / "accuracy.png")
        plot_density(history.final_sparsity, out / "density.png")
        parts.append("<h2>Schedule</h2><img src='accuracy.png'><img src='density.png'>")
        rows = [[s.group, f"{s.q:.2f}", f"{s.total_sparsity:.2%}", f"{s.val_metric:.4f}", f"{s.drop:+.4f}",
                 "accepted" if s.accepted else "reverted", f"{s.seconds:.1f}"] for s in history.steps]
        parts.append(_table(["group", "q", "sparsity", f"val {history.metric}", "drop", "decision", "s"], rows))
    if storage is not None:
        plot_bytes(storage, out / "bytes.png")
        parts.append("<h2>Storage</h2><img src='bytes.png'>")
        rows = [[r.path, r.layer, "x".join(map(str, r.shape)), f"{r.params:,}", f"{r.nnz:,}", f"{r.density:.2%}",
                 r.encoding, format_bytes(r.dense_bytes), format_bytes(r.stored_bytes),
                 ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(r.streams.items())),
                 f"{r.bytes_per_nonzero:.2f}" if r.bytes_per_nonzero else "-", f"{r.ratio:.2f}x"]
                for r in storage.records]
        parts.append(_table(["tensor", "layer", "shape", "params", "nnz", "density", "codec", "dense",
                             "stored", "streams", "B/nnz", "ratio"], rows))
        parts.append(f"<pre>{html.escape(storage.format_table().split(chr(10) + chr(10))[-1])}</pre>")
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    if history is not None:
        (out / "history.json").write_text(history.to_json())
    if storage is not None:
        (out / "storage.json").write_text(storage.to_json())
    if summary:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return page
