#include "nn/embedding.h"

#include "ops/embedding.h"

namespace tinymoe {
namespace nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator* generator, DType dtype) {
  TINYMOE_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding", "expected positive sizes, got num_embeddings ",
                num_embeddings, " and embedding_dim ", embedding_dim);
  TINYMOE_CHECK(is_floating(dtype), "Embedding", "expected a floating dtype (f32 or f64), got ", dtype_name(dtype));
  weight_ = register_parameter("weight", randn({num_embeddings, embedding_dim}, dtype, generator));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

}  // namespace nn
}  // namespace tinymoe
