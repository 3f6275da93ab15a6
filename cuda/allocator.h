// The CUDA caching allocator: the cuda Allocator of tinymoe (tinymoe/storage.h uses it by
// default when the backend is compiled in; nothing to call).
//
// cudaMalloc and cudaFree are slow and synchronise the device, so freed blocks are kept in
// per-device free lists keyed by size class and handed out again. A training loop whose step
// allocates the same sizes every step stops calling cudaMalloc after its first step. Size
// classes are 512 bytes and up, in quarter steps of a power of two (512, 640, 768, 896, 1024,
// 1280, ...): at most 25% waste, and sizes that drift a little from step to step (tokens per
// expert in a dropless MoE) still land in a class that was freed before.
//
// Reuse is safe without events because all backend work runs on the device's legacy default
// stream (see cuda/runtime.h): a kernel that uses a reused block runs after the kernels that
// used it before. Out of memory: the cache of that device is released and cudaMalloc retried
// once before an Error is thrown.
#pragma once

#include <cstddef>

#include "tinymoe/storage.h"

namespace tinymoe {

struct CudaMemoryStats {
  size_t allocated_bytes = 0;  // bytes of blocks in use (size classes, not requested sizes)
  size_t cached_bytes = 0;     // bytes of free blocks kept for reuse
  size_t malloc_count = 0;     // cudaMalloc calls so far
  size_t free_count = 0;       // cudaFree calls so far (cuda_empty_cache, out-of-memory retries)
};

// Counters of one device, or summed over all devices.
CudaMemoryStats cuda_memory_stats(Device device);
CudaMemoryStats cuda_memory_stats();
// Gives the free blocks of every device back to the driver (cudaFree). Blocks in use stay.
void cuda_empty_cache();

namespace cuda {

// The size class that serves a request of nbytes (0 for 0).
size_t allocation_size_class(size_t nbytes);

// The process-wide caching allocator. Never destroyed: tensors in static storage may free their
// blocks during program exit, after any static allocator would be gone.
Allocator& caching_allocator();

// Scratch device memory from the caching allocator (CUB temporary storage, pointer arrays for
// grouped GEMM), returned to the cache when the buffer goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t nbytes, Device device);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return nbytes_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace cuda
}  // namespace tinymoe
