#include "moelab/experts.hpp"

#include <algorithm>
#include <atomic>

#include "moelab/activation.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"
#include "moelab/types.hpp"

namespace moelab {

namespace {

// Fixed work units: they depend on the shapes only, never on the thread count.
constexpr Index kRowBlock = 128;  // rows (tokens) of one expert per task
constexpr Index kTileI = 64;      // gate/up: output columns of I per task (plus the same of up)
constexpr Index kTileH = 128;     // down: output columns of H per task

struct Task {
    std::int32_t batch, expert;
    Index row0, rows, col0, cols;
};

std::vector<Task> make_tasks(const std::vector<ExpertBatch>& batches, bool gate_up) {
    std::vector<Task> tasks;
    for (std::size_t b = 0; b < batches.size(); ++b) {
        const ExpertBatch& batch = batches[b];
        const Index width = gate_up ? batch.stack.intermediate : batch.stack.hidden;
        const Index tile = gate_up ? kTileI : kTileH;
        for (Index e = 0; e < batch.stack.num_experts; ++e) {
            const Index begin = batch.offsets[e], end = batch.offsets[e + 1];
            for (Index r = begin; r < end; r += kRowBlock)  // empty experts give no task
                for (Index c = 0; c < width; c += tile)
                    tasks.push_back({std::int32_t(b), std::int32_t(e), r, std::min(kRowBlock, end - r),
                                     c, std::min(tile, width - c)});
        }
    }
    return tasks;
}

// C (rows, cols) = A (rows, K) . W[row0 : row0 + cols]^T for a weight of row length K.
void gemm_rows(const float* A, Index lda, const WeightPtr& W, Index row0, float* C, Index ldc,
               Index rows, Index cols, Index K) noexcept {
    if (W.bf16)
        gemm_nt_bf16(A, lda, W.bf16 + row0 * K, K, C, ldc, rows, cols, K);
    else
        gemm_nt(A, lda, W.f32 + row0 * K, K, C, ldc, rows, cols, K);
}

// scratch[rows, c0:c0+n] = act(x W_gate[c0:c0+n]^T + b) * (x W_up[c0:c0+n]^T + b)
void gate_up_task(const ExpertBatch& b, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate, ld = 2 * I;
    const Index first = Index(t.expert) * 2 * I;  // the expert's first weight row
    const float* X = b.input + t.row0 * H;
    float* g0 = b.scratch + t.row0 * ld + t.col0;
    float* u0 = g0 + I;
    gemm_rows(X, H, s.gate_up, first + t.col0, g0, ld, t.rows, t.cols, H);      // gate (rows, cols)
    gemm_rows(X, H, s.gate_up, first + I + t.col0, u0, ld, t.rows, t.cols, H);  // up (rows, cols)
    const float* bias = s.gate_up_bias ? s.gate_up_bias + first : nullptr;
    for (Index r = 0; r < t.rows; ++r) {
        float* g = g0 + r * ld;
        float* u = u0 + r * ld;
        if (bias)
            for (Index c = 0; c < t.cols; ++c) {
                g[c] += bias[t.col0 + c];
                u[c] += bias[I + t.col0 + c];
            }
        apply_gated_activation(s.activation, g, u, g, t.cols);  // h stored over the gate
    }
}

// output[rows, c0:c0+n] = h W_down[c0:c0+n]^T + b, with h = scratch[rows, 0:I]
void down_task(const ExpertBatch& b, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate;
    float* Y = b.output + t.row0 * H + t.col0;
    gemm_rows(b.scratch + t.row0 * 2 * I, 2 * I, s.down, Index(t.expert) * H + t.col0, Y, H, t.rows,
              t.cols, I);  // (rows, cols)
    if (s.down_bias) {
        const float* bias = s.down_bias + Index(t.expert) * H + t.col0;
        for (Index r = 0; r < t.rows; ++r)
            for (Index c = 0; c < t.cols; ++c) Y[r * H + c] += bias[c];
    }
}

bool run_pool(const std::vector<ExpertBatch>& batches, const std::vector<Task>& tasks,
              bool gate_up, int threads) noexcept {
    std::atomic<bool> failed{false};
    const Index n = Index(tasks.size());
    double work = 0.0;  // multiply-adds
    for (const Task& t : tasks) {
        const ExpertStack& s = batches[std::size_t(t.batch)].stack;
        work += double(t.rows) * double(t.cols) * double(gate_up ? 2 * s.hidden : s.intermediate);
    }
    threads = std::min(threads, threads_for(work));
    (void)threads;
    MOELAB_OMP(parallel for num_threads(threads) schedule(dynamic, 1) if(threads > 1))
    for (Index i = 0; i < n; ++i) {
        try {  // the portable path's Eigen may allocate: never let an exception leave the region
            const Task& t = tasks[std::size_t(i)];
            if (gate_up)
                gate_up_task(batches[std::size_t(t.batch)], t);
            else
                down_task(batches[std::size_t(t.batch)], t);
        } catch (...) {
            failed.store(true, std::memory_order_relaxed);
        }
    }
    return !failed.load();
}

}  // namespace

bool run_experts(const std::vector<ExpertBatch>& batches, int threads) noexcept {
    try {
        const std::vector<Task> gate_up = make_tasks(batches, true);
        const std::vector<Task> down = make_tasks(batches, false);
        return run_pool(batches, gate_up, true, threads) && run_pool(batches, down, false, threads);
    } catch (...) {
        return false;
    }
}

}  // namespace moelab
