// MoELayer::forward as a sequence of named steps: size the workspace, route,
// sort the pairs by expert, run the experts, combine, report.
#include "moelab/moe_layer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>

#include "moelab/aux_loss.hpp"
#include "moelab/check.hpp"
#include "moelab/experts.hpp"
#include "moelab/parallel.hpp"
#include "moelab/router.hpp"
#include "moelab/workspace.hpp"

namespace moelab {

// What a forward (or a step) reads of the layer, resolved once under the read lock.
struct MoELayer::Tensors {
    const float* router_weight = nullptr;    // (E, H)
    const float* router_bias = nullptr;      // (E) or null
    const float* correction_bias = nullptr;  // (E) or null
    ExpertStack routed;
    ExpertStack shared;                       // num_experts = 0 without shared experts
    const float* shared_gate = nullptr;       // (H) or null
};

namespace {

using LayerTensors = MoELayer::Tensors;

// Seconds since the previous lap (or the start).
class Stopwatch {
  public:
    double lap() {
        const auto now = std::chrono::steady_clock::now();
        const double s = std::chrono::duration<double>(now - mark_).count();
        mark_ = now;
        return s;
    }

  private:
    std::chrono::steady_clock::time_point mark_ = std::chrono::steady_clock::now();
};

// Seconds of each step, for RoutingStatsOut.
struct StepSeconds {
    double route = 0.0, dispatch = 0.0;
    ExpertTimings experts;
};

// Whether the routed experts read their rows from x in place (the panel path packs them straight
// from x; only the dot path's rows are copied), rather than from copies made by
// copy_expert_inputs: Llama 4 scales each row by its routing weight, and a row's offset in x
// must fit the kernels' gathers.
bool experts_read_x(const MoESpec& s, Index T) {
    return s.scoring != Scoring::Llama4 && T * s.hidden_size < kMaxGatherOffset;
}

// Step 0, planning: grows the thread's workspace to what a forward of T tokens needs, whatever
// the routing (every pair a row, as when dropless), so that the steps after it never allocate.
void reserve_workspace(const MoESpec& s, const LayerTensors& w, Index T, int threads,
                       Workspace& ws) {
    const Index H = s.hidden_size, E = s.num_experts, I = s.moe_intermediate_size,
                S = s.shared_width(), pairs = T * s.num_experts_per_tok;
    grow_to(ws.logits, T * E);
    grow_to(ws.ids, pairs);
    grow_to(ws.weights, pairs);
    ws.router.reserve(s, T, threads);
    ws.dispatch.reserve(pairs, E);
    grow_to(ws.token_of_row, pairs);
    grow_to(ws.expert_input, pairs * H);
    grow_to(ws.expert_hidden, pairs * 2 * I);
    grow_to(ws.expert_output, pairs * H);
    if (S) {
        grow_to(ws.shared_hidden, T * 2 * S);
        grow_to(ws.shared_output, T * H);
    }
    if (w.shared_gate) grow_to(ws.shared_gate, T);
    const ExpertStack stacks[kMaxExpertBatches] = {w.routed, w.shared};
    const Index max_rows[kMaxExpertBatches] = {pairs, T};
    ws.experts.reserve(stacks, max_rows, S ? 2 : 1);
}

// A non-finite router logit of token t from a finite x: a NaN or Inf in the router's weights
// (which can be written through the weight views), named; else a float32 overflow.
[[noreturn]] void bad_logit(const MoESpec& s, const LayerTensors& w, Index t) {
    require_finite(w.router_weight, s.num_experts * s.hidden_size, "router.weight");
    if (w.router_bias) require_finite(w.router_bias, s.num_experts, "router.bias");
    throw std::invalid_argument("x: router logits overflow float32 at token " + std::to_string(t) +
                                " (inputs or weights too large)");
}

// Step 1: router logits (T, E), checked finite, then each token's experts and weights (T, k).
void route_tokens(const MoESpec& s, const LayerTensors& w, const float* x, Index T, int threads,
                  float* logits, std::int32_t* ids, float* weights, RouterScratch& scratch) {
    const Index E = s.num_experts;
    router_logits(x, T, w.router_weight, w.router_bias, s, logits, threads);
    for (Index i = 0; i < T * E; ++i)
        if (!std::isfinite(logits[i])) bad_logit(s, w, i / E);
    select_experts(logits, T, w.correction_bias, s, ids, weights, threads, scratch);
}

// Step 2a: counting sort of the (token, slot) pairs of ids (T, k) by expert, with capacity(T),
// and each row's token (when token_of_row is not null).
void sort_pairs_by_expert(const MoESpec& s, const std::int32_t* ids, Index T, Dispatch& d,
                          std::int32_t* token_of_row) {
    const Index k = s.num_experts_per_tok;
    build_dispatch(ids, T, k, s.num_experts, s.capacity(T), d);
    if (token_of_row)
        for (Index r = 0; r < d.num_rows(); ++r)
            token_of_row[r] = std::int32_t(d.pair_of_row[std::size_t(r)] / k);
}

// Step 2b, when the experts do not read x in place: rows[r] = x[token_of(r)] for r < R
// (Llama 4: times weight_of(r), the pair's routing weight).
template <class TokenOf, class WeightOf>
void copy_expert_inputs(const MoESpec& s, const float* x, Index R, TokenOf token_of,
                        WeightOf weight_of, int threads, float* rows) {
    const Index H = s.hidden_size;
    const bool scale = s.scoring == Scoring::Llama4;
    threads = threads_for(double(R) * double(H), threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::CopyExpertInputs);
        MOELAB_OMP(for schedule(static))
        for (Index r = 0; r < R; ++r) {
            const float* src = x + token_of(r) * H;
            float* dst = rows + r * H;
            if (scale) {
                const float a = weight_of(r);
                for (Index h = 0; h < H; ++h) dst[h] = a * src[h];
            } else {
                std::copy(src, src + H, dst);
            }
        }
    }
}

// Step 3: the batches planned, then run in one task pool (the routed experts over their rows
// sorted by expert; the shared experts over all tokens). A batch's bits depend only on its own
// rows and plan, never on the other batch of the pool.
void run_batches(const ExpertBatch* batches, int count, int threads, Workspace& ws,
                 ExpertTimings* timings) {
    plan_experts(batches, count, ws.experts);
    run_experts(batches, count, ws.experts, threads, timings);
}

// The routed experts over rows grouped by expert as offsets (E + 1) say, read from `rows`.
ExpertBatch routed_batch(const LayerTensors& w, const Index* offsets, const float* rows,
                         float* hidden, float* output) {
    ExpertBatch b;
    b.stack = w.routed;
    b.offsets = offsets;
    b.rows = rows;
    b.hidden = hidden;
    b.output = output;
    return b;
}

// The shared experts (one expert of width S) over the T rows of x; offsets = {0, T}.
ExpertBatch shared_batch(const LayerTensors& w, const float* x, const Index* offsets,
                         Workspace& ws) {
    ExpertBatch b;
    b.stack = w.shared;
    b.offsets = offsets;
    b.rows = x;
    b.hidden = ws.shared_hidden.data();
    b.output = ws.shared_output.data();
    return b;
}

// Step 3 of forward: the routed experts (reading x in place, or expert_input) and the shared
// experts, in one pool.
void run_expert_batches(const MoESpec& s, const LayerTensors& w, const float* x, Index T,
                        int threads, Workspace& ws, ExpertTimings& timings) {
    ExpertBatch batches[kMaxExpertBatches];
    batches[0] = routed_batch(w, ws.dispatch.offsets.data(), ws.expert_input.data(),
                              ws.expert_hidden.data(), ws.expert_output.data());
    if (experts_read_x(s, T)) {
        batches[0].rows = nullptr;
        batches[0].tokens = x;
        batches[0].token_of_row = ws.token_of_row.data();
        batches[0].gathered = ws.expert_input.data();
    }
    const Index shared_offsets[2] = {0, T};
    int count = 1;
    if (w.shared.num_experts) batches[count++] = shared_batch(w, x, shared_offsets, ws);
    run_batches(batches, count, threads, ws, &timings);
}

// Step 4a: sigmoid(w_g . x) per token, the shared experts' gate (accumulated in double).
void shared_expert_gates(const float* x, Index T, Index H, const float* gate_w, float* gate) {
    for (Index t = 0; t < T; ++t) {
        double dot = 0.0;
        for (Index h = 0; h < H; ++h) dot += double(x[t * H + h]) * double(gate_w[h]);
        gate[t] = float(1.0 / (1.0 + std::exp(-dot)));
    }
}

// Step 4b: y per token = its kept rows of expert_output times their weights (T, k), in fixed
// slot order, then the shared experts' output (T, H) (times its gate (T)) when not null.
void combine_tokens(const MoESpec& s, Index T, const float* weights,
                    const std::int64_t* row_of_pair, const float* expert_output,
                    const float* shared_output, const float* shared_gate, int threads, float* y) {
    const Index H = s.hidden_size, k = s.num_experts_per_tok;
    const bool weighted = s.scoring != Scoring::Llama4;  // Llama 4 weighted the inputs instead
    threads = threads_for(double(T) * double(k + 1) * double(H), threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::Combine);
        MOELAB_OMP(for schedule(static))
        for (Index t = 0; t < T; ++t) {
            float* out = y + t * H;
            std::fill(out, out + H, 0.0f);
            for (Index j = 0; j < k; ++j) {
                const std::int64_t r = row_of_pair[t * k + j];
                if (r < 0) continue;  // dropped by capacity
                const float a = weighted ? weights[t * k + j] : 1.0f;
                const float* src = expert_output + r * H;
                for (Index h = 0; h < H; ++h) out[h] += a * src[h];
            }
            if (shared_output) {
                const float g = shared_gate ? shared_gate[t] : 1.0f;
                const float* src = shared_output + t * H;
                for (Index h = 0; h < H; ++h) out[h] += g * src[h];
            }
        }
    }
}

// The shared experts of x (T, H) into ws.shared_output, and their gate into ws.shared_gate
// (workspace grown by the caller): steps 3 and 4a of the shared experts alone.
void run_shared_experts(const MoESpec& s, const LayerTensors& w, const float* x, Index T,
                        int threads, Workspace& ws) {
    const Index offsets[2] = {0, T};
    const ExpertBatch b = shared_batch(w, x, offsets, ws);
    if (T > 0) run_batches(&b, 1, threads, ws, nullptr);
    if (w.shared_gate) shared_expert_gates(x, T, s.hidden_size, w.shared_gate, ws.shared_gate.data());
}

// The loss scalars {aux_loss, z_loss} of logits (T, E) and the kept pairs per expert (E).
std::array<double, 2> losses(const MoESpec& s, const float* logits, const std::int64_t* kept,
                             Index T, int threads, RouterScratch& scratch) {
    return {aux_loss(s, logits, kept, T, threads, scratch),
            z_loss(logits, T, s.num_experts, threads, scratch)};
}

// Step 5: what the router did, into the caller's buffers.
void report_stats(const MoESpec& s, Index T, int threads, Workspace& ws, const StepSeconds& sec,
                  RoutingStatsOut& st) {
    const Index E = s.num_experts, k = s.num_experts_per_tok;
    const Dispatch& d = ws.dispatch;
    std::copy(ws.ids.begin(), ws.ids.begin() + T * k, st.topk_ids);
    for (Index p = 0; p < T * k; ++p)
        st.topk_weights[p] = d.row_of_pair[std::size_t(p)] < 0 ? 0.0f : ws.weights[std::size_t(p)];
    std::copy(ws.logits.begin(), ws.logits.begin() + T * E, st.router_logits);
    std::copy(d.tokens_per_expert.begin(), d.tokens_per_expert.end(), st.tokens_per_expert);
    st.dropped = d.dropped;
    const std::array<double, 2> l =
        losses(s, ws.logits.data(), d.tokens_per_expert.data(), T, threads, ws.router);
    st.aux_loss = l[0];
    st.z_loss = l[1];
    st.seconds_route = sec.route;
    st.seconds_dispatch = sec.dispatch;
    st.seconds_pack = sec.experts.pack;
    st.seconds_gate_up = sec.experts.gate_up;
    st.seconds_down = sec.experts.down;
}

// How many parts the kernels read a tensor in (ExpertStack): per expert its gate and up rows, or
// its down rows; one for the other tensors.
Index parts_of(LayerTensor kind, Index num_experts) {
    switch (kind) {
        case LayerTensor::GateUp: return 2 * num_experts;
        case LayerTensor::Down: return num_experts;
        case LayerTensor::SharedGateUp: return 2;
        default: return 1;
    }
}

// "[3, 4, 7]" of the indices where `flags` is false (the first 16, then how many in all).
std::string list_missing(const std::vector<bool>& flags) {
    std::string out = "[";
    Index shown = 0, missing = 0;
    for (std::size_t e = 0; e < flags.size(); ++e) {
        if (flags[e]) continue;
        if (shown < 16) out += (shown++ ? ", " : "") + std::to_string(e);
        ++missing;
    }
    if (missing > shown) out += ", ... (" + std::to_string(missing) + " in all)";
    return out + "]";
}

}  // namespace

MoELayer::MoELayer(const MoESpec& spec, DType weight_dtype)
    : LayerWeights(weight_dtype), spec_(spec) {
    spec_.validate();
    slot_.fill(kAbsent);
    for (const TensorSpec& t : spec_.tensors()) {
        const std::size_t i =
            weights_.add(t.name, t.shape, t.fan_in, t.in_weight_dtype ? weight_dtype : DType::F32,
                         parts_of(t.kind, spec_.num_experts));
        slot_[std::size_t(t.kind)] = i;
        // The routed experts may be loaded in part (expert parallelism): an expert's parts absent.
        if (t.kind == LayerTensor::GateUp || t.kind == LayerTensor::Down)
            weights_.at(i).experts = spec_.num_experts;
    }
}

WeightPtr MoELayer::tensor(LayerTensor kind) const {
    const std::size_t i = slot_[std::size_t(kind)];
    return i == kAbsent ? WeightPtr{} : weight_ptr(weights_.at(i));
}

const WeightPtr* MoELayer::parts(LayerTensor kind) const {
    const std::size_t i = slot_[std::size_t(kind)];
    return i == kAbsent ? nullptr : weights_.at(i).parts.data();
}

MoELayer::Tensors MoELayer::tensors() const {
    const MoESpec& s = spec_;
    using Kind = LayerTensor;
    Tensors w;
    w.router_weight = f32_tensor(Kind::RouterWeight);
    w.router_bias = f32_tensor(Kind::RouterBias);
    w.correction_bias = f32_tensor(Kind::CorrectionBias);
    w.routed = {parts(Kind::GateUp), parts(Kind::Down), f32_tensor(Kind::GateUpBias),
                f32_tensor(Kind::DownBias), s.num_experts, s.hidden_size, s.moe_intermediate_size,
                s.hidden_size, s.activation};
    if (s.shared_width())
        w.shared = {parts(Kind::SharedGateUp), parts(Kind::SharedDown), nullptr, nullptr, 1,
                    s.hidden_size, s.shared_width(), s.hidden_size, s.activation};
    w.shared_gate = f32_tensor(Kind::SharedGate);
    return w;
}

std::vector<bool> MoELayer::held_experts() const {
    const auto lock = unchecked_read_lock();
    return held();
}

std::vector<bool> MoELayer::held() const {
    const Index E = spec_.num_experts;
    std::vector<bool> out(std::size_t(E), false);
    const Tensor& gate_up = weights_.at(slot_[std::size_t(LayerTensor::GateUp)]);
    const Tensor& down = weights_.at(slot_[std::size_t(LayerTensor::Down)]);
    if (!gate_up.has_values() || !down.has_values()) return out;
    // The load keeps an expert's gate, up and down all present or all absent.
    for (Index e = 0; e < E; ++e)
        out[std::size_t(e)] = gate_up.parts[std::size_t(2 * e)].present() &&
                              down.parts[std::size_t(e)].present();
    return out;
}

void MoELayer::require_all_experts() const {
    // Read in place (forward allocates nothing once sized); the list only for the message.
    const Tensor& gate_up = weights_.at(slot_[std::size_t(LayerTensor::GateUp)]);
    const Tensor& down = weights_.at(slot_[std::size_t(LayerTensor::Down)]);
    if (gate_up.complete() && down.complete()) return;
    const std::vector<bool> h = held();
    throw std::invalid_argument(
        "the layer does not hold experts " + list_missing(h) +
        " (loaded in part, for expert parallelism): its whole forward needs every expert; "
        "run it through moelab.expert_parallel.ExpertParallelMoE");
}

void MoELayer::forward(const float* x, Index T, float* y, RoutingStatsOut* stats) const {
    const MoESpec& s = spec_;
    require_finite(x, T * s.hidden_size, "x");
    Stopwatch clock;
    const auto lock = read_lock();
    require_all_experts();
    const Tensors w = tensors();
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    StepSeconds sec;

    reserve_workspace(s, w, T, threads, ws);
    route_tokens(s, w, x, T, threads, ws.logits.data(), ws.ids.data(), ws.weights.data(),
                 ws.router);
    sec.route = clock.lap();
    sort_pairs_by_expert(s, ws.ids.data(), T, ws.dispatch, ws.token_of_row.data());
    if (!experts_read_x(s, T)) {
        const Index k = s.num_experts_per_tok;
        const Dispatch& d = ws.dispatch;
        copy_expert_inputs(
            s, x, d.num_rows(), [&](Index r) { return Index(d.pair_of_row[std::size_t(r)] / k); },
            [&](Index r) { return ws.weights[std::size_t(d.pair_of_row[std::size_t(r)])]; },
            threads, ws.expert_input.data());
    }
    sec.dispatch = clock.lap();
    if (T > 0) run_expert_batches(s, w, x, T, threads, ws, sec.experts);
    clock.lap();
    if (w.shared_gate) shared_expert_gates(x, T, s.hidden_size, w.shared_gate, ws.shared_gate.data());
    combine_tokens(s, T, ws.weights.data(), ws.dispatch.row_of_pair.data(),
                   ws.expert_output.data(), w.shared.num_experts ? ws.shared_output.data() : nullptr,
                   w.shared_gate ? ws.shared_gate.data() : nullptr, threads, y);
    if (stats) {
        report_stats(s, T, threads, ws, sec, *stats);
        stats->seconds_combine = clock.lap();
    }
}

// ---- The steps one by one -------------------------------------------------------------------

void MoELayer::route(const float* x, Index T, float* logits, std::int32_t* ids,
                     float* weights) const {
    const MoESpec& s = spec_;
    require_finite(x, T * s.hidden_size, "x");
    const auto lock = read_lock();
    const Tensors w = tensors();
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    ws.router.reserve(s, T, threads);
    route_tokens(s, w, x, T, threads, logits, ids, weights, ws.router);
}

Index MoELayer::dispatch(const std::int32_t* ids, Index T, std::int64_t* row_of_pair,
                         std::int64_t* tokens_per_expert) const {
    const MoESpec& s = spec_;
    const Index E = s.num_experts, k = s.num_experts_per_tok;
    for (Index p = 0; p < T * k; ++p)
        if (ids[p] < 0 || ids[p] >= E)
            throw std::invalid_argument("ids: expert " + std::to_string(ids[p]) + " at (" +
                                        std::to_string(p / k) + ", " + std::to_string(p % k) +
                                        ") outside [0, E=" + std::to_string(E) + ")");
    Dispatch& d = thread_workspace().dispatch;
    d.reserve(T * k, E);
    sort_pairs_by_expert(s, ids, T, d, nullptr);
    std::copy(d.row_of_pair.begin(), d.row_of_pair.begin() + T * k, row_of_pair);
    std::copy(d.tokens_per_expert.begin(), d.tokens_per_expert.end(), tokens_per_expert);
    return d.dropped;
}

void MoELayer::expert_inputs(const float* x, Index T, const std::int64_t* tokens,
                             const float* weights, Index R, float* rows) const {
    const MoESpec& s = spec_;
    require_finite(x, T * s.hidden_size, "x");
    for (Index r = 0; r < R; ++r)
        if (tokens[r] < 0 || tokens[r] >= T)
            throw std::invalid_argument("tokens: " + std::to_string(tokens[r]) + " at " +
                                        std::to_string(r) + " outside [0, T=" +
                                        std::to_string(T) + ")");
    const bool scale = s.scoring == Scoring::Llama4;
    if (scale && !weights && R > 0)
        throw std::invalid_argument("weights: required for scoring 'llama4' (it scales the "
                                    "experts' inputs)");
    if (scale) require_finite(weights, R, "weights");
    copy_expert_inputs(
        s, x, R, [&](Index r) { return Index(tokens[r]); },
        [&](Index r) { return weights[r]; }, num_threads(), rows);
}

void MoELayer::run_experts(const float* rows, Index R, const std::int32_t* experts,
                           const std::int64_t* counts, Index n, float* output) const {
    const MoESpec& s = spec_;
    const Index E = s.num_experts;
    Index total = 0;
    for (Index i = 0; i < n; ++i) {
        if (experts[i] < 0 || experts[i] >= E)
            throw std::invalid_argument("experts: " + std::to_string(experts[i]) + " at " +
                                        std::to_string(i) + " outside [0, E=" +
                                        std::to_string(E) + ")");
        if (i > 0 && experts[i] <= experts[i - 1])
            throw std::invalid_argument("experts: must be strictly increasing (one run per "
                                        "expert), got " + std::to_string(experts[i - 1]) +
                                        " then " + std::to_string(experts[i]) + " at " +
                                        std::to_string(i));
        if (counts[i] < 0)
            throw std::invalid_argument("counts: " + std::to_string(counts[i]) + " at " +
                                        std::to_string(i) + " is negative");
        total += counts[i];
    }
    if (total != R)
        throw std::invalid_argument("counts: sum to " + std::to_string(total) + ", but rows has " +
                                    std::to_string(R) + " rows");
    require_finite(rows, R * s.hidden_size, "rows");
    const auto lock = read_lock();
    const Tensor& down = weights_.at(slot_[std::size_t(LayerTensor::Down)]);
    for (Index i = 0; i < n; ++i)
        if (!down.parts[std::size_t(experts[i])].present()) {  // the load keeps gate and up alike
            const std::vector<bool> h = held();
            throw std::invalid_argument("experts: the layer does not hold expert " +
                                        std::to_string(experts[i]) + " (it holds " +
                                        std::to_string(std::count(h.begin(), h.end(), true)) +
                                        " of E=" + std::to_string(E) + ")");
        }
    const Tensors w = tensors();
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    grow_to(ws.expert_offsets, E + 1);
    Index* offsets = ws.expert_offsets.data();
    std::fill(offsets, offsets + E + 1, Index(0));
    for (Index i = 0; i < n; ++i) offsets[experts[i] + 1] = counts[i];
    for (Index e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
    grow_to(ws.expert_hidden, R * 2 * s.moe_intermediate_size);
    const Index max_rows[1] = {R};
    ws.experts.reserve(&w.routed, max_rows, 1);
    const ExpertBatch b = routed_batch(w, offsets, rows, ws.expert_hidden.data(), output);
    if (R > 0) run_batches(&b, 1, threads, ws, nullptr);
}

void MoELayer::combine(const float* x, Index T, const float* weights,
                       const std::int64_t* row_of_pair, const float* expert_output, Index R,
                       float* y) const {
    const MoESpec& s = spec_;
    const Index k = s.num_experts_per_tok, S = s.shared_width();
    require_finite(x, T * s.hidden_size, "x");
    for (Index p = 0; p < T * k; ++p)
        if (row_of_pair[p] < -1 || row_of_pair[p] >= R)
            throw std::invalid_argument("row_of_pair: " + std::to_string(row_of_pair[p]) +
                                        " at " + std::to_string(p) + " outside [-1, R=" +
                                        std::to_string(R) + ")");
    if (s.scoring != Scoring::Llama4) require_finite(weights, T * k, "weights");
    const auto lock = read_lock();
    const Tensors w = tensors();
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    if (S) {
        grow_to(ws.shared_hidden, T * 2 * S);
        grow_to(ws.shared_output, T * s.hidden_size);
        const Index max_rows[1] = {T};
        ws.experts.reserve(&w.shared, max_rows, 1);
    }
    if (w.shared_gate) grow_to(ws.shared_gate, T);
    if (S) run_shared_experts(s, w, x, T, threads, ws);
    combine_tokens(s, T, weights, row_of_pair, expert_output, S ? ws.shared_output.data() : nullptr,
                   w.shared_gate ? ws.shared_gate.data() : nullptr, threads, y);
}

std::array<double, 2> MoELayer::routing_losses(const float* logits, Index T,
                                               const std::int64_t* tokens_per_expert) const {
    const MoESpec& s = spec_;
    require_finite(logits, T * s.num_experts, "logits");
    for (Index e = 0; e < s.num_experts; ++e)
        if (tokens_per_expert[e] < 0)
            throw std::invalid_argument("tokens_per_expert: " +
                                        std::to_string(tokens_per_expert[e]) + " at " +
                                        std::to_string(e) + " is negative");
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    ws.router.reserve(s, T, threads);
    return losses(s, logits, tokens_per_expert, T, threads, ws.router);
}

}  // namespace moelab
