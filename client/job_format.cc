#include "job_format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <ctime>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "exit_code.h"
#include "progress_display.h"

namespace radial::client {
namespace {

// "%g" keeps 5 as "5" and 0.25 as "0.25".
std::string Number(double value) { return absl::StrFormat("%g", value); }

std::string UtcTime(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &parts);
  return absl::StrFormat("%s.%03d UTC", text, static_cast<int>(unix_ms % 1000));
}

void PrintStats(const v1::JobStats& stats, std::ostream& out) {
  out << "  seconds   "
      << absl::StrFormat("%.2f total (queued %.2f, text %.2f, denoise %.2f, decode %.2f, encode %.2f)",
                         stats.total_seconds(), stats.queue_seconds(), stats.text_encode_seconds(),
                         stats.denoise_seconds(), stats.decode_seconds(), stats.encode_seconds())
      << "\n";
  out << "  mask      density " << absl::StrFormat("%.3f", stats.mask_density());
  if (stats.has_radial()) out << " (" << DescribeRadial(stats.radial()) << ")";
  out << "\n";
  if (!stats.worker_id().empty()) out << "  worker    " << stats.worker_id() << "\n";
}

std::string RangeText(const v1::Range& range) { return absl::StrCat(range.min(), "-", range.max()); }

// Columns padded to their widest cell, two spaces apart; the last one unpadded.
void PrintTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

}  // namespace

std::string JobStateName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

std::string DescribeRequest(const v1::GenerateRequest& request) {
  std::vector<std::string> parts;
  if (!request.model().empty()) parts.push_back(request.model());
  std::string shape;
  if (request.frames() != 0) shape = absl::StrCat(request.frames(), " frames");
  if (request.width() != 0 || request.height() != 0) {
    absl::StrAppend(&shape, shape.empty() ? "" : " ", request.width(), "x", request.height());
  }
  if (request.fps() != 0) absl::StrAppend(&shape, shape.empty() ? "" : " at ", request.fps(), " fps");
  if (!shape.empty()) parts.push_back(shape);
  if (request.steps() != 0) parts.push_back(absl::StrCat(request.steps(), " steps"));
  if (request.has_guidance()) parts.push_back(absl::StrCat("guidance ", Number(request.guidance())));
  if (request.has_seed()) parts.push_back(absl::StrCat("seed ", request.seed()));
  if (request.priority() != 0) parts.push_back(absl::StrCat("priority ", request.priority()));
  return absl::StrJoin(parts, ", ");
}

std::string DescribeRadial(const v1::RadialOptions& radial) {
  if (radial.has_dense() && radial.dense()) return "dense";
  std::vector<std::string> parts;
  if (radial.has_decay()) parts.push_back(absl::StrCat("decay ", Number(radial.decay())));
  if (radial.has_block()) parts.push_back(absl::StrCat("block ", radial.block()));
  if (radial.has_sink()) parts.push_back(absl::StrCat("sink ", radial.sink() ? "on" : "off"));
  if (radial.has_dense_layers() && radial.dense_layers() > 0) {
    parts.push_back(absl::StrCat("dense layers ", radial.dense_layers()));
  }
  if (radial.has_dense_steps() && radial.dense_steps() > 0)
    parts.push_back(absl::StrCat("dense steps ", radial.dense_steps()));
  if (radial.has_dense_last_steps() && radial.dense_last_steps() > 0) {
    parts.push_back(absl::StrCat("dense last steps ", radial.dense_last_steps()));
  }
  return absl::StrJoin(parts, ", ");
}

void PrintSummary(const std::string& job_id, const v1::GenerateRequest& request, const v1::JobStats& stats,
                  const std::string& path, uint64_t bytes, uint64_t received, std::ostream& out) {
  out << "job " << job_id << " succeeded\n";
  if (!path.empty()) {
    out << "  output    " << path << ", " << bytes << " bytes";
    if (received != bytes) out << " (" << received << " received now, the rest was in the file)";
    out << "\n";
  } else {
    out << "  received  " << received << " of the video's " << bytes << " bytes (not saved: no -o)\n";
  }
  v1::GenerateRequest shown = request;
  if (stats.frames() != 0) shown.set_frames(stats.frames());
  out << "  video     " << DescribeRequest(shown) << "\n";
  PrintStats(stats, out);
}

void PrintJob(const v1::Job& job, std::ostream& out) {
  out << "job " << job.id() << " " << JobStateName(job.state());
  if (job.attempts() > 1) out << " (attempt " << job.attempts() << ")";
  out << "\n";
  if (job.state() == v1::JOB_STATE_QUEUED) out << "  queue     position " << job.queue_position() << "\n";
  if (job.state() == v1::JOB_STATE_RUNNING && job.has_progress()) {
    out << "  progress  " << StageName(job.progress().stage());
    if (job.progress().total() > 0) out << " step " << job.progress().step() << "/" << job.progress().total();
    out << "\n";
  }
  out << "  bytes     " << job.bytes_produced() << "\n";
  out << "  request   " << DescribeRequest(job.request()) << "\n";
  out << "  prompt    " << job.request().prompt() << "\n";
  if (job.request().has_radial()) out << "  radial    " << DescribeRadial(job.request().radial()) << "\n";
  if (job.created_unix_ms() != 0) out << "  created   " << UtcTime(job.created_unix_ms()) << "\n";
  if (job.started_unix_ms() != 0) out << "  started   " << UtcTime(job.started_unix_ms()) << "\n";
  if (job.finished_unix_ms() != 0) out << "  finished  " << UtcTime(job.finished_unix_ms()) << "\n";
  if (job.has_error() && job.error().code() != 0) {
    out << "  error     " << DescribeStatus(job.error().code(), job.error().message()) << "\n";
  }
  if (job.state() == v1::JOB_STATE_SUCCEEDED && job.has_stats()) {
    out << "  frames    " << job.stats().frames() << "\n";
    PrintStats(job.stats(), out);
  }
}

void PrintJobs(const v1::ListJobsResponse& jobs, bool filtered, std::ostream& out) {
  if (jobs.jobs().empty()) {
    out << (filtered ? "no jobs match\n" : "no jobs\n");
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "MODEL", "SIZE", "STEPS", "CREATED (UTC)", "BYTES"}};
  for (const v1::Job& job : jobs.jobs()) {
    const v1::GenerateRequest& request = job.request();
    // Seconds are enough to tell jobs apart in a list; `status` shows milliseconds.
    const std::string created = job.created_unix_ms() != 0 ? UtcTime(job.created_unix_ms()).substr(0, 19) : "-";
    rows.push_back({job.id(), JobStateName(job.state()), request.model().empty() ? "-" : request.model(),
                    absl::StrCat(request.width(), "x", request.height(), "x", request.frames()),
                    absl::StrCat(request.steps()), created, FormatBytes(job.bytes_produced())});
  }
  PrintTable(rows, out);
}

void PrintModels(const v1::ListModelsResponse& models, std::ostream& out) {
  if (models.models().empty()) {
    out << "no models: no worker is connected\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MODEL", "ARCHITECTURE", "WIDTH", "HEIGHT", "FRAMES", "STEPS", "GUIDANCE", "PROMPT", "LAYERS", "WORKERS"}};
  for (const v1::ModelInfo& model : models.models()) {
    const std::string multiple = model.size_multiple() > 1 ? absl::StrCat(" /", model.size_multiple()) : "";
    rows.push_back(
        {model.name() + (model.name() == models.default_model() ? " *" : ""),
         model.architecture().empty() ? "-" : model.architecture(), RangeText(model.width()) + multiple,
         RangeText(model.height()) + multiple,
         RangeText(model.frames()) + (model.frame_step() > 1 ? absl::StrCat(" (", model.frame_step(), "k+1)") : ""),
         RangeText(model.steps()), absl::StrCat("0-", Number(model.guidance_max())),
         absl::StrCat(model.prompt_max_chars(), " chars"), absl::StrCat(model.layers()),
         absl::StrCat(model.workers())});
  }
  PrintTable(rows, out);
  out << "\ndefaults:\n";
  for (const v1::ModelInfo& model : models.models()) {
    out << "  " << model.name() << ": " << DescribeRequest(model.defaults());
    if (model.defaults().has_radial()) out << "; radial " << DescribeRadial(model.defaults().radial());
    out << "\n";
  }
  if (!models.default_model().empty()) out << "* default model (used when --model is not given)\n";
}

void PrintJson(const google::protobuf::Message& message, std::ostream& out) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    out << "{\"error\": \"cannot render JSON\"}\n";  // only for messages that are not valid UTF-8
    return;
  }
  out << json << "\n";
}

}  // namespace radial::client
