#include "moelab/parallel.hpp"

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moelab {

namespace {

std::atomic<int>& thread_setting() {
    static std::atomic<int> n{max_threads()};
    return n;
}

std::atomic<double>& min_work_setting() {
    static std::atomic<double> work{kDefaultMinParallelWork};
    return work;
}

// The names of Region's values, in its order.
constexpr const char* kRegionNames[] = {
    "router_logits", "select_experts", "aux_loss",        "z_loss",       "copy_expert_inputs",
    "experts_pack",  "experts_gate_up", "experts_down",   "combine",      "fill_uniform",
    "rms_norm",      "embedding",       "logit_softcap",
    "attention_prepare", "attention_scores",
};
static_assert(sizeof(kRegionNames) / sizeof(kRegionNames[0]) == std::size_t(Region::Count),
              "a name for each region");

std::atomic<std::int64_t> multithreaded[std::size_t(Region::Count)];

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

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("n: the thread count must be >= 1, got " + std::to_string(n));
    thread_setting().store(n, std::memory_order_relaxed);
}

int threads_for(double work, int threads) noexcept {
    return work < min_parallel_work() ? 1 : threads;
}

double min_parallel_work() noexcept { return min_work_setting().load(std::memory_order_relaxed); }

void set_min_parallel_work(double work) {
    if (!(work >= 0.0))
        throw std::invalid_argument("work: must be >= 0, got " + std::to_string(work));
    min_work_setting().store(work, std::memory_order_relaxed);
}

const char* region_name(Region r) noexcept { return kRegionNames[std::size_t(r)]; }

void note_region(Region r) noexcept {
#ifdef _OPENMP
    if (omp_get_thread_num() == 0 && omp_get_num_threads() > 1)
        multithreaded[std::size_t(r)].fetch_add(1, std::memory_order_relaxed);
#else
    (void)r;
#endif
}

std::int64_t multithreaded_regions(Region r) noexcept {
    return multithreaded[std::size_t(r)].load(std::memory_order_relaxed);
}

}  // namespace moelab
