// How the worker proves who it is to the scheduler and checks who the scheduler is: TLS with a CA
// of the operator's choosing, a client certificate for mutual TLS, a worker token sent as
// "authorization: Bearer <token>". The PEM files are read again for every connection, so
// certificates rotated on disk are used from the next connection on. Also what a refused stream
// means, in words an operator can act on. The token is never logged or quoted.
#ifndef RADIAL_WORKER_WORKER_SECURITY_H_
#define RADIAL_WORKER_WORKER_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace grpc {
class ChannelCredentials;
}  // namespace grpc

namespace radial::worker {

struct WorkerSecurity {
  std::string tls_ca_file;      // PEM CA the scheduler's certificate must chain to; set: TLS on
  std::string tls_cert_file;    // PEM certificate chain of this worker (mutual TLS), with tls_key_file
  std::string tls_key_file;     // its private key
  std::string tls_server_name;  // name checked in the scheduler's certificate; empty: the host dialled
  std::string token;            // worker token (--worker-tokens on the scheduler); empty: none sent

  bool tls() const { return !tls_ca_file.empty(); }
};

// Checks the settings before the first connection: INVALID_ARGUMENT naming the flag for a key without
// its certificate (or the reverse), a certificate or server name without --tls-ca, or a token that
// cannot travel in a header (visible ASCII only; the message never quotes it); FAILED_PRECONDITION
// naming the flag and the file for a file that cannot be read or holds no PEM block (the same error
// a later reconnect logs and retries on).
absl::Status CheckWorkerSecurity(const WorkerSecurity& security);

// The credentials of one connection, from the files as they are now: TLS, or plaintext without a CA.
// FAILED_PRECONDITION as CheckWorkerSecurity for a file that cannot be read or holds no PEM block.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> SchedulerCredentials(const WorkerSecurity& security);

// When `status` (how a stream ended) says the scheduler refused this worker's credentials, or this
// worker refused the scheduler's TLS: what to check, from what this worker sent. Empty otherwise
// (the scheduler is down, restarting, ...).
std::string DescribeRefusal(const absl::Status& status, const WorkerSecurity& security);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_SECURITY_H_
