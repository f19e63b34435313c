// The scheduler's gRPC services, in process on 127.0.0.1, driven by real gRPC clients: a client of
// VideoService and a fake worker speaking WorkerService over a real stream.
#include "scheduler_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <thread>

#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

constexpr auto kTimeout = std::chrono::seconds(20);

std::chrono::system_clock::time_point Deadline() { return std::chrono::system_clock::now() + kTimeout; }


// A worker process as the scheduler sees it, driven step by step by the test.
class FakeWorker {
 public:
  FakeWorker(const std::shared_ptr<grpc::Channel>& channel, const std::string& id)
      : stub_(v1::WorkerService::NewStub(channel)) {
    context_.set_deadline(Deadline());
    stream_ = stub_->Connect(&context_);
    v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(id);
    hello.mutable_hello()->set_capacity(1);
    hello.mutable_hello()->set_device("test");
    *hello.mutable_hello()->add_models() = radial::testing::TinyModelInfo();
    EXPECT_TRUE(stream_->Write(hello));
  }

  v1::SchedulerMessage Read() {
    v1::SchedulerMessage message;
    EXPECT_TRUE(stream_->Read(&message)) << "the scheduler closed the worker stream";
    return message;
  }
  void Send(const v1::WorkerMessage& message) { EXPECT_TRUE(stream_->Write(message)); }
  void Progress(const std::string& job_id, uint32_t step, uint32_t total) {
    v1::WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->mutable_progress()->set_stage(v1::STAGE_DENOISING);
    message.mutable_progress()->mutable_progress()->set_step(step);
    message.mutable_progress()->mutable_progress()->set_total(total);
    Send(message);
  }
  void Chunk(const std::string& job_id, uint64_t offset, const std::string& data) {
    v1::WorkerMessage message;
    message.mutable_chunk()->set_job_id(job_id);
    message.mutable_chunk()->mutable_chunk()->set_offset(offset);
    message.mutable_chunk()->mutable_chunk()->set_data(data);
    Send(message);
  }
  void Done(const std::string& job_id) {
    v1::WorkerMessage message;
    message.mutable_done()->set_job_id(job_id);
    message.mutable_done()->mutable_stats()->set_frames(17);
    Send(message);
  }
  void Failed(const std::string& job_id, int code, const std::string& text) {
    v1::WorkerMessage message;
    message.mutable_failed()->set_job_id(job_id);
    message.mutable_failed()->mutable_error()->set_code(code);
    message.mutable_failed()->mutable_error()->set_message(text);
    Send(message);
  }
  // The process dies: the stream breaks without a goodbye.
  void Kill() { context_.TryCancel(); }

 private:
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream_;
};

class SchedulerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.scheduler.max_chunk_bytes = 4;
    auto server = SchedulerServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials());
    client_ = v1::VideoService::NewStub(channel_);
  }

  // Waits until the scheduler has registered `count` workers (the hello travels asynchronously).
  void AwaitWorkers(size_t count) {
    for (int i = 0; i < 400 && server_->scheduler().connected_workers() != count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(server_->scheduler().connected_workers(), count);
  }

  grpc::Status Submit(const v1::GenerateRequest& request, v1::Job* job) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return client_->Submit(&context, request, job);
  }

  v1::Job Get(const std::string& id) {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(client_->GetJob(&context, request, &job).ok());
    return job;
  }

  std::unique_ptr<SchedulerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> client_;
};

v1::GenerateRequest Prompt(const std::string& prompt) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  return request;
}

TEST_F(SchedulerServerTest, HealthIsServing) {
  // grpc.health.v1.Health/Check through a generic stub (Debian ships no generated health stubs): the
  // empty request is zero bytes; the response HealthCheckResponse{status: SERVING} is field 1 = 1.
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::Slice empty_message("");
  grpc::ByteBuffer request(&empty_message, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "SERVING";
}

TEST_F(SchedulerServerTest, GenerateStreamsEventsAndBytesInOrder) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = client_->Generate(&context, Prompt("a red fox"));
  v1::JobEvent event;
  ASSERT_TRUE(stream->Read(&event));
  ASSERT_TRUE(event.has_accepted());
  const std::string job_id = event.job_id();
  EXPECT_EQ(event.accepted().request().width(), 128u);

  const v1::SchedulerMessage assign = worker.Read();
  ASSERT_TRUE(assign.has_assign());
  EXPECT_EQ(assign.assign().job_id(), job_id);
  worker.Progress(job_id, 1, 4);
  worker.Chunk(job_id, 0, "ftypmoov");
  worker.Chunk(job_id, 8, "moofmdat!");
  worker.Done(job_id);

  std::string bytes;
  bool saw_progress = false;
  while (stream->Read(&event)) {
    EXPECT_EQ(event.job_id(), job_id);
    if (event.has_progress()) saw_progress = true;
    if (event.has_chunk()) {
      EXPECT_EQ(event.chunk().offset(), bytes.size());
      EXPECT_LE(event.chunk().data().size(), 4u);
      bytes += event.chunk().data();
    }
    if (event.has_completed()) {
      EXPECT_EQ(event.completed().stats().worker_id(), "w1");
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(saw_progress);
  EXPECT_EQ(bytes, "ftypmoovmoofmdat!");
  EXPECT_EQ(Get(job_id).state(), v1::JOB_STATE_SUCCEEDED);

  // Watch from an offset: exactly the remaining bytes, then the end.
  grpc::ClientContext watch_context;
  v1::WatchRequest watch;
  watch.set_job_id(job_id);
  watch.set_from_byte_offset(10);
  auto watcher = client_->Watch(&watch_context, watch);
  std::string rest;
  bool completed = false;
  while (watcher->Read(&event)) {
    if (event.has_chunk()) rest += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(watcher->Finish().ok());
  EXPECT_EQ(rest, bytes.substr(10));
  EXPECT_TRUE(completed);
}

TEST_F(SchedulerServerTest, BadInputGetsTheRightCodeAndAMessageNamingTheField) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  struct Case {
    v1::GenerateRequest request;
    grpc::StatusCode code;
    std::string message_start;
  };
  std::vector<Case> cases;
  cases.push_back({Prompt(""), grpc::StatusCode::INVALID_ARGUMENT, "prompt: got an empty string, expected 1 to 100"});
  cases.push_back({Prompt(std::string(101, 'x')), grpc::StatusCode::INVALID_ARGUMENT, "prompt: got 101 characters"});
  v1::GenerateRequest model = Prompt("x");
  model.set_model("nope");
  cases.push_back({model, grpc::StatusCode::NOT_FOUND, "model: got 'nope', expected one of [tiny]"});
  v1::GenerateRequest width = Prompt("x");
  width.set_width(100);
  cases.push_back({width, grpc::StatusCode::INVALID_ARGUMENT, "width: got 100, expected a multiple of 16 in [64, 256]"});
  v1::GenerateRequest frames = Prompt("x");
  frames.set_frames(40);
  cases.push_back({frames, grpc::StatusCode::INVALID_ARGUMENT, "frames: got 40, expected 4k+1 in [1, 33]"});
  v1::GenerateRequest steps = Prompt("x");
  steps.set_steps(51);
  cases.push_back({steps, grpc::StatusCode::INVALID_ARGUMENT, "steps: got 51, expected [1, 50]"});
  v1::GenerateRequest guidance = Prompt("x");
  guidance.set_guidance(std::nanf(""));
  cases.push_back({guidance, grpc::StatusCode::INVALID_ARGUMENT, "guidance: got nan"});
  v1::GenerateRequest negative = Prompt("x");
  negative.set_guidance(-1);
  cases.push_back({negative, grpc::StatusCode::INVALID_ARGUMENT, "guidance: got -1, expected a finite value in [0, 20]"});
  for (const Case& c : cases) {
    v1::Job job;
    const grpc::Status status = Submit(c.request, &job);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.message_start, 0), 0u) << status.error_message();
    // Generate reports the same error on its stream.
    grpc::ClientContext context;
    auto stream = client_->Generate(&context, c.request);
    v1::JobEvent event;
    EXPECT_FALSE(stream->Read(&event));
    EXPECT_EQ(stream->Finish().error_code(), c.code);
  }
  grpc::ClientContext get_context;
  v1::GetJobRequest get;
  get.set_job_id("0000000000000000");
  v1::Job job;
  EXPECT_EQ(client_->GetJob(&get_context, get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext watch_context;
  v1::WatchRequest watch;
  watch.set_job_id("missing");
  auto watcher = client_->Watch(&watch_context, watch);
  v1::JobEvent event;
  EXPECT_FALSE(watcher->Read(&event));
  EXPECT_EQ(watcher->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerServerTest, CancelQueuedAndRunningJobs) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  v1::Job running, queued;
  ASSERT_TRUE(Submit(Prompt("first"), &running).ok());
  ASSERT_TRUE(Submit(Prompt("second"), &queued).ok());
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  ASSERT_EQ(worker.Read().assign().job_id(), running.id());

  grpc::ClientContext cancel_queued;
  v1::CancelJobRequest request;
  request.set_job_id(queued.id());
  v1::Job after;
  ASSERT_TRUE(client_->CancelJob(&cancel_queued, request, &after).ok());
  EXPECT_EQ(after.state(), v1::JOB_STATE_CANCELLED);

  grpc::ClientContext cancel_running;
  request.set_job_id(running.id());
  ASSERT_TRUE(client_->CancelJob(&cancel_running, request, &after).ok());
  const v1::SchedulerMessage cancel = worker.Read();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().job_id(), running.id());
  worker.Failed(running.id(), 1, "stopped after step 1");
  for (int i = 0; i < 400 && Get(running.id()).state() != v1::JOB_STATE_CANCELLED; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Get(running.id()).state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerServerTest, KilledWorkerJobIsRequeuedAndFinishedByAnother) {
  auto first = std::make_unique<FakeWorker>(channel_, "w1");
  AwaitWorkers(1);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = client_->Generate(&context, Prompt("a whale"));
  v1::JobEvent event;
  ASSERT_TRUE(stream->Read(&event));
  const std::string job_id = event.job_id();
  ASSERT_EQ(first->Read().assign().job_id(), job_id);
  first->Chunk(job_id, 0, "old!");
  ASSERT_TRUE(stream->Read(&event));
  ASSERT_TRUE(event.has_chunk());
  first->Kill();
  AwaitWorkers(0);
  ASSERT_TRUE(stream->Read(&event));
  ASSERT_TRUE(event.has_restarted()) << event.DebugString();
  EXPECT_EQ(event.restarted().attempt(), 2u);

  FakeWorker second(channel_, "w2");
  const v1::SchedulerMessage assign = second.Read();
  ASSERT_EQ(assign.assign().job_id(), job_id);
  EXPECT_EQ(assign.assign().attempt(), 2u);
  second.Chunk(job_id, 0, "new video");
  second.Done(job_id);
  std::string bytes;
  bool completed = false;
  while (stream->Read(&event)) {
    if (event.has_chunk()) bytes += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(bytes, "new video");
  EXPECT_TRUE(completed);
}

TEST_F(SchedulerServerTest, ListModelsShowsWhatWorkersServe) {
  {
    grpc::ClientContext context;
    v1::ListModelsResponse response;
    ASSERT_TRUE(client_->ListModels(&context, v1::ListModelsRequest(), &response).ok());
    EXPECT_EQ(response.models_size(), 0);
  }
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(client_->ListModels(&context, v1::ListModelsRequest(), &response).ok());
  ASSERT_EQ(response.models_size(), 1);
  EXPECT_EQ(response.models(0).name(), "tiny");
  EXPECT_EQ(response.models(0).workers(), 1u);
  EXPECT_EQ(response.default_model(), "tiny");
}

}  // namespace
}  // namespace radial::server
