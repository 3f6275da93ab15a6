// Row kernels of the ops that move token rows between the token order and the expert order:
// gathers, weighted scatter-adds and row dot products (ops/moe_swiglu_experts.cpp,
// ops/weighted_scatter_add.cpp, ops/index.cpp); its Row / ConstRow views of n values also serve
// the vectorised SwiGLU and softmax math. Internal to the library.
//
// Prefetching: these loops jump between rows at random tokens (rows of d values, 2 KiB at
// d = 512 in f32). The hardware prefetcher follows a row once it has begun but cannot guess the
// next one, so without help every row starts with a cache miss. Asking for the row
// kRowsAhead ahead hides that latency: 2 to 4 % of a fine-grained MoE block's step, where
// five such passes run over P = T k rows.
//
// Arithmetic goes through Eigen arrays: a plain loop's float sum is never reordered by the
// compiler, so a scalar dot product would run one element at a time.
#pragma once

#include <Eigen/Core>

#include <cstdint>

namespace tinymoe::row_math {

constexpr int64_t kRowsAhead = 4;
constexpr int64_t kCacheLine = 64;

// Rows shorter than this are left to the hardware: one prefetch per row would cost more than it
// hides.
constexpr int64_t kPrefetchMinBytes = 4 * kCacheLine;

inline void prefetch_bytes(const void* start, int64_t bytes, bool for_write) {
  if (bytes < kPrefetchMinBytes) return;
  const char* at = static_cast<const char*>(start);
  for (int64_t offset = 0; offset < bytes; offset += kCacheLine) {
    if (for_write) __builtin_prefetch(at + offset, 1);
    else __builtin_prefetch(at + offset, 0);
  }
}

// Prefetches row rows[next] of `matrix` (rows of `width` values) when next < count.
template <typename T>
void prefetch_row(const T* matrix, const int64_t* rows, int64_t next, int64_t count, int64_t width,
                  bool for_write) {
  if (next < count) prefetch_bytes(matrix + rows[next] * width, width * static_cast<int64_t>(sizeof(T)), for_write);
}

template <typename T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  return (ConstRow<T>(a, n) * ConstRow<T>(b, n)).sum();
}

// target += scale * source, n values.
template <typename T>
void add_scaled(T* target, const T* source, T scale, int64_t n) {
  Row<T>(target, n) += scale * ConstRow<T>(source, n);
}

// target = scale * source, n values.
template <typename T>
void assign_scaled(T* target, const T* source, T scale, int64_t n) {
  Row<T>(target, n) = scale * ConstRow<T>(source, n);
}

}  // namespace tinymoe::row_math
