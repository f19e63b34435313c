// The services take and give raw bytes (gRPC's raw callback API) so that a request that does not
// decode gets INVALID_ARGUMENT with a message naming the message type, instead of gRPC's own answer
// (a bare status with no text). These convert between protobuf messages and grpc::ByteBuffer.
#ifndef RADIAL_SERVER_RPC_RAW_MESSAGE_H_
#define RADIAL_SERVER_RPC_RAW_MESSAGE_H_

#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace radial::server {

// INVALID_ARGUMENT when the bytes are not a valid `Message` (a truncated message, a wrong wire
// type, invalid UTF-8 in a string field).
template <typename Message>
absl::Status ParseMessage(const grpc::ByteBuffer& buffer, Message& message) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (buffer.Valid() && !buffer.Dump(&slices).ok()) slices.clear();
  for (const grpc::Slice& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  if (!message.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("request: got ", bytes.size(), " bytes that do not decode as ",
                                                   message.GetTypeName(),
                                                   " (a truncated message, a wrong field type, or a string field "
                                                   "that is not valid UTF-8), expected a serialized ",
                                                   message.GetTypeName()));
  }
  return absl::OkStatus();
}

template <typename Message>
grpc::ByteBuffer SerializeMessage(const Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_RAW_MESSAGE_H_
