// What radialctl shows on stderr while it follows a job. On a terminal: one line redrawn in place
// (stage, step/total, a bar, bytes received, ETA). Elsewhere (a log, a pipe, CI): one plain line per
// change, e.g. "job 1a2b3c4d5e6f7081 denoising step 3/8", and nothing per chunk.
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

// Predicts the time left in denoising from how fast the steps seen so far finished.
class StepTimer {
 public:
  void Observe(uint32_t step, uint32_t total, Clock::time_point now);
  void Reset() { *this = StepTimer(); }
  // Seconds until the last step finishes; empty until two different steps were seen.
  std::optional<double> SecondsLeft() const;

 private:
  std::optional<Clock::time_point> first_time_;
  uint32_t first_step_ = 0;
  Clock::time_point last_time_;
  uint32_t last_step_ = 0;
  uint32_t total_ = 0;
};

// "denoising", "encoding text", ...
std::string StageName(v1::Stage stage);
// "1.5 MiB", "512 B".
std::string FormatBytes(uint64_t bytes);

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
  // Ends the redrawn line so that what follows starts on a fresh one. Idempotent.
  void Finish();

 private:
  void Line(const std::string& text);  // a full line, above the redrawn one
  void Redraw(bool force);

  std::ostream& err_;
  const bool terminal_;
  const std::function<Clock::time_point()> now_;
  bool watching_ = false;
  std::string job_id_;
  v1::Progress progress_;
  bool have_progress_ = false;
  uint32_t queue_position_ = 0;
  uint64_t bytes_ = 0;
  StepTimer steps_;
  std::string last_plain_;         // plain mode: the last progress line, not repeated
  bool line_open_ = false;         // terminal mode: the redrawn line is on screen
  Clock::time_point last_redraw_;  // terminal mode: redraws for bytes are rate-limited
};

}  // namespace radial::client

#endif  // RADIAL_CLIENT_PROGRESS_DISPLAY_H_
