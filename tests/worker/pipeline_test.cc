// The worker's model runtime on the tiny random-weight bundle written by the exporter (the ctest
// fixture export_tiny_bundle; path in RADIAL_TEST_BUNDLE).
#include "pipeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model_family.h"
#include "model_manifest.h"
#include "tokenizer.h"

namespace radial::worker {
namespace {

std::string BundleDir() {
  const char* dir = std::getenv("RADIAL_TEST_BUNDLE");
  return dir == nullptr ? "" : dir;
}

GenerationParams SmallRequest() {
  GenerationParams params;
  params.prompt = "a red fox runs through snow";
  params.negative_prompt = "blurry";
  params.width = 64;
  params.height = 64;
  params.frames = 5;
  params.steps = 2;
  params.guidance = 5.0;
  params.seed = 7;
  params.radial.decay = 1.0;
  params.radial.sink = true;
  params.radial.block = 64;
  params.radial.dense_layers = 1;
  params.radial.dense_steps = 1;
  return params;
}

struct Collected {
  std::vector<std::string> frames;
  std::vector<int64_t> steps;
  // Every callback in order: "frame", or "decoding n/total".
  std::vector<std::string> events;
};

absl::StatusOr<GenerationReport> Generate(Pipeline& pipeline, const GenerationParams& params, Collected& out,
                                     std::function<bool()> cancelled = nullptr) {
  GenerationCallbacks callbacks;
  callbacks.progress = [&](Stage stage, int64_t step, int64_t total) {
    if (stage == Stage::kDenoising) out.steps.push_back(step);
    if (stage == Stage::kDecoding) out.events.push_back(std::to_string(step) + "/" + std::to_string(total));
  };
  callbacks.frame = [&](const uint8_t* rgb, int64_t stride) {
    out.events.push_back("frame");
    out.frames.emplace_back(reinterpret_cast<const char*>(rgb), stride * params.height);
    return absl::OkStatus();
  };
  callbacks.cancelled = std::move(cancelled);
  return pipeline.Generate(params, callbacks);
}

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_FALSE(BundleDir().empty()) << "RADIAL_TEST_BUNDLE is not set";
    auto pipeline = Pipeline::Load(BundleDir(), "cpu");
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    pipeline_ = std::move(*pipeline).release();
  }
  static void TearDownTestSuite() { delete pipeline_; }
  static Pipeline* pipeline_;
};
Pipeline* PipelineTest::pipeline_ = nullptr;

TEST(ModelManifestTest, LoadsTheTinyBundle) {
  const auto manifest = LoadManifest(BundleDir());
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->name, "wan2.1-tiny");
  EXPECT_EQ(manifest->architecture, "wan2.1");
  EXPECT_EQ(manifest->latent_channels, 16);
  EXPECT_EQ(manifest->temporal_factor, 4);
  EXPECT_EQ(manifest->spatial_factor, 8);
  EXPECT_EQ(manifest->vae_decode_chunk_frames, 4);  // TinyConfig's
  EXPECT_EQ(manifest->frames.multiple, 4);
  EXPECT_GT(manifest->num_layers, 0);
}

TEST(ModelManifestTest, MissingOrMalformedKeysAreNamed) {
  const auto dir = std::filesystem::temp_directory_path() / "radial_manifest_test";
  std::filesystem::create_directories(dir);
  std::ifstream source(BundleDir() + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(source);
  manifest["dit"].erase("num_layers");
  std::ofstream(dir / "manifest.json") << manifest.dump();
  auto loaded = LoadManifest(dir.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(std::string(loaded.status().message()), "manifest.json: dit.num_layers: missing");
  manifest["dit"]["num_layers"] = "four";
  std::ofstream(dir / "manifest.json") << manifest.dump();
  loaded = LoadManifest(dir.string());
  EXPECT_EQ(std::string(loaded.status().message()), "manifest.json: dit.num_layers: got string, expected an integer");
  std::ofstream(dir / "manifest.json") << "{not json";
  EXPECT_EQ(LoadManifest(dir.string()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadManifest((dir / "nothing").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelManifestTest, VaeDecodeChunkFramesIsOptionalAndPositive) {
  const auto dir = std::filesystem::temp_directory_path() / "radial_manifest_chunk_test";
  std::filesystem::create_directories(dir);
  std::ifstream source(BundleDir() + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(source);
  manifest["vae"].erase("decode_chunk_frames");  // bundles written before the key
  std::ofstream(dir / "manifest.json") << manifest.dump();
  auto loaded = LoadManifest(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->vae_decode_chunk_frames, 1);
  manifest["vae"]["decode_chunk_frames"] = 0;
  std::ofstream(dir / "manifest.json") << manifest.dump();
  loaded = LoadManifest(dir.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(std::string(loaded.status().message()), "manifest.json: vae.decode_chunk_frames: got 0, expected >= 1");
  manifest["vae"]["decode_chunk_frames"] = 2.5;
  std::ofstream(dir / "manifest.json") << manifest.dump();
  loaded = LoadManifest(dir.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(std::string(loaded.status().message()),
            "manifest.json: vae.decode_chunk_frames: got number, expected an integer");
  // POSIX, not std::filesystem::remove_all: libtorch.so exports its own std::filesystem symbols,
  // and remove_all through them crashed (worker/README.md).
  ::unlink((dir / "manifest.json").c_str());
  ::rmdir(dir.c_str());
}

TEST(TokenizerTest, MatchesThePythonTokenizerOnThePinnedVectors) {
  const auto manifest = LoadManifest(BundleDir());
  ASSERT_TRUE(manifest.ok());
  auto tokenizer = Tokenizer::Load(manifest->Path(manifest->tokenizer_file), manifest->max_length, manifest->pad_id,
                                   manifest->eos_id);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::ifstream file(BundleDir() + "/tokenizer_test_vectors.json");
  const nlohmann::json vectors = nlohmann::json::parse(file);
  ASSERT_GE(vectors["cases"].size(), 3u);
  for (const auto& c : vectors["cases"]) {
    const auto tokens = (*tokenizer)->Encode(c["prompt"].get<std::string>());
    ASSERT_TRUE(tokens.ok());
    EXPECT_EQ(tokens->ids, c["ids"].get<std::vector<int64_t>>()) << c["prompt"];
    EXPECT_EQ(tokens->mask, c["attention_mask"].get<std::vector<int64_t>>()) << c["prompt"];
  }
}

TEST_F(PipelineTest, GeneratesTheRequestedFramesDeterministically) {
  Collected first, second, other_seed;
  const auto report = Generate(*pipeline_, SmallRequest(), first);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(first.frames.size(), 5u);
  EXPECT_EQ(first.frames[0].size(), 64u * 64u * 3u);
  EXPECT_EQ(first.steps, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(report->latent_frames, 2);
  EXPECT_EQ(report->tokens_per_frame, 16);
  // 16 tokens per frame < block/3: rows the rule leaves empty keep their diagonal tile, so the
  // generation still runs radial attention (docs/radial-attention.md).
  EXPECT_FALSE(report->radial_fell_back);
  EXPECT_GT(report->mask_density, 0.0);
  // Noise-like but not constant.
  const std::string& pixels = first.frames[2];
  EXPECT_NE(pixels.find_first_not_of(pixels[0]), std::string::npos);
  ASSERT_TRUE(Generate(*pipeline_, SmallRequest(), second).ok());
  EXPECT_EQ(first.frames, second.frames) << "same request and seed, same video";
  GenerationParams params = SmallRequest();
  params.seed = 8;
  ASSERT_TRUE(Generate(*pipeline_, params, other_seed).ok());
  EXPECT_NE(first.frames, other_seed.frames);
}

TEST_F(PipelineTest, RadialAttentionAtTheDemoGeometry) {
  GenerationParams params = SmallRequest();
  params.width = 128;
  params.height = 128;
  params.frames = 13;  // 4 latent frames of 64 tokens: one 64-token tile per frame
  Collected radial, dense;
  const auto report = Generate(*pipeline_, params, radial);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->radial_fell_back);
  EXPECT_EQ(report->tokens_per_frame, 64);
  EXPECT_GT(report->mask_density, 0.5);
  EXPECT_LT(report->mask_density, 1.0) << "frames 3 apart are decimated";
  EXPECT_EQ(radial.frames.size(), 13u);
  params.dense = true;
  const auto dense_report = Generate(*pipeline_, params, dense);
  ASSERT_TRUE(dense_report.ok());
  EXPECT_EQ(dense_report->mask_density, 1.0);
  EXPECT_NE(radial.frames, dense.frames) << "the radial mask changes the result";
}

TEST_F(PipelineTest, DecodeHandsOverEachChunksFramesBeforeDecodingTheNext) {
  GenerationParams params = SmallRequest();
  params.frames = 13;  // 4 latent frames: chunks of 1 and then decode_chunk_frames latent frames
  Collected out;
  const auto report = Generate(*pipeline_, params, out);
  ASSERT_TRUE(report.ok()) << report.status();
  const int64_t chunk = pipeline_->manifest().vae_decode_chunk_frames;
  const int64_t later_chunks = (4 - 1 + chunk - 1) / chunk;
  EXPECT_EQ(report->decode_chunks, 1 + later_chunks);
  // The first chunk gives one frame, each later one temporal_factor frames per latent frame; the
  // frames of a chunk arrive before the next chunk's progress, which counts them.
  std::vector<std::string> expected = {"0/13", "frame", "1/13"};
  int64_t delivered = 1;
  for (int64_t latent = 1; latent < 4; latent += chunk) {
    const int64_t frames = 4 * std::min<int64_t>(chunk, 4 - latent);
    for (int64_t i = 0; i < frames; ++i) expected.push_back("frame");
    delivered += frames;
    expected.push_back(std::to_string(delivered) + "/13");
  }
  EXPECT_EQ(out.events, expected);
  EXPECT_EQ(out.frames.size(), 13u);
}

TEST_F(PipelineTest, WarmupRunsEachListedSizeOnce) {
  std::vector<WarmupRun> runs;
  const absl::Status warmed =
      pipeline_->Warmup({{64, 64, 5}, {64, 64, 5}}, [&](const WarmupRun& run) { runs.push_back(run); });
  ASSERT_TRUE(warmed.ok()) << warmed;
  const ModelManifest& m = pipeline_->manifest();
  ASSERT_EQ(runs.size(), size_t{Pipeline::kWarmupGenerations}) << "a size listed twice is warmed once";
  EXPECT_EQ(runs[0].run, 1);
  EXPECT_EQ(runs.back().size.width, 64);
  EXPECT_EQ(runs.back().run, Pipeline::kWarmupGenerations);
  const absl::Status too_big = pipeline_->Warmup({{m.width.max + 16, 64, 5}}, nullptr);
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.message().find("--warmup"), std::string::npos) << too_big;
}

TEST(WarmupSizesTest, ParsesAListAndNamesABadEntry) {
  const auto sizes = ParseWarmupSizes("832x480x81,1280x720x69");
  ASSERT_TRUE(sizes.ok()) << sizes.status();
  ASSERT_EQ(sizes->size(), 2u);
  EXPECT_EQ((*sizes)[1].width, 1280);
  EXPECT_EQ((*sizes)[1].height, 720);
  EXPECT_EQ((*sizes)[1].frames, 69);
  EXPECT_TRUE(ParseWarmupSizes("")->empty());
  for (const char* bad : {"832x480", "832x480x0", "axbxc", "832x480x81,", "-16x16x5"}) {
    const auto parsed = ParseWarmupSizes(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find("--warmup"), std::string::npos) << bad;
  }
}

TEST(ModelErrorTest, OutOfMemoryIsResourceExhaustedNamingTheSize) {
  GenerationParams params;
  params.width = 1280;
  params.height = 768;
  params.frames = 161;
  const std::string torchscript_text =
      "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript code:\n  x = conv\n"
      "RuntimeError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139 GiB\n";
  const absl::Status oom = ModelError("VAE decode", torchscript_text, params, "cuda:0");
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::string(oom.message()),
            "width/height/frames: 1280x768x161 does not fit in the memory of cuda:0 (VAE decode): RuntimeError: CUDA "
            "out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139 GiB; expected a smaller "
            "size or fewer frames");
  EXPECT_EQ(ModelError("denoising", "DefaultCPUAllocator: not enough memory: you tried to allocate 9 bytes", params,
                       "cpu")
                .code(),
            absl::StatusCode::kResourceExhausted);
  const absl::Status other = ModelError("denoising", "shape mismatch", params, "cpu");
  EXPECT_EQ(other.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(std::string(other.message()), "model (denoising): shape mismatch");
}

TEST_F(PipelineTest, CancellationStopsBetweenSteps) {
  Collected out;
  std::atomic<int> polls{0};
  const auto report = Generate(*pipeline_, SmallRequest(), out, [&] { return ++polls > 1; });
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(out.steps, std::vector<int64_t>{1}) << "one step ran, then the cancel was seen";
  EXPECT_TRUE(out.frames.empty());
}

TEST_F(PipelineTest, RejectsSizesTheModelCannotTake) {
  Collected out;
  GenerationParams params = SmallRequest();
  params.width = 72;
  EXPECT_EQ(Generate(*pipeline_, params, out).status().code(), absl::StatusCode::kInvalidArgument);
  params = SmallRequest();
  params.frames = 6;
  EXPECT_EQ(Generate(*pipeline_, params, out).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PipelineTest, AFrameSinkErrorStopsTheGeneration) {
  GenerationCallbacks callbacks;
  int frames = 0;
  callbacks.frame = [&](const uint8_t*, int64_t) {
    return ++frames == 2 ? absl::DataLossError("client went away") : absl::OkStatus();
  };
  const auto report = pipeline_->Generate(SmallRequest(), callbacks);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(frames, 2);
}

}  // namespace
}  // namespace radial::worker
