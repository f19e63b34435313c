// The MP4 file a job's chunks are written into. Each chunk goes to its own offset, so the file on
// disk is always a prefix of the job's video and a player can open it while it grows.
//
// Nothing on disk changes before the job's first bytes arrive: Open only checks that the path can
// be written, and the file is created (or cut to the bytes kept) at the first Write. So a job that
// does not exist, is rejected, or fails before any video leaves the path as it was: no empty file,
// and an earlier file of the same name untouched.
//
// Next to it, while the job has not ended, FILE.radial-attempt holds the attempt (Job.attempts,
// Restarted.attempt) that the file's bytes came from, as a decimal number and a newline: a later
// `watch -o FILE` passes it in WatchRequest.attempt so that the server can tell bytes of an older
// attempt from a prefix of the current one. It is written before the first bytes of an attempt
// reach the file (a crash in between leaves an empty or older-labelled file, which costs a
// download again, never a mix of attempts) and removed with the file or when the job has ended.
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
  // Prepares `path` for writing, keeping only its first `keep_bytes` bytes (0: starts empty) once
  // something is written. Checks now that it can be opened or created (a path that does not exist
  // is created and removed again) and changes nothing else. Failure (e.g. a missing directory) is an
  // error naming the path.
  static absl::StatusOr<std::unique_ptr<OutputFile>> Open(const std::string& path, uint64_t keep_bytes);
  // The size of an existing file; empty when there is none.
  static std::optional<uint64_t> ExistingSize(const std::string& path);
  // The attempt recorded next to `path`; empty when there is no (readable, well-formed) record.
  static std::optional<uint32_t> RecordedAttempt(const std::string& path);
  static std::string AttemptPath(const std::string& path) { return path + ".radial-attempt"; }

  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();  // closes the file (keeps it)

  // Writes `data` at `offset`, recording the attempt first when it changed (see SetAttempt). The
  // first Write creates the file or cuts it to the bytes kept.
  absl::Status Write(uint64_t offset, std::string_view data);
  // Back to empty: the job restarted and its bytes come again from offset 0 (on disk now if the file
  // was written, else at the first Write).
  absl::Status Truncate();
  // The attempt the bytes written from now on come from (0: not known, nothing is recorded). It is
  // recorded next to the file at the next Write.
  void SetAttempt(uint32_t attempt) { attempt_ = attempt; }
  // Removes the attempt record: the job has ended, nothing will be resumed. Only a record of this
  // job's file (holds_video).
  void ForgetAttempt();
  absl::Status Close();
  // Closes and deletes the file and its attempt record (a job that did not succeed) when they are
  // this job's (holds_video); a device, or a file that was never written, is only closed.
  void Remove();

  const std::string& path() const { return path_; }
  // Bytes in the file: the end of the furthest write, or what was kept at Open.
  uint64_t size() const { return size_; }
  // The path holds this job's bytes: some were kept at Open (a resumed file) or written since.
  bool holds_video() const { return kept_ || written_; }

 private:
  OutputFile(std::string path, int fd, uint64_t size, bool regular, uint32_t recorded_attempt)
      : path_(std::move(path)),
        fd_(fd),
        size_(size),
        regular_(regular),
        kept_(regular && size > 0),
        recorded_attempt_(recorded_attempt) {}
  // Before the first write: opens (creating) the file and cuts it to size_.
  absl::Status Materialize();
  absl::Status RecordAttempt();

  const std::string path_;
  int fd_;              // owned; -1 before the first write of a path that did not exist, and once closed
  uint64_t size_;
  const bool regular_;  // false for a device (/dev/null): never truncated or removed, no attempt record
  const bool kept_;     // bytes of the existing file were kept at Open
  bool written_ = false;           // Materialize ran: the file on disk is this job's
  bool closed_ = false;
  uint32_t attempt_ = 0;           // of the bytes being written
  uint32_t recorded_attempt_ = 0;  // in FILE.radial-attempt; 0: no record
};

}  // namespace radial::client

#endif  // RADIAL_CLIENT_OUTPUT_FILE_H_
