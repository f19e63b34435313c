// The queue of jobs waiting for a worker: highest priority first, then submission order. Bounded.
// Not thread-safe: owned by the Scheduler, used under its lock.
#ifndef RADIAL_SERVER_JOB_QUEUE_H_
#define RADIAL_SERVER_JOB_QUEUE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace radial::server {

class JobQueue {
 public:
  explicit JobQueue(size_t capacity) : capacity_(capacity) {}

  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }
  bool full() const { return order_.size() >= capacity_; }

  // Adds a job; false when the queue is full or the id is queued already. `sequence` orders equal
  // priorities (lower first): a requeued job keeps its original sequence and so its place.
  // over_capacity admits a job into a full queue: for jobs already accepted once (requeued after a
  // lost worker, reloaded from the store), which must never be dropped.
  bool Push(const std::string& job_id, int32_t priority, uint64_t sequence, bool over_capacity = false);
  // Removes a queued job; false when it is not queued.
  bool Remove(const std::string& job_id);
  // Jobs ahead of job_id, or nullopt when it is not queued.
  std::optional<size_t> Position(const std::string& job_id) const;
  // The first job (in queue order) for which `eligible` holds, removed from the queue.
  std::optional<std::string> PopFirst(const std::function<bool(const std::string&)>& eligible);
  // Every queued job, in queue order.
  std::vector<std::string> InOrder() const;
  // Queued jobs per priority, for metrics.
  std::unordered_map<int32_t, size_t> CountByPriority() const;

 private:
  struct Entry {
    int32_t priority;
    uint64_t sequence;
    std::string job_id;
    bool operator<(const Entry& other) const {
      if (priority != other.priority) return priority > other.priority;
      return sequence < other.sequence;
    }
  };
  size_t capacity_;
  std::set<Entry> order_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_JOB_QUEUE_H_
