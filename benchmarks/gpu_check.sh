#!/usr/bin/env bash
# One prepared call on a lent GPU machine (the device tool's `run`): the GPU tests, then
# benchmarks/bench_gpu.py, with their output under $OUT. That machine's image has PyTorch, scikit-learn,
# scikit-image, pandas and pytest but not Ray or MLflow (Ray's wheel is too large to carry), so
# the tests that need Ray skip and bench_gpu.py's packing part (b) runs its trials as plain
# processes there (gpu_packing_processes_*; gpu_packing_speedup_4, through Ray Tune, prints null).
#
# Here, once:  echo /.gpu_data/ >> .git/info/exclude
#              mkdir -p .gpu_data && cp -r MNIST_DIR .gpu_data/mnist-t10k-split
# (MNIST_DIR: MNIST in torchvision's layout, MNIST_DIR/MNIST/raw/...; or set GPU_DATA to it there.)
# Then:        run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_data"], timeout_s=540)
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$out/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts=-ra tests/test_gpu.py tests/test_train.py \
    tests/test_trainer_options.py 2>&1 | tee "$out/tests.log"
timeout 320 python3 -m benchmarks.bench_gpu --json --data-dir "${GPU_DATA:-.gpu_data/mnist-t10k-split}" 2>&1 \
    | grep -v "^W[0-9]" | tee "$out/bench_gpu.log"
