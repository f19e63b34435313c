// Which queued job goes to which worker: a pure function over the queue order and the workers' free
// slots, so the policy can be read and tested alone. Today's policy: in queue order (priority,
// then submission), each job goes to the first worker with a free slot that serves its model and is
// not draining; a job no free worker serves waits without blocking the jobs behind it.
#ifndef RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_
#define RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace radial::server {

struct QueuedJob {
  std::string job_id;
  std::string model;
};

struct WorkerSlots {
  const void* worker = nullptr;  // identifies the worker in the result
  const std::set<std::string>* models = nullptr;
  uint32_t free = 0;
};

struct Assignment {
  std::string job_id;
  const void* worker = nullptr;
};

std::vector<Assignment> PlanDispatch(const std::vector<QueuedJob>& queue_order, std::vector<WorkerSlots> workers);

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_
