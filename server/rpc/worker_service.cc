#include "rpc/worker_service.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "rpc/raw_message.h"
#include "rpc/status_convert.h"

namespace radial::server {
namespace {

// Owns itself: deleted in OnDone, after the scheduler has forgotten it (WorkerGone, or its own
// Close), so the scheduler never sends to a deleted link. Lock order: the scheduler's lock, then
// mutex_; nothing here calls the scheduler while holding mutex_.
class WorkerStream : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>, public WorkerLink {
 public:
  WorkerStream(Scheduler& scheduler, std::string peer, const absl::Status& authenticated)
      : scheduler_(scheduler), peer_(std::move(peer)) {
    if (!authenticated.ok()) {
      spdlog::warn("worker stream from {} refused: {}", peer_, authenticated.ToString());
      EndStream(ToGrpcStatus(authenticated));
      return;
    }
    StartRead(&incoming_);
  }

  // Called by the scheduler (under its lock): queue and write in order. The queue holds only
  // assignments and cancellations, a few per job.
  void Send(const v1::SchedulerMessage& message) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_ || finish_pending_) return;
    outbox_.push_back(SerializeMessage(message));
    if (outbox_.size() == 1) StartWrite(&outbox_.front());
  }

  // Called by the scheduler (under its lock) after it forgot this worker.
  void Close(const absl::Status& status) override {
    registered_ = false;
    EndStream(ToGrpcStatus(status));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Gone("stream closed");
      EndStream(grpc::Status::OK);
      return;
    }
    v1::WorkerMessage message;
    if (absl::Status parsed = ParseMessage(incoming_, message); !parsed.ok()) {
      Gone("sent a message that does not decode");
      EndStream(ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("worker message: ", parsed.message()))));
      return;
    }
    if (!registered_ && !hello_seen_) {
      hello_seen_ = true;
      if (!message.has_hello()) {
        EndStream(ToGrpcStatus(absl::InvalidArgumentError(
            "worker message: got a first message without hello, expected hello")));
        return;
      }
      // registered_ before the scheduler can Close this link from another thread.
      registered_ = true;
      if (const absl::Status status = scheduler_.WorkerHello(this, message.hello()); !status.ok()) {
        registered_ = false;
        spdlog::warn("worker at {} refused: {}", peer_, status.ToString());
        EndStream(ToGrpcStatus(status));
        return;
      }
    } else if (registered_) {
      scheduler_.WorkerMessage(this, message);
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
    if (!registered_.exchange(false)) return;
    scheduler_.WorkerGone(this, absl::StrCat(reason, " from ", peer_));
  }

  // Ends the stream once any write in flight is done.
  void EndStream(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_ || finish_pending_) return;
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
  grpc::ByteBuffer incoming_;  // reads are sequential: one in flight at a time
  bool hello_seen_ = false;    // touched only by the read side
  std::atomic<bool> registered_{false};
  std::mutex mutex_;
  std::deque<grpc::ByteBuffer> outbox_;  // front is being written
  bool finish_pending_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* WorkerService::Connect(
    grpc::CallbackServerContext* context) {
  return new WorkerStream(scheduler_, context->peer(), authenticator_.AuthenticateWorker(*context));
}

}  // namespace radial::server
