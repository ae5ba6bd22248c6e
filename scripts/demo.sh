#!/usr/bin/env bash
# The main job, end to end, offline (about 3-4 minutes on 2 CPU cores):
# train the reference LeNet-5 on MNIST (the project's own copy), then `sparsecomp compress` it —
# iterative std-threshold pruning over frozen groups, dead-unit removal, sparse checkpoint, report.
# The schedule here is a quick one (chosen on a private dev split, no test image read: see
# scripts/demo_dev.py); benchmarks/prune_lenet5.py runs the full one.
source "$(dirname "$0")/env.sh"
out=${1:-out/demo}
mkdir -p "$out"
if [ ! -f "$out/lenet5.keras" ]; then
  echo "== training LeNet-5 on MNIST (3 epochs, seed 0) ==" >&2
  python -m models.train lenet5 --epochs 3 -o "$out/lenet5.keras"
fi
echo "== sparsecomp compress ==" >&2
sparsecomp compress "$out/lenet5.keras" --data mnist -o "$out/lenet5.sparse.h5" \
  --q0 0.5 --step 0.5 --max-q 8 --epochs 1 --recovery-epochs 1 --max-drop 0.003 --lr 5e-4 \
  --target-sparsity 0.98 --final-epochs 2 \
  --report-dir "$out/report"
sparsecomp verify "$out/lenet5.sparse.h5"
echo "open $out/report/report.html for the plots" >&2
