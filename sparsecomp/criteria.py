"""Pruning criteria: pure NumPy functions.

Unstructured (weights -> mask): a mask is a boolean array of the weight's shape, ``True`` where
the weight is kept; every such criterion keeps the previous mask's zeros zero (pruned weights
never come back).

Structured (filters -> scores): one score per output channel, **higher = more worth keeping**, so
every criterion ranks the same way (APoZ is turned into ``1 - APoZ``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadArgumentError
from .registry import Registry

__all__ = ["std_threshold", "std_threshold_mask", "magnitude_fraction_mask", "correlation_mask",
           "filter_matrix", "l1_scores", "l2_scores", "apoz_scores", "random_scores", "tlt_normalize",
           "equalize", "EQUALIZATIONS", "NORMALIZERS", "round_up_kept", "Criterion", "ChannelContext", "CRITERIA"]


def std_threshold(sigma: float, q: float) -> float:
    """Han et al. 2015's threshold ``q * sigma`` (sigma: the layer's weight standard deviation)."""
    if not np.isfinite(q) or q < 0:
        raise BadArgumentError(f"`q` must be a finite number >= 0. Received: q={q!r}", rule="argument.q")
    return float(q) * float(sigma)


def std_threshold_mask(weights: np.ndarray, threshold: float, previous: np.ndarray | None = None) -> np.ndarray:
    """Keep the weights whose magnitude is at least ``threshold`` (and that ``previous`` kept)."""
    keep = np.abs(weights) >= threshold
    if previous is not None:
        keep &= previous.astype(bool)
    return keep


def magnitude_fraction_mask(weights: np.ndarray, sparsity: float, previous: np.ndarray | None = None) -> np.ndarray:
    """Keep all but the ``sparsity`` fraction of smallest-magnitude weights (one-shot control).

    Ties at the cut are broken by position so exactly ``round(sparsity * size)`` weights go.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise BadArgumentError(f"`sparsity` must be in [0, 1]. Received: sparsity={sparsity!r}",
                               rule="argument.sparsity")
    flat = np.abs(weights).reshape(-1).astype(np.float64)
    if previous is not None:
        flat = np.where(previous.reshape(-1).astype(bool), flat, -1.0)
    n_prune = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, bool)
    if n_prune:
        keep[np.argsort(flat, kind="stable")[:n_prune]] = False
    return keep.reshape(weights.shape)


def correlation_mask(weights: np.ndarray, r: np.ndarray, q: float, p: float,
                     previous: np.ndarray | None = None) -> np.ndarray:
    """Correlation pruning (Nomuunbayar & Kang 2018): prune a weight when both hold —

    - its magnitude is below ``q * sigma``, sigma the standard deviation of the surviving weights
      (pruned ones are left out of the statistics);
    - its ``|r|`` (correlation of the weight with its change during training) is among the
      smallest ``p`` (a fraction: 0.4 = 40%) of the surviving weights' ``|r|``.

    Ties at the ``|r|`` cut are broken by position, so exactly ``floor(p * survivors)`` weights are
    eligible by correlation. Returns the new keep-mask (never regrows ``previous``'s zeros).
    """
    weights = np.asarray(weights)
    r = np.asarray(r)
    if r.shape != weights.shape:
        raise BadArgumentError(f"correlations have shape {r.shape}, weights {weights.shape}", rule="argument.r")
    if not np.isfinite(q) or q < 0:
        raise BadArgumentError(f"`q` must be a finite number >= 0. Received: q={q!r}", rule="argument.q")
    if not 0.0 <= p <= 1.0:
        raise BadArgumentError(f"`p` must be a fraction in [0, 1]. Received: p={p!r}", rule="argument.p")
    alive = np.ones(weights.shape, bool) if previous is None else previous.astype(bool)
    keep = alive.copy()
    n_alive = int(alive.sum())
    if n_alive == 0:
        return keep
    sigma = float(np.std(weights[alive].astype(np.float64)))
    small = np.abs(weights) < q * sigma
    n_weak = int(np.floor(p * n_alive))
    if n_weak == 0:
        return keep
    flat_r = np.where(alive, np.abs(r).astype(np.float64), np.inf).reshape(-1)
    weak = np.zeros(flat_r.size, bool)
    weak[np.argsort(flat_r, kind="stable")[:n_weak]] = True
    keep &= ~(small & weak.reshape(weights.shape))
    return keep


# --- structured criteria ------------------------------------------------------------------------

def filter_matrix(kernel: np.ndarray, transpose: bool = False) -> np.ndarray:
    """The kernel as ``(weights per filter, filters)``: Dense ``(in, out)``, Conv ``(k..., in, out)``;
    transposed convolutions keep their filters on the second-to-last axis (``transpose=True``)."""
    k = np.asarray(kernel)
    if transpose:
        k = np.moveaxis(k, -2, -1)
    return k.reshape(-1, k.shape[-1])


def l1_scores(kernel: np.ndarray, transpose: bool = False) -> np.ndarray:
    """Per filter, the L1 norm divided by the filter's size (the mean ``|w|``), so layers with
    different kernel sizes and fan-ins compare (Li et al. 2017 rank by the plain sum within a layer;
    the division changes no within-layer ranking)."""
    m = filter_matrix(kernel, transpose).astype(np.float64)
    return np.abs(m).sum(axis=0) / max(m.shape[0], 1)


def l2_scores(kernel: np.ndarray, transpose: bool = False, normalize: bool = True) -> np.ndarray:
    """Per filter (or Dense unit), the L2 norm; divided by ``sqrt(size)`` (root mean square) when
    ``normalize``, for the same cross-layer reason as :func:`l1_scores`."""
    m = filter_matrix(kernel, transpose).astype(np.float64)
    norm = np.sqrt((m * m).sum(axis=0))
    return norm / np.sqrt(max(m.shape[0], 1)) if normalize else norm


def apoz_scores(zero_counts: np.ndarray, totals: np.ndarray | int) -> np.ndarray:
    """``1 - APoZ`` per channel (Hu et al. 2016: the average percentage of zeros of a channel's
    ReLU output over real inputs; channels that are mostly zero go first)."""
    z = np.asarray(zero_counts, np.float64)
    t = np.asarray(totals, np.float64)
    if np.any(t <= 0):
        raise BadArgumentError("APoZ needs at least one activation per channel", rule="argument.apoz")
    return 1.0 - z / t


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random scores: the control every comparison needs."""
    return rng.random(int(n))


NORMALIZERS = ("max", "mean", "l2")


def tlt_normalize(norms: np.ndarray, normalizer: str = "max") -> np.ndarray:
    """NVIDIA TLT-style: a layer's filter norms divided by their maximum (default), their mean, or
    the L2 norm of the vector of all its filter norms (TLT's other normalizer)."""
    norms = np.asarray(norms, np.float64)
    if normalizer not in NORMALIZERS:
        raise BadArgumentError(f"`normalizer` must be one of {list(NORMALIZERS)}. Received: {normalizer!r}",
                               rule="argument.normalizer")
    d = {"max": norms.max, "mean": norms.mean, "l2": lambda: np.sqrt((norms * norms).sum())}[normalizer]()
    return norms / d if d > 0 else np.zeros_like(norms)


EQUALIZATIONS = ("arithmetic_mean", "geometric_mean", "union", "intersection")


def equalize(scores: list, op: str = "union") -> np.ndarray:
    """One score per channel for channels that several layers must lose together (the inputs of an
    element-wise Add, Multiply...), as TLT's equalization operators:

    ``arithmetic_mean``, ``geometric_mean``; ``union`` = the maximum (a channel stays if any input
    would keep it); ``intersection`` = the minimum (it stays only if every input would keep it).
    """
    if op not in EQUALIZATIONS:
        raise BadArgumentError(f"`equalization` must be one of {list(EQUALIZATIONS)}. Received: {op!r}",
                               rule="argument.equalization")
    arr = np.stack([np.asarray(s, np.float64) for s in scores])
    if op == "arithmetic_mean":
        return arr.mean(axis=0)
    if op == "geometric_mean":
        return np.exp(np.log(np.maximum(arr, 1e-300)).mean(axis=0)) * (arr > 0).all(axis=0)
    if op == "union":
        return arr.max(axis=0)
    return arr.min(axis=0)


def round_up_kept(n_kept: int, n_total: int, granularity: int = 8, min_filters: int = 16) -> int:
    """TLT's rule for how many filters a layer keeps: at least ``min_filters``, rounded up to a
    multiple of ``granularity``, at most ``n_total``."""
    if granularity < 1 or min_filters < 1:
        raise BadArgumentError("`granularity` and `min_filters` must be >= 1", rule="argument.granularity")
    k = max(int(n_kept), int(min_filters))
    return int(min(n_total, -(-k // granularity) * granularity))


# --- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelContext:
    """What a channel criterion may use besides the producer's kernel."""

    transposed: bool = False          # filters on the kernel's second-to-last axis (transposed convs)
    scale: object = 1.0               # per-channel BatchNorm scale (fold_bn) or 1
    normalizer: str = "max"           # tlt
    rng: object = None                # random
    apoz: object = None               # apoz: the channel's 1 - APoZ, measured on real inputs
    n: int = 0                        # channels


@dataclass(frozen=True)
class Criterion:
    """A pruning criterion: ``kind`` ``"mask"`` (weights -> keep-mask, unstructured) or
    ``"channels"`` (a producer's kernel -> one score per output channel, higher = keep)."""

    name: str
    kind: str
    fn: object
    help: str = ""
    needs_inputs: bool = False


CRITERIA = Registry("criterion")


def _channel(name, fn, help, needs_inputs=False):
    CRITERIA.register(name, Criterion(name, "channels", fn, help, needs_inputs), help=help)


CRITERIA.register("std", Criterion("std", "mask", std_threshold_mask,
                                   "|w| >= q * sigma of the layer (Han et al. 2015)"), help="|w| >= q*sigma (Han et al.)")
CRITERIA.register("magnitude", Criterion("magnitude", "mask", magnitude_fraction_mask,
                                         "the smallest fraction of |w| goes (the unstructured control)"),
                  help="the smallest fraction of |w| goes")
CRITERIA.register("correlation", Criterion("correlation", "mask", correlation_mask,
                                           "small |w| and weak |r(w, dw)| (Nomuunbayar & Kang 2018)"),
                  help="small |w| and weak |r(w, dw)|")
_channel("l1", lambda k, c: l1_scores(k, c.transposed) * c.scale, "mean |w| of the filter (Li et al. 2017)")
_channel("l2", lambda k, c: l2_scores(k, c.transposed) * c.scale, "RMS of the filter or unit")
_channel("apoz", lambda k, c: c.apoz, "1 - average percentage of zeros of the ReLU output (Hu et al. 2016)",
         needs_inputs=True)
_channel("random", lambda k, c: random_scores(c.n, c.rng), "uniform random scores (the control)")
_channel("tlt", lambda k, c: tlt_normalize(l2_scores(k, c.transposed, normalize=False) * c.scale, c.normalizer),
         "L2 norm over the layer's max, mean or L2 of norms (NVIDIA TLT)")
