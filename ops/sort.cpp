#include "ops/sort.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/axis_layout.h"
#include "ops/cuda_dispatch.h"
#include "ops/index.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/sort.h"
#endif

namespace tinymoe {
namespace {

// A counting sort needs one bucket per key in [min, max]; above this many buckets per key it
// would cost more than a comparison sort.
constexpr int64_t kBucketsPerKey = 4;
constexpr int64_t kBucketsAlways = 1024;

// Stable counting sort of small-range integer keys (expert ids): O(n + range). Scanning the
// keys in position order and dealing each into its bucket keeps equal keys in position order.
bool counting_sort(const std::vector<int64_t>& keys, bool descending, std::vector<int64_t>& order) {
  auto [lowest, highest] = std::minmax_element(keys.begin(), keys.end());
  // Unsigned: the difference of two extreme i64 keys overflows a signed range.
  uint64_t span = static_cast<uint64_t>(*highest) - static_cast<uint64_t>(*lowest);
  if (span >= static_cast<uint64_t>(kBucketsPerKey * static_cast<int64_t>(keys.size()) + kBucketsAlways)) return false;
  uint64_t range = span + 1;
  int64_t low = *lowest;
  std::vector<int64_t> bucket_start(range + 1, 0);
  for (int64_t key : keys) {
    uint64_t bucket = static_cast<uint64_t>(key - low);
    ++bucket_start[(descending ? range - 1 - bucket : bucket) + 1];
  }
  std::partial_sum(bucket_start.begin(), bucket_start.end(), bucket_start.begin());
  for (size_t position = 0; position < keys.size(); ++position) {
    uint64_t bucket = static_cast<uint64_t>(keys[position] - low);
    order[bucket_start[descending ? range - 1 - bucket : bucket]++] = static_cast<int64_t>(position);
  }
  return true;
}

template <typename T>
void sort_row(const std::vector<T>& keys, bool descending, std::vector<int64_t>& order) {
  if constexpr (std::is_same_v<T, int64_t>) {
    if (counting_sort(keys, descending, order)) return;
  }
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return ranks_before(keys[a], a, keys[b], b, descending);
  });
}

// Writes the stable sorting permutation of every row of x along dim into `indices`.
template <typename T>
void sort_rows(const Tensor& x, int64_t dim, bool descending, const Tensor& indices) {
  AxisLayout split = axis_layout(x.shape(), dim);
  const T* in = x.data<T>();
  int64_t* out = indices.data<int64_t>();
  std::vector<T> keys(split.extent);
  std::vector<int64_t> order(split.extent);
  if (split.extent == 0) return;
  for (int64_t lane = 0; lane < split.lanes(); ++lane) {
    int64_t first = split.lane_start(lane);
    for (int64_t e = 0; e < split.extent; ++e) keys[e] = in[first + e * split.inner];
    sort_row(keys, descending, order);
    for (int64_t e = 0; e < split.extent; ++e) out[first + e * split.inner] = order[e];
  }
}

// The smallest gap between neighbours in sorted order over every row of x along dim (+inf
// when there is none): how far the sort is from changing. x and indices on the host.
template <typename T>
double sorted_margin(const Tensor& x, const Tensor& indices, int64_t dim) {
  AxisLayout split = axis_layout(x.shape(), dim);
  const T* in = x.data<T>();
  const int64_t* order = indices.data<int64_t>();
  double margin = std::numeric_limits<double>::infinity();
  for (int64_t lane = 0; lane < split.lanes(); ++lane) {
    int64_t first = split.lane_start(lane);
    auto key = [&](int64_t rank) { return in[first + order[first + rank * split.inner] * split.inner]; };
    for (int64_t rank = 0; rank + 1 < split.extent; ++rank)
      margin = std::min(margin, ordering_gap(key(rank), key(rank + 1)));
  }
  return margin;
}

// Reports the sort of floating x as a choice of `op` (tinymoe::note_choice), with its margin, so
// gradcheck can tell a tie; nothing to do (and no copy from a device) when no one observes.
void note_sort_choice(const char* op, const Tensor& x, const Tensor& indices, int64_t dim) {
  if (!is_floating(x.dtype()) || choice_observer() == nullptr) return;
  Tensor host_x = x.detach().to(Device::cpu()), host_indices = indices.to(Device::cpu());
  double margin = dispatch_floating(x.dtype(), op, [&](auto tag) {
    return sorted_margin<typename decltype(tag)::type>(host_x, host_indices, dim);
  });
  note_choice(op, host_indices.data<int64_t>(), host_indices.numel(), margin);
}

// The sorting permutation of x along dim; floating input reports it as a choice of `op`.
Tensor sorting_permutation(const char* op, const Tensor& x, int64_t dim, bool descending) {
  check_defined(x, op, "x");
  check_has_kernel(x, op);
  dim = normalize_dim(dim, x.dim(), op);
  Tensor indices;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) indices = cuda::sort_indices(x, dim, descending, op);
  else
#endif
  {
    indices = Tensor::empty(x.shape(), DType::i64, x.device());
    dispatch_all(x.dtype(), [&](auto tag) { sort_rows<typename decltype(tag)::type>(x, dim, descending, indices); });
  }
  note_sort_choice(op, x, indices, dim);
  return indices;
}

}  // namespace

SortResult sort(const Tensor& x, int64_t dim, bool descending) {
  Tensor indices = sorting_permutation("sort", x, dim, descending);
  return {gather_values("sort", x, dim, indices), indices};
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) {
  return sorting_permutation("argsort", x, dim, descending);
}

}  // namespace tinymoe
