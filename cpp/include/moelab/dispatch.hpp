// Dispatch: counting sort of the T*k (token, slot) pairs by expert, with optional capacity.
#pragma once

#include <cstdint>
#include <vector>

#include "moelab/types.hpp"

namespace moelab {

struct Dispatch {
    std::vector<Index> offsets;              // (E + 1): rows of expert e are [offsets[e], offsets[e+1])
    std::vector<std::int32_t> pair_of_row;   // (R): the pair t * k + j held in sorted row r
    std::vector<std::int64_t> row_of_pair;   // (T * k): the sorted row of a pair, -1 if dropped
    std::vector<std::int64_t> tokens_per_expert;  // (E): kept pairs per expert
    std::vector<Index> cursor;               // (E): build_dispatch's next free row per expert
    Index dropped = 0;                        // pairs beyond capacity
    Index num_rows() const { return offsets.empty() ? 0 : offsets.back(); }
    // Capacity for `pairs` pairs over `num_experts` experts: build_dispatch then never allocates.
    void reserve(Index pairs, Index num_experts);
};

// Linear-time counting sort. Within an expert, rows follow token order then slot order; with
// capacity >= 0 an expert keeps its first `capacity` pairs in that order and drops the rest.
void build_dispatch(const std::int32_t* ids, Index num_tokens, Index top_k, Index num_experts,
                    Index capacity, Dispatch& out);

}  // namespace moelab
