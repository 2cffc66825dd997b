#include "moelab/dispatch.hpp"

namespace moelab {

void Dispatch::reserve(Index pairs, Index num_experts) {
    offsets.reserve(std::size_t(num_experts + 1));
    pair_of_row.reserve(std::size_t(pairs));
    row_of_pair.reserve(std::size_t(pairs));
    tokens_per_expert.reserve(std::size_t(num_experts));
    cursor.reserve(std::size_t(num_experts));
}

void build_dispatch(const std::int32_t* ids, Index T, Index k, Index E, Index capacity,
                    Dispatch& d) {
    const Index pairs = T * k;
    d.tokens_per_expert.assign(std::size_t(E), 0);
    d.row_of_pair.assign(std::size_t(pairs), -1);
    // Pass 1: histogram of kept pairs, visiting pairs in token order then slot order.
    for (Index p = 0; p < pairs; ++p) {
        std::int64_t& n = d.tokens_per_expert[std::size_t(ids[p])];
        if (capacity < 0 || n < capacity) ++n;
    }
    // Prefix sum: contiguous row blocks per expert.
    d.offsets.assign(std::size_t(E + 1), 0);
    for (Index e = 0; e < E; ++e) d.offsets[std::size_t(e + 1)] = d.offsets[std::size_t(e)] + d.tokens_per_expert[std::size_t(e)];
    // Pass 2: positions, in the same order, so each expert keeps its first `capacity` pairs.
    d.cursor.assign(d.offsets.begin(), d.offsets.end() - 1);
    d.pair_of_row.assign(std::size_t(d.offsets[std::size_t(E)]), 0);
    d.dropped = 0;
    for (Index p = 0; p < pairs; ++p) {
        const Index e = ids[p];
        Index& c = d.cursor[std::size_t(e)];
        if (c < d.offsets[std::size_t(e + 1)]) {
            d.row_of_pair[std::size_t(p)] = c;
            d.pair_of_row[std::size_t(c)] = std::int32_t(p);
            ++c;
        } else {
            ++d.dropped;
        }
    }
}

}  // namespace moelab
