// The prompt clean-up WanPipeline (diffusers) applies before tokenizing, so the same prompt gives the
// same token ids here as there: HTML character references decoded twice, runs of whitespace (any
// character Python's str.isspace() accepts, e.g. tabs, newlines, U+00A0, U+3000) collapsed to one
// space, and the ends stripped. Plain C++.
//
// Differences from diffusers, on purpose: of HTML's 2231 named references only &amp; &lt; &gt; &quot;
// &apos; and &nbsp; (with their semicolon) are decoded; numeric ones (&#65; &#x41;, semicolon
// optional) all are. diffusers also runs ftfy.fix_text when the ftfy package is installed (it is not
// a dependency of diffusers, and not installed here); mojibake is left as it is.
#ifndef RADIAL_WORKER_RUNTIME_PROMPT_CLEAN_H_
#define RADIAL_WORKER_RUNTIME_PROMPT_CLEAN_H_

#include <string>
#include <string_view>

namespace radial::worker {

// `text` is UTF-8; invalid sequences pass through unchanged (the tokenizer rejects them).
std::string CleanPrompt(std::string_view text);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_PROMPT_CLEAN_H_
