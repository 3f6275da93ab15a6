#include "ops/copy.h"

#include <cstring>

#include "tinymoe/autograd.h"

#ifdef TINYMOE_WITH_CUDA
#include "cuda/device_copy.h"
#include "cuda/layout.h"
#endif

namespace tinymoe {
namespace {

// The device copy slot; the CUDA backend's copy is the default when it is compiled in (named
// directly, so linking cannot drop it; see allocator_for in tinymoe/storage.cpp).
DeviceCopyFn& device_copy() {
#ifdef TINYMOE_WITH_CUDA
  static DeviceCopyFn slot = &cuda::device_copy;
#else
  static DeviceCopyFn slot = nullptr;
#endif
  return slot;
}

template <typename To, typename From>
void cast_values(To* destination, const From* source, int64_t count) {
  for (int64_t i = 0; i < count; ++i) destination[i] = static_cast<To>(source[i]);
}

// Same-device cpu copy with a dtype cast.
void cast_on_cpu(const Tensor& source, Tensor& destination) {
  if (source.dtype() == destination.dtype()) {
    if (source.nbytes() > 0) std::memcpy(destination.raw_data(), source.raw_data(), source.nbytes());
    return;
  }
  dispatch_all(source.dtype(), [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    dispatch_all(destination.dtype(), [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      cast_values(static_cast<To*>(destination.raw_data()), static_cast<const From*>(source.raw_data()),
                  source.numel());
    });
  });
}

Tensor copy_values(const Tensor& source, DType dtype, Device device, const char* op) {
  if (source.device().is_cpu() && device.is_cpu()) {
    Tensor out = Tensor::empty(source.shape(), dtype, device);
    cast_on_cpu(source, out);
    return out;
  }
  TINYMOE_CHECK(device_copy() != nullptr, op, "cannot copy between ", source.device().str(), " and ",
                device.str(), ": tinymoe was built without CUDA");
  // Cast on the host side of the copy: cpu->cuda casts first, cuda->cpu casts after.
  if (source.device().is_cpu()) {
    Tensor cast = copy_values(source, dtype, Device::cpu(), op);
    Tensor out = Tensor::empty(source.shape(), dtype, device);
    device_copy()(out.raw_data(), device, cast.raw_data(), Device::cpu(), cast.nbytes());
    return out;
  }
  if (device.is_cuda() && dtype == source.dtype()) {  // cuda -> cuda, no cast: one device copy
    Tensor out = Tensor::empty(source.shape(), dtype, device);
    device_copy()(out.raw_data(), device, source.raw_data(), source.device(), source.nbytes());
    return out;
  }
#ifdef TINYMOE_WITH_CUDA
  if (device.is_cuda()) {  // cuda -> cuda with a cast: move the values (if needed), cast on the destination
    Tensor moved = device == source.device() ? source : copy_values(source, source.dtype(), device, op);
    return cuda::cast(moved, dtype);
  }
#endif
  Tensor staged = Tensor::empty(source.shape(), source.dtype(), device.is_cpu() ? device : Device::cpu());
  device_copy()(staged.raw_data(), staged.device(), source.raw_data(), source.device(), source.nbytes());
  return copy_values(staged, dtype, device, op);  // cast on the host; back to cuda if asked
}

}  // namespace

void register_device_copy(DeviceCopyFn copy) { device_copy() = copy; }

void copy_bytes(void* destination, Device destination_device, const void* source, Device source_device,
                size_t nbytes, const char* op) {
  if (nbytes == 0 || (destination == source && destination_device == source_device)) return;
  if (destination_device.is_cpu() && source_device.is_cpu()) {
    std::memmove(destination, source, nbytes);
    return;
  }
  TINYMOE_CHECK(device_copy() != nullptr, op, "cannot copy between ", source_device.str(), " and ",
                destination_device.str(), ": tinymoe was built without CUDA");
  device_copy()(destination, destination_device, source, source_device, nbytes);
}

Tensor copy_tensor(const Tensor& source, DType dtype, Device device, const char* op) {
  check_defined(source, op, "self");
  Tensor out = copy_values(source, dtype, device, op);
  if (is_floating(dtype) && needs_record({&source})) {
    DType source_dtype = source.dtype();
    Device source_device = source.device();
    record(op, {source}, {out}, [source_dtype, source_device, op](const TensorList& grads) -> TensorList {
      return {copy_tensor(grads[0], source_dtype, source_device, op)};
    });
  }
  return out;
}

}  // namespace tinymoe
