// Tests for radial::server::Mp4StreamCheck (server/scheduler/mp4_stream_check.h): what the
// scheduler relies on before it calls a job SUCCEEDED. Real streams from our encoder pass however
// they are cut into chunks; a wrong frame count, garbage, truncation, boxes out of order, bad
// sizes, an oversized moof and a trun that lies about its samples are refused with a printable
// message naming the problem and its byte offset; random mutations of a real stream never crash it
// and get the same verdict fed whole or in pieces.
#include "scheduler/mp4_stream_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tests/worker/mp4_inspect.h"
#include "worker/encoder/fmp4_encoder.h"

namespace radial::server {
namespace {

using ::radial::worker::Chunk;
using ::radial::worker::EncoderOptions;
using ::radial::worker::Fmp4Encoder;
using ::radial::worker::testing::BoxTypes;
using ::radial::worker::testing::ListTopLevelBoxes;
using ::radial::worker::testing::Mp4Box;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct EncodedStream {
  std::string name;
  uint32_t frames = 0;
  uint64_t fragments = 0;
  std::vector<std::string> chunks;  // as the encoder's sink received them
  std::string bytes;                // the chunks concatenated
};

// Frame `index` of a moving pattern, so that every frame costs bits.
std::vector<uint8_t> PatternFrame(int width, int height, int index) {
  std::vector<uint8_t> rgb(static_cast<size_t>(3 * width * height));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* pixel = &rgb[static_cast<size_t>(3 * (y * width + x))];
      pixel[0] = static_cast<uint8_t>(3 * x + 7 * index);
      pixel[1] = static_cast<uint8_t>(y * x + index);
      pixel[2] = static_cast<uint8_t>(5 * y - 11 * index);
    }
  }
  return rgb;
}

EncodedStream Encode(int width, int height, uint32_t frames, int gop_frames, uint64_t fragments) {
  EncodedStream stream;
  stream.name = std::to_string(width) + "x" + std::to_string(height) + ", " +
                std::to_string(frames) + " frames";
  stream.frames = frames;
  stream.fragments = fragments;
  EncoderOptions options;
  options.width = width;
  options.height = height;
  options.gop_frames = gop_frames;
  options.threads = 1;
  options.max_chunk_bytes = 4096;
  auto encoder = Fmp4Encoder::Create(options, [&stream](const Chunk& chunk) {
    stream.chunks.emplace_back(chunk.bytes);
    stream.bytes += chunk.bytes;
    return absl::OkStatus();
  });
  EXPECT_TRUE(encoder.ok()) << encoder.status();
  if (!encoder.ok()) return stream;
  for (uint32_t i = 0; i < frames; ++i) {
    const std::vector<uint8_t> frame = PatternFrame(width, height, static_cast<int>(i));
    const absl::Status status = (*encoder)->AddFrame(frame.data(), 3 * int64_t{width});
    EXPECT_TRUE(status.ok()) << status;
  }
  const absl::Status status = (*encoder)->Finish();
  EXPECT_TRUE(status.ok()) << status;
  return stream;
}

// Encoded once per test binary. The 128x128 stream's second fragment holds one sample, for which
// the encoder writes no per-sample size in the trun (tfhd's default size applies).
const std::vector<EncodedStream>& RealStreams() {
  static const std::vector<EncodedStream> streams = [] {
    radial::worker::LimitFfmpegLoggingToErrors();
    return std::vector<EncodedStream>{
        Encode(128, 128, 17, /*gop_frames=*/0, /*fragments=*/2),  // 16 fps: GOPs of 16
        Encode(64, 48, 40, /*gop_frames=*/8, /*fragments=*/5),
        Encode(16, 16, 3, /*gop_frames=*/1, /*fragments=*/3),
    };
  }();
  return streams;
}

const EncodedStream& TwoFragmentStream() { return RealStreams()[0]; }

std::string BigEndian32(uint32_t value) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>(value >> (24 - 8 * i));
  return bytes;
}

std::string BigEndian64(uint64_t value) {
  return BigEndian32(static_cast<uint32_t>(value >> 32)) +
         BigEndian32(static_cast<uint32_t>(value));
}

std::string Box(std::string_view type, std::string_view body) {
  return BigEndian32(static_cast<uint32_t>(8 + body.size())) + std::string(type) +
         std::string(body);
}

void PutBigEndian32(std::string& bytes, size_t position, uint32_t value) {
  bytes.replace(position, 4, BigEndian32(value));
}

std::vector<Mp4Box> TopLevelBoxes(std::string_view bytes) {
  absl::StatusOr<std::vector<Mp4Box>> boxes = ListTopLevelBoxes(bytes);
  EXPECT_TRUE(boxes.ok()) << boxes.status();
  return boxes.ok() ? *boxes : std::vector<Mp4Box>{};
}

// Stream offset of the first box of `type` inside the top-level box `box`.
size_t FindInside(std::string_view bytes, const Mp4Box& box, std::string_view type) {
  const size_t tag = bytes.substr(0, box.offset + box.size).find(type, box.offset + 8);
  EXPECT_NE(tag, std::string_view::npos) << type << " inside the box at " << box.offset;
  return tag - 4;
}

// ftyp + moov.
std::string InitSegment(const EncodedStream& stream) {
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  return stream.bytes.substr(0, boxes.at(2).offset);
}

bool IsPrintableAscii(absl::string_view text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

absl::Status CheckWhole(std::string_view bytes, uint32_t frames) {
  Mp4StreamCheck check;
  check.Add(bytes).IgnoreError();  // Finish repeats an error Add returned
  return check.Finish(frames);
}

absl::Status CheckInPieces(std::string_view bytes, uint32_t frames, std::mt19937& rng,
                           size_t max_piece) {
  Mp4StreamCheck check;
  while (!bytes.empty()) {
    const size_t piece = std::min<size_t>(bytes.size(), 1 + rng() % max_piece);
    if (!check.Add(bytes.substr(0, piece)).ok()) break;
    bytes.remove_prefix(piece);
  }
  return check.Finish(frames);
}

// The error `bytes` get, which must be INVALID_ARGUMENT with a printable "video: " message.
std::string ErrorFor(std::string_view bytes, uint32_t frames) {
  const absl::Status status = CheckWhole(bytes, frames);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith("video: "));
  EXPECT_TRUE(IsPrintableAscii(status.message())) << status;
  return std::string(status.message());
}

TEST(Mp4StreamCheckTest, EncoderWritesFtypMoovThenMoofMdatPairsOnly) {
  // The check accepts exactly this shape; a new top-level box from the encoder must fail here.
  for (const EncodedStream& stream : RealStreams()) {
    SCOPED_TRACE(stream.name);
    std::vector<std::string> expected = {"ftyp", "moov"};
    for (uint64_t i = 0; i < stream.fragments; ++i) {
      expected.push_back("moof");
      expected.push_back("mdat");
    }
    EXPECT_EQ(BoxTypes(TopLevelBoxes(stream.bytes)), expected);
  }
}

TEST(Mp4StreamCheckTest, AcceptsRealStreamsFedWhole) {
  for (const EncodedStream& stream : RealStreams()) {
    SCOPED_TRACE(stream.name);
    Mp4StreamCheck check;
    ASSERT_TRUE(check.Add(stream.bytes).ok());
    EXPECT_TRUE(check.Finish(stream.frames).ok()) << check.Finish(stream.frames);
    EXPECT_EQ(check.samples(), stream.frames);
    EXPECT_EQ(check.fragments(), stream.fragments);
  }
}

TEST(Mp4StreamCheckTest, AcceptsRealStreamsFedOneByteAtATime) {
  for (const EncodedStream& stream : RealStreams()) {
    SCOPED_TRACE(stream.name);
    Mp4StreamCheck check;
    for (size_t i = 0; i < stream.bytes.size(); ++i) {
      const absl::Status status = check.Add(std::string_view(stream.bytes).substr(i, 1));
      ASSERT_TRUE(status.ok()) << "byte " << i << ": " << status;
    }
    EXPECT_TRUE(check.Finish(stream.frames).ok()) << check.Finish(stream.frames);
    EXPECT_EQ(check.samples(), stream.frames);
  }
}

TEST(Mp4StreamCheckTest, AcceptsRealStreamsInRandomPiecesAndAsTheEncoderChunkedThem) {
  std::mt19937 rng(20240601);
  for (const EncodedStream& stream : RealStreams()) {
    SCOPED_TRACE(stream.name);
    for (size_t max_piece : {2, 7, 100, 5000}) {
      SCOPED_TRACE(max_piece);
      EXPECT_TRUE(CheckInPieces(stream.bytes, stream.frames, rng, max_piece).ok());
    }
    Mp4StreamCheck check;
    check.Add("").IgnoreError();
    for (const std::string& chunk : stream.chunks) ASSERT_TRUE(check.Add(chunk).ok());
    EXPECT_TRUE(check.Add("").ok());
    EXPECT_TRUE(check.Finish(stream.frames).ok()) << check.Finish(stream.frames);
  }
}

TEST(Mp4StreamCheckTest, RefusesAFrameCountOtherThanTheRequests) {
  const EncodedStream& stream = TwoFragmentStream();
  Mp4StreamCheck check;
  ASSERT_TRUE(check.Add(stream.bytes).ok());
  for (uint32_t expected : {stream.frames - 1, stream.frames + 1, 0u}) {
    const absl::Status status = check.Finish(expected);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), "video: got 17 samples in 2 fragment(s), expected " +
                                    std::to_string(expected) + " (the request's frame count)");
  }
}

TEST(Mp4StreamCheckTest, RefusesGarbage) {
  std::mt19937 rng(11);
  std::string garbage;
  for (int i = 0; i < 11; ++i) garbage.push_back(static_cast<char>(rng() & 0xFF));
  EXPECT_THAT(ErrorFor(garbage, 1), HasSubstr("box at byte 0, expected ftyp"));
  EXPECT_EQ(ErrorFor("", 1),
            "video: the stream is empty, expected ftyp, moov and moof+mdat fragments");
}

TEST(Mp4StreamCheckTest, RefusesAStreamThatEndsEarly) {
  const EncodedStream& stream = TwoFragmentStream();
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  const Mp4Box& ftyp = boxes[0];
  const Mp4Box& moof = boxes[2];
  const Mp4Box& last_mdat = boxes.back();
  struct Cut {
    size_t length;
    std::string error;
  };
  const std::vector<Cut> cuts = {
      {static_cast<size_t>(ftyp.size), "after ftyp, expected moov"},
      {static_cast<size_t>(moof.offset), "after ftyp and moov, expected a moof+mdat fragment"},
      {static_cast<size_t>(moof.offset + 5), "inside a box header (5 of 8 bytes)"},
      {static_cast<size_t>(moof.offset + moof.size / 2),
       "inside the 'moof' box at byte " + std::to_string(moof.offset)},
      {static_cast<size_t>(moof.offset + moof.size),
       "after the 'moof' box at byte " + std::to_string(moof.offset) + ", expected its mdat"},
      {static_cast<size_t>(last_mdat.offset + last_mdat.size / 2),
       "inside the 'mdat' box at byte " + std::to_string(last_mdat.offset) + ", which declares " +
           std::to_string(last_mdat.size) + " bytes"},
      {stream.bytes.size() - 1, "(1 missing)"},
  };
  for (const Cut& cut : cuts) {
    SCOPED_TRACE(cut.length);
    const std::string_view prefix = std::string_view(stream.bytes).substr(0, cut.length);
    Mp4StreamCheck check;
    EXPECT_TRUE(check.Add(prefix).ok()) << "a prefix of a good stream is fine until it ends";
    EXPECT_THAT(ErrorFor(prefix, stream.frames),
                HasSubstr("the stream ended at byte " + std::to_string(cut.length)));
    EXPECT_THAT(ErrorFor(prefix, stream.frames), HasSubstr(cut.error));
  }
}

TEST(Mp4StreamCheckTest, RefusesTopLevelBoxesOutOfOrder) {
  const EncodedStream& stream = TwoFragmentStream();
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  const std::string ftyp = stream.bytes.substr(0, boxes[0].size);
  const std::string moov = stream.bytes.substr(boxes[1].offset, boxes[1].size);
  const std::string fragment1 =
      stream.bytes.substr(boxes[2].offset, boxes[4].offset - boxes[2].offset);
  const std::string moof2 = stream.bytes.substr(boxes[4].offset, boxes[4].size);

  EXPECT_EQ(ErrorFor(ftyp + fragment1, stream.frames),
            "video: got a top-level 'moof' box at byte 28, expected moov");
  EXPECT_EQ(ErrorFor(moov + ftyp + fragment1, stream.frames),
            "video: got a top-level 'moov' box at byte 0, expected ftyp");
  // A moof without its mdat, followed by the next moof.
  const std::string moof1 = stream.bytes.substr(boxes[2].offset, boxes[2].size);
  EXPECT_EQ(ErrorFor(ftyp + moov + moof1 + moof2, stream.frames),
            "video: got a top-level 'moof' box at byte " +
                std::to_string(ftyp.size() + moov.size() + moof1.size()) + ", expected mdat");
  // An mdat where a moof belongs, and a box our encoder never writes.
  EXPECT_THAT(
      ErrorFor(ftyp + moov + fragment1 + Box("mdat", "xx"), stream.frames),
      HasSubstr("'mdat' box at byte " + std::to_string(boxes[4].offset) + ", expected moof"));
  EXPECT_THAT(ErrorFor(ftyp + moov + Box("sidx", std::string(24, '\0')) + fragment1, stream.frames),
              HasSubstr("got a top-level 'sidx' box at byte 744, expected moof"));
}

TEST(Mp4StreamCheckTest, EscapesBoxTypesThatAreNotPrintable) {
  const std::string error = ErrorFor(BigEndian32(16) + "\x01\xff'z" + std::string(8, 'a'), 1);
  EXPECT_EQ(error, "video: got a top-level '\\x01\\xff\\'z' box at byte 0, expected ftyp");
}

TEST(Mp4StreamCheckTest, RefusesBadTopLevelSizes) {
  const std::string init = InitSegment(TwoFragmentStream());
  const std::string at = std::to_string(init.size());
  EXPECT_EQ(
      ErrorFor(init + BigEndian32(3) + "moof", 17),
      "video: the 'moof' box at byte " + at + " declares size 3, less than its 8-byte header");
  EXPECT_EQ(
      ErrorFor(init + BigEndian32(1) + "moof" + BigEndian64(12), 17),
      "video: the 'moof' box at byte " + at + " declares size 12, less than its 16-byte header");
  EXPECT_THAT(ErrorFor(init + BigEndian32(0) + "moof" + std::string(100, '\0'), 17),
              HasSubstr("has size 0 (to the end of the file)"));
  EXPECT_THAT(ErrorFor(BigEndian32(7) + "ftyp", 17), HasSubstr("declares size 7"));
}

TEST(Mp4StreamCheckTest, RefusesHugeDeclaredSizes) {
  const EncodedStream& stream = TwoFragmentStream();
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  const std::string fragment_head = stream.bytes.substr(0, boxes[3].offset);  // up to the 1st mdat
  const std::string mdat_at = std::to_string(boxes[3].offset);

  // A 4 GiB mdat is allowed to start (mdat bytes are never held), but the stream must deliver it.
  const std::string large_mdat =
      fragment_head + BigEndian32(0xFFFFFFFF) + "mdat" + std::string(100, 'x');
  Mp4StreamCheck check;
  EXPECT_TRUE(check.Add(large_mdat).ok());
  EXPECT_THAT(
      ErrorFor(large_mdat, stream.frames),
      HasSubstr("inside the 'mdat' box at byte " + mdat_at + ", which declares 4294967295 bytes"));

  // A 64-bit size that would end past 2^64.
  EXPECT_EQ(ErrorFor(fragment_head + BigEndian32(1) + "mdat" + BigEndian64(~uint64_t{0} - 100),
                     stream.frames),
            "video: the 'mdat' box at byte " + mdat_at +
                " declares size 18446744073709551515, which "
                "would end past byte 2^64");
  // A moof of 2^63 bytes is refused at its header, before any of its body.
  const std::string init = InitSegment(stream);
  Mp4StreamCheck huge_moof;
  const absl::Status status =
      huge_moof.Add(init + BigEndian32(1) + "moof" + BigEndian64(uint64_t{1} << 63));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("declares 9223372036854775808 bytes, more than"));
}

TEST(Mp4StreamCheckTest, RefusesAMoofOverTheLimitAndAcceptsOneAtIt) {
  const std::string init = InitSegment(TwoFragmentStream());
  Mp4StreamCheck over;
  const absl::Status status =
      over.Add(init + BigEndian32(static_cast<uint32_t>(kMp4MaxMoofBytes + 1)) + "moof");
  EXPECT_EQ(status.message(),
            "video: the 'moof' box at byte " + std::to_string(init.size()) +
                " declares 1048577 bytes, more than the 1048576 allowed for a moof");

  // Exactly at the limit: a moof holding one free box of padding and no samples.
  const std::string padding = Box("free", std::string(kMp4MaxMoofBytes - 16, '\0'));
  const std::string stream = init + Box("moof", padding) + Box("mdat", "");
  EXPECT_TRUE(CheckWhole(stream, 0).ok()) << CheckWhole(stream, 0);
}

TEST(Mp4StreamCheckTest, RefusesATrunThatClaimsMoreSamplesThanItHolds) {
  const EncodedStream& stream = TwoFragmentStream();
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  const size_t traf = FindInside(stream.bytes, boxes[2], "traf");
  const size_t trun = FindInside(stream.bytes, boxes[2], "trun");
  // This trun carries data_offset, first_sample_flags and a size per sample: 16 records of 4 bytes.
  ASSERT_EQ(stream.bytes.substr(trun + 8, 8), BigEndian32(0x205) + BigEndian32(16));
  for (uint32_t count : {17u, 1000u, 0xFFFFFFFFu}) {
    SCOPED_TRACE(count);
    std::string bytes = stream.bytes;
    PutBigEndian32(bytes, trun + 12, count);
    EXPECT_THAT(ErrorFor(bytes, stream.frames),
                HasSubstr("'trun' box at byte " + std::to_string(trun) + " (in 'traf' at byte " +
                          std::to_string(traf) + ") claims " + std::to_string(count) +
                          " samples of 4 bytes each, but has room for 16"));
  }
  // Flags naming more fields than the box holds.
  std::string bytes = stream.bytes;
  PutBigEndian32(bytes, trun + 8, 0xF05);
  EXPECT_THAT(ErrorFor(bytes, stream.frames),
              HasSubstr("samples of 16 bytes each, but has room for 4"));
}

TEST(Mp4StreamCheckTest, RefusesAnMdatSmallerThanItsMoofsSamples) {
  const EncodedStream& stream = TwoFragmentStream();
  const std::vector<Mp4Box> boxes = TopLevelBoxes(stream.bytes);
  // One byte cut from the first fragment's data, with its mdat's size made to match.
  std::string bytes = stream.bytes;
  bytes.erase(static_cast<size_t>(boxes[3].offset + boxes[3].size - 1), 1);
  PutBigEndian32(bytes, boxes[3].offset, static_cast<uint32_t>(boxes[3].size - 1));
  const uint64_t data = boxes[3].size - 8;
  EXPECT_EQ(ErrorFor(bytes, stream.frames),
            "video: the 'mdat' box at byte " + std::to_string(boxes[3].offset) + " holds " +
                std::to_string(data - 1) + " bytes, but the moof before it declares " +
                std::to_string(data) + " bytes of samples");

  // The second fragment's trun has no per-sample sizes; tfhd's default size counts instead.
  const size_t trun = FindInside(stream.bytes, boxes[4], "trun");
  ASSERT_EQ(stream.bytes.substr(trun + 8, 8), BigEndian32(0x5) + BigEndian32(1));
  bytes = stream.bytes;
  PutBigEndian32(bytes, trun + 12, 2);
  EXPECT_THAT(ErrorFor(bytes, stream.frames),
              HasSubstr("the 'mdat' box at byte " + std::to_string(boxes[5].offset) + " holds"));
}

TEST(Mp4StreamCheckTest, RefusesMalformedBoxesInsideAMoof) {
  const std::string init = InitSegment(TwoFragmentStream());
  const uint64_t moof_at = init.size();
  const auto fragment = [&](const std::string& moof_body) {
    return init + Box("moof", moof_body) + Box("mdat", "");
  };
  // A traf that declares more bytes than the moof has left.
  EXPECT_EQ(ErrorFor(fragment(BigEndian32(40) + "traf" + std::string(8, '\0')), 0),
            "video: the 'traf' box at byte " + std::to_string(moof_at + 8) +
                " (in 'moof' at byte " + std::to_string(moof_at) +
                ") declares size 40, but only 16 bytes of its parent are left");
  // Three stray bytes after the last child.
  EXPECT_THAT(ErrorFor(fragment(Box("mfhd", std::string(8, '\0')) + "abc"), 0),
              HasSubstr("ends with 3 byte(s) at byte " + std::to_string(moof_at + 24)));
  // A trun too short for its sample_count, and a tfhd too short for the fields its flags name.
  EXPECT_THAT(ErrorFor(fragment(Box("traf", Box("trun", std::string(4, '\0')))), 0),
              HasSubstr("holds 4 bytes, less than the 8 of its flags and sample_count"));
  EXPECT_THAT(ErrorFor(fragment(Box("traf", Box("tfhd", BigEndian32(0x38) + BigEndian32(1)))), 0),
              HasSubstr("has flags 0x000038, which need 20 bytes, but it holds 8"));
  // A size of 0 or below the header inside a moof.
  EXPECT_THAT(ErrorFor(fragment(BigEndian32(0) + "traf"), 0), HasSubstr("has size 0"));
  EXPECT_THAT(
      ErrorFor(fragment(Box("traf", BigEndian32(5) + "trun")), 0),
      HasSubstr("'trun' box at byte " + std::to_string(moof_at + 16) + " (in 'traf' at byte " +
                std::to_string(moof_at + 8) + ") declares size 5, less than its 8-byte header"));
  // Samples counted from several trafs and truns; unknown boxes are skipped.
  const std::string trun = Box("trun", BigEndian32(0) + BigEndian32(2));
  const std::string body = Box("mfhd", std::string(8, '\0')) +
                           Box("traf", trun + Box("abcd", "") + trun) + Box("traf", trun);
  EXPECT_TRUE(CheckWhole(fragment(body), 6).ok()) << CheckWhole(fragment(body), 6);
}

TEST(Mp4StreamCheckTest, KeepsReturningTheFirstError) {
  const EncodedStream& stream = TwoFragmentStream();
  Mp4StreamCheck check;
  const absl::Status first = check.Add(BigEndian32(16) + "moov");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(check.Add(stream.bytes), first);
  EXPECT_EQ(check.Add(""), first);
  EXPECT_EQ(check.Finish(stream.frames), first);
}

// Random damage to real streams: never a crash, always INVALID_ARGUMENT with a printable message
// or OK, and the same verdict whether the bytes arrive whole or in pieces.
TEST(Mp4StreamCheckTest, SurvivesRandomMutationsWithTheSameVerdictHoweverChunked) {
  std::mt19937 rng(7);
  const std::vector<std::string_view> tags = {"ftyp", "moov", "moof", "mdat", "mfhd",
                                              "traf", "tfhd", "tfdt", "trun"};
  const std::vector<uint32_t> interesting = {0, 1, 3, 7, 8, 9, 15, 16, 17, 0x7FFFFFFF, 0xFFFFFFFF};
  int accepted = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    const EncodedStream& stream = RealStreams()[1 + iteration % 2];  // the two small ones
    std::string bytes = stream.bytes;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations && !bytes.empty(); ++m) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 7) {
        case 0:  // flip a bit
          bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
          break;
        case 1: {  // a size, flags or count field next to a box tag gets an interesting value
          const std::string_view tag = tags[rng() % tags.size()];
          const size_t found = bytes.find(tag, at);
          if (found == std::string::npos || found < 4) break;
          const size_t field = rng() % 2 == 0 ? found - 4 : found + 4 * (1 + rng() % 2);
          if (field + 4 > bytes.size()) break;
          PutBigEndian32(bytes, field, interesting[rng() % interesting.size()]);
          break;
        }
        case 2:  // truncate
          bytes.resize(at);
          break;
        case 3:  // insert random bytes
          for (size_t i = 1 + rng() % 16; i > 0; --i) {
            bytes.insert(bytes.begin() + static_cast<ptrdiff_t>(at), static_cast<char>(rng()));
          }
          break;
        case 4:  // erase a range
          bytes.erase(at, 1 + rng() % 32);
          break;
        case 5:  // duplicate a range
          bytes.insert(at, bytes.substr(rng() % bytes.size(), 1 + rng() % 200));
          break;
        case 6:  // a random byte
          bytes[at] = static_cast<char>(rng());
          break;
      }
    }
    const absl::Status whole = CheckWhole(bytes, stream.frames);
    const absl::Status pieces = CheckInPieces(bytes, stream.frames, rng, 64);
    ASSERT_EQ(whole, pieces) << "iteration " << iteration;
    if (whole.ok()) {
      ++accepted;
      continue;
    }
    ASSERT_EQ(whole.code(), absl::StatusCode::kInvalidArgument) << "iteration " << iteration;
    ASSERT_THAT(std::string(whole.message()), StartsWith("video: ")) << "iteration " << iteration;
    ASSERT_TRUE(IsPrintableAscii(whole.message())) << "iteration " << iteration;
  }
  // Flipped bits inside mdat payloads keep the structure; most other damage is refused.
  EXPECT_LT(accepted, 1000);
}

}  // namespace
}  // namespace radial::server
