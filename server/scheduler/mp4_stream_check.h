// Mp4StreamCheck: decides whether the bytes a worker streamed back are the fragmented MP4 our
// encoder writes (worker/encoder/fmp4_encoder.h) with the request's number of frames, so that the
// scheduler never calls a job SUCCEEDED for a video a player cannot open.
//
// Accepted stream, top-level boxes only (what Fmp4Encoder emits; it writes no styp, sidx or mfra):
//
//   ftyp moov (moof mdat)+
//
// Each moof is parsed down to moof -> traf -> trun: the video's sample count is the sum of every
// trun's sample_count, and when the sample sizes are known (per sample in the trun, or tfhd's
// default_sample_size) the mdat after the moof must hold at least that many bytes. The boxes inside
// ftyp, moov and mdat are not looked at; unknown boxes inside moof and traf are skipped.
//
// Incremental and bounded: the check is fed the chunks as they arrive and keeps the header of the
// box it is in, the bytes of the current moof (at most kMp4MaxMoofBytes) and a few counters; it
// never holds mdat bytes. The verdict does not depend on how the stream is cut into chunks.
//
// Ownership and threading: one owner feeds one stream from one thread at a time; not thread-safe.
#ifndef RADIAL_SERVER_SCHEDULER_MP4_STREAM_CHECK_H_
#define RADIAL_SERVER_SCHEDULER_MP4_STREAM_CHECK_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace radial::server {

// The largest moof accepted, header included. Our encoder's hold about 100 bytes plus 4 per frame
// of the GOP (a sample size each), so about 4 KiB at its largest GOP of 1000 frames.
inline constexpr uint64_t kMp4MaxMoofBytes = uint64_t{1} << 20;

class Mp4StreamCheck {
 public:
  Mp4StreamCheck() = default;
  Mp4StreamCheck(const Mp4StreamCheck&) = delete;
  Mp4StreamCheck& operator=(const Mp4StreamCheck&) = delete;

  // Feeds the next bytes of the stream (any length, empty included). Returns INVALID_ARGUMENT
  // naming the first thing wrong and its byte offset in the stream, e.g. "video: got a top-level
  // 'abcd' box at byte 1234, expected mdat": a top-level box out of order or of another type, a
  // box size below its header or past 2^64, a size of 0 ("to the end of the file"), a moof over
  // kMp4MaxMoofBytes, a malformed box inside a moof, an mdat smaller than its moof's samples. Once
  // an error is returned, every later Add and Finish returns that same error. Box types are shown
  // printable (other bytes as \xHH).
  absl::Status Add(std::string_view bytes);

  // Called once the stream has ended. OK only when the bytes ended on a box boundary after ftyp,
  // moov and at least one complete moof + mdat pair, and samples() == expected_frames; otherwise
  // INVALID_ARGUMENT saying what was got and what was expected (or the error Add returned).
  absl::Status Finish(uint32_t expected_frames) const;

  // Video samples declared by the moof boxes parsed so far.
  uint64_t samples() const { return samples_; }
  // Complete moof + mdat pairs so far.
  uint64_t fragments() const { return fragments_; }

 private:
  // The top-level box allowed next.
  enum class Expect { kFtyp, kMoov, kFirstMoof, kMdat, kMoofOrEnd };

  absl::Status Consume(std::string_view bytes);
  // Header bytes of the next box: 8 until its 32-bit size is known, then 16 when that size is 1.
  size_t HeaderBytesNeeded() const;
  // The header in header_ is complete: checks the box against expect_ and its size, enters it.
  absl::Status StartBox();
  // The body of the current box has all arrived.
  absl::Status EndBox();

  absl::Status error_;
  Expect expect_ = Expect::kFtyp;
  uint64_t position_ = 0;  // stream offset of the next byte fed

  // Between boxes: the header bytes of the next box (8, or 16 with a 64-bit size) gathered so far.
  std::array<char, 16> header_{};
  size_t header_bytes_ = 0;

  // Inside a box: its type, where it and its body start, its size and the body bytes to come.
  // After a box ends they describe the last box (Finish names the moof an mdat is missing for).
  bool in_box_ = false;
  std::string box_type_;
  uint64_t box_offset_ = 0;
  uint64_t box_body_offset_ = 0;
  uint64_t box_size_ = 0;
  uint64_t box_body_left_ = 0;
  std::string moof_body_;  // the current moof's body; at most kMp4MaxMoofBytes

  // What the last moof declared, checked against the mdat that follows it.
  uint64_t moof_sample_bytes_ = 0;
  bool moof_sample_bytes_known_ = false;

  uint64_t samples_ = 0;
  uint64_t fragments_ = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_MP4_STREAM_CHECK_H_
