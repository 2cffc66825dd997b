// The two OpenMP loops of the attention kernels (attention.cpp, mla.cpp): per token (the
// projections' norms and RoPE) and per scores task (the online softmax over key blocks). Each
// runs on the threads its work earns (threads_for), counted as its Region for the thread tests.
// Private to cpp/src, where every OpenMP pragma lives.
#pragma once

#include "moelab/parallel.hpp"
#include "moelab/types.hpp"

namespace moelab {

// body(i) for every i in [0, n) on the threads `work` earns, counted as `region`: statically
// scheduled, or with `dynamic` one index at a time (tasks of unequal length share the
// threads). body must not throw.
template <class Body>
void run_attention_loop(Index n, double work, int threads, Region region, bool dynamic,
                        const Body& body) noexcept {
    const int team = threads_for(work, threads);
    (void)team;  // without OpenMP
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
    note_region(region);
    if (dynamic) {
        MOELAB_OMP(for schedule(dynamic, 1))
        for (Index i = 0; i < n; ++i) body(i);
    } else {
        MOELAB_OMP(for schedule(static))
        for (Index i = 0; i < n; ++i) body(i);
    }
    }
}

// row(t) for every token t in [0, T) (an AttentionPrepare region, static).
template <class Row>
void for_each_token(Index T, double work, int threads, const Row& row) noexcept {
    run_attention_loop(T, work, threads, Region::AttentionPrepare, false, row);
}

// task(i) for every i in [0, tasks) (an AttentionScores region, dynamic).
template <class Task>
void for_each_scores_task(Index tasks, double work, int threads, const Task& task) noexcept {
    run_attention_loop(tasks, work, threads, Region::AttentionScores, true, task);
}

}  // namespace moelab
