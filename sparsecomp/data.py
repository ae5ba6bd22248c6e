"""Datasets, offline, and the input a model expects.

Sources (``--data`` on the command line, :func:`load_data` in Python):

- ``mnist``: the package's own copy of MNIST (``sparsecomp/_data/mnist``, verified against the
  SHA-256 of the uncompressed files); nothing is ever downloaded;
- a directory of idx files (MNIST's format, which other datasets share): ``train-images-idx3-ubyte``
  and ``train-labels-idx1-ubyte``, optionally ``t10k-*``/``test-*`` for the test split, each
  optionally gzipped;
- an ``.npz`` with ``x_train, y_train`` and optionally ``x_test, y_test`` (no pickles);
- an image directory: one sub-directory per class (``keras.utils.image_dataset_from_directory``),
  or ``train/`` and ``test/`` each holding those;
- ``module:function``: your code, called without arguments, returning
  ``((x_train, y_train), (x_test, y_test))`` or ``(x_train, y_train)``.

:func:`prepare` then delivers what the model expects: shaped like its input, labels checked
against its output, and scaled — integer pixels go in as 0-255 when the model rescales them
itself (a leading ``Rescaling`` or ``Normalization``), as 0-1 otherwise; ``input_scale`` says
otherwise explicitly. Every size a file claims is checked before anything is allocated.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadArgumentError, DataError

__all__ = ["load_mnist", "mnist_dir", "mnist_for", "load_data", "prepare", "input_expectation", "Dataset",
           "BUILTIN_MNIST", "INPUT_SCALES"]

BUILTIN_MNIST = Path(__file__).parent / "_data" / "mnist"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MAX_FILE_BYTES = 1 << 30          # no dataset file may decode to more than 1 GiB
#: idx type codes (the format's third byte) -> NumPy dtype, big-endian as the format stores them
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
INPUT_SCALES = ("auto", "raw", "0-1", "-1-1")


def mnist_dir(directory=None) -> Path:
    """The directory MNIST is read from: the argument, ``$SPARSECOMP_MNIST_DIR``, or the built-in copy."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get("SPARSECOMP_MNIST_DIR")
    return Path(env) if env else BUILTIN_MNIST


def _read_bounded(p: Path) -> bytes:
    opener = gzip.open if p.name.endswith(".gz") else open
    try:
        with opener(p, "rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read it: {exc}", rule="data.read", file=p) from None
    if len(raw) > _MAX_FILE_BYTES:
        raise DataError(f"it decodes to more than {_MAX_FILE_BYTES} bytes", rule="data.size", file=p)
    return raw


def _find(directory: Path, stems) -> Path | None:
    for stem in stems:
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                return directory / name
    return None


def parse_idx(raw: bytes, name: str = "idx") -> np.ndarray:
    """An idx file's array (any type and rank the format allows), sizes checked before use."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{name}: not an idx file (magic {raw[:4].hex()})", rule="data.format")
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    if not 1 <= ndim <= 4 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{name}: {ndim} dimensions in the header", rule="data.format")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in dims:
        count *= d
    if len(raw) != 4 + 4 * ndim + count * dtype.itemsize:
        raise DataError(f"{name}: the header declares {count * dtype.itemsize} bytes of data, the file holds "
                        f"{len(raw) - 4 - 4 * ndim}", rule="data.format")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


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
        p = _find(directory, [stem])
        if p is None:
            raise DataError(
                f"MNIST file {stem}(.gz) not found in {directory}. sparsecomp never downloads data: put the "
                "four idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and pass it "
                "(--data DIR, load_mnist(DIR) or SPARSECOMP_MNIST_DIR=DIR).", rule="data.missing",
                file=directory / (stem + ".gz"))
        raw = _read_bounded(p)
        if stem in digests and hashlib.sha256(raw).hexdigest() != digests[stem]:
            raise DataError(f"{stem}: SHA-256 differs from SHA256SUMS.raw (altered file?)",
                            rule="data.checksum", file=directory / stem)
        arrays[key] = parse_idx(raw, stem)
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


# ---- any source -------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Arrays as a source gave them (no scaling yet), with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source: str = ""
    notes: list = field(default_factory=list)


def _idx_dir(d: Path) -> Dataset:
    xi = _find(d, ["train-images-idx3-ubyte", "train-images.idx3-ubyte", "train-images-idx4-ubyte"])
    yi = _find(d, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])
    if xi is None or yi is None:
        raise DataError("an idx directory needs train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)",
                        rule="data.missing", file=d)
    x, y = parse_idx(_read_bounded(xi), xi.name), parse_idx(_read_bounded(yi), yi.name)
    xt_p = _find(d, ["t10k-images-idx3-ubyte", "test-images-idx3-ubyte", "t10k-images.idx3-ubyte"])
    yt_p = _find(d, ["t10k-labels-idx1-ubyte", "test-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])
    xt = yt = None
    if xt_p is not None and yt_p is not None:
        xt, yt = parse_idx(_read_bounded(xt_p), xt_p.name), parse_idx(_read_bounded(yt_p), yt_p.name)
    return Dataset(x, y, xt, yt, source=f"idx files in {d}")


def _npz(p: Path) -> Dataset:
    try:
        with zipfile.ZipFile(p) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"not an .npz archive ({exc})", rule="data.format", file=p) from None
    if total > 4 * _MAX_FILE_BYTES:
        raise DataError(f"its arrays declare {total} bytes", rule="data.size", file=p)
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"x_train", "y_train"} <= keys:
                raise DataError(f"an .npz needs x_train and y_train (and optionally x_test, y_test); it has "
                                f"{sorted(keys)}", rule="data.format", file=p)
            get = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in keys}
    except ValueError as exc:
        raise DataError(f"{exc} (object arrays are refused: no pickles)", rule="data.format", file=p) from None
    return Dataset(get["x_train"], get["y_train"], get.get("x_test"), get.get("y_test"), source=f"arrays in {p}")


def _images(d: Path, model) -> Dataset:
    import keras
    shape = tuple(model.inputs[0].shape[1:]) if model is not None else None
    if shape is None or len(shape) != 3:
        raise DataError(f"an image directory needs a model with an image input (height, width, channels); "
                        f"the model's input is {shape}", rule="data.shape", file=d)
    color = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(shape[2])
    if color is None:
        raise DataError(f"images with {shape[2]} channels are not supported", rule="data.shape", file=d)

    def read(sub: Path):
        # shuffled (seeded): the validation split is the last part of the training data, and a
        # directory read in class order would leave it a single class
        ds = keras.utils.image_dataset_from_directory(sub, labels="inferred", label_mode="int", color_mode=color,
                                                      image_size=shape[:2], batch_size=None, shuffle=True, seed=0,
                                                      verbose=False)
        xs, ys = [], []
        for a, b in ds:
            xs.append(np.asarray(a))
            ys.append(int(b))
        if not xs:
            raise DataError("no images found", rule="data.missing", file=sub)
        return np.stack(xs).astype(np.uint8), np.array(ys)        # 8-bit images, decoded to floats by Keras

    split = (d / "train").is_dir() and (d / "test").is_dir()
    x, y = read(d / "train" if split else d)
    xt, yt = read(d / "test") if split else (None, None)
    return Dataset(x, y, xt, yt, source=f"images in {d}" + (" (train/ and test/)" if split else ""),
                   notes=[f"images resized to {shape[0]}x{shape[1]} ({color})"])


def _function(spec: str) -> Dataset:
    module_name, _, func_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"cannot import {spec!r}: {exc}", rule="data.function") from None
    out = fn()
    if isinstance(out, dict):
        return Dataset(out["x_train"], out["y_train"], out.get("x_test"), out.get("y_test"), source=spec)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], tuple):
        (x, y), test = out
        xt, yt = test if test is not None else (None, None)
        return Dataset(x, y, xt, yt, source=spec)
    if isinstance(out, tuple) and len(out) == 2:
        return Dataset(out[0], out[1], source=spec)
    raise DataError(f"{spec} returned {type(out).__name__}; expected ((x, y), (x_test, y_test)) or (x, y)",
                    rule="data.function")


def load_data(spec, *, model=None) -> Dataset:
    """The arrays of a data source: ``"mnist"``, an idx directory, an ``.npz``, an image
    directory, or ``"module:function"`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise BadArgumentError(f"`data` must name a source. Received: {spec!r}", rule="argument.data")
    if spec == "mnist":
        (x, y), (xt, yt) = load_mnist()
        return Dataset(x, y, xt, yt, source="MNIST (built-in copy)")
    p = Path(spec)
    if p.is_dir():
        has_idx = _find(p, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]) is not None
        return _idx_dir(p) if has_idx else _images(p, model)
    if p.is_file() and p.suffix == ".npz":
        return _npz(p)
    if ":" in spec and not p.exists():
        return _function(spec)
    raise DataError(f"--data {spec!r}: not 'mnist', a directory (idx files or images), an .npz, nor module:function",
                    rule="data.missing", file=p if p.exists() else None)


# ---- what the model expects -------------------------------------------------------------------

def input_expectation(model) -> tuple[str, str]:
    """``(scale, why)``: ``"raw"`` when the model's first computing layer rescales or normalizes
    its input itself (it wants pixels as stored, 0-255), else ``"0-1"``."""
    layer = None
    for candidate in model.layers:
        kind = type(candidate).__name__
        if kind == "InputLayer":
            continue
        if kind in ("Sequential", "Functional") and getattr(candidate, "layers", None):
            inner = [c for c in candidate.layers if type(c).__name__ != "InputLayer"]
            candidate = inner[0] if inner else candidate
        layer = candidate
        break
    kind = type(layer).__name__ if layer is not None else ""
    if kind == "Rescaling":
        cfg = layer.get_config()
        return "raw", f"the model's first layer Rescaling(scale={cfg.get('scale'):.6g}, offset={cfg.get('offset')})"
    if kind == "Normalization":
        return "raw", "the model's first layer Normalization(...) normalizes its input itself"
    return "0-1", "no Rescaling/Normalization at the model's input: integer pixels are fed divided by 255"


def _scale(x: np.ndarray, scale: str) -> np.ndarray:
    x = np.asarray(x)
    if scale == "raw":
        return x.astype("float32", copy=False)
    if scale == "0-1":
        return (x.astype("float32") / 255.0) if x.dtype.kind in "ui" else x.astype("float32", copy=False)
    if scale == "-1-1":
        return (x.astype("float32") / 127.5 - 1.0) if x.dtype.kind in "ui" else x.astype("float32", copy=False)
    raise BadArgumentError(f"`input_scale` must be one of {INPUT_SCALES}. Received: {scale!r}",
                           rule="argument.input_scale")


def _shape_for(x: np.ndarray, model, what: str) -> np.ndarray:
    want = tuple(model.inputs[0].shape[1:])
    got = tuple(x.shape[1:])
    if got == want:
        return x
    if None not in want and int(np.prod(got)) == int(np.prod(want)):
        return x.reshape((-1,) + want)
    raise DataError(f"{what}: samples of shape {got}; the model expects {want}", rule="data.shape")


def _labels(y: np.ndarray, model, what: str) -> np.ndarray:
    y = np.asarray(y)
    out = model.outputs[0].shape[-1]
    if y.ndim == 2 and y.shape[1] > 1:
        if out is not None and y.shape[1] != out:
            raise DataError(f"{what}: one-hot labels of {y.shape[1]} classes; the model has {out} outputs",
                            rule="data.labels")
        return y.astype("float32")
    y = y.reshape(-1)
    if y.dtype.kind not in "iub" and not np.all(np.mod(y, 1) == 0):
        raise DataError(f"{what}: labels must be class indices (integers); got {y.dtype}", rule="data.labels")
    y = y.astype("int64")
    hi = 1 if out == 1 else out
    if len(y) and (y.min() < 0 or (hi is not None and y.max() > (hi if out == 1 else hi - 1))):
        raise DataError(f"{what}: labels run from {y.min()} to {y.max()}; the model's {out} outputs take "
                        f"0..{hi if out == 1 else hi - 1}", rule="data.labels")
    return y


def prepare(data: Dataset, model, *, input_scale: str = "auto", limit: int | None = None):
    """``((x, y), test or None, notes)``: the arrays shaped, scaled and checked for ``model``.

    ``input_scale``: ``"auto"`` (see :func:`input_expectation`), ``"raw"``, ``"0-1"``, ``"-1-1"``.
    ``limit``: keep the first ``limit`` training samples (quick runs).
    """
    if input_scale not in INPUT_SCALES:
        raise BadArgumentError(f"`input_scale` must be one of {INPUT_SCALES}. Received: {input_scale!r}",
                               rule="argument.input_scale")
    notes = list(data.notes)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    if len(x) != len(y):
        raise DataError(f"{len(x)} training samples but {len(y)} labels", rule="data.labels")
    if x.dtype.kind not in "uif":
        raise DataError(f"training samples of dtype {x.dtype} are not numbers", rule="data.format")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    scale = input_scale
    if scale == "auto":
        scale, why = input_expectation(model)
        if x.dtype.kind == "f" and scale == "0-1":
            scale, why = "raw", "float data is fed as it is (pass --input-scale to change that)"
        notes.append(f"input scale {scale}: {why}")
    else:
        notes.append(f"input scale {scale} (as asked)")
    x = _shape_for(_scale(x, scale), model, "training data")
    y = _labels(y, model, "training labels")
    test = None
    if data.x_test is not None and data.y_test is not None:
        test = (_shape_for(_scale(np.asarray(data.x_test), scale), model, "test data"),
                _labels(data.y_test, model, "test labels"))
    return (x, y), test, notes
