"""Structured pruning: whole filters and units ranked, removed by surgery, the model retrained.

Rank -> prune -> retrain, round after round, until the accuracy drop from the dense baseline
passes ``max_drop`` (that round is reverted) or ``rounds`` rounds are done:

- **rank**: one score per channel group (:class:`sparsecomp.channels.ChannelGraph`), from
  :mod:`sparsecomp.criteria`: ``l1`` (mean ``|w|`` per filter), ``l2`` (RMS per filter or Dense
  unit), ``apoz`` (1 - the average percentage of zeros of the channel's ReLU output over real
  training inputs), ``random`` (the control), ``tlt`` (NVIDIA TLT: L2 norms divided by the layer's
  max, mean or L2 norm of all its norms). Channels several layers must lose together (the inputs
  of an Add...) get one score by an equalization operator (arithmetic/geometric mean, ``union``
  — TLT's default and ours —, intersection).
- **select**: a ``fraction`` of the channels, lowest-ranked across the network (``scope="global"``)
  or in every group alike (``scope="layer"``); or every channel whose score is below
  ``threshold``. Kept counts are rounded up to a multiple of ``granularity`` and never fall below
  ``min_channels``; ``exclude`` names layers whose channels stay.
- **prune**: :func:`sparsecomp.channels.remove_channels` (a new, smaller model);
- **retrain**: ``epochs`` (+ up to ``recovery_epochs``) epochs, evaluate on validation data.

``criterion="magnitude"`` is the unstructured control in the same loop: each round masks the
``fraction`` smallest-magnitude surviving weights of every layer (masks held while retraining).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .channels import PASS, ChannelGraph, ChannelPlan, remove_channels
from .criteria import (EQUALIZATIONS, apoz_scores, equalize, l1_scores, l2_scores, magnitude_fraction_mask,
                       random_scores, round_up_kept, tlt_normalize)
from .errors import BadArgumentError
from .masks import MaskSet, kernel_of
from .pruning import (_METRIC_TOL, JsonRecord, _check_count, _check_number, _compile_config, _require_model,
                      _split_data, _Trainer)
from .model_io import clone_model

__all__ = ["prune_structured", "channel_scores", "select_channels", "StructuredHistory", "StructuredRound",
           "CRITERIA"]

log = logging.getLogger(__name__)

CRITERIA = ("l1", "l2", "apoz", "random", "tlt", "magnitude")


@dataclass
class StructuredRound:
    round: int
    criterion: str
    channels_removed: int
    filters: dict            # producer -> [kept, before this round]
    params: int
    val_metric: float
    drop: float
    accepted: bool
    seconds: float
    epochs: int
    sparsity: float = 0.0    # magnitude criterion: fraction of kernel weights that are zero


@dataclass
class StructuredHistory(JsonRecord):
    metric: str
    baseline: float
    max_drop: float
    dense_params: int
    settings: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)
    final_metric: float | None = None
    final_params: int | None = None
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "StructuredHistory":
        d = dict(d)
        d["rounds"] = [StructuredRound(**r) for r in d.get("rounds", [])]
        return cls(**d)


def _transposed(layer) -> bool:
    return type(layer).__name__.endswith("Transpose")


def _relu_point(cg: ChannelGraph, producer: str):
    """The layer whose output is the producer's channels after their ReLU: ``(name, strict)``.

    Follows single consumers through per-channel layers and element-wise merges. ``strict`` is
    False when no ReLU was found: APoZ then counts non-positive values of the producer's output
    (what a ReLU would zero).
    """
    layer = cg.model.get_layer(producer)
    if layer.get_config().get("activation") == "relu":
        return producer, True
    cur = producer
    for _ in range(64):
        cons = cg.graph.consumers_of(cur)
        if len(cons) != 1:
            break
        nxt = cg.model.get_layer(cons[0])
        kind = type(nxt).__name__
        if kind == "ReLU" or (kind == "Activation" and nxt.get_config().get("activation") == "relu"):
            return nxt.name, True
        if kind not in PASS + ("BatchNormalization", "Add", "Average", "Maximum", "DepthwiseConv2D"):
            break
        cur = nxt.name
    return producer, False


def _sample_inputs(data, n: int):
    import tensorflow as tf
    if isinstance(data, tf.data.Dataset):
        xs, got = [], 0
        for batch in data:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            xs.append(np.asarray(x))
            got += len(xs[-1])
            if got >= n:
                break
        return np.concatenate(xs)[:n]
    return np.asarray(data[0][:n])


def _bn_scale(cg: ChannelGraph, producer: str):
    """``|gamma| / sqrt(moving_variance + epsilon)`` of the BatchNormalization that directly follows
    ``producer`` (its only consumer), or ``None``: the factor by which BN rescales each channel."""
    cons = cg.graph.consumers_of(producer)
    if len(cons) != 1:
        return None
    bn = cg.model.get_layer(cons[0])
    if type(bn).__name__ != "BatchNormalization":
        return None
    w = {v.path.rpartition("/")[2]: np.asarray(v.numpy(), np.float64) for v in bn.weights}
    gamma = np.abs(w["gamma"]) if "gamma" in w else np.ones_like(w["moving_variance"])
    return gamma / np.sqrt(w["moving_variance"] + bn.get_config()["epsilon"])


def channel_scores(model, criterion: str, *, inputs=None, equalization: str = "union",
                   normalizer: str = "max", fold_bn: bool = False, seed: int = 0, batch_size: int = 256,
                   cg: ChannelGraph | None = None) -> dict:
    """``{group id: scores}`` for every prunable channel group of ``model`` (higher = keep).

    ``inputs``: real input samples (APoZ only). Groups with several producers are equalized.
    ``fold_bn`` (l1, l2, tlt): multiply each filter's norm by the scale ``|gamma|/sqrt(var+eps)`` of
    a BatchNormalization right after it — the norm of the filter BN folding would produce. Without
    it, a kernel norm says little in a BN network: BN undoes any rescaling of the kernel.
    """
    if criterion not in CRITERIA or criterion == "magnitude":
        raise BadArgumentError(f"`criterion` must be one of {[c for c in CRITERIA if c != 'magnitude']} here. "
                               f"Received: {criterion!r}", rule="argument.criterion")
    if equalization not in EQUALIZATIONS:
        raise BadArgumentError(f"`equalization` must be one of {list(EQUALIZATIONS)}. Received: {equalization!r}",
                               rule="argument.equalization")
    cg = cg or ChannelGraph(model)
    groups = cg.prunable_groups()
    per_producer: dict[str, np.ndarray] = {}
    if criterion == "apoz":
        if inputs is None or len(inputs) == 0:
            raise BadArgumentError("APoZ needs real inputs (`inputs=`)", rule="argument.apoz")
        import keras
        points = {p: _relu_point(cg, p) for g in groups for p in cg.producers(g)}
        names = sorted({n for n, _ in points.values()})
        ins = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(ins, [model.get_layer(n).output for n in names])
        zeros = {n: 0.0 for n in names}
        nonpos = {n: 0.0 for n in names}
        totals = {n: 0 for n in names}
        for i in range(0, len(inputs), batch_size):
            outs = probe(inputs[i:i + batch_size], training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for n, o in zip(names, outs):
                a = np.asarray(o)
                a = a.reshape(-1, a.shape[-1])
                zeros[n] = zeros[n] + (a == 0).sum(axis=0)
                nonpos[n] = nonpos[n] + (a <= 0).sum(axis=0)
                totals[n] += a.shape[0]
        for p, (n, strict) in points.items():
            per_producer[p] = apoz_scores(zeros[n] if strict else nonpos[n], totals[n])
    rng = np.random.default_rng(seed)
    out = {}
    for g in groups:
        scores = []
        for p in cg.producers(g):
            layer = model.get_layer(p)
            k = np.asarray(kernel_of(layer).numpy())
            scale = _bn_scale(cg, p) if fold_bn and criterion in ("l1", "l2", "tlt") else None
            scale = 1.0 if scale is None else scale
            if criterion == "l1":
                scores.append(l1_scores(k, _transposed(layer)) * scale)
            elif criterion == "l2":
                scores.append(l2_scores(k, _transposed(layer)) * scale)
            elif criterion == "tlt":
                scores.append(tlt_normalize(l2_scores(k, _transposed(layer), normalize=False) * scale, normalizer))
            elif criterion == "apoz":
                scores.append(per_producer[p])
            else:
                scores.append(random_scores(cg.size(g), rng))
        out[g] = scores[0] if len(scores) == 1 else equalize(scores, equalization)
    return out


def select_channels(cg: ChannelGraph, scores: dict, *, fraction: float | None = None, threshold: float | None = None,
                    scope: str = "global", granularity: int = 1, min_channels: int = 1, exclude=()) -> ChannelPlan:
    """Which channels go: a ``fraction`` (global or per group) or those scored below ``threshold``."""
    if (fraction is None) == (threshold is None):
        raise BadArgumentError("give exactly one of `fraction` and `threshold`", rule="argument.selection")
    if fraction is not None and not 0 <= fraction < 1:
        raise BadArgumentError(f"`fraction` must be in [0, 1). Received: {fraction!r}", rule="argument.fraction")
    if scope not in ("global", "layer"):
        raise BadArgumentError(f"`scope` must be 'global' or 'layer'. Received: {scope!r}", rule="argument.scope")
    _check_count("granularity", granularity, 1)
    _check_count("min_channels", min_channels, 1)
    exclude = set(exclude or ())
    unknown = exclude - {layer.name for layer in cg.model.layers}
    if unknown:
        raise BadArgumentError(f"`exclude` names layers the model does not have: {sorted(unknown)}",
                               rule="argument.exclude")
    eligible = {g: np.asarray(s, np.float64) for g, s in scores.items()
                if not exclude.intersection(cg.producers(g))}
    keep_n: dict[int, int] = {}
    if threshold is not None:
        for g, s in eligible.items():
            keep_n[g] = int((s >= threshold).sum())
    elif scope == "layer":
        for g, s in eligible.items():
            keep_n[g] = len(s) - int(np.floor(fraction * len(s)))
    else:
        total = sum(len(s) for s in eligible.values())
        budget = int(round(fraction * total))
        order = sorted(((float(v), g, i) for g, s in eligible.items() for i, v in enumerate(s)))
        keep_n = {g: len(s) for g, s in eligible.items()}
        for _, g, _ in order:
            if budget <= 0:
                break
            if keep_n[g] > min_channels:
                keep_n[g] -= 1
                budget -= 1
    plan = ChannelPlan()
    for g, s in eligible.items():
        n = len(s)
        k = round_up_kept(keep_n[g], n, granularity, min(min_channels, n)) if granularity > 1 else \
            min(n, max(keep_n[g], min(min_channels, n)))
        ranked = np.argsort(-s, kind="stable")       # best first; ties keep the lower index
        gone = sorted(int(i) for i in ranked[k:])
        plan.producers[g] = cg.producers(g)
        plan.sizes[g] = n
        if gone:
            plan.remove[g] = gone
    return plan


def _filters(model) -> dict:
    cg = ChannelGraph(model)
    return {p: cg.size(g) for g in cg.groups() for p in cg.producers(g)}


def prune_structured(model, data, *, criterion: str = "l1", fraction: float | None = 0.1, threshold: float | None = None,
                     scope: str = "global", rounds: int = 1, max_drop: float = 0.01, epochs: int = 1,
                     recovery_epochs: int = 0, equalization: str = "union", normalizer: str = "max",
                     granularity: int = 1, min_channels: int = 1, exclude=(), fold_bn: bool = False,
                     apoz_samples: int = 1024, seed: int = 0,
                     validation_data=None, validation_split: float = 0.1, batch_size: int = 128,
                     metric: str = "accuracy", optimizer=None, loss=None, metrics=None, learning_rate=None,
                     strategy=None, progress=None):
    """Rank, prune and retrain for up to ``rounds`` rounds; ``(smaller_model, StructuredHistory)``.

    A round whose validation metric is more than ``max_drop`` below the dense baseline after
    retraining is reverted and ends the loop. ``model`` is never modified. With ``tlt``, pass
    ``threshold`` (and typically ``granularity=8``, ``min_channels=16``, ``fraction=None``).
    Other arguments as for :func:`sparsecomp.prune` and :func:`select_channels`.
    """
    from .distribute import get_strategy
    _require_model(model)
    if criterion not in CRITERIA:
        raise BadArgumentError(f"`criterion` must be one of {list(CRITERIA)}. Received: {criterion!r}",
                               rule="argument.criterion")
    if threshold is not None:
        fraction = None
    if criterion == "magnitude" and (fraction is None or not 0 < fraction < 1):
        raise BadArgumentError("the magnitude criterion prunes a `fraction` in (0, 1) of each layer's surviving "
                               "weights per round", rule="argument.fraction")
    _check_number("max_drop", max_drop, 0.0)
    _check_count("rounds", rounds, 1)
    _check_count("epochs", epochs)
    _check_count("recovery_epochs", recovery_epochs)
    if equalization not in EQUALIZATIONS:
        raise BadArgumentError(f"`equalization` must be one of {list(EQUALIZATIONS)}. Received: {equalization!r}",
                               rule="argument.equalization")
    t_start = time.time()
    strategy = get_strategy(strategy)
    scope_cm = (lambda: strategy.scope()) if strategy is not None else contextlib.nullcontext
    cfg = _compile_config(model, optimizer, loss, metrics, learning_rate)
    train, val = _split_data(data, validation_data, validation_split)
    with scope_cm():
        current = clone_model(model)
    trainer = _Trainer(current, train, val, batch_size, metric, cfg, strategy)
    trainer.compile()
    baseline = trainer.evaluate()
    history = StructuredHistory(metric=metric, baseline=baseline, max_drop=max_drop,
                                dense_params=int(model.count_params()),
                                settings={"criterion": criterion, "fraction": fraction, "threshold": threshold,
                                          "scope": scope, "rounds": rounds, "epochs": epochs,
                                          "recovery_epochs": recovery_epochs, "equalization": equalization,
                                          "normalizer": normalizer, "granularity": granularity,
                                          "min_channels": min_channels, "exclude": list(exclude or ()),
                                          "fold_bn": fold_bn,
                                          "seed": seed, "batch_size": batch_size, "learning_rate": learning_rate})
    apoz_inputs = _sample_inputs(train, apoz_samples) if criterion == "apoz" else None
    final_value = baseline
    for r in range(1, rounds + 1):
        t0 = time.time()
        before = _filters(current)
        sparsity = 0.0
        with scope_cm():
            if criterion == "magnitude":
                candidate = clone_model(current)
                masks = MaskSet(candidate, from_zeros=True)
                for n in masks.masks:
                    if n in set(exclude or ()):
                        continue
                    old = masks.sparsity(n)
                    masks.set(n, magnitude_fraction_mask(masks.kernel(n), old + fraction * (1 - old), masks.masks[n]))
                removed = 0
            else:
                cg = ChannelGraph(current)
                scores = channel_scores(current, criterion, inputs=apoz_inputs, equalization=equalization,
                                        normalizer=normalizer, fold_bn=fold_bn, seed=seed + r, cg=cg)
                plan = select_channels(cg, scores, fraction=fraction, threshold=threshold, scope=scope,
                                       granularity=granularity, min_channels=min_channels, exclude=exclude)
                removed = plan.n_channels
                candidate = remove_channels(current, plan) if removed else clone_model(current)
                masks = None
        tr = _Trainer(candidate, train, val, batch_size, metric, cfg, strategy)
        tr.compile()
        tr.fit(epochs)
        used = epochs
        value = tr.evaluate()
        while baseline - value > max_drop + _METRIC_TOL and used < epochs + recovery_epochs:
            tr.fit(1)
            used += 1
            value = tr.evaluate()
        ok = baseline - value <= max_drop + _METRIC_TOL
        if masks is not None:
            masks.release()
            for n, m in masks.masks.items():          # exact +0.0 where masked
                k = kernel_of(candidate.get_layer(n))
                w = np.asarray(k.numpy())
                k.assign(np.where(m, w, np.zeros_like(w)))
            zeros = sum(int((~m).sum()) for m in masks.masks.values())
            sparsity = zeros / max(sum(m.size for m in masks.masks.values()), 1)
        after = _filters(candidate)
        rd = StructuredRound(round=r, criterion=criterion, channels_removed=removed,
                             filters={p: [after.get(p, 0), n] for p, n in before.items()},
                             params=int(candidate.count_params()), val_metric=value, drop=baseline - value,
                             accepted=ok, seconds=time.time() - t0, epochs=used, sparsity=sparsity)
        history.rounds.append(rd)
        if progress is not None:
            progress(rd)
        log.info("round %d %s removed %d channels params %d %s=%.4f %s", r, criterion, removed, rd.params, metric,
                 value, "accepted" if ok else "reverted")
        if not ok:
            break
        current, final_value = candidate, value
        if criterion != "magnitude" and removed == 0:
            break
    with scope_cm():
        final = clone_model(current)
        final.compile_from_config(cfg)
    history.final_metric = final_value
    history.final_params = int(final.count_params())
    history.seconds = time.time() - t_start
    return final, history
