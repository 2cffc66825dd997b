// Routers: logits, expert selection and weights for the four scorings of DESIGN.md §3.
#pragma once

#include <cstdint>

#include "moelab/spec.hpp"

namespace moelab {

// logits (T, E) = x (T, H) . W_r^T (+ bias), then c * tanh(l / c) when a soft-cap is set.
// Parallel over fixed blocks of tokens: bitwise-identical for any thread count.
void router_logits(const float* x, Index num_tokens, const float* router_weight,
                   const float* router_bias, const MoESpec& spec, float* logits) noexcept;

// Selection and weights per token from logits (T, E):
//   ids (T, k), per token sorted by weight descending, ties towards the lower expert id;
//   weights (T, k), the weights applied (for Llama4: sigmoid(logit), scaling the expert input).
// correction_bias (E) or nullptr: selection-only bias of the Sigmoid router.
// Needs at least k selectable (> -inf) logits per token; the caller checks.
void select_experts(const float* logits, Index num_tokens, const float* correction_bias,
                    const MoESpec& spec, std::int32_t* ids, float* weights);

// Load-balancing loss of one layer (HF load_balancing_loss_func on raw logits):
// E * sum_e f_e * P_e with p = softmax(logits), f_e = share of tokens with e in top-k(p),
// P_e = mean_t p_te. 0 when T = 0. Accumulated in double over fixed blocks.
double aux_loss(const float* logits, Index num_tokens, Index num_experts, Index top_k);
// mean_t logsumexp_e(logits)^2; 0 when T = 0.
double z_loss(const float* logits, Index num_tokens, Index num_experts);

}  // namespace moelab
