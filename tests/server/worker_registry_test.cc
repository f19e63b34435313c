// WorkerRegistry alone: pinned model limits, duplicate ids, capacity, the model TTL.
#include "scheduler/worker_registry.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/server/scheduler_fakes.h"
#include "tests/server/tiny_model_info.h"

namespace radial::server {
namespace {

using radial::testing::FakeWorkerLink;
using radial::testing::HelloFor;
using radial::testing::TinyModelInfo;
using radial::testing::TinyModelNamed;

std::vector<std::string> Names(const std::vector<v1::ModelInfo>& models) {
  std::vector<std::string> names;
  for (const v1::ModelInfo& model : models) names.push_back(model.name());
  return names;
}

TEST(WorkerRegistryTest, RegisterRecordsTheWorkerAndItsModels) {
  WorkerRegistry registry;
  FakeWorkerLink link;
  ASSERT_TRUE(registry.Register(&link, HelloFor("w1", 2, {TinyModelInfo(), TinyModelNamed("other")}), 100).ok());
  ASSERT_NE(registry.Find(&link), nullptr);
  EXPECT_EQ(registry.Find(&link)->id, "w1");
  EXPECT_EQ(registry.Find(&link)->capacity, 2u);
  EXPECT_EQ(registry.Find(&link)->last_seen_ms, 100);
  EXPECT_EQ(registry.Find(&link)->models, (std::set<std::string>{"other", "tiny"}));
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(Names(registry.LiveModels()), (std::vector<std::string>{"other", "tiny"}));
  EXPECT_EQ(registry.WorkersServing("tiny"), 1u);
  EXPECT_EQ(registry.WorkersServing("unknown"), 0u);
  EXPECT_EQ(registry.FirstModel(), "other");
  FakeWorkerLink stranger;
  EXPECT_EQ(registry.Find(&stranger), nullptr);
}

TEST(WorkerRegistryTest, CapacityIsClampedToOneToSixtyFour) {
  WorkerRegistry registry;
  FakeWorkerLink zero, huge;
  ASSERT_TRUE(registry.Register(&zero, HelloFor("w0", 0), 1).ok());
  ASSERT_TRUE(registry.Register(&huge, HelloFor("w1", 1000), 1).ok());
  EXPECT_EQ(registry.Find(&zero)->capacity, 1u);
  EXPECT_EQ(registry.Find(&huge)->capacity, 64u);
}

TEST(WorkerRegistryTest, OtherLimitsForAPinnedModelAreRefusedAndRegisterNothing) {
  WorkerRegistry registry;
  FakeWorkerLink first, second;
  ASSERT_TRUE(registry.Register(&first, HelloFor("w1"), 1).ok());
  v1::ModelInfo wider = TinyModelInfo();
  wider.mutable_width()->set_max(512);
  const absl::Status refused = registry.Register(&second, HelloFor("w2", 1, {TinyModelNamed("fresh"), wider}), 2);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("'tiny'"), std::string::npos) << refused;
  EXPECT_EQ(registry.Find(&second), nullptr);
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(Names(registry.LiveModels()), std::vector<std::string>{"tiny"}) << "'fresh' was not pinned";
  EXPECT_EQ(registry.LiveModels()[0].width().max(), 256u);
  EXPECT_EQ(registry.WorkersServing("tiny"), 1u);

  v1::ModelInfo counted = TinyModelInfo();
  counted.set_workers(3);
  ASSERT_TRUE(registry.Register(&second, HelloFor("w2", 1, {counted}), 2).ok()) << "the worker count is no limit";
  EXPECT_EQ(registry.WorkersServing("tiny"), 2u);
  EXPECT_EQ(registry.LiveModels()[0].workers(), 2u);
}

TEST(WorkerRegistryTest, DuplicateIdsAndModelsAreRefused) {
  WorkerRegistry registry;
  FakeWorkerLink first, twin, doubled;
  ASSERT_TRUE(registry.Register(&first, HelloFor("w1"), 1).ok());
  EXPECT_EQ(registry.Register(&twin, HelloFor("w1"), 1).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Register(&doubled, HelloFor("w2", 1, {TinyModelNamed("x"), TinyModelNamed("x")}), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(registry.WorkersServing("x"), 0u);
}

TEST(WorkerRegistryTest, AModelOutlivesItsLastWorkerForTheTtl) {
  WorkerRegistry registry;
  FakeWorkerLink first, second;
  ASSERT_TRUE(registry.Register(&first, HelloFor("w1"), 1000).ok());
  ASSERT_TRUE(registry.Register(&second, HelloFor("w2"), 1000).ok());
  registry.Remove(&first, 2000);
  EXPECT_TRUE(registry.ExpireModels(1'000'000, 100).empty()) << "still served by w2";
  registry.Remove(&second, 3000);
  registry.Remove(&second, 3500);  // unknown now: no effect
  EXPECT_EQ(registry.size(), 0u);
  ASSERT_EQ(Names(registry.LiveModels()), std::vector<std::string>{"tiny"});
  EXPECT_EQ(registry.LiveModels()[0].workers(), 0u);
  EXPECT_EQ(registry.FirstModel(), "tiny");
  EXPECT_TRUE(registry.ExpireModels(3000 + 499, 500).empty());
  EXPECT_EQ(registry.ExpireModels(3000 + 500, 500), std::vector<std::string>{"tiny"});
  EXPECT_TRUE(registry.LiveModels().empty());
  EXPECT_EQ(registry.FirstModel(), "");

  v1::ModelInfo changed = TinyModelInfo();
  changed.set_guidance_max(3);
  ASSERT_TRUE(registry.Register(&first, HelloFor("w1", 1, {changed}), 4000).ok()) << "forgotten limits, new pin";
  EXPECT_FLOAT_EQ(registry.LiveModels()[0].guidance_max(), 3);
}

TEST(WorkerRegistryTest, AReturningWorkerStopsTheTtlAndMustMatchThePin) {
  WorkerRegistry registry;
  FakeWorkerLink first, second;
  ASSERT_TRUE(registry.Register(&first, HelloFor("w1"), 1000).ok());
  registry.Remove(&first, 2000);
  v1::ModelInfo changed = TinyModelInfo();
  changed.set_layers(3);
  EXPECT_EQ(registry.Register(&second, HelloFor("w2", 1, {changed}), 2100).code(),
            absl::StatusCode::kFailedPrecondition)
      << "an unserved model within its TTL keeps its pin";
  ASSERT_TRUE(registry.Register(&second, HelloFor("w2"), 2200).ok());
  EXPECT_TRUE(registry.ExpireModels(1'000'000, 500).empty()) << "served again";
  registry.Remove(&second, 10'000);
  EXPECT_TRUE(registry.ExpireModels(10'499, 500).empty()) << "the TTL starts again at the last departure";
  EXPECT_EQ(registry.ExpireModels(10'500, 500), std::vector<std::string>{"tiny"});
}

}  // namespace
}  // namespace radial::server
