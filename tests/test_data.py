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


# ---- other sources ----------------------------------------------------------------------------

import json  # noqa: E402

import sparsecomp  # noqa: E402

from conftest import ROOT  # noqa: E402

from sparsecomp.cli import main  # noqa: E402
from sparsecomp.data import Dataset, load_data, parse_idx, prepare  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "keras2"


def _idx(path, arr):
    code = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.tobytes()))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same small dataset (MNIST test digits 0-4000, split 3000/1000) in every source format."""
    d = tmp_path_factory.mktemp("sources")
    (_, _), (xt, yt) = load_mnist()
    x, y, xv, yv = xt[:3000], yt[:3000], xt[3000:4000], yt[3000:4000]
    (d / "idx").mkdir()
    _idx(d / "idx" / "train-images-idx3-ubyte.gz", x)
    _idx(d / "idx" / "train-labels-idx1-ubyte.gz", y)
    _idx(d / "idx" / "t10k-images-idx3-ubyte.gz", xv)
    _idx(d / "idx" / "t10k-labels-idx1-ubyte.gz", yv)
    np.savez(d / "digits.npz", x_train=x, y_train=y, x_test=xv, y_test=yv)
    import keras
    for split, xs, ys in (("train", x[:600], y[:600]), ("test", xv[:200], yv[:200])):
        for i, (img, label) in enumerate(zip(xs, ys)):
            folder = d / "images" / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            keras.utils.save_img(folder / f"{i}.png", img[..., None], scale=False)
    (d / "mod.py").write_text("import numpy as np\n"
                              f"def digits():\n    z = np.load({str(d / 'digits.npz')!r})\n"
                              "    return (z['x_train'], z['y_train']), (z['x_test'], z['y_test'])\n")
    return d, x, y


def test_every_source_gives_the_same_arrays(sources, monkeypatch):
    d, x, y = sources
    monkeypatch.syspath_prepend(str(d))
    for spec in (d / "idx", d / "digits.npz", "mod:digits"):
        ds = load_data(str(spec))
        assert np.array_equal(ds.x_train, x) and np.array_equal(ds.y_train, y) and len(ds.x_test) == 1000, spec
    ds = load_data(str(d / "images"), model=sparsecomp.load(FIX / "lenet_sequential.h5"))
    assert ds.x_train.shape == (600, 28, 28, 1) and ds.x_test.shape == (200, 28, 28, 1)
    # class folders are sorted by name: class0..class9 are the digits
    assert np.array_equal(np.sort(ds.y_train), np.sort(y[:600]))


def test_idx_claims_are_checked_before_use():
    with pytest.raises(DataError) as e:
        parse_idx(bytes([0, 0, 8, 1]) + (10 ** 6).to_bytes(4, "big") + b"\0" * 10)
    assert e.value.rule == "data.format"
    with pytest.raises(DataError):
        parse_idx(b"\x01\x02\x03")


def test_shapes_and_labels_are_checked_against_the_model(sources):
    import keras
    d, x, y = sources
    m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(DataError) as e:
        prepare(load_data(str(d / "digits.npz")), m)
    assert e.value.rule == "data.shape" and "(28, 28)" in str(e.value) and "(32, 32, 3)" in str(e.value)
    m = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(4)])
    with pytest.raises(DataError) as e:
        prepare(load_data(str(d / "digits.npz")), m)
    assert e.value.rule == "data.labels" and "4 outputs" in str(e.value)
    # the boundary: labels 0..9 fit 10 outputs, a label 10 does not
    m10 = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x10, y10 = np.zeros((4, 28, 28), "float32"), np.array([0, 9, 3, 10])
    with pytest.raises(DataError) as e:
        prepare(Dataset(x10, y10), m10)
    assert e.value.rule == "data.labels" and "0..9" in str(e.value)


@pytest.mark.parametrize("kind", ["idx", "digits.npz", "images", "mod:digits"])
def test_cli_compresses_from_every_source(sources, kind, tmp_path, monkeypatch):
    d, _x, _y = sources
    monkeypatch.chdir(d)
    spec = kind if kind.startswith("mod:") else str(d / kind)
    assert main(["compress", str(FIX / "lenet_sequential.h5"), "--data", spec, "-o", str(tmp_path / "c.sparse.h5"),
                 "--one-shot", "--q", "0.5", "--json", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert out["summary"]["dense validation accuracy"] > 0.85
    assert out["summary"]["compressed test accuracy"] is not None        # the source's own test split
