#include "progress_display.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace radial::client {
namespace {

constexpr int kBarWidth = 24;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr const char* kClearLine = "\r\033[K";

// Each stage's share of the bar. Fixed, not measured: while denoising nothing says how long the
// decode will take. Denoising dominates a job; muxing is the short tail of an encode that runs
// beside the decode (the worker reports it once decoding is done).
constexpr double kDenoisingShare = 0.80;
constexpr double kDecodingShare = 0.15;
constexpr double kMuxingShare = 0.05;

bool HasBar(v1::Stage stage) {
  return stage == v1::STAGE_DENOISING || stage == v1::STAGE_DECODING || stage == v1::STAGE_MUXING;
}

double StageShare(v1::Stage stage) {
  switch (stage) {
    case v1::STAGE_DENOISING: return kDenoisingShare;
    case v1::STAGE_DECODING: return kDecodingShare;
    case v1::STAGE_MUXING: return kMuxingShare;
    default: return 0;
  }
}

// JobFraction where the stage starts.
double StageStart(v1::Stage stage) {
  switch (stage) {
    case v1::STAGE_DECODING: return kDenoisingShare;
    case v1::STAGE_MUXING: return kDenoisingShare + kDecodingShare;
    default: return 0;
  }
}

// What the stage counts, for the terminal line: "3/8 steps", "40/81 frames".
std::string Counter(const v1::Progress& progress) {
  const uint32_t count = std::min(progress.step(), progress.total());
  return absl::StrCat(count, "/", progress.total(), progress.stage() == v1::STAGE_DENOISING ? " steps" : " frames");
}

std::string Bar(double fraction) {
  const int filled = std::clamp(static_cast<int>(kBarWidth * fraction), 0, kBarWidth);
  return absl::StrCat("[", std::string(filled, '#'), std::string(kBarWidth - filled, '.'), "] ",
                      static_cast<int>(100 * fraction), "%");
}

std::string FormatDuration(double seconds) {
  const long total = std::lround(std::max(0.0, seconds));
  if (total >= 3600) return absl::StrFormat("%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60);
  return absl::StrFormat("%d:%02d", total / 60, total % 60);
}

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

}  // namespace

void StageTimer::Observe(uint32_t count, uint32_t total, Clock::time_point now) {
  if (total != total_ || count < last_count_) Reset();
  total_ = total;
  if (!first_time_) {
    first_time_ = now;
    first_count_ = count;
  }
  last_time_ = now;
  last_count_ = count;
}

std::optional<double> StageTimer::Rate() const {
  if (!first_time_ || last_count_ <= first_count_) return std::nullopt;
  const double elapsed = Seconds(last_time_ - *first_time_);
  if (elapsed <= 0) return std::nullopt;
  return (last_count_ - first_count_) / elapsed;
}

std::optional<double> StageTimer::SecondsLeft() const {
  const std::optional<double> rate = Rate();
  if (!rate) return std::nullopt;
  return (total_ > last_count_ ? total_ - last_count_ : 0) / *rate;
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

double JobFraction(const v1::Progress& progress) {
  if (!HasBar(progress.stage())) return 0;
  if (progress.total() == 0) return StageStart(progress.stage());
  if (progress.stage() == v1::STAGE_MUXING && progress.step() >= progress.total()) return 1;  // exactly
  const double done = static_cast<double>(std::min(progress.step(), progress.total())) / progress.total();
  return std::min(StageStart(progress.stage()) + StageShare(progress.stage()) * done, 1.0);
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
  if (stage_changed) stage_timer_.Reset();
  if (HasBar(progress.stage()) && progress.total() > 0) {
    stage_timer_.Observe(progress.step(), progress.total(), now_());
    if (const std::optional<double> rate = stage_timer_.Rate()) {
      job_rate_ = StageShare(progress.stage()) * *rate / progress.total();
    }
  }
  if (terminal_) {
    Redraw(true);
    return;
  }
  std::string text = absl::StrCat("job ", job_id_, " ", StageName(progress.stage()));
  if (progress.total() > 0) {
    if (progress.stage() == v1::STAGE_DECODING || progress.stage() == v1::STAGE_MUXING) {
      absl::StrAppend(&text, " ", progress.step(), "/", progress.total(), " frames");
    } else {
      absl::StrAppend(&text, " step ", progress.step(), "/", progress.total());
    }
  }
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
  stage_timer_.Reset();
  job_rate_.reset();  // the next attempt may run on another worker
  have_progress_ = false;
  bytes_ = 0;
  last_plain_.clear();
  Line(absl::StrCat("job ", job_id_, " restarted (attempt ", attempt, "): ", reason.empty() ? "worker lost" : reason,
                    "; discarded ", discarded_bytes, " bytes received so far"));
  Redraw(true);
}

void ProgressDisplay::Completed() {
  completed_ = true;
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

std::optional<double> ProgressDisplay::SecondsLeft(Clock::time_point now) const {
  if (!have_progress_ || !HasBar(progress_.stage()) || progress_.total() == 0) return std::nullopt;
  const double remaining = 1 - JobFraction(progress_);
  if (remaining <= 0) return 0.0;
  // The current stage's own rate once it has one, else the pace carried over from the stage before.
  const std::optional<double> stage_rate = stage_timer_.Rate();
  const std::optional<double> job_rate =
      stage_rate ? std::optional<double>(StageShare(progress_.stage()) * *stage_rate / progress_.total()) : job_rate_;
  if (!job_rate || *job_rate <= 0) return std::nullopt;
  // Counted down from the last value seen, so that redraws for bytes in between move it too.
  return std::max(0.0, remaining / *job_rate - Seconds(now - stage_timer_.last_time()));
}

void ProgressDisplay::Redraw(bool force) {
  if (!terminal_) return;
  const Clock::time_point now = now_();
  if (!force && line_open_ && now - last_redraw_ < kRedrawInterval) return;
  last_redraw_ = now;
  std::string text;
  if (completed_) {
    text = absl::StrFormat("%-13s %s  %s", "done", Bar(1), FormatBytes(bytes_));
  } else if (!have_progress_) {
    text = absl::StrCat(queue_position_ > 0 ? absl::StrCat("queued, position ", queue_position_) : "starting", "  ",
                        FormatBytes(bytes_));
  } else if (!HasBar(progress_.stage())) {
    text = absl::StrFormat("%-13s  %s", StageName(progress_.stage()), FormatBytes(bytes_));
  } else {
    text = absl::StrFormat("%-13s", StageName(progress_.stage()));
    if (progress_.total() > 0) absl::StrAppend(&text, " ", Counter(progress_));
    const std::optional<double> left = SecondsLeft(now);
    absl::StrAppend(&text, " ", Bar(JobFraction(progress_)), "  ", FormatBytes(bytes_), "  ETA ",
                    left ? FormatDuration(*left) : "--:--");
  }
  err_ << kClearLine << text << std::flush;
  line_open_ = true;
}

}  // namespace radial::client
