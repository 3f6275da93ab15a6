#include "ops/moe_swiglu_experts.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/gemm.h"
#include "ops/grouped_matmul.h"
#include "ops/row_math.h"
#include "ops/swiglu_math.h"
#include "tinymoe/autograd.h"

namespace tinymoe {
namespace {

constexpr const char* kOp = "moe_swiglu_experts";

// The sizes of one call and its validated expert boundaries (a copy: a later change to the
// offsets tensor cannot change what backward computes).
struct Layout {
  int64_t tokens = 0, pairs = 0, experts = 0, d = 0, f = 0;
  std::vector<int64_t> offsets;

  int64_t max_rows() const {
    int64_t most = 0;
    for (int64_t e = 0; e < experts; ++e) most = std::max(most, offsets[e + 1] - offsets[e]);
    return most;
  }
};

void check_tensors(const Tensor& x, const Tensor& sorted_token, const Tensor& sorted_weight, const Tensor& w1,
                   const Tensor& w3, const Tensor& w2) {
  check_floating(x, kOp, "x");
  check_dim(x, 2, kOp, "x");
  check_dtype(sorted_token, DType::i64, kOp, "sorted_token");
  check_dim(sorted_token, 1, kOp, "sorted_token");
  check_dtype(sorted_weight, x.dtype(), kOp, "sorted_weight");
  for (const Tensor* w : {&w1, &w3, &w2}) check_dtype(*w, x.dtype(), kOp, "w1, w3 and w2");
  check_dim(w1, 3, kOp, "w1");
  check_dim(w2, 3, kOp, "w2");
  for (const Tensor* t : {&x, &sorted_token, &sorted_weight, &w1, &w3, &w2}) check_cpu(*t, kOp);
}

void check_shapes(const Tensor& x, const Tensor& sorted_token, const Tensor& sorted_weight, const Tensor& w1,
                  const Tensor& w3, const Tensor& w2) {
  const int64_t experts = w1.size(0), d = x.size(1), f = w1.size(2), pairs = sorted_token.size(0);
  TINYMOE_CHECK(w1.size(1) == d, kOp, "expected w1 of shape [E, ", d, ", f] for x ", shape_str(x.shape()), ", got ",
                shape_str(w1.shape()));
  TINYMOE_CHECK(w3.shape() == w1.shape(), kOp, "expected w3 of w1's shape ", shape_str(w1.shape()), ", got ",
                shape_str(w3.shape()));
  TINYMOE_CHECK(w2.shape() == Shape({experts, f, d}), kOp, "expected w2 of shape ", shape_str({experts, f, d}),
                " ([E, f, d]), got ", shape_str(w2.shape()));
  TINYMOE_CHECK(sorted_weight.numel() == pairs &&
                    (sorted_weight.dim() == 1 || (sorted_weight.dim() == 2 && sorted_weight.size(1) == 1)),
                kOp, "expected sorted_weight of shape [", pairs, "] or [", pairs, ", 1], got ",
                shape_str(sorted_weight.shape()));
  const int64_t* tokens = sorted_token.data<int64_t>();
  for (int64_t i = 0; i < pairs; ++i)
    TINYMOE_CHECK(tokens[i] >= 0 && tokens[i] < x.size(0), kOp, "sorted_token[", i, "] = ", tokens[i],
                  " out of range for ", x.size(0), " tokens");
}

Layout checked_layout(const Tensor& x, const Tensor& sorted_token, const Tensor& sorted_weight, const Tensor& offsets,
                      const Tensor& w1, const Tensor& w3, const Tensor& w2) {
  check_tensors(x, sorted_token, sorted_weight, w1, w3, w2);
  check_shapes(x, sorted_token, sorted_weight, w1, w3, w2);
  Layout layout;
  layout.tokens = x.size(0);
  layout.pairs = sorted_token.size(0);
  layout.experts = w1.size(0);
  layout.d = x.size(1);
  layout.f = w1.size(2);
  layout.offsets = checked_group_offsets(offsets, Device::cpu(), layout.experts, layout.pairs, kOp);
  return layout;
}

// out row r = source row rows[r], r < count (rows of `width` values).
template <typename T>
void gather_rows(const T* source, const int64_t* rows, int64_t count, int64_t width, T* out) {
  for (int64_t r = 0; r < count; ++r) {
    row_math::prefetch_row(source, rows, r + row_math::kRowsAhead, count, width, false);
    std::memcpy(out + r * width, source + rows[r] * width, width * sizeof(T));
  }
}

// target row rows[r] += scale[r] * source row r (scale may be null: 1), r < count, in order.
template <typename T>
void scatter_add_rows(const T* source, const int64_t* rows, const T* scale, int64_t count, int64_t width, T* target) {
  for (int64_t r = 0; r < count; ++r) {
    row_math::prefetch_row(target, rows, r + row_math::kRowsAhead, count, width, true);
    row_math::add_scaled(target + rows[r] * width, source + r * width, scale ? scale[r] : T(1), width);
  }
}

// Rows of `width` values scaled in place: row r *= scale[r].
template <typename T>
void scale_rows(T* rows, const T* scale, int64_t count, int64_t width) {
  for (int64_t r = 0; r < count; ++r) row_math::assign_scaled(rows + r * width, rows + r * width, scale[r], width);
}

// One call's per-expert scratch rows, carved from one tensor: large buffers come from the
// caching allocator (tinymoe/cpu_allocator.h), so a training step neither zeroes them nor
// faults their pages in again (a std::vector would do both on every call).
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t elements) : buffer_(Tensor::empty({elements}, dtype_of<T>::value)), next_(buffer_.data<T>()) {}
  T* take(int64_t elements) {
    T* taken = next_;
    next_ += elements;
    return taken;
  }

 private:
  Tensor buffer_;
  T* next_;
};

// Raw views of the inputs of one call, typed.
template <typename T>
struct Operands {
  const T *x, *weight, *w1, *w3, *w2;
  const int64_t* token;

  Operands(const Tensor& x_, const Tensor& token_, const Tensor& weight_, const Tensor& w1_, const Tensor& w3_,
           const Tensor& w2_)
      : x(x_.data<T>()), weight(weight_.data<T>()), w1(w1_.data<T>()), w3(w3_.data<T>()), w2(w2_.data<T>()),
        token(token_.data<int64_t>()) {}
};

// ---- forward ----

// Where the forward keeps the pre-activations [rows, 2f] (gate | up per row) and activations
// [rows, f]: the saved tensors (all P rows, for backward), or one expert's scratch rows.
template <typename T>
struct Activations {
  T* hidden;
  T* act;
  bool per_pair;  // row of pair i is i (saved) rather than i - first (scratch)
};

template <typename T>
void forward_expert(const Layout& layout, const Operands<T>& in, int64_t e, int64_t first, int64_t count,
                    Activations<T> store, T* x_rows, T* y_rows, T* y) {
  const int64_t d = layout.d, f = layout.f;
  const int64_t row0 = store.per_pair ? first : 0;
  T* hidden = store.hidden + row0 * 2 * f;
  T* act = store.act + row0 * f;
  gather_rows(in.x, in.token + first, count, d, x_rows);
  gemm<T>(false, false, count, f, d, T(1), x_rows, d, in.w1 + e * d * f, f, T(0), hidden, 2 * f);
  gemm<T>(false, false, count, f, d, T(1), x_rows, d, in.w3 + e * d * f, f, T(0), hidden + f, 2 * f);
  for (int64_t r = 0; r < count; ++r) swiglu_forward_span(hidden + r * 2 * f, hidden + r * 2 * f + f, act + r * f, f);
  gemm<T>(false, false, count, d, f, T(1), act, f, in.w2 + e * f * d, d, T(0), y_rows, d);
  scatter_add_rows(y_rows, in.token + first, in.weight + first, count, d, y);
}

template <typename T>
void run_forward(const Layout& layout, const Operands<T>& in, Activations<T> store, T* y) {
  const int64_t rows = layout.max_rows(), d = layout.d, f = layout.f;
  Scratch<T> scratch(rows * (2 * d + (store.per_pair ? 0 : 3 * f)));
  T* x_rows = scratch.take(rows * d);
  T* y_rows = scratch.take(rows * d);
  if (!store.per_pair) {
    store.hidden = scratch.take(rows * 2 * f);
    store.act = scratch.take(rows * f);
  }
  for (int64_t e = 0; e < layout.experts; ++e) {
    const int64_t first = layout.offsets[e], count = layout.offsets[e + 1] - first;
    if (count > 0) forward_expert(layout, in, e, first, count, store, x_rows, y_rows, y);
  }
}

// ---- backward ----

struct Wanted {
  bool x, weight, w1, w3, w2;
  bool hidden() const { return x || w1 || w3; }  // anything upstream of the activation
};

// The gradients being built, typed (null where not wanted), and per-expert scratch.
template <typename T>
struct Gradients {
  T *x, *weight, *w1, *w3, *w2;
  T *g_rows, *g_w2, *d_hidden, *x_rows, *dx_rows;  // scratch, max_rows rows each
};

template <typename T>
void zero_expert_weight_grads(const Layout& layout, int64_t e, Gradients<T>& grads) {
  const int64_t size = layout.d * layout.f;
  for (T* w : {grads.w1, grads.w3, grads.w2})
    if (w) std::fill(w + e * size, w + (e + 1) * size, T(0));
}

// d w1[e], d w3[e] and the rows' d x from d_hidden [count, 2f] (gate | up per row).
template <typename T>
void backward_input_projections(const Layout& layout, const Operands<T>& in, int64_t e, int64_t first, int64_t count,
                                Gradients<T>& grads) {
  const int64_t d = layout.d, f = layout.f;
  const T* d_gate = grads.d_hidden;
  const T* d_up = d_gate + f;
  if (grads.w1 || grads.w3) {
    gather_rows(in.x, in.token + first, count, d, grads.x_rows);
    if (grads.w1) gemm<T>(true, false, d, f, count, T(1), grads.x_rows, d, d_gate, 2 * f, T(0), grads.w1 + e * d * f, f);
    if (grads.w3) gemm<T>(true, false, d, f, count, T(1), grads.x_rows, d, d_up, 2 * f, T(0), grads.w3 + e * d * f, f);
  }
  if (grads.x) {
    T* dx_rows = grads.dx_rows;
    gemm<T>(false, true, count, d, f, T(1), d_gate, 2 * f, in.w1 + e * d * f, f, T(0), dx_rows, d);
    gemm<T>(false, true, count, d, f, T(1), d_up, 2 * f, in.w3 + e * d * f, f, T(1), dx_rows, d);
    scatter_add_rows<T>(dx_rows, in.token + first, nullptr, count, d, grads.x);
  }
}

template <typename T>
void backward_expert(const Layout& layout, const Operands<T>& in, const T* g, const T* hidden, const T* act, int64_t e,
                     int64_t first, int64_t count, const Wanted& wanted, Gradients<T>& grads) {
  const int64_t d = layout.d, f = layout.f;
  const T* weight = in.weight + first;
  T* g_rows = grads.g_rows;
  T* g_w2 = grads.g_w2;  // G = g_rows w2[e]^T, then w * G = d act
  act += first * f;
  hidden += first * 2 * f;
  gather_rows(g, in.token + first, count, d, g_rows);
  gemm<T>(false, true, count, f, d, T(1), g_rows, d, in.w2 + e * f * d, d, T(0), g_w2, f);
  if (grads.weight)
    for (int64_t r = 0; r < count; ++r) grads.weight[first + r] = row_math::dot(act + r * f, g_w2 + r * f, f);
  if (grads.w2) {
    scale_rows(g_rows, weight, count, d);
    gemm<T>(true, false, f, d, count, T(1), act, f, g_rows, d, T(0), grads.w2 + e * f * d, d);
  }
  if (!wanted.hidden()) return;
  T* d_hidden = grads.d_hidden;
  scale_rows(g_w2, weight, count, f);
  for (int64_t r = 0; r < count; ++r) {
    const T* d_act = g_w2 + r * f;
    const T* gate = hidden + r * 2 * f;
    swiglu_backward_span(d_act, gate, gate + f, d_hidden + r * 2 * f, d_hidden + r * 2 * f + f, f);
  }
  backward_input_projections(layout, in, e, first, count, grads);
}

template <typename T>
void run_backward(const Layout& layout, const Operands<T>& in, const T* g, const T* hidden, const T* act,
                  const Wanted& wanted, Gradients<T>& grads) {
  const int64_t rows = layout.max_rows(), d = layout.d, f = layout.f;
  Scratch<T> scratch(rows * (3 * d + 3 * f));
  grads.g_rows = scratch.take(rows * d);
  grads.g_w2 = scratch.take(rows * f);
  grads.d_hidden = scratch.take(rows * 2 * f);
  grads.x_rows = scratch.take(rows * d);
  grads.dx_rows = scratch.take(rows * d);
  for (int64_t e = 0; e < layout.experts; ++e) {
    const int64_t first = layout.offsets[e], count = layout.offsets[e + 1] - first;
    if (count == 0) zero_expert_weight_grads(layout, e, grads);
    else backward_expert(layout, in, g, hidden, act, e, first, count, wanted, grads);
  }
}

// What backward needs: the inputs (detached) and the forward's pre-activations and activations.
struct Saved {
  Tensor x, token, weight, w1, w3, w2, hidden, act;
};

TensorList backward(const Layout& layout, const Saved& saved, const Wanted& wanted, const Tensor& g) {
  const DType dtype = g.dtype();
  auto make = [&](bool want, const Shape& shape, bool zeroed) {
    if (!want) return Tensor();
    return zeroed ? zeros(shape, dtype) : Tensor::empty(shape, dtype);
  };
  Tensor dx = make(wanted.x, saved.x.shape(), true);  // rows are accumulated into
  Tensor d_weight = make(wanted.weight, saved.weight.shape(), false);
  Tensor dw1 = make(wanted.w1, saved.w1.shape(), false), dw3 = make(wanted.w3, saved.w3.shape(), false);
  Tensor dw2 = make(wanted.w2, saved.w2.shape(), false);
  dispatch_floating(dtype, kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto data = [](Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
    Gradients<T> grads{data(dx), data(d_weight), data(dw1), data(dw3), data(dw2), nullptr, nullptr, nullptr, nullptr, nullptr};
    Operands<T> in(saved.x, saved.token, saved.weight, saved.w1, saved.w3, saved.w2);
    run_backward(layout, in, g.data<T>(), saved.hidden.data<T>(), saved.act.data<T>(), wanted, grads);
  });
  return {dx, Tensor(), d_weight, Tensor(), dw1, dw3, dw2};
}

}  // namespace

Tensor moe_swiglu_experts(const Tensor& x, const Tensor& sorted_token, const Tensor& sorted_weight,
                          const Tensor& offsets, const Tensor& w1, const Tensor& w3, const Tensor& w2) {
  Layout layout = checked_layout(x, sorted_token, sorted_weight, offsets, w1, w3, w2);
  const bool recording = needs_record({&x, &sorted_weight, &w1, &w3, &w2});
  Tensor y = zeros({layout.tokens, layout.d}, x.dtype());
  Tensor hidden = recording ? Tensor::empty({layout.pairs, 2 * layout.f}, x.dtype()) : Tensor();
  Tensor act = recording ? Tensor::empty({layout.pairs, layout.f}, x.dtype()) : Tensor();
  dispatch_floating(x.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Activations<T> store{recording ? hidden.data<T>() : nullptr, recording ? act.data<T>() : nullptr, recording};
    run_forward(layout, Operands<T>(x, sorted_token, sorted_weight, w1, w3, w2), store, y.data<T>());
  });
  if (recording) {
    Wanted wanted{x.requires_grad(), sorted_weight.requires_grad(), w1.requires_grad(), w3.requires_grad(),
                  w2.requires_grad()};
    Saved saved{x.detach(), sorted_token.detach(), sorted_weight.detach(), w1.detach(), w3.detach(), w2.detach(),
                hidden, act};
    record(kOp, {x, sorted_token, sorted_weight, offsets, w1, w3, w2}, {y},
           [layout = std::move(layout), saved, wanted](const TensorList& grads) -> TensorList {
             return backward(layout, saved, wanted, grads[0]);
           });
  }
  return y;
}

}  // namespace tinymoe
