// The MP4 file a job's chunks are written into. Each chunk goes to its own offset, so the file on
// disk is always a prefix of the job's video and a player can open it while it grows.
#ifndef RADIAL_CLIENT_OUTPUT_FILE_H_
#define RADIAL_CLIENT_OUTPUT_FILE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace radial::client {

class OutputFile {
 public:
  // Opens `path` for writing, creating it if needed, and keeps only its first `keep_bytes` bytes
  // (0: starts empty). Failure (e.g. a missing directory) is an error naming the path.
  static absl::StatusOr<std::unique_ptr<OutputFile>> Open(const std::string& path, uint64_t keep_bytes);
  // The size of an existing file; empty when there is none.
  static std::optional<uint64_t> ExistingSize(const std::string& path);

  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();  // closes the file (keeps it)

  absl::Status Write(uint64_t offset, std::string_view data);
  // Back to empty: the job restarted and its bytes come again from offset 0.
  absl::Status Truncate();
  absl::Status Close();
  // Closes and deletes the file (a job that did not succeed); a device is only closed.
  void Remove();

  const std::string& path() const { return path_; }
  // Bytes in the file: the end of the furthest write, or what was kept at Open.
  uint64_t size() const { return size_; }

 private:
  OutputFile(std::string path, int fd, uint64_t size, bool regular)
      : path_(std::move(path)), fd_(fd), size_(size), regular_(regular) {}

  const std::string path_;
  int fd_;  // owned; -1 once closed
  uint64_t size_;
  const bool regular_;  // false for a device (/dev/null): never truncated or removed
};

}  // namespace radial::client

#endif  // RADIAL_CLIENT_OUTPUT_FILE_H_
