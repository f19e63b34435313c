#include "worker_security.h"

#include <grpcpp/security/credentials.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"

namespace radial::worker {
namespace {

// Longer tokens are a mistake (a file pasted whole); gRPC's headers hold 8 KiB in all.
constexpr size_t kMaxTokenBytes = 4096;

// The text of one PEM file, read now. A file without a PEM block (e.g. emptied while being
// rewritten) is an error: gRPC would take empty roots as "trust the system's CAs".
absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  if (file) text << file.rdbuf();
  if (!file) return absl::FailedPreconditionError(absl::StrCat(flag, ": cannot read ", common::Echo(path)));
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": ", common::Echo(path), " holds no PEM block, expected '-----BEGIN ...' text"));
  }
  return text.str();
}

// Why a stream ended, as far as credentials go. gRPC reports a failed TLS handshake as UNAVAILABLE
// with the TLS library's words in the message when this side rejected the scheduler's certificate;
// when the scheduler rejects this worker's certificate (TLS 1.3: after the client's side of the
// handshake is done) the worker only sees the connection closed while it was being set up.
enum class Refusal {
  kNone,               // not about credentials
  kToken,              // UNAUTHENTICATED: no token, or one the scheduler does not know
  kServerCertificate,  // this worker did not accept the scheduler's TLS (CA, expiry, name)
  kClosedAtSetup,      // the scheduler closed the connection during its set-up: TLS refused
};

Refusal ClassifyRefusal(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnauthenticated || status.code() == absl::StatusCode::kPermissionDenied) {
    return Refusal::kToken;
  }
  if (status.code() != absl::StatusCode::kUnavailable) return Refusal::kNone;
  const std::string message = absl::AsciiStrToLower(status.message());
  for (const char* word : {"handshake", "ssl", "tls", "certificate"}) {
    if (absl::StrContains(message, word)) return Refusal::kServerCertificate;
  }
  if (absl::StrContains(message, "failed to connect") &&
      (absl::StrContains(message, "socket closed") || absl::StrContains(message, "connection reset"))) {
    return Refusal::kClosedAtSetup;
  }
  return Refusal::kNone;
}

}  // namespace

absl::Status CheckWorkerSecurity(const WorkerSecurity& security) {
  if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: got one without the other, expected both or neither");
  }
  if (!security.tls()) {
    if (!security.tls_cert_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert: mutual TLS needs --tls-ca, the CA of the scheduler's certificate");
    }
    if (!security.tls_server_name.empty()) {
      return absl::InvalidArgumentError("--tls-server-name: needs --tls-ca (TLS is off without it)");
    }
  }
  if (security.token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("--token / RADIAL_WORKER_TOKEN: got ", security.token.size(),
                                                   " bytes, expected at most ", kMaxTokenBytes));
  }
  for (const char c : security.token) {
    if (c < '!' || c > '~') {
      return absl::InvalidArgumentError(
          "--token / RADIAL_WORKER_TOKEN: got a byte that is not visible ASCII (a space, a line break or a control "
          "character), expected the token alone");
    }
  }
  return SchedulerCredentials(security).status();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> SchedulerCredentials(const WorkerSecurity& security) {
  if (!security.tls()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  RADIAL_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("--tls-ca", security.tls_ca_file));
  if (!security.tls_cert_file.empty()) {
    RADIAL_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem("--tls-cert", security.tls_cert_file));
    RADIAL_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem("--tls-key", security.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

std::string DescribeRefusal(const absl::Status& status, const WorkerSecurity& security) {
  switch (ClassifyRefusal(status)) {
    case Refusal::kToken:
      return security.token.empty()
                 ? "this worker sends no token: set RADIAL_WORKER_TOKEN (or --token) to one of the scheduler's "
                   "--worker-tokens"
                 : "the token from RADIAL_WORKER_TOKEN / --token is not one of the scheduler's --worker-tokens";
    case Refusal::kServerCertificate:
      return absl::StrCat(
          "this worker did not accept the scheduler's TLS: its certificate must chain to --tls-ca, be valid now and "
          "name ",
          security.tls_server_name.empty() ? "the host in --scheduler" : "--tls-server-name",
          " (or the scheduler does not serve TLS)");
    case Refusal::kClosedAtSetup:
      if (!security.tls()) {
        return "the scheduler closed the plaintext connection at once: it serves TLS (set --tls-ca, and for "
               "--worker-tls-ca also --tls-cert/--tls-key)";
      }
      return security.tls_cert_file.empty()
                 ? "the scheduler closed the connection during the TLS handshake: it requires a client certificate "
                   "(--worker-tls-ca); set --tls-cert and --tls-key"
                 : "the scheduler closed the connection during the TLS handshake: it does not accept this worker's "
                   "certificate (--tls-cert must be signed by its --worker-tls-ca and be valid now)";
    case Refusal::kNone: break;
  }
  return "";
}

}  // namespace radial::worker
