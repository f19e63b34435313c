// Linking anchor for libradial_ops.so. A C++ program that runs TorchScript calling torch.ops.radial.*
// must have the library loaded; calling this function from the program makes the linker keep the
// dependency (no --no-as-needed tricks) and checks that the ops are registered.
#ifndef RADIAL_KERNELS_OPS_LIBRARY_H_
#define RADIAL_KERNELS_OPS_LIBRARY_H_

namespace radial::kernels {

// Throws std::runtime_error if torch.ops.radial.attention is not registered (never expected).
void EnsureOpsRegistered();

}  // namespace radial::kernels

#endif  // RADIAL_KERNELS_OPS_LIBRARY_H_
