// The scheduler's behaviour towards clients and workers, driven through its facade with fake
// workers (scheduler_fakes.h): submission, watching, priorities, cancellation, lost workers, the
// check of what workers send, the workers' hellos, ListJobs, DeleteJob and request_id.
// Time, restarts and the store are in scheduler_lifecycle_test.cc.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/server/fake_fmp4.h"
#include "tests/server/scheduler_fakes.h"
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

using radial::testing::ChunkMessage;
using radial::testing::Contains;
using radial::testing::CountingWaiter;
using radial::testing::DoneMessage;
using radial::testing::FailedMessage;
using radial::testing::FakeClocks;
using radial::testing::FakeFmp4;
using radial::testing::FakeWorkerLink;
using radial::testing::HelloFor;
using radial::testing::kTinyFrames;
using radial::testing::ProgressMessage;
using radial::testing::Pull;
using radial::testing::Pulled;
using radial::testing::Request;
using radial::testing::RunToSuccess;
using radial::testing::SendVideo;
using radial::testing::SharedJobStore;
using radial::testing::TinyModelInfo;
using radial::testing::TinyModelNamed;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(Options()); }

  SchedulerOptions Options() {
    SchedulerOptions options;
    options.queue_capacity = 4;
    options.max_chunk_bytes = 5;
    FakeClocks::Install(clocks_, options);
    return options;
  }
  void Start(SchedulerOptions options) {
    scheduler_.reset();
    scheduler_ = radial::testing::CreateScheduler(std::move(options), std::make_unique<SharedJobStore>(store_));
    ASSERT_NE(scheduler_, nullptr);
  }
  // The job's row as the store holds it; nullopt when there is none.
  std::optional<StoredJob> StoredRow(const std::string& job_id) {
    absl::StatusOr<std::vector<StoredJob>> rows = store_->LoadAll();
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return std::nullopt;
    for (const StoredJob& row : *rows) {
      if (row.job.id() == job_id) return row;
    }
    return std::nullopt;
  }
  std::vector<std::string> ListedIds(const v1::ListJobsRequest& request) {
    const absl::StatusOr<v1::ListJobsResponse> response = scheduler_->ListJobs(request);
    EXPECT_TRUE(response.ok()) << response.status();
    std::vector<std::string> ids;
    if (!response.ok()) return ids;
    for (const v1::Job& job : response->jobs()) ids.push_back(job.id());
    return ids;
  }

  std::shared_ptr<FakeClocks> clocks_ = std::make_shared<FakeClocks>();
  std::shared_ptr<InMemoryJobStore> store_ = std::make_shared<InMemoryJobStore>();
  std::unique_ptr<Scheduler> scheduler_;
};

// ---------------------------------------------------------------- submission and watching

TEST_F(SchedulerTest, NoWorkerMeansUnavailable) {
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(job.status().message(), "no worker")) << job.status();
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
}

TEST_F(SchedulerTest, JobIdsAre32RandomHexCharacters) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const std::regex hex32("[0-9a-f]{32}");
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    const auto job = scheduler_->Submit(Request("a cat"));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_TRUE(std::regex_match(job->id(), hex32)) << job->id();
    ids.insert(job->id());
  }
  EXPECT_EQ(ids.size(), 5u);
}

TEST_F(SchedulerTest, FullGenerationStreamsEverythingToAWatcher) {
  FakeWorkerLink worker;
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
  EXPECT_EQ(assign.request().frames(), kTinyFrames);
  EXPECT_TRUE(assign.request().has_seed());
  EXPECT_GT(assign.request().queue_timeout_seconds(), 0u) << "the scheduler's default timeouts are filled in";
  EXPECT_GT(assign.request().run_timeout_seconds(), 0u);

  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  ASSERT_TRUE(cursor.ok()) << cursor.status();
  auto waiter = std::make_shared<CountingWaiter>();
  Pulled first = Pull(*scheduler_, job->id(), *cursor, waiter);
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_TRUE(first.events[0].has_accepted());
  EXPECT_EQ(first.events[0].accepted().request().steps(), 4u);
  EXPECT_FALSE(first.ended);

  const std::string video = FakeFmp4(kTinyFrames);
  scheduler_->WorkerMessage(&worker, ProgressMessage(job->id(), 1, 4));
  EXPECT_EQ(waiter->wakes, 1) << "a waiting watcher is woken by news";
  SendVideo(*scheduler_, worker, job->id(), video.substr(0, 40));
  scheduler_->WorkerMessage(&worker, ProgressMessage(job->id(), 2, 4));
  EXPECT_EQ(waiter->wakes, 1) << "woken once per registration";
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 40, video.substr(40)));
  scheduler_->WorkerMessage(&worker, DoneMessage(job->id()));

  Pulled rest = Pull(*scheduler_, job->id(), *cursor, waiter);
  EXPECT_EQ(rest.bytes, video);
  for (const v1::JobEvent& event : rest.events) {
    if (event.has_chunk()) {
      EXPECT_LE(event.chunk().data().size(), 5u) << "max_chunk_bytes";
    }
  }
  ASSERT_NE(rest.last(), nullptr);
  ASSERT_TRUE(rest.last()->has_completed());
  EXPECT_EQ(rest.last()->completed().stats().worker_id(), "w1");
  EXPECT_EQ(rest.last()->completed().stats().video_bytes(), video.size());
  EXPECT_EQ(rest.last()->completed().stats().frames(), kTinyFrames);
  EXPECT_DOUBLE_EQ(rest.last()->completed().stats().denoise_seconds(), 1.5);
  EXPECT_TRUE(rest.ended) << "the stream ends after the terminal event";
  EXPECT_TRUE(rest.end_status.ok()) << rest.end_status;
  const Pulled after = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_TRUE(after.events.empty());
  EXPECT_TRUE(after.ended);
  scheduler_->EndWatch(job->id());

  const auto done = scheduler_->GetJob(job->id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->bytes_produced(), video.size());
  EXPECT_GT(done->finished_unix_ms(), 0);

  // The video is in the store before the job is SUCCEEDED.
  const std::optional<StoredJob> row = StoredRow(job->id());
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_FALSE(row->video.empty());
  EXPECT_EQ(row->video_bytes, video.size());
  auto reader = store_->OpenVideo(row->video);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*(*reader)->Read(0, video.size()), video);
}

TEST_F(SchedulerTest, WatchFromAnOffsetReturnsExactlyTheRemainingBytes) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok());
  const std::string video = FakeFmp4(kTinyFrames, 10);
  RunToSuccess(*scheduler_, worker, job->id(), video);
  ASSERT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_SUCCEEDED);
  for (uint64_t offset : {uint64_t{0}, uint64_t{7}, uint64_t{12}, uint64_t{video.size()}}) {
    auto cursor = scheduler_->StartWatch(job->id(), offset, 0);
    ASSERT_TRUE(cursor.ok());
    Pulled watched = Pull(*scheduler_, job->id(), *cursor);
    EXPECT_EQ(watched.bytes, video.substr(offset)) << "offset " << offset;
    ASSERT_NE(watched.last(), nullptr);
    EXPECT_TRUE(watched.last()->has_completed());
    scheduler_->EndWatch(job->id());
  }
  const auto past_end = scheduler_->StartWatch(job->id(), video.size() + 1, 0);
  EXPECT_EQ(past_end.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(past_end.status().message(), absl::StrCat("from_byte_offset: got ", video.size() + 1,
                                                                 ", expected at most ", video.size())))
      << past_end.status();
}

TEST_F(SchedulerTest, WatchPastTheEndOfARunningJobEndsOutOfRangeOnceItsSizeIsKnown) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok());
  auto cursor = scheduler_->StartWatch(job->id(), 100000, 0);
  ASSERT_TRUE(cursor.ok()) << "the size of a running job's video is not known yet";
  const Pulled before = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_FALSE(before.ended);
  RunToSuccess(*scheduler_, worker, job->id());
  const Pulled after = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_TRUE(after.bytes.empty());
  ASSERT_TRUE(after.ended);
  EXPECT_EQ(after.end_status.code(), absl::StatusCode::kOutOfRange) << after.end_status;
}

TEST_F(SchedulerTest, HigherPriorityRunsFirstAndQueuePositionsAreReported) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto running = scheduler_->Submit(Request("first"));
  const auto low = scheduler_->Submit(Request("low", -1));
  const auto normal = scheduler_->Submit(Request("normal", 0));
  const auto high = scheduler_->Submit(Request("high", 5));
  ASSERT_TRUE(running.ok() && low.ok() && normal.ok() && high.ok());
  EXPECT_EQ(high->queue_position(), 0u) << "Submit reports the position";
  EXPECT_EQ(scheduler_->GetJob(high->id())->queue_position(), 0u);
  EXPECT_EQ(scheduler_->GetJob(normal->id())->queue_position(), 1u);
  EXPECT_EQ(scheduler_->GetJob(low->id())->queue_position(), 2u);
  RunToSuccess(*scheduler_, worker, running->id());
  RunToSuccess(*scheduler_, worker, high->id());
  RunToSuccess(*scheduler_, worker, normal->id());
  EXPECT_EQ(worker.assigned_ids(),
            (std::vector<std::string>{running->id(), high->id(), normal->id(), low->id()}));
}

TEST_F(SchedulerTest, FullQueueIsResourceExhausted) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->Submit(Request("runs")).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(scheduler_->Submit(Request("waits")).ok());
  const auto rejected = scheduler_->Submit(Request("one too many"));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(rejected.status().message(), "queue: got 4 queued jobs")) << rejected.status();
  EXPECT_EQ(scheduler_->queued_jobs(), 4u);
}

// ---------------------------------------------------------------- cancellation

TEST_F(SchedulerTest, CancelQueuedJobEndsItAtOnce) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->Submit(Request("busy")).ok());
  const auto queued = scheduler_->Submit(Request("waiting"));
  ASSERT_TRUE(queued.ok());
  auto cursor = scheduler_->StartWatch(queued->id(), 0, 0);
  ASSERT_TRUE(cursor.ok());
  const auto cancelled = scheduler_->Cancel(queued->id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled->error().code(), 1);
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
  Pulled watched = Pull(*scheduler_, queued->id(), *cursor);
  ASSERT_NE(watched.last(), nullptr);
  EXPECT_TRUE(watched.last()->has_cancelled());
  EXPECT_TRUE(worker.cancels().empty()) << "a queued job never reached a worker";
  EXPECT_EQ(StoredRow(queued->id())->job.state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerTest, CancelRunningJobAsksItsWorkerAndEndsWhenConfirmed) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("long"));
  ASSERT_TRUE(job.ok());
  const auto asked = scheduler_->Cancel(job->id());
  ASSERT_TRUE(asked.ok());
  EXPECT_EQ(asked->state(), v1::JOB_STATE_RUNNING) << "running until the worker stops";
  ASSERT_EQ(worker.cancelled_ids(), std::vector<std::string>{job->id()});
  EXPECT_FALSE(worker.cancels()[0].reason().empty());
  EXPECT_TRUE(scheduler_->Cancel(job->id()).ok());
  EXPECT_EQ(worker.cancels().size(), 1u) << "cancel is sent once";
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 1, "stopped at step 2"));
  const auto ended = scheduler_->GetJob(job->id());
  EXPECT_EQ(ended->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ended->error().code(), 1);
  const auto again = scheduler_->Cancel(job->id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << "cancelling an ended job";
  EXPECT_TRUE(Contains(again.status().message(), "CANCELLED")) << again.status();
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerTest, CancelOfASucceededJobIsFailedPrecondition) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("done"));
  RunToSuccess(*scheduler_, worker, job->id());
  const auto cancel = scheduler_->Cancel(job->id());
  EXPECT_EQ(cancel.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(cancel.status().message(), "SUCCEEDED")) << cancel.status();
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(SchedulerTest, CancelledJobWhoseWorkerIsLostEndsCancelled) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("long"));
  ASSERT_TRUE(scheduler_->Cancel(job->id()).ok());
  scheduler_->WorkerGone(&worker, "stream closed");
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_CANCELLED) << "not requeued";
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
}

// ---------------------------------------------------------------- lost workers

TEST_F(SchedulerTest, LostWorkerRequeuesOnceThenAnotherWorkerFinishes) {
  FakeWorkerLink first;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_TRUE(job.ok());
  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  const std::string video = FakeFmp4(kTinyFrames);
  scheduler_->WorkerMessage(&first, ChunkMessage(job->id(), 0, video.substr(0, 30)));
  Pulled before = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_EQ(before.bytes, video.substr(0, 30));

  scheduler_->WorkerGone(&first, "stream closed");
  EXPECT_EQ(scheduler_->connected_workers(), 0u);
  auto requeued = scheduler_->GetJob(job->id());
  EXPECT_EQ(requeued->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(requeued->bytes_produced(), 0u);
  Pulled restart = Pull(*scheduler_, job->id(), *cursor);
  ASSERT_EQ(restart.events.size(), 1u);
  ASSERT_TRUE(restart.events[0].has_restarted());
  EXPECT_EQ(restart.events[0].restarted().attempt(), 2u);
  EXPECT_TRUE(Contains(restart.events[0].restarted().reason(), "w1")) << restart.events[0].restarted().reason();

  FakeWorkerLink second;
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  ASSERT_EQ(second.assigns().size(), 1u);
  EXPECT_EQ(second.assigns()[0].attempt(), 2u);
  scheduler_->WorkerMessage(&first, ChunkMessage(job->id(), 0, "stale"));  // a dead worker is ignored
  RunToSuccess(*scheduler_, second, job->id(), video);
  Pulled after = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_EQ(after.bytes, video);
  ASSERT_NE(after.last(), nullptr);
  EXPECT_TRUE(after.last()->has_completed());
  EXPECT_EQ(after.last()->completed().stats().worker_id(), "w2");
  EXPECT_EQ(scheduler_->GetJob(job->id())->attempts(), 2u);
}

TEST_F(SchedulerTest, LostWorkerTwiceFailsTheJobWithAClearStatus) {
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  scheduler_->WorkerGone(&first, "stream closed");
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  scheduler_->WorkerGone(&second, "heartbeat timeout");
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 14);
  EXPECT_TRUE(Contains(failed->error().message(), "during attempt 2")) << failed->error().message();
  EXPECT_TRUE(Contains(failed->error().message(), "--max-attempts 2")) << failed->error().message();
  EXPECT_EQ(scheduler_->queued_jobs(), 0u);
}

TEST_F(SchedulerTest, WorkerGoneTwiceOrUnknownIsANoOp) {
  FakeWorkerLink worker, stranger;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  scheduler_->WorkerGone(&stranger, "never said hello");
  EXPECT_EQ(scheduler_->connected_workers(), 1u);
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_RUNNING);
  scheduler_->WorkerGone(&worker, "stream closed");
  scheduler_->WorkerGone(&worker, "stream done");
  const auto requeued = scheduler_->GetJob(job->id());
  EXPECT_EQ(requeued->state(), v1::JOB_STATE_QUEUED) << "one loss counted, not two";
}

// ---------------------------------------------------------------- what workers send

TEST_F(SchedulerTest, WorkerFailureAndMisorderedChunksFailTheJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1", 2)).ok());
  const auto out_of_memory = scheduler_->Submit(Request("big"));
  const auto misordered = scheduler_->Submit(Request("gap"));
  ASSERT_EQ(worker.assigns().size(), 2u) << "capacity 2 runs both";
  scheduler_->WorkerMessage(&worker, FailedMessage(out_of_memory->id(), 8, "CUDA out of memory"));
  const auto oom = scheduler_->GetJob(out_of_memory->id());
  EXPECT_EQ(oom->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(oom->error().code(), 8);
  EXPECT_EQ(oom->error().message(), "worker w1: CUDA out of memory");
  scheduler_->WorkerMessage(&worker, ChunkMessage(misordered->id(), 5, "gap"));
  const auto failed = scheduler_->GetJob(misordered->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 13);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1 sent a chunk at offset 5, expected 0"))
      << failed->error().message();
  EXPECT_EQ(worker.cancelled_ids(), std::vector<std::string>{misordered->id()}) << "the worker is told to stop";
}

TEST_F(SchedulerTest, AWatcherBehindAFailedJobGetsItsPartialBytesThenTheFailure) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  ASSERT_TRUE(cursor.ok());
  const std::string video = FakeFmp4(kTinyFrames);
  SendVideo(*scheduler_, worker, job->id(), video.substr(0, 30));
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 8, "CUDA out of memory"));
  const Pulled watched = Pull(*scheduler_, job->id(), *cursor);
  EXPECT_EQ(watched.bytes, video.substr(0, 30)) << "the bytes it had not read yet";
  ASSERT_NE(watched.last(), nullptr);
  ASSERT_TRUE(watched.last()->has_failed());
  EXPECT_EQ(watched.last()->failed().code(), 8);
  EXPECT_TRUE(watched.ended);
  scheduler_->EndWatch(job->id());
  EXPECT_EQ(scheduler_->GetJob(job->id())->bytes_produced(), 0u) << "dropped once nobody reads them";
}

TEST_F(SchedulerTest, WorkerFailureWithoutACodeIsInternal) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 0, "something broke"));
  EXPECT_EQ(scheduler_->GetJob(job->id())->error().code(), 13);
  const auto next = scheduler_->Submit(Request("another"));
  scheduler_->WorkerMessage(&worker, FailedMessage(next->id(), 99, "odd code"));
  EXPECT_EQ(scheduler_->GetJob(next->id())->error().code(), 2) << "codes outside google.rpc.Code are UNKNOWN";
}

// Bytes that are not a fragmented MP4 fail the job at the first bad chunk, name the worker, stop
// the worker and tell watchers; the worker's slot is freed once it reports the job ended.
TEST_F(SchedulerTest, GarbageVideoBytesFailTheJobNamingTheWorker) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  const auto next = scheduler_->Submit(Request("next"));
  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  ASSERT_TRUE(cursor.ok());
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 0, "this is not an mp4 file at all"));
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 13);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1")) << failed->error().message();
  EXPECT_TRUE(Contains(failed->error().message(), "not a fragmented MP4")) << failed->error().message();
  EXPECT_EQ(failed->bytes_produced(), 0u) << "a failed job keeps no bytes";
  ASSERT_EQ(worker.cancelled_ids(), std::vector<std::string>{job->id()});
  EXPECT_FALSE(worker.cancels()[0].reason().empty());
  const Pulled watched = Pull(*scheduler_, job->id(), *cursor);
  ASSERT_NE(watched.last(), nullptr);
  ASSERT_TRUE(watched.last()->has_failed());
  EXPECT_EQ(watched.last()->failed().code(), 13);

  EXPECT_EQ(worker.assigns().size(), 1u) << "the slot stays busy until the worker stops";
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 1, "cancelled"));
  ASSERT_EQ(worker.assigned_ids(), (std::vector<std::string>{job->id(), next->id()}));
  EXPECT_EQ(scheduler_->GetJob(job->id())->error().code(), 13) << "the worker's late report changes nothing";
}

TEST_F(SchedulerTest, WrongFrameCountInStatsFailsTheJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  const auto next = scheduler_->Submit(Request("next"));
  SendVideo(*scheduler_, worker, job->id(), FakeFmp4(kTinyFrames));
  scheduler_->WorkerMessage(&worker, DoneMessage(job->id(), kTinyFrames - 1));
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 13);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1")) << failed->error().message();
  EXPECT_TRUE(Contains(failed->error().message(), "stats.frames: got 16, expected 17")) << failed->error().message();
  const std::optional<StoredJob> row = StoredRow(job->id());
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->video.empty()) << "no video is stored for a failed job";
  EXPECT_EQ(worker.assigned_ids().back(), next->id()) << "the worker is done: its slot is free";
}

TEST_F(SchedulerTest, WrongNumberOfSamplesInTheStreamFailsTheJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  RunToSuccess(*scheduler_, worker, job->id(), FakeFmp4(kTinyFrames - 4));  // stats still say 17
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 13);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1")) << failed->error().message();
  EXPECT_TRUE(Contains(failed->error().message(), "got 13 samples")) << failed->error().message();
  EXPECT_TRUE(Contains(failed->error().message(), "expected 17")) << failed->error().message();
}

TEST_F(SchedulerTest, TruncatedStreamFailsTheJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  const std::string video = FakeFmp4(kTinyFrames);
  RunToSuccess(*scheduler_, worker, job->id(), video.substr(0, video.size() - 3));
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 13);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1 reported success, but video:"))
      << failed->error().message();
}

TEST_F(SchedulerTest, VideoOverTheLimitFailsTheJob) {
  SchedulerOptions options = Options();
  options.max_video_bytes = 200;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  SendVideo(*scheduler_, worker, job->id(), FakeFmp4(kTinyFrames, 500), 100);
  const auto failed = scheduler_->GetJob(job->id());
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->error().code(), 8);
  EXPECT_TRUE(Contains(failed->error().message(), "worker w1")) << failed->error().message();
  EXPECT_EQ(worker.cancelled_ids(), std::vector<std::string>{job->id()});
}

TEST_F(SchedulerTest, MessagesAboutJobsNotRunningOnTheWorkerAreIgnored) {
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler_->WorkerHello(&second, HelloFor("w2")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  ASSERT_EQ(first.assigned_ids(), std::vector<std::string>{job->id()});
  scheduler_->WorkerMessage(&second, ChunkMessage(job->id(), 0, "not yours"));
  scheduler_->WorkerMessage(&second, DoneMessage(job->id()));
  scheduler_->WorkerMessage(&second, DoneMessage("0123456789abcdef0123456789abcdef"));
  const auto still = scheduler_->GetJob(job->id());
  EXPECT_EQ(still->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(still->bytes_produced(), 0u);
  RunToSuccess(*scheduler_, first, job->id());
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_SUCCEEDED);
}

// ---------------------------------------------------------------- hellos and pinned model limits

TEST_F(SchedulerTest, UnknownJobsAndBadHellos) {
  EXPECT_EQ(scheduler_->GetJob("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->GetJob("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->Cancel("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Delete("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->StartWatch("nope", 0, 0).status().code(), absl::StatusCode::kNotFound);
  FakeWorkerLink worker;
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor(std::string(129, 'w'))).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("w", 1, {})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("w", 1, {TinyModelInfo(), TinyModelInfo()})).code(),
            absl::StatusCode::kInvalidArgument)
      << "a model twice in one hello";
  EXPECT_EQ(scheduler_->connected_workers(), 0u);
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const absl::Status second_hello = scheduler_->WorkerHello(&worker, HelloFor("w1"));
  EXPECT_EQ(second_hello.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(second_hello.message(), "second hello")) << second_hello;
  FakeWorkerLink twin;
  EXPECT_EQ(scheduler_->WorkerHello(&twin, HelloFor("w1")).code(), absl::StatusCode::kAlreadyExists)
      << "a worker id that is connected already";
  scheduler_->WorkerMessage(&worker, DoneMessage("not-a-job"));  // ignored, no crash
  scheduler_->WorkerMessage(&twin, DoneMessage("not-a-job"));    // an unregistered link: ignored
  EXPECT_EQ(scheduler_->connected_workers(), 1u);
}

TEST_F(SchedulerTest, SecondHelloOnAStreamClosesItAndRequeuesItsJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("a cat"));
  v1::WorkerMessage hello;
  *hello.mutable_hello() = HelloFor("w1");
  scheduler_->WorkerMessage(&worker, hello);
  EXPECT_EQ(worker.closes, 1);
  EXPECT_EQ(worker.close_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(worker.close_status.message(), "second hello")) << worker.close_status;
  EXPECT_EQ(scheduler_->connected_workers(), 0u);
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::JOB_STATE_QUEUED);
}

TEST_F(SchedulerTest, SecondWorkerWithOtherLimitsForAPinnedModelIsRefused) {
  FakeWorkerLink first, other, same;
  ASSERT_TRUE(scheduler_->WorkerHello(&first, HelloFor("w1")).ok());
  v1::ModelInfo longer = TinyModelInfo();
  longer.set_prompt_max_chars(200);
  const absl::Status refused = scheduler_->WorkerHello(&other, HelloFor("w2", 1, {longer}));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(refused.message(), "'tiny'")) << refused;
  v1::ModelInfo other_default = TinyModelInfo();
  other_default.mutable_defaults()->set_steps(5);
  EXPECT_EQ(scheduler_->WorkerHello(&other, HelloFor("w2", 1, {other_default})).code(),
            absl::StatusCode::kFailedPrecondition)
      << "defaults are pinned too";
  // A hello that is refused for one model registers none of its models.
  EXPECT_EQ(scheduler_->WorkerHello(&other, HelloFor("w2", 1, {TinyModelNamed("fresh"), longer})).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(scheduler_->connected_workers(), 1u);
  v1::ListModelsResponse models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).prompt_max_chars(), 100u) << "the first worker's limits stay";

  v1::ModelInfo counted = TinyModelInfo();
  counted.set_workers(7);  // the live count is not a limit
  ASSERT_TRUE(scheduler_->WorkerHello(&same, HelloFor("w3", 1, {counted})).ok());
  models = scheduler_->ListModels();
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).workers(), 2u);
  // Requests are checked against the pinned limits.
  EXPECT_EQ(scheduler_->Submit(Request(std::string(150, 'x'))).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, MalformedModelLimitsAreInvalidArgument) {
  FakeWorkerLink worker;
  v1::ModelInfo no_prompt = TinyModelInfo();
  no_prompt.set_prompt_max_chars(0);
  const absl::Status zero = scheduler_->WorkerHello(&worker, HelloFor("w1", 1, {no_prompt}));
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(zero.message(), "prompt_max_chars")) << zero;
  v1::ModelInfo inverted = TinyModelInfo();
  inverted.mutable_width()->set_min(300);
  const absl::Status range = scheduler_->WorkerHello(&worker, HelloFor("w1", 1, {inverted}));
  EXPECT_EQ(range.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(range.message(), "width: got [300, 256]")) << range;
  v1::ModelInfo bad_defaults = TinyModelInfo();
  bad_defaults.mutable_defaults()->set_width(100);
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("w1", 1, {bad_defaults})).code(),
            absl::StatusCode::kInvalidArgument);
  v1::ModelInfo unnamed = TinyModelInfo();
  unnamed.set_name("");
  EXPECT_EQ(scheduler_->WorkerHello(&worker, HelloFor("w1", 1, {unnamed})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->connected_workers(), 0u);
  EXPECT_EQ(scheduler_->ListModels().models_size(), 0) << "nothing is pinned by a refused hello";
  // The valid limits can still be pinned afterwards.
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
}

TEST_F(SchedulerTest, JobsGoOnlyToWorkersServingTheirModel) {
  FakeWorkerLink tiny, other;
  ASSERT_TRUE(scheduler_->WorkerHello(&tiny, HelloFor("w-tiny")).ok());
  ASSERT_TRUE(scheduler_->WorkerHello(&other, HelloFor("w-other", 1, {TinyModelNamed("other")})).ok());
  EXPECT_EQ(scheduler_->ListModels().default_model(), "other") << "the first model by name without a default";
  v1::GenerateRequest for_tiny = Request("a");
  for_tiny.set_model("tiny");
  const auto busy = scheduler_->Submit(for_tiny);
  const auto waiting = scheduler_->Submit(for_tiny);
  const auto on_other = scheduler_->Submit(Request("b"));  // the default model
  ASSERT_TRUE(busy.ok() && waiting.ok() && on_other.ok());
  EXPECT_EQ(tiny.assigned_ids(), std::vector<std::string>{busy->id()});
  EXPECT_EQ(other.assigned_ids(), std::vector<std::string>{on_other->id()})
      << "a job behind one no free worker serves is not blocked";
  EXPECT_EQ(scheduler_->GetJob(waiting->id())->state(), v1::JOB_STATE_QUEUED);
}

// ---------------------------------------------------------------- ListJobs

TEST_F(SchedulerTest, ListJobsIsNewestFirstAndFiltersByStateAndModel) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1", 1, {TinyModelInfo(), TinyModelNamed("other")})).ok());
  v1::GenerateRequest tiny = Request("t");
  tiny.set_model("tiny");
  v1::GenerateRequest other = Request("o");
  other.set_model("other");
  const std::string a = scheduler_->Submit(tiny)->id();
  RunToSuccess(*scheduler_, worker, a);
  const std::string b = scheduler_->Submit(other)->id();  // runs
  const std::string c = scheduler_->Submit(tiny)->id();
  const std::string d = scheduler_->Submit(other)->id();
  const std::string e = scheduler_->Submit(tiny)->id();
  ASSERT_TRUE(scheduler_->Cancel(e).ok());
  ASSERT_EQ(scheduler_->GetJob(b)->state(), v1::JOB_STATE_RUNNING);

  v1::ListJobsRequest all;
  EXPECT_EQ(ListedIds(all), (std::vector<std::string>{e, d, c, b, a}));
  v1::ListJobsRequest queued;
  queued.add_states(v1::JOB_STATE_QUEUED);
  EXPECT_EQ(ListedIds(queued), (std::vector<std::string>{d, c}));
  v1::ListJobsRequest of_tiny;
  of_tiny.set_model("tiny");
  EXPECT_EQ(ListedIds(of_tiny), (std::vector<std::string>{e, c, a}));
  v1::ListJobsRequest active_other;
  active_other.add_states(v1::JOB_STATE_QUEUED);
  active_other.add_states(v1::JOB_STATE_RUNNING);
  active_other.set_model("other");
  EXPECT_EQ(ListedIds(active_other), (std::vector<std::string>{d, b}));
  v1::ListJobsRequest ended;
  ended.add_states(v1::JOB_STATE_SUCCEEDED);
  ended.add_states(v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ListedIds(ended), (std::vector<std::string>{e, a}));
  v1::ListJobsRequest none;
  none.set_model("unknown");
  EXPECT_TRUE(ListedIds(none).empty());

  const auto listed = scheduler_->ListJobs(queued);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->jobs_size(), 2);
  EXPECT_EQ(listed->jobs(0).queue_position(), 1u) << "jobs are listed as GetJob shows them";
  EXPECT_EQ(listed->jobs(0).request().prompt(), "o");
  EXPECT_TRUE(listed->next_page_token().empty());
}

TEST_F(SchedulerTest, ListJobsPagesUntilExhausted) {
  SchedulerOptions options = Options();
  options.queue_capacity = 16;
  Start(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  std::vector<std::string> newest_first;
  for (int i = 0; i < 7; ++i) newest_first.insert(newest_first.begin(), scheduler_->Submit(Request("p"))->id());

  for (uint32_t page_size : {1u, 2u, 3u, 6u, 7u, 8u}) {
    v1::ListJobsRequest request;
    request.set_page_size(page_size);
    std::vector<std::string> seen;
    int pages = 0;
    for (;;) {
      const auto page = scheduler_->ListJobs(request);
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_LE(static_cast<uint32_t>(page->jobs_size()), page_size);
      for (const v1::Job& job : page->jobs()) seen.push_back(job.id());
      ++pages;
      ASSERT_LE(pages, 8) << "paging never ends";
      if (page->next_page_token().empty()) break;
      EXPECT_EQ(static_cast<uint32_t>(page->jobs_size()), page_size) << "only the last page is short";
      request.set_page_token(page->next_page_token());
    }
    EXPECT_EQ(seen, newest_first) << "page_size " << page_size;
    EXPECT_EQ(pages, static_cast<int>((7 + page_size - 1) / page_size)) << "page_size " << page_size;
  }

  // Paging with a filter: only matching jobs fill pages.
  ASSERT_TRUE(scheduler_->Cancel(newest_first[1]).ok());
  ASSERT_TRUE(scheduler_->Cancel(newest_first[4]).ok());
  v1::ListJobsRequest cancelled;
  cancelled.add_states(v1::JOB_STATE_CANCELLED);
  cancelled.set_page_size(1);
  auto page = scheduler_->ListJobs(cancelled);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs_size(), 1);
  EXPECT_EQ(page->jobs(0).id(), newest_first[1]);
  ASSERT_FALSE(page->next_page_token().empty());
  cancelled.set_page_token(page->next_page_token());
  page = scheduler_->ListJobs(cancelled);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs_size(), 1);
  EXPECT_EQ(page->jobs(0).id(), newest_first[4]);
  EXPECT_TRUE(page->next_page_token().empty());

  // A token stays valid when the job it points past is deleted.
  v1::ListJobsRequest two;
  two.set_page_size(2);
  page = scheduler_->ListJobs(two);
  ASSERT_TRUE(page.ok());
  ASSERT_TRUE(scheduler_->Delete(newest_first[1]).ok());
  two.set_page_token(page->next_page_token());
  page = scheduler_->ListJobs(two);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs_size(), 2);
  EXPECT_EQ(page->jobs(0).id(), newest_first[2]);
  EXPECT_EQ(page->jobs(1).id(), newest_first[3]);
}

TEST_F(SchedulerTest, ListJobsRejectsBadArguments) {
  for (const std::string token : {"abc", "0", "-1", "12x", "99999999999999999999999"}) {
    v1::ListJobsRequest request;
    request.set_page_token(token);
    const auto response = scheduler_->ListJobs(request);
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument) << "token " << token;
    EXPECT_TRUE(Contains(response.status().message(), "page_token")) << response.status();
  }
  v1::ListJobsRequest too_big;
  too_big.set_page_size(1001);
  const auto big = scheduler_->ListJobs(too_big);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(big.status().message(), "page_size: got 1001")) << big.status();
  too_big.set_page_size(1000);
  EXPECT_TRUE(scheduler_->ListJobs(too_big).ok());
  for (const int state : {0, 6, -1, 99}) {
    v1::ListJobsRequest request;
    request.add_states(static_cast<v1::JobState>(state));
    const auto response = scheduler_->ListJobs(request);
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument) << "state " << state;
    EXPECT_TRUE(Contains(response.status().message(), "states: got")) << response.status();
  }
}

// ---------------------------------------------------------------- DeleteJob

TEST_F(SchedulerTest, DeleteQueuedJobRemovesItAndEndsItsWatchersWithNotFound) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto running = scheduler_->Submit(Request("busy"));
  const auto queued = scheduler_->Submit(Request("waiting"));
  const auto behind = scheduler_->Submit(Request("behind"));
  auto cursor = scheduler_->StartWatch(queued->id(), 0, 0);
  ASSERT_TRUE(cursor.ok());
  auto waiter = std::make_shared<CountingWaiter>();
  ASSERT_FALSE(Pull(*scheduler_, queued->id(), *cursor, waiter).ended);

  const auto deleted = scheduler_->Delete(queued->id());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->id(), queued->id());
  EXPECT_EQ(deleted->state(), v1::JOB_STATE_QUEUED) << "the job as it was when removed";
  EXPECT_EQ(waiter->wakes, 1) << "its watchers are woken to see it gone";
  EXPECT_EQ(scheduler_->queued_jobs(), 1u);
  EXPECT_EQ(scheduler_->GetJob(behind->id())->queue_position(), 0u);
  EXPECT_EQ(scheduler_->GetJob(queued->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Delete(queued->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(StoredRow(queued->id()).has_value()) << "its row is gone from the store";
  EXPECT_EQ(ListedIds(v1::ListJobsRequest()), (std::vector<std::string>{behind->id(), running->id()}));
  const Pulled end = Pull(*scheduler_, queued->id(), *cursor);
  ASSERT_TRUE(end.ended);
  EXPECT_EQ(end.end_status.code(), absl::StatusCode::kNotFound) << end.end_status;
  scheduler_->EndWatch(queued->id());  // after the job is gone: harmless
  EXPECT_TRUE(worker.cancels().empty());
}

TEST_F(SchedulerTest, DeleteRunningJobStopsItsWorkerWhoseSlotIsFreedWhenItStops) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("running"));
  const auto next = scheduler_->Submit(Request("next"));
  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  const std::string video = FakeFmp4(kTinyFrames);
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 0, video.substr(0, 20)));
  ASSERT_FALSE(Pull(*scheduler_, job->id(), *cursor).ended);

  const auto deleted = scheduler_->Delete(job->id());
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->state(), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(worker.cancelled_ids(), std::vector<std::string>{job->id()});
  EXPECT_TRUE(Contains(worker.cancels()[0].reason(), "deleted")) << worker.cancels()[0].reason();
  const Pulled end = Pull(*scheduler_, job->id(), *cursor);
  ASSERT_TRUE(end.ended);
  EXPECT_EQ(end.end_status.code(), absl::StatusCode::kNotFound);

  // The worker is still busy with it: nothing new until it reports the job stopped.
  scheduler_->WorkerMessage(&worker, ChunkMessage(job->id(), 20, video.substr(20)));  // ignored
  EXPECT_EQ(worker.assigns().size(), 1u);
  EXPECT_EQ(scheduler_->GetJob(next->id())->state(), v1::JOB_STATE_QUEUED);
  scheduler_->WorkerMessage(&worker, FailedMessage(job->id(), 1, "cancelled"));
  EXPECT_EQ(worker.assigned_ids(), (std::vector<std::string>{job->id(), next->id()}));
  EXPECT_EQ(scheduler_->GetJob(job->id()).status().code(), absl::StatusCode::kNotFound) << "not resurrected";
}

TEST_F(SchedulerTest, DeleteSucceededJobRemovesItsVideoAndEndsAWatchInTheMiddleWithNotFound) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler_->Submit(Request("done"));
  RunToSuccess(*scheduler_, worker, job->id());
  const std::optional<StoredJob> row = StoredRow(job->id());
  ASSERT_TRUE(row.has_value());
  ASSERT_FALSE(row->video.empty());

  auto cursor = scheduler_->StartWatch(job->id(), 0, 0);
  ASSERT_TRUE(cursor.ok());
  v1::JobEvent event;
  auto waiter = std::make_shared<CountingWaiter>();
  ASSERT_EQ(scheduler_->NextEvent(job->id(), *cursor, event, waiter).kind, WatchStep::kEvent);  // accepted
  ASSERT_EQ(scheduler_->NextEvent(job->id(), *cursor, event, waiter).kind, WatchStep::kEvent);  // a chunk
  ASSERT_TRUE(event.has_chunk());

  const auto deleted = scheduler_->Delete(job->id());
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->state(), v1::JOB_STATE_SUCCEEDED);
  const Pulled rest = Pull(*scheduler_, job->id(), *cursor);
  ASSERT_TRUE(rest.ended);
  EXPECT_EQ(rest.end_status.code(), absl::StatusCode::kNotFound) << "not a silent OK";
  EXPECT_TRUE(rest.events.empty());
  EXPECT_EQ(store_->OpenVideo(row->video).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(StoredRow(job->id()).has_value());
}

// ---------------------------------------------------------------- request_id

TEST_F(SchedulerTest, SameRequestIdReturnsTheSameJob) {
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler_->WorkerHello(&worker, HelloFor("w1")).ok());
  v1::GenerateRequest request = Request("a cat");
  request.set_request_id("key-1");
  const auto first = scheduler_->Submit(request);
  ASSERT_TRUE(first.ok());
  v1::GenerateRequest retry = request;
  retry.set_prompt("a different prompt");  // the key identifies the job, not the request's content
  const auto again = scheduler_->Submit(retry);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), first->id());
  EXPECT_EQ(again->request().prompt(), "a cat");
  EXPECT_EQ(worker.assigns().size(), 1u) << "no second job";
  EXPECT_EQ(ListedIds(v1::ListJobsRequest()).size(), 1u);

  v1::GenerateRequest other = Request("a cat");
  other.set_request_id("key-2");
  const auto second = scheduler_->Submit(other);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->id(), first->id());

  RunToSuccess(*scheduler_, worker, first->id());
  const auto after_end = scheduler_->Submit(request);
  ASSERT_TRUE(after_end.ok());
  EXPECT_EQ(after_end->id(), first->id()) << "while the job is retained";
  EXPECT_EQ(after_end->state(), v1::JOB_STATE_SUCCEEDED);

  ASSERT_TRUE(scheduler_->Delete(first->id()).ok());
  const auto after_delete = scheduler_->Submit(request);
  ASSERT_TRUE(after_delete.ok());
  EXPECT_NE(after_delete->id(), first->id()) << "a deleted job frees its key";

  v1::GenerateRequest too_long = Request("a cat");
  too_long.set_request_id(std::string(129, 'k'));
  EXPECT_EQ(scheduler_->Submit(too_long).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace radial::server
