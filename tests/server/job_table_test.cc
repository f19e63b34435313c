// JobTable alone: lookup and visibility, newest-first iteration and the retention policy (count,
// age, bytes, watched jobs). The request_id index is tested through the Scheduler (scheduler_test).
#include "scheduler/job_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace radial::server {
namespace {

JobRecord Record(const std::string& id, uint64_t sequence, v1::JobState state = v1::JOB_STATE_QUEUED,
                 int64_t finished_ms = 0, uint64_t video_bytes = 0) {
  JobRecord record;
  record.stored.job.set_id(id);
  record.stored.job.set_state(state);
  record.stored.job.set_finished_unix_ms(finished_ms);
  record.stored.sequence = sequence;
  record.durable = true;
  if (video_bytes > 0) {
    record.stored.video = id + ".mp4";
    record.stored.video_bytes = video_bytes;
  }
  return record;
}

std::vector<std::string> NewestFirst(const JobTable& table, uint64_t before = 0) {
  std::vector<std::string> ids;
  table.ForEachNewestFirst(before, [&](const JobRecord& record) {
    ids.push_back(record.id());
    return true;
  });
  return ids;
}

TEST(JobTableTest, FindSeesEveryJobAndFindVisibleOnlyDurableOnes) {
  JobTable table;
  table.Insert(Record("a", 1));
  JobRecord pending = Record("b", 2);
  pending.durable = false;
  table.Insert(std::move(pending));
  EXPECT_NE(table.Find("a"), nullptr);
  EXPECT_NE(table.FindVisible("a"), nullptr);
  EXPECT_NE(table.Find("b"), nullptr);
  EXPECT_EQ(table.FindVisible("b"), nullptr) << "a Submit whose row is not written yet";
  EXPECT_EQ(table.Find("c"), nullptr);
  EXPECT_EQ(table.size(), 2u);
  table.Erase("a");
  table.Erase("missing");
  EXPECT_EQ(table.Find("a"), nullptr);
  EXPECT_EQ(table.size(), 1u);
}

TEST(JobTableTest, RecordBytesAreTheStoredVideosOrTheRunningAttempts) {
  JobRecord running = Record("a", 1, v1::JOB_STATE_RUNNING);
  *running.video = "12345";
  EXPECT_EQ(running.bytes(), 5u);
  EXPECT_FALSE(running.ended());
  const JobRecord done = Record("b", 2, v1::JOB_STATE_SUCCEEDED, 10, 777);
  EXPECT_EQ(done.bytes(), 777u);
  EXPECT_TRUE(done.ended());
  EXPECT_TRUE(Record("c", 3, v1::JOB_STATE_FAILED).ended());
  EXPECT_TRUE(Record("d", 4, v1::JOB_STATE_CANCELLED).ended());
  EXPECT_FALSE(Record("e", 5, v1::JOB_STATE_QUEUED).ended());
}

TEST(JobTableTest, ForEachNewestFirstHonoursTheBoundAndStops) {
  JobTable table;
  table.Insert(Record("a", 1));
  table.Insert(Record("c", 3));
  table.Insert(Record("b", 2));
  table.Insert(Record("e", 7));
  EXPECT_EQ(NewestFirst(table), (std::vector<std::string>{"e", "c", "b", "a"}));
  EXPECT_EQ(NewestFirst(table, 7), (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(NewestFirst(table, 5), (std::vector<std::string>{"c", "b", "a"})) << "a bound between sequences";
  EXPECT_EQ(NewestFirst(table, 2), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(NewestFirst(table, 1).empty());
  EXPECT_EQ(NewestFirst(table, 100), (std::vector<std::string>{"e", "c", "b", "a"}));
  int visited = 0;
  table.ForEachNewestFirst(0, [&](const JobRecord&) { return ++visited < 2; });
  EXPECT_EQ(visited, 2);
}

TEST(JobTableTest, RetentionByCountTakesTheOldestEndedFirst) {
  JobTable table;
  RetentionPolicy policy;
  policy.max_jobs = 2;
  table.Insert(Record("queued", 1));
  table.Insert(Record("late", 2, v1::JOB_STATE_SUCCEEDED, 300));
  table.Insert(Record("early", 3, v1::JOB_STATE_FAILED, 100));
  EXPECT_EQ(table.ended(), 2u) << "an ended record is marked at insertion";
  EXPECT_TRUE(table.Expired(policy, 1000).empty());
  table.Insert(Record("middle", 4, v1::JOB_STATE_CANCELLED, 200));
  EXPECT_EQ(table.Expired(policy, 1000), std::vector<std::string>{"early"}) << "by end time, not submission";
  policy.max_jobs = 0;
  EXPECT_EQ(table.Expired(policy, 1000), (std::vector<std::string>{"early", "middle", "late"}))
      << "never a queued job";
}

TEST(JobTableTest, RetentionByAgeCountsFromTheEnd) {
  JobTable table;
  RetentionPolicy policy;
  policy.max_age_ms = 1000;
  table.Insert(Record("a", 1, v1::JOB_STATE_SUCCEEDED, 5000));
  table.Insert(Record("b", 2, v1::JOB_STATE_SUCCEEDED, 5500));
  EXPECT_TRUE(table.Expired(policy, 6000).empty()) << "exactly max_age_ms";
  EXPECT_EQ(table.Expired(policy, 6001), std::vector<std::string>{"a"});
  EXPECT_EQ(table.Expired(policy, 6501), (std::vector<std::string>{"a", "b"}));
}

TEST(JobTableTest, RetentionByBytesCountsStoredVideos) {
  JobTable table;
  RetentionPolicy policy;
  policy.max_bytes = 1000;
  table.Insert(Record("a", 1, v1::JOB_STATE_SUCCEEDED, 10, 600));
  table.Insert(Record("failed", 2, v1::JOB_STATE_FAILED, 20));
  table.Insert(Record("b", 3, v1::JOB_STATE_SUCCEEDED, 30, 400));
  EXPECT_EQ(table.stored_bytes(), 1000u);
  EXPECT_TRUE(table.Expired(policy, 100).empty()) << "exactly max_bytes";
  table.Insert(Record("c", 4, v1::JOB_STATE_SUCCEEDED, 40, 1));
  EXPECT_EQ(table.stored_bytes(), 1001u);
  EXPECT_EQ(table.Expired(policy, 100), std::vector<std::string>{"a"});
  table.Erase("a");
  EXPECT_EQ(table.stored_bytes(), 401u) << "erasing a job releases its bytes";
  EXPECT_TRUE(table.Expired(policy, 100).empty());
}

TEST(JobTableTest, WatchedJobsAreSkipped) {
  JobTable table;
  RetentionPolicy policy;
  policy.max_age_ms = 100;
  JobRecord watched = Record("watched", 1, v1::JOB_STATE_SUCCEEDED, 10, 5);
  watched.watchers = 1;
  table.Insert(std::move(watched));
  table.Insert(Record("old", 2, v1::JOB_STATE_SUCCEEDED, 20, 5));
  table.Insert(Record("young", 3, v1::JOB_STATE_SUCCEEDED, 900, 5));
  EXPECT_EQ(table.Expired(policy, 1000), std::vector<std::string>{"old"});
  table.Find("watched")->watchers = 0;
  EXPECT_EQ(table.Expired(policy, 1000), (std::vector<std::string>{"watched", "old"}));
}

// A watched job stays; the jobs that push the count over the limit are the older unwatched ones,
// never the newest (job_table.h: watched jobs "go once unwatched").
TEST(JobTableTest, RetentionByCountDoesNotEvictTheNewestInPlaceOfAWatchedJob) {
  JobTable table;
  RetentionPolicy policy;
  policy.max_jobs = 1;
  JobRecord watched = Record("watched", 1, v1::JOB_STATE_SUCCEEDED, 10);
  watched.watchers = 1;
  table.Insert(std::move(watched));
  table.Insert(Record("newest", 2, v1::JOB_STATE_SUCCEEDED, 20));
  EXPECT_TRUE(table.Expired(policy, 100).empty()) << "evicted the newest job instead of waiting for the watched one";
}

}  // namespace
}  // namespace radial::server
