// nn::Embedding: a lookup table of learned rows, torch.nn.Embedding's layout (weight
// [num_embeddings, embedding_dim]) on the ops/embedding.h op. Only the weight gets gradients.
#pragma once

#include <cstdint>

#include "nn/module.h"
#include "tinymoe/random.h"

namespace tinymoe {
namespace nn {

class Embedding : public Module {
 public:
  // Parameter "weight" drawn from N(0, 1) (torch's default) by `generator` (the global one when
  // null). Both sizes must be positive.
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator* generator = nullptr, DType dtype = DType::f32);

  // ids i64 of any shape, each in [0, num_embeddings) -> ids.shape + [embedding_dim].
  Tensor forward(const Tensor& ids) const;
  Tensor operator()(const Tensor& ids) const { return forward(ids); }

  const Tensor& weight() const { return weight_; }
  int64_t num_embeddings() const { return weight_.size(0); }
  int64_t embedding_dim() const { return weight_.size(1); }

 private:
  Tensor weight_;
};

}  // namespace nn
}  // namespace tinymoe
