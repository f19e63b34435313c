// Hopper (sm_90a) block-sparse attention forward: warp-specialised, TMA + mbarrier K/V ring,
// wgmma for both GEMMs (S = Q K^T from shared memory, O += P V with P in registers).
//
// CTA = one 128-row query tile of one (batch, head): 3 warpgroups.
//   warpgroup 0: producer. One thread loads Q once, then walks the tile row's CSR and issues TMA
//                loads of exactly the kept K/V tiles into a 2- or 3-stage ring (separate K and V barriers).
//   warpgroups 1, 2: consumers, 64 query rows each. Per kept tile j: issue S_j = Q K_j^T, issue
//                O += P_{j-1} V_{j-1}, then softmax of S_j overlaps the PV GEMM (FA3-style
//                intra-warpgroup overlap), rescale O, convert S_j to bf16/fp16 P_j in registers.
//                The two consumers ping-pong their GEMM issue through named barriers 1 and 2
//                (RADIAL_SM90_PINGPONG, default on) so one's softmax overlaps the other's GEMMs.
// Shared memory tiles are [128 rows][64 cols] boxes with the 128-byte swizzle (two boxes for
// head_dim 128); Q and K are K-major wgmma operands, V is an MN-major (transposed) B operand.
// Grid: one CTA per (batch*head, tile row); tile rows of a head are visited longest-first
// (row_order), heads one after another so a head's K/V stay in L2.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

#include "attention_kernels.h"
#include "attention_params.h"
#include "ptx_common.cuh"

#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RADIAL_SM90_DEVICE 1
#endif

namespace radial::kernels {
namespace {

constexpr int kTile = 128;          // query and key tile rows (mask block)
constexpr int kThreads = 384;       // producer warpgroup + 2 consumer warpgroups
constexpr int kBoxCols = 64;        // head_dim columns per TMA box (128 bytes: the swizzle span)
constexpr int kBoxBytes = kTile * kBoxCols * 2;
#ifndef RADIAL_SM90_PINGPONG
#define RADIAL_SM90_PINGPONG 1
#endif
constexpr bool kPingpongDefault = RADIAL_SM90_PINGPONG != 0;
#ifndef RADIAL_SM90_STAGES
#define RADIAL_SM90_STAGES 2
#endif
constexpr int kStages = RADIAL_SM90_STAGES;  // K/V ring depth (2 or 3; 3 x 64 KB + Q fits in 227 KB)
static_assert(kStages == 2 || kStages == 3, "RADIAL_SM90_STAGES must be 2 or 3");

struct Sm90Args {
  void* o;
  float* lse;
  int64_t o_batch_stride, o_token_stride, o_head_stride;
  int heads, tokens, tiles;
  float scale_log2;
  const int32_t* row_offsets;
  const int32_t* col_ids;
  const int32_t* row_order;
};

template <int kD>
struct Smem {
  static constexpr int kTileBytes = (kD / kBoxCols) * kBoxBytes;
  static constexpr int kK = kTileBytes;                  // after Q; kStages stages
  static constexpr int kV = kK + kStages * kTileBytes;   // kStages stages
  static constexpr int kBar = kV + kStages * kTileBytes; // 1 + 4 * kStages mbarriers (<= 104 bytes)
  static constexpr int kBytes = kBar + 128 + 1024;       // + slack to align the base to 1024
  static_assert(kBytes <= 227 * 1024, "shared memory over the sm_90 per-block limit");
};

#ifdef RADIAL_SM90_DEVICE

__device__ __forceinline__ void MbarInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void MbarExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ bool MbarTryWait(uint32_t bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(bar), "r"(parity)
      : "memory");
  return ok != 0;
}
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
#ifdef RADIAL_SM90_HANG_CHECK  // debug builds: turn a deadlock into a reported launch failure
  const long long start = clock64();
  while (!MbarTryWait(bar, parity)) {
    if (clock64() - start > 8000000000LL) {
      printf("attention_sm90: mbarrier wait timed out (block %d thread %d bar %u parity %u)\n", blockIdx.x,
             threadIdx.x, bar, parity);
      __trap();
    }
  }
#else
  while (!MbarTryWait(bar, parity)) {
  }
#endif
}

__device__ __forceinline__ void TmaLoad4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0,
                                          int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

// wgmma shared-memory descriptor, 128-byte swizzle. Offsets in bytes.
__device__ __forceinline__ uint64_t MakeDesc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);
  d |= static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;  // SWIZZLE_128B
  return d;
}

__device__ __forceinline__ void WgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void FenceRegs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void FenceRegs(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// ---- wgmma (m64nNk16, fp32 accumulate). SS: A and B from shared memory, both K-major.
// RS: A from registers, B from shared memory MN-major (transposed). The PTX names the element
// type in the instruction, so each shape is one macro stamped out for "bf16" and "f16". ----
#define RADIAL_ACC8(d, i)                                                                      \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define RADIAL_ACC32(d) RADIAL_ACC8(d, 0), RADIAL_ACC8(d, 8), RADIAL_ACC8(d, 16), RADIAL_ACC8(d, 24)
#define RADIAL_ACC64(d) RADIAL_ACC32(d), RADIAL_ACC8(d, 32), RADIAL_ACC8(d, 40), RADIAL_ACC8(d, 48), RADIAL_ACC8(d, 56)
#define RADIAL_REGS32                                                                             \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define RADIAL_REGS64                                                                               \
  RADIAL_REGS32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
                "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// S (64 x 128) (+)= A (64 x 16, smem) B^T (128 x 16, smem).
#define RADIAL_WGMMA_SS_N128(TYPE)                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                     \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" RADIAL_REGS64  \
               "}, %64, %65, p, 1, 1, 0, 0;\n}\n"                                              \
               : RADIAL_ACC64(d)                                                                \
               : "l"(desc_a), "l"(desc_b), "r"(scale_d))
// O (64 x 128) (+)= A (64 x 16, registers) B (16 x 128, smem, MN-major).
#define RADIAL_WGMMA_RS_N128(TYPE)                                                                     \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                            \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" RADIAL_REGS64         \
               "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                        \
               : RADIAL_ACC64(d)                                                                       \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))
// O (64 x 64) (+)= A (64 x 16, registers) B (16 x 64, smem, MN-major).
#define RADIAL_WGMMA_RS_N64(TYPE)                                                                      \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                            \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" RADIAL_REGS32          \
               "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                        \
               : RADIAL_ACC32(d)                                                                       \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

template <bool kBf16>
using Element = std::conditional_t<kBf16, __nv_bfloat16, __half>;

// S = Q K^T step over 16 of head_dim; scale_d = 0 overwrites S (first step), 1 accumulates.
template <bool kBf16>
__device__ __forceinline__ void QkStep(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  if constexpr (kBf16) {
    RADIAL_WGMMA_SS_N128("bf16");
  } else {
    RADIAL_WGMMA_SS_N128("f16");
  }
}

// O += P V step over 16 keys, P from registers.
template <bool kBf16, int kD>
__device__ __forceinline__ void PvStep(float (&d)[kD / 2], const uint32_t (&a)[4], uint64_t desc_b) {
  const int scale_d = 1;
  if constexpr (kD == 128) {
    if constexpr (kBf16) {
      RADIAL_WGMMA_RS_N128("bf16");
    } else {
      RADIAL_WGMMA_RS_N128("f16");
    }
  } else {
    if constexpr (kBf16) {
      RADIAL_WGMMA_RS_N64("bf16");
    } else {
      RADIAL_WGMMA_RS_N64("f16");
    }
  }
}

#endif  // RADIAL_SM90_DEVICE

template <bool kBf16, int kD, bool kPingpong>
__global__ void __launch_bounds__(kThreads, 1)
    AttentionSm90Kernel(const __grid_constant__ CUtensorMap tmap_q,
                        const __grid_constant__ CUtensorMap tmap_k,
                        const __grid_constant__ CUtensorMap tmap_v, const Sm90Args args) {
#ifdef RADIAL_SM90_DEVICE
  using L = Smem<kD>;
  constexpr int kDSteps = kD / 16;  // k-steps of S = Q K^T
  constexpr int kOut = kD / 2;      // O accumulator registers per thread
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t base = (SharedAddress(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_q = base;  // Q tile at the aligned base
  const uint32_t bar_q = base + L::kBar;
  auto s_k = [&](int st) { return base + L::kK + st * L::kTileBytes; };
  auto s_v = [&](int st) { return base + L::kV + st * L::kTileBytes; };
  auto full_k = [&](int st) { return bar_q + 8 + 8 * st; };
  auto full_v = [&](int st) { return bar_q + 8 + 8 * kStages + 8 * st; };
  auto empty_k = [&](int st) { return bar_q + 8 + 16 * kStages + 8 * st; };
  auto empty_v = [&](int st) { return bar_q + 8 + 24 * kStages + 8 * st; };

  const int tiles = args.tiles;
  const int bh = blockIdx.x / tiles;
  const int row = __ldg(args.row_order + (blockIdx.x - bh * tiles));
  const int b = bh / args.heads;
  const int h = bh - b * args.heads;
  const int beg = __ldg(args.row_offsets + row);
  const int cnt = __ldg(args.row_offsets + row + 1) - beg;

  if (threadIdx.x == 0) {
    MbarInit(bar_q, 1);
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      MbarInit(full_k(st), 1);
      MbarInit(full_v(st), 1);
      MbarInit(empty_k(st), 8);  // lane 0 of each of the 8 consumer warps
      MbarInit(empty_v(st), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    // ------------------------------- producer -------------------------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (threadIdx.x == 0 && cnt > 0) {
      MbarExpectTx(bar_q, L::kTileBytes);
#pragma unroll
      for (int bx = 0; bx < kD / kBoxCols; ++bx) {
        TmaLoad4d(s_q + bx * kBoxBytes, &tmap_q, bar_q, bx * kBoxCols, row * kTile, h, b);
      }
      for (int j = 0; j < cnt; ++j) {
        const int c = __ldg(args.col_ids + beg + j);
        const int st = j % kStages;
        const uint32_t ph = ((j / kStages) & 1) ^ 1;
        MbarWait(empty_k(st), ph);
        MbarExpectTx(full_k(st), L::kTileBytes);
#pragma unroll
        for (int bx = 0; bx < kD / kBoxCols; ++bx) {
          TmaLoad4d(s_k(st) + bx * kBoxBytes, &tmap_k, full_k(st), bx * kBoxCols, c * kTile, h, b);
        }
        MbarWait(empty_v(st), ph);
        MbarExpectTx(full_v(st), L::kTileBytes);
#pragma unroll
        for (int bx = 0; bx < kD / kBoxCols; ++bx) {
          TmaLoad4d(s_v(st) + bx * kBoxBytes, &tmap_v, full_v(st), bx * kBoxCols, c * kTile, h, b);
        }
      }
    }
  } else {
    // ------------------------------- consumers ------------------------------
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
    const int cwg = warpgroup - 1;
    const int tid = threadIdx.x - warpgroup * 128;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int tig = lane % 4;
    const int r0 = cwg * 64 + warp * 16 + lane / 4;  // row in tile; the thread also owns r0 + 8
    const int t0 = row * kTile + r0;
    const int t1 = t0 + 8;
    const int tokens = args.tokens;
    char* o_base = static_cast<char*>(args.o) +
                   2 * (static_cast<int64_t>(b) * args.o_batch_stride + static_cast<int64_t>(h) * args.o_head_stride);
    float* lse_base = args.lse ? args.lse + (static_cast<int64_t>(b) * args.heads + h) * tokens : nullptr;

    if (cnt == 0) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int t = i ? t1 : t0;
        if (t < tokens) {
          char* orow = o_base + 2 * static_cast<int64_t>(t) * args.o_token_stride;
#pragma unroll
          for (int n8 = 0; n8 < kD / 8; ++n8) {
            *reinterpret_cast<uint32_t*>(orow + 2 * (n8 * 8 + tig * 2)) = 0u;
          }
          if (lse_base && tig == 0) lse_base[t] = -INFINITY;
        }
      }
      return;
    }

    // Valid keys in the last kept tile (only the globally last tile can be ragged; ids ascend).
    const int last_c = __ldg(args.col_ids + beg + cnt - 1);
    const int last_valid = min(kTile, tokens - last_c * kTile);
    const float sl2 = args.scale_log2;

    float o[kOut];
#pragma unroll
    for (int i = 0; i < kOut; ++i) o[i] = 0.f;
    float s[64];
    uint32_t p[32];
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    const uint64_t desc_q = MakeDesc(s_q + cwg * 64 * 128, 16, 1024);

    auto issue_qk = [&](int st) {
      const uint64_t desc_k = MakeDesc(s_k(st), 16, 1024);
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kDSteps; ++kk) {
        const uint32_t off = ((kk / 4) * kBoxBytes + (kk % 4) * 32) >> 4;
        QkStep<kBf16>(s, desc_q + off, desc_k + off, kk > 0 ? 1 : 0);
      }
      WgmmaCommit();
    };
    auto issue_pv = [&](int st) {
      const uint64_t desc_v = MakeDesc(s_v(st), kBoxBytes, 1024);
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        const uint32_t a[4] = {p[kk * 4 + 0], p[kk * 4 + 1], p[kk * 4 + 2], p[kk * 4 + 3]};
        PvStep<kBf16, kD>(o, a, desc_v + ((kk * 16 * 128) >> 4));
      }
      WgmmaCommit();
    };
    auto mask_last = [&]() {
      if (last_valid < kTile) {
#pragma unroll
        for (int n8 = 0; n8 < 16; ++n8) {
#pragma unroll
          for (int jj = 0; jj < 2; ++jj) {
            if (n8 * 8 + tig * 2 + jj >= last_valid) {
              s[n8 * 4 + jj] = -INFINITY;
              s[n8 * 4 + 2 + jj] = -INFINITY;
            }
          }
        }
      }
    };
    // Online softmax of s in place (s becomes exp2(scaled score - max)); returns O rescale factors.
    auto softmax = [&](float& corr0, float& corr1) {
      float mx0 = m0, mx1 = m1;
#pragma unroll
      for (int n8 = 0; n8 < 16; ++n8) {
        mx0 = fmaxf(mx0, fmaxf(s[n8 * 4 + 0], s[n8 * 4 + 1]));
        mx1 = fmaxf(mx1, fmaxf(s[n8 * 4 + 2], s[n8 * 4 + 3]));
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float ms0 = (mx0 == -INFINITY) ? 0.f : mx0 * sl2;
      const float ms1 = (mx1 == -INFINITY) ? 0.f : mx1 * sl2;
      corr0 = Exp2(m0 * sl2 - ms0);  // m = -inf on the first tile: 0 (O and l are still 0)
      corr1 = Exp2(m1 * sl2 - ms1);
      m0 = mx0;
      m1 = mx1;
      float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
      for (int n8 = 0; n8 < 16; ++n8) {
        s[n8 * 4 + 0] = Exp2(fmaf(s[n8 * 4 + 0], sl2, -ms0));
        s[n8 * 4 + 1] = Exp2(fmaf(s[n8 * 4 + 1], sl2, -ms0));
        s[n8 * 4 + 2] = Exp2(fmaf(s[n8 * 4 + 2], sl2, -ms1));
        s[n8 * 4 + 3] = Exp2(fmaf(s[n8 * 4 + 3], sl2, -ms1));
        sum0 += s[n8 * 4 + 0] + s[n8 * 4 + 1];
        sum1 += s[n8 * 4 + 2] + s[n8 * 4 + 3];
      }
      l0 = l0 * corr0 + sum0;
      l1 = l1 * corr1 + sum1;
    };
    auto convert_p = [&]() {
#pragma unroll
      for (int i = 0; i < 32; ++i) p[i] = PackPair<Element<kBf16>>(s[2 * i], s[2 * i + 1]);
    };
    auto release = [&](uint32_t bar) {
      if (lane == 0) MbarArrive(bar);
    };

    // Ping-pong between the two consumer warpgroups (named barriers 1 and 2, 256 threads): a
    // warpgroup issues its GEMMs of a round only after the other issued its own, so one's softmax
    // runs while the other's GEMMs occupy the tensor cores. Each warpgroup has cnt + 1 rounds;
    // warpgroup 1 opens warpgroup 0's first round and skips its own last arrive, so every
    // barrier phase completes.
    auto turn_wait = [&]() {
      if constexpr (kPingpong) {
        if (cwg == 0) {
          asm volatile("bar.sync 1, 256;\n" ::: "memory");
        } else {
          asm volatile("bar.sync 2, 256;\n" ::: "memory");
        }
      }
    };
    auto turn_pass = [&]() {
      if constexpr (kPingpong) {
        if (cwg == 0) {
          asm volatile("bar.arrive 2, 256;\n" ::: "memory");
        } else {
          asm volatile("bar.arrive 1, 256;\n" ::: "memory");
        }
      }
    };
    if constexpr (kPingpong) {
      if (cwg == 1) turn_pass();
    }

    MbarWait(bar_q, 0);

    // Tile 0: S_0 = Q K_0^T, softmax.
    MbarWait(full_k(0), 0);
    turn_wait();
    issue_qk(0);
    turn_pass();
    WgmmaWait<0>();
    FenceRegs(s);
    release(empty_k(0));
    if (cnt == 1) mask_last();
    {
      float c0, c1;
      softmax(c0, c1);
    }
    convert_p();

    for (int j = 1; j < cnt; ++j) {
      const int st = j % kStages;
      const int sp = (j - 1) % kStages;
      MbarWait(full_k(st), (j / kStages) & 1);
      MbarWait(full_v(sp), ((j - 1) / kStages) & 1);
      turn_wait();
      issue_qk(st);                               // S_j = Q K_j^T
      issue_pv(sp);                               // O += P_{j-1} V_{j-1}
      turn_pass();
      WgmmaWait<1>();                             // S_j ready
      FenceRegs(s);
      release(empty_k(st));
      if (j == cnt - 1) mask_last();
      float c0, c1;
      softmax(c0, c1);
      WgmmaWait<0>();                             // PV_{j-1} done
      FenceRegs(o);
      release(empty_v(sp));
#pragma unroll
      for (int n8 = 0; n8 < kD / 8; ++n8) {
        o[n8 * 4 + 0] *= c0;
        o[n8 * 4 + 1] *= c0;
        o[n8 * 4 + 2] *= c1;
        o[n8 * 4 + 3] *= c1;
      }
      convert_p();
    }
    {
      const int sl = (cnt - 1) % kStages;
      MbarWait(full_v(sl), ((cnt - 1) / kStages) & 1);
      turn_wait();
      issue_pv(sl);
      if (cwg == 0) turn_pass();
      WgmmaWait<0>();
      FenceRegs(o);
      release(empty_v(sl));
    }

    // Epilogue: normalise, write O (rows < tokens) and the natural-log LSE.
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
    const float inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    constexpr float kLn2 = 0.69314718055994530942f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int t = i ? t1 : t0;
      if (t < tokens) {
        const float inv = i ? inv1 : inv0;
        char* orow = o_base + 2 * static_cast<int64_t>(t) * args.o_token_stride;
#pragma unroll
        for (int n8 = 0; n8 < kD / 8; ++n8) {
          *reinterpret_cast<uint32_t*>(orow + 2 * (n8 * 8 + tig * 2)) =
              PackPair<Element<kBf16>>(o[n8 * 4 + 2 * i] * inv, o[n8 * 4 + 2 * i + 1] * inv);
        }
        if (lse_base && tig == 0) {
          const float m = i ? m1 : m0;
          const float l = i ? l1 : l0;
          lse_base[t] = (m * sl2 + __log2f(l)) * kLn2;
        }
      }
    }
  }
#endif  // RADIAL_SM90_DEVICE
}

// ------------------------------------ host ------------------------------------

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                                   CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                   CUtensorMapFloatOOBfill);

EncodeTiledFn GetEncodeTiled() {
  static EncodeTiledFn fn = []() -> EncodeTiledFn {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(ptr);
  }();
  return fn;
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// Strides (elements) of a [batch, tokens, heads, head_dim] operand acceptable to TMA / the stores.
bool StridesOk(int64_t batch_stride, int64_t token_stride, int64_t head_stride, const AttentionParams& p) {
  const int64_t strides[3] = {batch_stride, token_stride, head_stride};
  const int64_t extents[3] = {p.batch, p.tokens, p.heads};
  for (int i = 0; i < 3; ++i) {
    if (strides[i] % 8 != 0 || strides[i] < 0) return false;
    if (extents[i] > 1 && strides[i] == 0) return false;
    if (strides[i] * 2 >= (int64_t{1} << 40)) return false;
  }
  return true;
}

std::string EncodeOperand(CUtensorMap* map, const void* ptr, int64_t batch_stride, int64_t token_stride,
                          int64_t head_stride, const AttentionParams& p, const char* name) {
  EncodeTiledFn encode = GetEncodeTiled();
  if (encode == nullptr) return "attention_sm90: cuTensorMapEncodeTiled is unavailable";
  // Dimensions innermost first: head_dim, tokens, heads, batch. A stride of an extent-1 dimension
  // is never used; give TMA a legal one.
  auto legal = [](int64_t stride_elems) {
    return static_cast<cuuint64_t>(stride_elems > 0 ? stride_elems * 2 : 16);
  };
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(p.head_dim), static_cast<cuuint64_t>(p.tokens),
                              static_cast<cuuint64_t>(p.heads), static_cast<cuuint64_t>(p.batch)};
  const cuuint64_t strides[3] = {legal(token_stride), legal(head_stride), legal(batch_stride)};
  const cuuint32_t box[4] = {static_cast<cuuint32_t>(kBoxCols), static_cast<cuuint32_t>(kTile), 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = p.dtype == ElementType::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                      : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encode(map, type, 4, const_cast<void*>(ptr), dims, strides, box, elem_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    return std::string("attention_sm90: cuTensorMapEncodeTiled failed for ") + name + " (CUresult " +
           std::to_string(static_cast<int>(r)) + ")";
  }
  return "";
}

template <bool kBf16, int kD>
std::string Launch(const AttentionParams& p, cudaStream_t stream) {
  CUtensorMap tq, tk, tv;
  std::string err = EncodeOperand(&tq, p.q, p.q_batch_stride, p.q_token_stride, p.q_head_stride, p, "q");
  if (err.empty()) err = EncodeOperand(&tk, p.k, p.k_batch_stride, p.k_token_stride, p.k_head_stride, p, "k");
  if (err.empty()) err = EncodeOperand(&tv, p.v, p.v_batch_stride, p.v_token_stride, p.v_head_stride, p, "v");
  if (!err.empty()) return err;

  Sm90Args args;
  args.o = p.o;
  args.lse = p.lse;
  args.o_batch_stride = p.o_batch_stride;
  args.o_token_stride = p.o_token_stride;
  args.o_head_stride = p.o_head_stride;
  args.heads = p.heads;
  args.tokens = p.tokens;
  args.tiles = p.tiles;
  args.scale_log2 = p.scale_log2;
  args.row_offsets = p.row_offsets;
  args.col_ids = p.col_ids;
  args.row_order = p.row_order;

  auto kernel = AttentionSm90Kernel<kBf16, kD, kPingpongDefault>;
  constexpr int kSmem = Smem<kD>::kBytes;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return std::string("attention_sm90: cudaFuncSetAttribute: ") + cudaGetErrorString(e);
  const int64_t grid = static_cast<int64_t>(p.tiles) * p.heads * p.batch;
  kernel<<<static_cast<unsigned>(grid), kThreads, kSmem, stream>>>(tq, tk, tv, args);
  e = cudaGetLastError();
  if (e != cudaSuccess) return std::string("attention_sm90: launch failed: ") + cudaGetErrorString(e);
  return "";
}

}  // namespace

bool SupportsAttentionSm90(const AttentionParams& p, int device_major, int device_minor) {
  if (device_major != 9 || device_minor != 0) return false;
  if (p.dtype != ElementType::kBFloat16 && p.dtype != ElementType::kFloat16) return false;
  if (p.head_dim != 128 && p.head_dim != 64) return false;
  if (p.block != kTile) return false;
  if (p.batch < 1 || p.heads < 1 || p.tokens < 1) return false;
  if (p.tiles != (p.tokens + kTile - 1) / kTile) return false;
  if (static_cast<int64_t>(p.tiles) * p.heads * p.batch >= (int64_t{1} << 31)) return false;
  if (!p.q || !p.k || !p.v || !p.o || !p.row_offsets || !p.col_ids || !p.row_order) return false;
  if (!Aligned16(p.q) || !Aligned16(p.k) || !Aligned16(p.v) || !Aligned16(p.o)) return false;
  if (!StridesOk(p.q_batch_stride, p.q_token_stride, p.q_head_stride, p)) return false;
  if (!StridesOk(p.k_batch_stride, p.k_token_stride, p.k_head_stride, p)) return false;
  if (!StridesOk(p.v_batch_stride, p.v_token_stride, p.v_head_stride, p)) return false;
  if (!StridesOk(p.o_batch_stride, p.o_token_stride, p.o_head_stride, p)) return false;
  return true;
}

std::string LaunchAttentionSm90(const AttentionParams& p, cudaStream_t stream) {
  const bool bf16 = p.dtype == ElementType::kBFloat16;
  if (p.head_dim == 128) return bf16 ? Launch<true, 128>(p, stream) : Launch<false, 128>(p, stream);
  if (p.head_dim == 64) return bf16 ? Launch<true, 64>(p, stream) : Launch<false, 64>(p, stream);
  return "attention_sm90: unsupported head_dim " + std::to_string(p.head_dim);
}

}  // namespace radial::kernels
