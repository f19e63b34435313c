// The scheduler's Prometheus metrics (docs/metrics.md lists every family): the SchedulerObserver
// that counts events, gauges refreshed from Scheduler::Snapshot by the server's ticker, and the
// rejected-request counter the gRPC services bump.
#ifndef RADIAL_SERVER_METRICS_SCHEDULER_METRICS_H_
#define RADIAL_SERVER_METRICS_SCHEDULER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "scheduler/scheduler_observer.h"

namespace radial::server {

class SchedulerMetrics : public SchedulerObserver {
 public:
  explicit SchedulerMetrics(std::shared_ptr<prometheus::Registry> registry);
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  void JobSubmitted(const std::string& model) override;
  void JobStarted(const std::string& model, double queue_seconds) override;
  void FirstChunk(const std::string& model, double seconds_since_submit) override;
  void JobEnded(const std::string& model, absl::StatusCode code, double seconds_since_submit) override;
  void JobRequeued(const char* reason) override;
  void WorkerLost() override;
  void StoreWrite(double seconds, bool ok) override;
  void BytesStreamed(uint64_t bytes) override;

  // A Submit or Generate the scheduler refused, by the status it got.
  void Rejected(const absl::Status& status);
  void Update(const SchedulerSnapshot& snapshot);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& submitted_;
  prometheus::Family<prometheus::Counter>& ended_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& requeued_;
  prometheus::Counter& worker_losses_;
  prometheus::Counter& bytes_streamed_;
  prometheus::Family<prometheus::Counter>& store_errors_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& first_chunk_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Histogram& store_write_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Gauge& running_;
  prometheus::Gauge& watchers_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Gauge& retained_jobs_;
  prometheus::Gauge& retained_bytes_;
  std::set<std::string> known_models_;  // touched only by Update (the ticker thread)
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_METRICS_SCHEDULER_METRICS_H_
