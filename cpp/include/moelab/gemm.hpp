// GEMM of the experts: C (n, N) = A (n, K) . W^T with W (N, K) row-major, the canonical layout
// of gate_up_proj / down_proj rows. Weights are read in place (no packing, held once), as
// float32 or as bfloat16 (upper 16 bits of a float32; math in float32).
//
// The instruction set is chosen at run time from the CPU's features: AVX-512, AVX2+FMA, or the
// portable path (our own C++ kernels, compiled for the baseline ISA). MOELAB_ISA=portable|avx2|
// avx512 forces one (never above what the CPU has). Every path reduces in a fixed order that
// depends only on the shapes, so results are bitwise identical for any thread count; none
// allocates or throws.
#pragma once

#include <cstdint>
#include <string>

#include "moelab/types.hpp"

namespace moelab {

enum class Isa { Portable, Avx2, Avx512 };

Isa detected_isa() noexcept;   // the best the CPU supports
Isa active_isa() noexcept;     // what the kernels use (detected, or MOELAB_ISA, or set_isa)
void set_isa(Isa isa);         // throws std::invalid_argument above the detected ISA
std::string to_string(Isa isa);
Isa parse_isa(const std::string& name);  // throws std::invalid_argument
bool cpu_has_avx512_bf16() noexcept;

// C[i * ldc + j] = sum_k A[i * lda + k] * W[j * ldw + k], for i < n, j < N. noexcept: no
// allocation, safe inside a parallel region.
void gemm_nt(const float* A, Index lda, const float* W, Index ldw, float* C, Index ldc, Index n,
             Index N, Index K) noexcept;
// The same with bfloat16 weights.
void gemm_nt_bf16(const float* A, Index lda, const std::uint16_t* W, Index ldw, float* C,
                  Index ldc, Index n, Index N, Index K) noexcept;

// float32 -> bfloat16, round to nearest even (NaN stays NaN); AVX-512-BF16 when present. That
// instruction flushes float32 denormals (|w| < 1.2e-38) to zero where the portable rounding
// keeps them: no trained weight lives there, and it only ever runs at load time.
void convert_to_bf16(const float* src, std::uint16_t* dst, Index n) noexcept;
void convert_from_bf16(const std::uint16_t* src, float* dst, Index n) noexcept;

// ---- Token panels (AVX-512, AVX2) -----------------------------------------------------------
// An expert with many rows has its input repacked into panels of kPanel tokens, k-major:
// panel[k * kPanel + lane]. The panel kernel broadcasts weight elements (rows read in place, in
// the canonical layout) against the 32 token lanes: an outer product, faster than the
// dot-product form on prefill shapes (benchmarks/KERNEL_NOTES.md [panels]). Every lane runs the
// same sequential K loop, so a token's result does not depend on its lane or on which tokens
// share its panel.
constexpr Index kPanel = 32;
constexpr Index kPanelRows = 12;  // weight rows per kernel call
bool panels_available() noexcept;  // the active ISA is AVX-512 or AVX2 (+FMA)

// panel (K, kPanel) from `lanes` <= kPanel rows of `in`, row l starting at in + row_offsets[l]
// (elements, each < 2^31); unused lanes are 0.
void pack_panel(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                float* panel) noexcept;
// The weight block the next panel_gemm call will read, prefetched into L2 while this one
// computes, spread evenly over its K steps: `rows` rows from `base`, of W's dtype and row stride
// (ldw). rows = 0, or a call over a chunk of K (K != ldw): nothing to prefetch. Only a hint: it
// never changes a result.
struct PanelPrefetch {
    const void* base = nullptr;
    Index rows = 0;
};

// out[r * kPanel + lane] (+)= W[r * ldw + 0:K] . panel[0:K, lane] for r < R <= kPanelRows and
// the first `lanes` lanes (rounded up to 16 or 32 with AVX-512, to 8 with AVX2; the rest of
// out is left as it was);
// W float32 or bfloat16 (exactly one non-null). With `accumulate` the sums continue from out
// (a K cut in chunks, each call given W + k0 and panel + k0 * kPanel, gives the same bits).
void panel_gemm(const float* W_f32, const std::uint16_t* W_bf16, Index ldw, Index R,
                const float* panel, Index K, Index lanes, float* out,
                const PanelPrefetch& next = PanelPrefetch{}, bool accumulate = false) noexcept;

// A (R, kPanel) block of panel_gemm's out back to token rows: y[l * ldy + r] = out[r * kPanel +
// l] (+ bias[r] when bias is not null) for r < R <= 16 and l < lanes.
void panel_store(const float* out, Index R, Index lanes, const float* bias, float* y,
                 Index ldy) noexcept;

namespace detail {
void pack_panel_avx512(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                       float* panel) noexcept;
void panel_store_avx512(const float* out, Index R, Index lanes, const float* bias, float* y,
                        Index ldy) noexcept;
void panel_gemm_avx512(const float* W, Index ldw, Index R, const float* panel, Index K,
                       Index lanes, float* out, const PanelPrefetch& next,
                       bool accumulate) noexcept;
void panel_gemm_bf16_avx512(const std::uint16_t* W, Index ldw, Index R, const float* panel,
                            Index K, Index lanes, float* out, const PanelPrefetch& next,
                            bool accumulate) noexcept;
void pack_panel_avx2(const float* in, const std::int32_t* row_offsets, Index lanes, Index K,
                     float* panel) noexcept;
void panel_store_avx2(const float* out, Index R, Index lanes, const float* bias, float* y,
                      Index ldy) noexcept;
void panel_gemm_avx2(const float* W, Index ldw, Index R, const float* panel, Index K, Index lanes,
                     float* out, const PanelPrefetch& next, bool accumulate) noexcept;
void panel_gemm_bf16_avx2(const std::uint16_t* W, Index ldw, Index R, const float* panel, Index K,
                          Index lanes, float* out, const PanelPrefetch& next,
                          bool accumulate) noexcept;
// The gemm_nt kernels of one instruction set, for float32 and for bfloat16 weights; those of
// AVX-512 and AVX2 are defined in gemm_avx512.cpp / gemm_avx2.cpp with target attributes.
struct GemmKernels {
    void (*f32)(const float* A, Index lda, const float* W, Index ldw, float* C, Index ldc,
                Index n, Index N, Index K) noexcept;
    void (*bf16)(const float* A, Index lda, const std::uint16_t* W, Index ldw, float* C,
                 Index ldc, Index n, Index N, Index K) noexcept;
};
extern const GemmKernels kGemmAvx512;
extern const GemmKernels kGemmAvx2;
void convert_to_bf16_avx512bf16(const float* src, std::uint16_t* dst, Index n) noexcept;
}  // namespace detail

}  // namespace moelab
