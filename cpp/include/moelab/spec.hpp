// MoESpec: the dimensions and switches of one MoE layer, with moelab.MoEConfig's field names and
// meanings, its value rules (validate) and the layer's canonical tensors (tensors).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "moelab/types.hpp"

namespace moelab {

// Router kinds (docs/semantics.md, "Routers").
enum class Scoring { Softmax, Sigmoid, TopkSoftmax, Llama4 };
// Gated expert activations act(gate) * up; SwigluOai is gpt-oss's clamped SwiGLU.
enum class Activation { Silu, Gelu, GeluTanh, Relu, SwigluOai };

// Both throw std::invalid_argument "scoring must be one of ('softmax', ...), got 'x'".
Scoring parse_scoring(const std::string& name);
Activation parse_activation(const std::string& name);
std::string to_string(Scoring s);
std::string to_string(Activation a);
std::vector<std::string> scoring_names();     // in the order of the enum
std::vector<std::string> activation_names();  // in the order of the enum

// Bounds that guard against absurd sizes (and overflow of their products) before allocation.
constexpr Index kMaxDimension = Index(1) << 24;          // 16M: beyond any model's H, E or I
constexpr Index kMaxLayerParams = Index(1) << 36;        // 2^36 float32 = 256 GiB

// The canonical tensors of a MoE layer (docs/semantics.md, "Weights"), in canonical order.
enum class LayerTensor {
    RouterWeight,
    RouterBias,
    CorrectionBias,
    GateUp,
    Down,
    GateUpBias,
    DownBias,
    SharedGateUp,
    SharedDown,
    SharedGate,
    Count  // the number of kinds
};

// One tensor of a layer: its canonical name and shape, the fan-in of its random init (uniform
// in ±1/sqrt(fan_in)), whether it is stored in the layer's weight dtype (the expert matrices,
// float32 or bfloat16; everything else is float32) and whether it is a parameter (the
// correction bias is a buffer, as in Hugging Face).
struct TensorSpec {
    LayerTensor kind;
    std::string name;
    std::vector<Index> shape;
    Index fan_in;
    bool in_weight_dtype;
    bool parameter;
};

struct MoESpec {
    Index hidden_size = 0;            // H
    Index num_experts = 0;            // E
    Index num_experts_per_tok = 0;    // k
    Index moe_intermediate_size = 0;  // I, one routed expert
    Scoring scoring = Scoring::Softmax;
    bool norm_topk_prob = true;
    double routed_scaling_factor = 1.0;  // the router applies it rounded to float32
    Index n_group = 1;
    Index topk_group = 1;
    bool correction_bias = false;  // router.e_score_correction_bias (selection only)
    bool router_bias = false;      // router.bias (added to the logits)
    std::optional<double> router_logit_softcap;  // c: logits c * tanh(l / c), as float32
    Activation activation = Activation::Silu;
    bool expert_bias = false;  // experts.gate_up_proj_bias / down_proj_bias
    Index n_shared_experts = 0;
    std::optional<Index> shared_intermediate_size;  // none: n_shared_experts * I
    bool shared_expert_gate = false;                // shared output times sigmoid(w_g . x)
    std::optional<double> capacity_factor;          // none: dropless

    // Throws std::invalid_argument for a value out of range, an impossible combination or an
    // absurd size (a dimension above kMaxDimension, more than kMaxLayerParams parameters), naming
    // the field. The one home of these rules: moelab.MoEConfig validates by building a MoESpec
    // and raises ValueError "MoEConfig." + this message.
    void validate() const;
    // S, the width of the shared expert block (0 without shared experts).
    Index shared_width() const;
    // The layer's tensors in canonical order, those its switches ask for: the one table of
    // names, shapes, fan-ins and storage that the layer, its loader and Python use.
    std::vector<TensorSpec> tensors() const;
    // Parameters of the layer: every tensor but the correction bias. Valid specs only.
    Index num_params() const;
    // Pairs each expert may keep for T tokens: ceil(T * k / E * capacity_factor); -1 = dropless.
    Index capacity(Index num_tokens) const;
    Index group_size() const { return num_experts / n_group; }
    std::string describe() const;
};

}  // namespace moelab
