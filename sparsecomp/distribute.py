"""Fine-tuning under ``tf.distribute``: choosing a strategy, and knowing which worker writes.

Every method's fine-tuning goes through one Keras ``fit``/``evaluate`` pair; Keras distributes both
when the model was built and compiled inside a strategy's scope. So a strategy needs only three
things from us, all in :func:`sparsecomp.prune` and the methods built on it:

- the working copy of the model, its mask variables and every (re)compilation are created inside
  ``strategy.scope()``: masks are mirrored variables, identical on every replica, and the mask
  multiply runs on each replica right after its optimizer update;
- data goes to ``fit``/``evaluate`` as given; Keras turns arrays into a ``tf.data.Dataset`` and the
  strategy splits each global batch across replicas (``batch_size`` is the *global* batch);
- evaluation returns one number, aggregated over replicas by Keras' metrics, and the accept/revert
  decision is made once, in Python, on that number. Reverting assigns mirrored variables from the
  cross-replica context, which writes every replica.
"""

from __future__ import annotations

import json
import os

from .errors import BadArgumentError

__all__ = ["get_strategy", "is_chief", "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multiworker")


def get_strategy(strategy=None, devices=None):
    """A ``tf.distribute.Strategy`` from a name, an existing strategy, or ``None`` (no distribution).

    Names: ``"default"`` (TensorFlow's default strategy: one device), ``"mirrored"``
    (``MirroredStrategy``: every GPU of this machine, or ``devices``), ``"multiworker"``
    (``MultiWorkerMirroredStrategy``, configured by the ``TF_CONFIG`` environment variable; create
    it before any other TensorFlow work in the program, as TensorFlow requires).
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
    return tf.distribute.MultiWorkerMirroredStrategy()


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
