#include "ops/index.h"

#include <cstring>

#include "tinymoe/autograd.h"

namespace tinymoe {

namespace {

void check_index_vector(const char* op, const Tensor& data, const Tensor& index) {
  check_dtype(index, DType::i64, op, "index");
  check_dim(index, 1, op, "index");
  check_same_device(data, index, op);
  check_cpu(data, op);
}

// Every index must name an element of dimension `dim`, of size `extent`.
void check_in_range(const char* op, const Tensor& index, int64_t dim, int64_t extent) {
  const int64_t* values = index.data<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i)
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
  for (int64_t o = 0; o < split.outer; ++o)
    for (int64_t j = 0; j < count; ++j)
      std::memcpy(result + (o * count + j) * block_bytes, in + (o * split.extent + chosen[j]) * block_bytes,
                  block_bytes);
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
  for (int64_t p = 0; p < index.numel(); ++p) {
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
  check_cpu(x, op);
  TINYMOE_CHECK(index.dim() == x.dim(), op, "expected 'index' with as many dimensions as 'x' (",
                shape_str(x.shape()), "), got shape ", shape_str(index.shape()));
  for (int64_t d = 0; d < x.dim(); ++d)
    TINYMOE_CHECK(d == dim || index.shape()[d] <= x.shape()[d], op, "index shape ", shape_str(index.shape()),
                  " exceeds x shape ", shape_str(x.shape()), " at dim ", d, " (only dim ", dim, " may differ)");
  check_in_range(op, index, dim, x.shape()[dim]);
}

}  // namespace

Tensor index_select(const Tensor& x, const Tensor& index, int64_t dim) {
  check_defined(x, "index_select", "x");
  check_index_vector("index_select", x, index);
  dim = normalize_dim(dim, x.dim(), "index_select");
  check_in_range("index_select", index, dim, x.shape()[dim]);
  Tensor out = Tensor::empty(with_extent(x.shape(), dim, index.numel()), x.dtype(), x.device());
  copy_selected_blocks(x, index, axis_layout(x.shape(), dim), out);
  if (needs_record({&x})) {
    Shape shape = x.shape();
    Tensor saved_index = index.detach();
    record("index_select", {x, index}, {out}, [shape, saved_index, dim](const TensorList& grads) -> TensorList {
      Tensor dx = scatter_add(zeros(shape, grads[0].dtype(), grads[0].device()), saved_index, grads[0], dim);
      return {dx, Tensor()};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& source, int64_t dim, bool deterministic) {
  // The CPU kernel is sequential in source order: deterministic whatever the flag (see header).
  static_cast<void>(deterministic);
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
  check_in_range("scatter_add", index, dim, base.shape()[dim]);
  Tensor out = base.detach().clone();
  add_source_blocks(source, index, axis_layout(base.shape(), dim), out);
  if (needs_record({&base, &source})) {
    bool grad_base = base.requires_grad(), grad_source = source.requires_grad();
    Tensor saved_index = index.detach();
    record("scatter_add", {base, index, source}, {out},
           [grad_base, grad_source, saved_index, dim](const TensorList& grads) -> TensorList {
             Tensor d_base = grad_base ? grads[0] : Tensor();
             Tensor d_source = grad_source ? index_select(grads[0], saved_index, dim) : Tensor();
             return {d_base, Tensor(), d_source};
           });
  }
  return out;
}

Tensor gather_values(const char* op, const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, op, "x");
  dim = normalize_dim(dim, x.dim(), op);
  check_gather_args(op, x, dim, index);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    walk_gather(x.shape(), index, dim, [&](int64_t p, int64_t q) { result[p] = in[q]; });
  });
  if (needs_record({&x})) {
    Shape shape = x.shape();
    Tensor saved_index = index.detach();
    record(op, {x, index}, {out}, [op, shape, saved_index, dim](const TensorList& grads) -> TensorList {
      Tensor dx = zeros(shape, grads[0].dtype(), grads[0].device());
      dispatch_floating(dx.dtype(), op, [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* g = grads[0].data<T>();
        T* result = dx.data<T>();
        walk_gather(shape, saved_index, dim, [&](int64_t p, int64_t q) { result[q] += g[p]; });
      });
      return {dx, Tensor()};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) { return gather_values("gather", x, dim, index); }

}  // namespace tinymoe
