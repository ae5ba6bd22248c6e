"""The ``.sparse.h5`` format: tensor-level storage that knows nothing of Keras.

Layout of this package (dependencies point down):

- :mod:`.spec` — the format's constants and :class:`Limits`;
- :mod:`.guard` — library errors on bad input become ours;
- :mod:`.h5tree` — the hardened HDF5 walk, framing checks, attribute copying;
- :mod:`.atomic` — atomic output;
- :mod:`.zdict` — the version-3 preset dictionary ``D`` (a constant of the format);
- :mod:`.tensors`, :mod:`.streams` — bit patterns and byte streams (raw, deflate or zdict, bounded);
- :mod:`.codecs` — one module per encoding and the registry the size check picks from;
- :mod:`.index` — the index of versions 2 and 3, written and checked;
- :mod:`.writer`, :mod:`.reader` (+ :mod:`.v1` for version-1 files);
- :mod:`.pack`, :mod:`.inspect` — the public verbs; :mod:`.report` — what they return.

The spec is ``docs/FORMAT.md``.
"""

from .atomic import atomic_output
from .codecs import CODECS, LOSSLESS
from .inspect import inspect, read_tensors, verify
from .pack import pack, unpack
from .reader import Reader, TensorEntry
from .report import StorageReport, TensorRecord, format_bytes
from .sizecheck import SizeCheck, size_check
from .spec import FORMAT, FORMAT_VERSION, READABLE_VERSIONS, Limits
from .writer import Writer

__all__ = ["pack", "unpack", "inspect", "verify", "read_tensors", "size_check", "SizeCheck", "Limits",
           "StorageReport", "TensorRecord", "format_bytes", "Reader", "TensorEntry", "Writer", "atomic_output",
           "CODECS", "LOSSLESS", "FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS"]
