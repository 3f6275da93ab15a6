#include "tinymoe/cpu_allocator.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace tinymoe {
namespace {

constexpr size_t kHugePageBytes = size_t(2) << 20;

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kDefaultCacheLimit = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr size_t kDefaultCacheLimit = 0;
#else
constexpr size_t kDefaultCacheLimit = size_t(1) << 30;
#endif
#else
constexpr size_t kDefaultCacheLimit = size_t(1) << 30;
#endif

void* allocate_huge_page_aligned(size_t nbytes) {
  void* pointer = nullptr;
  if (posix_memalign(&pointer, kHugePageBytes, nbytes) != 0) return nullptr;
#ifdef MADV_HUGEPAGE
  madvise(pointer, nbytes, MADV_HUGEPAGE);  // advice only: without THP support it changes nothing
#endif
  return pointer;
}

class CachingCpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    if (nbytes < kHugePageBytes) return checked(std::aligned_alloc(64, (nbytes + 63) / 64 * 64), nbytes);
    size_t block = block_size(nbytes);
    if (void* cached = take_cached(block)) return cached;
    void* pointer = allocate_huge_page_aligned(block);
    if (pointer == nullptr) {  // the cache may hold what the OS now lacks
      empty_cache();
      pointer = allocate_huge_page_aligned(block);
    }
    return checked(pointer, nbytes);
  }

  void deallocate(void* pointer, size_t nbytes, Device) override {
    if (pointer == nullptr) return;
    if (nbytes < kHugePageBytes || !keep(pointer, block_size(nbytes))) std::free(pointer);
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : free_blocks_)
      for (void* pointer : entry.second) std::free(pointer);
    free_blocks_.clear();
    stats_.cached_bytes = 0;
  }

  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.limit_bytes = bytes;
    }
    if (bytes == 0) empty_cache();
  }

 private:
  // Whole huge pages, so buffers of nearly equal size share a bucket.
  static size_t block_size(size_t nbytes) { return (nbytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes; }

  static void* checked(void* pointer, size_t nbytes) {
    if (pointer == nullptr) fail("allocate", "out of memory allocating ", nbytes, " bytes on cpu");
    return pointer;
  }

  void* take_cached(size_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto entry = free_blocks_.find(block);
    if (entry == free_blocks_.end() || entry->second.empty()) {
      ++stats_.misses;
      return nullptr;
    }
    void* pointer = entry->second.back();
    entry->second.pop_back();
    stats_.cached_bytes -= block;
    ++stats_.hits;
    return pointer;
  }

  bool keep(void* pointer, size_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.cached_bytes + block > stats_.limit_bytes) return false;
    free_blocks_[block].push_back(pointer);
    stats_.cached_bytes += block;
    return true;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;
  CpuCacheStats stats_{0, kDefaultCacheLimit, 0, 0};
};

CachingCpuAllocator& instance() {
  // Never destroyed: tensors in static storage may be freed after main returns.
  static CachingCpuAllocator* allocator = new CachingCpuAllocator();
  return *allocator;
}

}  // namespace

Allocator& cpu_allocator() { return instance(); }
CpuCacheStats cpu_cache_stats() { return instance().stats(); }
void cpu_empty_cache() { instance().empty_cache(); }
void set_cpu_cache_limit(size_t bytes) { instance().set_limit(bytes); }

}  // namespace tinymoe
