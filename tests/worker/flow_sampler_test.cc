// The flow-matching samplers against diffusers: the fixture (written by sampler_reference.py with
// the venv's diffusers; path in RADIAL_SAMPLER_FIXTURE) holds, per configuration, diffusers'
// timesteps, sigmas, the model outputs it was fed and the sample after every step. The sampler
// replays the same model outputs on its own samples; every intermediate sample must agree.
#include "flow_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace radial::worker {
namespace {

// The smallest sample type the sampler accepts: a vector with +, - and scaling by a double.
struct Vec {
  std::vector<double> values;
};
Vec operator+(const Vec& a, const Vec& b) {
  Vec out = a;
  for (size_t i = 0; i < out.values.size(); ++i) out.values[i] += b.values[i];
  return out;
}
Vec operator-(const Vec& a, const Vec& b) {
  Vec out = a;
  for (size_t i = 0; i < out.values.size(); ++i) out.values[i] -= b.values[i];
  return out;
}
Vec operator*(double s, const Vec& a) {
  Vec out = a;
  for (double& v : out.values) v *= s;
  return out;
}

// diffusers works in the sample's dtype with float32 coefficients; the sampler in double. 1e-5,
// relative above magnitude 1.
constexpr double kTolerance = 1e-5;

double Error(double got, double expected) { return std::fabs(got - expected) / std::max(1.0, std::fabs(expected)); }

std::string Describe(const nlohmann::json& c) {
  std::string text = c["name"].get<std::string>() + " shift " + std::to_string(c["shift"].get<double>()) + " steps " +
                     std::to_string(c["steps"].get<int64_t>());
  if (c.contains("dtype")) text += " " + c["dtype"].get<std::string>();
  if (c.contains("solver_order")) text += " order " + std::to_string(c["solver_order"].get<int64_t>());
  return text;
}

TEST(FlowSamplerTest, ReplaysDiffusersStepForStep) {
  const char* path = std::getenv("RADIAL_SAMPLER_FIXTURE");
  ASSERT_NE(path, nullptr) << "RADIAL_SAMPLER_FIXTURE is not set (ctest sets it; the fixture test writes the file)";
  std::ifstream file(path);
  ASSERT_TRUE(file) << "cannot read " << path;
  const nlohmann::json fixture = nlohmann::json::parse(file);
  const nlohmann::json& cases = fixture["cases"];
  ASSERT_GE(cases.size(), 100u);
  std::map<std::string, double> worst;  // per sample dtype
  std::map<std::string, std::string> worst_case;
  int unipc_cases = 0, euler_cases = 0;
  for (const nlohmann::json& c : cases) {
    const std::string what = Describe(c);
    SCOPED_TRACE(what);
    FlowSamplerConfig config;
    config.name = c["name"].get<std::string>();
    config.steps = c["steps"].get<int64_t>();
    config.shift = c["shift"].get<double>();
    config.num_train_timesteps = c["num_train_timesteps"].get<int64_t>();
    if (c.contains("solver_order")) config.solver_order = c["solver_order"].get<int64_t>();
    (config.name == kFlowUniPCSampler ? unipc_cases : euler_cases)++;
    auto sampler = FlowSampler<Vec>::Create(config);
    ASSERT_TRUE(sampler.ok()) << sampler.status();

    // The schedule is reproduced exactly: these are what the model sees.
    EXPECT_EQ(sampler->timesteps(), c["timesteps"].get<std::vector<double>>());
    EXPECT_EQ(c["timesteps_dtype"], config.name == kFlowUniPCSampler ? "int64" : "float32");
    EXPECT_EQ(sampler->sigmas(), c["sigmas"].get<std::vector<double>>());

    Vec sample{c["initial"].get<std::vector<double>>()};
    const auto& outputs = c["model_outputs"];
    const auto& expected = c["samples"];
    ASSERT_EQ(static_cast<int64_t>(outputs.size()), config.steps);
    for (int64_t step = 0; step < config.steps; ++step) {
      auto next = sampler->Step(step, Vec{outputs[step].get<std::vector<double>>()}, sample);
      ASSERT_TRUE(next.ok()) << next.status();
      sample = *std::move(next);
      const std::vector<double> want = expected[step].get<std::vector<double>>();
      ASSERT_EQ(sample.values.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        const double error = Error(sample.values[i], want[i]);
        const std::string dtype = c["dtype"].get<std::string>();
        if (error > worst[dtype]) {
          worst[dtype] = error;
          worst_case[dtype] = what + " step " + std::to_string(step);
        }
        ASSERT_LE(error, kTolerance) << "step " << step << " element " << i << ": got " << sample.values[i]
                                     << ", diffusers " << want[i];
      }
    }
  }
  EXPECT_GT(unipc_cases, 0);
  EXPECT_GT(euler_cases, 0);
  std::cout << "flow sampler vs diffusers " << fixture["diffusers"].get<std::string>() << ": " << cases.size()
            << " cases (" << unipc_cases << " unipc, " << euler_cases << " euler)\n";
  for (const auto& [dtype, error] : worst) {
    std::cout << "  worst error, " << dtype << " samples: " << error << " (" << worst_case[dtype] << ")\n";
  }
}

TEST(FlowSamplerTest, SchedulesEqualDiffusersForEveryStepCount) {
  const char* path = std::getenv("RADIAL_SAMPLER_FIXTURE");
  ASSERT_NE(path, nullptr) << "RADIAL_SAMPLER_FIXTURE is not set";
  std::ifstream file(path);
  ASSERT_TRUE(file) << "cannot read " << path;
  const nlohmann::json schedules = nlohmann::json::parse(file)["schedules"];
  ASSERT_GE(schedules.size(), 1000u);
  for (const nlohmann::json& c : schedules) {
    FlowSamplerConfig config;
    config.name = c["name"].get<std::string>();
    config.steps = c["steps"].get<int64_t>();
    config.shift = c["shift"].get<double>();
    config.num_train_timesteps = c["num_train_timesteps"].get<int64_t>();
    const auto schedule = FlowSchedule::Create(config);
    ASSERT_TRUE(schedule.ok()) << schedule.status();
    EXPECT_EQ(schedule->timesteps(), c["timesteps"].get<std::vector<double>>()) << Describe(c);
    EXPECT_EQ(schedule->sigmas(), c["sigmas"].get<std::vector<double>>()) << Describe(c);
  }
}

FlowSamplerConfig UniPC(int64_t steps, int64_t order = 2) {
  return {.name = kFlowUniPCSampler, .steps = steps, .shift = 3.0, .num_train_timesteps = 1000, .solver_order = order};
}

TEST(FlowSamplerTest, UniPCWarmsUpAndEndsAtLowerOrder) {
  const auto schedule = FlowSchedule::Create(UniPC(6, 3));
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  std::vector<int64_t> predictor, corrector;
  for (int64_t step = 0; step < schedule->steps(); ++step) {
    predictor.push_back(schedule->coefficients(step).predictor_order);
    corrector.push_back(schedule->coefficients(step).corrector_order);
  }
  EXPECT_EQ(predictor, (std::vector<int64_t>{1, 2, 3, 3, 2, 1}));
  EXPECT_EQ(corrector, (std::vector<int64_t>{0, 1, 2, 3, 3, 2}));
  // The last step lands on the data prediction.
  EXPECT_EQ(schedule->coefficients(5).predictor_sample, 0.0);
  EXPECT_EQ(schedule->coefficients(5).predictor_x0, 1.0);
  EXPECT_EQ(schedule->sigmas().back(), 0.0);
}

TEST(FlowSamplerTest, ErrorsNameTheFieldAndTheAllowedRange) {
  auto message = [](FlowSamplerConfig config) { return std::string(FlowSchedule::Create(config).status().message()); };
  FlowSamplerConfig config = UniPC(8);
  config.name = "flow_dpm";
  EXPECT_EQ(message(config), "sampler.name: got 'flow_dpm', expected flow_euler or flow_unipc");
  EXPECT_EQ(message(UniPC(0)), "sampler.steps: got 0, expected >= 1");
  config = UniPC(8);
  config.shift = 0;
  EXPECT_EQ(message(config), "sampler.shift: got 0, expected a finite number > 0");
  config.shift = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(message(config), "sampler.shift: got nan, expected a finite number > 0");
  config = UniPC(8);
  config.num_train_timesteps = 0;
  EXPECT_EQ(message(config), "sampler.num_train_timesteps: got 0, expected >= 1");
  EXPECT_EQ(message(UniPC(8, 0)), "sampler.solver_order: got 0, expected 1..3 for flow_unipc");
  EXPECT_EQ(message(UniPC(8, 4)), "sampler.solver_order: got 4, expected 1..3 for flow_unipc");
  config = UniPC(8);
  config.shift = 1e12;  // every sigma rounds to the first one in float32
  EXPECT_EQ(FlowSchedule::Create(config).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(message(config).find("sampler.shift: got 1e+12"), std::string::npos) << message(config);
  config = UniPC(8, 7);
  config.name = kFlowEulerSampler;  // the order means nothing to Euler
  EXPECT_TRUE(FlowSchedule::Create(config).ok());
  EXPECT_TRUE(ValidateFlowSamplerConfig(UniPC(1, 1)).ok());
}

TEST(FlowSamplerTest, StepsRunOnceEachInOrder) {
  auto sampler = FlowSampler<Vec>::Create(UniPC(2));
  ASSERT_TRUE(sampler.ok());
  const Vec x{{1.0, 2.0}}, v{{0.5, -0.5}};
  auto skipped = sampler->Step(1, v, x);
  ASSERT_FALSE(skipped.ok());
  EXPECT_EQ(skipped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(skipped.status().message()),
            "sampler step: got 1, expected 0 (steps run once each, in order, from 0 to 1)");
  ASSERT_TRUE(sampler->Step(0, v, x).ok());
  EXPECT_FALSE(sampler->Step(0, v, x).ok());
  auto last = sampler->Step(1, v, x);
  ASSERT_TRUE(last.ok());
  EXPECT_FALSE(sampler->Step(2, v, *last).ok());
}

}  // namespace
}  // namespace radial::worker
