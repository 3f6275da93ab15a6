// The CPU allocator behind every cpu Storage.
//
// Small buffers are 64-byte aligned heap blocks. Buffers from 2 MiB up (activations, expert
// weight gradients) are backed by transparent huge pages and, when freed, kept for reuse.
// A training step frees and allocates the same large buffers every step; handing them back to
// the OS means the kernel faults and zeroes every page again on the next step, which on these
// machines cost a quarter of an MoE block's backward (profiled: clear_page in the kernel).
// Reusing them keeps the pages mapped. PyTorch's CUDA caching allocator does the same on the
// GPU; its CPU allocator uses huge pages for the same sizes (c10/core/impl/alloc_cpu.cpp).
#pragma once

#include <cstddef>

#include "tinymoe/storage.h"

namespace tinymoe {

Allocator& cpu_allocator();

struct CpuCacheStats {
  size_t cached_bytes = 0;  // large blocks held for reuse
  size_t limit_bytes = 0;   // at most this much is held
  int64_t hits = 0;         // large allocations served from the cache
  int64_t misses = 0;       // large allocations that went to the OS
};
CpuCacheStats cpu_cache_stats();
// Returns every cached block to the OS.
void cpu_empty_cache();
// Caps the cache (default 1 GiB; 0 disables caching and empties it). Sanitizer builds default
// to 0 so AddressSanitizer still sees every use after free.
void set_cpu_cache_limit(size_t bytes);

}  // namespace tinymoe
