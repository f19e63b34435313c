#include "radialctl.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "command_line.h"
#include "exit_code.h"
#include "interrupt.h"
#include "job_follower.h"
#include "job_format.h"
#include "output_file.h"
#include "progress_display.h"
#include "radial/v1/video_service.grpc.pb.h"

namespace radial::client {
namespace {

// What a connection presents and checks: the flags, else the environment's defaults.
struct Security {
  std::string token;            // empty: no authorization metadata
  std::string tls_ca_file;      // empty: plaintext
  std::string tls_server_name;  // empty: the host of --server
};

bool IsLoopback(const std::string& server) {
  const size_t colon = server.rfind(':');
  std::string host = colon == std::string::npos ? server : server.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Words of the TLS library in a failed connection's message (gRPC reports a failed handshake as
// UNAVAILABLE).
bool LooksLikeTlsFailure(const std::string& message) {
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* word : {"handshake", "ssl", "tls", "certificate"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

// One invocation's connection to the scheduler.
class Connection {
 public:
  // The channel, with TLS from the CA file as it is now; a local error naming the file when it
  // cannot be read or holds no certificate (gRPC would take empty roots as the system's CAs).
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const Invocation& invocation, Security security,
                                                          const ClientEnvironment& environment) {
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    grpc::ChannelArguments arguments;
    if (!security.tls_ca_file.empty()) {
      std::ifstream file(security.tls_ca_file, std::ios::binary);
      std::ostringstream pem;
      if (file) pem << file.rdbuf();
      if (!file) return absl::FailedPreconditionError(absl::StrCat("--tls-ca: cannot read ", security.tls_ca_file));
      if (pem.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return absl::FailedPreconditionError(absl::StrCat("--tls-ca: ", security.tls_ca_file,
                                                          " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
      }
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = pem.str();
      credentials = grpc::SslCredentials(ssl);
      if (!security.tls_server_name.empty()) arguments.SetSslTargetNameOverride(security.tls_server_name);
    }
    return std::unique_ptr<Connection>(
        new Connection(invocation.server, std::move(security), environment, credentials, arguments));
  }

  // Waits until the channel is connected or has failed to connect. OK also for a failed channel:
  // the call that follows then fails at once (calls do not wait for ready) with gRPC's own reason.
  // DEADLINE_EXCEEDED when the server neither accepts nor refuses within the connect timeout.
  grpc::Status AwaitConnection() {
    const auto deadline = std::chrono::system_clock::now() + environment_.connect_timeout;
    grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    while (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) {
      if (!channel_->WaitForStateChange(state, deadline)) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            absl::StrCat("no connection to ", server_, " within ",
                                         environment_.connect_timeout.count() / 1000.0, " s"));
      }
      state = channel_->GetState(/*try_to_connect=*/true);
    }
    return grpc::Status::OK;
  }

  // Every call is prepared here: the bearer token when there is one, and for the unary calls their
  // deadline (streams have none: a job may run for a long time).
  void PrepareCall(grpc::ClientContext& context) const {
    if (!security_.token.empty()) context.AddMetadata("authorization", "Bearer " + security_.token);
  }
  void PrepareUnaryCall(grpc::ClientContext& context) const {
    PrepareCall(context);
    context.set_deadline(std::chrono::system_clock::now() + environment_.call_timeout);
  }

  // Prints a failed call as "radialctl: CODE: message" and returns its exit code. When the channel
  // is not connected the address is named: gRPC's message may not say how to pick another. (A
  // connected channel means the server itself answered UNAVAILABLE, e.g. no worker yet.) Refused
  // credentials and failed TLS handshakes say what to check.
  int Report(const grpc::Status& status, std::ostream& err) const {
    const ExitCode code = ExitCodeForRpc(status.error_code());
    err << "radialctl: " << DescribeStatus(status.error_code(), status.error_message());
    if (code == kExitUnauthenticated) {
      err << (security_.token.empty() ? " (no token was sent: set RADIAL_TOKEN or --token)"
                                      : " (the server does not accept the token from --token or RADIAL_TOKEN)");
    } else if (code == kExitUnreachable && channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
      if (!security_.tls_ca_file.empty() && LooksLikeTlsFailure(status.error_message())) {
        err << " (TLS with server " << server_ << " failed: its certificate must be signed by the CA in "
            << security_.tls_ca_file << ", be valid now and name "
            << (security_.tls_server_name.empty() ? "the host in --server" : security_.tls_server_name)
            << "; set --tls-ca / RADIAL_TLS_CA, --tls-server-name)";
      } else {
        err << " (server " << server_ << "; set --server or RADIAL_SERVER";
        if (security_.tls_ca_file.empty()) err << "; a server with TLS needs --tls-ca or RADIAL_TLS_CA";
        err << ")";
      }
    }
    err << "\n";
    return code;
  }

  // Said once before the first call: a token sent in the clear to another machine can be read on
  // the way.
  void WarnIfTokenInTheClear(std::ostream& err) const {
    if (!security_.token.empty() && security_.tls_ca_file.empty() && !IsLoopback(server_)) {
      err << "radialctl: warning: sending the token to " << server_
          << " without TLS, readable on the network; set --tls-ca or RADIAL_TLS_CA\n";
    }
  }

  v1::VideoService::Stub& stub() { return *stub_; }
  const std::string& server() const { return server_; }

 private:
  Connection(std::string server, Security security, const ClientEnvironment& environment,
             const std::shared_ptr<grpc::ChannelCredentials>& credentials, const grpc::ChannelArguments& arguments)
      : server_(std::move(server)),
        security_(std::move(security)),
        environment_(environment),
        channel_(grpc::CreateCustomChannel(server_, credentials, arguments)),
        stub_(v1::VideoService::NewStub(channel_)) {}

  const std::string server_;
  const Security security_;
  const ClientEnvironment& environment_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
};

// The watch command that follows the job again, writing to the same file (when there is one). A
// file there that holds none of this job's bytes (an earlier file, left alone because nothing came)
// must not be continued: the command then asks for the video from byte 0.
std::string WatchCommand(const Invocation& invocation, const std::string& job_id, const OutputFile* file) {
  std::vector<std::string> args = {"watch", job_id};
  if (!invocation.output_path.empty()) {
    args.insert(args.end(), {"-o", invocation.output_path});
    const bool foreign = OutputFile::ExistingSize(invocation.output_path).value_or(0) > 0 &&
                         (file == nullptr || !file->holds_video());
    if (foreign) args.insert(args.end(), {"--from-offset", "0"});
  }
  return FollowUpCommand(invocation, args);
}

// After a follow-up command: the token is never printed, so a command line that had one says to
// pass it again.
void PrintTokenNote(const Invocation& invocation, std::ostream& err) {
  if (!invocation.token.empty()) err << "radialctl: add the token as before: RADIAL_TOKEN (preferred) or --token\n";
}

// For a stream that broke while its job ran on: how to pick it up again.
void PrintResumeHint(const Invocation& invocation, const FollowResult& result, const OutputFile* file,
                     bool file_kept, std::ostream& err) {
  if (result.job_id.empty() || result.job_ended) return;
  err << "radialctl: job " << result.job_id << " may still be running on the server; "
      << (invocation.output_path.empty() ? "follow it with: " : file_kept ? "resume with: " : "fetch it with: ")
      << WatchCommand(invocation, result.job_id, file) << "\n";
  PrintTokenNote(invocation, err);
}

// Ctrl-C while following a job: the job goes on, so say how to follow it again and how to stop it.
// The output file stays as it is (a prefix of the job's current attempt, labelled by its
// FILE.radial-attempt record), whatever --keep-partial says: `watch -o FILE` continues it from its
// size, or starts over if the job has run again since.
int ReportInterrupted(const Invocation& invocation, const FollowResult& result, const OutputFile* file,
                      std::ostream& err) {
  if (result.job_id.empty()) {
    err << "radialctl: interrupted before the server named the job; if it was queued, "
        << FollowUpCommand(invocation, {"jobs"}) << " lists it\n";
  } else {
    err << "radialctl: interrupted; job " << result.job_id << " goes on running on the server\n"
        << "radialctl: " << (invocation.output_path.empty() ? "follow it again with: " : "resume with: ")
        << WatchCommand(invocation, result.job_id, file) << "\n"
        << "radialctl: stop it with: " << FollowUpCommand(invocation, {"cancel", result.job_id}) << "\n";
  }
  PrintTokenNote(invocation, err);
  return kExitInterrupted;
}

int Generate(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err,
             const ClientEnvironment& environment) {
  // The file is checked before the job is submitted so that a bad path costs no job; nothing is
  // written to it before the job's first bytes.
  auto file = OutputFile::Open(invocation.output_path, 0);
  if (!file.ok()) {
    err << "radialctl: " << std::string(file.status().message()) << "\n";
    return kExitLocalError;
  }
  // A new job's bytes come from its first attempt until a Restarted event says otherwise.
  (*file)->SetAttempt(1);
  FollowResult result;
  std::atomic<bool> interrupted{false};
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) {
    result.exit_code = connection.Report(ready, err);
  } else {
    grpc::ClientContext context;
    connection.PrepareCall(context);
    // From the request on, Ctrl-C ends the call rather than the process (disarmed before `context`
    // goes away).
    ArmedInterrupt armed(environment.interrupt, [&] {
      interrupted = true;
      context.TryCancel();
    });
    auto stream = connection.stub().Generate(&context, invocation.request);
    ProgressDisplay display(err, environment.stderr_is_terminal, environment.now);
    result = FollowJob(context, *stream, file->get(), display, out, err);
  }
  if (interrupted && !result.job_ended) {
    if (auto closed = (*file)->Close(); !closed.ok()) err << "radialctl: " << std::string(closed.message()) << "\n";
    return ReportInterrupted(invocation, result, file->get(), err);
  }
  if (!result.rpc_status.ok()) connection.Report(result.rpc_status, err);
  if (result.job_ended) (*file)->ForgetAttempt();  // nothing left to resume
  if (result.exit_code != kExitOk && !invocation.keep_partial) {
    (*file)->Remove();
  } else if (auto closed = (*file)->Close(); !closed.ok()) {
    err << "radialctl: " << std::string(closed.message()) << "\n";
    if (result.exit_code == kExitOk) result.exit_code = kExitLocalError;
  }
  if (result.exit_code != kExitOk) PrintResumeHint(invocation, result, file->get(), invocation.keep_partial, err);
  return result.exit_code;
}

// The attempt of the job the coming bytes are from, when the file holds no record of its own: the
// job's current one (a queued job's bytes will come from its first). 0 when the job cannot be read:
// the Watch call that follows then reports why.
uint32_t CurrentAttempt(const Invocation& invocation, Connection& connection) {
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::GetJobRequest request;
  request.set_job_id(invocation.job_id);
  v1::Job job;
  if (!connection.stub().GetJob(&context, request, &job).ok()) return 0;
  return job.attempts();
}

int Watch(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err,
          const ClientEnvironment& environment) {
  uint64_t from_offset = invocation.from_offset.value_or(0);
  uint32_t attempt = 0;  // the attempt of the bytes before from_offset; 0: not known
  std::unique_ptr<OutputFile> file;
  if (!invocation.output_path.empty()) {
    // Resuming: the file holds the first bytes already; ask for the rest.
    const uint64_t existing = OutputFile::ExistingSize(invocation.output_path).value_or(0);
    if (!invocation.from_offset) from_offset = existing;
    if (from_offset > existing) {
      err << "radialctl: --from-offset: got " << from_offset << ", but " << invocation.output_path << " holds only "
          << existing << " bytes; the file must hold every byte before the offset\n";
      return kExitUsage;
    }
    if (from_offset > 0) attempt = OutputFile::RecordedAttempt(invocation.output_path).value_or(0);
    auto opened = OutputFile::Open(invocation.output_path, from_offset);
    if (!opened.ok()) {
      err << "radialctl: " << std::string(opened.status().message()) << "\n";
      return kExitLocalError;
    }
    file = std::move(*opened);
  }
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  if (file != nullptr) {
    // With a record, the server restarts the stream (a Restarted event, then offset 0) if the job
    // has run again since those bytes; without one the bytes in the file count as the current
    // attempt's. Either way the bytes that follow are labelled with it until a Restarted event.
    if (attempt == 0) attempt = CurrentAttempt(invocation, connection);
    file->SetAttempt(std::max<uint32_t>(attempt, 1));
  }
  v1::WatchRequest request;
  request.set_job_id(invocation.job_id);
  request.set_from_byte_offset(from_offset);
  request.set_attempt(attempt);
  FollowResult result;
  std::atomic<bool> interrupted{false};
  {
    grpc::ClientContext context;
    connection.PrepareCall(context);
    ArmedInterrupt armed(environment.interrupt, [&] {
      interrupted = true;
      context.TryCancel();
    });
    auto stream = connection.stub().Watch(&context, request);
    ProgressDisplay display(err, environment.stderr_is_terminal, environment.now);
    display.set_watching(true);
    result = FollowJob(context, *stream, file.get(), display, out, err);
  }
  if (interrupted && !result.job_ended) {
    if (result.job_id.empty()) result.job_id = invocation.job_id;  // interrupted before the first event
    if (file != nullptr) {
      if (auto closed = file->Close(); !closed.ok()) err << "radialctl: " << std::string(closed.message()) << "\n";
    }
    return ReportInterrupted(invocation, result, file.get(), err);
  }
  if (!result.rpc_status.ok()) connection.Report(result.rpc_status, err);
  if (file == nullptr) return result.exit_code;
  // The file is removed only when the job can no longer complete; after a broken stream it stays,
  // so that the next watch resumes it.
  const bool job_lost = result.exit_code == kExitJobFailed || result.exit_code == kExitJobCancelled;
  if (result.job_ended) file->ForgetAttempt();  // nothing left to resume
  if (job_lost && !invocation.keep_partial) {
    file->Remove();
  } else if (auto closed = file->Close(); !closed.ok()) {
    err << "radialctl: " << std::string(closed.message()) << "\n";
    if (result.exit_code == kExitOk) result.exit_code = kExitLocalError;
  }
  if (result.exit_code != kExitOk) PrintResumeHint(invocation, result, file.get(), true, err);
  return result.exit_code;
}

int Submit(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::Job job;
  if (grpc::Status status = connection.stub().Submit(&context, invocation.request, &job); !status.ok()) {
    return connection.Report(status, err);
  }
  if (invocation.json) {
    PrintJson(job, out);
    return kExitOk;
  }
  out << job.id() << "\n";
  if (invocation.verbose) {
    out << "  state     " << JobStateName(job.state());
    if (job.state() == v1::JOB_STATE_QUEUED) out << ", queue position " << job.queue_position();
    out << "\n  request   " << DescribeRequest(job.request()) << "\n";
    if (job.request().has_radial()) out << "  radial    " << DescribeRadial(job.request().radial()) << "\n";
    if (!job.request().negative_prompt().empty()) out << "  negative  " << job.request().negative_prompt() << "\n";
  }
  return kExitOk;
}

int Status(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::GetJobRequest request;
  request.set_job_id(invocation.job_id);
  v1::Job job;
  if (grpc::Status status = connection.stub().GetJob(&context, request, &job); !status.ok()) {
    return connection.Report(status, err);
  }
  if (invocation.json) {
    PrintJson(job, out);
  } else {
    PrintJob(job, out);
  }
  return kExitOk;
}

bool Ended(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

// A cancel the server refused with FAILED_PRECONDITION: the job had ended (or was just saving its
// video). Names the state the job ended in, looked up with GetJob; when that says no more, the
// server's own message.
int ReportAlreadyEnded(const std::string& job_id, const grpc::Status& refused, Connection& connection,
                       std::ostream& err) {
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  if (!connection.stub().GetJob(&context, request, &job).ok() || !Ended(job.state())) {
    return connection.Report(refused, err);
  }
  err << "radialctl: job " << job_id << " had already ended (" << JobStateName(job.state()) << ")\n";
  return ExitCodeForRpc(refused.error_code());
}

int Cancel(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::CancelJobRequest request;
  request.set_job_id(invocation.job_id);
  v1::Job job;
  if (grpc::Status status = connection.stub().CancelJob(&context, request, &job); !status.ok()) {
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      return ReportAlreadyEnded(invocation.job_id, status, connection, err);
    }
    return connection.Report(status, err);
  }
  if (job.state() == v1::JOB_STATE_CANCELLED) {
    out << "job " << job.id() << " cancelled\n";
  } else {
    // A running job stops at its next denoising step; its watchers then see it cancelled.
    out << "job " << job.id() << " is " << JobStateName(job.state())
        << ": cancellation requested, it stops within one denoising step\n";
  }
  return kExitOk;
}

int Delete(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::DeleteJobRequest request;
  request.set_job_id(invocation.job_id);
  v1::Job job;
  if (grpc::Status status = connection.stub().DeleteJob(&context, request, &job); !status.ok()) {
    return connection.Report(status, err);
  }
  if (invocation.json) {
    PrintJson(job, out);
    return kExitOk;
  }
  // The job as it was when removed: a queued or running one was cancelled first.
  out << "job " << job.id() << " deleted (" << JobStateName(job.state()) << ", " << FormatBytes(job.bytes_produced())
      << " of video)\n";
  return kExitOk;
}

// The server's pages hold up to this many jobs (ListJobsRequest.page_size).
constexpr uint32_t kMaxPageSize = 1000;

int Jobs(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  v1::ListJobsRequest request;
  for (const v1::JobState state : invocation.states) request.add_states(state);
  request.set_model(invocation.request.model());
  v1::ListJobsResponse listed;  // every page's jobs up to the limit, and no token
  bool more = false;            // the server holds jobs past the limit
  while (true) {
    request.set_page_size(std::min(invocation.limit - static_cast<uint32_t>(listed.jobs_size()), kMaxPageSize));
    grpc::ClientContext context;
    connection.PrepareUnaryCall(context);
    v1::ListJobsResponse page;
    if (grpc::Status status = connection.stub().ListJobs(&context, request, &page); !status.ok()) {
      return connection.Report(status, err);
    }
    for (const v1::Job& job : page.jobs()) {
      if (static_cast<uint32_t>(listed.jobs_size()) == invocation.limit) {
        more = true;
        break;
      }
      *listed.add_jobs() = job;
    }
    // An empty page that still names a next one would never end the loop: take it as the end.
    if (page.next_page_token().empty() || page.jobs().empty()) break;
    if (static_cast<uint32_t>(listed.jobs_size()) == invocation.limit) {
      more = true;
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (invocation.json) {
    PrintJson(listed, out);
  } else {
    PrintJobs(listed, !invocation.states.empty() || !invocation.request.model().empty(), out);
  }
  if (more) {
    err << "radialctl: showing the newest " << invocation.limit << (invocation.limit == 1 ? " job" : " jobs")
        << "; there are more (raise --limit)\n";
  }
  return kExitOk;
}

int Models(const Invocation& invocation, Connection& connection, std::ostream& out, std::ostream& err) {
  if (grpc::Status ready = connection.AwaitConnection(); !ready.ok()) return connection.Report(ready, err);
  grpc::ClientContext context;
  connection.PrepareUnaryCall(context);
  v1::ListModelsResponse response;
  if (grpc::Status status = connection.stub().ListModels(&context, v1::ListModelsRequest(), &response); !status.ok()) {
    return connection.Report(status, err);
  }
  if (invocation.json) {
    PrintJson(response, out);
  } else {
    PrintModels(response, out);
  }
  return kExitOk;
}

}  // namespace

int RunRadialctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                 const ClientEnvironment& environment) {
  auto parsed = ParseCommandLine(args, environment.default_server);
  if (!parsed.ok()) {
    err << "radialctl: " << std::string(parsed.status().message()) << "\nrun 'radialctl --help' for usage\n";
    return kExitUsage;
  }
  const Invocation& invocation = *parsed;
  if (invocation.command == Command::kHelp) {
    out << UsageText(invocation.help_topic);
    return kExitOk;
  }
  if (invocation.command == Command::kVersion) {
    out << VersionText();
    return kExitOk;
  }
  Security security{invocation.token, invocation.tls_ca_file, invocation.tls_server_name};
  if (security.token.empty() && !environment.default_token.empty()) {
    if (absl::Status valid = CheckToken("RADIAL_TOKEN", environment.default_token); !valid.ok()) {
      err << "radialctl: " << std::string(valid.message()) << "\n";
      return kExitUsage;
    }
    security.token = environment.default_token;
  }
  if (security.tls_ca_file.empty()) security.tls_ca_file = environment.default_tls_ca;
  if (!security.tls_server_name.empty() && security.tls_ca_file.empty()) {
    err << "radialctl: --tls-server-name: needs --tls-ca or RADIAL_TLS_CA (TLS is off without a CA)\n";
    return kExitUsage;
  }
  auto opened = Connection::Open(invocation, std::move(security), environment);
  if (!opened.ok()) {
    err << "radialctl: " << std::string(opened.status().message()) << "\n";
    return kExitLocalError;
  }
  Connection& connection = **opened;
  connection.WarnIfTokenInTheClear(err);
  switch (invocation.command) {
    case Command::kGenerate: return Generate(invocation, connection, out, err, environment);
    case Command::kWatch: return Watch(invocation, connection, out, err, environment);
    case Command::kSubmit: return Submit(invocation, connection, out, err);
    case Command::kStatus: return Status(invocation, connection, out, err);
    case Command::kCancel: return Cancel(invocation, connection, out, err);
    case Command::kModels: return Models(invocation, connection, out, err);
    case Command::kJobs: return Jobs(invocation, connection, out, err);
    case Command::kDelete: return Delete(invocation, connection, out, err);
    case Command::kHelp:
    case Command::kVersion: break;
  }
  return kExitOk;
}

ClientEnvironment ProcessEnvironment() {
  ClientEnvironment environment;
  environment.stderr_is_terminal = ::isatty(STDERR_FILENO) == 1;
  if (const char* server = std::getenv("RADIAL_SERVER"); server != nullptr && *server != '\0') {
    environment.default_server = server;
  }
  if (const char* token = std::getenv("RADIAL_TOKEN"); token != nullptr) environment.default_token = token;
  if (const char* ca = std::getenv("RADIAL_TLS_CA"); ca != nullptr) environment.default_tls_ca = ca;
  return environment;
}

}  // namespace radial::client
