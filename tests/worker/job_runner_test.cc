// The job runner alone (no gRPC): the tiny bundle's real Pipeline and the real encoder on its own
// thread, into a sink that records every event with the time it came. Checks what the worker's
// stream relies on: fragments leave while the pipeline still decodes, the bytes are those of
// encoding the same frames on one thread, progress ends with muxing at the frame count, and a
// failure or a cancel on either side ends the job with its status and no hang.
#include "job_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mp4_inspect.h"

namespace radial::worker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// One call the sink received.
struct SinkEvent {
  enum class Kind { kProgress, kChunk } kind = Kind::kProgress;
  Clock::time_point when;
  std::thread::id thread;
  JobStage stage = JobStage::kEncodingText;  // progress
  int64_t step = 0;
  int64_t total = 0;
  Chunk::Kind chunk_kind = Chunk::Kind::kInit;  // chunk
  int64_t offset = 0;
  int64_t size = 0;
  bool last = false;
};

// Records events from both of the runner's threads. `on_progress` and `on_chunk` run inside the
// call (after recording it), and a chunk hook's status is what WriteChunk returns.
class RecordingSink final : public JobSink {
 public:
  std::function<void(const SinkEvent&)> on_progress;
  std::function<absl::Status(const SinkEvent&)> on_chunk;

  void Progress(JobStage stage, int64_t step, int64_t total) override {
    SinkEvent event{.kind = SinkEvent::Kind::kProgress, .when = Clock::now(), .thread = std::this_thread::get_id()};
    event.stage = stage;
    event.step = step;
    event.total = total;
    Record(event);
    if (on_progress) on_progress(event);
  }
  absl::Status WriteChunk(const Chunk& chunk) override {
    SinkEvent event{.kind = SinkEvent::Kind::kChunk, .when = Clock::now(), .thread = std::this_thread::get_id()};
    event.chunk_kind = chunk.kind;
    event.offset = chunk.offset;
    event.size = static_cast<int64_t>(chunk.bytes.size());
    event.last = chunk.last;
    absl::Status status = on_chunk ? on_chunk(event) : absl::OkStatus();
    if (!status.ok()) return status;
    std::lock_guard<std::mutex> lock(mutex_);
    bytes_.append(chunk.bytes.data(), chunk.bytes.size());
    events_.push_back(event);
    return absl::OkStatus();
  }

  std::vector<SinkEvent> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  std::string bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return bytes_;
  }

 private:
  void Record(const SinkEvent& event) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(event);
  }

  std::mutex mutex_;
  std::vector<SinkEvent> events_;
  std::string bytes_;  // what the accepted chunks held, in order
};

std::vector<SinkEvent> Progresses(const std::vector<SinkEvent>& events, JobStage stage) {
  std::vector<SinkEvent> found;
  for (const SinkEvent& event : events) {
    if (event.kind == SinkEvent::Kind::kProgress && event.stage == stage) found.push_back(event);
  }
  return found;
}

const SinkEvent* FirstMediaChunk(const std::vector<SinkEvent>& events) {
  for (const SinkEvent& event : events) {
    if (event.kind == SinkEvent::Kind::kChunk && event.chunk_kind == Chunk::Kind::kFragment) return &event;
  }
  return nullptr;
}

// 64x64, `frames` frames (4k+1), 2 steps: a few seconds on a CPU. The encoder at fragment_frames
// frames per fragment, x264 on one thread (the bytes are reproducible).
JobSpec SmallJob(int64_t frames, int fragment_frames) {
  JobSpec spec;
  GenerationParams& params = spec.params;
  params.prompt = "a red fox runs through snow";
  params.negative_prompt = "blurry";
  params.width = 64;
  params.height = 64;
  params.frames = frames;
  params.steps = 2;
  params.guidance = 1.0;
  params.seed = 11;
  params.radial.decay = 1.0;
  params.radial.sink = true;
  params.radial.block = 64;
  params.radial.dense_layers = 1;
  params.radial.dense_steps = 1;
  spec.encoder.width = 64;
  spec.encoder.height = 64;
  spec.encoder.fps = {16, 1};
  spec.encoder.gop_frames = fragment_frames;
  spec.encoder.threads = 1;
  spec.encoder.max_chunk_bytes = 4096;
  return spec;
}

class JobRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LimitFfmpegLoggingToErrors();
    const char* bundle = std::getenv("RADIAL_TEST_BUNDLE");
    if (bundle == nullptr) return;
    auto loaded = Pipeline::Load(bundle, "cpu");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    pipeline_ = std::move(*loaded).release();
  }
  static void TearDownTestSuite() {
    delete pipeline_;
    pipeline_ = nullptr;
  }
  void SetUp() override {
    if (pipeline_ == nullptr) GTEST_SKIP() << "RADIAL_TEST_BUNDLE is not set (ctest sets it)";
  }

  // The same generation with every frame encoded on this thread inside the frame callback (how the
  // worker encoded before the encoder had a thread): the bytes the runner must reproduce.
  static std::string EncodeInline(const JobSpec& spec) {
    std::string bytes;
    auto encoder = Fmp4Encoder::Create(spec.encoder, [&](const Chunk& chunk) {
      bytes.append(chunk.bytes.data(), chunk.bytes.size());
      return absl::OkStatus();
    });
    EXPECT_TRUE(encoder.ok()) << encoder.status();
    if (!encoder.ok()) return "";
    GenerationCallbacks callbacks;
    callbacks.frame = [&](const uint8_t* rgb, int64_t stride) { return (*encoder)->AddFrame(rgb, stride); };
    const auto report = pipeline_->Generate(spec.params, callbacks);
    EXPECT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE((*encoder)->Finish().ok());
    return bytes;
  }

  static Pipeline* pipeline_;
  std::atomic<bool> cancel_{false};
};

Pipeline* JobRunnerTest::pipeline_ = nullptr;

TEST_F(JobRunnerTest, FragmentsReachTheSinkWhileThePipelineStillDecodes) {
  // 33 frames are 9 latent frames, decoded in three VAE chunks of 1, 4 and 4 latent frames: video
  // frames 1, 2-17 and 18-33, each chunk's frames handed over at once, with (kDecoding, 1, 33),
  // (kDecoding, 17, 33) and (kDecoding, 33, 33) after them. In fragments of 2 frames (x264 without
  // B-frames, a lookahead of one fragment), the first fragments are complete once the second
  // chunk's frames are in, and the default queue (two chunks) holds them all: the encoder thread
  // sends them while the pipeline decodes the third chunk.
  const JobSpec spec = SmallJob(33, 2);
  RecordingSink sink;
  const Clock::time_point start = Clock::now();
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;
  const std::vector<SinkEvent> events = sink.events();

  const SinkEvent* first_fragment = FirstMediaChunk(events);
  ASSERT_NE(first_fragment, nullptr);
  const std::vector<SinkEvent> decoding = Progresses(events, JobStage::kDecoding);
  ASSERT_GE(decoding.size(), 3u);
  const SinkEvent& decoded = decoding.back();
  EXPECT_EQ(decoded.step, 33) << "the pipeline's last decode progress counts every frame";
  EXPECT_EQ(decoded.total, 33);
  EXPECT_LT(first_fragment->when, decoded.when) << "the first media fragment left before decoding ended";
  const SinkEvent& second_chunk = decoding[decoding.size() - 2];
  EXPECT_EQ(second_chunk.step, 17);
  int64_t media_chunks_during_last_decode = 0;
  for (const SinkEvent& event : events) {
    if (event.kind == SinkEvent::Kind::kChunk && event.chunk_kind == Chunk::Kind::kFragment &&
        event.when > second_chunk.when && event.when < decoded.when) {
      ++media_chunks_during_last_decode;
    }
  }
  EXPECT_GT(media_chunks_during_last_decode, 0) << "fragments went out while the last VAE chunk decoded";

  // Chunks: the init segment from this thread, every fragment from one other thread, contiguous
  // from offset 0, the last one marked; a playable fMP4 with every frame.
  int64_t offset = 0;
  std::thread::id encoder_thread;
  for (const SinkEvent& event : events) {
    if (event.kind != SinkEvent::Kind::kChunk) continue;
    EXPECT_EQ(event.offset, offset);
    offset += event.size;
    if (event.chunk_kind == Chunk::Kind::kInit) {
      EXPECT_EQ(event.thread, std::this_thread::get_id());
    } else {
      if (encoder_thread == std::thread::id()) encoder_thread = event.thread;
      EXPECT_EQ(event.thread, encoder_thread) << "every fragment from the encoder thread";
    }
  }
  EXPECT_NE(encoder_thread, std::this_thread::get_id());
  EXPECT_TRUE(events.back().kind == SinkEvent::Kind::kChunk && events.back().last)
      << "the stream ends with its last chunk";
  const std::string bytes = sink.bytes();
  EXPECT_EQ(static_cast<int64_t>(bytes.size()), offset);
  EXPECT_EQ(outcome.video_bytes, offset);
  EXPECT_EQ(outcome.frames_encoded, 33);
  EXPECT_EQ(outcome.fragments, 17);
  const auto probe = testing::ProbeMp4(bytes);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames_decoded, 33);
  const auto boxes = testing::ListTopLevelBoxes(bytes);
  ASSERT_TRUE(boxes.ok());
  EXPECT_EQ(boxes->size(), 2u + 2u * 17u) << "ftyp, moov, then a moof and an mdat per fragment";

  // Progress: text, both steps, decoding, then muxing counting up to 33/33 before the last chunk.
  std::vector<SinkEvent> progress;
  for (const SinkEvent& event : events) {
    if (event.kind == SinkEvent::Kind::kProgress) progress.push_back(event);
  }
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front().stage, JobStage::kEncodingText);
  const std::vector<SinkEvent> denoising = Progresses(events, JobStage::kDenoising);
  ASSERT_EQ(denoising.size(), 2u);
  EXPECT_EQ(denoising.back().step, 2);
  const std::vector<SinkEvent> muxing = Progresses(events, JobStage::kMuxing);
  ASSERT_FALSE(muxing.empty());
  size_t first_muxing = 0;
  while (progress[first_muxing].stage != JobStage::kMuxing) ++first_muxing;
  for (size_t i = first_muxing; i < progress.size(); ++i) EXPECT_EQ(progress[i].stage, JobStage::kMuxing);
  for (size_t i = 1; i < muxing.size(); ++i) EXPECT_GT(muxing[i].step, muxing[i - 1].step);
  EXPECT_EQ(muxing.back().step, 33);
  EXPECT_EQ(muxing.back().total, 33);
  EXPECT_LT(muxing.back().when, events.back().when);

  // The stream's times, against the sink's own clock readings.
  const JobTimes& times = outcome.times;
  EXPECT_GT(times.first_fragment, 0);
  EXPECT_LT(times.first_fragment, wall);
  EXPECT_NEAR(times.first_fragment, std::chrono::duration<double>(first_fragment->when - start).count(), 0.05);
  EXPECT_GT(times.last_step_to_first_fragment, 0);
  EXPECT_LT(times.last_step_to_first_fragment, times.first_fragment);
  EXPECT_GE(times.last_step_to_last_byte, times.last_step_to_first_fragment);
  EXPECT_GT(times.encode, 0);
  EXPECT_GT(times.denoise, 0);
  EXPECT_GT(times.decode, 0);
  ASSERT_TRUE(outcome.report.has_value());
  EXPECT_LE(times.decode, outcome.report->decode_seconds) << "the waits for the encoder are left out";
  EXPECT_GE(times.total, times.first_fragment);
  EXPECT_EQ(outcome.steps.size(), 2u);
}

TEST_F(JobRunnerTest, ASinkFailureStopsThePipelineWithItsStatus) {
  // A queue of 2 frames: the pipeline cannot hand over the second chunk's 16 frames before the
  // encoder has taken 14 of them, and the encoder stops at the second fragment.
  JobSpec spec = SmallJob(17, 1);
  spec.queue_frames = 2;
  RecordingSink sink;
  int media_chunks = 0;
  sink.on_chunk = [&](const SinkEvent& event) {
    if (event.chunk_kind == Chunk::Kind::kFragment && ++media_chunks == 2) {
      return absl::UnavailableError("the scheduler stream closed");
    }
    return absl::OkStatus();
  };
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status, absl::UnavailableError("the scheduler stream closed"));
  const std::vector<SinkEvent> events = sink.events();
  // The pipeline stopped at its next frame: it never reported the end of decoding, and no chunk
  // came after the refused one.
  const std::vector<SinkEvent> decoding = Progresses(events, JobStage::kDecoding);
  EXPECT_TRUE(decoding.empty() || decoding.back().step < 17);
  EXPECT_TRUE(Progresses(events, JobStage::kMuxing).empty());
  EXPECT_EQ(media_chunks, 2);
  EXPECT_LT(outcome.frames_encoded, 17);
}

TEST_F(JobRunnerTest, ACancelBetweenStepsStopsBothThreads) {
  const JobSpec spec = SmallJob(17, 4);
  RecordingSink sink;
  sink.on_progress = [&](const SinkEvent& event) {
    if (event.stage == JobStage::kDenoising && event.step == 1) cancel_ = true;
  };
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kCancelled) << outcome.status;
  EXPECT_FALSE(outcome.report.has_value());
  EXPECT_TRUE(outcome.steps.empty());
  EXPECT_EQ(FirstMediaChunk(sink.events()), nullptr) << "nothing but the init segment";
  EXPECT_EQ(outcome.frames_encoded, 0);
}

TEST_F(JobRunnerTest, ACancelWhileMuxingStopsTheEncoderBeforeTheLastChunk) {
  const JobSpec spec = SmallJob(5, 4);
  RecordingSink sink;
  sink.on_progress = [&](const SinkEvent& event) {
    if (event.stage == JobStage::kMuxing) cancel_ = true;
  };
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kCancelled) << outcome.status;
  EXPECT_TRUE(outcome.report.has_value()) << "the pipeline had finished";
  for (const SinkEvent& event : sink.events()) EXPECT_FALSE(event.last) << "the stream was not finished";
}

TEST_F(JobRunnerTest, APipelineErrorEndsTheJobWithOnlyTheInitSegment) {
  JobSpec spec = SmallJob(17, 4);
  spec.params.frames = 16;  // not 4k+1: the pipeline refuses it
  RecordingSink sink;
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kInvalidArgument) << outcome.status;
  const std::vector<SinkEvent> events = sink.events();
  ASSERT_FALSE(events.empty());
  for (const SinkEvent& event : events) {
    EXPECT_EQ(event.kind, SinkEvent::Kind::kChunk);
    EXPECT_EQ(event.chunk_kind, Chunk::Kind::kInit);
  }
}

TEST_F(JobRunnerTest, EncoderOptionsAreCheckedBeforeThePipelineRuns) {
  JobSpec spec = SmallJob(17, 1001);  // fragment_frames past 1000
  RecordingSink sink;
  JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kInvalidArgument) << outcome.status;
  EXPECT_NE(outcome.status.message().find("gop_frames"), std::string::npos) << outcome.status;
  EXPECT_TRUE(sink.events().empty()) << "no progress, no bytes";

  spec = SmallJob(17, 4);
  spec.encoder.width = 128;
  outcome = RunJob(*pipeline_, spec, cancel_, sink);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kInvalidArgument) << outcome.status;
  EXPECT_TRUE(sink.events().empty());
}

TEST_F(JobRunnerTest, ASlowSinkHoldsThePipelineBackAtTheQueue) {
  JobSpec spec = SmallJob(9, 1);
  spec.queue_frames = 2;
  RecordingSink sink;
  sink.on_chunk = [](const SinkEvent& event) {
    if (event.chunk_kind == Chunk::Kind::kFragment) std::this_thread::sleep_for(40ms);
    return absl::OkStatus();
  };
  const JobOutcome outcome = RunJob(*pipeline_, spec, cancel_, sink);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;
  EXPECT_GT(outcome.times.frame_wait, 0.05) << "the pipeline waited for room in the queue";
  ASSERT_TRUE(outcome.report.has_value());
  EXPECT_NEAR(outcome.times.decode, outcome.report->decode_seconds - outcome.times.frame_wait, 1e-9);
  EXPECT_GT(outcome.times.encode, 0.3) << "the encoder thread's time includes the sink's";
  EXPECT_EQ(outcome.frames_encoded, 9);
  // Neither the encoder's thread nor the waits change the bytes: encoding the same frames inside
  // the frame callback, as the worker used to, gives the same stream.
  const std::string inline_bytes = EncodeInline(spec);
  EXPECT_TRUE(sink.bytes() == inline_bytes)
      << "got " << sink.bytes().size() << " bytes, expected " << inline_bytes.size() << " identical ones";
}

}  // namespace
}  // namespace radial::worker
