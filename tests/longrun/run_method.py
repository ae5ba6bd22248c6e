"""One deterministic pruning run for the resume tests: ``run_method.py METHOD MODEL.keras DATA.npz
CKPT_DIR OUT.json [--resume]``. Writes the history, a hash of the final masks and the final
weights to OUT.json. Deterministic TensorFlow ops, so two processes given the same inputs compute
the same bits."""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    method, model_path, data_path, ckpt, out = sys.argv[1:6]
    resume = "--resume" in sys.argv
    import numpy as np
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import keras

    import sparsecomp
    keras.utils.set_random_seed(0)
    model = keras.saving.load_model(model_path)
    with np.load(data_path) as z:
        x, y = z["x_train"], z["y_train"]
    kw = dict(checkpoint_dir=ckpt, resume=resume, seed=3, validation_split=0.2, batch_size=64)
    if method == "std":
        pruned, hist = sparsecomp.prune(model, (x, y), q0=0.6, step=0.6, max_q=3.6, epochs=1, recovery_epochs=1,
                                        max_drop=0.01, lr_decay=0.7, l2=1e-5, **kw)
        steps = [[s.group, s.q, s.accepted, s.epochs, s.val_metric, s.total_sparsity] for s in hist.steps]
    elif method == "correlation":
        pruned, hist = sparsecomp.prune_correlation(model, (x, y), q=1.0, p=0.5, epochs=1, recovery_epochs=0,
                                                    max_cycles=2, max_drop=0.02, **kw)
        steps = [[s.group, s.q, s.accepted, s.epochs, s.val_metric, s.extra["pruned_now"]] for s in hist.steps]
    else:
        pruned, hist = sparsecomp.prune_structured(model, (x, y), criterion="l1", fraction=0.15, rounds=5,
                                                   epochs=1, max_drop=0.02, **kw)
        steps = [[r.round, r.accepted, r.epochs, r.val_metric, r.params] for r in hist.rounds]
    weights = pruned.get_weights()
    masks = hashlib.sha256(b"".join((w == 0).tobytes() for w in weights)).hexdigest()
    json.dump({"steps": steps, "masks": masks, "resumed": hist.resumed, "final": hist.final_metric,
               "weights": [w.tolist() for w in weights]}, open(out, "w"))


if __name__ == "__main__":
    main()
