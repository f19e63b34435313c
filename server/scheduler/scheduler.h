// The scheduler's facade: one mutex over the job table, the worker registry, the queue and the watch
// cursors; dispatch is a pure policy (dispatch_policy.h) and validation a pure function
// (request_validator.h). The gRPC services (rpc/) and tests drive it; it knows nothing of gRPC.
//
// Durability: every change of a job is written to the JobStore. Nothing under the mutex does I/O:
// each call collects its store writes and wake-ups in an Effects value under the lock and performs
// them after releasing it. Store writes are applied in the order their changes were made (a ticket
// taken under the lock), so the store never goes back to an older state of a job. Submit returns
// only after the job's row is written; a finished video is written to the store (temp file, fsync,
// rename) before the job is reported SUCCEEDED.
//
// Watching is pull-based so that a slow reader costs no buffer: a watcher keeps a WatchCursor and
// asks NextEvent for what it has not seen yet. Chunks come from the running attempt's bytes or
// from the stored video file; progress is coalesced to the latest. When nothing is new, the
// watcher's Waiter is woken on the next change.
#ifndef RADIAL_SERVER_SCHEDULER_SCHEDULER_H_
#define RADIAL_SERVER_SCHEDULER_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"
#include "radial/v1/worker_service.pb.h"
#include "scheduler/job_events.h"
#include "scheduler/job_queue.h"
#include "scheduler/job_table.h"
#include "scheduler/request_validator.h"
#include "scheduler/scheduler_observer.h"
#include "scheduler/tenancy.h"
#include "scheduler/worker_link.h"
#include "scheduler/worker_registry.h"
#include "store/job_store.h"

namespace radial::server {

struct SchedulerOptions {
  size_t queue_capacity = 256;                   // queued jobs; a full queue rejects with RESOURCE_EXHAUSTED
  RetentionPolicy retention;                     // ended jobs kept (with their video) for GetJob/Watch/ListJobs
  uint64_t max_video_bytes = uint64_t{1} << 30;  // per job; a worker sending more fails the job
  uint32_t max_attempts = 2;                     // a job whose worker is lost runs again once, then fails
  size_t max_chunk_bytes = 1 << 20;              // chunk size served to watchers
  std::string default_model;                     // empty: the first model a worker announced
  RequestDefaults request_defaults;              // queue and run timeouts of requests that set none
  TenancyOptions tenancy;                        // per-tenant quotas
  int64_t worker_timeout_ms = 30000;             // a worker silent this long is gone
  int64_t model_ttl_ms = 300000;                 // a model with no worker is listed this long
  // Clocks, replaceable in tests: wall time (job times, deadlines, retention age; persisted) and a
  // monotonic clock (heartbeats, model TTL). Both in milliseconds.
  std::function<int64_t()> wall_ms;
  std::function<int64_t()> steady_ms;
  // Told of events (metrics); may be null. Not owned; must outlive the Scheduler.
  SchedulerObserver* observer = nullptr;
};

class Scheduler {
 public:
  // Loads the store: queued jobs queue again in their order, running ones are queued to run again
  // (their watchers will see Restarted), ended ones serve their stored video. Fails when the store
  // cannot be read.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerOptions options, std::unique_ptr<JobStore> store);
  ~Scheduler();

  // --- clients ---
  // Validates, resolves defaults, writes the job to the store and queues it. INVALID_ARGUMENT /
  // NOT_FOUND for bad requests, UNAVAILABLE when no model is served or the store cannot be written
  // (the job was then not accepted), RESOURCE_EXHAUSTED when the queue is full. A request_id seen
  // before returns that job.
  // The job belongs to caller.tenant. RESOURCE_EXHAUSTED naming the quota when the tenant is at
  // its max_queued or submits_per_minute.
  // watching: the caller follows the job from its first event (Generate): it counts as a watcher
  // from before the job can run, so no byte of a fast failure is dropped before the watch begins.
  // EndWatch must follow, as after StartWatch.
  absl::StatusOr<v1::Job> Submit(const v1::GenerateRequest& request, const Caller& caller = Caller::Unauthenticated(),
                                 bool watching = false);
  // Every call that names a job answers NOT_FOUND for a job of another tenant (unless an admin calls).
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id, const Caller& caller = Caller::Unauthenticated());
  // A queued job ends at once (CANCELLED); a running one is asked to stop and ends when its worker
  // confirms (within one denoising step) or disappears. FAILED_PRECONDITION for an ended job.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id, const Caller& caller = Caller::Unauthenticated());
  // Removes the job, its row and its video; a running job's worker is told to stop.
  absl::StatusOr<v1::Job> Delete(const std::string& job_id, const Caller& caller = Caller::Unauthenticated());
  // The caller's tenant's jobs (an admin's: every tenant's).
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request,
                                                const Caller& caller = Caller::Unauthenticated());
  v1::ListModelsResponse ListModels();

  // Starts watching: a cursor at `from_byte_offset` (see WatchRequest). NOT_FOUND for an unknown
  // job, OUT_OF_RANGE for an offset past the end of a finished job's video. Counts as a watcher
  // (retention keeps the job) until EndWatch.
  absl::StatusOr<WatchCursor> StartWatch(const std::string& job_id, uint64_t from_byte_offset, uint32_t attempt,
                                         const Caller& caller = Caller::Unauthenticated());
  // The next event for `cursor`. May read the stored video (outside the lock).
  WatchStep NextEvent(const std::string& job_id, WatchCursor& cursor, v1::JobEvent& event,
                      const std::weak_ptr<Waiter>& waiter);
  void EndWatch(const std::string& job_id);

  // --- workers ---
  // Registers a worker (its first message). INVALID_ARGUMENT for a malformed hello,
  // FAILED_PRECONDITION for a model announced with other limits than pinned.
  absl::Status WorkerHello(WorkerLink* link, const v1::Hello& hello);
  // Any later message of a registered worker, heartbeats included.
  void WorkerMessage(WorkerLink* link, const v1::WorkerMessage& message);
  // The worker's stream ended: its running jobs are requeued (or fail after max_attempts).
  void WorkerGone(WorkerLink* link, const std::string& reason);

  // --- time and shutdown ---
  // Periodic work (the server calls it a few times a second): workers past their heartbeat
  // timeout, queue and run deadlines, model TTL, retention by age.
  void Tick();
  // Stops accepting work: Submit answers UNAVAILABLE, every watcher's stream ends with UNAVAILABLE
  // ("the scheduler is restarting"), lost workers no longer requeue jobs (they stay RUNNING in the
  // store and run again after the restart).
  void BeginShutdown();

  size_t queued_jobs();
  size_t connected_workers();
  SchedulerSnapshot Snapshot();
  std::string DescribeStore() const { return store_->Describe(); }

 private:
  struct VideoWrite {
    std::string job_id;
    std::shared_ptr<std::string> bytes;
  };
  // Side effects collected under mutex_ and performed after it is released (Apply).
  struct Effects {
    uint64_t ticket = 0;  // order of the store writes below among all Effects; 0: none
    std::vector<StoredJob> puts;
    std::vector<std::string> deletes;         // job rows
    std::vector<std::string> video_deletes;   // stored video names
    std::vector<VideoWrite> video_writes;     // finished videos to write, then commit
    std::vector<std::weak_ptr<Waiter>> wakeups;
  };

  Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store);
  absl::Status Load();

  // All below with "Locked" or taking Effects& run under mutex_.
  absl::StatusOr<JobRecord*> Lookup(const std::string& job_id, const Caller& caller);
  absl::Status CheckQuota(const Caller& caller);
  v1::Job View(const JobRecord& record) const;
  void Dispatch(Effects& effects);
  void Requeue(JobRecord& record, Effects& effects);
  void Enqueue(JobRecord& record);  // into the queue at its fair place (its old one if it had one)
  void Finish(JobRecord& record, v1::JobState state, const absl::Status& status, Effects& effects);
  void Changed(JobRecord& record, Effects& effects);
  void Persist(JobRecord& record, Effects& effects);
  void Remove(JobRecord& record, Effects& effects);
  void StopOnWorker(JobRecord& record, const std::string& reason);
  void LoseWorker(WorkerLink* link, const std::string& reason, Effects& effects);
  void EndedByWorker(WorkerRecord& worker, const std::string& job_id, Effects& effects);
  void Retain(Effects& effects);
  // Last step under the lock of every call that changes jobs: retention, then the store-write ticket.
  // Record references must not be used after it (retention may remove records).
  void Seal(Effects& effects);
  void HandleChunk(JobRecord& record, WorkerRecord& worker, const v1::JobChunk& chunk, Effects& effects);
  void HandleDone(JobRecord& record, WorkerRecord& worker, const v1::JobDone& done, Effects& effects);

  // Without the lock: performs the effects; returns the first store write error.
  absl::Status Apply(Effects& effects);
  void CommitVideo(const VideoWrite& write, const absl::StatusOr<std::string>& name);

  const SchedulerOptions options_;
  std::unique_ptr<JobStore> store_;

  std::mutex mutex_;
  JobQueue queue_;
  JobTable jobs_;
  WorkerRegistry workers_;
  uint64_t next_sequence_ = 1;
  size_t pending_submits_ = 0;
  bool shutting_down_ = false;
  std::mt19937_64 seeds_;  // only for seeds a request leaves to the scheduler (ids come from the OS CSPRNG)
  uint64_t next_ticket_ = 1;
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
  };
  std::map<std::string, Bucket> submit_buckets_;  // per tenant: submits_per_minute

  // Orders store writes: Apply waits for its ticket.
  std::mutex store_mutex_;
  std::condition_variable store_turn_;
  uint64_t applied_ticket_ = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_SCHEDULER_H_
