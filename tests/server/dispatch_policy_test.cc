// PlanDispatch alone: queue order, free slots, models, and jobs that must wait without blocking.
#include "scheduler/dispatch_policy.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace radial::server {
namespace {

// Workers are identified by the address of their model set.
struct Worker {
  std::set<std::string> models;
  uint32_t free = 1;
};

std::vector<std::pair<std::string, const void*>> Plan(const std::vector<QueuedJob>& queue,
                                                      const std::vector<Worker*>& workers) {
  std::vector<WorkerSlots> slots;
  for (Worker* worker : workers) slots.push_back({worker, &worker->models, worker->free});
  std::vector<std::pair<std::string, const void*>> plan;
  for (const Assignment& assignment : PlanDispatch(queue, slots)) {
    plan.emplace_back(assignment.job_id, assignment.worker);
  }
  return plan;
}

using PlanList = std::vector<std::pair<std::string, const void*>>;

TEST(DispatchPolicyTest, NothingToDoWithoutJobsOrFreeWorkers) {
  Worker idle{{"tiny"}, 1};
  Worker busy{{"tiny"}, 0};
  EXPECT_TRUE(Plan({}, {&idle}).empty());
  EXPECT_TRUE(Plan({{"a", "tiny"}}, {}).empty());
  EXPECT_TRUE(Plan({{"a", "tiny"}}, {&busy}).empty());
}

TEST(DispatchPolicyTest, JobsGoInQueueOrderToTheFirstFreeWorker) {
  Worker first{{"tiny"}, 1};
  Worker second{{"tiny"}, 1};
  EXPECT_EQ(Plan({{"a", "tiny"}, {"b", "tiny"}, {"c", "tiny"}}, {&first, &second}),
            (PlanList{{"a", &first}, {"b", &second}}))
      << "c waits: no slot left";
}

TEST(DispatchPolicyTest, AWorkerWithSeveralSlotsTakesSeveralJobs) {
  Worker wide{{"tiny"}, 3};
  Worker narrow{{"tiny"}, 1};
  EXPECT_EQ(Plan({{"a", "tiny"}, {"b", "tiny"}, {"c", "tiny"}, {"d", "tiny"}, {"e", "tiny"}}, {&wide, &narrow}),
            (PlanList{{"a", &wide}, {"b", &wide}, {"c", &wide}, {"d", &narrow}}));
}

TEST(DispatchPolicyTest, AJobNoFreeWorkerServesDoesNotBlockTheJobsBehindIt) {
  Worker tiny{{"tiny"}, 1};
  Worker both{{"tiny", "big"}, 1};
  EXPECT_EQ(Plan({{"a", "big"}, {"b", "other"}, {"c", "tiny"}, {"d", "tiny"}}, {&tiny, &both}),
            (PlanList{{"a", &both}, {"c", &tiny}}))
      << "b's model has no worker; d finds no free slot";
  Worker only_tiny{{"tiny"}, 2};
  EXPECT_EQ(Plan({{"a", "big"}, {"b", "tiny"}}, {&only_tiny}), (PlanList{{"b", &only_tiny}}));
}

TEST(DispatchPolicyTest, BusyWorkersAreSkipped) {
  Worker busy{{"tiny"}, 0};
  Worker free{{"tiny"}, 1};
  EXPECT_EQ(Plan({{"a", "tiny"}}, {&busy, &free}), (PlanList{{"a", &free}}));
}

}  // namespace
}  // namespace radial::server
