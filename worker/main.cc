// radial-worker: loads a model bundle and serves jobs for radial-scheduler.
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "radial/common/flags.h"
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

// Set by SIGINT/SIGTERM; a signal handler may do no more (WorkerClient::Stop takes a mutex).
volatile std::sig_atomic_t stop_requested = 0;

}  // namespace

int main(int argc, char** argv) {
  radial::worker::WorkerOptions options;
  std::string bundle, device = "cpu";
  if (const char* env = std::getenv("RADIAL_BUNDLE")) bundle = env;
  if (const char* env = std::getenv("RADIAL_SCHEDULER")) options.scheduler = env;
  const std::map<std::string, radial::common::FlagHandler> flags = {
      {"--bundle", radial::common::StringFlag(&bundle)},
      {"--scheduler", radial::common::StringFlag(&options.scheduler)},
      {"--device", radial::common::StringFlag(&device)},
      {"--worker-id", radial::common::StringFlag(&options.worker_id)},
      {"--x264-threads", radial::common::IntegerFlag(0, 64, [&](int64_t v) { options.x264_threads = v; })},
  };
  if (const auto status = radial::common::ParseFlags(argc, argv, flags, kUsage, std::cout, std::cerr)) return *status;
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
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  absl::Status status;
  std::atomic<bool> finished = false;
  std::thread runner([&] {
    status = worker.Run();
    finished = true;
  });
  while (!stop_requested && !finished) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!finished) worker.Stop();
  runner.join();
  if (!status.ok()) {
    spdlog::error("radial-worker: {}", std::string(status.message()));
    return 1;
  }
  return 0;
}
