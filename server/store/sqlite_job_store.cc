#include "store/sqlite_job_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"

namespace radial::server {
namespace {

using common::Echo;

constexpr int kBusyTimeoutMs = 5000;
constexpr size_t kJobIdMaxChars = 128;
constexpr char kVideoSuffix[] = ".mp4";
constexpr char kTempMarker[] = ".tmp-";
constexpr int kQuickCheckMaxErrors = 5;

// The schema of kSchemaVersion. Columns other than the blob copy fields of the job so that rows can
// be selected and ordered without parsing it; the blob (a serialized v1::Job) is what LoadAll reads.
constexpr const char* kCreateSchemaSql = R"sql(
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY NOT NULL,
  sequence INTEGER NOT NULL,
  version INTEGER NOT NULL,
  state INTEGER NOT NULL,
  model TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  video TEXT NOT NULL,
  video_bytes INTEGER NOT NULL,
  worker_losses INTEGER NOT NULL,
  restarts INTEGER NOT NULL,
  job BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_sequence ON jobs(sequence);
CREATE INDEX IF NOT EXISTS jobs_by_request_id ON jobs(request_id);
PRAGMA user_version = 1;
COMMIT;
)sql";

// The newest state wins: a row is replaced only by a greater version (writes for one job may
// arrive out of order, see JobStore::Put).
constexpr const char* kPutSql = R"sql(
INSERT INTO jobs (id, sequence, version, state, model, request_id, created_unix_ms, video, video_bytes,
                  worker_losses, restarts, job)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
ON CONFLICT(id) DO UPDATE SET
  sequence = excluded.sequence, version = excluded.version, state = excluded.state,
  model = excluded.model, request_id = excluded.request_id, created_unix_ms = excluded.created_unix_ms,
  video = excluded.video, video_bytes = excluded.video_bytes, worker_losses = excluded.worker_losses,
  restarts = excluded.restarts, job = excluded.job
WHERE excluded.version > jobs.version
)sql";

constexpr const char* kDeleteSql = "DELETE FROM jobs WHERE id = ?1";

constexpr const char* kLoadAllSql =
    "SELECT id, sequence, version, worker_losses, restarts, video, video_bytes, job FROM jobs "
    "ORDER BY sequence, id";

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// SQLite's result codes as status codes, for Open and LoadAll (Put and Delete always report
// UNAVAILABLE, as JobStore promises).
absl::StatusCode CodeForSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status ValidateJobId(std::string_view job_id) {
  const bool valid_chars = std::all_of(job_id.begin(), job_id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
  });
  if (job_id.empty() || job_id.size() > kJobIdMaxChars || !valid_chars) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id ", Echo(job_id), ": expected 1 to ", kJobIdMaxChars, " characters of [0-9a-zA-Z_-]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateVideoName(std::string_view name) {
  const std::string_view suffix = kVideoSuffix;
  const bool has_suffix = name.size() > suffix.size() && name.ends_with(suffix);
  if (!has_suffix || !ValidateJobId(name.substr(0, name.size() - suffix.size())).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("video name ", Echo(name), ": expected a job id (1 to ",
                                                   kJobIdMaxChars, " characters of [0-9a-zA-Z_-]) plus \".mp4\""));
  }
  return absl::OkStatus();
}

// 16 hex digits for a temporary file's name. O_EXCL makes a collision harmless (the caller tries
// another), so the clock and a counter stand in when the kernel has no randomness to give.
std::string TempSuffix() {
  static std::atomic<uint64_t> counter{0};
  uint64_t value = 0;
  if (getrandom(&value, sizeof(value), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(value))) {
    value = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            (counter.fetch_add(1) << 48) ^ static_cast<uint64_t>(getpid());
  }
  return absl::StrFormat("%016x", value);
}

// Reads one video file through the descriptor it opened, so a DeleteVideo (unlink) while a client
// downloads does not cut the download short.
class FileVideoReader : public VideoReader {
 public:
  FileVideoReader(int fd, uint64_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
  ~FileVideoReader() override { close(fd_); }
  FileVideoReader(const FileVideoReader&) = delete;
  FileVideoReader& operator=(const FileVideoReader&) = delete;

  uint64_t size() const override { return size_; }

  absl::StatusOr<std::string> Read(uint64_t offset, size_t size) const override {
    if (offset > size_) {
      return absl::InvalidArgumentError(absl::StrCat("offset: got ", offset, ", expected at most ", size_));
    }
    const size_t wanted = static_cast<size_t>(std::min<uint64_t>(size, size_ - offset));
    std::string bytes(wanted, '\0');
    size_t done = 0;
    while (done < wanted) {
      const ssize_t n = pread(fd_, bytes.data() + done, wanted - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        const std::string message = absl::StrCat("video ", path_, ": cannot read: ", ErrnoText(err));
        return err == EIO ? absl::DataLossError(message) : absl::InternalError(message);
      }
      if (n == 0) {
        return absl::DataLossError(absl::StrCat("video ", path_, ": ends at byte ", offset + done, ", expected ", size_,
                                                " bytes (the file was truncated)"));
      }
      done += static_cast<size_t>(n);
    }
    return bytes;
  }

 private:
  const int fd_;
  const uint64_t size_;
  const std::string path_;
};

}  // namespace

SqliteJobStore::SqliteJobStore(std::string db_path, std::string videos_path)
    : db_path_(std::move(db_path)), videos_path_(std::move(videos_path)) {}

SqliteJobStore::~SqliteJobStore() {
  sqlite3_finalize(put_);
  sqlite3_finalize(delete_);
  sqlite3_finalize(load_all_);
  // The last connection's close checkpoints the WAL into jobs.db and removes it; a failure here
  // loses nothing (the WAL is replayed at the next Open).
  if (db_ != nullptr && sqlite3_close(db_) != SQLITE_OK) {
    spdlog::warn("store {}: close: {}", Describe(), sqlite3_errmsg(db_));
    sqlite3_close_v2(db_);
  }
  if (videos_fd_ >= 0) close(videos_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // last: another process may open the store from here on
}

std::string SqliteJobStore::Describe() const { return "sqlite:" + db_path_; }

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const SqliteStoreOptions& options) {
  namespace fs = std::filesystem;
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("store sqlite: data_dir is empty; expected the path of a directory");
  }
  std::error_code ec;
  const fs::path dir = fs::absolute(fs::path(options.data_dir), ec).lexically_normal();
  if (ec) {
    return absl::UnavailableError(absl::StrCat("store sqlite: data_dir ", options.data_dir, ": ", ec.message()));
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore((dir / "jobs.db").string(), (dir / "videos").string()));
  for (const fs::path& path : {dir, dir / "videos"}) {
    fs::create_directories(path, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("store ", store->Describe(), ": cannot create directory ", path.string(), ": ", ec.message()));
    }
    if (!fs::is_directory(path, ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("store ", store->Describe(), ": ", path.string(), " is not a directory"));
    }
  }
  // One process per data dir: two schedulers on one store would hand out the same jobs twice. The
  // kernel drops the lock when the process dies, however it dies.
  const std::string lock_path = (dir / "LOCK").string();
  store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (store->lock_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("store ", store->Describe(), ": cannot open ", lock_path, ": ",
                                               std::strerror(errno)));
  }
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("store ", store->Describe(), ": ", lock_path,
                                                      " is locked: another radial-scheduler uses data dir ",
                                                      dir.string(), "; expected one process per data dir"));
  }
  RADIAL_RETURN_IF_ERROR(store->OpenDatabase(options.synchronous_full));
  RADIAL_RETURN_IF_ERROR(store->OpenVideosDir());
  return store;
}

absl::Status SqliteJobStore::DatabaseError(int rc, const std::string& what) const {
  std::string cause = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  const int primary = rc & 0xff;
  if (db_ != nullptr && (primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN)) {
    if (const int err = LastSystemError(); err != 0) absl::StrAppend(&cause, " (", ErrnoText(err), ")");
  }
  return absl::Status(CodeForSqlite(rc), absl::StrCat("store ", Describe(), ": ", what, ": ", cause));
}

int SqliteJobStore::LastSystemError() const {
  // SQLite samples errno only after its own cleanup, which often clears it; the VFS files keep the
  // errno of their last failed call. A write error is usually the WAL's (the journal file).
  if (const int err = sqlite3_system_errno(db_); err != 0) return err;
  for (const int op : {SQLITE_FCNTL_JOURNAL_POINTER, SQLITE_FCNTL_FILE_POINTER}) {
    sqlite3_file* file = nullptr;
    if (sqlite3_file_control(db_, "main", op, &file) != SQLITE_OK || file == nullptr || file->pMethods == nullptr) {
      continue;
    }
    int err = 0;
    if (file->pMethods->xFileControl(file, SQLITE_FCNTL_LAST_ERRNO, &err) == SQLITE_OK && err != 0) return err;
  }
  return 0;
}

absl::Status SqliteJobStore::Exec(const char* sql, const char* what) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = DatabaseError(rc, what);
    RollbackIfOpen();
    return status;
  }
  return absl::OkStatus();
}

void SqliteJobStore::RollbackIfOpen() {
  if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

absl::Status SqliteJobStore::OpenDatabase(bool synchronous_full) {
  // SQLite would open a directory or a device read-only and fail later with a vaguer message.
  struct stat st {};
  const bool exists = stat(db_path_.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", Describe(), ": cannot open: ", S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a file",
        ", expected the database file"));
  }
  // SQLite takes an empty file for a new database. Open leaves none behind once it succeeded (the
  // switch to WAL writes the first page), so an empty file was cut short, and every job in it lost.
  if (exists && st.st_size == 0) {
    return absl::DataLossError(absl::StrCat("store ", Describe(),
                                            ": the database file is empty (truncated?), expected a database; "
                                            "remove it to start with an empty store"));
  }
  absl::Status status = ConfigureDatabase(synchronous_full);
  // A first Open that failed must not leave the empty file it created: the next would refuse it.
  if (!status.ok() && !exists && stat(db_path_.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
    unlink(db_path_.c_str());
  }
  return status;
}

absl::Status SqliteJobStore::ConfigureDatabase(bool synchronous_full) {
  // NOMUTEX: mutex_ already serializes every use of the connection.
  int rc = sqlite3_open_v2(db_path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return DatabaseError(rc, "cannot open");
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  if (sqlite3_db_readonly(db_, "main") == 1) {
    return absl::UnavailableError(
        absl::StrCat("store ", Describe(), ": cannot open: the file is read-only, expected to be able to write it"));
  }

  // One row (or one row per problem) of text from a pragma.
  auto query = [this](const char* sql, const char* what, int max_rows) -> absl::StatusOr<std::vector<std::string>> {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
    std::vector<std::string> rows;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW && static_cast<int>(rows.size()) < max_rows) {
        const unsigned char* text = sqlite3_column_text(stmt, 0);
        rows.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
      }
    }
    absl::Status status = rc == SQLITE_DONE ? absl::OkStatus() : DatabaseError(rc, what);
    sqlite3_finalize(stmt);
    if (!status.ok()) return status;
    return rows;
  };

  // The first statement that reads the file: a file that is not a database fails here.
  RADIAL_ASSIGN_OR_RETURN(const std::vector<std::string> mode,
                          query("PRAGMA journal_mode = WAL", "cannot read the database", 1));
  if (mode.empty() || mode[0] != "wal") {
    return absl::FailedPreconditionError(absl::StrCat("store ", Describe(), ": cannot switch to WAL mode (got ",
                                                      mode.empty() ? "nothing" : Echo(mode[0]), ")"));
  }
  RADIAL_RETURN_IF_ERROR(Exec(synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                              "cannot open (synchronous)"));

  RADIAL_ASSIGN_OR_RETURN(const std::vector<std::string> problems,
                          query(absl::StrCat("PRAGMA quick_check(", kQuickCheckMaxErrors, ")").c_str(),
                                "cannot check the database", kQuickCheckMaxErrors));
  if (problems.size() != 1 || problems[0] != "ok") {
    return absl::DataLossError(absl::StrCat(
        "store ", Describe(), ": the database is damaged (quick_check: ", absl::StrJoin(problems, "; "), ")"));
  }

  RADIAL_ASSIGN_OR_RETURN(const std::vector<std::string> version,
                          query("PRAGMA user_version", "cannot read the schema version", 1));
  const int schema = version.empty() ? 0 : std::atoi(version[0].c_str());
  if (schema > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("store ", Describe(), ": schema version ", schema,
                                                      " is newer than this build's ", kSchemaVersion,
                                                      "; run the radial-scheduler that wrote it"));
  }
  if (schema < kSchemaVersion) RADIAL_RETURN_IF_ERROR(Exec(kCreateSchemaSql, "cannot create the schema"));

  const std::pair<const char*, sqlite3_stmt**> statements[] = {
      {kPutSql, &put_}, {kDeleteSql, &delete_}, {kLoadAllSql, &load_all_}};
  for (const auto& [sql, stmt] : statements) {
    rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
    if (rc != SQLITE_OK) return DatabaseError(rc, "cannot prepare statements (is this radial's jobs database?)");
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::OpenVideosDir() {
  videos_fd_ = open(videos_path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (videos_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("store ", Describe(), ": cannot open directory ", videos_path_, ": ", ErrnoText(errno)));
  }
  // Temporary files of WriteVideo calls that a crash interrupted: never renamed, so never named by
  // a row.
  const int list_fd = dup(videos_fd_);
  DIR* dir = list_fd >= 0 ? fdopendir(list_fd) : nullptr;
  if (dir == nullptr) {
    const int err = errno;
    if (list_fd >= 0) close(list_fd);
    return absl::UnavailableError(
        absl::StrCat("store ", Describe(), ": cannot list ", videos_path_, ": ", ErrnoText(err)));
  }
  absl::Status status;
  int removed = 0;
  while (true) {
    errno = 0;
    const dirent* entry = readdir(dir);
    if (entry == nullptr) {
      if (errno != 0) {
        status = absl::UnavailableError(
            absl::StrCat("store ", Describe(), ": cannot list ", videos_path_, ": ", ErrnoText(errno)));
      }
      break;
    }
    const std::string_view name = entry->d_name;
    if (entry->d_type == DT_DIR || name.find(kTempMarker) == std::string_view::npos) continue;
    if (unlinkat(videos_fd_, entry->d_name, 0) != 0 && errno != ENOENT) {
      status = absl::UnavailableError(absl::StrCat("store ", Describe(), ": cannot remove leftover ", videos_path_, "/",
                                                   entry->d_name, ": ", ErrnoText(errno)));
      break;
    }
    ++removed;
  }
  closedir(dir);
  if (removed > 0) spdlog::info("store {}: removed {} leftover temporary video file(s)", Describe(), removed);
  return status;
}

absl::Status SqliteJobStore::Put(const StoredJob& row) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (row.sequence > kMax || row.version > kMax || row.video_bytes > kMax) {
    return absl::InvalidArgumentError(absl::StrCat("store ", Describe(), ": job ", Echo(row.job.id()),
                                                   ": sequence, version and video_bytes must fit in int64"));
  }
  std::string blob;
  if (!row.job.SerializeToString(&blob)) {
    return absl::InternalError(absl::StrCat("store ", Describe(), ": job ", Echo(row.job.id()), ": cannot serialize"));
  }
  const v1::Job& job = row.job;
  std::lock_guard<std::mutex> lock(mutex_);
  // The strings outlive the step, so SQLite need not copy them (SQLITE_STATIC).
  int rc = sqlite3_bind_text(put_, 1, job.id().data(), static_cast<int>(job.id().size()), SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 2, static_cast<int64_t>(row.sequence));
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 3, static_cast<int64_t>(row.version));
  if (rc == SQLITE_OK) rc = sqlite3_bind_int(put_, 4, static_cast<int>(job.state()));
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_text(put_, 5, job.request().model().data(), static_cast<int>(job.request().model().size()),
                           SQLITE_STATIC);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_text(put_, 6, job.request().request_id().data(),
                           static_cast<int>(job.request().request_id().size()), SQLITE_STATIC);
  }
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 7, job.created_unix_ms());
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_text(put_, 8, row.video.data(), static_cast<int>(row.video.size()), SQLITE_STATIC);
  }
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 9, static_cast<int64_t>(row.video_bytes));
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 10, row.worker_losses);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(put_, 11, row.restarts);
  if (rc == SQLITE_OK) rc = sqlite3_bind_blob(put_, 12, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(put_);
  absl::Status status;
  if (rc != SQLITE_DONE) {
    const absl::Status cause = DatabaseError(rc, absl::StrCat("cannot save job ", Echo(job.id())));
    status = absl::UnavailableError(cause.message());
  }
  sqlite3_reset(put_);
  sqlite3_clear_bindings(put_);
  if (!status.ok()) RollbackIfOpen();
  return status;
}

absl::Status SqliteJobStore::Delete(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  int rc = sqlite3_bind_text(delete_, 1, job_id.data(), static_cast<int>(job_id.size()), SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(delete_);
  absl::Status status;
  if (rc != SQLITE_DONE) {
    const absl::Status cause = DatabaseError(rc, absl::StrCat("cannot delete job ", Echo(job_id)));
    status = absl::UnavailableError(cause.message());
  }
  sqlite3_reset(delete_);
  sqlite3_clear_bindings(delete_);
  if (!status.ok()) RollbackIfOpen();
  return status;
}

absl::StatusOr<std::vector<StoredJob>> SqliteJobStore::LoadAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StoredJob> rows;
  absl::Status status;
  int rc;
  while ((rc = sqlite3_step(load_all_)) == SQLITE_ROW) {
    const auto* id_text = reinterpret_cast<const char*>(sqlite3_column_text(load_all_, 0));
    const std::string id(id_text != nullptr ? id_text : "", static_cast<size_t>(sqlite3_column_bytes(load_all_, 0)));
    StoredJob row;
    row.sequence = static_cast<uint64_t>(sqlite3_column_int64(load_all_, 1));
    row.version = static_cast<uint64_t>(sqlite3_column_int64(load_all_, 2));
    row.worker_losses = static_cast<uint32_t>(sqlite3_column_int64(load_all_, 3));
    row.restarts = static_cast<uint32_t>(sqlite3_column_int64(load_all_, 4));
    const auto* video = reinterpret_cast<const char*>(sqlite3_column_text(load_all_, 5));
    row.video.assign(video != nullptr ? video : "", static_cast<size_t>(sqlite3_column_bytes(load_all_, 5)));
    row.video_bytes = static_cast<uint64_t>(sqlite3_column_int64(load_all_, 6));
    const void* blob = sqlite3_column_blob(load_all_, 7);
    const int blob_bytes = sqlite3_column_bytes(load_all_, 7);
    const bool parsed = blob_bytes == 0 ? row.job.ParseFromString("") : row.job.ParseFromArray(blob, blob_bytes);
    if (!parsed || row.job.id() != id) {
      status = absl::DataLossError(absl::StrCat(
          "store ", Describe(), ": job ", Echo(id), ": ",
          parsed ? absl::StrCat("the stored job has id ", Echo(row.job.id())) : "the stored job does not parse",
          " (the row is damaged; restore the file from a backup or remove the row)"));
      break;
    }
    rows.push_back(std::move(row));
  }
  if (status.ok() && rc != SQLITE_DONE) status = DatabaseError(rc, "cannot load jobs");
  sqlite3_reset(load_all_);
  if (!status.ok()) return status;
  return rows;
}

absl::StatusOr<std::string> SqliteJobStore::WriteVideo(const std::string& job_id, const std::string& bytes) {
  RADIAL_RETURN_IF_ERROR(ValidateJobId(job_id));
  const std::string name = job_id + kVideoSuffix;
  std::string temp_name;
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    temp_name = absl::StrCat(name, kTempMarker, TempSuffix());
    fd = openat(videos_fd_, temp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  auto failure = [&](const char* what, const std::string& file, int err) {
    return absl::UnavailableError(
        absl::StrCat("store ", Describe(), ": ", what, " ", videos_path_, "/", file, ": ", ErrnoText(err)));
  };
  if (fd < 0) return failure("cannot create", temp_name, errno);
  // Every failure from here closes and removes the temporary file, so nothing is left behind.
  auto abandon = [&](const char* what, int err) {
    if (fd >= 0) close(fd);
    unlinkat(videos_fd_, temp_name.c_str(), 0);
    return failure(what, temp_name, err);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return abandon("cannot write", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return abandon("cannot sync", errno);
  const int closed = close(fd);
  fd = -1;
  if (closed != 0) return abandon("cannot close", errno);
  if (renameat(videos_fd_, temp_name.c_str(), videos_fd_, name.c_str()) != 0) return abandon("cannot rename", errno);
  // The rename is durable only once the directory is synced. Without that the caller must not
  // record the video, so the file goes too.
  if (fsync(videos_fd_) != 0) {
    const int err = errno;
    unlinkat(videos_fd_, name.c_str(), 0);
    return failure("cannot sync the directory after renaming to", name, err);
  }
  return name;
}

absl::StatusOr<std::shared_ptr<const VideoReader>> SqliteJobStore::OpenVideo(const std::string& name) {
  RADIAL_RETURN_IF_ERROR(ValidateVideoName(name));
  const std::string path = absl::StrCat(videos_path_, "/", name);
  const int fd = openat(videos_fd_, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    return absl::NotFoundError(absl::StrCat("store ", Describe(), ": video ", path, " does not exist"));
  }
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("store ", Describe(), ": cannot open ", path, ": ", ErrnoText(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("store ", Describe(), ": video ", path, ": ", ErrnoText(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InternalError(absl::StrCat("store ", Describe(), ": video ", path, " is not a regular file"));
  }
  return std::make_shared<FileVideoReader>(fd, static_cast<uint64_t>(st.st_size), path);
}

absl::Status SqliteJobStore::DeleteVideo(const std::string& name) {
  RADIAL_RETURN_IF_ERROR(ValidateVideoName(name));
  if (unlinkat(videos_fd_, name.c_str(), 0) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        absl::StrCat("store ", Describe(), ": cannot remove ", videos_path_, "/", name, ": ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

}  // namespace radial::server
