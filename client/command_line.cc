#include "command_line.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace radial::client {
namespace {

// Which commands take a flag, as a bit set over Command.
using CommandSet = uint32_t;
constexpr CommandSet Bit(Command command) { return CommandSet{1} << static_cast<int>(command); }
constexpr CommandSet kRequestCommands = Bit(Command::kGenerate) | Bit(Command::kSubmit);
constexpr CommandSet kAllCommands = ~CommandSet{0};

absl::Status UsageError(std::string text) { return absl::InvalidArgumentError(std::string(text)); }

template <typename T>
absl::StatusOr<T> ParseInteger(std::string flag, std::string text) {
  T value{};
  const char* end = text.data() + text.size();
  // from_chars accepts no '+' and, for unsigned types, no '-': both stay errors here.
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    const bool is_signed = std::numeric_limits<T>::is_signed;
    std::string expected = is_signed ? "an integer" : "a non-negative integer";
    if (error == std::errc::result_out_of_range) {
      absl::StrAppend(&expected, " in [", std::numeric_limits<T>::min(), ", ", std::numeric_limits<T>::max(), "]");
    }
    return UsageError(absl::StrCat(flag, ": got '", text, "', expected ", expected));
  }
  return value;
}

absl::StatusOr<float> ParseFloat(std::string flag, std::string text) {
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  const float value = std::strtof(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || errno == ERANGE) {
    return UsageError(absl::StrCat(flag, ": got '", text, "', expected a number"));
  }
  return value;  // NaN and infinities pass: the server rejects them with its own message
}

// "queued", "running", ... as radialctl prints them (JobStateName).
absl::StatusOr<v1::JobState> ParseJobState(std::string flag, std::string text) {
  static const std::pair<const char*, v1::JobState> kNames[] = {
      {"queued", v1::JOB_STATE_QUEUED}, {"running", v1::JOB_STATE_RUNNING},     {"succeeded", v1::JOB_STATE_SUCCEEDED},
      {"failed", v1::JOB_STATE_FAILED}, {"cancelled", v1::JOB_STATE_CANCELLED},
  };
  for (const auto& [name, state] : kNames) {
    if (text == name) return state;
  }
  return UsageError(absl::StrCat(flag, ": got '", text, "', expected queued, running, succeeded, failed or cancelled"));
}

absl::StatusOr<bool> ParseOnOff(std::string flag, std::string text) {
  if (text == "on") return true;
  if (text == "off") return false;
  return UsageError(absl::StrCat(flag, ": got '", text, "', expected on or off"));
}

struct Flag {
  std::string name;
  bool takes_value;
  CommandSet commands;
  std::function<absl::Status(std::string flag, std::string value, Invocation&)> apply;
};

// Sets an unsigned request field through `set`.
template <typename T>
Flag UnsignedFlag(std::string name, CommandSet commands, std::function<void(Invocation&, T)> set) {
  return {name, true, commands, [set](std::string flag, std::string value, Invocation& invocation) {
            auto parsed = ParseInteger<T>(flag, value);
            if (!parsed.ok()) return parsed.status();
            set(invocation, *parsed);
            return absl::OkStatus();
          }};
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {"--server", true, kAllCommands,
       [](std::string, std::string value, Invocation& i) {
         i.server = std::string(value);
         return absl::OkStatus();
       }},
      {"--token", true, kAllCommands,
       [](std::string flag, std::string value, Invocation& i) {
         if (absl::Status valid = CheckToken(flag, value); !valid.ok()) return valid;
         i.token = std::move(value);
         return absl::OkStatus();
       }},
      {"--tls-ca", true, kAllCommands,
       [](std::string flag, std::string value, Invocation& i) {
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty path, expected a PEM file"));
         i.tls_ca_file = std::move(value);
         return absl::OkStatus();
       }},
      {"--tls-server-name", true, kAllCommands,
       [](std::string flag, std::string value, Invocation& i) {
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty name, expected a host name"));
         i.tls_server_name = std::move(value);
         return absl::OkStatus();
       }},
      {"--json", false,
       Bit(Command::kStatus) | Bit(Command::kModels) | Bit(Command::kSubmit) | Bit(Command::kJobs) |
           Bit(Command::kDelete),
       [](std::string, std::string, Invocation& i) {
         i.json = true;
         return absl::OkStatus();
       }},
      {"--verbose", false, Bit(Command::kSubmit),
       [](std::string, std::string, Invocation& i) {
         i.verbose = true;
         return absl::OkStatus();
       }},
      {"--model", true, kRequestCommands | Bit(Command::kJobs),
       [](std::string, std::string value, Invocation& i) {
         i.request.set_model(std::string(value));
         return absl::OkStatus();
       }},
      {"--negative", true, kRequestCommands,
       [](std::string, std::string value, Invocation& i) {
         i.request.set_negative_prompt(std::string(value));
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--frames", kRequestCommands, [](Invocation& i, uint32_t v) { i.request.set_frames(v); }),
      UnsignedFlag<uint32_t>("--width", kRequestCommands, [](Invocation& i, uint32_t v) { i.request.set_width(v); }),
      UnsignedFlag<uint32_t>("--height", kRequestCommands, [](Invocation& i, uint32_t v) { i.request.set_height(v); }),
      UnsignedFlag<uint32_t>("--fps", kRequestCommands, [](Invocation& i, uint32_t v) { i.request.set_fps(v); }),
      UnsignedFlag<uint32_t>("--steps", kRequestCommands, [](Invocation& i, uint32_t v) { i.request.set_steps(v); }),
      UnsignedFlag<uint64_t>("--seed", kRequestCommands, [](Invocation& i, uint64_t v) { i.request.set_seed(v); }),
      {"--guidance", true, kRequestCommands,
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseFloat(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.set_guidance(*parsed);
         return absl::OkStatus();
       }},
      {"--priority", true, kRequestCommands,
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseInteger<int32_t>(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.set_priority(*parsed);
         return absl::OkStatus();
       }},
      {"--decay", true, kRequestCommands,
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseFloat(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.mutable_radial()->set_decay(*parsed);
         return absl::OkStatus();
       }},
      {"--sink", true, kRequestCommands,
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseOnOff(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.mutable_radial()->set_sink(*parsed);
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--block", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_block(v); }),
      UnsignedFlag<uint32_t>("--dense-layers", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_layers(v); }),
      UnsignedFlag<uint32_t>("--dense-steps", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_steps(v); }),
      UnsignedFlag<uint32_t>("--dense-last-steps", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_last_steps(v); }),
      {"--dense", false, kRequestCommands,
       [](std::string, std::string, Invocation& i) {
         i.request.mutable_radial()->set_dense(true);
         return absl::OkStatus();
       }},
      {"--output", true, Bit(Command::kGenerate) | Bit(Command::kWatch),
       [](std::string flag, std::string value, Invocation& i) {
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty path, expected a file path"));
         i.output_path = std::string(value);
         return absl::OkStatus();
       }},
      {"--keep-partial", false, Bit(Command::kGenerate) | Bit(Command::kWatch),
       [](std::string, std::string, Invocation& i) {
         i.keep_partial = true;
         return absl::OkStatus();
       }},
      UnsignedFlag<uint64_t>("--from-offset", Bit(Command::kWatch),
                             [](Invocation& i, uint64_t v) { i.from_offset = v; }),
      {"--request-id", true, kRequestCommands,
       [](std::string flag, std::string value, Invocation& i) {
         // An empty key would submit without one: most likely an unset variable in a script.
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty key, expected 1 to 128 bytes"));
         i.request.set_request_id(value);
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--queue-timeout", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.set_queue_timeout_seconds(v); }),
      UnsignedFlag<uint32_t>("--run-timeout", kRequestCommands,
                             [](Invocation& i, uint32_t v) { i.request.set_run_timeout_seconds(v); }),
      {"--state", true, Bit(Command::kJobs),
       [](std::string flag, std::string value, Invocation& i) {
         // Repeatable, and each value may be a comma-separated list: --state queued,running.
         size_t start = 0;
         while (true) {
           const size_t comma = value.find(',', start);
           auto state = ParseJobState(flag, value.substr(start, comma - start));
           if (!state.ok()) return state.status();
           i.states.push_back(*state);
           if (comma == std::string::npos) break;
           start = comma + 1;
         }
         return absl::OkStatus();
       }},
      {"--limit", true, Bit(Command::kJobs),
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseInteger<uint32_t>(flag, value);
         if (!parsed.ok()) return parsed.status();
         if (*parsed == 0) return UsageError(absl::StrCat(flag, ": got '0', expected a positive integer"));
         i.limit = *parsed;
         return absl::OkStatus();
       }},
  };
  return flags;
}

std::optional<Command> CommandNamed(std::string name) {
  if (name == "generate") return Command::kGenerate;
  if (name == "submit") return Command::kSubmit;
  if (name == "watch") return Command::kWatch;
  if (name == "status") return Command::kStatus;
  if (name == "cancel") return Command::kCancel;
  if (name == "models") return Command::kModels;
  if (name == "jobs") return Command::kJobs;
  if (name == "delete") return Command::kDelete;
  if (name == "help") return Command::kHelp;
  return std::nullopt;
}

}  // namespace

absl::Status CheckToken(const std::string& source, const std::string& token) {
  constexpr size_t kMaxTokenBytes = 4096;  // gRPC's headers hold 8 KiB in all
  if (token.empty()) return UsageError(absl::StrCat(source, ": got an empty token, expected the token"));
  if (token.size() > kMaxTokenBytes) {
    return UsageError(absl::StrCat(source, ": got ", token.size(), " bytes, expected at most ", kMaxTokenBytes));
  }
  for (const char c : token) {
    if (c < '!' || c > '~') {
      return UsageError(absl::StrCat(source,
                                     ": got a byte that is not visible ASCII (a space, a line break or a control "
                                     "character), expected the token alone"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args, const std::string& default_server) {
  Invocation invocation;
  invocation.server = default_server;
  std::optional<Command> command;
  std::string command_name;
  std::vector<std::string> positional;
  // Flags are seen before the command is known (`radialctl --server X generate ...`), so each is
  // checked against the command once the whole line is read.
  std::vector<const Flag*> seen;
  bool help = false;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      if (!command) {
        command = CommandNamed(arg);
        if (!command)
          return UsageError(
              absl::StrCat("unknown command '", arg,
                           "', expected one of generate, submit, watch, status, cancel, delete, jobs, models"));
        command_name = std::string(arg);
      } else {
        positional.emplace_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      help = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const size_t equals = arg.find('='); arg.rfind("--", 0) == 0 && equals != std::string::npos) {
      name = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    if (name == "-o") name = "--output";
    const Flag* flag = nullptr;
    for (const Flag& candidate : Flags()) {
      if (candidate.name == name) flag = &candidate;
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag ", arg));
    if (!flag->takes_value && value) return UsageError(absl::StrCat(name, ": takes no value, got '", *value, "'"));
    if (flag->takes_value && !value) {
      if (i + 1 >= args.size()) return UsageError(absl::StrCat(arg, ": expected a value after it"));
      value = args[++i];
    }
    if (auto status = flag->apply(name, value.value_or(""), invocation); !status.ok()) return status;
    seen.push_back(flag);
  }
  if (help || !command || *command == Command::kHelp) {
    if (!help && !command)
      return UsageError("expected a command: generate, submit, watch, status, cancel, delete, jobs or models");
    invocation.command = Command::kHelp;
    return invocation;
  }
  invocation.command = *command;
  for (const Flag* flag : seen) {
    if ((flag->commands & Bit(*command)) == 0)
      return UsageError(absl::StrCat(command_name, " does not take ", flag->name));
  }
  switch (*command) {
    case Command::kGenerate:
    case Command::kSubmit:
      if (positional.size() != 1) {
        return UsageError(
            absl::StrCat(command_name, ": expected one prompt argument (quote it), got ", positional.size()));
      }
      invocation.request.set_prompt(positional[0]);
      if (*command == Command::kGenerate && invocation.output_path.empty()) {
        return UsageError("generate: expected -o PATH, the MP4 file to write");
      }
      break;
    case Command::kWatch:
    case Command::kStatus:
    case Command::kCancel:
    case Command::kDelete:
      if (positional.size() != 1) {
        return UsageError(absl::StrCat(command_name, ": expected one job id argument, got ", positional.size()));
      }
      invocation.job_id = positional[0];
      break;
    case Command::kModels:
    case Command::kJobs:
      if (!positional.empty()) {
        return UsageError(absl::StrCat(command_name, ": takes no arguments, got '", positional[0], "'"));
      }
      break;
    case Command::kHelp: break;
  }
  return invocation;
}

std::string UsageText() {
  return R"(usage: radialctl [--server HOST:PORT] [--token TOKEN] [--tls-ca FILE] [--tls-server-name NAME]
                 COMMAND ...

Commands:
  generate PROMPT -o FILE [request flags] [--keep-partial]
      Submit a job, follow it and write the MP4 to FILE as it arrives.
  submit PROMPT [request flags] [--verbose] [--json]
      Submit a job and print its id.
  watch JOB_ID [-o FILE] [--from-offset N] [--keep-partial]
      Follow a job; with -o write its MP4 (an existing FILE is resumed from its size; the attempt
      its bytes came from is kept in FILE.radial-attempt until the job ends).
  status JOB_ID [--json]      Show a job's state, progress and stats.
  cancel JOB_ID               Cancel a queued or running job.
  delete JOB_ID [--json]      Remove a job and its video (cancelling it first if it has not ended).
  jobs [--state S ...] [--model NAME] [--limit N] [--json]
      List jobs, newest first: S is queued, running, succeeded, failed or cancelled (repeat the
      flag or separate with commas); at most N (default 50).
  models [--json]             List the models the connected workers serve.

Request flags (unset: the model's default, resolved by the server):
  --model NAME  --negative TEXT  --frames N  --width PX  --height PX  --fps N  --steps N
  --seed N  --guidance G  --priority P (-10..10)
  radial attention: --decay D  --sink on|off  --block 64|128  --dense-layers N  --dense-steps N
                    --dense-last-steps N  --dense
  --request-id KEY   idempotency key: submitting the same KEY again returns the first job
  --queue-timeout S  --run-timeout S   fail the job with DEADLINE_EXCEEDED after S seconds queued
                                       or running (0: the server's default)

Connection (before or after the command):
  --server HOST:PORT      default $RADIAL_SERVER, else localhost:50051
  --token TOKEN           sent as 'authorization: Bearer TOKEN' on every call; default
                          $RADIAL_TOKEN (prefer the variable: arguments show in ps)
  --tls-ca FILE           TLS, trusting server certificates of this CA (PEM); default $RADIAL_TLS_CA
  --tls-server-name NAME  the name to check in the server's certificate (default: the host)

Exit codes: 0 ok, 1 local error, 2 usage, 3 rejected by the server, 4 job failed, 5 job cancelled,
6 server unreachable (or TLS failed), 7 not authenticated (missing or unknown token).
)";
}

}  // namespace radial::client
