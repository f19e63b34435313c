// radial-standalone: the scheduler and one embedded worker in one process, for a first run, the demo
// and tests. Same flags as radial-scheduler plus the worker's bundle and device; without --data-dir
// the jobs live in a temporary directory that is removed at exit.
#include <ftw.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <stdlib.h>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "pipeline.h"
#include "radial/common/logging.h"
#include "server_flags.h"
#include "worker_client.h"

namespace {

// Removes a directory tree with POSIX calls: std::filesystem is out of bounds in this binary, since
// libtorch.so exports its own copies of std::filesystem functions that win over libstdc++'s (its
// remove_all crashed at exit).
void RemoveTree(const std::string& path) {
  nftw(
      path.c_str(),
      [](const char* entry, const struct stat*, int, struct FTW*) {
        (void)::remove(entry);  // best effort: keep going past an entry that will not go
        return 0;
      },
      16,
      FTW_DEPTH | FTW_PHYS);
}

}  // namespace

int main(int argc, char** argv) {
  radial::server::InstallSignalHandlers();
  const std::string usage = std::string(
                                "usage: radial-standalone --embedded-worker BUNDLE [--embedded-device cpu|cuda] "
                                "[flags]\n"
                                "  --embedded-worker BUNDLE  model bundle the in-process worker serves (required)\n"
                                "  --embedded-device DEV     its device (default cpu)\n") +
                            radial::server::kServerFlagsUsage +
                            "  (--data-dir defaults to a temporary directory removed at exit)\n";
  radial::server::ServerConfig config;
  config.server.listen = "127.0.0.1:50051";
  std::string bundle, device = "cpu";
  std::map<std::string, radial::common::FlagHandler> flags;
  radial::server::AddServerFlags(config, flags);
  flags["--embedded-worker"] = radial::common::StringFlag(&bundle);
  flags["--embedded-device"] = radial::common::StringFlag(&device);
  if (const auto status = radial::common::ParseFlags(argc, argv, flags, usage, std::cout, std::cerr)) return *status;
  if (bundle.empty()) {
    std::cerr << "--embedded-worker: missing, expected a model bundle directory\n" << usage;
    return 2;
  }
  if (const absl::Status finished = radial::server::FinishConfig(config); !finished.ok()) {
    std::cerr << argv[0] << ": " << finished.message() << "\n";
    return 2;
  }
  if (const absl::Status level = radial::common::ConfigureLogging("standalone", config.log_format); !level.ok()) {
    std::cerr << "radial-standalone: " << level.message() << "\n";
    return 2;
  }
  // The model loads before the server opens, so a bad bundle fails fast.
  auto pipeline = radial::worker::Pipeline::Load(bundle, device);
  if (!pipeline.ok()) {
    spdlog::critical("radial-standalone: --embedded-worker: {}", std::string(pipeline.status().message()));
    return 1;
  }
  std::string temporary_dir;
  if (config.data_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/radial-standalone-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      spdlog::critical("radial-standalone: cannot create a temporary data directory {}", pattern);
      return 1;
    }
    temporary_dir = config.data_dir = pattern;
  }
  int exit_code = 0;
  {
    auto store = radial::server::OpenStore(config);
    auto server = store.ok() ? radial::server::SchedulerServer::Start(config.server, *std::move(store))
                             : absl::StatusOr<std::unique_ptr<radial::server::SchedulerServer>>(store.status());
    if (!server.ok()) {
      spdlog::critical("radial-standalone: {}", std::string(server.status().message()));
      exit_code = 1;
    } else {
      spdlog::info("radial-standalone listening on port {}: {}", (*server)->port(),
                   radial::server::DescribeConfig(config));
      if (!config.port_file.empty()) radial::server::WritePortFile(config.port_file, (*server)->port());
      if (!config.worker_port_file.empty()) {
        radial::server::WritePortFile(config.worker_port_file, (*server)->worker_port());
      }
  if (!config.worker_port_file.empty()) {
    radial::server::WritePortFile(config.worker_port_file, (*server)->worker_port());
  }
      radial::worker::WorkerOptions worker_options;
      worker_options.scheduler = "127.0.0.1:" + std::to_string((*server)->worker_port());
      worker_options.worker_id = "embedded";
      radial::worker::WorkerClient worker(worker_options, **pipeline);
      std::thread worker_thread([&worker] { (void)worker.Run(); });
      radial::server::WaitForTerminationSignal([&server] {
    const absl::Status reloaded = (*server)->Reload();
    if (reloaded.ok()) {
      spdlog::info("tokens re-read (SIGHUP)");
    } else {
      spdlog::error("tokens not re-read, the previous ones stay in force: {}", std::string(reloaded.message()));
    }
  });
      spdlog::info("radial-standalone shutting down");
      worker.Stop();  // a running job stays in the store and runs again on the next start
      worker_thread.join();
      (*server)->Shutdown();
    }
  }
  if (!temporary_dir.empty()) RemoveTree(temporary_dir);
  return exit_code;
}
