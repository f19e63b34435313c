#include "scheduler_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace radial::server {

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(const ServerOptions& options) {
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  server->scheduler_ = std::make_unique<Scheduler>(options.scheduler, std::make_unique<InMemoryJobStore>());
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
  return server;
}

SchedulerServer::~SchedulerServer() { Shutdown(0); }

void SchedulerServer::Shutdown(int grace_ms) {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
  }
}

}  // namespace radial::server
