"""Tensor level: any HDF5 checkpoint or ``.keras`` archive to ``.sparse.h5`` and back.

No Keras is needed here: this level works on any HDF5 checkpoint, including Keras 2 files that
Keras 3 cannot rebuild as a model. ``pack`` mirrors the source's groups, attributes and
non-numeric datasets into ``/tree`` and sends every numeric dataset through the codecs into the
index; ``unpack`` writes the original layout back with identical datasets and attributes.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

from ..errors import BadArgumentError, CorruptFileError, ResourceLimitError, UnsupportedFormatError
from .atomic import atomic_output
from .codecs import check_min_ratio
from .guard import guarded
from .h5tree import (VLEN_DATA, TreeChecker, check_signature, fixed, from_fixed, new_file, new_group, open_h5,
                     restore_attrs, store_attrs, text, to_fixed, vlen_encoding)
from .reader import Reader, layer_label
from .report import StorageReport
from .spec import (FORMAT, FORMAT_VERSION, HDF5_SIGNATURE, KERAS_WEIGHTS_MEMBER, OPTIMIZER_GROUPS, PREFIX,
                   ZIP_SIGNATURE, Limits)
from .writer import Writer

__all__ = ["pack", "unpack", "source_kind"]

_NAME_OK_CHARS = set(chr(c) for c in range(32)) | {"\x7f"}


def _category(path: str) -> str:
    return "optimizer" if path.split("/", 1)[0] in OPTIMIZER_GROUPS else "weights"


def _is_tensor(dset: h5py.Dataset) -> bool:
    return dset.shape is not None and dset.dtype.kind in "biuf" and dset.dtype.kind != "b"


def _count_datasets(root: h5py.Group) -> int:
    n = 0

    def visit(_name, obj):
        nonlocal n
        if isinstance(obj, h5py.Dataset):
            n += 1
    try:
        root.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError):
        return 0
    return n


def _reserved_check(attrs, path, checker):
    for a in attrs:
        if a[0].startswith(PREFIX):
            checker.fail(UnsupportedFormatError, f"attribute {a[0]!r} uses the reserved prefix {PREFIX!r}"
                         " (is this file already packed?)", "h5.attr.reserved", path)
    return attrs


def _pack_tree(src_root: h5py.Group, dst_root: h5py.Group, checker: TreeChecker, writer: Writer, *,
               drop_optimizer: bool, transform=None) -> None:
    """Mirror ``src_root`` into ``dst_root``; numeric datasets go through the writer into the index."""
    store_attrs(_reserved_check(checker.attrs(src_root, "/"), "/", checker), dst_root)
    stack = [(src_root, dst_root, "", None)]
    while stack:
        src, dst, path, vars_name = stack.pop()
        for name, child, obj in checker.children(src, path):
            if path == "" and drop_optimizer and name in OPTIMIZER_GROUPS:
                continue
            attrs = _reserved_check(checker.attrs(obj, child), child, checker)
            if isinstance(obj, h5py.Group):
                g = new_group(dst, name)
                store_attrs(attrs, g)
                own = dict((a[0], a[1]) for a in attrs).get("name") if name == "vars" else None
                if isinstance(own, bytes):
                    own = own.decode("utf-8", "replace")
                stack.append((obj, g, child, own if isinstance(own, str) else vars_name))
                continue
            checker.dataset(obj, child, tensor=False)
            if _is_tensor(obj):
                array = checker.read(obj, child)
                if transform is not None:
                    array = transform(child, array)
                writer.tensor(child, array, layer=layer_label(child, vars_name), category=_category(child),
                              attrs=bool(attrs))
                if attrs:
                    g = new_group(dst, name)
                    store_attrs(attrs, g)
                    g.attrs["sparsecomp.tensor"] = fixed("1")
                continue
            # Not a number: copied as it is, except that variable-length strings are stored
            # fixed-length (see store_attrs) and marked.
            enc = vlen_encoding(obj.dtype)
            try:
                if enc:
                    d = dst.create_dataset(name, data=to_fixed(np.asarray(checker.read(obj, child), dtype=object)),
                                           track_times=False)
                    d.attrs[VLEN_DATA] = fixed(enc)
                else:
                    src.copy(name, dst, name=name)
                    d = dst[name]
                    for a in list(d.attrs):
                        del d.attrs[a]
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                raise CorruptFileError(f"cannot copy dataset: {exc}", rule="h5.read", file=checker.file,
                                       member=child) from None
            store_attrs(attrs, d)
            writer.tick(child)


def source_kind(path: Path, limits: Limits) -> str:
    """``"h5"`` or ``"keras"`` from the file's signature (refusing anything else)."""
    head = check_signature(path, file_limit=limits.max_file_bytes)
    if head.startswith(HDF5_SIGNATURE):
        return "h5"
    if head.startswith(ZIP_SIGNATURE):
        return "keras"
    raise CorruptFileError("not an HDF5 file or a .keras archive (unknown signature)", rule="file.signature",
                           file=path)


def _zip_members(zf: zipfile.ZipFile, path, limits: Limits):
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ResourceLimitError(f"{len(infos)} archive members", rule="limit.members", file=path)
    extra = 0
    names = set()
    for info in infos:
        n = info.filename
        if not n or n.startswith("/") or ".." in n.split("/") or "\\" in n or set(n) & _NAME_OK_CHARS \
                or len(n) > limits.max_name_length or n in names:
            raise CorruptFileError(f"unacceptable archive member name {n[:80]!r}", rule="zip.name",
                                   file=path, member=n)
        names.add(n)
        if n != KERAS_WEIGHTS_MEMBER and not n.endswith("/"):
            extra += info.file_size
            if info.compress_size and info.file_size / info.compress_size > limits.max_compression_ratio:
                raise ResourceLimitError("archive member compression ratio too high", rule="limit.compression",
                                         file=path, member=n)
    if extra > limits.max_extra_file_bytes:
        raise ResourceLimitError(f"archive members other than weights hold {extra} bytes",
                                 rule="limit.extra", file=path)
    return infos


@guarded
def pack(src, dst, *, min_ratio: float = 1.0, drop_optimizer: bool = False, level: int = 2, codecs=None,
         limits: Limits | None = None, progress=None, transform=None) -> StorageReport:
    """Write the checkpoint ``src`` as a ``.sparse.h5`` file at ``dst``.

    ``src`` may be any HDF5 checkpoint (Keras 2 or Keras 3 ``.h5``, ``.weights.h5``, full model
    or weights only) or a ``.keras`` archive. Every numeric tensor is stored with the cheapest
    codec the size check allows (see :mod:`sparsecomp.storage.codecs`); everything else (groups,
    attributes, string datasets, ``config.json``...) is kept as it was.

    Args:
        src: path of the source checkpoint.
        dst: path of the file to write; written atomically (a previous file is replaced whole or
            not at all).
        min_ratio: a codec other than dense is used only when it is at least this many times
            smaller than dense (>= 1; 1.0 means "whenever strictly smaller").
        drop_optimizer: leave optimizer state out. Kept by default; the report counts it apart.
        level: 1 (fast: values stored raw), 2 (default), 3 (smallest: every option on every tensor).
        codecs: names of the codecs the size check may choose from (default: every lossless one;
            ``dense`` is always allowed).
        limits: bounds on what the source may declare.
        progress: optional ``callable(done, total, member)`` called after each dataset.
        transform: optional ``callable(member, array) -> array`` applied to every numeric tensor
            before it is encoded (data-free pruning uses it; the array's dtype and shape must stay).

    Returns:
        The :class:`~sparsecomp.storage.report.StorageReport` of what was written.

    Raises:
        CorruptFileError, UnsupportedFormatError, ResourceLimitError, InvalidTensorError: bad source.
        WriteError: the output could not be written (nothing at ``dst`` was changed).

    Example:
        >>> sparsecomp.pack("model.keras", "model.sparse.h5")  # doctest: +SKIP
    """
    min_ratio = check_min_ratio(min_ratio)
    limits = limits or Limits()
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise BadArgumentError("the output must differ from the input", rule="argument.same_file", file=src)
    kind = source_kind(src, limits)
    checker = TreeChecker(limits, src)
    with contextlib.ExitStack() as stack:
        members, blobs, src_h5 = [], {}, None
        if kind == "keras":
            try:
                zf = stack.enter_context(zipfile.ZipFile(src))
                for info in _zip_members(zf, src, limits):
                    is_tree = info.filename == KERAS_WEIGHTS_MEMBER
                    members.append({"name": info.filename, "compress_type": info.compress_type, "tree": is_tree})
                    if is_tree:
                        fh = stack.enter_context(zf.open(info))
                        if fh.read(8) != HDF5_SIGNATURE:
                            raise CorruptFileError("the weights member is not HDF5", rule="file.signature",
                                                   file=src, member=KERAS_WEIGHTS_MEMBER)
                        fh.seek(0)
                        src_h5 = stack.enter_context(open_h5(fh, src))
                    elif not info.filename.endswith("/"):
                        blobs[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError,
                    NotImplementedError) as exc:
                raise CorruptFileError(f"damaged .keras archive: {exc}", rule="zip.read", file=src) from None
            if "config.json" in blobs:
                try:
                    json.loads(blobs["config.json"])
                except ValueError:
                    raise CorruptFileError("config.json is not valid JSON", rule="keras.config",
                                           file=src, member="config.json") from None
            if any(m["compress_type"] not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) for m in members):
                raise UnsupportedFormatError("archive members must be stored or deflated", rule="zip.read", file=src)
        else:
            src_h5 = stack.enter_context(open_h5(src, src))
            try:
                if src_h5.attrs.get("format") in (FORMAT, FORMAT.encode()):
                    raise BadArgumentError("the input is already a sparsecomp file", rule="argument.packed",
                                           file=src)
            except (OSError, RuntimeError, TypeError):
                pass
        total = _count_datasets(src_h5) if src_h5 is not None else 0
        with atomic_output(dst) as tmp:
            with new_file(tmp) as out:
                writer = Writer(out, kind=kind, file=src, min_ratio=min_ratio, level=level, codecs=codecs,
                                limits=limits, progress=progress, total=total,
                                source={"name": src.name, "bytes": src.stat().st_size},
                                optimizer_dropped=drop_optimizer)
                tree = new_group(out, "tree")
                if src_h5 is not None:
                    _pack_tree(src_h5, tree, checker, writer, drop_optimizer=drop_optimizer, transform=transform)
                for m in members:
                    writer.member(m, None if m["tree"] or m["name"].endswith("/") else blobs[m["name"]])
                writer.close()
    return StorageReport(file=str(dst), kind=kind, file_bytes=dst.stat().st_size, source_bytes=src.stat().st_size,
                         records=writer.records, optimizer_dropped=drop_optimizer,
                         format_version=FORMAT_VERSION)


def _unpack_tree(r: Reader, out_root: h5py.Group, progress=None) -> None:
    restore_attrs(r.checker.attrs(r.tree, "/"), out_root)
    groups = {"": out_root}
    tensors = {t.path: t for t in r.tensors()}
    total = len(tensors) + sum(1 for e in r.tree_items() if e[2] == "dataset")
    done = 0

    def tick(what):
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    for path, node, kind, attrs in r.tree_items():
        parent_path, _, name = path.rpartition("/")
        parent = groups[parent_path]
        if kind == "group":
            g = parent.create_group(name)
            restore_attrs(attrs, g)
            groups[path] = g
            continue
        if kind in ("placeholder", "csr") or path in tensors:
            continue                      # tensors are written below, from the index
        adict = dict((a[0], a[1]) for a in attrs)
        if VLEN_DATA in adict:
            enc = text(adict[VLEN_DATA])
            if enc not in ("utf-8", "ascii"):
                raise CorruptFileError(f"bad string encoding {enc!r}", rule="h5.attr", file=r.path, member=path)
            r.checker.dataset(node, path, tensor=False)
            d = parent.create_dataset(name, data=from_fixed(np.asarray(r.checker.read(node, path)), enc),
                                      dtype=h5py.string_dtype(enc))
        else:
            r.checker.dataset(node, path, tensor=False)
            node.parent.copy(node.name.rpartition("/")[2], parent, name=name)
            d = parent[name]
            for a in list(d.attrs):
                del d.attrs[a]
        restore_attrs(attrs, d)
        tick(path)
    for t in r.tensors():
        parent_path, _, name = t.path.rpartition("/")
        if parent_path not in groups:
            raise CorruptFileError("a tensor's parent group is missing from the tree", rule="format.tree",
                                   file=r.path, member=t.path)
        d = groups[parent_path].create_dataset(name, data=r.read(t))
        restore_attrs(t.attrs, d)
        tick(t.path)
    r.check_digest()                   # version 3: every tensor read, the file digest (before the output is kept)


@guarded
def unpack(src, dst, *, limits: Limits | None = None, progress=None) -> Path:
    """Write the original checkpoint back from a packed ``.sparse.h5`` file (kinds ``h5``/``keras``).

    The result has the source's kind (``.h5`` / ``.weights.h5`` / ``.keras``) with identical
    datasets (dtype, shape, values bit for bit) and attributes, so loading code written for the
    original reads it unchanged. Files written by ``sparsecomp.save`` (kind ``model``) unpack
    through :func:`sparsecomp.unpack`, which rebuilds the model with Keras.

    Raises:
        SparseCompError subclasses for a bad input; WriteError if the output cannot be written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise BadArgumentError("the output must differ from the input", rule="argument.same_file", file=src)
    with Reader(src, limits) as r:
        if r.kind == "model":
            raise BadArgumentError("a model file unpacks through sparsecomp.unpack (it needs Keras)",
                                   rule="argument.kind", file=src)
        r.tensors()                                   # every header checked before anything is written
        with atomic_output(dst) as tmp:
            if r.kind == "h5":
                with h5py.File(tmp, "w") as out:
                    _unpack_tree(r, out, progress)
            else:
                members, blob = r.files()
                with tempfile.TemporaryDirectory(dir=dst.parent) as td:
                    weights = Path(td) / KERAS_WEIGHTS_MEMBER
                    with h5py.File(weights, "w") as out:
                        _unpack_tree(r, out, progress)
                    with zipfile.ZipFile(tmp, "w") as zf:
                        for i, m in enumerate(members):
                            name, ctype = m.get("name"), m.get("compress_type", zipfile.ZIP_STORED)
                            if not isinstance(name, str) or ctype not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                                raise CorruptFileError("bad archive member entry", rule="format.files", file=src)
                            if m.get("tree"):
                                zf.write(weights, name, compress_type=ctype)
                            elif name.endswith("/"):
                                zf.writestr(zipfile.ZipInfo(name), b"")
                            else:
                                zf.writestr(name, blob(i), compress_type=ctype)
    return dst
