#include "radial/common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"

namespace radial::common {
namespace {

void AppendJsonString(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (byte < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", byte);
          out += escaped;
        } else {
          out += c;  // UTF-8 passes through; invalid bytes are the writer's (messages echo values cut and escaped)
        }
    }
  }
  out += '"';
}

std::string IsoTime(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char date[32], zone[8];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &local);
  std::strftime(zone, sizeof(zone), "%z", &local);  // +hhmm
  const std::string z = zone;
  return absl::StrCat(date, ".", absl::Dec(millis, absl::kZeroPad3), z.substr(0, 3), ":", z.substr(3));
}

class JsonFormatter : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string component) : component_(std::move(component)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string line = JsonLogLine(IsoTime(msg.time), std::string(spdlog::level::to_string_view(msg.level).data(),
                                                                       spdlog::level::to_string_view(msg.level).size()),
                                         component_, std::string(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(component_); }

 private:
  std::string component_;
};

}  // namespace

std::string JsonLogLine(const std::string& time, const std::string& level, const std::string& component,
                        const std::string& message) {
  std::string out = "{\"time\":";
  AppendJsonString(out, time);
  out += ",\"level\":";
  AppendJsonString(out, level);
  out += ",\"component\":";
  AppendJsonString(out, component);
  std::string_view text = message;
  if (text.substr(0, 7) == "job_id=") {
    const size_t end = text.find(' ');
    out += ",\"job_id\":";
    AppendJsonString(out, text.substr(7, end == std::string_view::npos ? std::string_view::npos : end - 7));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  }
  out += ",\"message\":";
  AppendJsonString(out, text);
  out += "}";
  return out;
}

absl::Status ConfigureLogging(const std::string& component, const std::string& format) {
  if (format != "text" && format != "json") {
    return absl::InvalidArgumentError(absl::StrCat("--log-format: got ", Echo(format), ", expected text or json"));
  }
  spdlog::level::level_enum level = spdlog::level::info;
  if (const char* env = std::getenv("RADIAL_LOG_LEVEL")) {
    const std::string name = env;
    bool known = false;
    for (const char* candidate : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
      if (name == candidate) known = true;
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("RADIAL_LOG_LEVEL: got ", Echo(name),
                                                     ", expected trace, debug, info, warn, error, critical or off"));
    }
    level = spdlog::level::from_str(name);
  }
  auto logger = std::make_shared<spdlog::logger>(component, std::make_shared<spdlog::sinks::stdout_color_sink_mt>());
  if (format == "json") logger->set_formatter(std::make_unique<JsonFormatter>(component));
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

}  // namespace radial::common
