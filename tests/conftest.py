import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def h5_content(path):
    """Every group/dataset of an HDF5 file with its attributes and data, for exact comparison."""
    out = {}

    def attrs(obj):
        res = {}
        for k in obj.attrs:
            aid = obj.attrs.get_id(k)
            v = obj.attrs[k]
            res[k] = (str(aid.dtype), repr(h5py.check_string_dtype(aid.dtype)), aid.shape,
                      repr(v.tolist() if hasattr(v, "tolist") else v))
        return res

    with h5py.File(path, "r") as f:
        out["/"] = ("group", attrs(f))

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                raw = data.tobytes() if isinstance(data, np.ndarray) and data.dtype.kind in "biuf" else repr(data)
                out[name] = ("dataset", str(obj.dtype), repr(h5py.check_string_dtype(obj.dtype)), obj.shape, raw,
                             attrs(obj))
            else:
                out[name] = ("group", attrs(obj))
        f.visititems(visit)
    return out


def same_weights(m1, m2):
    w1, w2 = m1.get_weights(), m2.get_weights()
    return len(w1) == len(w2) and all(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
                                      for a, b in zip(w1, w2))


GOLDEN = ROOT / "tests" / "golden"


def golden_expected(name: str) -> dict:
    """What the golden files must decode to (``tests/golden/<name>``, an ``.npz``)."""
    with np.load(GOLDEN / name) as z:
        return {k: z[k] for k in z.files}


def golden_versions(*names) -> list:
    """The ``format_version`` of golden files ``tests/golden/<name>.sparse.h5``."""
    out = []
    for name in names:
        with h5py.File(GOLDEN / f"{name}.sparse.h5") as f:
            out.append(int(f.attrs["format_version"]))
    return out


def check_golden_packed(path, expected, out):
    """A golden packed ``.h5`` (``tests/golden/``): verified, every tensor bit-exactly as ``expected``
    (keys ``h5:<path>``), unpacked to ``out`` with its variable-length attribute back. Returns the report."""
    import sparsecomp
    rep = sparsecomp.verify(path)
    got = dict(sparsecomp.read_tensors(path))
    assert set(got) == {k[3:] for k in expected if k.startswith("h5:")}
    for k, a in got.items():
        want = expected["h5:" + k]
        assert a.dtype == want.dtype and a.shape == want.shape and a.tobytes() == want.tobytes()
    sparsecomp.unpack(path, out)
    with h5py.File(out) as f:
        assert f["layers/dense/vars"].attrs["name"] == "dense"
        assert h5py.check_string_dtype(f["layers/dense/vars"].attrs.get_id("name").dtype).length is None  # vlen again
        assert f["layers/dense/vars/0"][()].tobytes() == expected["h5:layers/dense/vars/0"].tobytes()
        assert f["step"][()] == 7
    return rep


def check_golden_model(path, expected):
    """A golden model file: loaded with bit-exact weights (keys ``model:<i>``), predicting the golden
    output. Returns its inspect report."""
    import sparsecomp
    m = sparsecomp.load(path)
    for i, w in enumerate(m.get_weights()):
        assert w.tobytes() == expected[f"model:{i}"].tobytes()
    # The weights are bit-exact (above); the forward pass is compared to the golden output within
    # float32 rounding, since oneDNN's kernels (and so the last bit) differ between CPUs.
    np.testing.assert_allclose(m.predict(expected["model_input"], verbose=0), expected["model_output"],
                               rtol=1e-5, atol=1e-6)
    return sparsecomp.inspect(path, baseline=False)


def prune_by_magnitude(model, sparsity, seed=0):
    """Zero the smallest-magnitude fraction of every kernel (a stand-in for a pruned model)."""
    ws = []
    for w in model.get_weights():
        if w.ndim >= 2 and sparsity > 0:
            t = np.quantile(np.abs(w), sparsity)
            w = np.where(np.abs(w) <= t, 0, w).astype(w.dtype)
        ws.append(w)
    model.set_weights(ws)
    return model


def mnist_trained(name: str, n: int, epochs: int = 1, batch_size: int = 128, seed: int = 0):
    """A ``models.zoo`` model trained briefly on the first ``n`` MNIST images: ``(model, (x, y))``."""
    import keras

    import sparsecomp
    from models import zoo
    (x, y), _ = sparsecomp.load_mnist()
    x = x[:n, ..., None].astype("float32") / 255.0
    y = y[:n].astype("int64")
    keras.utils.set_random_seed(seed)
    m = getattr(zoo, name)()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return m, (x, y)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
