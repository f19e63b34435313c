#include "scheduler/request_validator.h"

#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "radial/common/utf8.h"

namespace radial::server {
namespace {

using v1::GenerateRequest;
using v1::ModelInfo;

absl::Status Invalid(const std::string& field, const std::string& got, const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": got ", got, ", expected ", expected));
}

absl::Status CheckText(const std::string& field, const std::string& text, uint32_t max_chars, bool required) {
  const int64_t length = common::Utf8Length(text);
  if (length < 0) return Invalid(field, "bytes that are not valid UTF-8", "UTF-8 text");
  const std::string range = absl::StrCat(required ? 1 : 0, " to ", max_chars, " characters");
  if (required && length == 0) return Invalid(field, "an empty string", range);
  if (length > max_chars) return Invalid(field, absl::StrCat(length, " characters"), range);
  return absl::OkStatus();
}

// value 0 takes the default; otherwise it must lie in range and be a multiple of `multiple`.
absl::Status ResolveSize(const std::string& field, uint32_t& value, uint32_t fallback, const v1::Range& range,
                         uint32_t multiple) {
  if (value == 0) value = fallback;
  if (value < range.min() || value > range.max() || (multiple > 1 && value % multiple != 0)) {
    return Invalid(field, absl::StrCat(value),
                   absl::StrCat(multiple > 1 ? absl::StrCat("a multiple of ", multiple, " in ") : "", "[",
                                range.min(), ", ", range.max(), "]"));
  }
  return absl::OkStatus();
}

absl::Status ResolveRadial(GenerateRequest& request, const ModelInfo& model) {
  v1::RadialOptions& radial = *request.mutable_radial();
  const v1::RadialOptions& fallback = model.defaults().radial();
  if (!radial.has_decay()) radial.set_decay(fallback.decay());
  if (!radial.has_sink()) radial.set_sink(fallback.sink());
  if (!radial.has_block()) radial.set_block(fallback.block());
  if (!radial.has_dense_layers()) radial.set_dense_layers(fallback.dense_layers());
  if (!radial.has_dense_steps()) radial.set_dense_steps(std::min(fallback.dense_steps(), request.steps()));
  if (!radial.has_dense_last_steps()) {
    radial.set_dense_last_steps(std::min(fallback.dense_last_steps(), request.steps()));
  }
  if (!radial.has_dense()) radial.set_dense(fallback.dense());
  if (!std::isfinite(radial.decay()) || radial.decay() <= 0.0f || radial.decay() > kMaxDecay) {
    return Invalid("radial.decay", absl::StrCat(radial.decay()), absl::StrCat("a value in (0, ", kMaxDecay, "]"));
  }
  if (radial.block() != 64 && radial.block() != 128) {
    return Invalid("radial.block", absl::StrCat(radial.block()), "64 or 128");
  }
  if (radial.dense_layers() > model.layers()) {
    return Invalid("radial.dense_layers", absl::StrCat(radial.dense_layers()),
                   absl::StrCat("0 to ", model.layers(), " (the model's layers)"));
  }
  for (const auto& [field, value] : {std::pair{"radial.dense_steps", radial.dense_steps()},
                                     std::pair{"radial.dense_last_steps", radial.dense_last_steps()}}) {
    if (value > request.steps()) {
      return Invalid(field, absl::StrCat(value), absl::StrCat("0 to ", request.steps(), " (steps)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const std::string& field, const v1::Range& range, uint32_t min_allowed) {
  if (range.min() < min_allowed || range.min() > range.max()) {
    return Invalid(field, absl::StrCat("[", range.min(), ", ", range.max(), "]"),
                   absl::StrCat("a range with ", min_allowed, " <= min <= max"));
  }
  return absl::OkStatus();
}

absl::Status ResolveTimeout(const std::string& field, uint32_t value, uint32_t fallback, GenerateRequest& request,
                            void (GenerateRequest::*set)(uint32_t)) {
  if (value > kMaxTimeoutSeconds) {
    return Invalid(field, absl::StrCat(value), absl::StrCat("0 (the scheduler's default) to ", kMaxTimeoutSeconds));
  }
  (request.*set)(value == 0 ? fallback : value);
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelInfo(const ModelInfo& model) {
  if (model.name().empty() || model.name().size() > kMaxModelNameBytes || common::Utf8Length(model.name()) < 0) {
    return Invalid("model.name", common::Echo(model.name()), absl::StrCat("1 to ", kMaxModelNameBytes, " bytes of UTF-8"));
  }
  const std::string where = absl::StrCat("model ", common::Echo(model.name()), ": ");
  auto in_model = [&](absl::Status status) {
    return status.ok() ? status : absl::InvalidArgumentError(absl::StrCat(where, status.message()));
  };
  RADIAL_RETURN_IF_ERROR(in_model(CheckRange("width", model.width(), 1)));
  RADIAL_RETURN_IF_ERROR(in_model(CheckRange("height", model.height(), 1)));
  RADIAL_RETURN_IF_ERROR(in_model(CheckRange("frames", model.frames(), 1)));
  RADIAL_RETURN_IF_ERROR(in_model(CheckRange("steps", model.steps(), 1)));
  if (model.size_multiple() == 0) return in_model(Invalid("size_multiple", "0", "at least 1"));
  if (model.frame_step() == 0) return in_model(Invalid("frame_step", "0", "at least 1"));
  if (model.prompt_max_chars() == 0) return in_model(Invalid("prompt_max_chars", "0", "at least 1"));
  if (!std::isfinite(model.guidance_max()) || model.guidance_max() < 0) {
    return in_model(Invalid("guidance_max", absl::StrCat(model.guidance_max()), "a finite value >= 0"));
  }
  // The defaults must themselves be a valid request: a client sending an empty request gets them.
  GenerateRequest probe;
  probe.set_prompt("x");
  auto resolved = ResolveRequest(probe, {model}, model.name(), 0, RequestDefaults{});
  if (!resolved.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "defaults: ", resolved.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateRequest> ResolveRequest(const GenerateRequest& request, const std::vector<ModelInfo>& models,
                                               const std::string& default_model, uint64_t seed_if_unset,
                                               const RequestDefaults& scheduler_defaults) {
  GenerateRequest resolved = request;
  if (resolved.request_id().size() > kMaxRequestIdBytes || common::Utf8Length(resolved.request_id()) < 0) {
    return Invalid("request_id", common::Echo(resolved.request_id()),
                   absl::StrCat("0 to ", kMaxRequestIdBytes, " bytes of UTF-8"));
  }
  RADIAL_RETURN_IF_ERROR(ResolveTimeout("queue_timeout_seconds", resolved.queue_timeout_seconds(),
                                        scheduler_defaults.queue_timeout_seconds, resolved,
                                        &GenerateRequest::set_queue_timeout_seconds));
  RADIAL_RETURN_IF_ERROR(ResolveTimeout("run_timeout_seconds", resolved.run_timeout_seconds(),
                                        scheduler_defaults.run_timeout_seconds, resolved,
                                        &GenerateRequest::set_run_timeout_seconds));
  if (resolved.model().empty()) resolved.set_model(default_model);
  const ModelInfo* model = nullptr;
  for (const ModelInfo& candidate : models) {
    if (candidate.name() == resolved.model()) model = &candidate;
  }
  if (model == nullptr) {
    std::vector<std::string> names;
    for (const ModelInfo& candidate : models) names.push_back(candidate.name());
    return absl::NotFoundError(absl::StrCat("model: got ", common::Echo(resolved.model()),
                                            ", expected one of the served models [", absl::StrJoin(names, ", "),
                                            "]"));
  }
  const GenerateRequest& defaults = model->defaults();

  RADIAL_RETURN_IF_ERROR(CheckText("prompt", resolved.prompt(), model->prompt_max_chars(), true));
  if (resolved.negative_prompt().empty()) resolved.set_negative_prompt(defaults.negative_prompt());
  RADIAL_RETURN_IF_ERROR(CheckText("negative_prompt", resolved.negative_prompt(), model->prompt_max_chars(), false));

  uint32_t width = resolved.width(), height = resolved.height(), steps = resolved.steps();
  RADIAL_RETURN_IF_ERROR(ResolveSize("width", width, defaults.width(), model->width(), model->size_multiple()));
  RADIAL_RETURN_IF_ERROR(ResolveSize("height", height, defaults.height(), model->height(), model->size_multiple()));
  RADIAL_RETURN_IF_ERROR(ResolveSize("steps", steps, defaults.steps(), model->steps(), 1));
  resolved.set_width(width);
  resolved.set_height(height);
  resolved.set_steps(steps);

  uint32_t frames = resolved.frames() == 0 ? defaults.frames() : resolved.frames();
  const uint32_t step = std::max<uint32_t>(1, model->frame_step());
  if (frames < model->frames().min() || frames > model->frames().max() || (frames - 1) % step != 0) {
    return Invalid("frames", absl::StrCat(frames),
                   absl::StrCat(step > 1 ? absl::StrCat(step, "k+1 ") : "", "in [", model->frames().min(), ", ",
                                model->frames().max(), "]"));
  }
  resolved.set_frames(frames);

  if (resolved.fps() == 0) resolved.set_fps(defaults.fps());
  if (resolved.fps() < 1 || resolved.fps() > kMaxFps) {
    return Invalid("fps", absl::StrCat(resolved.fps()), absl::StrCat("[1, ", kMaxFps, "]"));
  }
  if (resolved.fragment_frames() > kMaxFragmentFrames) {
    return Invalid("fragment_frames", absl::StrCat(resolved.fragment_frames()),
                   absl::StrCat("0 (one second of video) or 1 to ", kMaxFragmentFrames, " frames per fragment"));
  }
  // The frames of one second, as the encoder reads 0 (its rate rounded up: fps is whole here).
  if (resolved.fragment_frames() == 0) resolved.set_fragment_frames(resolved.fps());

  if (!resolved.has_guidance()) resolved.set_guidance(defaults.guidance());
  if (!std::isfinite(resolved.guidance()) || resolved.guidance() < 0.0f ||
      resolved.guidance() > model->guidance_max()) {
    return Invalid("guidance", absl::StrCat(resolved.guidance()),
                   absl::StrCat("a finite value in [0, ", model->guidance_max(), "]"));
  }

  if (!resolved.has_seed()) resolved.set_seed(seed_if_unset);
  if (resolved.priority() < kMinPriority || resolved.priority() > kMaxPriority) {
    return Invalid("priority", absl::StrCat(resolved.priority()),
                   absl::StrCat("[", kMinPriority, ", ", kMaxPriority, "]"));
  }
  RADIAL_RETURN_IF_ERROR(ResolveRadial(resolved, *model));
  return resolved;
}

}  // namespace radial::server
