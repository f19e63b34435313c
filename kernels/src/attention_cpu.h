// The CPU reference of radial attention: exact (fp32 accumulation), computes only kept tiles.
#ifndef RADIAL_KERNELS_ATTENTION_CPU_H_
#define RADIAL_KERNELS_ATTENTION_CPU_H_

#include <ATen/ATen.h>

#include <tuple>

#include "attention_args.h"

namespace radial::kernels {

// q, k, v: fp32 CPU [batch, tokens, heads, head_dim], already checked by CheckAttentionArgs.
// Returns (out [batch, tokens, heads, head_dim] contiguous, lse [batch, heads, tokens] fp32).
std::tuple<at::Tensor, at::Tensor> AttentionLseCpu(const at::Tensor& q, const at::Tensor& k,
                                                   const at::Tensor& v, const TilePlan& plan,
                                                   int64_t block);

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_ATTENTION_CPU_H_
