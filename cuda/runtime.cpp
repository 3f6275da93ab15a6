#include "cuda/runtime.h"

#include "cuda/cublas_library.h"

namespace tinymoe {
namespace {

// The one answer of cudaGetDeviceCount for this process.
struct DeviceProbe {
  cudaError_t status = cudaSuccess;
  int count = 0;
};

bool means_no_gpu(cudaError_t status) {
  return status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver;
}

const DeviceProbe& probe() {
  static const DeviceProbe result = [] {
    DeviceProbe found;
    found.status = cudaGetDeviceCount(&found.count);
    if (found.status != cudaSuccess) {
      found.count = 0;
      cudaGetLastError();  // clear the sticky last-error so later checks do not see it
    }
    return found;
  }();
  return result;
}

std::string status_text(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + std::to_string(static_cast<int>(status)) +
         "): " + cudaGetErrorString(status);
}

}  // namespace

int cuda_device_count() {
  const DeviceProbe& found = probe();
  if (found.status != cudaSuccess && !means_no_gpu(found.status))
    fail("cuda_device_count", "cudaGetDeviceCount failed: ", status_text(found.status));
  return found.count;
}

bool cuda_available() { return probe().status == cudaSuccess && probe().count > 0; }

std::string cuda_unavailable_reason() {
  const DeviceProbe& found = probe();
  if (found.status == cudaErrorInsufficientDriver) return "no CUDA driver (" + status_text(found.status) + ")";
  if (found.status == cudaErrorNoDevice) return "no CUDA device (" + status_text(found.status) + ")";
  if (found.status != cudaSuccess) return "CUDA failed to initialise (" + status_text(found.status) + ")";
  if (found.count == 0) return "no CUDA device (cudaGetDeviceCount found 0)";
  return "";
}

void cuda_synchronize(Device device) {
  cuda::check_device(device, "cuda_synchronize");
  cuda::DeviceGuard guard(device);
  TINYMOE_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace cuda {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  cudaGetLastError();  // a non-sticky error must not resurface at the next check
  fail("cuda", call, " failed: ", status_text(status), " [", file, ":", line, "]");
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  std::string name = "cuBLAS status", description = "(cuBLAS could not be loaded to name it)";
  try {
    name = cublas_library().status_name(status);
    description = cublas_library().status_string(status);
  } catch (const Error&) {
  }
  fail("cublas", call, " failed: ", name, " (", static_cast<int>(status), "): ", description, " [", file, ":", line,
       "]");
}

void check_device(Device device, const char* op) {
  TINYMOE_CHECK(device.is_cuda(), op, "expected a cuda device, got ", device.str());
  TINYMOE_CHECK(cuda_available(), op, "device ", device.str(), " requested but ", cuda_unavailable_reason());
  int count = cuda_device_count();
  TINYMOE_CHECK(device.index >= 0 && device.index < count, op, "device ", device.str(), " out of range: ",
                count, " CUDA device(s) present");
}

void check_cuda_tensor(const Tensor& tensor, const char* op, const char* name) {
  check_defined(tensor, op, name);
  TINYMOE_CHECK(tensor.device().is_cuda(), op, "expected '", name, "' on a cuda device, got ",
                tensor.device().str());
}

DeviceGuard::DeviceGuard(Device device) {
  TINYMOE_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device.index) {
    TINYMOE_CUDA_CHECK(cudaSetDevice(device.index));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);  // a destructor must not throw; the device was valid before
}

}  // namespace cuda
}  // namespace tinymoe
