#include "job_runner.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "step_timing.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

// Most pixel bytes the default queue holds (a 1280x768 frame is 2.9 MiB: 87 frames).
constexpr int64_t kQueueBytesMax = int64_t{256} << 20;

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

JobStage ToJobStage(Stage stage) {
  switch (stage) {
    case Stage::kEncodingText: return JobStage::kEncodingText;
    case Stage::kDenoising: return JobStage::kDenoising;
    case Stage::kDecoding: return JobStage::kDecoding;
  }
  return JobStage::kDecoding;
}

// Room for two fragments or two VAE chunks, whichever is more: the pipeline hands over a chunk's
// frames at once and then decodes the next chunk while the encoder works through them.
int64_t QueueFrames(const JobSpec& spec, int gop_frames, const ModelManifest& manifest) {
  if (spec.queue_frames > 0) return spec.queue_frames;
  const int64_t chunk_frames = manifest.vae_decode_chunk_frames * manifest.temporal_factor;
  const int64_t frame_bytes = std::max<int64_t>(1, spec.params.width * spec.params.height * 3);
  const int64_t wanted = 2 * std::max<int64_t>(gop_frames, chunk_frames);
  return std::max<int64_t>(2, std::min<int64_t>(wanted, kQueueBytesMax / frame_bytes));
}

// When the stream's milestones reached the sink. Written by the encoder's sink callback (the
// caller's thread during Create, then the encoder thread), read after the encoder thread is joined.
struct StreamMarks {
  std::optional<Clock::time_point> first_fragment;
  std::optional<Clock::time_point> last_byte;
  int64_t fragments = 0;
  int64_t bytes = 0;
};

// The encoder thread and the bounded queue of frames that feeds it. The pipeline's thread calls
// Push for each frame, then exactly one of Finish (all frames are in) or Abort (the pipeline
// failed); both join the thread. State shared by the two threads is under mutex_; the encoder
// itself, and the counters below it, belong to the encoder thread until it is joined.
class EncoderThread {
 public:
  EncoderThread(std::unique_ptr<Fmp4Encoder> encoder, int64_t capacity, int64_t width, int64_t height,
                const std::atomic<bool>& cancel, JobSink& sink)
      : encoder_(std::move(encoder)),
        capacity_(static_cast<size_t>(capacity)),
        row_bytes_(width * 3),
        rows_(height),
        cancel_(cancel),
        sink_(sink) {}
  EncoderThread(const EncoderThread&) = delete;
  EncoderThread& operator=(const EncoderThread&) = delete;
  ~EncoderThread() { Abort(); }

  absl::Status Start() {
    try {
      thread_ = std::thread([this] { Loop(); });
    } catch (const std::system_error& error) {
      return absl::ResourceExhaustedError(absl::StrCat("worker: cannot start the encoder thread: ", error.what()));
    }
    return absl::OkStatus();
  }

  // Copies one frame (rows `stride` bytes apart) into the queue, waiting while it is full. Returns
  // the encoder's failure once it has stopped: the pipeline then stops too.
  absl::Status Push(const uint8_t* rgb, int64_t stride) {
    if (rgb == nullptr || stride < row_bytes_) {
      return absl::InternalError(
          absl::StrCat("worker: got a frame with stride ", stride, ", expected at least ", row_bytes_, " bytes"));
    }
    std::vector<uint8_t> buffer;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!stopped_ && queue_.size() >= capacity_) {
        const Clock::time_point start = Clock::now();
        room_.wait(lock, [&] { return stopped_ || queue_.size() < capacity_; });
        frame_wait_ += Clock::now() - start;
      }
      if (stopped_) return StoppedStatusLocked();
      if (!free_.empty()) {
        buffer = std::move(free_.back());
        free_.pop_back();
      }
    }
    buffer.resize(static_cast<size_t>(row_bytes_ * rows_));
    for (int64_t row = 0; row < rows_; ++row) {
      std::memcpy(buffer.data() + row * row_bytes_, rgb + row * stride, static_cast<size_t>(row_bytes_));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return StoppedStatusLocked();
      queue_.push_back(std::move(buffer));
      ++frames_pushed_;
    }
    work_.notify_one();
    return absl::OkStatus();
  }

  // No more frames: the encoder thread encodes the queued ones, announces muxing progress and
  // finishes the stream. Returns its outcome once it has ended.
  absl::Status Finish() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      input_done_ = true;
    }
    work_.notify_one();
    Join();
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }

  // The pipeline failed: queued frames are dropped, the thread stops after the frame it is encoding.
  void Abort() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      aborted_ = true;
    }
    work_.notify_one();
    Join();
  }

  // The encoder's own failure (OK while it runs or after it finished).
  absl::Status failure() {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }
  // After Finish or Abort.
  const Fmp4Encoder& encoder() const { return *encoder_; }
  double encode_seconds() const { return Seconds(busy_); }
  double frame_wait_seconds() {
    std::lock_guard<std::mutex> lock(mutex_);
    return Seconds(frame_wait_);
  }

 private:
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  absl::Status StoppedStatusLocked() const {
    return failure_.ok() ? absl::InternalError("worker: the encoder thread stopped before the frames ended") : failure_;
  }

  // Ends the thread's work: a failure (OK when it finished) wakes a pipeline waiting for room.
  void Stop(absl::Status status) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_ = true;
      failure_ = std::move(status);
      queue_.clear();
    }
    room_.notify_all();
  }

  // (kMuxing, encoded, total) once decoding is done, each value once.
  void AnnounceMuxing(int64_t total) {
    if (announced_ == frames_encoded_) return;
    announced_ = frames_encoded_;
    sink_.Progress(JobStage::kMuxing, frames_encoded_, total);
  }

  absl::Status Timed(const std::function<absl::Status()>& work) {
    const Clock::time_point start = Clock::now();
    absl::Status status = work();
    busy_ += Clock::now() - start;
    return status;
  }

  void Loop() {
    for (;;) {
      std::vector<uint8_t> frame;
      bool input_done = false;
      int64_t total = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_.wait(lock, [&] { return aborted_ || input_done_ || !queue_.empty(); });
        if (aborted_) break;
        input_done = input_done_;
        total = frames_pushed_;
        if (!queue_.empty()) {
          frame = std::move(queue_.front());
          queue_.pop_front();
        }
      }
      room_.notify_one();
      if (input_done) AnnounceMuxing(total);
      if (cancel_.load()) return Stop(absl::CancelledError("cancelled while encoding"));
      if (frame.empty()) {  // all frames are in and encoded
        return Stop(Timed([&] { return encoder_->Finish(); }));
      }
      if (absl::Status added = Timed([&] { return encoder_->AddFrame(frame.data(), row_bytes_); }); !added.ok()) {
        return Stop(std::move(added));
      }
      ++frames_encoded_;
      if (input_done) AnnounceMuxing(total);
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(std::move(frame));
    }
    Stop(absl::CancelledError("worker: encoding stopped with the pipeline"));
  }

  std::unique_ptr<Fmp4Encoder> encoder_;
  const size_t capacity_;
  const int64_t row_bytes_;
  const int64_t rows_;
  const std::atomic<bool>& cancel_;
  JobSink& sink_;
  std::thread thread_;

  std::mutex mutex_;              // guards the fields down to frame_wait_
  std::condition_variable work_;  // the encoder thread waits: a frame, the end of frames or an abort
  std::condition_variable room_;  // the pipeline waits: room in the queue, or the encoder stopped
  std::deque<std::vector<uint8_t>> queue_;
  std::vector<std::vector<uint8_t>> free_;  // buffers of encoded frames, reused
  int64_t frames_pushed_ = 0;
  bool input_done_ = false;
  bool aborted_ = false;
  bool stopped_ = false;
  absl::Status failure_;
  Clock::duration frame_wait_{0};

  // The encoder thread's own.
  int64_t frames_encoded_ = 0;
  int64_t announced_ = -1;
  Clock::duration busy_{0};
};

}  // namespace

JobOutcome RunJob(Pipeline& pipeline, const JobSpec& spec, const std::atomic<bool>& cancel, JobSink& sink) {
  const Clock::time_point start = Clock::now();
  JobOutcome outcome;
  const GenerationParams& params = spec.params;
  if (spec.encoder.width != params.width || spec.encoder.height != params.height) {
    outcome.status =
        absl::InvalidArgumentError(absl::StrCat("worker: encoder size ", spec.encoder.width, "x", spec.encoder.height,
                                                " differs from the generation's ", params.width, "x", params.height));
    return outcome;
  }
  StreamMarks marks;
  auto encoder = Fmp4Encoder::Create(spec.encoder, [&sink, &marks](const Chunk& chunk) -> absl::Status {
    if (absl::Status written = sink.WriteChunk(chunk); !written.ok()) return written;
    const Clock::time_point now = Clock::now();
    marks.bytes += static_cast<int64_t>(chunk.bytes.size());
    if (chunk.kind == Chunk::Kind::kFragment && !marks.first_fragment) marks.first_fragment = now;
    if (chunk.last) marks.last_byte = now;
    return absl::OkStatus();
  });
  if (!encoder.ok()) {
    outcome.status = encoder.status();
    return outcome;
  }
  const int gop_frames = (*encoder)->gop_frames();
  EncoderThread encoding(std::move(*encoder), QueueFrames(spec, gop_frames, pipeline.manifest()), params.width,
                         params.height, cancel, sink);
  if (absl::Status started = encoding.Start(); !started.ok()) {
    outcome.status = started;
    return outcome;
  }

  StepTimer steps;
  std::optional<Clock::time_point> last_step;
  GenerationCallbacks callbacks;
  callbacks.progress = [&](Stage stage, int64_t step, int64_t total) {
    const Clock::time_point now = Clock::now();  // before the sink: it may wait for the stream
    steps.Progress(stage, step, now);
    if (stage == Stage::kDenoising && step == total) last_step = now;
    sink.Progress(ToJobStage(stage), step, total);
  };
  callbacks.frame = [&encoding](const uint8_t* rgb, int64_t stride) { return encoding.Push(rgb, stride); };
  callbacks.cancelled = [&cancel] { return cancel.load(); };
  absl::StatusOr<GenerationReport> report = pipeline.Generate(params, callbacks);
  if (report.ok()) {
    outcome.report = *report;
    outcome.steps = steps.Steps(params, report->text_encode_seconds);
    outcome.status = encoding.Finish();
  } else {
    const absl::Status encoder_failure = encoding.failure();
    encoding.Abort();
    outcome.status = encoder_failure.ok() ? report.status() : encoder_failure;
  }

  // The encoder thread has ended: its counters and the stream marks are this thread's now.
  JobTimes& times = outcome.times;
  times.frame_wait = encoding.frame_wait_seconds();
  times.encode = encoding.encode_seconds();
  if (outcome.report) {
    times.text_encode = outcome.report->text_encode_seconds;
    times.denoise = outcome.report->denoise_seconds;
    times.decode = std::max(0.0, outcome.report->decode_seconds - times.frame_wait);
  }
  if (marks.first_fragment) {
    times.first_fragment = Seconds(*marks.first_fragment - start);
    if (last_step) times.last_step_to_first_fragment = Seconds(*marks.first_fragment - *last_step);
  }
  if (marks.last_byte && last_step) times.last_step_to_last_byte = Seconds(*marks.last_byte - *last_step);
  outcome.frames_encoded = encoding.encoder().frames_added();
  outcome.fragments = encoding.encoder().fragments_emitted();
  outcome.video_bytes = marks.bytes;
  times.total = Seconds(Clock::now() - start);
  return outcome;
}

}  // namespace radial::worker
