#include "prompt_clean.h"

#include <array>
#include <cstdint>
#include <utility>

#include "radial/common/utf8.h"

namespace radial::worker {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

void AppendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Python's str.isspace().
bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// HTML's rule for numeric references to C1 control codes: they mean Windows-1252's characters.
constexpr std::array<char32_t, 32> kWindows1252{
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

// Decodes the reference starting at text[i] == '&' into `out`; returns the bytes consumed, or 0 when
// it is not a reference this decoder knows (the '&' then stays literal).
size_t DecodeReference(std::string_view text, size_t i, std::string& out) {
  static constexpr std::array<std::pair<std::string_view, char32_t>, 6> kNamed{
      {{"&amp;", U'&'}, {"&lt;", U'<'}, {"&gt;", U'>'}, {"&quot;", U'"'}, {"&apos;", U'\''}, {"&nbsp;", 0xA0}}};
  for (const auto& [name, c] : kNamed) {
    if (text.substr(i, name.size()) == name) {
      AppendUtf8(c, out);
      return name.size();
    }
  }
  if (i + 2 >= text.size() || text[i + 1] != '#') return 0;
  const bool hex = text[i + 2] == 'x' || text[i + 2] == 'X';
  size_t k = i + (hex ? 3 : 2);
  const size_t digits_start = k;
  uint64_t value = 0;
  for (; k < text.size(); ++k) {
    const char ch = text[k];
    int digit = -1;
    if (ch >= '0' && ch <= '9') digit = ch - '0';
    if (hex && ch >= 'a' && ch <= 'f') digit = ch - 'a' + 10;
    if (hex && ch >= 'A' && ch <= 'F') digit = ch - 'A' + 10;
    if (digit < 0) break;
    if (value <= 0x10FFFF) value = value * (hex ? 16 : 10) + static_cast<uint64_t>(digit);
  }
  if (k == digits_start) return 0;
  if (k < text.size() && text[k] == ';') ++k;
  char32_t c = static_cast<char32_t>(value);
  if (value == 0 || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
    c = kReplacement;
  } else if (value >= 0x80 && value <= 0x9F) {
    c = kWindows1252[value - 0x80];
  }
  AppendUtf8(c, out);
  return k - i;
}

std::string UnescapeHtml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '&') {
      if (const size_t used = DecodeReference(text, i, out); used > 0) {
        i += used;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

// Collapses whitespace runs to one ' ' and drops leading and trailing whitespace.
std::string CollapseWhitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (size_t i = 0; i < text.size();) {
    const auto decoded = common::DecodeUtf8(text, i);
    const size_t length = decoded ? decoded->second : 1;
    if (decoded && IsSpace(decoded->first)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out += ' ';
      pending_space = false;
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

}  // namespace

std::string CleanPrompt(std::string_view text) { return CollapseWhitespace(UnescapeHtml(UnescapeHtml(text))); }

}  // namespace radial::worker
