// Checks a GenerateRequest against the model that will run it and resolves every default, so that
// workers receive a complete request and the client sees what will run. Pure: no state, no I/O.
#ifndef RADIAL_SERVER_REQUEST_VALIDATOR_H_
#define RADIAL_SERVER_REQUEST_VALIDATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::server {

inline constexpr int32_t kMinPriority = -10;
inline constexpr int32_t kMaxPriority = 10;
inline constexpr uint32_t kMaxFps = 120;
inline constexpr uint32_t kMaxFragmentFrames = 1000;  // the worker's encoder takes at most this GOP
inline constexpr float kMaxDecay = 10.0f;
inline constexpr uint32_t kMaxTimeoutSeconds = 7 * 24 * 3600;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr size_t kMaxModelNameBytes = 128;

// What the scheduler fills in for fields a request leaves to it (its flags).
struct RequestDefaults {
  uint32_t queue_timeout_seconds = 24 * 3600;
  uint32_t run_timeout_seconds = 6 * 3600;
};

// Returns the request with the model chosen (empty model -> default_model), every zero/unset field
// replaced by the model's default (the timeouts by the scheduler's, fragment_frames by fps: one
// second of video per fragment), and the seed set (to `seed_if_unset` when the client gave none).
// Errors: NOT_FOUND for an unknown model; INVALID_ARGUMENT naming the field, the value got and the
// allowed range ("width: got 130, expected a multiple of 16 in [64, 512]").
absl::StatusOr<v1::GenerateRequest> ResolveRequest(const v1::GenerateRequest& request,
                                                   const std::vector<v1::ModelInfo>& models,
                                                   const std::string& default_model, uint64_t seed_if_unset,
                                                   const RequestDefaults& scheduler_defaults);

// Checks what a worker announces for a model before the scheduler trusts it: names, ranges
// (1 <= min <= max), non-zero multiples and prompt length, and defaults that are a valid request.
// INVALID_ARGUMENT naming the model and the field.
absl::Status ValidateModelInfo(const v1::ModelInfo& model);

}  // namespace radial::server

#endif  // RADIAL_SERVER_REQUEST_VALIDATOR_H_
