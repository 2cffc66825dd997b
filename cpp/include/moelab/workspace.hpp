// Workspace: the scratch buffers of a forward pass, one set per calling thread.
#pragma once

#include <cstdint>
#include <vector>

#include "moelab/aligned.hpp"
#include "moelab/dispatch.hpp"
#include "moelab/experts.hpp"
#include "moelab/router.hpp"

namespace moelab {

// The Gated DeltaNet forward's buffers (deltanet.cpp) for a block of B tokens; its projections
// use Workspace::experts (linear.hpp).
struct DeltaNetScratch {
    AlignedVector<float> qkvz;    // (B, qkvz_dim) in_proj_qkvz output, HF's grouped order
    AlignedVector<float> ba;      // (B, 2 n_v)
    AlignedVector<float> window;  // (K - 1 + B, conv_dim) conv inputs q|k|v, oldest first
    AlignedVector<float> qkv;     // (B, conv_dim) conv outputs: q (normalised, scaled) | k | v
    AlignedVector<float> z;       // (B, value_dim)
    AlignedVector<float> g, beta; // (B, n_v)
    AlignedVector<float> o;       // (B, value_dim) delta-rule reads, then the gated norm
    AlignedVector<float> conv_t;  // (K, conv_dim) conv1d.weight transposed
    AlignedVector<float> ones;    // (max(d_v, conv_dim)) the "up" of silu(x) * 1
    AlignedVector<float> head;    // (threads, per-head scratch)
    AlignedVector<float> state;   // (n_v, d_k, d_v) the new recurrent state (swapped in on success)
};

// Every buffer a forward writes besides its output, held per calling thread and reused. A
// forward first sizes it for its shapes (its planning step, which grows buffers with grow_to and
// reserve and may throw std::bad_alloc, before any parallel region); its steps then use it
// without allocating. So a forward allocates nothing once one of the same or larger sizes has
// run on the same thread, and forwards from two Python threads never share a buffer. The
// layers of a model run one after the other on a thread and share its workspace.
struct Workspace {
    AlignedVector<float> logits;             // (T, E)
    std::vector<std::int32_t> ids;           // (T, k)
    AlignedVector<float> weights;            // (T, k)
    RouterScratch router;
    Dispatch dispatch;
    std::vector<std::int32_t> token_of_row;  // (R)
    std::vector<Index> expert_offsets;       // (E + 1): MoELayer::run_experts' rows per expert
    AlignedVector<float> expert_input;       // (R, H): rows the routed experts read as copies
    AlignedVector<float> expert_hidden;      // (R, 2I)
    AlignedVector<float> expert_output;      // (R, H)
    AlignedVector<float> shared_hidden;      // (T, 2S)
    AlignedVector<float> shared_output;      // (T, H)
    AlignedVector<float> shared_gate;        // (T)
    ExpertScratch experts;  // the routed and shared experts, and every linear()
    DeltaNetScratch deltanet;
};

// The calling thread's workspace.
Workspace& thread_workspace() noexcept;

}  // namespace moelab
