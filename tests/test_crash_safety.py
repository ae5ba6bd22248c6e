"""Writes never lose data: SIGKILL the writer at random moments while it overwrites a checkpoint.

After every kill the destination is either the old file or the new one, complete and valid.
Stale temporary files left by killed writers are removed by the next write.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import sparsecomp

WRITER = r"""
import sys
import sparsecomp
src_a, src_b, dst = sys.argv[1:4]
print("ready", flush=True)
i = 0
while True:
    sparsecomp.pack(src_a if i % 2 else src_b, dst)
    i += 1
"""


def make_source(path, seed):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for i in range(6):
            a = rng.standard_normal((600, 800)).astype("float32")
            a[rng.random(a.shape) < 0.7] = 0
            f.create_dataset(f"layer{i}/kernel", data=a)


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.slow
def test_sigkill_during_overwrite_never_corrupts(tmp_path):
    src_a, src_b = tmp_path / "a.h5", tmp_path / "b.h5"
    make_source(src_a, 1)
    make_source(src_b, 2)
    ref_a, ref_b = tmp_path / "ref_a.sparse.h5", tmp_path / "ref_b.sparse.h5"
    # the writer is deterministic, so "old" and "new" have known bytes
    sparsecomp.pack(src_a, ref_a)
    sparsecomp.pack(src_b, ref_b)
    good = {digest(ref_a), digest(ref_b)}
    dst = tmp_path / "out" / "model.sparse.h5"
    dst.parent.mkdir()
    sparsecomp.pack(src_a, dst)
    rng = np.random.default_rng(0)
    kills = mid_write = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(src_a), str(src_b), str(dst)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += proc.returncode == -signal.SIGKILL
        mid_write += any("sparsecomp-tmp" in n for n in os.listdir(dst.parent))   # killed while writing
        assert digest(dst) in good            # old or new, never a mixture
        sparsecomp.verify(dst)                # complete and valid
    assert kills == 25
    assert mid_write >= 5, mid_write          # the kills did land in the middle of writes
    sparsecomp.pack(src_b, dst)               # a normal write cleans stale temporaries of dead writers
    assert sorted(os.listdir(dst.parent)) == ["model.sparse.h5"]
