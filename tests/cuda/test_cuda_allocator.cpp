// The caching allocator and the device copy hook, on a device.
#include <catch2/catch.hpp>

#include "cuda/allocator.h"
#include "cuda/elementwise.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "parity.h"

using namespace cuda_test;

namespace {

// One "training step" worth of allocations: inputs, activations, a reduction, a copy back.
double step(const Tensor& host_input) {
  Tensor x = host_input.to(kGpu);
  Tensor hidden = cuda::unary(cuda::UnaryOp::silu, x);
  Tensor product = cuda::binary(cuda::BinaryOp::mul, hidden, x);
  Tensor rows = cuda::sum_dim(product, 1);
  return cuda::sum_dim(rows, 0).item();
}

}  // namespace

TEST_CASE("cuda allocator: a steady loop stops calling cudaMalloc", "[cuda][allocator]") {
  Tensor input = random_input({64, 96}, DType::f32, 1);
  double first = step(input);
  CudaMemoryStats warm = cuda_memory_stats(kGpu);
  for (int i = 0; i < 20; ++i) CHECK(step(input) == first);
  CudaMemoryStats after = cuda_memory_stats(kGpu);
  CHECK(after.malloc_count == warm.malloc_count);
  CHECK(after.allocated_bytes == warm.allocated_bytes);  // every block of a step came back
  CHECK(after.cached_bytes == warm.cached_bytes);
  CHECK(cuda_memory_stats().malloc_count >= after.malloc_count);
}

TEST_CASE("cuda allocator: live blocks are counted, freed blocks cached, empty_cache releases them", "[cuda][allocator]") {
  cuda_empty_cache();
  CudaMemoryStats before = cuda_memory_stats(kGpu);
  CHECK(before.cached_bytes == 0);
  {
    Tensor block = Tensor::empty({1000}, DType::f32, kGpu);  // 4000 bytes -> the 4096 class
    CHECK(cuda_memory_stats(kGpu).allocated_bytes == before.allocated_bytes + 4096);
  }
  CudaMemoryStats freed = cuda_memory_stats(kGpu);
  CHECK(freed.allocated_bytes == before.allocated_bytes);
  CHECK(freed.cached_bytes == 4096);
  Tensor again = Tensor::empty({1010}, DType::f32, kGpu);  // same class: served from the cache
  CHECK(cuda_memory_stats(kGpu).malloc_count == freed.malloc_count);
  again = Tensor();
  cuda_empty_cache();
  CudaMemoryStats emptied = cuda_memory_stats(kGpu);
  CHECK(emptied.cached_bytes == 0);
  CHECK(emptied.free_count > freed.free_count);
}

TEST_CASE("cuda copy: host, device and device-to-device round trips are exact", "[cuda][copy]") {
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor host = random_input({7, 13}, dtype, 2);
    Tensor device = host.to(kGpu);
    CHECK(device.device() == kGpu);
    CHECK(device.shape() == host.shape());
    CHECK(host_values(device) == host_values(host));
    Tensor copy = device.clone();  // cuda -> cuda
    CHECK(copy.device() == kGpu);
    CHECK(copy.raw_data() != device.raw_data());
    CHECK(host_values(copy) == host_values(host));
  }
  Tensor indices = arange(10).to(kGpu);
  CHECK(indices.to_vector<int64_t>() == arange(10).to_vector<int64_t>());
  Tensor cast = random_input({5}, DType::f32, 3).to(kGpu).to(DType::f64);  // cast through the host
  CHECK(cast.device() == kGpu);
  CHECK(cast.dtype() == DType::f64);
  CHECK(host_values(cast) == host_values(random_input({5}, DType::f32, 3)));
  CHECK(Tensor::empty({0, 3}, DType::f32, kGpu).to(Device::cpu()).numel() == 0);
}

TEST_CASE("cuda copy: gradients flow back across devices", "[cuda][copy]") {
  Tensor x = random_input({4}, DType::f64, 4).requires_grad_();
  Tensor on_device = x.to(kGpu);
  Tensor back = on_device.to(Device::cpu());
  sum(mul(back, back)).backward();
  CHECK(relative_error(x.grad(), mul(x.detach(), 2.0)) == 0);
}
