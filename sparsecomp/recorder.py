"""Recording what training does to weights, in O(1) memory per weight: streaming Pearson r(w, dw).

For correlation pruning (Nomuunbayar & Kang 2018) every weight of the layer being analysed gets
the correlation, over the recorded iterations t, between its value ``w_t`` (after the optimizer
update and the mask) and its change ``dw_t = w_t - w_{t-1}``. Trajectories are never stored: the
update is Welford's online algorithm for means, second moments and the co-moment (numerically
stable in float32, unlike raw sums of squares, which cancel when a weight barely moves), done by
the layer's kernel constraint, i.e. inside the compiled training step right after the optimizer
update, on every replica under a distribution strategy. Seven arrays of the kernel's shape
(previous value, two means, two second moments, co-moment) plus a counter: only the layers being
analysed are tracked, so the memory stays bounded for VGG-sized models.

Recording is switched on by a non-trainable flag variable; :meth:`CorrelationRecorder.callback`
returns a Keras callback that raises it at a chosen iteration (the last fraction of training).
"""

from __future__ import annotations

import numpy as np

from .errors import BadArgumentError
from .masks import MaskConstraint, kernel_of

__all__ = ["CorrelationRecorder"]

_STATE = ("prev", "mean_w", "mean_d", "m2_w", "m2_d", "c")


class _RecordingConstraint:
    """``w * mask``, and one Welford step of the (w, dw) statistics while ``active`` is 1."""

    def __init__(self, mask_var, state: dict, n, active):
        self.mask_var = mask_var
        self.s = state
        self.n = n
        self.active = active

    def __call__(self, w):
        from keras import ops
        s = self.s
        w_new = w * self.mask_var
        a = self.active
        d = w_new - s["prev"]
        n_new = self.n + a
        inv = a / ops.maximum(n_new, 1.0)
        dx = w_new - s["mean_w"]
        mean_w = s["mean_w"] + dx * inv
        dy = d - s["mean_d"]
        mean_d = s["mean_d"] + dy * inv
        s["m2_w"].assign(s["m2_w"] + a * dx * (w_new - mean_w))
        s["m2_d"].assign(s["m2_d"] + a * dy * (d - mean_d))
        s["c"].assign(s["c"] + a * dx * (d - mean_d))
        s["mean_w"].assign(mean_w)
        s["mean_d"].assign(mean_d)
        s["prev"].assign(w_new)
        self.n.assign(n_new)
        return w_new


class CorrelationRecorder:
    """Track r(w, dw) for the kernels of ``names`` in a model whose masks ``masks`` holds.

    Installs recording constraints in place of the plain mask constraints (recompile the model
    afterwards: constraints are read when the training step is traced); :meth:`release` puts the
    mask constraints back. Create it inside the strategy's scope when one is used.
    """

    def __init__(self, masks, names):
        import keras
        unknown = [n for n in names if n not in masks.layers]
        if unknown:
            raise BadArgumentError(f"cannot record {unknown}: not prunable layers of the model", rule="argument.layers")
        self.masks = masks
        self.names = list(names)
        self.active = keras.Variable(0.0, trainable=False, dtype="float32", name="recording_active")
        self.state: dict[str, dict] = {}
        self.count: dict = {}
        for n in self.names:
            k = kernel_of(masks.layers[n])
            shape = tuple(k.shape)
            st = {key: keras.Variable(np.zeros(shape, "float32"), trainable=False, name=f"rec_{key}_{n}")
                  for key in _STATE}
            st["prev"].assign(np.asarray(k.numpy()))
            self.state[n] = st
            self.count[n] = keras.Variable(0.0, trainable=False, dtype="float32", name=f"rec_n_{n}")
            k.constraint = _RecordingConstraint(masks.vars[n], st, self.count[n], self.active)

    def reset(self) -> None:
        """Forget what was recorded; the next recorded change is measured from the current weights."""
        self.active.assign(0.0)
        for n in self.names:
            for key in _STATE:
                v = self.state[n][key]
                v.assign(np.zeros(tuple(v.shape), "float32"))
            self.state[n]["prev"].assign(np.asarray(kernel_of(self.masks.layers[n]).numpy()))
            self.count[n].assign(0.0)

    def start(self) -> None:
        self.active.assign(1.0)

    def stop(self) -> None:
        self.active.assign(0.0)

    def iterations(self, name: str) -> int:
        """How many training steps were recorded for ``name``."""
        return int(round(float(np.asarray(self.count[name].numpy()))))

    def callback(self, start_at: int):
        """A Keras callback that starts recording at the ``start_at``-th batch (0-based) of the fit
        calls it is passed to, counted across epochs and calls; recording stays on afterwards."""
        import keras
        rec = self

        class _Start(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seen = 0

            def on_train_batch_begin(self, batch, logs=None):
                if self.seen == start_at:
                    rec.start()
                self.seen += 1

        return _Start()

    def correlation(self, name: str) -> np.ndarray:
        """Pearson r(w, dw) per weight over the recorded steps; 0 where it is undefined (a weight or
        its change constant over the window, or fewer than two steps recorded)."""
        st = self.state[name]
        m2w = np.asarray(st["m2_w"].numpy(), np.float64)
        m2d = np.asarray(st["m2_d"].numpy(), np.float64)
        c = np.asarray(st["c"].numpy(), np.float64)
        den = np.sqrt(m2w * m2d)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, c / np.where(den > 0, den, 1.0), 0.0)
        if self.iterations(name) < 2:
            r = np.zeros_like(r)
        return np.clip(r, -1.0, 1.0)

    def statistics(self) -> dict:
        """The recorded statistics as arrays (for a checkpoint): ``{"<layer>/<stat>": array}``."""
        out = {"active": np.asarray(self.active.numpy())}
        for n in self.names:
            for key in _STATE:
                out[f"{n}/{key}"] = np.asarray(self.state[n][key].numpy())
            out[f"{n}/n"] = np.asarray(self.count[n].numpy())
        return out

    def load_statistics(self, arrays: dict) -> None:
        """Put back what :meth:`statistics` returned."""
        self.active.assign(arrays["active"])
        for n in self.names:
            for key in _STATE:
                self.state[n][key].assign(arrays[f"{n}/{key}"])
            self.count[n].assign(arrays[f"{n}/n"])

    def release(self) -> None:
        """Back to plain mask constraints; the statistics' variables are dropped."""
        for n in self.names:
            kernel_of(self.masks.layers[n]).constraint = MaskConstraint(self.masks.vars[n])
        self.state.clear()
        self.count.clear()
