"""CSR encoding, the size check and validation (pure NumPy/SciPy)."""

import math

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecomp import BadArgumentError, InvalidTensorError
from sparsecomp.csr import (csr_to_dense, count_nonzero, index_dtype_for, size_check, to_csr, validate_csr,
                            view_shape_2d)


def sparse_tensor(rng, shape, dtype, density):
    a = rng.standard_normal(shape).astype(dtype)
    a[rng.random(shape) >= density] = 0
    return a


SHAPES = [(1,), (7,), (3, 5), (300, 100), (5, 5, 1, 20), (3, 3, 8, 300), (1, 1), (2, 70000)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("density", [0.0, "one", 0.5, 0.999, 1.0])
def test_round_trip_bit_identical(rng, shape, dtype, density):
    if density == "one":
        a = np.zeros(shape, dtype)
        a.flat[rng.integers(a.size)] = 1.5
    else:
        a = sparse_tensor(rng, shape, dtype, density)
    data, indices, indptr = to_csr(a)
    validate_csr(data, indices, indptr, a.shape)
    b = csr_to_dense(data, indices, indptr, a.shape, a.dtype)
    assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()
    # the same structure SciPy builds from the 2-D view
    bits = a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])
    ref = scipy.sparse.csr_array(bits.reshape(view_shape_2d(a.shape)))
    assert np.array_equal(indptr.astype(np.int64), ref.indptr) and np.array_equal(indices.astype(np.int64), ref.indices)


def test_negative_zero_and_nan_survive():
    a = np.array([[0.0, -0.0, np.nan], [0.0, 0.0, 0.0], [np.inf, 0.0, -1e-45]], np.float32)
    data, indices, indptr = to_csr(a)
    assert count_nonzero(a) == 4   # -0.0 is stored: its bits are not zero
    b = csr_to_dense(data, indices, indptr, a.shape, a.dtype)
    assert b.tobytes() == a.tobytes()


def test_empty_rows_and_smallest_dtypes(rng):
    a = np.zeros((10, 300), np.float32)
    a[3, 299] = 1
    a[7, 0] = 2
    data, indices, indptr = to_csr(a)
    assert indices.dtype == np.uint16 and indptr.dtype == np.uint8   # 300 cols; nnz 2
    assert indptr.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_index_dtype_boundaries():
    assert index_dtype_for(255) == np.uint8 and index_dtype_for(256) == np.uint16
    assert index_dtype_for(65535) == np.uint16 and index_dtype_for(65536) == np.uint32
    assert index_dtype_for(2**32) == np.uint64


@pytest.mark.parametrize("rows,cols,itemsize,dtype", [(300, 100, 4, "float32"), (784, 300, 4, "float32"),
                                                      (500, 70000, 4, "float32"), (100, 200, 8, "float64")])
def test_size_check_break_even_by_hand(rows, cols, itemsize, dtype):
    dense = rows * cols * itemsize
    idx = 1 if cols <= 256 else 2 if cols <= 65536 else 4

    def by_hand(nnz):
        ptr = 1 if nnz <= 255 else 2 if nnz <= 65535 else 4
        return nnz * (itemsize + idx) + (rows + 1) * ptr

    # the break-even nnz, by bisection on the hand formula (it is monotonic in nnz)
    lo, hi = 0, rows * cols
    while lo < hi:
        mid = (lo + hi) // 2
        if by_hand(mid) < dense:
            lo = mid + 1
        else:
            hi = mid
    first_dense = lo
    assert 0 < first_dense < rows * cols
    probes = set(range(max(0, first_dense - 300), min(rows * cols, first_dense + 300)))
    probes |= set(range(0, rows * cols + 1, max(1, rows * cols // 997)))
    for nnz in sorted(probes):
        chk = size_check((rows, cols), dtype, nnz)
        assert chk.dense_bytes == dense and chk.csr_bytes == by_hand(nnz)
        assert chk.encoding == ("csr" if nnz < first_dense else "dense"), nnz


@pytest.mark.parametrize("min_ratio", [1.0, 2.0, 6.0, 10.0])
def test_min_ratio_threshold_exact(min_ratio):
    rows, cols = 500, 800
    dense = rows * cols * 4
    for nnz in range(0, 80001, 37):
        csr = nnz * 6 + (rows + 1) * (1 if nnz < 256 else 2 if nnz < 65536 else 4)
        want = "csr" if csr < dense and dense >= min_ratio * csr else "dense"
        assert size_check((rows, cols), "float32", nnz, min_ratio).encoding == want


@pytest.mark.parametrize("bad", [0.5, 0, -1, float("nan"), float("inf"), "x", None])
def test_min_ratio_validated(bad):
    with pytest.raises(BadArgumentError) as e:
        size_check((3, 3), "float32", 1, bad)
    assert e.value.rule == "argument.min_ratio"


def test_scalars_and_ints_stay_dense():
    assert size_check((), "float32", 0).encoding == "dense"
    assert size_check((100, 100), "int64", 0).encoding == "dense"
    assert size_check((0, 5), "float32", 0).encoding == "dense"


def good_csr():
    a = np.array([[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 4, 0]], np.float32)
    return to_csr(a), a.shape


@pytest.mark.parametrize("mutate,rule", [
    (lambda d, i, p: (d, i, p[:-1]), "csr.indptr.length"),
    (lambda d, i, p: (d, i, np.array([1, 2, 2, 4], p.dtype)), "csr.indptr.start"),
    (lambda d, i, p: (d, i, np.array([0, 3, 2, 4], p.dtype)), "csr.indptr.order"),
    (lambda d, i, p: (d, i, np.array([0, 2, 2, 3], p.dtype)), "csr.indptr.end"),
    (lambda d, i, p: (d, np.array([1, 3, 0, 4], i.dtype), p), "csr.indices.range"),
    (lambda d, i, p: (d, np.array([3, 1, 0, 2], i.dtype), p), "csr.indices.order"),
    (lambda d, i, p: (d, np.array([1, 1, 0, 2], i.dtype), p), "csr.indices.order"),
    (lambda d, i, p: (d, i[:-1], p), "csr.nnz"),
])
def test_each_invariant_violation_is_caught(mutate, rule):
    (d, i, p), shape = good_csr()
    d2, i2, p2 = mutate(d, i, p)
    with pytest.raises(InvalidTensorError) as e:
        validate_csr(d2, i2, p2, shape, member="t")
    assert e.value.rule == rule


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=4), st.sampled_from(["float16", "float32", "float64"]),
       st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_property_round_trip(shape, dtype, density, seed):
    rng = np.random.default_rng(seed)
    a = sparse_tensor(rng, tuple(shape), dtype, density)
    data, indices, indptr = to_csr(a)
    validate_csr(data, indices, indptr, a.shape)
    assert csr_to_dense(data, indices, indptr, a.shape, a.dtype).tobytes() == a.tobytes()
    assert len(data) == count_nonzero(a) <= math.prod(shape)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.floats(0.05, 1), st.integers(0, 2**31 - 1), st.integers(0, 6))
def test_property_any_single_violation_is_caught(rows, cols, density, seed, which):
    """Break exactly one invariant of a valid CSR encoding: validation always refuses it."""
    rng = np.random.default_rng(seed)
    a = sparse_tensor(rng, (rows, cols), "float32", density)
    if not np.count_nonzero(a):
        a[rng.integers(rows), rng.integers(cols)] = 1
    d, i, p = to_csr(a)
    i, p = i.astype(np.int64), p.astype(np.int64)
    nnz = len(d)
    if which == 0:
        p = p[:-1]                                  # indptr length
    elif which == 1:
        p = p.copy(); p[0] = 1                      # indptr start
    elif which == 2:
        p = p.copy(); p[-1] = nnz + 1               # indptr end
    elif which == 3:
        i = i.copy(); i[rng.integers(nnz)] = cols + int(rng.integers(0, 5))   # column out of range
    elif which == 4:
        i = i[:-1]                                  # nnz mismatch
    elif which == 5:
        k = int(rng.integers(1, len(p) - 1)) if len(p) > 2 else 1
        p = p.copy(); p[k] = p[-1] + 1              # indptr not monotonic
    else:
        row = int(np.argmax(np.diff(p) >= 1))       # a duplicate or reversed column within a row
        s = int(p[row])
        if p[row + 1] - s >= 2:
            i = i.copy(); i[s + 1] = i[s]
        else:
            i = i.copy(); i[s] = cols              # a row with one entry: break its range instead
    with pytest.raises(InvalidTensorError):
        validate_csr(d, i, p, a.shape)
