// Fmp4Encoder: RGB24 frames in, H.264 in fragmented MP4 out, as a stream of byte chunks.
//
// The stream is an init segment (ftyp + moov, no samples) followed by one fragment (moof + mdat)
// per group of pictures; every fragment starts with an IDR frame, so a player can start at any
// fragment once it has the init segment. Everything is muxed in memory (libavformat with a custom
// write-only AVIOContext) and handed to a ChunkSink as soon as the muxer has finished it:
//
//   Create()         -> sink(init segment chunks)
//   AddFrame() x N   -> sink(chunks of fragment k) once the encoder emits the first packet of k+1
//   Finish()         -> sink(chunks of the last fragment; the final chunk has last = true)
//
// Ownership and threading: one owner drives an encoder from one thread at a time; it is not
// thread-safe. The sink is called synchronously from Create, AddFrame and Finish on that thread.
// All FFmpeg state is owned by the encoder and freed by its destructor, whether or not Finish ran.
//
// Determinism: the same frames and options produce the same bytes on the same build of FFmpeg and
// x264 when `threads` is 1 (bit-exact flags everywhere, no creation time, no version strings from
// libavformat). With threads = 0 x264 picks its thread count from the machine's cores; the bytes
// did not change with the thread count in our runs, but x264 does not promise that.
#ifndef RADIAL_WORKER_ENCODER_FMP4_ENCODER_H_
#define RADIAL_WORKER_ENCODER_FMP4_ENCODER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/encoder/ffmpeg_handles.h"

struct AVStream;

namespace radial::worker {

// Frames per second as a fraction (e.g. 16/1, 30000/1001).
struct FrameRate {
  int numerator = 16;
  int denominator = 1;
};

// Bounds used by ValidateEncoderOptions (inclusive unless named "Exclusive").
inline constexpr int kEncoderMinDimension = 16;
inline constexpr int kEncoderMaxDimension = 8192;
inline constexpr double kEncoderMaxFps = 240.0;
inline constexpr int kEncoderMaxGopFrames = 1000;
inline constexpr int kEncoderMaxThreads = 64;
inline constexpr int64_t kEncoderMinChunkBytes = 1024;
// gRPC's default message limit is 4 MiB; a chunk plus its message envelope must stay under it.
inline constexpr int64_t kEncoderMaxChunkBytesExclusive = int64_t{4} << 20;
inline constexpr int64_t kEncoderMaxBitrateBps = int64_t{1} << 30;

// FFmpeg logs (x264's statistics among them) go to stderr at level info by default; a service
// wants errors only there. Process-wide; call once at start.
void LimitFfmpegLoggingToErrors();

struct EncoderOptions {
  int width = 0;   // pixels, even, in [16, 8192]
  int height = 0;  // pixels, even, in [16, 8192]
  FrameRate fps;   // numerator and denominator >= 1, rate in (0, 240]
  // x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow.
  std::string preset = "veryfast";
  int crf = 23;              // x264 constant rate factor in [0, 51]; used when bitrate_bps == 0
  int64_t bitrate_bps = 0;   // average bitrate in bits/s, in [0, 2^30]; 0 = constant quality
  // Frames per group of pictures, which is also frames per fragment: every fragment starts with
  // an IDR frame. 0 = one second of video (the frame rate rounded up). Otherwise in [1, 1000].
  int gop_frames = 0;
  int64_t max_chunk_bytes = int64_t{1} << 20;  // bytes per chunk, in [1024, 4 MiB)
  int threads = 0;  // x264 threads in [0, 64]; 0 = one per core (not reproducible across machines)
};

// OK, or INVALID_ARGUMENT naming the first bad field and its allowed range.
absl::Status ValidateEncoderOptions(const EncoderOptions& options);

// One piece of the MP4 byte stream. `bytes` is valid only during the sink call.
struct Chunk {
  enum class Kind { kInit, kFragment };

  int64_t offset = 0;      // position of bytes[0] in the MP4 stream; chunks are contiguous from 0
  std::string_view bytes;  // 1 to max_chunk_bytes bytes
  Kind kind = Kind::kInit;  // which unit the bytes belong to (an init segment or a fragment)
  bool last = false;        // true on the final chunk of the stream (sent by Finish)
};

// Receives chunks in stream order. A non-OK return stops the encoder: the call that invoked the
// sink returns that status and every later call fails with FAILED_PRECONDITION.
using ChunkSink = std::function<absl::Status(const Chunk&)>;

class Fmp4Encoder {
 public:
  // Validates `options`, opens libx264 and the MP4 muxer, and sends the init segment to `sink`
  // before returning. Errors: INVALID_ARGUMENT for bad options (nothing is sent),
  // FAILED_PRECONDITION when libavcodec lacks libx264, the sink's status if it fails,
  // INTERNAL or RESOURCE_EXHAUSTED for FFmpeg failures (the message names the step).
  static absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Create(const EncoderOptions& options,
                                                             ChunkSink sink);

  Fmp4Encoder(const Fmp4Encoder&) = delete;
  Fmp4Encoder& operator=(const Fmp4Encoder&) = delete;
  ~Fmp4Encoder();

  // Encodes one frame of width x height RGB24 pixels (3 bytes per pixel, rows `stride` bytes
  // apart, stride >= 3 * width). The pixels are read during the call only. May send the chunks of
  // the previous fragment to the sink. Errors: INVALID_ARGUMENT for a null pointer or a short
  // stride (the encoder stays usable); FAILED_PRECONDITION after Finish or an earlier failure;
  // the sink's status, or INTERNAL/RESOURCE_EXHAUSTED from FFmpeg (the encoder is then stopped).
  absl::Status AddFrame(const uint8_t* rgb24, int64_t stride);

  // Drains the encoder, sends the remaining fragment(s) and marks the final chunk `last`.
  // Errors: FAILED_PRECONDITION when no frame was added, when called twice or after a failure;
  // otherwise as AddFrame. The encoder accepts no more frames afterwards, whatever the outcome.
  absl::Status Finish();

  int64_t frames_added() const { return frames_added_; }
  int64_t fragments_emitted() const { return fragments_emitted_; }
  int64_t bytes_emitted() const { return bytes_emitted_; }
  // Frames per fragment after resolving gop_frames = 0.
  int gop_frames() const { return gop_frames_; }

 private:
  enum class State { kOpen, kFinished, kFailed };

  Fmp4Encoder(const EncoderOptions& options, ChunkSink sink);

  absl::Status Open();
  // Sends the frame (nullptr: drain) to x264 and muxes every packet it returns.
  absl::Status EncodeAndMux(AVFrame* frame);
  // Closes the current fragment in the muxer and sends its bytes; `last` also finishes the muxer
  // (trailer) and marks the final chunk.
  absl::Status FlushFragment(bool last);
  // Sends what the muxer wrote since the last call as chunks of at most max_chunk_bytes.
  absl::Status EmitPending(Chunk::Kind kind, bool last);
  absl::Status CheckUsable(absl::string_view call) const;
  // Records a failure: the encoder refuses further calls. Returns `status`.
  absl::Status Fail(absl::Status status);

  // AVIOContext write callback (FFmpeg 5.1 signature): appends to pending_.
  static int WriteMuxerOutput(void* opaque, uint8_t* buffer, int size);

  const EncoderOptions options_;
  const ChunkSink sink_;
  int gop_frames_ = 0;

  // Declaration order is destruction order in reverse: the muxer goes before the AVIOContext it
  // writes to.
  AvIoContextPtr io_;
  AvOutputFormatContextPtr muxer_;
  AVStream* stream_ = nullptr;  // owned by muxer_
  AvCodecContextPtr codec_;
  SwsContextPtr converter_;
  AvFramePtr picture_;  // the yuv420p frame handed to x264, reused for every frame
  AvPacketPtr packet_;

  std::string pending_;  // muxer output not yet sent; at most one fragment
  State state_ = State::kOpen;
  absl::Status failure_;
  int64_t frames_added_ = 0;
  int64_t packets_in_fragment_ = 0;
  int64_t fragments_emitted_ = 0;
  int64_t bytes_emitted_ = 0;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_ENCODER_FMP4_ENCODER_H_
