"""``shared``: a tensor whose non-zeros take few distinct values — a codebook, codes, positions.

What weight sharing (Deep Compression's stage two, :func:`sparsecomp.quantize`) leaves: each
layer's non-zeros replaced by one of ``k <= 256`` shared values. Stored exactly (the codec is
lossless: decoding gives back the bits the model holds):

- ``codebook``: the ``k`` distinct non-zero values, ascending by bit pattern, raw (``k * itemsize``
  bytes);
- ``positions``: the gap bytes of :mod:`.gaps`, in ``params["order"]``;
- ``codes``: one byte per non-zero, in the same order, the index of its value in the codebook —
  stored raw or deflated (Huffman-coded, in effect: with 5-bit codebooks a code costs 3-4 bits).

``params``: ``{"order": "row" | "col", "k": k}``. The codec applies only when it can win: at most
256 distinct non-zero values, fewer than half the non-zeros.
"""

from __future__ import annotations

import numpy as np

from ..tensors import bits_view, view_shape_2d
from .base import Codec, Encoded, TensorHeader
from .gaps import orders_for, positions_from_symbols, scan

__all__ = ["Shared", "MAX_CODEBOOK"]

MAX_CODEBOOK = 256
_SAMPLE = 1 << 16
_BLOCK = 1 << 22


class Shared(Codec):
    name = "shared"

    def encode(self, array, *, level, max_ratio, nnz=None):
        if array.ndim == 0 or array.size == 0:
            return None
        bits = bits_view(array).reshape(-1)
        sample = bits[:: max(1, bits.size // _SAMPLE)]
        if len(np.unique(sample)) > MAX_CODEBOOK + 1:
            return None                   # a sample already has too many values (zero among them)
        nz = bits[np.flatnonzero(bits != 0)]
        if len(nz) < 4:
            return None
        book = np.unique(nz)
        if len(book) > MAX_CODEBOOK or len(book) * 2 > len(nz):
            return None
        best = None
        for order in orders_for(array, level):
            sym, ordered = scan(array, order, len(nz))
            idx = np.searchsorted(book, ordered).astype(np.uint8)
            streams = self.streams([("codebook", book.view(array.dtype).view(np.uint8), 1),
                                    ("positions", sym, level), ("codes", idx, level)], max_ratio)
            enc = Encoded(self.name, {"order": order, "k": int(len(book))}, streams, nnz=int(len(nz)))
            if best is None or enc.nbytes < best.nbytes:
                best = enc
        return best

    def roles(self, header: TensorHeader) -> list[str]:
        return ["codebook", "positions", "codes"]

    def check(self, header: TensorHeader) -> None:
        p = header.params
        if set(p) != {"order", "k"} or p.get("order") not in ("row", "col"):
            header.fail(f"shared takes order ('row' or 'col') and k; got {p!r}", "shared.params")
        if p["order"] == "col" and len(header.shape) < 2:
            header.fail("column order needs a tensor of rank >= 2", "shared.params")
        k = self.int_param(header, "k", 1, MAX_CODEBOOK)
        nnz = header.nnz
        if not k <= nnz <= header.size:
            header.fail(f"{nnz} non-zeros cannot use {k} distinct values in {header.size} entries", "shared.streams")
        book, pos, codes = header.streams
        if book.coding != "raw" or book.size != k * header.dtype.itemsize:
            header.fail(f"the codebook must be {k} raw values ({k * header.dtype.itemsize} bytes)", "shared.codebook")
        if codes.size != nnz:
            header.fail(f"{codes.size} codes for {nnz} non-zeros", "shared.streams")
        if not nnz <= pos.size <= nnz + header.size // 255:
            header.fail(f"{pos.size} gap bytes cannot place {nnz} non-zeros in {header.size} entries",
                        "shared.streams")

    def decode(self, header: TensorHeader, data: list) -> np.ndarray:
        nnz, k = header.nnz, header.params["k"]
        book = bits_view(np.frombuffer(data[0], header.dtype))
        if np.any(book == 0) or np.any(book[1:] <= book[:-1]):
            header.fail("the codebook must hold distinct non-zero values in ascending bit order", "shared.codebook")
        symbols = np.frombuffer(data[1], np.uint8)
        codes = np.frombuffer(data[2], np.uint8)
        if len(codes) and int(codes.max()) >= k:
            header.fail(f"a code points past the codebook's {k} values (max {int(codes.max())})", "shared.codes")
        if len(symbols) and symbols[-1] == 255:
            header.fail("the gap stream ends with a filler byte", "shared.trailing")
        flat = np.zeros(header.size, book.dtype)
        carry, done = 0, 0
        for i in range(0, len(symbols), _BLOCK):
            pos, carry = positions_from_symbols(symbols[i:i + _BLOCK], carry)
            if done + len(pos) > nnz:
                header.fail(f"the gap stream places more than {nnz} non-zeros", "shared.count")
            if len(pos) and int(pos[-1]) >= header.size:
                header.fail(f"a gap runs past the end of the tensor ({header.size} entries)", "shared.range")
            flat[pos] = book[codes[done:done + len(pos)]]
            done += len(pos)
        if done != nnz:
            header.fail(f"the gap stream places {done} non-zeros; the header says {nnz}", "shared.count")
        out = flat.view(header.dtype)
        if header.params["order"] == "col":
            rows, cols = view_shape_2d(header.shape)
            out = np.ascontiguousarray(out.reshape(cols, rows).T)
        return out.reshape(header.shape)
