"""Files of format version 1 keep loading: golden files written by the version-1 writer, and the
version-1 CSR checks (every invariant caught before SciPy sees the arrays)."""

import numpy as np
import pytest
import scipy.sparse
from conftest import GOLDEN, check_golden_model, check_golden_packed, golden_expected, golden_versions
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsecomp
from sparsecomp import InvalidTensorError
from sparsecomp.storage.tensors import view_shape_2d
from sparsecomp.storage.v1 import csr_to_dense, validate_csr

@pytest.fixture(scope="module")
def expected():
    return golden_expected("expected.npz")


def test_golden_files_are_version_1():
    assert golden_versions("v1_h5", "v1_model", "v1_hostile_base") == [1, 1, 1]


def test_v1_packed_file_reads_bit_exactly(expected, tmp_path):
    rep = check_golden_packed(GOLDEN / "v1_h5.sparse.h5", expected, tmp_path / "back.h5")
    assert rep.format_version == 1 and {r.encoding for r in rep.records} == {"csr", "dense"}


def test_v1_model_file_loads_and_predicts_exactly(expected):
    rep = check_golden_model(GOLDEN / "v1_model.sparse.h5", expected)
    assert rep.format_version == 1 and rep.records[0].encoding == "csr" and "positions" in rep.records[0].streams


def test_a_v1_file_repacked_is_the_current_version_and_identical(expected, tmp_path):
    """What a user does with an old file: unpack it and pack it again."""
    sparsecomp.unpack(GOLDEN / "v1_h5.sparse.h5", tmp_path / "src.h5")
    rep = sparsecomp.pack(tmp_path / "src.h5", tmp_path / "new.sparse.h5")
    assert rep.format_version == sparsecomp.storage.FORMAT_VERSION == 3
    assert (tmp_path / "new.sparse.h5").stat().st_size < (GOLDEN / "v1_h5.sparse.h5").stat().st_size
    assert {k: v.tobytes() for k, v in sparsecomp.read_tensors(tmp_path / "new.sparse.h5")} == \
        {k: v.tobytes() for k, v in sparsecomp.read_tensors(GOLDEN / "v1_h5.sparse.h5")}


# ---- the version-1 CSR checks -------------------------------------------------------------------

def to_csr(a):
    """CSR of a tensor's 2-D view over its bit patterns (what the version-1 writer stored)."""
    bits = a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize]).reshape(view_shape_2d(a.shape))
    m = scipy.sparse.csr_array(bits)
    return m.data.view(a.dtype), m.indices.astype(np.uint32), m.indptr.astype(np.uint32)


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
@given(st.integers(1, 12), st.integers(1, 12), st.floats(0.05, 1), st.integers(0, 2**31 - 1), st.integers(0, 6))
def test_property_any_single_violation_is_caught(rows, cols, density, seed, which):
    """Break exactly one invariant of a valid CSR encoding: validation always refuses it."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, cols)).astype("float32")
    a[rng.random(a.shape) >= density] = 0
    if not np.count_nonzero(a):
        a[rng.integers(rows), rng.integers(cols)] = 1
    d, i, p = to_csr(a)
    validate_csr(d, i, p, a.shape)
    assert csr_to_dense(d, i, p, a.shape, a.dtype).tobytes() == a.tobytes()
    i, p = i.astype(np.int64), p.astype(np.int64)
    nnz = len(d)
    if which == 0:
        p = p[:-1]
    elif which == 1:
        p = p.copy(); p[0] = 1
    elif which == 2:
        p = p.copy(); p[-1] = nnz + 1
    elif which == 3:
        i = i.copy(); i[rng.integers(nnz)] = cols + int(rng.integers(0, 5))
    elif which == 4:
        i = i[:-1]
    elif which == 5:
        k = int(rng.integers(1, len(p) - 1)) if len(p) > 2 else 1
        p = p.copy(); p[k] = p[-1] + 1
    else:
        row = int(np.argmax(np.diff(p) >= 1))
        s = int(p[row])
        if p[row + 1] - s >= 2:
            i = i.copy(); i[s + 1] = i[s]
        else:
            i = i.copy(); i[s] = cols
    with pytest.raises(InvalidTensorError):
        validate_csr(d, i, p, a.shape)
