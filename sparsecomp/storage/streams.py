"""Byte streams and their codings: ``raw``, ``deflate`` (RFC 1951) or ``zdict``, chosen by exact size.

Every codec turns a tensor into a few byte streams (positions, values, codes...). Each stream is
then stored in whichever coding is smaller, *measured*: ``raw`` (the bytes as they are) or
``deflate`` (raw DEFLATE, no zlib header or checksum: the tensor's SHA-256 covers integrity).
Version 3 adds ``zdict``: raw DEFLATE with the format's preset dictionary ``D``
(:mod:`.zdict`, Keras config and index vocabulary), for text — archive members such as a
model's ``config.json``, and the index itself; binary tensor streams gain nothing from it.
DEFLATE is LZ77 plus Huffman coding, so on the streams this format produces — gap bytes, the
sign/exponent byte plane of floats, weight-sharing codes, all close to memoryless — it acts as a
per-block Huffman coder: ``zlib``'s Huffman-only and RLE strategies are tried beside its default
(LZ77) and the smallest kept (all decode with any inflater).

Decoding is bounded: the decoded size is declared in the index and checked against the limits
before anything is inflated, inflation stops at the declared size, and a stream that would
inflate further, ends early or carries bytes after its end is refused.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import InvalidTensorError, ResourceLimitError
from .zdict import ZDICT

__all__ = ["CODINGS", "codings", "Stream", "code_stream", "code_streams", "decode_stream", "deflate",
           "SAMPLE_BYTES"]

#: Every stream coding; ``zdict`` exists from format version 3 on (:func:`codings`).
CODINGS = ("raw", "deflate", "zdict")
#: Streams longer than this are first tried on a sample; incompressible ones stay raw untried.
SAMPLE_BYTES = 1 << 20
_SAMPLE_PART = 1 << 16
_CHUNK = 1 << 22
#: LZ77 at level 9 (and ``zdict``) is tried on streams up to this many bytes.
_LZ_MAX = 4 << 20


@dataclass(frozen=True)
class Stream:
    """One stored stream: its role in the codec, its coding, the stored bytes and the decoded size.

    ``data`` is any buffer (a raw stream is a view of the caller's array, not a copy).
    """

    role: str
    coding: str
    data: object
    size: int

    @property
    def stored(self) -> int:
        return memoryview(self.data).nbytes


def codings(version: int) -> tuple:
    """The stream codings a file of format ``version`` may use."""
    return CODINGS if version >= 3 else CODINGS[:2]


def deflate(data, strategy: int = zlib.Z_DEFAULT_STRATEGY, level: int = 9, *, zdict: bool = False) -> bytes:
    """Raw DEFLATE of ``data`` (any buffer), streamed in chunks so memory stays bounded; ``zdict``:
    with the preset dictionary ``D`` (coding ``zdict``)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy, ZDICT) if zdict else \
        zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    view = memoryview(data).cast("B")
    parts = [c.compress(view[i:i + _CHUNK]) for i in range(0, len(view), _CHUNK)]
    parts.append(c.flush())
    return b"".join(parts)


def _worth_trying(view: memoryview) -> bool:
    """For a long stream: does deflate shrink an evenly spread sample by at least 2%?"""
    n = len(view)
    if n <= SAMPLE_BYTES:
        return True
    step = n // 16
    sample = b"".join(bytes(view[i:i + _SAMPLE_PART]) for i in range(0, n - _SAMPLE_PART, step))
    return len(deflate(sample, zlib.Z_HUFFMAN_ONLY, 1)) < 0.98 * len(sample)


def code_stream(role: str, data, *, level: int = 2, max_ratio: int = 1024, dictionary: bool = False) -> Stream:
    """Store ``data`` as the smallest of ``raw``, three ``deflate`` strategies (and ``zdict``).

    The strategies (all plain DEFLATE, decoded by any inflater): Huffman alone; RLE (Huffman plus
    runs of one byte: the zero planes of a sparse tensor stored dense); LZ77 at level 9 (zlib's
    default, for text such as archive members). ``level`` 1 stores raw; 3 tries all three on
    everything; 2 (default) tries Huffman on every stream (skipping a long one whose sample does
    not shrink by 2%), RLE where it beats Huffman by 2% on the first 64 KiB, and LZ77 on streams up
    to 4 MiB where, at zlib's fastest level, it beats both by 5% there (on this format's byte
    planes, gap bytes and codes Huffman or RLE is smaller and LZ77 at level 9 up to 80 times
    slower). A deflated stream that would decode more than ``max_ratio`` bytes per stored byte is
    not kept (the reader's :class:`Limits` would refuse it). ``dictionary`` (archive members)
    also tries ``zdict`` (LZ77 at level 9 with the preset dictionary) on streams up to 4 MiB.
    """
    view = memoryview(data).cast("B")
    best = Stream(role, "raw", view, len(view))
    if level <= 1 or len(view) < 8 or (level == 2 and not _worth_trying(view)):
        return best

    def keep(packed: bytes, coding: str = "deflate") -> None:
        nonlocal best
        if len(packed) < best.stored and len(packed) * max_ratio >= len(view):
            best = Stream(role, coding, packed, len(view))

    if level >= 3:
        for strategy, zlevel in ((zlib.Z_HUFFMAN_ONLY, 1), (zlib.Z_RLE, 1), (zlib.Z_DEFAULT_STRATEGY, 9)):
            keep(deflate(view, strategy, zlevel))
    else:
        whole = len(view) <= _SAMPLE_PART
        head = view[:_SAMPLE_PART]
        huffman, rle = deflate(head, zlib.Z_HUFFMAN_ONLY, 1), deflate(head, zlib.Z_RLE, 1)
        lz = len(deflate(head, zlib.Z_DEFAULT_STRATEGY, 1))
        keep(huffman if whole else deflate(view, zlib.Z_HUFFMAN_ONLY, 1))
        if len(rle) < 0.98 * len(huffman):
            keep(rle if whole else deflate(view, zlib.Z_RLE, 1))
        if len(view) <= _LZ_MAX and lz < 0.95 * min(len(huffman), len(rle)):
            keep(deflate(view, zlib.Z_DEFAULT_STRATEGY, 9))
    if dictionary and len(view) <= _LZ_MAX:
        keep(deflate(view, zlib.Z_DEFAULT_STRATEGY, 9, zdict=True), "zdict")
    return best


def code_streams(items, *, max_ratio: int = 1024) -> list:
    """:func:`code_stream` of each ``(role, data, level)``, in order. When they add up to 1 MiB or
    more they are coded on up to four threads (zlib releases the GIL): the bytes are the same."""
    items = list(items)
    total = sum(memoryview(d).nbytes for _, d, _ in items)
    workers = min(len(items), os.cpu_count() or 1, 4)
    if total < (1 << 20) or workers < 2:
        return [code_stream(r, d, level=lv, max_ratio=max_ratio) for r, d, lv in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="sparsecomp-code") as pool:
        return list(pool.map(lambda it: code_stream(it[0], it[1], level=it[2], max_ratio=max_ratio), items))


def decode_stream(stored, coding: str, size: int, *, max_ratio: int, member=None, file=None) -> bytes:
    """The decoded bytes of one stream, exactly ``size`` of them, or an error naming what is wrong."""
    def fail(cls, msg, rule):
        raise cls(msg, rule=rule, member=member, file=file)

    view = memoryview(stored).cast("B")
    if coding == "raw":
        if len(view) != size:
            fail(InvalidTensorError, f"raw stream stores {len(view)} bytes but declares {size}", "stream.size")
        return view
    if coding not in CODINGS:
        fail(InvalidTensorError, f"unknown stream coding {coding!r}", "stream.coding")
    if size > len(view) * max_ratio:
        fail(ResourceLimitError, f"stream declares {size} bytes from {len(view)} stored (ratio above "
             f"{max_ratio})", "limit.compression")
    d = zlib.decompressobj(-15, zdict=ZDICT) if coding == "zdict" else zlib.decompressobj(-15)
    try:
        # zlib reads a max_length of 0 as "no limit": a stream declaring 0 bytes is not inflated at all
        out = d.decompress(view, size) if size else b""
        rest = d.unconsumed_tail if size else view
        # output stopped at the declared size: what input is left may only end the stream
        if rest and d.decompress(rest, 1):
            fail(InvalidTensorError, "deflate stream inflates past its declared size", "stream.inflate")
    except zlib.error as exc:
        fail(InvalidTensorError, f"corrupt deflate stream ({exc})", "stream.deflate")
    if len(out) < size:
        fail(InvalidTensorError, f"deflate stream ends after {len(out)} of {size} declared bytes", "stream.truncated")
    if not d.eof or d.unused_data or d.unconsumed_tail:
        fail(InvalidTensorError, "deflate stream does not end where its stored bytes end", "stream.trailing")
    return out
