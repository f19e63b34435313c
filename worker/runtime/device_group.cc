#include "device_group.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/cuda.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>
#ifdef RADIAL_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace radial::worker {
namespace {

// Followers load the bundle before they say they are ready: a 14B bundle takes half a minute.
constexpr std::chrono::minutes kStartTimeout{15};
// A collective that waits longer than this for a rank fails (a rank that hangs without exiting).
constexpr std::chrono::minutes kCollectiveTimeout{5};
constexpr std::chrono::milliseconds kPoll{50};

std::string Key(const char* what, int64_t index) { return absl::StrCat(what, "/", index); }

std::vector<uint8_t> Bytes(const std::string& text) { return {text.begin(), text.end()}; }

void Log(int rank, const std::string& text) {
  std::fprintf(stderr, "radial device group rank %d: %s\n", rank, text.c_str());
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("exited with status ", WEXITSTATUS(status));
}

nlohmann::json ToJson(const GenerationParams& p) {
  const RadialSettings& r = p.radial;
  return {{"prompt", p.prompt},
          {"negative_prompt", p.negative_prompt},
          {"width", p.width},
          {"height", p.height},
          {"frames", p.frames},
          {"steps", p.steps},
          {"guidance", p.guidance},
          {"seed", p.seed},
          {"dense", p.dense},
          {"radial",
           {{"decay", r.decay},
            {"sink", r.sink},
            {"block", r.block},
            {"dense_layers", r.dense_layers},
            {"dense_steps", r.dense_steps},
            {"dense_last_steps", r.dense_last_steps}}}};
}

GenerationParams FromJson(const nlohmann::json& j) {
  GenerationParams p;
  p.prompt = j.at("prompt").get<std::string>();
  p.negative_prompt = j.at("negative_prompt").get<std::string>();
  p.width = j.at("width").get<int64_t>();
  p.height = j.at("height").get<int64_t>();
  p.frames = j.at("frames").get<int64_t>();
  p.steps = j.at("steps").get<int64_t>();
  p.guidance = j.at("guidance").get<double>();
  p.seed = j.at("seed").get<uint64_t>();
  p.dense = j.at("dense").get<bool>();
  const nlohmann::json& r = j.at("radial");
  p.radial.decay = r.at("decay").get<double>();
  p.radial.sink = r.at("sink").get<bool>();
  p.radial.block = r.at("block").get<int64_t>();
  p.radial.dense_layers = r.at("dense_layers").get<int64_t>();
  p.radial.dense_steps = r.at("dense_steps").get<int64_t>();
  p.radial.dense_last_steps = r.at("dense_last_steps").get<int64_t>();
  return p;
}

// NVLink multicast stays off in every process of the group (the GPU machine's README says why);
// the followers inherit the environment.
void DisableMulticast() {
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 1);
  setenv("NVSHMEM_DISABLE_NVLS", "1", 1);
}

}  // namespace

absl::StatusOr<GroupLayout> PlanGroupLayout(const LoadOptions& options, const ModelManifest& manifest) {
  const std::vector<std::string>& devices = options.devices;
  GroupLayout layout;
  if (devices.size() < 2) {
    if (options.cfg_parallel) {
      return absl::InvalidArgumentError("--cfg-parallel: needs --devices with at least two devices");
    }
    return layout;
  }
  const std::string listed = absl::StrJoin(devices, ",");
  std::set<int> cuda_indices;
  int cpus = 0;
  for (const std::string& name : devices) {
    if (name == "cpu") {
      ++cpus;
      continue;
    }
    int index = -1;
    if (name.rfind("cuda:", 0) != 0 || !absl::SimpleAtoi(name.substr(5), &index) || index < 0 ||
        !cuda_indices.insert(index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--devices: got '", listed.substr(0, 200),
                       "', expected 'cpu' repeated or distinct 'cuda:N' entries (one process per GPU)"));
    }
  }
  if (cpus != 0 && !cuda_indices.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--devices: got '", listed.substr(0, 200), "', expected all cpu or all cuda:N, not both"));
  }
  if (!cuda_indices.empty()) {
    const int visible = static_cast<int>(torch::cuda::device_count());
    if (*cuda_indices.rbegin() >= visible) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--devices: got cuda:", *cuda_indices.rbegin(), ", but ",
          visible == 0 ? std::string("no CUDA device is visible")
                       : absl::StrCat("this host shows cuda:0 to cuda:", visible - 1)));
    }
  }
  layout.world = static_cast<int>(devices.size());
  layout.cfg = options.cfg_parallel ? 2 : 1;
  if (layout.world % layout.cfg != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--devices: got ", layout.world,
                                                   " devices with --cfg-parallel, expected an even number"));
  }
  layout.ulysses = layout.world / layout.cfg;
  if (manifest.num_heads <= 0 || manifest.num_heads % layout.ulysses != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--devices: ", layout.world, " devices", options.cfg_parallel ? " with --cfg-parallel" : "",
        " split the tokens over ", layout.ulysses, " ranks, which does not divide the ", manifest.num_heads,
        " attention heads of ", manifest.name, "; expected a device count that divides them",
        options.cfg_parallel ? " (times 2 with --cfg-parallel)" : " (or twice one, with --cfg-parallel)"));
  }
  return layout;
}

DeviceGroup::DeviceGroup(LoadOptions options, ModelManifest manifest, GroupLayout layout)
    : options_(std::move(options)),
      manifest_(std::move(manifest)),
      layout_(layout),
      rank_(options_.group_rank),
      device_(options_.devices.at(static_cast<size_t>(options_.group_rank))) {}

absl::StatusOr<std::unique_ptr<DeviceGroup>> DeviceGroup::Start(const LoadOptions& options,
                                                                const ModelManifest& manifest) {
  auto layout = PlanGroupLayout(options, manifest);
  if (!layout.ok()) return layout.status();
  if (options.group_rank < 0 || options.group_rank >= layout->world) {
    return absl::InvalidArgumentError(absl::StrCat("device group: rank ", options.group_rank, " of ", layout->world));
  }
  std::unique_ptr<DeviceGroup> group(new DeviceGroup(options, manifest, *layout));
  if (group->leader()) {
    group->spawner_ = std::thread([raw = group.get()] {
      std::unique_lock<std::mutex> lock(raw->spawn_mutex_);
      while (true) {
        raw->spawn_wake_.wait(lock, [raw] { return raw->spawner_stop_ || !raw->spawn_tasks_.empty(); });
        if (raw->spawn_tasks_.empty()) return;  // stopping
        std::packaged_task<void()> task = std::move(raw->spawn_tasks_.front());
        raw->spawn_tasks_.pop_front();
        lock.unlock();
        task();
        lock.lock();
      }
    });
  }
  try {
    if (group->device_.is_cuda()) c10::cuda::set_device(group->device_.index());
    if (group->device_.is_cpu()) {
      // The ranks share the host's cores.
      const int cores = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
      at::set_num_threads(std::max(1, cores / layout->world));
    }
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("device group: ", group->device_.str(), ": ", error.what()));
  }
  const absl::Status started = group->leader() ? group->Launch() : group->Join();
  if (!started.ok()) return started;
  return group;
}

DeviceGroup::~DeviceGroup() {
  if (!leader()) return;
  Stop();
  {
    std::lock_guard<std::mutex> lock(spawn_mutex_);
    spawner_stop_ = true;
  }
  spawn_wake_.notify_all();
  if (spawner_.joinable()) spawner_.join();
}

void DeviceGroup::RunOnSpawner(std::function<void()> task) {
  std::packaged_task<void()> packaged(std::move(task));
  std::future<void> done = packaged.get_future();
  {
    std::lock_guard<std::mutex> lock(spawn_mutex_);
    spawn_tasks_.push_back(std::move(packaged));
  }
  spawn_wake_.notify_one();
  done.get();
}

std::string DeviceGroup::describe() const {
  return absl::StrCat(layout_.world, " ranks (", layout_.cfg, " CFG x ", layout_.ulysses, " sequence-parallel) on ",
                      absl::StrJoin(options_.devices, ","));
}

absl::Status DeviceGroup::Launch() {
  DisableMulticast();
  ++epoch_;
  job_seq_ = 0;
  char exe[4096];
  const ssize_t length = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (length <= 0) return absl::InternalError("device group: cannot read /proc/self/exe");
  exe[length] = '\0';
  int port = 0;
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = 0;
    store_options.isServer = true;
    store_options.waitWorkers = false;
    store_options.timeout = kStartTimeout;
    auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
    port = store->getPort();
    store_ = store;
  } catch (const std::exception& error) {
    return absl::UnavailableError(absl::StrCat("device group: cannot start its store: ", error.what()));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    followers_.assign(static_cast<size_t>(layout_.world - 1), 0);
    exited_.assign(static_cast<size_t>(layout_.world - 1), "");
  }
  const std::string store_address = absl::StrCat("127.0.0.1:", port);
  const std::string devices = absl::StrJoin(options_.devices, ",");
  const std::string fraction = absl::StrCat(options_.gpu_memory_fraction);
  const pid_t parent = getpid();
  bool forked = true;
  RunOnSpawner([&] {
  for (int rank = 1; rank < layout_.world && forked; ++rank) {
    // Everything the child needs is made before fork(): between fork and exec it only calls
    // async-signal-safe functions.
    std::vector<std::string> args = {exe,      kGroupMemberFlag,   absl::StrCat(rank),
                                     store_address, manifest_.bundle_dir, devices,
                                     options_.cfg_parallel ? "1" : "0", fraction, options_.jit_executor};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      forked = false;
      break;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // a follower never outlives its leader (the spawner thread)
      if (getppid() != parent) _exit(127);
      execv(exe, argv.data());
      _exit(127);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    followers_[static_cast<size_t>(rank - 1)] = pid;
  }
  });
  if (!forked) {
    Stop();
    return absl::UnavailableError("device group: fork for a follower failed");
  }
  stop_watch_ = false;
  watcher_ = std::thread([this] { Watch(); });

  // Every follower loads the bundle, then says it is ready; one that fails says why and exits.
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  for (int rank = 1; rank < layout_.world; ++rank) {
    while (true) {
      try {
        if (store_->check({Key("ready", rank)})) break;
        if (store_->check({Key("error", rank)})) {
          const std::vector<uint8_t> text = store_->get(Key("error", rank));
          Stop();
          return absl::FailedPreconditionError(absl::StrCat("device group: rank ", rank, " (",
                                                            options_.devices[static_cast<size_t>(rank)],
                                                            ") did not start: ", std::string(text.begin(), text.end())));
        }
      } catch (const std::exception& error) {
        Stop();
        return absl::UnavailableError(absl::StrCat("device group: store: ", error.what()));
      }
      std::string exited;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        exited = exited_[static_cast<size_t>(rank - 1)];
      }
      if (!exited.empty() || std::chrono::steady_clock::now() > deadline) {
        Stop();
        return absl::UnavailableError(absl::StrCat(
            "device group: rank ", rank, " (", options_.devices[static_cast<size_t>(rank)], ") ",
            exited.empty() ? "was not ready in time" : exited, " before it was ready"));
      }
      std::this_thread::sleep_for(kPoll);
    }
  }
  if (absl::Status made = MakeGroups(); !made.ok()) {
    Stop();
    return made;
  }
  running_ = true;
  Log(0, absl::StrCat("started ", describe(), ", store ", store_address, " (group ", epoch_, ")"));
  return absl::OkStatus();
}

absl::Status DeviceGroup::Join() {
  const std::vector<std::string> parts = absl::StrSplit(options_.group_store, ':');
  int port = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("device group: store: got '", options_.group_store, "'"));
  }
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(port);
    store_options.isServer = false;
    store_options.timeout = kStartTimeout;
    store_ = c10::make_intrusive<c10d::TCPStore>(parts[0], store_options);
  } catch (const std::exception& error) {
    return absl::UnavailableError(absl::StrCat("device group: cannot reach the leader's store: ", error.what()));
  }
  return absl::OkStatus();
}

absl::Status DeviceGroup::Ready() {
  if (leader()) return absl::OkStatus();
  try {
    store_->set(Key("ready", rank_), Bytes("1"));
  } catch (const std::exception& error) {
    return absl::UnavailableError(absl::StrCat("device group: store: ", error.what()));
  }
  return MakeGroups();
}

absl::Status DeviceGroup::MakeGroups() {
  const auto make = [&](const std::string& prefix, int rank, int size) {
    auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, store_);
    auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
    if (device_.is_cuda()) {
#ifdef RADIAL_WITH_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = kCollectiveTimeout;
      auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_options);
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, backend);
      group->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
      TORCH_CHECK(false, "this build has no NCCL: device groups run on the CPU only");
#endif
    } else {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(kCollectiveTimeout);
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_options);
      group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
      group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    }
    return group;
  };
  try {
    world_group_ = make("world", rank_, layout_.world);
    if (layout_.ulysses > 1) {
      ulysses_group_ = make(absl::StrCat("ulysses-", cfg_index()), ulysses_rank(), layout_.ulysses);
      ulysses_name_ = absl::StrCat("radial-ulysses-", epoch_);
      ulysses_group_->setGroupName(ulysses_name_);
      c10d::register_process_group(ulysses_name_, ulysses_group_);
    }
    if (layout_.cfg == 2) cfg_group_ = make(absl::StrCat("cfg-", ulysses_rank()), cfg_index(), 2);
  } catch (const std::exception& error) {
    return absl::UnavailableError(absl::StrCat("device group: process groups: ", error.what()));
  }
  return absl::OkStatus();
}

void DeviceGroup::Watch() {
  while (!stop_watch_) {
    bool lost = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 0; i < followers_.size(); ++i) {
        int status = 0;
        if (followers_[i] == 0 || waitpid(followers_[i], &status, WNOHANG) != followers_[i]) continue;
        followers_[i] = 0;
        exited_[i] = Describe(status);
        Log(0, absl::StrCat("rank ", i + 1, " (", options_.devices[i + 1], ") ", exited_[i]));
        lost = true;
      }
    }
    // A collective waiting for that rank returns now (NCCL; Gloo sees the closed connection).
    if (lost && running_) {
      try {
        for (auto* group : {&world_group_, &ulysses_group_, &cfg_group_}) {
          if (*group) (*group)->abort();
        }
      } catch (const std::exception& error) {
        Log(0, absl::StrCat("abort: ", error.what()));
      }
    }
    std::this_thread::sleep_for(kPoll);
  }
}

std::string DeviceGroup::ExitReasonLocked() const {
  for (size_t i = 0; i < exited_.size(); ++i) {
    if (!exited_[i].empty()) return absl::StrCat("rank ", i + 1, " (", options_.devices[i + 1], ") ", exited_[i]);
  }
  return "";
}

void DeviceGroup::Stop() {
  stop_watch_ = true;
  if (watcher_.joinable()) watcher_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (pid_t& pid : followers_) {
      if (pid == 0) continue;
      kill(pid, SIGKILL);
      int status = 0;
      waitpid(pid, &status, 0);
      pid = 0;
    }
  }
  if (!ulysses_name_.empty()) {
    c10d::unregister_process_group(ulysses_name_);
    ulysses_name_.clear();
  }
  try {
    if (running_) {
      for (auto* group : {&world_group_, &ulysses_group_, &cfg_group_}) {
        if (*group) (*group)->abort();
      }
    }
  } catch (const std::exception& error) {
    Log(0, absl::StrCat("abort: ", error.what()));
  }
  world_group_.reset();
  ulysses_group_.reset();
  cfg_group_.reset();
  store_.reset();
  running_ = false;
}

absl::Status DeviceGroup::EnsureRunning() {
  bool lost = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    lost = !ExitReasonLocked().empty();
  }
  if (running_ && !lost) return absl::OkStatus();
  if (lost) Log(0, "a follower is gone: the group restarts");
  Stop();
  // Not UNAVAILABLE: the job would be handed back and come here again.
  if (absl::Status launched = Launch(); !launched.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("device group: cannot start again: ", launched.message()));
  }
  return absl::OkStatus();
}

absl::Status DeviceGroup::Publish(const GenerationParams& params) {
  try {
    store_->set(Key("job", ++job_seq_), Bytes(ToJson(params).dump()));
  } catch (const std::exception& error) {
    return absl::UnavailableError(absl::StrCat("device group: store: ", error.what()));
  }
  return absl::OkStatus();
}

std::optional<GenerationParams> DeviceGroup::NextJob() {
  const std::string key = Key("job", job_seq_ + 1);
  const pid_t leader = getppid();
  while (true) {
    try {
      // Polled: the store's wait() logs a warning at each timeout, and the leader may idle for hours.
      if (!store_->check({key})) {
        if (getppid() != leader) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      const std::vector<uint8_t> text = store_->get(key);
      ++job_seq_;
      return FromJson(nlohmann::json::parse(text.begin(), text.end()));
    } catch (const nlohmann::json::exception& error) {
      Log(rank_, absl::StrCat("job ", job_seq_ + 1, ": ", error.what()));
      return std::nullopt;
    } catch (const std::exception& error) {
      // The leader's store is gone, with the leader or its group.
      Log(rank_, absl::StrCat("store: ", error.what()));
      return std::nullopt;
    }
  }
}

bool DeviceGroup::AgreeToGoOn(bool go_on) {
  std::vector<at::Tensor> flag = {
      torch::full({1}, go_on ? 1 : 0, torch::TensorOptions().dtype(torch::kInt32).device(device_))};
  c10d::BroadcastOptions broadcast;
  broadcast.rootRank = 0;
  world_group_->broadcast(flag, broadcast)->wait();
  return flag[0].item<int>() == 1;
}

torch::Tensor DeviceGroup::GatherGuidance(const torch::Tensor& velocity) {
  std::vector<at::Tensor> input = {velocity.contiguous()};
  std::vector<std::vector<at::Tensor>> output = {{torch::empty_like(input[0]), torch::empty_like(input[0])}};
  cfg_group_->allgather(output, input)->wait();
  return torch::cat(output[0], 0);
}

absl::Status DeviceGroup::Fail(const absl::Status& error) {
  // The collective may have failed before the watcher reaped the rank that caused it.
  std::string exited;
  for (int i = 0; i < 40; ++i) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      exited = ExitReasonLocked();
    }
    if (!exited.empty()) break;
    std::this_thread::sleep_for(kPoll);
  }
  absl::Status result = error;
  for (int rank = 1; rank < layout_.world && store_; ++rank) {
    try {
      if (!store_->check({Key("error", rank)})) continue;
      const std::vector<uint8_t> bytes = store_->get(Key("error", rank));
      const std::string text(bytes.begin(), bytes.end());
      const size_t newline = text.find('\n');
      int code = static_cast<int>(absl::StatusCode::kInternal);
      if (newline == std::string::npos || !absl::SimpleAtoi(text.substr(0, newline), &code) || code <= 0 ||
          code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
        code = static_cast<int>(absl::StatusCode::kInternal);
      }
      result = absl::Status(static_cast<absl::StatusCode>(code),
                            absl::StrCat("device group: rank ", rank, " (", options_.devices[static_cast<size_t>(rank)],
                                         "): ", newline == std::string::npos ? text : text.substr(newline + 1)));
      break;
    } catch (const std::exception&) {
      break;
    }
  }
  if (result.code() == error.code() && result.message() == error.message() && !exited.empty()) {
    result = absl::UnavailableError(absl::StrCat("device group: ", exited,
                                                 " during the job; the group restarts before the next job, which "
                                                 "can be this one again (",
                                                 error.message().substr(0, 300), ")"));
  }
  Log(0, absl::StrCat("job failed: ", result.ToString(), "; stopping the group"));
  Stop();
  return result;
}

void DeviceGroup::ReportError(const absl::Status& error) {
  try {
    store_->set(Key("error", rank_),
                Bytes(absl::StrCat(static_cast<int>(error.code()), "\n", error.message().substr(0, 2000))));
  } catch (const std::exception&) {
    // The leader is gone too: nobody to tell.
  }
  Log(rank_, absl::StrCat("stops: ", error.ToString()));
}

}  // namespace radial::worker
