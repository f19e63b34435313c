#include "rpc/scheduler_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"

namespace radial::server {
namespace {

constexpr char kVideoServiceName[] = "radial.v1.VideoService";
constexpr char kWorkerServiceName[] = "radial.v1.WorkerService";

bool IsLoopback(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status CheckReadable(const std::string& flag, const std::string& path) {
  if (!std::ifstream(path)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", common::Echo(path)));
  }
  return absl::OkStatus();
}

// TLS credentials whose files are watched (re-read every refresh_seconds), or insecure ones.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const TlsOptions& tls, bool require_client_cert) {
  if (tls.cert_file.empty()) return grpc::InsecureServerCredentials();
  RADIAL_RETURN_IF_ERROR(CheckReadable("--tls-cert", tls.cert_file));
  RADIAL_RETURN_IF_ERROR(CheckReadable("--tls-key", tls.key_file));
  if (require_client_cert) RADIAL_RETURN_IF_ERROR(CheckReadable("--worker-tls-ca", tls.worker_ca_file));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, require_client_cert ? tls.worker_ca_file : "", tls.refresh_seconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (require_client_cert) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::Status CheckSecurity(const ServerOptions& options) {
  const TlsOptions& tls = options.tls;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: got one without the other, expected both or neither");
  }
  if (!tls.worker_ca_file.empty() && tls.cert_file.empty()) {
    return absl::InvalidArgumentError("--worker-tls-ca: mutual TLS needs the server's own --tls-cert and --tls-key");
  }
  const bool tls_on = !tls.cert_file.empty();
  const bool clients_authenticated = !options.auth.tokens_file.empty();
  const bool workers_authenticated = !options.auth.worker_tokens_file.empty() || !tls.worker_ca_file.empty();
  if (options.worker_listen.empty() && (clients_authenticated || workers_authenticated || tls_on)) {
    return absl::InvalidArgumentError(
        "--worker-listen: missing, expected a separate listener for workers when TLS or tokens are configured");
  }
  if (options.insecure) return absl::OkStatus();
  if (!IsLoopback(options.listen) && !(tls_on && clients_authenticated)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen: got ", common::Echo(options.listen),
        ", which is not a loopback address, without TLS and a tokens file; expected --tls-cert/--tls-key and "
        "--tokens, a loopback address, or --insecure to serve unauthenticated anyway"));
  }
  if (!options.worker_listen.empty() && !IsLoopback(options.worker_listen) && !(tls_on && workers_authenticated)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--worker-listen: got ", common::Echo(options.worker_listen),
        ", which is not a loopback address, without TLS and a worker credential; expected --tls-cert/--tls-key "
        "and --worker-tls-ca or --worker-tokens, a loopback address, or --insecure"));
  }
  return absl::OkStatus();
}

void Configure(grpc::ServerBuilder& builder, const ServerOptions& options) {
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // Dead workers: ping idle streams, and allow the workers' own pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(const ServerOptions& options,
                                                                       std::unique_ptr<JobStore> store) {
  RADIAL_RETURN_IF_ERROR(CheckSecurity(options));
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  AuthOptions auth = options.auth;
  auth.worker_mtls = !options.tls.worker_ca_file.empty();
  RADIAL_ASSIGN_OR_RETURN(server->authenticator_, Authenticator::Create(auth));
  RADIAL_ASSIGN_OR_RETURN(auto client_credentials, Credentials(options.tls, false));
  RADIAL_ASSIGN_OR_RETURN(auto worker_credentials, Credentials(options.tls, auth.worker_mtls));
  SchedulerOptions scheduler_options = options.scheduler;
  if (!options.metrics_listen.empty()) {
    server->metrics_ = std::make_unique<SchedulerMetrics>(std::make_shared<prometheus::Registry>());
    RADIAL_ASSIGN_OR_RETURN(server->metrics_endpoint_,
                            common::MetricsEndpoint::Start(options.metrics_listen, server->metrics_->registry(),
                                                           "scheduler"));
    scheduler_options.observer = server->metrics_.get();
  }
  RADIAL_ASSIGN_OR_RETURN(server->scheduler_, Scheduler::Create(scheduler_options, std::move(store)));
  server->video_service_ =
      std::make_unique<VideoService>(*server->scheduler_, *server->authenticator_, server->metrics_.get());
  server->worker_service_ = std::make_unique<WorkerService>(*server->scheduler_, *server->authenticator_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, client_credentials, &server->port_);
  builder.RegisterService(server->video_service_.get());
  if (options.worker_listen.empty()) builder.RegisterService(server->worker_service_.get());
  Configure(builder, options);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: got ", common::Echo(options.listen),
                                               ", expected a host:port this process can bind"));
  }
  server->worker_port_ = server->port_;
  if (!options.worker_listen.empty()) {
    grpc::ServerBuilder worker_builder;
    worker_builder.AddListeningPort(options.worker_listen, worker_credentials, &server->worker_port_);
    worker_builder.RegisterService(server->worker_service_.get());
    Configure(worker_builder, options);
    server->worker_server_ = worker_builder.BuildAndStart();
    if (server->worker_server_ == nullptr || server->worker_port_ == 0) {
      server->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat("worker-listen: got ", common::Echo(options.worker_listen),
                                                 ", expected a host:port this process can bind"));
    }
  }
  if (!options.health_listen.empty()) {
    grpc::ServerBuilder health_builder;
    health_builder.AddListeningPort(options.health_listen, grpc::InsecureServerCredentials(), &server->health_port_);
    server->health_server_ = health_builder.BuildAndStart();
    if (server->health_server_ == nullptr || server->health_port_ == 0) {
      server->server_->Shutdown();
      if (server->worker_server_) server->worker_server_->Shutdown();
      return absl::UnavailableError(absl::StrCat("health-listen: got ", common::Echo(options.health_listen),
                                                 ", expected a host:port this process can bind"));
    }
  }
  if (!server->authenticator_->clients_authenticated()) {
    spdlog::warn("scheduler: clients are NOT authenticated (no --tokens){}",
                 IsLoopback(options.listen) ? "; serving on loopback only" : "; --insecure");
  }
  if (!server->authenticator_->workers_authenticated()) {
    spdlog::warn("scheduler: workers are NOT authenticated (no --worker-tls-ca or --worker-tokens)");
  }
  // "" is the process; VideoService serves only while a worker is connected (TickLoop keeps it so).
  for (grpc::Server* each : {server->server_.get(), server->health_server_.get()}) {
    if (each == nullptr || each->GetHealthCheckService() == nullptr) continue;
    each->GetHealthCheckService()->SetServingStatus("", true);
    each->GetHealthCheckService()->SetServingStatus(kWorkerServiceName, true);
    each->GetHealthCheckService()->SetServingStatus(kVideoServiceName, false);
  }
  server->ticker_ = std::thread([raw = server.get(), tick_ms = options.tick_ms] { raw->TickLoop(tick_ms); });
  return server;
}

SchedulerServer::~SchedulerServer() { Shutdown(0); }

void SchedulerServer::TickLoop(int tick_ms) {
  int serving = -1;
  std::unique_lock<std::mutex> lock(tick_mutex_);
  while (!stopping_) {
    lock.unlock();
    scheduler_->Tick();
    if (metrics_ != nullptr) metrics_->Update(scheduler_->Snapshot());
    const int now_serving = scheduler_->connected_workers() > 0 ? 1 : 0;
    if (now_serving != serving) {
      for (grpc::Server* each : {server_.get(), health_server_.get()}) {
        if (each != nullptr && each->GetHealthCheckService() != nullptr) {
          each->GetHealthCheckService()->SetServingStatus(kVideoServiceName, now_serving == 1);
        }
      }
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
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms);
  if (worker_server_ != nullptr) worker_server_->Shutdown(deadline);
  if (health_server_ != nullptr) {
    health_server_->GetHealthCheckService()->Shutdown();
    health_server_->Shutdown(deadline);
  }
  server_->Shutdown(deadline);
}

}  // namespace radial::server
