#!/usr/bin/env bash
# The GPU checks, in one run of at most about 10 minutes on one GPU:
#   the test suite's GPU tests and the optimizers' tests on CUDA, problem-steps per second
#   against the meta-batch on the quadratic and MNIST (CUDA and the same machine's CPU), and
#   the HNN's MNIST meta-training at the paper budget.
# Usage: bash benchmarks/gpu_check.sh OUT [DATA_ROOT]   (DATA_ROOT holds MNIST/raw/)
set -u
out=${1:?usage: gpu_check.sh OUT [DATA_ROOT]}
data=${2:-${PHYS_L2O_DATA:-}}
mkdir -p "$out"
log() { echo "== $* ($(date +%T))" | tee -a "$out/gpu-check.log"; }
run() { log "$*"; "$@" 2>&1 | tee -a "$out/gpu-check.log"; }

run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
run timeout 180 python -m pytest -q -x tests/test_cuda.py tests/test_optimizers.py \
    tests/test_compile.py
run timeout 120 python benchmarks/bench_scaling.py --device cuda --repeats 2 \
    --batches 1 4 16 64 256 1024 4096 --json "$out/scaling-quadratic-cuda.json" \
    --plot "$out/scaling-quadratic-cuda.png"
run timeout 90 python benchmarks/bench_scaling.py --device cpu --threads 8 --repeats 2 \
    --batches 1 16 256 4096 --json "$out/scaling-quadratic-cpu.json"
if [ -n "$data" ]; then
    run timeout 120 python benchmarks/bench_scaling.py --task mnist --data-root "$data" \
        --device cuda --steps 30 --repeats 2 --batches 1 4 16 64 256 \
        --json "$out/scaling-mnist-cuda.json" --plot "$out/scaling-mnist-cuda.png"
    run timeout 150 phys-l2o train --task mnist --optimizer hnn --budget paper \
        --device cuda --data-root "$data" --out "$out/hnn-mnist.pt" --no-progress
fi
log done
