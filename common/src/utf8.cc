#include "radial/common/utf8.h"

namespace radial::common {

std::optional<std::pair<char32_t, size_t>> DecodeUtf8(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  size_t length = 0;
  char32_t c = 0;
  if (lead < 0x80) return std::pair{char32_t{lead}, size_t{1}};
  if ((lead & 0xE0) == 0xC0) {
    length = 2, c = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, c = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, c = lead & 0x07;
  } else {
    return std::nullopt;
  }
  if (i + length > text.size()) return std::nullopt;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return std::nullopt;
    c = (c << 6) | (byte(i + k) & 0x3F);
  }
  return std::pair{c, length};
}

int64_t Utf8Length(std::string_view text) {
  int64_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    const auto decoded = DecodeUtf8(text, i);
    if (!decoded) return -1;
    i += decoded->second;
  }
  return count;
}

}  // namespace radial::common
