// A LibTorch translation unit kept small on purpose: c10's CUDA headers only, no torch/.
#include "gpu_memory.h"

#include <c10/core/Device.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>

#include <exception>

namespace radial::worker {

GpuMemory ReadGpuMemory(const std::string& device) {
  try {
    const c10::Device parsed(device);  // throws c10::Error for a malformed name
    if (!parsed.is_cuda()) return {};
    const c10::DeviceIndex index = parsed.has_index() ? parsed.index() : 0;
    if (index < 0 || index >= c10::cuda::device_count()) return {};  // device_count: 0 without CUDA
    // Throws for a device the allocator has not been initialised for.
    const c10::CachingDeviceAllocator::DeviceStats stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    constexpr auto kAggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return {stats.allocated_bytes[kAggregate].current, stats.reserved_bytes[kAggregate].current,
            stats.allocated_bytes[kAggregate].peak};
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace radial::worker
