"""Fine-tuning under ``tf.distribute``: choosing a strategy, stepping replicas, knowing who writes.

A strategy needs four things from the engine (:mod:`sparsecomp.training`), all here or there:

- the working copy of the model, its mask variables and every (re)compilation are created inside
  ``strategy.scope()``: masks are mirrored variables, identical on every replica, and the mask
  multiply (a variable constraint) runs on each replica right after its optimizer update;
- data arrive as ``tf.data`` pipelines of *global* batches with an explicit ``DATA`` sharding
  policy (:class:`sparsecomp.training.TrainingData`); each global batch is split across replicas;
- :class:`ReplicaLoop` steps the replicas itself: ``strategy.run`` on Keras' own ``train_step`` /
  ``test_step`` inside a ``tf.function``, one global batch per call. Keras' ``fit``/``evaluate``
  are not used under a strategy: with ``MultiWorkerMirroredStrategy`` they fail before the first
  step (their symbolic build reduces a ``PerReplica`` batch eagerly, which the collective
  strategy refuses; keras-team/keras#20585). Metrics are Keras' own, summed over every replica of
  every worker when read, so each worker reads the same number;
- decisions (accept / revert, end of a group) are made in Python on that number, hence the same
  on every worker; reverting assigns mirrored variables from the cross-replica context. Only the
  chief (:func:`is_chief`) writes files.

A worker that dies makes the others' next collective fail (connection reset, or the collective
timeout of :func:`get_strategy` when a peer hangs): :func:`collective_errors` turns that into a
:class:`~sparsecomp.errors.ClusterError` naming what happened and what to do next.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re

import numpy as np

from .errors import BadArgumentError, ClusterError

__all__ = ["get_strategy", "is_chief", "STRATEGIES", "ReplicaLoop", "collective_errors", "guard_collectives",
           "DEFAULT_TIMEOUT"]

STRATEGIES = ("default", "mirrored", "multiworker")
#: Seconds a collective (one all-reduce of a training step, a metric read) may wait for the other
#: workers before the run stops with a ClusterError. Generous: it also covers the wait for a
#: slower worker to start, or for the chief to write a checkpoint between steps.
DEFAULT_TIMEOUT = 300.0


def get_strategy(strategy=None, devices=None, timeout: float | None = DEFAULT_TIMEOUT):
    """A ``tf.distribute.Strategy`` from a name, an existing strategy, or ``None`` (no distribution).

    Names: ``"default"`` (TensorFlow's default strategy: one device), ``"mirrored"``
    (``MirroredStrategy``: every GPU of this machine, or ``devices``), ``"multiworker"``
    (``MultiWorkerMirroredStrategy``, configured by the ``TF_CONFIG`` environment variable; create
    it before any other TensorFlow work in the program, as TensorFlow requires). ``timeout``: the
    seconds a multi-worker collective waits for the other workers (``None``: forever).
    """
    import tensorflow as tf
    if strategy is None:
        return None
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise BadArgumentError(f"`strategy` must be a tf.distribute.Strategy or one of {list(STRATEGIES)}. "
                               f"Received: {strategy!r}", rule="argument.strategy")
    if devices is not None and strategy != "mirrored":
        raise BadArgumentError("`devices` applies to the 'mirrored' strategy only", rule="argument.strategy")
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if "TF_CONFIG" not in os.environ:
        raise BadArgumentError("the 'multiworker' strategy needs the TF_CONFIG environment variable "
                               "(cluster and this worker's task); see docs/DISTRIBUTED.md", rule="argument.strategy")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except ValueError as exc:
        raise BadArgumentError(f"TF_CONFIG is not valid JSON: {exc}", rule="argument.strategy") from None
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise BadArgumentError(f"`timeout` must be a positive number of seconds or None. Received: {timeout!r}",
                               rule="argument.timeout")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout) if timeout else None)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy=None) -> bool:
    """Whether this process should write outputs: always, except on non-chief multi-worker tasks.

    The chief is the task of type ``chief``, or ``worker`` 0 when the cluster has no ``chief``.
    """
    if strategy is None:
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


@contextlib.contextmanager
def collective_errors(strategy):
    """Turn the errors a lost or hanging worker causes in a collective into a ClusterError."""
    import tensorflow as tf
    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError)
    try:
        yield
    except lost as exc:
        text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(exc.message if hasattr(exc, "message") else exc))
        first = [ln.strip() for ln in text.splitlines() if ln.strip()]
        what = first[0][:300] if first else type(exc).__name__
        if isinstance(exc, tf.errors.DeadlineExceededError):
            cause = "a worker did not answer within the collective timeout"
        else:
            cause = "a worker of the cluster stopped answering"
        name = strategy if isinstance(strategy, str) else type(strategy).__name__
        multi = name == "multiworker" or name.startswith("MultiWorker") or "Collective" in name
        raise ClusterError(
            f"{cause} ({type(exc).__name__}: {what}). The run cannot go on and wrote none of its outputs. "
            + ("Start the same command again on every worker; with --checkpoint-dir on storage every worker "
               "reads, add --resume to continue from the last accepted step" if multi else
               "Run it again"),
            rule="cluster.lost") from None


def guard_collectives(fn):
    """For a function taking ``strategy=``: under a strategy, the errors of a lost worker (which
    TensorFlow may report at any later operation, not only in the collective itself) become a
    :class:`~sparsecomp.errors.ClusterError`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        strategy = kwargs.get("strategy")
        if strategy is None:
            return fn(*args, **kwargs)
        with collective_errors(strategy):
            return fn(*args, **kwargs)
    return wrapper


class ReplicaLoop:
    """Training and evaluation of a model built in ``strategy.scope()``, one global batch per call of
    ``strategy.run`` on the model's own ``train_step`` / ``test_step``.

    Equivalent to one ``fit`` epoch / one ``evaluate`` on the same batches: the same steps, losses
    scaled for the number of replicas by Keras' ``train_step``, gradients summed over replicas by
    the optimizer, metrics summed over replicas when read. Built again whenever the model is
    recompiled (new optimizer, other trainable layers): the traced functions capture both.
    """

    def __init__(self, model, strategy):
        import tensorflow as tf
        self.model, self.strategy = model, strategy
        run = strategy.run
        plain = tf.autograph.experimental.do_not_convert       # as Keras' own fit: Python control flow stays Python

        @tf.function
        def train(batch):
            run(plain(model.train_step), args=(batch,))

        @tf.function
        def test(batch):
            run(plain(model.test_step), args=(batch,))

        @tf.function
        def correct(batch):
            @plain
            def one(data):
                x, y = data[0], data[1]
                p = model(x, training=False)
                if p.shape[-1] == 1 or len(p.shape) == 1:
                    pred = tf.cast(tf.reshape(p, [-1]) > 0.5, tf.int64)
                else:
                    pred = tf.argmax(p, axis=-1)
                if len(y.shape) == 2 and y.shape[-1] > 1:
                    y = tf.argmax(y, axis=-1)
                y = tf.cast(tf.reshape(y, [-1]), tf.int64)
                return tf.cast(tf.equal(tf.reshape(pred, [-1]), y), tf.int8), y
            ok, labels = run(one, args=(batch,))
            return strategy.gather(ok, axis=0), strategy.gather(labels, axis=0)

        self._train, self._test, self._correct = train, test, correct
        self._built = False

    def _distributed(self, dataset):
        self._build(dataset)
        return self.strategy.experimental_distribute_dataset(dataset)

    def _build(self, dataset) -> None:
        """Create every variable a step needs (metrics, loss trackers, optimizer slots) before the
        first traced step, in the cross-replica context: variables created while a ``tf.function``
        traces a replica step break it. Keras' own ``fit`` does the same with one batch's shapes."""
        if self._built:
            return
        model = self.model
        with self.strategy.scope():
            build = getattr(model, "_symbolic_build", None)     # Keras' pre-step build (shapes only)
            if build is not None:
                build(data_batch=next(iter(dataset.take(1))))
            elif model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        self._built = True

    def fit_epoch(self, dataset, callbacks=None) -> None:
        """One pass over ``dataset`` (global batches); ``callbacks`` get the batch hooks."""
        import keras
        cbs = keras.callbacks.CallbackList(callbacks or [], model=self.model)
        cbs.on_epoch_begin(0)
        self.model.reset_metrics()
        with collective_errors(self.strategy):
            for i, batch in enumerate(self._distributed(dataset)):
                cbs.on_train_batch_begin(i)
                self._train(batch)
                cbs.on_train_batch_end(i)
        cbs.on_epoch_end(0)

    def evaluate(self, dataset) -> dict:
        """The model's compiled metrics over ``dataset``, summed over every replica."""
        self.model.reset_metrics()
        with collective_errors(self.strategy):
            for batch in self._distributed(dataset):
                self._test(batch)
            return {k: float(np.asarray(v)) for k, v in self.model.get_metrics_result().items()}

    def correct(self, dataset, labels: np.ndarray) -> np.ndarray:
        """Per example of ``dataset`` (in its order), whether the model's class is the label.

        ``labels`` are the dataset's labels in order; the gathered ones must match them, which
        checks that the replicas' parts were put back in order."""
        oks, ys = [], []
        with collective_errors(self.strategy):
            for batch in self._distributed(dataset):
                ok, y = self._correct(batch)
                oks.append(np.asarray(ok))
                ys.append(np.asarray(y))
        ok, y = np.concatenate(oks).astype(bool), np.concatenate(ys)
        if len(y) != len(labels) or not np.array_equal(y, np.asarray(labels).reshape(-1)):
            raise RuntimeError("the replicas' predictions came back in another order than the validation data")
        return ok
