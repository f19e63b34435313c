#include "radial/common/metrics.h"

#include <prometheus/gauge.h>

#include <exception>

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

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& listen,
                                                                        std::shared_ptr<prometheus::Registry> registry,
                                                                        const std::string& component) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->registry_ = std::move(registry);
  prometheus::BuildGauge()
      .Name("radial_build_info")
      .Help("Always 1; the labels say which build of which component this is")
      .Register(*endpoint->registry_)
      .Add({{"component", component}, {"version", BuildVersion()}})
      .Set(1);
  try {
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(listen);
  } catch (const std::exception& error) {
    return absl::UnavailableError(
        absl::StrCat("metrics-listen: got '", listen, "', expected a host:port this process can bind (", error.what(), ")"));
  }
  endpoint->exposer_->RegisterCollectable(endpoint->registry_);
  const std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
  endpoint->port_ = ports.empty() ? 0 : ports.front();
  return endpoint;
}

}  // namespace radial::common
