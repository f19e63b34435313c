#include "exit_code.h"

#include <string>

#include "absl/status/status.h"

namespace radial::client {

ExitCode ExitCodeForRpc(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: return kExitUnreachable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return kExitUnauthenticated;
    default: return kExitRejected;
  }
}

std::string StatusCodeName(int code) {
  // absl's names are gRPC's (the codes are the same numbers); it returns "" for unknown ones.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "CODE_" + std::to_string(code) : name;
}

std::string DescribeStatus(int code, const std::string& message) {
  std::string text = StatusCodeName(code);
  if (!message.empty()) text += ": " + message;
  return text;
}

}  // namespace radial::client
