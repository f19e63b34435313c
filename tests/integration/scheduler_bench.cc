// Benchmarks a real radial-scheduler process with --sqlite-synchronous full and normal (not a test:
// it prints numbers):
//   submit     Submit throughput and latency from concurrent client threads; a fake worker
//              announces the model and takes no job, so every job is one durable insert.
//   retention  jobs run to the end by a fake worker that answers each assignment at once with a
//              small fake video; the scheduler's RSS (VmRSS) before, with all of them retained,
//              and after a restart that loads them from the store.
// Usage: scheduler_bench [--scheduler PATH] [--submits N] [--threads N] [--retained N] [--dir DIR]
// (the scheduler defaults to RADIAL_SCHEDULER_BIN, else the one built alongside).
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "tests/integration/process.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/tiny_model_info.h"

namespace radial {
namespace {

using radial::testing::ChildProcess;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kFrames = 1;

struct BenchOptions {
  std::string scheduler;
  std::filesystem::path dir;
  int submits = 2000;
  int threads = 4;
  int retained = 10000;
};

std::chrono::system_clock::time_point DeadlineIn(std::chrono::milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

// A worker without a model: Hello with the tiny model's limits, heartbeats, and either no answer
// to assignments (capacity 1: one job sits on it) or, with `complete`, a fake video and Done for
// each at once.
class FakeWorker {
 public:
  FakeWorker(const std::string& address, uint32_t capacity, bool complete)
      : stub_(v1::WorkerService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        complete_(complete),
        video_(radial::testing::FakeFmp4(kFrames)) {
    stream_ = stub_->Connect(&context_);
    v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(complete ? "bench-instant" : "bench-idle");
    hello.mutable_hello()->set_capacity(capacity);
    hello.mutable_hello()->set_device("none (benchmark)");
    *hello.mutable_hello()->add_models() = radial::testing::TinyModelInfo();
    Write(hello);
    reader_ = std::thread([this] { Read(); });
    heartbeat_ = std::thread([this] {
      while (!stopping_) {
        for (int i = 0; i < 20 && !stopping_; ++i) std::this_thread::sleep_for(milliseconds(50));
        v1::WorkerMessage beat;
        beat.mutable_heartbeat()->set_unix_ms(0);
        if (!Write(beat)) break;
      }
    });
  }
  ~FakeWorker() {
    stopping_ = true;
    context_.TryCancel();
    reader_.join();
    heartbeat_.join();
    (void)stream_->Finish();
  }

  uint64_t done() const { return done_; }
  size_t video_bytes() const { return video_.size(); }

 private:
  bool Write(const v1::WorkerMessage& message) {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return stream_->Write(message);
  }

  void Read() {
    v1::SchedulerMessage message;
    while (stream_->Read(&message)) {
      if (!complete_ || !message.has_assign()) continue;
      const std::string& job_id = message.assign().job_id();
      v1::WorkerMessage chunk;
      chunk.mutable_chunk()->set_job_id(job_id);
      chunk.mutable_chunk()->mutable_chunk()->set_offset(0);
      chunk.mutable_chunk()->mutable_chunk()->set_data(video_);
      v1::WorkerMessage done;
      done.mutable_done()->set_job_id(job_id);
      done.mutable_done()->mutable_stats()->set_frames(message.assign().request().frames());
      done.mutable_done()->mutable_stats()->set_video_bytes(video_.size());
      if (!Write(chunk) || !Write(done)) break;
      ++done_;
    }
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const bool complete_;
  const std::string video_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream_;
  std::mutex write_mutex_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> done_{0};
  std::thread reader_, heartbeat_;
};

// A scheduler process on its own data dir, port 0 (read back from --port-file).
struct Scheduler {
  ChildProcess process;
  std::string address;
};

bool StartScheduler(const BenchOptions& options, const std::filesystem::path& dir, const std::string& synchronous,
                    Scheduler& scheduler) {
  std::filesystem::remove(dir / "port");
  scheduler.process =
      ChildProcess({options.scheduler, "--listen", "127.0.0.1:0", "--port-file", (dir / "port").string(), "--data-dir",
                    (dir / "data").string(), "--sqlite-synchronous", synchronous, "--queue-capacity", "1048576",
                    "--retain-jobs", std::to_string(options.retained)},
                   dir / "scheduler.log");
  const int port = radial::testing::AwaitPortFile(dir / "port", scheduler.process, seconds(20));
  if (port == 0) {
    std::cerr << "scheduler_bench: radial-scheduler did not start; see " << (dir / "scheduler.log") << "\n";
    return false;
  }
  scheduler.address = "127.0.0.1:" + std::to_string(port);
  return true;
}

bool AwaitModel(v1::VideoService::Stub& stub) {
  const auto deadline = Clock::now() + seconds(20);
  while (Clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(seconds(5)));
    v1::ListModelsResponse models;
    if (stub.ListModels(&context, v1::ListModelsRequest(), &models).ok() && models.models_size() == 1) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::cerr << "scheduler_bench: the fake worker's model was not listed\n";
  return false;
}

v1::GenerateRequest Request(uint64_t seed) {
  v1::GenerateRequest request;
  request.set_prompt("a red fox running through fresh snow");
  request.set_width(64);
  request.set_height(64);
  request.set_frames(kFrames);
  request.set_steps(1);
  request.set_seed(seed);
  return request;
}

struct SubmitResult {
  int ok = 0, failed = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;
};

// `count` Submits spread over `threads` client threads (each with its own channel). `pace`, when
// given, runs before each Submit (and may wait).
SubmitResult SubmitFromThreads(const std::string& address, int count, int threads,
                               const std::function<void(int)>& pace = nullptr) {
  SubmitResult result;
  std::mutex mutex;
  std::atomic<int> next{0};
  const auto started = Clock::now();
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&] {
      grpc::ChannelArguments arguments;
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per thread
      auto stub =
          v1::VideoService::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments));
      std::vector<double> latencies;
      int failed = 0;
      for (int n = next++; n < count; n = next++) {
        if (pace) pace(n);
        grpc::ClientContext context;
        context.set_deadline(DeadlineIn(seconds(30)));
        v1::Job job;
        const auto sent = Clock::now();
        const grpc::Status status = stub->Submit(&context, Request(static_cast<uint64_t>(n)), &job);
        latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
        if (!status.ok()) {
          if (failed++ == 0) std::cerr << "scheduler_bench: Submit: " << status.error_message() << "\n";
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      result.failed += failed;
      result.ok += static_cast<int>(latencies.size()) - failed;
      result.latencies_ms.insert(result.latencies_ms.end(), latencies.begin(), latencies.end());
    });
  }
  for (std::thread& client : clients) client.join();
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::sort(result.latencies_ms.begin(), result.latencies_ms.end());
  return result;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())))];
}

// Jobs not yet ended (queued, running, or with their video being saved).
int Unfinished(v1::VideoService::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(seconds(10)));
  v1::ListJobsRequest request;
  request.add_states(v1::JOB_STATE_QUEUED);
  request.add_states(v1::JOB_STATE_RUNNING);
  request.set_page_size(1);
  v1::ListJobsResponse response;
  if (!stub.ListJobs(&context, request, &response).ok()) return -1;
  return response.jobs_size();
}

int Succeeded(v1::VideoService::Stub& stub) {
  int count = 0;
  std::string token;
  do {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(seconds(30)));
    v1::ListJobsRequest request;
    request.add_states(v1::JOB_STATE_SUCCEEDED);
    request.set_page_size(1000);
    request.set_page_token(token);
    v1::ListJobsResponse response;
    if (!stub.ListJobs(&context, request, &response).ok()) return -1;
    count += response.jobs_size();
    token = response.next_page_token();
  } while (!token.empty());
  return count;
}

double Mib(long kib) { return static_cast<double>(kib) / 1024.0; }

struct SubmitRow {
  std::string mode;
  SubmitResult result;
};
struct RetentionRow {
  std::string mode;
  int succeeded = 0, kept_after_restart = 0;
  double jobs_per_second = 0;
  int window = 0;  // jobs/s also over the first and the last `window` jobs
  double first_window_jobs_per_second = 0, last_window_jobs_per_second = 0;
  long rss_start_kib = 0, rss_kept_kib = 0, rss_restart_kib = 0;
};

bool BenchSubmit(const BenchOptions& options, const std::string& mode, SubmitRow& row) {
  const std::filesystem::path dir = options.dir / ("submit-" + mode);
  std::filesystem::create_directories(dir);
  Scheduler scheduler;
  if (!StartScheduler(options, dir, mode, scheduler)) return false;
  auto stub = v1::VideoService::NewStub(grpc::CreateChannel(scheduler.address, grpc::InsecureChannelCredentials()));
  FakeWorker worker(scheduler.address, 1, /*complete=*/false);
  if (!AwaitModel(*stub)) return false;
  row.mode = mode;
  row.result = SubmitFromThreads(scheduler.address, options.submits, options.threads);
  scheduler.process.Signal(SIGTERM);
  (void)scheduler.process.Wait(seconds(10));
  return true;
}

bool BenchRetention(const BenchOptions& options, const std::string& mode, RetentionRow& row) {
  const std::filesystem::path dir = options.dir / ("retention-" + mode);
  std::filesystem::create_directories(dir);
  Scheduler scheduler;
  if (!StartScheduler(options, dir, mode, scheduler)) return false;
  row.mode = mode;
  auto stub = v1::VideoService::NewStub(grpc::CreateChannel(scheduler.address, grpc::InsecureChannelCredentials()));
  {
    FakeWorker worker(scheduler.address, 16, /*complete=*/true);
    if (!AwaitModel(*stub)) return false;
    std::this_thread::sleep_for(milliseconds(500));  // let the process settle after start-up
    row.rss_start_kib = radial::testing::ResidentKib(scheduler.process.pid());
    // At most kBacklog jobs submitted and not yet run (the default --queue-capacity), so that the
    // rate is that of running jobs with a growing history, not of a growing queue. (The fake worker
    // gets its next job only once the scheduler has taken its last Done.)
    constexpr int64_t kBacklog = 256;
    const auto started = Clock::now();
    SubmitResult submitted;
    std::thread submitter([&] {
      submitted = SubmitFromThreads(scheduler.address, options.retained, options.threads, [&](int n) {
        while (n - static_cast<int64_t>(worker.done()) > kBacklog) std::this_thread::sleep_for(milliseconds(1));
      });
    });
    // Progress samples: when the worker had run each job count; the end is when none is left unfinished.
    const int window = std::min(1000, options.retained);
    std::optional<Clock::time_point> first_window_end, last_window_start;
    const auto deadline = Clock::now() + std::chrono::minutes(10);
    while (Clock::now() < deadline) {
      const int done = static_cast<int>(worker.done());
      if (!first_window_end && done >= window) first_window_end = Clock::now();
      if (!last_window_start && done >= options.retained - window) last_window_start = Clock::now();
      if (done >= options.retained && Unfinished(*stub) == 0) break;
      std::this_thread::sleep_for(milliseconds(2));
    }
    const auto finished = Clock::now();
    submitter.join();
    if (submitted.failed > 0) std::cerr << "scheduler_bench: " << submitted.failed << " submits failed\n";
    const auto rate = [](int jobs, Clock::time_point from, Clock::time_point to) {
      return jobs / std::chrono::duration<double>(to - from).count();
    };
    row.window = window;
    row.jobs_per_second = rate(options.retained, started, finished);
    if (first_window_end) row.first_window_jobs_per_second = rate(window, started, *first_window_end);
    if (last_window_start) row.last_window_jobs_per_second = rate(window, *last_window_start, finished);
    row.succeeded = Succeeded(*stub);
    row.rss_kept_kib = radial::testing::ResidentKib(scheduler.process.pid());
  }
  scheduler.process.Signal(SIGTERM);
  (void)scheduler.process.Wait(seconds(10));
  if (!StartScheduler(options, dir, mode, scheduler)) return false;
  stub = v1::VideoService::NewStub(grpc::CreateChannel(scheduler.address, grpc::InsecureChannelCredentials()));
  row.kept_after_restart = Succeeded(*stub);
  row.rss_restart_kib = radial::testing::ResidentKib(scheduler.process.pid());
  scheduler.process.Signal(SIGTERM);
  (void)scheduler.process.Wait(seconds(10));
  return true;
}

int Main(int argc, char** argv) {
  BenchOptions options;
  options.scheduler = radial::testing::Env("RADIAL_SCHEDULER_BIN");
  if (options.scheduler.empty()) options.scheduler = RADIAL_SCHEDULER_BUILT;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "usage: scheduler_bench [--scheduler PATH] [--submits N] [--threads N] [--retained N] [--dir DIR]\n";
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--scheduler") {
      options.scheduler = value;
    } else if (flag == "--submits") {
      options.submits = std::stoi(value);
    } else if (flag == "--threads") {
      options.threads = std::max(1, std::stoi(value));
    } else if (flag == "--retained") {
      options.retained = std::max(1, std::stoi(value));
    } else if (flag == "--dir") {
      dir = value;
    } else {
      std::cerr << "scheduler_bench: unknown flag " << flag << "\n";
      return 2;
    }
  }
  bool temporary = false;
  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "scheduler_bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "scheduler_bench: cannot create a temporary directory\n";
      return 1;
    }
    dir = pattern;
    temporary = true;
  }
  options.dir = dir;
  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  std::cout << "scheduler_bench: " << options.scheduler << ", data in " << options.dir << ", "
            << std::thread::hardware_concurrency() << " CPUs, load average " << load << " at start\n";

  std::vector<SubmitRow> submits;
  std::vector<RetentionRow> retention;
  bool ok = true;
  for (const char* mode : {"full", "normal"}) {
    SubmitRow row;
    if (!(ok = BenchSubmit(options, mode, row))) break;
    submits.push_back(row);
  }
  for (const char* mode : {"full", "normal"}) {
    if (!ok) break;
    RetentionRow row;
    if (!(ok = BenchRetention(options, mode, row))) break;
    retention.push_back(row);
  }

  std::printf("\nSubmit: %d jobs from %d client threads (they queue; the fake worker takes none)\n", options.submits,
              options.threads);
  std::printf("  %-12s %8s %9s %8s %8s %8s\n", "synchronous", "ok", "jobs/s", "p50 ms", "p99 ms", "max ms");
  for (const SubmitRow& row : submits) {
    const std::vector<double>& l = row.result.latencies_ms;
    std::printf("  %-12s %8d %9.0f %8.2f %8.2f %8.2f\n", row.mode.c_str(), row.result.ok,
                row.result.ok / row.result.seconds, Percentile(l, 0.50), Percentile(l, 0.99),
                l.empty() ? 0.0 : l.back());
  }
  std::printf("\nRetention: %d jobs run by an instant fake worker (%zu-byte videos) and kept (--retain-jobs %d)\n",
              options.retained, radial::testing::FakeFmp4(kFrames).size(), options.retained);
  std::printf("  %-12s %10s %10s %10s %10s %14s %13s %9s %15s\n", "synchronous", "succeeded", "run jobs/s", "first",
              "last", "RSS start MiB", "RSS kept MiB", "reloaded", "RSS reload MiB");
  for (const RetentionRow& row : retention) {
    std::printf("  %-12s %10d %10.0f %10.0f %10.0f %14.1f %13.1f %9d %15.1f\n", row.mode.c_str(), row.succeeded,
                row.jobs_per_second, row.first_window_jobs_per_second, row.last_window_jobs_per_second,
                Mib(row.rss_start_kib), Mib(row.rss_kept_kib), row.kept_after_restart, Mib(row.rss_restart_kib));
  }
  std::printf(
      "  (run jobs/s: submitted and run to SUCCEEDED, video stored, at most 256 outstanding; first, last: the same\n"
      "   over the first and the last %d jobs; RSS start: model announced, no jobs; kept: all of them retained;\n"
      "   reload: after SIGTERM and a restart that loads them from the store)\n",
      retention.empty() ? 0 : retention.front().window);
  if (temporary && ok) {
    std::error_code ignored;
    std::filesystem::remove_all(options.dir, ignored);
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace radial

int main(int argc, char** argv) { return radial::Main(argc, argv); }
