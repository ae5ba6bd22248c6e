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


_BLOCK = 1 << 18       # entries per block: what the statistics and the cut hold beside a tensor


def _blocks(w: np.ndarray):
    flat = w.reshape(-1)
    for i in range(0, flat.size, _BLOCK):
        yield flat[i:i + _BLOCK]


def _sigma(w: np.ndarray) -> float:
    """The standard deviation of ``w`` in float64, two passes block by block (no tensor-sized copy)."""
    if not w.size:
        return 0.0
    mean = sum(float(np.sum(b, dtype=np.float64)) for b in _blocks(w)) / w.size
    var = 0.0
    for b in _blocks(w):
        x = b.astype(np.float64)
        x -= mean
        var += float(np.dot(x, x))
    return float(np.sqrt(var / w.size))


def _hist(w: np.ndarray) -> tuple[float, np.ndarray]:
    """``(sigma, histogram of |w| / sigma)`` over ``_BINS`` bins up to ``_QMAX`` sigmas."""
    sigma = _sigma(w)
    if sigma == 0:
        return 0.0, np.bincount(np.zeros(w.size, np.int64), minlength=_BINS)
    hist = np.zeros(_BINS, np.int64)
    for b in _blocks(w):
        x = np.abs(b.astype(np.float64))
        x *= _BINS / _QMAX / sigma
        np.minimum(x, _BINS - 1, out=x)
        hist += np.bincount(x.astype(np.int64), minlength=_BINS)
    return sigma, hist


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


def _magnitude_cut(w: np.ndarray, target: float) -> None:
    """Zero the ``round(target * size)`` smallest-magnitude entries of ``w`` in place (ties at the cut
    broken by position, as :func:`.criteria.magnitude_fraction_mask` does), holding one ``|w|`` copy."""
    n = int(round(target * w.size))
    if not n:
        return
    mags = np.abs(w).reshape(-1)
    t = np.partition(mags, n - 1)[n - 1]                  # the n-th smallest magnitude (NaN sorts last)
    del mags
    nan = bool(np.isnan(t))

    def at_cut(m):                                        # the entries that tie at the cut
        return np.isnan(m) if nan else m == t

    def below(m):                                         # below the cut (every number, when it is NaN)
        return ~np.isnan(m) if nan else m < t

    ties = n - sum(int(np.count_nonzero(below(np.abs(b)))) for b in _blocks(w))
    for b in _blocks(w):                                  # ties cut first ones first, as argsort would
        m = np.abs(b)
        if ties > 0:
            eq = np.flatnonzero(at_cut(m))[:ties]
            b[eq] = 0
            ties -= len(eq)
        b[below(m)] = 0


def _cut(w: np.ndarray, criterion: str, target: float, q: float | None, sigma: float | None = None) -> np.ndarray:
    """``w`` with its cut entries zeroed, *in place* (the callers pass their own copies), block by
    block: beside the tensor only a block's worth of temporaries (one ``|w|`` copy for magnitude).
    ``sigma``: the tensor's standard deviation when already measured."""
    w = np.asarray(w)
    if not w.flags.writeable or not w.flags.c_contiguous:
        w = np.array(w, order="C")
    if criterion == "magnitude":
        _magnitude_cut(w, target)
        return w
    cut = q * (_sigma(w) if sigma is None else sigma)
    for b in _blocks(w):
        b[np.abs(b) < cut] = 0
    return w


def prune_data_free(model, target_sparsity: float, *, criterion: str = "std", exclude=()):
    """Prune a model's kernels to ``target_sparsity`` without data; ``(new model, DataFreeInfo)``."""
    check_fraction("target_sparsity", target_sparsity)
    check_choice("criterion", criterion, CRITERIA_DATA_FREE)
    out = clone_model(model)
    layers = [layer for layer in prunable_layers(out) if layer.name not in set(exclude)]
    kernels = {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in layers}
    stats = {name: _hist(w) for name, w in kernels.items()} if criterion == "std" else {}
    q = threshold_for(list(stats.values()), target_sparsity) if criterion == "std" else None
    info = DataFreeInfo(criterion=criterion, target_sparsity=target_sparsity, q=q)
    zeros = size = 0
    for layer in layers:
        w = _cut(kernels[layer.name], criterion, target_sparsity, q, stats[layer.name][0] if stats else None)
        kernel_of(layer).assign(w)
        z = w.size - int(np.count_nonzero(w))
        info.sparsity[layer.name] = z / w.size if w.size else 0.0
        zeros += z
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
    sigmas = {path: st[0] for path, st in zip(paths, stats)}          # measured once, in the first pass
    info = DataFreeInfo(criterion=criterion, target_sparsity=target_sparsity, q=q)
    wanted = set(paths)
    counts = {"zeros": 0, "size": 0}

    def transform(path, array):
        if path not in wanted:
            return array
        w = _cut(array, criterion, target_sparsity, q, sigmas.get(path))
        b = bits if not isinstance(bits, dict) else bits.get("fc" if array.ndim == 2 else "conv")
        if b is not None:
            from .quantize import share
            w, _ = share(w, int(b), init=init)
            info.bits[path] = int(b)
        z = w.size - int(np.count_nonzero(w))
        info.sparsity[path] = z / w.size if w.size else 0.0
        counts["zeros"] += z
        counts["size"] += w.size
        return w

    report = pack(src, dst, min_ratio=min_ratio, level=level, limits=limits, progress=progress, transform=transform)
    info.total_sparsity = counts["zeros"] / counts["size"] if counts["size"] else 0.0
    return report, info
