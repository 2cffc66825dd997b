// MoELayer: router + routed experts (+ shared experts) with weights held once, in float32.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "moelab/spec.hpp"
#include "moelab/stats.hpp"
#include "moelab/weights.hpp"

namespace moelab {

class MoELayer : public LayerWeights {
  public:
    // Validates the spec (std::invalid_argument) and adds the tensors of MoESpec::tensors()
    // (without values until init_random or load_weights; the expert matrices in parts: per
    // expert its gate and up, or its down). With BF16 the expert and shared-expert matrices are stored as bfloat16
    // (router, biases and gate stay float32: routing runs in float32 whatever the weight dtype).
    explicit MoELayer(const MoESpec& spec, DType weight_dtype = DType::F32);

    const MoESpec& spec() const { return spec_; }

    // y (T, H) = MoE(x (T, H)). Throws std::invalid_argument for a non-finite x or router
    // logits that overflow, before any output is written; stats may be nullptr.
    // Thread-safe: concurrent forwards share the weights read-only. No allocation once a forward
    // of T or more tokens has run on the calling thread (thread_workspace).
    void forward(const float* x, Index num_tokens, float* y, RoutingStatsOut* stats) const;

  private:
    static constexpr std::size_t kAbsent = std::size_t(-1);
    // The weight of a canonical tensor as the kernels read it (none for an absent tensor).
    WeightPtr tensor(LayerTensor kind) const;
    const float* f32_tensor(LayerTensor kind) const { return tensor(kind).f32; }
    // The parts of an expert matrix (ExpertStack: per expert, gate and up, or down).
    const WeightPtr* parts(LayerTensor kind) const;

    MoESpec spec_;
    std::array<std::size_t, std::size_t(LayerTensor::Count)> slot_;  // index in weights_
};

}  // namespace moelab
