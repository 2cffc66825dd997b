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
// Throws std::invalid_argument unless a cache or state (`what`: "cache", "state") was made by
// this layer (owner == layer_id); the message names the layer's kind and its `factory` method:
// "cache: belongs to another Attention layer (make it with this layer's new_cache())".
void require_own(const char* what, std::uint64_t owner, std::uint64_t layer_id,
                 const char* kind, const char* factory);
// Throws std::invalid_argument naming x unless the positions pos0 .. pos0 + T - 1 of a
// forward's tokens are below max_positions (max_position_embeddings).
void require_positions(Index pos0, Index T, Index max_positions);

}  // namespace moelab
