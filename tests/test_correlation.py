"""Correlation pruning: the streaming r(w, dw) equals numpy's, the criterion keeps what it should,
masks hold across cycles."""

import numpy as np
import pytest
from conftest import mnist_trained

import sparsecomp
from sparsecomp import BadArgumentError
from sparsecomp.criteria import correlation_mask, std_threshold_mask
from sparsecomp.recorder import CorrelationRecorder
from sparsecomp.masks import MaskSet


def _trajectory_model():
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(2, name="b")])
    ms = MaskSet(m)
    mask = np.random.default_rng(0).random((6, 5)) > 0.3
    ms.set("a", mask)
    return m, ms, mask


@pytest.mark.parametrize("start_at", [0, 20])
def test_streaming_correlation_equals_numpy_corrcoef(start_at):
    import keras
    m, ms, mask = _trajectory_model()
    rec = CorrelationRecorder(ms, ["a"])
    m.compile(keras.optimizers.Adam(0.01), "mse")
    traj = [np.asarray(m.get_layer("a").kernel.numpy())]

    class Keep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            traj.append(np.asarray(self.model.get_layer("a").kernel.numpy()))

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(640, 6)), rng.normal(size=(640, 2))
    m.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[Keep(), rec.callback(start_at)])
    t = np.array(traj)                       # 41 states: before training, after each of 40 steps
    w, d = t[1:][start_at:], (t[1:] - t[:-1])[start_at:]
    assert rec.iterations("a") == len(w) == 40 - start_at
    r = rec.correlation("a")
    ref = np.zeros(mask.shape)
    for i, j in zip(*np.nonzero(mask)):
        ref[i, j] = np.corrcoef(w[:, i, j], d[:, i, j])[0, 1]
    assert np.abs(ref[mask]).max() > 0.3                 # a real signal, not all zeros
    np.testing.assert_allclose(r[mask], ref[mask], atol=2e-5)
    assert np.all(r[~mask] == 0)                         # masked weights never move: r undefined -> 0
    assert np.all(t[-1][~mask] == 0)                     # and the mask still held while recording
    rec.release()


def test_recorder_is_off_until_started_and_resets():
    import keras
    m, ms, _ = _trajectory_model()
    rec = CorrelationRecorder(ms, ["a"])
    m.compile(keras.optimizers.Adam(0.01), "mse")
    rng = np.random.default_rng(1)
    m.fit(rng.normal(size=(64, 6)), rng.normal(size=(64, 2)), batch_size=32, epochs=1, verbose=0)
    assert rec.iterations("a") == 0 and np.all(rec.correlation("a") == 0)
    rec.start()
    m.fit(rng.normal(size=(64, 6)), rng.normal(size=(64, 2)), batch_size=32, epochs=2, verbose=0)
    assert rec.iterations("a") == 4
    rec.reset()
    assert rec.iterations("a") == 0
    with pytest.raises(BadArgumentError, match="not prunable"):
        CorrelationRecorder(ms, ["nope"])


def test_correlated_small_weight_survives_where_magnitude_cuts_it():
    # ten weights; sigma of all ten is ~1.3. Weight 0 is the smallest but strongly correlated;
    # weight 5 is larger but its |r| is the weakest.
    w = np.array([0.05, 0.2, 0.3, 0.4, 2.5, 0.6, 3.0, -3.0, 2.8, -2.6])
    r = np.array([0.95, 0.1, 0.15, 0.2, 0.1, 0.01, 0.3, 0.3, 0.3, 0.3])
    corr = correlation_mask(w, r, q=1.0, p=0.4)
    pruned_corr = set(np.flatnonzero(~corr))
    assert 0 not in pruned_corr                  # strongly correlated: kept
    assert 5 in pruned_corr                      # weakest |r| and below q*sigma: cut
    assert 4 not in pruned_corr                  # weak |r| but large: kept (both conditions needed)
    # plain magnitude pruning of the same number of weights cuts weight 0 and keeps weight 5
    k = len(pruned_corr)
    thr = np.sort(np.abs(w))[k]
    mag = std_threshold_mask(w, thr)
    assert (~mag).sum() == k
    assert not mag[0] and mag[5]


def test_correlation_mask_counts_and_never_regrows():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 30))
    r = rng.uniform(-1, 1, size=w.shape)
    prev = rng.random(w.shape) > 0.5
    keep = correlation_mask(w, r, q=100.0, p=0.4, previous=prev)     # q huge: |r| alone decides
    assert not np.any(keep & ~prev)                                  # pruned stay pruned
    assert (prev & ~keep).sum() == int(np.floor(0.4 * prev.sum()))
    # sigma is taken over the survivors only
    keep = correlation_mask(w, np.zeros_like(r), q=1.0, p=1.0, previous=prev)
    sigma = np.std(w[prev])
    assert np.array_equal(keep, prev & (np.abs(w) >= sigma))
    with pytest.raises(BadArgumentError, match="p"):
        correlation_mask(w, r, q=1.0, p=40)
    with pytest.raises(BadArgumentError, match="shape"):
        correlation_mask(w, r[:, :3], q=1.0, p=0.4)


@pytest.fixture(scope="module")
def small_mnist_model():
    return mnist_trained("lenet_300_100", 4000, epochs=2)


def test_prune_correlation_last_layer_first_and_masks_hold(small_mnist_model):
    model, data = small_mnist_model
    before = [w.copy() for w in model.get_weights()]
    steps = []
    pruned, hist = sparsecomp.prune_correlation(model, data, q=1.0, p=0.4, epochs=1, max_drop=0.05,
                                                max_cycles=2, progress=steps.append)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, model.get_weights()))   # caller untouched
    assert [s.group for s in steps[:3]] == ["fc3", "fc2", "fc1"]                       # last layer first
    assert hist.settings["method"] == "correlation"
    assert {s.extra["cycle"] for s in steps} == {1, 2}
    assert all(s.extra["recorded_iterations"] >= 2 for s in steps)
    # per layer, sparsity never falls along accepted steps (pruned weights never regrow)
    for name in ("fc1", "fc2", "fc3"):
        seq = [s.sparsity[name] for s in steps if s.accepted and s.group == name]
        assert seq == sorted(seq) and seq
        assert hist.final_sparsity[name] == pytest.approx(seq[-1])
    for layer in ("fc1", "fc2", "fc3"):
        k = np.asarray(pruned.get_layer(layer).kernel.numpy())
        assert (k == 0).mean() == pytest.approx(hist.final_sparsity[layer])
    # a second run starts from the first one's zeros: they stay zero through its cycles
    zeros = {n: np.asarray(pruned.get_layer(n).kernel.numpy()) == 0 for n in ("fc1", "fc2", "fc3")}
    again, hist2 = sparsecomp.prune_correlation(pruned, data, q=1.0, p=0.4, epochs=1, max_drop=0.05,
                                                max_cycles=1)
    for n, z in zeros.items():
        assert np.all(np.asarray(again.get_layer(n).kernel.numpy())[z] == 0)
        assert hist2.final_sparsity[n] >= z.mean()


def test_prune_correlation_arguments(small_mnist_model):
    model, data = small_mnist_model
    for kw, match in ((dict(p=1.5), "p"), (dict(record_fraction=0), "record_fraction"), (dict(q=-1), "q"),
                      (dict(layers=["nope"]), "nope"), (dict(epochs=0), "epochs"), (dict(max_cycles=0), "max_cycles")):
        with pytest.raises(BadArgumentError, match=match):
            sparsecomp.prune_correlation(model, data, **kw)
