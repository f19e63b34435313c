// Client- and worker-supplied values quoted in error messages and logs are cut, so a 1 MiB id cannot
// blow up a status message (gRPC carries it in a header) or a log line.
#ifndef RADIAL_COMMON_ECHO_H_
#define RADIAL_COMMON_ECHO_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace radial::common {

inline constexpr size_t kEchoMaxChars = 64;

// 'value' quoted; past kEchoMaxChars bytes, its first bytes (never splitting a UTF-8 sequence)
// then "... (N bytes)". Bytes that are not printable ASCII or valid UTF-8 appear as \xHH.
std::string Echo(std::string_view value);

}  // namespace radial::common

#endif  // RADIAL_COMMON_ECHO_H_
