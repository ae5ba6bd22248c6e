"""Trained weight sharing and the ``shared`` codec: codebooks, zeros held, exact storage."""

import json

import numpy as np
import pytest

import sparsecomp
from sparsecomp import BadArgumentError
from sparsecomp.quantize import kmeans_1d, quantize, share
from sparsecomp.storage import codecs
from sparsecomp.storage.codecs import StreamRef, TensorHeader
from sparsecomp.storage.streams import decode_stream


def test_kmeans_1d_inits_and_few_values():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(-1, 0.1, 500), rng.normal(2, 0.1, 500)])
    for init in ("linear", "density"):
        c = kmeans_1d(v, 2, init=init)
        assert len(c) == 2 and abs(c[0] + 1) < 0.05 and abs(c[1] - 2) < 0.05
    assert np.array_equal(kmeans_1d(np.array([3.0, 3.0, 5.0]), 8), [3.0, 5.0])


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_share_keeps_zeros_and_at_most_2_to_the_bits_values(bits):
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((60, 40)).astype("float32")
    w[rng.random(w.shape) < 0.8] = 0
    s, codes = share(w, bits)
    assert np.array_equal(s == 0, w == 0) and ((codes < 0) == (w == 0)).all()
    assert 1 <= len(np.unique(s[s != 0])) <= 2 ** bits
    assert np.abs(s - w)[w != 0].max() < np.abs(w).max()


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", "<i2"])
def test_shared_codec_round_trips_any_dtype(dtype):
    rng = np.random.default_rng(1)
    book = (rng.standard_normal(20) * 40).astype(dtype)
    a = book[rng.integers(0, 20, (50, 30))]
    a[rng.random(a.shape) < 0.7] = 0
    enc = codecs.CODECS["shared"].encode(a, level=2, max_ratio=1024, nnz=int((a != 0).sum()))
    assert enc is not None
    enc.nnz = int(np.count_nonzero(a.view({2: "u2", 4: "u4", 8: "u8"}[a.itemsize])))
    h = TensorHeader("t", a.shape, a.dtype, "shared", enc.params,
                     tuple(StreamRef(s.coding, s.stored, s.size) for s in enc.streams), nnz=enc.nnz)
    codecs.get("shared").check(h)
    out = codecs.get("shared").decode(h, [decode_stream(s.data, s.coding, s.size, max_ratio=1024)
                                          for s in enc.streams])
    assert out.tobytes() == a.tobytes()
    assert codecs.choose(a).codec == "shared"


@pytest.fixture(scope="module")
def pruned_model():
    """LeNet-300-100 trained briefly, then pruned to 70% by magnitude (the input stage two sees)."""
    from conftest import mnist_trained, prune_by_magnitude
    m, (x, y) = mnist_trained("lenet_300_100", 8000, epochs=2)
    prune_by_magnitude(m, 0.7)
    return m, (x, y)


def test_quantize_shares_each_layer_and_holds_the_zeros(pruned_model, tmp_path):
    m, (x, y) = pruned_model
    before = [w.copy() for w in m.get_weights()]
    q, h = quantize(m, (x, y), bits=4, epochs=1, recovery_epochs=0, max_drop=0.05, learning_rate=1e-4)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, m.get_weights()))     # caller's model untouched
    for name in ("fc1", "fc2", "fc3"):
        w0 = m.get_layer(name).kernel.numpy()
        w = q.get_layer(name).kernel.numpy()
        assert np.array_equal(w == 0, w0 == 0)                                          # zeros held, none added
        assert len(np.unique(w[w != 0])) <= 16 and h.layers[name]["bits"] == 4
    assert [t.layer for t in h.trials] == ["fc1", "fc2", "fc3"]                          # largest first
    rep = sparsecomp.save(q, tmp_path / "q.sparse.h5")
    assert {r.encoding for r in rep.records if r.path.endswith("/0")} == {"shared"}
    assert all(r.details["k"] <= 16 for r in rep.records if r.encoding == "shared")
    back = sparsecomp.load(tmp_path / "q.sparse.h5")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(q.get_weights(), back.get_weights()))   # bit for bit
    assert json.loads(h.to_json())["layers"]["fc1"]["k"] == h.layers["fc1"]["k"]


def _gate_by_bits(monkeypatch, need):
    """Make the gate a deterministic function of the bits being tried: a trial passes when it
    shares with at least ``need`` bits (the fine-tuning still runs; only its verdict is fixed)."""
    import importlib
    qmod = importlib.import_module("sparsecomp.quantize")
    tried = []
    real_install, real_fine_tune = qmod._install, qmod.FineTuner.fine_tune

    def install(tuner, name, bits, init):
        tried.append(bits)
        return real_install(tuner, name, bits, init)

    def fine_tune(self, *a, **k):
        value, used, _ok = real_fine_tune(self, *a, **k)
        return value, used, tried[-1] >= need

    monkeypatch.setattr(qmod, "_install", install)
    monkeypatch.setattr(qmod.FineTuner, "fine_tune", fine_tune)
    return tried


def test_search_tries_the_widest_then_bisects_for_the_fewest_bits(pruned_model, monkeypatch):
    m, (x, y) = pruned_model
    tried = _gate_by_bits(monkeypatch, 3)
    q, h = quantize(m, (x, y), bits="search", layers=["fc3"], min_bits=1, max_bits=6, epochs=1, recovery_epochs=0)
    assert [t.bits for t in h.trials] == [6, 3, 1, 2]           # widest, then bisection of 1..5
    assert [t.accepted for t in h.trials] == [True, True, False, False]
    assert h.layers["fc3"]["bits"] == 3 and tried[-1] == 3      # the best trial's sharing is the one kept
    w, w0 = q.get_layer("fc3").kernel.numpy(), m.get_layer("fc3").kernel.numpy()
    assert 1 < len(np.unique(w[w != 0])) <= 8 and np.array_equal(w == 0, w0 == 0)


def test_search_leaves_a_layer_float_when_the_widest_fails(pruned_model, monkeypatch):
    m, (x, y) = pruned_model
    _gate_by_bits(monkeypatch, 9)
    q, h = quantize(m, (x, y), bits="search", layers=["fc3"], min_bits=2, max_bits=6, epochs=1, recovery_epochs=0)
    assert [t.bits for t in h.trials] == [6] and h.layers == {}                  # one trial, then given up
    assert q.get_layer("fc3").kernel.numpy().tobytes() == m.get_layer("fc3").kernel.numpy().tobytes()


def test_post_training_without_data_and_by_layer_type(pruned_model):
    m, _ = pruned_model
    q, h = quantize(m, None, bits={"fc": 3})
    assert h.accuracy.startswith("not measured") and h.final_metric is None
    assert all(len(np.unique(w[w != 0])) <= 8 for w in (q.get_layer(n).kernel.numpy() for n in ("fc1", "fc2", "fc3")))
    with pytest.raises(BadArgumentError):
        quantize(m, None, bits="search")
    with pytest.raises(BadArgumentError):
        quantize(m, None, bits=9)
    with pytest.raises(BadArgumentError):
        quantize(m, None, bits={"nope": 3})


def test_compress_with_quantization_reports_the_stored_files_accuracy(pruned_model, tmp_path):
    m, (x, y) = pruned_model
    res = sparsecomp.compress(m, (x, y), tmp_path / "c.sparse.h5", one_shot=True, q=0.5, test_data=(x[:500], y[:500]),
                              quantize=4, quantize_options={"epochs": 1, "recovery_epochs": 0})
    s = res.summary
    assert s["bits per layer"] == {"fc1": 4, "fc2": 4, "fc3": 4} and "quantized validation accuracy" in s
    loaded = sparsecomp.load(tmp_path / "c.sparse.h5", compile=False)
    loaded.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    acc = loaded.evaluate(x[:500], y[:500], verbose=0, return_dict=True)["accuracy"]
    assert s["compressed test accuracy"] == round(acc, 5)
    assert res.storage.codecs().get("shared") == 3
