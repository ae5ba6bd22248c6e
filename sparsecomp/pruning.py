"""Iterative std-threshold pruning over frozen layer groups (Han et al. 2015): criterion + schedule.

The criterion (:func:`sparsecomp.criteria.std_threshold_mask`): a layer's threshold is
``q * sigma``, ``sigma`` the standard deviation of the layer's weights *as they are when its group
starts* (the trained dense weights for the first group). Keeping sigma fixed makes ``q`` mean the
same cut throughout a group: "prune below q standard deviations of the trained layer";
recomputing it from the survivors would inflate it at every step, because removing the smallest
weights widens the distribution of what is left.

The schedule: groups are pruned one after the other (default: convolutions, then fully-connected
layers); while a group is pruned every layer outside it is frozen. Per group, ``q`` starts at
``q0`` and rises by ``step``; after each rise the engine (:mod:`sparsecomp.training`) fine-tunes
with the masks held and judges the step; a step that stays below the gate is reverted and ends the
group (or, with ``min_step``, is retried half-way back). Dropout in front of a pruned layer is
rescaled as in Han et al. (eq. 2): ``D_r = D_o * sqrt(C_r / C_o)``.

Everything the fine-tuning does (epochs, recovery, the gate, learning rate, L2, budget, seed,
checkpoints) is the engine's: see :class:`sparsecomp.training.FineTuning`.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from .arguments import check_count, check_fraction, check_number, require_model
from .criteria import std_threshold, std_threshold_mask
from .distribute import guard_collectives
from .errors import BadArgumentError
from .graph import LayerGraph
from .history import PruneHistory, PruneStep
from .masks import prunable_layers
from .training import FineTuner, FineTuning

__all__ = ["prune", "default_groups", "normalize_groups", "CONV_TYPES"]

log = logging.getLogger(__name__)

CONV_TYPES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")


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


GROUP_KEYS = ("q0", "step", "max_q", "min_step", "max_reverts", "epochs", "recovery_epochs")


def check_group_settings(group_settings, groups: dict) -> dict:
    """``group_settings`` validated against the groups: ``{group name: {key: value}}``."""
    if group_settings is None:
        return {}
    if not isinstance(group_settings, dict):
        raise BadArgumentError(f"`group_settings` must be a dict of group name -> settings. Received: "
                               f"{group_settings!r}", rule="argument.group_settings")
    out = {}
    for gname, opts in group_settings.items():
        if gname not in groups:
            raise BadArgumentError(f"`group_settings` names group {gname!r}; the groups are {list(groups)}",
                                   rule="argument.group_settings")
        if not isinstance(opts, dict) or set(opts) - set(GROUP_KEYS):
            raise BadArgumentError(f"`group_settings[{gname!r}]` may set {list(GROUP_KEYS)}. Received: {opts!r}",
                                   rule="argument.group_settings")
        for k, v in opts.items():
            if k in ("max_reverts", "epochs"):
                check_count(f"group_settings.{gname}.{k}", v, 1)
            elif k == "recovery_epochs":
                check_count(f"group_settings.{gname}.{k}", v, 0)
            elif k in ("step", "min_step"):
                check_number(f"group_settings.{gname}.{k}", v, 0.0, open_lo=True)
            else:
                check_number(f"group_settings.{gname}.{k}", v, 0.0)
        out[str(gname)] = dict(opts)
    return out


def normalize_groups(model, groups) -> dict:
    """``"auto"``, a list of lists of layer names, or a dict, as ``{group name: [layer names]}``."""
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


def dropouts_before(graph: LayerGraph, layer_name: str) -> list[str]:
    """Dropout layers whose output feeds ``layer_name``."""
    return [p for p in graph.producers_of(layer_name)
            if graph.layers.get(p) is not None and type(graph.layers[p]).__name__ == "Dropout"]


@guard_collectives
def prune(model, data, *, validation_data=None, groups="auto", q0: float = 0.5, step: float = 0.1,
          max_q: float = 6.0, min_step: float | None = None, max_reverts: int | None = None,
          group_settings: dict | None = None, target_sparsity: float | None = None, final_epochs: int = 0,
          passes: int = 1, one_shot: bool = False, q: float | None = None, rescale_dropout: bool = True,
          strategy=None, checkpoint_dir=None, resume: bool = False, interrupt_dir=None, progress=None,
          tuning: FineTuning | None = None, **tuning_kwargs):
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
        max_reverts: end a group after this many reverted steps (``None``: only ``min_step`` ends
            it). Bounds the time a group spends refining its last ``q``.
        group_settings: per group name, overrides of ``q0``, ``step``, ``max_q``, ``min_step``,
            ``max_reverts``, ``epochs`` and ``recovery_epochs`` — e.g. ``{"conv": {"step": 0.5,
            "epochs": 1}}``: convolutions are few weights and slow epochs, Dense layers many weights
            and (with the convolutions frozen) fast ones.
        target_sparsity: stop the whole schedule once this fraction of all prunable kernels'
            weights is zero (``None``: prune as far as accuracy allows).
        final_epochs: after the schedule, up to this many epochs with every layer trainable at once
            (masks held, the rate decaying as in a step); the epoch with the best validation metric
            is kept when it beats the schedule's end state (:meth:`FineTuner.polish`). ``0``: none.
        passes: how many times the schedule may go over the groups. A group ends at a reverted
            step, and near the gate one noisy validation reading can end it early; with
            ``passes=2``, when every group has ended short of ``target_sparsity`` (or, without a
            target, always), every layer first trains together for ``final_epochs`` epochs (as
            above) and then each group starts again from its last accepted ``q`` with half its
            ``step`` (same sigma, so ``q`` keeps its meaning; its ``max_reverts`` counted afresh).
            Steps of a later pass carry ``extra["pass"]``. ``1`` (default): one pass, as in the recipe.
        one_shot: prune every group once at ``q`` (default ``q0``) without fine-tuning.
        rescale_dropout: rescale Dropout in front of a pruned layer by ``sqrt(density)``.
        strategy: ``None``, a ``tf.distribute.Strategy``, or ``"default"``, ``"mirrored"``,
            ``"multiworker"`` (see :mod:`sparsecomp.distribute`).
        checkpoint_dir: keep the run's state there after every decided step (chief only);
            ``resume=True`` continues from it (refusing one made by other settings, model or data).
        interrupt_dir: where the last decided state goes on SIGINT/SIGTERM when there is no
            ``checkpoint_dir`` (then :class:`~sparsecomp.training.PruningInterrupted` is raised).
        progress: optional ``callable(step: PruneStep)``, called after every step.
        tuning, **tuning_kwargs: the fine-tuning settings shared by every method — a
            :class:`~sparsecomp.training.FineTuning` and/or its fields as keywords (``epochs``,
            ``recovery_epochs``, ``max_drop``, ``learning_rate``, ``lr_decay``, ``l2``,
            ``batch_size``, ``max_epochs``, ``seed``, ``gate``...).

    Returns:
        ``(pruned_model, history)``: a new compiled model whose pruned weights are exactly zero, and
        a :class:`~sparsecomp.history.PruneHistory`.
    """
    check_number("q0", q0, 0.0)
    check_number("step", step, 0.0, open_lo=True)
    check_number("max_q", max_q, 0.0)
    if min_step is not None:
        check_number("min_step", min_step, 0.0, open_lo=True)
    if max_reverts is not None:
        check_count("max_reverts", max_reverts, 1)
    if target_sparsity is not None:
        check_fraction("target_sparsity", target_sparsity)
    if q is not None:
        check_number("q", q, 0.0)
    check_count("final_epochs", final_epochs)
    check_count("passes", passes, 1)
    tuning = FineTuning.build(tuning, **tuning_kwargs)
    require_model(model)
    groups = normalize_groups(model, groups)
    group_settings = check_group_settings(group_settings, groups)
    settings = {"method": "std", "groups": groups, "q0": q0, "step": step, "max_q": max_q, "min_step": min_step,
                "max_reverts": max_reverts, "group_settings": group_settings, "target_sparsity": target_sparsity,
                "final_epochs": final_epochs, "passes": passes, "one_shot": one_shot, "q": q,
                "rescale_dropout": rescale_dropout}
    tuner = FineTuner(model, data, validation_data=validation_data, tuning=tuning, method="std", settings=settings,
                      strategy=strategy, checkpoint_dir=checkpoint_dir, resume=resume, interrupt_dir=interrupt_dir)
    names_all = list(groups)
    dropout_base = {d: tuner.work.get_layer(d).rate for g in groups.values() for n in g
                    for d in dropouts_before(tuner.graph, n)}
    resumed = tuner.resume()
    if resumed is None:
        history = PruneHistory(metric=tuning.metric, baseline=tuner.baseline, max_drop=tuning.max_drop,
                               groups=groups, settings=tuner.run_settings())
        state = {"group": 0, "started": False, "q": None, "q_ok": None, "step": step, "sigma": {}, "stop": False,
                 "reverts": 0, "pass": 1, "ended": {}}
        accepted = None
    else:
        state, hist, _ = resumed
        history = PruneHistory.from_dict(hist)
        history.resumed.append(len(history.steps))
        accepted = tuner.resumed_snapshot
        state.setdefault("pass", 1)         # checkpoints written before passes existed
        state.setdefault("ended", {})

    def rescale() -> bool:
        if not rescale_dropout or not dropout_base:
            return False
        changed = False
        for names in groups.values():
            for n in names:
                for d in dropouts_before(tuner.graph, n):
                    rate = dropout_base[d] * math.sqrt(1.0 - tuner.masks.sparsity(n))
                    if tuner.work.get_layer(d).rate != rate:
                        tuner.work.get_layer(d).rate = rate
                        changed = True
        return changed

    def next_group():
        # a new dict, not an update: the copy of the state kept for an interruption must not change
        state["ended"] = {**state["ended"], names_all[state["group"]]: {"q_ok": state["q_ok"], "sigma": state["sigma"]}}
        state.update(group=state["group"] + 1, started=False, q=None, q_ok=None, step=step, reverts=0)

    def next_pass() -> bool:
        """Go over the groups again (``passes``), after every layer trained together."""
        if one_shot or state["pass"] >= passes or not tuner.budget_left():
            return False
        if target_sparsity is not None and tuner.total_sparsity() >= target_sparsity:
            return False
        values, kept = tuner.polish(final_epochs) if final_epochs else ([], 0)
        history.passes.append({"after_step": len(history.steps), "polish": values, "kept": kept})
        log.info("pass %d: every layer trained %d epochs, kept %d", state["pass"] + 1, len(values), kept)
        state.update({"pass": state["pass"] + 1, "group": 0, "started": False, "q": None, "q_ok": None,
                      "step": step, "reverts": 0})
        return True

    defaults = {"q0": q0, "step": step, "max_q": max_q, "min_step": min_step, "max_reverts": max_reverts,
                "epochs": None, "recovery_epochs": None}
    try:
        while not state["stop"]:
            if state["group"] >= len(names_all):
                if not next_pass():
                    break
                accepted = tuner.snapshot()
                tuner.decided(accepted, state, history)
            gname = names_all[state["group"]]
            names = groups[gname]
            g = {**defaults, **group_settings.get(gname, {})}
            if not state["started"]:
                tuner.train_only(names)
                before = state["ended"].get(gname) if state["pass"] > 1 else None
                if before is None:
                    sigma = {n: float(np.std(tuner.masks.kernel(n))) for n in names}
                    history.sigma.update(sigma)
                    state.update(started=True, sigma=sigma, q=float(q if (one_shot and q is not None) else g["q0"]),
                                 q_ok=None, step=g["step"], reverts=0)
                else:                      # a later pass: on from the last accepted q, half the step
                    half = g["step"] / 2
                    base = before["q_ok"]
                    state.update(started=True, sigma=before["sigma"], q=(g["q0"] if base is None else base + half),
                                 q_ok=base, step=half, reverts=0)
                accepted = tuner.snapshot()
            if state["q"] > g["max_q"] + 1e-9:
                next_group()
                continue
            if not tuner.budget_left():
                state["stop"] = True
                break
            t0 = time.time()
            qv = float(round(state["q"], 10))
            thresholds = {n: std_threshold(state["sigma"][n], qv) for n in names}
            for n in names:
                tuner.masks.set(n, std_threshold_mask(tuner.masks.kernel(n), thresholds[n], tuner.masks.masks[n]))
            if rescale():
                tuner.compile()       # a dropout rate is read when the step is traced
            if one_shot:
                value, used, ok = tuner.evaluate(), 0, True
            else:
                value, used, ok = tuner.fine_tune(epochs=g["epochs"], recovery_epochs=g["recovery_epochs"])
            st = PruneStep(group=gname, q=qv, thresholds=thresholds,
                           sparsity={n: tuner.masks.sparsity(n) for n in names},
                           total_sparsity=tuner.total_sparsity(), val_metric=value, drop=tuner.baseline - value,
                           accepted=ok, seconds=time.time() - t0, epochs=used,
                           extra={"pass": state["pass"]} if state["pass"] > 1 else {})
            history.steps.append(st)
            log.info("group %s q=%.2f sparsity=%.4f %s=%.4f drop=%.4f %s", gname, qv, st.total_sparsity,
                     tuning.metric, value, st.drop, "accepted" if ok else "reverted")
            if one_shot:
                accepted = tuner.snapshot()
                next_group()
            elif not ok:
                tuner.restore(accepted)
                state["reverts"] = state.get("reverts", 0) + 1
                base = state["q_ok"] if state["q_ok"] is not None else 0.0
                half = (qv - base) / 2
                if g["min_step"] is None or half < g["min_step"] - 1e-12 or \
                        (g["max_reverts"] is not None and state["reverts"] >= g["max_reverts"]):
                    next_group()
                else:
                    state.update(step=half, q=base + half)      # back off: half the way to the q that failed
            else:
                accepted = tuner.snapshot()
                if target_sparsity is not None and st.total_sparsity >= target_sparsity:
                    state["stop"] = True
                elif all(tuner.masks.sparsity(n) >= 1.0 for n in names):
                    next_group()
                else:
                    state.update(q_ok=qv, q=qv + state["step"])
            tuner.decided(accepted, state, history)
            if progress is not None:
                progress(st)
    except KeyboardInterrupt:
        raise tuner.interrupted(history) from None
    if final_epochs and not one_shot and not history.final_tuning:
        try:
            history.final_tuning, history.final_kept = tuner.polish(final_epochs)
        except KeyboardInterrupt:
            raise tuner.interrupted(history) from None
        log.info("final epochs %s=%s, kept epoch %d", tuning.metric,
                 ["%.4f" % v for v in history.final_tuning], history.final_kept)
    history.final_sparsity = {n: tuner.masks.sparsity(n) for n in tuner.all_prunable}
    final = tuner.finish(history)
    return final, history
