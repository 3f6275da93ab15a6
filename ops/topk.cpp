#include "ops/topk.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "ops/axis_layout.h"
#include "ops/index.h"
#include "ops/sort.h"
#include "tinymoe/autograd.h"
#ifdef TINYMOE_WITH_CUDA
#include "cuda/permute.h"
#endif

namespace tinymoe {
namespace {

// Up to this many decided ranks, keeping a small sorted list while scanning the row (about one
// comparison per entry) beats a quickselect; the router case (k of 1..8) lands here.
constexpr int64_t kInsertionLimit = 16;

// The `decided` best positions of a row, best first. Positions arrive in increasing order, so a
// newcomer equal to a kept entry ranks after it: ties go to the lower index. beats(e, b) says
// whether newcomer e ranks before the kept position b < e.
template <typename Beats>
void insertion_select(int64_t count, int64_t decided, Beats beats, std::vector<int64_t>& best) {
  int64_t kept = 0;
  for (int64_t e = 0; e < count; ++e) {
    if (kept == decided && !beats(e, best[kept - 1])) continue;
    int64_t slot = kept < decided ? kept++ : decided - 1;
    for (; slot > 0 && beats(e, best[slot - 1]); --slot) best[slot] = best[slot - 1];
    best[slot] = e;
  }
}

// Without NaNs in the row a newcomer beats a kept entry only by a strictly better key, so one
// comparison decides (ranks_before's NaN and tie handling was most of a router's top-k time).
template <typename T>
void insertion_select(const std::vector<T>& keys, int64_t decided, bool largest, std::vector<int64_t>& best) {
  const int64_t count = static_cast<int64_t>(keys.size());
  bool any_nan = false;
  if constexpr (std::is_floating_point_v<T>)
    for (const T& key : keys) any_nan |= std::isnan(key);
  if (any_nan)
    insertion_select(count, decided, [&](int64_t e, int64_t b) { return ranks_before(keys[e], e, keys[b], b, largest); },
                     best);
  else if (largest)
    insertion_select(count, decided, [&](int64_t e, int64_t b) { return keys[e] > keys[b]; }, best);
  else
    insertion_select(count, decided, [&](int64_t e, int64_t b) { return keys[e] < keys[b]; }, best);
}

// Writes the k chosen positions of every row of x along dim into `indices` ([..., k, ...]);
// returns the smallest gap between neighbours among the first k+1 in sorted order.
template <typename T>
double select_rows(const Tensor& x, int64_t dim, int64_t k, bool largest, bool sorted, const Tensor& indices) {
  AxisLayout split = axis_layout(x.shape(), dim);
  int64_t extent = split.extent;
  // Ranks that decide the result: the k chosen and, when there is one, the first left out.
  int64_t decided = std::min(k + 1, extent);
  const T* in = x.data<T>();
  int64_t* out = indices.data<int64_t>();
  std::vector<T> keys(extent);
  std::vector<int64_t> order(extent);
  auto before = [&](int64_t a, int64_t b) { return ranks_before(keys[a], a, keys[b], b, largest); };
  double margin = std::numeric_limits<double>::infinity();
  for (int64_t o = 0; o < split.outer; ++o)
    for (int64_t i = 0; i < split.inner; ++i) {
      for (int64_t e = 0; e < extent; ++e) keys[e] = in[(o * extent + e) * split.inner + i];
      if (decided <= kInsertionLimit) {
        insertion_select(keys, decided, largest, order);
      } else {
        // Quickselect the decided ranks, then order them: O(n + decided log decided).
        std::iota(order.begin(), order.end(), 0);
        std::nth_element(order.begin(), order.begin() + (decided - 1), order.end(), before);
        std::sort(order.begin(), order.begin() + decided, before);
      }
      for (int64_t e = 0; e + 1 < decided; ++e) margin = std::min(margin, ordering_gap(keys[order[e]], keys[order[e + 1]]));
      if (!sorted) std::sort(order.begin(), order.begin() + k);
      for (int64_t j = 0; j < k; ++j) out[(o * k + j) * split.inner + i] = order[j];
    }
  return margin;
}

#ifdef TINYMOE_WITH_CUDA
// The cuda kernel (cuda/permute.h) is the router's top-k: the k <= 8 largest of rows of at most
// 256 entries along the last dimension, best first. Other requests are an Error, never a wrong
// answer.
void check_cuda_request(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  TINYMOE_CHECK(dim == x.dim() - 1, "topk", "on cuda only along the last dimension (", x.dim() - 1,
                "), got dim ", dim, " of shape ", shape_str(x.shape()));
  TINYMOE_CHECK(largest, "topk", "on cuda only the largest entries (largest=true)");
  TINYMOE_CHECK(sorted, "topk", "on cuda only sorted results (sorted=true)");
  TINYMOE_CHECK(x.size(dim) <= cuda::kTopkMaxColumns, "topk", "on cuda rows of at most ", cuda::kTopkMaxColumns,
                " entries, got n = ", x.size(dim));
  TINYMOE_CHECK(k <= cuda::kTopkMaxK, "topk", "on cuda k of at most ", cuda::kTopkMaxK, ", got k = ", k);
}

// gradcheck's choice observer wants the choice and its margin on the host: only then are the
// chosen indices copied back and the selection rerun on a host copy of x for the margin.
void note_cuda_choice(const Tensor& x, int64_t k, int64_t dim, const Tensor& indices) {
  if (choice_observer() == nullptr) return;
  Tensor host_x = x.detach().to(Device::cpu());
  Tensor host_indices = Tensor::empty(indices.shape(), DType::i64);
  double margin = dispatch_all(host_x.dtype(), [&](auto tag) {
    return select_rows<typename decltype(tag)::type>(host_x, dim, k, true, true, host_indices);
  });
  std::vector<int64_t> chosen = indices.to_vector<int64_t>();
  note_choice("topk", chosen.data(), static_cast<int64_t>(chosen.size()), margin);
}

TopK topk_cuda(const Tensor& x, int64_t k, int64_t dim) {
  ValuesIndices best = cuda::topk(x, k);
  note_cuda_choice(x, k, dim, best.indices);
  if (needs_record({&x})) {
    Shape input_shape = x.shape();
    Tensor saved_indices = best.indices.detach();
    record("topk", {x}, {best.values}, [input_shape, saved_indices](const TensorList& grads) -> TensorList {
      return {cuda::topk_backward(grads[0], saved_indices, input_shape)};
    });
  }
  return {best.values, best.indices};
}
#endif

}  // namespace

TopK topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  check_defined(x, "topk", "x");
  dim = normalize_dim(dim, x.dim(), "topk");
  int64_t extent = x.shape()[dim];
  TINYMOE_CHECK(k >= 1, "topk", "k must be at least 1, got ", k);
  TINYMOE_CHECK(k <= extent, "topk", "k = ", k, " is larger than n = ", extent, ", the size of dim ", dim,
                " of shape ", shape_str(x.shape()));
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) {
    check_cuda_request(x, k, dim, largest, sorted);
    return topk_cuda(x, k, dim);
  }
#endif
  check_cpu(x, "topk");
  Shape shape = x.shape();
  shape[dim] = k;
  Tensor indices = Tensor::empty(shape, DType::i64, x.device());
  double margin = dispatch_all(x.dtype(), [&](auto tag) {
    return select_rows<typename decltype(tag)::type>(x, dim, k, largest, sorted, indices);
  });
  note_choice("topk", indices.data<int64_t>(), indices.numel(), margin);
  return {gather_values("topk", x, dim, indices), indices};
}

}  // namespace tinymoe
