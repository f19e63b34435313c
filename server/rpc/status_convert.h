// The one place where the three error types of the scheduler convert into each other:
// absl::Status (everything in C++), grpc::Status (what a client's call ends with) and v1::Error (the
// error recorded in a job, sent by workers and shown to clients). The codes are the same numbers
// (google.rpc.Code) in all three; a code a worker sends outside 1..16 becomes UNKNOWN.
#ifndef RADIAL_SERVER_RPC_STATUS_CONVERT_H_
#define RADIAL_SERVER_RPC_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "radial/v1/video_service.pb.h"

namespace radial::server {

grpc::Status ToGrpcStatus(const absl::Status& status);
// OK gives an empty Error (code 0).
v1::Error ToProtoError(const absl::Status& status);
// An error from a worker: code 0 (a failure with no code) becomes `fallback`'s code, codes outside
// google.rpc.Code become UNKNOWN; the message is cut to a bounded size.
absl::Status FromProtoError(const v1::Error& error, absl::StatusCode fallback = absl::StatusCode::kInternal);

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_STATUS_CONVERT_H_
