// Generic radial attention forward kernel (sm_80 and newer): mma.sync m16n8k16 on bf16/fp16 with
// fp32 accumulation, online softmax, cp.async double buffering of K/V, iterating only over the kept
// key tiles of the tile CSR. One CTA computes one query tile (B rows) of one head of one batch
// entry; warp w owns query rows [16w, 16w + 16) of the tile.
//
// Shared memory holds Q [B x D], and two stages of K and V [64 x D]; rows are stored with a 16-byte
// XOR swizzle (chunk c of row r lives at chunk c ^ (r & 7)) so ldmatrix reads are conflict-free.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "attention_kernels.h"
#include "ptx_common.cuh"

namespace radial::kernels {
namespace {

constexpr int kKeysPerStep = 64;  // keys per inner step; a B = 128 tile takes two steps

template <typename Element>
struct ElementTraits;

template <>
struct ElementTraits<__nv_bfloat16> {
  static __device__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct ElementTraits<__half> {
  static __device__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// 16-byte async copy; src_bytes = 0 writes zeros (rows past the sequence end).
__device__ __forceinline__ void CopyAsync16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void CopyAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CopyAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void LoadMatrixX4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void LoadMatrixX4Trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// Element offset of (row, 16-byte chunk) in a swizzled [rows x kHeadDim] shared tile.
template <int kHeadDim>
__device__ __forceinline__ int SwizzledOffset(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}

// Copies rows [first, first + kRows) of one head into a swizzled shared tile; rows >= tokens are
// zero-filled (never attendable garbage: V rows multiply P = 0 and must not hold NaN).
template <typename Element, int kHeadDim, int kRows, int kThreads>
__device__ __forceinline__ void LoadTile(Element* tile, const Element* head_base, int64_t token_stride,
                                         int first, int tokens) {
  constexpr int kChunksPerRow = kHeadDim / 8;
  constexpr int kChunks = kRows * kChunksPerRow;
  static_assert(kChunks % kThreads == 0, "tile chunks must divide among the threads");
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int index = i * kThreads + static_cast<int>(threadIdx.x);
    const int row = index / kChunksPerRow;
    const int chunk = index % kChunksPerRow;
    const int token = first + row;
    const bool valid = token < tokens;
    const Element* src = head_base + static_cast<int64_t>(valid ? token : 0) * token_stride + chunk * 8;
    CopyAsync16(SharedAddress(tile + SwizzledOffset<kHeadDim>(row, chunk)), src, valid ? 16 : 0);
  }
}

template <typename Element, int kHeadDim, int kBlock>
__global__ void __launch_bounds__(kBlock * 2) RadialAttentionSm80Kernel(const AttentionParams p) {
  using Traits = ElementTraits<Element>;
  constexpr int kWarps = kBlock / 16;
  constexpr int kThreads = kWarps * 32;
  constexpr int kStepsPerTile = kBlock / kKeysPerStep;
  constexpr int kKSteps = kHeadDim / 16;      // k-steps of Q K^T
  constexpr int kKeyTiles = kKeysPerStep / 8;  // n-tiles of S
  constexpr int kDimTiles = kHeadDim / 8;      // n-tiles of O

  extern __shared__ __align__(128) unsigned char shared_raw[];
  Element* q_tile = reinterpret_cast<Element*>(shared_raw);
  Element* k_tiles = q_tile + kBlock * kHeadDim;              // 2 stages
  Element* v_tiles = k_tiles + 2 * kKeysPerStep * kHeadDim;   // 2 stages

  const int row_tile = p.row_order[blockIdx.x];
  const int head = blockIdx.y;
  const int batch = blockIdx.z;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group = lane / 4;  // accumulator row within the warp's 8-row half
  const int quad = lane % 4;   // accumulator column pair

  const auto* q_base = static_cast<const Element*>(p.q) + batch * p.q_batch_stride + head * p.q_head_stride;
  const auto* k_base = static_cast<const Element*>(p.k) + batch * p.k_batch_stride + head * p.k_head_stride;
  const auto* v_base = static_cast<const Element*>(p.v) + batch * p.v_batch_stride + head * p.v_head_stride;
  auto* o_base = static_cast<Element*>(p.o) + batch * p.o_batch_stride + head * p.o_head_stride;
  float* lse_base = p.lse + (static_cast<int64_t>(batch) * p.heads + head) * p.tokens;

  const int first_row = row_tile * kBlock;
  const int tile_begin = p.row_offsets[row_tile];
  const int tile_count = p.row_offsets[row_tile + 1] - tile_begin;
  // Inner steps: kStepsPerTile per kept tile, less the steps of the last tile that lie wholly past
  // the sequence end (only the last tile column can be ragged, and it is the row's last entry).
  int steps = tile_count * kStepsPerTile;
  if (tile_count > 0) {
    const int last_first_key = p.col_ids[tile_begin + tile_count - 1] * kBlock;
    const int last_keys = min(kBlock, p.tokens - last_first_key);
    steps -= kStepsPerTile - (last_keys + kKeysPerStep - 1) / kKeysPerStep;
  }
  auto step_first_key = [&](int step) {
    return p.col_ids[tile_begin + step / kStepsPerTile] * kBlock + (step % kStepsPerTile) * kKeysPerStep;
  };

  float acc_o[kDimTiles][4];
#pragma unroll
  for (int j = 0; j < kDimTiles; ++j) acc_o[j][0] = acc_o[j][1] = acc_o[j][2] = acc_o[j][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // raw (unscaled) score maxima of rows group, group+8
  float row_sum[2] = {0.f, 0.f};              // this thread's partial sums of exp

  if (steps > 0) {
    LoadTile<Element, kHeadDim, kBlock, kThreads>(q_tile, q_base, p.q_token_stride, first_row, p.tokens);
    const int key0 = step_first_key(0);
    LoadTile<Element, kHeadDim, kKeysPerStep, kThreads>(k_tiles, k_base, p.k_token_stride, key0, p.tokens);
    LoadTile<Element, kHeadDim, kKeysPerStep, kThreads>(v_tiles, v_base, p.v_token_stride, key0, p.tokens);
    CopyAsyncCommit();
  }

  uint32_t q_frag[kKSteps][4];
  for (int step = 0; step < steps; ++step) {
    const int stage = step & 1;
    CopyAsyncWait<0>();
    __syncthreads();  // stage `stage` is complete and every warp is done with the other stage
    if (step + 1 < steps) {
      const int next_key = step_first_key(step + 1);
      LoadTile<Element, kHeadDim, kKeysPerStep, kThreads>(k_tiles + (stage ^ 1) * kKeysPerStep * kHeadDim,
                                                          k_base, p.k_token_stride, next_key, p.tokens);
      LoadTile<Element, kHeadDim, kKeysPerStep, kThreads>(v_tiles + (stage ^ 1) * kKeysPerStep * kHeadDim,
                                                          v_base, p.v_token_stride, next_key, p.tokens);
      CopyAsyncCommit();
    }
    if (step == 0) {
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        const int row = warp * 16 + lane % 16;
        LoadMatrixX4(q_frag[ks], SharedAddress(q_tile + SwizzledOffset<kHeadDim>(row, ks * 2 + lane / 16)));
      }
    }
    const Element* k_tile = k_tiles + stage * kKeysPerStep * kHeadDim;
    const Element* v_tile = v_tiles + stage * kKeysPerStep * kHeadDim;

    // S = Q K^T for this warp's 16 rows and the step's 64 keys.
    float acc_s[kKeyTiles][4];
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) acc_s[j][0] = acc_s[j][1] = acc_s[j][2] = acc_s[j][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
      for (int j = 0; j < kKeyTiles; j += 2) {
        uint32_t b[4];
        const int matrix = lane / 8;
        const int key = j * 8 + (matrix / 2) * 8 + lane % 8;
        LoadMatrixX4(b, SharedAddress(k_tile + SwizzledOffset<kHeadDim>(key, ks * 2 + matrix % 2)));
        Traits::Mma(acc_s[j], q_frag[ks], b[0], b[1]);
        Traits::Mma(acc_s[j + 1], q_frag[ks], b[2], b[3]);
      }
    }

    // Keys past the sequence end (ragged last tile only) get -inf scores.
    const int first_key = step_first_key(step);
    if (first_key + kKeysPerStep > p.tokens) {
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
        const int key = first_key + j * 8 + quad * 2;
        if (key >= p.tokens) acc_s[j][0] = acc_s[j][2] = -INFINITY;
        if (key + 1 >= p.tokens) acc_s[j][1] = acc_s[j][3] = -INFINITY;
      }
    }

    // Online softmax; the four threads of a quad share two rows.
    float step_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) {
      step_max[0] = fmaxf(step_max[0], fmaxf(acc_s[j][0], acc_s[j][1]));
      step_max[1] = fmaxf(step_max[1], fmaxf(acc_s[j][2], acc_s[j][3]));
    }
    float scaled_max[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 1));
      step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 2));
      const float new_max = fmaxf(row_max[r], step_max[r]);  // finite: every step has a real key
      const float correction = Exp2((row_max[r] - new_max) * p.scale_log2);
      row_max[r] = new_max;
      scaled_max[r] = new_max * p.scale_log2;
      row_sum[r] *= correction;
#pragma unroll
      for (int j = 0; j < kDimTiles; ++j) {
        acc_o[j][2 * r] *= correction;
        acc_o[j][2 * r + 1] *= correction;
      }
    }

    // O += P V, with P converted in registers from the S accumulators into A fragments.
#pragma unroll
    for (int ks = 0; ks < kKeysPerStep / 16; ++ks) {
      float pr[2][4];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          pr[half][e] = Exp2(fmaf(acc_s[2 * ks + half][e], p.scale_log2, -scaled_max[e / 2]));
        }
        row_sum[0] += pr[half][0] + pr[half][1];
        row_sum[1] += pr[half][2] + pr[half][3];
      }
      const uint32_t a[4] = {PackPair<Element>(pr[0][0], pr[0][1]), PackPair<Element>(pr[0][2], pr[0][3]),
                             PackPair<Element>(pr[1][0], pr[1][1]), PackPair<Element>(pr[1][2], pr[1][3])};
#pragma unroll
      for (int j = 0; j < kDimTiles; j += 2) {
        uint32_t b[4];
        const int matrix = lane / 8;
        const int key = ks * 16 + (matrix % 2) * 8 + lane % 8;
        LoadMatrixX4Trans(b, SharedAddress(v_tile + SwizzledOffset<kHeadDim>(key, j + matrix / 2)));
        Traits::Mma(acc_o[j], a, b[0], b[1]);
        Traits::Mma(acc_o[j + 1], a, b[2], b[3]);
      }
    }
  }

  // Epilogue: normalise, write O and the natural-log LSE. Rows with no kept tile write 0 / -inf.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int token = first_row + warp * 16 + group + r * 8;
    if (token >= p.tokens) continue;
    const bool any = steps > 0;
    const float inv = any ? 1.f / row_sum[r] : 0.f;
    Element* out_row = o_base + static_cast<int64_t>(token) * p.o_token_stride;
#pragma unroll
    for (int j = 0; j < kDimTiles; ++j) {
      const uint32_t packed = PackPair<Element>(acc_o[j][2 * r] * inv, acc_o[j][2 * r + 1] * inv);
      *reinterpret_cast<uint32_t*>(out_row + j * 8 + quad * 2) = packed;
    }
    if (quad == 0) {
      lse_base[token] = any ? (row_max[r] * p.scale_log2 + __log2f(row_sum[r])) * 0.69314718055994530942f
                            : -INFINITY;
    }
  }
}

template <typename Element, int kHeadDim, int kBlock>
std::string Launch(const AttentionParams& p, cudaStream_t stream) {
  constexpr int kThreads = kBlock * 2;
  constexpr size_t kShared = (kBlock + 4 * kKeysPerStep) * kHeadDim * sizeof(Element);
  auto kernel = RadialAttentionSm80Kernel<Element, kHeadDim, kBlock>;
  cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared);
  if (error != cudaSuccess) return cudaGetErrorString(error);
  const dim3 grid(p.tiles, p.heads, p.batch);
  kernel<<<grid, kThreads, kShared, stream>>>(p);
  error = cudaGetLastError();
  return error == cudaSuccess ? std::string() : std::string(cudaGetErrorString(error));
}

template <typename Element>
std::string LaunchForElement(const AttentionParams& p, cudaStream_t stream) {
  if (p.head_dim == 64) {
    return p.block == 64 ? Launch<Element, 64, 64>(p, stream) : Launch<Element, 64, 128>(p, stream);
  }
  return p.block == 64 ? Launch<Element, 128, 64>(p, stream) : Launch<Element, 128, 128>(p, stream);
}

}  // namespace

bool SupportsAttentionSm80(const AttentionParams& p) {
  return (p.head_dim == 64 || p.head_dim == 128) && (p.block == 64 || p.block == 128) && p.heads <= 65535 &&
         p.batch <= 65535 && p.tiles >= 1;
}

std::string LaunchAttentionSm80(const AttentionParams& p, cudaStream_t stream) {
  if (!SupportsAttentionSm80(p)) return "unsupported problem for the sm80 kernel";
  return p.dtype == ElementType::kBFloat16 ? LaunchForElement<__nv_bfloat16>(p, stream)
                                           : LaunchForElement<__half>(p, stream);
}

}  // namespace radial::kernels
