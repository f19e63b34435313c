#include "rpc/status_convert.h"

#include <string>

namespace radial::server {
namespace {

// A worker's error message becomes part of a job that every watcher receives; keep it bounded.
constexpr size_t kMaxWorkerMessageBytes = 1024;

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

v1::Error ToProtoError(const absl::Status& status) {
  v1::Error error;
  if (status.ok()) return error;
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
  return error;
}

absl::Status FromProtoError(const v1::Error& error, absl::StatusCode fallback) {
  absl::StatusCode code = static_cast<absl::StatusCode>(error.code());
  if (error.code() == 0) code = fallback;
  if (error.code() < 0 || error.code() > 16) code = absl::StatusCode::kUnknown;
  std::string message = error.message();
  if (message.size() > kMaxWorkerMessageBytes) {
    size_t cut = kMaxWorkerMessageBytes;  // never inside a UTF-8 sequence: proto3 strings must stay valid
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    message = message.substr(0, cut) + "... (" + std::to_string(error.message().size()) + " bytes)";
  }
  return absl::Status(code, message);
}

}  // namespace radial::server
