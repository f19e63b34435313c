#include "scheduler/job_queue.h"

#include <algorithm>
#include <iterator>

namespace radial::server {

bool JobQueue::Push(const std::string& job_id, int32_t priority, uint64_t sequence, bool over_capacity,
                    const std::string& tenant, std::optional<uint64_t> tag) {
  if ((full() && !over_capacity) || entries_.count(job_id) != 0) return false;
  // Start-time fair queuing with unit-cost jobs: a job starts at max(the priority's virtual time,
  // the tenant's previous job's finish); the tenant's finish moves one past it.
  uint64_t& finish = tenant_tag_[{tenant, priority}];
  if (!tag) tag = std::max(virtual_time_[priority], finish);
  finish = std::max(finish, *tag + 1);
  Entry entry{priority, *tag, sequence, job_id, tenant};
  order_.insert(entry);
  entries_.emplace(job_id, std::move(entry));
  ++tenant_count_[tenant];
  return true;
}

bool JobQueue::Remove(const std::string& job_id) {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return false;
  if (--tenant_count_[it->second.tenant] == 0) tenant_count_.erase(it->second.tenant);
  order_.erase(it->second);
  entries_.erase(it);
  return true;
}

bool JobQueue::Take(const std::string& job_id) {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return false;
  uint64_t& now = virtual_time_[it->second.priority];
  now = std::max(now, it->second.tag);
  return Remove(job_id);
}

std::optional<size_t> JobQueue::Position(const std::string& job_id) const {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return std::nullopt;
  // Linear in the jobs ahead; the queue is bounded, and positions are read per request.
  return static_cast<size_t>(std::distance(order_.begin(), order_.find(it->second)));
}

std::optional<uint64_t> JobQueue::tag_of(const std::string& job_id) const {
  const auto it = entries_.find(job_id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.tag;
}

std::optional<std::string> JobQueue::PopFirst(const std::function<bool(const std::string&)>& eligible) {
  for (const Entry& entry : order_) {
    if (!eligible(entry.job_id)) continue;
    std::string job_id = entry.job_id;
    Take(job_id);
    return job_id;
  }
  return std::nullopt;
}

std::unordered_map<int32_t, size_t> JobQueue::CountByPriority() const {
  std::unordered_map<int32_t, size_t> counts;
  for (const Entry& entry : order_) ++counts[entry.priority];
  return counts;
}

size_t JobQueue::CountOfTenant(const std::string& tenant) const {
  const auto it = tenant_count_.find(tenant);
  return it == tenant_count_.end() ? 0 : it->second;
}

std::vector<std::string> JobQueue::InOrder() const {
  std::vector<std::string> ids;
  ids.reserve(order_.size());
  for (const Entry& entry : order_) ids.push_back(entry.job_id);
  return ids;
}

}  // namespace radial::server
