"""Iterative std-threshold pruning: masks hold, groups freeze, steps revert, the caller's model is untouched."""

import numpy as np
import pytest

import sparsecomp
from sparsecomp import BadArgumentError
from sparsecomp.masks import MaskSet


@pytest.fixture(scope="module")
def mnist_small():
    from sparsecomp import load_mnist
    (x, y), (xt, yt) = load_mnist()
    x = (x[:6000].astype("float32") / 255.0)[..., None]
    xt = (xt[:2000].astype("float32") / 255.0)[..., None]
    return (x, y[:6000].astype("int64")), (xt, yt[:2000].astype("int64"))


@pytest.fixture(scope="module")
def trained(mnist_small):
    import keras

    from models import zoo
    keras.utils.set_random_seed(0)
    m = zoo.lenet_300_100()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    (x, y), _ = mnist_small
    m.fit(x, y, epochs=2, batch_size=128, verbose=0)
    return m


def test_masks_hold_through_training():
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="a"), keras.layers.Dense(2, name="b")])
    ms = MaskSet(m)
    rng = np.random.default_rng(0)
    mask = rng.random((8, 16)) > 0.6
    ms.set("a", mask)
    m.compile(keras.optimizers.Adam(0.05), "mse")
    m.fit(rng.random((256, 8)), rng.random((256, 2)), epochs=3, verbose=0)
    k = np.asarray(m.get_layer("a").kernel.numpy())
    assert np.all(k[~mask] == 0)                         # held at zero through every update
    assert np.all(k[mask] != 0)                          # the others did train
    ms.set("a", mask & (rng.random((8, 16)) > 0.5))      # a new mask needs no retrace
    m.fit(rng.random((64, 8)), rng.random((64, 2)), epochs=1, verbose=0)
    assert np.all(np.asarray(m.get_layer("a").kernel.numpy())[~ms.masks["a"]] == 0)


def test_prune_never_touches_the_callers_model(trained, mnist_small):
    (x, y), (xt, _) = mnist_small
    before = [w.copy() for w in trained.get_weights()]
    pred = trained.predict(xt[:32], verbose=0)
    pruned, hist = sparsecomp.prune(trained, (x, y), q0=0.5, step=0.5, max_q=1.0, epochs=1, max_drop=0.05)
    assert pruned is not trained
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, trained.get_weights()))
    assert np.array_equal(pred, trained.predict(xt[:32], verbose=0))
    assert hist.final_sparsity["fc1"] > 0.3


def test_schedule_groups_threshold_and_revert(trained, mnist_small):
    (x, y), _ = mnist_small
    pruned, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"]], q0=1.0, step=0.5, max_q=8.0,
                                    epochs=1, max_drop=0.0)
    # sigma is the std of the trained kernel at the start of the group; thresholds are q*sigma
    sigma = float(np.std(np.asarray(trained.get_layer("fc1").kernel.numpy())))
    assert hist.sigma["fc1"] == pytest.approx(sigma, rel=1e-6)
    for s in hist.steps:
        assert s.thresholds["fc1"] == pytest.approx(s.q * sigma, rel=1e-6)
    # with max_drop=0 some step must fail before q=8 (nearly everything pruned): it is reverted and ends the group
    assert hist.steps[-1].accepted is False
    last_ok = [s for s in hist.steps if s.accepted]
    expected = last_ok[-1].sparsity["fc1"] if last_ok else 0.0
    assert hist.final_sparsity["fc1"] == pytest.approx(expected)
    # layers outside the group were frozen: bit-identical to the input model
    for name in ("fc2", "fc3"):
        for a, b in zip(trained.get_layer(name).get_weights(), pruned.get_layer(name).get_weights()):
            assert a.tobytes() == b.tobytes()
    # sparsity only grows along accepted steps (pruned weights never regrow)
    sp = [s.sparsity["fc1"] for s in hist.steps if s.accepted]
    assert sp == sorted(sp)
    k = np.asarray(pruned.get_layer("fc1").kernel.numpy())
    assert (k == 0).mean() == pytest.approx(hist.final_sparsity["fc1"])
    assert not np.any(np.signbit(k[k == 0]))             # the returned model holds exact +0.0 only


def test_one_shot_is_a_pure_threshold(trained, mnist_small):
    (x, y), _ = mnist_small
    pruned, hist = sparsecomp.prune(trained, (x, y), one_shot=True, q=1.0)
    assert len(hist.steps) == 1 and all(s.epochs == 0 for s in hist.steps)   # one group: fc
    for name in ("fc1", "fc2", "fc3"):
        w = np.asarray(trained.get_layer(name).kernel.numpy())
        expect = np.where(np.abs(w) >= 1.0 * np.std(w), w, 0)
        assert np.array_equal(np.asarray(pruned.get_layer(name).kernel.numpy()), expect)


def test_dropout_rescaled_by_sqrt_density(mnist_small):
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(64, activation="relu", name="h"),
                          keras.layers.Dropout(0.5, name="drop"), keras.layers.Dense(10, activation="softmax", name="o")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    (x, y), _ = mnist_small
    pruned, hist = sparsecomp.prune(m, (x, y), groups=[["o"]], one_shot=True, q=1.0, check_baseline=False)
    density = 1 - hist.final_sparsity["o"]
    assert pruned.get_layer("drop").rate == pytest.approx(0.5 * np.sqrt(density))
    assert m.get_layer("drop").rate == 0.5


def test_tf_data_input(trained, mnist_small):
    import tensorflow as tf
    (x, y), _ = mnist_small
    ds = tf.data.Dataset.from_tensor_slices((x[:5000], y[:5000])).batch(128)
    val = tf.data.Dataset.from_tensor_slices((x[5000:], y[5000:])).batch(256)
    pruned, hist = sparsecomp.prune(trained, ds, validation_data=val, q0=0.5, step=0.5, max_q=1.0, max_drop=0.05)
    assert hist.final_sparsity["fc1"] > 0.3
    with pytest.raises(BadArgumentError):
        sparsecomp.prune(trained, ds)


@pytest.mark.parametrize("kwargs,rule", [({"groups": [["nope"]]}, "argument.groups"),
                                         ({"groups": [["fc1"], ["fc1"]]}, "argument.groups"),
                                         ({"q0": -1}, "argument.q0"), ({"step": 0}, "argument.step"),
                                         ({"max_drop": float("nan")}, "argument.max_drop"),
                                         ({"epochs": -1}, "argument.epochs"),
                                         ({"lr_decay": 0}, "argument.lr_decay"),
                                         ({"lr_decay": 1.5}, "argument.lr_decay"),
                                         ({"lr_decay": float("nan")}, "argument.lr_decay"),
                                         ({"l2": -1e-4}, "argument.l2")])
def test_bad_arguments(trained, mnist_small, kwargs, rule):
    (x, y), _ = mnist_small
    with pytest.raises(BadArgumentError) as e:
        sparsecomp.prune(trained, (x, y), **kwargs)
    assert e.value.rule == rule


def test_history_round_trips(trained, mnist_small):
    (x, y), _ = mnist_small
    _, hist = sparsecomp.prune(trained, (x, y), one_shot=True, q=0.8)
    again = sparsecomp.PruneHistory.from_dict(hist.to_dict())
    assert again.to_dict() == hist.to_dict()


def test_compress_end_to_end(trained, mnist_small, tmp_path):
    (x, y), test = mnist_small
    res = sparsecomp.compress(trained, (x, y), tmp_path / "m.sparse.h5", test_data=test, report_dir=tmp_path / "rep",
                              q0=1.0, step=1.0, max_q=3.0, max_drop=0.05)
    loaded = sparsecomp.load(tmp_path / "m.sparse.h5")
    xt, _ = test
    # the saved file is the small model; the small model computes what the pruned model computes
    np.testing.assert_allclose(loaded.predict(xt[:64], verbose=0), res.pruned_model.predict(xt[:64], verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert res.summary[".sparse.h5 bytes"] == (tmp_path / "m.sparse.h5").stat().st_size
    keras_bytes = res.summary["Keras dense .keras bytes (no optimizer)"]
    assert res.summary["file ratio (Keras / sparse)"] == round(keras_bytes / res.storage.file_bytes, 2)
    assert res.storage.file_bytes < keras_bytes and res.history.final_sparsity["fc1"] > 0.5
    for f in ("report.html", "histograms.png", "accuracy.png", "density.png", "bytes.png", "history.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 1000 or f == "history.json"
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "histograms.png" in html and "Per layer" in html


def test_test_data_decides_nothing(trained, mnist_small, tmp_path):
    """The protocol: test data is read after the final model exists and only reported. Replace it
    with noise and every decision, every validation figure and every byte of the file are the same;
    only the reported test accuracy changes."""
    (x, y), (xt, yt) = mnist_small
    rng = np.random.default_rng(1)
    noise = (rng.random(xt.shape).astype("float32"), rng.integers(0, 10, len(yt)).astype("int64"))
    kw = dict(q0=1.0, step=1.0, max_q=4.0, max_drop=0.01, quantize=4)
    real = sparsecomp.compress(trained, (x, y), tmp_path / "a.sparse.h5", test_data=(xt, yt), **kw)
    fake = sparsecomp.compress(trained, (x, y), tmp_path / "b.sparse.h5", test_data=noise, **kw)
    def decisions(res):
        steps = [(s.group, s.q, s.accepted, s.val_metric, s.sparsity) for s in res.history.steps]
        trials = [{k: v for k, v in t.__dict__.items() if k != "seconds"} for t in res.quantize_history.trials]
        return steps, trials, res.quantize_history.layers, res.quantize_history.final_metric

    decided = decisions(real)
    assert any(s[2] for s in decided[0]) and not all(s[2] for s in decided[0]), decided   # accepts and reverts
    assert decided[1], "no quantization trial"
    assert decisions(fake) == decided
    assert (tmp_path / "a.sparse.h5").read_bytes() == (tmp_path / "b.sparse.h5").read_bytes()
    assert real.summary["compressed test accuracy"] > 0.8 > 0.2 > fake.summary["compressed test accuracy"]
    assert real.summary["dense test accuracy"] > 0.8 > 0.2 > fake.summary["dense test accuracy"]


def test_counts_in_the_summary_are_the_files(trained, mnist_small, tmp_path):
    """The non-zero count and the parameter reduction are what the stored file holds."""
    (x, y), _ = mnist_small
    res = sparsecomp.compress(trained, (x, y), tmp_path / "m.sparse.h5", q0=1.0, step=1.0, max_q=3.0, max_drop=0.05)
    stored = sparsecomp.load(tmp_path / "m.sparse.h5")
    nz = sum(int(np.count_nonzero(w)) for w in stored.get_weights())
    assert res.summary["non-zero parameters after"] == nz
    dense = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10           # LeNet-300-100, counted by hand
    assert res.summary["dense parameters"] == dense
    assert res.summary["parameter reduction (dense / non-zero)"] == round(dense / nz, 2)
    assert res.summary["parameters after dead-unit removal"] == stored.count_params() <= dense
    assert res.summary["bytes per non-zero (all in)"] == round((tmp_path / "m.sparse.h5").stat().st_size / nz, 3)
    total = res.layers[-1] if res.layers[-1]["layer"] == "total" else None
    assert total is not None and total["non-zero after removal"] == nz


def _gate_by_sparsity(monkeypatch, limit):
    """Make the gate a deterministic function of the masks: a step passes while the pruned layers'
    sparsity stays below ``limit`` (the schedule's logic, not the network's luck, is under test)."""
    from sparsecomp.training import FineTuner
    monkeypatch.setattr(FineTuner, "passes", lambda self, value: self.total_sparsity() < limit)


def test_backoff_retries_half_steps(trained, mnist_small, monkeypatch):
    (x, y), _ = mnist_small
    _gate_by_sparsity(monkeypatch, 0.6)
    _, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"]], q0=1.0, step=2.0, max_q=12.0, epochs=1,
                               recovery_epochs=0, max_drop=0.0, min_step=0.3)
    steps = hist.steps
    assert any(not s.accepted for s in steps) and any(s.accepted for s in steps)
    q_ok, step = 0.0, 2.0
    for i, s in enumerate(steps):                  # replay the rule and compare every q
        if i:
            assert s.q == pytest.approx(expected)  # noqa: F821 - set by the previous iteration
        if s.accepted:
            q_ok = s.q
            expected = s.q + step
        else:
            step = (s.q - q_ok) / 2
            expected = q_ok + step
    assert not steps[-1].accepted and (steps[-1].q - q_ok) / 2 < 0.3      # ended: the next half step is too small
    assert sum(not s.accepted for s in steps) >= 2                            # it did back off, more than once


def test_max_reverts_and_group_settings(trained, mnist_small, monkeypatch):
    (x, y), _ = mnist_small
    _gate_by_sparsity(monkeypatch, 0.6)
    _, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"]], q0=1.0, step=2.0, max_q=12.0, epochs=1,
                               recovery_epochs=0, min_step=0.01, max_reverts=1)
    assert [s.accepted for s in hist.steps][-1] is False
    assert sum(not s.accepted for s in hist.steps) == 1                      # the first revert ended the group
    monkeypatch.undo()
    _, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"], ["fc2", "fc3"]], q0=0.5, step=0.5, max_q=0.5,
                               epochs=1, recovery_epochs=0, max_drop=1.0,
                               group_settings={"group1": {"epochs": 2, "q0": 1.0, "max_q": 1.5}})
    assert [(s.group, s.q, s.epochs) for s in hist.steps] == [("group1", 1.0, 2), ("group1", 1.5, 2),
                                                              ("group2", 0.5, 1)]
    for bad in ({"nope": {"epochs": 1}}, {"group1": {"colour": 1}}, {"group1": {"epochs": 0}}, ["group1"]):
        with pytest.raises(BadArgumentError, match="group_settings"):
            sparsecomp.prune(trained, (x, y), groups=[["fc1"]], group_settings=bad)


def test_target_sparsity_stops_the_schedule(trained, mnist_small):
    (x, y), _ = mnist_small
    _, hist = sparsecomp.prune(trained, (x, y), q0=0.5, step=0.5, max_q=8.0, epochs=1, max_drop=0.05,
                               target_sparsity=0.6)
    accepted = [s for s in hist.steps if s.accepted]
    assert accepted[-1].total_sparsity >= 0.6
    assert all(s.total_sparsity < 0.6 for s in accepted[:-1])      # it stopped at the first step past it
    with pytest.raises(BadArgumentError):
        sparsecomp.prune(trained, (x, y), target_sparsity=1.5)


def test_final_epochs_train_every_layer_and_keep_the_best_on_validation(trained, mnist_small):
    (x, y), _ = mnist_small
    kw = dict(groups=[["fc1"], ["fc2", "fc3"]], q0=0.5, step=0.5, max_q=1.0, epochs=1, max_drop=0.05)
    plain, h0 = sparsecomp.prune(trained, (x, y), **kw)
    polished, h1 = sparsecomp.prune(trained, (x, y), final_epochs=2, **kw)
    assert len(h1.final_tuning) == 2 and 0 <= h1.final_kept <= 2
    assert h1.epochs == h0.epochs + 2
    # the schedule is the same run up to the final epochs; the masks never move after it
    assert [s.val_metric for s in h1.steps] == [s.val_metric for s in h0.steps]
    for a, b in zip(plain.get_weights(), polished.get_weights()):
        assert np.array_equal(a == 0, b == 0) or a.ndim == 1
    best = max([h0.final_metric] + h1.final_tuning)
    assert h1.final_metric == pytest.approx(best, abs=1e-6)          # kept: the best on validation
    if h1.final_kept:
        assert h1.final_metric > h0.final_metric
        # every layer trained: the first group's kernel moved too (it was frozen while the second was pruned)
        k0, k1 = plain.get_layer("fc1").get_weights()[0], polished.get_layer("fc1").get_weights()[0]
        assert not np.array_equal(k0, k1)
    else:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(plain.get_weights(), polished.get_weights()))
    with pytest.raises(BadArgumentError, match="final_epochs"):
        sparsecomp.prune(trained, (x, y), final_epochs=-1)


def test_max_epochs_is_a_fine_tuning_budget(trained, mnist_small):
    (x, y), _ = mnist_small
    _, hist = sparsecomp.prune(trained, (x, y), q0=0.5, step=0.5, max_q=5.0, epochs=1, recovery_epochs=0,
                               max_drop=1.0, max_epochs=2)
    assert [s.epochs for s in hist.steps] == [1, 1]
    _, hist = sparsecomp.prune_correlation(trained, (x, y), epochs=1, recovery_epochs=0, max_drop=1.0,
                                           max_epochs=3)
    assert [s.epochs for s in hist.steps] == [2, 1]          # the first step records for one epoch first
    with pytest.raises(BadArgumentError, match="max_epochs"):
        sparsecomp.prune(trained, (x, y), max_epochs=-1)


def _spy_fits(monkeypatch, seen):
    """Record (epochs, learning rate) of every keras fit the engine makes."""
    import keras
    fit = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("epochs"), float(np.asarray(self.optimizer.learning_rate))))
        return fit(self, *args, **kwargs)
    monkeypatch.setattr(keras.Model, "fit", spy)


def test_lr_decay_restarts_every_step(trained, mnist_small, monkeypatch):
    (x, y), _ = mnist_small
    seen = []
    _spy_fits(monkeypatch, seen)
    _, hist = sparsecomp.prune(trained, (x, y), q0=0.5, step=0.5, max_q=1.0, epochs=3, recovery_epochs=0,
                               max_drop=1.0, learning_rate=0.01, lr_decay=0.5)
    assert len(hist.steps) == 2 and hist.settings["lr_decay"] == 0.5
    assert [e for e, _ in seen] == [1] * 6                       # one epoch at a time
    np.testing.assert_allclose([lr for _, lr in seen], [0.01, 0.005, 0.0025] * 2, rtol=1e-6)


def test_lr_decay_continues_through_recovery_epochs(trained, mnist_small, monkeypatch):
    (x, y), _ = mnist_small
    calls = []
    _spy_fits(monkeypatch, calls)
    # max_drop=0 with no tolerance for any fall: the step uses its recovery epochs, then is reverted
    _, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"]], q0=6.0, step=1.0, max_q=6.0, epochs=1,
                               recovery_epochs=2, max_drop=0.0, learning_rate=0.01, lr_decay=0.1)
    assert not hist.steps[0].accepted and hist.steps[0].epochs == 3
    np.testing.assert_allclose([lr for _, lr in calls], [0.01, 0.001, 0.0001], rtol=1e-6)


def test_l2_pulls_the_fine_tuned_kernels_in_and_stays_out_of_the_result(trained, mnist_small):
    import keras
    (x, y), _ = mnist_small
    kw = dict(groups=[["fc1", "fc2"]], one_shot=False, q0=0.5, step=1.0, max_q=0.5, epochs=2, max_drop=1.0,
              learning_rate=1e-3)
    keras.utils.set_random_seed(1)
    plain, _ = sparsecomp.prune(trained, (x, y), **kw)
    keras.utils.set_random_seed(1)
    shrunk, hist = sparsecomp.prune(trained, (x, y), l2=0.05, **kw)
    assert hist.settings["l2"] == 0.05
    for n in ("fc1", "fc2"):           # the penalised kernels end up with a smaller norm
        a = np.linalg.norm(plain.get_layer(n).kernel.numpy())
        b = np.linalg.norm(shrunk.get_layer(n).kernel.numpy())
        assert b < 0.9 * a, (n, a, b)
    # fc3 was frozen: not trained, so its penalty never entered the loss and it is unchanged
    np.testing.assert_array_equal(shrunk.get_layer("fc3").kernel.numpy(), trained.get_layer("fc3").kernel.numpy())
    # the returned model (and the caller's) carry no regularizer and no loss term
    for m in (shrunk, trained):
        assert all(layer.get_config().get("kernel_regularizer") is None for layer in m.layers if layer.weights)
        assert all(getattr(w, "regularizer", None) is None for w in m.weights)


def test_lr_decay_refuses_a_schedule(trained, mnist_small):
    import keras
    (x, y), _ = mnist_small
    sched = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=100, decay_rate=0.9)
    with pytest.raises(BadArgumentError, match="LearningRateSchedule") as e:
        sparsecomp.prune(trained, (x, y), optimizer=keras.optimizers.Adam(sched), lr_decay=0.5)
    assert e.value.rule == "argument.lr_decay"


def test_passes_go_over_the_groups_again_from_where_each_ended(trained, mnist_small):
    (x, y), _ = mnist_small
    kw = dict(groups=[["fc1"], ["fc2", "fc3"]], q0=0.5, step=0.5, max_q=1.3, epochs=1, max_drop=0.05,
              target_sparsity=0.99, final_epochs=1)
    _, one = sparsecomp.prune(trained, (x, y), **kw)
    _, two = sparsecomp.prune(trained, (x, y), passes=2, **kw)
    first = len(one.steps)
    assert [(s.group, s.q) for s in one.steps] == [("group1", 0.5), ("group1", 1.0), ("group2", 0.5), ("group2", 1.0)]
    # the first pass is the same run; then one round of every layer training together, then the second pass
    assert [s.val_metric for s in two.steps[:first]] == [s.val_metric for s in one.steps]
    assert len(two.passes) == 1 and two.passes[0]["after_step"] == first and len(two.passes[0]["polish"]) == 1
    later = two.steps[first:]
    assert [(s.group, s.q, s.extra) for s in later] == [("group1", 1.25, {"pass": 2}), ("group2", 1.25, {"pass": 2})]
    for s in later:                                   # q keeps its meaning: the first pass's sigma
        for n, t in s.thresholds.items():
            assert t == pytest.approx(1.25 * two.sigma[n])
    assert two.epochs == sum(s.epochs for s in two.steps) + 1 + len(two.final_tuning)
    assert two.settings["passes"] == 2 and one.settings["passes"] == 1


def test_no_second_pass_once_the_target_is_reached(trained, mnist_small):
    (x, y), _ = mnist_small
    _, hist = sparsecomp.prune(trained, (x, y), groups=[["fc1"], ["fc2", "fc3"]], q0=0.5, step=0.5, max_q=1.0,
                               epochs=1, max_drop=0.05, target_sparsity=0.2, passes=3)
    assert hist.passes == [] and hist.steps[-1].total_sparsity >= 0.2
    assert all(not s.extra for s in hist.steps)
    with pytest.raises(BadArgumentError, match="passes"):
        sparsecomp.prune(trained, (x, y), passes=0)
