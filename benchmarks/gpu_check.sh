#!/usr/bin/env bash
# The GPU checks, in one run of at most about 10 minutes on one GPU:
#   the test suite's GPU tests and the optimizers' tests on CUDA, problem-steps per second
#   against the meta-batch on the quadratic and MNIST (CUDA and the same machine's CPU), and
#   the HNN's MNIST meta-training at the paper budget (cut at its time limit; the log keeps
#   the epochs it finished, from which the whole cell's time follows).
# Usage: bash benchmarks/gpu_check.sh OUT [DATA_ROOT]   (DATA_ROOT holds MNIST/raw/)
# Runs from the repository root with the package installed or not (PYTHON: the interpreter
# that has torch, default python3).
set -u
out=${1:?usage: gpu_check.sh OUT [DATA_ROOT]}
data=${2:-${PHYS_L2O_DATA:-}}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
log() { echo "== $* ($(date +%T))" | tee -a "$out/gpu-check.log"; }
run() { log "$*"; "$@" 2>&1 | tee -a "$out/gpu-check.log"; }
cli=(-c 'import sys; from phys_l2o.cli import main; sys.exit(main())')  # the phys-l2o command

run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
run timeout 150 "$py" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py \
    tests/test_optimizers.py tests/test_compile.py
run timeout 90 "$py" benchmarks/bench_scaling.py --device cuda --repeats 2 \
    --batches 1 4 16 64 256 1024 4096 --json "$out/scaling-quadratic-cuda.json" \
    --plot "$out/scaling-quadratic-cuda.png"
run timeout 60 "$py" benchmarks/bench_scaling.py --device cpu --threads 8 --repeats 2 \
    --batches 1 16 256 4096 --json "$out/scaling-quadratic-cpu.json"
if [ -n "$data" ]; then
    run timeout 90 "$py" benchmarks/bench_scaling.py --task mnist --data-root "$data" \
        --device cuda --steps 30 --repeats 2 --batches 1 4 16 64 256 \
        --json "$out/scaling-mnist-cuda.json" --plot "$out/scaling-mnist-cuda.png"
    run timeout 180 "$py" "${cli[@]}" train --task mnist --optimizer hnn --budget paper --device cuda \
        --data-root "$data" --out "$out/hnn-mnist.pt"
fi
log done
