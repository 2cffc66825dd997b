#include "moelab/norm.hpp"

#include <cmath>

#include "moelab/bf16.hpp"
#include "moelab/parallel.hpp"

namespace moelab {

namespace {

inline float weight_at(const WeightPtr& w, Index i) noexcept {
    return w.f32 ? w.f32[i] : from_bf16(w.bf16[i]);
}

void norm_row(const float* x, const RmsNormWeight& w, NormMath math, float* y) noexcept {
    const Index H = w.hidden;
    double sum = 0.0;
    for (Index i = 0; i < H; ++i) sum += double(x[i]) * double(x[i]);
    if (math == NormMath::Double) {
        const double r = 1.0 / std::sqrt(sum / double(H) + double(w.eps));
        for (Index i = 0; i < H; ++i)
            y[i] = float(double(x[i]) * r * (double(w.offset) + double(weight_at(w.weight, i))));
        return;
    }
    const float mean = float(sum / double(H));
    const float r = 1.0f / std::sqrt(mean + w.eps);
    for (Index i = 0; i < H; ++i) {
        const float h = x[i] * r;
        const float scale = w.offset + weight_at(w.weight, i);  // offset 0: w itself, exactly
        y[i] = h * scale;
    }
}

}  // namespace

void rms_norm(const float* x, Index num_rows, const RmsNormWeight& w, NormMath math, float* y,
              int threads) noexcept {
    const Index H = w.hidden;
    const int team = threads_for(double(num_rows) * double(H) * 4.0, threads);
    (void)team;
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
        note_region(Region::RmsNorm);
        MOELAB_OMP(for schedule(static))
        for (Index t = 0; t < num_rows; ++t) norm_row(x + t * H, w, math, y + t * H);
    }
}

}  // namespace moelab
