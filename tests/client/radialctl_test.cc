// radialctl against the real scheduler in process on 127.0.0.1: each test runs the client's entry
// point (what the binary runs) while a fake worker thread, speaking the real WorkerService stream,
// plays the job. Checks what a user relies on: the file holds exactly the video's bytes, progress is
// readable, the server's messages reach the user, and the exit codes tell the failures apart.
#include "radialctl.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <streambuf>
#include <thread>

#include "command_line.h"
#include "exit_code.h"
#include "interrupt.h"
#include "output_file.h"
#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "rpc/scheduler_server.h"
#include "tests/integration/process.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/tiny_model_info.h"

namespace radial::client {
namespace {

using namespace std::chrono_literals;

constexpr auto kRunTimeout = 15s;

v1::ModelInfo TinyModel() {
  v1::ModelInfo model = radial::testing::TinyModelInfo();
  model.mutable_defaults()->set_steps(3);
  return model;
}

// A string sink that the client thread writes while the test thread reads it.
class LockedText : public std::streambuf {
 public:
  std::string Text() {
    std::lock_guard<std::mutex> lock(mutex_);
    return text_;
  }
  bool Contains(const std::string& part) { return Text().find(part) != std::string::npos; }

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    std::lock_guard<std::mutex> lock(mutex_);
    text_.push_back(static_cast<char>(c));
    return c;
  }
  std::streamsize xsputn(const char* data, std::streamsize size) override {
    std::lock_guard<std::mutex> lock(mutex_);
    text_.append(data, static_cast<size_t>(size));
    return size;
  }

 private:
  std::mutex mutex_;
  std::string text_;
};

// Polls `condition` for up to 10 s.
bool Eventually(const std::function<bool()>& condition) {
  for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

// A worker process as the scheduler sees it: a thread reads the stream and hands each assignment to
// the test's script, which answers with progress, chunks and done (or nothing, to hold the job).
class FakeWorker {
 public:
  using Script = std::function<void(FakeWorker&, const v1::Assign&)>;

  FakeWorker(const std::shared_ptr<grpc::Channel>& channel, const std::string& id, Script script)
      : stub_(v1::WorkerService::NewStub(channel)), script_(std::move(script)) {
    context_.set_deadline(std::chrono::system_clock::now() + 30s);
    stream_ = stub_->Connect(&context_);
    v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(id);
    hello.mutable_hello()->set_capacity(1);
    hello.mutable_hello()->set_device("test");
    *hello.mutable_hello()->add_models() = TinyModel();
    EXPECT_TRUE(stream_->Write(hello));
    thread_ = std::thread([this] {
      v1::SchedulerMessage message;
      while (stream_->Read(&message)) {
        if (message.has_assign()) script_(*this, message.assign());
      }
    });
  }
  ~FakeWorker() {
    Kill();
    thread_.join();
  }

  void Progress(const std::string& job_id, v1::Stage stage, uint32_t step, uint32_t total) {
    v1::WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->mutable_progress()->set_stage(stage);
    message.mutable_progress()->mutable_progress()->set_step(step);
    message.mutable_progress()->mutable_progress()->set_total(total);
    stream_->Write(message);
  }
  void Chunk(const std::string& job_id, uint64_t offset, const std::string& data) {
    v1::WorkerMessage message;
    message.mutable_chunk()->set_job_id(job_id);
    message.mutable_chunk()->mutable_chunk()->set_offset(offset);
    message.mutable_chunk()->mutable_chunk()->set_data(data);
    stream_->Write(message);
  }
  // The whole video in pieces of `piece` bytes.
  void Video(const std::string& job_id, const std::string& bytes, size_t piece = 7) {
    for (size_t offset = 0; offset < bytes.size(); offset += piece) Chunk(job_id, offset, bytes.substr(offset, piece));
  }
  void Done(const std::string& job_id, uint32_t frames = 17) {
    v1::WorkerMessage message;
    message.mutable_done()->set_job_id(job_id);
    message.mutable_done()->mutable_stats()->set_frames(frames);
    message.mutable_done()->mutable_stats()->set_mask_density(0.5);
    message.mutable_done()->mutable_stats()->set_total_seconds(1.25);
    stream_->Write(message);
  }
  void Failed(const std::string& job_id, int code, const std::string& text) {
    v1::WorkerMessage message;
    message.mutable_failed()->set_job_id(job_id);
    message.mutable_failed()->mutable_error()->set_code(code);
    message.mutable_failed()->mutable_error()->set_message(text);
    stream_->Write(message);
  }
  // The process dies: the stream breaks without a goodbye.
  void Kill() { context_.TryCancel(); }

 private:
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream_;
  Script script_;
  std::thread thread_;
};

// Passes the scheduler's check of worker output (ftyp, moov, moof+mdat with 17 samples).
const std::string kVideo = radial::testing::FakeFmp4(17, 40);

struct RunResult {
  int code;
  std::string out;
  std::string err;
};

class RadialctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.scheduler.max_chunk_bytes = 16;  // several chunk events per video
    auto server = server::SchedulerServer::Start(options, std::make_unique<server::InMemoryJobStore>());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    environment_.default_server = address_;
    dir_ = std::filesystem::temp_directory_path() / ("radialctl_test_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    workers_.clear();
    if (server_) server_->Shutdown(500);
    std::filesystem::remove_all(dir_);
  }

  FakeWorker& AddWorker(const std::string& id, FakeWorker::Script script) {
    workers_.push_back(std::make_unique<FakeWorker>(channel_, id, std::move(script)));
    const size_t count = workers_.size();
    EXPECT_TRUE(Eventually([&] { return server_->scheduler().connected_workers() == count; }));
    return *workers_.back();
  }

  RunResult Run(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    const int code = RunRadialctl(args, out, err, environment_);
    return {code, out.str(), err.str()};
  }

  // Runs the client on its own thread (a generate or watch that the worker must answer); `err` is
  // readable while it runs.
  std::future<int> Start(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    return std::async(std::launch::async,
                      [this, args, &out, &err] { return RunRadialctl(args, out, err, environment_); });
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static std::string Read(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(file), {});
  }
  static void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }

  std::unique_ptr<server::SchedulerServer> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  ClientEnvironment environment_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

// Plays a job as the worker does: denoising steps 1..3, decoding 0, 9 and 17 of 17 frames, the
// video, muxing 17/17, done. Each progress value is sent once the client has shown the one before
// (progress updates are coalesced, so a fast worker could skip past a reader).
FakeWorker::Script PlayVideo(LockedText& client_err, const std::string& video) {
  return [&client_err, video](FakeWorker& worker, const v1::Assign& assign) {
    const std::string& id = assign.job_id();
    for (uint32_t step = 1; step <= 3; ++step) {
      worker.Progress(id, v1::STAGE_DENOISING, step, 3);
      Eventually([&] { return client_err.Contains(std::to_string(step) + "/3"); });
    }
    for (uint32_t frames : {0, 9, 17}) {
      worker.Progress(id, v1::STAGE_DECODING, frames, 17);
      Eventually([&] { return client_err.Contains(std::to_string(frames) + "/17 frames"); });
    }
    worker.Video(id, video);
    worker.Progress(id, v1::STAGE_MUXING, 17, 17);
    Eventually([&] { return client_err.Contains("muxing"); });
    worker.Done(id);
  };
}

TEST_F(RadialctlTest, GenerateWritesExactlyTheVideoAndPrintsPlainProgress) {
  LockedText err_text;
  std::ostream err(&err_text);
  AddWorker("w1", PlayVideo(err_text, kVideo));
  std::ostringstream out;
  const std::string path = Path("out.mp4");
  auto run = Start({"generate", "a red fox", "-o", path}, out, err);
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), 0) << err_text.Text();
  EXPECT_EQ(Read(path), kVideo);

  const std::string progress = err_text.Text();
  EXPECT_NE(progress.find(" accepted"), std::string::npos) << progress;
  for (const char* line :
       {"denoising step 1/3\n", "denoising step 2/3\n", "denoising step 3/3\n", "decoding 0/17 frames\n",
        "decoding 9/17 frames\n", "decoding 17/17 frames\n", "muxing 17/17 frames\n"}) {
    EXPECT_NE(progress.find(line), std::string::npos) << progress;
  }
  EXPECT_EQ(progress.find('\r'), std::string::npos) << "no terminal control when stderr is not a terminal";
  EXPECT_NE(out.str().find("succeeded"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(path + ", " + std::to_string(kVideo.size()) + " bytes"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("17 frames"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("density 0.500"), std::string::npos) << out.str();
}

TEST_F(RadialctlTest, FlagsBecomeTheRequest) {
  std::promise<v1::GenerateRequest> seen;
  AddWorker("w1", [&seen](FakeWorker& worker, const v1::Assign& assign) {
    seen.set_value(assign.request());
    worker.Video(assign.job_id(), radial::testing::FakeFmp4(assign.request().frames()));
    worker.Done(assign.job_id(), assign.request().frames());
  });
  const RunResult result =
      Run({"generate", "a red fox", "--frames", "9", "--seed", "7", "--guidance", "4.5", "--sink", "on", "--block=128",
           "--priority", "-3", "--negative", "-blurry", "--dense-steps", "1", "--fragment-frames", "4", "-o",
           Path("flags.mp4")});
  EXPECT_EQ(result.code, 0) << result.err;
  const v1::GenerateRequest request = seen.get_future().get();
  EXPECT_EQ(request.prompt(), "a red fox");
  EXPECT_EQ(request.frames(), 9u);
  EXPECT_EQ(request.seed(), 7u);
  EXPECT_FLOAT_EQ(request.guidance(), 4.5f);
  EXPECT_EQ(request.priority(), -3);
  EXPECT_EQ(request.negative_prompt(), "-blurry");
  EXPECT_TRUE(request.radial().sink());
  EXPECT_EQ(request.radial().block(), 128u);
  EXPECT_EQ(request.radial().dense_steps(), 1u);
  EXPECT_EQ(request.fragment_frames(), 4u);
  EXPECT_EQ(request.width(), 128u) << "unset flags take the model's defaults";
}

TEST_F(RadialctlTest, TerminalShowsOneRedrawnLineWithBarAndEta) {
  LockedText err_text;
  std::ostream err(&err_text);
  AddWorker("w1", PlayVideo(err_text, kVideo));
  environment_.stderr_is_terminal = true;
  std::ostringstream out;
  auto run = Start({"generate", "a red fox", "-o", Path("tty.mp4")}, out, err);
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), 0) << err_text.Text();
  const std::string progress = err_text.Text();
  EXPECT_NE(progress.find("\r\033[K"), std::string::npos) << progress;
  EXPECT_NE(progress.find("3/3 steps [###################.....] 80%"), std::string::npos) << progress;
  EXPECT_NE(progress.find("9/17 frames [#"), std::string::npos) << progress;
  EXPECT_NE(progress.find("17/17 frames [########################] 100%"), std::string::npos) << progress;
  EXPECT_NE(progress.find("ETA "), std::string::npos) << progress;
  EXPECT_NE(progress.find(std::to_string(kVideo.size()) + " B"), std::string::npos) << progress;
  EXPECT_EQ(progress.find("denoising step"), std::string::npos) << "no plain lines on a terminal";
}

TEST_F(RadialctlTest, RestartedJobTruncatesTheFileToTheSecondAttempt) {
  const std::string first_attempt = radial::testing::FakeFmp4(17, 200).substr(0, 300);  // cut off by the loss
  const std::string second_attempt = radial::testing::FakeFmp4(17, 10);
  AddWorker("w1",
            [&](FakeWorker& worker, const v1::Assign& assign) { worker.Chunk(assign.job_id(), 0, first_attempt); });
  LockedText err_text;
  std::ostream err(&err_text);
  std::ostringstream out;
  const std::string path = Path("restart.mp4");
  auto run = Start({"generate", "a whale", "-o", path}, out, err);
  // The first attempt's bytes reach the file, then its worker dies.
  ASSERT_TRUE(Eventually(
      [&] { return std::filesystem::exists(path) && std::filesystem::file_size(path) == first_attempt.size(); }));
  workers_.back()->Kill();
  ASSERT_TRUE(Eventually([&] { return server_->scheduler().connected_workers() == 0; }));
  FakeWorker second(channel_, "w2", [&](FakeWorker& worker, const v1::Assign& assign) {
    worker.Chunk(assign.job_id(), 0, second_attempt);
    worker.Done(assign.job_id());
  });
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), 0) << err_text.Text();
  EXPECT_EQ(Read(path), second_attempt);
  EXPECT_TRUE(err_text.Contains("restarted (attempt 2)")) << err_text.Text();
  EXPECT_TRUE(err_text.Contains("discarded " + std::to_string(first_attempt.size()) + " bytes")) << err_text.Text();
}

TEST_F(RadialctlTest, RejectedRequestShowsTheServersMessageAndExits3) {
  AddWorker("w1", [](FakeWorker&, const v1::Assign&) {});
  const std::string path = Path("never.mp4");
  RunResult result = Run({"generate", "x", "--width", "100", "-o", path});
  EXPECT_EQ(result.code, 3);
  EXPECT_NE(result.err.find("INVALID_ARGUMENT: width: got 100, expected a multiple of 16 in [64, 256]"),
            std::string::npos)
      << result.err;
  EXPECT_FALSE(std::filesystem::exists(path)) << "no file is left behind for a rejected request";

  result = Run({"submit", "x", "--model", "nope"});
  EXPECT_EQ(result.code, 3);
  EXPECT_NE(result.err.find("NOT_FOUND: model: got 'nope'"), std::string::npos) << result.err;
}

TEST_F(RadialctlTest, UnknownJobIsNotFoundForStatusCancelAndWatch) {
  for (const char* command : {"status", "cancel", "watch"}) {
    const RunResult result = Run({command, "0123456789abcdef"});
    EXPECT_EQ(result.code, 3) << command;
    EXPECT_NE(result.err.find("NOT_FOUND: job_id: got '0123456789abcdef'"), std::string::npos) << result.err;
  }
}

TEST_F(RadialctlTest, FailedJobExits4AndRemovesThePartialFileUnlessKept) {
  AddWorker("w1", [](FakeWorker& worker, const v1::Assign& assign) {
    worker.Chunk(assign.job_id(), 0, kVideo.substr(0, 20));
    worker.Failed(assign.job_id(), 13, "decoder ran out of memory");
  });
  const std::string path = Path("failed.mp4");
  RunResult result = Run({"generate", "x", "-o", path});
  EXPECT_EQ(result.code, 4);
  EXPECT_NE(result.err.find("failed: INTERNAL: worker w1: decoder ran out of memory"), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(path));

  result = Run({"generate", "x", "-o", path, "--keep-partial"});
  EXPECT_EQ(result.code, 4);
  EXPECT_EQ(Read(path), kVideo.substr(0, 20));
}

TEST_F(RadialctlTest, CancelQueuedJob) {
  AddWorker("w1", [](FakeWorker&, const v1::Assign&) {});  // holds the first job
  RunResult first = Run({"submit", "first"});
  ASSERT_EQ(first.code, 0) << first.err;
  RunResult second = Run({"submit", "second", "--verbose"});
  ASSERT_EQ(second.code, 0) << second.err;
  const std::string id = second.out.substr(0, second.out.find('\n'));
  EXPECT_NE(second.out.find("queue position 0"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("128x128"), std::string::npos) << "the resolved request: " << second.out;

  RunResult cancel = Run({"cancel", id});
  EXPECT_EQ(cancel.code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, "job " + id + " cancelled\n");
  RunResult status = Run({"status", id});
  EXPECT_EQ(status.code, 0) << status.err;
  EXPECT_EQ(status.out.rfind("job " + id + " cancelled\n", 0), 0u) << status.out;
  status = Run({"status", "--json", id});
  EXPECT_NE(status.out.find("\"state\":\"JOB_STATE_CANCELLED\""), std::string::npos) << status.out;
  RunResult watch = Run({"watch", id});
  EXPECT_EQ(watch.code, 5) << watch.err;
  EXPECT_NE(watch.err.find("was cancelled: CANCELLED"), std::string::npos) << watch.err;
}

TEST_F(RadialctlTest, WatchResumesAPartialFileWithTheRemainingBytes) {
  AddWorker("w1", [](FakeWorker& worker, const v1::Assign& assign) {
    worker.Video(assign.job_id(), kVideo);
    worker.Done(assign.job_id());
  });
  const RunResult submit = Run({"submit", "x"});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string id = submit.out.substr(0, submit.out.size() - 1);
  ASSERT_TRUE(Eventually([&] { return Run({"status", id}).out.find("succeeded") != std::string::npos; }));

  // Default offset: the file's size; the file ends up whole.
  const std::string resumed = Path("resumed.mp4");
  WriteFile(resumed, kVideo.substr(0, 10));
  RunResult watch = Run({"watch", id, "-o", resumed});
  EXPECT_EQ(watch.code, 0) << watch.err;
  EXPECT_EQ(Read(resumed), kVideo);
  EXPECT_NE(watch.out.find(std::to_string(kVideo.size() - 10) + " received now"), std::string::npos) << watch.out;
  EXPECT_NE(watch.err.find("watching job " + id), std::string::npos) << watch.err;

  // An explicit offset: bytes past it are replaced by the job's.
  const std::string explicit_offset = Path("explicit.mp4");
  WriteFile(explicit_offset, kVideo.substr(0, 20) + "garbage that is not the job's");
  watch = Run({"watch", id, "-o", explicit_offset, "--from-offset", "20"});
  EXPECT_EQ(watch.code, 0) << watch.err;
  EXPECT_EQ(Read(explicit_offset), kVideo);

  // An offset past what the file holds would leave a hole.
  WriteFile(resumed, kVideo.substr(0, 10));
  watch = Run({"watch", id, "-o", resumed, "--from-offset", "30"});
  EXPECT_EQ(watch.code, 2);
  EXPECT_NE(watch.err.find("--from-offset"), std::string::npos) << watch.err;

  // Past the end of the video: the server says so.
  WriteFile(resumed, kVideo + "extra");
  watch = Run({"watch", id, "-o", resumed});
  EXPECT_EQ(watch.code, 3);
  EXPECT_NE(watch.err.find("OUT_OF_RANGE: from_byte_offset"), std::string::npos) << watch.err;

  // No file: the job is followed and its bytes counted.
  watch = Run({"watch", id, "--from-offset", "10"});
  EXPECT_EQ(watch.code, 0) << watch.err;
  EXPECT_NE(watch.out.find("received  " + std::to_string(kVideo.size() - 10) + " of the video's " +
                           std::to_string(kVideo.size()) + " bytes"),
            std::string::npos)
      << watch.out;
}

TEST_F(RadialctlTest, ModelsListsLimitsDefaultsAndWorkers) {
  AddWorker("w1", [](FakeWorker&, const v1::Assign&) {});
  RunResult models = Run({"models"});
  ASSERT_EQ(models.code, 0) << models.err;
  EXPECT_NE(models.out.find("tiny *"), std::string::npos) << models.out;
  EXPECT_NE(models.out.find("64-256 /16"), std::string::npos) << models.out;
  EXPECT_NE(models.out.find("1-33 (4k+1)"), std::string::npos) << models.out;
  EXPECT_NE(models.out.find("tiny: 17 frames 128x128 at 16 fps, 3 steps, guidance 5"), std::string::npos) << models.out;
  models = Run({"models", "--json"});
  ASSERT_EQ(models.code, 0) << models.err;
  EXPECT_NE(models.out.find("\"name\":\"tiny\""), std::string::npos) << models.out;
  EXPECT_NE(models.out.find("\"workers\":1"), std::string::npos) << models.out;
}

// A port on 127.0.0.1 where nothing listens.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST_F(RadialctlTest, UnreachableServerExits6Quickly) {
  const std::string server = "127.0.0.1:" + std::to_string(ClosedPort());
  const std::string path = Path("unreachable.mp4");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--server", server, "status", "0123456789abcdef"}, {"generate", "x", "-o", path, "--server=" + server}}) {
    const auto start = std::chrono::steady_clock::now();
    const RunResult result = Run(args);
    EXPECT_EQ(result.code, 6) << result.err;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
    EXPECT_NE(result.err.find("UNAVAILABLE"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find(server), std::string::npos) << "names the address tried: " << result.err;
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  // RADIAL_SERVER's role: the default server.
  environment_.default_server = server;
  EXPECT_EQ(Run({"models"}).code, 6);
}

TEST_F(RadialctlTest, SilentServerExits6AfterTheConnectTimeout) {
  // A socket that listens but never speaks HTTP/2: the connection neither succeeds nor fails.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  environment_.connect_timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = Run({"--server", "127.0.0.1:" + std::to_string(ntohs(address.sin_port)), "models"});
  ::close(fd);
  EXPECT_EQ(result.code, 6);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_NE(result.err.find("DEADLINE_EXCEEDED: no connection to 127.0.0.1:"), std::string::npos) << result.err;
}

TEST_F(RadialctlTest, NoWorkerYetIsUnavailableFromTheServerItself) {
  const RunResult result = Run({"submit", "x"});
  EXPECT_EQ(result.code, 6);
  EXPECT_NE(result.err.find("UNAVAILABLE: model: no worker serves a model now"), std::string::npos)
      << result.err;
  EXPECT_EQ(result.err.find("set --server"), std::string::npos) << "the server was reached: " << result.err;
}

TEST_F(RadialctlTest, UsageErrorsExit2AndNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "expected a command"},
      {{"render", "x"}, "unknown command 'render'"},
      {{"generate", "-o", "a.mp4"}, "expected one prompt argument"},
      {{"generate", "a", "b", "-o", "a.mp4"}, "expected one prompt argument"},
      {{"generate", "x"}, "expected -o PATH"},
      {{"generate", "x", "-o", "a.mp4", "--widht", "64"}, "unknown flag --widht"},
      {{"generate", "x", "-o", "a.mp4", "--width", "abc"}, "--width: got 'abc', expected a non-negative integer"},
      {{"generate", "x", "-o", "a.mp4", "--width", "-64"}, "--width: got '-64'"},
      {{"generate", "x", "-o", "a.mp4", "--frames", "99999999999"}, "--frames: got '99999999999'"},
      {{"generate", "x", "-o", "a.mp4", "--guidance", "high"}, "--guidance: got 'high', expected a number"},
      {{"generate", "x", "-o", "a.mp4", "--sink", "yes"}, "--sink: got 'yes', expected on or off"},
      {{"generate", "x", "-o", "a.mp4", "--steps"}, "--steps: expected a value"},
      {{"generate", "x", "-o", "a.mp4", "--dense=1"}, "--dense: takes no value"},
      {{"status"}, "status: expected one job id"},
      {{"status", "abc", "--frames", "17"}, "status does not take --frames"},
      {{"models", "extra"}, "models: takes no arguments"},
  };
  for (const Case& c : cases) {
    const RunResult result = Run(c.args);
    EXPECT_EQ(result.code, 2) << ::testing::PrintToString(c.args);
    EXPECT_NE(result.err.find(c.message), std::string::npos) << result.err;
  }
  const RunResult help = Run({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: radialctl"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The command line of jobs, delete and the request's idempotency key and timeouts: ParseCommandLine
// alone, no server.
// ---------------------------------------------------------------------------------------------

Invocation Parse(const std::vector<std::string>& args) {
  auto parsed = ParseCommandLine(args, "localhost:50051");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : Invocation();
}

TEST(CommandLineTest, JobsTakesStatesModelLimitAndJson) {
  Invocation jobs = Parse({"jobs"});
  EXPECT_EQ(jobs.command, Command::kJobs);
  EXPECT_TRUE(jobs.states.empty()) << "no --state: every state";
  EXPECT_EQ(jobs.limit, 50u);
  EXPECT_FALSE(jobs.json);

  jobs = Parse({"jobs", "--state", "queued", "--state=failed,cancelled", "--model", "tiny", "--limit", "7", "--json"});
  EXPECT_EQ(jobs.states,
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}));
  EXPECT_EQ(jobs.request.model(), "tiny");
  EXPECT_EQ(jobs.limit, 7u);
  EXPECT_TRUE(jobs.json);
}

TEST(CommandLineTest, DeleteTakesOneJobId) {
  const Invocation deletion = Parse({"delete", "0123456789abcdef", "--json"});
  EXPECT_EQ(deletion.command, Command::kDelete);
  EXPECT_EQ(deletion.job_id, "0123456789abcdef");
  EXPECT_TRUE(deletion.json);
}

TEST(CommandLineTest, RequestIdAndTimeoutsSetTheRequest) {
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"submit"}, std::vector<std::string>{"generate", "-o", "x.mp4"}}) {
    std::vector<std::string> args = command;
    args.insert(args.end(), {"a fox", "--request-id", "nightly-1", "--queue-timeout", "3600", "--run-timeout=600"});
    const Invocation invocation = Parse(args);
    EXPECT_EQ(invocation.request.request_id(), "nightly-1") << command[0];
    EXPECT_EQ(invocation.request.queue_timeout_seconds(), 3600u) << command[0];
    EXPECT_EQ(invocation.request.run_timeout_seconds(), 600u) << command[0];
  }
  const Invocation plain = Parse({"submit", "a fox"});
  EXPECT_TRUE(plain.request.request_id().empty());
  EXPECT_EQ(plain.request.queue_timeout_seconds(), 0u) << "unset: the scheduler's default";
}

TEST(CommandLineTest, NewFlagsAreUsageErrorsNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"jobs", "--state", "done"}, "--state: got 'done', expected queued, running, succeeded, failed or cancelled"},
      {{"jobs", "--state", "queued,"}, "--state: got '', expected queued"},
      {{"jobs", "--limit", "0"}, "--limit: got '0', expected a positive integer"},
      {{"jobs", "--limit", "-1"}, "--limit: got '-1', expected a non-negative integer"},
      {{"jobs", "extra"}, "jobs: takes no arguments, got 'extra'"},
      {{"jobs", "--frames", "17"}, "jobs does not take --frames"},
      {{"status", "abc", "--state", "queued"}, "status does not take --state"},
      {{"delete"}, "delete: expected one job id argument, got 0"},
      {{"delete", "a", "b"}, "delete: expected one job id argument, got 2"},
      {{"submit", "x", "--request-id", ""}, "--request-id: got an empty key, expected 1 to 128 bytes"},
      {{"submit", "x", "--queue-timeout", "soon"}, "--queue-timeout: got 'soon', expected a non-negative integer"},
      {{"watch", "abc", "--request-id", "k"}, "watch does not take --request-id"},
      {{"list"},
       "unknown command 'list', expected one of generate, submit, watch, status, cancel, delete, jobs, models"},
  };
  for (const Case& c : cases) {
    const auto parsed = ParseCommandLine(c.args, "localhost:50051");
    ASSERT_FALSE(parsed.ok()) << ::testing::PrintToString(c.args);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(parsed.status().message()).find(c.message), std::string::npos) << parsed.status().message();
  }
}

// ---------------------------------------------------------------------------------------------
// Integration: jobs, delete, cancel of an ended job, the attempt record of watch -o, request ids.
// Written while server/ was being rewritten; they use only the fixture above and the public API.
// ---------------------------------------------------------------------------------------------

// The id `submit` printed.
std::string SubmittedId(const RunResult& submit) { return submit.out.substr(0, submit.out.find('\n')); }

TEST_F(RadialctlTest, JobsListsNewestFirstWithFiltersAndLimit) {
  AddWorker("w1", [](FakeWorker&, const v1::Assign&) {});  // holds the first job: it stays running
  std::vector<std::string> ids;
  for (const char* prompt : {"first", "second", "third"}) {
    const RunResult submit = Run({"submit", prompt});
    ASSERT_EQ(submit.code, 0) << submit.err;
    ids.push_back(SubmittedId(submit));
  }
  ASSERT_TRUE(Eventually([&] { return Run({"status", ids[0]}).out.find("running") != std::string::npos; }));

  RunResult jobs = Run({"jobs"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_EQ(jobs.out.rfind("ID ", 0), 0u) << "a header first: " << jobs.out;
  for (const char* column : {"STATE", "MODEL", "SIZE", "STEPS", "CREATED (UTC)", "BYTES"}) {
    EXPECT_NE(jobs.out.find(column), std::string::npos) << jobs.out;
  }
  const size_t third = jobs.out.find(ids[2]), second = jobs.out.find(ids[1]), first = jobs.out.find(ids[0]);
  ASSERT_NE(first, std::string::npos) << jobs.out;
  EXPECT_LT(third, second) << "newest first: " << jobs.out;
  EXPECT_LT(second, first) << jobs.out;
  EXPECT_NE(jobs.out.find("128x128x17"), std::string::npos) << "the resolved size: " << jobs.out;
  EXPECT_TRUE(jobs.err.empty()) << jobs.err;

  jobs = Run({"jobs", "--state", "queued"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_EQ(jobs.out.find(ids[0]), std::string::npos) << "the running job is filtered out: " << jobs.out;
  EXPECT_NE(jobs.out.find(ids[1]), std::string::npos) << jobs.out;

  jobs = Run({"jobs", "--limit", "1"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_NE(jobs.out.find(ids[2]), std::string::npos) << jobs.out;
  EXPECT_EQ(jobs.out.find(ids[1]), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.err.find("showing the newest 1 job; there are more"), std::string::npos) << jobs.err;

  jobs = Run({"jobs", "--state", "running", "--json"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_EQ(jobs.out.rfind("{\"jobs\":[{\"id\":\"" + ids[0] + "\"", 0), 0u) << jobs.out;

  jobs = Run({"jobs", "--model", "nope"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_EQ(jobs.out, "no jobs match\n");
}

TEST_F(RadialctlTest, DeleteRemovesAJobAndCancelOfAnEndedJobNamesItsState) {
  AddWorker("w1", [](FakeWorker& worker, const v1::Assign& assign) {
    worker.Video(assign.job_id(), kVideo);
    worker.Done(assign.job_id());
  });
  const RunResult submit = Run({"submit", "x"});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string id = SubmittedId(submit);
  ASSERT_TRUE(Eventually([&] { return Run({"status", id}).out.find("succeeded") != std::string::npos; }));

  const RunResult cancel = Run({"cancel", id});
  EXPECT_EQ(cancel.code, 3) << "FAILED_PRECONDITION's exit code";
  EXPECT_EQ(cancel.err, "radialctl: job " + id + " had already ended (succeeded)\n");
  EXPECT_TRUE(cancel.out.empty()) << cancel.out;

  const RunResult deletion = Run({"delete", id});
  EXPECT_EQ(deletion.code, 0) << deletion.err;
  EXPECT_EQ(deletion.out, "job " + id + " deleted (succeeded, " + std::to_string(kVideo.size()) + " B of video)\n");
  const RunResult status = Run({"status", id});
  EXPECT_EQ(status.code, 3);
  EXPECT_NE(status.err.find("NOT_FOUND"), std::string::npos) << status.err;
  EXPECT_EQ(Run({"delete", id}).code, 3) << "a second delete: NOT_FOUND";
}

TEST_F(RadialctlTest, RequestIdReturnsTheFirstJobAndTimeoutsReachTheJob) {
  AddWorker("w1", [](FakeWorker&, const v1::Assign&) {});
  const RunResult first = Run({"submit", "x", "--request-id", "key-1", "--queue-timeout", "60", "--run-timeout", "90"});
  ASSERT_EQ(first.code, 0) << first.err;
  const RunResult again = Run({"submit", "x", "--request-id", "key-1"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(SubmittedId(again), SubmittedId(first)) << "the same key: the same job";
  const RunResult status = Run({"status", SubmittedId(first), "--json"});
  EXPECT_NE(status.out.find("\"request_id\":\"key-1\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"queue_timeout_seconds\":60"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"run_timeout_seconds\":90"), std::string::npos) << status.out;
}

TEST_F(RadialctlTest, GenerateKeepsTheAttemptNextToTheFileUntilTheJobEnds) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  AddWorker("w1", [released](FakeWorker& worker, const v1::Assign& assign) {
    worker.Chunk(assign.job_id(), 0, kVideo.substr(0, 10));
    released.wait();
    worker.Chunk(assign.job_id(), 10, kVideo.substr(10));
    worker.Done(assign.job_id());
  });
  const std::string path = Path("attempt.mp4");
  const std::string record = OutputFile::AttemptPath(path);
  LockedText err_text;
  std::ostream err(&err_text);
  std::ostringstream out;
  auto run = Start({"generate", "x", "-o", path}, out, err);
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(path) && std::filesystem::file_size(path) == 10; }));
  EXPECT_EQ(Read(record), "1\n") << "the first attempt's bytes";
  release.set_value();
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), 0) << err_text.Text();
  EXPECT_EQ(Read(path), kVideo);
  EXPECT_FALSE(std::filesystem::exists(record)) << "the job ended: nothing to resume";
}

TEST_F(RadialctlTest, WatchOfAFileFromAnOlderAttemptStartsOverWithTheCurrentOne) {
  // Different sizes of moov: the attempts differ from byte 24 on.
  const std::string first_attempt = radial::testing::FakeFmp4(17, 200).substr(0, 300);  // cut off by the loss
  const std::string second_attempt = radial::testing::FakeFmp4(17, 100);
  AddWorker("w1",
            [&](FakeWorker& worker, const v1::Assign& assign) { worker.Chunk(assign.job_id(), 0, first_attempt); });
  const RunResult submit = Run({"submit", "x"});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string id = SubmittedId(submit);
  // An earlier `watch -o` got the first attempt's bytes and recorded the attempt, then broke.
  const std::string path = Path("resume.mp4");
  ASSERT_TRUE(Eventually([&] {
    return Run({"status", id}).out.find("bytes     " + std::to_string(first_attempt.size())) != std::string::npos;
  }));
  WriteFile(path, first_attempt.substr(0, 40));
  WriteFile(OutputFile::AttemptPath(path), "1\n");
  // Its worker is lost; the job runs again on another.
  workers_.back()->Kill();
  ASSERT_TRUE(Eventually([&] { return server_->scheduler().connected_workers() == 0; }));
  FakeWorker second(channel_, "w2", [&](FakeWorker& worker, const v1::Assign& assign) {
    worker.Chunk(assign.job_id(), 0, second_attempt);
    worker.Done(assign.job_id());
  });
  ASSERT_TRUE(Eventually([&] { return Run({"status", id}).out.find("succeeded") != std::string::npos; }));

  const RunResult watch = Run({"watch", id, "-o", path});
  EXPECT_EQ(watch.code, 0) << watch.err;
  EXPECT_EQ(Read(path), second_attempt) << "not the first attempt's 40 bytes followed by the second's";
  EXPECT_NE(watch.err.find("restarted (attempt 2)"), std::string::npos) << watch.err;
  EXPECT_FALSE(std::filesystem::exists(OutputFile::AttemptPath(path)));

  // The same bytes recorded as the current attempt's are continued, not fetched again.
  WriteFile(path, second_attempt.substr(0, 9));
  WriteFile(OutputFile::AttemptPath(path), "2\n");
  const RunResult resumed = Run({"watch", id, "-o", path});
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(Read(path), second_attempt);
  EXPECT_NE(resumed.out.find(std::to_string(second_attempt.size() - 9) + " received now"), std::string::npos)
      << resumed.out;
}

// ---------------------------------------------------------------------------------------------
// Help of each command, --version, --server checks, no file for a job that sent no bytes, Ctrl-C.
// ---------------------------------------------------------------------------------------------

RunResult RunAlone(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = RunRadialctl(args, out, err, ClientEnvironment());
  return {code, out.str(), err.str()};
}

TEST(HelpTest, EveryCommandPrintsItsFlagsWithDefaultsAndRanges) {
  struct Case {
    std::string command;
    std::vector<std::string> has;    // flags the command takes, with their defaults and ranges
    std::vector<std::string> lacks;  // flags it does not take
  };
  const std::vector<std::string> connection = {"--server HOST:PORT", "port from 1 to 65535", "--token TOKEN",
                                               "--tls-ca FILE", "--tls-server-name NAME", "-h, --help"};
  const std::vector<Case> cases = {
      {"generate",
       {"usage: radialctl generate PROMPT -o FILE", "-o, --output PATH", "--keep-partial", "--frames N",
        "--priority P", "-10 to 10, higher runs first (default 0)", "--block 64|128", "--sink on|off",
        "--fragment-frames N", "1 to 1000", "--request-id KEY", "1 to 128 bytes", "--queue-timeout S",
        "1 to 604800", "exit 130"},
       {"--limit", "--from-offset", "--state", "--verbose", "--json"}},
      {"submit",
       {"usage: radialctl submit PROMPT", "--verbose", "--json", "--fragment-frames N", "--steps N"},
       {"--output", "--keep-partial", "--limit"}},
      {"watch",
       {"usage: radialctl watch JOB_ID", "-o, --output PATH", "--from-offset N", "--keep-partial"},
       {"--frames", "--json", "--state"}},
      {"status", {"usage: radialctl status JOB_ID", "--json"}, {"--frames", "--output", "--state"}},
      {"cancel", {"usage: radialctl cancel JOB_ID"}, {"--json", "--frames"}},
      {"delete", {"usage: radialctl delete JOB_ID", "--json"}, {"--frames", "--output"}},
      {"jobs",
       {"usage: radialctl jobs", "--state S", "queued, running, succeeded,", "--limit N",
        "(default 50)", "--model NAME", "only jobs of this model", "--json"},
       {"--frames", "--output"}},
      {"models", {"usage: radialctl models", "--json"}, {"--frames", "--state"}},
  };
  for (const Case& c : cases) {
    const RunResult help = RunAlone({c.command, "--help"});
    EXPECT_EQ(help.code, 0) << c.command << ": " << help.err;
    EXPECT_TRUE(help.err.empty()) << help.err;
    EXPECT_EQ(help.out.rfind("usage: radialctl " + c.command, 0), 0u) << help.out;
    for (const std::string& part : c.has) EXPECT_NE(help.out.find(part), std::string::npos) << part << "\n" << help.out;
    for (const std::string& part : connection) {
      EXPECT_NE(help.out.find(part), std::string::npos) << part << "\n" << help.out;
    }
    for (const std::string& flag : c.lacks) {
      EXPECT_EQ(help.out.find(flag + " "), std::string::npos) << c.command << " lists " << flag << "\n" << help.out;
    }
    std::istringstream lines(help.out);
    for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 80u) << line;
    // The same text however it is asked for, and wherever --help stands.
    EXPECT_EQ(RunAlone({"help", c.command}).out, help.out);
    EXPECT_EQ(RunAlone({c.command, "-h"}).out, help.out);
    EXPECT_EQ(RunAlone({"--server", "localhost:1", c.command, "extra", "--help"}).out, help.out);
  }
}

TEST(HelpTest, OverviewListsTheCommandsAndVersionComesFromTheBuild) {
  const RunResult overview = RunAlone({"--help"});
  EXPECT_EQ(overview.code, 0);
  for (const char* command : {"generate", "submit", "watch", "status", "cancel", "delete", "jobs", "models"}) {
    EXPECT_NE(overview.out.find(std::string("\n  ") + command + " "), std::string::npos) << command;
  }
  EXPECT_NE(overview.out.find("radialctl COMMAND --help"), std::string::npos) << overview.out;
  EXPECT_NE(overview.out.find("130 interrupted"), std::string::npos) << overview.out;
  EXPECT_EQ(RunAlone({"help"}).out, overview.out);

  const RunResult unknown = RunAlone({"help", "render"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("help: got 'render'"), std::string::npos) << unknown.err;

  const RunResult version = RunAlone({"--version"});
  EXPECT_EQ(version.code, 0) << version.err;
  EXPECT_EQ(version.out, VersionText());
  ASSERT_EQ(version.out.rfind("radialctl ", 0), 0u) << version.out;
  EXPECT_GT(version.out.size(), std::string("radialctl \n").size()) << "names a version: " << version.out;
  EXPECT_EQ(version.out.find('\n'), version.out.size() - 1) << "one line: " << version.out;
}

TEST(CommandLineTest, ServerMustBeHostAndPort) {
  struct Case {
    std::string server;
    std::string message;
  };
  const std::string expected = "expected HOST:PORT with a port from 1 to 65535";
  const std::vector<Case> bad = {
      {"", "--server: got an empty address, " + expected},
      {"localhost", "--server: got 'localhost', " + expected + " (e.g. localhost:50051): no port"},
      {"localhost:0", "the port is out of range"},
      {"localhost:65536", "the port is out of range"},
      {"localhost:123456789012345678901234567890", "the port is out of range"},
      {"localhost:http", "the port is not a number"},
      {"localhost:-1", "the port is not a number"},
      {"localhost:", "no port after the ':'"},
      {":50051", "no host before the ':'"},
      {"sched uler:50051", "a host name holds only letters, digits"},
      {"host;rm -rf:1", "a host name holds only letters, digits"},
      {"::1:50051", "an IPv6 address goes in brackets"},
      {"[::1]", "no ':PORT' after the ']'"},
      {"[::1:50051", "no ']' after the IPv6 address"},
      {"[zz]:1", "hexadecimal digits"},
  };
  for (const Case& c : bad) {
    const auto parsed = ParseCommandLine({"--server", c.server, "models"}, "localhost:50051");
    ASSERT_FALSE(parsed.ok()) << c.server;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(parsed.status().message()).find(c.message), std::string::npos) << parsed.status().message();
    EXPECT_EQ(std::string(parsed.status().message()).rfind("--server: ", 0), 0u) << parsed.status().message();
  }
  EXPECT_FALSE(ParseCommandLine({"--server=", "models"}, "localhost:50051").ok());
  for (const char* good : {"localhost:50051", "127.0.0.1:1", "[::1]:65535", "sched-1.example_x.internal:443"}) {
    const auto parsed = ParseCommandLine({"--server", good, "models"}, "localhost:50051");
    ASSERT_TRUE(parsed.ok()) << good << ": " << parsed.status();
    EXPECT_EQ(parsed->server, good);
    EXPECT_TRUE(parsed->server_given);
  }
  // RADIAL_SERVER is the default; wrong there, the message names it.
  const auto from_variable = ParseCommandLine({"models"}, "scheduler");
  ASSERT_FALSE(from_variable.ok());
  EXPECT_EQ(std::string(from_variable.status().message()).rfind("RADIAL_SERVER: got 'scheduler'", 0), 0u)
      << from_variable.status().message();
  EXPECT_TRUE(ParseCommandLine({"--server", "localhost:1", "models"}, "scheduler").ok()) << "the flag wins";
}

TEST_F(RadialctlTest, BadServerIsAUsageErrorBeforeAnythingIsWritten) {
  const std::string path = Path("bad-server.mp4");
  for (const char* server : {"localhost:99999", "nohost", "", "bad host:1"}) {
    const RunResult result = Run({"--server", server, "generate", "x", "-o", path});
    EXPECT_EQ(result.code, 2) << server << ": " << result.err;
    EXPECT_NE(result.err.find("radialctl: --server: got "), std::string::npos) << result.err;
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  environment_.default_server = "scheduler.example";
  const RunResult result = Run({"jobs"});
  EXPECT_EQ(result.code, 2);
  EXPECT_NE(result.err.find("RADIAL_SERVER: got 'scheduler.example', expected HOST:PORT"), std::string::npos)
      << result.err;
}

TEST_F(RadialctlTest, NoFileIsLeftOrTouchedWhenNoVideoCame) {
  AddWorker("w1", [](FakeWorker& worker, const v1::Assign& assign) {
    worker.Failed(assign.job_id(), 13, "out of memory before the first frame");
  });
  const std::string unknown = "0123456789abcdef";
  const std::string fresh = Path("fresh.mp4");
  RunResult result = Run({"watch", unknown, "-o", fresh});
  EXPECT_EQ(result.code, 3) << result.err;
  EXPECT_NE(result.err.find("NOT_FOUND"), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(fresh)) << "watch of an unknown job creates no file";
  EXPECT_FALSE(std::filesystem::exists(OutputFile::AttemptPath(fresh)));

  // An earlier file (and its record) of that name is left exactly as it was.
  const std::string earlier = Path("earlier.mp4");
  WriteFile(earlier, "an earlier video");
  WriteFile(OutputFile::AttemptPath(earlier), "1\n");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"watch", unknown, "-o", earlier, "--from-offset", "0"},
           {"watch", unknown, "-o", earlier},
           {"generate", "x", "--width", "100", "-o", earlier},  // rejected
           {"generate", "x", "-o", earlier},                    // fails before its first byte
       }) {
    result = Run(args);
    EXPECT_NE(result.code, 0) << ::testing::PrintToString(args);
    EXPECT_EQ(Read(earlier), "an earlier video") << ::testing::PrintToString(args) << "\n" << result.err;
    EXPECT_EQ(Read(OutputFile::AttemptPath(earlier)), "1\n") << ::testing::PrintToString(args);
  }

  // --keep-partial keeps a partial file, but with no bytes there is nothing to keep.
  result = Run({"generate", "x", "--width", "100", "-o", fresh, "--keep-partial"});
  EXPECT_EQ(result.code, 3) << result.err;
  EXPECT_FALSE(std::filesystem::exists(fresh));
  result = Run({"generate", "x", "-o", fresh, "--keep-partial"});
  EXPECT_EQ(result.code, 4) << result.err;
  EXPECT_FALSE(std::filesystem::exists(fresh));
  EXPECT_FALSE(std::filesystem::exists(OutputFile::AttemptPath(fresh)));
}

TEST(CommandLineTest, FollowUpCommandRepeatsTheConnectionFlagsButNeverTheToken) {
  const Invocation given = Parse({"--server", "sched.example:443", "--token", "s3cret-token", "--tls-ca",
                                  "/etc/radial ca/ca.pem", "generate", "x", "-o", "it's here.mp4"});
  const std::string command = FollowUpCommand(given, {"watch", "abc123", "-o", given.output_path});
  EXPECT_EQ(command,
            "radialctl watch abc123 -o 'it'\\''s here.mp4' --server sched.example:443 --tls-ca '/etc/radial ca/ca.pem'");
  EXPECT_EQ(command.find("s3cret"), std::string::npos);
  // Defaults (RADIAL_SERVER, RADIAL_TLS_CA) still apply to the follow-up: not repeated.
  const Invocation defaults = Parse({"generate", "x", "-o", "out.mp4"});
  EXPECT_EQ(FollowUpCommand(defaults, {"watch", "abc123", "-o", "out.mp4"}), "radialctl watch abc123 -o out.mp4");
  EXPECT_EQ(FollowUpCommand(Parse({"--server", "[::1]:5", "jobs"}), {"jobs"}), "radialctl jobs --server '[::1]:5'");
}

// Ctrl-C played by the test.
class ManualInterrupt : public InterruptHook {
 public:
  void Arm(std::function<void()> callback) override {
    std::lock_guard<std::mutex> lock(mutex_);
    callback_ = std::move(callback);
  }
  void Disarm() override {
    std::lock_guard<std::mutex> lock(mutex_);
    callback_ = nullptr;
  }
  bool armed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return callback_ != nullptr;
  }
  void Fire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (callback_) std::exchange(callback_, nullptr)();
  }

 private:
  std::mutex mutex_;
  std::function<void()> callback_;
};

// The job id in "resume with: radialctl watch ID ...".
std::string ResumedId(const std::string& err) {
  const std::string marker = "resume with: radialctl watch ";
  const size_t start = err.find(marker);
  if (start == std::string::npos) return "";
  const size_t begin = start + marker.size();
  return err.substr(begin, err.find(' ', begin) - begin);
}

// A worker that sends the video's first 10 bytes, then the rest once `released` (or 20 s passed).
FakeWorker::Script FirstBytesThenWait(std::shared_future<void> released) {
  return [released](FakeWorker& worker, const v1::Assign& assign) {
    worker.Chunk(assign.job_id(), 0, kVideo.substr(0, 10));
    released.wait_for(20s);
    worker.Chunk(assign.job_id(), 10, kVideo.substr(10));
    worker.Done(assign.job_id());
  };
}

TEST_F(RadialctlTest, InterruptedGenerateAndWatchKeepTheFileAndSayHowToResume) {
  std::promise<void> release;
  AddWorker("w1", FirstBytesThenWait(release.get_future().share()));
  ManualInterrupt interrupt;
  environment_.interrupt = &interrupt;
  const std::string path = Path("interrupted.mp4");
  LockedText err_text;
  std::ostream err(&err_text);
  std::ostringstream out;
  auto run = Start({"generate", "x", "-o", path}, out, err);
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(path) && std::filesystem::file_size(path) == 10; }));
  ASSERT_TRUE(interrupt.armed());
  interrupt.Fire();
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), kExitInterrupted) << err_text.Text();
  const std::string text = err_text.Text();
  const std::string id = ResumedId(text);
  ASSERT_FALSE(id.empty()) << text;
  EXPECT_NE(text.find("radialctl: interrupted; job " + id + " goes on running on the server\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("resume with: radialctl watch " + id + " -o " + path + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find("stop it with: radialctl cancel " + id + "\n"), std::string::npos) << text;
  EXPECT_FALSE(interrupt.armed()) << "disarmed once the call ended";
  EXPECT_EQ(Read(path), kVideo.substr(0, 10)) << "the partial file stays for the resume";
  EXPECT_EQ(Read(OutputFile::AttemptPath(path)), "1\n");
  EXPECT_NE(Run({"status", id}).out.find("running"), std::string::npos) << "the job is not cancelled";

  // An interrupted watch keeps the file too, and says the same.
  LockedText watch_err_text;
  std::ostream watch_err(&watch_err_text);
  auto watch = Start({"watch", id, "-o", path}, out, watch_err);
  ASSERT_TRUE(Eventually([&] { return watch_err_text.Contains("watching job " + id); }));
  ASSERT_TRUE(interrupt.armed());
  interrupt.Fire();
  ASSERT_EQ(watch.wait_for(kRunTimeout), std::future_status::ready) << watch_err_text.Text();
  EXPECT_EQ(watch.get(), kExitInterrupted) << watch_err_text.Text();
  EXPECT_EQ(ResumedId(watch_err_text.Text()), id) << watch_err_text.Text();
  EXPECT_EQ(Read(path), kVideo.substr(0, 10));

  // The printed command finishes the file.
  release.set_value();
  const RunResult resumed = Run({"watch", id, "-o", path});
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(Read(path), kVideo);
  EXPECT_FALSE(std::filesystem::exists(OutputFile::AttemptPath(path)));
}

TEST_F(RadialctlTest, InterruptedGenerateOverAnEarlierFileResumesFromByteZero) {
  std::promise<void> accepted;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  AddWorker("w1", [&accepted, released](FakeWorker& worker, const v1::Assign& assign) {
    accepted.set_value();
    released.wait_for(20s);
    worker.Video(assign.job_id(), kVideo);
    worker.Done(assign.job_id());
  });
  ManualInterrupt interrupt;
  environment_.interrupt = &interrupt;
  const std::string path = Path("earlier.mp4");
  WriteFile(path, "an earlier video");
  LockedText err_text;
  std::ostream err(&err_text);
  std::ostringstream out;
  auto run = Start({"generate", "x", "-o", path}, out, err);
  ASSERT_EQ(accepted.get_future().wait_for(kRunTimeout), std::future_status::ready);
  ASSERT_TRUE(Eventually([&] { return err_text.Contains(" accepted"); }));
  interrupt.Fire();
  ASSERT_EQ(run.wait_for(kRunTimeout), std::future_status::ready) << err_text.Text();
  EXPECT_EQ(run.get(), kExitInterrupted);
  EXPECT_EQ(Read(path), "an earlier video") << "no byte of the job came: the file is untouched";
  const std::string id = ResumedId(err_text.Text());
  // Continuing the earlier file would glue the job's bytes onto another video.
  EXPECT_NE(err_text.Text().find("radialctl watch " + id + " -o " + path + " --from-offset 0\n"), std::string::npos)
      << err_text.Text();
  release.set_value();
  const RunResult resumed = Run({"watch", id, "-o", path, "--from-offset", "0"});
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(Read(path), kVideo);
}

// The radialctl binary: $RADIAL_RADIALCTL_BIN, else next to this test in the build tree
// (build/tests/radialctl_test -> build/client/radialctl). Empty when there is none.
std::string RadialctlBinary() {
  if (const std::string set = radial::testing::Env("RADIAL_RADIALCTL_BIN"); !set.empty()) return set;
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  const std::filesystem::path binary = self.parent_path().parent_path() / "client" / "radialctl";
  return ::access(binary.c_str(), X_OK) == 0 ? binary.string() : "";
}

TEST_F(RadialctlTest, CtrlCOfTheBinaryDuringGenerateExits130AndPrintsTheResumeCommand) {
  const std::string binary = RadialctlBinary();
  if (binary.empty()) GTEST_SKIP() << "no radialctl binary (build the radialctl target)";
  std::promise<void> release;
  AddWorker("w1", FirstBytesThenWait(release.get_future().share()));
  const std::string path = Path("ctrl-c.mp4");
  const std::filesystem::path log = dir_ / "radialctl.log";
  // The child inherits an ignored SIGINT (a test run in the background), and would keep ignoring it.
  struct sigaction default_action {}, previous {};
  default_action.sa_handler = SIG_DFL;
  ::sigaction(SIGINT, &default_action, &previous);
  radial::testing::ChildProcess child(
      {binary, "--server", address_, "--token", "s3cret-token", "generate", "a fox", "-o", path}, log);
  ::sigaction(SIGINT, &previous, nullptr);
  ASSERT_TRUE(child.running());
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(path) && std::filesystem::file_size(path) == 10; }))
      << radial::testing::ReadFile(log);
  child.Signal(SIGINT);
  const std::optional<int> status = child.Wait(10s);
  ASSERT_TRUE(status.has_value()) << radial::testing::ReadFile(log);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitInterrupted)
      << radial::testing::DescribeWaitStatus(*status) << "\n"
      << radial::testing::ReadFile(log);
  const std::string text = radial::testing::ReadFile(log);
  const std::string id = ResumedId(text);
  ASSERT_FALSE(id.empty()) << text;
  EXPECT_NE(text.find("resume with: radialctl watch " + id + " -o " + path + " --server " + address_ + "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("RADIAL_TOKEN (preferred) or --token"), std::string::npos) << text;
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << "the token is never printed: " << text;
  EXPECT_EQ(Read(path), kVideo.substr(0, 10));

  release.set_value();
  const RunResult resumed = Run({"watch", id, "-o", path});
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(Read(path), kVideo);
}

// The progress display on its own, fed the events a job sends with a test clock.
class ProgressDisplayTest : public ::testing::Test {
 protected:
  ProgressDisplay Display(bool terminal) {
    return ProgressDisplay(err_, terminal, [this] { return now_; });
  }
  static v1::Progress At(v1::Stage stage, uint32_t step, uint32_t total) {
    v1::Progress progress;
    progress.set_stage(stage);
    progress.set_step(step);
    progress.set_total(total);
    return progress;
  }
  // The terminal line as it was after each redraw.
  std::vector<std::string> Redraws() const {
    std::vector<std::string> lines;
    const std::string text = err_.str();
    const std::string clear = "\r\033[K";
    for (size_t at = text.find(clear); at != std::string::npos;) {
      const size_t next = text.find(clear, at + clear.size());
      std::string line = text.substr(at + clear.size(), next == std::string::npos ? next : next - at - clear.size());
      if (!line.empty() && line.back() == '\n') line.pop_back();
      if (!line.empty()) lines.push_back(line);
      at = next;
    }
    return lines;
  }
  // The bar's percentage on a redrawn line; -1 without a bar.
  static int Percent(const std::string& line) {
    const size_t end = line.find("%");
    if (end == std::string::npos) return -1;
    const size_t start = line.rfind(' ', end);
    return std::stoi(line.substr(start + 1, end - start - 1));
  }
  // The ETA in seconds; -1 for "--:--", -2 without one.
  static int Eta(const std::string& line) {
    const size_t at = line.find("ETA ");
    if (at == std::string::npos) return -2;
    const std::string eta = line.substr(at + 4);
    if (eta == "--:--") return -1;
    return std::stoi(eta.substr(0, eta.find(':'))) * 60 + std::stoi(eta.substr(eta.find(':') + 1));
  }

  std::ostringstream err_;
  Clock::time_point now_ = Clock::time_point() + 1h;
};

TEST_F(ProgressDisplayTest, BarCoversDenoisingDecodingAndMuxingAndIsFullOnlyAtTheEnd) {
  ProgressDisplay display = Display(true);
  display.Accepted("j", 0);
  for (uint32_t step = 1; step <= 8; ++step) display.Progress(At(v1::STAGE_DENOISING, step, 8));
  for (uint32_t frames = 0; frames <= 81; frames += 9) display.Progress(At(v1::STAGE_DECODING, frames, 81));
  display.Bytes(2 << 20);
  for (uint32_t frames : {60, 81}) display.Progress(At(v1::STAGE_MUXING, frames, 81));
  display.Finish();

  const std::vector<std::string> lines = Redraws();
  int before = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const int percent = Percent(lines[i]);
    if (percent < 0) continue;
    EXPECT_GE(percent, before) << "the bar never goes back: " << lines[i];
    if (lines[i].find("muxing        81/81 frames") == std::string::npos) {
      EXPECT_LT(percent, 100) << lines[i];
      EXPECT_EQ(lines[i].find("[########################]"), std::string::npos) << lines[i];
    }
    before = percent;
  }
  EXPECT_EQ(before, 100);
  const std::string text = err_.str();
  EXPECT_NE(text.find("denoising     8/8 steps [###################.....] 80%"), std::string::npos) << text;
  EXPECT_NE(text.find("decoding      36/81 frames [####################....] 86%"), std::string::npos) << text;
  EXPECT_NE(text.find("decoding      81/81 frames [######################..] 95%"), std::string::npos) << text;
  EXPECT_NE(text.find("muxing        81/81 frames [########################] 100%  2.0 MiB  ETA 0:00"),
            std::string::npos)
      << text;
}

TEST_F(ProgressDisplayTest, JobFractionEndsAtOneOnlyAfterTheLastMuxedFrame) {
  EXPECT_EQ(JobFraction(At(v1::STAGE_ENCODING_TEXT, 0, 0)), 0);
  EXPECT_DOUBLE_EQ(JobFraction(At(v1::STAGE_DENOISING, 4, 8)), 0.4);
  EXPECT_DOUBLE_EQ(JobFraction(At(v1::STAGE_DENOISING, 8, 8)), 0.8);
  EXPECT_DOUBLE_EQ(JobFraction(At(v1::STAGE_DECODING, 0, 81)), 0.8);
  EXPECT_LT(JobFraction(At(v1::STAGE_DECODING, 81, 81)), 1);
  EXPECT_LT(JobFraction(At(v1::STAGE_MUXING, 80, 81)), 1);
  EXPECT_EQ(JobFraction(At(v1::STAGE_MUXING, 81, 81)), 1);
  EXPECT_EQ(JobFraction(At(v1::STAGE_MUXING, 90, 81)), 1) << "a count past the total is the total";
}

TEST_F(ProgressDisplayTest, PlainLinesCountStepsWhileDenoisingAndFramesWhileDecodingAndMuxing) {
  ProgressDisplay display = Display(false);
  display.Accepted("j", 0);
  display.Progress(At(v1::STAGE_ENCODING_TEXT, 0, 0));
  display.Progress(At(v1::STAGE_DENOISING, 3, 8));
  display.Progress(At(v1::STAGE_DECODING, 0, 81));
  display.Progress(At(v1::STAGE_DECODING, 40, 81));
  display.Progress(At(v1::STAGE_DECODING, 40, 81));  // repeated: not printed again
  display.Progress(At(v1::STAGE_MUXING, 81, 81));
  display.Bytes(1000);
  display.Finish();
  EXPECT_EQ(err_.str(),
            "job j accepted\n"
            "job j encoding text\n"
            "job j denoising step 3/8\n"
            "job j decoding 0/81 frames\n"
            "job j decoding 40/81 frames\n"
            "job j muxing 81/81 frames\n");
}

// A 100 s job as the bar's shares assume it: 8 steps of 10 s (80%), 81 frames decoded in 15 s,
// muxed in 5 s. The ETA is there at every stage and counts down to 0.
TEST_F(ProgressDisplayTest, EtaIsShownAtEveryStageAndFallsWithSteadyProgress) {
  ProgressDisplay display = Display(true);
  display.Accepted("j", 0);
  const Clock::time_point start = now_;
  const auto at = [&](double seconds) {
    now_ = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  std::vector<int> etas;
  const auto seen = [&] { etas.push_back(Eta(Redraws().back())); };
  for (uint32_t step = 1; step <= 8; ++step) {
    at(10.0 * step);
    display.Progress(At(v1::STAGE_DENOISING, step, 8));
    seen();
  }
  for (uint32_t frames : {0, 27, 54, 81}) {
    at(80 + 15.0 * frames / 81);
    display.Progress(At(v1::STAGE_DECODING, frames, 81));
    seen();
    if (frames == 27) {  // a chunk between two progress values: the ETA counts down
      at(87);
      display.Bytes(4096);
      seen();
    }
  }
  at(97.5);
  display.Progress(At(v1::STAGE_MUXING, 40, 81));  // the encoder ran beside the decode
  seen();
  at(100);
  display.Progress(At(v1::STAGE_MUXING, 81, 81));
  seen();

  EXPECT_EQ(etas.front(), -1) << "one step gives no rate yet: --:--";
  // Denoising steps 1..8; decoding 0 (at the denoising pace), 27, a chunk, 54, 81; muxing 40, 81.
  const std::vector<int> expected = {-1, 80, 70, 60, 50, 40, 30, 20, 20, 15, 13, 10, 5, 3, 0};
  EXPECT_EQ(etas, expected);
}

// A watcher is sent the latest progress, not every value: steps, a stage's first value or a whole
// stage may be missing, and a watch may start in the middle of a stage.
TEST_F(ProgressDisplayTest, SkippedProgressValuesKeepTheBarAndEtaSane) {
  ProgressDisplay display = Display(true);
  display.set_watching(true);
  display.Accepted("j", 0);
  for (uint32_t step : {1, 2, 5, 8}) {
    now_ += 10s;
    display.Progress(At(v1::STAGE_DENOISING, step, 8));
  }
  now_ += 10s;
  display.Progress(At(v1::STAGE_DECODING, 40, 81));  // 0/81 skipped
  EXPECT_GT(Eta(Redraws().back()), 0) << Redraws().back();
  now_ += 10s;
  display.Progress(At(v1::STAGE_DECODING, 80, 81));
  EXPECT_GT(Eta(Redraws().back()), 0) << Redraws().back();
  EXPECT_EQ(Percent(Redraws().back()), 94);
  display.Completed();  // muxing skipped entirely
  display.Finish();
  const std::string last = Redraws().back();
  EXPECT_NE(last.find("done"), std::string::npos) << last;
  EXPECT_EQ(Percent(last), 100) << last;

  err_.str("");
  ProgressDisplay joined = Display(true);
  joined.set_watching(true);
  joined.Accepted("j", 0);
  joined.Progress(At(v1::STAGE_DECODING, 30, 81));  // the watch started mid-decode: no pace yet
  EXPECT_EQ(Eta(Redraws().back()), -1) << Redraws().back();
  now_ += 10s;
  joined.Progress(At(v1::STAGE_DECODING, 57, 81));
  EXPECT_EQ(Eta(Redraws().back()), 19) << "24 frames at 2.7/s (8.9 s), then muxing at that pace (10 s): "
                                       << Redraws().back();
}

}  // namespace
}  // namespace radial::client
