#include "moelab/activation.hpp"

#include "moelab/gemm.hpp"

namespace moelab {

namespace detail {
// activation_avx512.cpp: SiLU and clamped SwiGLU with a vector exp; false for the others.
bool apply_gated_activation_avx512(Activation a, const float* gate, const float* up, float* out,
                                   Index n) noexcept;
}  // namespace detail

void apply_gated_activation(Activation a, const float* gate, const float* up, float* out,
                            Index n) noexcept {
    if (active_isa() == Isa::Avx512 && detail::apply_gated_activation_avx512(a, gate, up, out, n))
        return;
    // One switch per call, then a plain loop the compiler can vectorise per case.
    switch (a) {
        case Activation::Silu:
            for (Index i = 0; i < n; ++i) out[i] = gated_activation(Activation::Silu, gate[i], up[i]);
            break;
        case Activation::Gelu:
            for (Index i = 0; i < n; ++i) out[i] = gated_activation(Activation::Gelu, gate[i], up[i]);
            break;
        case Activation::GeluTanh:
            for (Index i = 0; i < n; ++i)
                out[i] = gated_activation(Activation::GeluTanh, gate[i], up[i]);
            break;
        case Activation::Relu:
            for (Index i = 0; i < n; ++i) out[i] = gated_activation(Activation::Relu, gate[i], up[i]);
            break;
        case Activation::SwigluOai:
            for (Index i = 0; i < n; ++i)
                out[i] = gated_activation(Activation::SwigluOai, gate[i], up[i]);
            break;
    }
}

}  // namespace moelab
