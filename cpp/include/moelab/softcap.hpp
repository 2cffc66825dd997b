// Logit soft-capping: y = c * tanh(x / c), in float32 step by step as transformers writes it
// (Gemma 2/3's final_logit_softcapping, Grok's capped logits). Bounds |y| below c.
#pragma once

#include "moelab/types.hpp"

namespace moelab {

// y (n) = cap * tanh(x / cap), cap > 0 (the caller checks). Elements in parallel on up to
// `threads` threads; each element on its own, so the bits do not depend on the thread count.
// y may alias x. No allocation.
void logit_softcap(const float* x, Index n, float cap, float* y, int threads) noexcept;

}  // namespace moelab
