"""Correlation pruning (Nomuunbayar & Kang, IJFIS 2018), layer by layer from the last layer.

A weight goes when its magnitude is below ``q * sigma`` of its layer's surviving weights *and* the
correlation between its value and its change during the last part of training, ``|r(w, dw)|``,
is among the smallest ``p`` of the layer's: a small weight that training keeps pushing
consistently (strong correlation) is on its way somewhere and is kept, where plain magnitude
pruning would cut it.

The schedule (one *step* = one layer):

1. the layer's ``r`` comes from :class:`sparsecomp.history.CorrelationRecorder`, recorded over the
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
or ``target_sparsity`` is reached.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from .criteria import correlation_mask
from .errors import BadArgumentError
from .history import CorrelationRecorder
from .masks import prunable_layers
from .pruning import PruneHistory, PruneStep, _check_count, _check_number, _require_model, _Run

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


def prune_correlation(model, data, *, validation_data=None, validation_split: float = 0.1, layers="auto",
                      q: float = 1.0, p: float = 0.4, record_fraction: float = 0.1, min_q: float | None = None,
                      max_drop: float = 0.002, max_cycles: int = 10, target_sparsity: float | None = None,
                      epochs: int = 1, recovery_epochs: int = 2, batch_size: int = 128, metric: str = "accuracy",
                      optimizer=None, loss=None, metrics=None, learning_rate=None, lr_decay: float = 1.0,
                      l2: float | None = None, max_epochs: int | None = None, strategy=None, progress=None):
    """Prune ``model`` by magnitude and weight/change correlation, one layer at a time.

    Args:
        model, data, validation_data, validation_split, batch_size, metric, optimizer, loss,
            metrics, learning_rate, lr_decay, l2, strategy, progress: as for :func:`sparsecomp.prune`.
        layers: ``"auto"`` (every prunable layer, last to first) or layer names in the order to prune.
        q: magnitude cut, in standard deviations of the layer's surviving weights.
        p: the fraction of each layer's surviving weights with the weakest ``|r|`` that may go
            (the paper's best: 0.4).
        record_fraction: the last fraction of a fine-tuning's iterations over which ``r`` is
            recorded (the paper found the last 10% best).
        min_q: a reverted layer's ``q`` is halved; below ``min_q`` (default ``q / 4``) it is finished.
        max_drop: largest allowed fall of the validation metric below the dense baseline.
        max_cycles: passes over all layers at most.
        target_sparsity: stop once this fraction of all prunable kernels' weights is zero.
        epochs, recovery_epochs: retraining after each step, as for :func:`sparsecomp.prune`.
        max_epochs: a training budget (recording epochs included): no new step starts once it is spent.

    Returns:
        ``(pruned_model, history)`` as :func:`sparsecomp.prune` does; each step's ``extra`` holds
        the cycle, ``p``, the recorded iterations and how many weights it pruned.
    """
    for name, value, lo in (("q", q, 0.0), ("max_drop", max_drop, 0.0),
                            ("min_q", q / 4 if min_q is None else min_q, 1e-9),
                            ("target_sparsity", 0.5 if target_sparsity is None else target_sparsity, 0.0)):
        _check_number(name, value, lo)
    for name, value in (("p", p), ("record_fraction", record_fraction)):
        _check_number(name, value, 0.0)
        if value > 1:
            raise BadArgumentError(f"`{name}` must be a fraction in [0, 1]. Received: {name}={value!r}",
                                   rule=f"argument.{name}")
    if record_fraction == 0:
        raise BadArgumentError("`record_fraction` must be > 0: there is nothing to correlate otherwise",
                               rule="argument.record_fraction")
    if target_sparsity is not None and target_sparsity > 1:
        raise BadArgumentError(f"`target_sparsity` must be in [0, 1]. Received: {target_sparsity!r}",
                               rule="argument.target_sparsity")
    _check_count("epochs", epochs, 1)
    _check_count("recovery_epochs", recovery_epochs)
    _check_count("max_cycles", max_cycles, 1)
    if max_epochs is not None:
        _check_count("max_epochs", max_epochs)
    min_q = q / 4 if min_q is None else min_q
    _require_model(model)
    order = _layer_order(model, layers)
    run = _Run(model, data, validation_data=validation_data, validation_split=validation_split,
               batch_size=batch_size, metric=metric, optimizer=optimizer, loss=loss, metrics=metrics,
               learning_rate=learning_rate, strategy=strategy, l2=l2, lr_decay=lr_decay)
    masks = run.masks
    history = PruneHistory(metric=metric, baseline=run.baseline, max_drop=max_drop,
                           groups={n: [n] for n in order},
                           settings={"method": "correlation", "q": q, "p": p, "record_fraction": record_fraction,
                                     "min_q": min_q, "max_cycles": max_cycles, "epochs": epochs,
                                     "recovery_epochs": recovery_epochs, "target_sparsity": target_sparsity,
                                     "batch_size": batch_size, "learning_rate": learning_rate,
                                     "lr_decay": lr_decay, "l2": l2,
                                     "max_epochs": max_epochs, "replicas": run.strategy.num_replicas_in_sync if run.strategy else 1})
    run.train_only(None)      # retraining after each step updates every layer (masks held)
    steps = run.trainer.steps_per_epoch()
    start_at = 0 if steps is None else int(math.floor((1.0 - record_fraction) * epochs * steps))
    layer_q = {n: float(q) for n in order}
    finished: set[str] = set()
    recorder = None
    recorded_for = None       # the layer whose r the live recorder holds (from an accepted retraining)

    def track(name):
        nonlocal recorder
        if recorder is not None:
            recorder.release()
        with run.scope():
            recorder = CorrelationRecorder(masks, [name])
        run.trainer.compile()
        return recorder.callback(start_at)

    def next_in_line(after):
        alive = [n for n in order if n not in finished]
        if not alive:
            return None
        i = order.index(after)
        for k in range(1, len(order) + 1):
            cand = order[(i + k) % len(order)]
            if cand in alive:
                return cand
        return None

    accepted = run.snapshot()
    stop = False
    spent = 0
    for cycle in range(1, max_cycles + 1):
        progressed = False
        for name in order:
            if stop:
                break
            if name in finished:
                continue
            if max_epochs is not None and spent >= max_epochs:
                stop = True
                break
            t0 = time.time()
            used = 0
            if recorded_for != name:
                run.trainer.fit(epochs, callbacks=[track(name)])
                used += epochs
                spent += epochs
            r = recorder.correlation(name)
            n_rec = recorder.iterations(name)
            before = masks.masks[name]
            w = masks.kernel(name)
            alive = before.astype(bool)
            sigma = float(np.std(w[alive].astype(np.float64))) if alive.any() else 0.0
            new = correlation_mask(w, r, layer_q[name], p, before)
            n_now = int(alive.sum() - new.sum())
            if n_now == 0:
                finished.add(name)
                recorded_for = None
                log.info("cycle %d %s: nothing left below q*sigma among the weakest |r|; finished", cycle, name)
                continue
            masks.set(name, new)
            nxt = next_in_line(name)
            callbacks = [track(nxt)] if nxt is not None else None
            if nxt is None:
                run.trainer.compile()
            value, fit_used, ok = run.fine_tune(epochs, recovery_epochs, max_drop, callbacks=callbacks)
            used += fit_used
            spent += fit_used
            st = PruneStep(group=name, q=layer_q[name], thresholds={name: layer_q[name] * sigma},
                           sparsity={name: masks.sparsity(name)}, total_sparsity=run.total_sparsity(),
                           val_metric=value, drop=run.baseline - value, accepted=ok, seconds=time.time() - t0,
                           epochs=used, extra={"cycle": cycle, "p": p, "recorded_iterations": n_rec,
                                               "pruned_now": n_now})
            history.steps.append(st)
            if progress is not None:
                progress(st)
            log.info("cycle %d %s q=%.3f pruned %d sparsity=%.4f %s=%.4f %s", cycle, name, layer_q[name], n_now,
                     st.total_sparsity, metric, value, "accepted" if ok else "reverted")
            if ok:
                accepted = run.snapshot()
                progressed = True
                recorded_for = nxt
                if target_sparsity is not None and st.total_sparsity >= target_sparsity:
                    stop = True
            else:
                run.restore(accepted)
                recorded_for = None
                layer_q[name] /= 2
                if layer_q[name] < min_q - 1e-12:
                    finished.add(name)
        if stop or not progressed or len(finished) == len(order):
            break
    if recorder is not None:
        recorder.release()
    final = run.finish(history)
    return final, history
