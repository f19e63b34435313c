// The one place where the worker translates between radial.v1 messages and its plain C++ types:
// an assigned GenerateRequest -> the JobSpec the job runner takes (GenerationParams and the
// encoder's options), the runner's progress, chunks and outcome -> WorkerMessages, and the bundle's
// manifest -> the ModelInfo the worker announces. Pure functions, no I/O.
#ifndef RADIAL_WORKER_JOB_MESSAGES_H_
#define RADIAL_WORKER_JOB_MESSAGES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "encoder/fmp4_encoder.h"
#include "job_runner.h"
#include "model_manifest.h"
#include "radial/v1/worker_service.pb.h"

namespace radial::worker {

// What the worker's flags choose for every job's encoder.
struct EncoderSettings {
  std::string x264_preset = "veryfast";
  int x264_threads = 1;
  int64_t max_chunk_bytes = int64_t{1} << 20;
};

// The job a resolved (and CheckAssignment-ed) request asks for: the pipeline's params, and the
// encoder's size, frame rate (fps/1), frames per fragment (fragment_frames; 0 stays 0: one second)
// and the worker's settings.
JobSpec JobSpecFrom(const v1::GenerateRequest& request, const EncoderSettings& settings);

// What this worker announces in its Hello: the manifest's limits and defaults.
v1::ModelInfo ModelInfoFrom(const ModelManifest& manifest);

v1::Stage ToProtoStage(JobStage stage);

v1::WorkerMessage ProgressMessage(const std::string& job_id, JobStage stage, int64_t step, int64_t total);
v1::WorkerMessage ChunkMessage(const std::string& job_id, const Chunk& chunk);
// JobDone with the outcome's stats (the runner's times, frames, bytes, mask density) and the
// request's radial knobs. `outcome` succeeded and has its report.
v1::WorkerMessage DoneMessage(const std::string& job_id, const v1::GenerateRequest& request, const JobOutcome& outcome);
v1::WorkerMessage FailedMessage(const std::string& job_id, const absl::Status& status);
v1::WorkerMessage HandBackMessage(const std::string& job_id, const std::string& reason);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_JOB_MESSAGES_H_
