"""Trained weight sharing (Deep Compression's stage two, Han, Mao & Dally 2016): criterion + schedule.

Each layer's non-zero weights are clustered into ``2**bits`` shared values (1-D k-means; Deep
Compression found a *linear* initialisation over ``[min, max]`` best, ``init="density"`` starts
from the quantiles instead), every non-zero replaced by its cluster's value, and the shared
values then fine-tuned: after each optimizer step every weight is set to the mean of its cluster
(a kernel constraint, inside the compiled step, masks held), so a cluster moves by the average
step of its members. Deep Compression sums the members' gradients instead; with Adam, which
scales each weight's step by its own history, the average of the members' steps is the
well-scaled analogue. Pruned positions stay exactly zero throughout.

Layers are taken largest first; ``bits="search"`` tries ``max_bits`` first (a layer that fails
even there stays float, after one trial), then bisects ``min_bits..max_bits - 1`` for the fewest
bits whose fine-tuned network passes the gate (:mod:`sparsecomp.training`) — at most
``1 + ceil(log2(max_bits - min_bits + 1))`` trials a layer, assuming more bits never hurt; every
trial starts from the layer unshared, and the best accepted one is kept. A fixed ``bits`` (or ``{layer: bits}``) is accepted or reverted as a whole layer. The
returned model's quantized kernels hold exactly ``k`` distinct non-zero values each, which the
storage's ``shared`` codec stores as a codebook, codes and positions — and ``load`` gives back
bit for bit. Without data (``data=None``) the codebooks are fitted and not fine-tuned, and no
accuracy is claimed.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .arguments import check_choice, check_count, require_model
from .distribute import guard_collectives
from .errors import BadArgumentError
from .history import QuantizeHistory, QuantizeTrial
from .masks import MaskConstraint, kernel_of, prunable_layers
from .model_io import clone_model
from .training import FineTuner, FineTuning

__all__ = ["quantize", "kmeans_1d", "share", "INITS"]

INITS = ("linear", "density")


def kmeans_1d(values: np.ndarray, k: int, *, init: str = "linear", iterations: int = 60) -> np.ndarray:
    """``k`` sorted centroids of 1-D ``values`` by Lloyd's algorithm (exact nearest-centroid
    assignment by binary search on the midpoints); fewer when there are fewer distinct values."""
    v = np.sort(np.asarray(values, np.float64).reshape(-1))
    distinct = np.unique(v)
    if len(distinct) <= k:
        return distinct
    if init == "linear":
        c = np.linspace(v[0], v[-1], k)
    else:
        c = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        edges = (c[1:] + c[:-1]) / 2
        idx = np.searchsorted(edges, v)
        sums = np.bincount(idx, weights=v, minlength=k)
        counts = np.bincount(idx, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.allclose(new, c, rtol=0, atol=1e-12):
            break
        c = new
    edges = (c[1:] + c[:-1]) / 2
    used = np.unique(np.searchsorted(edges, v))
    return np.sort(c[used])


def share(w: np.ndarray, bits: int, *, init: str = "linear"):
    """``(shared kernel, codes)``: the non-zeros of ``w`` replaced by their centroid (float32
    values, none of them zero), ``codes`` the cluster of each weight (``-1`` where ``w`` is zero)."""
    mask = w != 0
    if not mask.any():
        return w.copy(), np.full(w.shape, -1, np.int32)
    c = kmeans_1d(w[mask], 2 ** bits, init=init).astype(w.dtype)
    c = c[c != 0]                                           # a zero centroid would merge with pruning
    if len(c) == 0:
        c = np.array([np.float32(w[mask].mean()) or np.float32(1e-8)], w.dtype)
    edges = (c[1:].astype(np.float64) + c[:-1]) / 2
    codes = np.full(w.shape, -1, np.int32)
    codes[mask] = np.searchsorted(edges, w[mask].astype(np.float64))
    out = np.zeros_like(w)
    out[mask] = c[codes[mask]]
    return out, codes


class SharedConstraint:
    """``w * mask`` and then every weight set to its cluster's mean (the shared value's update)."""

    def __init__(self, mask_var, codes_var, k: int):
        self.mask_var = mask_var
        self.codes_var = codes_var
        self.k = k

    def __call__(self, w):
        from keras import ops
        w = w * self.mask_var
        flat = ops.reshape(w, (-1,))
        codes = ops.reshape(self.codes_var, (-1,))
        sums = ops.segment_sum(flat, codes, num_segments=self.k + 1)
        counts = ops.segment_sum(ops.ones_like(flat), codes, num_segments=self.k + 1)
        means = sums / ops.maximum(counts, 1.0)
        return ops.reshape(ops.take(means, codes), ops.shape(w)) * self.mask_var


def _install(tuner, name: str, bits: int, init: str) -> dict:
    """Quantize layer ``name`` of the working copy and hold its sharing while training."""
    import keras
    k_var = kernel_of(tuner.work.get_layer(name))
    w = np.asarray(k_var.numpy())
    shared, codes = share(w, bits, init=init)
    k = int(codes.max()) + 1 if (codes >= 0).any() else 0
    codes = np.where(codes < 0, k, codes).astype(np.int32)       # pruned: a cluster of their own (held at zero)
    k_var.assign(shared)
    with tuner.scope():
        codes_var = keras.Variable(codes, trainable=False, dtype="int32", name=f"codes_{name}")
    k_var.constraint = SharedConstraint(tuner.masks.vars[name], codes_var, k)
    return {"bits": bits, "k": k, "init": init, "codes": codes_var}


def _release(tuner, name: str) -> None:
    kernel_of(tuner.work.get_layer(name)).constraint = MaskConstraint(tuner.masks.vars[name])


def _layers(model, layers) -> list[str]:
    names = [layer.name for layer in prunable_layers(model)]
    if layers in (None, "auto"):
        sizes = {layer.name: int(np.prod(kernel_of(layer).shape)) for layer in prunable_layers(model)}
        return sorted(names, key=lambda n: -sizes[n])                # largest first
    layers = [layers] if isinstance(layers, str) else list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise BadArgumentError(f"{unknown} are not prunable layers of the model ({names})", rule="argument.layers")
    return layers


def _bits_of(bits, layers, min_bits, max_bits, model=None) -> dict | str:
    if bits == "search":
        return "search"
    if isinstance(bits, dict) and model is not None and set(bits) <= {"conv", "fc"}:
        kinds = {layer.name: ("fc" if type(layer).__name__ == "Dense" else "conv") for layer in prunable_layers(model)}
        bits = {n: bits[kinds[n]] for n in layers if kinds[n] in bits}
    if isinstance(bits, dict):
        unknown = set(bits) - set(layers)
        if unknown:
            raise BadArgumentError(f"`bits` names layers that are not quantized: {sorted(unknown)}", rule="argument.bits")
        out = dict(bits)
    else:
        out = {n: bits for n in layers}
    for n, b in out.items():
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 8:
            raise BadArgumentError(f"`bits` must be integers in [1, 8] (a codebook of at most 256 values). "
                                   f"Received: {n}={b!r}", rule="argument.bits")
    return out


@guard_collectives
def quantize(model, data=None, *, bits=5, layers="auto", init: str = "linear", min_bits: int = 2, max_bits: int = 8,
             reference: float | None = None, validation_data=None, strategy=None, checkpoint_dir=None,
             resume: bool = False, interrupt_dir=None, progress=None, tuning: FineTuning | None = None,
             **tuning_kwargs):
    """Share the weights of ``model``'s kernels (k-means codebooks), fine-tune the shared values.

    Args:
        model: a (typically pruned) Sequential or functional ``keras.Model``; never modified.
        data: training data for fine-tuning as for :func:`sparsecomp.prune`; ``None``: codebooks
            fitted without fine-tuning (post-training; the history says accuracy not measured).
        bits: bits per shared value (``2**bits`` values per layer), a ``{layer: bits}`` dict, a
            ``{"conv": bits, "fc": bits}`` dict (by layer type, as Deep Compression's 8/5 bits), or
            ``"search"``: per layer, the fewest of ``min_bits..max_bits`` that pass the gate
            (``max_bits`` first, then bisection).
        layers: ``"auto"`` (every prunable layer, largest first) or names.
        init: ``"linear"`` (Deep Compression's choice) or ``"density"`` k-means initialisation.
        reference: the validation metric the gate compares with (``compress`` passes the dense
            model's, so that pruning and quantization together stay within ``max_drop``); default
            the input model's own.
        validation_data, strategy, checkpoint_dir, resume, interrupt_dir, progress, tuning,
            **tuning_kwargs: as for :func:`sparsecomp.prune`.

    Returns:
        ``(model, history)``: a new model whose quantized kernels hold at most ``2**bits`` distinct
        non-zero values each, and a :class:`~sparsecomp.history.QuantizeHistory`.
    """
    require_model(model)
    check_choice("init", init, INITS)
    check_count("min_bits", min_bits, 1)
    check_count("max_bits", max_bits, min_bits)
    if max_bits > 8:
        raise BadArgumentError(f"`max_bits` must be <= 8. Received: {max_bits}", rule="argument.max_bits")
    names = _layers(model, layers)
    plan = _bits_of(bits, names, min_bits, max_bits, model)
    t0 = time.time()
    settings = {"method": "quantize", "bits": bits, "layers": names, "init": init, "min_bits": min_bits,
                "max_bits": max_bits, "reference": reference}
    if data is None:
        return _post_training(model, names, plan, init, settings, t0)
    tuning = FineTuning.build(tuning, **tuning_kwargs)
    tuner = FineTuner(model, data, validation_data=validation_data, tuning=tuning, method="quantize",
                      settings=settings, strategy=strategy, checkpoint_dir=checkpoint_dir, resume=resume,
                      interrupt_dir=interrupt_dir)
    if reference is not None:
        tuner.baseline = float(reference)
    tuner.train_only(None)
    history = QuantizeHistory(metric=tuning.metric, baseline=tuner.baseline, max_drop=tuning.max_drop,
                              settings=tuner.run_settings())
    state = {"index": 0, "done": {}}
    resumed = tuner.resume()
    accepted = tuner.snapshot()
    if resumed is not None:
        state, hist, _ = resumed
        history = QuantizeHistory.from_dict(hist)
        accepted = tuner.resumed_snapshot
        for n, b in state["done"].items():                   # rebuild the sharing of accepted layers
            _install(tuner, n, b, init)
        tuner.compile()
        tuner.restore(accepted)
    shared: dict[str, dict] = {n: {"bits": b} for n, b in state["done"].items()}
    try:
        while state["index"] < len(names) and tuner.budget_left():
            name = names[state["index"]]
            before = accepted
            best = None                                      # (bits, info, snapshot) of the best accepted trial

            def trial(b, name=name):
                t = time.time()
                info = _install(tuner, name, b, init)
                tuner.compile()
                value, used, ok = tuner.fine_tune()
                tr = QuantizeTrial(layer=name, bits=b, k=info["k"], val_metric=value, drop=tuner.baseline - value,
                                   accepted=ok, epochs=used, seconds=time.time() - t)
                history.trials.append(tr)
                if progress is not None:
                    progress(tr)
                snap = tuner.snapshot() if ok else None
                tuner.restore(before)                        # every trial starts from the layer unshared
                _release(tuner, name)
                tuner.compile()
                tuner.restore(before)
                return (b, info, snap) if ok else None

            if plan == "search":
                best = trial(max_bits)                       # a layer that fails even here stays float
                lo, hi = min_bits, max_bits - 1
                while best is not None and lo <= hi:         # then bisect for the fewest bits that pass
                    mid = (lo + hi) // 2
                    got = trial(mid)
                    if got is not None:
                        best, hi = got, mid - 1
                    else:
                        lo = mid + 1
            elif plan.get(name) is not None:
                best = trial(plan[name])
            if best is not None:
                b, info, snap = best
                _install(tuner, name, b, init)
                tuner.compile()
                tuner.restore(snap)
                accepted = snap
                shared[name] = info
                state["done"][name] = b
            state["index"] += 1
            tuner.decided(accepted, state, history)
    except KeyboardInterrupt:
        raise tuner.interrupted(history) from None
    for n in names:
        if n in tuner.masks.layers:
            _release(tuner, n)
    history.layers = {n: {"bits": state["done"][n], "k": _distinct(tuner, n)} for n in state["done"]}
    final = tuner.finish(history)
    history.seconds = time.time() - t0
    return final, history


def _distinct(tuner, name) -> int:
    w = np.asarray(kernel_of(tuner.work.get_layer(name)).numpy())
    return int(len(np.unique(w[w != 0])))


def _post_training(model, names, plan, init, settings, t0):
    """No data: codebooks fitted to each layer, no fine-tuning; nothing evaluated."""
    if plan == "search":
        raise BadArgumentError("bits='search' needs data to judge each layer; give bits without data",
                               rule="argument.bits")
    out = clone_model(model)
    history = QuantizeHistory(metric=None, baseline=None, max_drop=None, settings={**settings, "data": None},
                              accuracy="not measured (no data)")
    for n in names:
        if n not in plan:
            continue
        k_var = kernel_of(out.get_layer(n))
        w = np.asarray(k_var.numpy())
        shared, codes = share(w, plan[n], init=init)
        k_var.assign(shared)
        history.layers[n] = {"bits": plan[n], "k": int(len(np.unique(shared[shared != 0])))}
    if getattr(model, "compiled", False) and model.get_compile_config():
        out.compile_from_config(model.get_compile_config())
    history.seconds = time.time() - t0
    return out, history


def bits_needed(k: int) -> int:
    return max(1, math.ceil(math.log2(max(k, 1))))
