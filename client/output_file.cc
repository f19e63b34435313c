#include "output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace radial::client {
namespace {

absl::Status FileError(const char* what, const std::string& path, int error) {
  return absl::UnavailableError(absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(error)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<OutputFile>> OutputFile::Open(const std::string& path, uint64_t keep_bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // Nothing there: check that it can be created, and leave nothing until the job's bytes come.
    const int probe = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (probe < 0) return FileError("open", path, errno);
    ::close(probe);
    ::unlink(path.c_str());
    return std::unique_ptr<OutputFile>(new OutputFile(path, -1, 0, /*regular=*/true, 0));
  }
  if (fd < 0) return FileError("open", path, errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    return FileError("stat", path, error);
  }
  // A device such as /dev/null is written but never truncated or removed.
  const bool regular = S_ISREG(info.st_mode);
  const uint64_t size = regular ? std::min<uint64_t>(keep_bytes, static_cast<uint64_t>(info.st_size)) : 0;
  // The record describes the bytes kept; with none kept it describes nothing (dropped at the first write).
  const uint32_t recorded = regular && size > 0 ? RecordedAttempt(path).value_or(0) : 0;
  return std::unique_ptr<OutputFile>(new OutputFile(path, fd, size, regular, recorded));
}

absl::Status OutputFile::Materialize() {
  if (written_) return absl::OkStatus();
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return FileError("open", path_, errno);
  }
  if (regular_) {
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) return FileError("truncate", path_, errno);
    if (size_ == 0) {
      ::unlink(AttemptPath(path_).c_str());
      recorded_attempt_ = 0;
    }
  }
  written_ = true;
  return absl::OkStatus();
}

std::optional<uint64_t> OutputFile::ExistingSize(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(info.st_size);
}

std::optional<uint32_t> OutputFile::RecordedAttempt(const std::string& path) {
  std::ifstream file(AttemptPath(path));
  std::string text;
  if (!std::getline(file, text)) return std::nullopt;
  uint32_t attempt = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), attempt);
  if (error != std::errc() || end != text.data() + text.size() || attempt == 0) return std::nullopt;
  return attempt;
}

OutputFile::~OutputFile() { (void)Close(); }

absl::Status OutputFile::RecordAttempt() {
  // Written whole under a temporary name, then renamed: a reader never sees a partial number.
  const std::string record = AttemptPath(path_);
  const std::string partial = record + ".partial";
  {
    std::ofstream file(partial, std::ios::trunc);
    file << attempt_ << "\n";
    file.close();
    if (!file) return absl::UnavailableError(absl::StrCat("cannot write ", partial));
  }
  if (::rename(partial.c_str(), record.c_str()) != 0) return FileError("rename to", record, errno);
  recorded_attempt_ = attempt_;
  return absl::OkStatus();
}

void OutputFile::ForgetAttempt() {
  if (!regular_ || !holds_video()) return;
  ::unlink(AttemptPath(path_).c_str());
  recorded_attempt_ = 0;
  attempt_ = 0;
}

absl::Status OutputFile::Write(uint64_t offset, std::string_view data) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path_, ": closed"));
  if (absl::Status ready = Materialize(); !ready.ok()) return ready;
  if (regular_ && attempt_ != 0 && attempt_ != recorded_attempt_) {
    if (absl::Status recorded = RecordAttempt(); !recorded.ok()) return recorded;
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t written = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (written < 0) {
      if (errno == EINTR) continue;
      return FileError("write", path_, errno);
    }
    done += static_cast<size_t>(written);
  }
  size_ = std::max<uint64_t>(size_, offset + data.size());
  return absl::OkStatus();
}

absl::Status OutputFile::Truncate() {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("cannot truncate ", path_, ": closed"));
  if (written_ && regular_ && ::ftruncate(fd_, 0) != 0) return FileError("truncate", path_, errno);
  size_ = 0;
  return absl::OkStatus();
}

absl::Status OutputFile::Close() {
  closed_ = true;
  if (fd_ < 0) return absl::OkStatus();
  const int result = ::close(fd_);
  fd_ = -1;
  if (result != 0) return FileError("close", path_, errno);
  return absl::OkStatus();
}

void OutputFile::Remove() {
  (void)Close();
  if (!regular_ || !holds_video()) return;
  ::unlink(path_.c_str());
  ::unlink(AttemptPath(path_).c_str());
}

}  // namespace radial::client
