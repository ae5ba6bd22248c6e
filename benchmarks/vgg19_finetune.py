"""VGG19 fine-tuning smoke benchmark: one std-threshold pruning step with fine-tuning, at VGG19 size.

    python benchmarks/vgg19_finetune.py [--size 64] [--train 1024] [--batch-size 32] [--strategy mirrored]
           [--logical-cpus 2]

VGG19 (``keras.applications.VGG19(weights=None)``, 143M parameters at 224x224; at 64x64 its
classifier takes 2x2x512 features, 45M parameters) on **real MNIST digits resized to SIZE x SIZE and
repeated over 3 channels** (nothing is downloaded; the dense model is untrained, so accuracy is not
a figure of this benchmark: ``max_drop=1`` accepts the step). Measures:

- one pruning step (q=0.5 over every conv and Dense layer, as one group) with one fine-tuning epoch
  over ``--train`` images: wall time and the process's peak resident memory above its start;
- a fine-tuning epoch with masks held vs the same epoch without, alternated three times in this run
  (median ratio), on the same images;
- the device the run used (GPU name if TensorFlow sees one, else the CPU).

``--strategy mirrored`` runs both under ``tf.distribute.MirroredStrategy`` (every GPU; with
``--logical-cpus N`` the CPU split into N logical devices, which shows the mechanics, not speed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits(n_train, n_val, size):
    """MNIST digits as SIZE x SIZE x 3 float32 images in [0, 1] (resized, channel repeated)."""
    import numpy as np
    import tensorflow as tf

    import sparsecomp
    (x, y), _ = sparsecomp.load_mnist()
    n = n_train + n_val
    imgs = tf.image.resize(x[:n, :, :, None].astype("float32") / 255.0, (size, size)).numpy()
    imgs = np.repeat(imgs, 3, axis=-1)
    y = y[:n].astype("int64")
    return (imgs[:n_train], y[:n_train]), (imgs[n_train:], y[n_train:])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train", type=int, default=1024, help="training images for the fine-tuning epoch")
    p.add_argument("--val", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--strategy", choices=["mirrored"], default=None)
    p.add_argument("--logical-cpus", type=int, default=0, help="split the CPU into N logical devices first")
    args = p.parse_args()

    import tensorflow as tf
    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    import keras

    import sparsecomp
    from _common import PeakRSS, machine, mask_overhead, write_result
    from sparsecomp.masks import prunable_layers
    strategy = None
    if args.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_physical_devices("GPU")
    device = (", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
              if gpus else f"CPU only: {machine()['cpu']}, {os.cpu_count()} cores")

    train, val = digits(args.train, args.val, args.size)
    keras.utils.set_random_seed(0)

    def build():
        m = keras.applications.VGG19(weights=None, input_shape=(args.size, args.size, 3), classes=10)
        m.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    if strategy is not None:
        with strategy.scope():
            model = build()
    else:
        model = build()
    names = [layer.name for layer in prunable_layers(model)]
    t0 = time.perf_counter()
    with PeakRSS() as mem:
        pruned, hist = sparsecomp.prune(model, train, validation_data=val, groups=[names], q0=0.5, max_q=0.5,
                                        epochs=1, recovery_epochs=0, max_drop=1.0, batch_size=args.batch_size,
                                        strategy=strategy)
    prune_s = time.perf_counter() - t0
    ratio, with_m, without = mask_overhead(pruned, train, pruned, batch_size=args.batch_size, strategy=strategy)
    largest = max(int(w.size) * 4 for w in model.get_weights())
    figures = {
        "device": device, "strategy": args.strategy, "replicas": hist.settings["replicas"],
        "logical_cpus": args.logical_cpus, "input": f"{args.size}x{args.size}x3 MNIST digits (resized)",
        "train_images": args.train, "val_images": args.val, "batch_size": args.batch_size,
        "params": int(model.count_params()), "largest_tensor_bytes": largest,
        "kernel_sparsity_after_step": round(hist.steps[-1].total_sparsity, 4),
        "prune_step_seconds": round(prune_s, 1),
        "prune_step_peak_rss_above_start_bytes": mem.peak_above, "peak_rss_bytes": mem.peak,
        "mask_epoch_ratio": round(ratio, 3), "mask_epoch_seconds": with_m, "plain_epoch_seconds": without,
    }
    print(json.dumps(figures, indent=1))
    print(f"wrote {write_result('vgg19_finetune', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
