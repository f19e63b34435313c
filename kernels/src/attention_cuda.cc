// CUDA implementation of radial::attention_lse: checks, picks a kernel variant, launches on the
// current stream. Nothing here synchronises or allocates beyond the outputs (from PyTorch's caching
// allocator), so the op can be captured in a CUDA graph once its plan exists.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <cstdlib>
#include <string_view>

#include "attention_args.h"
#include "attention_kernels.h"

namespace radial::kernels {
namespace {

// RADIAL_ATTENTION_KERNEL = auto (default) | sm80 | sm90: forces one variant, for tests and
// benchmarks. Read at each call; getenv is cheap next to a kernel launch.
std::string_view RequestedVariant() {
  const char* value = std::getenv("RADIAL_ATTENTION_KERNEL");
  return value == nullptr ? std::string_view("auto") : std::string_view(value);
}

AttentionParams MakeParams(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out,
                           at::Tensor& lse, const TilePlan& plan, int64_t block) {
  AttentionParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.o = out.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.q_batch_stride = q.stride(0), p.q_token_stride = q.stride(1), p.q_head_stride = q.stride(2);
  p.k_batch_stride = k.stride(0), p.k_token_stride = k.stride(1), p.k_head_stride = k.stride(2);
  p.v_batch_stride = v.stride(0), p.v_token_stride = v.stride(1), p.v_head_stride = v.stride(2);
  p.o_batch_stride = out.stride(0), p.o_token_stride = out.stride(1), p.o_head_stride = out.stride(2);
  p.batch = static_cast<int>(q.size(0));
  p.tokens = static_cast<int>(q.size(1));
  p.heads = static_cast<int>(q.size(2));
  p.head_dim = static_cast<int>(q.size(3));
  p.block = static_cast<int>(block);
  p.tiles = static_cast<int>(plan.mask.tiles);
  p.scale_log2 = static_cast<float>(M_LOG2E / std::sqrt(static_cast<double>(q.size(3))));
  p.row_offsets = plan.row_offsets.data_ptr<int32_t>();
  p.col_ids = plan.col_ids.data_ptr<int32_t>();
  p.row_order = plan.row_order.data_ptr<int32_t>();
  p.dtype = q.scalar_type() == at::kBFloat16 ? ElementType::kBFloat16 : ElementType::kFloat16;
  return p;
}

std::tuple<at::Tensor, at::Tensor> AttentionLseCudaOp(const at::Tensor& q, const at::Tensor& k,
                                                      const at::Tensor& v, int64_t frames,
                                                      int64_t tokens_per_frame, double decay, bool sink,
                                                      int64_t block, bool dense) {
  const AttentionOptions options{frames, tokens_per_frame, decay, sink, block, dense};
  CheckAttentionArgs(q, k, v, options);
  TORCH_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf, "dtype: got ",
              q.scalar_type(), " on CUDA, expected BFloat16 or Half");
  TORCH_CHECK(q.size(3) == 64 || q.size(3) == 128, "head_dim: got ", q.size(3), ", expected 64 or 128 on CUDA");
  TORCH_CHECK(q.size(0) * q.size(2) <= (int64_t{1} << 24), "batch * heads: got ", q.size(0) * q.size(2),
              ", expected at most ", int64_t{1} << 24);
  for (const auto& [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
    TORCH_CHECK(t->stride(0) % 8 == 0 && t->stride(1) % 8 == 0 && t->stride(2) % 8 == 0 &&
                    reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0,
                name, ": got strides ", t->strides(),
                ", expected 16-byte aligned rows (strides multiples of 8 elements and an aligned base)");
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const auto stream = at::cuda::getCurrentCUDAStream();
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream.stream(), &capture));
  const auto plan = GetTilePlan(options, q.device(), /*may_build=*/capture == cudaStreamCaptureStatusNone);
  TORCH_CHECK(plan != nullptr, "radial attention: the tile plan of this geometry is built on its first call, ",
              "which cannot happen during CUDA graph capture; call the op once before capturing");
  auto out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
  const AttentionParams params = MakeParams(q, k, v, out, lse, *plan, block);

  const std::string_view variant = RequestedVariant();
  TORCH_CHECK(variant == "auto" || variant == "sm80" || variant == "sm90", "RADIAL_ATTENTION_KERNEL: got '",
              variant, "', expected auto, sm80 or sm90");
  const auto* props = at::cuda::getCurrentDeviceProperties();
  const bool sm90_ok = SupportsAttentionSm90(params, props->major, props->minor);
  TORCH_CHECK(variant != "sm90" || sm90_ok, "RADIAL_ATTENTION_KERNEL=sm90: the Hopper kernel is unavailable for ",
              "this problem on a device of compute capability ", props->major, ".", props->minor);
  TORCH_CHECK(SupportsAttentionSm80(params), "radial attention: no kernel for this problem");
  const bool use_sm90 = variant != "sm80" && sm90_ok;
  const std::string error = use_sm90 ? LaunchAttentionSm90(params, stream) : LaunchAttentionSm80(params, stream);
  TORCH_CHECK(error.empty(), "radial attention kernel launch failed: ", error);
  return {out, lse};
}

}  // namespace

TORCH_LIBRARY_IMPL(radial, CUDA, m) { m.impl("attention_lse", TORCH_FN(AttentionLseCudaOp)); }

}  // namespace radial::kernels
