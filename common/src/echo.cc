#include "radial/common/echo.h"

#include <cstdio>

#include "radial/common/utf8.h"

namespace radial::common {

std::string Echo(std::string_view value) {
  std::string out = "'";
  size_t i = 0;
  while (i < value.size() && i < kEchoMaxChars) {
    const unsigned char byte = static_cast<unsigned char>(value[i]);
    if (byte >= 0x20 && byte < 0x7f && byte != '\'' && byte != '\\') {
      out += static_cast<char>(byte);
      ++i;
      continue;
    }
    if (byte >= 0x80) {
      const auto decoded = DecodeUtf8(value, i);
      if (decoded && i + decoded->second <= kEchoMaxChars) {
        out.append(value.substr(i, decoded->second));
        i += decoded->second;
        continue;
      }
      if (decoded) break;  // a valid sequence that would cross the cut
    }
    char escaped[8];
    std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
    out += escaped;
    ++i;
  }
  out += "'";
  if (i < value.size()) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

}  // namespace radial::common
