#include "metrics/scheduler_metrics.h"

#include "absl/strings/match.h"
#include "radial/common/metrics.h"

namespace radial::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

}  // namespace

SchedulerMetrics::SchedulerMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)),
      submitted_(BuildCounter()
                     .Name("radial_jobs_submitted_total")
                     .Help("Jobs accepted (written to the store) by model")
                     .Register(*registry_)),
      ended_(BuildCounter()
                 .Name("radial_jobs_ended_total")
                 .Help("Jobs that ended, by model and outcome code (OK, CANCELLED, DEADLINE_EXCEEDED, INTERNAL, ...)")
                 .Register(*registry_)),
      rejected_(BuildCounter()
                    .Name("radial_requests_rejected_total")
                    .Help("Submit/Generate calls refused, by reason (invalid, quota, queue_full, unauthenticated, "
                          "unavailable, other)")
                    .Register(*registry_)),
      requeued_(BuildCounter()
                    .Name("radial_job_requeues_total")
                    .Help("Jobs queued again, by reason (worker_lost, hand_back, scheduler_restart)")
                    .Register(*registry_)),
      worker_losses_(BuildCounter()
                         .Name("radial_worker_losses_total")
                         .Help("Workers whose stream ended or that stopped heartbeating")
                         .Register(*registry_)
                         .Add({})),
      bytes_streamed_(BuildCounter()
                          .Name("radial_stream_bytes_total")
                          .Help("Video bytes sent to watchers (Generate and Watch streams)")
                          .Register(*registry_)
                          .Add({})),
      store_errors_(BuildCounter()
                        .Name("radial_store_errors_total")
                        .Help("Failed writes to the job store")
                        .Register(*registry_)),
      queue_wait_(BuildHistogram()
                      .Name("radial_job_queue_wait_seconds")
                      .Help("Time a job waited in the queue before a worker took it (per attempt)")
                      .Register(*registry_)),
      first_chunk_(BuildHistogram()
                       .Name("radial_job_time_to_first_chunk_seconds")
                       .Help("Time from Submit to the first video bytes reaching the scheduler")
                       .Register(*registry_)),
      duration_(BuildHistogram()
                    .Name("radial_job_duration_seconds")
                    .Help("Time from Submit to the job's end, by model and outcome code")
                    .Register(*registry_)),
      store_write_(BuildHistogram()
                       .Name("radial_store_write_seconds")
                       .Help("Time to write one call's changes to the job store (SQLite commit)")
                       .Register(*registry_)
                       .Add({}, common::IoBuckets())),
      queue_depth_(BuildGauge()
                       .Name("radial_queue_depth")
                       .Help("Jobs waiting for a worker, by priority band (high > 0, normal = 0, low < 0)")
                       .Register(*registry_)),
      running_(BuildGauge().Name("radial_jobs_running").Help("Jobs on workers now").Register(*registry_).Add({})),
      watchers_(BuildGauge()
                    .Name("radial_watchers")
                    .Help("Open Generate and Watch streams")
                    .Register(*registry_)
                    .Add({})),
      workers_(BuildGauge()
                   .Name("radial_workers")
                   .Help("Connected workers by model and state (idle, busy, draining)")
                   .Register(*registry_)),
      retained_jobs_(BuildGauge()
                         .Name("radial_retained_jobs")
                         .Help("Ended jobs kept for GetJob/Watch/ListJobs")
                         .Register(*registry_)
                         .Add({})),
      retained_bytes_(BuildGauge()
                          .Name("radial_retained_video_bytes")
                          .Help("Bytes of finished videos kept in the store")
                          .Register(*registry_)
                          .Add({})) {
  // Series that should exist (at 0) before anything happens, so rate() and alerts have data.
  for (const char* reason : {"invalid", "quota", "queue_full", "unauthenticated", "unavailable", "other"}) {
    rejected_.Add({{"reason", reason}});
  }
  for (const char* reason : {"worker_lost", "hand_back", "scheduler_restart"}) requeued_.Add({{"reason", reason}});
  store_errors_.Add({});
  for (const char* band : {"high", "normal", "low"}) queue_depth_.Add({{"priority_band", band}});
}

void SchedulerMetrics::JobSubmitted(const std::string& model) {
  submitted_.Add({{"model", model}}).Increment();
  for (const char* code : {"OK", "CANCELLED", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE"}) {
    ended_.Add({{"model", model}, {"code", code}});  // exist at 0 from the first job of a model on
  }
}

void SchedulerMetrics::JobStarted(const std::string& model, double queue_seconds) {
  queue_wait_.Add({{"model", model}}, common::JobLatencyBuckets()).Observe(queue_seconds);
}

void SchedulerMetrics::FirstChunk(const std::string& model, double seconds_since_submit) {
  first_chunk_.Add({{"model", model}}, common::JobLatencyBuckets()).Observe(seconds_since_submit);
}

void SchedulerMetrics::JobEnded(const std::string& model, absl::StatusCode code, double seconds_since_submit) {
  ended_.Add({{"model", model}, {"code", common::StatusCodeLabel(code)}}).Increment();
  duration_.Add({{"model", model}, {"code", common::StatusCodeLabel(code)}}, common::JobLatencyBuckets())
      .Observe(seconds_since_submit);
}

void SchedulerMetrics::JobRequeued(const char* reason) { requeued_.Add({{"reason", reason}}).Increment(); }

void SchedulerMetrics::WorkerLost() { worker_losses_.Increment(); }

void SchedulerMetrics::StoreWrite(double seconds, bool ok) {
  store_write_.Observe(seconds);
  if (!ok) store_errors_.Add({}).Increment();
}

void SchedulerMetrics::BytesStreamed(uint64_t bytes) { bytes_streamed_.Increment(static_cast<double>(bytes)); }

void SchedulerMetrics::Rejected(const absl::Status& status) {
  const char* reason = "other";
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound: reason = "invalid"; break;
    case absl::StatusCode::kResourceExhausted:
      reason = absl::StartsWith(status.message(), "quota") ? "quota" : "queue_full";
      break;
    case absl::StatusCode::kUnauthenticated: reason = "unauthenticated"; break;
    case absl::StatusCode::kUnavailable: reason = "unavailable"; break;
    default: break;
  }
  rejected_.Add({{"reason", reason}}).Increment();
}

void SchedulerMetrics::Update(const SchedulerSnapshot& snapshot) {
  for (const auto& [band, count] : snapshot.queued_by_band) {
    queue_depth_.Add({{"priority_band", band}}).Set(static_cast<double>(count));
  }
  running_.Set(static_cast<double>(snapshot.running));
  watchers_.Set(static_cast<double>(snapshot.watchers));
  // Every model seen so far keeps its three series, so a state no worker is in reads 0, not its
  // last value, and a model whose workers all left reads 0 everywhere.
  for (const auto& [key, count] : snapshot.workers) known_models_.insert(key.first);
  for (const std::string& model : known_models_) {
    for (const char* state : {"idle", "busy", "draining"}) {
      const auto it = snapshot.workers.find({model, state});
      workers_.Add({{"model", model}, {"state", state}})
          .Set(it == snapshot.workers.end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  retained_jobs_.Set(static_cast<double>(snapshot.retained_jobs));
  retained_bytes_.Set(static_cast<double>(snapshot.retained_bytes));
}

}  // namespace radial::server
