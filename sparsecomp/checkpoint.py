"""Checkpoints of a pruning run: enough to continue it exactly where it stood.

A checkpoint is a folder with two files, written atomically, in this order:

- ``state-<n>.npz``: the arrays (every variable of the working model, masks, optimizer
  variables, a method's own arrays), NumPy's format, no pickles;
- ``checkpoint.json``: the method, its settings, the fine-tuning settings, fingerprints of the
  model and the data it started from, the schedule's state, the history so far, and the name and
  SHA-256 of the ``.npz`` it belongs to.

The JSON is written last and names its arrays by hash, so a run killed at any moment leaves the
previous checkpoint or the new one, never a mixture; older ``.npz`` files are removed after the
JSON that replaced them is in place. Only the chief of a multi-worker run writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .errors import BadArgumentError, CorruptFileError
from .storage import atomic_output

__all__ = ["write_checkpoint", "read_checkpoint", "fingerprint_model", "fingerprint_arrays", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.json"
FORMAT = "sparsecomp-checkpoint"
VERSION = 1


def fingerprint_model(model) -> str:
    """SHA-256 of a model's config and weights: which model a run started from."""
    h = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(memoryview(w.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def fingerprint_arrays(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def write_checkpoint(directory, meta: dict, arrays: dict) -> Path:
    """Write ``arrays`` then ``meta`` into ``directory`` (created if missing); returns the JSON path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"state-{int(meta.get('counter', 0)):06d}.npz"
    with atomic_output(d / name) as tmp:
        tmp.write_bytes(data)
    body = dict(meta, format=FORMAT, version=VERSION, arrays=name, arrays_sha256=digest)
    with atomic_output(d / CHECKPOINT_FILE) as tmp:
        tmp.write_text(json.dumps(body, indent=1, default=float))
    for old in d.glob("state-*.npz"):
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return d / CHECKPOINT_FILE


def read_checkpoint(directory) -> tuple[dict, dict]:
    """``(meta, arrays)`` of the checkpoint in ``directory``, checked (JSON, hash of the arrays)."""
    d = Path(directory)
    p = d / CHECKPOINT_FILE
    if not p.is_file():
        raise BadArgumentError(f"no checkpoint in {str(d)!r} (expected {CHECKPOINT_FILE})", rule="checkpoint.missing",
                               file=d)
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"unreadable checkpoint ({exc})", rule="checkpoint.corrupt", file=p) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CorruptFileError("not a sparsecomp checkpoint of a version this library reads", rule="checkpoint.corrupt",
                               file=p)
    name = meta.get("arrays")
    if not isinstance(name, str) or os.sep in name or not (d / name).is_file():
        raise CorruptFileError(f"the checkpoint's arrays {name!r} are missing", rule="checkpoint.corrupt", file=p)
    data = (d / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("arrays_sha256"):
        raise CorruptFileError("the checkpoint's arrays do not match its hash", rule="checkpoint.corrupt", file=d / name)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays
