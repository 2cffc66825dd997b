#include "moelab/router.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "moelab/activation.hpp"
#include "moelab/aligned.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"
#include "moelab/types.hpp"

namespace moelab {

namespace {

// Elementary operations per logit, for threads_for: what makes a loop worth a parallel region.
constexpr double kSelectWorkPerLogit = 16.0;  // a key, a top-k comparison, an exp
constexpr double kZLossWorkPerLogit = 16.0;   // a max and an exp
// Added to the sum of the selected sigmoid scores before renormalising, as Hugging Face does
// (moelab.reference.SIGMOID_RENORM_EPS).
constexpr double kSigmoidRenormEps = 1e-20;

// Top-k of keys[0..n) by (key descending, index ascending): ids/vals (k) in that order.
// Keys may be -inf (picked only when fewer than k others exist).
void topk_desc(const float* keys, Index n, Index k, std::int32_t* ids, float* vals) noexcept {
    Index count = 0;
    for (Index i = 0; i < n; ++i) {
        const float v = keys[i];
        if (count == k && !(v > vals[k - 1])) continue;  // an equal key keeps the lower id
        Index p = count < k ? count++ : k - 1;
        while (p > 0 && v > vals[p - 1]) {
            vals[p] = vals[p - 1];
            ids[p] = ids[p - 1];
            --p;
        }
        vals[p] = v;
        ids[p] = std::int32_t(i);
    }
}

// Orders the k (id, weight) pairs by weight descending, ties towards the lower id.
void sort_by_weight(std::int32_t* ids, float* w, Index k) noexcept {
    for (Index i = 1; i < k; ++i) {
        const std::int32_t id = ids[i];
        const float v = w[i];
        Index p = i;
        while (p > 0 && (v > w[p - 1] || (v == w[p - 1] && id < ids[p - 1]))) {
            ids[p] = ids[p - 1];
            w[p] = w[p - 1];
            --p;
        }
        ids[p] = id;
        w[p] = v;
    }
}

inline float sigmoid_exact(float v) noexcept { return float(1.0 / (1.0 + std::exp(-double(v)))); }

// Group-limited selection (DeepSeek-V3): keys of experts outside the topk_group best groups
// become -inf. Group score = sum of the two best keys of the group.
void mask_groups(float* keys, const MoESpec& spec, float* group_score, std::int32_t* group_ids,
                 float* group_vals) noexcept {
    const Index G = spec.n_group, gs = spec.group_size();
    for (Index g = 0; g < G; ++g) {
        float best[2];
        std::int32_t unused[2];
        topk_desc(keys + g * gs, gs, 2, unused, best);
        group_score[g] = best[0] + best[1];
    }
    topk_desc(group_score, G, spec.topk_group, group_ids, group_vals);
    for (Index g = 0; g < G; ++g) {
        bool kept = false;
        for (Index j = 0; j < spec.topk_group; ++j) kept = kept || group_ids[j] == g;
        if (!kept)
            std::fill(keys + g * gs, keys + (g + 1) * gs, -std::numeric_limits<float>::infinity());
    }
}

// keys: (E) scratch; group_score, group_vals: (n_group); group_ids: (n_group).
void route_token(const float* l, const float* correction_bias, const MoESpec& spec,
                 std::int32_t* ids, float* w, float* keys, float* group_score, float* group_vals,
                 std::int32_t* group_ids) noexcept {
    const Index E = spec.num_experts, k = spec.num_experts_per_tok;
    const double scaling = float(spec.routed_scaling_factor);  // applied as float32
    switch (spec.scoring) {
        case Scoring::Softmax: {
            // top-k of softmax(l) == top-k of l (softmax is strictly increasing).
            topk_desc(l, E, k, ids, w);
            const double m = w[0];
            double sum = 0.0;
            for (Index e = 0; e < E; ++e) sum += std::exp(double(l[e]) - m);
            double sel = 0.0;
            for (Index j = 0; j < k; ++j) sel += std::exp(double(w[j]) - m) / sum;
            const double scale = spec.norm_topk_prob ? 1.0 / sel : 1.0;
            for (Index j = 0; j < k; ++j)
                w[j] = float(std::exp(double(w[j]) - m) / sum * scale * scaling);
            break;
        }
        case Scoring::Sigmoid: {
            for (Index e = 0; e < E; ++e) {
                keys[e] = sigmoid_exact(l[e]);
                if (correction_bias) keys[e] += correction_bias[e];
            }
            if (spec.n_group > 1) mask_groups(keys, spec, group_score, group_ids, group_vals);
            topk_desc(keys, E, k, ids, w);
            double sum = 0.0;
            for (Index j = 0; j < k; ++j) sum += (w[j] = sigmoid_exact(l[ids[j]]));  // unbiased
            const double scale = spec.norm_topk_prob ? 1.0 / (sum + kSigmoidRenormEps) : 1.0;
            for (Index j = 0; j < k; ++j) w[j] = float(double(w[j]) * scale * scaling);
            break;
        }
        case Scoring::TopkSoftmax: {
            topk_desc(l, E, k, ids, w);
            const double m = w[0];
            double sum = 0.0;
            for (Index j = 0; j < k; ++j) sum += std::exp(double(w[j]) - m);
            for (Index j = 0; j < k; ++j) w[j] = float(std::exp(double(w[j]) - m) / sum);
            break;
        }
        case Scoring::Llama4: {
            topk_desc(l, E, k, ids, w);
            for (Index j = 0; j < k; ++j) w[j] = sigmoid_exact(w[j]);
            break;
        }
    }
    sort_by_weight(ids, w, k);
}

}  // namespace

void RouterScratch::reserve(const MoESpec& spec, Index T, int threads) {
    const Index E = spec.num_experts, G = spec.n_group;
    const Index blocks = (T + kRouterTokenBlock - 1) / kRouterTokenBlock;
    grow_to(select_keys, threads * (E + 2 * G));
    grow_to(select_groups, threads * G);
    grow_to(aux_prob, blocks * E);
    grow_to(aux_token, threads * E);
    grow_to(aux_sum, E);
    grow_to(z_terms, T);
}

void router_logits(const float* x, Index T, const float* Wr, const float* bias,
                   const MoESpec& spec, float* logits, int threads) noexcept {
    const Index H = spec.hidden_size, E = spec.num_experts;
    const Index blocks = (T + kRouterTokenBlock - 1) / kRouterTokenBlock;
    const float cap = spec.router_logit_softcap ? float(*spec.router_logit_softcap) : 0.0f;
    threads = threads_for(double(T) * double(E) * double(H), threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::RouterLogits);
        MOELAB_OMP(for schedule(dynamic, 1))
        for (Index b = 0; b < blocks; ++b) {
            const Index t0 = b * kRouterTokenBlock, n = std::min(kRouterTokenBlock, T - t0);
            // (n, E) = x[t0 : t0 + n] (n, H) . Wr^T, on the run-time ISA's kernel [router].
            gemm_nt(x + t0 * H, H, Wr, H, logits + t0 * E, E, n, E, H);
            for (Index t = 0; t < n; ++t) {
                float* row = logits + (t0 + t) * E;
                if (bias)
                    for (Index e = 0; e < E; ++e) row[e] += bias[e];
                if (cap > 0.0f)
                    for (Index e = 0; e < E; ++e) row[e] = cap * std::tanh(row[e] / cap);
            }
        }
    }
}

void select_experts(const float* logits, Index T, const float* correction_bias,
                    const MoESpec& spec, std::int32_t* ids, float* weights, int threads,
                    RouterScratch& scratch) noexcept {
    const Index E = spec.num_experts, k = spec.num_experts_per_tok;
    threads = threads_for(double(T) * double(E) * kSelectWorkPerLogit, threads);
    const Index G = spec.n_group, per_thread = E + 2 * G;
    float* keys_of = scratch.select_keys.data();
    std::int32_t* groups_of = scratch.select_groups.data();
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::SelectExperts);
        MOELAB_OMP(for schedule(static))
        for (Index t = 0; t < T; ++t) {
            float* keys = keys_of + thread_id() * per_thread;
            route_token(logits + t * E, correction_bias, spec, ids + t * k, weights + t * k, keys,
                        keys + E, keys + E + G, groups_of + thread_id() * G);
        }
    }
}

double z_loss(const float* logits, Index T, Index E, int threads,
              RouterScratch& scratch) noexcept {
    if (T == 0) return 0.0;
    double* sq = scratch.z_terms.data();
    threads = threads_for(double(T) * double(E) * kZLossWorkPerLogit, threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::ZLoss);
        MOELAB_OMP(for schedule(static))
        for (Index t = 0; t < T; ++t) {
            const float* l = logits + t * E;
            double m = l[0];
            for (Index e = 1; e < E; ++e) m = std::max(m, double(l[e]));
            double sum = 0.0;
            for (Index e = 0; e < E; ++e) sum += std::exp(double(l[e]) - m);
            const double lse = m + std::log(sum);
            sq[t] = lse * lse;
        }
    }
    double total = 0.0;
    for (Index t = 0; t < T; ++t) total += sq[t];  // fixed order
    return total / double(T);
}

}  // namespace moelab
