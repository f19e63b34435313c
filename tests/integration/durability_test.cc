// Durability and lifecycle of the real processes: a radial-scheduler killed with SIGKILL or stopped
// with SIGTERM and started again on the same --data-dir and port, radial-worker processes drained
// with SIGTERM, and a damaged database at start. Clients are real gRPC clients; where a test needs
// a model but no video (crash loops, shutdown), a fake worker in this process announces one.
// Binaries and bundle come from the environment (RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN,
// RADIAL_TEST_BUNDLE; set by ctest). Every wait has a deadline.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "tests/integration/process.h"
#include "tests/server/tiny_model_info.h"
#include "tests/worker/mp4_inspect.h"

namespace radial {
namespace {

using radial::testing::ChildProcess;
using radial::testing::DescribeWaitStatus;
using radial::testing::Env;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Loading the tiny bundle takes a few seconds, more on a busy 2-core machine.
constexpr auto kWorkerStartTimeout = seconds(90);
constexpr auto kSchedulerStartTimeout = seconds(20);
constexpr auto kRpcTimeout = seconds(10);
constexpr auto kJobTimeout = seconds(120);

std::chrono::system_clock::time_point DeadlineIn(std::chrono::milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

// A channel that reconnects within ~100 ms of the server coming back (gRPC's default backoff
// starts at a second), with its own subchannels so that no other channel's backoff carries over.
// (gRPC takes the "min reconnect backoff" as the connect timeout: it stays generous.)
std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
}

// A worker as the scheduler sees it, with no model behind it: it says Hello with the tiny model's
// limits and capacity 1, heartbeats, and reconnects whenever its stream ends (the scheduler was
// killed or stopped). It never runs a job: an assigned job stays RUNNING on it.
class IdleWorker {
 public:
  IdleWorker(std::string address, std::string id)
      : address_(std::move(address)), id_(std::move(id)), thread_([this] { Run(); }) {}
  ~IdleWorker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    wake_.notify_all();
    thread_.join();
  }

  int hellos() const { return hellos_; }

 private:
  void Run() {
    while (true) {
      // A new channel for every stream, and only once it is connected: a stream started on a
      // channel that is still reconnecting to a killed server can stay pending long after the
      // server is back (seen with gRPC 1.51's pick_first).
      const std::shared_ptr<grpc::Channel> channel = Channel(address_);
      if (!channel->WaitForConnected(DeadlineIn(milliseconds(500)))) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (wake_.wait_for(lock, milliseconds(20), [this] { return stopping_; })) return;
        continue;
      }
      const auto stub = v1::WorkerService::NewStub(channel);
      grpc::ClientContext context;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        context_ = &context;
      }
      auto stream = stub->Connect(&context);
      v1::WorkerMessage hello;
      hello.mutable_hello()->set_worker_id(id_);
      hello.mutable_hello()->set_capacity(1);
      hello.mutable_hello()->set_device("none (test)");
      *hello.mutable_hello()->add_models() = radial::testing::TinyModelInfo();
      if (stream->Write(hello)) {
        ++hellos_;
        std::atomic<bool> ended = false;
        std::thread heartbeat([&] {
          std::unique_lock<std::mutex> lock(mutex_);
          while (!ended && !stopping_) {
            wake_.wait_for(lock, milliseconds(200));
            if (ended || stopping_) break;
            v1::WorkerMessage beat;
            beat.mutable_heartbeat()->set_unix_ms(0);
            lock.unlock();
            const bool written = stream->Write(beat);
            lock.lock();
            if (!written) break;
          }
        });
        v1::SchedulerMessage message;
        while (stream->Read(&message)) {
        }
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ended = true;
        }
        wake_.notify_all();
        heartbeat.join();
      }
      context.TryCancel();
      (void)stream->Finish();
      {
        std::unique_lock<std::mutex> lock(mutex_);
        context_ = nullptr;
        wake_.wait_for(lock, milliseconds(20), [this] { return stopping_; });
      }
    }
  }

  const std::string address_;
  const std::string id_;
  std::atomic<int> hellos_{0};
  std::mutex mutex_;  // guards stopping_ and context_
  std::condition_variable wake_;
  bool stopping_ = false;
  grpc::ClientContext* context_ = nullptr;  // the stream in progress, for the destructor's cancel
  std::thread thread_;                      // last: started once the members above exist
};

// What a Watch (or Generate) stream delivered.
struct Watched {
  std::string bytes;  // of the latest attempt: cleared by Restarted
  std::vector<v1::JobEvent> events;
  grpc::Status status;
  bool stopped = false;  // the caller's predicate ended the stream early
  bool completed = false, failed = false, cancelled = false;
  bool restarted = false;
  v1::Restarted restart;  // the last Restarted event

  std::string Describe() const {
    std::string text;
    for (const v1::JobEvent& event : events) {
      switch (event.event_case()) {
        case v1::JobEvent::kAccepted:
          text += "accepted ";
          break;
        case v1::JobEvent::kProgress:
          text += "progress ";
          break;
        case v1::JobEvent::kChunk:
          text += "chunk ";
          break;
        case v1::JobEvent::kCompleted:
          text += "completed ";
          break;
        case v1::JobEvent::kFailed:
          text += "failed(" + event.failed().message() + ") ";
          break;
        case v1::JobEvent::kCancelled:
          text += "cancelled(" + event.cancelled().message() + ") ";
          break;
        case v1::JobEvent::kRestarted:
          text += "restarted(" + event.restarted().reason() + ") ";
          break;
        default:
          text += "? ";
          break;
      }
    }
    return text + "| status " + std::to_string(status.error_code()) + " " + status.error_message();
  }
};

bool IsDenoising(const v1::JobEvent& event) {
  return event.has_progress() && event.progress().stage() == v1::STAGE_DENOISING;
}

// Each test gets its own directory (logs, data dir, port file), a port picked free at start (so that
// a restarted scheduler comes back where its workers and clients look for it) and helpers to drive
// the processes. The directory is removed when the test passes (kept with RADIAL_KEEP_TEST_DIR=1).
class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Env("RADIAL_SCHEDULER_BIN").empty()) << "set RADIAL_SCHEDULER_BIN (ctest does)";
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = std::filesystem::temp_directory_path() / ("radial_durability_" + std::to_string(getpid())) / name;
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    data_dir_ = dir_ / "data";
    port_ = radial::testing::PickFreePort();
    ASSERT_GT(port_, 0);
    address_ = "127.0.0.1:" + std::to_string(port_);
  }

  void TearDown() override {
    for (auto& [id, worker] : workers_) worker.Kill();
    scheduler_.Kill();
    if (HasFailure() || !Env("RADIAL_KEEP_TEST_DIR").empty()) {
      std::cerr << "logs and data of the test are in " << dir_ << "\n";
    } else {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
      std::filesystem::remove(dir_.parent_path(), ignored);  // once empty: the last test of the run
    }
  }

  std::vector<std::string> SchedulerArgs(const std::vector<std::string>& extra) const {
    std::vector<std::string> args = {
        Env("RADIAL_SCHEDULER_BIN"), "--listen", address_, "--data-dir", data_dir_.string(), "--port-file",
        (dir_ / "port").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Starts the scheduler on this test's port and data dir with `extra` flags, and waits until it
  // listens.
  ::testing::AssertionResult StartScheduler(const std::vector<std::string>& extra) {
    scheduler_flags_ = extra;
    return RestartScheduler();
  }
  // Starts it again as StartScheduler did last.
  ::testing::AssertionResult RestartScheduler() {
    std::filesystem::remove(dir_ / "port");
    scheduler_ = ChildProcess(SchedulerArgs(scheduler_flags_), dir_ / "scheduler.log");
    if (!scheduler_.running()) return ::testing::AssertionFailure() << "cannot start " << Env("RADIAL_SCHEDULER_BIN");
    if (radial::testing::AwaitPortFile(dir_ / "port", scheduler_, kSchedulerStartTimeout) != port_) {
      return ::testing::AssertionFailure()
             << "radial-scheduler did not start listening on " << address_ << "; see " << (dir_ / "scheduler.log");
    }
    // A new client connection: the first call on the old one would fail with UNAVAILABLE.
    channel_ = Channel(address_);
    stub_ = v1::VideoService::NewStub(channel_);
    if (!channel_->WaitForConnected(DeadlineIn(kRpcTimeout))) {
      return ::testing::AssertionFailure() << "cannot connect to radial-scheduler at " << address_;
    }
    return ::testing::AssertionSuccess();
  }

  ChildProcess& StartWorker(const std::string& id, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        Env("RADIAL_WORKER_BIN"), "--bundle", Env("RADIAL_TEST_BUNDLE"), "--scheduler", address_, "--worker-id", id,
        "--warmup", "off"};
    args.insert(args.end(), extra.begin(), extra.end());
    return workers_[id] = ChildProcess(args, dir_ / (id + ".log"));
  }

  // The tiny bundle's model listed with `count` workers.
  ::testing::AssertionResult AwaitWorkers(uint32_t count, std::chrono::milliseconds timeout = kWorkerStartTimeout) {
    const auto deadline = Clock::now() + timeout;
    uint32_t seen = 0;
    while (Clock::now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(kRpcTimeout));
      v1::ListModelsResponse models;
      if (stub_->ListModels(&context, v1::ListModelsRequest(), &models).ok() && models.models_size() == 1) {
        seen = models.models(0).workers();
        if (seen == count) return ::testing::AssertionSuccess();
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return ::testing::AssertionFailure() << "got " << seen << " workers, expected " << count << "; see " << dir_;
  }

  bool NeedsWorkers() {
    if (Env("RADIAL_WORKER_BIN").empty() || Env("RADIAL_TEST_BUNDLE").empty()) {
      ADD_FAILURE() << "set RADIAL_WORKER_BIN and RADIAL_TEST_BUNDLE (ctest does)";
      return false;
    }
    return true;
  }

  // Requests the tiny bundle runs quickly on a CPU: a short one (~1 s) and one that denoises for a
  // few seconds.
  static v1::GenerateRequest ShortRequest(uint64_t seed, int32_t priority = 0) {
    v1::GenerateRequest request;
    request.set_prompt("a red fox running through fresh snow");
    request.set_width(64);
    request.set_height(64);
    request.set_frames(1);
    request.set_steps(2);
    request.set_seed(seed);
    request.set_priority(priority);
    return request;
  }
  static v1::GenerateRequest LongRequest(uint64_t seed, uint32_t steps = 20) {
    v1::GenerateRequest request = ShortRequest(seed);
    request.set_frames(17);
    request.set_steps(steps);
    return request;
  }

  grpc::Status Submit(const v1::GenerateRequest& request, v1::Job& job) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRpcTimeout));
    return stub_->Submit(&context, request, &job);
  }
  v1::Job MustSubmit(const v1::GenerateRequest& request) {
    v1::Job job;
    const grpc::Status status = Submit(request, job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  grpc::Status GetJob(const std::string& job_id, v1::Job& job) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRpcTimeout));
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    return stub_->GetJob(&context, request, &job);
  }
  v1::Job MustGetJob(const std::string& job_id) {
    v1::Job job;
    const grpc::Status status = GetJob(job_id, job);
    EXPECT_TRUE(status.ok()) << "job " << job_id << ": " << status.error_message();
    return job;
  }

  // Watches a job until its stream ends, or until `stop` returns true for an event (the stream is
  // then cancelled).
  Watched Watch(const std::string& job_id, uint64_t from_byte_offset = 0, uint32_t attempt = 0,
                const std::function<bool(const v1::JobEvent&)>& stop = nullptr,
                std::chrono::milliseconds timeout = kJobTimeout) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(timeout));
    v1::WatchRequest request;
    request.set_job_id(job_id);
    request.set_from_byte_offset(from_byte_offset);
    request.set_attempt(attempt);
    auto stream = stub_->Watch(&context, request);
    Watched result;
    uint64_t next_offset = from_byte_offset;
    v1::JobEvent event;
    while (stream->Read(&event)) {
      if (event.has_restarted()) {
        result.restarted = true;
        result.restart = event.restarted();
        result.bytes.clear();
        next_offset = 0;
      }
      if (event.has_chunk()) {
        EXPECT_EQ(event.chunk().offset(), next_offset) << "job " << job_id;
        result.bytes += event.chunk().data();
        next_offset = event.chunk().offset() + event.chunk().data().size();
      }
      result.completed |= event.has_completed();
      result.failed |= event.has_failed();
      result.cancelled |= event.has_cancelled();
      result.events.push_back(event);
      if (stop && stop(event)) {
        result.stopped = true;
        context.TryCancel();
        break;
      }
    }
    result.status = stream->Finish();
    return result;
  }

  std::filesystem::path dir_, data_dir_;
  int port_ = 0;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
  ChildProcess scheduler_;
  std::vector<std::string> scheduler_flags_;
  std::map<std::string, ChildProcess> workers_;
};

// (a) Finished, running and queued jobs all survive a SIGKILL of the scheduler: every acknowledged
// id is still known, finished videos come back byte for byte, the interrupted job runs again (its
// watcher is told, and the attempt is counted) and the queue keeps its priority order.
TEST_F(DurabilityTest, JobsSurviveASigkilledScheduler) {
  if (!NeedsWorkers()) return;
  ASSERT_TRUE(StartScheduler({}));
  StartWorker("restart-w1");
  ASSERT_TRUE(AwaitWorkers(1));

  const v1::Job first = MustSubmit(ShortRequest(1));
  const v1::Job second = MustSubmit(ShortRequest(2));
  const Watched first_video = Watch(first.id());
  const Watched second_video = Watch(second.id());
  ASSERT_TRUE(first_video.completed) << first_video.Describe();
  ASSERT_TRUE(second_video.completed) << second_video.Describe();
  ASSERT_NE(first_video.bytes, second_video.bytes);

  // The worker is idle, so the long job runs at once; the two after it wait, the later one ahead.
  const v1::Job running = MustSubmit(LongRequest(3));
  const v1::Job low = MustSubmit(ShortRequest(4, -1));
  const v1::Job high = MustSubmit(ShortRequest(5, 5));
  const Watched before = Watch(running.id(), 0, 0, IsDenoising);
  ASSERT_TRUE(before.stopped) << "the long job never reached denoising: " << before.Describe();
  ASSERT_GT(before.bytes.size(), 0u) << "the init segment comes before the first denoising step";
  EXPECT_EQ(MustGetJob(running.id()).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(MustGetJob(high.id()).queue_position(), 0u);
  EXPECT_EQ(MustGetJob(low.id()).queue_position(), 1u);

  scheduler_.Kill();
  ASSERT_TRUE(RestartScheduler());

  // Every acknowledged job answers at once, before the worker is back.
  const std::vector<std::string> acknowledged = {first.id(), second.id(), running.id(), low.id(), high.id()};
  for (const std::string& id : acknowledged) {
    v1::Job job;
    const grpc::Status status = GetJob(id, job);
    EXPECT_TRUE(status.ok()) << "job " << id << " after the restart: " << status.error_message();
  }
  EXPECT_EQ(MustGetJob(first.id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(MustGetJob(second.id()).state(), v1::JOB_STATE_SUCCEEDED);

  // A client that had bytes of attempt 1 resumes: it is told the job runs again, then gets the new
  // attempt from byte 0. The same seed gives the same bytes, so the new start matches the old.
  const Watched after = Watch(running.id(), before.bytes.size(), 1);
  ASSERT_TRUE(after.completed) << after.Describe();
  EXPECT_TRUE(after.restarted) << after.Describe();
  EXPECT_EQ(after.restart.attempt(), 2u);
  EXPECT_NE(after.restart.reason().find("restarted"), std::string::npos) << after.restart.reason();
  EXPECT_EQ(after.bytes.compare(0, before.bytes.size(), before.bytes), 0);
  const auto probe = worker::testing::ProbeMp4(after.bytes);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames_decoded, 17);

  for (const v1::Job& queued : {high, low}) {
    const Watched watched = Watch(queued.id());
    EXPECT_TRUE(watched.completed) << "job " << queued.id() << ": " << watched.Describe();
  }
  const v1::Job rerun = MustGetJob(running.id());
  EXPECT_EQ(rerun.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(rerun.attempts(), 2u) << "the interrupted run counts as an attempt";
  // Requeued at its old place: behind the higher priority, ahead of the lower.
  EXPECT_LT(MustGetJob(high.id()).started_unix_ms(), rerun.started_unix_ms());
  EXPECT_LT(rerun.started_unix_ms(), MustGetJob(low.id()).started_unix_ms());
  EXPECT_EQ(MustGetJob(low.id()).attempts(), 1u);

  // The finished videos come back from the store unchanged.
  const Watched first_again = Watch(first.id());
  const Watched second_again = Watch(second.id());
  ASSERT_TRUE(first_again.completed && second_again.completed) << first_again.Describe() << "\n"
                                                               << second_again.Describe();
  EXPECT_TRUE(first_again.bytes == first_video.bytes) << "first video changed across the restart";
  EXPECT_TRUE(second_again.bytes == second_video.bytes) << "second video changed across the restart";
}

// (b) Submits race SIGKILLs at random moments (fixed seed): every Submit that returned OK names a
// job the restarted scheduler still has.
TEST_F(DurabilityTest, EveryAcknowledgedSubmitSurvivesRepeatedSigkills) {
  constexpr int kKills = 16;
  ASSERT_TRUE(StartScheduler({"--queue-capacity", "1000000", "--queue-timeout", "604800"}));
  IdleWorker worker(address_, "crash-loop-worker");

  std::mutex acknowledged_mutex;
  std::vector<std::string> acknowledged;
  std::map<std::string, uint64_t> seeds;  // each acknowledged job's request seed
  std::map<int, int> refusals;            // by status code, for the log
  std::string last_refusal;
  std::atomic<bool> stop_submitting = false;
  std::thread submitter([&] {
    std::shared_ptr<grpc::Channel> channel = Channel(address_);
    auto stub = v1::VideoService::NewStub(channel);
    for (uint64_t n = 0; !stop_submitting; ++n) {
      if (channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
        channel = Channel(address_);  // see IdleWorker::Run
        stub = v1::VideoService::NewStub(channel);
      }
      v1::GenerateRequest request = ShortRequest(n, static_cast<int32_t>(n % 5) - 2);
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(seconds(1)));
      v1::Job job;
      const grpc::Status status = stub->Submit(&context, request, &job);
      {
        std::lock_guard<std::mutex> lock(acknowledged_mutex);
        if (status.ok()) {
          acknowledged.push_back(job.id());
          seeds[job.id()] = n;
          continue;
        }
        ++refusals[status.error_code()];
        last_refusal = status.error_message();
      }
      std::this_thread::sleep_for(milliseconds(2));
    }
  });

  std::mt19937 random(20261201);
  std::uniform_int_distribution<int> delay_ms(50, 400);
  std::vector<size_t> acknowledged_at_kill;
  for (int kill = 0; kill < kKills && !HasFatalFailure(); ++kill) {
    std::this_thread::sleep_for(milliseconds(delay_ms(random)));
    scheduler_.Kill();
    {
      std::lock_guard<std::mutex> lock(acknowledged_mutex);
      acknowledged_at_kill.push_back(acknowledged.size());
    }
    EXPECT_TRUE(RestartScheduler()) << "restart " << kill + 1;
    if (HasFailure()) break;
  }
  stop_submitting = true;
  submitter.join();

  std::string counts;
  for (const size_t count : acknowledged_at_kill) counts += std::to_string(count) + " ";
  std::string refused;
  for (const auto& [code, count] : refusals) refused += std::to_string(code) + ":" + std::to_string(count) + " ";
  std::cout << "acknowledged " << acknowledged.size() << " submits; at each kill: " << counts
            << "; refused by code: " << refused << "(last: " << last_refusal << "); worker hellos " << worker.hellos()
            << "\n";
  int windows_with_submits = 0;
  for (size_t i = 0; i < acknowledged_at_kill.size(); ++i) {
    windows_with_submits += acknowledged_at_kill[i] > (i == 0 ? 0 : acknowledged_at_kill[i - 1]) ? 1 : 0;
  }
  ASSERT_GE(windows_with_submits, kKills / 2) << "too few kills landed among acknowledged submits to test anything";

  std::vector<std::string> missing;
  for (const std::string& id : acknowledged) {
    v1::Job job;
    const grpc::Status status = GetJob(id, job);
    if (!status.ok()) {
      missing.push_back(id + " (" + status.error_message() + ")");
    } else {
      EXPECT_TRUE(job.state() == v1::JOB_STATE_QUEUED || job.state() == v1::JOB_STATE_RUNNING)
          << "job " << id << " is " << v1::JobState_Name(job.state());
      EXPECT_EQ(job.request().seed(), seeds[id]) << "job " << id << " came back with another request";
    }
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " of " << acknowledged.size()
                               << " acknowledged jobs are gone, e.g. " << missing.front();
  EXPECT_EQ(std::set<std::string>(acknowledged.begin(), acknowledged.end()).size(), acknowledged.size())
      << "two submits were given the same id";
}

// (c) SIGTERM: watchers' streams end with UNAVAILABLE saying the scheduler is restarting, the
// process exits 0 within a few seconds, and the jobs are there after the restart.
TEST_F(DurabilityTest, SigtermEndsWatchesWithUnavailableAndKeepsTheJobs) {
  ASSERT_TRUE(StartScheduler({}));
  IdleWorker worker(address_, "sigterm-worker");
  const auto deadline = Clock::now() + seconds(20);
  v1::Job running, queued;
  grpc::Status submitted;
  while (!(submitted = Submit(ShortRequest(1), running)).ok() && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));  // until the fake worker's hello is in
  }
  ASSERT_TRUE(submitted.ok()) << submitted.error_message();
  queued = MustSubmit(ShortRequest(2));
  ASSERT_EQ(MustGetJob(running.id()).state(), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(MustGetJob(queued.id()).state(), v1::JOB_STATE_QUEUED);

  std::promise<void> accepted;
  Watched watched;
  std::thread watcher([&] {
    bool told = false;
    watched = Watch(
        running.id(), 0, 0,
        [&](const v1::JobEvent& event) {
          if (event.has_accepted() && !told) {
            told = true;
            accepted.set_value();
          }
          return false;
        },
        seconds(30));
    if (!told) accepted.set_value();
  });
  if (accepted.get_future().wait_for(seconds(10)) != std::future_status::ready) {
    scheduler_.Kill();  // ends the watch, so that the thread can be joined
    watcher.join();
    FAIL() << "the watch was not accepted within 10 s: " << watched.Describe();
  }

  const auto signalled = Clock::now();
  scheduler_.Signal(SIGTERM);
  const std::optional<int> exit_status = scheduler_.Wait(seconds(10));
  const double exit_seconds = std::chrono::duration<double>(Clock::now() - signalled).count();
  watcher.join();
  ASSERT_TRUE(exit_status.has_value()) << "radial-scheduler still runs 10 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << DescribeWaitStatus(*exit_status);
  EXPECT_LT(exit_seconds, 5.0);
  EXPECT_EQ(watched.status.error_code(), grpc::StatusCode::UNAVAILABLE) << watched.Describe();
  EXPECT_NE(watched.status.error_message().find("restarting"), std::string::npos) << watched.Describe();

  ASSERT_TRUE(RestartScheduler());
  for (const v1::Job& job : {running, queued}) {
    v1::Job now;
    const grpc::Status status = GetJob(job.id(), now);
    ASSERT_TRUE(status.ok()) << "job " << job.id() << " after the restart: " << status.error_message();
    EXPECT_TRUE(now.state() == v1::JOB_STATE_QUEUED || now.state() == v1::JOB_STATE_RUNNING)
        << v1::JobState_Name(now.state());
    EXPECT_EQ(now.request().seed(), job.request().seed());
  }
}

// (d) A worker that gets SIGTERM while it runs a job finishes the job (within its grace), then
// leaves and exits 0; the job ran once.
TEST_F(DurabilityTest, ADrainingWorkerFinishesItsJobAndExitsZero) {
  if (!NeedsWorkers()) return;
  ASSERT_TRUE(StartScheduler({"--max-attempts", "1"}));
  ChildProcess& worker = StartWorker("drain-w1");
  ASSERT_TRUE(AwaitWorkers(1));
  const v1::Job job = MustSubmit(LongRequest(7, 12));
  bool signalled = false;
  const Watched watched = Watch(job.id(), 0, 0, [&](const v1::JobEvent& event) {
    if (!signalled && IsDenoising(event)) {
      signalled = true;
      worker.Signal(SIGTERM);
    }
    return false;
  });
  ASSERT_TRUE(signalled) << watched.Describe();
  ASSERT_TRUE(watched.completed) << watched.Describe();
  EXPECT_FALSE(watched.restarted) << watched.Describe();
  const v1::Job done = MustGetJob(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.attempts(), 1u);
  EXPECT_EQ(done.worker_id(), "drain-w1");
  const std::optional<int> exit_status = worker.Wait(seconds(30));
  ASSERT_TRUE(exit_status.has_value()) << "the drained worker still runs";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << DescribeWaitStatus(*exit_status);
  EXPECT_TRUE(AwaitWorkers(0, seconds(10)));
}

// (d) A worker whose drain grace (1 s) runs out hands its job back (60 steps outlast the grace): the
// job runs again on the other worker and succeeds, and the hand back is no lost worker: with
// --max-attempts 1 a counted loss would have failed the job.
TEST_F(DurabilityTest, AWorkerWhoseGraceRunsOutHandsTheJobBackWithoutUsingARetry) {
  if (!NeedsWorkers()) return;
  ASSERT_TRUE(StartScheduler({"--max-attempts", "1"}));
  for (const char* id : {"handback-w1", "handback-w2"}) StartWorker(id, {"--drain-seconds", "1"});
  ASSERT_TRUE(AwaitWorkers(2));
  const v1::Job job = MustSubmit(LongRequest(8, 60));
  std::string drained;
  const Watched watched = Watch(job.id(), 0, 0, [&](const v1::JobEvent& event) {
    if (drained.empty() && IsDenoising(event)) {
      drained = MustGetJob(job.id()).worker_id();
      if (workers_.count(drained) != 0) workers_[drained].Signal(SIGTERM);
    }
    return false;
  });
  ASSERT_EQ(workers_.count(drained), 1u) << "job ran on '" << drained << "'";
  ASSERT_TRUE(watched.completed) << watched.Describe();
  EXPECT_TRUE(watched.restarted) << watched.Describe();
  EXPECT_NE(watched.restart.reason().find("handed the job back"), std::string::npos) << watched.restart.reason();
  const v1::Job done = MustGetJob(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error().message();
  EXPECT_EQ(done.attempts(), 2u);
  EXPECT_NE(done.worker_id(), drained);
  const auto probe = worker::testing::ProbeMp4(watched.bytes);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames_decoded, 17);
  const std::optional<int> exit_status = workers_[drained].Wait(seconds(30));
  ASSERT_TRUE(exit_status.has_value()) << "the drained worker still runs";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << DescribeWaitStatus(*exit_status);
}

// (f) A data dir whose jobs.db is not a database: the scheduler refuses to start, quickly, with a
// message that names the file, and leaves the file as it was.
TEST_F(DurabilityTest, ACorruptDatabaseStopsTheStartAndNamesTheFile) {
  std::filesystem::create_directories(data_dir_);
  const std::filesystem::path database = data_dir_ / "jobs.db";
  std::string garbage(64 * 1024, '\0');
  std::mt19937 random(7);
  for (char& c : garbage) c = static_cast<char>(random());
  std::ofstream(database, std::ios::binary) << garbage;

  const auto started = Clock::now();
  ChildProcess scheduler(SchedulerArgs({}), dir_ / "scheduler.log");
  ASSERT_TRUE(scheduler.running());
  const std::optional<int> exit_status = scheduler.Wait(seconds(10));
  ASSERT_TRUE(exit_status.has_value()) << "radial-scheduler still runs on a corrupt database";
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - started).count(), 5.0);
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) != 0) << DescribeWaitStatus(*exit_status);
  const std::string log = radial::testing::ReadFile(dir_ / "scheduler.log");
  EXPECT_NE(log.find(database.string()), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "port")) << "it must not listen";
  EXPECT_EQ(radial::testing::ReadFile(database), garbage) << "the damaged file is left for the operator";
}

}  // namespace
}  // namespace radial
