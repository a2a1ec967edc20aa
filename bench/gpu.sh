#!/usr/bin/env bash
# Every GPU measurement of the accelerator issue in one call, for a CUDA machine that reaches no registry
# (the device tool of this workplace, or any GPU server). Run from the repository root:
#
#   bash bench/gpu.sh [OUT]        # OUT defaults to bench/results; each bench writes its own *-cuda.txt there
#
# Needs torch with CUDA, numpy, scipy, matplotlib, click, pyyaml. The peers (PyHessian 0.1, hessian-eigenthings
# 1.0.0a5) are pure-Python wheels: put them in .whl/ beside the repo (pip download --no-deps) and they are
# installed into /tmp/site. CIFAR-10 cannot be fetched, so CIFAR-10-shaped data are written by bench/cifar_shaped.py.
# The tests parametrised on CUDA by the `device` fixture run first (-k cuda); the table of the benches comes last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
# The packages come straight from the tree (fedlandscape_cli is the folder cli/).
mkdir -p /tmp/fedlandscape-path && ln -sfn "$PWD/cli" /tmp/fedlandscape-path/fedlandscape_cli
export PYTHONPATH="$PWD/src:/tmp/fedlandscape-path${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DATA=runs/cifar-shaped
status=0
step() { echo "== $*"; "$@" || { echo "!! failed ($?): $*"; status=1; }; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
step python3 bench/cifar_shaped.py --out "$DATA"
step python3 -m pytest -q -p no:cacheprovider -k cuda -o addopts="" --junitxml="$OUT/tests-cuda.xml" tests/fedtrain tests/landscape tests/cli
step python3 bench/bench_train.py --device cuda --preset paper-cifar10 --dataset cifar10 --data-dir "$DATA" --rounds 30 --out "$OUT/train-cuda.txt"
step python3 bench/bench_cohort.py --device cuda --compile --data-dir "$DATA" --rounds 10 --out "$OUT/cohort-cuda.txt"
step python3 bench/bench_hessian.py --device cuda --dataset cifar10 --data-dir "$DATA" --samples 2048 --sections eigen precision --out "$OUT/hessian-cuda.txt"
step python3 bench/bench_matmat.py --device cuda --dataset cifar10 --data-dir "$DATA" --samples 2048 --out "$OUT/matmat-cuda.txt"
step python3 bench/bench_surface.py --device cuda --dataset cifar10 --data-dir "$DATA" --samples 10000 --points 64 --peer-points 8 --out "$OUT/surface-cuda.txt"
step python3 bench/paper_cost.py --device cuda --data-dir "$DATA" --rounds 30 --out "$OUT/paper-cost-cuda.txt"
for f in train cohort hessian matmat surface paper-cost; do echo "==== $OUT/$f-cuda.txt"; cat "$OUT/$f-cuda.txt" 2>/dev/null; done
exit $status
