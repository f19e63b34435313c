// The /metrics endpoint every radial process serves on its own port (--metrics-listen), in the
// Prometheus text format (metrics_server.h; prometheus-cpp's core library for the registry). Families follow Prometheus naming:
// a radial_ prefix, base units (_seconds, _bytes), counters ending in _total, labels only from small
// fixed sets (model, code, priority band, stage, attention mode, state): never job ids or prompts.
#ifndef RADIAL_COMMON_METRICS_H_
#define RADIAL_COMMON_METRICS_H_

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "radial/common/metrics_server.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace radial::common {

// Job-length latencies: 0.5 s to an hour.
std::vector<double> JobLatencyBuckets();
// Step and stage times: 10 ms to 10 minutes.
std::vector<double> StepBuckets();
// Store writes and other I/O: 100 us to 10 s.
std::vector<double> IoBuckets();

class MetricsEndpoint {
 public:
  // Serves `registry` on http://HOST:PORT/metrics ("127.0.0.1:0" picks a free port), and /healthz
  // (200 while `health` returns OK; no health given: always 200). Adds
  // radial_build_info{component, version}. INVALID_ARGUMENT / UNAVAILABLE for an address that is
  // malformed / cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen,
                                                                std::shared_ptr<prometheus::Registry> registry,
                                                                const std::string& component,
                                                                std::function<absl::Status()> health = nullptr);
  int port() const;

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<MetricsServer> server_;
};

// A status code as a metric label: "OK", "INVALID_ARGUMENT", ... (absl's names, OK spelt out).
std::string StatusCodeLabel(absl::StatusCode code);

// The version the build was configured with (git describe at configure time).
const char* BuildVersion();

}  // namespace radial::common

#endif  // RADIAL_COMMON_METRICS_H_
