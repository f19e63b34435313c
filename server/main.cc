// radial-scheduler: accepts prompts over radial.v1.VideoService, keeps jobs durably in --data-dir
// and dispatches them to workers that connect over radial.v1.WorkerService. Links no LibTorch, CUDA
// or FFmpeg (radial-standalone embeds a worker).
#include <spdlog/spdlog.h>

#include <iostream>
#include <map>
#include <string>

#include "radial/common/logging.h"
#include "server_flags.h"

int main(int argc, char** argv) {
  radial::server::InstallSignalHandlers();
  const std::string usage = std::string("usage: radial-scheduler [flags]\n") + radial::server::kServerFlagsUsage +
                            "  (--data-dir defaults to ./radial-data)\n";
  radial::server::ServerConfig config;
  std::map<std::string, radial::common::FlagHandler> flags;
  radial::server::AddServerFlags(config, flags);
  if (const auto status = radial::common::ParseFlags(argc, argv, flags, usage, std::cout, std::cerr)) return *status;
  if (const absl::Status finished = radial::server::FinishConfig(config); !finished.ok()) {
    std::cerr << argv[0] << ": " << finished.message() << "\n";
    return 2;
  }
  if (const absl::Status level = radial::common::ConfigureLogging("scheduler", config.log_format); !level.ok()) {
    std::cerr << "radial-scheduler: " << level.message() << "\n";
    return 2;
  }
  if (config.data_dir.empty()) config.data_dir = "radial-data";
  auto store = radial::server::OpenStore(config);
  if (!store.ok()) {
    spdlog::critical("radial-scheduler: {}", std::string(store.status().message()));
    return 1;
  }
  auto server = radial::server::SchedulerServer::Start(config.server, *std::move(store));
  if (!server.ok()) {
    spdlog::critical("radial-scheduler: {}", std::string(server.status().message()));
    return 1;
  }
  spdlog::info("radial-scheduler listening on port {}: {}", (*server)->port(), radial::server::DescribeConfig(config));
  if (!config.port_file.empty()) radial::server::WritePortFile(config.port_file, (*server)->port());
  if (!config.worker_port_file.empty()) {
    radial::server::WritePortFile(config.worker_port_file, (*server)->worker_port());
  }
  radial::server::WaitForTerminationSignal([&server] {
    const absl::Status reloaded = (*server)->Reload();
    if (reloaded.ok()) {
      spdlog::info("tokens re-read (SIGHUP)");
    } else {
      spdlog::error("tokens not re-read, the previous ones stay in force: {}", std::string(reloaded.message()));
    }
  });
  spdlog::info("radial-scheduler shutting down: streams end with UNAVAILABLE, jobs stay in {}", config.data_dir);
  (*server)->Shutdown();
  return 0;
}
