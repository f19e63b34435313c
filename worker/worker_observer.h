// What the worker tells its observer (the Prometheus metrics in worker_metrics.h, or nothing: the
// observer in WorkerOptions is nullable, and radial-standalone runs without one): its state as it
// changes and one record per job as it ends. Plain C++: no Prometheus, no protobuf, no LibTorch.
//
// WorkerClient calls these from its threads (the stream's reader, the job thread, Drain()'s
// caller), never two StateChanged at once; an implementation must be thread-safe and quick (bump
// counters, set gauges: no network or file I/O, no call back into the WorkerClient).
#ifndef RADIAL_WORKER_WORKER_OBSERVER_H_
#define RADIAL_WORKER_WORKER_OBSERVER_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace radial::worker {

// The worker's state, as radial_worker_state reports it.
enum class WorkerState {
  kLoading,   // the bundle is loading (radial-worker's main, before the WorkerClient exists)
  kWarming,   // reserved for a warm-up run before the model is announced (not done yet)
  kIdle,      // loaded, no job: connected to the scheduler, or connecting / reconnecting to it
  kBusy,      // a job runs
  kDraining,  // Drain() was called: no new jobs, the running one finishes or is handed back
};

inline const char* WorkerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kLoading: return "loading";
    case WorkerState::kWarming: return "warming";
    case WorkerState::kIdle: return "idle";
    case WorkerState::kBusy: return "busy";
    case WorkerState::kDraining: return "draining";
  }
  return "idle";
}

inline constexpr WorkerState kWorkerStates[] = {WorkerState::kLoading, WorkerState::kWarming, WorkerState::kIdle,
                                                WorkerState::kBusy, WorkerState::kDraining};

// One denoising step: how long it took and whether it ran dense attention.
struct StepTime {
  double seconds = 0;
  bool dense = false;
};

// The stage times of a finished job (its v1::JobStats). Decode and encode overlap: the encoder
// runs on its own thread while the next frames decode.
struct JobStageSeconds {
  double text_encode = 0;
  double denoise = 0;
  double decode = 0;  // VAE decode and frames into the encoder's queue, without waiting for room in it
  double encode = 0;  // the encoder thread's busy time: H.264 encoding and muxing
};

// When a finished job's video reached the stream (its v1::JobStats).
struct JobStreamSeconds {
  double first_fragment = 0;               // the job's start on the worker -> its first media fragment
  double last_step_to_first_fragment = 0;  // the end of the last denoising step -> that fragment
  double last_step_to_last_byte = 0;       // the end of the last denoising step -> the last byte
};

// One job as it ended on this worker.
struct JobRecord {
  // OK for JobDone; the JobFailed code otherwise (an assignment refused before it ran included);
  // for a job the drain handed back, the code its interrupted run ended with (CANCELLED, or OK);
  // UNAVAILABLE for one handed back because a rank of its device group went away.
  absl::StatusCode code = absl::StatusCode::kOk;
  std::optional<JobStageSeconds> stages;   // set for a job that finished (code OK)
  std::optional<JobStreamSeconds> stream;  // likewise
  // Set when the pipeline finished generating (its GenerationReport is known): the tile density of
  // the radial mask, 1 when the job ran dense.
  std::optional<double> mask_density;
  // Every denoising step, in order, with its attention (step_timing.h); set with mask_density.
  // Empty when the pipeline did not finish (a failed or cancelled job): the first step's start
  // comes from the report, and a partial list would bias the histograms towards early steps.
  std::vector<StepTime> steps;
};

class WorkerObserver {
 public:
  virtual ~WorkerObserver() = default;
  virtual void StateChanged(WorkerState state) = 0;
  // Called before the job's outcome is sent to the scheduler.
  virtual void JobEnded(const JobRecord& job) = 0;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_OBSERVER_H_
