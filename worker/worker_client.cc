#include "worker_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "assignment_check.h"
#include "encoder/fmp4_encoder.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "step_timing.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

// How long a drain that starts while the stream is being opened waits for the Hello to go out.
constexpr auto kGreetingWait = std::chrono::seconds(1);

// Longer tokens are a mistake (a file pasted whole); gRPC's headers hold 8 KiB in all.
constexpr size_t kMaxTokenBytes = 4096;

// The text of one PEM file, read now: each connection reads the files again, so a certificate
// rotated on disk is used from the next connection on. A file without a PEM block (e.g. emptied
// while being rewritten) is an error: gRPC would take empty roots as "trust the system's CAs".
absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  if (file) text << file.rdbuf();
  if (!file) return absl::FailedPreconditionError(absl::StrCat(flag, ": cannot read ", common::Echo(path)));
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": ", common::Echo(path), " holds no PEM block, expected '-----BEGIN ...' text"));
  }
  return text.str();
}

// The credentials of one connection: TLS from the files as they are now, or plaintext.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const WorkerSecurity& security) {
  if (!security.tls()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  RADIAL_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("--tls-ca", security.tls_ca_file));
  if (!security.tls_cert_file.empty()) {
    RADIAL_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem("--tls-cert", security.tls_cert_file));
    RADIAL_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem("--tls-key", security.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

// Why a stream ended, as far as credentials go. gRPC reports a failed TLS handshake as UNAVAILABLE
// with the TLS library's words in the message when this side rejected the scheduler's certificate;
// when the scheduler rejects this worker's certificate (TLS 1.3: after the client's side of the
// handshake is done) the worker only sees the connection closed while it was being set up.
enum class Refusal {
  kNone,               // not about credentials (the scheduler is down, restarting, ...)
  kToken,              // UNAUTHENTICATED: no token, or one the scheduler does not know
  kServerCertificate,  // this worker did not accept the scheduler's TLS (CA, expiry, name)
  kClosedAtSetup,      // the scheduler closed the connection during its set-up: TLS refused
};

Refusal ClassifyRefusal(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnauthenticated || status.code() == absl::StatusCode::kPermissionDenied) {
    return Refusal::kToken;
  }
  if (status.code() != absl::StatusCode::kUnavailable) return Refusal::kNone;
  const std::string message = absl::AsciiStrToLower(status.message());
  for (const char* word : {"handshake", "ssl", "tls", "certificate"}) {
    if (absl::StrContains(message, word)) return Refusal::kServerCertificate;
  }
  if (absl::StrContains(message, "failed to connect") &&
      (absl::StrContains(message, "socket closed") || absl::StrContains(message, "connection reset"))) {
    return Refusal::kClosedAtSetup;
  }
  return Refusal::kNone;
}

// What to check, from what this worker sent.
std::string RefusalHint(Refusal refusal, const WorkerSecurity& security) {
  switch (refusal) {
    case Refusal::kToken:
      return security.token.empty()
                 ? "this worker sends no token: set RADIAL_WORKER_TOKEN (or --token) to one of the scheduler's "
                   "--worker-tokens"
                 : "the token from RADIAL_WORKER_TOKEN / --token is not one of the scheduler's --worker-tokens";
    case Refusal::kServerCertificate:
      return absl::StrCat(
          "this worker did not accept the scheduler's TLS: its certificate must chain to --tls-ca, be valid now and "
          "name ",
          security.tls_server_name.empty() ? "the host in --scheduler" : "--tls-server-name",
          " (or the scheduler does not serve TLS)");
    case Refusal::kClosedAtSetup:
      if (!security.tls()) {
        return "the scheduler closed the plaintext connection at once: it serves TLS (set --tls-ca, and for "
               "--worker-tls-ca also --tls-cert/--tls-key)";
      }
      return security.tls_cert_file.empty()
                 ? "the scheduler closed the connection during the TLS handshake: it requires a client certificate "
                   "(--worker-tls-ca); set --tls-cert and --tls-key"
                 : "the scheduler closed the connection during the TLS handshake: it does not accept this worker's "
                   "certificate (--tls-cert must be signed by its --worker-tls-ca and be valid now)";
    case Refusal::kNone: break;
  }
  return "";
}

v1::ModelInfo ModelInfoFrom(const ModelManifest& m) {
  v1::ModelInfo info;
  info.set_name(m.name);
  info.set_architecture(m.architecture);
  info.mutable_width()->set_min(m.width.min);
  info.mutable_width()->set_max(m.width.max);
  info.mutable_height()->set_min(m.height.min);
  info.mutable_height()->set_max(m.height.max);
  info.set_size_multiple(std::max(m.width.multiple, m.height.multiple));
  info.mutable_frames()->set_min(m.frames.min);
  info.mutable_frames()->set_max(m.frames.max);
  info.set_frame_step(m.frames.multiple);
  info.mutable_steps()->set_min(m.steps.min);
  info.mutable_steps()->set_max(m.steps.max);
  info.set_guidance_max(static_cast<float>(m.guidance_max));
  info.set_prompt_max_chars(m.prompt_max_chars);
  info.set_layers(m.num_layers);
  v1::GenerateRequest& defaults = *info.mutable_defaults();
  defaults.set_model(m.name);
  defaults.set_negative_prompt(m.default_negative_prompt);
  defaults.set_width(m.default_width);
  defaults.set_height(m.default_height);
  defaults.set_frames(m.default_frames);
  defaults.set_fps(m.default_fps);
  defaults.set_steps(m.default_steps);
  defaults.set_guidance(static_cast<float>(m.default_guidance));
  v1::RadialOptions& radial = *defaults.mutable_radial();
  radial.set_decay(static_cast<float>(m.radial.decay));
  radial.set_sink(m.radial.sink);
  radial.set_block(m.radial.block);
  radial.set_dense_layers(m.radial.dense_layers);
  radial.set_dense_steps(m.radial.dense_steps);
  radial.set_dense_last_steps(m.radial.dense_last_steps);
  radial.set_dense(false);
  return info;
}

v1::Stage ToProtoStage(Stage stage) {
  switch (stage) {
    case Stage::kEncodingText: return v1::STAGE_ENCODING_TEXT;
    case Stage::kDenoising: return v1::STAGE_DENOISING;
    case Stage::kDecoding: return v1::STAGE_DECODING;
  }
  return v1::STAGE_UNSPECIFIED;
}

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

v1::WorkerMessage HandBackMessage(const std::string& job_id, const std::string& reason) {
  v1::WorkerMessage message;
  message.mutable_hand_back()->set_job_id(job_id);
  message.mutable_hand_back()->set_reason(reason);
  return message;
}

v1::WorkerMessage FailedMessage(const std::string& job_id, const absl::Status& status) {
  v1::WorkerMessage message;
  message.mutable_failed()->set_job_id(job_id);
  message.mutable_failed()->mutable_error()->set_code(static_cast<int>(status.code()));
  message.mutable_failed()->mutable_error()->set_message(std::string(status.message()));
  return message;
}

// An assignment answered with JobFailed before it ran: an outcome, no timings.
JobRecord RefusedJob(absl::StatusCode code) {
  JobRecord record;
  record.code = code;
  return record;
}

}  // namespace

absl::Status CheckWorkerSecurity(const WorkerSecurity& security) {
  if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: got one without the other, expected both or neither");
  }
  if (!security.tls()) {
    if (!security.tls_cert_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert: mutual TLS needs --tls-ca, the CA of the scheduler's certificate");
    }
    if (!security.tls_server_name.empty()) {
      return absl::InvalidArgumentError("--tls-server-name: needs --tls-ca (TLS is off without it)");
    }
  }
  if (security.token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("--token / RADIAL_WORKER_TOKEN: got ", security.token.size(),
                                                   " bytes, expected at most ", kMaxTokenBytes));
  }
  for (const char c : security.token) {
    if (c < '!' || c > '~') {
      return absl::InvalidArgumentError(
          "--token / RADIAL_WORKER_TOKEN: got a byte that is not visible ASCII (a space, a line break or a control "
          "character), expected the token alone");
    }
  }
  return ChannelCredentials(security).status();
}

// One stream to the scheduler and the job running on it. Created by Serve(), which ends it; shared
// with the job and heartbeat threads and with Stop() and Drain().
struct WorkerClient::Session {
  grpc::ClientContext context;
  // Set by Serve() before `greeted`; only Serve() touches it before then.
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream;
  std::mutex write_mutex;  // serialises writes, and the half-close with them
  // Nothing more is written: the worker half-closed the stream (Drain) or it ended. Set under both
  // `mutex` and `write_mutex`.
  std::atomic<bool> closed{false};

  std::mutex mutex;  // guards the fields below; `wake` signals changes of them and of `closed`
  std::condition_variable wake;
  bool greeted = false;   // the Hello went out: Drain() may write on the stream
  bool draining = false;  // Draining sent: new assignments are handed back
  std::string job_id;     // running job, empty when idle (and once its outcome is sent)
  bool job_cancelled_by_scheduler = false;
  bool job_handed_back = false;     // its outcome is not sent: the scheduler has the job back
  std::atomic<bool> cancel{false};  // polled by the pipeline between denoising steps

  bool Write(const v1::WorkerMessage& message) {
    std::lock_guard<std::mutex> lock(write_mutex);
    return !closed && stream->Write(message);
  }
  // Half-closes the stream, after `last` when given (nothing else can come between them: a hand
  // back is the last word about its job): the scheduler sees the worker leave cleanly and ends the
  // call. Returns whether `last` was written. The caller holds `mutex`.
  bool CloseWritesLocked(const v1::WorkerMessage* last = nullptr) {
    bool written = false;
    {
      std::lock_guard<std::mutex> lock(write_mutex);
      if (closed) return false;
      written = last != nullptr && stream->Write(*last);
      closed = true;
      stream->WritesDone();
    }
    wake.notify_all();
    return written;
  }
};

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
    } else if (const Refusal refusal = ClassifyRefusal(status); refusal != Refusal::kNone) {
      spdlog::error("worker {}: refused for its credentials by the scheduler at {}: {} ({}); retrying in {} ms",
                    options_.worker_id, options_.scheduler, RefusalHint(refusal, options_.security), status.ToString(),
                    backoff_ms);
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
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments.SetMaxSendMessageSize(8 << 20);
  const WorkerSecurity& security = options_.security;
  if (!security.tls_server_name.empty()) arguments.SetSslTargetNameOverride(security.tls_server_name);
  // A new channel per stream, with credentials from the files as they are now.
  RADIAL_ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ChannelCredentials> credentials, ChannelCredentials(security));
  const auto channel = grpc::CreateCustomChannel(options_.scheduler, credentials, arguments);
  const auto stub = v1::WorkerService::NewStub(channel);
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
    const v1::WorkerMessage outcome = RunJob(*session, assign, record);
    record.code =
        outcome.has_failed() ? static_cast<absl::StatusCode>(outcome.failed().error().code()) : absl::StatusCode::kOk;
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

v1::WorkerMessage WorkerClient::RunJob(Session& session, const v1::Assign& assign, JobRecord& record) {
  const std::string& job_id = assign.job_id();
  const v1::GenerateRequest& request = assign.request();
  spdlog::info("job_id={} started on worker {} (attempt {}): {}x{}x{} steps={}", job_id, options_.worker_id,
               assign.attempt(), request.width(), request.height(), request.frames(), request.steps());
  GenerationParams params;
  params.prompt = request.prompt();
  params.negative_prompt = request.negative_prompt();
  params.width = request.width();
  params.height = request.height();
  params.frames = request.frames();
  params.steps = request.steps();
  params.guidance = request.guidance();
  params.seed = request.seed();
  params.radial = {request.radial().decay(),       request.radial().sink(),
                   request.radial().block(),       request.radial().dense_layers(),
                   request.radial().dense_steps(), request.radial().dense_last_steps()};
  params.dense = request.radial().dense();

  auto failure = [&](const absl::Status& status) { return FailedMessage(job_id, status); };

  EncoderOptions encoder_options;
  encoder_options.width = static_cast<int>(request.width());
  encoder_options.height = static_cast<int>(request.height());
  encoder_options.fps = {static_cast<int>(request.fps()), 1};
  encoder_options.preset = options_.x264_preset;
  encoder_options.threads = options_.x264_threads;
  encoder_options.max_chunk_bytes = options_.max_chunk_bytes;
  auto encoder = Fmp4Encoder::Create(encoder_options, [&](const Chunk& chunk) {
    v1::WorkerMessage message;
    message.mutable_chunk()->set_job_id(job_id);
    message.mutable_chunk()->mutable_chunk()->set_offset(chunk.offset);
    message.mutable_chunk()->mutable_chunk()->set_data(chunk.bytes.data(), chunk.bytes.size());
    return session.Write(message) ? absl::OkStatus() : absl::UnavailableError("the scheduler stream closed");
  });
  if (!encoder.ok()) return failure(encoder.status());
  double encode_seconds = 0;
  StepTimer steps;
  GenerationCallbacks callbacks;
  callbacks.progress = [&](Stage stage, int64_t step, int64_t total) {
    steps.Progress(stage, step, Clock::now());  // first: the write below may wait for the stream
    v1::WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->mutable_progress()->set_stage(ToProtoStage(stage));
    message.mutable_progress()->mutable_progress()->set_step(static_cast<uint32_t>(step));
    message.mutable_progress()->mutable_progress()->set_total(static_cast<uint32_t>(total));
    session.Write(message);
  };
  callbacks.frame = [&](const uint8_t* rgb, int64_t stride) {
    const auto start = Clock::now();
    absl::Status status = (*encoder)->AddFrame(rgb, stride);
    encode_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return status;
  };
  callbacks.cancelled = [&] { return session.cancel.load(); };
  const auto report = pipeline_.Generate(params, callbacks);
  if (!report.ok()) return failure(report.status());
  // Only now is it known whether the whole generation ran dense (a fallback): the step times were
  // kept until here.
  record.mask_density = report->mask_density;
  record.steps = steps.Steps(params, report->text_encode_seconds, report->radial_fell_back);
  const auto start = Clock::now();
  if (absl::Status finished = (*encoder)->Finish(); !finished.ok()) return failure(finished);
  encode_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  v1::WorkerMessage done;
  done.mutable_done()->set_job_id(job_id);
  v1::JobStats& stats = *done.mutable_done()->mutable_stats();
  stats.set_text_encode_seconds(report->text_encode_seconds);
  stats.set_denoise_seconds(report->denoise_seconds);
  stats.set_decode_seconds(report->decode_seconds - encode_seconds);
  stats.set_encode_seconds(encode_seconds);
  stats.set_frames(static_cast<uint32_t>((*encoder)->frames_added()));
  stats.set_video_bytes((*encoder)->bytes_emitted());
  stats.set_mask_density(report->mask_density);
  *stats.mutable_radial() = request.radial();
  if (report->radial_fell_back) stats.mutable_radial()->set_dense(true);
  record.stages = JobStageSeconds{.text_encode = stats.text_encode_seconds(),
                                  .denoise = stats.denoise_seconds(),
                                  .decode = stats.decode_seconds(),
                                  .encode = stats.encode_seconds()};
  spdlog::info("job_id={} done: {} frames, {} bytes, denoise {:.2f} s, decode {:.2f} s, encode {:.2f} s", job_id,
               stats.frames(), stats.video_bytes(), stats.denoise_seconds(), stats.decode_seconds(),
               stats.encode_seconds());
  return done;
}

}  // namespace radial::worker
