#include "command_line.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"

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
  std::string alias;  // a short spelling ("-o"); empty: none
  std::string value;  // what it takes, as the help shows it ("N", "PATH"); empty: a switch
  CommandSet commands;
  std::string help;  // what it does, its default and its allowed values
  std::function<absl::Status(std::string flag, std::string value, Invocation&)> apply;
};

using ApplyFlag = std::function<absl::Status(std::string flag, std::string value, Invocation&)>;

// Sets an unsigned request field through `set`.
template <typename T>
Flag UnsignedFlag(std::string name, std::string value, CommandSet commands, std::string help,
                  std::function<void(Invocation&, T)> set) {
  return {name, "", value, commands, help, [set](std::string flag, std::string text, Invocation& invocation) {
            auto parsed = ParseInteger<T>(flag, text);
            if (!parsed.ok()) return parsed.status();
            set(invocation, *parsed);
            return absl::OkStatus();
          }};
}

// A switch: `apply` takes no value.
Flag Switch(std::string name, CommandSet commands, std::string help, std::function<void(Invocation&)> set) {
  return {name, "", "", commands, help, [set](std::string, std::string, Invocation& invocation) {
            set(invocation);
            return absl::OkStatus();
          }};
}

// Every flag, in the order the help lists them. A name may appear twice with disjoint commands when
// its help differs between them (--model, --output); both entries then apply the same way.
const std::vector<Flag>& Flags() {
  const ApplyFlag output = [](std::string flag, std::string value, Invocation& i) {
    if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty path, expected a file path"));
    i.output_path = std::move(value);
    return absl::OkStatus();
  };
  const ApplyFlag model = [](std::string, std::string value, Invocation& i) {
    i.request.set_model(std::move(value));
    return absl::OkStatus();
  };
  static const std::vector<Flag> flags = {
      {"--output", "-o", "PATH", Bit(Command::kGenerate),
       "the MP4 file to write, growing as fragments arrive (a player can open it early); required. An existing "
       "file is left alone until the job's first bytes arrive",
       output},
      {"--output", "-o", "PATH", Bit(Command::kWatch),
       "write the job's MP4 to PATH (default: only count its bytes). An existing PATH is continued from its size",
       output},
      UnsignedFlag<uint64_t>("--from-offset", "N", Bit(Command::kWatch),
                             "the first byte wanted, from 0 to the size of the -o file (default: that size; "
                             "without -o, 0)",
                             [](Invocation& i, uint64_t v) { i.from_offset = v; }),
      Switch("--keep-partial", Bit(Command::kGenerate) | Bit(Command::kWatch),
             "keep the output file when the job fails or is cancelled (default: remove it)",
             [](Invocation& i) { i.keep_partial = true; }),
      {"--model", "", "NAME", kRequestCommands,
       "the model to run (default: the scheduler's default model; 'radialctl models' lists them)", model},
      {"--negative", "", "TEXT", kRequestCommands,
       "what to avoid (default: the model's negative prompt); at most the model's prompt length",
       [](std::string, std::string value, Invocation& i) {
         i.request.set_negative_prompt(std::move(value));
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--frames", "N", kRequestCommands,
                             "frames of video (default: the model's); within the model's range and of its form, "
                             "4k+1 for Wan2.1 (17, 81)",
                             [](Invocation& i, uint32_t v) { i.request.set_frames(v); }),
      UnsignedFlag<uint32_t>("--width", "PX", kRequestCommands,
                             "frame width (default: the model's); within the model's range and a multiple of its "
                             "size multiple (16 for Wan2.1)",
                             [](Invocation& i, uint32_t v) { i.request.set_width(v); }),
      UnsignedFlag<uint32_t>("--height", "PX", kRequestCommands, "frame height, like --width",
                             [](Invocation& i, uint32_t v) { i.request.set_height(v); }),
      UnsignedFlag<uint32_t>("--fps", "N", kRequestCommands,
                             "frames per second of the MP4, 1 to 120 (default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.set_fps(v); }),
      UnsignedFlag<uint32_t>("--steps", "N", kRequestCommands,
                             "denoising steps, 1 to the model's maximum (default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.set_steps(v); }),
      UnsignedFlag<uint64_t>("--seed", "N", kRequestCommands,
                             "seed of the initial noise, 0 to 2^64-1 (default: chosen by the scheduler and shown "
                             "by status); the same request and seed give the same video on the same machine",
                             [](Invocation& i, uint64_t v) { i.request.set_seed(v); }),
      {"--guidance", "", "G", kRequestCommands,
       "classifier-free guidance scale, 0 to the model's maximum (default: the model's); 1 or less runs no "
       "unconditional pass",
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseFloat(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.set_guidance(*parsed);
         return absl::OkStatus();
       }},
      {"--priority", "", "P", kRequestCommands,
       "-10 to 10, higher runs first (default 0); equal priorities run in submission order",
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseInteger<int32_t>(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.set_priority(*parsed);
         return absl::OkStatus();
       }},
      {"--decay", "", "D", kRequestCommands,
       "radial attention: band-width multiplier of the mask for frame distances >= 2, in (0, 10]; smaller is "
       "sparser (default: the model's)",
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseFloat(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.mutable_radial()->set_decay(*parsed);
         return absl::OkStatus();
       }},
      {"--sink", "", "on|off", kRequestCommands, "every frame attends all of frame 0 (default: the model's)",
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseOnOff(flag, value);
         if (!parsed.ok()) return parsed.status();
         i.request.mutable_radial()->set_sink(*parsed);
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--block", "64|128", kRequestCommands, "mask tile size in tokens (default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_block(v); }),
      UnsignedFlag<uint32_t>("--dense-layers", "N", kRequestCommands,
                             "the first N transformer blocks use dense attention, 0 to the model's layers "
                             "(default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_layers(v); }),
      UnsignedFlag<uint32_t>("--dense-steps", "N", kRequestCommands,
                             "the first N denoising steps use dense attention, 0 to --steps (default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_steps(v); }),
      UnsignedFlag<uint32_t>("--dense-last-steps", "N", kRequestCommands,
                             "the last N denoising steps use dense attention, 0 to --steps (default: the model's)",
                             [](Invocation& i, uint32_t v) { i.request.mutable_radial()->set_dense_last_steps(v); }),
      Switch("--dense", kRequestCommands, "dense attention everywhere: radial attention off",
             [](Invocation& i) { i.request.mutable_radial()->set_dense(true); }),
      UnsignedFlag<uint32_t>("--fragment-frames", "N", kRequestCommands,
                             "video frames per MP4 fragment, each streamed as soon as it is encoded: 1 to 1000 "
                             "(default 0: about one second of video)",
                             [](Invocation& i, uint32_t v) { i.request.set_fragment_frames(v); }),
      {"--request-id", "", "KEY", kRequestCommands,
       "idempotency key of 1 to 128 bytes: submitting the same KEY again returns the first job while it is kept "
       "(default: none)",
       [](std::string flag, std::string value, Invocation& i) {
         // An empty key would submit without one: most likely an unset variable in a script.
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty key, expected 1 to 128 bytes"));
         i.request.set_request_id(std::move(value));
         return absl::OkStatus();
       }},
      UnsignedFlag<uint32_t>("--queue-timeout", "S", kRequestCommands,
                             "fail the job with DEADLINE_EXCEEDED after S seconds queued, 1 to 604800 (default 0: "
                             "the scheduler's --queue-timeout)",
                             [](Invocation& i, uint32_t v) { i.request.set_queue_timeout_seconds(v); }),
      UnsignedFlag<uint32_t>("--run-timeout", "S", kRequestCommands,
                             "fail the job with DEADLINE_EXCEEDED after S seconds running, 1 to 604800 (default 0: "
                             "the scheduler's --run-timeout)",
                             [](Invocation& i, uint32_t v) { i.request.set_run_timeout_seconds(v); }),
      {"--state", "", "S", Bit(Command::kJobs),
       "only jobs in state S: queued, running, succeeded, failed or cancelled; repeat the flag or separate states "
       "with commas (default: every state)",
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
      {"--model", "", "NAME", Bit(Command::kJobs), "only jobs of this model (default: every model)", model},
      {"--limit", "", "N", Bit(Command::kJobs),
       absl::StrCat("at most N jobs, newest first; 1 or more (default ", kDefaultJobsLimit,
                    "); stderr says when there are more"),
       [](std::string flag, std::string value, Invocation& i) {
         auto parsed = ParseInteger<uint32_t>(flag, value);
         if (!parsed.ok()) return parsed.status();
         if (*parsed == 0) return UsageError(absl::StrCat(flag, ": got '0', expected a positive integer"));
         i.limit = *parsed;
         return absl::OkStatus();
       }},
      Switch("--verbose", Bit(Command::kSubmit), "also print the state and the request with every default resolved",
             [](Invocation& i) { i.verbose = true; }),
      Switch("--json", Bit(Command::kStatus) | Bit(Command::kModels) | Bit(Command::kSubmit) | Bit(Command::kJobs) |
                           Bit(Command::kDelete),
             "print the server's response as JSON (proto field names, every field)",
             [](Invocation& i) { i.json = true; }),
      // Connection flags: every command takes them, before or after its name.
      {"--server", "", "HOST:PORT", kAllCommands,
       "the scheduler: a host name or IPv4 address, or an IPv6 address in brackets, and a port from 1 to 65535 "
       "(default $RADIAL_SERVER, else localhost:50051)",
       [](std::string flag, std::string value, Invocation& i) {
         if (absl::Status valid = CheckServerAddress(flag, value); !valid.ok()) return valid;
         i.server = std::move(value);
         i.server_given = true;
         return absl::OkStatus();
       }},
      {"--token", "", "TOKEN", kAllCommands,
       "sent as 'authorization: Bearer TOKEN' on every call; 1 to 4096 visible ASCII characters (default "
       "$RADIAL_TOKEN; prefer the variable: arguments show in ps)",
       [](std::string flag, std::string value, Invocation& i) {
         if (absl::Status valid = CheckToken(flag, value); !valid.ok()) return valid;
         i.token = std::move(value);
         return absl::OkStatus();
       }},
      {"--tls-ca", "", "FILE", kAllCommands,
       "TLS, trusting server certificates signed by this CA (PEM; default $RADIAL_TLS_CA; neither: plaintext)",
       [](std::string flag, std::string value, Invocation& i) {
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty path, expected a PEM file"));
         i.tls_ca_file = std::move(value);
         return absl::OkStatus();
       }},
      {"--tls-server-name", "", "NAME", kAllCommands,
       "the name checked in the server's certificate (default: the host of --server; needs --tls-ca)",
       [](std::string flag, std::string value, Invocation& i) {
         if (value.empty()) return UsageError(absl::StrCat(flag, ": got an empty name, expected a host name"));
         i.tls_server_name = std::move(value);
         return absl::OkStatus();
       }},
  };
  return flags;
}

// What the help says about each command, in the order the overview lists them.
struct CommandInfo {
  Command command;
  const char* name;
  const char* arguments;  // after the name on the usage line
  const char* summary;    // the overview's line
  const char* details;    // the command's own help, after the usage line
};

const std::vector<CommandInfo>& Commands() {
  static const std::vector<CommandInfo> commands = {
      {Command::kGenerate, "generate", "PROMPT -o FILE [flags]",
       "submit a job, follow it and write its MP4 to FILE as it arrives",
       "Submits PROMPT, shows progress on stderr and writes the MP4 into FILE as its fragments arrive; prints a "
       "summary to stdout when the job succeeds. Unset request flags take the model's defaults ('radialctl models' "
       "shows them). Ctrl-C leaves the job running on the server, keeps what FILE holds and prints the 'radialctl "
       "watch' command that resumes it (exit 130)."},
      {Command::kSubmit, "submit", "PROMPT [flags]", "submit a job and print its id",
       "Submits PROMPT and prints the new job's id (with --request-id KEY: the first job submitted with KEY). "
       "Unset request flags take the model's defaults."},
      {Command::kWatch, "watch", "JOB_ID [-o FILE] [flags]", "follow a job; with -o write or resume its MP4",
       "Follows a job's progress to its end. With -o, writes its MP4 to FILE: an existing FILE is continued from "
       "its size, and FILE.radial-attempt records the attempt its bytes came from until the job ends, so that "
       "bytes of an older attempt are fetched again rather than continued. After a broken stream or Ctrl-C "
       "(exit 130) FILE stays for the next watch."},
      {Command::kStatus, "status", "JOB_ID [--json]", "show a job's state, progress and stats",
       "Shows a job's state, queue position or progress, the resolved request and, once it has ended, its "
       "stats."},
      {Command::kCancel, "cancel", "JOB_ID", "cancel a queued or running job",
       "Cancels a queued job at once, a running one within one denoising step. A job that had already ended is "
       "exit 3."},
      {Command::kDelete, "delete", "JOB_ID [--json]", "remove a job and its video",
       "Removes a job and its video from the scheduler, cancelling it first if it has not ended."},
      {Command::kJobs, "jobs", "[flags]", "list jobs, newest first",
       "Lists the jobs the scheduler keeps (those of your tenant), newest first: id, state, model, size "
       "(width x height x frames), steps, creation time (UTC) and bytes."},
      {Command::kModels, "models", "[--json]", "list models with their limits, defaults and workers",
       "Lists the models the connected workers serve, with their limits, defaults and worker count; '*' marks "
       "the default model."},
      {Command::kHelp, "help", "[COMMAND]", "this overview, or a command's flags",
       "Prints the overview of radialctl, or with COMMAND that command's help (the same as 'radialctl COMMAND "
       "--help')."},
  };
  return commands;
}

std::optional<Command> CommandNamed(const std::string& name) {
  for (const CommandInfo& info : Commands()) {
    if (name == info.name) return info.command;
  }
  return std::nullopt;
}

const CommandInfo& InfoOf(Command command) {
  for (const CommandInfo& info : Commands()) {
    if (info.command == command) return info;
  }
  return Commands().back();  // kHelp; kVersion has no help of its own
}

constexpr size_t kHelpWidth = 80;
constexpr size_t kHelpColumn = 26;  // where a flag's description starts

// `text` broken into lines of at most kHelpWidth columns, each after `indent` spaces; the first line
// after `first_indent` columns already used (0: it starts with the indent like the others).
std::string Wrap(const std::string& text, size_t indent, size_t first_used = 0) {
  std::string wrapped;
  size_t column = first_used;
  if (first_used == 0) {
    wrapped.append(indent, ' ');
    column = indent;
  }
  bool line_empty = true;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (!line_empty && column + 1 + word.size() > kHelpWidth) {
      wrapped += "\n";
      wrapped.append(indent, ' ');
      column = indent;
      line_empty = true;
    }
    if (!line_empty) {
      wrapped += ' ';
      ++column;
    }
    wrapped += word;
    column += word.size();
    line_empty = false;
  }
  return wrapped + "\n";
}

// "  LEFT                    help wrapped in the column", LEFT alone on its line when it is long.
std::string HelpItem(const std::string& left, const std::string& help) {
  std::string item = "  " + left;
  if (item.size() + 2 > kHelpColumn) return item + "\n" + Wrap(help, kHelpColumn);
  item.append(kHelpColumn - item.size(), ' ');
  return item + Wrap(help, kHelpColumn, kHelpColumn);
}

std::string FlagLeft(const Flag& flag) {
  std::string left = flag.alias.empty() ? flag.name : flag.alias + ", " + flag.name;
  if (!flag.value.empty()) absl::StrAppend(&left, " ", flag.value);
  return left;
}

std::string ConnectionHelp() {
  std::string text = "Connection flags (any command, before or after it):\n";
  for (const Flag& flag : Flags()) {
    if (flag.commands == kAllCommands) text += HelpItem(FlagLeft(flag), flag.help);
  }
  return text;
}

std::string ExitCodeHelp() {
  return Wrap(
      "Exit codes: 0 ok, 1 local error (the output file), 2 usage, 3 rejected by the server, 4 job failed, 5 job "
      "cancelled, 6 server unreachable (or TLS failed), 7 not authenticated (missing or unknown token), 130 "
      "interrupted by Ctrl-C while following a job (the job goes on).",
      0);
}

// A word as a POSIX shell reads it back: as it is when it holds only safe characters, else in
// single quotes.
std::string ShellQuote(const std::string& word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("@%+=:,./_-").find(static_cast<char>(c)) != std::string_view::npos;
  });
  if (safe) return word;
  std::string quoted = "'";
  for (const char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
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

absl::Status CheckServerAddress(const std::string& source, const std::string& address) {
  const auto bad = [&](const std::string& why) {
    return UsageError(absl::StrCat(source, ": got ", address.empty() ? "an empty address" : common::Echo(address),
                                   ", expected HOST:PORT with a port from 1 to 65535 (e.g. localhost:50051)",
                                   why.empty() ? "" : ": ", why));
  };
  if (address.empty()) return bad("");
  std::string host;
  std::string port;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos) return bad("no ']' after the IPv6 address");
    host = address.substr(1, close - 1);
    if (host.empty()) return bad("an empty IPv6 address");
    for (const char c : host) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return bad("an IPv6 address holds only hexadecimal digits, ':' and '.'");
      }
    }
    if (close + 1 >= address.size() || address[close + 1] != ':') return bad("no ':PORT' after the ']'");
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string::npos) return bad("an IPv6 address goes in brackets, e.g. [::1]:50051");
    if (host.empty()) return bad("no host before the ':'");
    constexpr size_t kMaxHostChars = 253;  // a DNS name's longest text form
    if (host.size() > kMaxHostChars) return bad(absl::StrCat("a host name has at most ", kMaxHostChars, " characters"));
    for (const char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
        return bad("a host name holds only letters, digits, '.', '-' and '_'");
      }
    }
  }
  if (port.empty()) return bad("no port after the ':'");
  if (!std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return bad("the port is not a number");
  }
  uint32_t number = 0;
  const std::from_chars_result parsed = std::from_chars(port.data(), port.data() + port.size(), number);
  if (parsed.ec != std::errc() || number == 0 || number > 65535) return bad("the port is out of range");
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
  bool version = false;
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
    if (arg == "--version") {
      version = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const size_t equals = arg.find('='); arg.rfind("--", 0) == 0 && equals != std::string::npos) {
      name = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    const Flag* flag = nullptr;
    for (const Flag& candidate : Flags()) {
      if (candidate.name == name || (!candidate.alias.empty() && candidate.alias == name)) {
        flag = &candidate;
        break;
      }
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag ", arg));
    name = flag->name;
    const bool takes_value = !flag->value.empty();
    if (!takes_value && value) return UsageError(absl::StrCat(name, ": takes no value, got '", *value, "'"));
    if (takes_value && !value) {
      if (i + 1 >= args.size()) return UsageError(absl::StrCat(arg, ": expected a value after it"));
      value = args[++i];
    }
    if (auto status = flag->apply(name, value.value_or(""), invocation); !status.ok()) return status;
    seen.push_back(flag);
  }
  if (help || (command && *command == Command::kHelp)) {
    invocation.command = Command::kHelp;
    if (command && *command != Command::kHelp) {
      invocation.help_topic = *command;  // radialctl generate --help
    } else if (!positional.empty()) {    // radialctl help generate
      if (positional.size() > 1) return UsageError("help: expected at most one command");
      const std::optional<Command> topic = CommandNamed(positional[0]);
      if (!topic) {
        return UsageError(absl::StrCat("help: got '", positional[0],
                                       "', expected one of generate, submit, watch, status, cancel, delete, jobs, "
                                       "models"));
      }
      invocation.help_topic = *topic;
    }
    return invocation;
  }
  if (version) {
    invocation.command = Command::kVersion;
    return invocation;
  }
  if (!command) return UsageError("expected a command: generate, submit, watch, status, cancel, delete, jobs or models");
  invocation.command = *command;
  for (const Flag* flag : seen) {
    bool taken = false;  // by this entry or another of the same name
    for (const Flag& candidate : Flags()) {
      if (candidate.name == flag->name && (candidate.commands & Bit(*command)) != 0) taken = true;
    }
    if (!taken) return UsageError(absl::StrCat(command_name, " does not take ", flag->name));
  }
  // The default comes from RADIAL_SERVER: wrong there, it is named there.
  if (!invocation.server_given) {
    if (absl::Status valid = CheckServerAddress("RADIAL_SERVER", invocation.server); !valid.ok()) return valid;
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
    case Command::kHelp:
    case Command::kVersion: break;
  }
  return invocation;
}

std::string FollowUpCommand(const Invocation& invocation, const std::vector<std::string>& args) {
  std::string command = "radialctl";
  for (const std::string& arg : args) absl::StrAppend(&command, " ", ShellQuote(arg));
  if (invocation.server_given) absl::StrAppend(&command, " --server ", ShellQuote(invocation.server));
  if (!invocation.tls_ca_file.empty()) absl::StrAppend(&command, " --tls-ca ", ShellQuote(invocation.tls_ca_file));
  if (!invocation.tls_server_name.empty()) {
    absl::StrAppend(&command, " --tls-server-name ", ShellQuote(invocation.tls_server_name));
  }
  return command;
}

std::string UsageText(Command topic) {
  if (topic == Command::kHelp || topic == Command::kVersion) {
    std::string text =
        "usage: radialctl [connection flags] COMMAND [flags] [ARGS]\n"
        "       radialctl COMMAND --help     that command's flags, defaults and ranges\n"
        "       radialctl --version\n"
        "\n"
        "Commands:\n";
    for (const CommandInfo& info : Commands()) {
      text += HelpItem(absl::StrCat(info.name, " ", info.arguments), info.summary);
    }
    absl::StrAppend(&text, "\n", ConnectionHelp(), "\n", ExitCodeHelp());
    return text;
  }
  const CommandInfo& info = InfoOf(topic);
  std::string text = absl::StrCat("usage: radialctl ", info.name, " ", info.arguments, "\n\n", Wrap(info.details, 0),
                                  "\nFlags:\n");
  for (const Flag& flag : Flags()) {
    if (flag.commands != kAllCommands && (flag.commands & Bit(topic)) != 0) text += HelpItem(FlagLeft(flag), flag.help);
  }
  text += HelpItem("-h, --help", "this help");
  if (topic == Command::kGenerate || topic == Command::kSubmit) {
    text += "\n" + Wrap("Flags take '--flag value' or '--flag=value'; '--' ends the flags (for a prompt starting "
                        "with '-'). Ranges are checked by the server, whose message names the field.",
                        0);
  }
  absl::StrAppend(&text, "\n", ConnectionHelp(), "\n", ExitCodeHelp());
  return text;
}

std::string VersionText() {
  // Both from CMake (client/CMakeLists.txt): the project's VERSION, and git describe at configure time.
  const std::string project = RADIAL_PROJECT_VERSION;
  const std::string commit = RADIAL_GIT_DESCRIBE;
  if (project.empty()) return absl::StrCat("radialctl ", commit, "\n");
  return absl::StrCat("radialctl ", project, " (", commit, ")\n");
}

}  // namespace radial::client
