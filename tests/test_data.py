"""Offline MNIST: the built-in copy, checksums, clear failures."""

import gzip
import shutil

import numpy as np
import pytest

from sparsecomp import DataError, load_mnist
from sparsecomp.data import BUILTIN_MNIST


def test_builtin_copy_matches_published_counts():
    (x, y), (xt, yt) = load_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path)
    assert e.value.rule == "data.missing" and "never downloads" in str(e.value)


def test_altered_file_is_detected(tmp_path):
    for p in BUILTIN_MNIST.iterdir():
        shutil.copy(p, tmp_path / p.name)
    raw = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw = raw[:-1] + bytes([(raw[-1] + 1) % 10])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path)
    assert e.value.rule == "data.checksum"


def test_env_variable_points_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSECOMP_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError):
        load_mnist()
