"""Model level: ``save(model, path)`` and ``load(path) -> keras.Model`` on top of :mod:`.storage`.

A model file (kind ``"model"``) holds the architecture as Keras config JSON (the archive member
``config.json``: no pickles, no code) and each layer's weights as the tensors
``<layer name>/<k>`` in the order of ``layer.weights`` (``name`` = the variable's path), optionally
the optimizer's variables as ``optimizer/<k>``. The writer streams: one tensor is materialized at
a time. Also here, because they need Keras: unpacking a model file to ``.keras`` and measuring the
size of Keras' own dense file of the same model.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

from .errors import BadArgumentError, CorruptFileError, SparseCompError, UnsupportedFormatError, WeightMismatchError
from .safety import check_config_safe
from .storage import Limits, Reader, StorageReport, Writer, atomic_output
from .storage import inspect as inspect_file
from .storage import verify as verify_file
from .storage import unpack as unpack_tree
from .storage.guard import guarded
from .storage.h5tree import new_file
from .storage.h5tree import text
from .storage.spec import FORMAT_VERSION, HDF5_SIGNATURE, KERAS_WEIGHTS_MEMBER, OPTIMIZER_GROUPS

__all__ = ["save", "load", "unpack", "inspect", "verify", "keras_baseline_bytes", "resolve_architecture",
           "clone_model", "is_sparse_file"]

log = logging.getLogger(__name__)


def _keras():
    import keras  # imported lazily: the tensor level works without TensorFlow
    return keras


def _to_numpy(variable) -> np.ndarray:
    """One copy of a variable's value (``convert_to_numpy`` makes two on TensorFlow)."""
    numpy = getattr(variable, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else _keras().ops.convert_to_numpy(variable))


def clone_model(model):
    """A new, uncompiled model with the same architecture and weights; shares nothing with ``model``.

    (``keras.models.clone_model`` would compile the clone with the *same* optimizer object.)
    """
    try:
        clone = type(model).from_config(model.get_config())
    except Exception as exc:  # subclassed models and custom layers without get_config
        raise BadArgumentError(f"cannot clone the model (Sequential or functional models only): {exc}",
                               rule="argument.model") from None
    clone.set_weights(model.get_weights())
    return clone


def save(model, path, *, min_ratio: float = 1.0, include_optimizer: bool = False, level: int = 2, codecs=None,
         progress=None) -> StorageReport:
    """Save a Keras model as a ``.sparse.h5`` file, each weight tensor with the cheapest codec.

    Args:
        model: a built ``keras.Model`` (not modified).
        path: destination; written atomically.
        min_ratio: a codec other than dense only where it is at least this many times smaller (>= 1).
        include_optimizer: also store the optimizer's variables (off by default, like a
            deployment checkpoint; the report counts them apart when present).
        level: 1 (fast), 2 (default), 3 (smallest); see :func:`sparsecomp.pack`.
        codecs: names of the codecs the size check may choose from (default: every lossless one).
        progress: optional ``callable(done, total, member)``.

    Returns:
        The :class:`~sparsecomp.StorageReport` of the written file.

    Example:
        >>> report = sparsecomp.save(model, "lenet5.sparse.h5")   # doctest: +SKIP
        >>> print(report)                                         # doctest: +SKIP
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                               rule="argument.model")
    if not model.built:
        raise BadArgumentError("the model is not built; call it on data or build it first",
                               rule="argument.model")
    path = Path(path)
    config = json.dumps(keras.saving.serialize_keras_object(model), separators=(",", ":")).encode("utf-8")
    layers = [layer for layer in model.layers if layer.weights]
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise BadArgumentError("layer names must be unique to be saved", rule="argument.model")
    opt_vars = []
    if include_optimizer and getattr(model, "optimizer", None) is not None and model.optimizer.built:
        opt_vars = list(model.optimizer.variables)
        if "optimizer" in names:
            raise BadArgumentError("a layer named 'optimizer' cannot be saved with include_optimizer=True",
                                   rule="argument.model")
    total = sum(len(layer.weights) for layer in layers) + len(opt_vars)
    dropped = not include_optimizer and bool(getattr(model, "optimizer", None) is not None and model.optimizer.built)
    with atomic_output(path) as tmp:
        with new_file(tmp) as out:
            writer = Writer(out, kind="model", file=path, min_ratio=min_ratio, level=level, codecs=codecs,
                            progress=progress, total=total, optimizer_dropped=dropped,
                            keras_version=keras.__version__)
            for layer in layers:
                for k, v in enumerate(layer.weights):
                    writer.tensor(f"{layer.name}/{k}", _to_numpy(v), layer=layer.name, name=v.path)
            for k, v in enumerate(opt_vars):
                writer.tensor(f"optimizer/{k}", _to_numpy(v), layer="optimizer", category="optimizer", name=v.path)
            writer.member({"name": "config.json", "compress_type": 0, "tree": False}, config)
            writer.close()
    return StorageReport(file=str(path), kind="model", file_bytes=path.stat().st_size, records=writer.records,
                         optimizer_dropped=dropped, format_version=FORMAT_VERSION)


def resolve_architecture(spec):
    """Turn ``"module:function"``, a callable or a model into a fresh, unloaded keras.Model.

    A ``"module:function"`` string is imported (the current directory is searched first, so
    ``models.lenet:lenet5`` works from a checkout) and called without arguments. A model given
    directly is cloned, never modified.
    """
    keras = _keras()
    if isinstance(spec, keras.Model):
        return clone_model(spec)
    if isinstance(spec, str):
        module_name, sep, func_name = spec.partition(":")
        if not sep or not module_name or not func_name:
            raise BadArgumentError(f"architecture must look like 'module:function'. Received: {spec!r}",
                                   rule="argument.architecture")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BadArgumentError(f"cannot import {module_name!r}: {exc}", rule="argument.architecture") from None
        fn = getattr(module, func_name, None)
        if not callable(fn):
            raise BadArgumentError(f"{module_name!r} has no function {func_name!r}", rule="argument.architecture")
        spec = fn
    if not callable(spec):
        raise BadArgumentError(f"architecture must be 'module:function', a callable or a model. "
                               f"Received: {type(spec).__name__}", rule="argument.architecture")
    model = spec()
    if not isinstance(model, keras.Model):
        raise BadArgumentError(f"the architecture function returned {type(model).__name__}, not a keras.Model",
                               rule="argument.architecture")
    return model


def _config_from(r: Reader):
    members, blob = r.files()
    for i, m in enumerate(members):
        if isinstance(m, dict) and m.get("name") == "config.json" and not m.get("tree"):
            try:
                return json.loads(blob(i))
            except (ValueError, UnicodeDecodeError):
                raise CorruptFileError("config.json is not valid JSON", rule="keras.config",
                                       file=r.path, member="config.json") from None
    return None


def _set_model_weights(r: Reader, model, *, restore_optimizer: bool) -> None:
    """Assign the stored weights to ``model`` layer by layer, after checking every shape."""
    by_layer: dict[str, dict] = {}
    optimizer = []
    for t in r.tensors():
        if t.category == "optimizer":
            optimizer.append(t)
            continue
        layer, _, k = t.path.partition("/")
        if not k.isdigit() or "/" in k:
            raise CorruptFileError("a model file's tensors are <layer>/<k>", rule="format.tree", file=r.path,
                                   member=t.path)
        by_layer.setdefault(layer, {})[int(k)] = t
    wanted = [layer for layer in model.layers if layer.weights]
    extra = set(by_layer) - {layer.name for layer in wanted}
    if extra:
        raise WeightMismatchError(f"the file has weights for layers the model lacks: {sorted(extra)[:5]}",
                                  rule="weights.layers", file=r.path)
    plan = []
    for layer in wanted:
        stored = by_layer.get(layer.name)
        if stored is None:
            raise WeightMismatchError(f"no weights stored for layer {layer.name!r}", rule="weights.layers",
                                      file=r.path, member=layer.name)
        if sorted(stored) != list(range(len(layer.weights))):
            raise WeightMismatchError(f"layer {layer.name!r} has {len(layer.weights)} weights, the file "
                                      f"{len(stored)}", rule="weights.count", file=r.path, member=layer.name)
        for k, v in enumerate(layer.weights):
            if tuple(stored[k].shape) != tuple(v.shape):
                raise WeightMismatchError(f"stored shape {tuple(stored[k].shape)} != model shape {tuple(v.shape)} "
                                          f"for {v.path}", rule="weights.shape", file=r.path, member=stored[k].path)
        plan.append((layer, [stored[k] for k in range(len(layer.weights))]))
    for layer, entries in plan:
        layer.set_weights([r.read(t) for t in entries])
    if restore_optimizer and optimizer and getattr(model, "optimizer", None) is not None:
        opt = model.optimizer
        if not opt.built:
            opt.build(model.trainable_variables)
        optimizer.sort(key=lambda t: int(t.path.rpartition("/")[2]) if t.path.rpartition("/")[2].isdigit() else -1)
        if len(optimizer) != len(opt.variables):
            raise WeightMismatchError(f"optimizer has {len(opt.variables)} variables, the file {len(optimizer)}",
                                      rule="weights.optimizer", file=r.path)
        for var, t in zip(opt.variables, optimizer):
            if tuple(var.shape) != tuple(t.shape):
                raise WeightMismatchError(f"optimizer variable {var.path} shape mismatch",
                                          rule="weights.optimizer", file=r.path)
        for var, t in zip(opt.variables, optimizer):
            var.assign(r.read(t))


def _tree_attrs(r: Reader, path: str) -> dict:
    """The source attributes of a group of a packed checkpoint (``""``: the source's root)."""
    node = r.tree if not path else r.tree.get(path)
    if node is None:
        return {}
    return dict((a[0], a[1]) for a in r.checker.attrs(node, f"tree/{path}" if path else "tree"))


def _keras2_layout(r: Reader, root: str):
    from .keras2 import Keras2Layout
    tensors = {t.path: t for t in r.tensors()}

    def read(path):
        if path not in tensors:
            raise WeightMismatchError(f"the file lists a weight it does not hold: {path}", rule="weights.missing",
                                      file=r.path, member=path)
        return r.read(tensors[path])
    return Keras2Layout(root, lambda p: _tree_attrs(r, p), read, file=r.path)


def _compile_from_training_config(model, training_config) -> None:
    """Compile a Keras 2 model like its ``training_config`` said, where that is plain names."""
    import keras
    try:
        tc = json.loads(training_config)
    except (TypeError, ValueError):
        return
    if not isinstance(tc, dict) or not isinstance(tc.get("loss"), str):
        return
    metrics = [m for m in tc.get("metrics") or [] if isinstance(m, str)] or ["accuracy"]
    opt = tc.get("optimizer_config") or {}
    name = opt.get("class_name") if isinstance(opt, dict) else None
    cfg = opt.get("config", {}) if isinstance(opt, dict) else {}
    lr = cfg.get("learning_rate", cfg.get("lr")) if isinstance(cfg, dict) else None
    try:
        optimizer = keras.optimizers.get(str(name).lower()) if name else "adam"
        if lr is not None and isinstance(lr, (int, float)) and not isinstance(optimizer, str):
            optimizer.learning_rate = float(lr)
        model.compile(optimizer=optimizer, loss=keras.losses.get(tc["loss"]), metrics=metrics)
    except (ValueError, TypeError, KeyError):
        return                                 # an optimizer or loss Keras 3 does not know: left uncompiled


def _load_h5(r: Reader, path: Path, *, architecture, custom_objects, safe_mode, compile, limits):
    """A packed ``.h5``: Keras 2 through the translator, Keras 3 legacy files through Keras."""
    from .keras2 import assign_weights, is_keras2, translate_config
    keras = _keras()
    attrs = _tree_attrs(r, "")
    version = text(attrs.get("keras_version")) or ""
    legacy = text(attrs.get("model_config"))
    config = None
    if legacy is not None and architecture is None:
        try:
            config = json.loads(legacy)
        except (ValueError, TypeError):
            raise CorruptFileError("model_config is not valid JSON", rule="keras.config", file=path) from None
        if version.startswith("1."):
            raise UnsupportedFormatError(f"Keras {version} model configs are not supported (Keras 2 and 3 are)",
                                         rule="model.legacy", file=path)
        check_config_safe(config, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
        if is_keras2(config, version):
            translated = translate_config(config, file=path)
            check_config_safe(translated, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
            try:
                model = keras.saving.deserialize_keras_object(translated, custom_objects=custom_objects,
                                                              safe_mode=safe_mode)
            except SparseCompError:
                raise
            except Exception as exc:  # Keras raises many types for configs it cannot rebuild
                raise CorruptFileError(f"Keras could not rebuild the translated Keras {version or '2'} model: {exc}",
                                       rule="keras.rebuild", file=path) from None
            assign_weights(model, _keras2_layout(r, "model_weights" if "model_weights" in r.tree else ""))
            if compile and attrs.get("training_config") is not None:
                _compile_from_training_config(model, text(attrs.get("training_config")))
            return model
    if architecture is not None:
        model = resolve_architecture(architecture)
        root = "model_weights" if "model_weights" in r.tree else ""
        if "layer_names" in _tree_attrs(r, root):          # the Keras 2 layout (and Keras 3's legacy .h5)
            assign_weights(model, _keras2_layout(r, root))
            return model
    elif config is None:
        raise BadArgumentError("this checkpoint holds weights only; pass architecture='module:function' to rebuild "
                               "the model", rule="argument.architecture", file=path)
    return None                                    # a Keras 3 layout: Keras reads it (see load)


@guarded
def load(path, *, architecture=None, custom_objects=None, safe_mode: bool = True, compile: bool = True,
         limits: Limits | None = None):
    """Rebuild a ``keras.Model`` from a ``.sparse.h5`` file or any Keras checkpoint.

    Reads files written by :func:`save` (weights bit-identical), packed checkpoints, and checkpoints
    as they are: Keras 3 ``.keras``, full-model ``.h5`` of Keras 2 or 3, weights-only ``.h5`` and
    ``.weights.h5`` (with ``architecture``). Keras 2 configs are translated to Keras 3 as data
    (:mod:`sparsecomp.keras2`) and their weights assigned by layer name, shape by shape; nothing
    from any file is executed. Every structure is validated and every tensor's checksum checked.

    Args:
        path: the file.
        architecture: how to build the model when the file has no config (or to override it):
            ``"module:function"``, a callable returning a model, or a model to clone.
        custom_objects: classes/functions the config may name beyond Keras' own.
        safe_mode: refuse configs that would run code from the file (Lambda layers, objects from
            other modules). Set ``False`` only for files you trust.
        compile: compile the model with its stored training config, when there is one.
        limits: bounds on what the file may declare.

    Raises:
        UnsafeModelError, WeightMismatchError, CorruptFileError, UnsupportedFormatError,
        InvalidTensorError, ResourceLimitError.
    """
    keras = _keras()
    path = Path(path)
    if not is_sparse_file(path):
        return _load_checkpoint(path, architecture=architecture, custom_objects=custom_objects, safe_mode=safe_mode,
                                compile=compile, limits=limits)
    with Reader(path, limits) as r:
        kind = r.kind
        if kind == "model":
            config = _config_from(r)
            if architecture is not None:
                model = resolve_architecture(architecture)
            else:
                if config is None:
                    raise CorruptFileError("model file without config.json", rule="keras.config", file=path)
                check_config_safe(config, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
                if not compile:
                    config = dict(config)
                    config.pop("compile_config", None)
                try:
                    model = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects,
                                                                  safe_mode=safe_mode)
                except SparseCompError:
                    raise
                except Exception as exc:  # Keras raises many types for configs it cannot rebuild
                    raise CorruptFileError(f"Keras could not rebuild the model: {exc}",
                                           rule="keras.rebuild", file=path) from None
            _set_model_weights(r, model, restore_optimizer=compile)
            r.check_digest()               # version 3, every tensor read: the file digest
            return model
        if kind == "keras":
            config = _config_from(r)
            if config is not None and architecture is None:
                check_config_safe(config, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
        else:
            model = _load_h5(r, path, architecture=architecture, custom_objects=custom_objects, safe_mode=safe_mode,
                             compile=compile, limits=limits)
            if model is not None:
                r.check_digest()
                return model
        source_name = r.meta["source_name"] or ""
    suffix = ".keras" if kind == "keras" else (".weights.h5" if source_name.endswith(".weights.h5") else ".h5")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / f"checkpoint{suffix}"
        unpack_tree(path, tmp, limits=limits)
        try:
            if architecture is not None:
                model = resolve_architecture(architecture)
                model.load_weights(tmp)
            else:
                model = keras.saving.load_model(tmp, custom_objects=custom_objects, compile=compile,
                                                safe_mode=safe_mode)
        except SparseCompError:
            raise
        except Exception as exc:  # Keras' loaders raise ValueError, KeyError, TypeError...
            raise WeightMismatchError(f"Keras could not load the checkpoint into the model: {exc}",
                                      rule="keras.load", file=path) from None
    return model


def is_sparse_file(path) -> bool:
    """Whether ``path`` is meant as a ``.sparse.h5`` file: HDF5 whose root has the attributes
    ``format`` and ``format_version`` (names only: the reader then checks their values)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != HDF5_SIGNATURE:
                return False
        with h5py.File(path, "r") as f:
            return "format" in f.attrs and "format_version" in f.attrs
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        return False


def _load_checkpoint(path: Path, *, architecture, custom_objects, safe_mode, compile, limits):
    """A checkpoint as it is: a ``.keras`` archive through Keras after the config scan, anything
    HDF5 packed into a temporary ``.sparse.h5`` first (the hardened reader then reads it)."""
    from .storage import pack
    from .storage.pack import source_kind
    kind = source_kind(path, limits or Limits())          # refuses what is neither HDF5 nor a .keras archive
    with tempfile.TemporaryDirectory() as td:
        packed = Path(td) / "checkpoint.sparse.h5"
        pack(path, packed, limits=limits, level=1)
        del kind
        return load(packed, architecture=architecture, custom_objects=custom_objects, safe_mode=safe_mode,
                    compile=compile, limits=limits)


@guarded
def unpack(src, dst, *, limits: Limits | None = None, progress=None) -> Path:
    """Write the original checkpoint back from a ``.sparse.h5`` file.

    A packed checkpoint unpacks to its source's kind (``.h5`` / ``.weights.h5`` / ``.keras``) with
    identical datasets (dtype, shape, values bit for bit) and attributes, so loading code written
    for the original reads it unchanged; a file written by :func:`save` unpacks to a ``.keras``
    archive (the model is rebuilt and saved by Keras).

    Raises:
        SparseCompError subclasses for a bad input; WriteError if the output cannot be written.
    """
    src, dst = Path(src), Path(dst)
    with Reader(src, limits) as r:
        kind = r.kind
    if kind != "model":
        return unpack_tree(src, dst, limits=limits, progress=progress)
    if src.resolve() == dst.resolve():
        raise BadArgumentError("the output must differ from the input", rule="argument.same_file", file=src)
    if dst.suffix != ".keras":
        raise BadArgumentError(f"a model file unpacks to a .keras archive; got {dst.name!r}",
                               rule="argument.suffix", file=dst)
    model = load(src, limits=limits, compile=False)
    with atomic_output(dst) as tmp:
        model.save(tmp.with_suffix(".keras"))
        os.replace(tmp.with_suffix(".keras"), tmp)
    return dst


def _strip_optimizer(h5path: Path) -> None:
    """Rewrite an HDF5 checkpoint without its optimizer groups (HDF5 does not shrink in place)."""
    tmp = h5path.with_suffix(".tmp")
    with h5py.File(h5path, "r") as src, h5py.File(tmp, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs.create(k, v, dtype=src.attrs.get_id(k).dtype)
        for name in src:
            if name not in OPTIMIZER_GROUPS:
                src.copy(name, dst, name=name)
    os.replace(tmp, h5path)


@guarded
def keras_baseline_bytes(path, *, limits: Limits | None = None) -> int:
    """Size of Keras' own dense file of the same model, without optimizer state.

    Measured, not estimated: for a model file the model is rebuilt and saved with
    ``model.save(...keras)``; for a packed checkpoint the dense checkpoint is written back without
    its optimizer groups (the same datasets Keras wrote) and its size taken.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as td:
        with Reader(path, limits) as r:
            kind = r.kind
        if kind == "model":
            model = load(path, limits=limits, compile=False)
            out = Path(td) / "model.keras"
            model.save(out)
            return out.stat().st_size
        dense = Path(td) / ("dense" + (".keras" if kind == "keras" else ".h5"))
        unpack_tree(path, dense, limits=limits)
        if kind == "keras":
            stripped = Path(td) / "stripped.keras"
            with zipfile.ZipFile(dense) as zin, zipfile.ZipFile(stripped, "w") as zout:
                for info in zin.infolist():
                    if info.filename == KERAS_WEIGHTS_MEMBER:
                        w = Path(td) / "w.h5"
                        w.write_bytes(zin.read(info))
                        _strip_optimizer(w)
                        zout.write(w, info.filename, compress_type=info.compress_type)
                    else:
                        zout.writestr(info, zin.read(info))
            return stripped.stat().st_size
        _strip_optimizer(dense)
        return dense.stat().st_size


@guarded
def inspect(path, *, baseline: bool = True, limits: Limits | None = None, progress=None,
            isolate: bool = False) -> StorageReport:
    """Report where the bytes of a ``.sparse.h5`` file go, and (``baseline``) how big Keras' own
    dense file of the same model is.

    Per tensor: layer, shape, parameters, non-zeros, density, codec, bytes per stream, ratio;
    totals; the file's size, its metadata and its bytes per non-zero; and, when ``baseline``,
    the size of Keras' own dense file without optimizer state, measured by writing it to a
    temporary directory. Tensor values are not decoded (:func:`sparsecomp.verify` does the full
    check). ``isolate=True`` parses in a child process with memory and time limits (the
    baseline is then skipped: it would rebuild the model in this process).
    """
    if isolate:
        from .isolation import run_isolated
        return run_isolated("inspect", path, limits=limits)
    report = inspect_file(path, limits=limits, progress=progress)
    if baseline:
        report.keras_bytes = keras_baseline_bytes(path, limits=limits)
    return report


@guarded
def verify(path, *, limits: Limits | None = None, progress=None, isolate: bool = False) -> StorageReport:
    """Fully validate a ``.sparse.h5`` file: structure, every codec's invariants, every checksum,
    and (model configs) that loading would run no code from the file.

    Returns the storage report when the file is sound; raises a :class:`SparseCompError`
    subclass naming the member and the rule otherwise. ``isolate=True`` does it all in a child
    process with memory and time limits (:mod:`sparsecomp.isolation`), which a file crafted
    against libhdf5 can crash or stall without harming the caller.
    """
    if isolate:
        from .isolation import run_isolated
        return run_isolated("verify", path, limits=limits)
    return verify_file(path, limits=limits, progress=progress)
