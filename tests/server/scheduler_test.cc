// The scheduler's behaviour with fake workers (a WorkerLink that records what it is sent).
#include "scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

class FakeWorker : public WorkerLink {
 public:
  void Send(const v1::SchedulerMessage& message) override { sent.push_back(message); }

  std::vector<v1::Assign> assigns() const {
    std::vector<v1::Assign> result;
    for (const auto& message : sent) {
      if (message.has_assign()) result.push_back(message.assign());
    }
    return result;
  }
  std::vector<std::string> cancels() const {
    std::vector<std::string> result;
    for (const auto& message : sent) {
      if (message.has_cancel()) result.push_back(message.cancel().job_id());
    }
    return result;
  }

  std::vector<v1::SchedulerMessage> sent;
};

class CountingWaiter : public Waiter {
 public:
  void Wake() override { ++wakes; }
  int wakes = 0;
};


v1::Hello HelloFor(const std::string& id, uint32_t capacity = 1) {
  v1::Hello hello;
  hello.set_worker_id(id);
  hello.set_capacity(capacity);
  *hello.add_models() = radial::testing::TinyModelInfo();
  return hello;
}

v1::GenerateRequest Request(const std::string& prompt, int32_t priority = 0) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_priority(priority);
  return request;
}

v1::WorkerMessage ChunkMessage(const std::string& job_id, uint64_t offset, const std::string& data) {
  v1::WorkerMessage message;
  message.mutable_chunk()->set_job_id(job_id);
  message.mutable_chunk()->mutable_chunk()->set_offset(offset);
  message.mutable_chunk()->mutable_chunk()->set_data(data);
  return message;
}

v1::WorkerMessage ProgressMessage(const std::string& job_id, uint32_t step, uint32_t total) {
  v1::WorkerMessage message;
  message.mutable_progress()->set_job_id(job_id);
  message.mutable_progress()->mutable_progress()->set_stage(v1::STAGE_DENOISING);
  message.mutable_progress()->mutable_progress()->set_step(step);
  message.mutable_progress()->mutable_progress()->set_total(total);
  return message;
}

v1::WorkerMessage DoneMessage(const std::string& job_id) {
  v1::WorkerMessage message;
  message.mutable_done()->set_job_id(job_id);
  message.mutable_done()->mutable_stats()->set_frames(17);
  return message;
}

v1::WorkerMessage FailedMessage(const std::string& job_id, int code, const std::string& text) {
  v1::WorkerMessage message;
  message.mutable_failed()->set_job_id(job_id);
  message.mutable_failed()->mutable_error()->set_code(code);
  message.mutable_failed()->mutable_error()->set_message(text);
  return message;
}

// Everything a watcher can read now, and whether its stream ended.
struct Drained {
  std::vector<v1::JobEvent> events;
  std::string bytes;
  bool ended = false;
};

Drained Drain(Scheduler& scheduler, const std::string& job_id, WatchCursor& cursor,
              const std::shared_ptr<Waiter>& waiter = std::make_shared<CountingWaiter>()) {
  Drained result;
  uint64_t start = cursor.offset;  // bytes holds the video from here on
  v1::JobEvent event;
  for (;;) {
    const WatchPoll poll = scheduler.NextEvent(job_id, cursor, event, waiter);
    if (poll == WatchPoll::kWait) break;
    if (poll == WatchPoll::kEnd) {
      result.ended = true;
      break;
    }
    if (event.has_chunk()) {
      EXPECT_EQ(event.chunk().offset(), start + result.bytes.size()) << "chunks are contiguous";
      result.bytes += event.chunk().data();
    }
    if (event.has_restarted()) {
      result.bytes.clear();
      start = 0;
    }
    result.events.push_back(event);
  }
  return result;
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerOptions Options() {
    SchedulerOptions options;
    options.queue_capacity = 4;
    options.max_chunk_bytes = 5;
    return options;
  }
  std::unique_ptr<Scheduler> scheduler_ = std::make_unique<Scheduler>(Options(), std::make_unique<InMemoryJobStore>());
};

TEST_F(SchedulerTest, NoWorkerMeansUnavailable) {
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, FullGenerationStreamsEverythingToAWatcher) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.default_model(), "tiny");
  EXPECT_EQ(models.models(0).workers(), 1u);

  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_RUNNING) << "an idle worker takes the job at once";
  ASSERT_EQ(worker.assigns().size(), 1u);
  const v1::Assign assign = worker.assigns()[0];
  EXPECT_EQ(assign.job_id(), job->id());
  EXPECT_EQ(assign.attempt(), 1u);
  EXPECT_EQ(assign.request().width(), 128u) << "the worker gets the resolved request";
  EXPECT_TRUE(assign.request().has_seed());

  auto cursor = scheduler_->StartWatch(job->id(), 0);
  ASSERT_TRUE(cursor.ok());
  auto waiter = std::make_shared<CountingWaiter>();
  Drained first = Drain(*scheduler_, job->id(), *cursor, waiter);
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_TRUE(first.events[0].has_accepted());
  EXPECT_EQ(first.events[0].accepted().request().steps(), 4u);

  scheduler_->WorkerMessage(&worker, ProgressMessage(job->id(), 1, 4));
  EXPECT_EQ(waiter->wakes, 1) << "a waiting watcher is woken by news";
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 0, "ftypmoov"));
  scheduler_->WorkerMessage(&worker, ProgressMessage(job->id(), 2, 4));
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 8, "moofmdat"));
  scheduler_->WorkerMessage(&worker, DoneMessage(job->id()));

  Drained rest = Drain(*scheduler_, job->id(), *cursor, waiter);
  EXPECT_EQ(rest.bytes, "ftypmoovmoofmdat");
  ASSERT_FALSE(rest.events.empty());
  EXPECT_TRUE(rest.events.back().has_completed());
  EXPECT_EQ(rest.events.back().completed().stats().worker_id(), "w1");
  EXPECT_EQ(rest.events.back().completed().stats().video_bytes(), 16u);
  EXPECT_TRUE(Drain(*scheduler_, job->id(), *cursor).ended);

  const auto done = scheduler_->GetJob(job->id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->bytes_produced(), 16u);
  EXPECT_GT(done->finished_unix_ms(), 0);
}

TEST_F(SchedulerTest, WatchFromAnOffsetReturnsExactlyTheRemainingBytes) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok());
  const std::string video = "0123456789abcdefghij";
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 0, video.substr(0, 12)));
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 12, video.substr(12)));
  scheduler_->WorkerMessage(&worker, DoneMessage(job->id()));
  for (uint64_t offset : {0u, 7u, 12u, 20u}) {
    auto cursor = scheduler_->StartWatch(job->id(), offset);
    ASSERT_TRUE(cursor.ok());
    Drained watched = Drain(*scheduler_, job->id(), *cursor);
    EXPECT_EQ(watched.bytes, video.substr(offset)) << "offset " << offset;
    EXPECT_TRUE(watched.events.back().has_completed());
  }
  const auto past_end = scheduler_->StartWatch(job->id(), 21);
  EXPECT_EQ(past_end.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past_end.status().message().find("from_byte_offset: got 21, expected at most 20"), std::string::npos);
}

TEST_F(SchedulerTest, HigherPriorityRunsFirstAndQueuePositionsAreReported) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto running = scheduler_->Submit(Request("first"));
  const auto low = scheduler_->Submit(Request("low", -1));
  const auto high = scheduler_->Submit(Request("high", 5));
  ASSERT_TRUE(running.ok() && low.ok() && high.ok());
  EXPECT_EQ(scheduler_->GetJob(high->id())->queue_position(), 0u);
  EXPECT_EQ(scheduler_->GetJob(low->id())->queue_position(), 1u);
  scheduler_->WorkerMessage(&worker, DoneMessage(running->id()));
  ASSERT_EQ(worker.assigns().size(), 2u);
  EXPECT_EQ(worker.assigns()[1].job_id(), high->id());
}

TEST_F(SchedulerTest, FullQueueIsResourceExhausted) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->Submit(Request("runs")).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(scheduler_->Submit(Request("waits")).ok());
  const auto rejected = scheduler_->Submit(Request("one too many"));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(rejected.status().message().find("queue: got 4 queued jobs"), std::string::npos);
}

TEST_F(SchedulerTest, CancelQueuedJobEndsItAtOnce) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->Submit(Request("busy")).ok());
  const auto queued = scheduler_->Submit(Request("waiting"));
  ASSERT_TRUE(queued.ok());
  auto cursor = scheduler_->StartWatch(queued->id(), 0);
  ASSERT_TRUE(cursor.ok());
  const auto cancelled = scheduler_->Cancel(queued->id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
  Drained watched = Drain(*scheduler_, queued->id(), *cursor);
  ASSERT_FALSE(watched.events.empty());
  EXPECT_TRUE(watched.events.back().has_cancelled());
  EXPECT_TRUE(worker.cancels().empty()) << "a queued job never reached a worker";
}

TEST_F(SchedulerTest, CancelRunningJobAsksItsWorkerAndEndsWhenConfirmed) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("long"));
  ASSERT_TRUE(job.ok());
  const auto asked = scheduler_->Cancel(job->id());
  ASSERT_TRUE(asked.ok());
  EXPECT_EQ(asked->state(), v1::JOB_STATE_RUNNING) << "running until the worker stops";
  ASSERT_EQ(worker.cancels(), std::vector<std::string>{job->id()});
  EXPECT_TRUE(scheduler_->Cancel(job->id()).ok());
  EXPECT_EQ(worker.cancels().size(), 1u) << "cancel is sent once";
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 1, "stopped at step 2"));
  const auto ended = scheduler_->GetJob(job->id());
  EXPECT_EQ(ended->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ended->error().code(), 1);
  const auto again = scheduler_->Cancel(job->id());
  EXPECT_EQ(again->state(), v1::JOB_STATE_CANCELLED) << "cancelling an ended job changes nothing";
}

TEST_F(SchedulerTest, LostWorkerRequeuesOnceThenAnotherWorkerFinishes) {
  FakeWorker first;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok());
  auto cursor = scheduler_->StartWatch(job->id(), 0);
  scheduler_->WorkerMessage(&first, ChunkMessage(job->id(), 0, "partial"));
  Drained before = Drain(*scheduler_, job->id(), *cursor);
  EXPECT_EQ(before.bytes, "partial");

  scheduler_->WorkerGone(&first, "stream closed");
  auto requeued = scheduler_->GetJob(job->id());
  EXPECT_EQ(requeued->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(requeued->bytes_produced(), 0u);
  Drained restart = Drain(*scheduler_, job->id(), *cursor);
  ASSERT_EQ(restart.events.size(), 1u);
  ASSERT_TRUE(restart.events[0].has_restarted());
  EXPECT_EQ(restart.events[0].restarted().attempt(), 2u);
  EXPECT_NE(restart.events[0].restarted().reason().find("w1"), std::string::npos);

  FakeWorker second;
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  ASSERT_EQ(second.assigns().size(), 1u);
  EXPECT_EQ(second.assigns()[0].attempt(), 2u);
  scheduler_->WorkerMessage(&first, ChunkMessage(job->id(), 0, "stale"));  // a dead worker is ignored
  scheduler_->WorkerMessage(&second, ChunkMessage(job->id(), 0, "complete video"));
  scheduler_->WorkerMessage(&second, DoneMessage(job->id()));
  Drained after = Drain(*scheduler_, job->id(), *cursor);
  EXPECT_EQ(after.bytes, "complete video");
  EXPECT_TRUE(after.events.back().has_completed());
  EXPECT_EQ(scheduler_->GetJob(job->id())->attempts(), 2u);
}

TEST_F(SchedulerTest, LostWorkerTwiceFailsTheJobWithAClearStatus) {
  FakeWorker first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  scheduler_->WorkerGone(&first, "stream closed");
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  scheduler_->WorkerGone(&second, "heartbeat timeout");
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 14);
  EXPECT_NE(failed->error().message().find("attempt 2 of 2"), std::string::npos) << failed->error().message();
}

TEST_F(SchedulerTest, WorkerFailureAndBadChunksFailTheJob) {
  FakeWorker worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1", 2)).ok());
  const auto out_of_memory = scheduler_->Submit(Request("big"));
  const auto misordered = scheduler_->Submit(Request("gap"));
  scheduler_->WorkerMessage(&worker, FailedMessage(out_of_memory->id(), 8, "CUDA out of memory"));
  EXPECT_EQ(scheduler_->GetJob(out_of_memory->id())->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(scheduler_->GetJob(out_of_memory->id())->error().message(), "CUDA out of memory");
  scheduler_->WorkerMessage(&worker, ChunkMessage(misordered->id(), 5, "gap"));
  const auto failed = scheduler_->GetJob(misordered->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(failed->error().message().find("offset 5, expected 0"), std::string::npos);
  EXPECT_EQ(worker.cancels(), std::vector<std::string>{misordered->id()}) << "the worker is told to stop";
}

TEST_F(SchedulerTest, UnknownJobsAndBadHellos) {
  EXPECT_EQ(scheduler_->GetJob("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->GetJob("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->Cancel("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->StartWatch("nope", 0).status().code(), absl::StatusCode::kNotFound);
  FakeWorker worker;
  v1::Hello anonymous = HelloFor("");
  EXPECT_EQ(scheduler_->WorkerHello(&worker, anonymous).code(), absl::StatusCode::kInvalidArgument);
  v1::Hello no_models;
  no_models.set_worker_id("w");
  EXPECT_EQ(scheduler_->WorkerHello(&worker, no_models).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("w1")).code(), absl::StatusCode::kFailedPrecondition);
  scheduler_->WorkerMessage(&worker, DoneMessage("not-a-job"));  // ignored, no crash
  EXPECT_EQ(scheduler_->connected_workers(), 1u);
}

TEST(SchedulerRetentionTest, OldEndedJobsAreForgotten) {
  SchedulerOptions options;
  options.max_finished_jobs = 1;
  Scheduler scheduler(options, std::make_unique<InMemoryJobStore>());
  FakeWorker worker;
  ASSERT_TRUE(scheduler.WorkerHello(&worker, HelloFor("w1")).ok());
  const auto first = scheduler.Submit(Request("one"));
  scheduler.WorkerMessage(&worker, DoneMessage(first->id()));
  const auto second = scheduler.Submit(Request("two"));
  scheduler.WorkerMessage(&worker, DoneMessage(second->id()));
  EXPECT_EQ(scheduler.GetJob(first->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(scheduler.GetJob(second->id()).ok());
}

// Forwards to a store shared between two schedulers, as a durable store would be across restarts.
class SharedStore : public JobStore {
 public:
  explicit SharedStore(std::shared_ptr<InMemoryJobStore> store) : store_(std::move(store)) {}
  absl::Status Save(const v1::Job& job) override { return store_->Save(job); }
  absl::StatusOr<std::vector<v1::Job>> LoadUnfinished() override { return store_->LoadUnfinished(); }

 private:
  std::shared_ptr<InMemoryJobStore> store_;
};

TEST(SchedulerStoreTest, UnfinishedJobsRunAgainAfterARestart) {
  auto store = std::make_shared<InMemoryJobStore>();
  std::string running_id, queued_id, done_id;
  {
    Scheduler scheduler(SchedulerOptions{}, std::make_unique<SharedStore>(store));
    FakeWorker worker;
    ASSERT_TRUE(scheduler.WorkerHello(&worker, HelloFor("w1")).ok());
    done_id = scheduler.Submit(Request("done"))->id();
    scheduler.WorkerMessage(&worker, DoneMessage(done_id));
    running_id = scheduler.Submit(Request("running"))->id();
    queued_id = scheduler.Submit(Request("queued"))->id();
  }
  Scheduler restarted(SchedulerOptions{}, std::make_unique<SharedStore>(store));
  EXPECT_EQ(restarted.queued_jobs(), 2u);
  EXPECT_EQ(restarted.GetJob(running_id)->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(restarted.GetJob(queued_id)->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(restarted.GetJob(done_id).status().code(), absl::StatusCode::kNotFound)
      << "ended jobs are not reloaded (their videos lived in memory)";
  FakeWorker worker;
  ASSERT_TRUE(restarted.WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_EQ(worker.assigns().size(), 1u);
  EXPECT_EQ(worker.assigns()[0].job_id(), running_id) << "reloaded in submission order";
}

}  // namespace
}  // namespace radial::server
