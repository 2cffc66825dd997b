#include "moelab/gemm.hpp"
#include "moelab/bf16.hpp"

#include "moelab/names.hpp"
#include "moelab/types.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace moelab {

namespace {

constexpr Named<Isa> kIsas[] = {{Isa::Portable, "portable"}, {Isa::Avx2, "avx2"},
                                 {Isa::Avx512, "avx512"}};

Isa detect() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
    return Isa::Portable;
}

Isa initial() noexcept {
    const Isa best = detect();
    const char* env = std::getenv("MOELAB_ISA");
    if (!env || !*env) return best;
    try {
        const Isa want = parse_isa(env);
        return int(want) <= int(best) ? want : best;
    } catch (...) {
        return best;  // an unknown name is ignored (build_info shows what runs)
    }
}

std::atomic<int>& isa_setting() {
    static std::atomic<int> isa{int(initial())};
    return isa;
}

// Portable dot products in plain C++, one fixed order per element (the compiler vectorises the
// 8 partial sums for the baseline ISA): bfloat16 weights, and float32 ones at decode (the few
// rows of A could not repay packing the weights).
template <class W, class Load>
void gemm_portable_dot(const float* A, Index lda, const W* w, Index ldw, float* C, Index ldc,
                       Index n, Index N, Index K, Load load) noexcept {
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < N; ++j) {
            const float* a = A + i * lda;
            const W* b = w + j * ldw;
            float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            Index k = 0;
            for (; k + 8 <= K; k += 8)
                for (int l = 0; l < 8; ++l) part[l] += a[k + l] * load(b[k + l]);
            for (int l = 0; k < K; ++k, ++l) part[l] += a[k] * load(b[k]);
            C[i * ldc + j] = ((part[0] + part[1]) + (part[2] + part[3])) +
                             ((part[4] + part[5]) + (part[6] + part[7]));
        }
}

// Portable float32 path: a blocked GEMM in C++ with the compiler's generic vectors (GCC/Clang
// vector extensions: SSE2 registers on x86-64, NEON on ARM, scalar code elsewhere); no
// allocation, no library call, no intrinsic. Weight rows are packed k-major, a block of
// kPortableCols rows by a chunk of K at a time, into a buffer on the stack (L1), and each row of
// A is broadcast against it (an outer product): each element of C is the sum over k in order,
// carried through C from chunk to chunk, so the blocking never changes a bit.
typedef float Lanes4 __attribute__((vector_size(16)));
constexpr int kPortableRows = 4;        // rows of A per micro-kernel call
constexpr int kPortableCols = 8;        // weight rows per packed block: 4 x 8 sums in 8 registers
constexpr int kLaneGroups = kPortableCols / 4;
constexpr Index kPortableChunkK = 256;  // K per packed block (8 KiB)
constexpr Index kPortableDotRows = 3;   // at most this many rows of A: dot products, no packing

// Wp (kc, kPortableCols): Wp[k][j] = w[j][k0 + k] for j < nr, zero for the rest.
inline void pack_weight_block(const float* w, Index ldw, Index nr, Index k0, Index kc,
                              float* Wp) noexcept {
    for (Index k = 0; k < kc; ++k)
        for (int j = 0; j < kPortableCols; ++j)
            Wp[k * kPortableCols + j] = j < nr ? w[j * ldw + k0 + k] : 0.0f;
}

// C[0:MR, 0:nr] = (C when `carry`, else 0) + A[0:MR, 0:kc] . Wp over k in order.
template <int MR>
inline void portable_micro(const float* A, Index lda, const float* Wp, Index kc, float* C,
                           Index ldc, Index nr, bool carry) noexcept {
    alignas(16) float out[MR][kPortableCols] = {};
    if (carry)
        for (int i = 0; i < MR; ++i)
            for (Index j = 0; j < nr; ++j) out[i][j] = C[i * ldc + j];
    Lanes4 c[MR][kLaneGroups];
    for (int i = 0; i < MR; ++i)
        for (int g = 0; g < kLaneGroups; ++g) std::memcpy(&c[i][g], &out[i][4 * g], sizeof(Lanes4));
    for (Index k = 0; k < kc; ++k) {
        Lanes4 w[kLaneGroups];
        std::memcpy(w, Wp + k * kPortableCols, sizeof w);
        for (int i = 0; i < MR; ++i) {
            const float a = A[i * lda + k];
            for (int g = 0; g < kLaneGroups; ++g) c[i][g] += a * w[g];
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int g = 0; g < kLaneGroups; ++g) std::memcpy(&out[i][4 * g], &c[i][g], sizeof(Lanes4));
    for (int i = 0; i < MR; ++i)
        for (Index j = 0; j < nr; ++j) C[i * ldc + j] = out[i][j];
}

inline float as_is(float v) noexcept { return v; }

void gemm_portable_f32(const float* A, Index lda, const float* W, Index ldw, float* C, Index ldc,
                       Index n, Index N, Index K) noexcept {
    if (n <= kPortableDotRows || K <= 0) {
        gemm_portable_dot(A, lda, W, ldw, C, ldc, n, N, K, as_is);
        return;
    }
    alignas(64) float Wp[kPortableChunkK * kPortableCols];
    for (Index k0 = 0; k0 < K; k0 += kPortableChunkK) {
        const Index kc = K - k0 < kPortableChunkK ? K - k0 : kPortableChunkK;
        for (Index j0 = 0; j0 < N; j0 += kPortableCols) {
            const Index nr = N - j0 < kPortableCols ? N - j0 : kPortableCols;
            pack_weight_block(W + j0 * ldw, ldw, nr, k0, kc, Wp);
            static_assert(kPortableRows == 4, "the remainder below has 1 to 3 rows");
            Index i = 0;
            for (; i + kPortableRows <= n; i += kPortableRows)
                portable_micro<kPortableRows>(A + i * lda + k0, lda, Wp, kc, C + i * ldc + j0, ldc,
                                              nr, k0 > 0);
            const float* Ai = A + i * lda + k0;
            float* Ci = C + i * ldc + j0;
            switch (n - i) {
                case 3: portable_micro<3>(Ai, lda, Wp, kc, Ci, ldc, nr, k0 > 0); break;
                case 2: portable_micro<2>(Ai, lda, Wp, kc, Ci, ldc, nr, k0 > 0); break;
                case 1: portable_micro<1>(Ai, lda, Wp, kc, Ci, ldc, nr, k0 > 0); break;
                default: break;
            }
        }
    }
}

void gemm_portable_bf16(const float* A, Index lda, const std::uint16_t* W, Index ldw, float* C,
                        Index ldc, Index n, Index N, Index K) noexcept {
    gemm_portable_dot(A, lda, W, ldw, C, ldc, n, N, K, from_bf16);
}

constexpr detail::GemmKernels kGemmPortable = {gemm_portable_f32, gemm_portable_bf16};

// The kernels of the active instruction set.
const detail::GemmKernels& gemm_kernels() noexcept {
    switch (active_isa()) {
        case Isa::Avx512: return detail::kGemmAvx512;
        case Isa::Avx2: return detail::kGemmAvx2;
        case Isa::Portable: break;
    }
    return kGemmPortable;
}

}  // namespace

Isa detected_isa() noexcept {
    static const Isa isa = detect();
    return isa;
}

Isa active_isa() noexcept { return Isa(isa_setting().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
    if (int(isa) > int(detected_isa()))
        throw std::invalid_argument("isa: '" + to_string(isa) + "' is not supported by this CPU (best: '" +
                                    to_string(detected_isa()) + "')");
    isa_setting().store(int(isa), std::memory_order_relaxed);
}

std::string to_string(Isa isa) { return name_of(kIsas, isa); }

Isa parse_isa(const std::string& name) { return parse_name(kIsas, name, "isa"); }

bool cpu_has_avx512_bf16() noexcept {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

void gemm_nt(const float* A, Index lda, const float* W, Index ldw, float* C, Index ldc, Index n,
             Index N, Index K) noexcept {
    if (n > 0 && N > 0) gemm_kernels().f32(A, lda, W, ldw, C, ldc, n, N, K);
}

void gemm_nt_bf16(const float* A, Index lda, const std::uint16_t* W, Index ldw, float* C,
                  Index ldc, Index n, Index N, Index K) noexcept {
    if (n > 0 && N > 0) gemm_kernels().bf16(A, lda, W, ldw, C, ldc, n, N, K);
}

bool panels_available() noexcept { return active_isa() != Isa::Portable; }

void pack_panel(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                float* panel) noexcept {
    if (active_isa() == Isa::Avx512)
        detail::pack_panel_avx512(in, row_offsets, lanes, K, panel);
    else
        detail::pack_panel_avx2(in, row_offsets, lanes, K, panel);
}

void panel_gemm(const float* W_f32, const std::uint16_t* W_bf16, Index ldw, Index R,
                const float* panel, Index K, Index lanes, float* out,
                const PanelPrefetch& next, bool accumulate) noexcept {
    const bool avx512 = active_isa() == Isa::Avx512;
    if (W_f32 && avx512)
        detail::panel_gemm_avx512(W_f32, ldw, R, panel, K, lanes, out, next, accumulate);
    else if (W_f32)
        detail::panel_gemm_avx2(W_f32, ldw, R, panel, K, lanes, out, next, accumulate);
    else if (avx512)
        detail::panel_gemm_bf16_avx512(W_bf16, ldw, R, panel, K, lanes, out, next, accumulate);
    else
        detail::panel_gemm_bf16_avx2(W_bf16, ldw, R, panel, K, lanes, out, next, accumulate);
}

void panel_store(const float* out, Index R, Index lanes, const float* bias, float* y,
                 Index ldy) noexcept {
    if (active_isa() == Isa::Avx512)
        detail::panel_store_avx512(out, R, lanes, bias, y, ldy);
    else
        detail::panel_store_avx2(out, R, lanes, bias, y, ldy);
}

void convert_to_bf16(const float* src, std::uint16_t* dst, Index n) noexcept {
    if (active_isa() == Isa::Avx512 && cpu_has_avx512_bf16()) {
        detail::convert_to_bf16_avx512bf16(src, dst, n);
        return;
    }
    for (Index i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

void convert_from_bf16(const std::uint16_t* src, float* dst, Index n) noexcept {
    for (Index i = 0; i < n; ++i) dst[i] = from_bf16(src[i]);
}

}  // namespace moelab
