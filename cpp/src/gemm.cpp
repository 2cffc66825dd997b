#include "moelab/gemm.hpp"

#include "moelab/types.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace moelab {

namespace {

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

inline std::uint16_t to_bf16(float f) noexcept {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return std::uint16_t(u >> 16);
}

inline float from_bf16(std::uint16_t h) noexcept {
    const std::uint32_t u = std::uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Portable bfloat16 path: a dot product in plain C++, one fixed order per element (the
// compiler vectorises the 8 partial sums for the baseline ISA).
template <class W, class Load>
void gemm_portable(const float* A, Index lda, const W* w, Index ldw, float* C, Index ldc, Index n,
                   Index N, Index K, Load load) noexcept {
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

std::string to_string(Isa isa) {
    switch (isa) {
        case Isa::Portable: return "portable";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
    }
    return "?";
}

Isa parse_isa(const std::string& name) {
    if (name == "portable") return Isa::Portable;
    if (name == "avx2") return Isa::Avx2;
    if (name == "avx512") return Isa::Avx512;
    throw std::invalid_argument("isa: expected 'portable', 'avx2' or 'avx512', got '" + name + "'");
}

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
    if (n <= 0 || N <= 0) return;
    switch (active_isa()) {
        case Isa::Avx512: detail::gemm_nt_avx512(A, lda, W, ldw, C, ldc, n, N, K); return;
        case Isa::Avx2: detail::gemm_nt_avx2(A, lda, W, ldw, C, ldc, n, N, K); return;
        case Isa::Portable: {  // Eigen's GEMM for the baseline ISA
            ConstMatMap a(A, n, K, Eigen::OuterStride<>(lda));
            ConstMatMap w(W, N, K, Eigen::OuterStride<>(ldw));
            MatMap c(C, n, N, Eigen::OuterStride<>(ldc));
            c.noalias() = a * w.transpose();
            return;
        }
    }
}

void gemm_nt_bf16(const float* A, Index lda, const std::uint16_t* W, Index ldw, float* C,
                  Index ldc, Index n, Index N, Index K) noexcept {
    if (n <= 0 || N <= 0) return;
    switch (active_isa()) {
        case Isa::Avx512: detail::gemm_nt_bf16_avx512(A, lda, W, ldw, C, ldc, n, N, K); return;
        case Isa::Avx2: detail::gemm_nt_bf16_avx2(A, lda, W, ldw, C, ldc, n, N, K); return;
        case Isa::Portable:
            gemm_portable(A, lda, W, ldw, C, ldc, n, N, K, from_bf16);
            return;
    }
}

bool panels_available() noexcept { return active_isa() == Isa::Avx512; }

void pack_panel(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                float* panel) noexcept {
    detail::pack_panel_avx512(in, row_offsets, lanes, K, panel);
}

void panel_gemm(const float* W_f32, const std::uint16_t* W_bf16, Index ldw, Index R,
                const float* panel, Index K, Index lanes, float* out,
                const PanelPrefetch& next, bool accumulate) noexcept {
    if (W_f32)
        detail::panel_gemm_avx512(W_f32, ldw, R, panel, K, lanes, out, next, accumulate);
    else
        detail::panel_gemm_bf16_avx512(W_bf16, ldw, R, panel, K, lanes, out, next, accumulate);
}

void panel_store(const float* out, Index R, Index lanes, const float* bias, float* y,
                 Index ldy) noexcept {
    detail::panel_store_avx512(out, R, lanes, bias, y, ldy);
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
