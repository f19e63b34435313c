// radial-scheduler runs on machines without a GPU stack: it must load no LibTorch, CUDA or FFmpeg
// library. Checked on the built binary with ldd (RADIAL_SCHEDULER_BIN); radial-standalone, which
// embeds a worker, shows that the check does see LibTorch where it is linked (RADIAL_STANDALONE_BIN).
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/process.h"

namespace radial {
namespace {

using radial::testing::Env;

// Libraries the scheduler must not load, as prefixes of their file names.
const std::vector<std::string> kForbidden = {"libtorch",   "libc10",        "libcuda",  "libcudart",
                                             "libcublas",  "libcudnn",      "libnvrtc", "libav",
                                             "libswscale", "libswresample", "libx264"};

struct Ldd {
  int exit_code = -1;
  std::string output;
  std::vector<std::string> libraries;  // the names before "=>" (or the path, for the loader)
};

Ldd RunLdd(const std::string& binary) {
  Ldd result;
  const std::string command = "ldd '" + binary + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t read = 0;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, read);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream lines(result.output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string name;
    if (!(words >> name)) continue;
    const size_t slash = name.rfind('/');
    result.libraries.push_back(slash == std::string::npos ? name : name.substr(slash + 1));
  }
  return result;
}

std::vector<std::string> ForbiddenIn(const Ldd& ldd) {
  std::vector<std::string> found;
  for (const std::string& library : ldd.libraries) {
    for (const std::string& prefix : kForbidden) {
      if (library.rfind(prefix, 0) == 0) found.push_back(library);
    }
  }
  return found;
}

TEST(SchedulerDepsTest, RadialSchedulerLoadsNoLibTorchCudaOrFfmpeg) {
  const std::string binary = Env("RADIAL_SCHEDULER_BIN");
  ASSERT_FALSE(binary.empty()) << "set RADIAL_SCHEDULER_BIN (ctest does)";
  const Ldd ldd = RunLdd(binary);
  ASSERT_EQ(ldd.exit_code, 0) << ldd.output;
  bool libc = false;
  for (const std::string& library : ldd.libraries) libc |= library.rfind("libc.so", 0) == 0;
  ASSERT_TRUE(libc) << "ldd listed no libc: its output is not what this test reads\n" << ldd.output;
  const std::vector<std::string> found = ForbiddenIn(ldd);
  EXPECT_TRUE(found.empty()) << "radial-scheduler loads " << found.front() << "\n" << ldd.output;
}

TEST(SchedulerDepsTest, TheCheckFindsLibTorchInRadialStandalone) {
  const std::string binary = Env("RADIAL_STANDALONE_BIN");
  if (binary.empty()) GTEST_SKIP() << "RADIAL_STANDALONE_BIN is not set";
  const Ldd ldd = RunLdd(binary);
  ASSERT_EQ(ldd.exit_code, 0) << ldd.output;
  const std::vector<std::string> found = ForbiddenIn(ldd);
  bool torch = false;
  for (const std::string& library : found)
    torch |= library.rfind("libtorch", 0) == 0 || library.rfind("libc10", 0) == 0;
  EXPECT_TRUE(torch) << "radial-standalone embeds a worker, so ldd should list LibTorch\n" << ldd.output;
}

}  // namespace
}  // namespace radial
