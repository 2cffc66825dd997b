// Token embedding: out[t] = table[ids[t]] (* scale), the rows of a (V, H) table gathered as
// float32. The table is float32 or bfloat16, read in place.
//
// The scale is Gemma's sqrt(H), applied as transformers applies it: the scale rounded to the
// table's dtype, the product computed in the table's dtype (for bfloat16: rounded to bfloat16,
// to nearest even), then widened to float32.
#pragma once

#include <cstdint>

#include "moelab/types.hpp"
#include "moelab/weights.hpp"

namespace moelab {

struct EmbeddingTable {
    WeightPtr table;       // (V, H)
    Index vocab = 0;       // V
    Index hidden = 0;      // H
};

// out (T, H) = table[ids] * scale (has_scale false: the rows as they are). Every id must be in
// [0, V): the caller checks (this never throws). Rows in parallel on up to `threads` threads;
// a row is a copy, so the bits do not depend on the thread count. No allocation.
void embedding(const std::int64_t* ids, Index num_tokens, const EmbeddingTable& t, bool has_scale,
               float scale, float* out, int threads) noexcept;

}  // namespace moelab
