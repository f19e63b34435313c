#include "tests/worker/mp4_inspect.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "worker/encoder/ffmpeg_handles.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/mem.h>
}

namespace radial::worker::testing {
namespace {

uint64_t ReadBigEndian(std::string_view bytes, size_t position, int width) {
  uint64_t value = 0;
  for (int i = 0; i < width; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[position + i]);
  return value;
}

// Read position over the caller's bytes, for the AVIOContext callbacks below.
struct MemoryReader {
  std::string_view bytes;
  int64_t position = 0;
};

int ReadMemory(void* opaque, uint8_t* buffer, int size) {
  auto* reader = static_cast<MemoryReader*>(opaque);
  const int64_t left = static_cast<int64_t>(reader->bytes.size()) - reader->position;
  if (left <= 0) return AVERROR_EOF;
  const int count = static_cast<int>(std::min<int64_t>(size, left));
  std::memcpy(buffer, reader->bytes.data() + reader->position, static_cast<size_t>(count));
  reader->position += count;
  return count;
}

int64_t SeekMemory(void* opaque, int64_t offset, int whence) {
  auto* reader = static_cast<MemoryReader*>(opaque);
  const auto size = static_cast<int64_t>(reader->bytes.size());
  if ((whence & AVSEEK_SIZE) != 0) return size;
  int64_t target = 0;
  switch (whence & ~AVSEEK_FORCE) {
    case SEEK_SET: target = offset; break;
    case SEEK_CUR: target = reader->position + offset; break;
    case SEEK_END: target = size + offset; break;
    default: return AVERROR(EINVAL);
  }
  if (target < 0 || target > size) return AVERROR(EINVAL);
  reader->position = target;
  return target;
}

}  // namespace

absl::StatusOr<std::vector<Mp4Box>> ListTopLevelBoxes(std::string_view bytes) {
  std::vector<Mp4Box> boxes;
  size_t position = 0;
  while (position < bytes.size()) {
    if (bytes.size() - position < 8) {
      return absl::InvalidArgumentError(absl::StrCat("truncated box header at offset ", position));
    }
    uint64_t size = ReadBigEndian(bytes, position, 4);
    std::string type(bytes.substr(position + 4, 4));
    if (size == 1) {  // 64-bit size follows the type
      if (bytes.size() - position < 16) {
        return absl::InvalidArgumentError(absl::StrCat("truncated largesize at offset ", position));
      }
      size = ReadBigEndian(bytes, position + 8, 8);
    } else if (size == 0) {  // to the end of the stream
      size = bytes.size() - position;
    }
    if (size < 8 || size > bytes.size() - position) {
      return absl::InvalidArgumentError(absl::StrCat("box '", type, "' at offset ", position,
                                                     " has size ", size, ", ",
                                                     bytes.size() - position, " bytes left"));
    }
    boxes.push_back(Mp4Box{type, static_cast<int64_t>(position), static_cast<int64_t>(size)});
    position += size;
  }
  return boxes;
}

std::vector<std::string> BoxTypes(const std::vector<Mp4Box>& boxes) {
  std::vector<std::string> types;
  for (const Mp4Box& box : boxes) types.push_back(box.type);
  return types;
}

absl::StatusOr<Mp4Probe> ProbeMp4(std::string_view bytes) {
  constexpr int kIoBufferBytes = 32 * 1024;
  MemoryReader reader{bytes, 0};
  auto* io_buffer = static_cast<unsigned char*>(av_malloc(kIoBufferBytes));
  if (io_buffer == nullptr) return absl::ResourceExhaustedError("av_malloc");
  // Declared before the demuxer so it outlives it.
  AvIoContextPtr io(avio_alloc_context(io_buffer, kIoBufferBytes, /*write_flag=*/0, &reader,
                                       &ReadMemory, nullptr, &SeekMemory));
  if (io == nullptr) {
    av_free(io_buffer);
    return absl::ResourceExhaustedError("avio_alloc_context");
  }
  AVFormatContext* raw_demuxer = avformat_alloc_context();
  if (raw_demuxer == nullptr) return absl::ResourceExhaustedError("avformat_alloc_context");
  raw_demuxer->pb = io.get();
  raw_demuxer->flags |= AVFMT_FLAG_CUSTOM_IO;
  // avformat_open_input frees the context itself when it fails.
  if (int err = avformat_open_input(&raw_demuxer, nullptr, nullptr, nullptr); err < 0) {
    return AvErrorStatus("avformat_open_input", err);
  }
  AvInputFormatContextPtr demuxer(raw_demuxer);
  if (int err = avformat_find_stream_info(demuxer.get(), nullptr); err < 0) {
    return AvErrorStatus("avformat_find_stream_info", err);
  }
  const int stream_index =
      av_find_best_stream(demuxer.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (stream_index < 0) return AvErrorStatus("av_find_best_stream(video)", stream_index);
  const AVStream* stream = demuxer->streams[stream_index];

  Mp4Probe probe;
  probe.codec_name = avcodec_get_name(stream->codecpar->codec_id);
  probe.width = stream->codecpar->width;
  probe.height = stream->codecpar->height;
  probe.frame_rate_numerator = stream->avg_frame_rate.num;
  probe.frame_rate_denominator = stream->avg_frame_rate.den;

  const AVCodec* decoder = avcodec_find_decoder(stream->codecpar->codec_id);
  if (decoder == nullptr) return absl::NotFoundError("no decoder for " + probe.codec_name);
  AvCodecContextPtr decoding(avcodec_alloc_context3(decoder));
  if (decoding == nullptr) return absl::ResourceExhaustedError("avcodec_alloc_context3");
  if (int err = avcodec_parameters_to_context(decoding.get(), stream->codecpar); err < 0) {
    return AvErrorStatus("avcodec_parameters_to_context", err);
  }
  decoding->thread_count = 1;
  if (int err = avcodec_open2(decoding.get(), decoder, nullptr); err < 0) {
    return AvErrorStatus("avcodec_open2(decoder)", err);
  }
  AvPacketPtr packet(av_packet_alloc());
  AvFramePtr frame(av_frame_alloc());
  if (packet == nullptr || frame == nullptr) return absl::ResourceExhaustedError("alloc");

  auto receive_frames = [&]() -> absl::Status {
    while (true) {
      int err = avcodec_receive_frame(decoding.get(), frame.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return absl::OkStatus();
      if (err < 0) return AvErrorStatus("avcodec_receive_frame", err);
      ++probe.frames_decoded;
      av_frame_unref(frame.get());
    }
  };
  while (true) {
    int err = av_read_frame(demuxer.get(), packet.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) return AvErrorStatus("av_read_frame", err);
    if (packet->stream_index == stream_index) {
      if (probe.packet_keyframes.empty()) {
        probe.first_pts_seconds = static_cast<double>(packet->pts) * av_q2d(stream->time_base);
      }
      probe.packet_keyframes.push_back((packet->flags & AV_PKT_FLAG_KEY) != 0);
      err = avcodec_send_packet(decoding.get(), packet.get());
      av_packet_unref(packet.get());
      if (err < 0) return AvErrorStatus("avcodec_send_packet", err);
      if (absl::Status status = receive_frames(); !status.ok()) return status;
    } else {
      av_packet_unref(packet.get());
    }
  }
  if (int err = avcodec_send_packet(decoding.get(), nullptr); err < 0) {
    return AvErrorStatus("avcodec_send_packet(flush)", err);
  }
  if (absl::Status status = receive_frames(); !status.ok()) return status;
  return probe;
}

}  // namespace radial::worker::testing
