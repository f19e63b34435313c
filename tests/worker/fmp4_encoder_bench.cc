// Encode speed of Fmp4Encoder: frames of a moving gradient, RGB24 in, chunks discarded.
// Usage: fmp4_encoder_bench [width height frames preset threads]   (default 832 480 81 veryfast 0)
// Prints one line: size, preset, threads, ms/frame (conversion + x264 + muxing), output bytes.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "worker/encoder/fmp4_encoder.h"

int main(int argc, char** argv) {
  radial::worker::EncoderOptions options;
  options.width = argc > 1 ? std::atoi(argv[1]) : 832;
  options.height = argc > 2 ? std::atoi(argv[2]) : 480;
  const int frames = argc > 3 ? std::atoi(argv[3]) : 81;
  options.preset = argc > 4 ? argv[4] : "veryfast";
  options.threads = argc > 5 ? std::atoi(argv[5]) : 0;
  options.fps = radial::worker::FrameRate{16, 1};

  // Frames are made up front so that only the encoder is timed.
  const int64_t stride = 3 * int64_t{options.width};
  std::vector<std::vector<uint8_t>> rgb(static_cast<size_t>(frames));
  for (int i = 0; i < frames; ++i) {
    rgb[i].resize(static_cast<size_t>(stride * options.height));
    for (int y = 0; y < options.height; ++y) {
      for (int x = 0; x < options.width; ++x) {
        uint8_t* p = &rgb[i][static_cast<size_t>(y * stride + 3 * x)];
        p[0] = static_cast<uint8_t>(x + 5 * i);
        p[1] = static_cast<uint8_t>(y + 3 * i);
        p[2] = static_cast<uint8_t>((x ^ y) + 9 * i);
      }
    }
  }
  int64_t bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  auto encoder = radial::worker::Fmp4Encoder::Create(
      options, [&bytes](const radial::worker::Chunk& chunk) {
        bytes += static_cast<int64_t>(chunk.bytes.size());
        return absl::OkStatus();
      });
  if (!encoder.ok()) {
    std::fprintf(stderr, "%s\n", encoder.status().ToString().c_str());
    return 1;
  }
  for (int i = 0; i < frames; ++i) {
    if (absl::Status status = (*encoder)->AddFrame(rgb[i].data(), stride); !status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return 1;
    }
  }
  if (absl::Status status = (*encoder)->Finish(); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("%dx%d frames=%d preset=%s threads=%d: %.2f ms/frame (%.0f ms total), %lld bytes\n",
              options.width, options.height, frames, options.preset.c_str(), options.threads,
              ms / frames, ms, static_cast<long long>(bytes));
  return 0;
}
