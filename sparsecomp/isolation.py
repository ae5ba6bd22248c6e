"""Parsing untrusted files in a separate process with memory and time limits.

``verify(path, isolate=True)`` and ``inspect(path, isolate=True)`` run here: a child Python
process with an address-space limit (``RLIMIT_AS``) and a CPU-time limit does the work and sends
back JSON; a crash, a hang or a blown memory budget in libhdf5 then costs the child, never the
caller. Errors come back as the same :class:`~sparsecomp.errors.SparseCompError` subclasses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from . import errors
from .errors import CorruptFileError, ResourceLimitError, SparseCompError

__all__ = ["run_isolated"]

_OPS = ("verify", "inspect")


def _default_memory(path: Path) -> int:
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        phys = 8 << 30
    size = path.stat().st_size if path.exists() else 0
    return int(min(phys // 2, (3 << 30) + 4 * size))


def run_isolated(op: str, path, *, limits=None, memory_bytes: int | None = None, timeout: float = 120.0):
    """Run ``verify`` or ``inspect`` (without the Keras baseline) on ``path`` in a limited child."""
    from .storage import StorageReport
    if op not in _OPS:
        raise errors.BadArgumentError(f"`op` must be one of {_OPS}. Received: {op!r}", rule="argument.op")
    path = Path(path)
    memory = int(memory_bytes or _default_memory(path))
    payload = json.dumps({"op": op, "path": str(path),
                          "limits": dataclasses.asdict(limits) if limits is not None else None})

    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run([sys.executable, "-m", "sparsecomp.isolation"], input=payload, capture_output=True,
                              text=True, timeout=timeout, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired:
        raise ResourceLimitError(f"parsing took longer than {timeout:g} s", rule="limit.time", file=path) from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        oom = ("MemoryError", "Cannot allocate memory", "cannot allocate memory", "failed to map", "bad_alloc",
               "Memory allocation")
        if any(m in proc.stderr for m in oom) or proc.returncode in (-9, -6):
            raise ResourceLimitError(f"parsing needed more than {memory} bytes of memory (or was killed)",
                                     rule="limit.memory", file=path)
        raise CorruptFileError(f"the isolated parser died (exit {proc.returncode})", rule="isolation.crash",
                               file=path)
    result = json.loads(lines[-1])
    if result.get("ok"):
        return StorageReport.from_dict(result["report"])
    cls = getattr(errors, result.get("error", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, SparseCompError)):
        cls = CorruptFileError
    raise cls(result.get("message", "error in the isolated parser"), rule=result.get("rule"),
              file=result.get("file"), member=result.get("member"))


def _child() -> int:
    req = json.loads(sys.stdin.read())
    from .storage import Limits, inspect, verify
    limits = Limits(**req["limits"]) if req.get("limits") else None
    try:
        if req["op"] == "verify":
            rep = verify(req["path"], limits=limits)
        else:
            rep = inspect(req["path"], limits=limits)
        out = {"ok": True, "report": rep.to_dict()}
    except SparseCompError as exc:
        out = {"ok": False, "error": type(exc).__name__, "rule": exc.rule, "message": exc.message,
               "file": exc.file, "member": exc.member}
    except MemoryError:
        out = {"ok": False, "error": "ResourceLimitError", "rule": "limit.memory",
               "message": "out of memory while parsing", "file": req["path"], "member": None}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child())
