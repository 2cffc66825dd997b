// RMSNorm over the last axis: y[t] = x[t] / rms(x[t]) * (offset + w), rms = sqrt(mean(x^2) + eps).
//
// offset 0 is the Llama/Qwen norm (y = x / rms * w), offset 1 Gemma's (y = x / rms * (1 + w),
// its weights stored as w - 1). The weight is float32 or bfloat16, read in place.
#pragma once

#include "moelab/types.hpp"
#include "moelab/weights.hpp"

namespace moelab {

// How a row is normalised.
//   Double:  mean(x^2), 1/sqrt and the products in double, y rounded to float32 once.
//   Float32: the steps of transformers' Qwen3RMSNorm / Gemma3RMSNorm in float32: the mean of
//            squares rounded to float32 (summed in double first, so that it is the correctly
//            rounded mean whatever the order), r = 1 / sqrtf(mean + eps), h = x * r, then
//            h * w (offset 0) or h * (1 + w) (offset 1), each rounded to float32.
enum class NormMath { Double, Float32 };

struct RmsNormWeight {
    WeightPtr weight;     // (H)
    Index hidden = 0;     // H >= 1
    float eps = 1e-6f;    // >= 0, finite
    float offset = 0.0f;  // 0 or 1
};

// y (T, H) = rms_norm(x (T, H)); rows in parallel on up to `threads` threads, each row by one
// thread in a fixed order (the same bits for any thread count). y may alias x. No allocation.
void rms_norm(const float* x, Index num_rows, const RmsNormWeight& w, NormMath math, float* y,
              int threads) noexcept;

}  // namespace moelab
