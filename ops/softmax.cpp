#include "ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "ops/axis_layout.h"
#include "ops/row_math.h"
#include "ops/shape.h"
#include "tinymoe/autograd.h"
#ifdef TINYMOE_WITH_CUDA
#include "cuda/reduce.h"
#endif

namespace tinymoe {
namespace {

// One lane: the `count` elements along the reduced dim, `stride` apart (stride = inner size).
struct Lane {
  int64_t start, count, stride;
  int64_t at(int64_t e) const { return start + e * stride; }
};

// Runs fn(lane_index, lane) for every lane of x's layout around dim.
template <typename Fn>
void for_each_lane(const AxisLayout& layout, Fn fn) {
  for (int64_t lane = 0; lane < layout.lanes(); ++lane)
    fn(lane, Lane{layout.lane_start(lane), layout.extent, layout.inner});
}

template <typename T>
double lane_max(const T* x, const Lane& lane) {
  double max_value = -std::numeric_limits<double>::infinity();
  for (int64_t e = 0; e < lane.count; ++e) max_value = std::max<double>(max_value, x[lane.at(e)]);
  return max_value;
}

// Every exp runs in the tensor's own precision (expf for f32: about twice as fast as exp, and
// exact enough for an f32 result); sums accumulate in double.

// log sum_e exp(x_e) shifted by the lane maximum m so no exp overflows. A non-finite m is the
// answer itself: -inf for an empty or all -inf lane, +inf when the lane holds +inf.
template <typename T>
double lane_logsumexp(const T* x, const Lane& lane) {
  double shift = lane_max(x, lane);
  if (!std::isfinite(shift)) return shift;
  double total = 0;
  for (int64_t e = 0; e < lane.count; ++e) total += std::exp(static_cast<T>(x[lane.at(e)] - shift));
  return shift + std::log(total);
}

// A lane of adjacent elements (softmax along the last dim: every router's case) takes its exps
// through Eigen's packet exp, 8 or 16 at a time; the lane total still accumulates in double.
// A scalar exp per element had been most of a router's softmax time.
template <typename T>
void softmax_adjacent(const T* x, T* y, int64_t count, double shift, bool log_output) {
  row_math::ConstRow<T> in(x, count);
  row_math::Row<T> out(y, count);
  out = (in - static_cast<T>(shift)).exp();
  double total = 0;
  for (int64_t e = 0; e < count; ++e) total += y[e];
  // (x - m) - log total: the shift is taken off first, so a large m costs no precision.
  if (log_output) out = (in - static_cast<T>(shift)) - static_cast<T>(std::log(total));
  else out *= static_cast<T>(1.0 / total);
}

template <typename T>
using Block = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <typename T>
using ConstBlock = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <typename T>
using RowOf = Eigen::Array<T, 1, Eigen::Dynamic>;

// Lanes `inner` apart (a dim that is not the last): the [extent, inner] block of one outer index
// holds `inner` lanes as its columns. Walked row by row, every access is contiguous and
// vectorised; a lane at a time strided through memory (4 times slower on [64, 2048, 8] along
// dim 0: 60 ms against 15 ms forward and backward). Same math as the lane path: exps in T,
// totals in double.
template <typename T>
void softmax_columns(const T* x, T* y, int64_t extent, int64_t inner, bool log_output) {
  if (extent == 0) return;
  ConstBlock<T> in(x, extent, inner);
  Block<T> out(y, extent, inner);
  RowOf<T> shift = in.colwise().maxCoeff();
  out = (in.rowwise() - shift).exp();
  RowOf<double> total = out.template cast<double>().colwise().sum();
  if (log_output) out = (in.rowwise() - shift).rowwise() - total.log().template cast<T>();
  else out.rowwise() *= total.inverse().template cast<T>();
}

template <typename T>
void softmax_backward_columns(const T* g, const T* y, T* dx, int64_t extent, int64_t inner, bool log_output) {
  if (extent == 0) return;
  ConstBlock<T> g_block(g, extent, inner), y_block(y, extent, inner);
  Block<T> out(dx, extent, inner);
  if (log_output) {  // g - softmax * sum(g)
    RowOf<T> g_total = g_block.template cast<double>().colwise().sum().template cast<T>();
    out = g_block - y_block.exp().rowwise() * g_total;
  } else {  // y * (g - sum(g * y))
    RowOf<T> g_dot_y =
        (g_block.template cast<double>() * y_block.template cast<double>()).colwise().sum().template cast<T>();
    out = y_block * (g_block.rowwise() - g_dot_y);
  }
}

// y = softmax(x) (or log_softmax) along a lane of adjacent elements.
template <typename T>
void softmax_lane(const T* x, T* y, const Lane& lane, bool log_output) {
  softmax_adjacent(x + lane.start, y + lane.start, lane.count, lane_max(x, lane), log_output);
}

template <typename T>
double lane_dot(const T* a, const T* b, const Lane& lane) {
  double total = 0;
  for (int64_t e = 0; e < lane.count; ++e) total += static_cast<double>(a[lane.at(e)]) * b[lane.at(e)];
  return total;
}

template <typename T>
double lane_sum(const T* a, const Lane& lane) {
  double total = 0;
  for (int64_t e = 0; e < lane.count; ++e) total += a[lane.at(e)];
  return total;
}

// softmax_backward_cpu's lane math, vectorised for adjacent elements as softmax_adjacent.
template <typename T>
void softmax_backward_adjacent(const T* g, const T* y, T* dx, const Lane& lane, bool log_output) {
  row_math::ConstRow<T> g_lane(g + lane.start, lane.count), y_lane(y + lane.start, lane.count);
  row_math::Row<T> out(dx + lane.start, lane.count);
  if (log_output) out = g_lane - y_lane.exp() * static_cast<T>(lane_sum(g, lane));
  else out = y_lane * (g_lane - static_cast<T>(lane_dot(g, y, lane)));
}

// The checks every op here shares (x floating, dim in range); returns dim normalised.
int64_t checked_dim(const Tensor& x, int64_t dim, const char* op) {
  check_floating(x, op, "x");
  return normalize_dim(dim, x.dim(), op);
}

Tensor softmax_forward_cpu(const Tensor& x, int64_t dim, bool log_output, const char* op) {
  check_cpu(x, op);
  AxisLayout layout = axis_layout(x.shape(), dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    const int64_t block = layout.extent * layout.inner;
    if (layout.inner > 1)
      for (int64_t o = 0; o < layout.outer; ++o)
        softmax_columns(in + o * block, result + o * block, layout.extent, layout.inner, log_output);
    else
      for_each_lane(layout, [&](int64_t, const Lane& lane) { softmax_lane(in, result, lane, log_output); });
  });
  return out;
}

Tensor softmax_backward_cpu(const Tensor& grad_y, const Tensor& y, int64_t dim, bool log_output, const char* op) {
  AxisLayout layout = axis_layout(y.shape(), dim);
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  dispatch_floating(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* y_values = y.data<T>();
    const T* g = grad_y.data<T>();
    T* result = dx.data<T>();
    const int64_t block = layout.extent * layout.inner;
    if (layout.inner > 1)
      for (int64_t o = 0; o < layout.outer; ++o)
        softmax_backward_columns(g + o * block, y_values + o * block, result + o * block, layout.extent, layout.inner,
                                 log_output);
    else
      for_each_lane(layout,
                    [&](int64_t, const Lane& lane) { softmax_backward_adjacent(g, y_values, result, lane, log_output); });
  });
  return dx;
}

// softmax and log_softmax share the forward and differ in the backward; both save only y.
Tensor softmax_family(const Tensor& x, int64_t dim, bool log_output) {
  const char* op = log_output ? "log_softmax" : "softmax";
  dim = checked_dim(x, dim, op);
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = log_output ? cuda::log_softmax(x, dim) : cuda::softmax(x, dim);
  else
#endif
    out = softmax_forward_cpu(x, dim, log_output, op);
  if (!needs_record({&x})) return out;
  Tensor saved_y = out.detach();
  record(op, {x}, {out}, [saved_y, dim, log_output, op](const TensorList& grads) -> TensorList {
#ifdef TINYMOE_WITH_CUDA
    if (saved_y.device().is_cuda())
      return {log_output ? cuda::log_softmax_backward(grads[0], saved_y, dim)
                         : cuda::softmax_backward(grads[0], saved_y, dim)};
#endif
    return {softmax_backward_cpu(grads[0], saved_y, dim, log_output, op)};
  });
  return out;
}

Tensor logsumexp_cpu(const Tensor& x, int64_t dim, bool keepdim) {
  check_cpu(x, "logsumexp");
  AxisLayout layout = axis_layout(x.shape(), dim);
  Shape shape = x.shape();
  if (keepdim)
    shape[dim] = 1;
  else
    shape.erase(shape.begin() + dim);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  dispatch_floating(x.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    // Lane o * inner + i is exactly flat index o * inner + i of the reduced output.
    for_each_lane(layout,
                  [&](int64_t index, const Lane& lane) { result[index] = static_cast<T>(lane_logsumexp(in, lane)); });
  });
  return out;
}

// g * softmax(x) = g * exp(x - lse), lane by lane.
Tensor logsumexp_backward_cpu(const Tensor& grad_out, const Tensor& x, const Tensor& lse_out, int64_t dim) {
  AxisLayout layout = axis_layout(x.shape(), dim);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x_values = x.data<T>();
    const T* lse = lse_out.data<T>();
    const T* g = grad_out.data<T>();
    T* result = dx.data<T>();
    for_each_lane(layout, [&](int64_t index, const Lane& lane) {
      for (int64_t e = 0; e < lane.count; ++e)
        result[lane.at(e)] = static_cast<T>(g[index] * std::exp(x_values[lane.at(e)] - lse[index]));
    });
  });
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, true); }

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  dim = checked_dim(x, dim, "logsumexp");
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) out = cuda::logsumexp(x, dim, keepdim);
  else
#endif
    out = logsumexp_cpu(x, dim, keepdim);
  if (!needs_record({&x})) return out;
  Tensor saved_x = x.detach(), saved_out = out.detach();
  record("logsumexp", {x}, {out}, [saved_x, saved_out, dim](const TensorList& grads) -> TensorList {
#ifdef TINYMOE_WITH_CUDA
    if (saved_x.device().is_cuda()) return {cuda::logsumexp_backward(grads[0], saved_x, saved_out, dim)};
#endif
    return {logsumexp_backward_cpu(grads[0], saved_x, saved_out, dim)};
  });
  return out;
}

}  // namespace tinymoe
