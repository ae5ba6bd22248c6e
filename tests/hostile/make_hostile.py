"""Write a folder of hostile ``.sparse.h5`` files, one per attack class (like safetensors' attacks/).

    python tests/hostile/make_hostile.py OUT_DIR

Each case starts from a valid file and breaks exactly one thing. Cases of the indexed layout
(format versions 2 and 3: a JSON index, blobs of streams) start from a file this library writes
(version 3), or, for what only version 2 must refuse, from ``tests/golden/v2_h5.sparse.h5``
written by the version-2 writer; version-1 cases from ``tests/golden/v1_hostile_base.sparse.h5``,
written by the version-1 writer (the reader still reads versions 1 and 2, with every check they had).
``CASES`` lists, per class: the builder, the operation that must refuse it (``verify`` or
``load``), the documented error type and rule id, and tightened limits where the class needs them.
``tests/test_hostile.py`` checks every one; the canary file of the external storage case must never
be read. :func:`rebuild` is the tool the indexed cases (and the tests) use to forge files: it
re-emits a file of version 2 or 3 from its parts after an edit of the index, the streams or the root.
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sparsecomp  # noqa: E402
from sparsecomp import (CorruptFileError, InvalidTensorError, ResourceLimitError,  # noqa: E402
                        UnsafeModelError, UnsupportedFormatError, WeightMismatchError)
from sparsecomp.storage.h5tree import fixed, new_file  # noqa: E402
from sparsecomp.storage.streams import deflate  # noqa: E402
from sparsecomp.storage.tensors import tensor_digest  # noqa: E402
from sparsecomp.storage.zdict import ZDICT  # noqa: E402

CANARY = b"CANARY-7f3a-secret-bytes-that-must-never-leak"
TIGHT = dict(max_tensor_bytes=1 << 20, max_total_bytes=4 << 20, max_attributes=64, max_members=10_000)
V1_BASE = ROOT / "tests" / "golden" / "v1_hostile_base.sparse.h5"
V2_BASE = ROOT / "tests" / "golden" / "v2_h5.sparse.h5"


def base_h5(path: Path, shared: bool = False) -> Path:
    """A small checkpoint: a 90%-sparse kernel (``shared``: its non-zeros among 16 values), a dense
    bias, an integer counter."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((200, 300)).astype("float32")
    if shared:
        book = np.sort(rng.standard_normal(16)).astype("float32")
        k = book[rng.integers(0, 16, k.shape)]
    k[rng.random(k.shape) < 0.9] = 0
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "fc"
        g.create_dataset("0", data=k)
        g.create_dataset("1", data=rng.standard_normal(300).astype("float32"))
        f.create_dataset("step", data=np.int64(7))
    return path


# ---- forging files of versions 2 and 3 ----------------------------------------------------------

def inflate(raw: bytes, coding: str) -> bytes:
    """A stream's bytes decoded (no bounds: the forger's own files)."""
    if coding == "raw":
        return raw
    d = zlib.decompressobj(-15, zdict=ZDICT) if coding == "zdict" else zlib.decompressobj(-15)
    return d.decompress(raw) + d.flush()


def compress(data: bytes, coding: str) -> bytes:
    return data if coding == "raw" else deflate(data, zdict=coding == "zdict")


class Parts:
    """A file of version 2 or 3 taken apart: ``doc`` (the index), ``blob0`` (blob 0 without the
    index), ``blobs`` (the others), ``attrs`` (root attributes to write instead of the computed
    ones), ``version`` (re-emitted as it is: the index's coding follows it)."""

    def __init__(self, path: Path):
        with h5py.File(path, "r") as f:
            self.version = int(f.attrs["format_version"])
            at = [int(v) for v in f.attrs["index"]]
            blob = f["blob"][()].tobytes()
            self.doc = json.loads(inflate(blob[at[1]:at[1] + at[2]], self.index_coding))
            self.blob0 = bytearray(blob[:at[1]])
            self.blobs = [bytearray(f[f"blob{i}"][()].tobytes()) for i in range(1, len(self.doc["blobs"]) + 1)]
        self.attrs: dict = {}
        self.index_raw: bytes | None = None         # replaces the JSON text of the index
        self.index_size: int | None = None          # replaces the declared decoded size
        self.extra = None                           # callable(h5py.File) run last

    @property
    def index_coding(self) -> str:
        return "zdict" if self.version >= 3 else "deflate"

    def tensor(self, path: str) -> dict:
        return next(t for t in self.doc["tensors"] if t["path"] == path)

    def streams(self, path: str) -> list:
        """The decoded streams of a tensor (list of bytearray)."""
        t = self.tensor(path)
        buf = self.blob0 if t["blob"] == 0 else self.blobs[t["blob"] - 1]
        out, at = [], t["at"]
        for coding, stored, size in t["streams"]:
            out.append(bytearray(inflate(bytes(buf[at:at + stored]), coding)))
            at += stored
        return out

    def set_streams(self, path: str, streams, codings=None) -> None:
        """Re-store a tensor's streams (raw unless told) at the end of blob 0; sizes follow."""
        t = self.tensor(path)
        t["blob"], t["at"], t["streams"] = 0, len(self.blob0), []
        for i, s in enumerate(streams):
            coding = (codings or ["raw"] * len(streams))[i]
            data = compress(bytes(s), coding)
            self.blob0 += data
            t["streams"].append([coding, len(data), len(s)])


def rebuild(src: Path, dst: Path, edit) -> Path:
    """Re-emit the file ``src`` (version 2 or 3) as ``dst`` after ``edit(parts)`` changed its parts."""
    p = Parts(src)
    edit(p)
    raw = p.index_raw if p.index_raw is not None else json.dumps(p.doc).encode()
    packed = compress(raw, p.index_coding)
    with h5py.File(src, "r") as f, new_file(dst) as out:
        blob0 = bytes(p.blob0) + packed
        out.create_dataset("blob", data=np.frombuffer(blob0, np.uint8), track_times=False)
        for i, b in enumerate(p.blobs, start=1):
            out.create_dataset(f"blob{i}", data=np.frombuffer(bytes(b), np.uint8), track_times=False)
        if "tree" in f:
            f.copy("tree", out, name="tree")
        out.attrs["format"] = fixed("sparsecomp")
        out.attrs["format_version"] = np.int64(p.version)
        size = p.index_size if p.index_size is not None else len(raw)
        out.attrs["index"] = np.array([0, len(p.blob0), len(packed), size], np.int64)
        for k, v in p.attrs.items():
            if v is None:
                del out.attrs[k]
            else:
                out.attrs[k] = v
        if p.extra is not None:
            p.extra(out)
    return dst


def _ix(edit, base="packed"):
    """A case forged from an indexed base file (``packed``: a checkpoint packed by this library)."""
    def build(bases, out, work):
        return rebuild(bases[base], out, edit)
    return build


def _ix_model(edit):
    return _ix(edit, "model")


def _ix_shared(edit):
    return _ix(edit, "shared")


def _shared_edit(fn):
    """Change the shared kernel's decoded streams (codebook, positions, codes); codings kept raw."""
    def edit(p):
        assert p.tensor(K)["codec"] == "shared"
        s = p.streams(K)
        fn(s, p.tensor(K))
        p.set_streams(K, s)
    return edit


def _code_past(s, t):
    s[2][7] = t["params"]["k"]                       # one past the last codebook entry


def _book_zero(s, t):
    s[0][0:4] = bytes(4)


def _book_unsorted(s, t):
    s[0][0:4], s[0][4:8] = s[0][4:8], s[0][0:4]


def _codes_short(s, t):
    del s[2][-1:]


def _book_deflated(p):
    s = p.streams(K)
    p.set_streams(K, s, codings=["deflate", "raw", "raw"])


def _v1(fn):
    def build(bases, out, work):
        shutil.copy(bases["v1"], out)
        with h5py.File(out, "r+") as f:
            fn(f, work)
    return build


def _raw(fn, base="packed"):
    def build(bases, out, work):
        out.write_bytes(fn(bases[base].read_bytes(), work))
    return build


# ---- version-1 edits (the checks of the version-1 reader) ---------------------------------------

def _csr(f):
    return f["tree/layers/dense/vars/0"]


def _replace(group, name, data, **kw):
    attrs = dict(group[name].attrs)
    del group[name]
    d = group.create_dataset(name, data=data, **kw)
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def _set_indices(f, fn):
    g = _csr(f)
    idx = g["indices"][()].astype(np.int64)
    _replace(g, "indices", fn(idx, g).astype(g["indices"].dtype))


def _set_indptr(f, fn):
    g = _csr(f)
    p = g["indptr"][()].astype(np.int64)
    _replace(g, "indptr", fn(p).astype(g["indptr"].dtype))


def _dup_column(idx, g):
    p = g["indptr"][()]
    row = int(np.argmax(np.diff(p.astype(np.int64)) >= 2))
    s = int(p[row])
    idx[s + 1] = idx[s]
    return idx


def _v1_bomb_shape(f, _work):
    _csr(f).attrs["sparsecomp.shape"] = np.array([1 << 20, 1 << 20], np.int64)   # 4 TiB of float32


def _v1_cumulative(f, _work):
    g = f["tree"].create_group("many")
    for i in range(8):
        t = g.create_group(str(i))
        t.attrs["sparsecomp.encoding"] = np.bytes_(b"csr")
        t.attrs["sparsecomp.shape"] = np.array([1, 196608], np.int64)
        t.attrs["sparsecomp.dtype"] = np.bytes_(b"<f4")
        t.attrs["sparsecomp.sha256"] = np.bytes_(b"0" * 64)
        t.create_dataset("data", data=np.zeros(0, "<f4"))
        t.create_dataset("indices", data=np.zeros(0, "<u4"))
        t.create_dataset("indptr", data=np.zeros(2, "<u1"))


def _compression_bomb(f, _work):
    f["tree"].create_dataset("zeros", data=np.zeros((1024, 1024), "<f4"), chunks=(1024, 1024), compression="gzip",
                             compression_opts=9)


def _external_storage(f, work):
    canary = work / "canary.bin"
    canary.write_bytes(CANARY * 100)
    f["tree"].create_dataset("leak", shape=(len(CANARY) * 100,), dtype="u1",
                             external=[(str(canary), 0, h5py.h5f.UNLIMITED)])


def _virtual(f, work):
    src = work / "vsrc.h5"
    with h5py.File(src, "w") as s:
        s.create_dataset("x", data=np.arange(10, dtype="<f4"))
    layout = h5py.VirtualLayout(shape=(10,), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(src), "x", shape=(10,))
    f["tree"].create_virtual_dataset("virt", layout)


def _unallocated(f, _work):
    d = f["tree"].create_dataset("hollow", shape=(1000,), dtype="<f4")   # declared, never written
    d.attrs["sparsecomp.sha256"] = np.bytes_(tensor_digest(np.zeros(1000, "<f4")).encode())


def _deep(f, _work):
    g = f["tree"]
    for _ in range(80):
        g = g.create_group("d")


def _many_attrs(f, _work):
    for i in range(100):
        f["tree"].attrs[f"a{i}"] = i


def _nan(f, _work):
    g = _csr(f)
    d = g["data"][()]
    d[0] = np.nan
    _replace(g, "data", d)


# ---- edits of the indexed layout (versions 2 and 3) ---------------------------------------------

K = "layers/dense/vars/0"      # the sparse kernel (codec gaps)
B = "layers/dense/vars/1"      # the dense bias


def _gap_edit(fn):
    """Change the kernel's decoded gap bytes; everything re-stored consistently (sizes, codings)."""
    def edit(p):
        s = p.streams(K)
        s[0] = fn(s[0])
        p.set_streams(K, s)
    return edit


def _flip_value(p):
    s = p.streams(K)
    s[1][0] ^= 0x01                    # the low byte of the first value: decodes, checksum differs
    p.set_streams(K, s)


def _zero_value(p):
    s = p.streams(K)
    for plane in s[1:]:
        plane[5] = 0
    p.set_streams(K, s)


def _extra_final(b):
    i = next(i for i, v in enumerate(b) if v < 254)
    b[i:i + 1] = bytes([0, b[i]])      # one more non-zero than the header and the value planes say
    return b


def _drop_final(b):
    b[len(b) // 2:len(b) // 2 + 1] = b""
    return b


def _truncate_deflate(p):
    t = p.tensor(K)
    stored = t["streams"][0][1]
    assert t["streams"][0][0] == "deflate"
    start = t["at"]
    del p.blob0[start + stored - 3:start + stored]
    t["streams"][0][1] = stored - 3
    for other in p.doc["tensors"] + p.doc["files"]:
        if other.get("blob", 0) == 0 and other.get("at", -1) > start:
            other["at"] -= 3


def _inflate_past(p):
    """The positions stream re-deflated with ten more bytes than its (unchanged) declared size."""
    s = p.streams(K)
    p.set_streams(K, s, codings=["deflate"] + ["raw"] * (len(s) - 1))
    t = p.tensor(K)
    data = deflate(bytes(s[0]) + bytes(10))
    del p.blob0[t["at"]:]
    p.blob0 += data
    t["streams"][0][1] = len(data)
    for plane in s[1:]:
        p.blob0 += plane


def _stream_past_blob(p):
    p.tensor(B)["at"] = len(p.blob0) + 100000


def _overlap(p):
    p.tensor(B)["at"] = p.tensor(K)["at"]


def _ratio_bomb(p):
    t = p.tensor(K)
    t["streams"][0][2] = t["streams"][0][1] * 5000


def _declared_bomb(p):
    p.tensor(B)["shape"] = [1 << 20, 1 << 20]


def _cumulative_ix(p):
    for i in range(8):
        p.doc["tensors"].append({"path": f"many/{i}", "shape": [1, 196608], "dtype": "<f4", "nnz": 0,
                                 "codec": "gaps", "params": {"order": "row"}, "blob": 0, "at": 0,
                                 "streams": [["raw", 0, 0], ["raw", 0, 0], ["raw", 0, 0], ["raw", 0, 0],
                                             ["raw", 0, 0]], "digest": "0" * 8})


def _raw_size(p):
    t = p.tensor(B)
    t["streams"][0][2] += 1


def _set(key, value, which=K):
    def edit(p):
        p.tensor(which)[key] = value
    return edit


def _index_text(text):
    def edit(p):
        p.index_raw = text
    return edit


def _index_size(p):
    p.index_size = 1 << 40


def _index_attr(value):
    def edit(p):
        p.attrs["index"] = value
    return edit


def _index_not_last(p):
    p.blob0 += b"\0" * 16
    p.extra = lambda f: f.attrs.__setitem__("index", np.array(
        [0, int(f.attrs["index"][1]) - 16, int(f.attrs["index"][2]), int(f.attrs["index"][3])], np.int64))


def _dup_path(p):
    p.doc["tensors"].append(dict(p.tensor(B)))


def _blob_filtered(p):
    def extra(f):
        data = f["blob"][()]
        del f["blob"]
        f.create_dataset("blob", data=data, compression="gzip", chunks=(len(data),))
    p.extra = extra


def _root_member(p):
    p.extra = lambda f: f.create_group("payload")


def _blob_gap(p):
    p.extra = lambda f: f.create_dataset("blob7", data=np.zeros(4, np.uint8))


def _tree_numeric(p):
    p.extra = lambda f: f["tree"].create_dataset("sneaky", data=np.arange(5, dtype="<f4"))


def _placeholder(p):
    def extra(f):
        g = f["tree/layers/dense/vars"].create_group("0")
        g.attrs["sparsecomp.tensor"] = fixed("1")
    p.extra = extra


def _dense_nnz(p):
    p.tensor(B)["nnz"] = p.tensor(B)["nnz"] - 1


def _member_name(p):
    p.doc["files"].append({"name": "../../evil", "compress_type": 0, "tree": False, "blob": 0, "at": 0,
                           "stream": ["raw", 1, 1]})


def _model_tree(p):
    p.extra = lambda f: f.create_group("tree")


def _config_edit(fn):
    def edit(p):
        f = next(f for f in p.doc["files"] if f["name"] == "config.json")
        coding, stored, size = f["stream"]
        cfg = json.loads(inflate(bytes(p.blob0[f["at"]:f["at"] + stored]), coding))
        data = json.dumps(fn(cfg)).encode()
        f["at"], f["stream"] = len(p.blob0), ["raw", len(data), len(data)]
        p.blob0 += data
    return edit


def _shape_mismatch(cfg):
    cfg["config"]["layers"][0]["config"]["batch_shape"] = [None, 5]
    for layer in cfg["config"]["layers"][1:]:
        layer.pop("build_config", None)
    cfg.pop("build_config", None)
    return cfg


# ---- version 3: zdict streams, digests ---------------------------------------------------------

def _member_edit(make):
    """Re-store the model's ``config.json`` at the end of blob 0 as ``make(data)`` gives it:
    ``(coding, stored bytes, declared size)``."""
    def edit(p):
        f = next(f for f in p.doc["files"] if f["name"] == "config.json")
        coding, stored, _size = f["stream"]
        data = inflate(bytes(p.blob0[f["at"]:f["at"] + stored]), coding)
        coding, packed, size = make(data)
        f["at"], f["stream"] = len(p.blob0), [coding, len(packed), size]
        p.blob0 += packed
    return edit


def _zeros_deflated(n: int) -> bytes:
    """``n`` zero bytes deflated, chunk by chunk (no ``n``-byte buffer)."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(n >> 20)) + c.flush()


def _zdict_in_v2(p):
    assert p.version == 2
    s = p.streams(K)
    p.set_streams(K, s, codings=["zdict"] + ["raw"] * (len(s) - 1))


def _other_digest(p):
    t = p.tensor(K)
    t["digest"] = ("0" if t["digest"][0] != "0" else "1") + t["digest"][1:]


def _lambda_config(bases, out, work):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x + 1, name="evil"), keras.layers.Dense(2)])
    sparsecomp.save(m, out)


# (name, builder, operation, error type, rule, limits)
CASES = [
    # framing, either version
    ("not_hdf5", _raw(lambda b, w: b"GIF89a" + bytes(range(256)) * 4), "verify", CorruptFileError, "file.signature", None),
    ("empty", _raw(lambda b, w: b""), "verify", CorruptFileError, "file.signature", None),
    ("truncated_10", _raw(lambda b, w: b[:len(b) // 10]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_50", _raw(lambda b, w: b[:len(b) // 2]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_99", _raw(lambda b, w: b[:len(b) - 7]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_header", _raw(lambda b, w: b[:20]), "verify", UnsupportedFormatError, "file.superblock", None),
    ("trailing_data", _raw(lambda b, w: b + b"PK\x03\x04" + b"\0" * 100), "verify", CorruptFileError, "file.trailing", None),
    ("userblock_polyglot", _raw(lambda b, w: b"PK\x03\x04" + b"\0" * 508 + b), "verify", CorruptFileError, "file.signature", None),
    ("v1_truncated_50", _raw(lambda b, w: b[:len(b) // 2], "v1"), "verify", CorruptFileError, "file.truncated", None),
    # root
    ("bad_tag", _ix(lambda p: p.attrs.__setitem__("format", np.bytes_(b"safetensors"))), "verify", UnsupportedFormatError, "format.tag", None),
    ("bad_version", _ix(lambda p: p.attrs.__setitem__("format_version", np.int64(4))), "verify", UnsupportedFormatError, "format.version", None),
    ("bad_version_type", _ix(lambda p: p.attrs.__setitem__("format_version", np.bytes_(b"2"))), "verify", UnsupportedFormatError, "format.version", None),
    ("vlen_reserved_attribute", _ix(lambda p: p.attrs.__setitem__("format", "sparsecomp")), "verify", CorruptFileError, "h5.attr.vlen", None),
    ("v1_bad_kind", _v1(lambda f, w: f.attrs.__setitem__("kind", np.bytes_(b"pickle"))), "verify", UnsupportedFormatError, "format.kind", None),
    ("v1_missing_tree", _v1(lambda f, w: f.move("tree", "elsewhere")), "verify", CorruptFileError, "format.tree", None),
    # the index
    ("index_attr_shape", _ix(_index_attr(np.array([0, 1], np.int64))), "verify", CorruptFileError, "index.attr", None),
    ("index_attr_negative", _ix(_index_attr(np.array([0, -5, 10, 10], np.int64))), "verify", CorruptFileError, "index.attr", None),
    ("index_not_last", _ix(_index_not_last), "verify", CorruptFileError, "index.attr", None),
    ("index_size_bomb", _ix(_index_size), "verify", ResourceLimitError, "limit.index", None),
    ("index_not_json", _ix(_index_text(b"{not json")), "verify", CorruptFileError, "index.json", None),
    ("index_deep_json", _ix(_index_text(b"[" * 100000 + b"]" * 100000)), "verify", CorruptFileError, "index.json", None),
    ("index_not_utf8", _ix(_index_text(b"\xff\xfe{}")), "verify", CorruptFileError, "index.json", None),
    ("index_unknown_field", _ix(lambda p: p.doc.__setitem__("payload", "x")), "verify", CorruptFileError, "index.schema", None),
    ("index_missing_field", _ix(lambda p: p.doc.pop("tensors")), "verify", CorruptFileError, "index.schema", None),
    ("index_bad_kind", _ix(lambda p: p.doc.__setitem__("kind", "pickle")), "verify", UnsupportedFormatError, "format.kind", None),
    ("index_blob_count", _ix(lambda p: p.doc.__setitem__("blobs", [5])), "verify", CorruptFileError, "index.blobs", None),
    ("index_duplicate_path", _ix(_dup_path), "verify", CorruptFileError, "index.duplicate", None),
    ("index_path_traversal", _ix(_set("path", "../escape")), "verify", CorruptFileError, "index.name", None),
    ("index_path_control", _ix(_set("path", "a\x1b[2Jb")), "verify", CorruptFileError, "index.name", None),
    ("index_unknown_codec", _ix(_set("codec", "pickle")), "verify", UnsupportedFormatError, "tensor.codec", None),
    ("index_bad_dtype", _ix(_set("dtype", ">f4")), "verify", InvalidTensorError, "tensor.dtype", None),
    ("index_object_dtype", _ix(_set("dtype", "|O")), "verify", InvalidTensorError, "tensor.dtype", None),
    ("index_bad_shape", _ix(_set("shape", [200, -300])), "verify", CorruptFileError, "index.schema", None),
    ("index_nnz_over_size", _ix(_set("nnz", 10 ** 9)), "verify", CorruptFileError, "index.schema", None),
    ("index_bad_digest", _ix(_set("digest", "z" * 8)), "verify", CorruptFileError, "index.schema", None),
    ("index_stream_count", _ix(lambda p: p.tensor(K)["streams"].pop()), "verify", InvalidTensorError, "gaps.streams", None),
    ("stream_past_blob", _ix(_stream_past_blob), "verify", CorruptFileError, "index.extent", None),
    ("streams_overlap", _ix(_overlap), "verify", CorruptFileError, "index.overlap", None),
    ("stream_raw_size", _ix(_raw_size), "verify", CorruptFileError, "stream.size", None),
    ("stream_ratio_bomb", _ix(_ratio_bomb), "verify", ResourceLimitError, "limit.compression", None),
    ("stream_truncated", _ix(_truncate_deflate), "verify", InvalidTensorError, "stream.truncated", None),
    ("stream_inflates_past", _ix(_inflate_past), "verify", InvalidTensorError, "stream.inflate", None),
    ("declared_size_bomb", _ix(_declared_bomb), "verify", ResourceLimitError, "limit.tensor", None),
    ("cumulative_bomb", _ix(_cumulative_ix), "verify", ResourceLimitError, "limit.total", TIGHT),
    # codecs (gaps)
    ("gaps_bad_order", _ix(lambda p: p.tensor(K).__setitem__("params", {"order": "spiral"})), "verify", InvalidTensorError, "gaps.params", None),
    ("gaps_ends_with_filler", _ix(_gap_edit(lambda b: b + bytearray([255]))), "verify", InvalidTensorError, "gaps.trailing", None),
    ("gaps_past_the_end", _ix(_gap_edit(lambda b: b[:-1] + bytearray([254]) + bytearray([255] * 300) + b[-1:])), "verify", InvalidTensorError, "gaps.streams", None),
    ("gaps_overflow", _ix(_gap_edit(lambda b: bytearray([255] * 200) + b)), "verify", InvalidTensorError, "gaps.range", None),
    ("gaps_count_high", _ix(_gap_edit(_extra_final)), "verify", InvalidTensorError, "gaps.count", None),
    ("gaps_count_low", _ix(_gap_edit(_drop_final)), "verify", InvalidTensorError, "gaps.streams", None),
    ("gaps_zero_value", _ix(_zero_value), "verify", InvalidTensorError, "gaps.values", None),
    ("checksum_mismatch", _ix(_flip_value), "verify", InvalidTensorError, "tensor.checksum", None),
    ("dense_nnz_mismatch", _ix(_dense_nnz), "verify", CorruptFileError, "tensor.nnz", None),
    # structure of the indexed layout
    ("blob_filtered", _ix(_blob_filtered), "verify", CorruptFileError, "format.blobs", None),
    ("blob_numbering", _ix(_blob_gap), "verify", CorruptFileError, "format.blobs", None),
    ("root_member", _ix(_root_member), "verify", CorruptFileError, "format.members", None),
    ("tree_numeric_dataset", _ix(_tree_numeric), "verify", CorruptFileError, "format.tree", None),
    ("orphan_placeholder", _ix(_placeholder), "verify", CorruptFileError, "format.tree", None),
    ("member_traversal", _ix(_member_name), "verify", CorruptFileError, "zip.name", None),
    ("model_with_tree", _ix_model(_model_tree), "verify", CorruptFileError, "format.members", None),
    # codecs (shared)
    ("shared_code_out_of_range", _ix_shared(_shared_edit(_code_past)), "verify", InvalidTensorError, "shared.codes", None),
    ("shared_codebook_zero", _ix_shared(_shared_edit(_book_zero)), "verify", InvalidTensorError, "shared.codebook", None),
    ("shared_codebook_unsorted", _ix_shared(_shared_edit(_book_unsorted)), "verify", InvalidTensorError, "shared.codebook", None),
    ("shared_k_mismatch", _ix_shared(lambda p: p.tensor(K)["params"].__setitem__("k", 12)), "verify", InvalidTensorError, "shared.codebook", None),
    ("shared_k_too_big", _ix_shared(lambda p: p.tensor(K)["params"].__setitem__("k", 300)), "verify", InvalidTensorError, "shared.params", None),
    ("shared_codes_truncated", _ix_shared(_shared_edit(_codes_short)), "verify", InvalidTensorError, "shared.streams", None),
    ("shared_codebook_deflated", _ix_shared(_book_deflated), "verify", InvalidTensorError, "shared.codebook", None),
    ("shared_gap_overflow", _ix_shared(_shared_edit(lambda s, t: s.__setitem__(1, bytearray([255] * 200) + s[1]))), "verify", InvalidTensorError, "shared.range", None),
    # HDF5 structure (the tree of an indexed file)
    ("soft_link", _ix(lambda p: setattr(p, "extra", lambda f: f["tree"].__setitem__("alias", h5py.SoftLink("/tree/layers")))), "verify", UnsupportedFormatError, "h5.softlink", None),
    ("external_link", _ix(lambda p: setattr(p, "extra", lambda f: f["tree"].__setitem__("ext", h5py.ExternalLink("canary.h5", "/x")))), "verify", UnsupportedFormatError, "h5.externallink", None),
    ("hard_link_alias", _ix(lambda p: setattr(p, "extra", lambda f: f["tree"].__setitem__("again", f["tree/layers/dense"]))), "verify", UnsupportedFormatError, "h5.alias", None),
    ("hostile_name", _ix(lambda p: setattr(p, "extra", lambda f: f["tree"].create_group("a\x1b[2Jb"))), "verify", CorruptFileError, "h5.name", None),
    ("deep_nesting", _ix(lambda p: setattr(p, "extra", lambda f: _deep({"tree": f["tree"]}, None))), "verify", ResourceLimitError, "limit.depth", None),
    ("too_many_attributes", _ix(lambda p: setattr(p, "extra", lambda f: _many_attrs({"tree": f["tree"]}, None))), "verify", ResourceLimitError, "limit.attributes", TIGHT),
    # version-1 reader
    ("v1_checksum_mismatch", _v1(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.sha256", np.bytes_(b"0" * 64))), "verify", InvalidTensorError, "tensor.checksum", None),
    ("v1_checksum_missing", _v1(lambda f, w: f["tree/layers/dense/vars/1"].attrs.__delitem__("sparsecomp.sha256")), "verify", InvalidTensorError, "tensor.checksum.missing", None),
    ("v1_csr_member_missing", _v1(lambda f, w: _csr(f).__delitem__("indptr")), "verify", InvalidTensorError, "csr.members", None),
    ("v1_csr_member_extra", _v1(lambda f, w: _csr(f).create_dataset("evil", data=np.zeros(3))), "verify", InvalidTensorError, "csr.members", None),
    ("v1_csr_member_wrong_kind", _v1(lambda f, w: (_csr(f).__delitem__("data"), _csr(f).create_group("data"))), "verify", InvalidTensorError, "csr.members", None),
    ("v1_external_storage", _v1(_external_storage), "verify", UnsupportedFormatError, "h5.external", None),
    ("v1_virtual_dataset", _v1(_virtual), "verify", UnsupportedFormatError, "h5.virtual", None),
    ("v1_unknown_filter", _v1(lambda f, w: f["tree"].create_dataset("so", data=np.arange(100, dtype="<i4"), scaleoffset=0)), "verify", UnsupportedFormatError, "h5.filter", None),
    ("v1_data_dtype_string", _v1(lambda f, w: _replace(_csr(f), "data", np.array([b"x"] * _csr(f)["data"].shape[0]))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("v1_data_dtype_int", _v1(lambda f, w: _replace(_csr(f), "data", np.zeros(_csr(f)["data"].shape[0], "<i4"))), "verify", InvalidTensorError, "csr.data.dtype", None),
    ("v1_dtype_attr_not_float", _v1(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.dtype", np.bytes_(b"|O"))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("v1_big_endian", _v1(lambda f, w: _replace(f["tree/layers/dense/vars"], "1", f["tree/layers/dense/vars/1"][()].astype(">f4"))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("v1_index_dtype_too_narrow", _v1(lambda f, w: _replace(_csr(f), "indptr", (_csr(f)["indptr"][()] % 256).astype("<u1"))), "verify", InvalidTensorError, "csr.index.dtype", None),
    ("v1_index_dtype_signed", _v1(lambda f, w: _replace(_csr(f), "indices", _csr(f)["indices"][()].astype("<i4"))), "verify", InvalidTensorError, "csr.index.dtype", None),
    ("v1_bad_shape_negative", _v1(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([-200, 300], np.int64))), "verify", InvalidTensorError, "tensor.shape", None),
    ("v1_bad_shape_float", _v1(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([200.0, 300.0]))), "verify", InvalidTensorError, "tensor.shape", None),
    ("v1_declared_shape_larger", _v1(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([400, 300], np.int64))), "verify", InvalidTensorError, "csr.indptr.length", None),
    ("v1_indptr_length", _v1(lambda f, w: _set_indptr(f, lambda p: p[:-1])), "verify", InvalidTensorError, "csr.indptr.length", None),
    ("v1_indptr_start", _v1(lambda f, w: _set_indptr(f, lambda p: np.concatenate([[1], p[1:]]))), "verify", InvalidTensorError, "csr.indptr.start", None),
    ("v1_indptr_order", _v1(lambda f, w: _set_indptr(f, lambda p: np.concatenate([p[:5], [p[5] + 50], p[6:]]))), "verify", InvalidTensorError, "csr.indptr.order", None),
    ("v1_indptr_end", _v1(lambda f, w: _set_indptr(f, lambda p: np.concatenate([p[:-1], [p[-1] - 1]]))), "verify", InvalidTensorError, "csr.indptr.end", None),
    ("v1_nnz_mismatch", _v1(lambda f, w: _replace(_csr(f), "indices", _csr(f)["indices"][:-1])), "verify", InvalidTensorError, "csr.nnz", None),
    ("v1_column_out_of_range", _v1(lambda f, w: _set_indices(f, lambda i, g: np.concatenate([i[:-1], [300]]))), "verify", InvalidTensorError, "csr.indices.range", None),
    ("v1_duplicate_column", _v1(lambda f, w: _set_indices(f, _dup_column)), "verify", InvalidTensorError, "csr.indices.order", None),
    ("v1_declared_size_bomb", _v1(_v1_bomb_shape), "verify", ResourceLimitError, "limit.tensor", None),
    ("v1_cumulative_bomb", _v1(_v1_cumulative), "verify", ResourceLimitError, "limit.total", TIGHT),
    ("v1_compression_ratio_bomb", _v1(_compression_bomb), "verify", ResourceLimitError, "limit.compression", None),
    ("v1_declares_data_stores_none", _v1(_unallocated), "verify", CorruptFileError, "h5.storage", None),
    ("v1_nan_values", _v1(_nan), "verify", InvalidTensorError, "tensor.nonfinite", None),
    # version 3: the zdict coding (DEFLATE with the preset dictionary), digests
    ("zdict_inflates_past", _ix_model(_member_edit(lambda d: ("zdict", compress(d + b" " * 10, "zdict"), len(d)))), "verify", InvalidTensorError, "stream.inflate", None),
    ("zdict_truncated", _ix_model(_member_edit(lambda d: ("zdict", compress(d, "zdict")[:-3], len(d)))), "verify", InvalidTensorError, "stream.truncated", None),
    ("zdict_trailing", _ix_model(_member_edit(lambda d: ("zdict", compress(d, "zdict") + b"\0\0", len(d)))), "verify", InvalidTensorError, "stream.trailing", None),
    ("zdict_data_as_deflate", _ix_model(_member_edit(lambda d: ("deflate", compress(d, "zdict"), len(d)))), "verify", InvalidTensorError, "stream.deflate", None),
    ("zdict_ratio_bomb", _ix_model(_member_edit(lambda d: ("zdict", compress(d, "zdict"), 1 << 28))), "verify", ResourceLimitError, "limit.compression", None),
    ("zdict_in_v2", _ix(_zdict_in_v2, "v2"), "verify", CorruptFileError, "stream.coding", None),
    ("stream_declares_zero", _ix_model(_member_edit(lambda d: ("deflate", _zeros_deflated(512 << 20), 0))), "verify", InvalidTensorError, "stream.inflate", None),
    ("digest_prefix_mismatch", _ix(_other_digest), "verify", InvalidTensorError, "tensor.checksum", None),
    ("digest_full_length", _ix(lambda p: p.tensor(K).__setitem__("digest", "0" * 64)), "verify", CorruptFileError, "index.schema", None),
    ("digest_v2_field", _ix(lambda p: p.tensor(K).__setitem__("sha256", "0" * 64)), "verify", CorruptFileError, "index.schema", None),
    ("file_digest_missing", _ix(lambda p: p.doc.pop("sha256")), "verify", CorruptFileError, "index.schema", None),
    ("file_digest_mismatch", _ix(lambda p: p.doc.__setitem__("sha256", "0" * 64)), "verify", CorruptFileError, "file.checksum", None),
    ("file_digest_order", _ix(lambda p: p.doc["tensors"].reverse()), "verify", CorruptFileError, "file.checksum", None),
    # models
    ("lambda_layer", _lambda_config, "load", UnsafeModelError, "model.lambda", None),
    ("weight_shape_mismatch", _ix_model(_config_edit(_shape_mismatch)), "load", WeightMismatchError, "weights.shape", None),
]


def build_bases(work: Path) -> dict:
    """The valid files every case starts from."""
    import keras
    work.mkdir(parents=True, exist_ok=True)
    v2 = work / "base.sparse.h5"
    sparsecomp.pack(base_h5(work / "base.h5"), v2)
    shared = work / "shared.sparse.h5"
    sparsecomp.pack(base_h5(work / "base_shared.h5", shared=True), shared)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    model = work / "model.sparse.h5"
    sparsecomp.save(m, model)
    return {"packed": v2, "v1": V1_BASE, "v2": V2_BASE, "model": model, "shared": shared}


def build_all(out_dir) -> dict:
    """Write every hostile file into ``out_dir``; returns ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_work"
    bases = build_bases(work)
    shutil.copy(bases["packed"], out / "_base.sparse.h5")
    paths = {}
    for name, build, *_ in CASES:
        p = out / f"{name}.sparse.h5"
        build(bases, p, work)
        paths[name] = p
    (out / "CASES.json").write_text(json.dumps(
        [{"name": n, "operation": op, "error": e.__name__, "rule": r} for n, _b, op, e, r, _l in CASES], indent=1))
    return paths


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "hostile-files"
    print(f"wrote {len(build_all(target))} hostile files to {target}")
