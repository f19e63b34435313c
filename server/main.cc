// radial-scheduler: accepts prompts over radial.v1.VideoService and dispatches them to workers that
// connect over radial.v1.WorkerService.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "scheduler_server.h"

namespace {

constexpr char kUsage[] =
    "usage: radial-scheduler [--listen HOST:PORT] [--queue-capacity N] [--max-finished-jobs N]\n"
    "                        [--max-attempts N] [--default-model NAME]\n"
    "  --listen             address for clients and workers (default 0.0.0.0:50051; env RADIAL_LISTEN)\n"
    "  --queue-capacity     queued jobs before Submit answers RESOURCE_EXHAUSTED (default 256)\n"
    "  --max-finished-jobs  ended jobs kept with their video for GetJob/Watch (default 256)\n"
    "  --max-attempts       runs of a job whose worker is lost, in all (default 2)\n"
    "  --default-model      model used when a request names none (default: first announced)\n"
    "  RADIAL_LOG_LEVEL     trace, debug, info (default), warn, error\n";

volatile std::sig_atomic_t stop_requested = 0;

bool ParseSize(const std::string& flag, const std::string& text, size_t min, size_t& out) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min) {
    std::cerr << flag << ": got '" << text << "', expected an integer >= " << min << "\n";
    return false;
  }
  out = value;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  radial::server::ServerOptions options;
  if (const char* listen = std::getenv("RADIAL_LISTEN")) options.listen = listen;
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
    size_t number = 0;
    if (flag == "--listen") {
      options.listen = value;
    } else if (flag == "--default-model") {
      options.scheduler.default_model = value;
    } else if (flag == "--queue-capacity" && ParseSize(flag, value, 1, number)) {
      options.scheduler.queue_capacity = number;
    } else if (flag == "--max-finished-jobs" && ParseSize(flag, value, 1, number)) {
      options.scheduler.max_finished_jobs = number;
    } else if (flag == "--max-attempts" && ParseSize(flag, value, 1, number)) {
      options.scheduler.max_attempts = static_cast<uint32_t>(number);
    } else {
      if (flag.rfind("--", 0) != 0 || (flag != "--queue-capacity" && flag != "--max-finished-jobs" &&
                                       flag != "--max-attempts")) {
        std::cerr << "unknown flag '" << flag << "'\n" << kUsage;
      }
      return 2;
    }
  }
  if (const char* level = std::getenv("RADIAL_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));

  auto server = radial::server::SchedulerServer::Start(options);
  if (!server.ok()) {
    spdlog::critical("radial-scheduler: {}", std::string(server.status().message()));
    return 1;
  }
  spdlog::info("radial-scheduler listening on port {} (queue capacity {}, finished jobs kept {}, attempts {})",
               (*server)->port(), options.scheduler.queue_capacity, options.scheduler.max_finished_jobs,
               options.scheduler.max_attempts);
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("radial-scheduler shutting down");
  (*server)->Shutdown();
  return 0;
}
