#include "worker_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <thread>

#include "absl/strings/str_cat.h"
#include "encoder/fmp4_encoder.h"
#include "radial/v1/worker_service.grpc.pb.h"

namespace radial::worker {
namespace {

using Clock = std::chrono::steady_clock;

v1::ModelInfo ModelInfoFrom(const ModelManifest& m) {
  v1::ModelInfo info;
  info.set_name(m.name);
  info.set_architecture(m.architecture);
  info.mutable_width()->set_min(m.width.min);
  info.mutable_width()->set_max(m.width.max);
  info.mutable_height()->set_min(m.height.min);
  info.mutable_height()->set_max(m.height.max);
  info.set_size_multiple(std::max(m.width.multiple, m.height.multiple));
  info.mutable_frames()->set_min(m.frames.min);
  info.mutable_frames()->set_max(m.frames.max);
  info.set_frame_step(m.frames.multiple);
  info.mutable_steps()->set_min(m.steps.min);
  info.mutable_steps()->set_max(m.steps.max);
  info.set_guidance_max(static_cast<float>(m.guidance_max));
  info.set_prompt_max_chars(m.prompt_max_chars);
  info.set_layers(m.num_layers);
  v1::GenerateRequest& defaults = *info.mutable_defaults();
  defaults.set_model(m.name);
  defaults.set_negative_prompt(m.default_negative_prompt);
  defaults.set_width(m.default_width);
  defaults.set_height(m.default_height);
  defaults.set_frames(m.default_frames);
  defaults.set_fps(m.default_fps);
  defaults.set_steps(m.default_steps);
  defaults.set_guidance(static_cast<float>(m.default_guidance));
  v1::RadialOptions& radial = *defaults.mutable_radial();
  radial.set_decay(static_cast<float>(m.radial.decay));
  radial.set_sink(m.radial.sink);
  radial.set_block(m.radial.block);
  radial.set_dense_layers(m.radial.dense_layers);
  radial.set_dense_steps(m.radial.dense_steps);
  radial.set_dense_last_steps(m.radial.dense_last_steps);
  radial.set_dense(false);
  return info;
}

v1::Stage ToProtoStage(Stage stage) {
  switch (stage) {
    case Stage::kEncodingText: return v1::STAGE_ENCODING_TEXT;
    case Stage::kDenoising: return v1::STAGE_DENOISING;
    case Stage::kDecoding: return v1::STAGE_DECODING;
  }
  return v1::STAGE_UNSPECIFIED;
}

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

}  // namespace

struct WorkerClient::Session {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream;
  std::mutex write_mutex;
  std::atomic<bool> closed{false};
  std::mutex mutex;  // guards the fields below and signals the heartbeat thread
  std::condition_variable wake;
  std::string job_id;  // running job, empty when idle
  std::atomic<bool> cancel{false};

  bool Write(const v1::WorkerMessage& message) {
    std::lock_guard<std::mutex> lock(write_mutex);
    return !closed && stream->Write(message);
  }
};

WorkerClient::WorkerClient(WorkerOptions options, Pipeline& pipeline)
    : options_(std::move(options)), pipeline_(pipeline) {
  if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
  LimitFfmpegLoggingToErrors();
}

WorkerClient::~WorkerClient() { Stop(); }

void WorkerClient::Stop() {
  stopping_ = true;
  std::lock_guard<std::mutex> lock(session_mutex_);
  if (session_) {
    session_->cancel = true;
    session_->context.TryCancel();
  }
}

absl::Status WorkerClient::Run() {
  int backoff_ms = 100;
  absl::Status status;
  while (!stopping_) {
    const auto started = Clock::now();
    status = Serve();
    if (stopping_ || options_.exit_when_disconnected) break;
    if (Clock::now() - started > std::chrono::seconds(10)) backoff_ms = 100;  // it had been working
    spdlog::warn("worker {}: stream to {} ended ({}); reconnecting in {} ms", options_.worker_id, options_.scheduler,
                 std::string(status.message()), backoff_ms);
    for (int slept = 0; slept < backoff_ms && !stopping_; slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff_ms = std::min(backoff_ms * 2, options_.reconnect_max_ms);
  }
  return stopping_ ? absl::OkStatus() : status;
}

absl::Status WorkerClient::Serve() {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments.SetMaxSendMessageSize(8 << 20);
  const auto channel = grpc::CreateCustomChannel(options_.scheduler, grpc::InsecureChannelCredentials(), arguments);
  const auto stub = v1::WorkerService::NewStub(channel);
  auto session = std::make_shared<Session>();
  {
    std::lock_guard<std::mutex> lock(session_mutex_);
    if (stopping_) return absl::OkStatus();
    session_ = session;
  }
  session->stream = stub->Connect(&session->context);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id(options_.worker_id);
  hello.mutable_hello()->set_capacity(1);
  hello.mutable_hello()->set_device(pipeline_.device_name());
  *hello.mutable_hello()->add_models() = ModelInfoFrom(pipeline_.manifest());
  if (session->Write(hello)) {
    spdlog::info("worker {}: connected to {} serving {} on {}", options_.worker_id, options_.scheduler,
                 pipeline_.manifest().name, pipeline_.device_name());
  }

  std::thread heartbeat([this, session] {
    std::unique_lock<std::mutex> lock(session->mutex);
    while (!session->closed) {
      if (session->wake.wait_for(lock, std::chrono::milliseconds(options_.heartbeat_ms),
                                 [&] { return session->closed.load(); })) {
        break;
      }
      lock.unlock();
      v1::WorkerMessage beat;
      beat.mutable_heartbeat()->set_unix_ms(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
      session->Write(beat);
      lock.lock();
    }
  });

  std::thread job;
  v1::SchedulerMessage message;
  while (session->stream->Read(&message)) {
    if (message.has_cancel()) {
      std::lock_guard<std::mutex> lock(session->mutex);
      if (session->job_id == message.cancel().job_id()) session->cancel = true;
      continue;
    }
    if (!message.has_assign()) continue;
    const v1::Assign assign = message.assign();
    {
      std::lock_guard<std::mutex> lock(session->mutex);
      if (!session->job_id.empty()) {
        v1::WorkerMessage busy;
        busy.mutable_failed()->set_job_id(assign.job_id());
        busy.mutable_failed()->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
        busy.mutable_failed()->mutable_error()->set_message("worker: got a second job, expected one at a time");
        session->Write(busy);
        continue;
      }
      session->job_id = assign.job_id();
      session->cancel = false;
    }
    if (job.joinable()) job.join();
    job = std::thread([this, session, assign] {
      const v1::WorkerMessage outcome = RunJob(*session, assign);
      {
        std::lock_guard<std::mutex> lock(session->mutex);
        session->job_id.clear();
      }
      session->Write(outcome);
    });
  }
  // The stream ended: abandon the job (the scheduler requeues it), stop the helpers.
  session->cancel = true;
  {
    std::lock_guard<std::mutex> lock(session->mutex);
    std::lock_guard<std::mutex> write_lock(session->write_mutex);
    session->closed = true;
  }
  session->wake.notify_all();
  if (job.joinable()) job.join();
  heartbeat.join();
  const grpc::Status status = session->stream->Finish();
  {
    std::lock_guard<std::mutex> lock(session_mutex_);
    session_.reset();
  }
  if (status.ok()) return absl::OkStatus();
  return absl::UnavailableError(status.error_message());
}

v1::WorkerMessage WorkerClient::RunJob(Session& session, const v1::Assign& assign) {
  const std::string& job_id = assign.job_id();
  const v1::GenerateRequest& request = assign.request();
  spdlog::info("job_id={} started on worker {} (attempt {}): {}x{}x{} steps={}", job_id, options_.worker_id,
               assign.attempt(), request.width(), request.height(), request.frames(), request.steps());
  GenerationParams params;
  params.prompt = request.prompt();
  params.negative_prompt = request.negative_prompt();
  params.width = request.width();
  params.height = request.height();
  params.frames = request.frames();
  params.steps = request.steps();
  params.guidance = request.guidance();
  params.seed = request.seed();
  params.radial = {request.radial().decay(),        request.radial().sink(),
                   request.radial().block(),        request.radial().dense_layers(),
                   request.radial().dense_steps(),  request.radial().dense_last_steps()};
  params.dense = request.radial().dense();

  auto failure = [&](const absl::Status& status) {
    spdlog::warn("job_id={} failed: {}", job_id, status.ToString());
    v1::WorkerMessage failed;
    failed.mutable_failed()->set_job_id(job_id);
    failed.mutable_failed()->mutable_error()->set_code(static_cast<int>(status.code()));
    failed.mutable_failed()->mutable_error()->set_message(std::string(status.message()));
    return failed;
  };

  EncoderOptions encoder_options;
  encoder_options.width = static_cast<int>(request.width());
  encoder_options.height = static_cast<int>(request.height());
  encoder_options.fps = {static_cast<int>(request.fps()), 1};
  encoder_options.preset = options_.x264_preset;
  encoder_options.threads = options_.x264_threads;
  encoder_options.max_chunk_bytes = options_.max_chunk_bytes;
  auto encoder = Fmp4Encoder::Create(encoder_options, [&](const Chunk& chunk) {
    v1::WorkerMessage message;
    message.mutable_chunk()->set_job_id(job_id);
    message.mutable_chunk()->mutable_chunk()->set_offset(chunk.offset);
    message.mutable_chunk()->mutable_chunk()->set_data(chunk.bytes.data(), chunk.bytes.size());
    return session.Write(message) ? absl::OkStatus() : absl::UnavailableError("the scheduler stream closed");
  });
  if (!encoder.ok()) return failure(encoder.status());
  double encode_seconds = 0;
  GenerationCallbacks callbacks;
  callbacks.progress = [&](Stage stage, int64_t step, int64_t total) {
    v1::WorkerMessage message;
    message.mutable_progress()->set_job_id(job_id);
    message.mutable_progress()->mutable_progress()->set_stage(ToProtoStage(stage));
    message.mutable_progress()->mutable_progress()->set_step(static_cast<uint32_t>(step));
    message.mutable_progress()->mutable_progress()->set_total(static_cast<uint32_t>(total));
    session.Write(message);
  };
  callbacks.frame = [&](const uint8_t* rgb, int64_t stride) {
    const auto start = Clock::now();
    absl::Status status = (*encoder)->AddFrame(rgb, stride);
    encode_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return status;
  };
  callbacks.cancelled = [&] { return session.cancel.load(); };
  const auto report = pipeline_.Generate(params, callbacks);
  if (!report.ok()) return failure(report.status());
  const auto start = Clock::now();
  if (absl::Status finished = (*encoder)->Finish(); !finished.ok()) return failure(finished);
  encode_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  v1::WorkerMessage done;
  done.mutable_done()->set_job_id(job_id);
  v1::JobStats& stats = *done.mutable_done()->mutable_stats();
  stats.set_text_encode_seconds(report->text_encode_seconds);
  stats.set_denoise_seconds(report->denoise_seconds);
  stats.set_decode_seconds(report->decode_seconds - encode_seconds);
  stats.set_encode_seconds(encode_seconds);
  stats.set_frames(static_cast<uint32_t>((*encoder)->frames_added()));
  stats.set_video_bytes((*encoder)->bytes_emitted());
  stats.set_mask_density(report->mask_density);
  *stats.mutable_radial() = request.radial();
  if (report->radial_fell_back) stats.mutable_radial()->set_dense(true);
  spdlog::info("job_id={} done: {} frames, {} bytes, denoise {:.2f} s, decode {:.2f} s, encode {:.2f} s", job_id,
               stats.frames(), stats.video_bytes(), stats.denoise_seconds(), stats.decode_seconds(),
               stats.encode_seconds());
  return done;
}

}  // namespace radial::worker
