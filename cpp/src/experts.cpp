// The expert kernels. Read in this order: the constants that choose between kernels, the plan
// of one expert (plan_expert: where they choose the path and the cuts), the tasks a plan gives
// (expert_tasks), the kernels each task kind runs, and the pool that runs them.
#include "moelab/experts.hpp"

#include <algorithm>
#include <chrono>

#include "moelab/activation.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"

namespace moelab {

namespace {

// ---- The fixed work units and the choices between kernels ---------------------------------
// Each depends on the shapes only, never on the thread count. Why each has its value, as
// measured: benchmarks/KERNEL_NOTES.md, the section named in brackets.
constexpr Index kMaxDotRows = 4;        // experts with more rows take the panel path [dot or panels]
constexpr Index kMaxDotTail = 10;       // so few rows past a panel expert's last full panel take
                                        // the dot kernel, not a partial panel [dot tail]
constexpr Index kDotRowsPerTask = 128;  // dot path: rows of one expert per task
constexpr Index kGateUpCols = 48;       // panel path: gate/up columns of I per task (and as many of up)
constexpr Index kDownCols = 96;         // panel path: down output columns per task
constexpr Index kDotTileScale = 4;      // dot path: tiles of 4x as many columns [dot tiles]
constexpr Index kPanelGroupBytes = Index(1) << 20;  // a task's panels (K slices) within L2 [groups]
constexpr Index kGateUpChunkK = 2048;   // float32 gate/up: H cut in chunks of this when longer [long H]
constexpr Index kDownChunkK = 4096;     // down: K cut in chunks of this when longer [long I]
constexpr Index kMaxDeferredPanels = 4;  // down: tasks of at most this many panels store their
                                         // results after the whole tile [deferred stores]
constexpr Index kMaxPrefetchedRowBytes = 6144;  // float32 weight rows this long are not
constexpr Index kPageBytes = 4096;              // prefetched, nor whole pages [prefetch]

// Panels per task: as many as keep their K x kPanel float slices within kPanelGroupBytes, so that
// each block of weight rows streamed from memory for the first is read from L2 by the others.
constexpr Index panels_per_group(Index K) {
    return std::max<Index>(1, kPanelGroupBytes / (K * kPanel * Index(sizeof(float))));
}
// A chunked gate/up task keeps the sums of its panels (at most this many) across the chunks.
constexpr Index kMaxChunkedGateUpPanels = panels_per_group(kGateUpChunkK);

// Whether the panel kernel prefetches the next block of a weight's rows (K elements each) while
// it computes the current one: bfloat16 rows always (they are widened a chunk at a time, which
// the hardware streamer does not follow); float32 rows only when short and not whole pages (the
// L2 streamer covers the others, and the prefetches cost there) [prefetch].
bool prefetch_rows_of(const WeightPtr& W, Index K) {
    if (W.bf16) return true;
    const Index row_bytes = K * Index(sizeof(float));
    return row_bytes < kMaxPrefetchedRowBytes && row_bytes % kPageBytes != 0;
}

// ---- The plan of one expert -----------------------------------------------------------------

// Expert e's rows: rows of them from row0; first_panel: the batch's panels planned before it.
ExpertPlan plan_expert(const ExpertStack& s, Index e, Index row0, Index rows, Index first_panel,
                       bool panels_available) {
    ExpertPlan p;
    p.row0 = row0;
    const Index H = s.input_width, K = s.down_k();
    if (!panels_available || rows <= kMaxDotRows) {
        p.path = ExpertPath::Dot;
        p.dot_rows = rows;
        p.gate_up = {kDotRowsPerTask, kGateUpCols * kDotTileScale, H, false};
        p.down = {kDotRowsPerTask, kDownCols * kDotTileScale, K, false};
        return p;
    }
    p.path = ExpertPath::Panels;
    const Index rest = rows % kPanel;
    p.dot_rows = rows > kPanel && rest <= kMaxDotTail ? rest : 0;
    p.panel_rows = rows - p.dot_rows;
    p.first_panel = first_panel;
    p.panels = (p.panel_rows + kPanel - 1) / kPanel;
    // gate/up: float32 weights cut a long H in chunks; bfloat16 rows, widened a chunk at a time
    // and prefetched in whole rows, gain nothing from it [long H].
    if (s.gated() && s.gate(e).f32 && H > kGateUpChunkK)
        p.gate_up = {kMaxChunkedGateUpPanels * kPanel, kGateUpCols, kGateUpChunkK, false};
    else
        p.gate_up = {panels_per_group(H) * kPanel, kGateUpCols, H,
                     s.gated() && prefetch_rows_of(s.gate(e), H)};
    // down: a long K is cut in chunks, one panel per task (the group is counted on the whole K).
    if (K > kDownChunkK)
        p.down = {panels_per_group(K) * kPanel, kDownCols, kDownChunkK, false};
    else
        p.down = {panels_per_group(K) * kPanel, kDownCols, K, prefetch_rows_of(s.down[e], K)};
    return p;
}

// ---- The tasks of a plan ----------------------------------------------------------------------

enum class Phase { Pack, GateUp, Down };

// Calls fn(task) for each task of expert e of batch b in `phase`, in a fixed order.
// Pack: the dot rows copied from `tokens` (Gather), then one Pack task per panel.
// GateUp, Down: (block of rows, tile of output columns); a panel task covers a group of panels,
// so that each block of weight rows is streamed from memory once and reused from L2 by the
// group's other panels; the expert's dot tail joins its last group's tasks.
template <class Fn>
void expert_tasks(const ExpertBatch& b, int batch, Index e, const ExpertPlan& p, Phase phase,
                  Fn&& fn) {
    Task t;
    t.batch = std::int32_t(batch);
    t.expert = std::int32_t(e);
    if (phase == Phase::Pack) {
        if (b.tokens && p.dot_rows > 0) {
            t.kind = TaskKind::Gather;
            t.row0 = p.row0 + p.panel_rows;
            t.rows = p.dot_rows;
            fn(t);
        }
        t.kind = TaskKind::Pack;
        t.panels = 1;
        for (Index i = 0; i < p.panels; ++i) {
            t.row0 = p.row0 + i * kPanel;
            t.rows = std::min(kPanel, p.panel_rows - i * kPanel);
            t.panel0 = p.first_panel + i;
            fn(t);
        }
        return;
    }
    const bool gate_up = phase == Phase::GateUp;
    if (gate_up && !b.stack.gated()) return;
    const PhasePlan& pp = gate_up ? p.gate_up : p.down;
    const Index width = gate_up ? b.stack.intermediate : b.stack.output_width;
    const bool dot = p.path == ExpertPath::Dot;
    t.kind = dot ? (gate_up ? TaskKind::GateUpDot : TaskKind::DownDot)
                 : (gate_up ? TaskKind::GateUpPanels : TaskKind::DownPanels);
    const Index end = p.row0 + (dot ? p.dot_rows : p.panel_rows);
    for (Index r = p.row0; r < end; r += pp.rows_per_task) {  // an empty expert gives no task
        t.row0 = r;
        t.rows = std::min(pp.rows_per_task, end - r);
        if (!dot) {
            t.panel0 = p.first_panel + (r - p.row0) / kPanel;
            t.panels = (t.rows + kPanel - 1) / kPanel;
            t.tail_rows = r + t.rows == end ? p.dot_rows : 0;
        }
        for (Index c = 0; c < width; c += pp.cols_per_task) {
            t.col0 = c;
            t.cols = std::min(pp.cols_per_task, width - c);
            fn(t);
        }
    }
}

template <class Fn>
void for_each_task(const ExpertBatch* batches, int count, const ExpertScratch& s, Phase phase,
                   Fn&& fn) {
    for (int b = 0; b < count; ++b)
        for (Index e = 0; e < batches[b].stack.num_experts; ++e)
            expert_tasks(batches[b], b, e, s.plans[s.first_plan[std::size_t(b)] + std::size_t(e)],
                         phase, fn);
}

// Each expert's plan into s.plans (within its capacity), and each batch's panel count.
void plan_batches(const ExpertBatch* batches, int count, ExpertScratch& s, Index* panels) {
    const bool panel_path = panels_available();
    std::size_t n = 0;
    for (int b = 0; b < count; ++b) n += std::size_t(batches[b].stack.num_experts);
    s.plans.resize(n);
    std::size_t next = 0;
    for (int b = 0; b < count; ++b) {
        const ExpertBatch& batch = batches[b];
        s.first_plan[std::size_t(b)] = next;
        panels[b] = 0;
        for (Index e = 0; e < batch.stack.num_experts; ++e) {
            const Index row0 = batch.offsets[e], rows = batch.offsets[e + 1] - row0;
            s.plans[next] = plan_expert(batch.stack, e, row0, rows, panels[b], panel_path);
            panels[b] += s.plans[next++].panels;
        }
    }
}

// Floats of the panel buffers of a batch of `panels` panels.
Index panel_input_floats(const ExpertStack& s, Index panels) { return panels * s.input_width * kPanel; }
Index panel_hidden_floats(const ExpertStack& s, Index panels) {
    return s.gated() ? panels * s.intermediate * kPanel : 0;
}

// ---- Dot path kernels -------------------------------------------------------------------------

// The rows the dot path reads: the batch's rows, or the copies of those gathered from tokens.
const float* dot_input(const ExpertBatch& b) { return b.tokens ? b.gathered : b.rows; }

// C (rows, cols) = A (rows, K) . W[row0 : row0 + cols]^T for a weight of row length K.
void gemm_rows(const float* A, Index lda, const WeightPtr& W, Index row0, float* C, Index ldc,
               Index rows, Index cols, Index K) noexcept {
    if (W.bf16)
        gemm_nt_bf16(A, lda, W.bf16 + row0 * K, K, C, ldc, rows, cols, K);
    else
        gemm_nt(A, lda, W.f32 + row0 * K, K, C, ldc, rows, cols, K);
}

// hidden[r, c0 : c0 + n] = act(x W_gate[c0 : c0 + n]^T + b) * (x W_up[c0 : c0 + n]^T + b) of
// expert e for batch rows [row0, row0 + rows), h stored over the gate half of the row.
void gate_up_dot(const ExpertBatch& b, Index e, Index row0, Index rows, Index col0,
                 Index cols) noexcept {
    const ExpertStack& s = b.stack;
    const Index H = s.input_width, I = s.intermediate, ld = 2 * I;
    const float* X = dot_input(b) + row0 * H;
    float* g0 = b.hidden + row0 * ld + col0;
    float* u0 = g0 + I;
    gemm_rows(X, H, s.gate(e), col0, g0, ld, rows, cols, H);  // gate (rows, cols)
    gemm_rows(X, H, s.up(e), col0, u0, ld, rows, cols, H);    // up (rows, cols)
    const float* bias = s.gate_up_bias ? s.gate_up_bias + e * 2 * I : nullptr;
    for (Index r = 0; r < rows; ++r) {
        float* g = g0 + r * ld;
        float* u = u0 + r * ld;
        if (bias)
            for (Index c = 0; c < cols; ++c) {
                g[c] += bias[col0 + c];
                u[c] += bias[I + col0 + c];
            }
        apply_gated_activation(s.activation, g, u, g, cols);  // h stored over the gate
    }
}

// output[r, c0 : c0 + n] = in[r] W_down[c0 : c0 + n]^T + b of expert e for batch rows [row0,
// row0 + rows); in = h of a gated stack, the input rows of a projection.
void down_dot(const ExpertBatch& b, Index e, Index row0, Index rows, Index col0,
              Index cols) noexcept {
    const ExpertStack& s = b.stack;
    const Index K = s.down_k(), N = s.output_width;
    const Index ld = s.gated() ? 2 * s.intermediate : K;
    const float* in = (s.gated() ? b.hidden : dot_input(b)) + row0 * ld;
    float* Y = b.output + row0 * N + col0;
    gemm_rows(in, ld, s.down[e], col0, Y, N, rows, cols, K);  // (rows, cols)
    if (s.down_bias) {
        const float* bias = s.down_bias + e * N + col0;
        for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) Y[r * N + c] += bias[c];
    }
}

// ---- Panel path kernels -----------------------------------------------------------------------

// Weight rows [row0, row0 + R) of an expert's weight whose rows have length K, over columns
// [k0, k0 + kc) (the whole row by default), against the same range of the panel, as the panel
// kernel takes them; `next` is the block the following call will read (prefetched meanwhile);
// `accumulate` continues the sums in out (the previous chunk of K).
void panel_block(const WeightPtr& W, Index row0, Index R, Index K, const float* panel,
                 Index lanes, float* out, const PanelPrefetch& next, Index k0 = 0, Index kc = -1,
                 bool accumulate = false) noexcept {
    const Index offset = row0 * K + k0;
    panel_gemm(W.f32 ? W.f32 + offset : nullptr, W.bf16 ? W.bf16 + offset : nullptr, K, R,
               panel + k0 * kPanel, kc < 0 ? K : kc, lanes, out, next, accumulate);
}

// Rows [row0, row0 + rows) of an expert's weight with rows of length K, for the panel kernel to
// prefetch while it computes the current block: nothing unless the plan says so, or past the
// weight's last row (rows <= 0).
PanelPrefetch next_block(const WeightPtr& W, bool prefetch, Index row0, Index rows, Index K) {
    if (!prefetch || rows <= 0) return {};
    if (W.f32) return {W.f32 + row0 * K, rows};
    return {W.bf16 + row0 * K, rows};
}

// h (R, lanes) of hidden rows [j, j + R) from the gate and up sums g, u (R, kPanel), into the
// panel's hidden block Hp (I, kPanel).
void gated_panel_rows(const ExpertStack& s, const float* bias, Index j, Index R, Index lanes,
                      float* g, float* u, float* Hp) noexcept {
    const Index I = s.intermediate;
    for (Index r = 0; r < R; ++r) {
        if (bias)
            for (Index l = 0; l < lanes; ++l) {
                g[r * kPanel + l] += bias[j + r];
                u[r * kPanel + l] += bias[I + j + r];
            }
        apply_gated_activation(s.activation, g + r * kPanel, u + r * kPanel, Hp + (j + r) * kPanel,
                               lanes);
    }
}

// Gate/up with H cut in chunks [long H]: the group's panel slices stay in L2 while each block of
// weight rows is read once from memory and then from L2 by the group's other panels; the sums
// continue chunk after chunk (the same bits as one pass). The dot tail runs on the whole tile
// after it (its weights streamed once more).
void gate_up_panels_chunked(const ExpertBatch& b, ExpertScratch::PanelBuffers& pb,
                            const ExpertPlan& p, const Task& t) noexcept {
    const ExpertStack& s = b.stack;
    const Index H = s.input_width, I = s.intermediate;
    const float* bias = s.gate_up_bias ? s.gate_up_bias + t.expert * 2 * I : nullptr;
    constexpr Index kBlocks = (kGateUpCols + kPanelRows - 1) / kPanelRows;
    alignas(64) float g[kMaxChunkedGateUpPanels][kBlocks][kPanelRows * kPanel];
    alignas(64) float u[kMaxChunkedGateUpPanels][kBlocks][kPanelRows * kPanel];
    const Index end = t.col0 + t.cols;
    for (Index k0 = 0; k0 < H; k0 += p.gate_up.chunk_k) {
        const Index kc = std::min(p.gate_up.chunk_k, H - k0);
        for (Index j = t.col0, blk = 0; j < end; j += kPanelRows, ++blk) {
            const Index R = std::min(kPanelRows, end - j);
            for (const bool up : {false, true})  // the gate block, then the up block
                for (Index i = 0; i < t.panels; ++i) {
                    const Index lanes = std::min(kPanel, t.rows - i * kPanel);
                    const float* Xp = pb.input.data() + (t.panel0 + i) * H * kPanel;
                    float* sums = up ? u[i][blk] : g[i][blk];
                    panel_block(up ? s.up(t.expert) : s.gate(t.expert), j, R, H, Xp, lanes, sums,
                                PanelPrefetch{}, k0, kc, k0 > 0);  // (R, lanes)
                }
        }
    }
    for (Index i = 0; i < t.panels; ++i) {
        const Index lanes = std::min(kPanel, t.rows - i * kPanel);
        float* Hp = pb.hidden.data() + (t.panel0 + i) * I * kPanel;
        for (Index j = t.col0, blk = 0; j < end; j += kPanelRows, ++blk)
            gated_panel_rows(s, bias, j, std::min(kPanelRows, end - j), lanes, g[i][blk], u[i][blk],
                             Hp);
    }
    if (t.tail_rows) gate_up_dot(b, t.expert, t.row0 + t.rows, t.tail_rows, t.col0, t.cols);
}

// Hidden rows [col0, col0 + cols) of the task's panels. For each block of kPanelRows weight rows
// the panels run in turn: the first streams the block from memory (prefetching the next block
// meanwhile), the others find it in L2; then the dot tail, on the same weight rows.
void gate_up_panels(const ExpertBatch& b, ExpertScratch::PanelBuffers& pb, const ExpertPlan& p,
                    const Task& t) noexcept {
    const ExpertStack& s = b.stack;
    const Index H = s.input_width, I = s.intermediate;
    if (p.gate_up.chunk_k < H) {
        gate_up_panels_chunked(b, pb, p, t);
        return;
    }
    const float* bias = s.gate_up_bias ? s.gate_up_bias + t.expert * 2 * I : nullptr;
    const WeightPtr& gate = s.gate(t.expert);
    const WeightPtr& up = s.up(t.expert);
    const bool prefetch = p.gate_up.prefetch;
    alignas(64) float g[kPanelRows * kPanel], u[kPanelRows * kPanel];
    for (Index j = t.col0; j < t.col0 + t.cols; j += kPanelRows) {
        const Index R = std::min(kPanelRows, t.col0 + t.cols - j);
        // The call order is gate j, up j, gate j + kPanelRows (the expert's next gate rows,
        // possibly the next tile's): the first panel's calls prefetch the block of the next call.
        const Index j_next = j + kPanelRows;
        const PanelPrefetch before_up = next_block(up, prefetch, j, R, H);
        const PanelPrefetch after_up =
            next_block(gate, prefetch, j_next, std::min(kPanelRows, I - j_next), H);
        for (Index i = 0; i < t.panels; ++i) {
            const Index lanes = std::min(kPanel, t.rows - i * kPanel);
            const float* Xp = pb.input.data() + (t.panel0 + i) * H * kPanel;
            float* Hp = pb.hidden.data() + (t.panel0 + i) * I * kPanel;
            panel_block(gate, j, R, H, Xp, lanes, g,
                        i == 0 ? before_up : PanelPrefetch{});  // (R, lanes) gate
            panel_block(up, j, R, H, Xp, lanes, u,
                        i == 0 ? after_up : PanelPrefetch{});  // (R, lanes) up
            gated_panel_rows(s, bias, j, R, lanes, g, u, Hp);
        }
        // h (tail, R) into the tail's hidden rows, where down reads it.
        if (t.tail_rows) gate_up_dot(b, t.expert, t.row0 + t.rows, t.tail_rows, j, R);
    }
}

// The panels down reads: h of a gated stack, the packed input rows of a projection.
const float* down_input_panel(const ExpertStack& s, const ExpertScratch::PanelBuffers& pb,
                              Index panel) {
    const Index K = s.down_k();
    return (s.gated() ? pb.hidden.data() : pb.input.data()) + panel * K * kPanel;
}

// Down with K cut in chunks [long I]: a panel's slice stays in L2 across the tile's weight
// blocks, each block's sums kept and continued chunk after chunk (the same bits as one pass).
// Such a panel is alone in its task; its dot tail runs on the whole tile after it.
void down_panels_chunked(const ExpertBatch& b, const ExpertScratch::PanelBuffers& pb,
                         const ExpertPlan& p, const Task& t) noexcept {
    const ExpertStack& s = b.stack;
    const Index K = s.down_k(), N = s.output_width;
    const float* bias = s.down_bias ? s.down_bias + t.expert * N : nullptr;
    const WeightPtr& down = s.down[t.expert];  // (N, K)
    const Index end = t.col0 + t.cols;
    static_assert(kDownCols % kPanelRows == 0, "a tile is whole blocks");
    alignas(64) float o[kDownCols / kPanelRows][kPanelRows * kPanel];
    for (Index i = 0; i < t.panels; ++i) {
        const Index lanes = std::min(kPanel, t.rows - i * kPanel);
        const float* Hp = down_input_panel(s, pb, t.panel0 + i);
        for (Index k0 = 0; k0 < K; k0 += p.down.chunk_k) {
            const Index kc = std::min(p.down.chunk_k, K - k0);
            for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk)
                panel_block(down, m, std::min(kPanelRows, end - m), K, Hp, lanes, o[blk],
                            PanelPrefetch{}, k0, kc, k0 > 0);
        }
        for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk)
            panel_store(o[blk], std::min(kPanelRows, end - m), lanes, bias ? bias + m : nullptr,
                        b.output + (t.row0 + i * kPanel) * N + m, N);
    }
    if (t.tail_rows) down_dot(b, t.expert, t.row0 + t.rows, t.tail_rows, t.col0, t.cols);
}

// Output columns [col0, col0 + cols) of the task's panels, then of its dot tail on the same
// (L2-resident) weight rows. A task of at most kMaxDeferredPanels panels keeps each block's
// results and stores them after the whole tile, row by row [deferred stores]; the same bits
// either way.
void down_panels(const ExpertBatch& b, const ExpertScratch::PanelBuffers& pb, const ExpertPlan& p,
                 const Task& t) noexcept {
    const ExpertStack& s = b.stack;
    const Index K = s.down_k(), N = s.output_width;
    if (p.down.chunk_k < K) {
        down_panels_chunked(b, pb, p, t);
        return;
    }
    const float* bias = s.down_bias ? s.down_bias + t.expert * N : nullptr;
    const WeightPtr& down = s.down[t.expert];  // (N, K)
    const Index end = t.col0 + t.cols;
    static_assert(kDownCols % kPanelRows == 0, "a tile is whole blocks");
    alignas(64) float o[kMaxDeferredPanels][kDownCols / kPanelRows][kPanelRows * kPanel];
    const bool defer = t.panels <= kMaxDeferredPanels;
    for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk) {
        const Index R = std::min(kPanelRows, end - m);
        const Index m_next = m + kPanelRows;  // the expert's next rows (possibly the next tile's)
        const PanelPrefetch next =
            next_block(down, p.down.prefetch, m_next, std::min(kPanelRows, N - m_next), K);
        for (Index i = 0; i < t.panels; ++i) {
            const Index lanes = std::min(kPanel, t.rows - i * kPanel);
            float* out = defer ? o[i][blk] : o[0][0];
            panel_block(down, m, R, K, down_input_panel(s, pb, t.panel0 + i), lanes, out,
                        i == 0 ? next : PanelPrefetch{});  // (R, lanes)
            if (!defer)
                panel_store(out, R, lanes, bias ? bias + m : nullptr,
                            b.output + (t.row0 + i * kPanel) * N + m, N);
        }
        if (t.tail_rows) down_dot(b, t.expert, t.row0 + t.rows, t.tail_rows, m, R);
    }
    if (defer)
        for (Index i = 0; i < t.panels; ++i)
            for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk)
                panel_store(o[i][blk], std::min(kPanelRows, end - m),
                            std::min(kPanel, t.rows - i * kPanel), bias ? bias + m : nullptr,
                            b.output + (t.row0 + i * kPanel) * N + m, N);
}

// ---- Pack phase kernels -----------------------------------------------------------------------

// Panel (K, kPanel) of the batch's rows [row0, row0 + rows), from `tokens` or `rows`.
void pack_rows(const ExpertBatch& b, Index row0, Index rows, float* panel) noexcept {
    const Index K = b.stack.input_width;
    std::int32_t offsets[kPanel];  // of each row from the first, in elements
    if (b.tokens) {
        const std::int32_t* src = b.token_of_row + row0;
        for (Index l = 0; l < rows; ++l) offsets[l] = std::int32_t(Index(src[l] - src[0]) * K);
        pack_panel(b.tokens + Index(src[0]) * K, offsets, rows, K, panel);
    } else {
        for (Index l = 0; l < rows; ++l) offsets[l] = std::int32_t(l * K);
        pack_panel(b.rows + row0 * K, offsets, rows, K, panel);
    }
}

// gathered rows [row0, row0 + rows) = their token rows (the dot path's input).
void gather_rows(const ExpertBatch& b, Index row0, Index rows) noexcept {
    const Index K = b.stack.input_width;
    for (Index r = row0; r < row0 + rows; ++r) {
        const float* src = b.tokens + Index(b.token_of_row[r]) * K;
        std::copy(src, src + K, b.gathered + r * K);
    }
}

// ---- The pool ---------------------------------------------------------------------------------

void run_task(const ExpertBatch* batches, ExpertScratch& s, const Task& t) noexcept {
    const ExpertBatch& b = batches[t.batch];
    ExpertScratch::PanelBuffers& pb = s.panel_buffers[std::size_t(t.batch)];
    const ExpertPlan& p = s.plans[s.first_plan[std::size_t(t.batch)] + std::size_t(t.expert)];
    float* panel = pb.input.data() + t.panel0 * b.stack.input_width * kPanel;  // Pack's
    switch (t.kind) {
        case TaskKind::Gather: return gather_rows(b, t.row0, t.rows);
        case TaskKind::Pack: return pack_rows(b, t.row0, t.rows, panel);
        case TaskKind::GateUpDot: return gate_up_dot(b, t.expert, t.row0, t.rows, t.col0, t.cols);
        case TaskKind::GateUpPanels: return gate_up_panels(b, pb, p, t);
        case TaskKind::DownDot: return down_dot(b, t.expert, t.row0, t.rows, t.col0, t.cols);
        case TaskKind::DownPanels: return down_panels(b, pb, p, t);
    }
}

// Multiply-adds of a task (moves, for the pack phase): what decides whether a phase is worth
// a parallel region.
double task_work(const ExpertStack& s, const Task& t) {
    const double rows = double(t.rows + t.tail_rows), cols = double(t.cols);
    switch (t.kind) {
        case TaskKind::Gather:
        case TaskKind::Pack: return rows * double(s.input_width);
        case TaskKind::GateUpDot:
        case TaskKind::GateUpPanels: return rows * cols * double(2 * s.input_width);
        case TaskKind::DownDot:
        case TaskKind::DownPanels: return rows * cols * double(s.down_k());
    }
    return 0.0;
}

Region region_of(Phase phase) {
    return phase == Phase::Pack     ? Region::ExpertsPack
           : phase == Phase::GateUp ? Region::ExpertsGateUp
                                    : Region::ExpertsDown;
}

void run_phase(const ExpertBatch* batches, int count, ExpertScratch& s, Phase phase,
               int threads) noexcept {
    s.tasks.clear();  // within the capacity plan_experts gave it: no allocation
    for_each_task(batches, count, s, phase, [&s](const Task& t) { s.tasks.push_back(t); });
    const Index n = Index(s.tasks.size());
    if (n == 0) return;
    double work = 0.0;
    for (const Task& t : s.tasks) work += task_work(batches[t.batch].stack, t);
    threads = threads_for(work, threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(region_of(phase));
        MOELAB_OMP(for schedule(dynamic, 1))
        for (Index i = 0; i < n; ++i) run_task(batches, s, s.tasks[std::size_t(i)]);
    }
}

// The bound behind ExpertScratch::reserve: blocks of rows an expert's rows are cut into, summed
// over the experts of a batch of at most R rows. A dot block holds kDotRowsPerTask rows and a
// panel block at least one panel: each expert with r rows gives at most r / kPanel + 1 blocks.
Index max_row_blocks(Index R, Index E) { return R / kPanel + std::min(E, R); }

// Panels of a batch of at most R rows: an expert with r > kMaxDotRows rows packs at most
// r / kPanel + 1 panels.
Index max_panels(Index R, Index E) { return R / kPanel + std::min(E, R / (kMaxDotRows + 1)); }

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }

}  // namespace

void ExpertScratch::reserve(const ExpertStack* stacks, const Index* max_rows, int count) {
    std::size_t n_plans = 0, n_tasks = 0;
    const bool panel_path = panels_available();
    for (int b = 0; b < count; ++b) {
        const ExpertStack& s = stacks[b];
        const Index R = max_rows[b], E = s.num_experts;
        n_plans += std::size_t(E);
        const Index panels = panel_path ? max_panels(R, E) : 0;
        grow_to(panel_buffers[std::size_t(b)].input, panel_input_floats(s, panels));
        grow_to(panel_buffers[std::size_t(b)].hidden, panel_hidden_floats(s, panels));
        const Index blocks = max_row_blocks(R, E);
        const Index gate_up = s.gated() ? blocks * ceil_div(s.intermediate, kGateUpCols) : 0;
        const Index down = blocks * ceil_div(s.output_width, kDownCols);
        const Index pack = panels + std::min(E, R);
        n_tasks += std::size_t(std::max({gate_up, down, pack}));
    }
    if (plans.capacity() < n_plans) plans.reserve(n_plans);
    if (tasks.capacity() < n_tasks) tasks.reserve(n_tasks);
}

// What planned batches need beyond their plans: the most tasks of one phase.
std::size_t most_tasks(const ExpertBatch* batches, int count, const ExpertScratch& s) {
    std::size_t most = 0;
    for (Phase phase : {Phase::Pack, Phase::GateUp, Phase::Down}) {
        std::size_t n = 0;
        for_each_task(batches, count, s, phase, [&n](const Task&) { ++n; });
        most = std::max(most, n);
    }
    return most;
}

std::size_t plan_count(const ExpertBatch* batches, int count) {
    std::size_t n = 0;
    for (int b = 0; b < count; ++b) n += std::size_t(batches[b].stack.num_experts);
    return n;
}

void plan_experts(const ExpertBatch* batches, int count, ExpertScratch& s) {
    const std::size_t n_plans = plan_count(batches, count);
    if (s.plans.capacity() < n_plans) s.plans.reserve(n_plans);
    Index panels[kMaxExpertBatches];
    plan_batches(batches, count, s, panels);
    for (int b = 0; b < count; ++b) {
        grow_to(s.panel_buffers[std::size_t(b)].input, panel_input_floats(batches[b].stack, panels[b]));
        grow_to(s.panel_buffers[std::size_t(b)].hidden, panel_hidden_floats(batches[b].stack, panels[b]));
    }
    const std::size_t most = most_tasks(batches, count, s);
    if (s.tasks.capacity() < most) s.tasks.reserve(most);
}

bool plan_experts_within(const ExpertBatch* batches, int count, ExpertScratch& s) noexcept {
    if (s.plans.capacity() < plan_count(batches, count)) return false;
    Index panels[kMaxExpertBatches];
    plan_batches(batches, count, s, panels);  // resizes s.plans within its capacity
    for (int b = 0; b < count; ++b) {
        const ExpertScratch::PanelBuffers& pb = s.panel_buffers[std::size_t(b)];
        if (pb.input.size() < std::size_t(panel_input_floats(batches[b].stack, panels[b])) ||
            pb.hidden.size() < std::size_t(panel_hidden_floats(batches[b].stack, panels[b])))
            return false;
    }
    return most_tasks(batches, count, s) <= s.tasks.capacity();
}

void run_experts(const ExpertBatch* batches, int count, ExpertScratch& s, int threads,
                 ExpertTimings* timings) noexcept {
    using Clock = std::chrono::steady_clock;
    for (Phase phase : {Phase::Pack, Phase::GateUp, Phase::Down}) {
        const auto start = Clock::now();
        run_phase(batches, count, s, phase, threads);
        if (timings) {
            const double sec = std::chrono::duration<double>(Clock::now() - start).count();
            (phase == Phase::Pack ? timings->pack
             : phase == Phase::GateUp ? timings->gate_up : timings->down) = sec;
        }
    }
}

void run_experts_here(const ExpertBatch* batches, int count, ExpertScratch& s) noexcept {
    for (Phase phase : {Phase::Pack, Phase::GateUp, Phase::Down})
        for_each_task(batches, count, s, phase,
                      [batches, &s](const Task& t) { run_task(batches, s, t); });
}

}  // namespace moelab
