// Grouped experts over row blocks sorted by expert: gated experts y_e = down_e( act(gate_e x) *
// up_e x ), and plain projections y_e = x W_e^T (+ b_e), which run on the same kernels.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "moelab/aligned.hpp"
#include "moelab/spec.hpp"
#include "moelab/weights.hpp"

namespace moelab {

// One stack of experts, each expert's weights where they lie: one pointer per expert and
// projection (row-major), so that a stacked tensor (pointers into it) and per-expert tensors
// (a checkpoint's, read in place) take the same kernels:
//   gate_up (2E): expert e's gate rows (I, H) at [2e], its up rows (I, H) at [2e + 1];
//   down (E): expert e's down rows (H, I);
//   gate_up_bias (E, 2I) and down_bias (E, H) float32 or nullptr.
// Without gate_up each expert is one projection: down[e] (N, K) (+ down_bias (E, N)) applied to
// the input rows themselves (linear.hpp).
struct ExpertStack {
    const WeightPtr* gate_up = nullptr;
    const WeightPtr* down = nullptr;
    const float* gate_up_bias = nullptr;
    const float* down_bias = nullptr;
    Index num_experts = 0;
    Index input_width = 0;   // H (a projection's K): the length of an input row
    Index intermediate = 0;  // I: the width of act(gate) * up (0 for a projection)
    Index output_width = 0;  // H (a projection's N): the length of an output row
    Activation activation = Activation::Silu;

    bool gated() const { return gate_up != nullptr; }
    Index down_k() const { return gated() ? intermediate : input_width; }  // down's row length
    const WeightPtr& gate(Index e) const { return gate_up[2 * e]; }
    const WeightPtr& up(Index e) const { return gate_up[2 * e + 1]; }
};

// pack_panel's row offsets are int32: a batch gathers its rows from `tokens` only when every
// offset token * input_width is below this.
constexpr Index kMaxGatherOffset = Index(1) << 31;

// A batch for one stack: R rows grouped by expert as `offsets` (E + 1) say. Row r's input is row
// r of `rows` (R, K), or, when `tokens` is set, row token_of_row[r] of `tokens` (T, K): the panel
// path then packs straight from `tokens`, and only the rows the dot path reads are copied, into
// `gathered` (R, K) at their batch positions.
struct ExpertBatch {
    ExpertStack stack;
    const Index* offsets = nullptr;              // (E + 1)
    const float* rows = nullptr;                 // (R, K), or nullptr when gathered from tokens
    const float* tokens = nullptr;               // (T, K)
    const std::int32_t* token_of_row = nullptr;  // (R)
    float* gathered = nullptr;                   // (R, K), with tokens
    float* hidden = nullptr;   // (R, 2I), gated stacks: the dot path's gate and up sums, then h
                               // = act(gate) * up stored over the gate half
    float* output = nullptr;   // (R, N)
};

// The paths an expert's rows can take. Dot: each output is a dot product of a row with a weight
// row (gemm_nt), for experts with few rows (decode). Panels (AVX-512): the rows are packed into
// panels of kPanel tokens and each weight element is broadcast against a panel (an outer
// product), for experts with many rows (prefill).
enum class ExpertPath { Dot, Panels };

// How one projection phase (gate/up, or down) of an expert is cut into tasks.
struct PhasePlan {
    Index rows_per_task = 0;  // rows of one task (on the panel path a whole number of panels)
    Index cols_per_task = 0;  // output columns of one task
    Index chunk_k = 0;        // K is cut in chunks of this many (K itself: not cut)
    bool prefetch = false;    // the panel kernel prefetches the next block of weight rows
};

// The plan of one expert, chosen by plan_expert from the shapes, the weight dtype and the active
// ISA only (never the thread count); every task of the expert follows it.
struct ExpertPlan {
    ExpertPath path = ExpertPath::Dot;
    Index row0 = 0;         // the expert's first row in the batch
    Index panel_rows = 0;   // rows [row0, row0 + panel_rows) go through panels (0 on the dot path)
    Index dot_rows = 0;     // the rows after them take the dot kernel: all of them on the dot
                            // path; on the panel path the few past its last full panel (a tail),
                            // run on each block of weight rows right after the panels read it
    Index first_panel = 0;  // the index of its first panel in the batch's panel buffers
    Index panels = 0;       // ceil(panel_rows / kPanel)
    PhasePlan gate_up, down;
};

// The units of work of run_experts' task pool, one kind per kernel.
enum class TaskKind : std::uint8_t { Gather, Pack, GateUpDot, GateUpPanels, DownDot, DownPanels };

struct Task {
    TaskKind kind = TaskKind::Gather;
    std::int32_t batch = 0, expert = 0;
    Index row0 = 0, rows = 0;      // the batch rows it reads (the panel kinds: those in its panels)
    Index panel0 = 0, panels = 0;  // Pack and *Panels: panels [panel0, panel0 + panels)
    Index tail_rows = 0;  // *Panels: rows [row0 + rows, row0 + rows + tail_rows) that take the dot
                          // kernel after the panels (the expert's dot rows, in its last task)
    Index col0 = 0, cols = 0;  // GateUp* and Down*: output columns [col0, col0 + cols)
};

// The routed experts and the shared experts of a layer: at most two batches per pool.
constexpr int kMaxExpertBatches = 2;

// Everything run_experts needs besides the batches: grown by reserve and plan_experts (which may
// throw std::bad_alloc), then used by run_experts without allocating.
struct ExpertScratch {
    std::vector<ExpertPlan> plans;  // per batch, per expert
    std::array<std::size_t, kMaxExpertBatches> first_plan{};
    std::vector<Task> tasks;        // one phase's tasks
    struct PanelBuffers {
        AlignedVector<float> input;   // (panels, K, kPanel): packed input rows
        AlignedVector<float> hidden;  // (panels, I, kPanel): h of gated stacks
    };
    std::array<PanelBuffers, kMaxExpertBatches> panel_buffers;

    // Grows every buffer to what `count` batches of these stacks need with at most max_rows[b]
    // rows each, however those rows are spread over the experts.
    void reserve(const ExpertStack* stacks, const Index* max_rows, int count);
};

// Wall-clock seconds of the phases of run_experts.
struct ExpertTimings {
    double pack = 0.0, gate_up = 0.0, down = 0.0;
};

// The planning step: each expert's plan, and the buffers for them (grown only if reserve did not
// cover them). Throws std::bad_alloc; count <= kMaxExpertBatches.
void plan_experts(const ExpertBatch* batches, int count, ExpertScratch& scratch);
// The same within what the scratch holds (nothing grows): false if it lacks room for these
// batches (reserve was not called for as many rows), then nothing may run.
bool plan_experts_within(const ExpertBatch* batches, int count, ExpertScratch& scratch) noexcept;

// Runs the planned batches in one task pool over (batch, expert, row block, output tile): first
// the pack of token panels, then gate+up (fused, activation applied before the store), then down.
// The decomposition depends only on the shapes, never on the thread count, so results are
// bitwise identical for any count. Allocates nothing; plan_experts (or plan_experts_within,
// successfully) must have run on them.
void run_experts(const ExpertBatch* batches, int count, ExpertScratch& scratch, int threads,
                 ExpertTimings* timings = nullptr) noexcept;

// The same tasks one after the other on the calling thread, with no parallel region of its own:
// for a caller that already runs inside one (with a scratch of its own). Same bits as
// run_experts; planned as for run_experts.
void run_experts_here(const ExpertBatch* batches, int count, ExpertScratch& scratch) noexcept;

}  // namespace moelab
