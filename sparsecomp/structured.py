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
- **retrain**: ``epochs`` (+ up to ``recovery_epochs``) epochs, evaluate on validation data — the
  engine's fine-tuning and gate (:mod:`sparsecomp.training`), with checkpoints and resume.

``criterion="magnitude"`` is the unstructured control in the same loop: each round masks the
``fraction`` smallest-magnitude surviving weights of every layer (masks held while retraining).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .arguments import check_count, check_fraction, check_number, require_model
from .channels import PASS, ChannelGraph, ChannelPlan, remove_channels
from .criteria import CRITERIA, EQUALIZATIONS, ChannelContext, apoz_scores, equalize, magnitude_fraction_mask, \
    round_up_kept
from .distribute import guard_collectives
from .errors import BadArgumentError
from .history import StructuredHistory, StructuredRound
from .masks import kernel_of
from .model_io import clone_model
from .training import FineTuner, FineTuning

__all__ = ["prune_structured", "channel_scores", "select_channels", "structured_criteria"]

log = logging.getLogger(__name__)


def structured_criteria() -> list[str]:
    """The criteria ``prune_structured`` takes: every channel criterion, and ``magnitude`` (the
    unstructured control in the same loop)."""
    return CRITERIA.names(lambda c: c.kind == "channels") + ["magnitude"]


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

    ``criterion``: a channel criterion of :data:`sparsecomp.criteria.CRITERIA` (``l1``, ``l2``,
    ``apoz``, ``random``, ``tlt``). ``inputs``: real input samples (APoZ only). Groups with several
    producers are equalized. ``fold_bn`` (l1, l2, tlt): multiply each filter's norm by the scale
    ``|gamma|/sqrt(var+eps)`` of a BatchNormalization right after it — the norm of the filter BN
    folding would produce. Without it, a kernel norm says little in a BN network: BN undoes any
    rescaling of the kernel.
    """
    channel = CRITERIA.names(lambda c: c.kind == "channels")
    if criterion not in channel:
        raise BadArgumentError(f"`criterion` must be one of {channel} here. Received: {criterion!r}",
                               rule="argument.criterion")
    crit = CRITERIA.get(criterion)
    if equalization not in EQUALIZATIONS:
        raise BadArgumentError(f"`equalization` must be one of {list(EQUALIZATIONS)}. Received: {equalization!r}",
                               rule="argument.equalization")
    cg = cg or ChannelGraph(model)
    groups = cg.prunable_groups()
    apoz: dict[str, np.ndarray] = {}
    if crit.needs_inputs:
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
            apoz[p] = apoz_scores(zeros[n] if strict else nonpos[n], totals[n])
    rng = np.random.default_rng(seed)
    out = {}
    for g in groups:
        scores = []
        for p in cg.producers(g):
            layer = model.get_layer(p)
            k = np.asarray(kernel_of(layer).numpy())
            scale = _bn_scale(cg, p) if fold_bn and criterion in ("l1", "l2", "tlt") else None
            ctx = ChannelContext(transposed=_transposed(layer), scale=1.0 if scale is None else scale,
                                 normalizer=normalizer, rng=rng, apoz=apoz.get(p), n=cg.size(g))
            scores.append(np.asarray(crit.fn(k, ctx), np.float64))
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
    check_count("granularity", granularity, 1)
    check_count("min_channels", min_channels, 1)
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


@guard_collectives
def prune_structured(model, data, *, validation_data=None, criterion: str = "l1", fraction: float | None = 0.1,
                     threshold: float | None = None, scope: str = "global", rounds: int = 1, equalization: str = "union",
                     normalizer: str = "max", granularity: int = 1, min_channels: int = 1, exclude=(),
                     fold_bn: bool = False, apoz_samples: int = 1024, strategy=None, checkpoint_dir=None,
                     resume: bool = False, interrupt_dir=None, progress=None, tuning: FineTuning | None = None,
                     **tuning_kwargs):
    """Rank, prune and retrain for up to ``rounds`` rounds; ``(smaller_model, StructuredHistory)``.

    A round whose validation metric stays below the gate after retraining is reverted and ends
    the loop. ``model`` is never modified. With ``tlt``, pass ``threshold`` (and typically
    ``granularity=8``, ``min_channels=16``, ``fraction=None``). Selection arguments as for
    :func:`select_channels`; fine-tuning ones (``tuning``/keywords) as for
    :func:`sparsecomp.prune`, with ``max_drop=0.01`` and ``recovery_epochs=0`` by default here;
    ``seed`` also seeds the ``random`` criterion.
    """
    require_model(model)
    if criterion not in structured_criteria():
        raise BadArgumentError(f"`criterion` must be one of {structured_criteria()}. Received: {criterion!r}",
                               rule="argument.criterion")
    if threshold is not None:
        fraction = None
    if criterion == "magnitude" and (fraction is None or not 0 < fraction < 1):
        raise BadArgumentError("the magnitude criterion prunes a `fraction` in (0, 1) of each layer's surviving "
                               "weights per round", rule="argument.fraction")
    if fraction is not None:
        check_fraction("fraction", fraction, allow_one=False)
    if threshold is not None:
        check_number("threshold", threshold, 0.0)
    check_count("rounds", rounds, 1)
    check_count("apoz_samples", apoz_samples, 1)
    if equalization not in EQUALIZATIONS:
        raise BadArgumentError(f"`equalization` must be one of {list(EQUALIZATIONS)}. Received: {equalization!r}",
                               rule="argument.equalization")
    tuning = FineTuning.build(tuning, defaults={"max_drop": 0.01, "recovery_epochs": 0}, **tuning_kwargs)
    exclude = list(exclude or ())
    settings = {"method": "structured", "criterion": criterion, "fraction": fraction, "threshold": threshold,
                "scope": scope, "rounds": rounds, "equalization": equalization, "normalizer": normalizer,
                "granularity": granularity, "min_channels": min_channels, "exclude": exclude, "fold_bn": fold_bn,
                "apoz_samples": apoz_samples}
    magnitude = criterion == "magnitude"
    tuner = FineTuner(model, data, validation_data=validation_data, tuning=tuning, method="structured",
                      settings=settings, strategy=strategy, checkpoint_dir=checkpoint_dir, resume=resume,
                      interrupt_dir=interrupt_dir, masks=magnitude)
    resumed = tuner.resume()
    if resumed is None:
        history = StructuredHistory(metric=tuning.metric, baseline=tuner.baseline, max_drop=tuning.max_drop,
                                    dense_params=int(model.count_params()), settings=tuner.run_settings())
        state = {"round": 1, "final_value": tuner.baseline, "stop": False}
        accepted = tuner.snapshot()
    else:
        state, hist, _ = resumed
        history = StructuredHistory.from_dict(hist)
        history.resumed.append(len(history.rounds))
        accepted = tuner.resumed_snapshot
    needs_inputs = not magnitude and CRITERIA.get(criterion).needs_inputs
    apoz_inputs = _sample_inputs(tuner.data.train, apoz_samples) if needs_inputs else None
    try:
        while not state["stop"] and state["round"] <= rounds and tuner.budget_left():
            r = state["round"]
            t0 = time.time()
            current = tuner.work
            before = _filters(current)
            sparsity = 0.0
            with tuner.scope():
                if magnitude:
                    candidate = clone_model(current)
                    removed = 0
                else:
                    cg = ChannelGraph(current)
                    scores = channel_scores(current, criterion, inputs=apoz_inputs, equalization=equalization,
                                            normalizer=normalizer, fold_bn=fold_bn, seed=tuning.seed + r, cg=cg)
                    plan = select_channels(cg, scores, fraction=fraction, threshold=threshold, scope=scope,
                                           granularity=granularity, min_channels=min_channels, exclude=exclude)
                    removed = plan.n_channels
                    candidate = remove_channels(current, plan) if removed else clone_model(current)
            tuner.use(candidate)
            if magnitude:
                masks = tuner.masks
                for n in masks.masks:
                    if n in exclude:
                        continue
                    old = masks.sparsity(n)
                    masks.set(n, magnitude_fraction_mask(masks.kernel(n), old + fraction * (1 - old), masks.masks[n]))
            value, used, ok = tuner.fine_tune()
            if magnitude:
                zeros = sum(int((~m).sum()) for m in tuner.masks.masks.values())
                sparsity = zeros / max(sum(m.size for m in tuner.masks.masks.values()), 1)
            after = _filters(tuner.work)
            rd = StructuredRound(round=r, criterion=criterion, channels_removed=removed,
                                 filters={p: [after.get(p, 0), n] for p, n in before.items()},
                                 params=int(tuner.work.count_params()), val_metric=value, drop=tuner.baseline - value,
                                 accepted=ok, seconds=time.time() - t0, epochs=used, sparsity=sparsity)
            history.rounds.append(rd)
            log.info("round %d %s removed %d channels params %d %s=%.4f %s", r, criterion, removed, rd.params,
                     tuning.metric, value, "accepted" if ok else "reverted")
            if ok:
                accepted = tuner.snapshot()
                state["final_value"] = value
                if not magnitude and removed == 0:
                    state["stop"] = True
            else:
                tuner.restore(accepted)
                state["stop"] = True
            state["round"] = r + 1
            tuner.decided(accepted, state, history)
            if progress is not None:
                progress(rd)
    except KeyboardInterrupt:
        raise tuner.interrupted(history) from None
    final = tuner.finish(history)
    history.final_metric = state["final_value"]
    history.final_params = int(final.count_params())
    return final, history
