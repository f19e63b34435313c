// The scheduler process's gRPC server: VideoService and WorkerService over one Scheduler, plus
// gRPC health checking and reflection, and the ticker that drives the scheduler's clock (heartbeat
// timeouts, deadlines, retention). Used by radial-scheduler, radial-standalone and, in process, by
// tests.
#ifndef RADIAL_SERVER_RPC_SCHEDULER_SERVER_H_
#define RADIAL_SERVER_RPC_SCHEDULER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "rpc/video_service.h"
#include "rpc/worker_service.h"
#include "scheduler/scheduler.h"
#include "store/job_store.h"

namespace radial::server {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";  // host:port; port 0 picks a free one
  SchedulerOptions scheduler;
  int keepalive_ms = 10000;  // pings on idle worker streams; a peer silent this long again is dead
  int max_message_bytes = 8 << 20;
  int tick_ms = 200;  // how often the scheduler checks heartbeats, deadlines and retention
};

class SchedulerServer {
 public:
  // Loads the store into a Scheduler, then builds and starts the server. UNAVAILABLE when the
  // address cannot be bound; the store's error when it cannot be read.
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(const ServerOptions& options,
                                                                std::unique_ptr<JobStore> store);
  ~SchedulerServer();

  int port() const { return port_; }
  Scheduler& scheduler() { return *scheduler_; }
  // Stops accepting work, ends every stream (watchers get UNAVAILABLE "restarting", workers'
  // streams close; their jobs stay in the store to run again), waits up to `grace_ms` for calls.
  void Shutdown(int grace_ms = 2000);
  void Wait() { server_->Wait(); }

 private:
  SchedulerServer() = default;
  void TickLoop(int tick_ms);

  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<VideoService> video_service_;
  std::unique_ptr<WorkerService> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex tick_mutex_;
  std::condition_variable tick_wake_;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_SCHEDULER_SERVER_H_
