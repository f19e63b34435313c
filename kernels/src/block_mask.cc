#include "radial/kernels/block_mask.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

namespace radial::kernels {
namespace {

// Number of binary digits of x > 0 (bitlen(1) = 1, bitlen(4) = 3).
int BitLength(int64_t x) {
  int bits = 0;
  while (x > 0) {
    ++bits;
    x >>= 1;
  }
  return bits;
}

// Kept band half-width of a frame pair at distance d >= 2, or -1 when the pair is dropped
// (rule steps 2 and 3).
int64_t BandHalfWidth(const MaskGeometry& g, int64_t d) {
  // L0 = P / 2^bitlen(d) with P = 2^bitlen(s); it can fall below 1 for long videos with few tokens.
  const double l0 = std::ldexp(1.0, BitLength(g.tokens_per_frame) - BitLength(d));
  if (l0 < 128.0) {
    const auto period = static_cast<int64_t>(std::floor(128.0 / l0));
    if (d % period != 0) return -1;
  }
  const double l = l0 * g.decay;
  return l >= static_cast<double>(g.block) ? static_cast<int64_t>(std::floor(l)) : g.block;
}

// Step 5 for one tile: rows [k0, k1] and columns [l0, l1] of a pair (local token indices) whose on
// tokens are |k - l| <= w. The tile is lit iff more than 60% of the columns that have any on token
// have more than B/3 of them.
bool TileLit(int64_t k0, int64_t k1, int64_t l0, int64_t l1, int64_t w, int64_t block) {
  int64_t nonzero = 0;
  int64_t high = 0;
  for (int64_t l = l0; l <= l1; ++l) {
    const int64_t count = std::min(k1, l + w) - std::max(k0, l - w) + 1;
    if (count <= 0) continue;
    ++nonzero;
    if (3 * count > block) ++high;
  }
  return nonzero > 0 && 5 * high > 3 * nonzero;
}

// ORs the tiles lit by frame pair (i, j) with half-width w into the mask.
void LightPair(const MaskGeometry& g, int64_t i, int64_t j, int64_t w, BlockMask& mask) {
  const int64_t s = g.tokens_per_frame;
  const int64_t b = g.block;
  const int64_t row_begin = i * s, row_end = (i + 1) * s;  // global token rows of the pair
  const int64_t col_begin = j * s, col_end = (j + 1) * s;
  const bool full = w >= s;  // every token of the pair is on
  for (int64_t a = row_begin / b; a * b < row_end; ++a) {
    const int64_t k0 = std::max(a * b, row_begin) - row_begin;  // local rows of tile row a
    const int64_t k1 = std::min((a + 1) * b, row_end) - 1 - row_begin;
    if (full && 3 * (k1 - k0 + 1) <= b) continue;  // every column has k1-k0+1 on rows: never high
    // Columns with any on token: [k0 - w, k1 + w], clipped to the pair.
    const int64_t first_col = col_begin + std::max<int64_t>(0, k0 - w);
    const int64_t last_col = col_begin + std::min(s - 1, k1 + w);
    uint8_t* row = &mask.kept[a * mask.tiles];
    for (int64_t t = first_col / b; t <= last_col / b; ++t) {
      if (row[t]) continue;
      const int64_t l0 = std::max(t * b, col_begin) - col_begin;
      const int64_t l1 = std::min((t + 1) * b, col_end) - 1 - col_begin;
      if (full || TileLit(k0, k1, l0, l1, w, b)) row[t] = 1;
    }
  }
}

// The diagonal rule of docs/radial-attention.md: a tile row that no frame pair lit keeps tile
// (a, a), in full, so each of its queries attends at least its own key. Rows that some pair lit
// are left exactly as the pairs made them.
void KeepDiagonalOfEmptyRows(BlockMask& mask) {
  for (int64_t a = 0; a < mask.tiles; ++a) {
    uint8_t* row = &mask.kept[a * mask.tiles];
    if (std::find(row, row + mask.tiles, uint8_t{1}) == row + mask.tiles) row[a] = 1;
  }
}

}  // namespace

std::string ValidateMaskGeometry(const MaskGeometry& g) {
  std::ostringstream error;
  if (g.frames < 1) {
    error << "frames: got " << g.frames << ", expected >= 1";
  } else if (g.tokens_per_frame < 1) {
    error << "tokens_per_frame: got " << g.tokens_per_frame << ", expected >= 1";
  } else if (g.frames > kMaxTokens / g.tokens_per_frame) {
    error << "frames * tokens_per_frame: got " << g.frames << " * " << g.tokens_per_frame
          << ", expected at most " << kMaxTokens << " tokens";
  } else if (!std::isfinite(g.decay) || g.decay <= 0.0) {
    error << "decay: got " << g.decay << ", expected a finite value > 0";
  } else if (g.block != 64 && g.block != 128) {
    error << "block: got " << g.block << ", expected 64 or 128";
  }
  return error.str();
}

int64_t BlockMask::count() const { return std::accumulate(kept.begin(), kept.end(), int64_t{0}); }

bool BlockMask::EveryRowKept() const {
  for (int64_t row = 0; row < tiles; ++row) {
    const auto begin = kept.begin() + row * tiles;
    if (std::find(begin, begin + tiles, uint8_t{1}) == begin + tiles) return false;
  }
  return true;
}

double BlockMask::density() const {
  return tiles == 0 ? 0.0 : static_cast<double>(count()) / static_cast<double>(tiles * tiles);
}

BlockMask BuildRadialMask(const MaskGeometry& g) {
  BlockMask mask;
  mask.tiles = g.tiles();
  mask.kept.assign(static_cast<size_t>(mask.tiles * mask.tiles), 0);
  for (int64_t i = 0; i < g.frames; ++i) {
    for (int64_t j = 0; j < g.frames; ++j) {
      const int64_t d = i > j ? i - j : j - i;
      int64_t w;
      if (d <= 1 || (g.sink && j == 0)) {
        w = g.tokens_per_frame;
      } else {
        w = BandHalfWidth(g, d);
        if (w < 0) continue;
      }
      LightPair(g, i, j, w, mask);
    }
  }
  KeepDiagonalOfEmptyRows(mask);
  return mask;
}

BlockMask BuildDenseMask(const MaskGeometry& g) {
  BlockMask mask;
  mask.tiles = g.tiles();
  mask.kept.assign(static_cast<size_t>(mask.tiles * mask.tiles), 1);
  return mask;
}

TileCsr ToTileCsr(const BlockMask& mask) {
  TileCsr csr;
  const int64_t n = mask.tiles;
  csr.row_offsets.reserve(n + 1);
  csr.row_offsets.push_back(0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      if (mask.at(r, c)) csr.col_ids.push_back(static_cast<int32_t>(c));
    }
    csr.row_offsets.push_back(static_cast<int32_t>(csr.col_ids.size()));
  }
  csr.row_order.resize(n);
  std::iota(csr.row_order.begin(), csr.row_order.end(), 0);
  std::stable_sort(csr.row_order.begin(), csr.row_order.end(), [&](int32_t x, int32_t y) {
    return csr.row_offsets[x + 1] - csr.row_offsets[x] > csr.row_offsets[y + 1] - csr.row_offsets[y];
  });
  return csr;
}

}  // namespace radial::kernels
