#include "moelab/linear.hpp"

namespace moelab {

namespace {

ExpertStack projection(const LinearWeight& w) {
    ExpertStack s;
    s.down = &w.weight;  // one expert
    s.down_bias = w.bias;
    s.num_experts = 1;
    s.input_width = w.in_features;
    s.output_width = w.out_features;
    return s;
}

// The batch of one projection over rows [0, T) of x; offsets (2) = {0, T}.
ExpertBatch projection_batch(const float* x, const LinearWeight& w, float* y,
                             const Index* offsets) {
    ExpertBatch b;
    b.stack = projection(w);
    b.offsets = offsets;
    b.rows = x;
    b.output = y;
    return b;
}

}  // namespace

void reserve_linear(const LinearWeight& w, Index max_rows, ExpertScratch& scratch) {
    const ExpertStack stack = projection(w);
    scratch.reserve(&stack, &max_rows, 1);
}

bool linear(const float* x, Index T, const LinearWeight& w, float* y, int threads,
            ExpertScratch& scratch) noexcept {
    const Index offsets[2] = {0, T};
    const ExpertBatch b = projection_batch(x, w, y, offsets);
    if (!plan_experts_within(&b, 1, scratch)) return false;
    run_experts(&b, 1, scratch, threads);
    return true;
}

bool linear_here(const float* x, Index T, const LinearWeight& w, float* y,
                 ExpertScratch& scratch) noexcept {
    const Index offsets[2] = {0, T};
    const ExpertBatch b = projection_batch(x, w, y, offsets);
    if (!plan_experts_within(&b, 1, scratch)) return false;
    run_experts_here(&b, 1, scratch);
    return true;
}

}  // namespace moelab
