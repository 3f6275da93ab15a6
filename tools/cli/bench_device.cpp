#include "tools/cli/bench_device.h"

#include <sstream>

#include "tinymoe/error.h"
#include "tools/cli/commands.h"

#ifdef TINYMOE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "cuda/allocator.h"
#include "cuda/gemm.h"
#include "cuda/runtime.h"
#endif

namespace tinymoe::cli {

#ifdef TINYMOE_WITH_CUDA

std::string device_unusable_reason(Device device) {
  if (device.is_cpu()) return "";
  if (!cuda_available()) return cuda_unavailable_reason();
  int count = cuda_device_count();
  if (device.index < count) return "";
  std::ostringstream reason;
  reason << device.str() << " does not exist (" << count << (count == 1 ? " device)" : " devices)");
  return reason.str();
}

namespace {

cudaDeviceProp device_properties(Device device) {
  cuda::check_device(device, "bench");
  cudaDeviceProp properties{};
  TINYMOE_CUDA_CHECK(cudaGetDeviceProperties(&properties, device.index));
  return properties;
}

}  // namespace

std::string cuda_device_name(Device device) { return device_properties(device).name; }

std::string cuda_device_summary(Device device) {
  cudaDeviceProp properties = device_properties(device);
  std::ostringstream text;
  text.precision(1);
  text << properties.name << " (compute capability " << properties.major << "." << properties.minor << ", "
       << properties.multiProcessorCount << " SMs, " << std::fixed
       << static_cast<double>(properties.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0) << " GiB)";
  return text.str();
}

void synchronize(Device device) {
  if (device.is_cuda()) cuda_synchronize(device);
}

Tf32Guard::Tf32Guard(bool enabled) : previous_(cuda::tf32_enabled()) { cuda::set_tf32_enabled(enabled); }
Tf32Guard::~Tf32Guard() { cuda::set_tf32_enabled(previous_); }
bool tf32_enabled() { return cuda::tf32_enabled(); }

size_t cuda_reserved_bytes(Device device) {
  CudaMemoryStats stats = cuda_memory_stats(device);
  return stats.allocated_bytes + stats.cached_bytes;
}

void cuda_release_cached_blocks() { cuda_empty_cache(); }

struct CudaEventClock::Events {
  Device device;
  std::vector<cudaEvent_t> recorded;
};

CudaEventClock::CudaEventClock(Device device) : events_(std::make_unique<Events>()) {
  cuda::check_device(device, "bench");
  events_->device = device;
}

// cudaEventDestroy needs no current device; a failure has nothing left to release.
CudaEventClock::~CudaEventClock() {
  for (cudaEvent_t event : events_->recorded) cudaEventDestroy(event);
}

void CudaEventClock::record() {
  cuda::DeviceGuard guard(events_->device);
  cudaEvent_t event = nullptr;
  TINYMOE_CUDA_CHECK(cudaEventCreate(&event));
  events_->recorded.push_back(event);
  TINYMOE_CUDA_CHECK(cudaEventRecord(event, 0));  // stream 0: the legacy default stream
}

std::vector<double> CudaEventClock::intervals() const {
  const std::vector<cudaEvent_t>& recorded = events_->recorded;
  std::vector<double> seconds;
  if (recorded.empty()) return seconds;
  cuda::DeviceGuard guard(events_->device);
  TINYMOE_CUDA_CHECK(cudaEventSynchronize(recorded.back()));
  for (size_t i = 1; i < recorded.size(); ++i) {
    float milliseconds = 0;
    TINYMOE_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, recorded[i - 1], recorded[i]));
    seconds.push_back(milliseconds * 1e-3);
  }
  return seconds;
}

#else  // a build without the CUDA backend: no cuda device is ever usable

namespace {

const char* const kNoCudaBackend = "this build has no CUDA backend (configure with -DTINYMOE_CUDA=ON)";

[[noreturn]] void fail_no_cuda() { fail("bench", kNoCudaBackend); }

}  // namespace

std::string device_unusable_reason(Device device) { return device.is_cpu() ? "" : kNoCudaBackend; }

std::string cuda_device_name(Device) { fail_no_cuda(); }
std::string cuda_device_summary(Device) { fail_no_cuda(); }

void synchronize(Device device) {
  if (device.is_cuda()) fail_no_cuda();
}

Tf32Guard::Tf32Guard(bool) : previous_(false) { fail_no_cuda(); }
Tf32Guard::~Tf32Guard() = default;
bool tf32_enabled() { fail_no_cuda(); }

size_t cuda_reserved_bytes(Device) { fail_no_cuda(); }
void cuda_release_cached_blocks() { fail_no_cuda(); }

struct CudaEventClock::Events {};

CudaEventClock::CudaEventClock(Device) { fail_no_cuda(); }
CudaEventClock::~CudaEventClock() = default;
void CudaEventClock::record() { fail_no_cuda(); }
std::vector<double> CudaEventClock::intervals() const { fail_no_cuda(); }

#endif

void require_usable_device(Device device, bool skip_without_gpu) {
  std::string reason = device_unusable_reason(device);
  if (reason.empty()) return;
  if (skip_without_gpu) throw CommandSkipped(reason);
  fail("bench", "--device ", device.str(), ": ", reason);
}

}  // namespace tinymoe::cli
