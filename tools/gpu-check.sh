#!/usr/bin/env bash
# gpu-check: the checks of the CUDA backend that need a GPU, in one command.
#   1. configure and build tinymoe with CUDA (Release) in build-gpu/
#   2. run the CUDA tests (tinymoe_cuda_tests: every kernel against the CPU ops), and from a
#      build with MPI the expert-parallel tests with cuda tensors under mpirun
#   3. run them again, but for the [nccl] cases, under compute-sanitizer --tool memcheck
#      (out-of-bounds and misaligned accesses, bad frees, CUDA API errors)
#   4. run the GPU benchmarks, tinymoe bench ops --device cuda and tinymoe bench moe --device cuda
#      (JSON lines in their logs)
# and prints a summary table, then the benchmarks' key figures: every row with a target (the
# grouped/dense and block/dense ratios, the routing+permutation share, the tape overhead; f32 and
# TF32). A missed target is a figure, not a failed step. Exit status 0 only when every step passed; it fails at
# once, and says why, when the machine has no NVIDIA GPU or driver.
#
# Usage: tools/gpu-check.sh [--build-dir DIR] [--jobs N] [--no-sanitizer] [--prebuilt DIR]
#                           [--log-dir DIR] [--step-timeout SECONDS]
#   --no-sanitizer  skip step 3 on purpose (otherwise a missing compute-sanitizer fails the check)
#   --prebuilt DIR  skip step 1 and run the binaries of a bundle from tools/gpu-bundle.sh, for a
#                   GPU machine that cannot build (no toolchain or packages there)
#   --log-dir DIR   where the step logs go (default BUILD_DIR/gpu-check-logs)
#   --step-timeout  stop a test or benchmark step after this many seconds and call it TIMEOUT,
#                   so a hang still ends with the table (default: no limit; never the build)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root/build-gpu"
jobs="$(nproc)"
use_sanitizer=1
prebuilt=""
log_dir=""
step_timeout=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --no-sanitizer) use_sanitizer=0; shift ;;
    --prebuilt) prebuilt="$(cd "$2" 2>/dev/null && pwd)" || { echo "gpu-check: --prebuilt $2: no such directory" >&2; exit 2; }
                shift 2 ;;
    --log-dir) log_dir="$2"; shift 2 ;;
    --step-timeout) step_timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

[[ -n "$log_dir" ]] || log_dir="$build_dir/gpu-check-logs"
step_names=() step_results=() step_seconds=() step_notes=()
failed=0

record() {  # name result seconds note
  step_names+=("$1"); step_results+=("$2"); step_seconds+=("$3"); step_notes+=("$4")
  [[ "$2" == PASS || "$2" == SKIP ]] || failed=1
}

# The verdict of the last step: PASS, TIMEOUT (stopped by --step-timeout) or FAIL.
verdict() { if [[ $step_status -eq 0 ]]; then echo PASS; elif timed_out; then echo TIMEOUT; else echo FAIL; fi; }

figure_rows=()

print_summary() {
  echo
  echo "gpu-check summary (${gpu_name:-no GPU})"
  printf '%-12s %-8s %8s  %s\n' step result seconds note
  printf '%-12s %-8s %8s  %s\n' ------------ -------- -------- ----------------------------------------
  for i in "${!step_names[@]}"; do
    printf '%-12s %-8s %8s  %s\n' "${step_names[$i]}" "${step_results[$i]}" "${step_seconds[$i]}" "${step_notes[$i]}"
  done
  if [[ ${#figure_rows[@]} -gt 0 ]]; then
    echo
    echo "benchmark figures (measured on ${gpu_name:-the GPU above})"
    printf '%-36s %10s %-3s %-9s %-7s %-13s %s\n' metric value '' target result path shape
    printf '%s\n' "${figure_rows[@]}"
  fi
  echo "logs: $log_dir"
}

finish() {
  print_summary
  if [[ $failed -ne 0 ]]; then echo "gpu-check: FAILED"; exit 1; fi
  echo "gpu-check: all steps passed"
  exit 0
}

# Runs a command with its output in a log file, stopped after `limit` seconds unless it is 0;
# sets step_status (124 when it ran out of time, 137 when it then had to be killed) and
# step_elapsed. Tests and benchmarks run under --step-timeout (run_timed); the build never has a
# limit (run_logged).
run_step() {  # limit log_name command...
  local limit="$1" log="$log_dir/$2.log" start=$SECONDS
  shift 2
  if [[ "$limit" -gt 0 ]]; then
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  else
    "$@" >"$log" 2>&1
  fi
  step_status=$?
  step_elapsed=$((SECONDS - start))
}
run_logged() { run_step 0 "$@"; }
run_timed() { run_step "$step_timeout" "$@"; }

# Did the last run_timed step run out of time?
timed_out() { [[ "$step_timeout" -gt 0 && ( $step_status -eq 124 || $step_status -eq 137 ) ]]; }

# The last line of a log that matches a pattern (Catch's summary, a sanitizer verdict).
last_match() { grep -E "$2" "$1" | tail -n 1; }

# ---- 0. Is there a GPU at all? Fail fast, before a long build.
gpu_name=""
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_name="$(nvidia-smi -L 2>/dev/null | head -n 1)"
  if [[ -z "$gpu_name" ]]; then
    echo "gpu-check: FAILED: no GPU present (nvidia-smi -L lists no device)" >&2
    exit 1
  fi
elif [[ ! -r /proc/driver/nvidia/version ]]; then
  echo "gpu-check: FAILED: no GPU present (no nvidia-smi and no NVIDIA driver in /proc/driver/nvidia)" >&2
  exit 1
fi
mkdir -p "$log_dir"

# ---- 1. Build (or take the binaries of a bundle).
if [[ -n "$prebuilt" ]]; then
  tests="$prebuilt/bin/tinymoe_cuda_tests"
  cli="$prebuilt/bin/tinymoe"
  export LD_LIBRARY_PATH="$prebuilt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [[ -x "$tests" && -x "$cli" ]]; then
    record build SKIP 0 "prebuilt: $(head -n 1 "$prebuilt/MANIFEST" 2>/dev/null || echo "no MANIFEST")"
  else
    record build FAIL 0 "--prebuilt $prebuilt has no bin/tinymoe_cuda_tests and bin/tinymoe (tools/gpu-bundle.sh)"
    finish
  fi
else
  run_logged configure cmake -S "$root" -B "$build_dir" -DTINYMOE_CUDA=ON -DCMAKE_BUILD_TYPE=Release
  configure_seconds=$step_elapsed
  if [[ $step_status -ne 0 ]]; then
    record build FAIL "$configure_seconds" "cmake configure failed: see configure.log"
    finish
  fi
  run_logged build cmake --build "$build_dir" -j "$jobs"
  build_seconds=$((configure_seconds + step_elapsed))
  if [[ $step_status -ne 0 ]]; then
    record build FAIL "$build_seconds" "build failed: see build.log"
    finish
  fi
  record build PASS "$build_seconds" "Release, TINYMOE_CUDA=ON, -j $jobs"
  tests="$build_dir/cuda/tests/tinymoe_cuda_tests"
  cli="$build_dir/tools/tinymoe"
fi

# The NCCL tests open libnccl.so.2 at run time (cuda/nccl_library.h). Where the loader does not
# know it, a machine with PyTorch has it in its nvidia-nccl wheel.
if ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  nccl_dir="$(python3 -c 'import nvidia.nccl as n, os; print(os.path.join(list(n.__path__)[0], "lib"))' 2>/dev/null || true)"
  if [[ -n "$nccl_dir" && -e "$nccl_dir/libnccl.so.2" ]]; then
    export LD_LIBRARY_PATH="$nccl_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

# ---- 2. CUDA tests, all in one process.
run_timed tests "$tests"
if [[ $step_status -eq 77 ]]; then
  record tests FAIL "$step_elapsed" "$(last_match "$log_dir/tests.log" '^SKIPPED')"
  finish  # no usable device: nothing further can run
fi
note="$(last_match "$log_dir/tests.log" 'test cases|All tests passed')"
if [[ $step_status -eq 0 ]]; then record tests PASS "$step_elapsed" "$note"
else record tests "$(verdict)" "$step_elapsed" "$note (see tests.log)"; fi

# ---- 2b. Expert parallelism with cuda tensors between processes (mpirun, CTest's mpi.cuda_* and
# mpi.nccl_* entries): only from a build of this machine with MPI; a bundle has none.
if [[ -z "$prebuilt" && -x "$build_dir/tests/tinymoe_mpi_cuda_tests" ]]; then
  run_timed mpi ctest --test-dir "$build_dir" --output-on-failure -R '^mpi\.(cuda|nccl)_'
  note="$(last_match "$log_dir/mpi.log" 'tests passed|tests failed')"
  if [[ $step_status -eq 0 ]]; then record mpi PASS "$step_elapsed" "$note (skips: NCCL needs a GPU per rank)"
  else record mpi "$(verdict)" "$step_elapsed" "$note (see mpi.log)"; fi
else
  record mpi SKIP 0 "no tinymoe_mpi_cuda_tests (a bundle, or a build without MPI)"
fi

# ---- 3. The same tests under compute-sanitizer memcheck. No leak check: the caching allocator
# keeps its blocks until the process ends, by design.
sanitizer="$(command -v compute-sanitizer || true)"
for candidate in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$sanitizer" && -x "$candidate" ]] && sanitizer="$candidate"
done
if [[ $use_sanitizer -eq 0 ]]; then
  record memcheck SKIP 0 "skipped on request (--no-sanitizer)"
elif [[ -z "$sanitizer" ]]; then
  record memcheck MISSING 0 "compute-sanitizer not found (install it, or pass --no-sanitizer)"
else
  # NCCL's tests run outside the sanitizer: its reports would be about NCCL's own internals.
  run_timed memcheck "$sanitizer" --tool memcheck --error-exitcode 86 "$tests" '~[nccl]'
  note="$(last_match "$log_dir/memcheck.log" 'ERROR SUMMARY')"
  if [[ $step_status -eq 0 ]]; then record memcheck PASS "$step_elapsed" "$note"
  elif [[ $step_status -eq 86 ]]; then record memcheck FAIL "$step_elapsed" "$note (see memcheck.log)"
  elif timed_out; then record memcheck TIMEOUT "$step_elapsed" "stopped after ${step_timeout} s (see memcheck.log)"
  else record memcheck FAIL "$step_elapsed" "tests failed under the sanitizer, exit $step_status (see memcheck.log)"
  fi
fi

# ---- 4. GPU benchmarks. Each writes one JSON object per line (tools/cli/bench_util.h); the rows
# with a target are the key figures.

# "value unit target met|MISSED path shape" of each JSON line in a log that has a target, tab
# separated (sed, so the check needs no JSON tool on the machine).
figures_of() {  # log
  sed -n 's/.*"metric":"\([^"]*\)","value":\([^,]*\),"unit":"\([^"]*\)","shape":"\([^"]*\)","path":"\([^"]*\)","target":"\([^"]*\)","target_met":\([a-z]*\).*/\1\t\2\t\3\t\6\t\7\t\5\t\4/p' "$1"
}

add_figures() {  # log
  local metric value unit target met path shape
  while IFS=$'\t' read -r metric value unit target met path shape; do
    [[ "$met" == true ]] && met=met || met=MISSED
    figure_rows+=("$(printf '%-36s %10.3f %-3s %-9s %-7s %-13s %s' "$metric" "$value" "$unit" "$target" "$met" \
      "${path%%,*}" "${shape%%(*}")")
  done < <(figures_of "$1")
}

for bench in ops moe; do
  run_timed "bench-$bench" "$cli" bench "$bench" --device cuda --json
  if [[ $step_status -eq 0 ]]; then
    record "bench $bench" PASS "$step_elapsed" "JSON lines in bench-$bench.log"
    add_figures "$log_dir/bench-$bench.log"
  else
    record "bench $bench" "$(verdict)" "$step_elapsed" "exit $step_status: $(tail -n 1 "$log_dir/bench-$bench.log")"
    add_figures "$log_dir/bench-$bench.log"  # what finished before the failure still counts
  fi
done

finish
