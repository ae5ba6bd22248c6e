"""A short fuzzing budget on every CI run (the long run is recorded in benchmarks/RESULTS.md)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

atheris = pytest.importorskip("atheris")   # installed by the test extras on Linux


@pytest.mark.parametrize("mode,runs", [("raw", 300), ("rawh5", 400), ("mutate", 600)])
def test_fuzz_short_budget(tmp_path, mode, runs):
    stats = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_reader.py"), mode,
                        f"-atheris_runs={runs}", "-timeout=20", "-rss_limit_mb=3072", "-max_len=512", "-seed=1"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env={**__import__("os").environ, "FUZZ_STATS": str(stats)})
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads(stats.read_text())
    assert s["inputs"] >= runs - 2 and s["crashes"] == 0 and s["silent_corruptions"] == 0
    assert s["leaked_exception_types"] == []
    assert s["refused"] > 0            # the fuzzer did reach the checks
    if mode != "raw":
        assert set(s["rules"]) - {"file.signature"}     # and got past the signature
