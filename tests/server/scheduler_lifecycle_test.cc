// The scheduler's durable lifecycle, with fake workers and clocks the test moves (scheduler_fakes.h):
// restarts from the store, store write failures, heartbeat timeouts, queue and run deadlines,
// worker drain and hand-back, models that outlive their last worker, retention and shutdown.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"
#include "store/job_store.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/scheduler_fakes.h"
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

using radial::testing::ChunkMessage;
using radial::testing::Contains;
using radial::testing::CountingWaiter;
using radial::testing::DoneMessage;
using radial::testing::DrainingMessage;
using radial::testing::FailedMessage;
using radial::testing::FakeClocks;
using radial::testing::FakeFmp4;
using radial::testing::FakeWorkerLink;
using radial::testing::HandBackMessage;
using radial::testing::HeartbeatMessage;
using radial::testing::HelloFor;
using radial::testing::kTinyFrames;
using radial::testing::Pull;
using radial::testing::Pulled;
using radial::testing::Request;
using radial::testing::RunToSuccess;
using radial::testing::SendVideo;
using radial::testing::SharedJobStore;
using radial::testing::TinyModelInfo;
using radial::testing::TinyModelNamed;

// Runs a test's hook (once, if set) before a Put or a WriteVideo reaches the shared store: lets a
// test act while a Submit waits for its row, or while a finished video is being saved.
class HookedJobStore : public SharedJobStore {
 public:
  HookedJobStore(std::shared_ptr<JobStore> store, std::function<void()>* before_put,
                 std::function<void()>* before_write_video)
      : SharedJobStore(std::move(store)), before_put_(before_put), before_write_video_(before_write_video) {}
  absl::Status Put(const StoredJob& row) override {
    RunOnce(*before_put_);
    return SharedJobStore::Put(row);
  }
  absl::StatusOr<std::string> WriteVideo(const std::string& job_id, const std::string& bytes) override {
    RunOnce(*before_write_video_);
    return SharedJobStore::WriteVideo(job_id, bytes);
  }

 private:
  static void RunOnce(std::function<void()>& hook) {
    if (!hook) return;
    std::function<void()> run = std::move(hook);
    hook = nullptr;
    run();
  }
  std::function<void()>* before_put_;
  std::function<void()>* before_write_video_;
};

class UnreadableJobStore : public InMemoryJobStore {
 public:
  absl::StatusOr<std::vector<StoredJob>> LoadAll() override { return absl::DataLossError("jobs.db is corrupt"); }
  std::string Describe() const override { return "sqlite:/tmp/jobs.db"; }
};

class SchedulerLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(Options()); }

  SchedulerOptions Options() {
    SchedulerOptions options;
    options.queue_capacity = 8;
    options.max_chunk_bytes = 64;
    options.worker_timeout_ms = 3'600'000;  // the heartbeat tests set their own
    options.model_ttl_ms = 5000;
    FakeClocks::Install(clocks_, options);
    return options;
  }
  // A fresh scheduler on the same store contents, as after a process restart.
  void Start(SchedulerOptions options) {
    scheduler_.reset();
    scheduler_ = radial::testing::CreateScheduler(
        std::move(options), std::make_unique<HookedJobStore>(store_, &before_put_, &before_write_video_));
    ASSERT_NE(scheduler_, nullptr);
  }
  std::string Submit(v1::GenerateRequest request) {
    const absl::StatusOr<v1::Job> job = scheduler_->Submit(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  std::optional<StoredJob> StoredRow(const std::string& job_id) {
    absl::StatusOr<std::vector<StoredJob>> rows = store_->LoadAll();
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return std::nullopt;
    for (const StoredJob& row : *rows) {
      if (row.job.id() == job_id) return row;
    }
    return std::nullopt;
  }
  v1::JobState State(const std::string& job_id) {
    const absl::StatusOr<v1::Job> job = scheduler_->GetJob(job_id);
    return job.ok() ? job->state() : v1::JOB_STATE_UNSPECIFIED;
  }
  bool Known(const std::string& job_id) { return scheduler_->GetJob(job_id).ok(); }

  std::shared_ptr<FakeClocks> clocks_ = std::make_shared<FakeClocks>();
  std::shared_ptr<InMemoryJobStore> store_ = std::make_shared<InMemoryJobStore>();
  std::function<void()> before_put_;
  std::function<void()> before_write_video_;
  std::unique_ptr<Scheduler> scheduler_;
};

// ---------------------------------------------------------------- restart from the store

TEST_F(SchedulerLifecycleTest, RestartKeepsQueuedOrderRequeuesRunningJobsAndServesFinishedVideos) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string video = FakeFmp4(kTinyFrames, 300);
  const std::string done = Submit(Request("done"));
  RunToSuccess(*scheduler_, worker, done, video);
  const v1::Job done_before = *scheduler_->GetJob(done);
  const std::string failed = Submit(Request("failed"));
  scheduler_->WorkerMessage(&worker, FailedMessage(failed, 8, "out of memory"));
  v1::GenerateRequest keyed = Request("running");
  keyed.set_request_id("client-key");
  const std::string running = Submit(keyed);
  SendVideo(*scheduler_, worker, running, video.substr(0, 100));
  const std::string low = Submit(Request("low", -1));
  const std::string first_normal = Submit(Request("normal 1"));
  const std::string high = Submit(Request("high", 5));
  const std::string second_normal = Submit(Request("normal 2"));
  ASSERT_EQ(State(running), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(scheduler_->GetJob(running)->attempts(), 1u);

  Start(Options());
  EXPECT_EQ(scheduler_->connected_workers(), 0u) << "workers reconnect on their own";
  EXPECT_EQ(scheduler_->queued_jobs(), 5u);
  const v1::Job requeued = *scheduler_->GetJob(running);
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(requeued.bytes_produced(), 0u) << "the lost attempt's bytes are gone";
  EXPECT_EQ(requeued.attempts(), 1u);
  EXPECT_EQ(requeued.request().prompt(), "running");
  EXPECT_EQ(scheduler_->GetJob(high)->queue_position(), 0u);
  EXPECT_EQ(requeued.queue_position(), 1u) << "priority, then submission order";
  EXPECT_EQ(scheduler_->GetJob(first_normal)->queue_position(), 2u);
  EXPECT_EQ(scheduler_->GetJob(second_normal)->queue_position(), 3u);
  EXPECT_EQ(scheduler_->GetJob(low)->queue_position(), 4u);

  const v1::Job done_after = *scheduler_->GetJob(done);
  EXPECT_EQ(done_after.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done_after.bytes_produced(), video.size());
  EXPECT_EQ(done_after.stats().SerializeAsString(), done_before.stats().SerializeAsString());
  EXPECT_EQ(done_after.finished_unix_ms(), done_before.finished_unix_ms());
  const v1::Job failed_after = *scheduler_->GetJob(failed);
  EXPECT_EQ(failed_after.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed_after.error().code(), 8);
  EXPECT_EQ(failed_after.error().message(), "worker w1: out of memory");

  // The finished video, byte for byte, from the store; and from an offset.
  for (uint64_t offset : {uint64_t{0}, uint64_t{123}}) {
    auto cursor = scheduler_->StartWatch(done, offset, done_before.attempts());
    ASSERT_TRUE(cursor.ok()) << cursor.status();
    const Pulled watched = Pull(*scheduler_, done, *cursor);
    EXPECT_EQ(watched.bytes, video.substr(offset));
    EXPECT_FALSE(watched.has_restarted());
    ASSERT_NE(watched.last(), nullptr);
    EXPECT_TRUE(watched.last()->has_completed());
    scheduler_->EndWatch(done);
  }

  // A client that had 100 bytes of attempt 1 learns that they are void.
  auto resumed = scheduler_->StartWatch(running, 100, 1);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  const Pulled told = Pull(*scheduler_, running, *resumed);
  ASSERT_EQ(told.events.size(), 2u);
  EXPECT_TRUE(told.events[0].has_accepted());
  ASSERT_TRUE(told.events[1].has_restarted());
  EXPECT_EQ(told.events[1].restarted().attempt(), 2u);
  EXPECT_TRUE(Contains(told.events[1].restarted().reason(), "restarted")) << told.events[1].restarted().reason();
  EXPECT_FALSE(told.ended);
  // A client that watches from the start has nothing to discard.
  auto fresh = scheduler_->StartWatch(running, 0, 0);
  ASSERT_TRUE(fresh.ok());
  const Pulled fresh_events = Pull(*scheduler_, running, *fresh);
  ASSERT_EQ(fresh_events.events.size(), 1u);
  EXPECT_TRUE(fresh_events.events[0].has_accepted());

  FakeWorkerLink second;
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2", 5)).ok());
  EXPECT_EQ(second.assigned_ids(), (std::vector<std::string>{high, running, first_normal, second_normal, low}));
  EXPECT_EQ(second.assigns()[1].attempt(), 2u);
  RunToSuccess(*scheduler_, second, running, video);
  const Pulled rerun = Pull(*scheduler_, running, *resumed);
  EXPECT_EQ(rerun.bytes, video) << "the whole video of attempt 2, from offset 0";
  ASSERT_NE(rerun.last(), nullptr);
  EXPECT_TRUE(rerun.last()->has_completed());

  // Ids, sequence and idempotency keys carry over.
  const auto same_key = scheduler_->Submit(keyed);
  ASSERT_TRUE(same_key.ok());
  EXPECT_EQ(same_key->id(), running);
  const std::string after_restart = Submit(Request("new"));
  const auto listed = scheduler_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(listed.ok());
  std::vector<std::string> ids;
  for (const v1::Job& job : listed->jobs()) ids.push_back(job.id());
  EXPECT_EQ(ids, (std::vector<std::string>{after_restart, second_normal, high, first_normal, low, running, failed,
                                           done}));
}

TEST_F(SchedulerLifecycleTest, WatcherOfTheCurrentAttemptResumesWithoutARestart) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  const std::string video = FakeFmp4(kTinyFrames, 100);
  Start(Options());  // attempt 1 is lost with the restart
  FakeWorkerLink second;
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  ASSERT_EQ(second.assigns().size(), 1u);
  EXPECT_EQ(second.assigns()[0].attempt(), 2u);
  SendVideo(*scheduler_, second, job, video.substr(0, 50));
  auto same_attempt = scheduler_->StartWatch(job, 20, 2);
  ASSERT_TRUE(same_attempt.ok());
  auto old_attempt = scheduler_->StartWatch(job, 20, 1);
  ASSERT_TRUE(old_attempt.ok());
  scheduler_->WorkerMessage(&second, ChunkMessage(job, 50, video.substr(50)));
  scheduler_->WorkerMessage(&second, DoneMessage(job));
  ASSERT_EQ(State(job), v1::JOB_STATE_SUCCEEDED);
  const Pulled resumed = Pull(*scheduler_, job, *same_attempt);
  EXPECT_FALSE(resumed.has_restarted());
  EXPECT_EQ(resumed.bytes, video.substr(20));
  const Pulled restarted = Pull(*scheduler_, job, *old_attempt);
  EXPECT_TRUE(restarted.has_restarted());
  EXPECT_EQ(restarted.bytes, video);
}

TEST_F(SchedulerLifecycleTest, CreateFailsWhenTheStoreCannotBeRead) {
  SchedulerOptions options = Options();
  const auto scheduler = Scheduler::Create(options, std::make_unique<UnreadableJobStore>());
  ASSERT_FALSE(scheduler.ok());
  EXPECT_EQ(scheduler.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(scheduler.status().message(), "sqlite:/tmp/jobs.db")) << scheduler.status();
  EXPECT_TRUE(Contains(scheduler.status().message(), "jobs.db is corrupt")) << scheduler.status();
}

// ---------------------------------------------------------------- store write failures

TEST_F(SchedulerLifecycleTest, SubmitFailsUnavailableWhenTheStoreCannotBeWrittenAndRecovers) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  store_->FailWrites(absl::UnavailableError("disk full"));
  v1::GenerateRequest keyed = Request("a cat");
  keyed.set_request_id("key");
  const auto rejected = scheduler_->Submit(keyed);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(rejected.status().message(), "store memory")) << rejected.status();
  EXPECT_TRUE(Contains(rejected.status().message(), "disk full")) << rejected.status();
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
  EXPECT_TRUE(worker.assigns().empty()) << "a job that was not saved never runs";
  const auto listed = scheduler_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 0) << "nor is it visible";
  EXPECT_EQ(store_->LoadAll()->size(), 0u);

  store_->FailWrites(absl::OkStatus());
  const auto accepted = scheduler_->Submit(keyed);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(worker.assigned_ids(), std::vector<std::string>{accepted->id()});
  RunToSuccess(*scheduler_, worker, accepted->id());
  EXPECT_EQ(State(accepted->id()), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(StoredRow(accepted->id())->job.state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(SchedulerLifecycleTest, JobIsInvisibleUntilItsRowIsWritten) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  v1::GenerateRequest keyed = Request("a cat");
  keyed.set_request_id("key");
  bool hook_ran = false;
  before_put_ = [&] {
    hook_ran = true;
    const auto listed = scheduler_->ListJobs(v1::ListJobsRequest());
    ASSERT_TRUE(listed.ok());
    EXPECT_EQ(listed->jobs_size(), 0);
    EXPECT_EQ(scheduler_->queued_jobs(), 0u);
    const auto duplicate = scheduler_->Submit(keyed);
    EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kAborted) << duplicate.status();
  };
  const std::string job = Submit(keyed);
  EXPECT_TRUE(hook_ran);
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING);
}

TEST_F(SchedulerLifecycleTest, StoreFailureWhileSavingTheVideoFailsTheJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  const std::string next = Submit(Request("next"));
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  SendVideo(*scheduler_, worker, job, FakeFmp4(kTinyFrames));
  store_->FailWrites(absl::UnavailableError("disk full"));
  scheduler_->WorkerMessage(&worker, DoneMessage(job));
  const v1::Job failed = *scheduler_->GetJob(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().code(), 14);
  EXPECT_TRUE(Contains(failed.error().message(), "store memory")) << failed.error().message();
  EXPECT_TRUE(Contains(failed.error().message(), "video could not be saved")) << failed.error().message();
  const Pulled watched = Pull(*scheduler_, job, *cursor);
  ASSERT_NE(watched.last(), nullptr);
  ASSERT_TRUE(watched.last()->has_failed());
  EXPECT_EQ(watched.last()->failed().code(), 14);
  EXPECT_EQ(worker.assigned_ids().back(), next) << "the worker is free again";

  // A cancel that cannot be saved says so, and holds in memory.
  EXPECT_EQ(scheduler_->Submit(Request("queued")).status().code(), absl::StatusCode::kUnavailable)
      << "no job is accepted while writes fail";
  store_->FailWrites(absl::OkStatus());
  const std::string queued = Submit(Request("queued"));
  store_->FailWrites(absl::UnavailableError("disk full"));
  const auto cancel = scheduler_->Cancel(queued);
  EXPECT_EQ(cancel.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(cancel.status().message(), "cancelled but this could not be saved")) << cancel.status();
  EXPECT_EQ(State(queued), v1::JOB_STATE_CANCELLED);
  store_->FailWrites(absl::OkStatus());
  RunToSuccess(*scheduler_, worker, next);
  EXPECT_EQ(State(next), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(SchedulerLifecycleTest, AJobWhoseVideoIsBeingSavedIsRunningAndCannotBeCancelled) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  const std::string video = FakeFmp4(kTinyFrames);
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  auto waiter = std::make_shared<CountingWaiter>();
  bool hook_ran = false;
  before_write_video_ = [&] {
    hook_ran = true;
    const v1::Job saving = *scheduler_->GetJob(job);
    EXPECT_EQ(saving.state(), v1::JOB_STATE_RUNNING) << "not SUCCEEDED before the video is saved";
    EXPECT_EQ(saving.bytes_produced(), video.size());
    const auto cancel = scheduler_->Cancel(job);
    EXPECT_EQ(cancel.status().code(), absl::StatusCode::kFailedPrecondition) << cancel.status();
    EXPECT_TRUE(Contains(cancel.status().message(), "being saved")) << cancel.status();
    const Pulled partial = Pull(*scheduler_, job, *cursor, waiter);
    EXPECT_EQ(partial.bytes, video) << "watchers read the bytes while they are saved";
    EXPECT_FALSE(partial.ended);
  };
  RunToSuccess(*scheduler_, worker, job, video);
  ASSERT_TRUE(hook_ran);
  EXPECT_EQ(State(job), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(waiter->wakes, 1) << "the watcher is woken by the end";
  const Pulled rest = Pull(*scheduler_, job, *cursor);
  ASSERT_NE(rest.last(), nullptr);
  EXPECT_TRUE(rest.last()->has_completed());
}

TEST_F(SchedulerLifecycleTest, DeleteWhileTheVideoIsBeingSavedLeavesNothingBehind) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  before_write_video_ = [&] {
    const auto deleted = scheduler_->Delete(job);
    EXPECT_TRUE(deleted.ok()) << deleted.status();
  };
  RunToSuccess(*scheduler_, worker, job);
  EXPECT_FALSE(Known(job));
  EXPECT_FALSE(StoredRow(job).has_value());
  EXPECT_EQ(store_->OpenVideo(job + ".mp4").status().code(), absl::StatusCode::kNotFound)
      << "the video written for a deleted job is removed";
}

TEST_F(SchedulerLifecycleTest, AStoredVideoThatIsGoneEndsTheWatchWithDataLoss) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  RunToSuccess(*scheduler_, worker, job);
  const std::optional<StoredJob> row = StoredRow(job);
  ASSERT_TRUE(row.has_value());
  ASSERT_TRUE(store_->DeleteVideo(row->video).ok());  // lost behind the scheduler's back
  Start(Options());
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  ASSERT_TRUE(cursor.ok());
  const Pulled watched = Pull(*scheduler_, job, *cursor);
  ASSERT_TRUE(watched.ended);
  EXPECT_EQ(watched.end_status.code(), absl::StatusCode::kDataLoss) << watched.end_status;
  EXPECT_TRUE(watched.bytes.empty());
}

// ---------------------------------------------------------------- heartbeats

TEST_F(SchedulerLifecycleTest, SilentWorkerIsClosedUnavailableAndItsJobRequeued) {
  SchedulerOptions options = Options();
  options.worker_timeout_ms = 1000;
  Start(options);
  FakeWorkerLink silent, alive;
  ASSERT_TRUE(scheduler_->WorkerHello(&silent, HelloFor("w-silent")).ok());
  const std::string job = Submit(Request("a cat"));
  ASSERT_EQ(silent.assigned_ids(), std::vector<std::string>{job});
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  ASSERT_FALSE(Pull(*scheduler_, job, *cursor).ended);
  clocks_->Advance(100);
  ASSERT_TRUE(scheduler_->WorkerHello(&alive, HelloFor("w-alive")).ok());

  clocks_->Advance(500);
  scheduler_->WorkerMessage(&alive, HeartbeatMessage());
  clocks_->Advance(400);  // the silent worker's last message is exactly worker_timeout_ms old
  scheduler_->Tick();
  EXPECT_EQ(silent.closes, 0);
  EXPECT_EQ(scheduler_->connected_workers(), 2u);

  clocks_->Advance(1);
  scheduler_->Tick();
  EXPECT_EQ(silent.closes, 1);
  EXPECT_EQ(silent.close_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(silent.close_status.message(), "heartbeat")) << silent.close_status;
  EXPECT_EQ(alive.closes, 0) << "a worker that heartbeats stays";
  EXPECT_EQ(scheduler_->connected_workers(), 1u);
  ASSERT_EQ(alive.assigned_ids(), std::vector<std::string>{job}) << "the job runs again on the live worker";
  EXPECT_EQ(alive.assigns()[0].attempt(), 2u);
  const Pulled watched = Pull(*scheduler_, job, *cursor);
  ASSERT_TRUE(watched.has_restarted());
  EXPECT_FALSE(watched.ended);

  // The closed stream's later report changes nothing; neither does its late WorkerGone.
  scheduler_->WorkerMessage(&silent, DoneMessage(job));
  scheduler_->WorkerGone(&silent, "stream closed");
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(scheduler_->GetJob(job)->worker_id(), "w-alive");
  scheduler_->Tick();
  EXPECT_EQ(silent.closes, 1) << "closed once";

  // A busy worker that only heartbeats is not timed out.
  for (int i = 0; i < 5; ++i) {
    clocks_->Advance(900);
    scheduler_->WorkerMessage(&alive, HeartbeatMessage());
    scheduler_->Tick();
  }
  EXPECT_EQ(alive.closes, 0);
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING);
}

// Two workers go silent together (e.g. a network partition): the job of the first must not be
// handed to the second, already dead, worker and so be counted lost twice in one Tick.
TEST_F(SchedulerLifecycleTest, WorkersTimingOutTogetherCostTheirJobOneAttempt) {
  SchedulerOptions options = Options();
  options.worker_timeout_ms = 1000;
  options.max_attempts = 2;
  Start(options);
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  const std::string job = Submit(Request("a cat"));
  ASSERT_EQ(first.assigns().size() + second.assigns().size(), 1u);
  clocks_->Advance(1001);
  scheduler_->Tick();
  EXPECT_EQ(first.closes, 1);
  EXPECT_EQ(second.closes, 1);
  EXPECT_EQ(first.assigns().size() + second.assigns().size(), 1u) << "assigned to a worker already known silent";
  const v1::Job after = *scheduler_->GetJob(job);
  EXPECT_EQ(after.state(), v1::JOB_STATE_QUEUED) << after.error().message();
  EXPECT_EQ(StoredRow(job)->worker_losses, 1u);
}

TEST_F(SchedulerLifecycleTest, AnyMessageCountsAsAHeartbeat) {
  SchedulerOptions options = Options();
  options.worker_timeout_ms = 1000;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("a cat"));
  const std::string video = FakeFmp4(kTinyFrames);
  for (size_t offset = 0; offset < 60; offset += 10) {
    clocks_->Advance(800);
    scheduler_->WorkerMessage(&worker, ChunkMessage(job, offset, video.substr(offset, 10)));
    scheduler_->Tick();
  }
  EXPECT_EQ(worker.closes, 0);
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING);
}

// ---------------------------------------------------------------- deadlines

TEST_F(SchedulerLifecycleTest, QueueDeadlineFailsTheJobWithDeadlineExceeded) {
  SchedulerOptions options = Options();
  options.request_defaults.queue_timeout_seconds = 30;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string busy = Submit(Request("busy"));
  v1::GenerateRequest impatient = Request("impatient");
  impatient.set_queue_timeout_seconds(10);
  const std::string short_wait = Submit(impatient);
  const std::string default_wait = Submit(Request("default"));
  EXPECT_EQ(scheduler_->GetJob(short_wait)->request().queue_timeout_seconds(), 10u);
  EXPECT_EQ(scheduler_->GetJob(default_wait)->request().queue_timeout_seconds(), 30u) << "--queue-timeout";
  auto cursor = scheduler_->StartWatch(short_wait, 0, 0);
  ASSERT_FALSE(Pull(*scheduler_, short_wait, *cursor).ended);

  clocks_->Advance(10'000);
  scheduler_->Tick();
  EXPECT_EQ(State(short_wait), v1::JOB_STATE_QUEUED) << "exactly at the limit";
  clocks_->Advance(1);
  scheduler_->Tick();
  const v1::Job failed = *scheduler_->GetJob(short_wait);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().code(), 4);
  EXPECT_TRUE(Contains(failed.error().message(), "queue_timeout_seconds")) << failed.error().message();
  EXPECT_EQ(StoredRow(short_wait)->job.state(), v1::JOB_STATE_FAILED);
  const Pulled watched = Pull(*scheduler_, short_wait, *cursor);
  ASSERT_NE(watched.last(), nullptr);
  ASSERT_TRUE(watched.last()->has_failed());
  EXPECT_EQ(watched.last()->failed().code(), 4);
  EXPECT_EQ(scheduler_->queued_jobs(), 1u);
  EXPECT_EQ(scheduler_->GetJob(default_wait)->queue_position(), 0u);

  clocks_->Advance(20'000);
  scheduler_->Tick();
  EXPECT_EQ(State(default_wait), v1::JOB_STATE_FAILED);
  EXPECT_EQ(scheduler_->GetJob(default_wait)->error().code(), 4);
  EXPECT_EQ(State(busy), v1::JOB_STATE_RUNNING) << "a running job is under its run deadline only";
  EXPECT_TRUE(worker.cancels().empty());
}

TEST_F(SchedulerLifecycleTest, RunDeadlineFailsTheJobStopsItsWorkerAndKeepsTheSlotUntilItStops) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string first = Submit(Request("first"));
  v1::GenerateRequest bounded = Request("bounded");
  bounded.set_run_timeout_seconds(60);
  const std::string job = Submit(bounded);
  const std::string next = Submit(Request("next"));
  clocks_->Advance(50'000);  // time in the queue does not count against the run deadline
  RunToSuccess(*scheduler_, worker, first);
  ASSERT_EQ(State(job), v1::JOB_STATE_RUNNING);
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  ASSERT_FALSE(Pull(*scheduler_, job, *cursor).ended);

  clocks_->Advance(60'000);
  scheduler_->WorkerMessage(&worker, HeartbeatMessage());
  scheduler_->Tick();
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING) << "exactly at the limit";
  EXPECT_TRUE(worker.cancels().empty());
  clocks_->Advance(1);
  scheduler_->Tick();
  const v1::Job failed = *scheduler_->GetJob(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().code(), 4);
  EXPECT_TRUE(Contains(failed.error().message(), "run_timeout_seconds")) << failed.error().message();
  EXPECT_TRUE(Contains(failed.error().message(), "w1")) << failed.error().message();
  ASSERT_EQ(worker.cancelled_ids(), std::vector<std::string>{job});
  EXPECT_TRUE(Contains(worker.cancels()[0].reason(), "run_timeout_seconds")) << worker.cancels()[0].reason();
  const Pulled watched = Pull(*scheduler_, job, *cursor);
  ASSERT_NE(watched.last(), nullptr);
  ASSERT_TRUE(watched.last()->has_failed());
  EXPECT_EQ(watched.last()->failed().code(), 4);

  // The worker is still computing: no new job for it, no second cancel.
  scheduler_->WorkerMessage(&worker, HeartbeatMessage());
  scheduler_->Tick();
  EXPECT_EQ(worker.cancels().size(), 1u);
  EXPECT_EQ(worker.assigned_ids(), (std::vector<std::string>{first, job}));
  EXPECT_EQ(State(next), v1::JOB_STATE_QUEUED);
  scheduler_->WorkerMessage(&worker, ChunkMessage(job, 0, "late"));  // ignored
  scheduler_->WorkerMessage(&worker, FailedMessage(job, 1, "cancelled at step 3"));
  EXPECT_EQ(worker.assigned_ids(), (std::vector<std::string>{first, job, next}));
  EXPECT_EQ(scheduler_->GetJob(job)->error().code(), 4) << "the job stays FAILED with DEADLINE_EXCEEDED";
}

TEST_F(SchedulerLifecycleTest, RunDeadlineSlotIsAlsoFreedWhenTheWorkerReportsDone) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  v1::GenerateRequest bounded = Request("bounded");
  bounded.set_run_timeout_seconds(1);
  const std::string job = Submit(bounded);
  const std::string next = Submit(Request("next"));
  clocks_->Advance(1001);
  scheduler_->Tick();
  ASSERT_EQ(State(job), v1::JOB_STATE_FAILED);
  RunToSuccess(*scheduler_, worker, job);  // it finished before it saw the cancel
  EXPECT_EQ(State(job), v1::JOB_STATE_FAILED);
  EXPECT_EQ(worker.assigned_ids(), (std::vector<std::string>{job, next}));
}

// ---------------------------------------------------------------- drain and hand-back

TEST_F(SchedulerLifecycleTest, DrainingWorkerFinishesItsJobButGetsNoNewOnes) {
  FakeWorkerLink draining, other;
  ASSERT_TRUE(scheduler_->WorkerHello(&draining, HelloFor("w1")).ok());
  const std::string job = Submit(Request("running"));
  const std::string waiting = Submit(Request("waiting"));
  scheduler_->WorkerMessage(&draining, DrainingMessage(600));
  EXPECT_EQ(State(job), v1::JOB_STATE_RUNNING) << "draining does not stop the running job";
  RunToSuccess(*scheduler_, draining, job);
  EXPECT_EQ(State(job), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(draining.assigned_ids(), std::vector<std::string>{job});
  EXPECT_EQ(State(waiting), v1::JOB_STATE_QUEUED);
  const std::string later = Submit(Request("later"));
  EXPECT_EQ(draining.assigns().size(), 1u);
  ASSERT_TRUE(scheduler_->WorkerHello(&other, HelloFor("w2", 2)).ok());
  EXPECT_EQ(other.assigned_ids(), (std::vector<std::string>{waiting, later}));
  EXPECT_EQ(scheduler_->connected_workers(), 2u) << "a draining worker stays connected";
}

TEST_F(SchedulerLifecycleTest, HandBackRequeuesAtTheOldPlaceWithARestartAndUsesNoRetry) {
  SchedulerOptions options = Options();
  options.max_attempts = 2;
  Start(options);
  FakeWorkerLink first;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const std::string job = Submit(Request("handed back"));
  const std::string second_job = Submit(Request("second"));
  const std::string third_job = Submit(Request("third"));
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  SendVideo(*scheduler_, first, job, FakeFmp4(kTinyFrames).substr(0, 30));
  const Pulled before = Pull(*scheduler_, job, *cursor);
  EXPECT_EQ(before.bytes.size(), 30u);

  scheduler_->WorkerMessage(&first, DrainingMessage(60));
  scheduler_->WorkerMessage(&first, HandBackMessage(job, "drain grace ran out"));
  const v1::Job requeued = *scheduler_->GetJob(job);
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(requeued.queue_position(), 0u) << "its old place: ahead of the jobs submitted after it";
  EXPECT_EQ(scheduler_->GetJob(second_job)->queue_position(), 1u);
  EXPECT_EQ(requeued.bytes_produced(), 0u);
  EXPECT_EQ(first.assigned_ids(), std::vector<std::string>{job}) << "the draining worker gets nothing new";
  const Pulled restart = Pull(*scheduler_, job, *cursor);
  ASSERT_EQ(restart.events.size(), 1u);
  ASSERT_TRUE(restart.events[0].has_restarted());
  EXPECT_EQ(restart.events[0].restarted().attempt(), 2u);
  EXPECT_TRUE(Contains(restart.events[0].restarted().reason(), "w1")) << restart.events[0].restarted().reason();
  EXPECT_TRUE(Contains(restart.events[0].restarted().reason(), "drain grace ran out"))
      << restart.events[0].restarted().reason();
  const std::optional<StoredJob> row = StoredRow(job);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(row->worker_losses, 0u);

  // Two lost workers are still allowed: the hand-back was not a loss.
  FakeWorkerLink second, third;
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  ASSERT_EQ(second.assigned_ids(), std::vector<std::string>{job});
  EXPECT_EQ(second.assigns()[0].attempt(), 2u);
  scheduler_->WorkerGone(&second, "stream closed");
  EXPECT_EQ(State(job), v1::JOB_STATE_QUEUED) << "the first loss is retried";
  ASSERT_TRUE(scheduler_->WorkerHello(&third, HelloFor("w3")).ok());
  ASSERT_EQ(third.assigned_ids(), std::vector<std::string>{job});
  EXPECT_EQ(third.assigns()[0].attempt(), 3u);
  scheduler_->WorkerGone(&third, "stream closed");
  EXPECT_EQ(State(job), v1::JOB_STATE_FAILED) << "the second loss is the last";
  EXPECT_EQ(State(second_job), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(State(third_job), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(first.assigns().size(), 1u);
}

// A client's cancel is final: a worker that hands the job back before it has seen the cancel does
// not make the job run again.
TEST_F(SchedulerLifecycleTest, HandBackOfACancelledJobEndsItCancelled) {
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const std::string job = Submit(Request("cancelled"));
  ASSERT_TRUE(scheduler_->Cancel(job).ok());
  ASSERT_EQ(first.cancelled_ids(), std::vector<std::string>{job});
  scheduler_->WorkerMessage(&first, DrainingMessage(0));
  scheduler_->WorkerMessage(&first, HandBackMessage(job, "draining"));
  EXPECT_EQ(State(job), v1::JOB_STATE_CANCELLED) << "requeued although the client cancelled it";
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  EXPECT_TRUE(second.assigns().empty()) << "a cancelled job ran again";
}

// A cancel accepted while the job runs survives a restart of the scheduler: the job does not run
// again from scratch.
TEST_F(SchedulerLifecycleTest, CancelOfARunningJobIsNotForgottenByARestart) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("cancelled"));
  const auto cancel = scheduler_->Cancel(job);
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(cancel->state(), v1::JOB_STATE_RUNNING) << "until the worker confirms";
  Start(Options());  // before the worker confirmed
  EXPECT_EQ(State(job), v1::JOB_STATE_CANCELLED) << "the accepted cancel was lost with the restart";
  FakeWorkerLink again;
  ASSERT_TRUE(scheduler_->WorkerHello(&again, HelloFor("w2")).ok());
  EXPECT_TRUE(again.assigns().empty()) << "a cancelled job ran again after the restart";
}

// ---------------------------------------------------------------- models without workers

TEST_F(SchedulerLifecycleTest, ModelStaysListedForItsTtlAfterTheLastWorkerLeaves) {
  FakeWorkerLink tiny, other;
  ASSERT_TRUE(scheduler_->WorkerHello(&other, HelloFor("w-other", 1, {TinyModelNamed("other")})).ok());
  ASSERT_TRUE(scheduler_->WorkerHello(&tiny, HelloFor("w-tiny")).ok());
  scheduler_->WorkerGone(&tiny, "rolling restart");
  v1::ListModelsResponse models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 2);
  EXPECT_EQ(models.models(1).name(), "tiny");
  EXPECT_EQ(models.models(1).workers(), 0u);

  v1::GenerateRequest for_tiny = Request("a cat");
  for_tiny.set_model("tiny");
  const std::string queued = Submit(for_tiny);
  EXPECT_EQ(State(queued), v1::JOB_STATE_QUEUED) << "it waits for the model's next worker";
  clocks_->Advance(4999);
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->ListModels().models_size(), 2);
  EXPECT_TRUE(scheduler_->Submit(for_tiny).ok());

  clocks_->Advance(1);
  scheduler_->Tick();
  models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).name(), "other");
  const auto unknown = scheduler_->Submit(for_tiny);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound) << unknown.status();
  EXPECT_TRUE(Contains(unknown.status().message(), "'tiny'")) << unknown.status();
}

TEST_F(SchedulerLifecycleTest, WithNoModelLeftSubmitIsUnavailable) {
  FakeWorkerLink tiny;
  ASSERT_TRUE(scheduler_->WorkerHello(&tiny, HelloFor("w-tiny")).ok());
  scheduler_->WorkerGone(&tiny, "rolling restart");
  const std::string queued = Submit(Request("a cat"));
  EXPECT_EQ(State(queued), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(scheduler_->ListModels().default_model(), "tiny");
  clocks_->Advance(5000);
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->ListModels().models_size(), 0);
  EXPECT_EQ(scheduler_->Submit(Request("a cat")).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerLifecycleTest, ReturningWorkerRunsTheJobsQueuedWhileItsModelWasUnserved) {
  FakeWorkerLink before, after;
  ASSERT_TRUE(scheduler_->WorkerHello(&before, HelloFor("w1")).ok());
  scheduler_->WorkerGone(&before, "rolling restart");
  const std::string queued = Submit(Request("a cat"));
  clocks_->Advance(3000);
  scheduler_->Tick();
  ASSERT_TRUE(scheduler_->WorkerHello(&after, HelloFor("w1")).ok()) << "the same id may come back";
  EXPECT_EQ(after.assigned_ids(), std::vector<std::string>{queued});
  clocks_->Advance(10'000);
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->ListModels().models_size(), 1) << "served again: no TTL";
}

TEST_F(SchedulerLifecycleTest, UnservedModelKeepsItsPinnedLimitsUntilItExpires) {
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  scheduler_->WorkerGone(&first, "gone");
  v1::ModelInfo changed = TinyModelInfo();
  changed.set_prompt_max_chars(500);
  EXPECT_EQ(scheduler_->WorkerHello(&second, HelloFor("w2", 1, {changed})).code(),
            absl::StatusCode::kFailedPrecondition);
  clocks_->Advance(5000);
  scheduler_->Tick();
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2", 1, {changed})).ok())
      << "an expired model's limits are forgotten";
  const v1::ListModelsResponse models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).prompt_max_chars(), 500u);
  EXPECT_TRUE(scheduler_->Submit(Request(std::string(300, 'x'))).ok());
}

// ---------------------------------------------------------------- retention

TEST_F(SchedulerLifecycleTest, RetentionByCountForgetsTheOldestEndedJobs) {
  SchedulerOptions options = Options();
  options.retention.max_jobs = 2;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string first = Submit(Request("one"));
  RunToSuccess(*scheduler_, worker, first);
  const std::optional<StoredJob> first_row = StoredRow(first);
  ASSERT_TRUE(first_row.has_value());
  clocks_->Advance(10);
  const std::string second = Submit(Request("two"));
  scheduler_->WorkerMessage(&worker, FailedMessage(second, 13, "broken"));
  clocks_->Advance(10);
  const std::string queued_a = Submit(Request("runs"));
  const std::string queued_b = Submit(Request("queued"));
  const std::string queued_c = Submit(Request("queued"));
  EXPECT_TRUE(Known(first) && Known(second)) << "queued and running jobs do not count";
  RunToSuccess(*scheduler_, worker, queued_a);
  EXPECT_FALSE(Known(first));
  EXPECT_TRUE(Known(second));
  EXPECT_TRUE(Known(queued_a));
  EXPECT_FALSE(StoredRow(first).has_value()) << "its row goes";
  EXPECT_EQ(store_->OpenVideo(first_row->video).status().code(), absl::StatusCode::kNotFound) << "and its video";
  ASSERT_TRUE(scheduler_->Cancel(queued_c).ok());
  EXPECT_FALSE(Known(second));
  EXPECT_TRUE(Known(queued_a) && Known(queued_b) && Known(queued_c));
}

TEST_F(SchedulerLifecycleTest, RetentionByAgeForgetsJobsLongEnded) {
  SchedulerOptions options = Options();
  options.retention.max_age_ms = 60'000;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string old_job = Submit(Request("old"));
  RunToSuccess(*scheduler_, worker, old_job);
  clocks_->Advance(30'000);
  const std::string young_job = Submit(Request("young"));
  RunToSuccess(*scheduler_, worker, young_job);
  const std::string running = Submit(Request("running"));
  clocks_->Advance(30'000);
  scheduler_->WorkerMessage(&worker, HeartbeatMessage());
  scheduler_->Tick();
  EXPECT_TRUE(Known(old_job)) << "exactly max_age_ms after it ended";
  clocks_->Advance(1);
  scheduler_->Tick();
  EXPECT_FALSE(Known(old_job));
  EXPECT_FALSE(StoredRow(old_job).has_value());
  EXPECT_TRUE(Known(young_job));
  clocks_->Advance(30'000);
  scheduler_->WorkerMessage(&worker, HeartbeatMessage());
  scheduler_->Tick();
  EXPECT_FALSE(Known(young_job));
  EXPECT_TRUE(Known(running)) << "age counts from the end, and only for ended jobs";
}

TEST_F(SchedulerLifecycleTest, RetentionByBytesForgetsTheOldestVideos) {
  const std::string video = FakeFmp4(kTinyFrames, 1000);
  SchedulerOptions options = Options();
  options.retention.max_bytes = 2 * video.size();
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string a = Submit(Request("a"));
  RunToSuccess(*scheduler_, worker, a, video);
  const std::string failed = Submit(Request("failed"));
  scheduler_->WorkerMessage(&worker, FailedMessage(failed, 13, "broken"));
  const std::string b = Submit(Request("b"));
  RunToSuccess(*scheduler_, worker, b, video);
  EXPECT_TRUE(Known(a) && Known(b) && Known(failed)) << "exactly max_bytes is kept";
  const std::optional<StoredJob> a_row = StoredRow(a);
  ASSERT_TRUE(a_row.has_value());
  const std::string c = Submit(Request("c"));
  RunToSuccess(*scheduler_, worker, c, video);
  EXPECT_FALSE(Known(a));
  EXPECT_EQ(store_->OpenVideo(a_row->video).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Known(failed)) << "a job without a video frees no bytes";
  EXPECT_TRUE(Known(b) && Known(c));
}

TEST_F(SchedulerLifecycleTest, WatchedJobIsNotEvictedUntilItsWatchEnds) {
  SchedulerOptions options = Options();
  options.retention.max_jobs = 1;
  options.retention.max_age_ms = 60'000;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string watched = Submit(Request("watched"));
  auto cursor = scheduler_->StartWatch(watched, 0, 0);
  ASSERT_TRUE(cursor.ok());
  RunToSuccess(*scheduler_, worker, watched);
  clocks_->Advance(60'001);
  scheduler_->WorkerMessage(&worker, HeartbeatMessage());
  scheduler_->Tick();
  EXPECT_TRUE(Known(watched)) << "too old, but watched";
  const Pulled read = Pull(*scheduler_, watched, *cursor);
  EXPECT_EQ(read.bytes, FakeFmp4(kTinyFrames)) << "a watcher reads the whole video";
  scheduler_->EndWatch(watched);
  EXPECT_FALSE(Known(watched)) << "retention takes it once nobody reads it";
}

// With max_jobs 1, a watched old job and a newly ended one: the watched job is kept while watched,
// the job that just ended stays readable, and once the watch ends the oldest goes (job_table.h:
// "Jobs with watchers are skipped (they go once unwatched)").
TEST_F(SchedulerLifecycleTest, RetentionByCountSkipsAWatchedJobWithoutEvictingTheNewest) {
  SchedulerOptions options = Options();
  options.retention.max_jobs = 1;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string old_job = Submit(Request("old"));
  RunToSuccess(*scheduler_, worker, old_job);
  ASSERT_TRUE(scheduler_->StartWatch(old_job, 0, 0).ok());
  clocks_->Advance(10);
  const std::string new_job = Submit(Request("new"));
  RunToSuccess(*scheduler_, worker, new_job);
  EXPECT_TRUE(Known(old_job)) << "watched";
  EXPECT_TRUE(Known(new_job)) << "the job that just ended was evicted in place of the watched, older one";
  scheduler_->EndWatch(old_job);
  EXPECT_FALSE(Known(old_job)) << "the oldest goes once unwatched";
  EXPECT_TRUE(Known(new_job));
}

// ---------------------------------------------------------------- shutdown

TEST_F(SchedulerLifecycleTest, ShutdownEndsWatchesAndKeepsRunningJobsForTheNextStart) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::string job = Submit(Request("running"));
  auto cursor = scheduler_->StartWatch(job, 0, 0);
  auto waiter = std::make_shared<CountingWaiter>();
  ASSERT_FALSE(Pull(*scheduler_, job, *cursor, waiter).ended);

  scheduler_->BeginShutdown();
  EXPECT_EQ(waiter->wakes, 1) << "waiting watchers are woken to end";
  const Pulled end = Pull(*scheduler_, job, *cursor);
  ASSERT_TRUE(end.ended);
  EXPECT_EQ(end.end_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(end.end_status.message(), "restarting")) << end.end_status;
  const auto refused = scheduler_->Submit(Request("late"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  FakeWorkerLink late;
  EXPECT_EQ(scheduler_->WorkerHello(&late, HelloFor("w2")).code(), absl::StatusCode::kUnavailable);
  scheduler_->WorkerGone(&worker, "server shutting down");
  EXPECT_EQ(StoredRow(job)->job.state(), v1::JOB_STATE_RUNNING) << "not requeued nor failed by the shutdown";
  EXPECT_EQ(StoredRow(job)->worker_losses, 0u);

  Start(Options());
  EXPECT_EQ(State(job), v1::JOB_STATE_QUEUED);
  FakeWorkerLink again;
  ASSERT_TRUE(scheduler_->WorkerHello(&again, HelloFor("w1")).ok());
  ASSERT_EQ(again.assigned_ids(), std::vector<std::string>{job});
  EXPECT_EQ(again.assigns()[0].attempt(), 2u);
}

}  // namespace
}  // namespace radial::server
