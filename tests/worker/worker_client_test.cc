// WorkerClient with the tiny bundle's real Pipeline against a fake scheduler in process: a
// WorkerService on 127.0.0.1 that records what the worker sends and lets the test send Assign and
// Cancel. Checks what a scheduler relies on when a worker shuts down (Draining first, the running
// job finished or handed back, never both, new assignments handed back, a clean end of the stream)
// and that an assignment outside the manifest never reaches the pipeline.
#include "worker_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "radial/v1/worker_service.grpc.pb.h"

namespace radial::worker {
namespace {

using namespace std::chrono_literals;

// The worker's stream as the scheduler sees it: every message (but heartbeats) in order, and a way
// to write to the worker while its stream is open.
class FakeScheduler final : public v1::WorkerService::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*,
                       grpc::ServerReaderWriter<v1::SchedulerMessage, v1::WorkerMessage>* stream) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stream_ = stream;
    }
    v1::WorkerMessage message;
    while (stream->Read(&message)) {
      if (message.has_heartbeat()) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      received_.push_back(message);
      changed_.notify_all();
    }
    // The worker half-closed the stream (or it broke): end it OK, as the scheduler does.
    std::lock_guard<std::mutex> lock(mutex_);
    stream_ = nullptr;
    ended_ = true;
    changed_.notify_all();
    return grpc::Status::OK;
  }

  bool Send(const v1::SchedulerMessage& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_ != nullptr && stream_->Write(message);
  }

  // Waits up to `timeout` for a message that satisfies `match`; returns it.
  std::optional<v1::WorkerMessage> Await(const std::function<bool(const v1::WorkerMessage&)>& match,
                                         std::chrono::milliseconds timeout = 60s) {
    std::unique_lock<std::mutex> lock(mutex_);
    std::optional<v1::WorkerMessage> found;
    changed_.wait_for(lock, timeout, [&] {
      for (const v1::WorkerMessage& message : received_) {
        if (match(message)) found = message;
      }
      return found.has_value();
    });
    return found;
  }
  std::optional<v1::WorkerMessage> Await(v1::WorkerMessage::MessageCase kind, std::chrono::milliseconds timeout = 60s) {
    return Await([kind](const v1::WorkerMessage& m) { return m.message_case() == kind; }, timeout);
  }
  bool AwaitEnded(std::chrono::milliseconds timeout = 60s) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return ended_; });
  }
  std::vector<v1::WorkerMessage> Received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }
  // Kinds of the messages about `job_id` that end a job on the scheduler's side.
  std::vector<v1::WorkerMessage::MessageCase> Outcomes(const std::string& job_id) {
    std::vector<v1::WorkerMessage::MessageCase> outcomes;
    for (const v1::WorkerMessage& m : Received()) {
      if ((m.has_done() && m.done().job_id() == job_id) || (m.has_failed() && m.failed().job_id() == job_id) ||
          (m.has_hand_back() && m.hand_back().job_id() == job_id)) {
        outcomes.push_back(m.message_case());
      }
    }
    return outcomes;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  grpc::ServerReaderWriter<v1::SchedulerMessage, v1::WorkerMessage>* stream_ = nullptr;
  std::vector<v1::WorkerMessage> received_;
  bool ended_ = false;
};

class WorkerClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* bundle = std::getenv("RADIAL_TEST_BUNDLE");
    if (bundle == nullptr) return;
    auto loaded = Pipeline::Load(bundle, "cpu");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    pipeline_ = std::move(*loaded).release();
  }
  static void TearDownTestSuite() {
    delete pipeline_;
    pipeline_ = nullptr;
  }

  void SetUp() override {
    if (pipeline_ == nullptr) GTEST_SKIP() << "RADIAL_TEST_BUNDLE is not set (ctest sets it)";
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&scheduler_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    WorkerOptions options;
    options.scheduler = "127.0.0.1:" + std::to_string(port);
    options.worker_id = "w-test";
    options.heartbeat_ms = 200;
    worker_ = std::make_unique<WorkerClient>(options, *pipeline_);
    run_ = std::async(std::launch::async, [this] { return worker_->Run(); });
    ASSERT_TRUE(scheduler_.Await(v1::WorkerMessage::kHello).has_value());
  }
  void TearDown() override {
    if (worker_ != nullptr) {
      worker_->Stop();
      if (run_.valid()) run_.wait();
    }
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }

  // A resolved request within the tiny bundle's manifest: a short one (64x64, 1 frame) or, with
  // `long_running`, one that runs for a minute or more on a CPU (256x256, 17 frames, 100 steps).
  static v1::SchedulerMessage Assignment(const std::string& job_id, uint32_t steps, bool long_running = false) {
    v1::SchedulerMessage message;
    v1::Assign& assign = *message.mutable_assign();
    assign.set_job_id(job_id);
    assign.set_attempt(1);
    v1::GenerateRequest& request = *assign.mutable_request();
    request.set_model(pipeline_->manifest().name);
    request.set_prompt("a fox");
    request.set_width(long_running ? 256 : 64);
    request.set_height(long_running ? 256 : 64);
    request.set_frames(long_running ? 17 : 1);
    request.set_fps(16);
    request.set_steps(long_running ? 100 : steps);
    request.set_guidance(1);
    request.set_seed(3);
    v1::RadialOptions& radial = *request.mutable_radial();
    radial.set_decay(1);
    radial.set_sink(true);
    radial.set_block(64);
    return message;
  }

  // Waits until the job has finished a denoising step: it runs inside the pipeline.
  void AwaitRunning(const std::string& job_id) {
    ASSERT_TRUE(scheduler_.Await([&](const v1::WorkerMessage& m) {
      return m.has_progress() && m.progress().job_id() == job_id &&
             m.progress().progress().stage() == v1::STAGE_DENOISING && m.progress().progress().step() >= 1;
    }));
  }

  // Runs Drain(grace) on its own thread, as radial-worker's main does.
  std::future<void> StartDrain(std::chrono::seconds grace) {
    return std::async(std::launch::async, [this, grace] { worker_->Drain(grace); });
  }

  static Pipeline* pipeline_;
  FakeScheduler scheduler_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<WorkerClient> worker_;
  std::future<absl::Status> run_;
};

Pipeline* WorkerClientTest::pipeline_ = nullptr;

TEST_F(WorkerClientTest, IdleDrainSaysDrainingAndEndsTheStreamCleanly) {
  worker_->Drain(30s);
  EXPECT_TRUE(scheduler_.AwaitEnded(5s)) << "Drain returns once the stream has ended";
  const std::vector<v1::WorkerMessage> received = scheduler_.Received();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_TRUE(received[0].has_hello());
  ASSERT_TRUE(received[1].has_draining());
  EXPECT_EQ(received[1].draining().grace_seconds(), 30u);
  ASSERT_EQ(run_.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(run_.get().ok()) << "Run() returns OK after a drain, without reconnecting";
}

TEST_F(WorkerClientTest, DrainLetsTheRunningJobFinishAndHandsBackNewAssignments) {
  ASSERT_TRUE(scheduler_.Send(Assignment("j1", 3)));
  AwaitRunning("j1");
  std::future<void> drain = StartDrain(600s);
  ASSERT_TRUE(scheduler_.Await(v1::WorkerMessage::kDraining).has_value());
  ASSERT_TRUE(scheduler_.Send(Assignment("j2", 1)));  // the scheduler had not seen Draining yet
  const auto handed_back = scheduler_.Await(v1::WorkerMessage::kHandBack);
  ASSERT_TRUE(handed_back.has_value());
  EXPECT_EQ(handed_back->hand_back().job_id(), "j2");
  EXPECT_NE(handed_back->hand_back().reason().find("draining"), std::string::npos) << handed_back->hand_back().reason();

  ASSERT_EQ(drain.wait_for(60s), std::future_status::ready);
  EXPECT_TRUE(scheduler_.AwaitEnded(5s));
  EXPECT_EQ(scheduler_.Outcomes("j1"), std::vector{v1::WorkerMessage::kDone}) << "finished within the grace";
  EXPECT_EQ(scheduler_.Outcomes("j2"), std::vector{v1::WorkerMessage::kHandBack}) << "never run";
  ASSERT_EQ(run_.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(run_.get().ok());
}

TEST_F(WorkerClientTest, GraceRunningOutCancelsTheJobAndHandsItBackInsteadOfFailingIt) {
  ASSERT_TRUE(scheduler_.Send(Assignment("j1", 100, /*long_running=*/true)));
  AwaitRunning("j1");
  const auto start = std::chrono::steady_clock::now();
  worker_->Drain(1s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s) << "the job stops between denoising steps";
  EXPECT_TRUE(scheduler_.AwaitEnded(5s));
  EXPECT_EQ(scheduler_.Outcomes("j1"), std::vector{v1::WorkerMessage::kHandBack}) << "no JobFailed besides it";
  const auto handed_back = scheduler_.Await(v1::WorkerMessage::kHandBack);
  ASSERT_TRUE(handed_back.has_value());
  EXPECT_NE(handed_back->hand_back().reason().find("drain grace of 1 s ran out"), std::string::npos)
      << handed_back->hand_back().reason();
  // Nothing about the job follows its hand back.
  const std::vector<v1::WorkerMessage> received = scheduler_.Received();
  EXPECT_TRUE(received.back().has_hand_back());
}

TEST_F(WorkerClientTest, SecondDrainCutsTheGraceShort) {
  ASSERT_TRUE(scheduler_.Send(Assignment("j1", 100, /*long_running=*/true)));
  AwaitRunning("j1");
  std::future<void> first = StartDrain(3600s);
  ASSERT_TRUE(scheduler_.Await(v1::WorkerMessage::kDraining).has_value());
  const auto start = std::chrono::steady_clock::now();
  worker_->Drain(0s);  // a second SIGTERM
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready) << "both calls return when the drain is done";
  EXPECT_EQ(scheduler_.Outcomes("j1"), std::vector{v1::WorkerMessage::kHandBack});
  EXPECT_TRUE(scheduler_.AwaitEnded(5s));
}

TEST_F(WorkerClientTest, JobTheSchedulerCancelledDuringTheDrainEndsCancelledNotHandedBack) {
  ASSERT_TRUE(scheduler_.Send(Assignment("j1", 100, /*long_running=*/true)));
  AwaitRunning("j1");
  std::future<void> drain = StartDrain(600s);
  ASSERT_TRUE(scheduler_.Await(v1::WorkerMessage::kDraining).has_value());
  v1::SchedulerMessage cancel;
  cancel.mutable_cancel()->set_job_id("j1");
  cancel.mutable_cancel()->set_reason("a client cancelled it");
  ASSERT_TRUE(scheduler_.Send(cancel));
  ASSERT_EQ(drain.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(scheduler_.Outcomes("j1"), std::vector{v1::WorkerMessage::kFailed});
  const auto failed = scheduler_.Await(v1::WorkerMessage::kFailed);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->failed().error().code(), static_cast<int>(absl::StatusCode::kCancelled));
}

TEST_F(WorkerClientTest, FragmentsGoOutBetweenDecodeProgressAndTheStatsSayWhen) {
  // 64x64x33 (three VAE chunks) in fragments of 2 frames: the stream carries media chunks before
  // the pipeline's last decode progress (the encoder has its own thread and sends the second
  // chunk's fragments while the third decodes), then muxing progress up to 33/33, then done.
  v1::SchedulerMessage assignment = Assignment("j1", 2);
  v1::GenerateRequest& request = *assignment.mutable_assign()->mutable_request();
  request.set_frames(33);
  request.set_fragment_frames(2);
  ASSERT_TRUE(scheduler_.Send(assignment));
  const auto done = scheduler_.Await(v1::WorkerMessage::kDone, 120s);
  ASSERT_TRUE(done.has_value());
  int64_t chunks_before_decoded = -1, chunks = 0, muxing_after_decoded = 0;
  uint32_t last_muxing = 0;
  for (const v1::WorkerMessage& m : scheduler_.Received()) {
    if (m.has_chunk()) ++chunks;
    if (!m.has_progress()) continue;
    const v1::Progress& progress = m.progress().progress();
    if (progress.stage() == v1::STAGE_DECODING && progress.step() == 33) chunks_before_decoded = chunks;
    if (progress.stage() == v1::STAGE_MUXING) {
      EXPECT_GE(chunks_before_decoded, 0) << "muxing comes after decoding";
      EXPECT_EQ(progress.total(), 33u);
      last_muxing = progress.step();
      ++muxing_after_decoded;
    }
  }
  // The init segment is one chunk; a media chunk before the end of decoding makes it two or more.
  EXPECT_GE(chunks_before_decoded, 2) << "a fragment went out while the pipeline still decoded";
  EXPECT_GT(chunks, chunks_before_decoded);
  EXPECT_GE(muxing_after_decoded, 1);
  EXPECT_EQ(last_muxing, 33u);
  const v1::JobStats& stats = done->done().stats();
  EXPECT_EQ(stats.frames(), 33u);
  EXPECT_GT(stats.first_fragment_seconds(), 0);
  EXPECT_GT(stats.last_step_to_first_fragment_seconds(), 0);
  EXPECT_LT(stats.last_step_to_first_fragment_seconds(), stats.first_fragment_seconds());
  EXPECT_GE(stats.last_step_to_last_byte_seconds(), stats.last_step_to_first_fragment_seconds());
  EXPECT_GT(stats.encode_seconds(), 0);
  EXPECT_GT(stats.decode_seconds(), 0);
}

TEST_F(WorkerClientTest, AssignmentOutsideTheManifestIsRefusedBeforeThePipeline) {
  v1::SchedulerMessage assignment = Assignment("j1", 2);
  assignment.mutable_assign()->mutable_request()->set_width(100000);
  ASSERT_TRUE(scheduler_.Send(assignment));
  const auto failed = scheduler_.Await(v1::WorkerMessage::kFailed);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->failed().job_id(), "j1");
  EXPECT_EQ(failed->failed().error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(failed->failed().error().message().find("w-test refused the assignment: width: got 100000, expected"),
            std::string::npos)
      << failed->failed().error().message();
  for (const v1::WorkerMessage& m : scheduler_.Received()) {
    EXPECT_FALSE(m.has_progress()) << "the pipeline never started";
  }
  // The worker is idle again: the next, valid assignment runs.
  ASSERT_TRUE(scheduler_.Send(Assignment("j2", 1)));
  EXPECT_TRUE(scheduler_.Await([](const v1::WorkerMessage& m) { return m.has_done() && m.done().job_id() == "j2"; })
                  .has_value());
}

}  // namespace
}  // namespace radial::worker
