#include <algorithm>

#include "absl/strings/str_cat.h"
#include "store/job_store.h"

namespace radial::server {
namespace {

class StringVideoReader : public VideoReader {
 public:
  explicit StringVideoReader(std::shared_ptr<const std::string> bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_->size(); }
  absl::StatusOr<std::string> Read(uint64_t offset, size_t size) const override {
    if (offset > bytes_->size()) {
      return absl::InvalidArgumentError(absl::StrCat("offset: got ", offset, ", expected at most ", bytes_->size()));
    }
    return bytes_->substr(offset, size);
  }

 private:
  std::shared_ptr<const std::string> bytes_;
};

}  // namespace

absl::Status InMemoryJobStore::Put(const StoredJob& row) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fail_writes_.ok()) return fail_writes_;
  auto it = jobs_.find(row.job.id());
  if (it != jobs_.end() && it->second.version >= row.version) return absl::OkStatus();
  jobs_[row.job.id()] = row;
  return absl::OkStatus();
}

absl::Status InMemoryJobStore::Delete(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fail_writes_.ok()) return fail_writes_;
  jobs_.erase(job_id);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredJob>> InMemoryJobStore::LoadAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StoredJob> rows;
  for (const auto& [id, row] : jobs_) rows.push_back(row);
  std::sort(rows.begin(), rows.end(), [](const StoredJob& a, const StoredJob& b) { return a.sequence < b.sequence; });
  return rows;
}

absl::StatusOr<std::string> InMemoryJobStore::WriteVideo(const std::string& job_id, const std::string& bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fail_writes_.ok()) return fail_writes_;
  const std::string name = job_id + ".mp4";
  videos_[name] = std::make_shared<const std::string>(bytes);
  return name;
}

absl::StatusOr<std::shared_ptr<const VideoReader>> InMemoryJobStore::OpenVideo(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = videos_.find(name);
  if (it == videos_.end()) return absl::NotFoundError(absl::StrCat("video ", name, ": not in the store"));
  return std::make_shared<StringVideoReader>(it->second);
}

absl::Status InMemoryJobStore::DeleteVideo(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  videos_.erase(name);
  return absl::OkStatus();
}

void InMemoryJobStore::FailWrites(absl::Status status) {
  std::lock_guard<std::mutex> lock(mutex_);
  fail_writes_ = std::move(status);
}

}  // namespace radial::server
