#include "sentencepiece_model.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

namespace radial::worker {

// The shim's entry points, resolved once per process.
struct SentencePieceModel::Shim {
  void* (*load)(const char*, char*, int) = nullptr;
  int64_t (*encode)(void*, const char*, int64_t, int32_t*, int64_t, char*, int) = nullptr;
  void (*free)(void*) = nullptr;
  std::string error;
};

namespace {


}  // namespace

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path, std::string* error) {
  static std::once_flag once;
  static Shim shim;
  std::call_once(once, [] {
    std::string candidates[3];
    if (const char* env = std::getenv("RADIAL_SPM_LIBRARY")) candidates[0] = env;
    candidates[1] = RADIAL_SPM_BUILD_PATH;
    candidates[2] = "libradial_spm.so";
    void* handle = nullptr;
    for (const std::string& candidate : candidates) {
      if (candidate.empty()) continue;
      handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle != nullptr) break;
      shim.error += std::string(dlerror()) + "; ";
    }
    if (handle == nullptr) return;
    shim.load = reinterpret_cast<decltype(shim.load)>(dlsym(handle, "radial_spm_load"));
    shim.encode = reinterpret_cast<decltype(shim.encode)>(dlsym(handle, "radial_spm_encode"));
    shim.free = reinterpret_cast<decltype(shim.free)>(dlsym(handle, "radial_spm_free"));
    if (shim.load == nullptr || shim.encode == nullptr || shim.free == nullptr) {
      shim.load = nullptr;
      shim.error = "libradial_spm.so lacks its entry points";
    }
  });
  if (shim.load == nullptr) {
    *error = "cannot load libradial_spm.so (set RADIAL_SPM_LIBRARY): " + shim.error;
    return nullptr;
  }
  char message[512] = {0};
  void* model = shim.load(path.c_str(), message, sizeof(message));
  if (model == nullptr) {
    *error = message;
    return nullptr;
  }
  std::unique_ptr<SentencePieceModel> result(new SentencePieceModel());
  result->shim_ = &shim;
  result->model_ = model;
  return result;
}

SentencePieceModel::~SentencePieceModel() {
  if (model_ != nullptr) shim_->free(model_);
}

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids, std::string* error) const {
  std::vector<int32_t> buffer(text.size() + 16);  // a piece covers at least one byte
  char message[512] = {0};
  const int64_t count = shim_->encode(model_, text.data(), static_cast<int64_t>(text.size()), buffer.data(),
                                      static_cast<int64_t>(buffer.size()), message, sizeof(message));
  if (count < 0) {
    *error = message;
    return false;
  }
  if (count > static_cast<int64_t>(buffer.size())) {
    *error = "more pieces than bytes";
    return false;
  }
  ids->assign(buffer.begin(), buffer.begin() + count);
  return true;
}

}  // namespace radial::worker
