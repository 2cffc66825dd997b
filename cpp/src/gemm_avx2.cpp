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

struct F32 {
    using T = float;
    MOELAB_AVX2 static inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
    MOELAB_AVX2 static inline __m256 load_tail(const float* p, Index r) {
        return _mm256_maskload_ps(p, tail_mask(r));
    }
};
struct BF16 {
    using T = std::uint16_t;
    MOELAB_AVX2 static inline __m256 widen(__m128i h) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    MOELAB_AVX2 static inline __m256 load(const std::uint16_t* p) {
        return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    MOELAB_AVX2 static inline __m256 load_tail(const std::uint16_t* p, Index r) {
        std::uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(buf, p, std::size_t(r) * sizeof(std::uint16_t));
        return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(buf)));
    }
};

MOELAB_AVX2 inline float hsum(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <class WT, int MR, int NR>
MOELAB_AVX2 inline void micro(const float* A, Index lda, const typename WT::T* W, Index ldw,
                              float* C, Index ldc, Index K) {
    __m256 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
    Index k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 a[MR];
        for (int i = 0; i < MR; ++i) a[i] = _mm256_loadu_ps(A + i * lda + k);
        for (int j = 0; j < NR; ++j) {
            const __m256 w = WT::load(W + j * ldw + k);
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(a[i], w, acc[i][j]);
        }
    }
    if (k < K) {
        const Index r = K - k;
        __m256 a[MR];
        for (int i = 0; i < MR; ++i) a[i] = F32::load_tail(A + i * lda + k, r);
        for (int j = 0; j < NR; ++j) {
            const __m256 w = WT::load_tail(W + j * ldw + k, r);
            for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(a[i], w, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) C[i * ldc + j] = hsum(acc[i][j]);
}

template <class WT, int MR, int NR>
MOELAB_AVX2 inline void row_block(const float* A, Index lda, const typename WT::T* W, Index ldw,
                                  float* C, Index ldc, Index N, Index K) {
    Index j = 0;
    for (; j + NR <= N; j += NR) micro<WT, MR, NR>(A, lda, W + j * ldw, ldw, C + j, ldc, K);
    for (; j < N; ++j) micro<WT, MR, 1>(A, lda, W + j * ldw, ldw, C + j, ldc, K);
}

template <class WT>
MOELAB_AVX2 void gemm(const float* A, Index lda, const typename WT::T* W, Index ldw, float* C,
                      Index ldc, Index n, Index N, Index K) {
    Index i = 0;
    // 2 x 4 = 8 accumulators (+ 2 A vectors + 1 W vector of 16 registers).
    for (; i + 2 <= n; i += 2) row_block<WT, 2, 4>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, N, K);
    if (i < n) row_block<WT, 1, 8>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, N, K);
}

}  // namespace

MOELAB_AVX2 void gemm_nt_avx2(const float* A, Index lda, const float* W, Index ldw, float* C,
                              Index ldc, Index n, Index N, Index K) noexcept {
    gemm<F32>(A, lda, W, ldw, C, ldc, n, N, K);
}

MOELAB_AVX2 void gemm_nt_bf16_avx2(const float* A, Index lda, const std::uint16_t* W, Index ldw,
                                   float* C, Index ldc, Index n, Index N, Index K) noexcept {
    gemm<BF16>(A, lda, W, ldw, C, ldc, n, N, K);
}

}  // namespace moelab::detail
