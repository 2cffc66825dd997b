// AVX-512 kernels of gemm.hpp. Compiled with per-function target attributes (no global -m
// flags, no Eigen here), and only called when the CPU has AVX-512F.
#include <immintrin.h>

#include "moelab/gemm.hpp"

#define MOELAB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

namespace moelab::detail {

namespace {

// The first n of 16 lanes (n clamped to [0, 16]).
MOELAB_AVX512 inline __mmask16 first_lanes(Index n) {
    return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// The vector unit of gemm_micro.hpp: 16 float32 lanes; a tail is a lane mask.
struct V {
    using Reg = __m512;
    using Tail = __mmask16;
    static constexpr int kLanes = 16;
    MOELAB_AVX512 static inline Reg zero() { return _mm512_setzero_ps(); }
    MOELAB_AVX512 static inline Tail tail(Index n) { return first_lanes(n); }
    MOELAB_AVX512 static inline Reg load(const float* p) { return _mm512_loadu_ps(p); }
    MOELAB_AVX512 static inline Reg load(const float* p, Tail m) { return _mm512_maskz_loadu_ps(m, p); }
    MOELAB_AVX512 static inline Reg fmadd(Reg a, Reg w, Reg acc) { return _mm512_fmadd_ps(a, w, acc); }
    // Sum of the 16 lanes in a fixed order (GCC 12's _mm512_reduce_add_ps warns spuriously).
    MOELAB_AVX512 static inline float hsum(Reg v) {
        const __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
        const __m512 q = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
        const __m128 c = _mm512_castps512_ps128(q);
        const __m128 t = _mm_add_ps(c, _mm_movehl_ps(c, c));
        return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
    }
    // Keeps w in a register: GCC otherwise folds the load into each of the MR FMAs (MR loads of
    // the same vector) and the kernel becomes load-bound (KERNEL_NOTES.md [weight in a
    // register]). No effect on the FMA order.
    MOELAB_AVX512 static inline void keep(Reg& w) { __asm__("" : "+v"(w)); }
};

// Loads 16 bfloat16 weights (or the masked lanes) as float32.
struct BF16 {
    using T = std::uint16_t;
    MOELAB_AVX512 static inline __m512 load(const std::uint16_t* p) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    MOELAB_AVX512 static inline __m512 load(const std::uint16_t* p, __mmask16 m) {
        const __m256i h = _mm256_maskz_loadu_epi16(m, p);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
};

// Lane i holds i * step: gather offsets for 16 elements `step` floats apart.
MOELAB_AVX512 inline __m512i lane_offsets(Index step) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32(int(step)));
}

// A software prefetch stream (into L2) that runs `kStreamAhead` bytes ahead of a block of
// bfloat16 weight rows read in address order, one cache line per line consumed: at decode the
// hardware prefetchers do not ramp up on short bf16 rows read side by side; float32 rows stream
// at the bandwidth without it, so it is not used there (benchmarks/KERNEL_NOTES.md [decode
// stream]).
struct Stream {
    const char* next = nullptr;  // next line to prefetch
    const char* end = nullptr;   // end of the block (never prefetched past)
    MOELAB_AVX512 inline void step() {
        if (next < end) {
            _mm_prefetch(next, _MM_HINT_T1);
            next += 64;
        }
    }
};
constexpr Index kStreamAhead = 16384;

#define MOELAB_GEMM_TARGET MOELAB_AVX512
#include "gemm_micro.hpp"
#undef MOELAB_GEMM_TARGET

// Rows of A per micro-kernel call: 3 x 8 = 24 accumulators (+ 3 A vectors + 1 W vector of the
// 32 registers).
constexpr int kMicroRows = 3;
constexpr int kMicroCols = 8;

// One block of NR weight rows (kept in L1 for the chunk) against every row of A (streamed,
// kMicroRows rows at a time, from L2). Each output element sees the same K loop whatever MR and NR are,
// so the blocking never changes a result.
// `stream` (or null) is stepped by the first pass over the block only.
template <class WT, int NR>
MOELAB_AVX512 inline void col_block(const float* A, Index lda, const typename WT::T* W, Index ldw,
                                    float* C, Index ldc, Index n, Index K, bool acc,
                                    Stream* stream) {
    Index i = 0;
    static_assert(kMicroRows == 3, "the remainder below handles 1 or 2 rows");
    for (; i + kMicroRows <= n; i += kMicroRows, stream = nullptr)
        micro<V, WT, kMicroRows, NR>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, K, acc, stream);
    switch (n - i) {
        case 2: micro<V, WT, 2, NR>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, K, acc, stream); break;
        case 1: micro<V, WT, 1, NR>(A + i * lda, lda, W, ldw, C + i * ldc, ldc, K, acc, stream); break;
        default: break;
    }
}

// K is cut in chunks of kKc so that a block of weight rows stays in L1 while the rows of A
// stream from L2; each chunk's partial sum is added to C in chunk order (fixed for a given K).
constexpr Index kKc = 1024;

// At decode (n <= kMicroRows: one pass of micro-kernels over the weights, nothing to keep in
// L1) K is not chunked, so the block of N rows is read in address order, and for contiguous
// (ldw == K) bfloat16 rows a prefetch stream runs ahead of it.
template <class WT>
MOELAB_AVX512 void gemm(const float* A, Index lda, const typename WT::T* W, Index ldw, float* C,
                        Index ldc, Index n, Index N, Index K) noexcept {
    const bool decode = n <= kMicroRows;
    Stream stream;
    if (decode && ldw == K && sizeof(typename WT::T) == 2) {
        const char* begin = reinterpret_cast<const char*>(W);
        stream.end = reinterpret_cast<const char*>(W + N * ldw);
        stream.next = begin + (stream.end - begin < kStreamAhead ? stream.end - begin : kStreamAhead);
        for (const char* p = begin; p < stream.next; p += 64) _mm_prefetch(p, _MM_HINT_T1);
    }
    Stream* s = stream.next ? &stream : nullptr;
    const Index chunk = decode ? K : kKc;
    for (Index k0 = 0; k0 < K; k0 += chunk) {
        const Index kc = K - k0 < chunk ? K - k0 : chunk;
        const bool acc = k0 > 0;
        const float* Ak = A + k0;
        const typename WT::T* Wk = W + k0;
        Index j = 0;
        for (; j + kMicroCols <= N; j += kMicroCols)
            col_block<WT, kMicroCols>(Ak, lda, Wk + j * ldw, ldw, C + j, ldc, n, kc, acc, s);
        for (; j + 4 <= N; j += 4) col_block<WT, 4>(Ak, lda, Wk + j * ldw, ldw, C + j, ldc, n, kc, acc, s);
        for (; j < N; ++j) col_block<WT, 1>(Ak, lda, Wk + j * ldw, ldw, C + j, ldc, n, kc, acc, s);
    }
}

}  // namespace

const GemmKernels kGemmAvx512 = {gemm<F32>, gemm<BF16>};

namespace {

template <int R, int V>
MOELAB_AVX512 inline void panel_step(__m512 (&acc)[R][V], const float* W, Index ldw,
                                     const float* Xp, Index k) {
    __m512 x[V];
    for (int v = 0; v < V; ++v) x[v] = _mm512_load_ps(Xp + k * kPanel + 16 * v);
    _Pragma("GCC unroll 12") for (int r = 0; r < R; ++r) {
        const __m512 w = _mm512_set1_ps(W[r * ldw + k]);
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(w, x[v], acc[r][v]);
    }
}

// out (R, 16 V) (+)= W (R rows of stride ldw) . panel (K, 16 V lanes of 32): acc[r] += w[r][k] *
// x[k] over k. V = 2 covers the whole panel, V = 1 its first 16 lanes (a panel of <= 16 tokens).
// With `accumulate` the sums continue from `out` (an exact float32 round trip, so a K cut in
// chunks gives the same bits as one pass). Unless `pf` is null, each k step prefetches into L2
// the line at pf, then advances pf by `pf_step` bytes: the block the following call reads
// streams from DRAM while this one computes (on cold weights the FMAs otherwise wait for
// memory), spread evenly over the call.
// One flat loop of k steps keeps the R row pointers in registers; a loop nest (a prefetch every
// 16 k) made GCC spill two of them (KERNEL_NOTES.md [flat k loop]).
template <int R, int V>
MOELAB_AVX512 inline void panel_micro(const float* W, Index ldw, const float* Xp, Index K,
                                      float* out, bool accumulate, const char* pf,
                                      Index pf_step) {
    __m512 acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            acc[r][v] = accumulate ? _mm512_load_ps(out + r * kPanel + 16 * v) : _mm512_setzero_ps();
    if (pf) {
        for (Index k = 0; k < K; ++k, pf += pf_step) {
            _mm_prefetch(pf, _MM_HINT_T1);
            panel_step<R, V>(acc, W, ldw, Xp, k);
        }
    } else {
        for (Index k = 0; k < K; ++k) panel_step<R, V>(acc, W, ldw, Xp, k);
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm512_store_ps(out + r * kPanel + 16 * v, acc[r][v]);
}

template <int V>
MOELAB_AVX512 void panel_any(const float* W, Index ldw, Index R, const float* Xp, Index K,
                             float* out, bool accumulate, const char* pf, Index pf_step) {
    switch (R) {
#define MOELAB_PANEL_CASE(n) \
    case n: panel_micro<n, V>(W, ldw, Xp, K, out, accumulate, pf, pf_step); break;
        MOELAB_PANEL_CASE(12) MOELAB_PANEL_CASE(11) MOELAB_PANEL_CASE(10) MOELAB_PANEL_CASE(9)
        MOELAB_PANEL_CASE(8) MOELAB_PANEL_CASE(7) MOELAB_PANEL_CASE(6) MOELAB_PANEL_CASE(5)
        MOELAB_PANEL_CASE(4) MOELAB_PANEL_CASE(3) MOELAB_PANEL_CASE(2) MOELAB_PANEL_CASE(1)
#undef MOELAB_PANEL_CASE
        default: break;
    }
}

MOELAB_AVX512 void panel_lanes(const float* W, Index ldw, Index R, const float* Xp, Index K,
                               Index lanes, float* out, bool accumulate, const char* pf,
                               Index pf_step) {
    if (lanes <= 16)
        panel_any<1>(W, ldw, R, Xp, K, out, accumulate, pf, pf_step);
    else
        panel_any<2>(W, ldw, R, Xp, K, out, accumulate, pf, pf_step);
}

// bfloat16 rows are widened to float32 a chunk of K at a time into an L1-resident buffer and
// run through the float32 kernel: one widening per weight instead of a scalar widen and
// broadcast per weight and panel row (KERNEL_NOTES.md [bf16 widening]).
constexpr Index kWidenK = 256;

}  // namespace

MOELAB_AVX512 void panel_gemm_avx512(const float* W, Index ldw, Index R, const float* panel,
                                     Index K, Index lanes, float* out,
                                     const PanelPrefetch& next, bool accumulate) noexcept {
    const BlockStream stream = BlockStream::of(W, ldw, K, next);
    panel_lanes(W, ldw, R, panel, K, lanes, out, accumulate, stream.at(0), stream.step);
}

MOELAB_AVX512 void panel_gemm_bf16_avx512(const std::uint16_t* W, Index ldw, Index R,
                                          const float* panel, Index K, Index lanes, float* out,
                                          const PanelPrefetch& pf, bool accumulate) noexcept {
    const BlockStream next = BlockStream::of(W, ldw, K, pf);
    alignas(64) float wide[kPanelRows * kWidenK];
    for (Index k0 = 0; k0 < K; k0 += kWidenK) {
        const Index kc = K - k0 < kWidenK ? K - k0 : kWidenK;
        for (Index r = 0; r < R; ++r) {
            const std::uint16_t* src = W + r * ldw + k0;
            float* dst = wide + r * kWidenK;
            Index k = 0;
            for (; k + 16 <= kc; k += 16) _mm512_store_ps(dst + k, BF16::load(src + k));
            if (k < kc) {
                const __mmask16 m = first_lanes(kc - k);
                _mm512_mask_storeu_ps(dst + k, m, BF16::load(src + k, m));
            }
        }
        panel_lanes(wide, kWidenK, R, panel + k0 * kPanel, kc, lanes, out, accumulate || k0 > 0,
                    next.at(k0), next.step);
    }
}

// Two masked gathers per k (16 lanes each, at the rows' offsets), unused lanes zero, rather than
// a scalar transpose (KERNEL_NOTES.md [panel gathers]).
MOELAB_AVX512 void pack_panel_avx512(const float* in, const std::int32_t* row_offsets, Index lanes,
                                     Index K, float* panel) noexcept {
    const __mmask16 m0 = first_lanes(lanes), m1 = first_lanes(lanes - 16);
    const __m512i rows0 = _mm512_maskz_loadu_epi32(m0, row_offsets);       // lanes 0-15
    const __m512i rows1 = _mm512_maskz_loadu_epi32(m1, row_offsets + 16);  // lanes 16-31
    for (Index k = 0; k < K; ++k) {
        float* dst = panel + k * kPanel;
        _mm512_store_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, rows0, in + k, 4));
        _mm512_store_ps(dst + 16,
                        m1 ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, rows1, in + k, 4)
                           : _mm512_setzero_ps());
    }
}

// One masked gather of a lane's R values (stride kPanel) and one masked store per token row,
// rather than a scalar transpose (KERNEL_NOTES.md [panel gathers]).
MOELAB_AVX512 void panel_store_avx512(const float* out, Index R, Index lanes, const float* bias,
                                      float* y, Index ldy) noexcept {
    const __m512i stride = lane_offsets(kPanel);
    const __mmask16 m = first_lanes(R);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias) : _mm512_setzero_ps();
    for (Index l = 0; l < lanes; ++l) {
        const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, stride, out + l, 4);
        _mm512_mask_storeu_ps(y + l * ldy, m, _mm512_add_ps(v, b));  // (R) of token row l
    }
}

__attribute__((target("avx512f,avx512bf16,avx512vl")))
void convert_to_bf16_avx512bf16(const float* src, std::uint16_t* dst, Index n) noexcept {
    Index i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<const __m256i&>(h));
    }
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, reinterpret_cast<const __m256i&>(h));
    }
}

}  // namespace moelab::detail

