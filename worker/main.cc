// radial-worker: loads a model bundle and serves jobs for radial-scheduler.
#include <spdlog/spdlog.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gpu_memory.h"
#include "radial/common/metrics_server.h"
#include "model_manifest.h"
#include "pipeline.h"
#include "radial/common/flags.h"
#include "radial/common/logging.h"
#include "worker_client.h"
#include "worker_metrics.h"

namespace {

constexpr char kUsage[] =
    "usage: radial-worker --bundle DIR [--scheduler HOST:PORT] [--device cpu|cuda|cuda:N] [--worker-id ID]\n"
    "                     [--devices D,D,... [--cfg-parallel true]]\n"
    "                     [--x264-threads N] [--warmup WxHxF,...] [--gpu-memory-fraction F]\n"
    "                     [--drain-seconds N] [--metrics-listen HOST:PORT]\n"
    "                     [--log-format text|json]\n"
    "                     [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]\n"
    "  --bundle         model bundle written by radial_export (required; env RADIAL_BUNDLE)\n"
    "  --scheduler      radial-scheduler address (default localhost:50051; env RADIAL_SCHEDULER)\n"
    "  --device         where the model runs (default cpu)\n"
    "  --devices        one video on several devices of this host, e.g. cuda:0,cuda:1,cuda:2,cuda:3 (or\n"
    "                   cpu,cpu for tests): one process per device, started by this one, which alone\n"
    "                   talks to the scheduler (one job at a time); the DiT's tokens are split over\n"
    "                   them (Ulysses), so their count must divide the model's attention heads.\n"
    "                   Replaces --device\n"
    "  --cfg-parallel   true: with --devices (an even count), the prompt's and the negative prompt's\n"
    "                   passes run on two halves of the devices (default false)\n"
    "  --worker-id      unique id (default hostname-pid)\n"
    "  --x264-threads   encoder threads, 0..64 (default: the CPUs this process may run on, at most\n"
    "                   64); 1 gives the same bytes for the same request on any machine\n"
    "  --warmup         sizes to warm up besides the model's default size, e.g. 832x480x81,1280x720x69:\n"
    "                   before announcing itself the worker runs 3 short generations at each, so that\n"
    "                   TorchScript has optimised its modules for them (/healthz says warming meanwhile);\n"
    "                   off: no warm-up at all (tests, one-off runs)\n"
    "  --gpu-memory-fraction  CUDA: share of the GPU's memory this worker may use, (0, 1] (default 1);\n"
    "                   a job that needs more fails with RESOURCE_EXHAUSTED and the worker stays up\n"
    "  --drain-seconds  on SIGTERM or SIGINT: take no new jobs and give the running one up to N s\n"
    "                   to finish, then hand it back to the scheduler and exit 0 (default 1800,\n"
    "                   0..86400; 0 hands it back at once). A second signal hands it back at once.\n"
    "  --metrics-listen HTTP on HOST:PORT (default: none; 127.0.0.1:0 picks a port), up before the\n"
    "                   model loads: /metrics (Prometheus text format) and /healthz, 200 \"ok\" when\n"
    "                   ready (idle or busy; idle also while connecting to the scheduler), else 503\n"
    "                   (loading, warming, draining)\n"
    "  --log-format     text (default) or json: one JSON object per line\n"
    "  RADIAL_LOG_LEVEL trace, debug, info (default), warn, error, critical, off; another value: exit 2\n"
    "Security (the PEM files are read again at every reconnect, so rotated certificates are picked up):\n"
    "  --tls-ca         TLS to the scheduler, whose certificate must chain to this CA (PEM)\n"
    "  --tls-cert, --tls-key  this worker's certificate and key, for a scheduler with --worker-tls-ca\n"
    "  --tls-server-name  name to check in the scheduler's certificate (default: the --scheduler host)\n"
    "  RADIAL_WORKER_TOKEN  worker token, sent as 'authorization: Bearer <token>' (for a scheduler with\n"
    "                   --worker-tokens); --token TOKEN also works but shows in ps: prefer the variable\n"
    "A worker the scheduler refuses (token or certificate) logs why and retries with backoff.\n";

// SIGINT/SIGTERM: the number received and the last one. A signal handler may do no more than store
// to lock-free atomics (WorkerClient::Drain and Stop take mutexes and write to a gRPC stream), so
// the main thread polls these.
std::atomic<int> signals_received{0};
std::atomic<int> last_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

void OnSignal(int signal) {
  last_signal = signal;
  signals_received.fetch_add(1);
}

const char* SignalName(int signal) { return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal"; }

// Overwrites the value of --token in argv, so that ps and /proc/PID/cmdline show it no longer (it
// was visible until now: the environment variable is the safe way). Called after a successful
// ParseFlags, so argv holds flag-value pairs.
void HideTokenArgument(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--token") == 0) std::memset(argv[i + 1], 'x', std::strlen(argv[i + 1]));
  }
}

std::string DescribeSecurity(const radial::worker::WorkerSecurity& security, bool token_from_flag) {
  std::string text = security.tls() ? "TLS (CA " + security.tls_ca_file : "plaintext";
  if (security.tls()) {
    if (!security.tls_cert_file.empty()) text += ", client certificate " + security.tls_cert_file;
    if (!security.tls_server_name.empty()) text += ", server name " + security.tls_server_name;
    text += ")";
  }
  if (security.token.empty()) return text + ", no token";
  return text + (token_from_flag ? ", token from --token" : ", token from RADIAL_WORKER_TOKEN");
}

// "radial-worker: metrics on http://127.0.0.1:9100/metrics": the host as given, the port as bound.
std::string MetricsUrl(const std::string& listen, int port) {
  return "http://" + listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port) + "/metrics";
}

// The CPUs this process may run on (its affinity mask: a container's cpuset), for x264.
int DefaultEncoderThreads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;  // x264 picks
  return std::clamp(CPU_COUNT(&set), 1, 64);  // 64: the encoder's limit (kEncoderMaxThreads)
}

// The manifest's default size first, then `extra`; each run logged, and the last run's time per
// size, which is what a first job at that size now takes.
absl::Status Warmup(radial::worker::Pipeline& pipeline, std::vector<radial::worker::WarmupSize> extra) {
  const radial::worker::ModelManifest& m = pipeline.manifest();
  extra.insert(extra.begin(), {m.default_width, m.default_height, m.default_frames});
  const auto started = std::chrono::steady_clock::now();
  const absl::Status warmed = pipeline.Warmup(extra, [](const radial::worker::WarmupRun& run) {
    const radial::worker::GenerationReport& r = run.report;
    spdlog::info("radial-worker: warm-up {}x{}x{} run {}/{}: text {:.3f} s, denoise {:.3f} s ({} steps), decode "
                 "{:.3f} s",
                 run.size.width, run.size.height, run.size.frames, run.run, radial::worker::Pipeline::kWarmupGenerations,
                 r.text_encode_seconds, r.denoise_seconds, radial::worker::Pipeline::kWarmupSteps, r.decode_seconds);
  });
  if (warmed.ok()) {
    spdlog::info("radial-worker: warmed up in {:.1f} s",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  return warmed;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == radial::worker::kGroupMemberFlag) {
    return radial::worker::RunGroupMember(argc, argv);
  }
  radial::worker::WorkerOptions options;
  std::string bundle, device = "cpu", metrics_listen, log_format = "text";
  int64_t drain_seconds = 1800;  // a real 14B job at 720p takes tens of minutes
  options.x264_threads = DefaultEncoderThreads();
  std::string warmup_text;
  double gpu_memory_fraction = 1.0;
  std::string devices_text;
  bool cfg_parallel = false;
  if (const char* env = std::getenv("RADIAL_BUNDLE")) bundle = env;
  if (const char* env = std::getenv("RADIAL_SCHEDULER")) options.scheduler = env;
  radial::worker::WorkerSecurity& security = options.security;
  if (const char* env = std::getenv("RADIAL_WORKER_TOKEN")) security.token = env;
  bool token_from_flag = false;
  const std::map<std::string, radial::common::FlagHandler> flags = {
      {"--bundle", radial::common::StringFlag(&bundle)},
      {"--scheduler", radial::common::StringFlag(&options.scheduler)},
      {"--device", radial::common::StringFlag(&device)},
      {"--devices", radial::common::StringFlag(&devices_text)},
      {"--cfg-parallel",
       [&](const std::string& value) -> std::string {
         if (value != "true" && value != "false") return "--cfg-parallel: got '" + value.substr(0, 64) + "', expected true or false";
         cfg_parallel = value == "true";
         return "";
       }},
      {"--worker-id", radial::common::StringFlag(&options.worker_id)},
      {"--x264-threads", radial::common::IntegerFlag(0, 64, [&](int64_t v) { options.x264_threads = v; })},
      {"--drain-seconds", radial::common::IntegerFlag(0, 86400, [&](int64_t v) { drain_seconds = v; })},
      {"--warmup", radial::common::StringFlag(&warmup_text)},
      {"--gpu-memory-fraction",
       [&](const std::string& value) -> std::string {
         if (!absl::SimpleAtod(value, &gpu_memory_fraction) || !(gpu_memory_fraction > 0 && gpu_memory_fraction <= 1)) {
           return "--gpu-memory-fraction: got '" + value.substr(0, 64) + "', expected a number in (0, 1]";
         }
         return "";
       }},
      {"--tls-ca", radial::common::StringFlag(&security.tls_ca_file)},
      {"--tls-cert", radial::common::StringFlag(&security.tls_cert_file)},
      {"--tls-key", radial::common::StringFlag(&security.tls_key_file)},
      {"--tls-server-name", radial::common::StringFlag(&security.tls_server_name)},
      {"--metrics-listen", radial::common::StringFlag(&metrics_listen)},
      {"--log-format", radial::common::StringFlag(&log_format)},
      {"--token",
       [&](const std::string& value) {
         security.token = value;
         token_from_flag = true;
         return std::string();
       }},
  };
  if (const auto status = radial::common::ParseFlags(argc, argv, flags, kUsage, std::cout, std::cerr)) return *status;
  HideTokenArgument(argc, argv);
  std::vector<std::string> devices;
  if (!devices_text.empty()) {
    devices = absl::StrSplit(devices_text, ',');
    device = devices[0];  // this process is rank 0
  }
  if (const absl::Status logging = radial::common::ConfigureLogging("worker", log_format); !logging.ok()) {
    std::cerr << "radial-worker: " << logging.message() << "\n";
    return 2;
  }
  if (bundle.empty()) {
    std::cerr << "--bundle: missing, expected a model bundle directory\n" << kUsage;
    return 2;
  }
  const bool warm_up = warmup_text != "off";
  const auto warmup_sizes = radial::worker::ParseWarmupSizes(warm_up ? warmup_text : "");
  if (!warmup_sizes.ok()) {
    std::cerr << "radial-worker: " << warmup_sizes.status().message() << "\n";
    return 2;
  }
  // Before the model loads (seconds to minutes), so that a typo fails at once.
  if (const absl::Status checked = radial::worker::CheckWorkerSecurity(security); !checked.ok()) {
    std::cerr << "radial-worker: " << checked.message() << "\n";
    return 2;
  }
  // The endpoint comes up before the model loads (seconds to minutes), reading loading meanwhile;
  // the model label needs only the manifest.
  std::unique_ptr<radial::worker::WorkerMetrics> metrics;
  std::unique_ptr<radial::common::MetricsServer> metrics_server;
  if (!metrics_listen.empty()) {
    const auto manifest = radial::worker::LoadManifest(bundle);
    if (!manifest.ok()) {
      spdlog::critical("radial-worker: {}", std::string(manifest.status().message()));
      return 1;
    }
    metrics =
        std::make_unique<radial::worker::WorkerMetrics>(std::make_shared<prometheus::Registry>(), manifest->name,
                                                        [device] { return radial::worker::ReadGpuMemory(device); });
    auto server = radial::common::MetricsServer::Start(metrics_listen, metrics->registry(),
                                                       [raw = metrics.get()] { return raw->Ready(); });
    if (!server.ok()) {
      std::cerr << "radial-worker: " << server.status().message() << "\n";
      return 2;
    }
    metrics_server = *std::move(server);
    spdlog::info("radial-worker: metrics on {} (readiness on /healthz)",
                 MetricsUrl(metrics_listen, metrics_server->port()));
  }
  const auto load_started = std::chrono::steady_clock::now();
  radial::worker::LoadOptions load_options;
  load_options.device = device;
  load_options.gpu_memory_fraction = gpu_memory_fraction;
  load_options.cfg_parallel = cfg_parallel;
  load_options.devices = devices;
  auto pipeline = radial::worker::Pipeline::Load(bundle, load_options);
  if (!pipeline.ok()) {
    spdlog::critical("radial-worker: {}", std::string(pipeline.status().message()));
    return 1;
  }
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_started).count();
  spdlog::info("radial-worker: loaded {} on {} in {:.2f} s", (*pipeline)->manifest().name, (*pipeline)->device_name(),
               load_seconds);
  if (metrics != nullptr) {
    metrics->ModelLoaded(load_seconds);
    metrics->RefreshGpuMemory();
    metrics->StateChanged(radial::worker::WorkerState::kWarming);
  }
  const auto warmup_started = std::chrono::steady_clock::now();
  if (absl::Status warmed = warm_up ? Warmup(**pipeline, *warmup_sizes) : absl::OkStatus(); !warmed.ok()) {
    spdlog::critical("radial-worker: {}", std::string(warmed.message()));
    return warmed.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (metrics != nullptr) {
    if (warm_up) {
      metrics->WarmedUp(std::chrono::duration<double>(std::chrono::steady_clock::now() - warmup_started).count());
    }
    metrics->RefreshGpuMemory();
    options.observer = metrics.get();  // idle from Run() on
  }
  spdlog::info("radial-worker: scheduler {}, {}", options.scheduler, DescribeSecurity(security, token_from_flag));
  radial::worker::WorkerClient worker(options, **pipeline);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  absl::Status status;
  std::atomic<bool> finished = false;
  std::thread runner([&] {
    status = worker.Run();
    finished = true;
  });
  // First signal: drain on its own thread (Drain returns when the job is done or handed back), so
  // that this one still sees a second signal, which cuts the drain short.
  std::thread drainer;
  bool cut_short = false;
  auto memory_read = std::chrono::steady_clock::now();
  while (!finished) {
    // The GPU gauges between jobs too (JobEnded refreshes them after each job).
    if (metrics != nullptr && std::chrono::steady_clock::now() - memory_read >= std::chrono::seconds(5)) {
      memory_read = std::chrono::steady_clock::now();
      metrics->RefreshGpuMemory();
    }
    const int received = signals_received.load();
    if (received >= 1 && !drainer.joinable()) {
      spdlog::info("radial-worker: {}: draining (up to {} s for the running job; a second signal stops at once)",
                   SignalName(last_signal), drain_seconds);
      drainer = std::thread([&] { worker.Drain(std::chrono::seconds(drain_seconds)); });
    }
    if (received >= 2 && !cut_short) {
      cut_short = true;
      spdlog::warn("radial-worker: {}, a second signal: handing the running job back and stopping now",
                   SignalName(last_signal));
      worker.Drain(std::chrono::seconds(0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (drainer.joinable()) drainer.join();
  runner.join();
  if (!status.ok()) {
    spdlog::error("radial-worker: {}", std::string(status.message()));
    return 1;
  }
  return 0;
}
