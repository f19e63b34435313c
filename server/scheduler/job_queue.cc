#include "scheduler/job_queue.h"

#include <iterator>

namespace radial::server {

bool JobQueue::Push(const std::string& job_id, int32_t priority, uint64_t sequence, bool over_capacity) {
  if ((full() && !over_capacity) || entries_.count(job_id) != 0) return false;
  Entry entry{priority, sequence, job_id};
  order_.insert(entry);
  entries_.emplace(job_id, std::move(entry));
  return true;
}

bool JobQueue::Remove(const std::string& job_id) {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return false;
  order_.erase(it->second);
  entries_.erase(it);
  return true;
}

std::optional<size_t> JobQueue::Position(const std::string& job_id) const {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return std::nullopt;
  // Linear in the jobs ahead; the queue is bounded (hundreds), and positions are read per request.
  return static_cast<size_t>(std::distance(order_.begin(), order_.find(it->second)));
}

std::optional<std::string> JobQueue::PopFirst(const std::function<bool(const std::string&)>& eligible) {
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    if (!eligible(it->job_id)) continue;
    std::string job_id = it->job_id;
    order_.erase(it);
    entries_.erase(job_id);
    return job_id;
  }
  return std::nullopt;
}

std::unordered_map<int32_t, size_t> JobQueue::CountByPriority() const {
  std::unordered_map<int32_t, size_t> counts;
  for (const Entry& entry : order_) ++counts[entry.priority];
  return counts;
}

std::vector<std::string> JobQueue::InOrder() const {
  std::vector<std::string> ids;
  ids.reserve(order_.size());
  for (const Entry& entry : order_) ids.push_back(entry.job_id);
  return ids;
}

}  // namespace radial::server
