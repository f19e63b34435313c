// The one translation unit of the worker that includes LibTorch.
#include "pipeline.h"

#include <torch/cuda.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/script.h>

#include <chrono>
#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "flow_schedule.h"
#include "prompt_clean.h"
#include "radial/kernels/block_mask.h"
#include "radial/kernels/ops_library.h"
#include "tokenizer.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

torch::Dtype ParseDtype(const std::string& dtype) {
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  return torch::kFloat32;
}

}  // namespace

struct Pipeline::Impl {
  ModelManifest manifest;
  torch::Device device{torch::kCPU};
  torch::Dtype dtype = torch::kFloat32;
  std::unique_ptr<Tokenizer> tokenizer;
  torch::jit::script::Module dit, text_encoder, vae;

  // GPU work is asynchronous: a stage's time is only its own once the device has finished it.
  void WaitForDevice() const {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  }

  // [2 or 1, max_length, text_dim]: prompt first, negative prompt second when guiding.
  absl::StatusOr<torch::Tensor> EncodeText(const GenerationParams& params, bool guided) {
    std::vector<std::string> texts = {params.prompt};
    if (guided) texts.push_back(params.negative_prompt);
    std::vector<torch::Tensor> ids, masks;
    for (const std::string& text : texts) {
      auto tokens = tokenizer->Encode(CleanPrompt(text));
      if (!tokens.ok()) return tokens.status();
      ids.push_back(torch::tensor(tokens->ids, torch::kLong));
      masks.push_back(torch::tensor(tokens->mask, torch::kLong));
    }
    return text_encoder.forward({torch::stack(ids).to(device), torch::stack(masks).to(device)}).toTensor().to(dtype);
  }
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

const ModelManifest& Pipeline::manifest() const { return impl_->manifest; }

std::string Pipeline::device_name() const { return impl_->device.str(); }

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Load(const std::string& bundle_dir, const std::string& device) {
  kernels::EnsureOpsRegistered();  // TorchScript's calls to torch.ops.radial.* resolve against it
  auto manifest = LoadManifest(bundle_dir);
  if (!manifest.ok()) return manifest.status();
  auto impl = std::make_unique<Impl>();
  impl->manifest = *std::move(manifest);
  const ModelManifest& m = impl->manifest;
  auto tokenizer = Tokenizer::Load(m.Path(m.tokenizer_file), m.max_length, m.pad_id, m.eos_id);
  if (!tokenizer.ok()) return tokenizer.status();
  impl->tokenizer = *std::move(tokenizer);
  try {
    impl->device = torch::Device(device);
    if (impl->device.is_cuda() && !torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat("device: got '", device, "', but no CUDA device is visible"));
    }
    // TorchScript's TensorExpr fuser: on the GPU it fuses the DiT's elementwise chains (RoPE,
    // modulation, casts; a 14B step at 768x1280x69 takes 10.4 s instead of 11.9 s, docs/benchmarks.md);
    // on the CPU its fused loops run on one thread and make the VAE about 5x slower on 2 cores.
    // The setting is per process: a worker serves one device.
    torch::jit::setTensorExprFuserEnabled(impl->device.is_cuda());
    impl->dtype = ParseDtype(m.dtype);
    for (auto [module, file] : {std::pair{&impl->dit, m.dit_file}, std::pair{&impl->text_encoder, m.text_encoder_file},
                                std::pair{&impl->vae, m.vae_file}}) {
      *module = torch::jit::load(m.Path(file), impl->device);
      module->eval();
    }
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("bundle ", bundle_dir, ": cannot load on ", device, ": ",
                                                   error.what()));
  }
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
  GenerationReport report;
  const int64_t latent_frames = (params.frames - 1) / m.temporal_factor + 1;
  const int64_t latent_height = params.height / m.spatial_factor, latent_width = params.width / m.spatial_factor;
  report.latent_frames = latent_frames / m.patch_size[0];
  report.tokens_per_frame = (latent_height / m.patch_size[1]) * (latent_width / m.patch_size[2]);
  const RadialSettings& radial = params.radial;
  bool all_dense = params.dense || radial.dense_steps >= params.steps;
  if (!all_dense) {
    const kernels::MaskGeometry geometry{report.latent_frames, report.tokens_per_frame, radial.decay, radial.sink,
                                         radial.block};
    if (const std::string error = kernels::ValidateMaskGeometry(geometry); !error.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("radial: ", error));
    }
    const kernels::BlockMask mask = kernels::BuildRadialMask(geometry);
    if (mask.EveryRowKept()) {
      report.mask_density = mask.density();
    } else {
      all_dense = true;
      report.radial_fell_back = true;
    }
  }
  const bool guided = params.guidance > 1.0;
  auto progress = [&](Stage stage, int64_t step, int64_t total) {
    if (callbacks.progress) callbacks.progress(stage, step, total);
  };

  try {
    torch::InferenceMode inference;
    Impl& impl = *impl_;
    // Text.
    auto start = Clock::now();
    progress(Stage::kEncodingText, 0, 0);
    const absl::StatusOr<torch::Tensor> encoded = impl.EncodeText(params, guided);
    if (!encoded.ok()) return encoded.status();
    const torch::Tensor& context = *encoded;
    impl.WaitForDevice();
    report.text_encode_seconds = Seconds(start);

    // Denoising: x from seeded noise (drawn on the CPU, so a seed gives the same start on any device).
    start = Clock::now();
    auto generator = at::make_generator<at::CPUGeneratorImpl>(params.seed);
    torch::Tensor latents =
        at::randn({1, m.latent_channels, latent_frames, latent_height, latent_width}, generator,
                  torch::TensorOptions().dtype(torch::kFloat32))
            .to(impl.device);
    auto sampler = FlowSampler<torch::Tensor>::Create({.name = m.sampler,
                                                       .steps = params.steps,
                                                       .shift = m.shift,
                                                       .num_train_timesteps = m.num_train_timesteps,
                                                       .solver_order = m.solver_order});
    if (!sampler.ok()) return sampler.status();
    for (int64_t step = 0; step < params.steps; ++step) {
      if (callbacks.cancelled && callbacks.cancelled()) return absl::CancelledError("cancelled between denoising steps");
      const bool dense = all_dense || step < radial.dense_steps || step >= params.steps - radial.dense_last_steps;
      const int64_t batch = guided ? 2 : 1;
      const torch::Tensor model_input = latents.to(impl.dtype).expand({batch, -1, -1, -1, -1});
      const torch::Tensor timestep =
          torch::full({batch}, sampler->timesteps()[step],
                      torch::TensorOptions().dtype(torch::kFloat32).device(impl.device));
      const torch::Tensor velocity_all =
          impl.dit
              .forward({model_input, timestep, context, dense, radial.dense_layers, radial.decay, radial.sink,
                        radial.block})
              .toTensor()
              .to(torch::kFloat32);
      torch::Tensor velocity = velocity_all[0];
      if (guided) velocity = velocity_all[1] + params.guidance * (velocity_all[0] - velocity_all[1]);
      absl::StatusOr<torch::Tensor> next = sampler->Step(step, velocity.unsqueeze(0), latents);
      if (!next.ok()) return next.status();
      latents = *std::move(next);
      progress(Stage::kDenoising, step + 1, params.steps);
    }
    impl.WaitForDevice();
    report.denoise_seconds = Seconds(start);

    // Decode to frames in [-1, 1], then RGB24.
    start = Clock::now();
    progress(Stage::kDecoding, 0, 0);
    const torch::Tensor video = impl.vae.forward({latents.to(impl.dtype)}).toTensor();  // [1, 3, T, H, W]
    if (callbacks.inspect) {
      for (const auto& [name, tensor] : {std::pair{"latents", latents}, std::pair{"video", video}}) {
        const torch::Tensor host = tensor.to(torch::kCPU, torch::kFloat32).contiguous();
        callbacks.inspect(name, host.sizes().vec(), host.data_ptr<float>());
      }
    }
    const torch::Tensor pixels = ((video[0].to(torch::kFloat32).clamp(-1, 1) + 1) * 127.5)
                                     .round()
                                     .to(torch::kUInt8)
                                     .permute({1, 2, 3, 0})  // [T, H, W, 3]
                                     .contiguous()
                                     .to(torch::kCPU);
    if (pixels.size(0) != params.frames || pixels.size(1) != params.height || pixels.size(2) != params.width) {
      return absl::InternalError(absl::StrCat("vae: got a ", pixels.size(0), "x", pixels.size(1), "x", pixels.size(2),
                                              " video, expected ", params.frames, "x", params.height, "x",
                                              params.width));
    }
    const int64_t stride = params.width * 3;
    for (int64_t frame = 0; frame < pixels.size(0); ++frame) {
      if (absl::Status sent = callbacks.frame(pixels[frame].data_ptr<uint8_t>(), stride); !sent.ok()) return sent;
    }
    report.decode_seconds = Seconds(start);
  } catch (const std::exception& error) {
    return absl::InternalError(absl::StrCat("model: ", error.what()));
  }
  return report;
}

}  // namespace radial::worker
