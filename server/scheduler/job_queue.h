// The queue of jobs waiting for a worker: highest priority first; within a priority, tenants take
// turns (start-time fair queuing: each job gets a virtual start tag, max(the priority's virtual
// time, the end of the tenant's previous job), and the virtual time is the tag of the job last
// dispatched, so a tenant with 1,000 queued jobs does not hold another tenant's single job behind
// all of them); then submission order. Bounded.
// Not thread-safe: owned by the Scheduler, used under its lock.
#ifndef RADIAL_SERVER_SCHEDULER_JOB_QUEUE_H_
#define RADIAL_SERVER_SCHEDULER_JOB_QUEUE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace radial::server {

class JobQueue {
 public:
  explicit JobQueue(size_t capacity) : capacity_(capacity) {}

  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }
  bool full() const { return order_.size() >= capacity_; }

  // Adds a job; false when the queue is full or the id is queued already. `sequence` orders equal
  // priorities and tags (lower first). A job that was queued before passes its old `tag` (from
  // tag_of before it was taken) and so keeps its place. over_capacity admits a job into a full
  // queue: for jobs already accepted once (requeued after a lost worker, reloaded from the store),
  // which must never be dropped.
  bool Push(const std::string& job_id, int32_t priority, uint64_t sequence, bool over_capacity = false,
            const std::string& tenant = "", std::optional<uint64_t> tag = std::nullopt);
  // Removes a queued job (cancelled, expired, deleted); false when it is not queued.
  bool Remove(const std::string& job_id);
  // Removes a job that is being dispatched: its tag becomes the priority's virtual time.
  bool Take(const std::string& job_id);
  // Jobs ahead of job_id, or nullopt when it is not queued.
  std::optional<size_t> Position(const std::string& job_id) const;
  std::optional<uint64_t> tag_of(const std::string& job_id) const;
  // The first job (in queue order) for which `eligible` holds, taken from the queue.
  std::optional<std::string> PopFirst(const std::function<bool(const std::string&)>& eligible);
  // Every queued job, in queue order.
  std::vector<std::string> InOrder() const;
  // Calls visit(job_id) in queue order until it returns false. visit must not change the queue.
  template <typename Visit>
  void ForEachInOrder(Visit&& visit) const {
    for (const Entry& entry : order_) {
      if (!visit(entry.job_id)) return;
    }
  }
  // Queued jobs per priority, for metrics.
  std::unordered_map<int32_t, size_t> CountByPriority() const;
  // Queued jobs of a tenant (quotas).
  size_t CountOfTenant(const std::string& tenant) const;

 private:
  struct Entry {
    int32_t priority;
    uint64_t tag;
    uint64_t sequence;
    std::string job_id;
    std::string tenant;
    bool operator<(const Entry& other) const {
      if (priority != other.priority) return priority > other.priority;
      if (tag != other.tag) return tag < other.tag;
      return sequence < other.sequence;
    }
  };
  size_t capacity_;
  std::set<Entry> order_;
  std::unordered_map<std::string, Entry> entries_;
  std::map<int32_t, uint64_t> virtual_time_;                          // per priority
  std::map<std::pair<std::string, int32_t>, uint64_t> tenant_tag_;   // end of the tenant's last job, per priority
  std::unordered_map<std::string, size_t> tenant_count_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_JOB_QUEUE_H_
