"""The one call most users want: prune, remove dead units, save sparse, report with plots."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadArgumentError
from .masks import kernel_of, prunable_layers
from .model_io import save
from .model_io import clone_model
from .pruning import PruneHistory, prune
from .storage import StorageReport
from .surgery import remove_dead_units

__all__ = ["compress", "CompressionResult", "keras_dense_bytes", "mnist_for"]


def keras_dense_bytes(model) -> int:
    """Size of Keras' own ``.keras`` file of ``model`` saved without optimizer state (measured)."""
    clone = clone_model(model)   # uncompiled: no optimizer variables are written
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "dense.keras"
        clone.save(p)
        return p.stat().st_size


def mnist_for(model, mnist_dir=None):
    """MNIST shaped for ``model``'s input: ``((x, y), (x_test, y_test))``, float32 in [0, 1]."""
    from .data import load_mnist
    (x, y), (xt, yt) = load_mnist(mnist_dir)
    shape = tuple(model.inputs[0].shape[1:])
    x = (x.astype("float32") / 255.0).reshape((-1,) + shape)
    xt = (xt.astype("float32") / 255.0).reshape((-1,) + shape)
    return (x, y.astype("int64")), (xt, yt.astype("int64"))


@dataclass
class CompressionResult:
    model: object
    pruned_model: object
    history: PruneHistory
    plans: list
    storage: StorageReport
    summary: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    report_html: Path | None = None


def _test_metric(model, test_data, metric):
    if test_data is None:
        return None
    x, y = test_data
    return float(model.evaluate(x, y, batch_size=512, verbose=0, return_dict=True)[metric])


METHODS = ("std", "correlation")


def compress(model, data, output, *, method: str = "std", test_data=None, report_dir=None, min_ratio: float = 1.0,
             progress=None, **prune_kwargs) -> CompressionResult:
    """Prune ``model``, remove dead units, and save it sparse.

    Args:
        model: the trained dense model (never modified).
        data: training data for fine-tuning, ``(x, y)`` or a dataset (validation carved from it).
        output: the ``.sparse.h5`` file to write.
        method: ``"std"`` (:func:`sparsecomp.prune`, iterative std-threshold over frozen groups) or
            ``"correlation"`` (:func:`sparsecomp.prune_correlation`).
        test_data: ``(x, y)`` used only to *report* dense and compressed test accuracy.
        report_dir: where to write the plots and ``report.html`` (skipped when ``None``).
        min_ratio: the size check's setting (see :func:`sparsecomp.save`).
        **prune_kwargs: passed to the pruning function (groups, q0, step, max_drop, epochs...).

    Returns:
        A :class:`CompressionResult` with the final model, history, removal plans, storage report
        and a summary of the measured figures.
    """
    t0 = time.time()
    metric = prune_kwargs.get("metric", "accuracy")
    if method not in METHODS:
        raise BadArgumentError(f"`method` must be one of {list(METHODS)}. Received: {method!r}", rule="argument.method")
    if method == "correlation":
        from .correlation import prune_correlation
        pruned, history = prune_correlation(model, data, progress=progress, **prune_kwargs)
    else:
        pruned, history = prune(model, data, progress=progress, **prune_kwargs)
    small, plans = remove_dead_units(pruned)
    storage = save(small, output, min_ratio=min_ratio)
    dense_test = _test_metric(_compiled_like(model, pruned), test_data, metric) if test_data is not None else None
    pruned_test = _test_metric(small, test_data, metric)
    keras_bytes = keras_dense_bytes(model)
    dense_params = int(model.count_params())
    kernels_before = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in prunable_layers(model)}
    kernels_after = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in prunable_layers(pruned)}
    final_names = {layer.name: layer for layer in small.layers}
    layers = []
    for name, k in kernels_before.items():
        layer_before = model.get_layer(name)
        w_before = sum(int(np.prod(v.shape)) for v in layer_before.weights)
        nz_pruned = sum(int(np.count_nonzero(np.asarray(v.numpy()))) for v in pruned.get_layer(name).weights)
        small_layer = final_names.get(name)
        after_shape = tuple(kernel_of(small_layer).shape) if small_layer is not None else None
        nz_small = sum(int(np.count_nonzero(np.asarray(v.numpy()))) for v in small_layer.weights) if small_layer else 0
        w_small = sum(int(np.prod(v.shape)) for v in small_layer.weights) if small_layer else 0
        layers.append({"layer": name, "weights": w_before, "kept": nz_pruned,
                       "kept %": f"{100 * nz_pruned / w_before:.2f}",
                       "shape after removal": "x".join(map(str, after_shape)) if after_shape else "-",
                       "weights after removal": w_small, "non-zero after removal": nz_small,
                       "kernel before": "x".join(map(str, k.shape))})
    total_nz = sum(int(np.count_nonzero(w)) for w in small.get_weights())
    summary = {
        "dense parameters": dense_params,
        "non-zero parameters after": total_nz,
        "parameters after dead-unit removal": int(small.count_params()),
        "parameter reduction (dense / non-zero)": round(dense_params / max(total_nz, 1), 2),
        f"dense validation {metric}": round(history.baseline, 5),
        f"pruned validation {metric}": round(history.final_metric, 5),
        f"dense test {metric}": None if dense_test is None else round(dense_test, 5),
        f"compressed test {metric}": None if pruned_test is None else round(pruned_test, 5),
        "dead units removed": sum(p.n_units for p in plans),
        "Keras dense .keras bytes (no optimizer)": keras_bytes,
        ".sparse.h5 bytes": storage.file_bytes,
        "file ratio (Keras / sparse)": round(keras_bytes / storage.file_bytes, 2),
        "seconds": round(time.time() - t0, 1),
    }
    result = CompressionResult(model=small, pruned_model=pruned, history=history, plans=plans,
                               storage=storage, summary=summary, layers=layers)
    if report_dir is not None:
        from .plots import write_report
        result.report_html = write_report(report_dir, history=history, storage=storage, before=kernels_before,
                                          after=kernels_after, summary=summary, layers=layers)
    return result


def _compiled_like(model, pruned):
    """A copy of ``model`` compiled like ``pruned``, to evaluate it without touching the caller's."""
    clone = clone_model(model)
    clone.compile_from_config(pruned.get_compile_config())
    return clone
