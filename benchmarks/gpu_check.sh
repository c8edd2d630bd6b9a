#!/usr/bin/env bash
# The GPU checks in one run (`make gpu-check`, or by hand on a CUDA machine):
#   1. tests/gpu: every estimator on CUDA reproduces the CPU's numbers; train/evaluate with trainer=gpu;
#   2. Q1 (tracking overhead), Q2 (sampler overhead), Q4 (PF-ODE log p vs k-diffusion's, the oracle
#      on the GPU at --quick sizes) and Q7 (vs k-diffusion's sampler) at GPU sizes
#      → <bench dir>/*_cuda.json;
#   3. Q8, keyed Philox noise vs torch.randn on the GPU at the full sizes (up to 256 x 3072), eager
#      and with torch.compile'd words (--compile), with the torch ops per draw
#      → <bench dir>/noise_cost_cuda.json;
#   4. Q9, the divergence by forward against reverse mode per evaluation (what backend="auto"
#      picks on CUDA: forward) → <bench dir>/divergence_backend_cuda.json.
# Every step runs even if an earlier one fails; the exit status is that of the first failure.
# Without a CUDA device it says so and exits 0 (nothing to check here; `make bench` is the CPU run).
set -uo pipefail
PY=${PY:-python3}
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "== gpu-check skipped: no CUDA device is visible to torch (the CPU benchmarks: make bench)"
  exit 0
fi
status=0
step() { echo "== $*"; "$@" || { rc=$?; echo "== FAILED ($rc): $*"; [ $status -ne 0 ] || status=$rc; }; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, torch.cuda.get_device_name())"
step "$PY" -m pytest -q -p no:cacheprovider tests/gpu
step "$PY" -m benchmarks.tracking_overhead --device cuda
step "$PY" -m benchmarks.sampler_overhead --device cuda
step "$PY" -m benchmarks.peer_sampler --device cuda
step "$PY" -m benchmarks.pf_ode_cost --quick --device cuda
step "$PY" -m benchmarks.noise_cost --device cuda --compile
step "$PY" -m benchmarks.divergence_backend --device cuda
exit $status
