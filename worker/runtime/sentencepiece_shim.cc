// libradial_spm.so: Debian's libsentencepiece behind a C interface, loaded only through
// SentencePieceModel (dlopen with RTLD_LOCAL | RTLD_DEEPBIND). libsentencepiece exports the global
// FLAGS_minloglevel (an absl::Flag object of its own bundled flags library) that LibTorch's libc10
// also exports (as an int): loaded into the global scope next to libc10, its constructor writes the
// flag object over libc10's int and the mutex beside it, and the first TorchScript call deadlocks.
// Loaded deep-bound and local, it binds its own symbols and never enters the global scope.
#include <sentencepiece_processor.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

void CopyError(const std::string& text, char* error, int error_size) {
  if (error == nullptr || error_size <= 0) return;
  const size_t size = std::min<size_t>(text.size(), static_cast<size_t>(error_size - 1));
  std::memcpy(error, text.data(), size);
  error[size] = '\0';
}

}  // namespace

extern "C" {

// A model handle, or nullptr with `error` filled.
__attribute__((visibility("default"))) void* radial_spm_load(const char* path, char* error, int error_size) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const auto status = processor->Load(path);
  if (!status.ok()) {
    CopyError(status.ToString(), error, error_size);
    delete processor;
    return nullptr;
  }
  return processor;
}

// The number of ids of `text` (written to ids[0..min(count, max_ids)) ), or -1 with `error` filled.
__attribute__((visibility("default"))) int64_t radial_spm_encode(void* model, const char* text, int64_t text_size,
                                                                 int32_t* ids, int64_t max_ids, char* error,
                                                                 int error_size) {
  std::vector<int> pieces;
  const auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(model)->Encode(std::string(text, text_size), &pieces);
  if (!status.ok()) {
    CopyError(status.ToString(), error, error_size);
    return -1;
  }
  for (size_t i = 0; i < pieces.size() && static_cast<int64_t>(i) < max_ids; ++i) ids[i] = pieces[i];
  return static_cast<int64_t>(pieces.size());
}

__attribute__((visibility("default"))) void radial_spm_free(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

}  // extern "C"
