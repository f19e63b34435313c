// Prompt -> token ids for the text encoder, with SentencePiece (Debian's libsentencepiece) and the
// UMT5 convention the exporter pins in tokenizer_test_vectors.json: the pieces' ids truncated to
// max_length - 1, then eos, then pad ids up to max_length; the mask is 1 on ids and eos.
#ifndef RADIAL_WORKER_RUNTIME_TOKENIZER_H_
#define RADIAL_WORKER_RUNTIME_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sentencepiece_model.h"

namespace radial::worker {

struct Tokens {
  std::vector<int64_t> ids;   // max_length entries
  std::vector<int64_t> mask;  // 1 on real tokens, 0 on padding
};

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path, int64_t max_length,
                                                         int64_t pad_id, int64_t eos_id);
  ~Tokenizer();
  // INVALID_ARGUMENT when the text is not valid UTF-8 (SentencePiece's own check).
  absl::StatusOr<Tokens> Encode(const std::string& text) const;

 private:
  Tokenizer() = default;
  std::unique_ptr<SentencePieceModel> model_;
  int64_t max_length_ = 0, pad_id_ = 0, eos_id_ = 1;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_TOKENIZER_H_
