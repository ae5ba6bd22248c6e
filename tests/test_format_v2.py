"""Files of format version 2 keep loading exactly as before: golden files written by the version-2
writer (``tests/golden/make_v2.py``), read bit-exactly by the version-3 reader with version 2's
rules (index plainly deflated, a full SHA-256 per tensor, no ``zdict`` coding, no file digest)."""

import sys
from pathlib import Path

import h5py
import pytest
from conftest import GOLDEN, check_golden_model, check_golden_packed, golden_expected, golden_versions, h5_content

import sparsecomp
from sparsecomp import CorruptFileError, InvalidTensorError

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from make_hostile import Parts, rebuild  # noqa: E402

@pytest.fixture(scope="module")
def expected():
    return golden_expected("expected_v2.npz")


def test_golden_files_are_version_2():
    assert golden_versions("v2_h5", "v2_model") == [2, 2]
    for name in ("v2_h5", "v2_model"):
        p = Parts(GOLDEN / f"{name}.sparse.h5")
        assert "sha256" not in p.doc and all(len(t["sha256"]) == 64 for t in p.doc["tensors"])


def test_v2_packed_file_reads_bit_exactly(expected, tmp_path):
    rep = check_golden_packed(GOLDEN / "v2_h5.sparse.h5", expected, tmp_path / "back.h5")
    assert rep.format_version == 2 and {r.encoding for r in rep.records} == {"gaps", "shared", "planes", "dense"}
    with h5py.File(tmp_path / "back.h5") as f:
        assert f["layers/shared/vars/0"][()].tobytes() == expected["h5:layers/shared/vars/0"].tobytes()


def test_v2_model_file_loads_and_predicts_exactly(expected):
    rep = check_golden_model(GOLDEN / "v2_model.sparse.h5", expected)
    assert rep.format_version == 2 and rep.records[0].encoding == "gaps"


def test_a_v2_file_repacked_is_version_3_smaller_and_identical(tmp_path):
    sparsecomp.unpack(GOLDEN / "v2_h5.sparse.h5", tmp_path / "src.h5")
    rep = sparsecomp.pack(tmp_path / "src.h5", tmp_path / "v3.sparse.h5")
    assert rep.format_version == 3
    assert (tmp_path / "v3.sparse.h5").stat().st_size < (GOLDEN / "v2_h5.sparse.h5").stat().st_size
    assert {k: v.tobytes() for k, v in sparsecomp.read_tensors(tmp_path / "v3.sparse.h5")} == \
        {k: v.tobytes() for k, v in sparsecomp.read_tensors(GOLDEN / "v2_h5.sparse.h5")}
    sparsecomp.unpack(tmp_path / "v3.sparse.h5", tmp_path / "back.h5")
    assert h5_content(tmp_path / "src.h5") == h5_content(tmp_path / "back.h5")


@pytest.mark.parametrize("edit,exc,rule", [
    (lambda p: p.doc.__setitem__("sha256", "0" * 64), CorruptFileError, "index.schema"),      # a v3 field
    (lambda p: p.doc["tensors"][0].__setitem__("digest", "0" * 8), CorruptFileError, "index.schema"),
    (lambda p: p.doc["tensors"][0].__setitem__("sha256", "0" * 64), InvalidTensorError, "tensor.checksum"),
])
def test_version_2_rules_stay(tmp_path, edit, exc, rule):
    bad = rebuild(GOLDEN / "v2_h5.sparse.h5", tmp_path / "bad.sparse.h5", edit)
    with pytest.raises(exc) as e:
        sparsecomp.verify(bad)
    assert e.value.rule == rule
