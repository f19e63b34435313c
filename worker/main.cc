// radial-worker: loads a model bundle and serves jobs for radial-scheduler.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "pipeline.h"
#include "worker_client.h"

namespace {

constexpr char kUsage[] =
    "usage: radial-worker --bundle DIR [--scheduler HOST:PORT] [--device cpu|cuda|cuda:N] [--worker-id ID]\n"
    "                     [--x264-threads N]\n"
    "  --bundle        model bundle written by radial_export (required; env RADIAL_BUNDLE)\n"
    "  --scheduler     radial-scheduler address (default localhost:50051; env RADIAL_SCHEDULER)\n"
    "  --device        where the model runs (default cpu)\n"
    "  --worker-id     unique id (default hostname-pid)\n"
    "  --x264-threads  encoder threads; 1 (default) gives the same bytes on any machine\n"
    "  RADIAL_LOG_LEVEL trace, debug, info (default), warn, error\n";

radial::worker::WorkerClient* client = nullptr;

}  // namespace

int main(int argc, char** argv) {
  radial::worker::WorkerOptions options;
  std::string bundle, device = "cpu";
  if (const char* env = std::getenv("RADIAL_BUNDLE")) bundle = env;
  if (const char* env = std::getenv("RADIAL_SCHEDULER")) options.scheduler = env;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << flag << ": missing value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--bundle") {
      bundle = value;
    } else if (flag == "--scheduler") {
      options.scheduler = value;
    } else if (flag == "--device") {
      device = value;
    } else if (flag == "--worker-id") {
      options.worker_id = value;
    } else if (flag == "--x264-threads") {
      if (!absl::SimpleAtoi(value, &options.x264_threads) || options.x264_threads < 0) {
        std::cerr << "--x264-threads: got '" << value << "', expected an integer >= 0\n";
        return 2;
      }
    } else {
      std::cerr << "unknown flag '" << flag << "'\n" << kUsage;
      return 2;
    }
  }
  if (bundle.empty()) {
    std::cerr << "--bundle: missing, expected a model bundle directory\n" << kUsage;
    return 2;
  }
  if (const char* level = std::getenv("RADIAL_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));
  auto pipeline = radial::worker::Pipeline::Load(bundle, device);
  if (!pipeline.ok()) {
    spdlog::critical("radial-worker: {}", std::string(pipeline.status().message()));
    return 1;
  }
  radial::worker::WorkerClient worker(options, **pipeline);
  client = &worker;
  std::signal(SIGINT, [](int) { client->Stop(); });
  std::signal(SIGTERM, [](int) { client->Stop(); });
  const absl::Status status = worker.Run();
  if (!status.ok()) {
    spdlog::error("radial-worker: {}", std::string(status.message()));
    return 1;
  }
  return 0;
}
