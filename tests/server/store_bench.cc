// Put throughput of the SQLite job store for new jobs (one Put per job, as Submit does), with
// synchronous=FULL and synchronous=NORMAL. Prints numbers; not a test.
//
//   store_bench [--jobs N] [--dir PARENT]
//
// Each mode gets a fresh data directory under PARENT (default $TMPDIR or /tmp), removed afterwards.
// PARENT decides what is measured: fsync on tmpfs costs nothing.
#include <stdlib.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_format.h"
#include "store/sqlite_job_store.h"

namespace radial::server {
namespace {

struct Result {
  double seconds = 0;
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double load_all_ms = 0;
  uintmax_t file_bytes = 0;
};

// A job as Submit stores it: queued, with a resolved request of typical size.
StoredJob NewJob(int i) {
  StoredJob row;
  row.job.set_id(absl::StrFormat("%016x", 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1)));
  row.job.set_state(v1::JOB_STATE_QUEUED);
  v1::GenerateRequest& request = *row.job.mutable_request();
  request.set_prompt(absl::StrFormat("a red fox running through fresh snow at dawn, cinematic, take %d", i));
  request.set_model("wan2.1-t2v-1.3b");
  request.set_width(832);
  request.set_height(480);
  request.set_frames(81);
  request.set_steps(50);
  request.set_guidance(5.0f);
  request.set_seed(static_cast<uint64_t>(i) * 7919);
  request.set_request_id(absl::StrFormat("client-%08d", i));
  row.job.set_created_unix_ms(1700000000000 + i);
  row.sequence = static_cast<uint64_t>(i) + 1;
  row.version = 1;
  return row;
}

double Percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index = std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[index];
}

bool Run(const std::string& parent, bool synchronous_full, int jobs, Result* result) {
  std::string pattern = (std::filesystem::path(parent) / "store_bench.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "store_bench: cannot create a directory under %s\n", parent.c_str());
    return false;
  }
  const std::string dir = pattern;
  bool ok = true;
  {
    auto store = SqliteJobStore::Open({.data_dir = dir, .synchronous_full = synchronous_full});
    if (!store.ok()) {
      std::fprintf(stderr, "store_bench: %s\n", store.status().ToString().c_str());
      ok = false;
    }
    std::vector<StoredJob> rows;
    for (int i = 0; ok && i < jobs; ++i) rows.push_back(NewJob(i));
    std::vector<double> latencies_us;
    latencies_us.reserve(rows.size());
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; ok && i < rows.size(); ++i) {
      const auto before = std::chrono::steady_clock::now();
      const absl::Status status = (*store)->Put(rows[i]);
      const auto after = std::chrono::steady_clock::now();
      if (!status.ok()) {
        std::fprintf(stderr, "store_bench: %s\n", status.ToString().c_str());
        ok = false;
      }
      latencies_us.push_back(std::chrono::duration<double, std::micro>(after - before).count());
    }
    if (ok) {
      result->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::sort(latencies_us.begin(), latencies_us.end());
      result->p50_us = Percentile(latencies_us, 0.50);
      result->p99_us = Percentile(latencies_us, 0.99);
      result->max_us = latencies_us.back();
      const auto load_start = std::chrono::steady_clock::now();
      auto loaded = (*store)->LoadAll();
      result->load_all_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
      if (!loaded.ok() || loaded->size() != rows.size()) {
        std::fprintf(stderr, "store_bench: LoadAll: %s\n", loaded.status().ToString().c_str());
        ok = false;
      }
    }
  }
  std::error_code ec;
  result->file_bytes = std::filesystem::file_size(dir + "/jobs.db", ec);
  std::filesystem::remove_all(dir, ec);
  return ok;
}

int Main(int argc, char** argv) {
  int jobs = 2000;
  const char* tmpdir = getenv("TMPDIR");
  std::string parent = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--jobs" && i + 1 < argc) {
      const std::string_view value = argv[++i];
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), jobs);
      if (error != std::errc() || end != value.data() + value.size() || jobs < 1) {
        std::fprintf(stderr, "store_bench: --jobs: got '%s', expected a positive integer\n", argv[i]);
        return 2;
      }
    } else if (arg == "--dir" && i + 1 < argc) {
      parent = argv[++i];
    } else {
      std::fprintf(stderr, "usage: store_bench [--jobs N] [--dir PARENT]\n");
      return 2;
    }
  }
  std::printf("store_bench: %d new-job Puts per mode, data dir under %s\n", jobs, parent.c_str());
  std::printf("%-12s %10s %10s %10s %10s %12s %10s\n", "synchronous", "jobs/s", "p50_us", "p99_us", "max_us",
              "load_all_ms", "db_bytes");
  for (const bool full : {true, false}) {
    Result result;
    if (!Run(parent, full, jobs, &result)) return 1;
    std::printf("%-12s %10.0f %10.1f %10.1f %10.1f %12.1f %10ju\n", full ? "FULL" : "NORMAL", jobs / result.seconds,
                result.p50_us, result.p99_us, result.max_us, result.load_all_ms, result.file_bytes);
  }
  return 0;
}

}  // namespace
}  // namespace radial::server

int main(int argc, char** argv) { return radial::server::Main(argc, argv); }
