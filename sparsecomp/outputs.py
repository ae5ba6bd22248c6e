"""The command line's output policy, one for every verb: each output is checked before any work
(its directory exists and is writable, it is not an input), and an existing output is replaced only
with ``--force``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadArgumentError, WriteError

__all__ = ["check_outputs"]


def check_outputs(outputs, *, force: bool, inputs=()) -> None:
    """Refuse, before any work, an output that cannot be written: its directory missing or not
    writable, the same file as an input, or already there without ``force``. ``outputs`` holds
    ``(label, path, is_dir)``; a folder output may exist empty."""
    ins = {Path(p).resolve() for p in inputs if p}
    for label, path, is_dir in outputs:
        if not path:
            continue
        p = Path(path)
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise WriteError(f"the directory of {label} {str(p)!r} does not exist", rule="write.dir", file=p)
        if not os.access(parent, os.W_OK):
            raise WriteError(f"the directory of {label} {str(p)!r} is not writable", rule="write.dir", file=p)
        if p.resolve() in ins:
            raise BadArgumentError(f"{label} {str(p)!r} is the input", rule="argument.same_file", file=p)
        if p.exists() and not force and not (is_dir and p.is_dir() and not any(p.iterdir())):
            raise WriteError(f"{label} {str(p)!r} exists; pass --force to replace it", rule="write.exists", file=p)
        if is_dir and p.exists() and not p.is_dir():
            raise WriteError(f"{label} {str(p)!r} is not a directory", rule="write.isdir", file=p)
