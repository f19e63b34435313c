// Runs one generation job: the Pipeline decodes frames on the caller's thread while an encoder
// thread turns them into fragmented MP4 (Fmp4Encoder), so each fragment reaches the sink while the
// next VAE chunk decodes. Plain C++: no gRPC, no protobuf, no LibTorch (the worker's gRPC side,
// worker_client.h, adapts the sink to its stream; tests pass a recording sink).
//
// Threads and ownership, for one RunJob call:
//   caller's thread   Fmp4Encoder::Create (the init segment goes to the sink from here), then
//                     Pipeline::Generate: progress callbacks go to the sink; each frame of a VAE
//                     chunk is copied into a bounded queue (JobSpec::queue_frames), waiting while
//                     it is full, and the pipeline goes on to decode the next chunk;
//                     after Generate, it tells the encoder thread the frames are complete and
//                     joins it.
//   encoder thread    owns the encoder from its start: takes frames off the queue, AddFrame, and
//                     once decoding is done sends STAGE_MUXING progress, then Finish(). Every
//                     chunk goes to the sink from this thread.
// Failure on either side stops the other: an encoder (or sink) error makes the next frame
// callback return it, which ends Generate; a pipeline error or cancel drops the queued frames,
// stops the encoder thread (after the frame it is encoding) and joins it, without Finish().
// RunJob returns only after the encoder thread has ended.
#ifndef RADIAL_WORKER_JOB_RUNNER_H_
#define RADIAL_WORKER_JOB_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "encoder/fmp4_encoder.h"
#include "pipeline.h"
#include "worker_observer.h"

namespace radial::worker {

// Where a job is, as its sink hears it: the pipeline's stages, then muxing (the encoder finishing
// the frames it still holds once decoding is done).
enum class JobStage { kEncodingText, kDenoising, kDecoding, kMuxing };

// Receives a job's progress and video. Progress calls never overlap each other, nor do chunk
// calls, but a progress call (the pipeline's thread) may run while a chunk call (the encoder
// thread) does: an implementation that writes both to one stream serialises them itself.
class JobSink {
 public:
  virtual ~JobSink() = default;
  // (kEncodingText, 0, 0), (kDenoising, step, steps), (kDecoding, frames_decoded, frames) as the
  // pipeline reports them; then (kMuxing, frames_encoded, frames), ending at (frames, frames),
  // once decoding is done and before the last fragment.
  virtual void Progress(JobStage stage, int64_t step, int64_t total) = 0;
  // The MP4 stream in order, init segment first (Chunk::kind says which unit a chunk belongs to;
  // the last one has `last`). A non-OK status stops the job, which ends with that status.
  virtual absl::Status WriteChunk(const Chunk& chunk) = 0;
};

struct JobSpec {
  GenerationParams params;
  // Its width and height must be the params' (INVALID_ARGUMENT otherwise); gop_frames is the
  // frames per fragment (0: fps rounded up); threads and preset pass to x264 as they are.
  EncoderOptions encoder;
  // Frames the queue between decode and encode holds before the pipeline waits. 0: two fragments'
  // or two VAE chunks' worth (the manifest's vae_decode_chunk_frames x temporal_factor), whichever
  // is more, at most 256 MiB of pixels, at least 2 frames.
  int queue_frames = 0;
};

// Seconds, on the steady clock. Those about fragments and bytes are 0 when the job did not get
// that far.
struct JobTimes {
  double text_encode = 0;
  double denoise = 0;
  // The pipeline's decode stage (VAE decode, frames copied into the queue), less the time its frame
  // callback waited for room in the queue (frame_wait): the encoder's time is not in it.
  double decode = 0;
  double frame_wait = 0;
  // The encoder thread's busy time: AddFrame and Finish, the sink's chunk calls included.
  double encode = 0;
  // RunJob's start -> the sink accepted the first chunk of the first media fragment.
  double first_fragment = 0;
  double last_step_to_first_fragment = 0;  // the last denoising step's end -> that chunk
  double last_step_to_last_byte = 0;       // the last denoising step's end -> the sink took the last chunk
  double total = 0;                        // RunJob's start -> its return
};

struct JobOutcome {
  // OK, or the first failure: the encoder's or the sink's when the encoder stopped first (also when
  // the pipeline returned it from the frame callback), otherwise the pipeline's (CANCELLED when the
  // cancel flag stopped it, also while the encoder finished), INVALID_ARGUMENT for a spec whose
  // encoder options do not fit its params.
  absl::Status status;
  // Set when Generate returned (the encoder may still have failed after it).
  std::optional<GenerationReport> report;
  JobTimes times;
  int64_t frames_encoded = 0;  // frames handed to AddFrame
  int64_t fragments = 0;       // media fragments sent (the init segment not counted)
  int64_t video_bytes = 0;     // bytes the sink accepted
  // Each denoising step with its attention; set with `report` (the first step's start comes from it).
  std::vector<StepTime> steps;
};

// Runs the job to its end; `cancel` is polled by the pipeline between denoising steps and by the
// encoder thread between frames. Not thread-safe on `pipeline`: one job at a time per Pipeline.
JobOutcome RunJob(Pipeline& pipeline, const JobSpec& spec, const std::atomic<bool>& cancel, JobSink& sink);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_JOB_RUNNER_H_
