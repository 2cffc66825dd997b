// Gated activations h = act(gate) * up, elementwise (docs/semantics.md, "Experts").
#pragma once

#include <cmath>

#include "moelab/spec.hpp"

namespace moelab {

inline float sigmoidf(float v) noexcept { return 1.0f / (1.0f + std::exp(-v)); }

// gpt-oss constants (hard-coded in the reference implementation).
constexpr float kSwigluOaiLimit = 7.0f;
constexpr float kSwigluOaiAlpha = 1.702f;
// GELU: 0.5 g (1 + erf(g / sqrt 2)); its tanh form 0.5 g (1 + tanh(sqrt(2 / pi) (g + c g^3))).
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluTanhCubic = 0.044715f;

inline float gated_activation(Activation a, float g, float u) noexcept {
    switch (a) {
        case Activation::Silu:
            return g * sigmoidf(g) * u;
        case Activation::Gelu:
            return 0.5f * g * (1.0f + std::erf(g * kInvSqrt2)) * u;
        case Activation::GeluTanh:
            return 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + kGeluTanhCubic * g * g * g))) * u;
        case Activation::Relu:
            return (g > 0.0f ? g : 0.0f) * u;
        case Activation::SwigluOai: {
            const float gc = g < kSwigluOaiLimit ? g : kSwigluOaiLimit;
            const float uc = u < -kSwigluOaiLimit ? -kSwigluOaiLimit
                             : (u > kSwigluOaiLimit ? kSwigluOaiLimit : u);
            return (uc + 1.0f) * gc * sigmoidf(kSwigluOaiAlpha * gc);
        }
    }
    return 0.0f;
}

// out[i] = act(gate[i]) * up[i] for n elements; out may alias gate.
void apply_gated_activation(Activation a, const float* gate, const float* up, float* out,
                            Index n) noexcept;

}  // namespace moelab
