"""Break-even density of CSR vs dense, computed by the size check and confirmed on real files.

    python benchmarks/break_even.py

For float32 (and float16/float64) values and each index width (uint8 for <= 256 columns, uint16
for <= 65,536, uint32 beyond), finds by bisection the largest density at which CSR is still
smaller, then writes tensors just below and just above it with ``sparsecomp.pack`` and checks
the encoding chosen and the file sizes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sparsecomp  # noqa: E402
from _common import write_result  # noqa: E402
from sparsecomp.csr import size_check  # noqa: E402

CASES = [  # (rows, cols): cols picks the index width
    (1000, 200),      # uint8 indices
    (800, 500),       # uint16 indices (a LeNet-5 fc1 kernel)
    (20, 70000),      # uint32 indices
]


def break_even_nnz(rows, cols, dtype):
    lo, hi = 0, rows * cols
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size_check((rows, cols), dtype, mid).encoding == "csr":
            lo = mid
        else:
            hi = mid - 1
    return lo   # the largest nnz still stored as CSR


def file_check(rows, cols, dtype, nnz, td):
    rng = np.random.default_rng(0)
    a = np.zeros(rows * cols, dtype)
    a[rng.choice(rows * cols, nnz, replace=False)] = rng.uniform(1, 2, nnz).astype(dtype)   # never 0
    src = Path(td) / "t.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("w", data=a.reshape(rows, cols))
    rep = sparsecomp.pack(src, Path(td) / "t.sparse.h5")
    return rep.records[0].encoding, rep.records[0].stored_bytes, rep.file_bytes


def main():
    rows_out = []
    with tempfile.TemporaryDirectory() as td:
        for dtype in ("float32", "float16", "float64"):
            for rows, cols in CASES:
                nnz = break_even_nnz(rows, cols, dtype)
                chk = size_check((rows, cols), dtype, nnz)
                enc_below, stored_below, file_below = file_check(rows, cols, dtype, nnz, td)
                enc_above, stored_above, file_above = file_check(rows, cols, dtype, nnz + 1, td)
                itemsize = np.dtype(dtype).itemsize
                row = {"dtype": dtype, "rows": rows, "cols": cols, "index_dtype": chk.index_dtype,
                       "indptr_dtype": chk.indptr_dtype, "max_csr_nnz": nnz,
                       "break_even_density": nnz / (rows * cols),
                       "asymptotic_density": itemsize / (itemsize + np.dtype(chk.index_dtype).itemsize),
                       "file_encoding_at_break_even": enc_below, "file_encoding_one_above": enc_above,
                       "file_bytes_at_break_even": file_below, "file_bytes_one_above": file_above,
                       "dense_payload_bytes": rows * cols * itemsize, "confirmed": enc_below == "csr"
                       and enc_above == "dense"}
                rows_out.append(row)
                print(f"{dtype:8s} {rows:5d}x{cols:<6d} idx {chk.index_dtype:4s} break-even density "
                      f"{row['break_even_density']:.4f} (asymptote {row['asymptotic_density']:.4f}); "
                      f"files: {enc_below} at nnz={nnz}, {enc_above} at nnz={nnz + 1} "
                      f"-> {'confirmed' if row['confirmed'] else 'MISMATCH'}")
    path = write_result("break_even", {"cases": rows_out, "all_confirmed": all(r["confirmed"] for r in rows_out)})
    print(f"wrote {path}")
    return 0 if all(r["confirmed"] for r in rows_out) else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())
