// radialctl's command line: one pass over the arguments into an immutable Invocation. Parsing is
// strict (an unknown flag, a flag the command does not take, or a malformed number is a usage
// error naming the flag) but checks no ranges: the server validates requests, and its messages are
// the ones users see.
#ifndef RADIAL_CLIENT_COMMAND_LINE_H_
#define RADIAL_CLIENT_COMMAND_LINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "radial/v1/video_service.pb.h"

namespace radial::client {

enum class Command { kHelp, kGenerate, kSubmit, kWatch, kStatus, kCancel, kModels, kJobs, kDelete };

inline constexpr uint32_t kDefaultJobsLimit = 50;

struct Invocation {
  Command command = Command::kHelp;
  std::string server;    // host:port of radial-scheduler
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

// The --help text.
std::string UsageText();

}  // namespace radial::client

#endif  // RADIAL_CLIENT_COMMAND_LINE_H_
