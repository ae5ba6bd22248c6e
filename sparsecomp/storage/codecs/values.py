"""Values as byte planes: the helper the value-carrying codecs share (not a codec itself).

``n`` values of ``itemsize`` bytes become ``itemsize`` streams; stream ``j`` holds byte ``j``
(little-endian: ``j = 0`` is the least significant) of every value, in order. Trained weights
differ little in sign and exponent, so the top plane of a float32 costs 2-4 bits a value once
deflated while the mantissa planes stay near 8 bits: splitting them lets each be stored the way
that suits it (measured: ``benchmarks/codecs.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["split_planes", "join_planes", "plane_streams"]

_BLOCK = 1 << 16


def split_planes(values: np.ndarray) -> np.ndarray:
    """``(itemsize, n)`` uint8: plane ``j`` is byte ``j`` of every value (copied in cache-sized blocks)."""
    b = values.reshape(-1).view(np.uint8).reshape(-1, values.dtype.itemsize)
    out = np.empty((b.shape[1], b.shape[0]), np.uint8)
    for i in range(0, b.shape[0], _BLOCK):
        out[:, i:i + _BLOCK] = b[i:i + _BLOCK].T
    return out


def join_planes(planes: list, n: int, dtype) -> np.ndarray:
    """Undo :func:`split_planes`: ``n`` values of ``dtype`` from its planes (each ``n`` bytes)."""
    dtype = np.dtype(dtype)
    out = np.empty((n, dtype.itemsize), np.uint8)
    src = [np.frombuffer(p, np.uint8) for p in planes]
    for i in range(0, n, _BLOCK):
        for j, p in enumerate(src):
            out[i:i + _BLOCK, j] = p[i:i + _BLOCK]
    return out.reshape(-1).view(dtype)


def plane_streams(codec, values: np.ndarray, level: int, max_ratio: int) -> list:
    """The value planes of ``values`` as streams of role ``values``, each raw or deflated."""
    if values.dtype.itemsize == 1:
        return [codec.stream("values", values.reshape(-1).view(np.uint8), level, max_ratio)]
    planes = split_planes(values)
    return codec.streams([("values", planes[j], level) for j in range(planes.shape[0])], max_ratio)
