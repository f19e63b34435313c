#include "server_flags.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "store/sqlite_job_store.h"

namespace radial::server {
namespace {

volatile std::sig_atomic_t stop_requested = 0;
volatile std::sig_atomic_t reload_requested = 0;

absl::Status LoadTenantLimits(const std::string& path, TenancyOptions& tenancy) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("--tenant-limits: cannot read ", common::Echo(path)));
  std::string line;
  int number = 0;
  while (std::getline(file, line)) {
    ++number;
    if (const size_t comment = line.find('#'); comment != std::string::npos) line.resize(comment);
    std::istringstream fields(line);
    std::string tenant, extra;
    int64_t queued = -1, running = -1, per_minute = -1;
    if (!(fields >> tenant)) continue;
    if (!(fields >> queued >> running >> per_minute) || (fields >> extra) || queued < 0 || running < 0 ||
        per_minute < 0 || queued > 1000000 || running > 1000000 || per_minute > 1000000) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": expected '<tenant> <max queued> <max running> <submits per minute>' with integers in "
          "[0, 1000000] (0: no limit)"));
    }
    tenancy.tenants[tenant] = TenantLimits{static_cast<uint32_t>(queued), static_cast<uint32_t>(running),
                                           static_cast<uint32_t>(per_minute)};
  }
  return absl::OkStatus();
}

common::FlagHandler Seconds(int64_t min, int64_t max, int64_t* target_ms) {
  return common::IntegerFlag(min, max, [target_ms](int64_t v) { *target_ms = v * 1000; });
}

}  // namespace

const char kServerFlagsUsage[] =
    "  --listen HOST:PORT     address for clients (default 127.0.0.1:50051; env RADIAL_LISTEN)\n"
    "  --worker-listen HOST:PORT  address for workers (default: the client address, loopback only)\n"
    "  --metrics-listen HOST:PORT  /metrics in the Prometheus text format (default: none)\n"
    "  --health-listen HOST:PORT  plaintext grpc.health.v1 only, for kubelet probes (default: none)\n"
    "  --tls-cert FILE --tls-key FILE  TLS on both listeners (PEM; re-read every 5 s when they change)\n"
    "  --worker-tls-ca FILE   workers must present a certificate signed by this CA (mutual TLS)\n"
    "  --tokens FILE          client tokens: '<sha256 of token> <tenant> <user|admin>' per line\n"
    "  --worker-tokens FILE   worker tokens: '<sha256 of token> <worker name> worker' per line\n"
    "                         (SIGHUP re-reads both token files)\n"
    "  --insecure true|false  allow a non-loopback address without TLS and tokens (default false)\n"
    "  --tenant-limits FILE   '<tenant> <max queued> <max running> <submits per minute>' per line\n"
    "  --tenant-max-queued N --tenant-max-running N --tenant-submits-per-minute N\n"
    "                         limits of tenants the file does not name (default 0: none)\n"
    "  --data-dir DIR         job database (SQLite, WAL) and finished videos (env RADIAL_DATA_DIR)\n"
    "  --sqlite-synchronous full|normal  full (default): an acknowledged job survives power loss;\n"
    "                         normal: survives a process crash, faster\n"
    "  --queue-capacity N     queued jobs before Submit answers RESOURCE_EXHAUSTED (default 256)\n"
    "  --retain-jobs N        ended jobs kept with their video (default 10000)\n"
    "  --retain-hours H       ended jobs kept this long after they end (default 168)\n"
    "  --retain-bytes B       stored video bytes kept (default 53687091200, 50 GiB)\n"
    "  --max-attempts N       runs of a job whose worker is lost, in all (default 2)\n"
    "  --default-model NAME   model used when a request names none (default: first announced)\n"
    "  --worker-timeout S     a worker silent this long (no heartbeat) is gone (default 30)\n"
    "  --queue-timeout S      default limit on a job's time queued (default 86400)\n"
    "  --run-timeout S        default limit on a job's time running (default 21600)\n"
    "  --model-ttl S          a model no worker serves stays listed this long (default 300)\n"
    "  --port-file FILE       write the bound client port to FILE once listening (useful with port 0)\n"
    "  --worker-port-file FILE  the same for the worker port\n"
    "  --log-format text|json  one JSON object per line with json (default text)\n"
    "  RADIAL_LOG_LEVEL       trace, debug, info (default), warn, error, critical, off\n";

void AddServerFlags(ServerConfig& config, std::map<std::string, common::FlagHandler>& flags) {
  if (const char* listen = std::getenv("RADIAL_LISTEN")) config.server.listen = listen;
  if (const char* dir = std::getenv("RADIAL_DATA_DIR")) config.data_dir = dir;
  SchedulerOptions& s = config.server.scheduler;
  using common::IntegerFlag;
  flags["--listen"] = common::StringFlag(&config.server.listen);
  flags["--worker-listen"] = common::StringFlag(&config.server.worker_listen);
  flags["--health-listen"] = common::StringFlag(&config.server.health_listen);
  flags["--metrics-listen"] = common::StringFlag(&config.server.metrics_listen);
  flags["--log-format"] = common::StringFlag(&config.log_format);
  flags["--tls-cert"] = common::StringFlag(&config.server.tls.cert_file);
  flags["--tls-key"] = common::StringFlag(&config.server.tls.key_file);
  flags["--worker-tls-ca"] = common::StringFlag(&config.server.tls.worker_ca_file);
  flags["--tokens"] = common::StringFlag(&config.server.auth.tokens_file);
  flags["--worker-tokens"] = common::StringFlag(&config.server.auth.worker_tokens_file);
  flags["--tenant-limits"] = common::StringFlag(&config.tenant_limits_file);
  flags["--insecure"] = [&config](const std::string& value) -> std::string {
    if (value != "true" && value != "false") return "got " + common::Echo(value) + ", expected true or false";
    config.server.insecure = value == "true";
    return "";
  };
  TenantLimits& tenant = s.tenancy.defaults;
  flags["--tenant-max-queued"] = IntegerFlag(0, 1000000, [&tenant](int64_t v) { tenant.max_queued = v; });
  flags["--tenant-max-running"] = IntegerFlag(0, 1000000, [&tenant](int64_t v) { tenant.max_running = v; });
  flags["--tenant-submits-per-minute"] =
      IntegerFlag(0, 1000000, [&tenant](int64_t v) { tenant.submits_per_minute = v; });
  flags["--data-dir"] = common::StringFlag(&config.data_dir);
  flags["--port-file"] = common::StringFlag(&config.port_file);
  flags["--worker-port-file"] = common::StringFlag(&config.worker_port_file);
  flags["--default-model"] = common::StringFlag(&s.default_model);
  flags["--sqlite-synchronous"] = [&config](const std::string& value) -> std::string {
    if (value != "full" && value != "normal") return "got " + common::Echo(value) + ", expected full or normal";
    config.sqlite_synchronous_full = value == "full";
    return "";
  };
  flags["--queue-capacity"] = IntegerFlag(1, 1 << 20, [&s](int64_t v) { s.queue_capacity = v; });
  flags["--retain-jobs"] = IntegerFlag(1, 100000000, [&s](int64_t v) { s.retention.max_jobs = v; });
  flags["--retain-hours"] = IntegerFlag(0, 24 * 3650, [&s](int64_t v) { s.retention.max_age_ms = v * 3600 * 1000; });
  flags["--retain-bytes"] = IntegerFlag(0, int64_t{1} << 50, [&s](int64_t v) { s.retention.max_bytes = v; });
  flags["--max-attempts"] = IntegerFlag(1, 100, [&s](int64_t v) { s.max_attempts = v; });
  flags["--worker-timeout"] = Seconds(1, 3600, &s.worker_timeout_ms);
  flags["--model-ttl"] = Seconds(0, 7 * 24 * 3600, &s.model_ttl_ms);
  flags["--queue-timeout"] = IntegerFlag(1, kMaxTimeoutSeconds,
                                         [&s](int64_t v) { s.request_defaults.queue_timeout_seconds = v; });
  flags["--run-timeout"] = IntegerFlag(1, kMaxTimeoutSeconds,
                                       [&s](int64_t v) { s.request_defaults.run_timeout_seconds = v; });
}

absl::Status FinishConfig(ServerConfig& config) {
  if (!config.tenant_limits_file.empty()) {
    RADIAL_RETURN_IF_ERROR(LoadTenantLimits(config.tenant_limits_file, config.server.scheduler.tenancy));
  }
  return absl::OkStatus();
}

std::string DescribeConfig(const ServerConfig& config) {
  const SchedulerOptions& s = config.server.scheduler;
  const ServerOptions& o = config.server;
  return absl::StrCat("listen ", o.listen, ", worker listen ", o.worker_listen.empty() ? "(the client listener)" : o.worker_listen,
                      ", tls ", o.tls.cert_file.empty() ? "off" : (o.tls.worker_ca_file.empty() ? "on" : "on, mutual for workers"),
                      ", client tokens ", o.auth.tokens_file.empty() ? "none" : o.auth.tokens_file,
                      ", worker tokens ", o.auth.worker_tokens_file.empty() ? "none" : o.auth.worker_tokens_file,
                      ", tenants with their own limits ", s.tenancy.tenants.size(), ", data dir ", config.data_dir, " (synchronous ",
                      config.sqlite_synchronous_full ? "full" : "normal", "), queue capacity ", s.queue_capacity,
                      ", retain ", s.retention.max_jobs, " jobs / ", s.retention.max_age_ms / 3600000, " h / ",
                      s.retention.max_bytes, " bytes, attempts ", s.max_attempts, ", worker timeout ",
                      s.worker_timeout_ms / 1000, " s, queue timeout ", s.request_defaults.queue_timeout_seconds,
                      " s, run timeout ", s.request_defaults.run_timeout_seconds, " s, model ttl ",
                      s.model_ttl_ms / 1000, " s");
}

void WritePortFile(const std::string& path, int port) {
  const std::string partial = path + ".partial";
  std::ofstream(partial) << port << "\n";
  std::rename(partial.c_str(), path.c_str());
}

absl::StatusOr<std::unique_ptr<JobStore>> OpenStore(const ServerConfig& config) {
  SqliteStoreOptions options;
  options.data_dir = config.data_dir;
  options.synchronous_full = config.sqlite_synchronous_full;
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(*std::move(store));
}

void InstallSignalHandlers() {
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGHUP, [](int) { reload_requested = 1; });
}

void WaitForTerminationSignal(const std::function<void()>& on_hangup) {
  InstallSignalHandlers();
  while (!stop_requested) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (reload_requested) {
      reload_requested = 0;
      if (on_hangup) on_hangup();
    }
  }
}

}  // namespace radial::server
