#include "moelab/moe_layer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "moelab/activation.hpp"
#include "moelab/aligned.hpp"
#include "moelab/check.hpp"
#include "moelab/dispatch.hpp"
#include "moelab/experts.hpp"
#include "moelab/parallel.hpp"
#include "moelab/router.hpp"

namespace moelab {

namespace {

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

// Per calling thread, reused across forwards: no allocation once the sizes have been seen,
// and concurrent forwards (two Python threads) never share a buffer.
struct Workspace {
    AlignedVector<float> logits, weights, sorted_input, scratch, sorted_output, shared_scratch,
        shared_output, shared_gate;
    std::vector<std::int32_t> ids, token_of_row;
    Dispatch dispatch;
};

Workspace& workspace() {
    static thread_local Workspace ws;
    return ws;
}

template <class V>
void ensure(V& v, Index n) {
    if (v.size() < std::size_t(n)) v.resize(std::size_t(n));
}

WeightPtr weight_ptr(const Tensor& t) {
    WeightPtr w;
    if (t.dtype == DType::F32)
        w.f32 = t.data.data();
    else
        w.bf16 = t.half.data();
    return w;
}

}  // namespace

MoELayer::MoELayer(const MoESpec& spec, DType weight_dtype) : spec_(spec), dtype_(weight_dtype) {
    spec_.validate();
    const Index H = spec.hidden_size, E = spec.num_experts, I = spec.intermediate_size,
                S = spec.shared_intermediate_size;
    router_weight_ = weights_.add("router.weight", {E, H}, H);
    router_bias_ = spec.router_bias ? weights_.add("router.bias", {E}, H) : kNone;
    correction_bias_ =
        spec.correction_bias ? weights_.add("router.e_score_correction_bias", {E}, H) : kNone;
    gate_up_ = weights_.add("experts.gate_up_proj", {E, 2 * I, H}, H, weight_dtype);
    down_ = weights_.add("experts.down_proj", {E, H, I}, I, weight_dtype);
    gate_up_bias_ = spec.expert_bias ? weights_.add("experts.gate_up_proj_bias", {E, 2 * I}, H) : kNone;
    down_bias_ = spec.expert_bias ? weights_.add("experts.down_proj_bias", {E, H}, I) : kNone;
    shared_gate_up_ = S ? weights_.add("shared_experts.gate_up_proj", {2 * S, H}, H, weight_dtype) : kNone;
    shared_down_ = S ? weights_.add("shared_experts.down_proj", {H, S}, S, weight_dtype) : kNone;
    shared_gate_ = spec.shared_expert_gate ? weights_.add("shared_expert_gate.weight", {1, H}, H) : kNone;
}

void MoELayer::init_random(std::uint64_t seed) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.init_random(seed);
}

void MoELayer::load_weights(const std::vector<WeightView>& views, bool strict) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.load(views, strict);
}

void MoELayer::forward(const float* x, Index T, float* y, RoutingStatsOut* stats) const {
    const MoESpec& s = spec_;
    const Index H = s.hidden_size, E = s.num_experts, k = s.top_k, I = s.intermediate_size,
                S = s.shared_intermediate_size;
    require_finite(x, T * H, "x");
    using Clock = std::chrono::steady_clock;
    auto mark = Clock::now();
    auto lap = [&mark]() {  // seconds since the last lap
        const auto now = Clock::now();
        const double s = std::chrono::duration<double>(now - mark).count();
        mark = now;
        return s;
    };
    std::shared_lock<std::shared_mutex> lock(mutex_);
    auto data = [this](std::size_t i) -> const float* {
        return i == kNone ? nullptr : weights_.at(i).data.data();
    };
    Workspace& ws = workspace();
    const int threads = num_threads();
    (void)threads;

    // 1. Route every token.
    ensure(ws.logits, T * E);
    ensure(ws.ids, T * k);
    ensure(ws.weights, T * k);
    router_logits(x, T, data(router_weight_), data(router_bias_), s, ws.logits.data());
    for (Index i = 0; i < T * E; ++i)
        if (!std::isfinite(ws.logits[std::size_t(i)]))
            throw std::invalid_argument("x: router logits overflow float32 at token " +
                                        std::to_string(i / E) + " (inputs or weights too large)");
    select_experts(ws.logits.data(), T, data(correction_bias_), s, ws.ids.data(), ws.weights.data());

    const double t_route = lap();

    // 2. Counting sort of the (token, slot) pairs by expert.
    Dispatch& d = ws.dispatch;
    build_dispatch(ws.ids.data(), T, k, E, s.capacity(T), d);
    const Index R = d.num_rows();

    // Each kept pair's token, by row: the experts pack their token panels straight from x and
    // copy only the rows their dot path reads. Llama 4 scales the input, and a source row's
    // offset must fit in int32 (the panel gathers): otherwise every row is copied here.
    ensure(ws.sorted_input, R * H);
    ensure(ws.scratch, R * 2 * I);
    ensure(ws.sorted_output, R * H);
    const bool scale_input = s.scoring == Scoring::Llama4;
    const bool from_source = !scale_input && T * H < (Index(1) << 31);
    if (from_source) {
        ensure(ws.token_of_row, R);
        for (Index r = 0; r < R; ++r)
            ws.token_of_row[std::size_t(r)] = std::int32_t(d.pair_of_row[std::size_t(r)] / k);
    } else {
        const int gather_threads = threads_for(double(R) * double(H));
        (void)gather_threads;
        MOELAB_OMP(parallel for num_threads(gather_threads) schedule(static) if(gather_threads > 1))
        for (Index r = 0; r < R; ++r) {
            const Index pair = d.pair_of_row[std::size_t(r)];
            const float* src = x + (pair / k) * H;
            float* dst = ws.sorted_input.data() + r * H;
            if (scale_input) {
                const float a = ws.weights[std::size_t(pair)];
                for (Index h = 0; h < H; ++h) dst[h] = a * src[h];
            } else {
                std::copy(src, src + H, dst);
            }
        }
    }

    const double t_dispatch = lap();

    // 3. One task pool over routed and shared experts.
    std::vector<ExpertBatch> batches;
    ExpertBatch routed;
    routed.stack = {weight_ptr(weights_.at(gate_up_)), weight_ptr(weights_.at(down_)),
                    data(gate_up_bias_), data(down_bias_), E, H, I, s.activation};
    routed.offsets = d.offsets.data();
    routed.input = ws.sorted_input.data();
    routed.scratch = ws.scratch.data();
    routed.output = ws.sorted_output.data();
    if (from_source) {
        routed.source = x;
        routed.source_rows = ws.token_of_row.data();
        routed.gathered = ws.sorted_input.data();
    }
    batches.push_back(routed);
    const Index shared_offsets[2] = {0, T};
    if (S) {
        ensure(ws.shared_scratch, T * 2 * S);
        ensure(ws.shared_output, T * H);
        ExpertBatch shared;
        shared.stack = {weight_ptr(weights_.at(shared_gate_up_)),
                        weight_ptr(weights_.at(shared_down_)), nullptr, nullptr, 1, H, S,
                        s.activation};
        shared.offsets = shared_offsets;
        shared.input = x;
        shared.scratch = ws.shared_scratch.data();
        shared.output = ws.shared_output.data();
        batches.push_back(shared);
    }
    ExpertTimings t_experts;
    if (T > 0 && !run_experts(batches, threads, &t_experts)) throw std::bad_alloc();
    lap();

    const float* gate_w = data(shared_gate_);
    if (gate_w) {
        ensure(ws.shared_gate, T);
        for (Index t = 0; t < T; ++t) {
            double dot = 0.0;
            for (Index h = 0; h < H; ++h) dot += double(x[t * H + h]) * double(gate_w[h]);
            ws.shared_gate[std::size_t(t)] = float(1.0 / (1.0 + std::exp(-dot)));
        }
    }

    // 4. Combine per token in fixed slot order, then the shared experts.
    const int combine_threads = threads_for(double(T) * double(k + 1) * double(H));
    (void)combine_threads;
    MOELAB_OMP(parallel for num_threads(combine_threads) schedule(static) if(combine_threads > 1))
    for (Index t = 0; t < T; ++t) {
        float* out = y + t * H;
        std::fill(out, out + H, 0.0f);
        for (Index j = 0; j < k; ++j) {
            const std::int64_t r = d.row_of_pair[std::size_t(t * k + j)];
            if (r < 0) continue;  // dropped by capacity
            const float w = scale_input ? 1.0f : ws.weights[std::size_t(t * k + j)];
            const float* src = ws.sorted_output.data() + r * H;
            for (Index h = 0; h < H; ++h) out[h] += w * src[h];
        }
        if (S) {
            const float g = gate_w ? ws.shared_gate[std::size_t(t)] : 1.0f;
            const float* src = ws.shared_output.data() + t * H;
            for (Index h = 0; h < H; ++h) out[h] += g * src[h];
        }
    }

    if (stats) {
        std::copy(ws.ids.begin(), ws.ids.begin() + T * k, stats->topk_ids);
        for (Index p = 0; p < T * k; ++p)
            stats->topk_weights[p] = d.row_of_pair[std::size_t(p)] < 0 ? 0.0f : ws.weights[std::size_t(p)];
        std::copy(ws.logits.begin(), ws.logits.begin() + T * E, stats->router_logits);
        std::copy(d.tokens_per_expert.begin(), d.tokens_per_expert.end(), stats->tokens_per_expert);
        stats->dropped = d.dropped;
        stats->aux_loss = aux_loss(ws.logits.data(), T, E, k);
        stats->z_loss = z_loss(ws.logits.data(), T, E);
        stats->seconds_route = t_route;
        stats->seconds_dispatch = t_dispatch;
        stats->seconds_pack = t_experts.pack;
        stats->seconds_gate_up = t_experts.gate_up;
        stats->seconds_down = t_experts.down;
        stats->seconds_combine = lap();
    }
}

GatedMLP::GatedMLP(Index hidden, Index intermediate, Activation activation, DType weight_dtype)
    : hidden_(hidden), intermediate_(intermediate), activation_(activation), dtype_(weight_dtype) {
    if (hidden < 1 || hidden > kMaxDimension)
        throw std::invalid_argument("hidden_size: must be in [1, 2^24], got " + std::to_string(hidden));
    if (intermediate < 1 || intermediate > kMaxDimension)
        throw std::invalid_argument("intermediate_size: must be in [1, 2^24], got " +
                                    std::to_string(intermediate));
    if (double(hidden) * double(intermediate) * 3.0 > kMaxLayerParams)
        throw std::invalid_argument("GatedMLP: more than 2^36 parameters");
    weights_.add("gate_up_proj", {2 * intermediate, hidden}, hidden, weight_dtype);
    weights_.add("down_proj", {hidden, intermediate}, intermediate, weight_dtype);
}

void GatedMLP::init_random(std::uint64_t seed) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.init_random(seed);
}

void GatedMLP::load_weights(const std::vector<WeightView>& views, bool strict) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.load(views, strict);
}

void GatedMLP::forward(const float* x, Index T, float* y) const {
    require_finite(x, T * hidden_, "x");
    if (T == 0) return;
    std::shared_lock<std::shared_mutex> lock(mutex_);
    Workspace& ws = workspace();
    ensure(ws.shared_scratch, T * 2 * intermediate_);
    const Index offsets[2] = {0, T};
    ExpertBatch b;
    b.stack = {weight_ptr(weights_.at(0)), weight_ptr(weights_.at(1)), nullptr, nullptr, 1, hidden_,
               intermediate_, activation_};
    b.offsets = offsets;
    b.input = x;
    b.scratch = ws.shared_scratch.data();
    b.output = y;
    if (!run_experts({b}, num_threads())) throw std::bad_alloc();
}

}  // namespace moelab
