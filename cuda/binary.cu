// Broadcasting binary arithmetic (add, sub, mul, div) and broadcast_to.
#include "cuda/elementwise.h"
#include "cuda/launch.cuh"
#include "ops/elementwise.h"

namespace tinymoe {
namespace cuda {
namespace {

constexpr int kMaxDims = 8;

// Output shape plus each operand's strides through it (0 along broadcast dimensions).
struct BroadcastIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
};

struct AddOp { template <typename T> __device__ T operator()(T x, T y) const { return x + y; } };
struct SubOp { template <typename T> __device__ T operator()(T x, T y) const { return x - y; } };
struct MulOp { template <typename T> __device__ T operator()(T x, T y) const { return x * y; } };
struct DivOp { template <typename T> __device__ T operator()(T x, T y) const { return x / y; } };
struct FirstOp { template <typename T> __device__ T operator()(T x, T) const { return x; } };

template <typename T, typename Op>
__global__ void binary_same_shape_kernel(const T* a, const T* b, T* out, int64_t count, Op op) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) out[i] = op(a[i], b[i]);
}

template <typename T, typename Op>
__global__ void binary_broadcast_kernel(const T* a, const T* b, T* out, int64_t count, BroadcastIndex index, Op op) {
  TINYMOE_GRID_STRIDE_LOOP(i, count) {
    int64_t rest = i, offset_a = 0, offset_b = 0;
    for (int d = index.ndim - 1; d >= 0; --d) {
      int64_t coordinate = rest % index.shape[d];
      rest /= index.shape[d];
      offset_a += coordinate * index.stride_a[d];
      offset_b += coordinate * index.stride_b[d];
    }
    out[i] = op(a[offset_a], b[offset_b]);
  }
}

// Strides of `shape` read through the broadcast shape `out`.
void fill_strides(const Shape& shape, const Shape& out, int64_t* strides) {
  size_t lead = out.size() - shape.size();
  int64_t stride = 1;
  for (size_t d = out.size(); d-- > 0;) {
    if (d < lead) {
      strides[d] = 0;
      continue;
    }
    int64_t extent = shape[d - lead];
    strides[d] = extent == 1 ? 0 : stride;
    stride *= extent;
  }
}

BroadcastIndex broadcast_index(const Shape& a, const Shape& b, const Shape& out, const char* op) {
  TINYMOE_CHECK(out.size() <= kMaxDims, op, "at most ", kMaxDims, " dimensions on cuda, got ", shape_str(out));
  BroadcastIndex index{};
  index.ndim = static_cast<int>(out.size());
  for (size_t d = 0; d < out.size(); ++d) index.shape[d] = out[d];
  fill_strides(a, out, index.stride_a);
  fill_strides(b, out, index.stride_b);
  return index;
}

template <typename T, typename Op>
void launch(const Tensor& a, const Tensor& b, Tensor& out, Op op, const char* name) {
  int64_t count = out.numel();
  if (count == 0) return;
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    binary_same_shape_kernel<<<grid_for(count), kBlockThreads>>>(pa, pb, po, count, op);
  } else {
    BroadcastIndex index = broadcast_index(a.shape(), b.shape(), out.shape(), name);
    binary_broadcast_kernel<<<grid_for(count), kBlockThreads>>>(pa, pb, po, count, index, op);
  }
  TINYMOE_CUDA_CHECK_LAUNCH();
}

template <typename Op>
void launch_typed(const Tensor& a, const Tensor& b, Tensor& out, Op op, const char* name) {
  dispatch_all(out.dtype(), [&](auto tag) { launch<typename decltype(tag)::type>(a, b, out, op, name); });
}

}  // namespace

const char* binary_name(BinaryOp op) {
  static const char* const names[] = {"add", "sub", "mul", "div"};
  return names[static_cast<int>(op)];
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_cuda_tensor(a, name, "a");
  check_cuda_tensor(b, name, "b");
  check_same_device(a, b, name);
  TINYMOE_CHECK(a.dtype() == b.dtype(), name, "expected operands of one dtype, got ", dtype_name(a.dtype()),
                " and ", dtype_name(b.dtype()));
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), name), a.dtype(), a.device());
  DeviceGuard guard(a.device());
  switch (op) {
    case BinaryOp::add: launch_typed(a, b, out, AddOp(), name); break;
    case BinaryOp::sub: launch_typed(a, b, out, SubOp(), name); break;
    case BinaryOp::mul: launch_typed(a, b, out, MulOp(), name); break;
    case BinaryOp::div: launch_typed(a, b, out, DivOp(), name); break;
  }
  return out;
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  check_cuda_tensor(x, "broadcast_to", "x");
  TINYMOE_CHECK(broadcast_shapes(x.shape(), shape, "broadcast_to") == shape, "broadcast_to", "cannot broadcast ",
                shape_str(x.shape()), " to ", shape_str(shape));
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  DeviceGuard guard(x.device());
  launch_typed(x, x, out, FirstOp(), "broadcast_to");
  return out;
}

}  // namespace cuda
}  // namespace tinymoe
