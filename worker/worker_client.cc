#include "worker_client.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "assignment_check.h"
#include "job_messages.h"
#include "job_runner.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "worker_session.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

// How long a drain that starts while the stream is being opened waits for the Hello to go out.
constexpr auto kGreetingWait = std::chrono::seconds(1);

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

// An assignment answered with JobFailed before it ran: an outcome, no timings.
JobRecord RefusedJob(absl::StatusCode code) {
  JobRecord record;
  record.code = code;
  return record;
}

}  // namespace

WorkerClient::WorkerClient(WorkerOptions options, Pipeline& pipeline)
    : options_(std::move(options)), pipeline_(pipeline) {
  if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
  LimitFfmpegLoggingToErrors();
}

WorkerClient::~WorkerClient() { Stop(); }

void WorkerClient::Stop() {
  stopping_ = true;
  std::lock_guard<std::mutex> lock(mutex_);
  if (session_) {
    session_->cancel = true;
    session_->context.TryCancel();
  }
}

WorkerClient::Clock::time_point WorkerClient::DrainDeadline() const {
  return Clock::time_point(Clock::duration(drain_deadline_ticks_.load()));
}

void WorkerClient::Drain(std::chrono::seconds grace) {
  grace = std::clamp(grace, std::chrono::seconds(0), std::chrono::seconds(std::numeric_limits<uint32_t>::max()));
  const Clock::rep deadline = (Clock::now() + grace).time_since_epoch().count();
  std::shared_ptr<Session> session;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (drain_started_) {
      // A drain runs: bring its deadline forward and wake it, then wait for it.
      if (deadline < drain_deadline_ticks_.load()) {
        drain_deadline_ticks_ = deadline;
        drain_cut_short_ = true;
      }
      if (session_) {
        { std::lock_guard<std::mutex> session_lock(session_->mutex); }  // the drain waits or re-reads
        session_->wake.notify_all();
      }
      changed_.wait(lock, [&] { return drain_finished_; });
      return;
    }
    drain_started_ = true;
    drain_deadline_ticks_ = deadline;
    stopping_ = true;  // Run() returns after this stream and opens no other
    session = session_;
  }
  SetDraining();
  if (session != nullptr) {
    DrainSession(*session, grace);
    std::unique_lock<std::mutex> lock(mutex_);
    const auto ended = [&] { return session_ != session; };
    if (!changed_.wait_for(lock, std::chrono::milliseconds(options_.drain_close_ms), ended)) {
      spdlog::warn("worker {}: the scheduler did not end the stream within {} ms of the drain; cancelling it",
                   options_.worker_id, options_.drain_close_ms);
      session->context.TryCancel();
      changed_.wait(lock, ended);  // Serve() ends it once the job thread has stopped
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    drain_finished_ = true;
  }
  changed_.notify_all();
  spdlog::info("worker {}: drained", options_.worker_id);
}

void WorkerClient::DrainSession(Session& session, std::chrono::seconds grace) {
  std::unique_lock<std::mutex> lock(session.mutex);
  // The Hello may be on its way (Serve() marks the session greeted once it is written): give it a
  // moment, so that the scheduler hears Draining. Still connecting after that, no job can have been
  // assigned: just end the call.
  session.wake.wait_for(lock, kGreetingWait, [&] { return session.greeted || session.closed; });
  if (!session.greeted) {
    session.context.TryCancel();
    return;
  }
  session.draining = true;
  v1::WorkerMessage draining;
  draining.mutable_draining()->set_grace_seconds(static_cast<uint32_t>(grace.count()));
  session.Write(draining);
  if (session.job_id.empty()) {
    spdlog::info("worker {}: draining: no job running; leaving", options_.worker_id);
  } else {
    spdlog::info("worker {}: draining: no new jobs; job_id={} has {} s to finish before it is handed back",
                 options_.worker_id, session.job_id, grace.count());
  }
  while (!session.closed && !session.job_id.empty()) {
    if (session.job_cancelled_by_scheduler) {
      session.wake.wait(lock);  // it stops within a denoising step and reports CANCELLED
      continue;
    }
    const Clock::time_point deadline = DrainDeadline();
    if (Clock::now() < deadline) {
      session.wake.wait_until(lock, deadline);
      continue;
    }
    const std::string reason = drain_cut_short_
                                   ? absl::StrCat("worker ", options_.worker_id, " was stopped before the job finished")
                                   : absl::StrCat("worker ", options_.worker_id, " shut down: its drain grace of ",
                                                  grace.count(), " s ran out before the job finished");
    session.job_handed_back = true;
    session.cancel = true;
    const v1::WorkerMessage hand_back = HandBackMessage(session.job_id, reason);
    if (session.CloseWritesLocked(&hand_back)) {
      spdlog::warn("job_id={} handed back to the scheduler: {}", session.job_id, reason);
    }
    return;
  }
  // The job's outcome went out (or there was no job), so leave. If the stream ended under us
  // instead, this does nothing and the scheduler requeues the job as lost, as after Stop().
  session.CloseWritesLocked();
}

void WorkerClient::SetJobRunning(bool running) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  job_running_ = running;
  ReportStateLocked();
}

void WorkerClient::SetDraining() {
  std::lock_guard<std::mutex> lock(state_mutex_);
  draining_ = true;
  ReportStateLocked();
}

void WorkerClient::ReportStateLocked() {
  if (options_.observer == nullptr) return;
  options_.observer->StateChanged(draining_      ? WorkerState::kDraining
                                  : job_running_ ? WorkerState::kBusy
                                                 : WorkerState::kIdle);
}

void WorkerClient::ReportJob(const JobRecord& record) {
  if (options_.observer != nullptr) options_.observer->JobEnded(record);
}

absl::Status WorkerClient::Run() {
  {
    // Loaded and about to dial: idle, also while connecting or reconnecting (the scheduler's
    // radial_workers says which workers it has).
    std::lock_guard<std::mutex> lock(state_mutex_);
    ReportStateLocked();
  }
  int backoff_ms = 100;
  absl::Status status;
  while (!stopping_) {
    const auto started = Clock::now();
    status = Serve();
    if (stopping_ || options_.exit_when_disconnected) break;
    if (Clock::now() - started > std::chrono::seconds(10)) backoff_ms = 100;  // it had been working
    // FAILED_PRECONDITION: a TLS file, read again for each connection, is missing or not PEM.
    if (status.code() == absl::StatusCode::kFailedPrecondition) {
      spdlog::error("worker {}: cannot connect to {}: {}; retrying in {} ms", options_.worker_id, options_.scheduler,
                    std::string(status.message()), backoff_ms);
    } else if (const std::string refusal = DescribeRefusal(status, options_.security); !refusal.empty()) {
      spdlog::error("worker {}: refused for its credentials by the scheduler at {}: {} ({}); retrying in {} ms",
                    options_.worker_id, options_.scheduler, refusal, status.ToString(), backoff_ms);
    } else {
      spdlog::warn("worker {}: stream to {} ended ({}); reconnecting in {} ms", options_.worker_id, options_.scheduler,
                   status.ToString(), backoff_ms);
    }
    for (int slept = 0; slept < backoff_ms && !stopping_; slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff_ms = std::min(backoff_ms * 2, options_.reconnect_max_ms);
  }
  return stopping_ ? absl::OkStatus() : status;
}

absl::Status WorkerClient::Serve() {
  const WorkerSecurity& security = options_.security;
  // A new channel per stream, with credentials from the files as they are now.
  RADIAL_ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ChannelCredentials> credentials, SchedulerCredentials(security));
  const auto stub =
      v1::WorkerService::NewStub(SchedulerChannel(options_.scheduler, credentials, security.tls_server_name));
  auto session = std::make_shared<Session>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return absl::OkStatus();
    session_ = session;
  }
  if (!security.token.empty()) session->context.AddMetadata("authorization", "Bearer " + security.token);
  session->stream = stub->Connect(&session->context);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id(options_.worker_id);
  hello.mutable_hello()->set_capacity(1);
  hello.mutable_hello()->set_device(pipeline_.device_name());
  *hello.mutable_hello()->add_models() = ModelInfoFrom(pipeline_.manifest());
  const bool greeted = session->Write(hello);
  if (greeted) {
    // Not yet "connected": a scheduler that refuses the worker's token ends the stream right after.
    spdlog::info("worker {}: hello sent to {} ({}{}): serving {} on {}", options_.worker_id, options_.scheduler,
                 security.tls() ? (security.tls_cert_file.empty() ? "TLS" : "mutual TLS") : "plaintext",
                 security.token.empty() ? "" : ", token", pipeline_.manifest().name, pipeline_.device_name());
  }
  {
    std::lock_guard<std::mutex> lock(session->mutex);
    session->greeted = greeted;
  }
  session->wake.notify_all();  // a drain may wait for the Hello

  std::thread heartbeat([this, session] {
    std::unique_lock<std::mutex> lock(session->mutex);
    while (!session->closed) {
      if (session->wake.wait_for(lock, std::chrono::milliseconds(options_.heartbeat_ms),
                                 [&] { return session->closed.load(); })) {
        break;
      }
      lock.unlock();
      v1::WorkerMessage beat;
      beat.mutable_heartbeat()->set_unix_ms(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
      session->Write(beat);
      lock.lock();
    }
  });

  std::thread job;
  v1::SchedulerMessage message;
  while (session->stream->Read(&message)) {
    if (message.has_cancel()) {
      const v1::CancelJob& cancel = message.cancel();
      std::lock_guard<std::mutex> lock(session->mutex);
      if (!session->job_id.empty() && session->job_id == cancel.job_id()) {
        session->cancel = true;
        session->job_cancelled_by_scheduler = true;
        spdlog::info("job_id={} cancelled by the scheduler: {}", session->job_id,
                     cancel.reason().empty() ? "(no reason given)" : common::Echo(cancel.reason()));
      } else {
        spdlog::debug("worker {}: cancel for job {}, which does not run here", options_.worker_id,
                      common::Echo(cancel.job_id()));
      }
      continue;
    }
    if (message.has_assign()) Accept(session, message.assign(), job);
  }
  // The stream ended: abandon the job (the scheduler requeues it), stop the helpers.
  session->cancel = true;
  {
    std::lock_guard<std::mutex> lock(session->mutex);
    std::lock_guard<std::mutex> write_lock(session->write_mutex);
    session->closed = true;
  }
  session->wake.notify_all();
  if (job.joinable()) job.join();
  heartbeat.join();
  const grpc::Status status = session->stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    session_.reset();
  }
  changed_.notify_all();
  if (status.ok()) return absl::OkStatus();
  // The code is kept: Run() tells refused credentials from a lost connection by it.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

void WorkerClient::Accept(const std::shared_ptr<Session>& session, const v1::Assign& assign, std::thread& job) {
  const std::string& job_id = assign.job_id();
  {
    std::lock_guard<std::mutex> lock(session->mutex);
    if (session->draining) {
      const std::string reason = absl::StrCat("worker ", options_.worker_id, " is draining and takes no new jobs");
      spdlog::info("job_id={} handed back at once: {}", job_id, reason);
      session->Write(HandBackMessage(job_id, reason));
      return;
    }
    if (!session->job_id.empty()) {
      ReportJob(RefusedJob(absl::StatusCode::kResourceExhausted));
      session->Write(
          FailedMessage(job_id, absl::ResourceExhaustedError("worker: got a second job, expected one at a time")));
      return;
    }
    if (absl::Status valid = CheckAssignment(pipeline_.manifest(), assign.request()); !valid.ok()) {
      const absl::Status refused = absl::InvalidArgumentError(
          absl::StrCat("worker ", options_.worker_id, " refused the assignment: ", valid.message()));
      spdlog::warn("job_id={} refused: {}", job_id, std::string(refused.message()));
      ReportJob(RefusedJob(refused.code()));
      session->Write(FailedMessage(job_id, refused));
      return;
    }
    session->job_id = job_id;
    session->job_cancelled_by_scheduler = false;
    session->job_handed_back = false;
    session->cancel = false;
  }
  SetJobRunning(true);
  if (job.joinable()) job.join();  // the previous job's thread, done but for its exit
  job = std::thread([this, session, assign] {
    JobRecord record;
    const v1::WorkerMessage outcome = RunAssignment(*session, assign, record);
    if (outcome.has_failed()) {
      record.code = static_cast<absl::StatusCode>(outcome.failed().error().code());
    } else if (!outcome.has_hand_back()) {
      record.code = absl::StatusCode::kOk;
    }
    // Counted, and idle, before the scheduler hears the outcome (and may assign the next job).
    ReportJob(record);
    SetJobRunning(false);
    {
      std::lock_guard<std::mutex> lock(session->mutex);
      session->job_id.clear();
      if (session->job_handed_back) {
        spdlog::info("job_id={} stopped on worker {} after it was handed back", assign.job_id(), options_.worker_id);
      } else {
        if (outcome.has_failed()) {
          const v1::Error& error = outcome.failed().error();
          const absl::Status status(static_cast<absl::StatusCode>(error.code()), error.message());
          // A cancel is what the scheduler asked for (logged when it came), not a fault.
          spdlog::log(status.code() == absl::StatusCode::kCancelled ? spdlog::level::info : spdlog::level::warn,
                      "job_id={} failed: {}", assign.job_id(), status.ToString());
        }
        session->Write(outcome);
      }
    }
    session->wake.notify_all();  // a drain waits for this
  });
}

v1::WorkerMessage WorkerClient::RunAssignment(Session& session, const v1::Assign& assign, JobRecord& record) {
  const std::string& job_id = assign.job_id();
  const v1::GenerateRequest& request = assign.request();
  const JobSpec spec = JobSpecFrom(request, {.x264_preset = options_.x264_preset,
                                             .x264_threads = options_.x264_threads,
                                             .max_chunk_bytes = options_.max_chunk_bytes});
  spdlog::info("job_id={} started on worker {} (attempt {}): {}x{}x{} steps={} fragment_frames={}", job_id,
               options_.worker_id, assign.attempt(), request.width(), request.height(), request.frames(),
               request.steps(), request.fragment_frames());
  StreamJobSink sink(session, job_id);
  const JobOutcome outcome = RunJob(pipeline_, spec, session.cancel, sink);
  if (outcome.report) {
    record.mask_density = outcome.report->mask_density;
    record.steps = outcome.steps;
  }
  if (outcome.status.code() == absl::StatusCode::kUnavailable) {
    // A rank of this worker's device group went away (model_family.h): the group restarts before
    // the next job, and this one can run again, here or elsewhere.
    spdlog::warn("job_id={} handed back: {}", job_id, std::string(outcome.status.message()));
    record.code = absl::StatusCode::kUnavailable;
    return HandBackMessage(job_id, std::string(outcome.status.message().substr(0, 1000)));
  }
  if (!outcome.status.ok()) return FailedMessage(job_id, outcome.status);
  const JobTimes& times = outcome.times;
  record.stages = JobStageSeconds{
      .text_encode = times.text_encode, .denoise = times.denoise, .decode = times.decode, .encode = times.encode};
  record.stream = JobStreamSeconds{.first_fragment = times.first_fragment,
                                   .last_step_to_first_fragment = times.last_step_to_first_fragment,
                                   .last_step_to_last_byte = times.last_step_to_last_byte};
  spdlog::info(
      "job_id={} done: {} frames in {} fragments, {} bytes, denoise {:.2f} s, decode {:.2f} s (waited {:.2f} s for "
      "the encoder), encode {:.2f} s; first fragment after {:.2f} s, last byte {:.2f} s after the last step",
      job_id, outcome.frames_encoded, outcome.fragments, outcome.video_bytes, times.denoise, times.decode,
      times.frame_wait, times.encode, times.first_fragment, times.last_step_to_last_byte);
  return DoneMessage(job_id, request, outcome);
}

}  // namespace radial::worker
