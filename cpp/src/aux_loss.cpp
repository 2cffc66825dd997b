#include "moelab/aux_loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "moelab/parallel.hpp"

namespace moelab {

namespace {

// Elementary operations per logit, for threads_for: what makes the loop worth a parallel region.
constexpr double kAuxWorkPerLogit = 16.0;  // an exp and a division

// What P averages over the tokens: each token's distribution over the experts.
enum class Affinity {
    Softmax,           // softmax(l)
    NormalisedSigmoid  // sigmoid(l) / sum sigmoid(l)
};

// log(sigmoid(v)), finite for every finite v (sigmoid(v) itself underflows below v ~ -745).
inline double log_sigmoid(double v) noexcept {
    return std::min(v, 0.0) - std::log1p(std::exp(-std::abs(v)));
}

// One token's distribution a (E) from its logits l (E), in double: softmax(l), or
// s / sum s = softmax(log s) for s = sigmoid(l), which stays finite where every s underflows.
void token_affinity(const float* l, Index E, Affinity kind, double* a) noexcept {
    double m = -std::numeric_limits<double>::infinity();
    for (Index e = 0; e < E; ++e) {
        a[e] = kind == Affinity::Softmax ? double(l[e]) : log_sigmoid(double(l[e]));
        m = std::max(m, a[e]);
    }
    double sum = 0.0;
    for (Index e = 0; e < E; ++e) sum += (a[e] = std::exp(a[e] - m));
    for (Index e = 0; e < E; ++e) a[e] /= sum;
}

// sum_t a_te (E), the affinities summed over the T tokens, into sums: per fixed block of tokens
// in parallel (scratch.aux_prob, (blocks, E)), then over the blocks in order.
void sum_affinity(const float* logits, Index T, Index E, Affinity kind, int threads,
                  RouterScratch& scratch, double* sums) noexcept {
    const Index blocks = (T + kRouterTokenBlock - 1) / kRouterTokenBlock;
    double* partial = scratch.aux_prob.data();
    double* rows = scratch.aux_token.data();
    threads = threads_for(double(T) * double(E) * kAuxWorkPerLogit, threads);
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::AuxLoss);
        MOELAB_OMP(for schedule(dynamic, 1))
        for (Index b = 0; b < blocks; ++b) {
            double* a = rows + thread_id() * E;
            double* acc = partial + b * E;
            std::fill(acc, acc + E, 0.0);
            const Index end = std::min(T, (b + 1) * kRouterTokenBlock);
            for (Index t = b * kRouterTokenBlock; t < end; ++t) {
                token_affinity(logits + t * E, E, kind, a);
                for (Index e = 0; e < E; ++e) acc[e] += a[e];
            }
        }
    }
    std::fill(sums, sums + E, 0.0);
    for (Index b = 0; b < blocks; ++b)
        for (Index e = 0; e < E; ++e) sums[e] += partial[b * E + e];
}

}  // namespace

double load_balancing_loss(const float* logits, const std::int64_t* kept, Index T, Index E,
                           int threads, RouterScratch& scratch) noexcept {
    if (T == 0) return 0.0;
    double* P = scratch.aux_sum.data();
    sum_affinity(logits, T, E, Affinity::Softmax, threads, scratch, P);
    double loss = 0.0;
    for (Index e = 0; e < E; ++e) loss += (double(kept[e]) / double(T)) * (P[e] / double(T));
    return double(E) * loss;
}

double sequence_balance_loss(const float* logits, const std::int64_t* kept, Index T, Index E,
                             Index k, int threads, RouterScratch& scratch) noexcept {
    if (T == 0) return 0.0;
    double* P = scratch.aux_sum.data();
    sum_affinity(logits, T, E, Affinity::NormalisedSigmoid, threads, scratch, P);
    const double f_scale = double(E) / (double(k) * double(T));
    double loss = 0.0;
    for (Index e = 0; e < E; ++e) loss += (f_scale * double(kept[e])) * (P[e] / double(T));
    return loss;
}

double aux_loss(const MoESpec& spec, const float* logits, const std::int64_t* kept, Index T,
                int threads, RouterScratch& scratch) noexcept {
    const Index E = spec.num_experts;
    if (spec.scoring == Scoring::Sigmoid)
        return sequence_balance_loss(logits, kept, T, E, spec.num_experts_per_tok, threads,
                                     scratch);
    return load_balancing_loss(logits, kept, T, E, threads, scratch);
}

}  // namespace moelab
