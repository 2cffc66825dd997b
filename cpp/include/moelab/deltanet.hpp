// Gated DeltaNet: Qwen3-Next's linear-attention token mixer, with its per-sequence state.
//
// Per token (value head h reads key head h / r, r = n_v / n_k):
//   [q k v z] = in_proj_qkvz x (grouped per key head), [b a] = in_proj_ba x;
//   [q k v] = silu(causal depthwise conv1d over the last K tokens);
//   q = l2norm(q) / sqrt(d_k), k = l2norm(k), beta = sigmoid(b),
//   g = -exp(A_log) softplus(a + dt_bias);
//   S_h = e^g S_h;  S_h += k (beta (v - S_h^T k))^T;  o_h = S_h^T q;
//   y = out_proj( norm.weight * rmsnorm(o_h) * silu(z_h) ).
// Prefill runs the delta rule chunk by chunk (delta_rule.hpp), decode (T = 1) one recurrent
// step; both read and advance the same DeltaNetState.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "moelab/aligned.hpp"
#include "moelab/sequence_state.hpp"
#include "moelab/token_mixer.hpp"
#include "moelab/types.hpp"

namespace moelab {

// The dimensions of one Gated DeltaNet layer (HF names in the comments).
struct DeltaNetSpec {
    Index hidden_size = 0;      // H (hidden_size)
    Index num_key_heads = 0;    // n_k (linear_num_key_heads)
    Index num_value_heads = 0;  // n_v (linear_num_value_heads), a multiple of n_k
    Index key_head_dim = 0;     // d_k (linear_key_head_dim)
    Index value_head_dim = 0;   // d_v (linear_value_head_dim)
    Index conv_kernel = 0;      // K (linear_conv_kernel_dim)
    float norm_eps = 1e-6f;     // epsilon of the gated RMSNorm (rms_norm_eps)

    Index key_dim() const { return num_key_heads * key_head_dim; }
    Index value_dim() const { return num_value_heads * value_head_dim; }
    Index conv_dim() const { return 2 * key_dim() + value_dim(); }           // channels of q|k|v
    Index qkvz_dim() const { return 2 * key_dim() + 2 * value_dim(); }      // in_proj_qkvz rows
    Index heads_per_key() const { return num_value_heads / num_key_heads; }  // r
    Index recurrent_floats() const { return num_value_heads * key_head_dim * value_head_dim; }
    Index conv_floats() const { return (conv_kernel - 1) * conv_dim(); }

    // Throws std::invalid_argument naming the field for an impossible or absurd value.
    void validate() const;
    std::string describe() const;
};

// Epsilon of the L2 normalisation of q and k: a constant of the HF implementation (l2norm).
constexpr float kDeltaNetL2Eps = 1e-6f;

class GatedDeltaNet;

// One sequence's state of one layer: the recurrent matrix of every value head and the conv
// inputs of the last K - 1 tokens. Its size is fixed by the spec, whatever the length.
// Created by GatedDeltaNet::new_state; only that layer accepts it.
class DeltaNetState : public SequenceState {
  public:
    const DeltaNetSpec& spec() const { return spec_; }
    std::size_t nbytes() const override;  // bytes held: (recurrent_floats + conv_floats) * 4
    // Copies out: recurrent (n_v, d_k, d_v), conv (K - 1, conv_dim) oldest token first.
    void read_recurrent(float* dst) const;
    void read_conv(float* dst) const;
    void reset() override;  // zeros, length 0

  private:
    friend class GatedDeltaNet;
    DeltaNetState(const DeltaNetSpec& spec, std::uint64_t owner);

    DeltaNetSpec spec_;
    AlignedVector<float> recurrent_;  // (n_v, d_k, d_v): S_h row-major, as HF lays it out
    AlignedVector<float> conv_;       // (K - 1, conv_dim)
};

class GatedDeltaNet : public TokenMixerOf<DeltaNetSpec> {
  public:
    // Validates the spec and allocates the weights (zeros): in_proj_qkvz.weight
    // (2 n_k d_k + 2 n_v d_v, H), in_proj_ba.weight (2 n_v, H), conv1d.weight (conv_dim, 1, K),
    // dt_bias (n_v), A_log (n_v), norm.weight (d_v), out_proj.weight (H, n_v d_v). With BF16
    // the three projection matrices are stored as bfloat16; the rest stays float32.
    // init_random: uniform in +-1/sqrt(fan_in) (projections: H or n_v d_v; conv: K; dt_bias,
    // A_log: 1); norm.weight = 1 (as HF initialises it).
    GatedDeltaNet(const DeltaNetSpec& spec, DType weight_dtype = DType::F32);

    std::shared_ptr<DeltaNetState> new_state() const;

    // y (T, H) for x (T, H), continuing `state` (nullptr: a fresh sequence, nothing kept).
    // Throws std::invalid_argument, with the state unchanged, for a state of another layer, a
    // non-finite x, or a result that is not finite (inputs or weights so large that float32
    // overflows). Thread-safe: forwards share the weights read-only; a state is used by one
    // forward at a time.
    void forward(const float* x, Index T, float* y, DeltaNetState* state) const;

  private:
    std::size_t qkvz_, ba_, conv_, dt_bias_, a_log_, norm_, out_;
};

}  // namespace moelab
