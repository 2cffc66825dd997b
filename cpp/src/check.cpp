#include "moelab/check.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace moelab {

namespace {

// The message says which of the two the first bad value is.
[[noreturn]] void not_finite(const char* what, Index i, bool is_nan) {
    throw std::invalid_argument(std::string(what) + ": contains NaN or Inf (first at flat index " +
                                std::to_string(i) + (is_nan ? ": NaN)" : ": Inf)"));
}

// bfloat16 is the upper half of a float32: NaN and Inf have all 8 exponent bits set.
constexpr std::uint16_t kBf16Exponent = 0x7f80;

}  // namespace

void require_finite(const float* data, Index n, const char* what) {
    for (Index i = 0; i < n; ++i)
        if (!std::isfinite(data[i])) not_finite(what, i, std::isnan(data[i]));
}

void require_finite(const std::uint16_t* data, Index n, const char* what) {
    for (Index i = 0; i < n; ++i)
        if ((data[i] & kBf16Exponent) == kBf16Exponent) not_finite(what, i, (data[i] & 0x7f) != 0);
}

}  // namespace moelab
