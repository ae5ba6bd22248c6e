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
