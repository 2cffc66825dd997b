#include "moelab/check.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace moelab {

namespace {

// The message says which of the two the first bad value is.
[[noreturn]] void not_finite(const char* what, Index i, bool is_nan) {
    throw std::invalid_argument(std::string(what) + ": contains NaN or Inf (first at flat index " +
                                std::to_string(i) + (is_nan ? ": NaN)" : ": Inf)"));
}

// NaN and Inf have all exponent bits set: 8 in float32 and in bfloat16 (its upper half).
// With them all set, a non-zero mantissa is a NaN, a zero one an Inf.
constexpr std::uint32_t kF32Exponent = 0x7f800000u, kF32Mantissa = 0x007fffffu;
constexpr std::uint16_t kBf16Exponent = 0x7f80, kBf16Mantissa = 0x007f;

// Values checked per block: the scan of a block has no branch (so that it vectorises and a
// whole weight matrix, an LM head of 10^8 values, is checked at memory speed); a block with a
// bad value is scanned again for the first one.
constexpr Index kCheckBlock = 4096;

// The raw bits of element i (a memcpy: the compilers turn it into one load).
template <class Bits, class T>
inline Bits bits_at(const T* data, Index i) noexcept {
    static_assert(sizeof(Bits) == sizeof(T), "same width");
    Bits u;
    std::memcpy(&u, data + i, sizeof u);
    return u;
}

template <class Bits, Bits kExponent, Bits kMantissa, class T>
void require_finite_bits(const T* data, Index n, const char* what) {
    for (Index b0 = 0; b0 < n; b0 += kCheckBlock) {
        const Index end = std::min(n, b0 + kCheckBlock);
        unsigned bad = 0;
        for (Index i = b0; i < end; ++i)
            bad |= unsigned((bits_at<Bits>(data, i) & kExponent) == kExponent);
        if (bad)
            for (Index i = b0; i < end; ++i)
                if ((bits_at<Bits>(data, i) & kExponent) == kExponent)
                    not_finite(what, i, (bits_at<Bits>(data, i) & kMantissa) != 0);
    }
}

}  // namespace

void require_finite(const float* data, Index n, const char* what) {
    require_finite_bits<std::uint32_t, kF32Exponent, kF32Mantissa>(data, n, what);
}

void require_finite(const std::uint16_t* data, Index n, const char* what) {
    require_finite_bits<std::uint16_t, kBf16Exponent, kBf16Mantissa>(data, n, what);
}

void require_dimension(const char* name, Index value, Index max) {
    if (value < 1 || value > max)
        throw std::invalid_argument(std::string(name) + ": must be in [1, " + std::to_string(max) +
                                    "], got " + std::to_string(value));
}

void require_own(const char* what, std::uint64_t owner, std::uint64_t layer_id,
                 const char* kind, const char* factory) {
    if (owner != layer_id)
        throw std::invalid_argument(std::string(what) + ": belongs to another " + kind +
                                    " layer (make it with this layer's " + factory + "())");
}

void require_positions(Index pos0, Index T, Index max_positions) {
    if (pos0 + T > max_positions)
        throw std::invalid_argument(
            "x: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + T - 1) +
            " reach max_position_embeddings=" + std::to_string(max_positions));
}

}  // namespace moelab
