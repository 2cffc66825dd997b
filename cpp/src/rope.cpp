#include "moelab/rope.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moelab {

namespace {

constexpr double kPi = 3.14159265358979323846;

void require(bool ok, const std::string& field, double value, const char* rule) {
    if (!ok)
        throw std::invalid_argument("rope " + field + ": must be " + rule + ", got " +
                                    std::to_string(value));
}

// 0.1 mscale ln(scale) + 1 above scale 1 (YaRN's magnitude correction).
double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

void RopeSpec::validate() const {
    require(std::isfinite(theta) && theta > 1.0, "rope_theta", theta, "finite and > 1");
    require(head_dim >= 2 && head_dim <= (Index(1) << 16), "head_dim", double(head_dim),
            "in [2, 65536]");
    require(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0, "partial_rotary_factor",
            partial_rotary_factor, "in (0, 1]");
    const Index R = Index(double(head_dim) * partial_rotary_factor);
    require(R >= 2 && R % 2 == 0, "partial_rotary_factor", partial_rotary_factor,
            "such that int(head_dim * factor) is even and >= 2");
    if (type != RopeType::Default)
        require(std::isfinite(factor) && factor > 0.0, "factor", factor, "finite and > 0");
    if (type == RopeType::Llama3) {
        require(original_max_position_embeddings >= 1.0, "original_max_position_embeddings",
                original_max_position_embeddings, ">= 1");
        require(high_freq_factor > low_freq_factor && low_freq_factor > 0.0, "high_freq_factor",
                high_freq_factor, "> low_freq_factor > 0");
    }
    if (type == RopeType::Yarn) {
        require(original_max_position_embeddings >= 1.0, "original_max_position_embeddings",
                original_max_position_embeddings, ">= 1");
        require(beta_fast > 0.0 && beta_slow > 0.0, "beta_fast", beta_fast, "> 0 (and beta_slow)");
        require(attention_factor >= 0.0 && std::isfinite(attention_factor), "attention_factor",
                attention_factor, "finite and >= 0 (0: computed)");
    }
}

Rope make_rope(const RopeSpec& s) {
    s.validate();
    Rope r;
    r.head_dim = s.head_dim;
    r.interleaved = s.interleaved;
    r.rotary_dim = Index(double(s.head_dim) * s.partial_rotary_factor);
    const Index dim = r.rotary_dim, half = dim / 2;
    // HF forms the frequencies in float32 tensor ops (a Python scalar taken as a float32
    // operand); the same operations in the same order give the same floats, and so the same
    // angles at every position. base^(2i / dim) is rounded from double (as torch's pow rounds).
    r.inv_freq.resize(std::size_t(half));
    const float factor = float(s.factor);
    for (Index i = 0; i < half; ++i) {
        const float e = float(2 * i) / float(dim);
        const float p = float(std::pow(s.theta, double(e)));  // base^(2i/dim)
        float f = 1.0f / p;
        switch (s.type) {
            case RopeType::Default:
                break;
            case RopeType::Linear:
                f = f / factor;
                break;
            case RopeType::Llama3: {
                const double old = s.original_max_position_embeddings;
                const float low_wavelen = float(old / s.low_freq_factor);
                const float high_wavelen = float(old / s.high_freq_factor);
                const float wavelen = float(2.0 * kPi) / f;
                if (wavelen > low_wavelen) {
                    f = f / factor;
                } else if (!(wavelen < high_wavelen)) {
                    const float smooth = (float(old) / wavelen - float(s.low_freq_factor)) /
                                         float(s.high_freq_factor - s.low_freq_factor);
                    f = (1.0f - smooth) * f / factor + smooth * f;
                }
                break;
            }
            case RopeType::Yarn: {
                auto correction_dim = [&](double rotations) {
                    return double(dim) *
                           std::log(s.original_max_position_embeddings / (rotations * 2.0 * kPi)) /
                           (2.0 * std::log(s.theta));
                };
                double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
                if (s.truncate) {
                    low = std::floor(low);
                    high = std::ceil(high);
                }
                low = std::max(low, 0.0);
                high = std::min(high, double(dim - 1));
                if (low == high) high += 0.001;  // HF's guard against a zero-width ramp
                const float ramp =
                    std::clamp((float(i) - float(low)) / float(high - low), 0.0f, 1.0f);
                const float extrapolation = 1.0f - ramp;
                const float interpolation = 1.0f / (factor * p);
                f = interpolation * (1.0f - extrapolation) + f * extrapolation;
                break;
            }
        }
        r.inv_freq[std::size_t(i)] = f;
    }
    if (s.type == RopeType::Yarn) {
        double a = s.attention_factor;
        if (a == 0.0) {
            a = (s.mscale != 0.0 && s.mscale_all_dim != 0.0)
                    ? yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
                    : yarn_mscale(s.factor, 1.0);
        }
        r.attention_scaling = float(a);
    }
    return r;
}

void apply_rope(const Rope& rope, float* x, Index T, Index heads, Index ld, Index pos0) noexcept {
    const Index half = rope.rotary_dim / 2, d = rope.head_dim;
    const float scale = rope.attention_scaling;
    for (Index t = 0; t < T; ++t) {
        const float pos = float(pos0 + t);
        float* row = x + t * ld;
        for (Index i = 0; i < half; ++i) {
            const float angle = pos * rope.inv_freq[std::size_t(i)];
            const float c = float(std::cos(double(angle))) * scale;
            const float s = float(std::sin(double(angle))) * scale;
            const Index a = rope.interleaved ? 2 * i : i;
            const Index b = rope.interleaved ? 2 * i + 1 : i + half;
            for (Index h = 0; h < heads; ++h) {
                float* v = row + h * d;
                const float xa = v[a], xb = v[b];
                v[a] = xa * c - xb * s;
                v[b] = xb * c + xa * s;
            }
        }
    }
}

}  // namespace moelab
