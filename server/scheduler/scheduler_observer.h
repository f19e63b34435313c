// What the scheduler tells its observer (the Prometheus metrics in server/metrics/, or nothing):
// events as they happen, called under the scheduler's lock, so an implementation must only bump
// counters (no I/O, no call back into the Scheduler). Levels (queue depth, running jobs, workers
// by state) are read with Scheduler::Snapshot instead.
#ifndef RADIAL_SERVER_SCHEDULER_SCHEDULER_OBSERVER_H_
#define RADIAL_SERVER_SCHEDULER_SCHEDULER_OBSERVER_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace radial::server {

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void JobSubmitted(const std::string& model) = 0;
  // A job started on a worker after waiting this long in the queue (this attempt's wait).
  virtual void JobStarted(const std::string& model, double queue_seconds) = 0;
  // The first video bytes of a job reached the scheduler, this long after it was submitted.
  virtual void FirstChunk(const std::string& model, double seconds_since_submit) = 0;
  virtual void JobEnded(const std::string& model, absl::StatusCode code, double seconds_since_submit) = 0;
  // reason: worker_lost, hand_back, scheduler_restart.
  virtual void JobRequeued(const char* reason) = 0;
  virtual void WorkerLost() = 0;
  // A store write (one call's rows) took this long; ok false when it failed.
  virtual void StoreWrite(double seconds, bool ok) = 0;
  virtual void BytesStreamed(uint64_t bytes) = 0;
};

// Levels at one moment, for gauges.
struct SchedulerSnapshot {
  std::map<std::string, size_t> queued_by_band;  // "high" (priority > 0), "normal" (0), "low" (< 0)
  size_t running = 0;
  size_t watchers = 0;
  std::map<std::pair<std::string, std::string>, size_t> workers;  // (model, idle|busy|draining) -> count
  size_t retained_jobs = 0;
  uint64_t retained_bytes = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_SCHEDULER_OBSERVER_H_
