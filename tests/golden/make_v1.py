"""Write the golden format-version-1 files (run once, with the v1 writer, at commit 5e8b0da).

    python tests/golden/make_v1.py

Kept in the repository with their expected tensors so that every later reader is tested against
files a v1 writer really produced: ``v1_h5.sparse.h5`` (a packed Keras-3-layout ``.h5`` with a
CSR kernel, a dense bias, an integer scalar and a variable-length string attribute),
``v1_model.sparse.h5`` (``sparsecomp.save`` of a small Sequential model, one CSR kernel), and
``expected.npz`` (member path -> array, and the model's output on a fixed input).

``v1_hostile_base.sparse.h5`` is the base file of the version-1 hostile classes: the
``base_h5`` checkpoint of ``tests/hostile/make_hostile.py`` at the same commit (a 200x300
kernel, 90% zeros, as CSR; a dense bias; an int64 counter) packed by that commit's writer.
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
    rng = np.random.default_rng(20261121)
    src = HERE / "_v1_source.h5"
    k = rng.standard_normal((40, 30)).astype("<f4")
    k[rng.random(k.shape) < 0.85] = 0
    b = rng.standard_normal(30).astype("<f4")
    with h5py.File(src, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "dense"                     # a variable-length string attribute
        g.create_dataset("0", data=k)
        g.create_dataset("1", data=b)
        f.create_dataset("step", data=np.int64(7))
    sparsecomp.pack(src, HERE / "v1_h5.sparse.h5")
    src.unlink()

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                          keras.layers.Dense(3, name="fc2")], name="golden")
    w = m.get_weights()
    w[0][rng.random(w[0].shape) < 0.9] = 0
    m.set_weights(w)
    sparsecomp.save(m, HERE / "v1_model.sparse.h5")
    x = rng.standard_normal((5, 12)).astype("<f4")
    np.savez(HERE / "expected.npz", **{"h5:layers/dense/vars/0": k, "h5:layers/dense/vars/1": b,
                                        "h5:step": np.int64(7),
                                        **{f"model:{i}": a for i, a in enumerate(m.get_weights())},
                                        "model_input": x, "model_output": m.predict(x, verbose=0)})
    with h5py.File(HERE / "v1_h5.sparse.h5") as f:
        info = {"format_version": int(f.attrs["format_version"]), "writer": f.attrs["writer"].decode()}
    (HERE / "GOLDEN.json").write_text(json.dumps({"v1": info, "keras": keras.__version__}, indent=1) + "\n")


if __name__ == "__main__":
    main()
