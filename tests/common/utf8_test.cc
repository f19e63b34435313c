#include "radial/common/utf8.h"

#include <gtest/gtest.h>

namespace radial::common {
namespace {

TEST(Utf8Test, DecodesOneToFourByteSequences) {
  const std::string_view text = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\xa6\x8a";  // a, e-acute, CJK, fox emoji
  EXPECT_EQ(DecodeUtf8(text, 0), (std::pair{char32_t{'a'}, size_t{1}}));
  EXPECT_EQ(DecodeUtf8(text, 1), (std::pair{char32_t{0xE9}, size_t{2}}));
  EXPECT_EQ(DecodeUtf8(text, 3), (std::pair{char32_t{0x65E5}, size_t{3}}));
  EXPECT_EQ(DecodeUtf8(text, 6), (std::pair{char32_t{0x1F98A}, size_t{4}}));
  EXPECT_EQ(Utf8Length(text), 4);
  EXPECT_EQ(Utf8Length(""), 0);
}

TEST(Utf8Test, RejectsBadLeadsContinuationsAndTruncation) {
  EXPECT_EQ(DecodeUtf8("\xff", 0), std::nullopt);
  EXPECT_EQ(DecodeUtf8("\x80", 0), std::nullopt);          // a continuation byte as lead
  EXPECT_EQ(DecodeUtf8("\xc3(", 0), std::nullopt);         // bad continuation
  EXPECT_EQ(DecodeUtf8("\xe6\x97", 0), std::nullopt);      // truncated
  EXPECT_EQ(Utf8Length("ok\xe6\x97"), -1);
}

}  // namespace
}  // namespace radial::common
