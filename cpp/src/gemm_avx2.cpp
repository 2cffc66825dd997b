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


// ---- Token panels ------------------------------------------------------------------------
// The AVX-512 panel kernel's layout and semantics on 8-lane registers. A micro-tile is R weight
// rows by 16 panel lanes (2 registers: R = 6, 12 accumulators + 2 panel vectors + 1 broadcast
// weight of the 16 ymm registers, 8 loads per 12 FMAs) or by 8 lanes (1 register: R = 12, 12 + 1 +
// 1). A panel's `lanes` are rounded up to 8: 32 lanes are two 16-lane tiles, 24 a 16- and an
// 8-lane one. Every output element is the sum over k in order from zero (or from `out`: an exact
// float32 round trip), one FMA per k, as in the AVX-512 kernel, so the tiling, the K chunks and
// the instruction set never change a bit (benchmarks/KERNEL_NOTES.md [avx2 panels]).

namespace {

constexpr Index kChunkK = 256;  // K per pass: a tile's weight rows stay in L1 for every lane group

// out (R, 8 V lanes at `out`, stride kPanel) (+)= W (R rows of stride ldw) . Xp (K, 8 V lanes,
// stride kPanel). Unless `pf` is null each k step prefetches the line at pf into L2 and
// advances pf by pf_step bytes.
template <int R, int V>
MOELAB_AVX2 inline void panel_micro(const float* W, Index ldw, const float* Xp, Index K,
                                    float* out, bool accumulate, const char* pf, Index pf_step) {
    __m256 acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            acc[r][v] = accumulate ? _mm256_loadu_ps(out + r * kPanel + 8 * v) : _mm256_setzero_ps();
    for (Index k = 0; k < K; ++k) {
        if (pf) {
            _mm_prefetch(pf, _MM_HINT_T1);
            pf += pf_step;
        }
        __m256 x[V];
        for (int v = 0; v < V; ++v) x[v] = _mm256_load_ps(Xp + k * kPanel + 8 * v);
        _Pragma("GCC unroll 12") for (int r = 0; r < R; ++r) {
            const __m256 w = _mm256_broadcast_ss(W + r * ldw + k);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(w, x[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm256_storeu_ps(out + r * kPanel + 8 * v, acc[r][v]);
}

template <int V>
constexpr Index kTileRows = V == 2 ? 6 : 12;  // weight rows per micro-tile of 8 V lanes

// rows <= kTileRows<V> of W against 8 V lanes.
template <int V>
MOELAB_AVX2 void panel_rows(const float* W, Index ldw, Index rows, const float* Xp, Index K,
                            float* out, bool accumulate, const char* pf, Index pf_step) {
    switch (rows) {
#define MOELAB_PANEL_CASE(n)                                                            \
    case n:                                                                             \
        if constexpr (n <= kTileRows<V>)                                                \
            panel_micro<n, V>(W, ldw, Xp, K, out, accumulate, pf, pf_step);             \
        break;
        MOELAB_PANEL_CASE(12) MOELAB_PANEL_CASE(11) MOELAB_PANEL_CASE(10) MOELAB_PANEL_CASE(9)
        MOELAB_PANEL_CASE(8) MOELAB_PANEL_CASE(7) MOELAB_PANEL_CASE(6) MOELAB_PANEL_CASE(5)
        MOELAB_PANEL_CASE(4) MOELAB_PANEL_CASE(3) MOELAB_PANEL_CASE(2) MOELAB_PANEL_CASE(1)
#undef MOELAB_PANEL_CASE
        default: break;
    }
}

// R rows of W in tiles of kTileRows<V> against 8 V lanes.
template <int V>
MOELAB_AVX2 void panel_tiles(const float* W, Index ldw, Index R, const float* Xp, Index K,
                             float* out, bool accumulate, const char* pf, Index pf_step) {
    for (Index r0 = 0; r0 < R; r0 += kTileRows<V>, pf = nullptr) {
        const Index rows = R - r0 < kTileRows<V> ? R - r0 : kTileRows<V>;
        panel_rows<V>(W + r0 * ldw, ldw, rows, Xp, K, out + r0 * kPanel, accumulate, pf, pf_step);
    }
}

// The float32 panel product over K in chunks of kChunkK: per chunk, the rows against each group
// of 16 lanes, then a last group of 8. The prefetch stream (pf_step bytes per k step) runs in
// the first tile of the first group, so it covers the next block once over the call.
MOELAB_AVX2 void panel_f32(const float* W, Index ldw, Index R, const float* panel, Index K,
                           Index lanes, float* out, bool accumulate, const char* pf,
                           Index pf_step) {
    const Index groups8 = (lanes + 7) / 8;  // lanes rounded up to 8
    for (Index k0 = 0; k0 < K; k0 += kChunkK) {
        const Index kc = K - k0 < kChunkK ? K - k0 : kChunkK;
        const bool acc = accumulate || k0 > 0;
        const char* pf_k = pf ? pf + k0 * pf_step : nullptr;
        const float* Xk = panel + k0 * kPanel;
        Index g = 0;
        for (; g + 2 <= groups8; g += 2, pf_k = nullptr)
            panel_tiles<2>(W + k0, ldw, R, Xk + 8 * g, kc, out + 8 * g, acc, pf_k, pf_step);
        if (g < groups8) panel_tiles<1>(W + k0, ldw, R, Xk + 8 * g, kc, out + 8 * g, acc, pf_k, pf_step);
    }
}

constexpr Index kWidenK = kChunkK;  // bfloat16 rows widened a chunk at a time (L1)

}  // namespace

MOELAB_AVX2 void panel_gemm_avx2(const float* W, Index ldw, Index R, const float* panel, Index K,
                                 Index lanes, float* out, const PanelPrefetch& next,
                                 bool accumulate) noexcept {
    const BlockStream stream = BlockStream::of(W, ldw, K, next);
    panel_f32(W, ldw, R, panel, K, lanes, out, accumulate, stream.at(0), stream.step);
}

MOELAB_AVX2 void panel_gemm_bf16_avx2(const std::uint16_t* W, Index ldw, Index R,
                                      const float* panel, Index K, Index lanes, float* out,
                                      const PanelPrefetch& next, bool accumulate) noexcept {
    const BlockStream stream = BlockStream::of(W, ldw, K, next);
    alignas(32) float wide[kPanelRows * kWidenK];
    for (Index k0 = 0; k0 < K; k0 += kWidenK) {
        const Index kc = K - k0 < kWidenK ? K - k0 : kWidenK;
        for (Index r = 0; r < R; ++r) {
            const std::uint16_t* src = W + r * ldw + k0;
            float* dst = wide + r * kWidenK;
            Index k = 0;
            for (; k + 8 <= kc; k += 8) _mm256_store_ps(dst + k, BF16::load(src + k));
            if (k < kc) _mm256_storeu_ps(dst + k, BF16::load(src + k, kc - k));  // within the row
        }
        panel_f32(wide, kWidenK, R, panel + k0 * kPanel, kc, lanes, out, accumulate || k0 > 0,
                  stream.at(k0), stream.step);
    }
}

// A scalar transpose: the packing is K x kPanel moves against K x kPanel x N FMAs.
void pack_panel_avx2(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                     float* panel) noexcept {
    for (Index k = 0; k < K; ++k) {
        float* dst = panel + k * kPanel;
        for (Index l = 0; l < kPanel; ++l) dst[l] = l < lanes ? in[row_offsets[l] + k] : 0.0f;
    }
}

// y = out^T (+ bias, else + 0, as the AVX-512 store: -0 sums become +0 alike).
void panel_store_avx2(const float* out, Index R, Index lanes, const float* bias, float* y,
                      Index ldy) noexcept {
    for (Index l = 0; l < lanes; ++l)
        for (Index r = 0; r < R; ++r) y[l * ldy + r] = out[r * kPanel + l] + (bias ? bias[r] : 0.0f);
}

}  // namespace moelab::detail
