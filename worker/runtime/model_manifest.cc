#include "model_manifest.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "flow_schedule.h"

namespace radial::worker {
namespace {

using nlohmann::json;

// Walks a dotted key path, reporting the first problem as "manifest.json: <path>: ...".
class Reader {
 public:
  explicit Reader(const json& root) : root_(root) {}

  const absl::Status& status() const { return status_; }

  std::string String(const std::string& path) { return Get<std::string>(path, "a string"); }
  int64_t Int(const std::string& path) { return Get<int64_t>(path, "an integer"); }
  double Number(const std::string& path) { return Get<double>(path, "a number"); }
  bool Bool(const std::string& path) { return Get<bool>(path, "true or false"); }
  // For optional keys: whether the path exists (its type is checked when it is read).
  bool Has(const std::string& path) const { return Lookup(path) != nullptr; }

  std::vector<int64_t> Ints(const std::string& path) {
    const json* node = Find(path);
    std::vector<int64_t> values;
    if (node == nullptr) return values;
    if (!node->is_array()) {
      Fail(path, "expected an array of integers");
      return values;
    }
    for (const json& item : *node) {
      if (!item.is_number_integer()) {
        Fail(path, "expected an array of integers");
        return {};
      }
      values.push_back(item.get<int64_t>());
    }
    return values;
  }

 private:
  template <typename T>
  T Get(const std::string& path, const char* expected) {
    const json* node = Find(path);
    if (node == nullptr) return T{};
    const bool ok = std::is_same_v<T, std::string> ? node->is_string()
                    : std::is_same_v<T, bool>      ? node->is_boolean()
                    : std::is_same_v<T, int64_t>   ? node->is_number_integer()
                                                   : node->is_number();
    if (!ok) {
      Fail(path, absl::StrCat("got ", node->type_name(), ", expected ", expected));
      return T{};
    }
    return node->get<T>();
  }

  // The node at a dotted path, or nullptr when some part of it is missing.
  const json* Lookup(const std::string& path) const {
    const json* node = &root_;
    std::stringstream parts(path);
    std::string part;
    while (std::getline(parts, part, '.')) {
      if (!node->is_object() || !node->contains(part)) return nullptr;
      node = &(*node)[part];
    }
    return node;
  }

  const json* Find(const std::string& path) {
    if (!status_.ok()) return nullptr;
    const json* node = Lookup(path);
    if (node == nullptr) Fail(path, "missing");
    return node;
  }

  void Fail(const std::string& path, const std::string& what) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat("manifest.json: ", path, ": ", what));
  }

  const json& root_;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<ModelManifest> LoadManifest(const std::string& bundle_dir) {
  const std::string path = bundle_dir + "/manifest.json";
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("bundle: cannot read ", path));
  json root;
  try {
    root = json::parse(file);
  } catch (const json::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", error.what()));
  }
  Reader read(root);
  ModelManifest m;
  m.bundle_dir = bundle_dir;
  if (read.Int("format_version") != 1 && read.status().ok()) {
    return absl::InvalidArgumentError("manifest.json: format_version: expected 1");
  }
  m.name = read.String("name");
  m.architecture = read.String("architecture");
  m.dtype = read.String("dtype");
  m.dit_file = read.String("dit.file");
  m.in_channels = read.Int("dit.in_channels");
  const std::vector<int64_t> patch = read.Ints("dit.patch_size");
  m.num_layers = read.Int("dit.num_layers");
  m.num_heads = read.Int("dit.num_heads");
  m.head_dim = read.Int("dit.head_dim");
  m.text_encoder_file = read.String("text_encoder.file");
  m.tokenizer_file = read.String("tokenizer.file");
  m.max_length = read.Int("tokenizer.max_length");
  m.pad_id = read.Int("tokenizer.pad_id");
  m.eos_id = read.Int("tokenizer.eos_id");
  m.vae_file = read.String("vae.file");
  m.latent_channels = read.Int("vae.latent_channels");
  m.temporal_factor = read.Int("vae.temporal_factor");
  m.spatial_factor = read.Int("vae.spatial_factor");
  if (read.Has("vae.decode_chunk_frames")) m.vae_decode_chunk_frames = read.Int("vae.decode_chunk_frames");
  m.sampler = read.String("sampler.name");
  m.shift = read.Number("sampler.shift");
  m.num_train_timesteps = read.Int("sampler.num_train_timesteps");
  if (read.Has("sampler.solver_order")) m.solver_order = read.Int("sampler.solver_order");
  m.default_steps = read.Int("sampler.steps");
  m.default_guidance = read.Number("sampler.guidance");
  for (auto [key, limit] : {std::pair{"width", &m.width}, std::pair{"height", &m.height}}) {
    limit->min = read.Int(absl::StrCat("limits.", key, ".min"));
    limit->max = read.Int(absl::StrCat("limits.", key, ".max"));
    limit->multiple = read.Int(absl::StrCat("limits.", key, ".multiple"));
  }
  m.frames = {read.Int("limits.frames.min"), read.Int("limits.frames.max"), read.Int("limits.frames.step")};
  m.steps = {read.Int("limits.steps.min"), read.Int("limits.steps.max"), 1};
  m.guidance_max = read.Number("limits.guidance.max");
  m.prompt_max_chars = read.Int("limits.prompt_max_chars");
  m.default_width = read.Int("defaults.width");
  m.default_height = read.Int("defaults.height");
  m.default_frames = read.Int("defaults.frames");
  m.default_fps = read.Int("defaults.fps");
  m.default_negative_prompt = read.String("defaults.negative_prompt");
  m.radial.decay = read.Number("radial.decay");
  m.radial.sink = read.Bool("radial.sink");
  m.radial.block = read.Int("radial.block");
  m.radial.dense_layers = read.Int("radial.dense_layers");
  m.radial.dense_steps = read.Int("radial.dense_steps");
  m.radial.dense_last_steps = read.Int("radial.dense_last_steps");
  if (!read.status().ok()) return read.status();
  if (patch.size() != 3) return absl::InvalidArgumentError("manifest.json: dit.patch_size: expected 3 integers");
  m.patch_size = {patch[0], patch[1], patch[2]};
  if (m.vae_decode_chunk_frames < 1) {
    return absl::InvalidArgumentError(absl::StrCat("manifest.json: vae.decode_chunk_frames: got ",
                                                   m.vae_decode_chunk_frames, ", expected >= 1"));
  }
  // Steps come with each request; the default ones stand in for them here.
  if (absl::Status sampler = ValidateFlowSamplerConfig({.name = m.sampler,
                                                        .steps = m.default_steps,
                                                        .shift = m.shift,
                                                        .num_train_timesteps = m.num_train_timesteps,
                                                        .solver_order = m.solver_order});
      !sampler.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("manifest.json: ", sampler.message()));
  }
  return m;
}

}  // namespace radial::worker
