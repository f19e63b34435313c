// Argument checking and the per-geometry tile plan shared by every backend of radial::attention.
// Includes LibTorch: only the op translation units include this header.
#ifndef RADIAL_KERNELS_ATTENTION_ARGS_H_
#define RADIAL_KERNELS_ATTENTION_ARGS_H_

#include <ATen/ATen.h>

#include <memory>

#include "radial/kernels/block_mask.h"

namespace radial::kernels {

// The scalar arguments of radial::attention, as the schema passes them.
struct AttentionOptions {
  int64_t frames = 0;
  int64_t tokens_per_frame = 0;
  double decay = 1.0;
  bool sink = true;
  int64_t block = 128;
  bool dense = false;

  MaskGeometry geometry() const { return {frames, tokens_per_frame, decay, sink, block}; }
};

// Backend-independent checks (rank, equal shapes, one device, unit stride on head_dim, tokens ==
// frames * tokens_per_frame, mask knobs). Throws c10::Error with "<field>: got X, expected Y".
void CheckAttentionArgs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const AttentionOptions& options);

// The tile mask of one geometry in the forms the backends use. Immutable once built.
struct TilePlan {
  BlockMask mask;        // host copy, [tiles x tiles]
  at::Tensor row_offsets;  // int32 [tiles + 1] on the plan's device
  at::Tensor col_ids;      // int32 [kept]
  at::Tensor row_order;    // int32 [tiles], longest rows first
};

// Returns the plan of (geometry, dense, device), building and caching it on first use. Building
// copies the CSR to the device, which is not allowed during CUDA graph capture: with
// may_build=false a plan not yet cached returns nullptr instead. Later uses do no host or device
// work. Thread-safe.
std::shared_ptr<const TilePlan> GetTilePlan(const AttentionOptions& options, const at::Device& device,
                                            bool may_build = true);

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_ATTENTION_ARGS_H_
