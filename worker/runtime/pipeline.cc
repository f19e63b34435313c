// The generation's order of stages, its checks and its clocks. No LibTorch here: the model's work
// is the ModelFamily's (model_family.h).
#include "pipeline.h"

#include <chrono>
#include <cstdio>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "model_family.h"
#include "radial/kernels/block_mask.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Ends the family's generation on every path out of Generate.
class GenerationScope {
 public:
  explicit GenerationScope(ModelFamily& family) : family_(family) {}
  ~GenerationScope() { family_.EndGeneration(); }
  GenerationScope(const GenerationScope&) = delete;
  GenerationScope& operator=(const GenerationScope&) = delete;

 private:
  ModelFamily& family_;
};

constexpr char kWarmupPrompt[] = "a short warm-up clip of clouds over a quiet lake";

}  // namespace

bool AllStepsDense(const GenerationParams& params) { return params.dense || params.radial.dense_steps >= params.steps; }

bool StepIsDense(const GenerationParams& params, int64_t step) {
  return params.dense || step < params.radial.dense_steps || step >= params.steps - params.radial.dense_last_steps;
}

absl::StatusOr<std::vector<WarmupSize>> ParseWarmupSizes(const std::string& text) {
  std::vector<WarmupSize> sizes;
  if (text.empty()) return sizes;
  for (const absl::string_view entry : absl::StrSplit(text, ',')) {
    const std::vector<absl::string_view> parts = absl::StrSplit(entry, 'x');
    WarmupSize size;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &size.width) || !absl::SimpleAtoi(parts[1], &size.height) ||
        !absl::SimpleAtoi(parts[2], &size.frames) || size.width <= 0 || size.height <= 0 || size.frames <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--warmup: got '", entry.substr(0, 64),
                                                     "', expected WIDTHxHEIGHTxFRAMES with positive integers, e.g. "
                                                     "832x480x81, comma-separated"));
    }
    sizes.push_back(size);
  }
  return sizes;
}

struct Pipeline::Impl {
  ModelManifest manifest;
  std::unique_ptr<ModelFamily> family;
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

const ModelManifest& Pipeline::manifest() const { return impl_->manifest; }

std::string Pipeline::device_name() const { return impl_->family->device_name(); }

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Load(const std::string& bundle_dir, const std::string& device) {
  LoadOptions options;
  options.device = device;
  return Load(bundle_dir, options);
}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Load(const std::string& bundle_dir, const LoadOptions& options) {
  if (!(options.gpu_memory_fraction > 0 && options.gpu_memory_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu memory fraction: got ", options.gpu_memory_fraction, ", expected a value in (0, 1]"));
  }
  if (options.jit_executor != "profiling" && options.jit_executor != "simple" && options.jit_executor != "legacy") {
    return absl::InvalidArgumentError(absl::StrCat("jit executor: got '", options.jit_executor.substr(0, 64),
                                                   "', expected profiling, simple or legacy"));
  }
  auto manifest = LoadManifest(bundle_dir);
  if (!manifest.ok()) return manifest.status();
  auto impl = std::make_unique<Impl>();
  impl->manifest = *std::move(manifest);
  auto family = LoadModelFamily(impl->manifest, options);
  if (!family.ok()) return family.status();
  impl->family = *std::move(family);
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

absl::StatusOr<GenerationReport> Pipeline::Generate(const GenerationParams& params,
                                                    const GenerationCallbacks& callbacks) {
  const ModelManifest& m = impl_->manifest;
  const int64_t pixel_multiple = m.spatial_factor * std::max(m.patch_size[1], m.patch_size[2]);
  if (params.width <= 0 || params.height <= 0 || params.width % pixel_multiple != 0 ||
      params.height % pixel_multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat("width/height: got ", params.width, "x", params.height,
                                                   ", expected positive multiples of ", pixel_multiple));
  }
  if (params.frames < 1 || (params.frames - 1) % m.temporal_factor != 0 || params.steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("frames/steps: got ", params.frames, "/", params.steps,
                                                   ", expected frames = ", m.temporal_factor, "k+1 and steps >= 1"));
  }
  if (!callbacks.frame) return absl::InvalidArgumentError("callbacks.frame: missing, expected a frame receiver");
  GenerationReport report;
  const int64_t latent_frames = (params.frames - 1) / m.temporal_factor + 1;
  report.latent_frames = latent_frames / m.patch_size[0];
  report.tokens_per_frame =
      (params.height / m.spatial_factor / m.patch_size[1]) * (params.width / m.spatial_factor / m.patch_size[2]);
  const RadialSettings& radial = params.radial;
  const bool all_dense = AllStepsDense(params);
  if (!all_dense) {
    const kernels::MaskGeometry geometry{report.latent_frames, report.tokens_per_frame, radial.decay, radial.sink,
                                         radial.block};
    if (const std::string error = kernels::ValidateMaskGeometry(geometry); !error.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("radial: ", error));
    }
    report.mask_density = kernels::BuildRadialMask(geometry).density();
  }

  ModelFamily& family = *impl_->family;
  GenerationScope scope(family);
  auto start = Clock::now();
  if (callbacks.progress) callbacks.progress(Stage::kEncodingText, 0, 0);
  if (absl::Status text = family.EncodeText(params, params.guidance > 1.0); !text.ok()) return text;
  family.WaitForDevice();
  report.text_encode_seconds = Seconds(start);

  start = Clock::now();
  if (absl::Status denoised = family.Denoise(params, callbacks); !denoised.ok()) return denoised;
  family.WaitForDevice();
  report.denoise_seconds = Seconds(start);

  start = Clock::now();
  int64_t chunks = 0;
  GenerationCallbacks decode = callbacks;
  decode.progress = [&](Stage stage, int64_t step, int64_t total) {
    if (stage == Stage::kDecoding && step > 0) ++chunks;
    if (callbacks.progress) callbacks.progress(stage, step, total);
  };
  if (absl::Status decoded = family.DecodeAndStream(params, decode); !decoded.ok()) return decoded;
  report.decode_seconds = Seconds(start);
  report.decode_chunks = chunks;
  return report;
}

absl::Status Pipeline::Warmup(const std::vector<WarmupSize>& sizes, const std::function<void(const WarmupRun&)>& done) {
  const ModelManifest& m = impl_->manifest;
  std::vector<WarmupSize> all;
  for (const WarmupSize& size : sizes) {
    const auto in = [](int64_t value, const SizeLimit& limit) { return value >= limit.min && value <= limit.max; };
    if (!in(size.width, m.width) || !in(size.height, m.height) || !in(size.frames, m.frames)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--warmup: got ", size.width, "x", size.height, "x", size.frames, ", expected width in [", m.width.min, ", ",
          m.width.max, "], height in [", m.height.min, ", ", m.height.max, "] and frames in [", m.frames.min, ", ",
          m.frames.max, "] for model ", m.name));
    }
    bool seen = false;
    for (const WarmupSize& other : all) {
      seen = seen || (other.width == size.width && other.height == size.height && other.frames == size.frames);
    }
    if (!seen) all.push_back(size);
  }
  for (const WarmupSize& size : all) {
    GenerationParams params;
    params.prompt = kWarmupPrompt;
    params.negative_prompt = m.default_negative_prompt;
    params.width = size.width;
    params.height = size.height;
    params.frames = size.frames;
    params.steps = std::min<int64_t>(kWarmupSteps, std::max<int64_t>(m.steps.max, 1));
    params.guidance = m.default_guidance;
    params.radial = m.radial;
    // Both attention paths of the DiT: step 0 dense, the rest radial.
    params.radial.dense_steps = params.steps > 1 ? 1 : 0;
    params.radial.dense_last_steps = 0;
    GenerationCallbacks callbacks;
    callbacks.frame = [](const uint8_t*, int64_t) { return absl::OkStatus(); };
    for (int run = 1; run <= kWarmupGenerations; ++run) {
      auto report = Generate(params, callbacks);
      if (!report.ok()) {
        return absl::Status(report.status().code(), absl::StrCat("warm-up at ", size.width, "x", size.height, "x",
                                                                 size.frames, ": ", report.status().message()));
      }
      if (done) done({size, run, *report});
    }
  }
  return absl::OkStatus();
}

absl::Status Pipeline::ServeGroup() { return impl_->family->ServeGroup(); }

int RunGroupMember(int argc, char** argv) {
  // What DeviceGroup::Launch passes: rank, store, bundle, devices, cfg_parallel, memory fraction,
  // executor.
  int rank = 0;
  double fraction = 1;
  if (argc != 9 || kGroupMemberFlag != std::string_view(argv[1]) || !absl::SimpleAtoi(argv[2], &rank) ||
      !absl::SimpleAtod(argv[7], &fraction)) {
    std::fprintf(stderr, "%s: started by a radial device group's leader, not by hand\n", kGroupMemberFlag);
    return 2;
  }
  LoadOptions options;
  options.group_rank = rank;
  options.group_store = argv[3];
  options.devices = absl::StrSplit(argv[5], ',');
  options.cfg_parallel = std::string_view(argv[6]) == "1";
  options.gpu_memory_fraction = fraction;
  options.jit_executor = argv[8];
  if (rank < 1 || static_cast<size_t>(rank) >= options.devices.size()) {
    std::fprintf(stderr, "%s: rank %d of %zu devices\n", kGroupMemberFlag, rank, options.devices.size());
    return 2;
  }
  options.device = options.devices[static_cast<size_t>(rank)];
  auto pipeline = Pipeline::Load(argv[4], options);
  if (!pipeline.ok()) {
    std::fprintf(stderr, "radial device group rank %d: %s\n", rank, pipeline.status().ToString().c_str());
    return 3;
  }
  const absl::Status served = (*pipeline)->ServeGroup();
  return served.ok() ? 0 : 3;
}

}  // namespace radial::worker
