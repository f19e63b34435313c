#include "worker/encoder/fmp4_encoder.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <exception>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern "C" {
#include <libavutil/log.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/dict.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
}

namespace radial::worker {

void LimitFfmpegLoggingToErrors() { av_log_set_level(AV_LOG_ERROR); }
namespace {

constexpr std::array<const char*, 9> kX264Presets = {
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium",    "slow",      "slower",   "veryslow"};

// Size of the AVIOContext's own buffer; the muxer's output is collected in pending_ anyway.
constexpr int kIoBufferBytes = 64 * 1024;

// Fragmented MP4 that a player can start from the first bytes: an empty moov (init segment), then
// fragments cut only when we ask (av_write_frame(nullptr)), with offsets relative to each moof as
// MSE and CMAF players expect, and no mfra index at the end (a stream has no end to seek from).
// An empty moov is written before any sample exists, so it cannot carry the edit list that would
// hide B-frame reordering delay; the encoder therefore uses no B-frames (see Open), and the first
// frame is presented at time 0 in every player.
constexpr const char* kMovFlags = "frag_custom+empty_moov+default_base_moof+skip_trailer";

int ResolveGopFrames(const EncoderOptions& options) {
  if (options.gop_frames > 0) return options.gop_frames;
  // One second of frames, rounded up.
  const int64_t numerator = options.fps.numerator;
  const int64_t denominator = options.fps.denominator;
  return static_cast<int>((numerator + denominator - 1) / denominator);
}

absl::Status CheckDimension(absl::string_view field, int value) {
  if (value < kEncoderMinDimension || value > kEncoderMaxDimension || value % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EncoderOptions.", field, " must be an even number of pixels in [", kEncoderMinDimension,
        ", ", kEncoderMaxDimension, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateEncoderOptions(const EncoderOptions& options) {
  if (absl::Status status = CheckDimension("width", options.width); !status.ok()) return status;
  if (absl::Status status = CheckDimension("height", options.height); !status.ok()) return status;
  const FrameRate& fps = options.fps;
  if (fps.numerator < 1 || fps.denominator < 1 ||
      static_cast<double>(fps.numerator) / fps.denominator > kEncoderMaxFps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EncoderOptions.fps must be numerator/denominator with both >= 1 and a rate in (0, ",
        kEncoderMaxFps, "] frames per second, got ", fps.numerator, "/", fps.denominator));
  }
  if (std::find(kX264Presets.begin(), kX264Presets.end(), options.preset) == kX264Presets.end()) {
    return absl::InvalidArgumentError(absl::StrCat("EncoderOptions.preset must be one of ",
                                                   absl::StrJoin(kX264Presets, ", "), ", got \"",
                                                   options.preset, "\""));
  }
  if (options.crf < 0 || options.crf > 51) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncoderOptions.crf must be in [0, 51], got ", options.crf));
  }
  if (options.bitrate_bps < 0 || options.bitrate_bps > kEncoderMaxBitrateBps) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncoderOptions.bitrate_bps must be in [0, ", kEncoderMaxBitrateBps,
                     "] bits per second (0 = constant quality), got ", options.bitrate_bps));
  }
  if (options.gop_frames < 0 || options.gop_frames > kEncoderMaxGopFrames) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncoderOptions.gop_frames must be in [0, ", kEncoderMaxGopFrames,
                     "] frames (0 = one second), got ", options.gop_frames));
  }
  if (options.max_chunk_bytes < kEncoderMinChunkBytes ||
      options.max_chunk_bytes >= kEncoderMaxChunkBytesExclusive) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EncoderOptions.max_chunk_bytes must be in [", kEncoderMinChunkBytes, ", ",
        kEncoderMaxChunkBytesExclusive, ") bytes (under gRPC's 4 MiB message limit), got ",
        options.max_chunk_bytes));
  }
  if (options.threads < 0 || options.threads > kEncoderMaxThreads) {
    return absl::InvalidArgumentError(absl::StrCat("EncoderOptions.threads must be in [0, ",
                                                   kEncoderMaxThreads, "] (0 = automatic), got ",
                                                   options.threads));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Fmp4Encoder::Create(const EncoderOptions& options,
                                                                  ChunkSink sink) {
  if (absl::Status status = ValidateEncoderOptions(options); !status.ok()) return status;
  if (!sink) return absl::InvalidArgumentError("Fmp4Encoder::Create: the chunk sink is empty");
  std::unique_ptr<Fmp4Encoder> encoder;
  try {
    encoder.reset(new Fmp4Encoder(options, std::move(sink)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("Fmp4Encoder::Create: out of memory");
  }
  if (absl::Status status = encoder->Open(); !status.ok()) return status;
  return encoder;
}

Fmp4Encoder::Fmp4Encoder(const EncoderOptions& options, ChunkSink sink)
    : options_(options), sink_(std::move(sink)), gop_frames_(ResolveGopFrames(options)) {}

Fmp4Encoder::~Fmp4Encoder() = default;

absl::Status Fmp4Encoder::Open() {
  // --- x264 ---
  const AVCodec* x264 = avcodec_find_encoder_by_name("libx264");
  if (x264 == nullptr) {
    return absl::FailedPreconditionError(
        "Fmp4Encoder: this libavcodec was built without the libx264 encoder");
  }
  codec_.reset(avcodec_alloc_context3(x264));
  if (codec_ == nullptr) {
    return absl::ResourceExhaustedError("avcodec_alloc_context3: out of memory");
  }
  AVCodecContext* codec = codec_.get();
  codec->width = options_.width;
  codec->height = options_.height;
  codec->pix_fmt = AV_PIX_FMT_YUV420P;
  codec->time_base = AVRational{options_.fps.denominator, options_.fps.numerator};
  codec->framerate = AVRational{options_.fps.numerator, options_.fps.denominator};
  codec->gop_size = gop_frames_;
  codec->keyint_min = gop_frames_;
  codec->thread_count = options_.threads;
  // No B-frames: presentation order = decode order, so the first frame is shown at 0 without an
  // edit list (see kMovFlags), and each packet can be muxed as soon as x264 returns it. Costs some
  // bits at equal quality; clips here are short.
  codec->max_b_frames = 0;
  // MP4 keeps SPS/PPS in the avcC box of the moov, not in the stream.
  codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER | AV_CODEC_FLAG_BITEXACT;
  // What the RGB -> YUV conversion below produces.
  codec->color_range = AVCOL_RANGE_MPEG;
  codec->colorspace = AVCOL_SPC_BT709;
  codec->color_primaries = AVCOL_PRI_BT709;
  codec->color_trc = AVCOL_TRC_BT709;
  if (options_.bitrate_bps > 0) codec->bit_rate = options_.bitrate_bps;

  void* x264_options = codec->priv_data;
  if (int err = av_opt_set(x264_options, "preset", options_.preset.c_str(), 0); err < 0) {
    return AvErrorStatus("set x264 preset", err);
  }
  if (options_.bitrate_bps == 0) {
    if (int err = av_opt_set_double(x264_options, "crf", options_.crf, 0); err < 0) {
      return AvErrorStatus("set x264 crf", err);
    }
  }
  // Keyframes only where we force them (every gop_frames_ frames), and those are IDR frames, so
  // every fragment starts with a frame a decoder can start from and GOPs are closed.
  if (int err = av_opt_set(x264_options, "forced-idr", "1", 0); err < 0) {
    return AvErrorStatus("set x264 forced-idr", err);
  }
  if (int err = av_opt_set(x264_options, "x264-params", "scenecut=0:open-gop=0", 0); err < 0) {
    return AvErrorStatus("set x264-params", err);
  }
  if (int err = avcodec_open2(codec, x264, nullptr); err < 0) {
    return AvErrorStatus("open libx264 (avcodec_open2)", err);
  }

  // --- RGB24 -> yuv420p ---
  converter_.reset(sws_getContext(options_.width, options_.height, AV_PIX_FMT_RGB24, options_.width,
                                  options_.height, AV_PIX_FMT_YUV420P,
                                  SWS_BILINEAR | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr,
                                  nullptr));
  if (converter_ == nullptr) {
    return absl::InternalError("sws_getContext: cannot convert rgb24 to yuv420p at this size");
  }
  // Full-range RGB to limited-range BT.709 YUV, matching the tags on the codec above.
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  if (sws_setColorspaceDetails(converter_.get(), bt709, /*srcRange=*/1, bt709, /*dstRange=*/0,
                               /*brightness=*/0, /*contrast=*/1 << 16,
                               /*saturation=*/1 << 16) < 0) {
    return absl::InternalError("sws_setColorspaceDetails: BT.709 conversion not supported");
  }
  picture_.reset(av_frame_alloc());
  packet_.reset(av_packet_alloc());
  if (picture_ == nullptr || packet_ == nullptr) {
    return absl::ResourceExhaustedError("av_frame_alloc/av_packet_alloc: out of memory");
  }
  picture_->format = AV_PIX_FMT_YUV420P;
  picture_->width = options_.width;
  picture_->height = options_.height;
  if (int err = av_frame_get_buffer(picture_.get(), 0); err < 0) {
    return AvErrorStatus("allocate the yuv420p frame (av_frame_get_buffer)", err);
  }

  // --- MP4 muxer writing into memory ---
  AVFormatContext* muxer = nullptr;
  if (int err = avformat_alloc_output_context2(&muxer, nullptr, "mp4", nullptr); err < 0) {
    return AvErrorStatus("create the mp4 muxer (avformat_alloc_output_context2)", err);
  }
  muxer_.reset(muxer);
  auto* io_buffer = static_cast<unsigned char*>(av_malloc(kIoBufferBytes));
  if (io_buffer == nullptr) return absl::ResourceExhaustedError("av_malloc: out of memory");
  io_.reset(avio_alloc_context(io_buffer, kIoBufferBytes, /*write_flag=*/1, this,
                               /*read_packet=*/nullptr, &Fmp4Encoder::WriteMuxerOutput,
                               /*seek=*/nullptr));
  if (io_ == nullptr) {
    av_free(io_buffer);
    return absl::ResourceExhaustedError("avio_alloc_context: out of memory");
  }
  muxer->pb = io_.get();
  muxer->flags |= AVFMT_FLAG_CUSTOM_IO | AVFMT_FLAG_BITEXACT;

  stream_ = avformat_new_stream(muxer, nullptr);
  if (stream_ == nullptr) return absl::ResourceExhaustedError("avformat_new_stream: out of memory");
  stream_->time_base = codec->time_base;
  stream_->avg_frame_rate = codec->framerate;
  if (int err = avcodec_parameters_from_context(stream_->codecpar, codec); err < 0) {
    return AvErrorStatus("copy codec parameters to the mp4 stream", err);
  }

  AVDictionary* raw_options = nullptr;
  int err = av_dict_set(&raw_options, "movflags", kMovFlags, 0);
  if (err >= 0) err = avformat_write_header(muxer, &raw_options);
  const AvDictionaryPtr unused_options(raw_options);  // what the muxer did not consume
  if (err < 0) return AvErrorStatus("write the mp4 header (avformat_write_header)", err);
  if (av_dict_count(unused_options.get()) > 0) {
    return absl::InternalError("avformat_write_header: the mp4 muxer ignored movflags");
  }
  avio_flush(io_.get());
  if (io_->error < 0) return AvErrorStatus("write the init segment", io_->error);
  return EmitPending(Chunk::Kind::kInit, /*last=*/false);
}

absl::Status Fmp4Encoder::AddFrame(const uint8_t* rgb24, int64_t stride) {
  if (absl::Status status = CheckUsable("AddFrame"); !status.ok()) return status;
  if (rgb24 == nullptr) return absl::InvalidArgumentError("Fmp4Encoder::AddFrame: rgb24 is null");
  const int64_t row_bytes = int64_t{3} * options_.width;
  if (stride < row_bytes || stride > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("Fmp4Encoder::AddFrame: stride must be in [",
                                                   row_bytes, ", ", INT_MAX, "] bytes, got ",
                                                   stride));
  }
  // x264 may still hold the previous frame's buffers; write into fresh ones if so.
  if (int err = av_frame_make_writable(picture_.get()); err < 0) {
    return Fail(AvErrorStatus("make the yuv420p frame writable", err));
  }
  const uint8_t* source_planes[1] = {rgb24};
  const int source_strides[1] = {static_cast<int>(stride)};
  int rows = sws_scale(converter_.get(), source_planes, source_strides, 0, options_.height,
                       picture_->data, picture_->linesize);
  if (rows != options_.height) {
    return Fail(absl::InternalError(absl::StrCat("sws_scale: converted ", rows, " rows of ",
                                                 options_.height)));
  }
  picture_->pts = frames_added_;
  // Every gop_frames_-th frame is forced to be an IDR frame (x264 option forced-idr).
  picture_->pict_type =
      frames_added_ % gop_frames_ == 0 ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
  ++frames_added_;
  if (absl::Status status = EncodeAndMux(picture_.get()); !status.ok()) return Fail(status);
  return absl::OkStatus();
}

absl::Status Fmp4Encoder::Finish() {
  if (absl::Status status = CheckUsable("Finish"); !status.ok()) return status;
  if (frames_added_ == 0) {
    state_ = State::kFinished;
    return absl::FailedPreconditionError("Fmp4Encoder::Finish: no frame was added");
  }
  if (absl::Status status = EncodeAndMux(nullptr); !status.ok()) return Fail(status);
  if (absl::Status status = FlushFragment(/*last=*/true); !status.ok()) return Fail(status);
  state_ = State::kFinished;
  return absl::OkStatus();
}

absl::Status Fmp4Encoder::EncodeAndMux(AVFrame* frame) {
  if (int err = avcodec_send_frame(codec_.get(), frame); err < 0) {
    return AvErrorStatus(frame != nullptr ? "send a frame to x264 (avcodec_send_frame)"
                                          : "drain x264 (avcodec_send_frame)",
                         err);
  }
  AVPacket* packet = packet_.get();
  while (true) {
    int err = avcodec_receive_packet(codec_.get(), packet);
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return absl::OkStatus();
    if (err < 0) return AvErrorStatus("receive a packet from x264 (avcodec_receive_packet)", err);

    // A keyframe opens the next GOP, so the fragment holding the previous one is complete.
    if ((packet->flags & AV_PKT_FLAG_KEY) != 0 && packets_in_fragment_ > 0) {
      if (absl::Status status = FlushFragment(/*last=*/false); !status.ok()) {
        av_packet_unref(packet);
        return status;
      }
    }
    if (packet->duration == 0) packet->duration = 1;  // one frame, in codec time base
    av_packet_rescale_ts(packet, codec_->time_base, stream_->time_base);
    packet->stream_index = stream_->index;
    err = av_write_frame(muxer_.get(), packet);  // does not take ownership of the packet
    av_packet_unref(packet);
    if (err < 0) return AvErrorStatus("mux a packet (av_write_frame)", err);
    ++packets_in_fragment_;
  }
}

absl::Status Fmp4Encoder::FlushFragment(bool last) {
  if (int err = av_write_frame(muxer_.get(), nullptr); err < 0) {
    return AvErrorStatus("cut a fragment (av_write_frame)", err);
  }
  // After the last fragment the muxer finishes (with skip_trailer it adds no mfra, but anything it
  // does write still belongs to the stream and goes out with the last chunk).
  if (last) {
    if (int err = av_write_trailer(muxer_.get()); err < 0) {
      return AvErrorStatus("write the mp4 trailer (av_write_trailer)", err);
    }
  }
  avio_flush(io_.get());
  if (io_->error < 0) return AvErrorStatus("write a fragment", io_->error);
  packets_in_fragment_ = 0;
  ++fragments_emitted_;
  return EmitPending(Chunk::Kind::kFragment, last);
}

absl::Status Fmp4Encoder::EmitPending(Chunk::Kind kind, bool last) {
  const std::string_view bytes = pending_;
  const size_t max_chunk = static_cast<size_t>(options_.max_chunk_bytes);
  for (size_t position = 0; position < bytes.size();) {
    const size_t size = std::min(max_chunk, bytes.size() - position);
    Chunk chunk;
    chunk.offset = bytes_emitted_;
    chunk.bytes = bytes.substr(position, size);
    chunk.kind = kind;
    chunk.last = last && position + size == bytes.size();
    absl::Status status;
    try {
      status = sink_(chunk);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("chunk sink threw: ", e.what()));
    } catch (...) {
      status = absl::InternalError("chunk sink threw a non-standard exception");
    }
    if (!status.ok()) return status;
    bytes_emitted_ += static_cast<int64_t>(size);
    position += size;
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::Status Fmp4Encoder::CheckUsable(absl::string_view call) const {
  switch (state_) {
    case State::kOpen:
      return absl::OkStatus();
    case State::kFinished:
      return absl::FailedPreconditionError(
          absl::StrCat("Fmp4Encoder::", call, ": the encoder is already finished"));
    case State::kFailed:
      return absl::FailedPreconditionError(absl::StrCat(
          "Fmp4Encoder::", call, ": the encoder stopped after an error: ", failure_.ToString()));
  }
  return absl::InternalError("Fmp4Encoder: unknown state");
}

absl::Status Fmp4Encoder::Fail(absl::Status status) {
  state_ = State::kFailed;
  failure_ = status;
  return status;
}

int Fmp4Encoder::WriteMuxerOutput(void* opaque, uint8_t* buffer, int size) {
  auto* encoder = static_cast<Fmp4Encoder*>(opaque);
  try {
    encoder->pending_.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(size));
  } catch (const std::exception&) {
    return AVERROR(ENOMEM);
  }
  return size;
}

}  // namespace radial::worker
