// The CUDA kernel variants behind torch.ops.radial.attention. Each variant says whether it can run
// a problem and launches it asynchronously on `stream`: no host synchronisation, no allocation, so
// the calls can be captured in a CUDA graph. Launch errors are returned as text ("" = launched).
#ifndef RADIAL_KERNELS_ATTENTION_KERNELS_H_
#define RADIAL_KERNELS_ATTENTION_KERNELS_H_

#include <cuda_runtime.h>

#include <string>

#include "attention_params.h"

namespace radial::kernels {

// Generic variant (mma.sync, sm_80 and newer): bf16/fp16, head_dim 64/128, block 64/128.
bool SupportsAttentionSm80(const AttentionParams& params);
std::string LaunchAttentionSm80(const AttentionParams& params, cudaStream_t stream);

// Hopper variant (wgmma + TMA, sm_90a only). Supports() is false on other devices.
bool SupportsAttentionSm90(const AttentionParams& params, int device_major, int device_minor);
std::string LaunchAttentionSm90(const AttentionParams& params, cudaStream_t stream);

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_ATTENTION_KERNELS_H_
