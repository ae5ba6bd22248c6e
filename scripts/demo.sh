#!/usr/bin/env bash
# The main job, end to end, offline: train the reference LeNet-5 on MNIST (the project's own copy),
# then `sparsecomp compress` it: iterative pruning, dead-unit removal, sparse checkpoint, report.
source "$(dirname "$0")/env.sh"
out=${1:-out/demo}
mkdir -p "$out"
if [ ! -f "$out/lenet5.keras" ]; then
  echo "== training LeNet-5 on MNIST (4 epochs, seed 0) ==" >&2
  python -m models.train lenet5 --epochs 4 -o "$out/lenet5.keras"
fi
echo "== sparsecomp compress ==" >&2
sparsecomp compress "$out/lenet5.keras" --data mnist -o "$out/lenet5.sparse.h5" \
  --q0 0.5 --step 0.25 --max-drop 0.003 --lr 5e-4 --report-dir "$out/report"
sparsecomp verify "$out/lenet5.sparse.h5"
echo "open $out/report/report.html for the plots" >&2
