"""``planes``: a dense tensor's bytes split into byte planes, each stored raw or deflated.

Lossless. For trained float32 weights the sign/exponent plane deflates to a third of its size
and the rest stays near raw: about 15% off a dense tensor (``benchmarks/codecs.py``). Streams:
``itemsize`` planes of role ``values`` (see :mod:`.values`), each of ``size`` bytes.
"""

from __future__ import annotations

import numpy as np

from .base import Codec, Encoded, TensorHeader
from .values import join_planes, plane_streams

__all__ = ["Planes", "CODED_VALUES_MAX"]

#: At level 2, value streams longer than this are stored raw (coding them costs more time than
#: writing them, which would make saving slower than Keras' own ``save`` on VGG-sized layers).
CODED_VALUES_MAX = 64 << 20


class Planes(Codec):
    name = "planes"

    def encode(self, array, *, level, max_ratio, nnz=None):
        if array.dtype.itemsize == 1 or array.size < 16 or level <= 1 or \
                (level == 2 and array.nbytes > CODED_VALUES_MAX):
            return None          # nothing to gain over dense
        return Encoded(self.name, {}, plane_streams(self, array, level, max_ratio), nnz=nnz or 0)

    def roles(self, header: TensorHeader) -> list[str]:
        return ["values"] * header.dtype.itemsize

    def check(self, header: TensorHeader) -> None:
        if header.params:
            header.fail(f"planes takes no parameters, got {sorted(header.params)}", "planes.params")
        if header.dtype.itemsize == 1:
            header.fail("planes needs values of more than one byte", "planes.params")
        self.expect_sizes(header, [header.size] * header.dtype.itemsize)

    def decode(self, header: TensorHeader, data: list) -> np.ndarray:
        return join_planes(data, header.size, header.dtype).reshape(header.shape)
