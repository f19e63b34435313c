// Tests for radial::worker::Fmp4Encoder (worker/encoder/fmp4_encoder.h): what a client of the
// stream relies on. The init segment comes first, fragments follow as moof/mdat pairs that begin on
// chunk boundaries, chunks are contiguous and bounded, libavformat and ffprobe read the result as
// H.264 with the right frame count, size and rate, the bytes are reproducible, and bad options or a
// failing sink end the encode with a status instead of a crash.
#include "worker/encoder/fmp4_encoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tests/worker/mp4_inspect.h"

extern "C" {
#include <libavutil/log.h>
}

namespace radial::worker {
namespace {

using ::radial::worker::testing::BoxTypes;
using ::radial::worker::testing::ListTopLevelBoxes;
using ::radial::worker::testing::Mp4Box;
using ::radial::worker::testing::Mp4Probe;
using ::radial::worker::testing::ProbeMp4;
using ::testing::HasSubstr;

struct ReceivedChunk {
  int64_t offset;
  std::string bytes;
  Chunk::Kind kind;
  bool last;
};

// A moving diagonal gradient; every frame differs, so every frame costs bits.
std::vector<uint8_t> GradientFrame(int width, int height, int index, int64_t stride) {
  std::vector<uint8_t> pixels(static_cast<size_t>(stride * height), 0xAB);  // 0xAB: padding
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* pixel = &pixels[static_cast<size_t>(y * stride + 3 * x)];
      pixel[0] = static_cast<uint8_t>(2 * x + 5 * index);
      pixel[1] = static_cast<uint8_t>(2 * y + 3 * index);
      pixel[2] = static_cast<uint8_t>(x + y + 9 * index);
    }
  }
  return pixels;
}

EncoderOptions SmallOptions() {
  EncoderOptions options;
  options.width = 128;
  options.height = 128;
  options.fps = FrameRate{16, 1};
  options.preset = "veryfast";
  options.threads = 1;
  options.max_chunk_bytes = 4096;  // forces fragments to be split
  return options;
}

struct EncodeResult {
  absl::Status status;
  std::vector<ReceivedChunk> chunks;
  size_t chunks_before_finish = 0;
  std::string Stream() const {
    std::string stream;
    for (const ReceivedChunk& chunk : chunks) stream += chunk.bytes;
    return stream;
  }
};

EncodeResult Encode(const EncoderOptions& options, int frames, int64_t stride_padding = 0) {
  EncodeResult result;
  auto encoder = Fmp4Encoder::Create(options, [&result](const Chunk& chunk) {
    result.chunks.push_back(
        ReceivedChunk{chunk.offset, std::string(chunk.bytes), chunk.kind, chunk.last});
    return absl::OkStatus();
  });
  if (!encoder.ok()) {
    result.status = encoder.status();
    return result;
  }
  const int64_t stride = 3 * int64_t{options.width} + stride_padding;
  for (int i = 0; i < frames; ++i) {
    std::vector<uint8_t> frame = GradientFrame(options.width, options.height, i, stride);
    result.status = (*encoder)->AddFrame(frame.data(), stride);
    if (!result.status.ok()) return result;
  }
  result.chunks_before_finish = result.chunks.size();
  result.status = (*encoder)->Finish();
  return result;
}

// Path of an executable named `name` on PATH, or "" when there is none.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::stringstream entries(path);
  std::string directory;
  while (std::getline(entries, directory, ':')) {
    if (directory.empty()) continue;
    std::string candidate = directory + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

class Fmp4EncoderTest : public ::testing::Test {
 protected:
  // x264 reports its statistics at info level; keep test output to real problems.
  void SetUp() override { av_log_set_level(AV_LOG_ERROR); }
};

TEST_F(Fmp4EncoderTest, StreamsInitThenFragmentsInBoundedContiguousChunks) {
  const EncoderOptions options = SmallOptions();
  EncodeResult result = Encode(options, 17);
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_FALSE(result.chunks.empty());

  // Init segment first; then fragments only.
  EXPECT_EQ(result.chunks.front().kind, Chunk::Kind::kInit);
  const std::string stream = result.Stream();
  ASSERT_GE(stream.size(), 8u);
  EXPECT_EQ(stream.substr(4, 4), "ftyp");
  bool seen_fragment = false;
  int64_t init_bytes = 0;
  int64_t expected_offset = 0;
  std::set<int64_t> chunk_starts;
  for (size_t i = 0; i < result.chunks.size(); ++i) {
    const ReceivedChunk& chunk = result.chunks[i];
    SCOPED_TRACE("chunk " + std::to_string(i));
    EXPECT_EQ(chunk.offset, expected_offset);
    EXPECT_GT(chunk.bytes.size(), 0u);
    EXPECT_LE(static_cast<int64_t>(chunk.bytes.size()), options.max_chunk_bytes);
    EXPECT_EQ(chunk.last, i + 1 == result.chunks.size());
    if (chunk.kind == Chunk::Kind::kFragment) seen_fragment = true;
    if (chunk.kind == Chunk::Kind::kInit) {
      EXPECT_FALSE(seen_fragment) << "init bytes after a fragment";
      init_bytes += static_cast<int64_t>(chunk.bytes.size());
    }
    chunk_starts.insert(chunk.offset);
    expected_offset += static_cast<int64_t>(chunk.bytes.size());
  }
  EXPECT_TRUE(seen_fragment);
  EXPECT_GT(result.chunks.size(), 3u) << "max_chunk_bytes = 4096 should split the fragments";

  // Box order: ftyp, moov, then (moof, mdat)+; one fragment per 16-frame GOP.
  absl::StatusOr<std::vector<Mp4Box>> boxes = ListTopLevelBoxes(stream);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_EQ(BoxTypes(*boxes),
            (std::vector<std::string>{"ftyp", "moov", "moof", "mdat", "moof", "mdat"}));
  // The init segment is exactly ftyp + moov, and each fragment starts on a chunk boundary, so a
  // receiver can hand whole units to a player.
  ASSERT_GE(boxes->size(), 2u);
  EXPECT_EQ(init_bytes, (*boxes)[0].size + (*boxes)[1].size);
  for (const Mp4Box& box : *boxes) {
    if (box.type == "moof") {
      EXPECT_TRUE(chunk_starts.count(box.offset)) << "moof at " << box.offset;
    }
  }
}

TEST_F(Fmp4EncoderTest, LibavformatReadsH264WithFrameCountSizeAndRate) {
  EncodeResult result = Encode(SmallOptions(), 17);
  ASSERT_TRUE(result.status.ok()) << result.status;
  absl::StatusOr<Mp4Probe> probe = ProbeMp4(result.Stream());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->codec_name, "h264");
  EXPECT_EQ(probe->width, 128);
  EXPECT_EQ(probe->height, 128);
  EXPECT_EQ(probe->packet_keyframes.size(), 17u);
  EXPECT_EQ(probe->frames_decoded, 17);
  EXPECT_EQ(probe->first_pts_seconds, 0.0) << "the first frame must be shown at time 0";
  EXPECT_EQ(probe->frame_rate_numerator, 16 * probe->frame_rate_denominator)
      << probe->frame_rate_numerator << "/" << probe->frame_rate_denominator;
  // Keyframes exactly at GOP starts, the start of each fragment.
  for (size_t i = 0; i < probe->packet_keyframes.size(); ++i) {
    EXPECT_EQ(probe->packet_keyframes[i], i % 16 == 0) << "packet " << i;
  }
}

TEST_F(Fmp4EncoderTest, FfprobeCountsFramesWhenInstalled) {
  const std::string ffprobe = FindOnPath("ffprobe");
  if (ffprobe.empty()) GTEST_SKIP() << "ffprobe not on PATH";
  EncodeResult result = Encode(SmallOptions(), 17);
  ASSERT_TRUE(result.status.ok()) << result.status;
  const std::string path =
      ::testing::TempDir() + "/fmp4_encoder_test_" + std::to_string(getpid()) + ".mp4";
  {
    std::ofstream file(path, std::ios::binary);
    const std::string stream = result.Stream();
    file.write(stream.data(), static_cast<std::streamsize>(stream.size()));
    ASSERT_TRUE(file.good());
  }
  const std::string command = ffprobe +
                              " -v error -count_frames -select_streams v:0 -show_entries "
                              "stream=codec_name,width,height,r_frame_rate,nb_read_frames,"
                              "start_time "
                              "-of default=noprint_wrappers=1 '" + path + "'";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::map<std::string, std::string> fields;
  char line[256];
  while (fgets(line, sizeof(line), pipe) != nullptr) {
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    const size_t equals = text.find('=');
    if (equals != std::string::npos) fields[text.substr(0, equals)] = text.substr(equals + 1);
  }
  EXPECT_EQ(pclose(pipe), 0);
  std::remove(path.c_str());
  EXPECT_EQ(fields["codec_name"], "h264");
  EXPECT_EQ(fields["width"], "128");
  EXPECT_EQ(fields["height"], "128");
  EXPECT_EQ(fields["r_frame_rate"], "16/1");
  EXPECT_EQ(fields["nb_read_frames"], "17");
  EXPECT_EQ(fields["start_time"], "0.000000");
}

TEST_F(Fmp4EncoderTest, SendsEachFragmentBeforeFinish) {
  EncoderOptions options = SmallOptions();
  options.gop_frames = 8;
  EncodeResult result = Encode(options, 40);  // five fragments of 8 frames
  ASSERT_TRUE(result.status.ok()) << result.status;
  absl::StatusOr<std::vector<Mp4Box>> boxes = ListTopLevelBoxes(result.Stream());
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  int moofs = 0;
  for (const Mp4Box& box : *boxes) moofs += box.type == "moof" ? 1 : 0;
  EXPECT_EQ(moofs, 5);
  // x264's lookahead holds a few frames back, but the earlier fragments must not wait for Finish.
  int64_t streamed_before_finish = 0;
  for (size_t i = 0; i < result.chunks_before_finish; ++i) {
    streamed_before_finish += static_cast<int64_t>(result.chunks[i].bytes.size());
  }
  int fragments_before_finish = 0;
  for (const Mp4Box& box : *boxes) {
    if (box.type == "mdat" && box.offset + box.size <= streamed_before_finish) {
      ++fragments_before_finish;
    }
  }
  EXPECT_GE(fragments_before_finish, 3);
}

TEST_F(Fmp4EncoderTest, SameFramesAndOptionsGiveIdenticalBytes) {
  const EncodeResult first = Encode(SmallOptions(), 17);
  const EncodeResult second = Encode(SmallOptions(), 17);
  ASSERT_TRUE(first.status.ok()) << first.status;
  ASSERT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(first.Stream(), second.Stream());
  // Chunking and row padding change how bytes travel, not the bytes.
  EncoderOptions large_chunks = SmallOptions();
  large_chunks.max_chunk_bytes = int64_t{1} << 20;
  const EncodeResult padded = Encode(large_chunks, 17, /*stride_padding=*/13);
  ASSERT_TRUE(padded.status.ok()) << padded.status;
  EXPECT_EQ(padded.Stream(), first.Stream());
}

TEST_F(Fmp4EncoderTest, EncodesRealisticSizeWithAutomaticThreads) {
  EncoderOptions options = SmallOptions();
  options.width = 320;
  options.height = 192;
  options.threads = 0;
  options.max_chunk_bytes = int64_t{1} << 20;
  EncodeResult result = Encode(options, 20);
  ASSERT_TRUE(result.status.ok()) << result.status;
  absl::StatusOr<Mp4Probe> probe = ProbeMp4(result.Stream());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->width, 320);
  EXPECT_EQ(probe->height, 192);
  EXPECT_EQ(probe->frames_decoded, 20);
}

struct InvalidCase {
  std::string name;
  void (*mutate)(EncoderOptions&);
  std::string field;
  std::string range;
};

TEST_F(Fmp4EncoderTest, RejectsInvalidOptionsNamingFieldAndRange) {
  const std::vector<InvalidCase> cases = {
      {"odd width", [](EncoderOptions& o) { o.width = 127; }, "width", "[16, 8192]"},
      {"zero height", [](EncoderOptions& o) { o.height = 0; }, "height", "[16, 8192]"},
      {"zero fps", [](EncoderOptions& o) { o.fps = FrameRate{0, 1}; }, "fps", "240"},
      {"zero fps denominator", [](EncoderOptions& o) { o.fps = FrameRate{16, 0}; }, "fps", "240"},
      {"fps too high", [](EncoderOptions& o) { o.fps = FrameRate{1000, 1}; }, "fps", "240"},
      {"chunk 4 MiB", [](EncoderOptions& o) { o.max_chunk_bytes = int64_t{4} << 20; },
       "max_chunk_bytes", "[1024, 4194304)"},
      {"chunk tiny", [](EncoderOptions& o) { o.max_chunk_bytes = 10; }, "max_chunk_bytes",
       "[1024, 4194304)"},
      {"crf", [](EncoderOptions& o) { o.crf = 52; }, "crf", "[0, 51]"},
      {"preset", [](EncoderOptions& o) { o.preset = "turbo"; }, "preset", "veryfast"},
      {"bitrate", [](EncoderOptions& o) { o.bitrate_bps = -1; }, "bitrate_bps", "[0, "},
      {"gop", [](EncoderOptions& o) { o.gop_frames = -2; }, "gop_frames", "[0, 1000]"},
      {"threads", [](EncoderOptions& o) { o.threads = 65; }, "threads", "[0, 64]"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.name);
    EncoderOptions options = SmallOptions();
    c.mutate(options);
    int sink_calls = 0;
    auto encoder = Fmp4Encoder::Create(options, [&sink_calls](const Chunk&) {
      ++sink_calls;
      return absl::OkStatus();
    });
    ASSERT_FALSE(encoder.ok());
    EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(encoder.status().message()), HasSubstr("EncoderOptions." + c.field));
    EXPECT_THAT(std::string(encoder.status().message()), HasSubstr(c.range));
    EXPECT_EQ(sink_calls, 0);
  }
}

TEST_F(Fmp4EncoderTest, SinkErrorStopsEncodingWithThatError) {
  const absl::Status refusal = absl::UnavailableError("client went away");
  int sink_calls = 0;
  auto encoder = Fmp4Encoder::Create(SmallOptions(), [&](const Chunk& chunk) {
    ++sink_calls;
    return chunk.kind == Chunk::Kind::kFragment ? refusal : absl::OkStatus();
  });
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  const int init_calls = sink_calls;
  absl::Status status;
  int frames = 0;
  while (status.ok() && frames < 64) {
    std::vector<uint8_t> frame = GradientFrame(128, 128, frames, 3 * 128);
    status = (*encoder)->AddFrame(frame.data(), 3 * 128);
    ++frames;
  }
  if (status.ok()) status = (*encoder)->Finish();
  EXPECT_EQ(status, refusal);
  EXPECT_EQ(sink_calls, init_calls + 1);
  std::vector<uint8_t> frame = GradientFrame(128, 128, 0, 3 * 128);
  absl::Status after = (*encoder)->AddFrame(frame.data(), 3 * 128);
  EXPECT_EQ(after.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(after.message()), HasSubstr("client went away"));
  EXPECT_EQ((*encoder)->Finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sink_calls, init_calls + 1);
}

TEST_F(Fmp4EncoderTest, SinkErrorOnInitSegmentFailsCreate) {
  auto encoder = Fmp4Encoder::Create(
      SmallOptions(), [](const Chunk&) { return absl::CancelledError("job cancelled"); });
  ASSERT_FALSE(encoder.ok());
  EXPECT_EQ(encoder.status(), absl::CancelledError("job cancelled"));
}

TEST_F(Fmp4EncoderTest, SinkExceptionBecomesStatus) {
  auto encoder = Fmp4Encoder::Create(SmallOptions(), [](const Chunk&) -> absl::Status {
    throw std::runtime_error("boom");
  });
  ASSERT_FALSE(encoder.ok());
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(encoder.status().message()), HasSubstr("boom"));
}

TEST_F(Fmp4EncoderTest, CallsOutOfOrderFailCleanly) {
  auto sink = [](const Chunk&) { return absl::OkStatus(); };
  auto encoder = Fmp4Encoder::Create(SmallOptions(), sink);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::vector<uint8_t> frame = GradientFrame(128, 128, 0, 3 * 128);

  // Bad frames are refused without stopping the encoder.
  EXPECT_EQ((*encoder)->AddFrame(nullptr, 3 * 128).code(), absl::StatusCode::kInvalidArgument);
  absl::Status short_stride = (*encoder)->AddFrame(frame.data(), 3 * 128 - 1);
  EXPECT_EQ(short_stride.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(short_stride.message()), HasSubstr("stride"));

  ASSERT_TRUE((*encoder)->AddFrame(frame.data(), 3 * 128).ok());
  ASSERT_TRUE((*encoder)->Finish().ok());
  EXPECT_EQ((*encoder)->frames_added(), 1);
  absl::Status after = (*encoder)->AddFrame(frame.data(), 3 * 128);
  EXPECT_EQ(after.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(after.message()), HasSubstr("finished"));
  EXPECT_EQ((*encoder)->Finish().code(), absl::StatusCode::kFailedPrecondition);

  // Finishing an encoder that never got a frame is an error, not an empty video.
  auto empty = Fmp4Encoder::Create(SmallOptions(), sink);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ((*empty)->Finish().code(), absl::StatusCode::kFailedPrecondition);

  // Destroying an encoder in the middle of a stream releases everything (checked by sanitizers).
  auto abandoned = Fmp4Encoder::Create(SmallOptions(), sink);
  ASSERT_TRUE(abandoned.ok()) << abandoned.status();
  ASSERT_TRUE((*abandoned)->AddFrame(frame.data(), 3 * 128).ok());
}

}  // namespace
}  // namespace radial::worker
