// Attention: one softmax-attention token mixer (MHA, GQA or MQA by head counts) with the
// variants of the covered families, as Hugging Face transformers 5.x computes them.
//
// Per token at position p (n_h query heads, n_kv key/value heads, head dim d, r = n_h / n_kv):
//   q = q_proj x (+ b),  [q | gate] per head when output_gate (Qwen3-Next);  k, v likewise
//   q, k = qk_norm(q), qk_norm(k)   none | per head RMSNorm | full-width RMSNorm | L2 (no weight);
//                                   weights w or (1 + w) (Gemma-style) as flagged
//   q, k = RoPE(q, p), RoPE(k, p)   unless the layer is NoPE
//   q *= 1 + attn_scale ln(1 + floor((p + 1) / floor_scale))   (Llama 4 temperature tuning)
//   s_j = scaling q . k_j  (softcap: c tanh(s_j / c))  for the keys j the mask lets through:
//         causal j <= p; sliding p - j < window; chunked j // chunk == p // chunk
//   o = sum_j softmax(s, [sink])_j v_j    (a learned sink logit per head joins the denominator)
//   o *= sigmoid(gate)  (output_gate);   y = o_proj o (+ b)
// Query head h reads key/value head h / r. Prefill works on tiles of queries (a few tokens
// times the r heads of a group) against key blocks with an online softmax (no T x T matrix);
// keys of earlier tokens come from the KvCache.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "moelab/kv_cache.hpp"
#include "moelab/rope.hpp"
#include "moelab/token_mixer.hpp"

namespace moelab {

enum class QkNorm { None, Head, Full, L2 };
enum class AttentionMask { Causal, Sliding, Chunked };

struct AttentionSpec {
    Index hidden_size = 0;       // H
    Index num_heads = 0;         // n_h (num_attention_heads)
    Index num_kv_heads = 0;      // n_kv (num_key_value_heads), divides n_h
    Index head_dim = 0;          // d
    bool qkv_bias = false;       // biases on q, k, v (attention_bias)
    bool o_bias = false;         // a bias on o_proj
    QkNorm qk_norm = QkNorm::None;
    bool norm_unit_offset = false;  // norm weights used as (1 + w) (Gemma 3, Qwen3-Next)
    float norm_eps = 1e-6f;         // rms_norm_eps (also the L2 norm's epsilon)
    bool use_rope = true;           // false: a NoPE layer
    RopeSpec rope;                  // rope.head_dim == head_dim
    AttentionMask mask = AttentionMask::Causal;
    Index window = 0;               // sliding_window or attention_chunk_size (> 0 for those)
    bool sinks = false;             // a learned sink logit per head (gpt-oss)
    float softcap = 0.0f;           // attn_logit_softcapping, 0 = none
    float scaling = 0.0f;           // the logit scale, 0 = 1 / sqrt(d)
    bool output_gate = false;       // q_proj also emits a sigmoid gate per channel
    bool temperature_tuning = false;  // Llama 4's NoPE-layer query scale
    float attn_scale = 0.1f;          // attn_scale (temperature tuning)
    float floor_scale = 8192.0f;      // floor_scale (temperature tuning)
    Index max_positions = 0;          // max_position_embeddings: positions must stay below

    Index q_dim() const { return num_heads * head_dim; }
    Index kv_dim() const { return num_kv_heads * head_dim; }
    Index q_proj_rows() const { return output_gate ? 2 * q_dim() : q_dim(); }
    Index group() const { return num_heads / num_kv_heads; }
    float logit_scale() const;
    // Throws std::invalid_argument naming the field for an impossible or absurd value.
    void validate() const;
    std::string describe() const;
};

class Attention : public TokenMixerOf<AttentionSpec> {
  public:
    // Validates the spec and allocates zeroed weights with HF names: q_proj.weight
    // (q_proj_rows, H), k_proj.weight / v_proj.weight (n_kv d, H), o_proj.weight (H, n_h d),
    // q_proj.bias / k_proj.bias / v_proj.bias (qkv_bias), o_proj.bias (o_bias),
    // q_norm.weight / k_norm.weight ((d) per head, (n_h d) / (n_kv d) full width), sinks (n_h).
    // With BF16 the four projection matrices are stored as bfloat16 (read in place by linear());
    // biases, norms and sinks stay float32. init_random: uniform in +-1/sqrt(fan_in) (sinks:
    // +-1); norm weights 1 (0 with the (1 + w) form).
    explicit Attention(const AttentionSpec& spec, DType weight_dtype = DType::F32);

    const Rope& rope() const { return rope_; }

    std::shared_ptr<KvCache> new_cache() const;

    // y (T, H) for x (T, H), continuing `cache` (nullptr: a fresh sequence at position 0).
    // Throws std::invalid_argument, with the cache unchanged, for a cache of another layer, a
    // non-finite x, positions reaching max_positions, or a result that is not finite.
    // Thread-safe; a cache is used by one forward at a time. Bitwise the same for any thread
    // count.
    void forward(const float* x, Index T, float* y, KvCache* cache) const;

  private:
    Rope rope_;
    std::size_t q_, k_, v_, o_;
    std::size_t q_bias_ = 0, k_bias_ = 0, v_bias_ = 0, o_bias_ = 0, q_norm_ = 0, k_norm_ = 0,
                sinks_ = 0;
};

}  // namespace moelab
