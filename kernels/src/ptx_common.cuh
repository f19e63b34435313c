// Small device helpers shared by the CUDA attention kernels. Device code only; no LibTorch.
#ifndef RADIAL_KERNELS_PTX_COMMON_CUH_
#define RADIAL_KERNELS_PTX_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace radial::kernels {

// 2^x with the hardware approximation (flush-to-zero); exp2(-inf) = +0.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats rounded to one 32-bit register of two 16-bit elements, `lo` in the low half (the
// lower k index of an mma operand fragment). Element is __nv_bfloat16 or __half.
template <typename Element>
__device__ __forceinline__ uint32_t PackPair(float lo, float hi) {
  static_assert(std::is_same_v<Element, __nv_bfloat16> || std::is_same_v<Element, __half>);
  uint32_t packed;
  if constexpr (std::is_same_v<Element, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    packed = *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    packed = *reinterpret_cast<uint32_t*>(&v);
  }
  return packed;
}

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_PTX_COMMON_CUH_
