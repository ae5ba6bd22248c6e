"""One configuration of the distributed benchmark, in a fresh process (see distributed.py):

    python benchmarks/_dist_child.py MODE MODEL.keras DATA.npz OUT.json SETTINGS_JSON

MODE: ``single`` (no strategy), ``mirrored`` (MirroredStrategy over two logical CPUs of this
process) or ``worker`` (MultiWorkerMirroredStrategy from TF_CONFIG). Writes the wall time of the
pruning call, the time from process start, the decisions and the final sparsity to OUT.json.
"""

import json
import os
import sys
import time

T0 = time.time()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    mode, model_path, data_path, out, settings = sys.argv[1:6]
    settings = json.loads(settings)
    import tensorflow as tf
    strategy = None
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "worker":
        from sparsecomp.distribute import get_strategy
        strategy = get_strategy("multiworker")
    import keras
    import numpy as np

    import sparsecomp
    from sparsecomp.distribute import is_chief
    model = keras.saving.load_model(model_path)
    with np.load(data_path) as z:
        x, y = z["x"], z["y"]
    t = time.time()
    pruned, h = sparsecomp.prune(model, (x, y), strategy=strategy, **settings)
    seconds = time.time() - t
    if is_chief(strategy):
        json.dump({"mode": mode, "prune_seconds": seconds, "process_seconds": time.time() - T0,
                   "replicas": h.settings["replicas"],
                   "steps": [[s.q, s.accepted, round(s.total_sparsity, 6), s.val_metric] for s in h.steps],
                   "final_metric": h.final_metric, "epochs": h.epochs}, open(out, "w"))


if __name__ == "__main__":
    main()
