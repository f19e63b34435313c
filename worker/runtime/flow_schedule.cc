#include "flow_schedule.h"

namespace radial::worker {

std::vector<double> FlowSigmas(int64_t steps, double shift) {
  std::vector<double> sigmas;
  sigmas.reserve(steps + 1);
  for (int64_t i = 0; i < steps; ++i) {
    const double s = 1.0 - static_cast<double>(i) / static_cast<double>(steps);
    sigmas.push_back(shift * s / (1.0 + (shift - 1.0) * s));
  }
  sigmas.push_back(0.0);
  return sigmas;
}

}  // namespace radial::worker
