"""The index (format versions 2 and 3): one JSON document that says where every tensor's streams are.

Written deflated (version 3: with the preset dictionary ``D``) at the end of blob 0 (root
attribute ``index`` gives its place), so a file's metadata is a few hundred bytes of HDF5 headers
plus this. :func:`parse_index` checks every field of a hostile index — types, ranges, names,
declared sizes against :class:`Limits`, stream extents inside their blobs and never overlapping,
and each codec's own header rules — before anything it declares is decoded. The schema is ``docs/FORMAT.md``'s; field by field:

``writer``, ``kind``, ``source`` (``{"name", "bytes"}`` or null), ``min_ratio``, ``level``,
``optimizer_dropped``, ``keras_version`` (or null), ``blobs`` (sizes of blobs 1, 2, ...),
``tensors`` (entries below) and ``files`` (archive members: ``name``, ``compress_type``, ``tree``
and, for a stored member, ``blob``, ``at``, ``stream``); version 3 adds ``sha256`` (the file
digest: SHA-256 of the tensors' SHA-256 digests, in index order).
A tensor entry: ``path``, ``shape``, ``dtype``, ``nnz``, ``codec``, ``params``, ``blob``, ``at``,
``streams`` (``[coding, stored bytes, decoded bytes]`` each, laid out back to back from ``at``),
the tensor's SHA-256 (version 2: ``sha256``, 64 hex digits; version 3: ``digest``, its first 8);
optional ``name`` (a Keras variable path), ``category`` (``"optimizer"``) and ``attrs``
(``true``: the source dataset's attributes are on a placeholder group in ``/tree``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import CorruptFileError, InvalidTensorError, ResourceLimitError, UnsupportedFormatError
from . import codecs
from .codecs import StreamRef, TensorHeader
from .spec import DIGEST_PREFIX, KINDS, LEVELS, Limits
from .streams import CODINGS, codings
from .tensors import is_storable

__all__ = ["IndexEntry", "FileEntry", "Index", "parse_index", "tensor_entry", "file_entry"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_PREFIX = re.compile(rf"[0-9a-f]{{{DIGEST_PREFIX}}}")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")
_TOP_V2 = {"writer": str, "kind": str, "source": (dict, type(None)), "min_ratio": (int, float), "level": int,
           "optimizer_dropped": bool, "keras_version": (str, type(None)), "blobs": list, "tensors": list,
           "files": list}
_TOP = {2: _TOP_V2, 3: dict(_TOP_V2, sha256=str)}
_TENSOR_BASE = ("path", "shape", "dtype", "nnz", "codec", "params", "blob", "at", "streams")
#: Per version: the tensor entry's required fields, and the one holding its checksum with its form.
_TENSOR_REQUIRED = {2: _TENSOR_BASE + ("sha256",), 3: _TENSOR_BASE + ("digest",)}
_CHECKSUM = {2: ("sha256", _HEX64, "64 lowercase hex digits"),
             3: ("digest", _HEX_PREFIX, f"{DIGEST_PREFIX} lowercase hex digits")}
_TENSOR_OPTIONAL = ("name", "category", "attrs")


@dataclass(frozen=True)
class IndexEntry:
    """A checked tensor entry: the codec's header plus what the index says around it."""

    header: TensorHeader
    nnz: int
    digest: str                      # the tensor's SHA-256 as stored: 64 hex digits (v2) or the first 8 (v3)
    name: str | None = None
    category: str = "weights"
    attrs: bool = False


@dataclass(frozen=True)
class FileEntry:
    """An archive member (``.keras`` member, or a model's ``config.json``)."""

    name: str
    compress_type: int
    tree: bool
    stream: StreamRef | None = None


@dataclass
class Index:
    meta: dict
    blob_sizes: list                 # blob 0 first (its size: up to the end of the index)
    tensors: list = field(default_factory=list)
    files: list = field(default_factory=list)
    sha256: str | None = None        # version 3: the file digest (SHA-256 of the tensors' SHA-256 digests)


def tensor_entry(path, array, enc, *, blob: int, at: int, digest: str, name=None, category="weights",
                 attrs=False) -> dict:
    """The JSON entry the writer stores for one encoded tensor (``digest``: its SHA-256, hex; the
    entry keeps the first :data:`~.spec.DIGEST_PREFIX` digits)."""
    d = {"path": path, "shape": [int(s) for s in array.shape], "dtype": array.dtype.str, "nnz": int(enc.nnz),
         "codec": enc.codec, "params": enc.params, "blob": blob, "at": at,
         "streams": [[s.coding, s.stored, s.size] for s in enc.streams], "digest": digest[:DIGEST_PREFIX]}
    if name is not None:
        d["name"] = name
    if category != "weights":
        d["category"] = category
    if attrs:
        d["attrs"] = True
    return d


def file_entry(member: dict, stream=None, *, blob: int = 0, at: int = 0) -> dict:
    d = {"name": member["name"], "compress_type": int(member.get("compress_type", 0)),
         "tree": bool(member.get("tree", False))}
    if stream is not None:
        d.update(blob=blob, at=at, stream=[stream.coding, stream.stored, stream.size])
    return d


class _Checker:
    def __init__(self, limits: Limits, file, version: int):
        self.limits = limits
        self.file = file
        self.codings = codings(version)
        self.total = 0
        self.extents: list[tuple[int, int, int, str]] = []

    def fail(self, msg, rule="index.schema", member=None, cls=CorruptFileError):
        raise cls(msg, rule=rule, file=self.file, member=member)

    def integer(self, v, what, lo=0, hi=None, member=None) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
            self.fail(f"{what} must be an integer in [{lo}, {hi if hi is not None else 'inf'}], not {v!r}",
                      member=member)
        return v

    def name(self, v, what, member=None) -> str:
        if not isinstance(v, str) or not v or len(v) > self.limits.max_name_length or _BAD_NAME.search(v):
            self.fail(f"{what} must be a printable name of at most {self.limits.max_name_length} characters",
                      rule="index.name", member=member)
        return v

    def stream(self, raw, member, blob_sizes, blob, at) -> StreamRef:
        if not isinstance(raw, list) or len(raw) != 3 or raw[0] not in CODINGS:
            self.fail(f"a stream must be [coding in {list(self.codings)}, stored, size], not {raw!r}", member=member)
        coding = raw[0]
        if coding not in self.codings:
            self.fail(f"stream coding {coding!r} does not exist in this format version (it has "
                      f"{list(self.codings)})", rule="stream.coding", member=member)
        stored = self.integer(raw[1], "stored bytes", member=member)
        size = self.integer(raw[2], "decoded bytes", member=member)
        if size > self.limits.max_tensor_bytes:
            self.fail(f"a stream declares {size} decoded bytes, over the per-tensor limit",
                      rule="limit.tensor", member=member, cls=ResourceLimitError)
        if coding == "raw" and stored != size:
            self.fail(f"a raw stream stores {stored} bytes but declares {size}", rule="stream.size", member=member)
        if coding != "raw" and size > stored * self.limits.max_compression_ratio:
            self.fail(f"a stream declares {size} bytes from {stored} stored (ratio above "
                      f"{self.limits.max_compression_ratio})", rule="limit.compression", member=member,
                      cls=ResourceLimitError)
        if at + stored > blob_sizes[blob]:
            self.fail(f"a stream at {at}+{stored} runs past the end of blob {blob} ({blob_sizes[blob]} bytes)",
                      rule="index.extent", member=member)
        if stored:
            self.extents.append((blob, at, at + stored, member))
        return StreamRef(coding, stored, size, blob, at)


def parse_index(raw: bytes, blob_sizes_found: list, index_at: tuple, *, limits: Limits, file,
                version: int) -> Index:
    """Check and return the index of a file of format ``version`` (2 or 3) (``raw``: its decoded
    bytes; ``blob_sizes_found``: the sizes of the blob datasets present; ``index_at``:
    ``(blob, offset, stored)`` of the index itself)."""
    ck = _Checker(limits, file, version)
    top, required = _TOP[version], _TENSOR_REQUIRED[version]
    check_key, check_form, check_text = _CHECKSUM[version]
    try:
        doc = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        ck.fail(f"the index is not valid JSON ({type(exc).__name__})", rule="index.json")
    if not isinstance(doc, dict):
        ck.fail("the index must be a JSON object")
    for key, types in top.items():
        if key not in doc or not isinstance(doc[key], types) or (types is int and isinstance(doc[key], bool)):
            ck.fail(f"index field {key!r} is missing or of the wrong type")
    if set(doc) - set(top):
        ck.fail(f"unknown index fields {sorted(set(doc) - set(top))[:5]}")
    if "sha256" in top and not _HEX64.fullmatch(doc["sha256"]):
        ck.fail("the file digest sha256 must be 64 lowercase hex digits")
    if doc["kind"] not in KINDS:
        ck.fail(f"unknown kind {doc['kind']!r}", rule="format.kind", cls=UnsupportedFormatError)
    if doc["level"] not in LEVELS:
        ck.fail(f"level must be one of {LEVELS}")
    src = doc["source"]
    if src is not None and (set(src) != {"name", "bytes"} or not isinstance(src["name"], str)
                            or not isinstance(src["bytes"], int)):
        ck.fail("source must be {name, bytes} or null")
    declared = [ck.integer(b, "a blob size") for b in doc["blobs"]]
    if len(declared) + 1 != len(blob_sizes_found):
        ck.fail(f"the index declares {len(declared) + 1} blobs, the file holds {len(blob_sizes_found)}",
                rule="index.blobs")
    if declared != list(blob_sizes_found[1:]):
        ck.fail(f"blob sizes {declared} differ from the datasets' {list(blob_sizes_found[1:])}", rule="index.blobs")
    sizes = list(blob_sizes_found)
    i_blob, i_at, i_stored = index_at
    ck.extents.append((i_blob, i_at, i_at + i_stored, "index"))
    n = len(doc["tensors"]) + len(doc["files"])
    if n > limits.max_members:
        ck.fail(f"the index lists {n} members, more than {limits.max_members}", rule="limit.members",
                cls=ResourceLimitError)
    tensors, paths = [], set()
    for i, t in enumerate(doc["tensors"]):
        member = f"index.tensors[{i}]"
        if not isinstance(t, dict) or any(k not in t for k in required) \
                or set(t) - set(required) - set(_TENSOR_OPTIONAL):
            ck.fail("a tensor entry lacks a field or has an unknown one", member=member)
        path = ck.name(t["path"], "a tensor path", member)
        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts):
            ck.fail(f"bad tensor path {path[:80]!r}", rule="index.name", member=member)
        if path in paths:
            ck.fail(f"two tensors at {path[:80]!r}", rule="index.duplicate", member=member)
        paths.add(path)
        member = path
        shape = t["shape"]
        if not isinstance(shape, list) or len(shape) > limits.max_rank:
            ck.fail(f"bad shape {shape!r}", rule="tensor.shape", member=member, cls=InvalidTensorError)
        shape = tuple(ck.integer(d, "a dimension", 0, limits.max_dim, member) for d in shape)
        try:
            dtype = np.dtype(t["dtype"]) if isinstance(t["dtype"], str) else None
        except TypeError:
            dtype = None
        if dtype is None or not is_storable(dtype) or dtype.str != t["dtype"]:
            ck.fail(f"unsupported dtype {t['dtype']!r}", rule="tensor.dtype", member=member, cls=InvalidTensorError)
        size = 1
        for d in shape:
            size *= d
        nbytes = size * dtype.itemsize
        if nbytes > limits.max_tensor_bytes:
            ck.fail(f"declares {nbytes} bytes, over the per-tensor limit {limits.max_tensor_bytes}",
                    rule="limit.tensor", member=member, cls=ResourceLimitError)
        ck.total += nbytes
        if ck.total > limits.max_total_bytes:
            ck.fail(f"the file declares more than {limits.max_total_bytes} bytes in all", rule="limit.total",
                    member=member, cls=ResourceLimitError)
        nnz = ck.integer(t["nnz"], "nnz", 0, size, member)
        if not isinstance(t["codec"], str) or not isinstance(t["params"], dict):
            ck.fail("codec must be a name and params an object", member=member)
        codec = codecs.get(t["codec"], file=file, member=member)
        blob = ck.integer(t["blob"], "blob", 0, len(sizes) - 1, member)
        at = ck.integer(t["at"], "at", 0, None, member)
        if not isinstance(t["streams"], list) or len(t["streams"]) > 64:
            ck.fail("streams must be a list of at most 64 streams", member=member)
        refs, pos = [], at
        for raw_s in t["streams"]:
            ref = ck.stream(raw_s, member, sizes, blob, pos)
            refs.append(ref)
            pos += ref.stored
        if not isinstance(t[check_key], str) or not check_form.fullmatch(t[check_key]):
            ck.fail(f"{check_key} must be {check_text}", member=member)
        name = t.get("name")
        if name is not None:
            ck.name(name, "a variable name", member)
        category = t.get("category", "weights")
        if category not in ("weights", "optimizer") or ("category" in t and category == "weights"):
            ck.fail(f"bad category {category!r}", member=member)
        if "attrs" in t and t["attrs"] is not True:
            ck.fail("attrs, when present, is true", member=member)
        header = TensorHeader(path=path, shape=shape, dtype=dtype, codec=codec.name, params=t["params"],
                              streams=tuple(refs), nnz=nnz, file=str(file))
        roles = codec.roles(header)
        if len(roles) != len(refs):
            header.fail(f"{codec.name} needs {len(roles)} streams, the index lists {len(refs)}",
                        f"{codec.name}.streams")
        codec.check(header)
        tensors.append(IndexEntry(header, nnz, t[check_key], name, category, bool(t.get("attrs", False))))
    files, extra = [], 0
    names = set()
    for i, f in enumerate(doc["files"]):
        member = f"index.files[{i}]"
        if not isinstance(f, dict) or not {"name", "compress_type", "tree"} <= set(f) \
                or set(f) - {"name", "compress_type", "tree", "blob", "at", "stream"}:
            ck.fail("a file entry lacks a field or has an unknown one", member=member)
        fname = ck.name(f["name"], "a member name", member)
        if fname.startswith("/") or ".." in fname.split("/") or "\\" in fname or fname in names:
            ck.fail(f"unacceptable archive member name {fname[:80]!r}", rule="zip.name", member=member)
        names.add(fname)
        if f["compress_type"] not in (0, 8) or not isinstance(f["tree"], bool):
            ck.fail("compress_type must be 0 or 8 and tree a bool", member=member)
        stored = f["tree"] or fname.endswith("/")
        if stored != ("stream" not in f) or ("stream" in f) != ("blob" in f and "at" in f):
            ck.fail("a stored member has blob, at and stream; the tree member and directories none", member=member)
        ref = None
        if "stream" in f:
            blob = ck.integer(f["blob"], "blob", 0, len(sizes) - 1, member)
            ref = ck.stream(f["stream"], member, sizes, blob, ck.integer(f["at"], "at", 0, None, member))
            extra += ref.size
            if extra > limits.max_extra_file_bytes:
                ck.fail(f"archive members hold more than {limits.max_extra_file_bytes} bytes", rule="limit.extra",
                        member=member, cls=ResourceLimitError)
        files.append(FileEntry(fname, f["compress_type"], f["tree"], ref))
    ext = sorted(ck.extents)
    for a, b in zip(ext, ext[1:]):
        if a[0] == b[0] and b[1] < a[2]:
            ck.fail(f"streams of {a[3]!r} and {b[3]!r} overlap", rule="index.overlap", member=b[3])
    meta = {k: doc[k] for k in ("writer", "kind", "source", "min_ratio", "level", "optimizer_dropped",
                                "keras_version")}
    return Index(meta=meta, blob_sizes=sizes, tensors=tensors, files=files, sha256=doc.get("sha256"))
