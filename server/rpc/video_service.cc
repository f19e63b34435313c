#include "rpc/video_service.h"

#include <memory>
#include <mutex>

#include "rpc/raw_message.h"
#include "rpc/status_convert.h"

namespace radial::server {
namespace {

// Streams one job's events to one client. Owns itself: deleted in OnDone. The scheduler holds only
// a weak reference to `wake_` (a small Waiter that points back here until OnDone detaches it).
class EventWriter : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // A stream that ends at once with `status` (e.g. a rejected request).
  // Through FinishOnce: a client's cancel arriving after this (OnCancel) must not finish it again
  // (gRPC aborts the process on a second Finish).
  explicit EventWriter(const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    FinishOnce(status);
  }

  EventWriter(Scheduler& scheduler, std::string job_id, WatchCursor cursor)
      : scheduler_(&scheduler),
        job_id_(std::move(job_id)),
        cursor_(std::move(cursor)),
        wake_(std::make_shared<WakeHandle>(this)) {
    std::lock_guard<std::mutex> lock(mutex_);
    Pump();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    writing_ = false;
    if (!ok) {  // the client went away
      FinishOnce(absl::CancelledError("stream closed by the client"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!writing_) FinishOnce(absl::CancelledError("stream cancelled by the client"));
  }

  void OnDone() override {
    if (wake_) wake_->Detach();
    if (scheduler_ != nullptr) scheduler_->EndWatch(job_id_);
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
    const WatchStep step = scheduler_->NextEvent(job_id_, cursor_, event_, wake_);
    switch (step.kind) {
      case WatchStep::kEvent:
        writing_ = true;
        bytes_ = SerializeMessage(event_);
        StartWrite(&bytes_);
        break;
      case WatchStep::kWait:
        break;  // wake_ is registered with the job
      case WatchStep::kEnd:
        FinishOnce(step.end_status);
        break;
    }
  }

  void FinishOnce(const absl::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }

  Scheduler* scheduler_ = nullptr;
  const std::string job_id_;
  std::mutex mutex_;
  WatchCursor cursor_;
  v1::JobEvent event_;
  grpc::ByteBuffer bytes_;  // the event being written; untouched while writing_
  bool writing_ = false;
  bool finished_ = false;
  std::shared_ptr<WakeHandle> wake_;
};

}  // namespace

// Authenticates, parses the request, runs `call` on it and answers with its result.
template <typename Request, typename Call>
VideoService::Unary* VideoService::Answer(Context* context, const Bytes* raw, Bytes* response, Call&& call) {
  auto* reactor = context->DefaultReactor();
  const absl::StatusOr<Caller> caller = authenticator_.AuthenticateClient(*context);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  Request request;
  if (absl::Status parsed = ParseMessage(*raw, request); !parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed));
    return reactor;
  }
  const auto result = call(request, *caller);
  if (result.ok()) *response = SerializeMessage(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

VideoService::Writer* VideoService::Follow(const std::string& job_id, const absl::StatusOr<WatchCursor>& cursor) {
  if (!cursor.ok()) return new EventWriter(cursor.status());
  return new EventWriter(scheduler_, job_id, *cursor);
}

// Submit and Generate: the rejected ones are counted by reason.
absl::StatusOr<v1::Job> VideoService::Submit(const v1::GenerateRequest& request, const absl::StatusOr<Caller>& caller,
                                             bool watching) {
  absl::StatusOr<v1::Job> job = caller.ok() ? scheduler_.Submit(request, *caller, watching) : caller.status();
  if (!job.ok() && metrics_ != nullptr) metrics_->Rejected(job.status());
  return job;
}

VideoService::Writer* VideoService::Generate(Context* context, const Bytes* raw) {
  const absl::StatusOr<Caller> caller = authenticator_.AuthenticateClient(*context);
  v1::GenerateRequest request;
  if (caller.ok()) {
    if (absl::Status parsed = ParseMessage(*raw, request); !parsed.ok()) return new EventWriter(parsed);
  }
  const absl::StatusOr<v1::Job> job = Submit(request, caller, /*watching=*/true);
  if (!job.ok()) return new EventWriter(job.status());
  return new EventWriter(scheduler_, job->id(), WatchCursor{});  // a watcher since Submit (EndWatch in OnDone)
}

VideoService::Unary* VideoService::Submit(Context* context, const Bytes* raw, Bytes* response) {
  auto* reactor = context->DefaultReactor();
  const absl::StatusOr<Caller> caller = authenticator_.AuthenticateClient(*context);
  v1::GenerateRequest request;
  if (caller.ok()) {
    if (absl::Status parsed = ParseMessage(*raw, request); !parsed.ok()) {
      reactor->Finish(ToGrpcStatus(parsed));
      return reactor;
    }
  }
  const absl::StatusOr<v1::Job> job = Submit(request, caller);
  if (job.ok()) *response = SerializeMessage(*job);
  reactor->Finish(ToGrpcStatus(job.status()));
  return reactor;
}

VideoService::Writer* VideoService::Watch(Context* context, const Bytes* raw) {
  const absl::StatusOr<Caller> caller = authenticator_.AuthenticateClient(*context);
  if (!caller.ok()) return new EventWriter(caller.status());
  v1::WatchRequest request;
  if (absl::Status parsed = ParseMessage(*raw, request); !parsed.ok()) return new EventWriter(parsed);
  return Follow(request.job_id(),
                scheduler_.StartWatch(request.job_id(), request.from_byte_offset(), request.attempt(), *caller));
}

VideoService::Unary* VideoService::GetJob(Context* context, const Bytes* request, Bytes* response) {
  return Answer<v1::GetJobRequest>(context, request, response,
                                   [&](const v1::GetJobRequest& r, const Caller& c) { return scheduler_.GetJob(r.job_id(), c); });
}

VideoService::Unary* VideoService::CancelJob(Context* context, const Bytes* request, Bytes* response) {
  return Answer<v1::CancelJobRequest>(context, request, response,
                                      [&](const v1::CancelJobRequest& r, const Caller& c) { return scheduler_.Cancel(r.job_id(), c); });
}

VideoService::Unary* VideoService::ListModels(Context* context, const Bytes* request, Bytes* response) {
  return Answer<v1::ListModelsRequest>(context, request, response, [&](const v1::ListModelsRequest&, const Caller&) {
    return absl::StatusOr<v1::ListModelsResponse>(scheduler_.ListModels());
  });
}

VideoService::Unary* VideoService::ListJobs(Context* context, const Bytes* request, Bytes* response) {
  return Answer<v1::ListJobsRequest>(context, request, response,
                                     [&](const v1::ListJobsRequest& r, const Caller& c) { return scheduler_.ListJobs(r, c); });
}

VideoService::Unary* VideoService::DeleteJob(Context* context, const Bytes* request, Bytes* response) {
  return Answer<v1::DeleteJobRequest>(context, request, response,
                                      [&](const v1::DeleteJobRequest& r, const Caller& c) { return scheduler_.Delete(r.job_id(), c); });
}

}  // namespace radial::server
