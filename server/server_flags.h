// The flags radial-scheduler and radial-standalone share: one parse, validated at start, into one
// immutable ServerConfig (each binary adds its own few flags on top).
#ifndef RADIAL_SERVER_SERVER_FLAGS_H_
#define RADIAL_SERVER_SERVER_FLAGS_H_

#include <functional>
#include <map>
#include <string>

#include "radial/common/flags.h"
#include "rpc/scheduler_server.h"

namespace radial::server {

struct ServerConfig {
  ServerOptions server;
  std::string data_dir;          // empty: the binary's default
  bool sqlite_synchronous_full = true;
  std::string port_file;
  std::string worker_port_file;
  std::string tenant_limits_file;
  std::string log_format = "text";
};

// After parsing: reads the files the flags name (--tenant-limits); errors name the file and line.
absl::Status FinishConfig(ServerConfig& config);

// The usage lines of the shared flags (each binary prints its own first line, then these).
extern const char kServerFlagsUsage[];

// Adds the shared flags to `flags`, storing into `config`. Environment: RADIAL_LISTEN, RADIAL_DATA_DIR.
void AddServerFlags(ServerConfig& config, std::map<std::string, common::FlagHandler>& flags);

// One line for the log: every setting in force.
std::string DescribeConfig(const ServerConfig& config);

// Writes the bound port to `path` (whole, under a temporary name, then renamed: a reader never
// sees a partial number).
void WritePortFile(const std::string& path, int port);

// Opens the SQLite store in config.data_dir; the error names the directory or database file.
absl::StatusOr<std::unique_ptr<JobStore>> OpenStore(const ServerConfig& config);


// Installs the handlers WaitForTerminationSignal acts on (called first thing in main, so a signal
// during start-up, e.g. an early SIGHUP, does not kill the process).
void InstallSignalHandlers();

// Blocks until SIGINT or SIGTERM; runs on_hangup (on this thread) after each SIGHUP. The handlers
// only set flags.
void WaitForTerminationSignal(const std::function<void()>& on_hangup = nullptr);

}  // namespace radial::server

#endif  // RADIAL_SERVER_SERVER_FLAGS_H_
