"""The ``.sparse.h5`` format's constants and the bounds a file must respect (:class:`Limits`).

The full specification is ``docs/FORMAT.md``; this module holds the names and numbers it fixes,
so that the writer, the reader and the codecs agree on one copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import BadArgumentError

__all__ = ["FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS", "PREFIX", "HDF5_SIGNATURE", "ZIP_SIGNATURE",
           "KERAS_WEIGHTS_MEMBER", "OPTIMIZER_GROUPS", "KINDS", "INDEX_ATTR", "BLOB", "COMPACT_MAX",
           "LEVELS", "ZDICT_SHA256", "DIGEST_PREFIX", "Limits"]

FORMAT = "sparsecomp"
#: The version this library writes.
FORMAT_VERSION = 3
#: The versions this library reads (version 1: one HDF5 object per tensor, CSR or dense; version 2:
#: the index, deflated, with a full SHA-256 per tensor).
READABLE_VERSIONS = (1, 2, 3)
#: Attribute names reserved for the format inside ``/tree`` (a source using them is refused).
PREFIX = "sparsecomp."
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
OPTIMIZER_GROUPS = ("optimizer", "optimizer_weights")     # Keras 3 and Keras 2 names
KINDS = ("h5", "keras", "model")
#: SHA-256 of the version-3 preset dictionary ``D`` (``zdict.ZDICT``): a constant of the format.
ZDICT_SHA256 = "5b144220924b2501f03c6565f6fa3708d5b4e6083beb2c1e0574e93e4e9b627f"
#: Hex digits of a tensor's SHA-256 that a version-3 index entry keeps (``digest``).
DIGEST_PREFIX = 8
#: Root attribute of a version-2 or -3 file: ``[blob number, offset, stored bytes, decoded bytes]`` of the index.
INDEX_ATTR = "index"
#: Name of the first blob dataset; later ones are ``blob1``, ``blob2``, ...
BLOB = "blob"
#: HDF5 keeps a dataset of up to this many bytes inside its object header (compact layout).
COMPACT_MAX = 60_000
#: Encoding effort: 1 = no entropy coding (every stream raw), 2 = default, 3 = try everything on every tensor.
LEVELS = (1, 2, 3)


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

    ``max_compression_ratio`` bounds how many decoded bytes any compressed stream (HDF5 filter or
    a codec's deflate stream) may declare per stored byte; ``max_index_bytes`` bounds the
    index of versions 2 and 3 (JSON) after decompression.
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
    max_index_bytes: int = 64 << 20
    allow_nonfinite: bool = False

    def __post_init__(self):
        for name in ("max_file_bytes", "max_tensor_bytes", "max_total_bytes", "max_members",
                     "max_rank", "max_dim", "max_attributes", "max_attribute_bytes", "max_name_length",
                     "max_compression_ratio", "max_extra_file_bytes", "max_index_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadArgumentError(f"`{name}` must be a positive integer. Received: {name}={value!r}",
                                       rule="argument.limits")
        if not isinstance(self.allow_nonfinite, bool):
            raise BadArgumentError(f"`allow_nonfinite` must be a bool. Received: {self.allow_nonfinite!r}",
                                   rule="argument.limits")
