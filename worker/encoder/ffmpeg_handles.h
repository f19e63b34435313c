// Ownership of FFmpeg objects and translation of FFmpeg error codes, for the encoder and its tests.
//
// Every FFmpeg object the encoder allocates is held by one of the unique_ptr types below, so each
// is freed exactly once on every path, including early error returns. FFmpeg headers stay out of
// this header: the structs are only forward-declared.
#ifndef RADIAL_WORKER_ENCODER_FFMPEG_HANDLES_H_
#define RADIAL_WORKER_ENCODER_FFMPEG_HANDLES_H_

#include <memory>
#include <string>
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

extern "C" {
struct AVCodecContext;
struct AVDictionary;
struct AVFormatContext;
struct AVFrame;
struct AVIOContext;
struct AVPacket;
struct SwsContext;
}

namespace radial::worker {

struct AvCodecContextDeleter {
  void operator()(AVCodecContext* context) const;
};
// A muxing context from avformat_alloc_output_context2. Does not close or free its `pb`.
struct AvOutputFormatContextDeleter {
  void operator()(AVFormatContext* context) const;
};
// A demuxing context opened by avformat_open_input (closed with avformat_close_input). With
// AVFMT_FLAG_CUSTOM_IO the caller keeps owning `pb`.
struct AvInputFormatContextDeleter {
  void operator()(AVFormatContext* context) const;
};
struct AvFrameDeleter {
  void operator()(AVFrame* frame) const;
};
struct AvPacketDeleter {
  void operator()(AVPacket* packet) const;
};
// A custom AVIOContext from avio_alloc_context; frees its current buffer too (FFmpeg may have
// replaced the one it was created with).
struct AvIoContextDeleter {
  void operator()(AVIOContext* context) const;
};
struct SwsContextDeleter {
  void operator()(SwsContext* context) const;
};
struct AvDictionaryDeleter {
  void operator()(AVDictionary* dictionary) const;
};

using AvCodecContextPtr = std::unique_ptr<AVCodecContext, AvCodecContextDeleter>;
using AvOutputFormatContextPtr = std::unique_ptr<AVFormatContext, AvOutputFormatContextDeleter>;
using AvInputFormatContextPtr = std::unique_ptr<AVFormatContext, AvInputFormatContextDeleter>;
using AvFramePtr = std::unique_ptr<AVFrame, AvFrameDeleter>;
using AvPacketPtr = std::unique_ptr<AVPacket, AvPacketDeleter>;
using AvIoContextPtr = std::unique_ptr<AVIOContext, AvIoContextDeleter>;
using SwsContextPtr = std::unique_ptr<SwsContext, SwsContextDeleter>;
using AvDictionaryPtr = std::unique_ptr<AVDictionary, AvDictionaryDeleter>;

// The text av_strerror gives for an AVERROR code, e.g. "Invalid argument".
std::string AvErrorText(int av_error);

// A status for a failed FFmpeg call: "<step>: <av_strerror text> (AVERROR <code>)". Out of memory
// maps to RESOURCE_EXHAUSTED, everything else to INTERNAL (bad input is rejected before FFmpeg
// is called).
absl::Status AvErrorStatus(absl::string_view step, int av_error);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_ENCODER_FFMPEG_HANDLES_H_
