// Text-to-video generation with one loaded model bundle: prompt clean-up (as WanPipeline) ->
// tokenize -> text encoder -> flow-matching sampler (UniPC or Euler, flow_schedule.h) with
// classifier-free guidance over the DiT (radial attention inside) -> VAE decode -> RGB frames.
// The interface is plain C++: LibTorch stays inside pipeline.cc, so callers (the gRPC worker) never
// include it next to protobuf headers, whose copies in LibTorch conflict.
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

enum class Stage { kEncodingText, kDenoising, kDecoding };

struct GenerationCallbacks {
  // After each stage starts and after each denoising step (step 1..total).
  std::function<void(Stage stage, int64_t step, int64_t total)> progress;
  // Each decoded frame in order: width*height RGB24 pixels, rows `stride` bytes apart. An error
  // stops the generation and is returned.
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
  // The geometry is too small for the radial rule: some query tile would attend nothing (frames of
  // fewer than block/3 tokens, or a short last tile), so the whole generation ran dense.
  bool radial_fell_back = false;
  int64_t latent_frames = 0;
  int64_t tokens_per_frame = 0;
};

class Pipeline {
 public:
  // Loads the bundle's TorchScript modules and tokenizer onto `device` ("cpu", "cuda", "cuda:1").
  static absl::StatusOr<std::unique_ptr<Pipeline>> Load(const std::string& bundle_dir, const std::string& device);
  ~Pipeline();

  const ModelManifest& manifest() const;
  std::string device_name() const;

  // INVALID_ARGUMENT for sizes the model cannot take (the scheduler validates first; this is the
  // worker's own guard), CANCELLED when `cancelled` fired, INTERNAL for a LibTorch failure.
  absl::StatusOr<GenerationReport> Generate(const GenerationParams& params, const GenerationCallbacks& callbacks);

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_PIPELINE_H_
