// Thread count shared by every kernel, and the OpenMP pragma wrapper.
//
// The count is a process-wide setting (not OpenMP's per-thread ICV), so a count set from one
// Python thread applies to kernels launched from any other.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#define MOELAB_PRAGMA(x) _Pragma(#x)
#define MOELAB_OMP(x) MOELAB_PRAGMA(omp x)
#else
#define MOELAB_OMP(x)
#endif

namespace moelab {

int num_threads() noexcept;
// Threads for a region of `work` elementary operations: 1 below a threshold (a parallel region
// costs microseconds when the machine is quiet and milliseconds when another process holds a
// core), num_threads() above. Results never depend on it: work is cut by shape, not by thread.
int threads_for(double work) noexcept;
void set_num_threads(int n);  // throws std::invalid_argument for n < 1
int max_threads() noexcept;   // what the OpenMP runtime offers (1 without OpenMP)
bool has_openmp() noexcept;

inline int thread_id() noexcept {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace moelab
