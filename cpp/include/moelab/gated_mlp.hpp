// GatedMLP: one dense gated FFN y = down( act(gate x) * up x ) with the layout of one expert.
#pragma once

#include <cstdint>
#include <vector>

#include "moelab/spec.hpp"
#include "moelab/weights.hpp"

namespace moelab {

// gate_up_proj (2I, H) (gate rows first), down_proj (H, I); dense layers and Grok-2's residual
// MLP use it. It runs the expert kernels as a stack of one expert.
class GatedMLP : public LayerWeights {
  public:
    // Throws std::invalid_argument for a size out of range; allocates zeroed weights.
    GatedMLP(Index hidden, Index intermediate, Activation activation,
             DType weight_dtype = DType::F32);
    Index hidden() const { return hidden_; }
    Index intermediate() const { return intermediate_; }
    Activation activation() const { return activation_; }
    // y (T, H) = down( act(gate x) * up x ) for x (T, H). Throws std::invalid_argument for a
    // non-finite x. Thread-safe; no allocation once a call of T or more rows has run on this
    // thread (thread_workspace).
    void forward(const float* x, Index num_tokens, float* y) const;

  private:
    Index hidden_, intermediate_;
    Activation activation_;
};

}  // namespace moelab
