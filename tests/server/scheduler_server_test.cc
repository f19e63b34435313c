// The scheduler's gRPC services, in process on 127.0.0.1 port 0, driven by real gRPC clients: a
// client of VideoService, a fake worker speaking WorkerService over a real stream, raw bytes sent
// through grpc::GenericStub (requests that do not decode), gRPC health checking and shutdown.
#include "rpc/scheduler_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "store/job_store.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/scheduler_fakes.h"
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

using radial::testing::FakeFmp4;
using radial::testing::kTinyFrames;
using radial::testing::SharedJobStore;

constexpr auto kTimeout = std::chrono::seconds(20);

std::chrono::system_clock::time_point Deadline() { return std::chrono::system_clock::now() + kTimeout; }

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Valid() || !buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return bytes;
}

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
  // Reads until the scheduler ends the stream; its status.
  grpc::Status ReadToEnd() {
    v1::SchedulerMessage message;
    while (stream_->Read(&message)) {
    }
    return stream_->Finish();
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
  // The video in two chunks, from `offset` of `video` on.
  void Video(const std::string& job_id, const std::string& video, uint64_t offset = 0) {
    const uint64_t middle = offset + (video.size() - offset) / 2;
    Chunk(job_id, offset, video.substr(offset, middle - offset));
    Chunk(job_id, middle, video.substr(middle));
  }
  void Done(const std::string& job_id, uint32_t frames = kTinyFrames) {
    v1::WorkerMessage message;
    message.mutable_done()->set_job_id(job_id);
    message.mutable_done()->mutable_stats()->set_frames(frames);
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

// What a raw call got back: the messages (as bytes) and the final status.
struct RawResult {
  std::vector<std::string> messages;
  grpc::Status status;
};

class SchedulerServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(Options(), std::make_unique<InMemoryJobStore>()); }

  ServerOptions Options() {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.scheduler.max_chunk_bytes = 64;
    return options;
  }
  void StartServer(const ServerOptions& options, std::unique_ptr<JobStore> store) {
    server_.reset();
    auto server = SchedulerServer::Start(options, std::move(store));
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
    context.set_deadline(Deadline());
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(client_->GetJob(&context, request, &job).ok());
    return job;
  }

  // Polls GetJob until the job is in `state` (a worker's message travels asynchronously).
  v1::Job AwaitState(const std::string& id, v1::JobState state) {
    v1::Job job = Get(id);
    for (int i = 0; i < 400 && job.state() != state; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      job = Get(id);
    }
    EXPECT_EQ(job.state(), state);
    return job;
  }

  // A unary call of `method` with `request` as its bytes.
  RawResult RawUnary(const std::string& method, const std::string& request) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::ByteBuffer request_bytes = Bytes(request);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request_bytes, &response,
                   [&done](grpc::Status status) { done.set_value(status); });
    RawResult result;
    result.status = done.get_future().get();
    if (result.status.ok()) result.messages.push_back(Flatten(response));
    return result;
  }

  // A streaming call of `method`: writes each of `requests` as bytes, half-closes, reads every
  // response until the server ends the call.
  RawResult RawStream(const std::string& method, const std::vector<std::string>& requests) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::CompletionQueue queue;
    auto next = [&queue](intptr_t expected) {
      void* tag = nullptr;
      bool ok = false;
      EXPECT_TRUE(queue.Next(&tag, &ok));
      EXPECT_EQ(reinterpret_cast<intptr_t>(tag), expected);
      return ok;
    };
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&context, method, &queue);
    call->StartCall(reinterpret_cast<void*>(1));
    RawResult result;
    if (next(1)) {
      bool writable = true;
      for (const std::string& request : requests) {
        if (!writable) break;
        // Let the server read each message before the next (a second hello must arrive second).
        call->Write(Bytes(request), reinterpret_cast<void*>(2));
        writable = next(2);
      }
      if (writable) {
        call->WritesDone(reinterpret_cast<void*>(3));
        next(3);
      }
      for (;;) {
        grpc::ByteBuffer message;
        call->Read(&message, reinterpret_cast<void*>(4));
        if (!next(4)) break;
        result.messages.push_back(Flatten(message));
      }
    }
    call->Finish(&result.status, reinterpret_cast<void*>(5));
    next(5);
    queue.Shutdown();
    void* tag;
    bool ok;
    while (queue.Next(&tag, &ok)) {
    }
    return result;
  }

  // grpc.health.v1.Health/Check through the generic stub (Debian ships no generated health stubs):
  // HealthCheckRequest{service} is field 1; the response's status (field 1) is 1 SERVING,
  // 2 NOT_SERVING.
  int HealthStatus(const std::string& service) {
    std::string request;
    if (!service.empty()) request = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
    const RawResult result = RawUnary("/grpc.health.v1.Health/Check", request);
    if (!result.status.ok()) return -static_cast<int>(result.status.error_code());
    const std::string& bytes = result.messages.at(0);
    if (bytes.size() != 2 || bytes[0] != '\x08') return -100;
    return bytes[1];
  }
  int AwaitHealth(const std::string& service, int expected) {
    int status = HealthStatus(service);
    for (int i = 0; i < 100 && status != expected; ++i) {  // the ticker updates it every 200 ms
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      status = HealthStatus(service);
    }
    return status;
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

// ---------------------------------------------------------------- health

TEST_F(SchedulerServerTest, HealthServesTheProcessAndTheVideoServiceOnlyWithAWorker) {
  EXPECT_EQ(HealthStatus(""), 1) << "SERVING";
  EXPECT_EQ(AwaitHealth("radial.v1.VideoService", 2), 2) << "NOT_SERVING without a worker";
  EXPECT_EQ(HealthStatus("radial.v1.WorkerService"), 1);
  EXPECT_EQ(HealthStatus("no.such.Service"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));
  {
    FakeWorker worker(channel_, "w1");
    AwaitWorkers(1);
    EXPECT_EQ(AwaitHealth("radial.v1.VideoService", 1), 1) << "SERVING with one";
    EXPECT_EQ(HealthStatus(""), 1);
    worker.Kill();
    AwaitWorkers(0);
  }
  EXPECT_EQ(AwaitHealth("radial.v1.VideoService", 2), 2) << "NOT_SERVING again once it left";
}

// ---------------------------------------------------------------- the path of a job

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
  EXPECT_EQ(job_id.size(), 32u);
  EXPECT_EQ(event.accepted().request().width(), 128u);

  const v1::SchedulerMessage assign = worker.Read();
  ASSERT_TRUE(assign.has_assign());
  EXPECT_EQ(assign.assign().job_id(), job_id);
  EXPECT_EQ(assign.assign().attempt(), 1u);
  const std::string video = FakeFmp4(assign.assign().request().frames(), 200);
  worker.Progress(job_id, 1, 4);
  worker.Video(job_id, video);
  worker.Done(job_id, assign.assign().request().frames());

  std::string bytes;
  bool saw_progress = false, completed = false;
  while (stream->Read(&event)) {
    EXPECT_EQ(event.job_id(), job_id);
    if (event.has_progress()) saw_progress = true;
    if (event.has_chunk()) {
      EXPECT_EQ(event.chunk().offset(), bytes.size());
      EXPECT_LE(event.chunk().data().size(), 64u);
      bytes += event.chunk().data();
    }
    if (event.has_completed()) {
      completed = true;
      EXPECT_EQ(event.completed().stats().worker_id(), "w1");
      EXPECT_EQ(event.completed().stats().frames(), kTinyFrames);
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(completed);
  EXPECT_TRUE(saw_progress);
  EXPECT_EQ(bytes, video);
  EXPECT_EQ(Get(job_id).state(), v1::JOB_STATE_SUCCEEDED);

  // Watch from an offset: exactly the remaining bytes, then the end.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id(job_id);
  watch.set_from_byte_offset(10);
  auto watcher = client_->Watch(&watch_context, watch);
  std::string rest;
  completed = false;
  while (watcher->Read(&event)) {
    if (event.has_chunk()) rest += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(watcher->Finish().ok());
  EXPECT_EQ(rest, video.substr(10));
  EXPECT_TRUE(completed);

  // Past the end of the video.
  grpc::ClientContext past_context;
  past_context.set_deadline(Deadline());
  watch.set_from_byte_offset(video.size() + 1);
  auto past = client_->Watch(&past_context, watch);
  EXPECT_FALSE(past->Read(&event));
  const grpc::Status past_status = past->Finish();
  EXPECT_EQ(past_status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(Contains(past_status.error_message(), "from_byte_offset")) << past_status.error_message();
}

TEST_F(SchedulerServerTest, CancellingAGenerateCallLeavesTheJobRunning) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  std::string job_id;
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    auto stream = client_->Generate(&context, Prompt("a red fox"));
    v1::JobEvent event;
    ASSERT_TRUE(stream->Read(&event));
    job_id = event.job_id();
    context.TryCancel();
    while (stream->Read(&event)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  const v1::SchedulerMessage assign = worker.Read();
  ASSERT_EQ(assign.assign().job_id(), job_id);
  const std::string video = FakeFmp4(kTinyFrames, 100);
  worker.Video(job_id, video);
  worker.Done(job_id);
  const v1::Job done = AwaitState(job_id, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.bytes_produced(), video.size());
}

TEST_F(SchedulerServerTest, CancellingARejectedWatchRightAwayLeavesTheServerUp) {
  // A rejected Watch is finished in its reactor's constructor; a cancel racing with that finish
  // used to finish it a second time, which aborts the process inside gRPC.
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::WatchRequest watch;
    watch.set_job_id("no-such-job");
    auto watcher = client_->Watch(&context, watch);
    if (i % 2 == 0) context.TryCancel();
    v1::JobEvent event;
    while (watcher->Read(&event)) {
    }
    const grpc::StatusCode code = watcher->Finish().error_code();
    EXPECT_TRUE(code == grpc::StatusCode::NOT_FOUND || code == grpc::StatusCode::CANCELLED) << code;
  }
  grpc::ClientContext context;  // still serving
  context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id("no-such-job");
  auto watcher = client_->Watch(&context, watch);
  v1::JobEvent event;
  EXPECT_FALSE(watcher->Read(&event));
  EXPECT_EQ(watcher->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerServerTest, AWatcherThatReadsOnlyAtTheEndGetsEveryByte) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  v1::Job job;
  ASSERT_TRUE(Submit(Prompt("a cat"), &job).ok());
  ASSERT_EQ(worker.Read().assign().job_id(), job.id());
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id(job.id());
  auto watcher = client_->Watch(&context, watch);
  const std::string video = FakeFmp4(kTinyFrames, 256 << 10);  // 8000 events of 64 bytes
  for (uint64_t offset = 0; offset < video.size(); offset += 100 << 10) {
    worker.Chunk(job.id(), offset, video.substr(offset, 100 << 10));
  }
  worker.Done(job.id());
  AwaitState(job.id(), v1::JOB_STATE_SUCCEEDED);
  v1::JobEvent event;
  std::string bytes;
  bool completed = false;
  while (watcher->Read(&event)) {
    if (event.has_chunk()) bytes += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(watcher->Finish().ok());
  EXPECT_TRUE(completed);
  EXPECT_EQ(bytes.size(), video.size());
  EXPECT_TRUE(bytes == video);
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
  cases.push_back({model, grpc::StatusCode::NOT_FOUND, "model: got 'nope', expected one of the served models [tiny]"});
  v1::GenerateRequest width = Prompt("x");
  width.set_width(100);
  cases.push_back(
      {width, grpc::StatusCode::INVALID_ARGUMENT, "width: got 100, expected a multiple of 16 in [64, 256]"});
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
  cases.push_back(
      {negative, grpc::StatusCode::INVALID_ARGUMENT, "guidance: got -1, expected a finite value in [0, 20]"});
  v1::GenerateRequest timeout = Prompt("x");
  timeout.set_run_timeout_seconds(604801);
  cases.push_back({timeout, grpc::StatusCode::INVALID_ARGUMENT, "run_timeout_seconds: got 604801"});
  for (const Case& c : cases) {
    v1::Job job;
    const grpc::Status status = Submit(c.request, &job);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.message_start, 0), 0u) << status.error_message();
    // Generate reports the same error on its stream.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
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

TEST_F(SchedulerServerTest, HugeJobIdIsNotFoundWithAShortMessage) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::GetJobRequest request;
  request.set_job_id(std::string(1 << 20, 'a'));
  v1::Job job;
  const grpc::Status status = client_->GetJob(&context, request, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_LT(status.error_message().size(), 300u) << "the id is echoed cut";
  EXPECT_TRUE(Contains(status.error_message(), "1048576 bytes")) << status.error_message();
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
  EXPECT_FALSE(cancel.cancel().reason().empty());
  worker.Failed(running.id(), 1, "stopped after step 1");
  AwaitState(running.id(), v1::JOB_STATE_CANCELLED);

  grpc::ClientContext cancel_again;
  const grpc::Status again = client_->CancelJob(&cancel_again, request, &after);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(again.error_message(), "CANCELLED")) << again.error_message();
}

TEST_F(SchedulerServerTest, ListJobsAndDeleteJobOverGrpc) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  v1::Job running, queued;
  ASSERT_TRUE(Submit(Prompt("first"), &running).ok());
  ASSERT_TRUE(Submit(Prompt("second"), &queued).ok());
  ASSERT_EQ(worker.Read().assign().job_id(), running.id());

  grpc::ClientContext list_context;
  v1::ListJobsRequest list;
  list.set_page_size(1);
  v1::ListJobsResponse page;
  ASSERT_TRUE(client_->ListJobs(&list_context, list, &page).ok());
  ASSERT_EQ(page.jobs_size(), 1);
  EXPECT_EQ(page.jobs(0).id(), queued.id()) << "newest first";
  ASSERT_FALSE(page.next_page_token().empty());
  grpc::ClientContext next_context;
  list.set_page_token(page.next_page_token());
  ASSERT_TRUE(client_->ListJobs(&next_context, list, &page).ok());
  ASSERT_EQ(page.jobs_size(), 1);
  EXPECT_EQ(page.jobs(0).id(), running.id());
  EXPECT_TRUE(page.next_page_token().empty());
  grpc::ClientContext bad_context;
  list.set_page_token("not a token");
  const grpc::Status bad = client_->ListJobs(&bad_context, list, &page);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Deleting a watched running job: the worker is told to stop, the watch ends with NOT_FOUND.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id(running.id());
  auto watcher = client_->Watch(&watch_context, watch);
  v1::JobEvent event;
  ASSERT_TRUE(watcher->Read(&event));
  ASSERT_TRUE(event.has_accepted());
  grpc::ClientContext delete_context;
  v1::DeleteJobRequest remove;
  remove.set_job_id(running.id());
  v1::Job deleted;
  ASSERT_TRUE(client_->DeleteJob(&delete_context, remove, &deleted).ok());
  EXPECT_EQ(deleted.id(), running.id());
  EXPECT_EQ(deleted.state(), v1::JOB_STATE_RUNNING);
  const v1::SchedulerMessage cancel = worker.Read();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().job_id(), running.id());
  while (watcher->Read(&event)) {
  }
  const grpc::Status ended = watcher->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::NOT_FOUND) << ended.error_message();
  EXPECT_FALSE(ended.error_message().empty());

  grpc::ClientContext get_context;
  v1::GetJobRequest get;
  get.set_job_id(running.id());
  v1::Job job;
  EXPECT_EQ(client_->GetJob(&get_context, get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  worker.Failed(running.id(), 1, "stopped");
  const v1::SchedulerMessage next = worker.Read();
  EXPECT_EQ(next.assign().job_id(), queued.id()) << "the slot is free once the worker stopped";
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
  const std::string video = FakeFmp4(kTinyFrames, 100);
  first->Chunk(job_id, 0, video.substr(0, 30));
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
  second.Video(job_id, video);
  second.Done(job_id);
  std::string bytes;
  bool completed = false;
  while (stream->Read(&event)) {
    if (event.has_chunk()) bytes += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(bytes, video);
  EXPECT_TRUE(completed);
}

TEST_F(SchedulerServerTest, WorkerWithABadVideoFailsItsJobNamingIt) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  v1::Job job;
  ASSERT_TRUE(Submit(Prompt("a cat"), &job).ok());
  ASSERT_EQ(worker.Read().assign().job_id(), job.id());
  worker.Video(job.id(), FakeFmp4(kTinyFrames));
  worker.Done(job.id(), kTinyFrames + 4);
  const v1::Job failed = AwaitState(job.id(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().code(), 13);
  EXPECT_TRUE(Contains(failed.error().message(), "worker w1")) << failed.error().message();
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

// ---------------------------------------------------------------- bytes that do not decode

// A length-delimited field 1 that claims 5 bytes and has 2; and field `field` holding a string
// that is not UTF-8.
const std::string kTruncated("\x0a\x05" "ab", 4);
std::string InvalidUtf8In(int field) { return std::string(1, static_cast<char>(field << 3 | 2)) + "\x02\xff\xfe"; }

TEST_F(SchedulerServerTest, UndecodableBytesOnEveryUnaryMethodAreInvalidArgument) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  struct Case {
    std::string method;
    std::string type;
    std::vector<std::string> requests;
  };
  const std::vector<Case> cases = {
      {"Submit", "GenerateRequest", {kTruncated, InvalidUtf8In(1), InvalidUtf8In(2), InvalidUtf8In(13)}},
      {"GetJob", "GetJobRequest", {kTruncated, InvalidUtf8In(1)}},
      {"CancelJob", "CancelJobRequest", {kTruncated, InvalidUtf8In(1)}},
      {"ListJobs", "ListJobsRequest", {kTruncated, InvalidUtf8In(2)}},
      {"DeleteJob", "DeleteJobRequest", {kTruncated, InvalidUtf8In(1)}},
      {"ListModels", "ListModelsRequest", {kTruncated, std::string("\x08", 1)}},
  };
  for (const Case& c : cases) {
    for (const std::string& request : c.requests) {
      const RawResult result = RawUnary("/radial.v1.VideoService/" + c.method, request);
      EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << c.method << ": " << result.status.error_message();
      EXPECT_FALSE(result.status.error_message().empty()) << c.method;
      EXPECT_TRUE(Contains(result.status.error_message(), "radial.v1." + c.type))
          << c.method << ": " << result.status.error_message();
    }
  }
  EXPECT_EQ(server_->scheduler().queued_jobs(), 0u);
  // The same service still answers well-formed bytes.
  v1::GetJobRequest get;
  get.set_job_id("unknown");
  EXPECT_EQ(RawUnary("/radial.v1.VideoService/GetJob", get.SerializeAsString()).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  const RawResult models = RawUnary("/radial.v1.VideoService/ListModels", "");
  ASSERT_TRUE(models.status.ok()) << models.status.error_message();
  v1::ListModelsResponse response;
  ASSERT_TRUE(response.ParseFromString(models.messages.at(0)));
  EXPECT_EQ(response.models_size(), 1);
}

TEST_F(SchedulerServerTest, UndecodableBytesOnStreamingMethodsAreInvalidArgument) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  struct Case {
    std::string method;
    std::string type;
    std::vector<std::string> requests;
  };
  const std::vector<Case> cases = {
      {"Watch", "WatchRequest", {kTruncated, InvalidUtf8In(1)}},
      {"Generate", "GenerateRequest", {kTruncated, InvalidUtf8In(2)}},
  };
  for (const Case& c : cases) {
    for (const std::string& request : c.requests) {
      const RawResult result = RawStream("/radial.v1.VideoService/" + c.method, {request});
      EXPECT_TRUE(result.messages.empty()) << c.method;
      EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << c.method << ": " << result.status.error_message();
      EXPECT_TRUE(Contains(result.status.error_message(), "radial.v1." + c.type))
          << c.method << ": " << result.status.error_message();
    }
  }
  EXPECT_EQ(server_->scheduler().queued_jobs(), 0u) << "no job came of Generate's bad bytes";
}

TEST_F(SchedulerServerTest, WorkerStreamEndsInvalidArgumentForABadFirstOrSecondMessage) {
  const std::string method = "/radial.v1.WorkerService/Connect";
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id("w-raw");
  hello.mutable_hello()->set_capacity(1);
  *hello.mutable_hello()->add_models() = radial::testing::TinyModelInfo();
  v1::WorkerMessage heartbeat;
  heartbeat.mutable_heartbeat()->set_unix_ms(1);

  const RawResult malformed = RawStream(method, {kTruncated});
  EXPECT_EQ(malformed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << malformed.status.error_message();
  EXPECT_TRUE(Contains(malformed.status.error_message(), "radial.v1.WorkerMessage"))
      << malformed.status.error_message();

  // WorkerMessage{hello: Hello{worker_id: "\xff\xfe"}}.
  const RawResult not_utf8 = RawStream(method, {std::string("\x0a\x04", 2) + InvalidUtf8In(1)});
  EXPECT_EQ(not_utf8.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << not_utf8.status.error_message();
  EXPECT_TRUE(Contains(not_utf8.status.error_message(), "radial.v1.WorkerMessage")) << not_utf8.status.error_message();

  const RawResult not_hello = RawStream(method, {heartbeat.SerializeAsString()});
  EXPECT_EQ(not_hello.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << not_hello.status.error_message();
  EXPECT_TRUE(Contains(not_hello.status.error_message(), "hello")) << not_hello.status.error_message();

  const RawResult second_hello = RawStream(method, {hello.SerializeAsString(), hello.SerializeAsString()});
  EXPECT_EQ(second_hello.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << second_hello.status.error_message();
  EXPECT_TRUE(Contains(second_hello.status.error_message(), "second hello")) << second_hello.status.error_message();

  const RawResult bad_after_hello = RawStream(method, {hello.SerializeAsString(), kTruncated});
  EXPECT_EQ(bad_after_hello.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << bad_after_hello.status.error_message();
  EXPECT_TRUE(Contains(bad_after_hello.status.error_message(), "radial.v1.WorkerMessage"))
      << bad_after_hello.status.error_message();

  AwaitWorkers(0);
  // A well-behaved worker still gets in.
  FakeWorker worker(channel_, "w-raw");
  AwaitWorkers(1);
}

TEST_F(SchedulerServerTest, RefusedHelloEndsTheStreamWithItsStatus) {
  FakeWorker first(channel_, "w1");
  AwaitWorkers(1);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stub = v1::WorkerService::NewStub(channel_);
  auto stream = stub->Connect(&context);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id("w2");
  v1::ModelInfo other_limits = radial::testing::TinyModelInfo();
  other_limits.set_prompt_max_chars(7);
  *hello.mutable_hello()->add_models() = other_limits;
  ASSERT_TRUE(stream->Write(hello));
  v1::SchedulerMessage message;
  EXPECT_FALSE(stream->Read(&message));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_TRUE(Contains(status.error_message(), "'tiny'")) << status.error_message();
  EXPECT_EQ(server_->scheduler().connected_workers(), 1u);
}

// ---------------------------------------------------------------- time and shutdown

TEST_F(SchedulerServerTest, SilentWorkerStreamIsClosedUnavailable) {
  ServerOptions options = Options();
  options.scheduler.worker_timeout_ms = 300;
  options.tick_ms = 50;
  StartServer(options, std::make_unique<InMemoryJobStore>());
  FakeWorker worker(channel_, "w-silent");
  AwaitWorkers(1);
  v1::Job job;
  ASSERT_TRUE(Submit(Prompt("a cat"), &job).ok());
  ASSERT_EQ(worker.Read().assign().job_id(), job.id());
  const grpc::Status closed = worker.ReadToEnd();
  EXPECT_EQ(closed.error_code(), grpc::StatusCode::UNAVAILABLE) << closed.error_message();
  EXPECT_TRUE(Contains(closed.error_message(), "heartbeat")) << closed.error_message();
  AwaitWorkers(0);
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_QUEUED) << "its job waits for another worker";
}

TEST_F(SchedulerServerTest, ShutdownEndsAnOpenWatchWithUnavailableRestarting) {
  FakeWorker worker(channel_, "w1");
  AwaitWorkers(1);
  v1::Job job;
  ASSERT_TRUE(Submit(Prompt("a cat"), &job).ok());
  ASSERT_EQ(worker.Read().assign().job_id(), job.id());
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id(job.id());
  auto watcher = client_->Watch(&context, watch);
  v1::JobEvent event;
  ASSERT_TRUE(watcher->Read(&event));
  ASSERT_TRUE(event.has_accepted());

  std::thread shutdown([this] { server_->Shutdown(500); });
  while (watcher->Read(&event)) {
  }
  const grpc::Status status = watcher->Finish();
  shutdown.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(Contains(status.error_message(), "the scheduler is restarting")) << status.error_message();
}

TEST_F(SchedulerServerTest, RestartOnTheSameStoreRunsTheInterruptedJobAgain) {
  auto store = std::make_shared<InMemoryJobStore>();
  StartServer(Options(), std::make_unique<SharedJobStore>(store));
  std::string job_id;
  const std::string video = FakeFmp4(kTinyFrames, 100);
  {
    FakeWorker worker(channel_, "w1");
    AwaitWorkers(1);
    v1::Job job;
    ASSERT_TRUE(Submit(Prompt("a cat"), &job).ok());
    job_id = job.id();
    ASSERT_EQ(worker.Read().assign().job_id(), job_id);
    worker.Chunk(job_id, 0, video.substr(0, 40));
    for (int i = 0; i < 400 && Get(job_id).bytes_produced() != 40; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(Get(job_id).bytes_produced(), 40u);
    server_->Shutdown(200);
  }
  StartServer(Options(), std::make_unique<SharedJobStore>(store));
  const v1::Job reloaded = Get(job_id);
  EXPECT_EQ(reloaded.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(reloaded.attempts(), 1u);

  // The client had 40 bytes of attempt 1: it is told to start over.
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::WatchRequest watch;
  watch.set_job_id(job_id);
  watch.set_from_byte_offset(40);
  watch.set_attempt(1);
  auto watcher = client_->Watch(&context, watch);
  v1::JobEvent event;
  ASSERT_TRUE(watcher->Read(&event));
  ASSERT_TRUE(event.has_accepted());
  ASSERT_TRUE(watcher->Read(&event));
  ASSERT_TRUE(event.has_restarted()) << event.DebugString();
  EXPECT_EQ(event.restarted().attempt(), 2u);

  FakeWorker worker(channel_, "w1");
  const v1::SchedulerMessage assign = worker.Read();
  ASSERT_EQ(assign.assign().job_id(), job_id);
  EXPECT_EQ(assign.assign().attempt(), 2u);
  worker.Video(job_id, video);
  worker.Done(job_id);
  std::string bytes;
  bool completed = false;
  while (watcher->Read(&event)) {
    if (event.has_chunk()) bytes += event.chunk().data();
    completed = completed || event.has_completed();
  }
  EXPECT_TRUE(watcher->Finish().ok());
  EXPECT_TRUE(completed);
  EXPECT_EQ(bytes, video);
}

}  // namespace
}  // namespace radial::server
