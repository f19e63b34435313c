#include "worker_session.h"

#include "job_messages.h"

namespace radial::worker {

std::shared_ptr<grpc::Channel> SchedulerChannel(const std::string& address,
                                                const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                                const std::string& tls_server_name) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments.SetMaxSendMessageSize(8 << 20);
  if (!tls_server_name.empty()) arguments.SetSslTargetNameOverride(tls_server_name);
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

bool WorkerSession::Write(const v1::WorkerMessage& message) {
  std::lock_guard<std::mutex> lock(write_mutex);
  return !closed && stream->Write(message);
}

bool WorkerSession::CloseWritesLocked(const v1::WorkerMessage* last) {
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

void StreamJobSink::Progress(JobStage stage, int64_t step, int64_t total) {
  session_.Write(ProgressMessage(job_id_, stage, step, total));
}

absl::Status StreamJobSink::WriteChunk(const Chunk& chunk) {
  if (session_.Write(ChunkMessage(job_id_, chunk))) return absl::OkStatus();
  return absl::UnavailableError("the scheduler stream closed");
}

}  // namespace radial::worker
