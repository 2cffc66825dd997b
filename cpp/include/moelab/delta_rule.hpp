// The gated delta rule of one value head, over a run of tokens, in two forms that compute the
// same thing: the recurrent step (decode, one token) and the chunked form (prefill).
//
// Recurrence, per token t (S: d_k x d_v; q already L2-normalised and scaled, k normalised):
//   S_t = e^{g_t} S_{t-1} + k_t delta_t^T,  delta_t = beta_t (v_t - e^{g_t} S_{t-1}^T k_t),
//   o_t = S_t^T q_t.
// Chunked form over n tokens from S_0, with c_i = g_0 + ... + g_i (log decay since the chunk
// start) and D_ij = e^{c_i - c_j} for j <= i:
//   (I + A) Delta = diag(beta) V - diag(beta e^c) K S_0,  A_ij = beta_i (k_i . k_j) D_ij (j < i)
//   (the UT transform: every delta of the chunk from one unit-lower-triangular solve),
//   O = diag(e^c) Q S_0 + ((Q K^T) o D) Delta,
//   S_n = e^{c_{n-1}} S_0 + K^T diag(e^{c_{n-1} - c}) Delta.
// The products run on small register-tiled kernels compiled for the active instruction set
// (AVX-512, AVX2 or the baseline); each result depends only on the shapes, never on the thread
// that runs the head.
#pragma once

#include "moelab/types.hpp"

namespace moelab {

// Tokens per chunk of the chunked form. The n x n work per token (Gram matrices, the solve)
// grows with it while the d_k d_v products per token stay; 64 keeps a chunk's operands in L2 and
// is the chunk size of the Hugging Face implementation.
constexpr Index kDeltaChunk = 64;

// One value head's inputs: token t's q, k (d_k) and v (d_v) at q + t * ld, k + t * ld,
// v + t * ld; its decay g and write strength beta at g[t * ld_gate], beta[t * ld_gate].
struct DeltaHead {
    const float* q = nullptr;
    const float* k = nullptr;
    const float* v = nullptr;
    Index ld = 0;
    const float* g = nullptr;
    const float* beta = nullptr;
    Index ld_gate = 0;
    Index d_k = 0, d_v = 0;
};

// The state S (d_k, d_v) is row-major (HF's layout). S_in and S_out may be the same buffer.

// Floats of scratch (64-byte aligned) one delta_rule_chunk call needs.
Index delta_chunk_scratch(Index d_k, Index d_v) noexcept;
// Floats of scratch one delta_rule_step call needs.
Index delta_step_scratch(Index d_k, Index d_v) noexcept;

// n (1 <= n <= kDeltaChunk) tokens of the chunked form: o row t (d_v floats) at o + t * ldo.
// Returns false when S_out holds a non-finite value.
bool delta_rule_chunk(const DeltaHead& in, Index n, const float* S_in, float* S_out, float* o,
                      Index ldo, float* scratch) noexcept;

// One token of the recurrent form (token 0 of `in`): o (d_v). Returns false when S_out holds a
// non-finite value.
bool delta_rule_step(const DeltaHead& in, const float* S_in, float* S_out, float* o,
                     float* scratch) noexcept;

}  // namespace moelab
