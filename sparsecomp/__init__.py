"""sparsecomp: make trained Keras models smaller on disk, and prove it.

The public API, listed once::

    save(model, path)        model -> .sparse.h5 (each tensor with its cheapest codec, exact byte count)
    load(path)               .sparse.h5 (or a Keras 2/3 checkpoint) -> keras.Model, no code from the file
    pack(src, dst)           any HDF5 / .keras checkpoint -> .sparse.h5 (tensor level, no Keras needed)
    unpack(src, dst)         .sparse.h5 -> the original checkpoint, identical datasets and attributes
    inspect(path)            where the bytes go (StorageReport: table, JSON)
    verify(path)             full validation, every checksum
    prune(model, data)       iterative std-threshold pruning over frozen groups -> (model, history)
    prune_correlation(...)   magnitude + weight/change correlation, layer by layer from the last
    prune_structured(...)    whole filters/units by l1, l2, apoz, random or tlt; surgery; retrain
    FineTuning               the fine-tuning settings every method shares
    remove_channels(m, plan) structured surgery through BN, Add, Concatenate, Depthwise, Flatten
    find_dead_units(model)   a plan of units that can go without changing outputs; remove_units applies it
    quantize(model, data)    trained weight sharing (k-means codebooks, fine-tuned) -> (model, history)
    prune_data_free(model, s) / pack_data_free(src, dst, s)   to a target sparsity without data
    compress(model, data, path)  prune + remove dead units [+ quantize] + save + report
"""

from .version import __version__  # noqa: E402
from .storage import Limits, SizeCheck, StorageReport, TensorRecord, pack, read_tensors, size_check  # noqa: E402
from .data import load_mnist  # noqa: E402
from .errors import (BadArgumentError, CorruptFileError, DataError, InvalidTensorError,  # noqa: E402
                     ResourceLimitError, SparseCompError, UnsafeModelError, UnsupportedFormatError,
                     WeightMismatchError, WriteError, ClusterError)
from .model_io import inspect, load, save, unpack, verify  # noqa: E402
from .history import PruneHistory, PruneStep, QuantizeHistory, StructuredHistory, StructuredRound  # noqa: E402
from .training import FineTuning, PruningInterrupted  # noqa: E402
from .pruning import prune  # noqa: E402
from .correlation import prune_correlation  # noqa: E402
from .channels import ChannelGraph, ChannelPlan, remove_channels  # noqa: E402
from .structured import channel_scores, prune_structured, select_channels  # noqa: E402
from .methods import METHODS  # noqa: E402
from .criteria import CRITERIA  # noqa: E402
from .surgery import DeadUnitPlan, find_dead_units, remove_dead_units, remove_units  # noqa: E402
from .quantize import quantize  # noqa: E402
from .datafree import pack_data_free, prune_data_free  # noqa: E402
from .compress import CompressionResult, compress  # noqa: E402

__all__ = [
    "__version__",
    "save", "load", "pack", "unpack", "inspect", "verify", "read_tensors",
    "prune", "prune_correlation", "prune_structured", "FineTuning", "PruningInterrupted", "METHODS", "CRITERIA",
    "StructuredHistory", "StructuredRound", "channel_scores", "select_channels",
    "ChannelGraph", "ChannelPlan", "remove_channels", "PruneHistory", "PruneStep", "find_dead_units", "remove_units",
    "remove_dead_units", "DeadUnitPlan", "compress", "CompressionResult", "quantize", "QuantizeHistory",
    "prune_data_free", "pack_data_free",
    "size_check", "SizeCheck", "Limits", "StorageReport", "TensorRecord", "load_mnist",
    "SparseCompError", "BadArgumentError", "CorruptFileError", "UnsupportedFormatError",
    "InvalidTensorError", "ResourceLimitError", "UnsafeModelError", "WeightMismatchError",
    "WriteError", "DataError", "ClusterError",
]
