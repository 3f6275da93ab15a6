#include "nn/in_place.h"

#include <cstring>

#ifdef TINYMOE_WITH_CUDA
#include "cuda/device_copy.h"
#endif

namespace tinymoe {
namespace nn {

void copy_bytes(void* destination, Device destination_device, const void* source, Device source_device,
                size_t nbytes, const char* op) {
  if (nbytes == 0 || (destination == source && destination_device == source_device)) return;
  if (destination_device.is_cpu() && source_device.is_cpu()) {
    std::memmove(destination, source, nbytes);
    return;
  }
#ifdef TINYMOE_WITH_CUDA
  static_cast<void>(op);  // the backend's copy names the failed call itself
  cuda::device_copy(destination, destination_device, source, source_device, nbytes);
#else
  fail(op, "cannot copy between ", source_device.str(), " and ", destination_device.str(),
       ": tinymoe was built without CUDA");
#endif
}

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
