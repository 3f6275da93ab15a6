#include "cuda/allocator.h"

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/runtime.h"

namespace tinymoe {
namespace cuda {
namespace {

constexpr size_t kSmallestClass = 512;

// One device's free lists and counters.
struct DeviceCache {
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> free blocks
  CudaMemoryStats stats;
};

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, Device device) override {
    check_device(device, "allocate");  // even for 0 bytes: an empty tensor on a missing card is an error too
    if (nbytes == 0) return nullptr;
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceCache& cache = caches_[device.index];
    std::vector<void*>& free_list = cache.free_blocks[size];
    if (!free_list.empty()) {
      void* block = free_list.back();
      free_list.pop_back();
      cache.stats.cached_bytes -= size;
      cache.stats.allocated_bytes += size;
      return block;
    }
    void* block = malloc_on(device, size, nbytes, cache);
    cache.stats.allocated_bytes += size;
    return block;
  }

  // Never calls CUDA, so it cannot fail: Storage destructors call it.
  void deallocate(void* pointer, size_t nbytes, Device device) override {
    if (pointer == nullptr) return;
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceCache& cache = caches_[device.index];
    cache.free_blocks[size].push_back(pointer);
    cache.stats.allocated_bytes -= size;
    cache.stats.cached_bytes += size;
  }

  CudaMemoryStats stats(int device_index) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = caches_.find(device_index);
    return found == caches_.end() ? CudaMemoryStats() : found->second.stats;
  }

  CudaMemoryStats total_stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    CudaMemoryStats total;
    for (const auto& [index, cache] : caches_) {
      total.allocated_bytes += cache.stats.allocated_bytes;
      total.cached_bytes += cache.stats.cached_bytes;
      total.malloc_count += cache.stats.malloc_count;
      total.free_count += cache.stats.free_count;
    }
    return total;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [index, cache] : caches_) release_cached(Device::cuda(index), cache);
  }

 private:
  // cudaMalloc, retried once after giving this device's cache back when memory runs out.
  void* malloc_on(Device device, size_t size, size_t requested, DeviceCache& cache) {
    DeviceGuard guard(device);
    void* block = nullptr;
    cudaError_t status = cudaMalloc(&block, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached(device, cache);
      status = cudaMalloc(&block, size);
      if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        fail("allocate", "out of memory on ", device.str(), " allocating ", requested, " bytes (",
             cache.stats.allocated_bytes, " bytes in use by tinymoe, cache already released)");
      }
    }
    if (status != cudaSuccess) throw_cuda_error(status, "cudaMalloc(&block, size)", __FILE__, __LINE__);
    ++cache.stats.malloc_count;
    return block;
  }

  // Every cached block leaves the lists even when a cudaFree fails (after a sticky error): a
  // block left listed would be handed out again after it was freed. The first failure is
  // thrown once the lists are consistent.
  void release_cached(Device device, DeviceCache& cache) {
    DeviceGuard guard(device);
    cudaError_t first_error = cudaSuccess;
    for (auto& [size, blocks] : cache.free_blocks) {
      for (void* block : blocks) {
        cudaError_t status = cudaFree(block);
        if (first_error == cudaSuccess) first_error = status;
        ++cache.stats.free_count;
        cache.stats.cached_bytes -= size;
      }
      blocks.clear();
    }
    if (first_error != cudaSuccess) throw_cuda_error(first_error, "cudaFree(block)", __FILE__, __LINE__);
  }

  std::mutex mutex_;
  std::map<int, DeviceCache> caches_;
};

CachingAllocator& instance() {
  static CachingAllocator* allocator = new CachingAllocator();  // deliberately never destroyed
  return *allocator;
}

}  // namespace

size_t allocation_size_class(size_t nbytes) {
  if (nbytes == 0) return 0;
  if (nbytes <= kSmallestClass) return kSmallestClass;
  size_t power = kSmallestClass;
  while (power * 2 <= nbytes) power *= 2;
  size_t step = power / 4;  // quarter steps between power and 2 * power
  return (nbytes + step - 1) / step * step;
}

Allocator& caching_allocator() { return instance(); }

DeviceBuffer::DeviceBuffer(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = instance().allocate(nbytes, device);
}

DeviceBuffer::~DeviceBuffer() { instance().deallocate(data_, nbytes_, device_); }

}  // namespace cuda

CudaMemoryStats cuda_memory_stats(Device device) {
  TINYMOE_CHECK(device.is_cuda(), "cuda_memory_stats", "expected a cuda device, got ", device.str());
  return cuda::instance().stats(device.index);
}

CudaMemoryStats cuda_memory_stats() { return cuda::instance().total_stats(); }

void cuda_empty_cache() { cuda::instance().empty_cache(); }

}  // namespace tinymoe
