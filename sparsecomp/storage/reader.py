"""Reading ``.sparse.h5`` files, versions 1, 2 and 3, through one interface.

:class:`Reader` checks the framing, opens the file, checks the root, and (versions 2 and 3) reads
and checks the whole index; :meth:`Reader.tensors` lists every tensor with every header checked and
the resource budget accounted *before* the first one is decoded; :meth:`Reader.read` decodes one,
bounded and validated, and checks its SHA-256 (version 3: the first 8 hex digits the index keeps);
:meth:`Reader.check_digest`, once every tensor has been read, checks a version-3 file's digest
over all the tensors' full SHA-256s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import CorruptFileError, InvalidTensorError, ResourceLimitError, UnsupportedFormatError
from . import codecs
from .h5tree import TreeChecker, check_framing, check_signature, open_h5, text
from .index import Index, parse_index
from .spec import (BLOB, FORMAT, INDEX_ATTR, KINDS, OPTIMIZER_GROUPS, READABLE_VERSIONS, Limits)
from .streams import decode_stream
from .tensors import count_nonzero, file_digest, is_storable, tensor_digest
from .v1 import csr_meta, read_v1_tensor

__all__ = ["Reader", "TensorEntry", "layer_label"]

_V1_ROOT = ("format", "format_version", "writer", "kind", "source_name", "source_bytes", "min_ratio",
            "optimizer_dropped", "keras_version")
_V2_ROOT = ("format", "format_version", INDEX_ATTR)


@dataclass
class TensorEntry:
    """One tensor of a file, from its headers: what it is and what storing it cost."""

    path: str
    shape: tuple
    dtype: np.dtype
    nnz: int | None
    codec: str
    streams: dict
    details: dict = field(default_factory=dict)
    category: str = "weights"
    layer: str = ""
    name: str | None = None
    attrs: list = field(default_factory=list)     # HDF5 attributes to give back on unpack
    ref: object = None

    @property
    def stored_bytes(self) -> int:
        return sum(self.streams.values())


def layer_label(path: str, vars_name: str | None) -> str:
    """The layer a packed tensor belongs to, for reports."""
    parts = path.split("/")
    if vars_name:
        return vars_name
    if parts[0] == "model_weights" and len(parts) > 1:
        return parts[1]
    if parts[0] in OPTIMIZER_GROUPS:
        return parts[0]
    return "/".join(parts[:-1]) or parts[0]


def _category(path: str) -> str:
    return "optimizer" if path.split("/", 1)[0] in OPTIMIZER_GROUPS else "weights"


class Reader:
    """An open, checked sparsecomp file (use as a context manager)."""

    def __init__(self, path, limits: Limits | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        check_signature(self.path, file_limit=self.limits.max_file_bytes)
        check_framing(self.path)
        self.h5 = open_h5(self.path, self.path)
        self.checker = TreeChecker(self.limits, self.path, no_vlen=True)
        self._tensors = None
        self._tree = None
        self._digests: dict[str, str] = {}         # path -> full SHA-256 of each tensor read and verified
        try:
            self._open()
        except BaseException:
            self.h5.close()
            raise

    # -- opening ------------------------------------------------------------------------------

    def _fail(self, cls, msg, rule, member=None):
        raise cls(msg, rule=rule, file=self.path, member=member)

    def _open(self) -> None:
        # every root attribute through the checker first: it refuses variable-length or odd types
        # in the reserved places before any value is read
        root = dict((a[0], a[1]) for a in self.checker.attrs(self.h5, "/", reserved=_V1_ROOT + _V2_ROOT))
        if text(root.get("format")) != FORMAT:
            self._fail(UnsupportedFormatError, "not a sparsecomp file (no format tag)", "format.tag")
        version = root.get("format_version")
        if not isinstance(version, (int, np.integer)) or int(version) not in READABLE_VERSIONS:
            self._fail(UnsupportedFormatError, f"format_version {version!r} is not supported "
                       f"(this library reads versions {list(READABLE_VERSIONS)})", "format.version")
        self.version = int(version)
        if self.version == 1:
            self._open_v1(root)
        else:
            self._open_indexed(root)
        if self.kind not in KINDS:
            self._fail(UnsupportedFormatError, f"unknown kind {self.kind!r}", "format.kind")
        self.tree = None
        if self.version == 1 or self.kind in ("h5", "keras"):
            link = self.h5.get("tree", getlink=True)
            if not isinstance(link, h5py.HardLink) or not isinstance(self.h5["tree"], h5py.Group):
                self._fail(CorruptFileError, "missing /tree group", "format.tree")
            self.tree = self.h5["tree"]
            self.checker.attrs(self.tree, "tree")

    def _open_v1(self, root: dict) -> None:
        self.kind = text(root.get("kind"))
        sb = root.get("source_bytes", -1)
        self.meta = {"writer": text(root.get("writer")), "kind": self.kind,
                     "source_name": text(root.get("source_name")) or "",
                     "source_bytes": None if int(sb) < 0 else int(sb),
                     "min_ratio": float(root.get("min_ratio", 1.0)),
                     "optimizer_dropped": bool(root.get("optimizer_dropped", False)),
                     "keras_version": text(root.get("keras_version")), "level": None}
        self.index = None

    def _blob_sizes(self) -> list[int]:
        """Sizes of ``blob``, ``blob1``, ... (unfiltered 1-D uint8 datasets); only those and ``tree``
        may stand at the root of a file of version 2 or 3."""
        found = {}
        for name, child, obj in self.checker.children(self.h5, ""):
            if name == "tree":
                continue
            k = 0 if name == BLOB else (int(name[len(BLOB):]) if name.startswith(BLOB) and name[len(BLOB):].isdigit()
                                        and not name[len(BLOB):].startswith("0") else None)
            if k is None:
                self._fail(CorruptFileError, f"unexpected root member {name[:80]!r}", "format.members", name)
            if not isinstance(obj, h5py.Dataset):
                self._fail(CorruptFileError, f"{name} is not a dataset", "format.blobs", name)
            self.checker.dataset(obj, name, tensor=False)
            if obj.dtype != np.uint8 or obj.ndim != 1 or obj.compression is not None or obj.shuffle \
                    or obj.fletcher32 or obj.chunks is not None:
                self._fail(CorruptFileError, f"{name} must be an unfiltered, unchunked 1-D uint8 dataset",
                           "format.blobs", name)
            found[k] = int(obj.shape[0])
        if sorted(found) != list(range(len(found))) or not found:
            self._fail(CorruptFileError, f"blob datasets must be numbered {BLOB}, {BLOB}1, ... without gaps",
                       "format.blobs")
        return [found[k] for k in range(len(found))]

    def _open_indexed(self, root: dict) -> None:
        """Versions 2 and 3: the root attribute ``index``, the blobs, the index (v3: coding ``zdict``)."""
        at = np.asarray(root.get(INDEX_ATTR, np.zeros(0)))
        if at.dtype.kind not in "iu" or at.shape != (4,) or np.any(at < 0):
            self._fail(CorruptFileError, "the root attribute 'index' must be 4 non-negative integers", "index.attr")
        blob, offset, stored, size = (int(v) for v in at)
        sizes = self._blob_sizes()
        if blob != 0 or offset + stored != sizes[0]:
            self._fail(CorruptFileError, "the index must end blob 0", "index.attr")
        if size > self.limits.max_index_bytes:
            self._fail(ResourceLimitError, f"the index declares {size} bytes, more than {self.limits.max_index_bytes}",
                       "limit.index")
        raw = decode_stream(self.h5[BLOB][offset:offset + stored], "zdict" if self.version >= 3 else "deflate",
                            size, max_ratio=self.limits.max_compression_ratio, member="index", file=self.path)
        self.index: Index = parse_index(raw, sizes, (0, offset, stored), limits=self.limits, file=self.path,
                                        version=self.version)
        m = self.index.meta
        self.kind = m["kind"]
        src = m["source"] or {}
        self.meta = {"writer": m["writer"], "kind": self.kind, "source_name": src.get("name", ""),
                     "source_bytes": src.get("bytes"), "min_ratio": float(m["min_ratio"]),
                     "optimizer_dropped": m["optimizer_dropped"], "keras_version": m["keras_version"],
                     "level": m["level"]}
        if self.kind == "model" and "tree" in self.h5:
            self._fail(CorruptFileError, "a model file has no /tree", "format.members")

    def close(self):
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the tree of a packed checkpoint ------------------------------------------------------

    def walk(self, group=None, path=""):
        """Yield ``(path, node, kind, attrs)`` of a tree depth-first in natural name order.

        ``kind``: ``"group"``, ``"csr"`` (version 1 CSR tensor), ``"placeholder"`` (versions 2-3: the
        attributes of a tensor stored in the index) or ``"dataset"``.
        """
        stack = [self.checker.children(self.tree if group is None else group, path)]
        while stack:
            try:
                name, child, obj = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            attrs = self.checker.attrs(obj, child)
            if isinstance(obj, h5py.Group):
                marks = {a[0] for a in attrs}
                if self.version == 1 and "sparsecomp.encoding" in marks:
                    yield child, obj, "csr", attrs
                elif self.version >= 2 and "sparsecomp.tensor" in marks:
                    if len(obj):
                        self._fail(CorruptFileError, "a tensor placeholder has members", "format.tree", child)
                    yield child, obj, "placeholder", attrs
                else:
                    yield child, obj, "group", attrs
                    if len(stack) >= 64:
                        self._fail(ResourceLimitError, "groups nested deeper than 64", "limit.depth", child)
                    stack.append(self.checker.children(obj, child))
            else:
                yield child, obj, "dataset", attrs

    def tree_items(self) -> list:
        """The tree's entries (checked), cached; empty for a model file of version 2 or 3."""
        if self._tree is None:
            self._tree = list(self.walk()) if self.tree is not None else []
        return self._tree

    def _vars_names(self) -> dict:
        out = {}
        for path, node, kind, attrs in self.tree_items():
            if kind == "group" and path.rpartition("/")[2] == "vars":
                n = dict((a[0], a[1]) for a in attrs).get("name")
                if isinstance(n, (str, bytes)):
                    out[path] = n.decode("utf-8", "replace") if isinstance(n, bytes) else n
        return out

    # -- tensors -----------------------------------------------------------------------------

    def tensors(self) -> list[TensorEntry]:
        """Every tensor, every header checked and the budget accounted; nothing decoded. Cached."""
        if self._tensors is None:
            self._tensors = self._tensors_v1() if self.version == 1 else self._tensors_v2()
        return self._tensors

    def _tensors_v2(self) -> list[TensorEntry]:
        placeholders = {}
        for path, node, kind, attrs in self.tree_items():
            if kind == "placeholder":
                placeholders[path] = [a for a in attrs if a[0] != "sparsecomp.tensor"]
            elif kind == "dataset" and node.shape is not None and node.dtype.kind in "biuf":
                self._fail(CorruptFileError, "a numeric dataset in the tree (tensors belong in the index)",
                           "format.tree", path)
        vars_names = self._vars_names() if self.kind != "model" else {}
        out = []
        for e in self.index.tensors:
            h = e.header
            if e.attrs != (h.path in placeholders):
                self._fail(CorruptFileError, "a tensor's attribute placeholder and its index entry disagree",
                           "format.tree", h.path)
            if self.kind == "model":
                label = "optimizer" if e.category == "optimizer" else h.path.split("/")[0]
            else:
                label = layer_label(h.path, vars_names.get(h.path.rpartition("/")[0]))
            codec = codecs.get(h.codec)
            roles = codec.roles(h)
            streams: dict[str, int] = {}
            for role, ref in zip(roles, h.streams):
                streams[role] = streams.get(role, 0) + ref.stored
            out.append(TensorEntry(path=h.path, shape=h.shape, dtype=h.dtype, nnz=e.nnz, codec=h.codec,
                                   streams=streams, details=dict(h.params), category=e.category, layer=label,
                                   name=e.name,
                                   attrs=placeholders.get(h.path, []), ref=e))
        if set(placeholders) - {t.path for t in out}:
            self._fail(CorruptFileError, "a tensor placeholder without an index entry", "format.tree")
        return out

    def _tensors_v1(self) -> list[TensorEntry]:
        out = []
        model = self.kind == "model"
        vars_names = {} if model else self._vars_names()
        items = [("tree", p, n, k, a) for p, n, k, a in self.tree_items()]
        if model and "optimizer" in self.h5:
            items += [("optimizer", p, n, k, a) for p, n, k, a in self.walk(self.h5["optimizer"], "optimizer")]
        for where, path, node, kind, attrs in items:
            if kind == "group":
                continue
            if kind == "csr":
                shape, dtype, nnz, streams = csr_meta(self.checker, node, attrs, path)
                codec = "csr"
            else:
                nbytes = self.checker.dataset(node, path, tensor=False)
                if node.shape is None or node.dtype.kind not in "biuf":
                    continue
                shape, dtype, nnz, codec = tuple(node.shape), np.dtype(node.dtype), None, "dense"
                streams = {"values": nbytes}
            adict = dict((a[0], a[1]) for a in attrs)
            if model:
                label = "optimizer" if where == "optimizer" else path.split("/")[0]
                category = "optimizer" if where == "optimizer" else "weights"
            else:
                label = layer_label(path, vars_names.get(path.rpartition("/")[0]))
                category = _category(path)
            out.append(TensorEntry(path=path, shape=shape, dtype=dtype, nnz=nnz, codec=codec, streams=streams,
                                   category=category, layer=label, name=text(adict.get("name")) if model else None,
                                   attrs=attrs, ref=(node, kind)))
        return out

    def read(self, entry: TensorEntry, *, verify: bool = True) -> np.ndarray:
        """Decode one tensor, fully validated; checks its SHA-256 when ``verify`` (version 3: the
        index's first 8 hex digits of it, the full digest being remembered for :meth:`check_digest`)."""
        if self.version == 1:
            node, kind = entry.ref
            array = read_v1_tensor(self.checker, node, kind, entry.shape, entry.dtype, entry.path, file=self.path)
            expected = text(dict((a[0], a[1]) for a in entry.attrs).get("sparsecomp.sha256"))
        else:
            h = entry.ref.header
            data = []
            for ref in h.streams:
                stored = self.h5[BLOB if ref.blob == 0 else f"{BLOB}{ref.blob}"][ref.offset:ref.offset + ref.stored]
                data.append(decode_stream(stored, ref.coding, ref.size, max_ratio=self.limits.max_compression_ratio,
                                          member=entry.path, file=self.path))
            array = codecs.get(h.codec).decode(h, data)
            if array.shape != tuple(h.shape) or array.dtype != h.dtype:
                self._fail(InvalidTensorError, "decoded tensor has the wrong shape or dtype", "tensor.shape", entry.path)
            found = count_nonzero(array)
            if found != entry.nnz:
                self._fail(CorruptFileError, f"the index declares {entry.nnz} non-zeros, the tensor has {found}",
                           "tensor.nnz", entry.path)
            expected = entry.ref.digest
        array = np.asarray(array)
        if array.dtype.kind == "f" and not self.limits.allow_nonfinite and array.size \
                and not np.all(np.isfinite(array)):
            self._fail(InvalidTensorError, "tensor holds NaN or Inf", "tensor.nonfinite", entry.path)
        if verify and is_storable(array.dtype):
            if expected is None:
                self._fail(InvalidTensorError, "tensor has no checksum", "tensor.checksum.missing", entry.path)
            found = tensor_digest(array)
            if found[:len(expected)] != expected:       # version 3 keeps a prefix; parse_index fixed its length
                self._fail(InvalidTensorError, f"SHA-256 mismatch: the stored tensor was altered (the file says "
                           f"{expected}, the decoded tensor gives {found[:len(expected)]})", "tensor.checksum",
                           entry.path)
            self._digests[entry.path] = found
        return array

    def check_digest(self) -> bool:
        """Check a version-3 file's digest, once every tensor has been read with ``verify``.

        Each version-3 index entry keeps only 8 hex digits of its tensor's SHA-256 (checked by
        :meth:`read`); the index's ``sha256`` is the SHA-256 of all the tensors' full 32-byte
        digests, in index order. Returns ``True`` when it was checked and matches; ``False`` when
        there is nothing to check: a file of version 1 or 2 (each tensor's full SHA-256 is in the
        file and :meth:`read` checked it), or not every tensor was read and verified (a subset:
        only the prefixes were checked). Raises ``CorruptFileError`` (rule ``file.checksum``) on a
        mismatch.
        """
        if self.version < 3 or self.index.sha256 is None:
            return False
        entries = self.index.tensors
        if any(e.header.path not in self._digests for e in entries):
            return False
        found = file_digest(self._digests[e.header.path] for e in entries)
        if found != self.index.sha256:
            self._fail(CorruptFileError, f"file digest mismatch: the index expects sha256 {self.index.sha256}, its "
                       f"{len(entries)} tensors give {found} (SHA-256 of their SHA-256 digests in index order): "
                       "a tensor or the index was altered", "file.checksum")
        return True

    # -- archive members ----------------------------------------------------------------------

    def files(self):
        """``(members, blob)``: the archive member list and a reader of member ``i``'s bytes."""
        if self.version >= 2:
            members = [{"name": f.name, "compress_type": f.compress_type, "tree": f.tree} for f in self.index.files]

            def blob2(i):
                ref = self.index.files[i].stream
                if ref is None:
                    self._fail(CorruptFileError, "member has no stored bytes", "format.files", members[i]["name"])
                stored = self.h5[BLOB if ref.blob == 0 else f"{BLOB}{ref.blob}"][ref.offset:ref.offset + ref.stored]
                return bytes(decode_stream(stored, ref.coding, ref.size, max_ratio=self.limits.max_compression_ratio,
                                           member=members[i]["name"], file=self.path))
            return members, blob2
        if "files" not in self.h5:
            return [], None
        g = self.h5["files"]
        try:
            members = json.loads(text(dict((a[0], a[1]) for a in self.checker.attrs(
                g, "files", reserved=("members",))).get("members")) or "")
        except (KeyError, ValueError, TypeError, OSError):
            members = None
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            self._fail(CorruptFileError, "bad /files member list", "format.files")

        def blob1(i):
            key = f"{i:05d}"
            link = g.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink) or not isinstance(g[key], h5py.Dataset):
                self._fail(CorruptFileError, "missing archive member", "format.files", f"files/{key}")
            d = g[key]
            self.checker.dataset(d, f"files/{key}", tensor=False)
            if d.dtype != np.uint8 or d.ndim != 1:
                self._fail(CorruptFileError, "archive member must be uint8 bytes", "format.files", f"files/{key}")
            return self.checker.read(d, f"files/{key}").tobytes()
        return members, blob1
