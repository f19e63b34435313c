// The scheduler's state: jobs, the queue, connected workers. It validates and queues requests,
// assigns queued jobs to workers that serve their model, records what workers report, and lets any
// number of watchers follow a job. The gRPC services (and tests) drive it; it knows nothing of gRPC.
//
// Threading: one mutex guards everything. Nothing under it blocks: WorkerLink::Send only enqueues,
// and watchers are woken after the lock is released.
//
// Watching is pull-based so that a slow reader costs no buffer: a watcher keeps a WatchCursor and
// asks NextEvent for what it has not seen yet. Chunks are served from the job's stored video;
// progress is coalesced to the latest. When nothing is new, the watcher's Waiter is woken on the
// next change.
#ifndef RADIAL_SERVER_SCHEDULER_H_
#define RADIAL_SERVER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "job_queue.h"
#include "job_store.h"
#include "radial/v1/video_service.pb.h"
#include "radial/v1/worker_service.pb.h"

namespace radial::server {

// A connected worker as the scheduler sees it. Implemented by the WorkerService stream (and by fakes
// in tests). Send must not block and must not call back into the Scheduler.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  virtual void Send(const v1::SchedulerMessage& message) = 0;
};

// Woken (once per registration, from any thread, without the scheduler's lock) when a job it waits
// on changes. Registered as a weak reference: a watcher that went away is simply skipped.
class Waiter {
 public:
  virtual ~Waiter() = default;
  virtual void Wake() = 0;
};

struct SchedulerOptions {
  size_t queue_capacity = 256;       // queued jobs; a full queue rejects with RESOURCE_EXHAUSTED
  size_t max_finished_jobs = 256;    // ended jobs kept (with their video) for GetJob and Watch
  uint64_t max_video_bytes = uint64_t{1} << 30;  // per job; a worker sending more fails the job
  uint32_t max_attempts = 2;         // a job whose worker is lost runs again once, then fails
  size_t max_chunk_bytes = 1 << 20;  // chunk size served to watchers
  std::string default_model;         // empty: the first model a worker announced
};

// What a watcher has seen of a job.
struct WatchCursor {
  bool accepted_sent = false;
  uint64_t progress_seen = 0;  // progress updates seen (coalesced)
  uint64_t offset = 0;         // next video byte to send
  uint32_t restarts_seen = 0;
  bool ended = false;          // the terminal event was sent
};

enum class WatchPoll { kEvent, kWait, kEnd };

class Scheduler {
 public:
  Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store);

  // --- clients ---
  // Validates, resolves defaults and queues. INVALID_ARGUMENT / NOT_FOUND for bad requests,
  // UNAVAILABLE when no worker has announced any model yet, RESOURCE_EXHAUSTED when the queue is full.
  absl::StatusOr<v1::Job> Submit(const v1::GenerateRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  // A queued job ends at once (CANCELLED); a running one is asked to stop and ends when its worker
  // confirms (within one denoising step) or disappears. Cancelling an ended job returns it unchanged.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  v1::ListModelsResponse ListModels();

  // Starts watching: a cursor at `from_byte_offset`. NOT_FOUND for an unknown job,
  // INVALID_ARGUMENT for an offset past the end of an ended job's video.
  absl::StatusOr<WatchCursor> StartWatch(const std::string& job_id, uint64_t from_byte_offset);
  // The next event for `cursor`: kEvent fills `event` and advances the cursor; kWait means nothing
  // is new and `waiter` will be woken on the next change; kEnd means the terminal event was sent.
  WatchPoll NextEvent(const std::string& job_id, WatchCursor& cursor, v1::JobEvent& event,
                      const std::weak_ptr<Waiter>& waiter);

  // --- workers ---
  // Registers a worker (its first message). INVALID_ARGUMENT for a malformed hello.
  absl::Status WorkerHello(WorkerLink* link, const v1::Hello& hello);
  // Any later message of a registered worker.
  void WorkerMessage(WorkerLink* link, const v1::WorkerMessage& message);
  // The worker's stream ended: its running jobs are requeued (or fail after max_attempts).
  void WorkerGone(WorkerLink* link, const std::string& reason);

  size_t queued_jobs();
  size_t connected_workers();

 private:
  struct JobRecord {
    v1::Job job;
    uint64_t sequence = 0;
    std::string video;            // bytes of the current attempt
    uint64_t progress_updates = 0;
    uint32_t restarts = 0;
    std::string restart_reason;
    WorkerLink* worker = nullptr;  // while running
    bool cancel_requested = false;
    std::vector<std::weak_ptr<Waiter>> waiters;
  };
  struct WorkerRecord {
    std::string id;
    std::set<std::string> models;
    uint32_t capacity = 1;
    std::set<std::string> running;
  };
  using Wakeups = std::vector<std::weak_ptr<Waiter>>;

  // All below run under mutex_.
  JobRecord* FindJob(const std::string& job_id);
  // FindJob for a client's job id: INVALID_ARGUMENT for an empty one, NOT_FOUND for an unknown one.
  absl::StatusOr<JobRecord*> Lookup(const std::string& job_id);
  v1::Job View(const JobRecord& record) const;
  void Dispatch();
  // Puts the job back in the queue, QUEUED with no progress, at its old place (its sequence).
  void Requeue(JobRecord& record);
  void Finish(JobRecord& record, v1::JobState state, int code, const std::string& message, Wakeups& wakeups);
  void Changed(JobRecord& record, Wakeups& wakeups);
  void Persist(const JobRecord& record);
  void ForgetOldJobs();
  static void WakeAll(Wakeups& wakeups);

  const SchedulerOptions options_;
  std::unique_ptr<JobStore> store_;
  std::mutex mutex_;
  JobQueue queue_;
  std::map<std::string, JobRecord> jobs_;
  std::deque<std::string> finished_order_;  // ended jobs, oldest first
  std::map<WorkerLink*, WorkerRecord> workers_;
  std::map<std::string, v1::ModelInfo> models_;  // every model ever announced, by name
  std::string default_model_;
  uint64_t next_sequence_ = 1;
  std::mt19937_64 random_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_H_
