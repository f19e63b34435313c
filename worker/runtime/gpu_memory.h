// The GPU memory LibTorch's CUDA caching allocator holds, for the worker's metrics. Plain C++ (the
// LibTorch headers stay in gpu_memory.cc), so the gRPC side can call it.
#ifndef RADIAL_WORKER_RUNTIME_GPU_MEMORY_H_
#define RADIAL_WORKER_RUNTIME_GPU_MEMORY_H_

#include <cstdint>
#include <string>

namespace radial::worker {

struct GpuMemory {
  int64_t allocated_bytes = 0;  // in tensors now
  int64_t reserved_bytes = 0;   // held by the allocator from the driver (allocated + cached)
  int64_t peak_bytes = 0;       // most allocated at once since the process started
};

// The allocator's statistics for `device` ("cuda", meaning cuda:0, or "cuda:N"). All zero for a
// CPU device, a name that does not parse, a build or machine without CUDA, a device the allocator
// has not set up yet (nothing allocated on it so far), or any error: it never throws, and it never
// initialises CUDA for a non-CUDA device. Thread-safe (the allocator takes its own lock).
GpuMemory ReadGpuMemory(const std::string& device);

}  // namespace radial::worker

#endif  // RADIAL_WORKER_RUNTIME_GPU_MEMORY_H_
