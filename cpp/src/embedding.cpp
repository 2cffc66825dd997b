#include "moelab/embedding.hpp"

#include "moelab/bf16.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"

namespace moelab {

namespace {

void embed_row(Index id, const EmbeddingTable& t, bool has_scale, float scale, float* out) noexcept {
    const Index H = t.hidden;
    if (t.table.f32) {
        const float* row = t.table.f32 + id * H;
        if (has_scale)
            for (Index i = 0; i < H; ++i) out[i] = row[i] * scale;
        else
            for (Index i = 0; i < H; ++i) out[i] = row[i];
        return;
    }
    const std::uint16_t* row = t.table.bf16 + id * H;
    if (!has_scale) {
        convert_from_bf16(row, out, H);
        return;
    }
    const float s = from_bf16(to_bf16(scale));  // the scale in the table's dtype
    for (Index i = 0; i < H; ++i) out[i] = from_bf16(to_bf16(from_bf16(row[i]) * s));
}

}  // namespace

void embedding(const std::int64_t* ids, Index num_tokens, const EmbeddingTable& t, bool has_scale,
               float scale, float* out, int threads) noexcept {
    const Index H = t.hidden;
    const int team = threads_for(double(num_tokens) * double(H), threads);
    (void)team;
    MOELAB_OMP(parallel num_threads(team) if(team > 1))
    {
        note_region(Region::Embedding);
        MOELAB_OMP(for schedule(static))
        for (Index i = 0; i < num_tokens; ++i) embed_row(Index(ids[i]), t, has_scale, scale, out + i * H);
    }
}

}  // namespace moelab
