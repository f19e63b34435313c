// The durable JobStore: job rows in SQLite (WAL mode) at <data_dir>/jobs.db, finished videos as
// one file each in <data_dir>/videos/. See server/store/README.md for the schema and what survives
// a process crash or a power loss.
//
// Ownership: the store owns the SQLite connection and its prepared statements; one mutex guards
// them, so database calls from different threads run one at a time. Video files are written and
// read without that lock (each call works on its own file descriptors).
#ifndef RADIAL_SERVER_STORE_SQLITE_JOB_STORE_H_
#define RADIAL_SERVER_STORE_SQLITE_JOB_STORE_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/job_store.h"

// SQLite's handle types, declared here so that users of this header need no sqlite3.h.
struct sqlite3;
struct sqlite3_stmt;

namespace radial::server {

struct SqliteStoreOptions {
  // Created (with videos/) when missing.
  std::string data_dir;
  // FULL: a Put that returned OK survives a power loss. NORMAL: it survives a process crash, and
  // the last transactions before a power loss may be lost (SQLite's WAL + synchronous=NORMAL).
  bool synchronous_full = true;
};

class SqliteJobStore : public JobStore {
 public:
  // The schema this code writes (PRAGMA user_version).
  static constexpr int kSchemaVersion = 1;

  // Opens or creates the store and checks the database (PRAGMA quick_check); removes temporary
  // video files that an interrupted WriteVideo left behind. Errors name the database file and the
  // cause: INVALID_ARGUMENT for an empty data_dir; DATA_LOSS when the file is not a database or is
  // damaged; FAILED_PRECONDITION when the path is not a regular file or the schema is newer than
  // kSchemaVersion; UNAVAILABLE when a directory or the file cannot be created, opened or written.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const SqliteStoreOptions& options);

  ~SqliteJobStore() override;
  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;

  // JobStore. Put and Delete are one SQLite transaction each: on failure (UNAVAILABLE) it is rolled
  // back and the previous row is unchanged. Put refuses sequence or version above INT64_MAX
  // (INVALID_ARGUMENT). LoadAll reports DATA_LOSS for a row whose job does not parse.
  absl::Status Put(const StoredJob& row) override;
  absl::Status Delete(const std::string& job_id) override;
  absl::StatusOr<std::vector<StoredJob>> LoadAll() override;

  // Video names are "<job_id>.mp4"; a job id must be 1 to 128 characters of [0-9a-zA-Z_-] and a
  // name must be such an id plus ".mp4" (INVALID_ARGUMENT otherwise), so no name leaves videos/.
  // WriteVideo's UNAVAILABLE names the path and the system's error; nothing is left behind then.
  // DeleteVideo does not sync the directory: after a power loss a deleted video may reappear.
  absl::StatusOr<std::string> WriteVideo(const std::string& job_id, const std::string& bytes) override;
  absl::StatusOr<std::shared_ptr<const VideoReader>> OpenVideo(const std::string& name) override;
  absl::Status DeleteVideo(const std::string& name) override;

  // "sqlite:" + the database file's absolute path.
  std::string Describe() const override;

 private:
  SqliteJobStore(std::string db_path, std::string videos_path);

  absl::Status OpenDatabase(bool synchronous_full);
  // Opens the connection, sets the pragmas, checks the file, creates the schema, prepares the
  // statements.
  absl::Status ConfigureDatabase(bool synchronous_full);
  absl::Status OpenVideosDir();
  // Runs SQL that returns no rows we need (schema, pragmas, ROLLBACK). Caller holds mutex_ or is Open.
  absl::Status Exec(const char* sql, const char* what);
  // A status for the last SQLite error on db_, prefixed with "store sqlite:<path>: <what>: ".
  absl::Status DatabaseError(int rc, const std::string& what) const;
  // The errno behind the last I/O error on db_, or 0. Caller holds mutex_ or is Open.
  int LastSystemError() const;
  // After a failed write: rolls back a transaction SQLite left open, if any. Caller holds mutex_.
  void RollbackIfOpen();

  const std::string db_path_;
  const std::string videos_path_;
  int videos_fd_ = -1;  // videos/, opened once: every video call resolves names relative to it
  int lock_fd_ = -1;    // data_dir/LOCK, flock'ed for the life of the store

  std::mutex mutex_;
  sqlite3* db_ = nullptr;             // guarded by mutex_
  sqlite3_stmt* put_ = nullptr;       // guarded by mutex_
  sqlite3_stmt* delete_ = nullptr;    // guarded by mutex_
  sqlite3_stmt* load_all_ = nullptr;  // guarded by mutex_
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_STORE_SQLITE_JOB_STORE_H_
