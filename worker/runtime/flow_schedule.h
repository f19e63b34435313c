// The noise schedule of the flow-matching Euler sampler: sigma falls from 1 (pure noise) to 0 (the
// video) over the steps, warped by `shift` toward high noise as Wan does (sigma' = shift*s /
// (1 + (shift-1)*s)). The model is called at timestep sigma * num_train_timesteps and predicts the
// velocity v; one Euler step is x += (sigma_next - sigma) * v. Plain C++, no LibTorch.
#ifndef RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_
#define RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_

#include <cstdint>
#include <vector>

namespace radial::worker {

// steps + 1 sigmas: sigmas[0] = 1 ... sigmas[steps] = 0, strictly decreasing. Requires steps >= 1.
std::vector<double> FlowSigmas(int64_t steps, double shift);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_
