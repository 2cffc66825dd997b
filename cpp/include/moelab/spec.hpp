// MoESpec: the dimensions and switches of one MoE layer (the C++ mirror of moelab.MoEConfig).
#pragma once

#include <string>

#include "moelab/types.hpp"

namespace moelab {

// Router kinds (DESIGN.md §3).
enum class Scoring { Softmax, Sigmoid, TopkSoftmax, Llama4 };
// Gated expert activations act(gate) * up; SwigluOai is gpt-oss's clamped SwiGLU.
enum class Activation { Silu, Gelu, GeluTanh, Relu, SwigluOai };

Scoring parse_scoring(const std::string& name);         // throws std::invalid_argument
Activation parse_activation(const std::string& name);   // throws std::invalid_argument
std::string to_string(Scoring s);
std::string to_string(Activation a);

// Bounds that guard against absurd sizes (and overflow of their products) before allocation.
constexpr Index kMaxDimension = Index(1) << 24;            // 16M: beyond any model's H, E or I
constexpr double kMaxLayerParams = double(Index(1) << 36);  // 2^36 float32 = 256 GiB

struct MoESpec {
    Index hidden_size = 0;        // H
    Index num_experts = 0;        // E
    Index top_k = 0;              // k
    Index intermediate_size = 0;  // I, one routed expert
    Scoring scoring = Scoring::Softmax;
    bool norm_topk_prob = true;
    float routed_scaling_factor = 1.0f;
    Index n_group = 1;
    Index topk_group = 1;
    bool correction_bias = false;       // router.e_score_correction_bias (selection only)
    bool router_bias = false;           // router.bias (added to the logits)
    float router_logit_softcap = 0.0f;  // 0 = none; else c * tanh(l / c)
    Activation activation = Activation::Silu;
    bool expert_bias = false;               // experts.gate_up_proj_bias / down_proj_bias
    Index shared_intermediate_size = 0;     // S, 0 = no shared experts
    bool shared_expert_gate = false;        // shared output times sigmoid(w_g . x)
    double capacity_factor = 0.0;           // 0 = dropless

    // Throws std::invalid_argument naming the field for an impossible combination.
    void validate() const;
    // Pairs each expert may keep for T tokens: ceil(T * k / E * capacity_factor); -1 = dropless.
    Index capacity(Index num_tokens) const;
    Index group_size() const { return num_experts / n_group; }
    std::string describe() const;
};

}  // namespace moelab
