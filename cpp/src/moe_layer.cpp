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

namespace {

// What a forward reads of the layer, resolved once under the read lock.
struct LayerTensors {
    const float* router_weight = nullptr;    // (E, H)
    const float* router_bias = nullptr;      // (E) or null
    const float* correction_bias = nullptr;  // (E) or null
    ExpertStack routed;
    ExpertStack shared;                       // num_experts = 0 without shared experts
    const float* shared_gate = nullptr;       // (H) or null
};

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
                  Workspace& ws) {
    const Index E = s.num_experts;
    router_logits(x, T, w.router_weight, w.router_bias, s, ws.logits.data(), threads);
    for (Index i = 0; i < T * E; ++i)
        if (!std::isfinite(ws.logits[std::size_t(i)])) bad_logit(s, w, i / E);
    select_experts(ws.logits.data(), T, w.correction_bias, s, ws.ids.data(), ws.weights.data(),
                   threads, ws.router);
}

// Step 2a: counting sort of the (token, slot) pairs by expert, and each row's token.
void sort_pairs_by_expert(const MoESpec& s, Index T, Workspace& ws) {
    const Index k = s.num_experts_per_tok;
    Dispatch& d = ws.dispatch;
    build_dispatch(ws.ids.data(), T, k, s.num_experts, s.capacity(T), d);
    for (Index r = 0; r < d.num_rows(); ++r)
        ws.token_of_row[std::size_t(r)] = std::int32_t(d.pair_of_row[std::size_t(r)] / k);
}

// Step 2b, when the experts do not read x in place: every row's input copied into expert_input
// (Llama 4: times the pair's routing weight).
void copy_expert_inputs(const MoESpec& s, const float* x, int threads, Workspace& ws) {
    const Index H = s.hidden_size, k = s.num_experts_per_tok, R = ws.dispatch.num_rows();
    const bool scale = s.scoring == Scoring::Llama4;
    threads = threads_for(double(R) * double(H), threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::CopyExpertInputs);
        MOELAB_OMP(for schedule(static))
        for (Index r = 0; r < R; ++r) {
            const Index pair = ws.dispatch.pair_of_row[std::size_t(r)];
            const float* src = x + (pair / k) * H;
            float* dst = ws.expert_input.data() + r * H;
            if (scale) {
                const float a = ws.weights[std::size_t(pair)];
                for (Index h = 0; h < H; ++h) dst[h] = a * src[h];
            } else {
                std::copy(src, src + H, dst);
            }
        }
    }
}

// Step 3: the routed experts over the sorted rows and the shared experts over all tokens, in one
// task pool.
void run_expert_batches(const MoESpec& s, const LayerTensors& w, const float* x, Index T,
                        int threads, Workspace& ws, ExpertTimings& timings) {
    ExpertBatch batches[kMaxExpertBatches];
    ExpertBatch& routed = batches[0];
    routed.stack = w.routed;
    routed.offsets = ws.dispatch.offsets.data();
    if (experts_read_x(s, T)) {
        routed.tokens = x;
        routed.token_of_row = ws.token_of_row.data();
        routed.gathered = ws.expert_input.data();
    } else {
        routed.rows = ws.expert_input.data();
    }
    routed.hidden = ws.expert_hidden.data();
    routed.output = ws.expert_output.data();
    const Index shared_offsets[2] = {0, T};
    int count = 1;
    if (w.shared.num_experts) {
        ExpertBatch& shared = batches[count++];
        shared.stack = w.shared;
        shared.offsets = shared_offsets;
        shared.rows = x;
        shared.hidden = ws.shared_hidden.data();
        shared.output = ws.shared_output.data();
    }
    plan_experts(batches, count, ws.experts);
    run_experts(batches, count, ws.experts, threads, &timings);
}

// Step 4a: sigmoid(w_g . x) per token, the shared experts' gate (accumulated in double).
void shared_expert_gates(const float* x, Index T, Index H, const float* gate_w, Workspace& ws) {
    for (Index t = 0; t < T; ++t) {
        double dot = 0.0;
        for (Index h = 0; h < H; ++h) dot += double(x[t * H + h]) * double(gate_w[h]);
        ws.shared_gate[std::size_t(t)] = float(1.0 / (1.0 + std::exp(-dot)));
    }
}

// Step 4b: y per token = its kept rows times their weights, in fixed slot order, then the
// shared experts' output (times its gate).
void combine(const MoESpec& s, const LayerTensors& w, Index T, int threads, const Workspace& ws,
             float* y) {
    const Index H = s.hidden_size, k = s.num_experts_per_tok;
    const bool weighted = s.scoring != Scoring::Llama4;  // Llama 4 weighted the inputs instead
    const bool shared = w.shared.num_experts > 0, gated = w.shared_gate != nullptr;
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
                const std::int64_t r = ws.dispatch.row_of_pair[std::size_t(t * k + j)];
                if (r < 0) continue;  // dropped by capacity
                const float a = weighted ? ws.weights[std::size_t(t * k + j)] : 1.0f;
                const float* src = ws.expert_output.data() + r * H;
                for (Index h = 0; h < H; ++h) out[h] += a * src[h];
            }
            if (shared) {
                const float g = gated ? ws.shared_gate[std::size_t(t)] : 1.0f;
                const float* src = ws.shared_output.data() + t * H;
                for (Index h = 0; h < H; ++h) out[h] += g * src[h];
            }
        }
    }
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
    st.aux_loss = aux_loss(s, ws.logits.data(), d.tokens_per_expert.data(), T, threads, ws.router);
    st.z_loss = z_loss(ws.logits.data(), T, E, threads, ws.router);
    st.seconds_route = sec.route;
    st.seconds_dispatch = sec.dispatch;
    st.seconds_pack = sec.experts.pack;
    st.seconds_gate_up = sec.experts.gate_up;
    st.seconds_down = sec.experts.down;
}

}  // namespace

namespace {

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

}  // namespace

MoELayer::MoELayer(const MoESpec& spec, DType weight_dtype)
    : LayerWeights(weight_dtype), spec_(spec) {
    spec_.validate();
    slot_.fill(kAbsent);
    for (const TensorSpec& t : spec_.tensors())
        slot_[std::size_t(t.kind)] =
            weights_.add(t.name, t.shape, t.fan_in, t.in_weight_dtype ? weight_dtype : DType::F32,
                         parts_of(t.kind, spec_.num_experts));
}

WeightPtr MoELayer::tensor(LayerTensor kind) const {
    const std::size_t i = slot_[std::size_t(kind)];
    return i == kAbsent ? WeightPtr{} : weight_ptr(weights_.at(i));
}

const WeightPtr* MoELayer::parts(LayerTensor kind) const {
    const std::size_t i = slot_[std::size_t(kind)];
    return i == kAbsent ? nullptr : weights_.at(i).parts.data();
}

void MoELayer::forward(const float* x, Index T, float* y, RoutingStatsOut* stats) const {
    const MoESpec& s = spec_;
    require_finite(x, T * s.hidden_size, "x");
    Stopwatch clock;
    const auto lock = read_lock();
    using Kind = LayerTensor;
    LayerTensors w;
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
    const int threads = num_threads();
    Workspace& ws = thread_workspace();
    StepSeconds sec;

    reserve_workspace(s, w, T, threads, ws);
    route_tokens(s, w, x, T, threads, ws);
    sec.route = clock.lap();
    sort_pairs_by_expert(s, T, ws);
    if (!experts_read_x(s, T)) copy_expert_inputs(s, x, threads, ws);
    sec.dispatch = clock.lap();
    if (T > 0) run_expert_batches(s, w, x, T, threads, ws, sec.experts);
    clock.lap();
    if (w.shared_gate) shared_expert_gates(x, T, s.hidden_size, w.shared_gate, ws);
    combine(s, w, T, threads, ws, y);
    if (stats) {
        report_stats(s, T, threads, ws, sec, *stats);
        stats->seconds_combine = clock.lap();
    }
}

}  // namespace moelab
