// The worker's own check of an assignment against its manifest: a request the scheduler resolved
// within the model's limits passes, and each field out of range is refused with a message that
// names the field, the value and the range, so that a job failed by the worker says why.
#include "assignment_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace radial::worker {
namespace {

// Wan2.1-like limits at a small size, as the tiny bundle's manifest.
ModelManifest TinyManifest() {
  ModelManifest manifest;
  manifest.name = "tiny";
  manifest.num_layers = 2;
  manifest.width = {64, 256, 16};
  manifest.height = {64, 192, 32};
  manifest.frames = {1, 33, 4};
  manifest.steps = {1, 50, 1};
  manifest.guidance_max = 7.3;  // not a float: compared as the float the worker announces
  manifest.prompt_max_chars = 10;
  return manifest;
}

// A request as the scheduler resolves it: every field set.
v1::GenerateRequest ResolvedRequest() {
  v1::GenerateRequest request;
  request.set_model("tiny");
  request.set_prompt("a fox");
  request.set_width(128);
  request.set_height(128);
  request.set_frames(17);
  request.set_fps(16);
  request.set_steps(4);
  request.set_guidance(5);
  request.set_seed(42);
  v1::RadialOptions& radial = *request.mutable_radial();
  radial.set_decay(1);
  radial.set_sink(true);
  radial.set_block(64);
  radial.set_dense_layers(0);
  radial.set_dense_steps(1);
  radial.set_dense_last_steps(0);
  radial.set_dense(false);
  return request;
}

TEST(AssignmentCheckTest, ResolvedRequestWithinTheManifestPasses) {
  EXPECT_TRUE(CheckAssignment(TinyManifest(), ResolvedRequest()).ok());
}

TEST(AssignmentCheckTest, EdgesOfEveryRangePass) {
  v1::GenerateRequest request = ResolvedRequest();
  request.set_prompt("0123456789");  // 10 characters
  request.set_negative_prompt("");
  request.set_width(256);
  request.set_height(64);
  request.set_frames(33);
  request.set_fps(120);
  request.set_fragment_frames(1000);
  request.set_steps(50);
  request.set_guidance(static_cast<float>(7.3));
  request.mutable_radial()->set_decay(10);
  request.mutable_radial()->set_block(128);
  request.mutable_radial()->set_dense_layers(2);
  request.mutable_radial()->set_dense_steps(50);
  request.mutable_radial()->set_dense_last_steps(50);
  EXPECT_TRUE(CheckAssignment(TinyManifest(), request).ok()) << CheckAssignment(TinyManifest(), request);
  request.set_frames(1);
  request.set_fragment_frames(1);
  request.set_steps(1);
  request.set_guidance(0);
  request.mutable_radial()->set_dense_steps(1);
  request.mutable_radial()->set_dense_last_steps(1);
  EXPECT_TRUE(CheckAssignment(TinyManifest(), request).ok()) << CheckAssignment(TinyManifest(), request);
}

TEST(AssignmentCheckTest, PromptLengthCountsCharactersNotBytes) {
  v1::GenerateRequest request = ResolvedRequest();
  request.set_prompt(
      "\xe7\x8b\x90\xe7\x8b\xb8\xe5\x9c\xa8\xe9\x9b\xaa\xe5\x9c\xb0\xe9\x87\x8c\xe8\xb7\x91\xe3\x80\x82");
  EXPECT_TRUE(CheckAssignment(TinyManifest(), request).ok()) << "8 characters in 24 bytes";
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest&)> change;
  std::string message;  // the whole status message
};

TEST(AssignmentCheckTest, EachFieldOutOfRangeIsInvalidArgumentNamingFieldValueAndRange) {
  const std::vector<BadCase> cases = {
      {"other model", [](auto& r) { r.set_model("wan2.1-14b"); },
       "model: got 'wan2.1-14b', expected 'tiny' (the model this worker serves)"},
      {"no model", [](auto& r) { r.clear_model(); }, "model: got '', expected 'tiny' (the model this worker serves)"},
      {"empty prompt", [](auto& r) { r.clear_prompt(); }, "prompt: got an empty string, expected 1 to 10 characters"},
      {"long prompt", [](auto& r) { r.set_prompt("01234567890"); },
       "prompt: got 11 characters, expected 1 to 10 characters"},
      {"prompt not UTF-8", [](auto& r) { r.set_prompt("a\xff"); },
       "prompt: got bytes that are not valid UTF-8, expected UTF-8 text"},
      {"long negative prompt", [](auto& r) { r.set_negative_prompt(std::string(11, 'x')); },
       "negative_prompt: got 11 characters, expected 0 to 10 characters"},
      {"width not a multiple", [](auto& r) { r.set_width(130); },
       "width: got 130, expected a multiple of 16 in [64, 256]"},
      {"width too large", [](auto& r) { r.set_width(272); }, "width: got 272, expected a multiple of 16 in [64, 256]"},
      {"width unset", [](auto& r) { r.set_width(0); }, "width: got 0, expected a multiple of 16 in [64, 256]"},
      {"height multiple of its own", [](auto& r) { r.set_height(80); },
       "height: got 80, expected a multiple of 32 in [64, 192]"},
      {"height too large", [](auto& r) { r.set_height(224); },
       "height: got 224, expected a multiple of 32 in [64, 192]"},
      {"frames off the step", [](auto& r) { r.set_frames(16); }, "frames: got 16, expected 4k+1 in [1, 33]"},
      {"frames too many", [](auto& r) { r.set_frames(37); }, "frames: got 37, expected 4k+1 in [1, 33]"},
      {"frames unset", [](auto& r) { r.set_frames(0); }, "frames: got 0, expected 4k+1 in [1, 33]"},
      {"fps unset", [](auto& r) { r.set_fps(0); }, "fps: got 0, expected [1, 120]"},
      {"fps too high", [](auto& r) { r.set_fps(121); }, "fps: got 121, expected [1, 120]"},
      {"fragment_frames too many", [](auto& r) { r.set_fragment_frames(1001); },
       "fragment_frames: got 1001, expected 0 (one second of video) or 1 to 1000"},
      {"steps unset", [](auto& r) { r.set_steps(0); }, "steps: got 0, expected [1, 50]"},
      {"steps too many", [](auto& r) { r.set_steps(51); }, "steps: got 51, expected [1, 50]"},
      {"guidance too high", [](auto& r) { r.set_guidance(7.5f); },
       "guidance: got 7.5, expected a finite value in [0, 7.3]"},
      {"guidance negative", [](auto& r) { r.set_guidance(-1); },
       "guidance: got -1, expected a finite value in [0, 7.3]"},
      {"guidance NaN", [](auto& r) { r.set_guidance(std::numeric_limits<float>::quiet_NaN()); },
       "guidance: got nan, expected a finite value in [0, 7.3]"},
      {"decay zero", [](auto& r) { r.mutable_radial()->set_decay(0); },
       "radial.decay: got 0, expected a value in (0, 10]"},
      {"decay unset", [](auto& r) { r.mutable_radial()->clear_decay(); },
       "radial.decay: got 0, expected a value in (0, 10]"},
      {"decay too large", [](auto& r) { r.mutable_radial()->set_decay(10.5f); },
       "radial.decay: got 10.5, expected a value in (0, 10]"},
      {"decay infinite", [](auto& r) { r.mutable_radial()->set_decay(std::numeric_limits<float>::infinity()); },
       "radial.decay: got inf, expected a value in (0, 10]"},
      {"block", [](auto& r) { r.mutable_radial()->set_block(32); }, "radial.block: got 32, expected 64 or 128"},
      {"dense layers", [](auto& r) { r.mutable_radial()->set_dense_layers(3); },
       "radial.dense_layers: got 3, expected 0 to 2 (the model's layers)"},
      {"dense steps", [](auto& r) { r.mutable_radial()->set_dense_steps(5); },
       "radial.dense_steps: got 5, expected 0 to 4 (steps)"},
      {"dense last steps", [](auto& r) { r.mutable_radial()->set_dense_last_steps(5); },
       "radial.dense_last_steps: got 5, expected 0 to 4 (steps)"},
  };
  for (const BadCase& c : cases) {
    v1::GenerateRequest request = ResolvedRequest();
    c.change(request);
    const absl::Status status = CheckAssignment(TinyManifest(), request);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << status;
    EXPECT_EQ(status.message(), c.message) << c.name;
  }
}

TEST(AssignmentCheckTest, LongModelNameIsCutInTheMessage) {
  v1::GenerateRequest request = ResolvedRequest();
  request.set_model(std::string(100000, 'm'));
  const absl::Status status = CheckAssignment(TinyManifest(), request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(status.message().size(), 200u) << status.message().substr(0, 300);
  EXPECT_NE(status.message().find("(100000 bytes)"), std::string::npos) << status.message().substr(0, 300);
}

}  // namespace
}  // namespace radial::worker
