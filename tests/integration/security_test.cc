// Security of the real processes: a radial-scheduler started with tokens (--tokens, --worker-tokens),
// TLS (--tls-cert/--tls-key) and mutual TLS for workers (--worker-tls-ca), against real gRPC
// clients, the radialctl binary, fake workers in this process and real radial-worker processes.
// Certificates are made at test time with the openssl command line: a CA, a server certificate for
// 127.0.0.1 and localhost, a worker's client certificate, a second unrelated CA with a client
// certificate of its own, and an expired server certificate (openssl ca -startdate/-enddate: the
// x509 command of OpenSSL 3.0 cannot set a start date). Binaries and bundle come from the
// environment (RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN, RADIAL_RADIALCTL_BIN, RADIAL_TEST_BUNDLE;
// set by ctest). Every wait has a deadline.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "radial/v1/video_service.grpc.pb.h"
#include "radial/v1/worker_service.grpc.pb.h"
#include "tests/integration/process.h"
#include "tests/server/fake_fmp4.h"
#include "tests/server/tiny_model_info.h"

namespace radial {
namespace {

namespace fs = std::filesystem;
using radial::testing::ChildProcess;
using radial::testing::Env;
using radial::testing::ReadFile;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = seconds(20);
constexpr auto kRpcTimeout = seconds(10);
constexpr auto kToolTimeout = seconds(30);
// A real worker loads the tiny bundle in well under a second; a busy 2-core machine is slower.
constexpr auto kWorkerTimeout = seconds(60);

// Tokens of the tests: distinctive, so that a log line quoting one can be found.
constexpr char kTokenA[] = "ta-3b9d1e7f5c2a";
constexpr char kTokenB[] = "tb-8e2a6c4d0f1b";
constexpr char kTokenAdmin[] = "tadm-5f1c9e3b7a";
constexpr char kTokenC[] = "tc-2d7b4f8a1e6c";  // added by the SIGHUP test
constexpr char kTokenWrong[] = "tx-0000000000";
constexpr char kWorkerToken[] = "tw-9a4e2c7f3b5d";

std::chrono::system_clock::time_point DeadlineIn(milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

// Computed here, not with the scheduler's own function, so that the two are checked against each
// other.
std::string Sha256Hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

std::string Hex64(uint64_t value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) hex[i] = kHex[value & 0xf];
  return hex;
}

// The command line that runs `args` with the RADIAL_* variables of this process removed and `env`
// set, through env(1), which execs in place: the ChildProcess's pid is the program's.
std::vector<std::string> WithEnvironment(const std::vector<std::string>& args,
                                         const std::map<std::string, std::string>& env) {
  std::vector<std::string> line = {"/usr/bin/env"};
  for (const char* name :
       {"RADIAL_TOKEN", "RADIAL_TLS_CA", "RADIAL_SERVER", "RADIAL_WORKER_TOKEN", "RADIAL_LISTEN", "RADIAL_DATA_DIR"}) {
    line.push_back("-u");
    line.push_back(name);
  }
  for (const auto& [name, value] : env) line.push_back(name + "=" + value);
  line.insert(line.end(), args.begin(), args.end());
  return line;
}

// A program run to its end: its exit code (-1: it did not exit in time, or by a signal) and what
// it printed on stdout and stderr.
struct Ran {
  int exit_code = -1;
  std::string output;
};

Ran RunToEnd(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& log,
             milliseconds timeout = kToolTimeout) {
  fs::remove(log);
  ChildProcess process(WithEnvironment(args, env), log);
  Ran ran;
  if (const std::optional<int> status = process.Wait(timeout); status && WIFEXITED(*status)) {
    ran.exit_code = WEXITSTATUS(*status);
  }
  ran.output = ReadFile(log);
  return ran;
}

// TLS settings of a channel; an empty ca means plaintext.
struct Tls {
  std::string ca;           // PEM file the server's certificate must chain to
  std::string cert, key;    // client certificate (mutual TLS)
  std::string server_name;  // overrides the name checked in the server's certificate
};

// A channel of its own (no subchannel shared with another test's channel or credentials) that
// retries a connection quickly.
std::shared_ptr<grpc::Channel> Channel(int port, const Tls& tls = {}) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!tls.ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(tls.ca);
    if (!tls.cert.empty()) {
      ssl.pem_cert_chain = ReadFile(tls.cert);
      ssl.pem_private_key = ReadFile(tls.key);
    }
    credentials = grpc::SslCredentials(ssl);
    if (!tls.server_name.empty()) arguments.SetSslTargetNameOverride(tls.server_name);
  }
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), credentials, arguments);
}

// One Watch call, read by the caller.
class WatchStream {
 public:
  WatchStream(v1::VideoService::Stub& stub, const std::string& token, const std::string& job_id, milliseconds timeout) {
    if (!token.empty()) context_.AddMetadata("authorization", std::string("Bearer ") + token);
    context_.set_deadline(DeadlineIn(timeout));
    v1::WatchRequest request;
    request.set_job_id(job_id);
    reader_ = stub.Watch(&context_, request);
  }
  bool Next(v1::JobEvent& event) { return reader_->Read(&event); }
  // Reads to the end; the events it read and the call's status.
  grpc::Status ReadToEnd(std::vector<v1::JobEvent>* events = nullptr) {
    v1::JobEvent event;
    while (reader_->Read(&event)) {
      if (events != nullptr) events->push_back(event);
    }
    return reader_->Finish();
  }
  void Cancel() { context_.TryCancel(); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader_;
};

// VideoService calls as one caller: every call carries `token` (none when empty).
class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, std::string token)
      : channel_(std::move(channel)), stub_(v1::VideoService::NewStub(channel_)), token_(std::move(token)) {}

  grpc::Status Submit(const v1::GenerateRequest& request, v1::Job* job = nullptr) {
    v1::Job ignored;
    return Call(&v1::VideoService::Stub::Submit, request, job != nullptr ? job : &ignored);
  }
  grpc::Status GetJob(const std::string& id, v1::Job* job = nullptr) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job ignored;
    return Call(&v1::VideoService::Stub::GetJob, request, job != nullptr ? job : &ignored);
  }
  grpc::Status Cancel(const std::string& id, v1::Job* job = nullptr) {
    v1::CancelJobRequest request;
    request.set_job_id(id);
    v1::Job ignored;
    return Call(&v1::VideoService::Stub::CancelJob, request, job != nullptr ? job : &ignored);
  }
  grpc::Status Delete(const std::string& id, v1::Job* job = nullptr) {
    v1::DeleteJobRequest request;
    request.set_job_id(id);
    v1::Job ignored;
    return Call(&v1::VideoService::Stub::DeleteJob, request, job != nullptr ? job : &ignored);
  }
  grpc::Status ListJobs(v1::ListJobsResponse* jobs) {
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    return Call(&v1::VideoService::Stub::ListJobs, request, jobs);
  }
  grpc::Status ListModels(v1::ListModelsResponse* models) {
    return Call(&v1::VideoService::Stub::ListModels, v1::ListModelsRequest(), models);
  }
  // The ids ListJobs returns, or the call's error as the only element.
  std::set<std::string> JobIds() {
    v1::ListJobsResponse jobs;
    const grpc::Status status = ListJobs(&jobs);
    if (!status.ok()) return {"error: " + status.error_message()};
    std::set<std::string> ids;
    for (const v1::Job& job : jobs.jobs()) ids.insert(job.id());
    return ids;
  }
  std::unique_ptr<WatchStream> Watch(const std::string& job_id, milliseconds timeout = kRpcTimeout) {
    return std::make_unique<WatchStream>(*stub_, token_, job_id, timeout);
  }
  // Waits until the channel is connected; false when it is not within `timeout`.
  bool AwaitConnected(milliseconds timeout = kRpcTimeout) { return channel_->WaitForConnected(DeadlineIn(timeout)); }

 private:
  template <typename Method, typename Request, typename Response>
  grpc::Status Call(Method method, const Request& request, Response* response) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRpcTimeout));
    if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
    return ((*stub_).*method)(&context, request, response);
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VideoService::Stub> stub_;
  const std::string token_;
};

// A worker as the scheduler sees it, without a model behind it: Hello with `model` (the tiny
// model's limits) and capacity 1, then it records every Assign. A held job is completed (a video
// that passes the scheduler's check and Done with the request's frames) only once Release() is
// called; from then on every job at once. With `drain` it sends Draining after the Hello, so the
// scheduler keeps its model listed but assigns it nothing. No heartbeats: tests end well within
// the scheduler's worker timeout.
class FakeWorker {
 public:
  struct Options {
    std::string id = "fake-worker";
    std::string token;  // sent as the worker token; empty: none
    v1::ModelInfo model = radial::testing::TinyModelInfo();
    bool drain = false;
  };
  static Options Draining() {
    Options options;
    options.drain = true;
    return options;
  }
  static Options WithToken(std::string id, std::string token) {
    Options options;
    options.id = std::move(id);
    options.token = std::move(token);
    return options;
  }

  FakeWorker(const std::shared_ptr<grpc::Channel>& channel, Options options)
      : stub_(v1::WorkerService::NewStub(channel)) {
    if (!options.token.empty()) context_.AddMetadata("authorization", "Bearer " + options.token);
    stream_ = stub_->Connect(&context_);
    v1::WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(options.id);
    hello.mutable_hello()->set_capacity(1);
    hello.mutable_hello()->set_device("none (test)");
    *hello.mutable_hello()->add_models() = options.model;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stream_->Write(hello) && options.drain) {
        v1::WorkerMessage draining;
        draining.mutable_draining()->set_grace_seconds(3600);
        stream_->Write(draining);
      }
    }
    reader_ = std::thread([this] { Read(); });
  }
  ~FakeWorker() {
    context_.TryCancel();
    reader_.join();
  }

  // Completes the jobs held so far, in the order they came, and every later one as it comes.
  void Release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    while (!held_.empty()) {
      CompleteLocked(held_.front());
      held_.pop_front();
    }
  }

  // The job ids assigned so far, in order.
  std::vector<std::string> assigned() {
    std::lock_guard<std::mutex> lock(mutex_);
    return assigned_;
  }
  bool AwaitAssigned(size_t count, milliseconds timeout = kRpcTimeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return assigned_.size() >= count || end_.has_value(); }) &&
           assigned_.size() >= count;
  }
  // How the scheduler ended the stream, or nullopt while it is open after `timeout`.
  std::optional<grpc::Status> AwaitEnd(milliseconds timeout = kRpcTimeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return end_.has_value(); });
    return end_;
  }

 private:
  void Read() {
    v1::SchedulerMessage message;
    while (stream_->Read(&message)) {
      if (!message.has_assign()) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      assigned_.push_back(message.assign().job_id());
      if (released_) {
        CompleteLocked(message.assign());
      } else {
        held_.push_back(message.assign());
      }
      changed_.notify_all();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      reading_done_ = true;  // no write starts after this: Finish may run
    }
    const grpc::Status status = stream_->Finish();
    std::lock_guard<std::mutex> lock(mutex_);
    end_ = status;
    changed_.notify_all();
  }

  void CompleteLocked(const v1::Assign& assign) {
    if (reading_done_) return;
    const uint32_t frames = assign.request().frames();
    v1::WorkerMessage chunk;
    chunk.mutable_chunk()->set_job_id(assign.job_id());
    chunk.mutable_chunk()->mutable_chunk()->set_offset(0);
    chunk.mutable_chunk()->mutable_chunk()->set_data(radial::testing::FakeFmp4(frames));
    v1::WorkerMessage done;
    done.mutable_done()->set_job_id(assign.job_id());
    done.mutable_done()->mutable_stats()->set_frames(frames);
    if (stream_->Write(chunk)) stream_->Write(done);
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream_;
  std::mutex mutex_;  // guards the fields below and every write to stream_
  std::condition_variable changed_;
  std::vector<std::string> assigned_;
  std::deque<v1::Assign> held_;
  bool released_ = false;
  bool reading_done_ = false;
  std::optional<grpc::Status> end_;
  std::thread reader_;  // last: started once the members above exist
};

// A radial-scheduler process and the ports it wrote.
struct Scheduler {
  ChildProcess process;
  fs::path log;
  int port = 0;
  int worker_port = 0;
};

v1::GenerateRequest SmallRequest() {
  v1::GenerateRequest request;
  request.set_prompt("a lighthouse at dusk");
  request.set_width(64);
  request.set_height(64);
  request.set_frames(1);
  request.set_steps(2);
  return request;
}

::testing::AssertionResult IsCode(const grpc::Status& status, grpc::StatusCode code) {
  if (status.error_code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got code " << status.error_code() << " (" << status.error_message()
                                       << "), expected " << code;
}

class SecurityTest : public ::testing::Test {
 protected:
  // The certificates, made once for the whole suite.
  static void SetUpTestSuite() {
    certs_ = fs::temp_directory_path() / ("radial_security_" + std::to_string(getpid())) / "certs";
    fs::remove_all(certs_);
    fs::create_directories(certs_ / "cadb");
    std::ofstream(certs_ / "req.cnf") << "[ req ]\n"
                                         "distinguished_name = dn\n"
                                         "prompt = no\n"
                                         "[ dn ]\n"
                                         "CN = unused\n"
                                         "[ ca_ext ]\n"
                                         "basicConstraints = critical,CA:TRUE\n"
                                         "keyUsage = critical,keyCertSign,cRLSign\n"
                                         "subjectKeyIdentifier = hash\n"
                                         "[ server_ext ]\n"
                                         "basicConstraints = CA:FALSE\n"
                                         "keyUsage = critical,digitalSignature,keyEncipherment\n"
                                         "extendedKeyUsage = serverAuth\n"
                                         "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
                                         "[ client_ext ]\n"
                                         "basicConstraints = CA:FALSE\n"
                                         "keyUsage = critical,digitalSignature,keyEncipherment\n"
                                         "extendedKeyUsage = clientAuth\n";
    // `openssl ca` is the OpenSSL 3.0 command that can date a certificate in the past.
    std::ofstream(certs_ / "ca.cnf") << "[ ca ]\n"
                                        "default_ca = test_ca\n"
                                        "[ test_ca ]\n"
                                        "database = cadb/index.txt\n"
                                        "new_certs_dir = cadb\n"
                                        "serial = cadb/serial\n"
                                        "default_md = sha256\n"
                                        "policy = any\n"
                                        "unique_subject = no\n"
                                        "[ any ]\n"
                                        "commonName = supplied\n";
    std::ofstream(certs_ / "cadb" / "index.txt");
    std::ofstream(certs_ / "cadb" / "serial") << "1000\n";
    // EC keys: made in milliseconds, where RSA keys take a while on a busy 2-core machine.
    const std::string script =
        "set -e\n"
        "KEY='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
        "openssl req -x509 -config req.cnf -extensions ca_ext $KEY -keyout ca.key -out ca.pem -subj /CN=radial-test-ca"
        " -days 2\n"
        "openssl req -x509 -config req.cnf -extensions ca_ext $KEY -keyout other_ca.key -out other_ca.pem"
        " -subj /CN=unrelated-ca -days 2\n"
        "openssl req -new -config req.cnf $KEY -keyout server.key -out server.csr -subj /CN=localhost\n"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 2 -out server.pem"
        " -extfile req.cnf -extensions server_ext\n"
        "openssl req -new -config req.cnf $KEY -keyout worker.key -out worker.csr -subj /CN=worker-1\n"
        "openssl x509 -req -in worker.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -out worker.pem"
        " -extfile req.cnf -extensions client_ext\n"
        "openssl req -new -config req.cnf $KEY -keyout rogue.key -out rogue.csr -subj /CN=rogue-worker\n"
        "openssl x509 -req -in rogue.csr -CA other_ca.pem -CAkey other_ca.key -set_serial 3 -days 2"
        " -out rogue.pem -extfile req.cnf -extensions client_ext\n"
        "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in server.csr -out expired.pem -notext"
        " -startdate 20200101000000Z -enddate 20200102000000Z -extfile req.cnf -extensions server_ext\n"
        "openssl verify -CAfile ca.pem server.pem worker.pem\n"
        "if openssl verify -CAfile ca.pem expired.pem; then echo expired.pem is not expired; exit 1; fi\n"
        "if openssl verify -CAfile ca.pem rogue.pem; then echo rogue.pem is signed by ca.pem; exit 1; fi\n";
    std::ofstream(certs_ / "make.sh") << script;
    const Ran made = RunToEnd({"/bin/sh", "-c", "cd " + certs_.string() + " && sh make.sh"}, {}, certs_ / "make.log");
    if (made.exit_code != 0) certs_error_ = "openssl failed (" + std::to_string(made.exit_code) + "): " + made.output;
  }

  static void TearDownTestSuite() {
    std::error_code ignored;
    if (Env("RADIAL_KEEP_TEST_DIR").empty()) fs::remove_all(certs_.parent_path(), ignored);
  }

  void SetUp() override {
    ASSERT_TRUE(certs_error_.empty()) << certs_error_;
    ASSERT_FALSE(Env("RADIAL_SCHEDULER_BIN").empty()) << "set RADIAL_SCHEDULER_BIN (ctest does)";
    dir_ = certs_.parent_path() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteFile(TokensFile(), "# tokens of the security tests\n" + Sha256Hex(kTokenA) + " tenant-a user\n" +
                                Sha256Hex(kTokenB) + " tenant-b user\n" + Sha256Hex(kTokenAdmin) + " ops admin\n");
    WriteFile(WorkerTokensFile(), Sha256Hex(kWorkerToken) + " worker-1 worker\n");
  }

  void TearDown() override {
    workers_.clear();
    if (HasFailure() || !Env("RADIAL_KEEP_TEST_DIR").empty()) {
      std::cerr << "logs of the test are in " << dir_ << "\n";
    } else {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
    }
  }

  static std::string Cert(const std::string& name) { return (certs_ / name).string(); }
  std::string TokensFile() const { return (dir_ / "tokens").string(); }
  std::string WorkerTokensFile() const { return (dir_ / "worker-tokens").string(); }
  static void WriteFile(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  // TLS for a client of a scheduler started with the test CA's server certificate.
  static Tls ServerTls() { return Tls{Cert("ca.pem"), "", "", ""}; }
  // TLS for a worker with the test CA's client certificate.
  static Tls WorkerTls() { return Tls{Cert("ca.pem"), Cert("worker.pem"), Cert("worker.key"), ""}; }

  // Flags of a scheduler with client tokens (and so a worker listener of its own).
  std::vector<std::string> TokenFlags() const { return {"--tokens", TokensFile(), "--worker-listen", "127.0.0.1:0"}; }
  static std::vector<std::string> TlsFlags(const std::string& cert = "server.pem") {
    return {"--tls-cert", Cert(cert), "--tls-key", Cert("server.key")};
  }

  std::vector<std::string> SchedulerArgs(const std::string& name, const std::vector<std::string>& flags) const {
    std::vector<std::string> args = {Env("RADIAL_SCHEDULER_BIN"),
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--data-dir",
                                     (dir_ / (name + "-data")).string(),
                                     "--sqlite-synchronous",
                                     "normal",
                                     "--port-file",
                                     (dir_ / (name + ".port")).string(),
                                     "--worker-port-file",
                                     (dir_ / (name + ".worker-port")).string()};
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  }

  // Starts a scheduler named `name` (its log is dir_/name.log) on 127.0.0.1 port 0 with `flags`
  // (later flags override --listen) and waits for both its ports.
  ::testing::AssertionResult StartScheduler(Scheduler& scheduler, const std::string& name,
                                            const std::vector<std::string>& flags) {
    scheduler.log = dir_ / (name + ".log");
    scheduler.process = ChildProcess(WithEnvironment(SchedulerArgs(name, flags), {}), scheduler.log);
    if (!scheduler.process.running()) return ::testing::AssertionFailure() << "cannot start radial-scheduler";
    scheduler.port = radial::testing::AwaitPortFile(dir_ / (name + ".port"), scheduler.process, kStartTimeout);
    scheduler.worker_port =
        radial::testing::AwaitPortFile(dir_ / (name + ".worker-port"), scheduler.process, kStartTimeout);
    if (scheduler.port == 0 || scheduler.worker_port == 0) {
      return ::testing::AssertionFailure() << "radial-scheduler did not start: " << ReadFile(scheduler.log);
    }
    return ::testing::AssertionSuccess();
  }

  // Runs a scheduler that must refuse to start: its exit status and its log.
  Ran RunFailingScheduler(const std::string& name, const std::vector<std::string>& flags) {
    return RunToEnd(SchedulerArgs(name, flags), {}, dir_ / (name + ".log"), kStartTimeout);
  }

  // Runs radialctl with `args` and the environment `env` (RADIAL_* of this process removed).
  Ran Radialctl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> line = {Env("RADIAL_RADIALCTL_BIN")};
    line.insert(line.end(), args.begin(), args.end());
    return RunToEnd(line, env, dir_ / ("radialctl-" + std::to_string(++radialctl_runs_) + ".log"));
  }

  // Starts a real radial-worker on the tiny bundle; its log is dir_/id.log.
  ChildProcess& StartWorker(const std::string& id, int port, const std::vector<std::string>& flags,
                            const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {Env("RADIAL_WORKER_BIN"),
                                     "--bundle",
                                     Env("RADIAL_TEST_BUNDLE"),
                                     "--scheduler",
                                     "127.0.0.1:" + std::to_string(port),
                                     "--worker-id",
                                     id,
                                     "--warmup",
                                     "off"};
    args.insert(args.end(), flags.begin(), flags.end());
    return workers_[id] = ChildProcess(WithEnvironment(args, env), dir_ / (id + ".log"));
  }
  bool NeedsWorkerBinary() {
    if (Env("RADIAL_WORKER_BIN").empty() || Env("RADIAL_TEST_BUNDLE").empty()) {
      ADD_FAILURE() << "set RADIAL_WORKER_BIN and RADIAL_TEST_BUNDLE (ctest does)";
      return false;
    }
    return true;
  }
  // Waits until the worker's log holds `text`; false after `timeout`.
  bool AwaitLog(const std::string& id, const std::string& text, milliseconds timeout = kWorkerTimeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (ReadFile(dir_ / (id + ".log")).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }

  // Polls ListModels until `done` holds for the response; false after `timeout`.
  static bool AwaitModels(Client& client, const std::function<bool(const v1::ListModelsResponse&)>& done,
                          milliseconds timeout = kRpcTimeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      v1::ListModelsResponse models;
      if (client.ListModels(&models).ok() && done(models)) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
  // The models listed, as "name:workers" in order; or the call's error.
  static std::string DescribeModels(Client& client) {
    v1::ListModelsResponse models;
    const grpc::Status status = client.ListModels(&models);
    if (!status.ok()) return "error: " + status.error_message();
    std::string text;
    for (const v1::ModelInfo& model : models.models()) {
      text += model.name() + ":" + std::to_string(model.workers()) + " ";
    }
    return text;
  }
  static bool HasWorkers(const v1::ListModelsResponse& models, uint32_t workers) {
    return models.models_size() == 1 && models.models(0).workers() == workers;
  }

  // A fake worker connected (and registered) on `port`, for tests that need a model.
  FakeWorker& ConnectFakeWorker(int port, Client& admin, FakeWorker::Options options = {}) {
    auto& worker = fake_workers_.emplace_back(std::make_unique<FakeWorker>(Channel(port), std::move(options)));
    EXPECT_TRUE(AwaitModels(admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 1); }))
        << DescribeModels(admin);
    return *worker;
  }

  static inline fs::path certs_;
  static inline std::string certs_error_;
  fs::path dir_;
  int radialctl_runs_ = 0;
  std::map<std::string, ChildProcess> workers_;
  std::vector<std::unique_ptr<FakeWorker>> fake_workers_;
};

// --- clients ---------------------------------------------------------------------------------

TEST_F(SecurityTest, ClientsWithoutAKnownTokenAreRefusedWithAndWithoutTls) {
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plaintext");
    std::vector<std::string> flags = TokenFlags();
    if (tls) {
      const std::vector<std::string> more = TlsFlags();
      flags.insert(flags.end(), more.begin(), more.end());
    }
    Scheduler scheduler;
    ASSERT_TRUE(StartScheduler(scheduler, tls ? "tls" : "plain", flags));
    const Tls channel_tls = tls ? ServerTls() : Tls{};
    for (const std::string token : {"", kTokenWrong}) {
      SCOPED_TRACE(token.empty() ? "no token" : "unknown token");
      Client client(Channel(scheduler.port, channel_tls), token);
      v1::ListJobsResponse jobs;
      EXPECT_TRUE(IsCode(client.ListJobs(&jobs), grpc::StatusCode::UNAUTHENTICATED));
      v1::ListModelsResponse models;
      EXPECT_TRUE(IsCode(client.ListModels(&models), grpc::StatusCode::UNAUTHENTICATED));
      EXPECT_TRUE(IsCode(client.Submit(SmallRequest()), grpc::StatusCode::UNAUTHENTICATED));
      EXPECT_TRUE(
          IsCode(client.Watch("0123456789abcdef0123456789abcdef")->ReadToEnd(), grpc::StatusCode::UNAUTHENTICATED));
    }
    {
      // Not "Bearer <token>": the right token in another scheme is no credential either.
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(kRpcTimeout));
      context.AddMetadata("authorization", std::string("Basic ") + kTokenA);
      v1::ListJobsResponse jobs;
      EXPECT_TRUE(IsCode(v1::VideoService::NewStub(Channel(scheduler.port, channel_tls))
                             ->ListJobs(&context, v1::ListJobsRequest(), &jobs),
                         grpc::StatusCode::UNAUTHENTICATED));
    }
    Client client(Channel(scheduler.port, channel_tls), kTokenA);
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(client.ListJobs(&jobs).ok());

    // The radialctl binary: exit 7 with what to fix, and the token from RADIAL_TOKEN or --token.
    const std::string server = "127.0.0.1:" + std::to_string(scheduler.port);
    std::map<std::string, std::string> env = {{"RADIAL_SERVER", server}};
    if (tls) env["RADIAL_TLS_CA"] = Cert("ca.pem");
    const Ran anonymous = Radialctl({"jobs"}, env);
    EXPECT_EQ(anonymous.exit_code, 7) << anonymous.output;
    EXPECT_NE(anonymous.output.find("UNAUTHENTICATED"), std::string::npos) << anonymous.output;
    EXPECT_NE(anonymous.output.find("RADIAL_TOKEN"), std::string::npos) << anonymous.output;
    const Ran wrong = Radialctl({"jobs", "--token", kTokenWrong}, env);
    EXPECT_EQ(wrong.exit_code, 7) << wrong.output;
    EXPECT_EQ(wrong.output.find(kTokenWrong), std::string::npos) << "the token is never printed: " << wrong.output;
    env["RADIAL_TOKEN"] = kTokenA;
    const Ran known = Radialctl({"jobs"}, env);
    EXPECT_EQ(known.exit_code, 0) << known.output;
    EXPECT_EQ(known.output.find(kTokenA), std::string::npos) << known.output;
    if (tls) {
      // The certificate names localhost too; and a client without TLS cannot talk to a TLS server.
      const Ran by_name = Radialctl({"jobs", "--server", "localhost:" + std::to_string(scheduler.port)}, env);
      EXPECT_EQ(by_name.exit_code, 0) << by_name.output;
      const Ran other_name = Radialctl({"jobs", "--tls-server-name", "elsewhere.example"}, env);
      EXPECT_EQ(other_name.exit_code, 6) << other_name.output;
      env.erase("RADIAL_TLS_CA");
      const Ran plaintext = Radialctl({"jobs"}, env);
      EXPECT_EQ(plaintext.exit_code, 6) << plaintext.output;
      EXPECT_NE(plaintext.output.find("--tls-ca"), std::string::npos) << plaintext.output;
    }
  }
}

TEST_F(SecurityTest, ATenantCannotSeeOrTouchAnotherTenantsJobsButAnAdminCan) {
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", TokenFlags()));
  Client a(Channel(scheduler.port), kTokenA);
  Client b(Channel(scheduler.port), kTokenB);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  FakeWorker& worker = ConnectFakeWorker(scheduler.worker_port, admin);

  v1::Job b_running, b_queued, a_queued;
  ASSERT_TRUE(b.Submit(SmallRequest(), &b_running).ok());
  ASSERT_TRUE(worker.AwaitAssigned(1));
  ASSERT_TRUE(b.Submit(SmallRequest(), &b_queued).ok());
  ASSERT_TRUE(a.Submit(SmallRequest(), &a_queued).ok());
  EXPECT_EQ(b_running.tenant(), "tenant-b");
  EXPECT_EQ(a_queued.tenant(), "tenant-a");

  // To tenant A, B's jobs do not exist: the same answer as for an id nobody ever had.
  const std::string unknown = "00000000000000000000000000000000";
  v1::Job none;
  const grpc::Status missing = a.GetJob(unknown, &none);
  ASSERT_TRUE(IsCode(missing, grpc::StatusCode::NOT_FOUND));
  for (const v1::Job& job : {b_running, b_queued}) {
    SCOPED_TRACE(job.id());
    const grpc::Status got = a.GetJob(job.id());
    EXPECT_TRUE(IsCode(got, grpc::StatusCode::NOT_FOUND));
    std::string message = got.error_message();
    if (const size_t at = message.find(job.id()); at != std::string::npos)
      message.replace(at, job.id().size(), unknown);
    EXPECT_EQ(message, missing.error_message()) << "another tenant's job reads like no job at all";
    EXPECT_TRUE(IsCode(a.Watch(job.id())->ReadToEnd(), grpc::StatusCode::NOT_FOUND));
    EXPECT_TRUE(IsCode(a.Cancel(job.id()), grpc::StatusCode::NOT_FOUND));
    EXPECT_TRUE(IsCode(a.Delete(job.id()), grpc::StatusCode::NOT_FOUND));
  }
  EXPECT_EQ(a.JobIds(), std::set<std::string>{a_queued.id()});
  EXPECT_EQ(b.JobIds(), (std::set<std::string>{b_running.id(), b_queued.id()}));
  // A's attempts changed nothing.
  v1::Job still;
  ASSERT_TRUE(b.GetJob(b_queued.id(), &still).ok());
  EXPECT_EQ(still.state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(b.GetJob(b_running.id(), &still).ok());
  EXPECT_EQ(still.state(), v1::JOB_STATE_RUNNING);
  // The radialctl binary says NOT_FOUND too (exit 3).
  const std::map<std::string, std::string> env = {{"RADIAL_SERVER", "127.0.0.1:" + std::to_string(scheduler.port)},
                                                  {"RADIAL_TOKEN", kTokenA}};
  const Ran status = Radialctl({"status", b_running.id()}, env);
  EXPECT_EQ(status.exit_code, 3) << status.output;
  EXPECT_NE(status.output.find("NOT_FOUND"), std::string::npos) << status.output;

  // An admin sees and acts on every tenant's jobs.
  EXPECT_EQ(admin.JobIds(), (std::set<std::string>{b_running.id(), b_queued.id(), a_queued.id()}));
  v1::Job seen;
  ASSERT_TRUE(admin.GetJob(b_running.id(), &seen).ok());
  EXPECT_EQ(seen.tenant(), "tenant-b");
  std::unique_ptr<WatchStream> watch = admin.Watch(b_running.id());
  v1::JobEvent event;
  EXPECT_TRUE(watch->Next(event)) << "an admin may watch another tenant's job";
  watch->Cancel();
  (void)watch->ReadToEnd();
  v1::Job cancelled;
  ASSERT_TRUE(admin.Cancel(b_queued.id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(admin.Delete(b_queued.id()).ok());
  EXPECT_TRUE(IsCode(b.GetJob(b_queued.id()), grpc::StatusCode::NOT_FOUND));
}

// --- workers ---------------------------------------------------------------------------------

TEST_F(SecurityTest, WorkersWithoutTheCredentialGetNoJobAndDoNotChangeTheModels) {
  v1::ModelInfo rogue_model = radial::testing::TinyModelInfo();
  rogue_model.set_name("rogue");
  {
    SCOPED_TRACE("mutual TLS");
    std::vector<std::string> flags = TokenFlags();
    for (const std::string& flag : TlsFlags()) flags.push_back(flag);
    flags.push_back("--worker-tls-ca");
    flags.push_back(Cert("ca.pem"));
    Scheduler scheduler;
    ASSERT_TRUE(StartScheduler(scheduler, "mtls", flags));
    Client admin(Channel(scheduler.port, ServerTls()), kTokenAdmin);
    for (const Tls& tls : {ServerTls(), Tls{Cert("ca.pem"), Cert("rogue.pem"), Cert("rogue.key"), ""}, Tls{}}) {
      SCOPED_TRACE(tls.ca.empty() ? "plaintext" : tls.cert.empty() ? "no client certificate" : "wrong CA");
      FakeWorker rogue(Channel(scheduler.worker_port, tls), {"rogue", "", rogue_model, false});
      const std::optional<grpc::Status> end = rogue.AwaitEnd();
      ASSERT_TRUE(end.has_value()) << "the scheduler kept the stream of a worker without a certificate";
      EXPECT_TRUE(IsCode(*end, grpc::StatusCode::UNAVAILABLE));
      EXPECT_TRUE(rogue.assigned().empty());
      EXPECT_EQ(DescribeModels(admin), "");
      EXPECT_TRUE(IsCode(admin.Submit(SmallRequest()), grpc::StatusCode::UNAVAILABLE)) << "no model: no job";
    }
    FakeWorker worker(Channel(scheduler.worker_port, WorkerTls()), {});
    ASSERT_TRUE(AwaitModels(admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 1); }))
        << DescribeModels(admin);
    ASSERT_TRUE(admin.Submit(SmallRequest()).ok());
    EXPECT_TRUE(worker.AwaitAssigned(1)) << "the worker with the CA's certificate gets the job";
  }
  {
    SCOPED_TRACE("worker tokens");
    std::vector<std::string> flags = TokenFlags();
    flags.push_back("--worker-tokens");
    flags.push_back(WorkerTokensFile());
    Scheduler scheduler;
    ASSERT_TRUE(StartScheduler(scheduler, "tokens", flags));
    Client admin(Channel(scheduler.port), kTokenAdmin);
    FakeWorker& worker =
        ConnectFakeWorker(scheduler.worker_port, admin, FakeWorker::WithToken("worker-1", kWorkerToken));
    const std::string before = DescribeModels(admin);
    EXPECT_EQ(before, "tiny:1 ");
    // A client token is no worker token either.
    for (const std::string token : {"", kTokenWrong, kTokenAdmin}) {
      SCOPED_TRACE("token '" + token + "'");
      FakeWorker rogue(Channel(scheduler.worker_port), {"rogue", token, rogue_model, false});
      const std::optional<grpc::Status> end = rogue.AwaitEnd();
      ASSERT_TRUE(end.has_value()) << "the scheduler kept the stream of a worker without its token";
      EXPECT_TRUE(IsCode(*end, grpc::StatusCode::UNAUTHENTICATED));
      EXPECT_TRUE(rogue.assigned().empty());
      EXPECT_EQ(DescribeModels(admin), before) << "a refused hello announces nothing";
    }
    v1::Job job;
    ASSERT_TRUE(admin.Submit(SmallRequest(), &job).ok());
    ASSERT_TRUE(worker.AwaitAssigned(1));
    EXPECT_EQ(worker.assigned()[0], job.id());
  }
}

TEST_F(SecurityTest, RealWorkersWithTheirCredentialsServeAndRefusedOnesLogWhy) {
  if (!NeedsWorkerBinary()) return;
  std::vector<std::string> flags = TokenFlags();
  for (const std::string& flag : TlsFlags()) flags.push_back(flag);
  for (const std::string& flag :
       std::vector<std::string>{"--worker-tls-ca", Cert("ca.pem"), "--worker-tokens", WorkerTokensFile()}) {
    flags.push_back(flag);
  }
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", flags));
  const std::vector<std::string> mtls = {"--tls-ca",         Cert("ca.pem"), "--tls-cert",
                                         Cert("worker.pem"), "--tls-key",    Cert("worker.key")};
  const std::map<std::string, std::string> token = {{"RADIAL_WORKER_TOKEN", kWorkerToken}};
  StartWorker("w-good", scheduler.worker_port, mtls, token);
  StartWorker("w-no-token", scheduler.worker_port, mtls);
  StartWorker("w-wrong-token", scheduler.worker_port, mtls, {{"RADIAL_WORKER_TOKEN", kTokenWrong}});
  StartWorker("w-rogue-cert", scheduler.worker_port,
              {"--tls-ca", Cert("ca.pem"), "--tls-cert", Cert("rogue.pem"), "--tls-key", Cert("rogue.key")}, token);
  StartWorker("w-no-cert", scheduler.worker_port, {"--tls-ca", Cert("ca.pem")}, token);
  StartWorker("w-untrusting", scheduler.worker_port,
              {"--tls-ca", Cert("other_ca.pem"), "--tls-cert", Cert("worker.pem"), "--tls-key", Cert("worker.key")},
              token);

  // The refused ones say so, with what to check, and keep retrying.
  const std::map<std::string, std::string> hints = {
      {"w-no-token", "this worker sends no token"},
      {"w-wrong-token", "is not one of the scheduler's --worker-tokens"},
      {"w-rogue-cert", "does not accept this worker's certificate"},
      {"w-no-cert", "it requires a client certificate"},
      {"w-untrusting", "did not accept the scheduler's TLS"},
  };
  for (const auto& [id, hint] : hints) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(AwaitLog(id, "refused for its credentials")) << ReadFile(dir_ / (id + ".log"));
    EXPECT_TRUE(AwaitLog(id, hint)) << ReadFile(dir_ / (id + ".log"));
    EXPECT_TRUE(AwaitLog(id, "retrying in 200 ms")) << "retried with backoff: " << ReadFile(dir_ / (id + ".log"));
  }
  Client admin(Channel(scheduler.port, ServerTls()), kTokenAdmin);
  ASSERT_TRUE(AwaitModels(
      admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 1); }, kWorkerTimeout))
      << DescribeModels(admin);

  // Rotation: the files are read again at each reconnect, so a worker refused with the unrelated
  // CA's certificate gets in once its files hold the right one, without a restart.
  const fs::path rotating_cert = dir_ / "rotating.pem", rotating_key = dir_ / "rotating.key";
  fs::copy_file(Cert("rogue.pem"), rotating_cert);
  fs::copy_file(Cert("rogue.key"), rotating_key);
  StartWorker("w-rotated", scheduler.worker_port,
              {"--tls-ca", Cert("ca.pem"), "--tls-cert", rotating_cert.string(), "--tls-key", rotating_key.string()},
              token);
  ASSERT_TRUE(AwaitLog("w-rotated", "refused for its credentials")) << ReadFile(dir_ / "w-rotated.log");
  for (const auto& [from, to] :
       {std::pair{Cert("worker.pem"), rotating_cert}, std::pair{Cert("worker.key"), rotating_key}}) {
    fs::copy_file(from, to.string() + ".new");
    fs::rename(to.string() + ".new", to);  // whole files only
  }
  ASSERT_TRUE(AwaitModels(
      admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 2); }, kWorkerTimeout))
      << "the worker did not pick up its rotated certificate: " << ReadFile(dir_ / "w-rotated.log");
  workers_["w-rotated"].Kill();
  ASSERT_TRUE(AwaitModels(
      admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 1); }, kWorkerTimeout))
      << DescribeModels(admin);

  // A clip end to end: radialctl with TLS and a token, the worker with mutual TLS and its token.
  const std::map<std::string, std::string> env = {{"RADIAL_SERVER", "127.0.0.1:" + std::to_string(scheduler.port)},
                                                  {"RADIAL_TLS_CA", Cert("ca.pem")},
                                                  {"RADIAL_TOKEN", kTokenA}};
  const fs::path video = dir_ / "clip.mp4";
  const Ran generated = Radialctl({"generate", "a lighthouse at dusk", "--width", "64", "--height", "64", "--frames",
                                   "1", "--steps", "2", "-o", video.string()},
                                  env);
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  EXPECT_GT(fs::file_size(video), 0u);
  EXPECT_NE(generated.output.find("w-good"), std::string::npos) << generated.output;
  EXPECT_EQ(DescribeModels(admin), "wan2.1-tiny:1 ") << "no refused worker was ever counted";

  for (const auto& [id, process] : workers_) {
    const std::string log = ReadFile(dir_ / (id + ".log"));
    EXPECT_EQ(log.find(kWorkerToken), std::string::npos) << id << " logged its token: " << log;
    EXPECT_EQ(log.find(kTokenWrong), std::string::npos) << id << " logged its token: " << log;
  }
  // --token works as well, and ps no longer shows its value once it is parsed.
  StartWorker("w-flag", scheduler.worker_port,
              {"--tls-ca", Cert("ca.pem"), "--tls-cert", Cert("worker.pem"), "--tls-key", Cert("worker.key"), "--token",
               kWorkerToken});
  ASSERT_TRUE(AwaitModels(
      admin, [](const v1::ListModelsResponse& m) { return HasWorkers(m, 2); }, kWorkerTimeout))
      << DescribeModels(admin);
  const std::string cmdline = ReadFile("/proc/" + std::to_string(workers_["w-flag"].pid()) + "/cmdline");
  EXPECT_NE(cmdline.find("--token"), std::string::npos);
  EXPECT_EQ(cmdline.find(kWorkerToken), std::string::npos) << "the token is still in the arguments";
}

TEST_F(SecurityTest, UntrustedAndExpiredServerCertificatesAreRefused) {
  if (!NeedsWorkerBinary()) return;
  std::vector<std::string> flags = TokenFlags();
  for (const std::string& flag : TlsFlags()) flags.push_back(flag);
  Scheduler valid;
  ASSERT_TRUE(StartScheduler(valid, "valid", flags));
  flags = TokenFlags();
  for (const std::string& flag : TlsFlags("expired.pem")) flags.push_back(flag);
  Scheduler expired;
  ASSERT_TRUE(StartScheduler(expired, "expired", flags));

  // A client that trusts another CA, and any client of the expired certificate, cannot connect.
  for (const auto& [port, ca] : {std::pair{valid.port, "other_ca.pem"}, std::pair{expired.port, "ca.pem"}}) {
    SCOPED_TRACE(std::string(port == valid.port ? "valid certificate, " : "expired certificate, ") + ca);
    Client client(Channel(port, Tls{Cert(ca), "", "", ""}), kTokenA);
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(IsCode(client.ListJobs(&jobs), grpc::StatusCode::UNAVAILABLE));
    const Ran radialctl = Radialctl({"jobs", "--server", "127.0.0.1:" + std::to_string(port), "--tls-ca", Cert(ca)},
                                    {{"RADIAL_TOKEN", kTokenA}});
    EXPECT_EQ(radialctl.exit_code, 6) << radialctl.output;
    EXPECT_NE(radialctl.output.find("TLS with server"), std::string::npos) << radialctl.output;
    EXPECT_NE(radialctl.output.find("certificate verify failed"), std::string::npos) << radialctl.output;
  }
  // The same CA's valid certificate works: the refusals above are about the certificates.
  Client trusting(Channel(valid.port, ServerTls()), kTokenA);
  v1::ListJobsResponse jobs;
  EXPECT_TRUE(trusting.ListJobs(&jobs).ok());

  // Real workers: one that trusts another CA, one facing the expired certificate.
  StartWorker("w-other-ca", valid.worker_port, {"--tls-ca", Cert("other_ca.pem")});
  StartWorker("w-expired", expired.worker_port, {"--tls-ca", Cert("ca.pem")});
  for (const std::string id : {"w-other-ca", "w-expired"}) {
    SCOPED_TRACE(id);
    EXPECT_TRUE(AwaitLog(id, "refused for its credentials")) << ReadFile(dir_ / (id + ".log"));
    EXPECT_TRUE(AwaitLog(id, "did not accept the scheduler's TLS")) << ReadFile(dir_ / (id + ".log"));
  }
  Client admin(Channel(valid.port, ServerTls()), kTokenAdmin);
  EXPECT_EQ(DescribeModels(admin), "");
}

// --- tokens files and SIGHUP -----------------------------------------------------------------

TEST_F(SecurityTest, TokensFileErrorsStopTheStartAndNameTheLine) {
  const std::string hash = Sha256Hex(kTokenA);
  struct Case {
    std::string name;
    std::string flag;
    std::string text;
    std::vector<std::string> expected;  // in the log, besides "FILE:LINE:"
    int line;
  };
  const std::vector<Case> cases = {
      {"short-hash", "--tokens", "# comment\n" + hash + " tenant-a user\nabc123 tenant-b user\n", {"64 hex digits"}, 3},
      {"non-hex-hash",
       "--tokens",
       hash + " tenant-a user\n" + std::string(64, 'z') + " tenant-b admin\n",
       {"64 hex digits"},
       2},
      {"bad-role", "--tokens", "\n" + hash + " tenant-a root\n", {"'root'", "user or admin"}, 2},
      {"field-count", "--tokens", hash + " tenant-a\n", {"got 2 fields"}, 1},
      {"extra-field", "--tokens", hash + " tenant-a user extra\n", {"got 4 fields"}, 1},
      {"worker-role", "--worker-tokens", hash + " worker-1 user\n", {"'user'", "worker"}, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path file = dir_ / (c.name + ".tokens");
    WriteFile(file, c.text);
    std::vector<std::string> flags = {"--worker-listen", "127.0.0.1:0", c.flag, file.string()};
    if (c.flag == "--worker-tokens") flags.insert(flags.end(), {"--tokens", TokensFile()});
    const Ran ran = RunFailingScheduler(c.name, flags);
    EXPECT_NE(ran.exit_code, 0) << ran.output;
    EXPECT_NE(ran.exit_code, -1) << "it should exit, not keep running: " << ran.output;
    EXPECT_NE(ran.output.find(file.string() + ":" + std::to_string(c.line) + ":"), std::string::npos) << ran.output;
    for (const std::string& text : c.expected) EXPECT_NE(ran.output.find(text), std::string::npos) << ran.output;
    EXPECT_FALSE(fs::exists(dir_ / (c.name + ".port"))) << "it must not have started listening";
  }
  const Ran missing = RunFailingScheduler("missing", {"--worker-listen", "127.0.0.1:0", "--tokens", "/nonexistent"});
  EXPECT_NE(missing.exit_code, 0) << missing.output;
  EXPECT_NE(missing.exit_code, -1) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent"), std::string::npos) << missing.output;
}

TEST_F(SecurityTest, SighupAddsATokenWithoutDroppingAnOpenWatch) {
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", TokenFlags()));
  Client a(Channel(scheduler.port), kTokenA);
  Client c(Channel(scheduler.port), kTokenC);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  FakeWorker& worker = ConnectFakeWorker(scheduler.worker_port, admin);
  v1::Job job;
  ASSERT_TRUE(a.Submit(SmallRequest(), &job).ok());
  ASSERT_TRUE(worker.AwaitAssigned(1));
  std::unique_ptr<WatchStream> watch = a.Watch(job.id(), seconds(30));
  v1::JobEvent first;
  ASSERT_TRUE(watch->Next(first)) << "the watch is open before the reload";
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(IsCode(c.ListJobs(&jobs), grpc::StatusCode::UNAUTHENTICATED));

  std::ofstream(TokensFile(), std::ios::app) << Sha256Hex(kTokenC) << " tenant-c user\n";
  scheduler.process.Signal(SIGHUP);
  const auto deadline = Clock::now() + kRpcTimeout;
  grpc::Status status;
  while (Clock::now() < deadline && !(status = c.ListJobs(&jobs)).ok()) std::this_thread::sleep_for(milliseconds(50));
  ASSERT_TRUE(status.ok()) << "the added token does not work after SIGHUP: " << status.error_message();
  EXPECT_EQ(jobs.jobs_size(), 0) << "tenant-c sees no other tenant's job";
  EXPECT_TRUE(a.ListJobs(&jobs).ok()) << "the old tokens still work";

  // The watch opened before the reload still gets the job's events and ends normally.
  worker.Release();
  std::vector<v1::JobEvent> events;
  const grpc::Status ended = watch->ReadToEnd(&events);
  EXPECT_TRUE(ended.ok()) << ended.error_message();
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().has_completed()) << events.back().DebugString();

  // A file that no longer parses keeps the tokens in force.
  std::ofstream(TokensFile(), std::ios::app) << "not-a-hash tenant-d user\n";
  scheduler.process.Signal(SIGHUP);
  const auto logged = Clock::now() + kRpcTimeout;
  while (Clock::now() < logged && ReadFile(scheduler.log).find("not re-read") == std::string::npos) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_NE(ReadFile(scheduler.log).find("not re-read"), std::string::npos) << ReadFile(scheduler.log);
  EXPECT_TRUE(c.ListJobs(&jobs).ok());
  EXPECT_TRUE(a.ListJobs(&jobs).ok());
}

// --- quotas and fairness ---------------------------------------------------------------------

TEST_F(SecurityTest, ATenantOverItsQueuedQuotaIsRefusedWhileAnotherCanSubmit) {
  Scheduler scheduler;
  std::vector<std::string> flags = TokenFlags();
  flags.insert(flags.end(), {"--tenant-max-queued", "2"});
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", flags));
  Client a(Channel(scheduler.port), kTokenA);
  Client b(Channel(scheduler.port), kTokenB);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  ConnectFakeWorker(scheduler.worker_port, admin, FakeWorker::Draining());  // a model, and every job stays queued
  ASSERT_TRUE(a.Submit(SmallRequest()).ok());
  ASSERT_TRUE(a.Submit(SmallRequest()).ok());
  const grpc::Status third = a.Submit(SmallRequest());
  EXPECT_TRUE(IsCode(third, grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_NE(third.error_message().find("max_queued"), std::string::npos) << third.error_message();
  EXPECT_NE(third.error_message().find("2"), std::string::npos) << third.error_message();
  EXPECT_TRUE(b.Submit(SmallRequest()).ok()) << "another tenant's quota is its own";
  EXPECT_EQ(a.JobIds().size(), 2u);
}

TEST_F(SecurityTest, ATenantOverItsSubmitRateIsRefusedWhileAnotherCanSubmit) {
  Scheduler scheduler;
  std::vector<std::string> flags = TokenFlags();
  flags.insert(flags.end(), {"--tenant-submits-per-minute", "3"});
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", flags));
  Client a(Channel(scheduler.port), kTokenA);
  Client b(Channel(scheduler.port), kTokenB);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  ConnectFakeWorker(scheduler.worker_port, admin, FakeWorker::Draining());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.Submit(SmallRequest()).ok()) << "submit " << i;
  const grpc::Status fourth = a.Submit(SmallRequest());
  EXPECT_TRUE(IsCode(fourth, grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_NE(fourth.error_message().find("submits_per_minute"), std::string::npos) << fourth.error_message();
  EXPECT_NE(fourth.error_message().find("3"), std::string::npos) << fourth.error_message();
  EXPECT_TRUE(b.Submit(SmallRequest()).ok()) << "another tenant's rate is its own";
}

TEST_F(SecurityTest, ATenantWithOneJobIsServedRightAfterTheJobRunningForABusyTenant) {
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", TokenFlags()));
  Client a(Channel(scheduler.port), kTokenA);
  Client b(Channel(scheduler.port), kTokenB);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  FakeWorker& worker = ConnectFakeWorker(scheduler.worker_port, admin);
  std::vector<std::string> a_ids;
  for (int i = 0; i < 6; ++i) {
    v1::Job job;
    ASSERT_TRUE(a.Submit(SmallRequest(), &job).ok());
    a_ids.push_back(job.id());
  }
  ASSERT_TRUE(worker.AwaitAssigned(1));  // A's first runs; its other five wait
  v1::Job b_job;
  ASSERT_TRUE(b.Submit(SmallRequest(), &b_job).ok());
  worker.Release();
  ASSERT_TRUE(worker.AwaitAssigned(7, seconds(20))) << worker.assigned().size() << " of 7 jobs assigned";
  const std::vector<std::string> order = worker.assigned();
  std::string described;  // "A1 A2 B A3 ...": who got each turn
  for (const std::string& id : order) {
    const auto a_index = std::find(a_ids.begin(), a_ids.end(), id);
    described += a_index != a_ids.end() ? "A" + std::to_string(a_index - a_ids.begin() + 1) + " " : "B ";
  }
  EXPECT_EQ(order[0], a_ids[0]) << described;
  EXPECT_EQ(order[1], b_job.id()) << "assigned in the order " << described
                                  << "; expected tenant B's only job right after the job of tenant A that was "
                                     "running when it came (A1 B A2 ...), not behind another of A's";
}

// --- job ids, and the unauthenticated default ------------------------------------------------

TEST_F(SecurityTest, JobIdsAre128RandomBitsUnrelatedToTheSeeds) {
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "scheduler", TokenFlags()));
  Client a(Channel(scheduler.port), kTokenA);
  Client admin(Channel(scheduler.port), kTokenAdmin);
  ConnectFakeWorker(scheduler.worker_port, admin, FakeWorker::Draining());
  constexpr int kJobs = 200;
  std::vector<std::string> ids;
  std::vector<uint64_t> seeds;
  for (int i = 0; i < kJobs; ++i) {
    v1::Job job;
    ASSERT_TRUE(a.Submit(SmallRequest(), &job).ok()) << "submit " << i;
    ids.push_back(job.id());
    seeds.push_back(job.request().seed());
  }
  std::array<int, 128> ones{};
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    ASSERT_EQ(id.size(), 32u) << id;
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    EXPECT_EQ(id.find(Hex64(seeds[i])), std::string::npos) << "id " << id << " holds its seed " << seeds[i];
    EXPECT_EQ(id.find(std::to_string(seeds[i])), std::string::npos) << id << " " << seeds[i];
    for (int bit = 0; bit < 128; ++bit) {
      const int digit = std::stoi(id.substr(bit / 4, 1), nullptr, 16);
      ones[bit] += (digit >> (3 - bit % 4)) & 1;
    }
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size()) << "ids repeat";
  EXPECT_EQ(std::set<uint64_t>(seeds.begin(), seeds.end()).size(), seeds.size()) << "seeds repeat";
  // Every one of the 128 bits varies (a counter, a timestamp or a 64-bit value padded would leave
  // some fixed; for random bits the chance of that is 128 * 2^-199).
  for (int bit = 0; bit < 128; ++bit) {
    EXPECT_GT(ones[bit], 0) << "bit " << bit << " is always 0";
    EXPECT_LT(ones[bit], kJobs) << "bit " << bit << " is always 1";
  }
  // Seeds are not a counter either.
  int steps_of_one = 0;
  for (size_t i = 1; i < seeds.size(); ++i) steps_of_one += seeds[i] - seeds[i - 1] == 1;
  EXPECT_EQ(steps_of_one, 0);
}

TEST_F(SecurityTest, TheUnauthenticatedDefaultServesLoopbackOnlyUnlessInsecure) {
  Scheduler scheduler;
  ASSERT_TRUE(StartScheduler(scheduler, "loopback", {}));
  EXPECT_EQ(scheduler.worker_port, scheduler.port) << "workers share the client listener";
  Client anyone(Channel(scheduler.port), "");
  ConnectFakeWorker(scheduler.port, anyone);
  v1::Job job;
  ASSERT_TRUE(anyone.Submit(SmallRequest(), &job).ok());
  EXPECT_EQ(job.tenant(), "default");
  const Ran jobs = Radialctl({"jobs", "--server", "127.0.0.1:" + std::to_string(scheduler.port)});
  EXPECT_EQ(jobs.exit_code, 0) << jobs.output;
  EXPECT_NE(jobs.output.find(job.id()), std::string::npos) << jobs.output;

  const Ran open = RunFailingScheduler("open", {"--listen", "0.0.0.0:0"});
  EXPECT_NE(open.exit_code, 0) << open.output;
  EXPECT_NE(open.exit_code, -1) << "it should exit, not serve: " << open.output;
  EXPECT_NE(open.output.find("--listen"), std::string::npos) << open.output;
  const Ran open_workers = RunFailingScheduler("open-workers", {"--worker-listen", "0.0.0.0:0"});
  EXPECT_NE(open_workers.exit_code, 0) << open_workers.output;
  EXPECT_NE(open_workers.exit_code, -1) << open_workers.output;
  EXPECT_NE(open_workers.output.find("--worker-listen"), std::string::npos) << open_workers.output;
  // --insecure true is the one way to serve that unauthenticated.
  Scheduler insecure;
  EXPECT_TRUE(StartScheduler(insecure, "insecure", {"--listen", "0.0.0.0:0", "--insecure", "true"}));
}

}  // namespace
}  // namespace radial
