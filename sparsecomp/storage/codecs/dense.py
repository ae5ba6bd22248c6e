"""``dense``: the tensor's bytes as they are (little-endian, C order). Always applies.

One stream (role ``values``), always raw: this is the cost every other codec must beat, and the
fastest thing to write and read.
"""

from __future__ import annotations

import numpy as np

from ..streams import Stream
from .base import Codec, Encoded, TensorHeader

__all__ = ["Dense"]


class Dense(Codec):
    name = "dense"

    def encode(self, array, *, level, max_ratio, nnz=None):
        view = memoryview(array.reshape(-1).view(np.uint8)) if array.ndim else memoryview(array.reshape(1).view(np.uint8))
        return Encoded(self.name, {}, [Stream("values", "raw", view, view.nbytes)], nnz=nnz or 0)

    def roles(self, header: TensorHeader) -> list[str]:
        return ["values"]

    def check(self, header: TensorHeader) -> None:
        if header.params:
            header.fail(f"dense takes no parameters, got {sorted(header.params)}", "dense.params")
        if header.streams[0].coding != "raw":
            header.fail("a dense stream is stored raw", "dense.streams")
        self.expect_sizes(header, [header.size * header.dtype.itemsize])

    def decode(self, header: TensorHeader, data: list) -> np.ndarray:
        out = np.frombuffer(data[0], dtype=header.dtype)
        if not out.flags.writeable:
            out = out.copy()
        return out.reshape(header.shape)
