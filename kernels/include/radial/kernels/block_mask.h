// The radial block mask: which B x B tiles of the n x n attention score matrix are computed.
// Pure C++ (no LibTorch) so the rule can be unit-tested and reused by any host code.
// The rule is docs/radial-attention.md, applied to the real frame rectangles on the global tile
// grid, so any token count works (the last tile row/column may be ragged).
#ifndef RADIAL_KERNELS_BLOCK_MASK_H_
#define RADIAL_KERNELS_BLOCK_MASK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace radial::kernels {

// Geometry of one video token sequence plus the mask knobs. Tokens are frame-major.
struct MaskGeometry {
  int64_t frames = 0;            // latent frames f, >= 1
  int64_t tokens_per_frame = 0;  // tokens per frame s, >= 1
  double decay = 1.0;            // band-width multiplier for d >= 2, finite and > 0
  bool sink = true;              // every query frame sees all of frame 0
  int64_t block = 128;           // tile size B, 64 or 128

  int64_t tokens() const { return frames * tokens_per_frame; }
  int64_t tiles() const { return (tokens() + block - 1) / block; }
};

// Largest supported sequence, in tokens: keeps tile ids and CSR offsets within int32 and the
// host-side mask (tiles^2 bytes) within a few hundred MB.
inline constexpr int64_t kMaxTokens = int64_t{1} << 21;

// Returns "" when the geometry is valid, else a message naming the field, the value got and the
// allowed range ("frames: got 0, expected >= 1").
std::string ValidateMaskGeometry(const MaskGeometry& geometry);

// Tile mask, row-major [tiles x tiles], 1 = computed. Requires a valid geometry.
struct BlockMask {
  int64_t tiles = 0;
  std::vector<uint8_t> kept;

  bool at(int64_t row, int64_t col) const { return kept[row * tiles + col] != 0; }
  int64_t count() const;
  double density() const;
  // Whether every query tile row keeps at least one key tile. Always true for BuildRadialMask and
  // BuildDenseMask; a mask built some other way may have rows whose queries attend nothing (the
  // kernels give those rows out = 0, lse = -inf).
  bool EveryRowKept() const;
};

// Builds the radial mask of docs/radial-attention.md: the frame-pair rule, then the diagonal rule
// (a tile row the pairs leave empty keeps its diagonal tile, so every row keeps at least one tile).
// Never fails for a valid geometry.
BlockMask BuildRadialMask(const MaskGeometry& geometry);

// Every tile kept: ordinary full attention through the same kernels.
BlockMask BuildDenseMask(const MaskGeometry& geometry);

// Compressed rows of the mask: query tile row r computes key tiles
// col_ids[row_offsets[r] .. row_offsets[r+1]) in increasing order. row_order lists tile rows by
// decreasing kept count (ties by index) so a kernel can schedule the longest rows first.
struct TileCsr {
  std::vector<int32_t> row_offsets;  // tiles + 1
  std::vector<int32_t> col_ids;      // kept tiles
  std::vector<int32_t> row_order;    // tiles, a permutation
};
TileCsr ToTileCsr(const BlockMask& mask);

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_BLOCK_MASK_H_
