#include "job_follower.h"

#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "exit_code.h"
#include "job_format.h"

namespace radial::client {

FollowResult FollowJob(grpc::ClientContext& context, grpc::ClientReaderInterface<v1::JobEvent>& stream,
                       OutputFile* file, ProgressDisplay& display, std::ostream& out, std::ostream& err) {
  FollowResult result;
  v1::GenerateRequest request;
  v1::JobStats stats;
  std::optional<v1::Error> failed;
  std::optional<v1::Error> cancelled;
  bool completed = false;
  uint64_t bytes = file != nullptr ? file->size() : 0;  // end of the video received so far
  uint64_t received = 0;                                // bytes that came over this stream
  absl::Status local = absl::OkStatus();                // the first error writing the file

  v1::JobEvent event;
  while (stream.Read(&event)) {
    if (!local.ok()) continue;  // draining after TryCancel
    if (result.job_id.empty()) result.job_id = event.job_id();
    switch (event.event_case()) {
      case v1::JobEvent::kAccepted:
        request = event.accepted().request();
        display.Accepted(event.job_id(), event.accepted().queue_position());
        break;
      case v1::JobEvent::kProgress: display.Progress(event.progress()); break;
      case v1::JobEvent::kChunk: {
        const v1::Chunk& chunk = event.chunk();
        if (file != nullptr) local = file->Write(chunk.offset(), chunk.data());
        bytes = std::max<uint64_t>(bytes, chunk.offset() + chunk.data().size());
        received += chunk.data().size();
        display.Bytes(bytes);
        break;
      }
      case v1::JobEvent::kRestarted:
        display.Restarted(event.restarted().attempt(), event.restarted().reason(), bytes);
        if (file != nullptr) {
          local = file->Truncate();
          file->SetAttempt(event.restarted().attempt());  // recorded with the new attempt's first bytes
        }
        bytes = 0;
        received = 0;
        break;
      case v1::JobEvent::kCompleted:
        completed = true;
        stats = event.completed().stats();
        display.Completed();  // the bar ends full even when the last muxing progress was skipped
        break;
      case v1::JobEvent::kFailed: failed = event.failed(); break;
      case v1::JobEvent::kCancelled: cancelled = event.cancelled(); break;
      case v1::JobEvent::EVENT_NOT_SET: break;  // an event kind newer than this client
    }
    if (!local.ok()) context.TryCancel();
  }
  const grpc::Status status = stream.Finish();
  display.Finish();
  result.job_ended = completed || failed || cancelled;
  result.bytes = file != nullptr ? file->size() : bytes;

  if (!local.ok()) {
    err << "radialctl: " << std::string(local.message()) << "\n";
    result.exit_code = kExitLocalError;
  } else if (failed) {
    err << "radialctl: job " << result.job_id << " failed: " << DescribeStatus(failed->code(), failed->message())
        << "\n";
    result.exit_code = kExitJobFailed;
  } else if (cancelled) {
    err << "radialctl: job " << result.job_id
        << " was cancelled: " << DescribeStatus(cancelled->code() != 0 ? cancelled->code() : 1, cancelled->message())
        << "\n";
    result.exit_code = kExitJobCancelled;
  } else if (completed) {
    PrintSummary(result.job_id, request, stats, file != nullptr ? file->path() : "", result.bytes, received, out);
    result.exit_code = kExitOk;
  } else if (!status.ok()) {
    result.rpc_status = status;
    result.exit_code = ExitCodeForRpc(status.error_code());
  } else {
    // The server ended the stream without a verdict (it forgot the job, e.g. after a restart).
    err << "radialctl: the stream of job " << result.job_id << " ended without a result; "
        << "check it with: radialctl status " << result.job_id << "\n";
    result.exit_code = kExitLocalError;
  }
  return result;
}

}  // namespace radial::client
