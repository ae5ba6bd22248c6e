"""Where a file's bytes go (``inspect``), whether every byte is sound (``verify``), the tensors
themselves (``read_tensors``). Structure only: measuring Keras' own file of the same model is
model-level work (:func:`sparsecomp.inspect` adds it).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CorruptFileError, SparseCompError
from ..safety import check_config_safe
from .guard import LIB_ERRORS, guarded, wrap_error
from .reader import Reader
from .report import StorageReport, TensorRecord
from .spec import Limits
from .tensors import count_nonzero

__all__ = ["inspect", "verify", "read_tensors", "records_of"]


def records_of(r: Reader, *, decode: bool, progress=None) -> list[TensorRecord]:
    """One record per tensor; ``decode`` reads (and verifies) every tensor, which also gives the
    non-zero count of version-1 dense tensors."""
    out = []
    entries = r.tensors()
    for i, t in enumerate(entries):
        array = r.read(t) if decode else None          # checks the declared non-zeros too
        nnz = t.nnz
        if nnz is None:                                # version 1 dense: count from the data
            nnz = count_nonzero(array if array is not None else r.read(t, verify=False))
        size = 1
        for d in t.shape:
            size *= int(d)
        out.append(TensorRecord(path=t.path, layer=t.layer, category=t.category, shape=tuple(t.shape),
                                dtype=t.dtype.str, nnz=nnz, encoding=t.codec, dense_bytes=size * t.dtype.itemsize,
                                stored_bytes=t.stored_bytes, streams=dict(t.streams), details=dict(t.details)))
        if progress is not None:
            progress(i + 1, len(entries), t.path)
    return out


def _report(r: Reader, path: Path, records) -> StorageReport:
    return StorageReport(file=str(path), kind=r.kind, file_bytes=path.stat().st_size,
                         source_bytes=r.meta["source_bytes"], records=records,
                         optimizer_dropped=r.meta["optimizer_dropped"], format_version=r.version)


@guarded
def inspect(path, *, limits: Limits | None = None, progress=None) -> StorageReport:
    """Report where the bytes of a ``.sparse.h5`` file go, from its headers (nothing decoded).

    Per tensor: layer, shape, parameters, non-zeros, density, codec, dense and stored bytes,
    bytes per stream (values, positions, codes...), ratio; totals; the file's size, its metadata
    and its bytes per non-zero.
    """
    path = Path(path)
    with Reader(path, limits) as r:
        return _report(r, path, records_of(r, decode=False, progress=progress))


@guarded
def verify(path, *, limits: Limits | None = None, progress=None) -> StorageReport:
    """Fully validate a ``.sparse.h5`` file: structure, every codec's invariants, every checksum.

    Returns the storage report when the file is sound; raises a :class:`SparseCompError`
    subclass naming the member and the rule otherwise. A model config is also checked for code
    that loading would run (Lambda layers, unknown objects).
    """
    path = Path(path)
    with Reader(path, limits) as r:
        records = records_of(r, decode=True, progress=progress)
        r.check_digest()                               # version 3: the file digest over every tensor
        members, blob = r.files()
        config = None
        for i, m in enumerate(members):
            if not m.get("tree") and not str(m.get("name", "")).endswith("/"):
                data = blob(i)
                if m.get("name") == "config.json":
                    config = data
        legacy = None
        if r.kind == "h5":
            attrs = dict((a[0], a[1]) for a in r.checker.attrs(r.tree, "tree"))
            legacy = attrs.get("model_config")
        report = _report(r, path, records)
    if config is not None or legacy is not None:
        text = config if config is not None else legacy
        try:
            cfg = json.loads(text)
        except (ValueError, TypeError):
            raise CorruptFileError("model config is not valid JSON", rule="keras.config", file=path) from None
        check_config_safe(cfg, file=path)
    return report


def read_tensors(path, *, limits: Limits | None = None, verify: bool = True):
    """Yield ``(member_path, array)`` for every numeric tensor in a sparsecomp file, decoded.

    Every header and the whole budget are checked before the first tensor is decoded. With
    ``verify``, each tensor's checksum is checked as it is read and, after the last one, a
    version-3 file's digest over all of them (a caller that stops early has had the per-tensor
    checks only: 8 hex digits of SHA-256 each, in version 3).
    """
    try:
        with Reader(path, limits) as r:
            for t in r.tensors():
                yield t.path, r.read(t, verify=verify)
            if verify:
                r.check_digest()
    except SparseCompError:
        raise
    except (MemoryError, *LIB_ERRORS) as exc:
        raise wrap_error(exc, path) from None
