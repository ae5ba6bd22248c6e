"""How the format's preset dictionary ``D`` (``sparsecomp/storage/zdict.py``) was made.

    python scripts/make_zdict.py            # print D's size and SHA-256, compare with the committed one
    python scripts/make_zdict.py --write    # (re)write sparsecomp/storage/zdict.py

Documentation, not part of the library: ``D`` is a constant of format version 3 forever (its
SHA-256 is pinned in ``spec.py`` and ``docs/FORMAT.md``), so it is never rebuilt at runtime, and a
later Keras that serializes differently changes what this script prints, never the format.
It was run with Keras 3.15.1.

What ``D`` holds (at most :data:`SIZE` bytes, ASCII):

1. Keras 3 ``config.json`` vocabulary. A corpus of *synthetic* models, composed at random (seeded)
   from common layer types with Keras' own generic names (``conv2d_1``, ``dense``...), Sequential
   and functional, some compiled, is serialized the way ``sparsecomp.save`` does
   (``keras.saving.serialize_keras_object``, compact JSON). The reference models of
   ``models/zoo.py`` are deliberately not in it. Segments are then picked greedily as zstd's COVER
   trainer does (Liao, Petri, Moffat, Wirth 2016): every 8-byte substring weighs the number of
   corpus models that contain it; the segment of :data:`SEGMENT` bytes covering the most weight
   is taken, the weight it covers zeroed, and so on until the budget is spent (the last segment
   shorter). Segments are laid out least valuable first, so the most widespread material sits
   nearest the end of ``D`` (DEFLATE codes shorter distances in fewer bits). Segment and substring
   lengths were chosen among 32-512 and 6-16 on held-out synthetic models (``corpus(10, seed=99)``),
   not on the reference models.
2. Last, :data:`INDEX_VOCABULARY`: the version-3 index's field names and common values, written by
   hand from ``sparsecomp/storage/index.py`` (the index is compressed with ``D`` as well).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]

#: The dictionary's budget: DEFLATE's window would allow 32 KiB; past 4 KiB the gain on a model
#: config is small and every reader must carry D.
SIZE = 4096
#: Bytes per selected segment, and the substring length weights are counted on.
SEGMENT = 192
DMER = 8
#: Models in the synthetic corpus.
MODELS = 40

#: The version-3 index's vocabulary: what a packed checkpoint's index adds, a header, the member
#: entry, the file digest, then a bias and a kernel entry as the writer emits them (most repeated last).
INDEX_VOCABULARY = (
    '"source":{"name":".keras","bytes":"category":"optimizer"},"attrs":true},'
    '"codec":"shared","params":{"order":"col","k":'
    '{"writer":"sparsecomp 0.","kind":"model","source":null,"min_ratio":1.0,"level":2,'
    '"optimizer_dropped":true,"keras_version":"3.","blobs":[],"tensors":['
    '"files":[{"name":"config.json","compress_type":0,"tree":false,"blob":0,"at":0,"stream":["zdict",'
    '"sha256":"'
    '{"path":"dense/1","shape":[32],"dtype":"<f4","nnz":32,"codec":"planes","params":{},"blob":0,"at":0,'
    '"streams":[["raw",32,32],["raw",32,32],["raw",32,32],["deflate",'
    '"digest":"","name":"dense/bias"},'
    '{"path":"conv2d/0","shape":[3,3,3,32],"dtype":"<f4","nnz":1,"codec":"gaps","params":{"order":"row"},'
    '"blob":0,"at":0,"streams":[["deflate",1,1],["raw",1,1],["raw",1,1],["deflate",1,1],["deflate",'
    '"digest":"","name":"conv2d/kernel"},')


def _keras():
    import keras
    return keras


def _image_model(rng, keras, functional: bool):
    L = keras.layers
    side = int(rng.choice([28, 32, 64, 96, 224]))
    channels = int(rng.choice([1, 3]))
    inp = keras.Input((side, side, channels))
    x = L.Rescaling(1 / 255.0)(inp) if rng.random() < 0.4 else inp
    for _ in range(int(rng.integers(1, 4))):
        filters = int(rng.choice([8, 16, 32, 64, 128]))
        kernel = int(rng.choice([1, 3, 5]))
        padding = str(rng.choice(["same", "valid"]))
        bn = rng.random() < 0.6
        act = None if bn else str(rng.choice(["relu", "linear"]))
        shortcut = x
        if rng.random() < 0.25:
            y = L.DepthwiseConv2D(kernel, padding="same", use_bias=not bn)(x)
        else:
            y = L.Conv2D(filters, kernel, padding=padding, use_bias=not bn, activation=act)(x)
        if bn:
            y = L.BatchNormalization()(y)
            y = L.ReLU()(y) if rng.random() < 0.6 else L.Activation("relu")(y)
        if functional and padding == "same" and rng.random() < 0.7:
            proj = L.Conv2D(int(y.shape[-1]), 1, use_bias=False)(shortcut)
            if rng.random() < 0.5:
                y = L.Add()([y, L.BatchNormalization()(proj)])
                y = L.ReLU()(y)
            else:
                y = L.Concatenate()([y, proj])
        pool = rng.random()
        if pool < 0.5:
            y = L.MaxPooling2D(2)(y)
        elif pool < 0.7:
            y = L.AveragePooling2D(2)(y)
        x = y
    if rng.random() < 0.5:
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.Flatten()(x)
        if rng.random() < 0.3:
            x = L.Reshape((-1,))(x)
    for _ in range(int(rng.integers(0, 3))):
        x = L.Dense(int(rng.choice([64, 128, 256, 512])), activation=str(rng.choice(["relu", "tanh"])))(x)
        if rng.random() < 0.5:
            x = L.Dropout(float(rng.choice([0.2, 0.25, 0.5])))(x)
    out = L.Dense(int(rng.choice([2, 10, 100, 1000])), activation=str(rng.choice(["softmax", "sigmoid", "linear"])))(x)
    if functional:
        return keras.Model(inp, out)
    # the same stack as a Sequential model, where it is one (no branches)
    return keras.Sequential([layer for layer in keras.Model(inp, out).layers])


def _mlp(rng, keras):
    L = keras.layers
    stack = [keras.Input((int(rng.choice([16, 64, 784])),))]
    for _ in range(int(rng.integers(1, 4))):
        stack.append(L.Dense(int(rng.choice([32, 100, 300, 1024])), activation=str(rng.choice(["relu", "gelu"]))))
        if rng.random() < 0.4:
            stack.append(L.Dropout(0.5))
    stack.append(L.Dense(int(rng.choice([1, 10])), activation=str(rng.choice(["softmax", "sigmoid"]))))
    return keras.Sequential(stack)


def corpus(n: int = MODELS, seed: int = 3) -> list[bytes]:
    """The synthetic models' configs as ``sparsecomp.save`` writes them (compact JSON)."""
    keras = _keras()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        keras.backend.clear_session()           # generic names from _1 on for every model
        kind = rng.random()
        model = _mlp(rng, keras) if kind < 0.2 else _image_model(rng, keras, functional=kind >= 0.6)
        if rng.random() < 0.5:
            opt = str(rng.choice(["adam", "sgd", "rmsprop"]))
            model.compile(optimizer=opt, loss=str(rng.choice(["sparse_categorical_crossentropy",
                                                                "categorical_crossentropy"])), metrics=["accuracy"])
        out.append(json.dumps(keras.saving.serialize_keras_object(model), separators=(",", ":")).encode("utf-8"))
    return out


def cover(samples: list[bytes], budget: int, segment: int = SEGMENT, d: int = DMER) -> bytes:
    """Greedy COVER selection of ``budget`` bytes of segments from ``samples`` (most valuable last)."""
    ids: dict[bytes, int] = {}
    per_sample = []
    for s in samples:
        per_sample.append(np.array([ids.setdefault(s[i:i + d], len(ids)) for i in range(len(s) - d + 1)], np.int64))
    weight = np.zeros(len(ids), np.float64)
    for a in per_sample:
        weight[np.unique(a)] += 1                # in how many models the substring appears
    picked = []
    used = 0
    while budget - used >= 2 * d:
        length = min(segment, budget - used)     # the last segment fills the budget
        k = length - d + 1                       # substrings per segment
        best = (0.0, -1, -1)
        for j, a in enumerate(per_sample):
            if len(a) < k:
                continue
            c = np.concatenate([[0.0], np.cumsum(weight[a])])
            scores = c[k:] - c[:-k]
            i = int(np.argmax(scores))
            if scores[i] > best[0]:
                best = (float(scores[i]), j, i)
        score, j, i = best
        if j < 0:
            break
        picked.append((score, samples[j][i:i + length]))
        weight[per_sample[j][i:i + k]] = 0.0
        used += length
    picked.sort(key=lambda p: p[0])              # stable: ties keep the order they were taken in
    return b"".join(seg for _, seg in picked)


def build() -> bytes:
    vocab = INDEX_VOCABULARY.encode("ascii")
    d = cover(corpus(), SIZE - len(vocab)) + vocab
    assert len(d) <= SIZE and d.isascii()
    return d


def module_text(d: bytes) -> str:
    lines = [repr(d[i:i + 96]) for i in range(0, len(d), 96)]
    body = "\n".join(f"    {line}" for line in lines)
    return (f'"""The format-version-3 preset dictionary ``D`` (``docs/FORMAT.md``, appendix): {len(d)} bytes.\n\n'
            "A constant of the format: never edit it (``tests/test_storage.py`` checks its SHA-256 against\n"
            "``spec.ZDICT_SHA256``). How it was made: ``scripts/make_zdict.py``.\n"
            '"""\n\n__all__ = ["ZDICT"]\n\nZDICT = (\n' + body + "\n)\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite sparsecomp/storage/zdict.py")
    args = ap.parse_args(argv)
    d = build()
    print(f"D: {len(d)} bytes, SHA-256 {hashlib.sha256(d).hexdigest()}")
    target = ROOT / "sparsecomp" / "storage" / "zdict.py"
    if args.write:
        target.write_text(module_text(d))
        print(f"wrote {target}")
        return 0
    sys.path.insert(0, str(ROOT))
    from sparsecomp.storage.zdict import ZDICT
    same = ZDICT == d
    print("the committed D is " + ("the same" if same else "different (another Keras serializes differently)"))
    sample = corpus(4, seed=99)
    for text in sample:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=ZDICT)
        print(f"  held-out synthetic config: {len(text)} B -> deflate {len(zlib.compress(text, 9)) - 6} B, "
              f"with D {len(c.compress(text) + c.flush())} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
