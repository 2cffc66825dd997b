// One step of the online softmax over a block of keys, for one query row: the running maximum m
// and denominator l (double) absorb n new logits, which become their unnormalised weights
// exp(s - m') in place. The caller multiplies its running weighted sum by the returned factor
// exp(m - m') (0 on the first block) before adding the block's weighted values
// (accumulate_weighted_rows). Shared by softmax attention and MLA.
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

// acc (rows, width) += p (rows, n) . vals (n, width): each block's weights times its value rows,
// key by key in order (the same bits whatever the caller). Leading dimensions ldp, ldv, lda.
inline void accumulate_weighted_rows(const float* p, Index ldp, Index rows, const float* vals,
                                     Index ldv, Index n, Index width, float* acc,
                                     Index lda) noexcept {
    for (Index i = 0; i < n; ++i) {
        const float* v = vals + i * ldv;
        for (Index j = 0; j < rows; ++j) {
            const float w = p[j * ldp + i];
            float* a = acc + j * lda;
            for (Index c = 0; c < width; ++c) a[c] += w * v[c];
        }
    }
}

}  // namespace moelab
