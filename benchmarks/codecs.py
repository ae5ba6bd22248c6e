"""Lossless codecs measured: bytes per non-zero and time, on trained LeNets and VGG19 layers.

    python -m benchmarks codecs

Which encodings earn their place in format v2. Tensors: the kernels of the trained dense LeNet-5
and LeNet-300-100 baselines (``build/baselines``, trained by the pruning benchmarks) pruned by
magnitude, layer by layer, to each of ``sparsities``; and three VGG19 kernels (``models.zoo.vgg19``
initialisation, ``weights=None``: nothing downloaded) at the same sparsities. Candidates, each
measured in exact stored bytes:

- ``csr32`` — format v1's CSR: float32 values, int32 column index per value, int32 row pointers
  (computed, not written: 8 B per non-zero + 4 B per row + 4);
- ``bitmap`` — a bit per position (deflated when that is smaller) + the values as byte planes;
- ``gaps@1/2/3`` — this library's ``gaps`` codec at each level (gap bytes with fillers, values as
  byte planes, each stream raw or deflated; level 3 also tries column order);
- ``planes`` — the dense tensor as deflated byte planes; ``dense`` — raw bytes;
- ``zstd-gaps`` / ``zstd-bitmap`` — the same streams with zstandard (level 19) instead of deflate,
  when the ``zstandard`` package is installed (the question: does it earn a dependency?).

Each codec's encode time and its bounded decode (``decode_stream`` + ``Codec.decode``, checked
bit-exact) are timed ``repeats`` times, alternating codec order, median kept. No accuracy: nothing
here changes a value.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.common import latest_ok

SETTINGS = {"sparsities": [0.8, 0.9, 0.95, 0.99], "lenet_baselines": {"lenet5": 12, "lenet_300_100": 20},
            "vgg19_layers": ["block1_conv2", "block5_conv1", "fc2"], "repeats": 3, "zstd_level": 19}
SEEDS = [0]


def _magnitude_prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(round(sparsity * w.size))
    if k <= 0:
        return w.copy()
    flat = np.abs(w).reshape(-1)
    cut = np.partition(flat, k - 1)[k - 1]
    out = w.copy()
    out[np.abs(w) <= cut] = 0
    return out


def _tensors(s, seed, log):
    """``[(model, layer, kernel)]``: trained LeNet kernels and VGG19 initial kernels (dense)."""
    import keras

    from benchmarks.common import baseline
    from models import zoo
    out = []
    for name, epochs in s["lenet_baselines"].items():
        model, _ = baseline(name, epochs, 0, log=log)
        out += [(name, layer.name, np.asarray(layer.get_weights()[0], np.float32))
                for layer in model.layers if layer.get_weights() and layer.get_weights()[0].ndim >= 2]
    keras.utils.set_random_seed(seed)
    vgg = zoo.vgg19()
    out += [("vgg19", n, np.asarray(vgg.get_layer(n).get_weights()[0], np.float32)) for n in s["vgg19_layers"]]
    del vgg
    return out


def _roundtrip(codec, enc, array):
    """Decode ``enc`` the way the reader does (bounded stream decoding, header checks)."""
    from sparsecomp.storage.codecs import StreamRef, TensorHeader
    from sparsecomp.storage.streams import decode_stream
    header = TensorHeader(path="t", shape=array.shape, dtype=array.dtype, codec=enc.codec, params=enc.params,
                          streams=tuple(StreamRef(st.coding, st.stored, st.size) for st in enc.streams),
                          nnz=enc.nnz)
    codec.check(header)
    data = [decode_stream(st.data, st.coding, st.size, max_ratio=1 << 20) for st in enc.streams]
    return codec.decode(header, data)


def _bitmap_candidates(a, zstd, zlevel):
    """Bytes of a bitmap + byte-planes encoding (deflate, and zstd where available)."""
    from sparsecomp.storage.codecs.values import split_planes
    from sparsecomp.storage.streams import deflate
    flat = a.reshape(-1)
    nz = flat != 0
    bits = np.packbits(nz)
    planes = split_planes(flat[nz])
    out = {"bitmap": min(len(bits), len(deflate(bits))) + sum(min(len(p), len(deflate(p))) for p in planes)}
    if zstd is not None:
        c = zstd.ZstdCompressor(level=zlevel)
        out["zstd-bitmap"] = (min(len(bits), len(c.compress(bits.tobytes())))
                              + sum(min(len(p), len(c.compress(p.tobytes()))) for p in planes))
    return out


def _zstd_gaps(enc, zstd, zlevel):
    """The ``gaps`` codec's own streams, each stored as the smaller of raw and zstd."""
    from sparsecomp.storage.streams import decode_stream
    c = zstd.ZstdCompressor(level=zlevel)
    total = 0
    for st in enc.streams:
        plain = bytes(decode_stream(st.data, st.coding, st.size, max_ratio=1 << 20))
        total += min(len(plain), len(c.compress(plain)))
    return total


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def measure_tensor(a: np.ndarray, repeats: int, zstd, zlevel: int) -> dict:
    from sparsecomp.storage import codecs
    nnz = int(np.count_nonzero(a))
    rows = a.shape[0] if a.ndim == 2 else int(np.prod(a.shape[:-1]))
    r = {"shape": list(a.shape), "size": int(a.size), "nnz": nnz, "bytes": {}, "encode_s": {}, "decode_s": {}}
    r["bytes"]["csr32"] = 8 * nnz + 4 * rows + 4
    r["bytes"]["dense"] = a.nbytes
    variants = [("gaps@1", "gaps", 1), ("gaps@2", "gaps", 2), ("gaps@3", "gaps", 3), ("planes", "planes", 2)]
    encs = {}
    for i in range(repeats):                                    # alternate the order of the codecs
        for label, name, level in (variants if i % 2 == 0 else variants[::-1]):
            codec = codecs.get(name)
            t = time.perf_counter()
            enc = codec.encode(a, level=level, max_ratio=1 << 20, nnz=nnz)
            r["encode_s"].setdefault(label, []).append(time.perf_counter() - t)
            if enc is None:
                continue
            enc.nnz = nnz
            encs[label] = (codec, enc)
            t = time.perf_counter()
            back = _roundtrip(codec, enc, a)
            r["decode_s"].setdefault(label, []).append(time.perf_counter() - t)
            if back.tobytes() != a.tobytes():
                raise AssertionError(f"{label} did not decode bit-exact")
    for label, (_, enc) in encs.items():
        r["bytes"][label] = enc.nbytes
        r.setdefault("streams", {})[label] = enc.by_role()
    r["encode_s"] = {k: statistics.median(v) for k, v in r["encode_s"].items()}
    r["decode_s"] = {k: statistics.median(v) for k, v in r["decode_s"].items()}
    r["bytes"].update(_bitmap_candidates(a, zstd, zlevel))
    if zstd is not None and "gaps@3" in encs:
        r["bytes"]["zstd-gaps"] = _zstd_gaps(encs["gaps@3"][1], zstd, zlevel)
    r["bytes_per_nonzero"] = {k: (v / nnz if nnz else None) for k, v in r["bytes"].items()}
    return r


def run(ctx):
    s = ctx.settings
    try:
        import zstandard as zstd
        zver = zstd.__version__
    except ImportError:
        zstd, zver = None, None
    tensors = _tensors(s, ctx.seeds[0], ctx.log)
    rows = []
    for model, layer, w in tensors:
        for sp in s["sparsities"]:
            a = _magnitude_prune(w, sp)
            m = measure_tensor(a, s["repeats"], zstd, s["zstd_level"])
            rows.append({"model": model, "layer": layer, "sparsity": sp, **m})
            b = m["bytes_per_nonzero"]
            ctx.log(f"{model:14s} {layer:13s} {sp:.2f}  csr32 {b['csr32']:.2f}  gaps@2 {b['gaps@2']:.2f}  "
                    f"gaps@3 {b['gaps@3']:.2f}  bitmap {b['bitmap']:.2f}"
                    + (f"  zstd-gaps {b['zstd-gaps']:.2f}" if "zstd-gaps" in b else "") + " B/nnz")
    return {"zstandard": zver, "rows": rows, "summary": _summary(rows)}


def _summary(rows) -> dict:
    """Per model and sparsity: bytes per non-zero of each candidate over all its layers."""
    out = {}
    for r in rows:
        key = f"{r['model']}@{r['sparsity']}"
        agg = out.setdefault(key, {"nnz": 0, "bytes": {}, "encode_s": {}, "decode_s": {}})
        agg["nnz"] += r["nnz"]
        for k, v in r["bytes"].items():
            agg["bytes"][k] = agg["bytes"].get(k, 0) + v
        for part in ("encode_s", "decode_s"):
            for k, v in r[part].items():
                agg[part][k] = agg[part].get(k, 0.0) + v
    for agg in out.values():
        agg["bytes_per_nonzero"] = {k: v / agg["nnz"] for k, v in agg["bytes"].items()}
    return out


CANDIDATES = ("csr32", "bitmap", "gaps@1", "gaps@2", "gaps@3", "planes", "zstd-bitmap", "zstd-gaps")


def headline(e):
    s = e["results"]["summary"]
    parts = [f"{k}: gaps@2 {v['bytes_per_nonzero']['gaps@2']:.2f} vs csr32 {v['bytes_per_nonzero']['csr32']:.2f} B/nnz"
             for k, v in s.items() if k.endswith("@0.95")]
    return "; ".join(parts)


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return "No run yet."
    r = e["results"]
    cands = [c for c in CANDIDATES if any(c in v["bytes"] for v in r["summary"].values())]
    lines = [f"{run_ref('codecs', entries, e)}, {e['started'][:16]}; zstandard "
             f"{r['zstandard'] or 'not installed'}. Bytes per non-zero, all layers of a model together "
             "(values + positions, no file metadata); the lowest of this library's codecs in bold. "
             "Encode/decode: seconds for the model's kernels, median of "
             f"{e['settings']['repeats']} alternating repeats.", "",
             "| model @ sparsity | " + " | ".join(cands) + " | gaps@2 encode / decode s |",
             "| --- | " + " | ".join("---" for _ in cands) + " | --- |"]
    ours = ("gaps@1", "gaps@2", "gaps@3", "planes")
    for key, v in r["summary"].items():
        b = v["bytes_per_nonzero"]
        best = min(b[c] for c in ours if c in b)
        cells = [(f"**{b[c]:.2f}**" if c in ours and b[c] == best else f"{b[c]:.2f}") if c in b else "" for c in cands]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {v['encode_s'].get('gaps@2', 0):.3f} / "
                     f"{v['decode_s'].get('gaps@2', 0):.3f} |")
    z = [(v["bytes"]["zstd-gaps"], v["bytes"]["gaps@3"]) for v in r["summary"].values() if "zstd-gaps" in v["bytes"]]
    if z:
        gain = [1 - a / b for a, b in z]
        lines += ["", f"zstd (level {e['settings']['zstd_level']}) on the same streams as `gaps@3`: "
                  f"{min(gain):+.1%} to {max(gain):+.1%} bytes saved across these tensors (negative: larger)."]
    return "\n".join(lines)


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return []
    s = e["results"]["summary"]
    cells = [f"{k.split('@')[0]} {v['bytes_per_nonzero']['gaps@2']:.2f}" for k, v in s.items() if k.endswith("@0.95")]
    return [("lossless codec at 95% sparsity (B per non-zero)",
             f"{', '.join(cells)} (format v1's CSR: 8+) ({run_ref('codecs', entries, e)})")]
