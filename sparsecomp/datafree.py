"""Compression without data: magnitude pruning to a target sparsity, clearly labelled.

For checkpoints nobody has the training data of (the VGG19 ImageNet weights, say). No accuracy
can be measured, so none is claimed: reports say "accuracy not measured". Two criteria:

- ``"std"`` (default): one ``q`` for the whole network, every kernel cut below ``q * sigma`` of
  its own weights (Han et al.'s threshold), ``q`` chosen so the fraction of zeros over all kernels
  reaches the target — layers whose weights are spread wider keep more;
- ``"magnitude"``: every kernel cut to the target by its own magnitude ranking.

"Kernels" are the prunable layers' kernels at model level, and every float tensor of rank >= 2
outside optimizer state at tensor level (a weights-only checkpoint without an architecture);
biases and normalization parameters are never pruned. At tensor level the file keeps its layout
(``unpack`` gives back a checkpoint the original loading code reads, zeros where pruned); at model
level dead units are removed too, which is exact whatever the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from .arguments import check_choice, check_fraction
from .masks import kernel_of, prunable_layers
from .model_io import clone_model

__all__ = ["prune_data_free", "pack_data_free", "DataFreeInfo", "CRITERIA_DATA_FREE", "threshold_for"]

CRITERIA_DATA_FREE = ("std", "magnitude")
_BINS = 1 << 16
_QMAX = 64.0


@dataclass
class DataFreeInfo:
    """What a data-free pruning did: the criterion, the target, the q found (std), per kernel the
    fraction of zeros, and the sparsity reached over all kernels. No accuracy: none was measured."""

    criterion: str
    target_sparsity: float
    q: float | None = None
    sparsity: dict = field(default_factory=dict)
    bits: dict = field(default_factory=dict)
    total_sparsity: float = 0.0
    accuracy: str = "not measured (no data)"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _hist(w: np.ndarray) -> tuple[float, np.ndarray]:
    a = np.abs(np.asarray(w, np.float64)).reshape(-1)
    sigma = float(np.std(np.asarray(w, np.float64)))
    if sigma == 0:
        return 0.0, np.bincount(np.zeros(a.size, np.int64), minlength=_BINS)
    idx = np.minimum((a / sigma) * (_BINS / _QMAX), _BINS - 1).astype(np.int64)
    return sigma, np.bincount(idx, minlength=_BINS)


def threshold_for(stats: list, target: float) -> float:
    """The smallest ``q`` (to 1/1024 of a sigma) whose cut ``|w| < q * sigma`` zeroes at least
    ``target`` of all weights, from per-kernel histograms of ``|w| / sigma``."""
    total = sum(int(h.sum()) for _, h in stats)
    if total == 0:
        return 0.0
    cum = np.cumsum(sum(h for _, h in stats))
    need = target * total
    k = int(np.searchsorted(cum, need - 1e-9))         # bins [0, k] hold at least `need` weights
    return (k + 1) * _QMAX / _BINS


def _cut(w: np.ndarray, criterion: str, target: float, q: float | None) -> np.ndarray:
    if criterion == "magnitude":
        from .criteria import magnitude_fraction_mask
        return np.where(magnitude_fraction_mask(w, target), w, np.zeros_like(w))
    sigma = float(np.std(np.asarray(w, np.float64)))
    return np.where(np.abs(w) >= q * sigma, w, np.zeros_like(w))


def prune_data_free(model, target_sparsity: float, *, criterion: str = "std", exclude=()):
    """Prune a model's kernels to ``target_sparsity`` without data; ``(new model, DataFreeInfo)``."""
    check_fraction("target_sparsity", target_sparsity)
    check_choice("criterion", criterion, CRITERIA_DATA_FREE)
    out = clone_model(model)
    layers = [layer for layer in prunable_layers(out) if layer.name not in set(exclude)]
    kernels = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in layers}
    q = threshold_for([_hist(w) for w in kernels.values()], target_sparsity) if criterion == "std" else None
    info = DataFreeInfo(criterion=criterion, target_sparsity=target_sparsity, q=q)
    zeros = size = 0
    for layer in layers:
        w = _cut(kernels[layer.name], criterion, target_sparsity, q)
        kernel_of(layer).assign(w)
        info.sparsity[layer.name] = float((w == 0).mean()) if w.size else 0.0
        zeros += int((w == 0).sum())
        size += w.size
    info.total_sparsity = zeros / size if size else 0.0
    if getattr(model, "compiled", False) and model.get_compile_config():
        out.compile_from_config(model.get_compile_config())
    return out, info


def _kernel_stats(src, exclude, limits, criterion):
    """The paths of the float datasets of rank >= 2 outside optimizer state (what tensor-level
    pruning cuts) and, for ``std``, their histograms — read through the hardened walk, one tensor
    at a time, every size checked against ``limits`` before it is read."""
    from .storage.h5tree import TreeChecker, open_h5
    from .storage.spec import OPTIMIZER_GROUPS
    checker = TreeChecker(limits, src)
    paths, stats = [], []
    with open_h5(src, src) as f:
        stack = [(f, "")]
        while stack:
            group, path = stack.pop()
            for name, child, obj in checker.children(group, path):
                if isinstance(obj, h5py.Group):
                    stack.append((obj, child))
                    continue
                checker.dataset(obj, child, tensor=False)
                if obj.shape is None or len(obj.shape) < 2 or obj.dtype.kind != "f" \
                        or child.split("/", 1)[0] in OPTIMIZER_GROUPS or set(child.split("/")) & set(exclude):
                    continue
                paths.append(child)
                if criterion == "std":
                    stats.append(_hist(checker.read(obj, child)))
    return paths, stats


def pack_data_free(src, dst, target_sparsity: float, *, criterion: str = "std", exclude=(), bits=None,
                   init: str = "linear", min_ratio: float = 1.0, level: int = 2, limits=None, progress=None):
    """Tensor level: pack the checkpoint ``src`` with its kernels pruned to ``target_sparsity``.

    Two passes over the file, one tensor in memory at a time: the first measures each kernel
    (its sigma and a histogram of ``|w| / sigma``) to find ``q``, the second packs with the cut
    applied. ``bits`` (an int, or ``{"conv": b, "fc": b}`` by kernel rank: 2 is fc) also shares
    each cut kernel's non-zeros among ``2**bits`` k-means values (post-training, not fine-tuned).
    Returns ``(StorageReport, DataFreeInfo)``.
    """
    from .storage import pack
    from .storage.pack import source_kind
    from .storage.spec import Limits
    check_fraction("target_sparsity", target_sparsity)
    check_choice("criterion", criterion, CRITERIA_DATA_FREE)
    if source_kind(__import__("pathlib").Path(src), limits or Limits()) != "h5":
        from .errors import BadArgumentError
        raise BadArgumentError("tensor-level data-free pruning reads HDF5 checkpoints; load a .keras model and use "
                               "prune_data_free", rule="argument.input", file=src)
    paths, stats = _kernel_stats(src, tuple(exclude), limits or Limits(), criterion)
    q = threshold_for(stats, target_sparsity) if criterion == "std" else None
    info = DataFreeInfo(criterion=criterion, target_sparsity=target_sparsity, q=q)
    wanted = set(paths)
    counts = {"zeros": 0, "size": 0}

    def transform(path, array):
        if path not in wanted:
            return array
        w = _cut(array, criterion, target_sparsity, q)
        b = bits if not isinstance(bits, dict) else bits.get("fc" if array.ndim == 2 else "conv")
        if b is not None:
            from .quantize import share
            w, _ = share(w, int(b), init=init)
            info.bits[path] = int(b)
        z = int(np.count_nonzero(w == 0))
        info.sparsity[path] = z / w.size if w.size else 0.0
        counts["zeros"] += z
        counts["size"] += w.size
        return w

    report = pack(src, dst, min_ratio=min_ratio, level=level, limits=limits, progress=progress, transform=transform)
    info.total_sparsity = counts["zeros"] / counts["size"] if counts["size"] else 0.0
    return report, info
