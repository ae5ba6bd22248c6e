#!/usr/bin/env bash
# The main job, end to end, offline: train the reference LeNet-5 briefly on MNIST (the project's
# own copy), write it as a sparse checkpoint, verify it, and print where the bytes went.
source "$(dirname "$0")/env.sh"
out=${1:-out/demo}
mkdir -p "$out"
echo "== training LeNet-5 on MNIST (2 epochs, seed 0) ==" >&2
python -m models.train lenet5 --epochs 2 -o "$out/lenet5.keras"
echo "== packing (sparsecomp pack) ==" >&2
sparsecomp pack "$out/lenet5.keras" -o "$out/lenet5.sparse.h5" --drop-optimizer
sparsecomp verify "$out/lenet5.sparse.h5"
echo "== storage report (sparsecomp inspect) ==" >&2
sparsecomp inspect "$out/lenet5.sparse.h5"
