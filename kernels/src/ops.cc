// Registers the radial operator library and its CPU and Meta implementations. The CUDA
// implementation registers itself from attention_cuda.cc when the library is built with CUDA.
#include <torch/library.h>

#include <cmath>

#include <stdexcept>

#include "attention_args.h"
#include "attention_cpu.h"
#include "radial/kernels/ops_library.h"

namespace radial::kernels {
namespace {

AttentionOptions MakeOptions(int64_t frames, int64_t tokens_per_frame, double decay, bool sink,
                             int64_t block, bool dense) {
  return {frames, tokens_per_frame, decay, sink, block, dense};
}

at::Tensor BlockMaskOp(int64_t frames, int64_t tokens_per_frame, double decay, bool sink, int64_t block) {
  const MaskGeometry geometry{frames, tokens_per_frame, decay, sink, block};
  const std::string error = ValidateMaskGeometry(geometry);
  TORCH_CHECK(error.empty(), error);
  const BlockMask mask = BuildRadialMask(geometry);
  auto out = at::empty({mask.tiles, mask.tiles}, at::kBool);
  std::copy(mask.kept.begin(), mask.kept.end(), reinterpret_cast<uint8_t*>(out.data_ptr<bool>()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> AttentionLseCpuOp(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, int64_t frames,
                                                     int64_t tokens_per_frame, double decay, bool sink,
                                                     int64_t block, bool dense) {
  const auto options = MakeOptions(frames, tokens_per_frame, decay, sink, block, dense);
  CheckAttentionArgs(q, k, v, options);
  TORCH_CHECK(q.scalar_type() == at::kFloat, "dtype: got ", q.scalar_type(),
              " on CPU, expected Float (the CPU reference is fp32; bf16/fp16 run on CUDA)");
  const auto plan = GetTilePlan(options, q.device());
  return AttentionLseCpu(q, k, v, *plan, block);
}

// Shapes only, for tracing and export.
std::tuple<at::Tensor, at::Tensor> AttentionLseMetaOp(const at::Tensor& q, const at::Tensor& k,
                                                      const at::Tensor& v, int64_t frames,
                                                      int64_t tokens_per_frame, double decay, bool sink,
                                                      int64_t block, bool dense) {
  CheckAttentionArgs(q, k, v, MakeOptions(frames, tokens_per_frame, decay, sink, block, dense));
  return {at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous)),
          at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat))};
}

// attention is attention_lse without the LSE, for every backend.
at::Tensor AttentionOp(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t frames,
                       int64_t tokens_per_frame, double decay, bool sink, int64_t block, bool dense) {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("radial::attention_lse", "")
                                 .typed<decltype(AttentionLseCpuOp)>();
  return std::get<0>(handle.call(q, k, v, frames, tokens_per_frame, decay, sink, block, dense));
}

}  // namespace

void EnsureOpsRegistered() {
  if (!c10::Dispatcher::singleton().findSchema({"radial::attention", ""}).has_value()) {
    throw std::runtime_error("radial ops: torch.ops.radial.attention is not registered");
  }
}

TORCH_LIBRARY(radial, m) {
  m.def("block_mask(int frames, int tokens_per_frame, float decay=1.0, bool sink=True, int block=128) -> Tensor",
        &BlockMaskOp);
  m.def("attention_lse(Tensor q, Tensor k, Tensor v, int frames, int tokens_per_frame, float decay=1.0, "
        "bool sink=True, int block=128, bool dense=False) -> (Tensor, Tensor)");
  m.def("attention(Tensor q, Tensor k, Tensor v, int frames, int tokens_per_frame, float decay=1.0, "
        "bool sink=True, int block=128, bool dense=False) -> Tensor");
  m.impl("attention", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(AttentionOp));
}

TORCH_LIBRARY_IMPL(radial, CPU, m) { m.impl("attention_lse", TORCH_FN(AttentionLseCpuOp)); }

TORCH_LIBRARY_IMPL(radial, Meta, m) { m.impl("attention_lse", TORCH_FN(AttentionLseMetaOp)); }

}  // namespace radial::kernels
