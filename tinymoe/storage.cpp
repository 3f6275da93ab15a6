#include "tinymoe/storage.h"

#include <atomic>

#include "tinymoe/cpu_allocator.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/allocator.h"
#endif

namespace tinymoe {
namespace {

// The cuda allocator slot. With the CUDA backend compiled in, its caching allocator is the
// default, named here directly: this file is in every program that makes a Tensor, so a
// static-library link cannot drop the backend, and no static-initialisation order or user
// call is involved (the slot is filled on first use).
Allocator*& cuda_allocator() {
#ifdef TINYMOE_WITH_CUDA
  static Allocator* slot = &cuda::caching_allocator();
#else
  static Allocator* slot = nullptr;
#endif
  return slot;
}

std::atomic<int64_t> cpu_live_bytes{0};
std::atomic<int64_t> cpu_peak_bytes{0};

void count_cpu_allocation(int64_t nbytes) {
  int64_t live = cpu_live_bytes.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  int64_t peak = cpu_peak_bytes.load(std::memory_order_relaxed);
  while (live > peak && !cpu_peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

}  // namespace

void register_allocator(DeviceKind kind, Allocator* allocator) {
  if (kind == DeviceKind::cuda) cuda_allocator() = allocator;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  TINYMOE_CHECK(cuda_allocator() != nullptr, "allocate",
                "device ", device.str(), " requested but tinymoe was built without CUDA");
  return *cuda_allocator();
}

CpuMemoryStats cpu_memory_stats() {
  return {cpu_live_bytes.load(std::memory_order_relaxed), cpu_peak_bytes.load(std::memory_order_relaxed)};
}

void reset_cpu_peak_bytes() { cpu_peak_bytes.store(cpu_live_bytes.load(std::memory_order_relaxed), std::memory_order_relaxed); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = allocator_for(device).allocate(nbytes, device);
  if (data_ != nullptr && device.is_cpu()) count_cpu_allocation(static_cast<int64_t>(nbytes));
}

Storage::~Storage() {
  if (data_ == nullptr) return;
  allocator_for(device_).deallocate(data_, nbytes_, device_);
  if (device_.is_cpu()) cpu_live_bytes.fetch_sub(static_cast<int64_t>(nbytes_), std::memory_order_relaxed);
}

}  // namespace tinymoe
