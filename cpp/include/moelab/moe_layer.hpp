// MoELayer: router + routed experts (+ shared experts) with weights held once, in float32.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "moelab/spec.hpp"
#include "moelab/stats.hpp"
#include "moelab/weights.hpp"

namespace moelab {

class MoELayer : public LayerWeights {
  public:
    // Validates the spec (std::invalid_argument) and adds the tensors of MoESpec::tensors()
    // (without values until init_random or load_weights; the expert matrices in parts: per
    // expert its gate and up, or its down). With BF16 the expert and shared-expert matrices are stored as bfloat16
    // (router, biases and gate stay float32: routing runs in float32 whatever the weight dtype).
    explicit MoELayer(const MoESpec& spec, DType weight_dtype = DType::F32);

    const MoESpec& spec() const { return spec_; }

    // y (T, H) = MoE(x (T, H)). Throws std::invalid_argument for a non-finite x or router
    // logits that overflow, before any output is written; stats may be nullptr.
    // Thread-safe: concurrent forwards share the weights read-only. No allocation once a forward
    // of T or more tokens has run on the calling thread (thread_workspace).
    void forward(const float* x, Index num_tokens, float* y, RoutingStatsOut* stats) const;

    // ---- The steps of forward, one call each, for a caller that runs them apart (expert
    // parallelism: the caller moves rows between processes in between). Each runs the very
    // functions forward runs, so that composing them on one process gives forward's bits. The
    // caller owns every buffer and has checked their shapes; values are checked here
    // (std::invalid_argument naming the argument). R: rows of the routed experts.

    // Step 1: logits (T, E), ids (T, k), weights (T, k) of x (T, H).
    void route(const float* x, Index num_tokens, float* logits, std::int32_t* ids,
               float* weights) const;
    // Step 2: the counting sort of the (token, slot) pairs of ids (T, k) by expert with
    // capacity(T): row_of_pair (T * k) the pair's row in that order (-1: dropped),
    // tokens_per_expert (E); returns the pairs dropped.
    Index dispatch(const std::int32_t* ids, Index num_tokens, std::int64_t* row_of_pair,
                   std::int64_t* tokens_per_expert) const;
    // The rows (R, H) the routed experts read: rows[r] = x[tokens[r]] (times weights[r] for
    // Llama 4, which scales the experts' inputs; weights is read only then).
    void expert_inputs(const float* x, Index num_tokens, const std::int64_t* tokens,
                       const float* weights, Index num_rows, float* rows) const;
    // Step 3, the routed experts: output (R, H) of rows (R, H) that come in n runs, run i of
    // counts[i] rows for expert experts[i]; experts strictly increasing, held by the layer.
    void run_experts(const float* rows, Index num_rows, const std::int32_t* experts,
                     const std::int64_t* counts, Index n, float* output) const;
    // Step 4: y (T, H) = per token its kept rows of expert_output (R, H) (row_of_pair (T * k),
    // -1 for none) times weights (T, k) (not for Llama 4), in slot order, plus the shared
    // experts on x (T, H) (times their gate).
    void combine(const float* x, Index num_tokens, const float* weights,
                 const std::int64_t* row_of_pair, const float* expert_output, Index num_rows,
                 float* y) const;
    // The loss scalars of logits (T, E) and tokens_per_expert (E): {aux_loss, z_loss}.
    std::array<double, 2> routing_losses(const float* logits, Index num_tokens,
                                         const std::int64_t* tokens_per_expert) const;

    // (E): whether the layer holds each routed expert's weights (a layer loaded in part, for
    // expert parallelism, holds some; forward needs all).
    std::vector<bool> held_experts() const;

    // What forward and its steps read of the layer: pointers into its weights (moe_layer.cpp).
    struct Tensors;

  private:
    static constexpr std::size_t kAbsent = std::size_t(-1);
    // The weight of a canonical tensor as the kernels read it (none for an absent tensor).
    WeightPtr tensor(LayerTensor kind) const;
    const float* f32_tensor(LayerTensor kind) const { return tensor(kind).f32; }
    // The parts of an expert matrix (ExpertStack: per expert, gate and up, or down).
    const WeightPtr* parts(LayerTensor kind) const;
    Tensors tensors() const;  // under the caller's read lock
    // held_experts() under the caller's lock.
    std::vector<bool> held() const;
    // std::invalid_argument naming the experts the layer lacks, unless it holds all.
    void require_all_experts() const;

    MoESpec spec_;
    std::array<std::size_t, std::size_t(LayerTensor::Count)> slot_;  // index in weights_
};

}  // namespace moelab
