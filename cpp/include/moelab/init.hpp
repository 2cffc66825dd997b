// Deterministic random initialisation, independent of the thread count.
#pragma once

#include <cstdint>

#include "moelab/types.hpp"

namespace moelab {

// data[i] = uniform in [-bound, bound), a counter-based hash of (seed, stream, offset + i).
void fill_uniform(float* data, Index n, float bound, std::uint64_t seed, std::uint64_t stream,
                  Index offset) noexcept;

}  // namespace moelab
