"""Write the golden format-version-2 files (run once, with the v2 writer, at commit 0599bf1).

    python tests/golden/make_v2.py

Kept in the repository with their expected tensors so that every later reader is tested against
files a v2 writer really produced: ``v2_h5.sparse.h5`` (a packed Keras-3-layout ``.h5``: a sparse
kernel (codec ``gaps``), a kernel of 12 shared values (``shared``), a dense bias, an integer scalar
and a variable-length string attribute), ``v2_model.sparse.h5`` (``sparsecomp.save`` of a small
Sequential model: a sparse kernel, its ``config.json`` deflated), and ``expected_v2.npz`` (member
path -> array, and the model's output on a fixed input). ``GOLDEN.json`` gets a ``v2`` entry.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402


def main():
    import keras

    import sparsecomp
    rng = np.random.default_rng(20270214)
    src = HERE / "_v2_source.h5"
    k = rng.standard_normal((40, 30)).astype("<f4")
    k[rng.random(k.shape) < 0.85] = 0
    book = np.sort(rng.standard_normal(12)).astype("<f4")
    q = book[rng.integers(0, 12, (60, 20))]
    q[rng.random(q.shape) < 0.7] = 0
    b = rng.standard_normal(30).astype("<f4")
    tensors = {"layers/dense/vars/0": k, "layers/dense/vars/1": b, "layers/shared/vars/0": q, "step": np.int64(7)}
    with h5py.File(src, "w") as f:
        for path, a in tensors.items():
            f.create_dataset(path, data=a)
        f["layers/dense/vars"].attrs["name"] = "dense"     # a variable-length string attribute
    rep = sparsecomp.pack(src, HERE / "v2_h5.sparse.h5")
    src.unlink()
    assert {r.encoding for r in rep.records} >= {"gaps", "shared"}, [r.encoding for r in rep.records]

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                          keras.layers.Dense(3, name="fc2")], name="golden")
    w = m.get_weights()
    w[0][rng.random(w[0].shape) < 0.9] = 0
    m.set_weights(w)
    sparsecomp.save(m, HERE / "v2_model.sparse.h5")
    x = rng.standard_normal((5, 12)).astype("<f4")
    np.savez(HERE / "expected_v2.npz", **{f"h5:{p}": a for p, a in tensors.items()},
             **{f"model:{i}": a for i, a in enumerate(m.get_weights())},
             model_input=x, model_output=m.predict(x, verbose=0))
    with h5py.File(HERE / "v2_h5.sparse.h5") as f:
        version = int(f.attrs["format_version"])
    golden = json.loads((HERE / "GOLDEN.json").read_text())
    golden["v2"] = {"format_version": version, "writer": f"sparsecomp {sparsecomp.__version__}",
                    "keras": keras.__version__}
    (HERE / "GOLDEN.json").write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()
