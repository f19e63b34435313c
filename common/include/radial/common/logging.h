// Logging set-up shared by the binaries: spdlog's default logger, named after the component, with
// the level from RADIAL_LOG_LEVEL and the format from --log-format:
//   text: "[2026-12-01 16:47:04.097] [info] job_id=... started"
//   json: one object per line: {"time":"2026-12-01T16:47:04.097+00:00","level":"info",
//         "component":"scheduler","job_id":"...","message":"..."} (job_id when the message starts
//         with "job_id=<id>", as every job line does)
#ifndef RADIAL_COMMON_LOGGING_H_
#define RADIAL_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace radial::common {

// INVALID_ARGUMENT for an unknown format or an unknown RADIAL_LOG_LEVEL (a typo must not silently
// turn logging off).
absl::Status ConfigureLogging(const std::string& component, const std::string& format);

// The JSON line for one message (exposed for tests).
std::string JsonLogLine(const std::string& time, const std::string& level, const std::string& component,
                        const std::string& message);

}  // namespace radial::common

#endif  // RADIAL_COMMON_LOGGING_H_
