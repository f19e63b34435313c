// Follows one job's event stream (Generate or Watch) to its end: chunks go into the output file at
// their offsets, a Restarted event empties the file and sets the file's attempt to the new one,
// progress goes to the display, and the end of the stream becomes an exit code with the server's
// message.
#ifndef RADIAL_CLIENT_JOB_FOLLOWER_H_
#define RADIAL_CLIENT_JOB_FOLLOWER_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <ostream>
#include <string>

#include "output_file.h"
#include "progress_display.h"
#include "radial/v1/video_service.pb.h"

namespace radial::client {

struct FollowResult {
  int exit_code = 0;        // an ExitCode
  std::string job_id;       // from the first event; empty when none came (the call was rejected)
  bool job_ended = false;   // a Completed, Failed or Cancelled event came
  uint64_t bytes = 0;       // video bytes held at the end (the file's size when there is one)
  grpc::Status rpc_status;  // how the call ended; not OK and not yet printed when exit_code came from it
};

// Reads `stream` until it ends and finishes it. `file` (may be null: bytes are only counted) is
// written but neither closed nor removed: that is the caller's choice. On success prints the summary
// to `out`; when the job failed or was cancelled prints "radialctl: ..." with the code name and the
// server's message to `err`. A failed call (rpc_status) is left to the caller to report, since only
// the caller knows the connection. When writing the file fails, cancels the call (the job itself
// keeps running).
FollowResult FollowJob(grpc::ClientContext& context, grpc::ClientReaderInterface<v1::JobEvent>& stream,
                       OutputFile* file, ProgressDisplay& display, std::ostream& out, std::ostream& err);

}  // namespace radial::client

#endif  // RADIAL_CLIENT_JOB_FOLLOWER_H_
