// Connected workers and the models they serve. A model's limits are pinned by the first worker that
// announces it; later workers must announce the same limits. A model stays listed for `model_ttl`
// after its last worker left (rolling restarts), then disappears. Not thread-safe: owned by the
// Scheduler, used under its lock.
#ifndef RADIAL_SERVER_SCHEDULER_WORKER_REGISTRY_H_
#define RADIAL_SERVER_SCHEDULER_WORKER_REGISTRY_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "radial/v1/worker_service.pb.h"
#include "scheduler/worker_link.h"

namespace radial::server {

struct WorkerRecord {
  std::string id;
  std::set<std::string> models;
  uint32_t capacity = 1;
  // Jobs the worker is running. A job the scheduler ended under it (deadline, deletion) stays here
  // until the worker reports it stopped, so the slot is not handed out while still busy.
  std::set<std::string> running;
  bool draining = false;
  int64_t last_seen_ms = 0;  // steady clock: the last message of any kind
};

class WorkerRegistry {
 public:
  // Checks a hello against the pinned models: FAILED_PRECONDITION when a model is known with other
  // limits, ALREADY_EXISTS when the worker id is connected already. Registers nothing on error.
  absl::Status Register(WorkerLink* link, const v1::Hello& hello, int64_t now_ms);
  WorkerRecord* Find(WorkerLink* link);
  // Forgets the worker; its models' TTL starts when they have no worker left.
  void Remove(WorkerLink* link, int64_t now_ms);

  // Models with a connected worker, or within `ttl_ms` of losing their last one.
  std::vector<v1::ModelInfo> LiveModels() const;
  // Forgets models whose last worker left more than ttl_ms ago (their pinned limits with them).
  std::vector<std::string> ExpireModels(int64_t now_ms, int64_t ttl_ms);
  uint32_t WorkersServing(const std::string& model) const;
  // The first live model, for a scheduler with no --default-model.
  std::string FirstModel() const;

  std::map<WorkerLink*, WorkerRecord>& workers() { return workers_; }
  size_t size() const { return workers_.size(); }

 private:
  struct Model {
    v1::ModelInfo info;  // as pinned by the first worker (workers field unused)
    uint32_t workers = 0;
    int64_t orphaned_ms = 0;  // when the last worker left (steady clock); 0 while served
  };
  std::map<WorkerLink*, WorkerRecord> workers_;
  std::map<std::string, Model> models_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_WORKER_REGISTRY_H_
