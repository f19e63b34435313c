#include "exit_code.h"

#include <array>
#include <string_view>

namespace radial::client {

ExitCode ExitCodeForRpc(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: return kExitUnreachable;
    default: return kExitRejected;
  }
}

std::string StatusCodeName(int code) {
  static constexpr std::array<std::string_view, 17> kNames = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(kNames.size())) return std::string(kNames[code]);
  return "CODE_" + std::to_string(code);
}

std::string DescribeStatus(int code, const std::string& message) {
  std::string text = StatusCodeName(code);
  if (!message.empty()) text += ": " + message;
  return text;
}

}  // namespace radial::client
