// AVX-512 gated activations that need exp (SiLU, gpt-oss's clamped SwiGLU): 16 lanes per step
// with a vector exp, instead of one libm expf per element (benchmarks/KERNEL_NOTES.md [vector
// exp]). Compiled with a target attribute and called only when the active ISA is
// AVX-512 (activation.cpp). Same operation order as the scalar gated_activation; exp differs
// from libm's expf by at most a few ulp.
#include <immintrin.h>

#include "moelab/activation.hpp"

#define MOELAB_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace moelab::detail {

namespace {

// exp(x) for float32: x = n ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial for exp(r)
// (Cephes expf's coefficients, ~1 ulp), then 2^n by scalef (which saturates to 0 / inf the
// way expf does). NaN stays NaN: the clamps keep their NaN operand.
MOELAB_AVX512 inline __m512 exp_ps(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.7228390f), x);   // exp overflows above
    x = _mm512_max_ps(_mm512_set1_ps(-103.972084f), x);  // and is 0 below
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

MOELAB_AVX512 inline __m512 sigmoid_ps(__m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

// h = g * sigmoid(g) * u
MOELAB_AVX512 inline __m512 silu_gated(__m512 g, __m512 u) {
    return _mm512_mul_ps(_mm512_mul_ps(g, sigmoid_ps(g)), u);
}

// gpt-oss: gc = min(g, L) (NaN -> L, as the scalar form), uc = clamp(u, -L, L) (NaN stays),
// h = (uc + 1) * gc * sigmoid(alpha gc)
MOELAB_AVX512 inline __m512 swiglu_oai_gated(__m512 g, __m512 u) {
    const __m512 limit = _mm512_set1_ps(kSwigluOaiLimit);
    const __m512 gc = _mm512_min_ps(g, limit);
    const __m512 uc = _mm512_min_ps(limit, _mm512_max_ps(_mm512_set1_ps(-kSwigluOaiLimit), u));
    const __m512 s = sigmoid_ps(_mm512_mul_ps(_mm512_set1_ps(kSwigluOaiAlpha), gc));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(uc, _mm512_set1_ps(1.0f)), gc), s);
}

template <__m512 (*F)(__m512, __m512)>
MOELAB_AVX512 inline void gated_loop(const float* gate, const float* up, float* out, Index n) {
    Index i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, F(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(out + i, m,
                              F(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
    }
}

}  // namespace

MOELAB_AVX512 bool apply_gated_activation_avx512(Activation a, const float* gate, const float* up,
                                                 float* out, Index n) noexcept {
    switch (a) {
        case Activation::Silu: gated_loop<silu_gated>(gate, up, out, n); return true;
        case Activation::SwigluOai: gated_loop<swiglu_oai_gated>(gate, up, out, n); return true;
        default: return false;  // no exp: the scalar loop is as good
    }
}

}  // namespace moelab::detail
