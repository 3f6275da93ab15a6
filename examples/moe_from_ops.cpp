// A sparse MoE layer written directly with tinymoe's ops, the way nn::SparseMoEBlock does it
// (Megatron-style dropless dispatch, docs/design.md, "The sparse MoE block"):
//   route (softmax, top-k, renormalise) -> sort pairs by expert -> index_select tokens ->
//   grouped SwiGLU GEMMs -> weight -> scatter_add back to tokens.
// It runs forward and backward in f32, then gradient-checks the whole layer in f64.
#include <cmath>
#include <cstdio>
#include <string>

#include "tinymoe/tinymoe.h"

using namespace tinymoe;

struct MoeWeights {
  Tensor gate;  // [E, d]   router, HF layout (logits = x gate^T)
  Tensor w1;    // [E, d, f] SwiGLU gate projection
  Tensor w3;    // [E, d, f] SwiGLU up projection
  Tensor w2;    // [E, f, d] down projection
};

MoeWeights make_weights(int64_t experts, int64_t d, int64_t f, DType dtype, Generator& generator) {
  auto init = [&](const Shape& shape, int64_t fan_in) {
    return mul(randn(shape, dtype, &generator), 1.0 / std::sqrt(static_cast<double>(fan_in)));
  };
  return {init({experts, d}, d), init({experts, d, f}, d), init({experts, d, f}, d), init({experts, f, d}, f)};
}

// One token-choice MoE layer; returns y [T, d]. tokens_per_expert (if given) receives the load.
Tensor moe_layer(const Tensor& x, const MoeWeights& w, int64_t k, std::vector<int64_t>* tokens_per_expert = nullptr) {
  const int64_t tokens = x.size(0), experts = w.gate.size(0);
  // 1-2. Mixtral routing: p = softmax(x W_g^T), top-k of p, renormalise the k weights.
  Tensor probs = softmax(linear(x, w.gate), -1);
  TopK top = topk(probs, k, -1);
  Tensor weights = div(top.values, sum(top.values, -1, true));
  // 3. Permute: stable sort of the T*k (token, slot) pairs by expert; count tokens per expert.
  Tensor expert_of_pair = top.indices.reshape({tokens * k});
  Tensor pair_order = argsort(expert_of_pair);
  std::vector<int64_t> order = pair_order.to_vector<int64_t>();
  std::vector<int64_t> token_ids(order.size());
  for (size_t i = 0; i < order.size(); ++i) token_ids[i] = order[i] / k;  // pair p belongs to token p / k
  Tensor token_of_pair = from_vector(token_ids, {tokens * k});
  Tensor counts = bincount(expert_of_pair, experts);
  Tensor offsets = concat({zeros({1}, DType::i64), cumsum(counts, 0)}, 0);
  if (tokens_per_expert) *tokens_per_expert = counts.to_vector<int64_t>();
  // 4. Gather each pair's token; 5. SwiGLU experts as grouped GEMMs.
  Tensor x_perm = index_select(x, token_of_pair);
  Tensor hidden = mul(silu(grouped_matmul(x_perm, w.w1, offsets)), grouped_matmul(x_perm, w.w3, offsets));
  Tensor y_perm = grouped_matmul(hidden, w.w2, offsets);
  // 6. Combine: weight each pair's output and add it back to its token.
  Tensor weight_of_pair = index_select(weights.reshape({tokens * k}), pair_order).reshape({tokens * k, 1});
  return scatter_add(zeros(x.shape(), x.dtype()), token_of_pair, mul(y_perm, weight_of_pair));
}

double norm(const Tensor& t) {
  double total = 0;
  for (double v : t.to(DType::f64).to_vector<double>()) total += v * v;
  return std::sqrt(total);
}

int main() {
  const int64_t tokens = 16, d = 8, f = 12, experts = 4, k = 2;
  Generator generator(2024);

  std::printf("tinymoe: a sparse MoE layer from ops (T=%ld tokens, d=%ld, f=%ld, E=%ld experts, top-%ld)\n\n",
              long(tokens), long(d), long(f), long(experts), long(k));
  MoeWeights w = make_weights(experts, d, f, DType::f32, generator);
  for (Tensor* p : {&w.gate, &w.w1, &w.w3, &w.w2}) p->requires_grad_();
  Tensor x = randn({tokens, d}, DType::f32, &generator).requires_grad_();

  std::vector<int64_t> load;
  Tensor y = moe_layer(x, w, k, &load);
  Tensor loss = mean(mul(y, y));
  std::printf("forward (f32): output %s, loss = %.6f\n", shape_str(y.shape()).c_str(), loss.item());
  std::printf("tokens per expert:");
  for (int64_t n : load) std::printf(" %ld", long(n));
  std::printf("  (sum = T*k = %ld)\n", long(tokens * k));
  std::printf("tape: %zu records:", tape_ops().size());
  for (const std::string& op : tape_ops()) std::printf(" %s", op.c_str());
  std::printf("\n\n");

  loss.backward();
  std::printf("backward: |dL/dx| = %.6f  |dL/dgate| = %.6f  |dL/dw1| = %.6f  |dL/dw3| = %.6f  |dL/dw2| = %.6f\n\n",
              norm(x.grad()), norm(w.gate.grad()), norm(w.w1.grad()), norm(w.w3.grad()), norm(w.w2.grad()));

  // Gradient check in f64 of the whole layer with respect to x and every weight.
  const int64_t check_tokens = 6, check_d = 4, check_f = 5;
  Generator check_generator(7);
  MoeWeights c = make_weights(experts, check_d, check_f, DType::f64, check_generator);
  Tensor cx = randn({check_tokens, check_d}, DType::f64, &check_generator);
  for (Tensor* p : {&cx, &c.gate, &c.w1, &c.w3, &c.w2}) p->requires_grad_();
  auto layer = [k](const TensorList& in) { return moe_layer(in[0], {in[1], in[2], in[3], in[4]}, k); };
  GradcheckResult result = gradcheck(layer, {cx, c.gate, c.w1, c.w3, c.w2});
  std::printf("gradcheck (f64, eps=1e-6, atol=1e-5, rtol=1e-3) of the layer w.r.t. x, gate, w1, w3, w2:\n  %s\n",
              result.report.c_str());
  return result.passed() ? 0 : 1;
}
