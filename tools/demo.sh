#!/usr/bin/env bash
# Installs what is missing, builds tinymoe in Release and runs the main example: a tiny MoE
# layer built from the ops, forward and backward, and a gradient-check report.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
if [ -d /usr/local/cuda/bin ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)" --target moe_from_ops
./build/examples/moe_from_ops "$@"
