#include "moelab/experts.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "moelab/activation.hpp"
#include "moelab/aligned.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"
#include "moelab/types.hpp"

namespace moelab {

namespace {

// Fixed work units: they depend on the shapes only, never on the thread count.
constexpr Index kRowBlock = 128;  // dot path: rows (tokens) of one expert per task
constexpr Index kTileI = 48;      // gate/up: output columns of I per task (plus the same of up)
constexpr Index kTileH = 96;      // down: output columns of H per task
// The dot path (decode) streams its weights once: 4x longer tiles start fewer prefetch streams
// (measured: Qwen3 T=1 bf16, 2 threads, 3.05 -> 2.83 ms) and still give Qwen3's 8 experts 32
// gate/up and 48 down tasks. Its results do not depend on the tiling.
constexpr Index kDotTileScale = 4;
constexpr Index kPanelGroupBytes = Index(1) << 20;  // panels per task: within 1 MiB of L2
constexpr Index kPanelChunkK = 4096;  // down's K is cut in chunks of this (512 KiB of panel)
// Gate/up's K (H) is cut in chunks of this when longer: a 256 KiB panel slice, so that a group of
// 4 panels reuses each block of weight rows from L2 (DeepSeek-V3's H = 7168 held 1 panel).
constexpr Index kGateUpChunkK = 2048;
constexpr Index kDotRows = 4;     // an expert with more rows than this uses token panels
// A panel expert's last rows past its full panels, when this few, take the dot kernel on each
// block of weight rows right after the panels have read it (from L2), instead of a partial
// panel that computes 16 or 32 lanes for them: a 16-lane panel runs at ~133 GFLOP/s of lanes
// (4 rows in it: ~33 useful GFLOP/s), the dot kernel at ~120 for 3-16 rows (1 thread, hot).
// Qwen3 T=512 (~32 +- 6 rows per expert), 1 thread: 387 -> 360 ms; 10 and 16 measured alike.
constexpr Index kDotTail = 10;

// Whether gate/up's panels cut H in chunks (gate_up_panel_chunked): float32 weights only.
// bfloat16 rows are widened a chunk at a time and prefetched block after block in whole rows,
// which the chunks would lose (gpt-oss T=512 bf16, 1 thread: gate/up 565 ms chunked, 522 not).
bool chunked_gate_up(const ExpertStack& s) { return s.gate_up.f32 && s.hidden > kGateUpChunkK; }

// An expert's rows that take the dot kernel after its panels (0: none, or no panels).
Index dot_tail(Index rows) {
    const Index rest = rows % kPanel;
    return rows > kPanel && rest <= kDotTail ? rest : 0;
}

struct Task {
    std::int32_t batch, expert;
    Index row0, rows;  // rows of the expert's block (on the panel path: one panel's rows when
                       // packing, a group of panels' rows otherwise)
    Index col0, cols;  // output columns
    Index panel;       // index into the batch's panel buffers (the first), or -1 on the dot path
    Index tail;        // panel path: the last `tail` of the rows take the dot kernel (dot_tail)
};

// Per batch: each expert's first panel (-1: the expert has few rows and takes the dot path).
struct PanelPlan {
    std::vector<Index> first;  // (E)
    Index count = 0;
};

// Panel-path buffers of one batch: packed inputs (panels, H, 32), hidden (panels, I, 32).
struct PanelBuffers {
    AlignedVector<float> input, hidden;
};

PanelPlan plan_panels(const ExpertBatch& b) {
    PanelPlan plan;
    plan.first.assign(std::size_t(b.stack.num_experts), -1);
    if (!panels_available()) return plan;
    for (Index e = 0; e < b.stack.num_experts; ++e) {
        const Index rows = b.offsets[e + 1] - b.offsets[e];
        if (rows > kDotRows) {
            plan.first[std::size_t(e)] = plan.count;
            plan.count += (rows - dot_tail(rows) + kPanel - 1) / kPanel;
        }
    }
    return plan;
}

// pack: one task per panel; gate/up and down: (expert, row block or panel, column tile).
enum class Phase { Pack, GateUp, Down };

std::vector<Task> make_tasks(const std::vector<ExpertBatch>& batches,
                             const std::vector<PanelPlan>& plans, Phase phase) {
    std::vector<Task> tasks;
    for (std::size_t b = 0; b < batches.size(); ++b) {
        const ExpertBatch& batch = batches[b];
        const Index width = phase == Phase::Down ? batch.stack.hidden : batch.stack.intermediate;
        for (Index e = 0; e < batch.stack.num_experts; ++e) {
            const Index begin = batch.offsets[e], end = batch.offsets[e + 1];
            const Index first = plans[b].first[std::size_t(e)];
            const Index tile =
                (phase == Phase::Down ? kTileH : kTileI) * (first >= 0 ? 1 : kDotTileScale);
            // Rows copied from `source` for the dot path: all of a dot expert's, a panel
            // expert's tail (a pack-phase task with panel -1).
            if (phase == Phase::Pack && first < 0) {
                if (batch.source && end > begin)
                    tasks.push_back({std::int32_t(b), std::int32_t(e), begin, end - begin, 0, 0, -1, 0});
                continue;
            }
            // Pack: one task per panel. Gate/up and down: a panel expert's tile covers a group
            // of its panels, so each block of weight rows is streamed from memory once and
            // reused from L2 by the group's other panels; the group's panels (K x 32 floats
            // each, K a chunk of H for chunked gate/up) stay within kPanelGroupBytes of L2.
            const Index K = phase == Phase::Down         ? batch.stack.intermediate
                            : chunked_gate_up(batch.stack) ? kGateUpChunkK
                                                           : batch.stack.hidden;
            const Index group = std::max<Index>(1, kPanelGroupBytes / (K * kPanel * Index(sizeof(float))));
            const Index block = first < 0 ? kRowBlock : phase == Phase::Pack ? kPanel : group * kPanel;
            // Panel rows end at `split`; the dot tail after it joins the last group's tasks.
            const Index tail = first >= 0 ? dot_tail(end - begin) : 0;
            const Index split = end - tail;
            if (phase == Phase::Pack && batch.source && tail)
                tasks.push_back({std::int32_t(b), std::int32_t(e), split, tail, 0, 0, -1, 0});
            for (Index r = begin; r < split; r += block) {  // empty experts give no task
                const Index panel = first >= 0 ? first + (r - begin) / kPanel : -1;
                const Index rows = std::min(block, split - r);
                if (phase == Phase::Pack) {
                    tasks.push_back({std::int32_t(b), std::int32_t(e), r, rows, 0, 0, panel, 0});
                    continue;
                }
                const Index task_tail = r + rows == split ? tail : 0;
                for (Index c = 0; c < width; c += tile)
                    tasks.push_back({std::int32_t(b), std::int32_t(e), r, rows + task_tail, c,
                                     std::min(tile, width - c), panel, task_tail});
            }
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

// Dot path: scratch[rows, c0:c0+n] = act(x W_gate[c0:c0+n]^T + b) * (x W_up[c0:c0+n]^T + b)
void gate_up_rows(const ExpertBatch& b, const Task& t) {
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

// Dot path: output[rows, c0:c0+n] = h W_down[c0:c0+n]^T + b, with h = scratch[rows, 0:I]
void down_rows(const ExpertBatch& b, const Task& t) {
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

// The dot tail of a panel task (its last t.tail rows), over output columns [col0, col0 + cols),
// as a dot-path task: its h lives in the scratch rows, in the dot path's layout.
Task tail_task(const Task& t, Index col0, Index cols) {
    Task d = t;
    d.row0 = t.row0 + t.rows - t.tail;
    d.rows = t.tail;
    d.col0 = col0;
    d.cols = cols;
    d.panel = -1;
    d.tail = 0;
    return d;
}

// Weight rows [row0, row0 + R) of a stack tensor whose rows have length K, over columns
// [k0, k0 + kc) (the whole row by default), against the same range of the panel, as the panel
// kernel takes them; `next` is the block the following call will read (prefetched meanwhile);
// `accumulate` continues the sums in out (the previous chunk of K).
void panel_rows(const WeightPtr& W, Index row0, Index R, Index K, const float* panel, Index lanes,
                float* out, const PanelPrefetch& next, Index k0 = 0, Index kc = -1,
                bool accumulate = false) {
    const Index offset = row0 * K + k0;
    panel_gemm(W.f32 ? W.f32 + offset : nullptr, W.bf16 ? W.bf16 + offset : nullptr, K, R,
               panel + k0 * kPanel, kc < 0 ? K : kc, lanes, out, next, accumulate);
}

// Rows [row0, row0 + rows) of a stack tensor with rows of length K, to be prefetched while
// the kernel computes the current block. float32 rows only when short and not whole pages: the
// L2 streamer covers the others, and the prefetches cost there (12 x 32 kernel on cold weights,
// 1 thread, GFLOP/s without / with: K = 512 87 / 142, 768 99 / 139, 1408 128 / 145; K = 1024
// 147 / 148, 1536 147 / 137, 2048 158 / 143, 2880 151 / 135, 4096 150 / 126). bfloat16 rows,
// widened a chunk at a time, always (K = 768 117 / 149, 2048 127 / 145, 7168 126 / 147).
// rows <= 0 (past the tensor's last row): nothing. k0: the chunk of K the next call reads.
PanelPrefetch prefetch_rows(const WeightPtr& W, Index row0, Index rows, Index K, Index k0 = 0) {
    if (rows <= 0) return {};
    if (W.f32) {
        const Index row_bytes = K * Index(sizeof(float));
        if (row_bytes >= 6144 || row_bytes % 4096 == 0) return {};
        return {W.f32 + row0 * K + k0, rows};
    }
    return {W.bf16 + row0 * K + k0, rows};
}

// Panel path: h (R, lanes) of hidden rows [j, j + R) from the gate and up sums g, u (R, kPanel),
// into the panel's hidden block Hp (I, kPanel).
void gated_panel_rows(const ExpertStack& s, const float* bias, Index j, Index R, Index lanes,
                      float* g, float* u, float* Hp) {
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

// Panel path for a long H (DeepSeek-V3's 7168: a 896 KiB panel, one per task, so every block of
// weight rows streamed from memory served 32 tokens): K is cut in chunks whose panel slices, a
// group of them, stay in L2 while each block of weight rows is read once from memory and then
// from L2 by the group's other panels; the sums (48 KiB) continue chunk after chunk (the same
// bits as one pass). The dot tail runs on the whole tile after it.
void gate_up_panel_chunked(const ExpertBatch& b, PanelBuffers& pb, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate;
    const Index first = Index(t.expert) * 2 * I;  // the expert's first weight row
    const float* bias = s.gate_up_bias ? s.gate_up_bias + first : nullptr;
    constexpr Index kGroup = kPanelGroupBytes / (kGateUpChunkK * kPanel * Index(sizeof(float)));
    constexpr Index kBlocks = (kTileI + kPanelRows - 1) / kPanelRows;
    alignas(64) float g[kGroup][kBlocks][kPanelRows * kPanel], u[kGroup][kBlocks][kPanelRows * kPanel];
    const Index in_panels = t.rows - t.tail;  // rows in panels (the tail follows them)
    const Index panels = (in_panels + kPanel - 1) / kPanel;  // <= kGroup (make_tasks)
    const Index end = t.col0 + t.cols;
    for (Index k0 = 0; k0 < H; k0 += kGateUpChunkK) {
        const Index kc = std::min(kGateUpChunkK, H - k0);
        for (Index j = t.col0, blk = 0; j < end; j += kPanelRows, ++blk) {
            const Index R = std::min(kPanelRows, end - j);
            for (const Index half : {Index(0), I})  // the gate block, then the up block
                for (Index p = 0; p < panels; ++p) {
                    const Index lanes = std::min(kPanel, in_panels - p * kPanel);
                    const float* Xp = pb.input.data() + (t.panel + p) * H * kPanel;
                    float* sums = half == 0 ? g[p][blk] : u[p][blk];
                    panel_rows(s.gate_up, first + half + j, R, H, Xp, lanes, sums, PanelPrefetch{},
                               k0, kc, k0 > 0);  // (R, lanes)
                }
        }
    }
    for (Index p = 0; p < panels; ++p) {
        const Index lanes = std::min(kPanel, in_panels - p * kPanel);
        float* Hp = pb.hidden.data() + (t.panel + p) * I * kPanel;
        for (Index j = t.col0, blk = 0; j < end; j += kPanelRows, ++blk)
            gated_panel_rows(s, bias, j, std::min(kPanelRows, end - j), lanes, g[p][blk], u[p][blk], Hp);
    }
    if (t.tail) gate_up_rows(b, tail_task(t, t.col0, t.cols));  // the weights streamed once more
}

// Panel path: hidden rows [c0, c0 + cols) of a group of panels of the expert's tokens. For
// each block of 12 weight rows the panels run in turn: the first streams the block from memory
// (prefetching the next block meanwhile), the others find it in L2.
void gate_up_panel(const ExpertBatch& b, PanelBuffers& pb, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate;
    if (chunked_gate_up(s)) {
        gate_up_panel_chunked(b, pb, t);
        return;
    }
    const Index first = Index(t.expert) * 2 * I;  // the expert's first weight row
    const float* bias = s.gate_up_bias ? s.gate_up_bias + first : nullptr;
    alignas(64) float g[kPanelRows * kPanel], u[kPanelRows * kPanel];
    const Index in_panels = t.rows - t.tail;  // rows in panels (the tail follows them)
    for (Index j = t.col0; j < t.col0 + t.cols; j += kPanelRows) {
        const Index R = std::min(kPanelRows, t.col0 + t.cols - j);
        // The call order is gate j, up j, gate j + 12 (the expert's next gate rows, possibly
        // the next tile's): the first panel's calls prefetch the block of the call after them.
        const Index j_next = j + kPanelRows;
        const PanelPrefetch before_up = prefetch_rows(s.gate_up, first + I + j, R, H);
        const PanelPrefetch after_up =
            prefetch_rows(s.gate_up, first + j_next, std::min(kPanelRows, I - j_next), H);
        for (Index p = 0, r0 = 0; r0 < in_panels; ++p, r0 += kPanel) {
            const Index lanes = std::min(kPanel, in_panels - r0);
            const float* Xp = pb.input.data() + (t.panel + p) * H * kPanel;
            float* Hp = pb.hidden.data() + (t.panel + p) * I * kPanel;
            panel_rows(s.gate_up, first + j, R, H, Xp, lanes, g,
                       p == 0 ? before_up : PanelPrefetch{});  // (R, lanes) gate
            panel_rows(s.gate_up, first + I + j, R, H, Xp, lanes, u,
                       p == 0 ? after_up : PanelPrefetch{});  // (R, lanes) up
            gated_panel_rows(s, bias, j, R, lanes, g, u, Hp);
        }
        // The dot tail on the same weight rows (in L2 now): h (tail, R) into its scratch rows,
        // where down_panel reads it.
        if (t.tail) gate_up_rows(b, tail_task(t, j, R));
    }
}

// Panel path for a long I (Mixtral's 14336: a 1.8 MiB panel, more than L2 keeps beside the
// weights streaming past it; down ran at 106 GFLOP/s against gate/up's 132, 1 thread): K is cut
// in chunks whose panel slice stays in L2 across the tile's weight blocks, each block's sums
// kept (12 KiB) and continued chunk after chunk (the same bits as one pass). Such a panel is
// alone in its task (kPanelGroupBytes holds one); its dot tail runs on the whole tile after it.
void down_panel_chunked(const ExpertBatch& b, PanelBuffers& pb, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate;
    const float* bias = s.down_bias ? s.down_bias + Index(t.expert) * H : nullptr;
    const Index first = Index(t.expert) * H;  // the expert's first down row
    const Index end = t.col0 + t.cols;
    static_assert(kTileH % kPanelRows == 0, "a tile is whole blocks");
    alignas(64) float o[kTileH / kPanelRows][kPanelRows * kPanel];
    const Index in_panels = t.rows - t.tail;  // rows in panels (the tail follows them)
    for (Index p = 0, r0 = 0; r0 < in_panels; ++p, r0 += kPanel) {
        const Index lanes = std::min(kPanel, in_panels - r0);
        const float* Hp = pb.hidden.data() + (t.panel + p) * I * kPanel;
        for (Index k0 = 0; k0 < I; k0 += kPanelChunkK) {
            const Index kc = std::min(kPanelChunkK, I - k0);
            for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk) {
                const Index R = std::min(kPanelRows, end - m);
                const Index m_next = m + kPanelRows;  // the tile's next block (none past it)
                const PanelPrefetch next =
                    prefetch_rows(s.down, first + m_next, std::min(kPanelRows, end - m_next), I, k0);
                panel_rows(s.down, first + m, R, I, Hp, lanes, o[blk], next, k0, kc, k0 > 0);
            }
        }
        for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk)
            panel_store(o[blk], std::min(kPanelRows, end - m), lanes, bias ? bias + m : nullptr,
                       b.output + (t.row0 + r0) * H + m, H);
    }
    if (t.tail) down_rows(b, tail_task(t, t.col0, t.cols));  // the weights streamed once more
}

// Panel path: output rows of a group of panels of the expert's tokens, columns [c0, c0 + cols).
// With at most kDeferPanels panels the blocks' results wait in `o` and go back to the token rows
// after the tile, row by row over its whole width: stored block by block, 12 floats into each of
// 32 rows between kernel calls, the partial lines' fills stalled the kernel (a DeepSeek-V3-shaped
// down, 4 panels, cold weights, 1 thread: 149 -> 156 GFLOP/s). The same bits either way.
constexpr Index kDeferPanels = 4;
void down_panel(const ExpertBatch& b, PanelBuffers& pb, const Task& t) {
    const ExpertStack& s = b.stack;
    const Index H = s.hidden, I = s.intermediate;
    if (I > kPanelChunkK) {
        down_panel_chunked(b, pb, t);
        return;
    }
    const float* bias = s.down_bias ? s.down_bias + Index(t.expert) * H : nullptr;
    const Index first = Index(t.expert) * H;  // the expert's first down row
    const Index end = t.col0 + t.cols;
    static_assert(kTileH % kPanelRows == 0, "a tile is whole blocks");
    alignas(64) float o[kDeferPanels][kTileH / kPanelRows][kPanelRows * kPanel];
    const Index in_panels = t.rows - t.tail;  // rows in panels (the tail follows them)
    const bool defer = in_panels <= kDeferPanels * kPanel;
    for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk) {
        const Index R = std::min(kPanelRows, end - m);
        const Index m_next = m + kPanelRows;  // the expert's next rows (possibly the next tile's)
        const PanelPrefetch next =
            prefetch_rows(s.down, first + m_next, std::min(kPanelRows, H - m_next), I);
        for (Index p = 0, r0 = 0; r0 < in_panels; ++p, r0 += kPanel) {
            const Index lanes = std::min(kPanel, in_panels - r0);
            const float* Hp = pb.hidden.data() + (t.panel + p) * I * kPanel;
            float* out = defer ? o[p][blk] : o[0][0];
            panel_rows(s.down, first + m, R, I, Hp, lanes, out,
                       p == 0 ? next : PanelPrefetch{});  // (R, lanes)
            if (!defer)
                panel_store(out, R, lanes, bias ? bias + m : nullptr,
                            b.output + (t.row0 + r0) * H + m, H);
        }
        if (t.tail) down_rows(b, tail_task(t, m, R));  // on the same (L2-resident) weight rows
    }
    if (defer)
        for (Index p = 0, r0 = 0; r0 < in_panels; ++p, r0 += kPanel)
            for (Index m = t.col0, blk = 0; m < end; m += kPanelRows, ++blk)
                panel_store(o[p][blk], std::min(kPanelRows, end - m), std::min(kPanel, in_panels - r0),
                            bias ? bias + m : nullptr, b.output + (t.row0 + r0) * H + m, H);
}

// Panel (H, kPanel) of the batch's rows [row0, row0 + rows), from `source` or `input`.
void pack_rows(const ExpertBatch& b, Index row0, Index rows, float* panel) {
    const Index H = b.stack.hidden;
    std::int32_t offsets[kPanel];  // of each row from the first, in elements
    if (b.source) {
        const std::int32_t* src = b.source_rows + row0;
        for (Index l = 0; l < rows; ++l) offsets[l] = std::int32_t(Index(src[l] - src[0]) * H);
        pack_panel(b.source + Index(src[0]) * H, offsets, rows, H, panel);
    } else {
        for (Index l = 0; l < rows; ++l) offsets[l] = std::int32_t(l * H);
        pack_panel(b.input + row0 * H, offsets, rows, H, panel);
    }
}

// gathered rows [row0, row0 + rows) = their source rows (the dot path's input).
void gather_rows(const ExpertBatch& b, Index row0, Index rows) {
    const Index H = b.stack.hidden;
    for (Index r = row0; r < row0 + rows; ++r) {
        const float* src = b.source + Index(b.source_rows[r]) * H;
        std::copy(src, src + H, b.gathered + r * H);
    }
}

bool run_pool(const std::vector<ExpertBatch>& batches, std::vector<PanelBuffers>& buffers,
              const std::vector<Task>& tasks, Phase phase, int threads) noexcept {
    std::atomic<bool> failed{false};
    const Index n = Index(tasks.size());
    double work = 0.0;  // multiply-adds (or moves, for packing)
    for (const Task& t : tasks) {
        const ExpertStack& s = batches[std::size_t(t.batch)].stack;
        work += phase == Phase::Pack ? double(t.rows) * double(s.hidden)
                : double(t.rows) * double(t.cols) *
                      double(phase == Phase::GateUp ? 2 * s.hidden : s.intermediate);
    }
    threads = std::min(threads, threads_for(work));
    (void)threads;
    MOELAB_OMP(parallel for num_threads(threads) schedule(dynamic, 1) if(threads > 1))
    for (Index i = 0; i < n; ++i) {
        try {  // the portable path's Eigen may allocate: never let an exception leave the region
            const Task& t = tasks[std::size_t(i)];
            const ExpertBatch& b = batches[std::size_t(t.batch)];
            PanelBuffers& pb = buffers[std::size_t(t.batch)];
            const Index H = b.stack.hidden;
            switch (phase) {
                case Phase::Pack:
                    if (t.panel >= 0)
                        pack_rows(b, t.row0, t.rows, pb.input.data() + t.panel * H * kPanel);
                    else
                        gather_rows(b, t.row0, t.rows);
                    break;
                case Phase::GateUp:
                    if (t.panel >= 0) gate_up_panel(b, pb, t); else gate_up_rows(b, t);
                    break;
                case Phase::Down:
                    if (t.panel >= 0) down_panel(b, pb, t); else down_rows(b, t);
                    break;
            }
        } catch (...) {
            failed.store(true, std::memory_order_relaxed);
        }
    }
    return !failed.load();
}

}  // namespace

bool run_experts(const std::vector<ExpertBatch>& batches, int threads,
                 ExpertTimings* timings) noexcept {
    try {
        // Panel buffers per calling thread, reused: no allocation once the sizes have been seen.
        static thread_local std::vector<PanelBuffers> buffers;
        if (buffers.size() < batches.size()) buffers.resize(batches.size());
        std::vector<PanelPlan> plans;
        for (std::size_t b = 0; b < batches.size(); ++b) {
            plans.push_back(plan_panels(batches[b]));
            const Index panels = plans.back().count;
            const std::size_t in = std::size_t(panels * batches[b].stack.hidden * kPanel);
            const std::size_t hid = std::size_t(panels * batches[b].stack.intermediate * kPanel);
            if (buffers[b].input.size() < in) buffers[b].input.resize(in);
            if (buffers[b].hidden.size() < hid) buffers[b].hidden.resize(hid);
        }
        for (Phase phase : {Phase::Pack, Phase::GateUp, Phase::Down}) {
            const auto start = std::chrono::steady_clock::now();
            if (!run_pool(batches, buffers, make_tasks(batches, plans, phase), phase, threads))
                return false;
            if (timings) {
                const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                (phase == Phase::Pack ? timings->pack : phase == Phase::GateUp ? timings->gate_up : timings->down) = s;
            }
        }
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace moelab
