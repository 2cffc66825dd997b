// Multi-head latent attention (MLA) of DeepSeek-V2/V3 and Kimi K2, as Hugging Face transformers
// 5.x's DeepseekV3Attention computes it, with a cache of the compressed latent.
//
// Per token x at position p (n_h heads; d_n = qk_nope_head_dim, d_r = qk_rope_head_dim,
// d_v = v_head_dim, r = kv_lora_rank, d_qk = d_n + d_r):
//   q = q_b_proj(rms_norm(q_a_proj x))  (q_lora_rank > 0)  or  q_proj x      (n_h, d_qk)
//   [c | k_r] = kv_a_proj_with_mqa x;  c = rms_norm(c) (kv_a_layernorm)    (r), (d_r)
//   q_r, k_r = RoPE(q[:, d_n:], p), RoPE(k_r, p)   (rope_interleave: the pairs (2i, 2i + 1) are
//              first laid out as (i, i + d_r/2), as HF's apply_rotary_pos_emb_interleave does)
//   [k_n | v]_h = W_h c  with W_h the (d_n + d_v, r) rows of kv_b_proj for head h
//   s_hj = scaling (q_n,h . k_n,hj + q_r,h . k_r,j)   for the keys j <= p
//   o_h = sum_j softmax(s_h)_j v_hj;   y = o_proj [o_0 .. o_{n_h-1}]
// The cache keeps [c | k_r] (r + d_r floats) per token, never per-head keys or values.
// Two exact rewritings of the same sums:
//   expanded: k_n and v of a head are rebuilt from c once for all keys, then scored by tiles
//             of queries against blocks of keys (prefill; no T x T matrix);
//   absorbed: q_c,h = W_UK,h^T q_n,h (r), so s_hj = scaling (q_c,h . c_j + q_r,h . k_r,j), and
//             o_h = W_UV,h (sum_j softmax(s_h)_j c_j): a decode step reads each cached row once
//             per block of heads and rebuilds nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "moelab/aligned.hpp"
#include "moelab/rope.hpp"
#include "moelab/sequence_state.hpp"
#include "moelab/token_mixer.hpp"

namespace moelab {

struct MlaSpec {
    Index hidden_size = 0;        // H
    Index num_heads = 0;          // n_h (num_attention_heads)
    Index q_lora_rank = 0;        // q_lora_rank, 0 = a plain q_proj
    Index kv_lora_rank = 0;       // r
    Index qk_nope_head_dim = 0;   // d_n
    Index qk_rope_head_dim = 0;   // d_r, even
    Index v_head_dim = 0;         // d_v
    bool attention_bias = false;  // biases on q_a_proj, kv_a_proj_with_mqa and o_proj (as HF)
    float norm_eps = 1e-6f;       // eps of q_a_layernorm and kv_a_layernorm (HF: 1e-6 always)
    RopeSpec rope;                // rope.head_dim == d_r
    bool rope_interleave = true;  // rope_interleave
    float scaling = 0.0f;         // the logit scale, 0 = 1 / sqrt(d_qk)
    Index max_positions = 0;      // max_position_embeddings: positions must stay below

    Index qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    Index q_dim() const { return num_heads * qk_head_dim(); }
    Index latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // a cache row
    Index kv_b_rows() const { return num_heads * (qk_nope_head_dim + v_head_dim); }
    Index o_dim() const { return num_heads * v_head_dim; }
    float logit_scale() const;
    // Throws std::invalid_argument naming the field for an impossible or absurd value.
    void validate() const;
    std::string describe() const;
};

enum class MlaForm { Auto, Expanded, Absorbed };

class MultiHeadLatentAttention;

// One sequence's latent cache for one MLA layer: per token, the normalised latent c (r) and the
// roped shared key k_r (d_r), one row [c | k_r]. The next token is at position length().
class MlaCache : public SequenceState {
  public:
    Index row_dim() const { return row_dim_; }  // r + d_r
    // Bytes held: length() * (r + d_r) * 4.
    std::size_t nbytes() const override;
    // Copies out the rows held, (length(), r + d_r), oldest first.
    void read(float* rows) const;
    void reset() override;

  private:
    friend class MultiHeadLatentAttention;
    MlaCache(Index row_dim, std::uint64_t owner) : SequenceState(owner), row_dim_(row_dim) {}
    void reserve(Index new_length);                              // std::bad_alloc, contents stay
    void append(const float* rows, Index T) noexcept;            // T rows, length += T

    Index row_dim_;
    AlignedVector<float> rows_;  // (capacity, r + d_r)
};

class MultiHeadLatentAttention : public TokenMixerOf<MlaSpec> {
  public:
    // Validates the spec and allocates zeroed weights with HF names: q_proj.weight
    // (n_h d_qk, H), or q_a_proj.weight (q_lora_rank, H), q_a_layernorm.weight (q_lora_rank),
    // q_b_proj.weight (n_h d_qk, q_lora_rank); kv_a_proj_with_mqa.weight (r + d_r, H),
    // kv_a_layernorm.weight (r), kv_b_proj.weight (n_h (d_n + d_v), r), o_proj.weight
    // (H, n_h d_v); with attention_bias q_a_proj.bias, kv_a_proj_with_mqa.bias, o_proj.bias.
    // With BF16 the projections run by linear() (q_proj or q_a_proj / q_b_proj,
    // kv_a_proj_with_mqa, o_proj) are stored as bfloat16 and read in place; kv_b_proj (read by
    // the attention kernels themselves), biases and norms stay float32. init_random: uniform in
    // +-1/sqrt(fan_in); norm weights 1.
    explicit MultiHeadLatentAttention(const MlaSpec& spec, DType weight_dtype = DType::F32);

    std::shared_ptr<MlaCache> new_cache() const;

    // y (T, H) for x (T, H), continuing `cache` (nullptr: positions from 0). `form` chooses the
    // rewriting (Auto: absorbed for T <= kAbsorbedMaxTokens, else expanded). Throws
    // std::invalid_argument, with the cache unchanged, for a cache of another layer, a
    // non-finite x, positions reaching max_positions, or a non-finite result. Bitwise the same
    // for any thread count.
    void forward(const float* x, Index T, float* y, MlaCache* cache,
                 MlaForm form = MlaForm::Auto) const;

    static constexpr Index kAbsorbedMaxTokens = 4;

  private:
    Rope rope_;
    std::size_t q_ = 0, q_a_ = 0, q_a_norm_ = 0, q_b_ = 0, kv_a_ = 0, kv_a_norm_ = 0, kv_b_ = 0,
                o_ = 0, q_a_bias_ = 0, kv_a_bias_ = 0, o_bias_ = 0;
};

}  // namespace moelab
