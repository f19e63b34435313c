#include "worker_metrics.h"

#include "absl/strings/str_cat.h"
#include "radial/common/metrics.h"

namespace radial::worker {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

}  // namespace

WorkerMetrics::WorkerMetrics(std::shared_ptr<prometheus::Registry> registry, const std::string& model,
                             std::function<GpuMemory()> read_gpu_memory)
    : registry_(std::move(registry)),
      model_(model),
      read_gpu_memory_(std::move(read_gpu_memory)),
      state_(BuildGauge()
                 .Name("radial_worker_state")
                 .Help("1 for the worker's current state (loading, warming, idle, busy, draining), 0 for the others")
                 .Register(*registry_)),
      jobs_(BuildCounter()
                .Name("radial_worker_jobs_total")
                .Help("Jobs this worker ended, by outcome code (OK, CANCELLED, INVALID_ARGUMENT, INTERNAL, ...)")
                .Register(*registry_)),
      stage_seconds_(BuildHistogram()
                         .Name("radial_worker_stage_seconds")
                         .Help("Time of each finished job's stages: text_encode, denoise, decode, encode")
                         .Register(*registry_)),
      step_seconds_(BuildHistogram()
                        .Name("radial_worker_step_seconds")
                        .Help("One denoising step, by the attention it ran (radial or dense)")
                        .Register(*registry_)),
      first_fragment_seconds_(BuildHistogram()
                                  .Name("radial_worker_first_fragment_seconds")
                                  .Help("Each finished job's start on the worker to its first media fragment")
                                  .Register(*registry_)
                                  .Add({{"model", model}}, common::JobLatencyBuckets())),
      last_step_to_first_fragment_seconds_(
          BuildHistogram()
              .Name("radial_worker_last_step_to_first_fragment_seconds")
              .Help("Each finished job's last denoising step to its first media fragment (decode and encode "
                    "of the first fragment)")
              .Register(*registry_)
              .Add({{"model", model}}, common::StepBuckets())),
      mask_density_(BuildGauge()
                        .Name("radial_worker_mask_density")
                        .Help("Tile density of the last job's radial attention mask (1 when it ran dense)")
                        .Register(*registry_)),
      gpu_memory_(BuildGauge()
                      .Name("radial_worker_gpu_memory_bytes")
                      .Help("LibTorch CUDA caching allocator: allocated (in tensors), reserved (from the driver), "
                            "peak (most allocated since start); 0 on the CPU")
                      .Register(*registry_)),
      model_load_seconds_(BuildGauge()
                              .Name("radial_worker_model_load_seconds")
                              .Help("Time to load the model bundle at start")
                              .Register(*registry_)
                              .Add({{"model", model}})),
      warmup_seconds_(BuildGauge()
                          .Name("radial_worker_warmup_seconds")
                          .Help("Time spent warming up before announcing the model")
                          .Register(*registry_)
                          .Add({{"model", model}})) {
  BuildGauge()
      .Name("radial_build_info")
      .Help("Always 1; the labels say which build of which component this is")
      .Register(*registry_)
      .Add({{"component", "worker"}, {"version", common::BuildVersion()}})
      .Set(1);
  // Series that exist (at 0) before anything happens, so that rate() and alerts have data.
  for (const WorkerState state : kWorkerStates) state_.Add({{"model", model_}, {"state", WorkerStateName(state)}});
  state_.Add({{"model", model_}, {"state", WorkerStateName(WorkerState::kLoading)}}).Set(1);
  for (const char* code : {"OK", "CANCELLED", "INVALID_ARGUMENT", "INTERNAL", "UNAVAILABLE"}) {
    jobs_.Add({{"model", model_}, {"code", code}});
  }
  for (const char* stage : {"text_encode", "denoise", "decode", "encode"}) {
    stage_seconds_.Add({{"model", model_}, {"stage", stage}}, common::StepBuckets());
  }
  for (const char* attention : {"radial", "dense"}) {
    step_seconds_.Add({{"model", model_}, {"attention", attention}}, common::StepBuckets());
  }
  for (const char* kind : {"allocated", "reserved", "peak"}) gpu_memory_.Add({{"model", model_}, {"kind", kind}});
}

void WorkerMetrics::StateChanged(WorkerState state) {
  state_now_ = state;
  state_.Add({{"model", model_}, {"state", WorkerStateName(state)}}).Set(1);
  for (const WorkerState other : kWorkerStates) {
    if (other != state) state_.Add({{"model", model_}, {"state", WorkerStateName(other)}}).Set(0);
  }
}

void WorkerMetrics::JobEnded(const JobRecord& job) {
  jobs_.Add({{"model", model_}, {"code", common::StatusCodeLabel(job.code)}}).Increment();
  if (job.stages.has_value()) {
    const auto observe = [&](const char* stage, double seconds) {
      stage_seconds_.Add({{"model", model_}, {"stage", stage}}, common::StepBuckets()).Observe(seconds);
    };
    observe("text_encode", job.stages->text_encode);
    observe("denoise", job.stages->denoise);
    observe("decode", job.stages->decode);
    observe("encode", job.stages->encode);
  }
  if (job.stream.has_value()) {
    first_fragment_seconds_.Observe(job.stream->first_fragment);
    last_step_to_first_fragment_seconds_.Observe(job.stream->last_step_to_first_fragment);
  }
  if (job.mask_density.has_value()) mask_density_.Add({{"model", model_}}).Set(*job.mask_density);
  prometheus::Histogram& radial =
      step_seconds_.Add({{"model", model_}, {"attention", "radial"}}, common::StepBuckets());
  prometheus::Histogram& dense = step_seconds_.Add({{"model", model_}, {"attention", "dense"}}, common::StepBuckets());
  for (const StepTime& step : job.steps) (step.dense ? dense : radial).Observe(step.seconds);
  RefreshGpuMemory();
}

absl::Status WorkerMetrics::Ready() const {
  const WorkerState state = state_now_.load();
  if (state == WorkerState::kIdle || state == WorkerState::kBusy) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("not ready: ", WorkerStateName(state)));
}

void WorkerMetrics::ModelLoaded(double seconds) { model_load_seconds_.Set(seconds); }

void WorkerMetrics::WarmedUp(double seconds) { warmup_seconds_.Set(seconds); }

void WorkerMetrics::RefreshGpuMemory() {
  const GpuMemory memory = read_gpu_memory_ ? read_gpu_memory_() : GpuMemory{};
  gpu_memory_.Add({{"model", model_}, {"kind", "allocated"}}).Set(static_cast<double>(memory.allocated_bytes));
  gpu_memory_.Add({{"model", model_}, {"kind", "reserved"}}).Set(static_cast<double>(memory.reserved_bytes));
  gpu_memory_.Add({{"model", model_}, {"kind", "peak"}}).Set(static_cast<double>(memory.peak_bytes));
}

}  // namespace radial::worker
