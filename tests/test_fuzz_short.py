"""A short fuzzing budget on every CI run (the long runs are recorded in benchmarks/RESULTS.md).

atheris is a declared test dependency on Linux (setup.py, extra ``test``): there a missing
atheris is an error, never a silent skip, so CI cannot lose its fuzzing unnoticed.
"""

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT

if platform.system() == "Linux":
    import atheris  # noqa: F401  (declared for Linux: its absence must fail the run)
else:
    pytest.skip("atheris is declared for Linux only", allow_module_level=True)


@pytest.mark.parametrize("mode,runs", [("raw", 300), ("rawh5", 400), ("mutate", 600), ("index", 300),
                                       ("codec:gaps", 3000), ("codec:planes", 5000), ("codec:dense", 3000), ("codec:shared", 3000),
                                       ("stream:zdict", 3000)])
def test_fuzz_short_budget(tmp_path, mode, runs):
    stats = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_reader.py"), mode,
                        f"-atheris_runs={runs}", "-timeout=20", "-rss_limit_mb=3072", "-max_len=512", "-seed=1"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env={**os.environ, "FUZZ_STATS": str(stats)})
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads(stats.read_text())
    assert s["inputs"] >= runs - 2 and s["crashes"] == 0 and s["silent_corruptions"] == 0
    assert s["leaked_exception_types"] == []
    assert s["refused"] > 0            # the fuzzer did reach the checks
    if mode not in ("raw",):
        assert set(s["rules"]) - {"file.signature", "file.superblock"}     # and got past the framing
    if mode == "index" or mode.startswith(("codec:", "stream:")):
        assert s["accepted"] > 0       # and produced inputs the decoders accept, not only refusals
