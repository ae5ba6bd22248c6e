"""The ``.sparse.h5`` file: tensor-level pack/unpack, validated reading, atomic writes.

Layout (format version 1; the full spec is ``docs/FORMAT.md``)::

    /                 attrs: format="sparsecomp", format_version=1, writer, kind, source_name, ...
    /tree             the source checkpoint's HDF5 tree, mirrored (attributes included); every
                      float tensor is either a dataset (dense) or a group marked
                      ``sparsecomp.encoding="csr"`` holding ``data``, ``indices``, ``indptr``
    /files            (kinds "keras" and "model") the non-HDF5 members of a ``.keras`` archive
                      (config.json, metadata.json, assets), byte for byte, in archive order

No Keras is needed here: this level works on any HDF5 checkpoint, including Keras 2 files that
Keras 3 cannot rebuild as a model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .csr import (FLOAT_DTYPES, check_min_ratio, count_nonzero, csr_to_dense,
                  iter_csr_blocks, size_check, tensor_digest, validate_csr, view_shape_2d)
from .errors import (BadArgumentError, CorruptFileError, InvalidTensorError, ResourceLimitError,
                     SparseCompError, UnsupportedFormatError, WriteError)
from .report import StorageReport, TensorRecord

__all__ = ["Limits", "pack", "unpack", "inspect", "verify", "read_tensors", "atomic_output",
           "FORMAT", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT = "sparsecomp"
FORMAT_VERSION = 1
PREFIX = "sparsecomp."           # attribute names reserved for the format inside /tree
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
OPTIMIZER_GROUPS = ("optimizer", "optimizer_weights")   # Keras 3 and Keras 2 names
KINDS = ("h5", "keras", "model")



def new_file(path) -> h5py.File:
    """Create an output file: HDF5 1.8 object formats, and no timestamps anywhere.

    The 1.8 formats (compact groups: links in the object header, no B-tree and local heap per
    group) take about half the metadata of the 1.6 defaults, and every HDF5 since 1.8 (2008)
    reads them; the upper bound keeps newer features out.

    1.8-style object headers store access/modification times unless told not to; with them, two
    saves of the same model a second apart would differ. Datasets get ``track_times=False``; the
    root group here and every other group through :func:`new_group`.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V18)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fid = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    return h5py.File(fid)


def new_group(parent: h5py.Group, name: str) -> h5py.Group:
    """``parent.create_group(name)`` without timestamps (see :func:`new_file`)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gid = h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl)
    return h5py.Group(gid)

_ALLOWED_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


def _default_budget() -> int:
    """Half of physical memory: a file may not declare more than that in tensors."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds a file must respect before anything it declares is allocated.

    The defaults accept every real checkpoint up to half of this machine's memory (VGG19 is
    0.57 GB) and refuse files that declare absurd sizes. Pass a tightened copy for untrusted input.
    """

    max_file_bytes: int = 1 << 40
    max_tensor_bytes: int = field(default_factory=_default_budget)
    max_total_bytes: int = field(default_factory=_default_budget)
    max_members: int = 1_000_000
    max_rank: int = 8
    max_dim: int = 1 << 40
    max_attributes: int = 4096
    max_attribute_bytes: int = 16 << 20
    max_name_length: int = 1024
    max_compression_ratio: int = 1024
    max_extra_file_bytes: int = 1 << 30
    allow_nonfinite: bool = False

    def __post_init__(self):
        for name in ("max_file_bytes", "max_tensor_bytes", "max_total_bytes", "max_members",
                     "max_rank", "max_dim", "max_attributes", "max_attribute_bytes", "max_name_length",
                     "max_compression_ratio", "max_extra_file_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadArgumentError(f"`{name}` must be a positive integer. Received: {name}={value!r}",
                                       rule="argument.limits")


# --------------------------------------------------------------------------------------------
# Wrapping every failure of h5py / libhdf5 / NumPy on bad input
# --------------------------------------------------------------------------------------------

_LIB_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, EOFError, OverflowError,
               UnicodeDecodeError, zipfile.BadZipFile)


def _wrap(exc: BaseException, file) -> SparseCompError:
    if isinstance(exc, MemoryError):
        return ResourceLimitError("out of memory while reading", rule="limit.memory", file=file)
    return CorruptFileError(f"unreadable structure ({type(exc).__name__}: {exc})", rule="h5.read", file=file)


def guarded(fn):
    """Decorator for public entry points: errors from the libraries on bad input become ours.

    A ``SparseCompError`` (including ``BadArgumentError``, also a ``ValueError``) passes unchanged;
    anything h5py, libhdf5, NumPy or zipfile raise on a malformed file becomes a
    ``CorruptFileError`` with rule ``h5.read`` (``MemoryError``: ``ResourceLimitError``), naming
    the file. The fuzzers check that nothing else escapes.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except SparseCompError:
            raise
        except (MemoryError, *_LIB_ERRORS) as exc:
            raise _wrap(exc, path) from None
    return wrapper


# --------------------------------------------------------------------------------------------
# Atomic output
# --------------------------------------------------------------------------------------------

_TMP_MARK = ".sparsecomp-tmp-"


def _clean_stale_temporaries(directory: Path, target_name: str) -> None:
    """Remove temporary files left by a writer that was killed (its process no longer exists)."""
    pattern = f".{target_name}{_TMP_MARK}"
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(pattern):
            continue
        try:
            pid = int(entry.name[len(pattern):].split("-")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def atomic_output(dst):
    """Yield a temporary path beside ``dst``; on success it replaces ``dst`` atomically.

    The temporary file is flushed and fsynced, renamed over ``dst``, and the directory is fsynced.
    On any error the temporary file is removed and ``dst`` (if it existed) is untouched.
    """
    dst = Path(dst)
    directory = dst.parent if str(dst.parent) else Path(".")
    if not directory.is_dir():
        raise WriteError(f"the output directory {str(directory)!r} does not exist", rule="write.dir",
                         file=dst)
    if dst.is_dir():
        raise WriteError("the output path is a directory", rule="write.isdir", file=dst)
    _clean_stale_temporaries(directory, dst.name)
    tmp = directory / f".{dst.name}{_TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise WriteError(f"could not write the output: {exc}", rule="write.os", file=dst) from exc
        raise


# --------------------------------------------------------------------------------------------
# Structural checks shared by the source reader (pack) and our own reader
# --------------------------------------------------------------------------------------------

def fixed(text: str) -> np.bytes_:
    """A fixed-length UTF-8 string attribute value.

    The format writes every string attribute of its own fixed-length: such values live in the
    object header, not in HDF5's global heap, whose corrupted references can stall libhdf5.
    """
    return np.bytes_(str(text).encode("utf-8"))


def text(value) -> str | None:
    """An attribute value as ``str`` (fixed-length strings come back from h5py as ``bytes``)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


_ROOT_RESERVED = ("format", "format_version", "writer", "kind", "source_name", "source_bytes", "min_ratio",
                  "optimizer_dropped", "keras_version")


def _is_string_dtype(dt: np.dtype) -> bool:
    return h5py.check_string_dtype(dt) is not None


def _numeric_ok(dt: np.dtype) -> bool:
    return dt.kind in "biuf" and dt.byteorder in ("<", "|", "=") and dt.fields is None \
        and h5py.check_vlen_dtype(dt) is None and h5py.check_enum_dtype(dt) is None


def _utf8_ok(value) -> bool:
    """Whether a str (or every str in an object array) is valid Unicode that encodes as UTF-8.

    h5py hands invalid UTF-8 over as surrogate escapes, which no writer can store back.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, np.ndarray) and value.dtype == object:
        return all(_utf8_ok(v) for v in value.flat)
    return True


def _attr_storage(aid) -> int:
    """Stored size of an attribute; libhdf5 reports an empty one as an error (size 0)."""
    try:
        return aid.get_storage_size()
    except RuntimeError:
        if aid.shape is None or math.prod(aid.shape) == 0:
            return 0
        raise


def _nbytes(shape, itemsize) -> int:
    return math.prod(int(d) for d in shape) * int(itemsize)


def _natural_key(name: str):
    """Sort ``vars/2`` before ``vars/10``: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


class _Checker:
    """Walks HDF5 trees without following anything, enforcing :class:`Limits` as it goes."""

    def __init__(self, limits: Limits, file, *, no_vlen: bool = False):
        self.limits = limits
        self.file = str(file)
        self.no_vlen = no_vlen     # our own files hold no variable-length data at all
        self.members = 0
        self.total_bytes = 0
        self.accounted: set = set()
        self.seen: dict = {}

    def account(self, nbytes: int, path: str):
        """Add a tensor's declared bytes to the running total once, refusing past the budget."""
        if path in self.accounted:
            return
        self.accounted.add(path)
        self.total_bytes += nbytes
        if self.total_bytes > self.limits.max_total_bytes:
            self.fail(ResourceLimitError, f"the file declares more than {self.limits.max_total_bytes} "
                      "bytes in all", "limit.total", path)

    def fail(self, cls, msg, rule, member=None):
        raise cls(msg, rule=rule, file=self.file, member=member)

    def name(self, name: str, path: str):
        if not name or len(name) > self.limits.max_name_length or not _NAME_OK.match(name) \
                or name in (".", "..") or not _utf8_ok(name):
            self.fail(CorruptFileError, f"unacceptable member name {name[:80]!r}", "h5.name", path)

    def children(self, group, path: str, *, dedupe: bool = True):
        """Yield ``(name, child_path, obj)`` for hard-linked children in sorted order.

        With ``dedupe``, an object met a second time under another name is refused (aliases would
        let a small file declare the same storage many times over).
        """
        try:
            names = sorted(group.keys(), key=_natural_key)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            self.fail(CorruptFileError, f"cannot list group: {exc}", "h5.read", path)
        if len(set(names)) != len(names):
            self.fail(CorruptFileError, "a group lists the same member name twice", "h5.name.duplicate", path)
        for name in names:
            child = f"{path}/{name}" if path else name
            self.name(name, child)
            self.members += 1
            if self.members > self.limits.max_members:
                self.fail(ResourceLimitError, f"more than {self.limits.max_members} members",
                          "limit.members", child)
            try:
                link = group.get(name, getlink=True)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                self.fail(CorruptFileError, f"cannot read link: {exc}", "h5.read", child)
            if isinstance(link, h5py.SoftLink):
                self.fail(UnsupportedFormatError, "soft links are refused", "h5.softlink", child)
            if isinstance(link, h5py.ExternalLink):
                self.fail(UnsupportedFormatError, "external links are refused", "h5.externallink", child)
            try:
                obj = group[name]
                addr = (h5py.h5o.get_info(obj.id).fileno, h5py.h5o.get_info(obj.id).addr)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                self.fail(CorruptFileError, f"cannot open member: {exc}", "h5.read", child)
            if dedupe:
                if self.seen.get(addr, child) != child:
                    self.fail(UnsupportedFormatError, "object reachable under two names (hard-link alias)",
                              "h5.alias", child)
                self.seen[addr] = child
            if not isinstance(obj, (h5py.Group, h5py.Dataset)):
                self.fail(UnsupportedFormatError, "member is neither group nor dataset", "h5.kind", child)
            yield name, child, obj

    def attrs(self, obj, path: str, reserved=()):
        """Check and return the object's attributes as ``[(name, value, dtype, shape)]``.

        Attributes named in ``reserved`` or with the format's prefix must be fixed-length values
        (checked from the type, before the value is read).
        """
        out = []
        try:
            names = list(obj.attrs.keys())
            if len(names) > self.limits.max_attributes:
                self.fail(ResourceLimitError, f"{len(names)} attributes exceed {self.limits.max_attributes}",
                          "limit.attributes", path)
            for name in names:
                self.name(name, f"{path}@{name}")
                aid = obj.attrs.get_id(name)
                dt = aid.dtype
                if not (_numeric_ok(dt) or _is_string_dtype(dt)
                        or (h5py.check_vlen_dtype(dt) is not None
                            and _is_string_dtype(h5py.check_vlen_dtype(dt)))):
                    self.fail(UnsupportedFormatError, f"attribute {name!r} has unsupported type {dt}",
                              "h5.attr.dtype", path)
                if (self.no_vlen or name.startswith(PREFIX) or name in reserved) and (h5py.check_vlen_dtype(dt) is not None
                                 or (_is_string_dtype(dt) and h5py.check_string_dtype(dt).length is None)):
                    self.fail(CorruptFileError, f"attribute {name!r} must be a fixed-length value",
                              "h5.attr.vlen", path)
                if _attr_storage(aid) > self.limits.max_attribute_bytes:
                    self.fail(ResourceLimitError, f"attribute {name!r} is larger than "
                              f"{self.limits.max_attribute_bytes} bytes", "limit.attribute", path)
                value = obj.attrs[name]
                if not _utf8_ok(value):
                    self.fail(CorruptFileError, f"attribute {name!r} holds invalid UTF-8", "h5.attr.encoding", path)
                out.append((name, value, dt, aid.shape))
        except SparseCompError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            self.fail(CorruptFileError, f"cannot read attributes: {exc}", "h5.attr", path)
        return out

    def dataset(self, dset, path: str, *, tensor: bool) -> int:
        """Check one dataset's declared layout; returns its declared byte size."""
        try:
            if dset.is_virtual:
                self.fail(UnsupportedFormatError, "virtual datasets are refused", "h5.virtual", path)
            if dset.external:
                self.fail(UnsupportedFormatError, "external storage is refused", "h5.external", path)
            dt = dset.dtype
            shape = dset.shape
            plist = dset.id.get_create_plist()
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            layout = plist.get_layout()
            stored = dset.id.get_storage_size()
        except SparseCompError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            self.fail(CorruptFileError, f"cannot read dataset header: {exc}", "h5.read", path)
        if self.no_vlen and h5py.check_vlen_dtype(dt) is not None or \
                self.no_vlen and _vlen_encoding(dt) is not None:
            self.fail(CorruptFileError, f"variable-length dataset type {dt} (this format stores none)",
                      "h5.dtype.vlen", path)
        if shape is None:
            return 0   # a null dataspace holds nothing
        if (tensor and not _numeric_ok(dt)) or (dt.kind in "biuf" and dt.byteorder == ">"):
            self.fail(InvalidTensorError, f"tensor dtype {dt} is not a little-endian number",
                      "tensor.dtype", path)
        if not (_numeric_ok(dt) or _is_string_dtype(dt)):
            self.fail(UnsupportedFormatError, f"dataset dtype {dt} is not supported", "h5.dtype", path)
        if len(shape) > self.limits.max_rank:
            self.fail(ResourceLimitError, f"rank {len(shape)} exceeds {self.limits.max_rank}", "limit.rank", path)
        if any(int(d) > self.limits.max_dim for d in shape):
            self.fail(ResourceLimitError, f"a dimension of {tuple(shape)} exceeds {self.limits.max_dim}",
                      "limit.dim", path)
        for f in filters:
            if f not in _ALLOWED_FILTERS:
                self.fail(UnsupportedFormatError, f"HDF5 filter {f} is not allowed", "h5.filter", path)
        nbytes = _nbytes(shape, dt.itemsize)
        if nbytes > self.limits.max_tensor_bytes:
            self.fail(ResourceLimitError, f"declares {nbytes} bytes, over the per-tensor limit "
                      f"{self.limits.max_tensor_bytes}", "limit.tensor", path)
        self.account(nbytes, path)
        if nbytes and h5py.check_vlen_dtype(dt) is None:
            has_codec = any(f in (1, 32000) for f in filters)
            if layout in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT) and stored != nbytes:
                self.fail(CorruptFileError, f"declares {nbytes} bytes but stores {stored}",
                          "h5.storage", path)
            if layout == h5py.h5d.CHUNKED:
                if has_codec and stored * self.limits.max_compression_ratio < nbytes:
                    self.fail(ResourceLimitError, f"compression ratio above "
                              f"{self.limits.max_compression_ratio} ({nbytes} bytes from {stored})",
                              "limit.compression", path)
                if not has_codec and stored < nbytes:
                    self.fail(CorruptFileError, f"declares {nbytes} bytes but stores {stored}",
                              "h5.storage", path)
        return nbytes

    def read(self, dset, path: str) -> np.ndarray:
        try:
            value = dset[()]
            # h5py returns NumPy *scalars* for 0-d datasets: make them 0-d arrays so that every
            # check below (dtype, shape, checksum) applies to them too
            return np.asarray(value) if isinstance(value, np.generic) else value
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            self.fail(CorruptFileError, f"cannot read data: {exc}", "h5.read", path)


def _check_signature(path: Path, *, file_limit: int) -> bytes:
    """Read the first bytes of ``path`` (it must exist and be a regular file of bounded size)."""
    if not path.exists():
        raise CorruptFileError("no such file", rule="file.missing", file=path)
    if not path.is_file():
        raise CorruptFileError("not a regular file", rule="file.kind", file=path)
    size = path.stat().st_size
    if size > file_limit:
        raise ResourceLimitError(f"file of {size} bytes exceeds the limit {file_limit}",
                                 rule="limit.file", file=path)
    with open(path, "rb") as fh:
        return fh.read(8)


def _superblock_eof(head: bytes) -> tuple[int, int] | None:
    """``(base_address, end_of_file_address)`` from an HDF5 superblock at offset 0, or ``None``.

    Superblock versions 0/1 hold the addresses after 16 (v0) or 20 (v1) bytes of fixed fields;
    versions 2/3 after 12. Offsets are ``size_of_offsets`` bytes, little-endian.
    """
    if len(head) < 13 or not head.startswith(HDF5_SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        size_off = head[13]
        start = 24 if version == 0 else 28
        n_addr = 3
    elif version in (2, 3):
        size_off = head[9]
        start = 12
        n_addr = 3
    else:
        return None
    if size_off not in (2, 4, 8) or len(head) < start + n_addr * size_off:
        return None
    addrs = [int.from_bytes(head[start + i * size_off:start + (i + 1) * size_off], "little") for i in range(n_addr)]
    base = addrs[0]
    eof = addrs[2]
    return base, eof


def _check_framing(path: Path) -> None:
    """HDF5 signature at offset 0 (no userblock) and no bytes past the superblock's end-of-file."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head.startswith(HDF5_SIGNATURE):
        raise CorruptFileError("not an HDF5 file (no HDF5 signature at offset 0; userblocks are refused)",
                               rule="file.signature", file=path)
    framing = _superblock_eof(head)
    if framing is None:
        raise UnsupportedFormatError(f"unsupported HDF5 superblock version {head[8] if len(head) > 8 else '?'}",
                                     rule="file.superblock", file=path)
    base, eof = framing
    size = path.stat().st_size
    if base != 0:
        raise CorruptFileError("HDF5 base address is not 0 (userblock or embedded file)", rule="file.userblock",
                               file=path)
    if size > eof:
        raise CorruptFileError(f"{size - eof} trailing bytes after the HDF5 end-of-file address",
                               rule="file.trailing", file=path)
    if size < eof:
        raise CorruptFileError(f"file is truncated: {size} bytes, the superblock says {eof}",
                               rule="file.truncated", file=path)


def _open_h5(source, file) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise CorruptFileError(f"cannot open as HDF5 (truncated or damaged?): {exc}",
                               rule="h5.open", file=file) from None


# --------------------------------------------------------------------------------------------
# Attribute copying that keeps HDF5 types exactly
# --------------------------------------------------------------------------------------------

VLEN_ATTRS = "sparsecomp.vlen_attrs"     # {attribute name: encoding} of strings stored fixed-length
VLEN_DATA = "sparsecomp.vlen"            # on a dataset of strings stored fixed-length: its encoding


def _vlen_encoding(dt) -> str | None:
    """The encoding of a variable-length string type, ``None`` for anything else."""
    info = h5py.check_string_dtype(dt) if dt is not None else None
    return info.encoding if info is not None and info.length is None else None


def _to_fixed(value):
    """Strings (a str, bytes, or an object array of them) as a fixed-length bytes value/array."""
    if isinstance(value, np.ndarray):
        items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value.flat]
        width = max([len(v) for v in items] + [1])
        return np.array(items, dtype=f"S{width}").reshape(value.shape)
    return np.bytes_(value.encode("utf-8") if isinstance(value, str) else bytes(value))


def _from_fixed(value, encoding: str):
    """Undo :func:`_to_fixed`: str values (or an object array of str) for a vlen string type."""
    if isinstance(value, np.ndarray):
        out = np.empty(value.shape, dtype=object)
        for i, v in np.ndenumerate(value):
            out[i] = bytes(v).decode("utf-8")
        return out
    return bytes(value).decode("utf-8")


def _store_attrs(items, dst) -> None:
    """Write a source object's attributes, keeping every HDF5 type except variable-length strings.

    Those are stored fixed-length (listed in ``sparsecomp.vlen_attrs`` with their encoding), so
    a ``.sparse.h5`` never holds data in HDF5's global heap, whose corrupted references can
    stall libhdf5; ``unpack`` restores the original types exactly.
    """
    vlen = {}
    for name, value, dt, shape in items:
        enc = _vlen_encoding(dt)
        if isinstance(value, h5py.Empty):
            dst.attrs.create(name, h5py.Empty("S1") if enc else value)
        elif enc:
            dst.attrs.create(name, _to_fixed(value))
        else:
            dst.attrs.create(name, value, shape=shape, dtype=dt)
        if enc:
            vlen[name] = enc
    if vlen:
        dst.attrs[VLEN_ATTRS] = fixed(json.dumps(vlen, sort_keys=True))


def _restore_attrs(items, dst) -> None:
    """Write attributes back as the source had them (the format's own attributes left out)."""
    adict = dict((a[0], a[1]) for a in items)
    try:
        vlen = json.loads(text(adict.get(VLEN_ATTRS)) or "{}")
    except ValueError:
        vlen = None
    if not isinstance(vlen, dict):
        raise CorruptFileError(f"bad {VLEN_ATTRS} attribute", rule="h5.attr", member=getattr(dst, "name", None))
    for name, value, dt, shape in items:
        if name.startswith(PREFIX):
            continue
        enc = vlen.get(name)
        if enc not in (None, "utf-8", "ascii"):
            raise CorruptFileError(f"bad string encoding {enc!r}", rule="h5.attr", member=getattr(dst, "name", None))
        if enc and isinstance(value, h5py.Empty):
            dst.attrs.create(name, h5py.Empty(h5py.string_dtype(enc)))
        elif enc:
            dst.attrs.create(name, _from_fixed(value, enc), dtype=h5py.string_dtype(enc))
        elif isinstance(value, h5py.Empty):
            dst.attrs.create(name, value)
        else:
            dst.attrs.create(name, value, shape=shape, dtype=dt)


# --------------------------------------------------------------------------------------------
# Pack
# --------------------------------------------------------------------------------------------

def _category(path: str) -> str:
    head = path.split("/", 1)[0]
    return "optimizer" if head in OPTIMIZER_GROUPS else "weights"


class _TreeWriter:
    """Writes tensors into an open output file, choosing dense or CSR per tensor."""

    def __init__(self, min_ratio: float, limits: Limits, file, progress=None, total=0):
        self.min_ratio = min_ratio
        self.limits = limits
        self.file = str(file)
        self.records: list[TensorRecord] = []
        self.progress = progress
        self.total = total
        self.done = 0

    def _tick(self, path):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, path)

    def record_verbatim(self, array: np.ndarray, path: str, *, layer: str, category: str) -> None:
        """Account for a numeric dataset copied as it was (integers, scalars)."""
        array = np.asarray(array)
        check = size_check(array.shape, array.dtype, count_nonzero(array))
        self.records.append(TensorRecord(
            path=path, layer=layer, category=category, shape=tuple(array.shape), dtype=array.dtype.str,
            nnz=check.nnz, encoding="dense", dense_bytes=check.dense_bytes,
            stored_bytes=check.dense_bytes, csr_bytes=check.csr_bytes))

    def write(self, group: h5py.Group, name: str, array: np.ndarray, path: str, *,
              layer: str, category: str, attrs=()) -> None:
        array = np.asarray(array)
        if array.dtype.byteorder == ">":
            raise InvalidTensorError("big-endian tensors are not supported", rule="tensor.dtype",
                                     file=self.file, member=path)
        if array.dtype.kind == "f" and not self.limits.allow_nonfinite and array.size \
                and not np.all(np.isfinite(array)):
            raise InvalidTensorError("tensor holds NaN or Inf", rule="tensor.nonfinite",
                                     file=self.file, member=path)
        nnz = count_nonzero(array)
        check = size_check(array.shape, array.dtype, nnz, self.min_ratio)
        digest = tensor_digest(array)
        if check.encoding == "csr":
            rows, cols = view_shape_2d(array.shape)
            g = new_group(group, name)
            _store_attrs(attrs, g)
            g.attrs["sparsecomp.encoding"] = fixed("csr")
            g.attrs["sparsecomp.shape"] = np.asarray(array.shape, dtype=np.int64)
            g.attrs["sparsecomp.dtype"] = fixed(array.dtype.str)
            g.attrs["sparsecomp.sha256"] = fixed(digest)
            data = g.create_dataset("data", shape=(nnz,), dtype=array.dtype, track_times=False)
            indices = g.create_dataset("indices", shape=(nnz,), dtype=np.dtype(check.index_dtype),
                                       track_times=False)
            indptr = np.zeros(rows + 1, dtype=np.dtype(check.indptr_dtype))
            pos = 0
            for r0, d, i, counts in iter_csr_blocks(array, np.dtype(check.index_dtype)):
                if len(d):
                    data[pos:pos + len(d)] = d
                    indices[pos:pos + len(i)] = i
                indptr[r0 + 1:r0 + 1 + len(counts)] = counts
                pos += len(d)
            np.cumsum(indptr, out=indptr)
            g.create_dataset("indptr", data=indptr, track_times=False)
        else:
            d = group.create_dataset(name, data=array, track_times=False)
            _store_attrs(attrs, d)
            d.attrs["sparsecomp.sha256"] = fixed(digest)
        self.records.append(TensorRecord(
            path=path, layer=layer, category=category, shape=tuple(array.shape),
            dtype=array.dtype.str, nnz=nnz, encoding=check.encoding,
            dense_bytes=check.dense_bytes, stored_bytes=check.stored_bytes,
            csr_bytes=check.csr_bytes))
        self._tick(path)


def _is_tensor_dataset(dset: h5py.Dataset) -> bool:
    return dset.shape is not None and np.dtype(dset.dtype) in FLOAT_DTYPES


def _layer_label(path: str, vars_name: str | None) -> str:
    parts = path.split("/")
    if vars_name:
        return vars_name
    if parts[0] == "model_weights" and len(parts) > 1:
        return parts[1]
    if parts[0] in OPTIMIZER_GROUPS:
        return parts[0]
    return "/".join(parts[:-1]) or parts[0]


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


def _pack_tree(src_root: h5py.Group, dst_root: h5py.Group, checker: _Checker, writer: _TreeWriter,
               *, drop_optimizer: bool) -> None:
    """Mirror ``src_root`` into ``dst_root``; float tensors go through the writer."""
    _store_attrs(_reserved_check(checker.attrs(src_root, "/"), "/", checker), dst_root)
    stack = [(src_root, dst_root, "", None)]
    while stack:
        src, dst, path, vars_name = stack.pop()
        for name, child, obj in checker.children(src, path):
            if path == "" and drop_optimizer and name in OPTIMIZER_GROUPS:
                continue
            attrs = _reserved_check(checker.attrs(obj, child), child, checker)
            if isinstance(obj, h5py.Group):
                g = new_group(dst, name)
                _store_attrs(attrs, g)
                own_name = dict((a[0], a[1]) for a in attrs).get("name") if name == "vars" else None
                if isinstance(own_name, bytes):
                    own_name = own_name.decode("utf-8", "replace")
                stack.append((obj, g, child, own_name if isinstance(own_name, str) else vars_name))
                continue
            checker.dataset(obj, child, tensor=False)
            if _is_tensor_dataset(obj):
                writer.write(dst, name, checker.read(obj, child), child,
                             layer=_layer_label(child, vars_name), category=_category(child),
                             attrs=attrs)
            else:
                # Not a float tensor: copied as it is (type, shape, values), except that strings
                # of variable length are stored fixed-length (see _store_attrs) and marked.
                enc = _vlen_encoding(obj.dtype)
                try:
                    if enc:
                        d = dst.create_dataset(name, data=_to_fixed(np.asarray(checker.read(obj, child),
                                                                               dtype=object)),
                                               track_times=False)
                        d.attrs[VLEN_DATA] = fixed(enc)
                    else:
                        src.copy(name, dst, name=name)
                        d = dst[name]
                        for a in list(d.attrs):
                            del d.attrs[a]
                except (OSError, RuntimeError, ValueError, TypeError) as exc:
                    raise CorruptFileError(f"cannot copy dataset: {exc}", rule="h5.read",
                                           file=checker.file, member=child) from None
                _store_attrs(attrs, d)
                if obj.dtype.kind in "biuf" and obj.shape is not None:
                    array = checker.read(obj, child)
                    d.attrs["sparsecomp.sha256"] = fixed(tensor_digest(array))
                    writer.record_verbatim(array, child, layer=_layer_label(child, vars_name),
                                           category=_category(child))
                writer._tick(child)


def _reserved_check(attrs, path, checker):
    for a in attrs:
        if a[0].startswith(PREFIX):
            checker.fail(UnsupportedFormatError, f"attribute {a[0]!r} uses the reserved prefix {PREFIX!r}"
                         " (is this file already packed?)", "h5.attr.reserved", path)
    return attrs


def _source_kind(path: Path, limits: Limits) -> str:
    head = _check_signature(path, file_limit=limits.max_file_bytes)
    if head.startswith(HDF5_SIGNATURE):
        return "h5"
    if head.startswith(ZIP_SIGNATURE):
        return "keras"
    raise CorruptFileError("not an HDF5 file or a .keras archive (unknown signature)",
                           rule="file.signature", file=path)


def _zip_members(zf: zipfile.ZipFile, path, limits: Limits):
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ResourceLimitError(f"{len(infos)} archive members", rule="limit.members", file=path)
    extra = 0
    names = set()
    for info in infos:
        n = info.filename
        if not n or n.startswith("/") or ".." in n.split("/") or "\\" in n or not _NAME_OK.match(n) \
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


def _write_files_group(out: h5py.File, members: list[dict], blobs: dict[str, bytes]) -> None:
    g = new_group(out, "files")
    g.attrs["members"] = fixed(json.dumps(members))
    for i, m in enumerate(members):
        if not m.get("tree") and not m["name"].endswith("/"):
            blob = np.frombuffer(blobs[m["name"]], dtype=np.uint8)
            # configs are JSON text: deflate makes them several times smaller (bounded ratio on read)
            kw = dict(compression="gzip", compression_opts=9, chunks=(len(blob),)) if len(blob) >= 1024 else {}
            g.create_dataset(f"{i:05d}", data=blob, track_times=False, **kw)


def _root_attrs(out: h5py.File, kind: str, source_name: str, source_bytes: int | None,
                min_ratio: float, drop_optimizer: bool) -> None:
    out.attrs["format"] = fixed(FORMAT)
    out.attrs["format_version"] = FORMAT_VERSION
    out.attrs["writer"] = fixed(f"sparsecomp {__version__}")
    out.attrs["kind"] = fixed(kind)
    out.attrs["source_name"] = fixed(source_name)
    out.attrs["source_bytes"] = -1 if source_bytes is None else int(source_bytes)
    out.attrs["min_ratio"] = float(min_ratio)
    out.attrs["optimizer_dropped"] = bool(drop_optimizer)


@guarded
def pack(src, dst, *, min_ratio: float = 1.0, drop_optimizer: bool = False,
         limits: Limits | None = None, progress=None) -> StorageReport:
    """Write the checkpoint ``src`` as a ``.sparse.h5`` file at ``dst``.

    ``src`` may be any HDF5 checkpoint (Keras 2 or Keras 3 ``.h5``, ``.weights.h5``, full model
    or weights only) or a ``.keras`` archive. Every floating-point tensor is stored dense or as
    CSR, whichever the size check picks (see :func:`sparsecomp.csr.size_check`); everything else
    (groups, attributes, integer and string datasets, ``config.json``...) is kept as it was.

    Args:
        src: path of the source checkpoint.
        dst: path of the file to write; written atomically (a previous file is replaced whole or
            not at all).
        min_ratio: CSR is used only when it is at least this many times smaller than dense
            (>= 1; 1.0 means "whenever strictly smaller"; 6 reproduces the classic rule of thumb).
        drop_optimizer: leave optimizer state out. Kept by default; the report counts it apart.
        limits: bounds on what the source may declare.
        progress: optional ``callable(done, total, member)`` called after each dataset.

    Returns:
        The :class:`~sparsecomp.report.StorageReport` of what was written.

    Raises:
        CorruptFileError, UnsupportedFormatError, ResourceLimitError, InvalidTensorError: bad source.
        WriteError: the output could not be written (nothing at ``dst`` was changed).

    Example:
        >>> sparsecomp.pack("model.keras", "model.sparse.h5", min_ratio=1.0)  # doctest: +SKIP
    """
    min_ratio = check_min_ratio(min_ratio)
    limits = limits or Limits()
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise BadArgumentError("the output must differ from the input", rule="argument.same_file", file=src)
    kind = _source_kind(src, limits)
    checker = _Checker(limits, src)
    with contextlib.ExitStack() as stack:
        members, blobs, src_h5 = [], {}, None
        if kind == "keras":
            try:
                zf = stack.enter_context(zipfile.ZipFile(src))
                infos = _zip_members(zf, src, limits)
                for info in infos:
                    is_tree = info.filename == KERAS_WEIGHTS_MEMBER
                    members.append({"name": info.filename, "compress_type": info.compress_type,
                                    "tree": is_tree})
                    if is_tree:
                        fh = stack.enter_context(zf.open(info))
                        if fh.read(8) != HDF5_SIGNATURE:
                            raise CorruptFileError("the weights member is not HDF5", rule="file.signature",
                                                   file=src, member=KERAS_WEIGHTS_MEMBER)
                        fh.seek(0)
                        src_h5 = stack.enter_context(_open_h5(fh, src))
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
        else:
            src_h5 = stack.enter_context(_open_h5(src, src))
            try:
                if src_h5.attrs.get("format") == FORMAT:
                    raise BadArgumentError("the input is already a sparsecomp file", rule="argument.packed",
                                           file=src)
            except (OSError, RuntimeError, TypeError):
                pass
        total = _count_datasets(src_h5) if src_h5 is not None else 0
        writer = _TreeWriter(min_ratio, limits, src, progress, total)
        with atomic_output(dst) as tmp:
            with new_file(tmp) as out:
                _root_attrs(out, kind, src.name, src.stat().st_size, min_ratio, drop_optimizer)
                tree = new_group(out, "tree")
                if src_h5 is not None:
                    _pack_tree(src_h5, tree, checker, writer, drop_optimizer=drop_optimizer)
                if kind == "keras":
                    _write_files_group(out, members, blobs)
    return StorageReport(file=str(dst), kind=kind, file_bytes=dst.stat().st_size,
                         source_bytes=src.stat().st_size, records=writer.records,
                         optimizer_dropped=drop_optimizer)


# --------------------------------------------------------------------------------------------
# Reading our own files
# --------------------------------------------------------------------------------------------

class _Reader:
    """An open, framing-checked sparsecomp file."""

    def __init__(self, path, limits: Limits | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        _check_signature(self.path, file_limit=self.limits.max_file_bytes)
        _check_framing(self.path)
        self.h5 = _open_h5(self.path, self.path)
        self.checker = _Checker(self.limits, self.path, no_vlen=True)
        try:
            root = dict((a[0], a[1]) for a in self.checker.attrs(self.h5, "/", reserved=_ROOT_RESERVED))
            if text(root.get("format")) != FORMAT:
                raise UnsupportedFormatError("not a sparsecomp file (no format tag)", rule="format.tag",
                                             file=self.path)
            version = root.get("format_version")
            if not isinstance(version, (int, np.integer)) or int(version) != FORMAT_VERSION:
                raise UnsupportedFormatError(f"format_version {version!r} is not supported (this "
                                             f"library reads version {FORMAT_VERSION})",
                                             rule="format.version", file=self.path)
            self.kind = text(root.get("kind"))
            if self.kind not in KINDS:
                raise UnsupportedFormatError(f"unknown kind {self.kind!r}", rule="format.kind",
                                             file=self.path)
            self.root_attrs = root
            tree = self.h5.get("tree", getlink=True)
            if not isinstance(tree, h5py.HardLink) or not isinstance(self.h5["tree"], h5py.Group):
                raise CorruptFileError("missing /tree group", rule="format.tree", file=self.path)
            self.tree = self.h5["tree"]
            self.checker.attrs(self.tree, "tree")
        except BaseException:
            self.h5.close()
            raise

    def close(self):
        self.h5.close()

    def preflight(self) -> list:
        """Walk the whole tree checking every header and the resource budget; decode nothing.

        Returns the walk's entries, so callers decode from them only once everything declared
        (per tensor and in total) is known to fit.
        """
        entries = list(self.walk())
        for path, node, kind, attrs in entries:
            if kind != "group":
                self.tensor_meta(node, kind, attrs, path)
        if self.kind == "model" and "optimizer" in self.h5:
            for path, node, kind, attrs in self.walk(self.h5["optimizer"], "optimizer"):
                if kind != "group":
                    self.tensor_meta(node, kind, attrs, path)
        return entries

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- tree walk ------------------------------------------------------------------------------

    def walk(self, group=None, path=""):
        """Yield ``(path, node, kind, attrs)`` depth-first in natural name order.

        ``kind`` is ``"group"``, ``"csr"`` (a CSR-encoded tensor) or ``"dataset"``.
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
                if any(a[0] == "sparsecomp.encoding" for a in attrs):
                    yield child, obj, "csr", attrs
                else:
                    yield child, obj, "group", attrs
                    if len(stack) >= 64:
                        self.checker.fail(ResourceLimitError, "groups nested deeper than 64", "limit.depth", child)
                    stack.append(self.checker.children(obj, child))
            else:
                yield child, obj, "dataset", attrs

    def files(self):
        """The archive members list and a reader of their bytes (kinds keras/model)."""
        if "files" not in self.h5:
            return [], None
        g = self.h5["files"]
        try:
            members = json.loads(text(dict((a[0], a[1]) for a in self.checker.attrs(g, "files", reserved=("members",))).get("members")) or "")
        except (KeyError, ValueError, TypeError, OSError):
            members = None
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise CorruptFileError("bad /files member list", rule="format.files", file=self.path)

        def blob(i):
            key = f"{i:05d}"
            link = g.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink) or not isinstance(g[key], h5py.Dataset):
                raise CorruptFileError("missing archive member", rule="format.files", file=self.path,
                                       member=f"files/{key}")
            d = g[key]
            self.checker.dataset(d, f"files/{key}", tensor=False)
            if d.dtype != np.uint8 or d.ndim != 1:
                raise CorruptFileError("archive member must be uint8 bytes", rule="format.files",
                                       file=self.path, member=f"files/{key}")
            return self.checker.read(d, f"files/{key}").tobytes()
        return members, blob

    # -- tensors ----------------------------------------------------------------------------------

    def tensor_meta(self, node, kind: str, attrs, path: str):
        """Shape, dtype, nnz and encoding of a tensor node, from headers only."""
        adict = dict((a[0], a[1]) for a in attrs)
        if kind == "dataset":
            self.checker.dataset(node, path, tensor=False)
            shape = tuple(node.shape or ())
            return shape, np.dtype(node.dtype), None, "dense"
        fail = lambda msg, rule: self.checker.fail(InvalidTensorError, msg, rule, path)  # noqa: E731
        if text(adict.get("sparsecomp.encoding")) != "csr":
            fail(f"unknown encoding {adict.get('sparsecomp.encoding')!r}", "tensor.encoding")
        try:
            dtype = np.dtype(str(text(adict.get("sparsecomp.dtype"))))
        except TypeError:
            fail("bad dtype attribute", "tensor.dtype")
        if dtype not in FLOAT_DTYPES:
            fail(f"CSR tensor dtype {dtype} is not a float", "tensor.dtype")
        shape_attr = np.asarray(adict.get("sparsecomp.shape", np.zeros(0)))
        if shape_attr.dtype.kind not in "iu" or shape_attr.ndim != 1 or not 1 <= len(shape_attr) <= \
                self.limits.max_rank or np.any(shape_attr < 0):
            fail(f"bad shape attribute {shape_attr.tolist()!r}", "tensor.shape")
        shape = tuple(int(d) for d in shape_attr)
        if any(d > self.limits.max_dim for d in shape):
            self.checker.fail(ResourceLimitError, f"a dimension of {shape} exceeds {self.limits.max_dim}",
                              "limit.dim", path)
        nbytes = _nbytes(shape, dtype.itemsize)
        if nbytes > self.limits.max_tensor_bytes:
            self.checker.fail(ResourceLimitError, f"declares {nbytes} bytes, over the per-tensor limit",
                              "limit.tensor", path)
        self.checker.account(nbytes, path)
        parts = {}
        for name, child, obj in self.checker.children(node, path, dedupe=False):
            if name not in ("data", "indices", "indptr") or not isinstance(obj, h5py.Dataset):
                fail(f"unexpected member {name!r} in a CSR group", "csr.members")
            self.checker.dataset(obj, child, tensor=True)
            if obj.ndim != 1:
                fail(f"{name} must be 1-D", "csr.rank")
            parts[name] = obj
        if set(parts) != {"data", "indices", "indptr"}:
            fail(f"CSR group lacks {sorted({'data', 'indices', 'indptr'} - set(parts))}", "csr.members")
        rows, cols = view_shape_2d(shape)
        nnz = parts["data"].shape[0]
        if parts["data"].dtype != dtype:
            fail(f"data dtype {parts['data'].dtype} differs from declared {dtype}", "csr.data.dtype")
        for name in ("indices", "indptr"):
            if parts[name].dtype.kind != "u":
                fail(f"{name} must be unsigned integers, not {parts[name].dtype}", "csr.index.dtype")
        if parts["indices"].shape[0] != nnz:
            fail(f"indices has {parts['indices'].shape[0]} entries but data has {nnz}", "csr.nnz")
        if parts["indptr"].shape[0] != rows + 1:
            fail(f"indptr has {parts['indptr'].shape[0]} entries; shape {shape} needs {rows + 1}"
                 " (declared shape larger than the data present?)", "csr.indptr.length")
        if nnz > rows * cols:
            fail(f"{nnz} stored values exceed the {rows * cols} entries of shape {shape}", "csr.nnz")
        if np.iinfo(parts["indptr"].dtype).max < nnz:
            fail(f"indptr dtype {parts['indptr'].dtype} too narrow for {nnz} values", "csr.index.dtype")
        return shape, dtype, nnz, "csr"

    def read_tensor(self, node, kind: str, attrs, path: str, *, verify: bool = True) -> np.ndarray:
        """Decode one tensor node, fully validated; checks its SHA-256 when ``verify``."""
        adict = dict((a[0], a[1]) for a in attrs)
        shape, dtype, nnz, encoding = self.tensor_meta(node, kind, attrs, path)
        if encoding == "dense":
            array = self.checker.read(node, path)
            if isinstance(array, np.ndarray) and array.shape != shape:
                self.checker.fail(InvalidTensorError, "dataset shape mismatch", "tensor.shape", path)
        else:
            data = self.checker.read(node["data"], path + "/data")
            indices = self.checker.read(node["indices"], path + "/indices")
            indptr = self.checker.read(node["indptr"], path + "/indptr")
            validate_csr(data, indices, indptr, shape, member=path, file=self.path)
            array = csr_to_dense(data, indices, indptr, shape, dtype)
        if isinstance(array, np.ndarray) and array.dtype.kind == "f" and not self.limits.allow_nonfinite \
                and array.size and not np.all(np.isfinite(array)):
            self.checker.fail(InvalidTensorError, "tensor holds NaN or Inf", "tensor.nonfinite", path)
        if verify and isinstance(array, np.ndarray) and array.dtype.kind in "biuf":
            expected = adict.get("sparsecomp.sha256")
            if expected is None:
                self.checker.fail(InvalidTensorError, "tensor has no checksum", "tensor.checksum.missing", path)
            expected = text(expected)
            if tensor_digest(array) != expected:
                self.checker.fail(InvalidTensorError, "SHA-256 mismatch: the stored tensor was altered",
                                  "tensor.checksum", path)
        return array


def read_tensors(path, *, limits: Limits | None = None, verify: bool = True):
    """Yield ``(member_path, array)`` for every numeric tensor in a sparsecomp file, decoded.

    The whole file's headers and budget are checked before the first tensor is decoded.
    """
    try:
        with _Reader(path, limits) as r:
            for p, node, kind, attrs in r.preflight():
                if kind == "group":
                    continue
                if kind == "dataset" and (node.shape is None or node.dtype.kind not in "biuf"):
                    continue
                yield p, r.read_tensor(node, kind, attrs, p, verify=verify)
    except SparseCompError:
        raise
    except (MemoryError, *_LIB_ERRORS) as exc:
        raise _wrap(exc, path) from None


# --------------------------------------------------------------------------------------------
# Unpack
# --------------------------------------------------------------------------------------------

def _unpack_tree(r: _Reader, out_root: h5py.Group, progress=None) -> None:
    _restore_attrs(r.checker.attrs(r.tree, "/"), out_root)
    groups = {"": out_root}
    entries = r.preflight()
    total = sum(1 for e in entries if e[2] != "group")
    done = 0
    for path, node, kind, attrs in entries:
        parent_path, _, name = path.rpartition("/")
        parent = groups[parent_path]
        if kind == "group":
            g = parent.create_group(name)
            _restore_attrs(attrs, g)
            groups[path] = g
            continue
        adict = dict((a[0], a[1]) for a in attrs)
        if kind == "csr" or (node.shape is not None and node.dtype.kind in "biuf"):
            array = r.read_tensor(node, kind, attrs, path)
            d = parent.create_dataset(name, data=array)
        elif VLEN_DATA in adict:
            enc = text(adict[VLEN_DATA])
            if enc not in ("utf-8", "ascii"):
                raise CorruptFileError(f"bad string encoding {enc!r}", rule="h5.attr", file=r.path, member=path)
            r.checker.dataset(node, path, tensor=False)
            d = parent.create_dataset(name, data=_from_fixed(np.asarray(r.checker.read(node, path)), enc),
                                      dtype=h5py.string_dtype(enc))
        else:
            r.checker.dataset(node, path, tensor=False)
            node.parent.copy(node.name.rpartition("/")[2], parent, name=name)
            d = parent[name]
            for a in list(d.attrs):
                del d.attrs[a]
        _restore_attrs(attrs, d)
        done += 1
        if progress is not None:
            progress(done, total, path)


@guarded
def unpack(src, dst, *, limits: Limits | None = None, progress=None) -> Path:
    """Write the original checkpoint back from a ``.sparse.h5`` file.

    The result has the source's kind (``.h5`` / ``.weights.h5`` / ``.keras``) with identical
    datasets (dtype, shape, values bit for bit) and attributes, so loading code written for the
    original reads it unchanged. Files written by :func:`sparsecomp.save` unpack to ``.keras``.

    Raises:
        SparseCompError subclasses for a bad input; WriteError if the output cannot be written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise BadArgumentError("the output must differ from the input", rule="argument.same_file", file=src)
    with _Reader(src, limits) as r:
        if r.kind == "model":
            from .model_io import load
            model = load(src, limits=limits, compile=False)
            if dst.suffix != ".keras":
                raise BadArgumentError(f"a model file unpacks to a .keras archive; got {dst.name!r}",
                                       rule="argument.suffix", file=dst)
            with atomic_output(dst) as tmp:
                model.save(tmp.with_suffix(".keras"))
                os.replace(tmp.with_suffix(".keras"), tmp)
            return dst
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
                            if not isinstance(name, str) or ctype not in (zipfile.ZIP_STORED,
                                                                          zipfile.ZIP_DEFLATED):
                                raise CorruptFileError("bad archive member entry", rule="format.files",
                                                       file=src)
                            if m.get("tree"):
                                zf.write(weights, name, compress_type=ctype)
                            elif name.endswith("/"):
                                zf.writestr(zipfile.ZipInfo(name), b"")
                            else:
                                zf.writestr(name, blob(i), compress_type=ctype)
    return dst


# --------------------------------------------------------------------------------------------
# Inspect / verify
# --------------------------------------------------------------------------------------------

def _records(r: _Reader, *, decode: bool, progress=None) -> list[TensorRecord]:
    records = []
    vars_names: dict[str, str] = {}
    entries = r.preflight()
    total = sum(1 for e in entries if e[2] != "group")
    done = 0
    for path, node, kind, attrs in entries:
        adict = dict((a[0], a[1]) for a in attrs)
        if kind == "group":
            if path.rpartition("/")[2] == "vars" and isinstance(adict.get("name"), (str, bytes)):
                n = adict["name"]
                vars_names[path] = n.decode() if isinstance(n, bytes) else n
            continue
        done += 1
        if decode:
            array = r.read_tensor(node, kind, attrs, path) if (
                kind == "csr" or (node.shape is not None and node.dtype.kind in "biuf")) else None
        shape, dtype, nnz, encoding = r.tensor_meta(node, kind, attrs, path)
        if progress is not None:
            progress(done, total, path)
        if kind == "dataset" and (node.shape is None or dtype.kind not in "biuf"):
            continue
        if nnz is None:
            nnz = count_nonzero(array) if decode else count_nonzero(r.checker.read(node, path))
        check = size_check(shape, dtype, nnz)
        stored = check.csr_bytes if encoding == "csr" else check.dense_bytes
        parent = path.rpartition("/")[0]
        if r.kind == "model":
            layer = path.split("/")[0]
        else:
            layer = _layer_label(path, vars_names.get(parent))
        records.append(TensorRecord(path=path, layer=layer, category=_category(path),
                                    shape=shape, dtype=dtype.str, nnz=nnz, encoding=encoding,
                                    dense_bytes=check.dense_bytes, stored_bytes=stored,
                                    csr_bytes=check.csr_bytes))
    if r.kind == "model" and "optimizer" in r.h5:
        for p, node, kind, attrs in r.walk(r.h5["optimizer"], "optimizer"):
            if kind == "group":
                continue
            shape, dtype, nnz, encoding = r.tensor_meta(node, kind, attrs, p)
            if nnz is None:
                nnz = count_nonzero(r.checker.read(node, p))
            check = size_check(shape, dtype, nnz)
            records.append(TensorRecord(path=p, layer="optimizer", category="optimizer", shape=shape,
                                        dtype=dtype.str, nnz=nnz, encoding=encoding,
                                        dense_bytes=check.dense_bytes,
                                        stored_bytes=check.csr_bytes if encoding == "csr" else check.dense_bytes,
                                        csr_bytes=check.csr_bytes))
    return records


@guarded
def keras_baseline_bytes(path, *, limits: Limits | None = None) -> int:
    """Size of Keras' own dense file of the same model, without optimizer state.

    Measured, not estimated: for a model file the model is rebuilt and saved with
    ``model.save(...keras)``; for a packed checkpoint the dense checkpoint is written back without
    its optimizer groups (the same datasets Keras wrote) and its size taken.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as td:
        with _Reader(path, limits) as r:
            kind = r.kind
        if kind == "model":
            from .model_io import load
            model = load(path, limits=limits, compile=False)
            out = Path(td) / "model.keras"
            model.save(out)
            return out.stat().st_size
        dense = Path(td) / ("dense" + (".keras" if kind == "keras" else ".h5"))
        unpack(path, dense, limits=limits)
        if kind == "keras":
            stripped = Path(td) / "stripped.keras"
            with zipfile.ZipFile(dense) as zin, zipfile.ZipFile(stripped, "w") as zout:
                for info in zin.infolist():
                    if info.filename == KERAS_WEIGHTS_MEMBER:
                        w = Path(td) / "w.h5"
                        w.write_bytes(zin.read(info))
                        _strip_optimizer(w)
                        zout.write(w, info.filename, compress_type=info.compress_type)
                    else:
                        zout.writestr(info, zin.read(info))
            return stripped.stat().st_size
        _strip_optimizer(dense)
        return dense.stat().st_size


def _strip_optimizer(h5path: Path) -> None:
    """Rewrite an HDF5 checkpoint without its optimizer groups (HDF5 does not shrink in place)."""
    tmp = h5path.with_suffix(".tmp")
    with h5py.File(h5path, "r") as src, h5py.File(tmp, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs.create(k, v, dtype=src.attrs.get_id(k).dtype)
        for name in src:
            if name not in OPTIMIZER_GROUPS:
                src.copy(name, dst, name=name)
    os.replace(tmp, h5path)


@guarded
def inspect(path, *, baseline: bool = True, limits: Limits | None = None, progress=None,
            isolate: bool = False) -> StorageReport:
    """Report where the bytes of a ``.sparse.h5`` file go.

    Per tensor: layer, shape, parameters, non-zeros, density, encoding, dense and stored bytes,
    ratio; totals with optimizer state counted apart; the file's size on disk, and (when
    ``baseline``) the size of Keras' own dense file of the same model without optimizer state,
    measured by writing it to a temporary directory.

    The file's structure is validated as it is read; tensor values are not decoded (use
    :func:`verify` for the full check). ``isolate=True`` parses in a child process with memory
    and time limits (see :mod:`sparsecomp.isolation`); the Keras baseline is then skipped.
    """
    path = Path(path)
    if isolate:
        from .isolation import run_isolated
        return run_isolated("inspect", path, limits=limits)
    with _Reader(path, limits) as r:
        records = _records(r, decode=False, progress=progress)
        kind = r.kind
        source_bytes = int(r.root_attrs.get("source_bytes", -1))
        dropped = bool(r.root_attrs.get("optimizer_dropped", False))
    keras_bytes = keras_baseline_bytes(path, limits=limits) if baseline else None
    return StorageReport(file=str(path), kind=kind, file_bytes=path.stat().st_size,
                         source_bytes=None if source_bytes < 0 else source_bytes,
                         keras_bytes=keras_bytes, records=records, optimizer_dropped=dropped)


@guarded
def verify(path, *, limits: Limits | None = None, progress=None, isolate: bool = False) -> StorageReport:
    """Fully validate a ``.sparse.h5`` file: structure, every CSR invariant, every checksum.

    Returns the storage report when the file is sound; raises a :class:`SparseCompError`
    subclass naming the member and the rule otherwise. For model files, the architecture is
    also checked for code that loading would run (Lambda layers, unknown objects).
    ``isolate=True`` does it all in a child process with memory and time limits.
    """
    path = Path(path)
    if isolate:
        from .isolation import run_isolated
        return run_isolated("verify", path, limits=limits)
    with _Reader(path, limits) as r:
        records = _records(r, decode=True, progress=progress)
        if r.kind == "model" and "optimizer" in r.h5:
            for p, node, kind, attrs in r.walk(r.h5["optimizer"], "optimizer"):
                if kind != "group":
                    r.read_tensor(node, kind, attrs, p)
        members, blob = r.files()
        config = None
        for i, m in enumerate(members):
            if isinstance(m, dict) and not m.get("tree") and m.get("name") == "config.json":
                config = blob(i)
            elif isinstance(m, dict) and not m.get("tree") and not str(m.get("name", "")).endswith("/"):
                blob(i)
        legacy = r.tree.attrs.get("model_config") if r.kind == "h5" else None
        kind = r.kind
        source_bytes = int(r.root_attrs.get("source_bytes", -1))
        dropped = bool(r.root_attrs.get("optimizer_dropped", False))
    if config is not None or legacy is not None:
        from .safety import check_config_safe
        text = config if config is not None else legacy
        try:
            cfg = json.loads(text)
        except (ValueError, TypeError):
            raise CorruptFileError("model config is not valid JSON", rule="keras.config", file=path) from None
        check_config_safe(cfg, file=path)
    return StorageReport(file=str(path), kind=kind, file_bytes=path.stat().st_size,
                         source_bytes=None if source_bytes < 0 else source_bytes, records=records,
                         optimizer_dropped=dropped)

