// The order of a watcher's events, from PlanNextEvent alone (no scheduler, no threads).
#include "scheduler/job_events.h"

#include <gtest/gtest.h>

namespace radial::server {
namespace {

JobRecord Running(const std::string& video) {
  JobRecord record;
  record.stored.job.set_id("j1");
  record.stored.job.set_state(v1::JOB_STATE_RUNNING);
  record.stored.job.set_attempts(1);
  record.durable = true;
  *record.video = video;
  return record;
}

TEST(JobEventsTest, AcceptedThenChunksThenCoalescedProgressThenOneTerminalEvent) {
  JobRecord record = Running("0123456789");
  record.progress_updates = 3;
  WatchCursor cursor;
  v1::JobEvent event;
  ASSERT_EQ(PlanNextEvent(record, 4, 4, cursor, event).kind, EventPlan::kEvent);
  EXPECT_EQ(event.accepted().queue_position(), 4u);
  std::string bytes;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(PlanNextEvent(record, 0, 4, cursor, event).kind, EventPlan::kEvent);
    ASSERT_TRUE(event.has_chunk());
    EXPECT_EQ(event.chunk().offset(), bytes.size());
    bytes += event.chunk().data();
  }
  EXPECT_EQ(bytes, "0123456789");
  ASSERT_EQ(PlanNextEvent(record, 0, 4, cursor, event).kind, EventPlan::kEvent);
  EXPECT_TRUE(event.has_progress()) << "three updates, one progress event";
  EXPECT_EQ(PlanNextEvent(record, 0, 4, cursor, event).kind, EventPlan::kWait);
  record.stored.job.set_state(v1::JOB_STATE_FAILED);
  record.stored.job.mutable_error()->set_code(13);
  ASSERT_EQ(PlanNextEvent(record, 0, 4, cursor, event).kind, EventPlan::kEvent);
  EXPECT_EQ(event.failed().code(), 13);
  const EventPlan after = PlanNextEvent(record, 0, 4, cursor, event);
  EXPECT_EQ(after.kind, EventPlan::kEnd);
  EXPECT_TRUE(after.end_status.ok());
}

TEST(JobEventsTest, ARestartResetsTheOffsetAndComesBeforeAnyByte) {
  JobRecord record = Running("abc");
  WatchCursor cursor;
  cursor.accepted_sent = true;
  cursor.offset = 2;
  record.stored.restarts = 1;
  record.restart_reason = "worker w1 was lost";
  v1::JobEvent event;
  ASSERT_EQ(PlanNextEvent(record, 0, 100, cursor, event).kind, EventPlan::kEvent);
  EXPECT_EQ(event.restarted().reason(), "worker w1 was lost");
  ASSERT_EQ(PlanNextEvent(record, 0, 100, cursor, event).kind, EventPlan::kEvent);
  EXPECT_EQ(event.chunk().offset(), 0u);
  EXPECT_EQ(event.chunk().data(), "abc");
}

TEST(JobEventsTest, AStoredVideoIsReadOutsideAndAnOffsetPastItsEndIsOutOfRange) {
  JobRecord record = Running("");
  record.stored.job.set_state(v1::JOB_STATE_SUCCEEDED);
  record.stored.video = "j1.mp4";
  record.stored.video_bytes = 10;
  WatchCursor cursor;
  cursor.accepted_sent = true;
  cursor.offset = 4;
  v1::JobEvent event;
  const EventPlan read = PlanNextEvent(record, 0, 4, cursor, event);
  ASSERT_EQ(read.kind, EventPlan::kReadStored);
  EXPECT_EQ(read.read_size, 4u);
  cursor.offset = 10;
  ASSERT_EQ(PlanNextEvent(record, 0, 4, cursor, event).kind, EventPlan::kEvent);
  EXPECT_TRUE(event.has_completed());
  WatchCursor past;
  past.accepted_sent = true;
  past.offset = 11;
  const EventPlan end = PlanNextEvent(record, 0, 4, past, event);
  EXPECT_EQ(end.kind, EventPlan::kEnd);
  EXPECT_EQ(end.end_status.code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace radial::server
