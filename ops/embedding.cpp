#include "ops/embedding.h"

#include <algorithm>

#include "tinymoe/autograd.h"

namespace tinymoe {
namespace {

void check_ids_in_range(const Tensor& ids, int64_t vocabulary) {
  const int64_t* id = ids.data<int64_t>();
  for (int64_t position = 0; position < ids.numel(); ++position)
    TINYMOE_CHECK(id[position] >= 0 && id[position] < vocabulary, "embedding", "id ", id[position],
                  " at flat position ", position, " out of range for a weight of ", vocabulary, " rows");
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_floating(weight, "embedding", "weight");
  check_dim(weight, 2, "embedding", "weight");
  check_dtype(ids, DType::i64, "embedding", "ids");
  check_same_device(weight, ids, "embedding");
  check_cpu(weight, "embedding");
  int64_t vocabulary = weight.size(0), width = weight.size(1);
  check_ids_in_range(ids, vocabulary);
  Shape shape = ids.shape();
  shape.push_back(width);
  Tensor out = Tensor::empty(shape, weight.dtype(), weight.device());
  dispatch_floating(weight.dtype(), "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t* id = ids.data<int64_t>();
    const T* table = weight.data<T>();
    T* result = out.data<T>();
    for (int64_t position = 0; position < ids.numel(); ++position)
      std::copy_n(table + id[position] * width, width, result + position * width);
  });
  if (needs_record({&weight})) {
    Tensor saved_ids = ids.detach();
    Shape weight_shape = weight.shape();
    record("embedding", {weight, ids}, {out}, [saved_ids, weight_shape](const TensorList& grads) -> TensorList {
      // The reverse of a gather is a scatter-add: repeated ids sum their rows.
      Tensor dweight = zeros(weight_shape, grads[0].dtype(), grads[0].device());
      int64_t width = weight_shape[1];
      dispatch_floating(dweight.dtype(), "embedding", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const int64_t* id = saved_ids.data<int64_t>();
        const T* g = grads[0].data<T>();
        T* result = dweight.data<T>();
        for (int64_t position = 0; position < saved_ids.numel(); ++position)
          for (int64_t j = 0; j < width; ++j) result[id[position] * width + j] += g[position * width + j];
      });
      return {dweight, Tensor()};
    });
  }
  return out;
}

}  // namespace tinymoe
