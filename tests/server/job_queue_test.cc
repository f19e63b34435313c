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
  EXPECT_TRUE(queue.Push("requeued", 0, 0, /*over_capacity=*/true)) << "accepted work is never dropped";
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
  ASSERT_EQ(PopAny(queue), "first");
  queue.Push("third", 0, 3);
  queue.Push("first", 0, 1);  // its worker died: back with its original sequence
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

}  // namespace
}  // namespace radial::server
