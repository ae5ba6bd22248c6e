"""Model level: ``save(model, path)`` and ``load(path) -> keras.Model`` on top of the container.

A model file (kind ``"model"``) holds the architecture as Keras config JSON (``/files``, member
``config.json``: no pickles, no code), each layer's weights under ``/tree/<layer name>/<k>`` in
the order of ``layer.weights``, and optionally the optimizer's variables under ``/optimizer``.
The writer streams: one tensor is materialized at a time.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from .container import (Limits, _Reader, fixed, guarded, new_file, new_group, text, _root_attrs, _TreeWriter,
                        _write_files_group, atomic_output, unpack)
from .csr import check_min_ratio
from .errors import BadArgumentError, CorruptFileError, SparseCompError, UnsafeModelError, WeightMismatchError
from .report import StorageReport
from .safety import check_config_safe

__all__ = ["save", "load", "resolve_architecture"]

log = logging.getLogger(__name__)


def _keras():
    import keras  # imported lazily: the tensor level works without TensorFlow
    return keras


def _to_numpy(variable) -> np.ndarray:
    """One copy of a variable's value (``convert_to_numpy`` makes two on TensorFlow)."""
    numpy = getattr(variable, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else _keras().ops.convert_to_numpy(variable))


def save(model, path, *, min_ratio: float = 1.0, include_optimizer: bool = False,
         progress=None) -> StorageReport:
    """Save a Keras model as a ``.sparse.h5`` file, each weight tensor dense or CSR.

    Args:
        model: a built ``keras.Model`` (not modified).
        path: destination; written atomically.
        min_ratio: CSR only where it is at least this many times smaller than dense (>= 1).
        include_optimizer: also store the optimizer's variables (off by default, like a
            deployment checkpoint; the report counts them apart when present).
        progress: optional ``callable(done, total, member)``.

    Returns:
        The :class:`~sparsecomp.report.StorageReport` of the written file.

    Example:
        >>> report = sparsecomp.save(model, "lenet5.sparse.h5")   # doctest: +SKIP
        >>> print(report)                                         # doctest: +SKIP
    """
    keras = _keras()
    min_ratio = check_min_ratio(min_ratio)
    if not isinstance(model, keras.Model):
        raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                               rule="argument.model")
    if not model.built:
        raise BadArgumentError("the model is not built; call it on data or build it first",
                               rule="argument.model")
    path = Path(path)
    config = json.dumps(keras.saving.serialize_keras_object(model)).encode("utf-8")
    layers = [layer for layer in model.layers if layer.weights]
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise BadArgumentError("layer names must be unique to be saved", rule="argument.model")
    opt_vars = []
    if include_optimizer and getattr(model, "optimizer", None) is not None and model.optimizer.built:
        opt_vars = list(model.optimizer.variables)
    total = sum(len(layer.weights) for layer in layers) + len(opt_vars)
    writer = _TreeWriter(min_ratio, Limits(), path, progress, total)
    with atomic_output(path) as tmp:
        with new_file(tmp) as out:
            _root_attrs(out, "model", model.name, None, min_ratio, not include_optimizer)
            out.attrs["keras_version"] = fixed(keras.__version__)
            tree = new_group(out, "tree")
            for layer in layers:
                g = new_group(tree, layer.name)
                for k, v in enumerate(layer.weights):
                    writer.write(g, str(k), _to_numpy(v), f"{layer.name}/{k}", layer=layer.name,
                                 category="weights", attrs=[("name", fixed(v.path), None, None)])
            if opt_vars:
                g = new_group(out, "optimizer")
                for k, v in enumerate(opt_vars):
                    writer.write(g, str(k), _to_numpy(v), f"optimizer/{k}", layer="optimizer",
                                 category="optimizer", attrs=[("name", fixed(v.path), None, None)])
            _write_files_group(out, [{"name": "config.json", "compress_type": 0, "tree": False}],
                               {"config.json": config})
    return StorageReport(file=str(path), kind="model", file_bytes=path.stat().st_size,
                         records=writer.records, optimizer_dropped=not include_optimizer and bool(
                             getattr(model, "optimizer", None) is not None and model.optimizer.built))


def resolve_architecture(spec):
    """Turn ``"module:function"``, a callable or a model into a fresh, unloaded keras.Model.

    A ``"module:function"`` string is imported (the current directory is searched first, so
    ``models.lenet:lenet5`` works from a checkout) and called without arguments. A model given
    directly is cloned, never modified.
    """
    keras = _keras()
    if isinstance(spec, keras.Model):
        from .pruning import clone_model
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


def _config_from(r: _Reader):
    members, blob = r.files()
    for i, m in enumerate(members):
        if isinstance(m, dict) and m.get("name") == "config.json" and not m.get("tree"):
            try:
                return json.loads(blob(i))
            except (ValueError, UnicodeDecodeError):
                raise CorruptFileError("config.json is not valid JSON", rule="keras.config",
                                       file=r.path, member="config.json") from None
    return None


def _set_model_weights(r: _Reader, model, *, restore_optimizer: bool) -> None:
    """Assign the stored weights to ``model`` layer by layer, after checking every shape."""
    r.preflight()
    plan = []
    stored_layers = {}
    for name, child, obj in r.checker.children(r.tree, ""):
        stored_layers[name] = (child, obj)
    wanted = [layer for layer in model.layers if layer.weights]
    extra = set(stored_layers) - {layer.name for layer in wanted}
    if extra:
        raise WeightMismatchError(f"the file has weights for layers the model lacks: {sorted(extra)[:5]}",
                                  rule="weights.layers", file=r.path)
    for layer in wanted:
        if layer.name not in stored_layers:
            raise WeightMismatchError(f"no weights stored for layer {layer.name!r}", rule="weights.layers",
                                      file=r.path, member=layer.name)
        child, group = stored_layers[layer.name]
        if not isinstance(group, h5py.Group):
            raise CorruptFileError("layer entry is not a group", rule="format.tree", file=r.path, member=child)
        entries = {p.rpartition("/")[2]: (p, node, kind, attrs)
                   for p, node, kind, attrs in r.walk(group, child) if p.count("/") == 1}
        if sorted(entries) != [str(k) for k in range(len(layer.weights))] and \
                sorted(entries, key=lambda s: int(s) if s.isdigit() else -1) != \
                [str(k) for k in range(len(layer.weights))]:
            raise WeightMismatchError(f"layer {layer.name!r} has {len(layer.weights)} weights, the file "
                                      f"{len(entries)}", rule="weights.count", file=r.path, member=child)
        for k, v in enumerate(layer.weights):
            p, node, kind, attrs = entries[str(k)]
            if kind == "group":
                raise CorruptFileError("expected a tensor", rule="format.tree", file=r.path, member=p)
            shape, _dtype, _nnz, _enc = r.tensor_meta(node, kind, attrs, p)
            if tuple(shape) != tuple(v.shape):
                raise WeightMismatchError(f"stored shape {tuple(shape)} != model shape {tuple(v.shape)} "
                                          f"for {v.path}", rule="weights.shape", file=r.path, member=p)
        plan.append((layer, [entries[str(k)] for k in range(len(layer.weights))]))
    for layer, entries in plan:
        layer.set_weights([r.read_tensor(node, kind, attrs, p) for p, node, kind, attrs in entries])
    if restore_optimizer and "optimizer" in r.h5 and getattr(model, "optimizer", None) is not None:
        opt = model.optimizer
        if not opt.built:
            opt.build(model.trainable_variables)
        entries = [e for e in r.walk(r.h5["optimizer"], "optimizer") if e[2] != "group"]
        entries.sort(key=lambda e: int(e[0].rpartition("/")[2]) if e[0].rpartition("/")[2].isdigit() else -1)
        if len(entries) != len(opt.variables):
            raise WeightMismatchError(f"optimizer has {len(opt.variables)} variables, the file {len(entries)}",
                                      rule="weights.optimizer", file=r.path)
        arrays = [r.read_tensor(node, kind, attrs, p) for p, node, kind, attrs in entries]
        for var, arr in zip(opt.variables, arrays):
            if tuple(var.shape) != tuple(np.shape(arr)):
                raise WeightMismatchError(f"optimizer variable {var.path} shape mismatch",
                                          rule="weights.optimizer", file=r.path)
        for var, arr in zip(opt.variables, arrays):
            var.assign(arr)


@guarded
def load(path, *, architecture=None, custom_objects=None, safe_mode: bool = True, compile: bool = True,
         allow_legacy: bool = False, limits: Limits | None = None):
    """Rebuild a ``keras.Model`` from a ``.sparse.h5`` file, weights bit-identical.

    Works for files written by :func:`save` and for packed ``.keras`` and full-model ``.h5``
    checkpoints. For a packed weights-only checkpoint (``.weights.h5``, Keras 2 weights ``.h5``)
    give ``architecture``: ``"module:function"``, a callable returning a model, or a model to
    clone. Every structure is validated and every tensor's checksum checked before use.

    Args:
        path: the ``.sparse.h5`` file.
        architecture: how to build the model when the file has no config (or to override it).
        custom_objects: classes/functions the config may name beyond Keras' own.
        safe_mode: refuse configs that would run code from the file (Lambda layers, objects from
            other modules). Set ``False`` only for files you trust.
        compile: compile the model with its stored training config, when there is one.
        allow_legacy: rebuild Keras 2 full-model configs (``keras_version`` 2.x). Their layer
            configs predate Keras 3's serialization and go through Keras' legacy loader, so they
            are refused unless asked for. (Their weights load with ``architecture=`` either way.)
        limits: bounds on what the file may declare.

    Raises:
        UnsafeModelError, WeightMismatchError, CorruptFileError, UnsupportedFormatError,
        InvalidTensorError, ResourceLimitError.
    """
    keras = _keras()
    path = Path(path)
    with _Reader(path, limits) as r:
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
            return model
        if kind == "keras":
            config = _config_from(r)
            if config is not None and architecture is None:
                check_config_safe(config, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
        else:
            legacy = r.tree.attrs.get("model_config")
            config = None
            if legacy is not None and architecture is None:
                version = r.tree.attrs.get("keras_version", b"")
                version = version.decode("ascii", "replace") if isinstance(version, bytes) else str(version)
                if version.startswith(("1.", "2.")) and not allow_legacy:
                    raise UnsafeModelError(f"Keras {version} model config: pass allow_legacy=True to rebuild it "
                                           "(or architecture= to load only its weights)", rule="model.legacy",
                                           file=path)
                try:
                    config = json.loads(legacy)
                except (ValueError, TypeError):
                    raise CorruptFileError("model_config is not valid JSON", rule="keras.config",
                                           file=path) from None
                check_config_safe(config, custom_objects=custom_objects, allow_unsafe=not safe_mode, file=path)
            if config is None and architecture is None:
                raise BadArgumentError("this checkpoint holds weights only; pass architecture="
                                       "'module:function' to rebuild the model", rule="argument.architecture",
                                       file=path)
        source_name = text(r.root_attrs.get("source_name")) or ""
    suffix = ".keras" if kind == "keras" else (".weights.h5" if source_name.endswith(".weights.h5") else ".h5")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / f"checkpoint{suffix}"
        unpack(path, tmp, limits=limits)
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


