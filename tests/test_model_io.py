"""Model level: save/load of keras.Model, architecture from module:function, never mutating."""

import numpy as np
import pytest
from conftest import prune_by_magnitude, same_weights

import sparsecomp
from sparsecomp import BadArgumentError, WeightMismatchError


def bn_model():
    import keras
    from keras import layers
    inp = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, name="c1")(inp)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    y = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(4, name="head")(x)
    m = keras.Model(inp, out, name="bn_model")
    # make BatchNorm statistics non-trivial
    w = m.get_weights()
    rng = np.random.default_rng(3)
    m.set_weights([a + rng.standard_normal(a.shape).astype(a.dtype) * 0.1 if a.ndim == 1 else a for a in w])
    return m


def builders():
    from models import zoo
    return {"lenet5": (zoo.lenet5, (28, 28, 1)), "lenet_300_100": (zoo.lenet_300_100, (28, 28, 1)),
            "bn_model": (bn_model, (12, 12, 3))}


@pytest.mark.parametrize("name", ["lenet5", "lenet_300_100", "bn_model"])
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_load_save_bit_identical(tmp_path, name, sparsity):
    import keras
    keras.utils.set_random_seed(0)
    build, shape = builders()[name]
    m = prune_by_magnitude(build(), sparsity)
    before = [w.copy() for w in m.get_weights()]
    rep = sparsecomp.save(m, tmp_path / "m.sparse.h5")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, m.get_weights()))   # not mutated
    m2 = sparsecomp.load(tmp_path / "m.sparse.h5")
    assert same_weights(m, m2)
    x = np.random.default_rng(1).random((8, *shape)).astype("float32")
    assert np.array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))
    if sparsity:
        assert rep.totals()["ratio"] > 3
    assert rep.totals()["params"] == m.count_params()


def test_compiled_model_and_optimizer_state(tmp_path):
    import keras

    from models import zoo
    keras.utils.set_random_seed(0)
    m = zoo.lenet_300_100()
    m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((32, 28, 28, 1)).astype("float32")
    m.fit(x, np.arange(32) % 10, epochs=1, verbose=0)
    rep = sparsecomp.save(m, tmp_path / "opt.sparse.h5", include_optimizer=True)
    assert rep.totals("optimizer")["tensors"] == len(m.optimizer.variables)
    m2 = sparsecomp.load(tmp_path / "opt.sparse.h5")
    assert m2.compiled and same_weights(m, m2)
    for a, b in zip(m.optimizer.variables, m2.optimizer.variables):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    rep2 = sparsecomp.save(m, tmp_path / "noopt.sparse.h5")
    assert rep2.totals("optimizer")["tensors"] == 0 and rep2.optimizer_dropped


def test_weights_only_with_architecture(tmp_path):
    import keras

    from models import zoo
    keras.utils.set_random_seed(0)
    m = prune_by_magnitude(zoo.lenet5(), 0.8)
    m.save_weights(tmp_path / "l5.weights.h5")
    sparsecomp.pack(tmp_path / "l5.weights.h5", tmp_path / "l5.sparse.h5")
    with pytest.raises(BadArgumentError) as e:
        sparsecomp.load(tmp_path / "l5.sparse.h5")
    assert e.value.rule == "argument.architecture"
    m2 = sparsecomp.load(tmp_path / "l5.sparse.h5", architecture="models.zoo:lenet5")
    assert same_weights(m, m2)
    with pytest.raises(WeightMismatchError):
        sparsecomp.load(tmp_path / "l5.sparse.h5", architecture="models.zoo:lenet_300_100")
    with pytest.raises(BadArgumentError):
        sparsecomp.load(tmp_path / "l5.sparse.h5", architecture="models.zoo")


def test_model_file_with_wrong_architecture(tmp_path):
    from models import zoo
    sparsecomp.save(zoo.lenet5(), tmp_path / "l5.sparse.h5")
    with pytest.raises(WeightMismatchError):
        sparsecomp.load(tmp_path / "l5.sparse.h5", architecture=zoo.lenet_300_100)


def test_save_rejects_bad_arguments(tmp_path):
    from models import zoo
    with pytest.raises(BadArgumentError):
        sparsecomp.save("not a model", tmp_path / "x.sparse.h5")
    with pytest.raises(BadArgumentError):
        sparsecomp.save(zoo.lenet5(), tmp_path / "x.sparse.h5", min_ratio=0.5)
    assert not (tmp_path / "x.sparse.h5").exists()


def test_unpack_model_file_to_keras(tmp_path):
    import keras

    from models import zoo
    m = prune_by_magnitude(zoo.lenet_300_100(), 0.9)
    sparsecomp.save(m, tmp_path / "m.sparse.h5")
    sparsecomp.unpack(tmp_path / "m.sparse.h5", tmp_path / "m.keras")
    assert same_weights(m, keras.saving.load_model(tmp_path / "m.keras"))


def test_reference_parameter_counts():
    from models import zoo
    assert zoo.lenet5().count_params() == 431080
    assert zoo.lenet_300_100().count_params() == 266610
