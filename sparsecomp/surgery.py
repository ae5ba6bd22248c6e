"""Exact removal of dead units: sparsity becomes smaller shapes, outputs unchanged.

A unit (a Dense neuron, a Conv2D filter) of layer ``L`` is *dead* when

- it has **no outgoing** connections: every weight of the consumer ``C`` that reads it is zero.
  Removing it (its kernel column and bias from ``L``, its rows from ``C``) changes nothing.
- it has **no incoming** connections: its kernel column is all zero, so its output is the
  constant ``a = act(bias)`` everywhere. Its effect on ``C`` is folded into ``C``'s bias
  (``b_C += a * sum(W_C[rows of the unit])``), which is exact when every output of ``C`` sees the
  constant through its whole kernel: Dense consumers (also through Flatten, where channel ``c`` is
  every flat position ``c + k*C``), and 'valid' convolutions. Where it would not be exact (a
  'same'-padded convolution, zero-padding, a consumer without bias) the unit is kept unless
  ``a == 0``.

Between ``L`` and ``C`` the chain may hold activations, BatchNormalization (the channel is
removed from gamma, beta, mean and variance, and the constant is carried through it), Dropout,
pooling and Flatten. A unit is only removed when ``L`` has a single chain to a single consumer;
units feeding a model output, an element-wise merge or several consumers are left alone (their
removal needs the equalization of structured pruning). Deciding (``find_dead_units``, a plain
printable plan) is separate from applying (``remove_units``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import BadArgumentError
from .graph import LayerGraph

__all__ = ["DeadUnit", "DeadUnitPlan", "find_dead_units", "remove_units", "remove_dead_units"]

_PRODUCERS = ("Dense", "Conv2D")
_CONSUMERS = ("Dense", "Conv2D")
_PASS = ("Activation", "ReLU", "LeakyReLU", "ELU", "BatchNormalization", "Dropout", "MaxPooling2D",
         "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "ZeroPadding2D",
         "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "ActivityRegularization")
_ELEMENTWISE_ACTS = {"linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "silu",
                     "softplus", "softsign", "hard_sigmoid", "exponential", "leaky_relu", "mish"}


@dataclass
class DeadUnit:
    layer: str
    unit: int
    reason: str                 # "no_outgoing" or "no_incoming"
    constant: float | None      # the unit's constant output folded downstream (no_incoming)


@dataclass
class DeadUnitPlan:
    """What ``remove_units`` will do: plain data, printable and storable as JSON."""

    remove: dict = field(default_factory=dict)     # layer -> sorted unit indices
    units: list = field(default_factory=list)      # DeadUnit details
    kept: list = field(default_factory=list)       # [layer, unit, why] dead but kept (not exact)
    consumers: dict = field(default_factory=dict)  # layer -> [consumer, chain of layers between]

    def __bool__(self):
        return any(self.remove.values())

    @property
    def n_units(self) -> int:
        return sum(len(v) for v in self.remove.values())

    def to_dict(self) -> dict:
        return {"remove": self.remove, "units": [asdict(u) for u in self.units], "kept": self.kept,
                "consumers": self.consumers}

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d) -> "DeadUnitPlan":
        return cls(remove={k: list(v) for k, v in d["remove"].items()},
                   units=[DeadUnit(**u) for u in d.get("units", [])], kept=d.get("kept", []),
                   consumers=d.get("consumers", {}))

    def __str__(self) -> str:
        if not self:
            return "no dead units to remove" + (f" ({len(self.kept)} dead but kept)" if self.kept else "")
        lines = [f"remove {self.n_units} dead units:"]
        for layer, units in self.remove.items():
            reasons = {}
            for u in self.units:
                if u.layer == layer:
                    reasons[u.reason] = reasons.get(u.reason, 0) + 1
            why = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in reasons.items())
            lines.append(f"  {layer}: {len(units)} units ({why}) -> consumer {self.consumers[layer][0]}")
        if self.kept:
            lines.append(f"  kept {len(self.kept)} dead units where removal would not be exact")
        return "\n".join(lines)


def _activation_fn(name):
    import keras
    return keras.activations.get(name)


def _apply_act(name, x: np.ndarray) -> np.ndarray:
    import keras
    return np.asarray(keras.ops.convert_to_numpy(_activation_fn(name)(keras.ops.convert_to_tensor(x))))


def _chain(graph: LayerGraph, name: str):
    """Follow ``name`` through pass-through layers to its single consumer: ``(consumer, chain)``."""
    chain = []
    cur = name
    while True:
        if cur in graph.outputs:
            return None, chain
        cons = graph.consumers_of(cur)
        if len(cons) != 1:
            return None, chain
        nxt = graph.layers.get(cons[0])
        if nxt is None or len(graph.producers_of(cons[0])) != 1:
            return None, chain
        kind = type(nxt).__name__
        if kind in _CONSUMERS:
            return nxt, chain
        if kind not in _PASS:
            return None, chain
        chain.append(nxt)
        cur = nxt.name


def _carry_constant(const: np.ndarray, units: np.ndarray, chain) -> tuple[np.ndarray | None, bool]:
    """The constant outputs of ``units`` after the chain; ``ok`` False where it stops being constant."""
    c = const.astype(np.float64)
    for layer in chain:
        kind = type(layer).__name__
        cfg = layer.get_config()
        if kind in ("Activation",):
            act = cfg.get("activation")
            if not isinstance(act, str) or act not in _ELEMENTWISE_ACTS:
                return None, False
            c = _apply_act(act, c.astype(np.float32)).astype(np.float64)
        elif kind in ("ReLU", "LeakyReLU", "ELU"):
            c = np.asarray(layer(c.astype(np.float32)[None, :]))[0].astype(np.float64)
        elif kind == "BatchNormalization":
            axis = cfg.get("axis")
            if axis not in (-1, [-1], 3, [3], 1) and not (isinstance(axis, list) and len(axis) == 1):
                return None, False
            w = {v.path.rpartition("/")[2]: np.asarray(v.numpy(), np.float64) for v in layer.weights}
            gamma = w.get("gamma", np.ones_like(w["moving_mean"]))[units]
            beta = w.get("beta", np.zeros_like(w["moving_mean"]))[units]
            c = gamma * (c - w["moving_mean"][units]) / np.sqrt(w["moving_variance"][units] + cfg["epsilon"]) + beta
        elif kind == "ZeroPadding2D":
            if np.any(c != 0):
                return None, False
        elif kind in ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                      "Flatten", "Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise",
                      "ActivityRegularization"):
            pass   # a constant map stays the same constant (inference mode; padding is excluded)
        else:
            return None, False
    return c, True


def find_dead_units(model) -> DeadUnitPlan:
    """Find units of Dense/Conv2D layers that can be removed without changing the model's outputs."""
    import keras
    if not isinstance(model, keras.Model):
        raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                               rule="argument.model")
    graph = LayerGraph(model)
    plan = DeadUnitPlan()
    for layer in model.layers:
        if type(layer).__name__ not in _PRODUCERS:
            continue
        consumer, chain = _chain(graph, layer.name)
        if consumer is None:
            continue
        cfg = layer.get_config()
        act = cfg.get("activation", "linear")
        if not isinstance(act, str) or act not in _ELEMENTWISE_ACTS:
            continue
        through_flatten = any(type(c).__name__ in ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D")
                              for c in chain)
        if type(consumer).__name__ == "Conv2D" and through_flatten:
            continue
        kernel = np.asarray(layer.kernel.numpy())
        n = kernel.shape[-1]
        bias = np.asarray(layer.bias.numpy()) if layer.use_bias else np.zeros(n, kernel.dtype)
        ck = np.asarray(consumer.kernel.numpy())
        if type(consumer).__name__ == "Dense" and ck.shape[0] % n:
            continue
        in_zero = ~np.any(kernel.reshape(-1, n) != 0, axis=0)
        if type(consumer).__name__ == "Dense":
            per = ck.reshape(-1, n, ck.shape[-1]) if ck.shape[0] != n else ck[None]
            out_zero = ~np.any(per != 0, axis=(0, 2))
        else:
            out_zero = ~np.any(ck != 0, axis=(0, 1, 3))
        units = np.flatnonzero(in_zero | out_zero)
        if not len(units):
            continue
        consts = np.zeros(len(units))
        inc = np.array([in_zero[u] and not out_zero[u] for u in units])
        ok = np.ones(len(units), bool)
        if inc.any():
            raw = _apply_act(act, bias[units].astype(np.float32)).astype(np.float64)
            carried, fine = _carry_constant(raw, units, chain)
            if not fine:
                ok &= ~inc
            else:
                consts = np.where(inc, carried, 0.0)
                nonzero = inc & (consts != 0)
                if nonzero.any():
                    same_pad = type(consumer).__name__ == "Conv2D" and consumer.get_config().get("padding") != "valid"
                    if same_pad or not consumer.use_bias or any(type(c).__name__ == "ZeroPadding2D" for c in chain):
                        ok &= ~nonzero
        chosen = [int(u) for u, good in zip(units, ok) if good]
        for u, good in zip(units, ok):
            if not good:
                plan.kept.append([layer.name, int(u), "constant output cannot be folded exactly"])
        if len(chosen) >= n:       # keep one unit: a layer of width 0 is not a model
            plan.kept.append([layer.name, chosen[-1], "last unit of the layer"])
            chosen = chosen[:-1]
        if not chosen:
            continue
        plan.remove[layer.name] = chosen
        plan.consumers[layer.name] = [consumer.name, [c.name for c in chain]]
        for u, c, i in zip(units, consts, inc):
            if int(u) in chosen:
                plan.units.append(DeadUnit(layer.name, int(u), "no_incoming" if i else "no_outgoing",
                                           float(c) if i else None))
    return plan


def remove_units(model, plan: DeadUnitPlan):
    """Apply ``plan`` (from :func:`find_dead_units`): a new, smaller model; ``model`` is untouched."""
    import keras
    if isinstance(plan, dict):
        plan = DeadUnitPlan.from_dict(plan)
    weights = {layer.name: [np.asarray(v.numpy()) for v in layer.weights] for layer in model.layers}
    config = model.get_config()
    layer_cfgs = {(c.get("config", {}).get("name") or c.get("name")): c for c in config["layers"]}
    for c in config["layers"]:
        c.pop("build_config", None)   # stale input shapes; layers are rebuilt from the graph
    folds = {u.layer: {} for u in plan.units}
    for u in plan.units:
        if u.reason == "no_incoming" and u.constant:
            folds[u.layer][u.unit] = u.constant
    for lname, units in plan.remove.items():
        layer = model.get_layer(lname)
        if type(layer).__name__ not in _PRODUCERS:
            raise BadArgumentError(f"layer {lname!r} is not Dense or Conv2D", rule="argument.plan")
        n = layer.kernel.shape[-1]
        keep = np.setdiff1d(np.arange(n), units)
        cname, chain = plan.consumers[lname]
        # the producer: output slice
        w = weights[lname]
        w[0] = w[0][..., keep]
        if layer.use_bias:
            w[1] = w[1][keep]
        c = layer_cfgs[lname]["config"]
        c["units" if "units" in c else "filters"] = int(len(keep))
        # BatchNormalization in the chain: every per-channel vector
        for bn in chain:
            if type(model.get_layer(bn)).__name__ == "BatchNormalization":
                weights[bn] = [v[keep] for v in weights[bn]]
        # the consumer: fold constants into the bias, then drop the rows
        ck = weights[cname][0]
        through_flatten = ck.ndim == 2 and ck.shape[0] != n
        if ck.ndim == 2:
            per = ck.reshape(-1, n, ck.shape[-1])
            for unit, const in folds.get(lname, {}).items():
                weights[cname][1] = (weights[cname][1].astype(np.float64)
                                     + const * per[:, unit, :].astype(np.float64).sum(axis=0)).astype(ck.dtype)
            weights[cname][0] = per[:, keep, :].reshape(-1, ck.shape[-1]) if through_flatten else ck[keep]
        else:
            for unit, const in folds.get(lname, {}).items():
                weights[cname][1] = (weights[cname][1].astype(np.float64)
                                     + const * ck[:, :, unit, :].astype(np.float64).sum(axis=(0, 1))).astype(ck.dtype)
            weights[cname][0] = ck[:, :, keep, :]
    del keras
    return rebuild(model, config, weights)


def rebuild(model, config: dict, weights: dict):
    """A new model of ``type(model)`` from an edited ``config``, with ``weights`` (``{layer: [arrays]}``),
    compiled like ``model`` when it was compiled. Shared by all surgery."""
    try:
        new = type(model).from_config(config)
    except Exception as exc:  # Keras raises various types for configs it cannot rebuild
        raise BadArgumentError(f"could not rebuild the model after surgery: {exc}", rule="surgery.rebuild") from None
    for layer in new.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])
    if getattr(model, "compiled", False):
        try:
            new.compile_from_config(model.get_compile_config())
        except Exception as exc:  # a compile config Keras cannot replay only loses the compile step
            warnings.warn(f"the smaller model could not be compiled like the original: {exc}", stacklevel=3)
    return new


def remove_dead_units(model, *, max_passes: int = 20):
    """Remove dead units until none is left (removing some can kill others): ``(model, plans)``."""
    plans = []
    current = model
    for _ in range(max_passes):
        plan = find_dead_units(current)
        if not plan:
            break
        plans.append(plan)
        current = remove_units(current, plan)
    if current is model:
        from .model_io import clone_model
        current = clone_model(model)
        if getattr(model, "compiled", False):
            current.compile_from_config(model.get_compile_config())
    return current, plans
