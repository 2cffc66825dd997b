#include "moelab/activation.hpp"

#include "moelab/gemm.hpp"

namespace moelab {

namespace detail {
// activation_avx512.cpp: SiLU and clamped SwiGLU with a vector exp; false for the others.
bool apply_gated_activation_avx512(Activation a, const float* gate, const float* up, float* out,
                                   Index n) noexcept;
}  // namespace detail

namespace {

// A plain loop of one activation, which the compiler can vectorise.
template <Activation A>
void gated_loop(const float* gate, const float* up, float* out, Index n) noexcept {
    for (Index i = 0; i < n; ++i) out[i] = gated_activation(A, gate[i], up[i]);
}

using GatedLoop = void (*)(const float*, const float*, float*, Index) noexcept;
// One loop per activation, in the order of the Activation enum.
constexpr GatedLoop kGatedLoops[] = {gated_loop<Activation::Silu>, gated_loop<Activation::Gelu>,
                                     gated_loop<Activation::GeluTanh>, gated_loop<Activation::Relu>,
                                     gated_loop<Activation::SwigluOai>};

}  // namespace

void apply_gated_activation(Activation a, const float* gate, const float* up, float* out,
                            Index n) noexcept {
    if (active_isa() == Isa::Avx512 && detail::apply_gated_activation_avx512(a, gate, up, out, n))
        return;
    kGatedLoops[int(a)](gate, up, out, n);
}

}  // namespace moelab
