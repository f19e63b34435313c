// A connected worker as the scheduler sees it, and a watcher waiting for news. Both are implemented
// by the gRPC streams in rpc/ (and by fakes in tests).
#ifndef RADIAL_SERVER_SCHEDULER_WORKER_LINK_H_
#define RADIAL_SERVER_SCHEDULER_WORKER_LINK_H_

#include "absl/status/status.h"
#include "radial/v1/worker_service.pb.h"

namespace radial::server {

// Called by the scheduler under its lock: neither method may block or call back into the
// Scheduler. The link stays valid until the Scheduler has been told WorkerGone for it.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  // Queues a message for the worker.
  virtual void Send(const v1::SchedulerMessage& message) = 0;
  // Ends the worker's stream with `status` (e.g. it stopped heartbeating). The scheduler has
  // already forgotten the worker when it calls this; a later WorkerGone for it is a no-op.
  virtual void Close(const absl::Status& status) = 0;
};

// Woken (once per registration, from any thread, without the scheduler's lock) when a job it waits
// on changes. Registered as a weak reference: a watcher that went away is simply skipped.
class Waiter {
 public:
  virtual ~Waiter() = default;
  virtual void Wake() = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_WORKER_LINK_H_
