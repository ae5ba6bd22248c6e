"""Atomic output: a temporary file beside the destination, fsynced, renamed over it.

A writer killed at any moment leaves the old file or the new one, never a mixture; the
temporaries of killed writers are removed by the next write to the same destination.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import WriteError

__all__ = ["atomic_output", "TMP_MARK"]

TMP_MARK = ".sparsecomp-tmp-"


def _clean_stale_temporaries(directory: Path, target_name: str) -> None:
    """Remove temporary files left by a writer that was killed (its process no longer exists)."""
    pattern = f".{target_name}{TMP_MARK}"
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(pattern):
            continue
        try:
            pid = int(entry.name[len(pattern):].split("-")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            with contextlib.suppress(OSError):
                entry.unlink()


@contextlib.contextmanager
def atomic_output(dst):
    """Yield a temporary path beside ``dst``; on success it replaces ``dst`` atomically.

    The temporary file is flushed and fsynced, renamed over ``dst``, and the directory is fsynced.
    On any error the temporary file is removed and ``dst`` (if it existed) is untouched.
    """
    dst = Path(dst)
    directory = dst.parent if str(dst.parent) else Path(".")
    if not directory.is_dir():
        raise WriteError(f"the output directory {str(directory)!r} does not exist", rule="write.dir",
                         file=dst)
    if dst.is_dir():
        raise WriteError("the output path is a directory", rule="write.isdir", file=dst)
    _clean_stale_temporaries(directory, dst.name)
    tmp = directory / f".{dst.name}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise WriteError(f"could not write the output: {exc}", rule="write.os", file=dst) from exc
        raise
