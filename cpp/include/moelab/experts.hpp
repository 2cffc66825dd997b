// Grouped gated experts: y_e = down_e( act(gate_e x) * up_e x ) over row blocks sorted by expert.
#pragma once

#include <cstdint>
#include <vector>

#include "moelab/spec.hpp"

namespace moelab {

// A weight tensor in float32 or bfloat16 (exactly one pointer set).
struct WeightPtr {
    const float* f32 = nullptr;
    const std::uint16_t* bf16 = nullptr;
};

// One stack of experts with the canonical layout (row-major):
//   gate_up (E, 2I, H): gate rows [0, I), up rows [I, 2I);  down (E, H, I);
//   gate_up_bias (E, 2I) and down_bias (E, H) float32 or nullptr.
struct ExpertStack {
    WeightPtr gate_up;
    WeightPtr down;
    const float* gate_up_bias = nullptr;
    const float* down_bias = nullptr;
    Index num_experts = 0;
    Index hidden = 0;        // H
    Index intermediate = 0;  // I
    Activation activation = Activation::Silu;
};

// A batch for one stack: rows of `input` (R, H) grouped by expert as `offsets` (E + 1) say;
// `scratch` (R, 2I) is overwritten; `output` (R, H) receives each row's expert output.
// With `source` set, row r is source row source_rows[r] (stride H, (source_rows[r] + 1) * H <
// 2^31), and `input` is `gathered`, a buffer (R, H) that run_experts fills only where the dot
// path reads it: token panels are packed straight from `source`, so most rows are never copied.
struct ExpertBatch {
    ExpertStack stack;
    const Index* offsets = nullptr;
    const float* input = nullptr;
    float* scratch = nullptr;
    float* output = nullptr;
    const float* source = nullptr;
    const std::int32_t* source_rows = nullptr;  // (R)
    float* gathered = nullptr;                  // (R, H)
};

// Wall-clock seconds of the phases of run_experts.
struct ExpertTimings {
    double pack = 0.0, gate_up = 0.0, down = 0.0;
};

// Runs every batch in one task pool over (batch, expert, row block, output tile): first gate+up
// (fused, activation applied before the store), then down. The decomposition depends only on
// the shapes, never on the thread count, so results are bitwise identical for any count.
// Returns false if a task failed (out of memory inside Eigen); nothing throws from the pool.
bool run_experts(const std::vector<ExpertBatch>& batches, int threads,
                 ExpertTimings* timings = nullptr) noexcept;

}  // namespace moelab
