// One step of the online softmax over a block of keys, for one query row: the running maximum m
// and denominator l (double) absorb n new logits, which become their unnormalised weights
// exp(s - m') in place. The caller multiplies its running weighted sum by the returned factor
// exp(m - m') (0 on the first block) before adding the block's weighted values.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "moelab/types.hpp"

namespace moelab {

// s (n) raw dot products -> scale * s, soft-capped when cap > 0 (cap tanh(s / cap)), then
// exp(. - m'), summed into l. n may be 0 (nothing changes, the factor is 1).
inline float online_softmax_block(float* s, Index n, float scale, float cap, float& m,
                                  double& l) noexcept {
    float mx = m;
    for (Index i = 0; i < n; ++i) {
        float sc = s[i] * scale;
        if (cap > 0.0f) sc = cap * std::tanh(sc / cap);
        s[i] = sc;
        mx = std::max(mx, sc);
    }
    const float rescale = m == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(m - mx);
    l *= double(rescale);
    for (Index i = 0; i < n; ++i) {
        s[i] = std::exp(s[i] - mx);
        l += double(s[i]);
    }
    m = mx;
    return rescale;
}

}  // namespace moelab
