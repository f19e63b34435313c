#include "attention_cpu.h"

#include <cmath>
#include <limits>
#include <vector>

namespace radial::kernels {

std::tuple<at::Tensor, at::Tensor> AttentionLseCpu(const at::Tensor& q, const at::Tensor& k,
                                                   const at::Tensor& v, const TilePlan& plan,
                                                   int64_t block) {
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  auto lse = at::full({batch, heads, tokens}, -std::numeric_limits<float>::infinity(),
                      q.options().dtype(at::kFloat));
  // One contiguous [batch, heads, tokens, head_dim] copy of each operand: matmuls on strided views
  // of the [batch, tokens, heads, head_dim] layout fall off the BLAS path and run ~10x slower.
  const auto qh = q.permute({0, 2, 1, 3}).contiguous();
  const auto kh = k.permute({0, 2, 1, 3}).contiguous();
  const auto vh = v.permute({0, 2, 1, 3}).contiguous();
  auto out_h = at::zeros({batch, heads, tokens, head_dim}, q.options());
  const BlockMask& mask = plan.mask;
  for (int64_t row = 0; row < mask.tiles; ++row) {
    // Kept key tiles as maximal runs of consecutive tiles -> token ranges [begin, end).
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (int64_t col = 0; col < mask.tiles; ++col) {
      if (!mask.at(row, col)) continue;
      const int64_t begin = col * block, end = std::min(tokens, (col + 1) * block);
      if (!ranges.empty() && ranges.back().second == begin) {
        ranges.back().second = end;
      } else {
        ranges.emplace_back(begin, end);
      }
    }
    // Not reached for radial or dense plans (every row keeps a tile, docs/radial-attention.md); a
    // row without tiles attends nothing: out stays 0, lse -inf.
    if (ranges.empty()) continue;
    at::Tensor keys, values;
    if (ranges.size() == 1) {
      keys = kh.narrow(2, ranges[0].first, ranges[0].second - ranges[0].first);
      values = vh.narrow(2, ranges[0].first, ranges[0].second - ranges[0].first);
    } else {
      std::vector<int64_t> index;
      for (const auto& [begin, end] : ranges) {
        for (int64_t t = begin; t < end; ++t) index.push_back(t);
      }
      const auto index_tensor = at::tensor(index, at::kLong);
      keys = kh.index_select(2, index_tensor);
      values = vh.index_select(2, index_tensor);
    }
    const int64_t row_begin = row * block, rows = std::min(tokens, row_begin + block) - row_begin;
    // Softmax in one exp pass: weights = exp(s - max), out = (weights @ v) / sum, lse = max + log(sum).
    auto scores = at::matmul(qh.narrow(2, row_begin, rows) * scale, keys.transpose(2, 3));
    const auto row_max = std::get<0>(scores.max(-1, /*keepdim=*/true));
    scores.sub_(row_max).exp_();
    const auto row_sum = scores.sum(-1, /*keepdim=*/true);
    out_h.narrow(2, row_begin, rows).copy_(at::matmul(scores, values).div_(row_sum));
    lse.narrow(2, row_begin, rows).copy_((row_max + row_sum.log()).squeeze(-1));
  }
  return {out_h.permute({0, 2, 1, 3}).contiguous(), lse};
}

}  // namespace radial::kernels
