// radialctl's command line: one pass over the arguments into an immutable Invocation. Parsing is
// strict (an unknown flag, a flag the command does not take, a malformed number or a --server that
// is not HOST:PORT is a usage error naming the flag) but checks no request ranges: the server
// validates requests, and its messages are the ones users see. The flag table also writes the
// help of each command, so a flag and its help cannot drift apart.
#ifndef RADIAL_CLIENT_COMMAND_LINE_H_
#define RADIAL_CLIENT_COMMAND_LINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::client {

enum class Command { kHelp, kVersion, kGenerate, kSubmit, kWatch, kStatus, kCancel, kModels, kJobs, kDelete };

inline constexpr uint32_t kDefaultJobsLimit = 50;

struct Invocation {
  Command command = Command::kHelp;
  Command help_topic = Command::kHelp;  // kHelp: what to print; kHelp for the overview
  std::string server;                   // host:port of radial-scheduler
  bool server_given = false;            // --server was on the command line (not the default)
  // Credentials and TLS, from the flags; empty: ClientEnvironment's (RADIAL_TOKEN, RADIAL_TLS_CA).
  std::string token;            // sent as "authorization: Bearer <token>" on every call
  std::string tls_ca_file;      // PEM CA the server's certificate must chain to; set: TLS
  std::string tls_server_name;  // name checked in the server's certificate; empty: the host of `server`
  bool json = false;     // status, models, submit, jobs, delete: print the response as JSON
  bool verbose = false;  // submit: also print the resolved request
  // generate, submit: only the fields given on the command line are set; the server fills the rest.
  // jobs: request.model is the --model filter (empty: every model).
  v1::GenerateRequest request;
  std::string output_path;              // generate (required), watch (optional): where the MP4 goes
  bool keep_partial = false;            // keep the output file when the job does not succeed
  std::string job_id;                   // watch, status, cancel, delete
  std::optional<uint64_t> from_offset;  // watch: first byte wanted (default: the output file's size)
  std::vector<v1::JobState> states;     // jobs: only these states (--state, repeatable); empty: all
  uint32_t limit = kDefaultJobsLimit;   // jobs: at most this many, newest first
};

// Parses the arguments after the program name; `default_server` applies when --server is absent.
// A usage error is INVALID_ARGUMENT whose message names the flag or argument at fault.
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args, const std::string& default_server);

// OK for a token that can travel in a header: 1 to 4096 visible ASCII characters. Otherwise a usage
// error naming `source` (the flag or the variable) that never quotes the token.
absl::Status CheckToken(const std::string& source, const std::string& token);

// OK for HOST:PORT (a name or IPv4 address, or an IPv6 address in brackets; a port from 1 to
// 65535). Otherwise a usage error naming `source` (--server or RADIAL_SERVER) and what is expected.
absl::Status CheckServerAddress(const std::string& source, const std::string& address);

// `radialctl ARGS...` with the connection flags that `invocation` had on its command line
// (--server, --tls-ca, --tls-server-name), every word quoted for a POSIX shell where needed: how
// to run a follow-up command (watch, cancel) against the same server. Never the token: a caller
// whose invocation.token is set says to pass it again (RADIAL_TOKEN or --token).
std::string FollowUpCommand(const Invocation& invocation, const std::vector<std::string>& args);

// The help of `topic`: the overview (commands, connection flags, exit codes) for Command::kHelp,
// otherwise that command's usage line and every flag it takes with its default and range.
std::string UsageText(Command topic = Command::kHelp);

// "radialctl VERSION\n": the CMake project's version when it sets one, and the commit it was
// configured from (git describe).
std::string VersionText();

}  // namespace radial::client

#endif  // RADIAL_CLIENT_COMMAND_LINE_H_
