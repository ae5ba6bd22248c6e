"""Turning every failure of h5py, libhdf5, NumPy, zlib or zipfile on bad input into our errors."""

from __future__ import annotations

import functools
import zipfile
import zlib

from ..errors import CorruptFileError, ResourceLimitError, SparseCompError

__all__ = ["LIB_ERRORS", "wrap_error", "guarded"]

#: What the libraries under us raise on malformed input.
LIB_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, EOFError, OverflowError,
              UnicodeDecodeError, zipfile.BadZipFile, zlib.error)


def wrap_error(exc: BaseException, file) -> SparseCompError:
    """The :class:`SparseCompError` that stands for a library's exception on ``file``."""
    if isinstance(exc, MemoryError):
        return ResourceLimitError("out of memory while reading", rule="limit.memory", file=file)
    return CorruptFileError(f"unreadable structure ({type(exc).__name__}: {exc})", rule="h5.read", file=file)


def guarded(fn):
    """Decorator for public entry points that take a path first: library errors become ours.

    A ``SparseCompError`` (including ``BadArgumentError``, also a ``ValueError``) passes unchanged;
    anything h5py, libhdf5, NumPy, zlib or zipfile raise on a malformed file becomes a
    ``CorruptFileError`` with rule ``h5.read`` (``MemoryError``: ``ResourceLimitError``), naming
    the file. The fuzzers check that nothing else escapes.
    """
    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except SparseCompError:
            raise
        except (MemoryError, *LIB_ERRORS) as exc:
            raise wrap_error(exc, path) from None
    return wrapper
