// Rotary position embedding (RoPE) as Hugging Face transformers computes it: the inverse
// frequencies and the attention scaling of each rope type (modeling_rope_utils), and the
// rotation of (T, heads, head_dim) rows at positions pos0 .. pos0 + T - 1.
//
// Angles are float32 products pos * inv_freq (as HF's float32 matmul forms them), cos and sin
// are taken of that float and multiplied by the attention scaling, then
//   rotate-half pairs (i, i + R/2):  x_i' = x_i c - x_{i+R/2} s,  x_{i+R/2}' = x_{i+R/2} c + x_i s
//   interleaved pairs (2i, 2i + 1):  the same rotation on neighbours (Llama 4's complex form)
// for the first R = rotary_dim channels of each head; the rest pass through (partial rotary).
#pragma once

#include <string>
#include <vector>

#include "moelab/types.hpp"

namespace moelab {

enum class RopeType { Default, Linear, Llama3, Yarn };

// The fields of HF's rope_parameters that a rope type reads (HF names in the comments).
struct RopeSpec {
    RopeType type = RopeType::Default;     // rope_type
    double theta = 10000.0;                // rope_theta
    Index head_dim = 0;                    // head_dim
    double partial_rotary_factor = 1.0;    // partial_rotary_factor: R = int(head_dim * f)
    bool interleaved = false;              // pairs (2i, 2i + 1) instead of (i, i + R/2)
    double factor = 1.0;                   // factor (linear, llama3, yarn)
    double low_freq_factor = 1.0;          // low_freq_factor (llama3)
    double high_freq_factor = 4.0;         // high_freq_factor (llama3)
    double original_max_position_embeddings = 0.0;  // original_max_position_embeddings
    double beta_fast = 32.0;               // beta_fast (yarn)
    double beta_slow = 1.0;                // beta_slow (yarn)
    double mscale = 0.0;                   // mscale (yarn; 0 = absent)
    double mscale_all_dim = 0.0;           // mscale_all_dim (yarn; 0 = absent)
    double attention_factor = 0.0;         // attention_factor (yarn; 0 = computed as HF does)
    bool truncate = true;                  // truncate (yarn)

    // Throws std::invalid_argument naming the field for an impossible value.
    void validate() const;
};

// What a rope type resolves to: the per-pair inverse frequencies and the cos/sin scaling.
struct Rope {
    std::vector<float> inv_freq;   // (R / 2)
    float attention_scaling = 1.0f;
    Index rotary_dim = 0;          // R, even, <= head_dim
    Index head_dim = 0;
    bool interleaved = false;
};

// HF's _compute_*_rope_parameters for spec.type (validates spec first).
Rope make_rope(const RopeSpec& spec);

// Rotates x (T, heads, head_dim), rows `ld` floats apart per token (ld >= heads * head_dim), in
// place: token t at position pos0 + t. Runs on the calling thread.
void apply_rope(const Rope& rope, float* x, Index T, Index heads, Index ld, Index pos0) noexcept;

}  // namespace moelab
