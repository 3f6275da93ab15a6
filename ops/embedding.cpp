#include "ops/embedding.h"

#include <algorithm>

#include "ops/cuda_dispatch.h"
#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/index.h"
#endif

namespace tinymoe {
namespace {

void check_ids_in_range(const Tensor& ids, int64_t vocabulary) {
  const int64_t* id = ids.data<int64_t>();
  for (int64_t position = 0, end = ids.numel(); position < end; ++position)
    TINYMOE_CHECK(id[position] >= 0 && id[position] < vocabulary, "embedding", "id ", id[position],
                  " at flat position ", position, " out of range for a weight of ", vocabulary, " rows");
}

// The rows of weight named by ids, as ids.shape + [d]; ids checked (on the device for cuda).
Tensor lookup(const Tensor& weight, const Tensor& ids) {
  int64_t vocabulary = weight.size(0), width = weight.size(1);
  Shape shape = ids.shape();
  shape.push_back(width);
#ifdef TINYMOE_WITH_CUDA
  if (weight.device().is_cuda()) return cuda::index_select(weight, ids.flatten(), 0, "embedding").reshape(shape);
#endif
  check_ids_in_range(ids, vocabulary);
  Tensor out = Tensor::empty(shape, weight.dtype(), weight.device());
  dispatch_floating(weight.dtype(), "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t* id = ids.data<int64_t>();
    const T* table = weight.data<T>();
    T* result = out.data<T>();
    for (int64_t position = 0, end = ids.numel(); position < end; ++position)
      std::copy_n(table + id[position] * width, width, result + position * width);
  });
  return out;
}

// The reverse of a gather is a scatter-add: row v of dweight sums the output gradients of every
// position whose id is v, in position order (deterministic on cuda too).
Tensor weight_gradient(const Tensor& grad, const Tensor& ids, const Shape& weight_shape) {
  int64_t width = weight_shape[1];
#ifdef TINYMOE_WITH_CUDA
  if (grad.device().is_cuda())
    return cuda::scatter_add(cuda::device_zeros(weight_shape, grad.dtype(), grad.device()), ids.flatten(),
                             grad.reshape({ids.numel(), width}), 0, cuda::ScatterMode::deterministic, "embedding",
                             cuda::IndexValidation::done);
#endif
  Tensor dweight = zeros(weight_shape, grad.dtype(), grad.device());
  dispatch_floating(dweight.dtype(), "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t* id = ids.data<int64_t>();
    const T* g = grad.data<T>();
    T* result = dweight.data<T>();
    for (int64_t position = 0, end = ids.numel(); position < end; ++position)
      for (int64_t j = 0; j < width; ++j) result[id[position] * width + j] += g[position * width + j];
  });
  return dweight;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_floating(weight, "embedding", "weight");
  check_dim(weight, 2, "embedding", "weight");
  check_dtype(ids, DType::i64, "embedding", "ids");
  check_same_device(weight, ids, "embedding");
  check_has_kernel(weight, "embedding");
  Tensor out = lookup(weight.detach(), ids.detach());
  if (needs_record({&weight})) {
    Tensor saved_ids = ids.detach();
    Shape weight_shape = weight.shape();
    record("embedding", {weight, ids}, {out}, [saved_ids, weight_shape](const TensorList& grads) -> TensorList {
      return {weight_gradient(grads[0], saved_ids, weight_shape), Tensor()};
    });
  }
  return out;
}

}  // namespace tinymoe
