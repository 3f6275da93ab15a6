#include "nn/id_range.h"

#include <string>

#ifdef TINYMOE_WITH_CUDA
#include "cuda/index_check.h"
#endif

namespace tinymoe {
namespace nn {

void check_id_range(const Tensor& ids, int64_t limit, const char* name, const char* what, const char* op) {
  check_dtype(ids, DType::i64, op, name);
#ifdef TINYMOE_WITH_CUDA
  if (ids.device().is_cuda()) {
    const std::string label = std::string(op) + ": " + name;  // the device check's Error starts with it
    cuda::check_index_range(ids.flatten(), limit, label.c_str());
    return;
  }
#endif
  check_cpu(ids, op);
  const int64_t* values = ids.data<int64_t>();
  for (int64_t i = 0, end = ids.numel(); i < end; ++i)
    TINYMOE_CHECK(values[i] >= 0 && values[i] < limit, op, name, "[", i, "] = ", values[i],
                  " out of range: expected ", what, " in [0, ", limit, ")");
}

}  // namespace nn
}  // namespace tinymoe
