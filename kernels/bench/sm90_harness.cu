// Standalone check + timing harness for the Hopper attention kernel (no LibTorch).
// Builds tile CSRs on the host (dense, random with empty rows, banded, and the radial rule's
// closed form for s % 128 == 0), runs LaunchAttentionSm90 on random inputs, compares against a
// naive fp32 reference kernel over the same CSR, checks that every output element was written
// (outputs poisoned with NaN first) and nothing outside the output view, then times the
// Wan-14B radial case and a dense case with CUDA events.
// Build: kernels/bench/sm90_harness.sh   Run: ./sm90_harness [--no-timing]
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention_kernels.h"
#include "attention_params.h"

using radial::kernels::AttentionParams;
using radial::kernels::ElementType;

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__, #x);                                                          \
      std::exit(2);                                                                        \
    }                                                                                      \
  } while (0)

// ----------------------------------------------------------------------------- masks
struct Csr {
  int tiles = 0;
  std::vector<int32_t> off, col, order;
  int64_t kept() const { return static_cast<int64_t>(col.size()); }
};

Csr FromMask(const std::vector<uint8_t>& m, int tiles) {
  Csr c;
  c.tiles = tiles;
  c.off.assign(tiles + 1, 0);
  for (int r = 0; r < tiles; ++r) {
    for (int k = 0; k < tiles; ++k) {
      if (m[static_cast<size_t>(r) * tiles + k]) c.col.push_back(k);
    }
    c.off[r + 1] = static_cast<int32_t>(c.col.size());
  }
  c.order.resize(tiles);
  std::iota(c.order.begin(), c.order.end(), 0);
  std::stable_sort(c.order.begin(), c.order.end(), [&](int a, int b) {
    return (c.off[a + 1] - c.off[a]) > (c.off[b + 1] - c.off[b]);
  });
  return c;
}

std::vector<uint8_t> MaskDense(int tiles) { return std::vector<uint8_t>(size_t(tiles) * tiles, 1); }

std::vector<uint8_t> MaskRandom(int tiles, double prob, int empty_every, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> m(size_t(tiles) * tiles, 0);
  for (int r = 0; r < tiles; ++r) {
    if (empty_every > 0 && r % empty_every == 1) continue;
    bool any = false;
    for (int k = 0; k < tiles; ++k) {
      if (u(g) < prob) m[size_t(r) * tiles + k] = 1, any = true;
    }
    if (!any) m[size_t(r) * tiles + (tiles - 1)] = 1;  // exercise the ragged last tile alone
  }
  if (tiles > 2) {  // one row keeps only the last (possibly ragged) tile
    std::fill(m.begin() + size_t(tiles) * 2, m.begin() + size_t(tiles) * 3, 0);
    m[size_t(tiles) * 2 + tiles - 1] = 1;
  }
  return m;
}

std::vector<uint8_t> MaskBand(int tiles, int k) {
  std::vector<uint8_t> m(size_t(tiles) * tiles, 0);
  for (int r = 0; r < tiles; ++r)
    for (int c = std::max(0, r - k); c <= std::min(tiles - 1, r + k); ++c) m[size_t(r) * tiles + c] = 1;
  return m;
}

int BitLen(int64_t x) {
  int b = 0;
  while (x > 0) ++b, x >>= 1;
  return b;
}

// Radial rule, closed form for B = 128 and s % 128 == 0 (radial-attention.md).
std::vector<uint8_t> MaskRadial(int f, int s, double decay, bool sink) {
  const int B = 128, tpf = s / B, tiles = f * tpf;
  const int64_t P = int64_t{1} << BitLen(s);
  std::vector<uint8_t> m(size_t(tiles) * tiles, 0);
  for (int i = 0; i < f; ++i) {
    for (int j = 0; j < f; ++j) {
      const int d = std::abs(i - j);
      int64_t w;
      if (d <= 1 || (sink && j == 0)) {
        w = s;
      } else {
        const int64_t L0 = P >> BitLen(d);
        if (L0 < 128 && d % (128 / L0) != 0) continue;
        const double L = double(L0) * decay;
        w = L >= B ? int64_t(std::floor(L)) : B;
      }
      const int64_t K = (w + 22) / B;
      for (int a = 0; a < tpf; ++a)
        for (int b = 0; b < tpf; ++b)
          if (std::abs(a - b) <= K) m[size_t(i * tpf + a) * tiles + (j * tpf + b)] = 1;
    }
  }
  return m;
}

// ----------------------------------------------------------------------------- device helpers
template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }

__device__ __forceinline__ uint32_t Hash(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

template <typename T>
__global__ void FillKernel(T* p, int64_t n, uint64_t seed, float amp) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float u = (Hash(i * 0x9E3779B97F4A7C15ULL + seed) >> 8) * (1.0f / 16777216.0f);
    p[i] = FromFloat<T>((2.f * u - 1.f) * amp);
  }
}

__global__ void FillU16(uint16_t* p, int64_t n, uint16_t v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) p[i] = v;
}
__global__ void FillF32(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) p[i] = v;
}

// Counts: [0] valid elements that are not finite, [1] elements outside the view that changed.
template <typename T>
__global__ void CheckOutKernel(const T* o, int64_t total, int64_t bs, int64_t ts, int64_t hs, int batch,
                               int tokens, int heads, int D, uint16_t poison, unsigned long long* counts) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / bs, r1 = e % bs, t = r1 / ts, r2 = r1 % ts, h = r2 / hs, d = r2 % hs;
    const bool valid = b < batch && t < tokens && h < heads && d < D;
    uint16_t bits;
    memcpy(&bits, o + e, 2);
    if (valid) {
      if (!isfinite(ToFloat(o[e]))) atomicAdd(counts + 0, 1ULL);
    } else if (bits != poison) {
      atomicAdd(counts + 1, 1ULL);
    }
  }
}

// Naive reference: one CTA (128 threads) per listed row (flat = (b*heads + h)*tokens + t).
template <typename T>
__global__ void RefKernel(AttentionParams p, const int64_t* rows, float* ref_o, float* ref_lse) {
  extern __shared__ float sm[];  // q[D], red[D], scratch[128]
  float* q = sm;
  float* red = sm + p.head_dim;
  float* scratch = red + p.head_dim;
  const int64_t flat = rows[blockIdx.x];
  const int t = int(flat % p.tokens);
  const int h = int((flat / p.tokens) % p.heads);
  const int b = int(flat / (int64_t(p.tokens) * p.heads));
  const int D = p.head_dim;
  const T* Q = static_cast<const T*>(p.q) + b * p.q_batch_stride + t * p.q_token_stride + h * p.q_head_stride;
  for (int d = threadIdx.x; d < D; d += blockDim.x) q[d] = ToFloat(Q[d]), red[d] = 0.f;
  __syncthreads();
  const float scale = p.scale_log2 / 1.4426950408889634f;
  const int r = t / p.block;
  const int beg = p.row_offsets[r], end = p.row_offsets[r + 1];
  float mx = -INFINITY;
  for (int i = beg; i < end; ++i) {
    const int key = p.col_ids[i] * p.block + threadIdx.x;
    if (threadIdx.x < p.block && key < p.tokens) {
      const T* K = static_cast<const T*>(p.k) + b * p.k_batch_stride + key * p.k_token_stride + h * p.k_head_stride;
      float s = 0.f;
      for (int d = 0; d < D; ++d) s += q[d] * ToFloat(K[d]);
      mx = fmaxf(mx, s * scale);
    }
  }
  scratch[threadIdx.x] = mx;
  __syncthreads();
  for (int w = 64; w > 0; w >>= 1) {
    if (threadIdx.x < w) scratch[threadIdx.x] = fmaxf(scratch[threadIdx.x], scratch[threadIdx.x + w]);
    __syncthreads();
  }
  const float M = scratch[0];
  __syncthreads();
  float acc[128];
  for (int d = 0; d < 128; ++d) acc[d] = 0.f;
  float sum = 0.f;
  for (int i = beg; i < end; ++i) {
    const int key = p.col_ids[i] * p.block + threadIdx.x;
    if (threadIdx.x < p.block && key < p.tokens) {
      const T* K = static_cast<const T*>(p.k) + b * p.k_batch_stride + key * p.k_token_stride + h * p.k_head_stride;
      const T* V = static_cast<const T*>(p.v) + b * p.v_batch_stride + key * p.v_token_stride + h * p.v_head_stride;
      float s = 0.f;
      for (int d = 0; d < D; ++d) s += q[d] * ToFloat(K[d]);
      const float e = expf(s * scale - M);
      sum += e;
      for (int d = 0; d < D; ++d) acc[d] += e * ToFloat(V[d]);
    }
  }
  for (int d = 0; d < D; ++d) atomicAdd(red + d, acc[d]);
  scratch[threadIdx.x] = sum;
  __syncthreads();
  for (int w = 64; w > 0; w >>= 1) {
    if (threadIdx.x < w) scratch[threadIdx.x] += scratch[threadIdx.x + w];
    __syncthreads();
  }
  const float S = scratch[0];
  for (int d = threadIdx.x; d < D; d += blockDim.x) ref_o[blockIdx.x * int64_t(D) + d] = S > 0 ? red[d] / S : 0.f;
  if (threadIdx.x == 0) ref_lse[blockIdx.x] = S > 0 ? M + logf(S) : -INFINITY;
}

template <typename T>
__global__ void GatherKernel(AttentionParams p, const int64_t* rows, float* got_o, float* got_lse) {
  const int64_t flat = rows[blockIdx.x];
  const int t = int(flat % p.tokens);
  const int h = int((flat / p.tokens) % p.heads);
  const int b = int(flat / (int64_t(p.tokens) * p.heads));
  const T* O = static_cast<const T*>(p.o) + b * p.o_batch_stride + t * p.o_token_stride + h * p.o_head_stride;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) got_o[blockIdx.x * int64_t(p.head_dim) + d] = ToFloat(O[d]);
  if (threadIdx.x == 0) got_lse[blockIdx.x] = p.lse[flat];
}

// ----------------------------------------------------------------------------- cases
struct Case {
  std::string name;
  int batch, heads, tokens, D;
  ElementType dtype;
  std::vector<uint8_t> mask;  // tiles x tiles
  bool qkv_packed = false;    // q, k, v interleaved in one [b, n, 3, h, d] buffer
  int o_token_pad = 0;        // extra elements per token row of o (multiple of 8)
  float amp = 1.7f;
  int64_t sample_rows = 0;    // 0: check every row against the reference
  bool time_it = false;
  bool check = true;
  bool graph_test = false;    // also replay the launch from a captured CUDA graph, bit-compare
  double density = 1.0;
};

struct Result {
  bool ok = true;
  double max_err = 0, rel_l2 = 0, max_lse_err = 0;
  unsigned long long nonfinite = 0, outside = 0;
  int lse_bad = 0;
  int graph_bad = -1;  // -1: not run, 0: graph replay matched eager bit-for-bit
  double ms = 0, tflops = 0;
};

template <typename T>
Result RunCase(const Case& c, bool timing) {
  Result res;
  const int tiles = (c.tokens + 127) / 128;
  Csr csr = FromMask(c.mask, tiles);
  const int D = c.D, H = c.heads, N = c.tokens, Bt = c.batch;
  // Inputs.
  T *q, *k, *v, *base = nullptr;
  int64_t in_bs, in_ts, in_hs = D;
  int64_t in_elems;
  if (c.qkv_packed) {
    in_ts = 3LL * H * D;
    in_bs = in_ts * N;
    in_elems = in_bs * Bt;
    CK(cudaMalloc(&base, in_elems * sizeof(T)));
    FillKernel<T><<<1024, 256>>>(base, in_elems, 1234 + N, c.amp);
    q = base, k = base + H * D, v = base + 2 * H * D;
  } else {
    in_ts = int64_t(H) * D;
    in_bs = in_ts * N;
    in_elems = in_bs * Bt;
    CK(cudaMalloc(&q, in_elems * sizeof(T)));
    CK(cudaMalloc(&k, in_elems * sizeof(T)));
    CK(cudaMalloc(&v, in_elems * sizeof(T)));
    FillKernel<T><<<1024, 256>>>(q, in_elems, 11 + N, c.amp);
    FillKernel<T><<<1024, 256>>>(k, in_elems, 22 + N, c.amp);
    FillKernel<T><<<1024, 256>>>(v, in_elems, 33 + N, 1.0f);
  }
  CK(cudaGetLastError());
  // Output with a guard: extra token rows per batch entry and optional padding per token row.
  const int64_t o_ts = int64_t(H) * D + c.o_token_pad, o_bs = o_ts * (N + 5);
  const int64_t o_elems = o_bs * Bt;
  T* o;
  float* lse;
  CK(cudaMalloc(&o, o_elems * sizeof(T)));
  CK(cudaMalloc(&lse, int64_t(Bt) * H * N * sizeof(float)));
  int32_t *d_off, *d_col, *d_order;
  CK(cudaMalloc(&d_off, csr.off.size() * 4));
  CK(cudaMalloc(&d_col, std::max<size_t>(1, csr.col.size()) * 4));
  CK(cudaMalloc(&d_order, csr.order.size() * 4));
  CK(cudaMemcpy(d_off, csr.off.data(), csr.off.size() * 4, cudaMemcpyHostToDevice));
  if (!csr.col.empty()) CK(cudaMemcpy(d_col, csr.col.data(), csr.col.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_order, csr.order.data(), csr.order.size() * 4, cudaMemcpyHostToDevice));

  AttentionParams p;
  p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = in_bs;
  p.q_token_stride = p.k_token_stride = p.v_token_stride = in_ts;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = in_hs;
  p.o_batch_stride = o_bs, p.o_token_stride = o_ts, p.o_head_stride = D;
  p.batch = Bt, p.heads = H, p.tokens = N, p.head_dim = D, p.block = 128, p.tiles = tiles;
  p.scale_log2 = float(1.0 / std::sqrt(double(D)) * 1.4426950408889634);
  p.row_offsets = d_off, p.col_ids = d_col, p.row_order = d_order;
  p.dtype = c.dtype;

  if (!radial::kernels::SupportsAttentionSm90(p, 9, 0)) {
    std::printf("[%s] Supports() returned false\n", c.name.c_str());
    res.ok = false;
    return res;
  }
  const uint16_t poison = 0xFFFF;  // NaN in bf16 and fp16
  FillU16<<<1024, 256>>>(reinterpret_cast<uint16_t*>(o), o_elems, poison);
  FillF32<<<1024, 256>>>(lse, int64_t(Bt) * H * N, NAN);
  std::string err = radial::kernels::LaunchAttentionSm90(p, 0);
  if (!err.empty()) {
    std::printf("[%s] launch error: %s\n", c.name.c_str(), err.c_str());
    res.ok = false;
    return res;
  }
  CK(cudaDeviceSynchronize());

  if (c.check) {
    unsigned long long* counts;
    CK(cudaMalloc(&counts, 16));
    CK(cudaMemset(counts, 0, 16));
    CheckOutKernel<T><<<2048, 256>>>(o, o_elems, o_bs, o_ts, D, Bt, N, H, D, poison, counts);
    unsigned long long hc[2];
    CK(cudaMemcpy(hc, counts, 16, cudaMemcpyDeviceToHost));
    res.nonfinite = hc[0], res.outside = hc[1];
    CK(cudaFree(counts));
    // LSE: -inf exactly for empty tile rows, finite otherwise.
    std::vector<float> hl(size_t(Bt) * H * N);
    CK(cudaMemcpy(hl.data(), lse, hl.size() * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < hl.size(); ++i) {
      const int t = int(i % N), r = t / 128;
      const bool empty = csr.off[r + 1] == csr.off[r];
      if (empty ? !(std::isinf(hl[i]) && hl[i] < 0) : !std::isfinite(hl[i])) ++res.lse_bad;
    }
    // Reference rows.
    std::vector<int64_t> rows;
    const int64_t total_rows = int64_t(Bt) * H * N;
    if (c.sample_rows == 0 || c.sample_rows >= total_rows) {
      rows.resize(total_rows);
      std::iota(rows.begin(), rows.end(), 0);
    } else {
      std::mt19937_64 g(99);
      for (int64_t i = 0; i < c.sample_rows; ++i) rows.push_back(int64_t(g() % total_rows));
      rows.push_back(0);
      rows.push_back(total_rows - 1);
    }
    int64_t *d_rows;
    float *ref_o, *ref_l, *got_o, *got_l;
    const int64_t R = rows.size();
    CK(cudaMalloc(&d_rows, R * 8));
    CK(cudaMalloc(&ref_o, R * D * 4));
    CK(cudaMalloc(&got_o, R * D * 4));
    CK(cudaMalloc(&ref_l, R * 4));
    CK(cudaMalloc(&got_l, R * 4));
    CK(cudaMemcpy(d_rows, rows.data(), R * 8, cudaMemcpyHostToDevice));
    for (int64_t s0 = 0; s0 < R; s0 += 60000) {
      const int64_t nb = std::min<int64_t>(60000, R - s0);
      RefKernel<T><<<unsigned(nb), 128, (2 * D + 128) * 4>>>(p, d_rows + s0, ref_o + s0 * D, ref_l + s0);
      GatherKernel<T><<<unsigned(nb), 128>>>(p, d_rows + s0, got_o + s0 * D, got_l + s0);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> hro(R * D), hgo(R * D), hrl(R), hgl(R);
    CK(cudaMemcpy(hro.data(), ref_o, R * D * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hgo.data(), got_o, R * D * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hrl.data(), ref_l, R * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hgl.data(), got_l, R * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int64_t i = 0; i < R * D; ++i) {
      const double d = double(hgo[i]) - hro[i];
      if (!std::isfinite(hgo[i])) res.max_err = INFINITY;
      res.max_err = std::max(res.max_err, std::fabs(d));
      num += d * d, den += double(hro[i]) * hro[i];
    }
    res.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    for (int64_t i = 0; i < R; ++i) {
      if (std::isinf(hrl[i])) {
        if (!(std::isinf(hgl[i]) && hgl[i] < 0)) res.max_lse_err = INFINITY;
      } else {
        res.max_lse_err = std::max(res.max_lse_err, double(std::fabs(hgl[i] - hrl[i])));
      }
    }
    if (!std::isfinite(res.max_lse_err)) res.max_lse_err = 1e30;
    cudaFree(d_rows), cudaFree(ref_o), cudaFree(got_o), cudaFree(ref_l), cudaFree(got_l);
    res.ok = res.nonfinite == 0 && res.outside == 0 && res.lse_bad == 0 && res.max_err < 3e-2 &&
             res.rel_l2 < 1e-2 && res.max_lse_err < 2e-3;
  }

  if (c.graph_test) {
    std::vector<uint16_t> eager(o_elems), replay(o_elems);
    CK(cudaMemcpy(eager.data(), o, o_elems * 2, cudaMemcpyDeviceToHost));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    std::string gerr = radial::kernels::LaunchAttentionSm90(p, st);
    CK(cudaStreamEndCapture(st, &graph));
    res.graph_bad = 1;
    if (gerr.empty()) {
      CK(cudaGraphInstantiate(&exec, graph, 0));
      FillU16<<<1024, 256>>>(reinterpret_cast<uint16_t*>(o), o_elems, poison);
      CK(cudaDeviceSynchronize());
      CK(cudaGraphLaunch(exec, st));
      CK(cudaGraphLaunch(exec, st));
      CK(cudaStreamSynchronize(st));
      CK(cudaMemcpy(replay.data(), o, o_elems * 2, cudaMemcpyDeviceToHost));
      res.graph_bad = eager == replay ? 0 : 1;
      CK(cudaGraphExecDestroy(exec));
    } else {
      std::printf("[%s] launch under capture failed: %s\n", c.name.c_str(), gerr.c_str());
    }
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
    if (res.graph_bad) res.ok = false;
  }

  if (timing && c.time_it) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) radial::kernels::LaunchAttentionSm90(p, 0);
    std::vector<float> ts;
    for (int i = 0; i < 20; ++i) {
      CK(cudaEventRecord(e0));
      radial::kernels::LaunchAttentionSm90(p, 0);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      ts.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(ts.begin(), ts.end());
    res.ms = ts[ts.size() / 2];
    // Computed work: every kept (query tile, key tile) pair, ragged edges counted exactly.
    double pairs = 0;
    for (int r = 0; r < tiles; ++r) {
      const int rows_r = std::min(128, N - r * 128);
      for (int i = csr.off[r]; i < csr.off[r + 1]; ++i) pairs += double(rows_r) * std::min(128, N - csr.col[i] * 128);
    }
    res.tflops = 4.0 * pairs * D * H * Bt / (res.ms * 1e-3) / 1e12;
    std::printf("[%s] time %.3f ms (min %.3f max %.3f), %.1f TF/s per computed block, density %.4f\n",
                c.name.c_str(), res.ms, ts.front(), ts.back(), res.tflops,
                double(csr.kept()) / (double(tiles) * tiles));
  }
  if (c.qkv_packed) {
    cudaFree(base);
  } else {
    cudaFree(q), cudaFree(k), cudaFree(v);
  }
  cudaFree(o), cudaFree(lse), cudaFree(d_off), cudaFree(d_col), cudaFree(d_order);
  return res;
}

int main(int argc, char** argv) {
  bool timing = true;
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--no-timing")) timing = false;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);

  const ElementType bf = ElementType::kBFloat16, fp = ElementType::kFloat16;
  std::vector<Case> cases;
  auto tl = [](int n) { return (n + 127) / 128; };
  cases.push_back({"dense_n640_b1_h1_d128", 1, 1, 640, 128, bf, MaskDense(5)});
  cases.push_back({"random_n1000_b2_h3_d128", 2, 3, 1000, 128, bf, MaskRandom(tl(1000), 0.5, 3, 1)});
  cases.push_back({"band_n777_b2_h5_d64", 2, 5, 777, 64, bf, MaskBand(tl(777), 1)});
  cases.push_back({"random_n1500_b1_h2_d128_fp16", 1, 2, 1500, 128, fp, MaskRandom(tl(1500), 0.4, 4, 2)});
  cases.push_back({"random_n900_b2_h2_d64_fp16", 2, 2, 900, 64, fp, MaskRandom(tl(900), 0.6, 5, 3)});
  {
    Case c{"packedqkv_pad_n1111_b2_h4_d128", 2, 4, 1111, 128, bf, MaskRandom(tl(1111), 0.5, 4, 4)};
    c.qkv_packed = true, c.o_token_pad = 8, c.graph_test = true;
    cases.push_back(c);
  }
  cases.push_back({"tiny_n60_b2_h3_d128", 2, 3, 60, 128, bf, MaskDense(1)});
  {
    Case c{"large_amp_n2000_b2_h40_d128", 2, 40, 2000, 128, bf, MaskRandom(tl(2000), 0.7, 6, 5)};
    c.amp = 4.0f;
    cases.push_back(c);
  }
  {
    Case c{"radial_f8_s1024_h8_d128", 1, 8, 8 * 1024, 128, bf, MaskRadial(8, 1024, 0.5, true)};
    c.sample_rows = 20000;
    cases.push_back(c);
  }
  {
    Case c{"wan14b_f18_s3840_h40_d128", 1, 40, 18 * 3840, 128, bf, MaskRadial(18, 3840, 0.2, true)};
    c.sample_rows = 3000, c.time_it = true;
    cases.push_back(c);
  }
  {
    Case c{"dense_n16384_h40_d128", 1, 40, 16384, 128, bf, MaskDense(128)};
    c.sample_rows = 2000, c.time_it = true;
    cases.push_back(c);
  }
  {
    Case c{"hunyuan_f30_s3840_h24_d128", 1, 24, 30 * 3840, 128, bf, MaskRadial(30, 3840, 0.95, false)};
    c.sample_rows = 1000, c.time_it = true;
    cases.push_back(c);
  }
  {
    Case c{"wan14b_f18_s3840_h40_d64", 1, 40, 18 * 3840, 64, bf, MaskRadial(18, 3840, 0.2, true)};
    c.sample_rows = 2000, c.time_it = true;
    cases.push_back(c);
  }

  int failures = 0;
  std::printf("%-36s %4s %10s %10s %10s %8s %8s %6s %5s %9s %8s\n", "case", "ok", "max_err", "rel_l2",
              "lse_err", "nonfin", "outside", "lsebad", "graph", "ms", "TF/s");
  for (const Case& c : cases) {
    Result r = c.dtype == bf ? RunCase<__nv_bfloat16>(c, timing) : RunCase<__half>(c, timing);
    failures += !r.ok;
    std::printf("%-36s %4s %10.3g %10.3g %10.3g %8llu %8llu %6d %5s %9.3f %8.1f\n", c.name.c_str(),
                r.ok ? "PASS" : "FAIL", r.max_err, r.rel_l2, r.max_lse_err, r.nonfinite, r.outside, r.lse_bad,
                r.graph_bad < 0 ? "-" : (r.graph_bad ? "BAD" : "ok"), r.ms, r.tflops);
    std::fflush(stdout);
  }
  std::printf("%s: %d failing case(s)\n", failures ? "FAILED" : "ALL PASSED", failures);
  return failures ? 1 : 0;
}
