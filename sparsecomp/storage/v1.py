"""Reading format-version-1 files: one HDF5 object per tensor, a dense dataset or a CSR group.

Version 1 (sparsecomp 0.1) stored each float tensor at its path in ``/tree`` either as a dataset
(dense) or as a group marked ``sparsecomp.encoding = "csr"`` holding ``data``, ``indices`` and
``indptr`` for the tensor's 2-D view; every numeric tensor carried ``sparsecomp.sha256``. Files
written by ``save`` kept a model's optimizer variables under ``/optimizer``. This module turns
those objects into the reader's uniform :class:`~.reader.TensorEntry` and decodes them, with every
check version 1 had: header checks before reading, every CSR invariant before SciPy sees the
arrays (SciPy trusts its input).
"""

from __future__ import annotations

import h5py
import numpy as np

from ..errors import InvalidTensorError, ResourceLimitError
from .h5tree import TreeChecker, nbytes_of, text
from .tensors import FLOAT_DTYPES, bits_view, view_shape_2d

__all__ = ["validate_csr", "csr_to_dense", "csr_meta", "read_v1_tensor"]


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
    """Decode validated CSR arrays into a dense tensor of ``shape``, bit-exact."""
    import scipy.sparse      # only version-1 files need it
    dtype = np.dtype(dtype)
    rows, cols = view_shape_2d(shape)
    out = np.zeros((rows, cols), dtype)
    if len(data):
        bits = bits_view(np.ascontiguousarray(data, dtype=dtype))
        mat = scipy.sparse.csr_array((bits, indices, indptr), shape=(rows, cols))
        mat.toarray(out=bits_view(out))
    return out.reshape(tuple(int(d) for d in shape))


def csr_meta(checker: TreeChecker, node: h5py.Group, attrs, path: str):
    """``(shape, dtype, nnz, {role: stored bytes})`` of a version-1 CSR group, from headers only."""
    limits = checker.limits
    adict = dict((a[0], a[1]) for a in attrs)
    fail = lambda msg, rule: checker.fail(InvalidTensorError, msg, rule, path)  # noqa: E731
    if text(adict.get("sparsecomp.encoding")) != "csr":
        fail(f"unknown encoding {adict.get('sparsecomp.encoding')!r}", "tensor.encoding")
    try:
        dtype = np.dtype(str(text(adict.get("sparsecomp.dtype"))))
    except TypeError:
        fail("bad dtype attribute", "tensor.dtype")
    if dtype not in FLOAT_DTYPES:
        fail(f"CSR tensor dtype {dtype} is not a float", "tensor.dtype")
    shape_attr = np.asarray(adict.get("sparsecomp.shape", np.zeros(0)))
    if shape_attr.dtype.kind not in "iu" or shape_attr.ndim != 1 or not 1 <= len(shape_attr) <= \
            limits.max_rank or np.any(shape_attr < 0):
        fail(f"bad shape attribute {shape_attr.tolist()!r}", "tensor.shape")
    shape = tuple(int(d) for d in shape_attr)
    if any(d > limits.max_dim for d in shape):
        checker.fail(ResourceLimitError, f"a dimension of {shape} exceeds {limits.max_dim}", "limit.dim", path)
    nbytes = nbytes_of(shape, dtype.itemsize)
    if nbytes > limits.max_tensor_bytes:
        checker.fail(ResourceLimitError, f"declares {nbytes} bytes, over the per-tensor limit",
                     "limit.tensor", path)
    checker.account(nbytes, path)
    parts = {}
    for name, child, obj in checker.children(node, path, dedupe=False):
        if name not in ("data", "indices", "indptr") or not isinstance(obj, h5py.Dataset):
            fail(f"unexpected member {name!r} in a CSR group", "csr.members")
        checker.dataset(obj, child, tensor=True)
        if obj.ndim != 1:
            fail(f"{name} must be 1-D", "csr.rank")
        parts[name] = obj
    if set(parts) != {"data", "indices", "indptr"}:
        fail(f"CSR group lacks {sorted({'data', 'indices', 'indptr'} - set(parts))}", "csr.members")
    rows, cols = view_shape_2d(shape)
    nnz = parts["data"].shape[0]
    if parts["data"].dtype != dtype:
        fail(f"data dtype {parts['data'].dtype} differs from declared {dtype}", "csr.data.dtype")
    for name in ("indices", "indptr"):
        if parts[name].dtype.kind != "u":
            fail(f"{name} must be unsigned integers, not {parts[name].dtype}", "csr.index.dtype")
    if parts["indices"].shape[0] != nnz:
        fail(f"indices has {parts['indices'].shape[0]} entries but data has {nnz}", "csr.nnz")
    if parts["indptr"].shape[0] != rows + 1:
        fail(f"indptr has {parts['indptr'].shape[0]} entries; shape {shape} needs {rows + 1}"
             " (declared shape larger than the data present?)", "csr.indptr.length")
    if nnz > rows * cols:
        fail(f"{nnz} stored values exceed the {rows * cols} entries of shape {shape}", "csr.nnz")
    if np.iinfo(parts["indptr"].dtype).max < nnz:
        fail(f"indptr dtype {parts['indptr'].dtype} too narrow for {nnz} values", "csr.index.dtype")
    streams = {"values": nnz * dtype.itemsize,
               "positions": nnz * parts["indices"].dtype.itemsize + (rows + 1) * parts["indptr"].dtype.itemsize}
    return shape, dtype, nnz, streams


def read_v1_tensor(checker: TreeChecker, node, kind: str, shape, dtype, path: str, *, file) -> np.ndarray:
    """Decode one version-1 tensor (``kind`` ``"csr"``, else a dense dataset), every invariant checked."""
    if kind != "csr":
        array = checker.read(node, path)
        if isinstance(array, np.ndarray) and array.shape != tuple(shape):
            checker.fail(InvalidTensorError, "dataset shape mismatch", "tensor.shape", path)
        return array
    data = checker.read(node["data"], path + "/data")
    indices = checker.read(node["indices"], path + "/indices")
    indptr = checker.read(node["indptr"], path + "/indptr")
    validate_csr(data, indices, indptr, shape, member=path, file=file)
    return csr_to_dense(data, indices, indptr, shape, dtype)
