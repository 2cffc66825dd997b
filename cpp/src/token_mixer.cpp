#include "moelab/token_mixer.hpp"

#include <cmath>
#include <stdexcept>

namespace moelab {

std::size_t TokenMixer::add_norm(const std::string& name, std::vector<Index> shape,
                                 float identity) {
    const std::size_t i = weights_.add(name, std::move(shape), 1);
    norms_.emplace_back(i, identity);
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

void TokenMixer::init_random(std::uint64_t seed) {
    LayerWeights::init_random(seed);
    if (norms_.empty()) return;
    std::vector<std::vector<float>> values;  // kept alive until the load has copied them
    std::vector<WeightView> views;
    values.reserve(norms_.size());
    for (const auto& [i, identity] : norms_) {
        const Tensor& t = weights_.at(i);
        values.emplace_back(std::size_t(t.numel()), identity);
        WeightView v;
        v.name = t.name;
        v.shape = t.shape;
        v.data = {values.back().data()};
        views.push_back(std::move(v));
    }
    LayerWeights::load_weights(views, /*strict=*/false);
}

}  // namespace moelab
