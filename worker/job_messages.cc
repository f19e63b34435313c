#include "job_messages.h"

#include <algorithm>

#include "assignment_check.h"

namespace radial::worker {

static_assert(kAssignmentMaxFragmentFrames == kEncoderMaxGopFrames,
              "the assignment check admits exactly the fragment lengths the encoder takes");

JobSpec JobSpecFrom(const v1::GenerateRequest& request, const EncoderSettings& settings) {
  JobSpec spec;
  GenerationParams& params = spec.params;
  params.prompt = request.prompt();
  params.negative_prompt = request.negative_prompt();
  params.width = request.width();
  params.height = request.height();
  params.frames = request.frames();
  params.steps = request.steps();
  params.guidance = request.guidance();
  params.seed = request.seed();
  const v1::RadialOptions& radial = request.radial();
  params.radial = {radial.decay(),        radial.sink(),        radial.block(),
                   radial.dense_layers(), radial.dense_steps(), radial.dense_last_steps()};
  params.dense = radial.dense();

  EncoderOptions& encoder = spec.encoder;
  encoder.width = static_cast<int>(request.width());
  encoder.height = static_cast<int>(request.height());
  encoder.fps = {static_cast<int>(request.fps()), 1};
  encoder.gop_frames = static_cast<int>(request.fragment_frames());
  encoder.preset = settings.x264_preset;
  encoder.threads = settings.x264_threads;
  encoder.max_chunk_bytes = settings.max_chunk_bytes;
  return spec;
}

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

v1::Stage ToProtoStage(JobStage stage) {
  switch (stage) {
    case JobStage::kEncodingText: return v1::STAGE_ENCODING_TEXT;
    case JobStage::kDenoising: return v1::STAGE_DENOISING;
    case JobStage::kDecoding: return v1::STAGE_DECODING;
    case JobStage::kMuxing: return v1::STAGE_MUXING;
  }
  return v1::STAGE_UNSPECIFIED;
}

v1::WorkerMessage ProgressMessage(const std::string& job_id, JobStage stage, int64_t step, int64_t total) {
  v1::WorkerMessage message;
  v1::JobProgress& progress = *message.mutable_progress();
  progress.set_job_id(job_id);
  progress.mutable_progress()->set_stage(ToProtoStage(stage));
  progress.mutable_progress()->set_step(static_cast<uint32_t>(step));
  progress.mutable_progress()->set_total(static_cast<uint32_t>(total));
  return message;
}

v1::WorkerMessage ChunkMessage(const std::string& job_id, const Chunk& chunk) {
  v1::WorkerMessage message;
  message.mutable_chunk()->set_job_id(job_id);
  message.mutable_chunk()->mutable_chunk()->set_offset(chunk.offset);
  message.mutable_chunk()->mutable_chunk()->set_data(chunk.bytes.data(), chunk.bytes.size());
  return message;
}

v1::WorkerMessage DoneMessage(const std::string& job_id, const v1::GenerateRequest& request,
                              const JobOutcome& outcome) {
  v1::WorkerMessage message;
  message.mutable_done()->set_job_id(job_id);
  v1::JobStats& stats = *message.mutable_done()->mutable_stats();
  const JobTimes& times = outcome.times;
  stats.set_text_encode_seconds(times.text_encode);
  stats.set_denoise_seconds(times.denoise);
  stats.set_decode_seconds(times.decode);
  stats.set_encode_seconds(times.encode);
  stats.set_first_fragment_seconds(times.first_fragment);
  stats.set_last_step_to_first_fragment_seconds(times.last_step_to_first_fragment);
  stats.set_last_step_to_last_byte_seconds(times.last_step_to_last_byte);
  stats.set_frames(static_cast<uint32_t>(outcome.frames_encoded));
  stats.set_video_bytes(static_cast<uint64_t>(outcome.video_bytes));
  stats.set_mask_density(outcome.report ? outcome.report->mask_density : 1.0);
  *stats.mutable_radial() = request.radial();
  return message;
}

v1::WorkerMessage FailedMessage(const std::string& job_id, const absl::Status& status) {
  v1::WorkerMessage message;
  message.mutable_failed()->set_job_id(job_id);
  message.mutable_failed()->mutable_error()->set_code(static_cast<int>(status.code()));
  message.mutable_failed()->mutable_error()->set_message(std::string(status.message()));
  return message;
}

v1::WorkerMessage HandBackMessage(const std::string& job_id, const std::string& reason) {
  v1::WorkerMessage message;
  message.mutable_hand_back()->set_job_id(job_id);
  message.mutable_hand_back()->set_reason(reason);
  return message;
}

}  // namespace radial::worker
