// Storage: one reference-counted buffer on one device. Tensors share it through shared_ptr,
// so reshape/view are free and a Tensor handle is cheap to copy.
#pragma once

#include <cstddef>
#include <memory>

#include "tinymoe/dtype.h"

namespace tinymoe {

// Where a device's memory comes from. The CPU allocator is built in. When the CUDA backend is
// compiled in (TINYMOE_WITH_CUDA), its caching allocator (cuda/allocator.h) is the cuda
// default; register_allocator replaces the allocator of a device kind. Both calls get the
// device, so one allocator serves every card (cuda:0, cuda:1, ...).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, Device device) = 0;
  virtual void deallocate(void* pointer, size_t nbytes, Device device) = 0;
};

void register_allocator(DeviceKind kind, Allocator* allocator);
Allocator& allocator_for(Device device);

// Bytes of CPU tensor storage (Storage::nbytes, before the allocator's rounding): held now, and
// the most held at once since the process started or the last reset_cpu_peak_bytes(). Counted by
// every CPU Storage with relaxed atomics (thread-safe; a few nanoseconds per allocation), so a
// benchmark can report the peak memory of a training step without reading the process's RSS.
struct CpuMemoryStats {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
};
CpuMemoryStats cpu_memory_stats();
// Starts a new peak window: peak_bytes = live_bytes.
void reset_cpu_peak_bytes();

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace tinymoe
