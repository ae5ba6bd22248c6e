"""Pruning criteria: pure NumPy functions from weights (and the previous mask) to a new mask.

A mask is a boolean array of the weight's shape, ``True`` where the weight is kept. Every
criterion keeps the previous mask's zeros zero (pruned weights never come back).
"""

from __future__ import annotations

import numpy as np

from .errors import BadArgumentError

__all__ = ["std_threshold", "std_threshold_mask", "magnitude_fraction_mask"]


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
