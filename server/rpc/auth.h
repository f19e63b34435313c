// Who may call the scheduler. Clients present "authorization: Bearer <token>" metadata; the tokens
// file (--tokens) maps the SHA-256 of each token to a tenant and a role (user or admin), so the file
// never holds a token itself. Workers present a worker token (--worker-tokens, same format with the
// role "worker") or a client certificate signed by --worker-tls-ca (mTLS, checked by TLS itself).
// Both files are re-read by Reload() (SIGHUP); a file that no longer parses keeps the old tables.
//
// File format, one entry per line ('#' starts a comment; blank lines are ignored):
//   <64 hex digits: sha256 of the token> <tenant> <user|admin>      (--tokens)
//   <64 hex digits: sha256 of the token> <worker name> worker       (--worker-tokens)
// e.g. printf %s "$TOKEN" | sha256sum
#ifndef RADIAL_SERVER_RPC_AUTH_H_
#define RADIAL_SERVER_RPC_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "scheduler/tenancy.h"

namespace radial::server {

std::string Sha256Hex(std::string_view data);

struct TokenEntry {
  std::string name;  // the tenant (client tokens) or the worker's name (worker tokens)
  bool admin = false;
};

// The parsed tokens of one file, keyed by the token's SHA-256.
class TokenTable {
 public:
  // INVALID_ARGUMENT naming the file and the line for a malformed entry; NOT_FOUND / PERMISSION_DENIED
  // when the file cannot be read.
  static absl::StatusOr<TokenTable> Load(const std::string& path, bool worker_tokens);
  const TokenEntry* Find(std::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, TokenEntry> entries_;
};

struct AuthOptions {
  std::string tokens_file;         // empty: clients are not authenticated (loopback only)
  std::string worker_tokens_file;  // empty: workers need mTLS, or (loopback only) nothing
  bool worker_mtls = false;        // the worker listener requires a client certificate
};

class Authenticator {
 public:
  // Loads the files; their errors are the start-up errors.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(const AuthOptions& options);

  // The caller of a client call. UNAUTHENTICATED without valid bearer metadata (when tokens are
  // configured); Caller::Unauthenticated() when they are not.
  absl::StatusOr<Caller> AuthenticateClient(const grpc::ServerContextBase& context) const;
  // OK for a worker holding the worker credential (a worker token, or with mTLS a verified
  // certificate, or nothing when no worker credential is configured); UNAUTHENTICATED otherwise.
  absl::Status AuthenticateWorker(const grpc::ServerContextBase& context) const;

  // Re-reads the tokens files; on error keeps the tables in use and returns the error.
  absl::Status Reload();

  bool clients_authenticated() const { return !options_.tokens_file.empty(); }
  bool workers_authenticated() const { return !options_.worker_tokens_file.empty() || options_.worker_mtls; }

 private:
  explicit Authenticator(AuthOptions options) : options_(std::move(options)) {}
  std::shared_ptr<const TokenTable> clients() const;
  std::shared_ptr<const TokenTable> workers() const;

  const AuthOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<const TokenTable> clients_;
  std::shared_ptr<const TokenTable> workers_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_AUTH_H_
