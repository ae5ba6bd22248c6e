"""Correlation pruning (Nomuunbayar & Kang, IJFIS 2018), layer by layer from the last layer.

A weight goes when its magnitude is below ``q * sigma`` of its layer's surviving weights *and* the
correlation between its value and its change during the last part of training, ``|r(w, dw)|``,
is among the smallest ``p`` of the layer's: a small weight that training keeps pushing
consistently (strong correlation) is on its way somewhere and is kept, where plain magnitude
pruning would cut it.

The schedule (one *step* = one layer):

1. the layer's ``r`` comes from :class:`sparsecomp.recorder.CorrelationRecorder`, recorded over the
   last ``record_fraction`` of the iterations of the previous step's fine-tuning (the recorder
   tracks the next layer in line while the current one is retrained, so recording costs no extra
   epochs); when there is no such recording (the first step, or after a revert) the step first
   trains ``epochs`` epochs to record;
2. prune with :func:`sparsecomp.criteria.correlation_mask`; retrain every layer ``epochs`` epochs
   (+ up to ``recovery_epochs``) with all masks held; evaluate on validation data;
3. accept, or revert to the last accepted weights and masks; a reverted layer's ``q`` is halved
   for its later steps, and once it would fall below ``min_q`` the layer is finished.

Layers go from the last one to the first; the cycle over all layers repeats (pruned weights stay
zero and are left out of later statistics) until no layer can be pruned further, ``max_cycles``,
or ``target_sparsity`` is reached. Retraining, the gate, checkpoints and resume are the engine's
(:mod:`sparsecomp.training`).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from .arguments import check_count, check_fraction, check_number, require_model
from .criteria import correlation_mask
from .distribute import guard_collectives
from .errors import BadArgumentError
from .history import PruneHistory, PruneStep
from .masks import prunable_layers
from .recorder import CorrelationRecorder
from .training import FineTuner, FineTuning

__all__ = ["prune_correlation"]

log = logging.getLogger(__name__)


def _layer_order(model, layers) -> list[str]:
    names = [layer.name for layer in prunable_layers(model)]
    if layers is None or layers == "auto":
        return names[::-1]
    layers = [layers] if isinstance(layers, str) else list(layers)
    for n in layers:
        if n not in names:
            raise BadArgumentError(f"{n!r} is not a prunable layer of the model (prunable: {names})",
                                   rule="argument.layers")
    if len(set(layers)) != len(layers):
        raise BadArgumentError(f"a layer is named twice in `layers`: {layers}", rule="argument.layers")
    if not layers:
        raise BadArgumentError("`layers` is empty", rule="argument.layers")
    return layers


@guard_collectives
def prune_correlation(model, data, *, validation_data=None, layers="auto", q: float = 1.0, p: float = 0.4,
                      record_fraction: float = 0.1, min_q: float | None = None, max_cycles: int = 10,
                      target_sparsity: float | None = None, strategy=None, checkpoint_dir=None, resume: bool = False,
                      interrupt_dir=None, progress=None, tuning: FineTuning | None = None, **tuning_kwargs):
    """Prune ``model`` by magnitude and weight/change correlation, one layer at a time.

    Args:
        model, data, validation_data, strategy, checkpoint_dir, resume, interrupt_dir, progress,
            tuning, **tuning_kwargs: as for :func:`sparsecomp.prune` (``epochs`` >= 1 here: the
            correlation is recorded while retraining).
        layers: ``"auto"`` (every prunable layer, last to first) or layer names in the order to prune.
        q: magnitude cut, in standard deviations of the layer's surviving weights.
        p: the fraction of each layer's surviving weights with the weakest ``|r|`` that may go
            (the paper's best: 0.4).
        record_fraction: the last fraction of a fine-tuning's iterations over which ``r`` is
            recorded (the paper found the last 10% best).
        min_q: a reverted layer's ``q`` is halved; below ``min_q`` (default ``q / 4``) it is finished.
        max_cycles: passes over all layers at most.
        target_sparsity: stop once this fraction of all prunable kernels' weights is zero.

    Returns:
        ``(pruned_model, history)`` as :func:`sparsecomp.prune` does; each step's ``extra`` holds
        the cycle, ``p``, the recorded iterations and how many weights it pruned.
    """
    check_number("q", q, 0.0)
    check_fraction("p", p)
    check_fraction("record_fraction", record_fraction, allow_zero=False)
    min_q = q / 4 if min_q is None else min_q
    check_number("min_q", min_q, 0.0, open_lo=True)
    check_count("max_cycles", max_cycles, 1)
    if target_sparsity is not None:
        check_fraction("target_sparsity", target_sparsity)
    tuning = FineTuning.build(tuning, **tuning_kwargs)
    check_count("epochs", tuning.epochs, 1)
    require_model(model)
    order = _layer_order(model, layers)
    settings = {"method": "correlation", "layers": order, "q": q, "p": p, "record_fraction": record_fraction,
                "min_q": min_q, "max_cycles": max_cycles, "target_sparsity": target_sparsity}
    tuner = FineTuner(model, data, validation_data=validation_data, tuning=tuning, method="correlation",
                      settings=settings, strategy=strategy, checkpoint_dir=checkpoint_dir, resume=resume,
                      interrupt_dir=interrupt_dir)
    tuner.train_only(None)      # retraining after each step updates every layer (masks held)
    steps = tuner.data.steps_per_epoch()
    start_at = 0 if steps is None else int(math.floor((1.0 - record_fraction) * tuning.epochs * steps))
    rec = {"recorder": None}

    def track(name):
        if rec["recorder"] is not None:
            rec["recorder"].release()
        with tuner.scope():
            rec["recorder"] = CorrelationRecorder(tuner.masks, [name])
        tuner.compile()
        return rec["recorder"].callback(start_at)

    resumed = tuner.resume()
    if resumed is None:
        history = PruneHistory(metric=tuning.metric, baseline=tuner.baseline, max_drop=tuning.max_drop,
                               groups={n: [n] for n in order},
                               settings=tuner.run_settings())
        state = {"cycle": 1, "index": 0, "layer_q": {n: float(q) for n in order}, "finished": [],
                 "recorded_for": None, "progressed": False, "stop": False}
        accepted = tuner.snapshot()
    else:
        state, hist, arrays = resumed
        history = PruneHistory.from_dict(hist)
        history.resumed.append(len(history.steps))
        accepted = tuner.resumed_snapshot
        if state["recorded_for"] is not None:
            track(state["recorded_for"])
            rec["recorder"].load_statistics(arrays)
            tuner.restore(accepted)             # the optimizer state, into the recompiled model's optimizer

    def next_in_line(after):
        alive = [n for n in order if n not in state["finished"]]
        if not alive:
            return None
        i = order.index(after)
        for k in range(1, len(order) + 1):
            cand = order[(i + k) % len(order)]
            if cand in alive:
                return cand
        return None

    def advance():
        state["index"] += 1
        if state["index"] >= len(order):
            if not state["progressed"] or len(state["finished"]) == len(order) or state["cycle"] >= max_cycles:
                state["stop"] = True
            state.update(cycle=state["cycle"] + 1, index=0, progressed=False)

    try:
        while not state["stop"]:
            name = order[state["index"]]
            if name in state["finished"]:
                advance()
                continue
            if not tuner.budget_left():
                break
            t0 = time.time()
            used = 0
            if state["recorded_for"] != name:
                tuner.fit(tuning.epochs, callbacks=[track(name)])
                used += tuning.epochs
            recorder = rec["recorder"]
            r = recorder.correlation(name)
            n_rec = recorder.iterations(name)
            before = tuner.masks.masks[name]
            w = tuner.masks.kernel(name)
            alive = before.astype(bool)
            sigma = float(np.std(w[alive].astype(np.float64))) if alive.any() else 0.0
            new = correlation_mask(w, r, state["layer_q"][name], p, before)
            n_now = int(alive.sum() - new.sum())
            if n_now == 0:
                state["finished"].append(name)
                state["recorded_for"] = None
                log.info("cycle %d %s: nothing left below q*sigma among the weakest |r|; finished",
                         state["cycle"], name)
                advance()
                continue
            tuner.masks.set(name, new)
            nxt = next_in_line(name)
            callbacks = [track(nxt)] if nxt is not None else None
            if nxt is None:
                tuner.compile()
            value, fit_used, ok = tuner.fine_tune(callbacks=callbacks)
            used += fit_used
            lq = state["layer_q"][name]
            st = PruneStep(group=name, q=lq, thresholds={name: lq * sigma}, sparsity={name: tuner.masks.sparsity(name)},
                           total_sparsity=tuner.total_sparsity(), val_metric=value, drop=tuner.baseline - value,
                           accepted=ok, seconds=time.time() - t0, epochs=used,
                           extra={"cycle": state["cycle"], "p": p, "recorded_iterations": n_rec,
                                  "pruned_now": n_now})
            history.steps.append(st)
            log.info("cycle %d %s q=%.3f pruned %d sparsity=%.4f %s=%.4f %s", state["cycle"], name, lq, n_now,
                     st.total_sparsity, tuning.metric, value, "accepted" if ok else "reverted")
            arrays = {}
            if ok:
                accepted = tuner.snapshot()
                state.update(progressed=True, recorded_for=nxt)
                arrays = rec["recorder"].statistics() if nxt is not None else {}
                if target_sparsity is not None and st.total_sparsity >= target_sparsity:
                    state["stop"] = True
            else:
                tuner.restore(accepted)
                state["recorded_for"] = None
                state["layer_q"][name] = lq / 2
                if state["layer_q"][name] < min_q - 1e-12:
                    state["finished"].append(name)
            if not state["stop"]:
                advance()
            tuner.decided(accepted, state, history, arrays)
            if progress is not None:
                progress(st)
    except KeyboardInterrupt:
        raise tuner.interrupted(history) from None
    if rec["recorder"] is not None:
        rec["recorder"].release()
    history.final_sparsity = {n: tuner.masks.sparsity(n) for n in tuner.all_prunable}
    final = tuner.finish(history)
    return final, history
