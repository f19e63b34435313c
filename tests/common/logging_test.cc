// The JSON log line and the refusal of unknown formats and levels.
#include "radial/common/logging.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace radial::common {
namespace {

TEST(LoggingTest, JsonLineCarriesTheJobIdAsItsOwnFieldAndEscapesTheMessage) {
  EXPECT_EQ(JsonLogLine("2026-12-01T16:47:04.097+00:00", "info", "scheduler", "job_id=ab12 ended \"FAILED\"\n\t\x01"),
            "{\"time\":\"2026-12-01T16:47:04.097+00:00\",\"level\":\"info\",\"component\":\"scheduler\","
            "\"job_id\":\"ab12\",\"message\":\"ended \\\"FAILED\\\"\\n\\t\\u0001\"}");
  EXPECT_EQ(JsonLogLine("t", "warning", "worker", "no job here"),
            "{\"time\":\"t\",\"level\":\"warning\",\"component\":\"worker\",\"message\":\"no job here\"}");
  EXPECT_EQ(JsonLogLine("t", "info", "w", "job_id=only"),
            "{\"time\":\"t\",\"level\":\"info\",\"component\":\"w\",\"job_id\":\"only\",\"message\":\"\"}");
}

TEST(LoggingTest, UnknownFormatOrLevelIsAnErrorNotSilence) {
  EXPECT_EQ(ConfigureLogging("test", "xml").code(), absl::StatusCode::kInvalidArgument);
  setenv("RADIAL_LOG_LEVEL", "INFO", 1);  // upper case turned logging off before; now it is refused
  const absl::Status status = ConfigureLogging("test", "text");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("RADIAL_LOG_LEVEL: got 'INFO'"), std::string::npos) << status;
  setenv("RADIAL_LOG_LEVEL", "debug", 1);
  EXPECT_TRUE(ConfigureLogging("test", "json").ok());
  unsetenv("RADIAL_LOG_LEVEL");
}

}  // namespace
}  // namespace radial::common
