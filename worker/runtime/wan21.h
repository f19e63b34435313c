// The Wan2.1 text-to-video family (manifest architecture "wan2.1"): UMT5 text encoder, the DiT with
// radial attention, the causal 3-D VAE decoded chunk by chunk. Its LibTorch code is in wan21.cc.
#ifndef RADIAL_WORKER_RUNTIME_WAN21_H_
#define RADIAL_WORKER_RUNTIME_WAN21_H_

#include <memory>

#include "absl/status/statusor.h"
#include "model_family.h"

namespace radial::worker {

inline constexpr char kWan21Architecture[] = "wan2.1";

// Loads the bundle's tokenizer and its three TorchScript modules onto options.device.
absl::StatusOr<std::unique_ptr<ModelFamily>> LoadWan21(const ModelManifest& manifest, const LoadOptions& options);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_WAN21_H_
