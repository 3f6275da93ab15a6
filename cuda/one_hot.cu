// one_hot: one thread per output element compares its class with its row's index.
#include "cuda/counting.h"
#include "cuda/index_check.h"
#include "cuda/launch.cuh"

namespace tinymoe {
namespace cuda {
namespace {

template <typename T>
__global__ void one_hot_kernel(const int64_t* index, T* out, int64_t count, int64_t num_classes) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) out[i] = index[i / num_classes] == i % num_classes ? T(1) : T(0);
}

}  // namespace

Tensor one_hot(const Tensor& index, int64_t num_classes, DType dtype) {
  check_cuda_tensor(index, "one_hot", "index");
  check_dtype(index, DType::i64, "one_hot", "index");
  TINYMOE_CHECK(num_classes >= 1, "one_hot", "num_classes must be at least 1, got ", num_classes);
  check_index_range(index, num_classes, "one_hot");
  Shape shape = index.shape();
  shape.push_back(num_classes);
  Tensor out = Tensor::empty(shape, dtype, index.device());
  if (out.numel() == 0) return out;
  DeviceGuard guard(index.device());
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    one_hot_kernel<<<grid_for(out.numel()), kBlockThreads>>>(static_cast<const int64_t*>(index.raw_data()),
                                                            static_cast<T*>(out.raw_data()), out.numel(), num_classes);
  });
  TINYMOE_CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
