"""sparsecomp: make trained Keras models smaller on disk, and prove it.

The public API, listed once::

    save(model, path)        model -> .sparse.h5 (each tensor dense or CSR, by exact size check)
    load(path)               .sparse.h5 -> keras.Model, bit-identical weights, no code from the file
    pack(src, dst)           any HDF5 / .keras checkpoint -> .sparse.h5 (tensor level, no Keras needed)
    unpack(src, dst)         .sparse.h5 -> the original checkpoint, identical datasets and attributes
    inspect(path)            where the bytes go (StorageReport: table, JSON)
    verify(path)             full validation, every checksum
"""

__version__ = "0.1.0"

from .container import Limits, inspect, pack, read_tensors, unpack, verify  # noqa: E402
from .csr import SizeCheck, size_check  # noqa: E402
from .data import load_mnist  # noqa: E402
from .errors import (BadArgumentError, CorruptFileError, DataError, InvalidTensorError,  # noqa: E402
                     ResourceLimitError, SparseCompError, UnsafeModelError, UnsupportedFormatError,
                     WeightMismatchError, WriteError)
from .model_io import load, save  # noqa: E402
from .report import StorageReport, TensorRecord  # noqa: E402

__all__ = [
    "__version__",
    "save", "load", "pack", "unpack", "inspect", "verify", "read_tensors",
    "size_check", "SizeCheck", "Limits", "StorageReport", "TensorRecord", "load_mnist",
    "SparseCompError", "BadArgumentError", "CorruptFileError", "UnsupportedFormatError",
    "InvalidTensorError", "ResourceLimitError", "UnsafeModelError", "WeightMismatchError",
    "WriteError", "DataError",
]
