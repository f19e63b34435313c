#include "rpc/auth.h"

#include <openssl/evp.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "radial/common/echo.h"
#include "radial/common/status_macros.h"

namespace radial::server {
namespace {

constexpr std::string_view kBearer = "Bearer ";

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string_view BearerToken(const grpc::ServerContextBase& context, bool& present) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  present = it != metadata.end();
  if (!present) return {};
  const std::string_view value(it->second.data(), it->second.size());
  if (value.substr(0, kBearer.size()) != kBearer) return {};
  return value.substr(kBearer.size());
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path, bool worker_tokens) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(worker_tokens ? "--worker-tokens" : "--tokens", ": cannot read ",
                                            common::Echo(path)));
  }
  TokenTable table;
  std::string line;
  int number = 0;
  while (std::getline(file, line)) {
    ++number;
    const size_t comment = line.find('#');
    if (comment != std::string::npos) line.resize(comment);
    std::vector<std::string> fields = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    const std::string where = absl::StrCat(path, ":", number, ": ");
    const char* roles = worker_tokens ? "worker" : "user or admin";
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(where, "got ", fields.size(),
                                                     " fields, expected '<sha256 of the token> <",
                                                     worker_tokens ? "worker name" : "tenant", "> <", roles, ">'"));
    }
    if (!IsSha256Hex(fields[0])) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "got a first field of ", fields[0].size(),
          " characters, expected the 64 hex digits of the token's SHA-256 (printf %s TOKEN | sha256sum)"));
    }
    const std::string& role = fields[2];
    const bool valid_role = worker_tokens ? role == "worker" : (role == "user" || role == "admin");
    if (!valid_role) {
      return absl::InvalidArgumentError(absl::StrCat(where, "got role ", common::Echo(role), ", expected ", roles));
    }
    if (fields[1].size() > 128) {
      return absl::InvalidArgumentError(absl::StrCat(where, "got a name of ", fields[1].size(),
                                                     " bytes, expected at most 128"));
    }
    const std::string hash = absl::AsciiStrToLower(fields[0]);
    if (!table.entries_.emplace(hash, TokenEntry{fields[1], role == "admin"}).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "got a token hash listed twice, expected each once"));
    }
  }
  return table;
}

const TokenEntry* TokenTable::Find(std::string_view token) const {
  const auto it = entries_.find(Sha256Hex(token));
  return it == entries_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(const AuthOptions& options) {
  std::unique_ptr<Authenticator> authenticator(new Authenticator(options));
  RADIAL_RETURN_IF_ERROR(authenticator->Reload());
  return authenticator;
}

absl::Status Authenticator::Reload() {
  std::shared_ptr<const TokenTable> clients, workers;
  if (!options_.tokens_file.empty()) {
    RADIAL_ASSIGN_OR_RETURN(TokenTable table, TokenTable::Load(options_.tokens_file, false));
    clients = std::make_shared<const TokenTable>(std::move(table));
  }
  if (!options_.worker_tokens_file.empty()) {
    RADIAL_ASSIGN_OR_RETURN(TokenTable table, TokenTable::Load(options_.worker_tokens_file, true));
    workers = std::make_shared<const TokenTable>(std::move(table));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  clients_ = std::move(clients);
  workers_ = std::move(workers);
  return absl::OkStatus();
}

std::shared_ptr<const TokenTable> Authenticator::clients() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return clients_;
}

std::shared_ptr<const TokenTable> Authenticator::workers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return workers_;
}

absl::StatusOr<Caller> Authenticator::AuthenticateClient(const grpc::ServerContextBase& context) const {
  const std::shared_ptr<const TokenTable> table = clients();
  if (table == nullptr) return Caller::Unauthenticated();
  bool present = false;
  const std::string_view token = BearerToken(context, present);
  if (!present) {
    return absl::UnauthenticatedError("authorization: missing, expected 'authorization: Bearer <token>' metadata");
  }
  const TokenEntry* entry = token.empty() ? nullptr : table->Find(token);
  if (entry == nullptr) {
    return absl::UnauthenticatedError("authorization: got a token this scheduler does not know, expected 'Bearer "
                                      "<token>' with a token from its tokens file");
  }
  Caller caller;
  caller.tenant = entry->name;
  caller.admin = entry->admin;
  return caller;
}

absl::Status Authenticator::AuthenticateWorker(const grpc::ServerContextBase& context) const {
  const std::shared_ptr<const TokenTable> table = workers();
  if (table == nullptr) return absl::OkStatus();  // mTLS (verified by TLS) or loopback without credentials
  bool present = false;
  const std::string_view token = BearerToken(context, present);
  if (!token.empty() && table->Find(token) != nullptr) return absl::OkStatus();
  return absl::UnauthenticatedError(
      present ? "authorization: got a worker token this scheduler does not know, expected one from --worker-tokens"
              : "authorization: missing, expected 'authorization: Bearer <worker token>' metadata");
}

}  // namespace radial::server
