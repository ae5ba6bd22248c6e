"""Run a short std-threshold pruning on one device and under MirroredStrategy over two logical CPUs.

Run as a child process by tests/test_distribute.py (logical devices must be configured before
TensorFlow initializes). Prints one JSON object with what it measured.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sparsecomp  # noqa: E402
from sparsecomp.masks import kernel_of, prunable_layers  # noqa: E402


def make_data():
    (x, y), _ = sparsecomp.load_mnist()
    x = x[:2048].reshape(-1, 784).astype("float32") / 255.0
    y = y[:2048].astype("int64")
    train = tf.data.Dataset.from_tensor_slices((x[:1536], y[:1536])).batch(64)
    val = tf.data.Dataset.from_tensor_slices((x[1536:], y[1536:])).batch(256)
    return (x, y), train, val


def make_model(x, y):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu", name="fc1"),
                          keras.layers.Dense(32, activation="relu", name="fc2"), keras.layers.Dense(10, name="fc3")])
    m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    m.fit(x[:1536], y[:1536], batch_size=64, epochs=2, verbose=0, shuffle=False)
    return m


def replica_kernels(model):
    """Per layer, the kernel as held by each replica (one entry without a strategy)."""
    out = {}
    for layer in prunable_layers(model):
        v = kernel_of(layer).value
        values = getattr(v, "values", None) or (v,)
        out[layer.name] = [np.asarray(t.numpy()) for t in values]
    return out


def main():
    (x, y), train, val = make_data()
    model = make_model(x, y)
    kw = dict(validation_data=val, q0=0.5, step=0.5, max_q=1.5, epochs=1, recovery_epochs=0, max_drop=0.5)
    keras.utils.set_random_seed(1)
    single, h1 = sparsecomp.prune(model, train, **kw)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    keras.utils.set_random_seed(1)
    mirrored, h2 = sparsecomp.prune(model, train, strategy=strategy, **kw)

    # what the pruning loop does inside, with each replica's copy in view: masks set between fits
    # from the cross-replica context, held by the mask multiply that runs on each replica
    from sparsecomp.masks import MaskSet
    from sparsecomp.model_io import clone_model
    with strategy.scope():
        work = clone_model(model)
        ms = MaskSet(work)
        work.compile_from_config(model.get_compile_config())
    rng = np.random.default_rng(0)
    inside = []
    for _ in range(2):
        for name in ms.masks:
            ms.set(name, ms.masks[name] & (rng.random(ms.masks[name].shape) > 0.3))
        work.fit(train, epochs=1, verbose=0, shuffle=False)
        for name, copies in replica_kernels(work).items():
            inside.append(all(np.all(c[~ms.masks[name]] == 0) for c in copies)
                          and all(np.array_equal(copies[0], c) for c in copies[1:])
                          and bool(np.all(copies[0][ms.masks[name]] != 0)))

    per_replica = replica_kernels(mirrored)
    w1, w2 = single.get_weights(), mirrored.get_weights()
    masks_single = {k: v[0] != 0 for k, v in replica_kernels(single).items()}
    res = {
        "replicas": int(strategy.num_replicas_in_sync),
        "history_replicas": h2.settings["replicas"],
        "kinds": sorted({type(kernel_of(layer).value).__name__ for layer in prunable_layers(mirrored)}),
        "inside_masks_hold_and_replicas_identical": inside,
        "replicas_identical": all(all(np.array_equal(r[0], ri) for ri in r[1:]) for r in per_replica.values()),
        "n_copies": min(len(r) for r in per_replica.values()),
        "steps_single": [(s.q, s.accepted, round(s.total_sparsity, 6)) for s in h1.steps],
        "steps_mirrored": [(s.q, s.accepted, round(s.total_sparsity, 6)) for s in h2.steps],
        "val_single": [s.val_metric for s in h1.steps],
        "val_mirrored": [s.val_metric for s in h2.steps],
        "max_abs_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
        "mask_mismatches": int(sum(int(np.sum(masks_single[k] != (r[0] != 0))) for k, r in per_replica.items())),
        "final_sparsity_single": h1.final_sparsity, "final_sparsity_mirrored": h2.final_sparsity,
        "pruned_weights_zero_on_every_replica": all(
            np.all(ri[~(masks_single[k])] == 0) for k, r in per_replica.items() for ri in r),
        "source_untouched": all(np.array_equal(a, b) for a, b in zip(model.get_weights(), make_model(x, y).get_weights())),
    }
    # correlation pruning: the recorder's statistics are updated inside each replica's step; with L2
    # and a decaying rate (one fit per epoch, the rate assigned between them from the cross-replica
    # context, the penalty summed into each replica's scaled loss)
    ckw = dict(validation_data=val, q=1.0, p=0.4, epochs=2, recovery_epochs=0, max_drop=0.5, max_cycles=1,
               record_fraction=0.25, lr_decay=0.5, l2=1e-3)
    keras.utils.set_random_seed(1)
    c1, ch1 = sparsecomp.prune_correlation(model, train, **ckw)
    keras.utils.set_random_seed(1)
    c2, ch2 = sparsecomp.prune_correlation(model, train, strategy=strategy, **ckw)
    res["corr_steps_single"] = [(s.group, s.extra["pruned_now"], s.extra["recorded_iterations"]) for s in ch1.steps]
    res["corr_steps_mirrored"] = [(s.group, s.extra["pruned_now"], s.extra["recorded_iterations"]) for s in ch2.steps]
    res["corr_settings"] = [(h.settings["l2"], h.settings["lr_decay"]) for h in (ch1, ch2)]
    res["corr_max_abs_weight_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(c1.get_weights(),
                                                                                        c2.get_weights()))
    # structured pruning: surgery, then retraining under the strategy
    skw = dict(validation_data=val, criterion="l1", fraction=0.25, scope="layer", rounds=1, epochs=1, max_drop=1.0)
    keras.utils.set_random_seed(1)
    s1, sh1 = sparsecomp.prune_structured(model, train, **skw)
    keras.utils.set_random_seed(1)
    s2, sh2 = sparsecomp.prune_structured(model, train, strategy=strategy, **skw)
    res["struct_filters"] = [sh1.rounds[0].filters, sh2.rounds[0].filters]
    res["struct_params"] = [sh1.final_params, sh2.final_params]
    res["struct_val"] = [sh1.final_metric, sh2.final_metric]
    res["struct_kinds"] = sorted({type(kernel_of(layer).value).__name__ for layer in prunable_layers(s2)})
    res["struct_max_abs_weight_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(s1.get_weights(),
                                                                                          s2.get_weights()))
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
