// The error vocabulary of every C++ component: absl::Status / absl::StatusOr values, propagated
// with these two macros (Triton's RETURN_IF_ERROR is the model).
//
//   RADIAL_RETURN_IF_ERROR(store.Put(row));             // returns the Status when it is not OK
//   RADIAL_ASSIGN_OR_RETURN(auto rows, store.LoadAll()); // declares rows, or returns the error
#ifndef RADIAL_COMMON_STATUS_MACROS_H_
#define RADIAL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RADIAL_STATUS_CONCAT_INNER(a, b) a##b
#define RADIAL_STATUS_CONCAT(a, b) RADIAL_STATUS_CONCAT_INNER(a, b)

#define RADIAL_RETURN_IF_ERROR(expr)                                         \
  do {                                                                       \
    if (::absl::Status radial_status_ = (expr); !radial_status_.ok()) {      \
      return radial_status_;                                                 \
    }                                                                        \
  } while (false)

#define RADIAL_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#define RADIAL_ASSIGN_OR_RETURN(lhs, expr) \
  RADIAL_ASSIGN_OR_RETURN_IMPL(RADIAL_STATUS_CONCAT(radial_statusor_, __LINE__), lhs, expr)

#endif  // RADIAL_COMMON_STATUS_MACROS_H_
