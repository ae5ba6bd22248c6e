"""Long runs that lose nothing: outputs checked before work, one overwrite policy, Ctrl-C saves
the last decided state, and a run killed with SIGKILL and resumed ends exactly where an
uninterrupted run ends (std, correlation and structured pruning)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from sparsecomp.cli import main

pytestmark = pytest.mark.slow   # killed and resumed runs in subprocesses: the slow tier (CI runs it)


RUN = ROOT / "tests" / "longrun" / "run_method.py"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A trained LeNet-300-100 and 2,000 MNIST images, on disk for the child processes."""
    from conftest import mnist_trained
    d = tmp_path_factory.mktemp("longrun")
    m, (x, y) = mnist_trained("lenet_300_100", 6000, epochs=2)
    m.save(d / "model.keras")
    np.savez(d / "data.npz", x_train=x[:2000], y_train=y[:2000])
    return d


def _run(small, method, ckpt, out, resume=False, wait=True):
    args = [sys.executable, str(RUN), method, str(small / "model.keras"), str(small / "data.npz"), str(ckpt), str(out)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    p = subprocess.Popen(args + (["--resume"] if resume else []), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return p


def _counter(ckpt) -> int:
    try:
        return json.loads((ckpt / "checkpoint.json").read_text())["counter"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("method,kill_after", [("std", 2), ("correlation", 2), ("structured", 1)])
def test_sigkill_then_resume_ends_where_an_uninterrupted_run_ends(small, tmp_path, method, kill_after):
    full = tmp_path / "full.json"
    _run(small, method, tmp_path / "ckpt_full", full)
    ckpt = tmp_path / "ckpt"
    p = _run(small, method, ckpt, tmp_path / "never.json", wait=False)
    deadline = time.time() + 300
    while _counter(ckpt) < kill_after and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed: make its schedule longer"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "never.json").exists()
    killed_at = _counter(ckpt)
    resumed = tmp_path / "resumed.json"
    _run(small, method, ckpt, resumed, resume=True)
    a, b = json.loads(full.read_text()), json.loads(resumed.read_text())
    assert b["resumed"] and b["resumed"][0] >= 1                  # it did continue from a checkpoint
    assert a["steps"] == b["steps"], (killed_at, a["steps"], b["steps"])
    assert a["masks"] == b["masks"] and a["final"] == b["final"]
    for u, v in zip(a["weights"], b["weights"]):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_resume_refuses_other_settings_or_another_model(small, tmp_path):
    import keras

    import sparsecomp
    from sparsecomp import BadArgumentError
    m = keras.saving.load_model(small / "model.keras")
    with np.load(small / "data.npz") as z:
        x, y = z["x_train"], z["y_train"]
    ckpt = tmp_path / "c"
    sparsecomp.prune(m, (x, y), one_shot=True, q=0.5, checkpoint_dir=ckpt, validation_split=0.2)
    with pytest.raises(BadArgumentError) as e:
        sparsecomp.prune(m, (x, y), one_shot=True, q=0.7, checkpoint_dir=ckpt, resume=True, validation_split=0.2)
    assert e.value.rule == "checkpoint.mismatch" and "q 0.5 vs 0.7" in str(e.value)
    w = m.get_weights()
    w[0] = w[0] * 1.01
    m.set_weights(w)
    with pytest.raises(BadArgumentError) as e:
        sparsecomp.prune(m, (x, y), one_shot=True, q=0.5, checkpoint_dir=ckpt, resume=True, validation_split=0.2)
    assert "another model" in str(e.value)
    with pytest.raises(BadArgumentError) as e:
        sparsecomp.prune(m, (x, y), one_shot=True, resume=True)
    assert e.value.rule == "argument.resume"


def test_outputs_fail_fast_before_any_work(small, tmp_path, capsys):
    model = str(small / "model.keras")
    for extra in (["-o", "/missing/dir/out.sparse.h5"],
                  ["-o", str(tmp_path / "o.sparse.h5"), "--report-dir", "/missing/dir/report"],
                  ["-o", str(tmp_path / "o.sparse.h5"), "--json", "/missing/dir/s.json"]):
        t0 = time.time()
        assert main(["compress", model, "--data", str(small / "data.npz"), *extra]) == 1
        err = capsys.readouterr().err
        assert "[write.dir]" in err and "does not exist" in err and time.time() - t0 < 20
    assert main(["prune", model, "--data", str(small / "data.npz"), "-o", "/missing/p.keras"]) == 1
    assert "[write.dir]" in capsys.readouterr().err
    assert main(["compress", model, "--data", str(small / "data.npz"), "-o", model]) == 1
    assert "is the input" in capsys.readouterr().err


def test_one_overwrite_policy_for_every_verb(small, tmp_path, capsys):
    model = str(small / "model.keras")
    existing = tmp_path / "exists"
    existing.write_bytes(b"keep me")
    packed = tmp_path / "p.sparse.h5"
    assert main(["pack", model, "-o", str(packed)]) == 0
    for argv in (["pack", model, "-o", str(existing)], ["unpack", str(packed), "-o", str(existing)],
                 ["compress", model, "--data", str(small / "data.npz"), "--one-shot", "-o", str(existing)],
                 ["prune", model, "--data", str(small / "data.npz"), "--one-shot", "-o", str(existing)]):
        assert main(argv) == 1
        assert "exists; pass --force" in capsys.readouterr().err
        assert existing.read_bytes() == b"keep me"
    assert main(["pack", model, "-o", str(existing), "--force"]) == 0 and existing.read_bytes() != b"keep me"


def test_ctrl_c_saves_the_last_decided_state_and_resume_finishes(small, tmp_path):
    out = tmp_path / "c.sparse.h5"
    argv = [sys.executable, "-m", "sparsecomp.cli", "compress", str(small / "model.keras"), "--data",
            str(small / "data.npz"), "-o", str(out), "--q0", "0.5", "--step", "0.4", "--max-q", "4", "--epochs", "1",
            "--recovery-epochs", "0", "--max-drop", "0.05", "--validation-split", "0.2"]
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = []
    for line in p.stderr:                       # the first decided step is printed: interrupt now
        lines.append(line)
        if " step " in line:
            p.send_signal(signal.SIGINT)
            break
    rest = p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 130, "".join(lines) + rest
    saved = tmp_path / "c.sparse.h5.interrupted"
    assert "the last decided state is saved in" in rest and str(saved) in rest and "--resume" in rest
    assert (saved / "checkpoint.json").exists() and not out.exists()
    meta = json.loads((saved / "checkpoint.json").read_text())
    assert meta["counter"] >= 1 and meta["history"]["steps"]
    r = subprocess.run(argv + ["--checkpoint-dir", str(saved), "--resume"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists()


def test_a_second_signal_exits_at_once(monkeypatch):
    from sparsecomp.cli import _Signals
    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    h = _Signals()
    raised = False
    try:                                  # (pytest.raises would let pytest take the interrupt as its own)
        h(signal.SIGINT, None)
    except KeyboardInterrupt:
        raised = True
    h(signal.SIGINT, None)
    assert raised and exits == [130]
