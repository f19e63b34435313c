#include "step_timing.h"

namespace radial::worker {

void StepTimer::Progress(Stage stage, int64_t step, Clock::time_point when) {
  if (stage == Stage::kEncodingText) {
    text_started_ = when;
    step_ends_.clear();
  } else if (stage == Stage::kDenoising && step == static_cast<int64_t>(step_ends_.size()) + 1) {
    step_ends_.push_back(when);
  }
}

std::vector<StepTime> StepTimer::Steps(const GenerationParams& params, double text_encode_seconds) const {
  std::vector<StepTime> steps;
  steps.reserve(step_ends_.size());
  for (size_t i = 0; i < step_ends_.size(); ++i) {
    Clock::time_point start;
    if (i > 0) {
      start = step_ends_[i - 1];
    } else if (text_started_.has_value()) {
      start = *text_started_ +
              std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(text_encode_seconds));
    } else {
      continue;
    }
    const double seconds = std::chrono::duration<double>(step_ends_[i] - start).count();
    steps.push_back({seconds < 0 ? 0 : seconds, StepIsDense(params, static_cast<int64_t>(i))});
  }
  return steps;
}

}  // namespace radial::worker
