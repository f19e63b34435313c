// Tenants on the Scheduler: isolation of jobs between tenants, quotas, and fair order.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "scheduler/scheduler.h"
#include "tests/server/scheduler_fakes.h"

namespace radial::server {
namespace {

using radial::testing::FakeWorkerLink;
using radial::testing::HelloFor;
using radial::testing::Request;
using radial::testing::RunToSuccess;

const Caller kAlice{"alice", false};
const Caller kBob{"bob", false};
const Caller kAdmin{"ops", true};

std::unique_ptr<Scheduler> Make(SchedulerOptions options = {}) {
  auto scheduler = Scheduler::Create(std::move(options), std::make_unique<InMemoryJobStore>());
  EXPECT_TRUE(scheduler.ok()) << scheduler.status();
  return scheduler.ok() ? *std::move(scheduler) : nullptr;
}

TEST(TenancyTest, AnotherTenantsJobDoesNotExistForItButAnAdminSeesIt) {
  auto scheduler = Make();
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler->WorkerHello(&worker, HelloFor("w1")).ok());
  const auto job = scheduler->Submit(Request("alice's"), kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->tenant(), "alice");
  const auto unknown = scheduler->GetJob("0123456789abcdef0123456789abcdef", kBob);
  const auto theirs = scheduler->GetJob(job->id(), kBob);
  EXPECT_EQ(theirs.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(theirs.status().message().substr(0, 9), unknown.status().message().substr(0, 9));
  EXPECT_EQ(scheduler->Cancel(job->id(), kBob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler->Delete(job->id(), kBob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler->StartWatch(job->id(), 0, 0, kBob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler->ListJobs({}, kBob)->jobs_size(), 0);
  EXPECT_EQ(scheduler->ListJobs({}, kAlice)->jobs_size(), 1);
  EXPECT_EQ(scheduler->ListJobs({}, kAdmin)->jobs_size(), 1);
  EXPECT_TRUE(scheduler->GetJob(job->id(), kAdmin).ok());
  EXPECT_TRUE(scheduler->GetJob(job->id(), kAlice).ok());
}

TEST(TenancyTest, RequestIdsArePerTenant) {
  auto scheduler = Make();
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler->WorkerHello(&worker, HelloFor("w1")).ok());
  v1::GenerateRequest request = Request("same key");
  request.set_request_id("k1");
  const auto alices = scheduler->Submit(request, kAlice);
  const auto bobs = scheduler->Submit(request, kBob);
  ASSERT_TRUE(alices.ok() && bobs.ok());
  EXPECT_NE(alices->id(), bobs->id()) << "bob's key must not return (and so reveal) alice's job";
  EXPECT_EQ(scheduler->Submit(request, kAlice)->id(), alices->id());
}

TEST(TenancyTest, MaxQueuedIsPerTenantAndNamesTheQuota) {
  SchedulerOptions options;
  options.tenancy.defaults.max_queued = 2;
  auto scheduler = Make(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler->WorkerHello(&worker, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler->Submit(Request("runs"), kAlice).ok());  // taken by the worker at once
  ASSERT_TRUE(scheduler->Submit(Request("q1"), kAlice).ok());
  ASSERT_TRUE(scheduler->Submit(Request("q2"), kAlice).ok());
  const auto refused = scheduler->Submit(Request("q3"), kAlice);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(radial::testing::Contains(refused.status().message(), "quota max_queued")) << refused.status();
  EXPECT_TRUE(radial::testing::Contains(refused.status().message(), "fewer than 2")) << refused.status();
  EXPECT_TRUE(scheduler->Submit(Request("bob's"), kBob).ok()) << "another tenant is not limited by alice's jobs";
}

TEST(TenancyTest, SubmitsPerMinuteRefillsOverTime) {
  auto clocks = std::make_shared<radial::testing::FakeClocks>();
  SchedulerOptions options;
  radial::testing::FakeClocks::Install(clocks, options);
  options.tenancy.tenants["alice"].submits_per_minute = 2;
  auto scheduler = Make(options);
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler->WorkerHello(&worker, HelloFor("w1", 8)).ok());
  ASSERT_TRUE(scheduler->Submit(Request("1"), kAlice).ok());
  ASSERT_TRUE(scheduler->Submit(Request("2"), kAlice).ok());
  const auto refused = scheduler->Submit(Request("3"), kAlice);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(radial::testing::Contains(refused.status().message(), "quota submits_per_minute")) << refused.status();
  EXPECT_TRUE(scheduler->Submit(Request("bob"), kBob).ok()) << "bob has the default: no limit";
  clocks->Advance(30000);  // half a minute: one more token
  EXPECT_TRUE(scheduler->Submit(Request("4"), kAlice).ok());
  EXPECT_FALSE(scheduler->Submit(Request("5"), kAlice).ok());
}

TEST(TenancyTest, MaxRunningHoldsATenantsNextJobAndLetsAnotherTenantRun) {
  SchedulerOptions options;
  options.tenancy.defaults.max_running = 1;
  auto scheduler = Make(options);
  FakeWorkerLink first, second;
  ASSERT_TRUE(scheduler->WorkerHello(&first, HelloFor("w1")).ok());
  ASSERT_TRUE(scheduler->WorkerHello(&second, HelloFor("w2")).ok());
  const auto a1 = scheduler->Submit(Request("a1"), kAlice);
  const auto a2 = scheduler->Submit(Request("a2"), kAlice);
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(first.assigns().size() + second.assigns().size(), 1u) << "alice may run one job at a time";
  const auto b1 = scheduler->Submit(Request("b1"), kBob);
  ASSERT_TRUE(b1.ok());
  ASSERT_EQ(first.assigns().size() + second.assigns().size(), 2u) << "the free worker takes bob's job";
  FakeWorkerLink& alices_worker = first.assigns().empty() ? second : first;
  ASSERT_EQ(alices_worker.assigns().back().job_id(), a1->id());
  RunToSuccess(*scheduler, alices_worker, a1->id());
  EXPECT_EQ(alices_worker.assigns().back().job_id(), a2->id()) << "a2 runs once a1 is done";
}

TEST(TenancyTest, ATenantsSingleJobIsNotHeldBehindAnothersBacklog) {
  auto scheduler = Make();
  FakeWorkerLink worker;
  ASSERT_TRUE(scheduler->WorkerHello(&worker, HelloFor("w1")).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(scheduler->Submit(Request("a"), kAlice).ok());  // the first runs
  const auto bob = scheduler->Submit(Request("b"), kBob);
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(scheduler->GetJob(bob->id(), kAdmin)->queue_position(), 0u) << "ahead of alice's 19 queued jobs";
  RunToSuccess(*scheduler, worker, worker.assigns().back().job_id());
  EXPECT_EQ(worker.assigns().back().job_id(), bob->id()) << "bob's job runs second, not twenty-first";
  RunToSuccess(*scheduler, worker, bob->id());
  EXPECT_EQ(scheduler->GetJob(worker.assigns().back().job_id(), kAdmin)->tenant(), "alice");
}

}  // namespace
}  // namespace radial::server
