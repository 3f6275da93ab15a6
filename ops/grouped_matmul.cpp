#include "ops/grouped_matmul.h"

#include <algorithm>
#include <vector>

#include "ops/cuda_dispatch.h"
#include "ops/gemm.h"
#include "tinymoe/autograd.h"
#ifdef TINYMOE_WITH_CUDA
#include "cuda/gemm.h"
#include "cuda/runtime.h"
#endif

namespace tinymoe {
namespace {

constexpr const char* kOp = "grouped_matmul";

// The sizes of one grouped product: E experts, x [rows, in_features], w[e] mapping in_features
// to out_features, and the validated group boundaries (a copy, so a later change to the
// offsets tensor cannot change what backward computes).
struct Groups {
  int64_t experts = 0, rows = 0, in_features = 0, out_features = 0;
  bool transpose_weight = false;
  std::vector<int64_t> offsets;

  int64_t weight_stride() const { return in_features * out_features; }  // elements per w[e]
  // Row stride of w[e]: [in, out] normally, [out, in] with transpose_weight.
  int64_t weight_ld() const { return transpose_weight ? in_features : out_features; }

  // fn(e, first_row, row_count) for every expert, empty groups included.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (int64_t e = 0; e < experts; ++e) fn(e, offsets[e], offsets[e + 1] - offsets[e]);
  }
};

Groups checked_groups(const Tensor& x, const Tensor& w, const Tensor& offsets, bool transpose_weight) {
  check_floating(x, kOp, "x");
  check_floating(w, kOp, "w");
  check_dim(x, 2, kOp, "x");
  check_dim(w, 3, kOp, "w");
  check_same_device(x, w, kOp);
  check_has_kernel(x, kOp);
  TINYMOE_CHECK(x.dtype() == w.dtype(), kOp, "expected x and w of one dtype, got ", dtype_name(x.dtype()),
                " and ", dtype_name(w.dtype()));
  Groups groups;
  groups.experts = w.size(0);
  groups.rows = x.size(0);
  groups.in_features = x.size(1);
  groups.out_features = transpose_weight ? w.size(1) : w.size(2);
  groups.transpose_weight = transpose_weight;
  int64_t weight_in = transpose_weight ? w.size(2) : w.size(1);
  TINYMOE_CHECK(weight_in == groups.in_features, kOp, "x ", shape_str(x.shape()), " has ", groups.in_features,
                " features but w ", shape_str(w.shape()), (transpose_weight ? " ([E, n, k], transposed)" : " ([E, k, n])"),
                " expects ", weight_in);
  groups.offsets = checked_group_offsets(offsets, x.device(), groups.experts, groups.rows, kOp);
  return groups;
}

#ifdef TINYMOE_WITH_CUDA
template <typename T>
const T* device_data(const Tensor& x) { return static_cast<const T*>(x.raw_data()); }
template <typename T>
T* device_output(const Tensor& x) { return static_cast<T*>(x.raw_data()); }

// One cuBLAS grouped GEMM (cuda/gemm.h) on `device` with one problem per expert, empty groups
// included: problem(e, first_row, row_count) gives expert e's row-major product.
template <typename T, typename Problem>
void grouped_gemm_on_device(const Groups& groups, bool trans_a, bool trans_b, Device device, Problem problem) {
  std::vector<cuda::GemmProblem<T>> problems;
  groups.for_each([&](int64_t e, int64_t first, int64_t count) {
    cuda::GemmProblem<T> product = problem(e, first, count);
    // A row stride is 0 only for a matrix with no columns, which is never read (an empty inner
    // dimension writes zeros, an empty output nothing), but cuBLAS wants at least 1.
    product.lda = std::max<int64_t>(product.lda, 1);
    product.ldb = std::max<int64_t>(product.ldb, 1);
    product.ldc = std::max<int64_t>(product.ldc, 1);
    problems.push_back(product);
  });
  cuda::DeviceGuard guard(device);
  cuda::grouped_gemm<T>(trans_a, trans_b, problems, T(1), T(0));
}
#endif

// out_e [rows_e, width] = a_e [rows_e, depth] op(w[e]) for every expert, op(w[e]) = w[e] or,
// with transpose_w, w[e]^T. Both the forward (a = x) and the input gradient (a = dy, the weight
// transposed the other way) are this grouped GEMM.
Tensor grouped_gemm_with_weight(const Tensor& a, const Tensor& w, const Groups& groups, bool transpose_w,
                                int64_t depth, int64_t width) {
  Tensor out = Tensor::empty({groups.rows, width}, a.dtype(), a.device());
  dispatch_floating(a.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef TINYMOE_WITH_CUDA
    if (a.device().is_cuda()) {
      grouped_gemm_on_device<T>(groups, false, transpose_w, a.device(), [&](int64_t e, int64_t first, int64_t count) {
        return cuda::GemmProblem<T>{count, width, depth, device_data<T>(a) + first * depth, depth,
                                    device_data<T>(w) + e * groups.weight_stride(), groups.weight_ld(),
                                    device_output<T>(out) + first * width, width};
      });
      return;
    }
#endif
    groups.for_each([&](int64_t e, int64_t first, int64_t count) {
      gemm<T>(false, transpose_w, count, width, depth, T(1), a.data<T>() + first * depth, depth,
              w.data<T>() + e * groups.weight_stride(), groups.weight_ld(), T(0), out.data<T>() + first * width, width);
    });
  });
  return out;
}

// out_e [rows_e, n] = x_e [rows_e, k] w[e]  (w[e]^T with transpose_weight).
Tensor grouped_product(const Tensor& x, const Tensor& w, const Groups& groups) {
  return grouped_gemm_with_weight(x, w, groups, groups.transpose_weight, groups.in_features, groups.out_features);
}

// dx_e [rows_e, k] = dy_e [rows_e, n] w[e]^T  (w[e] with transpose_weight).
Tensor input_gradient(const Tensor& grad_out, const Tensor& w, const Groups& groups) {
  return grouped_gemm_with_weight(grad_out, w, groups, !groups.transpose_weight, groups.out_features,
                                  groups.in_features);
}

// dw[e] = x_e^T dy_e ([k, n]), or dy_e^T x_e ([n, k]) with transpose_weight. An empty group
// is a GEMM with an empty inner dimension, which gemm turns into zeros.
Tensor weight_gradient(const Tensor& x, const Tensor& grad_out, const Groups& groups) {
  const int64_t k = groups.in_features, n = groups.out_features;
  Shape shape = groups.transpose_weight ? Shape{groups.experts, n, k} : Shape{groups.experts, k, n};
  Tensor dw = Tensor::empty(shape, x.dtype(), x.device());
  dispatch_floating(x.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
#ifdef TINYMOE_WITH_CUDA
    if (x.device().is_cuda()) {
      grouped_gemm_on_device<T>(groups, true, false, x.device(), [&](int64_t e, int64_t first, int64_t count) {
        const T* x_e = device_data<T>(x) + first * k;
        const T* dy_e = device_data<T>(grad_out) + first * n;
        T* dw_e = device_output<T>(dw) + e * groups.weight_stride();
        return groups.transpose_weight ? cuda::GemmProblem<T>{n, k, count, dy_e, n, x_e, k, dw_e, k}
                                       : cuda::GemmProblem<T>{k, n, count, x_e, k, dy_e, n, dw_e, n};
      });
      return;
    }
#endif
    groups.for_each([&](int64_t e, int64_t first, int64_t count) {
      const T* x_e = x.data<T>() + first * k;
      const T* dy_e = grad_out.data<T>() + first * n;
      T* dw_e = dw.data<T>() + e * groups.weight_stride();
      if (groups.transpose_weight) gemm<T>(true, false, n, k, count, T(1), dy_e, n, x_e, k, T(0), dw_e, k);
      else gemm<T>(true, false, k, n, count, T(1), x_e, k, dy_e, n, T(0), dw_e, n);
    });
  });
  return dw;
}

}  // namespace

std::vector<int64_t> checked_group_offsets(const Tensor& offsets, Device device, int64_t groups, int64_t rows,
                                           const char* op) {
  check_dtype(offsets, DType::i64, op, "offsets");
  TINYMOE_CHECK(offsets.device() == device, op, "expected offsets on x's device ", device.str(), ", got ",
                offsets.device().str(), " (mixed devices are an error, not a copy)");
  TINYMOE_CHECK(offsets.dim() == 1 && offsets.size(0) == groups + 1, op, "expected offsets of shape [", groups + 1,
                "] (E + 1 for E = ", groups, " experts), got ", shape_str(offsets.shape()));
  // The group sizes drive the GEMM calls from the host: cuda offsets are copied here, once, and the
  // copy serves the forward and the backward.
  std::vector<int64_t> values = offsets.to_vector<int64_t>();
  TINYMOE_CHECK(values[0] == 0, op, "expected offsets[0] == 0, got offsets[0] = ", values[0]);
  for (int64_t e = 0; e < groups; ++e)
    TINYMOE_CHECK(values[e] <= values[e + 1], op, "expected non-decreasing offsets, got offsets[", e, "] = ",
                  values[e], " > offsets[", e + 1, "] = ", values[e + 1]);
  TINYMOE_CHECK(values[groups] == rows, op, "expected offsets[", groups, "] == ", rows, " (the rows of x), got ",
                values[groups]);
  return values;
}

Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets, bool transpose_weight) {
  Groups groups = checked_groups(x, w, offsets, transpose_weight);
  Tensor out = grouped_product(x, w, groups);
  if (needs_record({&x, &w})) {
    bool grad_x = x.requires_grad(), grad_w = w.requires_grad();
    Tensor saved_x = grad_w ? x.detach() : Tensor();
    Tensor saved_w = grad_x ? w.detach() : Tensor();
    record(kOp, {x, w}, {out}, [saved_x, saved_w, groups, grad_x, grad_w](const TensorList& grads) -> TensorList {
      return {grad_x ? input_gradient(grads[0], saved_w, groups) : Tensor(),
              grad_w ? weight_gradient(saved_x, grads[0], groups) : Tensor()};
    });
  }
  return out;
}

}  // namespace tinymoe
