#include "scheduler/job_queue.h"

#include <gtest/gtest.h>

namespace radial::server {
namespace {

std::optional<std::string> PopAny(JobQueue& queue) {
  return queue.PopFirst([](const std::string&) { return true; });
}

TEST(JobQueueTest, HigherPriorityFirstThenSubmissionOrder) {
  JobQueue queue(10);
  ASSERT_TRUE(queue.Push("a", 0, 1));
  ASSERT_TRUE(queue.Push("b", 5, 2));
  ASSERT_TRUE(queue.Push("c", 0, 3));
  ASSERT_TRUE(queue.Push("d", 5, 4));
  ASSERT_TRUE(queue.Push("e", -3, 5));
  EXPECT_EQ(queue.Position("b"), 0u);
  EXPECT_EQ(queue.Position("d"), 1u);
  EXPECT_EQ(queue.Position("a"), 2u);
  EXPECT_EQ(queue.Position("c"), 3u);
  EXPECT_EQ(queue.Position("e"), 4u);
  for (const char* expected : {"b", "d", "a", "c", "e"}) EXPECT_EQ(PopAny(queue), expected);
  EXPECT_EQ(PopAny(queue), std::nullopt);
}

TEST(JobQueueTest, BoundedAndUnique) {
  JobQueue queue(2);
  EXPECT_TRUE(queue.Push("a", 0, 1));
  EXPECT_FALSE(queue.Push("a", 0, 2)) << "an id is queued once";
  EXPECT_TRUE(queue.Push("b", 0, 3));
  EXPECT_TRUE(queue.full());
  EXPECT_FALSE(queue.Push("c", 10, 4)) << "a full queue takes nothing, whatever the priority";
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_TRUE(queue.Push("requeued", 0, 0, /*over_capacity=*/true, "", /*tag=*/0)) << "accepted work is never dropped";
  EXPECT_EQ(queue.Position("requeued"), 0u);
}

TEST(JobQueueTest, RemoveAndPositionOfMissing) {
  JobQueue queue(5);
  queue.Push("a", 0, 1);
  queue.Push("b", 0, 2);
  EXPECT_TRUE(queue.Remove("a"));
  EXPECT_FALSE(queue.Remove("a"));
  EXPECT_EQ(queue.Position("a"), std::nullopt);
  EXPECT_EQ(queue.Position("b"), 0u);
}

TEST(JobQueueTest, RequeuedJobKeepsItsPlace) {
  JobQueue queue(5);
  queue.Push("first", 0, 1);
  queue.Push("second", 0, 2);
  const std::optional<uint64_t> tag = queue.tag_of("first");
  ASSERT_EQ(PopAny(queue), "first");
  queue.Push("third", 0, 3);
  queue.Push("first", 0, 1, false, "", tag);  // its worker died: back with its original tag and sequence
  EXPECT_EQ(queue.Position("first"), 0u);
}

TEST(JobQueueTest, PopFirstSkipsIneligibleJobs) {
  JobQueue queue(5);
  queue.Push("tiny-1", 0, 1);
  queue.Push("big-1", 0, 2);
  queue.Push("tiny-2", 0, 3);
  const auto big_only = [](const std::string& id) { return id.rfind("big", 0) == 0; };
  EXPECT_EQ(queue.PopFirst(big_only), "big-1");
  EXPECT_EQ(queue.PopFirst(big_only), std::nullopt);
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.Position("tiny-2"), 1u);
}

TEST(JobQueueTest, CountsByPriority) {
  JobQueue queue(5);
  queue.Push("a", 0, 1);
  queue.Push("b", 0, 2);
  queue.Push("c", 7, 3);
  const auto counts = queue.CountByPriority();
  EXPECT_EQ(counts.at(0), 2u);
  EXPECT_EQ(counts.at(7), 1u);
}

TEST(JobQueueTest, TenantsTakeTurnsWithinAPriority) {
  JobQueue queue(2000);
  for (int i = 0; i < 1000; ++i) queue.Push("a" + std::to_string(i), 0, i + 1, false, "tenant-a");
  queue.Push("b0", 0, 1001, false, "tenant-b");
  EXPECT_EQ(queue.Position("b0"), 1u) << "the other tenant's single job waits behind one job, not 1000";
  queue.Push("b1", 0, 1002, false, "tenant-b");
  queue.Push("c0", 0, 1003, false, "tenant-c");
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) order.push_back(*PopAny(queue));
  EXPECT_EQ(order, (std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "a2"}));
  EXPECT_EQ(queue.CountOfTenant("tenant-a"), 997u);
  EXPECT_EQ(queue.CountOfTenant("tenant-b"), 0u);
}

TEST(JobQueueTest, ATenantArrivingLaterDoesNotJumpAheadOfServedTurns) {
  JobQueue queue(100);
  for (int i = 0; i < 4; ++i) queue.Push("a" + std::to_string(i), 0, i + 1, false, "a");
  ASSERT_EQ(PopAny(queue), "a0");
  ASSERT_EQ(PopAny(queue), "a1");
  // b arrives after two of a's turns were served: its first job goes next (a has had its turns),
  // then the two alternate; b gets no credit for the time it was not there.
  queue.Push("b0", 0, 10, false, "b");
  queue.Push("b1", 0, 11, false, "b");
  std::vector<std::string> order;
  while (auto id = PopAny(queue)) order.push_back(*id);
  EXPECT_EQ(order, (std::vector<std::string>{"b0", "a2", "b1", "a3"}));
}

TEST(JobQueueTest, PriorityStillWinsAcrossTenants) {
  JobQueue queue(100);
  for (int i = 0; i < 5; ++i) queue.Push("a" + std::to_string(i), 0, i + 1, false, "a");
  queue.Push("urgent", 5, 10, false, "a");
  queue.Push("b0", 0, 11, false, "b");
  EXPECT_EQ(queue.Position("urgent"), 0u);
  EXPECT_EQ(queue.Position("a0"), 1u);
  EXPECT_EQ(queue.Position("b0"), 2u);
}

}  // namespace
}  // namespace radial::server
