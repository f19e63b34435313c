// Where the scheduler persists jobs, so that queued work survives a restart. The scheduler keeps
// the live state in memory and writes each job through on every state change. This is the seam for
// the durable (SQLite) store; InMemoryJobStore keeps jobs for the life of the process.
#ifndef RADIAL_SERVER_JOB_STORE_H_
#define RADIAL_SERVER_JOB_STORE_H_

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::server {

class JobStore {
 public:
  virtual ~JobStore() = default;
  // Inserts or replaces the job with job.id().
  virtual absl::Status Save(const v1::Job& job) = 0;
  // Jobs that had not ended (QUEUED or RUNNING) when the store was last written, oldest first.
  virtual absl::StatusOr<std::vector<v1::Job>> LoadUnfinished() = 0;
};

class InMemoryJobStore : public JobStore {
 public:
  absl::Status Save(const v1::Job& job) override;
  absl::StatusOr<std::vector<v1::Job>> LoadUnfinished() override;

 private:
  struct Entry {
    uint64_t first_saved;  // order of the first Save: "oldest first"
    v1::Job job;
  };
  std::mutex mutex_;
  uint64_t saves_ = 0;
  std::map<std::string, Entry> jobs_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_JOB_STORE_H_
