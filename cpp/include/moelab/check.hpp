// Input checks shared by the layers and ops; they run before any parallel region.
#pragma once

#include <cstdint>

#include "moelab/types.hpp"

namespace moelab {

// Throws std::invalid_argument naming `what` and the first bad flat index if any of the n
// values is NaN or Inf.
void require_finite(const float* data, Index n, const char* what);
// The same for bfloat16 bit patterns.
void require_finite(const std::uint16_t* data, Index n, const char* what);
// Throws std::invalid_argument naming `name` unless 1 <= value <= max.
void require_dimension(const char* name, Index value, Index max);

}  // namespace moelab
