// UTF-8 decoding shared by the scheduler (prompt length in characters) and the worker (prompt
// clean-up). Structural checks only: a lead byte and its continuation bytes; overlong forms and
// surrogates are not rejected (libsentencepiece, which tokenizes the text, does its own check).
#ifndef RADIAL_COMMON_UTF8_H_
#define RADIAL_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace radial::common {

// The code point starting at text[i] and its length in bytes; nullopt for an invalid sequence.
// Requires i < text.size().
std::optional<std::pair<char32_t, size_t>> DecodeUtf8(std::string_view text, size_t i);

// Number of code points in text, or -1 when it is not valid UTF-8.
int64_t Utf8Length(std::string_view text);

}  // namespace radial::common

#endif  // RADIAL_COMMON_UTF8_H_
