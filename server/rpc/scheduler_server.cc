#include "rpc/scheduler_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "radial/common/status_macros.h"

namespace radial::server {
namespace {

constexpr char kVideoServiceName[] = "radial.v1.VideoService";
constexpr char kWorkerServiceName[] = "radial.v1.WorkerService";

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(const ServerOptions& options,
                                                                       std::unique_ptr<JobStore> store) {
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  RADIAL_ASSIGN_OR_RETURN(server->scheduler_, Scheduler::Create(options.scheduler, std::move(store)));
  server->video_service_ = std::make_unique<VideoService>(*server->scheduler_);
  server->worker_service_ = std::make_unique<WorkerService>(*server->scheduler_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->video_service_.get());
  builder.RegisterService(server->worker_service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // Dead workers: ping idle streams, and allow the workers' own pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: got '", options.listen,
                                               "', expected a host:port this process can bind"));
  }
  // "" is the process; VideoService serves only while a worker is connected (TickLoop keeps it so).
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kWorkerServiceName, true);
  health->SetServingStatus(kVideoServiceName, false);
  server->ticker_ = std::thread([raw = server.get(), tick_ms = options.tick_ms] { raw->TickLoop(tick_ms); });
  return server;
}

SchedulerServer::~SchedulerServer() { Shutdown(0); }

void SchedulerServer::TickLoop(int tick_ms) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  int serving = -1;
  std::unique_lock<std::mutex> lock(tick_mutex_);
  while (!stopping_) {
    lock.unlock();
    scheduler_->Tick();
    const int now_serving = scheduler_->connected_workers() > 0 ? 1 : 0;
    if (now_serving != serving) {
      health->SetServingStatus(kVideoServiceName, now_serving == 1);
      serving = now_serving;
    }
    lock.lock();
    tick_wake_.wait_for(lock, std::chrono::milliseconds(tick_ms), [this] { return stopping_; });
  }
}

void SchedulerServer::Shutdown(int grace_ms) {
  {
    std::lock_guard<std::mutex> lock(tick_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  tick_wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  if (server_ == nullptr) return;
  scheduler_->BeginShutdown();
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
}

}  // namespace radial::server
