#include "scheduler/job_table.h"

#include <iterator>

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
  if (!record.job().request().request_id().empty()) {
    by_request_id_[{record.job().tenant(), record.job().request().request_id()}] = id;
  }
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
    const auto key = by_request_id_.find({record.job().tenant(), request_id});
    if (key != by_request_id_.end() && key->second == job_id) by_request_id_.erase(key);
  }
  if (ended_.erase({record.job().finished_unix_ms(), record.stored.sequence}) != 0) {
    stored_bytes_ -= record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
  jobs_.erase(it);
}

const std::string* JobTable::FindRequestId(const std::string& tenant, const std::string& request_id) const {
  const auto it = by_request_id_.find({tenant, request_id});
  return it == by_request_id_.end() ? nullptr : &it->second;
}

void JobTable::MarkEnded(const JobRecord& record) {
  if (ended_.emplace(std::pair{record.job().finished_unix_ms(), record.stored.sequence}, record.id()).second) {
    stored_bytes_ += record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
}

std::vector<std::string> JobTable::Expired(const RetentionPolicy& policy, int64_t now_ms) const {
  std::vector<std::string> expired;
  // By count only the oldest (size - max_jobs) are candidates: a watched one among them is kept
  // rather than evicting a newer job in its place. Ages grow towards the front, so the walk stops at
  // the first job that no rule removes.
  const size_t excess = ended_.size() > policy.max_jobs ? ended_.size() - policy.max_jobs : 0;
  uint64_t bytes = stored_bytes_;
  size_t index = 0;
  for (auto it = ended_.begin(); it != ended_.end(); ++it, ++index) {
    const bool newest = std::next(it) == ended_.end();  // never removed for size: it just ended
    const bool too_many = index < excess;
    const bool too_old = now_ms - it->first.first > policy.max_age_ms;
    const bool too_big = bytes > policy.max_bytes && !newest;
    if (!too_many && !too_old && !too_big) break;
    const JobRecord& record = jobs_.at(it->second);
    if (record.watchers > 0) continue;
    expired.push_back(it->second);
    bytes -= record.stored.video.empty() ? 0 : record.stored.video_bytes;
  }
  return expired;
}

}  // namespace radial::server
