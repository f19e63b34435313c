// What the Scheduler's unit tests drive it with, without gRPC: a WorkerLink that records what the
// scheduler sends it (and whether it closed it), a Waiter that counts wake-ups, builders of worker
// messages, clocks the test moves by hand, a JobStore that forwards to a store the test keeps (so
// a second Scheduler can load what the first one wrote, as after a restart), and Pull, which reads
// everything a watcher can read now.
//
// Single-threaded: the scheduler calls the fakes from the test's own thread.
#ifndef RADIAL_TESTS_SERVER_SCHEDULER_FAKES_H_
#define RADIAL_TESTS_SERVER_SCHEDULER_FAKES_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "radial/v1/video_service.pb.h"
#include "radial/v1/worker_service.pb.h"
#include "scheduler/scheduler.h"
#include "store/job_store.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/tiny_model_info.h"

namespace radial::testing {

// The frames of a request that leaves them to TinyModelInfo's defaults.
inline constexpr uint32_t kTinyFrames = 17;

class FakeWorkerLink : public server::WorkerLink {
 public:
  void Send(const v1::SchedulerMessage& message) override { sent.push_back(message); }
  void Close(const absl::Status& status) override {
    ++closes;
    close_status = status;
  }

  std::vector<v1::Assign> assigns() const {
    std::vector<v1::Assign> result;
    for (const auto& message : sent) {
      if (message.has_assign()) result.push_back(message.assign());
    }
    return result;
  }
  std::vector<v1::CancelJob> cancels() const {
    std::vector<v1::CancelJob> result;
    for (const auto& message : sent) {
      if (message.has_cancel()) result.push_back(message.cancel());
    }
    return result;
  }
  std::vector<std::string> cancelled_ids() const {
    std::vector<std::string> ids;
    for (const v1::CancelJob& cancel : cancels()) ids.push_back(cancel.job_id());
    return ids;
  }
  std::vector<std::string> assigned_ids() const {
    std::vector<std::string> ids;
    for (const v1::Assign& assign : assigns()) ids.push_back(assign.job_id());
    return ids;
  }

  std::vector<v1::SchedulerMessage> sent;
  int closes = 0;
  absl::Status close_status;
};

class CountingWaiter : public server::Waiter {
 public:
  void Wake() override { ++wakes; }
  int wakes = 0;
};

// Wall and steady clocks in milliseconds that move only when the test says so. Shared with the
// scheduler's options (a copy of the shared_ptr lives in each clock function).
struct FakeClocks {
  int64_t wall_ms = 1'700'000'000'000;
  int64_t steady_ms = 5'000'000;

  void Advance(int64_t ms) {
    wall_ms += ms;
    steady_ms += ms;
  }
  static void Install(const std::shared_ptr<FakeClocks>& clocks, server::SchedulerOptions& options) {
    options.wall_ms = [clocks] { return clocks->wall_ms; };
    options.steady_ms = [clocks] { return clocks->steady_ms; };
  }
};

// Forwards every call to a store owned elsewhere, so the store outlives the Scheduler that owns
// this adapter.
class SharedJobStore : public server::JobStore {
 public:
  explicit SharedJobStore(std::shared_ptr<server::JobStore> store) : store_(std::move(store)) {}
  absl::Status Put(const server::StoredJob& row) override { return store_->Put(row); }
  absl::Status Delete(const std::string& job_id) override { return store_->Delete(job_id); }
  absl::StatusOr<std::vector<server::StoredJob>> LoadAll() override { return store_->LoadAll(); }
  absl::StatusOr<std::string> WriteVideo(const std::string& job_id, const std::string& bytes) override {
    return store_->WriteVideo(job_id, bytes);
  }
  absl::StatusOr<std::shared_ptr<const server::VideoReader>> OpenVideo(const std::string& name) override {
    return store_->OpenVideo(name);
  }
  absl::Status DeleteVideo(const std::string& name) override { return store_->DeleteVideo(name); }
  std::string Describe() const override { return store_->Describe(); }

 private:
  std::shared_ptr<server::JobStore> store_;
};

// Creates a scheduler; a failure is reported to the running test and gives nullptr.
inline std::unique_ptr<server::Scheduler> CreateScheduler(server::SchedulerOptions options,
                                                          std::unique_ptr<server::JobStore> store) {
  absl::StatusOr<std::unique_ptr<server::Scheduler>> scheduler =
      server::Scheduler::Create(std::move(options), std::move(store));
  if (!scheduler.ok()) {
    ADD_FAILURE() << "Scheduler::Create: " << scheduler.status();
    return nullptr;
  }
  return *std::move(scheduler);
}

inline v1::ModelInfo TinyModelNamed(const std::string& name) {
  v1::ModelInfo model = TinyModelInfo();
  model.set_name(name);
  return model;
}

inline v1::Hello HelloFor(const std::string& id, uint32_t capacity = 1,
                          const std::vector<v1::ModelInfo>& models = {TinyModelInfo()}) {
  v1::Hello hello;
  hello.set_worker_id(id);
  hello.set_capacity(capacity);
  hello.set_device("test");
  for (const v1::ModelInfo& model : models) *hello.add_models() = model;
  return hello;
}

inline v1::GenerateRequest Request(const std::string& prompt, int32_t priority = 0) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_priority(priority);
  return request;
}

inline v1::WorkerMessage ChunkMessage(const std::string& job_id, uint64_t offset, const std::string& data) {
  v1::WorkerMessage message;
  message.mutable_chunk()->set_job_id(job_id);
  message.mutable_chunk()->mutable_chunk()->set_offset(offset);
  message.mutable_chunk()->mutable_chunk()->set_data(data);
  return message;
}

inline v1::WorkerMessage ProgressMessage(const std::string& job_id, uint32_t step, uint32_t total) {
  v1::WorkerMessage message;
  message.mutable_progress()->set_job_id(job_id);
  message.mutable_progress()->mutable_progress()->set_stage(v1::STAGE_DENOISING);
  message.mutable_progress()->mutable_progress()->set_step(step);
  message.mutable_progress()->mutable_progress()->set_total(total);
  return message;
}

inline v1::WorkerMessage DoneMessage(const std::string& job_id, uint32_t frames = kTinyFrames) {
  v1::WorkerMessage message;
  message.mutable_done()->set_job_id(job_id);
  message.mutable_done()->mutable_stats()->set_frames(frames);
  message.mutable_done()->mutable_stats()->set_denoise_seconds(1.5);
  return message;
}

inline v1::WorkerMessage FailedMessage(const std::string& job_id, int code, const std::string& text) {
  v1::WorkerMessage message;
  message.mutable_failed()->set_job_id(job_id);
  message.mutable_failed()->mutable_error()->set_code(code);
  message.mutable_failed()->mutable_error()->set_message(text);
  return message;
}

inline v1::WorkerMessage HeartbeatMessage() {
  v1::WorkerMessage message;
  message.mutable_heartbeat()->set_unix_ms(1);
  return message;
}

inline v1::WorkerMessage DrainingMessage(uint32_t grace_seconds) {
  v1::WorkerMessage message;
  message.mutable_draining()->set_grace_seconds(grace_seconds);
  return message;
}

inline v1::WorkerMessage HandBackMessage(const std::string& job_id, const std::string& reason) {
  v1::WorkerMessage message;
  message.mutable_hand_back()->set_job_id(job_id);
  message.mutable_hand_back()->set_reason(reason);
  return message;
}

// Streams `video` for the job in chunks of `piece` bytes, as a worker's encoder would.
inline void SendVideo(server::Scheduler& scheduler, server::WorkerLink& link, const std::string& job_id,
                      const std::string& video, size_t piece = 7) {
  for (size_t offset = 0; offset < video.size(); offset += piece) {
    scheduler.WorkerMessage(&link, ChunkMessage(job_id, offset, video.substr(offset, piece)));
  }
}

// A worker's successful run: the whole video, then JobDone with the request's frames.
inline void RunToSuccess(server::Scheduler& scheduler, server::WorkerLink& link, const std::string& job_id,
                         const std::string& video = FakeFmp4(kTinyFrames)) {
  SendVideo(scheduler, link, job_id, video);
  scheduler.WorkerMessage(&link, DoneMessage(job_id));
}

// Everything a watcher can read now, and how its stream ended (if it did).
struct Pulled {
  std::vector<v1::JobEvent> events;
  std::string bytes;  // the video from the cursor's offset on (from 0 after a Restarted event)
  bool ended = false;
  absl::Status end_status;

  const v1::JobEvent* last() const { return events.empty() ? nullptr : &events.back(); }
  bool has_restarted() const {
    return std::any_of(events.begin(), events.end(), [](const v1::JobEvent& e) { return e.has_restarted(); });
  }
};

inline Pulled Pull(server::Scheduler& scheduler, const std::string& job_id, server::WatchCursor& cursor,
                   const std::shared_ptr<server::Waiter>& waiter = std::make_shared<CountingWaiter>()) {
  Pulled result;
  uint64_t start = cursor.offset;
  v1::JobEvent event;
  for (int i = 0; i < 100000; ++i) {
    const server::WatchStep step = scheduler.NextEvent(job_id, cursor, event, waiter);
    if (step.kind == server::WatchStep::kWait) return result;
    if (step.kind == server::WatchStep::kEnd) {
      result.ended = true;
      result.end_status = step.end_status;
      return result;
    }
    EXPECT_EQ(event.job_id(), job_id);
    if (event.has_restarted()) {
      result.bytes.clear();
      start = 0;
    }
    if (event.has_chunk()) {
      EXPECT_EQ(event.chunk().offset(), start + result.bytes.size()) << "chunks are contiguous";
      result.bytes += event.chunk().data();
    }
    result.events.push_back(event);
  }
  ADD_FAILURE() << "the watch of job " << job_id << " never waits nor ends";
  return result;
}

inline bool Contains(absl::string_view text, absl::string_view part) {
  return text.find(part) != absl::string_view::npos;
}

}  // namespace radial::testing

#endif  // RADIAL_TESTS_SERVER_SCHEDULER_FAKES_H_
