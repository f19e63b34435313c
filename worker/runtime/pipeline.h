// Text-to-video generation with one loaded model bundle, in three stages: text (prompt clean-up,
// tokenize, text encoder), denoise (flow-matching sampler with classifier-free guidance over the
// DiT, radial attention inside), and decode-and-stream (the VAE decodes the latents chunk by chunk
// and each chunk's RGB frames go to the caller at once, so encoding can start while decoding goes
// on). The stages of each architecture live in a ModelFamily (model_family.h; Wan2.1: wan21.cc).
// The interface is plain C++: LibTorch stays inside the family's file, so callers (the gRPC worker)
// never include it next to protobuf headers, whose copies in LibTorch conflict.
//
// One Pipeline runs one generation at a time (the worker's job thread owns it).
#ifndef RADIAL_WORKER_RUNTIME_PIPELINE_H_
#define RADIAL_WORKER_RUNTIME_PIPELINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_manifest.h"

namespace radial::worker {

// A fully resolved request (the scheduler fills every default).
struct GenerationParams {
  std::string prompt;
  std::string negative_prompt;
  int64_t width = 0;
  int64_t height = 0;
  int64_t frames = 0;  // video frames, temporal_factor*k + 1
  int64_t steps = 0;
  double guidance = 0;  // <= 1: no unconditional pass
  uint64_t seed = 0;
  // Radial attention: blocks < dense_layers, the first dense_steps and the last dense_last_steps
  // steps, or everything when dense, use dense attention.
  RadialSettings radial;
  bool dense = false;
};

// Whether denoising step `step` (0-based) of `params` runs dense attention: a dense request, the
// first radial.dense_steps or the last radial.dense_last_steps steps.
bool StepIsDense(const GenerationParams& params, int64_t step);

// Whether no step of `params` runs radial attention: a dense request, or dense_steps covering
// every step.
bool AllStepsDense(const GenerationParams& params);

enum class Stage { kEncodingText, kDenoising, kDecoding };

struct GenerationCallbacks {
  // (kEncodingText, 0, 0) as text encoding starts; (kDenoising, i + 1, steps) after step i;
  // (kDecoding, 0, frames) as decoding starts and (kDecoding, n, frames) once n frames have been
  // handed to `frame`, ending at (kDecoding, frames, frames).
  std::function<void(Stage stage, int64_t step, int64_t total)> progress;
  // Each decoded frame in order, as soon as its chunk of the VAE's output is on the host:
  // width*height RGB24 pixels, rows `stride` bytes apart, valid during the call. An error stops
  // the generation and is returned.
  std::function<absl::Status(const uint8_t* rgb, int64_t stride)> frame;
  // Polled between denoising steps; true stops the generation with CANCELLED.
  std::function<bool()> cancelled;
  // Optional, for tests and tools: after decoding, "latents" (the sampler's final latents,
  // [1, C, F, H, W]) and "video" (the VAE's output in [-1, 1], [1, 3, T, H, W]), as float32 values.
  std::function<void(const std::string& name, const std::vector<int64_t>& shape, const float* data)> inspect;
};

struct GenerationReport {
  double text_encode_seconds = 0;
  double denoise_seconds = 0;
  double decode_seconds = 0;  // VAE decode and frame delivery (the frame callback's time included)
  double mask_density = 1.0;  // tile density of the radial mask used (1.0 when dense throughout)
  // Never set: radial attention no longer falls back to dense (a tile row the rule leaves empty
  // keeps its diagonal tile, docs/radial-attention.md). Removed once no caller reads it.
  bool radial_fell_back = false;
  int64_t latent_frames = 0;
  int64_t tokens_per_frame = 0;
  int64_t decode_chunks = 0;  // calls of the VAE's decode_chunk
};

// How a bundle is loaded.
struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1"
  // CUDA only: the share of the device's memory this process may allocate, in (0, 1]; a job that
  // needs more fails with RESOURCE_EXHAUSTED (LibTorch's per-process memory fraction). 1: no cap.
  double gpu_memory_fraction = 1.0;
  // TorchScript's graph executor, process-wide: "profiling" (LibTorch's default: the first call
  // of each shape records it, the second compiles a plan specialised to it, with the TensorExpr
  // fuser on CUDA), "simple" (no profiling and no optimisation passes) or "legacy" (optimises on
  // the first call, without shape profiles). For measuring (pipeline_trace --jit-executor).
  std::string jit_executor = "profiling";
  // One video on several devices (radial-worker --devices): one process per device, this one rank 0
  // (the leader, which decodes and streams), each other rank a copy of this executable that the
  // leader starts (RunGroupMember) and restarts after a failure. The DiT's tokens are split
  // across the ranks of a sequence-parallel group (Ulysses); with cfg_parallel the conditional
  // and the unconditional pass run on two halves of the devices. Empty or one entry: `device`
  // alone. All "cpu" (Gloo collectives; for tests) or all distinct CUDA devices (NCCL).
  std::vector<std::string> devices;
  bool cfg_parallel = false;
  // Set by RunGroupMember only: this process's rank (>= 1) and the leader's store, "host:port".
  int group_rank = 0;
  std::string group_store;
};

// The first argument that makes a radial executable a follower rank of a device group (the leader
// starts it so; not for people).
inline constexpr char kGroupMemberFlag[] = "--radial-group-member";
// Runs this process as the follower rank that `argv` (kGroupMemberFlag, then what the leader
// passes) names, until the leader goes away; returns the process's exit code. Executables that
// can lead a group (radial-worker, pipeline_trace) call it first when argv[1] is kGroupMemberFlag.
int RunGroupMember(int argc, char** argv);

// A size to warm up: width x height x frames.
struct WarmupSize {
  int64_t width = 0;
  int64_t height = 0;
  int64_t frames = 0;
};

// Parses "WxHxF,WxHxF,..." (e.g. "832x480x81"); empty text gives no sizes. INVALID_ARGUMENT naming
// --warmup and the bad entry.
absl::StatusOr<std::vector<WarmupSize>> ParseWarmupSizes(const std::string& text);

// One warm-up generation: its size and stage times.
struct WarmupRun {
  WarmupSize size;
  int run = 0;  // 1-based within the size
  GenerationReport report;
};

class Pipeline {
 public:
  // Loads the bundle's TorchScript modules and tokenizer onto `device` ("cpu", "cuda", "cuda:1").
  static absl::StatusOr<std::unique_ptr<Pipeline>> Load(const std::string& bundle_dir, const std::string& device);
  static absl::StatusOr<std::unique_ptr<Pipeline>> Load(const std::string& bundle_dir, const LoadOptions& options);
  ~Pipeline();

  const ModelManifest& manifest() const;
  std::string device_name() const;

  // INVALID_ARGUMENT for sizes the model cannot take (the scheduler validates first; this is the
  // worker's own guard), CANCELLED when `cancelled` fired, INTERNAL for a LibTorch failure.
  absl::StatusOr<GenerationReport> Generate(const GenerationParams& params, const GenerationCallbacks& callbacks);

  // Runs kWarmupGenerations short generations (kWarmupSteps steps: the first dense, the rest radial,
  // with the manifest's default guidance and negative prompt) at each of `sizes` (duplicates once;
  // radial-worker puts the manifest's default size first), so that TorchScript's profiling executor has profiled and optimised every
  // module for those shapes before a user's job arrives. `done` (optional) hears each run.
  // INVALID_ARGUMENT for a size the model cannot take (the message names it).
  static constexpr int kWarmupGenerations = 3;
  static constexpr int64_t kWarmupSteps = 2;
  absl::Status Warmup(const std::vector<WarmupSize>& sizes, const std::function<void(const WarmupRun&)>& done);

  // A follower rank of a device group (loaded with LoadOptions::group_rank >= 1): serves the
  // leader's jobs until it goes away (RunGroupMember).
  absl::Status ServeGroup();

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_PIPELINE_H_
