"""Hostile files: each attack class gives its documented error and rule, changes nothing on disk,
leaks no canary bytes, and stays within bounded time and memory; a valid file passes every verb."""

import hashlib
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest

import sparsecomp
from sparsecomp import SparseCompError

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from make_hostile import CANARY, CASES, build_all  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    return d, build_all(d)


def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_classes_are_distinct_and_as_many_as_the_readme_says():
    assert len({c[0] for c in CASES}) == len(CASES)
    claimed = re.search(r"(\d+) classes of hostile files refused", (ROOT / "README.md").read_text())
    assert claimed, "the README states how many hostile classes are refused"
    assert int(claimed.group(1)) == len(CASES)


@pytest.mark.parametrize("name,op,exc,rule,limits", [(c[0], c[2], c[3], c[4], c[5]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_file_refused(hostile, name, op, exc, rule, limits, tmp_path):
    d, paths = hostile
    path = paths[name]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    lim = sparsecomp.Limits(**limits) if limits else None
    peak = [rss()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)
    t = threading.Thread(target=sample, daemon=True)
    start_rss = rss()
    t.start()
    t0 = time.time()
    try:
        with pytest.raises(exc) as e:
            if op == "verify":
                sparsecomp.verify(path, limits=lim)
            else:
                sparsecomp.load(path, limits=lim)
    finally:
        stop.set()
        t.join()
    assert e.value.rule == rule, str(e.value)
    assert time.time() - t0 < 20
    assert peak[0] - start_rss < 256 << 20          # nothing large was allocated
    assert CANARY.decode() not in str(e.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before   # the input is untouched
    # unpack refuses the same files and leaves no output (not even a temporary) behind
    if op == "verify":
        out = tmp_path / "out.h5"
        with pytest.raises(SparseCompError):
            sparsecomp.unpack(path, out, limits=lim)
        assert list(tmp_path.iterdir()) == []
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_base_files_pass_every_verb(hostile, tmp_path):
    """Each class breaks exactly one thing of a file that is otherwise accepted."""
    d, _paths = hostile
    for base in (d / "_base.sparse.h5", ROOT / "tests" / "golden" / "v1_hostile_base.sparse.h5",
                 ROOT / "tests" / "golden" / "v2_h5.sparse.h5", d / "_work" / "model.sparse.h5"):
        rep = sparsecomp.verify(base)
        assert rep.records and sparsecomp.inspect(base, baseline=False).to_dict()["totals"] == rep.to_dict()["totals"]
        out = tmp_path / (base.stem + (".keras" if rep.kind == "model" else ".h5"))
        sparsecomp.unpack(base, out)
        assert out.stat().st_size > 0


def test_canary_never_reaches_outputs(hostile, tmp_path):
    d, paths = hostile
    refused = 0
    for name, p in paths.items():
        try:
            sparsecomp.inspect(p, baseline=False)
        except SparseCompError as exc:
            refused += 1
            assert CANARY.decode() not in str(exc)
        try:
            sparsecomp.unpack(p, tmp_path / f"{name}.out")
        except SparseCompError as exc:
            assert CANARY.decode() not in str(exc)
    assert refused > len(paths) // 2
    outputs = list(tmp_path.iterdir())
    for f in outputs:
        assert CANARY not in f.read_bytes()


def test_isolated_parsing_matches_in_process(hostile):
    d, paths = hostile
    good = d / "_base.sparse.h5"
    assert sparsecomp.verify(good, isolate=True).to_dict() == sparsecomp.verify(good).to_dict()
    for name in ("v1_column_out_of_range", "declared_size_bomb", "trailing_data", "soft_link", "gaps_overflow"):
        case = next(c for c in CASES if c[0] == name)
        with pytest.raises(case[3]) as e:
            sparsecomp.verify(paths[name], isolate=True)
        assert e.value.rule == case[4]


def test_isolation_memory_limit(hostile):
    from sparsecomp import ResourceLimitError
    from sparsecomp.isolation import run_isolated
    d, _ = hostile
    with pytest.raises(ResourceLimitError) as e:
        run_isolated("verify", d / "_base.sparse.h5", memory_bytes=64 << 20)   # too small for Python + NumPy
    assert e.value.rule == "limit.memory"
