"""``gaps``: the positions of the non-zeros as gaps between them, and the non-zero values.

Positions: the tensor is read in ``order`` — ``"row"`` (C order) or ``"col"`` (C order of the
transposed 2-D view ``(cols, rows)``, i.e. output unit by output unit for a Dense kernel) — and the
gap before each non-zero (the zeros since the previous one) is written as bytes: ``g`` becomes
``g // 255`` filler bytes ``255`` ("255 more zeros") followed by ``g % 255`` (Deep Compression's
relative indices with filler entries, with fillers that carry no value). Zeros after the last
non-zero are implied by the shape. The stream (role ``positions``) is then stored raw or deflated:
on pruned layers a gap byte deflates to 5-6 bits. Values: the non-zeros in the same order, as byte
planes (:mod:`.values`). Whichever order is smaller is kept (``params["order"]``).
"""

from __future__ import annotations

import numpy as np

from ..tensors import bits_view, count_nonzero, view_shape_2d
from .base import Codec, Encoded, TensorHeader
from .planes import CODED_VALUES_MAX
from .values import join_planes

__all__ = ["Gaps", "gap_symbols", "positions_from_symbols", "orders_for", "blocks", "scan"]

_BLOCK = 1 << 20       # elements per block: bounds the temporaries of VGG-sized layers
_FILL = 255


def gap_symbols(positions: np.ndarray, last: int) -> np.ndarray:
    """Gap bytes for ascending ``positions`` (int64), the previous non-zero being at ``last``."""
    if not len(positions):
        return np.zeros(0, np.uint8)
    g = np.empty(len(positions), np.int64)
    g[0] = positions[0] - last
    np.subtract(positions[1:], positions[:-1], out=g[1:])
    g -= 1
    if int(g.max()) < _FILL:
        return g.astype(np.uint8)        # no fillers: one byte per non-zero
    reps = g // _FILL
    out_len = len(g) + int(reps.sum())
    out = np.full(out_len, _FILL, np.uint8)
    ends = np.cumsum(reps + 1) - 1
    out[ends] = (g % _FILL).astype(np.uint8)
    return out


def positions_from_symbols(symbols: np.ndarray, carry: int):
    """``(positions, new carry)``: the inverse of :func:`gap_symbols`, block by block.

    ``carry`` is the running sum of ``symbol + is_final`` over the blocks before (0 at the start);
    the position of a non-zero is that running sum at its final symbol, minus one.
    """
    final = symbols != _FILL
    steps = symbols.astype(np.int64) + final
    cs = np.cumsum(steps) + carry
    return cs[final] - 1, (int(cs[-1]) if len(cs) else carry)


def orders_for(array, level: int) -> tuple:
    """The scan orders worth trying: column order too for a real matrix (all of them at level 3,
    up to 1 M elements at level 2: the transposed scan doubles the time, and the runs it finds
    are the dead units that :func:`sparsecomp.remove_dead_units` cuts out anyway)."""
    if array.ndim >= 2 and min(view_shape_2d(array.shape)) > 1 and (level >= 3 or array.size <= (1 << 20)):
        return ("row", "col")
    return ("row",)


def blocks(array, order: str):
    """The tensor's bit patterns in ``order``, as consecutive flat blocks (bounded memory)."""
    bits = bits_view(array).reshape(-1)
    if order == "row":
        for i in range(0, bits.size, _BLOCK):
            yield bits[i:i + _BLOCK]
        return
    rows, cols = view_shape_2d(array.shape)
    b2 = bits.reshape(rows, cols)
    step = max(1, _BLOCK // max(rows, 1))
    for c in range(0, cols, step):
        yield np.ascontiguousarray(b2[:, c:c + step].T).reshape(-1)


def scan(array, order: str, nnz: int | None = None, planes: bool = False):
    """``(gap symbols, non-zeros)`` of ``array`` read in ``order``.

    The non-zeros are their bit patterns, or with ``planes`` their byte planes (``(itemsize, nnz)``
    uint8, as :func:`.values.split_planes` makes them), filled block by block so that no second
    copy of them is ever held. ``nnz``, when known, lets the output be allocated once.
    """
    bits_dt = bits_view(array).dtype
    if nnz is None:
        nnz = int(np.count_nonzero(bits_view(array)))
    size = array.dtype.itemsize
    out = np.empty((size, nnz), np.uint8) if planes else np.empty(nnz, bits_dt)
    syms, last, base, done = [], -1, 0, 0
    for block in blocks(array, order):
        pos = np.flatnonzero(block != 0)      # 4x faster than on the integers themselves
        k = len(pos)
        if done + k > nnz:
            raise ValueError("the tensor changed while it was being encoded")
        syms.append(gap_symbols(pos + base, last))
        if planes:
            out[:, done:done + k] = block[pos].view(np.uint8).reshape(k, size).T
        else:
            out[done:done + k] = block[pos]
        done += k
        if k:
            last = int(pos[-1]) + base
        base += block.size
    if done != nnz:
        raise ValueError("the tensor changed while it was being encoded")
    symbols = np.concatenate(syms) if syms else np.zeros(0, np.uint8)
    return symbols, out


class Gaps(Codec):
    name = "gaps"

    def _encode_order(self, array, order, level, max_ratio, nnz):
        size = array.dtype.itemsize
        symbols, values = scan(array, order, nnz, planes=size > 1)
        value_level = level if (level >= 3 or values.nbytes <= CODED_VALUES_MAX) else 1
        items = [("positions", symbols, level)]
        if size > 1:
            items += [("values", values[j], value_level) for j in range(size)]
        else:
            items.append(("values", values.view(np.uint8), value_level))
        streams = self.streams(items, max_ratio)
        return Encoded(self.name, {"order": order}, streams, nnz=nnz)

    def encode(self, array, *, level, max_ratio, nnz=None):
        if array.ndim == 0 or array.size == 0:
            return None
        if nnz is None:
            nnz = count_nonzero(array)
        if level <= 1 and nnz * (array.dtype.itemsize + 1) >= array.nbytes:
            return None          # raw positions and values would cost at least the dense bytes
        if level <= 2 and nnz * array.dtype.itemsize > CODED_VALUES_MAX \
                and nnz * array.dtype.itemsize >= array.nbytes:
            return None          # raw values alone already cost the dense bytes
        best = None
        for order in orders_for(array, level):
            enc = self._encode_order(array, order, level, max_ratio, nnz)
            if best is None or enc.nbytes < best.nbytes:
                best = enc
        return best

    def roles(self, header: TensorHeader) -> list[str]:
        return ["positions"] + ["values"] * (header.dtype.itemsize if header.dtype.itemsize > 1 else 1)

    def check(self, header: TensorHeader) -> None:
        p = header.params
        if set(p) != {"order"} or p.get("order") not in ("row", "col"):
            header.fail(f"gaps takes one parameter, order ('row' or 'col'); got {p!r}", "gaps.params")
        if p["order"] == "col" and len(header.shape) < 2:
            header.fail("column order needs a tensor of rank >= 2", "gaps.params")
        nnz = header.nnz
        planes = header.dtype.itemsize if header.dtype.itemsize > 1 else 1
        width = nnz if planes > 1 else nnz * header.dtype.itemsize
        self.expect_sizes(header, [header.streams[0].size] + [width] * planes)
        n_sym = header.streams[0].size
        if not nnz <= header.size or not nnz <= n_sym <= nnz + header.size // _FILL:
            header.fail(f"{n_sym} gap bytes cannot place {nnz} non-zeros in {header.size} entries",
                        "gaps.streams")

    def decode(self, header: TensorHeader, data: list) -> np.ndarray:
        nnz = header.nnz
        symbols = np.frombuffer(data[0], np.uint8)
        if len(symbols) and symbols[-1] == _FILL:
            header.fail("the gap stream ends with a filler byte", "gaps.trailing")
        bits_dt = bits_view(np.zeros(0, header.dtype)).dtype
        flat = np.zeros(header.size, bits_dt)
        values = bits_view(join_planes(data[1:], nnz, header.dtype))
        carry, done = 0, 0
        for i in range(0, len(symbols), _BLOCK):
            pos, carry = positions_from_symbols(symbols[i:i + _BLOCK], carry)
            if done + len(pos) > nnz:
                header.fail(f"the gap stream places more than {nnz} non-zeros", "gaps.count")
            if len(pos) and int(pos[-1]) >= header.size:
                header.fail(f"a gap runs past the end of the tensor ({header.size} entries)", "gaps.range")
            flat[pos] = values[done:done + len(pos)]
            done += len(pos)
        if done != nnz:
            header.fail(f"the gap stream places {done} non-zeros; the header says {nnz}", "gaps.count")
        if np.count_nonzero(values) != nnz:
            header.fail("a stored value is zero (zeros are never stored)", "gaps.values")
        out = flat.view(header.dtype)
        if header.params["order"] == "col":
            rows, cols = view_shape_2d(header.shape)
            out = np.ascontiguousarray(out.reshape(cols, rows).T)
        return out.reshape(header.shape)
