// Architecture name -> family loader. A new family adds its loader here and nothing else.
#include "model_family.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "wan21.h"

namespace radial::worker {

namespace {

// LibTorch's messages run to many lines (TorchScript adds its call stack); the first says what.
absl::string_view FirstLine(absl::string_view text, size_t limit) {
  text = text.substr(0, text.find('\n'));
  return text.substr(0, limit);
}

}  // namespace

absl::Status ModelError(absl::string_view stage, absl::string_view what, const GenerationParams& params,
                        const std::string& device) {
  const std::string lower = absl::AsciiStrToLower(what);
  for (const char* needle : {"out of memory", "not enough memory", "outofmemoryerror"}) {
    const size_t at = lower.find(needle);
    if (at == std::string::npos) continue;
    // The line that names the failed allocation, wherever TorchScript put it.
    const size_t line_start = what.rfind('\n', at);
    const absl::string_view line = FirstLine(what.substr(line_start == absl::string_view::npos ? 0 : line_start + 1), 400);
    return absl::ResourceExhaustedError(absl::StrCat(
        "width/height/frames: ", params.width, "x", params.height, "x", params.frames, " does not fit in the memory of ",
        device, " (", stage, "): ", line, "; expected a smaller size or fewer frames"));
  }
  return absl::InternalError(absl::StrCat("model (", stage, "): ", what.substr(0, 4000)));
}

absl::StatusOr<std::unique_ptr<ModelFamily>> LoadModelFamily(const ModelManifest& manifest, const LoadOptions& options) {
  if (manifest.architecture == kWan21Architecture) return LoadWan21(manifest, options);
  return absl::InvalidArgumentError(absl::StrCat("manifest.json: architecture: got '", manifest.architecture.substr(0, 64),
                                                 "', expected one of: ", kWan21Architecture));
}

}  // namespace radial::worker
