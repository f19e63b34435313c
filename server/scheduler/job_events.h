// What a watcher of a job is sent next: a pure function of the job's record and the watcher's
// cursor, so the event order (accepted, restarted, chunks, coalesced progress, exactly one terminal
// event) can be read and tested alone. The Scheduler calls it under its lock and does the rest:
// registering the watcher's Waiter, and reading a stored video's bytes outside the lock.
#ifndef RADIAL_SERVER_SCHEDULER_JOB_EVENTS_H_
#define RADIAL_SERVER_SCHEDULER_JOB_EVENTS_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "radial/v1/video_service.pb.h"
#include "scheduler/job_table.h"
#include "store/job_store.h"

namespace radial::server {

// What a watcher has seen of a job.
struct WatchCursor {
  bool accepted_sent = false;
  uint64_t progress_seen = 0;  // progress updates seen (coalesced)
  uint64_t offset = 0;         // next video byte to send
  uint32_t restarts_seen = 0;
  bool restart_pending = false;  // the client's bytes came from an older attempt: say Restarted first
  bool ended = false;            // the terminal event was sent
  std::shared_ptr<const VideoReader> stored_video;  // opened on the first read from the store
};

// The result of Scheduler::NextEvent: an event to send, nothing yet (the Waiter will be woken), or
// the end of the stream with a status (OK after the terminal event; NOT_FOUND when the job was
// deleted or evicted; UNAVAILABLE when the scheduler is shutting down; OUT_OF_RANGE for an offset
// past the video's end; DATA_LOSS when a stored video cannot be read).
struct WatchStep {
  enum Kind { kEvent, kWait, kEnd } kind = kWait;
  absl::Status end_status;
};

struct EventPlan {
  enum Kind {
    kEvent,       // `event` is filled and the cursor advanced
    kWait,        // nothing new
    kEnd,         // end the stream with end_status
    kReadStored,  // the next event is a chunk of the stored video at cursor.offset, of read_size bytes
  } kind = kWait;
  absl::Status end_status;
  size_t read_size = 0;
};

EventPlan PlanNextEvent(const JobRecord& record, uint32_t queue_position, size_t max_chunk_bytes,
                        WatchCursor& cursor, v1::JobEvent& event);

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_JOB_EVENTS_H_
