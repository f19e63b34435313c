#include "scheduler/scheduler.h"

#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "radial/common/utf8.h"
#include "rpc/status_convert.h"
#include "scheduler/dispatch_policy.h"
#include "scheduler/job_events.h"

namespace radial::server {
namespace {

using common::Echo;

constexpr uint32_t kDefaultPageSize = 50;
constexpr uint32_t kMaxPageSize = 1000;
constexpr size_t kMaxWorkerIdBytes = 128;
constexpr int kMaxModelsPerWorker = 16;

int64_t SystemMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Bytes from the kernel's CSPRNG (getrandom blocks only until the pool is first seeded at boot).
void RandomBytes(void* out, size_t size) {
  auto* bytes = static_cast<unsigned char*>(out);
  while (size > 0) {
    const ssize_t got = getrandom(bytes, size, 0);
    if (got > 0) {
      bytes += got;
      size -= static_cast<size_t>(got);
    }
  }
}

// 128 random bits as 32 hex characters: unguessable, unrelated to any seed.
std::string NewJobId() {
  uint64_t words[2];
  RandomBytes(words, sizeof(words));
  return absl::StrFormat("%016x%016x", words[0], words[1]);
}

// FNV-1a, 32 bits: enough to tell prompts apart in logs, too short to be worth inverting.
uint32_t PromptHash(std::string_view text) {
  uint32_t hash = 2166136261u;
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
  return hash;
}

std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  return name.rfind("JOB_STATE_", 0) == 0 ? name.substr(10) : name;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options,
                                                             std::unique_ptr<JobStore> store) {
  if (!options.wall_ms) options.wall_ms = SystemMs;
  if (!options.steady_ms) options.steady_ms = SteadyMs;
  options.retention.max_jobs = std::max<size_t>(1, options.retention.max_jobs);
  std::unique_ptr<Scheduler> scheduler(new Scheduler(std::move(options), std::move(store)));
  RADIAL_RETURN_IF_ERROR(scheduler->Load());
  return scheduler;
}

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store)
    : options_(std::move(options)), store_(std::move(store)), queue_(options_.queue_capacity) {
  uint64_t seed;
  RandomBytes(&seed, sizeof(seed));
  seeds_.seed(seed);
}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::Load() {
  absl::StatusOr<std::vector<StoredJob>> rows = store_->LoadAll();
  if (!rows.ok()) {
    return absl::Status(rows.status().code(),
                        absl::StrCat("store ", store_->Describe(), ": cannot load jobs: ", rows.status().message()));
  }
  Effects effects;
  size_t queued = 0, rerun = 0, ended = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (StoredJob& row : *rows) {
      next_sequence_ = std::max(next_sequence_, row.sequence + 1);
      JobRecord record;
      record.stored = std::move(row);
      record.durable = true;
      if (record.job().tenant().empty()) record.job().set_tenant(kDefaultTenant);
      const v1::JobState state = record.job().state();
      if (state == v1::JOB_STATE_QUEUED || state == v1::JOB_STATE_RUNNING) {
        const bool was_running = state == v1::JOB_STATE_RUNNING;
        JobRecord& inserted = jobs_.Insert(std::move(record));
        if (was_running && inserted.job().error().code() == static_cast<int>(absl::StatusCode::kCancelled)) {
          Finish(inserted, v1::JOB_STATE_CANCELLED,
                 absl::CancelledError("cancelled by a client while running (confirmed at the scheduler's restart)"),
                 effects);
          ++ended;
        } else if (was_running) {
          ++inserted.stored.restarts;
          inserted.restart_reason =
              absl::StrCat("the scheduler restarted during attempt ", inserted.job().attempts());
          if (options_.observer != nullptr) options_.observer->JobRequeued("scheduler_restart");
          Requeue(inserted, effects);
          ++rerun;
        } else {
          inserted.queued_since_ms = inserted.job().created_unix_ms();
          Enqueue(inserted);
          ++queued;
        }
      } else if (record.ended()) {
        jobs_.Insert(std::move(record));
        ++ended;
      } else {
        spdlog::error("job_id={} in the store has state {}; ignored", record.id(), static_cast<int>(state));
      }
    }
    Seal(effects);
  }
  spdlog::info("scheduler: store {}: {} queued, {} running again, {} ended jobs loaded", store_->Describe(), queued,
               rerun, ended);
  if (absl::Status status = Apply(effects); !status.ok()) {
    spdlog::error("scheduler: store {}: requeued jobs not saved: {}", store_->Describe(), status.ToString());
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- clients

absl::StatusOr<v1::Job> Scheduler::Submit(const v1::GenerateRequest& request, const Caller& caller, bool watching) {
  Effects effects;
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutting_down_) return absl::UnavailableError("scheduler: shutting down to restart; retry shortly");
    if (!request.request_id().empty()) {
      if (const std::string* existing = jobs_.FindRequestId(caller.tenant, request.request_id())) {
        const JobRecord& record = *jobs_.Find(*existing);
        if (!record.durable) {
          return absl::AbortedError("request_id: a Submit with this request_id is still being saved; retry");
        }
        if (watching) ++jobs_.Find(*existing)->watchers;
        return View(record);
      }
    }
    const std::vector<v1::ModelInfo> models = workers_.LiveModels();
    if (models.empty()) {
      return absl::UnavailableError("model: no worker serves a model now; retry when a worker is connected");
    }
    const std::string default_model = options_.default_model.empty() ? workers_.FirstModel() : options_.default_model;
    RADIAL_ASSIGN_OR_RETURN(v1::GenerateRequest resolved,
                            ResolveRequest(request, models, default_model, seeds_(), options_.request_defaults));
    RADIAL_RETURN_IF_ERROR(CheckQuota(caller));
    if (queue_.size() + pending_submits_ >= queue_.capacity()) {
      return absl::ResourceExhaustedError(absl::StrCat("queue: got ", queue_.size(), " queued jobs, expected fewer than ",
                                                       queue_.capacity(), " (--queue-capacity); retry later"));
    }
    do {
      id = NewJobId();
    } while (jobs_.Find(id) != nullptr);
    JobRecord record;
    v1::Job& job = record.job();
    job.set_id(id);
    job.set_tenant(caller.tenant);
    job.set_state(v1::JOB_STATE_QUEUED);
    *job.mutable_request() = std::move(resolved);
    job.set_created_unix_ms(options_.wall_ms());
    job.mutable_progress()->set_stage(v1::STAGE_QUEUED);
    record.stored.sequence = next_sequence_++;
    record.queued_since_ms = job.created_unix_ms();
    Persist(record, effects);
    jobs_.Insert(std::move(record));
    ++pending_submits_;
    Seal(effects);
  }
  const absl::Status written = Apply(effects);
  Effects after;
  v1::Job view;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --pending_submits_;
    JobRecord* record = jobs_.Find(id);  // invisible to every other call until durable: still here
    if (!written.ok()) {
      jobs_.Erase(id);
      spdlog::error("job_id={} not accepted: {}", id, written.ToString());
      return absl::UnavailableError(
          absl::StrCat("store ", store_->Describe(), ": the job could not be saved and was not accepted (",
                       written.message(), "); retry"));
    }
    record->durable = true;
    if (watching) ++record->watchers;
    const v1::GenerateRequest& accepted = record->job().request();
    Enqueue(*record);
    if (options_.observer != nullptr) options_.observer->JobSubmitted(accepted.model());
    // Prompts are private: at info only their length and a short hash (to match reports of one prompt).
    spdlog::info("job_id={} queued tenant={} model={} {}x{}x{} steps={} priority={} prompt={} chars, hash {:08x}",
                 id, common::Echo(record->job().tenant()), accepted.model(), accepted.width(), accepted.height(),
                 accepted.frames(), accepted.steps(), accepted.priority(), common::Utf8Length(accepted.prompt()),
                 PromptHash(accepted.prompt()));
    spdlog::debug("job_id={} prompt: {}", id, accepted.prompt());
    Dispatch(after);
    view = View(*jobs_.Find(id));
    Seal(after);
  }
  (void)Apply(after);
  return view;
}

absl::Status Scheduler::CheckQuota(const Caller& caller) {
  const TenantLimits& limits = options_.tenancy.For(caller.tenant);
  if (limits.max_queued > 0 && queue_.CountOfTenant(caller.tenant) >= limits.max_queued) {
    return absl::ResourceExhaustedError(absl::StrCat("quota max_queued: tenant ", Echo(caller.tenant), " has ",
                                                     queue_.CountOfTenant(caller.tenant),
                                                     " queued jobs, expected fewer than ", limits.max_queued,
                                                     "; retry when some have started"));
  }
  if (limits.submits_per_minute > 0) {
    Bucket& bucket = submit_buckets_[caller.tenant];
    const int64_t now = options_.steady_ms();
    const double capacity = limits.submits_per_minute;
    if (bucket.updated_ms == 0) bucket.tokens = capacity;
    bucket.tokens = std::min(capacity, bucket.tokens + (now - bucket.updated_ms) * capacity / 60000.0);
    bucket.updated_ms = now;
    if (bucket.tokens < 1.0) {
      return absl::ResourceExhaustedError(absl::StrCat("quota submits_per_minute: tenant ", Echo(caller.tenant),
                                                       " submitted more than ", limits.submits_per_minute,
                                                       " jobs per minute; retry in a few seconds"));
    }
    bucket.tokens -= 1.0;
  }
  return absl::OkStatus();
}

void Scheduler::Enqueue(JobRecord& record) {
  const v1::Job& job = record.job();
  queue_.Push(record.id(), job.request().priority(), record.stored.sequence, /*over_capacity=*/true, job.tenant(),
              record.queue_tag);
  record.queue_tag = queue_.tag_of(record.id());
}

absl::StatusOr<JobRecord*> Scheduler::Lookup(const std::string& job_id, const Caller& caller) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: got an empty id, expected a job id");
  JobRecord* record = jobs_.FindVisible(job_id);
  if (record == nullptr || !caller.Sees(record->job().tenant())) {  // another tenant's job does not exist
    return absl::NotFoundError(absl::StrCat("job_id: got ", Echo(job_id),
                                            ", expected a job this scheduler keeps (ended jobs are kept up to "
                                            "--retain-jobs, --retain-hours and --retain-bytes)"));
  }
  return record;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id, const Caller& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  RADIAL_ASSIGN_OR_RETURN(const JobRecord* record, Lookup(job_id, caller));
  return View(*record);
}

absl::StatusOr<v1::Job> Scheduler::Cancel(const std::string& job_id, const Caller& caller) {
  Effects effects;
  v1::Job view;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    RADIAL_ASSIGN_OR_RETURN(JobRecord * record, Lookup(job_id, caller));
    if (record->ended() || record->finishing) {
      return absl::FailedPreconditionError(
          absl::StrCat("job_id: job ", job_id, " has already ",
                       record->ended() ? absl::StrCat("ended (", StateName(record->job().state()), ")")
                                       : std::string("finished running (its video is being saved)"),
                       "; expected a queued or running job"));
    }
    if (record->job().state() == v1::JOB_STATE_QUEUED) {
      queue_.Remove(job_id);
      Finish(*record, v1::JOB_STATE_CANCELLED, absl::CancelledError("cancelled by a client while queued"), effects);
    } else if (!record->cancel_requested && record->worker != nullptr) {
      record->cancel_requested = true;
      // Saved as the job's pending error, so a restart before the worker confirms still cancels it.
      *record->job().mutable_error() = ToProtoError(absl::CancelledError("cancel requested by a client"));
      Persist(*record, effects);
      v1::SchedulerMessage message;
      message.mutable_cancel()->set_job_id(job_id);
      message.mutable_cancel()->set_reason("cancelled by a client");
      record->worker->Send(message);
      spdlog::info("job_id={} cancel sent to its worker", job_id);
    }
    view = View(*record);
    Seal(effects);
  }
  if (absl::Status status = Apply(effects); !status.ok()) {
    return absl::UnavailableError(absl::StrCat("store ", store_->Describe(),
                                               ": the job is cancelled but this could not be saved (",
                                               status.message(), "); it may run again after a restart"));
  }
  return view;
}

absl::StatusOr<v1::Job> Scheduler::Delete(const std::string& job_id, const Caller& caller) {
  Effects effects;
  v1::Job view;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    RADIAL_ASSIGN_OR_RETURN(JobRecord * record, Lookup(job_id, caller));
    view = View(*record);
    if (record->job().state() == v1::JOB_STATE_QUEUED) queue_.Remove(job_id);
    if (record->worker != nullptr) StopOnWorker(*record, "the job was deleted by a client");
    spdlog::info("job_id={} deleted by a client ({})", job_id, StateName(record->job().state()));
    Remove(*record, effects);
    Seal(effects);
  }
  if (absl::Status status = Apply(effects); !status.ok()) {
    return absl::UnavailableError(absl::StrCat("store ", store_->Describe(), ": the job was removed but the store ",
                                               "could not be updated (", status.message(),
                                               "); it may reappear after a restart"));
  }
  return view;
}

absl::StatusOr<v1::ListJobsResponse> Scheduler::ListJobs(const v1::ListJobsRequest& request, const Caller& caller) {
  uint32_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  if (page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: got ", request.page_size(), ", expected 0 (", kDefaultPageSize, ") to ", kMaxPageSize));
  }
  uint64_t before = 0;
  if (!request.page_token().empty() && (!absl::SimpleAtoi(request.page_token(), &before) || before == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: got ", Echo(request.page_token()),
                                                   ", expected the next_page_token of a previous ListJobs"));
  }
  std::set<int> states;
  for (const int state : request.states()) {
    if (state <= v1::JOB_STATE_UNSPECIFIED || state > v1::JOB_STATE_CANCELLED || !v1::JobState_IsValid(state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("states: got ", state, ", expected QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED (1 to 5)"));
    }
    states.insert(state);
  }
  v1::ListJobsResponse response;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t last_sequence = 0;
  jobs_.ForEachNewestFirst(before, [&](const JobRecord& record) {
    if (!record.durable || !caller.Sees(record.job().tenant())) return true;
    if (!states.empty() && states.count(record.job().state()) == 0) return true;
    if (!request.model().empty() && record.job().request().model() != request.model()) return true;
    if (static_cast<uint32_t>(response.jobs_size()) == page_size) {
      response.set_next_page_token(absl::StrCat(last_sequence));
      return false;
    }
    *response.add_jobs() = View(record);
    last_sequence = record.stored.sequence;
    return true;
  });
  return response;
}

v1::ListModelsResponse Scheduler::ListModels() {
  std::lock_guard<std::mutex> lock(mutex_);
  v1::ListModelsResponse response;
  for (v1::ModelInfo& model : workers_.LiveModels()) *response.add_models() = std::move(model);
  response.set_default_model(options_.default_model.empty() ? workers_.FirstModel() : options_.default_model);
  return response;
}

absl::StatusOr<WatchCursor> Scheduler::StartWatch(const std::string& job_id, uint64_t from_byte_offset,
                                                  uint32_t attempt, const Caller& caller) {
  std::lock_guard<std::mutex> lock(mutex_);
  RADIAL_ASSIGN_OR_RETURN(JobRecord * record, Lookup(job_id, caller));
  const v1::Job& job = record->job();
  WatchCursor cursor;
  cursor.offset = from_byte_offset;
  cursor.restarts_seen = record->stored.restarts;
  if (attempt != 0 && from_byte_offset > 0 && (job.state() == v1::JOB_STATE_QUEUED || attempt != job.attempts())) {
    cursor.restart_pending = true;  // the client's bytes are from an attempt that is gone
    cursor.offset = 0;
  }
  if (job.state() == v1::JOB_STATE_SUCCEEDED && cursor.offset > record->bytes()) {
    return absl::OutOfRangeError(absl::StrCat("from_byte_offset: got ", from_byte_offset, ", expected at most ",
                                              record->bytes(), " (the size of the job's video)"));
  }
  ++record->watchers;
  return cursor;
}

void Scheduler::EndWatch(const std::string& job_id) {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    JobRecord* record = jobs_.Find(job_id);
    if (record == nullptr || record->watchers == 0) return;
    if (--record->watchers == 0 && record->ended() && record->stored.video.empty()) {
      record->video = std::make_shared<std::string>();  // a failed job's partial bytes: nobody reads them now
    }
    Seal(effects);  // retention may take the job now that nobody reads it
  }
  (void)Apply(effects);
}

WatchStep Scheduler::NextEvent(const std::string& job_id, WatchCursor& cursor, v1::JobEvent& event,
                               const std::weak_ptr<Waiter>& waiter) {
  EventPlan plan;
  std::string stored_video;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cursor.ended) return {WatchStep::kEnd, absl::OkStatus()};
    JobRecord* record = jobs_.FindVisible(job_id);
    if (record == nullptr) {
      return {WatchStep::kEnd, absl::NotFoundError(absl::StrCat("job ", job_id,
                                                                " was deleted, or removed by retention, while "
                                                                "being watched; its events end here"))};
    }
    if (shutting_down_) {
      return {WatchStep::kEnd,
              absl::UnavailableError("the scheduler is restarting; watch the job again (from the bytes received) "
                                     "once it is back")};
    }
    plan = PlanNextEvent(*record, static_cast<uint32_t>(queue_.Position(job_id).value_or(0)), options_.max_chunk_bytes,
                         cursor, event);
    switch (plan.kind) {
      case EventPlan::kEvent:
        if (event.has_chunk() && options_.observer != nullptr) {
          options_.observer->BytesStreamed(event.chunk().data().size());
        }
        return {WatchStep::kEvent, absl::OkStatus()};
      case EventPlan::kWait:
        record->waiters.push_back(waiter);
        return {WatchStep::kWait, absl::OkStatus()};
      case EventPlan::kEnd: return {WatchStep::kEnd, plan.end_status};
      case EventPlan::kReadStored: stored_video = record->stored.video; break;  // read below, outside the lock
    }
  }
  // A chunk of the stored video. An open reader keeps working if the job is deleted meanwhile.
  if (cursor.stored_video == nullptr) {
    absl::StatusOr<std::shared_ptr<const VideoReader>> reader = store_->OpenVideo(stored_video);
    if (!reader.ok()) {
      return {WatchStep::kEnd, absl::DataLossError(absl::StrCat("job ", job_id, ": its stored video cannot be read (",
                                                                reader.status().message(), ")"))};
    }
    cursor.stored_video = *std::move(reader);
  }
  absl::StatusOr<std::string> data = cursor.stored_video->Read(cursor.offset, plan.read_size);
  if (!data.ok() || data->size() != plan.read_size) {
    return {WatchStep::kEnd,
            absl::DataLossError(absl::StrCat("job ", job_id, ": its stored video cannot be read at byte ",
                                             cursor.offset, " (",
                                             data.ok() ? "it is shorter than recorded" : data.status().message(),
                                             ")"))};
  }
  event.mutable_chunk()->set_offset(cursor.offset);
  event.mutable_chunk()->set_data(*std::move(data));
  cursor.offset += plan.read_size;
  if (options_.observer != nullptr) options_.observer->BytesStreamed(plan.read_size);
  return {WatchStep::kEvent, absl::OkStatus()};
}

// ---------------------------------------------------------------- workers

absl::Status Scheduler::WorkerHello(WorkerLink* link, const v1::Hello& hello) {
  if (hello.worker_id().empty() || hello.worker_id().size() > kMaxWorkerIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("hello.worker_id: got ", Echo(hello.worker_id()), ", expected 1 to ",
                                                   kMaxWorkerIdBytes, " bytes"));
  }
  if (hello.models().empty() || hello.models_size() > kMaxModelsPerWorker) {
    return absl::InvalidArgumentError(absl::StrCat("hello.models: got ", hello.models_size(),
                                                   " models, expected 1 to ", kMaxModelsPerWorker));
  }
  for (const v1::ModelInfo& model : hello.models()) {
    if (absl::Status status = ValidateModelInfo(model); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("hello.models: ", status.message()));
    }
  }
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutting_down_) return absl::UnavailableError("scheduler: shutting down to restart; reconnect shortly");
    if (workers_.Find(link) != nullptr) {
      return absl::InvalidArgumentError("hello: got a second hello on this stream, expected one");
    }
    RADIAL_RETURN_IF_ERROR(workers_.Register(link, hello, options_.steady_ms()));
    spdlog::info("worker {} connected: {} model(s), capacity {}, device {}", Echo(hello.worker_id()),
                 hello.models_size(), workers_.Find(link)->capacity, Echo(hello.device()));
    Dispatch(effects);
    Seal(effects);
  }
  (void)Apply(effects);
  return absl::OkStatus();
}

void Scheduler::WorkerMessage(WorkerLink* link, const v1::WorkerMessage& message) {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    WorkerRecord* worker = workers_.Find(link);
    if (worker == nullptr) return;
    worker->last_seen_ms = options_.steady_ms();
    std::string job_id;
    switch (message.message_case()) {
      case v1::WorkerMessage::kHeartbeat: return;
      case v1::WorkerMessage::kHello: {
        LoseWorker(link, "sent a second hello", effects);
        link->Close(absl::InvalidArgumentError("hello: got a second hello on this stream, expected one"));
        Seal(effects);
        break;
      }
      case v1::WorkerMessage::kDraining:
        worker->draining = true;
        spdlog::info("worker {} is draining (grace {} s): no new jobs for it", Echo(worker->id),
                     message.draining().grace_seconds());
        return;
      case v1::WorkerMessage::kProgress: job_id = message.progress().job_id(); break;
      case v1::WorkerMessage::kChunk: job_id = message.chunk().job_id(); break;
      case v1::WorkerMessage::kDone: job_id = message.done().job_id(); break;
      case v1::WorkerMessage::kFailed: job_id = message.failed().job_id(); break;
      case v1::WorkerMessage::kHandBack: job_id = message.hand_back().job_id(); break;
      case v1::WorkerMessage::MESSAGE_NOT_SET:
        spdlog::warn("worker {} sent a message of a kind this scheduler does not know; ignored", Echo(worker->id));
        return;
    }
    if (message.message_case() != v1::WorkerMessage::kHello) {
      const bool ends = message.has_done() || message.has_failed() || message.has_hand_back();
      JobRecord* record = jobs_.Find(job_id);
      if (record == nullptr || record->worker != link || record->job().state() != v1::JOB_STATE_RUNNING ||
          record->finishing) {
        if (ends && worker->running.count(job_id) != 0) {
          EndedByWorker(*worker, job_id, effects);  // a job the scheduler ended under it: the slot is free now
        } else {
          spdlog::warn("job_id={} message from worker {} ignored: the job is not running there", Echo(job_id),
                       Echo(worker->id));
        }
      } else {
        switch (message.message_case()) {
          case v1::WorkerMessage::kProgress:
            *record->job().mutable_progress() = message.progress().progress();
            ++record->progress_updates;
            Changed(*record, effects);
            break;
          case v1::WorkerMessage::kChunk: HandleChunk(*record, *worker, message.chunk(), effects); break;
          case v1::WorkerMessage::kDone: HandleDone(*record, *worker, message.done(), effects); break;
          case v1::WorkerMessage::kFailed:
            if (record->cancel_requested) {
              Finish(*record, v1::JOB_STATE_CANCELLED, absl::CancelledError("cancelled by a client while running"),
                     effects);
            } else {
              const absl::Status error = FromProtoError(message.failed().error());
              Finish(*record, v1::JOB_STATE_FAILED, absl::Status(error.code(), absl::StrCat("worker ", worker->id, ": ", error.message())),
                     effects);
            }
            EndedByWorker(*worker, job_id, effects);
            break;
          case v1::WorkerMessage::kHandBack: {
            record->worker = nullptr;
            if (record->cancel_requested) {  // the client's cancel wins over running it again
              Finish(*record, v1::JOB_STATE_CANCELLED, absl::CancelledError("cancelled by a client while running"),
                     effects);
              EndedByWorker(*worker, job_id, effects);
              break;
            }
            ++record->stored.restarts;
            record->restart_reason = absl::StrCat("worker ", worker->id, " handed the job back (",
                                                  Echo(message.hand_back().reason()), ")");
            spdlog::info("job_id={} requeued: {}", job_id, record->restart_reason);
            if (options_.observer != nullptr) options_.observer->JobRequeued("hand_back");
            Requeue(*record, effects);
            EndedByWorker(*worker, job_id, effects);
            break;
          }
          default: break;
        }
      }
      Seal(effects);
    }
  }
  (void)Apply(effects);
}

void Scheduler::HandleChunk(JobRecord& record, WorkerRecord& worker, const v1::JobChunk& message, Effects& effects) {
  const v1::Chunk& chunk = message.chunk();
  std::string& video = *record.video;
  absl::Status problem;
  if (chunk.offset() != video.size()) {
    problem = absl::InternalError(absl::StrCat("worker ", worker.id, " sent a chunk at offset ", chunk.offset(),
                                               ", expected ", video.size()));
  } else if (video.size() + chunk.data().size() > options_.max_video_bytes) {
    problem = absl::ResourceExhaustedError(absl::StrCat("video: got more than ", options_.max_video_bytes,
                                                        " bytes from worker ", worker.id, ", expected at most that"));
  } else if (absl::Status checked = record.check->Add(chunk.data()); !checked.ok()) {
    problem = absl::InternalError(
        absl::StrCat("worker ", worker.id, " sent bytes that are not a fragmented MP4: ", checked.message()));
  }
  if (!problem.ok()) {
    StopOnWorker(record, std::string(problem.message()));
    Finish(record, v1::JOB_STATE_FAILED, problem, effects);
    return;
  }
  if (video.empty() && !record.first_chunk_seen) {
    record.first_chunk_seen = true;
    if (options_.observer != nullptr) {
      options_.observer->FirstChunk(record.job().request().model(),
                                    (options_.wall_ms() - record.job().created_unix_ms()) / 1000.0);
    }
  }
  video += chunk.data();
  Changed(record, effects);
}

void Scheduler::HandleDone(JobRecord& record, WorkerRecord& worker, const v1::JobDone& done, Effects& effects) {
  const std::string job_id = record.id();
  const uint32_t frames = record.job().request().frames();
  absl::Status problem = record.check->Finish(frames);
  if (problem.ok() && done.stats().frames() != frames) {
    problem = absl::InvalidArgumentError(
        absl::StrCat("stats.frames: got ", done.stats().frames(), ", expected ", frames, " (the request's frames)"));
  }
  if (!problem.ok()) {
    Finish(record, v1::JOB_STATE_FAILED,
           absl::InternalError(absl::StrCat("worker ", worker.id, " reported success, but ", problem.message())),
           effects);
    EndedByWorker(worker, job_id, effects);
    return;
  }
  v1::JobStats& stats = *record.job().mutable_stats();
  stats = done.stats();
  stats.set_worker_id(worker.id);
  stats.set_video_bytes(record.video->size());
  record.finishing = true;
  record.worker = nullptr;
  effects.video_writes.push_back({job_id, record.video});
  EndedByWorker(worker, job_id, effects);
}

void Scheduler::WorkerGone(WorkerLink* link, const std::string& reason) {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    LoseWorker(link, reason, effects);
    Seal(effects);
  }
  (void)Apply(effects);
}

void Scheduler::Tick() {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t wall = options_.wall_ms();
    const int64_t steady = options_.steady_ms();
    std::vector<WorkerLink*> silent;
    for (const auto& [link, worker] : workers_.workers()) {
      if (steady - worker.last_seen_ms > options_.worker_timeout_ms) silent.push_back(link);
    }
    // None of them may receive the jobs of another (they are all about to be lost).
    for (WorkerLink* link : silent) workers_.Find(link)->draining = true;
    for (WorkerLink* link : silent) {
      const std::string reason = absl::StrCat("sent nothing for more than ", options_.worker_timeout_ms / 1000.0,
                                              " s (--worker-timeout)");
      LoseWorker(link, reason, effects);
      link->Close(absl::UnavailableError(absl::StrCat("worker: ", reason, ", expected heartbeats; reconnect")));
    }
    for (const std::string& job_id : queue_.InOrder()) {
      JobRecord& record = *jobs_.Find(job_id);
      const int64_t limit_ms = int64_t{record.job().request().queue_timeout_seconds()} * 1000;
      if (limit_ms > 0 && wall - record.queued_since_ms > limit_ms) {
        queue_.Remove(job_id);
        Finish(record, v1::JOB_STATE_FAILED,
               absl::DeadlineExceededError(absl::StrCat("queue_timeout_seconds: the job waited more than its ",
                                                        record.job().request().queue_timeout_seconds(),
                                                        " s in the queue for a worker")),
               effects);
      }
    }
    std::vector<JobRecord*> overdue;
    for (auto& [link, worker] : workers_.workers()) {
      for (const std::string& job_id : worker.running) {
        JobRecord* record = jobs_.Find(job_id);
        if (record == nullptr || record->worker != link || record->finishing) continue;
        const int64_t limit_ms = int64_t{record->job().request().run_timeout_seconds()} * 1000;
        if (limit_ms > 0 && wall - record->job().started_unix_ms() > limit_ms) overdue.push_back(record);
      }
    }
    for (JobRecord* record : overdue) {
      const absl::Status status = absl::DeadlineExceededError(absl::StrCat(
          "run_timeout_seconds: the job ran more than its ", record->job().request().run_timeout_seconds(),
          " s on worker ", record->job().worker_id()));
      StopOnWorker(*record, std::string(status.message()));
      Finish(*record, v1::JOB_STATE_FAILED, status, effects);
    }
    for (const std::string& model : workers_.ExpireModels(steady, options_.model_ttl_ms)) {
      spdlog::warn("model {} is no longer listed: no worker has served it for {} s (--model-ttl)", Echo(model),
                   options_.model_ttl_ms / 1000.0);
    }
    Seal(effects);
  }
  (void)Apply(effects);
}

void Scheduler::BeginShutdown() {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutting_down_ = true;
    jobs_.ForEachNewestFirst(0, [&](const JobRecord& record) {
      for (const auto& waiter : record.waiters) effects.wakeups.push_back(waiter);
      return true;
    });
    Seal(effects);
  }
  (void)Apply(effects);
}

size_t Scheduler::queued_jobs() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

SchedulerSnapshot Scheduler::Snapshot() {
  std::lock_guard<std::mutex> lock(mutex_);
  SchedulerSnapshot snapshot;
  for (const char* band : {"high", "normal", "low"}) snapshot.queued_by_band[band] = 0;
  for (const auto& [priority, count] : queue_.CountByPriority()) {
    snapshot.queued_by_band[priority > 0 ? "high" : priority < 0 ? "low" : "normal"] += count;
  }
  for (const auto& [link, worker] : workers_.workers()) {
    const char* state = worker.draining ? "draining" : worker.running.empty() ? "idle" : "busy";
    for (const std::string& model : worker.models) ++snapshot.workers[{model, state}];
    for (const std::string& id : worker.running) {
      const JobRecord* record = jobs_.Find(id);
      if (record != nullptr && record->worker == link) ++snapshot.running;
    }
  }
  jobs_.ForEachNewestFirst(0, [&](const JobRecord& record) {
    snapshot.watchers += record.watchers;
    return true;
  });
  snapshot.retained_jobs = jobs_.ended();
  snapshot.retained_bytes = jobs_.stored_bytes();
  return snapshot;
}

size_t Scheduler::connected_workers() {
  std::lock_guard<std::mutex> lock(mutex_);
  return workers_.size();
}

// ---------------------------------------------------------------- internals (under mutex_)

v1::Job Scheduler::View(const JobRecord& record) const {
  v1::Job job = record.job();
  job.set_queue_position(static_cast<uint32_t>(queue_.Position(job.id()).value_or(0)));
  job.set_bytes_produced(record.bytes());
  return job;
}

void Scheduler::Requeue(JobRecord& record, Effects& effects) {
  v1::Job& job = record.job();
  job.set_state(v1::JOB_STATE_QUEUED);
  job.clear_error();
  job.clear_progress();
  job.mutable_progress()->set_stage(v1::STAGE_QUEUED);
  record.video = std::make_shared<std::string>();
  record.check = std::make_unique<Mp4StreamCheck>();
  record.finishing = false;
  record.cancel_requested = false;
  record.worker = nullptr;
  record.queued_since_ms = options_.wall_ms();
  Enqueue(record);
  Persist(record, effects);
  Changed(record, effects);
}

void Scheduler::Dispatch(Effects& effects) {
  if (shutting_down_ || queue_.size() == 0) return;
  std::vector<WorkerSlots> slots;
  for (auto& [link, worker] : workers_.workers()) {
    if (worker.draining || worker.running.size() >= worker.capacity) continue;
    slots.push_back({link, &worker.models, static_cast<uint32_t>(worker.capacity - worker.running.size())});
  }
  if (slots.empty()) return;
  // Running slots left to tenants with a max_running (a tenant not in the map has no limit).
  std::map<std::string, uint32_t> tenant_room;
  auto room_of = [&](const std::string& tenant) -> uint32_t* {
    const uint32_t max_running = options_.tenancy.For(tenant).max_running;
    if (max_running == 0) return nullptr;
    auto [it, inserted] = tenant_room.emplace(tenant, max_running);
    if (inserted) {
      for (const auto& [link, worker] : workers_.workers()) {
        for (const std::string& id : worker.running) {
          const JobRecord* running = jobs_.Find(id);
          if (running != nullptr && running->job().tenant() == tenant && it->second > 0) --it->second;
        }
      }
    }
    return &it->second;
  };
  // Free slots per model; the queue is walked only until every one could be filled, so a long
  // queue costs in proportion to the jobs that can start (plus the ones skipped on the way).
  std::map<std::string, uint64_t> wanted;
  uint64_t wanted_total = 0;
  for (const WorkerSlots& slot : slots) {
    for (const std::string& model : *slot.models) wanted[model] += slot.free;
  }
  for (const auto& [model, count] : wanted) wanted_total += count;
  std::vector<QueuedJob> order;
  std::map<std::string, uint32_t> tentative_room;
  queue_.ForEachInOrder([&](const std::string& id) {
    const v1::Job& job = jobs_.Find(id)->job();
    const auto want = wanted.find(job.request().model());
    if (want == wanted.end() || want->second == 0) return true;
    if (uint32_t* room = room_of(job.tenant())) {
      uint32_t& left = tentative_room.emplace(job.tenant(), *room).first->second;
      if (left == 0) return true;
      --left;
    }
    order.push_back({id, job.request().model(), job.tenant()});
    --want->second;
    return --wanted_total > 0;
  });
  for (const Assignment& assignment : PlanDispatch(order, std::move(slots), std::move(tenant_room))) {
    WorkerLink* link = static_cast<WorkerLink*>(const_cast<void*>(assignment.worker));
    WorkerRecord& worker = *workers_.Find(link);
    JobRecord& record = *jobs_.Find(assignment.job_id);
    queue_.Take(assignment.job_id);
    v1::Job& job = record.job();
    job.set_state(v1::JOB_STATE_RUNNING);
    job.set_started_unix_ms(options_.wall_ms());
    if (options_.observer != nullptr) {
      options_.observer->JobStarted(job.request().model(), (job.started_unix_ms() - record.queued_since_ms) / 1000.0);
    }
    job.set_attempts(job.attempts() + 1);
    job.set_worker_id(worker.id);
    record.worker = link;
    worker.running.insert(assignment.job_id);
    v1::SchedulerMessage message;
    v1::Assign& assign = *message.mutable_assign();
    assign.set_job_id(assignment.job_id);
    *assign.mutable_request() = job.request();
    assign.set_attempt(job.attempts());
    link->Send(message);
    spdlog::info("job_id={} assigned to worker {} (attempt {})", assignment.job_id, worker.id, job.attempts());
    Persist(record, effects);
    Changed(record, effects);
  }
}

void Scheduler::Finish(JobRecord& record, v1::JobState state, const absl::Status& status, Effects& effects) {
  v1::Job& job = record.job();
  job.set_state(state);
  job.set_finished_unix_ms(options_.wall_ms());
  if (!status.ok()) *job.mutable_error() = ToProtoError(status);
  if (state == v1::JOB_STATE_SUCCEEDED) {
    v1::JobStats& stats = *job.mutable_stats();
    stats.set_queue_seconds((job.started_unix_ms() - job.created_unix_ms()) / 1000.0);
    stats.set_total_seconds((job.finished_unix_ms() - job.created_unix_ms()) / 1000.0);
  } else if (record.watchers == 0) {
    record.video = std::make_shared<std::string>();  // partial bytes are kept only for current watchers
  }
  record.finishing = false;
  if (options_.observer != nullptr) {
    options_.observer->JobEnded(job.request().model(), status.code(),
                                (job.finished_unix_ms() - job.created_unix_ms()) / 1000.0);
  }
  spdlog::info("job_id={} ended {}{}{}", record.id(), StateName(state), status.ok() ? "" : ": ",
               std::string(status.message()));
  Persist(record, effects);
  Changed(record, effects);
  jobs_.MarkEnded(record);
}

void Scheduler::Changed(JobRecord& record, Effects& effects) {
  for (auto& waiter : record.waiters) effects.wakeups.push_back(std::move(waiter));
  record.waiters.clear();
}

void Scheduler::Persist(JobRecord& record, Effects& effects) {
  ++record.stored.version;
  effects.puts.push_back(record.stored);
}

void Scheduler::Remove(JobRecord& record, Effects& effects) {
  Changed(record, effects);  // watchers wake to find the job gone
  effects.deletes.push_back(record.id());
  if (!record.stored.video.empty()) effects.video_deletes.push_back(record.stored.video);
  jobs_.Erase(record.id());
}

void Scheduler::StopOnWorker(JobRecord& record, const std::string& reason) {
  if (record.worker == nullptr) return;
  v1::SchedulerMessage message;
  message.mutable_cancel()->set_job_id(record.id());
  message.mutable_cancel()->set_reason(reason);
  record.worker->Send(message);
  record.worker = nullptr;  // the worker keeps the slot until it reports the job stopped
}

void Scheduler::EndedByWorker(WorkerRecord& worker, const std::string& job_id, Effects& effects) {
  worker.running.erase(job_id);
  Dispatch(effects);
}

void Scheduler::LoseWorker(WorkerLink* link, const std::string& reason, Effects& effects) {
  WorkerRecord* worker = workers_.Find(link);
  if (worker == nullptr) return;
  const std::string worker_id = worker->id;
  const std::set<std::string> running = worker->running;
  workers_.Remove(link, options_.steady_ms());
  spdlog::warn("worker {} gone ({}) with {} running job(s)", Echo(worker_id), reason, running.size());
  if (options_.observer != nullptr) options_.observer->WorkerLost();
  if (shutting_down_) return;  // its jobs stay RUNNING in the store and run again after the restart
  for (const std::string& job_id : running) {
    JobRecord* record = jobs_.Find(job_id);
    if (record == nullptr || record->worker != link) continue;  // ended by the scheduler already
    record->worker = nullptr;
    const uint32_t attempt = record->job().attempts();
    if (record->cancel_requested) {
      Finish(*record, v1::JOB_STATE_CANCELLED, absl::CancelledError("cancelled by a client while running"), effects);
      continue;
    }
    ++record->stored.worker_losses;
    const std::string what = absl::StrCat("worker ", worker_id, " was lost (", reason, ") during attempt ", attempt);
    if (record->stored.worker_losses < options_.max_attempts) {
      ++record->stored.restarts;
      record->restart_reason = what;
      spdlog::warn("job_id={} requeued: {}", job_id, what);
      if (options_.observer != nullptr) options_.observer->JobRequeued("worker_lost");
      Requeue(*record, effects);
    } else {
      Finish(*record, v1::JOB_STATE_FAILED,
             absl::UnavailableError(absl::StrCat(what, "; ", record->stored.worker_losses,
                                                 " workers were lost running it (--max-attempts ",
                                                 options_.max_attempts, "), so it is not retried again")),
             effects);
    }
  }
  Dispatch(effects);
}

void Scheduler::Retain(Effects& effects) {
  for (const std::string& job_id : jobs_.Expired(options_.retention, options_.wall_ms())) {
    spdlog::info("job_id={} removed by retention", job_id);
    Remove(*jobs_.Find(job_id), effects);
  }
}

void Scheduler::Seal(Effects& effects) {
  Retain(effects);
  if (!effects.puts.empty() || !effects.deletes.empty()) effects.ticket = next_ticket_++;
}

// ---------------------------------------------------------------- effects (without mutex_)

absl::Status Scheduler::Apply(Effects& effects) {
  absl::Status first;
  if (effects.ticket != 0) {
    std::unique_lock<std::mutex> lock(store_mutex_);
    store_turn_.wait(lock, [&] { return applied_ticket_ + 1 == effects.ticket; });
    const auto started = std::chrono::steady_clock::now();
    for (const StoredJob& row : effects.puts) {
      if (absl::Status status = store_->Put(row); !status.ok()) {
        spdlog::error("job_id={} not saved: {}", row.job.id(), status.ToString());
        if (first.ok()) first = status;
      }
    }
    for (const std::string& job_id : effects.deletes) {
      if (absl::Status status = store_->Delete(job_id); !status.ok()) {
        spdlog::error("job_id={} not removed from the store: {}", job_id, status.ToString());
        if (first.ok()) first = status;
      }
    }
    applied_ticket_ = effects.ticket;
    lock.unlock();
    if (options_.observer != nullptr) {
      options_.observer->StoreWrite(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), first.ok());
    }
    store_turn_.notify_all();
  }
  for (const std::string& name : effects.video_deletes) {
    if (absl::Status status = store_->DeleteVideo(name); !status.ok()) {
      spdlog::error("video {} not removed: {}", name, status.ToString());
    }
  }
  for (auto& weak : effects.wakeups) {
    if (auto waiter = weak.lock()) waiter->Wake();
  }
  for (const VideoWrite& write : effects.video_writes) CommitVideo(write, store_->WriteVideo(write.job_id, *write.bytes));
  return first;
}

void Scheduler::CommitVideo(const VideoWrite& write, const absl::StatusOr<std::string>& name) {
  Effects effects;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    JobRecord* record = jobs_.Find(write.job_id);
    if (record == nullptr || !record->finishing) {
      if (name.ok()) effects.video_deletes.push_back(*name);  // deleted while it was being written
    } else if (name.ok()) {
      record->stored.video = *name;
      record->stored.video_bytes = write.bytes->size();
      record->video = std::make_shared<std::string>();  // served from the store from now on
      Finish(*record, v1::JOB_STATE_SUCCEEDED, absl::OkStatus(), effects);
    } else {
      Finish(*record, v1::JOB_STATE_FAILED,
             absl::UnavailableError(absl::StrCat("store ", store_->Describe(), ": the finished video could not be saved (",
                                                 name.status().message(), ")")),
             effects);
    }
    Seal(effects);
  }
  (void)Apply(effects);
}

}  // namespace radial::server
