// Where the scheduler keeps jobs and finished videos so that nothing acknowledged is lost when the
// process dies. The scheduler's job table is the live state; every change is written through here,
// outside the scheduler's lock (so writes for one job may arrive out of order: `version` sorts them).
//
// Implementations: SqliteJobStore (server/store/sqlite_job_store.h: SQLite in WAL mode plus one file
// per finished video in --data-dir) for the product, InMemoryJobStore for unit tests.
//
// Thread-safety: every method may be called from any thread at any time.
#ifndef RADIAL_SERVER_STORE_JOB_STORE_H_
#define RADIAL_SERVER_STORE_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::server {

// A job as stored: what clients see (job) plus what the scheduler needs to resume it.
struct StoredJob {
  v1::Job job;                 // id, state, resolved request, times, error, stats, attempts
  uint64_t sequence = 0;       // submission order: orders equal priorities in the queue
  uint64_t version = 0;        // grows with every change of the job; see JobStore::Put
  uint32_t worker_losses = 0;  // attempts that ended because the worker was lost (the retry budget)
  uint32_t restarts = 0;       // times the job started again from scratch (Restarted events)
  std::string video;           // finished video's name in the store (SUCCEEDED only), else empty
  uint64_t video_bytes = 0;    // its size
};

// Bytes of a stored video. Reads may run while the store deletes the video: an open reader keeps
// reading the bytes it opened.
class VideoReader {
 public:
  virtual ~VideoReader() = default;
  virtual uint64_t size() const = 0;
  // Up to `size` bytes from `offset` (fewer only at the end). INVALID_ARGUMENT past the end;
  // DATA_LOSS / INTERNAL when the file cannot be read.
  virtual absl::StatusOr<std::string> Read(uint64_t offset, size_t size) const = 0;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts or replaces the job row.job.id(). A row whose version is not greater than the stored
  // one is ignored (returns OK): the newest state always wins. UNAVAILABLE (naming the store and
  // the cause) when the write fails; the previous row is then unchanged.
  virtual absl::Status Put(const StoredJob& row) = 0;
  // Removes the job's row (its video is removed with DeleteVideo). OK when it does not exist.
  virtual absl::Status Delete(const std::string& job_id) = 0;
  // Every stored job, in sequence order. At start only.
  virtual absl::StatusOr<std::vector<StoredJob>> LoadAll() = 0;

  // Stores a finished video durably (written whole to a temporary file, fsynced, renamed) and
  // returns its name. UNAVAILABLE when it cannot be written (nothing is left behind then).
  virtual absl::StatusOr<std::string> WriteVideo(const std::string& job_id, const std::string& bytes) = 0;
  // NOT_FOUND when the video does not exist (DATA_LOSS if it exists with another size than stored).
  virtual absl::StatusOr<std::shared_ptr<const VideoReader>> OpenVideo(const std::string& name) = 0;
  // OK when it does not exist.
  virtual absl::Status DeleteVideo(const std::string& name) = 0;

  // For logs and messages, e.g. "sqlite:/var/lib/radial/jobs.db".
  virtual std::string Describe() const = 0;
};

// Keeps everything in memory, for unit tests. Same semantics as the durable store, including
// versioned Put.
class InMemoryJobStore : public JobStore {
 public:
  absl::Status Put(const StoredJob& row) override;
  absl::Status Delete(const std::string& job_id) override;
  absl::StatusOr<std::vector<StoredJob>> LoadAll() override;
  absl::StatusOr<std::string> WriteVideo(const std::string& job_id, const std::string& bytes) override;
  absl::StatusOr<std::shared_ptr<const VideoReader>> OpenVideo(const std::string& name) override;
  absl::Status DeleteVideo(const std::string& name) override;
  std::string Describe() const override { return "memory"; }

  // Tests: every later Put / WriteVideo fails with `status` (OK restores normal operation).
  void FailWrites(absl::Status status);

 private:
  std::mutex mutex_;
  absl::Status fail_writes_;
  std::map<std::string, StoredJob> jobs_;
  std::map<std::string, std::shared_ptr<const std::string>> videos_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_STORE_JOB_STORE_H_
