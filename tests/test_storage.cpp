// storage: the CPU memory counters (cpu_memory_stats) that `tinymoe bench moe` reports peak
// memory with. Each check compares differences around its own allocations, so tensors other
// tests left alive do not matter.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "tinymoe/cpu_allocator.h"
#include "tinymoe/storage.h"
#include "tinymoe/tensor.h"

using namespace tinymoe;

TEST_CASE("storage: live bytes follow each CPU tensor's storage, nbytes before rounding", "[storage]") {
  int64_t before = cpu_memory_stats().live_bytes;
  {
    Tensor a = Tensor::empty({3, 5}, DType::f32);  // 60 bytes (the allocator rounds to 64)
    CHECK(cpu_memory_stats().live_bytes - before == 60);
    Tensor b = Tensor::empty({7}, DType::f64);
    CHECK(cpu_memory_stats().live_bytes - before == 60 + 56);
    Tensor view = a.reshape({15});  // shares a's storage: nothing new
    CHECK(cpu_memory_stats().live_bytes - before == 60 + 56);
  }
  CHECK(cpu_memory_stats().live_bytes == before);
}

TEST_CASE("storage: the peak keeps the most held at once until reset_cpu_peak_bytes", "[storage]") {
  reset_cpu_peak_bytes();
  int64_t start = cpu_memory_stats().live_bytes;
  CHECK(cpu_memory_stats().peak_bytes == start);
  {
    Tensor big = Tensor::empty({1000}, DType::f32);
    Tensor small = Tensor::empty({10}, DType::f32);
  }
  { Tensor medium = Tensor::empty({500}, DType::f32); }
  CpuMemoryStats stats = cpu_memory_stats();
  CHECK(stats.live_bytes == start);
  CHECK(stats.peak_bytes - start == 4000 + 40);
  reset_cpu_peak_bytes();
  CHECK(cpu_memory_stats().peak_bytes == start);
}

TEST_CASE("storage: counters stay exact with tensors made and freed on several threads", "[storage]") {
  int64_t before = cpu_memory_stats().live_bytes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 2000; ++i) Tensor::empty({16 + i % 7}, DType::f32);
    });
  std::vector<Tensor> kept;
  for (int i = 0; i < 100; ++i) kept.push_back(Tensor::empty({8}, DType::f64));
  for (std::thread& thread : threads) thread.join();
  CHECK(cpu_memory_stats().live_bytes - before == 100 * 64);
  kept.clear();
  CHECK(cpu_memory_stats().live_bytes == before);
}

TEST_CASE("storage: an empty tensor allocates nothing and counts nothing", "[storage]") {
  int64_t before = cpu_memory_stats().live_bytes;
  Tensor empty = Tensor::empty({0, 4}, DType::f32);
  CHECK(cpu_memory_stats().live_bytes == before);
}

TEST_CASE("storage: large CPU buffers are reused from the cache", "[storage]") {
  set_cpu_cache_limit(size_t(64) << 20);
  cpu_empty_cache();
  void* first_pointer = nullptr;
  {
    Tensor big = Tensor::empty({1 << 20});  // 4 MiB of f32
    first_pointer = big.raw_data();
  }
  CHECK(cpu_cache_stats().cached_bytes == size_t(4) << 20);
  int64_t hits = cpu_cache_stats().hits;
  Tensor again = Tensor::empty({(1 << 20) - 7});  // rounds to the same 4 MiB block
  CHECK(again.raw_data() == first_pointer);
  CHECK(cpu_cache_stats().hits == hits + 1);
  CHECK(cpu_cache_stats().cached_bytes == 0);
  again = Tensor();
  cpu_empty_cache();
  CHECK(cpu_cache_stats().cached_bytes == 0);
}

TEST_CASE("storage: a zero cache limit keeps nothing", "[storage]") {
  set_cpu_cache_limit(0);
  { Tensor big = Tensor::empty({1 << 20}); }
  CHECK(cpu_cache_stats().cached_bytes == 0);
  set_cpu_cache_limit(size_t(1) << 30);
}
