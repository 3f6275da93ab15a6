#include "nn/in_place.h"

namespace tinymoe {
namespace nn {

void write_values(const Tensor& destination, const Tensor& source, const char* op, int64_t offset) {
  check_defined(destination, op, "destination");
  check_defined(source, op, "source");
  TINYMOE_CHECK(source.dtype() == destination.dtype(), op, "cannot write ", dtype_name(source.dtype()),
                " values into a ", dtype_name(destination.dtype()), " tensor");
  TINYMOE_CHECK(offset >= 0 && offset + source.numel() <= destination.numel(), op, "cannot write ", source.numel(),
                " values from element ", offset, " of a tensor of ", destination.numel());
  const size_t element = element_size(destination.dtype());
  void* start = static_cast<char*>(destination.raw_data()) + static_cast<size_t>(offset) * element;
  copy_bytes(start, destination.device(), source.raw_data(), source.device(), source.nbytes(), op);
}

}  // namespace nn
}  // namespace tinymoe
