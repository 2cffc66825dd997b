// AVX2+FMA kernels of gemm.hpp, for CPUs without AVX-512. Per-function target attributes,
// no Eigen; only called when the CPU has AVX2 and FMA.
#include <immintrin.h>

#include <cstring>

#include "moelab/gemm.hpp"

#define MOELAB_AVX2 __attribute__((target("avx2,fma")))

namespace moelab::detail {

namespace {

MOELAB_AVX2 inline __m256i tail_mask(Index r) {  // first r of 8 lanes
    alignas(32) static const int table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - r));
}

// The vector unit of gemm_micro.hpp: 8 float32 lanes; a tail is its lane count.
struct V {
    using Reg = __m256;
    using Tail = Index;
    static constexpr int kLanes = 8;
    MOELAB_AVX2 static inline Reg zero() { return _mm256_setzero_ps(); }
    MOELAB_AVX2 static inline Tail tail(Index n) { return n; }
    MOELAB_AVX2 static inline Reg load(const float* p) { return _mm256_loadu_ps(p); }
    MOELAB_AVX2 static inline Reg load(const float* p, Tail r) {
        return _mm256_maskload_ps(p, tail_mask(r));
    }
    MOELAB_AVX2 static inline Reg fmadd(Reg a, Reg w, Reg acc) { return _mm256_fmadd_ps(a, w, acc); }
    MOELAB_AVX2 static inline float hsum(Reg v) {
        const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
    }
    static inline void keep(Reg&) {}
};

struct BF16 {
    using T = std::uint16_t;
    MOELAB_AVX2 static inline __m256 widen(__m128i h) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    MOELAB_AVX2 static inline __m256 load(const std::uint16_t* p) {
        return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    MOELAB_AVX2 static inline __m256 load(const std::uint16_t* p, Index r) {
        std::uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(buf, p, std::size_t(r) * sizeof(std::uint16_t));
        return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(buf)));
    }
};

#define MOELAB_GEMM_TARGET MOELAB_AVX2
#include "gemm_micro.hpp"
#undef MOELAB_GEMM_TARGET

template <class WT, int MR, int NR>
MOELAB_AVX2 inline void row_block(const float* A, Index lda, const typename WT::T* W, Index ldw,
                                  float* C, Index ldc, Index N, Index K) {
    Index j = 0;
    NoStream* none = nullptr;
    for (; j + NR <= N; j += NR) micro<V, WT, MR, NR>(A, lda, W + j * ldw, ldw, C + j, ldc, K, false, none);
    for (; j < N; ++j) micro<V, WT, MR, 1>(A, lda, W + j * ldw, ldw, C + j, ldc, K, false, none);
}

template <class WT>
MOELAB_AVX2 void gemm(const float* A, Index lda, const typename WT::T* W, Index ldw, float* C,
                      Index ldc, Index n, Index N, Index K) noexcept {
    Index i = 0;
    // 2 x 4 = 8 accumulators (+ 2 A vectors + 1 W vector of 16 registers).
    for (; i + 2 <= n; i += 2) row_block<WT, 2, 4>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, N, K);
    if (i < n) row_block<WT, 1, 8>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, N, K);
}

}  // namespace

const GemmKernels kGemmAvx2 = {gemm<F32>, gemm<BF16>};

}  // namespace moelab::detail
