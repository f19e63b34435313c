// The processes of one video on several devices (LoadOptions::devices): rank 0, the leader, is
// the worker itself; it starts one follower process per other device (this executable again, with
// kGroupMemberFlag), hosts the c10d TCPStore they meet at, and joins c10d process groups with
// them: Gloo on the CPU, NCCL on CUDA. Collectives are LibTorch's (c10d); the DiT's own all-to-alls
// use the sequence-parallel group by its registered name (dit.py forward_parallel).
//
// Layout: world = cfg x ulysses ranks; rank r is in CFG half r / ulysses (0: the prompt's pass,
// 1: the negative prompt's, when cfg = 2) at sequence-parallel rank r % ulysses.
//
// Jobs: the leader publishes each job's parameters in the store; the followers run its text and
// denoising stages with it; before every step rank 0 broadcasts whether to go on (a cancel stops
// every rank at the same step). Only the leader decodes and streams.
//
// Failures: a follower that fails writes its error into the store and exits; one that dies just
// exits. The leader watches its followers (a thread reaping them); on a follower's exit it aborts
// its process groups, so that a collective waiting for that rank returns at once with an error.
// After any failure while the followers take part, the leader kills the group (Fail) and starts a
// new one (new store, new followers) before its next job (EnsureRunning).
//
// LibTorch inside: included by wan21.cc and device_group.cc only.
#ifndef RADIAL_WORKER_RUNTIME_DEVICE_GROUP_H_
#define RADIAL_WORKER_RUNTIME_DEVICE_GROUP_H_

#include <sys/types.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model_manifest.h"
#include "pipeline.h"

namespace radial::worker {

struct GroupLayout {
  int world = 1;
  int cfg = 1;      // 1 or 2
  int ulysses = 1;  // world / cfg: the sequence-parallel degree
};

// The layout for `options.devices` (INVALID_ARGUMENT naming --devices and what would work: mixed
// or repeated devices, an odd count with --cfg-parallel, a sequence-parallel degree that does not
// divide the model's attention heads).
absl::StatusOr<GroupLayout> PlanGroupLayout(const LoadOptions& options, const ModelManifest& manifest);

class DeviceGroup {
 public:
  // Leader: starts the followers and the process groups (waits until every follower has loaded
  // the bundle). Follower (options.group_rank >= 1): connects to the leader's store (Ready joins
  // the process groups).
  static absl::StatusOr<std::unique_ptr<DeviceGroup>> Start(const LoadOptions& options, const ModelManifest& manifest);
  ~DeviceGroup();  // the leader kills and reaps its followers

  int rank() const { return rank_; }
  bool leader() const { return rank_ == 0; }
  const GroupLayout& layout() const { return layout_; }
  int cfg_index() const { return rank_ / layout_.ulysses; }
  int ulysses_rank() const { return rank_ % layout_.ulysses; }
  // The name the sequence-parallel group is registered under (c10d's group registry).
  const std::string& ulysses_group_name() const { return ulysses_name_; }
  std::string describe() const;  // "4 ranks (2 CFG halves x 2 sequence-parallel) on cpu,cpu,cpu,cpu"

  // Follower, once its modules are loaded: tells the leader and joins the process groups. No-op
  // on the leader (Start has done both).
  absl::Status Ready();
  // Leader, before a job: starts a new group if the last one failed. The error if it cannot.
  absl::Status EnsureRunning();
  // Leader: hands the job to the followers.
  absl::Status Publish(const GenerationParams& params);
  // Follower: the next job; nullopt when the leader has gone away.
  std::optional<GenerationParams> NextJob();
  // Every rank, before each denoising step: rank 0's `go_on` (the others' is ignored).
  bool AgreeToGoOn(bool go_on);
  // Every rank with cfg = 2 and guidance: this half's velocity [1, ...] -> [2, ...], the prompt's
  // pass first.
  torch::Tensor GatherGuidance(const torch::Tensor& velocity);
  // Leader, after `error` in a stage the followers take part in: the status the job ends with (a
  // follower's own error naming its rank, UNAVAILABLE when one exited without one, else `error`).
  // The group is gone afterwards; EnsureRunning starts a new one.
  absl::Status Fail(const absl::Status& error);
  // Follower: tells the leader why this rank stops (before it exits).
  void ReportError(const absl::Status& error);

 private:
  DeviceGroup(LoadOptions options, ModelManifest manifest, GroupLayout layout);
  absl::Status Launch();         // leader: store, followers, process groups
  absl::Status Join();           // follower
  absl::Status MakeGroups();     // every rank
  void Stop();                   // leader: kill and reap followers, drop groups and store
  void Watch();                  // leader's thread: reaps followers, aborts the groups on an exit
  std::string ExitReasonLocked() const;

  const LoadOptions options_;
  const ModelManifest manifest_;
  const GroupLayout layout_;
  const int rank_;
  c10::Device device_{c10::kCPU};
  int epoch_ = 0;  // leader: groups started so far
  int64_t job_seq_ = 0;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> world_group_, ulysses_group_, cfg_group_;
  std::string ulysses_name_;
  // Set once the groups exist, cleared in Stop; the watcher reads it (and then the groups).
  std::atomic<bool> running_{false};

  // Leader: the followers and what the watcher saw.
  std::mutex mutex_;
  std::vector<pid_t> followers_;     // rank - 1 -> pid, 0 once reaped
  std::vector<std::string> exited_;  // rank - 1 -> how it exited, empty while it runs
  std::atomic<bool> stop_watch_{false};
  std::thread watcher_;
  // Leader: the thread that forks the followers, for the group's whole life. A follower dies with
  // the thread that forked it (PR_SET_PDEATHSIG follows the thread), and a restart runs on a job
  // thread that ends after the job.
  void RunOnSpawner(std::function<void()> task);
  std::thread spawner_;
  std::mutex spawn_mutex_;
  std::condition_variable spawn_wake_;
  std::deque<std::packaged_task<void()>> spawn_tasks_;
  bool spawner_stop_ = false;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_DEVICE_GROUP_H_
