"""Writing a version-3 file: tensors through the codecs into blobs, archive members, the index.

Small tensors' streams are gathered in blob 0 (one compact dataset: its bytes live in the object
header, so a LeNet costs a few hundred bytes of HDF5 metadata in all); a tensor whose streams
reach :data:`BIG` bytes gets a contiguous dataset of its own, written as soon as it is encoded, so
memory stays at one tensor's streams at a time. The index goes last, at the end of blob 0,
compressed with the preset dictionary (coding ``zdict``), as archive members may be. Each tensor
entry keeps the first digits of the tensor's SHA-256; the index carries the file digest over the
full ones (no second pass over the data: SHA-256 of 32 bytes per tensor).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

from ..version import __version__
from ..errors import InvalidTensorError
from . import codecs
from .codecs import check_min_ratio
from .h5tree import fixed, minimal_header, write_bytes
from .index import file_entry, tensor_entry
from .report import TensorRecord
from .spec import BLOB, FORMAT, FORMAT_VERSION, INDEX_ATTR, LEVELS, Limits
from .streams import code_stream, deflate
from .tensors import all_finite, contiguous, file_digest, is_storable, tensor_digest

__all__ = ["Writer", "BIG", "check_level"]

#: Streams of one tensor adding up to this many bytes get a blob dataset of their own.
BIG = 1 << 20
#: Tensors of this many bytes or more are hashed on a second thread while they are encoded.
_HASH_APART = 1 << 20


def check_level(level) -> int:
    from ..errors import BadArgumentError
    if level not in LEVELS or isinstance(level, bool):
        raise BadArgumentError(f"`level` must be one of {LEVELS}. Received: level={level!r}", rule="argument.level")
    return int(level)


def _write_streams(parent: h5py.Group, name: str, streams) -> None:
    total = sum(s.stored for s in streams)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    minimal_header(dcpl)
    space = h5py.h5s.create_simple((total,))
    ds = h5py.Dataset(h5py.h5d.create(parent.id, name.encode(), h5py.h5t.STD_U8LE, space, dcpl=dcpl))
    at = 0
    for s in streams:
        n = s.stored
        if n:
            ds[at:at + n] = np.frombuffer(s.data, np.uint8)
        at += n


class Writer:
    """Write tensors and archive members into an open, empty HDF5 file; :meth:`close` finishes it.

    ``meta`` holds the index's header fields (``kind``, ``source``, ``optimizer_dropped``,
    ``keras_version``). ``codecs`` restricts the codecs the size check may pick (``None``: every
    lossless one); ``level`` trades time for size (1 fast, 2 default, 3 smallest).
    """

    def __init__(self, out: h5py.File, *, kind: str, file, min_ratio: float = 1.0, level: int = 2, codecs=None,
                 limits: Limits | None = None, progress=None, total: int = 0, source=None,
                 optimizer_dropped: bool = False, keras_version: str | None = None):
        self.out = out
        self.file = str(file)
        self.min_ratio = check_min_ratio(min_ratio)
        self.level = check_level(level)
        self.codecs = codecs
        self.limits = limits or Limits()
        self.progress = progress
        self.total = total
        self.done = 0
        self.meta = {"writer": f"sparsecomp {__version__}", "kind": kind, "source": source,
                     "min_ratio": self.min_ratio, "level": self.level, "optimizer_dropped": bool(optimizer_dropped),
                     "keras_version": keras_version}
        self.shared = bytearray()
        self.big: list[int] = []
        self.tensors: list[dict] = []
        self.digests: list[str] = []          # each tensor's full SHA-256 (hex), in index order
        self.files: list[dict] = []
        self.records: list[TensorRecord] = []

    def tick(self, what: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, what)

    def _place(self, streams) -> tuple[int, int]:
        """Store ``streams`` back to back; returns ``(blob, offset)``."""
        if sum(s.stored for s in streams) >= BIG:
            self.big.append(sum(s.stored for s in streams))
            _write_streams(self.out, f"{BLOB}{len(self.big)}", streams)
            return len(self.big), 0
        at = len(self.shared)
        for s in streams:
            self.shared += memoryview(s.data).cast("B")
        return 0, at

    def _encode_place(self, array):
        enc = codecs.choose(array, min_ratio=self.min_ratio, level=self.level, codecs=self.codecs,
                            max_ratio=self.limits.max_compression_ratio)
        return (enc, *self._place(enc.streams))

    def tensor(self, path: str, array, *, layer: str, category: str = "weights", name: str | None = None,
               attrs: bool = False) -> TensorRecord:
        """Encode and place one tensor (any storable dtype and rank); returns its record."""
        array = contiguous(np.asarray(array))
        if array.dtype.byteorder == ">":
            raise InvalidTensorError("big-endian tensors are not supported", rule="tensor.dtype",
                                     file=self.file, member=path)
        if not is_storable(array.dtype):
            raise InvalidTensorError(f"dtype {array.dtype} is not a storable number", rule="tensor.dtype",
                                     file=self.file, member=path)
        if array.dtype.kind == "f" and not self.limits.allow_nonfinite and not all_finite(array):
            raise InvalidTensorError("tensor holds NaN or Inf", rule="tensor.nonfinite", file=self.file, member=path)
        # The digest (SHA-256 releases the GIL) runs beside the encoding: on big tensors they
        # take about as long as each other.
        if array.nbytes >= _HASH_APART:
            with ThreadPoolExecutor(1, thread_name_prefix="sparsecomp-digest") as pool:
                pending = pool.submit(tensor_digest, array)
                enc, blob, at = self._encode_place(array)
                digest = pending.result()
        else:
            enc, blob, at = self._encode_place(array)
            digest = tensor_digest(array)
        self.tensors.append(tensor_entry(path, array, enc, blob=blob, at=at, digest=digest,
                                         name=name, category=category, attrs=attrs))
        self.digests.append(digest)
        rec = TensorRecord(path=path, layer=layer, category=category, shape=tuple(array.shape),
                           dtype=array.dtype.str, nnz=enc.nnz, encoding=enc.codec,
                           dense_bytes=array.nbytes, stored_bytes=enc.nbytes, streams=enc.by_role(),
                           details=dict(enc.params))
        self.records.append(rec)
        self.tick(path)
        return rec

    def member(self, member: dict, data: bytes | None) -> None:
        """An archive member (``None`` data: the weights member or a directory entry)."""
        if data is None:
            self.files.append(file_entry(member))
            return
        stream = code_stream("file", data, level=max(self.level, 2), max_ratio=self.limits.max_compression_ratio,
                             dictionary=True)
        blob, at = self._place([stream])
        self.files.append(file_entry(member, stream, blob=blob, at=at))

    def close(self) -> None:
        doc = dict(self.meta, blobs=self.big, tensors=self.tensors, files=self.files,
                   sha256=file_digest(self.digests))
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        packed = deflate(raw, zdict=True)            # the index is always compressed, with D
        at = len(self.shared)
        self.shared += packed
        # the root's attributes before its last link: they then share one object header chunk
        self.out.attrs["format"] = fixed(FORMAT)
        self.out.attrs["format_version"] = np.int64(FORMAT_VERSION)
        self.out.attrs[INDEX_ATTR] = np.array([0, at, len(packed), len(raw)], np.int64)
        write_bytes(self.out, BLOB, bytes(self.shared))
