"""Fuzz the reader with atheris (coverage-guided): whole files, the index (versions 2-3), each codec.

    python tests/fuzz/fuzz_reader.py raw         -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py rawh5       -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py mutate      -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py index       -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py codec:gaps  -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048
    python tests/fuzz/fuzz_reader.py stream:zdict -atheris_runs=100000 -timeout=10 -rss_limit_mb=2048

File modes (every input written to a file and given to ``verify``, then, if accepted, to
``read_tensors``, ``inspect`` and ``unpack``): ``raw`` feeds the bytes as they are, ``rawh5``
behind a valid HDF5 signature, ``mutate`` mutates valid files of every kind and of versions 1, 2
and 3. ``index`` edits the JSON index of a valid version-3 file field by field (values chosen to sit on
the boundaries: negative, huge, wrong type, off by one) and re-emits a well-formed HDF5 file, so
every input reaches the index checks and the decoders behind them. ``codec:NAME`` drives one
codec directly: a header (shape, dtype, params, declared stream sizes) and stream bytes from the
fuzzer, through the header check and the decoder — no HDF5 in the way, thousands of inputs a second.
``stream:CODING`` drives one stream decoder (``deflate``, ``zdict``): a declared decoded size and the
stored bytes from the fuzzer; it must give exactly the declared number of bytes or refuse, and a
stream the writer made must decode to what was encoded.

The only acceptable outcomes are success or a ``SparseCompError``; any other exception escaping
is a crash (atheris stops and saves the input). libFuzzer's ``-timeout`` turns a hang into a crash
and ``-rss_limit_mb`` an unbounded allocation. A *silent corruption* is an accepted input whose
tensor decodes to other bytes than its checksum says (file modes), or a decoded tensor of another
shape, dtype or non-zero count than its header declares (codec mode); it is counted and raised.
(Version 3 keeps 8 hex digits of each tensor's SHA-256 and a file digest over the full ones: an
accepted file's tensors must give both.)
Counts go to ``$FUZZ_STATS`` (JSON) at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import atheris

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))
sys.path.insert(0, str(ROOT))        # this checkout's sparsecomp, not whichever one is installed

with atheris.instrument_imports(include=["sparsecomp"]):
    import sparsecomp
    from sparsecomp.storage import Limits, Reader, read_tensors
    from sparsecomp.storage import codecs
    from sparsecomp.storage.codecs import StreamRef, TensorHeader
    from sparsecomp.storage.h5tree import text
    from sparsecomp.storage.streams import decode_stream
    from sparsecomp.storage.tensors import count_nonzero, file_digest, tensor_digest

from make_hostile import rebuild  # noqa: E402

LIMITS = Limits(max_file_bytes=1 << 22, max_tensor_bytes=1 << 24, max_total_bytes=1 << 26, max_members=5000,
                max_index_bytes=1 << 20)
WORK = Path(tempfile.mkdtemp(prefix="sparsecomp-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
STATS = {"mode": None, "inputs": 0, "accepted": 0, "refused": 0, "rules": {}, "crashes": 0,
         "leaked_exception_types": [], "silent_corruptions": 0, "seconds": 0.0}
T0 = time.time()


def _dump():
    STATS["seconds"] = round(time.time() - T0, 1)
    path = os.environ.get("FUZZ_STATS")
    if path:
        p = Path(path)
        if p.is_dir():    # fork mode: one file per worker process, summed by the caller
            p = p / f"stats-{os.getpid()}.json"
        p.write_text(json.dumps(STATS, indent=1))


atexit.register(_dump)


def seed_files() -> list[Path]:
    """Valid files of every kind and of versions 3, 1 and 2, small: what the mutators start from
    (the two of version 3 first: the ``index`` mode edits those)."""
    rng = np.random.default_rng(0)
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
    out = []
    for i, min_ratio in enumerate((1.0, 1e9)):
        dst = WORK / f"seed{i}.sparse.h5"
        sparsecomp.pack(src, dst, min_ratio=min_ratio)
        out.append(dst)
    out.append(ROOT / "tests" / "golden" / "v1_h5.sparse.h5")
    out.append(ROOT / "tests" / "golden" / "v2_h5.sparse.h5")
    return out


SEEDS: list[bytes] = []
SEED_FILES: list[Path] = []


def refused(exc) -> None:
    STATS["refused"] += 1
    STATS["rules"][exc.rule] = STATS["rules"].get(exc.rule, 0) + 1


def crashed(exc) -> None:
    STATS["crashes"] += 1
    STATS["leaked_exception_types"].append(type(exc).__name__)


_REFUSED = object()


def judged(call, *, valid: str | None = None):
    """``call()``, judged: its result (counted as accepted), or ``_REFUSED`` when it raised a
    ``SparseCompError`` (counted by rule); ``valid`` names an input that must not be refused (an
    AssertionError if it is). Any other exception escaping is a crash: counted, then re-raised."""
    try:
        out = call()
    except sparsecomp.SparseCompError as exc:
        if valid is not None:
            raise AssertionError(f"{valid} was refused: {exc}") from None
        refused(exc)
        return _REFUSED
    except BaseException as exc:
        crashed(exc)
        raise
    STATS["accepted"] += 1
    return out


def check_file(path: Path) -> None:
    STATS["inputs"] += 1
    if judged(lambda: sparsecomp.verify(path, limits=LIMITS)) is _REFUSED:
        return
    # accepted: every tensor must decode to what its checksum says, and the other verbs must work
    try:
        with Reader(path, LIMITS) as r:
            full = []
            for t in r.tensors():
                expect = t.ref.digest if r.version >= 2 else text(dict((a[0], a[1]) for a in t.attrs).get(
                    "sparsecomp.sha256"))
                array = r.read(t, verify=False)
                full.append(tensor_digest(array))
                if expect is not None and full[-1][:len(expect)] != expect:
                    STATS["silent_corruptions"] += 1
                    raise AssertionError(f"silent corruption in {t.path}")
            if r.version >= 3 and file_digest(full) != r.index.sha256:
                STATS["silent_corruptions"] += 1
                raise AssertionError("silent corruption: the file digest differs")
        list(read_tensors(path, limits=LIMITS))
        sparsecomp.storage.inspect(path, limits=LIMITS)
        sparsecomp.unpack(path, WORK / ("out.keras" if r.kind == "model" else "out.h5"), limits=LIMITS)
    except sparsecomp.SparseCompError as exc:
        STATS["leaked_exception_types"].append(f"inconsistent:{exc.rule}")
        raise AssertionError(f"verify accepted a file that another verb refused: {exc}") from None


def check(data: bytes) -> None:
    path = WORK / "input.sparse.h5"
    path.write_bytes(data)
    check_file(path)


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


# ---- the index (versions 2 and 3) ----------------------------------------------------------------

def _value(fdp, old):
    """A replacement for a JSON value: near the old one, on a boundary, or of another type."""
    k = fdp.ConsumeIntInRange(0, 12)
    if isinstance(old, int) and not isinstance(old, bool) and k < 6:
        return [old + 1, old - 1, -1, 0, 2**31, 2**63][k]
    return [None, True, "x", "", [], {}, 1.5, -(2**40), [0, 0, 0], {"order": "row"}, "deflate",
            ["deflate", 1, 10**9], "zdict"][k]


def _walk(node, fdp, depth=0):
    """Pick one place in the JSON document and replace it (or delete a key / drop a list item)."""
    if isinstance(node, dict) and node:
        key = sorted(node)[fdp.ConsumeIntInRange(0, len(node) - 1)]
        if depth < 6 and isinstance(node[key], (dict, list)) and fdp.ConsumeBool():
            return _walk(node[key], fdp, depth + 1)
        if fdp.ConsumeIntInRange(0, 9) == 0:
            del node[key]
        else:
            node[key] = _value(fdp, node[key])
    elif isinstance(node, list) and node:
        i = fdp.ConsumeIntInRange(0, len(node) - 1)
        if depth < 6 and isinstance(node[i], (dict, list)) and fdp.ConsumeBool():
            return _walk(node[i], fdp, depth + 1)
        if fdp.ConsumeIntInRange(0, 9) == 0:
            node.pop(i)
        else:
            node[i] = _value(fdp, node[i])


def index(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    base = SEED_FILES[fdp.ConsumeIntInRange(0, 1)]

    def edit(p):
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            if fdp.ConsumeIntInRange(0, 4) == 0 and p.blob0:
                pos = fdp.ConsumeIntInRange(0, len(p.blob0) - 1)
                p.blob0[pos] = fdp.ConsumeIntInRange(0, 255)         # a stream byte
            else:
                _walk(p.doc, fdp)
    out = WORK / "index.sparse.h5"
    try:
        rebuild(base, out, edit)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError):
        return                                    # the edit made the forger itself fail: not an input
    check_file(out)


# ---- one codec ---------------------------------------------------------------------------------

DTYPES = ["<f4", "<f2", "<f8", "<i8", "|u1", "<i2"]


def codec(name: str):
    """Encode a small random tensor with codec ``name``, then break its encoding the fuzzer's way:
    bytes of a decoded stream (re-coded, so the codec's decoder sees them), a stream's length, a
    declared size, the stored deflate bytes, the header's nnz, shape or params."""
    target = codecs.get(name)

    def run(data: bytes) -> None:
        STATS["inputs"] += 1
        fdp = atheris.FuzzedDataProvider(data)
        n_mut = fdp.ConsumeIntInRange(0, 3)
        dtype = np.dtype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
        shape = tuple(fdp.ConsumeIntInRange(1, 30) for _ in range(fdp.ConsumeIntInRange(0, 3)))
        rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 2**31))
        a = (rng.standard_normal(shape) * 50).astype(dtype)
        if name == "shared":                       # few distinct values: what weight sharing leaves
            book = (rng.standard_normal(fdp.ConsumeIntInRange(1, 40)) * 50).astype(dtype)
            a = book[rng.integers(0, len(book), shape)] if shape else book[:1].reshape(())
        if a.ndim:
            a[rng.random(shape) >= fdp.ConsumeProbability()] = 0
        enc = target.encode(a, level=fdp.ConsumeIntInRange(1, 3), max_ratio=1024, nnz=count_nonzero(a))
        if enc is None:
            return
        nnz, params = count_nonzero(a), dict(enc.params)
        plain = [bytearray(decode_stream(s.data, s.coding, s.size, max_ratio=1024)) for s in enc.streams]
        codings = [s.coding for s in enc.streams]
        delta = [0] * len(plain)                   # declared size minus the real one
        stored_edit = None
        clean = True
        for _ in range(n_mut):
            clean = False
            op = fdp.ConsumeIntInRange(0, 8)
            i = fdp.ConsumeIntInRange(0, len(plain) - 1)
            if op <= 2 and plain[i]:
                plain[i][fdp.ConsumeIntInRange(0, len(plain[i]) - 1)] = fdp.ConsumeIntInRange(0, 255)
            elif op == 3:
                del plain[i][fdp.ConsumeIntInRange(0, len(plain[i])):]
            elif op == 4:
                plain[i] += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 40))
            elif op == 5:
                delta[i] = fdp.ConsumeIntInRange(-3, 3)
            elif op == 6:
                stored_edit = (i, fdp.ConsumeIntInRange(0, 1 << 16), fdp.ConsumeIntInRange(0, 255))
            elif op == 7:
                nnz = max(0, nnz + fdp.ConsumeIntInRange(-2, 2))
            else:
                params = {"order": ["row", "col", "x"][fdp.ConsumeIntInRange(0, 2)]} if name == "gaps" else {"k": 1}
        stored = [zlib.compress(bytes(p), 9)[2:-4] if c == "deflate" else bytes(p) for p, c in zip(plain, codings)]
        if stored_edit is not None and stored[stored_edit[0]]:
            j, pos, val = stored_edit
            s = bytearray(stored[j])
            s[pos % len(s)] = val
            stored[j] = bytes(s)
        refs = tuple(StreamRef(c, len(st), max(len(p) + d, 0)) for c, st, p, d in zip(codings, stored, plain, delta))
        h = TensorHeader("t", shape, dtype, name, params, refs, nnz=nnz)
        def decode():
            target.check(h)
            return target.decode(h, [decode_stream(st, r.coding, r.size, max_ratio=1024)
                                     for st, r in zip(stored, refs)])
        out = judged(decode, valid="a clean encoding" if clean else None)
        if out is _REFUSED:
            return
        wrong = out.shape != shape or out.dtype != dtype or (name == "gaps" and count_nonzero(out) != nnz)
        if wrong or (clean and out.tobytes() != a.tobytes()):
            STATS["silent_corruptions"] += 1
            raise AssertionError(f"decoded {out.shape} {out.dtype} nnz {count_nonzero(out)} for header "
                                 f"{shape} {dtype} nnz {nnz}")
    return run


def stream(coding: str):
    """One stream decoder. Half the inputs are a declared size and stored bytes straight from the
    fuzzer; the other half edit a stream the writer made (bytes changed, cut, appended; the
    declared size moved), which must decode to its text while it is unedited."""
    from sparsecomp.storage.streams import deflate
    text_seed = (Path(sparsecomp.__file__).parent / "storage" / "spec.py").read_bytes()[:3000]
    made = [(text_seed[:n], deflate(text_seed[:n], zdict=coding == "zdict")) for n in (0, 1, 200, 3000)]

    def run(data: bytes) -> None:
        STATS["inputs"] += 1
        fdp = atheris.FuzzedDataProvider(data)
        plain = None
        if fdp.ConsumeBool():
            plain, packed = made[fdp.ConsumeIntInRange(0, len(made) - 1)]
            size, buf = len(plain), bytearray(packed)
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                plain = None
                op = fdp.ConsumeIntInRange(0, 3)
                if op == 0 and buf:
                    buf[fdp.ConsumeIntInRange(0, len(buf) - 1)] = fdp.ConsumeIntInRange(0, 255)
                elif op == 1:
                    del buf[fdp.ConsumeIntInRange(0, len(buf)):]
                elif op == 2:
                    buf += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
                else:
                    size = max(0, size + fdp.ConsumeIntInRange(-4, 4))
            stored = bytes(buf)
        else:
            size = fdp.ConsumeIntInRange(0, 1 << 24)
            stored = fdp.ConsumeBytes(fdp.remaining_bytes())
        out = judged(lambda: decode_stream(stored, coding, size, max_ratio=1024),
                     valid="a stream the writer made" if plain is not None else None)
        if out is _REFUSED:
            return
        if len(out) != size or (plain is not None and bytes(out) != plain):
            STATS["silent_corruptions"] += 1
            raise AssertionError(f"declared {size} bytes, decoded {len(out)}")
    return run


def main() -> None:
    modes = {"raw": raw, "rawh5": rawh5, "mutate": mutate, "index": index}
    mode = next((a for a in sys.argv[1:] if a in modes or a.startswith(("codec:", "stream:"))), "mutate")
    argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != mode]
    STATS["mode"] = mode
    SEED_FILES.extend(seed_files())
    SEEDS.extend(p.read_bytes() for p in SEED_FILES)
    if mode.startswith("codec:"):
        fn = codec(mode.split(":", 1)[1])
    elif mode.startswith("stream:"):
        fn = stream(mode.split(":", 1)[1])
    else:
        fn = modes[mode]
    atheris.Setup(argv, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
