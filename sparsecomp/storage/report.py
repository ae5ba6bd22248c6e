"""Storage reports: per tensor and per layer bytes, as plain data, a text table and JSON.

Vocabulary, used with one meaning everywhere: ``sparsity`` is the fraction of zeros, ``density``
its complement (``nnz / params``), ``ratio`` is always ``dense bytes / stored bytes``, and
``bytes per non-zero`` is always *file* bytes (HDF5 metadata, index and config included) divided by
the non-zero weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

__all__ = ["TensorRecord", "StorageReport", "format_bytes"]


def format_bytes(n) -> str:
    """Human-readable bytes: ``1536 -> '1.50 KiB'``."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


@dataclass(frozen=True)
class TensorRecord:
    """One stored tensor: where it is, how big it is dense, and what its codec stored.

    ``streams`` maps each stream role (``values``, ``positions``, ``codes``, ``codebook``) to the
    bytes stored for it; ``details`` holds what the codec decided (position order, bits per
    weight, codebook size...).
    """

    path: str
    layer: str
    category: str            # "weights" or "optimizer"
    shape: tuple
    dtype: str
    nnz: int
    encoding: str            # the codec: "dense", "planes", "gaps", "shared" (version 1: "csr")
    dense_bytes: int
    stored_bytes: int
    streams: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def params(self) -> int:
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        return self.nnz / self.params if self.params else 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density if self.params else 0.0

    @property
    def ratio(self) -> float:
        return self.dense_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def bytes_per_nonzero(self) -> float | None:
        """Stored payload bytes per non-zero (the file's metadata is counted in the totals only)."""
        return self.stored_bytes / self.nnz if self.nnz else None

    @classmethod
    def from_dict(cls, d: dict) -> "TensorRecord":
        return cls(path=d["path"], layer=d["layer"], category=d["category"], shape=tuple(d["shape"]),
                   dtype=d["dtype"], nnz=d["nnz"], encoding=d["encoding"], dense_bytes=d["dense_bytes"],
                   stored_bytes=d["stored_bytes"], streams=dict(d.get("streams", {})),
                   details=dict(d.get("details", {})))

    def to_dict(self) -> dict:
        return {"path": self.path, "layer": self.layer, "category": self.category,
                "shape": list(self.shape), "dtype": self.dtype, "params": self.params,
                "nnz": self.nnz, "density": self.density, "encoding": self.encoding,
                "dense_bytes": self.dense_bytes, "stored_bytes": self.stored_bytes,
                "streams": dict(self.streams), "details": dict(self.details), "ratio": self.ratio,
                "bytes_per_nonzero": self.bytes_per_nonzero}


@dataclass
class StorageReport:
    """What a ``.sparse.h5`` file holds and where its bytes go.

    ``file_bytes`` is the file's size on disk; ``metadata_bytes`` what is not tensor payload
    (HDF5 headers, the index, the model config, mirrored tree); ``keras_bytes`` the size of Keras'
    own dense file of the same model without optimizer state, when measured; ``source_bytes`` the
    size of the checkpoint that was packed, when known.
    """

    file: str
    kind: str
    file_bytes: int
    records: list = field(default_factory=list)
    source_bytes: int | None = None
    keras_bytes: int | None = None
    optimizer_dropped: bool = False
    format_version: int | None = None

    def totals(self, category: str | None = None) -> dict:
        recs = [r for r in self.records if category is None or r.category == category]
        params = sum(r.params for r in recs)
        nnz = sum(r.nnz for r in recs)
        dense = sum(r.dense_bytes for r in recs)
        stored = sum(r.stored_bytes for r in recs)
        streams: dict[str, int] = {}
        for r in recs:
            for k, v in r.streams.items():
                streams[k] = streams.get(k, 0) + v
        return {"tensors": len(recs), "params": params, "nnz": nnz,
                "density": nnz / params if params else 0.0,
                "dense_bytes": dense, "stored_bytes": stored, "streams": streams,
                "ratio": dense / stored if stored else 1.0}

    @property
    def payload_bytes(self) -> int:
        return sum(r.stored_bytes for r in self.records)

    @property
    def metadata_bytes(self) -> int:
        """File bytes that are not tensor payload: HDF5 headers, index, config, mirrored tree."""
        return self.file_bytes - self.payload_bytes

    @property
    def bytes_per_nonzero(self) -> float | None:
        """The whole file, all in, divided by the non-zero weights (optimizer state excluded)."""
        nnz = self.totals("weights")["nnz"]
        return self.file_bytes / nnz if nnz else None

    def codecs(self) -> dict:
        """``{codec: tensors using it}``."""
        out: dict[str, int] = {}
        for r in self.records:
            out[r.encoding] = out.get(r.encoding, 0) + 1
        return out

    def by_layer(self, category: str = "weights") -> list[dict]:
        """Per-layer sums, in file order."""
        rows: dict[str, dict] = {}
        for r in self.records:
            if r.category != category:
                continue
            row = rows.setdefault(r.layer, {"layer": r.layer, "params": 0, "nnz": 0,
                                            "dense_bytes": 0, "stored_bytes": 0, "encodings": set()})
            row["params"] += r.params
            row["nnz"] += r.nnz
            row["dense_bytes"] += r.dense_bytes
            row["stored_bytes"] += r.stored_bytes
            row["encodings"].add(r.encoding)
        out = []
        for row in rows.values():
            row["encodings"] = "+".join(sorted(row["encodings"]))
            row["density"] = row["nnz"] / row["params"] if row["params"] else 0.0
            row["ratio"] = row["dense_bytes"] / row["stored_bytes"] if row["stored_bytes"] else 1.0
            out.append(row)
        return out

    def to_dict(self) -> dict:
        return {
            "file": self.file, "kind": self.kind, "format_version": self.format_version,
            "file_bytes": self.file_bytes, "payload_bytes": self.payload_bytes,
            "metadata_bytes": self.metadata_bytes, "bytes_per_nonzero": self.bytes_per_nonzero,
            "source_bytes": self.source_bytes, "keras_bytes": self.keras_bytes,
            "file_ratio_vs_keras": (self.keras_bytes / self.file_bytes
                                    if self.keras_bytes and self.file_bytes else None),
            "optimizer_dropped": self.optimizer_dropped, "codecs": self.codecs(),
            "totals": {"weights": self.totals("weights"), "optimizer": self.totals("optimizer"),
                       "all": self.totals()},
            "tensors": [r.to_dict() for r in self.records],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "StorageReport":
        return cls(file=d["file"], kind=d["kind"], file_bytes=d["file_bytes"],
                   records=[TensorRecord.from_dict(t) for t in d.get("tensors", [])],
                   source_bytes=d.get("source_bytes"), keras_bytes=d.get("keras_bytes"),
                   optimizer_dropped=d.get("optimizer_dropped", False), format_version=d.get("format_version"))

    def format_table(self) -> str:
        """A fixed-width text table, one row per tensor, then totals and file sizes."""
        head = ("tensor", "layer", "shape", "params", "nnz", "density", "codec", "dense", "stored",
                "values", "positions", "B/nnz", "ratio")
        rows = [head]
        for r in self.records:
            other = {k: v for k, v in r.streams.items() if k not in ("values", "positions")}
            codec = r.encoding + "".join(f" {k}={v}" for k, v in sorted(r.details.items()) if k in ("bits", "k"))
            rows.append((r.path, r.layer, "x".join(map(str, r.shape)) or "()", f"{r.params:,}",
                         f"{r.nnz:,}", f"{r.density:.2%}", codec, format_bytes(r.dense_bytes),
                         format_bytes(r.stored_bytes),
                         format_bytes(r.streams.get("values", 0) + sum(other.values())),
                         format_bytes(r.streams.get("positions")) if "positions" in r.streams else "-",
                         f"{r.bytes_per_nonzero:.2f}" if r.bytes_per_nonzero else "-", f"{r.ratio:.2f}x"))
        widths = [min(max(len(row[i]) for row in rows), 48) for i in range(len(head))]
        lines = []
        for n, row in enumerate(rows):
            cells = [c if len(c) <= widths[i] else "…" + c[-(widths[i] - 1):] for i, c in enumerate(row)]
            lines.append("  ".join(c.ljust(w) if i < 3 or i == 6 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))))
            if n == 0:
                lines.append("-" * len(lines[0]))
        lines.append("")
        for cat in ("weights", "optimizer"):
            t = self.totals(cat)
            if not t["tensors"]:
                continue
            label = "weights" if cat == "weights" else "optimizer state (counted apart)"
            streams = ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(t["streams"].items()))
            lines.append(f"{label}: {t['params']:,} params, {t['nnz']:,} non-zero "
                         f"({t['density']:.2%} dense), {format_bytes(t['dense_bytes'])} dense -> "
                         f"{format_bytes(t['stored_bytes'])} stored ({t['ratio']:.2f}x){': ' + streams if streams else ''}")
        if self.optimizer_dropped:
            lines.append("optimizer state: not stored (not counted as compression)")
        lines.append(f"file on disk: {format_bytes(self.file_bytes)} ({self.file_bytes:,} B) = "
                     f"{self.payload_bytes:,} B tensor payload + {self.metadata_bytes:,} B metadata"
                     + (f" (format version {self.format_version})" if self.format_version else ""))
        if self.bytes_per_nonzero is not None:
            lines.append(f"bytes per non-zero weight, all in: {self.bytes_per_nonzero:.2f}")
        if self.source_bytes is not None:
            lines.append(f"source checkpoint: {format_bytes(self.source_bytes)} ({self.source_bytes:,} B)")
        if self.keras_bytes is not None:
            factor = self.keras_bytes / self.file_bytes
            verdict = f"{factor:.2f}x smaller" if factor >= 1 else f"{1 / factor:.2f}x LARGER"
            lines.append(f"Keras' own dense file (no optimizer state): {format_bytes(self.keras_bytes)} "
                         f"({self.keras_bytes:,} B) -> this file is {verdict}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()
