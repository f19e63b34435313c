#include "scheduler/dispatch_policy.h"

namespace radial::server {

std::vector<Assignment> PlanDispatch(const std::vector<QueuedJob>& queue_order, std::vector<WorkerSlots> workers,
                                     std::map<std::string, uint32_t> tenant_room) {
  std::vector<Assignment> plan;
  uint64_t free_total = 0;
  for (const WorkerSlots& worker : workers) free_total += worker.free;
  for (const QueuedJob& job : queue_order) {
    if (free_total == 0) break;
    const auto room = tenant_room.find(job.tenant);
    if (room != tenant_room.end() && room->second == 0) continue;
    for (WorkerSlots& worker : workers) {
      if (worker.free == 0 || worker.models->count(job.model) == 0) continue;
      plan.push_back({job.job_id, worker.worker});
      if (room != tenant_room.end()) --room->second;
      --worker.free;
      --free_total;
      break;
    }
  }
  return plan;
}

}  // namespace radial::server
