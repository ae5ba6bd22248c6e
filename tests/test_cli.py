"""The command line: each verb works, and bad input exits non-zero with a message, no traceback."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, prune_by_magnitude

from sparsecomp.cli import main


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
    assert main(["inspect", str(d / "m.sparse.h5"), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["totals"]["weights"]["params"] == 266610 and js["keras_bytes"] > js["file_bytes"]
    assert main(["verify", str(d / "m.sparse.h5")]) == 0
    assert capsys.readouterr().out.startswith("OK")
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
