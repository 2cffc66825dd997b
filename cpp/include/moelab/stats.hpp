// RoutingStatsOut: where a forward pass writes what its router did (docs/semantics.md,
// "Statistics").
#pragma once

#include <cstdint>

namespace moelab {

// Caller-owned buffers (T = tokens, k = top-k, E = experts); scalars are filled in.
struct RoutingStatsOut {
    std::int32_t* topk_ids = nullptr;         // (T, k)
    float* topk_weights = nullptr;            // (T, k), 0 for a pair dropped by capacity
    float* router_logits = nullptr;           // (T, E)
    std::int64_t* tokens_per_expert = nullptr;  // (E), kept pairs
    double aux_loss = 0.0;
    double z_loss = 0.0;
    std::int64_t dropped = 0;
    // Wall-clock seconds of the phases of this forward (moe_layer.cpp's steps), in order.
    double seconds_route = 0.0;     // logits, selection
    double seconds_dispatch = 0.0;  // counting sort, gather
    double seconds_pack = 0.0;      // token panels (AVX-512, AVX2)
    double seconds_gate_up = 0.0;
    double seconds_down = 0.0;
    double seconds_combine = 0.0;   // combine, shared-expert gate, statistics
};

}  // namespace moelab
