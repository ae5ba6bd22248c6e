"""HDF5 without surprises: a walk that follows nothing and checks every header, file framing,
fixed-length attributes, and attribute copying that keeps HDF5 types exactly.

Used in both directions: on source checkpoints by ``pack`` and on ``.sparse.h5`` files by the
reader. Everything here enforces :class:`~sparsecomp.storage.spec.Limits` *before* anything a
header declares is read or allocated.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np

from ..errors import (CorruptFileError, InvalidTensorError, ResourceLimitError, SparseCompError,
                      UnsupportedFormatError)
from .spec import COMPACT_MAX, HDF5_SIGNATURE, PREFIX, Limits

__all__ = ["new_file", "new_group", "write_bytes", "minimal_header", "fixed", "text", "TreeChecker", "check_signature",
           "check_framing", "open_h5", "natural_key", "nbytes_of", "numeric_ok", "VLEN_ATTRS", "VLEN_DATA",
           "vlen_encoding", "to_fixed", "from_fixed", "store_attrs", "restore_attrs", "ALLOWED_FILTERS"]

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


_NO_ATTRS_HINT = []


def _no_attrs_hint():
    """libhdf5's ``H5Pset_dset_no_attrs_hint`` (1.10.5+), which h5py does not wrap, or ``None``.

    A dataset that will never hold attributes then gets an object header without the ~180 bytes
    HDF5 otherwise reserves for them (measured: 603 -> 421 bytes of overhead for the file's blob).
    The library is the one h5py already loaded, found in this process's memory map (Linux); where
    it cannot be found the files are the same HDF5, only that much bigger.
    """
    if not _NO_ATTRS_HINT:
        fn = None
        try:
            import ctypes
            with open("/proc/self/maps") as fh:
                paths = {line.split()[-1] for line in fh if line.count("/")}
            libs = [x for x in paths if Path(x).name.startswith("libhdf5") and not Path(x).name.startswith("libhdf5_")
                    and ".so" in Path(x).name]
            for lib in sorted(libs):
                f = getattr(ctypes.CDLL(lib), "H5Pset_dset_no_attrs_hint", None)
                if f is not None:
                    f.argtypes, f.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
                    fn = f
                    break
        except (OSError, AttributeError, ValueError):
            fn = None
        _NO_ATTRS_HINT.append(fn)
    return _NO_ATTRS_HINT[0]


def minimal_header(dcpl) -> None:
    """Ask for a dataset object header without room for attributes (see :func:`_no_attrs_hint`)."""
    fn = _no_attrs_hint()
    if fn is not None:
        fn(dcpl.id, 1)


def write_bytes(parent: h5py.Group, name: str, data) -> h5py.Dataset:
    """A 1-D ``uint8`` dataset holding ``data``, without timestamps or filters.

    Up to :data:`~sparsecomp.storage.spec.COMPACT_MAX` bytes it is *compact* (stored inside its
    object header: no separate data block, about a third of the metadata of a contiguous one);
    larger ones are contiguous.
    """
    arr = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data).reshape(-1).view(np.uint8)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    minimal_header(dcpl)
    if 0 < arr.size <= COMPACT_MAX:
        dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple((arr.size,))
    dsid = h5py.h5d.create(parent.id, name.encode("utf-8"), h5py.h5t.STD_U8LE, space, dcpl=dcpl)
    if arr.size:
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
    return h5py.Dataset(dsid)


ALLOWED_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
_NAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


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



def _is_string_dtype(dt: np.dtype) -> bool:
    return h5py.check_string_dtype(dt) is not None


def numeric_ok(dt: np.dtype) -> bool:
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


def nbytes_of(shape, itemsize) -> int:
    return math.prod(int(d) for d in shape) * int(itemsize)


def natural_key(name: str):
    """Sort ``vars/2`` before ``vars/10``: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


class TreeChecker:
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
            names = sorted(group.keys(), key=natural_key)
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
                if not (numeric_ok(dt) or _is_string_dtype(dt)
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
                self.no_vlen and vlen_encoding(dt) is not None:
            self.fail(CorruptFileError, f"variable-length dataset type {dt} (this format stores none)",
                      "h5.dtype.vlen", path)
        if shape is None:
            return 0   # a null dataspace holds nothing
        if (tensor and not numeric_ok(dt)) or (dt.kind in "biuf" and dt.byteorder == ">"):
            self.fail(InvalidTensorError, f"tensor dtype {dt} is not a little-endian number",
                      "tensor.dtype", path)
        if not (numeric_ok(dt) or _is_string_dtype(dt)):
            self.fail(UnsupportedFormatError, f"dataset dtype {dt} is not supported", "h5.dtype", path)
        if len(shape) > self.limits.max_rank:
            self.fail(ResourceLimitError, f"rank {len(shape)} exceeds {self.limits.max_rank}", "limit.rank", path)
        if any(int(d) > self.limits.max_dim for d in shape):
            self.fail(ResourceLimitError, f"a dimension of {tuple(shape)} exceeds {self.limits.max_dim}",
                      "limit.dim", path)
        for f in filters:
            if f not in ALLOWED_FILTERS:
                self.fail(UnsupportedFormatError, f"HDF5 filter {f} is not allowed", "h5.filter", path)
        nbytes = nbytes_of(shape, dt.itemsize)
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


def check_signature(path: Path, *, file_limit: int) -> bytes:
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


def superblock_eof(head: bytes) -> tuple[int, int] | None:
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


def check_framing(path: Path) -> None:
    """HDF5 signature at offset 0 (no userblock) and no bytes past the superblock's end-of-file."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head.startswith(HDF5_SIGNATURE):
        raise CorruptFileError("not an HDF5 file (no HDF5 signature at offset 0; userblocks are refused)",
                               rule="file.signature", file=path)
    framing = superblock_eof(head)
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


def open_h5(source, file) -> h5py.File:
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


def vlen_encoding(dt) -> str | None:
    """The encoding of a variable-length string type, ``None`` for anything else."""
    info = h5py.check_string_dtype(dt) if dt is not None else None
    return info.encoding if info is not None and info.length is None else None


def to_fixed(value):
    """Strings (a str, bytes, or an object array of them) as a fixed-length bytes value/array."""
    if isinstance(value, np.ndarray):
        items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value.flat]
        width = max([len(v) for v in items] + [1])
        return np.array(items, dtype=f"S{width}").reshape(value.shape)
    return np.bytes_(value.encode("utf-8") if isinstance(value, str) else bytes(value))


def from_fixed(value, encoding: str):
    """Undo :func:`to_fixed`: str values (or an object array of str) for a vlen string type."""
    if isinstance(value, np.ndarray):
        out = np.empty(value.shape, dtype=object)
        for i, v in np.ndenumerate(value):
            out[i] = bytes(v).decode("utf-8")
        return out
    return bytes(value).decode("utf-8")


def store_attrs(items, dst) -> None:
    """Write a source object's attributes, keeping every HDF5 type except variable-length strings.

    Those are stored fixed-length (listed in ``sparsecomp.vlen_attrs`` with their encoding), so
    a ``.sparse.h5`` never holds data in HDF5's global heap, whose corrupted references can
    stall libhdf5; ``unpack`` restores the original types exactly.
    """
    vlen = {}
    for name, value, dt, shape in items:
        enc = vlen_encoding(dt)
        if isinstance(value, h5py.Empty):
            dst.attrs.create(name, h5py.Empty("S1") if enc else value)
        elif enc:
            dst.attrs.create(name, to_fixed(value))
        else:
            dst.attrs.create(name, value, shape=shape, dtype=dt)
        if enc:
            vlen[name] = enc
    if vlen:
        dst.attrs[VLEN_ATTRS] = fixed(json.dumps(vlen, sort_keys=True))


def restore_attrs(items, dst) -> None:
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
            dst.attrs.create(name, from_fixed(value, enc), dtype=h5py.string_dtype(enc))
        elif isinstance(value, h5py.Empty):
            dst.attrs.create(name, value)
        else:
            dst.attrs.create(name, value, shape=shape, dtype=dt)


# --------------------------------------------------------------------------------------------
# Pack
