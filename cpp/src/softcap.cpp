#include "moelab/softcap.hpp"

#include <cmath>

#include "moelab/parallel.hpp"

namespace moelab {

void logit_softcap(const float* x, Index n, float cap, float* y, int threads) noexcept {
    // tanh costs some 20 operations: a region pays off from ~50k logits (a third of a vocabulary)
    const int team = threads_for(double(n) * 20.0, threads);
    (void)team;
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
        note_region(Region::LogitSoftcap);
        MOELAB_OMP(for schedule(static))
        for (Index i = 0; i < n; ++i) y[i] = std::tanh(x[i] / cap) * cap;
    }
}

}  // namespace moelab
