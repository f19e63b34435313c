// The one translation unit of the worker's runtime that includes LibTorch's torch/ headers.
#include "wan21.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "device_group.h"
#include "flow_schedule.h"
#include "prompt_clean.h"
#include "radial/kernels/ops_library.h"
#include "tokenizer.h"

namespace radial::worker {
namespace {

torch::Dtype ParseDtype(const std::string& dtype) {
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  return torch::kFloat32;
}

class Wan21 final : public ModelFamily {
 public:
  Wan21(ModelManifest manifest, std::unique_ptr<Tokenizer> tokenizer)
      : manifest_(std::move(manifest)), tokenizer_(std::move(tokenizer)) {}

  absl::Status LoadModules(const LoadOptions& options) {
    const ModelManifest& m = manifest_;
    try {
      device_ = torch::Device(options.device);
      if (device_.is_cuda() && !torch::cuda::is_available()) {
        return absl::FailedPreconditionError(
            absl::StrCat("device: got '", options.device, "', but no CUDA device is visible"));
      }
      if (device_.is_cuda() && options.gpu_memory_fraction < 1) {
        // The allocator takes a fraction only for a device it has set up: a first allocation does.
        (void)torch::empty({1}, torch::TensorOptions().device(device_));
        c10::cuda::CUDACachingAllocator::setMemoryFraction(options.gpu_memory_fraction,
                                                           device_.has_index() ? device_.index() : 0);
      }
      // TorchScript's TensorExpr fuser: on the GPU it fuses the DiT's elementwise chains (RoPE,
      // modulation, casts; a 14B step at 768x1280x69 takes 10.4 s instead of 11.9 s,
      // docs/benchmarks.md); on the CPU its fused loops run on one thread and make the VAE about 5x
      // slower on 2 cores. The setting is per process: a worker serves one device.
      torch::jit::setTensorExprFuserEnabled(device_.is_cuda());
      torch::jit::getExecutorMode() = options.jit_executor != "legacy";
      torch::jit::getProfilingMode() = options.jit_executor == "profiling";
      dtype_ = ParseDtype(m.dtype);
      for (auto [module, file] : {std::pair{&dit_, m.dit_file}, std::pair{&text_encoder_, m.text_encoder_file},
                                  std::pair{&vae_, m.vae_file}}) {
        *module = torch::jit::load(m.Path(file), device_);
        module->eval();
      }
    } catch (const std::exception& error) {
      return absl::InvalidArgumentError(absl::StrCat("bundle ", m.bundle_dir, ": cannot load on ", options.device, ": ",
                                                     error.what()));
    }
    for (const char* method : {"init_state", "decode_chunk"}) {
      if (!vae_.find_method(method)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "bundle ", m.bundle_dir, ": ", m.vae_file, " has no ", method,
            " method (exported before the VAE decoded in chunks): export the bundle again with radial_export"));
      }
    }
    return absl::OkStatus();
  }

  std::string device_name() const override { return device_.str(); }

  // A bundle exported before sequence parallelism has no forward_parallel.
  absl::Status CheckParallel(const GroupLayout& layout) {
    if (layout.ulysses > 1 && !dit_.find_method("forward_parallel")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "bundle ", manifest_.bundle_dir, ": ", manifest_.dit_file,
          " has no forward_parallel method (exported before sequence parallelism): export the bundle again with "
          "radial_export, or run on one device"));
    }
    return absl::OkStatus();
  }

  void WaitForDevice() override {
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  }

  void EndGeneration() override {
    context_ = torch::Tensor();
    latents_ = torch::Tensor();
  }

  void set_group(std::unique_ptr<DeviceGroup> group) { group_ = std::move(group); }
  DeviceGroup* group() { return group_.get(); }

  absl::Status EncodeText(const GenerationParams& params, bool guided) override {
    if (group_ && group_->leader()) {
      if (absl::Status running = group_->EnsureRunning(); !running.ok()) return running;
      if (absl::Status published = group_->Publish(params); !published.ok()) return group_->Fail(published);
    }
    return GroupStage("text encoder", params, [&]() -> absl::Status {
      torch::InferenceMode inference;
      std::vector<std::string> texts = {params.prompt};
      if (guided && SplitGuidance()) {
        // This CFG half's pass only: the prompt's (half 0) or the negative prompt's (half 1).
        if (group_->cfg_index() == 1) texts = {params.negative_prompt};
      } else if (guided) {
        texts.push_back(params.negative_prompt);
      }
      std::vector<torch::Tensor> ids, masks;
      for (const std::string& text : texts) {
        auto tokens = tokenizer_->Encode(CleanPrompt(text));
        if (!tokens.ok()) return tokens.status();
        ids.push_back(torch::tensor(tokens->ids, torch::kLong));
        masks.push_back(torch::tensor(tokens->mask, torch::kLong));
      }
      // [2 or 1, max_length, text_dim]: prompt first, negative prompt second when guiding here.
      context_ = text_encoder_.forward({torch::stack(ids).to(device_), torch::stack(masks).to(device_)})
                     .toTensor()
                     .to(dtype_);
      return absl::OkStatus();
    });
  }

  absl::Status Denoise(const GenerationParams& params, const GenerationCallbacks& callbacks) override {
    return GroupStage("denoising", params, [&]() -> absl::Status {
      torch::InferenceMode inference;
      const ModelManifest& m = manifest_;
      const RadialSettings& radial = params.radial;
      const bool guided = params.guidance > 1.0;
      // x from seeded noise, drawn on the CPU so that a seed gives the same start on any device.
      auto generator = at::make_generator<at::CPUGeneratorImpl>(params.seed);
      torch::Tensor latents = at::randn({1, m.latent_channels, (params.frames - 1) / m.temporal_factor + 1,
                                         params.height / m.spatial_factor, params.width / m.spatial_factor},
                                        generator, torch::TensorOptions().dtype(torch::kFloat32))
                                  .to(device_);
      auto sampler = FlowSampler<torch::Tensor>::Create({.name = m.sampler,
                                                         .steps = params.steps,
                                                         .shift = m.shift,
                                                         .num_train_timesteps = m.num_train_timesteps,
                                                         .solver_order = m.solver_order});
      if (!sampler.ok()) return sampler.status();
      const bool split_guidance = guided && SplitGuidance();
      const int64_t batch = guided && !split_guidance ? 2 : 1;
      const bool all_dense = AllStepsDense(params);
      for (int64_t step = 0; step < params.steps; ++step) {
        bool go_on = !(callbacks.cancelled && callbacks.cancelled());
        if (group_) go_on = group_->AgreeToGoOn(go_on);  // every rank stops at the same step
        if (!go_on) return absl::CancelledError("cancelled between denoising steps");
        const bool dense = all_dense || StepIsDense(params, step);
        const torch::Tensor model_input = latents.to(dtype_).expand({batch, -1, -1, -1, -1});
        const torch::Tensor timestep = torch::full({batch}, sampler->timesteps()[step],
                                                   torch::TensorOptions().dtype(torch::kFloat32).device(device_));
        std::vector<c10::IValue> inputs = {model_input, timestep,     context_,    dense,
                                           radial.dense_layers, radial.decay, radial.sink, radial.block};
        torch::Tensor velocity_all;
        if (group_ && group_->layout().ulysses > 1) {
          inputs.insert(inputs.end(), {group_->ulysses_rank(), group_->layout().ulysses, group_->ulysses_group_name()});
          velocity_all = dit_.get_method("forward_parallel")(inputs).toTensor().to(torch::kFloat32);
        } else {
          velocity_all = dit_.forward(inputs).toTensor().to(torch::kFloat32);
        }
        if (split_guidance) velocity_all = group_->GatherGuidance(velocity_all);
        torch::Tensor velocity = velocity_all[0];
        if (guided) velocity = velocity_all[1] + params.guidance * (velocity_all[0] - velocity_all[1]);
        absl::StatusOr<torch::Tensor> next = sampler->Step(step, velocity.unsqueeze(0), latents);
        if (!next.ok()) return next.status();
        latents = *std::move(next);
        if (callbacks.progress) callbacks.progress(Stage::kDenoising, step + 1, params.steps);
      }
      latents_ = latents;
      context_ = torch::Tensor();  // the DiT is done with it
      return absl::OkStatus();
    });
  }

  absl::Status ServeGroup() override {
    if (!group_ || group_->leader()) return absl::FailedPreconditionError("device group: not a follower rank");
    while (std::optional<GenerationParams> params = group_->NextJob()) {
      absl::Status status = EncodeText(*params, params->guidance > 1.0);
      if (status.ok()) status = Denoise(*params, GenerationCallbacks{});
      EndGeneration();
      if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
        group_->ReportError(status);  // and this process exits: the leader restarts the group
        return status;
      }
    }
    return absl::OkStatus();  // the leader has gone away
  }

  absl::Status DecodeAndStream(const GenerationParams& params, const GenerationCallbacks& callbacks) override {
    return Guarded("VAE decode", params, [&]() -> absl::Status {
      torch::InferenceMode inference;
      const auto progress = [&](int64_t delivered) {
        if (callbacks.progress) callbacks.progress(Stage::kDecoding, delivered, params.frames);
      };
      progress(0);
      const torch::Tensor latents = latents_.to(dtype_);
      const int64_t latent_frames = latents.size(2);
      const int64_t chunk_frames = std::max<int64_t>(1, manifest_.vae_decode_chunk_frames);
      // The decoder's causal caches, carried from chunk to chunk: chunked decoding as the VAE's
      // own forward does it (first latent frame alone, then chunk_frames at a time), so the frames
      // are the ones a whole-video decode gives.
      c10::IValue state = vae_.get_method("init_state")({latents});
      std::vector<torch::Tensor> videos;  // for `inspect` only
      const int64_t stride = params.width * 3;
      int64_t delivered = 0;
      for (int64_t start = 0; start < latent_frames;) {
        const int64_t stop = start == 0 ? 1 : std::min(start + chunk_frames, latent_frames);
        const auto out = vae_.get_method("decode_chunk")({latents.slice(2, start, stop), state}).toTuple();
        const torch::Tensor video = out->elements()[0].toTensor();  // [1, 3, t, H, W] in [-1, 1]
        state = out->elements()[1];
        start = stop;
        if (callbacks.inspect) videos.push_back(video.to(torch::kCPU, torch::kFloat32));
        const torch::Tensor pixels = ((video[0].to(torch::kFloat32).clamp(-1, 1) + 1) * 127.5)
                                         .round()
                                         .to(torch::kUInt8)
                                         .permute({1, 2, 3, 0})  // [t, H, W, 3]
                                         .contiguous()
                                         .to(torch::kCPU);
        if (pixels.size(1) != params.height || pixels.size(2) != params.width ||
            delivered + pixels.size(0) > params.frames) {
          return absl::InternalError(absl::StrCat("vae: chunk of ", pixels.size(0), "x", pixels.size(1), "x",
                                                  pixels.size(2), " after ", delivered, " frames, expected ",
                                                  params.frames, " frames of ", params.height, "x", params.width));
        }
        for (int64_t frame = 0; frame < pixels.size(0); ++frame) {
          if (absl::Status sent = callbacks.frame(pixels[frame].data_ptr<uint8_t>(), stride); !sent.ok()) return sent;
        }
        delivered += pixels.size(0);
        progress(delivered);
      }
      if (delivered != params.frames) {
        return absl::InternalError(
            absl::StrCat("vae: decoded ", delivered, " frames, expected ", params.frames, " for the request"));
      }
      if (callbacks.inspect) {
        const torch::Tensor host_latents = latents_.to(torch::kCPU, torch::kFloat32).contiguous();
        callbacks.inspect("latents", host_latents.sizes().vec(), host_latents.data_ptr<float>());
        const torch::Tensor video = torch::cat(videos, 2).contiguous();
        callbacks.inspect("video", video.sizes().vec(), video.data_ptr<float>());
      }
      return absl::OkStatus();
    });
  }

 private:
  // The conditional and unconditional passes on the two CFG halves of the group.
  bool SplitGuidance() const { return group_ && group_->layout().cfg == 2; }

  // A stage the followers of a device group take part in: on the leader, a failure other than a
  // cancel ends the group (DeviceGroup::Fail says whose failure it was).
  template <typename Body>
  absl::Status GroupStage(const char* stage, const GenerationParams& params, Body&& body) {
    absl::Status status = Guarded(stage, params, std::forward<Body>(body));
    if (!status.ok() && status.code() != absl::StatusCode::kCancelled && group_ && group_->leader()) {
      EndGeneration();
      status = group_->Fail(status);
    }
    return status;
  }

  // Runs one stage, turning LibTorch's exceptions into statuses. Running out of memory also drops
  // the generation's tensors and hands the allocator's cached blocks back, so the next job starts
  // from the memory the modules alone hold.
  template <typename Body>
  absl::Status Guarded(const char* stage, const GenerationParams& params, Body&& body) {
    try {
      return body();
    } catch (const std::exception& error) {
      const absl::Status status = ModelError(stage, error.what(), params, device_.str());
      if (status.code() == absl::StatusCode::kResourceExhausted) {
        EndGeneration();
        if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
      }
      return status;
    }
  }

  ModelManifest manifest_;
  std::unique_ptr<Tokenizer> tokenizer_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat32;
  torch::jit::script::Module dit_, text_encoder_, vae_;
  torch::Tensor context_;  // the text conditioning, from EncodeText to Denoise
  torch::Tensor latents_;  // the final latents, from Denoise to DecodeAndStream
  std::unique_ptr<DeviceGroup> group_;  // several devices: this process's rank of them
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelFamily>> LoadWan21(const ModelManifest& manifest, const LoadOptions& options) {
  kernels::EnsureOpsRegistered();  // TorchScript's calls to torch.ops.radial.* resolve against it
  const ModelManifest& m = manifest;
  auto tokenizer = Tokenizer::Load(m.Path(m.tokenizer_file), m.max_length, m.pad_id, m.eos_id);
  if (!tokenizer.ok()) return tokenizer.status();
  auto family = std::make_unique<Wan21>(manifest, *std::move(tokenizer));
  if (options.devices.size() < 2) {
    if (options.cfg_parallel) return absl::InvalidArgumentError("--cfg-parallel: needs --devices with two or more devices");
    if (absl::Status loaded = family->LoadModules(options); !loaded.ok()) return loaded;
    return std::unique_ptr<ModelFamily>(std::move(family));
  }
  LoadOptions rank_options = options;
  rank_options.device = options.devices.at(static_cast<size_t>(options.group_rank));
  if (options.group_rank == 0) {
    // The leader checks the layout before loading anything, loads its modules, then starts the
    // followers (each loads its own).
    auto layout = PlanGroupLayout(options, m);
    if (!layout.ok()) return layout.status();
    if (absl::Status loaded = family->LoadModules(rank_options); !loaded.ok()) return loaded;
    if (absl::Status parallel = family->CheckParallel(*layout); !parallel.ok()) return parallel;
    auto group = DeviceGroup::Start(options, m);
    if (!group.ok()) return group.status();
    family->set_group(*std::move(group));
    return std::unique_ptr<ModelFamily>(std::move(family));
  }
  // A follower: connected to the leader first, so that a load failure reaches it.
  auto group = DeviceGroup::Start(options, m);
  if (!group.ok()) return group.status();
  absl::Status loaded = family->LoadModules(rank_options);
  if (loaded.ok()) loaded = (*group)->Ready();
  if (!loaded.ok()) {
    (*group)->ReportError(loaded);
    return loaded;
  }
  family->set_group(*std::move(group));
  return std::unique_ptr<ModelFamily>(std::move(family));
}

}  // namespace radial::worker
