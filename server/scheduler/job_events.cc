#include "scheduler/job_events.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace radial::server {

EventPlan PlanNextEvent(const JobRecord& record, uint32_t queue_position, size_t max_chunk_bytes,
                        WatchCursor& cursor, v1::JobEvent& event) {
  if (cursor.ended) return {EventPlan::kEnd, absl::OkStatus(), 0};
  event.Clear();
  event.set_job_id(record.id());
  const v1::Job& job = record.job();
  if (!cursor.accepted_sent) {
    cursor.accepted_sent = true;
    event.mutable_accepted()->set_queue_position(queue_position);
    *event.mutable_accepted()->mutable_request() = job.request();
    return {EventPlan::kEvent, absl::OkStatus(), 0};
  }
  if (cursor.restart_pending || cursor.restarts_seen != record.stored.restarts) {
    cursor.restart_pending = false;
    cursor.restarts_seen = record.stored.restarts;
    cursor.offset = 0;
    cursor.stored_video.reset();
    event.mutable_restarted()->set_attempt(job.attempts() + (job.state() == v1::JOB_STATE_QUEUED ? 1 : 0));
    event.mutable_restarted()->set_reason(record.restart_reason.empty() ? "the job runs again from the start"
                                                                        : record.restart_reason);
    return {EventPlan::kEvent, absl::OkStatus(), 0};
  }
  // Bytes first: a terminal event never overtakes the video.
  if (record.stored.video.empty()) {
    const std::string& video = *record.video;
    if (cursor.offset < video.size()) {
      const size_t size = std::min<size_t>(max_chunk_bytes, video.size() - cursor.offset);
      event.mutable_chunk()->set_offset(cursor.offset);
      event.mutable_chunk()->set_data(video.substr(cursor.offset, size));
      cursor.offset += size;
      return {EventPlan::kEvent, absl::OkStatus(), 0};
    }
  } else if (cursor.offset < record.stored.video_bytes) {
    return {EventPlan::kReadStored, absl::OkStatus(),
            static_cast<size_t>(std::min<uint64_t>(max_chunk_bytes, record.stored.video_bytes - cursor.offset))};
  }
  const bool ended = record.ended();
  if (!ended && record.progress_updates > cursor.progress_seen) {
    cursor.progress_seen = record.progress_updates;
    *event.mutable_progress() = job.progress();
    return {EventPlan::kEvent, absl::OkStatus(), 0};
  }
  if (!ended) return {EventPlan::kWait, absl::OkStatus(), 0};
  if (job.state() == v1::JOB_STATE_SUCCEEDED && cursor.offset > record.bytes()) {
    return {EventPlan::kEnd,
            absl::OutOfRangeError(absl::StrCat("from_byte_offset: got ", cursor.offset, ", expected at most ",
                                               record.bytes(), " (the size of the job's video)")),
            0};
  }
  cursor.ended = true;
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    *event.mutable_completed()->mutable_stats() = job.stats();
  } else if (job.state() == v1::JOB_STATE_CANCELLED) {
    *event.mutable_cancelled() = job.error();
  } else {
    *event.mutable_failed() = job.error();
  }
  return {EventPlan::kEvent, absl::OkStatus(), 0};
}

}  // namespace radial::server
