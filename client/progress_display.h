// What radialctl shows on stderr while it follows a job. On a terminal: one line redrawn in place
// (stage, the stage's own counter, a bar over the whole job, its percentage, bytes received, ETA).
// Elsewhere (a log, a pipe, CI): one plain line per change, e.g. "job 1a2b3c4d5e6f7081 denoising
// step 3/8" or "job 1a2b3c4d5e6f7081 decoding 40/81 frames", and nothing per chunk.
#ifndef RADIAL_CLIENT_PROGRESS_DISPLAY_H_
#define RADIAL_CLIENT_PROGRESS_DISPLAY_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "radial/v1/video_service.pb.h"

namespace radial::client {

using Clock = std::chrono::steady_clock;

// How fast one stage's counter (denoising steps, frames decoded, frames encoded) advances: the
// average from the first value seen in the stage to the last, so that a skipped value (a watcher
// is sent the latest progress, not every one) or frames arriving a VAE chunk at a time only make
// the average coarser.
class StageTimer {
 public:
  // A total that changes or a count that goes back starts a new measurement (a restarted job).
  void Observe(uint32_t count, uint32_t total, Clock::time_point now);
  void Reset() { *this = StageTimer(); }
  // Counts per second; empty until the counter advanced over a measurable time.
  std::optional<double> Rate() const;
  // Seconds from the last value seen to the stage's end at `Rate()`; empty without a rate.
  std::optional<double> SecondsLeft() const;
  // When the last value was seen; meaningful once one was.
  Clock::time_point last_time() const { return last_time_; }

 private:
  std::optional<Clock::time_point> first_time_;
  uint32_t first_count_ = 0;
  Clock::time_point last_time_;
  uint32_t last_count_ = 0;
  uint32_t total_ = 0;
};

// "denoising", "encoding text", ...
std::string StageName(v1::Stage stage);
// "1.5 MiB", "512 B".
std::string FormatBytes(uint64_t bytes);
// The share of the whole job done after `progress`, in [0, 1]: denoising steps fill the first 80%,
// decoded frames the next 15%, encoded (muxed) frames the last 5%; 1 only at muxing total/total.
// Stages before denoising are 0.
double JobFraction(const v1::Progress& progress);

class ProgressDisplay {
 public:
  // Writes to `err`; `now` is the clock the ETA is measured with (injectable for tests).
  ProgressDisplay(std::ostream& err, bool terminal, std::function<Clock::time_point()> now = Clock::now);

  // Watch: the first event of the stream announces following a job, not submitting one.
  void set_watching(bool watching) { watching_ = watching; }
  void Accepted(const std::string& job_id, uint32_t queue_position);
  void Progress(const v1::Progress& progress);
  // `total` is the number of bytes of the video received so far.
  void Bytes(uint64_t total);
  void Restarted(uint32_t attempt, const std::string& reason, uint64_t discarded_bytes);
  // The job completed: the bar is full, whatever progress was (or was not) seen last.
  void Completed();
  // Ends the redrawn line so that what follows starts on a fresh one. Idempotent.
  void Finish();

 private:
  void Line(const std::string& text);  // a full line, above the redrawn one
  void Redraw(bool force);
  // Seconds to the job's end as of `now`; empty while nothing to measure a rate with was seen.
  std::optional<double> SecondsLeft(Clock::time_point now) const;

  std::ostream& err_;
  const bool terminal_;
  const std::function<Clock::time_point()> now_;
  bool watching_ = false;
  std::string job_id_;
  v1::Progress progress_;
  bool have_progress_ = false;
  bool completed_ = false;
  uint32_t queue_position_ = 0;
  uint64_t bytes_ = 0;
  StageTimer stage_timer_;  // the current stage's counter; reset when the stage changes
  // The job's pace (JobFraction per second) last measured, carried into the next stage until that
  // stage's own counter gives a rate: the rough ETA at 0 frames decoded.
  std::optional<double> job_rate_;
  std::string last_plain_;         // plain mode: the last progress line, not repeated
  bool line_open_ = false;         // terminal mode: the redrawn line is on screen
  Clock::time_point last_redraw_;  // terminal mode: redraws for bytes are rate-limited
};

}  // namespace radial::client

#endif  // RADIAL_CLIENT_PROGRESS_DISPLAY_H_
