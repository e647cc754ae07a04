#!/usr/bin/env bash
# Every GPU path of zhasr in one run (bench/gpu_check.py), bounded to 8 minutes; prints one table.
# On a machine without CUDA it says so and exits 0, so CI and CPU machines skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: no CUDA device here, skipped"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec timeout 480 "$PY" bench/gpu_check.py "$@"
