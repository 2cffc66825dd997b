// Routers: logits, expert selection and weights for the four scorings of docs/semantics.md.
#pragma once

#include <cstdint>
#include <vector>

#include "moelab/spec.hpp"

namespace moelab {

// The fixed work unit over tokens of the router's loops and losses: results never depend on the
// thread count.
constexpr Index kRouterTokenBlock = 64;

// Scratch of the functions below for up to `threads` threads, grown by reserve before they run
// (they never allocate).
struct RouterScratch {
    std::vector<float> select_keys;           // (threads, E + 2 n_group): keys, group scores
    std::vector<std::int32_t> select_groups;  // (threads, n_group)
    std::vector<double> aux_prob;             // (blocks of tokens, E): the aux loss's partials
    std::vector<double> aux_token;            // (threads, E): one token's affinities
    std::vector<double> aux_sum;              // (E): the partials summed over the blocks
    std::vector<double> z_terms;              // (T): logsumexp^2 per token
    void reserve(const MoESpec& spec, Index num_tokens, int threads);
};

// logits (T, E) = x (T, H) . W_r^T (+ bias), then c * tanh(l / c) when a soft-cap is set.
// Parallel over fixed blocks of tokens: bitwise-identical for any thread count.
void router_logits(const float* x, Index num_tokens, const float* router_weight,
                   const float* router_bias, const MoESpec& spec, float* logits,
                   int threads) noexcept;

// Selection and weights per token from logits (T, E):
//   ids (T, k), per token sorted by weight descending, ties towards the lower expert id;
//   weights (T, k), the weights applied (for Llama4: sigmoid(logit), scaling the expert input).
// correction_bias (E) or nullptr: selection-only bias of the Sigmoid router.
// Needs at least k selectable (> -inf) logits per token; the caller checks.
void select_experts(const float* logits, Index num_tokens, const float* correction_bias,
                    const MoESpec& spec, std::int32_t* ids, float* weights, int threads,
                    RouterScratch& scratch) noexcept;

// mean_t logsumexp_e(logits)^2; 0 when T = 0.
double z_loss(const float* logits, Index num_tokens, Index num_experts, int threads,
              RouterScratch& scratch) noexcept;

}  // namespace moelab
