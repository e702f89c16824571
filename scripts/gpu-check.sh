#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (driver with CUDA 13 support): build renal against the full
# torch 2.13.0 wheel (CUDA 13.0 libraries), then
#   1. the ResNet-18 parity test against PyTorch (cargo test --test cnn_parity),
#   2. renal bench cnn --parity: ResNet-50 logits against PyTorch on CPU and CUDA,
#   3. renal bench cnn: ResNet-50 forward throughput (fp32 and fp16 autocast) and SGD steps at
#      200x200 on CUDA, next to PyTorch eager on the same card in the same run.
# The test venv's torch is the full wheel, so it doubles as libtorch here (LIBTORCH points into
# it); the build goes to its own target folder so the CPU build is not rebuilt afterwards.
#   BATCHES   batch sizes to time (default 1,16,64)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/renal-mri/target-cuda}"
"$here/python-env.sh"
venv="${RENAL_VENV:-$HOME/.cache/renal-mri/venv}"
LIBTORCH="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
export LIBTORCH
source "$here/env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "gpu-check: nvidia-smi failed" >&2
"$venv/bin/python" -c 'import torch; print("PyTorch", torch.__version__, "CUDA available:", torch.cuda.is_available())'
cd "$REPO_ROOT"
cargo build --release --locked -p renal-cli
cargo test --release --locked -p renal-e2e --test cnn_parity -- --nocapture
"$CARGO_TARGET_DIR/release/renal" bench cnn --backbones resnet50 --batches "${BATCHES:-1,16,64}" \
    --devices cuda --repeat 5 --parity
