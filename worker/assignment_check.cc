#include "assignment_check.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "radial/common/utf8.h"

namespace radial::worker {
namespace {

absl::Status Invalid(const std::string& field, const std::string& got, const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": got ", got, ", expected ", expected));
}

absl::Status CheckText(const std::string& field, const std::string& text, int64_t max_chars, bool required) {
  const int64_t length = common::Utf8Length(text);
  if (length < 0) return Invalid(field, "bytes that are not valid UTF-8", "UTF-8 text");
  const std::string range = absl::StrCat(required ? 1 : 0, " to ", max_chars, " characters");
  if (required && length == 0) return Invalid(field, "an empty string", range);
  if (length > max_chars) return Invalid(field, absl::StrCat(length, " characters"), range);
  return absl::OkStatus();
}

// Sizes: [min, max] and a multiple of limit.multiple.
absl::Status CheckSize(const std::string& field, uint32_t value, const SizeLimit& limit) {
  const bool multiple_ok = limit.multiple <= 1 || value % limit.multiple == 0;
  if (value < limit.min || value > limit.max || !multiple_ok) {
    return Invalid(field, absl::StrCat(value),
                   absl::StrCat(limit.multiple > 1 ? absl::StrCat("a multiple of ", limit.multiple, " in ") : "", "[",
                                limit.min, ", ", limit.max, "]"));
  }
  return absl::OkStatus();
}

// Frame counts: [min, max] and step*k + 1 (limit.multiple is the step).
absl::Status CheckFrames(uint32_t value, const SizeLimit& limit) {
  const int64_t step = std::max<int64_t>(1, limit.multiple);
  if (value < limit.min || value > limit.max || value < 1 || (value - 1) % step != 0) {
    return Invalid("frames", absl::StrCat(value),
                   absl::StrCat(step > 1 ? absl::StrCat(step, "k+1 ") : "", "in [", limit.min, ", ", limit.max, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckRadial(const ModelManifest& manifest, const v1::GenerateRequest& request) {
  const v1::RadialOptions& radial = request.radial();
  if (!std::isfinite(radial.decay()) || radial.decay() <= 0.0f || radial.decay() > kAssignmentMaxDecay) {
    return Invalid("radial.decay", absl::StrCat(radial.decay()),
                   absl::StrCat("a value in (0, ", kAssignmentMaxDecay, "]"));
  }
  if (radial.block() != 64 && radial.block() != 128) {
    return Invalid("radial.block", absl::StrCat(radial.block()), "64 or 128");
  }
  if (radial.dense_layers() > manifest.num_layers) {
    return Invalid("radial.dense_layers", absl::StrCat(radial.dense_layers()),
                   absl::StrCat("0 to ", manifest.num_layers, " (the model's layers)"));
  }
  for (const auto& [field, value] : {std::pair{"radial.dense_steps", radial.dense_steps()},
                                     std::pair{"radial.dense_last_steps", radial.dense_last_steps()}}) {
    if (value > request.steps()) {
      return Invalid(field, absl::StrCat(value), absl::StrCat("0 to ", request.steps(), " (steps)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAssignment(const ModelManifest& manifest, const v1::GenerateRequest& request) {
  if (request.model() != manifest.name) {
    return Invalid("model", common::Echo(request.model()),
                   absl::StrCat(common::Echo(manifest.name), " (the model this worker serves)"));
  }
  RADIAL_RETURN_IF_ERROR(CheckText("prompt", request.prompt(), manifest.prompt_max_chars, /*required=*/true));
  RADIAL_RETURN_IF_ERROR(
      CheckText("negative_prompt", request.negative_prompt(), manifest.prompt_max_chars, /*required=*/false));
  RADIAL_RETURN_IF_ERROR(CheckSize("width", request.width(), manifest.width));
  RADIAL_RETURN_IF_ERROR(CheckSize("height", request.height(), manifest.height));
  RADIAL_RETURN_IF_ERROR(CheckFrames(request.frames(), manifest.frames));
  if (request.fps() < 1 || request.fps() > kAssignmentMaxFps) {
    return Invalid("fps", absl::StrCat(request.fps()), absl::StrCat("[1, ", kAssignmentMaxFps, "]"));
  }
  if (request.fragment_frames() > kAssignmentMaxFragmentFrames) {
    return Invalid("fragment_frames", absl::StrCat(request.fragment_frames()),
                   absl::StrCat("0 (one second of video) or 1 to ", kAssignmentMaxFragmentFrames));
  }
  RADIAL_RETURN_IF_ERROR(CheckSize("steps", request.steps(), manifest.steps));
  // Compared as the float this worker announces (ModelInfo.guidance_max), which the scheduler checks.
  const float guidance_max = static_cast<float>(manifest.guidance_max);
  if (!std::isfinite(request.guidance()) || request.guidance() < 0.0f || request.guidance() > guidance_max) {
    return Invalid("guidance", absl::StrCat(request.guidance()),
                   absl::StrCat("a finite value in [0, ", guidance_max, "]"));
  }
  return CheckRadial(manifest, request);
}

}  // namespace radial::worker
