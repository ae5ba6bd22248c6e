"""Fuzz the reader with atheris (coverage-guided), from raw bytes or by mutating valid files.

    python tests/fuzz/fuzz_reader.py raw    -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py rawh5  -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py mutate -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048

``raw`` feeds the bytes as they are, ``rawh5`` behind a valid HDF5 signature (so the superblock
and libhdf5's parsing are reached), ``mutate`` mutates valid files of every kind. Every input is
written to a file and given to ``verify``, ``inspect`` and ``unpack``. The only
acceptable outcomes are success or a ``SparseCompError``; any other exception escaping is a
crash (atheris stops and saves the input). libFuzzer's ``-timeout`` turns a hang into a crash
and ``-rss_limit_mb`` an unbounded allocation. A *silent corruption* is a file that passes
``verify`` while one of its tensors decodes to other bytes than the checksum it carries says;
it is counted and also raised. Counts go to ``$FUZZ_STATS`` (JSON) at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import tempfile
from pathlib import Path

import atheris

import h5py
import numpy as np

with atheris.instrument_imports(include=["sparsecomp"]):
    import sparsecomp
    from sparsecomp.container import Limits, _Reader, read_tensors, text
    from sparsecomp.csr import tensor_digest

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(max_file_bytes=1 << 22, max_tensor_bytes=1 << 24, max_total_bytes=1 << 26, max_members=5000)
WORK = Path(tempfile.mkdtemp(prefix="sparsecomp-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
STATS = {"mode": None, "inputs": 0, "accepted": 0, "refused": 0, "rules": {}, "crashes": 0,
         "leaked_exception_types": [], "silent_corruptions": 0}


def _dump():
    path = os.environ.get("FUZZ_STATS")
    if path:
        p = Path(path)
        if p.is_dir():    # fork mode: one file per worker process, summed by the caller
            p = p / f"stats-{os.getpid()}.json"
        p.write_text(json.dumps(STATS, indent=1))


atexit.register(_dump)


def seeds() -> list[bytes]:
    """Valid files of every kind, small: the corpus the mutator starts from."""
    rng = np.random.default_rng(0)
    out = []
    src = WORK / "seed.h5"
    with h5py.File(src, "w") as f:
        k = rng.standard_normal((20, 30)).astype("<f4")
        k[rng.random(k.shape) < 0.8] = 0
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "d"
        g.create_dataset("0", data=k)
        g.create_dataset("1", data=rng.standard_normal(30).astype("<f4"))
        f.create_dataset("optimizer/vars/0", data=np.int64(3))
        f.attrs["keras_version"] = "3.0"
    for min_ratio in (1.0, 1e9):
        dst = WORK / "seed.sparse.h5"
        sparsecomp.pack(src, dst, min_ratio=min_ratio)
        out.append(dst.read_bytes())
    return out


SEEDS: list[bytes] = []


def check(data: bytes) -> None:
    STATS["inputs"] += 1
    path = WORK / "input.sparse.h5"
    path.write_bytes(data)
    try:
        sparsecomp.verify(path, limits=LIMITS)
    except sparsecomp.SparseCompError as exc:
        STATS["refused"] += 1
        STATS["rules"][exc.rule] = STATS["rules"].get(exc.rule, 0) + 1
        return
    except BaseException as exc:
        STATS["crashes"] += 1
        STATS["leaked_exception_types"].append(type(exc).__name__)
        raise
    STATS["accepted"] += 1
    # accepted: every tensor must decode to what its checksum says, and the other verbs must work
    try:
        with _Reader(path, LIMITS) as r:
            stored = {p: dict((a[0], a[1]) for a in attrs).get("sparsecomp.sha256")
                      for p, _node, _kind, attrs in r.walk()}
        for name, array in read_tensors(path, limits=LIMITS):
            expect = text(stored.get(name))
            if expect is not None and tensor_digest(array) != expect:
                STATS["silent_corruptions"] += 1
                raise AssertionError(f"silent corruption in {name}")
        sparsecomp.inspect(path, baseline=False, limits=LIMITS)
        sparsecomp.unpack(path, WORK / "out.h5", limits=LIMITS)
    except sparsecomp.SparseCompError as exc:
        STATS["leaked_exception_types"].append(f"inconsistent:{exc.rule}")
        raise AssertionError(f"verify accepted a file that another verb refused: {exc}") from None


def raw(data: bytes) -> None:
    check(data)


def rawh5(data: bytes) -> None:
    """Raw bytes behind a valid HDF5 signature: exercises the superblock and libhdf5's parsing."""
    check(b"\x89HDF\r\n\x1a\n" + data)


def mutate(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    buf = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        op = fdp.ConsumeIntInRange(0, 9)
        # past the 8-byte signature (the raw mode covers it): mutations reach the HDF5 structures
        pos = fdp.ConsumeIntInRange(8, len(buf) - 1) if len(buf) > 8 else 0
        if op <= 5 and buf:
            buf[pos] = fdp.ConsumeIntInRange(0, 255)                 # overwrite one byte
        elif op == 6 and buf:
            buf[pos] ^= 1 << fdp.ConsumeIntInRange(0, 7)             # flip one bit
        elif op == 7:
            del buf[pos:pos + fdp.ConsumeIntInRange(1, 64)]          # cut a run
        elif op == 8:
            buf[pos:pos] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 32))   # insert
        else:
            value = fdp.ConsumeIntInRange(0, 2**32 - 1).to_bytes(4, "little")   # plant a size/offset
            buf[pos:pos + 4] = value
    check(bytes(buf))


def main() -> None:
    modes = {"raw": raw, "rawh5": rawh5, "mutate": mutate}
    mode = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in modes else "mutate"
    argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a not in modes]
    STATS["mode"] = mode
    SEEDS.extend(seeds())
    atheris.Setup(argv, modes[mode])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
