// The scheduler process's gRPC server: VideoService and WorkerService over one Scheduler, plus
// gRPC health checking and reflection. Used by the radial-scheduler binary and, in process, by tests.
#ifndef RADIAL_SERVER_SCHEDULER_SERVER_H_
#define RADIAL_SERVER_SCHEDULER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "scheduler.h"
#include "video_service.h"
#include "worker_service.h"

namespace radial::server {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";  // host:port; port 0 picks a free one
  SchedulerOptions scheduler;
  int keepalive_ms = 10000;  // pings on idle worker streams; a peer silent this long again is dead
  int max_message_bytes = 8 << 20;
};

class SchedulerServer {
 public:
  // Builds and starts the server. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(const ServerOptions& options);
  ~SchedulerServer();

  int port() const { return port_; }
  Scheduler& scheduler() { return *scheduler_; }
  // Stops accepting calls and ends open streams (deadline: `grace_ms`).
  void Shutdown(int grace_ms = 2000);
  void Wait() { server_->Wait(); }

 private:
  SchedulerServer() = default;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<VideoService> video_service_;
  std::unique_ptr<WorkerService> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_SERVER_H_
