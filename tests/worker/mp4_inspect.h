// Test support: inspect an MP4 byte stream held in memory. Used by the encoder's unit tests and
// meant for the integration tests that check what a client received (box order, codec, frames).
#ifndef RADIAL_TESTS_WORKER_MP4_INSPECT_H_
#define RADIAL_TESTS_WORKER_MP4_INSPECT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace radial::worker::testing {

struct Mp4Box {
  std::string type;  // four characters, e.g. "moof"
  int64_t offset = 0;  // of the box header in the stream
  int64_t size = 0;    // including the header
};

// The top-level boxes of `bytes`, in order. INVALID_ARGUMENT when a box header is truncated or a
// box runs past the end (a size of 0, "to the end of the file", is accepted).
absl::StatusOr<std::vector<Mp4Box>> ListTopLevelBoxes(std::string_view bytes);

// The box types only, e.g. {"ftyp", "moov", "moof", "mdat"}.
std::vector<std::string> BoxTypes(const std::vector<Mp4Box>& boxes);

struct Mp4Probe {
  std::string codec_name;  // libavcodec's name, e.g. "h264"
  int width = 0;
  int height = 0;
  int frame_rate_numerator = 0;  // the video stream's average frame rate
  int frame_rate_denominator = 0;
  double first_pts_seconds = 0;        // presentation time of the first video packet
  std::vector<bool> packet_keyframes;  // one entry per video packet, in decode order
  int64_t frames_decoded = 0;          // frames the decoder returned, flush included
};

// Demuxes `bytes` with libavformat through a read-only in-memory AVIOContext and decodes the first
// video stream. Errors name the FFmpeg step that failed.
absl::StatusOr<Mp4Probe> ProbeMp4(std::string_view bytes);

}  // namespace radial::worker::testing

#endif  // RADIAL_TESTS_WORKER_MP4_INSPECT_H_
