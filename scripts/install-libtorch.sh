#!/usr/bin/env bash
# libtorch for tch 0.26, taken from PyPI's torch 2.13.0 wheel (the version tch 0.26 is written
# against). Only the three wheels libtorch_cpu.so needs at run time are installed (~1.25 GB):
# torch itself, and the CUDA runtime and CUPTI libraries it lists as NEEDED even on CPU.
# Installed outside the clone in $RENAL_TORCH (env.sh); skipped when already there.
#
# For CUDA, install the full wheel (`pip install torch==2.13.0`, ~4.7 GB with every nvidia-*
# library) and point RENAL_TORCH at the folder that holds its `torch/` and `nvidia/`; the binary
# loads libtorch_cuda.so at start-up when it can (services/cnn/src/device.rs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if grep -qs "__version__ = '2.13.0" "$RENAL_TORCH/torch/version.py" \
    && [ -e "$RENAL_TORCH/nvidia/cu13/lib/libcudart.so.13" ]; then
    echo "install-libtorch: ok ($LIBTORCH)"
    exit 0
fi
echo "install-libtorch: installing torch 2.13.0 (libtorch only, ~540 MB download) into $RENAL_TORCH"
rm -rf "$RENAL_TORCH.partial"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$RENAL_TORCH.partial" \
    torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
rm -rf "$RENAL_TORCH"
mv "$RENAL_TORCH.partial" "$RENAL_TORCH"
echo "install-libtorch: ok ($LIBTORCH)"
