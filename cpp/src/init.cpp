#include "moelab/init.hpp"

#include "moelab/parallel.hpp"

namespace moelab {

namespace {
constexpr double kWorkPerValue = 8.0;  // elementary operations of one hashed value, for threads_for

// splitmix64 finaliser: a good 64-bit mix of a counter.
inline std::uint64_t mix64(std::uint64_t z) noexcept {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

void fill_uniform(float* data, Index n, float bound, std::uint64_t seed, std::uint64_t stream,
                  Index offset) noexcept {
    const std::uint64_t key = mix64(mix64(seed) ^ (stream * 0xD1B54A32D192ED03ull));
    const int threads = threads_for(double(n) * kWorkPerValue, num_threads());
    (void)threads;
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        note_region(Region::FillUniform);
        MOELAB_OMP(for schedule(static))
        for (Index i = 0; i < n; ++i) {
            const std::uint64_t r = mix64(key + std::uint64_t(offset + i));
            const float u = float(r >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
            data[i] = (2.0f * u - 1.0f) * bound;
        }
    }
}

}  // namespace moelab
