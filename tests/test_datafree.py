"""Data-free pruning: the cut it makes is the rule's cut, exactly, and it holds little beside a tensor."""

import tracemalloc

import h5py
import keras
import numpy as np
import pytest

import sparsecomp
from sparsecomp.criteria import magnitude_fraction_mask
from sparsecomp.datafree import pack_data_free, prune_data_free


def dense_model(kernel):
    m = keras.Sequential([keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1], name="d")])
    m.layers[0].kernel.assign(kernel)
    return m


def test_magnitude_cut_matches_the_mask_with_ties_broken_by_position():
    rng = np.random.default_rng(0)
    k = rng.choice(np.float32([-0.5, -0.25, 0.25, 0.5, 1.0]), size=(40, 30))   # many ties at every cut
    for target in (0.1, 0.37, 0.5, 0.9):
        out, info = prune_data_free(dense_model(k), target, criterion="magnitude")
        want = np.where(magnitude_fraction_mask(k, target), k, 0)
        assert np.array_equal(out.layers[0].kernel.numpy(), want)
        assert info.sparsity["d"] == pytest.approx(round(target * k.size) / k.size)


def test_magnitude_cut_with_nan_matches_the_mask():
    """NaN sorts after every number: a cut that reaches it takes every number first, then NaNs in order."""
    k = np.float32([[np.nan, 1.0, 2.0], [np.nan, 3.0, 4.0], [0.5, np.nan, 5.0]])
    for target in (0.3, 2 / 3, 0.8, 1.0):
        out, _ = prune_data_free(dense_model(k), target, criterion="magnitude")
        want = np.where(magnitude_fraction_mask(k, target), k, 0)
        assert np.array_equal(out.layers[0].kernel.numpy(), want, equal_nan=True)


def test_std_cut_is_q_sigma_of_each_kernel():
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((300, 200)) * 0.1).astype(np.float32)
    m = dense_model(k)
    out, info = prune_data_free(m, 0.8)
    sigma = float(np.std(k.astype(np.float64)))
    want = np.where(np.abs(k) >= info.q * sigma, k, 0)
    assert np.array_equal(out.layers[0].kernel.numpy(), want)
    assert 0.8 <= info.total_sparsity < 0.8 + 0.002                   # q to 1/1024 of a sigma
    assert np.array_equal(m.layers[0].kernel.numpy(), k)               # the caller's model untouched


def test_tensor_level_holds_little_beside_the_largest_tensor(tmp_path):
    rng = np.random.default_rng(2)
    big = (rng.standard_normal((2048, 2048)) * 0.05).astype(np.float32)          # 16 MiB
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["fc/kernel"] = big
        f["fc/bias"] = np.zeros(2048, np.float32)
    del big
    tracemalloc.start()
    try:
        rep, info = pack_data_free(tmp_path / "w.h5", tmp_path / "w.sparse.h5", 0.95)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.total_sparsity == pytest.approx(0.95, abs=1e-3)
    assert peak < 2.0 * 2048 * 2048 * 4, peak / (2048 * 2048 * 4)
    got = dict(sparsecomp.read_tensors(tmp_path / "w.sparse.h5"))["fc/kernel"]
    assert 1 - np.count_nonzero(got) / got.size == pytest.approx(info.sparsity["fc/kernel"])
