#include "moelab/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "moelab/check.hpp"
#include "moelab/gemm.hpp"
#include "moelab/linear.hpp"
#include "moelab/online_softmax.hpp"
#include "moelab/parallel.hpp"
#include "moelab/spec.hpp"
#include "moelab/workspace.hpp"
#include "attention_loops.hpp"

namespace moelab {

namespace {

// Keys scored at once by one task: the online softmax rescales its sums once per block.
constexpr Index kKeyBlock = 64;
// Query rows of one task: a tile of max(1, kQueryRows / r) consecutive tokens times the r query
// heads of one KV group, so that each key and value block feeds a GEMM of that many rows. The
// tile depends only on the spec, never on the thread count.
constexpr Index kQueryRows = 64;

// Per calling thread, reused across forwards (no allocation once the sizes have been seen).
struct AttentionWorkspace {
    AlignedVector<float> q;      // (T, q_proj_rows) q_proj output (then normed, rotated)
    AlignedVector<float> k, v;   // (T, n_kv d)
    AlignedVector<float> vt;     // (n_kv d, T) v transposed: each head's value blocks as GEMM rows
    AlignedVector<float> gate;   // (T, n_h d) output gate logits
    AlignedVector<float> o;      // (T, n_h d) attention output
    AlignedVector<float> task;   // (threads, per-task scratch: see the scores loop)
    AlignedVector<double> denom; // (threads, r) softmax denominators
};

AttentionWorkspace& attention_workspace() {
    static thread_local AttentionWorkspace ws;
    return ws;
}

// x (n) *= 1 / sqrt(mean(x^2) + eps) and by the weight (w, 1 + w or none), the sum in double.
void rms_norm(float* x, Index n, const float* w, bool unit_offset, float eps) noexcept {
    double ss = 0.0;
    for (Index i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (Index i = 0; i < n; ++i) {
        const float scaled = x[i] * inv;
        x[i] = w ? (unit_offset ? scaled * (1.0f + w[i]) : w[i] * scaled) : scaled;
    }
}

// The keys a query at position p may read: [first_key(p), p].
inline Index first_key(const AttentionSpec& s, Index p) noexcept {
    switch (s.mask) {
        case AttentionMask::Sliding: return std::max<Index>(0, p - s.window + 1);
        case AttentionMask::Chunked: return (p / s.window) * s.window;
        default: return 0;
    }
}

}  // namespace

// ---- spec ------------------------------------------------------------------------------------

float AttentionSpec::logit_scale() const {
    return scaling > 0.0f ? scaling : float(1.0 / std::sqrt(double(head_dim)));
}

void AttentionSpec::validate() const {
    require_dimension("hidden_size", hidden_size, kMaxDimension);
    require_dimension("num_attention_heads", num_heads, kMaxDimension);
    require_dimension("num_key_value_heads", num_kv_heads, kMaxDimension);
    require_dimension("head_dim", head_dim, Index(1) << 16);
    if (num_heads % num_kv_heads != 0)
        throw std::invalid_argument("num_attention_heads: " + std::to_string(num_heads) +
                                    " is not a multiple of num_key_value_heads=" +
                                    std::to_string(num_kv_heads));
    if (!(std::isfinite(norm_eps) && norm_eps > 0.0f))
        throw std::invalid_argument("rms_norm_eps: must be finite and > 0, got " +
                                    std::to_string(norm_eps));
    if (use_rope) {
        if (rope.head_dim != head_dim)
            throw std::invalid_argument("rope head_dim: " + std::to_string(rope.head_dim) +
                                        " differs from head_dim=" + std::to_string(head_dim));
        rope.validate();
    }
    if (mask != AttentionMask::Causal && window < 1)
        throw std::invalid_argument("window: a sliding or chunked layer needs sliding_window / "
                                    "attention_chunk_size >= 1, got " + std::to_string(window));
    if (!(std::isfinite(softcap) && softcap >= 0.0f))
        throw std::invalid_argument("attn_logit_softcapping: must be finite and > 0, got " +
                                    std::to_string(softcap));
    if (!(std::isfinite(scaling) && scaling >= 0.0f))
        throw std::invalid_argument("scaling: must be finite and > 0, got " + std::to_string(scaling));
    if (temperature_tuning && !(std::isfinite(attn_scale) && std::isfinite(floor_scale) &&
                                floor_scale > 0.0f))
        throw std::invalid_argument("floor_scale: must be finite and > 0 (and attn_scale finite)");
    if (max_positions < 1)
        throw std::invalid_argument("max_position_embeddings: must be >= 1, got " +
                                    std::to_string(max_positions));
    const double H = double(hidden_size), q = double(q_proj_rows()), kv = double(kv_dim());
    if (H * (q + 2 * kv + double(q_dim())) > double(kMaxLayerParams))
        throw std::invalid_argument("Attention: more than 2^36 parameters (" + describe() + ")");
}

std::string AttentionSpec::describe() const {
    static const char* masks[] = {"causal", "sliding", "chunked"};
    std::ostringstream s;
    s << "H=" << hidden_size << ", n_h=" << num_heads << ", n_kv=" << num_kv_heads
      << ", d=" << head_dim << ", mask=" << masks[int(mask)];
    if (mask != AttentionMask::Causal) s << "(" << window << ")";
    if (!use_rope) s << ", nope";
    return s.str();
}

// ---- layer -----------------------------------------------------------------------------------

Attention::Attention(const AttentionSpec& spec, DType weight_dtype)
    : TokenMixerOf(spec, {"Attention", "cache", "new_cache"}, weight_dtype) {
    if (spec_.use_rope) rope_ = make_rope(spec_.rope);
    const Index H = spec.hidden_size, d = spec.head_dim;
    q_ = weights_.add("q_proj.weight", {spec.q_proj_rows(), H}, H, weight_dtype);
    k_ = weights_.add("k_proj.weight", {spec.kv_dim(), H}, H, weight_dtype);
    v_ = weights_.add("v_proj.weight", {spec.kv_dim(), H}, H, weight_dtype);
    o_ = weights_.add("o_proj.weight", {H, spec.q_dim()}, spec.q_dim(), weight_dtype);
    if (spec.qkv_bias) {
        q_bias_ = weights_.add("q_proj.bias", {spec.q_proj_rows()}, H);
        k_bias_ = weights_.add("k_proj.bias", {spec.kv_dim()}, H);
        v_bias_ = weights_.add("v_proj.bias", {spec.kv_dim()}, H);
    }
    if (spec.o_bias) o_bias_ = weights_.add("o_proj.bias", {H}, spec.q_dim());
    const float identity = spec.norm_unit_offset ? 0.0f : 1.0f;
    if (spec.qk_norm == QkNorm::Head) {
        q_norm_ = add_norm("q_norm.weight", {d}, identity);
        k_norm_ = add_norm("k_norm.weight", {d}, identity);
    } else if (spec.qk_norm == QkNorm::Full) {
        q_norm_ = add_norm("q_norm.weight", {spec.q_dim()}, identity);
        k_norm_ = add_norm("k_norm.weight", {spec.kv_dim()}, identity);
    }
    if (spec.sinks) sinks_ = weights_.add("sinks", {spec.num_heads}, 1);
}

std::shared_ptr<KvCache> Attention::new_cache() const {
    const Index window = spec_.mask == AttentionMask::Causal ? 0 : spec_.window;
    return std::shared_ptr<KvCache>(new KvCache(spec_.kv_dim(), window, id()));
}

void Attention::forward(const float* x, Index T, float* y, KvCache* cache) const {
    const ForwardLocks locks = begin_positioned_forward(x, T, cache);
    if (T == 0) return;
    const Index pos0 = locks.pos0;

    const AttentionSpec& s = spec_;
    const Index H = s.hidden_size, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim,
                r = s.group(), qd = s.q_dim(), kvd = s.kv_dim(), qrows = s.q_proj_rows();

    // The planning step: every buffer grows here, before any parallel region.
    AttentionWorkspace& ws = attention_workspace();
    ExpertScratch& scratch = thread_workspace().experts;
    auto linear_weight = [&](std::size_t w, std::size_t b, bool has_bias) {
        const Tensor& t = weights_.at(w);
        LinearWeight lw;
        lw.weight = weight_ptr(t);
        lw.bias = has_bias ? weights_.at(b).f32_data() : nullptr;
        lw.out_features = t.shape[0];
        lw.in_features = t.shape[1];
        return lw;
    };
    const LinearWeight wq = linear_weight(q_, q_bias_, s.qkv_bias);
    const LinearWeight wk = linear_weight(k_, k_bias_, s.qkv_bias);
    const LinearWeight wv = linear_weight(v_, v_bias_, s.qkv_bias);
    const LinearWeight wo = linear_weight(o_, o_bias_, s.o_bias);
    for (const LinearWeight* w : {&wq, &wk, &wv, &wo}) reserve_linear(*w, T, scratch);
    grow_to(ws.q, T * qrows);
    grow_to(ws.k, T * kvd);
    grow_to(ws.v, T * kvd);
    grow_to(ws.vt, T * kvd);
    grow_to(ws.o, T * qd);
    if (s.output_gate) grow_to(ws.gate, T * qd);
    const int threads = num_threads();
    const Index tile = std::max<Index>(1, kQueryRows / r);  // tokens per task
    const Index rows = tile * r;                             // query rows per task
    // q tile, scores, accumulators, P.V, transposed values, running maxima
    const Index per_task = rows * (d + kKeyBlock + 2 * d + 1) + d * kKeyBlock;
    grow_to(ws.task, Index(threads) * per_task);
    grow_to(ws.denom, Index(threads) * rows);
    if (cache) cache->reserve(pos0 + T);

    // projections
    const bool ok = linear(x, T, wq, ws.q.data(), threads, scratch) &&
                    linear(x, T, wk, ws.k.data(), threads, scratch) &&
                    linear(x, T, wv, ws.v.data(), threads, scratch);
    if (!ok) throw std::logic_error("Attention: linear scratch not reserved");

    // split [q | gate] per head (HF's view(..., n_h, 2d).chunk(2)), q-norm, k-norm, RoPE,
    // temperature tuning
    const float* q_norm_w = s.qk_norm == QkNorm::Head || s.qk_norm == QkNorm::Full
                                ? weights_.at(q_norm_).f32_data() : nullptr;
    const float* k_norm_w = q_norm_w ? weights_.at(k_norm_).f32_data() : nullptr;
    for_each_token(T, double(T) * double(qd + kvd) * 8.0, threads, [&](Index t) {
        float* q = ws.q.data() + t * qrows;  // after the split: (n_h, d) in the first qd floats
        if (s.output_gate) {
            float* gate = ws.gate.data() + t * qd;
            for (Index h = 0; h < nh; ++h) std::copy(q + (2 * h + 1) * d, q + (2 * h + 2) * d, gate + h * d);
            for (Index h = 1; h < nh; ++h) std::copy(q + 2 * h * d, q + (2 * h + 1) * d, q + h * d);
        }
        float* k = ws.k.data() + t * kvd;
        const float* v = ws.v.data() + t * kvd;
        for (Index c = 0; c < kvd; ++c) ws.vt[c * T + t] = v[c];
        switch (s.qk_norm) {
            case QkNorm::Head:
                for (Index h = 0; h < nh; ++h) rms_norm(q + h * d, d, q_norm_w, s.norm_unit_offset, s.norm_eps);
                for (Index h = 0; h < nkv; ++h) rms_norm(k + h * d, d, k_norm_w, s.norm_unit_offset, s.norm_eps);
                break;
            case QkNorm::Full:
                rms_norm(q, qd, q_norm_w, s.norm_unit_offset, s.norm_eps);
                rms_norm(k, kvd, k_norm_w, s.norm_unit_offset, s.norm_eps);
                break;
            case QkNorm::L2:
                for (Index h = 0; h < nh; ++h) rms_norm(q + h * d, d, nullptr, false, s.norm_eps);
                for (Index h = 0; h < nkv; ++h) rms_norm(k + h * d, d, nullptr, false, s.norm_eps);
                break;
            case QkNorm::None:
                break;
        }
        if (s.use_rope) {
            apply_rope(rope_, q, 1, nh, qd, pos0 + t);
            apply_rope(rope_, k, 1, nkv, kvd, pos0 + t);
        }
        if (s.temperature_tuning) {
            const float scale =
                float(std::log1p(std::floor((float(pos0 + t) + 1.0f) / s.floor_scale))) *
                    s.attn_scale + 1.0f;
            for (Index i = 0; i < qd; ++i) q[i] *= scale;
        }
    });

    // scores, online softmax and values: one task per (query tile, kv head), the tile's tokens
    // times the group's r query heads as the rows of GEMMs against each block of keys (scores)
    // and values (weighted sums), so that each key is read once per tile
    const float* sinks = s.sinks ? weights_.at(sinks_).f32_data() : nullptr;
    const float scale = s.logit_scale(), cap = s.softcap;
    const float* cache_k = cache ? cache->keys_.data() : nullptr;
    const float* cache_v = cache ? cache->values_.data() : nullptr;
    const Index tiles = (T + tile - 1) / tile, tasks = tiles * nkv;
    const double work = double(T) * double(nh) * double(d) *
                        double(s.mask == AttentionMask::Causal ? pos0 + T : std::min(pos0 + T, s.window));
    for_each_scores_task(tasks, 4.0 * work, threads, [&](Index task) {
        const Index t0 = (task / nkv) * tile, g = task % nkv;
        const Index nt = std::min(tile, T - t0), nr = nt * r;  // tokens, rows of this tile
        const Index p_first = pos0 + t0, p_last = pos0 + t0 + nt - 1;
        float* qt = ws.task.data() + Index(thread_id()) * per_task;  // (rows, d) row = i r + j
        float* scores = qt + rows * d;                                 // (rows, kKeyBlock)
        float* acc = scores + rows * kKeyBlock;                        // (rows, d)
        float* pv = acc + rows * d;                                    // (rows, d)
        float* vt = pv + rows * d;  // (d, kKeyBlock) a cached value block transposed
        float* m = vt + d * kKeyBlock;                                 // (rows)
        double* l = ws.denom.data() + Index(thread_id()) * rows;      // (rows)
        for (Index i = 0; i < nt; ++i) {
            const float* q = ws.q.data() + (t0 + i) * qrows + g * r * d;  // (r, d)
            std::copy(q, q + r * d, qt + i * r * d);
        }
        for (Index row = 0; row < nr; ++row) {  // a sink is a logit whose value row is zero
            const Index j = row % r;
            m[row] = sinks ? sinks[g * r + j] : -std::numeric_limits<float>::infinity();
            l[row] = sinks ? 1.0 : 0.0;
        }
        std::fill(acc, acc + nr * d, 0.0f);
        // key runs contiguous in memory (the cache up to its ring's wrap, then this call's
        // keys), cut into blocks of at most kKeyBlock, over the keys any row of the tile reads
        for (Index j0 = first_key(s, p_first); j0 <= p_last;) {
            const float *keys, *vals_t;  // keys (n, d), values^T (d, n) with row stride ldvt
            Index n, ldvt;
            if (j0 >= pos0) {
                keys = ws.k.data() + (j0 - pos0) * kvd + g * d;
                vals_t = ws.vt.data() + g * d * T + (j0 - pos0);
                ldvt = T;
                n = std::min(kKeyBlock, p_last + 1 - j0);
            } else {
                const Index slot = cache->slot(j0);
                keys = cache_k + slot * kvd + g * d;
                const Index run = cache->window_ > 0 ? cache->window_ - slot : pos0 - j0;
                n = std::min({kKeyBlock, pos0 - j0, run});
                const float* vals = cache_v + slot * kvd + g * d;  // (n, d), row stride kvd
                for (Index i = 0; i < n; ++i)
                    for (Index c = 0; c < d; ++c) vt[c * kKeyBlock + i] = vals[i * kvd + c];
                vals_t = vt;
                ldvt = kKeyBlock;
            }
            // scores (rows, n) = q tile (rows, d) . keys (n, d)^T
            gemm_nt(qt, d, keys, kvd, scores, kKeyBlock, nr, n, d);
            // each row's online softmax over the keys its mask lets it read; the others weigh 0
            for (Index row = 0; row < nr; ++row) {
                const Index p = p_first + row / r;
                const Index lo = std::max(j0, first_key(s, p)), hi = std::min(j0 + n - 1, p);
                float* sr = scores + row * kKeyBlock;
                if (lo > hi) {
                    std::fill(sr, sr + n, 0.0f);
                    continue;
                }
                const float rescale = online_softmax_block(sr + (lo - j0), hi - lo + 1, scale,
                                                           cap, m[row], l[row]);
                std::fill(sr, sr + (lo - j0), 0.0f);
                std::fill(sr + (hi - j0 + 1), sr + n, 0.0f);
                float* a = acc + row * d;
                for (Index c = 0; c < d; ++c) a[c] *= rescale;
            }
            // acc (rows, d) += p (rows, n) . values (n, d), as a GEMM against values^T (d, n)
            gemm_nt(scores, kKeyBlock, vals_t, ldvt, pv, d, nr, d, n);
            for (Index i = 0; i < nr * d; ++i) acc[i] += pv[i];
            j0 += n;
        }
        for (Index row = 0; row < nr; ++row) {
            const Index t = t0 + row / r, j = row % r;
            const float inv = float(1.0 / l[row]);
            float* out = ws.o.data() + t * qd + (g * r + j) * d;
            const float* a = acc + row * d;
            for (Index c = 0; c < d; ++c) out[c] = a[c] * inv;
            if (s.output_gate) {
                const float* gate = ws.gate.data() + t * qd + (g * r + j) * d;
                for (Index c = 0; c < d; ++c) out[c] *= 1.0f / (1.0f + std::exp(-gate[c]));
            }
        }
    });

    if (!linear(ws.o.data(), T, wo, y, threads, scratch))
        throw std::logic_error("Attention: linear scratch not reserved");
    require_finite_result(y, T * H);
    if (cache) cache->append(ws.k.data(), ws.v.data(), T, kvd);
}

}  // namespace moelab
