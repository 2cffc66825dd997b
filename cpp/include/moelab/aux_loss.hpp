// The auxiliary (load-balancing) loss of one MoE layer, as each router family defines it,
// computed from the routing the layer applied (the kept pairs, after groups, bias and capacity).
#pragma once

#include <cstdint>

#include "moelab/router.hpp"
#include "moelab/spec.hpp"

namespace moelab {

// Hugging Face's load_balancing_loss_func (Switch Transformer) for one layer:
//   E * sum_e f_e * P_e,  f_e = kept_e / T,  P_e = mean_t softmax(logits_t)_e.
// logits (T, E), as the router produced them; kept (E): the (token, slot) pairs each expert
// kept. 0 when T = 0.
double load_balancing_loss(const float* logits, const std::int64_t* kept, Index num_tokens,
                           Index num_experts, int threads, RouterScratch& scratch) noexcept;

// DeepSeek-V3's sequence-wise balance loss without its coefficient alpha (the forward is one
// sequence):
//   sum_i f_i * P_i,  f_i = E / (k T) * kept_i,  P_i = mean_t s_ti / sum_j s_tj,
//   s = sigmoid(logits) (no correction bias). 0 when T = 0.
double sequence_balance_loss(const float* logits, const std::int64_t* kept, Index num_tokens,
                             Index num_experts, Index top_k, int threads,
                             RouterScratch& scratch) noexcept;

// The loss of spec's router kind: sequence_balance_loss for Sigmoid, load_balancing_loss for
// Softmax, TopkSoftmax (gpt-oss, as transformers computes it) and Llama4 (moelab's choice:
// transformers defines none). Accumulated in double over fixed blocks of tokens, reduced in a
// fixed order: bitwise-identical for any thread count.
double aux_loss(const MoESpec& spec, const float* logits, const std::int64_t* kept,
                Index num_tokens, int threads, RouterScratch& scratch) noexcept;

}  // namespace moelab
