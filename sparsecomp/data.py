"""Datasets, offline first: MNIST from the four standard idx files.

The package ships its own copy of MNIST (``sparsecomp/_data/mnist``, verified against the
SHA-256 of the uncompressed files), so no machine ever needs a download. Another directory can be
given as an argument or with the ``SPARSECOMP_MNIST_DIR`` environment variable.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["load_mnist", "mnist_dir", "mnist_for", "BUILTIN_MNIST"]

BUILTIN_MNIST = Path(__file__).parent / "_data" / "mnist"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MAX_IDX_BYTES = 256 << 20


def mnist_dir(directory=None) -> Path:
    """The directory MNIST is read from: the argument, ``$SPARSECOMP_MNIST_DIR``, or the built-in copy."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("SPARSECOMP_MNIST_DIR")
    return Path(env) if env else BUILTIN_MNIST


def _read(directory: Path, stem: str) -> bytes:
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        p = directory / name
        if p.is_file():
            try:
                with opener(p, "rb") as fh:
                    raw = fh.read(_MAX_IDX_BYTES + 1)
            except (OSError, EOFError) as exc:
                raise DataError(f"cannot read {p}: {exc}", rule="data.read", file=p) from None
            if len(raw) > _MAX_IDX_BYTES:
                raise DataError(f"{p} is larger than any MNIST file", rule="data.size", file=p)
            return raw
    raise DataError(
        f"MNIST file {stem}(.gz) not found in {directory}. sparsecomp never downloads data: put the "
        "four idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and pass it "
        "(--mnist-dir DIR, load_mnist(DIR) or SPARSECOMP_MNIST_DIR=DIR).", rule="data.missing",
        file=directory / (stem + ".gz"))


def _parse_idx(raw: bytes, stem: str, expect_dims: int) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{stem}: not an unsigned-byte idx file", rule="data.format")
    ndim = raw[3]
    if ndim != expect_dims or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{stem}: expected {expect_dims} dimensions, header says {ndim}", rule="data.format")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in dims:
        count *= d
    if len(raw) != 4 + 4 * ndim + count:
        raise DataError(f"{stem}: header declares {count} bytes of data, file holds "
                        f"{len(raw) - 4 - 4 * ndim}", rule="data.format")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _expected_digests(directory: Path) -> dict:
    sums = directory / "SHA256SUMS.raw"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def load_mnist(directory=None, *, verify: bool = True):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``, uint8 arrays, offline.

    Images are ``(n, 28, 28)``, labels ``(n,)``. When the directory has a ``SHA256SUMS.raw``
    (the built-in copy does), each file's uncompressed content is checked against it.

    Raises:
        DataError: a file is missing (the message says what to do), damaged or altered.
    """
    directory = mnist_dir(directory)
    digests = _expected_digests(directory) if verify else {}
    arrays = {}
    for key, stem in _FILES.items():
        raw = _read(directory, stem)
        if stem in digests and hashlib.sha256(raw).hexdigest() != digests[stem]:
            raise DataError(f"{stem}: SHA-256 differs from SHA256SUMS.raw (altered file?)",
                            rule="data.checksum", file=directory / stem)
        arrays[key] = _parse_idx(raw, stem, 3 if key.endswith("images") else 1)
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"{split}: {len(arrays[f'{split}_images'])} images but "
                            f"{len(arrays[f'{split}_labels'])} labels", rule="data.format")
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def mnist_for(model, mnist_dir=None):
    """MNIST shaped for ``model``'s input: ``((x, y), (x_test, y_test))``, float32 in [0, 1]."""
    (x, y), (xt, yt) = load_mnist(mnist_dir)
    shape = tuple(model.inputs[0].shape[1:])
    x = (x.astype("float32") / 255.0).reshape((-1,) + shape)
    xt = (xt.astype("float32") / 255.0).reshape((-1,) + shape)
    return (x, y.astype("int64")), (xt, yt.astype("int64"))
