#include "scheduler/request_validator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace radial::server {
namespace {

using v1::GenerateRequest;
using v1::ModelInfo;

ModelInfo TinyModel() {
  ModelInfo model;
  model.set_name("wan2.1-tiny");
  model.set_architecture("wan2.1");
  model.mutable_width()->set_min(64);
  model.mutable_width()->set_max(512);
  model.mutable_height()->set_min(64);
  model.mutable_height()->set_max(512);
  model.set_size_multiple(16);
  model.mutable_frames()->set_min(1);
  model.mutable_frames()->set_max(81);
  model.set_frame_step(4);
  model.mutable_steps()->set_min(1);
  model.mutable_steps()->set_max(100);
  model.set_guidance_max(20.0f);
  model.set_prompt_max_chars(20);
  model.set_layers(2);
  GenerateRequest& defaults = *model.mutable_defaults();
  defaults.set_model("wan2.1-tiny");
  defaults.set_negative_prompt("blurry");
  defaults.set_width(128);
  defaults.set_height(96);
  defaults.set_frames(17);
  defaults.set_fps(16);
  defaults.set_steps(8);
  defaults.set_guidance(5.0f);
  defaults.mutable_radial()->set_decay(1.0f);
  defaults.mutable_radial()->set_sink(true);
  defaults.mutable_radial()->set_block(64);
  defaults.mutable_radial()->set_dense_layers(1);
  defaults.mutable_radial()->set_dense_steps(12);
  defaults.mutable_radial()->set_dense_last_steps(0);
  defaults.mutable_radial()->set_dense(false);
  return model;
}

absl::StatusOr<GenerateRequest> Resolve(const GenerateRequest& request) {
  return ResolveRequest(request, {TinyModel()}, "wan2.1-tiny", 42, RequestDefaults{});
}

GenerateRequest Prompt(const std::string& prompt) {
  GenerateRequest request;
  request.set_prompt(prompt);
  return request;
}

// The request is rejected with INVALID_ARGUMENT whose message names `field` and the allowed range.
void ExpectInvalid(const GenerateRequest& request, const std::string& field, const std::string& range_text) {
  const auto result = Resolve(request);
  ASSERT_FALSE(result.ok()) << request.DebugString();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(result.status().message());
  EXPECT_EQ(message.rfind(field + ": got ", 0), 0u) << message;
  EXPECT_NE(message.find("expected"), std::string::npos) << message;
  EXPECT_NE(message.find(range_text), std::string::npos) << message;
}

TEST(ResolveRequestTest, FillsEveryDefault) {
  const auto result = Resolve(Prompt("a cat"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->model(), "wan2.1-tiny");
  EXPECT_EQ(result->negative_prompt(), "blurry");
  EXPECT_EQ(result->width(), 128u);
  EXPECT_EQ(result->height(), 96u);
  EXPECT_EQ(result->frames(), 17u);
  EXPECT_EQ(result->fps(), 16u);
  EXPECT_EQ(result->fragment_frames(), 16u) << "one second of video per fragment";
  EXPECT_EQ(result->steps(), 8u);
  EXPECT_FLOAT_EQ(result->guidance(), 5.0f);
  EXPECT_EQ(result->seed(), 42u);
  EXPECT_FLOAT_EQ(result->radial().decay(), 1.0f);
  EXPECT_TRUE(result->radial().sink());
  EXPECT_EQ(result->radial().block(), 64u);
  EXPECT_EQ(result->radial().dense_layers(), 1u);
  EXPECT_EQ(result->radial().dense_steps(), 8u) << "the default 12 dense steps are capped at the 8 steps";
  EXPECT_FALSE(result->radial().dense());
}

TEST(ResolveRequestTest, KeepsWhatTheClientSet) {
  GenerateRequest request = Prompt("a dog");
  request.set_width(256);
  request.set_height(64);
  request.set_frames(33);
  request.set_fps(24);
  request.set_fragment_frames(1);
  request.set_steps(50);
  request.set_guidance(0.0f);
  request.set_seed(0);
  request.set_priority(-10);
  request.set_negative_prompt("dark");
  request.mutable_radial()->set_decay(0.2f);
  request.mutable_radial()->set_sink(false);
  request.mutable_radial()->set_block(128);
  request.mutable_radial()->set_dense_steps(12);
  const auto result = Resolve(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->width(), 256u);
  EXPECT_EQ(result->frames(), 33u);
  EXPECT_EQ(result->fragment_frames(), 1u);
  EXPECT_EQ(result->steps(), 50u);
  EXPECT_FLOAT_EQ(result->guidance(), 0.0f) << "an explicit 0 is not the default";
  EXPECT_EQ(result->seed(), 0u) << "an explicit seed 0 is kept";
  EXPECT_EQ(result->priority(), -10);
  EXPECT_EQ(result->negative_prompt(), "dark");
  EXPECT_FLOAT_EQ(result->radial().decay(), 0.2f);
  EXPECT_FALSE(result->radial().sink());
  EXPECT_EQ(result->radial().block(), 128u);
  EXPECT_EQ(result->radial().dense_steps(), 12u);
}

TEST(ResolveRequestTest, UnknownModelIsNotFound) {
  GenerateRequest request = Prompt("a cat");
  request.set_model("wan2.1-huge");
  const auto result = Resolve(request);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(result.status().message().find("model: got 'wan2.1-huge', expected one of the served models [wan2.1-tiny]"),
            std::string::npos)
      << result.status();
}

TEST(ResolveRequestTest, RejectsBadPrompts) {
  ExpectInvalid(Prompt(""), "prompt", "1 to 20 characters");
  ExpectInvalid(Prompt(std::string(21, 'a')), "prompt", "1 to 20 characters");
  ExpectInvalid(Prompt("bad \xC3"), "prompt", "UTF-8");
  ExpectInvalid(Prompt("bad \xFF\xFE"), "prompt", "UTF-8");
  // 20 characters of 2-byte UTF-8 (40 bytes) are within the limit: the limit counts characters.
  std::string accents;
  for (int i = 0; i < 20; ++i) accents += "\xC3\xA9";
  EXPECT_TRUE(Resolve(Prompt(accents)).ok());
  GenerateRequest request = Prompt("ok");
  request.set_negative_prompt(std::string(21, 'n'));
  ExpectInvalid(request, "negative_prompt", "0 to 20 characters");
}

TEST(ResolveRequestTest, RejectsBadSizes) {
  for (uint32_t width : {130u, 48u, 528u}) {
    GenerateRequest request = Prompt("a cat");
    request.set_width(width);
    ExpectInvalid(request, "width", "a multiple of 16 in [64, 512]");
  }
  GenerateRequest request = Prompt("a cat");
  request.set_height(1000);
  ExpectInvalid(request, "height", "a multiple of 16 in [64, 512]");
}

TEST(ResolveRequestTest, RejectsBadFrameCounts) {
  for (uint32_t frames : {16u, 18u, 85u}) {
    GenerateRequest request = Prompt("a cat");
    request.set_frames(frames);
    ExpectInvalid(request, "frames", "4k+1 in [1, 81]");
  }
  GenerateRequest one = Prompt("a cat");
  one.set_frames(1);
  EXPECT_TRUE(Resolve(one).ok()) << "a single image is 4*0+1 frames";
}

TEST(ResolveRequestTest, RejectsBadStepsFpsFragmentsPriority) {
  GenerateRequest steps = Prompt("a cat");
  steps.set_steps(101);
  ExpectInvalid(steps, "steps", "[1, 100]");
  GenerateRequest fps = Prompt("a cat");
  fps.set_fps(121);
  ExpectInvalid(fps, "fps", "[1, 120]");
  GenerateRequest fragments = Prompt("a cat");
  fragments.set_fragment_frames(1001);
  ExpectInvalid(fragments, "fragment_frames", "0 (one second of video) or 1 to 1000");
  fragments.set_fragment_frames(1000);
  EXPECT_TRUE(Resolve(fragments).ok());
  GenerateRequest fast = Prompt("a cat");
  fast.set_fps(24);
  const auto second = Resolve(fast);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->fragment_frames(), 24u) << "0 resolves to the request's own fps";
  for (int32_t priority : {-11, 11}) {
    GenerateRequest request = Prompt("a cat");
    request.set_priority(priority);
    ExpectInvalid(request, "priority", "[-10, 10]");
  }
}

TEST(ResolveRequestTest, RejectsBadGuidance) {
  for (float guidance : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.5f,
                         20.5f}) {
    GenerateRequest request = Prompt("a cat");
    request.set_guidance(guidance);
    ExpectInvalid(request, "guidance", "a finite value in [0, 20]");
  }
}

TEST(ResolveRequestTest, RejectsBadRadialKnobs) {
  for (float decay : {0.0f, -1.0f, 10.5f, std::numeric_limits<float>::quiet_NaN()}) {
    GenerateRequest request = Prompt("a cat");
    request.mutable_radial()->set_decay(decay);
    ExpectInvalid(request, "radial.decay", "(0, 10]");
  }
  GenerateRequest block = Prompt("a cat");
  block.mutable_radial()->set_block(32);
  ExpectInvalid(block, "radial.block", "64 or 128");
  GenerateRequest layers = Prompt("a cat");
  layers.mutable_radial()->set_dense_layers(3);
  ExpectInvalid(layers, "radial.dense_layers", "0 to 2");
  GenerateRequest steps = Prompt("a cat");
  steps.mutable_radial()->set_dense_steps(9);
  ExpectInvalid(steps, "radial.dense_steps", "0 to 8");
  GenerateRequest last = Prompt("a cat");
  last.mutable_radial()->set_dense_last_steps(9);
  ExpectInvalid(last, "radial.dense_last_steps", "0 to 8");
}

}  // namespace
}  // namespace radial::server
