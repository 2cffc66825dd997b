#include "moelab/delta_rule.hpp"

#include <cmath>
#include <cstring>

#include "moelab/gemm.hpp"

// The kernels are written once with GCC vector types and compiled three times: inlined into a
// function with an AVX-512 or AVX2 target attribute, or into a baseline one. The vector width
// and register tile follow the instruction set (Avx512 / Avx2 / Baseline below).
#define MOELAB_INLINE inline __attribute__((always_inline))
#define MOELAB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define MOELAB_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace moelab {

namespace {

constexpr Index kC = kDeltaChunk;

// e^x for a log decay x <= 0, and exactly 0 below -87, where expf would return a denormal:
// a product with a denormal operand can take a microcode assist (~100x slower on some CPUs),
// and e^-87 ~ 1.6e-38 is below any float32 rounding of an O(1) sum.
inline float decay_factor(double x) noexcept { return x < -87.0 ? 0.0f : float(std::exp(x)); }

// Vector type and register tile per instruction set: MR rows x NV vectors of accumulators.
struct Avx512 {
    typedef float V __attribute__((vector_size(64)));
    static constexpr int MR = 4, NV = 4;  // 16 of 32 zmm
};
struct Avx2 {
    typedef float V __attribute__((vector_size(32)));
    static constexpr int MR = 4, NV = 2;  // 8 of 16 ymm
};
struct Baseline {
    typedef float V __attribute__((vector_size(16)));
    static constexpr int MR = 4, NV = 2;  // 8 of 16 xmm
};

template <class Isa>
constexpr Index kLanes = Index(sizeof(typename Isa::V) / sizeof(float));

// Unaligned vector loads and stores (by reference: a vector passed by value in a function
// compiled for another instruction set would change the ABI).
template <class V>
MOELAB_INLINE void load(V& v, const float* p) {
    std::memcpy(&v, p, sizeof v);
}
template <class V>
MOELAB_INLINE void store(float* p, const V& v) {
    std::memcpy(p, &v, sizeof v);
}

// C (M, NV * lanes) (+)= A (M, K) B (K, NV * lanes) for M <= MR rows: A(i, k) = a[i * ai + k * ak]
// (any strides: rows of A or of A^T), B row-major (ldb), C row-major (ldc). Each C element is
// one sum over k in increasing order.
template <class Isa, int M, int NV>
MOELAB_INLINE void tile(const float* a, Index ai, Index ak, const float* b, Index ldb, float* c,
                        Index ldc, Index K, bool accumulate) {
    using V = typename Isa::V;
    constexpr Index L = kLanes<Isa>;
    V acc[M][NV];
    for (int i = 0; i < M; ++i)
        for (int v = 0; v < NV; ++v) {
            acc[i][v] = V{};
            if (accumulate) load(acc[i][v], c + i * ldc + v * L);
        }
    for (Index k = 0; k < K; ++k) {
        V bv[NV];
        for (int v = 0; v < NV; ++v) load(bv[v], b + k * ldb + v * L);
        for (int i = 0; i < M; ++i) {
            const float s = a[i * ai + k * ak];
            for (int v = 0; v < NV; ++v) acc[i][v] += s * bv[v];
        }
    }
    for (int i = 0; i < M; ++i)
        for (int v = 0; v < NV; ++v) store(c + i * ldc + v * L, acc[i][v]);
}

template <class Isa, int NV>
MOELAB_INLINE void row_block(Index M, const float* a, Index ai, Index ak, const float* b,
                             Index ldb, float* c, Index ldc, Index K, bool accumulate) {
    switch (M) {
        case 4: tile<Isa, 4, NV>(a, ai, ak, b, ldb, c, ldc, K, accumulate); break;
        case 3: tile<Isa, 3, NV>(a, ai, ak, b, ldb, c, ldc, K, accumulate); break;
        case 2: tile<Isa, 2, NV>(a, ai, ak, b, ldb, c, ldc, K, accumulate); break;
        default: tile<Isa, 1, NV>(a, ai, ak, b, ldb, c, ldc, K, accumulate); break;
    }
}

// Which triangle of a square product is known to be zero or not needed: the sums of a row
// block of a lower-triangular A stop at its last row (A(i, k) = 0 for k > i); a row block of a
// lower-triangular C stops at its last row's column, rounded up to whole vectors (the entries
// above the diagonal it still writes are garbage the caller ignores).
enum class Tri { None, LowerA, LowerC };

// C (M, N) (+)= A (M, K) B (K, N), A strided as in `tile`. Columns past the last whole vector
// are summed in scalar code.
template <class Isa>
MOELAB_INLINE void gemm(Index M, Index N, Index K, const float* a, Index ai, Index ak,
                        const float* b, Index ldb, float* c, Index ldc, bool accumulate,
                        Tri tri = Tri::None) {
    static_assert(Isa::MR == 4, "row_block handles up to 4 rows");
    constexpr Index L = kLanes<Isa>, W = Isa::NV * L;
    for (Index i0 = 0; i0 < M; i0 += Isa::MR) {
        const Index m = M - i0 < Isa::MR ? M - i0 : Isa::MR;
        const Index kk = tri == Tri::LowerA && i0 + m < K ? i0 + m : K;
        const Index nn = tri == Tri::LowerC && (i0 + m + L - 1) / L * L < N ? (i0 + m + L - 1) / L * L : N;
        const float* ar = a + i0 * ai;
        float* cr = c + i0 * ldc;
        Index j = 0;
        for (; j + W <= nn; j += W)
            row_block<Isa, Isa::NV>(m, ar, ai, ak, b + j, ldb, cr + j, ldc, kk, accumulate);
        for (; j + L <= nn; j += L)
            row_block<Isa, 1>(m, ar, ai, ak, b + j, ldb, cr + j, ldc, kk, accumulate);
        for (; j < nn; ++j)
            for (Index i = 0; i < m; ++i) {
                float s = accumulate ? cr[i * ldc + j] : 0.0f;
                for (Index k = 0; k < kk; ++k) s += ar[i * ai + k * ak] * b[k * ldb + j];
                cr[i * ldc + j] = s;
            }
    }
}

// True when none of the n values is NaN or Inf: v - v is 0 for a finite v and NaN otherwise.
template <class Isa>
MOELAB_INLINE bool all_finite(const float* p, Index n) {
    using V = typename Isa::V;
    constexpr Index L = kLanes<Isa>;
    V acc{};
    Index i = 0;
    for (; i + L <= n; i += L) {
        V v;
        load(v, p + i);
        acc += v - v;
    }
    float s = 0.0f;
    for (; i < n; ++i) s += p[i] - p[i];
    for (Index l = 0; l < L; ++l) s += acc[l];
    return s == 0.0f;
}

// The chunk's work buffers, carved from one scratch block; the n x n matrices and the
// transposed keys keep a row stride of kC whatever n is.
struct ChunkBuffers {
    double* c;   // (C) cumulative log decay since the chunk start
    float* e;    // (C) e^{c_i}
    float* el;   // (C) e^{c_{n-1} - c_i}
    float* KT;   // (d_k, C) K^T
    float* A;    // (C, C) strictly lower: beta_i (k_i . k_j) D_ij
    float* P;    // (C, C) lower: (q_i . k_j) D_ij, zeros above the diagonal
    float* Ti;   // (C, C) (I + A)^{-1}, unit lower triangular
    float* Vb;   // (C, d_v) diag(beta) V, then diag(el) Delta
    float* Kb;   // (C, d_k) diag(beta e^c) K
    float* U;    // (C, d_v) Ti diag(beta) V, then Delta
    float* W;    // (C, d_k) Ti diag(beta e^c) K
    float* WS;   // (C, d_v) W S_0
};

Index layout(Index dk, Index dv, float* base, ChunkBuffers& b) noexcept {
    Index off = 0;
    auto take = [&](Index n) {
        float* p = base ? base + off : nullptr;
        off += (n + 15) / 16 * 16;  // each buffer on a cache line
        return p;
    };
    b.c = reinterpret_cast<double*>(take(2 * kC));
    b.e = take(kC);
    b.el = take(kC);
    b.KT = take(dk * kC);
    b.A = take(kC * kC);
    b.P = take(kC * kC);
    b.Ti = take(kC * kC);
    b.Vb = take(kC * dv);
    b.Kb = take(kC * dk);
    b.U = take(kC * dv);
    b.W = take(kC * dk);
    b.WS = take(kC * dv);
    return off;
}

template <class Isa>
MOELAB_INLINE bool chunk(const DeltaHead& in, Index n, const float* S_in, float* S_out, float* o,
                         Index ldo, float* scratch) {
    const Index dk = in.d_k, dv = in.d_v, ld = in.ld;
    ChunkBuffers b;
    layout(dk, dv, scratch, b);

    // decays: c_i in double (a sum of up to kC terms), the factors in float
    double acc = 0.0;
    for (Index i = 0; i < n; ++i) {
        acc += double(in.g[i * in.ld_gate]);
        b.c[i] = acc;
    }
    for (Index i = 0; i < n; ++i) {
        b.e[i] = decay_factor(b.c[i]);
        b.el[i] = decay_factor(b.c[n - 1] - b.c[i]);
    }

    // Gram matrices against K^T, then the decays D_ij = e^{c_i - c_j} <= 1 (no ratio of tiny
    // numbers: a head with a strong decay underflows e^{c_i} long before the chunk ends)
    for (Index i = 0; i < n; ++i)
        for (Index x = 0; x < dk; ++x) b.KT[x * kC + i] = in.k[i * ld + x];
    gemm<Isa>(n, n, dk, in.k, ld, 1, b.KT, kC, b.A, kC, false, Tri::LowerC);  // k_i . k_j
    gemm<Isa>(n, n, dk, in.q, ld, 1, b.KT, kC, b.P, kC, false, Tri::LowerC);  // q_i . k_j
    for (Index i = 0; i < n; ++i) {
        const float beta_i = in.beta[i * in.ld_gate];
        float* a_row = b.A + i * kC;
        float* p_row = b.P + i * kC;
        for (Index j = 0; j < i; ++j) {
            const float d = decay_factor(b.c[i] - b.c[j]);
            a_row[j] = beta_i * a_row[j] * d;
            p_row[j] *= d;
        }
        for (Index j = i + 1; j < n; ++j) p_row[j] = 0.0f;
    }

    // Ti = (I + A)^{-1} by forward substitution: row i = e_i - sum_{j<i} A_ij row j
    for (Index i = 0; i < n; ++i) {
        float* t_row = b.Ti + i * kC;
        for (Index m = 0; m < n; ++m) t_row[m] = 0.0f;
        t_row[i] = 1.0f;
        const float* a_row = b.A + i * kC;
        for (Index j = 0; j < i; ++j) {
            const float a = a_row[j];
            const float* t_j = b.Ti + j * kC;
            for (Index m = 0; m <= j; ++m) t_row[m] -= a * t_j[m];
        }
    }

    // Delta = Ti diag(beta) V - (Ti diag(beta e^c) K) S_0
    for (Index i = 0; i < n; ++i) {
        const float beta_i = in.beta[i * in.ld_gate];
        const float bke = beta_i * b.e[i];
        const float* v = in.v + i * ld;
        const float* k = in.k + i * ld;
        for (Index x = 0; x < dv; ++x) b.Vb[i * dv + x] = beta_i * v[x];
        for (Index x = 0; x < dk; ++x) b.Kb[i * dk + x] = bke * k[x];
    }
    gemm<Isa>(n, dv, n, b.Ti, kC, 1, b.Vb, dv, b.U, dv, false, Tri::LowerA);  // (n, d_v)
    gemm<Isa>(n, dk, n, b.Ti, kC, 1, b.Kb, dk, b.W, dk, false, Tri::LowerA);  // (n, d_k)
    gemm<Isa>(n, dv, dk, b.W, dk, 1, S_in, dv, b.WS, dv, false);       // (n, d_v)
    for (Index x = 0; x < n * dv; ++x) b.U[x] -= b.WS[x];               // U is Delta now

    // O = diag(e^c) Q S_0 + P Delta, straight into the output rows
    gemm<Isa>(n, dv, dk, in.q, ld, 1, S_in, dv, o, ldo, false);
    for (Index i = 0; i < n; ++i)
        for (Index x = 0; x < dv; ++x) o[i * ldo + x] *= b.e[i];
    gemm<Isa>(n, dv, n, b.P, kC, 1, b.U, dv, o, ldo, true, Tri::LowerA);

    // S_n = e^{c_{n-1}} S_0 + K^T diag(el) Delta (S_in is read for the last time: it may be
    // S_out)
    for (Index i = 0; i < n; ++i)
        for (Index x = 0; x < dv; ++x) b.Vb[i * dv + x] = b.el[i] * b.U[i * dv + x];
    const float decay = b.e[n - 1];
    for (Index x = 0; x < dk * dv; ++x) S_out[x] = decay * S_in[x];
    gemm<Isa>(dk, dv, n, b.KT, kC, 1, b.Vb, dv, S_out, dv, true);
    return all_finite<Isa>(S_out, dk * dv);
}

// One recurrent step: kv = S^T k (one pass), then S_new = e^g S + k delta^T and o = S_new^T q
// (a second pass, row by row).
template <class Isa>
MOELAB_INLINE bool step(const DeltaHead& in, const float* S_in, float* S_out, float* o,
                        float* scratch) {
    const Index dk = in.d_k, dv = in.d_v;
    const float decay = decay_factor(in.g[0]);
    const float beta = in.beta[0];
    float* delta = scratch;  // (d_v)
    gemm<Isa>(1, dv, dk, in.k, 0, 1, S_in, dv, delta, dv, false);  // S^T k
    for (Index c = 0; c < dv; ++c) delta[c] = beta * (in.v[c] - decay * delta[c]);
    for (Index c = 0; c < dv; ++c) o[c] = 0.0f;
    for (Index x = 0; x < dk; ++x) {
        const float kx = in.k[x], qx = in.q[x];
        const float* s_in = S_in + x * dv;
        float* s_out = S_out + x * dv;
        for (Index c = 0; c < dv; ++c) {
            const float s = decay * s_in[c] + kx * delta[c];
            s_out[c] = s;
            o[c] += qx * s;
        }
    }
    return all_finite<Isa>(S_out, dk * dv);
}

MOELAB_TARGET_AVX512 bool chunk_avx512(const DeltaHead& in, Index n, const float* S_in,
                                       float* S_out, float* o, Index ldo, float* scratch) {
    return chunk<Avx512>(in, n, S_in, S_out, o, ldo, scratch);
}
MOELAB_TARGET_AVX2 bool chunk_avx2(const DeltaHead& in, Index n, const float* S_in,
                                   float* S_out, float* o, Index ldo, float* scratch) {
    return chunk<Avx2>(in, n, S_in, S_out, o, ldo, scratch);
}
bool chunk_baseline(const DeltaHead& in, Index n, const float* S_in, float* S_out, float* o,
                    Index ldo, float* scratch) {
    return chunk<Baseline>(in, n, S_in, S_out, o, ldo, scratch);
}
MOELAB_TARGET_AVX512 bool step_avx512(const DeltaHead& in, const float* S_in, float* S_out,
                                      float* o, float* scratch) {
    return step<Avx512>(in, S_in, S_out, o, scratch);
}
MOELAB_TARGET_AVX2 bool step_avx2(const DeltaHead& in, const float* S_in, float* S_out,
                                  float* o, float* scratch) {
    return step<Avx2>(in, S_in, S_out, o, scratch);
}
bool step_baseline(const DeltaHead& in, const float* S_in, float* S_out, float* o,
                   float* scratch) {
    return step<Baseline>(in, S_in, S_out, o, scratch);
}

}  // namespace

Index delta_chunk_scratch(Index d_k, Index d_v) noexcept {
    ChunkBuffers b;
    return layout(d_k, d_v, nullptr, b);
}

Index delta_step_scratch(Index, Index d_v) noexcept { return d_v; }

bool delta_rule_chunk(const DeltaHead& in, Index n, const float* S_in, float* S_out, float* o,
                      Index ldo, float* scratch) noexcept {
    switch (active_isa()) {
        case Isa::Avx512: return chunk_avx512(in, n, S_in, S_out, o, ldo, scratch);
        case Isa::Avx2: return chunk_avx2(in, n, S_in, S_out, o, ldo, scratch);
        case Isa::Portable: break;
    }
    return chunk_baseline(in, n, S_in, S_out, o, ldo, scratch);
}

bool delta_rule_step(const DeltaHead& in, const float* S_in, float* S_out, float* o,
                     float* scratch) noexcept {
    switch (active_isa()) {
        case Isa::Avx512: return step_avx512(in, S_in, S_out, o, scratch);
        case Isa::Avx2: return step_avx2(in, S_in, S_out, o, scratch);
        case Isa::Portable: break;
    }
    return step_baseline(in, S_in, S_out, o, scratch);
}

}  // namespace moelab
