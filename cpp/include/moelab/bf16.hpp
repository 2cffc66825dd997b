// One bfloat16 value <-> float32: the scalar conversions the kernels share (bulk conversions of
// weight arrays are convert_to_bf16 / convert_from_bf16 in gemm.hpp).
#pragma once

#include <cstdint>
#include <cstring>

namespace moelab {

// float32 -> bfloat16 bits, round to nearest even (NaN stays NaN).
inline std::uint16_t to_bf16(float f) noexcept {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return std::uint16_t(u >> 16);
}

// bfloat16 bits -> float32 (exact).
inline float from_bf16(std::uint16_t h) noexcept {
    const std::uint32_t u = std::uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

}  // namespace moelab
