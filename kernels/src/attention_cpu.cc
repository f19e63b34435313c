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
  auto out = at::zeros({batch, tokens, heads, head_dim}, q.options());
  auto lse = at::full({batch, heads, tokens}, -std::numeric_limits<float>::infinity(),
                      q.options().dtype(at::kFloat));
  // [batch, heads, tokens, head_dim] views; no copies.
  const auto qh = q.permute({0, 2, 1, 3});
  const auto kh = k.permute({0, 2, 1, 3});
  const auto vh = v.permute({0, 2, 1, 3});
  auto out_h = out.permute({0, 2, 1, 3});
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
    if (ranges.empty()) continue;  // the row attends nothing: out stays 0, lse -inf
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
    const auto scores = at::matmul(qh.narrow(2, row_begin, rows), keys.transpose(2, 3)) * scale;
    const auto row_lse = at::logsumexp(scores, -1, /*keepdim=*/true);
    out_h.narrow(2, row_begin, rows).copy_(at::matmul(at::exp(scores - row_lse), values));
    lse.narrow(2, row_begin, rows).copy_(row_lse.squeeze(-1));
  }
  return {out, lse};
}

}  // namespace radial::kernels
