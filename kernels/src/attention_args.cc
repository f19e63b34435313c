#include "attention_args.h"

#include <c10/util/Exception.h>

#include <map>
#include <mutex>
#include <tuple>

namespace radial::kernels {

void CheckAttentionArgs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const AttentionOptions& options) {
  TORCH_CHECK(q.dim() == 4, "q: got rank ", q.dim(),
              ", expected rank 4 [batch, tokens, heads, head_dim]");
  TORCH_CHECK(k.sizes() == q.sizes(), "k: got shape ", k.sizes(), ", expected q's shape ", q.sizes());
  TORCH_CHECK(v.sizes() == q.sizes(), "v: got shape ", v.sizes(), ", expected q's shape ", q.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "dtype: got q ", q.scalar_type(), ", k ", k.scalar_type(), ", v ", v.scalar_type(),
              ", expected one dtype for q, k and v");
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), "device: got q on ", q.device(),
              ", k on ", k.device(), ", v on ", v.device(), ", expected one device");
  TORCH_CHECK(q.size(0) >= 1 && q.size(2) >= 1 && q.size(3) >= 1, "q: got shape ", q.sizes(),
              ", expected batch, heads and head_dim >= 1");
  for (const auto& [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
    TORCH_CHECK(t->stride(3) == 1, name, ": got stride ", t->stride(3),
                " on head_dim, expected 1 (head_dim contiguous)");
  }
  const MaskGeometry geometry = options.geometry();
  const std::string error = ValidateMaskGeometry(geometry);
  TORCH_CHECK(error.empty(), error);
  TORCH_CHECK(q.size(1) == geometry.tokens(), "tokens: got ", q.size(1), ", expected frames * tokens_per_frame = ",
              options.frames, " * ", options.tokens_per_frame, " = ", geometry.tokens());
}

namespace {

using PlanKey = std::tuple<int64_t, int64_t, double, bool, int64_t, bool, int, int>;

std::shared_ptr<const TilePlan> BuildTilePlan(const AttentionOptions& options, const at::Device& device) {
  auto plan = std::make_shared<TilePlan>();
  const MaskGeometry geometry = options.geometry();
  plan->mask = options.dense ? BuildDenseMask(geometry) : BuildRadialMask(geometry);
  const TileCsr csr = ToTileCsr(plan->mask);
  auto to_device = [&](const std::vector<int32_t>& values) {
    auto host = at::empty({static_cast<int64_t>(values.size())}, at::kInt);
    std::copy(values.begin(), values.end(), host.data_ptr<int32_t>());
    return device.is_cpu() ? host : host.to(device);
  };
  plan->row_offsets = to_device(csr.row_offsets);
  plan->col_ids = to_device(csr.col_ids);
  plan->row_order = to_device(csr.row_order);
  return plan;
}

}  // namespace

std::shared_ptr<const TilePlan> GetTilePlan(const AttentionOptions& options, const at::Device& device,
                                            bool may_build) {
  // Dense plans ignore the radial knobs; normalise them so one dense plan serves every call.
  const bool dense = options.dense;
  const PlanKey key{options.frames, options.tokens_per_frame, dense ? 1.0 : options.decay,
                    dense ? true : options.sink, options.block, dense,
                    static_cast<int>(device.type()), device.has_index() ? device.index() : -1};
  static std::mutex mutex;
  static std::map<PlanKey, std::shared_ptr<const TilePlan>> plans;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = plans.find(key); it != plans.end()) return it->second;
  }
  if (!may_build) return nullptr;
  // Built outside the lock: a mask can take a noticeable fraction of a second. Two threads racing on
  // one new geometry both build it; the first insert wins and both get the same plan.
  auto plan = BuildTilePlan(options, device);
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, std::move(plan)).first->second;
}

}  // namespace radial::kernels
