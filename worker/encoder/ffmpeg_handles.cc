#include "worker/encoder/ffmpeg_handles.h"

#include <cerrno>

#include "absl/strings/str_cat.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
}

namespace radial::worker {

void AvCodecContextDeleter::operator()(AVCodecContext* context) const {
  avcodec_free_context(&context);
}

void AvOutputFormatContextDeleter::operator()(AVFormatContext* context) const {
  avformat_free_context(context);
}

void AvInputFormatContextDeleter::operator()(AVFormatContext* context) const {
  avformat_close_input(&context);
}

void AvFrameDeleter::operator()(AVFrame* frame) const { av_frame_free(&frame); }

void AvPacketDeleter::operator()(AVPacket* packet) const { av_packet_free(&packet); }

void AvIoContextDeleter::operator()(AVIOContext* context) const {
  if (context == nullptr) return;
  av_freep(&context->buffer);
  avio_context_free(&context);
}

void SwsContextDeleter::operator()(SwsContext* context) const { sws_freeContext(context); }

void AvDictionaryDeleter::operator()(AVDictionary* dictionary) const { av_dict_free(&dictionary); }

std::string AvErrorText(int av_error) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  if (av_strerror(av_error, text, sizeof(text)) < 0) {
    return absl::StrCat("unknown FFmpeg error ", av_error);
  }
  return text;
}

absl::Status AvErrorStatus(absl::string_view step, int av_error) {
  std::string message =
      absl::StrCat(step, ": ", AvErrorText(av_error), " (AVERROR ", av_error, ")");
  if (av_error == AVERROR(ENOMEM)) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

}  // namespace radial::worker
