// Tests for the radial tile mask (radial/kernels/block_mask.h) against the rule in
// docs/radial-attention.md: the published density table and toy rows, small cases worked by hand,
// and ragged geometries against a literal brute-force restatement of the rule written here (the
// frame-pair steps, then the diagonal rule for tile rows the pairs leave empty).
#include "radial/kernels/block_mask.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

// Readable parameter names in gtest output (found by argument-dependent lookup).
namespace radial::kernels {
void PrintTo(const MaskGeometry& g, std::ostream* os) {
  *os << "f=" << g.frames << " s=" << g.tokens_per_frame << " decay=" << g.decay
      << " sink=" << (g.sink ? "on" : "off") << " B=" << g.block;
}
}  // namespace radial::kernels

namespace {

using radial::kernels::BlockMask;
using radial::kernels::BuildDenseMask;
using radial::kernels::BuildRadialMask;
using radial::kernels::kMaxTokens;
using radial::kernels::MaskGeometry;
using radial::kernels::TileCsr;
using radial::kernels::ToTileCsr;
using radial::kernels::ValidateMaskGeometry;

MaskGeometry Geometry(int64_t frames, int64_t tokens_per_frame, double decay, bool sink,
                      int64_t block = 128) {
  MaskGeometry geometry;
  geometry.frames = frames;
  geometry.tokens_per_frame = tokens_per_frame;
  geometry.decay = decay;
  geometry.sink = sink;
  geometry.block = block;
  return geometry;
}

std::string Describe(const MaskGeometry& g) {
  return "f=" + std::to_string(g.frames) + " s=" + std::to_string(g.tokens_per_frame) +
         " decay=" + std::to_string(g.decay) + " sink=" + (g.sink ? "on" : "off") +
         " B=" + std::to_string(g.block);
}

int64_t CountKept(const BlockMask& mask) {
  return std::count_if(mask.kept.begin(), mask.kept.end(), [](uint8_t x) { return x != 0; });
}

// Kept tiles of tile row `row` within tile columns [col_begin, col_end).
int64_t CountRow(const BlockMask& mask, int64_t row, int64_t col_begin, int64_t col_end) {
  int64_t kept = 0;
  for (int64_t col = col_begin; col < col_end; ++col) kept += mask.at(row, col) ? 1 : 0;
  return kept;
}

// Compares the mask with a picture: one string per tile row, '#' kept, '.' dropped.
void ExpectMaskPicture(const BlockMask& mask, const std::vector<std::string>& picture) {
  ASSERT_EQ(mask.tiles, static_cast<int64_t>(picture.size()));
  ASSERT_EQ(mask.kept.size(), static_cast<size_t>(mask.tiles * mask.tiles));
  for (int64_t row = 0; row < mask.tiles; ++row) {
    std::string got(mask.tiles, '.');
    for (int64_t col = 0; col < mask.tiles; ++col) got[col] = mask.at(row, col) ? '#' : '.';
    EXPECT_EQ(got, picture[row]) << "tile row " << row;
  }
}

// ---------------------------------------------------------------------------------------------
// Brute-force restatement of the frame-pair steps of the rule (everything except the diagonal
// rule): for each frame pair, test every token (k, l) of its s x s rectangle against the band,
// accumulate per-column counts on the global B-grid and decide each touched tile with exact integer
// arithmetic. O(f^2 s^2): small geometries only.

int BitLength(int64_t x) {
  int bits = 0;
  while (x > 0) {
    ++bits;
    x >>= 1;
  }
  return bits;
}

// Half-width of the token band for query frame i and key frame j; -1 when the pair is dropped.
int64_t PairHalfWidth(const MaskGeometry& g, int64_t i, int64_t j) {
  const int64_t s = g.tokens_per_frame;
  const int64_t d = std::llabs(i - j);
  if (d <= 1 || (g.sink && j == 0)) return s;
  const double p = std::ldexp(1.0, BitLength(s));
  const double l0 = p / std::ldexp(1.0, BitLength(d));
  if (l0 < 128.0) {
    const auto stride = static_cast<int64_t>(std::floor(128.0 / l0));
    if (d % stride != 0) return -1;
  }
  const double l = l0 * g.decay;
  return l >= static_cast<double>(g.block) ? static_cast<int64_t>(std::floor(l)) : g.block;
}

BlockMask BruteForcePairRule(const MaskGeometry& g) {
  const int64_t s = g.tokens_per_frame;
  const int64_t n = g.frames * s;
  const int64_t b = g.block;
  const int64_t tiles = (n + b - 1) / b;
  BlockMask mask;
  mask.tiles = tiles;
  mask.kept.assign(tiles * tiles, 0);

  // [tile row][global column] on counts of one pair; only the pair's own tile rows are used.
  std::vector<int32_t> column_count(tiles * n);
  for (int64_t i = 0; i < g.frames; ++i) {
    for (int64_t j = 0; j < g.frames; ++j) {
      const int64_t w = PairHalfWidth(g, i, j);
      if (w < 0) continue;
      const int64_t row_first = (i * s) / b, row_last = ((i + 1) * s - 1) / b;
      const int64_t col_first = (j * s) / b, col_last = ((j + 1) * s - 1) / b;
      const int64_t clear_begin = col_first * b, clear_end = std::min((col_last + 1) * b, n);
      for (int64_t a = row_first; a <= row_last; ++a) {
        std::fill(column_count.begin() + a * n + clear_begin, column_count.begin() + a * n + clear_end, 0);
      }
      for (int64_t k = 0; k < s; ++k) {
        int32_t* count = &column_count[((i * s + k) / b) * n + j * s];
        for (int64_t l = 0; l < s; ++l) count[l] += std::llabs(k - l) <= w ? 1 : 0;
      }
      for (int64_t a = row_first; a <= row_last; ++a) {
        for (int64_t c = col_first; c <= col_last; ++c) {
          int64_t nonzero = 0, high = 0;
          for (int64_t col = c * b; col < std::min((c + 1) * b, n); ++col) {
            const int64_t count = column_count[a * n + col];
            if (count > 0) ++nonzero;
            if (3 * count > b) ++high;  // count / B > 1/3
          }
          if (nonzero > 0 && 5 * high > 3 * nonzero) mask.kept[a * tiles + c] = 1;  // > 0.6
        }
      }
    }
  }
  return mask;
}

bool RowEmpty(const BlockMask& mask, int64_t row) { return CountRow(mask, row, 0, mask.tiles) == 0; }

// The diagonal rule, checked against the pair rule's mask: a tile row the pairs left empty keeps
// exactly its diagonal tile, every other row is unchanged. Returns the number of rows that got
// their diagonal this way; reports at most a few mismatches.
int64_t ExpectPairRuleThenDiagonal(const BlockMask& got, const BlockMask& pair_rule) {
  EXPECT_EQ(got.tiles, pair_rule.tiles);
  EXPECT_EQ(got.kept.size(), pair_rule.kept.size());
  if (got.tiles != pair_rule.tiles || got.kept.size() != pair_rule.kept.size()) return 0;
  int64_t mismatches = 0, diagonal_rows = 0;
  for (int64_t a = 0; a < got.tiles; ++a) {
    const bool empty = RowEmpty(pair_rule, a);
    diagonal_rows += empty ? 1 : 0;
    for (int64_t c = 0; c < got.tiles; ++c) {
      const bool expected = empty ? c == a : pair_rule.at(a, c);
      if (got.at(a, c) != expected && ++mismatches <= 5) {
        ADD_FAILURE() << "tile (" << a << "," << c << "): got " << got.at(a, c) << ", expected "
                      << expected << (empty ? " (row empty under the pair rule: diagonal only)" : "");
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_TRUE(got.EveryRowKept());
  return diagonal_rows;
}

// ---------------------------------------------------------------------------------------------
// The density table of docs/radial-attention.md (B = 128). These geometries have no tile row that
// the pair rule leaves empty, so the diagonal rule changes nothing in them.

TEST(BlockMaskDensityTable, Wan768Decay02SinkOn) {
  const BlockMask mask = BuildRadialMask(Geometry(18, 3840, 0.2, true));
  ASSERT_EQ(mask.tiles, 540);
  EXPECT_EQ(CountKept(mask), 83728);
  EXPECT_EQ(mask.count(), 83728);
  EXPECT_NEAR(mask.density(), 0.2871, 5e-5);
}

TEST(BlockMaskDensityTable, Wan768Decay1SinkOn) {
  const BlockMask mask = BuildRadialMask(Geometry(18, 3840, 1.0, true));
  ASSERT_EQ(mask.tiles, 540);
  EXPECT_NEAR(mask.density(), 0.4309, 5e-5);
  EXPECT_NEAR(static_cast<double>(CountKept(mask)) / (540.0 * 540.0), 0.4309, 5e-5);
}

TEST(BlockMaskDensityTable, Hunyuan768Decay095SinkOff) {
  const BlockMask mask = BuildRadialMask(Geometry(30, 3840, 0.95, false));
  ASSERT_EQ(mask.tiles, 900);
  EXPECT_EQ(CountKept(mask), 222452);
  EXPECT_NEAR(mask.density(), 0.2746, 5e-5);
}

TEST(BlockMaskDensityTable, ToyDecay1SinkOff) {
  const BlockMask mask = BuildRadialMask(Geometry(12, 3840, 1.0, false));
  ASSERT_EQ(mask.tiles, 360);
  EXPECT_NEAR(mask.density(), 0.4871, 5e-5);
  EXPECT_NEAR(static_cast<double>(CountKept(mask)) / (360.0 * 360.0), 0.4871, 5e-5);
}

TEST(BlockMaskDensityTable, SmallDecay05SinkOff) {
  const BlockMask mask = BuildRadialMask(Geometry(8, 512, 0.5, false));
  ASSERT_EQ(mask.tiles, 32);
  EXPECT_EQ(CountKept(mask), 772);
  EXPECT_EQ(mask.count(), 772);
  EXPECT_NEAR(mask.density(), 0.7539, 5e-5);
}

// Toy case rows: 30 tile columns per frame; "middle of frame 0" is tile row 15, "middle of
// frame 5" is tile row 5 * 30 + 15.
TEST(BlockMaskDensityTable, ToyRowsPerKeyFrame) {
  const BlockMask mask = BuildRadialMask(Geometry(12, 3840, 1.0, false));
  ASSERT_EQ(mask.tiles, 360);
  const std::vector<int64_t> frame0 = {30, 30, 17, 17, 9, 9, 9, 9, 5, 5, 5, 5};
  const std::vector<int64_t> frame5 = {9, 9, 17, 17, 30, 30, 30, 17, 17, 9, 9, 9};
  for (int64_t j = 0; j < 12; ++j) {
    EXPECT_EQ(CountRow(mask, 15, j * 30, (j + 1) * 30), frame0[j]) << "key frame " << j;
    EXPECT_EQ(CountRow(mask, 5 * 30 + 15, j * 30, (j + 1) * 30), frame5[j]) << "key frame " << j;
  }
}

// ---------------------------------------------------------------------------------------------
// Small cases worked by hand from the rule.

// f=4, s=128=B: one tile per frame, P=256. d=2,3 have bitlen 2 -> L0=64 < 128 -> keep only
// d % 2 == 0: d=2 kept (w = B covers the whole tile), d=3 dropped. The sink adds (3,0) only:
// it is about key frame 0, so (0,3) stays dropped.
TEST(BlockMaskHandChecked, FourFramesOneTileEachDecimation) {
  ExpectMaskPicture(BuildRadialMask(Geometry(4, 128, 1.0, false)),
                    {"###.", "####", "####", ".###"});
  ExpectMaskPicture(BuildRadialMask(Geometry(4, 128, 1.0, true)),
                    {"###.", "####", "####", "####"});
}

// f=9, s=128: L0 = 256 / 2^bitlen(d): d=2,3 -> 64 (keep d%2==0), d=4..7 -> 32 (keep d%4==0),
// d=8 -> 16 (keep d%8==0). Kept distances are {0,1,2,4,8}: the radial pattern.
TEST(BlockMaskHandChecked, NineFramesKeepPowerOfTwoDistances) {
  const BlockMask mask = BuildRadialMask(Geometry(9, 128, 1.0, false));
  ASSERT_EQ(mask.tiles, 9);
  for (int64_t a = 0; a < 9; ++a) {
    for (int64_t b = 0; b < 9; ++b) {
      const int64_t d = std::llabs(a - b);
      const bool expected = d == 0 || d == 1 || d == 2 || d == 4 || d == 8;
      EXPECT_EQ(mask.at(a, b), expected) << "tile (" << a << "," << b << ")";
    }
  }
  // With the sink every query frame also keeps frame 0.
  const BlockMask sink = BuildRadialMask(Geometry(9, 128, 1.0, true));
  for (int64_t a = 0; a < 9; ++a) EXPECT_TRUE(sink.at(a, 0)) << "row " << a;
  EXPECT_FALSE(sink.at(0, 3));
  EXPECT_FALSE(sink.at(0, 7));
}

// f=3, s=512, B=128: P=1024, d=2 -> L0=256 >= 128 -> kept, band w = floor(256 * decay) (or B).
// Inside the (0,2) pair, tile offset o = |a - b| (4 tiles per frame). Worked column counts for
// the offset-2 tile, rows 0..127, columns 256..383: count(l) = max(0, w + 128 - l).
//   w=256: nz=128, hi (count >= 43) = 86 -> 86/128 > 0.6 -> lit; offset 3: nz=0 -> dropped.
//   w=234: nz=106, hi=64 -> 0.604 > 0.6 -> lit.
//   w=233: nz=105, hi=63 -> exactly 0.6, not > 0.6 -> dropped (K = floor((w+22)/B) = 1).
//   w=128 (decay 0.5, or any L < B): offset 1 lit (nz=128, hi=86), offset 2 dropped.
TEST(BlockMaskHandChecked, BandWidthAndTileThreshold) {
  const std::vector<std::string> k2 = {
      "###########.", "############", "############", "########.###",
      "############", "############", "############", "############",
      "###.########", "############", "############", ".###########"};
  const std::vector<std::string> k1 = {
      "##########..", "###########.", "########.###", "########..##",
      "############", "############", "############", "############",
      "##..########", "###.########", ".###########", "..##########"};
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 512, 1.0, false)), k2);
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 512, 234.0 / 256.0, false)), k2);
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 512, 233.0 / 256.0, false)), k1);
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 512, 0.5, false)), k1);
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 512, 0.01, false)), k1);
}

// f=3, s=100, B=64: n=300, 5 tiles, the last one 44 tokens. P=128, d=2 -> L0=32 -> keep only
// d%4==0 -> the (0,2) and (2,0) pairs are dropped; d<=1 pairs are full.
//  (0,3): rows 0..63 (frame 0) x cols 192..199 (frame 1): 8 columns with count 64 -> lit.
//  (3,0): rows 192..199 (frame 1, 8 rows) x cols 0..63 (frame 0): count 8, 3*8 < 64 -> dropped,
//         although those tokens' frame pair is full: count is measured against B, not rows present.
//  (4,1): rows 256..299 (frame 2, 44 rows) x cols 100..127 (frame 1): 3*44 > 64 -> lit.
//  (0,4), (4,0): frames 0 and 2 only -> dropped.
// With the sink, (2,0) is full: rows 200..255 (56) light (3,0) and rows 256..299 (44) light (4,0).
TEST(BlockMaskHandChecked, RaggedTilesStraddlingFrames) {
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 100, 1.0, false, 64)),
                    {"####.", "#####", "#####", ".####", ".####"});
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 100, 1.0, true, 64)),
                    {"####.", "#####", "#####", "#####", "#####"});
}

// f=3, s=90, B=128: n=270, the last tile row has 14 rows and 3*14 < 128, so no pair can light
// any tile in it; the diagonal rule gives it tile 2 (tokens 256..269, the row's own keys).
// (0,2): frame 0 x frame 2 is dropped (d=2, L0=32) and frame 1's 38 rows of tile row 0 are too few
// against frame 2's columns. Row 2 does not get (2,1): only the diagonal is added.
TEST(BlockMaskHandChecked, ShortLastTileRowKeepsItsDiagonal) {
  ExpectMaskPicture(BruteForcePairRule(Geometry(3, 90, 1.0, false)), {"##.", "###", "..."});
  ExpectMaskPicture(BuildRadialMask(Geometry(3, 90, 1.0, false)), {"##.", "###", "..#"});
}

// Frames shorter than B/3 tokens can never give a column count above B/3, so no pair lights any
// tile: every row keeps its diagonal tile and nothing else.
TEST(BlockMaskHandChecked, TinyFramesKeepOnlyTheDiagonal) {
  const BlockMask mask = BuildRadialMask(Geometry(6, 40, 1.0, true));
  ASSERT_EQ(mask.tiles, 2);
  EXPECT_EQ(CountKept(BruteForcePairRule(Geometry(6, 40, 1.0, true))), 0);
  ExpectMaskPicture(mask, {"#.", ".#"});
  EXPECT_EQ(mask.count(), 2);
  EXPECT_DOUBLE_EQ(mask.density(), 0.5);
}

// The diagonal tile is kept in full (no masking inside a kept tile), even where it holds frame
// pairs that the pair rule drops. f=5, s=16, B=64: tile 0 holds frames 0..3, tile 1 frame 4.
// Pair (0,3) is decimated away (d=3: P=32, L0=8, keep only d % 16 == 0), yet (0,0) is kept, so a
// query of frame 0 attends frame 3's keys; and frame 4 does not see frame 0 although the sink is on.
TEST(BlockMaskHandChecked, DiagonalTileIsKeptWhole) {
  ExpectMaskPicture(BruteForcePairRule(Geometry(5, 16, 1.0, true, 64)), {"..", ".."});
  ExpectMaskPicture(BuildRadialMask(Geometry(5, 16, 1.0, true, 64)), {"#.", ".#"});
  ExpectMaskPicture(BuildRadialMask(Geometry(5, 16, 1.0, false, 64)), {"#.", ".#"});
}

// f=5, s=206, B=64: n=1030, the last tile row holds 6 tokens. Only that row was empty; it keeps
// tile 16 and every other row is the pair rule's.
TEST(BlockMaskHandChecked, TinyRaggedTailKeepsItsDiagonal) {
  const MaskGeometry g = Geometry(5, 206, 1.0, false, 64);
  const BlockMask pair_rule = BruteForcePairRule(g);
  ASSERT_EQ(pair_rule.tiles, 17);
  for (int64_t a = 0; a < 16; ++a) EXPECT_FALSE(RowEmpty(pair_rule, a)) << "row " << a;
  ASSERT_TRUE(RowEmpty(pair_rule, 16));
  const BlockMask mask = BuildRadialMask(g);
  EXPECT_EQ(ExpectPairRuleThenDiagonal(mask, pair_rule), 1);
  EXPECT_EQ(CountRow(mask, 16, 0, 17), 1);
  EXPECT_TRUE(mask.at(16, 16));
  EXPECT_EQ(mask.count(), pair_rule.count() + 1);
}

// One frame, or frames within distance 1 of each other: everything is full.
TEST(BlockMaskHandChecked, AdjacentFramesAreFull) {
  for (const MaskGeometry& g :
       {Geometry(1, 256, 0.3, false), Geometry(2, 512, 0.2, false, 64), Geometry(2, 300, 1.0, false),
        Geometry(1, 1000, 1.0, true, 64)}) {
    SCOPED_TRACE(Describe(g));
    const BlockMask mask = BuildRadialMask(g);
    EXPECT_EQ(mask.tiles, g.tiles());
    EXPECT_EQ(CountKept(mask), mask.tiles * mask.tiles);
    EXPECT_DOUBLE_EQ(mask.density(), 1.0);
  }
}

// Properties that follow from the rule when s is a multiple of B (tiles never straddle frames):
// the diagonal and both neighbouring frames are kept, the sink keeps all of frame 0's columns,
// and without the sink the mask is symmetric (every pair depends only on |i - j|).
TEST(BlockMaskProperties, AlignedFramesDiagonalSinkSymmetry) {
  for (const MaskGeometry& g :
       {Geometry(12, 3840, 1.0, false), Geometry(8, 512, 0.5, true), Geometry(9, 128, 1.0, true),
        Geometry(7, 256, 0.3, false, 64), Geometry(16, 640, 0.2, true),
        Geometry(21, 1536, 0.2, true)}) {
    SCOPED_TRACE(Describe(g));
    const BlockMask mask = BuildRadialMask(g);
    ASSERT_EQ(mask.tiles, g.tiles());
    ASSERT_EQ(mask.kept.size(), static_cast<size_t>(mask.tiles * mask.tiles));
    const int64_t per_frame = g.tokens_per_frame / g.block;
    for (int64_t a = 0; a < mask.tiles; ++a) {
      ASSERT_TRUE(mask.at(a, a)) << "diagonal " << a;
      const int64_t frame = a / per_frame;
      for (int64_t b = 0; b < mask.tiles; ++b) {
        const int64_t key_frame = b / per_frame;
        if (std::llabs(frame - key_frame) <= 1 || (g.sink && key_frame == 0)) {
          ASSERT_TRUE(mask.at(a, b)) << "full pair tile (" << a << "," << b << ")";
        }
        if (!g.sink) {
          ASSERT_EQ(mask.at(a, b), mask.at(b, a)) << "(" << a << "," << b << ")";
        }
      }
    }
  }
}

// The sink only adds full pairs, and a full pair lights every tile that any band of the same
// pair would light, so the sink mask is a superset. Holds for ragged geometries too.
TEST(BlockMaskProperties, SinkMaskIsSuperset) {
  for (const MaskGeometry& g :
       {Geometry(6, 300, 0.5, false, 128), Geometry(5, 130, 1.0, false, 64),
        Geometry(18, 3840, 0.2, false), Geometry(10, 200, 0.2, false, 128)}) {
    SCOPED_TRACE(Describe(g));
    MaskGeometry with_sink = g;
    with_sink.sink = true;
    const BlockMask off = BuildRadialMask(g);
    const BlockMask on = BuildRadialMask(with_sink);
    ASSERT_EQ(off.tiles, on.tiles);
    for (size_t x = 0; x < off.kept.size(); ++x) {
      if (off.kept[x]) {
        ASSERT_TRUE(on.kept[x]) << "tile " << x;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Ragged and aligned geometries against the brute force.

class BlockMaskBruteForceTest : public ::testing::TestWithParam<MaskGeometry> {};

TEST_P(BlockMaskBruteForceTest, MatchesLiteralRule) {
  const MaskGeometry g = GetParam();
  ASSERT_EQ(ValidateMaskGeometry(g), "");
  ExpectPairRuleThenDiagonal(BuildRadialMask(g), BruteForcePairRule(g));
}

std::string GeometryName(const ::testing::TestParamInfo<MaskGeometry>& info) {
  const MaskGeometry& g = info.param;
  return "f" + std::to_string(g.frames) + "_s" + std::to_string(g.tokens_per_frame) + "_decay" +
         std::to_string(static_cast<int>(std::lround(g.decay * 100))) + (g.sink ? "_sink" : "_nosink") +
         "_B" + std::to_string(g.block);
}

INSTANTIATE_TEST_SUITE_P(
    Ragged, BlockMaskBruteForceTest,
    ::testing::Values(Geometry(3, 100, 1.0, false, 64), Geometry(3, 100, 1.0, true, 64),
                      Geometry(3, 90, 1.0, false, 128), Geometry(4, 257, 1.0, false, 128),
                      Geometry(5, 300, 0.5, true, 128), Geometry(6, 300, 1.0, false, 128),
                      Geometry(6, 200, 0.2, true, 64), Geometry(5, 130, 0.95, false, 128),
                      Geometry(6, 299, 0.3, true, 64), Geometry(6, 150, 0.7, false, 64),
                      Geometry(6, 40, 1.0, true, 128), Geometry(6, 1, 1.0, true, 64),
                      Geometry(1, 300, 1.0, true, 128), Geometry(2, 77, 1.0, false, 64),
                      Geometry(6, 222, 2.0, false, 64), Geometry(4, 192, 0.5, true, 128)),
    GeometryName);

INSTANTIATE_TEST_SUITE_P(
    Aligned, BlockMaskBruteForceTest,
    ::testing::Values(Geometry(8, 256, 0.5, false, 128), Geometry(5, 512, 0.7, true, 64),
                      Geometry(6, 128, 1.0, false, 64), Geometry(4, 640, 0.2, true, 128),
                      Geometry(3, 512, 233.0 / 256.0, false, 128)),
    GeometryName);

// ---------------------------------------------------------------------------------------------
// Validation.

// The message must name one of `fields` and say what was expected.
void ExpectInvalid(const MaskGeometry& g, const std::vector<std::string>& fields) {
  const std::string message = ValidateMaskGeometry(g);
  EXPECT_NE(message, "") << Describe(g);
  EXPECT_TRUE(std::any_of(fields.begin(), fields.end(),
                          [&](const std::string& f) { return message.find(f) != std::string::npos; }))
      << Describe(g) << " message: " << message;
  EXPECT_NE(message.find("expected"), std::string::npos) << Describe(g) << " message: " << message;
}

void ExpectInvalid(const MaskGeometry& g, const std::string& field) {
  ExpectInvalid(g, std::vector<std::string>{field});
}

TEST(BlockMaskValidate, AcceptsValidGeometries) {
  for (const MaskGeometry& g :
       {Geometry(1, 1, 1.0, true, 64), Geometry(18, 3840, 0.2, true), Geometry(30, 3840, 0.95, false),
        Geometry(3, 100, 5.0, false, 64), Geometry(1, kMaxTokens, 1.0, true, 128)}) {
    EXPECT_EQ(ValidateMaskGeometry(g), "") << Describe(g);
  }
  MaskGeometry defaults;  // decay 1, sink on, B = 128
  defaults.frames = 4;
  defaults.tokens_per_frame = 128;
  EXPECT_EQ(ValidateMaskGeometry(defaults), "");
}

TEST(BlockMaskValidate, RejectsBadFrames) {
  ExpectInvalid(Geometry(0, 128, 1.0, true), "frames");
  ExpectInvalid(Geometry(-3, 128, 1.0, true), "frames");
}

TEST(BlockMaskValidate, RejectsBadTokensPerFrame) {
  ExpectInvalid(Geometry(4, 0, 1.0, true), "tokens_per_frame");
  ExpectInvalid(Geometry(4, -128, 1.0, true), "tokens_per_frame");
}

TEST(BlockMaskValidate, RejectsBadDecay) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double decay : {0.0, -0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), inf, -inf}) {
    ExpectInvalid(Geometry(4, 128, decay, true), "decay");
  }
}

TEST(BlockMaskValidate, RejectsBadBlock) {
  for (int64_t block : {0, 32, 96, 256, -128}) ExpectInvalid(Geometry(4, 128, 1.0, true, block), "block");
}

TEST(BlockMaskValidate, RejectsTooManyTokens) {
  ExpectInvalid(Geometry(1, kMaxTokens + 1, 1.0, true), "tokens");
  ExpectInvalid(Geometry(1 << 20, 4, 1.0, true), "tokens");
  // Large enough to overflow naive int32 arithmetic, still exact in int64.
  ExpectInvalid(Geometry(int64_t{1} << 31, int64_t{1} << 31, 1.0, true), std::vector<std::string>{"tokens", "frames"});
}

// ---------------------------------------------------------------------------------------------
// Dense mask and CSR.

TEST(BlockMaskDense, AllTilesKept) {
  for (const MaskGeometry& g : {Geometry(18, 3840, 0.2, true), Geometry(3, 100, 1.0, false, 64),
                                Geometry(6, 40, 1.0, true), Geometry(1, 1, 1.0, true)}) {
    SCOPED_TRACE(Describe(g));
    const BlockMask mask = BuildDenseMask(g);
    ASSERT_EQ(mask.tiles, g.tiles());
    ASSERT_EQ(mask.kept.size(), static_cast<size_t>(mask.tiles * mask.tiles));
    EXPECT_EQ(CountKept(mask), mask.tiles * mask.tiles);
    EXPECT_EQ(mask.count(), mask.tiles * mask.tiles);
    EXPECT_DOUBLE_EQ(mask.density(), 1.0);
  }
}

void ExpectCsrMatches(const BlockMask& mask) {
  const TileCsr csr = ToTileCsr(mask);
  const int64_t tiles = mask.tiles;
  ASSERT_EQ(csr.row_offsets.size(), static_cast<size_t>(tiles + 1));
  ASSERT_EQ(csr.row_order.size(), static_cast<size_t>(tiles));
  EXPECT_EQ(csr.row_offsets.front(), 0);
  EXPECT_EQ(csr.row_offsets.back(), static_cast<int32_t>(csr.col_ids.size()));
  EXPECT_EQ(static_cast<int64_t>(csr.col_ids.size()), CountKept(mask));

  // Round trip: rebuild the mask from the CSR; columns strictly increasing within a row.
  std::vector<uint8_t> rebuilt(tiles * tiles, 0);
  std::vector<int64_t> row_count(tiles);
  for (int64_t r = 0; r < tiles; ++r) {
    ASSERT_LE(csr.row_offsets[r], csr.row_offsets[r + 1]) << "row " << r;
    row_count[r] = csr.row_offsets[r + 1] - csr.row_offsets[r];
    for (int32_t x = csr.row_offsets[r]; x < csr.row_offsets[r + 1]; ++x) {
      const int32_t col = csr.col_ids[x];
      ASSERT_GE(col, 0);
      ASSERT_LT(col, tiles);
      if (x > csr.row_offsets[r]) {
        ASSERT_LT(csr.col_ids[x - 1], col) << "row " << r;
      }
      rebuilt[r * tiles + col] = 1;
    }
  }
  for (int64_t x = 0; x < tiles * tiles; ++x) {
    ASSERT_EQ(rebuilt[x], mask.kept[x] != 0 ? 1 : 0) << "tile " << x / tiles << "," << x % tiles;
  }

  // row_order: a permutation by decreasing kept count, ties by increasing row index.
  std::vector<int32_t> sorted = csr.row_order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int32_t> identity(tiles);
  std::iota(identity.begin(), identity.end(), 0);
  ASSERT_EQ(sorted, identity);
  for (int64_t x = 1; x < tiles; ++x) {
    const int32_t prev = csr.row_order[x - 1], cur = csr.row_order[x];
    ASSERT_GE(row_count[prev], row_count[cur]) << "position " << x;
    if (row_count[prev] == row_count[cur]) {
      ASSERT_LT(prev, cur) << "tie at position " << x;
    }
  }
}

// EveryRowKept stays true for every radial mask (the diagonal rule), including the geometries that
// used to leave rows empty, and is false for a mask with an empty row built by hand.
TEST(BlockMaskRows, EveryRowKeptHoldsForRadialMasks) {
  for (const MaskGeometry& g :
       {Geometry(21, 1560, 0.2, true), Geometry(18, 3840, 0.2, true, 64), Geometry(5, 16, 1.0, true, 64),
        Geometry(3, 90, 1.0, false), Geometry(6, 40, 1.0, true), Geometry(5, 206, 0.2, true, 128),
        Geometry(1, 1, 1.0, false, 128), Geometry(8, 1, 0.2, false, 64)}) {
    SCOPED_TRACE(Describe(g));
    EXPECT_TRUE(BuildRadialMask(g).EveryRowKept());
    EXPECT_TRUE(BuildDenseMask(g).EveryRowKept());
  }
  BlockMask custom;
  custom.tiles = 2;
  custom.kept = {1, 1, 0, 0};
  EXPECT_FALSE(custom.EveryRowKept());
}

// The property sweep: every small geometry (1..8 frames, 1..300 tokens per frame, B = 64 and 128,
// sink on and off) against the brute force, with decays cycled through a list so that every decay
// meets every kind of geometry across the sweep. Every row of the mask keeps a tile; rows the pair
// rule left empty got their diagonal tile and nothing else; all other rows are the pair rule's;
// every diagonal tile is kept.
struct SweepCase {
  int64_t block;
  bool sink;
};

class BlockMaskSmallGeometrySweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(BlockMaskSmallGeometrySweep, PairRuleThenDiagonal) {
  const std::vector<double> decays = {1.0, 0.2, 0.5, 0.95, 2.0, 4.0, 0.05};
  const SweepCase sweep = GetParam();
  int64_t geometries = 0, geometries_with_diagonal_rows = 0, diagonal_rows = 0;
  for (int64_t frames = 1; frames <= 8; ++frames) {
    for (int64_t s = 1; s <= 300; ++s) {
      const double decay = decays[(frames * 300 + s) % decays.size()];
      const MaskGeometry g = Geometry(frames, s, decay, sweep.sink, sweep.block);
      SCOPED_TRACE(Describe(g));
      const BlockMask mask = BuildRadialMask(g);
      ASSERT_EQ(mask.tiles, g.tiles());
      const int64_t added = ExpectPairRuleThenDiagonal(mask, BruteForcePairRule(g));
      // Any lit tile needs more than B/3 rows of one frame in its row, and then that frame's d = 0
      // pair lights the diagonal: so with the diagonal rule every diagonal tile is kept.
      for (int64_t a = 0; a < mask.tiles; ++a) ASSERT_TRUE(mask.at(a, a)) << "diagonal " << a;
      ASSERT_FALSE(::testing::Test::HasFailure());
      ++geometries;
      geometries_with_diagonal_rows += added > 0 ? 1 : 0;
      diagonal_rows += added;
    }
  }
  std::cout << "B=" << sweep.block << " sink=" << (sweep.sink ? "on" : "off") << ": " << geometries
            << " geometries, " << geometries_with_diagonal_rows << " with rows the pair rule left empty ("
            << diagonal_rows << " rows)\n";
  // The sweep is only a test of the diagonal rule if it meets many such geometries.
  EXPECT_GT(geometries_with_diagonal_rows, 100);
}

std::string SweepName(const ::testing::TestParamInfo<SweepCase>& info) {
  return "B" + std::to_string(info.param.block) + (info.param.sink ? "_sink" : "_nosink");
}

INSTANTIATE_TEST_SUITE_P(Sweep, BlockMaskSmallGeometrySweep,
                         ::testing::Values(SweepCase{64, false}, SweepCase{64, true}, SweepCase{128, false},
                                           SweepCase{128, true}),
                         SweepName);

TEST(BlockMaskCsr, RoundTripsAndOrdersRows) {
  for (const MaskGeometry& g :
       {Geometry(12, 3840, 1.0, false), Geometry(18, 3840, 0.2, true), Geometry(3, 100, 1.0, false, 64),
        Geometry(3, 90, 1.0, false), Geometry(6, 40, 1.0, true), Geometry(9, 128, 1.0, true),
        Geometry(5, 300, 0.5, true, 64)}) {
    SCOPED_TRACE(Describe(g));
    ExpectCsrMatches(BuildRadialMask(g));
  }
  SCOPED_TRACE("dense");
  ExpectCsrMatches(BuildDenseMask(Geometry(3, 100, 1.0, false, 64)));
}

// ---------------------------------------------------------------------------------------------
// Build time at a long-video size (printed, not asserted).

TEST(BlockMaskTiming, LongVideo) {
  const MaskGeometry g = Geometry(128, 3600, 1.0, true);
  ASSERT_EQ(ValidateMaskGeometry(g), "");
  const auto start = std::chrono::steady_clock::now();
  const BlockMask mask = BuildRadialMask(g);
  const auto stop = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(stop - start).count();
  std::cout << "BuildRadialMask f=128 s=3600 B=128: " << ms << " ms, density " << mask.density()
            << "\n";
  EXPECT_EQ(mask.tiles, 3600);
  EXPECT_EQ(mask.kept.size(), static_cast<size_t>(3600 * 3600));
}

}  // namespace
