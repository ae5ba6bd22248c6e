"""The fine-tuning engine every pruning method shares.

A method is its criterion and its schedule; everything else lives here, once:

- :class:`FineTuning` — the settings every method's retraining takes (epochs, recovery epochs,
  the accuracy gate, batch size, learning rate and its decay, L2, optimizer, loss, metric,
  validation split, epoch budget, seed, the baseline check), validated once;
- :class:`TrainingData` — the training/validation split, a deterministic order per epoch, and
  ``tf.data`` pipelines with explicit sharding where a ``tf.distribute`` strategy needs them;
- :class:`FineTuner` — the working copy of the model holding masks, its dense baseline (checked
  against chance), freezing, fine-tuning until the drop is recovered or judged unrecoverable,
  snapshots for accept/revert, checkpoints after every decided step, resume, interruption, and
  the model handed back.

Determinism: the order of the training data in epoch ``e`` is a permutation drawn from
``(seed, e)``, and the working copy's random-number states (Dropout) are set from ``seed``, so a
run depends on nothing outside its arguments; with TensorFlow's deterministic ops a resumed run
ends exactly where an uninterrupted one ends (tested).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .arguments import check_count, check_fraction, check_number, require_model
from .checkpoint import fingerprint_arrays, fingerprint_model, read_checkpoint, write_checkpoint
from .errors import BadArgumentError, DataError
from .graph import LayerGraph
from .masks import MaskSet, kernel_of
from .model_io import clone_model

__all__ = ["FineTuning", "TrainingData", "FineTuner", "PruningInterrupted", "compile_config", "METRIC_TOL",
           "ACCURACY_METRICS", "GATES"]

log = logging.getLogger(__name__)

#: Keras reports metrics as float32: 0.985 - 0.983 comes out as 0.00200003. Drops within this of
#: ``max_drop`` are ties, not failures.
METRIC_TOL = 1e-6
ACCURACY_METRICS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")
#: ``fixed``: a step passes when the validation drop is at most ``max_drop``. ``paired``: it must
#: stay within ``max_drop`` even after adding ``z`` standard errors of the paired difference of
#: per-example correctness (dense vs pruned on the same validation images) — a margin that grows
#: with how noisy the validation estimate is.
GATES = ("fixed", "paired")
_CLASS_ACCURACY = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy")


class PruningInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM; ``saved`` is where its last decided state went (or ``None``)."""

    def __init__(self, saved, steps: int):
        super().__init__(f"interrupted after {steps} decided steps")
        self.saved = saved
        self.steps = steps


@dataclass(frozen=True)
class FineTuning:
    """How every method retrains after each change, validated once.

    Args:
        epochs: fine-tuning epochs after each step.
        recovery_epochs: while the drop still exceeds the gate after ``epochs``, up to this many
            more epochs (checked after each) before the step is reverted — "until the accuracy
            drop can no longer be recovered".
        max_drop: largest allowed fall of the validation ``metric`` below the dense baseline
            (absolute: 0.002 is 0.2 accuracy points).
        gate: ``"fixed"`` or ``"paired"`` (see :data:`GATES`); ``z``: the paired gate's margin
            in standard errors.
        batch_size: the global batch (split across replicas under a strategy).
        learning_rate, optimizer, loss, metrics: default: the model's own compile config.
        lr_decay: every step restarts at the learning rate and multiplies it by this after each
            epoch, recovery epochs included (``1.0``: constant).
        l2: an L2 penalty ``l2 * sum(w**2)`` on the kernels being fine-tuned, while pruning only
            (Han et al. 2015 retrain with L2); the returned model keeps the caller's config.
        metric: the validation metric the gate reads.
        validation_split: the last fraction of the training arrays held out for decisions
            (never the test set).
        max_epochs: a budget: no new step starts once this many epochs were spent.
        seed: the order of the training data in every epoch and the working copy's random states.
        check_baseline: refuse a dense model whose validation accuracy is near chance (wrong
            preprocessing or labels): every "reduction" measured from it would be meaningless.
        expected_baseline: also refuse one more than 2 points below this accuracy.
        distill: weight of knowledge distillation (``0``: off): every epoch trains on ``(1 -
            distill)`` times the hard-label cross-entropy plus ``distill`` times the cross-entropy
            to the softened predictions of the model the stage started from (see
            :mod:`sparsecomp.distillation`); a classifier with a cross-entropy loss, arrays only.
        temperature: the softening temperature of distillation.
    """

    epochs: int = 1
    recovery_epochs: int = 2
    max_drop: float = 0.002
    gate: str = "fixed"
    z: float = 1.0
    batch_size: int = 128
    learning_rate: float | None = None
    lr_decay: float = 1.0
    l2: float | None = None
    optimizer: object = None
    loss: object = None
    metrics: object = None
    metric: str = "accuracy"
    validation_split: float = 0.1
    max_epochs: int | None = None
    seed: int = 0
    check_baseline: bool = True
    expected_baseline: float | None = None
    distill: float = 0.0
    temperature: float = 4.0

    def __post_init__(self):
        check_count("epochs", self.epochs)
        check_count("recovery_epochs", self.recovery_epochs)
        check_number("max_drop", self.max_drop, 0.0)
        if self.gate not in GATES:
            raise BadArgumentError(f"`gate` must be one of {list(GATES)}. Received: gate={self.gate!r}",
                                   rule="argument.gate")
        check_number("z", self.z, 0.0)
        check_count("batch_size", self.batch_size, 1)
        if self.learning_rate is not None:
            check_number("learning_rate", self.learning_rate, 0.0, open_lo=True)
        check_number("lr_decay", self.lr_decay, 0.0, 1.0, open_lo=True)
        if self.l2 is not None:
            check_number("l2", self.l2, 0.0)
        if not isinstance(self.metric, str):
            raise BadArgumentError(f"`metric` must be a name. Received: {self.metric!r}", rule="argument.metric")
        check_fraction("validation_split", self.validation_split, allow_zero=False, allow_one=False)
        if self.max_epochs is not None:
            check_count("max_epochs", self.max_epochs)
        check_count("seed", self.seed)
        if not isinstance(self.check_baseline, bool):
            raise BadArgumentError("`check_baseline` must be True or False", rule="argument.check_baseline")
        if self.expected_baseline is not None:
            check_fraction("expected_baseline", self.expected_baseline)
        check_fraction("distill", self.distill, allow_zero=True, allow_one=False)
        check_number("temperature", self.temperature, 0.0, open_lo=True)

    @classmethod
    def build(cls, tuning: FineTuning | None = None, defaults: dict | None = None, **kwargs) -> FineTuning:
        """``tuning`` (or the class defaults, then a method's ``defaults``) with ``kwargs`` applied.

        Unknown keywords are refused by name: a typo never silently falls back to a default.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise BadArgumentError(f"unknown fine-tuning argument(s) {unknown}; the shared ones are {sorted(names)}",
                                   rule="argument.unknown")
        base = asdict(tuning) if tuning is not None else {**{k: v for k, v in (defaults or {}).items()}}
        if tuning is not None and not isinstance(tuning, cls):
            raise BadArgumentError(f"`tuning` must be a FineTuning. Received: {type(tuning).__name__}",
                                   rule="argument.tuning")
        base.update(kwargs)
        return cls(**base)

    def to_dict(self) -> dict:
        """The settings as JSON-able data (objects such as an optimizer by their Keras config)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("optimizer", "loss", "metrics") and v is not None and not isinstance(v, (str, list, dict)):
                try:
                    import keras
                    v = keras.saving.serialize_keras_object(v)
                except Exception:  # noqa: BLE001 — a description is enough for the record
                    v = repr(v)
            out[f.name] = v
        return out


def compile_config(model, tuning: FineTuning) -> dict:
    """The compile config fine-tuning uses: the model's own, overridden by ``tuning``."""
    import keras
    cfg = dict(model.get_compile_config() or {}) if getattr(model, "compiled", False) else {}
    if tuning.optimizer is not None:
        cfg["optimizer"] = keras.optimizers.serialize(keras.optimizers.get(tuning.optimizer))
    if tuning.loss is not None:
        cfg["loss"] = tuning.loss
    if tuning.metrics is not None:
        cfg["metrics"] = tuning.metrics
    if not cfg.get("loss"):
        raise BadArgumentError("the model is not compiled: pass loss= (and metrics=['accuracy'])", rule="argument.loss")
    if not cfg.get("optimizer"):
        cfg["optimizer"] = "adam"
    if tuning.learning_rate is not None:
        opt = keras.optimizers.get(cfg["optimizer"]) if not isinstance(cfg["optimizer"], dict) else \
            keras.optimizers.deserialize(cfg["optimizer"])
        conf = opt.get_config()
        conf["learning_rate"] = float(tuning.learning_rate)
        cfg["optimizer"] = keras.optimizers.serialize(type(opt).from_config(conf))
    if not cfg.get("metrics"):
        cfg["metrics"] = ["accuracy"]
    return cfg


class TrainingData:
    """Training and validation data with a deterministic order per epoch.

    ``data`` is ``(x, y)`` arrays (validation: ``validation_data`` or the last
    ``validation_split`` of them) or a ``tf.data.Dataset`` of batches (then ``validation_data``
    is required and the dataset's own order is used). Under a ``tf.distribute`` strategy arrays
    become datasets of global batches with an explicit ``DATA`` sharding policy: every worker
    builds the same global batches and the strategy splits each across the replicas.
    """

    def __init__(self, data, validation_data, tuning: FineTuning, strategy=None):
        import tensorflow as tf
        self.strategy = strategy
        self.batch_size = tuning.batch_size
        self.seed = tuning.seed
        if isinstance(data, tf.data.Dataset):
            if validation_data is None:
                raise BadArgumentError("with a tf.data.Dataset, pass validation_data too (carved from your "
                                       "training data, never the test set)", rule="argument.data")
            self.train, self.val = data, validation_data
            return
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise BadArgumentError("`data` must be (x, y) arrays or a tf.data.Dataset", rule="argument.data")
        x, y = data
        if len(x) != len(y):
            raise BadArgumentError(f"x has {len(x)} samples, y {len(y)}", rule="argument.data")
        if validation_data is not None:
            self.train, self.val = (x, y), tuple(validation_data)
        else:
            nv = max(1, int(round(len(x) * tuning.validation_split)))
            if len(x) - nv < 1:
                raise BadArgumentError(f"{len(x)} samples leave nothing to train on after the validation split",
                                       rule="argument.data")
            self.train, self.val = (x[:-nv], y[:-nv]), (x[-nv:], y[-nv:])

    @property
    def arrays(self) -> bool:
        return isinstance(self.train, tuple)

    def steps_per_epoch(self) -> int | None:
        if self.arrays:
            return -(-len(self.train[0]) // self.batch_size)
        n = int(self.train.cardinality())
        return n if n >= 0 else None

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the training samples used in epoch ``epoch`` of this run."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.train[0]))

    def _dataset(self, x, y, batch_size: int):
        import tensorflow as tf
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(opts)

    def fit_args(self, epoch: int) -> dict:
        """Keyword arguments of ``model.fit`` for one epoch (no strategy)."""
        if not self.arrays:
            return {"x": self.train, "shuffle": False}
        perm = self.order(epoch)
        return {"x": self.train[0][perm], "y": self.train[1][perm], "batch_size": self.batch_size, "shuffle": False}

    def eval_args(self) -> dict:
        """Keyword arguments of ``model.evaluate`` (no strategy)."""
        if not self.arrays:
            return {"x": self.val}
        x, y = self.val
        return {"x": x, "y": y, "batch_size": max(self.batch_size, 256)}

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def train_dataset(self, epoch: int):
        """Epoch ``epoch`` as a dataset of global batches (under a strategy). A last batch smaller
        than the number of replicas would leave a replica with nothing (its loss undefined): those
        few examples (fewer than the replicas) sit out this epoch; the order changes every epoch."""
        if not self.arrays:
            return self.train
        perm = self.order(epoch)
        r = len(perm) % self.batch_size
        if 0 < r < self.replicas:
            perm = perm[:len(perm) - r]
        return self._dataset(self.train[0][perm], self.train[1][perm], self.batch_size)

    def val_dataset(self):
        """The validation data as a dataset of global batches (under a strategy), every example
        once: the batch is the smallest from ``max(batch_size, 256)`` up whose last batch still
        gives every replica an example."""
        if not self.arrays:
            return self.val
        x, y = self.val
        b, n = max(self.batch_size, 256), len(x)
        while 0 < n % b < self.replicas and b < n:
            b += 1
        return self._dataset(x, y, b)

    def val_labels(self) -> np.ndarray | None:
        """Integer class labels of the validation data (one-hot rows become indices), or ``None``."""
        if self.arrays:
            y = np.asarray(self.val[1])
        else:
            try:
                y = np.concatenate([np.asarray(b[1]) for b in self.val])
            except (TypeError, IndexError, ValueError):
                return None
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(axis=1)
        y = y.reshape(-1)
        return y if y.dtype.kind in "iub" or np.all(np.equal(np.mod(y, 1), 0)) else None

    def fingerprint(self) -> str | None:
        """SHA-256 of the arrays a run trains and decides on (``None`` for datasets)."""
        if not self.arrays:
            return None
        return fingerprint_arrays(self.train[0], self.train[1], self.val[0], self.val[1])


@dataclass
class Snapshot:
    """A decided state: every variable of the working copy, masks, optimizer variables, freezing."""

    config: dict
    variables: list
    masks: dict
    optimizer: list | None
    trainable: list
    extra: dict


_STOCHASTIC = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
               "GaussianDropout", "AlphaDropout", "ActivityRegularization")


class FeatureCache:
    """The output of a frozen, deterministic prefix of a Sequential working copy, computed once,
    and the model made of the layers after it (sharing their variables, masks included)."""

    def __init__(self, model, train, val, order, batch_size):
        self.model, self.train, self.val, self.order, self.batch_size = model, train, val, order, batch_size

    @classmethod
    def build(cls, tuner) -> FeatureCache | None:
        import keras
        work = tuner.work
        if tuner.strategy is not None or not tuner.data.arrays or not isinstance(work, keras.Sequential):
            return None
        layers = work.layers
        k = next((i for i, layer in enumerate(layers) if layer.weights and layer.trainable), None)
        if not k or any(type(layer).__name__ in _STOCHASTIC for layer in layers[:k]):
            return None
        prefix = keras.Sequential(layers[:k])
        bs = max(tuner.tuning.batch_size, 256)
        train = prefix.predict(tuner.data.train[0], batch_size=bs, verbose=0)
        val = prefix.predict(tuner.data.val[0], batch_size=bs, verbose=0)
        suffix = keras.Sequential([keras.Input(train.shape[1:])] + list(layers[k:]))
        return cls(suffix, (train, tuner.data.train[1]), (val, tuner.data.val[1]), tuner.data.order,
                   tuner.tuning.batch_size)

    def fit_args(self, epoch: int) -> dict:
        perm = self.order(epoch)
        return {"x": self.train[0][perm], "y": self.train[1][perm], "batch_size": self.batch_size, "shuffle": False}

    def eval_args(self) -> dict:
        return {"x": self.val[0], "y": self.val[1], "batch_size": max(self.batch_size, 256)}


class FineTuner:
    """The working copy of a model, its data and baseline, and the accept/revert machinery.

    Built inside ``strategy``'s scope when one is given (see :mod:`sparsecomp.distribute`).
    ``method`` and ``settings`` (the method's own settings) identify the run in checkpoints: a
    resume refuses a checkpoint of another method, other settings, another model or other data.
    """

    def __init__(self, model, data, *, validation_data=None, tuning: FineTuning, method: str, settings: dict,
                 strategy=None, checkpoint_dir=None, resume: bool = False, interrupt_dir=None, masks: bool = True,
                 cache: bool = True):
        from .distribute import get_strategy, is_chief
        require_model(model)
        self._loop = None
        self.t_start = time.time()
        self.source = model
        self.tuning = tuning
        self.method = method
        self.settings = settings
        self.strategy = get_strategy(strategy)
        self.chief = is_chief(self.strategy)
        self.cfg = compile_config(model, tuning)
        self.base_cfg = copy.deepcopy(self.cfg)      # before distillation swaps the loss
        self.data = TrainingData(data, validation_data, tuning, self.strategy)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.interrupt_dir = Path(interrupt_dir) if interrupt_dir else None
        if resume and self.checkpoint_dir is None:
            raise BadArgumentError("`resume` needs `checkpoint_dir`", rule="argument.resume")
        self.use_masks = masks
        self.use_cache = cache
        self.spent = 0                      # fine-tuning epochs used
        self.epochs_seen = 0                # epochs trained (orders the data)
        self.counter = 0                    # decided steps
        self.lr0 = None                     # the rate every step starts at (lr_decay)
        self._last = None                   # (snapshot, method state, history) at the last decision
        self.fingerprint = fingerprint_model(model)
        self.data_fingerprint = self.data.fingerprint()
        self._resume_from = read_checkpoint(self.checkpoint_dir) if resume else None
        if self._resume_from is not None:
            self._check_resumable(self._resume_from[0])
        with self.scope():
            self._install(clone_model(model))
        self.distilling = tuning.distill > 0
        if self.distilling:
            self._distill_from_working_copy()
        self.compile()
        if self.tuning.lr_decay != 1.0 and isinstance(self.work.optimizer.get_config().get("learning_rate"), dict):
            raise BadArgumentError("`lr_decay` restarts and decays a plain learning rate at every pruning step; the "
                                   "optimizer has a LearningRateSchedule. Pass a float learning rate or lr_decay=1",
                                   rule="argument.lr_decay")
        self._baseline_correct = None
        self.baseline = self.evaluate(record_baseline=True)
        if tuning.check_baseline:
            self._check_baseline()

    def _distill_from_working_copy(self) -> None:
        """Train on ``[labels | softened predictions]`` of the working copy as it is now (before any
        change) with the distillation loss; the gate then reads accuracy from predictions."""
        import keras

        from .distillation import cross_entropy_kind, distillation_loss, packed_targets
        t = self.tuning
        if self.strategy is not None:
            raise BadArgumentError("distillation runs without a tf.distribute strategy (its targets are built from "
                                   f"arrays on one machine). Received: strategy={type(self.strategy).__name__}; pass "
                                   "distill=0 or no strategy", rule="argument.distill")
        if not self.data.arrays:
            raise BadArgumentError("distillation needs the training data as (x, y) arrays (the teacher's predictions "
                                   "are computed once per example). Received: a tf.data.Dataset; pass arrays or "
                                   "distill=0", rule="argument.distill")
        if t.metric not in _CLASS_ACCURACY:
            raise BadArgumentError(f"distillation gates on class accuracy: metric must be one of "
                                   f"{list(_CLASS_ACCURACY)}. Received: metric={t.metric!r}", rule="argument.distill")
        if self.data.val_labels() is None:
            raise BadArgumentError("distillation gates on class accuracy and needs class labels (indices or one-hot "
                                   "rows) in the validation data", rule="argument.distill")
        _, logits = cross_entropy_kind(self.cfg["loss"])
        x, y = self.data.train
        targets = packed_targets(self.work, x, y, temperature=t.temperature, from_logits=logits,
                                 batch_size=max(t.batch_size, 256))
        self.data.train = (x, targets)
        self.cfg["loss"] = keras.saving.serialize_keras_object(distillation_loss(t.distill, t.temperature, logits))
        self.cfg["metrics"] = None            # the targets are packed: accuracy comes from predictions

    def run_settings(self) -> dict:
        """What a history records of the run: the method's settings, the fine-tuning settings, and
        the number of replicas the fine-tuning ran on."""
        return {**self.settings, **self.tuning.to_dict(),
                "replicas": int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1}

    # -- the working copy -----------------------------------------------------------------------

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _install(self, work) -> None:
        """Make ``work`` the working copy: masks, L2 on the prunable kernels, seeded random states."""
        self.work = work
        self.cache = None
        self._loop = None
        self.masks = MaskSet(work, from_zeros=True) if self.use_masks else None
        if self.tuning.l2 is not None and self.masks is not None:
            import keras
            reg = keras.regularizers.L2(float(self.tuning.l2))
            for n in self.masks.layers:
                kernel_of(work.get_layer(n)).regularizer = reg
        self.graph = LayerGraph(work)
        for i, v in enumerate(v for v in work.variables if v.path.endswith("seed_generator_state")):
            v.assign(np.array([(self.tuning.seed * 7919 + i * 104729) % (2**31 - 1), 0], v.dtype))

    def use(self, model) -> None:
        """Replace the working copy by ``model`` (structured pruning's surgery); recompiles."""
        with self.scope():
            self._install(model)
        self.compile()

    def compile(self) -> None:
        self._loop = None
        with self.scope():
            self.work.compile_from_config(copy.deepcopy(self.cfg))
            if self.cache is not None:
                self.cache.model.compile_from_config(copy.deepcopy(self.cfg))

    @property
    def trainer(self):
        """The model ``fit`` and ``evaluate`` run on: the working copy, or the trainable part of
        it on cached features of its frozen prefix."""
        return self.cache.model if self.cache is not None else self.work

    @property
    def loop(self):
        """Under a strategy: the :class:`~sparsecomp.distribute.ReplicaLoop` of the trainer as now
        compiled."""
        if self._loop is None:
            from .distribute import ReplicaLoop
            self._loop = ReplicaLoop(self.trainer, self.strategy)
        return self._loop

    @property
    def all_prunable(self) -> list:
        return list(self.masks.layers) if self.masks is not None else []

    def train_only(self, names) -> None:
        """Make exactly the layers ``names`` trainable (``None``: every layer) and recompile.

        When the frozen layers form a deterministic prefix of a Sequential model (no dropout or
        noise in it), its output is computed once and the trainable rest trains on it: the same
        forward values and gradients, without recomputing the frozen convolutions every epoch.
        """
        for layer in self.work.layers:
            if layer.weights:
                layer.trainable = names is None or layer.name in names
        self.cache = FeatureCache.build(self) if self.use_cache else None
        self.compile()

    def total_sparsity(self) -> float:
        zeros = sum(int((~self.masks.masks[n]).sum()) for n in self.all_prunable)
        size = sum(self.masks.masks[n].size for n in self.all_prunable)
        return zeros / size if size else 0.0

    # -- training -------------------------------------------------------------------------------

    def _set_epoch_lr(self, i: int) -> None:
        """Epoch ``i`` of a step trains at ``lr0 * lr_decay**i`` (each step restarts at ``lr0``, the
        rate of the compile config — never read back from an optimizer, whose rate has decayed)."""
        if self.tuning.lr_decay == 1.0:
            return
        if self.lr0 is None:
            import keras
            opt = copy.deepcopy(self.cfg["optimizer"])      # Keras' deserializers edit what they are given
            opt = keras.optimizers.deserialize(opt) if isinstance(opt, dict) else keras.optimizers.get(opt)
            self.lr0 = float(keras.ops.convert_to_numpy(opt.learning_rate))
        self.trainer.optimizer.learning_rate = self.lr0 * self.tuning.lr_decay ** i

    def fit(self, epochs: int, callbacks=None, *, first: int = 0) -> None:
        """``epochs`` epochs, one ``fit`` call each (epoch ``first + i`` of the current step's rate)."""
        for i in range(epochs):
            self._set_epoch_lr(first + i)
            if self.strategy is not None:
                self.loop.fit_epoch(self.data.train_dataset(self.epochs_seen), callbacks)
            else:
                args = self.cache.fit_args(self.epochs_seen) if self.cache is not None else \
                    self.data.fit_args(self.epochs_seen)
                self.trainer.fit(**args, epochs=1, verbose=0, callbacks=callbacks)
            self.epochs_seen += 1
            self.spent += 1

    def evaluate(self, *, record_baseline: bool = False) -> float:
        """The validation metric (aggregated over replicas); the paired gate also keeps which
        validation examples the model gets right."""
        if self.distilling:                   # accuracy from predictions (the loss wants packed targets)
            correct = self._correct()
            if record_baseline:
                self._baseline_correct = correct
            self._last_correct = correct
            return float(np.mean(correct))
        if self.strategy is not None:
            res = self.loop.evaluate(self.data.val_dataset())
        else:
            args = self.cache.eval_args() if self.cache is not None else self.data.eval_args()
            res = self.trainer.evaluate(**args, verbose=0, return_dict=True)
        if self.tuning.metric not in res:
            raise BadArgumentError(f"metric {self.tuning.metric!r} is not among the model's metrics {sorted(res)}; "
                                   "compile the model with metrics=['accuracy'] or pass metric=",
                                   rule="argument.metric")
        if self.tuning.gate == "paired":
            correct = self._correct()
            if record_baseline:
                self._baseline_correct = correct
            self._last_correct = correct
        return float(res[self.tuning.metric])

    def _correct(self) -> np.ndarray:
        labels = self.data.val_labels()
        if labels is None or self.tuning.metric not in ACCURACY_METRICS:
            raise BadArgumentError("the paired gate needs class labels and an accuracy metric", rule="argument.gate")
        if self.strategy is not None:
            return self.loop.correct(self.data.val_dataset(), labels)
        if self.cache is not None:
            x = self.cache.val[0]
        else:
            x = self.data.val[0] if self.data.arrays else self.data.val.map(lambda a, b: a)
        p = np.asarray(self.trainer.predict(x, batch_size=max(self.tuning.batch_size, 256), verbose=0))
        pred = (p.reshape(-1) > 0.5).astype(int) if p.ndim == 1 or p.shape[-1] == 1 else p.argmax(axis=-1)
        return pred.reshape(-1) == labels

    def passes(self, value: float) -> bool:
        """Whether a step whose validation metric is ``value`` stays within the gate."""
        drop = self.baseline - value
        if self.tuning.gate == "fixed":
            return drop <= self.tuning.max_drop + METRIC_TOL
        a, b = self._baseline_correct, self._last_correct
        n = len(a)
        d = (a.astype(np.int64) - b.astype(np.int64))       # +1 lost, -1 gained, per example
        se = math.sqrt(max(float(np.mean(d * d)) - float(np.mean(d)) ** 2, 0.0) / n)
        return drop + self.tuning.z * se <= self.tuning.max_drop + METRIC_TOL

    def fine_tune(self, callbacks=None, *, epochs: int | None = None, recovery_epochs: int | None = None):
        """``epochs`` epochs, then up to ``recovery_epochs`` more while the gate is not met (both
        default to the settings').

        Returns ``(value, epochs_used, ok)``.
        """
        t = self.tuning
        epochs = t.epochs if epochs is None else epochs
        recovery = t.recovery_epochs if recovery_epochs is None else recovery_epochs
        self.fit(epochs, callbacks=callbacks)
        used = epochs
        value = self.evaluate()
        while not self.passes(value) and used < epochs + recovery:
            self.fit(1, callbacks=callbacks, first=used)
            used += 1
            value = self.evaluate()
        return value, used, self.passes(value)

    def polish(self, epochs: int, callbacks=None) -> tuple[list, int]:
        """After a schedule: every layer trains at once (masks held) for up to ``epochs`` epochs at
        the step's decaying rate; the epoch with the best validation metric is kept when it beats
        the state the schedule ended in, else that state stays.

        The schedule fine-tunes one group at a time with the others frozen; training them
        together at the end lets the layers adapt to each other's pruning. Returns ``(values,
        kept)``: the validation metric after each epoch, and which epoch was kept (0: none).
        """
        if epochs <= 0:
            return [], 0
        start = self.evaluate()
        best, kept, snap = start, 0, self.snapshot()
        self.train_only(None)
        values = []
        for i in range(epochs):
            self.fit(1, callbacks=callbacks, first=i)
            values.append(self.evaluate())
            if values[-1] > best + METRIC_TOL:
                best, kept, snap = values[-1], i + 1, self.snapshot()
        self.restore(snap)
        return values, kept

    def budget_left(self) -> bool:
        return self.tuning.max_epochs is None or self.spent < self.tuning.max_epochs

    def _check_baseline(self) -> None:
        """Refuse a dense model whose validation accuracy says the data does not fit it."""
        if self.tuning.metric not in ACCURACY_METRICS:
            return
        labels = self.data.val_labels()
        b = self.baseline
        if labels is not None and len(labels):
            classes, counts = np.unique(labels, return_counts=True)
            outputs = self.work.outputs[0].shape[-1]
            if len(classes) == 1 and (outputs or 1) > 1:
                raise DataError(f"the validation data holds a single class ({classes[0]}) of the model's {outputs}: "
                                "it cannot tell whether pruning hurts. The validation split is the last part of the "
                                "training data — is the data ordered by class? Shuffle it, or pass validation_data",
                                rule="data.validation")
            chance = float(counts.max() / counts.sum())
            floor = chance + 0.25 * (1.0 - chance)
            if b < floor:
                raise DataError(
                    f"the dense model scores {b:.2%} {self.tuning.metric} on the validation data, near chance "
                    f"({chance:.2%}: the most frequent class; a meaningful model should reach at least {floor:.2%}). "
                    "Pruning it would measure reductions from a broken baseline. Likely causes: the input scale "
                    "or preprocessing differs from what the model was trained with (e.g. 0-1 vs 0-255 pixels, a "
                    "missing normalization), or the labels are ordered or encoded differently. Fix the data, or "
                    "pass check_baseline=False (CLI: --no-baseline-check) if this accuracy is really expected",
                    rule="data.baseline")
        if self.tuning.expected_baseline is not None and b < self.tuning.expected_baseline - 0.02:
            raise DataError(f"the dense model scores {b:.2%} on the validation data, more than 2 points below the "
                            f"expected {self.tuning.expected_baseline:.2%}: check the preprocessing and the labels",
                            rule="data.baseline")

    # -- accept / revert ------------------------------------------------------------------------

    def snapshot(self, **extra) -> Snapshot:
        """Every variable of the working copy (weights and random states), masks, the optimizer's
        variables (``None`` while it has not been built), which layers train, and ``extra``."""
        opt = self.trainer.optimizer
        built = opt is not None and opt.built
        return Snapshot(config=self.work.get_config(), variables=[np.array(v.numpy()) for v in self.work.variables],
                        masks=self.masks.snapshot() if self.masks is not None else {},
                        optimizer=[np.array(v.numpy()) for v in opt.variables] if built else None,
                        trainable=[layer.name for layer in self.work.layers if layer.weights and layer.trainable],
                        extra=dict(extra))

    def restore(self, snap: Snapshot) -> None:
        """Back to ``snap``: a reverted step leaves no trace (weights, masks, optimizer state)."""
        if snap.config != self.work.get_config():          # another architecture or other dropout rates
            with self.scope():
                self._install(type(self.work).from_config(snap.config))
            self.train_only(snap.trainable)
        for v, a in zip(self.work.variables, snap.variables):
            v.assign(a)
        if self.masks is not None:
            self.masks.restore(snap.masks)
        opt = self.trainer.optimizer
        if snap.optimizer is None:
            if opt.built:
                self.compile()                               # a fresh optimizer, as the state had
        else:
            if not opt.built:
                with self.scope():
                    opt.build(self.trainer.trainable_variables)
            for v, a in zip(opt.variables, snap.optimizer):
                v.assign(a)

    # -- checkpoints, resume, interruption -------------------------------------------------------

    def _meta(self) -> dict:
        return {"method": self.method, "settings": self.settings, "tuning": self.tuning.to_dict(),
                "model_fingerprint": self.fingerprint, "data_fingerprint": self.data_fingerprint}

    def _check_resumable(self, meta: dict) -> None:
        mine = json.loads(json.dumps(self._meta(), default=float))
        for key, what in (("method", "another method"), ("settings", "other settings"),
                          ("tuning", "other fine-tuning settings"), ("model_fingerprint", "another model"),
                          ("data_fingerprint", "other data")):
            theirs, ours = meta.get(key), mine[key]
            if key == "tuning" and isinstance(theirs, dict):      # a field added since: it had its default
                defaults = json.loads(json.dumps(FineTuning().to_dict(), default=float))
                theirs = {**{k: v for k, v in defaults.items() if k not in theirs}, **theirs}
            if theirs != ours:
                diff = ""
                if isinstance(theirs, dict) and isinstance(ours, dict):
                    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                    diff = "; differing: " + ", ".join(f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in keys[:6])
                raise BadArgumentError(f"the checkpoint in {str(self.checkpoint_dir)!r} was made by {what}{diff}; "
                                       "resume with the same model, data and settings, or start a new run",
                                       rule="checkpoint.mismatch", file=self.checkpoint_dir)

    def decided(self, snap: Snapshot, state: dict, history, arrays: dict | None = None) -> None:
        """Record a decided step: ``snap`` is the accepted state the run continues from, ``state``
        the schedule's own state (JSON-able), ``history`` what was decided so far. Written to
        ``checkpoint_dir`` (chief only) when there is one; kept in memory for an interruption."""
        self.counter += 1
        self._last = (snap, dict(state), history, arrays or {})
        if self.checkpoint_dir is not None and self.chief:
            self._write(self.checkpoint_dir, *self._last)

    def _write(self, directory: Path, snap: Snapshot, state: dict, history, arrays: dict) -> Path:
        out = {f"var/{i}": a for i, a in enumerate(snap.variables)}
        out.update({f"mask/{k}": v for k, v in snap.masks.items()})
        if snap.optimizer is not None:
            out.update({f"opt/{i}": a for i, a in enumerate(snap.optimizer)})
        out.update({f"extra/{k}": v for k, v in arrays.items()})
        meta = dict(self._meta(), counter=self.counter, config=snap.config, trainable=snap.trainable,
                    snapshot_extra=snap.extra, optimizer_built=snap.optimizer is not None, state=state,
                    history=history.to_dict(), spent=self.spent, epochs_seen=self.epochs_seen,
                    n_variables=len(snap.variables), n_optimizer=len(snap.optimizer or []),
                    seconds=time.time() - self.t_start)
        return write_checkpoint(directory, meta, out)

    def resume(self):
        """``(state, history_dict, arrays)`` to continue from, after restoring the working copy; or
        ``None`` for a fresh run."""
        if self._resume_from is None:
            return None
        meta, arrays = self._resume_from
        snap = Snapshot(config=meta["config"], variables=[arrays[f"var/{i}"] for i in range(meta["n_variables"])],
                        masks={k[5:]: arrays[k].astype(bool) for k in arrays if k.startswith("mask/")},
                        optimizer=[arrays[f"opt/{i}"] for i in range(meta["n_optimizer"])]
                        if meta["optimizer_built"] else None,
                        trainable=meta["trainable"], extra=meta.get("snapshot_extra", {}))
        self.train_only(snap.trainable)
        self.restore(snap)
        self.spent, self.epochs_seen, self.counter = meta["spent"], meta["epochs_seen"], meta["counter"]
        extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
        self._last = (snap, meta["state"], None, extra)
        self.resumed_snapshot = snap
        return meta["state"], meta["history"], extra

    def interrupted(self, history) -> PruningInterrupted:
        """What to raise on SIGINT/SIGTERM: the last decided state saved to ``interrupt_dir`` (or
        already in ``checkpoint_dir``), the running step abandoned."""
        saved = self.checkpoint_dir if (self.checkpoint_dir is not None and self._last is not None) else None
        if saved is None and self._last is not None and self.interrupt_dir is not None and self.chief:
            snap, state, hist, arrays = self._last
            self._write(self.interrupt_dir, snap, state, hist if hist is not None else history, arrays)
            saved = self.interrupt_dir
        return PruningInterrupted(saved, self.counter)

    # -- the result -----------------------------------------------------------------------------

    def finish(self, history) -> object:
        """The model handed back: rebuilt from the config (no constraints, no L2), exact +0.0
        where masked, compiled with the caller's own compile config."""
        if self.masks is not None:
            self.masks.release()
        with self.scope():
            final = clone_model(self.work)
            for n in self.all_prunable:
                k = kernel_of(final.get_layer(n))
                w = np.asarray(k.numpy())
                k.assign(np.where(self.masks.masks[n], w, np.zeros_like(w)))
            for layer in final.layers:
                layer.trainable = True
            final.compile_from_config(copy.deepcopy(self._caller_compile_config()))
        self.work = final
        res = self._evaluate_final(final)
        if self.tuning.metric not in res:     # the caller compiled without it: read it as fine-tuning did
            with self.scope():
                probe = clone_model(final)
                probe.compile_from_config(copy.deepcopy(self.base_cfg))
            res = self._evaluate_final(probe)
        history.final_metric = float(res[self.tuning.metric])
        history.seconds = time.time() - self.t_start
        return final

    def _evaluate_final(self, model) -> dict:
        if self.strategy is not None:
            from .distribute import ReplicaLoop
            return ReplicaLoop(model, self.strategy).evaluate(self.data.val_dataset())
        return model.evaluate(**self.data.eval_args(), verbose=0, return_dict=True)

    def _caller_compile_config(self) -> dict:
        """The caller's compile config (or, for an uncompiled model, the fine-tuning one built from the
        arguments — never the distillation loss, which wants packed targets)."""
        if getattr(self.source, "compiled", False) and self.source.get_compile_config():
            return dict(self.source.get_compile_config())
        return self.base_cfg
