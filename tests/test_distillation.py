"""Knowledge distillation in the fine-tuning engine: the loss, the packed targets, the gate, the refusals."""

import numpy as np
import pytest

import sparsecomp
from sparsecomp import BadArgumentError
from sparsecomp.distillation import cross_entropy_kind, distillation_loss, packed_targets


@pytest.fixture(scope="module")
def data():
    from sparsecomp import load_mnist
    (x, y), _ = load_mnist()
    return (x[:4000].astype("float32") / 255.0).reshape(-1, 784), y[:4000].astype("int64")


def _mlp(logits=False, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(48, activation="relu", name="fc1"),
                             keras.layers.Dense(10, activation=None if logits else "softmax", name="out")])


@pytest.fixture(scope="module")
def trained(data):
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(*data, epochs=2, batch_size=128, verbose=0)
    return m


def test_the_loss_is_cross_entropy_mixed_with_the_softened_teacher():
    import keras
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=8).astype("float32")
    q = rng.dirichlet(np.ones(5), size=8)
    labels = rng.integers(0, 5, size=8)
    hard = np.eye(5)[labels]
    t = 3.0
    qt = np.exp(np.log(q) / t)
    qt /= qt.sum(1, keepdims=True)
    y = np.concatenate([hard, qt], 1).astype("float32")
    lp = np.log(p.astype(np.float64))
    z = lp / t
    ls = z - np.log(np.exp(z).sum(1, keepdims=True))
    want = 0.7 * -(hard * lp).sum(1) + 0.3 * t * t * -(qt * ls).sum(1)
    got = keras.ops.convert_to_numpy(distillation_loss(0.3, t)(y, p))
    assert got == pytest.approx(want.mean(), rel=1e-5)
    # alpha 0 is plain cross-entropy on the labels
    ce = keras.losses.SparseCategoricalCrossentropy()(labels, p)
    assert float(distillation_loss(0.0, t)(y, p)) == pytest.approx(float(ce), rel=1e-5)
    # logits give the same loss as the softmax of them
    logits = rng.normal(size=(8, 5)).astype("float32")
    sm = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    assert float(distillation_loss(0.4, t, from_logits=True)(y, logits)) == \
        pytest.approx(float(distillation_loss(0.4, t)(y, sm)), rel=1e-4)
    # serializable: the fine-tuning compile config carries it as a config
    loss = distillation_loss(0.25, 2.0, True)
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert (back.alpha, back.temperature, back.from_logits) == (0.25, 2.0, True)


def test_packed_targets(trained, data):
    x, y = data
    x, y = x[:300], y[:300]
    out = packed_targets(trained, x, y, temperature=1.0, from_logits=False, batch_size=128)
    assert out.shape == (300, 20) and out.dtype == np.float32
    assert np.array_equal(out[:, :10].argmax(1), y) and np.all(out[:, :10].sum(1) == 1)
    assert np.allclose(out[:, 10:], trained.predict(x, verbose=0), atol=1e-5)      # T = 1: the predictions
    hot = packed_targets(trained, x, np.eye(10)[y], temperature=4.0, from_logits=False, batch_size=128)
    assert np.array_equal(hot[:, :10], out[:, :10]) and np.allclose(hot[:, 10:].sum(1), 1, atol=1e-5)
    # a higher temperature flattens: the top class keeps less probability
    assert np.all(hot[:, 10:].max(1) <= out[:, 10:].max(1) + 1e-6)
    with pytest.raises(BadArgumentError, match="labels run from"):
        packed_targets(trained, x, y + 5, temperature=1.0, from_logits=False, batch_size=128)


def test_prune_with_distillation_trains_toward_the_teacher(trained, data):
    import keras
    before = [w.copy() for w in trained.get_weights()]
    kw = dict(q0=0.5, step=0.5, max_q=1.5, epochs=1, recovery_epochs=0, max_drop=0.05, seed=3)
    plain, h0 = sparsecomp.prune(trained, data, **kw)
    kd, h1 = sparsecomp.prune(trained, data, distill=0.8, temperature=3.0, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.get_weights()))     # caller untouched
    # the baseline is the same accuracy read from predictions as Keras' metric
    assert h1.baseline == pytest.approx(h0.baseline, abs=1e-6)
    # the first step prunes the same weights; training differs (another loss), masks hold
    assert [s.q for s in h1.steps][:1] == [s.q for s in h0.steps][:1]
    k0, k1 = plain.get_layer("fc1").get_weights()[0], kd.get_layer("fc1").get_weights()[0]
    assert not np.array_equal(k0, k1)
    assert kd.get_compile_config()["loss"] == trained.get_compile_config()["loss"]       # the caller's config
    # the gate's figures are the returned model's: final metric = Keras' accuracy of it on validation
    nv = int(round(len(data[0]) * 0.1))
    acc = kd.evaluate(data[0][-nv:], data[1][-nv:], verbose=0, return_dict=True)["accuracy"]
    assert h1.final_metric == pytest.approx(acc, abs=1e-6)
    assert h1.settings["distill"] == 0.8 and h1.settings["temperature"] == 3.0
    # a model that outputs logits works the same way
    m = _mlp(logits=True)
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    m.fit(*data, epochs=1, verbose=0)
    _, h = sparsecomp.prune(m, data, distill=0.5, **kw)
    assert h.steps and h.baseline > 0.8


def test_distillation_refusals(trained, data):
    import keras
    import tensorflow as tf
    with pytest.raises(BadArgumentError, match="distill"):
        sparsecomp.prune(trained, data, distill=1.0)
    with pytest.raises(BadArgumentError, match="temperature"):
        sparsecomp.prune(trained, data, distill=0.5, temperature=0)
    mse = _mlp()
    mse.compile("adam", "mse", metrics=["accuracy"])
    with pytest.raises(BadArgumentError, match="cross-entropy"):
        sparsecomp.prune(mse, (data[0], np.eye(10)[data[1]]), distill=0.5, check_baseline=False)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(128)
    with pytest.raises(BadArgumentError, match="arrays"):
        sparsecomp.prune(trained, ds, validation_data=(data[0][:500], data[1][:500]), distill=0.5)
    assert cross_entropy_kind({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}) == \
        ("categorical", True)
    assert cross_entropy_kind(keras.losses.SparseCategoricalCrossentropy()) == ("sparse", False)


def test_cli_flags_reach_the_engine():
    from sparsecomp.cli_prune import TUNING_FLAGS
    from sparsecomp.training import FineTuning
    assert TUNING_FLAGS["distill"] == "distill" and TUNING_FLAGS["temperature"] == "temperature"
    assert {"distill", "temperature"} <= set(FineTuning.__dataclass_fields__)


def test_weight_sharing_distils_from_the_model_it_was_given(trained, data):
    pruned, _ = sparsecomp.prune(trained, data, one_shot=True, q=1.0)
    shared, h = sparsecomp.quantize(pruned, data, bits=3, epochs=1, recovery_epochs=0, max_drop=1.0, distill=0.6)
    assert h.settings["distill"] == 0.6
    k = shared.get_layer("fc1").get_weights()[0]
    assert np.array_equal(k == 0, pruned.get_layer("fc1").get_weights()[0] == 0)     # pruned positions stay zero
    assert len(np.unique(k[k != 0])) <= 8                                                # 3 bits: 8 shared values


def test_an_uncompiled_model_gets_the_plain_loss_back(data):
    """The model handed back never carries the distillation loss (it wants packed targets)."""
    import keras
    src = _mlp()
    src.compile("adam", "sparse_categorical_crossentropy")
    src.fit(*data, epochs=1, verbose=0)
    bare = _mlp()
    bare.set_weights(src.get_weights())
    assert not bare.compiled
    out, h = sparsecomp.prune(bare, data, one_shot=True, q=0.5, loss="sparse_categorical_crossentropy",
                              distill=0.5)
    assert out.get_compile_config()["loss"] == "sparse_categorical_crossentropy"
    assert 0.5 < h.final_metric <= 1.0
    # compiled without metrics: the gate's metric is still read, the caller's config kept
    out, h = sparsecomp.prune(src, data, one_shot=True, q=0.5, distill=0.5)
    assert out.get_compile_config()["metrics"] is None and 0.5 < h.final_metric <= 1.0


def test_labels_and_losses_distillation_understands(trained, data):
    import keras
    x, y = data[0][:200], data[1][:200]
    # compiled with the function rather than the class: still a cross-entropy
    fn = keras.losses.sparse_categorical_crossentropy
    assert cross_entropy_kind(keras.saving.serialize_keras_object(fn)) == ("sparse", False)
    assert cross_entropy_kind(fn) == ("sparse", False)
    with pytest.raises(BadArgumentError, match=r"shape \(200, 3\)"):        # one-hot of the wrong width
        packed_targets(trained, x, np.eye(3)[y % 3], temperature=2.0, from_logits=False, batch_size=128)
    with pytest.raises(BadArgumentError, match="dtype"):
        packed_targets(trained, x, y + 0.5, temperature=2.0, from_logits=False, batch_size=128)
    with pytest.raises(BadArgumentError, match="class accuracy"):
        sparsecomp.prune(trained, data, distill=0.5, metric="binary_accuracy")


def test_cli_refuses_a_temperature_without_distillation(tmp_path, trained):
    from sparsecomp.cli import main
    path = tmp_path / "m.keras"
    trained.save(path)
    code = main(["compress", str(path), "--data", "mnist", "--limit", "600", "-o", str(tmp_path / "o.sparse.h5"),
                 "--temperature", "2"])
    assert code != 0
    assert not (tmp_path / "o.sparse.h5").exists()


def test_checkpoints_written_before_distillation_existed_still_resume(trained, data, tmp_path):
    """A checkpoint whose fine-tuning settings lack the fields added since resumes: they had their defaults."""
    import json
    kw = dict(q0=0.5, step=0.5, max_q=1.0, epochs=1, recovery_epochs=0, max_drop=0.05, checkpoint_dir=tmp_path)
    done, h = sparsecomp.prune(trained, data, **kw)
    meta_path = tmp_path / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    for k in ("distill", "temperature"):
        del meta["tuning"][k]
    meta_path.write_text(json.dumps(meta))
    again, h2 = sparsecomp.prune(trained, data, resume=True, **kw)
    assert [s.q for s in h2.steps] == [s.q for s in h.steps]
    meta["tuning"]["temperature"] = 2.0                      # a setting that differs is still refused
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BadArgumentError, match="temperature"):
        sparsecomp.prune(trained, data, resume=True, **kw)
