"""Which channels of a Keras model can be removed together, and removing them (structured surgery).

Every tensor's last axis is described by a *layout*: a list of segments ``(group, n)``. A
**channel group** is a set of channel indices that must be removed together:

- a producer (Dense, Conv1D/2D/3D, SeparableConv1D/2D, Conv2D/3DTranspose) starts a new group
  of ``units``/``filters`` channels;
- per-channel layers keep the layout: activations, BatchNormalization (channel axis last; its
  four vectors are sliced), Dropout and noise layers, pooling, padding, cropping, up-sampling,
  DepthwiseConv2D/1D with ``depth_multiplier=1`` (its kernel and bias are sliced); global
  pooling keeps the layout and drops space;
- element-wise merges (Add, Subtract, Multiply, Average, Maximum, Minimum) *join* the groups of
  their inputs segment by segment: all inputs must lose the same channels (their scores are
  equalized first, see :func:`sparsecomp.criteria.equalize`);
- Concatenate on the channel axis concatenates layouts; Flatten remembers the spatial size so a
  Dense consumer loses rows ``k * C + c`` (channels-last);
- a group that reaches a model output or input, or any layer not listed here (Reshape, Permute,
  attention...), is **pinned**: its channels stay.

Consumers (Dense, convolutions, separable convolutions) lose the input slices of removed channels.
Removal is exact in this sense: the smaller model's outputs equal the original model's outputs
after the removed channels' *consumer weights* are zeroed (:func:`zero_consumers`). A removed
channel's bias (and BatchNormalization shift) therefore goes with it rather than being folded into
the consumer; that is what structured-pruning papers (Li et al., APoZ, TLT) do, and retraining
absorbs it. Only the public Keras API is used (``get_config``/``from_config``, weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .errors import BadArgumentError
from .graph import LayerGraph

__all__ = ["ChannelGraph", "ChannelPlan", "remove_channels", "zero_consumers"]

PRODUCERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "Conv2DTranspose",
             "Conv3DTranspose", "Conv1DTranspose")
DEPTHWISE = ("DepthwiseConv2D", "DepthwiseConv1D")
PASS = ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
        "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity")
GLOBAL = ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
          "GlobalMaxPooling2D", "GlobalMaxPooling3D")
MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_ELEMENTWISE_ACTS = {"linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "silu",
                     "softplus", "softsign", "hard_sigmoid", "hard_silu", "exponential", "leaky_relu", "mish"}


class _UF:
    def __init__(self):
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass
class _Layout:
    segments: list            # [(group id, n channels)]
    flat: int = 0             # > 0: flattened, this many spatial positions per channel block

    @property
    def n(self) -> int:
        return sum(n for _, n in self.segments)


class ChannelGraph:
    """The channel groups of a model: who produces them, who carries them, who consumes them.

    Attributes (after construction; group ids are canonical, see :meth:`groups`):
        producers: ``{group: [layer names]}`` whose output channels form the group
        pinned: ``{group: reason}`` for groups whose channels cannot be removed
        size: ``{group: channels}``
    """

    def __init__(self, model):
        import keras
        if not isinstance(model, keras.Model):
            raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                                   rule="argument.model")
        self.model = model
        self.graph = LayerGraph(model)
        uf = self._uf = _UF()
        self._size: dict[int, int] = {}
        self._producers: dict[int, list[str]] = {}
        self._pin: dict[int, str] = {}
        self.layout_out: dict[str, _Layout] = {}
        self.layout_in: dict[str, _Layout] = {}      # input layout of layers that slice or carry channels
        self.kind: dict[str, str] = {}                # producer / member / consumer roles

        def new_group(n, producer=None, pin=None):
            g = uf.new()
            self._size[g] = int(n)
            self._producers[g] = [producer] if producer else []
            if pin:
                self._pin[g] = pin
            return g

        def pin_layout(lay: _Layout, why: str):
            for g, _ in lay.segments:
                self._pin.setdefault(g, why)

        counts: dict[str, int] = {}
        for layer in model.layers:
            counts[layer.name] = counts.get(layer.name, 0) + 1
        for layer in model.layers:
            name, kind = layer.name, type(layer).__name__
            srcs = self.graph.producers_of(name)
            ins = [self.layout_out[s] for s in srcs if s in self.layout_out]
            out_n = _last_dim(layer)
            if kind == "InputLayer" or not srcs:
                lay_in = _Layout([(new_group(_input_dim(model, layer), pin="model input"),
                                   _input_dim(model, layer))])
                if kind == "InputLayer":
                    self.layout_out[name] = lay_in
                    continue
                ins, srcs = [lay_in], [None]
            if len(ins) != len(srcs) or (len(ins) != 1 and kind not in MERGE + ("Concatenate",)):
                for lay in ins:
                    pin_layout(lay, f"feeds {name} ({kind}) with several inputs")
                self.layout_out[name] = _Layout([(new_group(out_n, pin=f"output of {name} ({kind})"), out_n)])
                continue
            lay = ins[0]
            if kind in PRODUCERS and not (lay.flat and kind != "Dense"):
                self.layout_in[name] = lay
                self.kind[name] = "producer"
                g = new_group(out_n, producer=name)
                self.layout_out[name] = _Layout([(g, out_n)])
                if not _elementwise_activation(layer):
                    self._pin[g] = f"{name} has a non-element-wise activation"
            elif kind in DEPTHWISE and layer.get_config().get("depth_multiplier", 1) == 1 and not lay.flat:
                self.layout_in[name] = lay
                self.kind[name] = "member"
                self.layout_out[name] = lay
                if not _elementwise_activation(layer):
                    pin_layout(lay, f"{name} has a non-element-wise activation")
            elif kind == "BatchNormalization" and _channels_last_axis(layer) and not lay.flat:
                self.layout_in[name] = lay
                self.kind[name] = "member"
                self.layout_out[name] = lay
            elif (kind in PASS and not lay.flat and (kind != "Activation" or _elementwise_activation(layer))
                  and kind != "PReLU"):                # a per-channel alpha would need slicing: PReLU pins
                self.layout_out[name] = lay
            elif kind in GLOBAL and not lay.flat and not layer.get_config().get("keepdims", False):
                self.layout_out[name] = lay
            elif kind == "Flatten" and not lay.flat and len(layer.input.shape) >= 3:
                spatial = int(np.prod(layer.input.shape[1:-1]))
                self.layout_out[name] = _Layout(list(lay.segments), flat=spatial)
            elif kind == "Concatenate" and not any(x.flat for x in ins) and _concat_on_channels(layer):
                self.layout_out[name] = _Layout([s for x in ins for s in x.segments])
            elif kind in MERGE and not any(x.flat for x in ins) and \
                    all([n for _, n in x.segments] == [n for _, n in ins[0].segments] for x in ins):
                for x in ins[1:]:
                    for (a, _), (b, _) in zip(ins[0].segments, x.segments):
                        uf.union(a, b)
                self.layout_out[name] = ins[0]
            else:
                for x in ins:
                    pin_layout(x, f"reaches {name} ({kind}), which surgery does not cross")
                self.layout_out[name] = _Layout([(new_group(out_n, pin=f"output of {name} ({kind})"), out_n)])
        for out in self.graph.outputs:
            if out in self.layout_out:
                pin_layout(self.layout_out[out], "model output")
        for name, c in counts.items():
            if c > 1:
                raise BadArgumentError(f"two layers are named {name!r}", rule="argument.model")

    # canonical views -------------------------------------------------------------------------
    def groups(self) -> list[int]:
        return sorted({self._uf.find(g) for g in self._size})

    def producers(self, g: int) -> list[str]:
        g = self._uf.find(g)
        out = []
        for k, v in self._producers.items():
            if self._uf.find(k) == g:
                out.extend(v)
        return out

    def size(self, g: int) -> int:
        return self._size[self._uf.find(g)]

    def pinned(self, g: int) -> str | None:
        g = self._uf.find(g)
        for k, why in self._pin.items():
            if self._uf.find(k) == g:
                return why
        return None

    def prunable_groups(self) -> list[int]:
        """Groups whose channels can be removed (produced by at least one layer, not pinned)."""
        return [g for g in self.groups() if self.producers(g) and self.pinned(g) is None]

    def group_of(self, producer: str) -> int:
        seg = self.layout_out[producer].segments
        return self._uf.find(seg[0][0])

    def describe(self) -> list[dict]:
        return [{"group": g, "channels": self.size(g), "producers": self.producers(g), "pinned": self.pinned(g)}
                for g in self.groups() if self.producers(g)]

    def _keep(self, lay: _Layout, removed: dict) -> np.ndarray:
        """Indices (along the tensor's last axis) that stay, for ``removed`` {group: channels}."""
        keep, off = [], 0
        for g, n in lay.segments:
            gone = removed.get(self._uf.find(g), ())
            keep.extend(off + i for i in range(n) if i not in gone)
            off += n
        keep = np.asarray(keep, np.int64)
        if lay.flat:
            total = lay.n
            keep = (np.arange(lay.flat)[:, None] * total + keep[None, :]).reshape(-1)
        return keep


@dataclass
class ChannelPlan:
    """Channels to remove, per group (``{group id: sorted channel indices}``), with the producers
    each group belongs to, for printing and storing."""

    remove: dict = field(default_factory=dict)
    producers: dict = field(default_factory=dict)   # group id -> producer layer names
    sizes: dict = field(default_factory=dict)       # group id -> channels before removal

    @property
    def n_channels(self) -> int:
        return sum(len(v) for v in self.remove.values())

    def to_dict(self) -> dict:
        return {"remove": {str(k): list(v) for k, v in self.remove.items()},
                "producers": {str(k): v for k, v in self.producers.items()},
                "sizes": {str(k): v for k, v in self.sizes.items()}}

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        lines = [f"remove {self.n_channels} channels:"]
        for g, ch in self.remove.items():
            if ch:
                lines.append(f"  {'+'.join(self.producers[g])}: {len(ch)} of {self.sizes[g]} -> "
                             f"{self.sizes[g] - len(ch)}")
        return "\n".join(lines)


def _last_dim(layer) -> int:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return 0
    return int(shape[-1]) if shape and shape[-1] is not None else 0


def _input_dim(model, layer) -> int:
    try:
        return int(layer.input.shape[-1])
    except (AttributeError, ValueError, TypeError):
        return int(model.inputs[0].shape[-1])


def _elementwise_activation(layer) -> bool:
    act = layer.get_config().get("activation", "linear")
    return isinstance(act, str) and act in _ELEMENTWISE_ACTS


def _channels_last_axis(layer) -> bool:
    axis = layer.get_config().get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    rank = len(layer.input.shape)
    return axis in (-1, rank - 1)


def _concat_on_channels(layer) -> bool:
    axis = layer.get_config().get("axis", -1)
    rank = len(layer.output.shape)
    return axis in (-1, rank - 1)


def _check_plan(cg: ChannelGraph, plan: ChannelPlan) -> dict:
    removed = {}
    for g, ch in plan.remove.items():
        g = int(g)
        root = cg._uf.find(g) if g < len(cg._uf.parent) else None
        if root is None or root != g or not cg.producers(g):
            raise BadArgumentError(f"plan names channel group {g}, which the model does not have",
                                   rule="argument.plan")
        why = cg.pinned(g)
        ch = sorted({int(c) for c in ch})
        if ch and why:
            raise BadArgumentError(f"channel group {g} ({'+'.join(cg.producers(g))}) is pinned: {why}",
                                   rule="argument.plan")
        if ch and (ch[0] < 0 or ch[-1] >= cg.size(g)):
            raise BadArgumentError(f"channel index out of range for group {g} of {cg.size(g)} channels",
                                   rule="argument.plan")
        if len(ch) >= cg.size(g):
            raise BadArgumentError(f"plan removes every channel of group {g} ({'+'.join(cg.producers(g))})",
                                   rule="argument.plan")
        if ch:
            removed[g] = set(ch)
    return removed


def _weights(model) -> dict:
    return {layer.name: [np.asarray(v.numpy()) for v in layer.weights] for layer in model.layers}


def _slice_consumer(kind, w: list, keep: np.ndarray, layer) -> list:
    w = list(w)
    if kind == "Dense":
        w[0] = w[0][keep]
    elif kind.startswith("SeparableConv"):
        mult = layer.get_config().get("depth_multiplier", 1)
        w[0] = w[0][..., keep, :]
        rows = (keep[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)
        w[1] = w[1][..., rows, :]
    elif kind.endswith("Transpose"):
        w[0] = w[0][..., keep]          # (k..., out, in)
    else:
        w[0] = w[0][..., keep, :]       # (k..., in, out)
    return w


def _slice_producer(kind, w: list, keep: np.ndarray, layer) -> list:
    w = list(w)
    k = 1 if kind.startswith("SeparableConv") else 0
    if kind.endswith("Transpose"):
        w[0] = w[0][..., keep, :]
    else:
        w[k] = w[k][..., keep]
    if getattr(layer, "use_bias", False):
        w[-1] = w[-1][keep]
    return w


def remove_channels(model, plan: ChannelPlan):
    """A new, smaller model without the channels in ``plan``; ``model`` is untouched."""
    cg = ChannelGraph(model)
    removed = _check_plan(cg, plan)
    weights = _weights(model)
    config = model.get_config()
    cfgs = {(c.get("config", {}).get("name") or c.get("name")): c for c in config["layers"]}
    for c in config["layers"]:
        c.pop("build_config", None)        # stale shapes: layers are rebuilt from the graph
    for layer in model.layers:
        name, kind = layer.name, type(layer).__name__
        role = cg.kind.get(name)
        if role is None:
            continue
        in_keep = cg._keep(cg.layout_in[name], removed)
        if role in ("producer",) and len(in_keep) != cg.layout_in[name].n * max(cg.layout_in[name].flat, 1):
            weights[name] = _slice_consumer(kind, weights[name], in_keep, layer)
        if role == "producer":
            g = cg.group_of(name)
            if g in removed:
                keep = np.asarray([i for i in range(cg.size(g)) if i not in removed[g]], np.int64)
                weights[name] = _slice_producer(kind, weights[name], keep, layer)
                c = cfgs[name]["config"]
                c["units" if "units" in c else "filters"] = int(len(keep))
        elif role == "member" and len(in_keep) != cg.layout_in[name].n:
            if kind == "BatchNormalization":
                weights[name] = [v[in_keep] for v in weights[name]]
            else:                          # depthwise: kernel (k..., C, 1), bias (C,)
                w = weights[name]
                w[0] = w[0][..., in_keep, :]
                if getattr(layer, "use_bias", False):
                    w[-1] = w[-1][in_keep]
    from .surgery import rebuild
    return rebuild(model, config, weights)


def zero_consumers(model, plan: ChannelPlan):
    """A copy of ``model`` whose consumers no longer read the channels in ``plan`` (their input
    weights for those channels are zero): the reference :func:`remove_channels` is exact against."""
    from .model_io import clone_model
    cg = ChannelGraph(model)
    removed = _check_plan(cg, plan)
    clone = clone_model(model)
    for layer in clone.layers:
        name, kind = layer.name, type(layer).__name__
        if cg.kind.get(name) != "producer":
            continue
        lay = cg.layout_in[name]
        total = lay.n * max(lay.flat, 1)
        keep = cg._keep(lay, removed)
        drop = np.setdiff1d(np.arange(total), keep)
        if not len(drop):
            continue
        w = [np.asarray(v.numpy()) for v in layer.weights]
        if kind == "Dense":
            w[0][drop] = 0
        elif kind.startswith("SeparableConv"):
            w[0][..., drop, :] = 0
        elif kind.endswith("Transpose"):
            w[0][..., drop] = 0
        else:
            w[0][..., drop, :] = 0
        layer.set_weights(w)
    return clone
