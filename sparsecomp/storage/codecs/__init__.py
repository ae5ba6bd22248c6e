"""The codec registry: one module per encoding, looked up by the name the index stores.

Adding an encoding is one module (a :class:`~.base.Codec` subclass), one line below, and one
section of ``docs/FORMAT.md``. The writer asks :func:`choose` for the cheapest codec a tensor
allows; the reader asks :func:`get` for the codec an index entry names.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ...errors import BadArgumentError, UnsupportedFormatError
from ..tensors import count_nonzero
from .base import Codec, Encoded, StreamRef, TensorHeader
from .dense import Dense
from .gaps import Gaps
from .planes import Planes
from .shared import Shared

__all__ = ["CODECS", "LOSSLESS", "register", "get", "choose", "encode_all", "pick", "check_min_ratio",
           "check_codecs", "Codec", "Encoded", "StreamRef", "TensorHeader"]

CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Add ``codec`` to the registry under its ``name`` (registration order breaks cost ties)."""
    if not codec.name or codec.name in CODECS:
        raise ValueError(f"codec name {codec.name!r} is empty or taken")
    CODECS[codec.name] = codec
    return codec


register(Dense())
register(Planes())
register(Gaps())
register(Shared())

#: The codecs ``choose`` may pick by default (lossy ones are only used when asked for by name).
LOSSLESS = tuple(name for name, c in CODECS.items() if c.lossless)


def get(name: str, *, file=None, member=None) -> Codec:
    codec = CODECS.get(name) if isinstance(name, str) else None
    if codec is None:
        raise UnsupportedFormatError(f"unknown codec {name!r} (this library reads {sorted(CODECS)})",
                                     rule="tensor.codec", file=file, member=member)
    return codec


def check_min_ratio(min_ratio) -> float:
    """Validate ``min_ratio`` (a finite number >= 1) and return it as a float."""
    try:
        value = float(min_ratio)
    except (TypeError, ValueError):
        raise BadArgumentError(f"`min_ratio` must be a number >= 1. Received: min_ratio={min_ratio!r}",
                               rule="argument.min_ratio") from None
    if not np.isfinite(value) or value < 1.0:
        raise BadArgumentError(f"`min_ratio` must be a finite number >= 1. Received: min_ratio={min_ratio!r}",
                               rule="argument.min_ratio")
    return value


def check_codecs(codecs) -> tuple:
    """``None`` (the lossless ones) or an iterable of registered codec names; ``dense`` is always allowed."""
    if codecs is None:
        return LOSSLESS
    names = [codecs] if isinstance(codecs, str) else list(codecs)
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise BadArgumentError(f"unknown codec(s) {unknown}; registered: {list(CODECS)}", rule="argument.codecs")
    return tuple(dict.fromkeys(["dense", *names]))


def encode_all(array: np.ndarray, *, level: int = 2, codecs=None, max_ratio: int = 1024) -> list:
    """Every allowed codec's encoding of ``array`` (``dense`` first; codecs that do not apply left out)."""
    names = check_codecs(codecs)
    nnz = count_nonzero(array)
    out = []
    for name in names:
        enc = CODECS[name].encode(array, level=level, max_ratio=max_ratio, nnz=nnz)
        if enc is not None:
            enc.nnz = nnz
            out.append(enc)
    return out


def pick(encodings: list, min_ratio: float = 1.0) -> Encoded:
    """The cheapest of ``encodings`` (the first is ``dense``) that the size check allows.

    A codec other than ``dense`` is kept only when it is strictly smaller than the dense bytes
    *and* ``dense_bytes / its bytes >= min_ratio`` (compared as exact fractions). Ties go to the
    codec registered first.
    """
    dense = encodings[0]
    best = dense
    for enc in encodings[1:]:
        if enc.nbytes >= best.nbytes:
            continue
        if enc.nbytes and Fraction(dense.nbytes, enc.nbytes) < Fraction(min_ratio):
            continue
        best = enc
    return best


def choose(array: np.ndarray, *, min_ratio: float = 1.0, level: int = 2, codecs=None,
           max_ratio: int = 1024) -> Encoded:
    """Encode ``array`` with every allowed codec and keep the cheapest, in exact stored bytes
    (see :func:`pick`). ``level`` trades time for size (see :mod:`..streams`)."""
    return pick(encode_all(array, level=level, codecs=codecs, max_ratio=max_ratio), min_ratio)
