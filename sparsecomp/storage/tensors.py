"""Tensors as the format sees them: little-endian numbers whose zeros are zero *bit patterns*.

Which entries are "non-zero" is decided on the bit pattern: ``-0.0`` and NaN payloads are kept
as stored values, so decoding gives back exactly the bits that were encoded. Pure NumPy.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

__all__ = ["FLOAT_DTYPES", "UNSIGNED", "is_storable", "contiguous", "bits_view", "count_nonzero",
           "all_finite", "tensor_digest", "file_digest", "view_shape_2d"]

#: Floating-point dtypes (little-endian, as NumPy and Keras write them).
FLOAT_DTYPES = (np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8"))
UNSIGNED = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


def is_storable(dtype) -> bool:
    """Little-endian (or single-byte) integers and floats: what the codecs store."""
    dt = np.dtype(dtype)
    return dt.kind in "iuf" and dt.byteorder in ("<", "|", "=") and dt.fields is None \
        and dt.itemsize in UNSIGNED and (dt.kind != "f" or dt in FLOAT_DTYPES)


def contiguous(array) -> np.ndarray:
    """``array`` as a C-contiguous ndarray, keeping 0-d arrays 0-d (unlike ``ascontiguousarray``)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


def bits_view(array: np.ndarray) -> np.ndarray:
    """The array reinterpreted as unsigned integers of the same width (a view, no copy)."""
    return array.view(UNSIGNED[array.dtype.itemsize])


def count_nonzero(array) -> int:
    """Number of entries whose bit pattern is not all zeros (``-0.0`` counts as non-zero)."""
    array = contiguous(array)
    return int(np.count_nonzero(bits_view(array))) if array.dtype.itemsize in UNSIGNED else \
        int(np.count_nonzero(array))


def all_finite(array: np.ndarray, block: int = 1 << 20) -> bool:
    """No NaN or Inf in a float ``array``, checked block by block (no tensor-sized temporary)."""
    flat = contiguous(array).reshape(-1)
    return all(bool(np.isfinite(flat[i:i + block]).all()) for i in range(0, flat.size, block))


def tensor_digest(array: np.ndarray) -> str:
    """SHA-256 over a tensor's canonical content: dtype, shape, then its C-order bytes."""
    array = contiguous(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}|{','.join(map(str, array.shape))}|".encode())
    h.update(memoryview(array.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def file_digest(digests) -> str:
    """SHA-256 (hex) over the concatenated 32-byte SHA-256 digests of a file's tensors (hex, in
    index order): the version-3 file digest. Costs 32 bytes of hashing per tensor, not a pass over
    the data."""
    h = hashlib.sha256()
    for d in digests:
        h.update(bytes.fromhex(d))
    return h.hexdigest()


def view_shape_2d(shape) -> tuple[int, int]:
    """``(rows, cols)`` of a tensor's 2-D view ``(prod(shape[:-1]), shape[-1])``; a vector is one row.

    Computed with Python integers, so no product can wrap around.
    """
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]
