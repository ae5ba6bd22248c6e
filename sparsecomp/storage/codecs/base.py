"""What every codec is: exact encoding to byte streams, header checks, bounded decoding.

A codec turns one tensor into a few byte streams plus a small JSON-able ``params`` dict, knows the
exact byte cost of what it wrote (the sum of its streams, each stored raw or deflated, whichever
is smaller), checks a file's claims about those streams *before* anything is decoded, and
decodes. It knows nothing of HDF5: the writer places the streams, the reader fetches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import InvalidTensorError
from ..streams import Stream, code_stream, code_streams

__all__ = ["Codec", "Encoded", "StreamRef", "TensorHeader"]


@dataclass(frozen=True)
class StreamRef:
    """A stream as the index declares it: coding, stored bytes, decoded bytes (and where)."""

    coding: str
    stored: int
    size: int
    blob: int = 0
    offset: int = 0


@dataclass(frozen=True)
class TensorHeader:
    """One tensor's entry in the index, already checked for types and ranges by the reader."""

    path: str
    shape: tuple
    dtype: np.dtype
    codec: str
    params: dict
    streams: tuple = ()            # StreamRef, in the codec's order
    nnz: int = 0                   # entries whose bit pattern is not zero
    file: str | None = None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    def fail(self, msg: str, rule: str):
        raise InvalidTensorError(msg, rule=rule, member=self.path, file=self.file)


@dataclass
class Encoded:
    """What a codec produced: its params, its streams in order, and what they cost in bytes."""

    codec: str
    params: dict
    streams: list = field(default_factory=list)      # Stream
    nnz: int = 0

    @property
    def nbytes(self) -> int:
        return sum(s.stored for s in self.streams)

    def by_role(self) -> dict:
        out: dict[str, int] = {}
        for s in self.streams:
            out[s.role] = out.get(s.role, 0) + s.stored
        return out


class Codec:
    """Base class: subclasses set ``name`` and implement the four methods.

    ``lossless`` codecs decode to exactly the encoded bits; a lossy one (weight sharing) is only
    used when asked for, and stores what the caller's model already holds.
    """

    name = ""
    lossless = True

    def encode(self, array: np.ndarray, *, level: int, max_ratio: int) -> Encoded | None:
        """Encode ``array`` (C-contiguous, storable dtype); ``None`` when the codec does not apply."""
        raise NotImplementedError

    def roles(self, header: TensorHeader) -> list[str]:
        """The roles of the streams this header must list, in order (checked by the reader)."""
        raise NotImplementedError

    def check(self, header: TensorHeader) -> None:
        """Refuse a header whose params or declared stream sizes cannot describe its tensor."""
        raise NotImplementedError

    def decode(self, header: TensorHeader, data: list) -> np.ndarray:
        """The tensor, from its decoded streams (``memoryview``/bytes, each of its declared size)."""
        raise NotImplementedError

    @staticmethod
    def stream(role: str, data, level: int, max_ratio: int) -> Stream:
        return code_stream(role, data, level=level, max_ratio=max_ratio)

    @staticmethod
    def streams(items, max_ratio: int) -> list:
        """Several ``(role, data, level)`` streams coded at once (in parallel when they are big)."""
        return code_streams(items, max_ratio=max_ratio)

    # -- shared checks ------------------------------------------------------------------------

    @staticmethod
    def int_param(header: TensorHeader, key: str, lo: int, hi: int) -> int:
        v = header.params.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            header.fail(f"{header.codec} parameter {key!r} must be an integer in [{lo}, {hi}], not {v!r}",
                        f"{header.codec}.params")
        return v

    @staticmethod
    def expect_sizes(header: TensorHeader, sizes: list[int]) -> None:
        got = [s.size for s in header.streams]
        if got != sizes:
            header.fail(f"{header.codec} streams declare {got} decoded bytes; the tensor needs {sizes}",
                        f"{header.codec}.streams")
