"""Write a folder of hostile ``.sparse.h5`` files, one per attack class (like safetensors' attacks/).

    python tests/hostile/make_hostile.py OUT_DIR

Each case starts from a valid file and breaks exactly one thing. ``CASES`` lists, per class, the
builder, the operation that must refuse it (``verify`` or ``load``), and the documented error
type and rule id. ``tests/test_hostile.py`` checks every one; the canary file of the external
storage case must never be read.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sparsecomp  # noqa: E402
from sparsecomp import (CorruptFileError, InvalidTensorError, ResourceLimitError,  # noqa: E402
                        UnsafeModelError, UnsupportedFormatError, WeightMismatchError)

CANARY = b"CANARY-7f3a-secret-bytes-that-must-never-leak"
TIGHT = dict(max_tensor_bytes=1 << 20, max_total_bytes=4 << 20, max_attributes=64, max_members=10_000)


def base_h5(path: Path) -> Path:
    """A small checkpoint: a 90%-sparse kernel (CSR), a dense bias, an integer counter."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((200, 300)).astype("float32")
    k[rng.random(k.shape) < 0.9] = 0
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "fc"
        g.create_dataset("0", data=k)
        g.create_dataset("1", data=rng.standard_normal(300).astype("float32"))
        f.create_dataset("step", data=np.int64(7))
    return path


def _csr(f):
    return f["tree/layers/dense/vars/0"]


def _edit(fn):
    def build(base, out, work):
        shutil.copy(base, out)
        with h5py.File(out, "r+") as f:
            fn(f, work)
    return build


def _raw(fn):
    def build(base, out, work):
        out.write_bytes(fn(base.read_bytes(), work))
    return build


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
    idx = fn(idx, g)
    _replace(g, "indices", idx.astype(g["indices"].dtype))


def _set_indptr(f, fn):
    g = _csr(f)
    p = g["indptr"][()].astype(np.int64)
    p = fn(p)
    _replace(g, "indptr", p.astype(g["indptr"].dtype))


def _dup_column(idx, g):
    p = g["indptr"][()]
    row = int(np.argmax(np.diff(p.astype(np.int64)) >= 2))
    s = int(p[row])
    idx[s + 1] = idx[s]
    return idx


def _bomb_shape(f, _work):
    _csr(f).attrs["sparsecomp.shape"] = np.array([1 << 20, 1 << 20], np.int64)   # 4 TiB of float32


def _cumulative(f, _work):
    # 8 tensors of 0.75 MiB each: every one under the per-tensor limit, together over the total
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
    g = f["tree"]
    g.create_dataset("zeros", data=np.zeros((1024, 1024), "<f4"), chunks=(1024, 1024), compression="gzip",
                     compression_opts=9)


def _external_storage(f, work):
    canary = work / "canary.bin"
    canary.write_bytes(CANARY * 100)
    f["tree"].create_dataset("leak", shape=(len(CANARY) * 100,), dtype="u1", external=[(str(canary), 0, h5py.h5f.UNLIMITED)])


def _virtual(f, work):
    src = work / "vsrc.h5"
    with h5py.File(src, "w") as s:
        s.create_dataset("x", data=np.arange(10, dtype="<f4"))
    layout = h5py.VirtualLayout(shape=(10,), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(src), "x", shape=(10,))
    f["tree"].create_virtual_dataset("virt", layout)


def _lambda_config(base, out, work):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x + 1, name="evil"), keras.layers.Dense(2)])
    sparsecomp.save(m, out)


def _shape_mismatch(base, out, work):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    sparsecomp.save(m, out)
    with h5py.File(out, "r+") as f:
        g = f["tree/d"]
        attrs = dict(g["0"].attrs)
        del g["0"]
        arr = np.ones((5, 3), "<f4")
        d = g.create_dataset("0", data=arr)
        for k, v in attrs.items():
            d.attrs[k] = v
        d.attrs["sparsecomp.sha256"] = np.bytes_(sparsecomp.csr.tensor_digest(arr).encode())


def _unallocated(f, _work):
    d = f["tree"].create_dataset("hollow", shape=(1000,), dtype="<f4")   # declared, never written
    d.attrs["sparsecomp.sha256"] = np.bytes_(sparsecomp.csr.tensor_digest(np.zeros(1000, "<f4")).encode())


def _deep(f, _work):
    g = f["tree"]
    for i in range(80):
        g = g.create_group("d")


def _many_attrs(f, _work):
    for i in range(100):
        f["tree"].attrs[f"a{i}"] = i


def _nan(f, _work):
    g = _csr(f)
    d = g["data"][()]
    d[0] = np.nan
    _replace(g, "data", d)


# (name, builder, operation, error type, rule, limits)
CASES = [
    ("not_hdf5", _raw(lambda b, w: b"GIF89a" + bytes(range(256)) * 4), "verify", CorruptFileError, "file.signature", None),
    ("empty", _raw(lambda b, w: b""), "verify", CorruptFileError, "file.signature", None),
    ("truncated_10", _raw(lambda b, w: b[:len(b) // 10]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_50", _raw(lambda b, w: b[:len(b) // 2]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_99", _raw(lambda b, w: b[:len(b) - 7]), "verify", CorruptFileError, "file.truncated", None),
    ("truncated_header", _raw(lambda b, w: b[:20]), "verify", UnsupportedFormatError, "file.superblock", None),
    ("trailing_data", _raw(lambda b, w: b + b"PK\x03\x04" + b"\0" * 100), "verify", CorruptFileError, "file.trailing", None),
    ("userblock_polyglot", _raw(lambda b, w: b"PK\x03\x04" + b"\0" * 508 + b), "verify", CorruptFileError, "file.signature", None),
    ("bad_tag", _edit(lambda f, w: f.attrs.__setitem__("format", np.bytes_(b"safetensors"))), "verify", UnsupportedFormatError, "format.tag", None),
    ("bad_version", _edit(lambda f, w: f.attrs.__setitem__("format_version", 2)), "verify", UnsupportedFormatError, "format.version", None),
    ("bad_version_type", _edit(lambda f, w: f.attrs.__setitem__("format_version", np.bytes_(b"1"))), "verify", UnsupportedFormatError, "format.version", None),
    ("vlen_reserved_attribute", _edit(lambda f, w: f.attrs.__setitem__("format", "sparsecomp")), "verify", CorruptFileError, "h5.attr.vlen", None),
    ("bad_kind", _edit(lambda f, w: f.attrs.__setitem__("kind", np.bytes_(b"pickle"))), "verify", UnsupportedFormatError, "format.kind", None),
    ("missing_tree", _edit(lambda f, w: f.move("tree", "elsewhere")), "verify", CorruptFileError, "format.tree", None),
    ("checksum_mismatch", _edit(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.sha256", np.bytes_(b"0" * 64))), "verify", InvalidTensorError, "tensor.checksum", None),
    ("checksum_missing", _edit(lambda f, w: f["tree/layers/dense/vars/1"].attrs.__delitem__("sparsecomp.sha256")), "verify", InvalidTensorError, "tensor.checksum.missing", None),
    ("csr_member_missing", _edit(lambda f, w: _csr(f).__delitem__("indptr")), "verify", InvalidTensorError, "csr.members", None),
    ("csr_member_extra", _edit(lambda f, w: _csr(f).create_dataset("evil", data=np.zeros(3))), "verify", InvalidTensorError, "csr.members", None),
    ("csr_member_wrong_kind", _edit(lambda f, w: (_csr(f).__delitem__("data"), _csr(f).create_group("data"))), "verify", InvalidTensorError, "csr.members", None),
    ("soft_link", _edit(lambda f, w: f["tree"].__setitem__("alias", h5py.SoftLink("/tree/layers"))), "verify", UnsupportedFormatError, "h5.softlink", None),
    ("external_link", _edit(lambda f, w: f["tree"].__setitem__("ext", h5py.ExternalLink(str(w / "canary.h5"), "/x"))), "verify", UnsupportedFormatError, "h5.externallink", None),
    ("hard_link_alias", _edit(lambda f, w: f["tree"].__setitem__("again", f["tree/layers/dense/vars/1"])), "verify", UnsupportedFormatError, "h5.alias", None),
    ("external_storage", _edit(_external_storage), "verify", UnsupportedFormatError, "h5.external", None),
    ("virtual_dataset", _edit(_virtual), "verify", UnsupportedFormatError, "h5.virtual", None),
    ("unknown_filter", _edit(lambda f, w: f["tree"].create_dataset("so", data=np.arange(100, dtype="<i4"), scaleoffset=0)), "verify", UnsupportedFormatError, "h5.filter", None),
    ("hostile_name", _edit(lambda f, w: f["tree"].create_group("a\x1b[2Jb")), "verify", CorruptFileError, "h5.name", None),
    ("data_dtype_string", _edit(lambda f, w: _replace(_csr(f), "data", np.array([b"x"] * _csr(f)["data"].shape[0]))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("data_dtype_int", _edit(lambda f, w: _replace(_csr(f), "data", np.zeros(_csr(f)["data"].shape[0], "<i4"))), "verify", InvalidTensorError, "csr.data.dtype", None),
    ("dtype_attr_not_float", _edit(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.dtype", np.bytes_(b"|O"))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("big_endian", _edit(lambda f, w: _replace(f["tree/layers/dense/vars"], "1", f["tree/layers/dense/vars/1"][()].astype(">f4"))), "verify", InvalidTensorError, "tensor.dtype", None),
    ("index_dtype_too_narrow", _edit(lambda f, w: _set_indptr(f, lambda p: p) or _replace(_csr(f), "indptr", (_csr(f)["indptr"][()] % 256).astype("<u1"))), "verify", InvalidTensorError, "csr.index.dtype", None),
    ("index_dtype_signed", _edit(lambda f, w: _replace(_csr(f), "indices", _csr(f)["indices"][()].astype("<i4"))), "verify", InvalidTensorError, "csr.index.dtype", None),
    ("bad_shape_negative", _edit(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([-200, 300], np.int64))), "verify", InvalidTensorError, "tensor.shape", None),
    ("bad_shape_float", _edit(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([200.0, 300.0]))), "verify", InvalidTensorError, "tensor.shape", None),
    ("declared_shape_larger", _edit(lambda f, w: _csr(f).attrs.__setitem__("sparsecomp.shape", np.array([400, 300], np.int64))), "verify", InvalidTensorError, "csr.indptr.length", None),
    ("indptr_length", _edit(lambda f, w: _set_indptr(f, lambda p: p[:-1])), "verify", InvalidTensorError, "csr.indptr.length", None),
    ("indptr_start", _edit(lambda f, w: _set_indptr(f, lambda p: np.concatenate([[1], p[1:]]))), "verify", InvalidTensorError, "csr.indptr.start", None),
    ("indptr_order", _edit(lambda f, w: _set_indptr(f, lambda p: np.concatenate([p[:5], [p[5] + 50], p[6:]]))), "verify", InvalidTensorError, "csr.indptr.order", None),
    ("indptr_end", _edit(lambda f, w: _set_indptr(f, lambda p: np.concatenate([p[:-1], [p[-1] - 1]]))), "verify", InvalidTensorError, "csr.indptr.end", None),
    ("nnz_mismatch", _edit(lambda f, w: _replace(_csr(f), "indices", _csr(f)["indices"][:-1])), "verify", InvalidTensorError, "csr.nnz", None),
    ("column_out_of_range", _edit(lambda f, w: _set_indices(f, lambda i, g: np.concatenate([i[:-1], [300]]))), "verify", InvalidTensorError, "csr.indices.range", None),
    ("duplicate_column", _edit(lambda f, w: _set_indices(f, _dup_column)), "verify", InvalidTensorError, "csr.indices.order", None),
    ("declared_size_bomb", _edit(_bomb_shape), "verify", ResourceLimitError, "limit.tensor", None),
    ("cumulative_bomb", _edit(_cumulative), "verify", ResourceLimitError, "limit.total", TIGHT),
    ("compression_ratio_bomb", _edit(_compression_bomb), "verify", ResourceLimitError, "limit.compression", None),
    ("declares_data_stores_none", _edit(_unallocated), "verify", CorruptFileError, "h5.storage", None),
    ("nan_values", _edit(_nan), "verify", InvalidTensorError, "tensor.nonfinite", None),
    ("deep_nesting", _edit(_deep), "verify", ResourceLimitError, "limit.depth", None),
    ("too_many_attributes", _edit(_many_attrs), "verify", ResourceLimitError, "limit.attributes", TIGHT),
    ("lambda_layer", _lambda_config, "load", UnsafeModelError, "model.lambda", None),
    ("weight_shape_mismatch", _shape_mismatch, "load", WeightMismatchError, "weights.shape", None),
]


def build_all(out_dir) -> dict:
    """Write every hostile file into ``out_dir``; returns ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_work"
    work.mkdir(exist_ok=True)
    base = out / "_base.sparse.h5"
    sparsecomp.pack(base_h5(work / "base.h5"), base)
    paths = {}
    for name, build, *_ in CASES:
        p = out / f"{name}.sparse.h5"
        build(base, p, work)
        paths[name] = p
    (out / "CASES.json").write_text(json.dumps(
        [{"name": n, "operation": op, "error": e.__name__, "rule": r} for n, _b, op, e, r, _l in CASES], indent=1))
    return paths


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "hostile-files"
    print(f"wrote {len(build_all(target))} hostile files to {target}")
