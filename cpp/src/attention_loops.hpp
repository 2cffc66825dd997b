// The two OpenMP loops of the attention kernels (attention.cpp, mla.cpp): per token (the
// projections' norms and RoPE) and per scores task (the online softmax over key blocks). Each
// runs on the threads its work earns (threads_for), counted as its Region for the thread tests.
// Private to cpp/src, where every OpenMP pragma lives.
#pragma once

#include "moelab/parallel.hpp"
#include "moelab/types.hpp"

namespace moelab {

// row(t) for every token t in [0, T): statically scheduled (an AttentionPrepare region).
// row must not throw.
template <class Row>
void for_each_token(Index T, double work, int threads, const Row& row) noexcept {
    const int team = threads_for(work, threads);
    (void)team;  // without OpenMP
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
    note_region(Region::AttentionPrepare);
    MOELAB_OMP(for schedule(static))
    for (Index t = 0; t < T; ++t) row(t);
    }
}

// task(i) for every i in [0, tasks): dynamically scheduled, one at a time (an AttentionScores
// region), so that tasks of unequal length share the threads. task must not throw.
template <class Task>
void for_each_scores_task(Index tasks, double work, int threads, const Task& task) noexcept {
    const int team = threads_for(work, threads);
    (void)team;  // without OpenMP
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
    note_region(Region::AttentionScores);
    MOELAB_OMP(for schedule(dynamic, 1))
    for (Index i = 0; i < tasks; ++i) task(i);
    }
}

}  // namespace moelab
