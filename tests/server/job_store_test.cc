// The JobStore contract, checked against both implementations (typed tests), then what only the
// durable SQLite store promises: data survives a reopen, a damaged or foreign database file stops
// the start with a message naming it, write failures are reported (never swallowed, never a crash)
// and leave the previous row intact, and video names cannot leave the videos directory.
#include "store/job_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "radial/common/status_macros.h"
#include "store/sqlite_job_store.h"

namespace radial::server {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the test's temporary directory, removed with its contents afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "job_store_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

::testing::AssertionResult StatusIs(const absl::Status& status, absl::StatusCode code,
                                    const std::vector<std::string>& substrings = {}) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "got " << status << ", expected code " << absl::StatusCodeToString(code);
  }
  for (const std::string& text : substrings) {
    if (status.message().find(text) == std::string_view::npos) {
      return ::testing::AssertionFailure() << "got " << status << ", expected the message to contain '" << text << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

StoredJob Row(const std::string& id, uint64_t sequence, uint64_t version, v1::JobState state = v1::JOB_STATE_QUEUED) {
  StoredJob row;
  row.job.set_id(id);
  row.job.set_state(state);
  row.job.mutable_request()->set_prompt("a red fox in the snow, " + id);
  row.job.mutable_request()->set_model("tiny");
  row.job.mutable_request()->set_request_id("client-" + id);
  row.job.set_created_unix_ms(1700000000000 + static_cast<int64_t>(sequence));
  row.sequence = sequence;
  row.version = version;
  return row;
}

void ExpectSameRow(const StoredJob& got, const StoredJob& expected) {
  EXPECT_EQ(got.job.DebugString(), expected.job.DebugString());
  EXPECT_EQ(got.sequence, expected.sequence);
  EXPECT_EQ(got.version, expected.version);
  EXPECT_EQ(got.worker_losses, expected.worker_losses);
  EXPECT_EQ(got.restarts, expected.restarts);
  EXPECT_EQ(got.video, expected.video);
  EXPECT_EQ(got.video_bytes, expected.video_bytes);
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random() & 0xff);
  return bytes;
}

std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ---- The contract both stores share ----

struct MemoryStoreKind {
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string&) {
    return std::make_unique<InMemoryJobStore>();
  }
};

struct SqliteStoreKind {
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& dir) {
    RADIAL_ASSIGN_OR_RETURN(std::unique_ptr<SqliteJobStore> store, SqliteJobStore::Open({.data_dir = dir}));
    return std::unique_ptr<JobStore>(std::move(store));
  }
};

struct StoreKindName {
  template <typename Kind>
  static std::string GetName(int) {
    return std::is_same_v<Kind, MemoryStoreKind> ? "Memory" : "Sqlite";
  }
};

template <typename Kind>
class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    auto store = Kind::Open(dir_.path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  std::vector<StoredJob> LoadAll() {
    auto rows = store_->LoadAll();
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *std::move(rows) : std::vector<StoredJob>{};
  }

  TempDir dir_;
  std::unique_ptr<JobStore> store_;
};

using StoreKinds = ::testing::Types<MemoryStoreKind, SqliteStoreKind>;
TYPED_TEST_SUITE(JobStoreTest, StoreKinds, StoreKindName);

TYPED_TEST(JobStoreTest, EmptyStoreLoadsNoJobs) { EXPECT_TRUE(this->LoadAll().empty()); }

TYPED_TEST(JobStoreTest, PutKeepsTheNewestVersion) {
  StoredJob running = Row("a1", 1, 2, v1::JOB_STATE_RUNNING);
  running.job.set_attempts(1);
  ASSERT_TRUE(this->store_->Put(running).ok());

  // Writes for one job may arrive out of order: an older version changes nothing, nor does a
  // second write of the same version.
  ASSERT_TRUE(this->store_->Put(Row("a1", 1, 1, v1::JOB_STATE_QUEUED)).ok());
  ASSERT_TRUE(this->store_->Put(Row("a1", 1, 2, v1::JOB_STATE_FAILED)).ok());
  std::vector<StoredJob> rows = this->LoadAll();
  ASSERT_EQ(rows.size(), 1u);
  ExpectSameRow(rows[0], running);

  StoredJob done = Row("a1", 1, 3, v1::JOB_STATE_SUCCEEDED);
  done.video = "a1.mp4";
  done.video_bytes = 12345;
  done.worker_losses = 1;
  done.restarts = 2;
  done.job.set_attempts(3);
  done.job.set_worker_id("worker-7");
  done.job.mutable_stats()->set_frames(33);
  ASSERT_TRUE(this->store_->Put(done).ok());
  rows = this->LoadAll();
  ASSERT_EQ(rows.size(), 1u);
  ExpectSameRow(rows[0], done);
}

TYPED_TEST(JobStoreTest, DeleteRemovesTheJobAndAcceptsUnknownIds) {
  ASSERT_TRUE(this->store_->Put(Row("a1", 1, 1)).ok());
  ASSERT_TRUE(this->store_->Put(Row("b2", 2, 1)).ok());
  ASSERT_TRUE(this->store_->Delete("a1").ok());
  EXPECT_TRUE(this->store_->Delete("a1").ok());
  EXPECT_TRUE(this->store_->Delete("never-stored").ok());
  const std::vector<StoredJob> rows = this->LoadAll();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].job.id(), "b2");

  // A deleted job can be stored again from version 1.
  ASSERT_TRUE(this->store_->Put(Row("a1", 3, 1)).ok());
  EXPECT_EQ(this->LoadAll().size(), 2u);
}

TYPED_TEST(JobStoreTest, LoadAllReturnsJobsInSequenceOrder) {
  // Ids sort differently from sequences, and rows are written in neither order.
  const std::vector<std::pair<std::string, uint64_t>> jobs = {{"e", 1}, {"a", 5}, {"c", 3}, {"d", 2}, {"b", 4}};
  for (const auto& [id, sequence] : jobs) ASSERT_TRUE(this->store_->Put(Row(id, sequence, 1)).ok());
  std::vector<std::string> ids;
  for (const StoredJob& row : this->LoadAll()) ids.push_back(row.job.id());
  EXPECT_EQ(ids, (std::vector<std::string>{"e", "d", "c", "b", "a"}));
}

TYPED_TEST(JobStoreTest, ConcurrentPutsKeepTheNewestVersionOfEveryJob) {
  constexpr int kThreads = 4;
  constexpr int kVersions = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int v = 1; v <= kVersions; ++v) {
        EXPECT_TRUE(this->store_->Put(Row("own" + std::to_string(t), t, v)).ok());
        // Every thread also writes one shared job; thread t's versions are t*1000+v.
        EXPECT_TRUE(this->store_->Put(Row("shared", 100, static_cast<uint64_t>(t * 1000 + v))).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::vector<StoredJob> rows = this->LoadAll();
  ASSERT_EQ(rows.size(), static_cast<size_t>(kThreads + 1));
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(rows[t].version, static_cast<uint64_t>(kVersions));
  EXPECT_EQ(rows.back().job.id(), "shared");
  EXPECT_EQ(rows.back().version, static_cast<uint64_t>((kThreads - 1) * 1000 + kVersions));
}

TYPED_TEST(JobStoreTest, VideoWriteOpenReadDelete) {
  const std::string bytes = RandomBytes(300 * 1024 + 17, 1);
  auto name = this->store_->WriteVideo("0123abcd", bytes);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "0123abcd.mp4");

  auto reader = this->store_->OpenVideo(*name);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*reader)->size(), bytes.size());
  auto all = (*reader)->Read(0, bytes.size() + 100);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all == bytes);
  std::string pieces;
  for (uint64_t offset = 0; offset < bytes.size(); offset += 65536) {
    auto piece = (*reader)->Read(offset, 65536);
    ASSERT_TRUE(piece.ok()) << piece.status();
    pieces += *piece;
  }
  EXPECT_TRUE(pieces == bytes);
  auto tail = (*reader)->Read(bytes.size() - 5, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, bytes.substr(bytes.size() - 5));
  auto at_end = (*reader)->Read(bytes.size(), 10);
  ASSERT_TRUE(at_end.ok());
  EXPECT_TRUE(at_end->empty());
  EXPECT_TRUE(StatusIs((*reader)->Read(bytes.size() + 1, 10).status(), absl::StatusCode::kInvalidArgument));

  ASSERT_TRUE(this->store_->DeleteVideo(*name).ok());
  EXPECT_TRUE(StatusIs(this->store_->OpenVideo(*name).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(this->store_->DeleteVideo(*name).ok());
}

TYPED_TEST(JobStoreTest, UnknownVideoIsNotFound) {
  EXPECT_TRUE(StatusIs(this->store_->OpenVideo("ffff.mp4").status(), absl::StatusCode::kNotFound));
}

TYPED_TEST(JobStoreTest, EmptyVideoAndRewrittenVideo) {
  ASSERT_TRUE(this->store_->WriteVideo("empty", "").ok());
  auto empty = this->store_->OpenVideo("empty.mp4");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ((*empty)->size(), 0u);
  auto nothing = (*empty)->Read(0, 10);
  ASSERT_TRUE(nothing.ok());
  EXPECT_TRUE(nothing->empty());

  // A job that runs again writes its video again: the second one replaces the first.
  ASSERT_TRUE(this->store_->WriteVideo("again", "first attempt").ok());
  ASSERT_TRUE(this->store_->WriteVideo("again", "second").ok());
  auto reader = this->store_->OpenVideo("again.mp4");
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->Read(0, 100), "second");
}

TYPED_TEST(JobStoreTest, OpenReaderKeepsReadingAfterDeleteVideo) {
  const std::string bytes = RandomBytes(100000, 2);
  ASSERT_TRUE(this->store_->WriteVideo("abc", bytes).ok());
  auto reader = this->store_->OpenVideo("abc.mp4");
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto head = (*reader)->Read(0, 1000);
  ASSERT_TRUE(head.ok());

  // Retention removes the video while a client is still downloading it.
  ASSERT_TRUE(this->store_->DeleteVideo("abc.mp4").ok());
  EXPECT_TRUE(StatusIs(this->store_->OpenVideo("abc.mp4").status(), absl::StatusCode::kNotFound));
  auto rest = (*reader)->Read(1000, bytes.size());
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_TRUE(*head + *rest == bytes);
}

// ---- What only the SQLite store promises ----

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  std::string DbPath() const { return dir_.path() + "/jobs.db"; }
  std::string VideosPath() const { return dir_.path() + "/videos"; }

  absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(bool synchronous_full = true) {
    return SqliteJobStore::Open({.data_dir = dir_.path(), .synchronous_full = synchronous_full});
  }

  std::unique_ptr<SqliteJobStore> OpenOrDie() {
    auto store = Open();
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Changes the database behind the store's back (the store must be closed).
  void ExecSql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

  std::string QuerySql(const std::string& sql) {
    sqlite3* db = nullptr;
    std::string result;
    EXPECT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
    sqlite3_exec(
        db, sql.c_str(),
        [](void* out, int, char** values, char**) {
          *static_cast<std::string*>(out) = values[0] != nullptr ? values[0] : "";
          return 0;
        },
        &result, nullptr);
    sqlite3_close(db);
    return result;
  }

  void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
    ASSERT_TRUE(out.good()) << path;
  }

  std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  TempDir dir_;
};

// Lowers this process's file size limit (RLIMIT_FSIZE) for its lifetime, so that every write past
// `bytes` fails with EFBIG (SIGXFSZ is ignored meanwhile, or it would kill the process). Unlike a
// read-only directory this stops writes through descriptors already open, and root too.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit limited = previous_;
    limited.rlim_cur = bytes;
    applied_ = setrlimit(RLIMIT_FSIZE, &limited) == 0;
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

  bool applied() const { return applied_; }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
  bool applied_ = false;
};

TEST_F(SqliteJobStoreTest, OpenCreatesTheDirectoriesAndDescribesTheFile) {
  const std::string data_dir = dir_.path() + "/a/b";
  auto store = SqliteJobStore::Open({.data_dir = data_dir});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Describe(), "sqlite:" + data_dir + "/jobs.db");
  EXPECT_TRUE(fs::is_regular_file(data_dir + "/jobs.db"));
  EXPECT_TRUE(fs::is_directory(data_dir + "/videos"));
}

TEST_F(SqliteJobStoreTest, DatabaseIsInWalModeWithTheSchemaVersion) {
  ASSERT_NE(OpenOrDie(), nullptr);
  EXPECT_EQ(QuerySql("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QuerySql("PRAGMA user_version"), std::to_string(SqliteJobStore::kSchemaVersion));
  EXPECT_EQ(QuerySql("SELECT count(*) FROM sqlite_schema WHERE name = 'jobs_by_request_id'"), "1");
}

TEST_F(SqliteJobStoreTest, ASecondStoreOnTheSameDataDirIsRefusedUntilTheFirstCloses) {
  auto first = SqliteJobStore::Open({.data_dir = dir_.path()});
  ASSERT_TRUE(first.ok()) << first.status();
  const auto second = SqliteJobStore::Open({.data_dir = dir_.path()});
  ASSERT_TRUE(StatusIs(second.status(), absl::StatusCode::kFailedPrecondition)) << second.status();
  EXPECT_NE(second.status().message().find("another radial-scheduler uses data dir"), std::string::npos)
      << second.status();
  first->reset();
  EXPECT_TRUE(SqliteJobStore::Open({.data_dir = dir_.path()}).ok()) << "the lock goes with the store";
}

TEST_F(SqliteJobStoreTest, RejectsAnEmptyDataDir) {
  EXPECT_TRUE(StatusIs(SqliteJobStore::Open({.data_dir = ""}).status(), absl::StatusCode::kInvalidArgument));
}

TEST_F(SqliteJobStoreTest, JobsAndVideosSurviveCloseAndReopen) {
  for (const bool synchronous_full : {true, false}) {
    SCOPED_TRACE(synchronous_full ? "synchronous=FULL" : "synchronous=NORMAL");
    TempDir dir;
    StoredJob failed = Row("f00d", 7, 4, v1::JOB_STATE_FAILED);
    failed.worker_losses = 2;
    failed.restarts = 1;
    failed.job.mutable_error()->set_message("worker lost twice");
    StoredJob done = Row("beef", 3, 9, v1::JOB_STATE_SUCCEEDED);
    done.job.mutable_request()->set_request_id("");
    const std::string bytes = RandomBytes(5000, 3);
    {
      auto store = SqliteJobStore::Open({.data_dir = dir.path(), .synchronous_full = synchronous_full});
      ASSERT_TRUE(store.ok()) << store.status();
      auto name = (*store)->WriteVideo("beef", bytes);
      ASSERT_TRUE(name.ok()) << name.status();
      done.video = *name;
      done.video_bytes = bytes.size();
      ASSERT_TRUE((*store)->Put(failed).ok());
      ASSERT_TRUE((*store)->Put(Row("beef", 3, 1)).ok());
      ASSERT_TRUE((*store)->Put(done).ok());
      ASSERT_TRUE((*store)->Put(Row("gone", 5, 1)).ok());
      ASSERT_TRUE((*store)->Delete("gone").ok());
    }
    auto store = SqliteJobStore::Open({.data_dir = dir.path(), .synchronous_full = synchronous_full});
    ASSERT_TRUE(store.ok()) << store.status();
    auto rows = (*store)->LoadAll();
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), 2u);
    ExpectSameRow((*rows)[0], done);
    ExpectSameRow((*rows)[1], failed);
    auto reader = (*store)->OpenVideo(done.video);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE(*(*reader)->Read(0, bytes.size()) == bytes);
  }
}

TEST_F(SqliteJobStoreTest, RandomBytesInPlaceOfTheDatabaseFailOpenNamingTheFile) {
  ASSERT_TRUE(fs::create_directories(VideosPath()));
  const std::string garbage = RandomBytes(64 * 1024, 4);
  WriteFile(DbPath(), garbage);
  const absl::Status status = Open().status();
  EXPECT_TRUE(StatusIs(status, absl::StatusCode::kDataLoss, {DbPath(), "not a database"}));
  // The store must not "repair" the file by overwriting it: it may be the only copy of the jobs.
  EXPECT_TRUE(ReadFile(DbPath()) == garbage);
}

TEST_F(SqliteJobStoreTest, TruncatedDatabaseFailsOpenNamingTheFile) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 300; ++i) {
      StoredJob row = Row("job" + std::to_string(i), i, 1);
      row.job.mutable_request()->set_prompt(std::string(400, 'p'));
      ASSERT_TRUE(store->Put(row).ok());
    }
  }
  const uintmax_t size = fs::file_size(DbPath());
  ASSERT_GT(size, 8u * 4096) << "expected a database of several pages";
  const std::string bytes = ReadFile(DbPath());
  for (const uintmax_t truncated : {size / 2, uintmax_t{4096}, uintmax_t{50}, uintmax_t{0}}) {
    SCOPED_TRACE("truncated to " + std::to_string(truncated) + " of " + std::to_string(size) + " bytes");
    fs::resize_file(DbPath(), truncated);
    EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kDataLoss, {DbPath()}));
    EXPECT_EQ(fs::file_size(DbPath()), truncated) << "the store changed the damaged file";
    WriteFile(DbPath(), bytes);
  }
  // The intact file still opens.
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto rows = store->LoadAll();
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->size(), 300u);
}

TEST_F(SqliteJobStoreTest, DamagedPageFailsTheCheckAtOpen) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 300; ++i) {
      StoredJob row = Row("job" + std::to_string(i), i, 1);
      row.job.mutable_request()->set_prompt(std::string(400, 'p'));
      ASSERT_TRUE(store->Put(row).ok());
    }
  }
  // Page 1 (the header and the schema) stays intact, so only a check of the whole file finds this.
  std::string bytes = ReadFile(DbPath());
  ASSERT_GT(bytes.size(), 8u * 4096);
  const std::string garbage = RandomBytes(4096, 6);
  bytes.replace(4 * 4096, 4096, garbage);
  WriteFile(DbPath(), bytes);
  EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kDataLoss, {DbPath()}));
}

TEST_F(SqliteJobStoreTest, DirectoryInPlaceOfTheDatabaseFailsOpen) {
  ASSERT_TRUE(fs::create_directories(DbPath()));
  EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kFailedPrecondition, {DbPath(), "directory"}));
}

TEST_F(SqliteJobStoreTest, DataDirThatIsAFileFailsOpen) {
  const std::string data_dir = dir_.path() + "/file";
  WriteFile(data_dir, "not a directory");
  const absl::Status status = SqliteJobStore::Open({.data_dir = data_dir}).status();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(data_dir), std::string_view::npos) << status;
}

TEST_F(SqliteJobStoreTest, UnreadableDatabaseFailsOpen) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads and writes files whatever their mode";
  ASSERT_NE(OpenOrDie(), nullptr);
  ASSERT_EQ(chmod(DbPath().c_str(), 0), 0);
  EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kUnavailable, {DbPath()}));
  ASSERT_EQ(chmod(DbPath().c_str(), 0444), 0);
  EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kUnavailable, {DbPath(), "read-only"}));
  chmod(DbPath().c_str(), 0644);
}

TEST_F(SqliteJobStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(OpenOrDie(), nullptr);
  ExecSql("PRAGMA user_version = " + std::to_string(SqliteJobStore::kSchemaVersion + 1));
  EXPECT_TRUE(StatusIs(Open().status(), absl::StatusCode::kFailedPrecondition,
                       {DbPath(), "schema version " + std::to_string(SqliteJobStore::kSchemaVersion + 1)}));
}

TEST_F(SqliteJobStoreTest, UnparseableJobIsDataLossNamingTheJobAndTheFile) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put(Row("a1", 1, 1)).ok());
    ASSERT_TRUE(store->Put(Row("b2", 2, 1)).ok());
  }
  ExecSql("UPDATE jobs SET job = x'ffffffff' WHERE id = 'b2'");
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(StatusIs(store->LoadAll().status(), absl::StatusCode::kDataLoss, {DbPath(), "'b2'", "does not parse"}));

  // A row that parses but holds another job is damaged too.
  store.reset();
  ExecSql("UPDATE jobs SET job = (SELECT job FROM jobs WHERE id = 'a1') WHERE id = 'b2'");
  store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(StatusIs(store->LoadAll().status(), absl::StatusCode::kDataLoss, {"'b2'", "'a1'"}));
}

TEST_F(SqliteJobStoreTest, FailedWritesAreUnavailableAndKeepThePreviousRow) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const StoredJob queued = Row("a1", 1, 1);
  ASSERT_TRUE(store->Put(queued).ok());
  ASSERT_TRUE(store->WriteVideo("a1", "old video").ok());

  absl::Status put, insert, remove;
  absl::StatusOr<std::string> video;
  {
    FileSizeLimit limit(1);
    ASSERT_TRUE(limit.applied());
    put = store->Put(Row("a1", 1, 2, v1::JOB_STATE_RUNNING));
    insert = store->Put(Row("b2", 2, 1));
    remove = store->Delete("a1");
    video = store->WriteVideo("b2", RandomBytes(64 * 1024, 5));
  }
  const std::string prefix = "store sqlite:" + DbPath() + ": ";
  EXPECT_TRUE(StatusIs(put, absl::StatusCode::kUnavailable, {prefix + "cannot save job 'a1': "}));
  EXPECT_TRUE(StatusIs(insert, absl::StatusCode::kUnavailable, {prefix + "cannot save job 'b2': "}));
  EXPECT_TRUE(StatusIs(remove, absl::StatusCode::kUnavailable, {prefix + "cannot delete job 'a1': "}));
  EXPECT_TRUE(
      StatusIs(video.status(), absl::StatusCode::kUnavailable, {VideosPath() + "/b2.mp4.tmp-", "File too large"}));
  // Nothing half-written: the previous row, the old video and no temporary file.
  auto rows = store->LoadAll();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  ExpectSameRow((*rows)[0], queued);
  EXPECT_EQ(FileNames(VideosPath()), std::vector<std::string>{"a1.mp4"});

  // Once the disk takes writes again the same store works, and what it wrote lasts.
  const StoredJob running = Row("a1", 1, 2, v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(store->Put(running).ok());
  ASSERT_TRUE(store->WriteVideo("b2", "new video").ok());
  store.reset();
  store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  rows = store->LoadAll();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  ExpectSameRow((*rows)[0], running);
  auto reader = store->OpenVideo("b2.mp4");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*(*reader)->Read(0, 100), "new video");
}

TEST_F(SqliteJobStoreTest, FailedWriteOfALargeTransactionRollsBack) {
  // A Put whose row spans many pages fails part way through writing the log.
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put(Row("a1", 1, 1)).ok());
  StoredJob big = Row("a1", 1, 2);
  big.job.mutable_request()->set_prompt(std::string(256 * 1024, 'x'));
  absl::Status put;
  {
    const uintmax_t wal_bytes = fs::file_size(DbPath() + "-wal");
    FileSizeLimit limit(wal_bytes + 64 * 1024);
    ASSERT_TRUE(limit.applied());
    put = store->Put(big);
  }
  EXPECT_TRUE(StatusIs(put, absl::StatusCode::kUnavailable, {"cannot save job 'a1'"}));
  store.reset();
  store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto rows = store->LoadAll();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  ExpectSameRow((*rows)[0], Row("a1", 1, 1));
}

TEST_F(SqliteJobStoreTest, LeftoverTemporaryVideosAreRemovedAtOpen) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->WriteVideo("a1", "kept").ok());
  }
  // What a crash between create and rename leaves behind.
  WriteFile(VideosPath() + "/b2.mp4.tmp-0123456789abcdef", "partial");
  WriteFile(VideosPath() + "/a1.mp4.tmp-fedcba9876543210", "partial");
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(FileNames(VideosPath()), std::vector<std::string>{"a1.mp4"});
  auto reader = store->OpenVideo("a1.mp4");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*(*reader)->Read(0, 10), "kept");
}

TEST_F(SqliteJobStoreTest, NamesThatCouldLeaveTheVideosDirectoryAreRefused) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> bad_ids = {"",
                                            "..",
                                            ".",
                                            "../jobs",
                                            "a/b",
                                            "/etc/x",
                                            "a.b",
                                            "a b",
                                            std::string("a\0b", 3),
                                            "a\\b",
                                            "\xc3\xa9t\xc3\xa9",
                                            std::string(129, 'a')};
  for (const std::string& id : bad_ids) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(StatusIs(store->WriteVideo(id, "x").status(), absl::StatusCode::kInvalidArgument, {"job id"}));
  }
  const std::vector<std::string> bad_names = {
      "../jobs.db", "jobs.db",     "..mp4",    ".mp4", "a/../../jobs.db.mp4",
      "a.mp4/",     "a.mp4.tmp-0", "../a.mp4", "a",    std::string(129, 'a') + ".mp4"};
  for (const std::string& name : bad_names) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(StatusIs(store->OpenVideo(name).status(), absl::StatusCode::kInvalidArgument, {"video name"}));
    EXPECT_TRUE(StatusIs(store->DeleteVideo(name), absl::StatusCode::kInvalidArgument, {"video name"}));
  }
  EXPECT_TRUE(fs::is_regular_file(DbPath()));
  EXPECT_TRUE(fs::is_directory(VideosPath()));

  const std::string longest(128, 'Z');
  auto name = store->WriteVideo(longest, "x");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_TRUE(store->OpenVideo(*name).ok());
  EXPECT_TRUE(store->WriteVideo("0-9_aZ", "x").ok());
}

TEST_F(SqliteJobStoreTest, PutRefusesNumbersSqliteCannotOrder) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(StatusIs(store->Put(Row("a1", 1, uint64_t{1} << 63)), absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace radial::server
