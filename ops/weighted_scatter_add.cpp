#include "ops/weighted_scatter_add.h"

#include "ops/cuda_dispatch.h"
#include "ops/row_math.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/index.h"
#endif

namespace tinymoe {
namespace {

constexpr const char* kOp = "weighted_scatter_add";

void check_arguments(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows) {
  check_floating(source, kOp, "source");
  check_dim(source, 2, kOp, "source");
  check_dtype(index, DType::i64, kOp, "index");
  check_dim(index, 1, kOp, "index");
  check_dtype(weight, source.dtype(), kOp, "weight");
  check_same_device(source, index, kOp);
  check_same_device(source, weight, kOp);
  check_has_kernel(source, kOp);
  const int64_t pairs = source.size(0);
  TINYMOE_CHECK(index.numel() == pairs, kOp, "expected one index per source row (", pairs, "), got ", index.numel());
  TINYMOE_CHECK(weight.numel() == pairs && (weight.dim() == 1 || (weight.dim() == 2 && weight.size(1) == 1)), kOp,
                "expected weight of shape [", pairs, "] or [", pairs, ", 1], got ", shape_str(weight.shape()));
  TINYMOE_CHECK(num_rows >= 0, kOp, "num_rows must be non-negative, got ", num_rows);
}

// On the host, for a cpu index (the cuda kernel checks its index on the device).
void check_rows_in_range(const Tensor& index, int64_t num_rows) {
  const int64_t pairs = index.numel();
  const int64_t* rows = index.data<int64_t>();
  for (int64_t p = 0; p < pairs; ++p)
    TINYMOE_CHECK(rows[p] >= 0 && rows[p] < num_rows, kOp, "index ", rows[p], " out of range for ", num_rows, " rows");
}

template <typename T>
void combine(const Tensor& source, const Tensor& index, const Tensor& weight, Tensor& out) {
  const int64_t pairs = source.size(0), width = source.size(1);
  const T* in = source.data<T>();
  const T* scale = weight.data<T>();
  const int64_t* rows = index.data<int64_t>();
  T* result = out.data<T>();
  for (int64_t p = 0; p < pairs; ++p) {
    row_math::prefetch_row(result, rows, p + row_math::kRowsAhead, pairs, width, true);
    row_math::add_scaled(result + rows[p] * width, in + p * width, scale[p], width);
  }
}

// d_source[p] = weight[p] * g[index[p]] and d_weight[p] = <g[index[p]], source[p]>, each when wanted.
template <typename T>
void backward_rows(const Tensor& g, const Tensor& source, const Tensor& index, const Tensor& weight,
                   Tensor* d_source, Tensor* d_weight) {
  const int64_t pairs = source.size(0), width = source.size(1);
  const T* grad = g.data<T>();
  const T* in = source.data<T>();
  const T* scale = weight.data<T>();
  const int64_t* rows = index.data<int64_t>();
  for (int64_t p = 0; p < pairs; ++p) {
    row_math::prefetch_row(grad, rows, p + row_math::kRowsAhead, pairs, width, false);
    const T* grad_row = grad + rows[p] * width;
    if (d_source) row_math::assign_scaled(d_source->data<T>() + p * width, grad_row, scale[p], width);
    if (d_weight) d_weight->data<T>()[p] = row_math::dot(grad_row, in + p * width, width);
  }
}

// The CPU forward: zeros, then each pair added in order.
Tensor combine_on_cpu(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows) {
  check_rows_in_range(index, num_rows);
  Tensor out = zeros({num_rows, source.size(1)}, source.dtype(), source.device());
  dispatch_floating(source.dtype(), kOp,
                    [&](auto tag) { combine<typename decltype(tag)::type>(source, index, weight, out); });
  return out;
}

// {d_source, d_weight} on the CPU, each when wanted. Without a weight gradient the source is
// not needed (and may be undefined).
TensorList backward_on_cpu(const Tensor& g, const Tensor& source, const Tensor& index, const Tensor& weight,
                           bool grad_source, bool grad_weight) {
  Shape source_shape{index.numel(), g.size(1)};
  Tensor d_source = grad_source ? Tensor::empty(source_shape, g.dtype(), g.device()) : Tensor();
  Tensor d_weight = grad_weight ? Tensor::empty({index.numel()}, g.dtype(), g.device()) : Tensor();
  // backward_rows reads only the source's shape without a weight gradient: pass a stand-in.
  const Tensor& rows_source = grad_weight ? source : d_source;
  dispatch_floating(g.dtype(), kOp, [&](auto tag) {
    backward_rows<typename decltype(tag)::type>(g, rows_source, index, weight, grad_source ? &d_source : nullptr,
                                                grad_weight ? &d_weight : nullptr);
  });
  return {d_source, d_weight};
}

}  // namespace

Tensor weighted_scatter_add(const Tensor& source, const Tensor& index, const Tensor& weight, int64_t num_rows) {
  check_arguments(source, index, weight, num_rows);
  Tensor out;
#ifdef TINYMOE_WITH_CUDA
  if (source.device().is_cuda()) out = cuda::weighted_scatter_add(source, index, weight, num_rows);
  else
#endif
    out = combine_on_cpu(source, index, weight, num_rows);
  if (needs_record({&source, &weight})) {
    bool grad_source = source.requires_grad(), grad_weight = weight.requires_grad();
    Tensor saved_source = grad_weight ? source.detach() : Tensor();
    Tensor saved_index = index.detach(), saved_weight = weight.detach();
    Shape weight_shape = weight.shape();
    record(kOp, {source, index, weight}, {out}, [=](const TensorList& grads) -> TensorList {
      TensorList result;
#ifdef TINYMOE_WITH_CUDA
      if (grads[0].device().is_cuda()) {
        cuda::WeightedScatterGrads on_device = cuda::weighted_scatter_add_backward(
            grads[0], saved_source, saved_index, saved_weight, grad_source, grad_weight);
        result = {on_device.d_source, on_device.d_weight};
      } else
#endif
        result = backward_on_cpu(grads[0], saved_source, saved_index, saved_weight, grad_source, grad_weight);
      Tensor d_weight = grad_weight ? result[1].reshape(weight_shape) : Tensor();
      return {result[0], Tensor(), d_weight};
    });
  }
  return out;
}

}  // namespace tinymoe
