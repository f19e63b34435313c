// Flow-matching samplers that reproduce diffusers 0.42.1 step for step. The model predicts the
// velocity v = noise - data of x_sigma = (1 - sigma) * data + sigma * noise; sigma falls from about 1
// (noise) to 0 (the video), warped toward high noise by `shift` (sigma' = shift*s / (1 + (shift-1)*s)).
//
//   "flow_euler"  = FlowMatchEulerDiscreteScheduler(num_train_timesteps, shift), default settings (no
//                   dynamic shifting, no Karras/exponential/beta sigmas, deterministic):
//                   x_next = x + (sigma_next - sigma) * v. Its sigmas are diffusers' double shift: a
//                   linspace from shift(1) to shift(1/num_train_timesteps), shifted once more.
//   "flow_unipc"  = UniPCMultistepScheduler as the Wan2.1 diffusers checkpoints configure it:
//                   prediction_type "flow_prediction", use_flow_sigmas, flow_shift = shift,
//                   solver_order 1..3 (Wan: 2), solver_type "bh2", predict_x0, lower_order_final,
//                   final_sigmas_type "zero", timestep_spacing "linspace", disable_corrector [],
//                   no thresholding. Each step corrects the sample it is given with the new model
//                   output (UniC, from the second step on), then predicts the next one (UniP) from the
//                   last `order` data predictions x0 = x - sigma * v, with lower orders while the
//                   history fills and on the last steps.
//
// "Reproduce" means: timesteps() equal diffusers' `scheduler.timesteps` exactly (UniPC truncates
// them to integers, which is what WanPipeline feeds the model; Euler's are float32 values), sigmas()
// equal `scheduler.sigmas` exactly (float32 values held in doubles), and Step() gives diffusers'
// `scheduler.step(...).prev_sample` for the same model outputs to within float rounding: diffusers
// computes UniPC's coefficients in float32, FlowSchedule in double (checked to 1e-5 against diffusers
// by tests/worker/flow_sampler_test.cc on every configuration above).
//
// Plain C++: no LibTorch here, so the tests replay the sampler on a small vector type.
#ifndef RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_
#define RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace radial::worker {

inline constexpr char kFlowEulerSampler[] = "flow_euler";
inline constexpr char kFlowUniPCSampler[] = "flow_unipc";
inline constexpr int64_t kFlowMaxSolverOrder = 3;

// The manifest's `sampler` section plus the request's step count; field names are the manifest's.
struct FlowSamplerConfig {
  std::string name;  // kFlowEulerSampler or kFlowUniPCSampler
  int64_t steps = 0;
  double shift = 1.0;
  int64_t num_train_timesteps = 1000;
  int64_t solver_order = 2;  // flow_unipc only: 1..kFlowMaxSolverOrder; flow_euler ignores it
};

// InvalidArgument naming the field and its allowed range ("sampler.shift: got 0, expected a finite
// number > 0") when a field is out of range, else OK. Does not build the schedule.
absl::Status ValidateFlowSamplerConfig(const FlowSamplerConfig& config);

// What step i does, as scalars over the step's tensors (all in double). With m_j the data prediction
// of step j (m_j = sample_j - sigma_j * v_j):
//   flow_euler:  next = sample + euler_dt * v
//   flow_unipc:  m_i = sample - sigma * v;
//                x = sample, or when corrector_order > 0 (UniC, with the previous step's input x_prev)
//                x = corrector_last * x_prev + corrector_x0 * m_{i-1}
//                    + sum_{k=1}^{corrector_order-1} corrector_history[k-1] * (m_{i-1-k} - m_{i-1})
//                    + corrector_current * (m_i - m_{i-1});
//                next = predictor_sample * x + predictor_x0 * m_i
//                       + sum_{k=1}^{predictor_order-1} predictor_history[k-1] * (m_{i-k} - m_i).
// x_prev is the `x` of step i-1 (the corrected sample its predictor started from), as in diffusers.
struct FlowStepCoefficients {
  double sigma = 0;
  double euler_dt = 0;
  int64_t corrector_order = 0;  // 0: no correction (the first step, and always for flow_euler)
  double corrector_last = 0;
  double corrector_x0 = 0;
  std::array<double, kFlowMaxSolverOrder - 1> corrector_history{};
  double corrector_current = 0;
  int64_t predictor_order = 0;  // 0 for flow_euler
  double predictor_sample = 0;
  double predictor_x0 = 0;
  std::array<double, kFlowMaxSolverOrder - 1> predictor_history{};
};

// The data-independent part of a sampler: timesteps, sigmas and every step's coefficients, computed
// once at construction. Immutable, cheap to copy.
class FlowSchedule {
 public:
  // Errors as ValidateFlowSamplerConfig; also InvalidArgument when the shift is so large that
  // neighbouring sigmas coincide in float32 and UniPC's coefficients would not be finite.
  static absl::StatusOr<FlowSchedule> Create(const FlowSamplerConfig& config);

  const FlowSamplerConfig& config() const { return config_; }
  bool multistep() const { return config_.name == kFlowUniPCSampler; }
  int64_t steps() const { return config_.steps; }
  // steps values: the timestep to give the model at each step, exactly as diffusers has them.
  const std::vector<double>& timesteps() const { return timesteps_; }
  // steps + 1 values falling from about 1 to 0 (the last).
  const std::vector<double>& sigmas() const { return sigmas_; }
  // Requires 0 <= step < steps().
  const FlowStepCoefficients& coefficients(int64_t step) const { return coefficients_[step]; }

 private:
  FlowSamplerConfig config_;
  std::vector<double> timesteps_;
  std::vector<double> sigmas_;
  std::vector<FlowStepCoefficients> coefficients_;
};

// FailedPrecondition for a Step() called out of order; shared by every FlowSampler<T>.
absl::Status FlowStepOutOfOrderError(int64_t step, int64_t expected, int64_t steps);

// One denoising run of a FlowSchedule over samples of type T, which needs T + T, T - T, double * T
// and copying (torch::Tensor, or a test's vector). Holds the UniPC history (at most solver_order data
// predictions and the last corrected sample); make a new sampler for each generation.
template <typename T>
class FlowSampler {
 public:
  static absl::StatusOr<FlowSampler> Create(const FlowSamplerConfig& config) {
    absl::StatusOr<FlowSchedule> schedule = FlowSchedule::Create(config);
    if (!schedule.ok()) return schedule.status();
    return FlowSampler(*std::move(schedule));
  }

  const FlowSchedule& schedule() const { return schedule_; }
  int64_t steps() const { return schedule_.steps(); }
  const std::vector<double>& timesteps() const { return schedule_.timesteps(); }
  const std::vector<double>& sigmas() const { return schedule_.sigmas(); }

  // Takes the model's output at timesteps()[step] for `sample` (the previous Step's result, or the
  // initial noise at step 0) and returns the sample for step + 1. Steps run in order from 0; any
  // other `step` returns FailedPrecondition and changes nothing.
  absl::StatusOr<T> Step(int64_t step, const T& model_output, const T& sample) {
    if (step != next_step_ || step >= steps()) return FlowStepOutOfOrderError(step, next_step_, steps());
    ++next_step_;
    const FlowStepCoefficients& c = schedule_.coefficients(step);
    if (!schedule_.multistep()) return sample + c.euler_dt * model_output;

    T x0 = sample - c.sigma * model_output;
    T x = sample;
    if (c.corrector_order > 0) {
      const T& x0_prev = x0_history_.back();
      x = c.corrector_last * *last_sample_ + c.corrector_x0 * x0_prev;
      for (int64_t k = 1; k < c.corrector_order; ++k) {
        x = x + c.corrector_history[k - 1] * (History(k) - x0_prev);
      }
      x = x + c.corrector_current * (x0 - x0_prev);
    }
    x0_history_.push_back(std::move(x0));
    if (static_cast<int64_t>(x0_history_.size()) > schedule_.config().solver_order) {
      x0_history_.erase(x0_history_.begin());
    }
    const T& x0_now = x0_history_.back();
    T next = c.predictor_sample * x + c.predictor_x0 * x0_now;
    for (int64_t k = 1; k < c.predictor_order; ++k) next = next + c.predictor_history[k - 1] * (History(k) - x0_now);
    last_sample_ = std::move(x);
    return next;
  }

 private:
  explicit FlowSampler(FlowSchedule schedule) : schedule_(std::move(schedule)) {}

  // The data prediction k steps before the newest one.
  const T& History(int64_t k) const { return x0_history_[x0_history_.size() - 1 - static_cast<size_t>(k)]; }

  FlowSchedule schedule_;
  int64_t next_step_ = 0;
  std::vector<T> x0_history_;     // oldest first
  std::optional<T> last_sample_;  // x of the previous step
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_FLOW_SCHEDULE_H_
