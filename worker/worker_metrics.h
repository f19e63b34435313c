// The worker's Prometheus metrics (docs/metrics.md's Worker table lists every family): the
// WorkerObserver that WorkerClient reports to, and what radial-worker's main sets around it (the
// load time, the GPU memory every few seconds), and the readiness that /healthz answers with
// (metrics_server.h serves both). One model per worker, so every series but radial_build_info
// carries the bundle's model name.
#ifndef RADIAL_WORKER_WORKER_METRICS_H_
#define RADIAL_WORKER_WORKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "gpu_memory.h"
#include "worker_observer.h"

namespace radial::worker {

class WorkerMetrics : public WorkerObserver {
 public:
  // Every family's series exist from here on (but the mask density's, until the first job): the
  // state reads loading, counters and load/warm-up times 0, radial_build_info{component="worker"}
  // 1. `read_gpu_memory` is called by RefreshGpuMemory and after each job (empty: the GPU gauges
  // stay 0); it must be as quick and thread-safe as an observer call.
  WorkerMetrics(std::shared_ptr<prometheus::Registry> registry, const std::string& model,
                std::function<GpuMemory()> read_gpu_memory);
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // radial_worker_state: `state` 1, the four others 0. The new state is set before the old one is
  // cleared, so a scrape in between sees both at 1 (never none).
  void StateChanged(WorkerState state) override;
  // jobs_total by code; stage and first-fragment times (finished jobs), step times by attention and
  // the mask density (generated jobs); then the GPU memory.
  void JobEnded(const JobRecord& job) override;

  void ModelLoaded(double seconds);
  // radial_worker_warmup_seconds: how long the warm-up before the announcement took.
  void WarmedUp(double seconds);
  void RefreshGpuMemory();

  WorkerState state() const { return state_now_.load(); }
  // Readiness, for /healthz: OK when idle (connected to the scheduler or connecting to it) or busy;
  // UNAVAILABLE naming the state while loading, warming or draining.
  absl::Status Ready() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::string model_;
  std::function<GpuMemory()> read_gpu_memory_;
  prometheus::Family<prometheus::Gauge>& state_;
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Family<prometheus::Histogram>& stage_seconds_;
  prometheus::Family<prometheus::Histogram>& step_seconds_;
  prometheus::Histogram& first_fragment_seconds_;
  prometheus::Histogram& last_step_to_first_fragment_seconds_;
  prometheus::Family<prometheus::Gauge>& mask_density_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_;
  prometheus::Gauge& model_load_seconds_;
  prometheus::Gauge& warmup_seconds_;
  std::atomic<WorkerState> state_now_{WorkerState::kLoading};
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_METRICS_H_
