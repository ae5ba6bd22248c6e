"""The size check, as a public function: what each codec would cost for a tensor, and the pick."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import codecs as codec_registry
from .tensors import contiguous

__all__ = ["SizeCheck", "size_check"]


@dataclass(frozen=True)
class SizeCheck:
    """Every allowed codec's exact stored bytes for one tensor, and the codec the check picks.

    ``ratio`` is ``dense_bytes / stored_bytes`` of the pick.
    """

    shape: tuple
    dtype: str
    nnz: int
    dense_bytes: int
    costs: dict = field(default_factory=dict)       # codec -> stored bytes
    encoding: str = "dense"
    stored_bytes: int = 0

    @property
    def ratio(self) -> float:
        return self.dense_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, "nnz": self.nnz, "dense_bytes": self.dense_bytes,
                "costs": dict(self.costs), "encoding": self.encoding, "stored_bytes": self.stored_bytes,
                "ratio": self.ratio}


def size_check(array, *, min_ratio: float = 1.0, level: int = 2, codecs=None) -> SizeCheck:
    """Encode ``array`` with every allowed codec and report what each costs and which is kept.

    Example:
        >>> sparsecomp.size_check(kernel).costs            # doctest: +SKIP
        {'dense': 940000, 'planes': 800632, 'gaps': 22109}
    """
    array = contiguous(np.asarray(array))
    min_ratio = codec_registry.check_min_ratio(min_ratio)
    encs = codec_registry.encode_all(array, level=level, codecs=codecs)
    best = codec_registry.pick(encs, min_ratio)
    return SizeCheck(shape=tuple(array.shape), dtype=array.dtype.str, nnz=best.nnz, dense_bytes=array.nbytes,
                     costs={e.codec: e.nbytes for e in encs}, encoding=best.codec, stored_bytes=best.nbytes)
