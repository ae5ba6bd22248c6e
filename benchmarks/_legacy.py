"""Rendering of the records written before the runner existed (one-off scripts, some since
removed or rewritten). They stay published, labelled ``legacy``, with the command that wrote them;
where a later runner-recorded run supersedes one, its section says so."""

from __future__ import annotations

TITLES = {
    "break_even": "CSR break-even density (format version 1; script removed with storage v2)",
    "correlation_lenet5": "correlation pruning on LeNet-5 vs std-threshold at the same epoch budget",
    "structured": "structured pruning: criteria on LeNet-5 and a BN CNN, TLT on a ResNet",
    "vgg19_finetune": "one VGG19 pruning step with fine-tuning: epoch time with masks vs without",
    "fuzz_mutate": "hand-assembled fuzz record (mutate), before the runner",
    "fuzz_raw": "hand-assembled fuzz record (raw), before the runner",
    "fuzz_rawh5": "hand-assembled fuzz record (rawh5), before the runner",
}

__all__ = ["title", "knows", "report", "headline"]


def title(name: str) -> str:
    return TITLES.get(name, "records")


def knows(name: str) -> bool:
    return name in TITLES or name in ("prune_lenet5", "prune_lenet_300_100", "vgg19_io")


def _pct(v):
    return f"{v:.2f}%" if isinstance(v, (int, float)) else "?"


def headline(name: str, e: dict) -> str:
    """One line of figures for a legacy entry."""
    if "param_reduction" in e:
        return (f"{e['param_reduction']}× fewer non-zeros, file {e['file_ratio']}×, test drop "
                f"{e['accuracy_drop_points']} points (one seed, format v1)")
    if name == "break_even":
        return f"{len(e.get('cases', []))} cases, all confirmed: {e.get('all_confirmed')}"
    if name.startswith("fuzz_"):
        return (f"{e.get('mode')}: {e.get('inputs')} inputs, crashes {e.get('crashes')}, hangs {e.get('hangs')}, "
                f"silent corruptions {e.get('silent_corruptions')} — assembled by hand, no script wrote this file")
    if name == "correlation_lenet5":
        c, s = e.get("correlation", {}), e.get("std", {})
        return (f"correlation: {c.get('pruned_percent', '?')}% pruned, drop {c.get('drop_points', '?')}; "
                f"std at the same budget: {s.get('pruned_percent', '?')}%, drop {s.get('drop_points', '?')}")
    if name == "vgg19_io":
        return f"{len(e.get('rows', []))} sparsities, one measurement per cell, Keras always first (format v1)"
    if name == "vgg19_finetune":
        return f"{e.get('strategy')}: epoch with masks / without = {e.get('mask_epoch_ratio')}"
    if name == "structured":
        return f"{len(e.get('criteria_rows', []))} criteria rows, {e.get('train_images')} training images"
    return ""


def report(name: str, entries: list) -> str:
    legacy = [e for e in entries if "benchmark" not in e]
    if not legacy:
        return ""
    if name in ("prune_lenet5", "prune_lenet_300_100"):
        return (f"{len(legacy)} legacy entries (format version 1, one seed each, written by the removed "
                "`benchmarks/prune_lenet.py`) precede the runner's; they are listed with the rest below and "
                "superseded by the reporting runs above.")
    if name.startswith("fuzz_"):
        return ("This file was **assembled by hand** from fuzzer output (no script wrote it; it has no hang count "
                "from libFuzzer and no exact command for the statistics). It is kept as it was; the runs recorded "
                "by `python -m benchmarks fuzz` in `fuzz.json` supersede it.")
    if name == "vgg19_io":
        return ("Its legacy entries measured format version 1 with one measurement per cell and Keras' side "
                "always first (an ordering artifact: Keras' first save took 4.47 s vs ~2.2 s elsewhere); the "
                "runner's runs above replace them.")
    lines = [f"{len(legacy)} legacy entr{'y' if len(legacy) == 1 else 'ies'}, each written by the command shown "
             "(an earlier one-off script). Their figures, as recorded:", ""]
    for i, e in enumerate(legacy, 1):
        lines.append(f"{i}. `{e.get('command', '')}` ({e.get('date', '')}): " + _scalars(e))
    return "\n".join(lines)


def _scalars(e: dict, depth: int = 0) -> str:
    parts = []
    for k, v in e.items():
        if k in ("command", "date", "machine", "report", "plot"):
            continue
        if isinstance(v, dict) and depth == 0:
            inner = _scalars(v, 1)
            if inner:
                parts.append(f"{k} {{{inner}}}")
        elif isinstance(v, (int, float, str, bool)) and not isinstance(v, str) or (isinstance(v, str) and len(v) < 40):
            parts.append(f"{k} {v}")
    return "; ".join(parts)[:900]


def glance(name: str, entries: list) -> list:
    """README rows for the peers' legacy records (one seed each; figures as recorded)."""
    ref = f"`results/{name}.json`, legacy, one seed"
    if name == "correlation_lenet5":
        runs = [e for e in entries if "correlation" in e]
        if not runs:
            return []
        c, s = runs[-1]["correlation"], runs[-1]["std"]
        return [("correlation pruning, LeNet-5", f"{c['pruned_percent']}% of weights pruned, test drop "
                 f"{c['drop_points']} points (paper: 94%); std-threshold at the same epoch budget: "
                 f"{s['pruned_percent']}%, drop {s['drop_points']} ({ref})")]
    if name == "structured":
        runs = [e for e in entries if e.get("criteria_rows")]
        if not runs:
            return []
        e = runs[-1]
        row = next((r for r in e["criteria_rows"] if r["model"] == "lenet5" and r["criterion"] == "l1"
                    and r["fraction"] == 0.5), None)
        inf = e.get("inference", {}).get("lenet5", {}).get("batch_256", {})
        if row is None:
            return []
        return [("structured, LeNet-5", f"L1, half the filters/units of every layer, {e['epochs']} retraining "
                 f"epoch: {row['param_reduction']}× fewer parameters, test drop {row['drop_points']} points, "
                 f"batch-256 inference {inf.get('pruned_over_dense', '?')}× the dense time ({ref})")]
    if name == "vgg19_finetune":
        runs = [e for e in entries if "mask_epoch_ratio" in e]
        if not runs:
            return []
        parts = [f"{e['mask_epoch_ratio']:.2f}× ({e.get('strategy') or 'one device'})" for e in runs]
        return [("VGG19 fine-tuning", f"a {runs[-1]['params'] / 1e6:.0f}M-parameter VGG19 epoch with masks held "
                 f"costs {', '.join(parts)} the epoch without ({ref})")]
    return []
