// Every job the scheduler knows, by id: the stored row plus what only lives in memory (the bytes of
// a running attempt, watchers, the worker running it). Also the idempotency-key index and the
// retention policy (count, age, bytes). Not thread-safe: owned by the Scheduler, used under its lock.
#ifndef RADIAL_SERVER_SCHEDULER_JOB_TABLE_H_
#define RADIAL_SERVER_SCHEDULER_JOB_TABLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/mp4_stream_check.h"
#include "scheduler/worker_link.h"
#include "store/job_store.h"

namespace radial::server {

struct JobRecord {
  StoredJob stored;          // what is (or is being) written to the store; stored.job is the client's view
  bool durable = false;      // Submit's first write has completed; until then the job is invisible
  // The running attempt's bytes (shared so a finished video can be written outside the lock while
  // watchers still read it). Empty for queued jobs and after the video is in the store.
  std::shared_ptr<std::string> video = std::make_shared<std::string>();
  std::unique_ptr<Mp4StreamCheck> check = std::make_unique<Mp4StreamCheck>();
  bool first_chunk_seen = false;  // for the time-to-first-chunk metric (the first attempt's bytes)
  bool finishing = false;    // the worker is done; the video is being written to the store
  uint64_t progress_updates = 0;
  std::string restart_reason;
  WorkerLink* worker = nullptr;  // while running
  bool cancel_requested = false;
  std::optional<uint64_t> queue_tag;  // its fair-queuing tag once queued (kept when it is requeued)
  int64_t queued_since_ms = 0;   // wall clock: start of the current wait in the queue (queue deadline)
  int watchers = 0;              // open Watch/Generate streams: retention does not evict these
  std::vector<std::weak_ptr<Waiter>> waiters;

  const v1::Job& job() const { return stored.job; }
  v1::Job& job() { return stored.job; }
  const std::string& id() const { return stored.job.id(); }
  bool ended() const;
  // Bytes a watcher can read now: the stored video's size, or the running attempt's bytes.
  uint64_t bytes() const;
};

struct RetentionPolicy {
  size_t max_jobs = 10000;            // ended jobs kept
  int64_t max_age_ms = 7 * 24 * 3600 * 1000LL;  // ended jobs older than this (since they ended) go
  uint64_t max_bytes = uint64_t{50} << 30;      // stored video bytes kept
};

class JobTable {
 public:
  JobRecord* Find(const std::string& job_id);
  // A durable job (clients never see a job whose Submit has not returned).
  JobRecord* FindVisible(const std::string& job_id);
  JobRecord& Insert(JobRecord record);
  void Erase(const std::string& job_id);
  // The job id holding a tenant's idempotency key, if any (keys are per tenant).
  const std::string* FindRequestId(const std::string& tenant, const std::string& request_id) const;
  // Records that a job ended (or was loaded ended): it becomes a candidate for retention.
  void MarkEnded(const JobRecord& record);

  // Ended jobs that retention removes now, oldest first: past max_jobs, past max_age_ms, or past
  // max_bytes of stored video. Jobs with watchers are skipped (they go once unwatched).
  std::vector<std::string> Expired(const RetentionPolicy& policy, int64_t now_ms) const;

  // Jobs newest first (highest sequence first) with sequence < before (0: no bound).
  template <typename Visit>
  void ForEachNewestFirst(uint64_t before, Visit&& visit) const {
    auto it = before == 0 ? by_sequence_.rbegin() : std::make_reverse_iterator(by_sequence_.lower_bound(before));
    for (; it != by_sequence_.rend(); ++it) {
      if (!visit(jobs_.at(it->second))) return;
    }
  }

  size_t size() const { return jobs_.size(); }
  size_t ended() const { return ended_.size(); }
  uint64_t stored_bytes() const { return stored_bytes_; }

 private:
  std::map<std::string, JobRecord> jobs_;
  std::map<uint64_t, std::string> by_sequence_;
  std::map<std::pair<std::string, std::string>, std::string> by_request_id_;  // (tenant, key) -> id
  // Ended jobs by (finished time, sequence): retention's order.
  std::map<std::pair<int64_t, uint64_t>, std::string> ended_;
  uint64_t stored_bytes_ = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_JOB_TABLE_H_
