// Checks a GenerateRequest against the model that will run it and resolves every default, so that
// workers receive a complete request and the client sees what will run. Pure: no state, no I/O.
#ifndef RADIAL_SERVER_REQUEST_VALIDATOR_H_
#define RADIAL_SERVER_REQUEST_VALIDATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::server {

inline constexpr int32_t kMinPriority = -10;
inline constexpr int32_t kMaxPriority = 10;
inline constexpr uint32_t kMaxFps = 120;
inline constexpr float kMaxDecay = 10.0f;

// Returns the request with the model chosen (empty model -> default_model), every zero/unset field
// replaced by the model's default, and the seed set (to `seed_if_unset` when the client gave none).
// Errors: NOT_FOUND for an unknown model; INVALID_ARGUMENT naming the field, the value got and the
// allowed range ("width: got 130, expected a multiple of 16 in [64, 512]").
absl::StatusOr<v1::GenerateRequest> ResolveRequest(const v1::GenerateRequest& request,
                                                   const std::vector<v1::ModelInfo>& models,
                                                   const std::string& default_model, uint64_t seed_if_unset);

}  // namespace radial::server

#endif  // RADIAL_SERVER_REQUEST_VALIDATOR_H_
