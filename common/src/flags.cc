#include "radial/common/flags.h"

#include <cerrno>
#include <cstdlib>

namespace radial::common {

std::optional<int> ParseFlags(int argc, const char* const* argv, const std::map<std::string, FlagHandler>& handlers,
                              const std::string& usage, std::ostream& out, std::ostream& err) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      out << usage;
      return 0;
    }
    const auto handler = handlers.find(flag);
    if (handler == handlers.end()) {
      err << "unknown flag '" << flag << "'\n" << usage;
      return 2;
    }
    if (i + 1 >= argc) {
      err << flag << ": missing value\n" << usage;
      return 2;
    }
    if (const std::string problem = handler->second(argv[++i]); !problem.empty()) {
      err << flag << ": " << problem << "\n" << usage;
      return 2;
    }
  }
  return std::nullopt;
}

FlagHandler StringFlag(std::string* target) {
  return [target](const std::string& value) {
    *target = value;
    return std::string();
  };
}

FlagHandler IntegerFlag(int64_t min, int64_t max, std::function<void(int64_t)> store) {
  return [min, max, store = std::move(store)](const std::string& value) {
    char* end = nullptr;
    errno = 0;
    const long long parsed = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || parsed < min || parsed > max) {
      return "got '" + value + "', expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    }
    store(parsed);
    return std::string();
  };
}

}  // namespace radial::common
