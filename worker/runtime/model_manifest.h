// The manifest of a model bundle (manifest.json, written by the exporter in worker/exporter/): what
// the files are, the model's sizes, limits, defaults and radial-attention knobs. Plain data: no
// LibTorch and no protobuf here, so both the pipeline and the gRPC layer can include it.
#ifndef RADIAL_WORKER_RUNTIME_MODEL_MANIFEST_H_
#define RADIAL_WORKER_RUNTIME_MODEL_MANIFEST_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace radial::worker {

// The radial-attention knobs: the manifest's defaults, and what a request runs with.
struct RadialSettings {
  double decay = 1.0;
  bool sink = true;
  int64_t block = 128;
  int64_t dense_layers = 0;
  int64_t dense_steps = 0;
  int64_t dense_last_steps = 0;
};

struct SizeLimit {
  int64_t min = 0;
  int64_t max = 0;
  int64_t multiple = 1;  // sizes: multiple of this; frames: step (count = step*k + 1)
};

struct ModelManifest {
  std::string bundle_dir;  // absolute or as given; file names below are relative to it
  std::string name;
  std::string architecture;
  std::string dtype;  // float32, bfloat16, float16

  std::string dit_file;
  int64_t in_channels = 0;
  std::array<int64_t, 3> patch_size{1, 1, 1};  // frames, height, width
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;

  std::string text_encoder_file;
  std::string tokenizer_file;
  int64_t max_length = 0;
  int64_t pad_id = 0;
  int64_t eos_id = 1;

  std::string vae_file;
  int64_t latent_channels = 0;
  int64_t temporal_factor = 4;
  int64_t spatial_factor = 8;
  // Latent frames per vae_decoder.pt decode_chunk call after the first, which is always one frame
  // (optional vae.decode_chunk_frames, >= 1): the chunking of its forward, so an incremental decode
  // chunked this way gives forward's video exactly.
  int64_t vae_decode_chunk_frames = 1;

  std::string sampler;  // flow_euler or flow_unipc (flow_schedule.h)
  double shift = 1.0;
  int64_t num_train_timesteps = 1000;
  int64_t solver_order = 2;  // optional sampler.solver_order; flow_unipc only

  SizeLimit width, height, frames, steps;
  double guidance_max = 0;
  int64_t prompt_max_chars = 0;

  int64_t default_width = 0, default_height = 0, default_frames = 0, default_fps = 0, default_steps = 0;
  double default_guidance = 0;
  std::string default_negative_prompt;
  RadialSettings radial;  // defaults

  std::string Path(const std::string& file) const { return bundle_dir + "/" + file; }
};

// Reads <bundle_dir>/manifest.json. Errors name the file and the missing or malformed key
// ("manifest.json: dit.num_layers: got a string, expected an integer").
absl::StatusOr<ModelManifest> LoadManifest(const std::string& bundle_dir);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_MODEL_MANIFEST_H_
