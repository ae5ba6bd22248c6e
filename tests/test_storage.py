"""Tensor level: pack/unpack of HDF5 and .keras checkpoints (format version 3), and refusal of bad files."""

import json
import os
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import h5_content

import sparsecomp
from sparsecomp import (CorruptFileError, InvalidTensorError, UnsafeModelError, UnsupportedFormatError,
                        WriteError)
from sparsecomp.storage import atomic_output
from sparsecomp.storage.zdict import ZDICT

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from make_hostile import Parts, inflate, rebuild  # noqa: E402


def keras2_layout(path, rng, sparsity=0.9, with_optimizer=True):
    """A Keras 2-era full-model .h5, written with h5py the way Keras 2.x (h5py 2) wrote it:
    fixed-length byte-string attributes, ``kernel:0`` names, ``model_weights`` + ``optimizer_weights``."""
    def w(shape):
        a = rng.standard_normal(shape).astype("float32")
        a[rng.random(shape) < sparsity] = 0
        return a
    cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 30, "batch_input_shape": [None, 50]}},
        {"class_name": "Dense", "config": {"name": "dense_2", "units": 10}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = np.bytes_("2.2.4")
        f.attrs["backend"] = np.bytes_("tensorflow")
        f.attrs["model_config"] = np.bytes_(json.dumps(cfg))
        f.attrs["training_config"] = np.bytes_(json.dumps({"loss": "mse"}))
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"dense_1", b"dense_2"], dtype="S7")
        mw.attrs["backend"] = np.bytes_("tensorflow")
        for name, (i, o) in (("dense_1", (50, 30)), ("dense_2", (30, 10))):
            g = mw.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
            sub = g.create_group(name)
            sub.create_dataset("kernel:0", data=w((i, o)))
            sub.create_dataset("bias:0", data=w((o,)))
        if with_optimizer:
            ow = f.create_group("optimizer_weights")
            ow.attrs["weight_names"] = np.array([b"Adam/iterations:0", b"Adam/m:0"])
            a = ow.create_group("Adam")
            a.create_dataset("iterations:0", data=np.int64(100))
            a.create_dataset("m:0", data=w((50, 30)))
    return path


def test_keras2_layout_round_trip(tmp_path, rng):
    src = keras2_layout(tmp_path / "k2.h5", rng)
    rep = sparsecomp.pack(src, tmp_path / "k2.sparse.h5")
    assert rep.totals("weights")["params"] == 50 * 30 + 30 + 30 * 10 + 10
    assert rep.totals("optimizer")["params"] == 1 + 50 * 30
    assert any(r.encoding == "gaps" for r in rep.records) and rep.format_version == 3
    sparsecomp.unpack(tmp_path / "k2.sparse.h5", tmp_path / "back.h5")
    assert h5_content(src) == h5_content(tmp_path / "back.h5")


def test_drop_optimizer_counts_apart(tmp_path, rng):
    src = keras2_layout(tmp_path / "k2.h5", rng)
    kept = sparsecomp.pack(src, tmp_path / "kept.sparse.h5")
    dropped = sparsecomp.pack(src, tmp_path / "dropped.sparse.h5", drop_optimizer=True)
    assert dropped.totals("optimizer")["tensors"] == 0 and kept.totals("optimizer")["tensors"] == 2
    assert dropped.totals("weights") == kept.totals("weights")   # the weights' figures are unchanged
    rep = sparsecomp.inspect(tmp_path / "dropped.sparse.h5", baseline=False)
    assert rep.optimizer_dropped and "optimizer state: not stored" in rep.format_table()


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    import keras

    from conftest import prune_by_magnitude
    from models import zoo
    d = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(1)
    m = prune_by_magnitude(zoo.lenet_300_100(), 0.95)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    m.fit(x, np.arange(64) % 10, epochs=1, verbose=0)
    prune_by_magnitude(m, 0.95)
    m.save(d / "m.keras")
    m.save_weights(d / "m.weights.h5")
    m.save(d / "m.h5")
    return d, m, x


@pytest.mark.parametrize("name", ["m.keras", "m.weights.h5", "m.h5"])
def test_keras3_files_round_trip(keras_files, tmp_path, name):
    d, _m, _x = keras_files
    src = d / name
    rep = sparsecomp.pack(src, tmp_path / "p.sparse.h5")
    assert rep.file_bytes < src.stat().st_size
    out = tmp_path / name
    sparsecomp.unpack(tmp_path / "p.sparse.h5", out)
    if name.endswith(".keras"):
        with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
            assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
            for i in a.infolist():
                if i.filename != "model.weights.h5":
                    assert a.read(i) == b.read(i.filename)
            a.extract("model.weights.h5", tmp_path / "a")
            b.extract("model.weights.h5", tmp_path / "b")
        assert h5_content(tmp_path / "a" / "model.weights.h5") == h5_content(tmp_path / "b" / "model.weights.h5")
    else:
        assert h5_content(src) == h5_content(out)


def test_unpacked_keras_file_loads_with_keras(keras_files, tmp_path):
    import keras
    d, m, x = keras_files
    sparsecomp.pack(d / "m.keras", tmp_path / "p.sparse.h5")
    sparsecomp.unpack(tmp_path / "p.sparse.h5", tmp_path / "back.keras")
    m2 = keras.saving.load_model(tmp_path / "back.keras")
    assert np.array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))


def test_inspect_reports_keras_baseline(keras_files, tmp_path):
    d, _m, _x = keras_files
    sparsecomp.pack(d / "m.keras", tmp_path / "p.sparse.h5", drop_optimizer=True)
    rep = sparsecomp.inspect(tmp_path / "p.sparse.h5")
    assert rep.keras_bytes and rep.keras_bytes > 5 * rep.file_bytes
    js = json.loads(rep.to_json())
    assert js["totals"]["weights"]["params"] == 266610
    assert js["file_ratio_vs_keras"] == pytest.approx(rep.keras_bytes / rep.file_bytes)
    for t in js["tensors"]:
        assert {"layer", "shape", "params", "nnz", "density", "encoding", "dense_bytes",
                "stored_bytes", "streams", "bytes_per_nonzero", "ratio"} <= set(t)
        assert sum(t["streams"].values()) == t["stored_bytes"]
    assert js["metadata_bytes"] == js["file_bytes"] - js["payload_bytes"] > 0
    assert js["bytes_per_nonzero"] == pytest.approx(js["file_bytes"] / js["totals"]["weights"]["nnz"])


def test_min_ratio_level_and_codecs_options(keras_files, tmp_path):
    d, _m, _x = keras_files
    r1 = sparsecomp.pack(d / "m.weights.h5", tmp_path / "a.sparse.h5", min_ratio=1.0)
    r2 = sparsecomp.pack(d / "m.weights.h5", tmp_path / "b.sparse.h5", min_ratio=1e9)
    r3 = sparsecomp.pack(d / "m.weights.h5", tmp_path / "c.sparse.h5", codecs=["dense"])
    r4 = sparsecomp.pack(d / "m.weights.h5", tmp_path / "d.sparse.h5", level=1)
    assert any(r.encoding == "gaps" for r in r1.records)
    assert all(r.encoding == "dense" for r in r2.records) and all(r.encoding == "dense" for r in r3.records)
    for r in r1.records:
        assert r.stored_bytes <= r.dense_bytes
    assert r1.file_bytes < r4.file_bytes < r3.file_bytes
    for p in ("a", "b", "c", "d"):
        assert {k: v.tobytes() for k, v in sparsecomp.read_tensors(tmp_path / f"{p}.sparse.h5")} == \
            {k: v.tobytes() for k, v in sparsecomp.read_tensors(tmp_path / "a.sparse.h5")}
    with pytest.raises(sparsecomp.BadArgumentError):
        sparsecomp.pack(d / "m.weights.h5", tmp_path / "e.sparse.h5", level=4)


def test_the_file_documents_itself(keras_files, tmp_path):
    """An ordinary HDF5 file: root attributes name the format and where the JSON index is."""
    d, _m, _x = keras_files
    p = tmp_path / "p.sparse.h5"
    sparsecomp.pack(d / "m.keras", p)
    with h5py.File(p) as f:
        assert f.attrs["format"] == b"sparsecomp" and int(f.attrs["format_version"]) == 3
        blob, at, stored, size = (int(v) for v in f.attrs["index"])
        raw = zlib.decompressobj(-15, zdict=ZDICT).decompress(f["blob"][at:at + stored].tobytes())
        doc = json.loads(raw)
        assert len(raw) == size
        assert doc["kind"] == "keras" and {t["codec"] for t in doc["tensors"]} <= set(sparsecomp.storage.CODECS)
        assert all(len(t["digest"]) == 8 and "sha256" not in t for t in doc["tensors"]) and len(doc["sha256"]) == 64
        assert [m["name"] for m in doc["files"]][:1] and "tree" in f


# ---- bad input ------------------------------------------------------------------------------


@pytest.fixture
def packed(keras_files, tmp_path):
    d, _m, _x = keras_files
    p = tmp_path / "p.sparse.h5"
    sparsecomp.pack(d / "m.weights.h5", p)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.verify(tmp_path / "nope.sparse.h5")
    assert e.value.rule == "file.missing"


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.sparse.h5"
    p.write_bytes(b"hello world, not a checkpoint" * 10)
    for fn in (sparsecomp.verify, sparsecomp.load, lambda q: sparsecomp.pack(q, tmp_path / "o.h5")):
        with pytest.raises(CorruptFileError) as e:
            fn(p)
        assert e.value.rule == "file.signature"


def test_wrong_format_version(packed):
    with h5py.File(packed, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(UnsupportedFormatError) as e:
        sparsecomp.verify(packed)
    assert e.value.rule == "format.version"


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(packed, keep):
    data = packed.read_bytes()
    packed.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CorruptFileError):
        sparsecomp.verify(packed)


def test_checksum_catches_silent_change(packed, tmp_path):
    def flip(p):
        path = next(t["path"] for t in p.doc["tensors"] if t["codec"] == "gaps" and t["path"].startswith("layers/"))
        s = p.streams(path)
        s[-1][0] ^= 0x10                          # the sign/exponent byte of the first value
        p.set_streams(path, s)
    bad = rebuild(packed, tmp_path / "bad.sparse.h5", flip)
    with pytest.raises(InvalidTensorError) as e:
        sparsecomp.verify(bad)
    assert e.value.rule == "tensor.checksum" and e.value.member.startswith("layers/")


def test_lambda_layer_refused(tmp_path):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)])
    m.save(tmp_path / "lam.keras")
    sparsecomp.pack(tmp_path / "lam.keras", tmp_path / "lam.sparse.h5")
    with pytest.raises(UnsafeModelError) as e:
        sparsecomp.load(tmp_path / "lam.sparse.h5")
    assert e.value.rule == "model.lambda"
    with pytest.raises(UnsafeModelError):
        sparsecomp.verify(tmp_path / "lam.sparse.h5")
    m2 = sparsecomp.load(tmp_path / "lam.sparse.h5", safe_mode=False)
    x = np.ones((2, 4), "float32")
    assert np.array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))


def test_links_refused(packed, tmp_path):
    with h5py.File(packed, "r+") as f:
        f["tree"]["sneaky"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(UnsupportedFormatError) as e:
        sparsecomp.verify(packed)
    assert e.value.rule == "h5.externallink"


def test_existing_output_never_half_written(keras_files, tmp_path):
    d, _m, _x = keras_files
    out = tmp_path / "out.sparse.h5"
    out.write_bytes(b"precious")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(CorruptFileError):
        sparsecomp.pack(bad, out)
    assert out.read_bytes() == b"precious"
    # a failure in the middle of writing also leaves the old file and no temporary behind
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir() if "sparsecomp-tmp" in p.name] == []


def test_output_directory_missing(keras_files, tmp_path):
    d, _m, _x = keras_files
    with pytest.raises(WriteError):
        sparsecomp.pack(d / "m.keras", tmp_path / "no" / "such" / "dir.sparse.h5")
    assert not os.path.exists(tmp_path / "no")


def test_keras2_full_model_loads_through_the_translator(tmp_path, rng):
    """A Keras 2.2-style file (fixed-length byte attributes, kernel:0 names): rebuilt as data, its
    weights assigned by layer and weight name (see tests/test_keras2.py for the tf-keras files)."""
    src = keras2_layout(tmp_path / "k2.h5", rng)
    sparsecomp.pack(src, tmp_path / "k2.sparse.h5")
    m = sparsecomp.load(tmp_path / "k2.sparse.h5")
    with h5py.File(src) as f:
        assert np.array_equal(m.get_layer("dense_1").kernel.numpy(), f["model_weights/dense_1/dense_1/kernel:0"][()])
        assert np.array_equal(m.get_layer("dense_2").bias.numpy(), f["model_weights/dense_2/dense_2/bias:0"][()])
    assert m.compiled                                        # its training_config: loss mse
    assert np.array_equal(sparsecomp.load(src).get_weights()[0], m.get_weights()[0])   # the raw file too


def test_trailing_bytes_and_userblock_refused(packed, tmp_path):
    data = packed.read_bytes()
    packed.write_bytes(data + b"\0" * 16)
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.verify(packed)
    assert e.value.rule == "file.trailing"
    ub = tmp_path / "ub.sparse.h5"
    with h5py.File(ub, "w", userblock_size=512) as f:
        f.attrs["format"] = "sparsecomp"
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.verify(ub)
    assert e.value.rule == "file.signature"


def test_nonfinite_refused_unless_allowed(tmp_path):
    src = tmp_path / "nan.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("w", data=np.array([[1.0, np.nan], [0.0, 0.0]], np.float32))
    with pytest.raises(InvalidTensorError) as e:
        sparsecomp.pack(src, tmp_path / "nan.sparse.h5")
    assert e.value.rule == "tensor.nonfinite" and not (tmp_path / "nan.sparse.h5").exists()
    sparsecomp.pack(src, tmp_path / "nan.sparse.h5", limits=sparsecomp.Limits(allow_nonfinite=True))
    with pytest.raises(InvalidTensorError):
        sparsecomp.verify(tmp_path / "nan.sparse.h5")
    sparsecomp.verify(tmp_path / "nan.sparse.h5", limits=sparsecomp.Limits(allow_nonfinite=True))


def test_saving_twice_gives_identical_bytes(keras_files, tmp_path):
    import time
    d, m, _x = keras_files
    sparsecomp.pack(d / "m.keras", tmp_path / "a.sparse.h5")
    time.sleep(1.1)        # HDF5 stores object times with 1-second resolution unless told not to
    sparsecomp.pack(d / "m.keras", tmp_path / "b.sparse.h5")
    assert (tmp_path / "a.sparse.h5").read_bytes() == (tmp_path / "b.sparse.h5").read_bytes()
    sparsecomp.save(m, tmp_path / "c.sparse.h5")
    time.sleep(1.1)
    sparsecomp.save(m, tmp_path / "d.sparse.h5")
    assert (tmp_path / "c.sparse.h5").read_bytes() == (tmp_path / "d.sparse.h5").read_bytes()


def test_scalar_tensors_are_checksummed_too(tmp_path, rng):
    """Found by the fuzzer (version 1): a scalar's checksum was skipped (h5py returns NumPy scalars)."""
    src = keras2_layout(tmp_path / "k2.h5", rng)
    p = tmp_path / "k2.sparse.h5"
    sparsecomp.pack(src, p)
    name = "optimizer_weights/Adam/iterations:0"
    assert Parts(p).tensor(name)["shape"] == []

    def alter(parts):
        s = parts.streams(name)
        s[0][0] = 101                            # the iteration counter altered, checksum left as it was
        parts.set_streams(name, s)
    with pytest.raises(InvalidTensorError) as e:
        sparsecomp.verify(rebuild(p, tmp_path / "bad.sparse.h5", alter))
    assert e.value.rule == "tensor.checksum" and e.value.member.endswith("iterations:0")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=int(__import__("os").environ.get("PROP_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(st.integers(0, 7), min_size=0, max_size=4),
                          st.sampled_from(["<f2", "<f4", "<f8", "<i8", "|u1"]), st.floats(0, 1)),
                min_size=1, max_size=5), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 2.0, 6.0]))
def test_property_writer_and_reader_agree(tmp_path_factory, tensors, seed, min_ratio):
    """Random tensors (any rank incl. scalars and empty, several dtypes, any density) packed and
    read back are bit-identical; packing twice gives identical bytes; the size check holds."""
    d = tmp_path_factory.mktemp("prop")
    rng = np.random.default_rng(seed)
    src = d / "src.h5"
    want = {}
    with h5py.File(src, "w") as f:
        for i, (shape, dtype, density) in enumerate(tensors):
            a = (rng.standard_normal(shape) * 10).astype(dtype)
            if a.ndim:
                a[rng.random(shape) >= density] = 0
            f.create_dataset(f"g{i % 2}/t{i}", data=a)
            want[f"g{i % 2}/t{i}"] = a
    rep = sparsecomp.pack(src, d / "a.sparse.h5", min_ratio=min_ratio)
    sparsecomp.pack(src, d / "b.sparse.h5", min_ratio=min_ratio)
    assert (d / "a.sparse.h5").read_bytes() == (d / "b.sparse.h5").read_bytes()
    got = dict(sparsecomp.read_tensors(d / "a.sparse.h5"))
    assert set(got) == set(want)
    for k, a in want.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape and got[k].tobytes() == a.tobytes()
    for r in rep.records:
        if r.encoding != "dense":
            assert r.stored_bytes < r.dense_bytes and r.dense_bytes >= min_ratio * r.stored_bytes
        else:
            assert r.stored_bytes == r.dense_bytes


def test_packed_files_hold_no_variable_length_data(tmp_path):
    """Source strings of variable length (attributes and datasets) are stored fixed-length, so no
    read of a .sparse.h5 touches HDF5's global heap; unpack restores the original types exactly."""
    src = tmp_path / "vlen.h5"
    with h5py.File(src, "w") as f:
        f.attrs["note"] = "ünïcode"                                               # vlen utf-8
        f.attrs.create("ascii", "plain", dtype=h5py.string_dtype("ascii"))        # vlen ascii
        f.attrs["names"] = np.array(["a", "bb", "ccc"], dtype=object)            # vlen array
        f.attrs["empty"] = h5py.Empty(h5py.string_dtype())
        f.create_dataset("labels", data=np.array(["x", "yy"], dtype=object), dtype=h5py.string_dtype())
        d = f.create_dataset("w", data=np.eye(30, dtype="f4"))
        d.attrs["unit"] = "none"
    sparsecomp.pack(src, tmp_path / "v.sparse.h5")
    seen = []
    with h5py.File(tmp_path / "v.sparse.h5") as f:
        def check(obj):
            for k in obj.attrs:
                dt = obj.attrs.get_id(k).dtype
                seen.append(h5py.check_vlen_dtype(dt) is None and
                            (h5py.check_string_dtype(dt) is None or h5py.check_string_dtype(dt).length is not None))
        check(f)
        f.visititems(lambda n, o: (check(o), isinstance(o, h5py.Dataset) and seen.append(
            h5py.check_vlen_dtype(o.dtype) is None)))
    assert seen and all(seen)
    sparsecomp.unpack(tmp_path / "v.sparse.h5", tmp_path / "back.h5")
    assert h5_content(src) == h5_content(tmp_path / "back.h5")
    with h5py.File(tmp_path / "v.sparse.h5", "r+") as f:       # a vlen attribute planted later is refused
        f["tree"].attrs["planted"] = "vlen"
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.verify(tmp_path / "v.sparse.h5")
    assert e.value.rule == "h5.attr.vlen"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the hint is found through /proc/self/maps")
def test_blob_dataset_header_keeps_no_room_for_attributes(tmp_path):
    """HDF5 reserves ~180 bytes in a dataset's header for attributes; the blob never has any."""
    from sparsecomp.storage.h5tree import new_file, write_bytes
    data = bytes(range(256)) * 18
    with new_file(tmp_path / "b.h5") as f:
        write_bytes(f, "blob", data)
    assert (tmp_path / "b.h5").stat().st_size - len(data) < 300        # 447 without the hint, 265 with it
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["blob"][()].tobytes() == data


# ---- format version 3: the preset dictionary, digests ---------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_preset_dictionary_is_the_pinned_constant():
    """D is part of the format: its SHA-256 is pinned in spec.py and FORMAT.md, whose appendix holds
    the whole text (64 lines of 64 characters, concatenated without their line ends)."""
    import hashlib
    import re
    from sparsecomp.storage.spec import ZDICT_SHA256
    assert len(ZDICT) <= 4096 and ZDICT.isascii() and hashlib.sha256(ZDICT).hexdigest() == ZDICT_SHA256
    spec = (ROOT / "docs" / "FORMAT.md").read_text()
    appendix = spec[spec.index("## Appendix: the preset dictionary"):]
    block = re.search(r"```text\n(.*?)\n```", appendix, re.S).group(1)
    assert block.replace("\n", "").encode("ascii") == ZDICT
    assert ZDICT_SHA256 in spec


def _lenet5_pruned(sparsity=0.95):
    from conftest import prune_by_magnitude
    from models.zoo import lenet5
    import keras
    keras.utils.set_random_seed(0)
    return prune_by_magnitude(lenet5(), sparsity)


def as_version_2(src, dst):
    """The same file as the version-2 writer laid it out: a full SHA-256 per tensor, no file
    digest, members deflated without the dictionary, the index plainly deflated."""
    digests = {}
    with sparsecomp.storage.Reader(src) as r:
        for t in r.tensors():
            from sparsecomp.storage.tensors import tensor_digest
            digests[t.path] = tensor_digest(r.read(t))

    def edit(p):
        p.version = 2
        del p.doc["sha256"]
        for t in p.doc["tensors"]:
            del t["digest"]
            t["sha256"] = digests[t["path"]]
        for f in p.doc["files"]:
            if "stream" in f and f["stream"][0] == "zdict":
                data = inflate(bytes(p.blob0[f["at"]:f["at"] + f["stream"][1]]), "zdict")
                packed = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
                packed = packed.compress(data) + packed.flush()
                f["at"], f["stream"] = len(p.blob0), ["deflate", len(packed), len(data)]
                p.blob0 += packed            # the old bytes stay, unreferenced: not counted below
    return rebuild(src, dst, edit)


def test_version_3_round_trip_is_bit_exact_deterministic_and_smaller_than_version_2(tmp_path):
    m = _lenet5_pruned()
    rep = sparsecomp.save(m, tmp_path / "a.sparse.h5")
    sparsecomp.save(m, tmp_path / "b.sparse.h5")
    assert rep.format_version == 3
    assert (tmp_path / "a.sparse.h5").read_bytes() == (tmp_path / "b.sparse.h5").read_bytes()
    back = sparsecomp.load(tmp_path / "a.sparse.h5")
    assert all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in zip(m.get_weights(), back.get_weights()))
    v3 = Parts(tmp_path / "a.sparse.h5")
    assert v3.version == 3 and next(f for f in v3.doc["files"] if f["name"] == "config.json")["stream"][0] == "zdict"
    v2 = Parts(as_version_2(tmp_path / "a.sparse.h5", tmp_path / "v2.sparse.h5"))
    assert {k: a.tobytes() for k, a in sparsecomp.read_tensors(tmp_path / "v2.sparse.h5")} == \
        {f"{layer.name}/{k}": w.numpy().tobytes() for layer in m.layers for k, w in enumerate(layer.weights)}

    def metadata(path, parts):
        """Stored bytes of the index and of config.json: what the two versions lay out differently."""
        with h5py.File(path) as f:
            index = int(f.attrs["index"][2])
        return index, next(f for f in parts.doc["files"] if f["name"] == "config.json")["stream"][1]
    (i2, c2), (i3, c3) = metadata(tmp_path / "v2.sparse.h5", v2), metadata(tmp_path / "a.sparse.h5", v3)
    assert i3 < 0.65 * i2 and c3 < 0.5 * c2, (i2, c2, i3, c3)


def _tamper_file_digest(p):
    p.doc["sha256"] = "0" * 64


def test_file_digest_mismatch_is_refused_by_every_full_read(packed, tmp_path):
    bad = rebuild(packed, tmp_path / "bad.sparse.h5", _tamper_file_digest)
    for read in (sparsecomp.verify, lambda q: list(sparsecomp.read_tensors(q)),
                 lambda q: sparsecomp.unpack(q, tmp_path / "out.h5")):
        with pytest.raises(CorruptFileError) as e:
            read(bad)
        assert e.value.rule == "file.checksum" and "expects sha256 " + "0" * 64 in str(e.value)
    assert not (tmp_path / "out.h5").exists()
    assert len(list(sparsecomp.read_tensors(bad, verify=False))) == len(Parts(bad).doc["tensors"])  # none asked


def test_file_digest_mismatch_refused_when_a_model_loads(tmp_path):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    sparsecomp.save(m, tmp_path / "m.sparse.h5")
    bad = rebuild(tmp_path / "m.sparse.h5", tmp_path / "bad.sparse.h5", _tamper_file_digest)
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.load(bad)
    assert e.value.rule == "file.checksum"


def test_tensor_digest_prefix_mismatch_is_refused(packed, tmp_path):
    def edit(p):
        t = p.doc["tensors"][0]
        t["digest"] = format((int(t["digest"], 16) + 1) % (1 << 32), "08x")
    bad = rebuild(packed, tmp_path / "bad.sparse.h5", edit)
    with pytest.raises(InvalidTensorError) as e:
        sparsecomp.verify(bad)
    assert e.value.rule == "tensor.checksum"


def test_a_subset_read_checks_the_prefixes_only(packed, tmp_path):
    """The file digest needs every tensor: reading some checks their 8 hex digits, no more."""
    bad = rebuild(packed, tmp_path / "bad.sparse.h5", _tamper_file_digest)
    with sparsecomp.storage.Reader(bad) as r:
        entries = r.tensors()
        r.read(entries[0])
        assert r.check_digest() is False                   # a subset: nothing to check yet
        for t in entries[1:]:
            r.read(t, verify=False)
        assert r.check_digest() is False                   # not every tensor verified
        for t in entries[1:]:
            r.read(t)
        with pytest.raises(CorruptFileError) as e:
            r.check_digest()
        assert e.value.rule == "file.checksum"
    with sparsecomp.storage.Reader(packed) as r:
        for t in r.tensors():
            r.read(t)
        assert r.check_digest() is True
    with sparsecomp.storage.Reader(ROOT / "tests" / "golden" / "v2_h5.sparse.h5") as r:
        for t in r.tensors():
            r.read(t)                                      # a full SHA-256 per tensor, checked here
        assert r.check_digest() is False                   # version 2 has no file digest


def test_zdict_stream_in_a_version_2_file_is_refused(tmp_path):
    def edit(p):
        assert p.version == 2
        path = p.doc["tensors"][0]["path"]
        s = p.streams(path)
        p.set_streams(path, s, codings=["zdict"] + ["raw"] * (len(s) - 1))
    bad = rebuild(ROOT / "tests" / "golden" / "v2_h5.sparse.h5", tmp_path / "bad.sparse.h5", edit)
    with pytest.raises(CorruptFileError) as e:
        sparsecomp.verify(bad)
    assert e.value.rule == "stream.coding"
