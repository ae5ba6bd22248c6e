"""The one call most users want: prune → remove dead units → save → report with plots.

The test data, when given, is read once, after the final model exists, and only to report: no
decision depends on it (a test replaces it by noise and gets the same decisions and the same file).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .distribute import guard_collectives
from .masks import kernel_of, prunable_layers
from .methods import METHODS
from .model_io import clone_model, save
from .storage import StorageReport
from .surgery import remove_dead_units

__all__ = ["compress", "CompressionResult", "keras_dense_bytes", "layer_table"]


def keras_dense_bytes(model) -> int:
    """Size of Keras' own ``.keras`` file of ``model`` saved without optimizer state (measured)."""
    clone = clone_model(model)   # uncompiled: no optimizer variables are written
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "dense.keras"
        clone.save(p)
        return p.stat().st_size


@dataclass
class CompressionResult:
    """What :func:`compress` produced: the final (smaller) model, the pruned one before dead-unit
    removal, the pruning history, the removal plans, the storage report, a summary of measured
    figures, the per-layer table, and the HTML report's path."""

    model: object
    pruned_model: object
    history: object
    plans: list
    storage: StorageReport
    quantize_history: object = None
    summary: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    report_html: Path | None = None


def _nonzeros(layer) -> int:
    return sum(int(np.count_nonzero(np.asarray(v.numpy()))) for v in layer.weights) if layer is not None else 0


def _size(layer) -> int:
    return sum(int(np.prod(v.shape)) for v in layer.weights) if layer is not None else 0


def layer_table(dense, pruned, small) -> list[dict]:
    """Per prunable layer, weights and biases: dense, non-zero after pruning, after dead-unit
    removal (shape, size, non-zeros) — each column counted the same way in every row and the total."""
    rows = []
    finals = {layer.name: layer for layer in small.layers}
    names = [layer.name for layer in prunable_layers(dense)]
    for name in names:
        d, p, s = dense.get_layer(name), pruned.get_layer(name), finals.get(name)
        k = kernel_of(s) if s is not None else None
        rows.append({"layer": name, "weights": _size(d), "non-zero after pruning": _nonzeros(p),
                     "kept %": round(100 * _nonzeros(p) / max(_size(d), 1), 2),
                     "kernel before": "x".join(map(str, kernel_of(d).shape)),
                     "kernel after removal": "x".join(map(str, k.shape)) if k is not None else "-",
                     "weights after removal": _size(s), "non-zero after removal": _nonzeros(s)})
    total = {"layer": "total", "weights": sum(r["weights"] for r in rows),
             "non-zero after pruning": sum(r["non-zero after pruning"] for r in rows),
             "kernel before": "", "kernel after removal": "",
             "weights after removal": sum(r["weights after removal"] for r in rows),
             "non-zero after removal": sum(r["non-zero after removal"] for r in rows)}
    total["kept %"] = round(100 * total["non-zero after pruning"] / max(total["weights"], 1), 2)
    return rows + [total]


def _test_metric(model, test_data, metric):
    x, y = test_data
    return float(model.evaluate(x, y, batch_size=512, verbose=0, return_dict=True)[metric])


@guard_collectives
def compress(model, data, output, *, method: str = "std", test_data=None, report_dir=None, min_ratio: float = 1.0,
             level: int = 2, codecs=None, quantize=None, quantize_options=None, progress=None,
             **method_kwargs) -> CompressionResult:
    """Prune ``model``, remove dead units, (share weights,) and save it; report what it cost and saved.

    Args:
        model: the trained dense model (never modified).
        data: training data for fine-tuning, ``(x, y)`` or a dataset (validation carved from it).
        output: the ``.sparse.h5`` file to write.
        method: a name of :data:`sparsecomp.methods.METHODS` (``"std"``, ``"correlation"``,
            ``"structured"``).
        test_data: ``(x, y)`` read once, after the final model exists, only to *report* the dense
            and compressed test metric.
        report_dir: where to write the plots and ``report.html`` (skipped when ``None``).
        min_ratio, level, codecs: the size check's settings (see :func:`sparsecomp.save`).
        quantize: ``None`` (no weight sharing), bits per shared value (an int or ``{layer: bits}``)
            or ``"search"``: :func:`sparsecomp.quantize` after dead-unit removal, gated against the
            *dense* model's validation metric so both stages together stay within ``max_drop``.
        quantize_options: more keywords for :func:`sparsecomp.quantize` (``init``, ``min_bits``,
            ``max_bits``, ``epochs``, ``learning_rate``...); the fine-tuning settings default to
            the pruning's.
        **method_kwargs: passed to the method (its own settings, the fine-tuning settings,
            ``strategy``, ``checkpoint_dir``, ``resume``...).

    Returns:
        A :class:`CompressionResult`.
    """
    t0 = time.time()
    prune_fn = METHODS.get(method)
    metric = method_kwargs.get("metric", getattr(method_kwargs.get("tuning"), "metric", "accuracy"))
    pruned, history = prune_fn(model, data, progress=progress, **method_kwargs)
    small, plans = remove_dead_units(pruned)
    qhistory = None
    if quantize is not None:
        from .quantize import quantize as quantize_fn
        from .training import FineTuning
        shared_keys = {f for f in FineTuning.__dataclass_fields__}
        qkw = {k: v for k, v in method_kwargs.items() if k in shared_keys or k in ("validation_data", "strategy")}
        qkw.update(quantize_options or {})
        small, qhistory = quantize_fn(small, data, bits=quantize, reference=history.baseline, progress=progress, **qkw)
    storage = save(small, output, min_ratio=min_ratio, level=level, codecs=codecs)
    dense_test = pruned_test = None
    if test_data is not None:                 # the test set: once, after the final model exists
        from .model_io import load
        dense_test = _test_metric(_compiled_like(model, pruned), test_data, metric)
        stored = load(output, compile=False)  # the accuracy reported is the stored file's
        stored.compile_from_config(pruned.get_compile_config())
        pruned_test = _test_metric(stored, test_data, metric)
    keras_bytes = keras_dense_bytes(model)
    dense_params = int(model.count_params())
    layers = layer_table(model, pruned, small)
    total_nz = sum(int(np.count_nonzero(w)) for w in small.get_weights())
    summary = {
        "method": method,
        "dense parameters": dense_params,
        "non-zero parameters after": total_nz,
        "parameters after dead-unit removal": int(small.count_params()),
        "parameter reduction (dense / non-zero)": round(dense_params / max(total_nz, 1), 2),
        f"dense validation {metric}": round(history.baseline, 5),
        f"pruned validation {metric}": round(history.final_metric, 5),
        **({f"quantized validation {metric}": round(qhistory.final_metric, 5),
            "bits per layer": {n: v["bits"] for n, v in qhistory.layers.items()}} if qhistory is not None else {}),
        f"dense test {metric}": None if dense_test is None else round(dense_test, 5),
        f"compressed test {metric}": None if pruned_test is None else round(pruned_test, 5),
        "fine-tuning epochs": history.epochs + (qhistory.epochs if qhistory is not None else 0),
        "dead units removed": sum(p.n_units for p in plans),
        "Keras dense .keras bytes (no optimizer)": keras_bytes,
        ".sparse.h5 bytes": storage.file_bytes,
        "file ratio (Keras / sparse)": round(keras_bytes / storage.file_bytes, 2),
        "bytes per non-zero (all in)": round(storage.file_bytes / max(total_nz, 1), 3),
        "seconds": round(time.time() - t0, 1),
    }
    result = CompressionResult(model=small, pruned_model=pruned, history=history, plans=plans,
                               storage=storage, summary=summary, layers=layers, quantize_history=qhistory)
    if report_dir is not None:
        from .plots import write_report
        before = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in prunable_layers(model)}
        after = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in prunable_layers(pruned)}
        result.report_html = write_report(report_dir, history=history, storage=storage, before=before,
                                          after=after, summary=summary, layers=layers)
    return result


def _compiled_like(model, pruned):
    """A copy of ``model`` compiled like ``pruned``, to evaluate it without touching the caller's."""
    clone = clone_model(model)
    clone.compile_from_config(pruned.get_compile_config())
    return clone
