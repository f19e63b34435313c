// A model family: the stages of one generation for one architecture (the manifest's
// `architecture`), behind a plain C++ interface so that Pipeline (pipeline.cc) holds no model
// specifics and no LibTorch. A family keeps the tensors that pass from one stage to the next
// (text conditioning, latents) itself, between the calls of one generation.
//
// Adding a family: a new file implementing ModelFamily, and one line in LoadModelFamily
// (model_family.cc) mapping its architecture name to its loader.
//
// Errors from a stage: INVALID_ARGUMENT for input the model cannot take, RESOURCE_EXHAUSTED when the
// device has too little memory for the size (the message names it; the family has released what the
// stage held, so the next job can run), CANCELLED when `cancelled` fired, UNAVAILABLE when another
// rank of a device group went away (the group restarts before the next job: the job can run
// again), INTERNAL otherwise.
#ifndef RADIAL_WORKER_RUNTIME_MODEL_FAMILY_H_
#define RADIAL_WORKER_RUNTIME_MODEL_FAMILY_H_

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model_manifest.h"
#include "pipeline.h"

namespace radial::worker {

class ModelFamily {
 public:
  virtual ~ModelFamily() = default;

  virtual std::string device_name() const = 0;

  // Stage 1: the text conditioning of the prompt (and of the negative prompt when `guided`).
  virtual absl::Status EncodeText(const GenerationParams& params, bool guided) = 0;
  // Stage 2: every denoising step from seeded noise; callbacks.progress(kDenoising, i + 1, steps)
  // after step i, callbacks.cancelled polled before each step. Step i is dense when
  // StepIsDense(params, i).
  virtual absl::Status Denoise(const GenerationParams& params, const GenerationCallbacks& callbacks) = 0;
  // Stage 3: decodes the latents chunk by chunk, handing each chunk's frames to callbacks.frame as
  // soon as they are on the host, with callbacks.progress(kDecoding, frames delivered, frames).
  virtual absl::Status DecodeAndStream(const GenerationParams& params, const GenerationCallbacks& callbacks) = 0;
  // Drops what the generation left (conditioning, latents), also after a failed stage.
  virtual void EndGeneration() = 0;
  // Returns when the device has finished the work queued so far (a stage's time is then its own).
  virtual void WaitForDevice() = 0;
  // A follower rank of a device group (LoadOptions::group_rank >= 1): runs the leader's jobs'
  // text and denoising stages with it until the leader goes away. UNIMPLEMENTED for a family
  // without device groups.
  virtual absl::Status ServeGroup() { return absl::UnimplementedError("device groups: not supported by this model"); }
};

// A LibTorch exception's text from `stage` as a status: RESOURCE_EXHAUSTED naming the request's
// size and the device when it says the device (or the host) ran out of memory, INTERNAL otherwise.
// TorchScript re-throws errors raised inside a module as plain runtime errors, so the text, not the
// exception's type, tells an out-of-memory error.
absl::Status ModelError(absl::string_view stage, absl::string_view what, const GenerationParams& params,
                        const std::string& device);

// The family for `manifest.architecture`, its modules loaded onto `device`. INVALID_ARGUMENT naming
// the architecture and the known ones for an unknown one; the loader's errors otherwise.
absl::StatusOr<std::unique_ptr<ModelFamily>> LoadModelFamily(const ModelManifest& manifest, const LoadOptions& options);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_MODEL_FAMILY_H_
