#include "scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "request_validator.h"

namespace radial::server {
namespace {

// google.rpc.Code values carried in v1::Error.
constexpr int kCodeCancelled = 1;
constexpr int kCodeResourceExhausted = 8;
constexpr int kCodeInternal = 13;
constexpr int kCodeUnavailable = 14;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Ended(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

absl::Status CheckJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: got an empty id, expected a job id");
  return absl::OkStatus();
}

}  // namespace

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      queue_(options_.queue_capacity),
      default_model_(options_.default_model),
      random_(std::random_device{}()) {
  // Jobs that had not ended when the store was last written run again from the start.
  auto unfinished = store_->LoadUnfinished();
  if (!unfinished.ok()) {
    spdlog::error("scheduler: cannot load unfinished jobs: {}", unfinished.status().ToString());
    return;
  }
  for (v1::Job& job : *unfinished) {
    JobRecord record;
    record.job = std::move(job);
    record.sequence = next_sequence_++;
    const std::string id = record.job.id();
    Requeue(record);
    spdlog::info("job_id={} requeued from the store", id);
    jobs_.emplace(id, std::move(record));
  }
}

// ---------------------------------------------------------------- clients

absl::StatusOr<v1::Job> Scheduler::Submit(const v1::GenerateRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (models_.empty()) {
    return absl::UnavailableError("model: no worker has announced a model yet; retry when a worker is connected");
  }
  std::vector<v1::ModelInfo> models;
  for (const auto& [name, model] : models_) models.push_back(model);
  auto resolved = ResolveRequest(request, models, default_model_, random_());
  if (!resolved.ok()) return resolved.status();
  if (queue_.full()) {
    return absl::ResourceExhaustedError(absl::StrCat("queue: got ", queue_.size(), " queued jobs, expected fewer than ",
                                                     queue_.capacity(), "; retry later"));
  }
  JobRecord record;
  std::string id;
  do {
    id = absl::StrFormat("%016x", random_());
  } while (jobs_.count(id) != 0);
  record.job.set_id(id);
  record.job.set_state(v1::JOB_STATE_QUEUED);
  *record.job.mutable_request() = *std::move(resolved);
  record.job.set_created_unix_ms(NowUnixMs());
  record.job.mutable_progress()->set_stage(v1::STAGE_QUEUED);
  record.sequence = next_sequence_++;
  queue_.Push(id, record.job.request().priority(), record.sequence);
  auto& stored = jobs_.emplace(id, std::move(record)).first->second;
  spdlog::info("job_id={} queued model={} {}x{}x{} steps={} priority={}", id, stored.job.request().model(),
               stored.job.request().width(), stored.job.request().height(), stored.job.request().frames(),
               stored.job.request().steps(), stored.job.request().priority());
  Persist(stored);
  Dispatch();
  return View(stored);
}

absl::StatusOr<Scheduler::JobRecord*> Scheduler::Lookup(const std::string& job_id) {
  if (auto status = CheckJobId(job_id); !status.ok()) return status;
  JobRecord* record = FindJob(job_id);
  if (record == nullptr) {
    return absl::NotFoundError(absl::StrCat("job_id: got '", job_id,
                                            "', expected a job this scheduler knows (ended jobs are kept for the last ",
                                            options_.max_finished_jobs, ")"));
  }
  return record;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const absl::StatusOr<JobRecord*> record = Lookup(job_id);
  if (!record.ok()) return record.status();
  return View(**record);
}

absl::StatusOr<v1::Job> Scheduler::Cancel(const std::string& job_id) {
  Wakeups wakeups;
  v1::Job view;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const absl::StatusOr<JobRecord*> found = Lookup(job_id);
    if (!found.ok()) return found.status();
    JobRecord* record = *found;
    if (record->job.state() == v1::JOB_STATE_QUEUED) {
      queue_.Remove(job_id);
      Finish(*record, v1::JOB_STATE_CANCELLED, kCodeCancelled, "cancelled by a client while queued", wakeups);
    } else if (record->job.state() == v1::JOB_STATE_RUNNING && !record->cancel_requested) {
      record->cancel_requested = true;
      v1::SchedulerMessage message;
      message.mutable_cancel()->set_job_id(job_id);
      record->worker->Send(message);
      spdlog::info("job_id={} cancel sent to its worker", job_id);
    }
    view = View(*record);
  }
  WakeAll(wakeups);
  return view;
}

v1::ListModelsResponse Scheduler::ListModels() {
  std::lock_guard<std::mutex> lock(mutex_);
  v1::ListModelsResponse response;
  for (const auto& [name, model] : models_) {
    v1::ModelInfo& info = *response.add_models();
    info = model;
    uint32_t serving = 0;
    for (const auto& [link, worker] : workers_) serving += worker.models.count(name);
    info.set_workers(serving);
  }
  response.set_default_model(default_model_);
  return response;
}

absl::StatusOr<WatchCursor> Scheduler::StartWatch(const std::string& job_id, uint64_t from_byte_offset) {
  std::lock_guard<std::mutex> lock(mutex_);
  const absl::StatusOr<JobRecord*> found = Lookup(job_id);
  if (!found.ok()) return found.status();
  const JobRecord* record = *found;
  if (Ended(record->job.state()) && from_byte_offset > record->video.size()) {
    return absl::InvalidArgumentError(absl::StrCat("from_byte_offset: got ", from_byte_offset,
                                                   ", expected at most ", record->video.size(),
                                                   " (the size of the job's video)"));
  }
  WatchCursor cursor;
  cursor.offset = from_byte_offset;
  cursor.restarts_seen = record->restarts;
  return cursor;
}

WatchPoll Scheduler::NextEvent(const std::string& job_id, WatchCursor& cursor, v1::JobEvent& event,
                               const std::weak_ptr<Waiter>& waiter) {
  std::lock_guard<std::mutex> lock(mutex_);
  JobRecord* record = FindJob(job_id);
  if (record == nullptr || cursor.ended) return WatchPoll::kEnd;  // forgotten jobs end their watches
  event.Clear();
  event.set_job_id(job_id);
  const v1::Job& job = record->job;
  if (!cursor.accepted_sent) {
    cursor.accepted_sent = true;
    event.mutable_accepted()->set_queue_position(queue_.Position(job_id).value_or(0));
    *event.mutable_accepted()->mutable_request() = job.request();
    return WatchPoll::kEvent;
  }
  if (cursor.restarts_seen != record->restarts) {
    cursor.restarts_seen = record->restarts;
    cursor.offset = 0;
    event.mutable_restarted()->set_attempt(job.attempts() + (job.state() == v1::JOB_STATE_QUEUED ? 1 : 0));
    event.mutable_restarted()->set_reason(record->restart_reason);
    return WatchPoll::kEvent;
  }
  if (cursor.offset < record->video.size()) {
    const size_t size = std::min<size_t>(options_.max_chunk_bytes, record->video.size() - cursor.offset);
    event.mutable_chunk()->set_offset(cursor.offset);
    event.mutable_chunk()->set_data(record->video.substr(cursor.offset, size));
    cursor.offset += size;
    return WatchPoll::kEvent;
  }
  const bool ended = Ended(job.state());
  if (!ended && record->progress_updates > cursor.progress_seen) {
    cursor.progress_seen = record->progress_updates;
    *event.mutable_progress() = job.progress();
    return WatchPoll::kEvent;
  }
  if (ended) {
    cursor.ended = true;
    if (job.state() == v1::JOB_STATE_SUCCEEDED) {
      *event.mutable_completed()->mutable_stats() = job.stats();
    } else if (job.state() == v1::JOB_STATE_CANCELLED) {
      *event.mutable_cancelled() = job.error();
    } else {
      *event.mutable_failed() = job.error();
    }
    return WatchPoll::kEvent;
  }
  record->waiters.push_back(waiter);
  return WatchPoll::kWait;
}

// ---------------------------------------------------------------- workers

absl::Status Scheduler::WorkerHello(WorkerLink* link, const v1::Hello& hello) {
  if (hello.worker_id().empty()) return absl::InvalidArgumentError("hello.worker_id: got an empty id, expected a unique worker id");
  if (hello.models().empty()) return absl::InvalidArgumentError("hello.models: got none, expected at least one model");
  for (const v1::ModelInfo& model : hello.models()) {
    if (model.name().empty()) return absl::InvalidArgumentError("hello.models.name: got an empty name, expected a model name");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (workers_.count(link) != 0) return absl::FailedPreconditionError("hello: got a second hello, expected one per stream");
  WorkerRecord& worker = workers_[link];
  worker.id = hello.worker_id();
  worker.capacity = std::max<uint32_t>(1, hello.capacity());
  for (const v1::ModelInfo& model : hello.models()) {
    worker.models.insert(model.name());
    models_[model.name()] = model;
    if (default_model_.empty()) default_model_ = model.name();
  }
  spdlog::info("worker {} connected: {} model(s), capacity {}, device '{}'", worker.id, worker.models.size(),
               worker.capacity, hello.device());
  Dispatch();
  return absl::OkStatus();
}

void Scheduler::WorkerMessage(WorkerLink* link, const v1::WorkerMessage& message) {
  Wakeups wakeups;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto worker = workers_.find(link);
    if (worker == workers_.end()) return;
    std::string job_id;
    switch (message.message_case()) {
      case v1::WorkerMessage::kProgress: job_id = message.progress().job_id(); break;
      case v1::WorkerMessage::kChunk: job_id = message.chunk().job_id(); break;
      case v1::WorkerMessage::kDone: job_id = message.done().job_id(); break;
      case v1::WorkerMessage::kFailed: job_id = message.failed().job_id(); break;
      default: return;  // heartbeats carry no job
    }
    JobRecord* record = FindJob(job_id);
    if (record == nullptr || record->worker != link || record->job.state() != v1::JOB_STATE_RUNNING) {
      spdlog::warn("job_id={} message from worker {} ignored: the job is not running there", job_id, worker->second.id);
      return;
    }
    // Only a job's end frees a worker slot, so only then can anything more be dispatched.
    bool ended = true;
    switch (message.message_case()) {
      case v1::WorkerMessage::kProgress:
        ended = false;
        *record->job.mutable_progress() = message.progress().progress();
        ++record->progress_updates;
        Changed(*record, wakeups);
        break;
      case v1::WorkerMessage::kChunk: {
        const v1::Chunk& chunk = message.chunk().chunk();
        std::string error;
        if (chunk.offset() != record->video.size()) {
          error = absl::StrCat("worker sent a chunk at offset ", chunk.offset(), ", expected ", record->video.size());
        } else if (record->video.size() + chunk.data().size() > options_.max_video_bytes) {
          error = absl::StrCat("video: got more than ", options_.max_video_bytes, " bytes, expected at most that");
        }
        if (!error.empty()) {
          v1::SchedulerMessage cancel;
          cancel.mutable_cancel()->set_job_id(job_id);
          link->Send(cancel);
          Finish(*record, v1::JOB_STATE_FAILED, chunk.offset() != record->video.size() ? kCodeInternal : kCodeResourceExhausted,
                 error, wakeups);
          break;
        }
        record->video += chunk.data();
        Changed(*record, wakeups);
        ended = false;
        break;
      }
      case v1::WorkerMessage::kDone: {
        v1::JobStats& stats = *record->job.mutable_stats();
        stats = message.done().stats();
        stats.set_worker_id(worker->second.id);
        stats.set_video_bytes(record->video.size());
        Finish(*record, v1::JOB_STATE_SUCCEEDED, 0, "", wakeups);
        break;
      }
      case v1::WorkerMessage::kFailed: {
        const v1::Error& error = message.failed().error();
        if (record->cancel_requested) {
          Finish(*record, v1::JOB_STATE_CANCELLED, kCodeCancelled, "cancelled by a client while running", wakeups);
        } else {
          Finish(*record, v1::JOB_STATE_FAILED, error.code() == 0 ? kCodeInternal : error.code(), error.message(),
                 wakeups);
        }
        break;
      }
      default:
        break;
    }
    if (ended) Dispatch();
  }
  WakeAll(wakeups);
}

void Scheduler::WorkerGone(WorkerLink* link, const std::string& reason) {
  Wakeups wakeups;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto worker = workers_.find(link);
    if (worker == workers_.end()) return;
    const std::string worker_id = worker->second.id;
    const std::set<std::string> running = worker->second.running;
    workers_.erase(worker);
    spdlog::warn("worker {} disconnected ({}) with {} running job(s)", worker_id, reason, running.size());
    for (const std::string& job_id : running) {
      JobRecord& record = jobs_.at(job_id);
      record.worker = nullptr;
      const uint32_t attempt = record.job.attempts();
      if (record.cancel_requested) {
        Finish(record, v1::JOB_STATE_CANCELLED, kCodeCancelled, "cancelled by a client while running", wakeups);
      } else if (attempt < options_.max_attempts) {
        record.video.clear();
        ++record.restarts;
        record.restart_reason = absl::StrCat("worker ", worker_id, " disconnected (", reason, ") during attempt ",
                                             attempt, " of ", options_.max_attempts);
        Requeue(record);
        spdlog::warn("job_id={} requeued: {}", job_id, record.restart_reason);
        Persist(record);
        Changed(record, wakeups);
      } else {
        Finish(record, v1::JOB_STATE_FAILED, kCodeUnavailable,
               absl::StrCat("worker ", worker_id, " disconnected (", reason, ") during attempt ", attempt, " of ",
                            options_.max_attempts, "; the job is not retried again"),
               wakeups);
      }
    }
    Dispatch();
  }
  WakeAll(wakeups);
}

size_t Scheduler::queued_jobs() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

size_t Scheduler::connected_workers() {
  std::lock_guard<std::mutex> lock(mutex_);
  return workers_.size();
}

// ---------------------------------------------------------------- internals (under mutex_)

Scheduler::JobRecord* Scheduler::FindJob(const std::string& job_id) {
  const auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

v1::Job Scheduler::View(const JobRecord& record) const {
  v1::Job job = record.job;
  job.set_queue_position(static_cast<uint32_t>(queue_.Position(job.id()).value_or(0)));
  job.set_bytes_produced(record.video.size());
  return job;
}

void Scheduler::Requeue(JobRecord& record) {
  record.job.set_state(v1::JOB_STATE_QUEUED);
  record.job.clear_progress();
  record.job.mutable_progress()->set_stage(v1::STAGE_QUEUED);
  queue_.Push(record.job.id(), record.job.request().priority(), record.sequence, /*over_capacity=*/true);
}

void Scheduler::Dispatch() {
  for (auto& [link, worker] : workers_) {
    while (worker.running.size() < worker.capacity) {
      const auto job_id = queue_.PopFirst(
          [&](const std::string& id) { return worker.models.count(jobs_.at(id).job.request().model()) != 0; });
      if (!job_id) break;
      JobRecord& record = jobs_.at(*job_id);
      record.job.set_state(v1::JOB_STATE_RUNNING);
      record.job.set_started_unix_ms(NowUnixMs());
      record.job.set_attempts(record.job.attempts() + 1);
      record.job.set_worker_id(worker.id);
      record.worker = link;
      worker.running.insert(*job_id);
      v1::SchedulerMessage message;
      v1::Assign& assign = *message.mutable_assign();
      assign.set_job_id(*job_id);
      *assign.mutable_request() = record.job.request();
      assign.set_attempt(record.job.attempts());
      link->Send(message);
      spdlog::info("job_id={} assigned to worker {} (attempt {})", *job_id, worker.id, record.job.attempts());
      Persist(record);
    }
  }
}

void Scheduler::Finish(JobRecord& record, v1::JobState state, int code, const std::string& message,
                       Wakeups& wakeups) {
  const std::string& id = record.job.id();
  record.job.set_state(state);
  record.job.set_finished_unix_ms(NowUnixMs());
  if (code != 0) {
    record.job.mutable_error()->set_code(code);
    record.job.mutable_error()->set_message(message);
  }
  if (state == v1::JOB_STATE_SUCCEEDED) {
    v1::JobStats& stats = *record.job.mutable_stats();
    stats.set_queue_seconds((record.job.started_unix_ms() - record.job.created_unix_ms()) / 1000.0);
    stats.set_total_seconds((record.job.finished_unix_ms() - record.job.created_unix_ms()) / 1000.0);
  }
  if (record.worker != nullptr) {
    const auto worker = workers_.find(record.worker);
    if (worker != workers_.end()) worker->second.running.erase(id);
    record.worker = nullptr;
  }
  spdlog::info("job_id={} ended {}{}{}", id, v1::JobState_Name(state), code != 0 ? ": " : "", message);
  finished_order_.push_back(id);
  Persist(record);
  Changed(record, wakeups);
  ForgetOldJobs();
}

void Scheduler::Changed(JobRecord& record, Wakeups& wakeups) {
  for (auto& waiter : record.waiters) wakeups.push_back(std::move(waiter));
  record.waiters.clear();
}

void Scheduler::Persist(const JobRecord& record) {
  if (auto status = store_->Save(View(record)); !status.ok()) {
    spdlog::error("job_id={} not persisted: {}", record.job.id(), status.ToString());
  }
}

void Scheduler::ForgetOldJobs() {
  // The job that just ended is last in finished_order_, so it is never the one forgotten here.
  while (finished_order_.size() > std::max<size_t>(1, options_.max_finished_jobs)) {
    jobs_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

void Scheduler::WakeAll(Wakeups& wakeups) {
  for (auto& weak : wakeups) {
    if (auto waiter = weak.lock()) waiter->Wake();
  }
}

}  // namespace radial::server
