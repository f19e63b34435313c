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
#include "metrics/scheduler_metrics.h"
#include "radial/common/metrics.h"
#include "rpc/auth.h"
#include "rpc/video_service.h"
#include "rpc/worker_service.h"
#include "scheduler/scheduler.h"
#include "store/job_store.h"

namespace radial::server {

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain of both listeners; empty: no TLS
  std::string key_file;        // its private key
  std::string worker_ca_file;  // PEM CA that must have signed workers' client certificates (mTLS)
  int refresh_seconds = 5;     // certificate files are re-read this often (rotation without restart)
};

struct ServerOptions {
  // Clients: VideoService, health, reflection. host:port; port 0 picks a free one.
  std::string listen = "127.0.0.1:50051";
  // Workers: WorkerService. Empty: served on `listen` too, which only an unauthenticated loopback
  // scheduler may do (a NetworkPolicy can then not tell the two apart).
  std::string worker_listen;
  // /metrics (Prometheus text format) on its own port; empty: none.
  std::string metrics_listen;
  // Plaintext grpc.health.v1 only (for kubelet probes, which cannot speak TLS); empty: none.
  std::string health_listen;
  TlsOptions tls;
  AuthOptions auth;
  // Serve without TLS and authentication on an address other than loopback.
  bool insecure = false;
  SchedulerOptions scheduler;
  int keepalive_ms = 10000;  // pings on idle worker streams; a peer silent this long again is dead
  int max_message_bytes = 8 << 20;
  int tick_ms = 200;  // how often the scheduler checks heartbeats, deadlines and retention
};

class SchedulerServer {
 public:
  // Loads the store into a Scheduler, then builds and starts the servers. UNAVAILABLE when an
  // address cannot be bound; INVALID_ARGUMENT for unsafe or inconsistent security settings (a
  // non-loopback address without TLS and tokens and without `insecure`), the tokens files' errors,
  // the store's error when it cannot be read.
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(const ServerOptions& options,
                                                                std::unique_ptr<JobStore> store);
  ~SchedulerServer();

  int port() const { return port_; }
  // The worker listener's port (port() when workers share the client listener).
  int worker_port() const { return worker_port_; }
  int health_port() const { return health_port_; }
  int metrics_port() const { return metrics_endpoint_ ? metrics_endpoint_->port() : 0; }
  // Re-reads the tokens files (SIGHUP); open streams are not touched. On error the old tokens stay.
  absl::Status Reload() { return authenticator_->Reload(); }
  Scheduler& scheduler() { return *scheduler_; }
  // Stops accepting work, ends every stream (watchers get UNAVAILABLE "restarting", workers'
  // streams close; their jobs stay in the store to run again), waits up to `grace_ms` for calls.
  void Shutdown(int grace_ms = 2000);


 private:
  SchedulerServer() = default;
  void TickLoop(int tick_ms);

  // Before scheduler_: the scheduler reports to metrics_, which must outlive it.
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<common::MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<VideoService> video_service_;
  std::unique_ptr<WorkerService> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> worker_server_;  // null when workers share server_
  std::unique_ptr<grpc::Server> health_server_;  // --health-listen
  int port_ = 0;
  int worker_port_ = 0;
  int health_port_ = 0;
  std::mutex tick_mutex_;
  std::condition_variable tick_wake_;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_SCHEDULER_SERVER_H_
