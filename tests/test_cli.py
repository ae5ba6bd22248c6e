"""The command line: each verb works, and bad input exits non-zero with a message, no traceback."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, prune_by_magnitude

import sparsecomp
from sparsecomp.cli import main


@pytest.fixture(scope="module")
def trained_dense(tmp_path_factory):
    """A LeNet-300-100 trained for one epoch on 10,000 MNIST images (far above chance), as .keras."""
    from conftest import mnist_trained
    d = tmp_path_factory.mktemp("dense")
    m, _ = mnist_trained("lenet_300_100", 10000)
    m.save(d / "dense.keras")
    return d / "dense.keras"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from models import zoo
    d = tmp_path_factory.mktemp("cli")
    m = prune_by_magnitude(zoo.lenet_300_100(), 0.95)
    m.save(d / "m.keras")
    return d


def test_pack_inspect_verify_unpack(ckpt, capsys):
    d = ckpt
    assert main(["pack", str(d / "m.keras"), "-o", str(d / "m.sparse.h5")]) == 0
    assert "file on disk" in capsys.readouterr().out
    assert main(["inspect", str(d / "m.sparse.h5"), "--json", "--in-process"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["totals"]["weights"]["params"] == 266610 and js["keras_bytes"] > js["file_bytes"]
    assert main(["verify", str(d / "m.sparse.h5")]) == 0          # isolated child by default
    assert capsys.readouterr().out.startswith("OK")
    assert main(["inspect", str(d / "m.sparse.h5")]) == 0         # isolated parse, then the baseline
    assert "Keras' own dense file" in capsys.readouterr().out
    assert main(["unpack", str(d / "m.sparse.h5"), "-o", str(d / "back.keras")]) == 0
    assert (d / "back.keras").exists()
    assert main(["unpack", str(d / "m.sparse.h5"), "-o", str(d / "back.keras")]) == 1   # no overwrite


def test_errors_exit_nonzero_without_traceback(tmp_path):
    bad = tmp_path / "bad.sparse.h5"
    bad.write_bytes(b"garbage" * 20)
    for verb in (["verify", str(bad)], ["inspect", str(bad)], ["pack", str(bad), "-o", str(tmp_path / "o")],
                 ["verify", str(tmp_path / "missing.h5")]):
        r = subprocess.run([sys.executable, "-m", "sparsecomp.cli", *verb], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
        assert "[file." in r.stderr


def test_prune_and_compress_commands(trained_dense, capsys, tmp_path):
    import keras
    assert main(["prune", str(trained_dense), "--data", "mnist", "-o", str(tmp_path / "p.keras"),
                 "--one-shot", "--q", "1.0", "--history", str(tmp_path / "h.json")]) == 0
    hist = json.loads((tmp_path / "h.json").read_text())
    assert hist["steps"][0]["q"] == 1.0 and hist["settings"]["one_shot"] is True
    p = keras.saving.load_model(tmp_path / "p.keras")
    assert (p.get_layer("fc1").kernel.numpy() == 0).mean() > 0.25
    capsys.readouterr()
    assert main(["compress", str(trained_dense), "--data", "mnist", "-o", str(tmp_path / "c.sparse.h5"),
                 "--one-shot", "--q", "2.0", "--json", str(tmp_path / "c.json")]) == 0
    out, err = capsys.readouterr()
    assert "file ratio (Keras / sparse)" in out and "step   1" in err and "sparsity [" in err
    assert (tmp_path / "c_report" / "report.html").exists()
    summary = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert summary[".sparse.h5 bytes"] == (tmp_path / "c.sparse.h5").stat().st_size
    assert main(["verify", str(tmp_path / "c.sparse.h5")]) == 0


def test_prune_bad_arguments_exit_cleanly(tmp_path, capsys):
    assert main(["prune", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "o.keras")]) == 1
    assert "error:" in capsys.readouterr().err


def test_compress_with_bits_and_data_prints_each_trial(trained_dense, tmp_path, capsys):
    out = tmp_path / "q.sparse.h5"
    assert main(["compress", str(trained_dense), "--data", "mnist", "--limit", "3000", "-o", str(out),
                 "--one-shot", "--q", "1.0", "--bits", "4", "--epochs", "1", "--max-drop", "0.05", "--progress",
                 "--json", str(tmp_path / "q.json")]) == 0
    err = capsys.readouterr().err
    shared = [ln for ln in err.splitlines() if " share " in ln]
    layers = json.loads((tmp_path / "q.json").read_text())["summary"]["bits per layer"]
    assert len(shared) >= len(layers) >= 3 and all("4 bits" in ln for ln in shared), err
    assert "shared" in sparsecomp.inspect(out, baseline=False).codecs()


def test_state_folders_follow_the_overwrite_policy(trained_dense, tmp_path, capsys):
    """A new run does not replace an earlier run's checkpoint, nor an interruption's saved state."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "checkpoint.json").write_text("{}")
    out = tmp_path / "c.sparse.h5"
    base = ["compress", str(trained_dense), "--data", "mnist", "--limit", "2000", "-o", str(out), "--one-shot",
            "--q", "1.0"]
    import signal
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(base + ["--checkpoint-dir", str(ckpt)]) == 1
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before   # handlers left as found
    assert "the checkpoint folder" in capsys.readouterr().err and (ckpt / "checkpoint.json").read_text() == "{}"
    (tmp_path / "c.sparse.h5.interrupted").mkdir()
    (tmp_path / "c.sparse.h5.interrupted" / "checkpoint.json").write_text("{}")
    assert main(base) == 1
    assert "interruption" in capsys.readouterr().err and not out.exists()


def test_compress_with_correlation_method(trained_dense, tmp_path, capsys):
    assert main(["compress", str(trained_dense), "--data", "mnist", "-o", str(tmp_path / "c.sparse.h5"),
                 "--method", "correlation", "--layers", "fc3", "--max-cycles", "1", "--max-drop", "1.0",
                 "--json", str(tmp_path / "c.json")]) == 0
    hist = json.loads((tmp_path / "c.json").read_text())["history"]
    assert hist["settings"]["method"] == "correlation" and hist["settings"]["p"] == 0.4
    assert [s["group"] for s in hist["steps"]] == ["fc3"]
    assert hist["steps"][0]["extra"]["pruned_now"] > 0
    assert main(["verify", str(tmp_path / "c.sparse.h5")]) == 0
    capsys.readouterr()
    assert main(["compress", str(trained_dense), "-o", str(tmp_path / "x.sparse.h5"),
                 "--method", "correlation", "--q0", "0.3"]) == 1
    assert "--q0 belongs to --method std" in capsys.readouterr().err
    assert main(["prune", str(trained_dense), "-o", str(tmp_path / "x.keras"), "--layers", "fc1"]) == 1
    assert "--layers belongs to --method correlation" in capsys.readouterr().err
    assert not (tmp_path / "x.sparse.h5").exists() and not (tmp_path / "x.keras").exists()


def test_prune_structured_command(tmp_path, capsys):
    import keras
    from conftest import mnist_trained
    m, _ = mnist_trained("lenet5", 4000)
    m.save(tmp_path / "dense.keras")
    assert main(["prune-structured", str(tmp_path / "dense.keras"), "-o", str(tmp_path / "s.keras"),
                 "--criterion", "l1", "--fraction", "0.5", "--scope", "layer", "--epochs", "0", "--max-drop", "1",
                 "--history", str(tmp_path / "h.json")]) == 0
    out, err = capsys.readouterr()
    assert "round  1 l1" in err and "filters per layer: conv1 10/20, conv2 25/50, fc1 250/500" in out
    s = keras.saving.load_model(tmp_path / "s.keras")
    assert tuple(s.get_layer("conv2").kernel.shape) == (5, 5, 10, 25)
    assert json.loads((tmp_path / "h.json").read_text())["rounds"][0]["filters"]["fc1"] == [250, 500]
    assert main(["prune-structured", str(tmp_path / "dense.keras"), "-o", str(tmp_path / "t.keras"),
                 "--criterion", "magnitude", "--threshold", "0.5"]) == 1
    assert "fraction" in capsys.readouterr().err and not (tmp_path / "t.keras").exists()


def test_prune_fine_tuning_flags(trained_dense, tmp_path, capsys):
    assert main(["prune", str(trained_dense), "-o", str(tmp_path / "p.keras"), "--groups", "fc3",
                 "--q0", "0.5", "--max-q", "0.5", "--epochs", "2", "--max-drop", "1.0", "--lr", "0.01",
                 "--lr-decay", "0.5", "--l2", "0.001", "--history", str(tmp_path / "h.json")]) == 0
    hist = json.loads((tmp_path / "h.json").read_text())
    assert hist["settings"]["lr_decay"] == 0.5 and hist["settings"]["l2"] == 0.001
    assert hist["settings"]["learning_rate"] == 0.01 and hist["steps"][0]["epochs"] == 2
    capsys.readouterr()
    assert main(["prune", str(trained_dense), "-o", str(tmp_path / "x.keras"), "--lr-decay", "2"]) == 1
    assert "`lr_decay` must be a finite number in (0.0, 1.0]" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()


def test_progress_lines_show_elapsed_time_and_an_estimate_of_what_is_left(monkeypatch):
    """Each decided step: elapsed time and ETA = steps left at the nominal step size x mean step time."""
    import io
    from types import SimpleNamespace

    from sparsecomp import cli_prune
    clock = iter([100.0, 160.0, 220.0, 230.0])                 # start, then the time at each step
    monkeypatch.setattr(cli_prune.time, "time", lambda: next(clock))
    out = io.StringIO()
    args = SimpleNamespace(method="std", q0=0.5, step=0.5, max_q=2.0, rounds=None, max_cycles=None)
    printer = cli_prune._StepPrinter(args, 2, stream=out)
    step = dict(total_sparsity=0.5, val_metric=0.99, drop=0.001, epochs=1, accepted=True)
    printer(SimpleNamespace(group="conv", q=0.5, **step))     # 60 s; left: 3 q's here + 4 in the next group
    printer(SimpleNamespace(group="conv", q=1.0, **step))     # 120 s over 2 steps; left: 2 + 4
    printer(SimpleNamespace(layer="fc1", bits=4, k=16, val_metric=0.99, drop=0.0, epochs=1, accepted=True))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[   60.0s]") and "ETA ~7.0 min" in lines[0]
    assert lines[1].startswith("[  120.0s]") and "ETA ~6.0 min" in lines[1]
    assert "share" in lines[2] and "4 bits" in lines[2] and "ETA" not in lines[2]


def test_validation_data_decides_instead_of_a_split(trained_dense, tmp_path, capsys):
    """--validation-data: the gate's baseline is the model's accuracy on that data, and all of --data trains."""
    import keras
    import numpy as np
    (x, y), _ = sparsecomp.load_mnist()
    np.savez(tmp_path / "train.npz", x_train=x[:3000], y_train=y[:3000])
    np.savez(tmp_path / "val.npz", x_train=x[50000:51000], y_train=y[50000:51000], x_test=x[:5], y_test=y[:5])
    assert main(["prune", str(trained_dense), "--data", str(tmp_path / "train.npz"), "--validation-data",
                 str(tmp_path / "val.npz"), "-o", str(tmp_path / "p.keras"), "--one-shot", "--q", "1.0",
                 "--history", str(tmp_path / "h.json")]) == 0
    err = capsys.readouterr().err
    assert "validation: the 1,000 training samples of arrays in" in err
    hist = json.loads((tmp_path / "h.json").read_text())
    m = keras.saving.load_model(trained_dense)
    xv = (x[50000:51000].astype("float32") / 255.0).reshape((-1,) + tuple(m.input_shape[1:]))
    want = m.evaluate(xv, y[50000:51000], verbose=0, return_dict=True)["accuracy"]
    assert hist["baseline"] == pytest.approx(want, abs=1e-6)
    assert main(["compress", str(trained_dense), "--no-data", "--target-sparsity", "0.5", "--validation-data",
                 str(tmp_path / "val.npz"), "-o", str(tmp_path / "c.sparse.h5")]) == 1
    assert "--validation-data needs data to train on" in capsys.readouterr().err
    assert not (tmp_path / "c.sparse.h5").exists()


def test_passes_flag_belongs_to_std(trained_dense, tmp_path, capsys):
    from sparsecomp.cli_prune import METHOD_FLAGS
    assert METHOD_FLAGS["std"]["passes"] == "passes"
    assert all("passes" not in flags for m, flags in METHOD_FLAGS.items() if m != "std")
    assert main(["compress", str(trained_dense), "--data", "mnist", "--limit", "2000", "-o",
                 str(tmp_path / "o.sparse.h5"), "--method", "correlation", "--passes", "2"]) == 1
    assert "--passes belongs to --method std" in capsys.readouterr().err
    assert not (tmp_path / "o.sparse.h5").exists()
