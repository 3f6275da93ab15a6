#!/usr/bin/env bash
# gpu-bundle: builds the GPU checks on this machine and packs them for a GPU machine that cannot
# build them (no compiler toolchain or -dev packages there, no network to install them).
#   - the CUDA tests (tinymoe_cuda_tests) and the tinymoe tool, in Release, portable
#     (TINYMOE_NATIVE=OFF: no -march=native for another machine's CPU) and on Eigen's GEMM
#     (TINYMOE_BLAS=OFF: the CPU side of the parity tests needs no BLAS library there), without
#     MPI (TINYMOE_MPI=OFF);
#   - the shared libraries they link that a bare CUDA machine may lack (the CUDA runtime);
#     glibc, libstdc++, cuBLAS and NCCL (both opened at run time) are the machine's own
#     (gpu-check.sh finds PyTorch's libnccl when the loader does not);
#   - MANIFEST: the commit, the compiler, the CUDA architectures.
# On the GPU machine, from a checkout of the same commit:
#   tools/gpu-check.sh --prebuilt DIR [--log-dir DIR] [--step-timeout SECONDS]
#
# Usage: tools/gpu-bundle.sh [--out DIR] [--build-dir DIR] [--cuda-arch "80;90"] [--jobs N]
#   --out        where the bundle goes (default .gpu-bundle, ignored by git)
#   --cuda-arch  CMAKE_CUDA_ARCHITECTURES (default "80;90": A100 and H100)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.gpu-bundle"
build_dir="$root/build-gpu-bundle"
cuda_arch=""
jobs="$(nproc)"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --cuda-arch) cuda_arch="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-bundle: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

# Replace only a directory that is empty or an earlier bundle (it has a MANIFEST).
if [[ -e "$out" && ! -f "$out/MANIFEST" && -n "$(ls -A "$out" 2>/dev/null)" ]]; then
  echo "gpu-bundle: $out exists and is not a bundle (no MANIFEST): choose another --out" >&2
  exit 1
fi
[[ -d /usr/local/cuda/bin ]] && export PATH="$PATH:/usr/local/cuda/bin"
command -v nvcc >/dev/null || { echo "gpu-bundle: nvcc not found: the bundle needs the CUDA toolkit" >&2; exit 1; }

# No MPI: the checks need none, and OpenMPI's libraries and plugins would have to travel too. The
# architectures are always passed: a reused build directory would otherwise keep an earlier run's.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DTINYMOE_CUDA=ON -DTINYMOE_NATIVE=OFF -DTINYMOE_BLAS=OFF -DTINYMOE_MPI=OFF
            "-DCMAKE_CUDA_ARCHITECTURES=${cuda_arch:-80;90}")
cmake -S "$root" -B "$build_dir" "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j "$jobs" --target tinymoe_cuda_tests tinymoe_cli

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
binaries=("$build_dir/cuda/tests/tinymoe_cuda_tests" "$build_dir/tools/tinymoe")
cp "${binaries[@]}" "$out/bin/"

# Libraries outside the base system: everything ldd resolves except glibc's, the C++ runtime and
# the dynamic loader (the GPU machine's own are newer or equal on any current distribution).
system_library='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so'
for binary in "${binaries[@]}"; do
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $system_library ]] || cp -L "$path" "$out/lib/$name"
done

{
  echo "commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), $(c++ --version | head -n 1)"
  echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), CUDA architectures $(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build_dir/CMakeCache.txt")"
  echo "libraries: $(ls "$out/lib" | tr '\n' ' ')"
} > "$out/MANIFEST"

# The bundle must at least start here: the checks that need no device run from it.
LD_LIBRARY_PATH="$out/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out/bin/tinymoe_cuda_tests" "[nodevice]" >/dev/null
cat "$out/MANIFEST"
echo "gpu-bundle: $(du -sh "$out" | cut -f1) in $out"
