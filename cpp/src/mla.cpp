#include "moelab/mla.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
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

constexpr Index kKeyBlock = 64;    // keys scored at once by a task
constexpr Index kQueryTile = 32;   // queries scored together against a key block (expanded form)
constexpr Index kHeadBlock = 8;    // heads sharing one read of a cached row (absorbed form)

// Per calling thread, reused across forwards (no allocation once the sizes have been seen).
struct MlaWorkspace {
    AlignedVector<float> q_a;    // (T, q_lora_rank)
    AlignedVector<float> q;      // (T, n_h d_qk), q_r roped
    AlignedVector<float> rows;   // (T, r + d_r) [c | k_r] of this call's tokens
    AlignedVector<float> o;      // (T, n_h d_v)
    AlignedVector<float> task;   // (threads, per-task scratch)
    AlignedVector<double> denom; // (threads, rows of a task)
};

MlaWorkspace& mla_workspace() {
    static thread_local MlaWorkspace ws;
    return ws;
}

// x (n) *= w / sqrt(mean(x^2) + eps), the sum in double.
void rms_norm(float* x, Index n, const float* w, float eps) noexcept {
    double ss = 0.0;
    for (Index i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (Index i = 0; i < n; ++i) x[i] = w[i] * (x[i] * inv);
}

// The rope channels x (d_r) at position p: interleaved pairs first laid out as halves.
void rope_channels(const Rope& rope, bool interleave, float* x, Index pos) noexcept {
    const Index dr = rope.head_dim;
    if (interleave) {
        float tmp[512];  // d_r <= 512 (validated)
        for (Index i = 0; i < dr / 2; ++i) {
            tmp[i] = x[2 * i];
            tmp[dr / 2 + i] = x[2 * i + 1];
        }
        std::memcpy(x, tmp, std::size_t(dr) * sizeof(float));
    }
    apply_rope(rope, x, 1, 1, dr, pos);
}

}  // namespace

// ---- spec ------------------------------------------------------------------------------------

float MlaSpec::logit_scale() const {
    return scaling > 0.0f ? scaling : float(1.0 / std::sqrt(double(qk_head_dim())));
}

void MlaSpec::validate() const {
    require_dimension("hidden_size", hidden_size, kMaxDimension);
    require_dimension("num_attention_heads", num_heads, kMaxDimension);
    if (q_lora_rank != 0) require_dimension("q_lora_rank", q_lora_rank, kMaxDimension);
    require_dimension("kv_lora_rank", kv_lora_rank, kMaxDimension);
    require_dimension("qk_nope_head_dim", qk_nope_head_dim, Index(1) << 16);
    require_dimension("qk_rope_head_dim", qk_rope_head_dim, 512);
    require_dimension("v_head_dim", v_head_dim, Index(1) << 16);
    if (qk_rope_head_dim % 2 != 0)
        throw std::invalid_argument("qk_rope_head_dim: must be even, got " +
                                    std::to_string(qk_rope_head_dim));
    if (rope.head_dim != qk_rope_head_dim || rope.partial_rotary_factor != 1.0)
        throw std::invalid_argument("rope: head_dim must be qk_rope_head_dim=" +
                                    std::to_string(qk_rope_head_dim) +
                                    " with partial_rotary_factor 1, got head_dim=" +
                                    std::to_string(rope.head_dim));
    if (rope.interleaved)
        throw std::invalid_argument("rope: interleaved pairs are set by rope_interleave here");
    rope.validate();
    if (!(std::isfinite(norm_eps) && norm_eps > 0.0f))
        throw std::invalid_argument("rms_norm_eps: must be finite and > 0, got " +
                                    std::to_string(norm_eps));
    if (!(std::isfinite(scaling) && scaling >= 0.0f))
        throw std::invalid_argument("scaling: must be finite and > 0, got " + std::to_string(scaling));
    if (max_positions < 1)
        throw std::invalid_argument("max_position_embeddings: must be >= 1, got " +
                                    std::to_string(max_positions));
    const double H = double(hidden_size);
    const double params = (q_lora_rank ? H * q_lora_rank + double(q_lora_rank) * q_dim()
                                       : H * q_dim()) +
                          H * latent_dim() + double(kv_lora_rank) * kv_b_rows() + H * o_dim();
    if (params > double(kMaxLayerParams))
        throw std::invalid_argument("MultiHeadLatentAttention: more than 2^36 parameters (" +
                                    describe() + ")");
}

std::string MlaSpec::describe() const {
    std::ostringstream s;
    s << "H=" << hidden_size << ", n_h=" << num_heads << ", q_lora_rank=" << q_lora_rank
      << ", kv_lora_rank=" << kv_lora_rank << ", d_nope=" << qk_nope_head_dim
      << ", d_rope=" << qk_rope_head_dim << ", d_v=" << v_head_dim;
    return s.str();
}

// ---- cache -----------------------------------------------------------------------------------

std::size_t MlaCache::nbytes() const {
    return std::size_t(length()) * std::size_t(row_dim_) * sizeof(float);
}

void MlaCache::read(float* rows) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::memcpy(rows, rows_.data(), std::size_t(length_ * row_dim_) * sizeof(float));
}

void MlaCache::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    length_ = 0;
    rows_ = AlignedVector<float>();
}

void MlaCache::reserve(Index new_length) {
    const std::size_t need = std::size_t(new_length * row_dim_);
    if (rows_.size() >= need) return;
    // geometric growth, so decoding token by token copies O(length) in all
    AlignedVector<float> grown(std::max(need, rows_.size() + rows_.size() / 2));
    std::copy(rows_.begin(), rows_.end(), grown.begin());
    rows_.swap(grown);
}

void MlaCache::append(const float* rows, Index T) noexcept {
    std::memcpy(rows_.data() + length_ * row_dim_, rows, std::size_t(T * row_dim_) * sizeof(float));
    length_ += T;
}

// ---- layer -----------------------------------------------------------------------------------

MultiHeadLatentAttention::MultiHeadLatentAttention(const MlaSpec& spec, DType weight_dtype)
    : TokenMixerOf(spec, {"MLA", "cache", "new_cache"}, weight_dtype) {
    rope_ = make_rope(spec_.rope);
    const MlaSpec& s = spec_;
    const Index H = s.hidden_size, qr = s.q_lora_rank, r = s.kv_lora_rank;
    if (qr == 0) {
        q_ = weights_.add("q_proj.weight", {s.q_dim(), H}, H, weight_dtype);
    } else {
        q_a_ = weights_.add("q_a_proj.weight", {qr, H}, H, weight_dtype);
        if (s.attention_bias) q_a_bias_ = weights_.add("q_a_proj.bias", {qr}, H);
        q_a_norm_ = add_norm("q_a_layernorm.weight", {qr}, 1.0f);
        q_b_ = weights_.add("q_b_proj.weight", {s.q_dim(), qr}, qr, weight_dtype);
    }
    kv_a_ = weights_.add("kv_a_proj_with_mqa.weight", {s.latent_dim(), H}, H, weight_dtype);
    if (s.attention_bias) kv_a_bias_ = weights_.add("kv_a_proj_with_mqa.bias", {s.latent_dim()}, H);
    kv_a_norm_ = add_norm("kv_a_layernorm.weight", {r}, 1.0f);
    kv_b_ = weights_.add("kv_b_proj.weight", {s.kv_b_rows(), r}, r);
    o_ = weights_.add("o_proj.weight", {H, s.o_dim()}, s.o_dim(), weight_dtype);
    if (s.attention_bias) o_bias_ = weights_.add("o_proj.bias", {H}, s.o_dim());
}

std::shared_ptr<MlaCache> MultiHeadLatentAttention::new_cache() const {
    return std::shared_ptr<MlaCache>(new MlaCache(spec_.latent_dim(), id()));
}

void MultiHeadLatentAttention::forward(const float* x, Index T, float* y, MlaCache* cache,
                                       MlaForm form) const {
    const ForwardLocks locks = begin_positioned_forward(x, T, cache);
    if (T == 0) return;
    const Index pos0 = locks.pos0;

    const MlaSpec& s = spec_;
    const Index H = s.hidden_size, nh = s.num_heads, qr = s.q_lora_rank, r = s.kv_lora_rank,
                dn = s.qk_nope_head_dim, dr = s.qk_rope_head_dim, dv = s.v_head_dim,
                dqk = s.qk_head_dim(), qd = s.q_dim(), ld = s.latent_dim(), od = s.o_dim(),
                wkv = dn + dv;  // kv_b_proj rows per head
    const bool absorbed = form == MlaForm::Absorbed ||
                          (form == MlaForm::Auto && T <= kAbsorbedMaxTokens);

    // The planning step: every buffer grows here, before any parallel region.
    MlaWorkspace& ws = mla_workspace();
    ExpertScratch& scratch = thread_workspace().experts;
    auto linear_weight = [&](std::size_t w, std::size_t b) {
        const Tensor& t = weights_.at(w);
        LinearWeight lw;
        lw.weight = weight_ptr(t);
        lw.bias = s.attention_bias && b ? weights_.at(b).f32_data() : nullptr;
        lw.out_features = t.shape[0];
        lw.in_features = t.shape[1];
        return lw;
    };
    LinearWeight wq, wqa, wqb;
    if (qr == 0) {
        wq = linear_weight(q_, 0);
        reserve_linear(wq, T, scratch);
    } else {
        wqa = linear_weight(q_a_, q_a_bias_);
        wqb = linear_weight(q_b_, 0);
        reserve_linear(wqa, T, scratch);
        reserve_linear(wqb, T, scratch);
        grow_to(ws.q_a, T * qr);
    }
    const LinearWeight wkva = linear_weight(kv_a_, kv_a_bias_);
    const LinearWeight wo = linear_weight(o_, o_bias_);
    reserve_linear(wkva, T, scratch);
    reserve_linear(wo, T, scratch);
    grow_to(ws.q, T * qd);
    grow_to(ws.rows, T * ld);
    grow_to(ws.o, T * od);
    const int threads = num_threads();
    const Index hb = std::min(nh, kHeadBlock);
    // absorbed: q_cat (hb, r + d_r), scores (hb, kKeyBlock), acc (hb, r), maxima (hb)
    // expanded: keys (L, d_qk), values^T (d_v, L) of one head over all L = pos0 + T keys,
    //           scores (tile, kKeyBlock), acc and P.V (tile, d_v), maxima (tile)
    const Index per_task =
        absorbed ? hb * (ld + kKeyBlock + r + 1)
                 : (pos0 + T) * (dqk + dv) + kQueryTile * (kKeyBlock + 2 * dv + 1);
    const Index task_rows = absorbed ? hb : kQueryTile;
    grow_to(ws.task, Index(threads) * per_task);
    grow_to(ws.denom, Index(threads) * task_rows);
    if (cache) cache->reserve(pos0 + T);

    // projections
    bool ok = true;
    if (qr == 0) {
        ok = linear(x, T, wq, ws.q.data(), threads, scratch);
    } else {
        ok = linear(x, T, wqa, ws.q_a.data(), threads, scratch);
        const float* w = weights_.at(q_a_norm_).f32_data();
        for (Index t = 0; ok && t < T; ++t) rms_norm(ws.q_a.data() + t * qr, qr, w, s.norm_eps);
        ok = ok && linear(ws.q_a.data(), T, wqb, ws.q.data(), threads, scratch);
    }
    ok = ok && linear(x, T, wkva, ws.rows.data(), threads, scratch);
    if (!ok) throw std::logic_error("MultiHeadLatentAttention: linear scratch not reserved");

    // kv_a_layernorm on c, RoPE on k_r and on each head's q_r
    const float* kv_norm_w = weights_.at(kv_a_norm_).f32_data();
    for_each_token(T, double(T) * double(qd + ld) * 8.0, threads, [&](Index t) {
        float* row = ws.rows.data() + t * ld;
        rms_norm(row, r, kv_norm_w, s.norm_eps);
        rope_channels(rope_, s.rope_interleave, row + r, pos0 + t);
        float* q = ws.q.data() + t * qd;
        for (Index h = 0; h < nh; ++h) rope_channels(rope_, s.rope_interleave, q + h * dqk + dn, pos0 + t);
    });

    const float scale = s.logit_scale();
    const float* kv_b = weights_.at(kv_b_).f32_data();  // (n_h (d_n + d_v), r)
    const float* cached = cache ? cache->rows_.data() : nullptr;
    // the rows of keys j0 .. j0 + n - 1 (n <= kKeyBlock, not crossing pos0): cache, then this call
    auto key_rows = [&](Index j0, Index limit, Index& n) -> const float* {
        if (j0 >= pos0) {
            n = std::min(kKeyBlock, limit - j0);
            return ws.rows.data() + (j0 - pos0) * ld;
        }
        n = std::min({kKeyBlock, limit - j0, pos0 - j0});
        return cached + j0 * ld;
    };

    if (absorbed) {
        // one task per (token, block of heads): each cached row read once per block
        const Index blocks = (nh + hb - 1) / hb, tasks = T * blocks;
        const double work = double(T) * double(nh) * double(2 * r + dr) * double(pos0 + T);
        for_each_scores_task(tasks, 4.0 * work, threads, [&](Index task) {
            const Index t = task / blocks, h0 = (task % blocks) * hb, p = pos0 + t;
            const Index g = std::min(hb, nh - h0);
            float* qc = ws.task.data() + Index(thread_id()) * per_task;  // (hb, r + d_r)
            float* scores = qc + hb * ld;                                // (hb, kKeyBlock)
            float* acc = scores + hb * kKeyBlock;                        // (hb, r)
            float* m = acc + hb * r;                                     // (hb)
            double* l = ws.denom.data() + Index(thread_id()) * task_rows;
            const float* q = ws.q.data() + t * qd;
            // q_c,h = W_UK,h^T q_n,h: sum over the d_n rows of head h, in row order
            for (Index j = 0; j < g; ++j) {
                const Index h = h0 + j;
                float* qcj = qc + j * ld;
                std::fill(qcj, qcj + r, 0.0f);
                const float* qn = q + h * dqk;
                for (Index i = 0; i < dn; ++i) {
                    const float a = qn[i];
                    const float* w = kv_b + (h * wkv + i) * r;
                    for (Index c = 0; c < r; ++c) qcj[c] += a * w[c];
                }
                std::copy(qn + dn, qn + dqk, qcj + r);
                m[j] = -std::numeric_limits<float>::infinity();
                l[j] = 0.0;
            }
            std::fill(acc, acc + g * r, 0.0f);
            for (Index j0 = 0; j0 <= p;) {
                Index n;
                const float* keys = key_rows(j0, p + 1, n);
                // scores (g, n) = [q_c | q_r] (g, r + d_r) . [c | k_r] (n, r + d_r)^T
                gemm_nt(qc, ld, keys, ld, scores, kKeyBlock, g, n, ld);
                for (Index j = 0; j < g; ++j) {
                    const float f = online_softmax_block(scores + j * kKeyBlock, n, scale, 0.0f, m[j], l[j]);
                    float* a = acc + j * r;
                    for (Index c = 0; c < r; ++c) a[c] *= f;
                }
                // acc (g, r) += p (g, n) . c (n, r)
                accumulate_weighted_rows(scores, kKeyBlock, g, keys, ld, n, r, acc, r);
                j0 += n;
            }
            // o_h = W_UV,h (acc_h / l_h)
            for (Index j = 0; j < g; ++j) {
                const Index h = h0 + j;
                float* a = acc + j * r;
                const float inv = float(1.0 / l[j]);
                for (Index c = 0; c < r; ++c) a[c] *= inv;
                float* out = ws.o.data() + t * od + h * dv;
                for (Index i = 0; i < dv; ++i) {
                    const float* w = kv_b + (h * wkv + dn + i) * r;
                    float sum = 0.0f;
                    for (Index c = 0; c < r; ++c) sum += w[c] * a[c];
                    out[i] = sum;
                }
            }
        });
    } else {
        // one task per head: its k_n and v rebuilt once for all L keys (keys and values^T as
        // GEMM operands), then every tile of queries scored against them block by block
        const Index L = pos0 + T;
        const double work = double(nh) * (double(L) * double(wkv) * double(r) +
                                          double(T) * double(dqk + dv) * double(L));
        for_each_scores_task(nh, 2.0 * work, threads, [&](Index h) {
            float* keys = ws.task.data() + Index(thread_id()) * per_task;  // (L, d_qk)
            float* vt = keys + L * dqk;                                      // (d_v, L)
            float* scores = vt + dv * L;                                     // (tile, kKeyBlock)
            float* acc = scores + kQueryTile * kKeyBlock;                    // (tile, d_v)
            float* pv = acc + kQueryTile * dv;                               // (tile, d_v)
            float* m = pv + kQueryTile * dv;                                 // (tile)
            double* l = ws.denom.data() + Index(thread_id()) * task_rows;
            const float* wh = kv_b + h * wkv * r;  // (d_n + d_v, r): W_UK rows, then W_UV rows
            for (Index j0 = 0; j0 < L;) {
                Index n;
                const float* rows = key_rows(j0, L, n);
                // keys = [k_n | k_r] with k_n (n, d_n) = c (n, r) . W_UK^T
                gemm_nt(rows, ld, wh, r, keys + j0 * dqk, dqk, n, dn, r);
                for (Index i = 0; i < n; ++i)
                    std::copy(rows + i * ld + r, rows + i * ld + ld, keys + (j0 + i) * dqk + dn);
                // v^T (d_v, n) = W_UV (d_v, r) . c (n, r)^T
                gemm_nt(wh + dn * r, r, rows, ld, vt + j0, L, dv, n, r);
                j0 += n;
            }
            for (Index t0 = 0; t0 < T; t0 += kQueryTile) {
                const Index nq = std::min(kQueryTile, T - t0), last = pos0 + t0 + nq - 1;
                for (Index q = 0; q < nq; ++q) {
                    m[q] = -std::numeric_limits<float>::infinity();
                    l[q] = 0.0;
                }
                std::fill(acc, acc + nq * dv, 0.0f);
                const float* qh = ws.q.data() + t0 * qd + h * dqk;  // (nq, d_qk), rows qd apart
                for (Index j0 = 0; j0 <= last;) {
                    const Index n = std::min(kKeyBlock, last + 1 - j0);
                    gemm_nt(qh, qd, keys + j0 * dqk, dqk, scores, kKeyBlock, nq, n, dqk);
                    for (Index q = 0; q < nq; ++q) {
                        const Index p = pos0 + t0 + q;
                        const Index valid = std::max<Index>(0, std::min(n, p + 1 - j0));
                        float* sq = scores + q * kKeyBlock;
                        const float f = online_softmax_block(sq, valid, scale, 0.0f, m[q], l[q]);
                        std::fill(sq + valid, sq + n, 0.0f);
                        float* a = acc + q * dv;
                        for (Index c = 0; c < dv; ++c) a[c] *= f;
                    }
                    // acc (nq, d_v) += p (nq, n) . v (n, d_v), a GEMM against v^T
                    gemm_nt(scores, kKeyBlock, vt + j0, L, pv, dv, nq, dv, n);
                    for (Index i = 0; i < nq * dv; ++i) acc[i] += pv[i];
                    j0 += n;
                }
                for (Index q = 0; q < nq; ++q) {
                    const float inv = float(1.0 / l[q]);
                    float* out = ws.o.data() + (t0 + q) * od + h * dv;
                    for (Index c = 0; c < dv; ++c) out[c] = acc[q * dv + c] * inv;
                }
            }
        });
    }

    if (!linear(ws.o.data(), T, wo, y, threads, scratch))
        throw std::logic_error("MultiHeadLatentAttention: linear scratch not reserved");
    require_finite_result(y, T * H);
    if (cache) cache->append(ws.rows.data(), T);
}

}  // namespace moelab
