// The worker's own guard on what the scheduler assigns: a request must lie inside this worker's
// model manifest before it reaches the pipeline. The scheduler resolves and validates every request
// (server/scheduler/request_validator); this check does not trust it, so a buggy or compromised
// scheduler cannot drive the pipeline out of the ranges the bundle was exported for. Pure: no state,
// no I/O, no LibTorch.
#ifndef RADIAL_WORKER_ASSIGNMENT_CHECK_H_
#define RADIAL_WORKER_ASSIGNMENT_CHECK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "model_manifest.h"
#include "radial/v1/video_service.pb.h"

namespace radial::worker {

// The API's fixed ranges (proto/radial/v1/video_service.proto) for what the manifest does not bound.
inline constexpr uint32_t kAssignmentMaxFps = 120;
inline constexpr float kAssignmentMaxDecay = 10.0f;
inline constexpr uint32_t kAssignmentMaxFragmentFrames = 1000;  // the encoder's largest GOP

// OK when `request`, as resolved by the scheduler, can run on `manifest`'s model: the model name,
// prompt lengths (characters of valid UTF-8), width/height ranges and multiples, frames range and
// step, fps, fragment_frames (0, or 1 to 1000), steps range, guidance, and the radial knobs
// (decay, block, dense layers and steps).
// Unset optional fields count as their proto defaults (0), as the pipeline would see them.
// Otherwise INVALID_ARGUMENT for the first field out of range, naming the field, the value got
// (request strings cut by common::Echo) and the allowed range:
// "width: got 130, expected a multiple of 16 in [64, 256]".
absl::Status CheckAssignment(const ModelManifest& manifest, const v1::GenerateRequest& request);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_ASSIGNMENT_CHECK_H_
