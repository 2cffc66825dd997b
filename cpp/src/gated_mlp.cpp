#include "moelab/gated_mlp.hpp"

#include <stdexcept>
#include <string>

#include "moelab/check.hpp"
#include "moelab/experts.hpp"
#include "moelab/parallel.hpp"
#include "moelab/workspace.hpp"

namespace moelab {

GatedMLP::GatedMLP(Index hidden, Index intermediate, Activation activation, DType weight_dtype)
    : LayerWeights(weight_dtype),
      hidden_(hidden),
      intermediate_(intermediate),
      activation_(activation) {
    if (hidden < 1 || hidden > kMaxDimension)
        throw std::invalid_argument("hidden_size: must be in [1, 2^24], got " + std::to_string(hidden));
    if (intermediate < 1 || intermediate > kMaxDimension)
        throw std::invalid_argument("intermediate_size: must be in [1, 2^24], got " +
                                    std::to_string(intermediate));
    if (double(hidden) * double(intermediate) * 3.0 > kMaxLayerParams)
        throw std::invalid_argument("GatedMLP: more than 2^36 parameters");
    weights_.add("gate_up_proj", {2 * intermediate, hidden}, hidden, weight_dtype, 2);  // gate, up
    weights_.add("down_proj", {hidden, intermediate}, intermediate, weight_dtype);
}

void GatedMLP::forward(const float* x, Index T, float* y) const {
    require_finite(x, T * hidden_, "x");
    if (T == 0) return;
    const auto lock = read_lock();
    const int threads = num_threads();
    const Index offsets[2] = {0, T};
    ExpertBatch b;
    b.stack.gate_up = weights_.at(0).parts.data();
    b.stack.down = weights_.at(1).parts.data();
    b.stack.num_experts = 1;
    b.stack.input_width = b.stack.output_width = hidden_;
    b.stack.intermediate = intermediate_;
    b.stack.activation = activation_;
    b.offsets = offsets;
    b.rows = x;
    b.output = y;
    // The planning step: the thread's workspace grows (only) here, before any parallel region.
    Workspace& ws = thread_workspace();
    grow_to(ws.expert_hidden, T * 2 * intermediate_);
    ws.experts.reserve(&b.stack, &T, 1);
    b.hidden = ws.expert_hidden.data();
    plan_experts(&b, 1, ws.experts);
    run_experts(&b, 1, ws.experts, threads);
}

}  // namespace moelab
