#include "nn/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "ops/elementwise.h"
#include "ops/grouped_matmul.h"
#include "ops/shape.h"
#include "ops/softmax.h"

namespace tinymoe {
namespace nn {
namespace {

constexpr const char* kOp = "CausalSelfAttention";

int64_t checked_heads(int64_t hidden_size, int64_t num_heads) {
  TINYMOE_CHECK(hidden_size > 0 && num_heads > 0 && hidden_size % num_heads == 0, kOp,
                "expected positive sizes with num_heads dividing hidden_size, got hidden_size ", hidden_size,
                " and num_heads ", num_heads);
  return num_heads;
}

// [S, S] additive mask: 0 where key j <= query i, -inf after it, so softmax gives the future
// exactly zero weight.
Tensor causal_mask(int64_t length, DType dtype, Device device) {
  std::vector<double> mask(static_cast<size_t>(length * length), 0.0);
  for (int64_t i = 0; i < length; ++i)
    for (int64_t j = i + 1; j < length; ++j) mask[i * length + j] = -std::numeric_limits<double>::infinity();
  return from_vector(mask, {length, length}).to(dtype).to(device);
}

}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t hidden_size, int64_t num_heads, Generator* generator, DType dtype)
    : num_heads_(checked_heads(hidden_size, num_heads)),
      q_proj_(register_module("q_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, generator, dtype))),
      k_proj_(register_module("k_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, generator, dtype))),
      v_proj_(register_module("v_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, generator, dtype))),
      o_proj_(register_module("o_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, generator, dtype))) {}

const CausalSelfAttention::ShapeConstants& CausalSelfAttention::constants_for(int64_t batch, int64_t length,
                                                                              DType dtype, Device device) const {
  ShapeConstants& c = constants_;
  if (c.batch == batch && c.length == length && c.dtype == dtype && c.device == device) return c;
  const int64_t groups = batch * num_heads_;
  c = {batch, length, dtype, device, causal_mask(length, dtype, device),
       arange(0, groups * length + 1, length).to(device)};  // group g: rows g*S .. (g+1)*S
  return c;
}

Tensor CausalSelfAttention::forward(const Tensor& x) const {
  check_defined(x, kOp, "x");
  const int64_t d = hidden_size(), heads = num_heads_, dh = head_dim();
  TINYMOE_CHECK(x.dim() == 3 && x.size(0) > 0 && x.size(1) > 0 && x.size(2) == d, kOp,
                "expected x of shape [B, S, ", d, "] with B, S >= 1, got ", shape_str(x.shape()));
  TINYMOE_CHECK(x.dtype() == q_proj_->weight().dtype(), kOp, "expected x of the weights' dtype ",
                dtype_name(q_proj_->weight().dtype()), ", got ", dtype_name(x.dtype()));
  check_same_device(x, q_proj_->weight(), kOp);
  const int64_t batch = x.size(0), length = x.size(1), groups = batch * heads;

  // [B, S, d] -> [B, S, H, dh] -> [B, H, S, dh], seen as B*H matrices of S rows.
  auto split_heads = [&](const Tensor& projected) {
    return transpose(projected.reshape({batch, length, heads, dh}), 1, 2).reshape({groups, length, dh});
  };
  Tensor q = split_heads(mul(q_proj_->forward(x), 1.0 / std::sqrt(static_cast<double>(dh))));
  Tensor k = split_heads(k_proj_->forward(x));
  Tensor v = split_heads(v_proj_->forward(x));

  const ShapeConstants& constants = constants_for(batch, length, x.dtype(), x.device());
  const Tensor& offsets = constants.offsets;
  Tensor scores = grouped_matmul(q.reshape({groups * length, dh}), k, offsets, /*transpose_weight=*/true);
  scores = add(scores.reshape({groups, length, length}), constants.mask);
  Tensor probs = softmax(scores, -1);
  Tensor context = grouped_matmul(probs.reshape({groups * length, length}), v, offsets);  // [B*H*S, dh]
  context = transpose(context.reshape({batch, heads, length, dh}), 1, 2).reshape({batch, length, d});
  return o_proj_->forward(context);
}

}  // namespace nn
}  // namespace tinymoe
