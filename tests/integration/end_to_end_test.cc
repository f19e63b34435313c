// The whole service: a real radial-scheduler process and two real radial-worker processes with the
// tiny random-weight bundle on 127.0.0.1, driven by a gRPC client. Binaries and bundle come from
// the environment (RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN, RADIAL_TEST_BUNDLE; set by ctest).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "tests/worker/mp4_inspect.h"
#include "radial/v1/video_service.grpc.pb.h"

extern char** environ;

namespace radial {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int error = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return error == 0 ? pid : -1;
}

void Terminate(pid_t pid, int signal) {
  if (pid <= 0) return;
  kill(pid, signal);
  waitpid(pid, nullptr, 0);
}

struct Streamed {
  std::string job_id;
  std::string bytes;
  std::vector<v1::JobEvent> events;
  grpc::Status status;
  bool completed = false, cancelled = false, restarted = false;
};

class EndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / ("radial_e2e_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    const std::string port_file = (dir_ / "port").string();
    scheduler_ = Spawn({Env("RADIAL_SCHEDULER_BIN"), "--listen", "127.0.0.1:0", "--port-file", port_file, "--data-dir",
                        (dir_ / "data").string()},
                       (dir_ / "scheduler.log").string());
    ASSERT_GT(scheduler_, 0);
    std::string port;
    for (int i = 0; i < 200 && port.empty(); ++i) {
      std::ifstream(port_file) >> port;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_FALSE(port.empty()) << "radial-scheduler did not start; see " << dir_;
    address_ = "127.0.0.1:" + port;
    for (const char* id : {"e2e-w1", "e2e-w2"}) StartWorker(id);
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(AwaitWorkers(2)) << "workers did not connect; see " << dir_;
  }

  static void TearDownTestSuite() {
    for (auto& [id, pid] : workers_) Terminate(pid, SIGTERM);
    Terminate(scheduler_, SIGTERM);
  }

  static void StartWorker(const std::string& id) {
    workers_[id] = Spawn({Env("RADIAL_WORKER_BIN"), "--bundle", Env("RADIAL_TEST_BUNDLE"), "--scheduler", address_,
                          "--worker-id", id, "--warmup", "off"},
                         (dir_ / (id + ".log")).string());
  }

  static bool AwaitWorkers(uint32_t count) {
    auto stub = v1::VideoService::NewStub(channel_);
    for (int i = 0; i < 300; ++i) {
      grpc::ClientContext context;
      v1::ListModelsResponse models;
      if (stub->ListModels(&context, v1::ListModelsRequest(), &models).ok() && models.models_size() == 1 &&
          models.models(0).workers() == count) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  static v1::GenerateRequest Request(uint64_t seed, uint32_t steps = 0) {
    v1::GenerateRequest request;
    request.set_prompt("a red fox running through fresh snow");
    request.set_seed(seed);
    request.set_steps(steps);
    return request;
  }

  // Runs Generate to the end; `on_event` may act on the stream (cancel, kill a worker).
  static Streamed Generate(const v1::GenerateRequest& request,
                           const std::function<void(const v1::JobEvent&)>& on_event = nullptr) {
    auto stub = v1::VideoService::NewStub(channel_);
    grpc::ClientContext context;
    // Generous: the restart test runs up to 200 denoising steps on CPU, with other tests beside it.
    context.set_deadline(std::chrono::system_clock::now() + seconds(300));
    auto stream = stub->Generate(&context, request);
    Streamed result;
    v1::JobEvent event;
    while (stream->Read(&event)) {
      result.job_id = event.job_id();
      if (event.has_restarted()) {
        result.restarted = true;
        result.bytes.clear();
      }
      if (event.has_chunk()) {
        EXPECT_EQ(event.chunk().offset(), result.bytes.size());
        result.bytes += event.chunk().data();
      }
      result.completed |= event.has_completed();
      result.cancelled |= event.has_cancelled();
      result.events.push_back(event);
      if (on_event) on_event(event);
    }
    result.status = stream->Finish();
    return result;
  }

  static v1::Job GetJob(const std::string& id) {
    auto stub = v1::VideoService::NewStub(channel_);
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(stub->GetJob(&context, request, &job).ok());
    return job;
  }

  static inline std::filesystem::path dir_;
  static inline pid_t scheduler_ = -1;
  static inline std::map<std::string, pid_t> workers_;
  static inline std::string address_;
  static inline std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(EndToEndTest, APromptBecomesAPlayableFragmentedMp4) {
  const Streamed result = Generate(Request(1));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_TRUE(result.completed);
  const auto probe = worker::testing::ProbeMp4(result.bytes);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->codec_name, "h264");
  EXPECT_EQ(probe->width, 128);
  EXPECT_EQ(probe->height, 128);
  EXPECT_EQ(probe->frames_decoded, 17);
  EXPECT_EQ(probe->frame_rate_numerator, 16 * probe->frame_rate_denominator);
  const auto boxes = worker::testing::ListTopLevelBoxes(result.bytes);
  ASSERT_TRUE(boxes.ok());
  const std::vector<std::string> types = worker::testing::BoxTypes(*boxes);
  ASSERT_GE(types.size(), 4u);
  EXPECT_EQ(types[0], "ftyp");
  EXPECT_EQ(types[1], "moov");
  for (size_t i = 2; i < types.size(); ++i) EXPECT_EQ(types[i], i % 2 == 0 ? "moof" : "mdat") << i;
  uint32_t last_step = 0;
  for (const auto& event : result.events) {
    if (event.has_progress() && event.progress().stage() == v1::STAGE_DENOISING) last_step = event.progress().step();
  }
  EXPECT_EQ(last_step, 8u) << "progress reached the last of the model's 8 default steps";
  const v1::Job job = GetJob(result.job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.stats().frames(), 17u);
  EXPECT_EQ(job.stats().video_bytes(), result.bytes.size());
  EXPECT_GT(job.stats().mask_density(), 0.0);
  EXPECT_LT(job.stats().mask_density(), 1.0);
}

TEST_F(EndToEndTest, TheSameRequestAndSeedGiveIdenticalBytes) {
  const Streamed first = Generate(Request(42));
  const Streamed second = Generate(Request(42));
  auto kinds = [](const Streamed& streamed) {
    std::string text;
    for (const auto& event : streamed.events) text += std::to_string(event.event_case()) + " ";
    return text + "status " + std::to_string(streamed.status.error_code()) + " " + streamed.status.error_message();
  };
  ASSERT_TRUE(first.completed && second.completed) << "first: " << kinds(first) << "\nsecond: " << kinds(second);
  EXPECT_EQ(first.bytes, second.bytes);
  const Streamed other = Generate(Request(43));
  EXPECT_NE(first.bytes, other.bytes);
}

TEST_F(EndToEndTest, TwoConcurrentJobsRunOnBothWorkers) {
  Streamed a, b;
  std::thread first([&] { a = Generate(Request(7)); });
  std::thread second([&] { b = Generate(Request(8)); });
  first.join();
  second.join();
  ASSERT_TRUE(a.completed && b.completed);
  EXPECT_NE(GetJob(a.job_id).worker_id(), GetJob(b.job_id).worker_id());
}

TEST_F(EndToEndTest, CancellingARunningJobStopsIt) {
  auto stub = v1::VideoService::NewStub(channel_);
  bool asked = false;
  const Streamed result = Generate(Request(9, 100), [&](const v1::JobEvent& event) {
    if (!asked && event.has_progress() && event.progress().stage() == v1::STAGE_DENOISING) {
      asked = true;
      grpc::ClientContext context;
      v1::CancelJobRequest request;
      request.set_job_id(event.job_id());
      v1::Job job;
      EXPECT_TRUE(stub->CancelJob(&context, request, &job).ok());
    }
  });
  EXPECT_TRUE(result.cancelled);
  const v1::Job job = GetJob(result.job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_LT(job.progress().step(), 100u) << "stopped long before the last step";
}

// Last: it kills a worker (and starts a replacement for any test after it).
TEST_F(EndToEndTest, AKilledWorkersJobIsRequeuedAndSucceedsOnTheOther) {
  std::string killed;
  const Streamed result = Generate(Request(11, 100), [&](const v1::JobEvent& event) {
    if (killed.empty() && event.has_progress() && event.progress().stage() == v1::STAGE_DENOISING) {
      killed = GetJob(event.job_id()).worker_id();
      ASSERT_EQ(workers_.count(killed), 1u);
      Terminate(workers_[killed], SIGKILL);
    }
  });
  ASSERT_FALSE(killed.empty());
  EXPECT_TRUE(result.restarted);
  ASSERT_TRUE(result.completed) << result.status.error_message();
  const v1::Job job = GetJob(result.job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempts(), 2u);
  EXPECT_NE(job.worker_id(), killed);
  const auto probe = worker::testing::ProbeMp4(result.bytes);
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->frames_decoded, 17);
  StartWorker(killed);
}

}  // namespace
}  // namespace radial
