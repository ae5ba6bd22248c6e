"""Checkpoints people already have: genuine Keras 2 files (written by tf-keras, see
tests/fixtures/keras2/make_fixtures.py), hand-built older layouts, weights-only files, models that
rescale their own input, and data-free compression."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import ROOT

import sparsecomp
from sparsecomp import DataError, UnsafeModelError, UnsupportedFormatError, WeightMismatchError
from sparsecomp.cli import main
from sparsecomp.keras2 import translate_config

FIX = ROOT / "tests" / "fixtures" / "keras2"
MANIFEST = json.loads((FIX / "MANIFEST.json").read_text())
FULL = ["lenet_sequential", "functional_merge", "nested_sequential", "rescaling_inside", "mlp_input_dim",
        "keras22_full_model_list_config"]
WEIGHTS = [("lenet_weights_only", "architectures:lenet_classic"), ("vgg_style_weights_only", "architectures:vgg_tiny"),
           ("keras22_weights_only_bytes", "architectures:lenet_classic")]


@pytest.fixture(autouse=True)
def _fixtures_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(FIX))


def expected(name):
    with np.load(FIX / f"{name}.expected.npz") as z:
        return z["x"], z["y"]


def test_fixtures_were_written_by_keras_2():
    assert MANIFEST and all(v.startswith("2.") for k, v in MANIFEST.items() if k in ("tf_keras_version",)) \
        or "tf_keras" in json.dumps(MANIFEST)
    for name in FULL:
        with h5py.File(FIX / f"{name}.h5") as f:
            v = f.attrs["keras_version"]
            assert (v.decode() if isinstance(v, bytes) else v).startswith("2.")
            assert "model_config" in f.attrs
    assert sum(p.stat().st_size for p in FIX.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", FULL)
def test_full_model_loads_like_tf_keras(name, tmp_path):
    x, y = expected(name)
    m = sparsecomp.load(FIX / f"{name}.h5")
    np.testing.assert_allclose(m.predict(x, verbose=0), y, atol=1e-5)
    sparsecomp.pack(FIX / f"{name}.h5", tmp_path / "p.sparse.h5")           # packed, then loaded: the same
    np.testing.assert_allclose(sparsecomp.load(tmp_path / "p.sparse.h5").predict(x, verbose=0), y, atol=1e-5)


@pytest.mark.parametrize("name,arch", WEIGHTS)
def test_weights_only_loads_into_an_architecture(name, arch):
    x, y = expected(name)
    m = sparsecomp.load(FIX / f"{name}.h5", architecture=arch)
    np.testing.assert_allclose(m.predict(x, verbose=0), y, atol=1e-5)
    with pytest.raises(sparsecomp.BadArgumentError):
        sparsecomp.load(FIX / f"{name}.h5")                                  # no architecture: refused


def test_weights_are_checked_shape_by_shape():
    with pytest.raises(WeightMismatchError) as e:
        sparsecomp.load(FIX / "lenet_weights_only.h5", architecture="architectures:vgg_tiny")
    assert e.value.rule in ("weights.layers", "weights.shape", "weights.count")


def _seq(layers):
    return {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}


def _dense(**extra):
    return {"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 3], **extra}}


@pytest.mark.parametrize("config,exc,rule", [
    (_seq([{"class_name": "Lambda", "config": {"name": "evil", "function": "x"}}]), UnsafeModelError, "model.lambda"),
    (_seq([{"class_name": "MyLayer", "config": {"name": "x"}}]), UnsupportedFormatError, "keras2.layer"),
    (_seq([_dense(kernel_initializer={"class_name": "Evil", "config": {}, "module": "os"})]), UnsafeModelError,
     "model.unknown_object"),
    (_seq([{"class_name": "BatchNormalization", "config": {"name": "b", "virtual_batch_size": 4}}]),
     UnsupportedFormatError, "keras2.config"),
])
def test_translator_refuses_code_and_unknown_classes(config, exc, rule):
    with pytest.raises(exc) as e:
        translate_config(config)
    assert e.value.rule == rule


def test_translation_is_data_only_and_deterministic():
    cfg = json.loads(h5py.File(FIX / "nested_sequential.h5").attrs["model_config"])
    a, b = translate_config(cfg), translate_config(cfg)
    assert a == b and json.loads(json.dumps(a)) == a
    assert "batch_input_shape" not in json.dumps(a)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every full-model fixture compressed through the CLI (one-shot: no training, deterministic)."""
    d = tmp_path_factory.mktemp("k2cli")
    codes = {}
    for name in FULL:
        codes[name] = main(["compress", str(FIX / f"{name}.h5"), "--data", "mnist", "--limit", "3000", "-o",
                            str(d / f"{name}.sparse.h5"), "--one-shot", "--q", "0.8", "--json",
                            str(d / f"{name}.json")])
    return d, codes


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_cli_compresses_each_keras2_fixture(cli_runs, name):
    import keras
    d, codes = cli_runs
    assert codes[name] == 0
    summary = json.loads((d / f"{name}.json").read_text())["summary"]
    assert summary["dense validation accuracy"] > 0.9                 # its own preprocessing: far above chance
    # the library on the same checkpoint and data gives the model the CLI saved
    model = sparsecomp.load(FIX / f"{name}.h5")
    from sparsecomp.data import load_data, prepare
    (x, y), _test, _ = prepare(load_data("mnist"), model, limit=3000)
    if not model.compiled:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
            from_logits=model.layers[-1].get_config().get("activation") not in ("softmax", "sigmoid")),
            metrics=["accuracy"])
    res = sparsecomp.compress(model, (x, y), d / f"{name}.lib.sparse.h5", one_shot=True, q=0.8,
                              validation_split=1 / 12)
    xs, _ = expected(name)
    loaded = sparsecomp.load(d / f"{name}.sparse.h5")
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), res.model.predict(xs, verbose=0), atol=1e-5)
    sparsecomp.unpack(d / f"{name}.sparse.h5", d / f"{name}.back.keras")
    np.testing.assert_allclose(keras.saving.load_model(d / f"{name}.back.keras").predict(xs, verbose=0),
                               res.model.predict(xs, verbose=0), atol=1e-5)


def test_a_model_that_rescales_its_input_gets_raw_pixels_or_a_clear_error(tmp_path, capsys):
    assert main(["compress", str(FIX / "rescaling_inside.h5"), "--data", "mnist", "--limit", "3000", "-o",
                 str(tmp_path / "ok.sparse.h5"), "--one-shot", "--json", str(tmp_path / "ok.json")]) == 0
    notes = json.loads((tmp_path / "ok.json").read_text())["notes"]
    assert any("input scale raw" in n and "Rescaling" in n for n in notes)
    capsys.readouterr()
    # the wrong scale (0-1 pixels into a model that divides by 255 itself): refused, nothing written
    assert main(["compress", str(FIX / "rescaling_inside.h5"), "--data", "mnist", "--limit", "3000",
                 "--input-scale", "0-1", "-o", str(tmp_path / "bad.sparse.h5")]) == 1
    err = capsys.readouterr().err
    assert "[data.baseline]" in err and "near chance" in err and "input scale" in err
    assert not (tmp_path / "bad.sparse.h5").exists() and not (tmp_path / "bad_report").exists()


def test_baseline_check_in_the_library():
    m = sparsecomp.load(FIX / "rescaling_inside.h5")
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    (x, y), _ = sparsecomp.load_mnist()
    x = x[:2000, ..., None].astype("float32") / 255.0              # wrong: the model wants 0-255
    with pytest.raises(DataError) as e:
        sparsecomp.prune(m, (x, y[:2000]), one_shot=True)
    assert e.value.rule == "data.baseline"
    with pytest.raises(DataError):
        sparsecomp.prune(m, (x * 255.0, y[:2000]), one_shot=True, expected_baseline=0.999)
    sparsecomp.prune(m, (x * 255.0, y[:2000]), one_shot=True)        # the right scale passes


def test_data_free_tensor_level_keeps_the_layout(tmp_path, capsys):
    src = FIX / "vgg_style_weights_only.h5"
    assert main(["compress", str(src), "--no-data", "--target-sparsity", "0.9", "-o", str(tmp_path / "v.sparse.h5"),
                 "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "accuracy                      not measured (no data)" in out and "validation" not in out
    info = json.loads((tmp_path / "v.json").read_text())["data_free"]
    assert abs(info["total_sparsity"] - 0.9) < 0.001
    assert main(["unpack", str(tmp_path / "v.sparse.h5"), "-o", str(tmp_path / "back.h5")]) == 0
    with h5py.File(src) as a, h5py.File(tmp_path / "back.h5") as b:
        assert sorted(a.attrs) == sorted(b.attrs)
        for name in ("fc1/fc1/kernel:0", "block1_conv1/block1_conv1/kernel:0", "fc1/fc1/bias:0"):
            x, y = a[name][()], b[name][()]
            kept = y != 0
            assert np.array_equal(x[kept], y[kept]) and (name.endswith("bias:0") or kept.mean() < 0.3)
    m = sparsecomp.load(tmp_path / "back.h5", architecture="architectures:vgg_tiny")   # the user's loader works
    assert m.count_params() == 59202
    assert main(["compress", str(src), "--no-data", "-o", str(tmp_path / "w.sparse.h5")]) == 1   # no target: refused


def test_data_free_tensor_level_never_imports_tensorflow(tmp_path):
    """A weights-only checkpoint pruned without data is pure HDF5 work: no TensorFlow in memory."""
    code = (f"import sys; from sparsecomp.cli import main; "
            f"rc = main(['compress', {str(FIX / 'vgg_style_weights_only.h5')!r}, '--no-data', '--target-sparsity', "
            f"'0.9', '-o', {str(tmp_path / 'v.sparse.h5')!r}]); "
            "print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split()[-3:] == ["0", "False", "False"], r.stdout[-500:] + r.stderr[-2000:]


def test_data_free_model_level_removes_dead_units(tmp_path, capsys):
    assert main(["compress", str(FIX / "lenet_sequential.h5"), "--no-data", "--target-sparsity", "0.95",
                 "--data-free-criterion", "magnitude", "-o", str(tmp_path / "l.sparse.h5"), "--json",
                 str(tmp_path / "l.json")]) == 0
    s = json.loads((tmp_path / "l.json").read_text())["summary"]
    assert s["accuracy"] == "not measured (no data)" and s["kernel sparsity reached"] == pytest.approx(0.95, abs=1e-3)
    assert s["non-zero parameters after"] < 0.1 * s["dense parameters"]
    assert sparsecomp.load(tmp_path / "l.sparse.h5").count_params() <= s["dense parameters"]


def test_cli_is_quiet(tmp_path):
    """No TensorFlow/absl/CUDA log line and no Keras warning unless -v."""
    r = subprocess.run([sys.executable, "-m", "sparsecomp.cli", "compress", str(FIX / "mlp_input_dim.h5"), "--data",
                        "mnist", "--limit", "2000", "--one-shot", "-o", str(tmp_path / "q.sparse.h5")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    noise = [ln for ln in r.stderr.splitlines() if not ln.startswith(("note:", "["))]
    assert noise == [], noise
    for marker in ("absl", "cuda", "oneDNN", "Warning", "WARNING", "tensorflow"):
        assert marker not in r.stderr and marker not in r.stdout
