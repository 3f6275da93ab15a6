#include "ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/axis_layout.h"
#include "ops/shape.h"
#include "tinymoe/autograd.h"

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

// y = softmax(x) (or log_softmax) along the lane; one exp per element: y holds exp(x - m)
// until the lane total is known.
template <typename T>
void softmax_lane(const T* x, T* y, const Lane& lane, bool log_output) {
  double shift = lane_max(x, lane);
  double total = 0;
  for (int64_t e = 0; e < lane.count; ++e) {
    T shifted = std::exp(static_cast<T>(x[lane.at(e)] - shift));
    total += shifted;
    if (!log_output) y[lane.at(e)] = static_cast<T>(shifted);
  }
  if (log_output) {
    double log_total = shift + std::log(total);
    for (int64_t e = 0; e < lane.count; ++e) y[lane.at(e)] = static_cast<T>(x[lane.at(e)] - log_total);
  } else {
    double inverse_total = 1.0 / total;
    for (int64_t e = 0; e < lane.count; ++e) y[lane.at(e)] = static_cast<T>(y[lane.at(e)] * inverse_total);
  }
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

AxisLayout checked_layout(const Tensor& x, int64_t& dim, const char* op) {
  check_floating(x, op, "x");
  check_cpu(x, op);
  dim = normalize_dim(dim, x.dim(), op);
  return axis_layout(x.shape(), dim);
}

// softmax and log_softmax share the forward and differ in the backward; both save only y.
Tensor softmax_family(const Tensor& x, int64_t dim, bool log_output) {
  const char* op = log_output ? "log_softmax" : "softmax";
  AxisLayout layout = checked_layout(x, dim, op);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    for_each_lane(layout, [&](int64_t, const Lane& lane) { softmax_lane(in, result, lane, log_output); });
  });
  if (!needs_record({&x})) return out;
  Tensor saved_y = out.detach();
  record(op, {x}, {out}, [saved_y, layout, log_output, op](const TensorList& grads) -> TensorList {
    Tensor dx = Tensor::empty(saved_y.shape(), saved_y.dtype(), saved_y.device());
    dispatch_floating(saved_y.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* y = saved_y.data<T>();
      const T* g = grads[0].data<T>();
      T* result = dx.data<T>();
      for_each_lane(layout, [&](int64_t, const Lane& lane) {
        if (log_output) {  // d log_softmax: g - softmax * sum(g)
          double g_total = lane_sum(g, lane);
          for (int64_t e = 0; e < lane.count; ++e)
            result[lane.at(e)] = static_cast<T>(g[lane.at(e)] - std::exp(y[lane.at(e)]) * g_total);
        } else {  // d softmax: y * (g - sum(g * y))
          double g_dot_y = lane_dot(g, y, lane);
          for (int64_t e = 0; e < lane.count; ++e)
            result[lane.at(e)] = static_cast<T>(y[lane.at(e)] * (g[lane.at(e)] - g_dot_y));
        }
      });
    });
    return {dx};
  });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, true); }

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  AxisLayout layout = checked_layout(x, dim, "logsumexp");
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
  if (!needs_record({&x})) return out;
  Tensor saved_x = x.detach(), saved_out = out.detach();
  record("logsumexp", {x}, {out}, [saved_x, saved_out, layout](const TensorList& grads) -> TensorList {
    Tensor dx = Tensor::empty(saved_x.shape(), saved_x.dtype(), saved_x.device());
    dispatch_floating(saved_x.dtype(), "logsumexp", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x_values = saved_x.data<T>();
      const T* lse = saved_out.data<T>();
      const T* g = grads[0].data<T>();
      T* result = dx.data<T>();
      for_each_lane(layout, [&](int64_t index, const Lane& lane) {  // g * softmax(x) = g * exp(x - lse)
        for (int64_t e = 0; e < lane.count; ++e)
          result[lane.at(e)] = static_cast<T>(g[index] * std::exp(x_values[lane.at(e)] - lse[index]));
      });
    });
    return {dx};
  });
  return out;
}

}  // namespace tinymoe
