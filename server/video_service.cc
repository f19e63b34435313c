#include "video_service.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

namespace radial::server {
namespace {

// Streams one job's events to one client. Owns itself: deleted in OnDone. The scheduler holds only
// a weak reference to `wake_` (a small Waiter that points back here until OnDone detaches it).
class EventWriter : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  // A stream that ends at once with `status` (e.g. a rejected request).
  EventWriter(Scheduler& scheduler, const grpc::Status& status) : scheduler_(scheduler) { Finish(status); }

  EventWriter(Scheduler& scheduler, std::string job_id, WatchCursor cursor)
      : scheduler_(scheduler), job_id_(std::move(job_id)), cursor_(cursor), wake_(std::make_shared<WakeHandle>(this)) {
    std::lock_guard<std::mutex> lock(mutex_);
    Pump();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    writing_ = false;
    if (!ok) {  // the client went away
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the client"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!writing_) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled by the client"));
  }

  void OnDone() override {
    if (wake_) wake_->Detach();
    delete this;
  }

 private:
  class WakeHandle : public Waiter {
   public:
    explicit WakeHandle(EventWriter* writer) : writer_(writer) {}
    void Wake() override {
      std::lock_guard<std::mutex> lock(mutex_);
      if (writer_ != nullptr) writer_->OnNews();
    }
    void Detach() {
      std::lock_guard<std::mutex> lock(mutex_);
      writer_ = nullptr;
    }

   private:
    std::mutex mutex_;
    EventWriter* writer_;
  };

  void OnNews() {
    std::lock_guard<std::mutex> lock(mutex_);
    Pump();
  }

  // Under mutex_: writes the next event if none is in flight.
  void Pump() {
    if (writing_ || finished_) return;
    switch (scheduler_.NextEvent(job_id_, cursor_, event_, wake_)) {
      case WatchPoll::kEvent:
        writing_ = true;
        StartWrite(&event_);
        break;
      case WatchPoll::kWait:
        break;  // wake_ is registered with the job
      case WatchPoll::kEnd:
        FinishOnce(grpc::Status::OK);
        break;
    }
  }

  void FinishOnce(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  Scheduler& scheduler_;
  const std::string job_id_;
  std::mutex mutex_;
  WatchCursor cursor_;
  v1::JobEvent event_;  // the event being written; untouched while writing_
  bool writing_ = false;
  bool finished_ = false;
  std::shared_ptr<WakeHandle> wake_;
};

template <typename Response>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::StatusOr<Response>& result,
                                Response* response) {
  auto* reactor = context->DefaultReactor();
  if (result.ok()) *response = *result;
  reactor->Finish(result.ok() ? grpc::Status::OK : ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerWriteReactor<v1::JobEvent>* VideoService::Generate(grpc::CallbackServerContext*,
                                                               const v1::GenerateRequest* request) {
  const auto job = scheduler_.Submit(*request);
  if (!job.ok()) return new EventWriter(scheduler_, ToGrpcStatus(job.status()));
  auto cursor = scheduler_.StartWatch(job->id(), 0);
  if (!cursor.ok()) return new EventWriter(scheduler_, ToGrpcStatus(cursor.status()));
  return new EventWriter(scheduler_, job->id(), *cursor);
}

grpc::ServerUnaryReactor* VideoService::Submit(grpc::CallbackServerContext* context,
                                               const v1::GenerateRequest* request, v1::Job* response) {
  return Reply(context, scheduler_.Submit(*request), response);
}

grpc::ServerWriteReactor<v1::JobEvent>* VideoService::Watch(grpc::CallbackServerContext*,
                                                            const v1::WatchRequest* request) {
  auto cursor = scheduler_.StartWatch(request->job_id(), request->from_byte_offset());
  if (!cursor.ok()) return new EventWriter(scheduler_, ToGrpcStatus(cursor.status()));
  return new EventWriter(scheduler_, request->job_id(), *cursor);
}

grpc::ServerUnaryReactor* VideoService::GetJob(grpc::CallbackServerContext* context,
                                               const v1::GetJobRequest* request, v1::Job* response) {
  return Reply(context, scheduler_.GetJob(request->job_id()), response);
}

grpc::ServerUnaryReactor* VideoService::CancelJob(grpc::CallbackServerContext* context,
                                                  const v1::CancelJobRequest* request, v1::Job* response) {
  return Reply(context, scheduler_.Cancel(request->job_id()), response);
}

grpc::ServerUnaryReactor* VideoService::ListModels(grpc::CallbackServerContext* context,
                                                   const v1::ListModelsRequest*, v1::ListModelsResponse* response) {
  return Reply(context, absl::StatusOr<v1::ListModelsResponse>(scheduler_.ListModels()), response);
}

}  // namespace radial::server
