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
from .planes import CODED_VALUES_MAX, Planes
from .shared import Shared

__all__ = ["CODECS", "LOSSLESS", "register", "get", "choose", "encode_all", "pick", "estimate", "sample_of",
           "SAMPLED_BYTES", "SAMPLED_MIN_SAVING", "check_min_ratio", "check_codecs", "Codec", "Encoded",
           "StreamRef", "TensorHeader"]

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


def _better(enc: Encoded, best: Encoded, dense_bytes: int, min_ratio: float) -> bool:
    """The size check's rule: strictly smaller than ``best``, and at least ``min_ratio`` times
    smaller than dense (compared as exact fractions)."""
    if enc.nbytes >= best.nbytes:
        return False
    return not enc.nbytes or Fraction(dense_bytes, enc.nbytes) >= Fraction(min_ratio)


def pick(encodings: list, min_ratio: float = 1.0) -> Encoded:
    """The cheapest of ``encodings`` (the first is ``dense``) that the size check allows.

    A codec other than ``dense`` is kept only when it is strictly smaller than the dense bytes
    *and* ``dense_bytes / its bytes >= min_ratio`` (compared as exact fractions). Ties go to the
    codec registered first.
    """
    dense = encodings[0]
    best = dense
    for enc in encodings[1:]:
        if _better(enc, best, dense.nbytes, min_ratio):
            best = enc
    return best


#: At level 2, a tensor of at least this many bytes is first tried on a sample (:func:`sample_of`).
SAMPLED_BYTES = 4 << 20
#: ... and encoded by a codec other than dense only where the sample says it saves this fraction.
SAMPLED_MIN_SAVING = 0.25
_SAMPLE_CHUNKS = 16
_SAMPLE_CHUNK = 2048


def sample_of(array: np.ndarray) -> np.ndarray:
    """A 1-D sample of ``array``: 16 runs of 2,048 consecutive entries (C order), evenly spread
    (the whole tensor, flattened, when it has no more entries than that)."""
    flat = array.reshape(-1)
    if flat.size <= _SAMPLE_CHUNKS * _SAMPLE_CHUNK:
        return flat.copy()
    step = flat.size // _SAMPLE_CHUNKS
    return np.concatenate([flat[i * step:i * step + _SAMPLE_CHUNK] for i in range(_SAMPLE_CHUNKS)])


def estimate(array: np.ndarray, *, level: int = 2, codecs=None, max_ratio: int = 1024) -> dict:
    """Each allowed codec's stored bytes for ``array`` projected from its cost on :func:`sample_of`
    (``dense`` exact; codecs that do not apply to the sample left out)."""
    names = check_codecs(codecs)
    sample = sample_of(array)
    nnz = count_nonzero(sample)
    scale = array.size / sample.size
    out = {"dense": array.nbytes}
    for name in names[1:]:
        enc = CODECS[name].encode(sample, level=level, max_ratio=max_ratio, nnz=nnz)
        if enc is not None:
            out[name] = enc.nbytes * scale
    return out


def choose(array: np.ndarray, *, min_ratio: float = 1.0, level: int = 2, codecs=None,
           max_ratio: int = 1024) -> Encoded:
    """The cheapest allowed encoding of ``array``, in exact stored bytes (see :func:`pick`).

    Codecs are tried one after another and only the best encoding so far is kept, so memory stays
    at the tensor plus two encodings. ``level`` trades time for size (see :mod:`..streams`): at
    level 2 a tensor of :data:`SAMPLED_BYTES` or more is tried on a sample first, and only the
    codecs whose projection saves at least :data:`SAMPLED_MIN_SAVING` of the dense bytes are run
    on the whole tensor, best projection first, stopping at the first that the size check keeps
    (coding a VGG-sized dense layer costs more time than writing the 15% it would save).
    """
    names = check_codecs(codecs)
    nnz = count_nonzero(array)
    best = CODECS["dense"].encode(array, level=level, max_ratio=max_ratio, nnz=nnz)
    best.nnz = nnz
    if level == 2 and nnz == array.size and "planes" in names and array.dtype.itemsize > 1 \
            and array.size >= 16 and array.nbytes <= CODED_VALUES_MAX:
        # no zeros: gap positions say nothing, and ``planes`` stores the same value planes for less
        names = tuple(n for n in names if n != "gaps")
    sampled = level == 2 and array.nbytes >= SAMPLED_BYTES
    if sampled:
        guess = estimate(array, level=level, codecs=names, max_ratio=max_ratio)
        limit = min((1 - SAMPLED_MIN_SAVING) * array.nbytes, array.nbytes / min_ratio)
        names = sorted((n for n in guess if n != "dense" and guess[n] <= limit),
                       key=lambda n: (guess[n], list(CODECS).index(n)))
    else:
        names = names[1:]
    for name in names:
        enc = CODECS[name].encode(array, level=level, max_ratio=max_ratio, nnz=nnz)
        if enc is None:
            continue
        enc.nnz = nnz
        if _better(enc, best, array.nbytes, min_ratio):
            best = enc
            if sampled:
                break
        del enc
    return best
