#include "radial/common/metrics.h"

#include <prometheus/gauge.h>


#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifndef RADIAL_BUILD_VERSION
#define RADIAL_BUILD_VERSION "unknown"
#endif

namespace radial::common {

std::vector<double> JobLatencyBuckets() { return {0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}; }

std::vector<double> StepBuckets() { return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}; }

std::vector<double> IoBuckets() { return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 10}; }

const char* BuildVersion() { return RADIAL_BUILD_VERSION; }

std::string StatusCodeLabel(absl::StatusCode code) {
  return code == absl::StatusCode::kOk ? "OK" : absl::StatusCodeToString(code);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& listen,
                                                                        std::shared_ptr<prometheus::Registry> registry,
                                                                        const std::string& component,
                                                                        std::function<absl::Status()> health) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  prometheus::BuildGauge()
      .Name("radial_build_info")
      .Help("Always 1; the labels say which build of which component this is")
      .Register(*registry)
      .Add({{"component", component}, {"version", BuildVersion()}})
      .Set(1);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(listen, std::move(registry), std::move(health));
  if (!server.ok()) {
    return absl::Status(server.status().code(), absl::StrCat("metrics-listen: ", server.status().message()));
  }
  endpoint->server_ = *std::move(server);
  return endpoint;
}

int MetricsEndpoint::port() const { return server_->port(); }

}  // namespace radial::common
