"""Pruning under tf.distribute: MirroredStrategy over two logical CPUs matches a single-device run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecomp import BadArgumentError
from sparsecomp.distribute import get_strategy, is_chief

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def mirrored_run():
    # logical devices must be configured before TensorFlow initializes: a child process
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(HERE / "distributed" / "mirrored_prune.py")], capture_output=True,
                          text=True, timeout=600, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_two_replicas_and_mirrored_masks(mirrored_run):
    assert mirrored_run["replicas"] == 2
    assert mirrored_run["history_replicas"] == 2
    assert mirrored_run["kinds"] == ["MirroredVariable"]
    assert mirrored_run["n_copies"] == 2


@pytest.mark.slow
def test_masks_hold_on_every_replica(mirrored_run):
    assert len(mirrored_run["inside_masks_hold_and_replicas_identical"]) == 6
    assert all(mirrored_run["inside_masks_hold_and_replicas_identical"])
    assert mirrored_run["replicas_identical"]
    assert mirrored_run["pruned_weights_zero_on_every_replica"]


@pytest.mark.slow
def test_same_result_as_single_device(mirrored_run):
    r = mirrored_run
    assert r["steps_single"] == r["steps_mirrored"]          # same q, same decisions, same sparsity
    assert len(r["steps_single"]) == 3
    assert r["val_single"] == pytest.approx(r["val_mirrored"], abs=2 / 512)   # at most one image apart
    assert r["mask_mismatches"] == 0
    assert r["max_abs_weight_diff"] < 1e-4
    assert r["final_sparsity_single"] == r["final_sparsity_mirrored"]
    assert r["source_untouched"]


@pytest.mark.slow
def test_correlation_pruning_under_mirrored_strategy(mirrored_run):
    r = mirrored_run
    assert [s[0] for s in r["corr_steps_single"]] == ["fc3", "fc2", "fc1"]
    assert all(s[1] > 0 and s[2] >= 2 for s in r["corr_steps_single"])
    assert r["corr_steps_single"] == r["corr_steps_mirrored"]       # same layers, same counts pruned
    assert r["corr_max_abs_weight_diff"] < 1e-4
    assert r["corr_settings"] == [[1e-3, 0.5], [1e-3, 0.5]]


@pytest.mark.slow
def test_structured_pruning_under_mirrored_strategy(mirrored_run):
    r = mirrored_run
    single, mirrored = r["struct_filters"]
    assert single == mirrored and single["fc1"] == [48, 64]
    assert r["struct_params"][0] == r["struct_params"][1]
    assert r["struct_val"][0] == pytest.approx(r["struct_val"][1], abs=2 / 512)
    assert r["struct_kinds"] == ["MirroredVariable"]
    assert r["struct_max_abs_weight_diff"] < 1e-4


def test_strategy_names():
    import tensorflow as tf
    assert get_strategy(None) is None
    assert isinstance(get_strategy("default"), tf.distribute.Strategy)
    s = tf.distribute.get_strategy()
    assert get_strategy(s) is s
    assert is_chief(None) and is_chief(s)
    with pytest.raises(BadArgumentError, match="strategy"):
        get_strategy("tpu")
    with pytest.raises(BadArgumentError, match="devices"):
        get_strategy("default", devices=["/cpu:0"])


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(BadArgumentError, match="TF_CONFIG"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(BadArgumentError, match="TF_CONFIG is not valid JSON"):
        get_strategy("multiworker")


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        import tensorflow as tf
        return tf.train.ClusterSpec(self._cluster)


class _FakeStrategy:
    def __init__(self, resolver):
        self.cluster_resolver = resolver


@pytest.mark.parametrize("task_type,task_id,cluster,chief", [
    ("worker", 0, {"worker": ["a:1", "b:1"]}, True),
    ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
    ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
    ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),
])
def test_only_the_chief_writes(task_type, task_id, cluster, chief):
    assert is_chief(_FakeStrategy(_Resolver(task_type, task_id, cluster))) is chief
