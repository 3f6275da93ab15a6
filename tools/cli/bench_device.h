// What the `tinymoe bench ...` commands need from a CUDA device. Every CUDA call of the benches
// is in bench_device.cpp, behind TINYMOE_WITH_CUDA: a build without the CUDA backend compiles the
// same benches, and asking it for a cuda device gives device_unusable_reason()'s answer, "this
// build has no CUDA backend (...)". The functions below other than device_unusable_reason and
// require_usable_device are for a usable cuda device only; without CUDA they throw that Error.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tinymoe/dtype.h"

namespace tinymoe::cli {

// Why the benches cannot run on `device`: "" for the cpu and for a usable cuda device; otherwise
// "this build has no CUDA backend (configure with -DTINYMOE_CUDA=ON)", the runtime's reason ("no
// CUDA driver (cudaErrorInsufficientDriver ...)", "no CUDA device ..."), or "cuda:2 does not
// exist (1 device)". Never throws.
std::string device_unusable_reason(Device device);

// Returns when `device` is usable. Otherwise throws CommandSkipped(reason) (tools/cli/commands.h:
// the tool prints "SKIPPED: <reason>" and exits 77) when skip_without_gpu, else tinymoe::Error
// "bench: --device cuda:0: <reason>".
void require_usable_device(Device device, bool skip_without_gpu);

// The card's name as the driver reports it (cudaGetDeviceProperties), "NVIDIA H100 80GB HBM3".
std::string cuda_device_name(Device device);
// The name with what decides GEMM speed: "NVIDIA H100 80GB HBM3 (compute capability 9.0, 132 SMs,
// 79.1 GiB)".
std::string cuda_device_summary(Device device);

// Waits for all work queued on `device`; nothing to wait for on the cpu.
void synchronize(Device device);

// TF32 tensor cores for f32 GEMMs on or off (cuda::set_tf32_enabled, cuda/gemm.h) for the
// lifetime of the guard; the previous setting comes back after.
class Tf32Guard {
 public:
  explicit Tf32Guard(bool enabled);
  ~Tf32Guard();
  Tf32Guard(const Tf32Guard&) = delete;
  Tf32Guard& operator=(const Tf32Guard&) = delete;

 private:
  bool previous_;
};
// Whether f32 GEMMs on cuda use TF32 now.
bool tf32_enabled();

// Bytes the CUDA caching allocator holds for `device`: blocks in use plus cached free blocks
// (cuda_memory_stats, cuda/allocator.h), in size classes.
size_t cuda_reserved_bytes(Device device);
// Gives every cached free block back to the driver (cuda_empty_cache).
void cuda_release_cached_blocks();

// Points in time on a CUDA device's timeline: record() queues a CUDA event on the device's legacy
// default stream, where all of tinymoe's kernels, cuBLAS calls and copies run, so the event is
// reached when the work launched before it has finished. The interval between two events is
// device time, not the host's launch time.
class CudaEventClock {
 public:
  explicit CudaEventClock(Device device);
  ~CudaEventClock();
  CudaEventClock(const CudaEventClock&) = delete;
  CudaEventClock& operator=(const CudaEventClock&) = delete;

  void record();
  // Seconds between consecutive records (one fewer than the records); waits for the last event.
  std::vector<double> intervals() const;

 private:
  struct Events;
  std::unique_ptr<Events> events_;
};

}  // namespace tinymoe::cli
