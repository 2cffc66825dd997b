// The micro-kernel of gemm_nt's AVX2 and AVX-512 paths, written once: C[MR x NR] (+)= A[MR rows]
// . W[NR rows]^T over K, with MR * NR vector accumulators along K and one horizontal reduction
// each at the end (a fixed order for a fixed K, whatever MR and NR are).
//
// Included by gemm_avx2.cpp and gemm_avx512.cpp inside their anonymous namespace, after they
// define MOELAB_GEMM_TARGET (their target attribute) and the vector unit V: each file gets its
// own copy, compiled for its instruction set.
//   V: Reg, Tail, kLanes; zero(), load(p), tail(n) (the first n lanes), load(p, tail),
//     fmadd(a, w, acc), hsum(v), keep(w) (pins w to a register, or nothing).
//   WT (the weights: F32 below, or the file's BF16): T, load(p), load(p, tail) as float32 lanes.
//   Stream: step() prefetches the next line of the weight block (or a null stream).
// Then BlockStream, the prefetch stream of both files' panel kernels.
#pragma once

// float32 weights, loaded as the rows of A are.
struct F32 {
    using T = float;
    MOELAB_GEMM_TARGET static inline typename V::Reg load(const float* p) { return V::load(p); }
    MOELAB_GEMM_TARGET static inline typename V::Reg load(const float* p, typename V::Tail t) {
        return V::load(p, t);
    }
};

template <class V, class WT, int MR, int NR, class Stream>
MOELAB_GEMM_TARGET inline void micro(const float* A, Index lda, const typename WT::T* W, Index ldw,
                                     float* C, Index ldc, Index K, bool accumulate,
                                     Stream* stream) {
    // Weight rows whose k step of kLanes fills one cache line (a stream step each).
    constexpr int kRowsPerLine = int(64 / (V::kLanes * sizeof(typename WT::T)));
    typename V::Reg acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = V::zero();
    Index k = 0;
    for (; k + V::kLanes <= K; k += V::kLanes) {
        typename V::Reg a[MR];
        for (int i = 0; i < MR; ++i) a[i] = V::load(A + i * lda + k);
        for (int j = 0; j < NR; ++j) {
            if (stream && j % kRowsPerLine == 0) stream->step();
            typename V::Reg w = WT::load(W + j * ldw + k);
            V::keep(w);
            for (int i = 0; i < MR; ++i) acc[i][j] = V::fmadd(a[i], w, acc[i][j]);
        }
    }
    if (k < K) {
        const typename V::Tail tail = V::tail(K - k);
        typename V::Reg a[MR];
        for (int i = 0; i < MR; ++i) a[i] = V::load(A + i * lda + k, tail);
        for (int j = 0; j < NR; ++j) {
            const typename V::Reg w = WT::load(W + j * ldw + k, tail);
            for (int i = 0; i < MR; ++i) acc[i][j] = V::fmadd(a[i], w, acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) {
            const float v = V::hsum(acc[i][j]);
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + v : v;
        }
}

// The stream of a call that prefetches nothing.
struct NoStream {
    void step() {}
};

// ---- Shared by the panel kernels (panel_gemm of both files) ----

// The next block as a stream spread evenly over the K steps of the calls that read this one:
// rows * sizeof(T) bytes per step. Only for whole rows (ldw == K: the block is contiguous); none
// for a K cut in chunks.
struct BlockStream {
    const char* base = nullptr;
    Index step = 0;
    template <class T>
    static BlockStream of(const T*, Index ldw, Index K, const PanelPrefetch& p) {
        if (!p.base || p.rows <= 0 || ldw != K) return {};
        return {static_cast<const char*>(p.base), p.rows * Index(sizeof(T))};
    }
    const char* at(Index k) const { return base ? base + k * step : nullptr; }  // step k's line
};
