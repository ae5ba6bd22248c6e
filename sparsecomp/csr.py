"""Tensors as CSR: the 2-D view, index dtypes, exact byte accounting, the size check, validation.

Pure NumPy/SciPy; nothing here knows about HDF5 or Keras.

A tensor of shape ``(d0, ..., dk)`` is viewed as the 2-D matrix ``(d0*...*d(k-1), dk)``: a Dense
kernel ``(in, out)`` stays as it is, a Conv2D kernel ``(kh, kw, cin, cout)`` becomes
``(kh*kw*cin, cout)``, a bias ``(n,)`` becomes one row ``(1, n)``.

Which entries are "non-zero" is decided on the *bit pattern*: ``-0.0`` and NaN payloads are kept
as stored values, so decoding gives back exactly the bits that were encoded.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse

from .errors import BadArgumentError, InvalidTensorError

__all__ = [
    "FLOAT_DTYPES",
    "SizeCheck",
    "view_shape_2d",
    "index_dtype_for",
    "count_nonzero",
    "size_check",
    "check_min_ratio",
    "to_csr",
    "iter_csr_blocks",
    "validate_csr",
    "csr_to_dense",
    "tensor_digest",
]

#: Floating-point dtypes that may be stored as CSR (little-endian, as NumPy and Keras write them).
FLOAT_DTYPES = (np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8"))

_UNSIGNED = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))


def view_shape_2d(shape) -> tuple[int, int]:
    """The ``(rows, cols)`` of the 2-D view of a tensor of ``shape`` (rank >= 1).

    Computed with Python integers, so no product can wrap around.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        raise BadArgumentError("a scalar has no 2-D view; scalars are always stored dense",
                               rule="csr.rank")
    rows = math.prod(shape[:-1])
    return rows, shape[-1]


def index_dtype_for(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype that can hold ``max_value`` (>= 0)."""
    max_value = int(max_value)
    for dt in _UNSIGNED:
        if max_value <= np.iinfo(dt).max:
            return dt
    raise BadArgumentError(f"{max_value} does not fit any unsigned index dtype", rule="csr.index")


def _contiguous(array) -> np.ndarray:
    """``array`` as a C-contiguous ndarray, keeping 0-d arrays 0-d (unlike ``ascontiguousarray``)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _bits_view(array: np.ndarray) -> np.ndarray:
    """The array reinterpreted as unsigned integers of the same width (a view, no copy)."""
    return array.view(_UNSIGNED[[1, 2, 4, 8].index(array.dtype.itemsize)])


def count_nonzero(array: np.ndarray) -> int:
    """Number of entries whose bit pattern is not all zeros (``-0.0`` counts as non-zero)."""
    array = _contiguous(array)
    if array.dtype in FLOAT_DTYPES:
        return int(np.count_nonzero(_bits_view(array)))
    return int(np.count_nonzero(array))


@dataclass(frozen=True)
class SizeCheck:
    """The outcome of comparing the two encodings of one tensor, in exact payload bytes.

    ``dense_bytes`` is ``size * itemsize``; ``csr_bytes`` is
    ``nnz * (itemsize + index_itemsize) + (rows + 1) * indptr_itemsize``. ``ratio`` is
    ``dense_bytes / csr_bytes`` (how many times smaller CSR would be), and ``encoding`` is the one
    chosen: ``"csr"`` only when CSR is strictly smaller *and* ``ratio >= min_ratio``.
    """

    shape: tuple
    dtype: str
    nnz: int
    dense_bytes: int
    csr_bytes: int | None
    index_dtype: str | None
    indptr_dtype: str | None
    ratio: float | None
    encoding: str

    @property
    def stored_bytes(self) -> int:
        return self.csr_bytes if self.encoding == "csr" else self.dense_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def check_min_ratio(min_ratio) -> float:
    """Validate ``min_ratio`` (a finite number >= 1) and return it as a float."""
    try:
        value = float(min_ratio)
    except (TypeError, ValueError):
        raise BadArgumentError(f"`min_ratio` must be a number >= 1. Received: min_ratio={min_ratio!r}",
                               rule="argument.min_ratio") from None
    if not math.isfinite(value) or value < 1.0:
        raise BadArgumentError(f"`min_ratio` must be a finite number >= 1. Received: min_ratio={min_ratio!r}",
                               rule="argument.min_ratio")
    return value


def size_check(shape, dtype, nnz: int, min_ratio: float = 1.0) -> SizeCheck:
    """Decide dense or CSR for a tensor of ``shape``/``dtype`` with ``nnz`` stored values."""
    min_ratio = check_min_ratio(min_ratio)
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    dense_bytes = size * dtype.itemsize
    if len(shape) == 0 or size == 0 or dtype not in FLOAT_DTYPES:
        return SizeCheck(shape, dtype.str, int(nnz), dense_bytes, None, None, None, None, "dense")
    rows, cols = view_shape_2d(shape)
    idx_dt = index_dtype_for(max(cols - 1, 0))
    ptr_dt = index_dtype_for(nnz)
    csr_bytes = nnz * (dtype.itemsize + idx_dt.itemsize) + (rows + 1) * ptr_dt.itemsize
    ratio = dense_bytes / csr_bytes
    # Exact rational comparison: the break-even density is decided without float rounding.
    use_csr = csr_bytes < dense_bytes and Fraction(dense_bytes, csr_bytes) >= Fraction(min_ratio)
    return SizeCheck(shape, dtype.str, int(nnz), dense_bytes, csr_bytes, idx_dt.str, ptr_dt.str,
                     ratio, "csr" if use_csr else "dense")


def _block_rows(cols: int, max_block_elems: int) -> int:
    return max(1, max_block_elems // max(cols, 1))


def iter_csr_blocks(array: np.ndarray, index_dtype, max_block_elems: int = 1 << 22):
    """Encode ``array`` (any rank >= 1, float) as CSR, a block of rows at a time.

    Yields ``(row_start, data, indices, row_counts)`` per block, with ``data`` in the array's own
    dtype and ``indices`` in ``index_dtype``. Memory beyond the input is bounded by the block size,
    whatever the tensor's size: this is what lets the writer stream VGG-sized layers.
    """
    array = _contiguous(array)
    rows, cols = view_shape_2d(array.shape)
    a2d = array.reshape(rows, cols)
    bits2d = _bits_view(a2d)
    step = _block_rows(cols, max_block_elems)
    for r0 in range(0, rows, step):
        block = scipy.sparse.csr_array(bits2d[r0:r0 + step])
        data = block.data.view(array.dtype)
        yield r0, data, block.indices.astype(index_dtype, copy=False), np.diff(block.indptr)


def to_csr(array: np.ndarray):
    """Encode a whole tensor in memory: returns ``(data, indices, indptr)`` with the smallest dtypes."""
    array = _contiguous(array)
    rows, cols = view_shape_2d(array.shape)
    nnz = count_nonzero(array)
    idx_dt = index_dtype_for(max(cols - 1, 0))
    ptr_dt = index_dtype_for(nnz)
    data = np.empty(nnz, array.dtype)
    indices = np.empty(nnz, idx_dt)
    indptr = np.zeros(rows + 1, ptr_dt)
    pos = 0
    for r0, d, i, counts in iter_csr_blocks(array, idx_dt):
        data[pos:pos + len(d)] = d
        indices[pos:pos + len(i)] = i
        indptr[r0 + 1:r0 + 1 + len(counts)] = counts
        pos += len(d)
    np.cumsum(indptr, out=indptr)
    return data, indices, indptr


def validate_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape, *,
                 member: str | None = None, file=None) -> None:
    """Check every CSR invariant before anything reaches SciPy (which trusts its input).

    ``indptr`` has ``rows + 1`` entries, starts at 0, never decreases and ends at ``len(data)``;
    ``indices`` has as many entries as ``data``; every column is ``< cols`` and columns are
    strictly increasing within a row (no duplicates). Raises :class:`InvalidTensorError`.
    """
    def fail(msg, rule):
        raise InvalidTensorError(msg, rule=rule, member=member, file=file)

    rows, cols = view_shape_2d(shape)
    nnz = len(data)
    if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
        fail("CSR arrays must be 1-D", "csr.rank")
    if len(indptr) != rows + 1:
        fail(f"indptr has {len(indptr)} entries, expected rows + 1 = {rows + 1} for shape {tuple(shape)}",
             "csr.indptr.length")
    if len(indices) != nnz:
        fail(f"indices has {len(indices)} entries but data has {nnz}", "csr.nnz")
    if nnz > rows * cols:
        fail(f"{nnz} stored values exceed the {rows * cols} entries of shape {tuple(shape)}", "csr.nnz")
    if indptr.dtype.kind not in "ui" or indices.dtype.kind not in "ui":
        fail(f"index arrays must be integers, got indptr {indptr.dtype} and indices {indices.dtype}",
             "csr.index.dtype")
    ptr = indptr.astype(np.int64, copy=False)
    if len(ptr) and int(ptr[0]) != 0:
        fail(f"indptr must start at 0, starts at {int(ptr[0])}", "csr.indptr.start")
    steps = np.diff(ptr)
    if np.any(steps < 0):
        bad = int(np.argmax(steps < 0))
        fail(f"indptr decreases at row {bad}", "csr.indptr.order")
    if len(ptr) and int(ptr[-1]) != nnz:
        fail(f"indptr ends at {int(ptr[-1])} but there are {nnz} stored values", "csr.indptr.end")
    if nnz == 0:
        return
    idx = indices.astype(np.int64, copy=False)
    if int(idx.min()) < 0 or int(idx.max()) >= cols:
        fail(f"column index out of range [0, {cols}): min {int(idx.min())}, max {int(idx.max())}",
             "csr.indices.range")
    ok = np.diff(idx) > 0
    # A row boundary at position b (0 < b < nnz) allows idx[b] <= idx[b-1].
    bounds = ptr[1:-1]
    bounds = bounds[(bounds > 0) & (bounds < nnz)]
    ok[bounds - 1] = True
    if not np.all(ok):
        pos = int(np.argmin(ok)) + 1
        row = int(np.searchsorted(ptr, pos, side="right") - 1)
        fail(f"columns not strictly increasing in row {row} (duplicate or unsorted index)",
             "csr.indices.order")


def csr_to_dense(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape, dtype) -> np.ndarray:
    """Decode validated CSR arrays into a dense tensor of ``shape``, bit-exact.

    Call :func:`validate_csr` first: SciPy does not check its inputs' invariants.
    """
    dtype = np.dtype(dtype)
    rows, cols = view_shape_2d(shape)
    out = np.zeros((rows, cols), dtype)
    if len(data):
        bits = _bits_view(np.ascontiguousarray(data, dtype=dtype))
        mat = scipy.sparse.csr_array((bits, indices, indptr), shape=(rows, cols))
        mat.toarray(out=_bits_view(out))
    return out.reshape(tuple(int(d) for d in shape))


def tensor_digest(array: np.ndarray) -> str:
    """SHA-256 over a tensor's canonical content: dtype, shape, then its C-order bytes."""
    array = _contiguous(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}|{','.join(map(str, array.shape))}|".encode())
    h.update(memoryview(array.reshape(-1).view(np.uint8)))
    return h.hexdigest()
