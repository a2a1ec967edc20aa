#!/usr/bin/env bash
# Sharpness during training on the quick preset (real Fashion-MNIST, alpha 0) as the quick reproduction trains it
# (--eval-examples 5000): each algorithm given (default FedAvg and FedSAM) tracked every 10 rounds, one at a time, one
# thread; with PLAIN=1 also untracked twins for a wall-clock comparison. bench/tracking_overhead.py summarises them.
set -euo pipefail
OUT=${OUT:-runs/tracking}
for algorithm in "${@:-fedavg fedsam}"; do
  for mode in tracked $([[ ${PLAIN:-0} == 1 ]] && echo plain); do
    flags=(); [[ $mode == tracked ]] && flags=(--track-sharpness 10)
    OMP_NUM_THREADS=1 landscape train --preset quick --algorithm "$algorithm" --eval-examples 5000 --threads 1 \
      "${flags[@]}" --out "$OUT/$algorithm-$mode" --overwrite > "$OUT-$algorithm-$mode.json" 2> "$OUT-$algorithm-$mode.log"
  done
done
