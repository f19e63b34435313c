// A SentencePiece model, used through libradial_spm.so (sentencepiece_shim.cc), which this class
// loads with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): Debian's libsentencepiece must not share the global
// symbol scope with LibTorch (see sentencepiece_shim.cc for the clash). No abseil here either:
// Debian's sentencepiece_processor.h also clashes with Debian's abseil (absl::string_view).
//
// The shim is found at $RADIAL_SPM_LIBRARY, else at the path the build wrote it to, else by name
// through the loader's search path.
#ifndef RADIAL_WORKER_RUNTIME_SENTENCEPIECE_MODEL_H_
#define RADIAL_WORKER_RUNTIME_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <vector>

namespace radial::worker {

class SentencePieceModel {
 public:
  // nullptr with *error set when the shim or the model file cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();
  // false with *error set when the text cannot be encoded (e.g. invalid UTF-8).
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;

 private:
  struct Shim;
  SentencePieceModel() = default;
  const Shim* shim_ = nullptr;
  void* model_ = nullptr;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_SENTENCEPIECE_MODEL_H_
