#include "job_store.h"

#include <algorithm>

namespace radial::server {

absl::Status InMemoryJobStore::Save(const v1::Job& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, inserted] = jobs_.try_emplace(job.id(), Entry{saves_, job});
  if (inserted) {
    ++saves_;
  } else {
    it->second.job = job;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Job>> InMemoryJobStore::LoadUnfinished() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<const Entry*> entries;
  for (const auto& [id, entry] : jobs_) {
    const v1::JobState state = entry.job.state();
    if (state == v1::JOB_STATE_QUEUED || state == v1::JOB_STATE_RUNNING) entries.push_back(&entry);
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry* a, const Entry* b) { return a->first_saved < b->first_saved; });
  std::vector<v1::Job> unfinished;
  for (const Entry* entry : entries) unfinished.push_back(entry->job);
  return unfinished;
}

}  // namespace radial::server
