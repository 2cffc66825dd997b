#include "moelab/token_mixer.hpp"

#include <cmath>
#include <stdexcept>

namespace moelab {

std::size_t TokenMixer::add_norm(const std::string& name, std::vector<Index> shape,
                                 float identity) {
    const std::size_t i = weights_.add(name, std::move(shape), 1);
    Tensor& t = weights_.at(i);
    t.init_constant = true;
    t.init_value = identity;
    return i;
}

TokenMixer::ForwardLocks TokenMixer::begin_forward(const float* x, Index T, Index hidden_size,
                                                   SequenceState* state) const {
    if (state) require_own(names_.state, state->owner_, id_, names_.kind, names_.factory);
    require_finite(x, T * hidden_size, "x");
    ForwardLocks locks;
    locks.weights = read_lock();
    if (state) {
        locks.state = std::unique_lock<std::mutex>(state->mutex_);
        locks.pos0 = state->length_;
    }
    return locks;
}

void TokenMixer::require_finite_result(const float* y, Index n, bool ok) {
    for (Index i = 0; ok && i < n; ++i) ok = std::isfinite(y[i]);
    if (!ok)
        throw std::invalid_argument(
            "x: the result is not finite (float32 overflow: the inputs or weights are too large)");
}

}  // namespace moelab
