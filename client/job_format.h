// Human-readable (and JSON) renderings of the API's messages for radialctl's output.
#ifndef RADIAL_CLIENT_JOB_FORMAT_H_
#define RADIAL_CLIENT_JOB_FORMAT_H_

#include <google/protobuf/message.h>

#include <ostream>
#include <string>

#include "radial/v1/video_service.pb.h"

namespace radial::client {

// "queued", "running", "succeeded", "failed", "cancelled".
std::string JobStateName(v1::JobState state);
// "tiny, 17 frames 128x128 at 16 fps, 4 steps, guidance 5, seed 42" (the fields that are set).
std::string DescribeRequest(const v1::GenerateRequest& request);
// "decay 1, block 64, sink off" (the knobs that are set), "dense" for dense attention.
std::string DescribeRadial(const v1::RadialOptions& radial);

// What `generate` and `watch` print when the job succeeded: `bytes` is the video's size, `received`
// what came over this stream (less when resuming). `path` may be empty (watch without -o).
void PrintSummary(const std::string& job_id, const v1::GenerateRequest& request, const v1::JobStats& stats,
                  const std::string& path, uint64_t bytes, uint64_t received, std::ostream& out);
// `status`: state, progress, bytes, error and stats.
void PrintJob(const v1::Job& job, std::ostream& out);
// `jobs`: a table (id, state, model, size, steps, created, bytes), or "no jobs" ("no jobs match" when
// `filtered`).
void PrintJobs(const v1::ListJobsResponse& jobs, bool filtered, std::ostream& out);
// `models`: a table of the models with their limits, then their defaults.
void PrintModels(const v1::ListModelsResponse& models, std::ostream& out);
// One JSON object with the proto field names, default values included, then a newline.
void PrintJson(const google::protobuf::Message& message, std::ostream& out);

}  // namespace radial::client

#endif  // RADIAL_CLIENT_JOB_FORMAT_H_
