"""Keras 2 checkpoints → Keras 3 models, as data only.

Most checkpoints in the world were written by Keras 2 (standalone ``keras`` 2.x, ``tf.keras`` up to
TensorFlow 2.15, ``tf_keras``): a legacy ``.h5`` with a ``model_config`` JSON and a
``model_weights`` group, or a weights-only ``.h5`` with ``layer_names``/``weight_names``
attributes. Keras 3's own loader fails on many of them (``batch_input_shape`` on a first or
nested layer, Keras 2.2's list-shaped Sequential config, removed arguments, mixed-precision
``Policy`` dicts) and, for what it does load, goes through Keras' legacy deserializer.

:func:`translate_config` rewrites a Keras 2 model config into the config Keras 3 serializes,
walking plain JSON and never calling anything the file names: every layer class must be on
:data:`LAYERS` (``Lambda`` and anything unknown are refused with a clear error), every nested
object (initializer, regularizer, constraint, dtype policy) is rewritten to Keras' own modules.
The result then goes through the same safety scan and ``keras.saving.deserialize_keras_object``
as a Keras 3 config. :func:`assign_weights` puts the weights of the Keras 2 layout into the model:
by layer name (then, inside a layer, by weight name, or by order when names do not say),
checking every shape before anything is assigned; when no layer name matches (a weights-only
file loaded into an architecture whose layers have other names), by the order of the layers
that have weights, as Keras 2's ``load_weights`` does.
"""

from __future__ import annotations

import copy

import numpy as np

from .errors import UnsafeModelError, UnsupportedFormatError, WeightMismatchError

__all__ = ["LAYERS", "is_keras2", "translate_config", "Keras2Layout", "assign_weights"]

#: Layer classes the translator rebuilds (Keras 2 name -> Keras 3 name).
LAYERS = {n: n for n in (
    "InputLayer", "Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
    "BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "Flatten", "Reshape", "Permute", "RepeatVector",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "UpSampling1D", "UpSampling2D", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Rescaling", "Normalization",
    "Embedding")}
LAYERS.update({"Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
               "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D"})
MODELS = ("Sequential", "Functional", "Model")
ANY = object()
#: Keys Keras 2 wrote that Keras 3 constructors refuse: dropped when their value is one of those
#: listed (``ANY``: whatever it is, it changes nothing Keras 3 computes); another value is refused.
_DROP = {"BatchNormalization": {"fused": ANY, "renorm": (False, None), "renorm_clipping": ANY,
                                "renorm_momentum": ANY, "virtual_batch_size": (None,), "adjustment": (None,)},
         "DepthwiseConv2D": {"groups": (1, None)}, "Conv2DTranspose": {"groups": (1, None)},
         "SeparableConv2D": {"groups": (1, None), "kernel_initializer": ANY, "kernel_regularizer": (None,),
                             "kernel_constraint": (None,)},
         "SpatialDropout1D": {"trainable": ANY, "noise_shape": (None,)},
         "SpatialDropout2D": {"trainable": ANY, "noise_shape": (None,)},
         "SpatialDropout3D": {"trainable": ANY, "noise_shape": (None,)},
         "Embedding": {"input_length": ANY}}
_OBJECT_MODULES = {"initializer": "keras.initializers", "regularizer": "keras.regularizers",
                   "constraint": "keras.constraints"}


def is_keras2(config, keras_version) -> bool:
    """Whether a model config was written by Keras 1/2 (by its version, else by its shape)."""
    v = str(keras_version or "")
    if v.startswith(("1.", "2.")):
        return True
    if v.startswith("3."):
        return False
    inner = config.get("config") if isinstance(config, dict) else None
    return isinstance(inner, list) or (isinstance(inner, dict) and any(
        isinstance(layer, dict) and "module" not in layer for layer in inner.get("layers", [])))


def _fail(msg, rule="keras2.config", cls=UnsupportedFormatError, file=None):
    raise cls(msg, rule=rule, file=file)


def _dtype(value, file):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") in ("Policy", "DTypePolicy", "PolicyV1"):
        name = (value.get("config") or {}).get("name")
        if not isinstance(name, str):
            _fail(f"dtype policy without a name: {value!r}", file=file)
        return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}
    _fail(f"unsupported dtype {value!r}", file=file)


def _keras_object(value, module: str, file):
    """An initializer/regularizer/constraint: a name, null, or ``{class_name, config}`` of Keras'."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("class_name"), str):
        _fail(f"unsupported {module} value {str(value)[:80]!r}", file=file)
    mod = value.get("module")
    if mod is not None and not (mod == "keras" or str(mod).startswith("keras.")):
        _fail(f"object {value['class_name']!r} from module {mod!r} is not part of Keras", rule="model.unknown_object",
              cls=UnsafeModelError, file=file)
    cfg = value.get("config") or {}
    if not isinstance(cfg, dict):
        _fail(f"{value['class_name']} config must be an object", file=file)
    return {"module": module, "class_name": value["class_name"], "config": dict(cfg), "registered_name": None}


def _layer_config(cls: str, config: dict, file) -> dict:
    out = {}
    for key, value in config.items():
        if key in ("batch_input_shape", "input_dim", "input_shape", "batch_size"):
            continue                                   # an InputLayer carries the shape (see _sequential)
        if key == "dtype":
            value = _dtype(value, file)
        elif any(key.endswith(suffix) for suffix in _OBJECT_MODULES):
            module = next(m for s, m in _OBJECT_MODULES.items() if key.endswith(s))
            value = _keras_object(value, module, file)
        out[key] = value
    for key, allowed in _DROP.get(cls, {}).items():
        if key in out:
            v = out.pop(key)
            if allowed is not ANY and v not in allowed:
                _fail(f"{cls} with {key}={v!r} has no Keras 3 equivalent", file=file)
    if cls == "LeakyReLU" and "alpha" in out:
        out["negative_slope"] = out.pop("alpha")
    if cls == "BatchNormalization" and isinstance(out.get("axis"), list):
        if len(out["axis"]) != 1:
            _fail(f"BatchNormalization over several axes {out['axis']} is not supported", file=file)
        out["axis"] = out["axis"][0]
    if cls == "InputLayer":
        shape = config.get("batch_input_shape", config.get("batch_shape"))
        out.pop("batch_shape", None)
        out.pop("ragged", None)
        if shape is not None:
            out["batch_shape"] = list(shape)
    return out


def _layer(entry: dict, file) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), (dict, list)):
        _fail("a layer entry must have class_name and config", file=file)
    cls = entry["class_name"]
    if cls in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        name = entry["config"].get("name") if isinstance(entry["config"], dict) else None
        _fail(f"{cls} layer {name!r} holds Python code; refusing to rebuild it", rule="model.lambda",
              cls=UnsafeModelError, file=file)
    if cls in MODELS:
        out = translate_config(entry, file=file)
    else:
        if cls not in LAYERS:
            _fail(f"layer class {cls!r} is not among those the Keras 2 translator rebuilds ({len(LAYERS)} Keras "
                  "layers: see sparsecomp.keras2.LAYERS); load the model with Keras yourself and pass the object",
                  rule="keras2.layer", file=file)
        out = {"module": "keras.layers", "class_name": LAYERS[cls],
               "config": _layer_config(LAYERS[cls], entry["config"], file), "registered_name": None}
    for key in ("name", "inbound_nodes"):
        if key in entry:
            out[key] = copy.deepcopy(entry[key])
    return out


def _input_for(entry: dict) -> dict | None:
    """An InputLayer entry for a first layer that carries its input shape (Keras 2 style)."""
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    shape = cfg.get("batch_input_shape")
    if shape is None and cfg.get("input_dim") is not None:
        shape = [None, cfg["input_dim"]]
    if shape is None and cfg.get("input_shape") is not None:
        shape = [None, *cfg["input_shape"]]
    if shape is None:
        return None
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": list(shape), "dtype": cfg.get("dtype") if isinstance(cfg.get("dtype"), str)
                       else "float32", "name": f"{cfg.get('name', 'layer')}_input"}, "registered_name": None}


def translate_config(config: dict, *, file=None) -> dict:
    """A Keras 2 model config (``{"class_name": ..., "config": ...}``) as the Keras 3 serialized
    config of the same model (data only; see the module docstring for what is refused)."""
    if not isinstance(config, dict) or config.get("class_name") not in MODELS:
        _fail(f"not a Keras model config (class_name {config.get('class_name') if isinstance(config, dict) else None!r})",
              file=file)
    cls = config["class_name"]
    inner = config["config"]
    if cls == "Sequential":
        layers = inner if isinstance(inner, list) else inner.get("layers")     # Keras <= 2.2.4: a list
        name = None if isinstance(inner, list) else inner.get("name")
        if not isinstance(layers, list) or not layers:
            _fail("a Sequential config needs a list of layers", file=file)
        out_layers = []
        if layers[0].get("class_name") != "InputLayer":
            first = _input_for(layers[0])
            if first is not None:
                out_layers.append(first)
        out_layers += [_layer(layer, file) for layer in layers]
        cfg = {"name": name or "sequential", "trainable": True, "layers": out_layers}
        return {"module": "keras", "class_name": "Sequential", "config": cfg, "registered_name": None}
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        _fail("a functional config needs layers", file=file)
    cfg = {"name": inner.get("name", "model"), "trainable": inner.get("trainable", True),
           "layers": [_layer(layer, file) for layer in inner["layers"]],
           "input_layers": copy.deepcopy(inner.get("input_layers")),
           "output_layers": copy.deepcopy(inner.get("output_layers"))}
    return {"module": "keras", "class_name": "Model", "config": cfg, "registered_name": None}


# ---- weights -------------------------------------------------------------------------------------

def _text(v) -> str:
    return bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _names(value) -> list[str]:
    if value is None:
        return []
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and arr.size == 0:          # Keras writes an empty float array for "none"
        return []
    return [_text(v) for v in arr.reshape(-1)]


class Keras2Layout:
    """Where a Keras 2 file keeps each layer's weights: ``layer_names``, per layer ``weight_names``,
    and a reader of the array at ``<root>/<layer>/<weight name>``.

    Built from attribute lookups and an array reader, so it works on a raw ``.h5`` and on a packed
    ``.sparse.h5`` alike.
    """

    def __init__(self, root: str, attrs_of, read, *, file=None):
        self.root = root.strip("/")
        self.attrs_of = attrs_of
        self.read = read
        self.file = file
        layer_names = attrs_of(self.root).get("layer_names")
        if layer_names is None:
            raise UnsupportedFormatError("no layer_names attribute: not a Keras 2 weights layout",
                                         rule="keras2.layout", file=file)
        self.layers = _names(layer_names)

    def weight_names(self, layer: str) -> list[str]:
        return _names(self.attrs_of(f"{self.root}/{layer}" if self.root else layer).get("weight_names"))

    def path(self, layer: str, weight: str) -> str:
        return "/".join(p for p in (self.root, layer, weight) if p)


def _key(name: str) -> tuple:
    """``("conv2d", "kernel")`` from ``"conv2d/kernel:0"`` or a Keras 3 path ``"m/inner/conv2d/kernel"``."""
    parts = name.split(":")[0].split("/")
    return tuple(parts[-2:]) if len(parts) >= 2 else ("", parts[-1])


def assign_weights(model, layout: Keras2Layout) -> dict:
    """Assign the weights of ``layout`` to ``model``; every shape is checked before anything is set.

    Returns ``{"matched_by": "name" | "order", "layers": n}``.
    """
    with_weights = [name for name in layout.layers if layout.weight_names(name)]
    model_layers = [layer for layer in model.layers if layer.weights]
    by_name = {layer.name: layer for layer in model_layers}
    if all(n in by_name for n in with_weights) and len(with_weights) == len(model_layers):
        pairs, matched = [(n, by_name[n]) for n in with_weights], "name"
    elif len(with_weights) == len(model_layers):
        pairs, matched = list(zip(with_weights, model_layers)), "order"
    else:
        missing = sorted(set(by_name) - set(with_weights))[:5]
        extra = sorted(set(with_weights) - set(by_name))[:5]
        raise WeightMismatchError(f"the file has weights for {len(with_weights)} layers, the model {len(model_layers)} "
                                  f"(in the model only: {missing}; in the file only: {extra})", rule="weights.layers",
                                  file=layout.file)
    plan = []
    for k2_name, layer in pairs:
        names = layout.weight_names(k2_name)
        variables = list(layer.weights)
        if len(names) != len(variables):
            raise WeightMismatchError(f"layer {layer.name!r} has {len(variables)} weights, the file {len(names)} for "
                                      f"{k2_name!r}", rule="weights.count", file=layout.file, member=k2_name)
        keys = [_key(n) for n in names]
        vkeys = [_key(v.path) for v in variables]
        if sorted(keys) == sorted(vkeys) and len(set(keys)) == len(keys) and matched == "name":
            order = [keys.index(k) for k in vkeys]
        else:
            order = list(range(len(names)))
        for v, i in zip(variables, order):
            path = layout.path(k2_name, names[i])
            arr = layout.read(path)
            if tuple(arr.shape) != tuple(v.shape):
                raise WeightMismatchError(f"stored shape {tuple(arr.shape)} != model shape {tuple(v.shape)} for "
                                          f"{v.path}", rule="weights.shape", file=layout.file, member=path)
            plan.append((v, arr))
    for v, arr in plan:
        v.assign(arr)
    return {"matched_by": matched, "layers": len(pairs)}
