"""The README is the contract: its Python examples run as written, and so does every command of
its "Your own checkpoint" section."""

import gzip
import re
import shlex
import shutil
import signal
import sys

import numpy as np
import pytest
from conftest import ROOT


pytestmark = pytest.mark.slow   # runs every README example and command end to end: the slow tier (CI runs it)


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
    # BatchNorm's moving statistics lag the weights: train until the model in inference mode is well
    # above chance on the examples the README's validation split will hold (8 epochs were enough on
    # one CPU, 12 on another)
    for _ in range(20):
        resnet.fit(x_train, y_train, epochs=1, verbose=0)
        if resnet.evaluate(x_train[-125:], y_train[-125:], verbose=0)[1] >= 0.8:
            break
    assert resnet.evaluate(x_train[-125:], y_train[-125:], verbose=0)[1] >= 0.8
    ns = {"model": model, "resnet": resnet, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
          "sparsecomp": sparsecomp, "print": lambda *a, **k: None}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    assert ns["history"].rounds and ns["small"].count_params() <= resnet.count_params()
    assert (tmp_path / "m.sparse.h5").exists()
    assert (tmp_path / "model.sparse.h5").exists() and (tmp_path / "report" / "report.html").exists()
    assert isinstance(ns["result"].summary["file ratio (Keras / sparse)"], float)
    assert np.all(np.isfinite(ns["smaller"].predict(x_test[:4], verbose=0)))
    # weight sharing: every layer was tried; what was accepted is stored by the `shared` codec
    assert ns["qhistory"].trials and (tmp_path / "q.sparse.h5").exists()
    stored = sparsecomp.inspect(tmp_path / "shared.sparse.h5", baseline=False)
    assert not ns["qhistory"].layers or any(r.encoding == "shared" for r in stored.records)
    assert ns["info"].accuracy == "not measured (no data)"


# ---- "Your own checkpoint": every command of its bash block, run as written --------------------

FIX = ROOT / "tests" / "fixtures" / "keras2"
#: what the block must keep covering (one path in per entry)
COVERED = ["--architecture", "--data mnist", "--data idx_dir/", "--data data.npz", "--data images/", "--data mydata:load",
           "--input-scale", "--expected-baseline", "--no-data", "--target-sparsity", "--bits"]


def _checkpoint_commands():
    """``(line, argv)`` of every command in the bash block of the README's "Your own checkpoint"."""
    section = (ROOT / "README.md").read_text().split("\n## Your own checkpoint\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section has one bash block"
    out = []
    for line in blocks[0].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        assert argv[0] == "sparsecomp" and "\\" not in line, f"one sparsecomp command per line: {line}"
        out.append((line, argv[1:]))
    return out


def _with_data_and_bits(argv):
    return "--bits" in argv and "--no-data" not in argv


def _write_idx(path, arr):
    code = {np.dtype("u1"): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.tobytes()))


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The files the block names, in one folder: a Keras 2 full model and a Keras 2 weights-only
    file (genuine tf-keras files from tests/fixtures/keras2), the builder of the latter, and the same
    small data set (MNIST test digits: 1,200 to train on, 300 to test) as idx files, an .npz, an
    image directory and a function."""
    import keras

    import sparsecomp
    d = tmp_path_factory.mktemp("own")
    shutil.copy(FIX / "lenet_sequential.h5", d / "model.h5")
    shutil.copy(FIX / "lenet_weights_only.h5", d / "weights.h5")
    (d / "mymodels.py").write_text(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('_readme_k2_arch', {str(FIX / 'architectures.py')!r})\n"
        "_mod = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_mod)\n\n\n"
        "def lenet():\n    return _mod.lenet_classic()\n")
    _, (xt, yt) = sparsecomp.load_mnist()
    x, y, xv, yv = xt[:1200], yt[:1200], xt[1200:1500], yt[1200:1500]
    np.savez(d / "data.npz", x_train=x, y_train=y, x_test=xv, y_test=yv)
    (d / "idx_dir").mkdir()
    for name, arr in (("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y),
                      ("t10k-images-idx3-ubyte.gz", xv), ("t10k-labels-idx1-ubyte.gz", yv)):
        _write_idx(d / "idx_dir" / name, arr)
    for i, (img, label) in enumerate(zip(x[:600], y[:600])):
        folder = d / "images" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        keras.utils.save_img(folder / f"{i}.png", img[..., None], scale=False)
    (d / "mydata.py").write_text("import numpy as np\n\n\ndef load():\n"
                                 f"    z = np.load({str(d / 'data.npz')!r})\n"
                                 "    return (z['x_train'], z['y_train']), (z['x_test'], z['y_test'])\n")
    return d


@pytest.fixture
def in_own(own, monkeypatch):
    """Run in the fixture folder (the block's relative paths), leaving sys.path, imported modules
    and signal handlers as they were."""
    monkeypatch.chdir(own)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("mymodels", "mydata"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield own
    for s, h in handlers.items():
        signal.signal(s, h)
    for name in ("mymodels", "mydata"):
        sys.modules.pop(name, None)


def _run(argv, capsys):
    from sparsecomp.cli import main
    capsys.readouterr()
    rc = main(list(argv))
    io = capsys.readouterr()
    return rc, io.out, io.err


def _summary_value(out, key):
    m = re.search(rf"^{re.escape(key)}\s+(\S+)", out, re.M)
    return m.group(1) if m else None


def _check_written(d, argv, out):
    """The output exists, verifies, loads and predicts; what the summary says fits the command."""
    import sparsecomp
    path = d / argv[argv.index("-o") + 1]
    assert path.is_file()
    report = sparsecomp.verify(path)
    assert report.format_version == 3
    tensor_level = argv[1] == "weights.h5" and "--architecture" not in argv
    model = sparsecomp.load(path, architecture="mymodels:lenet" if tensor_level else None)
    xs = np.load(d / "data.npz")["x_test"][:8, ..., None].astype("float32") / 255
    pred = model.predict(xs, verbose=0)
    assert pred.shape == (8, 10) and np.all(np.isfinite(pred))
    codecs = {r.encoding for r in report.records}
    if "--bits" in argv:
        assert "shared" in codecs, codecs          # the shared weights are stored as codebook + codes
    if "--no-data" in argv:
        assert "not measured (no data)" in out and "validation" not in out
        target = float(argv[argv.index("--target-sparsity") + 1])
        assert abs(float(_summary_value(out, "kernel sparsity reached")) - target) < 0.01
    else:
        # the data reached the model as it was trained on it: far above chance
        assert float(_summary_value(out, "dense validation accuracy")) > 0.9, out


def test_readme_own_checkpoint_commands_run(in_own, capsys):
    d = in_own
    commands = _checkpoint_commands()
    text = " ".join(line for line, _ in commands)
    for flag in COVERED:
        assert flag in text, f"the block no longer shows {flag}"
    ran = 0
    for line, argv in commands:
        if _with_data_and_bits(argv):
            continue                                 # test_readme_own_checkpoint_weight_sharing
        rc, out, err = _run(argv, capsys)
        assert rc == 0, f"{line}\n{err[-3000:]}"
        _check_written(d, argv, out)
        if "--input-scale" in argv:
            scale = argv[argv.index("--input-scale") + 1]
            assert f"input scale {scale} (as asked)" in err
        if "--expected-baseline" in argv:            # the check bites: a higher expectation is refused
            i = argv.index("--expected-baseline")
            strict = argv[:i + 1] + ["1.0"] + argv[i + 2:]
            o = strict.index("-o") + 1
            strict[o] = "refused.sparse.h5"
            rc, _, err = _run(strict, capsys)
            assert rc == 1 and "[data.baseline]" in err and not (d / "refused.sparse.h5").exists()
        ran += 1
    assert ran >= 8
    # and every output is refused the second time without --force (the overwrite policy)
    rc, _, err = _run(commands[0][1], capsys)
    assert rc == 1 and "pass --force" in err


def test_readme_own_checkpoint_weight_sharing(in_own, capsys):
    d = in_own
    commands = [(line, argv) for line, argv in _checkpoint_commands() if _with_data_and_bits(argv)]
    assert commands, "the block shows weight sharing with data"
    for line, argv in commands:
        rc, out, err = _run(argv, capsys)
        assert rc == 0, f"{line}\n{err[-3000:]}"
        _check_written(d, argv, out)
        assert _summary_value(out, "quantized validation accuracy") is not None
