#include "scheduler/mp4_stream_check.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "radial/common/status_macros.h"

namespace radial::server {
namespace {

constexpr uint64_t kMaxStreamOffset = std::numeric_limits<uint64_t>::max();

// tfhd flags (ISO/IEC 14496-12, 8.8.7): which optional fields follow track_ID.
constexpr uint32_t kTfhdBaseDataOffset = 0x1;          // 8 bytes
constexpr uint32_t kTfhdSampleDescriptionIndex = 0x2;  // 4 bytes
constexpr uint32_t kTfhdDefaultSampleDuration = 0x8;   // 4 bytes
constexpr uint32_t kTfhdDefaultSampleSize = 0x10;      // 4 bytes
constexpr uint32_t kTfhdDefaultSampleFlags = 0x20;     // 4 bytes

// trun flags (8.8.8): optional fields after sample_count, then per-sample fields of 4 bytes each.
constexpr uint32_t kTrunDataOffset = 0x1;
constexpr uint32_t kTrunFirstSampleFlags = 0x4;
constexpr uint32_t kTrunSampleSize = 0x200;
constexpr uint32_t kTrunSampleDuration = 0x100;
constexpr uint32_t kTrunPerSampleFields = 0xF00;  // duration, size, flags, composition offset

uint64_t ReadBigEndian(const char* bytes, int width) {
  uint64_t value = 0;
  for (int i = 0; i < width; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return b > kMaxStreamOffset - a ? kMaxStreamOffset : a + b;
}

// A box type as it appears in messages: quoted, bytes outside printable ASCII as \xHH.
std::string Quoted(absl::string_view type) {
  return absl::StrCat("'", absl::CHexEscape(type), "'");
}

std::string FlagsText(uint32_t flags) {
  return absl::StrCat("0x", absl::Hex(flags, absl::kZeroPad6));
}

// A box inside a moof, with the stream offsets of its header and its body.
struct ChildBox {
  absl::string_view type;
  absl::string_view body;
  uint64_t offset = 0;
  uint64_t body_offset = 0;
};

// Where a child box sits, for messages: "'trun' box at byte 900 (in 'traf' at byte 768)".
std::string ChildText(absl::string_view type, uint64_t offset, absl::string_view parent_type,
                      uint64_t parent_offset) {
  return absl::StrCat(Quoted(type), " box at byte ", offset, " (in ", Quoted(parent_type),
                      " at byte ", parent_offset, ")");
}

// Calls `visit` on each box that `body` (the body of `parent_type` at `parent_offset`, starting at
// stream offset `body_offset`) holds, in order; every child must lie wholly inside the body.
absl::Status ForEachChild(absl::string_view parent_type, uint64_t parent_offset,
                          absl::string_view body, uint64_t body_offset,
                          const std::function<absl::Status(const ChildBox&)>& visit) {
  size_t position = 0;
  while (position < body.size()) {
    const uint64_t offset = body_offset + position;
    const size_t left = body.size() - position;
    if (left < 8) {
      return absl::InvalidArgumentError(absl::StrCat(
          "video: the ", Quoted(parent_type), " box at byte ", parent_offset, " ends with ", left,
          " byte(s) at byte ", offset, ", too few for a box header"));
    }
    const char* header = body.data() + position;
    const absl::string_view type = body.substr(position + 4, 4);
    uint64_t size = ReadBigEndian(header, 4);
    size_t header_size = 8;
    if (size == 1) {
      if (left < 16) {
        return absl::InvalidArgumentError(
            absl::StrCat("video: the ", ChildText(type, offset, parent_type, parent_offset),
                         " has a 64-bit size cut off by the end of its parent"));
      }
      size = ReadBigEndian(header + 8, 8);
      header_size = 16;
    } else if (size == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("video: the ", ChildText(type, offset, parent_type, parent_offset),
                       " has size 0 (to the end of the file), which is not allowed inside a box"));
    }
    if (size < header_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("video: the ", ChildText(type, offset, parent_type, parent_offset),
                       " declares size ", size, ", less than its ", header_size, "-byte header"));
    }
    if (size > left) {
      return absl::InvalidArgumentError(absl::StrCat(
          "video: the ", ChildText(type, offset, parent_type, parent_offset), " declares size ",
          size, ", but only ", left, " bytes of its parent are left"));
    }
    RADIAL_RETURN_IF_ERROR(
        visit(ChildBox{type, body.substr(position + header_size, size - header_size), offset,
                       offset + header_size}));
    position += size;
  }
  return absl::OkStatus();
}

// What the trun boxes of one moof declare.
struct FragmentSamples {
  uint64_t count = 0;
  uint64_t bytes = 0;  // sum of the sample sizes, when every trun's sizes are known
  bool bytes_known = true;
};

// The default sample size a tfhd sets, if any (tfhd is a full box: version, flags, track_ID, then
// the optional fields its flags name, in flag order).
absl::Status ParseTfhd(const ChildBox& tfhd, absl::string_view traf_text,
                       std::optional<uint32_t>* default_sample_size) {
  const absl::string_view body = tfhd.body;
  if (body.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("video: the 'tfhd' box at byte ", tfhd.offset, " (in ", traf_text, ") holds ",
                     body.size(), " bytes, less than the 8 of its flags and track_ID"));
  }
  const auto flags = static_cast<uint32_t>(ReadBigEndian(body.data(), 4) & 0xFFFFFF);
  size_t position = 8;
  if ((flags & kTfhdBaseDataOffset) != 0) position += 8;
  if ((flags & kTfhdSampleDescriptionIndex) != 0) position += 4;
  if ((flags & kTfhdDefaultSampleDuration) != 0) position += 4;
  const size_t size_field = position;
  if ((flags & kTfhdDefaultSampleSize) != 0) position += 4;
  if ((flags & kTfhdDefaultSampleFlags) != 0) position += 4;
  if (body.size() < position) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video: the 'tfhd' box at byte ", tfhd.offset, " (in ", traf_text, ") has flags ",
        FlagsText(flags), ", which need ", position, " bytes, but it holds ", body.size()));
  }
  if ((flags & kTfhdDefaultSampleSize) != 0) {
    *default_sample_size = static_cast<uint32_t>(ReadBigEndian(body.data() + size_field, 4));
  } else {
    default_sample_size->reset();
  }
  return absl::OkStatus();
}

// Adds what one trun declares to `samples` (trun is a full box: version, flags, sample_count, the
// optional data_offset and first_sample_flags, then sample_count records of the per-sample fields
// its flags name, 4 bytes each).
absl::Status ParseTrun(const ChildBox& trun, absl::string_view traf_text,
                       std::optional<uint32_t> default_sample_size, FragmentSamples* samples) {
  const absl::string_view body = trun.body;
  if (body.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("video: the 'trun' box at byte ", trun.offset, " (in ", traf_text, ") holds ",
                     body.size(), " bytes, less than the 8 of its flags and sample_count"));
  }
  const auto flags = static_cast<uint32_t>(ReadBigEndian(body.data(), 4) & 0xFFFFFF);
  const uint64_t count = ReadBigEndian(body.data() + 4, 4);
  uint64_t fixed_bytes = 8;
  if ((flags & kTrunDataOffset) != 0) fixed_bytes += 4;
  if ((flags & kTrunFirstSampleFlags) != 0) fixed_bytes += 4;
  const uint64_t record_bytes =
      4 * static_cast<uint64_t>(std::popcount(flags & kTrunPerSampleFields));
  if (body.size() < fixed_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("video: the 'trun' box at byte ", trun.offset, " (in ", traf_text,
                     ") has flags ", FlagsText(flags), ", which need ", fixed_bytes,
                     " bytes before its samples, but it holds ", body.size()));
  }
  const uint64_t room = body.size() - fixed_bytes;
  // count < 2^32 and record_bytes <= 16: the product cannot overflow.
  if (count * record_bytes > room) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video: the 'trun' box at byte ", trun.offset, " (in ", traf_text, ") claims ", count,
        " samples of ", record_bytes, " bytes each, but has room for ", room / record_bytes));
  }
  samples->count = SaturatingAdd(samples->count, count);
  if ((flags & kTrunSampleSize) != 0) {
    const uint64_t size_position = fixed_bytes + ((flags & kTrunSampleDuration) != 0 ? 4 : 0);
    for (uint64_t i = 0; i < count; ++i) {
      const char* field = body.data() + size_position + i * record_bytes;
      samples->bytes = SaturatingAdd(samples->bytes, ReadBigEndian(field, 4));
    }
  } else if (default_sample_size.has_value()) {
    samples->bytes = SaturatingAdd(samples->bytes, count * *default_sample_size);
  } else {
    samples->bytes_known = false;  // the size comes from trex in the moov, which is not parsed
  }
  return absl::OkStatus();
}

// Walks moof -> traf -> (tfhd, trun); other boxes are skipped.
absl::Status ParseMoof(absl::string_view body, uint64_t moof_offset, uint64_t body_offset,
                       FragmentSamples* samples) {
  return ForEachChild("moof", moof_offset, body, body_offset, [&](const ChildBox& child) {
    if (child.type != "traf") return absl::OkStatus();
    const std::string traf_text = absl::StrCat("'traf' at byte ", child.offset);
    std::optional<uint32_t> default_sample_size;  // set by a tfhd, which comes first in a traf
    return ForEachChild("traf", child.offset, child.body, child.body_offset,
                        [&](const ChildBox& entry) {
                          if (entry.type == "tfhd") {
                            return ParseTfhd(entry, traf_text, &default_sample_size);
                          }
                          if (entry.type == "trun") {
                            return ParseTrun(entry, traf_text, default_sample_size, samples);
                          }
                          return absl::OkStatus();
                        });
  });
}

}  // namespace

absl::Status Mp4StreamCheck::Add(std::string_view bytes) {
  if (!error_.ok()) return error_;
  error_ = Consume(bytes);
  return error_;
}

absl::Status Mp4StreamCheck::Consume(std::string_view bytes) {
  while (!bytes.empty()) {
    if (in_box_) {
      const uint64_t take = std::min<uint64_t>(box_body_left_, bytes.size());
      if (box_type_ == "moof") moof_body_.append(bytes.data(), take);
      box_body_left_ -= take;
      position_ += take;
      bytes.remove_prefix(take);
      if (box_body_left_ == 0) RADIAL_RETURN_IF_ERROR(EndBox());
      continue;
    }
    // Between boxes: 8 header bytes, then 8 more when the 32-bit size is 1 (a 64-bit size).
    const size_t needed = HeaderBytesNeeded();
    const size_t take = std::min(needed - header_bytes_, bytes.size());
    std::memcpy(header_.data() + header_bytes_, bytes.data(), take);
    header_bytes_ += take;
    position_ += take;
    bytes.remove_prefix(take);
    if (header_bytes_ == HeaderBytesNeeded()) RADIAL_RETURN_IF_ERROR(StartBox());
  }
  return absl::OkStatus();
}

size_t Mp4StreamCheck::HeaderBytesNeeded() const {
  if (header_bytes_ < 8) return 8;
  return ReadBigEndian(header_.data(), 4) == 1 ? 16 : 8;
}

absl::Status Mp4StreamCheck::StartBox() {
  const uint64_t header_size = header_bytes_;
  box_offset_ = position_ - header_size;
  box_type_.assign(header_.data() + 4, 4);
  uint64_t size = ReadBigEndian(header_.data(), 4);
  if (header_size == 16) size = ReadBigEndian(header_.data() + 8, 8);
  header_bytes_ = 0;

  const char* expected = "moof";
  if (expect_ == Expect::kFtyp) expected = "ftyp";
  if (expect_ == Expect::kMoov) expected = "moov";
  if (expect_ == Expect::kMdat) expected = "mdat";
  if (box_type_ != expected) {
    return absl::InvalidArgumentError(absl::StrCat("video: got a top-level ", Quoted(box_type_),
                                                   " box at byte ", box_offset_, ", expected ",
                                                   expected));
  }
  const std::string box_text =
      absl::StrCat("the ", Quoted(box_type_), " box at byte ", box_offset_);
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video: ", box_text, " has size 0 (to the end of the file), which a stream may not use"));
  }
  if (size < header_size) {
    return absl::InvalidArgumentError(absl::StrCat("video: ", box_text, " declares size ", size,
                                                   ", less than its ", header_size,
                                                   "-byte header"));
  }
  if (size > kMaxStreamOffset - box_offset_) {
    return absl::InvalidArgumentError(absl::StrCat("video: ", box_text, " declares size ", size,
                                                   ", which would end past byte 2^64"));
  }
  if (box_type_ == "moof" && size > kMp4MaxMoofBytes) {
    return absl::InvalidArgumentError(absl::StrCat("video: ", box_text, " declares ", size,
                                                   " bytes, more than the ", kMp4MaxMoofBytes,
                                                   " allowed for a moof"));
  }
  if (box_type_ == "mdat" && moof_sample_bytes_known_ && size - header_size < moof_sample_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "video: ", box_text, " holds ", size - header_size,
        " bytes, but the moof before it declares ", moof_sample_bytes_, " bytes of samples"));
  }
  in_box_ = true;
  box_size_ = size;
  box_body_left_ = size - header_size;
  box_body_offset_ = position_;
  moof_body_.clear();
  if (box_body_left_ == 0) return EndBox();
  return absl::OkStatus();
}

absl::Status Mp4StreamCheck::EndBox() {
  in_box_ = false;
  switch (expect_) {
    case Expect::kFtyp:
      expect_ = Expect::kMoov;
      break;
    case Expect::kMoov:
      expect_ = Expect::kFirstMoof;
      break;
    case Expect::kFirstMoof:
    case Expect::kMoofOrEnd: {
      FragmentSamples fragment;
      RADIAL_RETURN_IF_ERROR(ParseMoof(moof_body_, box_offset_, box_body_offset_, &fragment));
      samples_ = SaturatingAdd(samples_, fragment.count);
      moof_sample_bytes_ = fragment.bytes;
      moof_sample_bytes_known_ = fragment.bytes_known;
      moof_body_.clear();
      expect_ = Expect::kMdat;
      break;
    }
    case Expect::kMdat:
      ++fragments_;
      expect_ = Expect::kMoofOrEnd;
      break;
  }
  return absl::OkStatus();
}

absl::Status Mp4StreamCheck::Finish(uint32_t expected_frames) const {
  if (!error_.ok()) return error_;
  if (in_box_) {
    return absl::InvalidArgumentError(
        absl::StrCat("video: the stream ended at byte ", position_, " inside the ",
                     Quoted(box_type_), " box at byte ", box_offset_, ", which declares ",
                     box_size_, " bytes (", box_body_left_, " missing)"));
  }
  if (header_bytes_ > 0) {
    return absl::InvalidArgumentError(absl::StrCat("video: the stream ended at byte ", position_,
                                                   " inside a box header (", header_bytes_, " of ",
                                                   HeaderBytesNeeded(), " bytes)"));
  }
  switch (expect_) {
    case Expect::kFtyp:
      return absl::InvalidArgumentError(
          "video: the stream is empty, expected ftyp, moov and moof+mdat fragments");
    case Expect::kMoov:
      return absl::InvalidArgumentError(absl::StrCat("video: the stream ended at byte ", position_,
                                                     " after ftyp, expected moov"));
    case Expect::kFirstMoof:
      return absl::InvalidArgumentError(absl::StrCat("video: the stream ended at byte ", position_,
                                                     " after ftyp and moov, expected a moof+mdat "
                                                     "fragment"));
    case Expect::kMdat:
      return absl::InvalidArgumentError(absl::StrCat("video: the stream ended at byte ", position_,
                                                     " after the 'moof' box at byte ", box_offset_,
                                                     ", expected its mdat"));
    case Expect::kMoofOrEnd:
      break;
  }
  if (samples_ != expected_frames) {
    return absl::InvalidArgumentError(
        absl::StrCat("video: got ", samples_, " samples in ", fragments_, " fragment(s), expected ",
                     expected_frames, " (the request's frame count)"));
  }
  return absl::OkStatus();
}

}  // namespace radial::server
