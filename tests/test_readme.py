"""The README's Python examples run as written (the README is the contract)."""

import re

import numpy as np
from conftest import ROOT


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    import keras

    import sparsecomp
    from models import zoo
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = sparsecomp.load_mnist()
    x_train = (x[:1500].astype("float32") / 255)[..., None]
    y_train = y[:1500].astype("int64")
    x_test = (xt[:500].astype("float32") / 255)[..., None]
    y_test = yt[:500].astype("int64")
    model = zoo.lenet_300_100()   # any model: the README code is generic; this one trains fast
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=1, verbose=0)
    model.save("model.keras")
    zoo.lenet5().save_weights("w.weights.h5")      # the README loads it with models.zoo:lenet5
    sparsecomp.pack("w.weights.h5", "weights.sparse.h5")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    resnet = zoo.resnet_small()
    resnet.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    resnet.fit(x_train, y_train, epochs=8, verbose=0)    # BatchNorm statistics settle: well above chance
    ns = {"model": model, "resnet": resnet, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
          "sparsecomp": sparsecomp, "print": lambda *a, **k: None}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    assert ns["history"].rounds and ns["small"].count_params() <= resnet.count_params()
    assert (tmp_path / "m.sparse.h5").exists()
    assert (tmp_path / "model.sparse.h5").exists() and (tmp_path / "report" / "report.html").exists()
    assert isinstance(ns["result"].summary["file ratio (Keras / sparse)"], float)
    assert np.all(np.isfinite(ns["smaller"].predict(x_test[:4], verbose=0)))
