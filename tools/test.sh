#!/usr/bin/env bash
# Installs what is missing, builds tinymoe and runs the whole CTest suite.
#   ./tools/test.sh              Release build in build/, CUDA code compiled when nvcc is found
#   ./tools/test.sh --sanitize   AddressSanitizer + UBSan build in build-sanitize/, Eigen GEMM path
# Extra arguments after the options are passed to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
ctest_args=()
if [ "${1:-}" = "--sanitize" ]; then
  shift
  build_dir=build-sanitize
  # The sanitizer build also exercises the Eigen GEMM path (TINYMOE_BLAS=OFF) and the build
  # without MPI (TINYMOE_MPI=OFF; OpenMPI's own allocations would read as leaks), so both CPU
  # GEMM paths and both communicator builds are tested in every CI run; CUDA is compiled by the
  # main build only.
  cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTINYMOE_SANITIZE=ON -DTINYMOE_BLAS=OFF -DTINYMOE_CUDA=OFF -DTINYMOE_MPI=OFF)
  ctest_args=(-LE packaging)
fi

./tools/install-deps.sh
if [ -d /usr/local/cuda/bin ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi

cmake -S . -B "$build_dir" "${cmake_args[@]}" "$@"
cmake --build "$build_dir" --parallel "$(nproc)"
cd "$build_dir"
ctest --output-on-failure --parallel "$(nproc)" "${ctest_args[@]}"
