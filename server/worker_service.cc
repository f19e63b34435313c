#include "worker_service.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"

#include "video_service.h"

namespace radial::server {
namespace {

// Owns itself: deleted in OnDone, after the scheduler has forgotten it (WorkerGone), so the
// scheduler never sends to a deleted link.
class WorkerStream : public grpc::ServerBidiReactor<v1::WorkerMessage, v1::SchedulerMessage>, public WorkerLink {
 public:
  WorkerStream(Scheduler& scheduler, std::string peer) : scheduler_(scheduler), peer_(std::move(peer)) {
    StartRead(&incoming_);
  }

  // Called by the scheduler (under its lock): queue and write in order. The queue holds only
  // assignments and cancellations, a few per job.
  void Send(const v1::SchedulerMessage& message) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    outbox_.push_back(message);
    if (outbox_.size() == 1) StartWrite(&outbox_.front());
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Gone("stream closed");
      EndStream(grpc::Status::OK);
      return;
    }
    if (!registered_) {
      if (!incoming_.has_hello()) {
        EndStream(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               "message: got a first message without hello, expected hello"));
        return;
      }
      const absl::Status status = scheduler_.WorkerHello(this, incoming_.hello());
      if (!status.ok()) {
        EndStream(ToGrpcStatus(status));
        return;
      }
      registered_ = true;
    } else {
      scheduler_.WorkerMessage(this, incoming_);
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    outbox_.pop_front();
    if (!ok) {
      outbox_.clear();  // the stream is broken; the read side reports the worker gone
    } else if (!outbox_.empty()) {
      StartWrite(&outbox_.front());
      return;
    }
    if (finish_pending_) FinishLocked();
  }

  void OnCancel() override { Gone("stream cancelled"); }

  void OnDone() override {
    Gone("stream done");
    delete this;
  }

 private:
  void Gone(const std::string& reason) {
    if (!registered_) return;
    registered_ = false;
    scheduler_.WorkerGone(this, absl::StrCat(reason, " from ", peer_));
  }

  // Ends the stream once any write in flight is done.
  void EndStream(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = status;
    if (outbox_.empty()) {
      FinishLocked();
    } else {
      finish_pending_ = true;
    }
  }

  void FinishLocked() {
    if (finished_) return;
    finished_ = true;
    Finish(status_);
  }

  Scheduler& scheduler_;
  const std::string peer_;
  v1::WorkerMessage incoming_;  // reads are sequential: one in flight at a time
  std::atomic<bool> registered_{false};
  std::mutex mutex_;
  std::deque<v1::SchedulerMessage> outbox_;  // front is being written
  bool finish_pending_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

}  // namespace

grpc::ServerBidiReactor<v1::WorkerMessage, v1::SchedulerMessage>* WorkerService::Connect(
    grpc::CallbackServerContext* context) {
  return new WorkerStream(scheduler_, context->peer());
}

}  // namespace radial::server
