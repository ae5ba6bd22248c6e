"""How scripts/demo.sh's settings were chosen, on a private dev split — no test image is read.

    python scripts/demo_dev.py LABEL '{"q0": 0.5, ..., "max_drop": 0.003}'   # compress keywords, JSON

The demo's baseline (LeNet-5, 3 epochs) is trained here on train[:50000]; compress gets train[:55000]
(its validation split: train[50000:55000]); the dev figure is train[55000:60000]. One line of JSON
per trial is appended to build/demo_dev.jsonl. Trials of 2026-12-07 (one seed each; dev drop in
points): the demo's old flags 24.9x / 0.38; + target 0.98, max_drop 0.002, 2 final epochs 27.7x /
0.16; the same with the paired gate 7.7x / -0.10; old flags + target 0.98 + 2 final epochs 58.7x /
0.10 (chosen); the same with 3 recovery epochs 60.1x / 0.22.
"""
import json, sys, time, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # models/
import numpy as np, keras, tensorflow as tf
import sparsecomp
from sparsecomp.data import load_mnist
from models import zoo
label, kw = sys.argv[1], json.loads(sys.argv[2])
(x, y), _ = load_mnist()
x = (x.astype("float32") / 255.0)[..., None]
os.makedirs("build", exist_ok=True)
base = "build/demo_dev_base.keras"
if not os.path.exists(base):
    keras.utils.set_random_seed(0); tf.config.experimental.enable_op_determinism()
    m = zoo.lenet5(); lr = 1e-3
    m.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x[:50000], y[:50000], batch_size=128, epochs=3, verbose=0,
          callbacks=[keras.callbacks.LearningRateScheduler(lambda e: lr * (0.5 ** (e // 1)))])
    m.save(base)
m = keras.saving.load_model(base)
dev = (x[55000:], y[55000:])
d0 = m.evaluate(*dev, verbose=0, return_dict=True)["accuracy"]
t0 = time.time()
res = sparsecomp.compress(m, (x[:55000], y[:55000]), f"build/demo_dev_{label}.sparse.h5", validation_split=5000 / 55000, **kw)
sec = time.time() - t0
pm = res.model; pm.compile_from_config(m.get_compile_config())
d1 = pm.evaluate(*dev, verbose=0, return_dict=True)["accuracy"]
sm = res.summary
out = {"label": label, "kw": kw, "seconds": round(sec, 1), "reduction": sm["parameter reduction (dense / non-zero)"],
       "file_ratio": sm["file ratio (Keras / sparse)"], "dev_dense": d0, "dev_pruned": d1,
       "dev_drop_points": round(100 * (d0 - d1), 3), "val_base": res.history.baseline, "val_final": res.history.final_metric,
       "final_tuning": res.history.final_tuning, "steps": len(res.history.steps),
       "trace": [(st.group, round(st.q, 3), round(st.total_sparsity, 4), round(st.val_metric, 4), st.accepted, st.epochs) for st in res.history.steps]}
print(json.dumps(out)); open("build/demo_dev.jsonl", "a").write(json.dumps(out) + "\n")
