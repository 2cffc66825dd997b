#include "moelab/parallel.hpp"

#include <atomic>
#include <stdexcept>

namespace moelab {

namespace {
std::atomic<int>& thread_setting() {
    static std::atomic<int> n{max_threads()};
    return n;
}
}  // namespace

int max_threads() noexcept {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

bool has_openmp() noexcept {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

int num_threads() noexcept { return thread_setting().load(std::memory_order_relaxed); }

int threads_for(double work) noexcept {
    constexpr double kMinParallelWork = double(1 << 20);
    return work < kMinParallelWork ? 1 : num_threads();
}

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("n: the thread count must be >= 1, got " + std::to_string(n));
    thread_setting().store(n, std::memory_order_relaxed);
}

}  // namespace moelab
