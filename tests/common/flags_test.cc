#include "radial/common/flags.h"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

namespace radial::common {
namespace {

struct Parsed {
  std::optional<int> status;
  std::string out, err, name;
  int64_t count = 7;
};

Parsed Parse(std::vector<const char*> args) {
  Parsed parsed;
  args.insert(args.begin(), "prog");
  std::ostringstream out, err;
  parsed.status = ParseFlags(static_cast<int>(args.size()), args.data(),
                             {{"--name", StringFlag(&parsed.name)},
                              {"--count", IntegerFlag(1, 100, [&](int64_t v) { parsed.count = v; })}},
                             "usage: prog\n", out, err);
  parsed.out = out.str();
  parsed.err = err.str();
  return parsed;
}

TEST(FlagsTest, StoresValuesAndGoesOn) {
  const Parsed parsed = Parse({"--name", "fox", "--count", "42"});
  EXPECT_FALSE(parsed.status.has_value());
  EXPECT_EQ(parsed.name, "fox");
  EXPECT_EQ(parsed.count, 42);
  EXPECT_TRUE(parsed.err.empty());
}

TEST(FlagsTest, HelpPrintsUsageAndExitsZero) {
  const Parsed parsed = Parse({"--help"});
  EXPECT_EQ(parsed.status, 0);
  EXPECT_EQ(parsed.out, "usage: prog\n");
}

TEST(FlagsTest, BadFlagsExitTwoNamingTheProblem) {
  EXPECT_EQ(Parse({"--bogus", "1"}).err, "unknown flag '--bogus'\nusage: prog\n");
  EXPECT_EQ(Parse({"--name"}).err, "--name: missing value\nusage: prog\n");
  for (const char* bad : {"0", "101", "x", "4x", ""}) {
    const Parsed parsed = Parse({"--count", bad});
    EXPECT_EQ(parsed.status, 2) << bad;
    EXPECT_EQ(parsed.err, std::string("--count: got '") + bad + "', expected an integer in [1, 100]\nusage: prog\n");
    EXPECT_EQ(parsed.count, 7) << "a rejected value is not stored";
  }
}

}  // namespace
}  // namespace radial::common
