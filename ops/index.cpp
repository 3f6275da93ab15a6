#include "ops/index.h"

#include <cstring>

#include "ops/cuda_dispatch.h"
#include "ops/row_math.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/index.h"
#endif

namespace tinymoe {

namespace {

// Whether an index still needs its range check, or was checked against the same extent before
// (a backward reusing its forward's index).
enum class IndexRange { unchecked, checked };

void check_index_vector(const char* op, const Tensor& data, const Tensor& index) {
  check_dtype(index, DType::i64, op, "index");
  check_dim(index, 1, op, "index");
  check_same_device(data, index, op);
  check_has_kernel(data, op);
}

// Every index must name an element of dimension `dim`, of size `extent`. On the host, for cpu
// tensors; the cuda kernels check their indices on the device.
void check_in_range(const char* op, const Tensor& index, int64_t dim, int64_t extent) {
  const int64_t* values = index.data<int64_t>();
  for (int64_t i = 0, end = index.numel(); i < end; ++i)
    TINYMOE_CHECK(values[i] >= 0 && values[i] < extent, op, "index ", values[i], " out of range for dim ", dim,
                  " of size ", extent);
}

Shape with_extent(Shape shape, int64_t dim, int64_t extent) {
  shape[dim] = extent;
  return shape;
}

// out block (o, j) = x block (o, index[j]); a block is `inner` contiguous elements of any dtype.
void copy_selected_blocks(const Tensor& x, const Tensor& index, const AxisLayout& split, const Tensor& out) {
  size_t block_bytes = static_cast<size_t>(split.inner) * element_size(x.dtype());
  if (block_bytes == 0) return;
  const char* in = static_cast<const char*>(x.raw_data());
  char* result = static_cast<char*>(out.raw_data());
  const int64_t* chosen = index.data<int64_t>();
  int64_t count = index.numel();
  for (int64_t o = 0; o < split.outer; ++o) {
    const char* part = in + o * split.extent * block_bytes;
    for (int64_t j = 0; j < count; ++j) {
      if (j + row_math::kRowsAhead < count)  // rows at random positions: see ops/row_math.h
        row_math::prefetch_bytes(part + chosen[j + row_math::kRowsAhead] * block_bytes,
                                 static_cast<int64_t>(block_bytes), false);
      std::memcpy(result + (o * count + j) * block_bytes, part + chosen[j] * block_bytes, block_bytes);
    }
  }
}

// out block (o, index[j]) += source block (o, j), in source order (hence deterministic).
void add_source_blocks(const Tensor& source, const Tensor& index, const AxisLayout& split, const Tensor& out) {
  const int64_t* chosen = index.data<int64_t>();
  int64_t count = index.numel();
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* from = source.data<T>();
    T* result = out.data<T>();
    for (int64_t o = 0; o < split.outer; ++o)
      for (int64_t j = 0; j < count; ++j) {
        T* row = result + (o * split.extent + chosen[j]) * split.inner;
        const T* contribution = from + (o * count + j) * split.inner;
        for (int64_t i = 0; i < split.inner; ++i) row[i] += contribution[i];
      }
  });
}

// Calls visit(p, q) for every element p of `index` (row-major) with q the flat offset in x of the
// element it names: p's own coordinates, with index[p] at `dim`.
template <typename Visit>
void walk_gather(const Shape& x_shape, const Tensor& index, int64_t dim, Visit visit) {
  const Shape& shape = index.shape();
  int64_t ndim = static_cast<int64_t>(shape.size());
  std::vector<int64_t> x_stride(ndim, 1);
  for (int64_t d = ndim - 2; d >= 0; --d) x_stride[d] = x_stride[d + 1] * x_shape[d + 1];
  std::vector<int64_t> counter(ndim, 0);
  int64_t offset = 0;  // x offset of `counter`, leaving out dim
  const int64_t* chosen = index.data<int64_t>();
  for (int64_t p = 0, end = index.numel(); p < end; ++p) {
    visit(p, offset + chosen[p] * x_stride[dim]);
    for (int64_t d = ndim - 1; d >= 0; --d) {  // odometer step
      int64_t stride = d == dim ? 0 : x_stride[d];
      offset += stride;
      if (++counter[d] < shape[d]) break;
      offset -= stride * shape[d];
      counter[d] = 0;
    }
  }
}

void check_gather_args(const char* op, const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, op, "x");
  check_dtype(index, DType::i64, op, "index");
  check_same_device(x, index, op);
  check_has_kernel(x, op);
  TINYMOE_CHECK(index.dim() == x.dim(), op, "expected 'index' with as many dimensions as 'x' (",
                shape_str(x.shape()), "), got shape ", shape_str(index.shape()));
  for (int64_t d = 0; d < x.dim(); ++d)
    TINYMOE_CHECK(d == dim || index.shape()[d] <= x.shape()[d], op, "index shape ", shape_str(index.shape()),
                  " exceeds x shape ", shape_str(x.shape()), " at dim ", d, " (only dim ", dim, " may differ)");
}

#ifdef TINYMOE_WITH_CUDA
cuda::IndexValidation validation(IndexRange range) {
  return range == IndexRange::checked ? cuda::IndexValidation::done : cuda::IndexValidation::check;
}
#endif

// index_select's values, without a record.
Tensor select_values(const Tensor& x, const Tensor& index, int64_t dim, const char* op, IndexRange range) {
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) return cuda::index_select(x, index, dim, op, validation(range));
#endif
  if (range == IndexRange::unchecked) check_in_range(op, index, dim, x.shape()[dim]);
  Tensor out = Tensor::empty(with_extent(x.shape(), dim, index.numel()), x.dtype(), x.device());
  copy_selected_blocks(x, index, axis_layout(x.shape(), dim), out);
  return out;
}

// scatter_add's values, without a record. The CPU loop is sequential in source order:
// deterministic whatever the flag (see the header).
Tensor scatter_values(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim, bool deterministic,
                      IndexRange range) {
#ifdef TINYMOE_WITH_CUDA
  if (base.device().is_cuda()) {
    cuda::ScatterMode mode = deterministic ? cuda::ScatterMode::deterministic : cuda::ScatterMode::atomic;
    return cuda::scatter_add(base, index, source, dim, mode, "scatter_add", validation(range));
  }
#endif
  static_cast<void>(deterministic);
  if (range == IndexRange::unchecked) check_in_range("scatter_add", index, dim, base.shape()[dim]);
  Tensor out = base.detach().clone();
  add_source_blocks(source, index, axis_layout(base.shape(), dim), out);
  return out;
}

// gather's values; on cuda also the flat offsets it read (its backward's scatter index).
Tensor gather_forward(const char* op, const Tensor& x, int64_t dim, const Tensor& index, Tensor& offsets) {
#ifdef TINYMOE_WITH_CUDA
  if (x.device().is_cuda()) {
    offsets = cuda::gather_offsets(x.shape(), index, dim, op).flatten();
    return cuda::index_select(x.detach().flatten(), offsets, 0, op, cuda::IndexValidation::done).reshape(index.shape());
  }
#endif
  static_cast<void>(offsets);  // the CPU walks the index again in the backward
  check_in_range(op, index, dim, x.shape()[dim]);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    walk_gather(x.shape(), index, dim, [&](int64_t p, int64_t q) { result[p] = in[q]; });
  });
  return out;
}

// The gradient of gather: grad added back where each element was read, duplicates accumulating
// in index order (on cuda a deterministic scatter_add over the flat offsets).
Tensor gather_backward(const char* op, const Shape& shape, const Tensor& index, const Tensor& offsets, int64_t dim,
                       const Tensor& grad) {
#ifdef TINYMOE_WITH_CUDA
  if (grad.device().is_cuda()) {
    Tensor flat_zeros = cuda::device_zeros({shape_numel(shape)}, grad.dtype(), grad.device());
    return cuda::scatter_add(flat_zeros, offsets, grad.flatten(), 0, cuda::ScatterMode::deterministic, op,
                             cuda::IndexValidation::done)
        .reshape(shape);
  }
#endif
  static_cast<void>(offsets);
  Tensor dx = zeros(shape, grad.dtype(), grad.device());
  dispatch_floating(dx.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = grad.data<T>();
    T* result = dx.data<T>();
    walk_gather(shape, index, dim, [&](int64_t p, int64_t q) { result[q] += g[p]; });
  });
  return dx;
}

}  // namespace

Tensor index_select(const Tensor& x, const Tensor& index, int64_t dim) {
  check_defined(x, "index_select", "x");
  check_index_vector("index_select", x, index);
  dim = normalize_dim(dim, x.dim(), "index_select");
  Tensor out = select_values(x, index, dim, "index_select", IndexRange::unchecked);
  if (needs_record({&x})) {
    Shape shape = x.shape();
    Tensor saved_index = index.detach();
    record("index_select", {x, index}, {out}, [shape, saved_index, dim](const TensorList& grads) -> TensorList {
      // Repeated indices accumulate; the deterministic scatter keeps cuda sums in index order.
      Tensor dx = scatter_values(zeros_on(shape, grads[0].dtype(), grads[0].device()), saved_index, grads[0], dim,
                                 true, IndexRange::checked);
      return {dx, Tensor()};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim, bool deterministic) {
  check_defined(base, "scatter_add", "base");
  check_defined(source, "scatter_add", "source");
  check_index_vector("scatter_add", base, index);
  check_same_device(base, source, "scatter_add");
  TINYMOE_CHECK(base.dtype() == source.dtype(), "scatter_add", "expected 'base' and 'source' of one dtype, got ",
                dtype_name(base.dtype()), " and ", dtype_name(source.dtype()));
  dim = normalize_dim(dim, base.dim(), "scatter_add");
  Shape source_shape = with_extent(base.shape(), dim, index.numel());
  TINYMOE_CHECK(source.shape() == source_shape, "scatter_add", "expected 'source' of shape ", shape_str(source_shape),
                " (base ", shape_str(base.shape()), " with ", index.numel(), " indices at dim ", dim, "), got ",
                shape_str(source.shape()));
  Tensor out = scatter_values(base, index, source, dim, deterministic, IndexRange::unchecked);
  if (needs_record({&base, &source})) {
    bool grad_base = base.requires_grad(), grad_source = source.requires_grad();
    Tensor saved_index = index.detach();
    record("scatter_add", {base, index, source}, {out},
           [grad_base, grad_source, saved_index, dim](const TensorList& grads) -> TensorList {
             Tensor d_base = grad_base ? grads[0] : Tensor();
             Tensor d_source =
                 grad_source ? select_values(grads[0], saved_index, dim, "scatter_add", IndexRange::checked) : Tensor();
             return {d_base, Tensor(), d_source};
           });
  }
  return out;
}

Tensor gather_values(const char* op, const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, op, "x");
  dim = normalize_dim(dim, x.dim(), op);
  check_gather_args(op, x, dim, index);
  Tensor offsets;
  Tensor out = gather_forward(op, x, dim, index, offsets);
  if (needs_record({&x})) {
    Shape shape = x.shape();
    Tensor saved_index = offsets.defined() ? Tensor() : index.detach();  // cuda reads the offsets instead
    record(op, {x, index}, {out}, [op, shape, saved_index, offsets, dim](const TensorList& grads) -> TensorList {
      return {gather_backward(op, shape, saved_index, offsets, dim, grads[0]), Tensor()};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) { return gather_values("gather", x, dim, index); }

}  // namespace tinymoe
