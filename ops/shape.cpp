#include "ops/shape.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <utility>

#include "ops/cuda_dispatch.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/layout.h"
#endif

namespace tinymoe {

namespace {

// Copies `count` positions along dim, starting at source_start in source, to destination_start in
// destination. Both tensors agree on every dim but dim, so each outer index moves one
// contiguous run of count * inner elements.
void copy_along(const Tensor& source, int64_t source_start, const Tensor& destination, int64_t destination_start,
                int64_t dim, int64_t count) {
#ifdef TINYMOE_WITH_CUDA
  if (source.device().is_cuda()) {
    cuda::copy_along(source, source_start, destination, destination_start, dim, count);
    return;
  }
#endif
  AxisLayout from = axis_layout(source.shape(), dim);
  AxisLayout to = axis_layout(destination.shape(), dim);
  size_t element = element_size(source.dtype());
  size_t run = static_cast<size_t>(count * from.inner) * element;
  if (run == 0) return;
  const char* in = static_cast<const char*>(source.raw_data());
  char* out = static_cast<char*>(destination.raw_data());
  for (int64_t o = 0; o < from.outer; ++o)
    std::memcpy(out + ((o * to.extent + destination_start) * to.inner) * element,
                in + ((o * from.extent + source_start) * from.inner) * element, run);
}

// Positions [start, end) of x along dim, in new storage; no checks, no record.
Tensor slice_values(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  Shape shape = x.shape();
  shape[dim] = end - start;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  copy_along(x, start, out, 0, dim, end - start);
  return out;
}

// Joins `parts` (detached, already checked) along dim and records one `op` node whose inputs are
// `inputs`; each input's gradient is its slice of g, reshaped to the input's shape (stack joins
// unsqueezed views of its inputs).
Tensor join(const TensorList& parts, const TensorList& inputs, int64_t dim, const char* op) {
  Shape shape = parts[0].shape();
  shape[dim] = 0;
  for (const Tensor& part : parts) shape[dim] += part.size(dim);
  Tensor out = Tensor::empty(shape, parts[0].dtype(), parts[0].device());
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const Tensor& part : parts) {
    starts.push_back(start);
    copy_along(part, 0, out, start, dim, part.size(dim));
    start += part.size(dim);
  }
  if (needs_record(inputs)) {
    std::vector<Shape> input_shapes;
    std::vector<bool> wants_grad;
    for (const Tensor& input : inputs) {
      input_shapes.push_back(input.shape());
      wants_grad.push_back(input.requires_grad());
    }
    std::vector<int64_t> extents;
    for (const Tensor& part : parts) extents.push_back(part.size(dim));
    record(op, inputs, {out}, [=](const TensorList& grads) -> TensorList {
      TensorList result(input_shapes.size());
      for (size_t k = 0; k < result.size(); ++k)
        if (wants_grad[k])
          result[k] = slice_values(grads[0], dim, starts[k], starts[k] + extents[k]).reshape(input_shapes[k]);
      return result;
    });
  }
  return out;
}

// x with dims dim0 < dim1 swapped: out [outer, second, middle, first, inner]. A plain 2-D
// transpose (the only shape with outer, middle and inner all 1) goes through Eigen's blocked
// transpose; otherwise each inner run is copied whole.
Tensor swap_dims_on_cpu(const Tensor& x, int64_t dim0, int64_t dim1) {
  SwapLayout l = swap_layout(x.shape(), dim0, dim1);
  Shape shape = x.shape();
  std::swap(shape[dim0], shape[dim1]);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* to = out.data<T>();
    if (l.outer == 1 && l.middle == 1 && l.inner == 1) {
      using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<RowMatrix>(to, l.second, l.first) = Eigen::Map<const RowMatrix>(in, l.first, l.second).transpose();
      return;
    }
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t j = 0; j < l.second; ++j)
        for (int64_t m = 0; m < l.middle; ++m)
          for (int64_t i = 0; i < l.first; ++i) {
            const T* from = in + (((o * l.first + i) * l.middle + m) * l.second + j) * l.inner;
            std::copy(from, from + l.inner, to + (((o * l.second + j) * l.middle + m) * l.first + i) * l.inner);
          }
  });
  return out;
}

// Every tensor defined, on the first one's device, of its dtype; returns the first.
const Tensor& check_joinable(const TensorList& tensors, const char* op) {
  TINYMOE_CHECK(!tensors.empty(), op, "expected at least one tensor, got an empty list");
  for (size_t k = 0; k < tensors.size(); ++k) {
    TINYMOE_CHECK(tensors[k].defined(), op, "tensor ", k, " is undefined");
    check_same_device(tensors[0], tensors[k], op);
    TINYMOE_CHECK(tensors[k].dtype() == tensors[0].dtype(), op, "expected tensors of one dtype, got ",
                  dtype_name(tensors[0].dtype()), " (tensor 0) and ", dtype_name(tensors[k].dtype()), " (tensor ", k,
                  ")");
  }
  check_has_kernel(tensors[0], op);
  return tensors[0];
}

}  // namespace

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  check_defined(x, "slice", "x");
  check_has_kernel(x, "slice");
  dim = normalize_dim(dim, x.dim(), "slice");
  int64_t extent = x.size(dim);
  TINYMOE_CHECK(0 <= start && start <= end && end <= extent, "slice", "expected 0 <= start <= end <= ", extent,
                " for dim ", dim, " of shape ", shape_str(x.shape()), ", got start ", start, " and end ", end);
  Tensor out = slice_values(x, dim, start, end);
  if (needs_record({&x})) {
    Shape input_shape = x.shape();
    record("slice", {x}, {out}, [input_shape, dim, start, end](const TensorList& grads) -> TensorList {
      Tensor dx = zeros_on(input_shape, grads[0].dtype(), grads[0].device());
      copy_along(grads[0], 0, dx, start, dim, end - start);
      return {dx};
    });
  }
  return out;
}

Tensor concat(const TensorList& tensors, int64_t dim) {
  const Tensor& first = check_joinable(tensors, "concat");
  TINYMOE_CHECK(first.dim() >= 1, "concat", "cannot concatenate 0-dimensional tensors (use stack)");
  dim = normalize_dim(dim, first.dim(), "concat");
  TensorList parts;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Shape& shape = tensors[k].shape();
    bool fits = shape.size() == first.shape().size();
    for (size_t d = 0; fits && d < shape.size(); ++d)
      fits = static_cast<int64_t>(d) == dim || shape[d] == first.shape()[d];
    TINYMOE_CHECK(fits, "concat", "tensor ", k, " has shape ", shape_str(shape), " but tensor 0 has ",
                  shape_str(first.shape()), "; all dims but dim ", dim, " must agree");
    parts.push_back(tensors[k].detach());
  }
  return join(parts, tensors, dim, "concat");
}

Tensor stack(const TensorList& tensors, int64_t dim) {
  const Tensor& first = check_joinable(tensors, "stack");
  dim = normalize_dim(dim, first.dim() + 1, "stack");
  Shape unsqueezed = first.shape();
  unsqueezed.insert(unsqueezed.begin() + dim, 1);
  TensorList parts;
  for (size_t k = 0; k < tensors.size(); ++k) {
    TINYMOE_CHECK(tensors[k].shape() == first.shape(), "stack", "expected tensors of one shape, got ",
                  shape_str(first.shape()), " (tensor 0) and ", shape_str(tensors[k].shape()), " (tensor ", k, ")");
    parts.push_back(tensors[k].detach().reshape(unsqueezed));
  }
  return join(parts, tensors, dim, "stack");
}

Tensor transpose(const Tensor& x) {
  check_dim(x, 2, "transpose", "x");
  return transpose(x, 0, 1);
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  check_defined(x, "transpose", "x");
  check_has_kernel(x, "transpose");
  dim0 = normalize_dim(dim0, x.dim(), "transpose");
  dim1 = normalize_dim(dim1, x.dim(), "transpose");
  if (dim0 > dim1) std::swap(dim0, dim1);
  Tensor out;
  if (dim0 == dim1) out = x.detach().clone();  // nothing to swap: a copy, as torch's contiguous()
#ifdef TINYMOE_WITH_CUDA
  else if (x.device().is_cuda()) out = cuda::transpose(x, dim0, dim1);
#endif
  else out = swap_dims_on_cpu(x, dim0, dim1);
  if (needs_record({&x})) {
    record("transpose", {x}, {out}, [dim0, dim1](const TensorList& grads) -> TensorList {
      return {transpose(grads[0], dim0, dim1)};
    });
  }
  return out;
}

}  // namespace tinymoe
