// radial-scheduler: accepts prompts over radial.v1.VideoService and dispatches them to workers that
// connect over radial.v1.WorkerService.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "radial/common/flags.h"
#include "pipeline.h"
#include "scheduler_server.h"
#include "worker_client.h"

namespace {

constexpr char kUsage[] =
    "usage: radial-scheduler [--listen HOST:PORT] [--queue-capacity N] [--max-finished-jobs N]\n"
    "                        [--max-attempts N] [--default-model NAME]\n"
    "                        [--embedded-worker BUNDLE [--embedded-device cpu|cuda]]\n"
    "  --listen             address for clients and workers (default 0.0.0.0:50051; env RADIAL_LISTEN)\n"
    "  --queue-capacity     queued jobs before Submit answers RESOURCE_EXHAUSTED (default 256)\n"
    "  --max-finished-jobs  ended jobs kept with their video for GetJob/Watch (default 256)\n"
    "  --max-attempts       runs of a job whose worker is lost, in all (default 2)\n"
    "  --default-model      model used when a request names none (default: first announced)\n"
    "  --embedded-worker    also run a worker for this model bundle in this process (one-process mode)\n"
    "  --embedded-device    device of the embedded worker (default cpu)\n"
    "  --port-file          write the bound port to this file once listening (useful with port 0)\n"
    "  RADIAL_LOG_LEVEL     trace, debug, info (default), warn, error\n";

volatile std::sig_atomic_t stop_requested = 0;

}  // namespace

int main(int argc, char** argv) {
  radial::server::ServerOptions options;
  std::string embedded_bundle, embedded_device = "cpu", port_file;
  if (const char* listen = std::getenv("RADIAL_LISTEN")) options.listen = listen;
  using radial::common::IntegerFlag;
  using radial::common::StringFlag;
  const std::map<std::string, radial::common::FlagHandler> flags = {
      {"--listen", StringFlag(&options.listen)},
      {"--port-file", StringFlag(&port_file)},
      {"--embedded-worker", StringFlag(&embedded_bundle)},
      {"--embedded-device", StringFlag(&embedded_device)},
      {"--default-model", StringFlag(&options.scheduler.default_model)},
      {"--queue-capacity", IntegerFlag(1, 1 << 20, [&](int64_t v) { options.scheduler.queue_capacity = v; })},
      {"--max-finished-jobs", IntegerFlag(1, 1 << 20, [&](int64_t v) { options.scheduler.max_finished_jobs = v; })},
      {"--max-attempts", IntegerFlag(1, 100, [&](int64_t v) { options.scheduler.max_attempts = v; })},
  };
  if (const auto status = radial::common::ParseFlags(argc, argv, flags, kUsage, std::cout, std::cerr)) return *status;
  if (const char* level = std::getenv("RADIAL_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));

  // The embedded worker's model loads before the server opens, so a bad bundle fails fast.
  std::unique_ptr<radial::worker::Pipeline> pipeline;
  if (!embedded_bundle.empty()) {
    auto loaded = radial::worker::Pipeline::Load(embedded_bundle, embedded_device);
    if (!loaded.ok()) {
      spdlog::critical("radial-scheduler: --embedded-worker: {}", std::string(loaded.status().message()));
      return 1;
    }
    pipeline = *std::move(loaded);
  }
  auto server = radial::server::SchedulerServer::Start(options);
  if (!server.ok()) {
    spdlog::critical("radial-scheduler: {}", std::string(server.status().message()));
    return 1;
  }
  spdlog::info("radial-scheduler listening on port {} (queue capacity {}, finished jobs kept {}, attempts {})",
               (*server)->port(), options.scheduler.queue_capacity, options.scheduler.max_finished_jobs,
               options.scheduler.max_attempts);
  if (!port_file.empty()) {
    // Written whole under a temporary name, then renamed: a reader never sees a partial number.
    const std::string partial = port_file + ".partial";
    std::ofstream(partial) << (*server)->port() << "\n";
    std::rename(partial.c_str(), port_file.c_str());
  }
  std::unique_ptr<radial::worker::WorkerClient> worker;
  std::thread worker_thread;
  if (pipeline) {
    radial::worker::WorkerOptions worker_options;
    worker_options.scheduler = "127.0.0.1:" + std::to_string((*server)->port());
    worker_options.worker_id = "embedded";
    worker = std::make_unique<radial::worker::WorkerClient>(worker_options, *pipeline);
    worker_thread = std::thread([&worker] { (void)worker->Run(); });
  }
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("radial-scheduler shutting down");
  if (worker) {
    worker->Stop();
    worker_thread.join();
  }
  (*server)->Shutdown();
  return 0;
}
