"""Iterative std-threshold pruning over frozen layer groups (Han et al. 2015).

The recipe (also in the README, "Pruning and compression"):

- a layer's threshold is ``q * sigma``; ``sigma`` is the standard deviation of the layer's
  weights *as they are when its group starts* (the trained dense weights for the first group).
  Keeping sigma fixed makes ``q`` mean the same cut throughout a group: "prune below q standard
  deviations of the trained layer"; recomputing it from the survivors would inflate it at every
  step, because removing the smallest weights widens the distribution of what is left.
- groups are pruned one after the other (default: convolutions, then fully-connected layers);
  while a group is pruned and fine-tuned every layer outside it is frozen (``trainable=False``).
- per group, ``q`` starts at ``q0`` and rises by ``step``; after each rise: prune, fine-tune
  ``epochs`` epochs with the masks held (``sparsecomp.masks``), evaluate on validation data carved
  from the training data. A step whose validation metric is still more than ``max_drop`` below
  the dense baseline after ``recovery_epochs`` further epochs is reverted (weights and masks) and
  ends the group.
- Dropout in front of a pruned layer is rescaled as in Han et al. (eq. 2):
  ``D_r = D_o * sqrt(C_r / C_o)``, with ``C`` the layer's connection count.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .criteria import std_threshold, std_threshold_mask
from .errors import BadArgumentError
from .graph import LayerGraph
from .masks import MaskSet, kernel_of, prunable_layers
from .model_io import clone_model

__all__ = ["prune", "PruneStep", "PruneHistory", "default_groups"]

log = logging.getLogger(__name__)

# Keras reports metrics as float32: 0.985 - 0.983 comes out as 0.00200003. Drops within this of
# max_drop are ties, not failures.
_METRIC_TOL = 1e-6

CONV_TYPES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")


@dataclass
class PruneStep:
    """One decision of the schedule."""

    group: str
    q: float
    thresholds: dict
    sparsity: dict            # per layer, fraction of the kernel's weights that are zero
    total_sparsity: float     # over all prunable kernels of the model
    val_metric: float
    drop: float               # baseline - val_metric
    accepted: bool
    seconds: float
    epochs: int
    extra: dict = field(default_factory=dict)   # method-specific facts (cycle, p, recorded steps...)


class JsonRecord:
    """Plain-data dataclasses that round-trip through JSON (``asdict`` recurses into nested ones)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclass
class PruneHistory(JsonRecord):
    """Everything ``prune`` decided, in order; plain data (``to_dict`` / ``to_json``)."""

    metric: str
    baseline: float
    max_drop: float
    groups: dict
    sigma: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    final_sparsity: dict = field(default_factory=dict)
    final_metric: float | None = None
    seconds: float = 0.0

    def accepted_steps(self) -> list:
        return [s for s in self.steps if s.accepted]

    @classmethod
    def from_dict(cls, d: dict) -> "PruneHistory":
        d = dict(d)
        d["steps"] = [PruneStep(**s) for s in d.get("steps", [])]
        return cls(**d)


def _keras():
    import keras
    return keras


def _require_model(model) -> None:
    if not isinstance(model, _keras().Model):
        raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                               rule="argument.model")


def default_groups(model) -> dict:
    """``{"conv": [...], "fc": [...]}``: convolutional layers first, then fully-connected ones."""
    conv = [layer.name for layer in prunable_layers(model) if type(layer).__name__ in CONV_TYPES]
    fc = [layer.name for layer in prunable_layers(model) if type(layer).__name__ == "Dense"]
    groups = {}
    if conv:
        groups["conv"] = conv
    if fc:
        groups["fc"] = fc
    return groups


def _normalize_groups(model, groups) -> dict:
    if groups is None or groups == "auto":
        out = default_groups(model)
    elif isinstance(groups, dict):
        out = {str(k): list(v) for k, v in groups.items()}
    elif isinstance(groups, (list, tuple)):
        out = {}
        for i, g in enumerate(groups):
            g = [g] if isinstance(g, str) else list(g)
            out[f"group{i + 1}"] = g
    else:
        raise BadArgumentError(f"`groups` must be 'auto', a list of lists of layer names or a dict. "
                               f"Received: {groups!r}", rule="argument.groups")
    prunable = {layer.name for layer in prunable_layers(model)}
    seen = set()
    for gname, names in out.items():
        if not names:
            raise BadArgumentError(f"group {gname!r} is empty", rule="argument.groups")
        for n in names:
            if n not in prunable:
                raise BadArgumentError(f"group {gname!r} names {n!r}, which is not a prunable layer of the "
                                       f"model (prunable: {sorted(prunable)})", rule="argument.groups")
            if n in seen:
                raise BadArgumentError(f"layer {n!r} is in two groups", rule="argument.groups")
            seen.add(n)
    if not out:
        raise BadArgumentError("the model has no prunable layer (Dense or convolution)", rule="argument.groups")
    return out


def _split_data(data, validation_data, validation_split):
    import tensorflow as tf
    if isinstance(data, tf.data.Dataset):
        if validation_data is None:
            raise BadArgumentError("with a tf.data.Dataset, pass validation_data too (carved from your "
                                   "training data, never the test set)", rule="argument.data")
        return data, validation_data
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise BadArgumentError("`data` must be (x, y) arrays or a tf.data.Dataset", rule="argument.data")
    x, y = data
    if len(x) != len(y):
        raise BadArgumentError(f"x has {len(x)} samples, y {len(y)}", rule="argument.data")
    if validation_data is not None:
        return (x, y), validation_data
    if not 0 < validation_split < 1:
        raise BadArgumentError(f"`validation_split` must be in (0, 1). Received: {validation_split!r}",
                               rule="argument.validation_split")
    nv = max(1, int(round(len(x) * validation_split)))
    return (x[:-nv], y[:-nv]), (x[-nv:], y[-nv:])


class _Trainer:
    """Fit/evaluate on arrays or datasets with one set of settings (inside ``strategy``'s scope)."""

    def __init__(self, model, train, val, batch_size, metric, compile_config, strategy=None):
        self.model = model
        self.train = train
        self.val = val
        self.batch_size = batch_size
        self.metric = metric
        self.compile_config = compile_config
        self.strategy = strategy

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def compile(self):
        with self.scope():
            self.model.compile_from_config(self.compile_config)

    def steps_per_epoch(self) -> int | None:
        if isinstance(self.train, tuple):
            return -(-len(self.train[0]) // self.batch_size)
        n = int(self.train.cardinality())
        return n if n >= 0 else None

    def fit(self, epochs: int, callbacks=None):
        if epochs <= 0:
            return
        if isinstance(self.train, tuple):
            x, y = self.train
            self.model.fit(x, y, batch_size=self.batch_size, epochs=epochs, verbose=0, shuffle=True,
                           callbacks=callbacks)
        else:   # datasets shuffle themselves; under a strategy Keras splits each batch across replicas
            self.model.fit(self.train, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)

    def evaluate(self) -> float:
        if isinstance(self.val, tuple):
            x, y = self.val
            res = self.model.evaluate(x, y, batch_size=max(self.batch_size, 256), verbose=0, return_dict=True)
        else:
            res = self.model.evaluate(self.val, verbose=0, return_dict=True)
        if self.metric not in res:
            raise BadArgumentError(f"metric {self.metric!r} is not among the model's metrics {sorted(res)}; "
                                   "compile the model with metrics=['accuracy'] or pass metric=",
                                   rule="argument.metric")
        return float(res[self.metric])


def _compile_config(model, optimizer, loss, metrics, learning_rate):
    keras = _keras()
    cfg = dict(model.get_compile_config() or {}) if getattr(model, "compiled", False) else {}
    if optimizer is not None:
        cfg["optimizer"] = keras.optimizers.serialize(keras.optimizers.get(optimizer))
    if loss is not None:
        cfg["loss"] = loss
    if metrics is not None:
        cfg["metrics"] = metrics
    if not cfg.get("loss"):
        raise BadArgumentError("the model is not compiled: pass loss= (and metrics=['accuracy'])",
                               rule="argument.loss")
    if not cfg.get("optimizer"):
        cfg["optimizer"] = "adam"
    if learning_rate is not None:
        opt = keras.optimizers.get(cfg["optimizer"]) if not isinstance(cfg["optimizer"], dict) else \
            keras.optimizers.deserialize(cfg["optimizer"])
        conf = opt.get_config()
        conf["learning_rate"] = float(learning_rate)
        cfg["optimizer"] = keras.optimizers.serialize(type(opt).from_config(conf))
    if not cfg.get("metrics"):
        cfg["metrics"] = ["accuracy"]
    return cfg


def _dropouts_before(graph: LayerGraph, layer_name: str) -> list[str]:
    """Dropout layers whose output feeds ``layer_name`` (through nothing but activations)."""
    out = []
    for p in graph.producers_of(layer_name):
        layer = graph.layers.get(p)
        if layer is None:
            continue
        if type(layer).__name__ == "Dropout":
            out.append(p)
    return out


class _Run:
    """What every pruning method shares: a working copy holding masks, its trainer, the baseline.

    Built inside ``strategy``'s scope when one is given (see :mod:`sparsecomp.distribute`).
    """

    def __init__(self, model, data, *, validation_data, validation_split, batch_size, metric, optimizer, loss,
                 metrics, learning_rate, strategy, l2=None, lr_decay=1.0):
        from .distribute import get_strategy
        _require_model(model)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise BadArgumentError(f"`batch_size` must be an integer >= 1. Received: {batch_size!r}",
                                   rule="argument.batch_size")
        if l2 is not None:
            _check_number("l2", l2, 0.0)
        if (not isinstance(lr_decay, (int, float)) or isinstance(lr_decay, bool) or not math.isfinite(lr_decay)
                or not 0 < lr_decay <= 1):
            raise BadArgumentError(f"`lr_decay` must be in (0, 1]. Received: {lr_decay!r}", rule="argument.lr_decay")
        self.lr_decay = float(lr_decay)
        self._lr_start = (None, None)     # (optimizer, its learning rate when first used)
        self.t_start = time.time()
        self.source = model
        self.strategy = get_strategy(strategy)
        self.compile_args = (optimizer, loss, metrics, learning_rate)
        self.cfg = _compile_config(model, optimizer, loss, metrics, learning_rate)
        self.train, self.val = _split_data(data, validation_data, validation_split)
        self.metric = metric
        self.batch_size = batch_size
        with self.scope():
            self.work = clone_model(model)
            self.masks = MaskSet(self.work, from_zeros=True)   # zeros of an earlier pruning stay zero
        if l2 is not None:
            # Han et al.'s L2 while retraining: a penalty on the pruned kernels only (frozen layers'
            # variables are not trainable, so theirs never enters the loss). It lives on the working
            # copy's variables, so the returned model's config keeps the caller's own regularizers.
            reg = _keras().regularizers.L2(float(l2))
            for n in self.masks.layers:
                kernel_of(self.work.get_layer(n)).regularizer = reg
        self.graph = LayerGraph(self.work)
        self.trainer = _Trainer(self.work, self.train, self.val, batch_size, metric, self.cfg, self.strategy)
        self.trainer.compile()
        if self.lr_decay != 1.0 and isinstance(self.work.optimizer.get_config().get("learning_rate"), dict):
            raise BadArgumentError("`lr_decay` restarts and decays a plain learning rate at every pruning step; the "
                                   "optimizer has a LearningRateSchedule. Pass a float learning rate or lr_decay=1",
                                   rule="argument.lr_decay")
        self.baseline = self.trainer.evaluate()
        self.all_prunable = list(self.masks.layers)

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def train_only(self, names) -> None:
        """Make exactly the layers ``names`` trainable (``None``: every layer) and recompile."""
        for layer in self.work.layers:
            if layer.weights:
                layer.trainable = names is None or layer.name in names
        self.trainer.compile()

    def total_sparsity(self) -> float:
        zeros = sum(int((~self.masks.masks[n]).sum()) for n in self.all_prunable)
        size = sum(self.masks.masks[n].size for n in self.all_prunable)
        return zeros / size if size else 0.0

    def fine_tune(self, epochs: int, recovery_epochs: int, max_drop: float, callbacks=None):
        """``epochs`` epochs, then up to ``recovery_epochs`` more while the drop exceeds ``max_drop``.

        Returns ``(value, epochs_used, ok)``.
        """
        if self.lr_decay == 1.0:
            self.trainer.fit(epochs, callbacks=callbacks)
        else:
            for i in range(epochs):
                self._set_epoch_lr(i)
                self.trainer.fit(1, callbacks=callbacks)
        used = epochs
        value = self.trainer.evaluate()
        while self.baseline - value > max_drop + _METRIC_TOL and used < epochs + recovery_epochs:
            self._set_epoch_lr(used)
            self.trainer.fit(1, callbacks=callbacks)      # "until the accuracy drop can no longer be recovered"
            used += 1
            value = self.trainer.evaluate()
        return value, used, self.baseline - value <= max_drop + _METRIC_TOL

    def _set_epoch_lr(self, i: int) -> None:
        """Epoch ``i`` of a step trains at ``lr0 * lr_decay**i`` (each step restarts at ``lr0``)."""
        if self.lr_decay == 1.0:
            return
        opt = self.work.optimizer
        if self._lr_start[0] is not opt:          # a (re)compile made a fresh optimizer
            self._lr_start = (opt, float(_keras().ops.convert_to_numpy(opt.learning_rate)))
        opt.learning_rate = self._lr_start[1] * self.lr_decay ** i

    def snapshot(self, extra=None):
        return self.work.get_weights(), self.masks.snapshot(), extra

    def restore(self, snap) -> None:
        weights, masks, _ = snap
        self.work.set_weights(weights)      # assigns every replica under a strategy
        self.masks.restore(masks)

    def finish(self, history) -> object:
        """The model handed back: rebuilt from the config (no constraints), exact +0.0 where masked."""
        self.masks.release()
        with self.scope():
            final = clone_model(self.work)
            for n in self.all_prunable:
                k = kernel_of(final.get_layer(n))
                w = np.asarray(k.numpy())
                k.assign(np.where(self.masks.masks[n], w, np.zeros_like(w)))
            for layer in final.layers:
                layer.trainable = True
            final.compile_from_config(_compile_config(self.source, *self.compile_args))
        history.final_sparsity = {n: self.masks.sparsity(n) for n in self.all_prunable}
        history.final_metric = _Trainer(final, self.train, self.val, self.batch_size, self.metric, self.cfg,
                                        self.strategy).evaluate()
        history.seconds = time.time() - self.t_start
        return final


def _check_number(name, value, lo):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < lo:
        raise BadArgumentError(f"`{name}` must be a finite number >= {lo}. Received: {name}={value!r}",
                               rule=f"argument.{name}")


def _check_count(name, value, lo=0):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise BadArgumentError(f"`{name}` must be an integer >= {lo}. Received: {name}={value!r}",
                               rule=f"argument.{name}")


def prune(model, data, *, validation_data=None, validation_split: float = 0.1, groups="auto",
          q0: float = 0.5, step: float = 0.1, max_q: float = 6.0, min_step: float | None = None,
          max_drop: float = 0.002, target_sparsity: float | None = None,
          epochs: int = 1, recovery_epochs: int = 2, batch_size: int = 128, metric: str = "accuracy",
          one_shot: bool = False, q: float | None = None, optimizer=None, loss=None, metrics=None,
          learning_rate=None, lr_decay: float = 1.0, l2: float | None = None, rescale_dropout: bool = True,
          max_epochs: int | None = None, strategy=None, progress=None):
    """Prune ``model`` by iterative std-thresholds over frozen layer groups.

    Args:
        model: a trained Sequential or functional ``keras.Model``; never modified.
        data: ``(x, y)`` training arrays or a ``tf.data.Dataset`` of batches.
        validation_data: ``(x, y)`` or a dataset; default: the last ``validation_split`` of ``data``.
            Never pass the test set: decisions are made on this data.
        groups: ``"auto"`` (convolutions, then Dense layers), a list of lists of layer names, or a
            ``{name: [layer names]}`` dict; pruned in that order.
        q0, step, max_q: the schedule of ``q`` within a group.
        min_step: ``None`` (default): the first reverted step ends the group, as in the recipe.
            A number: after a reverted step, retry half-way between the last accepted ``q`` and the
            one that failed (and continue with that smaller step), until the step would fall
            below ``min_step``.
        max_drop: largest allowed fall of the validation ``metric`` below the dense baseline
            (absolute: 0.002 is 0.2 accuracy points).
        target_sparsity: stop the whole schedule once this fraction of all prunable kernels'
            weights is zero (``None``: prune as far as accuracy allows). A compression target
            such as "50x fewer non-zeros" translates into it before any run.
        epochs: fine-tuning epochs after each pruning step.
        recovery_epochs: when a step's drop exceeds ``max_drop`` after ``epochs``, up to this many
            more epochs are given to recover (checked after each) before the step is reverted.
        batch_size: the global batch (split across replicas under a strategy).
        max_epochs: a fine-tuning budget: no new step starts once this many epochs were used
            (``None``: no budget). Lets methods be compared at the same budget.
        one_shot: prune every group once at ``q`` (default ``q0``) without fine-tuning.
        optimizer, loss, metrics, learning_rate: fine-tuning settings; default: the model's own
            compile config (a fresh optimizer per group).
        lr_decay: every step's fine-tuning restarts at the learning rate and multiplies it by this
            after each epoch, recovery epochs included (``1.0``: constant). A short decaying
            retraining per step lets a network re-route around what was cut at a rate high enough
            to matter, and settle before the step is judged.
        l2: an L2 penalty ``l2 * sum(w**2)`` on the kernels being fine-tuned (``None``: the
            model's own regularizers). Han et al. 2015 retrain with L2: it keeps pulling the
            weights the next step will cut towards zero, so removing them costs less. It is
            used while pruning only; the returned model keeps the caller's configuration.
        strategy: ``None`` (plain Keras), a ``tf.distribute.Strategy``, or ``"default"``,
            ``"mirrored"``, ``"multiworker"`` (see :mod:`sparsecomp.distribute`). The working model,
            masks and optimizers are created in its scope; decisions are made once.
        progress: optional ``callable(step: PruneStep)``, called after every step.

    Returns:
        ``(pruned_model, history)``: a new compiled model whose pruned weights are exactly zero, and
        a :class:`PruneHistory`.
    """
    for name, value, lo in (("q0", q0, 0.0), ("step", step, 1e-9), ("max_q", max_q, 0.0),
                            ("max_drop", max_drop, 0.0), ("min_step", 1.0 if min_step is None else min_step, 1e-9),
                            ("target_sparsity", 0.5 if target_sparsity is None else target_sparsity, 0.0)):
        _check_number(name, value, lo)
    if target_sparsity is not None and target_sparsity > 1:
        raise BadArgumentError(f"`target_sparsity` must be in [0, 1]. Received: {target_sparsity!r}",
                               rule="argument.target_sparsity")
    _check_count("epochs", epochs)
    _check_count("recovery_epochs", recovery_epochs)
    if max_epochs is not None:
        _check_count("max_epochs", max_epochs)
    _require_model(model)
    groups = _normalize_groups(model, groups)
    run = _Run(model, data, validation_data=validation_data, validation_split=validation_split,
               batch_size=batch_size, metric=metric, optimizer=optimizer, loss=loss, metrics=metrics,
               learning_rate=learning_rate, strategy=strategy, l2=l2, lr_decay=lr_decay)
    work, masks, graph, trainer, baseline = run.work, run.masks, run.graph, run.trainer, run.baseline
    history = PruneHistory(metric=metric, baseline=baseline, max_drop=max_drop, groups=groups,
                           settings={"method": "std", "q0": q0, "step": step, "max_q": max_q, "min_step": min_step,
                                     "epochs": epochs, "target_sparsity": target_sparsity,
                                     "recovery_epochs": recovery_epochs,
                                     "batch_size": batch_size, "one_shot": one_shot,
                                     "q": q, "learning_rate": learning_rate, "lr_decay": lr_decay, "l2": l2,
                                     "max_epochs": max_epochs,
                                     "replicas": run.strategy.num_replicas_in_sync if run.strategy else 1})
    dropout_base = {d: work.get_layer(d).rate for g in groups.values() for n in g
                    for d in _dropouts_before(graph, n)}

    def rates():
        return {d: work.get_layer(d).rate for d in dropout_base}

    def apply_dropout_rescale():
        if not rescale_dropout or not dropout_base:
            return False
        changed = False
        for names in groups.values():
            for n in names:
                for d in _dropouts_before(graph, n):
                    new_rate = dropout_base[d] * math.sqrt(1.0 - masks.sparsity(n))
                    if work.get_layer(d).rate != new_rate:
                        work.get_layer(d).rate = new_rate
                        changed = True
        return changed

    reached = False
    spent = 0
    for gname, names in groups.items():
        if reached or (max_epochs is not None and spent >= max_epochs):
            break
        run.train_only(names)
        sigma = {n: float(np.std(masks.kernel(n))) for n in names}
        history.sigma.update(sigma)
        accepted = run.snapshot(rates())
        qv = float(q if (one_shot and q is not None) else q0)
        q_ok = None          # the last accepted q of this group
        cur_step = step
        while qv <= max_q + 1e-9:
            if max_epochs is not None and spent >= max_epochs:
                reached = True
                break
            t0 = time.time()
            qv = float(round(qv, 10))
            thresholds = {n: std_threshold(sigma[n], qv) for n in names}
            for n in names:
                masks.set(n, std_threshold_mask(masks.kernel(n), thresholds[n], masks.masks[n]))
            if apply_dropout_rescale():
                trainer.compile()
            if one_shot:
                value, used, ok = trainer.evaluate(), 0, True
            else:
                value, used, ok = run.fine_tune(epochs, recovery_epochs, max_drop)
            spent += used
            st = PruneStep(group=gname, q=qv, thresholds=thresholds,
                           sparsity={n: masks.sparsity(n) for n in names}, total_sparsity=run.total_sparsity(),
                           val_metric=value, drop=baseline - value, accepted=ok, seconds=time.time() - t0,
                           epochs=used)
            history.steps.append(st)
            if progress is not None:
                progress(st)
            log.info("group %s q=%.2f sparsity=%.4f %s=%.4f drop=%.4f %s", gname, qv, st.total_sparsity,
                     metric, value, st.drop, "accepted" if ok else "reverted")
            if one_shot:
                break
            if not ok:
                run.restore(accepted)
                if rates() != accepted[2]:
                    for d, r in accepted[2].items():
                        work.get_layer(d).rate = r
                    trainer.compile()       # a dropout rate is read when the step is traced
                base = q_ok if q_ok is not None else 0.0
                cur_step = (qv - base) / 2
                if min_step is None or cur_step < min_step - 1e-12:
                    break
                qv = base + cur_step      # back off: try half the way to the q that failed
                continue
            accepted = run.snapshot(rates())
            if all(masks.sparsity(n) >= 1.0 for n in names):
                break
            if target_sparsity is not None and st.total_sparsity >= target_sparsity:
                reached = True
                break
            q_ok = qv
            qv = qv + cur_step
    final = run.finish(history)
    return final, history
