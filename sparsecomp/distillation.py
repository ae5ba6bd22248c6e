"""Knowledge distillation for fine-tuning: the model before a change teaches the model after it.

With ``distill=a`` (``0 < a < 1``) every fine-tuning epoch trains on

    (1 - a) * CE(hard labels, p)  +  a * T**2 * CE(softmax(log q / T), softmax(log p / T))

where ``p`` is the working copy's prediction and ``q`` the prediction of the model the stage
started from (the dense model for pruning, the pruned one for weight sharing), computed once
per training example before anything is changed (Hinton, Vinyals & Dean 2015; ``T**2`` keeps
the soft term's gradients on the scale of the hard one's). A pruned network that is pulled
toward its dense teacher's whole output distribution, not just the argmax, keeps more of what
the teacher knew about which classes look alike.

For a model ending in softmax, ``log p`` is taken of probabilities clipped at ``1e-7``: classes a
saturated teacher gives less than that all look alike once softened. A model that outputs logits
(``from_logits=True`` in its loss) keeps them apart.

Targets travel as one array ``[one-hot labels | teacher's softened probabilities]`` of shape
``(n, 2 * classes)``, so batching, the data order and the cached frozen prefix of
:class:`~sparsecomp.training.FeatureCache` need nothing new. Only the fine-tuning compile config
uses :func:`distillation_loss`; the model handed back keeps the caller's own.
"""

from __future__ import annotations

import numpy as np

from .errors import BadArgumentError

__all__ = ["distillation_loss", "cross_entropy_kind", "packed_targets"]

_SPARSE = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")
_DENSE = ("categorical_crossentropy", "CategoricalCrossentropy")


def _loss_class():
    import keras

    @keras.saving.register_keras_serializable(package="sparsecomp", name="DistillationLoss")
    class DistillationLoss(keras.losses.Loss):
        """Hard-label cross-entropy mixed with the cross-entropy to a teacher's softened
        probabilities; ``y_true`` is ``[one-hot | soft targets]`` (see the module docstring)."""

        def __init__(self, alpha: float = 0.5, temperature: float = 4.0, from_logits: bool = False,
                     name: str = "distillation", reduction: str = "sum_over_batch_size", dtype=None):
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.alpha, self.temperature, self.from_logits = float(alpha), float(temperature), bool(from_logits)

        def call(self, y_true, y_pred):
            from keras import ops
            c = y_pred.shape[-1]
            hard, soft = y_true[..., :c], y_true[..., c:]
            if self.from_logits:
                logp = ops.log_softmax(y_pred, axis=-1)
            else:
                logp = ops.log(ops.clip(y_pred, 1e-7, 1.0))
            ce_hard = -ops.sum(hard * logp, axis=-1)
            t = self.temperature
            ce_soft = -ops.sum(soft * ops.log_softmax(logp / t, axis=-1), axis=-1)
            return (1.0 - self.alpha) * ce_hard + self.alpha * (t * t) * ce_soft

        def get_config(self):
            return {**super().get_config(), "alpha": self.alpha, "temperature": self.temperature,
                    "from_logits": self.from_logits}

    return DistillationLoss


_CLASS = None


def distillation_loss(alpha: float, temperature: float, from_logits: bool = False):
    """A ``DistillationLoss`` (a Keras loss registered as ``sparsecomp>DistillationLoss``, defined on
    first use since Keras is imported lazily); see the module docstring."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _loss_class()
    return _CLASS(alpha=alpha, temperature=temperature, from_logits=from_logits)


def cross_entropy_kind(loss) -> tuple[str, bool]:
    """``("sparse" | "categorical", from_logits)`` of a compile config's loss, or a clear error
    when distillation cannot apply to it (it needs a softmax classifier's cross-entropy)."""
    name, cfg = loss, {}
    if isinstance(loss, dict):
        name, cfg = loss.get("class_name"), loss.get("config") or {}
        if name == "function" and isinstance(cfg, str):       # compiled with keras.losses.<function>
            name, cfg = cfg, {}
    elif callable(loss) and not hasattr(loss, "get_config"):
        name = getattr(loss, "__name__", type(loss).__name__)
    elif not isinstance(loss, str):
        name = type(loss).__name__
        cfg = loss.get_config() if hasattr(loss, "get_config") else {}
    if name in _SPARSE:
        return "sparse", bool(cfg.get("from_logits", False))
    if name in _DENSE:
        return "categorical", bool(cfg.get("from_logits", False))
    raise BadArgumentError(f"distillation needs a classifier trained with (sparse) categorical cross-entropy; the "
                           f"model's loss is {name!r}. Pass distill=0, or compile with a cross-entropy loss",
                           rule="argument.distill")


def packed_targets(teacher, x, y, *, temperature: float, from_logits: bool, batch_size: int) -> np.ndarray:
    """``[one-hot labels | teacher's probabilities softened by temperature]`` as float32, shape
    ``(n, 2 * classes)``; ``y`` holds class indices or one-hot rows."""
    out = np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    if out.ndim != 2 or out.shape[1] < 2:
        raise BadArgumentError(f"distillation needs a model with one output of class scores; its output has shape "
                               f"{out.shape[1:]}", rule="argument.distill")
    c = out.shape[1]
    logp = out - out.max(axis=1, keepdims=True) if from_logits else np.log(np.clip(out, 1e-7, 1.0))
    z = logp / temperature
    z -= z.max(axis=1, keepdims=True)
    soft = np.exp(z)
    soft /= soft.sum(axis=1, keepdims=True)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == c:
        hard = y.astype(np.float64)
    else:
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
            raise BadArgumentError(f"distillation needs class labels: indices, or one-hot rows as wide as the model's "
                                   f"{c} outputs. Received: labels of shape {y.shape}", rule="argument.distill")
        labels = y.reshape(-1)
        if labels.dtype.kind not in "iubf" or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
            example = labels[0] if labels.size else None
            raise BadArgumentError(f"distillation needs class labels (integers, or one-hot rows). Received: labels of "
                                   f"dtype {labels.dtype}, e.g. {example!r}", rule="argument.distill")
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= c):
            raise BadArgumentError(f"labels run from {labels.min()} to {labels.max()}; the model has {c} classes",
                                   rule="argument.distill")
        hard = np.eye(c)[labels]
    return np.concatenate([hard, soft], axis=1).astype(np.float32)
