// Command-line flags of the radial binaries: "--name value" pairs, each handled by a function that
// stores the value or says what is wrong with it. One parser, so every binary answers bad flags the
// same way: the problem on stderr, then the usage, exit status 2.
#ifndef RADIAL_COMMON_FLAGS_H_
#define RADIAL_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>

namespace radial::common {

// Stores `value` and returns "", or returns what is wrong ("got 'x', expected an integer >= 1").
using FlagHandler = std::function<std::string(const std::string& value)>;

// Parses argv[1..]. Returns nullopt when the program should go on; otherwise the exit status:
// 0 after printing `usage` to `out` for --help/-h, 2 after printing the problem and `usage` to
// `err` for an unknown flag, a missing value or a value its handler rejects.
std::optional<int> ParseFlags(int argc, const char* const* argv, const std::map<std::string, FlagHandler>& handlers,
                              const std::string& usage, std::ostream& out, std::ostream& err);

FlagHandler StringFlag(std::string* target);
// An integer in [min, max].
FlagHandler IntegerFlag(int64_t min, int64_t max, std::function<void(int64_t)> store);

}  // namespace radial::common

#endif  // RADIAL_COMMON_FLAGS_H_
