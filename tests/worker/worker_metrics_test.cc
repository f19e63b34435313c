// radial-worker's metrics, as a dashboard reads them: the text exposition of WorkerMetrics after a
// sequence of observer calls (names, labels, counts, the one state at 1), the dense/radial step
// classification (StepTimer), the HTTP endpoint (/metrics, /healthz), a real
// job of the tiny bundle through WorkerClient, and the radial-worker binary itself: loading while
// its bundle loads, then idle while no scheduler listens, --log-format json, exit 2 for a bad
// RADIAL_LOG_LEVEL.
#include "worker_metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "radial/common/metrics_server.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "step_timing.h"
#include "tests/integration/process.h"
#include "worker_client.h"

namespace radial::worker {
namespace {

using namespace std::chrono_literals;
using common::MetricsServer;
using Clock = std::chrono::steady_clock;

constexpr char kModel[] = "wan-test";

std::string Exposition(const prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

// The value of one series ("name{label=\"v\",...}" exactly as the exposition writes it: labels in
// alphabetical order, a bucket's le last), NaN when the exposition has no such line.
double Value(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

std::string State(const std::string& model, const char* state) {
  return "radial_worker_state{model=\"" + model + "\",state=\"" + state + "\"}";
}

// The state whose series reads 1, checking that exactly one does.
std::string OnlyState(const std::string& exposition, const std::string& model) {
  std::string found;
  int ones = 0;
  for (const WorkerState state : kWorkerStates) {
    const double value = Value(exposition, State(model, WorkerStateName(state)));
    EXPECT_FALSE(std::isnan(value)) << "every state has a series: " << WorkerStateName(state);
    if (value == 1) {
      ++ones;
      found = WorkerStateName(state);
    }
  }
  EXPECT_EQ(ones, 1) << exposition;
  return found;
}

std::string Steps(const char* suffix, const char* attention, const std::string& model = kModel) {
  return std::string("radial_worker_step_seconds_") + suffix + "{attention=\"" + attention + "\",model=\"" + model +
         "\"}";
}

GenerationParams Request(int64_t steps, int64_t dense_steps, int64_t dense_last_steps) {
  GenerationParams params;
  params.steps = steps;
  params.radial.dense_steps = dense_steps;
  params.radial.dense_last_steps = dense_last_steps;
  return params;
}

// Replays a generation's callbacks: text encoding starts at t0 and takes `text_seconds`, then
// step i takes step_seconds[i].
StepTimer Replay(double text_seconds, const std::vector<double>& step_seconds) {
  StepTimer timer;
  const Clock::time_point t0 = Clock::now();
  const auto at = [&](double seconds) {
    return t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  timer.Progress(Stage::kEncodingText, 0, t0);
  double now = text_seconds;
  for (size_t i = 0; i < step_seconds.size(); ++i) {
    now += step_seconds[i];
    timer.Progress(Stage::kDenoising, static_cast<int64_t>(i) + 1, at(now));
  }
  timer.Progress(Stage::kDecoding, 0, at(now + 1));
  return timer;
}

TEST(WorkerMetricsTest, EveryFamilyExistsFromTheStartWithTheStateLoading) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(registry, kModel, nullptr);
  const std::string text = Exposition(*registry);
  EXPECT_NE(text.find("radial_build_info{component=\"worker\",version=\""), std::string::npos) << text;
  EXPECT_EQ(OnlyState(text, kModel), "loading");
  for (const char* code : {"OK", "CANCELLED", "INVALID_ARGUMENT", "INTERNAL", "UNAVAILABLE"}) {
    EXPECT_EQ(Value(text, std::string("radial_worker_jobs_total{code=\"") + code + "\",model=\"wan-test\"}"), 0);
  }
  for (const char* stage : {"text_encode", "denoise", "decode", "encode"}) {
    EXPECT_EQ(Value(text, std::string("radial_worker_stage_seconds_count{model=\"wan-test\",stage=\"") + stage + "\"}"),
              0);
  }
  EXPECT_EQ(Value(text, Steps("count", "radial")), 0);
  EXPECT_EQ(Value(text, Steps("count", "dense")), 0);
  EXPECT_EQ(Value(text, "radial_worker_first_fragment_seconds_count{model=\"wan-test\"}"), 0);
  EXPECT_EQ(Value(text, "radial_worker_last_step_to_first_fragment_seconds_count{model=\"wan-test\"}"), 0);
  for (const char* kind : {"allocated", "reserved", "peak"}) {
    EXPECT_EQ(Value(text, std::string("radial_worker_gpu_memory_bytes{kind=\"") + kind + "\",model=\"wan-test\"}"), 0);
  }
  EXPECT_EQ(Value(text, "radial_worker_model_load_seconds{model=\"wan-test\"}"), 0);
  EXPECT_EQ(Value(text, "radial_worker_warmup_seconds{model=\"wan-test\"}"), 0);
  // A last-job gauge: absent until a job has run, rather than a made-up value.
  EXPECT_EQ(text.find("radial_worker_mask_density{"), std::string::npos);
  // Buckets of step and stage times: 10 ms to 600 s.
  EXPECT_EQ(Value(text, "radial_worker_step_seconds_bucket{attention=\"dense\",model=\"wan-test\",le=\"0.01\"}"), 0);
  EXPECT_EQ(Value(text, "radial_worker_step_seconds_bucket{attention=\"dense\",model=\"wan-test\",le=\"600\"}"), 0);
}

TEST(WorkerMetricsTest, ExactlyOneStateIsOneAndReadinessFollowsIt) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(registry, kModel, nullptr);
  EXPECT_EQ(metrics.Ready().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(metrics.Ready().message(), "not ready: loading");
  const std::pair<WorkerState, bool> sequence[] = {{WorkerState::kWarming, false}, {WorkerState::kIdle, true},
                                                   {WorkerState::kBusy, true},     {WorkerState::kIdle, true},
                                                   {WorkerState::kBusy, true},     {WorkerState::kDraining, false}};
  for (const auto& [state, ready] : sequence) {
    metrics.StateChanged(state);
    EXPECT_EQ(OnlyState(Exposition(*registry), kModel), WorkerStateName(state));
    EXPECT_EQ(metrics.state(), state);
    EXPECT_EQ(metrics.Ready().ok(), ready) << WorkerStateName(state);
  }
}

TEST(WorkerMetricsTest, JobsAreCountedByCodeWithStageTimesForFinishedJobsOnly) {
  auto registry = std::make_shared<prometheus::Registry>();
  int reads = 0;
  WorkerMetrics metrics(registry, kModel, [&reads] {
    ++reads;
    return GpuMemory{.allocated_bytes = 1000 + reads, .reserved_bytes = 4096, .peak_bytes = 8192};
  });
  metrics.ModelLoaded(12.5);
  metrics.WarmedUp(3.25);
  JobRecord done;
  done.stages = JobStageSeconds{.text_encode = 0.25, .denoise = 40, .decode = 3, .encode = 0.5};
  done.stream =
      JobStreamSeconds{.first_fragment = 45, .last_step_to_first_fragment = 0.75, .last_step_to_last_byte = 3.5};
  done.mask_density = 0.375;
  metrics.JobEnded(done);
  JobRecord cancelled;
  cancelled.code = absl::StatusCode::kCancelled;
  metrics.JobEnded(cancelled);
  JobRecord refused;
  refused.code = absl::StatusCode::kResourceExhausted;  // a code outside the pre-made set gets its series
  metrics.JobEnded(refused);

  const std::string text = Exposition(*registry);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"OK\",model=\"wan-test\"}"), 1);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"CANCELLED\",model=\"wan-test\"}"), 1);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"RESOURCE_EXHAUSTED\",model=\"wan-test\"}"), 1);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"INTERNAL\",model=\"wan-test\"}"), 0);
  const std::pair<const char*, double> stages[] = {
      {"text_encode", 0.25}, {"denoise", 40}, {"decode", 3}, {"encode", 0.5}};
  for (const auto& [stage, seconds] : stages) {
    const std::string labels = std::string("{model=\"wan-test\",stage=\"") + stage + "\"}";
    EXPECT_EQ(Value(text, "radial_worker_stage_seconds_count" + labels), 1) << stage;
    EXPECT_DOUBLE_EQ(Value(text, "radial_worker_stage_seconds_sum" + labels), seconds) << stage;
  }
  EXPECT_EQ(Value(text, "radial_worker_stage_seconds_bucket{model=\"wan-test\",stage=\"denoise\",le=\"30\"}"), 0);
  EXPECT_EQ(Value(text, "radial_worker_stage_seconds_bucket{model=\"wan-test\",stage=\"denoise\",le=\"60\"}"), 1);
  EXPECT_DOUBLE_EQ(Value(text, "radial_worker_mask_density{model=\"wan-test\"}"), 0.375);
  EXPECT_EQ(Value(text, "radial_worker_first_fragment_seconds_count{model=\"wan-test\"}"), 1);
  EXPECT_DOUBLE_EQ(Value(text, "radial_worker_first_fragment_seconds_sum{model=\"wan-test\"}"), 45);
  EXPECT_EQ(Value(text, "radial_worker_last_step_to_first_fragment_seconds_count{model=\"wan-test\"}"), 1);
  EXPECT_DOUBLE_EQ(Value(text, "radial_worker_last_step_to_first_fragment_seconds_sum{model=\"wan-test\"}"), 0.75);
  EXPECT_EQ(Value(text, "radial_worker_model_load_seconds{model=\"wan-test\"}"), 12.5);
  EXPECT_EQ(Value(text, "radial_worker_warmup_seconds{model=\"wan-test\"}"), 3.25);
  // The GPU memory is read again after each job.
  EXPECT_EQ(reads, 3);
  EXPECT_EQ(Value(text, "radial_worker_gpu_memory_bytes{kind=\"allocated\",model=\"wan-test\"}"), 1003);
  EXPECT_EQ(Value(text, "radial_worker_gpu_memory_bytes{kind=\"reserved\",model=\"wan-test\"}"), 4096);
  EXPECT_EQ(Value(text, "radial_worker_gpu_memory_bytes{kind=\"peak\",model=\"wan-test\"}"), 8192);
  metrics.RefreshGpuMemory();
  EXPECT_EQ(Value(Exposition(*registry), "radial_worker_gpu_memory_bytes{kind=\"allocated\",model=\"wan-test\"}"),
            1004);
}

TEST(StepTimingTest, StepsRunDenseAtTheEdgesTheRequestAsksFor) {
  const GenerationParams params = Request(6, 1, 2);
  const bool expected[] = {true, false, false, false, true, true};
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(StepIsDense(params, i), expected[i]) << "step " << i;
  GenerationParams dense = params;
  dense.dense = true;
  GenerationParams all_dense_steps = Request(4, 4, 0);
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(StepIsDense(dense, i)) << "step " << i;
    if (i < 4) {
      EXPECT_TRUE(StepIsDense(all_dense_steps, i)) << "step " << i;
    }
  }
}

TEST(StepTimingTest, TheFirstStepStartsWhenTextEncodingEnds) {
  const StepTimer timer = Replay(0.5, {0.25, 0.125, 2.0});
  const std::vector<StepTime> steps = timer.Steps(Request(3, 0, 0), 0.5);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_NEAR(steps[0].seconds, 0.25, 1e-6);
  EXPECT_NEAR(steps[1].seconds, 0.125, 1e-6);
  EXPECT_NEAR(steps[2].seconds, 2.0, 1e-6);
  for (const StepTime& step : steps) EXPECT_FALSE(step.dense);
  // Without the text-encoding callback the first step has no start: it is left out.
  StepTimer partial;
  const Clock::time_point t0 = Clock::now();
  partial.Progress(Stage::kDenoising, 1, t0);
  partial.Progress(Stage::kDenoising, 2, t0 + 1s);
  const std::vector<StepTime> later = partial.Steps(Request(2, 0, 0), 0.5);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_NEAR(later[0].seconds, 1.0, 1e-6);
}

TEST(StepTimingTest, StepsReachTheHistogramsByAttention) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(registry, kModel, nullptr);
  const GenerationParams params = Request(6, 1, 2);  // dense: steps 0, 4 and 5
  const StepTimer timer = Replay(1.0, {0.5, 0.02, 0.03, 0.04, 0.5, 0.5});
  JobRecord radial;
  radial.steps = timer.Steps(params, 1.0);
  metrics.JobEnded(radial);
  std::string text = Exposition(*registry);
  EXPECT_EQ(Value(text, Steps("count", "dense")), 3);
  EXPECT_EQ(Value(text, Steps("count", "radial")), 3);
  EXPECT_NEAR(Value(text, Steps("sum", "dense")), 1.5, 1e-6);
  EXPECT_NEAR(Value(text, Steps("sum", "radial")), 0.09, 1e-6);
  EXPECT_EQ(Value(text, "radial_worker_step_seconds_bucket{attention=\"radial\",model=\"wan-test\",le=\"0.025\"}"), 1);

  // The same request asking for dense attention: every step is dense.
  GenerationParams dense = params;
  dense.dense = true;
  JobRecord all_dense;
  all_dense.steps = timer.Steps(dense, 1.0);
  metrics.JobEnded(all_dense);
  text = Exposition(*registry);
  EXPECT_EQ(Value(text, Steps("count", "dense")), 3 + 6);
  EXPECT_EQ(Value(text, Steps("count", "radial")), 3);
}

// A minimal HTTP/1.0 GET (or another method): the status code and the body; code 0 when the
// server could not be reached.
struct HttpAnswer {
  int code = 0;
  std::string body;
};

HttpAnswer Http(int port, const std::string& path, const std::string& method = "GET") {
  HttpAnswer answer;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return answer;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return answer;
  }
  const std::string request = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return answer;
  }
  std::string response;
  char buffer[4096];
  ssize_t got = 0;
  while ((got = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, static_cast<size_t>(got));
  close(fd);
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return answer;
  answer.code = std::stoi(response.substr(9, 3));
  const size_t body = response.find("\r\n\r\n");
  if (body != std::string::npos) answer.body = response.substr(body + 4);
  return answer;
}

TEST(MetricsServerTest, ServesTheExpositionAndReadinessAsAStatusCode) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(registry, kModel, nullptr);
  auto server = MetricsServer::Start("127.0.0.1:0", registry, [&metrics] { return metrics.Ready(); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);

  HttpAnswer answer = Http(port, "/metrics");
  EXPECT_EQ(answer.code, 200);
  EXPECT_EQ(Value(answer.body, State(kModel, "loading")), 1) << answer.body;
  answer = Http(port, "/healthz");
  EXPECT_EQ(answer.code, 503);
  EXPECT_EQ(answer.body, "not ready: loading\n");

  metrics.StateChanged(WorkerState::kIdle);
  answer = Http(port, "/healthz?verbose=1");
  EXPECT_EQ(answer.code, 200);
  EXPECT_EQ(answer.body, "ok\n");
  EXPECT_EQ(Value(Http(port, "/metrics").body, State(kModel, "idle")), 1);
  answer = Http(port, "/healthz", "HEAD");
  EXPECT_EQ(answer.code, 200);
  EXPECT_EQ(answer.body, "");
  metrics.StateChanged(WorkerState::kDraining);
  EXPECT_EQ(Http(port, "/healthz").code, 503);

  EXPECT_EQ(Http(port, "/").code, 404);
  EXPECT_EQ(Http(port, "/metrics", "POST").code, 405);
  server->reset();
  EXPECT_EQ(Http(port, "/metrics").code, 0) << "stopped with its owner";
}

TEST(MetricsServerTest, RefusesAddressesItCannotServe) {
  auto registry = std::make_shared<prometheus::Registry>();
  for (const char* listen : {"", "localhost", "127.0.0.1:http", "127.0.0.1:70000"}) {
    const auto server = MetricsServer::Start(listen, registry, nullptr);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
  auto taken = MetricsServer::Start("127.0.0.1:0", registry, nullptr);
  ASSERT_TRUE(taken.ok()) << taken.status();
  const auto again = MetricsServer::Start("127.0.0.1:" + std::to_string((*taken)->port()), registry, nullptr);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(again.status().message().find("can bind (Address already in use)"), std::string::npos) << again.status();
}

// A scheduler that sends each queued assignment once the worker has said hello, and records the
// outcomes.
class OneJobScheduler final : public v1::WorkerService::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*,
                       grpc::ServerReaderWriter<v1::SchedulerMessage, v1::WorkerMessage>* stream) override {
    v1::WorkerMessage message;
    while (stream->Read(&message)) {
      std::unique_lock<std::mutex> lock(mutex_);
      if (message.has_hello() || message.has_done() || message.has_failed()) {
        if (message.has_done() || message.has_failed()) outcomes_.push_back(message);
        changed_.notify_all();
        if (!queue_.empty()) {
          stream->Write(queue_.front());
          queue_.erase(queue_.begin());
        }
      }
    }
    return grpc::Status::OK;
  }
  void Queue(const v1::SchedulerMessage& assign) {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(assign);
  }
  bool AwaitOutcomes(size_t count, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return outcomes_.size() >= count; });
  }
  std::vector<v1::WorkerMessage> outcomes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return outcomes_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<v1::SchedulerMessage> queue_;
  std::vector<v1::WorkerMessage> outcomes_;
};

// Records the states the WorkerClient reports, on top of the real metrics.
class RecordingMetrics : public WorkerObserver {
 public:
  explicit RecordingMetrics(WorkerMetrics& metrics) : metrics_(metrics) {}
  void StateChanged(WorkerState state) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      states_.push_back(state);
    }
    metrics_.StateChanged(state);
  }
  void JobEnded(const JobRecord& job) override { metrics_.JobEnded(job); }
  std::vector<WorkerState> states() {
    std::lock_guard<std::mutex> lock(mutex_);
    return states_;
  }

 private:
  WorkerMetrics& metrics_;
  std::mutex mutex_;
  std::vector<WorkerState> states_;
};

v1::SchedulerMessage Assignment(const std::string& model, const std::string& job_id, uint32_t size, uint32_t frames,
                                uint32_t steps) {
  v1::SchedulerMessage message;
  v1::Assign& assign = *message.mutable_assign();
  assign.set_job_id(job_id);
  assign.set_attempt(1);
  v1::GenerateRequest& request = *assign.mutable_request();
  request.set_model(model);
  request.set_prompt("a fox");
  request.set_width(size);
  request.set_height(size);
  request.set_frames(frames);
  request.set_fps(16);
  request.set_steps(steps);
  request.set_guidance(1);
  request.set_seed(3);
  v1::RadialOptions& radial = *request.mutable_radial();
  radial.set_decay(1);
  radial.set_sink(true);
  radial.set_block(64);
  radial.set_dense_steps(1);
  radial.set_dense_last_steps(1);
  return message;
}

TEST(WorkerClientMetricsTest, RealJobsReportTheirStepsStagesAndStates) {
  const std::string bundle = radial::testing::Env("RADIAL_TEST_BUNDLE");
  if (bundle.empty()) GTEST_SKIP() << "RADIAL_TEST_BUNDLE is not set (ctest's worker_metrics_integration_test sets it)";
  auto pipeline = Pipeline::Load(bundle, "cpu");
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  const std::string model = (*pipeline)->manifest().name;
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics(registry, model, nullptr);
  RecordingMetrics recording(metrics);

  OneJobScheduler scheduler;
  // A radial job (128x128x5, 4 steps, the first and the last dense), then one that asks for dense
  // attention throughout (64x64x1, 3 steps).
  scheduler.Queue(Assignment(model, "radial", 128, 5, 4));
  v1::SchedulerMessage dense = Assignment(model, "dense", 64, 1, 3);
  dense.mutable_assign()->mutable_request()->mutable_radial()->set_dense(true);
  scheduler.Queue(dense);
  v1::SchedulerMessage outside = Assignment(model, "outside", 1000, 1, 3);
  scheduler.Queue(outside);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&scheduler);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  WorkerOptions options;
  options.scheduler = "127.0.0.1:" + std::to_string(port);
  options.worker_id = "metrics-test";
  options.observer = &recording;
  WorkerClient worker(options, **pipeline);
  std::future<absl::Status> run = std::async(std::launch::async, [&worker] { return worker.Run(); });
  const bool ended = scheduler.AwaitOutcomes(3, 240s);
  worker.Drain(0s);
  run.wait();
  server->Shutdown(std::chrono::system_clock::now() + 1s);
  ASSERT_TRUE(ended) << "three outcomes";
  const std::vector<v1::WorkerMessage> outcomes = scheduler.outcomes();
  ASSERT_TRUE(outcomes[0].has_done());
  ASSERT_TRUE(outcomes[1].has_done());
  ASSERT_TRUE(outcomes[2].has_failed());
  EXPECT_FALSE(outcomes[0].done().stats().radial().dense()) << "the first job ran radial steps";
  EXPECT_TRUE(outcomes[1].done().stats().radial().dense()) << "the second ran dense, as it asked";

  const std::string text = Exposition(*registry);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"OK\",model=\"" + model + "\"}"), 2);
  EXPECT_EQ(Value(text, "radial_worker_jobs_total{code=\"INVALID_ARGUMENT\",model=\"" + model + "\"}"), 1);
  for (const char* stage : {"text_encode", "denoise", "decode", "encode"}) {
    EXPECT_EQ(Value(text, "radial_worker_stage_seconds_count{model=\"" + model + "\",stage=\"" + stage + "\"}"), 2)
        << stage;
  }
  EXPECT_EQ(Value(text, "radial_worker_first_fragment_seconds_count{model=\"" + model + "\"}"), 2);
  // 4 steps with one dense at each end: 2 radial and 2 dense; then 3 dense steps (a dense request).
  EXPECT_EQ(Value(text, Steps("count", "radial", model)), 2);
  EXPECT_EQ(Value(text, Steps("count", "dense", model)), 2 + 3);
  const double step_sum = Value(text, Steps("sum", "radial", model)) + Value(text, Steps("sum", "dense", model));
  const double denoise_sum = Value(text, "radial_worker_stage_seconds_sum{model=\"" + model + "\",stage=\"denoise\"}");
  EXPECT_GT(step_sum, 0);
  EXPECT_LE(step_sum, denoise_sum * 1.05 + 0.01) << "the steps lie within the denoising stages";
  EXPECT_EQ(Value(text, "radial_worker_mask_density{model=\"" + model + "\"}"), 1) << "the last job ran dense";
  EXPECT_EQ(OnlyState(text, model), "draining");
  const std::vector<WorkerState> states = recording.states();
  const std::vector<WorkerState> expected = {WorkerState::kIdle, WorkerState::kBusy, WorkerState::kIdle,
                                             WorkerState::kBusy, WorkerState::kIdle, WorkerState::kDraining};
  EXPECT_EQ(states, expected);
}

// Deletes a directory tree. POSIX rather than std::filesystem: libtorch.so exports its own copies
// of std::filesystem's operations, which win over libstdc++'s in this process, and its
// remove_all crashes.
void RemoveTree(const std::string& dir) {
  nftw(
      dir.c_str(), [](const char* path, const struct stat*, int, FTW*) { return remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

// The names in a directory (no "." or "..").
std::vector<std::string> ListDirectory(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* handle = opendir(dir.c_str())) {
    while (const dirent* entry = readdir(handle)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(handle);
  }
  return names;
}

// radial-worker as a process, on a copy of the tiny bundle whose tokenizer is a named pipe: the
// load waits on it, so the test sees the state while loading for as long as it likes.
class RadialWorkerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bundle_ = radial::testing::Env("RADIAL_TEST_BUNDLE");
    binary_ = radial::testing::Env("RADIAL_WORKER_BIN");
    if (bundle_.empty() || binary_.empty()) {
      GTEST_SKIP() << "RADIAL_TEST_BUNDLE / RADIAL_WORKER_BIN are not set (ctest's worker_metrics_integration_test "
                      "sets them)";
    }
    char dir[] = "/tmp/radial_worker_metrics_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    log_ = dir_ + "/worker.log";
  }
  void TearDown() override {
    worker_.Kill();
    if (!dir_.empty()) RemoveTree(dir_);
  }

  // Waits for the log line that names the metrics URL; its port, 0 when it does not come.
  int AwaitMetricsPort(std::chrono::seconds timeout) {
    const std::string marker = "metrics on http://127.0.0.1:";
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      const std::string log = radial::testing::ReadFile(log_);
      if (const size_t at = log.find(marker); at != std::string::npos) {
        return std::atoi(log.c_str() + at + marker.size());
      }
      if (worker_.exited()) return 0;
      std::this_thread::sleep_for(20ms);
    }
    return 0;
  }

  // Polls /metrics until the state reads `state`; the last exposition.
  std::string AwaitState(int port, const std::string& model, const char* state, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string text;
    while (Clock::now() < deadline) {
      text = Http(port, "/metrics").body;
      if (Value(text, State(model, state)) == 1) break;
      std::this_thread::sleep_for(50ms);
    }
    return text;
  }

  std::string bundle_, binary_;
  std::string dir_, log_;
  radial::testing::ChildProcess worker_;
};

TEST_F(RadialWorkerProcessTest, ServesLoadingWhileTheBundleLoadsThenIdleWithoutAScheduler) {
  const std::string copy = dir_ + "/bundle";
  ASSERT_EQ(mkdir(copy.c_str(), 0700), 0);
  char* real = realpath(bundle_.c_str(), nullptr);
  ASSERT_NE(real, nullptr) << bundle_;
  const std::string source = real;
  free(real);
  const std::vector<std::string> names = ListDirectory(source);
  ASSERT_FALSE(names.empty()) << source;
  for (const std::string& name : names) {
    const std::string target = copy + "/" + name;
    if (name == "tokenizer.model") {
      ASSERT_EQ(mkfifo(target.c_str(), 0600), 0);
    } else {
      ASSERT_EQ(symlink((source + "/" + name).c_str(), target.c_str()), 0) << name;
    }
  }
  // Nothing listens there: the worker keeps reconnecting, and reads idle meanwhile.
  const int scheduler_port = radial::testing::PickFreePort();
  worker_ = radial::testing::ChildProcess(
      {binary_, "--bundle", copy, "--scheduler", "127.0.0.1:" + std::to_string(scheduler_port), "--metrics-listen",
       "127.0.0.1:0", "--log-format", "json", "--worker-id", "metrics-w1"},
      log_);
  ASSERT_TRUE(worker_.running());
  const int port = AwaitMetricsPort(60s);
  ASSERT_GT(port, 0) << radial::testing::ReadFile(log_);

  const std::string model = "wan2.1-tiny";
  std::string text = Http(port, "/metrics").body;
  EXPECT_EQ(OnlyState(text, model), "loading") << text;
  EXPECT_NE(text.find("radial_build_info{component=\"worker\","), std::string::npos);
  EXPECT_EQ(Value(text, "radial_worker_model_load_seconds{model=\"" + model + "\"}"), 0);
  HttpAnswer health = Http(port, "/healthz");
  EXPECT_EQ(health.code, 503);
  EXPECT_EQ(health.body, "not ready: loading\n");

  // Let the load go on: write the tokenizer into the pipe once the worker has opened it.
  const std::string tokenizer = radial::testing::ReadFile(source + "/tokenizer.model");
  ASSERT_FALSE(tokenizer.empty());
  int fifo = -1;
  for (const auto deadline = Clock::now() + 60s; fifo < 0 && Clock::now() < deadline && !worker_.exited();) {
    fifo = open((copy + "/tokenizer.model").c_str(), O_WRONLY | O_NONBLOCK);  // ENXIO until a reader opens it
    if (fifo < 0) std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(fifo, 0) << "the worker never opened its tokenizer";
  fcntl(fifo, F_SETFL, fcntl(fifo, F_GETFL) & ~O_NONBLOCK);
  for (size_t written = 0; written < tokenizer.size();) {
    const ssize_t n = write(fifo, tokenizer.data() + written, tokenizer.size() - written);
    ASSERT_GT(n, 0);
    written += static_cast<size_t>(n);
  }
  close(fifo);

  text = AwaitState(port, model, "idle", 120s);
  EXPECT_EQ(OnlyState(text, model), "idle") << radial::testing::ReadFile(log_);
  EXPECT_GT(Value(text, "radial_worker_model_load_seconds{model=\"" + model + "\"}"), 0);
  EXPECT_EQ(Value(text, "radial_worker_gpu_memory_bytes{kind=\"allocated\",model=\"" + model + "\"}"), 0) << "CPU";
  health = Http(port, "/healthz");
  EXPECT_EQ(health.code, 200);
  EXPECT_EQ(health.body, "ok\n");

  worker_.Signal(SIGTERM);
  const std::optional<int> status = worker_.Wait(30s);
  ASSERT_TRUE(status.has_value()) << "exits after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << radial::testing::DescribeWaitStatus(*status);
  const std::string log = radial::testing::ReadFile(log_);
  EXPECT_NE(log.find("{\"time\":"), std::string::npos) << log;
  EXPECT_NE(log.find("\"component\":\"worker\""), std::string::npos) << log;
  EXPECT_EQ(log.find("[info]"), std::string::npos) << "no text lines with --log-format json";
}

TEST_F(RadialWorkerProcessTest, BadLoggingAndMetricsSettingsExit2BeforeTheModelLoads) {
  struct Case {
    std::vector<std::string> flags;
    const char* log_level;  // RADIAL_LOG_LEVEL, or nullptr
    const char* message;
  };
  const Case cases[] = {
      {{}, "verbose", "RADIAL_LOG_LEVEL: got 'verbose', expected trace, debug, info, warn, error, critical or off"},
      {{"--log-format", "xml"}, nullptr, "--log-format: got 'xml', expected text or json"},
      {{"--metrics-listen", "127.0.0.1"}, nullptr, "metrics-listen: got '127.0.0.1', expected HOST:PORT"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {binary_, "--bundle", bundle_, "--scheduler", "127.0.0.1:1"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    if (c.log_level != nullptr) setenv("RADIAL_LOG_LEVEL", c.log_level, 1);
    unlink(log_.c_str());
    radial::testing::ChildProcess worker(args, log_);
    unsetenv("RADIAL_LOG_LEVEL");
    const std::optional<int> status = worker.Wait(30s);
    ASSERT_TRUE(status.has_value()) << c.message;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << radial::testing::DescribeWaitStatus(*status);
    const std::string log = radial::testing::ReadFile(log_);
    EXPECT_NE(log.find(c.message), std::string::npos) << log;
    EXPECT_EQ(log.find("loaded"), std::string::npos) << "stopped before the load: " << log;
  }
}

}  // namespace
}  // namespace radial::worker
