// Launch parameters shared by the host dispatcher (attention_cuda.cu) and every CUDA kernel variant.
// Plain data, no LibTorch types, so kernel translation units stay light.
#ifndef RADIAL_KERNELS_ATTENTION_PARAMS_H_
#define RADIAL_KERNELS_ATTENTION_PARAMS_H_

#include <cstdint>

namespace radial::kernels {

enum class ElementType { kBFloat16, kFloat16 };

// q, k, v are [batch, tokens, heads, head_dim] with unit stride on head_dim and any other strides
// (in elements). o is written [batch, tokens, heads, head_dim] with its own strides; lse is
// [batch, heads, tokens] contiguous fp32 (natural log). Query rows whose tile row keeps no tile
// get o = 0 and lse = -inf; the radial and dense masks have no such row (docs/radial-attention.md,
// the diagonal rule), so this is only for CSRs built otherwise.
struct AttentionParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;

  int64_t q_batch_stride = 0, q_token_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_token_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_token_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_token_stride = 0, o_head_stride = 0;

  int batch = 0;
  int heads = 0;
  int tokens = 0;
  int head_dim = 0;       // 64 or 128
  int block = 128;        // mask tile size B: 64 or 128
  int tiles = 0;          // ceil(tokens / block)
  float scale_log2 = 0;   // softmax scale * log2(e)

  // Device-resident CSR of the tile mask (see block_mask.h TileCsr), shared by all batch entries
  // and heads, owned by the plan cache.
  const int32_t* row_offsets = nullptr;
  const int32_t* col_ids = nullptr;
  const int32_t* row_order = nullptr;

  ElementType dtype = ElementType::kBFloat16;
};

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_ATTENTION_PARAMS_H_
