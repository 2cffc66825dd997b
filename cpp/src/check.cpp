#include "moelab/check.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace moelab {

void require_finite(const float* data, Index n, const char* what) {
    for (Index i = 0; i < n; ++i)
        if (!std::isfinite(data[i]))
            throw std::invalid_argument(std::string(what) + ": contains NaN or Inf (first at flat index " +
                                        std::to_string(i) + ")");
}

}  // namespace moelab
