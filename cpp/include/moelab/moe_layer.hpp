// MoELayer: router + routed experts (+ shared experts) with weights held once, in float32.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

#include "moelab/spec.hpp"
#include "moelab/stats.hpp"
#include "moelab/weights.hpp"

namespace moelab {

class MoELayer {
  public:
    // Validates the spec (std::invalid_argument) and allocates zeroed weights. With BF16 the
    // expert and shared-expert matrices are stored as bfloat16 (router, biases and gate stay
    // float32: routing runs in float32 whatever the weight dtype).
    explicit MoELayer(const MoESpec& spec, DType weight_dtype = DType::F32);

    const MoESpec& spec() const { return spec_; }
    DType weight_dtype() const { return dtype_; }
    const WeightSet& weights() const { return weights_; }
    WeightSet& weights() { return weights_; }

    // Uniform in ±1/sqrt(fan_in) per tensor (biases: of their matrix), as torch.nn.Linear.
    void init_random(std::uint64_t seed);
    // All or nothing (WeightSet::load); waits for running forwards.
    void load_weights(const std::vector<WeightView>& views, bool strict);

    // y (T, H) = MoE(x (T, H)). Throws std::invalid_argument for a non-finite x or router
    // logits that overflow, before any output is written; stats may be nullptr.
    // Thread-safe: concurrent forwards share the weights read-only.
    void forward(const float* x, Index num_tokens, float* y, RoutingStatsOut* stats) const;

  private:
    MoESpec spec_;
    DType dtype_;
    WeightSet weights_;
    std::size_t router_weight_, router_bias_, correction_bias_, gate_up_, down_, gate_up_bias_,
        down_bias_, shared_gate_up_, shared_down_, shared_gate_;
    mutable std::shared_mutex mutex_;
};

// GatedMLP: one dense gated FFN y = down( act(gate x) * up x ), the layout of one expert:
// gate_up_proj (2I, H), down_proj (H, I). Dense layers and Grok-2's residual MLP use it.
class GatedMLP {
  public:
    GatedMLP(Index hidden, Index intermediate, Activation activation,
             DType weight_dtype = DType::F32);
    DType weight_dtype() const { return dtype_; }
    Index hidden() const { return hidden_; }
    Index intermediate() const { return intermediate_; }
    Activation activation() const { return activation_; }
    const WeightSet& weights() const { return weights_; }
    WeightSet& weights() { return weights_; }
    void init_random(std::uint64_t seed);
    void load_weights(const std::vector<WeightView>& views, bool strict);
    void forward(const float* x, Index num_tokens, float* y) const;

  private:
    Index hidden_, intermediate_;
    Activation activation_;
    DType dtype_;
    WeightSet weights_;
    mutable std::shared_mutex mutex_;
};

}  // namespace moelab
