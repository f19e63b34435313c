#include "flow_schedule.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace radial::worker {
namespace {

// The schedules below repeat numpy's and torch's operations one rounding at a time, so that the
// integer timesteps truncate exactly where diffusers' do. A compiler may fuse a product into the
// following addition (GCC does, across statements, on FMA targets in its default GNU mode); a value
// that went through memory has been rounded.
double Rounded(double value) {
  volatile double stored = value;
  return stored;
}
float Rounded(float value) {
  volatile float stored = value;
  return stored;
}

// numpy.linspace(start, stop, num), endpoint included: start + i * ((stop - start) / (num - 1)),
// the last value exactly `stop`.
std::vector<double> Linspace(double start, double stop, int64_t num) {
  std::vector<double> values(num);
  const double step = num > 1 ? (stop - start) / static_cast<double>(num - 1) : 0.0;
  for (int64_t i = 0; i < num; ++i) values[i] = Rounded(static_cast<double>(i) * step) + start;
  if (num > 1) values.back() = stop;
  return values;
}

// shift * s / (1 + (shift - 1) * s) in float64, as numpy evaluates it.
double Shifted(double shift, double s) { return Rounded(shift * s) / (1.0 + Rounded((shift - 1.0) * s)); }

// The same in float32 tensors with a Python-float shift, as torch evaluates it (the scalar is
// rounded to float32 first).
float ShiftedFloat(double shift, float s) {
  const float shift_f = static_cast<float>(shift), shift_minus_one_f = static_cast<float>(shift - 1.0);
  return Rounded(shift_f * s) / (1.0f + Rounded(shift_minus_one_f * s));
}

// UniPC's half-log-SNR of a flow sigma (alpha = 1 - sigma).
double Lambda(double sigma) { return std::log(1.0 - sigma) - std::log(sigma); }

// Solves a x = b for a small dense system (Gaussian elimination with partial pivoting).
std::vector<double> Solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t row = col + 1; row < n; ++row) {
      if (std::fabs(a[row][col]) > std::fabs(a[pivot][col])) pivot = row;
    }
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (size_t row = col + 1; row < n; ++row) {
      const double factor = a[row][col] / a[col][col];
      for (size_t k = col; k < n; ++k) a[row][k] -= factor * a[col][k];
      b[row] -= factor * b[col];
    }
  }
  std::vector<double> x(n);
  for (size_t row = n; row-- > 0;) {
    double sum = b[row];
    for (size_t k = row + 1; k < n; ++k) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x;
}

// One UniPC update (the B(h) = e^{-h} - 1 variant, "bh2", on data predictions) from sigma_s0 to
// sigma_t, using the data predictions at sigma_s0 and at `earlier` sigmas (newest first). The update
// is x_t = sample * x + x0 * m0 + sum_k history[k] * (m_k - m0) + current * (m_t - m0): the predictor
// leaves `current` at 0, the corrector (with m_t, the prediction at sigma_t) sets it.
struct UniUpdate {
  double sample = 0, x0 = 0, current = 0;
  std::array<double, kFlowMaxSolverOrder - 1> history{};
};

UniUpdate UniCoefficients(double sigma_t, double sigma_s0, const std::vector<double>& earlier, bool corrector) {
  UniUpdate u;
  const double alpha_t = 1.0 - sigma_t;
  const int64_t order = static_cast<int64_t>(earlier.size()) + 1;
  if (sigma_t == 0.0) {
    // The step to sigma 0 (always first order: lower_order_final) lands on the data prediction;
    // diffusers gets there through h = inf, e^{-h} - 1 = -1.
    u.x0 = 1.0;
    return u;
  }
  const double lambda_s0 = Lambda(sigma_s0);
  const double h = Lambda(sigma_t) - lambda_s0;
  const double hh = -h;  // predict_x0
  const double h_phi_1 = std::expm1(hh);
  const double b_h = h_phi_1;  // bh2
  // r_k: how far back the k-th earlier prediction is, in units of h; the last entry is 1.
  std::vector<double> rks;
  for (double sigma : earlier) rks.push_back((Lambda(sigma) - lambda_s0) / h);
  rks.push_back(1.0);
  // b_j = j! * hh * phi_{j+1}(hh) / B(h) for j = 1..order, by UniPC's recurrence.
  std::vector<double> b;
  double h_phi_k = h_phi_1 / hh - 1.0;
  double factorial = 1.0;
  for (int64_t j = 1; j <= order; ++j) {
    b.push_back(h_phi_k * factorial / b_h);
    factorial *= static_cast<double>(j + 1);
    h_phi_k = h_phi_k / hh - 1.0 / factorial;
  }
  // rhos: weights of the divided differences D_k = (m_k - m0) / r_k (and, for the corrector, of
  // m_t - m0 last): the Vandermonde system R rho = b over the r's, except that diffusers fixes the
  // single weight of the first-order corrector and the second-order predictor at 0.5 (solving would
  // give b_1, which is not 0.5).
  std::vector<double> rhos;
  const int64_t unknowns = corrector ? order : order - 1;
  if (unknowns == 1) {
    rhos = {0.5};
  } else if (unknowns > 0) {
    std::vector<std::vector<double>> r(unknowns, std::vector<double>(unknowns));
    for (int64_t row = 0; row < unknowns; ++row) {
      for (int64_t col = 0; col < unknowns; ++col) r[row][col] = std::pow(rks[col], static_cast<double>(row));
    }
    rhos = Solve(std::move(r), std::vector<double>(b.begin(), b.begin() + unknowns));
  }
  u.sample = sigma_t / sigma_s0;
  u.x0 = -alpha_t * h_phi_1;
  for (int64_t k = 0; k + 1 < order; ++k) u.history[k] = -alpha_t * b_h * rhos[k] / rks[k];
  if (corrector) u.current = -alpha_t * b_h * rhos[order - 1];
  return u;
}

bool Finite(const FlowStepCoefficients& c) {
  bool finite = std::isfinite(c.corrector_last) && std::isfinite(c.corrector_x0) &&
                std::isfinite(c.corrector_current) && std::isfinite(c.predictor_sample) &&
                std::isfinite(c.predictor_x0);
  for (double v : c.corrector_history) finite = finite && std::isfinite(v);
  for (double v : c.predictor_history) finite = finite && std::isfinite(v);
  return finite;
}

}  // namespace

absl::Status ValidateFlowSamplerConfig(const FlowSamplerConfig& config) {
  const bool unipc = config.name == kFlowUniPCSampler;
  if (!unipc && config.name != kFlowEulerSampler) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler.name: got '", config.name, "', expected ", kFlowEulerSampler, " or ", kFlowUniPCSampler));
  }
  if (config.steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampler.steps: got ", config.steps, ", expected >= 1"));
  }
  if (!(std::isfinite(config.shift) && config.shift > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler.shift: got ", config.shift, ", expected a finite number > 0"));
  }
  if (config.num_train_timesteps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler.num_train_timesteps: got ", config.num_train_timesteps, ", expected >= 1"));
  }
  if (unipc && (config.solver_order < 1 || config.solver_order > kFlowMaxSolverOrder)) {
    return absl::InvalidArgumentError(absl::StrCat("sampler.solver_order: got ", config.solver_order, ", expected 1..",
                                                   kFlowMaxSolverOrder, " for ", kFlowUniPCSampler));
  }
  return absl::OkStatus();
}

absl::StatusOr<FlowSchedule> FlowSchedule::Create(const FlowSamplerConfig& config) {
  if (absl::Status valid = ValidateFlowSamplerConfig(config); !valid.ok()) return valid;
  FlowSchedule s;
  s.config_ = config;
  const int64_t steps = config.steps;
  const int64_t train = config.num_train_timesteps;
  const double train_d = static_cast<double>(train);
  s.coefficients_.resize(steps);

  if (!s.multistep()) {
    // FlowMatchEulerDiscreteScheduler.__init__ keeps float32 sigmas k / N shifted (torch); its
    // set_timesteps spaces timesteps from sigma_max * N to sigma_min * N (numpy float64), divides by
    // N and shifts again, then rounds to float32; timesteps = sigma * N in float32.
    const float train_f = static_cast<float>(train);
    const float sigma_max = ShiftedFloat(config.shift, static_cast<float>(train) / train_f);
    const float sigma_min = ShiftedFloat(config.shift, 1.0f / train_f);
    const std::vector<double> spaced =
        Linspace(static_cast<double>(sigma_max) * train_d, static_cast<double>(sigma_min) * train_d, steps);
    std::vector<float> sigmas_f;
    for (double t : spaced) sigmas_f.push_back(static_cast<float>(Shifted(config.shift, t / train_d)));
    sigmas_f.push_back(0.0f);
    for (int64_t i = 0; i < steps; ++i) {
      s.timesteps_.push_back(static_cast<double>(Rounded(sigmas_f[i] * train_f)));
      s.coefficients_[i].sigma = sigmas_f[i];
      // dt in float32, as diffusers subtracts its float32 sigmas.
      s.coefficients_[i].euler_dt = static_cast<double>(Rounded(sigmas_f[i + 1] - sigmas_f[i]));
    }
    s.sigmas_.assign(sigmas_f.begin(), sigmas_f.end());
    return s;
  }

  // UniPCMultistepScheduler.set_timesteps with use_flow_sigmas: linspace(1, 1/N, steps + 1) without
  // its end, shifted (float64); the first sigma is nudged 1e-6 below 1 so log(alpha) stays finite;
  // timesteps = sigma * N truncated to int64 (before the float32 rounding of the sigmas).
  std::vector<double> raw = Linspace(1.0, 1.0 / train_d, steps + 1);
  raw.pop_back();
  std::vector<double> shifted;
  for (double v : raw) shifted.push_back(Shifted(config.shift, v));
  if (std::fabs(shifted[0] - 1.0) < 1e-6) shifted[0] -= 1e-6;
  for (double sigma : shifted) {
    s.timesteps_.push_back(static_cast<double>(static_cast<int64_t>(Rounded(sigma * train_d))));
    s.sigmas_.push_back(static_cast<float>(sigma));
  }
  s.sigmas_.push_back(0.0);

  const std::vector<double>& sig = s.sigmas_;
  const int64_t max_order = config.solver_order;
  int64_t previous_order = 0;
  for (int64_t i = 0; i < steps; ++i) {
    FlowStepCoefficients& c = s.coefficients_[i];
    c.sigma = sig[i];
    // Warm-up (one more previous prediction each step) and lower_order_final.
    c.predictor_order = std::min({max_order, steps - i, i + 1});
    c.corrector_order = previous_order;
    previous_order = c.predictor_order;
    if (c.corrector_order > 0) {
      std::vector<double> earlier;
      for (int64_t k = 1; k < c.corrector_order; ++k) earlier.push_back(sig[i - 1 - k]);
      const UniUpdate u = UniCoefficients(sig[i], sig[i - 1], earlier, /*corrector=*/true);
      c.corrector_last = u.sample;
      c.corrector_x0 = u.x0;
      c.corrector_history = u.history;
      c.corrector_current = u.current;
    }
    std::vector<double> earlier;
    for (int64_t k = 1; k < c.predictor_order; ++k) earlier.push_back(sig[i - k]);
    const UniUpdate u = UniCoefficients(sig[i + 1], sig[i], earlier, /*corrector=*/false);
    c.predictor_sample = u.sample;
    c.predictor_x0 = u.x0;
    c.predictor_history = u.history;
    if (!Finite(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampler.shift: got ", config.shift, ", which with ", steps, " steps and num_train_timesteps ", train,
          " makes neighbouring sigmas equal in float32 (no finite UniPC step); expected a smaller shift"));
    }
  }
  return s;
}

absl::Status FlowStepOutOfOrderError(int64_t step, int64_t expected, int64_t steps) {
  return absl::FailedPreconditionError(absl::StrCat("sampler step: got ", step, ", expected ", expected,
                                                    " (steps run once each, in order, from 0 to ", steps - 1, ")"));
}

}  // namespace radial::worker
