// Dense projection y (T, N) = x (T, K) . W^T (+ bias), W (N, K) row-major read in place as
// float32 or bfloat16: the projections of the token mixers and the LM head.
//
// It runs the expert kernels (experts.hpp) as one expert without gate/up: the same plan (dot
// products for a few rows, token panels on AVX-512 and AVX2 for many), the same task pool, the same bits
// for any thread count. Planned sizes live in an ExpertScratch the caller owns (a thread's
// Workspace::experts, or one per thread inside a parallel region).
#pragma once

#include "moelab/experts.hpp"

namespace moelab {

struct LinearWeight {
    WeightPtr weight;             // (N, K)
    const float* bias = nullptr;  // (N) or nullptr
    Index out_features = 0;       // N
    Index in_features = 0;        // K, <= kMaxDimension
};

// The planning step for calls of up to max_rows rows: grows `scratch` (std::bad_alloc), before
// any parallel region. After it, linear and linear_here of up to max_rows rows never allocate.
void reserve_linear(const LinearWeight& w, Index max_rows, ExpertScratch& scratch);

// y (T, N) = x (T, K) . W^T (+ bias), on up to `threads` threads (the task pool). False, with y
// untouched, if scratch was not reserved for T rows.
bool linear(const float* x, Index num_rows, const LinearWeight& w, float* y, int threads,
            ExpertScratch& scratch) noexcept;

// The same on the calling thread alone, for a caller that cuts the rows itself inside its own
// parallel region (each thread with its own scratch, reserved before the region). For the same
// rows, the same bits as linear.
bool linear_here(const float* x, Index num_rows, const LinearWeight& w, float* y,
                 ExpertScratch& scratch) noexcept;

}  // namespace moelab
