#include "scheduler/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"

namespace radial::server {
namespace {

// Limits compare as announced, ignoring the live worker count.
std::string LimitsKey(v1::ModelInfo info) {
  info.clear_workers();
  std::string key;
  info.SerializeToString(&key);
  return key;
}

}  // namespace

absl::Status WorkerRegistry::Register(WorkerLink* link, const v1::Hello& hello, int64_t now_ms) {
  for (const auto& [other, worker] : workers_) {
    if (worker.id == hello.worker_id()) {
      return absl::AlreadyExistsError(absl::StrCat("hello.worker_id: got ", common::Echo(hello.worker_id()),
                                                   ", expected an id no connected worker uses"));
    }
  }
  std::set<std::string> names;
  for (const v1::ModelInfo& model : hello.models()) {
    if (!names.insert(model.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("hello.models: got model ", common::Echo(model.name()), " twice, expected each once"));
    }
    const auto pinned = models_.find(model.name());
    if (pinned != models_.end() && LimitsKey(pinned->second.info) != LimitsKey(model)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "hello.models: model ", common::Echo(model.name()),
          " is served with other limits or defaults than this worker announces; expected the ones pinned by its "
          "first worker (serve a bundle with the same manifest, or give the model another name)"));
    }
  }
  WorkerRecord& worker = workers_[link];
  worker.id = hello.worker_id();
  worker.capacity = std::clamp<uint32_t>(hello.capacity(), 1, 64);
  worker.last_seen_ms = now_ms;
  for (const v1::ModelInfo& model : hello.models()) {
    worker.models.insert(model.name());
    Model& entry = models_[model.name()];
    if (entry.workers == 0 && entry.orphaned_ms == 0) entry.info = model;  // first worker: pin
    ++entry.workers;
    entry.orphaned_ms = 0;
  }
  return absl::OkStatus();
}

WorkerRecord* WorkerRegistry::Find(WorkerLink* link) {
  const auto it = workers_.find(link);
  return it == workers_.end() ? nullptr : &it->second;
}

void WorkerRegistry::Remove(WorkerLink* link, int64_t now_ms) {
  const auto it = workers_.find(link);
  if (it == workers_.end()) return;
  for (const std::string& name : it->second.models) {
    Model& model = models_.at(name);
    if (--model.workers == 0) model.orphaned_ms = std::max<int64_t>(1, now_ms);
  }
  workers_.erase(it);
}

std::vector<v1::ModelInfo> WorkerRegistry::LiveModels() const {
  std::vector<v1::ModelInfo> live;
  for (const auto& [name, model] : models_) {
    live.push_back(model.info);
    live.back().set_workers(model.workers);
  }
  return live;
}

std::vector<std::string> WorkerRegistry::ExpireModels(int64_t now_ms, int64_t ttl_ms) {
  std::vector<std::string> expired;
  for (auto it = models_.begin(); it != models_.end();) {
    if (it->second.workers == 0 && now_ms - it->second.orphaned_ms >= ttl_ms) {
      expired.push_back(it->first);
      it = models_.erase(it);
    } else {
      ++it;
    }
  }
  return expired;
}

uint32_t WorkerRegistry::WorkersServing(const std::string& model) const {
  const auto it = models_.find(model);
  return it == models_.end() ? 0 : it->second.workers;
}

std::string WorkerRegistry::FirstModel() const { return models_.empty() ? "" : models_.begin()->first; }

}  // namespace radial::server
