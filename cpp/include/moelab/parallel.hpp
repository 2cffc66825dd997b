// Thread count shared by every kernel, the OpenMP pragma wrapper, and the size below which a
// loop runs on one thread.
//
// The count is a process-wide setting (not OpenMP's per-thread ICV), so a count set from one
// Python thread applies to kernels launched from any other.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#define MOELAB_PRAGMA(x) _Pragma(#x)
#define MOELAB_OMP(x) MOELAB_PRAGMA(omp x)
#else
#define MOELAB_OMP(x)
#endif

namespace moelab {

int num_threads() noexcept;
void set_num_threads(int n);  // throws std::invalid_argument for n < 1
int max_threads() noexcept;   // what the OpenMP runtime offers (1 without OpenMP)
bool has_openmp() noexcept;

// Threads for a region of `work` elementary operations, for a caller that may use `threads`:
// 1 below min_parallel_work() (a parallel region costs microseconds when the machine is quiet
// and milliseconds when another process holds a core), `threads` from there on. Results never
// depend on it: work is cut by shape, not by thread.
int threads_for(double work, int threads) noexcept;

// The threshold of threads_for: 2^20 unless a test lowered it (0: every region runs on all the
// threads it may use, so that the thread tests exercise every parallel loop). Process-wide.
constexpr double kDefaultMinParallelWork = double(1 << 20);
double min_parallel_work() noexcept;
void set_min_parallel_work(double work);  // throws std::invalid_argument for work < 0 or NaN

// The parallel loops of the core, each counted (for the thread tests) when it really runs on a
// team of more than one thread.
enum class Region : int {
    RouterLogits,
    SelectExperts,
    AuxLoss,
    ZLoss,
    CopyExpertInputs,
    ExpertsPack,
    ExpertsGateUp,
    ExpertsDown,
    Combine,
    FillUniform,
    RmsNorm,
    Embedding,
    LogitSoftcap,
    AttentionPrepare,
    AttentionScores,
    Count  // the number of regions
};
const char* region_name(Region r) noexcept;
// Called by every thread at the start of region r: its thread 0 counts the region when the team
// has more than one thread.
void note_region(Region r) noexcept;
// Regions of kind r that ran on more than one thread, since the process started.
std::int64_t multithreaded_regions(Region r) noexcept;

inline int thread_id() noexcept {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace moelab
