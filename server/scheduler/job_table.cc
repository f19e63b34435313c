#include "scheduler/job_table.h"

namespace radial::server {

bool JobRecord::ended() const {
  const v1::JobState state = stored.job.state();
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

uint64_t JobRecord::bytes() const { return stored.video.empty() ? video->size() : stored.video_bytes; }

JobRecord* JobTable::Find(const std::string& job_id) {
  const auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

JobRecord* JobTable::FindVisible(const std::string& job_id) {
  JobRecord* record = Find(job_id);
  return record != nullptr && record->durable ? record : nullptr;
}

JobRecord& JobTable::Insert(JobRecord record) {
  const std::string id = record.id();
  by_sequence_[record.stored.sequence] = id;
  if (!record.job().request().request_id().empty()) by_request_id_[record.job().request().request_id()] = id;
  JobRecord& inserted = jobs_.emplace(id, std::move(record)).first->second;
  if (inserted.ended()) MarkEnded(inserted);
  return inserted;
}

void JobTable::Erase(const std::string& job_id) {
  const auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  const JobRecord& record = it->second;
  by_sequence_.erase(record.stored.sequence);
  const std::string& request_id = record.job().request().request_id();
  if (!request_id.empty()) {
    const auto key = by_request_id_.find(request_id);
    if (key != by_request_id_.end() && key->second == job_id) by_request_id_.erase(key);
  }
  if (ended_.erase({record.job().finished_unix_ms(), record.stored.sequence}) != 0) {
    stored_bytes_ -= record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
  jobs_.erase(it);
}

const std::string* JobTable::FindRequestId(const std::string& request_id) const {
  const auto it = by_request_id_.find(request_id);
  return it == by_request_id_.end() ? nullptr : &it->second;
}

void JobTable::MarkEnded(const JobRecord& record) {
  if (ended_.emplace(std::pair{record.job().finished_unix_ms(), record.stored.sequence}, record.id()).second) {
    stored_bytes_ += record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
}

std::vector<std::string> JobTable::Expired(const RetentionPolicy& policy, int64_t now_ms) const {
  std::vector<std::string> expired;
  size_t kept = ended_.size();
  uint64_t bytes = stored_bytes_;
  for (const auto& [key, id] : ended_) {
    const bool too_many = kept > policy.max_jobs;
    const bool too_old = now_ms - key.first > policy.max_age_ms;
    const bool too_big = bytes > policy.max_bytes;
    if (!too_many && !too_old && !too_big) break;  // oldest first: the rest are newer and fewer
    const JobRecord& record = jobs_.at(id);
    if (record.watchers > 0) continue;
    expired.push_back(id);
    --kept;
    bytes -= record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
  return expired;
}

}  // namespace radial::server
