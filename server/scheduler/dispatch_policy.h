// Which queued job goes to which worker: a pure function over the queue order and the workers' free
// slots, so the policy can be read and tested alone. Today's policy: in queue order (priority, then
// tenants in turn, then submission; job_queue.h), each job goes to the first worker with a free slot
// that serves its model (the caller passes only workers that are not draining), unless its tenant
// has no running slot left (max_running); a job that cannot go waits without blocking the jobs
// behind it.
#ifndef RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_
#define RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace radial::server {

struct QueuedJob {
  std::string job_id;
  std::string model;
  std::string tenant = "default";
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

// tenant_room: running slots each tenant has left; a tenant it does not name has no limit.
std::vector<Assignment> PlanDispatch(const std::vector<QueuedJob>& queue_order, std::vector<WorkerSlots> workers,
                                     std::map<std::string, uint32_t> tenant_room = {});

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_DISPATCH_POLICY_H_
