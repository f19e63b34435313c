// pipeline_trace: runs the worker's generation pipeline once on a bundle, prints the timing report
// as JSON, and with --out writes what the reference comparison (tests/exporter/
// test_pipeline_parity.py) needs: the final latents and the decoded video as raw little-endian
// float32 (latents.f32, video.f32) with their shapes and the report in trace.json, and the token
// ids of a list of prompts. A developer tool, not part of the service.
//
//   pipeline_trace --bundle DIR [--device cpu|cuda] [--out DIR] --prompt P [--negative-prompt N]
//                  --width W --height H --frames F --steps S --guidance G --seed X
//                  [--dense 0|1] [--dense-steps N] [--repeat N] [--prompts-json FILE]
//                  [--sizes WxHxF,...] [--jit-executor profiling|simple|legacy]
//                  [--devices D,D,... [--cfg-parallel true]]
//
// --repeat runs the same generation N times in the process and prints a report per run: the first
// includes TorchScript's one-time work (profiling runs, fusion compiles) for this shape. --sizes
// runs each listed size in turn instead of --width/--height/--frames (GPU memory after each run is
// in the report). --jit-executor picks TorchScript's graph executor (LoadOptions::jit_executor).
// --devices and --cfg-parallel run it on a device group (LoadOptions::devices; the parity test of
// tests/worker/device_group_test.py compares its latents with one device's).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gpu_memory.h"
#include "pipeline.h"
#include "prompt_clean.h"
#include "radial/common/flags.h"
#include "tokenizer.h"

namespace {

using radial::worker::GenerationCallbacks;
using radial::worker::GenerationParams;
using radial::worker::Pipeline;

constexpr char kUsage[] =
    "usage: pipeline_trace --bundle DIR [--device cpu|cuda] [--out DIR] --prompt P [--negative-prompt N]\n"
    "                      --width W --height H --frames F --steps S --guidance G --seed X [--dense 0|1]\n"
    "                      [--dense-steps N] [--repeat N] [--prompts-json FILE] [--sizes WxHxF,...]\n"
    "                      [--devices D,D,... [--cfg-parallel true]]\n"
    "                      [--jit-executor profiling|simple|legacy]\n";

int Fail(const std::string& message) {
  std::cerr << "pipeline_trace: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == radial::worker::kGroupMemberFlag) {
    return radial::worker::RunGroupMember(argc, argv);
  }
  std::string bundle, out, guidance = "0", prompts_json, device = "cpu", sizes_text, devices, cfg_parallel = "false";
  radial::worker::LoadOptions load_options;
  GenerationParams params;
  int64_t dense = 1, dense_steps = -1, repeat = 1;
  const auto integer = [](int64_t* target) {
    return radial::common::IntegerFlag(0, 1 << 30, [target](int64_t v) { *target = v; });
  };
  int64_t seed = 0;
  if (auto status = radial::common::ParseFlags(
          argc, argv,
          {{"--bundle", radial::common::StringFlag(&bundle)},
           {"--out", radial::common::StringFlag(&out)},
           {"--device", radial::common::StringFlag(&device)},
           {"--dense-steps", integer(&dense_steps)},
           {"--repeat", radial::common::IntegerFlag(1, 100, [&](int64_t v) { repeat = v; })},
           {"--prompt", radial::common::StringFlag(&params.prompt)},
           {"--negative-prompt", radial::common::StringFlag(&params.negative_prompt)},
           {"--width", integer(&params.width)},
           {"--height", integer(&params.height)},
           {"--frames", integer(&params.frames)},
           {"--steps", integer(&params.steps)},
           {"--guidance", radial::common::StringFlag(&guidance)},
           {"--seed", integer(&seed)},
           {"--dense", radial::common::IntegerFlag(0, 1, [&](int64_t v) { dense = v; })},
           {"--prompts-json", radial::common::StringFlag(&prompts_json)},
           {"--sizes", radial::common::StringFlag(&sizes_text)},
           {"--jit-executor", radial::common::StringFlag(&load_options.jit_executor)},
           {"--devices", radial::common::StringFlag(&devices)},
           {"--cfg-parallel", radial::common::StringFlag(&cfg_parallel)}},
          kUsage, std::cout, std::cerr)) {
    return *status;
  }
  if (bundle.empty()) return Fail("--bundle is required");
  params.guidance = std::stod(guidance);
  params.seed = static_cast<uint64_t>(seed);
  params.dense = dense != 0;

  const auto sizes = radial::worker::ParseWarmupSizes(sizes_text);
  if (!sizes.ok()) return Fail(std::string(sizes.status().message()));
  std::vector<radial::worker::WarmupSize> runs = *sizes;
  if (runs.empty()) runs.push_back({params.width, params.height, params.frames});
  load_options.device = device;
  if (!devices.empty()) {
    load_options.devices = absl::StrSplit(devices, ',');
    load_options.device = load_options.devices[0];
  }
  load_options.cfg_parallel = cfg_parallel == "true";
  auto pipeline = Pipeline::Load(bundle, load_options);
  if (!pipeline.ok()) return Fail(std::string(pipeline.status().message()));
  const auto& manifest = (*pipeline)->manifest();
  params.radial = manifest.radial;
  if (dense_steps >= 0) params.radial.dense_steps = dense_steps;

  nlohmann::json trace;
  if (!prompts_json.empty()) {
    // Token ids of each prompt, after the same clean-up the pipeline applies.
    auto tokenizer = radial::worker::Tokenizer::Load(manifest.Path(manifest.tokenizer_file), manifest.max_length,
                                                     manifest.pad_id, manifest.eos_id);
    if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
    std::ifstream file(prompts_json);
    for (const auto& prompt : nlohmann::json::parse(file)) {
      auto tokens = (*tokenizer)->Encode(radial::worker::CleanPrompt(prompt.get<std::string>()));
      if (!tokens.ok()) return Fail(std::string(tokens.status().message()));
      trace["tokens"].push_back({{"ids", tokens->ids}, {"mask", tokens->mask}});
    }
  }

  GenerationCallbacks callbacks;
  callbacks.frame = [](const uint8_t*, int64_t) { return absl::OkStatus(); };
  if (!out.empty()) {
    callbacks.inspect = [&](const std::string& name, const std::vector<int64_t>& shape, const float* data) {
      int64_t count = 1;
      for (int64_t size : shape) count *= size;
      std::ofstream file(out + "/" + name + ".f32", std::ios::binary);
      file.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(float)));
      trace[name] = shape;
    };
  }
  int64_t run = 0;
  for (int64_t round = 0; round < repeat; ++round) {
    for (const radial::worker::WarmupSize& size : runs) {
      params.width = size.width;
      params.height = size.height;
      params.frames = size.frames;
      const auto report = (*pipeline)->Generate(params, callbacks);
      if (!report.ok()) return Fail(std::string(report.status().message()));
      const radial::worker::GpuMemory memory = radial::worker::ReadGpuMemory((*pipeline)->device_name());
      trace["report"] = {{"run", ++run},
                         {"device", (*pipeline)->device_name()},
                         {"size", std::to_string(size.width) + "x" + std::to_string(size.height) + "x" +
                                      std::to_string(size.frames)},
                         {"jit_executor", load_options.jit_executor},
                         {"text_encode_seconds", report->text_encode_seconds},
                         {"denoise_seconds", report->denoise_seconds},
                         {"decode_seconds", report->decode_seconds},
                         {"decode_chunks", report->decode_chunks},
                         {"mask_density", report->mask_density},
                         {"steps", params.steps},
                         {"dense", params.dense},
                         {"dense_steps", params.radial.dense_steps},
                         {"gpu_allocated_bytes", memory.allocated_bytes},
                         {"gpu_reserved_bytes", memory.reserved_bytes},
                         {"gpu_peak_bytes", memory.peak_bytes}};
      std::cout << trace["report"].dump() << std::endl;
    }
  }
  if (!out.empty()) std::ofstream(out + "/trace.json") << trace.dump(1) << "\n";
  return 0;
}
