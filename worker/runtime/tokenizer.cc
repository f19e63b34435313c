#include "tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace radial::worker {

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path, int64_t max_length,
                                                           int64_t pad_id, int64_t eos_id) {
  if (max_length < 1) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.max_length: got ", max_length, ", expected >= 1"));
  }
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  std::string error;
  tokenizer->model_ = SentencePieceModel::Load(model_path, &error);
  if (tokenizer->model_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: cannot load ", model_path, ": ", error));
  }
  tokenizer->max_length_ = max_length;
  tokenizer->pad_id_ = pad_id;
  tokenizer->eos_id_ = eos_id;
  return tokenizer;
}

absl::StatusOr<Tokens> Tokenizer::Encode(const std::string& text) const {
  std::vector<int> pieces;
  std::string error;
  if (!model_->Encode(text, &pieces, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: cannot tokenize: ", error));
  }
  const size_t kept = std::min<size_t>(pieces.size(), static_cast<size_t>(max_length_ - 1));
  Tokens tokens;
  tokens.ids.assign(pieces.begin(), pieces.begin() + kept);
  tokens.ids.push_back(eos_id_);
  tokens.mask.assign(tokens.ids.size(), 1);
  tokens.ids.resize(max_length_, pad_id_);
  tokens.mask.resize(max_length_, 0);
  return tokens;
}

}  // namespace radial::worker
