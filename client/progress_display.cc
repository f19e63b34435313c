#include "progress_display.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace radial::client {
namespace {

constexpr int kBarWidth = 24;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr const char* kClearLine = "\r\033[K";

std::string FormatDuration(double seconds) {
  const long total = std::lround(std::max(0.0, seconds));
  if (total >= 3600) return absl::StrFormat("%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60);
  return absl::StrFormat("%d:%02d", total / 60, total % 60);
}

}  // namespace

void StepTimer::Observe(uint32_t step, uint32_t total, Clock::time_point now) {
  if (total != total_ || step < last_step_) Reset();  // a new denoising run (e.g. a restarted job)
  total_ = total;
  if (!first_time_) {
    first_time_ = now;
    first_step_ = step;
  }
  last_time_ = now;
  last_step_ = step;
}

std::optional<double> StepTimer::SecondsLeft() const {
  if (!first_time_ || last_step_ <= first_step_) return std::nullopt;
  const double elapsed = std::chrono::duration<double>(last_time_ - *first_time_).count();
  const double per_step = elapsed / (last_step_ - first_step_);
  return per_step * (total_ > last_step_ ? total_ - last_step_ : 0);
}

std::string StageName(v1::Stage stage) {
  switch (stage) {
    case v1::STAGE_QUEUED: return "queued";
    case v1::STAGE_ENCODING_TEXT: return "encoding text";
    case v1::STAGE_DENOISING: return "denoising";
    case v1::STAGE_DECODING: return "decoding";
    case v1::STAGE_MUXING: return "muxing";
    default: return "starting";
  }
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (1u << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  if (bytes < (1u << 30)) return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
}

ProgressDisplay::ProgressDisplay(std::ostream& err, bool terminal, std::function<Clock::time_point()> now)
    : err_(err), terminal_(terminal), now_(std::move(now)) {}

void ProgressDisplay::Accepted(const std::string& job_id, uint32_t queue_position) {
  job_id_ = job_id;
  queue_position_ = queue_position;
  std::string text = absl::StrCat(watching_ ? "watching job " : "job ", job_id, watching_ ? "" : " accepted");
  if (queue_position > 0) absl::StrAppend(&text, ", queue position ", queue_position);
  Line(text);
  Redraw(true);
}

void ProgressDisplay::Progress(const v1::Progress& progress) {
  const bool stage_changed = !have_progress_ || progress.stage() != progress_.stage();
  progress_ = progress;
  have_progress_ = true;
  if (progress.stage() == v1::STAGE_DENOISING && progress.total() > 0) {
    steps_.Observe(progress.step(), progress.total(), now_());
  }
  if (terminal_) {
    Redraw(true);
    return;
  }
  std::string text = absl::StrCat("job ", job_id_, " ", StageName(progress.stage()));
  if (progress.total() > 0) absl::StrAppend(&text, " step ", progress.step(), "/", progress.total());
  if (text != last_plain_ || stage_changed) {
    err_ << text << "\n" << std::flush;
    last_plain_ = text;
  }
}

void ProgressDisplay::Bytes(uint64_t total) {
  bytes_ = total;
  Redraw(false);
}

void ProgressDisplay::Restarted(uint32_t attempt, const std::string& reason, uint64_t discarded_bytes) {
  steps_.Reset();
  have_progress_ = false;
  bytes_ = 0;
  last_plain_.clear();
  Line(absl::StrCat("job ", job_id_, " restarted (attempt ", attempt, "): ", reason.empty() ? "worker lost" : reason,
                    "; discarded ", discarded_bytes, " bytes received so far"));
  Redraw(true);
}

void ProgressDisplay::Finish() {
  if (!terminal_ || !line_open_) return;
  Redraw(true);
  err_ << "\n" << std::flush;
  line_open_ = false;
}

void ProgressDisplay::Line(const std::string& text) {
  if (terminal_ && line_open_) {
    err_ << kClearLine;
    line_open_ = false;
  }
  err_ << text << "\n" << std::flush;
}

void ProgressDisplay::Redraw(bool force) {
  if (!terminal_) return;
  const Clock::time_point now = now_();
  if (!force && line_open_ && now - last_redraw_ < kRedrawInterval) return;
  last_redraw_ = now;
  std::string text;
  if (!have_progress_) {
    text = queue_position_ > 0 ? absl::StrCat("queued, position ", queue_position_) : "starting";
  } else {
    text = absl::StrFormat("%-13s", StageName(progress_.stage()));
    if (progress_.stage() == v1::STAGE_DENOISING && progress_.total() > 0) {
      const uint32_t step = std::min(progress_.step(), progress_.total());
      const int filled = static_cast<int>(kBarWidth * static_cast<uint64_t>(step) / progress_.total());
      absl::StrAppend(&text, " ", step, "/", progress_.total(), " [", std::string(filled, '#'),
                      std::string(kBarWidth - filled, '.'), "]");
    }
  }
  absl::StrAppend(&text, "  ", FormatBytes(bytes_));
  if (have_progress_ && progress_.stage() == v1::STAGE_DENOISING) {
    const std::optional<double> left = steps_.SecondsLeft();
    absl::StrAppend(&text, "  ETA ", left ? FormatDuration(*left) : "--:--");
  }
  err_ << kClearLine << text << std::flush;
  line_open_ = true;
}

}  // namespace radial::client
