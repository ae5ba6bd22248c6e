"""Train the reference models on MNIST, reproducibly, and save ``.keras`` checkpoints.

    python -m models.train lenet5 --epochs 12 -o build/lenet5.keras
    python -m models.train lenet_300_100 --epochs 20 -o build/lenet_300_100.keras
    python -m models.train vgg_small_bn --epochs 4 -o build/vgg_small_bn.keras
    python -m models.train resnet_small --epochs 4 -o build/resnet_small.keras

MNIST comes from sparsecomp's own offline copy. Seeds are fixed (Python, NumPy, TensorFlow) and
TensorFlow's deterministic ops are on, so a run on the same machine and versions gives the same
weights. The last 5,000 training images are held out for validation; the test set is only used
for the final figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


BUILDERS = ("lenet5", "lenet_300_100", "vgg_small_bn", "resnet_small")


def mnist_arrays(mnist_dir=None):
    """MNIST as float32 in [0, 1] with a channel axis, split train / validation / test."""
    from sparsecomp.data import load_mnist
    (x, y), (xt, yt) = load_mnist(mnist_dir)
    x = (x.astype("float32") / 255.0)[..., None]
    xt = (xt.astype("float32") / 255.0)[..., None]
    return (x[:-5000], y[:-5000]), (x[-5000:], y[-5000:]), (xt, yt)


def train(name: str, *, epochs: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
          mnist_dir=None, limit: int | None = None, verbose: int = 2, test: bool = True):
    """Train ``name`` on MNIST; ``(model, info)``. ``test=False`` never reads the test set (the
    benchmarks read it once, after the final compressed model exists)."""
    import keras
    import tensorflow as tf

    from models import zoo
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    (x, y), (xv, yv), (xt, yt) = mnist_arrays(mnist_dir)
    if limit:
        x, y = x[:limit], y[:limit]
    model = getattr(zoo, name)()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    schedule = keras.callbacks.LearningRateScheduler(lambda e: lr * (0.5 ** (e // max(epochs // 3, 1))))
    t0 = time.time()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, validation_data=(xv, yv),
              callbacks=[schedule], verbose=verbose, shuffle=True)
    seconds = time.time() - t0
    _, val_acc = model.evaluate(xv, yv, verbose=0)
    info = {"model": name, "epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size,
            "val_accuracy": float(val_acc), "train_seconds": seconds, "params": int(model.count_params())}
    if test:
        info["test_accuracy"] = float(model.evaluate(xt, yt, verbose=0)[1])
    return model, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=BUILDERS)
    p.add_argument("-o", "--output", required=True, help="where to save the .keras checkpoint")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--mnist-dir", default=None)
    args = p.parse_args(argv)
    model, info = train(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, mnist_dir=args.mnist_dir, limit=args.limit)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    model.save(args.output)
    print(json.dumps(info, indent=2))
    print(f"saved {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
