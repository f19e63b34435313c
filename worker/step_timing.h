// The time of each denoising step of one generation, from the pipeline's progress callbacks, and
// which attention each step ran. Pure: the caller passes the times, so tests can replay a job.
//
// When the callbacks fire (runtime/pipeline.cc): (kEncodingText, 0, 0) as text encoding starts,
// (kDenoising, i + 1, steps) after step i, then kDecoding as frames are decoded. None marks the end
// of text encoding, so the first step starts at the first callback plus the report's
// text_encode_seconds (the pipeline starts that clock just before the callback); the first step's
// time therefore also holds the draw of the starting noise and the sampler's set-up, a few ms.
// On CUDA the pipeline does not wait for the device between steps, so a step's time is how long
// the host took to queue it until the launch queue fills; from then on (any real model) it follows
// the device's pace.
#ifndef RADIAL_WORKER_STEP_TIMING_H_
#define RADIAL_WORKER_STEP_TIMING_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "pipeline.h"
#include "worker_observer.h"

namespace radial::worker {

class StepTimer {
 public:
  using Clock = std::chrono::steady_clock;

  // Records one progress callback, `when` it came (taken before the callback's own work). Steps
  // out of order are ignored.
  void Progress(Stage stage, int64_t step, Clock::time_point when);

  // The steps that completed, with their attention. Needs the report (known when the generation
  // ends): its text_encode_seconds places the first step's start. Without the text-encoding
  // callback the first step is left out.
  std::vector<StepTime> Steps(const GenerationParams& params, double text_encode_seconds) const;

 private:
  std::optional<Clock::time_point> text_started_;
  std::vector<Clock::time_point> step_ends_;  // [i]: when step i ended (its kDenoising callback)
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_STEP_TIMING_H_
